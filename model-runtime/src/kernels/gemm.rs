//! Single-precision GEMM on flat row-major slices: `matrixmultiply` with strided transposes, plus a
//! matrix-vector fast path for one-row (batch-1) products.

/// C (m×n, row-major) = alpha·op(A)·op(B) + beta·C.
///
/// op(A) is m×k: `a` is stored m×k row-major, or k×m row-major when `trans_a`.
/// op(B) is k×n: `b` is stored k×n row-major, or n×k row-major when `trans_b`.
/// Transposes are expressed as strides, so they cost no copy. With `beta == 0` the old contents of
/// `c` are ignored entirely (even NaN). Allocates nothing.
///
/// # Panics
/// When a slice is shorter than its matrix (`a.len() < m*k`, `b.len() < k*n`, `c.len() < m*n`).
#[allow(clippy::too_many_arguments)]
pub fn sgemm(m: usize, k: usize, n: usize, alpha: f32, a: &[f32], trans_a: bool, b: &[f32], trans_b: bool, beta: f32, c: &mut [f32]) {
    // These checks guard the raw-pointer call below, so they are real asserts, not debug ones.
    assert!(a.len() >= m * k, "sgemm: a has {} elements, needs {}", a.len(), m * k);
    assert!(b.len() >= k * n, "sgemm: b has {} elements, needs {}", b.len(), k * n);
    assert!(c.len() >= m * n, "sgemm: c has {} elements, needs {}", c.len(), m * n);
    if m == 0 || n == 0 {
        return;
    }
    let c = &mut c[..m * n];
    if k == 0 || m == 1 {
        // A one-row op(A) is the same k contiguous values whether or not it is transposed.
        gemv_row(k, n, alpha, &a[..k], b, trans_b, beta, c);
        return;
    }
    let (rsa, csa) = if trans_a { (1, m) } else { (k, 1) };
    let (rsb, csb) = if trans_b { (1, k) } else { (n, 1) };
    // SAFETY: the asserts above guarantee every element addressed by (m, k, n) and the strides
    // below lies inside `a`, `b` and `c`; `c` is uniquely borrowed, so it aliases neither input.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            alpha,
            a.as_ptr(),
            rsa as isize,
            csa as isize,
            b.as_ptr(),
            rsb as isize,
            csb as isize,
            beta,
            c.as_mut_ptr(),
            n as isize,
            1,
        );
    }
}

/// c (1×n) = alpha·a (1×k)·op(B) + beta·c: the batch-1 path, plain loops the compiler vectorizes.
#[allow(clippy::too_many_arguments)]
fn gemv_row(k: usize, n: usize, alpha: f32, a: &[f32], b: &[f32], trans_b: bool, beta: f32, c: &mut [f32]) {
    if trans_b {
        // B stored n×k: c[j] = alpha·dot(a, B[j, :]) + beta·c[j].
        for (j, cj) in c.iter_mut().enumerate() {
            let d = alpha * dot(a, &b[j * k..(j + 1) * k]);
            *cj = if beta == 0.0 { d } else { d + beta * *cj };
        }
    } else {
        // B stored k×n: c = beta·c, then c += (alpha·a[p])·B[p, :] for every row p.
        scale(beta, c);
        for (p, &ap) in a.iter().enumerate() {
            let s = alpha * ap;
            for (cj, &bj) in c.iter_mut().zip(&b[p * n..(p + 1) * n]) {
                *cj += s * bj;
            }
        }
    }
}

/// c = beta·c, where beta == 0 writes zeros regardless of c's old contents.
fn scale(beta: f32, c: &mut [f32]) {
    if beta == 0.0 {
        c.fill(0.0);
    } else if beta != 1.0 {
        c.iter_mut().for_each(|v| *v *= beta);
    }
}

/// Dot product with eight independent accumulators so the loop vectorizes.
fn dot(x: &[f32], y: &[f32]) -> f32 {
    const LANES: usize = 8;
    let mut acc = [0.0f32; LANES];
    let xc = x.chunks_exact(LANES);
    let yc = y.chunks_exact(LANES);
    let (xr, yr) = (xc.remainder(), yc.remainder());
    for (xs, ys) in xc.zip(yc) {
        for l in 0..LANES {
            acc[l] += xs[l] * ys[l];
        }
    }
    let mut s: f32 = acc.iter().sum();
    for (a, b) in xr.iter().zip(yr) {
        s += a * b;
    }
    s
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
                        let mut c = c0.clone();
                        sgemm(m, k, n, alpha, &a, ta, &b, tb, beta, &mut c);
                        for (got, want) in c.iter().zip(&want) {
                            assert!(
                                (got - want).abs() <= 1e-5 * (1.0 + want.abs()),
                                "m={m} k={k} n={n} ta={ta} tb={tb} beta={beta}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn sgemm_with_beta_zero_ignores_nan_in_c() {
        let mut rng = Rng::new(3);
        for &(m, k, n) in &[(1, 4, 6), (1, 4, 6), (6, 5, 4), (2, 0, 2)] {
            for tb in [false, true] {
                let a = random(&mut rng, m * k);
                let b = random(&mut rng, k * n);
                let mut c = vec![f32::NAN; m * n];
                sgemm(m, k, n, 1.0, &a, false, &b, tb, 0.0, &mut c);
                assert!(c.iter().all(|v| v.is_finite()), "m={m} k={k} n={n}: {c:?}");
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
}
