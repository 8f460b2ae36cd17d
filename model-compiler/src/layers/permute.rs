//! `Permute(dims)`: the per-sample axes reordered, as Keras does: `dims` is a permutation of `1..=rank`
//! (axis 1 is the first axis after the batch, which never moves), and output axis `k` is input axis
//! `dims[k]`, e.g. `Permute((2, 1))` swaps steps and features of a sequence.

use super::args::ArgReader;
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{ints, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `Permute(dims)`.
#[derive(Clone, Debug, PartialEq)]
pub struct Permute {
    /// The permutation, 0-based over the per-sample axes (Keras' `dims` minus one).
    pub perm: Vec<usize>,
}

impl Permute {
    /// `Permute(dims)`: a tuple holding each of `1, 2, ..., len` once.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let Some((dims, dspan)) = r.int_tuple("dims", Some(0)) else {
            if !r.failed() {
                r.error(
                    Diagnostic::new(span, "Permute is missing its required argument `dims`")
                        .help("give the new order of the axes after the batch, 1-based, e.g. `Permute((2, 1))`"),
                );
            }
            return None;
        };
        let mut sorted = dims.clone();
        sorted.sort_unstable();
        let identity: Vec<i64> = (1..=dims.len() as i64).collect();
        if dims.is_empty() || sorted != identity {
            let shown: Vec<String> = dims.iter().map(i64::to_string).collect();
            let want: Vec<String> = identity.iter().map(i64::to_string).collect();
            let want = if want.is_empty() { String::from("1, 2") } else { want.join(", ") };
            r.error(Diagnostic::new(dspan, format!("`dims` of Permute must hold each of {want} once, got ({})", shown.join(", "))).help(
                "axes are counted from 1 after the batch, which never moves, e.g. `Permute((2, 1))` swaps the two axes of a sequence",
            ));
            return None;
        }
        Some(Permute { perm: dims.iter().map(|d| (d - 1) as usize).collect() })
    }

    /// Keras import: `Permute(dims)` from a Keras config, `dims` always a tuple (`(1,)` for one axis).
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        match a.get("dims") {
            Some(v) if v.is_array() => a.args.push(crate::import::args::dsl_value(v)),
            Some(v) => a.problem(format!("`dims` = {v} is not a list of axes")),
            None => a.problem(String::from("`dims` is missing from the config: re-save the model with Keras 3")),
        }
    }

    /// Keras' `dims`, as written.
    fn show(&self) -> String {
        let dims: Vec<String> = self.perm.iter().map(|a| (a + 1).to_string()).collect();
        if dims.len() == 1 {
            format!("({},)", dims.join(""))
        } else {
            format!("({})", dims.join(", "))
        }
    }

    /// `Permutation { out_dims, src_strides }` over the operand's per-sample dimensions.
    fn plan(&self, cx: &EmitCx) -> TokenStream {
        let dims = cx.inputs.first().map(|o| o.shape.0.clone()).unwrap_or_default();
        let strides: Vec<usize> = (0..dims.len()).map(|a| dims.get(a + 1..).map_or(1, |s| s.iter().product())).collect();
        let out: Vec<usize> = self.perm.iter().map(|&a| dims.get(a).copied().unwrap_or(0)).collect();
        let src: Vec<usize> = self.perm.iter().map(|&a| strides.get(a).copied().unwrap_or(0)).collect();
        quote!(::modelc::__private::kernels::permute::Permutation { out_dims: &[#(#out),*], src_strides: &[#(#src),*] })
    }
}

impl LayerDef for Permute {
    // Transpose(x, perm = (0, dims...)): the batch axis stays first.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let perm: Vec<usize> = std::iter::once(0).chain(self.perm.iter().map(|a| a + 1)).collect();
        let x = cx.input(0);
        cx.node("Transpose", &[&x], &[&cx.output()], vec![("perm", ints(&perm))]);
        Ok(())
    }

    // Rule: the operand has `len(dims)` axes after the batch; output axis k has input axis dims[k]'s size.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Permute takes one tensor"))?;
        if x.rank() == self.perm.len() {
            return Ok(Shape(self.perm.iter().map(|&a| x.0.get(a).copied().unwrap_or(0)).collect()));
        }
        let name = cx.name(0);
        let fix: Vec<String> = (1..=x.rank()).rev().map(|a| a.to_string()).collect();
        let fix = if fix.len() == 1 { format!("({},)", fix.join("")) } else { format!("({})", fix.join(", ")) };
        Err(Diagnostic::new(
            cx.span,
            format!("Permute({}) reorders {} axes after the batch, but {} has {}", self.show(), self.perm.len(), cx.describe(0), x.rank()),
        )
        .help(format!("give one entry per axis after the batch, e.g. `Permute({fix})({name})` reverses them")))
    }

    // As many axes as `dims` has, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.perm.len())
    }

    // permute::forward(&Permutation { .. }, x, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (p, x) = (self.plan(cx), cx.x(0));
        quote!(::modelc::__private::kernels::permute::forward(&#p, #x, &mut __y[..], __b);)
    }

    // permute::backward(&Permutation { .. }, dy, dx, __b, write): dy scattered back to the input's order.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (p, dx, wr) = (self.plan(cx), cx.dx_mut(0), cx.dx_write(0));
        quote!(::modelc::__private::kernels::permute::backward(&#p, &__dy[..], #dx, __b, #wr);)
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
    fn permute_reorders_axes_of_any_rank() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("Permute((2, 1))", "[4, 3]")), vec![vec![3, 4]]);
        assert_eq!(ok_shapes(&src("Permute((3, 1, 2))", "[4, 3, 2]")), vec![vec![2, 4, 3]]);
        assert_eq!(ok_shapes(&src("Permute(dims = (1,))", "[7]")), vec![vec![7]]);
        assert_eq!(ok_shapes(&src("Permute((2, 4, 1, 3))", "[2, 3, 4, 5]")), vec![vec![3, 5, 2, 4]]);
    }

    #[test]
    fn permute_dims_must_be_a_permutation_from_one() {
        let (_, _, text) = one_error("input x: [4, 3];\noutput y = Permute((0, 1))(x);");
        assert!(text.contains("`dims` of Permute must hold each of 1, 2 once, got (0, 1)"), "{text}");
        assert!(text.contains("help: axes are counted from 1 after the batch"), "{text}");
        let (_, _, text) = one_error("input x: [4, 3];\noutput y = Permute((2, 2))(x);");
        assert!(text.contains("must hold each of 1, 2 once, got (2, 2)"), "{text}");
        let (_, _, text) = one_error("input x: [4, 3];\noutput y = Permute()(x);");
        assert!(text.contains("Permute is missing its required argument `dims`"), "{text}");
    }

    #[test]
    fn permute_of_the_wrong_rank_is_an_error_at_the_layer() {
        let (line, col, text) = one_error("input x: [4, 3, 2];\noutput y = Permute((2, 1))(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("Permute((2, 1)) reorders 2 axes after the batch, but `x` (None, 4, 3, 2) has 3"), "{text}");
        assert!(text.contains("help: give one entry per axis after the batch, e.g. `Permute((3, 2, 1))(x)` reverses them"), "{text}");
    }
}
