//! Keras `Flatten` and `Reshape`: the flat row-major data is unchanged, so forward is a copy and
//! backward an accumulation (a copy for the gradient's first writer).

use super::GradWrite;

/// y = x (a reshape moves no element in row-major order).
pub fn forward(x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    y.copy_from_slice(x);
}

/// dx += dy (`=` when `write` is [`GradWrite::Set`]).
pub fn backward(dy: &[f32], dx: &mut [f32], write: GradWrite) {
    debug_assert_eq!(dy.len(), dx.len());
    match write {
        GradWrite::Add => dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += d),
        GradWrite::Set => dx.copy_from_slice(dy),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_copies_and_backward_accumulates_or_sets() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut y = [0.0; 4];
        forward(&x, &mut y);
        assert_eq!(y, x);
        let dy = [0.5, -1.0, 2.0, 0.0];
        let mut dx = [1.0; 4];
        backward(&dy, &mut dx, GradWrite::Add);
        assert_eq!(dx, [1.5, 0.0, 3.0, 1.0]);
        let mut dx = [f32::NAN; 4];
        backward(&dy, &mut dx, GradWrite::Set);
        assert_eq!(dx, dy);
    }
}
