//! Keras `Conv1DTranspose` / `Conv2DTranspose`, channels-last, kernel in Keras layout
//! `[kh, kw, filters, cin]` (output filters before input channels). A transposed convolution is the
//! adjoint of a convolution: forward scatters every input pixel through the kernel taps onto the output
//! (`y[iy·sh + ky·dh − crop_top, ix·sw + kx·dw − crop_left] += W[ky, kx] · x[iy, ix]`, taps landing
//! outside the output dropped), and the input gradient gathers the same taps back. Bias and activation
//! fused as in [`super::conv`]. A 1D op is the 2D op with height 1. Forward next to backward; nothing is
//! allocated.
//!
//! Forward, when the scratch holds a sample's zero-padded input and the outputs of its largest phase:
//! by output phases. The output pixels `(py + sh·qy, px + sw·qx)` of phase `(py, px)` are each reached
//! by the same few taps (for 3×3 at stride 2: 4, 2, 2 and 1), from input pixels `(qy + ry, qx + rx)`, so
//! a phase is a stride-1 convolution of the padded input, one implicit GEMM (`gather_gemm`), whose
//! results are interleaved into the output; no matrix of every input pixel times every tap is built.
//!
//! Otherwise, given scratch `col` for at least one sample's [`ConvT2d::col_len`] values, the products run as GEMMs
//! over chunks of samples: forward computes every input pixel times every tap's `[cout, c]` block at once
//! (`col = X · Wᵀ`, rows × (taps · cout)), then builds the output one row at a time from the taps of
//! `col` that land on it (col2im), adding the bias and activation while the row is in cache;
//! backward gathers dz into `col` (im2col of the output gradient) and takes dW += colᵀ · X and
//! dX += col · W. With an empty `col` it runs direct loops over the taps, one small product per tap.

use super::activation::{self, Activation};
use super::gemm::{gather_gemm, sgemm, Gather};

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

    /// col2im one output row at a time: for each output row `oy`, zeroes it in `y` (one sample, `oh`
    /// rows of `ow · cout`), adds every tap of `col` (one sample's `h·w × taps·cout` products) that
    /// lands on it, then calls `done(oy, row)` while the row is in cache (the bias and activation).
    /// The taps of an output value are added in the order of [`ConvT2d::taps`] (input rows
    /// ascending, so tap rows descending), so the sums are those of a scatter over `taps`.
    fn gather_rows(&self, col: &[f32], y: &mut [f32], cout: usize, mut done: impl FnMut(usize, &mut [f32])) {
        let (row_len, taps) = (self.ow * cout, self.kh * self.kw);
        debug_assert_eq!(col.len(), self.col_len(cout));
        debug_assert_eq!(y.len(), self.oh * row_len);
        for (oy, row) in y.chunks_exact_mut(row_len).enumerate() {
            row.fill(0.0);
            for ky in (0..self.kh).rev() {
                // Input row iy reaches oy through tap row ky when iy·sh + ky·dh = oy + crop_top.
                let Some(t) = (oy + self.crop_top).checked_sub(ky * self.dh) else { continue };
                let iy = t / self.sh;
                if t % self.sh != 0 || iy >= self.h {
                    continue;
                }
                for ix in 0..self.w {
                    let base = ((iy * self.w + ix) * taps + ky * self.kw) * cout;
                    for kx in 0..self.kw {
                        if let Some(ox) = self.out_col(ix, kx) {
                            let src = &col[base + kx * cout..base + (kx + 1) * cout];
                            row[ox * cout..(ox + 1) * cout].iter_mut().zip(src).for_each(|(v, &s)| *v += s);
                        }
                    }
                }
            }
            done(oy, row);
        }
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

/// The most taps of one output phase (see [`Phases`]) kept on the stack.
const PHASE_MAX_TAPS: usize = 64;
/// The longest window along one axis, and the largest stride, of the phase path (its tables are
/// fixed-size arrays on the stack: the forward allocates nothing).
const PHASE_MAX_AXIS: usize = 16;

/// The taps of one axis and output phase: the output positions `first + s·q` for q < `count`, each reached from input position `q + r` through tap `k` for each `(k, r)` in `taps[..n]`
/// (`r` may be negative: the input is padded).
#[derive(Clone, Copy, Debug)]
struct AxisPhase {
    first: usize,
    count: usize,
    taps: [(usize, isize); PHASE_MAX_AXIS],
    n: usize,
}

impl AxisPhase {
    /// Phase `p` of an axis: window `k`, stride `s`, dilation `d`, `crop` positions cropped before
    /// the `out` output positions.
    fn new(p: usize, (k, s, d, crop, out): (usize, usize, usize, usize, usize)) -> AxisPhase {
        let mut phase =
            AxisPhase { first: p, count: if out > p { (out - p).div_ceil(s) } else { 0 }, taps: [(0, 0); PHASE_MAX_AXIS], n: 0 };
        // Output o = q·s + p is reached from input i through tap k when i·s + k·d = o + crop.
        for tap in 0..k.min(PHASE_MAX_AXIS) {
            let num = (p + crop) as isize - (tap * d) as isize;
            if num.rem_euclid(s as isize) == 0 {
                phase.taps[phase.n] = (tap, num.div_euclid(s as isize));
                phase.n += 1;
            }
        }
        phase
    }

    /// Zero positions the input needs before and after its data for every window of this phase.
    fn padding(&self, len: usize) -> (usize, usize) {
        if self.count == 0 {
            return (0, 0);
        }
        self.taps[..self.n].iter().fold((0, 0), |(before, after), &(_, r)| {
            let last = self.count as isize - 1 + r - (len as isize - 1);
            (before.max((-r).max(0) as usize), after.max(last.max(0) as usize))
        })
    }
}

/// The forward of a transposed convolution as one implicit GEMM per output phase (sub-pixel
/// convolution): output pixels `(py + sh·qy, px + sw·qx)` of one phase `(py, px)` are each a sum over
/// the same few taps of input pixels `(qy + ry, qx + rx)`, so a phase is a small stride-1 convolution
/// of the zero-padded input ([`gather_gemm`]) with the taps' kernel blocks, transposed. No `col`
/// matrix of every input pixel times every tap is written, nor scattered.
#[derive(Clone, Copy, Debug)]
struct Phases {
    /// The row phases (`sh` of them) and the column phases (`sw`).
    rows: [AxisPhase; PHASE_MAX_AXIS],
    cols: [AxisPhase; PHASE_MAX_AXIS],
    sh: usize,
    sw: usize,
    /// Padded input rows and columns, and the data's offset in them.
    hp: usize,
    wp: usize,
    top: usize,
    left: usize,
}

impl Phases {
    /// The phases of `g`, or `None` for a window or stride longer than [`PHASE_MAX_AXIS`] along an
    /// axis, or more taps than [`PHASE_MAX_TAPS`].
    fn new(g: &ConvT2d) -> Option<Phases> {
        if g.kh.max(g.kw).max(g.sh).max(g.sw) > PHASE_MAX_AXIS || g.kh * g.kw > PHASE_MAX_TAPS || g.sh == 0 || g.sw == 0 {
            return None;
        }
        let empty = AxisPhase { first: 0, count: 0, taps: [(0, 0); PHASE_MAX_AXIS], n: 0 };
        let (mut rows, mut cols) = ([empty; PHASE_MAX_AXIS], [empty; PHASE_MAX_AXIS]);
        for (p, slot) in rows.iter_mut().enumerate().take(g.sh) {
            *slot = AxisPhase::new(p, (g.kh, g.sh, g.dh, g.crop_top, g.oh));
        }
        for (p, slot) in cols.iter_mut().enumerate().take(g.sw) {
            *slot = AxisPhase::new(p, (g.kw, g.sw, g.dw, g.crop_left, g.ow));
        }
        let pad = |phases: &[AxisPhase], len: usize| {
            phases.iter().fold((0, 0), |(b, a), ph| (b.max(ph.padding(len).0), a.max(ph.padding(len).1)))
        };
        let ((top, bottom), (left, right)) = (pad(&rows[..g.sh], g.h), pad(&cols[..g.sw], g.w));
        Some(Phases { rows, cols, sh: g.sh, sw: g.sw, hp: top + g.h + bottom, wp: left + g.w + right, top, left })
    }

    /// Floats of one padded sample of `c` channels.
    fn padded_len(&self, c: usize) -> usize {
        self.hp * self.wp * c
    }

    /// Output pixels of the largest phase.
    fn max_phase(&self) -> usize {
        let most = |phases: &[AxisPhase]| phases.iter().map(|p| p.count).max().unwrap_or(0);
        most(&self.rows[..self.sh]) * most(&self.cols[..self.sw])
    }
}

/// Samples per chunk of the phase path for scratch of `col_len` values, or 0 when it does not apply
/// (see [`Phases::new`]) or one sample's padded input and largest phase do not fit beside the kernel
/// blocks. At most as many as keep a chunk in the GEMM threads' L2, as the other paths.
fn phase_samples(g: &ConvT2d, ph: &Phases, cout: usize, col_len: usize) -> usize {
    let wlen = g.kh * g.kw * g.c * cout;
    let per = ph.padded_len(g.c) + ph.max_phase() * cout;
    if per == 0 || col_len < wlen + per {
        return 0;
    }
    ((col_len - wlen) / per).min((super::conv::CHUNK_FLOATS * super::gemm::num_threads() / per).max(1))
}

/// [`forward`] by phases (see [`Phases`]), `step` samples per chunk; `col` holds the chunk's padded
/// input, one phase's kernel blocks and its outputs. Bias and activation in one pass per chunk.
#[allow(clippy::too_many_arguments)]
fn forward_phases(
    g: &ConvT2d,
    ph: &Phases,
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    act: Activation,
    mut pre: Option<&mut [f32]>,
    col: &mut [f32],
    y: &mut [f32],
    cout: usize,
    step: usize,
) {
    let (il, ol, c) = (g.in_len(), g.positions() * cout, g.c);
    let plen = ph.padded_len(c);
    for (chunk, (xs, ys)) in x.chunks(step * il).zip(y.chunks_mut(step * ol)).enumerate() {
        let n = xs.len() / il;
        let (src, rest) = col.split_at_mut(n * plen);
        let (wbuf, out) = rest.split_at_mut(g.kh * g.kw * c * cout);
        pad_input(g, ph, xs, src, n);
        for rp in &ph.rows[..ph.sh] {
            for cp in &ph.cols[..ph.sw] {
                let m = rp.count * cp.count;
                if m == 0 {
                    continue;
                }
                let out = &mut out[..n * m * cout];
                let ntaps = rp.n * cp.n;
                if ntaps == 0 {
                    out.fill(0.0);
                } else {
                    let mut taps = [0usize; PHASE_MAX_TAPS];
                    for (t, (&(ky, ry), &(kx, rx))) in
                        rp.taps[..rp.n].iter().flat_map(|r| cp.taps[..cp.n].iter().map(move |q| (r, q))).enumerate()
                    {
                        // Offsets from the window corner of output (0, 0) of the phase, padding included.
                        let (iy, ix) = ((ry + ph.top as isize) as usize, (rx + ph.left as isize) as usize);
                        taps[t] = (iy * ph.wp + ix) * c;
                        // Kernel block of tap (ky, kx), transposed: rows t·c + ci, columns co.
                        let block = &w[(ky * g.kw + kx) * cout * c..][..cout * c];
                        let dst = &mut wbuf[t * c * cout..(t + 1) * c * cout];
                        for co in 0..cout {
                            for ci in 0..c {
                                dst[ci * cout + co] = block[co * c + ci];
                            }
                        }
                    }
                    let gather = Gather { cols: cp.count, rows: rp.count, img: plen, row: ph.wp * c, col: c };
                    gather_gemm(src, &gather, n * m, &taps[..ntaps], c, &wbuf[..ntaps * c * cout], cout, 0.0, out);
                }
                // Interleave the phase into the output rows (py + sh·qy), columns (px + sw·qx).
                let (py, px) = (rp.first, cp.first);
                for (s, ys) in ys.chunks_exact_mut(ol).enumerate().take(n) {
                    for qy in 0..rp.count {
                        let oy = py + g.sh * qy;
                        for qx in 0..cp.count {
                            let ox = px + g.sw * qx;
                            let src = &out[((s * rp.count + qy) * cp.count + qx) * cout..][..cout];
                            ys[(oy * g.ow + ox) * cout..][..cout].copy_from_slice(src);
                        }
                    }
                }
            }
        }
        let pre = pre.as_deref_mut().map(|p| &mut p[chunk * step * ol..chunk * step * ol + ys.len()]);
        activation::bias_forward_inplace(act, b, pre, ys, cout);
    }
}

/// Copies `n` samples of `g`'s input into their zero-padded buffers (`ph.hp × ph.wp × c` each).
fn pad_input(g: &ConvT2d, ph: &Phases, xs: &[f32], dst: &mut [f32], n: usize) {
    let (c, line) = (g.c, ph.wp * g.c);
    for (s, d) in xs.chunks_exact(g.in_len()).zip(dst.chunks_exact_mut(ph.padded_len(c))).take(n) {
        for (py, row) in d.chunks_exact_mut(line).enumerate() {
            match py.checked_sub(ph.top).filter(|&iy| iy < g.h) {
                Some(iy) => {
                    row[..ph.left * c].fill(0.0);
                    row[ph.left * c..(ph.left + g.w) * c].copy_from_slice(&s[iy * g.w * c..(iy + 1) * g.w * c]);
                    row[(ph.left + g.w) * c..].fill(0.0);
                }
                None => row.fill(0.0),
            }
        }
    }
}

/// y = act(transposed convolution of x with w, plus b), the pre-activation stored into `pre` when given.
/// `w` is `[kh, kw, cout, c]`; `col` is scratch for the GEMM paths (see the module's documentation), or
/// empty for direct loops. When the scratch holds a sample's padded input and largest phase, the
/// product runs by output phases (see the module's documentation), otherwise as `col = X · Wᵀ` and
/// col2im.
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
    forward_on(g, (x, w, b), act, pre, col, y, batch, cout, true);
}

/// [`forward`], by phases only if `phases` (tests run both GEMM paths).
#[allow(clippy::too_many_arguments)]
fn forward_on(
    g: &ConvT2d,
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    act: Activation,
    pre: Option<&mut [f32]>,
    col: &mut [f32],
    y: &mut [f32],
    batch: usize,
    cout: usize,
    phases: bool,
) {
    let (il, ol, c) = (g.in_len(), g.positions() * cout, g.c);
    debug_assert_eq!(x.len(), batch * il);
    debug_assert_eq!(w.len(), g.kh * g.kw * cout * c);
    debug_assert_eq!(y.len(), batch * ol);
    if ol == 0 {
        return;
    }
    if il > 0 && cout > 0 && phases {
        if let Some(ph) = Phases::new(g) {
            let step = phase_samples(g, &ph, cout, col.len());
            if step > 0 {
                return forward_phases(g, &ph, (x, w, b), act, pre, col, y, cout, step);
            }
        }
    }
    let step = gemm_samples(g, cout, col.len());
    if il > 0 && step > 0 {
        let (cl, taps_out) = (g.col_len(cout), g.kh * g.kw * cout);
        let mut pre = pre;
        for (chunk, (xs, ys)) in x.chunks(step * il).zip(y.chunks_mut(step * ol)).enumerate() {
            let n = xs.len() / il;
            let col = &mut col[..n * cl];
            // col (n·h·w × taps·cout) = X (n·h·w × c) · Wᵀ, W stored (taps·cout) × c.
            sgemm(n * g.h * g.w, c, taps_out, 1.0, xs, false, w, true, 0.0, col);
            for (s, (cs, ys)) in col.chunks_exact(cl).zip(ys.chunks_exact_mut(ol)).enumerate() {
                let at = (chunk * step + s) * ol;
                g.gather_rows(cs, ys, cout, |oy, row| {
                    let p = pre.as_deref_mut().map(|p| &mut p[at + oy * row.len()..at + (oy + 1) * row.len()]);
                    activation::bias_forward_inplace(act, b, p, row, cout);
                });
            }
        }
        return;
    }
    y.fill(0.0);
    if il > 0 {
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
            // Direct loops, GEMM chunks of one sample, one chunk of the batch; stale scratch; by phases
            // and by col2im.
            for per in [0, 1, batch] {
                for phases in [true, false] {
                    let mut col = vec![f32::NAN; per * g.col_len(cout)];
                    let mut y = vec![f32::NAN; want.len()];
                    forward_on(&g, (&x, &w, Some(&b)), Activation::Linear, None, &mut col, &mut y, batch, cout, phases);
                    for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                        assert!((a - e).abs() < 1e-5, "{g:?} with scratch for {per} samples (phases {phases}), at {i}: {a} vs {e}");
                    }
                }
            }
        }
    }

    #[test]
    fn phases_apply_to_the_models_and_tests_geometries() {
        // M6's transposed convolutions (3×3, strides 2, 'same') on one sample's scratch.
        let m6 = ConvT2d { h: 32, w: 32, c: 64, kh: 3, kw: 3, sh: 2, sw: 2, dh: 1, dw: 1, crop_top: 0, crop_left: 0, oh: 64, ow: 64 };
        let ph = Phases::new(&m6).expect("3×3 has few taps");
        // Even outputs read input rows q and q − 1 (taps 0 and 2), odd ones row q (tap 1): one zero row
        // and column before the data, none after.
        assert_eq!((ph.top, ph.left, ph.hp, ph.wp), (1, 1, 33, 33));
        assert_eq!(ph.max_phase(), 32 * 32);
        assert!(phase_samples(&m6, &ph, 16, m6.col_len(16)) >= 1);
        let u2 = ConvT2d { h: 16, w: 16, c: 32, oh: 32, ow: 32, ..m6 };
        let ph = Phases::new(&u2).expect("3×3 has few taps");
        assert!(phase_samples(&u2, &ph, 32, u2.col_len(32)) >= 1);
        // The forward tests' geometries run by phases with the scratch of their two samples, except
        // where the padding outgrows a tiny input ('valid', a crop at both ends).
        let by_phases = cases()
            .into_iter()
            .filter(|(g, cout)| Phases::new(g).is_some_and(|ph| phase_samples(g, &ph, *cout, 2 * g.col_len(*cout)) >= 1));
        assert!(by_phases.count() >= 4);
    }

    #[test]
    fn gemm_paths_store_the_pre_activation_and_activation_of_the_direct_loops() {
        let mut rng = Rng::new(63);
        for (g, cout) in cases() {
            let batch = 3;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.kh * g.kw * cout * g.c, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let len = batch * g.positions() * cout;
            let run = |per: usize, phases: bool| {
                let mut col = vec![f32::NAN; per * g.col_len(cout)];
                let (mut y, mut pre) = (vec![f32::NAN; len], vec![f32::NAN; len]);
                forward_on(&g, (&x, &w, Some(&b)), Activation::Tanh, Some(&mut pre), &mut col, &mut y, batch, cout, phases);
                (y, pre)
            };
            let (want_y, want_pre) = run(0, false);
            // GEMM chunks of one sample, of two (the last one short), of the whole batch; both paths.
            for (per, phases) in [1, 2, batch].into_iter().flat_map(|p| [(p, true), (p, false)]) {
                let (y, pre) = run(per, phases);
                for (i, ((a, e), (p, q))) in y.iter().zip(&want_y).zip(pre.iter().zip(&want_pre)).enumerate() {
                    assert!(
                        (a - e).abs() < 1e-5 && (p - q).abs() < 1e-5,
                        "{g:?} per {per} phases {phases} at {i}: y {a} vs {e}, pre {p} vs {q}"
                    );
                    assert!((a - q.tanh()).abs() < 1e-6, "{g:?} per {per} at {i}: y is not tanh(pre)");
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
