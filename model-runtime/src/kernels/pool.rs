//! Keras pooling, channels-last: `MaxPooling2D` / `AveragePooling2D` (and 1D, as height 1) over a
//! [`Window2d`], and the global poolings over all positions of a sample. Forward next to backward.
//!
//! Padding follows Keras: a max ignores padded positions, an average divides by the number of valid
//! (non-padded) positions in its window. Max backward recomputes the winner from `x` and `y` (the first
//! position equal to the maximum gets the gradient), so no index buffer is kept.

use super::conv::Window2d;
use super::GradWrite;

/// The valid input positions (channels excluded) of output window `(oy, ox)` of one sample.
#[inline]
fn taps(g: &Window2d, oy: usize, ox: usize) -> impl Iterator<Item = usize> + Clone + '_ {
    (0..g.kh)
        .filter_map(move |ki| g.in_row(oy, ki))
        .flat_map(move |iy| (0..g.kw).filter_map(move |kj| g.in_col(ox, kj)).map(move |ix| iy * g.w + ix))
}

/// Channels, per-sample input length and per-sample output length of `g`; `None` when there is nothing to
/// compute. `in_total` and `out_total` are the lengths of the batch's input-side and output-side slices.
#[inline]
fn sizes(g: &Window2d, batch: usize, in_total: usize, out_total: usize) -> Option<(usize, usize, usize)> {
    let (c, in_len, out_len) = (g.c, g.in_len(), g.positions() * g.c);
    debug_assert_eq!(in_total, batch * in_len);
    debug_assert_eq!(out_total, batch * out_len);
    (c > 0 && in_len > 0 && out_len > 0).then_some((c, in_len, out_len))
}

/// Output windows of one sample: `(output position, oy, ox)`.
#[inline]
fn windows(g: &Window2d) -> impl Iterator<Item = (usize, usize, usize)> + '_ {
    (0..g.oh).flat_map(move |oy| (0..g.ow).map(move |ox| (oy * g.ow + ox, oy, ox)))
}

/// y = max over each window, per channel, for `batch` samples.
pub fn max_forward(g: &Window2d, x: &[f32], y: &mut [f32], batch: usize) {
    let Some((c, in_len, out_len)) = sizes(g, batch, x.len(), y.len()) else { return };
    for (xs, ys) in x.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
        for (o, oy, ox) in windows(g) {
            let out = &mut ys[o * c..(o + 1) * c];
            out.fill(f32::NEG_INFINITY);
            for p in taps(g, oy, ox) {
                for (v, &xv) in out.iter_mut().zip(&xs[p * c..(p + 1) * c]) {
                    *v = v.max(xv);
                }
            }
        }
    }
}

/// dx += dy routed to the first position of each window where x equals the forward output y.
pub fn max_backward(g: &Window2d, x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], batch: usize) {
    let Some((c, in_len, out_len)) = sizes(g, batch, dx.len(), dy.len()) else { return };
    let samples = x.chunks_exact(in_len).zip(dx.chunks_exact_mut(in_len)).zip(y.chunks_exact(out_len).zip(dy.chunks_exact(out_len)));
    for ((xs, dxs), (ys, dys)) in samples {
        for (o, oy, ox) in windows(g) {
            let t = taps(g, oy, ox);
            for ch in 0..c {
                let (yv, dv) = (ys[o * c + ch], dys[o * c + ch]);
                if let Some(p) = t.clone().find(|&p| xs[p * c + ch] == yv) {
                    dxs[p * c + ch] += dv;
                }
            }
        }
    }
}

/// y = mean over the valid positions of each window, per channel.
pub fn avg_forward(g: &Window2d, x: &[f32], y: &mut [f32], batch: usize) {
    let Some((c, in_len, out_len)) = sizes(g, batch, x.len(), y.len()) else { return };
    for (xs, ys) in x.chunks_exact(in_len).zip(y.chunks_exact_mut(out_len)) {
        for (o, oy, ox) in windows(g) {
            let out = &mut ys[o * c..(o + 1) * c];
            out.fill(0.0);
            let mut count = 0usize;
            for p in taps(g, oy, ox) {
                count += 1;
                for (v, &xv) in out.iter_mut().zip(&xs[p * c..(p + 1) * c]) {
                    *v += xv;
                }
            }
            let inv = 1.0 / count.max(1) as f32;
            out.iter_mut().for_each(|v| *v *= inv);
        }
    }
}

/// dx += dy / count spread over the valid positions of each window.
pub fn avg_backward(g: &Window2d, dy: &[f32], dx: &mut [f32], batch: usize) {
    let Some((c, in_len, out_len)) = sizes(g, batch, dx.len(), dy.len()) else { return };
    for (dxs, dys) in dx.chunks_exact_mut(in_len).zip(dy.chunks_exact(out_len)) {
        for (o, oy, ox) in windows(g) {
            let d = &dys[o * c..(o + 1) * c];
            let t = taps(g, oy, ox);
            let inv = 1.0 / t.clone().count().max(1) as f32;
            for p in t {
                for (v, &dv) in dxs[p * c..(p + 1) * c].iter_mut().zip(d) {
                    *v += dv * inv;
                }
            }
        }
    }
}

/// y[n, ch] = mean over the `positions` rows of sample n (GlobalAveragePooling1D/2D).
pub fn global_avg_forward(x: &[f32], y: &mut [f32], batch: usize, positions: usize, c: usize) {
    debug_assert_eq!(x.len(), batch * positions * c);
    debug_assert_eq!(y.len(), batch * c);
    if c == 0 || positions == 0 {
        return;
    }
    let inv = 1.0 / positions as f32;
    for (xs, ys) in x.chunks_exact(positions * c).zip(y.chunks_exact_mut(c)) {
        ys.fill(0.0);
        for row in xs.chunks_exact(c) {
            ys.iter_mut().zip(row).for_each(|(v, &xv)| *v += xv);
        }
        ys.iter_mut().for_each(|v| *v *= inv);
    }
}

/// Keras' `GlobalAveragePooling1D` with a step mask (docs/masks.md): `y[n, ch] = Σ_p m[n, p]·x[n, p, ch] /
/// Σ_p m[n, p]`, the mean of the kept steps, computed as Keras does (`sum(where(m, x, 0)) / sum(m)`).
/// A sample with every step masked gives Keras' 0 / 0 = NaN.
pub fn global_avg_masked_forward(x: &[f32], mask: &[f32], y: &mut [f32], batch: usize, positions: usize, c: usize) {
    if c == 0 || positions == 0 {
        return;
    }
    for ((xs, ms), ys) in x.chunks_exact(positions * c).zip(mask.chunks_exact(positions)).zip(y.chunks_exact_mut(c)).take(batch) {
        ys.fill(0.0);
        for (row, _) in xs.chunks_exact(c).zip(ms).filter(|(_, &m)| m != 0.0) {
            ys.iter_mut().zip(row).for_each(|(v, &xv)| *v += xv);
        }
        let kept: f32 = ms.iter().sum();
        ys.iter_mut().for_each(|v| *v /= kept);
    }
}

/// dx[n, p, ch] (+)= m[n, p]·dy[n, ch] / Σ_p m[n, p] (`=` when `write` is [`GradWrite::Set`]); 0 for a
/// sample with every step masked, as Keras' gradient of `where(m, x, 0)`.
pub fn global_avg_masked_backward(dy: &[f32], mask: &[f32], dx: &mut [f32], batch: usize, positions: usize, c: usize, write: GradWrite) {
    if c == 0 || positions == 0 {
        return;
    }
    for ((dxs, ms), d) in dx.chunks_exact_mut(positions * c).zip(mask.chunks_exact(positions)).zip(dy.chunks_exact(c)).take(batch) {
        let kept: f32 = ms.iter().sum();
        let inv = if kept > 0.0 { 1.0 / kept } else { 0.0 };
        for (row, &m) in dxs.chunks_exact_mut(c).zip(ms) {
            let s = m * inv;
            match write {
                GradWrite::Add => row.iter_mut().zip(d).for_each(|(v, &dv)| *v += dv * s),
                GradWrite::Set => row.iter_mut().zip(d).for_each(|(v, &dv)| *v = dv * s),
            }
        }
    }
}

/// dx[n, p, ch] += dy[n, ch] / positions (`=` when `write` is [`GradWrite::Set`]).
pub fn global_avg_backward(dy: &[f32], dx: &mut [f32], batch: usize, positions: usize, c: usize, write: GradWrite) {
    debug_assert_eq!(dx.len(), batch * positions * c);
    debug_assert_eq!(dy.len(), batch * c);
    if c == 0 || positions == 0 {
        return;
    }
    let inv = 1.0 / positions as f32;
    for (dxs, d) in dx.chunks_exact_mut(positions * c).zip(dy.chunks_exact(c)) {
        for row in dxs.chunks_exact_mut(c) {
            match write {
                GradWrite::Add => row.iter_mut().zip(d).for_each(|(v, &dv)| *v += dv * inv),
                GradWrite::Set => row.iter_mut().zip(d).for_each(|(v, &dv)| *v = dv * inv),
            }
        }
    }
}

/// y[n, ch] = max over the `positions` rows of sample n (GlobalMaxPooling1D/2D).
pub fn global_max_forward(x: &[f32], y: &mut [f32], batch: usize, positions: usize, c: usize) {
    debug_assert_eq!(x.len(), batch * positions * c);
    debug_assert_eq!(y.len(), batch * c);
    if c == 0 || positions == 0 {
        return;
    }
    for (xs, ys) in x.chunks_exact(positions * c).zip(y.chunks_exact_mut(c)) {
        ys.fill(f32::NEG_INFINITY);
        for row in xs.chunks_exact(c) {
            ys.iter_mut().zip(row).for_each(|(v, &xv)| *v = v.max(xv));
        }
    }
}

/// dx += dy at the first position of each sample and channel where x equals the forward output y
/// (onto zeros when `write` is [`GradWrite::Set`]).
#[allow(clippy::too_many_arguments)]
pub fn global_max_backward(x: &[f32], y: &[f32], dy: &[f32], dx: &mut [f32], batch: usize, positions: usize, c: usize, write: GradWrite) {
    debug_assert_eq!(dx.len(), batch * positions * c);
    if write == GradWrite::Set {
        dx.fill(0.0);
    }
    if c == 0 || positions == 0 {
        return;
    }
    let per = positions * c;
    for (((xs, dxs), ys), dys) in
        x.chunks_exact(per).zip(dx.chunks_exact_mut(per)).zip(y.chunks_exact(c)).zip(dy.chunks_exact(c)).take(batch)
    {
        for ch in 0..c {
            if let Some(p) = (0..positions).find(|&p| xs[p * c + ch] == ys[ch]) {
                dxs[p * c + ch] += dys[ch];
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    #[test]
    fn masked_global_average_is_the_mean_of_kept_steps_with_finite_difference_gradients() {
        // One sample, three steps, two channels; step 1 masked.
        let (x, m) = ([1.0, 2.0, 100.0, 100.0, 3.0, 6.0], [1.0, 0.0, 1.0]);
        let mut y = [f32::NAN; 2];
        global_avg_masked_forward(&x, &m, &mut y, 1, 3, 2);
        assert_eq!(y, [2.0, 4.0]);
        // Every step masked: Keras' 0 / 0, and no gradient.
        global_avg_masked_forward(&x, &[0.0; 3], &mut y, 1, 3, 2);
        assert!(y.iter().all(|v| v.is_nan()), "{y:?}");
        let mut dx = [f32::NAN; 6];
        global_avg_masked_backward(&[1.0, -2.0], &[0.0; 3], &mut dx, 1, 3, 2, GradWrite::Set);
        assert_eq!(dx, [0.0; 6]);
        // All ones: the unmasked kernel.
        let mut rng = Rng::new(47);
        let (batch, steps, c) = (3, 4, 2);
        let x = random_vec(&mut rng, batch * steps * c, -1.0, 1.0);
        let (mut a, mut b) = (vec![0.0; batch * c], vec![0.0; batch * c]);
        global_avg_masked_forward(&x, &vec![1.0; batch * steps], &mut a, batch, steps, c);
        global_avg_forward(&x, &mut b, batch, steps, c);
        assert!(a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6));
        let mask = [1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0, 1.0];
        let r = random_vec(&mut rng, batch * c, -1.0, 1.0);
        let mut add = vec![0.5; x.len()];
        global_avg_masked_backward(&r, &mask, &mut add, batch, steps, c, GradWrite::Add);
        let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
        let mut set = vec![f32::NAN; x.len()];
        global_avg_masked_backward(&r, &mask, &mut set, batch, steps, c, GradWrite::Set);
        for (what, dx) in [("add", &add), ("set", &set)] {
            check_grad(&format!("masked global average {what}"), &x, dx, 1e-3, |x| {
                let mut y = vec![0.0; batch * c];
                global_avg_masked_forward(x, &mask, &mut y, batch, steps, c);
                weighted_sum(&r, &y)
            });
        }
    }

    /// Direct pooling with explicit padding offsets: (max, average over valid positions).
    fn naive(g: &Window2d, x: &[f32], batch: usize) -> (Vec<f32>, Vec<f32>) {
        let mut mx = vec![0.0f32; batch * g.positions() * g.c];
        let mut av = mx.clone();
        for n in 0..batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for ch in 0..g.c {
                        let (mut m, mut s, mut k) = (f32::NEG_INFINITY, 0.0f64, 0);
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let iy = (oy * g.sh + ki) as i64 - g.pad_top as i64;
                                let ix = (ox * g.sw + kj) as i64 - g.pad_left as i64;
                                if iy < 0 || ix < 0 || iy >= g.h as i64 || ix >= g.w as i64 {
                                    continue;
                                }
                                let v = x[((n * g.h + iy as usize) * g.w + ix as usize) * g.c + ch];
                                m = m.max(v);
                                s += v as f64;
                                k += 1;
                            }
                        }
                        let at = ((n * g.oh + oy) * g.ow + ox) * g.c + ch;
                        mx[at] = m;
                        av[at] = (s / k as f64) as f32;
                    }
                }
            }
        }
        (mx, av)
    }

    fn cases() -> Vec<Window2d> {
        vec![
            Window2d::new(4, 4, 2, [2, 2], [2, 2], [1, 1], false),
            Window2d::new(5, 5, 3, [2, 2], [2, 2], [1, 1], false),
            Window2d::new(5, 5, 3, [2, 2], [2, 2], [1, 1], true),
            Window2d::new(7, 6, 2, [3, 3], [2, 2], [1, 1], true),
            Window2d::new(5, 7, 2, [3, 2], [1, 1], [1, 1], true),
            Window2d::new(1, 9, 3, [1, 3], [1, 2], [1, 1], true),
            Window2d::new(6, 5, 1, [3, 3], [3, 2], [1, 1], false),
        ]
    }

    fn pooled(g: &Window2d, x: &[f32], batch: usize, max: bool) -> Vec<f32> {
        let mut y = vec![f32::NAN; batch * g.positions() * g.c];
        if max {
            max_forward(g, x, &mut y, batch);
        } else {
            avg_forward(g, x, &mut y, batch);
        }
        y
    }

    #[test]
    fn pooling_forward_matches_direct_loops_with_keras_same_padding() {
        let mut rng = Rng::new(11);
        for g in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let (mx, av) = naive(&g, &x, batch);
            let (m, a) = (pooled(&g, &x, batch, true), pooled(&g, &x, batch, false));
            for i in 0..mx.len() {
                assert_eq!(m[i], mx[i], "{g:?} max at {i}");
                assert!((a[i] - av[i]).abs() < 1e-6, "{g:?} avg at {i}: {} vs {}", a[i], av[i]);
            }
        }
    }

    #[test]
    fn pooling_backward_matches_finite_differences() {
        let mut rng = Rng::new(12);
        for g in cases() {
            let batch = 2;
            // Distinct values spaced well beyond the finite-difference step, so no max ties.
            let n = batch * g.in_len();
            let mut x: Vec<f32> = (0..n).map(|i| (i as f32) * 0.01).collect();
            for i in (1..n).rev() {
                let j = (rng.next_u64() % (i as u64 + 1)) as usize;
                x.swap(i, j);
            }
            let r = random_vec(&mut rng, batch * g.positions() * g.c, -1.0, 1.0);
            for max in [true, false] {
                let y = pooled(&g, &x, batch, max);
                let mut dx = vec![0.25; n];
                if max {
                    max_backward(&g, &x, &y, &r, &mut dx, batch);
                } else {
                    avg_backward(&g, &r, &mut dx, batch);
                }
                let d: Vec<f32> = dx.iter().map(|v| v - 0.25).collect();
                check_grad(&format!("pool {g:?} max={max}"), &x, &d, 1e-2, |x| weighted_sum(&r, &pooled(&g, x, batch, max)));
            }
        }
    }

    #[test]
    fn max_backward_gives_a_tie_to_one_position_only() {
        let g = Window2d::new(2, 2, 1, [2, 2], [2, 2], [1, 1], false);
        let x = [1.0, 1.0, 0.0, 1.0];
        let mut y = [0.0];
        max_forward(&g, &x, &mut y, 1);
        let mut dx = [0.0; 4];
        max_backward(&g, &x, &y, &[2.0], &mut dx, 1);
        assert_eq!(dx, [2.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn global_pooling_matches_direct_loops_and_finite_differences() {
        let mut rng = Rng::new(13);
        let (batch, positions, c) = (3, 5, 4);
        let x = random_vec(&mut rng, batch * positions * c, -1.0, 1.0);
        let r = random_vec(&mut rng, batch * c, -1.0, 1.0);
        let run = |x: &[f32], max: bool| {
            let mut y = vec![f32::NAN; batch * c];
            if max {
                global_max_forward(x, &mut y, batch, positions, c);
            } else {
                global_avg_forward(x, &mut y, batch, positions, c);
            }
            y
        };
        for n in 0..batch {
            for ch in 0..c {
                let col: Vec<f32> = (0..positions).map(|p| x[(n * positions + p) * c + ch]).collect();
                let mean = col.iter().map(|v| *v as f64).sum::<f64>() / positions as f64;
                assert!((run(&x, false)[n * c + ch] as f64 - mean).abs() < 1e-6);
                assert_eq!(run(&x, true)[n * c + ch], col.iter().copied().fold(f32::NEG_INFINITY, f32::max));
            }
        }
        for max in [true, false] {
            let y = run(&x, max);
            // Added onto zeros, and set over stale values: the same gradient.
            let (mut dx, mut set) = (vec![0.0; x.len()], vec![f32::NAN; x.len()]);
            for (g, write) in [(&mut dx, GradWrite::Add), (&mut set, GradWrite::Set)] {
                if max {
                    global_max_backward(&x, &y, &r, g, batch, positions, c, write);
                } else {
                    global_avg_backward(&r, g, batch, positions, c, write);
                }
            }
            assert_eq!(set, dx, "max={max}: set");
            check_grad(&format!("global max={max}"), &x, &dx, 1e-2, |x| weighted_sum(&r, &run(x, max)));
        }
    }
}
