//! `GlobalAveragePooling2D()`, `GlobalMaxPooling2D()` and their 1D forms: every spatial position of a
//! channels-last sample reduced per channel, `(None, h, w, c)` or `(None, steps, c)` -> `(None, c)`.

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A global pooling layer over `rank` spatial axes.
#[derive(Clone, Debug, PartialEq)]
pub struct GlobalPooling {
    /// Max (else average).
    pub max: bool,
    /// Spatial axes: 1 or 2.
    pub rank: usize,
}

impl GlobalPooling {
    /// `Global{Average,Max}Pooling{rank}D()`: no arguments (Keras' `keepdims` is not supported).
    pub fn parse(_r: &mut ArgReader<'_>, rank: usize, max: bool) -> Option<Self> {
        Some(GlobalPooling { max, rank })
    }

    fn kind(&self) -> &'static str {
        match (self.max, self.rank) {
            (true, 1) => "GlobalMaxPooling1D",
            (true, _) => "GlobalMaxPooling2D",
            (false, 1) => "GlobalAveragePooling1D",
            (false, _) => "GlobalAveragePooling2D",
        }
    }

    /// (positions, channels) per sample of an operand.
    fn layout(cx: &EmitCx) -> (usize, usize) {
        cx.inputs.first().map(|o| (o.shape.lead(), o.shape.last())).unwrap_or((0, 0))
    }
}

impl LayerDef for GlobalPooling {
    // ReduceMean / ReduceMax over the spatial axes of the channels-last input.
    // With a mask (average only): Σ_t m·x / Σ_t m, Keras' 0 / 0 = NaN for a sample without a kept step.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        if let Some(mask) = cx.mask_input(0).filter(|_| !self.max) {
            let last = cx.const_i64(&[-1]);
            let m = cx.op("Unsqueeze", &[&mask, &last], Vec::new());
            let xm = cx.op("Mul", &[&cx.input(0), &m], Vec::new());
            let steps = cx.const_i64(&[1]);
            let num = cx.op("ReduceSum", &[&xm, &steps], vec![("keepdims", Attr::Int(0))]);
            let den = cx.op("ReduceSum", &[&m, &steps], vec![("keepdims", Attr::Int(0))]);
            cx.node("Div", &[&num, &den], &[&cx.output()], Vec::new());
            return Ok(());
        }
        let axes: Vec<usize> = (1..cx.input_shape(0).rank()).collect();
        let op = if self.max { "ReduceMax" } else { "ReduceMean" };
        cx.node(op, &[&cx.input(0)], &[&cx.output()], vec![("axes", crate::onnx::ints(&axes)), ("keepdims", Attr::Int(0))]);
        Ok(())
    }

    // Rule: exactly `rank` spatial axes plus channels; the result is (None, channels).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let kind = self.kind();
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{kind} takes one tensor")))?;
        if x.rank() == self.rank + 1 {
            return Ok(Shape(vec![x.last()]));
        }
        let name = cx.name(0);
        let want = if self.rank == 2 { "an image (None, height, width, channels)" } else { "a sequence (None, steps, channels)" };
        let d = Diagnostic::new(cx.span, format!("{kind} expects {want} per sample, but {} has rank {}", cx.describe(0), x.rank() + 1));
        let other = kind.replace(if self.rank == 2 { "2D" } else { "1D" }, if self.rank == 2 { "1D" } else { "2D" });
        Err(match x.rank() {
            1 => d.help(format!("`{name}` is already a vector per sample: remove the pooling, or apply it before flattening")),
            r if r == 3 || r == 2 => d.help(format!("use `{other}()({name})` for a tensor of this rank")),
            _ => d.help(format!("reshape `{name}` first, e.g. `Reshape((...))({name})`")),
        })
    }

    // (None, channels), whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(1)
    }

    // pool::global_{avg,max}_forward(x, y, __b, positions, channels); global_avg_masked_forward with a
    // mask (Keras' GlobalAveragePooling1D averages the kept steps; GlobalMaxPooling1D ignores the mask).
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (positions, c) = Self::layout(cx);
        let x = cx.x(0);
        if let Some(m) = cx.mask(0).filter(|_| !self.max) {
            return quote!(::modelc::__private::kernels::pool::global_avg_masked_forward(#x, #m, &mut __y[..], __b, #positions, #c););
        }
        if self.max {
            quote!(::modelc::__private::kernels::pool::global_max_forward(#x, &mut __y[..], __b, #positions, #c);)
        } else {
            quote!(::modelc::__private::kernels::pool::global_avg_forward(#x, &mut __y[..], __b, #positions, #c);)
        }
    }

    // pool::global_max_backward(x, y, dy, dx, .., write) / pool::global_avg_backward(dy, dx, .., write)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (positions, c) = Self::layout(cx);
        let (dx, wr) = (cx.dx_mut(0), cx.dx_write(0));
        if let Some(m) = cx.mask(0).filter(|_| !self.max) {
            return quote!(::modelc::__private::kernels::pool::global_avg_masked_backward(&__dy[..], #m, #dx, __b, #positions, #c, #wr););
        }
        if self.max {
            let (x, y) = (cx.x(0), cx.y());
            quote!(::modelc::__private::kernels::pool::global_max_backward(#x, #y, &__dy[..], #dx, __b, #positions, #c, #wr);)
        } else {
            quote!(::modelc::__private::kernels::pool::global_avg_backward(&__dy[..], #dx, __b, #positions, #c, #wr);)
        }
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl GlobalPooling {
    /// Keras import: `GlobalAveragePooling{1,2}D()`, `GlobalMaxPooling{1,2}D()`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.channels_last();
        a.expect("keepdims", json!(false), "modelc drops the pooled axes; add a Reshape after the pooling instead of keepdims=True");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;

    #[test]
    fn global_pooling_needs_spatial_axes() {
        let (_, _, text) = one_error("input x: [8];\noutput y = GlobalAveragePooling2D()(x);");
        assert!(
            text.contains(
                "GlobalAveragePooling2D expects an image (None, height, width, channels) per sample, but `x` (None, 8) has rank 2"
            ),
            "{text}"
        );
        assert!(text.contains("already a vector"), "{text}");
        let (_, _, text) = one_error("input x: [5, 3];\noutput y = GlobalMaxPooling2D()(x);");
        assert!(text.contains("use `GlobalMaxPooling1D()(x)`"), "{text}");
    }
}
