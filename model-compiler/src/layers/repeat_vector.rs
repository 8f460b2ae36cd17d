//! `RepeatVector(n)`: a vector per sample repeated `n` times into a sequence, `(None, f)` ->
//! `(None, n, f)`, as Keras does (its input must have rank 2 with the batch).

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `RepeatVector(n)`.
#[derive(Clone, Debug, PartialEq)]
pub struct RepeatVector {
    /// Steps of the result.
    pub n: usize,
}

impl RepeatVector {
    /// `RepeatVector(n)`: `n` a positive integer, required.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let n = r.required_positive("n", Some(0))?;
        Some(RepeatVector { n })
    }

    /// Keras import: `RepeatVector(n)` from a Keras config.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("n");
    }

    /// Features per step (the operand's length).
    fn features(cx: &EmitCx) -> usize {
        cx.inputs.first().map(|o| o.shape.numel()).unwrap_or(0)
    }
}

impl LayerDef for RepeatVector {
    // Unsqueeze(x, [1]): (N, f) -> (N, 1, f); Mul by ones (1, n, 1), broadcast -> (N, n, f), exact.
    // (Expand or Tile would say it more directly, but tract 0.22's optimizer mis-rewrites either when a
    // Reshape and a MatMul follow, as in `TimeDistributed(Dense(..))(RepeatVector(n)(x))`.)
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let axes = cx.const_i64(&[1]);
        let u = cx.op("Unsqueeze", &[&x, &axes], Vec::new());
        let ones = cx.const_f32(&[1, self.n as i64, 1], &vec![1.0; self.n]);
        cx.node("Mul", &[&u, &ones], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: (None, f) -> (None, n, f); any other rank is an error (Keras' input spec is ndim = 2).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "RepeatVector takes one tensor"))?;
        if x.rank() == 1 {
            return Ok(Shape(vec![self.n, x.last()]));
        }
        let name = cx.name(0);
        Err(Diagnostic::new(
            cx.span,
            format!("RepeatVector expects a vector (None, features) per sample, but {} has rank {}", cx.describe(0), x.rank() + 1),
        )
        .help(format!(
            "flatten it first, `RepeatVector({})(Flatten()({name}))`, or pool it, e.g. `GlobalAveragePooling1D()({name})`",
            self.n
        )))
    }

    // (None, n, features), whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(2)
    }

    // repeat::forward(x, y, __b, n, features)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (x, n, f) = (cx.x(0), self.n, Self::features(cx));
        quote!(::modelc::__private::kernels::repeat::forward(#x, &mut __y[..], __b, #n, #f);)
    }

    // repeat::backward(dy, dx, __b, n, features, write): the steps' gradients summed.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (dx, wr, n, f) = (cx.dx_mut(0), cx.dx_write(0), self.n, Self::features(cx));
        quote!(::modelc::__private::kernels::repeat::backward(&__dy[..], #dx, __b, #n, #f, #wr);)
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
    fn repeat_vector_makes_a_sequence_of_a_vector() {
        assert_eq!(ok_shapes("struct M { input x: [5]; output y = RepeatVector(3)(x); }"), vec![vec![3, 5]]);
        assert_eq!(ok_shapes("struct M { input x: [5]; output y = RepeatVector(n = 1)(x); }"), vec![vec![1, 5]]);
    }

    #[test]
    fn repeat_vector_rejects_a_sequence_and_a_bad_count() {
        let (line, col, text) = one_error("input x: [4, 3];\noutput y = RepeatVector(2)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("RepeatVector expects a vector (None, features) per sample, but `x` (None, 4, 3) has rank 3"), "{text}");
        assert!(text.contains("help: flatten it first, `RepeatVector(2)(Flatten()(x))`"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = RepeatVector(0)(x);");
        assert!(text.contains("`n` of RepeatVector must be a positive integer, got 0"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = RepeatVector()(x);");
        assert!(text.contains("RepeatVector is missing its required argument `n`"), "{text}");
    }
}
