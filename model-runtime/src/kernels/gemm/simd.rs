//! The vector operations the GEMM kernels are written against, one implementation per instruction
//! set: AVX-512F (16 lanes), AVX2+FMA (8 lanes) and a portable one (8 lanes of plain arrays that
//! LLVM maps onto whatever the baseline target has).
//!
//! Every method is `unsafe`: the x86 ones may only run on a CPU with the feature (checked once by
//! the dispatcher in `mod.rs`), and the loads and stores take raw pointers that must be valid for
//! the lanes they touch. The x86 methods carry `#[target_feature]` and `#[inline]`, so once the
//! generic kernel is inlined into a wrapper compiled with the same features, they inline too and
//! the accumulators stay in registers.

/// One SIMD instruction set: a vector of `LANES` `f32` and the handful of operations GEMM needs.
pub(super) trait Simd {
    /// The vector type.
    type V: Copy;
    /// `f32` lanes in [`Simd::V`].
    const LANES: usize;

    /// All lanes zero.
    unsafe fn zero() -> Self::V;
    /// All lanes `x`.
    unsafe fn splat(x: f32) -> Self::V;
    /// `LANES` values from `p` (unaligned).
    unsafe fn load(p: *const f32) -> Self::V;
    /// The first `n` (< `LANES`) values from `p`, the other lanes zero; reads nothing past `p + n`.
    unsafe fn load_n(p: *const f32, n: usize) -> Self::V;
    /// `LANES` values to `p` (unaligned).
    unsafe fn store(p: *mut f32, v: Self::V);
    /// The first `n` (< `LANES`) lanes to `p`; writes nothing past `p + n`.
    unsafe fn store_n(p: *mut f32, n: usize, v: Self::V);
    /// `a·b + c` (fused where the instruction set has it).
    unsafe fn fma(a: Self::V, b: Self::V, c: Self::V) -> Self::V;
    /// `a·b`.
    unsafe fn mul(a: Self::V, b: Self::V) -> Self::V;
    /// `a + b`.
    unsafe fn add(a: Self::V, b: Self::V) -> Self::V;
    /// The sum of the lanes.
    unsafe fn hsum(v: Self::V) -> f32;
    /// Lane-wise maximum (`max(x, 0)` is relu; NaN in `a` gives `b`, as `maxps` does).
    unsafe fn max(a: Self::V, b: Self::V) -> Self::V;
    /// A hint to bring the cache line holding `p` into L1 (nothing where there is no such
    /// instruction). Never faults, whatever `p` is.
    #[inline(always)]
    unsafe fn prefetch(p: *const f32) {
        let _ = p;
    }
    /// Packs `MR` rows of `kc` contiguous values (row `r` at `src + r·rs`) into `dst` step by step:
    /// `dst[q·MR + r] = src[r·rs + q]` (the packed GEMM's A micro-panel of a row-major A).
    #[inline(always)]
    unsafe fn pack_rows<const MR: usize>(src: *const f32, rs: usize, kc: usize, dst: *mut f32) {
        // SAFETY: the caller guarantees MR rows of kc readable values and MR·kc writable ones.
        unsafe { pack_rows_scalar::<MR>(src, rs, 0, kc, dst) }
    }
    /// Packs 8 rows of `kc` contiguous values (row `r` at `src + r·rs`) into 8 adjacent lanes of
    /// each step of a wider panel: `dst[q·ds + r] = src[r·rs + q]`, nothing else written (the
    /// packed GEMM's B micro-panel of a transposed B, 8 of its NR columns at a time; `ds` ≥ 8).
    #[inline(always)]
    unsafe fn pack_rows8_into(src: *const f32, rs: usize, kc: usize, dst: *mut f32, ds: usize) {
        // SAFETY: the caller guarantees 8 rows of kc readable values and the written lanes.
        unsafe { pack_rows8_into_scalar(src, rs, 0, kc, dst, ds) }
    }
}

/// [`Simd::pack_rows8_into`] for steps `q0..kc`, one value at a time.
///
/// # Safety
/// As [`Simd::pack_rows8_into`].
#[inline(always)]
unsafe fn pack_rows8_into_scalar(src: *const f32, rs: usize, q0: usize, kc: usize, dst: *mut f32, ds: usize) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        let rows: [*const f32; 8] = std::array::from_fn(|r| src.add(r * rs));
        for q in q0..kc {
            for (r, row) in rows.iter().enumerate() {
                *dst.add(q * ds + r) = *row.add(q);
            }
        }
    }
}

/// [`Simd::pack_rows`] for steps `q0..kc`, one value at a time (writes in order, MR reads per step).
///
/// # Safety
/// As [`Simd::pack_rows`].
#[inline(always)]
unsafe fn pack_rows_scalar<const MR: usize>(src: *const f32, rs: usize, q0: usize, kc: usize, dst: *mut f32) {
    // SAFETY: forwarded from this function's contract.
    unsafe {
        let rows: [*const f32; MR] = std::array::from_fn(|r| src.add(r * rs));
        for q in q0..kc {
            for (r, row) in rows.iter().enumerate() {
                *dst.add(q * MR + r) = *row.add(q);
            }
        }
    }
}

/// Plain arrays: correct everywhere, vectorized by LLVM for the baseline target (SSE2 on x86-64,
/// NEON on aarch64).
pub(super) struct Portable;

impl Simd for Portable {
    type V = [f32; 8];
    const LANES: usize = 8;

    #[inline(always)]
    unsafe fn zero() -> [f32; 8] {
        [0.0; 8]
    }
    #[inline(always)]
    unsafe fn splat(x: f32) -> [f32; 8] {
        [x; 8]
    }
    #[inline(always)]
    unsafe fn load(p: *const f32) -> [f32; 8] {
        // SAFETY: the caller guarantees 8 readable values at `p`.
        unsafe { p.cast::<[f32; 8]>().read_unaligned() }
    }
    #[inline(always)]
    unsafe fn load_n(p: *const f32, n: usize) -> [f32; 8] {
        let mut v = [0.0; 8];
        // SAFETY: the caller guarantees `n` readable values at `p`, and `n < 8`.
        unsafe { std::ptr::copy_nonoverlapping(p, v.as_mut_ptr(), n) };
        v
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: [f32; 8]) {
        // SAFETY: the caller guarantees 8 writable values at `p`.
        unsafe { p.cast::<[f32; 8]>().write_unaligned(v) }
    }
    #[inline(always)]
    unsafe fn store_n(p: *mut f32, n: usize, v: [f32; 8]) {
        // SAFETY: the caller guarantees `n` writable values at `p`, and `n < 8`.
        unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), p, n) };
    }
    #[inline(always)]
    unsafe fn fma(a: [f32; 8], b: [f32; 8], c: [f32; 8]) -> [f32; 8] {
        // Not `mul_add`: without hardware FMA that is a slow library call.
        std::array::from_fn(|l| a[l] * b[l] + c[l])
    }
    #[inline(always)]
    unsafe fn mul(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| a[l] * b[l])
    }
    #[inline(always)]
    unsafe fn add(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| a[l] + b[l])
    }
    #[inline(always)]
    unsafe fn hsum(v: [f32; 8]) -> f32 {
        ((v[0] + v[4]) + (v[1] + v[5])) + ((v[2] + v[6]) + (v[3] + v[7]))
    }
    #[inline(always)]
    unsafe fn max(a: [f32; 8], b: [f32; 8]) -> [f32; 8] {
        std::array::from_fn(|l| if a[l] > b[l] { a[l] } else { b[l] })
    }
}

#[cfg(target_arch = "x86_64")]
pub(super) use x86::{Avx2, Avx512};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use super::Simd;
    use std::arch::x86_64::*;

    /// AVX2 with FMA: 8 lanes in `__m256`.
    pub(in super::super) struct Avx2;

    /// `MASK[8 - n..16 - n]` has its first `n` entries all ones: the lane mask for `n` values.
    static MASK: [i32; 16] = [-1, -1, -1, -1, -1, -1, -1, -1, 0, 0, 0, 0, 0, 0, 0, 0];

    #[inline(always)]
    unsafe fn mask8(n: usize) -> __m256i {
        // SAFETY: `n < 8`, so the 8 values read start inside MASK and end at or before its end.
        unsafe { _mm256_loadu_si256(MASK.as_ptr().add(8 - n).cast()) }
    }

    // SAFETY (whole impl): every method requires the CPU to support AVX2 and FMA, which the
    // dispatcher checked before calling any kernel built on this type; pointer requirements are
    // those documented on the trait.
    impl Simd for Avx2 {
        type V = __m256;
        const LANES: usize = 8;

        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn zero() -> __m256 {
            _mm256_setzero_ps()
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn splat(x: f32) -> __m256 {
            _mm256_set1_ps(x)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load(p: *const f32) -> __m256 {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn load_n(p: *const f32, n: usize) -> __m256 {
            // Masked-off lanes are not read, so nothing past `p + n` is touched.
            unsafe { _mm256_maskload_ps(p, mask8(n)) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn store(p: *mut f32, v: __m256) {
            unsafe { _mm256_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn store_n(p: *mut f32, n: usize, v: __m256) {
            unsafe { _mm256_maskstore_ps(p, mask8(n), v) }
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn mul(a: __m256, b: __m256) -> __m256 {
            _mm256_mul_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn add(a: __m256, b: __m256) -> __m256 {
            _mm256_add_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn hsum(v: __m256) -> f32 {
            let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
            let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
            let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
            _mm_cvtss_f32(s)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn max(a: __m256, b: __m256) -> __m256 {
            _mm256_max_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn prefetch(p: *const f32) {
            // A prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(p.cast())
        }
        /// 4 to 8 rows: eight steps at a time, the rows (zeros past MR) transposed 8×8 in registers
        /// and each step's column stored as a whole vector, whose lanes past MR the next step's
        /// store overwrites. Measured on Zen 4: the one-value-at-a-time copy took 9% of a 1024³
        /// product's time, about 3 cycles per value (BENCHMARKS.md, "The GEMM's ceiling on Zen 4").
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn pack_rows<const MR: usize>(src: *const f32, rs: usize, kc: usize, dst: *mut f32) {
            // SAFETY: the caller guarantees MR rows of kc readable values and MR·kc writable ones;
            // the vector loop reads steps q..q+8 ≤ kc, and its last store of a group ends at
            // (q + 8)·MR + 8 - MR ≤ (q + 9)·MR (MR ≥ 4), inside step q + 8 < kc, which the next
            // group or the scalar tail writes afterwards.
            unsafe {
                if !(4..=8).contains(&MR) {
                    return super::pack_rows_scalar::<MR>(src, rs, 0, kc, dst);
                }
                let rows: [*const f32; 8] = std::array::from_fn(|r| src.add(r.min(MR - 1) * rs));
                let zero = _mm256_setzero_ps();
                let mut q = 0;
                while q + 8 < kc {
                    let r: [__m256; 8] = std::array::from_fn(|i| if i < MR { _mm256_loadu_ps(rows[i].add(q)) } else { zero });
                    let cols = transpose8(r);
                    for (j, c) in cols.into_iter().enumerate() {
                        _mm256_storeu_ps(dst.add((q + j) * MR), c);
                    }
                    q += 8;
                }
                super::pack_rows_scalar::<MR>(src, rs, q, kc, dst);
            }
        }
        /// Eight steps at a time, the 8 rows transposed 8×8 in registers ([`transpose8`]) and each
        /// step's 8 values stored as one vector at `dst + q·ds`: the transposed B's panel, which the
        /// one-value-at-a-time copy built at about 3 cycles per value.
        #[inline]
        #[target_feature(enable = "avx2,fma")]
        unsafe fn pack_rows8_into(src: *const f32, rs: usize, kc: usize, dst: *mut f32, ds: usize) {
            // SAFETY: the caller guarantees 8 rows of kc readable values and 8 writable lanes at
            // each step; the vector loop reads steps q..q+8 ≤ kc.
            unsafe {
                let rows: [*const f32; 8] = std::array::from_fn(|r| src.add(r * rs));
                let mut q = 0;
                while q + 8 <= kc {
                    let cols = transpose8(std::array::from_fn(|i| _mm256_loadu_ps(rows[i].add(q))));
                    for (j, c) in cols.into_iter().enumerate() {
                        _mm256_storeu_ps(dst.add((q + j) * ds), c);
                    }
                    q += 8;
                }
                super::pack_rows8_into_scalar(src, rs, q, kc, dst, ds);
            }
        }
    }

    /// The 8×8 transpose of `r` (row i of the block in `r[i]`): column j of the block in the j-th
    /// vector returned.
    #[inline]
    #[target_feature(enable = "avx2,fma")]
    fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
        let t0 = _mm256_unpacklo_ps(r[0], r[1]);
        let t1 = _mm256_unpackhi_ps(r[0], r[1]);
        let t2 = _mm256_unpacklo_ps(r[2], r[3]);
        let t3 = _mm256_unpackhi_ps(r[2], r[3]);
        let t4 = _mm256_unpacklo_ps(r[4], r[5]);
        let t5 = _mm256_unpackhi_ps(r[4], r[5]);
        let t6 = _mm256_unpacklo_ps(r[6], r[7]);
        let t7 = _mm256_unpackhi_ps(r[6], r[7]);
        let s0 = _mm256_shuffle_ps::<0x44>(t0, t2);
        let s1 = _mm256_shuffle_ps::<0xEE>(t0, t2);
        let s2 = _mm256_shuffle_ps::<0x44>(t1, t3);
        let s3 = _mm256_shuffle_ps::<0xEE>(t1, t3);
        let s4 = _mm256_shuffle_ps::<0x44>(t4, t6);
        let s5 = _mm256_shuffle_ps::<0xEE>(t4, t6);
        let s6 = _mm256_shuffle_ps::<0x44>(t5, t7);
        let s7 = _mm256_shuffle_ps::<0xEE>(t5, t7);
        // Column j of the 8×8 block.
        [
            _mm256_permute2f128_ps::<0x20>(s0, s4),
            _mm256_permute2f128_ps::<0x20>(s1, s5),
            _mm256_permute2f128_ps::<0x20>(s2, s6),
            _mm256_permute2f128_ps::<0x20>(s3, s7),
            _mm256_permute2f128_ps::<0x31>(s0, s4),
            _mm256_permute2f128_ps::<0x31>(s1, s5),
            _mm256_permute2f128_ps::<0x31>(s2, s6),
            _mm256_permute2f128_ps::<0x31>(s3, s7),
        ]
    }

    /// AVX-512F: 16 lanes in `__m512`, masked loads and stores for partial vectors, and 32 registers,
    /// which allow a larger register tile than AVX2's 16.
    pub(in super::super) struct Avx512;

    /// The lane mask of the first `n` (< 16) lanes.
    #[inline(always)]
    fn mask16(n: usize) -> __mmask16 {
        ((1u32 << n) - 1) as __mmask16
    }

    // SAFETY (whole impl): every method requires the CPU to support AVX-512F, which the dispatcher
    // checked before calling any kernel built on this type; pointer requirements are those
    // documented on the trait (masked-off lanes are neither read nor written).
    impl Simd for Avx512 {
        type V = __m512;
        const LANES: usize = 16;

        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn zero() -> __m512 {
            _mm512_setzero_ps()
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn splat(x: f32) -> __m512 {
            _mm512_set1_ps(x)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load(p: *const f32) -> __m512 {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn load_n(p: *const f32, n: usize) -> __m512 {
            unsafe { _mm512_maskz_loadu_ps(mask16(n), p) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store(p: *mut f32, v: __m512) {
            unsafe { _mm512_storeu_ps(p, v) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn store_n(p: *mut f32, n: usize, v: __m512) {
            unsafe { _mm512_mask_storeu_ps(p, mask16(n), v) }
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            _mm512_mul_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            _mm512_add_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn hsum(v: __m512) -> f32 {
            _mm512_reduce_add_ps(v)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn max(a: __m512, b: __m512) -> __m512 {
            _mm512_max_ps(a, b)
        }
        #[inline]
        #[target_feature(enable = "avx512f")]
        unsafe fn prefetch(p: *const f32) {
            // A prefetch never faults, whatever the address.
            _mm_prefetch::<_MM_HINT_T0>(p.cast())
        }
        /// AVX2's 8×8 register transposes (every CPU with AVX-512F has AVX2; checked all the same,
        /// the one-value-at-a-time copy otherwise).
        #[inline]
        unsafe fn pack_rows8_into(src: *const f32, rs: usize, kc: usize, dst: *mut f32, ds: usize) {
            // SAFETY: forwarded from this function's contract; AVX2 and FMA were detected.
            unsafe {
                if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                    return Avx2::pack_rows8_into(src, rs, kc, dst, ds);
                }
                super::pack_rows8_into_scalar(src, rs, 0, kc, dst, ds)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `pack_rows` of `S` against the definition, for every step count around the 8-step groups.
    fn check_pack_rows<S: Simd, const MR: usize>() {
        let rs = 53;
        let src: Vec<f32> = (0..MR * rs).map(|i| i as f32).collect();
        for kc in 0..=rs {
            // One sentinel past the panel: the vector stores must not reach it.
            let mut dst = vec![f32::NAN; MR * kc + 1];
            dst[MR * kc] = -7.0;
            // SAFETY: MR rows of kc ≤ rs values, MR·kc writable; callers pass only detected ISAs.
            unsafe { S::pack_rows::<MR>(src.as_ptr(), rs, kc, dst.as_mut_ptr()) };
            for q in 0..kc {
                for r in 0..MR {
                    assert_eq!(dst[q * MR + r], src[r * rs + q], "MR {MR} kc {kc} step {q} row {r}");
                }
            }
            assert_eq!(dst[MR * kc], -7.0, "MR {MR} kc {kc}: wrote past the panel");
        }
    }

    /// `pack_rows8_into` of `S` against the definition: every step count around the 8-step groups,
    /// the lanes of the wider panel outside the 8 left as they were.
    fn check_pack_rows8_into<S: Simd>() {
        let (rs, ds) = (53, 16);
        let src: Vec<f32> = (0..8 * rs).map(|i| i as f32).collect();
        for kc in 0..=rs {
            let mut dst = vec![-7.0; ds * kc + 4];
            // SAFETY: 8 rows of kc ≤ rs values; lanes 3..11 of every step writable; callers pass
            // only detected ISAs.
            unsafe { S::pack_rows8_into(src.as_ptr(), rs, kc, dst.as_mut_ptr().add(3), ds) };
            for (i, &d) in dst.iter().enumerate() {
                let (q, lane) = (i / ds, i % ds);
                let want = if q < kc && (3..11).contains(&lane) { src[(lane - 3) * rs + q] } else { -7.0 };
                assert_eq!(d, want, "kc {kc} step {q} lane {lane}");
            }
        }
    }

    #[test]
    fn pack_rows8_into_transposes_into_a_wider_panel_on_every_instruction_set() {
        check_pack_rows8_into::<Portable>();
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            check_pack_rows8_into::<Avx2>();
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            check_pack_rows8_into::<Avx512>();
        }
    }

    #[test]
    fn pack_rows_transposes_the_rows_on_every_instruction_set() {
        check_pack_rows::<Portable, 6>();
        check_pack_rows::<Portable, 4>();
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
            check_pack_rows::<Avx2, 4>();
            check_pack_rows::<Avx2, 5>();
            check_pack_rows::<Avx2, 6>();
            check_pack_rows::<Avx2, 8>();
            check_pack_rows::<Avx2, 3>();
            check_pack_rows::<Avx2, 12>();
        }
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx512f") {
            check_pack_rows::<Avx512, 12>();
        }
    }
}
