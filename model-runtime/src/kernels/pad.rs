//! Keras `ZeroPadding1D/2D` and `Cropping1D/2D`, channels-last: each is the other's backward. A
//! [`Border2d`] names a small `[h, w, c]` sample inside a large one with `top`/`bottom` rows and
//! `left`/`right` columns around it; zero padding writes the small sample into the large one with a zero
//! border, cropping reads the small one out of the large one. A 1D op is the 2D op with height 1.

use super::GradWrite;

/// A channels-last `[h, w, c]` sample framed by a border: the large sample is
/// `[top + h + bottom, left + w + right, c]`. All fields are fixed by the compiler from static shapes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Border2d {
    /// Height of the small (unpadded, or cropped) sample.
    pub h: usize,
    /// Width of the small sample.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Rows above the small sample.
    pub top: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns left of it.
    pub left: usize,
    /// Columns right of it.
    pub right: usize,
}

impl Border2d {
    /// Elements of one small sample.
    pub fn small_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Elements of one large sample.
    pub fn large_len(&self) -> usize {
        (self.top + self.h + self.bottom) * self.large_row()
    }

    /// Elements of one row of the large sample.
    fn large_row(&self) -> usize {
        (self.left + self.w + self.right) * self.c
    }

    /// Per sample: the offset in the large sample of each small row's first element, with that small row.
    #[inline]
    fn rows(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let (row, inner) = (self.large_row(), self.w * self.c);
        (0..self.h).map(move |r| ((self.top + r) * row + self.left * self.c, r * inner))
    }
}

/// Writes the small samples `small` into the large ones `large`: `=` over the whole large sample (a zero
/// border) when `write` is [`GradWrite::Set`], else `+=` on the inner part only.
fn embed(g: &Border2d, small: &[f32], large: &mut [f32], batch: usize, write: GradWrite) {
    let (sl, ll, inner) = (g.small_len(), g.large_len(), g.w * g.c);
    debug_assert_eq!(small.len(), batch * sl);
    debug_assert_eq!(large.len(), batch * ll);
    if sl == 0 || ll == 0 {
        return;
    }
    for (s, l) in small.chunks_exact(sl).zip(large.chunks_exact_mut(ll)) {
        if write == GradWrite::Set {
            l.fill(0.0);
        }
        for (at, from) in g.rows() {
            let (dst, src) = (&mut l[at..at + inner], &s[from..from + inner]);
            match write {
                GradWrite::Set => dst.copy_from_slice(src),
                GradWrite::Add => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
            }
        }
    }
}

/// Reads the small samples out of the large ones: `small` (`=` or `+=` per `write`) ← the inner part of `large`.
fn extract(g: &Border2d, large: &[f32], small: &mut [f32], batch: usize, write: GradWrite) {
    let (sl, ll, inner) = (g.small_len(), g.large_len(), g.w * g.c);
    debug_assert_eq!(small.len(), batch * sl);
    debug_assert_eq!(large.len(), batch * ll);
    if sl == 0 || ll == 0 {
        return;
    }
    for (s, l) in small.chunks_exact_mut(sl).zip(large.chunks_exact(ll)) {
        for (at, to) in g.rows() {
            let (dst, src) = (&mut s[to..to + inner], &l[at..at + inner]);
            match write {
                GradWrite::Set => dst.copy_from_slice(src),
                GradWrite::Add => dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v),
            }
        }
    }
}

/// Zero padding: y (large) = x (small) framed by zeros.
pub fn pad_forward(g: &Border2d, x: &[f32], y: &mut [f32], batch: usize) {
    embed(g, x, y, batch, GradWrite::Set);
}

/// Zero padding's backward: dx (small) += the inner part of dy (large) (`=` for the first writer).
pub fn pad_backward(g: &Border2d, dy: &[f32], dx: &mut [f32], batch: usize, write: GradWrite) {
    extract(g, dy, dx, batch, write);
}

/// Cropping: y (small) = the inner part of x (large).
pub fn crop_forward(g: &Border2d, x: &[f32], y: &mut [f32], batch: usize) {
    extract(g, x, y, batch, GradWrite::Set);
}

/// Cropping's backward: dx (large) += dy (small) on the inner part; for the first writer, `=` with zeros on
/// the cropped border.
pub fn crop_backward(g: &Border2d, dy: &[f32], dx: &mut [f32], batch: usize, write: GradWrite) {
    embed(g, dy, dx, batch, write);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    fn cases() -> Vec<Border2d> {
        vec![
            Border2d { h: 3, w: 4, c: 2, top: 1, bottom: 1, left: 1, right: 1 },
            Border2d { h: 2, w: 3, c: 3, top: 0, bottom: 2, left: 3, right: 0 },
            Border2d { h: 1, w: 5, c: 2, top: 0, bottom: 0, left: 2, right: 1 },
            Border2d { h: 4, w: 2, c: 1, top: 0, bottom: 0, left: 0, right: 0 },
        ]
    }

    /// The large sample's value at `(n, r, col, ch)` from the small one, by coordinates: zero off the inner part.
    fn naive_pad(g: &Border2d, x: &[f32], batch: usize) -> Vec<f32> {
        let (lh, lw) = (g.top + g.h + g.bottom, g.left + g.w + g.right);
        let mut y = Vec::new();
        for n in 0..batch {
            for r in 0..lh {
                for col in 0..lw {
                    for ch in 0..g.c {
                        let inside = (g.top..g.top + g.h).contains(&r) && (g.left..g.left + g.w).contains(&col);
                        y.push(if inside { x[((n * g.h + r - g.top) * g.w + col - g.left) * g.c + ch] } else { 0.0 });
                    }
                }
            }
        }
        y
    }

    fn naive_crop(g: &Border2d, x: &[f32], batch: usize) -> Vec<f32> {
        let lw = g.left + g.w + g.right;
        let lh = g.top + g.h + g.bottom;
        let mut y = Vec::new();
        for n in 0..batch {
            for r in 0..g.h {
                for col in 0..g.w {
                    for ch in 0..g.c {
                        y.push(x[((n * lh + r + g.top) * lw + col + g.left) * g.c + ch]);
                    }
                }
            }
        }
        y
    }

    fn padded(g: &Border2d, x: &[f32], batch: usize) -> Vec<f32> {
        let mut y = vec![f32::NAN; batch * g.large_len()];
        pad_forward(g, x, &mut y, batch);
        y
    }

    fn cropped(g: &Border2d, x: &[f32], batch: usize) -> Vec<f32> {
        let mut y = vec![f32::NAN; batch * g.small_len()];
        crop_forward(g, x, &mut y, batch);
        y
    }

    #[test]
    fn padding_and_cropping_forward_match_coordinates() {
        let mut rng = Rng::new(21);
        let batch = 2;
        for g in cases() {
            let small = random_vec(&mut rng, batch * g.small_len(), -1.0, 1.0);
            let large = random_vec(&mut rng, batch * g.large_len(), -1.0, 1.0);
            assert_eq!(padded(&g, &small, batch), naive_pad(&g, &small, batch), "{g:?}");
            assert_eq!(cropped(&g, &large, batch), naive_crop(&g, &large, batch), "{g:?}");
            // Cropping the padding away gives the input back.
            assert_eq!(cropped(&g, &padded(&g, &small, batch), batch), small, "{g:?}");
        }
    }

    #[test]
    fn padding_and_cropping_backward_match_finite_differences_set_and_add() {
        let mut rng = Rng::new(22);
        let batch = 2;
        for g in cases() {
            let small = random_vec(&mut rng, batch * g.small_len(), -1.0, 1.0);
            let large = random_vec(&mut rng, batch * g.large_len(), -1.0, 1.0);
            let r_large = random_vec(&mut rng, batch * g.large_len(), -1.0, 1.0);
            let r_small = random_vec(&mut rng, batch * g.small_len(), -1.0, 1.0);

            let mut add = vec![0.5; small.len()];
            pad_backward(&g, &r_large, &mut add, batch, GradWrite::Add);
            let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
            let mut set = vec![f32::NAN; small.len()];
            pad_backward(&g, &r_large, &mut set, batch, GradWrite::Set);
            check_grad(&format!("pad {g:?} add"), &small, &add, 1e-3, |x| weighted_sum(&r_large, &padded(&g, x, batch)));
            check_grad(&format!("pad {g:?} set"), &small, &set, 1e-3, |x| weighted_sum(&r_large, &padded(&g, x, batch)));

            let mut add = vec![0.5; large.len()];
            crop_backward(&g, &r_small, &mut add, batch, GradWrite::Add);
            let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
            let mut set = vec![f32::NAN; large.len()];
            crop_backward(&g, &r_small, &mut set, batch, GradWrite::Set);
            check_grad(&format!("crop {g:?} add"), &large, &add, 1e-3, |x| weighted_sum(&r_small, &cropped(&g, x, batch)));
            check_grad(&format!("crop {g:?} set"), &large, &set, 1e-3, |x| weighted_sum(&r_small, &cropped(&g, x, batch)));
        }
    }
}
