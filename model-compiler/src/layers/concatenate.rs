//! `Concatenate(axis = -1)`: joins a list of tensors along one axis.

use super::args::ArgReader;
use super::{Arity, EmitCx, InferCx, LayerDef, MaskRule};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// Concatenation along `axis`, counted like Keras on the full tensor (batch is axis 0, -1 the last).
#[derive(Clone, Debug, PartialEq)]
pub struct Concatenate {
    /// The axis as written.
    pub axis: i64,
}

impl Concatenate {
    /// `Concatenate(axis = -1)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let axis = r.int_or("axis", Some(0), -1)?;
        Some(Concatenate { axis })
    }

    /// The per-sample axis (batch excluded) for tensors of per-sample rank `rank`, if valid.
    pub fn sample_axis(&self, rank: usize) -> Option<usize> {
        crate::shape::sample_axis(self.axis, rank)
    }

    fn layout(&self, inputs: &[Shape]) -> (usize, Vec<usize>) {
        let rank = inputs.first().map(Shape::rank).unwrap_or(0);
        let axis = self.sample_axis(rank).unwrap_or(0);
        let outer = inputs.first().map(|s| s.0.iter().take(axis).product()).unwrap_or(1);
        let inner = inputs.iter().map(|s| s.0.iter().skip(axis).product()).collect();
        (outer, inner)
    }
}

impl LayerDef for Concatenate {
    // Keras' `Concatenate.compute_mask` (docs/masks.md): along the features (the last axis of a
    // sequence), the OR of the operands' masks when each has one; along the steps of sequences
    // (batch, steps, features), the masks joined, all kept for an operand without one.
    fn mask_rule(&self, cx: &InferCx<'_>) -> MaskRule {
        let rank = cx.inputs.first().map_or(0, Shape::rank);
        match self.sample_axis(rank) {
            Some(a) if rank >= 2 && a + 1 == rank => MaskRule::Any,
            Some(0) if rank == 2 => MaskRule::Concat,
            _ => MaskRule::Drop,
        }
    }

    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let ins: Vec<String> = (0..cx.n_inputs()).map(|i| cx.input(i)).collect();
        let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
        cx.node("Concat", &refs, &[&cx.output()], vec![("axis", Attr::Int(self.axis))]);
        Ok(())
    }

    fn arity(&self) -> Arity {
        Arity::List { min: 2, max: None }
    }

    // Rule: same rank; every dimension but the axis equal; the axis dims add up.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let first = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Concatenate needs at least two tensors"))?;
        let rank = first.rank();
        for (i, s) in cx.inputs.iter().enumerate().skip(1) {
            if s.rank() != rank {
                return Err(Diagnostic::new(
                    cx.span,
                    format!(
                        "Concatenate needs tensors of the same rank, but {} has rank {} and {} has rank {}",
                        cx.describe(0),
                        rank + 1,
                        cx.describe(i),
                        s.rank() + 1
                    ),
                )
                .help(format!(
                    "reshape or flatten one of them first, e.g. `Flatten()({})`",
                    cx.name(if s.rank() > rank { i } else { 0 })
                )));
            }
        }
        let Some(axis) = self.sample_axis(rank) else {
            let full = rank + 1;
            let msg = if self.axis == 0 || self.axis == -(full as i64) {
                "Concatenate cannot join along the batch axis (axis 0)".to_string()
            } else {
                format!("axis {} is out of range for Concatenate of tensors of rank {} like {}", self.axis, full, cx.describe(0))
            };
            return Err(Diagnostic::new(cx.span, msg).help(format!("use an axis from 1 to {} or from -1 to -{}", rank, rank)));
        };
        let mut dims = first.0.clone();
        let mut total = 0usize;
        for (i, s) in cx.inputs.iter().enumerate() {
            for (d, (a, b)) in first.0.iter().zip(&s.0).enumerate() {
                if d != axis && a != b {
                    return Err(Diagnostic::new(
                        cx.span,
                        format!(
                            "Concatenate(axis={}) needs all dimensions except axis {} to match, but {} and {} differ at axis {} ({} vs {})",
                            self.axis,
                            axis + 1,
                            cx.describe(0),
                            cx.describe(i),
                            d + 1,
                            a,
                            b
                        ),
                    )
                    .help(format!(
                        "give `{}` and `{}` the same size on axis {}, or concatenate along that axis instead (`axis = {}`)",
                        cx.name(0),
                        cx.name(i),
                        d + 1,
                        d + 1
                    )));
                }
            }
            total += s.0.get(axis).copied().unwrap_or(0);
        }
        if let Some(a) = dims.get_mut(axis) {
            *a = total;
        }
        Ok(Shape(dims))
    }

    // concat::forward(&[x0, x1, ...], &[inner0, inner1, ...], rows, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let shapes: Vec<Shape> = cx.inputs.iter().map(|o| o.shape.clone()).collect();
        let (outer, inner) = self.layout(&shapes);
        let xs: Vec<TokenStream> = (0..cx.inputs.len()).map(|i| cx.x(i)).collect();
        let rows = cx.rows(outer);
        quote!(::modelc::__private::kernels::concat::forward(&[#(#xs),*], &[#(#inner),*], #rows, &mut __y[..]);)
    }

    // concat::backward(dy, offset, inner, total_inner, rows, dx) for each operand needing a gradient
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let shapes: Vec<Shape> = cx.inputs.iter().map(|o| o.shape.clone()).collect();
        let (outer, inner) = self.layout(&shapes);
        let total: usize = inner.iter().sum();
        let rows = cx.rows(outer);
        let mut out = TokenStream::new();
        let mut offset = 0usize;
        for (i, n) in inner.iter().enumerate() {
            if cx.needs_grad(i) {
                let dx = cx.dx_mut(i);
                out.extend(quote!(::modelc::__private::kernels::concat::backward(&__dy[..], #offset, #n, #total, #rows, #dx);));
            }
            offset += n;
        }
        out
    }
}

impl Concatenate {
    /// Keras import: `Concatenate(axis = -1)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.kw("axis", json!(-1));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::tests::{errors, ok_shapes, typed_of};
    use crate::layers::MaskRule;

    #[test]
    fn along_the_steps_the_masks_are_joined_into_a_new_mask_when_any_operand_has_one() {
        let src = "struct M { input t: [5] as i32; input x: [3, 4]; input z: [3, 4];
            let e = Embedding(20, 4, mask_zero = true)(t);
            output a = Concatenate(axis = 1)([e, x]); output b = Concatenate(axis = 1)([x, z]);
            output c = Concatenate()([e, e]); }";
        let typed = typed_of(src);
        let out = |k: usize| typed.model.outputs[k].value;
        let a = typed.masks[out(0).0].expect("the joined mask");
        assert_eq!(typed.shapes[a.0].as_ref().map(|s| s.0.clone()), Some(vec![8]));
        let made: Vec<MaskRule> = typed.made_masks.iter().flatten().map(|m| m.rule).collect();
        assert_eq!(made, [MaskRule::Produce, MaskRule::Concat], "c is e's own mask: no new value");
        assert!(typed.masks[out(1).0].is_none(), "no operand carries a mask");
        assert!(typed.masks[out(2).0].is_some());
    }

    #[test]
    fn concatenate_joins_any_axis_of_rank_two_to_four_tensors() {
        let m = |a: &str, b: &str, axis: i64| {
            format!("struct M {{ input a: {a}; input b: {b}; output y = Concatenate(axis = {axis})([a, b]); }}")
        };
        assert_eq!(ok_shapes(&m("[8]", "[4]", -1)), vec![vec![12]]);
        assert_eq!(ok_shapes(&m("[8]", "[4]", 1)), vec![vec![12]]);
        assert_eq!(ok_shapes(&m("[3, 8]", "[5, 8]", 1)), vec![vec![8, 8]]);
        assert_eq!(ok_shapes(&m("[3, 8]", "[3, 2]", -1)), vec![vec![3, 10]]);
        assert_eq!(ok_shapes(&m("[3, 8]", "[5, 8]", -2)), vec![vec![8, 8]]);
        assert_eq!(ok_shapes(&m("[4, 4, 3]", "[4, 4, 5]", -1)), vec![vec![4, 4, 8]]);
        assert_eq!(ok_shapes(&m("[4, 2, 3]", "[4, 6, 3]", 2)), vec![vec![4, 8, 3]]);
        assert_eq!(ok_shapes(&m("[1, 4, 3]", "[2, 4, 3]", -3)), vec![vec![3, 4, 3]]);
    }

    #[test]
    fn concat_rejects_mismatched_non_axis_dims() {
        let e = errors("struct M { input a: [3, 8]; input b: [4, 2]; output y = Concatenate()([a, b]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].0,
            "Concatenate(axis=-1) needs all dimensions except axis 2 to match, but `a` (None, 3, 8) and `b` (None, 4, 2) differ at axis 1 (3 vs 4)"
        );
        assert_eq!(
            e[0].1.as_deref(),
            Some("give `a` and `b` the same size on axis 1, or concatenate along that axis instead (`axis = 1`)")
        );
    }

    #[test]
    fn concat_rejects_different_ranks_and_the_batch_axis() {
        let e = errors("struct M { input a: [3, 8]; input b: [8]; output y = Concatenate()([a, b]); }");
        assert_eq!(e[0].0, "Concatenate needs tensors of the same rank, but `a` (None, 3, 8) has rank 3 and `b` (None, 8) has rank 2");
        assert_eq!(e[0].1.as_deref(), Some("reshape or flatten one of them first, e.g. `Flatten()(a)`"));
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Concatenate(axis = 0)([a, b]); }");
        assert_eq!(e[0].0, "Concatenate cannot join along the batch axis (axis 0)");
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Concatenate(axis = 3)([a, b]); }");
        assert_eq!(e[0].0, "axis 3 is out of range for Concatenate of tensors of rank 2 like `a` (None, 8)");
    }
}
