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

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{Act, EmitCx, InferCx, InitKind, LayerDef, ParamDecl};
use crate::ast::ArgKind;
use crate::diag::Diagnostic;
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

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
    // Rule (Keras): a recurrent layer reads a sequence (None, steps, features); it gives (None, steps,
    // units) with `return_sequences`, else (None, units). Initial states are (None, units) each, one
    // per state of the cell (LSTM: h and c).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        self.infer_as(cx, self.cell.keras(), self.cell.states(), self.cell.state_list())
    }

    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(if self.return_sequences { 2 } else { 1 })
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
        quote! {
            let mut __rnn = ::core::mem::take(&mut __ws.scratch[#s]);
            #cfg.forward(#x, #h0, #c0, #weights, &mut __rnn[..__b * #n], &mut __y[..], #h_out, #c_out);
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
        quote! {
            let __cfg = #cfg;
            let mut __work = ::core::mem::take(&mut __ws.scratch[#w]);
            __cfg.backward(
                #x, #weights, #kept, &mut __work[..__b * #wn], &__dy[..], #dh_out, #dc_out, #dx,
                #grads,
            );
            #states
            __ws.scratch[#w] = __work;
        }
    }
}
