//! Keras 3 `Attention`: dot-product (or additive "concat") attention of a query over a value, with
//! no projections. Per sample, `q [tq, dim]`, `k [tv, dim]`, `v [tv, dv]`:
//!
//! - `dot`: `S = Q Kᵀ`, times the scalar `scale` with `use_scale`;
//! - `concat`: `S[i, j] = concat_score_weight · Σ_d tanh(scale · (q[i, d] + k[j, d]))` (scale 1 without
//!   `use_scale`);
//!
//! then, as Keras does, `1e9` subtracted (once) from the masked scores (causal: key index after query
//! index; a value step its mask leaves out), `P = softmax(S)` over the values, dropout on `P` in
//! training, and `y = P' V`, set to 0 at the query steps the query's mask leaves out. The scores Keras
//! returns with `return_attention_scores = True` are `P'` (after dropout, as Keras' `_apply_scores`
//! returns them; the query mask does not touch them).
//!
//! Forward keeps `P [tq, tv]` per sample (before dropout) and, with dropout, `P'` after it (the
//! dropout factors are a stateless hash of (seed, step, position), regenerated in backward). Backward computes `dQ`, `dK`, `dV` into a working
//! buffer, which [`backward_input`] then adds to each operand's gradient (one operand may be query,
//! key and value at once).

use super::gemm::sgemm;

/// What Keras subtracts from a masked score.
const MASKED: f32 = 1e9;

/// The sizes and options of one `Attention` call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Attn {
    /// Query positions per sample.
    pub tq: usize,
    /// Key/value positions per sample.
    pub tv: usize,
    /// Query and key features.
    pub dim: usize,
    /// Value features (the output's).
    pub dv: usize,
    /// `score_mode = "concat"` (else `"dot"`).
    pub concat: bool,
    /// Whether a position may only attend to keys at or before its own index.
    pub causal: bool,
    /// Dropout rate on the attention probabilities (training only).
    pub dropout: f32,
    /// Dropout seed of the layer.
    pub seed: u64,
}

/// Which operand a gradient goes to, for [`backward_input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operand {
    /// The query.
    Query,
    /// The key.
    Key,
    /// The value.
    Value,
}

/// The scalar parameters: `scale` with `use_scale`, `concat_score_weight` with `score_mode = "concat"`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scalars<'a> {
    /// `scale` (shape `[]`).
    pub scale: Option<&'a [f32]>,
    /// `concat_score_weight` (shape `[]`).
    pub concat_weight: Option<&'a [f32]>,
}

/// Their gradients, accumulated into.
#[derive(Debug, Default)]
pub struct ScalarGrads<'a> {
    /// d `scale`.
    pub scale: Option<&'a mut [f32]>,
    /// d `concat_score_weight`.
    pub concat_weight: Option<&'a mut [f32]>,
}

/// The padding masks of the query and the value (`[batch, tq]` and `[batch, tv]`, 1.0 kept, 0.0
/// masked), as Keras' `Attention.call(inputs, mask = [query_mask, value_mask])` reads them.
#[derive(Clone, Copy, Debug, Default)]
pub struct Masks<'a> {
    /// The query's mask: a masked query step's output is 0.
    pub query: Option<&'a [f32]>,
    /// The value's mask: a masked value step gets score − 1e9.
    pub value: Option<&'a [f32]>,
}

impl<'a> Masks<'a> {
    /// The query mask of sample `s` (`tq` long), if any.
    fn query_row(&self, m: &Attn, s: usize) -> Option<&'a [f32]> {
        self.query.map(|q| &q[s * m.tq..][..m.tq])
    }

    /// The value mask of sample `s` (`tv` long), if any.
    fn value_row(&self, m: &Attn, s: usize) -> Option<&'a [f32]> {
        self.value.map(|v| &v[s * m.tv..][..m.tv])
    }
}

/// The runs `[a, b)` of consecutive kept query steps (all of them without a mask).
fn kept_runs(mask: Option<&[f32]>, n: usize) -> impl Iterator<Item = (usize, usize)> + '_ {
    let kept = move |i: usize| mask.is_none_or(|m| m[i] != 0.0);
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < n && !kept(i) {
            i += 1;
        }
        if i >= n {
            return None;
        }
        let a = i;
        while i < n && kept(i) {
            i += 1;
        }
        Some((a, i))
    })
}

fn first(s: Option<&[f32]>) -> Option<f32> {
    s.and_then(|v| v.first().copied())
}

impl Attn {
    /// Per-sample length of the forward scratch: `P`, and `P'` with dropout.
    pub fn keep_len(&self) -> usize {
        let tt = self.tq * self.tv;
        if self.dropout > 0.0 {
            2 * tt
        } else {
            tt
        }
    }

    /// Per-sample length of backward's working space: `dQ | dK | dV | dP`.
    pub fn tmp_len(&self) -> usize {
        self.tq * self.dim + self.tv * self.dim + self.tv * self.dv + self.tq * self.tv
    }

    fn drops(&self, training: bool) -> bool {
        training && self.dropout > 0.0
    }

    /// The dropout stream of a training step (Dropout's).
    fn stream(&self, step: u64) -> u64 {
        super::dropout::stream(self.seed, step)
    }

    /// The dropout factor (0 or 1 / (1 − rate)) of probability `idx` of the batch at one step.
    fn keep_factor(&self, stream: u64, idx: usize) -> f32 {
        super::dropout::keep_factor(stream, idx as u64, self.dropout)
    }

    /// The raw scores `S [tq, tv]` of one sample, unmasked.
    fn scores(&self, q: &[f32], k: &[f32], p: &Scalars<'_>, s: &mut [f32]) {
        let scale = first(p.scale);
        if self.concat {
            let (a, c) = (scale.unwrap_or(1.0), first(p.concat_weight).unwrap_or(1.0));
            for (i, row) in s.chunks_exact_mut(self.tv).enumerate() {
                let qi = &q[i * self.dim..][..self.dim];
                for (j, sv) in row.iter_mut().enumerate() {
                    let kj = &k[j * self.dim..][..self.dim];
                    *sv = c * qi.iter().zip(kj).map(|(x, y)| (a * (x + y)).tanh()).sum::<f32>();
                }
            }
        } else {
            sgemm(self.tq, self.dim, self.tv, scale.unwrap_or(1.0), q, false, k, true, 0.0, s);
        }
    }

    /// Masked softmax of one sample's scores in place: Keras' `where(not(v_mask & causal), s − 1e9, s)`.
    fn softmax(&self, s: &mut [f32], vmask: Option<&[f32]>) {
        for (i, row) in s.chunks_exact_mut(self.tv).enumerate() {
            for (j, v) in row.iter_mut().enumerate() {
                if (self.causal && j > i) || vmask.is_some_and(|m| m[j] == 0.0) {
                    *v -= MASKED;
                }
            }
            let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for v in row.iter_mut() {
                *v = (*v - max).exp();
                sum += *v;
            }
            let inv = 1.0 / sum;
            row.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// Forward over `batch` samples: `q [batch, tq, dim]`, `k [batch, tv, dim]`, `v [batch, tv, dv]` into
/// `y [batch, tq, dv]`, keeping the probabilities in `keep` (`batch ·` [`Attn::keep_len`]) and, when
/// given, writing the returned scores `[batch, tq, tv]` (after dropout) to `scores`. `masks` are the
/// query's and value's padding masks. Dropout (training only) draws from (seed, `step`, position), the
/// position counted within the global batch: sample 0 is row `first_row` of it (not 0 when this is one
/// rank's share of a data-parallel step), so the ranks draw together the masks one process draws.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    m: &Attn,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &Scalars<'_>,
    masks: &Masks<'_>,
    step: u64,
    first_row: usize,
    training: bool,
    keep: &mut [f32],
    y: &mut [f32],
    mut scores: Option<&mut [f32]>,
    batch: usize,
) {
    let (tt, n) = (m.tq * m.tv, m.keep_len());
    let stream = m.drops(training).then(|| m.stream(step));
    for s in 0..batch {
        let (qs, ks, vs) =
            (&q[s * m.tq * m.dim..][..m.tq * m.dim], &k[s * m.tv * m.dim..][..m.tv * m.dim], &v[s * m.tv * m.dv..][..m.tv * m.dv]);
        let (ps, dropped) = keep[s * n..][..n].split_at_mut(tt);
        m.scores(qs, ks, p, ps);
        m.softmax(ps, masks.value_row(m, s));
        let used: &[f32] = match stream {
            Some(st) => {
                for (idx, (d, &pv)) in dropped.iter_mut().zip(ps.iter()).enumerate() {
                    *d = pv * m.keep_factor(st, (first_row + s) * tt + idx);
                }
                dropped
            }
            None => ps,
        };
        let ys = &mut y[s * m.tq * m.dv..][..m.tq * m.dv];
        sgemm(m.tq, m.tv, m.dv, 1.0, used, false, vs, false, 0.0, ys);
        if let Some(qm) = masks.query_row(m, s) {
            // Keras: `where(q_mask[..., None], output, 0)`.
            ys.chunks_exact_mut(m.dv).zip(qm).filter(|(_, &k)| k == 0.0).for_each(|(r, _)| r.fill(0.0));
        }
        if let Some(o) = scores.as_deref_mut() {
            o[s * tt..][..tt].copy_from_slice(used);
        }
    }
}

/// Backward over `batch` samples: accumulates the scalar parameters' gradients and leaves dQ, dK and dV
/// of every sample in `tmp` (`batch ·` [`Attn::tmp_len`]) for [`backward_input`]. `dscores` is the
/// gradient of the returned scores when the call returns them. The value's mask needs no work here (a
/// masked score's gradient is the softmax's, as in Keras' `where`); a masked query step's output was
/// set to 0, so its `dY` row is left out.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    m: &Attn,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &Scalars<'_>,
    masks: &Masks<'_>,
    step: u64,
    first_row: usize,
    training: bool,
    keep: &[f32],
    dy: &[f32],
    dscores: Option<&[f32]>,
    g: ScalarGrads<'_>,
    tmp: &mut [f32],
    batch: usize,
) {
    let tt = m.tq * m.tv;
    let stream = m.drops(training).then(|| m.stream(step));
    let ScalarGrads { scale: mut gscale, concat_weight: mut gconcat } = g;
    let (scale, cw) = (first(p.scale), first(p.concat_weight));
    let n = m.tmp_len();
    for s in 0..batch {
        let (qs, ks, vs) =
            (&q[s * m.tq * m.dim..][..m.tq * m.dim], &k[s * m.tv * m.dim..][..m.tv * m.dim], &v[s * m.tv * m.dv..][..m.tv * m.dv]);
        let kp = &keep[s * m.keep_len()..][..m.keep_len()];
        let ps = &kp[..tt];
        let dys = &dy[s * m.tq * m.dv..][..m.tq * m.dv];
        let tp = &mut tmp[s * n..][..n];
        let (dq, rest) = tp.split_at_mut(m.tq * m.dim);
        let (dk, rest) = rest.split_at_mut(m.tv * m.dim);
        let (dv, dp) = rest.split_at_mut(m.tv * m.dv);
        // y = P' V: dV = P'ᵀ dY, dP' = dY Vᵀ (+ the returned scores' gradient), dP = dP' ⊙ factors.
        let used = if stream.is_some() { &kp[tt..] } else { ps };
        let qm = masks.query_row(m, s);
        if qm.is_some() {
            // Only the kept query steps' rows of dY reach dV and dP.
            dv.fill(0.0);
            dp.fill(0.0);
            for (a, b) in kept_runs(qm, m.tq) {
                let (rows, u, d) = (b - a, &used[a * m.tv..b * m.tv], &dys[a * m.dv..b * m.dv]);
                sgemm(m.tv, rows, m.dv, 1.0, u, true, d, false, 1.0, dv);
                sgemm(rows, m.dv, m.tv, 1.0, d, false, vs, true, 0.0, &mut dp[a * m.tv..b * m.tv]);
            }
        } else {
            sgemm(m.tv, m.tq, m.dv, 1.0, used, true, dys, false, 0.0, dv);
            sgemm(m.tq, m.dv, m.tv, 1.0, dys, false, vs, true, 0.0, dp);
        }
        if let Some(ds) = dscores {
            dp.iter_mut().zip(&ds[s * tt..][..tt]).for_each(|(d, &g)| *d += g);
        }
        if let Some(st) = stream {
            dp.iter_mut().enumerate().for_each(|(idx, d)| *d *= m.keep_factor(st, (first_row + s) * tt + idx));
        }
        // Softmax: dS = P ⊙ (dP − Σ_j P dP).
        for (dr, pr) in dp.chunks_exact_mut(m.tv).zip(ps.chunks_exact(m.tv)) {
            let dot: f32 = dr.iter().zip(pr).map(|(d, p)| d * p).sum();
            dr.iter_mut().zip(pr).for_each(|(d, &p)| *d = p * (*d - dot));
        }
        if m.concat {
            concat_backward(m, qs, ks, scale, cw, dp, dq, dk, gscale.as_deref_mut(), gconcat.as_deref_mut());
        } else {
            // S = a Q Kᵀ: G = dS K, dQ = a G, dK = a dSᵀ Q, da = Σ Q ⊙ G.
            sgemm(m.tq, m.tv, m.dim, 1.0, dp, false, ks, false, 0.0, dq);
            if let Some(gs) = gscale.as_deref_mut().and_then(|g| g.first_mut()) {
                *gs += qs.iter().zip(dq.iter()).map(|(a, b)| a * b).sum::<f32>();
            }
            let a = scale.unwrap_or(1.0);
            dq.iter_mut().for_each(|x| *x *= a);
            sgemm(m.tv, m.tq, m.dim, a, dp, true, qs, false, 0.0, dk);
        }
    }
}

/// The concat scores' backward for one sample: `S[i, j] = c Σ_d tanh(a (q[i, d] + k[j, d]))`.
#[allow(clippy::too_many_arguments)]
fn concat_backward(
    m: &Attn,
    q: &[f32],
    k: &[f32],
    scale: Option<f32>,
    cw: Option<f32>,
    ds: &[f32],
    dq: &mut [f32],
    dk: &mut [f32],
    gscale: Option<&mut [f32]>,
    gconcat: Option<&mut [f32]>,
) {
    let (a, c) = (scale.unwrap_or(1.0), cw.unwrap_or(1.0));
    dq.fill(0.0);
    dk.fill(0.0);
    let (mut da, mut dc) = (0.0f32, 0.0f32);
    for i in 0..m.tq {
        let qi = &q[i * m.dim..][..m.dim];
        for j in 0..m.tv {
            let kj = &k[j * m.dim..][..m.dim];
            let d = ds[i * m.tv + j];
            for (e, (&x, &y)) in qi.iter().zip(kj).enumerate() {
                let t = (a * (x + y)).tanh();
                dc += d * t;
                let gt = d * c * (1.0 - t * t);
                da += gt * (x + y);
                dq[i * m.dim + e] += gt * a;
                dk[j * m.dim + e] += gt * a;
            }
        }
    }
    if let Some(g) = gscale.and_then(|g| g.first_mut()) {
        *g += da;
    }
    if let Some(g) = gconcat.and_then(|g| g.first_mut()) {
        *g += dc;
    }
}

/// Adds one operand's gradient (`dx [batch, t, features] +=` the dQ, dK or dV that [`backward`] left
/// in `tmp`). Called once per operand, so an operand that is query, key and value gets all three.
pub fn backward_input(m: &Attn, which: Operand, tmp: &[f32], dx: &mut [f32], batch: usize) {
    let (off, len) = match which {
        Operand::Query => (0, m.tq * m.dim),
        Operand::Key => (m.tq * m.dim, m.tv * m.dim),
        Operand::Value => (m.tq * m.dim + m.tv * m.dim, m.tv * m.dv),
    };
    let n = m.tmp_len();
    for s in 0..batch {
        let src = &tmp[s * n + off..][..len];
        dx[s * len..][..len].iter_mut().zip(src).for_each(|(d, &g)| *d += g);
    }
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn filled(n: usize, seed: u64) -> Vec<f32> {
        (0..n).map(|i| crate::init::hash_uniform(seed, i as u64) * 2.0 - 1.0).collect()
    }

    /// Σ r ⊙ y + Σ rs ⊙ scores at a fixed training step.
    #[allow(clippy::too_many_arguments)]
    fn objective(m: &Attn, x: &[Vec<f32>; 3], w: &[Vec<f32>; 2], mk: &Masks<'_>, r: &[f32], rs: &[f32], batch: usize) -> f64 {
        let p = Scalars { scale: Some(&w[0]), concat_weight: m.concat.then_some(&w[1][..]) };
        let mut keep = vec![0.0; batch * m.keep_len()];
        let mut y = vec![0.0; batch * m.tq * m.dv];
        let mut sc = vec![0.0; batch * m.tq * m.tv];
        forward(m, &x[0], &x[1], &x[2], &p, mk, 5, 0, true, &mut keep, &mut y, Some(&mut sc), batch);
        let a: f64 = y.iter().zip(r).map(|(a, b)| f64::from(a * b)).sum();
        a + sc.iter().zip(rs).map(|(a, b)| f64::from(a * b)).sum::<f64>()
    }

    #[test]
    fn a_share_of_the_batch_draws_the_dropout_masks_of_the_whole_batch() {
        // Rows 1..3 of a batch of 3 (first_row 1) get the outputs, scores and gradients one process
        // computes for them.
        let m = Attn { tq: 3, tv: 4, dim: 2, dv: 3, concat: false, causal: false, dropout: 0.5, seed: 7 };
        let x = [filled(3 * m.tq * m.dim, 1), filled(3 * m.tv * m.dim, 2), filled(3 * m.tv * m.dv, 3)];
        let dy = filled(3 * m.tq * m.dv, 4);
        let w = [vec![0.7f32], vec![1.3f32]];
        let run = |rows: std::ops::Range<usize>, first_row: usize| {
            let b = rows.len();
            let part = |v: &[f32], per: usize| v[rows.start * per..rows.end * per].to_vec();
            let (q, k, v) = (part(&x[0], m.tq * m.dim), part(&x[1], m.tv * m.dim), part(&x[2], m.tv * m.dv));
            let p = Scalars { scale: Some(&w[0]), concat_weight: None };
            let (mut keep, mut y, mut sc) = (vec![0.0; b * m.keep_len()], vec![0.0; b * m.tq * m.dv], vec![0.0; b * m.tq * m.tv]);
            forward(&m, &q, &k, &v, &p, &Masks::default(), 3, first_row, true, &mut keep, &mut y, Some(&mut sc), b);
            let mut tmp = vec![0.0; b * m.tmp_len()];
            let mut gs = vec![0.0f32];
            let g = ScalarGrads { scale: Some(&mut gs), concat_weight: None };
            backward(&m, &q, &k, &v, &p, &Masks::default(), 3, first_row, true, &keep, &part(&dy, m.tq * m.dv), None, g, &mut tmp, b);
            (y, sc, tmp)
        };
        let (y, sc, tmp) = run(0..3, 0);
        let (ys, scs, tmps) = run(1..3, 1);
        assert_eq!(ys, y[m.tq * m.dv..]);
        assert_eq!(scs, sc[m.tq * m.tv..]);
        assert_eq!(tmps, tmp[m.tmp_len()..]);
        let (local, ..) = run(1..3, 0);
        assert_ne!(local, y[m.tq * m.dv..], "keyed by the row of the share, the masks differ");
    }

    fn check(m: Attn, mk: &Masks<'_>) {
        let batch = 2;
        let mut x = [filled(batch * m.tq * m.dim, 1), filled(batch * m.tv * m.dim, 2), filled(batch * m.tv * m.dv, 3)];
        let mut w = [vec![0.7f32], vec![1.3f32]];
        let r = filled(batch * m.tq * m.dv, 4);
        let rs = filled(batch * m.tq * m.tv, 5);
        let p = Scalars { scale: Some(&w[0]), concat_weight: m.concat.then_some(&w[1][..]) };
        let mut keep = vec![0.0; batch * m.keep_len()];
        let mut y = vec![0.0; batch * m.tq * m.dv];
        let mut sc = vec![0.0; batch * m.tq * m.tv];
        forward(&m, &x[0], &x[1], &x[2], &p, mk, 5, 0, true, &mut keep, &mut y, Some(&mut sc), batch);
        let mut tmp = vec![0.0; batch * m.tmp_len()];
        let (mut gs, mut gc) = (vec![0.0f32], vec![0.0f32]);
        let g = ScalarGrads { scale: Some(&mut gs), concat_weight: m.concat.then_some(&mut gc[..]) };
        backward(&m, &x[0], &x[1], &x[2], &p, mk, 5, 0, true, &keep, &r, Some(&rs), g, &mut tmp, batch);
        let mut dx = [vec![0.0; x[0].len()], vec![0.0; x[1].len()], vec![0.0; x[2].len()]];
        for (t, which) in [Operand::Query, Operand::Key, Operand::Value].into_iter().enumerate() {
            backward_input(&m, which, &tmp, &mut dx[t], batch);
        }
        let eps = 1e-2f32;
        let close = |a: f32, n: f64, what: &str| {
            let n = n as f32;
            assert!((a - n).abs() <= 2e-3 + 2e-2 * a.abs().max(n.abs()), "{what}: analytic {a} vs numeric {n}");
        };
        for t in 0..3 {
            for i in 0..x[t].len() {
                let orig = x[t][i];
                x[t][i] = orig + eps;
                let up = objective(&m, &x, &w, mk, &r, &rs, batch);
                x[t][i] = orig - eps;
                let down = objective(&m, &x, &w, mk, &r, &rs, batch);
                x[t][i] = orig;
                close(dx[t][i], (up - down) / (2.0 * f64::from(eps)), &format!("{m:?} input {t}[{i}]"));
            }
        }
        let analytic = [gs[0], gc[0]];
        for t in 0..if m.concat { 2 } else { 1 } {
            let orig = w[t][0];
            w[t][0] = orig + eps;
            let up = objective(&m, &x, &w, mk, &r, &rs, batch);
            w[t][0] = orig - eps;
            let down = objective(&m, &x, &w, mk, &r, &rs, batch);
            w[t][0] = orig;
            close(analytic[t], (up - down) / (2.0 * f64::from(eps)), &format!("{m:?} scalar {t}"));
        }
    }

    #[test]
    fn dot_and_concat_gradients_with_dropout_causality_and_scores_match_finite_differences() {
        let base = Attn { tq: 3, tv: 4, dim: 3, dv: 2, concat: false, causal: false, dropout: 0.0, seed: 9 };
        let none = Masks::default();
        check(base, &none);
        check(Attn { causal: true, dropout: 0.3, ..base }, &none);
        check(Attn { concat: true, ..base }, &none);
        check(Attn { concat: true, causal: true, dropout: 0.3, ..base }, &none);
    }

    /// Query steps masked in two runs (sample 0) and at the end (1); value steps masked first and in
    /// between.
    const QMASK: [f32; 6] = [0.0, 1.0, 0.0, 1.0, 1.0, 0.0];
    const VMASK: [f32; 8] = [0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0];
    /// With the causal mask a row whose every key is masked has scores s − 1e9 that f32 rounds to one
    /// value, which finite differences cannot see (its analytic gradient is the softmax's, as Keras'
    /// autodiff of `where`; tests/sequence_parity.rs checks it against Keras): the first key is kept.
    const VMASK_CAUSAL: [f32; 8] = [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 1.0, 1.0];

    #[test]
    fn padding_masks_gradients_match_finite_differences() {
        let base = Attn { tq: 3, tv: 4, dim: 3, dv: 2, concat: false, causal: false, dropout: 0.0, seed: 9 };
        let both = Masks { query: Some(&QMASK), value: Some(&VMASK) };
        check(base, &both);
        check(Attn { causal: true, dropout: 0.3, ..base }, &Masks { query: Some(&QMASK), value: Some(&VMASK_CAUSAL) });
        check(Attn { concat: true, causal: true, ..base }, &Masks { query: Some(&QMASK), value: None });
        check(base, &Masks { query: None, value: Some(&VMASK) });
    }

    #[test]
    fn masked_queries_output_zero_and_masked_values_get_no_weight() {
        let m = Attn { tq: 3, tv: 4, dim: 2, dv: 2, concat: false, causal: false, dropout: 0.0, seed: 0 };
        let (q, k, v) = (filled(12, 1), filled(16, 2), filled(16, 3));
        let mut keep = vec![0.0; 24];
        let (mut y, mut sc) = (vec![0.0; 12], vec![0.0; 24]);
        let mk = Masks { query: Some(&QMASK), value: Some(&VMASK) };
        forward(&m, &q, &k, &v, &Scalars::default(), &mk, 0, 0, false, &mut keep, &mut y, Some(&mut sc), 2);
        for (i, (row, probs)) in y.chunks_exact(2).zip(sc.chunks_exact(4)).enumerate() {
            assert_eq!(row.iter().all(|&x| x == 0.0), QMASK[i] == 0.0, "query step {i}: {row:?}");
            let vm = &VMASK[(i / 3) * 4..][..4];
            assert!(probs.iter().zip(vm).all(|(&p, &k)| k != 0.0 || p < 1e-30), "row {i}: {probs:?}");
            assert!((probs.iter().sum::<f32>() - 1.0).abs() < 1e-6, "the scores are not zeroed: {probs:?}");
        }
    }

    #[test]
    fn causal_rows_see_no_future_and_sum_to_one() {
        let m = Attn { tq: 3, tv: 3, dim: 2, dv: 2, concat: false, causal: true, dropout: 0.0, seed: 0 };
        let (q, k, v) = (filled(6, 1), filled(6, 2), filled(6, 3));
        let mut keep = vec![0.0; 9];
        let mut y = vec![0.0; 6];
        forward(&m, &q, &k, &v, &Scalars::default(), &Masks::default(), 0, 0, false, &mut keep, &mut y, None, 1);
        for (i, row) in keep.chunks_exact(3).enumerate() {
            assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-6);
            assert!(row[i + 1..].iter().all(|&p| p == 0.0), "row {i}: {row:?}");
        }
    }
}
