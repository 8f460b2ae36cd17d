//! Keras `Dropout(rate)`: in training, each element is zeroed with probability `rate` and the kept ones
//! scaled by 1 / (1 − rate) (inverted dropout); in inference, the identity. The mask comes from a
//! stateless hash of (layer seed, training step, element index), kept in a scratch buffer for backward.
//! Elements are numbered within the global batch, so the ranks of a data-parallel step, each holding a
//! share of the rows, draw together exactly the masks one process draws for the whole batch.

use crate::init::hash_uniform;

/// The mask stream of one layer at one training step (also the attention layers' dropout stream).
pub(crate) fn stream(seed: u64, step: u64) -> u64 {
    seed ^ step.wrapping_mul(0x9E37_79B9_7F4A_7C15).rotate_left(17)
}

/// The dropout factor of element `idx` of `stream`: 0 (dropped, probability `rate`) or 1 / (1 − rate).
pub(crate) fn keep_factor(stream: u64, idx: u64, rate: f32) -> f32 {
    if hash_uniform(stream, idx) >= rate {
        1.0 / (1.0 - rate)
    } else {
        0.0
    }
}

/// y = x ⊙ mask when `training` (mask written to `mask`: 0 or 1 / (1 − rate)), else y = x. `first` is
/// the number of `x[0]` among the elements of the global batch (0 unless `x` is a share of it).
#[allow(clippy::too_many_arguments)]
pub fn forward(rate: f32, seed: u64, step: u64, first: u64, training: bool, x: &[f32], mask: &mut [f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    if !training || rate <= 0.0 {
        y.copy_from_slice(x);
        return;
    }
    debug_assert!(mask.len() >= x.len());
    let s = stream(seed, step);
    for (i, ((yv, m), &xv)) in y.iter_mut().zip(mask.iter_mut()).zip(x).enumerate() {
        *m = keep_factor(s, first + i as u64, rate);
        *yv = xv * *m;
    }
}

/// dx += dy ⊙ mask when `training` (the mask of the last training forward), else dx += dy.
pub fn backward(rate: f32, training: bool, mask: &[f32], dy: &[f32], dx: &mut [f32]) {
    debug_assert_eq!(dy.len(), dx.len());
    if !training || rate <= 0.0 {
        dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += d);
    } else {
        dx.iter_mut().zip(dy).zip(mask).for_each(|((g, &d), &m)| *g += d * m);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inference_is_the_identity() {
        let x = [1.0, -2.0, 3.0];
        let (mut y, mut mask) = ([0.0; 3], [0.0; 3]);
        forward(0.5, 1, 7, 0, false, &x, &mut mask, &mut y);
        assert_eq!(y, x);
        let mut dx = [1.0; 3];
        backward(0.5, false, &mask, &[1.0, 2.0, 3.0], &mut dx);
        assert_eq!(dx, [2.0, 3.0, 4.0]);
    }

    #[test]
    fn training_drops_about_rate_and_scales_the_rest_preserving_the_mean() {
        let n = 20_000;
        let x = vec![1.0f32; n];
        let (mut y, mut mask) = (vec![0.0; n], vec![0.0; n]);
        forward(0.3, 5, 1, 0, true, &x, &mut mask, &mut y);
        let dropped = y.iter().filter(|v| **v == 0.0).count() as f64 / n as f64;
        assert!((dropped - 0.3).abs() < 0.02, "{dropped}");
        assert!(y.iter().all(|v| *v == 0.0 || (*v - 1.0 / 0.7).abs() < 1e-6));
        let mean = y.iter().map(|v| *v as f64).sum::<f64>() / n as f64;
        assert!((mean - 1.0).abs() < 0.03, "{mean}");
        // Backward routes exactly through the same mask: the derivative of y = x ⊙ mask.
        let mut dx = vec![0.0; n];
        backward(0.3, true, &mask, &vec![2.0; n], &mut dx);
        assert!(dx.iter().zip(&y).all(|(g, v)| (*g - 2.0 * v).abs() < 1e-6));
    }

    #[test]
    fn masks_are_reproducible_per_step_and_differ_across_steps_and_seeds() {
        let x = vec![1.0f32; 256];
        let run = |seed: u64, step: u64| {
            let (mut y, mut m) = (vec![0.0; 256], vec![0.0; 256]);
            forward(0.5, seed, step, 0, true, &x, &mut m, &mut y);
            y
        };
        assert_eq!(run(1, 3), run(1, 3));
        assert_ne!(run(1, 3), run(1, 4));
        assert_ne!(run(1, 3), run(2, 3));
    }

    #[test]
    fn shares_of_a_batch_draw_the_masks_of_the_whole_batch() {
        let x: Vec<f32> = (0..96).map(|i| i as f32).collect();
        let (mut whole, mut m) = (vec![0.0; 96], vec![0.0; 96]);
        forward(0.4, 9, 2, 0, true, &x, &mut m, &mut whole);
        // Three ranks of 40, 24 and 32 elements (5, 3 and 4 rows of 8).
        let mut joined = Vec::new();
        for (start, end) in [(0, 40), (40, 64), (64, 96)] {
            let (mut y, mut m) = (vec![0.0; end - start], vec![0.0; end - start]);
            forward(0.4, 9, 2, start as u64, true, &x[start..end], &mut m, &mut y);
            joined.extend(y);
        }
        assert_eq!(joined, whole);
    }
}
