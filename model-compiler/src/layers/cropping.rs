//! `Cropping1D(cropping = (1, 1))` and `Cropping2D(cropping = ((0, 0), (0, 0)))`: rows and columns removed
//! from the edges of a channels-last sequence or image, in the same forms as zero padding; at least one
//! row and one column must remain (Keras raises otherwise).

use super::args::ArgReader;
use super::padding::{border_tokens, hwc, read_margins, spatial, Margins};
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `Cropping1D` / `Cropping2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct Cropping {
    /// Spatial axes: 1 or 2.
    pub rank: usize,
    /// Elements removed before and after each spatial axis.
    pub cropping: Margins,
}

impl Cropping {
    /// `Cropping1D(cropping = (1, 1))`, `Cropping2D(cropping = ((0, 0), (0, 0)))`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let default = if rank == 1 { vec![(1, 1)] } else { vec![(0, 0); rank] };
        let cropping = read_margins(r, "cropping", Some(0), rank, default)?;
        Some(Cropping { rank, cropping })
    }

    fn kind(&self) -> &'static str {
        if self.rank == 1 {
            "Cropping1D"
        } else {
            "Cropping2D"
        }
    }

    /// The geometry: the result is the small sample inside the operand.
    fn border(&self, cx: &EmitCx) -> TokenStream {
        let (h, w, c) = hwc(&cx.output.shape);
        border_tokens(h, w, c, &self.cropping)
    }
}

/// Rule for one axis: `before + after < n`; the size left, or the error naming the operand and the fix.
fn crop_axis(cx: &InferCx<'_>, kind: &str, n: usize, (a, b): (usize, usize), what: &str) -> Result<usize, Diagnostic> {
    let total = a.saturating_add(b);
    if total < n {
        return Ok(n - total);
    }
    let most = n.saturating_sub(1);
    let plural = if most == 1 { "" } else { "s" };
    Err(Diagnostic::new(
        cx.span,
        format!("{kind} crops {a} + {b} = {total} {what}s from {}, which has only {n}: nothing would remain", cx.describe(0)),
    )
    .help(format!("crop at most {most} {what}{plural} in total along that axis, or crop a larger tensor")))
}

impl LayerDef for Cropping {
    // Slice of the spatial axes.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let dims = cx.input_shape(0).0;
        let starts: Vec<i64> = self.cropping.iter().map(|m| m.0 as i64).collect();
        let ends: Vec<i64> = self.cropping.iter().zip(&dims).map(|(m, d)| d.saturating_sub(m.1) as i64).collect();
        let axes: Vec<i64> = (1..=self.cropping.len() as i64).collect();
        let (s, e, a) = (cx.const_i64(&starts), cx.const_i64(&ends), cx.const_i64(&axes));
        cx.node("Slice", &[&cx.input(0), &s, &e, &a], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, h − top − bottom, w − left − right, c) (1D: (None, steps − start −
    // end, c)); each axis keeps at least one element.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let kind = self.kind();
        let (h, w, c) = spatial(cx, kind, self.rank)?;
        Ok(Shape(match &self.cropping[..] {
            [cols] => vec![crop_axis(cx, kind, w, *cols, "step")?, c],
            [rows, cols] => vec![crop_axis(cx, kind, h, *rows, "row")?, crop_axis(cx, kind, w, *cols, "column")?, c],
            _ => vec![h, w, c],
        }))
    }

    // pad::crop_forward(&Border2d{..}, x, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (g, x) = (self.border(cx), cx.x(0));
        quote!(::modelc::__private::kernels::pad::crop_forward(&#g, #x, &mut __y[..], __b);)
    }

    // pad::crop_backward(&Border2d{..}, dy, dx, __b, write): dy placed back inside dx, zeros on the border.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (g, dx, wr) = (self.border(cx), cx.dx_mut(0), cx.dx_write(0));
        quote!(::modelc::__private::kernels::pad::crop_backward(&#g, &__dy[..], #dx, __b, #wr);)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl Cropping {
    /// Keras import: `Cropping{1,2}D(cropping)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("cropping");
        a.channels_last();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn cropping_accepts_every_keras_form_with_keras_defaults() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("Cropping2D()", "[4, 5, 3]")), vec![vec![4, 5, 3]]);
        assert_eq!(ok_shapes(&src("Cropping2D(1)", "[4, 5, 3]")), vec![vec![2, 3, 3]]);
        assert_eq!(ok_shapes(&src("Cropping2D((1, 2))", "[4, 5, 3]")), vec![vec![2, 1, 3]]);
        assert_eq!(ok_shapes(&src("Cropping2D(cropping = ((0, 3), (1, 0)))", "[4, 5, 3]")), vec![vec![1, 4, 3]]);
        assert_eq!(ok_shapes(&src("Cropping1D()", "[4, 3]")), vec![vec![2, 3]]);
        assert_eq!(ok_shapes(&src("Cropping1D((0, 3))", "[4, 3]")), vec![vec![1, 3]]);
    }

    #[test]
    fn cropping_everything_away_is_an_error_naming_the_axis() {
        let (line, col, text) = one_error("input x: [4, 6, 3];\noutput y = Cropping2D(((1, 3), 0))(x);");
        assert_eq!((line, col), (3, 12));
        assert!(
            text.contains("Cropping2D crops 1 + 3 = 4 rows from `x` (None, 4, 6, 3), which has only 4: nothing would remain"),
            "{text}"
        );
        assert!(text.contains("help: crop at most 3 rows in total along that axis"), "{text}");
        let (_, _, text) = one_error("input x: [4, 6, 3];\noutput y = Cropping2D((0, 4))(x);");
        assert!(text.contains("crops 4 + 4 = 8 columns from `x` (None, 4, 6, 3), which has only 6"), "{text}");
        let (_, _, text) = one_error("input x: [2, 3];\noutput y = Cropping1D()(x);");
        assert!(text.contains("Cropping1D crops 1 + 1 = 2 steps from `x` (None, 2, 3), which has only 2"), "{text}");
    }

    #[test]
    fn cropping_checks_rank_and_signs() {
        let (_, _, text) = one_error("input x: [4, 6, 3];\noutput y = Cropping1D(1)(x);");
        assert!(text.contains("Cropping1D expects a sequence (None, steps, channels)") && text.contains("use Cropping2D"), "{text}");
        let (_, _, text) = one_error("input x: [4, 6, 3];\noutput y = Cropping2D(-1)(x);");
        assert!(text.contains("`cropping` of Cropping2D must not be negative, got -1"), "{text}");
    }
}
