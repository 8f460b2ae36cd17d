//! Keras `Dot(axes, normalize)`: a per-sample product contracting one axis of each operand
//! (`batch_dot`), optionally of the l2-normalized operands (cosine similarity), and its backward.
//!
//! Each sample of `x` is viewed as an m×k matrix and each sample of `y` as a k×n matrix through
//! strides, so any choice of contracted axis of a rank-1 or rank-2 sample needs no transpose copy.
//! The output sample is the row-major m×n product.

/// Keras' `backend.epsilon()`: the smallest norm `normalize` divides by.
pub const EPSILON: f32 = 1e-7;

/// How one sample of each operand is read: element (i, c) of x at `i * x_row + c * x_red`,
/// element (c, j) of y at `c * y_red + j * y_col`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DotLayout {
    /// Rows of the x view (x's elements per sample / k).
    pub m: usize,
    /// Length of the contracted axis.
    pub k: usize,
    /// Columns of the y view.
    pub n: usize,
    /// Stride of x along its kept axis.
    pub x_row: usize,
    /// Stride of x along the contracted axis.
    pub x_red: usize,
    /// Stride of y along the contracted axis.
    pub y_red: usize,
    /// Stride of y along its kept axis.
    pub y_col: usize,
}

impl DotLayout {
    fn x_len(&self) -> usize {
        self.m * self.k
    }
    fn y_len(&self) -> usize {
        self.k * self.n
    }
}

/// Writes x / max(‖x‖, ε) along the contracted axis of every vector of `x` into `xh`:
/// `count` vectors per sample, vector `v` starting at `v * outer`, elements `step` apart.
fn normalize(x: &[f32], xh: &mut [f32], per_sample: usize, count: usize, outer: usize, k: usize, step: usize) {
    for (xs, hs) in x.chunks_exact(per_sample).zip(xh.chunks_exact_mut(per_sample)) {
        for v in 0..count {
            let at = |c: usize| v * outer + c * step;
            let sq: f32 = (0..k).map(|c| xs[at(c)] * xs[at(c)]).sum();
            let inv = 1.0 / sq.sqrt().max(EPSILON);
            for c in 0..k {
                hs[at(c)] = xs[at(c)] * inv;
            }
        }
    }
}

/// dx += d(normalize)(x)ᵀ · dh for one vector: (dh − h (h·dh)) / ‖x‖, or dh / ε below ε.
#[allow(clippy::too_many_arguments)]
fn normalize_backward(x: &[f32], h: &[f32], dh: &dyn Fn(usize) -> f32, dx: &mut [f32], base: usize, k: usize, step: usize) {
    let norm = (0..k).map(|c| x[base + c * step] * x[base + c * step]).sum::<f32>().sqrt();
    if norm > EPSILON {
        let proj: f32 = (0..k).map(|c| h[base + c * step] * dh(c)).sum();
        for c in 0..k {
            dx[base + c * step] += (dh(c) - h[base + c * step] * proj) / norm;
        }
    } else {
        for c in 0..k {
            dx[base + c * step] += dh(c) / EPSILON;
        }
    }
}

/// out = x · y per sample for `batch` samples. With `normalized = Some((xh, yh))` the operands are
/// first l2-normalized along the contracted axis into `xh` and `yh` (kept for backward).
pub fn forward(x: &[f32], y: &[f32], l: &DotLayout, batch: usize, normalized: Option<(&mut [f32], &mut [f32])>, out: &mut [f32]) {
    let (xl, yl, ol) = (l.x_len(), l.y_len(), l.m * l.n);
    debug_assert_eq!(x.len(), batch * xl);
    debug_assert_eq!(y.len(), batch * yl);
    debug_assert_eq!(out.len(), batch * ol);
    if xl == 0 || yl == 0 || ol == 0 {
        return;
    }
    let (x, y): (&[f32], &[f32]) = match normalized {
        Some((xh, yh)) => {
            normalize(x, xh, xl, l.m, l.x_row, l.k, l.x_red);
            normalize(y, yh, yl, l.n, l.y_col, l.k, l.y_red);
            (xh, yh)
        }
        None => (x, y),
    };
    for ((xs, ys), os) in x.chunks_exact(xl).zip(y.chunks_exact(yl)).zip(out.chunks_exact_mut(ol)) {
        for i in 0..l.m {
            for j in 0..l.n {
                let mut s = 0.0;
                for c in 0..l.k {
                    s += xs[i * l.x_row + c * l.x_red] * ys[c * l.y_red + j * l.y_col];
                }
                os[i * l.n + j] = s;
            }
        }
    }
}

/// The backward of [`forward`]: dx += dout · yᵀ and dy += xᵀ · dout (through the normalization when
/// `normalized` holds the forward's `xh`, `yh`), skipping an operand whose gradient is `None`.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    x: &[f32],
    y: &[f32],
    l: &DotLayout,
    batch: usize,
    normalized: Option<(&[f32], &[f32])>,
    dout: &[f32],
    dx: Option<&mut [f32]>,
    dy: Option<&mut [f32]>,
) {
    let (xl, yl, ol) = (l.x_len(), l.y_len(), l.m * l.n);
    debug_assert_eq!(dout.len(), batch * ol);
    if xl == 0 || yl == 0 || ol == 0 {
        return;
    }
    let (xv, yv) = match normalized {
        Some((xh, yh)) => (xh, yh),
        None => (x, y),
    };
    if let Some(dx) = dx {
        debug_assert_eq!(dx.len(), batch * xl);
        for b in 0..batch {
            let (ys, ds) = (&yv[b * yl..(b + 1) * yl], &dout[b * ol..(b + 1) * ol]);
            // d x̂[i, c] = Σ_j dout[i, j] · ŷ[c, j]
            let grad = |i: usize, c: usize| -> f32 { (0..l.n).map(|j| ds[i * l.n + j] * ys[c * l.y_red + j * l.y_col]).sum() };
            let dxs = &mut dx[b * xl..(b + 1) * xl];
            for i in 0..l.m {
                match normalized {
                    Some(_) => {
                        let (xs, hs) = (&x[b * xl..(b + 1) * xl], &xv[b * xl..(b + 1) * xl]);
                        normalize_backward(xs, hs, &|c| grad(i, c), dxs, i * l.x_row, l.k, l.x_red);
                    }
                    None => {
                        for c in 0..l.k {
                            dxs[i * l.x_row + c * l.x_red] += grad(i, c);
                        }
                    }
                }
            }
        }
    }
    if let Some(dy) = dy {
        debug_assert_eq!(dy.len(), batch * yl);
        for b in 0..batch {
            let (xs, ds) = (&xv[b * xl..(b + 1) * xl], &dout[b * ol..(b + 1) * ol]);
            // d ŷ[c, j] = Σ_i x̂[i, c] · dout[i, j]
            let grad = |c: usize, j: usize| -> f32 { (0..l.m).map(|i| xs[i * l.x_row + c * l.x_red] * ds[i * l.n + j]).sum() };
            let dys = &mut dy[b * yl..(b + 1) * yl];
            for j in 0..l.n {
                match normalized {
                    Some(_) => {
                        let (ysr, hs) = (&y[b * yl..(b + 1) * yl], &yv[b * yl..(b + 1) * yl]);
                        normalize_backward(ysr, hs, &|c| grad(c, j), dys, j * l.y_col, l.k, l.y_red);
                    }
                    None => {
                        for c in 0..l.k {
                            dys[c * l.y_red + j * l.y_col] += grad(c, j);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// Layouts: vectors (k=5), (3,4)·(4,2) contracting x axis 1 / y axis 0, and (4,3)·(2,4)
    /// contracting x axis 0 / y axis 1.
    fn layouts() -> Vec<DotLayout> {
        vec![
            DotLayout { m: 1, k: 5, n: 1, x_row: 0, x_red: 1, y_red: 1, y_col: 0 },
            DotLayout { m: 3, k: 4, n: 2, x_row: 4, x_red: 1, y_red: 2, y_col: 1 },
            DotLayout { m: 3, k: 4, n: 2, x_row: 1, x_red: 3, y_red: 1, y_col: 4 },
        ]
    }

    #[test]
    fn vectors_give_their_dot_product_and_cosine_when_normalized() {
        let l = DotLayout { m: 1, k: 3, n: 1, x_row: 0, x_red: 1, y_red: 1, y_col: 0 };
        let (x, y) = ([1.0, 2.0, 2.0, 0.0, 0.0, 0.0], [2.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let mut out = [0.0; 2];
        forward(&x, &y, &l, 2, None, &mut out);
        assert_eq!(out, [4.0, 0.0]);
        let (mut xh, mut yh) = ([0.0; 6], [0.0; 6]);
        forward(&x, &y, &l, 2, Some((&mut xh, &mut yh)), &mut out);
        assert!((out[0] - 4.0 / (3.0 * 5f32.sqrt())).abs() < 1e-6, "{out:?}");
        assert_eq!(out[1], 0.0, "a zero vector stays zero (its norm is clamped to epsilon)");
    }

    #[test]
    fn matrix_layouts_match_a_reference_product() {
        let mut rng = Rng::new(3);
        let l = layouts()[2];
        let (x, y) = (random_vec(&mut rng, 12, -1.0, 1.0), random_vec(&mut rng, 8, -1.0, 1.0));
        let mut out = vec![0.0; 6];
        forward(&x, &y, &l, 1, None, &mut out);
        // x is (4, 3) contracted on axis 0; y is (2, 4) contracted on axis 1: out[i, j] = Σ_c x[c, i] y[j, c].
        for i in 0..3 {
            for j in 0..2 {
                let want: f32 = (0..4).map(|c| x[c * 3 + i] * y[j * 4 + c]).sum();
                assert!((out[i * 2 + j] - want).abs() < 1e-6);
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences_with_and_without_normalization() {
        let mut rng = Rng::new(17);
        let batch = 2;
        for l in layouts() {
            for norm in [false, true] {
                let x = random_vec(&mut rng, batch * l.m * l.k, -1.0, 1.0);
                let y = random_vec(&mut rng, batch * l.k * l.n, -1.0, 1.0);
                let r = random_vec(&mut rng, batch * l.m * l.n, -1.0, 1.0);
                let run = |x: &[f32], y: &[f32]| {
                    let mut out = vec![0.0; r.len()];
                    let (mut xh, mut yh) = (vec![0.0; x.len()], vec![0.0; y.len()]);
                    forward(x, y, &l, batch, norm.then_some((&mut xh[..], &mut yh[..])), &mut out);
                    (weighted_sum(&r, &out), xh, yh)
                };
                let (_, xh, yh) = run(&x, &y);
                let (mut dx, mut dy) = (vec![0.0; x.len()], vec![0.0; y.len()]);
                backward(&x, &y, &l, batch, norm.then_some((&xh[..], &yh[..])), &r, Some(&mut dx), Some(&mut dy));
                check_grad(&format!("dot dx {l:?} norm {norm}"), &x, &dx, 1e-2, |xi| run(xi, &y).0);
                check_grad(&format!("dot dy {l:?} norm {norm}"), &y, &dy, 1e-2, |yi| run(&x, yi).0);
            }
        }
    }
}
