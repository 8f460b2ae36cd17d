//! C = A·B for a short A (a few dozen rows) and a B that stays in cache between calls, read where it
//! lies: no packing, no planning, no scratch. A recurrent layer runs one of these per time step (the
//! batch's states times the recurrent kernel), 64 times per call on the same B, where packing a panel
//! of B again at every call is a cost [`super::sgemm`] cannot avoid.
//!
//! [`sgemm_small_sum`] adds the products of several (A, B) pairs into one C in the same register
//! tiles, and reads A with a row stride: the inference forward of a recurrent layer computes a step's
//! input projection (rows of the sequence, one step apart) and its recurrent product in one pass,
//! without an array of all steps' projections.
//!
//! AVX2 + FMA register tiles of 6 rows × 16 columns (twelve accumulators): for each 16-column strip of
//! B, every row tile of A. A row-major B's strip is k cache lines one row of B apart: for widths of
//! 256 or 512 floats those lines fall in 2 to 4 of L1's 64 sets, which hold 16 to 32 of them, so a
//! strip of more rows does not stay in L1 between row tiles and every tile reads it from L2 again.
//! [`pack_small`] lays B out strip by strip (each strip k×16 contiguous), once for all the calls that
//! read the same B (a recurrent layer's 64 steps), and the tiles then find the strip in L1. The
//! rows left after the 6-row tiles go in tiles of at least 3 rows (32 rows: four tiles of 6 and two of
//! 4), since a tile of 1 or 2 rows has too few accumulators to hide the FMA latency. Without
//! AVX2 + FMA, inside a bf16 scope ([`super::Bf16Scope`], whose rounding only the GEMM applies), or
//! for a width that is not a multiple of 16, it calls [`super::sgemm_view`].

use super::{bf16, sgemm_view, View};

/// One (A, B) pair of [`sgemm_small_sum`]: A is m×k with row i at `a[i·lda..][..k]`, B is k×n,
/// row-major and contiguous or, when `packed`, as [`pack_small`] lays it out.
#[derive(Clone, Copy, Debug)]
pub struct SmallPart<'a> {
    /// A's values.
    pub a: &'a [f32],
    /// Distance between A's rows (≥ k).
    pub lda: usize,
    /// Inner size.
    pub k: usize,
    /// B's values, k×n.
    pub b: &'a [f32],
    /// Whether `b` is in [`pack_small`]'s layout (n must then be a multiple of 16).
    pub packed: bool,
}

/// C (m×n) = A (m×k) · B (k×n), all row-major and contiguous.
///
/// # Panics
/// When an operand is shorter than its shape.
pub fn sgemm_small(m: usize, k: usize, n: usize, a: &[f32], b: &[f32], c: &mut [f32]) {
    sgemm_small_sum(m, n, &[SmallPart { a, lda: k, k, b, packed: false }], c);
}

/// Lays B (k×n, n a multiple of 16) out for [`SmallPart::packed`]: strip by strip of 16 columns, each
/// strip's k rows of 16 values contiguous (`out[(j / 16)·16k + i·16 + j % 16]` = B(i, j)). `b` holds B
/// row-major, or with `trans` Bᵀ row-major (n×k: a recurrent kernel for the state's gradient).
///
/// # Panics
/// When n is not a multiple of 16 or a slice is shorter than k·n.
pub fn pack_small(k: usize, n: usize, b: &[f32], trans: bool, out: &mut [f32]) {
    assert!(n.is_multiple_of(16) && b.len() >= k * n && out.len() >= k * n, "pack_small: {k}×{n}");
    if k == 0 {
        return;
    }
    for (s, strip) in out[..k * n].chunks_exact_mut(16 * k).enumerate() {
        let j0 = 16 * s;
        for (i, row) in strip.chunks_exact_mut(16).enumerate() {
            match trans {
                false => row.copy_from_slice(&b[i * n + j0..][..16]),
                true => row.iter_mut().enumerate().for_each(|(j, v)| *v = b[(j0 + j) * k + i]),
            }
        }
    }
}

/// C (m×n, row-major, contiguous) = Σ A·B over `parts` (C = 0 when there are none).
///
/// # Panics
/// When an operand is shorter than its shape or a part's `lda` is below its `k`.
pub fn sgemm_small_sum(m: usize, n: usize, parts: &[SmallPart<'_>], c: &mut [f32]) {
    assert!(c.len() >= m * n, "sgemm_small: C shorter than {m}×{n}");
    for p in parts {
        let a_len = if m == 0 || p.k == 0 { 0 } else { (m - 1) * p.lda + p.k };
        assert!(p.lda >= p.k && p.a.len() >= a_len && p.b.len() >= p.k * n, "sgemm_small: operands shorter than {m}×{}×{n}", p.k);
        assert!(!p.packed || n.is_multiple_of(16), "sgemm_small: a packed B needs a width that is a multiple of 16, not {n}");
    }
    #[cfg(target_arch = "x86_64")]
    if n.is_multiple_of(16)
        && parts.len() <= avx2::MAX_PARTS
        && is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && bf16::active().is_none()
    {
        // SAFETY: the CPU has AVX2 and FMA; the lengths are checked above.
        return unsafe { avx2::gemm(m, n, parts, c) };
    }
    let _ = bf16::active;
    let c = &mut c[..m * n];
    if parts.is_empty() {
        c.fill(0.0);
    }
    for (i, p) in parts.iter().enumerate() {
        let beta = if i == 0 { 0.0 } else { 1.0 };
        if p.k == 0 {
            if i == 0 {
                c.fill(0.0);
            }
            continue;
        }
        let a = View { data: p.a, rows: m, cols: p.k, rs: p.lda, cs: 1 };
        match p.packed {
            false => sgemm_view(1.0, a, View::new(p.b, p.k, n, false), beta, c, n),
            true => {
                for (s, strip) in p.b[..p.k * n].chunks_exact(16 * p.k).enumerate() {
                    sgemm_view(1.0, a, View::new(strip, p.k, 16, false), beta, &mut c[16 * s..], n);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::SmallPart;
    use std::arch::x86_64::*;

    /// The most pairs the register tiles take.
    pub(super) const MAX_PARTS: usize = 4;

    /// One pair as the tiles read it: A's first row, its stride, k, B's start, the distance between
    /// B's rows and between its 16-column strips (row-major: n and 16; packed: 16 and 16k).
    #[derive(Clone, Copy)]
    struct Raw {
        a: *const f32,
        lda: usize,
        k: usize,
        b: *const f32,
        ldb: usize,
        strip: usize,
    }

    /// See [`super::sgemm_small_sum`]. Safety: AVX2 + FMA, n a multiple of 16, at most
    /// [`MAX_PARTS`] parts, operands long enough.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn gemm(m: usize, n: usize, parts: &[SmallPart<'_>], c: &mut [f32]) {
        let mut raw = [Raw { a: std::ptr::null(), lda: 0, k: 0, b: std::ptr::null(), ldb: 0, strip: 0 }; MAX_PARTS];
        for (r, p) in raw.iter_mut().zip(parts) {
            let (ldb, strip) = if p.packed { (16, 16 * p.k) } else { (n, 16) };
            *r = Raw { a: p.a.as_ptr(), lda: p.lda, k: p.k, b: p.b.as_ptr(), ldb, strip };
        }
        let raw = &raw[..parts.len()];
        let cp = c.as_mut_ptr();
        // Row tiles: sixes, then what is left in tiles of 3 to 5 rows (or fewer when m < 3).
        let (mut sixes, mut rest) = (m / 6, m % 6);
        if sixes > 0 && rest > 0 && rest < 3 {
            sixes -= 1;
            rest += 6;
        }
        let (t1, t2) = if rest > 6 { (4, rest - 4) } else { (rest, 0) };
        for j0 in (0..n).step_by(16) {
            for t in 0..sixes {
                tile::<6>(raw, t * 6, n, j0, cp.add(t * 6 * n + j0));
            }
            let i0 = sixes * 6;
            for (start, rows) in [(i0, t1), (i0 + t1, t2)] {
                let cc = cp.add(start * n + j0);
                match rows {
                    5 => tile::<5>(raw, start, n, j0, cc),
                    4 => tile::<4>(raw, start, n, j0, cc),
                    3 => tile::<3>(raw, start, n, j0, cc),
                    2 => tile::<2>(raw, start, n, j0, cc),
                    1 => tile::<1>(raw, start, n, j0, cc),
                    _ => {}
                }
            }
        }
    }

    /// C[R×16] = Σ A[i0.., R×k] · B[k×16 at column j0] over the parts (C's row stride n).
    #[inline(always)]
    unsafe fn tile<const R: usize>(parts: &[Raw], i0: usize, n: usize, j0: usize, c: *mut f32) {
        let mut acc = [[_mm256_setzero_ps(); 2]; R];
        for p in parts {
            let (a, b) = (p.a.add(i0 * p.lda), p.b.add(j0 / 16 * p.strip));
            for kk in 0..p.k {
                let row = b.add(kk * p.ldb);
                let (b0, b1) = (_mm256_loadu_ps(row), _mm256_loadu_ps(row.add(8)));
                for (r, acc) in acc.iter_mut().enumerate() {
                    let av = _mm256_broadcast_ss(&*a.add(r * p.lda + kk));
                    acc[0] = _mm256_fmadd_ps(av, b0, acc[0]);
                    acc[1] = _mm256_fmadd_ps(av, b1, acc[1]);
                }
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
    use super::super::sgemm;
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0).collect()
    }

    #[test]
    fn small_gemm_matches_the_gemm_at_every_row_tail() {
        for (m, k, n) in
            [(1, 5, 16), (2, 128, 512), (3, 7, 32), (4, 1, 16), (7, 33, 48), (8, 3, 16), (13, 9, 32), (32, 128, 512), (5, 9, 20)]
        {
            let (a, b) = (values(m * k, 1), values(k * n, 2));
            let (mut got, mut want) = (vec![0.0; m * n], vec![0.0; m * n]);
            sgemm_small(m, k, n, &a, &b, &mut got);
            sgemm(m, k, n, 1.0, &a, false, &b, false, 0.0, &mut want);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}×{k}×{n}: {g} vs {w}");
            }
        }
    }

    #[test]
    fn a_sum_of_strided_products_matches_the_gemm_of_the_gathered_rows() {
        // A1 is every third row of a wider matrix (stride 3·k1 + 2), A2 contiguous; C = A1·B1 + A2·B2.
        for (m, k1, k2, n) in [(32, 64, 128, 512), (1, 64, 64, 256), (7, 5, 9, 48), (8, 0, 3, 16), (5, 4, 6, 20)] {
            let lda = 3 * k1 + 2;
            let a1 = values(m * lda, 3);
            let (b1, a2, b2) = (values(k1 * n, 4), values(m * k2, 5), values(k2 * n, 6));
            let gathered: Vec<f32> = (0..m).flat_map(|i| a1[i * lda..i * lda + k1].to_vec()).collect();
            let mut want = vec![0.0; m * n];
            sgemm(m, k1, n, 1.0, &gathered, false, &b1, false, 0.0, &mut want);
            sgemm(m, k2, n, 1.0, &a2, false, &b2, false, 1.0, &mut want);
            let mut got = vec![f32::NAN; m * n];
            let parts =
                [SmallPart { a: &a1, lda, k: k1, b: &b1, packed: false }, SmallPart { a: &a2, lda: k2, k: k2, b: &b2, packed: false }];
            sgemm_small_sum(m, n, &parts, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "{m}×({k1}+{k2})×{n}: {g} vs {w}");
            }
            if n % 16 != 0 {
                continue;
            }
            // The same with B1 packed and B2 packed from its transpose.
            let b2t: Vec<f32> = (0..n).flat_map(|j| (0..k2).map(|i| b2[i * n + j]).collect::<Vec<_>>()).collect();
            let (mut p1, mut p2) = (vec![0.0; k1 * n], vec![0.0; k2 * n]);
            pack_small(k1, n, &b1, false, &mut p1);
            pack_small(k2, n, &b2t, true, &mut p2);
            let parts =
                [SmallPart { a: &a1, lda, k: k1, b: &p1, packed: true }, SmallPart { a: &a2, lda: k2, k: k2, b: &p2, packed: true }];
            let mut got = vec![f32::NAN; m * n];
            sgemm_small_sum(m, n, &parts, &mut got);
            for (g, w) in got.iter().zip(&want) {
                assert!((g - w).abs() <= 1e-4 * (1.0 + w.abs()), "packed {m}×({k1}+{k2})×{n}: {g} vs {w}");
            }
        }
    }
}
