//! Keras `RepeatVector(n)`: each sample's vector `x[b, :]` copied to `n` steps, `y[b, t, :] = x[b, :]`;
//! backward sums the steps' gradients, `dx[b, :] = Σ_t dy[b, t, :]`.

use super::GradWrite;

/// `y[b, t, f] = x[b, f]` for `b < batch`, `t < n`, `f < features`.
pub fn forward(x: &[f32], y: &mut [f32], batch: usize, n: usize, features: usize) {
    debug_assert!(x.len() >= batch * features && y.len() >= batch * n * features);
    for (xs, ys) in x.chunks_exact(features).zip(y.chunks_exact_mut(n * features)).take(batch) {
        for step in ys.chunks_exact_mut(features) {
            step.copy_from_slice(xs);
        }
    }
}

/// `dx[b, f] (+)= Σ_t dy[b, t, f]` (`=` when `write` is [`GradWrite::Set`]).
pub fn backward(dy: &[f32], dx: &mut [f32], batch: usize, n: usize, features: usize, write: GradWrite) {
    debug_assert!(dx.len() >= batch * features && dy.len() >= batch * n * features);
    for (gs, dys) in dx.chunks_exact_mut(features).zip(dy.chunks_exact(n * features)).take(batch) {
        if write == GradWrite::Set {
            gs.fill(0.0);
        }
        for step in dys.chunks_exact(features) {
            gs.iter_mut().zip(step).for_each(|(g, &d)| *g += d);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    #[test]
    fn forward_repeats_each_sample() {
        let mut y = [f32::NAN; 12];
        forward(&[1.0, 2.0, 3.0, 4.0], &mut y, 2, 3, 2);
        assert_eq!(y, [1.0, 2.0, 1.0, 2.0, 1.0, 2.0, 3.0, 4.0, 3.0, 4.0, 3.0, 4.0]);
    }

    #[test]
    fn backward_matches_finite_differences_set_and_add() {
        let mut rng = Rng::new(41);
        for (batch, n, f) in [(2, 3, 4), (1, 1, 5), (3, 4, 1)] {
            let x = random_vec(&mut rng, batch * f, -1.0, 1.0);
            let r = random_vec(&mut rng, batch * n * f, -1.0, 1.0);
            let run = |x: &[f32]| {
                let mut y = vec![f32::NAN; batch * n * f];
                forward(x, &mut y, batch, n, f);
                weighted_sum(&r, &y)
            };
            let mut add = vec![0.5; x.len()];
            backward(&r, &mut add, batch, n, f, GradWrite::Add);
            let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
            let mut set = vec![f32::NAN; x.len()];
            backward(&r, &mut set, batch, n, f, GradWrite::Set);
            check_grad(&format!("repeat {batch}x{n}x{f} add"), &x, &add, 1e-3, run);
            check_grad(&format!("repeat {batch}x{n}x{f} set"), &x, &set, 1e-3, run);
        }
    }
}
