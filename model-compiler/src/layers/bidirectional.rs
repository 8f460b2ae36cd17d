//! `Bidirectional(layer, merge_mode = concat)`: a recurrent layer (`SimpleRNN`, `LSTM`, `GRU`) run over the
//! sequence forward and a copy of it run backward, their outputs merged (`concat`, `sum`, `mul`, `ave`)
//! or both returned (`none`). With `return_state` the call also returns the forward layer's final
//! states, then the backward layer's; `initial_state` takes them in the same order.
//!
//! Keras 3's semantics and names: the backward layer's sequence output is flipped back to time order
//! before merging, and the weights are `bidirectional/forward_lstm/lstm_cell/kernel` and
//! `bidirectional/backward_lstm/lstm_cell/kernel` (the wrapped layer's default name after `forward_`
//! or `backward_`).
//!
//! Keras import nests the wrapped layer's constructor (`Bidirectional(LSTM(8), merge_mode = sum)`);
//! ONNX export runs the wrapped layer's operator once per direction and merges with standard operators.

use super::args::ArgReader;
use super::recurrent::{CellKind, Recurrent};
use super::{EmitCx, InferCx, LayerDef, LayerKind, MaskRule, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// Keras `merge_mode`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// Side by side (Keras' default).
    Concat,
    /// Sum.
    Sum,
    /// Product.
    Mul,
    /// Mean.
    Ave,
    /// Both outputs returned.
    None,
}

impl Merge {
    fn tokens(self) -> TokenStream {
        let m = quote!(::modelc::__private::kernels::bidirectional::MergeMode);
        match self {
            Merge::Concat => quote!(#m::Concat),
            Merge::Sum => quote!(#m::Sum),
            Merge::Mul => quote!(#m::Mul),
            Merge::Ave => quote!(#m::Ave),
            Merge::None => quote!(#m::None),
        }
    }
}

/// A bidirectional wrapper of a recurrent layer.
#[derive(Clone, Debug, PartialEq)]
pub struct Bidirectional {
    /// The wrapped layer (the forward direction; the backward one is a copy going the other way).
    pub layer: Recurrent,
    /// How the outputs combine.
    pub merge: Merge,
}

/// The recurrent kinds `Bidirectional` wraps.
const WRAPPABLE: &[&str] = &["SimpleRNN", "LSTM", "GRU"];

impl Bidirectional {
    /// `Bidirectional(layer, merge_mode)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let layer = Self::wrapped(r);
        let merge = r.choice_or("merge_mode", Some(1), &["concat", "sum", "mul", "ave", "none"], "concat");
        let merge = match merge? {
            "sum" => Merge::Sum,
            "mul" => Merge::Mul,
            "ave" => Merge::Ave,
            "none" => Merge::None,
            _ => Merge::Concat,
        };
        Some(Bidirectional { layer: layer?, merge })
    }

    // Rule: the wrapped layer is a recurrent layer constructor, `Bidirectional(LSTM(32))`.
    fn wrapped(r: &mut ArgReader<'_>) -> Option<Recurrent> {
        let Some(v) = r.raw("layer", Some(0)) else {
            let span = r.span();
            r.error(
                Diagnostic::new(span, "Bidirectional needs the recurrent layer it wraps")
                    .help("pass it first, e.g. `Bidirectional(LSTM(32))`"),
            );
            return None;
        };
        let ctor = match v.kind.as_ctor() {
            Some(ctor) => ctor,
            None => {
                r.error(
                    Diagnostic::new(
                        v.span,
                        format!("Bidirectional wraps a recurrent layer, but is given {}", super::args::describe(&v.kind)),
                    )
                    .help("pass a layer constructor, e.g. `Bidirectional(LSTM(32))`"),
                );
                return None;
            }
        };
        let name = crate::parse::path_text(&ctor.path);
        if !WRAPPABLE.contains(&name.as_str()) {
            r.error(
                Diagnostic::new(
                    v.span,
                    format!("Bidirectional wraps a recurrent layer ({}), but is given `{name}`", super::args::list(WRAPPABLE)),
                )
                .help("wrap a recurrent layer, e.g. `Bidirectional(LSTM(32))`; apply other layers to its output"),
            );
            return None;
        }
        let w = r.layer_ctor(&ctor, v.span)?;
        if let Some((given, span)) = w.name {
            // Keras names the two copies `forward_<name>` and `backward_<name>`; modelc names them after the
            // cell's default (`forward_lstm`), so a name of its own would be silently ignored.
            r.error(Diagnostic::new(span, format!("a name for the {name} inside Bidirectional is not supported")).help(format!(
                "remove `name = \"{given}\"`: modelc names its two copies `forward_{0}` and `backward_{0}`; name the \
                     Bidirectional layer instead, `Bidirectional({name}(...), name = \"{given}\")`",
                super::snake_case(&name)
            )));
            return None;
        }
        match w.layer {
            LayerKind::Recurrent(layer) => Some(layer),
            _ => None,
        }
    }

    fn states(&self) -> usize {
        self.layer.cell.states()
    }

    /// Per-direction output shape from the merged one.
    fn direction_shape(&self, steps: usize) -> Vec<usize> {
        if self.layer.return_sequences {
            vec![steps, self.layer.units]
        } else {
            vec![self.layer.units]
        }
    }

    fn names(&self, forward: bool) -> [&'static str; 3] {
        match (self.layer.cell, forward) {
            (CellKind::Simple, true) => [
                "forward_simple_rnn/simple_rnn_cell/kernel",
                "forward_simple_rnn/simple_rnn_cell/recurrent_kernel",
                "forward_simple_rnn/simple_rnn_cell/bias",
            ],
            (CellKind::Simple, false) => [
                "backward_simple_rnn/simple_rnn_cell/kernel",
                "backward_simple_rnn/simple_rnn_cell/recurrent_kernel",
                "backward_simple_rnn/simple_rnn_cell/bias",
            ],
            (CellKind::Lstm, true) => {
                ["forward_lstm/lstm_cell/kernel", "forward_lstm/lstm_cell/recurrent_kernel", "forward_lstm/lstm_cell/bias"]
            }
            (CellKind::Lstm, false) => {
                ["backward_lstm/lstm_cell/kernel", "backward_lstm/lstm_cell/recurrent_kernel", "backward_lstm/lstm_cell/bias"]
            }
            (CellKind::Gru, true) => ["forward_gru/gru_cell/kernel", "forward_gru/gru_cell/recurrent_kernel", "forward_gru/gru_cell/bias"],
            (CellKind::Gru, false) => {
                ["backward_gru/gru_cell/kernel", "backward_gru/gru_cell/recurrent_kernel", "backward_gru/gru_cell/bias"]
            }
        }
    }

    /// `Layout { .. }` of the merge for the emitted code.
    fn layout(&self, cx: &EmitCx) -> TokenStream {
        let (steps, _) = Recurrent::steps_and_features(&cx.inputs.iter().map(|o| o.shape.clone()).take(1).collect::<Vec<_>>());
        let seq = self.layer.return_sequences;
        let steps = if seq { steps } else { 1 };
        let units = self.layer.units;
        quote!(::modelc::__private::kernels::bidirectional::Layout { rows: __b, steps: #steps, units: #units, flip: #seq })
    }

    /// Index of the first state among the results (after one merged output, or the two of `none`).
    fn first_state(&self) -> usize {
        if self.merge == Merge::None {
            2
        } else {
            1
        }
    }
}

impl Bidirectional {
    /// Keras import: `Bidirectional(LSTM(...), merge_mode = sum)`, the wrapped layer translated by its own
    /// mapping. modelc's backward layer is the forward one going the other way, so Keras'
    /// `backward_layer` must be that (Keras' default); `merge_mode = None` is `none`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        // Keras' Bidirectional sets its layers' `zero_output_for_mask` to their `return_sequences`
        // whatever their config says, as modelc's does.
        let forced = |c: &mut serde_json::Map<String, serde_json::Value>| {
            c.remove("zero_output_for_mask");
        };
        let forward = a.nested_layer("layer", forced);
        let flip = |c: &mut serde_json::Map<String, serde_json::Value>| {
            forced(c);
            let backwards = c.get("go_backwards").and_then(serde_json::Value::as_bool).unwrap_or(false);
            c.insert(String::from("go_backwards"), serde_json::Value::Bool(!backwards));
        };
        let backward = a.nested_layer("backward_layer", flip);
        let merge = match a.get("merge_mode") {
            None => Some("none"),
            Some(serde_json::Value::String(m)) if m == "concat" => None,
            Some(serde_json::Value::String(m)) => Some(m.as_str()),
            Some(v) => {
                a.problem(format!("`merge_mode` = {v} is not a merge mode"));
                None
            }
        };
        if let Some((class, args, results)) = forward {
            if !WRAPPABLE.contains(&class.as_str()) {
                a.problem(format!("Bidirectional wraps a recurrent layer ({}) in modelc, not {class}", super::args::list(WRAPPABLE)));
                return;
            }
            if backward.as_ref().is_some_and(|b| b.1 != args) {
                a.problem(String::from(
                    "a `backward_layer` other than a copy of `layer` going backwards is not supported: build the Bidirectional layer without `backward_layer` and save again",
                ));
            }
            a.args.push(format!("{class}({})", args.join(", ")));
            if let Some(m) = merge {
                a.args.push(format!("merge_mode = {m}"));
            }
            // The forward layer's results: its output (two with `none`) and, with `return_state`, both
            // layers' states.
            let outputs = if merge == Some("none") { 2 } else { 1 };
            a.results = outputs + 2 * (results - 1);
        }
    }
}

impl LayerDef for Bidirectional {
    // Keras' `Bidirectional.compute_mask`: a sequence output keeps the input's mask.
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        if self.layer.return_sequences {
            MaskRule::Keep(0)
        } else {
            MaskRule::Drop
        }
    }

    // Keras: with `merge_mode = None` and `return_sequences`, both sequences (results 0 and 1) keep the
    // input's mask; the states carry none.
    fn extra_mask_rule(&self, k: usize, _cx: &InferCx<'_>) -> MaskRule {
        if k == 1 && self.merge == Merge::None && self.layer.return_sequences {
            MaskRule::Keep(0)
        } else {
            MaskRule::Drop
        }
    }

    // The wrapped layer's ONNX operator twice (see `Recurrent::onnx_run`): forward in its own direction,
    // backward in the other, whose sequence is flipped back to time order (Gather on the steps); then
    // the merge (`Concat` on the last axis, `Add`, `Mul`, `Add` then half, or both results with
    // `none`) and the forward layer's, then the backward layer's, final states.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let s = self.states();
        let states: Vec<String> = (1..cx.n_inputs()).map(|i| cx.input(i)).collect();
        let (fs, bs) = (states.get(..s).unwrap_or(&[]), states.get(s..).unwrap_or(&[]));
        let x = cx.input(0);
        let n = self.layer.n_params();
        let fw = self.layer.onnx_run(cx, &x, self.layer.go_backwards, 0, fs)?;
        let bw = self.layer.onnx_run(cx, &x, !self.layer.go_backwards, n, bs)?;
        let yb = match cx.input_shape(0).0.as_slice() {
            [steps, _] if self.layer.return_sequences => {
                let rev: Vec<i64> = (0..*steps as i64).rev().collect();
                let idx = cx.const_i64(&rev);
                cx.op("Gather", &[&bw.y, &idx], vec![("axis", Attr::Int(1))])
            }
            _ => bw.y.clone(),
        };
        let out = cx.output();
        match self.merge {
            Merge::Concat => cx.node("Concat", &[&fw.y, &yb], &[&out], vec![("axis", Attr::Int(-1))]),
            Merge::Sum => cx.node("Add", &[&fw.y, &yb], &[&out], Vec::new()),
            Merge::Mul => cx.node("Mul", &[&fw.y, &yb], &[&out], Vec::new()),
            Merge::Ave => {
                let sum = cx.op("Add", &[&fw.y, &yb], Vec::new());
                let half = cx.scalar(0.5);
                cx.node("Mul", &[&sum, &half], &[&out], Vec::new());
            }
            Merge::None => {
                cx.node("Identity", &[&fw.y], &[&out], Vec::new());
                cx.node("Identity", &[&yb], &[&cx.extra_output(1)], Vec::new());
            }
        }
        if self.layer.return_state {
            let mut k = self.first_state();
            for run in [&fw, &bw] {
                for v in std::iter::once(&run.h).chain(run.c.as_ref()) {
                    cx.node("Identity", &[v], &[&cx.extra_output(k)], Vec::new());
                    k += 1;
                }
            }
        }
        Ok(())
    }

    // Rule (Keras): as the wrapped layer on a sequence; `concat` doubles the last axis, `none` returns
    // both directions' outputs; initial states are the forward layer's, then the backward layer's.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let states = match self.layer.cell {
            CellKind::Lstm => "[h_fw, c_fw, h_bw, c_bw]",
            _ => "[h_fw, h_bw]",
        };
        let mut out = self.layer.infer_as(cx, "Bidirectional", 2 * self.states(), states)?;
        if self.merge == Merge::Concat {
            if let Some(last) = out.0.last_mut() {
                *last *= 2;
            }
        }
        Ok(out)
    }

    fn output_rank(&self, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(if self.layer.return_sequences { 2 } else { 1 })
    }

    fn extra_rank(&self, k: usize, _inputs: &[Option<usize>]) -> Option<usize> {
        Some(if k < self.first_state() && self.layer.return_sequences { 2 } else { 1 })
    }

    fn result_names(&self) -> Vec<&'static str> {
        let mut names = if self.merge == Merge::None { vec!["forward", "backward"] } else { vec!["output"] };
        if self.layer.return_state {
            match self.layer.cell {
                CellKind::Lstm => names.extend(["forward_h", "forward_c", "backward_h", "backward_c"]),
                _ => names.extend(["forward_h", "backward_h"]),
            }
        }
        names
    }

    fn extra_shapes(&self, cx: &InferCx<'_>, _output: &Shape) -> Vec<Shape> {
        let (steps, _) = Recurrent::steps_and_features(cx.inputs);
        let mut out = Vec::new();
        if self.merge == Merge::None {
            out.push(Shape(self.direction_shape(steps)));
        }
        if self.layer.return_state {
            out.extend(std::iter::repeat_n(Shape(vec![self.layer.units]), 2 * self.states()));
        }
        out
    }

    fn call_keywords(&self) -> &'static [&'static str] {
        &["initial_state"]
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let (_, fin) = Recurrent::steps_and_features(inputs);
        let mut p = self.layer.param_decls(fin, self.names(true));
        p.extend(self.layer.param_decls(fin, self.names(false)));
        p
    }

    // Kept by forward for backward (forward, backward direction), backward's work (both), the two
    // directions' outputs, and their gradients.
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        let (steps, _) = Recurrent::steps_and_features(inputs);
        let (kept, work) = (self.layer.scratch_len(steps), self.layer.work_len(steps));
        let y: usize = self.direction_shape(steps).iter().product();
        vec![kept, kept, work, work, y, y, y, y]
    }

    fn backward_only_scratch(&self) -> Vec<usize> {
        vec![2, 3, 6, 7]
    }

    // { take scratch; forward layer into yf, backward layer into yb; bidirectional::merge(yf, yb) into
    //   the output (and the backward output with `none`); put back }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let (fw, bw) = (self.layer.config_as(cx, self.layer.go_backwards), self.layer.config_as(cx, !self.layer.go_backwards));
        let n = self.layer.n_params();
        let (wf, wb) = (self.layer.weights_at(cx, 0), self.layer.weights_at(cx, n));
        let x = cx.x(0);
        let s = self.states();
        let op = |i: usize| super::some_if(cx.inputs.len() > i, cx.x(i));
        let (h0f, c0f) = (op(1), if s == 2 { op(2) } else { op(usize::MAX) });
        let (h0b, c0b) = (op(1 + s), if s == 2 { op(2 + s) } else { op(usize::MAX) });
        let res = |k: usize| {
            super::some_if(self.layer.return_state && cx.extra.len() >= k, {
                let y = cx.y_extra(k);
                quote!(&mut #y[..])
            })
        };
        let f0 = self.first_state();
        let (hf, cf) = (res(f0), if s == 2 { res(f0 + 1) } else { res(usize::MAX) });
        let (hb, cb) = (res(f0 + s), if s == 2 { res(f0 + s + 1) } else { res(usize::MAX) });
        let y_back = super::some_if(self.merge == Merge::None, {
            let y = cx.y_extra(1);
            quote!(&mut #y[..])
        });
        let take = |i: usize| {
            let (id, n) = (cx.scratch.get(i).copied().unwrap_or(0), cx.scratch_len(i));
            (quote!(::core::mem::take(&mut __ws.scratch[#id])), quote!(__ws.scratch[#id]), n)
        };
        let ((t0, p0, n0), (t1, p1, n1), (t4, p4, n4), (t5, p5, n5)) = (take(0), take(1), take(4), take(5));
        let (mode, layout) = (self.merge.tokens(), self.layout(cx));
        // Keras sets `zero_output_for_mask = return_sequences` on both directions.
        let (fwd, m) = Recurrent::forward_method(cx, self.layer.return_sequences);
        quote! {
            let (mut __kf, mut __kb, mut __yf, mut __yb) = (#t0, #t1, #t4, #t5);
            #fw.#fwd(#x, #m #h0f, #c0f, #wf, &mut __kf[..__b * #n0], &mut __yf[..__b * #n4], #hf, #cf);
            #bw.#fwd(#x, #m #h0b, #c0b, #wb, &mut __kb[..__b * #n1], &mut __yb[..__b * #n5], #hb, #cb);
            ::modelc::__private::kernels::bidirectional::merge(#mode, #layout, &__yf[..__b * #n4], &__yb[..__b * #n5], &mut __y[..], #y_back);
            (#p0, #p1, #p4, #p5) = (__kf, __kb, __yf, __yb);
        }
    }

    // { bidirectional::split(dy) into dyf, dyb; each direction's Rnn::backward; the initial states'
    //   gradients from each work buffer }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let (fw, bw) = (self.layer.config_as(cx, self.layer.go_backwards), self.layer.config_as(cx, !self.layer.go_backwards));
        let n = self.layer.n_params();
        let (wf, wb) = (self.layer.weights_at(cx, 0), self.layer.weights_at(cx, n));
        let (gf, gb) = (self.layer.grads_at(cx, 0), self.layer.grads_at(cx, n));
        let x = cx.x(0);
        let dx = cx.dx(0);
        let s = self.states();
        let res = |k: usize| {
            super::some_if(self.layer.return_state && cx.extra.len() >= k, {
                let d = cx.dy_extra(k);
                quote!(&#d[..])
            })
        };
        let f0 = self.first_state();
        let (dhf, dcf) = (res(f0), if s == 2 { res(f0 + 1) } else { res(usize::MAX) });
        let (dhb, dcb) = (res(f0 + s), if s == 2 { res(f0 + s + 1) } else { res(usize::MAX) });
        let dy_back = super::some_if(self.merge == Merge::None, {
            let d = cx.dy_extra(1);
            quote!(&#d[..])
        });
        let (kf, kb, yf, yb) = (cx.scratch(0), cx.scratch(1), cx.scratch(4), cx.scratch(5));
        let id = |i: usize| cx.scratch.get(i).copied().unwrap_or(0);
        let (w2, w3, w6, w7) = (id(2), id(3), id(6), id(7));
        let (nw, ny) = (cx.scratch_len(2), cx.scratch_len(6));
        let mut states = TokenStream::new();
        for (work, cfg, first) in [(quote!(__wf), quote!(__cf), 1usize), (quote!(__wb), quote!(__cb), 1 + s)] {
            for (j, part) in [(0usize, quote!(0)), (1, quote!(1))].into_iter().take(s) {
                let i = first + j;
                if cx.inputs.len() > i && cx.needs_grad(i) {
                    let d = cx.dx_mut(i);
                    states.extend(quote!(::modelc::__private::kernels::recurrent::add_into(#d, #cfg.state_grads(&#work[..]).#part);));
                }
            }
        }
        let (mode, layout) = (self.merge.tokens(), self.layout(cx));
        let (_, bwd, m) = Recurrent::masked_methods(cx, self.layer.return_sequences);
        quote! {
            let (__cf, __cb) = (#fw, #bw);
            let mut __wf = ::core::mem::take(&mut __ws.scratch[#w2]);
            let mut __wb = ::core::mem::take(&mut __ws.scratch[#w3]);
            let mut __dyf = ::core::mem::take(&mut __ws.scratch[#w6]);
            let mut __dyb = ::core::mem::take(&mut __ws.scratch[#w7]);
            ::modelc::__private::kernels::bidirectional::split(#mode, #layout, #yf, #yb, &__dy[..], #dy_back, &mut __dyf[..__b * #ny], &mut __dyb[..__b * #ny]);
            __cf.#bwd(#x, #m #wf, #kf, &mut __wf[..__b * #nw], &__dyf[..__b * #ny], #dhf, #dcf, #dx, #gf);
            __cb.#bwd(#x, #m #wb, #kb, &mut __wb[..__b * #nw], &__dyb[..__b * #ny], #dhb, #dcb, #dx, #gb);
            #states
            __ws.scratch[#w2] = __wf;
            __ws.scratch[#w3] = __wb;
            __ws.scratch[#w6] = __dyf;
            __ws.scratch[#w7] = __dyb;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn without_a_merge_both_sequences_carry_the_mask_and_the_states_none() {
        let src = "struct M { input x: [5, 3];
            let (f, b, hf, hb) = Bidirectional(GRU(2, return_sequences = true, return_state = true), merge_mode = none)(Masking()(x));
            output a = f; output c = b; output d = hf; output e = hb; }";
        let typed = crate::layers::tests::typed_of(src);
        let carries: Vec<bool> = typed.model.outputs.iter().map(|o| typed.masks[o.value.0].is_some()).collect();
        assert_eq!(carries, [true, true, false, false]);
    }

    fn import(config: serde_json::Value) -> (Vec<String>, Vec<String>, usize) {
        let mut a = KerasArgs::new("Bidirectional", config.as_object().unwrap());
        Bidirectional::from_keras(&mut a);
        let results = a.results;
        let (args, problems) = a.finish();
        (args, problems, results)
    }

    fn lstm(name: &str, go_backwards: bool) -> serde_json::Value {
        json!({"class_name": "LSTM", "config": {"name": name, "units": 4, "return_state": true, "go_backwards": go_backwards}})
    }

    #[test]
    fn keras_bidirectional_nests_the_wrapped_constructor() {
        let (args, problems, results) =
            import(json!({"merge_mode": null, "layer": lstm("forward_lstm_3", false), "backward_layer": lstm("backward_lstm_3", true)}));
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(args, ["LSTM(4, return_state = true)", "merge_mode = none"]);
        assert_eq!(results, 6, "two outputs, then h and c of each direction");
        let (args, _, results) = import(json!({"merge_mode": "concat", "layer": lstm("f", true), "backward_layer": lstm("b", false)}));
        assert_eq!((args, results), (vec![String::from("LSTM(4, return_state = true, go_backwards = true)")], 5));
    }

    #[test]
    fn keras_bidirectional_with_another_backward_layer_or_a_refused_inner_argument_is_reported() {
        let (_, problems, _) = import(json!({"merge_mode": "sum", "layer": lstm("f", false), "backward_layer": lstm("b", false)}));
        assert!(problems.len() == 1 && problems[0].contains("backward_layer"), "{problems:#?}");
        let inner = json!({"class_name": "GRU", "config": {"units": 3, "dropout": 0.5}});
        let (_, problems, _) = import(json!({"layer": inner, "merge_mode": "mul"}));
        assert!(problems.len() == 1 && problems[0].contains("`layer` (GRU): `dropout` = 0.5"), "{problems:#?}");
        let (_, problems, _) = import(json!({"layer": {"class_name": "Dense", "config": {"units": 3}}}));
        assert!(problems.iter().any(|p| p.contains("not Dense")), "{problems:#?}");
    }

    #[test]
    fn keras_bidirectional_takes_zeros_at_masked_steps_whatever_its_layers_configs_say() {
        // Keras saves the value it forced (`return_sequences`); either value imports the same layer.
        for zero in [true, false] {
            let gru = |name: &str, backwards: bool| json!({"class_name": "GRU", "config": {"name": name, "units": 2, "return_sequences": true, "go_backwards": backwards, "zero_output_for_mask": zero}});
            let (args, problems, _) = import(json!({"merge_mode": "sum", "layer": gru("f", false), "backward_layer": gru("b", true)}));
            assert!(problems.is_empty(), "{problems:#?}");
            assert_eq!(args, ["GRU(2, return_sequences = true)", "merge_mode = sum"]);
        }
    }
}
