//! The GEMM of Keras' `mixed_bfloat16` dtype policy: both operands rounded to bfloat16 (round to
//! nearest, ties to even), products summed in f32. Weights and C stay f32; only the operands are
//! rounded, as they are packed.
//!
//! Two kernels compute the same sums in the same order, so their results agree to the last bit up
//! to the flushing of subnormals (the hardware always flushes them, see [`crate::fpenv`]):
//! - AVX512_BF16 (`vdpbf16ps`): each 32-bit lane holds a pair of bf16 values along k, and one
//!   instruction adds both products of the pair to an f32 accumulator, odd element first;
//! - a portable emulation of that instruction, so that the numerics are the same on every CPU and
//!   testable where the instruction is missing.
//!
//! Layout: op(A) is packed into panels of [`MR`] rows and op(B) into panels of [`NR`] columns, k
//! in pairs (a zero pads an odd k); tiles of MR×NR are summed over blocks of [`KC`] pairs, the
//! first block overwriting C (with `beta`), the last applying the epilogue. The packed operands
//! live in the calling thread's GEMM scratch, so steady-state calls allocate nothing; large
//! products share their column panels among the GEMM's threads.
//!
//! Which products run here is a per-thread setting ([`Bf16Scope`]), entered by the runtime's entry
//! points from the model's dtype policy (`crate::precision`); every [`super::sgemm`] and
//! [`super::sgemm_blocks`] on that thread large enough to gain ([`pays`]) then comes here. [`super::gather_gemm`] has no bf16
//! form: a convolution on its direct path stays f32 (faster than im2col + bf16, see `conv.rs`).

use super::{pool, scratch, Epilogue, Par};
use std::cell::Cell;
use std::marker::PhantomData;

/// Rows of a tile: 12 rows × 2 vectors are 24 accumulators, with the 2 vectors of B and the
/// broadcast A 27 of the 32 registers. Measured on Zen 4 (busy machine): 8 rows gave 185 GFLOP/s
/// at 1024³, 12 rows 200.
const MR: usize = 12;
/// Columns of a tile: two 16-lane vectors.
const NR: usize = 32;
/// Pairs of k summed per block (1024 values of k): a block of a B panel is 64 KB, in L2. Every
/// block but the last stores its tile to C and the next one reads it back; 128 pairs (a 16 KB block
/// in L1, but 4 passes over C at k = 1024) gave 158 GFLOP/s at 1024³ against 186 for 512.
const KC: usize = 512;

/// Which kernel computes the bf16 products.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Bf16Kernel {
    /// `vdpbf16ps` on AVX512_BF16 (x86_64 only; never chosen where the CPU lacks it).
    Avx512Bf16,
    /// The portable emulation: the same rounding and the same order of sums, in scalar code.
    Emulated,
}

/// Whether this CPU has AVX512_BF16 (and AVX-512F and BW, which the packing uses).
pub fn avx512_bf16_available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") && is_x86_feature_detected!("avx512bf16")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

thread_local! {
    /// The kernel the GEMMs of this thread run in bf16 with, or `None` for f32.
    static ACTIVE: Cell<Option<Bf16Kernel>> = const { Cell::new(None) };
}

/// The bf16 kernel this thread's GEMMs use, if a [`Bf16Scope`] set one. Kernels with a product of
/// their own in f32 (the convolutions' gathered products) ask it to take the [`super::sgemm`] way.
#[inline]
pub fn active() -> Option<Bf16Kernel> {
    ACTIVE.try_with(Cell::get).ok().flatten()
}

/// Makes this thread's [`super::sgemm`] and [`super::sgemm_blocks`] calls run in bf16 with the
/// given kernel (`None`: f32) until it is dropped, which restores the previous setting.
pub struct Bf16Scope {
    previous: Option<Bf16Kernel>,
    /// The setting is per thread: the guard must be dropped on the thread that made it.
    _not_send: PhantomData<*const ()>,
}

impl Bf16Scope {
    /// Sets this thread's kernel to `kernel`. An [`Bf16Kernel::Avx512Bf16`] on a CPU without
    /// AVX512_BF16 is taken as [`Bf16Kernel::Emulated`], so that no call faults.
    pub fn new(kernel: Option<Bf16Kernel>) -> Self {
        let kernel = kernel.map(Bf16Scope::usable);
        let previous = ACTIVE.try_with(|a| a.replace(kernel)).ok().flatten();
        Bf16Scope { previous, _not_send: PhantomData }
    }
}

impl Bf16Scope {
    /// `kernel`, or the emulation where it is [`Bf16Kernel::Avx512Bf16`] and the CPU lacks it.
    pub(super) fn usable(kernel: Bf16Kernel) -> Bf16Kernel {
        match kernel {
            Bf16Kernel::Avx512Bf16 if !avx512_bf16_available() => Bf16Kernel::Emulated,
            k => k,
        }
    }
}

impl Drop for Bf16Scope {
    fn drop(&mut self) {
        let _ = ACTIVE.try_with(|a| a.set(self.previous));
    }
}

/// Fewest rows of C (m) for which bf16 pays: every call packs op(B), for a layer its weights, into
/// bf16, which a product of few rows does not repay (at m = 1 bf16 took 1.5–6× f32's time, at
/// m = 4 0.5–1.1×).
const PAYS_MIN_M: usize = 8;
/// Shortest sums (k) for which bf16 pays: below, storing C and packing cost more than the pairs of
/// `vdpbf16ps` save (k = 9 and 16 lost up to 3× where n < 128, and gained at most 1.5× above).
const PAYS_MIN_K: usize = 32;
/// Narrowest C (n) that pays on its own: the f32 narrow path (n ≤ 16, two AVX2 vectors) and a
/// third-full bf16 tile at n = 10 make narrower products lose (0.4–0.9×) ...
const PAYS_MIN_N: usize = 32;
/// ... unless op(A) is large: m·k ≥ 2¹⁷ gained 1.5–2.5× at n = 10 and 16 (and 2¹⁶ lost, 0.8–0.9×).
const PAYS_NARROW_MIN_MK: usize = 1 << 17;

/// Whether an m×k×n product gains from the bf16 kernel on a CPU with AVX512_BF16: the size
/// threshold of the `mixed_bfloat16` policy. Products it rejects stay f32 under the policy, so
/// their results are the f32 path's, bit for bit.
///
/// Measured with `cargo run --release --example bf16_bench -- --grid` (AMD EPYC, Zen 4, 1 thread,
/// busy machine, 2026-12-06; BENCHMARKS.md): f32 against bf16 over m ∈ {1, 4, 8, 32, 128, 512,
/// 2048}, k ∈ {9, 16, 32, 128, 512, 1024}, n ∈ {10, 16, 32, 128, 512}. Every product this accepts
/// ran 1.0–3.1× faster in bf16 (8×32×32 broke even); every one it rejects ran slower in bf16, but
/// for k < 32 with n ≥ 128 and m ≥ 32 (1.1–1.5×, once 0.8×), left to f32 for a simpler rule.
///
/// `MODELC_BF16_THRESHOLD=off` (read once) sends every product to bf16, as before the threshold: to
/// measure what it saves.
pub fn pays(m: usize, k: usize, n: usize) -> bool {
    let sized = m >= PAYS_MIN_M && k >= PAYS_MIN_K && (n >= PAYS_MIN_N || m.saturating_mul(k) >= PAYS_NARROW_MIN_MK);
    sized || threshold_off()
}

/// Whether `MODELC_BF16_THRESHOLD=off` (or `0`) turned the size threshold off: every product in
/// bf16, and the convolutions through im2col to make theirs so (the policy's first form, to measure).
pub fn threshold_off() -> bool {
    static OFF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OFF.get_or_init(|| std::env::var("MODELC_BF16_THRESHOLD").is_ok_and(|v| matches!(v.trim(), "off" | "0")))
}

/// `x` rounded to bfloat16 (to nearest, ties to even; a NaN stays a quiet NaN), as its 16 bits.
#[inline]
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    let round = 0x7FFF + ((bits >> 16) & 1);
    (bits.wrapping_add(round) >> 16) as u16
}

/// The f32 value of the bf16 `h` (exact).
#[inline]
pub fn from_bf16(h: u16) -> f32 {
    f32::from_bits(u32::from(h) << 16)
}

/// `x` rounded to bfloat16 and back: the value the bf16 products see.
#[inline]
pub fn round_bf16(x: f32) -> f32 {
    from_bf16(to_bf16(x))
}

/// Two bf16 values in one 32-bit lane: `even` (element 2i) in the low half, `odd` above.
#[inline]
fn pair(even: f32, odd: f32) -> u32 {
    u32::from(to_bf16(even)) | (u32::from(to_bf16(odd)) << 16)
}

/// A product as [`super::sgemm_fused`] takes it: C (m×n) = epi(alpha·op(A)·op(B) + beta·C).
#[derive(Clone, Copy)]
pub(super) struct Args<'a> {
    pub m: usize,
    pub k: usize,
    pub n: usize,
    pub alpha: f32,
    pub a: &'a [f32],
    pub trans_a: bool,
    pub b: &'a [f32],
    pub trans_b: bool,
    pub beta: f32,
    pub epi: Epilogue<'a>,
}

/// [`super::sgemm_fused`] in bf16 with `kernel`, split at most as `par` allows.
///
/// # Panics
/// As [`super::sgemm`].
pub(super) fn gemm(kernel: Bf16Kernel, par: Par, x: Args<'_>, c: &mut [f32]) {
    let Args { m, k, n, a, b, .. } = x;
    assert!(a.len() >= m * k, "sgemm: a has {} elements, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm: b has {} elements, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm: c has {} elements, needs {}", c.len(), m * n);
    if let Some(bias) = x.epi.bias {
        assert!(bias.len() >= n, "sgemm: bias has {} elements, needs {}", bias.len(), n);
    }
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        // Nothing to multiply or round: C = epi(beta·C), as the f32 path computes it.
        let Args { alpha, trans_a, trans_b, beta, epi, .. } = x;
        super::sgemm_on(super::tuned().choice.for_n(n), par, m, k, n, alpha, a, trans_a, b, trans_b, beta, c, epi);
        return;
    }
    let kp = k.div_ceil(2);
    let (mp, np) = (m.div_ceil(MR), n.div_ceil(NR));
    let a_len = mp * kp * MR;
    let len = a_len + np * kp * NR;
    scratch::with(len, |buf| {
        // SAFETY: u32 and f32 have the same size and alignment, and every bit pattern is valid
        // for both; the borrow of `buf` is carried over.
        let buf: &mut [u32] = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u32>(), buf.len()) };
        let (ap, bp) = buf.split_at_mut(a_len);
        pack_a(kernel, &x, ap);
        pack_b(kernel, &x, bp);
        let job = Job { x, kp, ap, bp, c: c.as_mut_ptr(), kernel };
        let parts = parts(par, m, k, n, np);
        // SAFETY (all): `job.c` is `c`, checked above to hold m·n values and uniquely borrowed;
        // the parts write disjoint column panels of it, and `split_or_serial` returns after all are
        // done (or after running the whole product on this thread, when a split does not pay).
        if parts > 1 {
            let split = |i: usize| unsafe { job.columns(i * np / parts, (i + 1) * np / parts) };
            pool::split_or_serial(m * k * n, par.threads, parts, &split, || unsafe { job.columns(0, np) });
            return;
        }
        unsafe { job.columns(0, np) }
    });
}

/// [`super::sgemm_blocks`] in bf16: one [`gemm`] per block of A, the first overwriting C, the last
/// applying the epilogue.
///
/// # Panics
/// As [`super::sgemm_blocks`].
#[allow(clippy::too_many_arguments)]
pub(super) fn blocks(
    kernel: Bf16Kernel,
    par: Par,
    m: usize,
    n: usize,
    a: &[&[f32]],
    k: &[usize],
    b: &[f32],
    c: &mut [f32],
    epi: Epilogue<'_>,
) {
    assert_eq!(a.len(), k.len(), "sgemm_blocks: {} blocks of A but {} sizes", a.len(), k.len());
    let k_total: usize = k.iter().sum();
    assert!(b.len() >= k_total * n, "sgemm_blocks: b has {} elements, needs {}", b.len(), k_total * n);
    if a.is_empty() || k_total == 0 {
        // Nothing to multiply: C is the epilogue of zero, as the f32 path computes it.
        return super::blocks_on(super::tuned().choice.for_n(n), par, m, n, a, k, b, c, epi);
    }
    let mut row0 = 0;
    for (i, (&ai, &ki)) in a.iter().zip(k).enumerate() {
        let e = if i + 1 == a.len() { epi } else { Epilogue::NONE };
        let beta = if i == 0 { 0.0 } else { 1.0 };
        let bi = &b[row0 * n..(row0 + ki) * n];
        gemm(kernel, par, Args { m, k: ki, n, alpha: 1.0, a: ai, trans_a: false, b: bi, trans_b: false, beta, epi: e }, c);
        row0 += ki;
    }
}

/// How many parts (column-panel ranges) to split a product into: as many as the threads allow
/// with at least `par.min_work` multiply-adds each, and at most one per panel.
fn parts(par: Par, m: usize, k: usize, n: usize, np: usize) -> usize {
    let work = m.saturating_mul(k).saturating_mul(n);
    (work / par.min_work.max(1)).min(par.threads).min(np).max(1)
}

/// Packs op(A) into `ap`: row after row of `kp` pairs (the odd k's partner is a zero; rows past m,
/// up to a whole panel of MR, are zeros). A row-major A converts row by row, in order.
fn pack_a(kernel: Bf16Kernel, x: &Args<'_>, ap: &mut [u32]) {
    let (m, k) = (x.m, x.k);
    let kp = k.div_ceil(2);
    let (rows, pad) = ap.split_at_mut(m * kp);
    pad.fill(0);
    if !x.trans_a || m == 1 {
        // A one-row op(A) is the same k contiguous values whether or not it is transposed.
        for (row, src) in rows.chunks_exact_mut(kp).zip(x.a.chunks_exact(k)) {
            pack_row(kernel, src, row);
        }
    } else {
        // op(A)[i][l] = a[l*m + i]: two stored rows (l = 2p, 2p+1) at a time, read in order and
        // converted a vector at a time, each pair written to its row of op(A) (kp apart; the
        // lines of one p are the next p's, so they stay in L1).
        let mut buf = [0u32; NR];
        for p in 0..kp {
            let r0 = &x.a[2 * p * m..][..m];
            let r1 = if 2 * p + 1 < k { Some(&x.a[(2 * p + 1) * m..][..m]) } else { None };
            for i0 in (0..m).step_by(NR) {
                let cols = NR.min(m - i0);
                pair_rows(kernel, &r0[i0..i0 + cols], r1.map(|r| &r[i0..i0 + cols]), &mut buf[..cols]);
                for (c, &v) in buf[..cols].iter().enumerate() {
                    rows[(i0 + c) * kp + p] = v;
                }
            }
        }
    }
}

/// `out[j]` = the pair (`r0[j]`, `r1[j]`, or 0 without `r1`), for the `r0.len()` ≤ NR values.
#[inline]
fn pair_rows(kernel: Bf16Kernel, r0: &[f32], r1: Option<&[f32]>, out: &mut [u32]) {
    #[cfg(not(target_arch = "x86_64"))]
    let _ = kernel; // one kernel only: the emulation
    match r1 {
        #[cfg(target_arch = "x86_64")]
        Some(r1) if r0.len() == NR && kernel == Bf16Kernel::Avx512Bf16 => {
            // SAFETY: the kernel is only set where the CPU has AVX512_BF16 (see `tile_on`); the
            // three slices hold NR values.
            unsafe { pack_b_avx512(r0, r1, out) }
        }
        Some(r1) => out.iter_mut().zip(r0.iter().zip(r1)).for_each(|(o, (&e, &d))| *o = pair(e, d)),
        None => out.iter_mut().zip(r0).for_each(|(o, &e)| *o = pair(e, 0.0)),
    }
}

/// Converts the contiguous values `src` into pairs (`dst` holds `src.len().div_ceil(2)`).
fn pack_row(kernel: Bf16Kernel, src: &[f32], dst: &mut [u32]) {
    let done = match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the kernel is only set where the CPU has AVX512_BF16 (see `tile_on`).
        Bf16Kernel::Avx512Bf16 => unsafe { pack_row_avx512(src, dst) },
        _ => 0,
    };
    let (src, dst) = (&src[2 * done..], &mut dst[done..]);
    let mut two = src.chunks_exact(2);
    for (d, s) in dst.iter_mut().zip(two.by_ref()) {
        *d = pair(s[0], s[1]);
    }
    if let [last] = two.remainder() {
        dst[src.len() / 2] = pair(*last, 0.0);
    }
}

/// Packs op(B) into `bp`: panel `jp` holds columns `jp*NR..`, pair after pair, NR lanes per pair
/// (columns past n and the odd k's partner are zeros).
fn pack_b(kernel: Bf16Kernel, x: &Args<'_>, bp: &mut [u32]) {
    let (k, n) = (x.k, x.n);
    let kp = k.div_ceil(2);
    for (jp, panel) in bp.chunks_exact_mut(kp * NR).enumerate() {
        let (j0, cols) = (jp * NR, NR.min(n - jp * NR));
        if x.trans_b {
            pack_b_transposed(kernel, x, j0, cols, panel);
            continue;
        }
        // Two contiguous rows of B per pair.
        for (p, out) in panel.chunks_exact_mut(NR).enumerate() {
            let r0 = &x.b[2 * p * n + j0..][..cols];
            let r1 = (2 * p + 1 < k).then(|| &x.b[(2 * p + 1) * n + j0..][..cols]);
            pair_rows(kernel, r0, r1, &mut out[..cols]);
            out[cols..].fill(0);
        }
    }
}

/// One panel of a transposed B (stored n×k, so column j of op(B) is the contiguous row j): each
/// row converted into pairs 16 at a time and written down its lane of the panel.
fn pack_b_transposed(kernel: Bf16Kernel, x: &Args<'_>, j0: usize, cols: usize, panel: &mut [u32]) {
    let k = x.k;
    let kp = k.div_ceil(2);
    let mut buf = [0u32; 16];
    for j in 0..NR {
        if j >= cols {
            (0..kp).for_each(|p| panel[p * NR + j] = 0);
            continue;
        }
        let row = &x.b[(j0 + j) * k..][..k];
        for (q, chunk) in row.chunks(32).enumerate() {
            let pairs = chunk.len().div_ceil(2);
            pack_row(kernel, chunk, &mut buf[..pairs]);
            for (t, &v) in buf[..pairs].iter().enumerate() {
                panel[(16 * q + t) * NR + j] = v;
            }
        }
    }
}

/// Converts 32 values at a time of `src` into pairs with `vcvtne2ps2bf16` (the same rounding as
/// [`to_bf16`], but subnormals flushed); returns how many pairs it wrote.
///
/// # Safety
/// The CPU must support AVX-512F and AVX512_BF16; `dst` must hold `src.len() / 2` pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn pack_row_avx512(src: &[f32], dst: &mut [u32]) -> usize {
    use std::arch::x86_64::*;
    let blocks = src.len() / 32;
    assert!(dst.len() >= blocks * 16);
    for i in 0..blocks {
        // SAFETY: block i reads src[32i..32i+32] and writes dst[16i..16i+16], inside both.
        unsafe {
            let v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(src.as_ptr().add(32 * i + 16)), _mm512_loadu_ps(src.as_ptr().add(32 * i)));
            _mm512_storeu_si512(dst.as_mut_ptr().add(16 * i).cast(), std::mem::transmute::<__m512bh, __m512i>(v));
        }
    }
    blocks * 16
}

/// Packs one pair of rows of a B panel: `out[j]` is `r0[j]` (low half) and `r1[j]` (high half)
/// in bf16, for NR columns, with `vcvtne2ps2bf16` and an interleaving `vpermw`.
///
/// # Safety
/// The CPU must support AVX-512F, AVX-512BW and AVX512_BF16; `r0`, `r1` and `out` hold NR values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b_avx512(r0: &[f32], r1: &[f32], out: &mut [u32]) {
    use std::arch::x86_64::*;
    assert!(r0.len() >= NR && r1.len() >= NR && out.len() >= NR);
    // 16-bit lane 2j takes lane j (a value of r0), lane 2j+1 lane 16+j (the same column of r1).
    const IDX: [i16; 32] = {
        let mut idx = [0i16; 32];
        let mut j = 0;
        while j < 16 {
            idx[2 * j] = j as i16;
            idx[2 * j + 1] = 16 + j as i16;
            j += 1;
        }
        idx
    };
    // SAFETY: every load and store stays inside the NR values of the contract.
    unsafe {
        let idx = _mm512_loadu_si512(IDX.as_ptr().cast());
        for half in 0..2 {
            let at = 16 * half;
            let v = _mm512_cvtne2ps_pbh(_mm512_loadu_ps(r1.as_ptr().add(at)), _mm512_loadu_ps(r0.as_ptr().add(at)));
            let v = _mm512_permutexvar_epi16(idx, std::mem::transmute::<__m512bh, __m512i>(v));
            _mm512_storeu_si512(out.as_mut_ptr().add(at).cast(), v);
        }
    }
}

/// One packed product, shared by the threads that compute its column panels.
struct Job<'a> {
    x: Args<'a>,
    kp: usize,
    ap: &'a [u32],
    bp: &'a [u32],
    c: *mut f32,
    kernel: Bf16Kernel,
}

// SAFETY: the parts write disjoint column panels of C through `c` (see `Job::columns`).
unsafe impl Sync for Job<'_> {}

impl Job<'_> {
    /// Computes column panels `jp0..jp1` of C.
    ///
    /// # Safety
    /// `c` must hold m·n values that nothing else reads or writes meanwhile, except other calls
    /// on disjoint panel ranges.
    unsafe fn columns(&self, jp0: usize, jp1: usize) {
        let Args { m, n, alpha, beta, epi, .. } = self.x;
        let kp = self.kp;
        let mut tile = [[0.0f32; NR]; MR];
        for kb in (0..kp).step_by(KC) {
            let kc = KC.min(kp - kb);
            let store = Store { alpha, beta, first: kb == 0, last: kb + kc == kp, epi };
            for jp in jp0..jp1 {
                let b = &self.bp[(jp * kp + kb) * NR..][..kc * NR];
                let cols = NR.min(n - jp * NR);
                for ip in 0..m.div_ceil(MR) {
                    let a = &self.ap[ip * MR * kp + kb..][..(MR - 1) * kp + kc];
                    tile_on(self.kernel, kc, kp, a, b, &mut tile);
                    let rows = MR.min(m - ip * MR);
                    for (r, t) in tile.iter().enumerate().take(rows) {
                        let i = ip * MR + r;
                        // SAFETY: row i < m and columns jp·NR.. + cols ≤ n lie inside C's m·n
                        // values, in this call's panels only (the contract).
                        let row = unsafe { std::slice::from_raw_parts_mut(self.c.add(i * n + jp * NR), cols) };
                        store.row(&t[..cols], row, jp * NR);
                    }
                }
            }
        }
    }
}

/// How a block's tile is stored into C.
struct Store<'a> {
    alpha: f32,
    beta: f32,
    /// The first block of k: C is overwritten (beta·C added, unless beta is 0).
    first: bool,
    /// The last block of k: the epilogue is applied.
    last: bool,
    epi: Epilogue<'a>,
}

impl Store<'_> {
    /// Stores one row of a tile into `c`, whose first column is column `j0` of C.
    #[inline]
    fn row(&self, t: &[f32], c: &mut [f32], j0: usize) {
        for (cv, &tv) in c.iter_mut().zip(t) {
            let prior = if !self.first {
                *cv
            } else if self.beta == 0.0 {
                0.0
            } else {
                self.beta * *cv
            };
            *cv = prior + self.alpha * tv;
        }
        if self.last {
            if let Some(bias) = self.epi.bias {
                c.iter_mut().zip(&bias[j0..]).for_each(|(v, &b)| *v += b);
            }
            if self.epi.relu {
                c.iter_mut().for_each(|v| *v = v.max(0.0));
            }
        }
    }
}

/// One MR×NR tile over `kc` pairs of packed A (`a`: MR rows, `lda` pairs apart) and B (`b`, NR
/// lanes per pair).
#[inline]
fn tile_on(kernel: Bf16Kernel, kc: usize, lda: usize, a: &[u32], b: &[u32], tile: &mut [[f32; NR]; MR]) {
    assert!(kc <= lda && a.len() >= (MR - 1) * lda + kc && b.len() >= kc * NR, "bf16 tile: packed operands too short");
    match kernel {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the lengths are checked above; a `Bf16Scope` never sets this kernel on a CPU
        // without AVX512_BF16, and the tests only run it where it is detected.
        Bf16Kernel::Avx512Bf16 => unsafe { tile_avx512(kc, lda, a.as_ptr(), b.as_ptr(), tile) },
        _ => tile_emulated(kc, lda, a, b, tile),
    }
}

/// The portable kernel: per lane, what `vdpbf16ps` computes, `acc + odd·odd` then `+ even·even`
/// (each product of two bf16 values is exact in f32, so only the sums round).
fn tile_emulated(kc: usize, lda: usize, a: &[u32], b: &[u32], tile: &mut [[f32; NR]; MR]) {
    let mut acc = [[0.0f32; NR]; MR];
    for p in 0..kc {
        let bl = &b[p * NR..(p + 1) * NR];
        for (r, row) in acc.iter_mut().enumerate() {
            let av = a[r * lda + p];
            let (a0, a1) = (from_bf16(av as u16), from_bf16((av >> 16) as u16));
            for (v, &bv) in row.iter_mut().zip(bl) {
                let (b0, b1) = (from_bf16(bv as u16), from_bf16((bv >> 16) as u16));
                *v = (*v + a1 * b1) + a0 * b0;
            }
        }
    }
    *tile = acc;
}

/// The AVX512_BF16 kernel: 24 accumulators (MR rows × two vectors), one `vdpbf16ps` per row and
/// vector per pair of k.
///
/// # Safety
/// The CPU must support AVX-512F and AVX512_BF16; `a` must hold `(MR-1)·lda + kc` values and `b`
/// `kc·NR`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile_avx512(kc: usize, lda: usize, a: *const u32, b: *const u32, tile: &mut [[f32; NR]; MR]) {
    use std::arch::x86_64::*;
    let mut acc = [[_mm512_setzero_ps(); 2]; MR];
    // SAFETY: every load reads inside the lengths of the contract; the transmutes reinterpret 512
    // bits as 32 pairs of bf16, which is what the packed lanes hold.
    unsafe {
        for p in 0..kc {
            let b0: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR).cast()));
            let b1: __m512bh = std::mem::transmute(_mm512_loadu_si512(b.add(p * NR + 16).cast()));
            for (r, row) in acc.iter_mut().enumerate() {
                let av: __m512bh = std::mem::transmute(_mm512_set1_epi32(*a.add(r * lda + p) as i32));
                row[0] = _mm512_dpbf16_ps(row[0], av, b0);
                row[1] = _mm512_dpbf16_ps(row[1], av, b1);
            }
        }
        for (t, row) in tile.iter_mut().zip(&acc) {
            _mm512_storeu_ps(t.as_mut_ptr(), row[0]);
            _mm512_storeu_ps(t.as_mut_ptr().add(16), row[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounding_is_to_nearest_even() {
        assert_eq!(round_bf16(1.0), 1.0);
        // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even one, 1.
        assert_eq!(round_bf16(1.0 + 1.0 / 256.0), 1.0);
        // 1 + 3·2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to the even, 1 + 2^-6.
        assert_eq!(round_bf16(1.0 + 3.0 / 256.0), 1.0 + 1.0 / 64.0);
        assert_eq!(round_bf16(1.0 + 1.5 / 256.0), 1.0 + 1.0 / 128.0);
        assert!(round_bf16(f32::NAN).is_nan());
        assert_eq!(round_bf16(f32::INFINITY), f32::INFINITY);
        assert_eq!(round_bf16(-2.5), -2.5);
    }

    /// Deterministic values in [-1, 1).
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s >> 40) as f32 / (1u64 << 23) as f32 - 1.0
            })
            .collect()
    }

    /// C = epi(alpha·op(A)·op(B) + beta·C0) in f64, with the operands rounded to bf16 first when
    /// `round`; also Σ|alpha·a·b| per element, the scale of the rounding errors.
    #[allow(clippy::too_many_arguments)]
    fn reference(x: &Args<'_>, c0: &[f32], round: bool) -> (Vec<f64>, Vec<f64>) {
        let Args { m, k, n, alpha, a, trans_a, b, trans_b, beta, epi } = *x;
        let r = |v: f32| f64::from(if round { round_bf16(v) } else { v });
        let (mut c, mut scale) = (vec![0.0; m * n], vec![0.0; m * n]);
        for i in 0..m {
            for j in 0..n {
                let (mut s, mut t) = (0.0, 0.0);
                for l in 0..k {
                    let av = if trans_a { a[l * m + i] } else { a[i * k + l] };
                    let bv = if trans_b { b[j * k + l] } else { b[l * n + j] };
                    s += r(av) * r(bv);
                    t += (f64::from(av) * f64::from(bv)).abs();
                }
                let mut v = f64::from(alpha) * s + if beta == 0.0 { 0.0 } else { f64::from(beta) * f64::from(c0[i * n + j]) };
                v += epi.bias.map_or(0.0, |bias| f64::from(bias[j]));
                if epi.relu {
                    v = v.max(0.0);
                }
                c[i * n + j] = v;
                scale[i * n + j] = f64::from(alpha.abs()) * t + 1e-30;
            }
        }
        (c, scale)
    }

    /// Shapes with partial tiles, odd k, more than one block of k, and splits across threads.
    const SHAPES: &[(usize, usize, usize)] =
        &[(1, 1, 1), (3, 5, 7), (8, 2, 32), (9, 33, 17), (17, 300, 70), (64, 257, 65), (100, 784, 48), (13, 1101, 40)];

    /// Runs `kernel` on every shape and transpose and checks it against [`reference`]: within
    /// `exact_tol`·Σ|a·b| of the rounded operands' product, and within `bf16_tol`·Σ|a·b| of the
    /// f32 operands' one.
    fn check(kernel: Bf16Kernel, exact_tol: f64, bf16_tol: f64) {
        let bias = values(128, 99);
        for (s, &(m, k, n)) in SHAPES.iter().enumerate() {
            for (t, &(trans_a, trans_b, alpha, beta, relu)) in [
                (false, false, 1.0, 0.0, false),
                (true, false, 0.5, 1.0, true),
                (false, true, -1.0, 0.25, false),
                (true, true, 2.0, 0.0, true),
            ]
            .iter()
            .enumerate()
            {
                let (a, b, c0) = (values(m * k, s as u64), values(k * n, 7 + t as u64), values(m * n, 3));
                let epi = Epilogue { bias: relu.then_some(&bias[..n.min(128)]).filter(|b| b.len() == n), relu };
                let x = Args { m, k, n, alpha, a: &a, trans_a, b: &b, trans_b, beta, epi };
                let mut c = c0.clone();
                let par = Par { threads: 2, min_work: 1000 };
                gemm(kernel, par, x, &mut c);
                for (round, tol) in [(true, exact_tol), (false, bf16_tol)] {
                    let (want, scale) = reference(&x, &c0, round);
                    for (i, ((&got, &w), &sc)) in c.iter().zip(&want).zip(&scale).enumerate() {
                        let err = (f64::from(got) - w).abs() / sc.max(1e-6);
                        assert!(
                            err <= tol,
                            "{kernel:?} {m}x{k}x{n} case {t} at {i}: {got} against {w} (rounded operands: {round}), error {err:e}·Σ|ab|"
                        );
                    }
                }
            }
        }
    }

    /// The relative bound used against f32: bf16 keeps 8 significant bits, so each operand is off
    /// by at most u = 2⁻⁸ relatively, a product by at most 2u + u², and the sum by that times
    /// Σ|a·b| (7.8e-3), plus f32 rounding: 8e-3·Σ|a·b|.
    const BF16_TOL: f64 = 8.0e-3;

    #[test]
    fn emulated_is_the_f32_sum_of_rounded_operands() {
        // f32 accumulation over k ≤ 784 terms: well under 1e-4 of Σ|a·b|.
        check(Bf16Kernel::Emulated, 1e-4, BF16_TOL);
    }

    #[test]
    fn avx512_bf16_matches_the_emulation() {
        if !avx512_bf16_available() {
            eprintln!("skipped: this CPU has no AVX512_BF16");
            return;
        }
        check(Bf16Kernel::Avx512Bf16, 1e-4, BF16_TOL);
        // And the two kernels agree to f32 rounding (the same sums in the same order; only the
        // hardware's flushing of subnormals could differ, and these values have none).
        for &(m, k, n) in SHAPES {
            let (a, b) = (values(m * k, 5), values(k * n, 6));
            let x = Args { m, k, n, alpha: 1.0, a: &a, trans_a: false, b: &b, trans_b: false, beta: 0.0, epi: Epilogue::NONE };
            let (mut hw, mut emu) = (vec![0.0; m * n], vec![0.0; m * n]);
            gemm(Bf16Kernel::Avx512Bf16, Par::SERIAL, x, &mut hw);
            gemm(Bf16Kernel::Emulated, Par::SERIAL, x, &mut emu);
            let worst = hw.iter().zip(&emu).map(|(h, e)| (h - e).abs() / e.abs().max(1.0)).fold(0.0f32, f32::max);
            assert!(worst <= 1e-6, "{m}x{k}x{n}: the kernels differ by {worst:e}");
        }
    }

    #[test]
    fn blocks_and_the_hook_follow_the_scope() {
        // Large enough to gain from bf16 (m = 9, k = 37, n = 40), so the hook is taken.
        let (m, n) = (9, 40);
        assert!(pays(m, 37, n));
        let (a0, a1, b) = (values(m * 30, 1), values(m * 7, 2), values(37 * n, 3));
        let bias = values(n, 4);
        let epi = Epilogue { bias: Some(&bias), relu: true };
        let mut f32c = vec![0.0; m * n];
        super::super::sgemm_blocks(m, n, &[&a0, &a1], &[30, 7], &b, &mut f32c, epi);
        let mut bf = vec![0.0; m * n];
        {
            let _scope = Bf16Scope::new(Some(Bf16Kernel::Emulated));
            assert_eq!(active(), Some(Bf16Kernel::Emulated));
            super::super::sgemm_blocks(m, n, &[&a0, &a1], &[30, 7], &b, &mut bf, epi);
        }
        assert_eq!(active(), None);
        // The same product through the bf16 kernel directly: one A of 37 columns.
        let a: Vec<f32> = (0..m).flat_map(|i| a0[i * 30..i * 30 + 30].iter().chain(&a1[i * 7..i * 7 + 7]).copied()).collect();
        let mut direct = vec![0.0; m * n];
        let x = Args { m, k: 37, n, alpha: 1.0, a: &a, trans_a: false, b: &b, trans_b: false, beta: 0.0, epi };
        gemm(Bf16Kernel::Emulated, Par::SERIAL, x, &mut direct);
        for ((&g, &d), &f) in bf.iter().zip(&direct).zip(&f32c) {
            assert!((g - d).abs() <= 1e-5 * (1.0 + d.abs()), "blocks {g} against one product {d}");
            assert!((g - f).abs() <= 2e-2 * (1.0 + f.abs()), "bf16 {g} against f32 {f}");
        }
        assert!(bf != f32c, "the scope made no difference: the hook is not taken");
    }

    /// Under a scope, `sgemm` of m×k×n, f32 and the bf16 kernel directly, for `kernel`.
    fn three_ways(kernel: Bf16Kernel, m: usize, k: usize, n: usize) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
        let (a, b) = (values(m * k, 11), values(k * n, 12));
        let run = |f: &dyn Fn(&mut [f32])| {
            let mut c = vec![0.0; m * n];
            f(&mut c);
            c
        };
        let scoped = run(&|c| {
            let _scope = Bf16Scope::new(Some(kernel));
            super::super::sgemm(m, k, n, 1.0, &a, false, &b, false, 0.0, c);
        });
        let f32c = run(&|c| super::super::sgemm(m, k, n, 1.0, &a, false, &b, false, 0.0, c));
        let bf = run(&|c| super::super::sgemm_bf16(kernel, m, k, n, 1.0, &a, false, &b, false, 0.0, c));
        (scoped, f32c, bf)
    }

    #[test]
    fn products_too_small_to_gain_stay_f32_to_the_bit() {
        let mut kernels = vec![Bf16Kernel::Emulated];
        if avx512_bf16_available() {
            kernels.push(Bf16Kernel::Avx512Bf16);
        }
        // Below the threshold: few rows, a short k, a narrow C with a small op(A).
        for (m, k, n) in [(1, 784, 512), (4, 512, 512), (32, 16, 128), (2048, 9, 32), (32, 64, 10), (512, 128, 16)] {
            assert!(!pays(m, k, n), "{m}x{k}x{n}");
            for &kernel in &kernels {
                let (scoped, f32c, bf) = three_ways(kernel, m, k, n);
                assert!(scoped == f32c, "{kernel:?} {m}x{k}x{n}: not the f32 result");
                assert!(bf != f32c, "{kernel:?} {m}x{k}x{n}: bf16 gave f32's result, the test shows nothing");
            }
        }
    }

    #[test]
    fn products_large_enough_take_the_bf16_kernel() {
        let mut kernels = vec![Bf16Kernel::Emulated];
        if avx512_bf16_available() {
            kernels.push(Bf16Kernel::Avx512Bf16);
        }
        for (m, k, n) in [(8, 32, 32), (64, 257, 65), (128, 1024, 10), (512, 256, 16)] {
            assert!(pays(m, k, n), "{m}x{k}x{n}");
            for &kernel in &kernels {
                let (scoped, f32c, bf) = three_ways(kernel, m, k, n);
                assert!(scoped == bf, "{kernel:?} {m}x{k}x{n}: not the bf16 kernel's result");
                assert!(scoped != f32c, "{kernel:?} {m}x{k}x{n}: f32's result to the bit");
            }
        }
    }
}
