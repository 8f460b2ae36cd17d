//! `Dropout(rate, seed = 0)`: inverted dropout in training (`ws.training`, which a forward pass with
//! separate modes sets apart from BatchNormalization's `ws.batch_statistics`), the identity in inference.
//! The mask is drawn from (seed, layer, `ws.step`) without state and kept in a scratch buffer.

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef, MaskRule};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// A dropout layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Dropout {
    /// Probability of dropping an element, in [0, 1).
    pub rate: f32,
    /// Seed of the masks (mixed with the layer's buffer and the training step).
    pub seed: u64,
}

impl Dropout {
    /// `Dropout(rate, seed = 0)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let rate = match r.raw("rate", Some(0)) {
            None => {
                r.error(
                    Diagnostic::new(span, "Dropout is missing its required argument `rate`")
                        .help("give the fraction of elements to drop, e.g. `Dropout(0.5)`"),
                );
                None
            }
            Some(ArgValue { kind: ArgKind::Float(x), span }) => Self::check_rate(r, x, span),
            Some(ArgValue { kind: ArgKind::Int(n), span }) => Self::check_rate(r, n as f64, span),
            Some(v) => {
                r.error(Diagnostic::new(v.span, "`rate` of Dropout must be a number in [0, 1)").help("e.g. `Dropout(0.5)`"));
                None
            }
        };
        let seed = r.int_or("seed", Some(1), 0);
        Some(Dropout { rate: rate?, seed: seed? as u64 })
    }

    fn check_rate(r: &mut ArgReader<'_>, x: f64, span: proc_macro2::Span) -> Option<f32> {
        if (0.0..1.0).contains(&x) {
            Some(x as f32)
        } else {
            r.error(
                Diagnostic::new(span, format!("`rate` of Dropout must be in [0, 1), got {x}"))
                    .help("the rate is the fraction of elements dropped, e.g. `Dropout(0.5)`"),
            );
            None
        }
    }

    fn salted_seed(&self, cx: &EmitCx) -> u64 {
        // Two dropout layers with the same seed still draw different masks: mix in the output buffer.
        self.seed ^ ((cx.output.buf as u64).wrapping_add(1)).wrapping_mul(0xD1B5_4A32_D192_ED03)
    }
}

impl LayerDef for Dropout {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // Inference mode: the identity.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        cx.node("Identity", &[&cx.input(0)], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: any shape, unchanged.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        cx.inputs.first().cloned().ok_or_else(|| Diagnostic::new(cx.span, "Dropout takes one tensor"))
    }

    // [the mask]
    fn scratch(&self, _inputs: &[Shape], output: &Shape) -> Vec<usize> {
        vec![output.numel()]
    }

    // dropout::forward(rate, seed, __ws.step, first element in the global batch, __ws.training, x, mask, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (rate, seed) = (self.rate, self.salted_seed(cx));
        let x = cx.x(0);
        let mask = cx.scratch_mut(0);
        let per_sample = cx.output.shape.numel() as u64;
        quote!(::modelc::__private::kernels::dropout::forward(#rate, #seed, __ws.step, __ws.first_row as u64 * #per_sample, __ws.training, #x, #mask, &mut __y[..]);)
    }

    // dropout::backward(rate, __ws.training, mask, dy, dx)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let rate = self.rate;
        let (mask, dx) = (cx.scratch(0), cx.dx_mut(0));
        quote!(::modelc::__private::kernels::dropout::backward(#rate, __ws.training, #mask, &__dy[..], #dx);)
    }
}

impl Dropout {
    /// Keras import: `Dropout(rate, seed)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("rate");
        if let Some(seed) = a.get("seed") {
            a.args.push(format!("seed = {seed}"));
        }
        a.expect("noise_shape", serde_json::Value::Null, "modelc drops every element independently; remove noise_shape");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;

    #[test]
    fn dropout_rate_is_checked() {
        let (_, _, text) = one_error("input x: [4];\noutput y = Dropout(1.5)(x);");
        assert!(text.contains("`rate` of Dropout must be in [0, 1), got 1.5"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = Dropout()(x);");
        assert!(text.contains("missing its required argument `rate`"), "{text}");
    }
}
