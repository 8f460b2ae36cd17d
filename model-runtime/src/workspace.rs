//! Buffers sized for one batch and reused across calls: activations, their gradients, staging and scratch.

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
    /// Counter mixed into stochastic layers' seeds, advanced once per training step.
    pub step: u64,
}

impl Workspace {
    /// A training-layout workspace for network `N` able to hold `batch` rows.
    pub fn new<N: Network>(batch: usize) -> Self {
        let mut ws = Workspace::default();
        ws.resize::<N>(batch);
        ws
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
    pub fn resize<N: Network>(&mut self, batch: usize) {
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
            for (buf, &len) in self.values.iter_mut().zip(buffers) {
                reserve_exact(buf, batch * len);
            }
            for (buf, &len) in self.grads.iter_mut().zip(grads) {
                reserve_exact(buf, batch * len);
            }
            for (buf, &len) in self.scratch.iter_mut().zip(scratch) {
                reserve_exact(buf, batch * len);
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

fn reserve_exact(buf: &mut Vec<f32>, len: usize) {
    if buf.capacity() < len {
        buf.reserve_exact(len - buf.len());
    }
}
