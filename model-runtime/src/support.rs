//! Small helpers that only generated code calls (not a user API).

use ndarray::{Array, Dimension};

/// Splits `s` into `K` consecutive disjoint mutable slices of the given lengths
/// (a layer's parameter gradients: kernel, bias, ...).
pub fn split_mut<const K: usize>(s: &mut [f32], lens: [usize; K]) -> [&mut [f32]; K] {
    let mut rest = s;
    lens.map(|n| {
        let (head, tail) = std::mem::take(&mut rest).split_at_mut(n);
        rest = tail;
        head
    })
}

/// Model input `i` of an inference pass: where the caller holds it when the runtime passed it in
/// `direct`, else its staging buffer `staged`.
#[inline]
pub fn input_or<'a>(direct: &[Option<&'a [f32]>], i: usize, staged: &'a [f32]) -> &'a [f32] {
    match direct.get(i) {
        Some(Some(x)) => x,
        _ => staged,
    }
}

/// Two distinct buffers of `bufs`, both mutable (`a != b`; a layer's two scratch buffers).
///
/// # Panics
/// When `a == b` or either is out of range (the compiler never emits that).
pub fn pair_mut(bufs: &mut [Vec<f32>], a: usize, b: usize) -> (&mut [f32], &mut [f32]) {
    assert!(a != b, "pair_mut: the same buffer twice");
    if a < b {
        let (lo, hi) = bufs.split_at_mut(b);
        (&mut lo[a][..], &mut hi[0][..])
    } else {
        let (lo, hi) = bufs.split_at_mut(a);
        (&mut hi[0][..], &mut lo[b][..])
    }
}

/// Builds an output array of `shape` from its row-major data; a length mismatch (which the
/// runtime rules out) gives zeros rather than a panic.
pub fn array_from<D: Dimension>(data: Option<Vec<f32>>, shape: D) -> Array<f32, D> {
    let data = data.unwrap_or_default();
    match Array::from_shape_vec(shape.clone(), data) {
        Ok(a) => a,
        Err(_) => Array::zeros(shape),
    }
}

/// Copies one output's row-major `data` into `out`, reusing its storage when it already has
/// `shape` (the steady state of `predict_into`), replacing it otherwise.
pub fn fill_output<D: Dimension>(out: &mut Array<f32, D>, data: &[f32], shape: D) {
    if out.raw_dim() == shape && out.is_standard_layout() {
        if let Some(dst) = out.as_slice_mut() {
            if dst.len() == data.len() {
                dst.copy_from_slice(data);
                return;
            }
        }
    }
    *out = array_from(Some(data.to_vec()), shape);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_mut_gives_consecutive_disjoint_slices() {
        let mut v: Vec<f32> = (0..6).map(|x| x as f32).collect();
        let [a, b, c] = split_mut(&mut v, [2, 3, 1]);
        assert_eq!((a.len(), b.len(), c.len()), (2, 3, 1));
        a[0] = 10.0;
        c[0] = 50.0;
        assert_eq!(b, &[2.0, 3.0, 4.0]);
        assert_eq!(v, vec![10.0, 1.0, 2.0, 3.0, 4.0, 50.0]);
    }

    #[test]
    fn fill_output_reuses_storage_of_the_right_shape() {
        let mut out = ndarray::Array2::<f32>::zeros((1, 1));
        fill_output(&mut out, &[1.0, 2.0], ndarray::Dim([2, 1]));
        assert_eq!(out.as_slice().unwrap(), [1.0, 2.0]);
        let ptr = out.as_ptr();
        fill_output(&mut out, &[3.0, 4.0], ndarray::Dim([2, 1]));
        assert_eq!((out.as_slice().unwrap(), out.as_ptr()), (&[3.0, 4.0][..], ptr));
    }

    #[test]
    fn array_from_builds_the_declared_shape() {
        let a = array_from(Some(vec![1.0, 2.0, 3.0, 4.0]), ndarray::Dim([2, 2]));
        assert_eq!(a[[1, 0]], 3.0);
    }
}
