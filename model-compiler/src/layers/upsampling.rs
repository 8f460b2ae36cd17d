//! `UpSampling1D(size = 2)` and `UpSampling2D(size = (2, 2), interpolation = nearest)`: a channels-last
//! sequence or image enlarged by integer factors, repeating rows and columns (`nearest`) or interpolating
//! (`bilinear`, as Keras 3 does through `jax.image.resize`: half-pixel centers, edges clamped).

use super::args::{describe, ArgReader};
use super::padding::{hwc, spatial};
use super::{EmitCx, InferCx, LayerDef};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use crate::suggest::did_you_mean;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// `UpSampling1D` / `UpSampling2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct UpSampling {
    /// Spatial axes: 1 or 2.
    pub rank: usize,
    /// Factor per spatial axis.
    pub size: Vec<usize>,
    /// Bilinear interpolation (else nearest: repetition).
    pub bilinear: bool,
}

impl UpSampling {
    /// `UpSampling1D(size = 2)`, `UpSampling2D(size = (2, 2), interpolation = nearest)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let size = r.positive_tuple_or("size", Some(0), rank, &vec![2; rank]);
        if rank == 1 {
            return Some(UpSampling { rank, size: size?, bilinear: false });
        }
        let bilinear = match r.raw("interpolation", None) {
            None => Some(false),
            Some(v) => Self::interpolation(r, &v),
        };
        Some(UpSampling { rank, size: size?, bilinear: bilinear? })
    }

    /// `nearest` or `bilinear` (as a word or a string); Keras' other methods are reported as unsupported.
    fn interpolation(r: &mut ArgReader<'_>, v: &ArgValue) -> Option<bool> {
        const SUPPORTED: [&str; 2] = ["nearest", "bilinear"];
        let word = match &v.kind {
            ArgKind::Ident(id) => id.to_string(),
            ArgKind::Str(s) => s.clone(),
            other => {
                r.error(Diagnostic::new(
                    v.span,
                    format!("`interpolation` of UpSampling2D must be `nearest` or `bilinear`, got {}", describe(other)),
                ));
                return None;
            }
        };
        match word.as_str() {
            "nearest" => return Some(false),
            "bilinear" => return Some(true),
            _ => {}
        }
        let d = if ["bicubic", "lanczos3", "lanczos5"].contains(&word.as_str()) {
            Diagnostic::new(v.span, format!("UpSampling2D with `interpolation = {word}` is not supported by modelc"))
                .help("use `interpolation = nearest` (the default) or `interpolation = bilinear`")
        } else {
            let d = Diagnostic::new(v.span, format!("unknown interpolation `{word}` for UpSampling2D"));
            match did_you_mean(&word, SUPPORTED.iter().copied()) {
                Some(s) => d.help(format!("did you mean `{s}`? interpolation is `nearest` or `bilinear`")),
                None => d.help("interpolation is `nearest` or `bilinear`"),
            }
        };
        r.error(d);
        None
    }

    fn kind(&self) -> &'static str {
        if self.rank == 1 {
            "UpSampling1D"
        } else {
            "UpSampling2D"
        }
    }

    /// `::modelc::__private::kernels::upsample::Upsample2d { .. }` over the operand.
    fn geom(&self, cx: &EmitCx) -> TokenStream {
        let (h, w, c) = cx.inputs.first().map(|o| hwc(&o.shape)).unwrap_or((0, 0, 0));
        let (sh, sw) = match self.size[..] {
            [s] => (1, s),
            [a, b] => (a, b),
            _ => (1, 1),
        };
        quote!(::modelc::__private::kernels::upsample::Upsample2d { h: #h, w: #w, c: #c, sh: #sh, sw: #sw })
    }
}

impl LayerDef for UpSampling {
    // Resize of the spatial axes by the integer factors: nearest as `repeat` (asymmetric, floor), bilinear
    // at half-pixel centers, as the kernels. Run channels-first: tract resizes only the trailing axes.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let mut scales = vec![1.0f32, 1.0];
        scales.extend(self.size.iter().map(|&s| s as f32));
        let sc = cx.const_f32(&[scales.len() as i64], &scales);
        let attrs = if self.bilinear {
            vec![("mode", Attr::Str("linear")), ("coordinate_transformation_mode", Attr::Str("half_pixel"))]
        } else {
            vec![
                ("mode", Attr::Str("nearest")),
                ("coordinate_transformation_mode", Attr::Str("asymmetric")),
                ("nearest_mode", Attr::Str("floor")),
            ]
        };
        cx.channels_first_op("Resize", &cx.input(0), &["", &sc], attrs, &cx.output());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, h · size[0], w · size[1], c); 1D: (None, steps, c) -> (None, steps · size, c).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (h, w, c) = spatial(cx, self.kind(), self.rank)?;
        Ok(Shape(match self.size[..] {
            [s] => vec![w.saturating_mul(s), c],
            [a, b] => vec![h.saturating_mul(a), w.saturating_mul(b), c],
            _ => vec![h, w, c],
        }))
    }

    // upsample::{nearest,bilinear}_forward(&Upsample2d{..}, x, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (g, x) = (self.geom(cx), cx.x(0));
        let f = if self.bilinear { quote!(bilinear_forward) } else { quote!(nearest_forward) };
        quote!(::modelc::__private::kernels::upsample::#f(&#g, #x, &mut __y[..], __b);)
    }

    // upsample::{nearest,bilinear}_backward(&Upsample2d{..}, dy, dx, __b, write)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let (g, dx, wr) = (self.geom(cx), cx.dx_mut(0), cx.dx_write(0));
        let f = if self.bilinear { quote!(bilinear_backward) } else { quote!(nearest_backward) };
        quote!(::modelc::__private::kernels::upsample::#f(&#g, &__dy[..], #dx, __b, #wr);)
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }
}

impl UpSampling {
    /// Keras import: `UpSampling{1,2}D(size, interpolation = nearest)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("size");
        a.kw("interpolation", json!("nearest"));
        a.channels_last();
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn upsampling_shapes_follow_keras() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("UpSampling2D()", "[3, 4, 2]")), vec![vec![6, 8, 2]]);
        assert_eq!(ok_shapes(&src("UpSampling2D((1, 3), interpolation = bilinear)", "[3, 4, 2]")), vec![vec![3, 12, 2]]);
        assert_eq!(ok_shapes(&src("UpSampling2D(size = 3, interpolation = \"bilinear\")", "[3, 4, 2]")), vec![vec![9, 12, 2]]);
        assert_eq!(ok_shapes(&src("UpSampling1D()", "[5, 2]")), vec![vec![10, 2]]);
        assert_eq!(ok_shapes(&src("UpSampling1D(size = 3)", "[5, 2]")), vec![vec![15, 2]]);
    }

    #[test]
    fn upsampling_arguments_and_rank_are_checked() {
        let (line, col, text) = one_error("input x: [3, 4, 2];\noutput y = UpSampling2D(0)(x);");
        assert_eq!((line, col), (3, 25));
        assert!(text.contains("`size` of UpSampling2D must be a positive integer, got 0"), "{text}");
        let (line, col, text) = one_error("input x: [3, 4, 2];\noutput y = UpSampling2D(interpolation = bicubic)(x);");
        assert_eq!((line, col), (3, 41));
        assert!(text.contains("`interpolation = bicubic` is not supported by modelc"), "{text}");
        let (_, _, text) = one_error("input x: [3, 4, 2];\noutput y = UpSampling2D(interpolation = bilinar)(x);");
        assert!(text.contains("did you mean `bilinear`?"), "{text}");
        let (_, _, text) = one_error("input x: [5, 2];\noutput y = UpSampling1D(interpolation = bilinear)(x);");
        assert!(text.contains("UpSampling1D has no argument `interpolation`"), "{text}");
        let (_, _, text) = one_error("input x: [5, 2];\noutput y = UpSampling2D()(x);");
        assert!(text.contains("`x` is a sequence: use UpSampling1D"), "{text}");
        let (_, _, text) = one_error("input x: [5, 2];\noutput y = UpSampling1D((2, 2))(x);");
        assert!(text.contains("`size` of UpSampling1D needs 1 values, got 2"), "{text}");
    }
}
