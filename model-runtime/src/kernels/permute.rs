//! Keras `Permute(dims)`: the per-sample axes of a row-major tensor reordered. The compiler passes the
//! output's per-sample dimensions and, for each output axis, the stride in the input of the axis it takes
//! (`Permutation`), so forward gathers and backward scatters with no index tables built at run time.

use super::GradWrite;

/// A permutation of a sample's axes as seen from the output.
#[derive(Clone, Copy, Debug)]
pub struct Permutation<'a> {
    /// The output's per-sample dimensions.
    pub out_dims: &'a [usize],
    /// For output axis `k`: the input stride of the input axis it takes.
    pub src_strides: &'a [usize],
}

impl Permutation<'_> {
    /// Elements per sample.
    pub fn numel(&self) -> usize {
        self.out_dims.iter().product()
    }

    /// Calls `f(output offset, input offset)` for every element of one sample, in output order.
    fn for_each(&self, mut f: impl FnMut(usize, usize)) {
        let (Some(&last), Some(&step)) = (self.out_dims.last(), self.src_strides.last()) else {
            return;
        };
        let outer_axes = self.out_dims.len() - 1;
        let rows = self.numel().checked_div(last).unwrap_or(0);
        for row in 0..rows {
            let (mut rem, mut base) = (row, 0usize);
            for (&d, &s) in self.out_dims[..outer_axes].iter().zip(&self.src_strides[..outer_axes]).rev() {
                base += (rem % d) * s;
                rem /= d;
            }
            for j in 0..last {
                f(row * last + j, base + j * step);
            }
        }
    }
}

/// `y[b][out] = x[b][src]` for every sample `b < batch`.
pub fn forward(p: &Permutation<'_>, x: &[f32], y: &mut [f32], batch: usize) {
    let n = p.numel();
    debug_assert!(x.len() >= batch * n && y.len() >= batch * n);
    for (xs, ys) in x.chunks_exact(n).zip(y.chunks_exact_mut(n)).take(batch) {
        p.for_each(|o, s| ys[o] = xs[s]);
    }
}

/// `dx[b][src] (+)= dy[b][out]` (`=` when `write` is [`GradWrite::Set`]: the permutation writes every
/// element of `dx` exactly once).
pub fn backward(p: &Permutation<'_>, dy: &[f32], dx: &mut [f32], batch: usize, write: GradWrite) {
    let n = p.numel();
    debug_assert!(dx.len() >= batch * n && dy.len() >= batch * n);
    for (dys, gs) in dy.chunks_exact(n).zip(dx.chunks_exact_mut(n)).take(batch) {
        match write {
            GradWrite::Add => p.for_each(|o, s| gs[s] += dys[o]),
            GradWrite::Set => p.for_each(|o, s| gs[s] = dys[o]),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// (out_dims, src_strides) of input `dims` permuted by 0-based `perm`.
    fn plan(dims: &[usize], perm: &[usize]) -> (Vec<usize>, Vec<usize>) {
        let strides: Vec<usize> = (0..dims.len()).map(|a| dims[a + 1..].iter().product()).collect();
        (perm.iter().map(|&a| dims[a]).collect(), perm.iter().map(|&a| strides[a]).collect())
    }

    fn run(dims: &[usize], perm: &[usize], x: &[f32], batch: usize) -> Vec<f32> {
        let (o, s) = plan(dims, perm);
        let p = Permutation { out_dims: &o, src_strides: &s };
        let mut y = vec![f32::NAN; x.len()];
        forward(&p, x, &mut y, batch);
        y
    }

    #[test]
    fn forward_transposes_a_matrix_per_sample() {
        // Two samples of [[1, 2, 3], [4, 5, 6]] and [[7, 8, 9], [10, 11, 12]] transposed.
        let x: Vec<f32> = (1..=12).map(|v| v as f32).collect();
        let y = run(&[2, 3], &[1, 0], &x, 2);
        assert_eq!(y, [1.0, 4.0, 2.0, 5.0, 3.0, 6.0, 7.0, 10.0, 8.0, 11.0, 9.0, 12.0]);
    }

    #[test]
    fn forward_of_rank_three_moves_each_element_to_its_permuted_index() {
        let dims = [2, 3, 4];
        let x: Vec<f32> = (0..24).map(|v| v as f32).collect();
        for perm in [[0, 1, 2], [2, 0, 1], [1, 2, 0], [2, 1, 0], [0, 2, 1]] {
            let y = run(&dims, &perm, &x, 1);
            let od: Vec<usize> = perm.iter().map(|&a| dims[a]).collect();
            for (i, v) in y.iter().enumerate() {
                let oc = [i / (od[1] * od[2]), (i / od[2]) % od[1], i % od[2]];
                let mut ic = [0; 3];
                for k in 0..3 {
                    ic[perm[k]] = oc[k];
                }
                assert_eq!(*v, (ic[0] * 12 + ic[1] * 4 + ic[2]) as f32, "perm {perm:?} at {i}");
            }
        }
    }

    #[test]
    fn backward_matches_finite_differences_set_and_add() {
        let mut rng = Rng::new(43);
        let batch = 2;
        let cases: [(&[usize], &[usize]); 4] = [(&[3, 4], &[1, 0]), (&[2, 3, 4], &[2, 0, 1]), (&[2, 1, 3, 2], &[3, 1, 0, 2]), (&[5], &[0])];
        for (dims, perm) in cases {
            let n: usize = dims.iter().product();
            let x = random_vec(&mut rng, batch * n, -1.0, 1.0);
            let r = random_vec(&mut rng, batch * n, -1.0, 1.0);
            let (o, s) = plan(dims, perm);
            let p = Permutation { out_dims: &o, src_strides: &s };
            let mut add = vec![0.5; x.len()];
            backward(&p, &r, &mut add, batch, GradWrite::Add);
            let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
            let mut set = vec![f32::NAN; x.len()];
            backward(&p, &r, &mut set, batch, GradWrite::Set);
            let loss = |x: &[f32]| weighted_sum(&r, &run(dims, perm, x, batch));
            check_grad(&format!("permute {dims:?} {perm:?} add"), &x, &add, 1e-3, loss);
            check_grad(&format!("permute {dims:?} {perm:?} set"), &x, &set, 1e-3, loss);
        }
    }
}
