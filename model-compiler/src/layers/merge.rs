//! The element-wise merges `Add`, `Subtract`, `Multiply`, `Average`, `Maximum`, `Minimum`: one shape rule
//! (Keras' broadcasting) and one emitter, parameterized by the operation, as in the runtime's `merge.rs`.

use super::args::ArgReader;
use super::{Arity, EmitCx, InferCx, LayerDef, MaskRule};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// Which element-wise merge (Keras class names).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeOp {
    /// `Add()`: x0 + x1 + ...
    Add,
    /// `Subtract()`: x0 - x1, exactly two tensors.
    Subtract,
    /// `Multiply()`: x0 * x1 * ...
    Multiply,
    /// `Average()`: the mean.
    Average,
    /// `Maximum()`: the element-wise maximum.
    Maximum,
    /// `Minimum()`: the element-wise minimum.
    Minimum,
}

impl MergeOp {
    /// The Keras class name.
    pub fn keras_name(self) -> &'static str {
        match self {
            MergeOp::Add => "Add",
            MergeOp::Subtract => "Subtract",
            MergeOp::Multiply => "Multiply",
            MergeOp::Average => "Average",
            MergeOp::Maximum => "Maximum",
            MergeOp::Minimum => "Minimum",
        }
    }

    fn tokens(self) -> TokenStream {
        let p = quote!(::modelc::__private::kernels::merge::MergeOp);
        match self {
            MergeOp::Add => quote!(#p::Add),
            MergeOp::Subtract => quote!(#p::Subtract),
            MergeOp::Multiply => quote!(#p::Multiply),
            MergeOp::Average => quote!(#p::Average),
            MergeOp::Maximum => quote!(#p::Maximum),
            MergeOp::Minimum => quote!(#p::Minimum),
        }
    }
}

/// An element-wise merge layer. No parameters.
#[derive(Clone, Debug, PartialEq)]
pub struct Merge {
    /// The operation.
    pub op: MergeOp,
}

impl Merge {
    /// `Add()`, `Subtract()`, ...: no arguments besides the common `name`/`trainable`.
    pub fn parse(_r: &mut ArgReader<'_>, op: MergeOp) -> Option<Self> {
        Some(Merge { op })
    }
}

/// Keras' `_compute_elemwise_op_output_shape` on per-sample shapes: right-aligned, each pair of dims equal
/// or one of them 1; the shorter shape is padded with leading 1s (Keras expands it at axis 1).
/// `Err(k)` names the conflicting position counted from the end (0 = last axis).
pub fn broadcast(a: &[usize], b: &[usize]) -> Result<Vec<usize>, usize> {
    let rank = a.len().max(b.len());
    let mut out = vec![1; rank];
    for (k, o) in out.iter_mut().rev().enumerate() {
        let x = a.len().checked_sub(k + 1).and_then(|i| a.get(i)).copied().unwrap_or(1);
        let y = b.len().checked_sub(k + 1).and_then(|i| b.get(i)).copied().unwrap_or(1);
        *o = match (x, y) {
            (1, y) => y,
            (x, 1) => x,
            (x, y) if x == y => x,
            _ => return Err(k),
        };
    }
    Ok(out)
}

/// `dims` padded with leading 1s to `rank` (batch excluded).
fn padded(dims: &[usize], rank: usize) -> Vec<usize> {
    let mut out = vec![1; rank.saturating_sub(dims.len())];
    out.extend_from_slice(dims);
    out
}

impl LayerDef for Merge {
    // Keras' `Merge.compute_mask`: the OR of the operands' masks when each has one.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Any
    }

    // Add, Average, Maximum, Minimum: the variadic Sum, Mean, Max, Min; Subtract: Sub; Multiply: a chain of Mul.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let ins: Vec<String> = (0..cx.n_inputs()).map(|i| cx.input(i)).collect();
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        let out = cx.output();
        let op = match self.op {
            MergeOp::Add => "Sum",
            MergeOp::Average => "Mean",
            MergeOp::Maximum => "Max",
            MergeOp::Minimum => "Min",
            MergeOp::Subtract => "Sub",
            MergeOp::Multiply => {
                let (first, rest) = refs.split_first().ok_or(OnnxError::Unsupported("no operands".into()))?;
                let mut acc = first.to_string();
                for (i, r) in rest.iter().enumerate() {
                    let to = if i + 1 == rest.len() { out.clone() } else { cx.fresh("mul") };
                    cx.node("Mul", &[&acc, r], &[&to], Vec::new());
                    acc = to;
                }
                if rest.is_empty() {
                    cx.node("Identity", &[&acc], &[&out], Vec::new());
                }
                return Ok(());
            }
        };
        cx.node(op, &refs, &[&out], Vec::new());
        Ok(())
    }

    fn arity(&self) -> Arity {
        let max = if self.op == MergeOp::Subtract { Some(2) } else { None };
        Arity::List { min: 2, max }
    }

    // Rule (Keras 3 `Merge.build`): folding left over the operands, every pair of right-aligned dims is
    // equal or one of them is 1; a lower-rank operand is expanded with 1s after the batch axis.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let name = self.op.keras_name();
        let first = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{name} needs at least two tensors")))?;
        let mut acc = first.0.clone();
        for (i, s) in cx.inputs.iter().enumerate().skip(1) {
            match broadcast(&acc, &s.0) {
                Ok(out) => acc = out,
                Err(k) => {
                    let at = |sh: &Shape| sh.0.len().checked_sub(k + 1).and_then(|d| sh.0.get(d)).copied().unwrap_or(1);
                    let want = acc.len().checked_sub(k + 1).and_then(|d| acc.get(d)).copied().unwrap_or(1);
                    let got = at(s);
                    // The earlier operand that fixed that dimension.
                    let j = cx.inputs.iter().take(i).position(|p| at(p) == want).unwrap_or(0);
                    let rank = acc.len().max(s.rank());
                    let axis = rank - k;
                    let (a, b) = (cx.name(j), cx.name(i));
                    let help = if k == 0 {
                        format!("project `{b}` to {want} features first, e.g. `Dense({want})({b})`, or join tensors of different sizes with `Concatenate()([{a}, {b}])`")
                    } else {
                        format!("give `{a}` and `{b}` the same size on axis {axis} (or size 1 there, which broadcasts), or join them along it with `Concatenate(axis = {axis})([{a}, {b}])`")
                    };
                    return Err(Diagnostic::new(
                        cx.span,
                        format!(
                            "{name} cannot merge {} with {}: axis {axis} has size {want} vs {got}, and element-wise merges need equal sizes (or 1, which broadcasts)",
                            cx.describe(j),
                            cx.describe(i),
                        ),
                    )
                    .help(help));
                }
            }
        }
        Ok(Shape(acc))
    }

    // Same shapes: merge::forward(op, &[x0, x1, ...], y); otherwise merge::forward_broadcast with
    // every shape (batch first) padded to the output's rank.
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let op = self.op.tokens();
        let xs: Vec<TokenStream> = (0..cx.inputs.len()).map(|i| cx.x(i)).collect();
        if self.same_shapes(cx) {
            quote!(::modelc::__private::kernels::merge::forward(#op, &[#(#xs),*], &mut __y[..]);)
        } else {
            let (shapes, y_shape) = self.shape_tokens(cx);
            quote!(::modelc::__private::kernels::merge::forward_broadcast(#op, &[#(#xs),*], &[#(#shapes),*], #y_shape, &mut __y[..]);)
        }
    }

    // For each operand needing a gradient: merge::backward(op, xs, dy, i, dx) (or backward_broadcast,
    // which sums dy over the broadcast axes).
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let op = self.op.tokens();
        let xs: Vec<TokenStream> = (0..cx.inputs.len()).map(|i| cx.x(i)).collect();
        let same = self.same_shapes(cx);
        let (shapes, y_shape) = self.shape_tokens(cx);
        let mut out = TokenStream::new();
        for i in 0..cx.inputs.len() {
            if !cx.needs_grad(i) {
                continue;
            }
            let (dx, wr) = (cx.dx_mut(i), cx.dx_write(i));
            out.extend(if same {
                quote!(::modelc::__private::kernels::merge::backward(#op, &[#(#xs),*], &__dy[..], #i, #dx, #wr);)
            } else {
                quote!(::modelc::__private::kernels::merge::backward_broadcast(#op, &[#(#xs),*], &[#(#shapes),*], #y_shape, &__dy[..], #i, #dx, #wr);)
            });
        }
        out
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl Merge {
    fn same_shapes(&self, cx: &EmitCx) -> bool {
        cx.inputs.iter().all(|o| o.shape == cx.output.shape)
    }

    /// `&[__b, d1, ...]` for each operand padded to the output rank, and for the output.
    fn shape_tokens(&self, cx: &EmitCx) -> (Vec<TokenStream>, TokenStream) {
        let rank = cx.output.shape.rank();
        let shapes = cx
            .inputs
            .iter()
            .map(|o| {
                let d = padded(&o.shape.0, rank);
                quote!(&[__b, #(#d),*][..])
            })
            .collect();
        let y = &cx.output.shape.0;
        (shapes, quote!(&[__b, #(#y),*]))
    }
}

impl Merge {
    /// Keras import: `Add()`, `Subtract()`, ... take no arguments.
    pub fn from_keras(_a: &mut KerasArgs<'_>) {}
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::tests::{errors, ok_shapes};

    #[test]
    fn broadcast_follows_keras_elementwise_rule() {
        assert_eq!(broadcast(&[8], &[8]), Ok(vec![8]));
        assert_eq!(broadcast(&[8], &[1]), Ok(vec![8]));
        assert_eq!(broadcast(&[4, 8], &[8]), Ok(vec![4, 8]));
        assert_eq!(broadcast(&[4, 1], &[1, 8]), Ok(vec![4, 8]));
        assert_eq!(broadcast(&[2, 1, 3], &[5, 3]), Ok(vec![2, 5, 3]));
        assert_eq!(broadcast(&[8], &[4]), Err(0));
        assert_eq!(broadcast(&[3, 8], &[4, 8]), Err(1));
    }

    #[test]
    fn every_merge_accepts_equal_shapes() {
        for op in ["Add", "Multiply", "Average", "Maximum", "Minimum", "Subtract"] {
            let src = format!("struct M {{ input a: [8]; input b: [8]; output y = {op}()([a, b]); }}");
            assert_eq!(ok_shapes(&src), vec![vec![8]], "{op}");
        }
    }

    #[test]
    fn merges_broadcast_size_one_dims_and_lower_ranks_like_keras() {
        let src = "struct M { input a: [4, 8]; input b: [1, 8]; input c: [8]; input d: [4, 1]; output y = Add()([a, b, c, d]); }";
        assert_eq!(ok_shapes(src), vec![vec![4, 8]]);
        let src = "struct M { input a: [1]; input b: [6]; output y = Multiply()([a, b]); }";
        assert_eq!(ok_shapes(src), vec![vec![6]]);
    }

    #[test]
    fn add_rejects_mismatched_feature_sizes_naming_both_tensors() {
        let e = errors("struct M { input a: [8]; input b: [4]; output y = Add()([a, b]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].0,
            "Add cannot merge `a` (None, 8) with `b` (None, 4): axis 1 has size 8 vs 4, and element-wise merges need equal sizes (or 1, which broadcasts)"
        );
        assert_eq!(
            e[0].1.as_deref(),
            Some("project `b` to 8 features first, e.g. `Dense(8)(b)`, or join tensors of different sizes with `Concatenate()([a, b])`")
        );
    }

    #[test]
    fn merge_conflict_names_the_operand_that_fixed_the_dimension() {
        let e = errors("struct M { input a: [1, 8]; input b: [3, 8]; input c: [5, 8]; output y = Maximum()([a, b, c]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert!(e[0].0.starts_with("Maximum cannot merge `b` (None, 3, 8) with `c` (None, 5, 8): axis 1 has size 3 vs 5"), "{e:?}");
        assert!(!e[0].1.as_deref().unwrap().contains("Dense"), "no projection hint for a non-feature axis: {e:?}");
    }

    #[test]
    fn subtract_takes_exactly_two_tensors() {
        let e = errors("struct M { input a: [8]; input b: [8]; input c: [8]; output y = Subtract()([a, b, c]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(e[0].0, "Subtract takes exactly 2 tensors, but is given 3");
    }

    #[test]
    fn merges_need_at_least_two_tensors() {
        let e = errors("struct M { input a: [8]; output y = Minimum()([a]); }");
        assert_eq!(e[0].0, "Minimum needs at least 2 tensors, but is given 1");
        let e = errors("struct M { input a: [8]; output y = Average()(a); }");
        assert_eq!(e[0].0, "Average merges a list of tensors, but is called on the single tensor `a`");
    }
}
