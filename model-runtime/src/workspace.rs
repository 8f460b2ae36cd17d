//! Buffers sized for one batch and reused across calls: activations, their gradients, staging and scratch.

use crate::error::{Error, Result};
use crate::network::Network;

/// Which of a network's two buffer plans a workspace follows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Layout {
    /// One buffer per value, with gradients: what `forward` (either mode) and `backward` use.
    #[default]
    Training,
    /// Buffers shared by liveness, no gradients: what `forward_inference` uses (`predict`, `evaluate`).
    Inference,
}

impl Layout {
    /// Per-sample length of each activation buffer.
    pub fn buffers<N: Network>(self) -> &'static [usize] {
        match self {
            Layout::Training => N::BUFFERS,
            Layout::Inference => N::INFER_BUFFERS,
        }
    }

    /// Per-sample length of each scratch buffer.
    pub fn scratch<N: Network>(self) -> &'static [usize] {
        match self {
            Layout::Training => N::SCRATCH,
            Layout::Inference => N::INFER_SCRATCH,
        }
    }

    /// The buffer staging each input.
    pub fn input_buffers<N: Network>(self) -> &'static [usize] {
        match self {
            Layout::Training => N::INPUT_BUFFERS,
            Layout::Inference => N::INFER_INPUT_BUFFERS,
        }
    }

    /// The buffer holding each output after a forward pass.
    pub fn output_buffers<N: Network>(self) -> &'static [usize] {
        match self {
            Layout::Training => N::OUTPUT_BUFFERS,
            Layout::Inference => N::INFER_OUTPUT_BUFFERS,
        }
    }
}

/// Every buffer a forward and backward pass of one model needs, allocated once for the largest batch
/// seen and reused: after warm-up, a call with a batch no larger than the capacity allocates nothing.
///
/// Generated code reads and writes the fields directly, taking a buffer out with `std::mem::take`
/// when it needs it mutably while reading others, and putting it back afterwards.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    /// The buffer plan this workspace follows (fixed at creation).
    pub layout: Layout,
    /// Rows of the current batch.
    pub batch: usize,
    /// Rows the buffers can hold without reallocating.
    pub capacity: usize,
    /// Activation buffers of the plan (inputs included), each `batch * BUFFERS[i]` long
    /// (`INFER_BUFFERS` for the inference layout).
    pub values: Vec<Vec<f32>>,
    /// Gradients of the activation buffers, same lengths as `values` (empty for the inference layout).
    pub grads: Vec<Vec<f32>>,
    /// Extra per-op buffers (pre-activations, masks, batch statistics, im2col), each `batch * SCRATCH[i]`
    /// long (`INFER_SCRATCH` for the inference layout).
    pub scratch: Vec<Vec<f32>>,
    /// Per output: the loss gradient written into `grads` is already taken through the output's
    /// activation (softmax + categorical cross-entropy fused), so backward must not apply it again.
    pub fused: Vec<bool>,
    /// True while a training step runs (dropout active, batch statistics used).
    pub training: bool,
    /// True while BatchNormalization uses (and then moves) the batch's statistics; set with `training`
    /// except in a forward pass with separate modes (`model::forward_with`).
    pub batch_statistics: bool,
    /// Counter mixed into stochastic layers' seeds, advanced once per training step.
    pub step: u64,
    /// The number, within the global batch, of the staged batch's first row: 0 in one process, the start
    /// of this rank's share in data-parallel training. Dropout numbers its elements from it, so the
    /// ranks together draw the masks of one process.
    pub first_row: usize,
    /// The activity regularizers' penalty of the last forward pass (already divided by the batch size;
    /// 0 for a model without activity regularizers, whose forward never writes it).
    pub activity_penalty: f64,
    /// The constant weights of the inference forward packed for the GEMM (inference layout), valid
    /// for the parameters' generation the runtime sets before each inference.
    pub packed: crate::kernels::gemm::PackCache,
}

impl Workspace {
    /// A training-layout workspace for network `N` able to hold `batch` rows; an error when the
    /// buffers cannot be allocated.
    pub fn new<N: Network>(batch: usize) -> Result<Self> {
        let mut ws = Workspace::default();
        ws.resize::<N>(batch)?;
        Ok(ws)
    }

    /// An empty workspace following `layout`; it allocates on its first `resize`.
    pub fn with_layout(layout: Layout) -> Self {
        Workspace { layout, ..Workspace::default() }
    }

    /// Makes the workspace follow `layout`. When it followed the other one its buffers are dropped, and the
    /// next `resize` allocates them for `layout` (a `State` built by hand with two default workspaces
    /// still runs inference on the inference plan).
    pub fn set_layout(&mut self, layout: Layout) {
        if self.layout != layout {
            *self = Workspace { step: self.step, ..Workspace::with_layout(layout) };
        }
    }

    /// Sets the current batch size, growing the buffers only when `batch` exceeds the capacity.
    ///
    /// Sizes are computed with checked arithmetic and the buffers grown with fallible reservations, so a
    /// batch too large for the address space or for the allocator is an [`Error::Allocation`], not an
    /// abort. On error the workspace is left empty (batch 0, no capacity), so nothing reads stale buffers.
    pub fn resize<N: Network>(&mut self, batch: usize) -> Result<()> {
        let result = self.try_resize::<N>(batch);
        if result.is_err() {
            *self = Workspace { step: self.step, ..Workspace::with_layout(self.layout) };
        }
        result
    }

    fn try_resize<N: Network>(&mut self, batch: usize) -> Result<()> {
        let (buffers, scratch) = (self.layout.buffers::<N>(), self.layout.scratch::<N>());
        let grads = if self.layout == Layout::Training { buffers } else { &[] };
        if self.values.len() != buffers.len() || self.scratch.len() != scratch.len() || self.grads.len() != grads.len() {
            self.values = vec![Vec::new(); buffers.len()];
            self.grads = vec![Vec::new(); grads.len()];
            self.scratch = vec![Vec::new(); scratch.len()];
            self.fused = vec![false; N::OUTPUTS.len()];
            self.capacity = 0;
        }
        if batch > self.capacity {
            // Every size first, so an overflow allocates nothing; then every reservation.
            let what = |kind: &str, i: usize, len: usize| (kind.to_string(), i, len);
            let sizes = buffers
                .iter()
                .enumerate()
                .map(|(i, &len)| what("activation buffer", i, len))
                .chain(grads.iter().enumerate().map(|(i, &len)| what("gradient buffer", i, len)))
                .chain(scratch.iter().enumerate().map(|(i, &len)| what("scratch buffer", i, len)));
            let mut total: usize = 0;
            for (kind, i, len) in sizes {
                let n = rows_len(|| format!("the {kind} {i} of the `{}` workspace", N::NAME), batch, len)?;
                total = total.checked_add(n).ok_or_else(|| too_large(&format!("the `{}` workspace", N::NAME), batch))?;
            }
            let bufs =
                self.values.iter_mut().zip(buffers).chain(self.grads.iter_mut().zip(grads)).chain(self.scratch.iter_mut().zip(scratch));
            for (buf, &len) in bufs {
                // `rows_len` succeeded above for every buffer.
                try_reserve_len(buf, batch.saturating_mul(len), || format!("the `{}` workspace ({total} floats)", N::NAME), batch)?;
            }
            self.capacity = batch;
        }
        for (buf, &len) in self.values.iter_mut().zip(buffers) {
            buf.resize(batch * len, 0.0);
        }
        for (buf, &len) in self.grads.iter_mut().zip(grads) {
            buf.resize(batch * len, 0.0);
        }
        for (buf, &len) in self.scratch.iter_mut().zip(scratch) {
            buf.resize(batch * len, 0.0);
        }
        self.batch = batch;
        Ok(())
    }

    /// Zeroes the gradient buffers `N::backward` adds onto (`N::GRAD_ZERO`, else all of them); it
    /// overwrites the others.
    pub fn zero_grads<N: Network>(&mut self) {
        match N::GRAD_ZERO {
            Some(bufs) => {
                for &b in bufs {
                    if let Some(g) = self.grads.get_mut(b) {
                        g.fill(0.0);
                    }
                }
            }
            None => self.grads.iter_mut().for_each(|g| g.fill(0.0)),
        }
    }
}

/// `rows * per_row` elements of `what`, or an [`Error::Allocation`] when that overflows or exceeds what a
/// `Vec<f32>` can hold.
/// `what()` is called only on error, so the check allocates nothing.
pub fn rows_len(what: impl FnOnce() -> String, rows: usize, per_row: usize) -> Result<usize> {
    match rows.checked_mul(per_row) {
        Some(n) if n <= isize::MAX as usize / std::mem::size_of::<f32>() => Ok(n),
        _ => Err(Error::Allocation {
            what: format!("{} for {rows} rows", what()),
            size: format!("{rows} × {per_row} floats exceed the address space"),
        }),
    }
}

fn too_large(what: &str, rows: usize) -> Error {
    Error::Allocation { what: format!("{what} for {rows} rows"), size: "the total size exceeds the address space".to_string() }
}

/// Grows `buf`'s capacity to at least `len` elements without aborting: an [`Error::Allocation`] naming
/// `what()` when the allocator refuses.
pub fn try_reserve_len(buf: &mut Vec<f32>, len: usize, what: impl FnOnce() -> String, rows: usize) -> Result<()> {
    if buf.capacity() >= len {
        return Ok(());
    }
    buf.try_reserve_exact(len - buf.len()).map_err(|e| Error::Allocation {
        what: format!("{} for {rows} rows", what()),
        size: format!("{len} floats ({} bytes): {e}", len.saturating_mul(std::mem::size_of::<f32>())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_that_overflow_are_errors() {
        assert_eq!(rows_len(|| "x".into(), 4, 8).ok(), Some(32));
        let msg = rows_len(|| "the activation buffer 0".into(), usize::MAX / 2, 3).unwrap_err().to_string();
        assert!(msg.starts_with("cannot allocate the activation buffer 0 for"), "{msg}");
        assert!(msg.contains("exceed the address space"), "{msg}");
        // Fits in usize, but not in bytes of a Vec<f32>.
        assert!(rows_len(|| "x".into(), 1 << 62, 1).is_err());
    }

    #[test]
    fn a_refused_reservation_is_an_error_not_an_abort() {
        let mut buf = vec![1.0f32; 4];
        // About 2^61 floats: more than any machine's memory, within Vec's limit.
        let huge = isize::MAX as usize / 4 - 8;
        let msg = try_reserve_len(&mut buf, huge, || "the output `y`".to_string(), 7).unwrap_err().to_string();
        assert!(msg.starts_with("cannot allocate the output `y` for 7 rows:"), "{msg}");
        assert_eq!(buf, [1.0; 4], "a failed reservation changed the buffer");
        try_reserve_len(&mut buf, 100, String::new, 1).unwrap();
        assert!(buf.capacity() >= 100);
    }
}
