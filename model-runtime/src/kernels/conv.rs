//! Keras `Conv2D` / `Conv1D` (channels-last, kernel `[kh, kw, cin, cout]`) and its backward, two ways:
//!
//! - **direct** (implicit GEMM, [`gather_gemm`]): each sample is copied once into a zero-padded buffer
//!   and the GEMM kernels gather every output pixel's window from it, so the im2col matrix (9× the
//!   input for a 3×3 window) is never written, nor packed again by the GEMM. dW is gathered the same
//!   way; dX of a stride-1 convolution is the convolution of the padded output gradient with the
//!   flipped, transposed kernel. Used when the window is small enough (see `direct_plan`).
//! - **im2col + GEMM**: otherwise (large patches, 1×1 windows, dX of strided convolutions); dX by
//!   GEMM then col2im.
//!
//! [`Window2d`] is the sliding-window geometry shared with the pooling kernels; a 1D op is the 2D op
//! with height 1.

use super::activation::{self, Activation};
use super::gemm::{gather_gemm, gather_gemm_fused, gather_gemm_tn, sgemm, sgemm_fused, Epilogue, Gather};

/// The geometry of a 2D sliding window over a channels-last `[h, w, c]` sample: window size, strides,
/// dilation, the padding before each axis (Keras 'same' pads asymmetrically, the extra at the end) and the
/// output size. All fields are fixed by the compiler from static shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window2d {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
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
    /// Zero rows padded above.
    pub pad_top: usize,
    /// Zero columns padded left.
    pub pad_left: usize,
    /// Output height.
    pub oh: usize,
    /// Output width.
    pub ow: usize,
}

/// Keras' output size and padding before the data along one axis: `(out, pad_before)`.
///
/// 'valid': out = ⌊(in − (k−1)·d − 1) / s⌋ + 1 (0 when the window does not fit), no padding.
/// 'same': out = ⌈in / s⌉, pad_total = max((out − 1)·s + (k−1)·d + 1 − in, 0), pad_before = ⌊pad_total / 2⌋.
pub fn axis_geometry(input: usize, k: usize, s: usize, d: usize, same: bool) -> (usize, usize) {
    let span = (k.max(1) - 1) * d + 1;
    let s = s.max(1);
    if same {
        let out = input.div_ceil(s);
        let total = ((out.max(1) - 1) * s + span).saturating_sub(input);
        (out, total / 2)
    } else if input >= span {
        ((input - span) / s + 1, 0)
    } else {
        (0, 0)
    }
}

impl Window2d {
    /// The geometry of a `[kh, kw]` window with strides `[sh, sw]` and dilation `[dh, dw]` over `[h, w, c]`.
    pub fn new(h: usize, w: usize, c: usize, k: [usize; 2], s: [usize; 2], d: [usize; 2], same: bool) -> Window2d {
        let (oh, pad_top) = axis_geometry(h, k[0], s[0], d[0], same);
        let (ow, pad_left) = axis_geometry(w, k[1], s[1], d[1], same);
        Window2d { h, w, c, kh: k[0], kw: k[1], sh: s[0], sw: s[1], dh: d[0], dw: d[1], pad_top, pad_left, oh, ow }
    }

    /// Elements of one input sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Output positions of one sample (`oh · ow`).
    pub fn positions(&self) -> usize {
        self.oh * self.ow
    }

    /// Elements of one im2col row: `kh · kw · c`.
    pub fn patch(&self) -> usize {
        self.kh * self.kw * self.c
    }

    /// True when the im2col matrix is the input itself (1×1 window, stride 1, no padding).
    pub fn is_pointwise(&self) -> bool {
        self.kh == 1 && self.kw == 1 && self.sh == 1 && self.sw == 1 && self.pad_top == 0 && self.pad_left == 0
    }

    /// The input row hit by output row `oy` and window row `ki`, if inside the input.
    #[inline]
    pub fn in_row(&self, oy: usize, ki: usize) -> Option<usize> {
        (oy * self.sh + ki * self.dh).checked_sub(self.pad_top).filter(|&r| r < self.h)
    }

    /// For an undilated window row (`dw == 1`), the window columns `kj0..kj1` of output column `ox` that
    /// fall inside the input and the input column of `kj0`: those taps read one contiguous run of
    /// `(kj1 - kj0) · c` values. `None` when dilated.
    #[inline]
    pub fn col_run(&self, ox: usize) -> Option<(usize, usize, usize)> {
        if self.dw != 1 {
            return None;
        }
        let start = ox * self.sw;
        let kj0 = self.pad_left.saturating_sub(start).min(self.kw);
        let kj1 = (self.w + self.pad_left).saturating_sub(start).min(self.kw).max(kj0);
        let ix0 = if kj1 > kj0 { start + kj0 - self.pad_left } else { 0 };
        Some((kj0, kj1, ix0))
    }

    /// The input column hit by output column `ox` and window column `kj`, if inside the input.
    #[inline]
    pub fn in_col(&self, ox: usize, kj: usize) -> Option<usize> {
        (ox * self.sw + kj * self.dw).checked_sub(self.pad_left).filter(|&q| q < self.w)
    }
}

/// Writes the im2col matrix of `batch` samples into `col`: one row of `patch()` values per output
/// position (window row, window column, channel order, matching the kernel layout), zeros for padding.
pub fn im2col(g: &Window2d, x: &[f32], col: &mut [f32], batch: usize) {
    let (c, patch, in_len) = (g.c, g.patch(), g.in_len());
    debug_assert!(x.len() >= batch * in_len);
    debug_assert!(col.len() >= batch * g.positions() * patch);
    if patch == 0 || in_len == 0 {
        return;
    }
    let mut rows = col.chunks_exact_mut(patch);
    for xs in x.chunks_exact(in_len).take(batch) {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let Some(row) = rows.next() else { return };
                for ki in 0..g.kh {
                    let dst = &mut row[ki * g.kw * c..(ki + 1) * g.kw * c];
                    let Some(iy) = g.in_row(oy, ki) else {
                        dst.fill(0.0);
                        continue;
                    };
                    let line = &xs[iy * g.w * c..(iy + 1) * g.w * c];
                    if let Some((kj0, kj1, ix0)) = g.col_run(ox) {
                        // Undilated: the valid taps are one contiguous run of the input row.
                        dst[..kj0 * c].fill(0.0);
                        dst[kj0 * c..kj1 * c].copy_from_slice(&line[ix0 * c..(ix0 + kj1 - kj0) * c]);
                        dst[kj1 * c..].fill(0.0);
                        continue;
                    }
                    for (kj, d) in dst.chunks_exact_mut(c).enumerate() {
                        match g.in_col(ox, kj) {
                            Some(ix) => d.copy_from_slice(&line[ix * c..(ix + 1) * c]),
                            None => d.fill(0.0),
                        }
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: dx += the im2col-matrix gradient `dcol` scattered back to the input.
pub fn col2im_accumulate(g: &Window2d, dcol: &[f32], dx: &mut [f32], batch: usize) {
    let (c, patch, in_len) = (g.c, g.patch(), g.in_len());
    debug_assert!(dx.len() >= batch * in_len);
    debug_assert!(dcol.len() >= batch * g.positions() * patch);
    if patch == 0 || in_len == 0 {
        return;
    }
    let mut rows = dcol.chunks_exact(patch);
    for xs in dx.chunks_exact_mut(in_len).take(batch) {
        for oy in 0..g.oh {
            for ox in 0..g.ow {
                let Some(row) = rows.next() else { return };
                for ki in 0..g.kh {
                    let Some(iy) = g.in_row(oy, ki) else { continue };
                    let src = &row[ki * g.kw * c..(ki + 1) * g.kw * c];
                    let line = &mut xs[iy * g.w * c..(iy + 1) * g.w * c];
                    if let Some((kj0, kj1, ix0)) = g.col_run(ox) {
                        let run = &mut line[ix0 * c..(ix0 + kj1 - kj0) * c];
                        for (o, &v) in run.iter_mut().zip(&src[kj0 * c..kj1 * c]) {
                            *o += v;
                        }
                        continue;
                    }
                    for (kj, s) in src.chunks_exact(c).enumerate() {
                        if let Some(ix) = g.in_col(ox, kj) {
                            for (o, &v) in line[ix * c..(ix + 1) * c].iter_mut().zip(s) {
                                *o += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// Floats of im2col matrix handled at a time per thread: a chunk of samples whose im2col rows (1 MiB, the L2 of a Zen 4 core) stay in
/// the L2 cache between being written and being read by the GEMM, instead of streaming the whole
/// batch's matrix (18 MiB for BENCH M3's second convolution at batch 32) through memory.
pub(crate) const CHUNK_FLOATS: usize = 1 << 18;

/// Samples per im2col chunk: as many as fit in [`CHUNK_FLOATS`] per GEMM thread (each thread's band of
/// the chunk stays in its own core's L2), at least one.
fn chunk_samples(g: &Window2d) -> usize {
    (CHUNK_FLOATS * super::gemm::num_threads() / (g.positions() * g.patch()).max(1)).max(1)
}

/// The largest patch (kh·kw·cin) run directly: its packed kernel panels (patch × 16 floats each)
/// stay in L1 beside the windows. Larger patches amortise im2col over a long GEMM k anyway.
const DIRECT_MAX_PATCH: usize = 512;
/// The most taps (kh·kw) of a direct window, the size of the offset tables kept on the stack.
const DIRECT_MAX_TAPS: usize = 64;

/// The zero-padded copy of a sample that the direct kernels gather from: `hp × wp × c`, the data at
/// row `top`, column `left`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Padded {
    hp: usize,
    wp: usize,
    top: usize,
    left: usize,
}

impl Padded {
    /// The padded input of the forward: every window of every output pixel lies inside it.
    fn input(g: &Window2d) -> Padded {
        let span = |o: usize, s: usize, k: usize, d: usize| if o == 0 { 0 } else { (o - 1) * s + (k - 1) * d + 1 };
        Padded { hp: span(g.oh, g.sh, g.kh, g.dh), wp: span(g.ow, g.sw, g.kw, g.dw), top: g.pad_top, left: g.pad_left }
    }

    /// The padded output gradient whose stride-1 convolution with the flipped kernel is dX (`h × w`
    /// windows), or `None` when that does not hold (strides, or padding wider than the window).
    fn output_grad(g: &Window2d) -> Option<Padded> {
        if g.sh != 1 || g.sw != 1 {
            return None;
        }
        let (ext_h, ext_w) = ((g.kh - 1) * g.dh, (g.kw - 1) * g.dw);
        let top = ext_h.checked_sub(g.pad_top)?;
        let left = ext_w.checked_sub(g.pad_left)?;
        let p = Padded { hp: g.h + ext_h, wp: g.w + ext_w, top, left };
        // Every row and column of dz must land inside the padded buffer.
        (g.oh + top <= p.hp && g.ow + left <= p.wp).then_some(p)
    }

    fn len(&self, c: usize) -> usize {
        self.hp * self.wp * c
    }

    /// The gather of `rows × cols` output pixels at strides `(sh, sw)` over this buffer of `c` channels.
    fn gather(&self, rows: usize, cols: usize, (sh, sw): (usize, usize), c: usize) -> Gather {
        Gather { cols, rows, img: self.len(c), row: sh * self.wp * c, col: sw * c }
    }

    /// Writes the offsets of the `kh × kw` taps (row-major, dilated by `(dh, dw)`) into `taps`,
    /// reversed when `flip`; returns how many.
    fn taps(&self, (kh, kw): (usize, usize), (dh, dw): (usize, usize), c: usize, flip: bool, taps: &mut [usize; DIRECT_MAX_TAPS]) -> usize {
        let n = kh * kw;
        for t in 0..n {
            let (ki, kj) = (t / kw, t % kw);
            taps[if flip { n - 1 - t } else { t }] = (ki * dh * self.wp + kj * dw) * c;
        }
        n
    }

    /// Copies `n` samples of `h × w × c` from `src` into `dst` (`n` padded buffers), zeros around.
    /// Rows and columns of `src` beyond the buffer (the unused end of a 'valid' input) are dropped.
    fn fill(&self, (h, w, c): (usize, usize, usize), src: &[f32], dst: &mut [f32], n: usize) {
        let (line, plen) = (self.wp * c, self.len(c));
        let cols = w.min(self.wp.saturating_sub(self.left));
        for (s, d) in src.chunks_exact(h * w * c).zip(dst.chunks_exact_mut(plen)).take(n) {
            for (py, row) in d.chunks_exact_mut(line).enumerate() {
                match py.checked_sub(self.top).filter(|&y| y < h) {
                    Some(y) => {
                        row[..self.left * c].fill(0.0);
                        row[self.left * c..(self.left + cols) * c].copy_from_slice(&s[y * w * c..(y * w + cols) * c]);
                        row[(self.left + cols) * c..].fill(0.0);
                    }
                    None => row.fill(0.0),
                }
            }
        }
    }
}

/// Samples per chunk of the direct path, or `None` when it does not apply: a patch too large or a
/// window of too many taps, a pointwise window (the input is its own im2col matrix), scratch too
/// small for one padded sample (`col_len` for the padded input; `dcol_len` for the transposed kernel
/// and the padded output gradient, when `with_dx`), or, `with_dx`, a strided convolution. A chunk is
/// as many samples as keep the padded buffers and the chunk's output in the GEMM threads' L2.
fn direct_plan(g: &Window2d, cout: usize, col_len: usize, dcol_len: usize, with_dx: bool) -> Option<usize> {
    let patch = g.patch();
    if g.is_pointwise() || patch == 0 || patch > DIRECT_MAX_PATCH || g.kh * g.kw > DIRECT_MAX_TAPS || cout == 0 || g.positions() == 0 {
        return None;
    }
    let pin = Padded::input(g).len(g.c);
    let mut per_sample = pin + g.positions() * cout;
    if col_len < pin {
        return None;
    }
    let mut dx_room = usize::MAX;
    if with_dx {
        let pout = Padded::output_grad(g)?.len(cout);
        // dX's patch is kh·kw·cout.
        if g.kh * g.kw * cout > DIRECT_MAX_PATCH || dcol_len < patch * cout + pout {
            return None;
        }
        per_sample += pout + g.in_len();
        dx_room = (dcol_len - patch * cout) / pout.max(1);
    }
    let step = (CHUNK_FLOATS * super::gemm::num_threads() / per_sample.max(1)).max(1);
    Some(step.min(col_len / pin.max(1)).min(dx_room).max(1))
}

/// Whether this convolution leaves its direct path for im2col + the bf16 GEMM under a
/// `mixed_bfloat16` scope: never, unless the size threshold is turned off
/// (`MODELC_BF16_THRESHOLD=off`, see [`super::gemm::bf16_pays`]). Measured with
/// `MODELC_BF16_THRESHOLD=off cargo run --release --example bf16_bench -- --grid` (Zen 4, 1 thread,
/// busy machine, 2026-12-06): forward + backward of 3×3 'same' convolutions at batch 32 where the
/// direct path applies took 1.2–2.4× longer through im2col + bf16 (8×8×1 → 32: 0.86× f32's speed,
/// 8×8×32 → 32: 0.81×, 16×16×16 → 32: 0.77×, 32×32×3 → 16: 0.41×, 32×32×16 → 32: 0.66×): the direct
/// path reads the padded image in place, which is worth more than bf16's products. Where the
/// direct path does not apply (patches over 512 values, a strided dx, pointwise windows) the f32
/// path is im2col + GEMM already, and the GEMM's threshold decides: 8×8×64 → 64 ran 1.58× faster
/// in bf16, 16×16×32 → 64 1.38×.
fn bf16_im2col() -> bool {
    super::gemm::bf16_kernel().is_some() && super::gemm::bf16_threshold_off()
}

/// The bias and activation a forward GEMM applies as it stores `y` (the bias always; relu when
/// nothing needs the pre-activation), and whether a pass over `y` must follow for the rest of the
/// activation (or to store the pre-activation).
fn fused_epilogue<'a>(act: Activation, b: Option<&'a [f32]>, with_pre: bool) -> (Epilogue<'a>, bool) {
    let relu = matches!(act, Activation::Relu) && !with_pre;
    let done = relu || (matches!(act, Activation::Linear) && !with_pre);
    (Epilogue { bias: b, relu }, !done)
}

/// [`forward`] by the direct path, `step` samples per chunk: pad the chunk's samples into `col`,
/// one gathered GEMM into `y` whose stores add the bias (and apply relu, see `fused_epilogue`), then
/// any other activation while the chunk's `y` is in cache.
#[allow(clippy::too_many_arguments)]
fn forward_direct(
    g: &Window2d,
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    act: Activation,
    mut pre: Option<&mut [f32]>,
    col: &mut [f32],
    y: &mut [f32],
    batch: usize,
    cout: usize,
    step: usize,
) {
    debug_assert_eq!(x.len(), batch * g.in_len());
    debug_assert_eq!(w.len(), g.patch() * cout);
    debug_assert_eq!(y.len(), batch * g.positions() * cout);
    let pad = Padded::input(g);
    let mut taps = [0; DIRECT_MAX_TAPS];
    let nt = pad.taps((g.kh, g.kw), (g.dh, g.dw), g.c, false, &mut taps);
    let gather = pad.gather(g.oh, g.ow, (g.sh, g.sw), g.c);
    let out = g.positions() * cout;
    for (i, (xs, ys)) in x.chunks(step * g.in_len()).zip(y.chunks_mut(step * out)).enumerate() {
        let n = xs.len() / g.in_len();
        let src = &mut col[..n * pad.len(g.c)];
        pad.fill((g.h, g.w, g.c), xs, src, n);
        let (epi, pass) = fused_epilogue(act, b, pre.is_some());
        gather_gemm_fused(src, &gather, n * g.positions(), &taps[..nt], g.c, w, cout, 0.0, ys, epi);
        if pass {
            let pre = pre.as_deref_mut().map(|p| &mut p[i * step * out..i * step * out + ys.len()]);
            activation::bias_forward_inplace(act, None, pre, ys, cout);
        }
    }
}

/// The backward by the direct path from dL/dy in `dy`, `step` samples per chunk, each chunk while it
/// is in cache: dy becomes dz through the activation; db += Σ dz; the chunk's padded input in `col`
/// gives dw += Aᵀ·dz; with `dx`, the kernel flipped and transposed into the front of `dcol` and the
/// chunk's padded dz behind it give dx += dz ⋆ Wᵀ.
#[allow(clippy::type_complexity, clippy::too_many_arguments)]
fn backward_direct(
    g: &Window2d,
    (x, w, dy): (&[f32], &[f32], &mut [f32]),
    (act, pre, y): (Activation, Option<&[f32]>, &[f32]),
    (col, dcol): (&mut [f32], &mut [f32]),
    (mut dx, dw, mut db): (Option<&mut [f32]>, &mut [f32], Option<&mut [f32]>),
    batch: usize,
    cout: usize,
    step: usize,
) {
    let (c, patch, out) = (g.c, g.patch(), g.positions() * cout);
    debug_assert_eq!(dy.len(), batch * out);
    debug_assert_eq!(y.len(), batch * out);
    debug_assert_eq!(dw.len(), patch * cout);
    let pin = Padded::input(g);
    let mut taps = [0; DIRECT_MAX_TAPS];
    let nt = pin.taps((g.kh, g.kw), (g.dh, g.dw), c, false, &mut taps);
    let gather = pin.gather(g.oh, g.ow, (g.sh, g.sw), c);
    // dX's convolution: taps over the padded dz in flipped order, against wt[t][co][ci] = w[t][ci][co].
    let mut back = None;
    if dx.is_some() {
        let pout = Padded::output_grad(g).expect("direct_plan checked the dX geometry");
        let (wt, rest) = dcol.split_at_mut(patch * cout);
        for (wt_t, w_t) in wt.chunks_exact_mut(cout * c).zip(w.chunks_exact(c * cout)) {
            for co in 0..cout {
                for ci in 0..c {
                    wt_t[co * c + ci] = w_t[ci * cout + co];
                }
            }
        }
        let mut btaps = [0; DIRECT_MAX_TAPS];
        pout.taps((g.kh, g.kw), (g.dh, g.dw), cout, true, &mut btaps);
        back = Some((pout, btaps, pout.gather(g.h, g.w, (1, 1), cout), &*wt, rest));
    }
    for s0 in (0..batch).step_by(step.max(1)) {
        let n = step.min(batch - s0);
        let (xs, outs) = (&x[s0 * g.in_len()..(s0 + n) * g.in_len()], s0 * out..(s0 + n) * out);
        let dzs = &mut dy[outs.clone()];
        activation::backward(act, pre.map(|p| &p[outs.clone()]), &y[outs], dzs, cout);
        if let Some(db) = db.as_deref_mut() {
            debug_assert_eq!(db.len(), cout);
            for row in dzs.chunks_exact(cout) {
                db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
            }
        }
        let src = &mut col[..n * pin.len(c)];
        pin.fill((g.h, g.w, c), xs, src, n);
        gather_gemm_tn(src, &gather, n * g.positions(), &taps[..nt], c, dzs, cout, dw);
        if let (Some(dx), Some((pout, btaps, bgather, wt, rest))) = (dx.as_deref_mut(), back.as_mut()) {
            let dzp = &mut rest[..n * pout.len(cout)];
            pout.fill((g.oh, g.ow, cout), dzs, dzp, n);
            let dxs = &mut dx[s0 * g.in_len()..(s0 + n) * g.in_len()];
            gather_gemm(dzp, bgather, n * g.h * g.w, &btaps[..nt], cout, wt, c, 1.0, dxs);
        }
    }
}

/// y = act(conv(x, w) + b) for `batch` samples: `x` is `batch × [h, w, cin]`, `w` is `[kh, kw, cin, cout]`,
/// `y` is `batch × [oh, ow, cout]`.
///
/// `col` is scratch with room for `batch · oh · ow · kh · kw · cin` values (unused and may be empty
/// when [`Window2d::is_pointwise`]). Chunk by chunk of samples, either (direct path, see
/// `direct_plan`) the chunk's zero-padded samples are copied into `col` and one gathered GEMM
/// writes `y`, or the chunk's im2col matrix is written into `col` and one GEMM writes `y`; bias and
/// activation follow in one pass, storing the pre-activation into `pre` when given. Allocates nothing.
/// Under `mixed_bfloat16` (a [`super::gemm::Bf16Scope`] on this thread) the same path: the direct
/// one stays f32, faster than im2col + bf16 (see `bf16_im2col`); im2col's GEMM is bf16 where it pays.
#[allow(clippy::too_many_arguments)]
pub fn forward(
    g: &Window2d,
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
    match direct_plan(g, cout, col.len(), 0, false).filter(|_| !bf16_im2col()) {
        Some(step) => forward_direct(g, (x, w, b), act, pre, col, y, batch, cout, step),
        None => forward_chunked(g, (x, w, b), act, pre, col, y, batch, cout, chunk_samples(g)),
    }
}

/// [`forward`] with `step` samples per im2col chunk.
#[allow(clippy::too_many_arguments)]
fn forward_chunked(
    g: &Window2d,
    (x, w, b): (&[f32], &[f32], Option<&[f32]>),
    act: Activation,
    pre: Option<&mut [f32]>,
    col: &mut [f32],
    y: &mut [f32],
    batch: usize,
    cout: usize,
    step: usize,
) {
    let (rows, patch) = (batch * g.positions(), g.patch());
    debug_assert_eq!(x.len(), batch * g.in_len());
    debug_assert_eq!(w.len(), patch * cout);
    debug_assert_eq!(y.len(), rows * cout);
    // The GEMMs' stores add the bias (and apply relu, see `fused_epilogue`); a pass over `y` follows
    // for any other activation. With no product to run, that pass adds the bias too.
    let (epi, pass) = fused_epilogue(act, b, pre.is_some());
    if g.is_pointwise() {
        sgemm_fused(rows, patch, cout, 1.0, x, false, w, false, 0.0, y, epi);
    } else if g.in_len() > 0 && cout > 0 {
        for (xs, ys) in x.chunks(step * g.in_len()).zip(y.chunks_mut(step * g.positions() * cout)) {
            let n = xs.len() / g.in_len();
            im2col(g, xs, col, n);
            sgemm_fused(n * g.positions(), patch, cout, 1.0, col, false, w, false, 0.0, ys, epi);
        }
    } else {
        y.fill(0.0);
        return activation::bias_forward_inplace(act, b, pre, y, cout);
    }
    if pass {
        activation::bias_forward_inplace(act, None, pre, y, cout);
    }
}

/// The backward of [`forward`]. `dy` is overwritten with dL/dz through the activation; db += Σ dz.
/// Then, chunk by chunk of samples: on the direct path (see `direct_plan`), the chunk's padded input
/// is rebuilt in `col`, dw += Aᵀ·dz gathered from it, and, when `dx` is given, dx += the convolution
/// of the chunk's padded dz (in `dcol`, behind the flipped, transposed kernel) with that kernel; on
/// the im2col path, the chunk's im2col matrix is rebuilt in `col`, dw += colᵀ·dz, and, when `dx` is
/// given, dcol = dz·Wᵀ (`dcol` as long as `col`) is scattered into dx by [`col2im_accumulate`]. For a
/// pointwise window `x` stands in for `col` and dx += dz·Wᵀ directly. Allocates nothing.
///
/// # Panics
/// When `pre` is `None` for an activation that needs it.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    g: &Window2d,
    x: &[f32],
    w: &[f32],
    pre: Option<&[f32]>,
    y: &[f32],
    dy: &mut [f32],
    act: Activation,
    col: &mut [f32],
    dcol: &mut [f32],
    dx: Option<&mut [f32]>,
    dw: &mut [f32],
    db: Option<&mut [f32]>,
    batch: usize,
    cout: usize,
) {
    // Under `mixed_bfloat16` (crate::precision) the same path as in f32 (see `bf16_im2col`): the
    // direct path's gathered products are f32; im2col's are sgemm's, bf16 where they pay.
    match direct_plan(g, cout, col.len(), dcol.len(), dx.is_some()).filter(|_| !bf16_im2col()) {
        Some(step) => backward_direct(g, (x, w, dy), (act, pre, y), (col, dcol), (dx, dw, db), batch, cout, step),
        None => {
            activation::backward(act, pre, y, dy, cout);
            backward_chunked(g, (x, w, dy), (col, dcol), (dx, dw, db), batch, cout, chunk_samples(g));
        }
    }
}

/// The weight, bias and input gradients of [`backward`] from dz, with `step` samples per im2col chunk.
#[allow(clippy::type_complexity)]
fn backward_chunked(
    g: &Window2d,
    (x, w, dz): (&[f32], &[f32], &[f32]),
    (col, dcol): (&mut [f32], &mut [f32]),
    (mut dx, dw, db): (Option<&mut [f32]>, &mut [f32], Option<&mut [f32]>),
    batch: usize,
    cout: usize,
    step: usize,
) {
    let (rows, patch) = (batch * g.positions(), g.patch());
    debug_assert_eq!(dz.len(), rows * cout);
    debug_assert_eq!(dw.len(), patch * cout);
    if let Some(db) = db {
        debug_assert_eq!(db.len(), cout);
        if cout > 0 {
            for row in dz.chunks_exact(cout) {
                db.iter_mut().zip(row).for_each(|(g, &d)| *g += d);
            }
        }
    }
    if g.is_pointwise() {
        // dw (patch×cout) += xᵀ (patch×rows) · dz (rows×cout); dx += dz·Wᵀ.
        sgemm(patch, rows, cout, 1.0, x, true, dz, false, 1.0, dw);
        if let Some(dx) = dx {
            debug_assert_eq!(dx.len(), batch * g.in_len());
            sgemm(rows, cout, patch, 1.0, dz, false, w, true, 1.0, dx);
        }
        return;
    }
    if g.in_len() == 0 || cout == 0 {
        return;
    }
    for (c, (xs, dzs)) in x.chunks(step * g.in_len()).zip(dz.chunks(step * g.positions() * cout)).enumerate() {
        let n = xs.len() / g.in_len();
        let r = n * g.positions();
        im2col(g, xs, col, n);
        // dw (patch×cout) += colᵀ (patch×r) · dz (r×cout).
        sgemm(patch, r, cout, 1.0, col, true, dzs, false, 1.0, dw);
        if let Some(dx) = dx.as_deref_mut() {
            debug_assert_eq!(dx.len(), batch * g.in_len());
            // dcol (r×patch) = dz (r×cout) · Wᵀ (cout×patch), scattered into this chunk's dx.
            sgemm(r, cout, patch, 1.0, dzs, false, w, true, 0.0, dcol);
            let dxs = &mut dx[c * step * g.in_len()..(c * step + n) * g.in_len()];
            col2im_accumulate(g, dcol, dxs, n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// Direct convolution with explicit padding offsets, in f64: y[n, oy, ox, o].
    fn naive(g: &Window2d, x: &[f32], w: &[f32], b: &[f32], batch: usize, cout: usize) -> Vec<f32> {
        let mut y = vec![0.0f32; batch * g.oh * g.ow * cout];
        for n in 0..batch {
            for oy in 0..g.oh {
                for ox in 0..g.ow {
                    for o in 0..cout {
                        let mut s = b[o] as f64;
                        for ki in 0..g.kh {
                            for kj in 0..g.kw {
                                let iy = (oy * g.sh + ki * g.dh) as i64 - g.pad_top as i64;
                                let ix = (ox * g.sw + kj * g.dw) as i64 - g.pad_left as i64;
                                if iy < 0 || ix < 0 || iy >= g.h as i64 || ix >= g.w as i64 {
                                    continue;
                                }
                                for ci in 0..g.c {
                                    let xv = x[((n * g.h + iy as usize) * g.w + ix as usize) * g.c + ci];
                                    let wv = w[((ki * g.kw + kj) * g.c + ci) * cout + o];
                                    s += xv as f64 * wv as f64;
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

    /// (h, w, cin, k, s, d, same, cout): odd sizes at stride 2 'same', dilation 2, 1×1, non-square.
    fn cases() -> Vec<Window2d> {
        vec![
            Window2d::new(5, 5, 2, [3, 3], [1, 1], [1, 1], false),
            Window2d::new(5, 5, 2, [3, 3], [1, 1], [1, 1], true),
            Window2d::new(7, 5, 3, [3, 3], [2, 2], [1, 1], true),
            Window2d::new(6, 6, 1, [3, 3], [2, 2], [1, 1], true),
            Window2d::new(7, 9, 2, [3, 2], [1, 1], [2, 2], false),
            Window2d::new(7, 6, 2, [3, 3], [1, 1], [2, 2], true),
            Window2d::new(4, 3, 3, [1, 1], [1, 1], [1, 1], false),
            Window2d::new(5, 4, 2, [1, 1], [2, 2], [1, 1], true),
            Window2d::new(1, 9, 2, [1, 3], [1, 2], [1, 1], true),
            Window2d::new(3, 8, 2, [2, 4], [1, 3], [1, 1], false),
        ]
    }

    fn run(g: &Window2d, x: &[f32], w: &[f32], b: &[f32], act: Activation, batch: usize, cout: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut y = vec![f32::NAN; batch * g.positions() * cout];
        let mut pre = vec![0.0; y.len()];
        let mut col = vec![f32::NAN; batch * g.positions() * g.patch()];
        let p = act.needs_input().then_some(&mut pre[..]);
        forward(g, x, w, Some(b), act, p, &mut col, &mut y, batch, cout);
        (y, pre, col)
    }

    #[test]
    fn axis_geometry_matches_keras_same_and_valid() {
        // 'same' at stride 2 on odd sizes: out = ceil(in / 2), the extra padding at the end.
        assert_eq!(axis_geometry(7, 3, 2, 1, true), (4, 1));
        assert_eq!(axis_geometry(6, 3, 2, 1, true), (3, 0));
        assert_eq!(axis_geometry(5, 3, 1, 2, true), (5, 2));
        assert_eq!(axis_geometry(32, 3, 1, 1, true), (32, 1));
        assert_eq!(axis_geometry(5, 3, 1, 1, false), (3, 0));
        assert_eq!(axis_geometry(7, 3, 1, 2, false), (3, 0));
        assert_eq!(axis_geometry(7, 2, 2, 1, false), (3, 0));
        assert_eq!(axis_geometry(2, 3, 1, 1, false), (0, 0));
    }

    #[test]
    fn forward_matches_direct_convolution_on_every_geometry() {
        let mut rng = Rng::new(5);
        for g in cases() {
            let (batch, cout) = (2, 3);
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.patch() * cout, -1.0, 1.0);
            let b = random_vec(&mut rng, cout, -1.0, 1.0);
            let want = naive(&g, &x, &w, &b, batch, cout);
            let (y, _, _) = run(&g, &x, &w, &b, Activation::Linear, batch, cout);
            for (i, (a, e)) in y.iter().zip(&want).enumerate() {
                assert!((a - e).abs() < 1e-5, "{g:?} at {i}: {a} vs {e}");
            }
            let (y, _, _) = run(&g, &x, &w, &b, Activation::Relu, batch, cout);
            for (a, e) in y.iter().zip(&want) {
                assert!((a - e.max(0.0)).abs() < 1e-5, "{g:?} relu");
            }
        }
    }

    #[test]
    fn chunks_of_one_sample_give_the_results_of_one_chunk() {
        let mut rng = Rng::new(9);
        for g in cases().into_iter().filter(|g| !g.is_pointwise()) {
            let (batch, cout) = (3, 2);
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let w = random_vec(&mut rng, g.patch() * cout, -1.0, 1.0);
            let dz = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
            let results: Vec<_> = [1, batch]
                .into_iter()
                .map(|step| {
                    let mut y = vec![0.0; dz.len()];
                    let (mut col, mut dcol) = (vec![0.0; batch * g.positions() * g.patch()], vec![0.0; batch * g.positions() * g.patch()]);
                    forward_chunked(&g, (&x, &w, None), Activation::Linear, None, &mut col, &mut y, batch, cout, step);
                    let (mut dx, mut dw, mut db) = (vec![0.0; x.len()], vec![0.0; w.len()], vec![0.0; cout]);
                    backward_chunked(&g, (&x, &w, &dz), (&mut col, &mut dcol), (Some(&mut dx), &mut dw, Some(&mut db)), batch, cout, step);
                    [y, dx, dw, db]
                })
                .collect();
            for (a, b) in results[0].iter().zip(&results[1]) {
                assert!(a.iter().zip(b).all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs())), "{g:?}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences_for_dx_dw_db() {
        let mut rng = Rng::new(6);
        for g in cases() {
            for act in [Activation::Linear, Activation::Tanh, Activation::Silu] {
                let (batch, cout) = (2, 2);
                let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
                let w = random_vec(&mut rng, g.patch() * cout, -1.0, 1.0);
                let b = random_vec(&mut rng, cout, -0.5, 0.5);
                let r = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
                let (y, pre, mut col) = run(&g, &x, &w, &b, act, batch, cout);
                let (dx0, dw0, db0) = (vec![0.5; x.len()], vec![-0.25; w.len()], vec![1.0; cout]);
                let (mut dx, mut dw, mut db) = (dx0.clone(), dw0.clone(), db0.clone());
                let mut dy = r.clone();
                let mut dcol = vec![f32::NAN; col.len()];
                let p = act.needs_input().then_some(&pre[..]);
                backward(&g, &x, &w, p, &y, &mut dy, act, &mut col, &mut dcol, Some(&mut dx), &mut dw, Some(&mut db), batch, cout);
                let minus = |g: &[f32], g0: &[f32]| -> Vec<f32> { g.iter().zip(g0).map(|(a, b)| a - b).collect() };
                let loss = |x: &[f32], w: &[f32], b: &[f32]| weighted_sum(&r, &run(&g, x, w, b, act, batch, cout).0);
                let what = format!("conv {g:?} {act:?}");
                check_grad(&format!("{what} dx"), &x, &minus(&dx, &dx0), 1e-2, |x| loss(x, &w, &b));
                check_grad(&format!("{what} dw"), &w, &minus(&dw, &dw0), 1e-2, |w| loss(&x, w, &b));
                check_grad(&format!("{what} db"), &b, &minus(&db, &db0), 1e-2, |b| loss(&x, &w, b));
            }
        }
    }

    #[test]
    fn direct_path_matches_im2col_path_forward_and_backward() {
        let mut rng = Rng::new(12);
        for g in cases().into_iter().filter(|g| !g.is_pointwise()) {
            for cout in [3, 17] {
                let batch = 3;
                let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
                let w = random_vec(&mut rng, g.patch() * cout, -1.0, 1.0);
                let b = random_vec(&mut rng, cout, -1.0, 1.0);
                let dz = random_vec(&mut rng, batch * g.positions() * cout, -1.0, 1.0);
                // Room for the im2col matrix, or the padded input, or the kernel and the padded dz.
                let im2col = batch * g.positions() * g.patch();
                let pout = Padded::output_grad(&g).map_or(0, |p| p.len(cout));
                let mut col = vec![f32::NAN; im2col.max(batch * Padded::input(&g).len(g.c))];
                let mut dcol = vec![f32::NAN; im2col.max(g.patch() * cout + batch * pout)];
                let mut want_y = vec![f32::NAN; dz.len()];
                forward_chunked(&g, (&x, &w, Some(&b)), Activation::Relu, None, &mut col, &mut want_y, batch, cout, batch);
                let with_dx = Padded::output_grad(&g).is_some();
                let mut want = (vec![0.5; x.len()], vec![0.25; w.len()], vec![-1.0; cout]);
                let dx = with_dx.then_some(&mut want.0[..]);
                backward_chunked(&g, (&x, &w, &dz), (&mut col, &mut dcol), (dx, &mut want.1, Some(&mut want.2)), batch, cout, 1);
                for step in [1, 2, batch] {
                    let mut y = vec![f32::NAN; dz.len()];
                    forward_direct(&g, (&x, &w, Some(&b)), Activation::Relu, None, &mut col, &mut y, batch, cout, step);
                    let close = |a: &[f32], e: &[f32]| a.iter().zip(e).all(|(p, q)| (p - q).abs() <= 1e-5 * (1.0 + q.abs()));
                    assert!(close(&y, &want_y), "{g:?} cout {cout} step {step}: forward");
                    let mut got = (vec![0.5; x.len()], vec![0.25; w.len()], vec![-1.0; cout]);
                    let dx = with_dx.then_some(&mut got.0[..]);
                    let (mut dy, y) = (dz.clone(), vec![0.0; dz.len()]);
                    backward_direct(
                        &g,
                        (&x, &w, &mut dy),
                        (Activation::Linear, None, &y),
                        (&mut col, &mut dcol),
                        (dx, &mut got.1, Some(&mut got.2)),
                        batch,
                        cout,
                        step,
                    );
                    assert!(close(&got.0, &want.0), "{g:?} cout {cout} step {step}: dx");
                    assert!(close(&got.1, &want.1), "{g:?} cout {cout} step {step}: dw");
                    assert!(close(&got.2, &want.2), "{g:?} cout {cout} step {step}: db");
                }
            }
        }
    }

    #[test]
    fn direct_plan_takes_m3_and_falls_back_where_it_must() {
        // BENCH M3's convolutions at batch 32, with the scratch the compiler gives them.
        let first = Window2d::new(32, 32, 3, [3, 3], [1, 1], [1, 1], true);
        let second = Window2d::new(32, 32, 16, [3, 3], [1, 1], [1, 1], true);
        for (g, cout) in [(first, 16), (second, 32)] {
            let col = 32 * g.positions() * g.patch();
            assert!(direct_plan(&g, cout, col, col, false).is_some(), "{g:?}");
            assert!(direct_plan(&g, cout, col, col, true).is_some(), "{g:?} with dx");
            let step = direct_plan(&g, cout, col, col, true).unwrap_or(0);
            assert!((1..=32).contains(&step), "{g:?}: {step} samples per chunk");
            // Scratch smaller than one padded sample: im2col.
            assert_eq!(direct_plan(&g, cout, Padded::input(&g).len(g.c) - 1, col, false), None);
        }
        // dX of a strided convolution is not a convolution of dz: im2col, but dW alone is direct.
        let strided = Window2d::new(7, 5, 3, [3, 3], [2, 2], [1, 1], true);
        let col = strided.positions() * strided.patch();
        assert_eq!(direct_plan(&strided, 4, col * 4, col * 4, true), None);
        assert!(direct_plan(&strided, 4, col * 4, col * 4, false).is_some());
        // 1×1 windows and patches past the limit stay on im2col + GEMM.
        let pointwise = Window2d::new(4, 3, 3, [1, 1], [1, 1], [1, 1], false);
        assert_eq!(direct_plan(&pointwise, 4, 1 << 20, 1 << 20, true), None);
        let wide = Window2d::new(8, 8, 64, [3, 3], [1, 1], [1, 1], true);
        assert_eq!(direct_plan(&wide, 4, 1 << 24, 1 << 24, false), None);
    }

    #[test]
    fn col2im_is_the_adjoint_of_im2col() {
        // <im2col(x), c> == <x, col2im(c)> for every geometry.
        let mut rng = Rng::new(8);
        for g in cases() {
            let batch = 2;
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let c = random_vec(&mut rng, batch * g.positions() * g.patch(), -1.0, 1.0);
            let mut col = vec![0.0; c.len()];
            im2col(&g, &x, &mut col, batch);
            let mut back = vec![0.0; x.len()];
            col2im_accumulate(&g, &c, &mut back, batch);
            let (l, r) = (weighted_sum(&c, &col), weighted_sum(&x, &back));
            assert!((l - r).abs() < 1e-4, "{g:?}: {l} vs {r}");
        }
    }
}
