//! Keras `Conv1DTranspose` / `Conv2DTranspose`, channels-last, kernel in Keras layout
//! `[kh, kw, filters, cin]` (output filters before input channels). A transposed convolution is the
//! adjoint of a convolution: forward scatters every input pixel through the kernel taps onto the output
//! (`y[iy·sh + ky·dh − crop_top, ix·sw + kx·dw − crop_left] += W[ky, kx] · x[iy, ix]`, taps landing
//! outside the output dropped), and the input gradient gathers the same taps back. Bias and activation
//! fused as in [`super::conv`]. A 1D op is the 2D op with height 1. Forward next to backward; nothing is
//! allocated.
//!
//! Given scratch `col` for at least one sample's [`ConvT2d::col_len`] values, the products run as GEMMs
//! over chunks of samples: forward computes every input pixel times every tap's `[cout, c]` block at once
//! (`col = X · Wᵀ`, rows × (taps · cout)) and scatters the rows of `col` onto the output (col2im);
//! backward gathers dz into `col` (im2col of the output gradient) and takes dW += colᵀ · X and
//! dX += col · W. With an empty `col` it runs direct loops over the taps, one small product per tap.

use super::activation::{self, Activation};
use super::gemm::sgemm;

/// Samples per GEMM chunk: as many as `col_len` scratch values hold, and no more than keep a chunk's
/// `col` in the L2 caches of the GEMM's threads (as the convolutions' im2col chunks), at least one;
/// 0 (direct loops) when the scratch does not hold one sample.
fn gemm_samples(g: &ConvT2d, cout: usize, col_len: usize) -> usize {
    match g.col_len(cout) {
        0 => 0,
        per => (col_len / per).min((super::conv::CHUNK_FLOATS * super::gemm::num_threads() / per).max(1)),
    }
}

/// The geometry of a transposed convolution over a channels-last `[h, w, c]` sample, fixed by the
/// compiler from static shapes: window, strides, dilation, the rows and columns cropped before the
/// output (Keras' padding rules, `output_padding` included) and the output size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvT2d {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Input channels.
    pub c: usize,
    /// Window height.
    pub kh: usize,
    /// Window width.
    pub kw: usize,
    /// Stride along the height.
    pub sh: usize,
    /// Stride along the width.
    pub sw: usize,
    /// Dilation along the height.
    pub dh: usize,
    /// Dilation along the width.
    pub dw: usize,
    /// Rows of the full scatter cropped above the output.
    pub crop_top: usize,
    /// Columns of the full scatter cropped left of the output.
    pub crop_left: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

impl ConvT2d {
    /// Elements of one input sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Output positions per sample.
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Scratch values per sample of the GEMM path with `cout` filters: every input pixel times every tap.
    pub fn col_len(&self, cout: usize) -> usize {
        self.h * self.w * self.kh * self.kw * cout
    }

    /// The output row input row `iy` reaches through tap row `ky`, if inside the output.
    #[inline]
    fn out_row(&self, iy: usize, ky: usize) -> Option<usize> {
        (iy * self.sh + ky * self.dh).checked_sub(self.crop_top).filter(|o| *o < self.oh)
    }

    /// The output column input column `ix` reaches through tap column `kx`, if inside the output.
    #[inline]
    fn out_col(&self, ix: usize, kx: usize) -> Option<usize> {
        (ix * self.sw + kx * self.dw).checked_sub(self.crop_left).filter(|o| *o < self.ow)
    }

    /// Calls `f(input pixel, output position, tap index)` for every tap that lands inside the output.
    #[inline]
    fn taps(&self, mut f: impl FnMut(usize, usize, usize)) {
        for iy in 0..self.h {
            for ix in 0..self.w {
                let i = iy * self.w + ix;
                for ky in 0..self.kh {
                    let Some(oy) = self.out_row(iy, ky) else { continue };
                    for kx in 0..self.kw {
                        if let Some(ox) = self.out_col(ix, kx) {
                            f(i, oy * self.ow + ox, ky * self.kw + kx);
                        }
                    }
                }
            }
        }
    }
}

/// y = act(transposed convolution of x with w, plus b), the pre-activation stored into `pre` when given.
/// `w` is `[kh, kw, cout, c]`; `col` is scratch for the GEMM path (see the module's documentation), or
/// empty for direct loops.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &ConvT2d,
    x: &[f32],
    w: &[f32],
    b: Option<&[f32]>,
    act: Activation,
    pre: Option<&mut [f32]>,
    col: &mut [f32],
    y: &mut [f32],
    batch: usize,
    cout: usize,
) {
    let (il, ol, c) = (g.in_len(), g.positions() * cout, g.c);
    debug_assert_eq!(x.len(), batch * il);
    debug_assert_eq!(y.len(), batch * ol);
    debug_assert_eq!(w.len(), g.kh * g.kw * cout * c);
    y.fill(0.0);
    if ol == 0 {
        return;
    }
    let step = gemm_samples(g, cout, col.len());
    if il > 0 && step > 0 {
        let (cl, taps_out) = (g.col_len(cout), g.kh * g.kw * cout);
        for (xs, ys) in x.chunks(step * il).zip(y.chunks_mut(step * ol)) {
            let n = xs.len() / il;
            let col = &mut col[..n * cl];
            // col (n·h·w × taps·cout) = X (n·h·w × c) · Wᵀ, W stored (taps·cout) × c.
            sgemm(n * g.h * g.w, c, taps_out, 1.0, xs, false, w, true, 0.0, col);
            for (cs, ys) in col.chunks_exact(cl).zip(ys.chunks_exact_mut(ol)) {
                g.taps(|i, o, t| {
                    let src = &cs[(i * g.kh * g.kw + t) * cout..][..cout];
                    ys[o * cout..(o + 1) * cout].iter_mut().zip(src).for_each(|(v, &s)| *v += s);
                });
            }
        }
    } else if il > 0 {
        for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
            g.taps(|i, o, t| {
                let px = &xs[i * c..(i + 1) * c];
                let out = &mut ys[o * cout..(o + 1) * cout];
                let taps = &w[t * cout * c..(t + 1) * cout * c];
                for (v, row) in out.iter_mut().zip(taps.chunks_exact(c)) {
                    *v += row.iter().zip(px).map(|(&wv, &xv)| wv * xv).sum::<f32>();
                }
            });
        }
    }
    activation::bias_forward_inplace(act, b, pre, y, cout);
}

/// The backward of [`forward`]. `dy` is overwritten with dL/dz through the activation; then dw += and
/// db += their gradients, and dx += the input gradient when given. `col` as in [`forward`].
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &ConvT2d,
    x: &[f32],
    w: &[f32],
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    act: Activation,
    col: &mut [f32],
    mut dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    batch: usize,
    cout: usize,
) {
    let (il, ol, c) = (g.in_len(), g.positions() * cout, g.c);
    debug_assert_eq!(dy.len(), batch * ol);
    debug_assert_eq!(dw.len(), g.kh * g.kw * cout * c);
    if ol == 0 {
        return;
    }
    let dz = activation::backward_with_bias(act, pre, y, dy, cout, db);
    if il == 0 {
        return;
    }
    let step = gemm_samples(g, cout, col.len());
    if step > 0 {
        backward_gemm(g, (x, w, dz), col, (dx, dw), step, cout);
        return;
    }
    for (n, (xs, dzs)) in x.chunks_exact(il).zip(dz.chunks_exact(ol)).enumerate() {
        let mut dxs = dx.as_deref_mut().map(|d| &mut d[n * il..(n + 1) * il]);
        g.taps(|i, o, t| {
            let px = &xs[i * c..(i + 1) * c];
            let d = &dzs[o * cout..(o + 1) * cout];
            let base = t * cout * c;
            for (f, &dv) in d.iter().enumerate() {
                let row = base + f * c;
                dw[row..row + c].iter_mut().zip(px).for_each(|(v, &xv)| *v += dv * xv);
            }
            if let Some(dxs) = dxs.as_deref_mut() {
                let dpx = &mut dxs[i * c..(i + 1) * c];
                for (f, &dv) in d.iter().enumerate() {
                    let row = base + f * c;
                    dpx.iter_mut().zip(&w[row..row + c]).for_each(|(v, &wv)| *v += dv * wv);
                }
            }
        });
    }
}

/// The GEMM path of [`backward`] from dz, `step` samples per chunk: col = the gathered dz (each input
/// pixel's taps, zero where a tap falls outside the output), dW += colᵀ · X and dX += col · W.
fn backward_gemm(
    g: &ConvT2d,
    (x, w, dz): (&[f32], &[f32], &[f32]),
    col: &mut [f32],
    (mut dx, dw): (Option<&mut [f32]>, &mut [f32]),
    step: usize,
    cout: usize,
) {
    let (il, ol, c) = (g.in_len(), g.positions() * cout, g.c);
    let (cl, taps_out) = (g.col_len(cout), g.kh * g.kw * cout);
    for (k, (xs, dzs)) in x.chunks(step * il).zip(dz.chunks(step * ol)).enumerate() {
        let n = xs.len() / il;
        let col = &mut col[..n * cl];
        col.fill(0.0);
        for (cs, ds) in col.chunks_exact_mut(cl).zip(dzs.chunks_exact(ol)) {
            g.taps(|i, o, t| cs[(i * g.kh * g.kw + t) * cout..][..cout].copy_from_slice(&ds[o * cout..(o + 1) * cout]));
        }
        let rows = n * g.h * g.w;
        // dW ((taps·cout) × c) += colᵀ · X (rows × c).
        sgemm(taps_out, rows, c, 1.0, col, true, xs, false, 1.0, dw);
        if let Some(dx) = dx.as_deref_mut() {
            // dX (rows × c) += col (rows × taps·cout) · W ((taps·cout) × c).
            sgemm(rows, taps_out, c, 1.0, col, false, w, false, 1.0, &mut dx[k * step * il..(k * step + n) * il]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// The transposed convolution as the adjoint of a direct convolution, in f64: for every output
    /// position and tap, the input pixel that reaches it (if any) times the kernel.
    fn naive(g: &ConvT2d, x: &[f32], w: &[f32], b: &[f32], batch: usize, cout: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; batch * g.positions() * cout];
        for n in 0..batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for f in 0..cout {
                        let mut s = b[f] as f64;
                        for ky in 0..g.kh {
                            for kx in 0..g.kw {
                                let ry = (oy + g.crop_top) as i64 - (ky * g.dh) as i64;
                                let rx = (ox + g.crop_left) as i64 - (kx * g.dw) as i64;
                                if ry < 0 || rx < 0 || ry % g.sh as i64 != 0 || rx % g.sw as i64 != 0 {
                                    continue;
                                }
                                let (iy, ix) = ((ry / g.sh as i64) as usize, (rx / g.sw as i64) as usize);
                                if iy >= g.h || ix >= g.w {
                                    continue;
                                }
                                for ci in 0..g.c {
                                    let xv = x[((n * g.h + iy) * g.w + ix) * g.c + ci] as f64;
                                    s += xv * w[((ky * g.kw + kx) * cout + f) * g.c + ci] as f64;
                                }
                            }
                        }
                        y[((n * g.oh + oy) * g.ow + ox) * cout + f] = s as f32;
                    }
                }
            }
        }
        y
    }

    fn geom([h, w, c]: [usize; 3], k: [usize; 2], s: [usize; 2], d: [usize; 2], crop: [usize; 2], out: [usize; 2]) -> ConvT2d {
        ConvT2d {
            h,
            w,
            c,
            kh: k[0],
            kw: k[1],
            sh: s[0],
            sw: s[1],
            dh: d[0],
            dw: d[1],
            crop_top: crop[0],
            crop_left: crop[1],
            oh: out[0],
            ow: out[1],
        }
    }

    fn cases() -> Vec<(ConvT2d, usize)> {
        vec![
            // 3×3 stride 2: 4×3 -> 8×6, one row and column cropped before.
            (geom([4, 3, 2], [3, 3], [2, 2], [1, 1], [1, 1], [8, 6]), 3),
            // 2×3 'valid' stride (1, 2): (3 - 1)·1 + 2 = 4, (3 - 1)·2 + 3 = 7.
            (geom([3, 3, 3], [2, 3], [1, 2], [1, 1], [0, 0], [4, 7]), 2),
            // Stride larger than the window: gaps that only the bias fills.
            (geom([2, 2, 1], [2, 2], [3, 3], [1, 1], [0, 0], [6, 6]), 2),
            // Dilated, 'same'.
            (geom([4, 4, 2], [3, 3], [1, 1], [2, 2], [2, 2], [4, 4]), 2),
            // 1D as height 1, output_padding: (5 - 1)·2 + 3 + 1 = 12.
            (geom([1, 5, 2], [1, 3], [1, 2], [1, 1], [0, 0], [1, 12]), 4),
            // A crop that drops taps at both ends.
            (geom([3, 3, 2], [4, 4], [2, 2], [1, 1], [2, 1], [5, 6]), 2),
        ]
    }

    #[test]
    fn transposed_forward_matches_the_adjoint_of_a_convolution() {
        let mut rng = Rng::new(61);
        for (g, cout) in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * cout * g.c, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let want = naive(&g, &x, &w, &b, batch, cout);
            // Direct loops, GEMM chunks of one sample, one chunk of the batch; stale scratch.
            for per in [0, 1, batch] {
                let mut col = vec![f32::NAN; per * g.col_len(cout)];
                let mut y = vec![f32::NAN; want.len()];
                forward(&g, &x, &w, Some(&b), Activation::Linear, None, &mut col, &mut y, batch, cout);
                for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                    assert!((a - e).abs() < 1e-5, "{g:?} with scratch for {per} samples, at {i}: {a} vs {e}");
                }
            }
        }
    }

    #[test]
    fn transposed_backward_matches_finite_differences() {
        let mut rng = Rng::new(62);
        for (g, cout) in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * cout * g.c, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let r = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
            let act = Activation::Tanh;
            let run = |x: &[f32], w: &[f32], b: &[f32]| {
                let mut y = vec![0.0; r.len()];
                forward(&g, x, w, Some(b), act, None, &mut [], &mut y, batch, cout);
                weighted_sum(&r, &y)
            };
            let mut y = vec![0.0; r.len()];
            forward(&g, &x, &w, Some(&b), act, None, &mut [], &mut y, batch, cout);
            // Direct loops, GEMM chunks of one sample, one chunk of the batch; stale scratch.
            for per in [0, 1, batch] {
                let mut col = vec![f32::NAN; per * g.col_len(cout)];
                let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
                let mut dy = r.clone();
                backward(&g, &x, &w, None, &y, &mut dy, act, &mut col, Some(&mut dx), &mut dw, Some(&mut db), batch, cout);
                let what = format!("{g:?} with scratch for {per} samples");
                check_grad(&format!("{what} dx"), &x, &dx, 1e-2, |x| run(x, &w, &b));
                check_grad(&format!("{what} dw"), &w, &dw, 1e-2, |w| run(&x, w, &b));
                check_grad(&format!("{what} db"), &b, &db, 1e-2, |b| run(&x, &w, b));
            }
        }
    }

    #[test]
    fn transposed_backward_accumulates_and_skips_dx_when_not_needed() {
        let g = geom([3, 3, 2], [3, 3], [2, 2], [1, 1], [1, 1], [6, 6]);
        let cout = 2;
        let mut rng = Rng::new(63);
        let x = random_vec(&mut rng, g.in_len(), -1.0, 1.0);
        let w = random_vec(&mut rng, 9 * cout * g.c, -1.0, 1.0);
        let mut y = vec![0.0; g.positions() * cout];
        forward(&g, &x, &w, None, Activation::Linear, None, &mut [], &mut y, 1, cout);
        let r = random_vec(&mut rng, y.len(), -1.0, 1.0);
        for per in [0, 1] {
            let mut col = vec![f32::NAN; per * g.col_len(cout)];
            let (mut dw1, mut dw2) = (vec![0.0; w.len()], vec![0.5; w.len()]);
            let mut dy = r.clone();
            backward(&g, &x, &w, None, &y, &mut dy, Activation::Linear, &mut col, None, &mut dw1, None, 1, cout);
            let mut dy = r.clone();
            backward(&g, &x, &w, None, &y, &mut dy, Activation::Linear, &mut col, None, &mut dw2, None, 1, cout);
            for (a, b) in dw1.iter().zip(&dw2) {
                assert!((a + 0.5 - b).abs() < 1e-6, "scratch for {per}: {a} + 0.5 vs {b}");
            }
        }
    }
}
