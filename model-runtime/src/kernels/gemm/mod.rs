//! Single-precision GEMM on flat row-major slices, our own: transposes as strides, a direct
//! (unpacked) path for small and skinny products, a BLIS-style packed path for large ones, and a
//! dot-product path for batch-1 backward. The instruction set (AVX-512, AVX2+FMA or portable code),
//! per product width, and the block sizes are chosen at first use from the CPU's flags, caches and
//! a short FMA probe (`cpu`); packing scratch is thread-local and reused, so steady-state calls
//! allocate nothing. Large products are split into bands of rows or columns of C across a small persistent
//! thread pool ([`set_num_threads`], `MODELC_NUM_THREADS`); small ones stay on the calling thread.
//!
//! Layout: `cpu` (what the kernels are tuned to, and the rules), `simd` (one vector trait, one impl
//! per instruction set), `driver` (the algorithm,
//! generic over the trait, and how a product is split), `scratch` (the reusable buffer), `pool`
//! (the worker threads and the thread count), `implicit` (convolution products whose left operand
//! is gathered from a padded image instead of stored), `gemv` (one-row products without packing), `small` (few-row products on a B that stays in
//! cache, without packing);
//! this file checks arguments and dispatches.

mod bf16;
mod cpu;
mod driver;
mod gemv;
mod implicit;
mod pool;
mod prepack;
mod scratch;
mod simd;
mod small;

pub use bf16::{
    active as bf16_kernel, avx512_bf16_available, from_bf16, pays as bf16_pays, round_bf16, threshold_off as bf16_threshold_off, to_bf16,
    Bf16Kernel, Bf16Scope,
};
pub use gemv::{sgemv, sgemv_t};
pub use implicit::{gather_gemm, gather_gemm_fused, gather_gemm_tn, Gather};
pub use pool::{num_threads, set_num_threads, THREADS_ENV};
pub use prepack::{sgemm_prepacked, PackCache, PackedB};
pub use small::{pack_small, sgemm_small, sgemm_small_sum, SmallPart};

use driver::{Path, Problem, Tiles};
use std::sync::OnceLock;

/// C (m×n, row-major) = alpha·op(A)·op(B) + beta·C.
///
/// op(A) is m×k: `a` is stored m×k row-major, or k×m row-major when `trans_a`.
/// op(B) is k×n: `b` is stored k×n row-major, or n×k row-major when `trans_b`.
/// Transposes are expressed as strides, so they cost no copy. With `beta == 0` the old contents of
/// `c` are ignored entirely (even NaN). Elements of `c` past `m*n` are not touched. After the first
/// call of a given size on a thread (which may grow that thread's packing scratch), allocates
/// nothing, on this thread and on the pool's workers.
///
/// Products of at least 8 M multiply-adds (m·k·n) are split across up to
/// [`num_threads`] threads (one band of rows or columns of C per thread), unless recent splits did
/// not pay (the pool backs off, see `pool`); every element of C is computed by one thread, in the
/// order the unsplit product sums it, so the results are the single-threaded ones bit for bit. The instruction set depends on n
/// (see [`tuning_report`]).
///
/// # Panics
/// When a slice is shorter than its matrix (`a.len() < m*k`, `b.len() < k*n`, `c.len() < m*n`).
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn sgemm(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], trans_a: bool, b: &[f32], trans_b: bool, beta: f32, c: &mut [f32]) {
    sgemm_fused(m, k, n, alpha, a, trans_a, b, trans_b, beta, c, Epilogue::NONE);
}

/// A matrix inside a slice: element (i, j) of the `rows`×`cols` matrix is `data[i·rs + j·cs]`. A
/// row-major matrix is `rs = cols, cs = 1`, its transpose `rs = 1, cs = rows`; a block of columns of
/// a wider row-major matrix (one head of a `[t, heads·dim]` projection) keeps that matrix's row stride.
#[derive(Clone, Copy, Debug)]
pub struct View<'a> {
    /// The values the matrix lies in.
    pub data: &'a [f32],
    /// Rows of the matrix.
    pub rows: usize,
    /// Columns of the matrix.
    pub cols: usize,
    /// Distance between rows.
    pub rs: usize,
    /// Distance between columns.
    pub cs: usize,
}

impl<'a> View<'a> {
    /// The `rows`×`cols` row-major matrix at the start of `data`, or its transpose (`data` then holds
    /// `cols`×`rows` row-major) when `trans`.
    pub fn new(data: &'a [f32], rows: usize, cols: usize, trans: bool) -> View<'a> {
        if trans {
            View { data, rows, cols, rs: 1, cs: rows }
        } else {
            View { data, rows, cols, rs: cols, cs: 1 }
        }
    }

    /// Columns `c0..c0 + cols` of the `rows`×`width` row-major matrix at the start of `data`.
    pub fn columns(data: &'a [f32], rows: usize, width: usize, c0: usize, cols: usize) -> View<'a> {
        View { data: data.get(c0..).unwrap_or(&[]), rows, cols, rs: width, cs: 1 }
    }

    /// The transpose (no copy).
    pub fn t(self) -> View<'a> {
        View { data: self.data, rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs }
    }

    /// Whether every element lies inside `data`.
    fn fits(&self) -> bool {
        self.rows == 0 || self.cols == 0 || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// C = alpha·A·B + beta·C over [`View`]s: A is m×k, B k×n, and C(i, j) is `c[i·ldc + j]` (ldc ≥ n),
/// so C may be a block of columns of a wider matrix too. The products of attention heads, which are
/// column blocks of the projections, run through this without copying a head out. Always f32 (the
/// `mixed_bfloat16` policy applies to [`sgemm`] only); split across threads as [`sgemm`] is.
///
/// # Panics
/// When the inner sizes differ, `ldc < n`, or a matrix does not lie inside its slice.
pub fn sgemm_view(alpha: f32, a: View<'_>, b: View<'_>, beta: f32, c: &mut [f32], ldc: usize) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(k, b.rows, "sgemm_view: A is {m}×{k} but B is {}×{n}", b.rows);
    assert!(a.fits() && b.fits(), "sgemm_view: a matrix does not lie inside its slice");
    assert!(ldc >= n, "sgemm_view: ldc {ldc} < n {n}");
    if m == 0 || n == 0 {
        return;
    }
    assert!(c.len() >= (m - 1) * ldc + n, "sgemm_view: c has {} elements, needs {}", c.len(), (m - 1) * ldc + n);
    if k == 0 {
        for row in c.chunks_mut(ldc).take(m) {
            scale(beta, &mut row[..n]);
        }
        return;
    }
    let p = Problem {
        m,
        k,
        n,
        alpha,
        beta,
        a: a.data.as_ptr(),
        rsa: a.rs,
        csa: a.cs,
        b: b.data.as_ptr(),
        rsb: b.rs,
        csb: b.cs,
        c: c.as_mut_ptr(),
        ldc,
        bias: std::ptr::null(),
        relu: false,
    };
    let isa = tuned().choice.for_n(n);
    let tiles = isa.tiles();
    let threads = num_threads();
    let (split, parts) = driver::split_plan(&p, tiles, threads, driver::PAR_MIN_WORK);
    // SAFETY: as in `sgemm_tiled`: the asserts above keep every addressed element of A, B and C
    // inside its slice (`fits`, and C's last row ends within `c`), `c` is uniquely borrowed and the
    // parts' bands of C are disjoint; `isa` is a supported one (`tuned()`).
    if parts > 1 {
        unsafe { run_split(isa, tiles, threads, &p, split, parts) };
        return;
    }
    unsafe { run_one(isa, tiles, &p) };
}

/// What [`sgemm_fused`] does to each value of C as its tile leaves the registers: add `bias[j]` to
/// column j, then, with `relu`, take max(·, 0). This is how a dense layer's bias and activation cost
/// no pass of their own over its output.
#[derive(Clone, Copy, Debug, Default)]
pub struct Epilogue<'a> {
    /// n values added to the columns of C.
    pub bias: Option<&'a [f32]>,
    /// Whether max(·, 0) follows.
    pub relu: bool,
}

impl Epilogue<'_> {
    /// Plain GEMM.
    pub const NONE: Epilogue<'static> = Epilogue { bias: None, relu: false };
}

/// C = epi(alpha·op(A)·op(B) + beta·C): [`sgemm`] with a bias and relu applied as C is stored.
///
/// # Panics
/// As [`sgemm`], and when the bias has fewer than `n` values.
#[allow(clippy::too_many_arguments)]
#[inline]
pub fn sgemm_fused(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    // Hook of the `mixed_bfloat16` dtype policy (bf16.rs): the only change to this file's paths. It
    // is out of line, so that this entry stays small enough to inline into its callers (a dense
    // layer's backward at batch 1 makes eight tiny products a step, and each call layer costs).
    if bf16::active().is_some() {
        return sgemm_fused_policy(m, k, n, alpha, a, trans_a, b, trans_b, beta, c, epi);
    }
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    sgemm_on(tuned().choice.for_n(n), par, m, k, n, alpha, a, trans_a, b, trans_b, beta, c, epi);
}

/// [`sgemm_fused`] under a bf16 [`Bf16Scope`]: products too small to gain from bf16 stay f32.
#[cold]
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn sgemm_fused_policy(
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    if let Some(kernel) = bf16::active().filter(|_| bf16::pays(m, k, n)) {
        return bf16::gemm(kernel, par, bf16::Args { m, k, n, alpha, a, trans_a, b, trans_b, beta, epi }, c);
    }
    sgemm_on(tuned().choice.for_n(n), par, m, k, n, alpha, a, trans_a, b, trans_b, beta, c, epi);
}

/// [`sgemm`] in bf16 with `kernel`, whatever the size of the product and whatever this thread's
/// [`Bf16Scope`]: both operands rounded to bf16, the products summed in f32. The dtype policy's hook
/// in [`sgemm_fused`] sends only products large enough to gain here (see [`bf16_pays`]); this entry
/// point is for measuring that choice and for tests.
///
/// # Panics
/// As [`sgemm`].
#[allow(clippy::too_many_arguments)]
pub fn sgemm_bf16(
    kernel: Bf16Kernel,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
) {
    let kernel = Bf16Scope::usable(kernel);
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    bf16::gemm(kernel, par, bf16::Args { m, k, n, alpha, a, trans_a, b, trans_b, beta, epi: Epilogue::NONE }, c);
}

/// How far one [`sgemm`] call may be split.
#[derive(Clone, Copy, Debug)]
struct Par {
    /// At most this many parts (threads, the caller included).
    threads: usize,
    /// At least this many multiply-adds per part.
    min_work: usize,
}

impl Par {
    /// No splitting.
    #[cfg(test)]
    const SERIAL: Par = Par { threads: 1, min_work: usize::MAX };
}

/// Widest C that the narrow path takes: two AVX2 vectors.
const NARROW_MAX_N: usize = 16;
/// Most blocks the narrow path sums in registers.
const NARROW_MAX_BLOCKS: usize = 8;

/// C (m×n) = epi(Σᵢ Aᵢ·Bᵢ): `a[i]` is Aᵢ, m×`k[i]` row-major, and `b` is the Bᵢ stacked, (Σ kᵢ)×n
/// row-major. That is the product of the row-wise concatenation [A₀ A₁ ..] with `b`, without
/// building it (a dense layer on the parts of an elided concatenation; one block is a plain dense
/// layer).
///
/// A narrow C (n ≤ 16, two AVX2 vectors) with a B of at most 16 KB, which stays in L1 while it is
/// reread for every few rows, takes one pass: the accumulators start from the bias, run over every
/// block, and are stored once; nothing is packed, no scratch, no threads. For small dense layers
/// the fixed costs of the general path would dominate. Anything larger, or large enough to be split
/// across threads, runs one [`sgemm_fused`] per block, the first overwriting C, the last applying the
/// epilogue.
///
/// # Panics
/// When `a` and `k` differ in length, or a slice is shorter than its matrix.
#[inline]
pub fn sgemm_blocks(m: usize, n: usize, a: &[&[f32]], k: &[usize], b: &[f32], c: &mut [f32], epi: Epilogue<'_>) {
    // Hook of the `mixed_bfloat16` dtype policy (bf16.rs), out of line as in `sgemm_fused`.
    if bf16::active().is_some() {
        return sgemm_blocks_policy(m, n, a, k, b, c, epi);
    }
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    blocks_on(tuned().choice.for_n(n), par, m, n, a, k, b, c, epi);
}

/// [`sgemm_blocks`] under a bf16 [`Bf16Scope`], for products that gain from bf16 (the size of the
/// whole product, the blocks' k summed).
#[cold]
#[inline(never)]
fn sgemm_blocks_policy(m: usize, n: usize, a: &[&[f32]], k: &[usize], b: &[f32], c: &mut [f32], epi: Epilogue<'_>) {
    let par = Par { threads: num_threads(), min_work: driver::PAR_MIN_WORK };
    if let Some(kernel) = bf16::active().filter(|_| bf16::pays(m, k.iter().sum(), n)) {
        return bf16::blocks(kernel, par, m, n, a, k, b, c, epi);
    }
    blocks_on(tuned().choice.for_n(n), par, m, n, a, k, b, c, epi);
}

/// [`sgemm_blocks`] on a given instruction set, split at most as `par` allows.
#[allow(clippy::too_many_arguments)]
fn blocks_on(isa: Isa, par: Par, m: usize, n: usize, a: &[&[f32]], k: &[usize], b: &[f32], c: &mut [f32], epi: Epilogue<'_>) {
    assert_eq!(a.len(), k.len(), "sgemm_blocks: {} blocks of A but {} sizes", a.len(), k.len());
    assert!(c.len() >= m * n, "sgemm_blocks: c has {} elements, needs {}", c.len(), m * n);
    let k_total: usize = k.iter().sum();
    assert!(b.len() >= k_total * n, "sgemm_blocks: b has {} elements, needs {}", b.len(), k_total * n);
    if let Some(bias) = epi.bias {
        assert!(bias.len() >= n, "sgemm_blocks: bias has {} elements, needs {}", bias.len(), n);
    }
    if m == 0 || n == 0 {
        return;
    }
    // Narrow runs on the calling thread: a product large enough to split goes the general way. The
    // size is tested first, so that small products run the same instructions whatever the thread
    // count.
    let splits = m.saturating_mul(k_total).saturating_mul(n) >= par.min_work.saturating_mul(2) && par.threads > 1;
    let narrow = n <= NARROW_MAX_N && k_total.saturating_mul(n) <= 4096 && (1..=NARROW_MAX_BLOCKS).contains(&a.len()) && !splits;
    if !narrow {
        return blocks_general(isa, par, m, n, a, k, b, c, epi);
    }
    let mut raw = [driver::Block { a: std::ptr::null(), k: 0, b: std::ptr::null() }; NARROW_MAX_BLOCKS];
    let mut row0 = 0;
    for (slot, (&ai, &ki)) in raw.iter_mut().zip(a.iter().zip(k)) {
        assert!(ai.len() >= m * ki, "sgemm_blocks: a block has {} elements, needs {}", ai.len(), m * ki);
        // `wrapping_add`: row0 ≤ k_total, so the pointer stays inside (or one past) `b`.
        *slot = driver::Block { a: ai.as_ptr(), k: ki, b: b.as_ptr().wrapping_add(row0 * n) };
        row0 += ki;
    }
    let raw = &raw[..a.len()];
    let bias = epi.bias.map_or(std::ptr::null(), <[f32]>::as_ptr);
    let c = c.as_mut_ptr();
    // SAFETY: the asserts above bound every block of A, B, the bias and C; `c` is uniquely
    // borrowed, so it aliases no input; `isa` is supported by this CPU (`tuned()` and the tests pick
    // only detected ones).
    unsafe {
        match isa {
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => narrow_avx2(raw, m, n, bias, epi.relu, c),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => narrow_avx512(raw, m, n, bias, epi.relu, c),
            Isa::Portable => narrow_on::<simd::Portable>(raw, m, n, bias, epi.relu, c),
        }
    }
}

/// [`blocks_on`] off the narrow path: one [`sgemm_on`] per block, the first overwriting C, the last
/// applying the epilogue. Kept out of line, so that the narrow path's calls stay small.
#[inline(never)]
#[allow(clippy::too_many_arguments)]
fn blocks_general(isa: Isa, par: Par, m: usize, n: usize, a: &[&[f32]], k: &[usize], b: &[f32], c: &mut [f32], epi: Epilogue<'_>) {
    let mut row0 = 0;
    for (i, (&ai, &ki)) in a.iter().zip(k).enumerate() {
        let e = if i + 1 == a.len() { epi } else { Epilogue::NONE };
        let beta = if i == 0 { 0.0 } else { 1.0 };
        sgemm_on(isa, par, m, ki, n, 1.0, ai, false, &b[row0 * n..(row0 + ki) * n], false, beta, c, e);
        row0 += ki;
    }
    if a.is_empty() {
        sgemm_on(isa, par, m, 0, n, 1.0, &[], false, &[], false, 0.0, c, epi);
    }
}

/// [`driver::narrow`] or [`driver::narrow_dot`] with the tile that fits n and m, on `S` (8 lanes:
/// one vector for n ≤ 8, two above).
///
/// # Safety
/// As [`driver::narrow`] with n ≤ 16; the CPU must support `S`.
#[inline(always)]
unsafe fn narrow_on<S: simd::Simd>(blocks: &[driver::Block], m: usize, n: usize, bias: *const f32, relu: bool, c: *mut f32) {
    // SAFETY: forwarded from this function's contract; each tile covers n.
    unsafe {
        match n {
            1 => driver::narrow_dot::<S, 4>(blocks, m, bias, relu, c),
            _ if n == S::LANES => driver::narrow::<S, 8, 1, true>(blocks, m, n, bias, relu, c),
            _ if n < S::LANES => driver::narrow::<S, 8, 1, false>(blocks, m, n, bias, relu, c),
            // Two vectors: 6-row tiles, or 4-row ones when those pad fewer rows (m = 32: 32 rows
            // computed instead of 36).
            _ if m.div_ceil(4) * 4 < m.div_ceil(6) * 6 => match n == 2 * S::LANES {
                true => driver::narrow::<S, 4, 2, true>(blocks, m, n, bias, relu, c),
                false => driver::narrow::<S, 4, 2, false>(blocks, m, n, bias, relu, c),
            },
            _ if n == 2 * S::LANES => driver::narrow::<S, 6, 2, true>(blocks, m, n, bias, relu, c),
            _ => driver::narrow::<S, 6, 2, false>(blocks, m, n, bias, relu, c),
        }
    }
}

/// [`narrow_on`] compiled for AVX2+FMA. Safety: as [`narrow_on`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn narrow_avx2(blocks: &[driver::Block], m: usize, n: usize, bias: *const f32, relu: bool, c: *mut f32) {
    // SAFETY: forwarded from this function's contract.
    unsafe { narrow_on::<simd::Avx2>(blocks, m, n, bias, relu, c) }
}

/// [`driver::narrow`] compiled for AVX-512F: one 16-lane vector per row. Safety: as
/// [`driver::narrow`] with n ≤ 16, on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn narrow_avx512(blocks: &[driver::Block], m: usize, n: usize, bias: *const f32, relu: bool, c: *mut f32) {
    // SAFETY: forwarded from this function's contract; one 16-lane vector covers n ≤ 16.
    unsafe {
        if n == 16 {
            driver::narrow::<simd::Avx512, 8, 1, true>(blocks, m, n, bias, relu, c)
        } else {
            driver::narrow::<simd::Avx512, 8, 1, false>(blocks, m, n, bias, relu, c)
        }
    }
}

/// [`sgemm`] on a given instruction set, which must be supported (tests run every one there is),
/// with its tiles for this CPU's caches, split at most as `par` allows. Returns whether the product
/// was split across threads.
#[allow(clippy::too_many_arguments)]
fn sgemm_on(
    isa: Isa,
    par: Par,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) -> bool {
    sgemm_tiled(isa, isa.tiles(), par, m, k, n, alpha, a, trans_a, b, trans_b, beta, c, epi)
}

/// [`sgemm_on`] with given block sizes (`tiles` must have `isa`'s register tile; the tests pass
/// small blocks, so that every loop of the packed path turns more than once).
#[allow(clippy::too_many_arguments)]
fn sgemm_tiled(
    isa: Isa,
    tiles: Tiles,
    par: Par,
    m: usize,
    k: usize,
    n: usize,
    alpha: f32,
    a: &[f32],
    trans_a: bool,
    b: &[f32],
    trans_b: bool,
    beta: f32,
    c: &mut [f32],
    epi: Epilogue<'_>,
) -> bool {
    // These checks guard the raw-pointer kernels below, so they are real asserts, not debug ones.
    assert!(a.len() >= m * k, "sgemm: a has {} elements, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm: b has {} elements, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm: c has {} elements, needs {}", c.len(), m * n);
    let bias = epi.bias.map(|b| {
        assert!(b.len() >= n, "sgemm: bias has {} elements, needs {}", b.len(), n);
        &b[..n]
    });
    if m == 0 || n == 0 {
        return false;
    }
    let c = &mut c[..m * n];
    if k == 0 {
        scale(beta, c);
        for row in c.chunks_exact_mut(n) {
            if let Some(b) = bias {
                row.iter_mut().zip(b).for_each(|(v, &b)| *v += b);
            }
            if epi.relu {
                row.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
        return false;
    }
    // A one-row op(A) is the same k contiguous values whether or not it is transposed.
    let (rsa, csa) = if trans_a && m > 1 { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    let p = Problem {
        m,
        k,
        n,
        alpha,
        beta,
        a: a.as_ptr(),
        rsa,
        csa,
        b: b.as_ptr(),
        rsb,
        csb,
        c: c.as_mut_ptr(),
        ldc: n,
        bias: bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
        relu: epi.relu,
    };
    // An outer product too small to split (a dense layer's kernel gradient at batch 1) goes straight
    // to its own loop, with the same results as the direct path's. One row is the row path's
    // (`driver::Path::RowB`), which rounds `alpha·acc + beta·c` its own way.
    if k == 1 && m > 1 && csb == 1 && m.saturating_mul(n) < par.min_work {
        // SAFETY: as for `run_one` below; `isa` is supported.
        unsafe { isa.outer(&p) };
        return false;
    }
    let (split, parts) = driver::split_plan(&p, tiles, par.threads, par.min_work);
    // SAFETY (both calls of `run_one`): the asserts above guarantee every element addressed by
    // (m, k, n) and the strides lies inside `a`, `b` and `c`, and a part addresses a sub-band of
    // that; `c` is uniquely borrowed, so it aliases neither input, and the parts' bands of C are
    // disjoint; `split_or_serial` returns only after every part is done, while the slices are borrowed;
    // `isa` is supported (see `tuned()` and the tests, which only pass detected ones).
    if parts > 1 {
        return unsafe { run_split(isa, tiles, par.threads, &p, split, parts) };
    }
    unsafe { run_one(isa, tiles, &p) };
    false
}

/// Plans `p`, borrows this thread's scratch and runs it.
///
/// # Safety
/// As [`driver::run`], and the CPU must support `isa`, whose register tile `tiles` has.
unsafe fn run_one(isa: Isa, tiles: Tiles, p: &Problem) {
    let (path, len) = driver::plan(p, tiles);
    // SAFETY: forwarded from this function's contract; `buf` has the length `plan` asked for.
    scratch::with(len, |buf| unsafe { isa.run(p, path, tiles, buf) });
}

/// Runs the plain product `p` in `parts` bands of `split` (see [`split_on`]); returns whether it
/// was split.
///
/// # Safety
/// As [`driver::run`] for `p` (whose bands of C the parts are, disjoint), and the CPU must support
/// `isa`, whose register tile `tiles` has.
unsafe fn run_split(isa: Isa, tiles: Tiles, threads: usize, p: &Problem, split: driver::Split, parts: usize) -> bool {
    let (path, whole_len) = driver::plan(p, tiles);
    let need = |q: &Problem| match path {
        Path::Packed => packed_len_bound(q, tiles).max(whole_len),
        _ => whole_len,
    };
    // SAFETY: forwarded from this function's contract; `split_on` gives every run at least `need`
    // of its problem, which covers what `path` needs for it.
    unsafe { split_on(p, tiles, threads, split, parts, need, |q, len| run_on(isa, tiles, q, path, len)) }
}

/// Runs `p` in `parts` bands of `split` across the pool, or whole on this thread where the pool
/// decides so (`pool::split_or_serial`); returns whether it was split. The one split mechanism of
/// the plain and the pre-packed products.
///
/// `run(q, len)` runs `q`, the whole product or one of its parts, on the whole product's path with
/// `len` floats of scratch, and `need(q)` is the scratch that takes. Every part runs the whole
/// product's path: a band can be small enough for another one (direct instead of packed, which
/// sums k in one pass instead of kc-blocks), and whether the product is split at all is timed, so
/// the bits would depend on the machine's load.
///
/// Every run gets the largest need of all: this thread runs whichever parts it claims first, or the
/// whole product when the pool is busy (another thread's product), and a worker claims whichever
/// parts it gets, so each thread's scratch takes that size at its first call (this thread's now,
/// for the warm-up) and a later call never allocates, whoever claims what.
///
/// # Safety
/// `run(q, len)` must be sound for `p` and for each of its parts given `len >= need(q)`, and the
/// parts' bands of C are disjoint (as [`driver::part`] cuts them).
unsafe fn split_on(
    p: &Problem,
    tiles: Tiles,
    threads: usize,
    split: driver::Split,
    parts: usize,
    need: impl Fn(&Problem) -> usize,
    run: impl Fn(&Problem, usize) + Sync,
) -> bool {
    let len = (0..parts).map(|i| need(&driver::part(p, tiles, split, i, parts))).fold(need(p), usize::max);
    scratch::reserve(len);
    let work = p.m.saturating_mul(p.k).saturating_mul(p.n);
    let chunk = |i| run(&driver::part(p, tiles, split, i, parts), len);
    pool::split_or_serial(work, threads, parts, &chunk, || run(p, len))
}

/// Runs `p` on `path` with `len` floats of this thread's scratch.
///
/// # Safety
/// As [`driver::run`], the CPU must support `isa`, whose register tile `tiles` has, and `len` must
/// be at least what `path` needs for `p` (`driver::plan`'s length, or [`packed_len_bound`]).
unsafe fn run_on(isa: Isa, tiles: Tiles, p: &Problem, path: Path, len: usize) {
    // SAFETY: forwarded from this function's contract.
    scratch::with(len, |buf| unsafe { isa.run(p, path, tiles, buf) });
}

/// At least the scratch the packed path needs for `p`: its A block (mc×kc) and B block (kc×nc),
/// each side divided evenly into blocks of at most the tiles' sizes and rounded up to the register
/// tile, so no larger than the side itself or the tiles' block, rounded up.
fn packed_len_bound(p: &Problem, t: Tiles) -> usize {
    let kc = p.k.min(t.kc);
    let mc = (p.m.div_ceil(t.mr) * t.mr).min(t.mc.div_ceil(t.mr) * t.mr);
    let nc = (p.n.div_ceil(t.nr) * t.nr).min(t.nc.div_ceil(t.nr) * t.nr);
    mc * kc + kc * nc
}

/// c = beta·c, where beta == 0 writes zeros regardless of c's old contents.
fn scale(beta: f32, c: &mut [f32]) {
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.iter_mut().for_each(|v| *v *= beta);
    }
}

/// An instruction set the kernels are built for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Isa {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Environment variable naming the instruction set every product uses instead of the one chosen
/// for this CPU (see `cpu::choose`): `avx512`, `avx2` or `portable` (ignored when the CPU lacks it).
pub const ISA_ENV: &str = "MODELC_GEMM_ISA";

/// Environment variable overriding the packed path's block sizes on every instruction set, as
/// `KC,MC,NC` (e.g. `256,126,4096`; MC and NC are rounded up to whole register tiles), for
/// measuring other block sizes than the ones `cpu::tiles_for` derives from the caches. Ignored
/// unless it is three positive numbers.
pub const BLOCKS_ENV: &str = "MODELC_GEMM_BLOCKS";

/// What the kernels run with on this CPU: the choice and each instruction set's tiles.
#[derive(Clone, Debug, PartialEq)]
struct Tuned {
    /// What it was decided from (on the rank it was decided on, when `adopted`).
    desc: cpu::CpuDesc,
    /// This core's identity.
    core: cpu::Core,
    choice: cpu::Choice,
    /// Indexed by `Isa::code() - 1`.
    tiles: [Tiles; 3],
    /// Taken from rank 0 of a distributed job ([`adopt_choice`]) rather than decided here.
    adopted: bool,
}

/// Detected once, at the first product (or set by [`adopt_choice`] before it).
static TUNED: OnceLock<Tuned> = OnceLock::new();

/// This CPU's [`Tuned`], detected (and probed) on first use.
#[inline]
fn tuned() -> &'static Tuned {
    TUNED.get_or_init(detect)
}

/// [`tuned`] on its first call: reads `MODELC_GEMM_ISA`, the flags, the core's identity and caches,
/// probes the FMA widths only where neither the variable nor the identity decides, and decides.
#[cold]
fn detect() -> Tuned {
    let wanted = std::env::var(ISA_ENV).ok();
    let forced = Isa::available().into_iter().find(|i| wanted.as_deref() == Some(i.name()));
    let flags = detect_flags();
    let core = cpu::detect_core();
    let wide_fma = if flags.avx512f { cpu::wide_fma_from_cpuid(&core) } else { None };
    let wide_ratio = if forced.is_none() && flags.avx512f && wide_fma.is_none() { cpu::probe_wide_ratio() } else { None };
    let desc = cpu::CpuDesc { wide_fma, wide_ratio, ..flags };
    let choice = cpu::choose(&desc, forced);
    let blocks = std::env::var(BLOCKS_ENV).ok().and_then(|v| cpu::parse_blocks(&v));
    let tiles = [1, 2, 3].map(|code| {
        let (mr, nr) = Isa::from_code(code).micro();
        let t = cpu::tiles_for(mr, nr, choice.caches);
        blocks.map_or(t, |b| cpu::with_blocks(t, b))
    });
    Tuned { desc, core, choice, tiles, adopted: false }
}

/// Words of [`choice_words`]: the wide and narrow instruction sets, the caches, the measured ratio's
/// bits, what CPUID said, and each instruction set's kc, mc and nc.
#[cfg(any(feature = "mpi", test))]
pub(crate) const CHOICE_WORDS: usize = 16;

/// The best instruction set this process can run, as a number that orders them (for the minimum
/// over the ranks of a distributed job, [`choice_words`]'s `cap`).
#[cfg(any(feature = "mpi", test))]
pub(crate) fn best_isa_code() -> u64 {
    Isa::available().iter().map(|i| u64::from(i.code())).max().unwrap_or(1)
}

/// This process' choice (decided now unless a product or an adoption decided it before), with no
/// instruction set above `cap` (a [`best_isa_code`]), as words to broadcast to the other ranks of a
/// distributed job, which [`adopt_choice`] them.
#[cfg(any(feature = "mpi", test))]
pub(crate) fn choice_words(cap: u64) -> [u64; CHOICE_WORDS] {
    let t = TUNED.get().cloned().unwrap_or_else(detect);
    let capped = |isa: Isa| u64::from(isa.code()).min(cap).max(1);
    let c = t.desc.caches;
    let ratio = t.desc.wide_ratio.map_or(u64::MAX, |r| u64::from(r.to_bits()));
    let wide_fma = match t.desc.wide_fma {
        None => 0,
        Some(cpu::WideFma::Same) => 1,
        Some(cpu::WideFma::Double) => 2,
    };
    let mut w = [0u64; CHOICE_WORDS];
    w[..7].copy_from_slice(&[capped(t.choice.wide), capped(t.choice.narrow), c.l1d as u64, c.l2 as u64, c.l3 as u64, ratio, wide_fma]);
    for (i, tiles) in t.tiles.iter().enumerate() {
        w[7 + 3 * i..10 + 3 * i].copy_from_slice(&[tiles.kc as u64, tiles.mc as u64, tiles.nc as u64]);
    }
    w
}

/// Makes this process compute its products as [`choice_words`] on rank 0 said: the same instruction
/// sets and block sizes, so that every rank rounds alike (the instruction sets round differently,
/// and the block size kc orders the sums). An error when a product already ran here with another
/// choice, or when the words name an instruction set this CPU lacks (`cap` prevents it).
#[cfg(any(feature = "mpi", test))]
pub(crate) fn adopt_choice(words: &[u64; CHOICE_WORDS]) -> Result<(), String> {
    let isa = |code: u64| {
        let isa = Isa::from_code(u8::try_from(code).unwrap_or(0));
        match Isa::available().contains(&isa) && u64::from(isa.code()) == code {
            true => Ok(isa),
            false => Err(format!("rank 0 chose the GEMM instruction set {code}, which this CPU lacks")),
        }
    };
    let (wide, narrow) = (isa(words[0])?, isa(words[1])?);
    let size = |w: u64| usize::try_from(w).unwrap_or(usize::MAX);
    let caches = cpu::Caches { l1d: size(words[2]), l2: size(words[3]), l3: size(words[4]) };
    let own = cpu::CpuDesc { caches, ..detect_flags() };
    let wide_ratio = u32::try_from(words[5]).ok().map(f32::from_bits);
    let wide_fma = match words[6] {
        1 => Some(cpu::WideFma::Same),
        2 => Some(cpu::WideFma::Double),
        _ => None,
    };
    let tiles = [1u8, 2, 3].map(|code| {
        let (mr, nr) = Isa::from_code(code).micro();
        let b = &words[7 + 3 * usize::from(code - 1)..10 + 3 * usize::from(code - 1)];
        Tiles { mr, nr, kc: size(b[0]), mc: size(b[1]), nc: size(b[2]) }
    });
    let adopted = Tuned {
        desc: cpu::CpuDesc { wide_fma, wide_ratio, ..own },
        core: cpu::detect_core(),
        choice: cpu::Choice { wide, narrow, caches },
        tiles,
        adopted: true,
    };
    let set = TUNED.get_or_init(|| adopted.clone());
    if (set.choice, set.tiles) == (adopted.choice, adopted.tiles) {
        Ok(())
    } else {
        Err(format!(
            "a GEMM ran on this rank before MPI was set up and chose other kernels than rank 0 ({:?} against {:?}): create `Mpi` before any product runs",
            set.choice, adopted.choice
        ))
    }
}

/// This CPU's flags and caches, nothing measured.
fn detect_flags() -> cpu::CpuDesc {
    let available = Isa::available();
    #[cfg(target_arch = "x86_64")]
    let (avx2_fma, avx512f) = (available.contains(&Isa::Avx2), available.contains(&Isa::Avx512));
    #[cfg(not(target_arch = "x86_64"))]
    let (avx2_fma, avx512f) = (false, false);
    cpu::CpuDesc { avx2_fma, avx512f, caches: cpu::detect_caches(), wide_fma: None, wide_ratio: None }
}

/// One line saying what the GEMM chose on this CPU and from what: the instruction set for wide and
/// for thin products, the caches, the core's identity and what it says of the 512-bit FMAs (or the
/// measured 512-bit over 256-bit FMA throughput where it says nothing), and the packed path's block
/// sizes (for benchmark reports; `examples/peak` prints it). Under `mpirun`, every rank reports
/// rank 0's choice.
pub fn tuning_report() -> String {
    let t = tuned();
    let c = t.desc.caches;
    let basis = match (t.desc.wide_fma, t.desc.wide_ratio) {
        (Some(cpu::WideFma::Same), _) => "AVX-512 FMAs as fast as AVX2's per the CPU's identity".to_string(),
        (Some(cpu::WideFma::Double), _) => "AVX-512 FMAs twice AVX2's per the CPU's identity".to_string(),
        (None, Some(r)) => format!("AVX-512/AVX2 FMA throughput measured {r:.2}"),
        (None, None) => "AVX-512/AVX2 FMA throughput not measured".to_string(),
    };
    let wide = t.choice.wide.tiles();
    format!(
        "wide products (n ≥ {}): {}, thin ones: {}; L1d {} KiB, L2 {} KiB, L3 {} KiB; {:?} family {:#x} model {:#x} ({}); {}; {}×{} tile, blocks kc {} mc {} nc {}{}",
        cpu::WIDE_MIN_N,
        t.choice.wide.name(),
        t.choice.narrow.name(),
        c.l1d >> 10,
        c.l2 >> 10,
        c.l3 >> 10,
        t.core.vendor,
        t.core.family,
        t.core.model,
        t.core.brand,
        basis,
        wide.mr,
        wide.nr,
        wide.kc,
        wide.mc,
        wide.nc,
        if t.adopted { "; rank 0's choice" } else { "" }
    )
}

impl Isa {
    /// Every instruction set this CPU supports, worst to best.
    fn available() -> Vec<Isa> {
        #[allow(unused_mut)]
        let mut v = vec![Isa::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                v.push(Isa::Avx2);
            }
            if is_x86_feature_detected!("avx512f") {
                v.push(Isa::Avx512);
            }
        }
        v
    }

    /// The name `MODELC_GEMM_ISA` selects it by.
    fn name(self) -> &'static str {
        match self {
            Isa::Portable => "portable",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => "avx2",
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => "avx512",
        }
    }

    fn code(self) -> u8 {
        match self {
            Isa::Portable => 1,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => 2,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => 3,
        }
    }

    fn from_code(code: u8) -> Isa {
        match code {
            #[cfg(target_arch = "x86_64")]
            2 => Isa::Avx2,
            #[cfg(target_arch = "x86_64")]
            3 => Isa::Avx512,
            _ => Isa::Portable,
        }
    }

    /// Microkernel shape (rows, columns); must match the const parameters in [`Isa::run`].
    fn micro(self) -> (usize, usize) {
        match self {
            Isa::Portable => (4, 16),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => (6, 16),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512 => (AVX512_MR, 32),
        }
    }

    /// The microkernel shape and this CPU's block sizes for it.
    #[inline]
    fn tiles(self) -> Tiles {
        tuned().tiles[usize::from(self.code()) - 1]
    }

    /// [`driver::outer`] on this instruction set.
    ///
    /// # Safety
    /// As [`driver::outer`], and the CPU must support `self`.
    unsafe fn outer(self, p: &Problem) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match self {
                Isa::Portable => driver::outer::<simd::Portable>(p),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => outer_avx2(p),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => outer_avx512(p),
            }
        }
    }

    /// # Safety
    /// As [`driver::run`], and the CPU must support `self`.
    unsafe fn run(self, p: &Problem, path: Path, t: Tiles, buf: &mut [f32]) {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match self {
                Isa::Portable => driver::run::<simd::Portable, 4, 2>(p, path, t, buf),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx2 => run_avx2(p, path, t, buf),
                #[cfg(target_arch = "x86_64")]
                Isa::Avx512 => run_avx512(p, path, t, buf),
            }
        }
    }
}

/// [`driver::outer`] compiled for AVX2+FMA. Safety: as [`driver::outer`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn outer_avx2(p: &Problem) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::outer::<simd::Avx2>(p) }
}

/// [`driver::outer`] compiled for AVX-512F. Safety: as [`driver::outer`], on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn outer_avx512(p: &Problem) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::outer::<simd::Avx512>(p) }
}

/// The driver compiled for AVX2+FMA. Safety: as [`driver::run`], on a CPU with AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn run_avx2(p: &Problem, path: Path, t: Tiles, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::run::<simd::Avx2, 6, 2>(p, path, t, buf) }
}

/// Rows of the AVX-512 register tile: 12 rows × 2 vectors is 24 of the 32 registers for accumulators.
#[cfg(target_arch = "x86_64")]
const AVX512_MR: usize = 12;

/// The driver compiled for AVX-512F. Safety: as [`driver::run`], on a CPU with AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_avx512(p: &Problem, path: Path, t: Tiles, buf: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe { driver::run::<simd::Avx512, AVX512_MR, 2>(p, path, t, buf) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::Rng;

    /// Naive triple loop in f64 over the stored layouts.
    #[allow(clippy::too_many_arguments)]
    fn naive(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], ta: bool, b: &[f32], tb: bool, beta: f32, c: &[f32]) -> Vec<f32> {
        let mut out = vec![0.0f32; m * n];
        for i in 0..m {
            for j in 0..n {
                let mut s = 0.0f64;
                for p in 0..k {
                    let av = if ta { a[p * m + i] } else { a[i * k + p] };
                    let bv = if tb { b[j * k + p] } else { b[p * n + j] };
                    s += av as f64 * bv as f64;
                }
                let old = if beta == 0.0 { 0.0 } else { beta as f64 * c[i * n + j] as f64 };
                out[i * n + j] = (alpha as f64 * s + old) as f32;
            }
        }
        out
    }

    fn random(rng: &mut Rng, len: usize) -> Vec<f32> {
        (0..len).map(|_| rng.uniform(-1.0, 1.0)).collect()
    }

    #[test]
    fn sgemm_view_multiplies_column_blocks_and_transposes_into_a_column_block_of_c() {
        let mut rng = Rng::new(8);
        // A head of width `d` at column `c0` of [rows, width] row-major matrices, as attention uses them.
        for &(t, u, d, width, c0) in &[(5, 7, 3, 12, 6), (128, 128, 32, 128, 64), (33, 17, 16, 64, 16), (1, 9, 4, 8, 4)] {
            let (q, k) = (random(&mut rng, t * width), random(&mut rng, u * width));
            let c_old = random(&mut rng, t * width);
            for (alpha, beta) in [(1.0, 0.0), (0.5, 1.0)] {
                // S [t, u] = alpha · Q_h K_hᵀ
                let mut s = vec![f32::NAN; t * u];
                let (qh, kh) = (View::columns(&q, t, width, c0, d), View::columns(&k, u, width, c0, d));
                sgemm_view(alpha, qh, kh.t(), 0.0, &mut s, u);
                // O_h [t, d] (columns c0.. of a [t, width] C) = S · K_h + beta · O_h
                let mut o = c_old.clone();
                sgemm_view(1.0, View::new(&s, t, u, false), kh, beta, &mut o[c0..], width);
                for i in 0..t {
                    for j in 0..u {
                        let want: f64 = (0..d).map(|p| f64::from(q[i * width + c0 + p]) * f64::from(k[j * width + c0 + p])).sum::<f64>()
                            * f64::from(alpha);
                        assert!((f64::from(s[i * u + j]) - want).abs() < 1e-4, "S[{i}, {j}] = {} vs {want}", s[i * u + j]);
                    }
                    for j in 0..width {
                        let want = if (c0..c0 + d).contains(&j) {
                            let p = j - c0;
                            (0..u).map(|r| f64::from(s[i * u + r]) * f64::from(k[r * width + c0 + p])).sum::<f64>()
                                + f64::from(beta) * f64::from(c_old[i * width + j])
                        } else {
                            f64::from(c_old[i * width + j])
                        };
                        assert!((f64::from(o[i * width + j]) - want).abs() < 1e-3, "O[{i}, {j}] = {} vs {want}", o[i * width + j]);
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_matches_naive_for_all_transposes_shapes_and_betas() {
        let mut rng = Rng::new(7);
        let shapes = [(1, 1, 1), (1, 5, 7), (1, 19, 1), (1, 33, 17), (4, 1, 3), (5, 3, 1), (3, 4, 5), (17, 9, 13), (8, 32, 16), (2, 0, 3)];
        for &(m, k, n) in &shapes {
            for ta in [false, true] {
                for tb in [false, true] {
                    for (alpha, beta) in [(1.0, 0.0), (1.0, 1.0), (0.5, -2.0)] {
                        let a = random(&mut rng, m * k);
                        let b = random(&mut rng, k * n);
                        let c0 = random(&mut rng, m * n);
                        let want = naive(m, k, n, alpha, &a, ta, &b, tb, beta, &c0);
                        for isa in Isa::available() {
                            let mut c = c0.clone();
                            sgemm_on(isa, Par::SERIAL, m, k, n, alpha, &a, ta, &b, tb, beta, &mut c, Epilogue::NONE);
                            for (got, want) in c.iter().zip(&want) {
                                assert!(
                                    (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                    "{isa:?} m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_with_beta_zero_ignores_nan_in_c() {
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[(1, 4, 6), (1, 4, 6), (6, 5, 4), (2, 0, 2), (40, 20, 37), (100, 300, 70)] {
            for tb in [false, true] {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                for isa in Isa::available() {
                    let mut c = vec![f32::NAN; m * n];
                    sgemm_on(isa, Par::SERIAL, m, k, n, 1.0, &a, false, &b, tb, 0.0, &mut c, Epilogue::NONE);
                    assert!(c.iter().all(|v| v.is_finite()), "{isa:?} m={m} k={k} n={n}: {c:?}");
                }
            }
        }
    }

    #[test]
    fn sgemm_leaves_c_beyond_m_times_n_untouched() {
        let a = [1.0, 2.0];
        let b = [3.0, 4.0];
        let mut c = [0.0, 9.0];
        sgemm(1, 2, 1, 1.0, &a, false, &b, false, 0.0, &mut c);
        assert_eq!(c, [11.0, 9.0]);
    }

    /// Max |got - want| / (1 + |want|) against the f64 reference.
    fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
        got.iter().zip(want).map(|(g, w)| (g - w).abs() / (1.0 + w.abs())).fold(0.0, f32::max)
    }

    /// Runs one random case on every available instruction set; the tolerance grows with k
    /// because f32 sums of k products carry about sqrt(k) rounding steps.
    #[allow(clippy::too_many_arguments)]
    fn check_random(rng: &mut Rng, m: usize, k: usize, n: usize, ta: bool, tb: bool, alpha: f32, beta: f32) {
        let a = random(rng, m * k);
        let b = random(rng, k * n);
        // Sentinels past m*n must survive.
        let mut c0 = random(rng, m * n);
        c0.extend([f32::MAX, -7.0]);
        let want = naive(m, k, n, alpha, &a, ta, &b, tb, beta, &c0);
        let tol = 2e-6 * (k as f32 + 4.0);
        for isa in Isa::available() {
            let mut c = c0.clone();
            sgemm_on(isa, Par::SERIAL, m, k, n, alpha, &a, ta, &b, tb, beta, &mut c, Epilogue::NONE);
            let err = max_rel_err(&c[..m * n], &want);
            assert!(err <= tol, "{isa:?} m={m} k={k} n={n} ta={ta} tb={tb} alpha={alpha} beta={beta}: error {err}");
            assert_eq!(c[m * n..], [f32::MAX, -7.0], "{isa:?} m={m} k={k} n={n}: wrote past m*n");
        }
    }

    #[test]
    fn sgemm_matches_f64_reference_on_random_shapes_off_the_block_sizes() {
        let mut rng = Rng::new(11);
        let dims = [1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 47, 65, 97, 130];
        for case in 0..160 {
            let pick = |r: &mut Rng| dims[(r.uniform(0.0, dims.len() as f32) as usize).min(dims.len() - 1)];
            let (m, k, n) = (pick(&mut rng), pick(&mut rng), pick(&mut rng));
            let (ta, tb) = (case % 2 == 1, case / 2 % 2 == 1);
            let (alpha, beta) = [(1.0, 0.0), (1.0, 1.0), (-0.75, 0.5), (2.0, -1.0)][case / 4 % 4];
            check_random(&mut rng, m, k, n, ta, tb, alpha, beta);
        }
    }

    #[test]
    fn sgemm_matches_f64_reference_on_packed_sizes_and_large_k() {
        let mut rng = Rng::new(5);
        // Past the direct-path limits, several m-, k- and n-blocks, ragged edges everywhere.
        let shapes = [(33, 70, 45), (97, 300, 130), (200, 513, 77), (129, 1030, 33), (41, 9, 4200), (3, 2000, 5)];
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                check_random(&mut rng, m, k, n, ta, tb, 1.0, 1.0);
                check_random(&mut rng, m, k, n, ta, tb, 0.5, 0.0);
            }
        }
    }

    #[test]
    fn sgemm_matches_f64_reference_with_the_block_sizes_of_other_caches_on_every_isa() {
        let mut rng = Rng::new(17);
        // Packed-path shapes (more than 32 rows and 1 M multiply-adds, 4 M when k ≤ 256), ragged everywhere.
        let shapes = [(97, 300, 130), (200, 513, 77), (129, 1030, 33), (300, 70, 210)];
        let small = cpu::Caches { l1d: 16 << 10, l2: 256 << 10, l3: 256 << 10 };
        let sapphire_rapids = cpu::Caches { l1d: 48 << 10, l2: 2 << 20, l3: 105 << 20 };
        for isa in Isa::available() {
            let (mr, nr) = isa.micro();
            // Tiny blocks, so that every loop of the packed path turns several times, and the
            // blocks `cpu::tiles_for` gives for other machines' caches.
            let tilings = [
                Tiles { mr, nr, kc: 16, mc: 2 * mr, nc: nr },
                Tiles { mr, nr, kc: 33, mc: 3 * mr, nc: 2 * nr },
                cpu::tiles_for(mr, nr, small),
                cpu::tiles_for(mr, nr, sapphire_rapids),
                isa.tiles(),
            ];
            for tiles in tilings {
                for &(m, k, n) in &shapes {
                    for (ta, tb) in [(false, false), (true, true)] {
                        let a = random(&mut rng, m * k);
                        let b = random(&mut rng, k * n);
                        let mut c0 = random(&mut rng, m * n);
                        c0.push(-7.0);
                        let want = naive(m, k, n, 0.5, &a, ta, &b, tb, 1.0, &c0);
                        let mut c = c0.clone();
                        assert_eq!(driver::plan(&problem_of(m, k, n), tiles).0, Path::Packed, "{m}×{k}×{n}");
                        sgemm_tiled(isa, tiles, Par::SERIAL, m, k, n, 0.5, &a, ta, &b, tb, 1.0, &mut c, Epilogue::NONE);
                        let err = max_rel_err(&c[..m * n], &want);
                        assert!(err <= 2e-6 * (k as f32 + 4.0), "{isa:?} {tiles:?} m={m} k={k} n={n} ta={ta} tb={tb}: error {err}");
                        assert_eq!(c[m * n], -7.0, "wrote past m*n");
                    }
                }
            }
        }
    }

    /// An m×k×n product with no transposes and null pointers, for planning only.
    fn problem_of(m: usize, k: usize, n: usize) -> Problem {
        Problem {
            m,
            k,
            n,
            alpha: 1.0,
            beta: 0.0,
            a: std::ptr::null(),
            rsa: k,
            csa: 1,
            b: std::ptr::null(),
            rsb: n,
            csb: 1,
            c: std::ptr::null_mut(),
            ldc: n,
            bias: std::ptr::null(),
            relu: false,
        }
    }

    #[test]
    fn a_choice_sent_as_words_is_adopted_and_another_one_after_a_product_is_refused() {
        // What rank 0 sends and every rank adopts under MPI (`distributed::share_gemm_choice`).
        let words = choice_words(best_isa_code());
        assert_eq!(adopt_choice(&words), Ok(()));
        let t = tuned();
        assert_eq!(choice_words(best_isa_code()), words);
        assert_eq!((u64::from(t.choice.wide.code()), u64::from(t.choice.narrow.code())), (words[0], words[1]));
        // Other block sizes once the kernels are set (a product ran before `Mpi::init`): refused.
        let mut other = words;
        other[10] += 32;
        assert!(adopt_choice(&other).is_err_and(|e| e.contains("before any product")), "{:?}", adopt_choice(&other));
        // An instruction set this CPU lacks: refused, naming it.
        let mut lacking = words;
        lacking[0] = 9;
        assert!(adopt_choice(&lacking).is_err_and(|e| e.contains("lacks")));
        // The cap (the best instruction set every rank has) bounds both choices.
        let capped = choice_words(1);
        assert_eq!((capped[0], capped[1]), (1, 1));
        assert_eq!(capped[2..], words[2..]);
    }

    #[test]
    fn sgemm_and_sgemm_blocks_run_on_the_instruction_set_chosen_for_their_width() {
        let t = tuned();
        // Whatever this CPU is, thin products take the narrow choice and wide ones the wide one,
        // and both are instruction sets it has.
        let available = Isa::available();
        assert!(available.contains(&t.choice.wide) && available.contains(&t.choice.narrow), "{:?}", t.choice);
        assert_eq!(t.choice.for_n(8), t.choice.narrow);
        assert_eq!(t.choice.for_n(512), t.choice.wide);
        for isa in available {
            assert_eq!((isa.tiles().mr, isa.tiles().nr), isa.micro());
        }
        // Through the public entry points, on both sides of the width threshold.
        let mut rng = Rng::new(23);
        for (m, k, n) in [(32, 16, 8), (32, 16, cpu::WIDE_MIN_N - 1), (64, 100, cpu::WIDE_MIN_N), (40, 300, 200)] {
            let a = random(&mut rng, m * k);
            let b = random(&mut rng, k * n);
            let want = naive(m, k, n, 1.0, &a, false, &b, false, 0.0, &vec![0.0; m * n]);
            let mut c = vec![f32::NAN; m * n];
            sgemm(m, k, n, 1.0, &a, false, &b, false, 0.0, &mut c);
            assert!(max_rel_err(&c, &want) <= 2e-6 * (k as f32 + 4.0), "sgemm {m}×{k}×{n}");
            let mut c = vec![f32::NAN; m * n];
            sgemm_blocks(m, n, &[&a], &[k], &b, &mut c, Epilogue::NONE);
            assert!(max_rel_err(&c, &want) <= 2e-6 * (k as f32 + 4.0), "sgemm_blocks {m}×{k}×{n}");
        }
    }

    #[test]
    fn sgemm_with_beta_zero_ignores_nan_in_c_on_every_path() {
        let mut rng = Rng::new(9);
        for &(m, k, n) in &[(1, 40, 33), (8, 3, 17), (150, 300, 140)] {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                let want = naive(m, k, n, 1.0, &a, ta, &b, tb, 0.0, &vec![0.0; m * n]);
                for isa in Isa::available() {
                    let mut c = vec![f32::NAN; m * n];
                    sgemm_on(isa, Par::SERIAL, m, k, n, 1.0, &a, ta, &b, tb, 0.0, &mut c, Epilogue::NONE);
                    assert!(max_rel_err(&c, &want) < 1e-3, "{isa:?} m={m} k={k} n={n} ta={ta} tb={tb}");
                }
            }
        }
    }

    #[test]
    fn split_sgemm_matches_f64_reference_on_odd_shapes() {
        let mut rng = Rng::new(13);
        // Ragged bands: m and n off the tile sizes, splits by rows (m > n) and by columns,
        // batch-1 products (dot rows and direct), packed and direct parts.
        let shapes = [
            (1, 50, 37),
            (1, 300, 129),
            (7, 5, 3),
            (37, 9, 13),
            (13, 17, 41),
            (97, 70, 31),
            (31, 70, 97),
            (130, 300, 45),
            (45, 513, 130),
            (200, 33, 201),
        ];
        let mut split = 0;
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true), (true, true)] {
                for threads in [2, 3] {
                    for (alpha, beta) in [(1.0, 0.0), (0.5, -1.0)] {
                        let a = random(&mut rng, m * k);
                        let b = random(&mut rng, k * n);
                        let mut c0 = random(&mut rng, m * n);
                        c0.extend([f32::MAX, -7.0]);
                        let want = naive(m, k, n, alpha, &a, ta, &b, tb, beta, &c0);
                        let tol = 2e-6 * (k as f32 + 4.0);
                        for isa in Isa::available() {
                            let mut c = c0.clone();
                            let par = Par { threads, min_work: 1 };
                            split += usize::from(sgemm_on(isa, par, m, k, n, alpha, &a, ta, &b, tb, beta, &mut c, Epilogue::NONE));
                            let err = max_rel_err(&c[..m * n], &want);
                            assert!(err <= tol, "{isa:?} {threads} threads m={m} k={k} n={n} ta={ta} tb={tb}: error {err}");
                            assert_eq!(c[m * n..], [f32::MAX, -7.0], "{isa:?} m={m} k={k} n={n}: wrote past m*n");
                        }
                    }
                }
            }
        }
        // Other tests may hold the pool now and then (then the product runs unsplit), not always.
        assert!(split > 0, "no product was split");
    }

    #[test]
    fn a_split_product_gives_the_bits_of_the_unsplit_one() {
        // Whether a product is split is timed (`pool`): the parts must sum in the same order as the
        // whole, also where a band alone would take another path (64×600×128 in 3 column bands of
        // ≤ 48: direct, k in one pass, against packed, k in blocks of kc; 60×3000×50 in 2 row bands
        // of 30 rows).
        let mut rng = Rng::new(41);
        let mut split = 0;
        for &(m, k, n) in &[(64, 600, 128), (60, 3000, 50), (130, 300, 45), (256, 784, 512), (2, 700, 1000)] {
            for (ta, tb, alpha, beta) in [(false, false, 1.0, 0.0), (true, false, 0.5, 1.0), (false, true, 1.0, -1.0)] {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                let c0 = random(&mut rng, m * n);
                for isa in Isa::available() {
                    let mut whole = c0.clone();
                    sgemm_on(isa, Par::SERIAL, m, k, n, alpha, &a, ta, &b, tb, beta, &mut whole, Epilogue::NONE);
                    for threads in [2, 3, 4] {
                        // The pool runs a product unsplit now and then (calibration, another test's
                        // product): try until it splits.
                        for _ in 0..40 {
                            let mut c = c0.clone();
                            let par = Par { threads, min_work: 1 };
                            if sgemm_on(isa, par, m, k, n, alpha, &a, ta, &b, tb, beta, &mut c, Epilogue::NONE) {
                                let differ = c.iter().zip(&whole).filter(|(x, y)| x.to_bits() != y.to_bits()).count();
                                assert_eq!(differ, 0, "{isa:?} {m}×{k}×{n} ta={ta} tb={tb} in {threads} parts");
                                split += 1;
                                break;
                            }
                        }
                    }
                }
            }
        }
        assert!(split > 0, "no product was split");
    }

    #[test]
    fn outer_products_give_the_direct_paths_bits() {
        // k = 1 with B's row contiguous takes `driver::outer`; the general path, run on the same
        // problem, must give the same bits (a dense layer's kernel gradient at batch 1, with and
        // without A transposed, any width, every epilogue).
        let mut rng = Rng::new(17);
        for &(m, n) in &[(8, 16), (16, 8), (5, 13), (1, 7), (37, 3), (12, 33), (16, 1)] {
            for ta in [false, true] {
                for (alpha, beta, relu, with_bias) in
                    [(1.0, 0.0, false, false), (1.0, 1.0, false, false), (0.5, 0.3, true, true), (1.0, 0.0, true, true)]
                {
                    let a = random(&mut rng, m);
                    let b = random(&mut rng, n);
                    let bias = random(&mut rng, n);
                    let c0 = random(&mut rng, m * n);
                    let epi = Epilogue { bias: with_bias.then_some(&bias[..]), relu };
                    for isa in Isa::available() {
                        let mut fast = c0.clone();
                        sgemm_on(isa, Par::SERIAL, m, 1, n, alpha, &a, ta, &b, false, beta, &mut fast, epi);
                        let mut general = c0.clone();
                        let p = Problem {
                            alpha,
                            beta,
                            a: a.as_ptr(),
                            rsa: 1,
                            csa: if ta && m > 1 { m } else { 1 },
                            b: b.as_ptr(),
                            c: general.as_mut_ptr(),
                            bias: epi.bias.map_or(std::ptr::null(), <[f32]>::as_ptr),
                            relu,
                            ..problem_of(m, 1, n)
                        };
                        // SAFETY: the problem addresses m×1 of `a`, 1×n of `b`, n of `bias` and m×n of
                        // `general`, all inside; `isa` is available.
                        unsafe { run_one(isa, isa.tiles(), &p) };
                        let same = fast.iter().zip(&general).all(|(x, y)| x.to_bits() == y.to_bits());
                        assert!(same, "{isa:?} m={m} n={n} ta={ta} alpha={alpha} beta={beta} relu={relu} bias={with_bias}");
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_fused_adds_the_bias_and_applies_relu_on_every_path_isa_and_split() {
        let mut rng = Rng::new(11);
        // Dot rows (m = 1, B transposed), direct with B in place (m < MR), direct panels (one
        // vector wide and wider), packed with several k-blocks (the epilogue only on the last).
        let shapes = [(1, 50, 37), (1, 9, 5), (3, 7, 20), (7, 5, 3), (37, 9, 13), (32, 16, 8), (130, 300, 45), (200, 600, 70)];
        for &(m, k, n) in &shapes {
            for (ta, tb) in [(false, false), (true, false), (false, true)] {
                for (beta, relu, with_bias) in [(0.0, true, true), (1.0, true, true), (0.0, false, true), (0.5, true, false)] {
                    let a = random(&mut rng, m * k);
                    let b = random(&mut rng, k * n);
                    let bias = random(&mut rng, n);
                    let mut c0 = random(&mut rng, m * n);
                    c0.push(-7.0);
                    let mut want = naive(m, k, n, 1.0, &a, ta, &b, tb, beta, &c0);
                    for (i, v) in want.iter_mut().enumerate() {
                        if with_bias {
                            *v += bias[i % n];
                        }
                        if relu {
                            *v = v.max(0.0);
                        }
                    }
                    assert!(want.contains(&0.0) || !relu, "the case exercises relu");
                    let epi = Epilogue { bias: with_bias.then_some(&bias[..]), relu };
                    let tol = 2e-6 * (k as f32 + 4.0);
                    for isa in Isa::available() {
                        for par in [Par::SERIAL, Par { threads: 2, min_work: 1 }] {
                            let mut c = c0.clone();
                            sgemm_on(isa, par, m, k, n, 1.0, &a, ta, &b, tb, beta, &mut c, epi);
                            let err = max_rel_err(&c[..m * n], &want);
                            assert!(err <= tol, "{isa:?} {par:?} m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: error {err}");
                            assert_eq!(c[m * n], -7.0, "wrote past m*n");
                        }
                    }
                }
            }
        }
        // k == 0: C = epi(beta·C).
        let mut c = vec![1.0, -3.0];
        sgemm_fused(1, 0, 2, 1.0, &[], false, &[], false, 1.0, &mut c, Epilogue { bias: Some(&[0.5, 1.0]), relu: true });
        assert_eq!(c, [1.5, 0.0]);
    }

    #[test]
    fn sgemm_blocks_matches_the_product_of_the_concatenated_blocks_on_every_path_and_isa() {
        let mut rng = Rng::new(12);
        // (m, n, block widths): narrow (one vector, two in 4- and 6-row tiles, full or ragged, n = 1,
        // 8 blocks, an empty block) and not (too wide, too many blocks, B too large, no blocks at all).
        let cases: [(usize, usize, &[usize]); 13] = [
            (32, 16, &[8]),
            (8, 12, &[5]),
            (6, 16, &[7]),
            (32, 8, &[16]),
            (33, 13, &[3, 5]),
            (7, 1, &[8, 8]),
            (5, 9, &[1, 2, 3, 4, 5, 6, 7, 8]),
            (9, 4, &[3, 0, 2]),
            (1, 16, &[40]),
            (20, 17, &[4, 4]),
            (6, 3, &[1; 9]),
            (40, 16, &[300]),
            (3, 5, &[]),
        ];
        for &(m, n, ks) in &cases {
            let k: usize = ks.iter().sum();
            let a: Vec<Vec<f32>> = ks.iter().map(|&ki| random(&mut rng, m * ki)).collect();
            let whole: Vec<f32> =
                (0..m).flat_map(|r| a.iter().zip(ks).flat_map(move |(ai, &ki)| ai[r * ki..(r + 1) * ki].to_vec())).collect();
            let b = random(&mut rng, k * n);
            let bias = random(&mut rng, n);
            for (relu, with_bias) in [(true, true), (false, false), (false, true)] {
                let mut want = naive(m, k, n, 1.0, &whole, false, &b, false, 0.0, &vec![0.0; m * n]);
                for (i, v) in want.iter_mut().enumerate() {
                    *v += if with_bias { bias[i % n] } else { 0.0 };
                    *v = if relu { v.max(0.0) } else { *v };
                }
                let epi = Epilogue { bias: with_bias.then_some(&bias[..]), relu };
                let views: Vec<&[f32]> = a.iter().map(Vec::as_slice).collect();
                for (isa, split) in Isa::available().into_iter().flat_map(|i| [(i, false), (i, true)]) {
                    let mut c = vec![f32::NAN; m * n + 1];
                    c[m * n] = -7.0;
                    // Serial, and split across 2 threads whenever the product allows (the general path).
                    let par = if split { Par { threads: 2, min_work: 1 } } else { Par::SERIAL };
                    blocks_on(isa, par, m, n, &views, ks, &b, &mut c, epi);
                    assert!(c.iter().all(|v| v.is_finite()), "{isa:?} m={m} n={n} ks={ks:?}: C not fully written");
                    let err = max_rel_err(&c[..m * n], &want);
                    assert!(err <= 2e-6 * (k as f32 + 4.0), "{isa:?} split={split} m={m} n={n} ks={ks:?} relu={relu}: error {err}");
                    assert_eq!(c[m * n], -7.0, "wrote past m*n");
                }
            }
        }
    }

    #[test]
    fn split_plan_cuts_the_larger_operand_only_above_the_threshold() {
        let t = Tiles { mr: 6, nr: 16, kc: 256, mc: 96, nc: 4096 };
        let p = |m, k, n| Problem {
            m,
            k,
            n,
            alpha: 1.0,
            beta: 0.0,
            a: std::ptr::null(),
            rsa: k,
            csa: 1,
            b: std::ptr::null(),
            rsb: n,
            csb: 1,
            c: std::ptr::null_mut(),
            ldc: n,
            bias: std::ptr::null(),
            relu: false,
        };
        let min = driver::PAR_MIN_WORK;
        assert_eq!(driver::split_plan(&p(256, 784, 512), t, 2, min), (driver::Split::Cols, 4));
        assert_eq!(driver::split_plan(&p(784, 256, 512), t, 2, min), (driver::Split::Rows, 4));
        assert_eq!(driver::split_plan(&p(256, 784, 512), t, 1, min).1, 1);
        assert_eq!(driver::split_plan(&p(32, 64, 128), t, 2, min).1, 1);
        assert_eq!(driver::split_plan(&p(256, 128, 128), t, 2, min).1, 1);
        assert_eq!(driver::split_plan(&p(32, 512, 512), t, 2, min), (driver::Split::Cols, 2));
        // Never more parts than tiles.
        assert_eq!(driver::split_plan(&p(4, 100_000, 16), t, 4, 1).1, 1);
        // The parts are disjoint and cover C.
        for (split, len) in [(driver::Split::Rows, 101), (driver::Split::Cols, 101)] {
            let q = p(len, 3, len);
            let mut covered = 0;
            for i in 0..3 {
                let part = driver::part(&q, t, split, i, 3);
                let (lo, size) = match split {
                    driver::Split::Rows => ((part.c as usize - q.c as usize) / 4 / len, part.m),
                    driver::Split::Cols => ((part.c as usize - q.c as usize) / 4, part.n),
                };
                assert_eq!(lo, covered, "{split:?} part {i}");
                covered += size;
            }
            assert_eq!(covered, len);
        }
    }

    #[test]
    fn plan_picks_direct_for_small_and_packed_for_large_products() {
        let p = |m, k, n, csb| Problem {
            m,
            k,
            n,
            alpha: 1.0,
            beta: 0.0,
            a: std::ptr::null(),
            rsa: k,
            csa: 1,
            b: std::ptr::null(),
            rsb: 1,
            csb,
            c: std::ptr::null_mut(),
            ldc: n,
            bias: std::ptr::null(),
            relu: false,
        };
        let t = Tiles { mr: 6, nr: 16, kc: 256, mc: 96, nc: 4096 };
        assert_eq!(driver::plan(&p(32, 8, 16, 1), t), (Path::Direct, 8 * (16 + 16)));
        assert_eq!(driver::plan(&p(3, 8, 16, 1), t), (Path::Direct, 0));
        assert_eq!(driver::plan(&p(32, 8, 16, 8), t), (Path::Direct, 8 * (16 + 16)));
        assert_eq!(driver::plan(&p(1, 784, 512, 784), t).0, Path::DotRows);
        assert_eq!(driver::plan(&p(1, 784, 512, 1), t), (Path::RowB, 0));
        assert_eq!(driver::plan(&p(256, 784, 512, 1), t).0, Path::Packed);
        // A short op(A) stays direct up to 4 M multiply-adds (a transformer's products at batch 1).
        assert_eq!(driver::plan(&p(128, 256, 128, 1), t).0, Path::Direct);
        assert_eq!(driver::plan(&p(128, 128, 256, 1), t).0, Path::Direct);
        assert_eq!(driver::plan(&p(128, 257, 128, 1), t).0, Path::Packed);
        assert_eq!(driver::plan(&p(4096, 128, 128, 1), t).0, Path::Packed);
    }
}
