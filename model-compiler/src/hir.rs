//! Resolved model (output of `resolve`, input of `build`): names turned into ids, a layer table in which
//! a shared layer is one entry called several times, arguments typed. Nested models are already inlined.

use crate::layers::LayerKind;
use proc_macro2::{Ident, Span};

/// Index of a tensor value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub usize);

/// Index of a layer instance in the layer table.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerId(pub usize);

/// Index of a layer call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub usize);

/// Element type of an input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// f32 (default).
    F32,
    /// i32 token ids.
    I32,
}

/// A resolved model.
#[derive(Debug, Clone)]
pub struct Model {
    /// Attributes to put on the struct (doc comments...).
    pub attrs: Vec<syn::Attribute>,
    /// Visibility of the generated items.
    pub vis: syn::Visibility,
    /// The struct name.
    pub name: Ident,
    /// Model inputs in declaration order.
    pub inputs: Vec<Input>,
    /// The layer table.
    pub layers: Vec<Layer>,
    /// Every layer call, in source order (a valid evaluation order).
    pub calls: Vec<Call>,
    /// Model outputs in declaration order.
    pub outputs: Vec<Output>,
    /// Every value.
    pub values: Vec<Value>,
    /// Shapes a nested model's inputs require of the tensors it is called on.
    pub expects: Vec<Expect>,
    /// Model types from other `model!` invocations used as layers whose definitions are not known yet:
    /// the expansion asks for them through their callback macros before compiling this model.
    pub externals: Vec<External>,
    /// Set when a nested model instance failed for errors reported elsewhere (at the nested model's
    /// definition): the model cannot be generated, but has nothing of its own to report.
    pub nested_failed: bool,
    /// `#[dtype_policy = "mixed_bfloat16"]` on the model: `new()` sets Keras' `mixed_bfloat16` policy.
    pub mixed_bfloat16: bool,
}

/// A nested model's input contract: `value` must have per-sample shape `dims`.
#[derive(Debug, Clone)]
pub struct Expect {
    /// The tensor passed in.
    pub value: ValueId,
    /// The declared per-sample shape.
    pub dims: Vec<usize>,
    /// The operand's span.
    pub span: Span,
    /// `input `image` of `vision` (VisionNet)`, for messages.
    pub what: String,
}

/// `input name: [dims];`
#[derive(Debug, Clone)]
pub struct Input {
    /// The name.
    pub name: Ident,
    /// Per-sample dimensions (validated positive).
    pub dims: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// The value it defines.
    pub value: ValueId,
}

/// One layer instance: one set of weights.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Keras-style unique name (`dense_1`, `vision/dense`), the prefix of its parameter names.
    pub name: String,
    /// The typed configuration; `None` when its arguments were invalid (its calls give poisoned values).
    pub kind: Option<LayerKind>,
    /// The Keras class name, for messages and the summary (`Dense`).
    pub keras_type: &'static str,
    /// Span of the constructor (blamed for argument problems).
    pub span: Span,
    /// The `layer name = ...` binding, when declared as an instance.
    pub binding: Option<Ident>,
    /// False when frozen (`trainable = false`, or inside a frozen submodel).
    pub trainable: bool,
    /// `activity_regularizer`: a penalty of the layer's output added to the training loss.
    pub activity: Option<crate::layers::weights::Penalty>,
    /// `dtype = "float32"` written on the layer: it computes in f32 even under the model's
    /// `mixed_bfloat16` policy, as a Keras layer with its own `float32` policy does.
    pub float32: bool,
}

/// `layer(arg)`: one application of a layer, with Keras' call arguments: positional tensors (one, a
/// list, or several: `mha(query, value)`), keyword arguments that are tensors (`initial_state = [h, c]`,
/// `attention_mask = m`) or literals (`use_causal_mask = true`), and possibly several results
/// (`let (y, h, c) = LSTM(8, return_state = true)(x);`).
#[derive(Debug, Clone)]
pub struct Call {
    /// The layer applied.
    pub layer: LayerId,
    /// The operands, in order: the positional ones, then each tensor keyword's (`initial_state = [h, c]`).
    pub inputs: Vec<ValueId>,
    /// Span of each operand (for messages that blame one operand).
    pub input_spans: Vec<Span>,
    /// Whether the first positional argument was written as a list `[a, b]`.
    pub list: bool,
    /// How many of `inputs` are positional; the rest belong to `keywords`.
    pub positional: usize,
    /// The keyword tensor arguments, each naming a range of `inputs`. Literal keywords are read by the
    /// layer into `config` ([`crate::layers::LayerDef::call_args`]).
    pub keywords: Vec<Keyword>,
    /// The value produced (the layer's first result).
    pub output: ValueId,
    /// The further results of a layer that returns several tensors (`return_state = true`), in the
    /// layer's result order; empty for a single result.
    pub extra: Vec<ValueId>,
    /// Span of the callee (the layer name or constructor): the call's location in messages.
    pub span: Span,
    /// The layer's configuration for this call when its call arguments change it
    /// (`mha(q, v, use_causal_mask = true)`): same weights, this call's options. See [`Model::call_kind`].
    pub config: Option<LayerKind>,
}

/// A keyword tensor argument of a call: `initial_state = [h, c]`, `attention_mask = m`.
#[derive(Debug, Clone)]
pub struct Keyword {
    /// The keyword.
    pub name: String,
    /// Its operands within `Call::inputs`.
    pub operands: std::ops::Range<usize>,
    /// Span of the keyword.
    pub span: Span,
}

impl Call {
    /// Every value the call produces: its first result, then the others.
    pub fn results(&self) -> impl Iterator<Item = ValueId> + '_ {
        std::iter::once(self.output).chain(self.extra.iter().copied())
    }
}

/// `output name = ...;`
#[derive(Debug, Clone)]
pub struct Output {
    /// The name.
    pub name: Ident,
    /// The value returned.
    pub value: ValueId,
    /// The element type of its targets: `F32` (the output's shape) or `I32` (`as i32 target`: one
    /// class id per row, the output's shape without its last axis).
    pub target: DType,
}

/// Who produces a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Producer {
    /// Model input `i`.
    Input(usize),
    /// A layer call.
    Call(CallId),
    /// Its definition was invalid (already reported): later rules skip it silently.
    Poisoned,
}

impl Model {
    /// The configuration a call runs with: its call-time one, else its layer's (`None`: invalid arguments).
    pub fn call_kind<'a>(&'a self, call: &'a Call) -> Option<&'a LayerKind> {
        call.config.as_ref().or_else(|| self.layers.get(call.layer.0).and_then(|l| l.kind.as_ref()))
    }

    /// [`Model::call_kind`] by call id.
    pub fn call_kind_of(&self, call: CallId) -> Option<&LayerKind> {
        self.calls.get(call.0).and_then(|c| self.call_kind(c))
    }

    /// The name users know value `v` by: its binding, else the producing layer's name.
    pub fn value_name(&self, v: ValueId) -> String {
        let Some(val) = self.values.get(v.0) else { return String::new() };
        if let Some(b) = &val.binding {
            return b.clone();
        }
        match val.producer {
            Producer::Input(i) => self.inputs.get(i).map(|x| x.name.to_string()).unwrap_or_default(),
            Producer::Call(c) => self.calls.get(c.0).and_then(|c| self.layers.get(c.layer.0)).map(|l| l.name.clone()).unwrap_or_default(),
            Producer::Poisoned => String::new(),
        }
    }
}

/// One tensor value.
#[derive(Debug, Clone)]
pub struct Value {
    /// The `input`/`let`/`output` name it is bound to, if any (the first binding).
    pub binding: Option<String>,
    /// Where it is defined.
    pub span: Span,
    /// Its producer.
    pub producer: Producer,
}

/// A model of another `model!` invocation that is needed before this one can compile.
#[derive(Debug, Clone)]
pub struct External {
    /// The path as written where it is used (relative to the module of the model that uses it).
    pub path: syn::Path,
    /// When the use sits inside another invocation's model fetched by its first-round callback (the
    /// source without that invocation's own dependencies), the path under which that model was fetched:
    /// its full callback (`__modelc_full_Name`, next to it) brings its dependencies too.
    pub via: Option<syn::Path>,
}
