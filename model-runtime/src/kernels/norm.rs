//! Keras `BatchNormalization` and `LayerNormalization` over one axis of a row-major tensor, forward
//! next to backward.
//!
//! A tensor is seen as `[outer, n, inner]` around the normalized axis of length `n` (see [`Axis`]).
//! Batch normalization keeps one mean and variance per position of that axis (per channel), taken over
//! the `outer · inner` elements that share it; layer normalization keeps one per `(outer, inner)` group,
//! taken over its `n` elements. Both scale by `gamma` and shift by `beta`, which are indexed along the
//! axis. Statistics are accumulated in `f64`, so results do not depend on the batch's summation order
//! beyond `f32` rounding.
//!
//! Scratch layouts (written by forward, read by backward and by the moving-statistics update):
//! batch normalization `[mean; n] [variance; n] [inv_std; n]`, layer normalization
//! `[mean; groups] [inv_std; groups]` with `groups = outer · inner`.

use super::Axis;

/// Channels reduced together: their `f64` accumulators live on the stack, so a reduction allocates
/// nothing whatever the channel count, and each pass over the tensor serves `BLOCK` channels.
const BLOCK: usize = 64;

/// The channel blocks `c0..c1` of `a`.
fn blocks(a: Axis) -> impl Iterator<Item = std::ops::Range<usize>> {
    (0..a.n).step_by(BLOCK).map(move |c0| c0..(c0 + BLOCK).min(a.n))
}

/// Calls `f(c, e)` for every element `e` of the channels `cs`, in memory order.
#[inline]
fn each_in(a: Axis, cs: std::ops::Range<usize>, mut f: impl FnMut(usize, usize)) {
    for o in 0..a.outer {
        for c in cs.clone() {
            let s = (o * a.n + c) * a.inner;
            for e in s..s + a.inner {
                f(c, e);
            }
        }
    }
}

/// Sums, in `f64`, of `K` terms `term(c, e)` over the elements of each channel `c` of block `cs`
/// (index `c - cs.start`).
fn block_sums<const K: usize>(a: Axis, cs: std::ops::Range<usize>, term: impl Fn(usize, usize) -> [f64; K]) -> [[f64; K]; BLOCK] {
    let mut acc = [[0.0f64; K]; BLOCK];
    let c0 = cs.start;
    each_in(a, cs, |c, e| {
        for (sum, t) in acc[c - c0].iter_mut().zip(term(c, e)) {
            *sum += t;
        }
    });
    acc
}

/// The rows of a channels-last tensor (`inner == 1`): `outer` slices of the `n` channels. The
/// channels-last paths below walk them with the block's per-channel values in arrays, so the inner loop
/// runs along a row's channels and vectorizes; they add in the same order as the general paths (row
/// after row for each channel), so the results are the same bit for bit.
fn rows(a: Axis, x: &[f32]) -> std::slice::ChunksExact<'_, f32> {
    x.chunks_exact(a.n.max(1))
}

/// Per-channel mean and biased variance of `x` (two passes in `f64`).
fn channel_moments(a: Axis, x: &[f32], mean: &mut [f32], var: &mut [f32]) {
    let count = a.per_channel().max(1) as f64;
    if a.inner == 1 {
        for cs in blocks(a) {
            let (c0, w) = (cs.start, cs.len());
            let mut acc = [0.0f64; BLOCK];
            for row in rows(a, x) {
                acc[..w].iter_mut().zip(&row[cs.clone()]).for_each(|(s, &v)| *s += f64::from(v));
            }
            for c in cs.clone() {
                mean[c] = (acc[c - c0] / count) as f32;
            }
            let mut acc = [0.0f64; BLOCK];
            for row in rows(a, x) {
                for ((s, &v), &m) in acc[..w].iter_mut().zip(&row[cs.clone()]).zip(&mean[cs.clone()]) {
                    *s += (f64::from(v) - f64::from(m)).powi(2);
                }
            }
            for c in cs {
                var[c] = (acc[c - c0] / count) as f32;
            }
        }
        return;
    }
    for cs in blocks(a) {
        let sums = block_sums(a, cs.clone(), |_, e| [f64::from(x[e])]);
        for (c, [s]) in cs.clone().zip(sums) {
            mean[c] = (s / count) as f32;
        }
        let mean = &*mean;
        let sums = block_sums(a, cs.clone(), |c, e| [(f64::from(x[e]) - f64::from(mean[c])).powi(2)]);
        for (c, [s]) in cs.zip(sums) {
            var[c] = (s / count) as f32;
        }
    }
}

/// Splits a batch-normalization scratch slice into `(mean, variance, inv_std)`, each `n` long.
fn bn_stats(stats: &[f32], n: usize) -> (&[f32], &[f32], &[f32]) {
    let (mean, rest) = stats.split_at(n);
    let (var, rest) = rest.split_at(n);
    (mean, var, &rest[..n])
}

/// `BatchNormalization` forward. In training, normalizes with the batch's per-channel mean and biased
/// variance; otherwise with `moving_mean` / `moving_var`. Either way the statistics used are written to
/// `stats` (`3n` long: mean, variance, 1/√(variance + ε)) for backward and [`batch_norm_update`].
/// y = (x − mean) · inv_std · gamma + beta, gamma and beta per channel (1 and 0 when absent).
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_forward(
    a: Axis,
    epsilon: f32,
    training: bool,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    moving_mean: &[f32],
    moving_var: &[f32],
    x: &[f32],
    stats: &mut [f32],
    y: &mut [f32],
) {
    let n = a.n;
    debug_assert_eq!(x.len(), a.len());
    debug_assert_eq!(y.len(), a.len());
    debug_assert!(stats.len() >= 3 * n);
    {
        let (mean, rest) = stats.split_at_mut(n);
        let (var, rest) = rest.split_at_mut(n);
        if training {
            channel_moments(a, x, mean, var);
        } else {
            mean.copy_from_slice(&moving_mean[..n]);
            var.copy_from_slice(&moving_var[..n]);
        }
        for (inv, &v) in rest[..n].iter_mut().zip(var.iter()) {
            *inv = 1.0 / (v + epsilon).sqrt();
        }
    }
    let (mean, _, inv_std) = bn_stats(stats, n);
    let scale_shift = |c: usize| {
        let scale = inv_std[c] * gamma.map_or(1.0, |g| g[c]);
        (scale, beta.map_or(0.0, |b| b[c]) - mean[c] * scale)
    };
    if a.inner == 1 {
        for cs in blocks(a) {
            let (mut scale, mut shift) = ([0.0f32; BLOCK], [0.0f32; BLOCK]);
            for c in cs.clone() {
                (scale[c - cs.start], shift[c - cs.start]) = scale_shift(c);
            }
            for (yr, xr) in y.chunks_exact_mut(n.max(1)).zip(rows(a, x)) {
                for (((o, &v), &k), &b) in yr[cs.clone()].iter_mut().zip(&xr[cs.clone()]).zip(&scale).zip(&shift) {
                    *o = v * k + b;
                }
            }
        }
        return;
    }
    a.runs(|c, s| {
        let (scale, shift) = scale_shift(c);
        for (o, &v) in y[s..s + a.inner].iter_mut().zip(&x[s..s + a.inner]) {
            *o = v * scale + shift;
        }
    });
}

/// `BatchNormalization` backward from the statistics of the last forward. Accumulates dgamma = Σ dy · x̂
/// and dbeta = Σ dy per channel, and dx: in training, through the batch statistics,
/// dx = gamma · inv_std / N · (N · dy − Σ dy − x̂ · Σ dy · x̂); in inference, dx = dy · gamma · inv_std.
#[allow(clippy::too_many_arguments)]
pub fn batch_norm_backward(
    a: Axis,
    training: bool,
    gamma: Option<&[f32]>,
    x: &[f32],
    stats: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    mut dgamma: Option<&mut [f32]>,
    mut dbeta: Option<&mut [f32]>,
) {
    let n = a.n;
    debug_assert_eq!(dy.len(), a.len());
    let (mean, _, inv_std) = bn_stats(stats, n);
    let count = a.per_channel().max(1) as f64;
    let xhat = |c: usize, e: usize| (x[e] - mean[c]) * inv_std[c];
    // Block by block: Σ dy and Σ dy · x̂ of the block's channels, then their dx.
    for cs in blocks(a) {
        let c0 = cs.start;
        let sums = if a.inner == 1 {
            row_sums(a, cs.clone(), (x, dy), (mean, inv_std))
        } else {
            block_sums(a, cs.clone(), |c, e| [f64::from(dy[e]), f64::from(dy[e]) * f64::from(xhat(c, e))])
        };
        for (c, [s_dy, s_dyx]) in cs.clone().zip(sums) {
            if let Some(g) = dgamma.as_deref_mut() {
                g[c] += s_dyx as f32;
            }
            if let Some(b) = dbeta.as_deref_mut() {
                b[c] += s_dy as f32;
            }
        }
        let Some(dx) = dx.as_deref_mut() else { continue };
        debug_assert_eq!(dx.len(), a.len());
        if a.inner == 1 {
            row_dx(a, cs, (x, dy, dx), (mean, inv_std, gamma), training.then_some((&sums, count)));
            continue;
        }
        each_in(a, cs, |c, e| {
            let scale = gamma.map_or(1.0, |g| g[c]) * inv_std[c];
            dx[e] += if training {
                let [s_dy, s_dyx] = sums[c - c0];
                scale * (dy[e] - (s_dy / count) as f32 - xhat(c, e) * (s_dyx / count) as f32)
            } else {
                scale * dy[e]
            };
        });
    }
}

/// [`block_sums`] of Σ dy and Σ dy · x̂ for a channels-last tensor, row by row (see [`rows`]).
fn row_sums(a: Axis, cs: std::ops::Range<usize>, (x, dy): (&[f32], &[f32]), (mean, inv_std): (&[f32], &[f32])) -> [[f64; 2]; BLOCK] {
    let mut acc = [[0.0f64; 2]; BLOCK];
    for (xr, dr) in rows(a, x).zip(rows(a, dy)) {
        let parts = acc.iter_mut().zip(&xr[cs.clone()]).zip(&dr[cs.clone()]).zip(&mean[cs.clone()]).zip(&inv_std[cs.clone()]);
        for ((((s, &xv), &d), &m), &inv) in parts {
            s[0] += f64::from(d);
            s[1] += f64::from(d) * f64::from((xv - m) * inv);
        }
    }
    acc
}

/// The dx pass of [`batch_norm_backward`] for the channels `cs` of a channels-last tensor, row by row:
/// with `sums` (training: Σ dy and Σ dy · x̂ per channel, and the count) through the batch statistics,
/// else dx += dy · gamma · inv_std.
fn row_dx(
    a: Axis,
    cs: std::ops::Range<usize>,
    (x, dy, dx): (&[f32], &[f32], &mut [f32]),
    (mean, inv_std, gamma): (&[f32], &[f32], Option<&[f32]>),
    training: Option<(&[[f64; 2]; BLOCK], f64)>,
) {
    let (mut scale, mut m_dy, mut m_dyx) = ([0.0f32; BLOCK], [0.0f32; BLOCK], [0.0f32; BLOCK]);
    for c in cs.clone() {
        let k = c - cs.start;
        scale[k] = gamma.map_or(1.0, |g| g[c]) * inv_std[c];
        if let Some((sums, count)) = training {
            (m_dy[k], m_dyx[k]) = ((sums[k][0] / count) as f32, (sums[k][1] / count) as f32);
        }
    }
    let (mean, inv_std) = (&mean[cs.clone()], &inv_std[cs.clone()]);
    for ((dxr, xr), dr) in dx.chunks_exact_mut(a.n.max(1)).zip(rows(a, x)).zip(rows(a, dy)) {
        let (dxr, xr, dr) = (&mut dxr[cs.clone()], &xr[cs.clone()], &dr[cs.clone()]);
        if training.is_some() {
            for (k, v) in dxr.iter_mut().enumerate() {
                let xhat = (xr[k] - mean[k]) * inv_std[k];
                *v += scale[k] * (dr[k] - m_dy[k] - xhat * m_dyx[k]);
            }
        } else {
            dxr.iter_mut().zip(dr).zip(&scale).for_each(|((v, &d), &k)| *v += k * d);
        }
    }
}

/// Moves the moving statistics toward the batch statistics of the last training forward (Keras):
/// moving = moving · momentum + batch · (1 − momentum), the variance being the biased batch variance.
pub fn batch_norm_update(momentum: f32, stats: &[f32], moving_mean: &mut [f32], moving_var: &mut [f32]) {
    let n = moving_mean.len();
    let (mean, var, _) = bn_stats(stats, n);
    for (m, &b) in moving_mean.iter_mut().zip(mean) {
        *m = *m * momentum + b * (1.0 - momentum);
    }
    for (v, &b) in moving_var.iter_mut().zip(var) {
        *v = *v * momentum + b * (1.0 - momentum);
    }
}

/// Elements of layer-normalization group `(o, i)`: `n` indices strided by `inner`.
#[inline]
fn group(a: Axis, o: usize, i: usize) -> impl Iterator<Item = (usize, usize)> {
    let base = o * a.n * a.inner + i;
    (0..a.n).map(move |c| (c, base + c * a.inner))
}

/// `LayerNormalization` forward: each `(outer, inner)` group of `n` elements is normalized by its own
/// mean and biased variance, y = (x − mean) / √(variance + ε) · gamma + beta, gamma and beta indexed along
/// the axis. `stats` (`2 · outer · inner` long) receives each group's mean, then each group's inv_std.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_forward(a: Axis, epsilon: f32, gamma: Option<&[f32]>, beta: Option<&[f32]>, x: &[f32], stats: &mut [f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), a.len());
    debug_assert_eq!(y.len(), a.len());
    let groups = a.per_channel();
    debug_assert!(stats.len() >= 2 * groups);
    let (means, rest) = stats.split_at_mut(groups);
    let inv_stds = &mut rest[..groups];
    if a.inner == 1 && a.n > 0 {
        return rows_forward(a.n, epsilon, gamma, beta, x, means, inv_stds, y);
    }
    let count = a.n.max(1) as f64;
    for o in 0..a.outer {
        for i in 0..a.inner {
            let k = o * a.inner + i;
            let mean = group(a, o, i).map(|(_, e)| f64::from(x[e])).sum::<f64>() / count;
            let var = group(a, o, i).map(|(_, e)| (f64::from(x[e]) - mean).powi(2)).sum::<f64>() / count;
            let inv = 1.0 / (var + f64::from(epsilon)).sqrt();
            let (mean, inv) = (mean as f32, inv as f32);
            means[k] = mean;
            inv_stds[k] = inv;
            for (c, e) in group(a, o, i) {
                y[e] = (x[e] - mean) * inv * gamma.map_or(1.0, |g| g[c]) + beta.map_or(0.0, |b| b[c]);
            }
        }
    }
}

/// `LayerNormalization` backward: with g = dy · gamma and x̂ the normalized input of a group,
/// dx += inv_std · (g − mean(g) − x̂ · mean(g · x̂)); dgamma += Σ dy · x̂ and dbeta += Σ dy along the axis.
#[allow(clippy::too_many_arguments)]
pub fn layer_norm_backward(
    a: Axis,
    gamma: Option<&[f32]>,
    x: &[f32],
    stats: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    mut dgamma: Option<&mut [f32]>,
    mut dbeta: Option<&mut [f32]>,
) {
    debug_assert_eq!(dy.len(), a.len());
    let groups = a.per_channel();
    let (means, rest) = stats.split_at(groups);
    let inv_stds = &rest[..groups];
    if a.inner == 1 && a.n > 0 {
        return rows_backward(a.n, gamma, x, means, inv_stds, dy, dx, dgamma, dbeta);
    }
    let count = a.n.max(1) as f64;
    for o in 0..a.outer {
        for i in 0..a.inner {
            let k = o * a.inner + i;
            let (mean, inv) = (means[k], inv_stds[k]);
            let xhat = |e: usize| (x[e] - mean) * inv;
            let g = |c: usize, e: usize| dy[e] * gamma.map_or(1.0, |g| g[c]);
            if let Some(dgamma) = dgamma.as_deref_mut() {
                for (c, e) in group(a, o, i) {
                    dgamma[c] += dy[e] * xhat(e);
                }
            }
            if let Some(dbeta) = dbeta.as_deref_mut() {
                for (c, e) in group(a, o, i) {
                    dbeta[c] += dy[e];
                }
            }
            if let Some(dx) = dx.as_deref_mut() {
                let mean_g = (group(a, o, i).map(|(c, e)| f64::from(g(c, e))).sum::<f64>() / count) as f32;
                let mean_gx = (group(a, o, i).map(|(c, e)| f64::from(g(c, e) * xhat(e))).sum::<f64>() / count) as f32;
                for (c, e) in group(a, o, i) {
                    dx[e] += inv * (g(c, e) - mean_g - xhat(e) * mean_gx);
                }
            }
        }
    }
}

/// Σ f(a[i], b[i]) in f64, as 8 partial sums so that it vectorizes (`a` and `b` of one length).
#[inline(always)]
fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (mut ac, mut bc) = (a.chunks_exact(8), b.chunks_exact(8));
    for (x, y) in (&mut ac).zip(&mut bc) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s += f(x, y);
        }
    }
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).map(|(&x, &y)| f(x, y)).sum();
    tail + acc.iter().sum::<f64>()
}

/// Σ f(a[i], b[i], c[i]) in f64, as [`lane_sum`] (the three of one length).
#[inline(always)]
fn lane_sum3(a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f64) -> f64 {
    let mut acc = [0.0f64; 8];
    let (mut ac, mut bc, mut cc) = (a.chunks_exact(8), b.chunks_exact(8), c.chunks_exact(8));
    for ((x, y), z) in (&mut ac).zip(&mut bc).zip(&mut cc) {
        for (((s, &x), &y), &z) in acc.iter_mut().zip(x).zip(y).zip(z) {
            *s += f(x, y, z);
        }
    }
    let tail: f64 = ac.remainder().iter().zip(bc.remainder()).zip(cc.remainder()).map(|((&x, &y), &z)| f(x, y, z)).sum();
    tail + acc.iter().sum::<f64>()
}

/// `y = (x − mean) · inv · gamma + beta` over one row, one loop per case so that each vectorizes.
#[inline(always)]
fn normalize_row(xr: &[f32], yr: &mut [f32], mean: f32, inv: f32, gamma: Option<&[f32]>, beta: Option<&[f32]>) {
    let it = yr.iter_mut().zip(xr);
    match (gamma, beta) {
        (Some(g), Some(b)) => it.zip(g).zip(b).for_each(|(((o, &v), &g), &b)| *o = (v - mean) * inv * g + b),
        (Some(g), None) => it.zip(g).for_each(|((o, &v), &g)| *o = (v - mean) * inv * g),
        (None, Some(b)) => it.zip(b).for_each(|((o, &v), &b)| *o = (v - mean) * inv + b),
        (None, None) => it.for_each(|(o, &v)| *o = (v - mean) * inv),
    }
}

/// [`layer_norm_forward`] over the last axis (`inner == 1`): each group is one contiguous row of
/// `n`, so every pass is a vectorizable loop (compiled for AVX2 where the CPU has it). The same
/// statistics in f64, summed in lanes.
#[allow(clippy::too_many_arguments)]
fn rows_forward(
    n: usize,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    x: &[f32],
    means: &mut [f32],
    invs: &mut [f32],
    y: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { rows_forward_avx2(n, eps, gamma, beta, x, means, invs, y) };
    }
    rows_forward_on(n, eps, gamma, beta, x, means, invs, y)
}

/// [`rows_forward_on`] compiled for AVX2. Safety: the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_forward_avx2(
    n: usize,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    x: &[f32],
    means: &mut [f32],
    invs: &mut [f32],
    y: &mut [f32],
) {
    rows_forward_on(n, eps, gamma, beta, x, means, invs, y)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_forward_on(
    n: usize,
    eps: f32,
    gamma: Option<&[f32]>,
    beta: Option<&[f32]>,
    x: &[f32],
    means: &mut [f32],
    invs: &mut [f32],
    y: &mut [f32],
) {
    let count = n as f64;
    let rows = x.chunks_exact(n).zip(y.chunks_exact_mut(n)).zip(means.iter_mut().zip(invs.iter_mut()));
    for ((xr, yr), (mean_out, inv_out)) in rows {
        let mean = lane_sum(xr, xr, |v, _| f64::from(v)) / count;
        let var = lane_sum(xr, xr, |v, _| (f64::from(v) - mean) * (f64::from(v) - mean)) / count;
        let inv = (1.0 / (var + f64::from(eps)).sqrt()) as f32;
        let mean = mean as f32;
        (*mean_out, *inv_out) = (mean, inv);
        normalize_row(xr, yr, mean, inv, gamma.map(|g| &g[..n]), beta.map(|b| &b[..n]));
    }
}

/// [`layer_norm_backward`] over the last axis (`inner == 1`), vectorizable as [`rows_forward`].
#[allow(clippy::too_many_arguments)]
fn rows_backward(
    n: usize,
    gamma: Option<&[f32]>,
    x: &[f32],
    means: &[f32],
    invs: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { rows_backward_avx2(n, gamma, x, means, invs, dy, dx, dgamma, dbeta) };
    }
    rows_backward_on(n, gamma, x, means, invs, dy, dx, dgamma, dbeta)
}

/// [`rows_backward_on`] compiled for AVX2. Safety: the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn rows_backward_avx2(
    n: usize,
    gamma: Option<&[f32]>,
    x: &[f32],
    means: &[f32],
    invs: &[f32],
    dy: &[f32],
    dx: Option<&mut [f32]>,
    dgamma: Option<&mut [f32]>,
    dbeta: Option<&mut [f32]>,
) {
    rows_backward_on(n, gamma, x, means, invs, dy, dx, dgamma, dbeta)
}

#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn rows_backward_on(
    n: usize,
    gamma: Option<&[f32]>,
    x: &[f32],
    means: &[f32],
    invs: &[f32],
    dy: &[f32],
    mut dx: Option<&mut [f32]>,
    mut dgamma: Option<&mut [f32]>,
    mut dbeta: Option<&mut [f32]>,
) {
    let count = n as f64;
    for (r, (xr, dyr)) in x.chunks_exact(n).zip(dy.chunks_exact(n)).enumerate() {
        let (mean, inv) = (means[r], invs[r]);
        if let Some(dgamma) = dgamma.as_deref_mut() {
            for ((g, &d), &v) in dgamma.iter_mut().zip(dyr).zip(xr) {
                *g += d * ((v - mean) * inv);
            }
        }
        if let Some(dbeta) = dbeta.as_deref_mut() {
            dbeta.iter_mut().zip(dyr).for_each(|(b, &d)| *b += d);
        }
        if let Some(dx) = dx.as_deref_mut() {
            // g = dy · gamma and x̂ = (x − mean) · inv, summed in f64 lanes.
            let (sum_g, sum_gx) = match gamma {
                Some(gm) => (
                    lane_sum(dyr, &gm[..n], |d, g| f64::from(d * g)),
                    lane_sum3(dyr, &gm[..n], xr, |d, g, v| f64::from(d * g * ((v - mean) * inv))),
                ),
                None => (lane_sum(dyr, dyr, |d, _| f64::from(d)), lane_sum(dyr, xr, |d, v| f64::from(d * ((v - mean) * inv)))),
            };
            let (mean_g, mean_gx) = ((sum_g / count) as f32, (sum_gx / count) as f32);
            let dxr = &mut dx[r * n..][..n];
            match gamma {
                Some(gm) => {
                    for (((o, &d), &v), &g) in dxr.iter_mut().zip(dyr).zip(xr).zip(&gm[..n]) {
                        *o += inv * (d * g - mean_g - (v - mean) * inv * mean_gx);
                    }
                }
                None => {
                    for ((o, &d), &v) in dxr.iter_mut().zip(dyr).zip(xr) {
                        *o += inv * (d - mean_g - (v - mean) * inv * mean_gx);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// Element indices of channel `c` of `a`.
    fn channel(a: Axis, c: usize) -> Vec<usize> {
        (0..a.outer).flat_map(|o| (0..a.inner).map(move |i| (o * a.n + c) * a.inner + i)).collect()
    }

    /// Element indices of layer-normalization group `(o, i)` of `a`, in axis order.
    fn lane(a: Axis, o: usize, i: usize) -> Vec<usize> {
        (0..a.n).map(|c| (o * a.n + c) * a.inner + i).collect()
    }

    /// Mean and biased variance of `x` at `idx`, in f64.
    fn moments(x: &[f32], idx: &[usize]) -> (f64, f64) {
        let m = idx.iter().map(|&e| x[e] as f64).sum::<f64>() / idx.len() as f64;
        (m, idx.iter().map(|&e| (x[e] as f64 - m).powi(2)).sum::<f64>() / idx.len() as f64)
    }

    /// (x − m) / √(v + 1e-3) · g + b, in f64.
    fn normalized(x: f32, (m, v): (f64, f64), g: f32, b: f32) -> f64 {
        (x as f64 - m) / (v + 1e-3).sqrt() * g as f64 + b as f64
    }

    // Channels last, a middle axis, and one channel spread over a long inner run; the last has more
    // channels than one reduction block.
    const SHAPES: [Axis; 4] = [
        Axis { outer: 5, n: 3, inner: 1 },
        Axis { outer: 2, n: 4, inner: 3 },
        Axis { outer: 1, n: 2, inner: 7 },
        Axis { outer: 3, n: BLOCK + 5, inner: 1 },
    ];

    /// A random input of `a` and random gamma, beta, moving mean and moving variance (positive).
    fn bn_case(rng: &mut Rng, a: Axis) -> (Vec<f32>, [Vec<f32>; 4]) {
        let x = random_vec(rng, a.len(), -2.0, 2.0);
        let (gamma, beta) = (random_vec(rng, a.n, 0.5, 2.0), random_vec(rng, a.n, -1.0, 1.0));
        let (mm, mv) = (random_vec(rng, a.n, -1.0, 1.0), random_vec(rng, a.n, 0.5, 2.0));
        (x, [gamma, beta, mm, mv])
    }

    fn bn(a: Axis, training: bool, p: &[&[f32]; 4], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let [gamma, beta, mm, mv] = *p;
        let (mut y, mut stats) = (vec![0.0; a.len()], vec![0.0; 3 * a.n]);
        batch_norm_forward(a, 1e-3, training, Some(gamma), Some(beta), mm, mv, x, &mut stats, &mut y);
        (y, stats)
    }

    #[test]
    fn batch_norm_uses_batch_statistics_in_training_and_moving_ones_in_inference() {
        let mut rng = Rng::new(1);
        for a in SHAPES {
            let (x, [gamma, beta, mm, mv]) = bn_case(&mut rng, a);
            let p: [&[f32]; 4] = [&gamma, &beta, &mm, &mv];
            let (y, stats) = bn(a, true, &p, &x);
            let (mut mm2, mut mv2) = (mm.clone(), mv.clone());
            batch_norm_update(0.9, &stats, &mut mm2, &mut mv2);
            for c in 0..a.n {
                let idx = channel(a, c);
                let (m, v) = moments(&x, &idx);
                for &e in &idx {
                    assert!((y[e] as f64 - normalized(x[e], (m, v), gamma[c], beta[c])).abs() < 1e-5);
                }
                // moving = 0.9 · moving + 0.1 · batch, with the biased batch variance.
                assert!((mm2[c] as f64 - (0.9 * mm[c] as f64 + 0.1 * m)).abs() < 1e-5);
                assert!((mv2[c] as f64 - (0.9 * mv[c] as f64 + 0.1 * v)).abs() < 1e-5);
            }
            let (y, _) = bn(a, false, &p, &x);
            for c in 0..a.n {
                for e in channel(a, c) {
                    let want = normalized(x[e], (mm[c] as f64, mv[c] as f64), gamma[c], beta[c]);
                    assert!((y[e] as f64 - want).abs() < 1e-5);
                }
            }
        }
    }

    #[test]
    fn batch_norm_backward_matches_finite_differences_in_training_and_inference() {
        let mut rng = Rng::new(2);
        for a in SHAPES {
            for training in [true, false] {
                let (x, [gamma, beta, mm, mv]) = bn_case(&mut rng, a);
                let r = random_vec(&mut rng, a.len(), -1.0, 1.0);
                let (_, stats) = bn(a, training, &[&gamma, &beta, &mm, &mv], &x);
                let (mut dx, mut dg, mut db) = (vec![0.0; a.len()], vec![0.0; a.n], vec![0.0; a.n]);
                batch_norm_backward(a, training, Some(&gamma), &x, &stats, &r, Some(&mut dx), Some(&mut dg), Some(&mut db));
                let what = format!("batch norm {a:?} training={training}");
                check_grad(&what, &x, &dx, 1e-2, |x| weighted_sum(&r, &bn(a, training, &[&gamma, &beta, &mm, &mv], x).0));
                check_grad(&what, &gamma, &dg, 1e-2, |g| weighted_sum(&r, &bn(a, training, &[g, &beta, &mm, &mv], &x).0));
                check_grad(&what, &beta, &db, 1e-2, |b| weighted_sum(&r, &bn(a, training, &[&gamma, b, &mm, &mv], &x).0));
            }
        }
    }

    fn ln(a: Axis, gamma: &[f32], beta: &[f32], x: &[f32]) -> (Vec<f32>, Vec<f32>) {
        let (mut y, mut stats) = (vec![0.0; a.len()], vec![0.0; 2 * a.outer * a.inner]);
        layer_norm_forward(a, 1e-3, Some(gamma), Some(beta), x, &mut stats, &mut y);
        (y, stats)
    }

    #[test]
    fn layer_norm_matches_a_naive_reference_and_finite_differences() {
        let mut rng = Rng::new(3);
        for a in SHAPES {
            let x = random_vec(&mut rng, a.len(), -2.0, 2.0);
            let (gamma, beta) = (random_vec(&mut rng, a.n, 0.5, 2.0), random_vec(&mut rng, a.n, -1.0, 1.0));
            let (y, stats) = ln(a, &gamma, &beta, &x);
            for o in 0..a.outer {
                for i in 0..a.inner {
                    let idx = lane(a, o, i);
                    let mv = moments(&x, &idx);
                    for (c, &e) in idx.iter().enumerate() {
                        assert!((y[e] as f64 - normalized(x[e], mv, gamma[c], beta[c])).abs() < 1e-5);
                    }
                }
            }
            let r = random_vec(&mut rng, a.len(), -1.0, 1.0);
            let (mut dx, mut dg, mut db) = (vec![0.0; a.len()], vec![0.0; a.n], vec![0.0; a.n]);
            layer_norm_backward(a, Some(&gamma), &x, &stats, &r, Some(&mut dx), Some(&mut dg), Some(&mut db));
            let what = format!("layer norm {a:?}");
            check_grad(&what, &x, &dx, 1e-2, |x| weighted_sum(&r, &ln(a, &gamma, &beta, x).0));
            check_grad(&what, &gamma, &dg, 1e-2, |g| weighted_sum(&r, &ln(a, g, &beta, &x).0));
            check_grad(&what, &beta, &db, 1e-2, |b| weighted_sum(&r, &ln(a, &gamma, b, &x).0));
        }
    }

    #[test]
    fn layer_norm_without_gamma_and_beta_matches_finite_differences_over_rows_longer_than_a_lane_block() {
        let mut rng = Rng::new(4);
        let a = Axis { outer: 3, n: 21, inner: 1 };
        let x = random_vec(&mut rng, a.len(), -2.0, 2.0);
        let run = |x: &[f32]| {
            let (mut y, mut stats) = (vec![0.0; a.len()], vec![0.0; 2 * a.outer]);
            layer_norm_forward(a, 1e-3, None, None, x, &mut stats, &mut y);
            (y, stats)
        };
        let (y, stats) = run(&x);
        for o in 0..a.outer {
            let idx = lane(a, o, 0);
            let mv = moments(&x, &idx);
            for &e in &idx {
                assert!((y[e] as f64 - normalized(x[e], mv, 1.0, 0.0)).abs() < 1e-5);
            }
        }
        let r = random_vec(&mut rng, a.len(), -1.0, 1.0);
        let mut dx = vec![0.0; a.len()];
        layer_norm_backward(a, None, &x, &stats, &r, Some(&mut dx), None, None);
        check_grad("layer norm without gamma", &x, &dx, 1e-2, |x| weighted_sum(&r, &run(x).0));
    }

    #[test]
    fn without_gamma_and_beta_the_output_is_the_bare_normalization() {
        let a = Axis { outer: 4, n: 2, inner: 1 };
        let x = [1.0, 10.0, 3.0, 20.0, 5.0, 30.0, 7.0, 40.0];
        let (mut y, mut stats) = ([0.0; 8], [0.0; 6]);
        batch_norm_forward(a, 0.0, true, None, None, &[0.0; 2], &[1.0; 2], &x, &mut stats, &mut y);
        // Channel 0: mean 4, variance 5; channel 1: mean 25, variance 125.
        assert_eq!(&stats[..4], &[4.0, 25.0, 5.0, 125.0]);
        assert!((y[0] + 3.0 / 5.0f32.sqrt()).abs() < 1e-6);
        let (mut y, mut stats) = ([0.0; 8], [0.0; 8]);
        layer_norm_forward(a, 0.0, None, None, &x, &mut stats, &mut y);
        // Every pair normalizes to (−1, 1).
        assert!(y.chunks(2).all(|p| (p[0] + 1.0).abs() < 1e-6 && (p[1] - 1.0).abs() < 1e-6), "{y:?}");
    }
}
