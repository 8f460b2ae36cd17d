//! `Flatten()` and `Reshape(target_shape)`: the same row-major elements seen with another per-sample
//! shape. `Reshape` allows one `-1`, resolved at compile time; the element counts must match.

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `Flatten()`: `(None, d1, d2, ...)` -> `(None, d1·d2·...)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Flatten;

impl Flatten {
    /// `Flatten()` (Keras' `data_format` is not supported: channels-last only).
    pub fn parse(_r: &mut ArgReader<'_>) -> Option<Self> {
        Some(Flatten)
    }
}

/// reshape::forward(x, y): a copy.
fn copy_forward(cx: &EmitCx) -> TokenStream {
    let x = cx.x(0);
    quote!(::modelc::__private::kernels::reshape::forward(#x, &mut __y[..]);)
}

/// reshape::backward(dy, dx, write): an accumulation, or a copy for the gradient's first writer.
fn copy_backward(cx: &EmitCx) -> TokenStream {
    if !cx.needs_grad(0) {
        return TokenStream::new();
    }
    let (dx, wr) = (cx.dx_mut(0), cx.dx_write(0));
    quote!(::modelc::__private::kernels::reshape::backward(&__dy[..], #dx, #wr);)
}

impl LayerDef for Flatten {
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        cx.node("Flatten", &[&cx.input(0)], &[&cx.output()], vec![("axis", Attr::Int(1))]);
        Ok(())
    }

    // Rule: any shape; the result holds all its elements in one axis.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Flatten takes one tensor"))?;
        Ok(Shape(vec![x.numel()]))
    }

    // A vector, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(1)
    }

    fn forward(&self, cx: &EmitCx) -> TokenStream {
        copy_forward(cx)
    }

    fn backward(&self, cx: &EmitCx) -> TokenStream {
        copy_backward(cx)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

/// `Reshape(target_shape)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Reshape {
    /// The target as written (at most one -1, already checked).
    pub target: Vec<i64>,
}

impl Reshape {
    /// `Reshape(target_shape)`: a tuple of positive sizes with at most one `-1`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let Some((target, tspan)) = r.int_tuple("target_shape", Some(0)) else {
            if !r.failed() {
                r.error(
                    Diagnostic::new(span, "Reshape is missing its required argument `target_shape`")
                        .help("give the per-sample shape without the batch, e.g. `Reshape((8, 8, 1))`"),
                );
            }
            return None;
        };
        if target.is_empty() {
            r.error(Diagnostic::new(tspan, "`target_shape` of Reshape is empty").help("give at least one size, e.g. `Reshape((16,))`"));
            return None;
        }
        if target.iter().filter(|d| **d == -1).count() > 1 {
            r.error(
                Diagnostic::new(tspan, "`target_shape` of Reshape may contain only one -1")
                    .help("give every size but one; the -1 is inferred from the element count"),
            );
            return None;
        }
        if let Some(bad) = target.iter().find(|d| **d == 0 || **d < -1) {
            r.error(
                Diagnostic::new(tspan, format!("`target_shape` of Reshape must hold positive sizes (and one -1 at most), got {bad}"))
                    .help("sizes exclude the batch dimension, e.g. `Reshape((8, 8, 1))` or `Reshape((-1, 3))`"),
            );
            return None;
        }
        Some(Reshape { target })
    }

    fn show(&self) -> String {
        let dims: Vec<String> = self.target.iter().map(i64::to_string).collect();
        if dims.len() == 1 {
            format!("({},)", dims.join(", "))
        } else {
            format!("({})", dims.join(", "))
        }
    }
}

impl LayerDef for Reshape {
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let dims = cx.output_shape().0.clone();
        cx.reshape_into(&cx.input(0), &dims, &cx.output());
        Ok(())
    }

    // Rule: the target holds as many elements as the input; a -1 takes the quotient, which must be exact.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Reshape takes one tensor"))?;
        let n = x.numel();
        // Saturating: an absurd target (`Reshape((3, 9223372036854775807))`) is a size error, not an overflow.
        let known = self.target.iter().filter_map(|d| usize::try_from(*d).ok()).fold(1usize, usize::saturating_mul);
        let free = self.target.contains(&-1);
        let name = cx.name(0);
        let fill = if free && known > 0 && n % known == 0 { Some(n / known) } else { None };
        let ok = if free { fill.is_some() } else { known == n };
        if !ok {
            let msg = if free {
                format!("Reshape({}) cannot split the {n} elements of {} with a whole number for -1", self.show(), cx.describe(0))
            } else {
                format!("Reshape({}) needs {known} elements per sample, but {} has {n}", self.show(), cx.describe(0))
            };
            return Err(Diagnostic::new(cx.span, msg)
                .help(format!("choose sizes that multiply to {n}, or use -1 for one of them, e.g. `Reshape(({n},))({name})`")));
        }
        let dims = self.target.iter().map(|d| usize::try_from(*d).ok().or(fill).unwrap_or(0)).collect();
        Ok(Shape(dims))
    }

    // The target's rank, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.target.len())
    }

    fn forward(&self, cx: &EmitCx) -> TokenStream {
        copy_forward(cx)
    }

    fn backward(&self, cx: &EmitCx) -> TokenStream {
        copy_backward(cx)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl Reshape {
    /// Keras import: `Reshape(target_shape)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("target_shape");
    }
}

impl Flatten {
    /// Keras import: `Flatten()`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.channels_last();
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;

    #[test]
    fn an_absurd_target_is_a_size_error_not_an_overflow() {
        let (_, _, text) = one_error("input x: [6];\noutput y = Reshape((3, 9223372036854775807))(x);");
        assert!(text.contains("needs 18446744073709551615 elements per sample, but `x` (None, 6) has 6"), "{text}");
    }

    #[test]
    fn reshape_checks_the_element_count_at_compile_time() {
        let (line, col, text) = one_error("input x: [12];\noutput y = Reshape((5, 2))(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("Reshape((5, 2)) needs 10 elements per sample, but `x` (None, 12) has 12"), "{text}");
        assert!(text.contains("help: choose sizes that multiply to 12"), "{text}");
        let (_, _, text) = one_error("input x: [12];\noutput y = Reshape((5, -1))(x);");
        assert!(text.contains("cannot split the 12 elements of `x` (None, 12)"), "{text}");
    }

    #[test]
    fn reshape_allows_one_minus_one_and_positive_sizes_only() {
        let (_, _, text) = one_error("input x: [12];\noutput y = Reshape((-1, -1))(x);");
        assert!(text.contains("may contain only one -1"), "{text}");
        let (_, _, text) = one_error("input x: [12];\noutput y = Reshape((0, 12))(x);");
        assert!(text.contains("must hold positive sizes"), "{text}");
        let (_, _, text) = one_error("input x: [12];\noutput y = Reshape()(x);");
        assert!(text.contains("missing its required argument `target_shape`"), "{text}");
    }

    #[test]
    fn flatten_and_reshape_shapes_reach_later_rules() {
        let (_, _, text) = one_error("input x: [4, 3, 2];\nlet f = Reshape((4, -1))(Flatten()(x));\noutput y = Conv2D(2, 1)(f);");
        assert!(text.contains("(None, 4, 6)"), "{text}");
    }
}
