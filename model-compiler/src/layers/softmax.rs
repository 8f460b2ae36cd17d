//! `Softmax(axis = -1)`: the softmax over one axis. On the last axis it is the `softmax` activation, so a
//! model output ending in it fuses with categorical cross-entropy.

use super::args::ArgReader;
use super::{Act, EmitCx, InferCx, LayerDef, MaskRule};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A softmax layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Softmax {
    /// The axis as written (full-tensor numbering, -1 the last).
    pub axis: i64,
}

impl Softmax {
    /// `Softmax(axis = -1)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        Some(Softmax { axis: r.int_or("axis", Some(0), -1)? })
    }

    /// The operand viewed around the axis: (outer per sample, n, inner).
    fn around(&self, x: &Shape) -> (usize, usize, usize) {
        let a = x.sample_axis(self.axis).unwrap_or(0);
        x.around(a..a + 1)
    }

    /// Whether the axis is the last one (then the activation kernels and loss fusion apply).
    fn on_last_axis(&self, x: &Shape) -> bool {
        self.around(x).2 == 1
    }
}

impl LayerDef for Softmax {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        cx.node("Softmax", &[&cx.input(0)], &[&cx.output()], vec![("axis", Attr::Int(self.axis))]);
        Ok(())
    }

    // Rule: the axis exists and is not the batch; the shape is unchanged.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Softmax takes one tensor"))?;
        if x.sample_axis(self.axis).is_none() {
            let full = x.rank() + 1;
            let msg = if self.axis == 0 || self.axis == -(full as i64) {
                format!("Softmax cannot normalize over the batch axis (axis 0) of {}", cx.describe(0))
            } else {
                format!("axis {} is out of range for Softmax of {}, which has rank {full}", self.axis, cx.describe(0))
            };
            return Err(Diagnostic::new(cx.span, msg).help(format!("use an axis from 1 to {} or from -1 to -{}", full - 1, full - 1)));
        }
        Ok(x.clone())
    }

    // Last axis: activation::forward(Softmax, x, y, n); otherwise activation::softmax_axis_forward(axis, x, y).
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let shape = &cx.output.shape;
        let x = cx.x(0);
        if self.on_last_axis(shape) {
            let act = Act::Softmax.tokens();
            let n = shape.last();
            return quote!(::modelc::__private::kernels::activation::forward(#act, #x, &mut __y[..], #n););
        }
        let (outer, n, inner) = self.around(shape);
        quote!(::modelc::__private::kernels::activation::softmax_axis_forward(
            ::modelc::__private::kernels::Axis { outer: __b * #outer, n: #n, inner: #inner }, #x, &mut __y[..]);)
    }

    // Last axis: activation::backward_accumulate (linear when fused with the loss); otherwise
    // activation::softmax_axis_backward_accumulate(axis, y, dy, dx).
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let shape = &cx.output.shape;
        let (y, dx) = (cx.y(), cx.dx_mut(0));
        if self.on_last_axis(shape) {
            let act = cx.backward_act(Act::Softmax);
            let n = shape.last();
            return quote!(::modelc::__private::kernels::activation::backward_accumulate(#act, ::core::option::Option::None, #y, &__dy[..], #dx, #n););
        }
        let (outer, n, inner) = self.around(shape);
        quote!(::modelc::__private::kernels::activation::softmax_axis_backward_accumulate(
            ::modelc::__private::kernels::Axis { outer: __b * #outer, n: #n, inner: #inner }, #y, &__dy[..], #dx);)
    }

    // `axis = -1` is always the last axis: a model output ending here fuses with categorical cross-entropy.
    fn output_activation(&self) -> Option<Act> {
        (self.axis == -1).then_some(Act::Softmax)
    }
}

impl Softmax {
    /// Keras import: `Softmax(axis = -1)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.kw("axis", json!(-1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn softmax_keeps_the_shape_and_checks_its_axis() {
        assert_eq!(ok_shapes("struct M { input x: [3, 4]; output y = Softmax(axis = 1)(x); }"), [vec![3, 4]]);
        let (_, _, text) = one_error("input x: [3, 4];\noutput y = Softmax(axis = 3)(x);");
        assert!(text.contains("axis 3 is out of range for Softmax of `x` (None, 3, 4), which has rank 3"), "{text}");
        let (_, _, text) = one_error("input x: [3, 4];\noutput y = Softmax(0)(x);");
        assert!(text.contains("Softmax cannot normalize over the batch axis (axis 0)"), "{text}");
    }
}
