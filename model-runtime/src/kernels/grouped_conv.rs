//! Keras `Conv1D` / `Conv2D` with `groups > 1`, channels-last: the input channels split into `groups`
//! equal blocks, output channel `o` (of `cout`) reading only block `o / (cout / groups)`. Kernel in Keras
//! layout `[kh, kw, cin / groups, cout]`. Direct loops over each output position's window taps (the
//! [`Window2d`] of the full input, 'same'/'valid', strides, dilation), bias and activation fused as in
//! [`super::conv`]. Forward next to backward; nothing is allocated.

use super::activation::{self, Activation};
use super::conv::Window2d;

/// Channels per group in and out: `(cin / groups, cout / groups)`.
#[inline]
fn per_group(g: &Window2d, groups: usize, cout: usize) -> (usize, usize) {
    let groups = groups.max(1);
    debug_assert_eq!(g.c % groups, 0);
    debug_assert_eq!(cout % groups, 0);
    (g.c / groups, cout / groups)
}

/// Calls `f(output position, input pixel offset, tap index)` for every window tap of sample-local output
/// `(oy, ox)` that falls inside the input (padding reads zeros, so it is skipped).
#[inline]
pub(crate) fn taps(g: &Window2d, mut f: impl FnMut(usize, usize, usize)) {
    for oy in 0..g.oh {
        for ox in 0..g.ow {
            let o = oy * g.ow + ox;
            for ki in 0..g.kh {
                let Some(iy) = g.in_row(oy, ki) else { continue };
                for kj in 0..g.kw {
                    if let Some(ix) = g.in_col(ox, kj) {
                        f(o, (iy * g.w + ix) * g.c, ki * g.kw + kj);
                    }
                }
            }
        }
    }
}

/// y = act(grouped convolution of x with w, plus b), the pre-activation stored into `pre` when given.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &Window2d,
    groups: usize,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pre: Option<&mut [f32]>,
    y: &mut [f32],
    batch: usize,
    cout: usize,
) {
    let (cig, cog) = per_group(g, groups, cout);
    let (il, ol) = (g.in_len(), g.positions() * cout);
    debug_assert_eq!(x.len(), batch * il);
    debug_assert_eq!(y.len(), batch * ol);
    debug_assert_eq!(w.len(), g.kh * g.kw * cig * cout);
    if il == 0 || ol == 0 || cig == 0 || cog == 0 {
        return;
    }
    y.fill(0.0);
    for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
        taps(g, |o, at, t| {
            let out = &mut ys[o * cout..(o + 1) * cout];
            let px = &xs[at..at + g.c];
            // Group j: its cog outputs += Σ over its cig inputs of x · kernel row.
            for ((outs, ins), j) in out.chunks_exact_mut(cog).zip(px.chunks_exact(cig)).zip(0..) {
                for (ci, &xv) in ins.iter().enumerate() {
                    let row = (t * cig + ci) * cout + j * cog;
                    outs.iter_mut().zip(&w[row..row + cog]).for_each(|(v, &wv)| *v += xv * wv);
                }
            }
        });
    }
    activation::bias_forward_inplace(act, b, pre, y, cout);
}

/// The backward of [`forward`]. `dy` is overwritten with dL/dz through the activation; then dw += and
/// db += their gradients, and dx += the input gradient when given.
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Window2d,
    groups: usize,
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
    cout: usize,
) {
    let (cig, cog) = per_group(g, groups, cout);
    let (il, ol) = (g.in_len(), g.positions() * cout);
    debug_assert_eq!(dy.len(), batch * ol);
    debug_assert_eq!(dw.len(), g.kh * g.kw * cig * cout);
    if il == 0 || ol == 0 || cig == 0 || cog == 0 {
        return;
    }
    let dz = activation::backward_with_bias(act, pre, y, dy, cout, db);
    for (n, (xs, dzs)) in x.chunks_exact(il).zip(dz.chunks_exact(ol)).enumerate() {
        let mut dxs = dx.as_deref_mut().map(|d| &mut d[n * il..(n + 1) * il]);
        taps(g, |o, at, t| {
            let d = &dzs[o * cout..(o + 1) * cout];
            let px = &xs[at..at + g.c];
            for ((ds, ins), j) in d.chunks_exact(cog).zip(px.chunks_exact(cig)).zip(0..) {
                for (ci, &xv) in ins.iter().enumerate() {
                    let row = (t * cig + ci) * cout + j * cog;
                    dw[row..row + cog].iter_mut().zip(ds).for_each(|(v, &dv)| *v += xv * dv);
                    if let Some(dxs) = dxs.as_deref_mut() {
                        let s: f32 = w[row..row + cog].iter().zip(ds).map(|(&wv, &dv)| wv * dv).sum();
                        dxs[at + j * cig + ci] += s;
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

    /// Direct grouped convolution with explicit padding offsets, in f64: y[n, oy, ox, o].
    fn naive(g: &Window2d, groups: usize, x: &[f32], w: &[f32], b: &[f32], batch: usize, cout: usize) -> Vec<f32> {
        let (cig, cog) = (g.c / groups, cout / groups);
        let mut y = vec![0.0f32; batch * g.positions() * cout];
        for n in 0..batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for o in 0..cout {
                        let j = o / cog;
                        let mut s = b[o] as f64;
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let iy = (oy * g.sh + ki * g.dh) as i64 - g.pad_top as i64;
                                let ix = (ox * g.sw + kj * g.dw) as i64 - g.pad_left as i64;
                                if iy < 0 || ix < 0 || iy >= g.h as i64 || ix >= g.w as i64 {
                                    continue;
                                }
                                for ci in 0..cig {
                                    let xv = x[((n * g.h + iy as usize) * g.w + ix as usize) * g.c + j * cig + ci] as f64;
                                    s += xv * w[((ki * g.kw + kj) * cig + ci) * cout + o] as f64;
                                }
                            }
                        }
                        y[((n * g.oh + oy) * g.ow + ox) * cout + o] = s as f32;
                    }
                }
            }
        }
        y
    }

    fn cases() -> Vec<(Window2d, usize, usize)> {
        vec![
            (Window2d::new(5, 4, 4, [3, 3], [1, 1], [1, 1], true), 2, 6),
            (Window2d::new(6, 5, 6, [2, 3], [2, 1], [1, 1], false), 3, 3),
            (Window2d::new(1, 9, 4, [1, 3], [1, 2], [1, 1], true), 4, 8),
            (Window2d::new(5, 5, 2, [3, 3], [1, 1], [2, 2], true), 2, 2),
        ]
    }

    #[test]
    fn grouped_forward_matches_direct_loops() {
        let mut rng = Rng::new(51);
        for (g, groups, cout) in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * g.c / groups * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let want = naive(&g, groups, &x, &w, &b, batch, cout);
            let mut y = vec![f32::NAN; want.len()];
            forward(&g, groups, &x, &w, Some(&b), Activation::Linear, None, &mut y, batch, cout);
            for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!((a - e).abs() < 1e-5, "{g:?} groups {groups} at {i}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn grouped_backward_matches_finite_differences() {
        let mut rng = Rng::new(52);
        for (g, groups, cout) in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * g.c / groups * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let r = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
            let act = Activation::Tanh;
            let run = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; r.len()];
                forward(&g, groups, x, w, Some(b), act, None, &mut y, batch, cout);
                weighted_sum(&r, &y)
            };
            let mut y = vec![0.0; r.len()];
            forward(&g, groups, &x, &w, Some(&b), act, None, &mut y, batch, cout);
            let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
            let mut dy = r.clone();
            backward(&g, groups, &x, &w, None, &y, &mut dy, act, Some(&mut dx), &mut dw, Some(&mut db), batch, cout);
            let what = format!("{g:?} groups {groups}");
            check_grad(&format!("{what} dx"), &x, &dx, 1e-2, |x| run(x, &w, &b));
            check_grad(&format!("{what} dw"), &w, &dw, 1e-2, |w| run(&x, w, &b));
            check_grad(&format!("{what} db"), &b, &db, 1e-2, |b| run(&x, &w, b));
        }
    }
}
