//! Matrix-vector products for one row: y = x·B and y = x·Bᵀ with B row-major k×n, no packing and no
//! scratch. A recurrent layer at batch 1 runs one of these per time step (the state times the
//! recurrent kernel, and the gate gradients times its transpose), where [`super::sgemm`]'s set-up
//! (planning, packing a panel of B, the tile loops) costs more than the product itself.
//!
//! Both stream B once, in memory order, from wherever it lies in the cache: [`sgemv`] adds four rows
//! of B at a time into y (which stays in L1; measured 15% faster than keeping 64 columns of y in
//! registers while walking down the rows, whose 2 KB stride the prefetcher serves worse), [`sgemv_t`]
//! takes the dot products of x with eight rows of B at once. Without AVX2 + FMA (or inside a bf16 scope, see [`super::Bf16Scope`],
//! whose rounding only the GEMM applies) they call [`super::sgemm`].

use super::{bf16, sgemm};

/// `y[..n] = x[..k]·B`, B row-major k×n (`b[i·n + j]`).
///
/// # Panics
/// When `b` has fewer than k·n values or `y` fewer than n.
pub fn sgemv(k: usize, n: usize, x: &[f32], b: &[f32], y: &mut [f32]) {
    assert!(x.len() >= k && b.len() >= k * n && y.len() >= n, "sgemv: operands shorter than {k}×{n}");
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are checked above.
        return unsafe { avx2::gemv(k, n, x, b, y) };
    }
    sgemm(1, k, n, 1.0, x, false, b, false, 0.0, y);
}

/// `y[..k] = x[..n]·Bᵀ`, B row-major k×n: `y[i]` is the dot product of x and row i of B.
///
/// # Panics
/// When `b` has fewer than k·n values or `y` fewer than k.
pub fn sgemv_t(k: usize, n: usize, x: &[f32], b: &[f32], y: &mut [f32]) {
    assert!(x.len() >= n && b.len() >= k * n && y.len() >= k, "sgemv_t: operands shorter than {k}×{n}");
    #[cfg(target_arch = "x86_64")]
    if fast() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are checked above.
        return unsafe { avx2::gemv_t(k, n, x, b, y) };
    }
    sgemm(1, n, k, 1.0, x, false, b, true, 0.0, y);
}

/// Whether the AVX2 kernels may run: the CPU has AVX2 + FMA and no bf16 scope is set.
#[cfg(target_arch = "x86_64")]
fn fast() -> bool {
    is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && bf16::active().is_none()
}

#[cfg(not(target_arch = "x86_64"))]
#[allow(dead_code)]
fn fast() -> bool {
    let _ = bf16::active;
    false
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::sgemv`]: B streamed in order, four rows at a time into y (which stays in L1).
    /// Safety: AVX2 + FMA, `x` ≥ k, `b` ≥ k·n, `y` ≥ n values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemv(k: usize, n: usize, x: &[f32], b: &[f32], y: &mut [f32]) {
        let (xp, bp, yp) = (x.as_ptr(), b.as_ptr(), y.as_mut_ptr());
        let n8 = n / 8 * 8;
        std::ptr::write_bytes(yp, 0, n);
        let mut i = 0;
        while i + 4 <= k {
            let (x0, x1, x2, x3) = (
                _mm256_set1_ps(*xp.add(i)),
                _mm256_set1_ps(*xp.add(i + 1)),
                _mm256_set1_ps(*xp.add(i + 2)),
                _mm256_set1_ps(*xp.add(i + 3)),
            );
            let r = bp.add(i * n);
            let mut j = 0;
            while j < n8 {
                let mut acc = _mm256_loadu_ps(yp.add(j));
                acc = _mm256_fmadd_ps(x0, _mm256_loadu_ps(r.add(j)), acc);
                acc = _mm256_fmadd_ps(x1, _mm256_loadu_ps(r.add(n + j)), acc);
                acc = _mm256_fmadd_ps(x2, _mm256_loadu_ps(r.add(2 * n + j)), acc);
                acc = _mm256_fmadd_ps(x3, _mm256_loadu_ps(r.add(3 * n + j)), acc);
                _mm256_storeu_ps(yp.add(j), acc);
                j += 8;
            }
            for j in n8..n {
                *yp.add(j) += *xp.add(i) * *r.add(j)
                    + *xp.add(i + 1) * *r.add(n + j)
                    + *xp.add(i + 2) * *r.add(2 * n + j)
                    + *xp.add(i + 3) * *r.add(3 * n + j);
            }
            i += 4;
        }
        for i in i..k {
            for j in 0..n {
                *yp.add(j) += *xp.add(i) * *bp.add(i * n + j);
            }
        }
    }

    /// See [`super::sgemv_t`]. Safety: AVX2 + FMA, `x` ≥ n, `b` ≥ k·n, `y` ≥ k values.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemv_t(k: usize, n: usize, x: &[f32], b: &[f32], y: &mut [f32]) {
        let (xp, bp, yp) = (x.as_ptr(), b.as_ptr(), y.as_mut_ptr());
        let n8 = n / 8 * 8;
        let mut r0 = 0;
        // Eight rows at a time: one load of x serves eight dot products.
        while r0 + 8 <= k {
            let mut acc = [_mm256_setzero_ps(); 8];
            let mut j = 0;
            while j < n8 {
                let xv = _mm256_loadu_ps(xp.add(j));
                for (r, a) in acc.iter_mut().enumerate() {
                    *a = _mm256_fmadd_ps(xv, _mm256_loadu_ps(bp.add((r0 + r) * n + j)), *a);
                }
                j += 8;
            }
            for (r, a) in acc.iter().enumerate() {
                *yp.add(r0 + r) = hsum(*a) + tail_dot(xp, bp.add((r0 + r) * n), n8, n);
            }
            r0 += 8;
        }
        for r in r0..k {
            let mut a = _mm256_setzero_ps();
            let mut j = 0;
            while j < n8 {
                a = _mm256_fmadd_ps(_mm256_loadu_ps(xp.add(j)), _mm256_loadu_ps(bp.add(r * n + j)), a);
                j += 8;
            }
            *yp.add(r) = hsum(a) + tail_dot(xp, bp.add(r * n), n8, n);
        }
    }

    /// The dot product of x and row over columns from..to. Safety: both hold `to` values.
    #[inline(always)]
    unsafe fn tail_dot(x: *const f32, row: *const f32, from: usize, to: usize) -> f32 {
        (from..to).fold(0.0, |s, j| (*x.add(j)).mul_add(*row.add(j), s))
    }

    /// The sum of the eight lanes.
    #[inline(always)]
    unsafe fn hsum(v: __m256) -> f32 {
        let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
        let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
        let s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
        _mm_cvtss_f32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[test]
    fn gemv_and_its_transpose_match_the_gemm_at_every_tail_shape() {
        for (k, n) in [(1, 1), (3, 7), (8, 8), (13, 64), (128, 512), (9, 71), (17, 130), (64, 200)] {
            let (x, b) = (values(k.max(n), 1), values(k * n, 2));
            let (mut got, mut want) = (vec![0.0; n], vec![0.0; n]);
            sgemv(k, n, &x, &b, &mut got);
            sgemm(1, k, n, 1.0, &x, false, &b, false, 0.0, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "x·B {k}×{n}: {g} vs {w}");
            }
            let (mut got, mut want) = (vec![0.0; k], vec![0.0; k]);
            sgemv_t(k, n, &x, &b, &mut got);
            sgemm(1, n, k, 1.0, &x, false, &b, true, 0.0, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "x·Bᵀ {k}×{n}: {g} vs {w}");
            }
        }
    }
}
