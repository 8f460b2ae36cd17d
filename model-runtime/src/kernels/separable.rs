//! Keras `SeparableConv1D` / `SeparableConv2D`, channels-last: a depthwise convolution without bias or
//! activation ([`super::depthwise`], `c · dm` channels into the intermediate `mid`), then a pointwise
//! (1×1) convolution of `mid` into `cout` channels with bias and activation, which over the rows of
//! all output positions is the GEMM of [`super::dense`]. Kernels in Keras layout: `depthwise_kernel`
//! `[kh, kw, c, dm]`, `pointwise_kernel` `[1, 1, c · dm, cout]` (element for element the `[c · dm, cout]`
//! matrix of a dense layer). Both stages are the existing kernels; this file only chains them and
//! their backward. Nothing is allocated: `mid` (and `dmid` in backward) are the caller's scratch.

use super::activation::Activation;
use super::conv::Window2d;
use super::dense::{self, Writes};
use super::{depthwise, GradWrite};

/// The weights of a separable convolution: the depthwise kernel, the pointwise kernel, the bias.
#[derive(Clone, Copy, Debug)]
pub struct Weights<'a> {
    /// `[kh, kw, c, dm]`.
    pub depthwise: &'a [f32],
    /// `[c · dm, cout]`.
    pub pointwise: &'a [f32],
    /// `[cout]`, when the layer has a bias.
    pub bias: Option<&'a [f32]>,
}

/// The gradients of a separable convolution's weights, accumulated into (`+=`).
#[derive(Debug)]
pub struct Grads<'a> {
    /// dL/d depthwise kernel.
    pub depthwise: &'a mut [f32],
    /// dL/d pointwise kernel.
    pub pointwise: &'a mut [f32],
    /// dL/d bias, when the layer has one.
    pub bias: Option<&'a mut [f32]>,
}

/// y = act(pointwise(depthwise(x)) + b) for `batch` samples: `x` is `batch × [h, w, c]`, `y` is
/// `batch × [oh, ow, cout]`; `mid` (`batch × [oh, ow, c · dm]`) receives the depthwise output, which
/// backward reads; the pre-activation goes into `pre` when given.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &Window2d,
    dm: usize,
    x: &[f32],
    w: Weights<'_>,
    act: Activation,
    mid: &mut [f32],
    pre: Option<&mut [f32]>,
    y: &mut [f32],
    batch: usize,
    cout: usize,
) {
    let (inner, rows) = (g.c * dm, batch * g.positions());
    debug_assert_eq!(mid.len(), rows * inner);
    debug_assert_eq!(w.pointwise.len(), inner * cout);
    depthwise::forward(g, dm, x, w.depthwise, None, Activation::Linear, None, mid, batch);
    dense::forward(mid, w.pointwise, w.bias, act, pre, y, rows, inner, cout);
}

/// The backward of [`forward`], given the `mid` it stored. `dy` is overwritten with dL/dz through the
/// activation and `dmid` (as long as `mid`) with dL/d mid; the weight gradients are added to `grads`,
/// and dx += the input gradient when given.
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Window2d,
    dm: usize,
    x: &[f32],
    w: Weights<'_>,
    (mid, dmid): (&[f32], &mut [f32]),
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    act: Activation,
    dx: Option<&mut [f32]>,
    grads: Grads<'_>,
    batch: usize,
    cout: usize,
) {
    let (inner, rows) = (g.c * dm, batch * g.positions());
    debug_assert_eq!(dmid.len(), rows * inner);
    let writes = Writes { dx: GradWrite::Set, params: GradWrite::Add };
    dense::backward(mid, w.pointwise, pre, y, dy, act, Some(&mut *dmid), grads.pointwise, grads.bias, rows, inner, cout, writes);
    depthwise::backward(g, dm, x, w.depthwise, None, mid, dmid, Activation::Linear, dx, grads.depthwise, None, batch);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;
    use crate::kernels::activation;

    fn cases() -> Vec<(Window2d, usize, usize)> {
        vec![
            (Window2d::new(5, 4, 3, [3, 3], [1, 1], [1, 1], true), 1, 4),
            (Window2d::new(6, 5, 2, [2, 3], [2, 1], [1, 1], false), 2, 3),
            (Window2d::new(1, 9, 3, [1, 3], [1, 2], [1, 1], true), 3, 2),
            (Window2d::new(6, 6, 2, [3, 3], [1, 1], [2, 2], true), 2, 5),
        ]
    }

    /// The separable convolution in f64 with explicit loops over Keras' definition:
    /// z[n, o, f] = b[f] + Σ_{c, m} pw[c·dm + m, f] · Σ_{taps} x[n, at(o, t), c] · dw[t, c, m].
    fn naive(g: &Window2d, dm: usize, x: &[f32], (wd, wp, b): (&[f32], &[f32], &[f32]), batch: usize, cout: usize) -> Vec<f32> {
        let inner = g.c * dm;
        let mut z = Vec::new();
        for n in 0..batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    let mut mid = vec![0.0f64; inner];
                    for ki in 0..g.kh {
                        for kj in 0..g.kw {
                            let iy = (oy * g.sh + ki * g.dh) as isize - g.pad_top as isize;
                            let ix = (ox * g.sw + kj * g.dw) as isize - g.pad_left as isize;
                            if iy < 0 || ix < 0 || iy >= g.h as isize || ix >= g.w as isize {
                                continue;
                            }
                            let at = ((n * g.h + iy as usize) * g.w + ix as usize) * g.c;
                            for (k, m) in mid.iter_mut().enumerate() {
                                *m += x[at + k / dm] as f64 * wd[(ki * g.kw + kj) * inner + k] as f64;
                            }
                        }
                    }
                    for f in 0..cout {
                        z.push((b[f] as f64 + mid.iter().enumerate().map(|(k, m)| m * wp[k * cout + f] as f64).sum::<f64>()) as f32);
                    }
                }
            }
        }
        z
    }

    #[test]
    fn separable_forward_matches_the_definition() {
        let mut rng = Rng::new(71);
        for (g, dm, cout) in cases() {
            let (batch, inner) = (2, g.c * dm);
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let wd = random_vec(&mut rng, g.kh * g.kw * inner, -1.0, 1.0);
            let wp = random_vec(&mut rng, inner * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let rows = batch * g.positions();
            let (mut mid, mut pre, mut y) = (vec![f32::NAN; rows * inner], vec![f32::NAN; rows * cout], vec![f32::NAN; rows * cout]);
            let w = Weights { depthwise: &wd, pointwise: &wp, bias: Some(&b) };
            let act = Activation::Gelu { approximate: false };
            forward(&g, dm, &x, w, act, &mut mid, Some(&mut pre), &mut y, batch, cout);
            let z = naive(&g, dm, &x, (&wd, &wp, &b), batch, cout);
            let mut want = vec![0.0; z.len()];
            activation::forward(act, &z, &mut want, cout);
            for (i, ((a, e), (p, ez))) in y.iter().zip(&want).zip(pre.iter().zip(&z)).enumerate() {
                assert!((a - e).abs() < 1e-4 && (p - ez).abs() < 1e-4, "{g:?} dm {dm} at {i}: {a} vs {e}, pre {p} vs {ez}");
            }
        }
    }

    #[test]
    fn separable_backward_matches_finite_differences() {
        let mut rng = Rng::new(72);
        for (g, dm, cout) in cases() {
            let (batch, inner) = (2, g.c * dm);
            let rows = batch * g.positions();
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let wd = random_vec(&mut rng, g.kh * g.kw * inner, -1.0, 1.0);
            let wp = random_vec(&mut rng, inner * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let r = random_vec(&mut rng, rows * cout, -1.0, 1.0);
            let act = Activation::Tanh;
            let run = |x: &[f32], wd: &[f32], wp: &[f32], b: &[f32]| {
                let (mut mid, mut y) = (vec![0.0; rows * inner], vec![0.0; r.len()]);
                let w = Weights { depthwise: wd, pointwise: wp, bias: Some(b) };
                forward(&g, dm, x, w, act, &mut mid, None, &mut y, batch, cout);
                weighted_sum(&r, &y)
            };
            let (mut mid, mut y) = (vec![0.0; rows * inner], vec![0.0; r.len()]);
            let w = Weights { depthwise: &wd, pointwise: &wp, bias: Some(&b) };
            forward(&g, dm, &x, w, act, &mut mid, None, &mut y, batch, cout);
            // dmid starts as garbage: backward must overwrite it, not add to it.
            let (mut dmid, mut dy) = (vec![f32::NAN; mid.len()], r.clone());
            let (mut dx, mut dwd, mut dwp, mut db) = (vec![0.0; x.len()], vec![0.0; wd.len()], vec![0.0; wp.len()], vec![0.0; cout]);
            let grads = Grads { depthwise: &mut dwd, pointwise: &mut dwp, bias: Some(&mut db) };
            backward(&g, dm, &x, w, (&mid, &mut dmid), None, &y, &mut dy, act, Some(&mut dx), grads, batch, cout);
            let what = format!("{g:?} dm {dm} cout {cout}");
            check_grad(&format!("{what} dx"), &x, &dx, 1e-2, |x| run(x, &wd, &wp, &b));
            check_grad(&format!("{what} d depthwise"), &wd, &dwd, 1e-2, |wd| run(&x, wd, &wp, &b));
            check_grad(&format!("{what} d pointwise"), &wp, &dwp, 1e-2, |wp| run(&x, &wd, wp, &b));
            check_grad(&format!("{what} db"), &b, &db, 1e-2, |b| run(&x, &wd, &wp, b));
        }
    }
}
