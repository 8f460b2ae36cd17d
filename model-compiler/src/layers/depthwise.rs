//! `DepthwiseConv2D(kernel_size, strides = 1, padding = valid, depth_multiplier = 1, dilation_rate = 1,
//! activation, use_bias)` and `DepthwiseConv1D(...)`: each input channel convolved on its own by
//! `depth_multiplier` filters, output channel `c · depth_multiplier + m` as in Keras. Kernel in Keras layout
//! `[kh, kw, in_channels, depth_multiplier]` (`[k, in_channels, depth_multiplier]` in 1D), which is, element
//! for element, the `[kh, kw, 1, in_channels · depth_multiplier]` kernel of a grouped convolution with one
//! group per input channel: the geometry is the convolutions' [`Window`] and the kernel the runtime's
//! depthwise one.

use super::args::ArgReader;
use super::conv::{Geom, Window};
use super::weights::{role, WeightArgs};
use super::{some_if, Act, EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// `DepthwiseConv1D` / `DepthwiseConv2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct Depthwise {
    /// Window, strides, dilation, padding.
    pub window: Window,
    /// Filters per input channel.
    pub depth_multiplier: usize,
    /// Activation fused into the output pass.
    pub activation: Act,
    /// Whether a bias (one per output channel) is added.
    pub use_bias: bool,
    /// `depthwise_initializer`, `depthwise_regularizer`, `depthwise_constraint` (Keras names the weight `kernel`).
    pub kernel: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint`.
    pub bias: WeightArgs,
}

impl Depthwise {
    /// `DepthwiseConv{rank}D(kernel_size, strides, padding, depth_multiplier, dilation_rate, activation, use_bias)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let window = Window::read(r, rank, ("kernel_size", Some(0)), None, false);
        let depth_multiplier = r.positive_or("depth_multiplier", Some(3), 1);
        let activation = Act::read(r, "activation", None, Act::Linear);
        let use_bias = r.bool_or("use_bias", None, true);
        let kernel = WeightArgs::read(r, role!("depthwise", rank + 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        Some(Depthwise {
            window: window?,
            depth_multiplier: depth_multiplier?,
            activation: activation?,
            use_bias: use_bias?,
            kernel: kernel?,
            bias: bias?,
        })
    }

    fn kind(&self) -> &'static str {
        if self.window.rank == 1 {
            "DepthwiseConv1D"
        } else {
            "DepthwiseConv2D"
        }
    }

    fn geom(&self, cx: &EmitCx) -> Geom {
        self.window.geom(&cx.inputs.first().map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new())))
    }
}

/// The depthwise stage as an ONNX grouped `Conv` on the operand (shared with `SeparableConv`): the
/// Keras kernel `kernel` `(k..., c, m)` reshaped to `(c·m, 1, k...)`, output channel `c·m + j` as the
/// kernels order them, and the `Conv` attributes with one group per input channel.
pub(crate) fn onnx_depthwise(
    cx: &mut OnnxCx,
    window: &Window,
    depth_multiplier: usize,
    kernel: &str,
) -> (String, Vec<(&'static str, Attr)>) {
    let shape = cx.input_shape(0);
    let (r, c) = (window.rank, shape.last());
    let mut attrs = window.onnx_attrs(&shape, true);
    attrs.push(("group", Attr::Int(c as i64)));
    let mut perm = vec![r, r + 1];
    perm.extend(0..r);
    let t = cx.transpose(kernel, &perm);
    let mut dims = vec![(c * depth_multiplier) as i64, 1];
    dims.extend(window.size.iter().map(|&k| k as i64));
    dims.resize(r + 2, window.size.first().copied().unwrap_or(1) as i64);
    (cx.reshape_exact(&t, &dims), attrs)
}

impl LayerDef for Depthwise {
    // Conv with one group per input channel: the kernel (k..., c, m) becomes (c·m, 1, k...), output
    // channel c·m + j as the kernels order them.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let (w, attrs) = onnx_depthwise(cx, &self.window, self.depth_multiplier, &cx.param(0));
        let mut extra = vec![w.as_str()];
        let b = cx.param(1);
        if self.use_bias {
            extra.push(&b);
        }
        let y = cx.fresh("conv");
        cx.channels_first_op("Conv", &x, &extra, attrs, &y);
        cx.activation(self.activation, &y, &cx.output());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, oh, ow, c · depth_multiplier) (1D: (None, steps, c) -> (None, out,
    // c · depth_multiplier)), with Keras 'valid'/'same' output sizes; a 'valid' window must fit.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (mut dims, c) = self.window.check(cx, self.kind())?;
        dims.push(c.saturating_mul(self.depth_multiplier));
        Ok(Shape(dims))
    }

    // Spatial axes plus channels, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.window.rank + 1)
    }

    // Keras: `kernel` [*kernel_size, c, depth_multiplier] (glorot fans: the window area times c in and
    // times depth_multiplier out), `bias` [c · depth_multiplier].
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let c = inputs.first().map(Shape::last).unwrap_or(0);
        let area = self.window.size.iter().fold(1usize, |a, k| a.saturating_mul(*k));
        let dm = self.depth_multiplier;
        let mut shape = self.window.size.clone();
        shape.extend([c, dm]);
        let mut p = vec![ParamDecl::new(
            "kernel",
            shape,
            InitKind::GlorotUniform { fan_in: area.saturating_mul(c), fan_out: area.saturating_mul(dm) },
            true,
        )
        .with(&self.kernel)];
        if self.use_bias {
            p.push(ParamDecl::new("bias", vec![c.saturating_mul(dm)], InitKind::Zeros, true).with(&self.bias));
        }
        p
    }

    // [the pre-activation when the activation needs it]: the direct loops need no im2col.
    fn scratch(&self, _inputs: &[Shape], output: &Shape) -> Vec<usize> {
        if self.activation.needs_input() {
            vec![output.numel()]
        } else {
            Vec::new()
        }
    }

    // depthwise::forward(&Window2d{..}, depth_multiplier, x, kernel, bias, act, pre, y, __b)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, dm, x, w) = (self.geom(cx).tokens(), self.depth_multiplier, cx.x(0), cx.p(0));
        let b = some_if(self.use_bias, cx.p(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch_mut(0));
        let act = self.activation.tokens();
        quote!(::modelc::__private::kernels::depthwise::forward(&#geom, #dm, #x, #w, #b, #act, #pre, &mut __y[..], __b);)
    }

    // depthwise::backward(&Window2d{..}, depth_multiplier, x, kernel, pre, y, dy, act, dx, dkernel, dbias, __b)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, dm, x, y, w, gw) = (self.geom(cx).tokens(), self.depth_multiplier, cx.x(0), cx.y(), cx.p(0), cx.g(0));
        let gb = some_if(self.use_bias, cx.g(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch(0));
        let act = cx.backward_act(self.activation);
        let dx = cx.dx(0);
        quote!(::modelc::__private::kernels::depthwise::backward(&#geom, #dm, #x, #w, #pre, #y, &mut __dy[..], #act, #dx, #gw, #gb, __b);)
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.activation)
    }
}

impl Depthwise {
    /// Keras import: `DepthwiseConv1D` / `DepthwiseConv2D(kernel_size, strides, padding, depth_multiplier, ...)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("kernel_size");
        a.kw_tuple("strides", 1);
        a.kw("padding", json!("valid"));
        a.kw("depth_multiplier", json!(1));
        a.channels_last();
        a.kw_tuple("dilation_rate", 1);
        a.activation("activation", false);
        a.kw("use_bias", json!(true));
        a.weights("depthwise", "GlorotUniform");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::conv::tests::one_error;

    #[test]
    fn depthwise_shapes_and_weights_follow_keras() {
        let src = "struct M { input x: [7, 6, 3]; output y = DepthwiseConv2D(3, strides = 2, padding = same, depth_multiplier = 2)(x); \
                   output z = DepthwiseConv1D(2, dilation_rate = 2)(Reshape((42, 3))(x)); output v = DepthwiseConv2D((3, 2), 1, valid, 4)(x); }";
        assert_eq!(crate::layers::tests::ok_shapes(src), vec![vec![4, 3, 6], vec![40, 3], vec![5, 5, 12]]);
        let d = Depthwise {
            window: Window { rank: 2, size: vec![3, 2], strides: vec![1, 1], dilation: vec![1, 1], same: false },
            depth_multiplier: 4,
            activation: Act::Linear,
            use_bias: true,
            kernel: WeightArgs::default(),
            bias: WeightArgs::default(),
        };
        let p = d.params(&[Shape(vec![7, 6, 3])]);
        assert_eq!(p[0].shape, vec![3, 2, 3, 4]);
        // Keras' fans for a [3, 2, 3, 4] kernel: receptive field 6, times 3 in and 4 out.
        assert_eq!(p[0].init, InitKind::GlorotUniform { fan_in: 18, fan_out: 24 });
        assert_eq!(p[1].shape, vec![12]);
    }

    #[test]
    fn depthwise_geometry_errors_name_the_shapes() {
        let (line, col, text) = one_error("input x: [8, 8, 3];\noutput y = DepthwiseConv2D(3, depth_multiplier = 0)(x);");
        assert_eq!((line, col), (3, 50));
        assert!(text.contains("`depth_multiplier` of DepthwiseConv2D must be a positive integer, got 0"), "{text}");
        let (line, col, text) = one_error("input x: [4, 4, 3];\noutput y = DepthwiseConv2D(5)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("the 5×5 window of DepthwiseConv2D does not fit in `x` (None, 4, 4, 3)"), "{text}");
        let (_, _, text) = one_error("input x: [10, 4];\noutput y = DepthwiseConv2D(3)(x);");
        assert!(text.contains("DepthwiseConv2D expects an image (None, height, width, channels) per sample"), "{text}");
        assert!(text.contains("use DepthwiseConv1D"), "{text}");
    }
}
