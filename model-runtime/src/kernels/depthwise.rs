//! Keras `DepthwiseConv1D` / `DepthwiseConv2D`, channels-last: input channel `c` convolved on its own by
//! `dm` (depth multiplier) filters into output channels `c · dm + m`. Kernel in Keras layout
//! `[kh, kw, c, dm]`, which is element for element the kernel of a [`super::grouped_conv`] with `c` groups
//! and `c · dm` outputs; the same window taps (the [`Window2d`] of the full input, 'same'/'valid', strides,
//! dilation), but the inner loop runs along the channels of a pixel instead of one channel at a time, so
//! it vectorizes. Bias and activation fused as in [`super::conv`]. Forward next to backward; nothing is
//! allocated.

use super::activation::{self, Activation};
use super::conv::Window2d;
use super::grouped_conv::taps;

/// y = act(depthwise convolution of x with w, plus b), the pre-activation stored into `pre` when given.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &Window2d,
    dm: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pre: Option<&mut [f32]>,
    y: &mut [f32],
    batch: usize,
) {
    let cout = g.c * dm;
    let (il, ol) = (g.in_len(), g.positions() * cout);
    debug_assert_eq!(x.len(), batch * il);
    debug_assert_eq!(y.len(), batch * ol);
    debug_assert_eq!(w.len(), g.kh * g.kw * cout);
    if il == 0 || ol == 0 {
        return;
    }
    y.fill(0.0);
    if row_path(g, dm) {
        forward_rows(g, x, w, y);
        activation::bias_forward_inplace(act, b, pre, y, cout);
        return;
    }
    for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
        taps(g, |o, at, t| {
            let out = &mut ys[o * cout..(o + 1) * cout];
            let px = &xs[at..at + g.c];
            let wt = &w[t * cout..(t + 1) * cout];
            if dm == 1 {
                out.iter_mut().zip(px).zip(wt).for_each(|((v, &xv), &wv)| *v += xv * wv);
            } else {
                for ((outs, &xv), ws) in out.chunks_exact_mut(dm).zip(px).zip(wt.chunks_exact(dm)) {
                    outs.iter_mut().zip(ws).for_each(|(v, &wv)| *v += xv * wv);
                }
            }
        });
    }
    activation::bias_forward_inplace(act, b, pre, y, cout);
}

/// Floats of a tiled tap: the tap's `c` weights repeated `TILE / c` times.
const TILE: usize = 256;
/// The most taps (kh·kw) whose tiles [`forward_rows`] keeps on the stack.
const ROW_MAX_TAPS: usize = 25;

/// Whether [`forward_rows`] and [`backward_rows`] apply: depth multiplier 1, column stride 1, and taps
/// whose tiles fit the stack arrays.
fn row_path(g: &Window2d, dm: usize) -> bool {
    dm == 1 && g.sw == 1 && g.c > 0 && g.c <= TILE && g.kh * g.kw <= ROW_MAX_TAPS
}

/// Each tap's `c` weights repeated along the first `c · (TILE / c)` floats of its tile.
fn weight_tiles(g: &Window2d, w: &[f32]) -> [[f32; TILE]; ROW_MAX_TAPS] {
    let (c, len) = (g.c, g.c * (TILE / g.c));
    let mut tiles = [[0.0f32; TILE]; ROW_MAX_TAPS];
    for (t, tile) in tiles.iter_mut().take(g.kh * g.kw).enumerate() {
        for (v, &wv) in tile[..len].iter_mut().zip(w[t * c..(t + 1) * c].iter().cycle()) {
            *v = wv;
        }
    }
    tiles
}

/// Calls `f(oy, iy, t, ox0, ox1, ix0)` for every output row `oy`, window row landing on input row `iy`
/// and window column (tap `t`): the output columns `ox0..ox1` whose tap lands inside the input read the
/// contiguous input columns from `ix0` on (column stride 1).
#[inline]
fn row_runs(g: &Window2d, mut f: impl FnMut(usize, usize, usize, usize, usize, usize)) {
    for oy in 0..g.oh {
        for ki in 0..g.kh {
            let Some(iy) = g.in_row(oy, ki) else { continue };
            for kj in 0..g.kw {
                // Output columns ox with 0 <= ox + kj·dw − pad_left < w.
                let off = kj * g.dw;
                let ox0 = g.pad_left.saturating_sub(off).min(g.ow);
                let ox1 = (g.w + g.pad_left).saturating_sub(off).min(g.ow).max(ox0);
                if ox0 < ox1 {
                    f(oy, iy, ki * g.kw + kj, ox0, ox1, ox0 + off - g.pad_left);
                }
            }
        }
    }
}

/// The backward of [`forward_rows`] from dz: dw += and dx += (when given) along the same row runs, the
/// kernel gradient of each tap accumulated over a tile and folded onto its `c` weights at the end.
fn backward_rows(g: &Window2d, x: &[f32], w: &[f32], dz: &[f32], mut dx: Option<&mut [f32]>, dw: &mut [f32]) {
    let (c, taps_n) = (g.c, g.kh * g.kw);
    let (il, ol, len) = (g.in_len(), g.positions() * c, c * (TILE / c));
    let tiles = weight_tiles(g, w);
    let mut acc = [[0.0f32; TILE]; ROW_MAX_TAPS];
    for (n, (xs, dzs)) in x.chunks_exact(il).zip(dz.chunks_exact(ol)).enumerate() {
        let mut dxs = dx.as_deref_mut().map(|d| &mut d[n * il..(n + 1) * il]);
        row_runs(g, |oy, iy, t, ox0, ox1, ix0| {
            let d = &dzs[(oy * g.ow + ox0) * c..(oy * g.ow + ox1) * c];
            let at = (iy * g.w + ix0) * c;
            for (ds, xs) in d.chunks(len).zip(xs[at..at + d.len()].chunks(len)) {
                acc[t].iter_mut().zip(ds).zip(xs).for_each(|((a, &dv), &xv)| *a += xv * dv);
            }
            if let Some(dxs) = dxs.as_deref_mut() {
                for (vs, ds) in dxs[at..at + d.len()].chunks_mut(len).zip(d.chunks(len)) {
                    vs.iter_mut().zip(ds).zip(&tiles[t]).for_each(|((v, &dv), &wv)| *v += wv * dv);
                }
            }
        });
    }
    for (t, a) in acc.iter().take(taps_n).enumerate() {
        for run in a[..len].chunks_exact(c) {
            dw[t * c..(t + 1) * c].iter_mut().zip(run).for_each(|(v, &r)| *v += r);
        }
    }
}

/// [`forward`] without bias or activation for a depth multiplier of 1 and a column stride of 1, into a
/// zeroed `y`: for each output row, window row and window column, the output pixels whose tap lands
/// inside the input read one contiguous run of input pixels, so the run is one long multiply-add with
/// the tap's weights tiled along it, instead of one `c`-long product per output pixel and tap.
fn forward_rows(g: &Window2d, x: &[f32], w: &[f32], y: &mut [f32]) {
    let c = g.c;
    let (il, ol, len) = (g.in_len(), g.positions() * c, c * (TILE / c));
    let tiles = weight_tiles(g, w);
    for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
        row_runs(g, |oy, iy, t, ox0, ox1, ix0| {
            let out = &mut ys[(oy * g.ow + ox0) * c..(oy * g.ow + ox1) * c];
            let (at, run) = ((iy * g.w + ix0) * c, out.len());
            for (os, is) in out.chunks_mut(len).zip(xs[at..at + run].chunks(len)) {
                os.iter_mut().zip(is).zip(&tiles[t]).for_each(|((v, &xv), &wv)| *v += xv * wv);
            }
        });
    }
}

/// The backward of [`forward`]. `dy` is overwritten with dL/dz through the activation; then dw += and
/// db += their gradients, and dx += the input gradient when given.
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Window2d,
    dm: usize,
    x: &[f32],
    w: &[f32],
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    act: Activation,
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    batch: usize,
) {
    let cout = g.c * dm;
    let (il, ol) = (g.in_len(), g.positions() * cout);
    debug_assert_eq!(dy.len(), batch * ol);
    debug_assert_eq!(dw.len(), g.kh * g.kw * cout);
    if il == 0 || ol == 0 {
        return;
    }
    let dz = activation::backward_with_bias(act, pre, y, dy, cout, db);
    if row_path(g, dm) {
        backward_rows(g, x, w, dz, dx, dw);
        return;
    }
    for (n, (xs, dzs)) in x.chunks_exact(il).zip(dz.chunks_exact(ol)).enumerate() {
        let mut dxs = dx.as_deref_mut().map(|d| &mut d[n * il..(n + 1) * il]);
        taps(g, |o, at, t| {
            let d = &dzs[o * cout..(o + 1) * cout];
            let px = &xs[at..at + g.c];
            let dwt = &mut dw[t * cout..(t + 1) * cout];
            let wt = &w[t * cout..(t + 1) * cout];
            if dm == 1 {
                dwt.iter_mut().zip(px).zip(d).for_each(|((v, &xv), &dv)| *v += xv * dv);
                if let Some(dxs) = dxs.as_deref_mut() {
                    dxs[at..at + g.c].iter_mut().zip(wt).zip(d).for_each(|((v, &wv), &dv)| *v += wv * dv);
                }
            } else {
                for ((dws, &xv), ds) in dwt.chunks_exact_mut(dm).zip(px).zip(d.chunks_exact(dm)) {
                    dws.iter_mut().zip(ds).for_each(|(v, &dv)| *v += xv * dv);
                }
                if let Some(dxs) = dxs.as_deref_mut() {
                    for ((v, ws), ds) in dxs[at..at + g.c].iter_mut().zip(wt.chunks_exact(dm)).zip(d.chunks_exact(dm)) {
                        *v += ws.iter().zip(ds).map(|(&wv, &dv)| wv * dv).sum::<f32>();
                    }
                }
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;
    use crate::kernels::grouped_conv;

    fn cases() -> Vec<(Window2d, usize)> {
        vec![
            (Window2d::new(5, 4, 4, [3, 3], [1, 1], [1, 1], true), 1),
            (Window2d::new(6, 5, 3, [2, 3], [2, 1], [1, 1], false), 2),
            (Window2d::new(1, 9, 4, [1, 3], [1, 2], [1, 1], true), 3),
            (Window2d::new(5, 5, 2, [3, 3], [1, 1], [2, 2], true), 2),
            // Depth multiplier 1 and column stride 1 (the row path of forward): strided rows, 'same';
            // a dilated 'valid' window; rows longer than one tile of 256 floats (60 pixels of 5).
            (Window2d::new(6, 7, 3, [3, 3], [2, 1], [1, 1], true), 1),
            (Window2d::new(5, 6, 5, [3, 2], [1, 1], [1, 2], false), 1),
            (Window2d::new(3, 60, 5, [3, 3], [1, 1], [1, 1], true), 1),
        ]
    }

    /// The depthwise convolution is the grouped convolution with one group per channel (whose own test
    /// checks it against direct loops in f64), forward and backward.
    #[test]
    fn depthwise_matches_the_grouped_convolution_with_one_group_per_channel() {
        let mut rng = Rng::new(61);
        for (g, dm) in cases() {
            let (batch, cout) = (2, g.c * dm);
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let n = batch * g.positions() * cout;
            let (mut y, mut want) = (vec![f32::NAN; n], vec![f32::NAN; n]);
            forward(&g, dm, &x, &w, Some(&b), Activation::Tanh, None, &mut y, batch);
            grouped_conv::forward(&g, g.c, &x, &w, Some(&b), Activation::Tanh, None, &mut want, batch, cout);
            for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!((a - e).abs() < 1e-5, "{g:?} dm {dm} at {i}: {a} vs {e}");
            }
            let r = random_vec(&mut rng, n, -1.0, 1.0);
            let grads = |grouped: bool| {
                let (mut dx, mut dw, mut db, mut dy) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout], r.clone());
                if grouped {
                    grouped_conv::backward(
                        &g,
                        g.c,
                        &x,
                        &w,
                        None,
                        &y,
                        &mut dy,
                        Activation::Tanh,
                        Some(&mut dx),
                        &mut dw,
                        Some(&mut db),
                        batch,
                        cout,
                    );
                } else {
                    backward(&g, dm, &x, &w, None, &y, &mut dy, Activation::Tanh, Some(&mut dx), &mut dw, Some(&mut db), batch);
                }
                [dx, dw, db]
            };
            for (a, e) in grads(false).iter().zip(&grads(true)) {
                for (i, (a, e)) in a.iter().zip(e).enumerate() {
                    assert!((a - e).abs() < 1e-5, "{g:?} dm {dm} gradient at {i}: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn depthwise_backward_matches_finite_differences() {
        let mut rng = Rng::new(62);
        for (g, dm) in cases() {
            let (batch, cout) = (2, g.c * dm);
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let r = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
            let act = Activation::Tanh;
            let run = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; r.len()];
                forward(&g, dm, x, w, Some(b), act, None, &mut y, batch);
                weighted_sum(&r, &y)
            };
            let mut y = vec![0.0; r.len()];
            forward(&g, dm, &x, &w, Some(&b), act, None, &mut y, batch);
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
            let mut dy = r.clone();
            backward(&g, dm, &x, &w, None, &y, &mut dy, act, Some(&mut dx), &mut dw, Some(&mut db), batch);
            let what = format!("{g:?} dm {dm}");
            check_grad(&format!("{what} dx"), &x, &dx, 1e-2, |x| run(x, &w, &b));
            check_grad(&format!("{what} dw"), &w, &dw, 1e-2, |w| run(&x, w, &b));
            check_grad(&format!("{what} db"), &b, &db, 1e-2, |b| run(&x, &w, b));
        }
    }
}
