//! Keras `UpSampling1D` / `UpSampling2D`, channels-last, by integer factors: `nearest` repeats every row
//! and column (`ops.repeat`), `bilinear` interpolates as `jax.image.resize(method = "bilinear")` does when
//! enlarging: half-pixel centers (output position `o` samples the input at `(o + ½) / s − ½`), and an edge
//! sample outside the input's centers takes the edge value (the triangle filter renormalized over the
//! inputs that exist). A 1D op is the 2D op with height 1.

use super::GradWrite;

/// A channels-last `[h, w, c]` sample enlarged to `[h · sh, w · sw, c]`. Fixed by the compiler.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Upsample2d {
    /// Input height.
    pub h: usize,
    /// Input width.
    pub w: usize,
    /// Channels.
    pub c: usize,
    /// Factor along the height.
    pub sh: usize,
    /// Factor along the width.
    pub sw: usize,
}

impl Upsample2d {
    /// Elements of one input sample.
    pub fn in_len(&self) -> usize {
        self.h * self.w * self.c
    }

    /// Elements of one output sample.
    pub fn out_len(&self) -> usize {
        self.in_len() * self.sh * self.sw
    }

    /// Per-sample input and output lengths, checked against the batch's slices; `None` when empty.
    #[inline]
    fn sizes(&self, batch: usize, x_total: usize, y_total: usize) -> Option<(usize, usize)> {
        let (il, ol) = (self.in_len(), self.out_len());
        debug_assert_eq!(x_total, batch * il);
        debug_assert_eq!(y_total, batch * ol);
        (il > 0 && ol > 0).then_some((il, ol))
    }
}

/// The two input positions and the weight of the second one that bilinear output position `o` reads,
/// along an axis of `n` inputs enlarged `s` times: sample at `(o + ½) / s − ½`, clamped to `[0, n − 1]`.
#[inline]
pub fn bilinear_tap(o: usize, s: usize, n: usize) -> (usize, usize, f32) {
    let at = ((o as f32 + 0.5) / s as f32 - 0.5).max(0.0);
    let i0 = (at as usize).min(n.saturating_sub(1));
    let i1 = (i0 + 1).min(n.saturating_sub(1));
    (i0, i1, if i1 == i0 { 0.0 } else { at - i0 as f32 })
}

/// y = x with each row repeated `sh` times and each column `sw` times.
pub fn nearest_forward(g: &Upsample2d, x: &[f32], y: &mut [f32], batch: usize) {
    let Some((il, ol)) = g.sizes(batch, x.len(), y.len()) else { return };
    let (c, orow) = (g.c, g.w * g.sw * g.c);
    for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
        for (xr, yr) in xs.chunks_exact(g.w * c).zip(ys.chunks_exact_mut(g.sh * orow)) {
            let (first, rest) = yr.split_at_mut(orow);
            for (px, out) in xr.chunks_exact(c).zip(first.chunks_exact_mut(g.sw * c)) {
                out.chunks_exact_mut(c).for_each(|o| o.copy_from_slice(px));
            }
            rest.chunks_exact_mut(orow).for_each(|r| r.copy_from_slice(first));
        }
    }
}

/// dx += the sum of dy over each input pixel's `sh × sw` block (`=` for the first writer).
pub fn nearest_backward(g: &Upsample2d, dy: &[f32], dx: &mut [f32], batch: usize, write: GradWrite) {
    let Some((il, ol)) = g.sizes(batch, dx.len(), dy.len()) else { return };
    let (c, orow) = (g.c, g.w * g.sw * g.c);
    for (dxs, dys) in dx.chunks_exact_mut(il).zip(dy.chunks_exact(ol)) {
        if write == GradWrite::Set {
            dxs.fill(0.0);
        }
        for (dxr, dyr) in dxs.chunks_exact_mut(g.w * c).zip(dys.chunks_exact(g.sh * orow)) {
            for r in dyr.chunks_exact(orow) {
                for (px, block) in dxr.chunks_exact_mut(c).zip(r.chunks_exact(g.sw * c)) {
                    for d in block.chunks_exact(c) {
                        px.iter_mut().zip(d).for_each(|(v, &dv)| *v += dv);
                    }
                }
            }
        }
    }
}

/// y = bilinear interpolation of x at half-pixel centers, edges clamped.
pub fn bilinear_forward(g: &Upsample2d, x: &[f32], y: &mut [f32], batch: usize) {
    let Some((il, ol)) = g.sizes(batch, x.len(), y.len()) else { return };
    let (c, irow, oh, ow) = (g.c, g.w * g.c, g.h * g.sh, g.w * g.sw);
    for (xs, ys) in x.chunks_exact(il).zip(y.chunks_exact_mut(ol)) {
        for (oy, yr) in (0..oh).zip(ys.chunks_exact_mut(ow * c)) {
            let (y0, y1, fy) = bilinear_tap(oy, g.sh, g.h);
            let (r0, r1) = (&xs[y0 * irow..(y0 + 1) * irow], &xs[y1 * irow..(y1 + 1) * irow]);
            for (ox, out) in (0..ow).zip(yr.chunks_exact_mut(c)) {
                let (x0, x1, fx) = bilinear_tap(ox, g.sw, g.w);
                let (a, b) = (&r0[x0 * c..(x0 + 1) * c], &r0[x1 * c..(x1 + 1) * c]);
                let (d, e) = (&r1[x0 * c..(x0 + 1) * c], &r1[x1 * c..(x1 + 1) * c]);
                for (ch, v) in out.iter_mut().enumerate() {
                    let top = (1.0 - fx) * a[ch] + fx * b[ch];
                    let bottom = (1.0 - fx) * d[ch] + fx * e[ch];
                    *v = (1.0 - fy) * top + fy * bottom;
                }
            }
        }
    }
}

/// dx += dy spread back onto the four inputs each output read, with the same weights (onto zeros for the
/// first writer).
pub fn bilinear_backward(g: &Upsample2d, dy: &[f32], dx: &mut [f32], batch: usize, write: GradWrite) {
    let Some((il, ol)) = g.sizes(batch, dx.len(), dy.len()) else { return };
    let (c, irow, oh, ow) = (g.c, g.w * g.c, g.h * g.sh, g.w * g.sw);
    for (dxs, dys) in dx.chunks_exact_mut(il).zip(dy.chunks_exact(ol)) {
        if write == GradWrite::Set {
            dxs.fill(0.0);
        }
        for (oy, dyr) in (0..oh).zip(dys.chunks_exact(ow * c)) {
            let (y0, y1, fy) = bilinear_tap(oy, g.sh, g.h);
            for (ox, d) in (0..ow).zip(dyr.chunks_exact(c)) {
                let (x0, x1, fx) = bilinear_tap(ox, g.sw, g.w);
                let taps = [
                    (y0 * irow + x0 * c, (1.0 - fy) * (1.0 - fx)),
                    (y0 * irow + x1 * c, (1.0 - fy) * fx),
                    (y1 * irow + x0 * c, fy * (1.0 - fx)),
                    (y1 * irow + x1 * c, fy * fx),
                ];
                for (at, wt) in taps {
                    dxs[at..at + c].iter_mut().zip(d).for_each(|(v, &dv)| *v += wt * dv);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::init::testing::{check_grad, random_vec, weighted_sum};
    use crate::init::Rng;

    fn cases() -> Vec<Upsample2d> {
        vec![
            Upsample2d { h: 3, w: 4, c: 2, sh: 2, sw: 2 },
            Upsample2d { h: 2, w: 3, c: 3, sh: 3, sw: 1 },
            Upsample2d { h: 1, w: 5, c: 2, sh: 1, sw: 3 },
            Upsample2d { h: 1, w: 1, c: 2, sh: 2, sw: 2 },
        ]
    }

    fn run(g: &Upsample2d, x: &[f32], batch: usize, bilinear: bool) -> Vec<f32> {
        let mut y = vec![f32::NAN; batch * g.out_len()];
        if bilinear {
            bilinear_forward(g, x, &mut y, batch);
        } else {
            nearest_forward(g, x, &mut y, batch);
        }
        y
    }

    #[test]
    fn nearest_repeats_rows_and_columns() {
        let g = Upsample2d { h: 2, w: 2, c: 1, sh: 2, sw: 3 };
        let y = run(&g, &[1.0, 2.0, 3.0, 4.0], 1, false);
        #[rustfmt::skip]
        let want = [
            1.0, 1.0, 1.0, 2.0, 2.0, 2.0,
            1.0, 1.0, 1.0, 2.0, 2.0, 2.0,
            3.0, 3.0, 3.0, 4.0, 4.0, 4.0,
            3.0, 3.0, 3.0, 4.0, 4.0, 4.0,
        ];
        assert_eq!(y, want);
    }

    #[test]
    fn bilinear_uses_half_pixel_centers_and_clamps_edges() {
        // One row [0, 4] enlarged twice: samples at -0.25, 0.25, 0.75, 1.25 -> clamped 0, 1, 3, clamped 4
        // (jax.image.resize(jnp.array([0., 4.]), (4,), "bilinear") gives [0, 1, 3, 4]).
        let g = Upsample2d { h: 1, w: 2, c: 1, sh: 1, sw: 2 };
        assert_eq!(run(&g, &[0.0, 4.0], 1, true), [0.0, 1.0, 3.0, 4.0]);
        // Three times: samples at -1/3, 0, 1/3, 2/3, 1, 4/3 -> [0, 0, 4/3, 8/3, 4, 4].
        let g = Upsample2d { h: 1, w: 2, c: 1, sh: 1, sw: 3 };
        let y = run(&g, &[0.0, 4.0], 1, true);
        let want = [0.0, 0.0, 4.0 / 3.0, 8.0 / 3.0, 4.0, 4.0];
        assert!(y.iter().zip(want).all(|(a, b)| (a - b).abs() < 1e-6), "{y:?}");
        // Separable: a 2×2 image enlarged 2×2 is the outer product of the row and column weights.
        let g = Upsample2d { h: 2, w: 2, c: 1, sh: 2, sw: 2 };
        let y = run(&g, &[0.0, 4.0, 8.0, 12.0], 1, true);
        let (rows, cols) = ([0.0f32, 2.0, 6.0, 8.0], [0.0f32, 1.0, 3.0, 4.0]);
        for (i, v) in y.iter().enumerate() {
            assert!((v - (rows[i / 4] + cols[i % 4])).abs() < 1e-6, "{i}: {v}");
        }
    }

    #[test]
    fn upsampling_backward_matches_finite_differences_set_and_add() {
        let mut rng = Rng::new(31);
        let batch = 2;
        for g in cases() {
            let x = random_vec(&mut rng, batch * g.in_len(), -1.0, 1.0);
            let r = random_vec(&mut rng, batch * g.out_len(), -1.0, 1.0);
            for bilinear in [false, true] {
                let back = |dx: &mut [f32], write| {
                    if bilinear {
                        bilinear_backward(&g, &r, dx, batch, write);
                    } else {
                        nearest_backward(&g, &r, dx, batch, write);
                    }
                };
                let mut add = vec![0.5; x.len()];
                back(&mut add, GradWrite::Add);
                let add: Vec<f32> = add.iter().map(|v| v - 0.5).collect();
                let mut set = vec![f32::NAN; x.len()];
                back(&mut set, GradWrite::Set);
                for (what, dx) in [("add", &add), ("set", &set)] {
                    check_grad(&format!("upsample {g:?} bilinear={bilinear} {what}"), &x, dx, 1e-3, |x| {
                        weighted_sum(&r, &run(&g, x, batch, bilinear))
                    });
                }
            }
        }
    }
}
