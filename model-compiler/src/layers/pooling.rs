//! `MaxPooling2D` / `AveragePooling2D(pool_size = 2, strides = pool_size, padding = valid)` and their 1D
//! forms: a window reduced per channel. Keras 'same' padding: a max ignores padded positions, an
//! average divides by the count of valid positions.

use super::args::ArgReader;
use super::conv::{Geom, Window};
use super::{EmitCx, InferCx, LayerDef};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A windowed pooling layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Pooling {
    /// Max (else average).
    pub max: bool,
    /// Window, strides, padding (no dilation).
    pub window: Window,
}

impl Pooling {
    /// `{Max,Average}Pooling{rank}D(pool_size = 2, strides = pool_size, padding = valid)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize, max: bool) -> Option<Self> {
        let window = Window::read(r, rank, ("pool_size", Some(0)), Some(2), true)?;
        Some(Pooling { max, window })
    }

    fn kind(&self) -> &'static str {
        match (self.max, self.window.rank) {
            (true, 1) => "MaxPooling1D",
            (true, _) => "MaxPooling2D",
            (false, 1) => "AveragePooling1D",
            (false, _) => "AveragePooling2D",
        }
    }

    fn geom(&self, cx: &EmitCx) -> Geom {
        self.window.geom(&cx.inputs.first().map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new())))
    }
}

impl LayerDef for Pooling {
    // MaxPool / AveragePool (padding excluded from the average, as Keras) between channels-first transposes.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let attrs = self.window.onnx_attrs(&cx.input_shape(0), false);
        let op = if self.max { "MaxPool" } else { "AveragePool" };
        cx.channels_first_op(op, &cx.input(0), &[], attrs, &cx.output());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, oh, ow, c) (1D: (None, steps, c) -> (None, out, c)); a 'valid'
    // window must fit.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (mut dims, c) = self.window.check(cx, self.kind())?;
        dims.push(c);
        Ok(Shape(dims))
    }

    // Spatial axes plus channels, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.window.rank + 1)
    }

    // pool::{max,avg}_forward(&Window2d{..}, x, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let geom = self.geom(cx).tokens();
        let x = cx.x(0);
        if self.max {
            quote!(::modelc::__private::kernels::pool::max_forward(&#geom, #x, &mut __y[..], __b);)
        } else {
            quote!(::modelc::__private::kernels::pool::avg_forward(&#geom, #x, &mut __y[..], __b);)
        }
    }

    // pool::max_backward(&Window2d{..}, x, y, dy, dx, __b) / pool::avg_backward(&Window2d{..}, dy, dx, __b)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let geom = self.geom(cx).tokens();
        let dx = cx.dx_mut(0);
        if self.max {
            let (x, y) = (cx.x(0), cx.y());
            quote!(::modelc::__private::kernels::pool::max_backward(&#geom, #x, #y, &__dy[..], #dx, __b);)
        } else {
            quote!(::modelc::__private::kernels::pool::avg_backward(&#geom, &__dy[..], #dx, __b);)
        }
    }
}

impl Pooling {
    /// Keras import: `{Max,Average}Pooling{1,2}D(pool_size, strides, padding)`; `strides` is written
    /// only when it differs from `pool_size` (Keras' default).
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        let size = a.get("pool_size").cloned();
        a.positional("pool_size");
        if let Some(strides) = a.get("strides") {
            if Some(strides) != size.as_ref() {
                a.args.push(format!("strides = {}", crate::import::args::dsl_value(strides)));
            }
        }
        a.kw("padding", json!("valid"));
        a.channels_last();
    }
}
