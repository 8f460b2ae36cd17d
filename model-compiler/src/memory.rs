//! `memory`: `Plan` -> `MemoryPlan`. The inference memory plan: each activation buffer's live interval on
//! the schedule, buffers shared by interval colouring (greedy best fit by size), and scratch slots shared
//! by every step (in inference a step's scratch is dead once the step returns). Training keeps one buffer
//! per value, because backward reads them all; only the inference forward (`forward_inference`) uses this.

use crate::layers::LayerDef;
use crate::plan::{Plan, StepCx};

/// A lifetime on the schedule's clock: time 0 is input staging, step `k` runs at time `k + 1`, time
/// `n + 1` is the caller reading the outputs. Both ends are inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Interval {
    /// When the buffer is written (staged or produced).
    pub start: usize,
    /// The last time it is read.
    pub end: usize,
}

impl Interval {
    /// Whether both are live at some common time.
    pub fn overlaps(&self, other: &Interval) -> bool {
        self.start <= other.end && other.start <= self.end
    }
}

/// Buffers given to items by [`colour`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Colouring {
    /// The buffer of each item, in item order.
    pub colour: Vec<usize>,
    /// Per-sample length of each buffer: the largest item it holds.
    pub sizes: Vec<usize>,
}

/// Greedy interval colouring of items `(per-sample length, interval)`. Items are taken in order of
/// start (larger first on ties); the buffers whose items have all ended are free, and an item takes the
/// smallest free buffer that holds it, else the largest free one (grown to fit), else a new buffer.
/// Two items whose intervals overlap never share a buffer.
pub fn colour(items: &[(usize, Interval)]) -> Colouring {
    let mut order: Vec<usize> = (0..items.len()).collect();
    order.sort_by_key(|&i| items.get(i).map(|&(len, iv)| (iv.start, std::cmp::Reverse(len), i)));
    let mut out = Colouring { colour: vec![0; items.len()], sizes: Vec::new() };
    // The last time each buffer is read by an item given to it so far.
    let mut busy_until: Vec<usize> = Vec::new();
    for i in order {
        let Some(&(len, iv)) = items.get(i) else { continue };
        let free = || (0..out.sizes.len()).filter(|&b| busy_until.get(b).is_some_and(|&t| t < iv.start));
        let size = |b: usize| out.sizes.get(b).copied().unwrap_or(0);
        let fitting = free().filter(|&b| size(b) >= len).min_by_key(|&b| (size(b), b));
        let largest = free().max_by_key(|&b| (size(b), std::cmp::Reverse(b)));
        let b = match fitting.or(largest) {
            Some(b) => b,
            None => {
                out.sizes.push(0);
                busy_until.push(0);
                out.sizes.len() - 1
            }
        };
        if let (Some(s), Some(t), Some(c)) = (out.sizes.get_mut(b), busy_until.get_mut(b), out.colour.get_mut(i)) {
            *s = (*s).max(len);
            *t = iv.end;
            *c = b;
        }
    }
    out
}

/// Where every activation and scratch buffer of the inference forward lives.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryPlan {
    /// Per-sample length of each inference activation buffer.
    pub buffers: Vec<usize>,
    /// For each training buffer (`Plan::buffers`), the inference buffer that holds its value (`None`
    /// when nothing stages, produces or reads it).
    pub buffer_of: Vec<Option<usize>>,
    /// The live interval of each training buffer, when it has one.
    pub intervals: Vec<Option<Interval>>,
    /// Per-sample length of each inference scratch slot.
    pub scratch: Vec<usize>,
    /// For each step and each of its scratch buffers, the slot it uses in inference (`None`: only
    /// backward uses it, so inference gives it no memory).
    pub step_scratch: Vec<Vec<Option<usize>>>,
    /// The inference buffer staging each model input.
    pub inputs: Vec<usize>,
    /// The inference buffer holding each model output.
    pub outputs: Vec<usize>,
    /// The most per-sample elements live at one time (activations plus the running step's scratch):
    /// the floor under any assignment; `total()` is what the colouring reaches.
    pub live_peak: usize,
}

impl MemoryPlan {
    /// Per-sample elements of all inference buffers and scratch slots.
    pub fn total(&self) -> usize {
        self.buffers.iter().sum::<usize>() + self.scratch.iter().sum::<usize>()
    }

    /// Step `k`'s emit context with its buffers and scratch remapped to the inference plan. A scratch
    /// buffer only backward uses gets index `usize::MAX`, which the forward never names.
    pub fn step_cx(&self, k: usize, cx: &StepCx) -> StepCx {
        let map = |buf: usize| self.buffer_of.get(buf).copied().flatten().unwrap_or(0);
        let mut out = cx.clone();
        for op in &mut out.inputs {
            op.buf = map(op.buf);
        }
        out.output.buf = map(out.output.buf);
        for r in &mut out.extra {
            r.buf = map(r.buf);
        }
        for m in out.masks.iter_mut().flatten() {
            m.buf = map(m.buf);
        }
        if let Some((m, _)) = &mut out.mask_out {
            m.buf = map(m.buf);
        }
        let slots = self.step_scratch.get(k);
        for (j, s) in out.scratch.iter_mut().enumerate() {
            *s = slots.and_then(|v| v.get(j)).copied().flatten().unwrap_or(usize::MAX);
        }
        out
    }
}

/// Plans the inference buffers of `plan`.
pub fn plan(plan: &Plan) -> MemoryPlan {
    let n = plan.steps.len();
    let end_of_run = n + 1;
    let mut intervals: Vec<Option<Interval>> = vec![None; plan.buffers.len()];
    let mut touch = |buf: usize, start: Option<usize>, read: usize| {
        if let Some(slot) = intervals.get_mut(buf) {
            let iv = slot.get_or_insert(Interval { start: start.unwrap_or(read), end: read });
            if let Some(s) = start {
                iv.start = iv.start.min(s);
            }
            iv.end = iv.end.max(read);
        }
    };
    for input in &plan.inputs {
        touch(input.buf, Some(0), 0);
    }
    for (k, step) in plan.steps.iter().enumerate() {
        let t = k + 1;
        touch(step.cx.output.buf, Some(t), t);
        for r in &step.cx.extra {
            touch(r.buf, Some(t), t);
        }
        if let Some((m, _)) = &step.cx.mask_out {
            touch(m.buf, Some(t), t);
        }
        for op in step.cx.inputs.iter().chain(step.cx.masks.iter().flatten()) {
            touch(op.buf, None, t);
        }
    }
    for output in &plan.outputs {
        touch(output.buf, None, end_of_run);
        if let Some(m) = output.mask {
            touch(m, None, end_of_run);
        }
    }

    // Activations: colour the buffers that have an interval.
    let live: Vec<usize> = (0..intervals.len()).filter(|&b| intervals.get(b).is_some_and(Option::is_some)).collect();
    let items: Vec<(usize, Interval)> =
        live.iter().filter_map(|&b| Some((plan.buffers.get(b).copied().unwrap_or(0), intervals.get(b).copied().flatten()?))).collect();
    let colouring = colour(&items);
    let mut buffer_of = vec![None; plan.buffers.len()];
    for (&b, &c) in live.iter().zip(&colouring.colour) {
        if let Some(slot) = buffer_of.get_mut(b) {
            *slot = Some(c);
        }
    }

    // Scratch: a step's forward scratch buffers, largest first, take slots 0, 1, ...; each slot is as
    // long as the largest buffer any step puts in it.
    let mut scratch: Vec<usize> = Vec::new();
    let mut step_scratch = Vec::with_capacity(n);
    let mut step_scratch_total = Vec::with_capacity(n);
    for step in &plan.steps {
        let backward_only = plan.typed.model.call_kind_of(step.call).map(LayerDef::backward_only_scratch).unwrap_or_default();
        let mut used: Vec<(usize, usize)> = step
            .cx
            .scratch
            .iter()
            .enumerate()
            .filter(|(j, _)| !backward_only.contains(j))
            .map(|(j, &s)| (j, plan.scratch.get(s).copied().unwrap_or(0)))
            .collect();
        used.sort_by_key(|&(j, len)| (std::cmp::Reverse(len), j));
        let mut slots = vec![None; step.cx.scratch.len()];
        for (slot, &(j, len)) in used.iter().enumerate() {
            if scratch.len() <= slot {
                scratch.push(0);
            }
            if let (Some(s), Some(to)) = (scratch.get_mut(slot), slots.get_mut(j)) {
                *s = (*s).max(len);
                *to = Some(slot);
            }
        }
        step_scratch_total.push(used.iter().map(|&(_, len)| len).sum::<usize>());
        step_scratch.push(slots);
    }

    let live_peak = (0..=end_of_run)
        .map(|t| {
            let acts: usize = items.iter().filter(|(_, iv)| iv.start <= t && t <= iv.end).map(|(len, _)| len).sum();
            let scr = t.checked_sub(1).and_then(|k| step_scratch_total.get(k)).copied().unwrap_or(0);
            acts + scr
        })
        .max()
        .unwrap_or(0);
    let of = |buf: usize| buffer_of.get(buf).copied().flatten().unwrap_or(0);
    MemoryPlan {
        inputs: plan.inputs.iter().map(|i| of(i.buf)).collect(),
        outputs: plan.outputs.iter().map(|o| of(o.buf)).collect(),
        buffers: colouring.sizes,
        buffer_of,
        intervals,
        scratch,
        step_scratch,
        live_peak,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
pub(crate) mod tests {
    use super::*;

    fn iv(start: usize, end: usize) -> Interval {
        Interval { start, end }
    }

    /// Runs `src` (one model) through the pipeline up to the plan.
    pub(crate) fn plan_of(src: &str) -> Plan {
        crate::plan::plan(crate::layers::tests::typed_of(src))
    }

    /// Every invariant of an inference plan: overlapping live intervals never share a buffer, each buffer
    /// holds its values, no step writes into a buffer it reads, steps use distinct scratch slots that hold
    /// their scratch, outputs are in their own buffers at the end.
    fn check(p: &Plan) {
        let mem = &p.inference;
        let live: Vec<usize> = (0..p.buffers.len()).filter(|&b| mem.intervals[b].is_some()).collect();
        for &a in &live {
            let ba = mem.buffer_of[a].expect("a live buffer has an inference buffer");
            assert!(mem.buffers[ba] >= p.buffers[a], "buffer {ba} too small for {a}");
            for &b in &live {
                if a != b && mem.intervals[a].unwrap().overlaps(&mem.intervals[b].unwrap()) {
                    assert_ne!(ba, mem.buffer_of[b].unwrap(), "values {a} and {b} are live together");
                }
            }
        }
        for (k, step) in p.steps.iter().enumerate() {
            let cx = mem.step_cx(k, &step.cx);
            for op in &cx.inputs {
                assert_ne!(op.buf, cx.output.buf, "step {k} writes into its operand");
            }
            let used: Vec<usize> = cx.scratch.iter().copied().filter(|&s| s != usize::MAX).collect();
            for (i, &s) in used.iter().enumerate() {
                assert!(!used[..i].contains(&s), "step {k} uses slot {s} twice");
            }
            for (&train, &slot) in step.cx.scratch.iter().zip(&cx.scratch) {
                if slot != usize::MAX {
                    assert!(mem.scratch[slot] >= p.scratch[train], "slot {slot} too small at step {k}");
                }
            }
        }
        let n = p.steps.len();
        for (o, out) in p.outputs.iter().enumerate() {
            assert_eq!(mem.intervals[out.buf].unwrap().end, n + 1, "output {o} lives to the end");
            assert_eq!(mem.outputs[o], mem.buffer_of[out.buf].unwrap());
        }
        assert!(mem.total() >= mem.live_peak);
    }

    #[test]
    fn overlapping_intervals_get_different_buffers() {
        let c = colour(&[(8, iv(0, 2)), (8, iv(1, 3)), (8, iv(2, 2))]);
        assert_eq!(c.sizes.len(), 3);
        assert_ne!(c.colour[0], c.colour[1]);
        assert_ne!(c.colour[1], c.colour[2]);
        assert_ne!(c.colour[0], c.colour[2]);
    }

    #[test]
    fn disjoint_intervals_reuse_a_buffer_grown_to_the_largest() {
        // A chain: each value is read by the next step only.
        let c = colour(&[(4, iv(0, 1)), (16, iv(1, 2)), (8, iv(2, 3)), (2, iv(3, 4))]);
        assert_eq!(c.sizes.len(), 2, "{c:?}");
        assert_eq!(c.colour[0], c.colour[2]);
        assert_eq!(c.colour[1], c.colour[3]);
        assert_eq!(c.sizes.iter().sum::<usize>(), 16 + 8);
    }

    #[test]
    fn best_fit_takes_the_smallest_free_buffer_that_holds_the_value() {
        // Two buffers (32 and 8) free at time 3; a value of 6 takes the 8, a value of 30 the 32.
        let c = colour(&[(32, iv(0, 2)), (8, iv(0, 2)), (6, iv(3, 4)), (30, iv(3, 4))]);
        assert_eq!(c.sizes, [32, 8]);
        assert_eq!(c.colour[2], c.colour[1]);
        assert_eq!(c.colour[3], c.colour[0]);
    }

    #[test]
    fn a_chain_of_dense_layers_needs_two_buffers() {
        let p = plan_of(
            "struct M { input x: [8]; let a = Dense(64, activation = relu)(x); let b = Dense(32)(a); \
             let c = Dense(64)(b); output y = Dense(4)(c); }",
        );
        check(&p);
        assert_eq!(p.buffers, [8, 64, 32, 64, 4]);
        assert_eq!(p.inference.buffers.len(), 2, "{:?}", p.inference);
        assert_eq!(p.inference.buffers.iter().sum::<usize>(), 64 + 32);
        // relu needs no pre-activation; the linear layers need no scratch at all.
        assert!(p.inference.scratch.is_empty());
    }

    #[test]
    fn a_step_never_writes_into_its_operand() {
        // `b` is read by the step that produces `c`, and is dead right after: still not c's buffer.
        let p = plan_of("struct M { input x: [8]; let b = Dense(8)(x); let c = Dense(8)(b); output y = Dense(8)(c); }");
        check(&p);
        let mem = &p.inference;
        for (k, step) in p.steps.iter().enumerate() {
            let cx = mem.step_cx(k, &step.cx);
            assert!(cx.inputs.iter().all(|op| op.buf != cx.output.buf));
        }
        assert_eq!(mem.buffers.len(), 2);
    }

    #[test]
    fn outputs_survive_to_the_end_and_skips_stay_live() {
        // `h` feeds a head early and the residual Add late; `aux` is an output produced first.
        let p = plan_of(
            "struct M { input x: [16]; let h = Dense(16)(x); output aux = Dense(3)(h); \
             let a = Dense(16)(h); let b = Dense(16)(a); let r = Add()([h, b]); output y = Dense(2)(r); }",
        );
        check(&p);
        let mem = &p.inference;
        let aux = mem.outputs[0];
        // Nothing produced after `aux` may land in its buffer.
        let aux_start = mem.intervals[p.outputs[0].buf].unwrap().start;
        for (b, iv) in mem.intervals.iter().enumerate() {
            if let Some(iv) = iv {
                if b != p.outputs[0].buf && iv.start > aux_start {
                    assert_ne!(mem.buffer_of[b], Some(aux), "buffer {b} overwrites the output");
                }
            }
        }
        assert!(mem.total() < p.buffers.iter().sum::<usize>());
    }

    #[test]
    fn scratch_is_shared_across_steps_and_backward_only_scratch_gets_none() {
        // Two convolutions: scratch (col, dcol) each, no pre-activation (relu); dcol is backward only.
        let p = plan_of(
            "struct M { input x: [8, 8, 3]; let a = Conv2D(4, 3, activation = relu)(x); \
             let b = Conv2D(6, 3, activation = relu)(a); output y = GlobalAveragePooling2D()(b); }",
        );
        check(&p);
        let mem = &p.inference;
        assert_eq!(p.scratch.len(), 4);
        assert_eq!(mem.scratch.len(), 1, "{mem:?}");
        assert_eq!(mem.scratch[0], p.scratch[0].max(p.scratch[2]));
        assert_eq!(mem.step_scratch[0], [Some(0), None]);
        assert_eq!(mem.step_scratch[1], [Some(0), None]);
    }

    #[test]
    fn plans_of_branches_merges_and_shared_layers_hold_their_invariants() {
        for src in [
            "struct M { input l: [8]; input r: [4]; let a = Dense(16, activation = relu)(l); \
             let b = Dense(8, activation = relu)(a); let c = Dense(8, activation = relu)(r); \
             let m = Concatenate()([b, c]); output s = Dense(1, activation = sigmoid)(m); }",
            "struct M { input a: [12]; input b: [12]; layer enc = Dense(6, activation = tanh); \
             let m = Average()([enc(a), enc(b)]); output s = Dense(1, activation = sigmoid)(m); }",
            "struct M { input x: [10]; let h = Dense(20, activation = gelu)(x); let d = Dropout(0.5)(h); \
             let n = BatchNormalization()(d); let e = LayerNormalization()(n); \
             output p = Dense(3, activation = softmax)(e); output q = Dense(1)(h); }",
            "struct M { input t: [6] as i32; let e = Embedding(20, 4)(t); let f = Flatten()(e); \
             let g = Dot(axes = 1, normalize = true)([f, f]); output y = Dense(2)(Concatenate()([f, g])); }",
        ] {
            check(&plan_of(src));
        }
    }
}
