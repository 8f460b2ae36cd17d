//! `Conv2D(filters, kernel_size, strides = 1, padding = valid, dilation_rate = 1, activation, use_bias)` and
//! `Conv1D(...)`: channels-last convolution, kernel in Keras layout `[kh, kw, cin, cout]` (`[k, cin, cout]`
//! in 1D), run as im2col + GEMM with bias and activation fused. Also [`Window`], the sliding-window
//! geometry (Keras 'valid'/'same') shared with the pooling layers. A 1D op is the 2D op with height 1.

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{some_if, Act, EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A sliding window over the spatial axes of a channels-last tensor: `rank` spatial axes (1 or 2).
#[derive(Clone, Debug, PartialEq)]
pub struct Window {
    /// Spatial axes: 1 (sequences `(None, steps, c)`) or 2 (images `(None, h, w, c)`).
    pub rank: usize,
    /// Window size per spatial axis.
    pub size: Vec<usize>,
    /// Strides per spatial axis.
    pub strides: Vec<usize>,
    /// Dilation per spatial axis.
    pub dilation: Vec<usize>,
    /// Keras 'same' padding (else 'valid').
    pub same: bool,
}

/// The 2D geometry of a [`Window`] over one input shape (1D as height 1), mirroring the runtime's
/// `kernels::conv::Window2d` field for field.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geom {
    /// Input height, width, channels.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Strides.
    pub sh: usize,
    /// Stride along the width.
    pub sw: usize,
    /// Dilation.
    pub dh: usize,
    /// Dilation along the width.
    pub dw: usize,
    /// Padding before the data.
    pub pad_top: usize,
    /// Padding left of the data.
    pub pad_left: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl Geom {
    /// Elements of one im2col row.
    pub fn patch(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// Output positions per sample.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// 1×1 window, stride 1, no padding: the input is its own im2col matrix.
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pad_top == 0 && self.pad_left == 0
    }

    /// `::modelc::__private::kernels::conv::Window2d { ... }`.
    pub fn tokens(&self) -> TokenStream {
        let Geom { h, w, c, kh, kw, sh, sw, dh, dw, pad_top, pad_left, oh, ow } = *self;
        quote!(::modelc::__private::kernels::conv::Window2d {
            h: #h, w: #w, c: #c, kh: #kh, kw: #kw, sh: #sh, sw: #sw, dh: #dh, dw: #dw,
            pad_top: #pad_top, pad_left: #pad_left, oh: #oh, ow: #ow
        })
    }
}

/// Keras' output size and padding before the data along one axis: `(out, pad_before)`.
/// 'valid': ⌊(in − (k−1)·d − 1) / s⌋ + 1, or 0 when the window does not fit; 'same': ⌈in / s⌉ with
/// pad_total = max((out − 1)·s + (k−1)·d + 1 − in, 0) split with the smaller half before.
pub fn axis_geometry(input: usize, k: usize, s: usize, d: usize, same: bool) -> (usize, usize) {
    let span = k.saturating_sub(1).saturating_mul(d).saturating_add(1);
    let s = s.max(1);
    if same {
        let out = input.div_ceil(s);
        let total = out.saturating_sub(1).saturating_mul(s).saturating_add(span).saturating_sub(input);
        (out, total / 2)
    } else if input >= span {
        ((input - span) / s + 1, 0)
    } else {
        (0, 0)
    }
}

impl Window {
    /// Reads `size_name` (required when `default` is `None`), `strides_name` (defaulting to the size when
    /// `strides_default_size`, else 1), `padding` and, when `dilation` is true, `dilation_rate`.
    pub fn read(
        r: &mut ArgReader<'_>,
        rank: usize,
        size: (&'static str, Option<usize>),
        default: Option<usize>,
        pooling: bool,
    ) -> Option<Self> {
        let kind = r.kind();
        let span = r.span();
        let size_v = r.positive_tuple_or(size.0, size.1, rank, &vec![default.unwrap_or(0); rank]);
        let size_v = match size_v {
            Some(v) if v.contains(&0) => {
                r.error(
                    Diagnostic::new(span, format!("{kind} is missing its required argument `{}`", size.0))
                        .help(format!("give the window size, e.g. `{} = 3`", size.0)),
                );
                None
            }
            v => v,
        };
        let strides_pos = size.1.map(|p| p + 1);
        let strides = if pooling {
            // Keras pooling: `strides = None` means the pool size.
            r.positive_tuple_or("strides", strides_pos, rank, size_v.as_deref().unwrap_or(&[]))
        } else {
            r.positive_tuple_or("strides", strides_pos, rank, &vec![1; rank])
        };
        let padding = r.choice_or("padding", strides_pos.map(|p| p + 1), &["valid", "same"], "valid");
        let dilation = if pooling { Some(vec![1; rank]) } else { r.positive_tuple_or("dilation_rate", None, rank, &vec![1; rank]) };
        let (size, strides, dilation, padding) = (size_v?, strides?, dilation?, padding?);
        if strides.iter().any(|s| *s > 1) && dilation.iter().any(|d| *d > 1) {
            r.error(
                Diagnostic::new(span, format!("{kind} cannot combine `strides` > 1 with `dilation_rate` > 1 (as in Keras)"))
                    .help("use either a stride or a dilation, e.g. a dilated conv followed by a pooling layer"),
            );
            return None;
        }
        Some(Window { rank, size, strides, dilation, same: padding == "same" })
    }

    /// `(h, w, c)` of an input of the right rank (`(1, steps, c)` in 1D), else `None`.
    fn spatial(&self, x: &Shape) -> Option<(usize, usize, usize)> {
        match (self.rank, x.dims()) {
            (1, [w, c]) => Some((1, *w, *c)),
            (2, [h, w, c]) => Some((*h, *w, *c)),
            _ => None,
        }
    }

    fn pick(v: &[usize], rank: usize, axis: usize) -> usize {
        // In 1D the only axis is the width; the height is a size-1 axis with a size-1 window.
        if rank == 1 {
            if axis == 0 {
                1
            } else {
                v.first().copied().unwrap_or(1)
            }
        } else {
            v.get(axis).copied().unwrap_or(1)
        }
    }

    /// The ONNX window attributes over channels-last `x`: `kernel_shape`, `strides`, `dilations` (when
    /// `dilations`) and explicit `pads` reproducing Keras' 'valid'/'same' (the smaller half before).
    pub fn onnx_attrs(&self, x: &Shape, dilations: bool) -> Vec<(&'static str, crate::onnx::Attr)> {
        let n = self.rank.min(x.rank().saturating_sub(1));
        let at = |v: &[usize], i: usize| if v.len() == 1 { v.first().copied().unwrap_or(1) } else { v.get(i).copied().unwrap_or(1) };
        let (mut k, mut s, mut d, mut before, mut after) = (vec![], vec![], vec![], vec![], vec![]);
        for i in 0..n {
            let input = x.0.get(i).copied().unwrap_or(0);
            let (ki, si, di) = (at(&self.size, i), at(&self.strides, i), if dilations { at(&self.dilation, i) } else { 1 });
            let (out, pad) = axis_geometry(input, ki, si, di, self.same);
            let span = ki.saturating_sub(1) * di + 1;
            let total = (out.saturating_sub(1) * si.max(1) + span).saturating_sub(input);
            k.push(ki);
            s.push(si);
            d.push(di);
            before.push(pad);
            after.push(if self.same { total - pad } else { 0 });
        }
        before.extend(after);
        let mut attrs =
            vec![("kernel_shape", crate::onnx::ints(&k)), ("strides", crate::onnx::ints(&s)), ("pads", crate::onnx::ints(&before))];
        if dilations {
            attrs.push(("dilations", crate::onnx::ints(&d)));
        }
        attrs
    }

    /// The 2D geometry over `x` (which the shape rule checked).
    pub fn geom(&self, x: &Shape) -> Geom {
        let (h, w, c) = self.spatial(x).unwrap_or((0, 0, 0));
        let r = self.rank;
        let (kh, kw) = (Self::pick(&self.size, r, 0), Self::pick(&self.size, r, 1));
        let (sh, sw) = (Self::pick(&self.strides, r, 0), Self::pick(&self.strides, r, 1));
        let (dh, dw) = (Self::pick(&self.dilation, r, 0), Self::pick(&self.dilation, r, 1));
        let (oh, pad_top) = axis_geometry(h, kh, sh, dh, self.same);
        let (ow, pad_left) = axis_geometry(w, kw, sw, dw, self.same);
        Geom { h, w, c, kh, kw, sh, sw, dh, dw, pad_top, pad_left, oh, ow }
    }

    /// The spatial output dims (`[oh, ow]` or `[steps]`) of a checked input.
    fn out_spatial(&self, x: &Shape) -> Vec<usize> {
        let g = self.geom(x);
        if self.rank == 1 {
            vec![g.ow]
        } else {
            vec![g.oh, g.ow]
        }
    }

    /// Rule shared by convolutions and pooling: the input has `rank` spatial axes plus channels, and with
    /// 'valid' padding the (dilated) window fits. Returns the spatial output dims.
    pub fn check(&self, cx: &InferCx<'_>, kind: &str) -> Result<(Vec<usize>, usize), Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{kind} takes one tensor")))?;
        let name = cx.name(0);
        let Some((_, _, c)) = self.spatial(x) else {
            return Err(self.wrong_rank(cx, kind, x, name));
        };
        let out = self.out_spatial(x);
        if out.contains(&0) {
            let show = |v: &[usize]| v.iter().map(usize::to_string).collect::<Vec<_>>().join("×");
            let dilated: Vec<usize> = self.size.iter().zip(&self.dilation).map(|(k, d)| k.saturating_sub(1) * d + 1).collect();
            let window = if dilated == self.size {
                show(&self.size)
            } else {
                format!("{} ({} with dilation_rate {})", show(&self.size), show(&dilated), show(&self.dilation))
            };
            return Err(Diagnostic::new(
                cx.span,
                format!(
                    "the {} window of {kind} does not fit in {} with padding 'valid': the output would be empty",
                    window,
                    cx.describe(0)
                ),
            )
            .help("use `padding = same`, a smaller window, or a larger input"));
        }
        Ok((out, c))
    }
    /// Whether the window leaves a non-empty output on spatial dims `(h, w)` (`(1, w)` in 1D).
    fn fits(&self, h: usize, w: usize) -> bool {
        let r = self.rank;
        let along = |n: usize, axis: usize| {
            let (k, s, d) = (Self::pick(&self.size, r, axis), Self::pick(&self.strides, r, axis), Self::pick(&self.dilation, r, axis));
            axis_geometry(n, k, s, d, self.same).0 > 0
        };
        along(h, 0) && along(w, 1)
    }

    /// Whether the window's width leaves a non-empty output on `n` steps (the 1D form of the layer).
    fn fits_width(&self, n: usize) -> bool {
        let r = self.rank;
        axis_geometry(n, Self::pick(&self.size, r, 1), Self::pick(&self.strides, r, 1), Self::pick(&self.dilation, r, 1), self.same).0 > 0
    }

    /// The image `(h, w)` with `h · w = n` closest to square (`h >= w`) that this window fits, else the
    /// one closest to square, and whether it fits.
    fn image_of(&self, n: usize) -> ((usize, usize), bool) {
        // Widths up to √n give every factorization with h >= w.
        let shapes: Vec<(usize, usize)> =
            (1..=n).take_while(|w| w.saturating_mul(*w) <= n).filter(|w| n.is_multiple_of(*w)).map(|w| (n / w, w)).collect();
        let squarest = |v: &mut dyn Iterator<Item = (usize, usize)>| v.min_by_key(|(h, w)| h - w);
        match squarest(&mut shapes.iter().copied().filter(|(h, w)| self.fits(*h, *w))) {
            Some(hw) => (hw, true),
            None => (squarest(&mut shapes.iter().copied()).unwrap_or((n, 1)), false),
        }
    }

    /// "Conv2D expects an image (None, height, width, channels) ..." with a reshape that this window
    /// accepts, and `padding = same` when no reshape would leave room for a 'valid' window.
    fn wrong_rank(&self, cx: &InferCx<'_>, kind: &str, x: &Shape, name: &str) -> Diagnostic {
        let rank = self.rank;
        let want = if rank == 2 { "an image (None, height, width, channels)" } else { "a sequence (None, steps, channels)" };
        let d = Diagnostic::new(cx.span, format!("{kind} expects {want} per sample, but {} has rank {}", cx.describe(0), x.rank() + 1));
        let dims = x.dims();
        let other = kind.replace(if rank == 2 { "2D" } else { "1D" }, if rank == 2 { "1D" } else { "2D" });
        let same = format!("and give {kind} `padding = same`");
        match (rank, dims) {
            (2, [n]) => {
                // The 1D form of this layer reads the vector as a sequence with the window's width.
                let seq = if self.fits_width(*n) {
                    format!(", or `Reshape(({n}, 1))({name})` then {other} for a sequence")
                } else {
                    String::new()
                };
                match self.image_of(*n) {
                    ((h, w), true) => d.help(format!(
                        "reshape the vector into an image first: `Reshape(({h}, {w}, 1))({name})` gives (None, {h}, {w}, 1){seq}"
                    )),
                    ((h, w), false) => d.help(format!(
                        "{n} values make no image this window fits with padding 'valid': reshape them with `Reshape(({h}, {w}, 1))({name})` {same}{seq}"
                    )),
                }
            }
            (2, [t, n]) if self.fits(*t, *n) => d.help(format!(
                "`{name}` is a sequence: use {other}, or add a channel axis with `Reshape(({t}, {n}, 1))({name})` to treat it as an image"
            )),
            (2, [t, n]) => {
                d.help(format!("`{name}` is a sequence: use {other}, or add a channel axis with `Reshape(({t}, {n}, 1))({name})` {same}"))
            }
            (1, [n]) if self.fits(1, *n) => {
                d.help(format!("reshape the vector into a sequence first: `Reshape(({n}, 1))({name})` gives (None, {n}, 1)"))
            }
            (1, [n]) => d.help(format!("reshape the vector into a sequence first, `Reshape(({n}, 1))({name})`, {same}")),
            (1, [h, w, c]) if self.fits(1, h * w) => d.help(format!(
                "`{name}` is an image: use {other}, or `Reshape(({}, {c}))({name})` to read its pixels as one sequence",
                h * w
            )),
            (1, [h, w, c]) => d.help(format!(
                "`{name}` is an image: use {other}, or `Reshape(({}, {c}))({name})` to read its pixels as one sequence {same}",
                h * w
            )),
            _ => d.help(format!("reshape `{name}` first, e.g. `Reshape((...))({name})`; `Flatten()({name})` gives (None, {})", x.numel())),
        }
    }
}

/// The numbers dividing both `a` and `b`, in increasing order.
fn common_divisors(a: usize, b: usize) -> Vec<usize> {
    let (mut x, mut y) = (a, b);
    while y != 0 {
        (x, y) = (y, x % y);
    }
    let (mut small, mut large) = (Vec::new(), Vec::new());
    let mut d = 1;
    while d * d <= x {
        if x.is_multiple_of(d) {
            small.push(d);
            if d * d != x {
                large.push(x / d);
            }
        }
        d += 1;
    }
    small.extend(large.into_iter().rev());
    small
}

/// `Conv1D` / `Conv2D`.
#[derive(Clone, Debug, PartialEq)]
pub struct Conv {
    /// Output channels.
    pub filters: usize,
    /// Window, strides, dilation, padding.
    pub window: Window,
    /// Activation fused into the output pass.
    pub activation: Act,
    /// Whether a bias is added.
    pub use_bias: bool,
    /// `kernel_initializer`, `kernel_regularizer`, `kernel_constraint`.
    pub kernel: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint`.
    pub bias: WeightArgs,
    /// Channel groups (Keras `groups`): input and output channels split into this many blocks, each
    /// output block convolving only its input block. 1 is an ordinary convolution.
    pub groups: usize,
}

impl Conv {
    /// `Conv{rank}D(filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias)`.
    pub fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let filters = r.required_positive("filters", Some(0));
        let window = Window::read(r, rank, ("kernel_size", Some(1)), None, false);
        let groups = r.positive_or("groups", None, 1);
        let activation = Act::read(r, "activation", None, Act::Linear);
        let use_bias = r.bool_or("use_bias", None, true);
        let kernel = WeightArgs::read(r, role!("kernel", rank + 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        let (filters, groups) = (filters?, groups?);
        if filters % groups != 0 {
            let (span, kind) = (r.span(), r.kind());
            r.error(
                Diagnostic::new(span, format!("{kind} has {filters} filters, which {groups} groups cannot split evenly"))
                    .help(format!("use a number of filters divisible by `groups`, e.g. {}", filters.div_ceil(groups) * groups)),
            );
            return None;
        }
        Some(Conv { filters, window: window?, activation: activation?, use_bias: use_bias?, groups, kernel: kernel?, bias: bias? })
    }

    fn kind(&self) -> &'static str {
        if self.window.rank == 1 {
            "Conv1D"
        } else {
            "Conv2D"
        }
    }

    fn geom(&self, cx: &EmitCx) -> Geom {
        self.window.geom(&cx.inputs.first().map(|o| o.shape.clone()).unwrap_or(Shape(Vec::new())))
    }

    // grouped_conv::forward(&Window2d{..}, groups, x, kernel, bias, act, pre, y, __b, filters)
    fn grouped_forward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, groups, x, w, cout) = (self.geom(cx).tokens(), self.groups, cx.x(0), cx.p(0), self.filters);
        let b = some_if(self.use_bias, cx.p(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch_mut(2));
        let act = self.activation.tokens();
        quote!(::modelc::__private::kernels::grouped_conv::forward(&#geom, #groups, #x, #w, #b, #act, #pre, &mut __y[..], __b, #cout);)
    }

    // grouped_conv::backward(&Window2d{..}, groups, x, kernel, pre, y, dy, act, dx, dkernel, dbias, __b, filters)
    fn grouped_backward(&self, cx: &EmitCx) -> TokenStream {
        let (geom, groups, x, y, w, gw, cout) = (self.geom(cx).tokens(), self.groups, cx.x(0), cx.y(), cx.p(0), cx.g(0), self.filters);
        let gb = some_if(self.use_bias, cx.g(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch(2));
        let act = cx.backward_act(self.activation);
        let dx = cx.dx(0);
        quote!(::modelc::__private::kernels::grouped_conv::backward(&#geom, #groups, #x, #w, #pre, #y, &mut __dy[..], #act, #dx, #gw, #gb, __b, #cout);)
    }
}

impl LayerDef for Conv {
    // Transpose(x) to channels-first, Conv(W = kernel transposed to (out, in/groups, k...), bias, group),
    // Transpose back, then the activation.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let x = cx.input(0);
        let mut attrs = self.window.onnx_attrs(&cx.input_shape(0), true);
        attrs.push(("group", Attr::Int(self.groups.max(1) as i64)));
        let mut perm = vec![self.window.rank + 1, self.window.rank];
        perm.extend(0..self.window.rank);
        let w = cx.transpose(&cx.param(0), &perm);
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

    // Rule: (None, h, w, cin) -> (None, oh, ow, filters) (1D: (None, steps, cin) -> (None, out, filters)),
    // with Keras 'valid'/'same' output sizes; a 'valid' window must fit.
    // With `groups`, the input channels split evenly into the groups.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let (mut dims, c) = self.window.check(cx, self.kind())?;
        if c % self.groups != 0 {
            let g = self.groups;
            let divisors: Vec<String> = common_divisors(c, self.filters).iter().map(usize::to_string).collect();
            return Err(Diagnostic::new(
                cx.span,
                format!("{} with groups = {g} cannot split the {c} channels of {} into {g} equal groups", self.kind(), cx.describe(0)),
            )
            .help(format!(
                "use `groups` dividing both {c} channels and {} filters: one of {}",
                self.filters,
                divisors.join(", ")
            )));
        }
        dims.push(self.filters);
        Ok(Shape(dims))
    }

    // Spatial axes plus channels, whatever the operand.
    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(self.window.rank + 1)
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let cin = inputs.first().map(Shape::last).unwrap_or(0) / self.groups.max(1);
        // Saturating: a same-padded window may be huge while the output is small; `infer` then rejects the
        // kernel's shape as too large, and must not overflow on the way.
        let area = self.window.size.iter().fold(1usize, |a, k| a.saturating_mul(*k));
        let mut shape = self.window.size.clone();
        shape.extend([cin, self.filters]);
        let mut p = vec![ParamDecl::new(
            "kernel",
            shape,
            InitKind::GlorotUniform { fan_in: area.saturating_mul(cin), fan_out: area.saturating_mul(self.filters) },
            true,
        )
        .with(&self.kernel)];
        if self.use_bias {
            p.push(ParamDecl::new("bias", vec![self.filters], InitKind::Zeros, true).with(&self.bias));
        }
        p
    }

    // [im2col, its gradient, the pre-activation when the activation needs it]; im2col is empty for 1×1.
    fn scratch(&self, inputs: &[Shape], output: &Shape) -> Vec<usize> {
        let g = self.window.geom(inputs.first().unwrap_or(&Shape(Vec::new())));
        // A grouped convolution runs direct loops: no im2col.
        let col = if g.is_pointwise() || self.groups > 1 { 0 } else { g.positions() * g.patch() };
        let mut s = vec![col, col];
        if self.activation.needs_input() {
            s.push(output.numel());
        }
        s
    }

    // The im2col gradient.
    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![1]
    }

    // { let mut __col = take(scratch0); conv::forward(&Window2d{..}, x, kernel, bias, act, pre, &mut __col, y, __b, filters); put back }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        if self.groups > 1 {
            return self.grouped_forward(cx);
        }
        let geom = self.geom(cx).tokens();
        let x = cx.x(0);
        let w = cx.p(0);
        let b = some_if(self.use_bias, cx.p(1));
        let (col, col_len) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch_len(0));
        let pre_len = cx.scratch_len(2);
        let (take_pre, pre, put_pre) = match cx.scratch.get(2) {
            Some(s) if self.activation.needs_input() => (
                quote!(let mut __pre = ::core::mem::take(&mut __ws.scratch[#s]);),
                quote!(::core::option::Option::Some(&mut __pre[..__b * #pre_len])),
                quote!(__ws.scratch[#s] = __pre;),
            ),
            _ => (TokenStream::new(), quote!(::core::option::Option::None), TokenStream::new()),
        };
        let act = self.activation.tokens();
        let cout = self.filters;
        quote! {
            let __geom = #geom;
            let mut __col = ::core::mem::take(&mut __ws.scratch[#col]);
            #take_pre
            ::modelc::__private::kernels::conv::forward(&__geom, #x, #w, #b, #act, #pre, &mut __col[..__b * #col_len], &mut __y[..], __b, #cout);
            __ws.scratch[#col] = __col;
            #put_pre
        }
    }

    // { take scratch 0 and 1; conv::backward(&Window2d{..}, x, kernel, pre, y, dy, act, &mut col, &mut dcol, dx, dkernel, dbias, __b, filters); put back }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if self.groups > 1 {
            return self.grouped_backward(cx);
        }
        let geom = self.geom(cx).tokens();
        let (x, y, w, gw) = (cx.x(0), cx.y(), cx.p(0), cx.g(0));
        let gb = some_if(self.use_bias, cx.g(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch(2));
        let act = cx.backward_act(self.activation);
        let (col, col_len) = (cx.scratch.first().copied().unwrap_or(0), cx.scratch_len(0));
        let (dcol, dcol_len) = (cx.scratch.get(1).copied().unwrap_or(0), cx.scratch_len(1));
        let dx = cx.dx(0);
        let cout = self.filters;
        quote! {
            let __geom = #geom;
            let mut __col = ::core::mem::take(&mut __ws.scratch[#col]);
            let mut __dcol = ::core::mem::take(&mut __ws.scratch[#dcol]);
            ::modelc::__private::kernels::conv::backward(&__geom, #x, #w, #pre, #y, &mut __dy[..], #act, &mut __col[..__b * #col_len], &mut __dcol[..__b * #dcol_len], #dx, #gw, #gb, __b, #cout);
            __ws.scratch[#col] = __col;
            __ws.scratch[#dcol] = __dcol;
        }
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.activation)
    }
}

impl Conv {
    /// Keras import: `Conv1D` / `Conv2D(filters, kernel_size, strides, padding, dilation_rate, groups, activation, use_bias)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("filters");
        a.positional("kernel_size");
        a.kw_tuple("strides", 1);
        a.kw("padding", json!("valid"));
        a.channels_last();
        a.kw_tuple("dilation_rate", 1);
        a.kw("groups", json!(1));
        a.activation("activation", false);
        a.kw("use_bias", json!(true));
        a.weights("kernel", "GlorotUniform");
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    /// The diagnostics of compiling `src` as `(line, column, text)`, 1-based, text with its `help:`.
    pub(crate) fn errors(src: &str) -> Vec<(usize, usize, String)> {
        let tokens: TokenStream = src.parse().unwrap();
        let (_, diags) = crate::compile(tokens);
        diags.items().iter().map(|d| (d.span.start().line, d.span.start().column + 1, d.text())).collect()
    }

    /// The one diagnostic of `body` inside a model, with its position.
    pub(crate) fn one_error(body: &str) -> (usize, usize, String) {
        let errs = errors(&format!("struct M {{\n{body}\n}}"));
        assert_eq!(errs.len(), 1, "{errs:#?}");
        errs.into_iter().next().unwrap()
    }

    #[test]
    fn conv2d_on_a_flat_vector_says_to_reshape_first() {
        let (line, col, text) = one_error("input x: [8];\noutput y = Conv2D(4, 3)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(
            text.contains("Conv2D expects an image (None, height, width, channels) per sample, but `x` (None, 8) has rank 2"),
            "{text}"
        );
        // No 8-value image fits a 3×3 'valid' window: 'same' padding, or a sequence for Conv1D.
        assert!(text.contains("help: 8 values make no image this window fits with padding 'valid'"), "{text}");
        assert!(text.contains("`Reshape((4, 2, 1))(x)` and give Conv2D `padding = same`, or `Reshape((8, 1))(x)` then Conv1D"), "{text}");
        // 64 values fit as 8×8.
        let (_, _, text) = one_error("input x: [64];\noutput y = Conv2D(4, 3)(x);");
        assert!(text.contains("help: reshape the vector into an image first: `Reshape((8, 8, 1))(x)` gives (None, 8, 8, 1)"), "{text}");
    }

    #[test]
    fn conv2d_on_a_sequence_suggests_conv1d_and_conv1d_on_an_image_suggests_conv2d() {
        let (_, _, text) = one_error("input x: [10, 4];\noutput y = Conv2D(4, 3)(x);");
        assert!(text.contains("`x` (None, 10, 4) has rank 3") && text.contains("use Conv1D"), "{text}");
        let (_, _, text) = one_error("input x: [6, 6, 3];\noutput y = Conv1D(4, 3)(x);");
        assert!(text.contains("Conv1D expects a sequence (None, steps, channels)") && text.contains("use Conv2D"), "{text}");
        assert!(text.contains("`Reshape((36, 3))(x)`"), "{text}");
    }

    #[test]
    fn a_valid_window_larger_than_the_input_is_an_error() {
        let (_, _, text) = one_error("input x: [4, 4, 1];\noutput y = Conv2D(2, 3, dilation_rate = 2)(x);");
        assert!(text.contains("3×3 (5×5 with dilation_rate 2×2) window of Conv2D does not fit in `x` (None, 4, 4, 1)"), "{text}");
        assert!(text.contains("help: use `padding = same`"), "{text}");
        let (_, _, text) = one_error("input x: [2, 2, 1];\noutput y = MaxPooling2D(3)(x);");
        assert!(text.contains("3×3 window of MaxPooling2D does not fit"), "{text}");
    }

    #[test]
    fn conv_arguments_are_checked() {
        let (_, _, text) = one_error("input x: [8, 8, 1];\noutput y = Conv2D(4)(x);");
        assert!(text.contains("Conv2D is missing its required argument `kernel_size`"), "{text}");
        let (_, _, text) = one_error("input x: [8, 8, 1];\noutput y = Conv2D(4, (3, 3, 3))(x);");
        assert!(text.contains("`kernel_size` of Conv2D needs 2 values, got 3"), "{text}");
        let (_, _, text) = one_error("input x: [8, 8, 1];\noutput y = Conv2D(4, 3, strides = 2, dilation_rate = 2)(x);");
        assert!(text.contains("cannot combine `strides` > 1 with `dilation_rate` > 1"), "{text}");
        let (_, _, text) = one_error("input x: [8, 8, 1];\noutput y = Conv2D(4, 3, padding = sam)(x);");
        assert!(text.contains("did you mean `same`?"), "{text}");
    }

    #[test]
    fn conv_output_shapes_follow_keras() {
        // 'same' at stride 2: ceil(7 / 2) = 4, ceil(6 / 2) = 3; Dense then acts on the last axis, as in Keras.
        let src = "struct M { input x: [7, 6, 2]; let a = Conv2D(4, (3, 2), strides = 2, padding = same)(x); output y = a; output z = Dense(1)(a); }";
        assert_eq!(crate::layers::tests::ok_shapes(src), vec![vec![4, 3, 4], vec![4, 3, 1]]);
    }

    #[test]
    fn grouped_convolutions_split_channels_and_kernels_as_keras() {
        let src = "struct M { input x: [6, 6, 4]; output y = Conv2D(6, 3, groups = 2)(x); output z = Conv1D(4, 2, groups = 4)(Reshape((36, 4))(x)); }";
        assert_eq!(crate::layers::tests::ok_shapes(src), vec![vec![4, 4, 6], vec![35, 4]]);
        let conv = Conv {
            filters: 6,
            window: Window { rank: 2, size: vec![3, 3], strides: vec![1, 1], dilation: vec![1, 1], same: false },
            activation: Act::Linear,
            use_bias: true,
            kernel: WeightArgs::default(),
            bias: WeightArgs::default(),
            groups: 2,
        };
        let p = conv.params(&[Shape(vec![6, 6, 4])]);
        assert_eq!(p[0].shape, vec![3, 3, 2, 6]);
        assert_eq!(p[0].init, InitKind::GlorotUniform { fan_in: 18, fan_out: 54 });
    }

    #[test]
    fn common_divisors_are_sorted() {
        assert_eq!(common_divisors(12, 18), vec![1, 2, 3, 6]);
        assert_eq!(common_divisors(16, 16), vec![1, 2, 4, 8, 16]);
        assert_eq!(common_divisors(7, 5), vec![1]);
    }

    #[test]
    fn groups_must_divide_channels_and_filters() {
        let (line, col, text) = one_error("input x: [6, 6, 6];\noutput y = Conv2D(4, 3, groups = 4)(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("Conv2D with groups = 4 cannot split the 6 channels of `x` (None, 6, 6, 6) into 4 equal groups"), "{text}");
        assert!(text.contains("help: use `groups` dividing both 6 channels and 4 filters: one of 1, 2"), "{text}");
        let (_, _, text) = one_error("input x: [6, 6, 4];\noutput y = Conv2D(5, 3, groups = 2)(x);");
        assert!(text.contains("Conv2D has 5 filters, which 2 groups cannot split evenly"), "{text}");
        assert!(text.contains("e.g. 6"), "{text}");
        let (_, _, text) = one_error("input x: [6, 6, 4];\noutput y = Conv2D(4, 3, groups = 0)(x);");
        assert!(text.contains("`groups` of Conv2D must be a positive integer, got 0"), "{text}");
    }

    #[test]
    fn axis_geometry_follows_keras_padding_rules() {
        assert_eq!(axis_geometry(7, 3, 2, 1, true), (4, 1));
        assert_eq!(axis_geometry(32, 3, 1, 1, true), (32, 1));
        assert_eq!(axis_geometry(5, 3, 1, 2, false), (1, 0));
        assert_eq!(axis_geometry(4, 5, 1, 1, false), (0, 0));
        assert_eq!(axis_geometry(8, 2, 2, 1, false), (4, 0));
    }

    #[test]
    fn one_dimensional_windows_are_height_one() {
        let w = Window { rank: 1, size: vec![3], strides: vec![2], dilation: vec![1], same: true };
        let g = w.geom(&Shape(vec![9, 4]));
        assert_eq!((g.h, g.w, g.c, g.kh, g.kw, g.sh, g.sw, g.oh, g.ow, g.pad_top, g.pad_left), (1, 9, 4, 1, 3, 1, 2, 1, 5, 0, 1));
    }
}
