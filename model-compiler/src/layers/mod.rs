//! The layer kinds: each one file holding its arguments, parameters, shape rule, and forward and
//! backward emission. This module is the one list that registers them (`LayerKind` and `parse_kind`).

pub mod activation;
pub mod args;
pub mod attention;
pub mod bidirectional;
pub mod concatenate;
pub mod conv;
pub mod conv_transpose;
pub mod cropping;
pub mod dense;
pub mod depthwise;
pub mod dot;
pub mod dot_attention;
pub mod dropout;
pub mod embedding;
pub mod global_pooling;
pub mod masking;
pub mod merge;
pub mod normalization;
pub mod padding;
pub mod permute;
pub mod pooling;
pub mod recurrent;
pub mod repeat_vector;
pub mod rescaling;
pub mod reshape;
pub mod separable;
pub mod softmax;
pub mod time_distributed;
pub mod upsampling;
pub mod weights;

use crate::diag::Diagnostic;
use crate::hir::DType;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use args::ArgReader;
use proc_macro2::{Span, TokenStream};
use quote::quote;

pub use activation::Act;

/// How many operands a layer takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// One tensor: `Dense(8)(x)`.
    One,
    /// A list of at least `min` tensors: `Concatenate()([a, b])`.
    List {
        /// Fewest operands.
        min: usize,
        /// Most operands, when bounded (`Subtract` takes exactly two).
        max: Option<usize>,
    },
}

/// How a parameter is initialized (Keras defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitKind {
    /// Glorot uniform with these fans.
    GlorotUniform {
        /// Fan-in.
        fan_in: usize,
        /// Fan-out.
        fan_out: usize,
    },
    /// Uniform on [-limit, limit].
    Uniform(f32),
    /// Zeros.
    Zeros,
    /// Ones.
    Ones,
    /// Every value the same.
    Constant(f32),
    /// N(mean, stddev²).
    RandomNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// U(minval, maxval).
    RandomUniform {
        /// Lower bound.
        minval: f32,
        /// Upper bound.
        maxval: f32,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// N(mean, stddev²) within two standard deviations.
    TruncatedNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// Keras' `VarianceScaling` with the fans of the parameter's shape.
    VarianceScaling {
        /// Scale.
        scale: f32,
        /// Fan mode.
        mode: weights::FanMode,
        /// Distribution.
        distribution: weights::Distribution,
        /// Fan-in.
        fan_in: usize,
        /// Fan-out.
        fan_out: usize,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// A random orthogonal `rows × cols` matrix times `gain`.
    Orthogonal {
        /// Gain.
        gain: f32,
        /// Product of all axes but the last.
        rows: usize,
        /// The last axis.
        cols: usize,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// `gain` times the identity matrix.
    Identity {
        /// Gain.
        gain: f32,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// Zeros with ones on the forget gate's block of an LSTM bias (`unit_forget_bias`).
    ForgetBias {
        /// Units.
        units: usize,
    },
}

/// A parameter tensor a layer owns once it is built on its input shapes.
#[derive(Clone, Debug, PartialEq)]
pub struct ParamDecl {
    /// Keras weight name within the layer: `kernel`, `bias`, `gamma`, `moving_mean`.
    pub suffix: &'static str,
    /// Keras layout.
    pub shape: Vec<usize>,
    /// Initializer.
    pub init: InitKind,
    /// False for statistics the optimizer must not touch (moving mean/variance).
    pub trainable: bool,
    /// The weight regularizer written for it (`kernel_regularizer = l2(1e-4)`).
    pub regularizer: Option<weights::Penalty>,
    /// The constraint written for it (`kernel_constraint = max_norm(2.0)`).
    pub constraint: Option<weights::ConstraintSpec>,
}

/// What a shape rule sees: the operands' shapes and names, for messages.
pub struct InferCx<'a> {
    /// Operand shapes.
    pub inputs: &'a [Shape],
    /// Operand names (`let` bindings or producing layer names).
    pub names: &'a [String],
    /// Operand element types of model inputs; `None` for tensors computed by layers (always `f32`).
    pub dtypes: &'a [Option<DType>],
    /// Operand spans.
    pub spans: &'a [Span],
    /// Span of the callee.
    pub span: Span,
    /// The keyword tensor arguments, each naming a range of `inputs` (`initial_state = [h, c]`);
    /// only keywords of [`LayerDef::call_keywords`] get here.
    pub keywords: &'a [crate::hir::Keyword],
    /// The mask each operand carries (docs/masks.md), indexed like `inputs`; empty when none does.
    pub masks: &'a [Option<MaskInfo>],
}

/// A mask an operand carries at compile time: one 0/1 value per step of its first axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MaskInfo {
    /// Steps (the operand's first axis after the batch).
    pub steps: usize,
}

/// What a call's result carries as its mask, given its operands' masks (Keras' `compute_mask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskRule {
    /// No mask (every layer that does not support masking, and the consumers that use it up).
    Drop,
    /// Operand `i`'s mask, unchanged (Keras' `supports_masking` without `compute_mask`).
    Keep(usize),
    /// The OR of the operands' masks when every operand carries one, else none (Keras' merges, whose
    /// `compute_mask` ORs them; a missing mask makes the result all-true, which is no mask).
    Any,
    /// The operands' masks joined along the steps (an operand without one counts as all kept), when
    /// any operand carries one: Keras' `Concatenate.compute_mask` along the steps axis. A new hidden
    /// value the framework computes.
    Concat,
    /// A new mask the layer's forward writes through [`EmitCx::mask_out`] (`Masking`, `Embedding(mask_zero = true)`).
    Produce,
}

impl InferCx<'_> {
    /// The mask operand `i` carries, if any.
    pub fn mask(&self, i: usize) -> Option<MaskInfo> {
        self.masks.get(i).copied().flatten()
    }

    /// Whether any operand carries a mask.
    pub fn any_mask(&self) -> bool {
        self.masks.iter().any(Option::is_some)
    }

    /// The operands passed by keyword `name`, when given.
    pub fn keyword(&self, name: &str) -> Option<&crate::hir::Keyword> {
        self.keywords.iter().find(|k| k.name == name)
    }

    /// "`left` (None, 8)" for operand `i`.
    pub fn describe(&self, i: usize) -> String {
        match (self.names.get(i), self.inputs.get(i)) {
            (Some(n), Some(s)) => format!("`{n}` {s}"),
            _ => String::from("an operand"),
        }
    }

    /// The name of operand `i`.
    pub fn name(&self, i: usize) -> &str {
        self.names.get(i).map(String::as_str).unwrap_or("?")
    }
}

/// One operand or result of a call, as the emitter sees it.
#[derive(Clone, Debug)]
pub struct Operand {
    /// Its activation buffer.
    pub buf: usize,
    /// Its shape.
    pub shape: Shape,
    /// Whether backward must produce its gradient (false for model inputs).
    pub needs_grad: bool,
    /// The model input it is, if it is one.
    pub input: Option<usize>,
}

/// What a layer's emitters may name. The framework binds, around each layer's code:
/// forward: `__b` (batch), `__y` (the output buffer, `Vec<f32>`), `__p0, __p1, ...` (parameter slices);
/// backward: `__b`, `__dy` (the output gradient, `Vec<f32>`, may be overwritten), `__p0, ...`,
/// `__g0, __g1, ...` (the parameters' gradient slices, accumulate into them).
pub struct EmitCx {
    /// Operands.
    pub inputs: Vec<Operand>,
    /// Result (the first, for a layer that returns several).
    pub output: Operand,
    /// The further results of a layer that returns several tensors, bound as `__y1, __y2, ...` in
    /// forward and their gradients as `__dy1, __dy2, ...` in backward (exactly their lengths).
    pub extra: Vec<Operand>,
    /// How many of `inputs` are positional; the rest were passed by keyword.
    pub positional: usize,
    /// Number of parameters of the layer.
    pub n_params: usize,
    /// Scratch buffer indices.
    pub scratch: Vec<usize>,
    /// Per-sample length of each scratch buffer (a buffer may be longer: inference shares them).
    pub scratch_len: Vec<usize>,
    /// The model output index when this call's result is a model output whose loss may be fused.
    pub fused_output: Option<usize>,
    /// False when the layer is frozen: Keras runs a frozen `BatchNormalization` in inference mode.
    pub trainable: bool,
    /// Whether this is the model's inference forward (`forward_inference`, with its own buffers): nothing
    /// runs backward from it, so a layer need not keep anything for backward (pre-activations,
    /// attention probabilities) and may compute its output by a path that keeps less; and model inputs
    /// are read where the caller holds them (`__x`) instead of from their staging buffers.
    pub inference: bool,
    /// Per operand: whether backward is the first writer of its gradient (write `=`, not `+=`).
    pub dx_set: Vec<bool>,
    /// Whether backward is the first writer of the layer's parameter gradients.
    pub params_set: bool,
    /// The mask buffer of each operand (its shape is `(steps,)`), indexed like `inputs`; may be shorter.
    pub masks: Vec<Option<Operand>>,
    /// The mask this call writes ([`MaskRule::Produce`]), bound to `__m` in forward.
    pub mask_out: Option<Operand>,
}

impl EmitCx {
    /// `Some(&__ws.values[m][..__b * steps])`, the mask operand `i` carries (1.0 kept, 0.0 masked; row
    /// `b` at `[b * steps..(b + 1) * steps]`), or `None` when it carries none.
    pub fn mask(&self, i: usize) -> Option<TokenStream> {
        let m = self.masks.get(i)?.as_ref()?;
        let (buf, n) = (m.buf, m.shape.numel());
        Some(quote!(&__ws.values[#buf][..__b * #n]))
    }

    /// [`EmitCx::mask`] as an `Option<&[f32]>` expression.
    pub fn mask_arg(&self, i: usize) -> TokenStream {
        match self.mask(i) {
            Some(m) => quote!(::core::option::Option::Some(#m)),
            None => quote!(::core::option::Option::None),
        }
    }

    /// The mask this call wrote ([`MaskRule::Produce`]), read-only, for backward: `&__ws.values[m][..__b * steps]`.
    pub fn mask_of_output(&self) -> Option<TokenStream> {
        let m = self.mask_out.as_ref()?;
        let (buf, n) = (m.buf, m.shape.numel());
        Some(quote!(&__ws.values[#buf][..__b * #n]))
    }

    /// `__m`: the mask this call writes (forward only, `&mut [f32]` of `__b * steps`), for a producer.
    pub fn mask_out(&self) -> TokenStream {
        quote!(__m)
    }

    /// `&__ws.values[buf][..__b * n]` of operand `i` (`n` its per-sample length): exactly the operand,
    /// also when the buffer is longer because inference shares it with larger values.
    /// In the inference forward a model input is read in place when the runtime passes it in
    /// `__x` (a contiguous float input), else from its staging buffer.
    pub fn x(&self, i: usize) -> TokenStream {
        let (buf, n, input) = self.inputs.get(i).map(|o| (o.buf, o.shape.numel(), o.input)).unwrap_or((0, 0, None));
        match input {
            Some(k) if self.inference => quote!(&::modelc::__private::support::input_or(__x, #k, &__ws.values[#buf])[..__b * #n]),
            _ => quote!(&__ws.values[#buf][..__b * #n]),
        }
    }

    /// The output's values (in backward).
    pub fn y(&self) -> TokenStream {
        let (buf, n) = (self.output.buf, self.output.shape.numel());
        quote!(&__ws.values[#buf][..__b * #n])
    }

    /// `Some(&mut __ws.grads[buf][..])` when operand `i` needs a gradient, else `None`.
    pub fn dx(&self, i: usize) -> TokenStream {
        match self.inputs.get(i) {
            Some(o) if o.needs_grad => {
                let buf = o.buf;
                quote!(::core::option::Option::Some(&mut __ws.grads[#buf][..]))
            }
            _ => quote!(::core::option::Option::None),
        }
    }

    /// `&mut __ws.grads[buf][..]` of operand `i` (only call when it needs a gradient).
    pub fn dx_mut(&self, i: usize) -> TokenStream {
        let buf = self.inputs.get(i).map(|o| o.buf).unwrap_or(0);
        quote!(&mut __ws.grads[#buf][..])
    }

    /// How backward writes operand `i`'s gradient: `GradWrite::Set` as its first writer, else `Add`.
    pub fn dx_write(&self, i: usize) -> TokenStream {
        grad_write(self.dx_set.get(i).copied().unwrap_or(false))
    }

    /// How backward writes the layer's parameter gradients.
    pub fn params_write(&self) -> TokenStream {
        grad_write(self.params_set)
    }

    /// `__y{k}` (forward) for result `k >= 1`: `&mut [f32]`, exactly the result.
    pub fn y_extra(&self, k: usize) -> TokenStream {
        let id = quote::format_ident!("__y{}", k);
        quote!(#id)
    }

    /// `__dy{k}` (backward) for result `k >= 1`: `&mut [f32]`, its gradient (may be overwritten).
    pub fn dy_extra(&self, k: usize) -> TokenStream {
        let id = quote::format_ident!("__dy{}", k);
        quote!(#id)
    }

    /// Result `k >= 1`'s values (in backward).
    pub fn y_extra_ref(&self, k: usize) -> TokenStream {
        let (buf, n) = self.extra.get(k.wrapping_sub(1)).map(|o| (o.buf, o.shape.numel())).unwrap_or((0, 0));
        quote!(&__ws.values[#buf][..__b * #n])
    }

    /// Whether operand `i` needs a gradient.
    pub fn needs_grad(&self, i: usize) -> bool {
        self.inputs.get(i).is_some_and(|o| o.needs_grad)
    }

    /// `__pi`.
    pub fn p(&self, i: usize) -> TokenStream {
        let id = quote::format_ident!("__p{}", i);
        quote!(#id)
    }

    /// `__gi`.
    pub fn g(&self, i: usize) -> TokenStream {
        let id = quote::format_ident!("__g{}", i);
        quote!(#id)
    }

    /// `__b * n`: rows of a per-sample count `n`.
    pub fn rows(&self, per_sample: usize) -> TokenStream {
        quote!(__b * #per_sample)
    }

    /// Mutable scratch buffer `i` (forward), exactly its length.
    pub fn scratch_mut(&self, i: usize) -> TokenStream {
        let (s, n) = (self.scratch.get(i).copied().unwrap_or(0), self.scratch_len(i));
        quote!(&mut __ws.scratch[#s][..__b * #n])
    }

    /// Scratch buffer `i` (backward), exactly its length.
    pub fn scratch(&self, i: usize) -> TokenStream {
        let (s, n) = (self.scratch.get(i).copied().unwrap_or(0), self.scratch_len(i));
        quote!(&__ws.scratch[#s][..__b * #n])
    }

    /// Per-sample length of scratch buffer `i`.
    pub fn scratch_len(&self, i: usize) -> usize {
        self.scratch_len.get(i).copied().unwrap_or(0)
    }

    /// The activation to differentiate through in backward: `act`, or linear when the loss
    /// gradient was already taken through it (fused softmax/sigmoid + cross-entropy).
    pub fn backward_act(&self, act: Act) -> TokenStream {
        let t = act.tokens();
        match self.fused_output {
            Some(o) if act.fusable() => {
                let lin = Act::Linear.tokens();
                quote!(if __ws.fused[#o] { #lin } else { #t })
            }
            _ => t,
        }
    }
}

/// `GradWrite::Set` when `set`, else `GradWrite::Add`, as emitted code.
fn grad_write(set: bool) -> TokenStream {
    match set {
        true => quote!(::modelc::__private::kernels::GradWrite::Set),
        false => quote!(::modelc::__private::kernels::GradWrite::Add),
    }
}

/// The rank of the first operand whose rank is known: [`LayerDef::output_rank`] of a layer that keeps its
/// input's rank, and the best guess for a call of a layer whose arguments were invalid.
pub fn same_rank(inputs: &[Option<usize>]) -> Option<usize> {
    inputs.iter().find_map(|r| *r)
}

/// `Some(tokens)` when `cond`, else `None`, as emitted code: optional kernel arguments (bias, pre-activation).
pub fn some_if(cond: bool, tokens: TokenStream) -> TokenStream {
    if cond {
        quote!(::core::option::Option::Some(#tokens))
    } else {
        quote!(::core::option::Option::None)
    }
}

/// What [`LayerDef::call_args`] sees of a call's arguments beyond its first one: `mha(q, v, k,
/// attention_mask = m, use_causal_mask = true)`. The framework has already appended the tensors of
/// keyword arguments to the operands, in the order written, and checked that no keyword is given twice.
pub struct CallArgsCx<'a> {
    /// How many positional arguments were written (`1` for `layer(x)` and `layer([a, b])`).
    pub positional: usize,
    /// The keyword arguments as written, tensors and literals, in source order (keywords not in
    /// [`LayerDef::call_keywords`] are reported by the framework after `call_args`: skip them).
    pub keywords: &'a [(&'a proc_macro2::Ident, &'a crate::ast::CallValue)],
    /// Span of the callee.
    pub span: Span,
}

/// Everything the framework asks of a layer kind.
pub trait LayerDef {
    /// Operand count.
    fn arity(&self) -> Arity {
        Arity::One
    }
    /// The keyword arguments a call of the layer takes, as Keras names them: tensors (`initial_state`,
    /// `attention_mask`, read in `infer` through [`InferCx::keyword`] and in emission as operands) or,
    /// for a layer with [`LayerDef::call_args`], literals (`use_causal_mask`). The framework rejects any
    /// other keyword at the keyword, with the nearest of these. Default: none.
    fn call_keywords(&self) -> &'static [&'static str] {
        &[]
    }
    /// For a layer whose calls take several positional tensors or call-time literals (Keras'
    /// `MultiHeadAttention`): checks the call's arguments and returns this call's configuration (same
    /// weights, this call's options: [`crate::hir::Call::config`]), or a diagnostic at the offending
    /// argument. `None` (the default): the layer's own configuration serves every call, which then takes
    /// one positional argument (a tensor or a list) and only tensors by keyword.
    fn call_args(&self, _cx: &CallArgsCx<'_>) -> Option<Result<LayerKind, Diagnostic>> {
        None
    }
    /// The shape rule: the output shape, or a diagnostic naming the operands and the fix.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic>;
    /// The per-sample rank of the output given the operands' ranks where known (`None`: poisoned), for
    /// a call whose shape rule failed or was skipped: the stub items of a failed model type its outputs
    /// with it, so user code written for the right rank adds no error. It must agree with `infer` where
    /// that succeeds. Default: the rank of the first operand known (a layer that keeps its input's rank).
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        same_rank(inputs)
    }
    /// The per-sample rank of result `k >= 1` of a layer that returns several tensors, for the stub of a
    /// failed model (as `output_rank` for the first result).
    fn extra_rank(&self, _k: usize, _inputs: &[Option<usize>]) -> Option<usize> {
        None
    }
    /// The names of the tensors a call returns, in order (`["sequences", "h", "c"]`): one name for a
    /// single result. A call binds exactly this many names (`let (seq, h, c) = LSTM(..)(x);`).
    fn result_names(&self) -> Vec<&'static str> {
        vec!["y"]
    }
    /// The mask of result `k >= 1` of a layer that returns several tensors (as [`LayerDef::mask_rule`]
    /// for the first; only `Drop` and `Keep` apply): Keras' `compute_mask` returns a list.
    fn extra_mask_rule(&self, _k: usize, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Drop
    }
    /// Shapes of results `1..` (the first is `infer`'s), called once `infer` succeeded on `cx`.
    fn extra_shapes(&self, _cx: &InferCx<'_>, _output: &Shape) -> Vec<Shape> {
        Vec::new()
    }
    /// The mask of the call's result given its operands' (`cx.masks`; Keras' `compute_mask`, see
    /// docs/masks.md), asked only when the call's shape rule succeeded. Default: drop it.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Drop
    }
    /// Parameters once built on these input shapes, in Keras' weight order.
    fn params(&self, _inputs: &[Shape]) -> Vec<ParamDecl> {
        Vec::new()
    }
    /// Per-sample lengths of the scratch buffers the layer needs.
    fn scratch(&self, _inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        Vec::new()
    }
    /// Indices into `scratch()` of the buffers only backward uses: the inference forward, which never
    /// runs backward, gives them no memory (and forward must not name them).
    fn backward_only_scratch(&self) -> Vec<usize> {
        Vec::new()
    }
    /// Forward emission (kernel calls writing `__y`).
    fn forward(&self, cx: &EmitCx) -> TokenStream;
    /// Backward emission (reads `__dy`, accumulates into operand gradients and `__g*`).
    fn backward(&self, cx: &EmitCx) -> TokenStream;
    /// State update after a training forward, with `__p0, __p1, ...` bound mutably and `__ws` readable
    /// (the moving statistics of `BatchNormalization`). Empty for stateless layers.
    fn update(&self, _cx: &EmitCx) -> TokenStream {
        TokenStream::new()
    }
    /// The activation applied last, if any (loss fusion, summary).
    fn output_activation(&self) -> Option<Act> {
        None
    }
    /// For a layer that indexes a table by its operand's integer values (`Embedding`): the table's
    /// length, which bounds the ids a model input fed to it may hold (checked at run time).
    fn id_limit(&self) -> Option<usize> {
        None
    }
    /// Whether backward writes `=` instead of `+=` where the plan says it is a gradient's first writer
    /// (`EmitCx::dx_write`, `EmitCx::params_write`). Such gradients are not zeroed before backward.
    fn backward_sets_first_writes(&self) -> bool {
        false
    }
    /// The call as ONNX nodes in inference mode (see [`crate::onnx`]): reads `cx.input(i)` (batch first,
    /// channels-last) and the parameters `cx.param(i)` (Keras names and layouts), and writes
    /// `cx.output()`. Default: not exportable yet, an `Err` the export reports naming the layer.
    fn onnx(&self, _cx: &mut OnnxCx) -> Result<(), OnnxError> {
        Err(OnnxError::NotYet)
    }
    /// A name between the layer's and each weight's in the weight names: a wrapper's wrapped layer
    /// (`time_distributed/dense/kernel`; `a/b/dense/kernel` for wrappers wrapped). `None`: `layer/weight`.
    fn param_scope(&self) -> Option<String> {
        None
    }
    /// For a wrapper: the Keras class and name (empty until a default is assigned) of the layer it wraps
    /// `depth` levels down (0: the one it wraps directly).
    fn wrapped(&self, _depth: usize) -> Option<(&'static str, &str)> {
        None
    }
    /// For a wrapper: sets the default name (Keras' `dense_1` numbering) of the layer `depth` levels down.
    fn name_wrapped(&mut self, _depth: usize, _name: String) {}
}

/// A typed layer configuration. Exhaustive matches: a new kind does not compile until every
/// method, backward included, handles it.
#[derive(Clone, Debug, PartialEq)]
pub enum LayerKind {
    /// `Dense(units, activation, use_bias)`.
    Dense(dense::Dense),
    /// `Activation(relu)`.
    Activation(activation::ActivationLayer),
    /// `Concatenate(axis = -1)`.
    Concatenate(concatenate::Concatenate),
    /// `Add()`, `Subtract()`, `Multiply()`, `Average()`, `Maximum()`, `Minimum()`: one shape rule and
    /// one kernel family, parameterized by the operation.
    Merge(merge::Merge),
    /// `Dot(axes, normalize = false)`.
    Dot(dot::Dot),
    /// `Conv1D` / `Conv2D(filters, kernel_size, strides, padding, dilation_rate, activation, use_bias)`.
    Conv(conv::Conv),
    /// `MaxPooling1D/2D`, `AveragePooling1D/2D(pool_size, strides, padding)`.
    Pooling(pooling::Pooling),
    /// `GlobalAveragePooling1D/2D()`, `GlobalMaxPooling1D/2D()`.
    GlobalPooling(global_pooling::GlobalPooling),
    /// `Flatten()`.
    Flatten(reshape::Flatten),
    /// `Reshape(target_shape)`.
    Reshape(reshape::Reshape),
    /// `Dropout(rate, seed)`.
    Dropout(dropout::Dropout),
    /// `BatchNormalization(axis, momentum, epsilon, center, scale)`.
    BatchNormalization(normalization::BatchNormalization),
    /// `LayerNormalization(axis, epsilon, center, scale)`.
    LayerNormalization(normalization::LayerNormalization),
    /// `Embedding(input_dim, output_dim)`.
    Embedding(embedding::Embedding),
    /// `Softmax(axis = -1)`.
    Softmax(softmax::Softmax),
    /// `ZeroPadding1D(padding = 1)`, `ZeroPadding2D(padding = 1)`.
    ZeroPadding(padding::ZeroPadding),
    /// `Cropping1D(cropping = (1, 1))`, `Cropping2D(cropping = 0)`.
    Cropping(cropping::Cropping),
    /// `UpSampling1D(size = 2)`, `UpSampling2D(size = 2, interpolation = nearest)`.
    UpSampling(upsampling::UpSampling),
    /// `Rescaling(scale, offset = 0.0)`.
    Rescaling(rescaling::Rescaling),
    /// `DepthwiseConv1D` / `DepthwiseConv2D(kernel_size, strides, padding, depth_multiplier, dilation_rate, activation, use_bias)`.
    Depthwise(depthwise::Depthwise),
    /// `Conv1DTranspose` / `Conv2DTranspose(filters, kernel_size, strides, padding, output_padding,
    /// dilation_rate, activation, use_bias)`.
    ConvTranspose(conv_transpose::ConvTranspose),
    /// `SeparableConv1D` / `SeparableConv2D(filters, kernel_size, strides, padding, dilation_rate,
    /// depth_multiplier, activation, use_bias)`.
    Separable(separable::Separable),
    /// `SimpleRNN` / `LSTM` / `GRU(units, activation, recurrent_activation, use_bias, return_sequences,
    /// return_state, go_backwards, unit_forget_bias, reset_after)`.
    Recurrent(recurrent::Recurrent),
    /// `Bidirectional(layer, merge_mode = concat)` around a recurrent layer.
    Bidirectional(bidirectional::Bidirectional),
    /// `RepeatVector(n)`.
    RepeatVector(repeat_vector::RepeatVector),
    /// `Permute(dims)`.
    Permute(permute::Permute),
    /// `TimeDistributed(layer)`.
    TimeDistributed(time_distributed::TimeDistributed),
    /// `MultiHeadAttention(num_heads, key_dim, value_dim, dropout, use_bias, output_shape, attention_axes)`.
    MultiHeadAttention(attention::MultiHeadAttention),
    /// `Attention(use_scale, score_mode, dropout)`: Keras' dot-product attention without projections.
    Attention(dot_attention::Attention),
    /// `Masking(mask_value = 0.0)`.
    Masking(masking::Masking),
}

/// Keras class names of every layer kind, for "did you mean".
pub const KINDS: &[&str] = &[
    "Dense",
    "Activation",
    "Concatenate",
    "Add",
    "Subtract",
    "Multiply",
    "Average",
    "Maximum",
    "Minimum",
    "Dot",
    "Conv1D",
    "Conv2D",
    "MaxPooling1D",
    "MaxPooling2D",
    "AveragePooling1D",
    "AveragePooling2D",
    "GlobalAveragePooling1D",
    "GlobalAveragePooling2D",
    "GlobalMaxPooling1D",
    "GlobalMaxPooling2D",
    "Flatten",
    "Reshape",
    "Dropout",
    "BatchNormalization",
    "LayerNormalization",
    "Embedding",
    "Softmax",
    "ZeroPadding1D",
    "ZeroPadding2D",
    "Cropping1D",
    "Cropping2D",
    "UpSampling1D",
    "UpSampling2D",
    "Rescaling",
    "DepthwiseConv1D",
    "DepthwiseConv2D",
    "Conv1DTranspose",
    "Conv2DTranspose",
    "SeparableConv1D",
    "SeparableConv2D",
    "SimpleRNN",
    "LSTM",
    "GRU",
    "Bidirectional",
    "RepeatVector",
    "Permute",
    "TimeDistributed",
    "MultiHeadAttention",
    "Attention",
    "Masking",
];

/// Parses the arguments of layer kind `name`; `None` when `name` is not a layer kind.
/// The inner `None` means the arguments were invalid (already reported).
pub fn parse_kind(name: &str, r: &mut ArgReader<'_>) -> Option<Option<LayerKind>> {
    Some(match name {
        "Dense" => dense::Dense::parse(r).map(LayerKind::Dense),
        "Activation" => activation::ActivationLayer::parse(r).map(LayerKind::Activation),
        "Concatenate" => concatenate::Concatenate::parse(r).map(LayerKind::Concatenate),
        "Add" => merge::Merge::parse(r, merge::MergeOp::Add).map(LayerKind::Merge),
        "Subtract" => merge::Merge::parse(r, merge::MergeOp::Subtract).map(LayerKind::Merge),
        "Multiply" => merge::Merge::parse(r, merge::MergeOp::Multiply).map(LayerKind::Merge),
        "Average" => merge::Merge::parse(r, merge::MergeOp::Average).map(LayerKind::Merge),
        "Maximum" => merge::Merge::parse(r, merge::MergeOp::Maximum).map(LayerKind::Merge),
        "Minimum" => merge::Merge::parse(r, merge::MergeOp::Minimum).map(LayerKind::Merge),
        "Dot" => dot::Dot::parse(r).map(LayerKind::Dot),
        "Conv1D" => conv::Conv::parse(r, 1).map(LayerKind::Conv),
        "Conv2D" => conv::Conv::parse(r, 2).map(LayerKind::Conv),
        "MaxPooling1D" => pooling::Pooling::parse(r, 1, true).map(LayerKind::Pooling),
        "MaxPooling2D" => pooling::Pooling::parse(r, 2, true).map(LayerKind::Pooling),
        "AveragePooling1D" => pooling::Pooling::parse(r, 1, false).map(LayerKind::Pooling),
        "AveragePooling2D" => pooling::Pooling::parse(r, 2, false).map(LayerKind::Pooling),
        "GlobalAveragePooling1D" => global_pooling::GlobalPooling::parse(r, 1, false).map(LayerKind::GlobalPooling),
        "GlobalAveragePooling2D" => global_pooling::GlobalPooling::parse(r, 2, false).map(LayerKind::GlobalPooling),
        "GlobalMaxPooling1D" => global_pooling::GlobalPooling::parse(r, 1, true).map(LayerKind::GlobalPooling),
        "GlobalMaxPooling2D" => global_pooling::GlobalPooling::parse(r, 2, true).map(LayerKind::GlobalPooling),
        "Flatten" => reshape::Flatten::parse(r).map(LayerKind::Flatten),
        "Reshape" => reshape::Reshape::parse(r).map(LayerKind::Reshape),
        "Dropout" => dropout::Dropout::parse(r).map(LayerKind::Dropout),
        "BatchNormalization" => normalization::BatchNormalization::parse(r).map(LayerKind::BatchNormalization),
        "LayerNormalization" => normalization::LayerNormalization::parse(r).map(LayerKind::LayerNormalization),
        "Embedding" => embedding::Embedding::parse(r).map(LayerKind::Embedding),
        "Softmax" => softmax::Softmax::parse(r).map(LayerKind::Softmax),
        "ZeroPadding1D" => padding::ZeroPadding::parse(r, 1).map(LayerKind::ZeroPadding),
        "ZeroPadding2D" => padding::ZeroPadding::parse(r, 2).map(LayerKind::ZeroPadding),
        "Cropping1D" => cropping::Cropping::parse(r, 1).map(LayerKind::Cropping),
        "Cropping2D" => cropping::Cropping::parse(r, 2).map(LayerKind::Cropping),
        "UpSampling1D" => upsampling::UpSampling::parse(r, 1).map(LayerKind::UpSampling),
        "UpSampling2D" => upsampling::UpSampling::parse(r, 2).map(LayerKind::UpSampling),
        "Rescaling" => rescaling::Rescaling::parse(r).map(LayerKind::Rescaling),
        "DepthwiseConv1D" => depthwise::Depthwise::parse(r, 1).map(LayerKind::Depthwise),
        "DepthwiseConv2D" => depthwise::Depthwise::parse(r, 2).map(LayerKind::Depthwise),
        "Conv1DTranspose" => conv_transpose::ConvTranspose::parse(r, 1).map(LayerKind::ConvTranspose),
        "Conv2DTranspose" => conv_transpose::ConvTranspose::parse(r, 2).map(LayerKind::ConvTranspose),
        "SimpleRNN" => recurrent::Recurrent::parse(r, recurrent::CellKind::Simple).map(LayerKind::Recurrent),
        "LSTM" => recurrent::Recurrent::parse(r, recurrent::CellKind::Lstm).map(LayerKind::Recurrent),
        "GRU" => recurrent::Recurrent::parse(r, recurrent::CellKind::Gru).map(LayerKind::Recurrent),
        "Bidirectional" => bidirectional::Bidirectional::parse(r).map(LayerKind::Bidirectional),
        "RepeatVector" => repeat_vector::RepeatVector::parse(r).map(LayerKind::RepeatVector),
        "Permute" => permute::Permute::parse(r).map(LayerKind::Permute),
        "TimeDistributed" => time_distributed::TimeDistributed::parse(r).map(LayerKind::TimeDistributed),
        "MultiHeadAttention" => attention::MultiHeadAttention::parse(r).map(LayerKind::MultiHeadAttention),
        "Attention" => dot_attention::Attention::parse(r).map(LayerKind::Attention),
        "Masking" => masking::Masking::parse(r).map(LayerKind::Masking),
        "SeparableConv1D" => separable::Separable::parse(r, 1).map(LayerKind::Separable),
        "SeparableConv2D" => separable::Separable::parse(r, 2).map(LayerKind::Separable),
        _ => return None,
    })
}

/// The Keras import mapping of layer class `class`: the function (in the layer kind's own file) that
/// turns a Keras config into `model!` arguments. `None` when `class` is not a layer kind.
pub fn keras_import(class: &str) -> Option<fn(&mut crate::import::args::KerasArgs<'_>)> {
    Some(match class {
        "Dense" => dense::Dense::from_keras,
        "Activation" => activation::ActivationLayer::from_keras,
        "Concatenate" => concatenate::Concatenate::from_keras,
        "Add" | "Subtract" | "Multiply" | "Average" | "Maximum" | "Minimum" => merge::Merge::from_keras,
        "Dot" => dot::Dot::from_keras,
        "Conv1D" | "Conv2D" => conv::Conv::from_keras,
        "MaxPooling1D" | "MaxPooling2D" | "AveragePooling1D" | "AveragePooling2D" => pooling::Pooling::from_keras,
        "GlobalAveragePooling1D" | "GlobalAveragePooling2D" | "GlobalMaxPooling1D" | "GlobalMaxPooling2D" => {
            global_pooling::GlobalPooling::from_keras
        }
        "Flatten" => reshape::Flatten::from_keras,
        "Reshape" => reshape::Reshape::from_keras,
        "Dropout" => dropout::Dropout::from_keras,
        "BatchNormalization" => normalization::BatchNormalization::from_keras,
        "LayerNormalization" => normalization::LayerNormalization::from_keras,
        "Embedding" => embedding::Embedding::from_keras,
        "Softmax" => softmax::Softmax::from_keras,
        "ZeroPadding1D" | "ZeroPadding2D" => padding::ZeroPadding::from_keras,
        "Cropping1D" | "Cropping2D" => cropping::Cropping::from_keras,
        "UpSampling1D" | "UpSampling2D" => upsampling::UpSampling::from_keras,
        "Rescaling" => rescaling::Rescaling::from_keras,
        "DepthwiseConv1D" | "DepthwiseConv2D" => depthwise::Depthwise::from_keras,
        "SeparableConv1D" | "SeparableConv2D" => separable::Separable::from_keras,
        "Conv1DTranspose" | "Conv2DTranspose" => conv_transpose::ConvTranspose::from_keras,
        "RepeatVector" => repeat_vector::RepeatVector::from_keras,
        "Permute" => permute::Permute::from_keras,
        "TimeDistributed" => time_distributed::TimeDistributed::from_keras,
        "MultiHeadAttention" => attention::MultiHeadAttention::from_keras,
        "Attention" => dot_attention::Attention::from_keras,
        "SimpleRNN" | "LSTM" | "GRU" => recurrent::Recurrent::from_keras,
        "Bidirectional" => bidirectional::Bidirectional::from_keras,
        "Masking" => masking::Masking::from_keras,
        _ => return None,
    })
}

/// Keras' default layer name prefix for a class: `GlobalAveragePooling2D` -> `global_average_pooling2d`.
pub fn snake_case(kind: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = kind.chars().collect();
    for (i, c) in chars.iter().enumerate() {
        if c.is_ascii_uppercase() {
            let prev = i.checked_sub(1).and_then(|j| chars.get(j));
            let next = chars.get(i + 1);
            let boundary = match prev {
                Some(p) if p.is_ascii_lowercase() => true,
                Some(p) if p.is_ascii_uppercase() => next.is_some_and(|n| n.is_ascii_lowercase()),
                _ => false,
            };
            if boundary {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(*c);
        }
    }
    out
}

macro_rules! dispatch {
    ($self:ident, $l:ident => $e:expr) => {
        match $self {
            LayerKind::Dense($l) => $e,
            LayerKind::Activation($l) => $e,
            LayerKind::Concatenate($l) => $e,
            LayerKind::Merge($l) => $e,
            LayerKind::Dot($l) => $e,
            LayerKind::Conv($l) => $e,
            LayerKind::Pooling($l) => $e,
            LayerKind::GlobalPooling($l) => $e,
            LayerKind::Flatten($l) => $e,
            LayerKind::Reshape($l) => $e,
            LayerKind::Dropout($l) => $e,
            LayerKind::BatchNormalization($l) => $e,
            LayerKind::LayerNormalization($l) => $e,
            LayerKind::Embedding($l) => $e,
            LayerKind::Softmax($l) => $e,
            LayerKind::ZeroPadding($l) => $e,
            LayerKind::Cropping($l) => $e,
            LayerKind::UpSampling($l) => $e,
            LayerKind::Rescaling($l) => $e,
            LayerKind::Depthwise($l) => $e,
            LayerKind::ConvTranspose($l) => $e,
            LayerKind::Separable($l) => $e,
            LayerKind::Recurrent($l) => $e,
            LayerKind::Bidirectional($l) => $e,
            LayerKind::RepeatVector($l) => $e,
            LayerKind::Permute($l) => $e,
            LayerKind::TimeDistributed($l) => $e,
            LayerKind::MultiHeadAttention($l) => $e,
            LayerKind::Attention($l) => $e,
            LayerKind::Masking($l) => $e,
        }
    };
}

impl LayerDef for LayerKind {
    fn arity(&self) -> Arity {
        dispatch!(self, l => l.arity())
    }
    fn call_keywords(&self) -> &'static [&'static str] {
        dispatch!(self, l => l.call_keywords())
    }
    fn call_args(&self, cx: &CallArgsCx<'_>) -> Option<Result<LayerKind, Diagnostic>> {
        dispatch!(self, l => l.call_args(cx))
    }
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        dispatch!(self, l => l.infer(cx))
    }
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        dispatch!(self, l => l.output_rank(inputs))
    }
    fn extra_rank(&self, k: usize, inputs: &[Option<usize>]) -> Option<usize> {
        dispatch!(self, l => l.extra_rank(k, inputs))
    }
    fn result_names(&self) -> Vec<&'static str> {
        dispatch!(self, l => l.result_names())
    }
    fn extra_mask_rule(&self, k: usize, cx: &InferCx<'_>) -> MaskRule {
        dispatch!(self, l => l.extra_mask_rule(k, cx))
    }
    fn extra_shapes(&self, cx: &InferCx<'_>, output: &Shape) -> Vec<Shape> {
        dispatch!(self, l => l.extra_shapes(cx, output))
    }
    fn mask_rule(&self, cx: &InferCx<'_>) -> MaskRule {
        dispatch!(self, l => l.mask_rule(cx))
    }
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        dispatch!(self, l => l.params(inputs))
    }
    fn scratch(&self, inputs: &[Shape], output: &Shape) -> Vec<usize> {
        dispatch!(self, l => l.scratch(inputs, output))
    }
    fn backward_only_scratch(&self) -> Vec<usize> {
        dispatch!(self, l => l.backward_only_scratch())
    }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        dispatch!(self, l => l.forward(cx))
    }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        dispatch!(self, l => l.backward(cx))
    }
    fn update(&self, cx: &EmitCx) -> TokenStream {
        dispatch!(self, l => l.update(cx))
    }
    fn output_activation(&self) -> Option<Act> {
        dispatch!(self, l => l.output_activation())
    }
    fn id_limit(&self) -> Option<usize> {
        dispatch!(self, l => l.id_limit())
    }
    fn backward_sets_first_writes(&self) -> bool {
        dispatch!(self, l => l.backward_sets_first_writes())
    }
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        dispatch!(self, l => l.onnx(cx))
    }
    fn param_scope(&self) -> Option<String> {
        dispatch!(self, l => l.param_scope())
    }
    fn wrapped(&self, depth: usize) -> Option<(&'static str, &str)> {
        dispatch!(self, l => l.wrapped(depth))
    }
    fn name_wrapped(&mut self, depth: usize, name: String) {
        dispatch!(self, l => l.name_wrapped(depth, name))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;

    /// Runs `src` (one model) through the pipeline: every diagnostic as `(message, help)`.
    pub(crate) fn errors(src: &str) -> Vec<(String, Option<String>)> {
        let (_, diags) = crate::compile(TokenStream::from_str(src).unwrap());
        diags.items().iter().map(|d| (d.message.clone(), d.help.clone())).collect()
    }

    /// Runs `src` (one error-free model) through the pipeline up to shape inference.
    pub(crate) fn typed_of(src: &str) -> crate::infer::Typed {
        let mut diags = crate::diag::Diagnostics::new();
        let file = crate::parse::parse(TokenStream::from_str(src).unwrap(), &mut diags);
        let model = file.models.first().expect("one model");
        let hir = crate::resolve::resolve(model, &file, &mut diags);
        let graph = crate::graph::build(&hir);
        let typed = crate::infer::infer(hir, graph, &mut diags);
        let msgs: Vec<String> = diags.items().iter().map(|d| d.message.clone()).collect();
        assert!(msgs.is_empty(), "unexpected errors in {src}: {msgs:?}");
        typed
    }

    /// Compiles `src` (one error-free model) and returns its output shapes.
    pub(crate) fn ok_shapes(src: &str) -> Vec<Vec<usize>> {
        let typed = typed_of(src);
        typed.model.outputs.iter().map(|o| typed.shapes[o.value.0].clone().expect("a shape").0).collect()
    }

    #[test]
    fn every_layer_kind_has_a_keras_import_mapping() {
        let missing: Vec<&str> = KINDS.iter().copied().filter(|k| keras_import(k).is_none()).collect();
        assert!(missing.is_empty(), "layer kinds without a Keras import mapping (add `from_keras` in the kind's file and register it in `keras_import`): {missing:?}");
        assert!(keras_import("Lambda").is_none());
    }

    #[test]
    fn snake_case_matches_keras_default_names() {
        assert_eq!(snake_case("Dense"), "dense");
        assert_eq!(snake_case("GlobalAveragePooling2D"), "global_average_pooling2d");
        assert_eq!(snake_case("Conv2D"), "conv2d");
        assert_eq!(snake_case("BatchNormalization"), "batch_normalization");
        assert_eq!(snake_case("LayerNormalization"), "layer_normalization");
    }
}
