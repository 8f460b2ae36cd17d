//! Keras `Flatten` and `Reshape`: the flat row-major data is unchanged, so forward is a copy and
//! backward an accumulation.

/// y = x (a reshape moves no element in row-major order).
pub fn forward(x: &[f32], y: &mut [f32]) {
    debug_assert_eq!(x.len(), y.len());
    y.copy_from_slice(x);
}

/// dx += dy.
pub fn backward(dy: &[f32], dx: &mut [f32]) {
    debug_assert_eq!(dy.len(), dx.len());
    dx.iter_mut().zip(dy).for_each(|(g, &d)| *g += d);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forward_copies_and_backward_accumulates() {
        let x = [1.0, 2.0, 3.0, 4.0];
        let mut y = [0.0; 4];
        forward(&x, &mut y);
        assert_eq!(y, x);
        let mut dx = [1.0; 4];
        backward(&[0.5, -1.0, 2.0, 0.0], &mut dx);
        assert_eq!(dx, [1.5, 0.0, 3.0, 1.0]);
    }
}
