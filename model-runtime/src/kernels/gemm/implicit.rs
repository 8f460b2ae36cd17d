//! Implicit-GEMM kernels for direct convolution: products whose left operand is never stored but
//! gathered, row by row, from a zero-padded channels-last buffer. Row `i` of the gathered matrix
//! A is the window of output pixel `i`: for each tap `t` (a window position, at offset `taps[t]`
//! from the pixel's corner), `cin` contiguous channels. So A(i, t·cin + ci) =
//! `src[gather.base(i) + taps[t] + ci]`, and the im2col matrix is exactly A, without being written.
//!
//! - [`gather_gemm`]: C (m×n) = A·W + beta·C, W row-major (taps·cin)×n: a convolution's forward,
//!   or the input gradient of a stride-1 one (a convolution of the padded output gradient with
//!   the flipped, transposed kernel).
//! - [`gather_gemm_tn`]: dW ((taps·cin)×n) += Aᵀ·dZ: a convolution's weight gradient.
//!
//! Register tiles as in the GEMM's direct path (`driver.rs`), the same [`Simd`] implementations and
//! the same thread pool; W is packed into zero-padded column panels in the thread-local scratch.

// Kernels index small fixed-size tiles; ranges read clearer than iterator chains here.
#![allow(clippy::needless_range_loop)]

use super::driver::{self, store_tile, Epi, PAR_MIN_WORK};
use super::simd::{self, Simd};
use super::{num_threads, pool, scratch, tuned, Epilogue, Isa, Par};

/// The kernels' instruction set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kern {
    /// Plain arrays (see `simd::Portable`).
    Portable,
    /// AVX2+FMA.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512F.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Where the rows of a gathered matrix start in the source buffer: row `i` is output pixel `i` of
/// images of `rows × cols` output pixels, at `img` floats per image, `row` floats per output row and
/// `col` floats per output column (strides times the padded row length and channels).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gather {
    /// Output pixels per output row.
    pub cols: usize,
    /// Output rows per image.
    pub rows: usize,
    /// Floats from one image to the next.
    pub img: usize,
    /// Floats from one output row to the next.
    pub row: usize,
    /// Floats from one output pixel to the next along a row.
    pub col: usize,
}

impl Gather {
    /// Offset of the window corner of output pixel `i`.
    #[inline(always)]
    fn base(&self, i: usize) -> usize {
        let per = self.rows * self.cols;
        let (im, rest) = (i / per, i % per);
        im * self.img + rest / self.cols * self.row + rest % self.cols * self.col
    }

    /// Offset of the window corner of the first pixel of output row `s` (counted over images).
    #[inline(always)]
    fn seg_base(&self, s: usize) -> usize {
        s / self.rows * self.img + s % self.rows * self.row
    }

    /// An upper bound of `base(i)` over `i < m` (each term at its own maximum).
    fn max_base(&self, m: usize) -> usize {
        if m == 0 || self.rows == 0 || self.cols == 0 {
            return 0;
        }
        let per = self.rows * self.cols;
        (m - 1) / per * self.img + (m.min(per) - 1) / self.cols * self.row + (m.min(self.cols) - 1) * self.col
    }
}

/// Checks the slice lengths the raw-pointer kernels rely on; real asserts, not debug ones.
fn check(src: &[f32], g: &Gather, m: usize, taps: &[usize], cin: usize) {
    if m == 0 || taps.is_empty() || cin == 0 {
        return;
    }
    assert!(g.rows > 0 && g.cols > 0, "gather: empty image");
    let reach = g.max_base(m) + taps.iter().max().copied().unwrap_or(0) + cin;
    assert!(src.len() >= reach, "gather: source has {} values, the windows reach {}", src.len(), reach);
}

/// The kernels for a product with `n` output columns: the GEMM's choice for that width
/// (`cpu::Choice::for_n`), so AVX-512 only for wide products on a CPU whose 512-bit FMAs pay, or
/// when `MODELC_GEMM_ISA` forces it. On Zen 4 (double-pumped AVX-512) forcing it measured no faster
/// on M3's convolutions (an earlier sitting: neither 512-bit tiles nor larger 256-bit ones beat
/// 6×16; this one: see BENCHMARKS.md), which is what the probe-based choice keeps.
fn kern(n: usize) -> Kern {
    match tuned().choice.for_n(n) {
        Isa::Portable => Kern::Portable,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx2 => Kern::Avx2,
        #[cfg(target_arch = "x86_64")]
        Isa::Avx512 => Kern::Avx512,
    }
}

/// How many parts a product of `work` multiply-adds over `units` tiles is split into (as `sgemm`).
fn parts(work: usize, units: usize, par: Par) -> usize {
    driver::part_count(work, units, par.threads, par.min_work)
}

/// As many threads as [`num_threads`], parts of at least [`PAR_MIN_WORK`] multiply-adds.
fn default_par() -> Par {
    Par { threads: num_threads(), min_work: PAR_MIN_WORK }
}

/// C (m×n, row-major) = A·W + beta·C, with A gathered from `src` as described in the module docs
/// (`taps.len() · cin` columns) and W row-major (taps·cin)×n. With beta == 0, C's old contents are
/// ignored. Split across threads like [`super::sgemm`]; allocates nothing after the first call of
/// a size on a thread.
///
/// # Panics
/// When a slice is shorter than its matrix, or a window reaches past the end of `src`.
#[allow(clippy::too_many_arguments)]
pub fn gather_gemm(src: &[f32], g: &Gather, m: usize, taps: &[usize], cin: usize, w: &[f32], n: usize, beta: f32, c: &mut [f32]) {
    gather_gemm_on(kern(n), default_par(), src, g, m, taps, cin, w, n, beta, c, Epilogue::NONE);
}

/// C = epi(A·W + beta·C): [`gather_gemm`] with a bias and relu applied as each tile of C is stored
/// (a convolution's bias and activation without a pass of their own over its output).
///
/// # Panics
/// As [`gather_gemm`], and when the bias has fewer than `n` values.
#[allow(clippy::too_many_arguments)]
pub fn gather_gemm_fused(
    src: &[f32],
    g: &Gather,
    m: usize,
    taps: &[usize],
    cin: usize,
    w: &[f32],
    n: usize,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    gather_gemm_on(kern(n), default_par(), src, g, m, taps, cin, w, n, beta, c, epi);
}

/// The row tile of [`gather_gemm`] for `n` columns (must match the kernels `fwd_isa` runs): a
/// one-vector-wide tile for narrow outputs.
fn fwd_mr(isa: Kern, n: usize) -> usize {
    match isa {
        Kern::Portable => 4,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx2 if n <= 8 => 8,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx2 => 6,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx512 if n <= 16 => 8,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx512 => AVX512_MR,
    }
}

/// The width of [`gather_gemm`]'s W panels (must match the kernels `fwd_isa` runs).
fn fwd_nr(isa: Kern, n: usize) -> usize {
    match isa {
        #[cfg(target_arch = "x86_64")]
        Kern::Avx512 if n <= 16 => 16,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx512 => 32,
        _ => 16,
    }
}

/// Rows of the AVX-512 tiles, forward and weight gradient: 12 rows × 2 vectors are 24 of the 32
/// registers, as in the GEMM.
#[cfg(target_arch = "x86_64")]
const AVX512_MR: usize = 12;

#[allow(clippy::too_many_arguments)]
fn gather_gemm_on(
    isa: Kern,
    par: Par,
    src: &[f32],
    g: &Gather,
    m: usize,
    taps: &[usize],
    cin: usize,
    w: &[f32],
    n: usize,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    let k = taps.len() * cin;
    assert!(w.len() >= k * n, "gather_gemm: w has {} values, needs {}", w.len(), k * n);
    assert!(c.len() >= m * n, "gather_gemm: c has {} values, needs {}", c.len(), m * n);
    if let Some(bias) = epi.bias {
        assert!(bias.len() >= n, "gather_gemm: the bias has {} values, needs {}", bias.len(), n);
    }
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..m * n];
    if k == 0 {
        if beta == 0.0 {
            c.fill(0.0);
        } else {
            c.iter_mut().for_each(|v| *v *= beta);
        }
        let bias = epi.bias.unwrap_or(&[]);
        for row in c.chunks_exact_mut(n) {
            for (j, v) in row.iter_mut().enumerate() {
                *v += bias.get(j).copied().unwrap_or(0.0);
                if epi.relu {
                    *v = v.max(0.0);
                }
            }
        }
        return;
    }
    check(src, g, m, taps, cin);
    let mr = fwd_mr(isa, n);
    let units = m.div_ceil(mr);
    let parts = parts(m * k * n, units, par);
    let cp = c.as_mut_ptr() as usize;
    // Part `i`: the rows of whole tiles `units·i/parts .. units·(i+1)/parts`.
    let run = |i: usize| {
        let lo = (units * i / parts * mr).min(m);
        let hi = (units * (i + 1) / parts * mr).min(m);
        let panels = k * n.div_ceil(fwd_nr(isa, n)) * fwd_nr(isa, n);
        // SAFETY: `check` and the asserts above bound every address the kernels form from
        // (src, g, m, taps, cin), w (k×n) and c (m×n); parts write disjoint row bands of c, which is
        // uniquely borrowed, and `try_run` returns after every part; `isa` is supported.
        let tail = Epi::new(epi.bias.map_or(std::ptr::null(), <[f32]>::as_ptr), epi.relu);
        scratch::with(panels, |buf| unsafe {
            fwd_isa(isa, src.as_ptr(), g, lo, hi, taps, cin, w.as_ptr(), n, beta, cp as *mut f32, buf, tail)
        });
    };
    pool::run_parts(m * k * n, par.threads, parts, &run);
}

/// # Safety
/// As [`fwd`], and the CPU must support `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn fwd_isa(
    isa: Kern,
    src: *const f32,
    g: &Gather,
    lo: usize,
    hi: usize,
    taps: &[usize],
    cin: usize,
    w: *const f32,
    n: usize,
    beta: f32,
    c: *mut f32,
    buf: &mut [f32],
    tail: Epi,
) {
    // SAFETY: forwarded.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Kern::Avx2 => fwd_avx2(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail),
            #[cfg(target_arch = "x86_64")]
            Kern::Avx512 => fwd_avx512(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail),
            Kern::Portable => fwd::<simd::Portable, 4, 2>(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail),
        }
    }
}

/// The forward kernel compiled for AVX2+FMA: 8×8 tiles for narrow outputs, 6×16 otherwise.
/// Safety: as [`fwd`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn fwd_avx2(
    src: *const f32,
    g: &Gather,
    lo: usize,
    hi: usize,
    taps: &[usize],
    cin: usize,
    w: *const f32,
    n: usize,
    beta: f32,
    c: *mut f32,
    buf: &mut [f32],
    tail: Epi,
) {
    // SAFETY: forwarded; the tile shapes match `fwd_mr`.
    unsafe {
        if n <= 8 {
            fwd::<simd::Avx2, 8, 1>(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail)
        } else {
            fwd::<simd::Avx2, 6, 2>(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail)
        }
    }
}

/// The forward kernel compiled for AVX-512F: 8×16 tiles for outputs up to one vector wide, 12×32
/// otherwise. Safety: as [`fwd`], on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn fwd_avx512(
    src: *const f32,
    g: &Gather,
    lo: usize,
    hi: usize,
    taps: &[usize],
    cin: usize,
    w: *const f32,
    n: usize,
    beta: f32,
    c: *mut f32,
    buf: &mut [f32],
    tail: Epi,
) {
    // SAFETY: forwarded; the tile shapes match `fwd_mr` and `fwd_nr`.
    unsafe {
        if n <= 16 {
            fwd::<simd::Avx512, 8, 1>(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail)
        } else {
            fwd::<simd::Avx512, AVX512_MR, 2>(src, g, lo, hi, taps, cin, w, n, beta, c, buf, tail)
        }
    }
}

/// Rows `lo..hi` of C = tail(A·W + beta·C) in `MR`×`NV·LANES` register tiles, W packed into
/// zero-padded column panels in `buf` first; `tail` is the epilogue of column 0 (bias pointer or null,
/// relu).
///
/// # Safety
/// `src` must hold every gathered value of rows `lo..hi`, `w` (taps·cin)×n values, `c` rows
/// `lo..hi` of n values, writable and aliasing neither; `buf` at least taps·cin·⌈n/NR⌉·NR values.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn fwd<S: Simd, const MR: usize, const NV: usize>(
    src: *const f32,
    g: &Gather,
    lo: usize,
    hi: usize,
    taps: &[usize],
    cin: usize,
    w: *const f32,
    n: usize,
    beta: f32,
    c: *mut f32,
    buf: &mut [f32],
    tail: Epi,
) {
    let nr_full = NV * S::LANES;
    let k = taps.len() * cin;
    let np = n.div_ceil(nr_full);
    let panels = &mut buf[..np * k * nr_full];
    // SAFETY: the packing reads k×n values of w and writes np·k·NR values into `panels`; tiles
    // read rows below `hi` (clamped) of A at offsets checked by the caller and write the top-left
    // mr×nr of each tile inside rows lo..hi of C.
    unsafe {
        for jp in 0..np {
            let j0 = jp * nr_full;
            let nr = (n - j0).min(nr_full);
            for q in 0..k {
                let d = &mut panels[(jp * k + q) * nr_full..(jp * k + q + 1) * nr_full];
                std::ptr::copy_nonoverlapping(w.add(q * n + j0), d.as_mut_ptr(), nr);
                d[nr..].fill(0.0);
            }
        }
        let pp = panels.as_ptr();
        let mut i0 = lo;
        while i0 < hi {
            let mr = (hi - i0).min(MR);
            let rows: [*const f32; MR] = std::array::from_fn(|r| src.add(g.base(i0 + r.min(mr - 1))));
            for jp in 0..np {
                let j0 = jp * nr_full;
                let nr = (n - j0).min(nr_full);
                let mut acc = [[S::zero(); NV]; MR];
                let mut bp = pp.add(jp * k * nr_full);
                for &off in taps {
                    acc = fwd_tap::<S, MR, NV>(acc, &rows, off, cin, bp);
                    bp = bp.add(cin * nr_full);
                }
                store_tile::<S, MR, NV>(&acc, c.add(i0 * n + j0), n, mr, nr, 1.0, beta, tail.at_col(j0));
            }
            i0 += MR;
        }
    }
}

/// One tap's contribution to a forward tile: acc += A(rows, off..off+cin)·panel rows `bp`.
#[inline(always)]
unsafe fn fwd_tap<S: Simd, const MR: usize, const NV: usize>(
    mut acc: [[S::V; NV]; MR],
    rows: &[*const f32; MR],
    off: usize,
    cin: usize,
    bp: *const f32,
) -> [[S::V; NV]; MR] {
    // SAFETY: as `fwd`: the tap's cin values of every row and cin panel rows are readable.
    unsafe {
        let rs: [*const f32; MR] = std::array::from_fn(|r| rows[r].add(off));
        for ci in 0..cin {
            let b = bp.add(ci * NV * S::LANES);
            let mut bv = [S::zero(); NV];
            for v in 0..NV {
                bv[v] = S::load(b.add(v * S::LANES));
            }
            for r in 0..MR {
                let a = S::splat(*rs[r].add(ci));
                for v in 0..NV {
                    acc[r][v] = S::fma(a, bv[v], acc[r][v]);
                }
            }
        }
    }
    acc
}

/// dW ((taps·cin)×n, row-major) += Aᵀ·dZ, with A (m×(taps·cin)) gathered from `src` as described in
/// the module docs and dZ m×n row-major; `m` must be a whole number of output rows (`g.cols`).
/// Split across threads by bands of rows of dW.
///
/// # Panics
/// When a slice is shorter than its matrix, a window reaches past the end of `src`, or `m` is not
/// a multiple of `g.cols`.
#[allow(clippy::too_many_arguments)]
pub fn gather_gemm_tn(src: &[f32], g: &Gather, m: usize, taps: &[usize], cin: usize, dz: &[f32], n: usize, dw: &mut [f32]) {
    gather_gemm_tn_on(kern(n), default_par(), src, g, m, taps, cin, dz, n, dw);
}

/// The dW row tile of [`gather_gemm_tn`] (must match the kernels `tn_isa` runs).
fn tn_mr(isa: Kern) -> usize {
    match isa {
        Kern::Portable => 4,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx2 => 6,
        #[cfg(target_arch = "x86_64")]
        Kern::Avx512 => AVX512_MR,
    }
}

#[allow(clippy::too_many_arguments)]
fn gather_gemm_tn_on(
    isa: Kern,
    par: Par,
    src: &[f32],
    g: &Gather,
    m: usize,
    taps: &[usize],
    cin: usize,
    dz: &[f32],
    n: usize,
    dw: &mut [f32],
) {
    let k = taps.len() * cin;
    assert!(dz.len() >= m * n, "gather_gemm_tn: dz has {} values, needs {}", dz.len(), m * n);
    assert!(dw.len() >= k * n, "gather_gemm_tn: dw has {} values, needs {}", dw.len(), k * n);
    if m == 0 || n == 0 || k == 0 {
        return;
    }
    assert!(g.cols > 0 && m.is_multiple_of(g.cols), "gather_gemm_tn: {m} rows are not whole output rows of {}", g.cols);
    check(src, g, m, taps, cin);
    let mr = tn_mr(isa);
    let units = k.div_ceil(mr);
    let parts = parts(m * k * n, units, par);
    let wp = dw.as_mut_ptr() as usize;
    let run = |i: usize| {
        let lo = (units * i / parts * mr).min(k);
        let hi = (units * (i + 1) / parts * mr).min(k);
        // SAFETY: `check` and the asserts above bound every address read from src (rows < m),
        // dz (m×n) and written in dw (rows lo..hi < k of n values); parts write disjoint bands of
        // dw, which is uniquely borrowed; `try_run` returns after every part; `isa` is supported.
        unsafe { tn_isa(isa, src.as_ptr(), g, m / g.cols, taps, cin, dz.as_ptr(), n, wp as *mut f32, lo, hi) };
    };
    pool::run_parts(m * k * n, par.threads, parts, &run);
}

/// # Safety
/// As [`tn`], and the CPU must support `isa`.
#[allow(clippy::too_many_arguments)]
unsafe fn tn_isa(
    isa: Kern,
    src: *const f32,
    g: &Gather,
    segs: usize,
    taps: &[usize],
    cin: usize,
    dz: *const f32,
    n: usize,
    dw: *mut f32,
    lo: usize,
    hi: usize,
) {
    // SAFETY: forwarded.
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Kern::Avx2 => tn_avx2(src, g, segs, taps, cin, dz, n, dw, lo, hi),
            #[cfg(target_arch = "x86_64")]
            Kern::Avx512 => tn_avx512(src, g, segs, taps, cin, dz, n, dw, lo, hi),
            Kern::Portable => tn::<simd::Portable, 4, 2>(src, g, segs, taps, cin, dz, n, dw, lo, hi),
        }
    }
}

/// The weight-gradient kernel compiled for AVX2+FMA, 6×16 tiles. Safety: as [`tn`], on a CPU with
/// AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
#[allow(clippy::too_many_arguments)]
unsafe fn tn_avx2(
    src: *const f32,
    g: &Gather,
    segs: usize,
    taps: &[usize],
    cin: usize,
    dz: *const f32,
    n: usize,
    dw: *mut f32,
    lo: usize,
    hi: usize,
) {
    // SAFETY: forwarded; the tile shape matches `tn_mr`.
    unsafe { tn::<simd::Avx2, 6, 2>(src, g, segs, taps, cin, dz, n, dw, lo, hi) }
}

/// The weight-gradient kernel compiled for AVX-512F, 12×32 tiles. Safety: as [`tn`], on a CPU with
/// AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn tn_avx512(
    src: *const f32,
    g: &Gather,
    segs: usize,
    taps: &[usize],
    cin: usize,
    dz: *const f32,
    n: usize,
    dw: *mut f32,
    lo: usize,
    hi: usize,
) {
    // SAFETY: forwarded; the tile shape matches `tn_mr`.
    unsafe { tn::<simd::Avx512, AVX512_MR, 2>(src, g, segs, taps, cin, dz, n, dw, lo, hi) }
}

/// Floats of dZ per block of output rows: the block's dZ rows and source windows stay in L1 while
/// every tile of dW passes over them.
const TN_BLOCK_FLOATS: usize = 2048;

/// Rows `lo..hi` of dW += Aᵀ·dZ over `segs` output rows, block of output rows by block, in
/// `MR`×`NV·LANES` register tiles loaded from and added back into dW once per block.
///
/// # Safety
/// `src` must hold every gathered value of the `segs · g.cols` rows, `dz` that many rows of `n`
/// values, `dw` rows `lo..hi` of `n` values, writable and aliasing neither.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tn<S: Simd, const MR: usize, const NV: usize>(
    src: *const f32,
    g: &Gather,
    segs: usize,
    taps: &[usize],
    cin: usize,
    dz: *const f32,
    n: usize,
    dw: *mut f32,
    lo: usize,
    hi: usize,
) {
    let nr_full = NV * S::LANES;
    let block = (TN_BLOCK_FLOATS / (g.cols * n).max(1)).max(1);
    // SAFETY: rows of A below segs·cols at offsets the caller checked; columns of dZ below n
    // (masked); dW tiles inside rows lo..hi.
    unsafe {
        for s0 in (0..segs).step_by(block) {
            let s1 = (s0 + block).min(segs);
            for kk0 in (lo..hi).step_by(MR) {
                let mr = (hi - kk0).min(MR);
                let koff: [usize; MR] = std::array::from_fn(|r| {
                    let kk = kk0 + r.min(mr - 1);
                    taps[kk / cin] + kk % cin
                });
                for j0 in (0..n).step_by(nr_full) {
                    let nr = (n - j0).min(nr_full);
                    let acc = if nr == nr_full {
                        tn_tile::<S, MR, NV, true>(src, g, s0, s1, &koff, dz.add(j0), n, nr)
                    } else {
                        tn_tile::<S, MR, NV, false>(src, g, s0, s1, &koff, dz.add(j0), n, nr)
                    };
                    store_tile::<S, MR, NV>(&acc, dw.add(kk0 * n + j0), n, mr, nr, 1.0, 1.0, Epi::NONE);
                }
            }
        }
    }
}

/// One dW tile summed over output rows `s0..s1`: acc[r] = Σ_pixels A(pixel, koff[r])·dZ(pixel, cols),
/// `dz` pointing at the tile's first column; `FULL` says all `NV·LANES` columns exist.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn tn_tile<S: Simd, const MR: usize, const NV: usize, const FULL: bool>(
    src: *const f32,
    g: &Gather,
    s0: usize,
    s1: usize,
    koff: &[usize; MR],
    dz: *const f32,
    n: usize,
    nr: usize,
) -> [[S::V; NV]; MR] {
    let width: [usize; NV] = std::array::from_fn(|v| nr.saturating_sub(v * S::LANES).min(S::LANES));
    let mut acc = [[S::zero(); NV]; MR];
    // SAFETY: as `tn`.
    unsafe {
        for s in s0..s1 {
            let mut p = src.add(g.seg_base(s));
            let mut d = dz.add(s * g.cols * n);
            for _ in 0..g.cols {
                let mut bv = [S::zero(); NV];
                for v in 0..NV {
                    bv[v] = if FULL || width[v] == S::LANES {
                        S::load(d.add(v * S::LANES))
                    } else if width[v] > 0 {
                        S::load_n(d.add(v * S::LANES), width[v])
                    } else {
                        S::zero()
                    };
                }
                for r in 0..MR {
                    let a = S::splat(*p.add(koff[r]));
                    for v in 0..NV {
                        acc[r][v] = S::fma(a, bv[v], acc[r][v]);
                    }
                }
                p = p.add(g.col);
                d = d.add(n);
            }
        }
    }
    acc
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    /// The gathered matrix A (m × taps·cin), written out.
    fn gathered(src: &[f32], g: &Gather, m: usize, taps: &[usize], cin: usize) -> Vec<f32> {
        let mut a = Vec::with_capacity(m * taps.len() * cin);
        for i in 0..m {
            let per = g.rows * g.cols;
            let base = i / per * g.img + (i % per) / g.cols * g.row + (i % g.cols) * g.col;
            for &t in taps {
                for ci in 0..cin {
                    a.push(src[base + t + ci]);
                }
            }
        }
        a
    }

    /// Geometries: (gather, images, taps, cin, n): strided, overlapping, narrow and wide outputs.
    fn cases() -> Vec<(Gather, usize, Vec<usize>, usize, usize)> {
        vec![
            // M3's second convolution on a 6×5 output, padded 8×7×16, 3×3 taps, 32 outputs.
            (
                Gather { cols: 5, rows: 6, img: 8 * 7 * 16, row: 7 * 16, col: 16 },
                2,
                (0..9).map(|t| (t / 3 * 7 + t % 3) * 16).collect(),
                16,
                32,
            ),
            // Three channels, 16 outputs (M3's first convolution), 3 images.
            (Gather { cols: 4, rows: 3, img: 5 * 6 * 3, row: 6 * 3, col: 3 }, 3, (0..9).map(|t| (t / 3 * 6 + t % 3) * 3).collect(), 3, 16),
            // Stride 2 along both axes, 2×2 taps, 5 outputs (a one-vector tile, masked).
            (Gather { cols: 3, rows: 2, img: 4 * 7 * 2, row: 2 * 7 * 2, col: 2 * 2 }, 2, vec![0, 2, 7 * 2, 7 * 2 + 2], 2, 5),
            // Dilated taps, 19 outputs (two panels, the second partial), one image.
            (Gather { cols: 7, rows: 3, img: 7 * 11, row: 11, col: 1 }, 1, vec![0, 2, 4, 22, 24, 26, 44, 46, 48], 1, 19),
            // 1-wide output rows, 40 outputs.
            (Gather { cols: 1, rows: 9, img: 11 * 3 * 4, row: 3 * 4, col: 4 }, 2, vec![0, 4, 8, 12, 16, 20, 24, 28, 32], 4, 40),
        ]
    }

    /// Every kernel set this CPU runs.
    fn isas() -> Vec<Kern> {
        #[allow(unused_mut)]
        let mut v = vec![Kern::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Kern::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                v.push(Kern::Avx512);
            }
        }
        v
    }

    #[test]
    fn gather_gemm_matches_the_gathered_matrix_times_w() {
        let mut rng = Rng::new(21);
        for (g, images, taps, cin, n) in cases() {
            let m = images * g.rows * g.cols;
            let k = taps.len() * cin;
            let src = random(&mut rng, g.max_base(m) + taps.iter().max().unwrap() + cin);
            let w = random(&mut rng, k * n);
            let a = gathered(&src, &g, m, &taps, cin);
            let c0 = random(&mut rng, m * n);
            let bias = random(&mut rng, n);
            for beta in [0.0, 1.0, -0.5] {
                let want: Vec<f32> = (0..m * n)
                    .map(|ij| {
                        let (i, j) = (ij / n, ij % n);
                        let s: f64 = (0..k).map(|q| a[i * k + q] as f64 * w[q * n + j] as f64).sum();
                        (s + if beta == 0.0 { 0.0 } else { beta as f64 * c0[ij] as f64 }) as f32
                    })
                    .collect();
                // The epilogues: none, the bias, the bias then relu (gather_gemm_fused).
                let epilogues = [Epilogue::NONE, Epilogue { bias: Some(&bias), relu: false }, Epilogue { bias: Some(&bias), relu: true }];
                for epi in epilogues {
                    let want: Vec<f32> = want
                        .iter()
                        .enumerate()
                        .map(|(ij, &v)| {
                            let v = v + epi.bias.map_or(0.0, |b| b[ij % n]);
                            if epi.relu {
                                v.max(0.0)
                            } else {
                                v
                            }
                        })
                        .collect();
                    for isa in isas() {
                        for threads in [1, 2] {
                            let mut c = if beta == 0.0 { vec![f32::NAN; m * n] } else { c0.clone() };
                            c.push(7.0);
                            // Split every product that has two tiles, to test the bands.
                            gather_gemm_on(isa, Par { threads, min_work: 1 }, &src, &g, m, &taps, cin, &w, n, beta, &mut c, epi);
                            for (idx, (x, y)) in c.iter().zip(&want).enumerate() {
                                let tol = 1e-5 * (1.0 + y.abs()) * k as f32;
                                assert!((x - y).abs() <= tol, "{isa:?} {g:?} beta {beta} {epi:?} at {idx}: {x} vs {y}");
                            }
                            assert_eq!(c[m * n], 7.0, "wrote past m·n");
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn gather_gemm_tn_adds_the_gathered_transpose_times_dz() {
        let mut rng = Rng::new(22);
        for (g, images, taps, cin, n) in cases() {
            let m = images * g.rows * g.cols;
            let k = taps.len() * cin;
            let src = random(&mut rng, g.max_base(m) + taps.iter().max().unwrap() + cin);
            let dz = random(&mut rng, m * n);
            let a = gathered(&src, &g, m, &taps, cin);
            let dw0 = random(&mut rng, k * n);
            let want: Vec<f32> = (0..k * n)
                .map(|qj| {
                    let (q, j) = (qj / n, qj % n);
                    let s: f64 = (0..m).map(|i| a[i * k + q] as f64 * dz[i * n + j] as f64).sum();
                    (s + dw0[qj] as f64) as f32
                })
                .collect();
            for isa in isas() {
                for threads in [1, 2] {
                    let mut dw = dw0.clone();
                    dw.push(7.0);
                    gather_gemm_tn_on(isa, Par { threads, min_work: 1 }, &src, &g, m, &taps, cin, &dz, n, &mut dw);
                    for (idx, (x, y)) in dw.iter().zip(&want).enumerate() {
                        assert!((x - y).abs() <= 1e-5 * (1.0 + y.abs()) * m as f32, "{isa:?} {g:?} at {idx}: {x} vs {y}");
                    }
                    assert_eq!(dw[k * n], 7.0, "wrote past k·n");
                }
            }
        }
    }

    #[test]
    #[should_panic(expected = "windows reach")]
    fn gather_gemm_refuses_a_source_too_short_for_its_windows() {
        let g = Gather { cols: 2, rows: 2, img: 16, row: 4, col: 1 };
        let mut c = vec![0.0; 4];
        gather_gemm(&[0.0; 10], &g, 4, &[0, 5], 1, &[1.0, 1.0], 1, 0.0, &mut c);
    }
}
