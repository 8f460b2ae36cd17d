//! `Rescaling(scale, offset = 0.0)`: y = x · scale + offset elementwise, on any shape (Keras applies it in
//! training and inference alike). `scale` is a number: Keras' per-channel array form is not supported.

use super::args::{describe, ArgReader};
use super::{EmitCx, InferCx, LayerDef, MaskRule};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// `Rescaling(scale, offset)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Rescaling {
    /// Factor (as float32, the precision Keras casts it to).
    pub scale: f32,
    /// Added after scaling.
    pub offset: f32,
}

impl Rescaling {
    /// `Rescaling(scale, offset = 0.0)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let scale = match r.raw("scale", Some(0)) {
            Some(ArgValue { kind: ArgKind::Float(x), .. }) => Some(x),
            Some(ArgValue { kind: ArgKind::Int(n), .. }) => Some(n as f64),
            Some(v) => {
                r.error(Diagnostic::new(v.span, format!("`scale` of Rescaling must be a number, got {}", describe(&v.kind))));
                None
            }
            None => {
                r.error(
                    Diagnostic::new(span, "Rescaling is missing its required argument `scale`")
                        .help("give the factor, e.g. `Rescaling(0.5)` or `Rescaling(scale = 0.0078125, offset = -1.0)`"),
                );
                None
            }
        };
        // `float_or` checks the offset as a float32; the scale, read by hand, is checked here.
        let offset = r.float_or("offset", Some(1), 0.0);
        let (scale, offset) = (scale?, offset?);
        if !(scale as f32).is_finite() {
            r.error(
                Diagnostic::new(span, format!("`scale` of Rescaling is {scale}, which is not a finite float32 number"))
                    .help("use a `scale` between -3.4e38 and 3.4e38"),
            );
            return None;
        }
        Some(Rescaling { scale: scale as f32, offset: offset as f32 })
    }
}

impl LayerDef for Rescaling {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // x · scale + offset.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let (s, o) = (cx.scalar(self.scale), cx.scalar(self.offset));
        let y = cx.op("Mul", &[&cx.input(0), &s], Vec::new());
        cx.node("Add", &[&y, &o], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: any shape, unchanged.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        cx.inputs.first().cloned().ok_or_else(|| Diagnostic::new(cx.span, "Rescaling takes one tensor"))
    }

    // rescale::forward(scale, offset, x, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (scale, offset, x) = (self.scale, self.offset, cx.x(0));
        quote!(::modelc::__private::kernels::rescale::forward(#scale, #offset, #x, &mut __y[..]);)
    }

    // rescale::backward(scale, dy, dx, write)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (scale, dx, wr) = (self.scale, cx.dx_mut(0), cx.dx_write(0));
        quote!(::modelc::__private::kernels::rescale::backward(#scale, &__dy[..], #dx, #wr);)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl Rescaling {
    /// Keras import: `Rescaling(scale, offset = 0.0)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("scale");
        a.kw("offset", json!(0.0));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn rescaling_keeps_the_shape_and_needs_a_numeric_scale() {
        assert_eq!(ok_shapes("struct M { input x: [4, 4, 3]; output y = Rescaling(0.5, offset = -1)(x); }"), vec![vec![4, 4, 3]]);
        assert_eq!(ok_shapes("struct M { input x: [7]; output y = Rescaling(scale = 2, offset = 0.25)(x); }"), vec![vec![7]]);
        let (line, col, text) = one_error("input x: [4];\noutput y = Rescaling()(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("Rescaling is missing its required argument `scale`"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = Rescaling(\"half\")(x);");
        assert!(text.contains("`scale` of Rescaling must be a number, got the string \"half\""), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = Rescaling(1e39)(x);");
        assert!(
            text.contains("`scale` of Rescaling is 1000000000000000000000000000000000000000, which is not a finite float32 number"),
            "{text}"
        );
    }
}
