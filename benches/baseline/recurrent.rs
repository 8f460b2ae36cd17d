//! Hand-written ndarray implementations of the recurrent benchmark models of issue #17
//! (`benches/bench_models/recurrent.rs`): tokens `int32[64]` → `Embedding(1000, 64)` → R1 `LSTM(128)`,
//! R2 `GRU(128)` (Keras' `reset_after = true`: bias `[2, 3·units]`, gates z, r, h) or R3
//! `Bidirectional(LSTM(64))` (merge concat, the backward direction reading the sequence reversed) →
//! `Dense(1, sigmoid)`, binary cross-entropy, Adam. The `handwritten` cells of `benches/recurrent.rs`.
//!
//! Every buffer is allocated once for a batch size: the embeddings are gathered step-major (row
//! `s·batch + b` holds the token that step `s` reads, so a reversed direction gathers the sequence
//! reversed), all steps' input projections are one GEMM, each step one GEMM (matrixmultiply through
//! `general_mat_mul`) and one loop over the gates; backward through time runs one GEMM per step and
//! three for the whole sequence (dW, dR, dx), then Adam updates every weight in place.

use super::AdamSlot;
use modelc::init::Rng;
use modelc::ndarray::linalg::general_mat_mul;
use modelc::ndarray::{s, Array1, Array2, ArrayView2, Axis};

/// The vocabulary of the embedding.
pub const VOCAB: usize = 1000;
/// Tokens per sequence.
pub const STEPS: usize = 64;
/// The embedding's width.
pub const EMBED: usize = 64;
/// Keras' default learning rate, the one `Adam::default()` has.
const LR: f32 = 1e-3;

fn sigmoid(v: f32) -> f32 {
    1.0 / (1.0 + (-v).exp())
}

/// The time a direction reads at its step `s`.
fn time(s: usize, reverse: bool) -> usize {
    if reverse {
        STEPS - 1 - s
    } else {
        s
    }
}

fn token(tokens: ArrayView2<'_, i32>, b: usize, t: usize) -> usize {
    tokens[[b, t]].clamp(0, VOCAB as i32 - 1) as usize
}

fn uniform(rng: &mut Rng, rows: usize, cols: usize, limit: f32) -> Array2<f32> {
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-limit, limit))
}

fn slice(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("owned, standard layout")
}

fn slice_mut(a: &mut Array2<f32>) -> &mut [f32] {
    a.as_slice_mut().expect("owned, standard layout")
}

/// `Embedding(1000, 64)`: the table, its gradient and Adam state.
struct Embedding {
    table: Array2<f32>,
    grad: Array2<f32>,
    adam: AdamSlot,
}

impl Embedding {
    fn new(rng: &mut Rng) -> Self {
        Embedding { table: uniform(rng, VOCAB, EMBED, 0.05), grad: Array2::zeros((VOCAB, EMBED)), adam: AdamSlot::new(VOCAB * EMBED) }
    }

    /// Row `s·batch + b` of `x` = the embedding of the token step `s` reads.
    fn gather(&self, tokens: ArrayView2<'_, i32>, reverse: bool, x: &mut Array2<f32>) {
        let bsz = tokens.nrows();
        for s in 0..STEPS {
            for b in 0..bsz {
                x.row_mut(s * bsz + b).assign(&self.table.row(token(tokens, b, time(s, reverse))));
            }
        }
    }

    /// Adds the gradient `dx` of gathered rows (laid out as [`Embedding::gather`] wrote them) to the
    /// rows of their tokens.
    fn scatter(&mut self, tokens: ArrayView2<'_, i32>, reverse: bool, dx: &Array2<f32>) {
        let bsz = tokens.nrows();
        for s in 0..STEPS {
            for b in 0..bsz {
                let mut dst = self.grad.row_mut(token(tokens, b, time(s, reverse)));
                dst += &dx.row(s * bsz + b);
            }
        }
    }

    fn adam(&mut self, t: i32) {
        self.adam.step(slice_mut(&mut self.table), slice(&self.grad), LR, t);
    }
}

/// `Dense(1, sigmoid)` on the concatenation of the recurrent layers' last states.
struct Head {
    w: Array1<f32>,
    b: Array1<f32>,
    gw: Array1<f32>,
    gb: Array1<f32>,
    /// d(mean BCE)/d(logit) of each row, from the last [`Head::backward`].
    dlogit: Vec<f32>,
    adam_w: AdamSlot,
    adam_b: AdamSlot,
}

impl Head {
    fn new(fan_in: usize, batch: usize, rng: &mut Rng) -> Self {
        Head {
            w: Array1::from_shape_fn(fan_in, |_| rng.uniform(-0.2, 0.2)),
            b: Array1::zeros(1),
            gw: Array1::zeros(fan_in),
            gb: Array1::zeros(1),
            dlogit: vec![0.0; batch],
            adam_w: AdamSlot::new(fan_in),
            adam_b: AdamSlot::new(1),
        }
    }

    /// sigmoid([parts…]·w + b), one probability per row.
    fn forward(&self, parts: &[ArrayView2<'_, f32>], out: &mut [f32]) {
        for (b, o) in out.iter_mut().enumerate() {
            let mut z = self.b[0];
            let mut off = 0;
            for p in parts {
                z += p.row(b).dot(&self.w.slice(s![off..off + p.ncols()]));
                off += p.ncols();
            }
            *o = sigmoid(z);
        }
    }

    /// The gradients of w and b from the probabilities and the labels (sigmoid and binary
    /// cross-entropy fused: d/dlogit = (p − y) / batch).
    fn backward(&mut self, parts: &[ArrayView2<'_, f32>], probs: &[f32], y: ArrayView2<'_, f32>) {
        let bsz = probs.len();
        self.gb[0] = 0.0;
        self.gw.fill(0.0);
        for b in 0..bsz {
            let d = (probs[b] - y[[b, 0]]) / bsz as f32;
            self.dlogit[b] = d;
            self.gb[0] += d;
            let mut off = 0;
            for p in parts {
                self.gw.slice_mut(s![off..off + p.ncols()]).scaled_add(d, &p.row(b));
                off += p.ncols();
            }
        }
    }

    /// The gradient of the loss w.r.t. the part of the head's input at columns `off..off + dh.ncols()`.
    fn input_grad(&self, off: usize, dh: &mut Array2<f32>) {
        let units = dh.ncols();
        for (b, mut row) in dh.rows_mut().into_iter().enumerate() {
            row.assign(&self.w.slice(s![off..off + units]));
            row *= self.dlogit[b];
        }
    }

    fn adam(&mut self, t: i32) {
        self.adam_w.step(self.w.as_slice_mut().expect("owned"), self.gw.as_slice().expect("owned"), LR, t);
        self.adam_b.step(self.b.as_slice_mut().expect("owned"), self.gb.as_slice().expect("owned"), LR, t);
    }

    fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        vec![("dense/kernel".into(), self.w.as_slice_mut().expect("owned")), ("dense/bias".into(), self.b.as_slice_mut().expect("owned"))]
    }

    fn grads(&self) -> Vec<(String, &[f32])> {
        vec![("dense/kernel".into(), self.gw.as_slice().expect("owned")), ("dense/bias".into(), self.gb.as_slice().expect("owned"))]
    }
}

/// One LSTM direction (Keras' gate order i, f, c, o; kernel `[in, 4·units]`, recurrent kernel
/// `[units, 4·units]`, bias `[4·units]`) over the step-major rows of `x`, returning its last state.
struct Lstm {
    units: usize,
    batch: usize,
    /// Reads the sequence from its last step (the backward direction of a `Bidirectional`).
    reverse: bool,
    w: Array2<f32>,
    r: Array2<f32>,
    b: Array1<f32>,
    // Forward state, step-major (row s·batch + b); h and c have one more block, the initial state.
    x: Array2<f32>,
    xp: Array2<f32>,
    gates: Array2<f32>,
    h: Array2<f32>,
    c: Array2<f32>,
    tc: Array2<f32>,
    // Backward: `dh` is set to the gradient at the last state before `backward`.
    dz: Array2<f32>,
    dh: Array2<f32>,
    dh2: Array2<f32>,
    dc: Array2<f32>,
    dx: Array2<f32>,
    g_w: Array2<f32>,
    g_r: Array2<f32>,
    g_b: Array1<f32>,
    adam: [AdamSlot; 3],
}

impl Lstm {
    fn new(units: usize, batch: usize, reverse: bool, rng: &mut Rng) -> Self {
        let (gates, bt) = (4 * units, batch * STEPS);
        Lstm {
            units,
            batch,
            reverse,
            w: uniform(rng, EMBED, gates, 0.1),
            r: uniform(rng, units, gates, 0.1),
            b: Array1::zeros(gates),
            x: Array2::zeros((bt, EMBED)),
            xp: Array2::zeros((bt, gates)),
            gates: Array2::zeros((bt, gates)),
            h: Array2::zeros((bt + batch, units)),
            c: Array2::zeros((bt + batch, units)),
            tc: Array2::zeros((bt, units)),
            dz: Array2::zeros((bt, gates)),
            dh: Array2::zeros((batch, units)),
            dh2: Array2::zeros((batch, units)),
            dc: Array2::zeros((batch, units)),
            dx: Array2::zeros((bt, EMBED)),
            g_w: Array2::zeros((EMBED, gates)),
            g_r: Array2::zeros((units, gates)),
            g_b: Array1::zeros(gates),
            adam: [AdamSlot::new(EMBED * gates), AdamSlot::new(units * gates), AdamSlot::new(gates)],
        }
    }

    /// Runs every step over `x` (gathered by the caller), keeping what backward needs.
    fn forward(&mut self) {
        let (bsz, u) = (self.batch, self.units);
        general_mat_mul(1.0, &self.x, &self.w, 0.0, &mut self.xp);
        self.xp += &self.b;
        self.h.slice_mut(s![..bsz, ..]).fill(0.0);
        self.c.slice_mut(s![..bsz, ..]).fill(0.0);
        for t in 0..STEPS {
            let rows = t * bsz..(t + 1) * bsz;
            let mut z = self.gates.slice_mut(s![rows.clone(), ..]);
            z.assign(&self.xp.slice(s![rows.clone(), ..]));
            general_mat_mul(1.0, &self.h.slice(s![rows.clone(), ..]), &self.r, 1.0, &mut z);
            for b in 0..bsz {
                let k = t * bsz + b;
                for j in 0..u {
                    let i = sigmoid(self.gates[[k, j]]);
                    let f = sigmoid(self.gates[[k, u + j]]);
                    let g = self.gates[[k, 2 * u + j]].tanh();
                    let o = sigmoid(self.gates[[k, 3 * u + j]]);
                    self.gates[[k, j]] = i;
                    self.gates[[k, u + j]] = f;
                    self.gates[[k, 2 * u + j]] = g;
                    self.gates[[k, 3 * u + j]] = o;
                    let c = f * self.c[[k, j]] + i * g;
                    let tc = c.tanh();
                    self.c[[k + bsz, j]] = c;
                    self.tc[[k, j]] = tc;
                    self.h[[k + bsz, j]] = o * tc;
                }
            }
        }
    }

    /// The state after the last step, batch × units.
    fn last(&self) -> ArrayView2<'_, f32> {
        self.h.slice(s![STEPS * self.batch.., ..])
    }

    /// Backward through time from the gradient at the last state (in `dh`): dW, dR, db and dx.
    fn backward(&mut self) {
        let (bsz, u) = (self.batch, self.units);
        self.dc.fill(0.0);
        for t in (0..STEPS).rev() {
            for b in 0..bsz {
                let k = t * bsz + b;
                for j in 0..u {
                    let (i, f, g, o) = (self.gates[[k, j]], self.gates[[k, u + j]], self.gates[[k, 2 * u + j]], self.gates[[k, 3 * u + j]]);
                    let (dh, tc) = (self.dh[[b, j]], self.tc[[k, j]]);
                    let dc = self.dc[[b, j]] + dh * o * (1.0 - tc * tc);
                    self.dz[[k, j]] = dc * g * i * (1.0 - i);
                    self.dz[[k, u + j]] = dc * self.c[[k, j]] * f * (1.0 - f);
                    self.dz[[k, 2 * u + j]] = dc * i * (1.0 - g * g);
                    self.dz[[k, 3 * u + j]] = dh * tc * o * (1.0 - o);
                    self.dc[[b, j]] = dc * f;
                }
            }
            let rows = t * bsz..(t + 1) * bsz;
            general_mat_mul(1.0, &self.dz.slice(s![rows, ..]), &self.r.t(), 0.0, &mut self.dh2);
            std::mem::swap(&mut self.dh, &mut self.dh2);
        }
        let bt = STEPS * bsz;
        general_mat_mul(1.0, &self.x.t(), &self.dz, 0.0, &mut self.g_w);
        general_mat_mul(1.0, &self.h.slice(s![..bt, ..]).t(), &self.dz, 0.0, &mut self.g_r);
        for (g, col) in self.g_b.iter_mut().zip(self.dz.axis_iter(Axis(1))) {
            *g = col.sum();
        }
        general_mat_mul(1.0, &self.dz, &self.w.t(), 0.0, &mut self.dx);
    }

    fn adam(&mut self, t: i32) {
        let [aw, ar, ab] = &mut self.adam;
        aw.step(slice_mut(&mut self.w), slice(&self.g_w), LR, t);
        ar.step(slice_mut(&mut self.r), slice(&self.g_r), LR, t);
        ab.step(self.b.as_slice_mut().expect("owned"), self.g_b.as_slice().expect("owned"), LR, t);
    }

    fn params_mut(&mut self, layer: &str) -> Vec<(String, &mut [f32])> {
        vec![
            (format!("{layer}/lstm_cell/kernel"), slice_mut(&mut self.w)),
            (format!("{layer}/lstm_cell/recurrent_kernel"), slice_mut(&mut self.r)),
            (format!("{layer}/lstm_cell/bias"), self.b.as_slice_mut().expect("owned")),
        ]
    }

    fn grads(&self, layer: &str) -> Vec<(String, &[f32])> {
        vec![
            (format!("{layer}/lstm_cell/kernel"), slice(&self.g_w)),
            (format!("{layer}/lstm_cell/recurrent_kernel"), slice(&self.g_r)),
            (format!("{layer}/lstm_cell/bias"), self.g_b.as_slice().expect("owned")),
        ]
    }
}

/// One GRU direction as Keras 3 computes it with `reset_after = true` (gate order z, r, h; kernel
/// `[in, 3·units]`, recurrent kernel `[units, 3·units]`, bias `[2, 3·units]`: row 0 added to the
/// input projection, row 1 to the recurrent one, inside the reset gate's product for the candidate):
/// z = σ(x·W_z + b0_z + h·R_z + b1_z), r = σ(… r …), ĥ = tanh(x·W_h + b0_h + r ⊙ (h·R_h + b1_h)),
/// h' = z ⊙ h + (1 − z) ⊙ ĥ.
struct Gru {
    units: usize,
    batch: usize,
    w: Array2<f32>,
    r: Array2<f32>,
    b: Array2<f32>,
    // Forward, step-major; h has one more block, the initial state.
    x: Array2<f32>,
    xp: Array2<f32>,
    /// One step's h·R + b1.
    hr: Array2<f32>,
    /// z, r, ĥ of every step.
    gates: Array2<f32>,
    /// h·R_h + b1_h of every step (the candidate's backward needs it).
    hrh: Array2<f32>,
    h: Array2<f32>,
    // Backward: `dh` is set to the gradient at the last state before `backward`.
    dxp: Array2<f32>,
    dhr: Array2<f32>,
    dh: Array2<f32>,
    dx: Array2<f32>,
    g_w: Array2<f32>,
    g_r: Array2<f32>,
    g_b: Array2<f32>,
    adam: [AdamSlot; 3],
}

impl Gru {
    fn new(units: usize, batch: usize, rng: &mut Rng) -> Self {
        let (gates, bt) = (3 * units, batch * STEPS);
        Gru {
            units,
            batch,
            w: uniform(rng, EMBED, gates, 0.1),
            r: uniform(rng, units, gates, 0.1),
            b: Array2::zeros((2, gates)),
            x: Array2::zeros((bt, EMBED)),
            xp: Array2::zeros((bt, gates)),
            hr: Array2::zeros((batch, gates)),
            gates: Array2::zeros((bt, gates)),
            hrh: Array2::zeros((bt, units)),
            h: Array2::zeros((bt + batch, units)),
            dxp: Array2::zeros((bt, gates)),
            dhr: Array2::zeros((bt, gates)),
            dh: Array2::zeros((batch, units)),
            dx: Array2::zeros((bt, EMBED)),
            g_w: Array2::zeros((EMBED, gates)),
            g_r: Array2::zeros((units, gates)),
            g_b: Array2::zeros((2, gates)),
            adam: [AdamSlot::new(EMBED * gates), AdamSlot::new(units * gates), AdamSlot::new(2 * gates)],
        }
    }

    /// Runs every step over `x` (gathered by the caller), keeping what backward needs.
    fn forward(&mut self) {
        let (bsz, u) = (self.batch, self.units);
        general_mat_mul(1.0, &self.x, &self.w, 0.0, &mut self.xp);
        self.xp += &self.b.row(0);
        self.h.slice_mut(s![..bsz, ..]).fill(0.0);
        for t in 0..STEPS {
            let rows = t * bsz..(t + 1) * bsz;
            general_mat_mul(1.0, &self.h.slice(s![rows, ..]), &self.r, 0.0, &mut self.hr);
            self.hr += &self.b.row(1);
            for b in 0..bsz {
                let k = t * bsz + b;
                for j in 0..u {
                    let z = sigmoid(self.xp[[k, j]] + self.hr[[b, j]]);
                    let r = sigmoid(self.xp[[k, u + j]] + self.hr[[b, u + j]]);
                    let hrh = self.hr[[b, 2 * u + j]];
                    let hh = (self.xp[[k, 2 * u + j]] + r * hrh).tanh();
                    self.gates[[k, j]] = z;
                    self.gates[[k, u + j]] = r;
                    self.gates[[k, 2 * u + j]] = hh;
                    self.hrh[[k, j]] = hrh;
                    self.h[[k + bsz, j]] = z * self.h[[k, j]] + (1.0 - z) * hh;
                }
            }
        }
    }

    /// The state after the last step, batch × units.
    fn last(&self) -> ArrayView2<'_, f32> {
        self.h.slice(s![STEPS * self.batch.., ..])
    }

    /// Backward through time from the gradient at the last state (in `dh`): dW, dR, db and dx.
    fn backward(&mut self) {
        let (bsz, u) = (self.batch, self.units);
        for t in (0..STEPS).rev() {
            for b in 0..bsz {
                let k = t * bsz + b;
                for j in 0..u {
                    let (z, r, hh) = (self.gates[[k, j]], self.gates[[k, u + j]], self.gates[[k, 2 * u + j]]);
                    let dh = self.dh[[b, j]];
                    let dz = dh * (self.h[[k, j]] - hh) * z * (1.0 - z);
                    let dhh = dh * (1.0 - z) * (1.0 - hh * hh);
                    let dr = dhh * self.hrh[[k, j]] * r * (1.0 - r);
                    self.dxp[[k, j]] = dz;
                    self.dxp[[k, u + j]] = dr;
                    self.dxp[[k, 2 * u + j]] = dhh;
                    self.dhr[[k, j]] = dz;
                    self.dhr[[k, u + j]] = dr;
                    self.dhr[[k, 2 * u + j]] = dhh * r;
                    // The state's direct path into the next one; its path through h·R is added below.
                    self.dh[[b, j]] = dh * z;
                }
            }
            let rows = t * bsz..(t + 1) * bsz;
            general_mat_mul(1.0, &self.dhr.slice(s![rows, ..]), &self.r.t(), 1.0, &mut self.dh);
        }
        let bt = STEPS * bsz;
        general_mat_mul(1.0, &self.x.t(), &self.dxp, 0.0, &mut self.g_w);
        general_mat_mul(1.0, &self.h.slice(s![..bt, ..]).t(), &self.dhr, 0.0, &mut self.g_r);
        for (row, d) in [(0, &self.dxp), (1, &self.dhr)] {
            for (g, col) in self.g_b.row_mut(row).iter_mut().zip(d.axis_iter(Axis(1))) {
                *g = col.sum();
            }
        }
        general_mat_mul(1.0, &self.dxp, &self.w.t(), 0.0, &mut self.dx);
    }

    fn adam(&mut self, t: i32) {
        let [aw, ar, ab] = &mut self.adam;
        aw.step(slice_mut(&mut self.w), slice(&self.g_w), LR, t);
        ar.step(slice_mut(&mut self.r), slice(&self.g_r), LR, t);
        ab.step(slice_mut(&mut self.b), slice(&self.g_b), LR, t);
    }

    fn params_mut(&mut self, layer: &str) -> Vec<(String, &mut [f32])> {
        vec![
            (format!("{layer}/gru_cell/kernel"), slice_mut(&mut self.w)),
            (format!("{layer}/gru_cell/recurrent_kernel"), slice_mut(&mut self.r)),
            (format!("{layer}/gru_cell/bias"), slice_mut(&mut self.b)),
        ]
    }

    fn grads(&self, layer: &str) -> Vec<(String, &[f32])> {
        vec![
            (format!("{layer}/gru_cell/kernel"), slice(&self.g_w)),
            (format!("{layer}/gru_cell/recurrent_kernel"), slice(&self.g_r)),
            (format!("{layer}/gru_cell/bias"), slice(&self.g_b)),
        ]
    }
}

/// R1: Embedding(1000, 64) → LSTM(128) → Dense(1, sigmoid).
pub struct LstmModel {
    emb: Embedding,
    lstm: Lstm,
    head: Head,
    t: i32,
}

impl LstmModel {
    /// Random weights (the test loads modelc's), buffers for `batch` rows.
    pub fn new(batch: usize) -> Self {
        let mut rng = Rng::new(5);
        LstmModel {
            emb: Embedding::new(&mut rng),
            lstm: Lstm::new(128, batch, false, &mut rng),
            head: Head::new(128, batch, &mut rng),
            t: 0,
        }
    }

    /// The probabilities of the batch, one per row.
    pub fn forward(&mut self, tokens: ArrayView2<'_, i32>, out: &mut [f32]) {
        self.emb.gather(tokens, false, &mut self.lstm.x);
        self.lstm.forward();
        self.head.forward(&[self.lstm.last()], out);
    }

    /// Forward, binary cross-entropy gradient, backward through time, one Adam step.
    pub fn train_step(&mut self, tokens: ArrayView2<'_, i32>, y: ArrayView2<'_, f32>, probs: &mut [f32]) {
        self.forward(tokens, probs);
        self.head.backward(&[self.lstm.last()], probs, y);
        self.head.input_grad(0, &mut self.lstm.dh);
        self.lstm.backward();
        self.emb.grad.fill(0.0);
        self.emb.scatter(tokens, false, &self.lstm.dx);
        self.t += 1;
        self.emb.adam(self.t);
        self.lstm.adam(self.t);
        self.head.adam(self.t);
    }

    /// Every weight under its Keras name, in its Keras layout flattened.
    pub fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice_mut(&mut self.emb.table))];
        out.extend(self.lstm.params_mut("lstm"));
        out.extend(self.head.params_mut());
        out
    }

    /// The gradient of every weight from the last training step, named as in [`LstmModel::params_mut`].
    pub fn grads(&self) -> Vec<(String, &[f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice(&self.emb.grad))];
        out.extend(self.lstm.grads("lstm"));
        out.extend(self.head.grads());
        out
    }
}

/// R2: Embedding(1000, 64) → GRU(128) → Dense(1, sigmoid).
pub struct GruModel {
    emb: Embedding,
    gru: Gru,
    head: Head,
    t: i32,
}

impl GruModel {
    /// Random weights (the test loads modelc's), buffers for `batch` rows.
    pub fn new(batch: usize) -> Self {
        let mut rng = Rng::new(5);
        GruModel { emb: Embedding::new(&mut rng), gru: Gru::new(128, batch, &mut rng), head: Head::new(128, batch, &mut rng), t: 0 }
    }

    /// The probabilities of the batch, one per row.
    pub fn forward(&mut self, tokens: ArrayView2<'_, i32>, out: &mut [f32]) {
        self.emb.gather(tokens, false, &mut self.gru.x);
        self.gru.forward();
        self.head.forward(&[self.gru.last()], out);
    }

    /// Forward, binary cross-entropy gradient, backward through time, one Adam step.
    pub fn train_step(&mut self, tokens: ArrayView2<'_, i32>, y: ArrayView2<'_, f32>, probs: &mut [f32]) {
        self.forward(tokens, probs);
        self.head.backward(&[self.gru.last()], probs, y);
        self.head.input_grad(0, &mut self.gru.dh);
        self.gru.backward();
        self.emb.grad.fill(0.0);
        self.emb.scatter(tokens, false, &self.gru.dx);
        self.t += 1;
        self.emb.adam(self.t);
        self.gru.adam(self.t);
        self.head.adam(self.t);
    }

    /// Every weight under its Keras name, in its Keras layout flattened.
    pub fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice_mut(&mut self.emb.table))];
        out.extend(self.gru.params_mut("gru"));
        out.extend(self.head.params_mut());
        out
    }

    /// The gradient of every weight from the last training step, named as in [`GruModel::params_mut`].
    pub fn grads(&self) -> Vec<(String, &[f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice(&self.emb.grad))];
        out.extend(self.gru.grads("gru"));
        out.extend(self.head.grads());
        out
    }
}

/// R3: Embedding(1000, 64) → Bidirectional(LSTM(64)) (merge concat: [forward's last state,
/// backward's last state], the backward direction stepping from the sequence's last token to its
/// first) → Dense(1, sigmoid).
pub struct BiLstmModel {
    emb: Embedding,
    fwd: Lstm,
    bwd: Lstm,
    head: Head,
    t: i32,
}

impl BiLstmModel {
    /// Random weights (the test loads modelc's), buffers for `batch` rows.
    pub fn new(batch: usize) -> Self {
        let mut rng = Rng::new(5);
        BiLstmModel {
            emb: Embedding::new(&mut rng),
            fwd: Lstm::new(64, batch, false, &mut rng),
            bwd: Lstm::new(64, batch, true, &mut rng),
            head: Head::new(128, batch, &mut rng),
            t: 0,
        }
    }

    /// The probabilities of the batch, one per row.
    pub fn forward(&mut self, tokens: ArrayView2<'_, i32>, out: &mut [f32]) {
        self.emb.gather(tokens, self.fwd.reverse, &mut self.fwd.x);
        self.emb.gather(tokens, self.bwd.reverse, &mut self.bwd.x);
        self.fwd.forward();
        self.bwd.forward();
        self.head.forward(&[self.fwd.last(), self.bwd.last()], out);
    }

    /// Forward, binary cross-entropy gradient, backward through time in both directions, one Adam step.
    pub fn train_step(&mut self, tokens: ArrayView2<'_, i32>, y: ArrayView2<'_, f32>, probs: &mut [f32]) {
        self.forward(tokens, probs);
        self.head.backward(&[self.fwd.last(), self.bwd.last()], probs, y);
        self.head.input_grad(0, &mut self.fwd.dh);
        self.head.input_grad(self.fwd.units, &mut self.bwd.dh);
        self.fwd.backward();
        self.bwd.backward();
        self.emb.grad.fill(0.0);
        self.emb.scatter(tokens, self.fwd.reverse, &self.fwd.dx);
        self.emb.scatter(tokens, self.bwd.reverse, &self.bwd.dx);
        self.t += 1;
        self.emb.adam(self.t);
        self.fwd.adam(self.t);
        self.bwd.adam(self.t);
        self.head.adam(self.t);
    }

    /// Every weight under its Keras name, in its Keras layout flattened.
    pub fn params_mut(&mut self) -> Vec<(String, &mut [f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice_mut(&mut self.emb.table))];
        out.extend(self.fwd.params_mut("bidirectional/forward_lstm"));
        out.extend(self.bwd.params_mut("bidirectional/backward_lstm"));
        out.extend(self.head.params_mut());
        out
    }

    /// The gradient of every weight from the last training step, named as in [`BiLstmModel::params_mut`].
    pub fn grads(&self) -> Vec<(String, &[f32])> {
        let mut out = vec![("embedding/embeddings".to_string(), slice(&self.emb.grad))];
        out.extend(self.fwd.grads("bidirectional/forward_lstm"));
        out.extend(self.bwd.grads("bidirectional/backward_lstm"));
        out.extend(self.head.grads());
        out
    }
}
