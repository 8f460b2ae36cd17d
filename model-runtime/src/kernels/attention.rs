//! Keras 3 `MultiHeadAttention`: the query, key and value projections, one scaled dot-product
//! attention per head and sample, and the output projection, all through the runtime GEMM.
//!
//! The projections of the whole batch are one GEMM each (`[batch·t, features] · [features, heads·dim]`,
//! Keras' kernel layout `[features, heads, dim]` is that matrix already, and the bias is the GEMM's
//! epilogue), so head h of sample s is a block of columns of the result: every per-head product reads
//! and writes those blocks in place through [`sgemm_view`] (strides, no copy, no gather). What forward
//! keeps for backward, for the whole batch:
//!
//! `q [B·tq, H·Dk] | k [B·tv, H·Dk] | v [B·tv, H·Dv] | probs [B, H, tq, tv] | ctx [B·tq, H·Dv]`
//! (and, with dropout, one head's dropped probabilities `[tq, tv]` as working space)
//!
//! `probs` are the attention scores Keras returns with `return_attention_scores = True` (after the
//! masked softmax, before dropout), in Keras' `[heads, tq, tv]` order. Nothing else of size
//! `tq × tv` per head is kept: the dropout mask is a stateless hash regenerated in backward.
//!
//! Masks follow Keras' `Softmax(mask)`: a position is kept where the mask is > 0.5 (and, with
//! `causal`, its key index is not after its query index); masked scores become -1e9 before the
//! softmax and the probabilities of masked positions are set to 0 after it.

use super::activation::softmax_row_sum;
use super::gemm::{sgemm, sgemm_fused, sgemm_view, Epilogue, View};

/// Keras' `_large_negative_number` for float32.
const MASKED: f32 = -1e9;

/// The sizes and options of one attention layer call.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Mha {
    /// Query positions per sample.
    pub tq: usize,
    /// Key/value positions per sample.
    pub tv: usize,
    /// Query features.
    pub dq: usize,
    /// Key features.
    pub dk: usize,
    /// Value features.
    pub dv: usize,
    /// Heads.
    pub heads: usize,
    /// Per-head query/key size.
    pub key_dim: usize,
    /// Per-head value size.
    pub value_dim: usize,
    /// Output features.
    pub out: usize,
    /// Whether a position may only attend to keys at or before its own index.
    pub causal: bool,
    /// Dropout rate on the attention probabilities (training only).
    pub dropout: f32,
    /// Dropout seed of the layer.
    pub seed: u64,
}

/// An explicit attention mask of one call: per sample `rows × cols` values, each 1 or the full size
/// (`tq`, `tv`), broadcast over heads (and over the axis of size 1).
#[derive(Clone, Copy, Debug)]
pub struct Mask<'a> {
    /// The values, one block of `rows · cols` per sample.
    pub values: &'a [f32],
    /// 1 or `tq`.
    pub rows: usize,
    /// 1 or `tv`.
    pub cols: usize,
    /// The operands' step masks (none: `StepMasks::default()`). With no explicit mask, `values` is
    /// empty and only these apply.
    pub steps: StepMasks<'a>,
}

/// The step masks the operands carry (docs/masks.md: `tq` or `tv` values per sample, 1 kept and 0
/// masked): Keras' MultiHeadAttention keeps position (i, j) only where the query keeps step i and the
/// value and key keep step j (`q_mask[:, :, None] & v_mask[:, None, :] & k_mask[:, None, :]`), ANDed with
/// the explicit mask and the causal one.
#[derive(Clone, Copy, Debug, Default)]
pub struct StepMasks<'a> {
    /// The query's mask.
    pub query: Option<&'a [f32]>,
    /// The value's mask.
    pub value: Option<&'a [f32]>,
    /// The key's mask (when the key is another tensor than the value).
    pub key: Option<&'a [f32]>,
}

/// The layer's parameters in Keras' order and layout (kernels `[in, heads, dim]` / `[heads, dim, out]`).
#[derive(Clone, Copy, Debug)]
pub struct Params<'a> {
    /// `query/kernel` `[dq, H, Dk]`.
    pub wq: &'a [f32],
    /// `query/bias` `[H, Dk]`.
    pub bq: Option<&'a [f32]>,
    /// `key/kernel` `[dk, H, Dk]`.
    pub wk: &'a [f32],
    /// `key/bias`.
    pub bk: Option<&'a [f32]>,
    /// `value/kernel` `[dv, H, Dv]`.
    pub wv: &'a [f32],
    /// `value/bias`.
    pub bv: Option<&'a [f32]>,
    /// `attention_output/kernel` `[H, Dv, out]`.
    pub wo: &'a [f32],
    /// `attention_output/bias` `[out]`.
    pub bo: Option<&'a [f32]>,
}

/// The parameters' gradients, accumulated into (`+=`).
#[derive(Debug)]
pub struct Grads<'a> {
    /// d `query/kernel`.
    pub wq: &'a mut [f32],
    /// d `query/bias`.
    pub bq: Option<&'a mut [f32]>,
    /// d `key/kernel`.
    pub wk: &'a mut [f32],
    /// d `key/bias`.
    pub bk: Option<&'a mut [f32]>,
    /// d `value/kernel`.
    pub wv: &'a mut [f32],
    /// d `value/bias`.
    pub bv: Option<&'a mut [f32]>,
    /// d `attention_output/kernel`.
    pub wo: &'a mut [f32],
    /// d `attention_output/bias`.
    pub bo: Option<&'a mut [f32]>,
}

/// Which projection an operand feeds, for [`backward_input`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Proj {
    /// The query.
    Query,
    /// The key.
    Key,
    /// The value.
    Value,
}

/// Offsets of the kept blocks within the forward scratch of a batch.
#[derive(Clone, Copy, Debug)]
struct Keep {
    q: usize,
    k: usize,
    v: usize,
    p: usize,
    c: usize,
    /// One head's dropped probabilities (only with dropout), after `ctx`.
    d: usize,
    len: usize,
}

/// Offsets of the blocks within the backward scratch of a batch.
#[derive(Clone, Copy, Debug)]
struct Tmp {
    dq: usize,
    dk: usize,
    dv: usize,
    dc: usize,
    dp: usize,
    pd: usize,
    len: usize,
}

impl Mha {
    fn hk(&self) -> usize {
        self.heads * self.key_dim
    }

    fn hv(&self) -> usize {
        self.heads * self.value_dim
    }

    /// The forward scratch of `batch` samples: at most `batch ·` [`Mha::keep_len`].
    fn keep(&self, batch: usize) -> Keep {
        let q = 0;
        let k = q + batch * self.hk() * self.tq;
        let v = k + batch * self.hk() * self.tv;
        let p = v + batch * self.hv() * self.tv;
        let c = p + batch * self.heads * self.tq * self.tv;
        let d = c + batch * self.hv() * self.tq;
        let dropped = if self.dropout > 0.0 { self.tq * self.tv } else { 0 };
        Keep { q, k, v, p, c, d, len: d + dropped }
    }

    /// The backward scratch of `batch` samples: at most `batch ·` [`Mha::tmp_len`].
    fn tmp(&self, batch: usize) -> Tmp {
        let dq = 0;
        let dk = dq + batch * self.hk() * self.tq;
        let dv = dk + batch * self.hk() * self.tv;
        let dc = dv + batch * self.hv() * self.tv;
        let dp = dc + batch * self.hv() * self.tq;
        let pd = dp + self.tq * self.tv;
        Tmp { dq, dk, dv, dc, dp, pd, len: pd + self.tq * self.tv }
    }

    /// Per-sample length of the forward scratch (what backward needs kept); a batch takes at most
    /// this times its size.
    pub fn keep_len(&self) -> usize {
        let tt = self.tq * self.tv;
        let dropped = if self.dropout > 0.0 { tt } else { 0 };
        self.hk() * (self.tq + self.tv) + self.hv() * (self.tv + self.tq) + self.heads * tt + dropped
    }

    /// Offset of the attention probabilities `[batch, heads, tq, tv]` within the forward scratch of
    /// `batch` samples.
    pub fn scores_offset(&self, batch: usize) -> usize {
        self.keep(batch).p
    }

    /// Per-sample length of the backward-only scratch; a batch takes at most this times its size.
    pub fn tmp_len(&self) -> usize {
        self.hk() * (self.tq + self.tv) + self.hv() * (self.tv + self.tq) + 2 * self.tq * self.tv
    }

    /// Whether dropout is applied in this pass.
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
}

/// `out [rows, cols] = x · w + bias`: one projection of the whole batch (`x` is `[rows, din]`, `w`
/// is `[din, cols]`), the bias added as the GEMM stores its tiles.
fn project(x: &[f32], w: &[f32], bias: Option<&[f32]>, rows: usize, din: usize, cols: usize, out: &mut [f32]) {
    sgemm_fused(rows, din, cols, 1.0, x, false, w, false, 0.0, out, Epilogue { bias, relu: false });
}

/// Head `h` of sample `s` of a `[batch·t, heads·dim]` matrix: its `t × dim` block of columns.
fn head(x: &[f32], s: usize, h: usize, t: usize, dim: usize, width: usize) -> View<'_> {
    View::columns(&x[s * t * width..], t, width, h * dim, dim)
}

/// Where head `h` of sample `s` of a `[batch·t, heads·dim]` matrix starts, for writing it (row stride `width`).
fn head_mut(x: &mut [f32], s: usize, h: usize, t: usize, dim: usize, width: usize) -> &mut [f32] {
    &mut x[s * t * width + h * dim..]
}

/// Whether position (i, j) of sample `s` is kept.
fn kept(m: &Mha, mask: Option<&Mask<'_>>, s: usize, i: usize, j: usize) -> bool {
    if m.causal && j > i {
        return false;
    }
    match mask {
        Some(mk) => {
            let step = |v: Option<&[f32]>, t: usize, at: usize| v.is_none_or(|v| v.get(s * t + at).is_some_and(|&x| x > 0.5));
            let sm = &mk.steps;
            if !(step(sm.query, m.tq, i) && step(sm.value, m.tv, j) && step(sm.key, m.tv, j)) {
                return false;
            }
            if mk.values.is_empty() {
                return true;
            }
            let r = if mk.rows == 1 { 0 } else { i };
            let c = if mk.cols == 1 { 0 } else { j };
            mk.values.get(s * mk.rows * mk.cols + r * mk.cols + c).is_some_and(|&v| v > 0.5)
        }
        None => true,
    }
}

/// Masked softmax of rows `i0..` of one head's scores in place (`p` holds whole rows of `tv`; Keras
/// `Softmax(mask)`), compiled for AVX2 + FMA where the CPU has them. With `sums`, the rows are left
/// unnormalized (e^(s − max), masked positions 0) and row r's divisor goes to `sums[r]`: the product
/// with the values divides its rows instead.
fn masked_softmax(m: &Mha, mask: Option<&Mask<'_>>, s: usize, i0: usize, p: &mut [f32], sums: Option<&mut [f32]>) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { masked_softmax_avx2(m, mask, s, i0, p, sums) };
    }
    masked_softmax_on::<false>(m, mask, s, i0, p, sums)
}

/// [`masked_softmax_on`] compiled for AVX2 + FMA, the exponentials' multiply-adds fused. Safety: the
/// CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn masked_softmax_avx2(m: &Mha, mask: Option<&Mask<'_>>, s: usize, i0: usize, p: &mut [f32], sums: Option<&mut [f32]>) {
    masked_softmax_on::<true>(m, mask, s, i0, p, sums)
}

/// [`masked_softmax`]'s work. With only the causal mask, row i's softmax runs over its first i + 1
/// scores and the rest are set to 0: the same values as scoring them −1e9 (their exponentials are 0
/// in f32), without touching them. An explicit or step mask marks each position as Keras does.
#[inline(always)]
fn masked_softmax_on<const FUSED: bool>(
    m: &Mha,
    mask: Option<&Mask<'_>>,
    s: usize,
    i0: usize,
    p: &mut [f32],
    mut sums: Option<&mut [f32]>,
) {
    for (r, row) in p.chunks_exact_mut(m.tv).enumerate() {
        let i = i0 + r;
        // The row's divisor, and how many of its values may be nonzero.
        let (sum, live) = if mask.is_some() {
            for (j, v) in row.iter_mut().enumerate() {
                if !kept(m, mask, s, i, j) {
                    *v = MASKED;
                }
            }
            let sum = softmax_row_sum::<FUSED>(row);
            for (j, v) in row.iter_mut().enumerate() {
                if !kept(m, mask, s, i, j) {
                    *v = 0.0;
                }
            }
            (sum, m.tv)
        } else if m.causal {
            let (live, future) = row.split_at_mut((i + 1).min(m.tv));
            future.fill(0.0);
            (softmax_row_sum::<FUSED>(live), live.len())
        } else {
            (softmax_row_sum::<FUSED>(row), m.tv)
        };
        match sums.as_deref_mut() {
            Some(out) => out[r] = sum,
            None => {
                let inv = 1.0 / sum;
                row[..live].iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// One head's gradient through the softmax in place: `dS = P ⊙ (dP − Σ_j P dP)` row by row, compiled
/// for AVX2 where the CPU has it.
fn softmax_backward(tv: usize, dp: &mut [f32], probs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { softmax_backward_avx2(tv, dp, probs) };
    }
    softmax_backward_on(tv, dp, probs)
}

/// [`softmax_backward_on`] compiled for AVX2. Safety: the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_backward_avx2(tv: usize, dp: &mut [f32], probs: &[f32]) {
    softmax_backward_on(tv, dp, probs)
}

/// [`softmax_backward`]'s work, the dot product in 8 lanes so that it vectorizes.
#[inline(always)]
fn softmax_backward_on(tv: usize, dp: &mut [f32], probs: &[f32]) {
    for (dr, pr) in dp.chunks_exact_mut(tv).zip(probs.chunks_exact(tv)) {
        let mut acc = [0.0f32; 8];
        let (mut dc, mut pc) = (dr.chunks_exact(8), pr.chunks_exact(8));
        for (d, p) in (&mut dc).zip(&mut pc) {
            for ((a, &d), &p) in acc.iter_mut().zip(d).zip(p) {
                *a += d * p;
            }
        }
        let tail: f32 = dc.remainder().iter().zip(pc.remainder()).map(|(d, p)| d * p).sum();
        let dot = tail + acc.iter().sum::<f32>();
        dr.iter_mut().zip(pr).for_each(|(d, &p)| *d = p * (*d - dot));
    }
}

/// The probabilities one head multiplies the values by: `probs`, or `probs ⊙ dropout mask` (into `buf`).
fn dropped<'a>(m: &Mha, stream: Option<u64>, base: usize, probs: &'a [f32], buf: &'a mut [f32]) -> &'a [f32] {
    match stream {
        Some(st) => {
            for (idx, (d, &p)) in buf.iter_mut().zip(probs).enumerate() {
                *d = p * m.keep_factor(st, base + idx);
            }
            buf
        }
        None => probs,
    }
}

/// Forward over `batch` samples: `q [batch, tq, dq]`, `k [batch, tv, dk]`, `v [batch, tv, dv]` into
/// `y [batch, tq, out]`, keeping in `keep` (`batch ·` [`Mha::keep_len`]) what backward needs and the
/// attention scores. Dropout (training only) draws from (seed, `step`, position), the position counted
/// within the global batch: sample 0 is row `first_row` of it (not 0 when this is one rank's share of a
/// data-parallel step), so the ranks draw together the masks one process draws.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    m: &Mha,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<Mask<'_>>,
    p: &Params<'_>,
    step: u64,
    first_row: usize,
    training: bool,
    keep: &mut [f32],
    y: &mut [f32],
    batch: usize,
) {
    let o = m.keep(batch);
    let (tt, hk, hv, kd, vd) = (m.tq * m.tv, m.hk(), m.hv(), m.key_dim, m.value_dim);
    let stream = m.drops(training).then(|| m.stream(step));
    let kp = &mut keep[..o.len];
    let (qp, rest) = kp.split_at_mut(o.k);
    let (kpj, rest) = rest.split_at_mut(o.v - o.k);
    let (vp, rest) = rest.split_at_mut(o.p - o.v);
    let (probs, rest) = rest.split_at_mut(o.c - o.p);
    let (ctx, scratch_row) = rest.split_at_mut(o.d - o.c);
    project(&q[..batch * m.tq * m.dq], p.wq, p.bq, batch * m.tq, m.dq, hk, qp);
    project(&k[..batch * m.tv * m.dk], p.wk, p.bk, batch * m.tv, m.dk, hk, kpj);
    project(&v[..batch * m.tv * m.dv], p.wv, p.bv, batch * m.tv, m.dv, hv, vp);
    let scale = 1.0 / (kd as f32).sqrt();
    for s in 0..batch {
        for h in 0..m.heads {
            let ph = &mut probs[(s * m.heads + h) * tt..][..tt];
            // S = scale · Qh Khᵀ
            let kh = head(kpj, s, h, m.tv, kd, hk);
            sgemm_view(scale, head(qp, s, h, m.tq, kd, hk), kh.t(), 0.0, ph, m.tv);
            masked_softmax(m, mask.as_ref(), s, 0, ph, None);
            let pd = dropped(m, stream, ((first_row + s) * m.heads + h) * tt, ph, scratch_row);
            // Oh [tq, Dv] = P' Vh, into its columns of ctx.
            let vh = head(vp, s, h, m.tv, vd, hv);
            sgemm_view(1.0, View::new(pd, m.tq, m.tv, false), vh, 0.0, head_mut(ctx, s, h, m.tq, vd, hv), hv);
        }
    }
    // y = ctx · Wo + bo
    project(ctx, p.wo, p.bo, batch * m.tq, hv, m.out, &mut y[..batch * m.tq * m.out]);
}

/// Most query rows one block of [`infer`] takes at a time: their softmax divisors live on the stack.
const INFER_ROWS: usize = 128;

/// [`forward`] in inference, when nothing runs backward from it and the scores are not returned (the
/// model's inference forward): the same `y`, with less traffic. Nothing is kept per head: the scores
/// of a block of up to 128 query rows of one head go to one `rows × tv` block at the start of the
/// scores' place in `keep`, reused by every block, head and sample, so it stays in cache. They stay
/// unnormalized (e^(s − max), masked positions 0), and the head's context rows, `tv / value_dim` times
/// fewer values, are divided by the row sums instead. No dropout (inference).
#[allow(clippy::too_many_arguments)]
pub fn infer(
    m: &Mha,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<Mask<'_>>,
    p: &Params<'_>,
    keep: &mut [f32],
    y: &mut [f32],
    batch: usize,
) {
    let o = m.keep(batch);
    let (hk, hv, kd, vd) = (m.hk(), m.hv(), m.key_dim, m.value_dim);
    let kp = &mut keep[..o.len];
    let (qp, rest) = kp.split_at_mut(o.k);
    let (kpj, rest) = rest.split_at_mut(o.v - o.k);
    let (vp, rest) = rest.split_at_mut(o.p - o.v);
    let (probs, rest) = rest.split_at_mut(o.c - o.p);
    let ctx = &mut rest[..o.d - o.c];
    project(&q[..batch * m.tq * m.dq], p.wq, p.bq, batch * m.tq, m.dq, hk, qp);
    project(&k[..batch * m.tv * m.dk], p.wk, p.bk, batch * m.tv, m.dk, hk, kpj);
    project(&v[..batch * m.tv * m.dv], p.wv, p.bv, batch * m.tv, m.dv, hv, vp);
    let scale = 1.0 / (kd as f32).sqrt();
    let mut sums = [0.0f32; INFER_ROWS];
    for s in 0..batch {
        for h in 0..m.heads {
            let (kh, vh) = (head(kpj, s, h, m.tv, kd, hk), head(vp, s, h, m.tv, vd, hv));
            for i0 in (0..m.tq).step_by(INFER_ROWS) {
                let rows = (m.tq - i0).min(INFER_ROWS);
                let first = s * m.tq + i0;
                let ph = &mut probs[..rows * m.tv];
                // S = scale · Qh Khᵀ for the block's rows, left unnormalized by the softmax.
                sgemm_view(scale, View::columns(&qp[first * hk..], rows, hk, h * kd, kd), kh.t(), 0.0, ph, m.tv);
                masked_softmax(m, mask.as_ref(), s, i0, ph, Some(&mut sums[..rows]));
                // Oh = (E Vh) / row sums, into its columns of ctx.
                let oh = head_mut(ctx, first, h, 1, vd, hv);
                sgemm_view(1.0, View::new(ph, rows, m.tv, false), vh, 0.0, oh, hv);
                for (row, &sum) in oh.chunks_mut(hv).zip(&sums[..rows]) {
                    let inv = 1.0 / sum;
                    row[..vd].iter_mut().for_each(|x| *x *= inv);
                }
            }
        }
    }
    project(ctx, p.wo, p.bo, batch * m.tq, hv, m.out, &mut y[..batch * m.tq * m.out]);
}

/// The attention scores of `batch` samples, `[batch, heads, tq, tv]`, copied out of what [`forward`]
/// kept: what a call with `return_attention_scores = true` returns beside its output.
pub fn scores(m: &Mha, keep: &[f32], out: &mut [f32], batch: usize) {
    let n = batch * m.heads * m.tq * m.tv;
    out[..n].copy_from_slice(&keep[m.keep(batch).p..][..n]);
}

/// Adds the column sums of `t [rows, cols]` to `g [cols]`.
fn add_col_sums(t: &[f32], cols: usize, g: &mut [f32]) {
    for row in t.chunks_exact(cols) {
        g.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
    }
}

/// Backward of everything but the input projections' input gradients: accumulates the parameter
/// gradients and leaves dQ, dK, dV of the batch in `tmp` (`batch ·` [`Mha::tmp_len`]) for
/// [`backward_input`]. `keep` is what the training forward of the same step kept. `dscores` is the
/// gradient of the returned attention scores (`[batch, heads, tq, tv]`) when the call returns them: it
/// joins the probabilities' gradient before the softmax (the scores are taken before dropout).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    m: &Mha,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    p: &Params<'_>,
    step: u64,
    first_row: usize,
    training: bool,
    keep: &[f32],
    dy: &[f32],
    dscores: Option<&[f32]>,
    g: Grads<'_>,
    tmp: &mut [f32],
    batch: usize,
) {
    let (o, t) = (m.keep(batch), m.tmp(batch));
    let (tt, hk, hv, kd, vd) = (m.tq * m.tv, m.hk(), m.hv(), m.key_dim, m.value_dim);
    let (rq, rv) = (batch * m.tq, batch * m.tv);
    let stream = m.drops(training).then(|| m.stream(step));
    let scale = 1.0 / (kd as f32).sqrt();
    let Grads { wq: gwq, bq: gbq, wk: gwk, bk: gbk, wv: gwv, bv: gbv, wo: gwo, bo: gbo } = g;
    let (qp, kpj, vp, probs, ctx) = (&keep[o.q..o.k], &keep[o.k..o.v], &keep[o.v..o.p], &keep[o.p..o.c], &keep[o.c..o.d]);
    let dy = &dy[..rq * m.out];
    let tp = &mut tmp[..t.len];
    let (dq, rest) = tp.split_at_mut(t.dk);
    let (dk, rest) = rest.split_at_mut(t.dv - t.dk);
    let (dv, rest) = rest.split_at_mut(t.dc - t.dv);
    let (dc, rest) = rest.split_at_mut(t.dp - t.dc);
    let (dp, pd_buf) = rest.split_at_mut(t.pd - t.dp);
    // Output projection: dWo += ctxᵀ dy, dbo += column sums of dy, dctx = dy Woᵀ.
    sgemm(hv, rq, m.out, 1.0, ctx, true, dy, false, 1.0, gwo);
    if let Some(gb) = gbo {
        add_col_sums(dy, m.out, gb);
    }
    sgemm(rq, m.out, hv, 1.0, dy, false, p.wo, true, 0.0, dc);
    for s in 0..batch {
        for h in 0..m.heads {
            let base = (s * m.heads + h) * tt;
            // Dropout is keyed by the position in the global batch.
            let gbase = ((first_row + s) * m.heads + h) * tt;
            let ph = &probs[base..][..tt];
            let pd = dropped(m, stream, gbase, ph, pd_buf);
            let doh = head(dc, s, h, m.tq, vd, hv);
            // Oh = P' Vh: dVh = P'ᵀ dOh, dP' = dOh Vhᵀ.
            sgemm_view(1.0, View::new(pd, m.tq, m.tv, false).t(), doh, 0.0, head_mut(dv, s, h, m.tv, vd, hv), hv);
            sgemm_view(1.0, doh, head(vp, s, h, m.tv, vd, hv).t(), 0.0, dp, m.tv);
            if let Some(st) = stream {
                dp.iter_mut().enumerate().for_each(|(idx, d)| *d *= m.keep_factor(st, gbase + idx));
            }
            if let Some(ds) = dscores {
                dp.iter_mut().zip(&ds[base..][..tt]).for_each(|(d, &g)| *d += g);
            }
            // Softmax: dS = P ⊙ (dP − Σ_j P dP).
            softmax_backward(m.tv, dp, ph);
            // S = scale Qh Khᵀ: dQh = scale dS Kh, dKh = scale dSᵀ Qh.
            let ds = View::new(dp, m.tq, m.tv, false);
            sgemm_view(scale, ds, head(kpj, s, h, m.tv, kd, hk), 0.0, head_mut(dq, s, h, m.tq, kd, hk), hk);
            sgemm_view(scale, ds.t(), head(qp, s, h, m.tq, kd, hk), 0.0, head_mut(dk, s, h, m.tv, kd, hk), hk);
        }
    }
    // Input projections' parameters: T = x W + b, so dW += xᵀ dT, db += column sums of dT.
    sgemm(m.dq, rq, hk, 1.0, &q[..rq * m.dq], true, dq, false, 1.0, gwq);
    sgemm(m.dk, rv, hk, 1.0, &k[..rv * m.dk], true, dk, false, 1.0, gwk);
    sgemm(m.dv, rv, hv, 1.0, &v[..rv * m.dv], true, dv, false, 1.0, gwv);
    for (gb, d, w) in [(gbq, &*dq, hk), (gbk, &*dk, hk), (gbv, &*dv, hv)] {
        if let Some(gb) = gb {
            add_col_sums(d, w, gb);
        }
    }
}

/// Adds one operand's input gradient, `dx [batch, t, din] += dT · Wᵀ`, from the dQ, dK or dV that
/// [`backward`] left in `tmp`. Called once per operand, so an operand that is both query and value
/// (self-attention) gets both contributions.
pub fn backward_input(m: &Mha, which: Proj, w: &[f32], tmp: &[f32], dx: &mut [f32], batch: usize) {
    let t = m.tmp(batch);
    let (off, cols, tlen, din) = match which {
        Proj::Query => (t.dq, m.hk(), m.tq, m.dq),
        Proj::Key => (t.dk, m.hk(), m.tv, m.dk),
        Proj::Value => (t.dv, m.hv(), m.tv, m.dv),
    };
    let rows = batch * tlen;
    sgemm(rows, cols, din, 1.0, &tmp[off..][..rows * cols], false, w, true, 1.0, &mut dx[..rows * din]);
}

#[cfg(test)]
#[allow(clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn dims(causal: bool) -> Mha {
        Mha { tq: 3, tv: 4, dq: 5, dk: 2, dv: 3, heads: 2, key_dim: 3, value_dim: 2, out: 4, causal, dropout: 0.0, seed: 1 }
    }

    fn filled(n: usize, seed: u64) -> Vec<f32> {
        (0..n).map(|i| crate::init::hash_uniform(seed, i as u64) * 2.0 - 1.0).collect()
    }

    #[test]
    fn probabilities_are_rows_summing_to_one_and_causal_rows_see_no_future() {
        let m = dims(true);
        let (q, k, v) = (filled(2 * 15, 1), filled(2 * 8, 2), filled(2 * 12, 3));
        let (wq, wk, wv, wo) = (filled(5 * 6, 4), filled(2 * 6, 5), filled(3 * 4, 6), filled(4 * 4, 7));
        let p = Params { wq: &wq, bq: None, wk: &wk, bk: None, wv: &wv, bv: None, wo: &wo, bo: None };
        let mut keep = vec![0.0; 2 * m.keep_len()];
        let mut y = vec![0.0; 2 * 12];
        forward(&m, &q, &k, &v, None, &p, 0, 0, false, &mut keep, &mut y, 2);
        let probs = &keep[m.scores_offset(2)..][..2 * 12];
        for (i, row) in probs.chunks_exact(4).enumerate() {
            let sum: f32 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-5, "row {i} sums to {sum}");
            let qi = i % 3;
            assert!(row[qi + 1..].iter().all(|&x| x == 0.0), "row {i} sees the future: {row:?}");
        }
    }

    /// `y` of [`forward`] (inference) and of [`infer`] on the same call.
    fn both_forwards(m: &Mha, mask: Option<Mask<'_>>, batch: usize, seed: u64) -> (Vec<f32>, Vec<f32>) {
        let sizes = [m.dq * m.hk(), m.hk(), m.dk * m.hk(), m.hk(), m.dv * m.hv(), m.hv(), m.hv() * m.out, m.out];
        let w: [Vec<f32>; 8] = std::array::from_fn(|i| filled(sizes[i], seed + i as u64));
        let p = Params { wq: &w[0], bq: Some(&w[1]), wk: &w[2], bk: Some(&w[3]), wv: &w[4], bv: Some(&w[5]), wo: &w[6], bo: Some(&w[7]) };
        // Scores of a few units, so that the softmax is far from uniform.
        let x: Vec<Vec<f32>> = [(m.tq, m.dq), (m.tv, m.dk), (m.tv, m.dv)]
            .iter()
            .enumerate()
            .map(|(i, &(t, d))| filled(batch * t * d, seed + 10 + i as u64).iter().map(|v| 3.0 * v).collect())
            .collect();
        let mut keep = vec![0.0; batch * m.keep_len()];
        let mut want = vec![0.0; batch * m.tq * m.out];
        forward(m, &x[0], &x[1], &x[2], mask, &p, 0, 0, false, &mut keep, &mut want, batch);
        let mut keep = vec![f32::NAN; batch * m.keep_len()];
        let mut got = vec![f32::NAN; batch * m.tq * m.out];
        infer(m, &x[0], &x[1], &x[2], mask, &p, &mut keep, &mut got, batch);
        (want, got)
    }

    fn assert_close(want: &[f32], got: &[f32], what: &str) {
        for (i, (&a, &b)) in want.iter().zip(got).enumerate() {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{what}: y[{i}] {b} where forward gives {a}");
        }
    }

    #[test]
    fn inference_forward_matches_forward_with_and_without_masks() {
        // Cross-attention (tq ≠ tv), no mask and causal.
        for causal in [false, true] {
            let (want, got) = both_forwards(&dims(causal), None, 3, 50);
            assert_close(&want, &got, &format!("causal {causal}"));
        }
        // An explicit mask with a row masked entirely (its probabilities are all 0, as Keras'),
        // together with the causal mask and a query step mask.
        let m = Mha { tv: 3, ..dims(true) };
        let batch = 2;
        let values: Vec<f32> = (0..batch * m.tq * m.tv).map(|i| if i % 3 == 1 || (3..6).contains(&i) { 0.0 } else { 1.0 }).collect();
        let query: Vec<f32> = (0..batch * m.tq).map(|i| if i == 4 { 0.0 } else { 1.0 }).collect();
        let steps = StepMasks { query: Some(&query), value: None, key: None };
        let mask = Mask { values: &values, rows: m.tq, cols: m.tv, steps };
        let (want, got) = both_forwards(&m, Some(mask), batch, 60);
        assert_close(&want, &got, "masked");
    }

    #[test]
    fn inference_forward_takes_long_queries_in_blocks() {
        // 300 query rows: blocks of 128, 128 and 44, each with its own divisors.
        let m = Mha { tq: INFER_ROWS * 2 + 44, tv: 37, ..dims(true) };
        let (want, got) = both_forwards(&m, None, 2, 70);
        assert_close(&want, &got, "blocks");
        let m = Mha { causal: false, ..m };
        let (want, got) = both_forwards(&m, None, 1, 80);
        assert_close(&want, &got, "blocks, no mask");
    }

    #[test]
    fn a_share_of_the_batch_draws_the_dropout_masks_of_the_whole_batch() {
        // Data-parallel: a rank holding rows 1..3 of a batch of 3 (first_row 1) computes what one process
        // computes for those rows, forward and backward (the masks follow the row in the global batch).
        let m = Mha { dropout: 0.4, ..dims(false) };
        let sizes = [5 * 6, 6, 2 * 6, 6, 3 * 4, 4, 4 * 4, 4];
        let w: [Vec<f32>; 8] = std::array::from_fn(|i| filled(sizes[i], 40 + i as u64));
        let p = Params { wq: &w[0], bq: Some(&w[1]), wk: &w[2], bk: Some(&w[3]), wv: &w[4], bv: Some(&w[5]), wo: &w[6], bo: Some(&w[7]) };
        let x = [filled(3 * 15, 41), filled(3 * 8, 42), filled(3 * 12, 43)];
        let dy = filled(3 * m.tq * m.out, 44);
        let run = |rows: std::ops::Range<usize>, first_row: usize| {
            let b = rows.len();
            let part = |v: &[f32], per: usize| v[rows.start * per..rows.end * per].to_vec();
            let (q, k, v) = (part(&x[0], 15), part(&x[1], 8), part(&x[2], 12));
            let (mut keep, mut y) = (vec![0.0; b * m.keep_len()], vec![0.0; b * m.tq * m.out]);
            forward(&m, &q, &k, &v, None, &p, 9, first_row, true, &mut keep, &mut y, b);
            let mut g: [Vec<f32>; 8] = std::array::from_fn(|i| vec![0.0; sizes[i]]);
            let [gwq, gbq, gwk, gbk, gwv, gbv, gwo, gbo] = &mut g;
            let grads = Grads { wq: gwq, bq: Some(gbq), wk: gwk, bk: Some(gbk), wv: gwv, bv: Some(gbv), wo: gwo, bo: Some(gbo) };
            let mut tmp = vec![0.0; b * m.tmp_len()];
            backward(&m, &q, &k, &v, &p, 9, first_row, true, &keep, &part(&dy, m.tq * m.out), None, grads, &mut tmp, b);
            (y, tmp)
        };
        let (whole_y, whole_tmp) = run(0..3, 0);
        let (share_y, share_tmp) = run(1..3, 1);
        let y_len = m.tq * m.out;
        assert_eq!(share_y, whole_y[y_len..], "forward of the share");
        // dQ, dK and dV are batch-major regions of tmp: the share's rows are the whole's last two.
        let (tw, ts) = (m.tmp(3), m.tmp(2));
        for (name, (w0, w1), (s0, s1)) in
            [("dQ", (tw.dq, tw.dk), (ts.dq, ts.dk)), ("dK", (tw.dk, tw.dv), (ts.dk, ts.dv)), ("dV", (tw.dv, tw.dc), (ts.dv, ts.dc))]
        {
            let per = (w1 - w0) / 3;
            assert_eq!(share_tmp[s0..s1], whole_tmp[w0 + per..w1], "{name} of the share");
        }
        // Keyed by the row in the share instead (first_row 0), the masks differ: the test can fail.
        let (local_y, _) = run(1..3, 0);
        assert_ne!(local_y, whole_y[y_len..]);
    }

    /// Σ r ⊙ forward(inputs, params) + Σ rs ⊙ scores at a fixed training step.
    fn objective(m: &Mha, x: &[Vec<f32>; 3], w: &[Vec<f32>; 8], mask: Option<Mask<'_>>, r: &[f32], rs: &[f32], batch: usize) -> f64 {
        let p = Params { wq: &w[0], bq: Some(&w[1]), wk: &w[2], bk: Some(&w[3]), wv: &w[4], bv: Some(&w[5]), wo: &w[6], bo: Some(&w[7]) };
        let mut keep = vec![0.0; batch * m.keep_len()];
        let mut y = vec![0.0; batch * m.tq * m.out];
        forward(m, &x[0], &x[1], &x[2], mask, &p, 3, 0, true, &mut keep, &mut y, batch);
        let mut sc = vec![0.0; batch * m.heads * m.tq * m.tv];
        scores(m, &keep, &mut sc, batch);
        let out: f64 = y.iter().zip(r).map(|(a, b)| f64::from(a * b)).sum();
        out + sc.iter().zip(rs).map(|(a, b)| f64::from(a * b)).sum::<f64>()
    }

    #[test]
    fn every_gradient_with_dropout_mask_causality_and_returned_scores_matches_finite_differences() {
        let m = Mha { dropout: 0.3, ..dims(true) };
        let batch = 2;
        let mut x = [filled(batch * 15, 11), filled(batch * 8, 12), filled(batch * 12, 13)];
        let sizes = [5 * 6, 6, 2 * 6, 6, 3 * 4, 4, 4 * 4, 4];
        let mut w: [Vec<f32>; 8] = std::array::from_fn(|i| filled(sizes[i], 20 + i as u64));
        let mask_values: Vec<f32> = (0..batch * 4).map(|i| if i == 3 || i == 6 { 0.0 } else { 1.0 }).collect();
        let mask = Mask { values: &mask_values, rows: 1, cols: 4, steps: StepMasks::default() };
        let r = filled(batch * m.tq * m.out, 30);
        // The returned scores are used downstream too: their gradient joins backward.
        let rs = filled(batch * m.heads * m.tq * m.tv, 31);

        let p = Params { wq: &w[0], bq: Some(&w[1]), wk: &w[2], bk: Some(&w[3]), wv: &w[4], bv: Some(&w[5]), wo: &w[6], bo: Some(&w[7]) };
        let mut keep = vec![0.0; batch * m.keep_len()];
        let mut y = vec![0.0; batch * m.tq * m.out];
        forward(&m, &x[0], &x[1], &x[2], Some(mask), &p, 3, 0, true, &mut keep, &mut y, batch);
        let mut g: [Vec<f32>; 8] = std::array::from_fn(|i| vec![0.0; sizes[i]]);
        let mut tmp = vec![0.0; batch * m.tmp_len()];
        {
            let [g0, g1, g2, g3, g4, g5, g6, g7] = &mut g;
            let grads = Grads { wq: g0, bq: Some(g1), wk: g2, bk: Some(g3), wv: g4, bv: Some(g5), wo: g6, bo: Some(g7) };
            backward(&m, &x[0], &x[1], &x[2], &p, 3, 0, true, &keep, &r, Some(&rs), grads, &mut tmp, batch);
        }
        let mut dx = [vec![0.0; x[0].len()], vec![0.0; x[1].len()], vec![0.0; x[2].len()]];
        backward_input(&m, Proj::Query, &w[0], &tmp, &mut dx[0], batch);
        backward_input(&m, Proj::Key, &w[2], &tmp, &mut dx[1], batch);
        backward_input(&m, Proj::Value, &w[4], &tmp, &mut dx[2], batch);

        let eps = 1e-2f32;
        let close = |a: f32, n: f64, what: &str| {
            let n = n as f32;
            assert!((a - n).abs() <= 2e-3 + 2e-2 * a.abs().max(n.abs()), "{what}: analytic {a} vs numeric {n}");
        };
        for t in 0..3 {
            for i in 0..x[t].len() {
                let orig = x[t][i];
                x[t][i] = orig + eps;
                let up = objective(&m, &x, &w, Some(mask), &r, &rs, batch);
                x[t][i] = orig - eps;
                let down = objective(&m, &x, &w, Some(mask), &r, &rs, batch);
                x[t][i] = orig;
                close(dx[t][i], (up - down) / (2.0 * f64::from(eps)), &format!("input {t}[{i}]"));
            }
        }
        for t in 0..8 {
            for i in 0..w[t].len() {
                let orig = w[t][i];
                w[t][i] = orig + eps;
                let up = objective(&m, &x, &w, Some(mask), &r, &rs, batch);
                w[t][i] = orig - eps;
                let down = objective(&m, &x, &w, Some(mask), &r, &rs, batch);
                w[t][i] = orig;
                close(g[t][i], (up - down) / (2.0 * f64::from(eps)), &format!("param {t}[{i}]"));
            }
        }
        // Dropout really dropped something at this step.
        let s = m.stream(3);
        assert!((0..batch * m.heads * 12).any(|i| m.keep_factor(s, i) == 0.0));
    }
}
