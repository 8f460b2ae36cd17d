//! `SeparableConv2D(filters, kernel_size, strides = 1, padding = valid, dilation_rate = 1,
//! depth_multiplier = 1, activation, use_bias)` and `SeparableConv1D(...)`: a depthwise convolution
//! (each input channel by `depth_multiplier` filters, no bias) then a pointwise 1×1 convolution into
//! `filters` channels with the bias and activation, as in Keras. Weights in Keras layout and order:
//! `depthwise_kernel` `[kh, kw, c, depth_multiplier]` (`[k, c, dm]` in 1D), `pointwise_kernel`
//! `[1, 1, c · depth_multiplier, filters]` (`[1, c · dm, filters]`), `bias` `[filters]`. The geometry is
//! the convolutions' [`Window`]; the kernel chains the runtime's depthwise and dense ones.

use super::args::ArgReader;
use super::conv::{Geom, Window};
use super::weights::{role, WeightArgs};
use super::{some_if, Act, EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// `SeparableConv1D` / `SeparableConv2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct Separable {
    /// Output channels of the pointwise stage.
    pub filters: usize,
    /// Window, strides, dilation, padding of the depthwise stage.
    pub window: Window,
    /// Depthwise filters per input channel.
    pub depth_multiplier: usize,
    /// Activation fused into the output pass.
    pub activation: Act,
    /// Whether a bias (one per filter) is added.
    pub use_bias: bool,
    /// `depthwise_initializer`, `depthwise_regularizer`, `depthwise_constraint`.
    pub depthwise: WeightArgs,
    /// `pointwise_initializer`, `pointwise_regularizer`, `pointwise_constraint`.
    pub pointwise: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint`.
    pub bias: WeightArgs,
}

impl Separable {
    /// `SeparableConv{rank}D(filters, kernel_size, strides, padding, dilation_rate, depth_multiplier,
    /// activation, use_bias)`: the first four positional as in Keras (whose fifth is `data_format`), the
    /// rest keywords.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let filters = r.required_positive("filters", Some(0));
        let window = Window::read(r, rank, ("kernel_size", Some(1)), None, false);
        let depth_multiplier = r.positive_or("depth_multiplier", None, 1);
        let activation = Act::read(r, "activation", None, Act::Linear);
        let use_bias = r.bool_or("use_bias", None, true);
        let depthwise = WeightArgs::read(r, role!("depthwise", rank + 2));
        let pointwise = WeightArgs::read(r, role!("pointwise", rank + 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        Some(Separable {
            filters: filters?,
            window: window?,
            depth_multiplier: depth_multiplier?,
            activation: activation?,
            use_bias: use_bias?,
            depthwise: depthwise?,
            pointwise: pointwise?,
            bias: bias?,
        })
    }

    fn kind(&self) -> &'static str {
        if self.window.rank == 1 {
            "SeparableConv1D"
        } else {
            "SeparableConv2D"
        }
    }

    fn geom(&self, cx: &EmitCx) -> Geom {
        self.window.geom(&cx.inputs.first().map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new())))
    }

    /// `separable::Weights { depthwise: __p0, pointwise: __p1, bias }` as emitted code.
    fn weights(&self, cx: &EmitCx) -> TokenStream {
        let (wd, wp) = (cx.p(0), cx.p(1));
        let b = some_if(self.use_bias, cx.p(2));
        quote!(::modelc::__private::kernels::separable::Weights { depthwise: #wd, pointwise: #wp, bias: #b })
    }
}

impl LayerDef for Separable {
    // Channels-first: a grouped `Conv` (one group per input channel) with the depthwise kernel
    // `[c · dm, 1, *k]`, then a 1×1 `Conv` with the pointwise kernel `[filters, c · dm, 1...]` and the
    // bias, back to channels-last, then the activation.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let shape = cx.input_shape(0);
        let (r, full) = (self.window.rank, shape.rank() + 1);
        let xt = cx.to_channels_first(&x, full);
        let (wd, attrs) = super::depthwise::onnx_depthwise(cx, &self.window, self.depth_multiplier, &cx.param(0));
        let mid = cx.op("Conv", &[&xt, &wd], attrs);
        let mut perm = vec![r + 1, r];
        perm.extend(0..r);
        let wp = cx.transpose(&cx.param(1), &perm);
        let b = cx.param(2);
        let mut ins = vec![mid.as_str(), wp.as_str()];
        if self.use_bias {
            ins.push(&b);
        }
        let ones = vec![1; r];
        let pointwise = vec![("kernel_shape", crate::onnx::ints(&ones)), ("pads", crate::onnx::ints(&vec![0; 2 * r]))];
        let y = cx.op("Conv", &ins, pointwise);
        let z = cx.fresh("separable");
        cx.to_channels_last_into(&y, full, &z);
        cx.activation(self.activation, &z, &cx.output());
        Ok(())
    }

    // Rule: (None, h, w, c) -> (None, oh, ow, filters) (1D: (None, steps, c) -> (None, out, filters)),
    // with Keras 'valid'/'same' output sizes of the depthwise window; a 'valid' window must fit.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (mut dims, _) = self.window.check(cx, self.kind())?;
        dims.push(self.filters);
        Ok(Shape(dims))
    }

    // Spatial axes plus channels, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.window.rank + 1)
    }

    // Keras: `depthwise_kernel` [*kernel_size, c, dm] (glorot fans: window area times c in, times dm
    // out), `pointwise_kernel` [*ones, c · dm, filters] (fans c · dm and filters), `bias` [filters].
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let c = inputs.first().map(Shape::last).unwrap_or(0);
        let area = self.window.size.iter().fold(1usize, |a, k| a.saturating_mul(*k));
        let (dm, inner) = (self.depth_multiplier, c.saturating_mul(self.depth_multiplier));
        let mut depthwise = self.window.size.clone();
        depthwise.extend([c, dm]);
        let mut pointwise = vec![1; self.window.rank];
        pointwise.extend([inner, self.filters]);
        let depthwise_init = InitKind::GlorotUniform { fan_in: area.saturating_mul(c), fan_out: area.saturating_mul(dm) };
        let pointwise_init = InitKind::GlorotUniform { fan_in: inner, fan_out: self.filters };
        let mut p = vec![
            ParamDecl::new("depthwise_kernel", depthwise, depthwise_init, true).with(&self.depthwise),
            ParamDecl::new("pointwise_kernel", pointwise, pointwise_init, true).with(&self.pointwise),
        ];
        if self.use_bias {
            p.push(ParamDecl::new("bias", vec![self.filters], InitKind::Zeros, true).with(&self.bias));
        }
        p
    }

    // [the depthwise output (read by backward), its gradient, the pre-activation when the activation
    // needs it].
    fn scratch(&self, inputs: &[Shape], output: &Shape) -> Vec<usize> {
        let g = self.window.geom(inputs.first().unwrap_or(&Shape(Vec::new())));
        let mid = g.positions().saturating_mul(g.c).saturating_mul(self.depth_multiplier);
        let mut s = vec![mid, mid];
        if self.activation.needs_input() {
            s.push(output.numel());
        }
        s
    }

    // The depthwise output's gradient.
    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![1]
    }

    // { take mid; separable::forward(&Window2d{..}, depth_multiplier, x, Weights{..}, act, mid, pre, y, __b, filters); put back }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, dm, x, cout) = (self.geom(cx).tokens(), self.depth_multiplier, cx.x(0), self.filters);
        let w = self.weights(cx);
        // Two mutable scratch buffers: the first is taken out of the workspace for the call.
        let (mid, mid_len) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch_len(0));
        let pre = some_if(self.activation.needs_input(), cx.scratch_mut(2));
        let act = self.activation.tokens();
        quote! {
            let mut __mid = ::core::mem::take(&mut __ws.scratch[#mid]);
            ::modelc::__private::kernels::separable::forward(&#geom, #dm, #x, #w, #act, &mut __mid[..__b * #mid_len], #pre, &mut __y[..], __b, #cout);
            __ws.scratch[#mid] = __mid;
        }
    }

    // { take dmid; separable::backward(&Window2d{..}, dm, x, Weights{..}, (mid, dmid), pre, y, dy, act, dx,
    //   Grads{..}, __b, filters); put back }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, dm, x, y, cout) = (self.geom(cx).tokens(), self.depth_multiplier, cx.x(0), cx.y(), self.filters);
        let w = self.weights(cx);
        let (gd, gp) = (cx.g(0), cx.g(1));
        let gb = some_if(self.use_bias, cx.g(2));
        let mid = cx.scratch(0);
        let (dmid, dmid_len) = (cx.scratch.get(1).copied().unwrap_or(0), cx.scratch_len(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch(2));
        let act = cx.backward_act(self.activation);
        let dx = cx.dx(0);
        quote! {
            let mut __dmid = ::core::mem::take(&mut __ws.scratch[#dmid]);
            ::modelc::__private::kernels::separable::backward(
                &#geom, #dm, #x, #w, (#mid, &mut __dmid[..__b * #dmid_len]), #pre, #y, &mut __dy[..], #act, #dx,
                ::modelc::__private::kernels::separable::Grads { depthwise: #gd, pointwise: #gp, bias: #gb }, __b, #cout,
            );
            __ws.scratch[#dmid] = __dmid;
        }
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.activation)
    }
}

impl Separable {
    /// Keras import: `SeparableConv1D` / `SeparableConv2D(filters, kernel_size, strides, padding,
    /// dilation_rate, depth_multiplier, activation, use_bias)` with both kernels' initializers,
    /// regularizers and constraints.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("filters");
        a.positional("kernel_size");
        a.kw_tuple("strides", 1);
        a.kw("padding", json!("valid"));
        a.channels_last();
        a.kw_tuple("dilation_rate", 1);
        a.kw("depth_multiplier", json!(1));
        a.activation("activation", false);
        a.kw("use_bias", json!(true));
        a.initializer("pointwise_initializer", "GlorotUniform");
        for what in ["pointwise_regularizer", "pointwise_constraint"] {
            a.optional_object(what);
        }
        a.weights("depthwise", "GlorotUniform");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::conv::tests::one_error;

    #[test]
    fn separable_shapes_and_weights_follow_keras() {
        let src = "struct M { input x: [7, 6, 3]; output y = SeparableConv2D(5, 3, strides = 2, padding = same, depth_multiplier = 2)(x); \
                   output z = SeparableConv1D(4, 2, dilation_rate = 2)(Reshape((42, 3))(x)); output v = SeparableConv2D(8, (3, 2), 1, valid)(x); }";
        assert_eq!(crate::layers::tests::ok_shapes(src), vec![vec![4, 3, 5], vec![40, 4], vec![5, 5, 8]]);
        let s = Separable {
            filters: 5,
            window: Window { rank: 2, size: vec![3, 2], strides: vec![1, 1], dilation: vec![1, 1], same: false },
            depth_multiplier: 4,
            activation: Act::Linear,
            use_bias: true,
            depthwise: WeightArgs::default(),
            pointwise: WeightArgs::default(),
            bias: WeightArgs::default(),
        };
        let p = s.params(&[Shape(vec![7, 6, 3])]);
        let names: Vec<&str> = p.iter().map(|d| d.suffix).collect();
        assert_eq!(names, ["depthwise_kernel", "pointwise_kernel", "bias"]);
        assert_eq!((p[0].shape.clone(), p[1].shape.clone(), p[2].shape.clone()), (vec![3, 2, 3, 4], vec![1, 1, 12, 5], vec![5]));
        // Keras' fans: [3, 2, 3, 4] has receptive field 6 (18 in, 24 out); [1, 1, 12, 5] has 12 in, 5 out.
        assert_eq!(p[0].init, InitKind::GlorotUniform { fan_in: 18, fan_out: 24 });
        assert_eq!(p[1].init, InitKind::GlorotUniform { fan_in: 12, fan_out: 5 });
        let s1 =
            Separable { window: Window { rank: 1, size: vec![3], strides: vec![1], dilation: vec![1], same: true }, use_bias: false, ..s };
        let p = s1.params(&[Shape(vec![9, 2])]);
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].shape.clone(), p[1].shape.clone()), (vec![3, 2, 4], vec![1, 8, 5]));
    }

    #[test]
    fn separable_errors_name_the_shapes() {
        let (line, col, text) = one_error("input x: [8, 8, 3];\noutput y = SeparableConv2D(4, 3, depth_multiplier = 0)(x);");
        assert_eq!((line, col), (3, 53));
        assert!(text.contains("`depth_multiplier` of SeparableConv2D must be a positive integer, got 0"), "{text}");
        let (line, col, text) = one_error("input x: [4, 4, 3];\noutput y = SeparableConv2D(4, 5)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("the 5×5 window of SeparableConv2D does not fit in `x` (None, 4, 4, 3)"), "{text}");
        let (_, _, text) = one_error("input x: [10, 4];\noutput y = SeparableConv2D(4, 3)(x);");
        assert!(text.contains("SeparableConv2D expects an image (None, height, width, channels) per sample"), "{text}");
        assert!(text.contains("use SeparableConv1D"), "{text}");
        let (_, _, text) = one_error("input x: [10, 4];\noutput y = SeparableConv1D(kernel_size = 3)(x);");
        assert!(text.contains("SeparableConv1D is missing its required argument `filters`"), "{text}");
    }
}
