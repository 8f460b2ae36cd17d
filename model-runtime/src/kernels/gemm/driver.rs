//! The GEMM algorithm, generic over [`Simd`]: a [`Problem`] (raw strided matrices) and a scratch
//! slice in, C updated in place. Three paths, chosen by [`plan`]:
//!
//! - **direct**: register tiles read op(A) where it lies and B from one packed k×NR column panel
//!   at a time (or, for fewer than MR rows and contiguous B rows, B in place). No A packing and no
//!   k-blocking, so it wins for the small and skinny products of small models and for batch 1.
//! - **packed** (BLIS-style): op(A) blocks and B panels are packed into scratch so the
//!   microkernel streams contiguous memory; for large products.
//! - **dot rows**: batch-1 with B transposed, where each output is a dot of two contiguous rows.
//!
//! Every kernel is `#[inline(always)]` so it is compiled inside the per-ISA `#[target_feature]`
//! entry points in `mod.rs`, at that vector width.

// Kernels index small fixed-size tiles; ranges read clearer than iterator chains here.
#![allow(clippy::needless_range_loop)]

use super::simd::Simd;

/// Below this many multiply-adds (m·k·n) the direct path is used even for a tall A.
const DIRECT_MAX_WORK: usize = 64 * 128 * 128;
/// Up to this many multiply-adds the direct path is used for a short op(A) (k ≤ [`DIRECT_SHORT_K`]):
/// its 6-row tiles and the k×NR panel of B stay in L1, and A, read in place, is reread from L2 once
/// per panel where the packed path would read its packed copy as often, after packing it. A
/// transformer's per-token products at batch 1 (128×128×128, 128×128×256, 128×256×128, M8 of
/// BENCHMARKS.md) took 3–4% less time this way than packed.
const DIRECT_MAX_WORK_SHORT_K: usize = 128 * 256 * 128;
/// Largest k of the short products of [`DIRECT_MAX_WORK_SHORT_K`].
const DIRECT_SHORT_K: usize = 256;
/// Up to this many rows of op(A) the direct path is used whatever the size (B read in place
/// is streamed once per row tile, which is no worse than packing it).
const DIRECT_MAX_ROWS: usize = 32;

/// C (m×n, row-major, row stride `ldc` ≥ n) = epilogue(alpha·op(A)·op(B) + beta·C), with op(A)(i, p)
/// at `a + i·rsa + p·csa`, op(B)(p, j) at `b + p·rsb + j·csb` and C(i, j) at `c + i·ldc + j`. The
/// epilogue adds `bias[j]` to column j (when `bias` is not null) and then, with `relu`, takes
/// max(·, 0), in registers as each tile is stored. A band of rows or columns of a larger problem is
/// again a `Problem` (see `split`), which is how the work is shared between threads.
#[derive(Clone, Copy)]
pub(super) struct Problem {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub alpha: f32,
    pub beta: f32,
    pub a: *const f32,
    pub rsa: usize,
    pub csa: usize,
    pub b: *const f32,
    pub rsb: usize,
    pub csb: usize,
    pub c: *mut f32,
    pub ldc: usize,
    /// n values added to the columns of C, or null.
    pub bias: *const f32,
    /// Whether the stored values go through max(·, 0).
    pub relu: bool,
}

/// The epilogue of one tile: the bias of its first column (or null) and relu.
#[derive(Clone, Copy)]
pub(super) struct Epi {
    bias: *const f32,
    relu: bool,
}

impl Epi {
    /// No epilogue (a k-block that is not the last).
    pub(super) const NONE: Epi = Epi { bias: std::ptr::null(), relu: false };

    /// The epilogue adding `bias` (n values from column 0, or null for none), then relu if `relu`.
    pub(super) fn new(bias: *const f32, relu: bool) -> Epi {
        Epi { bias, relu }
    }

    /// This epilogue for the tile starting at column `j0` (of a C whose column 0 it was made for).
    pub(super) fn at_col(self, j0: usize) -> Epi {
        Epi { bias: if self.bias.is_null() { self.bias } else { self.bias.wrapping_add(j0) }, relu: self.relu }
    }

    /// `p`'s epilogue for the tile starting at column `j0`.
    fn at(p: &Problem, j0: usize) -> Epi {
        Epi { bias: if p.bias.is_null() { p.bias } else { p.bias.wrapping_add(j0) }, relu: p.relu }
    }
}

// SAFETY: a `Problem` is shared only between the parts of one split (`part`), which read A and B
// and write disjoint bands of C, while the caller that owns the borrowed slices waits for all of
// every one of them (`pool::try_run`).
unsafe impl Sync for Problem {}

/// Which algorithm runs, decided before scratch is borrowed so its size is known.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Path {
    /// Register tiles over A in place and B packed one column panel at a time.
    Direct,
    /// Pack A blocks and B panels, then run the microkernel over them.
    Packed,
    /// m == 1 with B stored n×k and A's row contiguous: one dot product per output.
    DotRows,
    /// m == 1 with B row-major: C's row accumulates B's rows, in B's memory order.
    RowB,
}

/// Tile and block sizes of one instruction set's kernels (the block sizes come from the caches:
/// `cpu::tiles_for`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Tiles {
    /// Rows of the packed microkernel.
    pub mr: usize,
    /// Columns of the packed microkernel (vectors × lanes).
    pub nr: usize,
    /// Upper bound on the k-block: a packed B micro-panel (kc×nr) stays in L1 while an A
    /// micro-panel streams past it.
    pub kc: usize,
    /// Upper bound on the m-block (a multiple of `mr`): a packed A block (mc×kc) stays in L2.
    pub mc: usize,
    /// Upper bound on the n-block (a multiple of `nr`): a packed B block (kc×nc) stays in L3.
    pub nc: usize,
}

/// The path for `p` and the scratch it needs (in `f32`s).
pub(super) fn plan(p: &Problem, t: Tiles) -> (Path, usize) {
    // Dot rows loads vectors of op(A)'s row, so it needs them contiguous (a one-row band of a
    // transposed A is not).
    if p.m == 1 && p.csb != 1 && p.csa == 1 {
        return (Path::DotRows, 0);
    }
    if p.m == 1 && p.csb == 1 {
        return (Path::RowB, 0);
    }
    let work = p.m.saturating_mul(p.k).saturating_mul(p.n);
    if p.m <= DIRECT_MAX_ROWS || work <= DIRECT_MAX_WORK || (p.k <= DIRECT_SHORT_K && work <= DIRECT_MAX_WORK_SHORT_K) {
        // Room for a group of panels of `direct_panels` (its width rounded up to whole panels).
        let scratch = if p.m < t.mr && p.csb == 1 { 0 } else { p.k * (p.n.min(DIRECT_GROUP_COLS) + t.nr) };
        return (Path::Direct, scratch);
    }
    let b = Blocks::new(p, t);
    (Path::Packed, b.mc * b.kc + b.kc * b.nc)
}

/// Which side of C the threads share out: bands of rows or bands of columns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Split {
    /// Each part is a band of rows of C and of op(A); every part reads all of op(B).
    Rows,
    /// Each part is a band of columns of C and of op(B); every part reads all of op(A).
    Cols,
}

/// Below this many multiply-adds per part a split does not pay. Measured on 2 Zen 4 cores shared
/// with other processes (see BENCHMARKS.md): with the second core free, 2 threads gain 1.3× even
/// at 0.3 M multiply-adds and 1.4–2× from 2 M up; with it busy, splits of 2–5 M lose up to 1.5×
/// (most likely a worker descheduled in the middle of its part, holding the caller up), while
/// splits of 8 M and more (M4 at batch 32, convolutions at batch 32) still break even or gain.
/// So only products of at least 2 parts of 4 M (8 M multiply-adds, about 0.2 ms on one core) are
/// split.
pub(super) const PAR_MIN_WORK: usize = 1 << 22;

/// Chunks per thread: more than one, so a thread that starts late (or is descheduled) leaves
/// its share to the others; few, because each chunk packs its uncut operand again.
pub(super) const CHUNKS_PER_THREAD: usize = 2;

/// How to share `p` between up to `threads` threads: the split and the number of parts (chunks
/// handed out to the threads; 1 when the product is too small to be worth splitting), each part
/// getting at least `min_work` multiply-adds and at least one tile.
///
/// Each part packs the operand it does not cut on its own, so the split cuts the larger of op(A)
/// (m×k) and op(B) (k×n): rows when m > n, columns otherwise.
pub(super) fn split_plan(p: &Problem, t: Tiles, threads: usize, min_work: usize) -> (Split, usize) {
    let split = if p.m > p.n { Split::Rows } else { Split::Cols };
    if threads <= 1 {
        return (split, 1);
    }
    let work = p.m.saturating_mul(p.k).saturating_mul(p.n);
    let units = match split {
        Split::Rows => p.m.div_ceil(t.mr),
        Split::Cols => p.n.div_ceil(t.nr),
    };
    (split, part_count(work, units, threads, min_work))
}

/// How many parts a product of `work` multiply-adds, cut into at most `units` tiles, is shared into
/// among `threads` threads: a few chunks per thread, each of at least `min_work`, 1 when too small.
pub(super) fn part_count(work: usize, units: usize, threads: usize, min_work: usize) -> usize {
    if threads <= 1 {
        return 1;
    }
    (threads * CHUNKS_PER_THREAD).min(work / min_work.max(1)).min(units).max(1)
}

/// Part `i` of `parts` of `p` cut along `split`: a band of whole tiles (`t.mr` rows or `t.nr`
/// columns) as even as the tiles allow. The parts are disjoint and cover C.
pub(super) fn part(p: &Problem, t: Tiles, split: Split, i: usize, parts: usize) -> Problem {
    let (len, unit) = match split {
        Split::Rows => (p.m, t.mr),
        Split::Cols => (p.n, t.nr),
    };
    let units = len.div_ceil(unit);
    let lo = (units * i / parts * unit).min(len);
    let hi = (units * (i + 1) / parts * unit).min(len);
    let mut q = *p;
    // `wrapping_add`: the offsets stay inside the matrices (lo < len), but this function has no
    // unsafe contract of its own.
    match split {
        Split::Rows => {
            q.m = hi - lo;
            q.a = p.a.wrapping_add(lo * p.rsa);
            q.c = p.c.wrapping_add(lo * p.ldc);
        }
        Split::Cols => {
            q.n = hi - lo;
            q.b = p.b.wrapping_add(lo * p.csb);
            q.c = p.c.wrapping_add(lo);
            q.bias = if p.bias.is_null() { p.bias } else { p.bias.wrapping_add(lo) };
        }
    }
    q
}

/// Runs `p` along `path`. Tiles are given as const parameters: `MR` rows by `NV` vectors for
/// both the packed microkernel and the direct kernel; `t` (the same tile) gives the block sizes.
///
/// # Safety
/// Every element addressed by `p` (m×k of A, k×n of B, m×n of C) must be valid, C writable and
/// aliasing neither input; `scratch` must hold at least what [`plan`] returned for this `path` and
/// `t`; the CPU must support `S`.
#[inline(always)]
pub(super) unsafe fn run<S: Simd, const MR: usize, const NV: usize>(p: &Problem, path: Path, t: Tiles, scratch: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match path {
            Path::DotRows => dot_rows::<S, 4>(p),
            Path::RowB => row_b::<S, 8>(p),
            Path::Direct if p.m < MR && p.csb == 1 => direct::<S, 1, 4>(p),
            // A panel no wider than one vector: a one-vector-wide tile instead of padding to NR.
            Path::Direct if p.n <= S::LANES => direct_panels::<S, 8, 1>(p, scratch),
            // Row counts that MR does not divide but 4 does (32, a common batch, against 6 rows):
            // 4-row tiles, no rows computed in vain.
            Path::Direct if MR == 6 && !p.m.is_multiple_of(MR) && p.m.is_multiple_of(4) => direct_panels::<S, 4, NV>(p, scratch),
            Path::Direct => direct_panels::<S, MR, NV>(p, scratch),
            Path::Packed => packed::<S, MR, NV>(p, t, scratch),
        }
    }
}

/// C = epi(alpha·acc + beta·C) for the top-left `mr`×`nr` of one tile at `c` (row stride `ldc`);
/// with beta == 0 the old C is not read.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn store_tile<S: Simd, const MR: usize, const NV: usize>(
    acc: &[[S::V; NV]; MR],
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
    alpha: f32,
    beta: f32,
    epi: Epi,
) {
    // SAFETY: the caller guarantees the mr×nr tile at `c` is writable and, when `epi.bias` is not
    // null, `nr` readable bias values; lanes past `nr` are masked off by `load_n`/`store_n`.
    unsafe {
        // A whole tile that only stores or accumulates (the packed path's k-blocks before the last,
        // and products without epilogue): straight-line code with `acc` in registers. The general
        // loop below kept `acc` on the stack and took 7% of a 256×784×512 product on Zen 3.
        if mr == MR && nr == NV * S::LANES && alpha == 1.0 && epi.bias.is_null() && !epi.relu {
            if beta == 0.0 {
                for r in 0..MR {
                    for v in 0..NV {
                        S::store(c.add(r * ldc + v * S::LANES), acc[r][v]);
                    }
                }
                return;
            }
            if beta == 1.0 {
                // fma(1, old, x) rounds old + x once, as this does.
                for r in 0..MR {
                    for v in 0..NV {
                        let dst = c.add(r * ldc + v * S::LANES);
                        S::store(dst, S::add(S::load(dst), acc[r][v]));
                    }
                }
                return;
            }
        }
        let va = S::splat(alpha);
        let vb = S::splat(beta);
        let zero = S::zero();
        let width = |v: usize| nr.saturating_sub(v * S::LANES).min(S::LANES);
        let bias: [S::V; NV] = std::array::from_fn(|v| match width(v) {
            _ if epi.bias.is_null() => zero,
            w if w == S::LANES => S::load(epi.bias.add(v * S::LANES)),
            0 => zero,
            w => S::load_n(epi.bias.add(v * S::LANES), w),
        });
        // Constant trip counts with early exits, so the loops unroll and `acc` stays in registers.
        for r in 0..MR {
            if r >= mr {
                break;
            }
            let row = c.add(r * ldc);
            for v in 0..NV {
                let w = width(v);
                if w == 0 {
                    break;
                }
                let mut x = if alpha == 1.0 { acc[r][v] } else { S::mul(va, acc[r][v]) };
                let dst = row.add(v * S::LANES);
                if beta != 0.0 {
                    let old = if w == S::LANES { S::load(dst) } else { S::load_n(dst, w) };
                    x = S::fma(vb, old, x);
                }
                if !epi.bias.is_null() {
                    x = S::add(x, bias[v]);
                }
                if epi.relu {
                    x = S::max(x, zero);
                }
                if w == S::LANES {
                    S::store(dst, x);
                } else {
                    S::store_n(dst, w, x);
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Direct path.

/// Columns of B that [`direct_panels`] packs at once (whole panels, at most this many values wide
/// and at least one panel).
pub(super) const DIRECT_GROUP_COLS: usize = 128;

/// Register tiles of `MR`×`NV·LANES` over op(A) in place, against B packed a group of k×NR
/// column panels at a time into `scratch` (k values by the group's width, [`DIRECT_GROUP_COLS`]
/// or less, rounded up to whole panels): the panels are contiguous and zero-padded, so the kernel
/// needs no masked loads and no power-of-two row stride evicts them from L1, and packing several
/// at once reads B a few whole rows at a time (see [`pack_b`]).
#[inline(always)]
unsafe fn direct_panels<S: Simd, const MR: usize, const NV: usize>(p: &Problem, scratch: &mut [f32]) {
    let nr_full = NV * S::LANES;
    let group = (DIRECT_GROUP_COLS / nr_full).max(1) * nr_full;
    let mut q = *p;
    q.rsb = nr_full;
    q.csb = 1;
    // SAFETY: tiles stay inside m×n; `pack_b` writes k·(group width rounded up to NR) values,
    // which `plan` reserved, and the kernel reads exactly those.
    unsafe {
        for g0 in (0..p.n).step_by(group) {
            let gn = (p.n - g0).min(group);
            pack_b::<S, NV>(p, 0, p.k, g0, gn, scratch);
            for jr in (0..gn).step_by(nr_full) {
                let (j0, nr) = (g0 + jr, (gn - jr).min(nr_full));
                q.b = scratch.as_ptr().add(jr * p.k);
                for i0 in (0..p.m).step_by(MR) {
                    let mr = (p.m - i0).min(MR);
                    let acc = direct_tile::<S, MR, NV, true>(&q, p.a.add(i0 * p.rsa), mr, q.b, nr_full);
                    store_tile::<S, MR, NV>(&acc, p.c.add(i0 * p.ldc + j0), p.ldc, mr, nr, p.alpha, p.beta, Epi::at(p, j0));
                }
            }
        }
    }
}

/// Register tiles of `MR`×`NV·LANES` over op(A) and B in place; B must have `csb == 1`.
#[inline(always)]
unsafe fn direct<S: Simd, const MR: usize, const NV: usize>(p: &Problem) {
    let nr_full = NV * S::LANES;
    // SAFETY: tiles stay inside m×n; the kernel reads rows < m of A and columns < n of B.
    unsafe {
        // Column panels outer, so one B panel (k×NR) stays in cache across all row tiles.
        for j0 in (0..p.n).step_by(nr_full) {
            let nr = (p.n - j0).min(nr_full);
            for i0 in (0..p.m).step_by(MR) {
                let mr = (p.m - i0).min(MR);
                let a = p.a.add(i0 * p.rsa);
                let b = p.b.add(j0);
                let acc = if nr == nr_full {
                    direct_tile::<S, MR, NV, true>(p, a, mr, b, nr)
                } else {
                    direct_tile::<S, MR, NV, false>(p, a, mr, b, nr)
                };
                store_tile::<S, MR, NV>(&acc, p.c.add(i0 * p.ldc + j0), p.ldc, mr, nr, p.alpha, p.beta, Epi::at(p, j0));
            }
        }
    }
}

/// acc = op(A)[rows, :]·B[:, cols] for one tile: `a` points at its first row, `b` at its first
/// column. Rows past `mr` repeat row `mr - 1` (computed and discarded) so the tile shape is
/// fixed; `FULL` says all `NV·LANES` columns are inside B.
#[inline(always)]
unsafe fn direct_tile<S: Simd, const MR: usize, const NV: usize, const FULL: bool>(
    p: &Problem,
    a: *const f32,
    mr: usize,
    b: *const f32,
    nr: usize,
) -> [[S::V; NV]; MR] {
    // SAFETY: rows are clamped below `mr`, columns masked below `nr`, and p < k.
    unsafe {
        let rows: [*const f32; MR] = std::array::from_fn(|r| a.add(r.min(mr - 1) * p.rsa));
        let width: [usize; NV] = std::array::from_fn(|v| nr.saturating_sub(v * S::LANES).min(S::LANES));
        let mut acc = [[S::zero(); NV]; MR];
        for q in 0..p.k {
            let brow = b.add(q * p.rsb);
            let mut bv = [S::zero(); NV];
            for v in 0..NV {
                bv[v] = if FULL || width[v] == S::LANES {
                    S::load(brow.add(v * S::LANES))
                } else if width[v] > 0 {
                    S::load_n(brow.add(v * S::LANES), width[v])
                } else {
                    S::zero()
                };
            }
            for r in 0..MR {
                let av = S::splat(*rows[r].add(q * p.csa));
                for v in 0..NV {
                    acc[r][v] = S::fma(av, bv[v], acc[r][v]);
                }
            }
        }
        acc
    }
}

// ---------------------------------------------------------------------------------------------
// Outer products.

/// C = epi(alpha·op(A)·B + beta·C) for k == 1 with B's one row contiguous (`csb == 1`): row i of C is
/// op(A)'s value in row i times B's row, a vector at a time. The product and the store are those of
/// [`direct_tile`] and [`store_tile`] (an accumulator starting at zero, one multiply-add), so the
/// results are the same bits as the direct path's, without its packing, scratch and tiling: a dense
/// layer's kernel gradient at batch 1 (`xᵀ·dz`) is such a product, several of them each step.
///
/// # Safety
/// As [`run`], with `p.k == 1` and `p.csb == 1`; the CPU must support `S`.
#[inline(always)]
pub(super) unsafe fn outer<S: Simd>(p: &Problem) {
    debug_assert!(p.k == 1 && p.csb == 1);
    // SAFETY: rows < m of op(A)'s one column, columns < n of B's one row (the last vector masked), and
    // the m×n of C are inside the operands the caller vouches for.
    unsafe {
        for j0 in (0..p.n).step_by(S::LANES) {
            let w = (p.n - j0).min(S::LANES);
            let b = if w == S::LANES { S::load(p.b.add(j0)) } else { S::load_n(p.b.add(j0), w) };
            let epi = Epi::at(p, j0);
            for i in 0..p.m {
                let acc = S::fma(S::splat(*p.a.add(i * p.rsa)), b, S::zero());
                store_tile::<S, 1, 1>(&[[acc]], p.c.add(i * p.ldc + j0), p.ldc, 1, w, p.alpha, p.beta, epi);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Narrow path: C = epi(Σᵢ Aᵢ·Bᵢ) for n ≤ NV·LANES, every operand row-major and contiguous.

/// One row block of a narrow product: A is m×k (row stride k), B is k×n (row stride n).
#[derive(Clone, Copy)]
pub(super) struct Block {
    pub a: *const f32,
    pub k: usize,
    pub b: *const f32,
}

/// C (m×n, row stride n) = relu?(Σ over `blocks` of A·B + bias) for (NV − 1)·LANES < n ≤ NV·LANES
/// (`FULL`: n = NV·LANES): `MR` rows at a time, the accumulators starting from the bias and running
/// over every block's k before one store, B read in place (a few KB, it stays in L1). Small dense
/// layers and the parts of an elided concatenation take this path: no packing, no scratch, no C
/// reread.
///
/// # Safety
/// Every block's m×k of A and k×n of B must be readable, C's m×n writable and aliasing neither,
/// `bias` null or n readable values, n in the range above; the CPU must support `S`.
#[inline(always)]
pub(super) unsafe fn narrow<S: Simd, const MR: usize, const NV: usize, const FULL: bool>(
    blocks: &[Block],
    m: usize,
    n: usize,
    bias: *const f32,
    relu: bool,
    c: *mut f32,
) {
    // SAFETY: rows are clamped below m, the last vector is masked to n, q < k of each block.
    unsafe {
        // Every vector but the last is full; the last holds `tail` values.
        let tail = n - (NV - 1) * S::LANES;
        let load = |p: *const f32, v: usize| {
            if FULL || v + 1 < NV {
                S::load(p.add(v * S::LANES))
            } else {
                S::load_n(p.add(v * S::LANES), tail)
            }
        };
        let init: [S::V; NV] = std::array::from_fn(|v| if bias.is_null() { S::zero() } else { load(bias, v) });
        for i0 in (0..m).step_by(MR) {
            let mr = (m - i0).min(MR);
            let mut acc = [init; MR];
            for blk in blocks {
                let rows: [*const f32; MR] = std::array::from_fn(|r| blk.a.add((i0 + r.min(mr - 1)) * blk.k));
                for q in 0..blk.k {
                    let brow = blk.b.add(q * n);
                    let bv: [S::V; NV] = std::array::from_fn(|v| load(brow, v));
                    for r in 0..MR {
                        let av = S::splat(*rows[r].add(q));
                        for v in 0..NV {
                            acc[r][v] = S::fma(av, bv[v], acc[r][v]);
                        }
                    }
                }
            }
            // The bias is already in the accumulators.
            store_tile::<S, MR, NV>(&acc, c.add(i0 * n), n, mr, n, 1.0, 0.0, Epi { bias: std::ptr::null(), relu });
        }
    }
}

/// [`narrow`] for n = 1: each output is the dot product of a row of A with B's one column, summed
/// over the blocks `R` rows at a time along k, plus the bias, through relu.
///
/// # Safety
/// As [`narrow`] with n = 1.
#[inline(always)]
pub(super) unsafe fn narrow_dot<S: Simd, const R: usize>(blocks: &[Block], m: usize, bias: *const f32, relu: bool, c: *mut f32) {
    let l = S::LANES;
    // SAFETY: rows are clamped below m, q < k of each block, the k tail is masked.
    unsafe {
        let b0 = if bias.is_null() { 0.0 } else { *bias };
        for i0 in (0..m).step_by(R) {
            let rows = (m - i0).min(R);
            let mut acc = [S::zero(); R];
            for blk in blocks {
                let a: [*const f32; R] = std::array::from_fn(|r| blk.a.add((i0 + r.min(rows - 1)) * blk.k));
                let full = blk.k / l * l;
                let mut q = 0;
                while q < full {
                    let bv = S::load(blk.b.add(q));
                    for r in 0..R {
                        acc[r] = S::fma(S::load(a[r].add(q)), bv, acc[r]);
                    }
                    q += l;
                }
                if q < blk.k {
                    let w = blk.k - q;
                    let bv = S::load_n(blk.b.add(q), w);
                    for r in 0..R {
                        acc[r] = S::fma(S::load_n(a[r].add(q), w), bv, acc[r]);
                    }
                }
            }
            for r in 0..rows {
                let y = S::hsum(acc[r]) + b0;
                *c.add(i0 + r) = if relu { y.max(0.0) } else { y };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Row path (m == 1, B row-major).

/// c = epi(alpha·a·B + beta·c) for one row a: c (n values, which stay in L1) first becomes beta·c,
/// then takes `R` rows of B at a time, each scaled by its alpha·a[i], vector by vector along the
/// rows, so B is read once in memory order (whole rows: streams the prefetcher follows, where
/// register tiles walking down 32 columns at a time read one 128-byte piece per 2 KB row and ran
/// at 17 GFLOP/s at 1×784×512, a third of what the same weights streamed from L3 allow), then
/// the epilogue.
#[inline(always)]
unsafe fn row_b<S: Simd, const R: usize>(p: &Problem) {
    let (l, n, c) = (S::LANES, p.n, p.c);
    // SAFETY: c holds n values, B k rows of n (row stride rsb), a k values (stride csa); vector
    // accesses are masked past n.
    unsafe {
        let nv = n / l * l;
        if p.beta == 0.0 {
            std::ptr::write_bytes(c, 0, n);
        } else if p.beta != 1.0 {
            for j in 0..n {
                *c.add(j) *= p.beta;
            }
        }
        let mut i = 0;
        while i < p.k {
            let rows = (p.k - i).min(R);
            // Rows past the end repeat the last one with a zero factor.
            let xs: [S::V; R] = std::array::from_fn(|r| if r < rows { S::splat(p.alpha * *p.a.add((i + r) * p.csa)) } else { S::zero() });
            let bs: [*const f32; R] = std::array::from_fn(|r| p.b.add((i + r.min(rows - 1)) * p.rsb));
            let mut j = 0;
            while j < nv {
                let mut acc = S::load(c.add(j));
                for r in 0..R {
                    acc = S::fma(xs[r], S::load(bs[r].add(j)), acc);
                }
                S::store(c.add(j), acc);
                j += l;
            }
            if j < n {
                let w = n - j;
                let mut acc = S::load_n(c.add(j), w);
                for r in 0..R {
                    acc = S::fma(xs[r], S::load_n(bs[r].add(j), w), acc);
                }
                S::store_n(c.add(j), w, acc);
            }
            i += rows;
        }
        if p.bias.is_null() && !p.relu {
            return;
        }
        let zero = S::zero();
        for j in (0..n).step_by(l) {
            let w = (n - j).min(l);
            let mut y = if w == l { S::load(c.add(j)) } else { S::load_n(c.add(j), w) };
            if !p.bias.is_null() {
                y = S::add(y, if w == l { S::load(p.bias.add(j)) } else { S::load_n(p.bias.add(j), w) });
            }
            if p.relu {
                y = S::max(y, zero);
            }
            if w == l {
                S::store(c.add(j), y);
            } else {
                S::store_n(c.add(j), w, y);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Dot-rows path (m == 1, B stored n×k).

/// c[j] = alpha·dot(a, B[j, :]) + beta·c[j], `R` outputs at a time.
#[inline(always)]
unsafe fn dot_rows<S: Simd, const R: usize>(p: &Problem) {
    let l = S::LANES;
    let k_full = p.k / l * l;
    // SAFETY: j < n and q < k throughout; the tail is masked.
    unsafe {
        for j0 in (0..p.n).step_by(R) {
            let rows = (p.n - j0).min(R);
            let brow: [*const f32; R] = std::array::from_fn(|r| p.b.add((j0 + r.min(rows - 1)) * p.csb));
            let mut acc = [S::zero(); R];
            let mut q = 0;
            while q < k_full {
                let av = S::load(p.a.add(q * p.csa));
                for r in 0..R {
                    acc[r] = S::fma(av, S::load(brow[r].add(q)), acc[r]);
                }
                q += l;
            }
            if q < p.k {
                let w = p.k - q;
                let av = S::load_n(p.a.add(q * p.csa), w);
                for r in 0..R {
                    acc[r] = S::fma(av, S::load_n(brow[r].add(q), w), acc[r]);
                }
            }
            for r in 0..rows {
                let cj = p.c.add(j0 + r);
                let d = p.alpha * S::hsum(acc[r]);
                let mut y = if p.beta == 0.0 { d } else { d + p.beta * *cj };
                if !p.bias.is_null() {
                    y += *p.bias.add(j0 + r);
                }
                *cj = if p.relu { y.max(0.0) } else { y };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Packed path.

/// Block sizes for one problem: the maxima split evenly, so the last block is not a sliver.
struct Blocks {
    mc: usize,
    kc: usize,
    nc: usize,
}

impl Blocks {
    fn new(p: &Problem, t: Tiles) -> Blocks {
        let even = |len: usize, max: usize, unit: usize| {
            let parts = len.div_ceil(max).max(1);
            len.div_ceil(parts).div_ceil(unit) * unit
        };
        Blocks { mc: even(p.m, t.mc, t.mr), kc: even(p.k, t.kc, 1), nc: even(p.n, t.nc, t.nr) }
    }
}

/// The BLIS loop nest: n-blocks, k-blocks (B panel packed), m-blocks (A block packed), then
/// micro-tiles. Scratch holds the A block (mc×kc) then the B block (kc×nc).
#[inline(always)]
unsafe fn packed<S: Simd, const MR: usize, const NV: usize>(p: &Problem, t: Tiles, scratch: &mut [f32]) {
    let nr_full = NV * S::LANES;
    debug_assert_eq!((t.mr, t.nr), (MR, nr_full), "tiles of another kernel");
    let bl = Blocks::new(p, t);
    let (abuf, rest) = scratch.split_at_mut(bl.mc * bl.kc);
    let bbuf = &mut rest[..bl.kc * bl.nc];
    // SAFETY: blocks stay inside m×k, k×n and m×n; the buffers were sized by `plan` from the
    // same `Blocks`, and packing writes at most mc×kc and kc×nc values.
    unsafe {
        for jc in (0..p.n).step_by(bl.nc) {
            let nc = (p.n - jc).min(bl.nc);
            for pc in (0..p.k).step_by(bl.kc) {
                let kc = (p.k - pc).min(bl.kc);
                // The first k-block applies beta; later ones accumulate onto it; the last applies
                // the epilogue.
                let beta = if pc == 0 { p.beta } else { 1.0 };
                let last = pc + kc == p.k;
                pack_b::<S, NV>(p, pc, kc, jc, nc, bbuf);
                // A thread split would go here: each thread packs and runs its own m-blocks
                // against the shared packed B (needs a per-thread A buffer, which the
                // thread-local scratch already is).
                for ic in (0..p.m).step_by(bl.mc) {
                    let mc = (p.m - ic).min(bl.mc);
                    pack_a::<S, MR>(p, ic, mc, pc, kc, abuf);
                    for jr in (0..nc).step_by(nr_full) {
                        let nr = (nc - jr).min(nr_full);
                        let bp = bbuf.as_ptr().add(jr * kc);
                        for ir in (0..mc).step_by(MR) {
                            let mr = (mc - ir).min(MR);
                            let ap = abuf.as_ptr().add(ir * kc);
                            let c = p.c.add((ic + ir) * p.ldc + jc + jr);
                            let acc = micro::<S, MR, NV>(kc, ap, bp, Tile { c, ldc: p.ldc, mr, nr });
                            let epi = if last { Epi::at(p, jc + jr) } else { Epi::NONE };
                            store_tile::<S, MR, NV>(&acc, c, p.ldc, mr, nr, p.alpha, beta, epi);
                        }
                    }
                }
            }
        }
    }
}

/// The C tile a microkernel call ends in: its first value, row stride, rows and columns.
#[derive(Clone, Copy)]
struct Tile {
    c: *mut f32,
    ldc: usize,
    mr: usize,
    nr: usize,
}

/// Steps before the end of the microkernel's k loop at which it prefetches its C tile (a few
/// hundred cycles: enough for a line from L3, late enough that the tile's lines are not evicted
/// again by the packed panels streaming through L1 before the store).
const C_PREFETCH_STEPS: usize = 48;

/// The microkernel: acc = Ã·B̃ over `kc` steps of one packed A micro-panel (kc×MR, MR values per
/// step) and one packed B micro-panel (kc×NR, NR values per step); prefetches `tile` of C, which
/// the caller stores the result into, [`C_PREFETCH_STEPS`] before the end. C's rows are one
/// product row apart (4 KB at n = 1024, so every row of the tile falls into the same L1 set and the
/// hardware prefetcher does not follow them), which without the prefetch would stall the store on
/// misses to L2 or L3 after every call.
#[inline(always)]
unsafe fn micro<S: Simd, const MR: usize, const NV: usize>(kc: usize, ap: *const f32, bp: *const f32, tile: Tile) -> [[S::V; NV]; MR] {
    // SAFETY: the packed panels hold kc·MR and kc·NR values; prefetches never fault.
    unsafe {
        let mut acc = [[S::zero(); NV]; MR];
        let split = kc.saturating_sub(C_PREFETCH_STEPS);
        micro_steps::<S, MR, NV>(&mut acc, 0..split, ap, bp);
        for r in 0..MR {
            if r < tile.mr {
                let row = tile.c.add(r * tile.ldc);
                S::prefetch(row);
                S::prefetch(row.add(tile.nr - 1));
            }
        }
        micro_steps::<S, MR, NV>(&mut acc, split..kc, ap, bp);
        acc
    }
}

/// Steps the microkernel's k loop takes per trip: the loop's counter, compare and branch are paid
/// once per this many steps (measured on Zen 3 at 256×784×512: about 1% of the product).
const MICRO_UNROLL: usize = 4;

/// Steps `steps` of [`micro`]: acc += Ã[q]·B̃[q] for each q, [`MICRO_UNROLL`] steps per trip.
#[inline(always)]
unsafe fn micro_steps<S: Simd, const MR: usize, const NV: usize>(
    acc: &mut [[S::V; NV]; MR],
    steps: std::ops::Range<usize>,
    ap: *const f32,
    bp: *const f32,
) {
    let nr = NV * S::LANES;
    // SAFETY: the caller's packed panels hold every step in `steps`.
    unsafe {
        let mut q = steps.start;
        while q + MICRO_UNROLL <= steps.end {
            for u in q..q + MICRO_UNROLL {
                micro_step::<S, MR, NV>(acc, ap.add(u * MR), bp.add(u * nr));
            }
            q += MICRO_UNROLL;
        }
        for u in q..steps.end {
            micro_step::<S, MR, NV>(acc, ap.add(u * MR), bp.add(u * nr));
        }
    }
}

/// One step of [`micro`]: acc += a·b for the MR values at `a` and the NR at `b`.
#[inline(always)]
unsafe fn micro_step<S: Simd, const MR: usize, const NV: usize>(acc: &mut [[S::V; NV]; MR], a: *const f32, b: *const f32) {
    // SAFETY: the caller's panels hold MR values at `a` and NR at `b`.
    unsafe {
        let mut bv = [S::zero(); NV];
        for v in 0..NV {
            bv[v] = S::load(b.add(v * S::LANES));
        }
        for r in 0..MR {
            let av = S::splat(*a.add(r));
            for v in 0..NV {
                acc[r][v] = S::fma(av, bv[v], acc[r][v]);
            }
        }
    }
}

/// Packs op(A)[ic..ic+mc, pc..pc+kc] into MR-row micro-panels, each kc steps of MR values; rows
/// past `mc` are zero.
#[inline(always)]
unsafe fn pack_a<S: Simd, const MR: usize>(p: &Problem, ic: usize, mc: usize, pc: usize, kc: usize, buf: &mut [f32]) {
    // SAFETY: reads rows ic..ic+mc < m and columns pc..pc+kc <= k of op(A); writes
    // ceil(mc/MR)·MR·kc <= buf.len() values.
    unsafe {
        let dst = buf.as_mut_ptr();
        for ir in (0..mc).step_by(MR) {
            let mr = (mc - ir).min(MR);
            let panel = dst.add(ir * kc);
            let src = p.a.add((ic + ir) * p.rsa + pc * p.csa);
            if p.rsa == 1 && mr == MR {
                // op(A) = Aᵀ: the MR values of one step are contiguous. A copy of constant size, so
                // it compiles to a few moves instead of a `memcpy` call per step.
                for q in 0..kc {
                    panel.add(q * MR).cast::<[f32; MR]>().write_unaligned(src.add(q * p.csa).cast::<[f32; MR]>().read_unaligned());
                }
            } else if p.csa == 1 && mr == MR {
                // A row-major: MR rows side by side, transposed in registers where `S` can.
                S::pack_rows::<MR>(src, p.rsa, kc, panel);
            } else {
                for r in 0..MR {
                    if r < mr {
                        let row = src.add(r * p.rsa);
                        for q in 0..kc {
                            *panel.add(q * MR + r) = *row.add(q * p.csa);
                        }
                    } else {
                        for q in 0..kc {
                            *panel.add(q * MR + r) = 0.0;
                        }
                    }
                }
            }
        }
    }
}

/// Rows of a row-major B that [`pack_b`] copies across all the panels before the next rows.
const B_ROWS_AT_ONCE: usize = 8;

/// Packs op(B)[pc..pc+kc, jc..jc+nc] into NR-column micro-panels, each kc steps of NR values;
/// columns past `nc` are zero.
#[inline(always)]
unsafe fn pack_b<S: Simd, const NV: usize>(p: &Problem, pc: usize, kc: usize, jc: usize, nc: usize, buf: &mut [f32]) {
    let nr_full = NV * S::LANES;
    // SAFETY: reads rows pc..pc+kc < k and columns jc..jc+nc <= n of op(B); writes
    // ceil(nc/NR)·NR·kc <= buf.len() values.
    unsafe {
        let dst = buf.as_mut_ptr();
        // A row-major B: its full panels first, B_ROWS_AT_ONCE rows at a time across all of them,
        // so B is read a few whole rows at a time (streams the hardware prefetcher follows),
        // rather than one panel at a time down the rows (one line every 2 KB at n = 512, which it
        // followed too late: that copy took a quarter of a 32×784×512 product).
        let full = if p.csb == 1 { nc / nr_full * nr_full } else { 0 };
        let src0 = p.b.add(pc * p.rsb + jc);
        for q0 in (0..kc).step_by(B_ROWS_AT_ONCE) {
            let q1 = (q0 + B_ROWS_AT_ONCE).min(kc);
            for jr in (0..full).step_by(nr_full) {
                let panel = dst.add(jr * kc);
                for q in q0..q1 {
                    let (s, d) = (src0.add(q * p.rsb + jr), panel.add(q * nr_full));
                    for v in 0..NV {
                        S::store(d.add(v * S::LANES), S::load(s.add(v * S::LANES)));
                    }
                }
            }
        }
        for jr in (full..nc).step_by(nr_full) {
            let nr = (nc - jr).min(nr_full);
            let panel = dst.add(jr * kc);
            let src = p.b.add(pc * p.rsb + (jc + jr) * p.csb);
            if p.csb == 1 {
                // A short last panel (the full ones are packed above): copy nr values per step and
                // zero-pad.
                for q in 0..kc {
                    let d = panel.add(q * nr_full);
                    std::ptr::copy_nonoverlapping(src.add(q * p.rsb), d, nr);
                    for j in nr..nr_full {
                        *d.add(j) = 0.0;
                    }
                }
            } else {
                pack_b_transposed::<S>(p, src, kc, nr, nr_full, panel);
            }
        }
    }
}

/// One micro-panel of a B stored transposed (op(B)'s column j is the source row at `src + j·csb`):
/// `kc` steps of `nr_full` values, columns past `nr` zero. Where op(B)'s columns are contiguous
/// (`rsb == 1`: B stored n×k row-major, as the input gradient dY·Wᵀ has it) each 8 of them are
/// transposed 8×8 in registers ([`Simd::pack_rows8_into`]); the rest walk the `nr` source rows
/// side by side so each step's NR values are written contiguously.
///
/// # Safety
/// As [`pack_b`]: `kc` steps of `nr` columns readable at `src`, `kc·nr_full` values writable at
/// `panel`.
#[inline(always)]
unsafe fn pack_b_transposed<S: Simd>(p: &Problem, src: *const f32, kc: usize, nr: usize, nr_full: usize, panel: *mut f32) {
    // SAFETY: forwarded from this function's contract; every read is column j < nr, step q < kc.
    unsafe {
        let vectored = if p.rsb == 1 { nr / 8 * 8 } else { 0 };
        for j0 in (0..vectored).step_by(8) {
            S::pack_rows8_into(src.add(j0 * p.csb), p.csb, kc, panel.add(j0), nr_full);
        }
        if vectored == nr_full {
            return;
        }
        // NR is at most 64 on every ISA (indexing below is bounds-checked regardless).
        let cols: [*const f32; 64] = std::array::from_fn(|j| src.add(j.min(nr - 1) * p.csb));
        for q in 0..kc {
            let d = panel.add(q * nr_full);
            for j in vectored..nr_full {
                *d.add(j) = if j < nr { *cols[j].add(q * p.rsb) } else { 0.0 };
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Pre-packed B (`prepack.rs`): B constant across calls (a layer's weights at inference), packed
// once into k×NR column panels that both the direct and the packed path read in place.

/// Packs all of a row-major op(B) (`p.k`×`p.n`, `p.csb == 1`) into `buf` as k×NR column panels,
/// panel j (columns j·NR..) at `j·NR·k`, columns past n zero: the layout [`run_prepacked`] reads.
///
/// # Safety
/// As [`run`] for B; `buf` must hold `n.div_ceil(NR)·NR·k` values; the CPU must support `S`.
#[inline(always)]
pub(super) unsafe fn pack_all_b<S: Simd, const NV: usize>(p: &Problem, buf: &mut [f32]) {
    // SAFETY: forwarded; `pack_b` writes ceil(n/NR)·NR·k values, which the caller provides.
    unsafe { pack_b::<S, NV>(p, 0, p.k, 0, p.n, buf) }
}

/// Scratch [`run_prepacked`] needs for `p` (in `f32`s): none on the direct path, the A block on
/// the packed one.
pub(super) fn plan_prepacked(p: &Problem, path: Path, t: Tiles) -> usize {
    match path {
        Path::Packed => {
            let b = Blocks::new(p, t);
            b.mc * b.kc
        }
        _ => 0,
    }
}

/// C = epi(alpha·op(A)·B + beta·C) with B already packed by [`pack_all_b`]: `p.b` points at the
/// panel of C's column 0, and the panel of column j0 (a multiple of NR) at `p.b + j0·k`, which is
/// what [`part`] computes for a band of columns when `p.csb == p.k` (so a pre-packed problem is
/// split like any other). The tiles, k-blocks and order of the sums are those of the direct and
/// packed paths [`plan`] would choose with B in place, so the results are the same bits; the copy
/// of B into panels (a quarter of a 32×784×512 product) is gone.
///
/// # Safety
/// As [`run`] for A and C; the panels must cover `p.k`×`p.n` with `NR = NV·LANES`; `scratch` must
/// hold [`plan_prepacked`]'s values for `path`; the CPU must support `S`. `path` is what [`plan`] chose
/// for the whole product when `p` is a part of it, so a part sums as the whole would.
#[inline(always)]
pub(super) unsafe fn run_prepacked<S: Simd, const MR: usize, const NV: usize>(p: &Problem, path: Path, t: Tiles, scratch: &mut [f32]) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        match path {
            Path::Packed => packed_prepacked::<S, MR, NV>(p, t, scratch),
            _ if p.n <= S::LANES => direct_prepacked::<S, 8, 1, NV>(p),
            _ => direct_prepacked::<S, MR, NV, NV>(p),
        }
    }
}

/// Rows of an m-row product that [`direct_prepacked`] covers with 6-row tiles, the rest taking
/// 4-row tiles: 32 rows are four 6-row tiles and two 4-row ones, where 6-row tiles alone compute 4
/// rows in vain and 4-row tiles alone keep only 8 sums in flight, which the FMA's latency (4
/// cycles, 2 pipes) leaves no slack (the B load of each step stalled them). Odd remainders keep a
/// last 6-row tile with rows repeated.
fn six_row_part(m: usize) -> usize {
    match m % 6 {
        4 => m - 4,
        2 if m >= 8 => m - 8,
        _ => m,
    }
}

/// The direct path's loops over pre-packed panels (`PV` vectors wide; the tile reads its first `NV`):
/// per panel, tiles of `MR` rows, and with `MR` = 6 the last rows in 4-row tiles ([`six_row_part`]).
#[inline(always)]
unsafe fn direct_prepacked<S: Simd, const MR: usize, const NV: usize, const PV: usize>(p: &Problem) {
    let (nr_full, panel) = (NV * S::LANES, PV * S::LANES);
    let mut q = *p;
    q.rsb = panel;
    q.csb = 1;
    let split = if MR == 6 { six_row_part(p.m) } else { p.m };
    // SAFETY: tiles stay inside m×n; panel j0/NR holds k steps of `panel` values (zero-padded).
    unsafe {
        for j0 in (0..p.n).step_by(nr_full) {
            let b = p.b.add(j0 / panel * panel * p.k + j0 % panel);
            direct_rows::<S, MR, NV>(&q, 0..split, j0, b);
            direct_rows::<S, 4, NV>(&q, split..p.m, j0, b);
        }
    }
}

/// Tiles of `MR` rows over `rows` of C at column `j0`, B read from the panel at `b` (row stride
/// `q.rsb`).
#[inline(always)]
unsafe fn direct_rows<S: Simd, const MR: usize, const NV: usize>(q: &Problem, rows: std::ops::Range<usize>, j0: usize, b: *const f32) {
    let nr_full = NV * S::LANES;
    let nr = (q.n - j0).min(nr_full);
    // SAFETY: as in `direct_prepacked`, rows < m.
    unsafe {
        for i0 in rows.clone().step_by(MR) {
            let mr = (rows.end - i0).min(MR);
            let acc = direct_tile::<S, MR, NV, true>(q, q.a.add(i0 * q.rsa), mr, b, nr_full);
            store_tile::<S, MR, NV>(&acc, q.c.add(i0 * q.ldc + j0), q.ldc, mr, nr, q.alpha, q.beta, Epi::at(q, j0));
        }
    }
}

/// [`packed`] with B's panels read where they were pre-packed: only A is packed per block.
#[inline(always)]
unsafe fn packed_prepacked<S: Simd, const MR: usize, const NV: usize>(p: &Problem, t: Tiles, scratch: &mut [f32]) {
    let nr_full = NV * S::LANES;
    debug_assert_eq!((t.mr, t.nr), (MR, nr_full), "tiles of another kernel");
    let bl = Blocks::new(p, t);
    let abuf = &mut scratch[..bl.mc * bl.kc];
    // SAFETY: as in `packed`; the B micro-panel of columns jc+jr, steps pc.., is the pre-packed
    // panel of column jc+jr (a multiple of NR) from step pc on: kc·NR contiguous values.
    unsafe {
        for jc in (0..p.n).step_by(bl.nc) {
            let nc = (p.n - jc).min(bl.nc);
            for pc in (0..p.k).step_by(bl.kc) {
                let kc = (p.k - pc).min(bl.kc);
                let beta = if pc == 0 { p.beta } else { 1.0 };
                let last = pc + kc == p.k;
                for ic in (0..p.m).step_by(bl.mc) {
                    let mc = (p.m - ic).min(bl.mc);
                    pack_a::<S, MR>(p, ic, mc, pc, kc, abuf);
                    for jr in (0..nc).step_by(nr_full) {
                        let nr = (nc - jr).min(nr_full);
                        let bp = p.b.add((jc + jr) * p.k + pc * nr_full);
                        for ir in (0..mc).step_by(MR) {
                            let mr = (mc - ir).min(MR);
                            let ap = abuf.as_ptr().add(ir * kc);
                            let c = p.c.add((ic + ir) * p.ldc + jc + jr);
                            let acc = micro::<S, MR, NV>(kc, ap, bp, Tile { c, ldc: p.ldc, mr, nr });
                            let epi = if last { Epi::at(p, jc + jr) } else { Epi::NONE };
                            store_tile::<S, MR, NV>(&acc, c, p.ldc, mr, nr, p.alpha, beta, epi);
                        }
                    }
                }
            }
        }
    }
}
