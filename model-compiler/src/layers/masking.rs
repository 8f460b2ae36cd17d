//! `Masking(mask_value = 0.0)`: marks the steps of a sequence `(None, steps, features)` whose features
//! all equal `mask_value` as masked (Keras' `any(x != mask_value, axis=-1)`) and zeroes them
//! (`where(mask, x, 0)`). The mask travels with the result to the layers that read it (docs/masks.md):
//! recurrent layers skip masked steps, `GlobalAveragePooling1D` averages the kept ones, a loss weighs them out.

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef, MaskRule};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A masking layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Masking {
    /// The value whose steps are masked.
    pub mask_value: f32,
}

impl Masking {
    /// `Masking(mask_value = 0.0)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let v = r.float_or("mask_value", Some(0), 0.0)?;
        Some(Masking { mask_value: v as f32 })
    }

    /// (steps, features) of the operand.
    fn dims(cx: &EmitCx) -> (usize, usize) {
        match cx.inputs.first().map(|o| o.shape.0.as_slice()) {
            Some([t, f]) => (*t, *f),
            _ => (0, 0),
        }
    }

    /// Keras import: `Masking(mask_value)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.kw("mask_value", json!(0.0));
    }
}

impl LayerDef for Masking {
    // A producer: its result carries the new mask.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Produce
    }

    // y = x · max over features of (x != mask_value), as float.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let v = cx.scalar(self.mask_value);
        let eq = cx.op("Equal", &[&x, &v], Vec::new());
        let ne = cx.op("Not", &[&eq], Vec::new());
        let f = cx.op("Cast", &[&ne], vec![("to", Attr::Int(1))]);
        let m = cx.op("ReduceMax", &[&f], vec![("axes", Attr::Ints(vec![-1])), ("keepdims", Attr::Int(1))]);
        if let Some(out) = cx.mask_output() {
            let axes = cx.const_i64(&[-1]);
            cx.node("Squeeze", &[&m, &axes], &[&out], Vec::new());
        }
        cx.node("Mul", &[&x, &m], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule (Keras): a sequence (None, steps, features), unchanged; the mask is one value per step.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Masking takes one tensor"))?;
        if x.rank() != 2 {
            let span = cx.spans.first().copied().unwrap_or(cx.span);
            return Err(Diagnostic::new(
                span,
                format!("Masking masks the steps of a sequence (None, steps, features), but {} is not one", cx.describe(0)),
            )
            .help(format!(
                "call Masking on a tensor of shape (None, steps, features), e.g. reshape first: `Reshape(({}, 1))({})`",
                x.numel(),
                cx.name(0)
            )));
        }
        Ok(x.clone())
    }

    // masking::forward(x, y, mask, batch, steps, features, mask_value)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let ((t, f), x, m, v) = (Self::dims(cx), cx.x(0), cx.mask_out(), self.mask_value);
        quote!(::modelc::__private::kernels::masking::forward(#x, &mut __y[..], #m, __b, #t, #f, #v);)
    }

    // masking::backward(dy, mask, dx, batch, steps, features, write)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let Some(m) = cx.mask_of_output() else { return TokenStream::new() };
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let ((t, f), dx, wr) = (Self::dims(cx), cx.dx_mut(0), cx.dx_write(0));
        quote!(::modelc::__private::kernels::masking::backward(&__dy[..], #m, #dx, __b, #t, #f, #wr);)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn masking_keeps_a_sequence_s_shape_and_refuses_anything_else() {
        let src = "struct M { input x: [5, 3]; output y = Masking(mask_value = -1.0)(x); output z = Masking()(x); }";
        assert_eq!(ok_shapes(src), [vec![5, 3], vec![5, 3]]);
        let (_, _, text) = one_error("input x: [6];\noutput y = Masking()(x);");
        assert!(text.contains("Masking masks the steps of a sequence (None, steps, features), but `x` (None, 6) is not one"), "{text}");
        assert!(text.contains("`Reshape((6, 1))(x)`"), "{text}");
    }
}
