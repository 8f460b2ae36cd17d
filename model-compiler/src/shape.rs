//! Static tensor shapes, batch dimension excluded (as in `keras.Input(shape=...)`).

use std::fmt;

/// A per-sample shape: `[8]`, `[32, 32, 3]`. The batch dimension is implicit and comes first.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Shape(pub Vec<usize>);

impl Shape {
    /// Number of dimensions, batch excluded.
    pub fn rank(&self) -> usize {
        self.0.len()
    }

    /// Elements per sample.
    pub fn numel(&self) -> usize {
        self.0.iter().product()
    }

    /// The last dimension (features / channels), or 1 for a scalar per sample.
    pub fn last(&self) -> usize {
        self.0.last().copied().unwrap_or(1)
    }

    /// Product of all dimensions but the last: the per-sample row count of a last-axis op.
    pub fn lead(&self) -> usize {
        match self.0.split_last() {
            Some((_, lead)) => lead.iter().product(),
            None => 1,
        }
    }

    /// Elements per sample, or `None` when the product overflows `usize`.
    pub fn checked_numel(&self) -> Option<usize> {
        self.0.iter().try_fold(1usize, |acc, d| acc.checked_mul(*d))
    }

    /// The dimensions.
    pub fn dims(&self) -> &[usize] {
        &self.0
    }

    /// The per-sample index (batch excluded) of Keras axis `axis`, counted on the full tensor: the batch is
    /// axis 0, -1 the last. `None` for the batch axis and for axes out of range.
    pub fn sample_axis(&self, axis: i64) -> Option<usize> {
        sample_axis(axis, self.rank())
    }

    /// The per-sample view of the tensor around per-sample axes `axes` (consecutive):
    /// (product of the dims before, product of the axes' dims, product of the dims after).
    pub fn around(&self, axes: std::ops::Range<usize>) -> (usize, usize, usize) {
        let d = &self.0;
        let prod = |r: std::ops::Range<usize>| d.get(r).map_or(1, |s| s.iter().product());
        (prod(0..axes.start), prod(axes.clone()), prod(axes.end..d.len()))
    }

    /// Keras notation with the batch first: `(None, 8, 8, 16)`.
    pub fn keras(&self) -> String {
        self.to_string()
    }
}

/// The per-sample index of Keras axis `axis` (batch is 0, -1 the last) of a tensor of per-sample rank
/// `rank`; `None` for the batch axis and out of range.
pub fn sample_axis(axis: i64, rank: usize) -> Option<usize> {
    let full = i64::try_from(rank).ok()? + 1;
    let a = if axis < 0 { axis + full } else { axis };
    if a >= 1 && a < full {
        usize::try_from(a - 1).ok()
    } else {
        None
    }
}

/// The most elements a per-sample tensor or one parameter tensor may have (2^31: 8 GiB of `f32`). Larger
/// sizes are rejected by `infer`, so later passes can add and multiply sizes without overflow.
pub const MAX_ELEMENTS: usize = 1 << 31;

/// True when `dims` has at most [`MAX_ELEMENTS`] elements.
pub fn within_limit(dims: &[usize]) -> bool {
    Shape(dims.to_vec()).checked_numel().is_some_and(|n| n <= MAX_ELEMENTS)
}

impl fmt::Display for Shape {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "(None")?;
        for d in &self.0 {
            write!(f, ", {d}")?;
        }
        write!(f, ")")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_displays_in_keras_notation_with_batch_first() {
        assert_eq!(Shape(vec![8]).to_string(), "(None, 8)");
        assert_eq!(Shape(vec![8, 8, 16]).keras(), "(None, 8, 8, 16)");
        assert_eq!(Shape(vec![]).keras(), "(None)");
    }

    #[test]
    fn lead_and_last_split_the_last_axis() {
        let s = Shape(vec![4, 5, 6]);
        assert_eq!((s.lead(), s.last(), s.numel()), (20, 6, 120));
    }
}
