//! Keras `Masking(mask_value)` and the step masks of docs/masks.md: a mask is `batch · steps` values,
//! `1.0` for a kept step and `0.0` for a masked one. Forward writes the mask and the output (masked
//! steps set to 0, as Keras' `where(mask, x, 0)`); backward passes the gradient of kept steps only.
//! The compiler emits them for `Masking`, `Embedding(mask_zero = true)`, the merges and the losses of
//! masked outputs (docs/masks.md).

use super::GradWrite;

/// `mask[b, t] = any(x[b, t, :] != mask_value)`, `y[b, t, :] = mask[b, t] · x[b, t, :]`.
pub fn forward(x: &[f32], y: &mut [f32], mask: &mut [f32], batch: usize, steps: usize, features: usize, mask_value: f32) {
    debug_assert!(x.len() >= batch * steps * features && y.len() >= batch * steps * features && mask.len() >= batch * steps);
    if features == 0 {
        mask.iter_mut().take(batch * steps).for_each(|m| *m = 0.0);
        return;
    }
    for ((xs, ys), m) in x.chunks_exact(features).zip(y.chunks_exact_mut(features)).zip(mask.iter_mut()).take(batch * steps) {
        let keep = xs.iter().any(|&v| v != mask_value);
        *m = if keep { 1.0 } else { 0.0 };
        if keep {
            ys.copy_from_slice(xs);
        } else {
            ys.fill(0.0);
        }
    }
}

/// `dx[b, t, :] (+)= mask[b, t] · dy[b, t, :]` (`=` when `write` is [`GradWrite::Set`]).
pub fn backward(dy: &[f32], mask: &[f32], dx: &mut [f32], batch: usize, steps: usize, features: usize, write: GradWrite) {
    if features == 0 {
        return;
    }
    for ((ds, gs), &m) in dy.chunks_exact(features).zip(dx.chunks_exact_mut(features)).zip(mask).take(batch * steps) {
        match write {
            GradWrite::Add => gs.iter_mut().zip(ds).for_each(|(g, &d)| *g += m * d),
            GradWrite::Set => gs.iter_mut().zip(ds).for_each(|(g, &d)| *g = m * d),
        }
    }
}

/// The mask of a merge of masked tensors (Keras' `Merge.compute_mask`): `out[i] = 1` where any of
/// `masks` keeps step `i`.
pub fn any(masks: &[&[f32]], out: &mut [f32]) {
    out.fill(0.0);
    for m in masks {
        out.iter_mut().zip(m.iter()).for_each(|(o, &v)| *o = o.max(v));
    }
}

/// The mask of a concatenation along the steps (Keras' `Concatenate.compute_mask`): each row of `out`
/// (`Σ steps` long) is the operands' mask rows joined, all kept (1) for an operand without a mask.
/// `parts` are (mask `[batch, steps]` if any, steps) per operand.
pub fn concat(parts: &[(Option<&[f32]>, usize)], out: &mut [f32], batch: usize) {
    let total: usize = parts.iter().map(|p| p.1).sum();
    for (b, row) in out.chunks_exact_mut(total).take(batch).enumerate() {
        let mut at = 0;
        for &(m, steps) in parts {
            let dst = &mut row[at..at + steps];
            match m {
                Some(m) => dst.copy_from_slice(&m[b * steps..(b + 1) * steps]),
                None => dst.fill(1.0),
            }
            at += steps;
        }
    }
}

/// The mask of `Embedding(mask_zero = true)` over ids staged as floats: `mask[i] = 1` where `ids[i] != 0`.
pub fn from_float_ids(ids: &[f32], mask: &mut [f32]) {
    mask.iter_mut().zip(ids).for_each(|(m, &id)| *m = if id != 0.0 { 1.0 } else { 0.0 });
}

/// The mask of `Embedding(mask_zero = true)`: `mask[i] = 1` where `ids[i] != 0`.
pub fn from_ids(ids: &[i32], mask: &mut [f32]) {
    mask.iter_mut().zip(ids).for_each(|(m, &id)| *m = if id != 0 { 1.0 } else { 0.0 });
}

/// Keras 3's loss weights of a masked output (`apply_mask` for a mean reduction): `m · total / valid`,
/// `total` the mask's length and `valid` its kept steps, all 0 when no step is kept. A mean of the per-step
/// losses weighted by them is `Σ l·m / Σ m`.
pub fn loss_weights(mask: &[f32], weights: &mut [f32]) {
    let valid: f32 = mask.iter().sum();
    let scale = if valid > 0.0 { mask.len() as f32 / valid } else { 0.0 };
    weights.iter_mut().zip(mask).for_each(|(w, &m)| *w = m * scale);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    #[test]
    fn a_concatenation_along_the_steps_joins_the_masks_and_keeps_every_step_of_an_unmasked_operand() {
        // Two samples: a masked operand of 2 steps, an unmasked one of 1, a masked one of 3.
        let (a, c) = ([1.0, 0.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
        let mut out = [f32::NAN; 12];
        concat(&[(Some(&a), 2), (None, 1), (Some(&c), 3)], &mut out, 2);
        assert_eq!(out, [1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0, 0.0]);
    }

    #[test]
    fn masking_marks_steps_equal_to_the_value_everywhere_and_zeroes_them() {
        // Two samples of three steps, two features; mask_value 0.5.
        let x = [0.5, 0.5, 1.0, 0.5, 0.5, 0.5, 2.0, 3.0, 0.5, 0.5, 0.0, 0.5];
        let (mut y, mut m) = ([f32::NAN; 12], [f32::NAN; 6]);
        forward(&x, &mut y, &mut m, 2, 3, 2, 0.5);
        assert_eq!(m, [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]);
        assert_eq!(y, [0.0, 0.0, 1.0, 0.5, 0.0, 0.0, 2.0, 3.0, 0.0, 0.0, 0.0, 0.5]);
    }

    #[test]
    fn masking_backward_matches_finite_differences_set_and_add() {
        let mut rng = Rng::new(45);
        let (batch, steps, f) = (2, 4, 3);
        let mut x = random_vec(&mut rng, batch * steps * f, -1.0, 1.0);
        // Steps 1 and 6 equal the mask value (0.0) everywhere: masked.
        for t in [1, 6] {
            x[t * f..(t + 1) * f].fill(0.0);
        }
        let r = random_vec(&mut rng, x.len(), -1.0, 1.0);
        let mut mask = vec![0.0; batch * steps];
        let mut y = vec![0.0; x.len()];
        forward(&x, &mut y, &mut mask, batch, steps, f, 0.0);
        assert_eq!(mask.iter().filter(|m| **m == 0.0).count(), 2);
        let mut add = vec![0.5; x.len()];
        backward(&r, &mask, &mut add, batch, steps, f, GradWrite::Add);
        let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
        let mut set = vec![f32::NAN; x.len()];
        backward(&r, &mask, &mut set, batch, steps, f, GradWrite::Set);
        assert_eq!(add, set);
        // Keras' gradient at a masked step is 0 (`where`); elsewhere it is checked numerically, with the
        // masked steps held fixed.
        let kept: Vec<usize> = (0..x.len()).filter(|i| mask[i / f] == 1.0).collect();
        let xk: Vec<f32> = kept.iter().map(|&i| x[i]).collect();
        let gk: Vec<f32> = kept.iter().map(|&i| set[i]).collect();
        assert!((0..x.len()).filter(|i| mask[i / f] == 0.0).all(|i| set[i] == 0.0));
        check_grad("masking", &xk, &gk, 1e-3, |xs| {
            let mut full = x.clone();
            kept.iter().zip(xs).for_each(|(&i, &v)| full[i] = v);
            let (mut y, mut m) = (vec![0.0; full.len()], vec![0.0; batch * steps]);
            forward(&full, &mut y, &mut m, batch, steps, f, 0.0);
            weighted_sum(&r, &y)
        });
    }

    #[test]
    fn ids_mask_and_loss_weights_follow_keras() {
        let mut m = [f32::NAN; 5];
        from_ids(&[3, 0, 1, 0, 7], &mut m);
        assert_eq!(m, [1.0, 0.0, 1.0, 0.0, 1.0]);
        let mut w = [f32::NAN; 5];
        loss_weights(&m, &mut w);
        assert_eq!(w, [5.0 / 3.0, 0.0, 5.0 / 3.0, 0.0, 5.0 / 3.0]);
        loss_weights(&[0.0, 0.0], &mut w[..2]);
        assert_eq!(&w[..2], &[0.0, 0.0]);
    }
}
