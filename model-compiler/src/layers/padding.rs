//! `ZeroPadding1D(padding = 1)` and `ZeroPadding2D(padding = 1)`: zero rows and columns added around a
//! channels-last sequence or image. Also what cropping and upsampling share with them: the Keras forms of a
//! per-axis margin ([`read_margins`]) and the spatial rank check ([`spatial`]).

use super::args::{describe, ArgReader};
use super::{EmitCx, InferCx, LayerDef};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `(before, after)` per spatial axis: `[(left, right)]` in 1D, `[(top, bottom), (left, right)]` in 2D.
pub type Margins = Vec<(usize, usize)>;

/// Reads a margin argument in Keras' forms. 1D: `n` (both ends) or `(start, end)`. 2D: `n` (every side),
/// `(rows, cols)` (symmetric per axis) or `((top, bottom), (left, right))`, the two forms mixable per axis.
/// Values are non-negative. Absent: `default`.
pub fn read_margins(r: &mut ArgReader<'_>, name: &'static str, pos: Option<usize>, rank: usize, default: Margins) -> Option<Margins> {
    let Some(v) = r.raw(name, pos) else { return Some(default) };
    let kind = r.kind();
    let (forms, example) = if rank == 1 {
        ("an integer or a pair `(start, end)`", "(1, 2)")
    } else {
        ("an integer, a pair `(rows, cols)` or a pair of pairs `((top, bottom), (left, right))`", "((1, 0), (2, 2))")
    };
    let bad = |r: &mut ArgReader<'_>, at: &ArgValue, what: &str| {
        r.error(
            Diagnostic::new(at.span, format!("`{name}` of {kind} must be {what}, got {}", describe(&at.kind)))
                .help(format!("for example `{kind}({name} = {example})`, or `{kind}({name} = 1)` for the same on every side")),
        );
    };
    let amount = |r: &mut ArgReader<'_>, at: &ArgValue| -> Option<usize> {
        match at.kind {
            ArgKind::Int(n) if n >= 0 => usize::try_from(n).ok(),
            ArgKind::Int(n) => {
                r.error(
                    Diagnostic::new(at.span, format!("`{name}` of {kind} must not be negative, got {n}"))
                        .help(format!("give the number of rows or columns (0 or more), e.g. `{name} = 1`")),
                );
                None
            }
            _ => {
                bad(r, at, "made of integers");
                None
            }
        }
    };
    // One axis: `n` or `(before, after)`.
    let axis = |r: &mut ArgReader<'_>, at: &ArgValue| -> Option<(usize, usize)> {
        match &at.kind {
            ArgKind::Int(_) => amount(r, at).map(|n| (n, n)),
            ArgKind::Tuple(items) => match &items[..] {
                [a, b] => Some((amount(r, a)?, amount(r, b)?)),
                _ => {
                    bad(r, at, "a pair `(before, after)` for each axis");
                    None
                }
            },
            _ => {
                bad(r, at, "an integer or a pair of integers");
                None
            }
        }
    };
    match (rank, &v.kind) {
        (_, ArgKind::Int(_)) => amount(r, &v).map(|n| vec![(n, n); rank]),
        (1, ArgKind::Tuple(_)) => axis(r, &v).map(|a| vec![a]),
        (_, ArgKind::Tuple(items)) if items.len() == rank => {
            let axes: Vec<Option<(usize, usize)>> = items.iter().map(|it| axis(r, it)).collect();
            axes.into_iter().collect()
        }
        _ => {
            bad(r, &v, forms);
            None
        }
    }
}

/// `(h, w, c)` of an operand with `rank` spatial axes plus channels (`(1, steps, c)` in 1D), or the error
/// naming its rank and what to use instead.
pub fn spatial(cx: &InferCx<'_>, kind: &str, rank: usize) -> Result<(usize, usize, usize), Diagnostic> {
    let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{kind} takes one tensor")))?;
    match (rank, x.dims()) {
        (1, [w, c]) => return Ok((1, *w, *c)),
        (2, [h, w, c]) => return Ok((*h, *w, *c)),
        _ => {}
    }
    let name = cx.name(0);
    let want = if rank == 2 { "an image (None, height, width, channels)" } else { "a sequence (None, steps, channels)" };
    let d = Diagnostic::new(cx.span, format!("{kind} expects {want} per sample, but {} has rank {}", cx.describe(0), x.rank() + 1));
    let other = kind.replace(if rank == 2 { "2D" } else { "1D" }, if rank == 2 { "1D" } else { "2D" });
    Err(match (rank, x.dims()) {
        (2, [_, _]) => d.help(format!("`{name}` is a sequence: use {other}")),
        (1, [_, _, _]) => d.help(format!("`{name}` is an image: use {other}")),
        (_, [n]) if rank == 2 => d.help(format!("reshape the vector into an image first, e.g. `Reshape(({n}, 1, 1))({name})`")),
        (_, [n]) => d.help(format!("reshape the vector into a sequence first, e.g. `Reshape(({n}, 1))({name})`")),
        _ => d.help(format!("reshape `{name}` to {want} first, e.g. `Reshape((...))({name})`")),
    })
}

/// `::modelc::__private::kernels::pad::Border2d { .. }` for a small `(h, w, c)` sample inside `margins`
/// (the height margin is `(0, 0)` in 1D).
pub fn border_tokens(h: usize, w: usize, c: usize, margins: &[(usize, usize)]) -> TokenStream {
    let ((top, bottom), (left, right)) = match margins {
        [cols] => ((0, 0), *cols),
        [rows, cols] => (*rows, *cols),
        _ => ((0, 0), (0, 0)),
    };
    quote!(::modelc::__private::kernels::pad::Border2d { h: #h, w: #w, c: #c, top: #top, bottom: #bottom, left: #left, right: #right })
}

/// `(h, w, c)` of an emitted operand or result (`(1, steps, c)` for a sequence).
pub fn hwc(shape: &Shape) -> (usize, usize, usize) {
    match shape.dims() {
        [w, c] => (1, *w, *c),
        [h, w, c] => (*h, *w, *c),
        _ => (0, 0, 0),
    }
}

/// `ZeroPadding1D` / `ZeroPadding2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct ZeroPadding {
    /// Spatial axes: 1 or 2.
    pub rank: usize,
    /// Zeros added before and after each spatial axis.
    pub padding: Margins,
}

impl ZeroPadding {
    /// `ZeroPadding{rank}D(padding = 1)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let padding = read_margins(r, "padding", Some(0), rank, vec![(1, 1); rank])?;
        Some(ZeroPadding { rank, padding })
    }

    fn kind(&self) -> &'static str {
        if self.rank == 1 {
            "ZeroPadding1D"
        } else {
            "ZeroPadding2D"
        }
    }

    fn border(&self, cx: &EmitCx) -> TokenStream {
        let (h, w, c) = cx.inputs.first().map(|o| hwc(&o.shape)).unwrap_or((0, 0, 0));
        border_tokens(h, w, c, &self.padding)
    }
}

impl LayerDef for ZeroPadding {
    // Pad (constant zeros) on the channels-last input: nothing on the batch and channel axes.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let mut pads = vec![0i64];
        pads.extend(self.padding.iter().map(|m| m.0 as i64));
        pads.extend([0, 0]);
        pads.extend(self.padding.iter().map(|m| m.1 as i64));
        pads.push(0);
        let p = cx.const_i64(&pads);
        cx.node("Pad", &[&cx.input(0), &p], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, top + h + bottom, left + w + right, c); 1D: (None, steps, c) ->
    // (None, left + steps + right, c).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (h, w, c) = spatial(cx, self.kind(), self.rank)?;
        let grow = |n: usize, (a, b): (usize, usize)| n.saturating_add(a).saturating_add(b);
        Ok(Shape(match &self.padding[..] {
            [cols] => vec![grow(w, *cols), c],
            [rows, cols] => vec![grow(h, *rows), grow(w, *cols), c],
            _ => vec![h, w, c],
        }))
    }

    // pad::pad_forward(&Border2d{..}, x, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (g, x) = (self.border(cx), cx.x(0));
        quote!(::modelc::__private::kernels::pad::pad_forward(&#g, #x, &mut __y[..], __b);)
    }

    // pad::pad_backward(&Border2d{..}, dy, dx, __b, write): dx is the inner part of dy.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (g, dx, wr) = (self.border(cx), cx.dx_mut(0), cx.dx_write(0));
        quote!(::modelc::__private::kernels::pad::pad_backward(&#g, &__dy[..], #dx, __b, #wr);)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl ZeroPadding {
    /// Keras import: `ZeroPadding{1,2}D(padding)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("padding");
        a.channels_last();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn zero_padding_accepts_every_keras_form_with_keras_defaults() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("ZeroPadding2D()", "[4, 5, 3]")), vec![vec![6, 7, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding2D(2)", "[4, 5, 3]")), vec![vec![8, 9, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding2D((1, 0))", "[4, 5, 3]")), vec![vec![6, 5, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding2D(padding = ((0, 2), (3, 1)))", "[4, 5, 3]")), vec![vec![6, 9, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding2D((1, (0, 2)))", "[4, 5, 3]")), vec![vec![6, 7, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding1D()", "[4, 3]")), vec![vec![6, 3]]);
        assert_eq!(ok_shapes(&src("ZeroPadding1D((0, 3))", "[4, 3]")), vec![vec![7, 3]]);
    }

    #[test]
    fn zero_padding_rejects_negative_and_malformed_paddings() {
        let (line, col, text) = one_error("input x: [4, 4, 1];\noutput y = ZeroPadding2D(((1, -1), 2))(x);");
        assert_eq!((line, col), (3, 31));
        assert!(text.contains("`padding` of ZeroPadding2D must not be negative, got -1"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 1];\noutput y = ZeroPadding2D((1, 2, 3))(x);");
        assert!(text.contains("`padding` of ZeroPadding2D must be an integer, a pair `(rows, cols)` or a pair of pairs"), "{text}");
        let (_, _, text) = one_error("input x: [4, 1];\noutput y = ZeroPadding1D(((1, 1), (1, 1)))(x);");
        assert!(text.contains("`padding` of ZeroPadding1D must be made of integers, got a tuple of 2 values"), "{text}");
        let (_, _, text) = one_error("input x: [4, 1];\noutput y = ZeroPadding1D(same)(x);");
        assert!(text.contains("`padding` of ZeroPadding1D must be an integer or a pair `(start, end)`"), "{text}");
    }

    #[test]
    fn zero_padding_on_the_wrong_rank_names_the_other_layer() {
        let (line, col, text) = one_error("input x: [10, 4];\noutput y = ZeroPadding2D(1)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(
            text.contains("ZeroPadding2D expects an image (None, height, width, channels) per sample, but `x` (None, 10, 4) has rank 3"),
            "{text}"
        );
        assert!(text.contains("help: `x` is a sequence: use ZeroPadding1D"), "{text}");
        let (_, _, text) = one_error("input x: [10];\noutput y = ZeroPadding1D(1)(x);");
        assert!(text.contains("`Reshape((10, 1))(x)`"), "{text}");
    }
}
