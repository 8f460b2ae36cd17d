//! `plan`: `Typed` -> `Plan`. Fixes the schedule (dead calls dropped), the flat parameter layout (offsets
//! in one buffer, Keras weight order), which concatenations need no buffer (read in parts by the
//! `Dense` layers after them), one activation buffer per other live value, scratch buffers, which
//! outputs may fuse their final activation with the loss, and (through `memory`) the inference buffers.
//! Cannot fail on a graph `infer` accepted.

use crate::hir::{CallId, DType, LayerId, Producer, ValueId};
use crate::infer::Typed;
use crate::layers::{Act, EmitCx, InitKind, LayerDef, LayerKind, Operand};
use crate::shape::Shape;
use std::collections::{BTreeMap, BTreeSet};

/// One parameter tensor in the flat buffer.
#[derive(Debug, Clone, PartialEq)]
pub struct ParamSlot {
    /// Keras path: `dense_1/kernel`.
    pub name: String,
    /// Keras layout.
    pub shape: Vec<usize>,
    /// First element in the flat buffer.
    pub offset: usize,
    /// Element count.
    pub len: usize,
    /// Initializer.
    pub init: InitKind,
    /// Updated by the optimizer.
    pub trainable: bool,
    /// Declared non-trainable by its layer: a statistic the forward pass maintains.
    pub statistic: bool,
    /// Its weight regularizer.
    pub regularizer: Option<crate::layers::weights::Penalty>,
    /// Its constraint.
    pub constraint: Option<crate::layers::weights::ConstraintSpec>,
}

/// One scheduled layer call with everything its emitters need.
#[derive(Debug, Clone)]
pub struct Step {
    /// The call.
    pub call: CallId,
    /// The layer.
    pub layer: LayerId,
    /// Operands, result, scratch and fusion facts.
    pub cx: StepCx,
}

/// The emit context of a step (a plain-data mirror of `layers::EmitCx`).
#[derive(Debug, Clone)]
pub struct StepCx {
    /// Operands.
    pub inputs: Vec<Operand>,
    /// Result (the first).
    pub output: Operand,
    /// Further results of a layer that returns several tensors.
    pub extra: Vec<Operand>,
    /// How many of `inputs` are positional.
    pub positional: usize,
    /// Scratch buffer indices.
    pub scratch: Vec<usize>,
    /// Per-sample length of each scratch buffer.
    pub scratch_len: Vec<usize>,
    /// The fusable model output this step produces, if any.
    pub fused_output: Option<usize>,
    /// Whether the layer is trainable (not frozen).
    pub trainable: bool,
    /// Per operand: whether this step's backward is the first writer of its gradient.
    pub dx_set: Vec<bool>,
    /// Whether this step's backward is the first writer of the layer's parameter gradients.
    pub params_set: bool,
    /// The mask buffer each operand carries (docs/masks.md), indexed like `inputs`.
    pub masks: Vec<Option<Operand>>,
    /// The mask this step writes, and its rule: the framework computes it from `masks` (`MaskRule::Any`:
    /// their OR; `MaskRule::Concat`: joined along the steps), or the layer writes it (`MaskRule::Produce`).
    pub mask_out: Option<(Operand, crate::layers::MaskRule)>,
}

impl StepCx {
    /// The layer-facing context.
    pub fn emit_cx(&self, n_params: usize) -> EmitCx {
        EmitCx {
            inputs: self.inputs.clone(),
            output: self.output.clone(),
            extra: self.extra.clone(),
            positional: self.positional,
            n_params,
            scratch: self.scratch.clone(),
            scratch_len: self.scratch_len.clone(),
            fused_output: self.fused_output,
            trainable: self.trainable,
            inference: false,
            dx_set: self.dx_set.clone(),
            params_set: self.params_set,
            masks: self.masks.clone(),
            mask_out: self.mask_out.as_ref().map(|(o, _)| o.clone()),
        }
    }
}

/// A model input as the generated API sees it.
#[derive(Debug, Clone)]
pub struct PlanInput {
    /// Name.
    pub name: proc_macro2::Ident,
    /// Per-sample shape.
    pub shape: Shape,
    /// Element type.
    pub dtype: DType,
    /// Buffer holding it.
    pub buf: usize,
}

/// A model output as the generated API sees it.
#[derive(Debug, Clone)]
pub struct PlanOutput {
    /// Name.
    pub name: proc_macro2::Ident,
    /// Per-sample shape.
    pub shape: Shape,
    /// Buffer holding it.
    pub buf: usize,
    /// The activation that may be fused with the loss (`Linear` when none).
    pub fusable: Act,
    /// The buffer of the mask the output carries (its loss weighs each step by it), if any.
    pub mask: Option<usize>,
}

/// Everything `emit` needs, decided.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The typed model it came from.
    pub typed: Typed,
    /// Every live call in execution order, the model's graph as written (the summary and DOT show
    /// these). A call elided by a fusion has no step of its own.
    pub schedule: Vec<CallId>,
    /// Per-sample length of each activation buffer.
    pub buffers: Vec<usize>,
    /// Buffer of each value (`None` for dead or poisoned values).
    pub value_buf: Vec<Option<usize>>,
    /// Per-sample length of each scratch buffer.
    pub scratch: Vec<usize>,
    /// All parameters in flat-buffer order.
    pub params: Vec<ParamSlot>,
    /// For each layer, the range of `params` it owns.
    pub layer_params: Vec<std::ops::Range<usize>>,
    /// Total parameter elements.
    pub param_count: usize,
    /// Scheduled steps.
    pub steps: Vec<Step>,
    /// Inputs.
    pub inputs: Vec<PlanInput>,
    /// Outputs.
    pub outputs: Vec<PlanOutput>,
    /// The inference buffers, shared by liveness (`memory`).
    pub inference: crate::memory::MemoryPlan,
    /// The activation-gradient buffers backward needs zeroed first: those whose first writer adds.
    pub grad_zero: Vec<usize>,
    /// The parameter-gradient ranges of the flat buffer backward needs zeroed first.
    pub param_grad_zero: Vec<std::ops::Range<usize>>,
    /// The buffers holding masks (no gradient flows through them).
    pub mask_bufs: Vec<usize>,
}

impl Plan {
    /// Whether step `k`'s backward runs: it has parameters or an operand that needs a gradient.
    pub fn runs_backward(&self, step: &Step) -> bool {
        let has_params = self.layer_params.get(step.layer.0).is_some_and(|r| !r.is_empty());
        has_params || step.cx.inputs.iter().any(|o| o.needs_grad)
    }
}

/// Plans a model that `infer` accepted.
pub fn plan(typed: Typed) -> Plan {
    let m = &typed.model;
    let dead: BTreeSet<CallId> = typed.graph.dead_calls().into_iter().collect();
    let live: Vec<CallId> = typed.schedule.iter().copied().filter(|c| !dead.contains(c)).collect();
    let parts = concat_parts(&typed, &live);

    // Parameters: layers in creation order, each layer's weights in Keras order.
    let mut params = Vec::new();
    let mut layer_params = Vec::new();
    let mut offset = 0usize;
    for (l, layer) in m.layers.iter().enumerate() {
        let start = params.len();
        if let (Some(kind), Some(Some(ins))) = (&layer.kind, typed.built.get(l)) {
            for p in kind.params(ins) {
                let len = p.shape.iter().product();
                params.push(ParamSlot {
                    name: match kind.param_scope() {
                        Some(scope) => format!("{}/{scope}/{}", layer.name, p.suffix),
                        None => format!("{}/{}", layer.name, p.suffix),
                    },
                    shape: p.shape,
                    offset,
                    len,
                    init: p.init,
                    trainable: p.trainable && layer.trainable,
                    statistic: !p.trainable,
                    regularizer: p.regularizer,
                    constraint: p.constraint,
                });
                offset += len;
            }
        }
        layer_params.push(start..params.len());
    }

    // Activation buffers: one per live value (inputs and call results).
    let mut buffers = Vec::new();
    let mut value_buf = vec![None; m.values.len()];
    let mut assign = |v: ValueId, shape: &Shape, buffers: &mut Vec<usize>| {
        if let Some(slot) = value_buf.get_mut(v.0) {
            if slot.is_none() {
                *slot = Some(buffers.len());
                buffers.push(shape.numel());
            }
        }
    };
    for input in &m.inputs {
        assign(input.value, &Shape(input.dims.clone()), &mut buffers);
    }
    for c in &live {
        if let Some(call) = m.calls.get(c.0) {
            if parts.contains_key(&call.output) {
                continue;
            }
            for v in call.results() {
                if let Some(Some(s)) = typed.shapes.get(v.0) {
                    assign(v, s, &mut buffers);
                }
            }
            if let Some(Some(made)) = typed.made_masks.get(c.0) {
                if let Some(Some(s)) = typed.shapes.get(made.value.0) {
                    assign(made.value, s, &mut buffers);
                }
            }
        }
    }
    let mask_bufs: Vec<usize> =
        typed.made_masks.iter().flatten().filter_map(|made| value_buf.get(made.value.0).copied().flatten()).collect();

    let shape_of = |v: ValueId| typed.shapes.get(v.0).cloned().flatten().unwrap_or(Shape(Vec::new()));
    let buf_of = |v: ValueId| value_buf.get(v.0).copied().flatten().unwrap_or(0);
    let input_of = |v: ValueId| match m.values.get(v.0).map(|x| x.producer) {
        Some(Producer::Input(i)) => Some(i),
        _ => None,
    };

    // Outputs and loss fusion: an output may fuse its final activation when nothing else reads it.
    let mut outputs = Vec::new();
    for out in &m.outputs {
        let readers = m.calls.iter().enumerate().filter(|(i, c)| !dead.contains(&CallId(*i)) && c.inputs.contains(&out.value)).count();
        let shared = m.outputs.iter().filter(|o| o.value == out.value).count() > 1;
        // A layer with an activity regularizer needs the gradient with respect to its output: no fusion.
        let act = match m.values.get(out.value.0).map(|v| v.producer) {
            Some(Producer::Call(c)) => m
                .calls
                .get(c.0)
                .filter(|call| m.layers.get(call.layer.0).is_some_and(|l| l.activity.is_none()))
                .and_then(|call| m.call_kind(call))
                .and_then(|k| k.output_activation()),
            _ => None,
        };
        let fusable = match act {
            Some(a) if a.fusable() && readers == 0 && !shared => a,
            _ => Act::Linear,
        };
        let mask = typed.masks.get(out.value.0).copied().flatten().map(buf_of);
        outputs.push(PlanOutput { name: out.name.clone(), shape: shape_of(out.value), buf: buf_of(out.value), fusable, mask });
    }

    // Steps.
    let mut scratch = Vec::new();
    let mut steps = Vec::new();
    for &c in &live {
        let Some(call) = m.calls.get(c.0) else { continue };
        if parts.contains_key(&call.output) {
            continue;
        }
        let Some(kind) = m.call_kind(call) else { continue };
        let inputs: Vec<Operand> = call
            .inputs
            .iter()
            .flat_map(|v| parts.get(v).cloned().unwrap_or_else(|| vec![*v]))
            .map(|v| Operand { buf: buf_of(v), shape: shape_of(v), needs_grad: input_of(v).is_none(), input: input_of(v) })
            .collect();
        let mask_operand = |m: ValueId| Operand { buf: buf_of(m), shape: shape_of(m), needs_grad: false, input: None };
        let masks: Vec<Option<Operand>> = call
            .inputs
            .iter()
            .flat_map(|v| match parts.get(v) {
                Some(p) => vec![None; p.len()],
                None => vec![typed.masks.get(v.0).copied().flatten().map(mask_operand)],
            })
            .collect();
        let mask_out = typed.made_masks.get(c.0).copied().flatten().map(|made| (mask_operand(made.value), made.rule));
        let output = Operand { buf: buf_of(call.output), shape: shape_of(call.output), needs_grad: true, input: None };
        let extra: Vec<Operand> =
            call.extra.iter().map(|&v| Operand { buf: buf_of(v), shape: shape_of(v), needs_grad: true, input: None }).collect();
        // Concatenation parts expand operands in place, so positional operands are counted after expansion.
        let positional = call.inputs.iter().take(call.positional).map(|v| parts.get(v).map_or(1, Vec::len)).sum();
        let in_shapes: Vec<Shape> = inputs.iter().map(|o| o.shape.clone()).collect();
        let mut scratch_ids = Vec::new();
        let scratch_len = kind.scratch(&in_shapes, &output.shape);
        for &len in &scratch_len {
            scratch_ids.push(scratch.len());
            scratch.push(len);
        }
        let fused_output =
            m.outputs.iter().position(|o| o.value == call.output).filter(|o| outputs.get(*o).is_some_and(|x| x.fusable != Act::Linear));
        let trainable = m.layers.get(call.layer.0).is_some_and(|l| l.trainable);
        steps.push(Step {
            call: c,
            layer: call.layer,
            cx: StepCx {
                inputs,
                output,
                extra,
                positional,
                scratch: scratch_ids,
                scratch_len,
                fused_output,
                trainable,
                dx_set: Vec::new(),
                params_set: false,
                masks,
                mask_out,
            },
        });
    }

    let inputs = m
        .inputs
        .iter()
        .map(|i| PlanInput { name: i.name.clone(), shape: Shape(i.dims.clone()), dtype: i.dtype, buf: buf_of(i.value) })
        .collect();
    let mut plan = Plan {
        buffers,
        value_buf,
        scratch,
        param_count: offset,
        params,
        layer_params,
        steps,
        inputs,
        outputs,
        schedule: live,
        typed,
        inference: crate::memory::MemoryPlan::default(),
        grad_zero: Vec::new(),
        param_grad_zero: Vec::new(),
        mask_bufs,
    };
    plan.inference = crate::memory::plan(&plan);
    first_writers(&mut plan);
    plan
}

/// Marks each gradient's first writer in backward (steps in reverse order) that may write `=`
/// (`LayerDef::backward_sets_first_writes`), and lists what must be zeroed instead: the activation
/// gradients and parameter ranges whose first writer adds, or that nothing writes. A model output's
/// gradient is seeded by the loss before any step, so every step adds onto it; an operand that appears
/// twice in one call is set by its first occurrence and added to by the second.
fn first_writers(plan: &mut Plan) {
    let mut written = vec![false; plan.buffers.len()];
    let mut set = vec![false; plan.buffers.len()];
    for o in &plan.outputs {
        if let Some(w) = written.get_mut(o.buf) {
            *w = true;
        }
    }
    let mut layer_written = vec![false; plan.layer_params.len()];
    let mut layer_set = vec![false; plan.layer_params.len()];
    for k in (0..plan.steps.len()).rev() {
        let Some(step) = plan.steps.get(k) else { continue };
        if !plan.runs_backward(step) {
            continue;
        }
        let sets = plan.typed.model.call_kind_of(step.call).is_some_and(|kind| kind.backward_sets_first_writes());
        let mut dx_set = Vec::with_capacity(step.cx.inputs.len());
        for op in &step.cx.inputs {
            let first = op.needs_grad && written.get(op.buf) == Some(&false);
            if let (true, Some(w), Some(s)) = (first, written.get_mut(op.buf), set.get_mut(op.buf)) {
                (*w, *s) = (true, sets);
            }
            dx_set.push(first && sets);
        }
        let layer = step.layer.0;
        let has_params = plan.layer_params.get(layer).is_some_and(|r| !r.is_empty());
        let params_first = has_params && layer_written.get(layer) == Some(&false);
        if let (true, Some(w), Some(s)) = (params_first, layer_written.get_mut(layer), layer_set.get_mut(layer)) {
            (*w, *s) = (true, sets);
        }
        if let Some(step) = plan.steps.get_mut(k) {
            step.cx.dx_set = dx_set;
            step.cx.params_set = params_first && sets;
        }
    }
    // Model inputs get no gradient: nothing writes or reads theirs.
    let inputs: Vec<usize> = plan.inputs.iter().map(|i| i.buf).collect();
    plan.grad_zero =
        (0..plan.buffers.len()).filter(|b| set.get(*b) == Some(&false) && !inputs.contains(b) && !plan.mask_bufs.contains(b)).collect();
    let slots = &plan.params;
    plan.param_grad_zero = plan
        .layer_params
        .iter()
        .zip(&layer_set)
        .filter(|(r, &s)| !s && !r.is_empty())
        .filter_map(|(r, _)| Some(slots.get(r.start)?.offset..slots.get(r.end - 1).map(|p| p.offset + p.len)?))
        .collect();
}

/// Concatenations along the last axis whose result only `Dense` layers read, and which is no model
/// output: each maps to its operands. Such a result is never built: each reading `Dense` takes the
/// operands as row blocks of its kernel (x·W = Σ xᵢ·Wᵢ over the blocks of W) and hands each its
/// gradient directly, so neither pass copies.
fn concat_parts(typed: &Typed, live: &[CallId]) -> BTreeMap<ValueId, Vec<ValueId>> {
    let m = &typed.model;
    let mut parts = BTreeMap::new();
    for c in live {
        let Some(call) = m.calls.get(c.0) else { continue };
        let Some(LayerKind::Concatenate(concat)) = m.call_kind(call) else { continue };
        // An activity regularizer reads the concatenation's values: it needs its buffer.
        if m.layers.get(call.layer.0).is_some_and(|l| l.activity.is_some()) {
            continue;
        }
        // A concatenation that writes a mask (the OR of its operands') runs.
        if typed.made_masks.get(c.0).is_some_and(Option::is_some) {
            continue;
        }
        let Some(Some(shape)) = typed.shapes.get(call.output.0) else { continue };
        if concat.sample_axis(shape.rank()) != Some(shape.rank().saturating_sub(1)) || m.outputs.iter().any(|o| o.value == call.output) {
            continue;
        }
        let mut readers = live.iter().filter_map(|r| m.calls.get(r.0)).filter(|r| r.inputs.contains(&call.output)).peekable();
        if readers.peek().is_some() && readers.all(|r| matches!(m.call_kind(r), Some(LayerKind::Dense(_)))) {
            parts.insert(call.output, call.inputs.clone());
        }
    }
    parts
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn plan_of(src: &str) -> Plan {
        plan(crate::layers::tests::typed_of(src))
    }

    fn kinds(p: &Plan) -> Vec<&'static str> {
        p.steps.iter().map(|s| p.typed.model.layers[s.layer.0].keras_type).collect()
    }

    /// (dx_set, params_set) of each step, in schedule order.
    fn writes(p: &Plan) -> Vec<(Vec<bool>, bool)> {
        p.steps.iter().map(|s| (s.cx.dx_set.clone(), s.cx.params_set)).collect()
    }

    #[test]
    fn each_gradient_s_first_writer_sets_it_and_only_the_seeded_output_is_zeroed() {
        // M4's graph. Backward runs Dense3, Add, Dense2, Dense1.
        let p = plan_of(
            "struct M { input x: [6]; let h1 = Dense(5)(x); let h2 = Dense(5)(h1); let s = Add()([h1, h2]); \
             output y = Dense(3, activation = softmax)(s); }",
        );
        assert_eq!(kinds(&p), ["Dense", "Dense", "Add", "Dense"]);
        // Buffers: x 0, h1 1, h2 2, s 3, y 4.
        assert_eq!(
            writes(&p),
            [
                (vec![false], true),       // Dense1: x gets no gradient; first (only) writer of its kernel
                (vec![false], true),       // Dense2: h1's gradient came first from Add, so it adds
                (vec![true, true], false), // Add sets h1's and h2's
                (vec![true], true),        // Dense3 sets s's
            ]
        );
        // Only the output y, which the loss seeds; not the input x.
        assert_eq!(p.grad_zero, [4]);
        assert!(p.param_grad_zero.is_empty());
    }

    #[test]
    fn a_shared_layer_s_first_call_in_backward_sets_its_gradients_and_a_repeated_operand_is_added() {
        let p = plan_of(
            "struct M { input a: [4]; input b: [4]; layer shared = Dense(3); let u = shared(a); let v = shared(b); \
             let c = Concatenate()([u, u]); let m = Average()([c, Dense(6)(v)]); output y = Dense(1)(m); }",
        );
        let w = writes(&p);
        let dense: Vec<usize> = (0..p.steps.len()).filter(|&k| kinds(&p)[k] == "Dense").collect();
        // The shared layer's second call (b) runs first in backward and sets; its first call (a) adds.
        let shared: Vec<usize> = dense.iter().copied().filter(|&k| p.steps[k].layer == p.steps[dense[0]].layer).collect();
        assert_eq!(shared.len(), 2);
        assert_eq!((w[shared[0]].1, w[shared[1]].1), (false, true));
        // The Concatenate of [u, u] is copied (Average reads it): its backward cannot set, so u is zeroed.
        assert!(p.grad_zero.contains(&p.steps[shared[0]].cx.output.buf));
        // Layers that cannot set (none with parameters here) leave no parameter range to zero.
        assert!(p.param_grad_zero.is_empty());

        // A Dense reading one value twice (an elided concatenation): the first part sets, the second adds.
        let p = plan_of("struct M { input a: [4]; let u = Dense(3)(a); let c = Concatenate()([u, u]); output y = Dense(2)(c); }");
        assert_eq!(writes(&p)[1], (vec![true, false], true));
        assert!(!p.grad_zero.contains(&p.steps[0].cx.output.buf));
    }

    #[test]
    fn parameters_of_layers_that_cannot_set_are_zeroed_and_pooling_and_flatten_set() {
        let p = plan_of("struct M { input x: [4, 4, 2]; let c = Conv2D(3, 3, padding = \"same\")(x); let g = GlobalAveragePooling2D()(c); output y = Dense(2)(g); }");
        let conv = &p.params[p.layer_params[p.steps[0].layer.0].clone()];
        let (start, end) = (conv[0].offset, conv.last().map(|s| s.offset + s.len).unwrap());
        assert_eq!((p.param_grad_zero.len(), p.param_grad_zero.first()), (1, Some(&(start..end))));
        // The convolution's output gradient is set by the pooling's backward, so it is not zeroed;
        // likewise by a Flatten's.
        assert!(!p.grad_zero.contains(&p.steps[0].cx.output.buf));
        let p = plan_of("struct M { input x: [4, 4, 2]; let c = Conv2D(3, 3)(x); let f = Flatten()(c); output y = Dense(2)(f); }");
        assert_eq!(writes(&p)[1], (vec![true], false));
        assert!(!p.grad_zero.contains(&p.steps[0].cx.output.buf));
    }

    #[test]
    fn a_mask_gets_a_buffer_without_gradient_and_lives_as_long_as_its_readers() {
        // Masking makes the mask; Dense passes it on; the LSTM reads it; the pooling and the output's
        // loss read the LSTM's (the same mask); the merge of two different masks makes a new one.
        let p = plan_of(
            "struct M { input x: [6, 3]; input t: [6] as i32; let m = Masking()(x); let d = Dense(3)(m); \
             let s = LSTM(4, return_sequences = true)(d); let e = Embedding(5, 3, mask_zero = true)(t); \
             let a = Add()([d, e]); output y = GlobalAveragePooling1D()(a); output z = s; }",
        );
        assert_eq!(kinds(&p), ["Masking", "Dense", "LSTM", "Embedding", "Add", "GlobalAveragePooling1D"]);
        let (masking, dense, lstm, embed, add, pool) = (&p.steps[0], &p.steps[1], &p.steps[2], &p.steps[3], &p.steps[4], &p.steps[5]);
        let mx = masking.cx.mask_out.as_ref().map(|(o, any)| (o.buf, o.shape.0.clone(), *any)).unwrap();
        assert_eq!((mx.1, mx.2), (vec![6], crate::layers::MaskRule::Produce));
        assert!(dense.cx.mask_out.is_none() && lstm.cx.mask_out.is_none(), "passing a mask on makes none");
        assert_eq!(lstm.cx.masks[0].as_ref().map(|o| o.buf), Some(mx.0));
        let me = embed.cx.mask_out.as_ref().map(|(o, _)| o.buf).unwrap();
        let (ma, any) = add.cx.mask_out.as_ref().map(|(o, any)| (o.buf, *any)).unwrap();
        assert_eq!(any, crate::layers::MaskRule::Any, "the merge ORs its operands' masks");
        assert_eq!(add.cx.masks.iter().map(|m| m.as_ref().map(|o| o.buf)).collect::<Vec<_>>(), [Some(mx.0), Some(me)]);
        assert_eq!(pool.cx.masks[0].as_ref().map(|o| o.buf), Some(ma));
        // The output `z` carries the Masking's mask, for its loss; `y` (pooled) none.
        assert_eq!((p.outputs[0].mask, p.outputs[1].mask), (None, Some(mx.0)));
        // No gradient is zeroed for a mask; the inference plan keeps the Masking's mask to the end (an
        // output's loss reads it) and the merged one from the Add to the pooling.
        assert!(!p.grad_zero.iter().any(|b| [mx.0, me, ma].contains(b)));
        let iv = |b: usize| p.inference.intervals[b].unwrap();
        assert_eq!((iv(mx.0).start, iv(mx.0).end), (1, p.steps.len() + 1));
        assert_eq!((iv(ma).start, iv(ma).end), (5, 6));
        assert_eq!((iv(me).start, iv(me).end), (4, 5));
    }

    #[test]
    fn a_concatenation_only_dense_layers_read_is_elided_and_read_in_parts() {
        let p = plan_of(
            "struct M { input a: [8]; input b: [4]; let l = Dense(16)(a); let c = Concatenate()([l, b]); \
             output y = Dense(1)(c); output z = Dense(2)(c); }",
        );
        assert_eq!(kinds(&p), ["Dense", "Dense", "Dense"]);
        for step in &p.steps[1..] {
            let parts: Vec<(usize, bool)> = step.cx.inputs.iter().map(|o| (o.shape.last(), o.needs_grad)).collect();
            assert_eq!(parts, [(16, true), (4, false)], "the Dense reads `l` and the input `b`");
        }
        // No buffer for the concatenation: inputs a, b and the three Dense results.
        assert_eq!(p.buffers, [8, 4, 16, 1, 2]);
        // The graph as written: the summary and DOT still show the Concatenate layer.
        assert_eq!(p.schedule.len(), 4);
        assert!(crate::meta::summary(&p).contains("concatenate (Concatenate)"));
        assert!(crate::meta::dot(&p).contains("Concatenate|(None, 20)"));
    }

    #[test]
    fn a_concatenation_is_built_when_anything_but_dense_reads_it_or_it_is_an_output_or_not_on_the_last_axis() {
        let other_reader = "struct M { input a: [4]; input b: [4]; let c = Concatenate()([a, b]); \
                            let d = Dense(8)(c); output y = Add()([c, d]); }";
        let output = "struct M { input a: [4]; input b: [4]; let c = Concatenate()([a, b]); output y = c; output z = Dense(2)(c); }";
        let first_axis = "struct M { input a: [2, 4]; input b: [3, 4]; output y = Dense(2)(Concatenate(axis = 1)([a, b])); }";
        for src in [other_reader, output, first_axis] {
            let p = plan_of(src);
            assert!(kinds(&p).contains(&"Concatenate"), "{src}");
            let dense = p.steps.iter().filter(|s| p.typed.model.layers[s.layer.0].keras_type == "Dense");
            assert!(dense.clone().count() > 0 && dense.clone().all(|s| s.cx.inputs.len() == 1), "{src}");
        }
    }
}
