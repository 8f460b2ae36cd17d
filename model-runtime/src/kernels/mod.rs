//! Kernels over flat row-major `f32` slices: each op's forward next to its backward.

pub mod activation;
pub mod attention;
pub mod bidirectional;
pub mod concat;
pub mod conv;
pub mod conv_transpose;
pub mod dense;
pub mod depthwise;
pub mod dot;
pub mod dot_attention;
pub mod dropout;
pub mod embedding;
pub mod gemm;
pub mod grouped_conv;
pub mod masking;
pub mod merge;
pub mod norm;
pub mod pad;
pub mod permute;
pub mod pool;
pub mod recurrent;
pub mod repeat;
pub mod rescale;
pub mod reshape;
pub mod separable;
pub mod upsample;

/// How a backward kernel writes a gradient buffer: onto what it holds (another writer came first, or
/// the buffer was zeroed), or over it (the buffer's first writer in the backward pass, so what it
/// holds is stale and need not be zeroed first).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GradWrite {
    /// `g += ∂`.
    Add,
    /// `g = ∂`.
    Set,
}

impl GradWrite {
    /// The GEMM's beta for this write: 1 to add onto C, 0 to overwrite it.
    pub fn beta(self) -> f32 {
        match self {
            GradWrite::Add => 1.0,
            GradWrite::Set => 0.0,
        }
    }
}

/// A tensor of `outer · n · inner` elements viewed around one axis of length `n`: element
/// `(o, c, i)` sits at `(o · n + c) · inner + i`. For the last axis, `inner` is 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Axis {
    /// Product of the dimensions before the axis (the batch included).
    pub outer: usize,
    /// Length of the axis.
    pub n: usize,
    /// Product of the dimensions after the axis.
    pub inner: usize,
}

impl Axis {
    /// Total element count.
    pub fn len(&self) -> usize {
        self.outer * self.n * self.inner
    }

    /// True when the tensor has no element.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Elements per position of the axis (the batch-normalization reduction size, and the group count of a layer normalization).
    pub(crate) fn per_channel(&self) -> usize {
        self.outer * self.inner
    }

    /// Calls `f(c, start)` for every contiguous run of `inner` elements, `c` being its axis position.
    #[inline]
    pub(crate) fn runs(&self, mut f: impl FnMut(usize, usize)) {
        for o in 0..self.outer {
            for c in 0..self.n {
                f(c, (o * self.n + c) * self.inner);
            }
        }
    }
}
