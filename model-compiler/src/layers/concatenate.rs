//! `Concatenate(axis = -1)`: joins a list of tensors along one axis.

use super::args::ArgReader;
use super::{Arity, EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

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
        let full = i64::try_from(rank).ok()? + 1;
        let a = if self.axis < 0 { self.axis + full } else { self.axis };
        if a >= 1 && a < full {
            usize::try_from(a - 1).ok()
        } else {
            None
        }
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
