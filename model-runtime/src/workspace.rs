//! Buffers sized for one batch and reused across calls: activations, their gradients, staging and scratch.

use crate::network::Network;

/// Every buffer a forward and backward pass of one model needs, allocated once for the largest batch
/// seen and reused: after warm-up, a call with a batch no larger than the capacity allocates nothing.
///
/// Generated code reads and writes the fields directly, taking a buffer out with `std::mem::take`
/// when it needs it mutably while reading others, and putting it back afterwards.
#[derive(Clone, Debug, Default)]
pub struct Workspace {
    /// Rows of the current batch.
    pub batch: usize,
    /// Rows the buffers can hold without reallocating.
    pub capacity: usize,
    /// Activation buffers of the plan (inputs included), each `batch * BUFFERS[i]` long.
    pub values: Vec<Vec<f32>>,
    /// Gradients of the activation buffers, same lengths as `values`.
    pub grads: Vec<Vec<f32>>,
    /// Extra per-op buffers (pre-activations, masks, batch statistics, im2col), each `batch * SCRATCH[i]` long.
    pub scratch: Vec<Vec<f32>>,
    /// Per output: the loss gradient written into `grads` is already taken through the output's
    /// activation (softmax + categorical cross-entropy fused), so backward must not apply it again.
    pub fused: Vec<bool>,
    /// True while a training step runs (dropout active, batch statistics used).
    pub training: bool,
    /// Counter mixed into stochastic layers' seeds, advanced once per training step.
    pub step: u64,
}

impl Workspace {
    /// A workspace for network `N` able to hold `batch` rows.
    pub fn new<N: Network>(batch: usize) -> Self {
        let mut ws = Workspace::default();
        ws.resize::<N>(batch);
        ws
    }

    /// Sets the current batch size, growing the buffers only when `batch` exceeds the capacity.
    pub fn resize<N: Network>(&mut self, batch: usize) {
        if self.values.len() != N::BUFFERS.len() {
            self.values = vec![Vec::new(); N::BUFFERS.len()];
            self.grads = vec![Vec::new(); N::BUFFERS.len()];
            self.scratch = vec![Vec::new(); N::SCRATCH.len()];
            self.fused = vec![false; N::OUTPUTS.len()];
            self.capacity = 0;
        }
        if batch > self.capacity {
            for (buf, &len) in self.values.iter_mut().zip(N::BUFFERS) {
                reserve_exact(buf, batch * len);
            }
            for (buf, &len) in self.grads.iter_mut().zip(N::BUFFERS) {
                reserve_exact(buf, batch * len);
            }
            for (buf, &len) in self.scratch.iter_mut().zip(N::SCRATCH) {
                reserve_exact(buf, batch * len);
            }
            self.capacity = batch;
        }
        for (buf, &len) in self.values.iter_mut().zip(N::BUFFERS) {
            buf.resize(batch * len, 0.0);
        }
        for (buf, &len) in self.grads.iter_mut().zip(N::BUFFERS) {
            buf.resize(batch * len, 0.0);
        }
        for (buf, &len) in self.scratch.iter_mut().zip(N::SCRATCH) {
            buf.resize(batch * len, 0.0);
        }
        self.batch = batch;
    }

    /// Zeroes every gradient buffer (kernels accumulate into them).
    pub fn zero_grads(&mut self) {
        for g in &mut self.grads {
            g.fill(0.0);
        }
    }
}

fn reserve_exact(buf: &mut Vec<f32>, len: usize) {
    if buf.capacity() < len {
        buf.reserve_exact(len - buf.len());
    }
}
