//! C = A·B for a short A (a few dozen rows) and a B that stays in cache between calls, read where it
//! lies: no packing, no planning, no scratch. A recurrent layer runs one of these per time step (the
//! batch's states times the recurrent kernel), 64 times per call on the same B, where packing a panel
//! of B again at every call is a cost [`super::sgemm`] cannot avoid.
//!
//! AVX2 + FMA register tiles of 6 rows × 16 columns (twelve accumulators, and one tile of the
//! remaining rows): for each 16-column strip of B (k × 64 bytes, which the first row tile brings into
//! L1 for the others), every row tile of A. Without AVX2 + FMA, inside a bf16 scope ([`super::Bf16Scope`], whose rounding only the GEMM
//! applies), or for a width that is not a multiple of 16, it calls [`super::sgemm`].

use super::{bf16, sgemm};

/// C (m×n) = A (m×k) · B (k×n), all row-major and contiguous.
///
/// # Panics
/// When an operand is shorter than its shape.
pub fn sgemm_small(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    assert!(a.len() >= m * k && b.len() >= k * n && c.len() >= m * n, "sgemm_small: operands shorter than {m}×{k}×{n}");
    #[cfg(target_arch = "x86_64")]
    if n.is_multiple_of(16) && is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") && bf16::active().is_none() {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are checked above.
        return unsafe { avx2::gemm(m, k, n, a, b, c) };
    }
    let _ = bf16::active;
    sgemm(m, k, n, 1.0, a, false, b, false, 0.0, c);
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    /// See [`super::sgemm_small`]. Safety: AVX2 + FMA, n a multiple of 16, operands long enough.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
        let (ap, bp, cp) = (a.as_ptr(), b.as_ptr(), c.as_mut_ptr());
        for j0 in (0..n).step_by(16) {
            let mut i0 = 0;
            while i0 + 6 <= m {
                tile::<6>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0));
                i0 += 6;
            }
            match m - i0 {
                5 => tile::<5>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0)),
                4 => tile::<4>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0)),
                3 => tile::<3>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0)),
                2 => tile::<2>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0)),
                1 => tile::<1>(k, n, ap.add(i0 * k), bp.add(j0), cp.add(i0 * n + j0)),
                _ => {}
            }
        }
    }

    /// C[R×16] = A[R×k] · B[k×16] at the given corners (row strides k for A, n for B and C).
    #[inline(always)]
    unsafe fn tile<const R: usize>(k: usize, n: usize, a: *const f32, b: *const f32, c: *mut f32) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for kk in 0..k {
            let row = b.add(kk * n);
            let (b0, b1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
            for (r, acc) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*a.add(r * k + kk));
                acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
            }
        }
        for (r, acc) in acc.iter().enumerate() {
            _mm256_storeu_ps(c.add(r * n), acc[0]);
            _mm256_storeu_ps(c.add(r * n + 8), acc[1]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_gemm_matches_the_gemm_at_every_row_tail() {
        let values =
            |n: usize, seed: usize| (0..n).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0).collect::<Vec<f32>>();
        for (m, k, n) in [(1, 5, 16), (2, 128, 512), (3, 7, 32), (4, 1, 16), (7, 33, 48), (32, 128, 512), (5, 9, 20)] {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
            sgemm_small(m, k, n, &a, &b, &mut got);
            sgemm(m, k, n, 1.0, &a, false, &b, false, 0.0, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}×{k}×{n}: {g} vs {w}");
            }
        }
    }
}
