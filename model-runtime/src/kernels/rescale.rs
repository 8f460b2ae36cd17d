//! Keras `Rescaling(scale, offset)`: y = x · scale + offset, elementwise (a multiply then an add in
//! float32, as Keras computes it), and its backward dx = scale · dy.

use super::GradWrite;

/// y = x · scale + offset.
pub fn forward(scale: f32, offset: f32, x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    y.iter_mut().zip(x).for_each(|(v, &xv)| *v = xv * scale + offset);
}

/// dx += scale · dy (`=` when `write` is [`GradWrite::Set`]).
pub fn backward(scale: f32, dy: &[f32], dx: &mut [f32], write: GradWrite) {
    debug_assert_eq!(dy.len(), dx.len());
    match write {
        GradWrite::Add => dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += scale * d),
        GradWrite::Set => dx.iter_mut().zip(dy).for_each(|(g, &d)| *g = scale * d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    #[test]
    fn rescaling_is_an_affine_map_and_its_backward_matches_finite_differences() {
        let (scale, offset) = (1.0 / 127.5, -1.0);
        let mut y = [0.0; 3];
        forward(scale, offset, &[0.0, 127.5, 255.0], &mut y);
        assert_eq!(y, [-1.0, 0.0, 1.0]);
        let mut rng = Rng::new(41);
        let x = random_vec(&mut rng, 12, -2.0, 2.0);
        let r = random_vec(&mut rng, 12, -1.0, 1.0);
        let run = |x: &[f32]| {
            let mut y = vec![0.0; x.len()];
            forward(-1.5, 0.25, x, &mut y);
            weighted_sum(&r, &y)
        };
        let mut add = vec![0.5; 12];
        backward(-1.5, &r, &mut add, GradWrite::Add);
        let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
        let mut set = vec![f32::NAN; 12];
        backward(-1.5, &r, &mut set, GradWrite::Set);
        check_grad("rescale add", &x, &add, 1e-3, run);
        check_grad("rescale set", &x, &set, 1e-3, run);
    }
}
