//! Keras `Bidirectional`: merging the outputs of a recurrent layer run forward and one run backward
//! ([`super::recurrent`] runs both), and splitting the merged output's gradient between them.
//!
//! The backward layer's sequence output is in its processing order (last step first); as Keras does,
//! it is flipped back to input time order before merging, so step t of both directions is merged.

/// How the two directions' outputs combine (Keras `merge_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MergeMode {
    /// Features side by side: forward's, then backward's.
    Concat,
    /// Element-wise sum.
    Sum,
    /// Element-wise product.
    Mul,
    /// Element-wise mean.
    Ave,
    /// No merge: two results.
    None,
}

/// The layout shared by [`merge`] and [`split`]: `rows` samples of `steps` steps (1 without
/// `return_sequences`) of `units` features per direction; `flip` when the backward output is a
/// sequence in reversed order.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// Samples.
    pub rows: usize,
    /// Steps per sample (1 for a last-state output).
    pub steps: usize,
    /// Features per direction.
    pub units: usize,
    /// Whether the backward direction's steps are reversed.
    pub flip: bool,
}

impl Layout {
    /// (forward offset, backward offset, merged offset) of sample `b`, step `t`.
    fn at(&self, b: usize, t: usize, width: usize) -> (usize, usize, usize) {
        let tb = if self.flip { self.steps - 1 - t } else { t };
        ((b * self.steps + t) * self.units, (b * self.steps + tb) * self.units, (b * self.steps + t) * width)
    }
}

/// y = merge(yf, yb); with [`MergeMode::None`], `y` gets `yf` and `y_back` gets `yb` in time order.
pub fn merge(mode: MergeMode, l: Layout, yf: &[f32], yb: &[f32], y: &mut [f32], y_back: Option<&mut [f32]>) {
    let u = l.units;
    let width = if mode == MergeMode::Concat { 2 * u } else { u };
    let mut y_back = y_back;
    for b in 0..l.rows {
        for t in 0..l.steps {
            let (f, k, o) = l.at(b, t, width);
            let (fv, bv) = (&yf[f..f + u], &yb[k..k + u]);
            let out = &mut y[o..o + width];
            match mode {
                MergeMode::Concat => {
                    out[..u].copy_from_slice(fv);
                    out[u..].copy_from_slice(bv);
                }
                MergeMode::Sum => out.iter_mut().zip(fv.iter().zip(bv)).for_each(|(o, (a, c))| *o = a + c),
                MergeMode::Mul => out.iter_mut().zip(fv.iter().zip(bv)).for_each(|(o, (a, c))| *o = a * c),
                MergeMode::Ave => out.iter_mut().zip(fv.iter().zip(bv)).for_each(|(o, (a, c))| *o = 0.5 * (a + c)),
                MergeMode::None => {
                    out.copy_from_slice(fv);
                    if let Some(yb_out) = y_back.as_deref_mut() {
                        yb_out[o..o + u].copy_from_slice(bv);
                    }
                }
            }
        }
    }
}

/// The backward of [`merge`]: writes (`=`) the gradients of the two directions' outputs, `dyf` and
/// `dyb` (the latter in the backward layer's order), from `dy` (and `dy_back` with
/// [`MergeMode::None`]). `yf` and `yb` are the outputs [`merge`] read (for `Mul`).
#[allow(clippy::too_many_arguments)]
pub fn split(mode: MergeMode, l: Layout, yf: &[f32], yb: &[f32], dy: &[f32], dy_back: Option<&[f32]>, dyf: &mut [f32], dyb: &mut [f32]) {
    let u = l.units;
    let width = if mode == MergeMode::Concat { 2 * u } else { u };
    for b in 0..l.rows {
        for t in 0..l.steps {
            let (f, k, o) = l.at(b, t, width);
            let d = &dy[o..o + width];
            let (df, db) = (&mut dyf[f..f + u], &mut dyb[k..k + u]);
            match mode {
                MergeMode::Concat => {
                    df.copy_from_slice(&d[..u]);
                    db.copy_from_slice(&d[u..]);
                }
                MergeMode::Sum => {
                    df.copy_from_slice(d);
                    db.copy_from_slice(d);
                }
                MergeMode::Ave => {
                    df.iter_mut().zip(d).for_each(|(x, &g)| *x = 0.5 * g);
                    db.iter_mut().zip(d).for_each(|(x, &g)| *x = 0.5 * g);
                }
                MergeMode::Mul => {
                    let (fv, bv) = (&yf[f..f + u], &yb[k..k + u]);
                    df.iter_mut().zip(d.iter().zip(bv)).for_each(|(x, (&g, &c))| *x = g * c);
                    db.iter_mut().zip(d.iter().zip(fv)).for_each(|(x, (&g, &a))| *x = g * a);
                }
                MergeMode::None => {
                    df.copy_from_slice(d);
                    match dy_back {
                        Some(g) => db.copy_from_slice(&g[o..o + u]),
                        None => db.fill(0.0),
                    }
                }
            }
        }
    }
}
