//! `Dot(axes, normalize = false)`: the per-sample dot product of two tensors along one axis of each
//! (Keras' `batch_dot`), optionally of their l2-normalized versions (cosine similarity).

use super::args::ArgReader;
use super::{Arity, EmitCx, InferCx, LayerDef};
use crate::ast::ArgKind;
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// The dot product of two tensors of per-sample rank 1 or 2.
#[derive(Clone, Debug, PartialEq)]
pub struct Dot {
    /// The contracted axis of each operand, as written (full-tensor numbering: batch is 0, -1 the last).
    pub axes: (i64, i64),
    /// L2-normalize each operand along its axis first.
    pub normalize: bool,
}

/// How the kernel sees each sample: x as an m×k matrix, y as k×n, by strides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Layout {
    m: usize,
    k: usize,
    n: usize,
    x_row: usize,
    x_red: usize,
    y_red: usize,
    y_col: usize,
}

impl Dot {
    /// `Dot(axes, normalize = false)`: `axes` an integer or a pair `(a, b)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let kind = r.kind();
        let axes = match r.raw("axes", Some(0)) {
            Some(v) => match &v.kind {
                ArgKind::Int(a) => Some((*a, *a)),
                ArgKind::Tuple(items) => match items.as_slice() {
                    [a, b] => match (&a.kind, &b.kind) {
                        (ArgKind::Int(a), ArgKind::Int(b)) => Some((*a, *b)),
                        _ => {
                            r.error(Diagnostic::new(v.span, "`axes` of Dot must be integers").help("e.g. `Dot(axes = (1, 2))`"));
                            None
                        }
                    },
                    _ => {
                        r.error(
                            Diagnostic::new(v.span, format!("`axes` of Dot needs one axis per operand, got {} values", items.len()))
                                .help("write one integer for both operands, `Dot(axes = 1)`, or a pair, `Dot(axes = (1, 2))`"),
                        );
                        None
                    }
                },
                _ => {
                    r.error(
                        Diagnostic::new(v.span, "`axes` of Dot must be an integer or a pair of integers").help("e.g. `Dot(axes = -1)`"),
                    );
                    None
                }
            },
            None => {
                r.error(
                    Diagnostic::new(span, format!("{kind} is missing its required argument `axes`"))
                        .help("name the axis to contract, e.g. `Dot(axes = -1)` for the last axis of both operands"),
                );
                None
            }
        };
        let normalize = r.bool_or("normalize", Some(1), false);
        Some(Dot { axes: axes?, normalize: normalize? })
    }

    fn layout(&self, x: &Shape, y: &Shape) -> Option<Layout> {
        let ax = x.sample_axis(self.axes.0)?;
        let ay = y.sample_axis(self.axes.1)?;
        let (m, k, x_row, x_red) = match (x.0.as_slice(), ax) {
            ([k], _) => (1, *k, 0, 1),
            ([d0, d1], 0) => (*d1, *d0, 1, *d1),
            ([d0, d1], _) => (*d0, *d1, *d1, 1),
            _ => return None,
        };
        let (n, y_red, y_col) = match (y.0.as_slice(), ay) {
            ([_], _) => (1, 1, 0),
            ([_, d1], 0) => (*d1, *d1, 1),
            ([d0, d1], _) => (*d0, 1, *d1),
            _ => return None,
        };
        Some(Layout { m, k, n, x_row, x_red, y_red, y_col })
    }

    fn layout_tokens(&self, cx: &EmitCx) -> TokenStream {
        let x = cx.inputs.first().map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new()));
        let y = cx.inputs.get(1).map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new()));
        let Layout { m, k, n, x_row, x_red, y_red, y_col } =
            self.layout(&x, &y).unwrap_or(Layout { m: 0, k: 0, n: 0, x_row: 0, x_red: 0, y_red: 0, y_col: 0 });
        quote!(::modelc::__private::kernels::dot::DotLayout { m: #m, k: #k, n: #n, x_row: #x_row, x_red: #x_red, y_red: #y_red, y_col: #y_col })
    }
}

impl LayerDef for Dot {
    // Each operand arranged as a batch of matrices, x (m, k) and y (k, n) (l2-normalized along k first
    // when `normalize`), MatMul, then Reshape to the output shape.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let (xs, ys) = (cx.input_shape(0), cx.input_shape(1));
        let bad = || OnnxError::Unsupported("operands of an unexpected rank".into());
        let (ax, ay) = (xs.sample_axis(self.axes.0).ok_or_else(bad)?, ys.sample_axis(self.axes.1).ok_or_else(bad)?);
        let mut x = cx.input(0);
        let mut y = cx.input(1);
        if self.normalize {
            x = l2_normalize(cx, &x, ax + 1);
            y = l2_normalize(cx, &y, ay + 1);
        }
        let x = match (xs.0.as_slice(), ax) {
            ([k], _) => cx.reshape_exact(&x, &[-1, 1, *k as i64]),
            (_, 0) => cx.transpose(&x, &[0, 2, 1]),
            _ => x,
        };
        let y = match (ys.0.as_slice(), ay) {
            ([k], _) => cx.reshape_exact(&y, &[-1, *k as i64, 1]),
            (_, 1) => cx.transpose(&y, &[0, 2, 1]),
            _ => y,
        };
        let z = cx.op("MatMul", &[&x, &y], Vec::new());
        let dims = cx.output_shape().0.clone();
        cx.reshape_into(&z, &dims, &cx.output());
        Ok(())
    }

    fn arity(&self) -> Arity {
        Arity::List { min: 2, max: Some(2) }
    }

    // Rule (Keras `Dot.build`/`compute_output_shape`): the two contracted axes exist, are not the batch
    // axis and have the same size; the output is x's other dims then y's other dims, (None, 1) if none.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (Some(x), Some(y)) = (cx.inputs.first(), cx.inputs.get(1)) else {
            return Err(Diagnostic::new(cx.span, "Dot takes exactly 2 tensors"));
        };
        let axes = if self.axes.0 == self.axes.1 { format!("{}", self.axes.0) } else { format!("({}, {})", self.axes.0, self.axes.1) };
        for (i, s) in [x, y].into_iter().enumerate() {
            if s.rank() == 0 || s.rank() > 2 {
                return Err(Diagnostic::new(
                    cx.span,
                    format!("Dot supports tensors of rank 2 or 3, but {} has rank {}", cx.describe(i), s.rank() + 1),
                )
                .help(format!("flatten or pool `{}` first, e.g. `Flatten()({})`", cx.name(i), cx.name(i))));
            }
        }
        let axis_of = |i: usize, s: &Shape| -> Result<usize, Diagnostic> {
            let a = if i == 0 { self.axes.0 } else { self.axes.1 };
            s.sample_axis(a).ok_or_else(|| {
                let full = s.rank() + 1;
                let msg = if a == 0 || a == -(full as i64) {
                    format!("Dot(axes={axes}) cannot contract the batch axis (axis 0) of {}", cx.describe(i))
                } else {
                    format!("Dot(axes={axes}): axis {a} is out of range for {} of rank {full}", cx.describe(i))
                };
                let help = if s.rank() == 1 {
                    "use axis 1 (or -1), the features of a (None, n) tensor".to_string()
                } else {
                    format!("use an axis from 1 to {} or from -1 to -{}", s.rank(), s.rank())
                };
                Diagnostic::new(cx.span, msg).help(help)
            })
        };
        let ax = axis_of(0, x)?;
        let ay = axis_of(1, y)?;
        let (kx, ky) = (x.0.get(ax).copied().unwrap_or(0), y.0.get(ay).copied().unwrap_or(0));
        if kx != ky {
            let fix = if ax + 1 == x.rank() && ay + 1 == y.rank() {
                format!("project one of them, e.g. `Dense({kx})({})`, ", cx.name(1))
            } else {
                String::new()
            };
            return Err(Diagnostic::new(
                cx.span,
                format!(
                    "Dot(axes={axes}) contracts axis {} of {} (size {kx}) with axis {} of {} (size {ky}), but the sizes differ",
                    ax + 1,
                    cx.describe(0),
                    ay + 1,
                    cx.describe(1)
                ),
            )
            .help(format!("{fix}or choose axes of equal size with `axes = (a, b)`")));
        }
        let mut dims: Vec<usize> = x.0.iter().enumerate().filter(|(d, _)| *d != ax).map(|(_, v)| *v).collect();
        dims.extend(y.0.iter().enumerate().filter(|(d, _)| *d != ay).map(|(_, v)| *v));
        if dims.is_empty() {
            dims.push(1);
        }
        Ok(Shape(dims))
    }

    // Each operand loses its contracted axis; (None, 1) when nothing is left.
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        match inputs {
            [Some(x), Some(y)] => Some((x + y).saturating_sub(2).max(1)),
            _ => None,
        }
    }

    // With `normalize`, the l2-normalized operands are kept for backward.
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        if self.normalize {
            inputs.iter().map(Shape::numel).collect()
        } else {
            Vec::new()
        }
    }

    // dot::forward(x, y, layout, rows, normalized: Option<(xh, yh)>, out)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (x, y) = (cx.x(0), cx.x(1));
        let layout = self.layout_tokens(cx);
        let norm = if self.normalize {
            let (s0, s1) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch.get(1).copied().unwrap_or(1));
            let (n0, n1) = (cx.scratch_len(0), cx.scratch_len(1));
            quote!({
                let (__n0, __n1) = ::modelc::__private::support::pair_mut(&mut __ws.scratch, #s0, #s1);
                ::core::option::Option::Some((&mut __n0[..__b * #n0], &mut __n1[..__b * #n1]))
            })
        } else {
            quote!(::core::option::Option::None)
        };
        quote!(::modelc::__private::kernels::dot::forward(#x, #y, &#layout, __b, #norm, &mut __y[..]);)
    }

    // dot::backward(x, y, layout, rows, normalized: Option<(xh, yh)>, dy, dx, dy_in)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (x, y) = (cx.x(0), cx.x(1));
        let layout = self.layout_tokens(cx);
        let norm = if self.normalize {
            let (xh, yh) = (cx.scratch(0), cx.scratch(1));
            quote!(::core::option::Option::Some((#xh, #yh)))
        } else {
            quote!(::core::option::Option::None)
        };
        let call = |dx: TokenStream, dy: TokenStream| quote!(::modelc::__private::kernels::dot::backward(#x, #y, &#layout, __b, #norm, &__dy[..], #dx, #dy););
        let none = quote!(::core::option::Option::None);
        match (cx.inputs.first(), cx.inputs.get(1)) {
            // Both gradients at once need two disjoint buffers; `Dot()([a, a])` takes two passes.
            (Some(a), Some(b)) if a.needs_grad && b.needs_grad && a.buf != b.buf => {
                let (a, b) = (a.buf, b.buf);
                let inner = call(quote!(::core::option::Option::Some(__da)), quote!(::core::option::Option::Some(__db)));
                quote!({
                    let (__da, __db) = ::modelc::__private::support::pair_mut(&mut __ws.grads, #a, #b);
                    #inner
                })
            }
            (Some(a), Some(b)) if a.needs_grad && b.needs_grad => {
                let mut out = call(cx.dx(0), none.clone());
                out.extend(call(none, cx.dx(1)));
                out
            }
            _ => call(cx.dx(0), cx.dx(1)),
        }
    }
}

impl Dot {
    /// Keras import: `Dot(axes, normalize = false)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("axes");
        a.kw("normalize", json!(false));
    }
}

/// `x / max(‖x‖₂ along axis, ε)` as ONNX nodes, as the kernel normalizes.
fn l2_normalize(cx: &mut OnnxCx, x: &str, axis: usize) -> String {
    let sq = cx.op("Mul", &[x, x], Vec::new());
    let axes = cx.const_i64(&[axis as i64]);
    let sum = cx.op("ReduceSum", &[&sq, &axes], vec![("keepdims", crate::onnx::Attr::Int(1))]);
    let norm = cx.op("Sqrt", &[&sum], Vec::new());
    let eps = cx.scalar(1e-7);
    let clamped = cx.op("Max", &[&norm, &eps], Vec::new());
    cx.op("Div", &[x, &clamped], Vec::new())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::tests::{errors, ok_shapes};

    #[test]
    fn dot_of_vectors_gives_one_value_per_sample() {
        assert_eq!(ok_shapes("struct M { input a: [8]; input b: [8]; output y = Dot(axes = 1)([a, b]); }"), vec![vec![1]]);
        assert_eq!(ok_shapes("struct M { input a: [8]; input b: [8]; output y = Dot(-1, normalize = true)([a, b]); }"), vec![vec![1]]);
    }

    #[test]
    fn dot_output_is_x_dims_then_y_dims_as_keras() {
        // Keras docstring: (2, 3, 5) . (2, 10, 3) with axes (1, 2) -> (2, 5, 10).
        assert_eq!(ok_shapes("struct M { input a: [3, 5]; input b: [10, 3]; output y = Dot(axes = (1, 2))([a, b]); }"), vec![vec![5, 10]]);
        assert_eq!(ok_shapes("struct M { input a: [4, 6]; input b: [6]; output y = Dot(axes = (2, 1))([a, b]); }"), vec![vec![4]]);
        assert_eq!(ok_shapes("struct M { input a: [6]; input b: [6, 3]; output y = Dot(axes = (-1, 1))([a, b]); }"), vec![vec![3]]);
    }

    #[test]
    fn dot_rejects_contracted_axes_of_different_sizes() {
        let e = errors("struct M { input a: [8]; input b: [4]; output y = Dot(axes = 1)([a, b]); }");
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!(
            e[0].0,
            "Dot(axes=1) contracts axis 1 of `a` (None, 8) (size 8) with axis 1 of `b` (None, 4) (size 4), but the sizes differ"
        );
        assert_eq!(e[0].1.as_deref(), Some("project one of them, e.g. `Dense(8)(b)`, or choose axes of equal size with `axes = (a, b)`"));
    }

    #[test]
    fn dot_rejects_the_batch_axis_and_out_of_range_axes() {
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Dot(axes = 0)([a, b]); }");
        assert_eq!(e[0].0, "Dot(axes=0) cannot contract the batch axis (axis 0) of `a` (None, 8)");
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Dot(axes = 2)([a, b]); }");
        assert_eq!(e[0].0, "Dot(axes=2): axis 2 is out of range for `a` (None, 8) of rank 2");
    }

    #[test]
    fn dot_needs_axes_and_exactly_two_tensors() {
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Dot()([a, b]); }");
        assert_eq!(e[0].0, "Dot is missing its required argument `axes`");
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Dot(axes = 1)([a, b, a]); }");
        assert_eq!(e[0].0, "Dot takes exactly 2 tensors, but is given 3");
        let e = errors("struct M { input a: [8]; input b: [8]; output y = Dot(axes = (1, 1, 1))([a, b]); }");
        assert_eq!(e[0].0, "`axes` of Dot needs one axis per operand, got 3 values");
    }

    #[test]
    fn dot_rejects_rank_four_tensors() {
        let e = errors("struct M { input a: [2, 2, 8]; input b: [8]; output y = Dot(axes = -1)([a, b]); }");
        assert_eq!(e[0].0, "Dot supports tensors of rank 2 or 3, but `a` (None, 2, 2, 8) has rank 4");
    }

    #[test]
    fn layouts_view_samples_as_matrices() {
        let d = Dot { axes: (1, 2), normalize: false };
        let l = d.layout(&Shape(vec![3, 5]), &Shape(vec![10, 3])).unwrap();
        assert_eq!(l, Layout { m: 5, k: 3, n: 10, x_row: 1, x_red: 5, y_red: 1, y_col: 3 });
    }
}
