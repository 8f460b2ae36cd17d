//! `SimpleRNN`, `LSTM` and `GRU(units, activation = tanh, recurrent_activation = sigmoid, use_bias = true,
//! return_sequences = false, return_state = false, go_backwards = false, unit_forget_bias = true,
//! reset_after = true)`, called as `LSTM(32)(x)` or `LSTM(32)(x, initial_state = [h, c])`.
//!
//! Keras 3's semantics and weight layouts: kernel `[features, G·units]` (glorot uniform),
//! recurrent_kernel `[units, G·units]` (orthogonal), bias `[G·units]` (zeros, the forget block ones
//! with `unit_forget_bias`), or `[2, 3·units]` for GRU (`reset_after = true`: input bias, then
//! recurrent bias); gate order LSTM i, f, c, o and GRU z, r, h. The weights are named as Keras 3
//! names them, through the cell: `lstm/lstm_cell/kernel`. With `return_state = true` a call returns
//! the output and the final states: `let (y, h, c) = LSTM(8, return_state = true)(x);`.
//!
//! Keras import maps the config one to one (dropout, `stateful` and GRU's `reset_after = False` are
//! refused). ONNX export is one forward `RNN` / `LSTM` / `GRU` operator per direction, the Keras weights
//! converted in the graph (`Recurrent::onnx_run`).

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{Act, EmitCx, InferCx, InitKind, LayerDef, MaskRule, ParamDecl};
use crate::ast::ArgKind;
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::{json, Value};

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CellKind {
    /// `SimpleRNN`.
    Simple,
    /// `LSTM`.
    Lstm,
    /// `GRU` (`reset_after = true`).
    Gru,
}

impl CellKind {
    pub(crate) fn gates(self) -> usize {
        match self {
            CellKind::Simple => 1,
            CellKind::Lstm => 4,
            CellKind::Gru => 3,
        }
    }

    pub(crate) fn states(self) -> usize {
        match self {
            CellKind::Lstm => 2,
            _ => 1,
        }
    }

    pub(crate) fn keras(self) -> &'static str {
        match self {
            CellKind::Simple => "SimpleRNN",
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        }
    }

    /// The ONNX operator of the cell.
    fn onnx_op(self) -> &'static str {
        match self {
            CellKind::Simple => "RNN",
            CellKind::Lstm => "LSTM",
            CellKind::Gru => "GRU",
        }
    }

    fn tokens(self) -> TokenStream {
        let c = quote!(::modelc::__private::kernels::recurrent::Cell);
        match self {
            CellKind::Simple => quote!(#c::Simple),
            CellKind::Lstm => quote!(#c::Lstm),
            CellKind::Gru => quote!(#c::Gru),
        }
    }

    /// `[h]` or `[h, c]`, for messages.
    pub(crate) fn state_list(self) -> &'static str {
        match self {
            CellKind::Lstm => "[h, c]",
            _ => "[h]",
        }
    }
}

/// A recurrent layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Recurrent {
    /// The cell.
    pub cell: CellKind,
    /// State size.
    pub units: usize,
    /// The cell's activation.
    pub activation: Act,
    /// The gates' activation (sigmoid; SimpleRNN has none).
    pub recurrent_activation: Act,
    /// Whether the layer has a bias.
    pub use_bias: bool,
    /// Output every step's state, not only the last.
    pub return_sequences: bool,
    /// Also return the final states.
    pub return_state: bool,
    /// Process the sequence last step first.
    pub go_backwards: bool,
    /// LSTM: initialize the forget gate's bias to ones.
    pub unit_forget_bias: bool,
    /// `kernel_initializer`, `kernel_regularizer`, `kernel_constraint`.
    pub kernel: WeightArgs,
    /// `recurrent_initializer`, `recurrent_regularizer`, `recurrent_constraint`.
    pub recurrent: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint` (an LSTM's given `bias_initializer`
    /// replaces `unit_forget_bias`'s ones).
    pub bias: WeightArgs,
}

impl Recurrent {
    /// `SimpleRNN(...)`, `LSTM(...)` or `GRU(...)`.
    pub fn parse(r: &mut ArgReader<'_>, cell: CellKind) -> Option<Self> {
        let units = r.required_positive("units", Some(0));
        let activation = elementwise(r, "activation", Some(1), Act::Tanh);
        let (recurrent_activation, bias_pos) = match cell {
            CellKind::Simple => (Some(Act::Sigmoid), 2),
            _ => (elementwise(r, "recurrent_activation", Some(2), Act::Sigmoid), 3),
        };
        let use_bias = r.bool_or("use_bias", Some(bias_pos), true);
        let return_sequences = r.bool_or("return_sequences", None, false);
        let return_state = r.bool_or("return_state", None, false);
        let go_backwards = r.bool_or("go_backwards", None, false);
        let unit_forget_bias = match cell {
            CellKind::Lstm => r.bool_or("unit_forget_bias", None, true),
            _ => Some(false),
        };
        let kernel = WeightArgs::read(r, role!("kernel", 2));
        let recurrent = WeightArgs::read(r, role!("recurrent", 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        let reset_after_ok = cell != CellKind::Gru || reset_after(r);
        let unsupported = [no_dropout(r, "dropout"), no_dropout(r, "recurrent_dropout"), not_stateful(r)];
        if !reset_after_ok || unsupported.contains(&false) {
            return None;
        }
        Some(Recurrent {
            cell,
            units: units?,
            activation: activation?,
            recurrent_activation: recurrent_activation?,
            use_bias: use_bias?,
            return_sequences: return_sequences?,
            return_state: return_state?,
            go_backwards: go_backwards?,
            unit_forget_bias: unit_forget_bias?,
            kernel: kernel?,
            recurrent: recurrent?,
            bias: bias?,
        })
    }

    fn gu(&self) -> usize {
        self.cell.gates() * self.units
    }

    pub(crate) fn steps_and_features(inputs: &[Shape]) -> (usize, usize) {
        match inputs.first().map(|s| s.0.as_slice()) {
            Some([t, d]) => (*t, *d),
            _ => (0, 0),
        }
    }

    pub(crate) fn scratch_len(&self, steps: usize) -> usize {
        let (u, gu) = (self.units, self.gu());
        let (c, ac) = match self.cell {
            CellKind::Simple => (0, 0),
            CellKind::Lstm => ((steps + 1) * u, steps * u),
            CellKind::Gru => (steps * u, 0),
        };
        3 * steps * gu + (steps + 1) * u + c + ac
    }

    pub(crate) fn work_len(&self, steps: usize) -> usize {
        2 * steps * self.gu() + 3 * self.units
    }

    /// `Rnn { .. }` for the emitted code.
    fn config(&self, cx: &EmitCx) -> TokenStream {
        self.config_as(cx, self.go_backwards)
    }

    /// `Rnn { .. }` running in direction `go_backwards` (`Bidirectional` runs both).
    pub(crate) fn config_as(&self, cx: &EmitCx, go_backwards: bool) -> TokenStream {
        let (steps, input) = match cx.inputs.first().map(|o| o.shape.0.as_slice()) {
            Some([t, d]) => (*t, *d),
            _ => (0, 0),
        };
        let (cell, units, act, rec) = (self.cell.tokens(), self.units, self.activation.tokens(), self.recurrent_activation.tokens());
        let rs = self.return_sequences;
        quote!(::modelc::__private::kernels::recurrent::Rnn {
            cell: #cell, batch: __b, steps: #steps, input: #input, units: #units, act: #act, rec_act: #rec,
            go_backwards: #go_backwards, return_sequences: #rs,
        })
    }

    /// The kernel methods (forward, backward) of a call and the mask argument they take after `x`:
    /// `forward_masked(x, Masked { mask, zero_outputs }, ..)` when operand 0 carries a mask
    /// (docs/masks.md), else the plain `forward(x, ..)`. `zero_outputs`: Keras' `zero_output_for_mask`.
    pub(crate) fn masked_methods(cx: &EmitCx, zero_outputs: bool) -> (TokenStream, TokenStream, TokenStream) {
        match cx.mask(0) {
            Some(m) => (
                quote!(forward_masked),
                quote!(backward_masked),
                quote!(::modelc::__private::kernels::recurrent::Masked { mask: ::core::option::Option::Some(#m), zero_outputs: #zero_outputs },),
            ),
            None => (quote!(forward), quote!(backward), TokenStream::new()),
        }
    }

    /// The forward kernel method of a call and the mask argument it takes after `x`: in the inference
    /// forward `infer(x, Masked { .. }, ..)`, which keeps nothing for backward (`Masked::NONE` without
    /// a mask), else [`Recurrent::masked_methods`]'s.
    pub(crate) fn forward_method(cx: &EmitCx, zero_outputs: bool) -> (TokenStream, TokenStream) {
        let (fwd, _, masked) = Self::masked_methods(cx, zero_outputs);
        if !cx.inference {
            return (fwd, masked);
        }
        let k = quote!(::modelc::__private::kernels::recurrent::Masked);
        match cx.mask(0) {
            Some(m) => (quote!(infer), quote!(#k { mask: ::core::option::Option::Some(#m), zero_outputs: #zero_outputs },)),
            None => (quote!(infer), quote!(#k::NONE,)),
        }
    }

    /// How many parameters the layer has.
    pub(crate) fn n_params(&self) -> usize {
        if self.use_bias {
            3
        } else {
            2
        }
    }

    fn weights(&self, cx: &EmitCx) -> TokenStream {
        self.weights_at(cx, 0)
    }

    /// `&Weights { .. }` of the parameters `__p{first}..`.
    pub(crate) fn weights_at(&self, cx: &EmitCx, first: usize) -> TokenStream {
        let (w, r) = (cx.p(first), cx.p(first + 1));
        let b = super::some_if(self.use_bias, cx.p(first + 2));
        quote!(&::modelc::__private::kernels::recurrent::Weights { w: #w, r: #r, b: #b })
    }

    /// `WeightGrads { .. }` of the gradients `__g{first}..`.
    pub(crate) fn grads_at(&self, cx: &EmitCx, first: usize) -> TokenStream {
        let (gw, gr) = (cx.g(first), cx.g(first + 1));
        let gb = super::some_if(self.use_bias, {
            let g = cx.g(first + 2);
            quote!(&mut #g[..])
        });
        quote!(::modelc::__private::kernels::recurrent::WeightGrads { w: &mut #gw[..], r: &mut #gr[..], b: #gb })
    }

    /// The parameters, named by `names` (kernel, recurrent kernel, bias), in Keras order.
    pub(crate) fn param_decls(&self, fin: usize, names: [&'static str; 3]) -> Vec<ParamDecl> {
        let (u, gu) = (self.units, self.gu());
        let [kernel, recurrent, bias] = names;
        let mut p = vec![
            ParamDecl::new(kernel, vec![fin, gu], InitKind::GlorotUniform { fan_in: fin, fan_out: gu }, true).with(&self.kernel),
            ParamDecl::new(recurrent, vec![u, gu], InitKind::Orthogonal { gain: 1.0, rows: u, cols: gu, seed: None }, true)
                .with(&self.recurrent),
        ];
        if self.use_bias {
            let (shape, init) = match self.cell {
                CellKind::Gru => (vec![2, gu], InitKind::Zeros),
                CellKind::Lstm if self.unit_forget_bias => (vec![gu], InitKind::ForgetBias { units: u }),
                _ => (vec![gu], InitKind::Zeros),
            };
            p.push(ParamDecl::new(bias, shape, init, true).with(&self.bias));
        }
        p
    }

    /// The sequence rule shared with `Bidirectional`: the per-direction output shape, after checking the
    /// operand is a sequence and the `want` initial states (a multiple of the cell's) are `(units,)`.
    pub(crate) fn infer_as(&self, cx: &InferCx<'_>, kind: &str, want: usize, states: &str) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{kind} takes one tensor")))?;
        let [steps, _] = x.0.as_slice() else {
            let name = cx.name(0);
            let help = match x.0.as_slice() {
                [n] => format!("make it a sequence first, e.g. `Reshape(({n}, 1))({name})` for {n} steps of one feature"),
                [first, rest @ ..] => {
                    let features: usize = rest.iter().product();
                    format!(
                        "make it a sequence first, e.g. `Reshape(({first}, {features}))({name})` for {first} steps of {features} features"
                    )
                }
                [] => format!("make `{name}` a sequence (None, steps, features) first"),
            };
            return Err(Diagnostic::new(
                cx.spans.first().copied().unwrap_or(cx.span),
                format!("{kind} needs a sequence (None, steps, features), but {} has rank {}", cx.describe(0), x.rank() + 1),
            )
            .help(help));
        };
        if let Some(kw) = cx.keyword("initial_state") {
            let given = kw.operands.len();
            if given != want {
                return Err(Diagnostic::new(
                    kw.span,
                    format!("{kind} takes {want} initial state{}, but is given {given}", if want == 1 { "" } else { "s" }),
                )
                .help(format!("pass `initial_state = {states}`, each of shape (None, {})", self.units)));
            }
            for i in kw.operands.clone() {
                let s = cx.inputs.get(i).map(|s| s.0.as_slice());
                if s != Some(&[self.units][..]) {
                    return Err(Diagnostic::new(
                        cx.spans.get(i).copied().unwrap_or(kw.span),
                        format!(
                            "initial state {} of {kind}({}) must be (None, {}), one value per unit",
                            cx.describe(i),
                            self.units,
                            self.units
                        ),
                    )
                    .help(format!("pass the states of a layer with {} units, e.g. from `return_state = true`", self.units)));
                }
            }
        }
        Ok(Shape(if self.return_sequences { vec![*steps, self.units] } else { vec![self.units] }))
    }
}

/// What one direction of a recurrent layer gives in ONNX (batch first): the output (`[N, T, u]` with
/// `return_sequences`, in processing order as Keras returns it, else `[N, u]`) and the final states.
pub(crate) struct OnnxRun {
    /// The output.
    pub y: String,
    /// The final `h`, `[N, u]`.
    pub h: String,
    /// The final `c` of an LSTM, `[N, u]`.
    pub c: Option<String>,
}

/// An activation of a recurrent ONNX operator: its name, and its alpha and beta when it takes them.
type OnnxAct = (&'static str, Option<(f32, f32)>);

/// The ONNX name of an activation as a recurrent operator's `activations` entry, with its alpha and beta
/// when it takes them (ONNX consumes `activation_alpha`/`activation_beta` in order, one per activation
/// that takes them).
fn onnx_act(act: Act) -> Result<OnnxAct, OnnxError> {
    Ok(match act {
        Act::Tanh => ("Tanh", None),
        Act::Sigmoid => ("Sigmoid", None),
        Act::Relu => ("Relu", None),
        Act::Softplus => ("Softplus", None),
        Act::Linear => ("Affine", Some((1.0, 0.0))),
        Act::Elu => ("Elu", Some((1.0, 0.0))),
        Act::LeakyRelu => ("LeakyRelu", Some((0.2, 0.0))),
        Act::Gelu | Act::Silu | Act::Softmax => {
            return Err(OnnxError::Unsupported(format!(
                "ONNX's recurrent operators have no `{}` activation (they take tanh, sigmoid, relu, softplus, elu, leaky_relu, linear)",
                act.keras_name()
            )))
        }
    })
}

/// Columns `[from, to)` of axis `axis` of `x`.
fn slice(cx: &mut OnnxCx, x: &str, axis: i64, from: usize, to: usize) -> String {
    let (s, e, a) = (cx.const_i64(&[from as i64]), cx.const_i64(&[to as i64]), cx.const_i64(&[axis]));
    cx.op("Slice", &[x, &s, &e, &a], Vec::new())
}

impl Recurrent {
    /// The `activations` (and `activation_alpha`, `activation_beta` when one takes them) of the ONNX
    /// operator: LSTM f, g, h (gates, cell, output); GRU f, g; RNN f.
    fn onnx_activations(&self) -> Result<Vec<(&'static str, Attr)>, OnnxError> {
        let (rec, act) = (onnx_act(self.recurrent_activation)?, onnx_act(self.activation)?);
        let all = match self.cell {
            CellKind::Simple => vec![act],
            CellKind::Gru => vec![rec, act],
            CellKind::Lstm => vec![rec, act, act],
        };
        let mut attrs = vec![("activations", Attr::Strs(all.iter().map(|a| a.0).collect()))];
        let params: Vec<(f32, f32)> = all.iter().filter_map(|a| a.1).collect();
        if !params.is_empty() {
            attrs.push(("activation_alpha", Attr::Floats(params.iter().map(|p| p.0).collect())));
            attrs.push(("activation_beta", Attr::Floats(params.iter().map(|p| p.1).collect())));
        }
        Ok(attrs)
    }

    /// Keras' gate blocks of `w` along `axis` in ONNX's order: an LSTM's i, f, c, o become i, o, f, c;
    /// SimpleRNN's one gate and GRU's z, r, h are already in ONNX's order.
    fn onnx_gates(&self, cx: &mut OnnxCx, w: &str, axis: i64) -> String {
        if self.cell != CellKind::Lstm {
            return w.to_string();
        }
        let u = self.units;
        let [i, f, c, o] = [0, 1, 2, 3].map(|g| slice(cx, w, axis, g * u, (g + 1) * u));
        cx.op("Concat", &[&i, &o, &f, &c], vec![("axis", Attr::Int(axis))])
    }

    /// `W` `[1, G·u, F]`, `R` `[1, G·u, u]` and `B` `[1, 2·G·u]` (input then recurrent bias; `None`
    /// without a bias) of the ONNX operator, from the Keras parameters `first..` (kernel `[F, G·u]`,
    /// recurrent kernel `[u, G·u]`, bias `[G·u]`, or GRU's `[2, G·u]` of input and recurrent biases).
    fn onnx_weights(&self, cx: &mut OnnxCx, first: usize, features: usize) -> (String, String, Option<String>) {
        let (u, gu) = (self.units as i64, self.gu() as i64);
        let matrix = |cx: &mut OnnxCx, p: usize, cols: i64| {
            let w = self.onnx_gates(cx, &cx.param(p), 1);
            let t = cx.transpose(&w, &[1, 0]);
            cx.reshape_exact(&t, &[1, gu, cols])
        };
        let w = matrix(cx, first, features as i64);
        let r = matrix(cx, first + 1, u);
        let b = self.use_bias.then(|| match self.cell {
            CellKind::Gru => cx.reshape_exact(&cx.param(first + 2), &[1, 2 * gu]),
            _ => {
                let wb = self.onnx_gates(cx, &cx.param(first + 2), 0);
                let zeros = cx.const_f32(&[gu], &vec![0.0; self.gu()]);
                let both = cx.op("Concat", &[&wb, &zeros], vec![("axis", Attr::Int(0))]);
                cx.reshape_exact(&both, &[1, 2 * gu])
            }
        });
        (w, r, b)
    }

    /// One direction of the layer on `x` (batch first, `[N, T, F]`) as a forward ONNX `RNN`, `LSTM` or
    /// `GRU` with the parameters `first..` and the initial states `states` (`[N, u]` each, none or all
    /// of the cell's). `go_backwards` reverses the sequence before the operator (Keras' semantics: the
    /// output sequence stays in processing order), so no runtime needs the `direction` attribute.
    pub(crate) fn onnx_run(
        &self,
        cx: &mut OnnxCx,
        x: &str,
        go_backwards: bool,
        first: usize,
        states: &[String],
    ) -> Result<OnnxRun, OnnxError> {
        // ONNX's recurrent operators skip padding through `sequence_lens` (a suffix per sample), not a
        // per-step mask that may hold gaps, and a mask is data: the export cannot know it is a suffix.
        if cx.mask_input(0).is_some() {
            return Err(OnnxError::Unsupported(String::from(
                "its input carries a mask (from Masking or Embedding(mask_zero = true)), and ONNX's recurrent operators \
                 take sequence lengths, not per-step masks; export a copy of the model without the mask producer \
                 and pass sequences padded at the end",
            )));
        }
        let (steps, features) = match cx.input_shape(0).0.as_slice() {
            [t, f] => (*t, *f),
            _ => return Err(OnnxError::Unsupported(String::from("the operand is not a sequence (None, steps, features)"))),
        };
        let acts = self.onnx_activations()?;
        let u = self.units as i64;
        let xt = cx.transpose(x, &[1, 0, 2]);
        let xt = if go_backwards {
            let rev: Vec<i64> = (0..steps as i64).rev().collect();
            let idx = cx.const_i64(&rev);
            cx.op("Gather", &[&xt, &idx], vec![("axis", Attr::Int(0))])
        } else {
            xt
        };
        let (w, r, b) = self.onnx_weights(cx, first, features);
        let state = |cx: &mut OnnxCx, i: usize| states.get(i).map(|s| cx.reshape_exact(s, &[1, -1, u])).unwrap_or_default();
        let h0 = state(cx, 0);
        let mut ins = vec![xt, w, r, b.unwrap_or_default(), String::new(), h0];
        if self.cell == CellKind::Lstm {
            ins.push(state(cx, 1));
        }
        while ins.last().is_some_and(String::is_empty) {
            ins.pop();
        }
        let (y, yh) = (cx.fresh("y"), cx.fresh("y_h"));
        let yc = (self.cell == CellKind::Lstm).then(|| cx.fresh("y_c"));
        let mut outs = vec![y.as_str(), yh.as_str()];
        outs.extend(yc.as_deref());
        let mut attrs = vec![("hidden_size", Attr::Int(u))];
        attrs.extend(acts);
        if self.cell == CellKind::Gru {
            attrs.push(("linear_before_reset", Attr::Int(1)));
        }
        let ins: Vec<&str> = ins.iter().map(String::as_str).collect();
        cx.node(self.cell.onnx_op(), &ins, &outs, attrs);
        let h = cx.reshape_exact(&yh, &[-1, u]);
        let c = yc.map(|c| cx.reshape_exact(&c, &[-1, u]));
        let y = if self.return_sequences {
            // [T, 1, N, u] -> [N, T, 1, u] -> [N, T, u]
            let t = cx.transpose(&y, &[2, 0, 1, 3]);
            cx.reshape_exact(&t, &[-1, steps as i64, u])
        } else {
            h.clone()
        };
        Ok(OnnxRun { y, h, c })
    }
}

impl Recurrent {
    /// Keras import: `SimpleRNN` / `LSTM` / `GRU(units, activation, recurrent_activation, use_bias,
    /// return_sequences, return_state, go_backwards, unit_forget_bias)` with the three weights'
    /// initializers, regularizers and constraints. Refused: dropout (either kind) other than 0, a
    /// stateful layer, a GRU with `reset_after = False`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        let lstm = a.class() == "LSTM";
        a.positional("units");
        rnn_activation(a, "activation", "tanh");
        if a.class() != "SimpleRNN" {
            rnn_activation(a, "recurrent_activation", "sigmoid");
        }
        a.kw("use_bias", json!(true));
        a.kw("return_sequences", json!(false));
        a.kw("return_state", json!(false));
        if a.get("return_state") == Some(&json!(true)) {
            a.results = 1 + if lstm { 2 } else { 1 };
        }
        a.kw("go_backwards", json!(false));
        if lstm {
            a.kw("unit_forget_bias", json!(true));
        }
        if a.class() == "GRU" {
            a.expect(
                "reset_after",
                json!(true),
                "modelc implements Keras 3's GRU (reset_after=True): rebuild the layer with reset_after=True and retrain it",
            );
        }
        a.initializer("kernel_initializer", "GlorotUniform");
        a.initializer("recurrent_initializer", "Orthogonal");
        a.initializer("bias_initializer", "Zeros");
        for what in ["kernel", "recurrent", "bias", "activity"] {
            a.optional_object(&format!("{what}_regularizer"));
        }
        for what in ["kernel", "recurrent", "bias"] {
            a.optional_object(&format!("{what}_constraint"));
        }
        for what in ["dropout", "recurrent_dropout"] {
            if let Some(v) = a.get(what) {
                if v.as_f64() != Some(0.0) {
                    a.problem(format!(
                        "`{what}` = {v} is not supported by modelc: rebuild the layer with {what}=0 (to regularize, put a Dropout layer before or after it) and save again"
                    ));
                }
            }
        }
        a.expect(
            "stateful",
            json!(false),
            "modelc's batches are independent: rebuild the layer with stateful=False, and carry states with return_state and initial_state",
        );
        // Which output a masked step gives in the returned sequence: modelc's is Keras' default, the
        // carried state (Bidirectional forces zeros on its layers itself, and takes the key out).
        let sequences = a.get("return_sequences") == Some(&json!(true));
        if sequences && a.get("zero_output_for_mask").is_some_and(|v| *v != json!(false)) {
            a.problem(String::from(
                "`zero_output_for_mask` = true is not supported: modelc's masked steps output the carried state (Keras' default); rebuild the layer with zero_output_for_mask=False, or wrap it in Bidirectional, which outputs zeros there",
            ));
        }
        // An execution strategy only (the unrolled loop computes the same), and the seed of the dropout
        // refused above.
        for ignored in ["unroll", "seed", "zero_output_for_mask"] {
            a.get(ignored);
        }
    }
}

// Rule: a recurrent activation is written unless it is Keras' default (`tanh`, or `sigmoid` for the
// gates); a configured or custom activation is not translated.
fn rnn_activation(a: &mut KerasArgs<'_>, key: &str, default: &str) {
    match a.get(key) {
        Some(Value::String(s)) if s == default => {}
        Some(Value::String(s)) => {
            let arg = format!("{key} = {s}");
            a.args.push(arg);
        }
        Some(v) => {
            let msg = format!("`{key}` = {v} is a custom or configured activation: use a built-in one by name (tanh, relu, sigmoid, ...)");
            a.problem(msg);
        }
        None => {}
    }
}

/// An `activation =` argument that must apply element-wise (not softmax).
fn elementwise(r: &mut ArgReader<'_>, name: &'static str, pos: Option<usize>, default: Act) -> Option<Act> {
    let act = Act::read(r, name, pos, default)?;
    if act == Act::Softmax {
        let kind = r.kind();
        let span = r.span();
        r.error(
            Diagnostic::new(span, format!("{kind}'s `{name}` must apply element-wise, and softmax does not"))
                .help(format!("use an element-wise activation such as `{name} = {}`", default.keras_name())),
        );
        return None;
    }
    Some(act)
}

// Rule: `dropout` and `recurrent_dropout` are not implemented: only 0 is accepted.
fn no_dropout(r: &mut ArgReader<'_>, name: &'static str) -> bool {
    let Some(v) = r.raw(name, None) else { return true };
    let zero = match v.kind {
        ArgKind::Int(0) => true,
        ArgKind::Float(f) => f == 0.0,
        _ => false,
    };
    if !zero {
        let kind = r.kind();
        r.error(Diagnostic::new(v.span, format!("{kind}'s `{name}` is not supported by modelc yet")).help(format!(
            "remove `{name}`; to regularize the inputs, put a `Dropout(rate)` layer before the {kind}, or after it on its output"
        )));
    }
    zero
}

// Rule: a stateful layer carries states across batches, which modelc's independent batches do not do.
fn not_stateful(r: &mut ArgReader<'_>) -> bool {
    let Some(v) = r.raw("stateful", None) else { return true };
    if matches!(v.kind, ArgKind::Bool(false)) {
        return true;
    }
    let kind = r.kind();
    r.error(Diagnostic::new(v.span, format!("stateful {kind} is not supported: modelc's batches are independent")).help(
        "remove `stateful = true`; to carry states between calls, return them with `return_state = true` and pass them back with `initial_state = [...]`",
    ));
    false
}

// Rule: only Keras 3's default GRU (`reset_after = true`) is implemented.
fn reset_after(r: &mut ArgReader<'_>) -> bool {
    let Some(v) = r.raw("reset_after", None) else { return true };
    if matches!(v.kind, ArgKind::Bool(true)) {
        return true;
    }
    r.error(
        Diagnostic::new(v.span, "GRU with `reset_after = false` is not supported by modelc")
            .help("remove `reset_after` (Keras 3's default, `reset_after = true`, is supported)"),
    );
    false
}

impl LayerDef for Recurrent {
    // Batch-first `x` to seq-major, one forward ONNX `RNN` / `LSTM` / `GRU` (the Keras weights
    // transposed, LSTM gates reordered i, o, f, c, zero recurrent biases but GRU's own; `go_backwards`
    // reverses the steps first), `Y` back to batch first (or `Y_h` without `return_sequences`), and the
    // final states as the further results with `return_state`.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let states: Vec<String> = (1..cx.n_inputs()).map(|i| cx.input(i)).collect();
        let run = self.onnx_run(cx, &cx.input(0), self.go_backwards, 0, &states)?;
        cx.node("Identity", &[&run.y], &[&cx.output()], Vec::new());
        if self.return_state {
            cx.node("Identity", &[&run.h], &[&cx.extra_output(1)], Vec::new());
            if let Some(c) = &run.c {
                cx.node("Identity", &[c], &[&cx.extra_output(2)], Vec::new());
            }
        }
        Ok(())
    }

    // Rule (Keras): a recurrent layer reads a sequence (None, steps, features); it gives (None, steps,
    // units) with `return_sequences`, else (None, units). Initial states are (None, units) each, one
    // per state of the cell (LSTM: h and c).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        self.infer_as(cx, self.cell.keras(), self.cell.states(), self.cell.state_list())
    }

    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(if self.return_sequences { 2 } else { 1 })
    }

    // Keras' `RNN.compute_mask`: a sequence output keeps the input's mask; the states carry none.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        if self.return_sequences {
            MaskRule::Keep(0)
        } else {
            MaskRule::Drop
        }
    }

    fn extra_rank(&self, _k: usize, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(1)
    }

    fn result_names(&self) -> Vec<&'static str> {
        match (self.return_state, self.cell) {
            (false, _) => vec!["output"],
            (true, CellKind::Lstm) => vec!["output", "state_h", "state_c"],
            (true, _) => vec!["output", "state_h"],
        }
    }

    fn extra_shapes(&self, _cx: &InferCx<'_>, _output: &Shape) -> Vec<Shape> {
        if self.return_state {
            vec![Shape(vec![self.units]); self.cell.states()]
        } else {
            Vec::new()
        }
    }

    fn call_keywords(&self) -> &'static [&'static str] {
        &["initial_state"]
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let (_, fin) = Self::steps_and_features(inputs);
        let names = match self.cell {
            CellKind::Simple => ["simple_rnn_cell/kernel", "simple_rnn_cell/recurrent_kernel", "simple_rnn_cell/bias"],
            CellKind::Lstm => ["lstm_cell/kernel", "lstm_cell/recurrent_kernel", "lstm_cell/bias"],
            CellKind::Gru => ["gru_cell/kernel", "gru_cell/recurrent_kernel", "gru_cell/bias"],
        };
        self.param_decls(fin, names)
    }

    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        let (steps, _) = Self::steps_and_features(inputs);
        vec![self.scratch_len(steps), self.work_len(steps)]
    }

    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![1]
    }

    // { take scratch 0; Rnn{..}.forward(x, h0, c0, &Weights{..}, &mut scratch, y, h_out, c_out); put back }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let cfg = self.config(cx);
        let weights = self.weights(cx);
        let x = cx.x(0);
        let state = |i: usize| super::some_if(cx.inputs.len() > i, cx.x(i));
        let (h0, c0) = (state(1), state(2));
        let res = |k: usize| {
            super::some_if(cx.extra.len() >= k, {
                let y = cx.y_extra(k);
                quote!(&mut #y[..])
            })
        };
        let (h_out, c_out) = (res(1), res(2));
        let s = cx.scratch.first().copied().unwrap_or(0);
        let n = cx.scratch_len(0);
        let (fwd, masked) = Self::forward_method(cx, false);
        quote! {
            let mut __rnn = ::core::mem::take(&mut __ws.scratch[#s]);
            #cfg.#fwd(#x, #masked #h0, #c0, #weights, &mut __rnn[..__b * #n], &mut __y[..], #h_out, #c_out);
            __ws.scratch[#s] = __rnn;
        }
    }

    // { take scratch 1; Rnn{..}.backward(x, &Weights{..}, kept, &mut work, dy, dh_out, dc_out, dx, &mut WeightGrads{..});
    //   add the initial states' gradients from work; put back }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let cfg = self.config(cx);
        let weights = self.weights(cx);
        let x = cx.x(0);
        let dx = cx.dx(0);
        let kept = cx.scratch(0);
        let w = cx.scratch.get(1).copied().unwrap_or(0);
        let wn = cx.scratch_len(1);
        let res = |k: usize| {
            super::some_if(cx.extra.len() >= k, {
                let d = cx.dy_extra(k);
                quote!(&#d[..])
            })
        };
        let (dh_out, dc_out) = (res(1), res(2));
        let grads = self.grads_at(cx, 0);
        let mut states = TokenStream::new();
        for (i, part) in [(1usize, quote!(0)), (2, quote!(1))] {
            if cx.inputs.len() > i && cx.needs_grad(i) {
                let d = cx.dx_mut(i);
                states.extend(quote!(::modelc::__private::kernels::recurrent::add_into(#d, __cfg.state_grads(&__work[..]).#part);));
            }
        }
        let (_, bwd, masked) = Self::masked_methods(cx, false);
        quote! {
            let __cfg = #cfg;
            let mut __work = ::core::mem::take(&mut __ws.scratch[#w]);
            __cfg.#bwd(
                #x, #masked #weights, #kept, &mut __work[..__b * #wn], &__dy[..], #dh_out, #dc_out, #dx,
                #grads,
            );
            #states
            __ws.scratch[#w] = __work;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn import(class: &str, config: serde_json::Value) -> (Vec<String>, Vec<String>, usize) {
        let mut a = KerasArgs::new(class, config.as_object().unwrap());
        Recurrent::from_keras(&mut a);
        let results = a.results;
        let (args, problems) = a.finish();
        (args, problems, results)
    }

    #[test]
    fn keras_recurrent_configs_become_arguments_and_default_ones_are_left_out() {
        let (args, problems, results) = import(
            "LSTM",
            json!({"units": 8, "activation": "tanh", "recurrent_activation": "relu", "use_bias": true, "return_sequences": true,
                   "return_state": true, "go_backwards": false, "stateful": false, "unroll": false, "unit_forget_bias": false,
                   "kernel_initializer": {"class_name": "GlorotUniform", "config": {"seed": null}},
                   "recurrent_initializer": {"class_name": "Orthogonal", "config": {"seed": null, "gain": 1.0}},
                   "bias_initializer": {"class_name": "Zeros", "config": {}},
                   "recurrent_regularizer": {"class_name": "L2", "config": {"l2": 0.01}},
                   "dropout": 0.0, "recurrent_dropout": 0.0, "seed": null, "zero_output_for_mask": false}),
        );
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(
            args,
            [
                "8",
                "recurrent_activation = relu",
                "return_sequences = true",
                "return_state = true",
                "unit_forget_bias = false",
                "recurrent_regularizer = l2(l2 = 0.01)"
            ]
        );
        assert_eq!(results, 3, "output, h and c");
        let (args, _, results) = import("GRU", json!({"units": 2, "activation": "linear", "return_state": true, "reset_after": true}));
        assert_eq!((args, results), (vec![String::from("2"), String::from("activation = linear"), String::from("return_state = true")], 2));
    }

    #[test]
    fn keras_recurrent_features_modelc_lacks_are_each_reported() {
        let (_, problems, _) = import(
            "GRU",
            json!({"units": 2, "dropout": 0.2, "recurrent_dropout": 0.1, "stateful": true, "reset_after": false,
                   "activation": {"class_name": "function"}}),
        );
        assert_eq!(problems.len(), 5, "{problems:#?}");
        for what in ["`dropout` = 0.2", "`recurrent_dropout` = 0.1", "`stateful`", "`reset_after`", "`activation`"] {
            assert!(problems.iter().any(|p| p.contains(what)), "{what} in {problems:#?}");
        }
    }

    #[test]
    fn zeros_at_masked_steps_of_a_returned_sequence_are_refused_as_modelc_carries_the_state() {
        let config = |sequences: bool| json!({"units": 3, "return_sequences": sequences, "zero_output_for_mask": true});
        let (_, problems, _) = import("LSTM", config(true));
        assert!(problems.len() == 1 && problems[0].contains("`zero_output_for_mask` = true is not supported"), "{problems:#?}");
        // Without the sequence only the last state is returned, the same either way.
        let (_, problems, _) = import("GRU", config(false));
        assert!(problems.is_empty(), "{problems:#?}");
    }
}
