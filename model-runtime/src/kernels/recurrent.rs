//! Keras `SimpleRNN`, `LSTM` and `GRU` (`reset_after = true`): forward over time and backward through
//! time, with Keras 3's weight layouts and gate order.
//!
//! Shapes: the input `x` is batch×steps×input; the kernel `w` is input×(G·units) and the recurrent
//! kernel `r` units×(G·units), G the gate count (1, 4 for LSTM's i, f, c, o, 3 for GRU's z, r, h).
//! The input projections of all steps are one GEMM; each step is one GEMM of the previous state by
//! `r`. Forward keeps, in the caller's scratch (one buffer of [`Rnn::scratch_len`] per sample), what backward needs: the
//! pre-activations and activations of every gate, and every state, time-major so each step's block
//! is contiguous. Backward is one GEMM per step (the state's gradient through `r`) and three GEMMs for
//! all steps (the gradients of `w`, `r` and `x`). Nothing allocates.

use super::activation::{self, Activation};
use super::gemm::{pack_small, sgemm, sgemm_small_sum, sgemv, sgemv_t, SmallPart};
use std::cell::RefCell;

mod fused;

/// The recurrent cell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cell {
    /// h = act(x·W + h·R + b).
    Simple,
    /// Keras' LSTM (gates i, f, c, o).
    Lstm,
    /// Keras' GRU with `reset_after = true` (gates z, r, h; bias `[2, 3·units]`).
    Gru,
}

impl Cell {
    /// Gates per unit.
    pub fn gates(self) -> usize {
        match self {
            Cell::Simple => 1,
            Cell::Lstm => 4,
            Cell::Gru => 3,
        }
    }
}

/// The fixed configuration of one recurrent layer call.
#[derive(Clone, Copy, Debug)]
pub struct Rnn {
    /// The cell.
    pub cell: Cell,
    /// Rows of the batch.
    pub batch: usize,
    /// Time steps.
    pub steps: usize,
    /// Features per step.
    pub input: usize,
    /// Units (the state size).
    pub units: usize,
    /// The cell's activation (Keras `activation`, default tanh).
    pub act: Activation,
    /// The gates' activation (Keras `recurrent_activation`, default sigmoid).
    pub rec_act: Activation,
    /// Process the steps last to first (the output sequence is in processing order, as Keras').
    pub go_backwards: bool,
    /// Whether `y` holds every step's state (batch×steps×units) or only the last (batch×units).
    pub return_sequences: bool,
}

/// What forward keeps for backward, the parts of one buffer of [`Rnn::scratch_len`] per sample.
struct Scratch<'a> {
    /// Input projections x·W (+ input bias), rows in (batch, time) order.
    pub xp: &'a mut [f32],
    /// Gate pre-activations, time-major (processing order); unused by the fused cells.
    pub z: &'a mut [f32],
    /// Gate activations, time-major.
    pub a: &'a mut [f32],
    /// States h, time-major, the initial state first.
    pub h: &'a mut [f32],
    /// LSTM: cell states c, time-major, the initial one first. GRU: the recurrent part of the
    /// candidate, h·R_h + b_rh, time-major. SimpleRNN: unused (empty).
    pub c: &'a mut [f32],
    /// LSTM: act(c) per step. Others: unused (empty).
    pub ac: &'a mut [f32],
}

/// Read-only view of [`Scratch`] for backward.
struct Kept<'a> {
    /// See [`Scratch::z`].
    pub z: &'a [f32],
    /// See [`Scratch::a`].
    pub a: &'a [f32],
    /// See [`Scratch::h`].
    pub h: &'a [f32],
    /// See [`Scratch::c`].
    pub c: &'a [f32],
    /// See [`Scratch::ac`].
    pub ac: &'a [f32],
}

/// Backward's own buffers, the parts of one buffer of [`Rnn::work_len`] per sample.
struct Work<'a> {
    /// Recurrent-side gate gradients, time-major.
    pub dg: &'a mut [f32],
    /// Input-side gate gradients, rows in (batch, time) order.
    pub dx: &'a mut [f32],
    /// The state's gradient carried to the previous step.
    pub dh: &'a mut [f32],
    /// Its next value.
    pub dh2: &'a mut [f32],
    /// LSTM: the cell state's gradient carried back (others: unused).
    pub dc: &'a mut [f32],
}

/// Parameters of a recurrent layer (Keras layout).
pub struct Weights<'a> {
    /// input×(G·units).
    pub w: &'a [f32],
    /// units×(G·units).
    pub r: &'a [f32],
    /// G·units values, or 2×3·units for GRU (input bias, then recurrent bias).
    pub b: Option<&'a [f32]>,
}

/// Gradients of [`Weights`], added into.
pub struct WeightGrads<'a> {
    /// dL/dW.
    pub w: &'a mut [f32],
    /// dL/dR.
    pub r: &'a mut [f32],
    /// dL/db.
    pub b: Option<&'a mut [f32]>,
}

impl Rnn {
    /// Per-sample lengths of `xp, z, a, h, c, ac` (see `Scratch`).
    fn scratch_sizes(cell: Cell, steps: usize, units: usize) -> [usize; 6] {
        let gu = cell.gates() * units;
        let (c, ac) = match cell {
            Cell::Simple => (0, 0),
            Cell::Lstm => ((steps + 1) * units, steps * units),
            Cell::Gru => (steps * units, 0),
        };
        [steps * gu, steps * gu, steps * gu, (steps + 1) * units, c, ac]
    }

    /// Per-sample length of the buffer forward keeps for backward.
    pub fn scratch_len(cell: Cell, steps: usize, units: usize) -> usize {
        Self::scratch_sizes(cell, steps, units).iter().sum()
    }

    /// Per-sample length of backward's own buffer: after [`Rnn::backward`] it holds the initial
    /// states' gradients ([`Rnn::state_grads`]).
    pub fn work_len(cell: Cell, steps: usize, units: usize) -> usize {
        2 * steps * cell.gates() * units + 3 * units
    }

    /// Per-sample length of the scratch [`Rnn::infer`] uses (no longer than [`Rnn::scratch_len`]):
    /// the state, LSTM's cell state, one step's gate products (two for GRU, whose candidate keeps its
    /// recurrent part apart) and the bias.
    pub fn infer_len(cell: Cell, units: usize) -> usize {
        let gu = cell.gates() * units;
        let c = if cell == Cell::Lstm { units } else { 0 };
        let xa = if cell == Cell::Gru { gu } else { 0 };
        units + c + gu + xa + 2 * gu
    }

    fn split_scratch<'a>(&self, buf: &'a mut [f32]) -> Scratch<'a> {
        let [l0, l1, l2, l3, l4, l5] = Self::scratch_sizes(self.cell, self.steps, self.units).map(|l| l * self.batch);
        let (xp, rest) = buf.split_at_mut(l0);
        let (z, rest) = rest.split_at_mut(l1);
        let (a, rest) = rest.split_at_mut(l2);
        let (h, rest) = rest.split_at_mut(l3);
        let (c, rest) = rest.split_at_mut(l4);
        Scratch { xp, z, a, h, c, ac: &mut rest[..l5] }
    }

    fn split_kept<'a>(&self, buf: &'a [f32]) -> Kept<'a> {
        let [l0, l1, l2, l3, l4, l5] = Self::scratch_sizes(self.cell, self.steps, self.units).map(|l| l * self.batch);
        let (_, rest) = buf.split_at(l0);
        let (z, rest) = rest.split_at(l1);
        let (a, rest) = rest.split_at(l2);
        let (h, rest) = rest.split_at(l3);
        let (c, rest) = rest.split_at(l4);
        Kept { z, a, h, c, ac: &rest[..l5] }
    }

    fn split_work<'a>(&self, buf: &'a mut [f32]) -> Work<'a> {
        let (g, n) = (self.steps * self.gu() * self.batch, self.units * self.batch);
        let (dg, rest) = buf.split_at_mut(g);
        let (dx, rest) = rest.split_at_mut(g);
        let (dh, rest) = rest.split_at_mut(n);
        let (dh2, rest) = rest.split_at_mut(n);
        Work { dg, dx, dh, dh2, dc: &mut rest[..n] }
    }

    /// The gradients of the initial states h0 and c0 (LSTM) that [`Rnn::backward`] left in `work`,
    /// batch×units each.
    pub fn state_grads<'a>(&self, work: &'a [f32]) -> (&'a [f32], &'a [f32]) {
        let (g, n) = (self.steps * self.gu() * self.batch, self.units * self.batch);
        let dh = &work[2 * g..2 * g + n];
        let dc = &work[2 * g + 2 * n..2 * g + 3 * n];
        (dh, dc)
    }

    fn gu(&self) -> usize {
        self.cell.gates() * self.units
    }

    /// The input time step processed at step `s`.
    fn time(&self, s: usize) -> usize {
        if self.go_backwards {
            self.steps - 1 - s
        } else {
            s
        }
    }

    /// Runs the layer: `y` gets the output (see [`Rnn::return_sequences`]), `h_out` and `c_out` the
    /// final states when asked. `h0` and `c0` are initial states (batch×units), zeros when `None`.
    #[allow(clippy::too_many_arguments)]
    pub fn forward(
        &self,
        x: &[f32],
        h0: Option<&[f32]>,
        c0: Option<&[f32]>,
        p: &Weights<'_>,
        scratch: &mut [f32],
        y: &mut [f32],
        h_out: Option<&mut [f32]>,
        c_out: Option<&mut [f32]>,
    ) {
        self.forward_masked(x, Masked::NONE, h0, c0, p, scratch, y, h_out, c_out)
    }

    /// [`Rnn::forward`] skipping the steps `mask` masks (Keras 3): at a masked step every state is
    /// carried over unchanged; a sequence output holds the carried state there, or 0 with
    /// [`Masked::zero_outputs`] (Keras' `zero_output_for_mask`, which `Bidirectional` sets).
    #[allow(clippy::too_many_arguments)]
    pub fn forward_masked(
        &self,
        x: &[f32],
        masked: Masked<'_>,
        h0: Option<&[f32]>,
        c0: Option<&[f32]>,
        p: &Weights<'_>,
        scratch: &mut [f32],
        y: &mut [f32],
        h_out: Option<&mut [f32]>,
        c_out: Option<&mut [f32]>,
    ) {
        let mut s = self.split_scratch(scratch);
        let (bt, u, gu, rows) = (self.batch * self.steps, self.units, self.gu(), self.batch);
        let step_len = rows * u;
        let fused = self.fused();
        // With the fused LSTM and SimpleRNN cells above one row, each step's input projection joins its
        // recurrent product (one small GEMM, [x_t | h]·[W; R]) and `xp` holds only the bias; else all
        // steps' input projections are one GEMM, then the input bias.
        let joint = fused && rows > 1 && self.cell != Cell::Gru;
        let mut buf = take_buffer();
        let ops = StepOperands::new(rows, self.input, u, gu, p, joint, &mut buf);
        if joint {
            let bias = &mut s.xp[..gu];
            match p.b {
                Some(b) => bias.copy_from_slice(&b[..gu]),
                None => bias.fill(0.0),
            }
        } else {
            sgemm(bt, self.input, gu, 1.0, x, false, p.w, false, 0.0, s.xp);
            if let Some(b) = p.b {
                for row in s.xp.chunks_exact_mut(gu) {
                    row.iter_mut().zip(b).for_each(|(v, &bj)| *v += bj);
                }
            }
        }
        let rec_bias = match (self.cell, p.b) {
            (Cell::Gru, Some(b)) => b.get(gu..2 * gu),
            _ => None,
        };
        set_or_zero(&mut s.h[..step_len], h0);
        if self.cell == Cell::Lstm {
            set_or_zero(&mut s.c[..step_len], c0);
        }
        for st in 0..self.steps {
            let t = self.time(st);
            // The recurrent product, its bias, then the cell (which adds the input projection). The
            // fused cells take the product where their gates go and keep no pre-activations.
            let zs = match fused {
                true => &mut s.a[st * rows * gu..(st + 1) * rows * gu],
                false => &mut s.z[st * rows * gu..(st + 1) * rows * gu],
            };
            let h = &s.h[st * step_len..][..step_len];
            match joint {
                true => sgemm_small_sum(rows, gu, &[ops.x(x, t, self.steps), ops.h(h)], zs),
                false => recurrent_product(rows, u, gu, h, &ops, zs),
            }
            if let Some(rb) = rec_bias {
                for row in zs.chunks_exact_mut(gu) {
                    row.iter_mut().zip(rb).for_each(|(v, &bj)| *v += bj);
                }
            }
            match fused {
                true => self.fused_step(&mut s, st, t, joint),
                false => self.general_step(&mut s, st, t),
            }
            if let Some(m) = masked.mask {
                for b in (0..rows).filter(|&b| m[b * self.steps + t] == 0.0) {
                    carry(s.h, st, step_len, b * u, u);
                    if self.cell == Cell::Lstm {
                        carry(s.c, st, step_len, b * u, u);
                    }
                }
            }
            if self.return_sequences {
                let h_new = &s.h[(st + 1) * step_len..][..step_len];
                for b in 0..rows {
                    let out = &mut y[(b * self.steps + st) * u..][..u];
                    match masked.zero_outputs && masked.is_masked(b * self.steps + t) {
                        true => out.fill(0.0),
                        false => out.copy_from_slice(&h_new[b * u..][..u]),
                    }
                }
            }
        }
        put_buffer(buf);
        let last = &s.h[self.steps * step_len..][..step_len];
        if !self.return_sequences {
            y[..step_len].copy_from_slice(last);
        }
        if let Some(h) = h_out {
            h[..step_len].copy_from_slice(last);
        }
        if let Some(c) = c_out {
            c[..step_len].copy_from_slice(&s.c[self.steps * step_len..][..step_len]);
        }
    }

    /// The inference forward: the outputs of [`Rnn::forward_masked`], keeping nothing for backward.
    /// With Keras' default activations and more than one row, each step is one pass of the small GEMM
    /// over the step's inputs and the states, [x_t | h]·[W; R] (GRU: x_t·W and h·R apart), then the
    /// gates, which update the states in place: the step's working set (R, W, one step's products
    /// and the states) stays in L2, where the training forward writes every step's gates and states
    /// to arrays of `steps` times that size. With other activations, one row, or `scratch` shorter
    /// than [`Rnn::infer_len`] per sample, it runs [`Rnn::forward_masked`] (`scratch` must then be
    /// [`Rnn::scratch_len`] per sample).
    #[allow(clippy::too_many_arguments)]
    pub fn infer(
        &self,
        x: &[f32],
        masked: Masked<'_>,
        h0: Option<&[f32]>,
        c0: Option<&[f32]>,
        p: &Weights<'_>,
        scratch: &mut [f32],
        y: &mut [f32],
        h_out: Option<&mut [f32]>,
        c_out: Option<&mut [f32]>,
    ) {
        let (u, gu, rows, steps, input) = (self.units, self.gu(), self.batch, self.steps, self.input);
        if !self.fused() || rows < 2 || scratch.len() < rows * Self::infer_len(self.cell, u) {
            return self.forward_masked(x, masked, h0, c0, p, scratch, y, h_out, c_out);
        }
        let n = rows * u;
        let lstm = self.cell == Cell::Lstm;
        let (h, rest) = scratch.split_at_mut(n);
        let (c, rest) = rest.split_at_mut(if lstm { n } else { 0 });
        let (a, rest) = rest.split_at_mut(rows * gu);
        let (xa, rest) = rest.split_at_mut(if self.cell == Cell::Gru { rows * gu } else { 0 });
        let bias = &mut rest[..2 * gu];
        match p.b {
            Some(b) => {
                let k = b.len().min(2 * gu);
                bias[..k].copy_from_slice(&b[..k]);
                bias[k..].fill(0.0);
            }
            None => bias.fill(0.0),
        }
        let bias = &*bias;
        set_or_zero(h, h0);
        if lstm {
            set_or_zero(c, c0);
        }
        let mut buf = take_buffer();
        let ops = StepOperands::new(rows, input, u, gu, p, true, &mut buf);
        for st in 0..steps {
            let t = self.time(st);
            let (xt, hr) = (ops.x(x, t, steps), ops.h(h));
            match self.cell {
                Cell::Gru => {
                    sgemm_small_sum(rows, gu, &[xt], xa);
                    sgemm_small_sum(rows, gu, &[hr], a);
                }
                _ => sgemm_small_sum(rows, gu, &[xt, hr], a),
            }
            for b in (0..rows).filter(|&b| !masked.is_masked(b * steps + t)) {
                let (ab, hb) = (&a[b * gu..][..gu], &mut h[b * u..][..u]);
                match self.cell {
                    Cell::Simple => fused::simple_infer(u, ab, bias, hb),
                    Cell::Lstm => fused::lstm_infer(u, ab, bias, &mut c[b * u..][..u], hb),
                    Cell::Gru => fused::gru_infer(u, ab, &xa[b * gu..][..gu], bias, hb),
                }
            }
            if self.return_sequences {
                for b in 0..rows {
                    let out = &mut y[(b * steps + st) * u..][..u];
                    match masked.zero_outputs && masked.is_masked(b * steps + t) {
                        true => out.fill(0.0),
                        false => out.copy_from_slice(&h[b * u..][..u]),
                    }
                }
            }
        }
        put_buffer(buf);
        if !self.return_sequences {
            y[..n].copy_from_slice(h);
        }
        if let Some(ho) = h_out {
            ho[..n].copy_from_slice(h);
        }
        if let (Some(co), true) = (c_out, lstm) {
            co[..n].copy_from_slice(c);
        }
    }

    /// Whether the cell runs [`fused`]'s single-loop step: Keras' default activations.
    fn fused(&self) -> bool {
        self.act == Activation::Tanh && (self.cell == Cell::Simple || self.rec_act == Activation::Sigmoid)
    }

    /// The cell of step `st` (input time `t`) with the default activations, one [`fused`] loop per
    /// sample: `s.a` holds the step's recurrent product (and bias) on entry, `s.z` stays unused. With
    /// `joint`, `s.a` holds the input projection too and `s.xp` only the input bias.
    fn fused_step(&self, s: &mut Scratch<'_>, st: usize, t: usize, joint: bool) {
        let (u, gu, rows) = (self.units, self.gu(), self.batch);
        let step_len = rows * u;
        let a = &mut s.a[st * rows * gu..][..rows * gu];
        let (prev, next) = s.h.split_at_mut((st + 1) * step_len);
        let (h_prev, h_new) = (&prev[st * step_len..], &mut next[..step_len]);
        for b in 0..rows {
            let x = &s.xp[if joint { 0 } else { (b * self.steps + t) * gu }..][..gu];
            let (ab, h) = (&mut a[b * gu..][..gu], &mut h_new[b * u..][..u]);
            match self.cell {
                Cell::Simple => fused::simple_forward(u, ab, x, h),
                Cell::Lstm => {
                    let (cprev, cnext) = s.c.split_at_mut((st + 1) * step_len);
                    let (c_prev, c) = (&cprev[st * step_len + b * u..][..u], &mut cnext[b * u..][..u]);
                    let ac = &mut s.ac[st * step_len + b * u..][..u];
                    fused::lstm_forward(u, ab, x, c_prev, c, ac, h)
                }
                Cell::Gru => {
                    let hr = &mut s.c[(st * rows + b) * u..][..u];
                    fused::gru_forward(u, ab, x, hr, &h_prev[b * u..][..u], h)
                }
            }
        }
    }

    /// The cell of step `st` (input time `t`) for any activations, gate by gate: `s.z` holds the
    /// step's recurrent product (and bias) on entry.
    fn general_step(&self, s: &mut Scratch<'_>, st: usize, t: usize) {
        let (u, gu, rows) = (self.units, self.gu(), self.batch);
        let step_len = rows * u;
        let zs = &mut s.z[st * rows * gu..(st + 1) * rows * gu];
        let a = &mut s.a[st * rows * gu..(st + 1) * rows * gu];
        for b in 0..rows {
            let xrow = &s.xp[(b * self.steps + t) * gu..][..gu];
            let zrow = &mut zs[b * gu..][..gu];
            let arow = &mut a[b * gu..][..gu];
            match self.cell {
                Cell::Simple | Cell::Lstm => zrow.iter_mut().zip(xrow).for_each(|(z, &xv)| *z += xv),
                Cell::Gru => {
                    // z and r add their input parts; the candidate waits for r.
                    zrow[..2 * u].iter_mut().zip(&xrow[..2 * u]).for_each(|(z, &xv)| *z += xv);
                    let hr = &mut s.c[(st * rows + b) * u..][..u];
                    hr.copy_from_slice(&zrow[2 * u..]);
                    gate_forward(self.rec_act, &zrow[..2 * u], &mut arow[..2 * u], u);
                    for j in 0..u {
                        zrow[2 * u + j] = xrow[2 * u + j] + arow[u + j] * hr[j];
                    }
                    gate_forward(self.act, &zrow[2 * u..], &mut arow[2 * u..], u);
                    continue;
                }
            }
            match self.cell {
                Cell::Simple => gate_forward(self.act, zrow, arow, u),
                _ => {
                    gate_forward(self.rec_act, &zrow[..2 * u], &mut arow[..2 * u], u);
                    gate_forward(self.act, &zrow[2 * u..3 * u], &mut arow[2 * u..3 * u], u);
                    gate_forward(self.rec_act, &zrow[3 * u..], &mut arow[3 * u..], u);
                }
            }
        }
        // The new state.
        let (prev, next) = s.h.split_at_mut((st + 1) * step_len);
        let h_prev = &prev[st * step_len..];
        let h_new = &mut next[..step_len];
        match self.cell {
            Cell::Simple => {
                for b in 0..rows {
                    h_new[b * u..][..u].copy_from_slice(&a[b * gu..][..u]);
                }
            }
            Cell::Lstm => {
                let (cprev, cnext) = s.c.split_at_mut((st + 1) * step_len);
                let c_prev = &cprev[st * step_len..];
                let c_new = &mut cnext[..step_len];
                for b in 0..rows {
                    let g = &a[b * gu..][..gu];
                    for j in 0..u {
                        let k = b * u + j;
                        c_new[k] = g[u + j] * c_prev[k] + g[j] * g[2 * u + j];
                    }
                }
                let ac = &mut s.ac[st * step_len..][..step_len];
                gate_forward(self.act, c_new, ac, u);
                for b in 0..rows {
                    for j in 0..u {
                        let k = b * u + j;
                        h_new[k] = a[b * gu + 3 * u + j] * ac[k];
                    }
                }
            }
            Cell::Gru => {
                for b in 0..rows {
                    let g = &a[b * gu..][..gu];
                    for j in 0..u {
                        let k = b * u + j;
                        h_new[k] = g[j] * h_prev[k] + (1.0 - g[j]) * g[2 * u + j];
                    }
                }
            }
        }
    }

    /// Backward through time. `dy` is the output's gradient, `dh_out`/`dc_out` the final states'
    /// (when they are results); `kept` is forward's scratch, `work` backward's own. Adds into `dx`
    /// (when given) and the weight gradients, and leaves the initial states' gradients in `work`
    /// ([`Rnn::state_grads`]).
    #[allow(clippy::too_many_arguments)]
    pub fn backward(
        &self,
        x: &[f32],
        p: &Weights<'_>,
        kept: &[f32],
        work: &mut [f32],
        dy: &[f32],
        dh_out: Option<&[f32]>,
        dc_out: Option<&[f32]>,
        dx: Option<&mut [f32]>,
        g: WeightGrads<'_>,
    ) {
        self.backward_masked(x, Masked::NONE, p, kept, work, dy, dh_out, dc_out, dx, g)
    }

    /// The backward of [`Rnn::forward_masked`] with the same `masked`: at a masked step the states'
    /// gradients pass straight through to the previous step and nothing reaches the gates or `x`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward_masked(
        &self,
        x: &[f32],
        masked: Masked<'_>,
        p: &Weights<'_>,
        kept: &[f32],
        work: &mut [f32],
        dy: &[f32],
        dh_out: Option<&[f32]>,
        dc_out: Option<&[f32]>,
        dx: Option<&mut [f32]>,
        g: WeightGrads<'_>,
    ) {
        let k = &self.split_kept(kept);
        let wk = self.split_work(work);
        let (u, gu, rows, steps) = (self.units, self.gu(), self.batch, self.steps);
        let step_len = rows * u;
        let Work { dg, dx: dxp, dh, dh2, dc } = wk;
        let (dh, dh2, dc) = (&mut dh[..step_len], &mut dh2[..step_len], &mut dc[..step_len]);
        set_or_zero(dh, dh_out);
        if !self.return_sequences {
            dh.iter_mut().zip(&dy[..step_len]).for_each(|(d, &v)| *d += v);
        }
        set_or_zero(dc, dc_out.filter(|_| self.cell == Cell::Lstm));
        let fused = self.fused();
        // Rᵀ (gu×u) packed once per call for the steps' products (above one row).
        let mut rt_buf = take_buffer();
        let rt = packed_transpose(rows, u, gu, p.r, &mut rt_buf);
        for st in (0..steps).rev() {
            let t = self.time(st);
            if self.return_sequences {
                for b in (0..rows).filter(|&b| !(masked.zero_outputs && masked.is_masked(b * steps + t))) {
                    let src = &dy[(b * steps + st) * u..][..u];
                    dh[b * u..][..u].iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                }
            }
            let z = &k.z[st * rows * gu..][..rows * gu];
            let a = &k.a[st * rows * gu..][..rows * gu];
            let h_prev = &k.h[st * step_len..][..step_len];
            let dgs = &mut dg[st * rows * gu..][..rows * gu];
            for b in 0..rows {
                let dgr = &mut dgs[b * gu..][..gu];
                if masked.is_masked(b * steps + t) {
                    // A carried step: no gate saw it; the states' gradients pass through below.
                    dgr.fill(0.0);
                    dxp[(b * steps + t) * gu..][..gu].fill(0.0);
                    continue;
                }
                let (zr, ar) = (&z[b * gu..][..gu], &a[b * gu..][..gu]);
                let dhr = &dh[b * u..][..u];
                if fused {
                    // The input side's gradient goes straight to its (batch, time) row.
                    let dxr = &mut dxp[(b * steps + t) * gu..][..gu];
                    match self.cell {
                        Cell::Simple => fused::simple_backward(u, dhr, ar, dgr, dxr),
                        Cell::Lstm => {
                            let acr = &k.ac[st * step_len + b * u..][..u];
                            let c_prev = &k.c[st * step_len + b * u..][..u];
                            fused::lstm_backward(u, dhr, &mut dc[b * u..][..u], ar, acr, c_prev, dgr, dxr)
                        }
                        Cell::Gru => {
                            let hr = &k.c[(st * rows + b) * u..][..u];
                            fused::gru_backward(u, dhr, ar, hr, &h_prev[b * u..][..u], dgr, dxr)
                        }
                    }
                    continue;
                }
                match self.cell {
                    Cell::Simple => {
                        dgr.copy_from_slice(dhr);
                        activation::backward(self.act, Some(zr), ar, dgr, u);
                    }
                    Cell::Lstm => {
                        let acr = &k.ac[st * step_len + b * u..][..u];
                        let c_new = &k.c[(st + 1) * step_len + b * u..][..u];
                        let c_prev = &k.c[st * step_len + b * u..][..u];
                        let dcr = &mut dc[b * u..][..u];
                        // Through h = o·act(c): the output gate, then c (reusing the o block as scratch).
                        let (dfirst, dlast) = dgr.split_at_mut(3 * u);
                        for j in 0..u {
                            dlast[j] = dhr[j] * ar[3 * u + j];
                        }
                        activation::backward(self.act, Some(c_new), acr, dlast, u);
                        for j in 0..u {
                            dcr[j] += dlast[j];
                        }
                        for j in 0..u {
                            dlast[j] = dhr[j] * acr[j];
                            dfirst[j] = dcr[j] * ar[2 * u + j];
                            dfirst[u + j] = dcr[j] * c_prev[j];
                            dfirst[2 * u + j] = dcr[j] * ar[j];
                            dcr[j] *= ar[u + j];
                        }
                        activation::backward(self.rec_act, Some(&zr[..2 * u]), &ar[..2 * u], &mut dgr[..2 * u], u);
                        activation::backward(self.act, Some(&zr[2 * u..3 * u]), &ar[2 * u..3 * u], &mut dgr[2 * u..3 * u], u);
                        activation::backward(self.rec_act, Some(&zr[3 * u..]), &ar[3 * u..], &mut dgr[3 * u..], u);
                    }
                    Cell::Gru => {
                        let hp = &h_prev[b * u..][..u];
                        let hr = &k.c[(st * rows + b) * u..][..u];
                        for j in 0..u {
                            dgr[j] = dhr[j] * (hp[j] - ar[2 * u + j]);
                            dgr[2 * u + j] = dhr[j] * (1.0 - ar[j]);
                        }
                        activation::backward(self.act, Some(&zr[2 * u..]), &ar[2 * u..], &mut dgr[2 * u..], u);
                        for j in 0..u {
                            dgr[u + j] = dgr[2 * u + j] * hr[j];
                        }
                        activation::backward(self.rec_act, Some(&zr[..2 * u]), &ar[..2 * u], &mut dgr[..2 * u], u);
                    }
                }
                // The input side's gradient, rows in (batch, time) order.
                let dxr = &mut dxp[(b * steps + t) * gu..][..gu];
                dxr.copy_from_slice(dgr);
                if self.cell == Cell::Gru {
                    // The recurrent side of the candidate is scaled by r.
                    for j in 0..u {
                        dgr[2 * u + j] *= ar[u + j];
                    }
                }
            }
            // The previous state's gradient: through R, plus GRU's direct path z·h_prev.
            recurrent_product_t(rows, u, gu, dgs, p.r, rt, dh2);
            if self.cell == Cell::Gru {
                for b in (0..rows).filter(|&b| !masked.is_masked(b * steps + t)) {
                    for j in 0..u {
                        dh2[b * u + j] += dh[b * u + j] * a[b * gu + j];
                    }
                }
            }
            for b in (0..rows).filter(|&b| masked.is_masked(b * steps + t)) {
                dh2[b * u..][..u].copy_from_slice(&dh[b * u..][..u]);
            }
            dh.copy_from_slice(dh2);
        }
        put_buffer(rt_buf);
        // Whole-sequence products.
        let bt = rows * steps;
        sgemm(u, bt, gu, 1.0, &k.h[..bt * u], true, dg, false, 1.0, g.r);
        sgemm(self.input, bt, gu, 1.0, x, true, dxp, false, 1.0, g.w);
        if let Some(dx) = dx {
            sgemm(bt, gu, self.input, 1.0, dxp, false, p.w, true, 1.0, dx);
        }
        if let Some(db) = g.b {
            let (din, drec) = db.split_at_mut(gu);
            for row in dxp.chunks_exact(gu) {
                din.iter_mut().zip(row).for_each(|(v, &d)| *v += d);
            }
            if self.cell == Cell::Gru {
                for row in dg.chunks_exact(gu) {
                    drec.iter_mut().zip(row).for_each(|(v, &d)| *v += d);
                }
            }
        }
    }
}

/// The step mask a recurrent call runs with (docs/masks.md): `batch · steps` values in input time order,
/// 1 for a kept step and 0 for a masked one.
#[derive(Clone, Copy, Debug, Default)]
pub struct Masked<'a> {
    /// The mask; `None`: every step is kept.
    pub mask: Option<&'a [f32]>,
    /// Whether a sequence output is 0 at a masked step (Keras' `zero_output_for_mask`), else the
    /// carried state.
    pub zero_outputs: bool,
}

impl Masked<'_> {
    /// No mask.
    pub const NONE: Masked<'static> = Masked { mask: None, zero_outputs: false };

    /// Whether entry `i` (sample·steps + time) is masked.
    #[inline]
    fn is_masked(&self, i: usize) -> bool {
        self.mask.is_some_and(|m| m[i] == 0.0)
    }
}

/// The B operands of a forward's step products, W (input×gu) and R (u×gu): in place, or packed
/// strip by strip ([`pack_small`], once per call) when the batch has enough rows for the small GEMM's
/// row tiles to reuse each strip from L1.
struct StepOperands<'a> {
    w: &'a [f32],
    r: &'a [f32],
    packed: bool,
    input: usize,
    u: usize,
}

impl<'a> StepOperands<'a> {
    /// Rows from which packing pays for itself over the steps.
    const PACK_ROWS: usize = 8;

    /// Packs R (and W when `with_w`, for the joint step product) into `buf` when it pays.
    fn new(rows: usize, input: usize, u: usize, gu: usize, p: &Weights<'a>, with_w: bool, buf: &'a mut Vec<f32>) -> Self {
        if rows < Self::PACK_ROWS || !gu.is_multiple_of(16) {
            return StepOperands { w: p.w, r: p.r, packed: false, input, u };
        }
        let wl = if with_w { input * gu } else { 0 };
        if buf.len() < wl + u * gu {
            buf.resize(wl + u * gu, 0.0);
        }
        let (w, r) = buf.split_at_mut(wl);
        if with_w {
            pack_small(input, gu, p.w, false, w);
        }
        pack_small(u, gu, p.r, false, r);
        let buf: &'a [f32] = buf;
        let (w, r) = buf.split_at(wl);
        StepOperands { w: if with_w { w } else { p.w }, r: &r[..u * gu], packed: true, input, u }
    }

    /// The step's input projection as a part: the rows of input time `t` of `x` (batch×steps×input)
    /// times W.
    fn x<'b>(&self, x: &'b [f32], t: usize, steps: usize) -> SmallPart<'b>
    where
        'a: 'b,
    {
        SmallPart { a: &x[t * self.input..], lda: steps * self.input, k: self.input, b: self.w, packed: self.packed }
    }

    /// The states `h` (rows×u) times R as a part.
    fn h<'b>(&self, h: &'b [f32]) -> SmallPart<'b>
    where
        'a: 'b,
    {
        SmallPart { a: h, lda: self.u, k: self.u, b: self.r, packed: self.packed }
    }
}

/// The step's recurrent product `out` (rows×gu) = `h` (rows×u) · R: a GEMV for one row, else the
/// small GEMM that reads R in place or packed (it stays in cache from step to step).
fn recurrent_product(rows: usize, u: usize, gu: usize, h: &[f32], ops: &StepOperands<'_>, out: &mut [f32]) {
    match rows {
        1 => sgemv(u, gu, h, ops.r, out),
        _ => sgemm_small_sum(rows, gu, &[ops.h(h)], out),
    }
}

/// The previous state's gradient `out` (rows×u) = `dg` (rows×gu) · `r`ᵀ: a GEMV for one row, else the
/// small GEMM on `rt`, `r`ᵀ packed by [`packed_transpose`] (read in place at every step, where the
/// general GEMM would pack `r`ᵀ again at each one).
fn recurrent_product_t(rows: usize, u: usize, gu: usize, dg: &[f32], r: &[f32], rt: &[f32], out: &mut [f32]) {
    match rows {
        1 => sgemv_t(u, gu, dg, r, out),
        _ if rt.len() >= u * gu => sgemm_small_sum(rows, u, &[SmallPart { a: dg, lda: gu, k: gu, b: rt, packed: true }], out),
        _ => sgemm(rows, gu, u, 1.0, dg, false, r, true, 0.0, out),
    }
}

thread_local! {
    /// Packed kernels of the current call ([`StepOperands`], [`packed_transpose`]), kept per thread
    /// between calls so steady-state steps allocate nothing (it grows on the first call of a larger
    /// layer).
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// This thread's packing buffer (an empty one while another call holds it).
fn take_buffer() -> Vec<f32> {
    PACKED.try_with(|cell| cell.try_borrow_mut().map(|mut b| std::mem::take(&mut *b)).unwrap_or_default()).unwrap_or_default()
}

/// Gives the packing buffer back for the next call.
fn put_buffer(buf: Vec<f32>) {
    let _ = PACKED.try_with(|cell| {
        if let Ok(mut b) = cell.try_borrow_mut() {
            if b.capacity() < buf.capacity() {
                *b = buf;
            }
        }
    });
}

/// `r` (u×gu) transposed and packed for the small GEMM into `buf` (grown when shorter), or nothing
/// when `rows` is 1 (the GEMV reads `r` itself) or u is not a multiple of 16 (the general GEMM then
/// reads `r` transposed).
fn packed_transpose<'a>(rows: usize, u: usize, gu: usize, r: &[f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    if rows < 2 || !u.is_multiple_of(16) {
        return &[];
    }
    if buf.len() < u * gu {
        buf.resize(u * gu, 0.0);
    }
    pack_small(gu, u, r, true, buf);
    &buf[..u * gu]
}

/// Copies row block `[off..off + u]` of time-major state `st` into state `st + 1` (a carried step).
fn carry(states: &mut [f32], st: usize, step_len: usize, off: usize, u: usize) {
    let (prev, next) = states.split_at_mut((st + 1) * step_len);
    next[off..off + u].copy_from_slice(&prev[st * step_len + off..][..u]);
}

/// y = act(x) for the gates: sigmoid and tanh through [`exp_fast`] in loops the compiler vectorizes
/// (compiled for AVX2 + FMA where the CPU has them), other activations through [`activation::forward`].
fn gate_forward(act: Activation, x: &[f32], y: &mut [f32], cols: usize) {
    match act {
        Activation::Sigmoid | Activation::Tanh => {
            #[cfg(target_arch = "x86_64")]
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has AVX2 and FMA.
                return unsafe { gates_avx2(act == Activation::Tanh, x, y) };
            }
            gates(act == Activation::Tanh, x, y)
        }
        _ => activation::forward(act, x, y, cols),
    }
}

/// [`gates`] compiled for AVX2 + FMA. Safety: the CPU must have both.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gates_avx2(tanh: bool, x: &[f32], y: &mut [f32]) {
    gates(tanh, x, y)
}

/// Sigmoid, or tanh(x) = 2·sigmoid(2x) − 1, element-wise.
#[inline(always)]
fn gates(tanh: bool, x: &[f32], y: &mut [f32]) {
    if tanh {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = 2.0 / (1.0 + exp_fast(-2.0 * v)) - 1.0;
        }
    } else {
        for (o, &v) in y.iter_mut().zip(x) {
            *o = 1.0 / (1.0 + exp_fast(-v));
        }
    }
}

/// e^x in f32 to about 2 ulp, branch-free so loops over it vectorize: x = n·ln 2 + r with |r| ≤ ln 2 / 2,
/// a degree-6 polynomial for e^r, and 2^n put in the exponent bits (with float adds and a shift, so
/// that it vectorizes). Clamped to [-87.3, 88.7]: the
/// results stay finite and normal (a sigmoid's tail is then 0 or 1 to f32 precision anyway).
#[inline(always)]
pub fn exp_fast(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let n = (x * std::f32::consts::LOG2_E).round();
    let r = n.mul_add(-0.693_145_75, x);
    let r = n.mul_add(-1.428_606_8e-6, r);
    let p = 1.0 / 720.0;
    let p = p * r + 1.0 / 120.0;
    let p = p * r + 1.0 / 24.0;
    let p = p * r + 1.0 / 6.0;
    let p = p * r + 0.5;
    let p = p * r + 1.0;
    let p = p * r + 1.0;
    // 2^n from the bits of n + 127 + 1.5·2^23, whose low mantissa bits hold the integer n + 127 (in
    // 1..=255 after the clamp): vector adds and shifts, where `n as i32` (saturating) would not vectorize.
    let bits = (n + (127.0 + 12_582_912.0)).to_bits() << 23;
    p * f32::from_bits(bits)
}

/// `dst += src` over `dst`'s length (an initial state's gradient from [`Rnn::state_grads`]).
pub fn add_into(dst: &mut [f32], src: &[f32]) {
    dst.iter_mut().zip(src).for_each(|(d, &s)| *d += s);
}

/// `dst = src`, or zeros when there is none.
fn set_or_zero(dst: &mut [f32], src: Option<&[f32]>) {
    match src {
        Some(s) => dst.copy_from_slice(&s[..dst.len()]),
        None => dst.fill(0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 2000.0 - 0.25).collect()
    }

    /// `infer` (nothing kept, states updated in place, a step's input projection and recurrent product
    /// in one small GEMM) gives the outputs and final states of the training forward, for every cell,
    /// direction, output kind, mask mode, initial states or none, bias or none, at batch sizes on and
    /// off the register tiles and widths on and off the AVX2 strips.
    #[test]
    fn inference_forward_matches_the_training_forward() {
        let mut cases = 0;
        for cell in [Cell::Lstm, Cell::Gru, Cell::Simple] {
            for (batch, units) in [(1, 8), (2, 16), (7, 5), (32, 16)] {
                for (go_backwards, return_sequences, masked, zero_outputs, states, bias) in [
                    (false, false, false, false, false, true),
                    (true, true, false, false, true, true),
                    (false, true, true, true, true, false),
                    (true, false, true, false, false, true),
                ] {
                    let (steps, input) = (5, 3);
                    let rnn = Rnn {
                        cell,
                        batch,
                        steps,
                        input,
                        units,
                        act: Activation::Tanh,
                        rec_act: Activation::Sigmoid,
                        go_backwards,
                        return_sequences,
                    };
                    let gu = cell.gates() * units;
                    let (w, r) = (values(input * gu, 1), values(units * gu, 2));
                    let b = values(if cell == Cell::Gru { 2 * gu } else { gu }, 3);
                    let p = Weights { w: &w, r: &r, b: bias.then_some(&b[..]) };
                    let x = values(batch * steps * input, 4);
                    let mask: Vec<f32> = (0..batch * steps).map(|i| if i % 3 == 1 { 0.0 } else { 1.0 }).collect();
                    let m = Masked { mask: masked.then_some(&mask[..]), zero_outputs };
                    let (h0, c0) = (values(batch * units, 5), values(batch * units, 6));
                    let (h0, c0) = (states.then_some(&h0[..]), states.then_some(&c0[..]));
                    let ylen = batch * units * if return_sequences { steps } else { 1 };
                    let run = |infer: bool| {
                        let mut scratch = vec![f32::NAN; batch * Rnn::scratch_len(cell, steps, units)];
                        let (mut y, mut h, mut c) = (vec![f32::NAN; ylen], vec![f32::NAN; batch * units], vec![f32::NAN; batch * units]);
                        let c_out = (cell == Cell::Lstm).then_some(&mut c[..]);
                        match infer {
                            true => rnn.infer(&x, m, h0, c0, &p, &mut scratch, &mut y, Some(&mut h), c_out),
                            false => rnn.forward_masked(&x, m, h0, c0, &p, &mut scratch, &mut y, Some(&mut h), c_out),
                        }
                        (y, h, c)
                    };
                    let (want, got) = (run(false), run(true));
                    for (name, g, w) in [("y", &got.0, &want.0), ("h", &got.1, &want.1), ("c", &got.2, &want.2)] {
                        for (i, (g, w)) in g.iter().zip(w).enumerate() {
                            let ok = (g - w).abs() <= 1e-5 || (g.is_nan() && w.is_nan());
                            assert!(ok, "{cell:?} batch {batch} units {units} {name}[{i}]: {g} vs {w}");
                        }
                    }
                    cases += 1;
                }
            }
        }
        assert_eq!(cases, 48);
    }

    /// Backward's step products on the packed transpose of R equal the general GEMM's on R read
    /// transposed (u off the 16-column strips: the general GEMM itself).
    #[test]
    fn the_transposed_recurrent_kernel_gives_the_general_gemms_state_gradient() {
        for (rows, u, gu) in [(2, 16, 64), (32, 128, 512), (9, 64, 256), (5, 7, 21)] {
            let (dg, r) = (values(rows * gu, 7), values(u * gu, 8));
            let mut buf = Vec::new();
            let rt = packed_transpose(rows, u, gu, &r, &mut buf);
            let (mut got, mut want) = (vec![0.0; rows * u], vec![0.0; rows * u]);
            recurrent_product_t(rows, u, gu, &dg, &r, rt, &mut got);
            sgemm(rows, gu, u, 1.0, &dg, false, &r, true, 0.0, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{rows}×{gu}×{u}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn fast_exp_and_gates_match_the_library_functions() {
        let mut worst = 0.0f32;
        for i in -20000..=20000 {
            let x = i as f32 * 0.004;
            let (got, want) = (exp_fast(x), x.exp());
            worst = worst.max(((got - want) / want).abs());
        }
        assert!(worst < 4e-7, "exp relative error {worst}");
        let xs: Vec<f32> = (-400..=400).map(|i| i as f32 * 0.05).collect();
        let (mut s, mut t) = (vec![0.0; xs.len()], vec![0.0; xs.len()]);
        gate_forward(Activation::Sigmoid, &xs, &mut s, 1);
        gate_forward(Activation::Tanh, &xs, &mut t, 1);
        for ((&x, &sv), &tv) in xs.iter().zip(&s).zip(&t) {
            assert!((sv - 1.0 / (1.0 + (-x).exp())).abs() < 3e-7, "sigmoid({x})");
            assert!((tv - x.tanh()).abs() < 6e-7, "tanh({x}): {tv} vs {}", x.tanh());
        }
    }
}
