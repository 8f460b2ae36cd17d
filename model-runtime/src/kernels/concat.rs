//! Keras `Concatenate` along one axis, and its backward.
//!
//! A tensor of shape `[outer..., axis, inner...]` is viewed as `outer` blocks; input `i` contributes
//! `inner[i]` contiguous elements to each block (its size from the concat axis to the end), and the
//! output block holds the inputs' parts one after another.

/// y = concatenation of `xs`: block `o` of `y` is block `o` of `xs[0]`, then of `xs[1]`, ...
/// where input `i` has `inner[i]` elements per block and there are `outer` blocks.
pub fn forward(xs: &[&[f32]], inner: &[usize], outer: usize, y: &mut [f32]) {
    debug_assert_eq!(xs.len(), inner.len());
    let total: usize = inner.iter().sum();
    debug_assert_eq!(y.len(), outer * total);
    if total == 0 {
        return;
    }
    for (o, block) in y.chunks_exact_mut(total).take(outer).enumerate() {
        let mut at = 0;
        for (x, &n) in xs.iter().zip(inner) {
            debug_assert_eq!(x.len(), outer * n);
            block[at..at + n].copy_from_slice(&x[o * n..(o + 1) * n]);
            at += n;
        }
    }
}

/// dx += the part of `dy` that came from one input: `inner` elements per block, starting at
/// `offset` within each of the `outer` blocks of `total_inner` elements.
pub fn backward(dy: &[f32], offset: usize, inner: usize, total_inner: usize, outer: usize, dx: &mut [f32]) {
    debug_assert!(offset + inner <= total_inner);
    debug_assert_eq!(dy.len(), outer * total_inner);
    debug_assert_eq!(dx.len(), outer * inner);
    if inner == 0 {
        return;
    }
    for (g, block) in dx.chunks_exact_mut(inner).zip(dy.chunks_exact(total_inner)) {
        for (g, &d) in g.iter_mut().zip(&block[offset..offset + inner]) {
            *g += d;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    /// Concatenation by full multi-index, independently of the block view.
    fn reference(xs: &[Vec<f32>], shapes: &[Vec<usize>], axis: usize) -> Vec<f32> {
        let mut yshape = shapes[0].clone();
        yshape[axis] = shapes.iter().map(|s| s[axis]).sum();
        let size: usize = yshape.iter().product();
        let mut y = vec![0.0; size];
        for (flat, out) in y.iter_mut().enumerate() {
            // Unravel the output index.
            let mut idx = vec![0; yshape.len()];
            let mut rem = flat;
            for d in (0..yshape.len()).rev() {
                idx[d] = rem % yshape[d];
                rem /= yshape[d];
            }
            // Find the input along the axis.
            let mut a = idx[axis];
            let mut i = 0;
            while a >= shapes[i][axis] {
                a -= shapes[i][axis];
                i += 1;
            }
            idx[axis] = a;
            let src = idx.iter().zip(&shapes[i]).fold(0, |acc, (&j, &n)| acc * n + j);
            *out = xs[i][src];
        }
        y
    }

    /// Cases: (shape of input 0 with axis size replaced per input, axis, axis sizes).
    fn cases() -> Vec<(Vec<usize>, usize, Vec<usize>)> {
        vec![
            (vec![3, 0], 1, vec![2, 5, 1]),       // [batch, features], last axis
            (vec![2, 0, 3, 2], 1, vec![1, 2]),    // image rows
            (vec![2, 3, 0, 2], 2, vec![2, 1, 3]), // image columns
            (vec![2, 3, 2, 0], 3, vec![3, 1]),    // channels
            (vec![0, 4], 0, vec![1, 2]),          // batch axis: outer = 1
        ]
    }

    #[test]
    fn forward_matches_index_reference_on_several_axes() {
        let mut rng = Rng::new(5);
        for (base, axis, sizes) in cases() {
            let shapes: Vec<Vec<usize>> = sizes
                .iter()
                .map(|&s| {
                    let mut sh = base.clone();
                    sh[axis] = s;
                    sh
                })
                .collect();
            let xs: Vec<Vec<f32>> = shapes.iter().map(|s| random_vec(&mut rng, s.iter().product(), -1.0, 1.0)).collect();
            let outer: usize = base[..axis].iter().product();
            let inner: Vec<usize> = shapes.iter().map(|s| s[axis..].iter().product()).collect();
            let refs: Vec<&[f32]> = xs.iter().map(|x| &x[..]).collect();
            let want = reference(&xs, &shapes, axis);
            let mut y = vec![f32::NAN; want.len()];
            forward(&refs, &inner, outer, &mut y);
            assert_eq!(y, want, "axis {axis} sizes {sizes:?}");

            // Gradients: finite differences of Σ r ⊙ y with respect to each input.
            let r = random_vec(&mut rng, y.len(), -1.0, 1.0);
            let total: usize = inner.iter().sum();
            let mut offset = 0;
            for i in 0..xs.len() {
                let mut dx = vec![0.25; xs[i].len()];
                backward(&r, offset, inner[i], total, outer, &mut dx);
                dx.iter_mut().for_each(|g| *g -= 0.25);
                let loss = |xi: &[f32]| {
                    let mut refs = refs.clone();
                    refs[i] = xi;
                    let mut y = vec![0.0; want.len()];
                    forward(&refs, &inner, outer, &mut y);
                    weighted_sum(&r, &y)
                };
                check_grad(&format!("concat axis {axis} input {i}"), &xs[i], &dx, 1e-2, loss);
                offset += inner[i];
            }
        }
    }
}
