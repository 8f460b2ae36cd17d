//! `Conv2DTranspose(filters, kernel_size, strides = 1, padding = valid, output_padding = None,
//! dilation_rate = 1, activation, use_bias)` and `Conv1DTranspose(...)`: channels-last transposed
//! convolution with Keras 3's output sizes, kernel in Keras layout `[kh, kw, filters, cin]` (`[k, filters,
//! cin]` in 1D: output filters before input channels). Run as direct loops (scatter forward, gather
//! backward) with bias and activation fused. A 1D op is the 2D op with height 1.

use super::args::{describe, ArgReader};
use super::conv::Window;
use super::padding::spatial;
use super::weights::{role, WeightArgs};
use super::{some_if, Act, EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::ast::ArgKind;
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// Keras' output size and the rows cropped before the output along one axis: `(out, crop)`.
///
/// With the dilated window `kd = (k − 1)·d + 1`, Keras (JAX backend) dilates the input by the stride and
/// pads it by `(left, right)`: 'valid' pads `kd − 1` and `kd − 1 + op` (`op` defaulting to
/// `max(kd, s) − kd`), 'same' pads `pad = s + kd − 2` (or `kd + kd % 2 − 2 + op` when `output_padding`
/// is given), `left = min(⌈pad / 2⌉, kd − 1)`. So out = (in − 1)·s + left + right + 2 − kd: (in − 1)·s +
/// max(kd, s) for 'valid', in·s for 'same', and the scatter of tap `k` of input `i` lands on
/// `i·s + k·d − (kd − 1 − left)`.
pub fn axis_geometry(input: usize, k: usize, s: usize, d: usize, same: bool, op: Option<usize>) -> (usize, usize) {
    let kd = k.saturating_sub(1).saturating_mul(d).saturating_add(1);
    let (left, right) = if same {
        let pad = match op {
            None => s.saturating_add(kd).saturating_sub(2),
            Some(op) => kd.saturating_add(kd % 2).saturating_add(op).saturating_sub(2),
        };
        let left = (pad / 2 + pad % 2).min(kd - 1);
        (left, pad - left)
    } else {
        let op = op.unwrap_or(kd.max(s) - kd);
        (kd - 1, (kd - 1).saturating_add(op))
    };
    if input == 0 {
        return (0, 0);
    }
    let out = (input - 1).saturating_mul(s).saturating_add(left).saturating_add(right).saturating_add(2).saturating_sub(kd);
    (out, kd - 1 - left)
}

/// `Conv1DTranspose` / `Conv2DTranspose`.
#[derive(Clone, Debug, PartialEq)]
pub struct ConvTranspose {
    /// Output channels.
    pub filters: usize,
    /// Window, strides, dilation, padding (as for a convolution).
    pub window: Window,
    /// Keras `output_padding` per spatial axis (each smaller than its stride); `None`: Keras' default size.
    pub output_padding: Option<Vec<usize>>,
    /// Activation fused into the output pass.
    pub activation: Act,
    /// Whether a bias is added.
    pub use_bias: bool,
    /// `kernel_initializer`, `kernel_regularizer`, `kernel_constraint`.
    pub kernel: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint`.
    pub bias: WeightArgs,
}

/// The 2D geometry of a transposed convolution over one input (1D as height 1), mirroring the runtime's
/// `kernels::conv_transpose::ConvT2d`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GeomT {
    /// Input height, width, channels.
    pub hwc: (usize, usize, usize),
    /// Window height and width.
    pub k: (usize, usize),
    /// Strides.
    pub s: (usize, usize),
    /// Dilation.
    pub d: (usize, usize),
    /// Rows and columns cropped before the output.
    pub crop: (usize, usize),
    /// Output height and width.
    pub out: (usize, usize),
}

impl GeomT {
    /// `::modelc::__private::kernels::conv_transpose::ConvT2d { .. }`.
    fn tokens(&self) -> TokenStream {
        let GeomT { hwc: (h, w, c), k: (kh, kw), s: (sh, sw), d: (dh, dw), crop: (crop_top, crop_left), out: (oh, ow) } = *self;
        quote!(::modelc::__private::kernels::conv_transpose::ConvT2d {
            h: #h, w: #w, c: #c, kh: #kh, kw: #kw, sh: #sh, sw: #sw, dh: #dh, dw: #dw,
            crop_top: #crop_top, crop_left: #crop_left, oh: #oh, ow: #ow
        })
    }
}

/// "(2, 2)" or "2".
fn show(v: &[usize]) -> String {
    match v {
        [one] => one.to_string(),
        _ => format!("({})", v.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

impl ConvTranspose {
    /// `Conv{rank}DTranspose(filters, kernel_size, strides, padding, output_padding, dilation_rate,
    /// activation, use_bias)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let filters = r.required_positive("filters", Some(0));
        let window = Window::read(r, rank, ("kernel_size", Some(1)), None, false);
        let output_padding = Self::read_output_padding(r, rank, window.as_ref());
        let activation = Act::read(r, "activation", None, Act::Linear);
        let use_bias = r.bool_or("use_bias", None, true);
        let kernel = WeightArgs::read(r, role!("kernel", rank + 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        Some(ConvTranspose {
            kernel: kernel?,
            bias: bias?,
            filters: filters?,
            window: window?,
            output_padding: output_padding?,
            activation: activation?,
            use_bias: use_bias?,
        })
    }

    /// `output_padding`: absent or `None` (Keras' default size), a non-negative integer for every axis, or
    /// one per axis; each must be smaller than its stride (Keras rejects it otherwise).
    fn read_output_padding(r: &mut ArgReader<'_>, rank: usize, window: Option<&Window>) -> Option<Option<Vec<usize>>> {
        let Some(v) = r.raw("output_padding", Some(4)) else { return Some(None) };
        let kind = r.kind();
        let one = |at: &crate::ast::ArgValue| match at.kind {
            ArgKind::Int(n) if n >= 0 => usize::try_from(n).ok(),
            _ => None,
        };
        let values: Option<Vec<usize>> = match &v.kind {
            ArgKind::Ident(id) if id == "None" => return Some(None),
            ArgKind::Int(_) => one(&v).map(|n| vec![n; rank]),
            ArgKind::Tuple(items) if items.len() == rank => items.iter().map(one).collect(),
            _ => None,
        };
        let Some(values) = values else {
            r.error(
                Diagnostic::new(v.span, format!("`output_padding` of {kind} must be a non-negative integer or a tuple of {rank}, got {}", describe(&v.kind)))
                    .help("give the extra rows and columns added at the end of the output, each smaller than the stride, e.g. `output_padding = 1`"),
            );
            return None;
        };
        let strides = window.map(|w| w.strides.clone())?;
        if values.iter().zip(&strides).any(|(op, s)| op >= s) {
            let fix = if strides.iter().all(|s| *s == 1) {
                String::from("with `strides = 1` the only `output_padding` is 0: leave it out")
            } else {
                let below: Vec<usize> = values.iter().zip(&strides).map(|(op, s)| (*op).min(s - 1)).collect();
                format!("use `output_padding = {}` or smaller, or leave it out for Keras' default output size", show(&below))
            };
            r.error(
                Diagnostic::new(
                    v.span,
                    format!("`output_padding` {} of {kind} must be smaller than `strides` {} on every axis", show(&values), show(&strides)),
                )
                .help(fix),
            );
            return None;
        }
        Some(Some(values))
    }

    fn kind(&self) -> &'static str {
        if self.window.rank == 1 {
            "Conv1DTranspose"
        } else {
            "Conv2DTranspose"
        }
    }

    /// The geometry along spatial axis `axis` of the layer (`(out, crop)`), for an input of `n` there.
    fn axis(&self, axis: usize, n: usize) -> (usize, usize) {
        let at = |v: &[usize]| v.get(axis).copied().unwrap_or(1);
        let op = self.output_padding.as_ref().map(|v| at(v));
        axis_geometry(n, at(&self.window.size), at(&self.window.strides), at(&self.window.dilation), self.window.same, op)
    }

    /// The 2D geometry over input `(h, w, c)` (`(1, steps, c)` in 1D).
    fn geom_of(&self, (h, w, c): (usize, usize, usize)) -> GeomT {
        let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
        let win = &self.window;
        if win.rank == 1 {
            let (ow, crop) = self.axis(0, w);
            GeomT {
                hwc: (1, w, c),
                k: (1, at(&win.size, 0)),
                s: (1, at(&win.strides, 0)),
                d: (1, at(&win.dilation, 0)),
                crop: (0, crop),
                out: (1, ow),
            }
        } else {
            let ((oh, ct), (ow, cl)) = (self.axis(0, h), self.axis(1, w));
            GeomT {
                hwc: (h, w, c),
                k: (at(&win.size, 0), at(&win.size, 1)),
                s: (at(&win.strides, 0), at(&win.strides, 1)),
                d: (at(&win.dilation, 0), at(&win.dilation, 1)),
                crop: (ct, cl),
                out: (oh, ow),
            }
        }
    }

    fn geom(&self, cx: &EmitCx) -> GeomT {
        let hwc = cx.inputs.first().map(|o| super::padding::hwc(&o.shape)).unwrap_or((0, 0, 0));
        self.geom_of(hwc)
    }
}

impl LayerDef for ConvTranspose {
    // ConvTranspose between channels-first transposes, the kernel (k..., filters, c) transposed to
    // (c, filters, k...); explicit pads crop Keras' output out of the full one, `output_padding` adds
    // what Keras keeps past it.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let dims = cx.input_shape(0).0;
        let r = self.window.rank;
        let at = |v: &[usize], i: usize| v.get(i).copied().unwrap_or(1);
        let (mut begin, mut end, mut extra_out) = (vec![], vec![], vec![]);
        for i in 0..r {
            let n = dims.get(i).copied().unwrap_or(0);
            let (out, crop) = self.axis(i, n);
            let kd = at(&self.window.size, i).saturating_sub(1) * at(&self.window.dilation, i) + 1;
            let full = (n.saturating_sub(1) * at(&self.window.strides, i) + kd) as i64;
            let rest = full - crop as i64 - out as i64;
            begin.push(crop as i64);
            end.push(rest.max(0));
            extra_out.push((-rest).max(0));
        }
        begin.extend(end);
        let size: Vec<usize> = (0..r).map(|i| at(&self.window.size, i)).collect();
        let strides: Vec<usize> = (0..r).map(|i| at(&self.window.strides, i)).collect();
        let dil: Vec<usize> = (0..r).map(|i| at(&self.window.dilation, i)).collect();
        let attrs = vec![
            ("kernel_shape", crate::onnx::ints(&size)),
            ("strides", crate::onnx::ints(&strides)),
            ("dilations", crate::onnx::ints(&dil)),
            ("pads", Attr::Ints(begin)),
            ("output_padding", Attr::Ints(extra_out)),
        ];
        let mut perm = vec![r + 1, r];
        perm.extend(0..r);
        let w = cx.transpose(&cx.param(0), &perm);
        let mut extra = vec![w.as_str()];
        let b = cx.param(1);
        if self.use_bias {
            extra.push(&b);
        }
        let y = cx.fresh("conv_transpose");
        cx.channels_first_op("ConvTranspose", &x, &extra, attrs, &y);
        cx.activation(self.activation, &y, &cx.output());
        Ok(())
    }

    // Rule: (None, h, w, cin) -> (None, oh, ow, filters) (1D: (None, steps, cin) -> (None, out, filters))
    // with Keras' sizes: 'valid' (in − 1)·s + max(kd, s), 'same' in·s; with `output_padding` op,
    // 'valid' (in − 1)·s + kd + op and 'same' (in − 1)·s + kd % 2 + op, which must not be empty.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (h, w, c) = spatial(cx, self.kind(), self.window.rank)?;
        let g = self.geom_of((h, w, c));
        if g.out.0 == 0 || g.out.1 == 0 {
            let op = self.output_padding.as_deref().map(show).unwrap_or_default();
            return Err(Diagnostic::new(
                cx.span,
                format!(
                    "{} with padding 'same' and output_padding {op} gives {} an empty output: (in − 1)·stride + kernel_size % 2 + output_padding is 0",
                    self.kind(),
                    cx.describe(0)
                ),
            )
            .help("use a larger `output_padding`, leave it out (the output is then input · stride), or use `padding = valid`"));
        }
        let mut dims = if self.window.rank == 1 { vec![g.out.1] } else { vec![g.out.0, g.out.1] };
        dims.push(self.filters);
        Ok(Shape(dims))
    }

    // Spatial axes plus channels, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.window.rank + 1)
    }

    // Keras: kernel [kh, kw, filters, cin], its Glorot fans read from that layout (fan_in = area · filters,
    // fan_out = area · cin), then the bias.
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let cin = inputs.first().map(Shape::last).unwrap_or(0);
        let area = self.window.size.iter().fold(1usize, |a, k| a.saturating_mul(*k));
        let mut shape = self.window.size.clone();
        shape.extend([self.filters, cin]);
        let mut p = vec![ParamDecl::new(
            "kernel",
            shape,
            InitKind::GlorotUniform { fan_in: area.saturating_mul(self.filters), fan_out: area.saturating_mul(cin) },
            true,
        )
        .with(&self.kernel)];
        if self.use_bias {
            p.push(ParamDecl::new("bias", vec![self.filters], InitKind::Zeros, true).with(&self.bias));
        }
        p
    }

    // The pre-activation when the activation needs it.
    // [the GEMM path's col (every input pixel times every tap: h · w · taps · filters), the pre-activation
    // when the activation needs it].
    fn scratch(&self, inputs: &[Shape], output: &Shape) -> Vec<usize> {
        let x = inputs.first().cloned().unwrap_or(Shape(Vec::new()));
        let (h, w) = match x.dims() {
            [w, _] => (1, *w),
            [h, w, _] => (*h, *w),
            _ => (0, 0),
        };
        let taps = self.window.size.iter().fold(1usize, |a, k| a.saturating_mul(*k));
        let col = h.saturating_mul(w).saturating_mul(taps).saturating_mul(self.filters);
        let mut s = vec![col];
        if self.activation.needs_input() {
            s.push(output.numel());
        }
        s
    }

    // { take col; conv_transpose::forward(&ConvT2d{..}, x, kernel, bias, act, pre, col, y, __b, filters); put back }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, x, w, cout) = (self.geom(cx).tokens(), cx.x(0), cx.p(0), self.filters);
        let b = some_if(self.use_bias, cx.p(1));
        let (col, col_len) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch_len(0));
        let pre = some_if(self.activation.needs_input(), cx.scratch_mut(1));
        let act = self.activation.tokens();
        quote! {
            let mut __col = ::core::mem::take(&mut __ws.scratch[#col]);
            ::modelc::__private::kernels::conv_transpose::forward(&#geom, #x, #w, #b, #act, #pre, &mut __col[..__b * #col_len], &mut __y[..], __b, #cout);
            __ws.scratch[#col] = __col;
        }
    }

    // { take col; conv_transpose::backward(&ConvT2d{..}, x, kernel, pre, y, dy, act, col, dx, dkernel, dbias, __b, filters); put back }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, x, y, w, gw, cout) = (self.geom(cx).tokens(), cx.x(0), cx.y(), cx.p(0), cx.g(0), self.filters);
        let gb = some_if(self.use_bias, cx.g(1));
        let (col, col_len) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch_len(0));
        let pre = some_if(self.activation.needs_input(), cx.scratch(1));
        let act = cx.backward_act(self.activation);
        let dx = cx.dx(0);
        quote! {
            let mut __col = ::core::mem::take(&mut __ws.scratch[#col]);
            ::modelc::__private::kernels::conv_transpose::backward(&#geom, #x, #w, #pre, #y, &mut __dy[..], #act, &mut __col[..__b * #col_len], #dx, #gw, #gb, __b, #cout);
            __ws.scratch[#col] = __col;
        }
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.activation)
    }
}

impl ConvTranspose {
    /// Keras import: `Conv1DTranspose` / `Conv2DTranspose(filters, kernel_size, strides, padding,
    /// output_padding, dilation_rate, activation, use_bias)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("filters");
        a.positional("kernel_size");
        a.kw_tuple("strides", 1);
        a.kw("padding", json!("valid"));
        if let Some(v) = a.get("output_padding") {
            a.args.push(format!("output_padding = {}", crate::import::args::dsl_value(v)));
        }
        a.channels_last();
        a.kw_tuple("dilation_rate", 1);
        a.activation("activation", false);
        a.kw("use_bias", json!(true));
        a.weights("kernel", "GlorotUniform");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn transposed_axis_geometry_follows_keras() {
        // 'same': in · s; the 3×3 stride-2 scatter starts at the output's first row.
        assert_eq!(axis_geometry(4, 3, 2, 1, true, None), (8, 0));
        assert_eq!(axis_geometry(4, 4, 2, 1, true, None), (8, 1));
        assert_eq!(axis_geometry(5, 3, 1, 1, true, None), (5, 1));
        // 'valid': (in − 1)·s + max(kd, s).
        assert_eq!(axis_geometry(4, 3, 2, 1, false, None), (9, 0));
        assert_eq!(axis_geometry(4, 2, 3, 1, false, None), (12, 0));
        assert_eq!(axis_geometry(4, 3, 1, 2, false, None), (8, 0));
        // output_padding: 'valid' (in − 1)·s + kd + op, 'same' (in − 1)·s + kd % 2 + op.
        assert_eq!(axis_geometry(4, 3, 2, 1, false, Some(1)), (10, 0));
        assert_eq!(axis_geometry(4, 3, 2, 1, true, Some(1)), (8, 0));
        assert_eq!(axis_geometry(4, 3, 2, 1, true, Some(0)), (7, 1));
        assert_eq!(axis_geometry(1, 2, 2, 1, true, Some(0)).0, 0);
    }

    #[test]
    fn transposed_shapes_follow_keras() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("Conv2DTranspose(8, 3, strides = 2, padding = same)", "[4, 5, 2]")), vec![vec![8, 10, 8]]);
        assert_eq!(ok_shapes(&src("Conv2DTranspose(8, (3, 2), 2)", "[4, 5, 2]")), vec![vec![9, 10, 8]]);
        assert_eq!(ok_shapes(&src("Conv2DTranspose(4, 3, 2, valid, (1, 0))", "[4, 5, 2]")), vec![vec![10, 11, 4]]);
        assert_eq!(ok_shapes(&src("Conv2DTranspose(4, 3, dilation_rate = 2, padding = same)", "[4, 5, 2]")), vec![vec![4, 5, 4]]);
        assert_eq!(ok_shapes(&src("Conv1DTranspose(3, 4, strides = 2, padding = same, output_padding = 1)", "[6, 2]")), vec![vec![11, 3]]);
        assert_eq!(ok_shapes(&src("Conv1DTranspose(3, 2, output_padding = None)", "[6, 2]")), vec![vec![7, 3]]);
    }

    #[test]
    fn transposed_kernels_put_filters_before_input_channels() {
        let ct = ConvTranspose {
            filters: 6,
            window: Window { rank: 2, size: vec![3, 2], strides: vec![2, 2], dilation: vec![1, 1], same: true },
            output_padding: None,
            activation: Act::Relu,
            use_bias: true,
            kernel: WeightArgs::default(),
            bias: WeightArgs::default(),
        };
        let p = ct.params(&[Shape(vec![4, 4, 5])]);
        assert_eq!(p[0].shape, vec![3, 2, 6, 5]);
        assert_eq!(p[0].init, InitKind::GlorotUniform { fan_in: 36, fan_out: 30 });
        assert_eq!(p[1].shape, vec![6]);
    }

    #[test]
    fn transposed_geometry_errors_are_reported_at_their_tokens() {
        let (line, col, text) = one_error("input x: [4, 4, 2];\noutput y = Conv2DTranspose(4, 3, strides = 2, output_padding = 2)(x);");
        assert_eq!((line, col), (3, 64));
        assert!(text.contains("`output_padding` (2, 2) of Conv2DTranspose must be smaller than `strides` (2, 2) on every axis"), "{text}");
        assert!(text.contains("help: use `output_padding = (1, 1)` or smaller"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 2];\noutput y = Conv2DTranspose(4, 3, output_padding = 1)(x);");
        assert!(text.contains("with `strides = 1` the only `output_padding` is 0"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 2];\noutput y = Conv2DTranspose(4, 3, output_padding = (1, 1, 1))(x);");
        assert!(text.contains("must be a non-negative integer or a tuple of 2, got"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = Conv2DTranspose(4, 3)(x);");
        assert!(text.contains("Conv2DTranspose expects an image") && text.contains("use Conv1DTranspose"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 2];\noutput y = Conv1DTranspose(4, 3)(x);");
        assert!(text.contains("use Conv2DTranspose"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 2];\noutput y = Conv2DTranspose(4, 3, strides = 2, dilation_rate = 2)(x);");
        assert!(text.contains("Conv2DTranspose cannot combine `strides` > 1 with `dilation_rate` > 1"), "{text}");
        let (line, col, text) = one_error("input x: [1, 2];\noutput y = Conv1DTranspose(4, 2, 2, same, 0)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("gives `x` (None, 1, 2) an empty output"), "{text}");
        let (_, _, text) = one_error("input x: [4, 4, 2];\noutput y = Conv2DTranspose(3)(x);");
        assert!(text.contains("Conv2DTranspose is missing its required argument `kernel_size`"), "{text}");
    }
}
