//! The five BENCH.md models (`/work/shared/BENCH.md`, M1–M5), the vision models of issue #19 (M6 U-Net,
//! M7 MobileNet-like), the transformer encoder of issue #18 (M8) and the recurrent model of issue #17
//! (R1: Embedding → LSTM(128) → Dense; R2 with GRU(128); R3 with Bidirectional(LSTM(64))) written in
//! candle and in burn (NdArray backend), so
//! `benches/peers.rs` can time them beside the modelc graphs of the same models in one criterion group
//! per (model, task, batch) cell. A framework without one of a model's layers does not run that model
//! (candle-nn has no multi-head attention layer, so candle has no M8); nothing is written by hand in
//! its place.
//!
//! This package is its own Cargo workspace: the root `cargo test --workspace`, clippy and CI never
//! build it. The modelc side is `benches/bench_models/mod.rs` of the root crate, included here through
//! `#[path]`, so the peers are measured against exactly the models the root benches measure.
//!
//! Every peer implements [`Runner`]: it owns its model, its optimizer state and one prepared batch,
//! and exposes an inference pass and a training step (forward, backward, Adam update) on that batch.
//! Shapes, activations, losses and Adam hyperparameters follow BENCH.md and Keras' defaults
//! (Glorot-uniform kernels, zero biases, Adam lr 1e-3, β 0.9/0.999, ε 1e-7, cross-entropies on
//! probabilities clipped to [1e-7, 1 − 1e-7]).

pub mod burn_peer;
pub mod candle_peer;
#[path = "../../benches/bench_models/mod.rs"]
pub mod modelc_models;
#[path = "../../benches/bench_models/recurrent.rs"]
pub mod modelc_recurrent;

use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4, ArrayD, IxDyn};

/// Errors of the peers: whatever the framework reports, boxed.
pub type Error = Box<dyn std::error::Error + Send + Sync>;

/// Result with a peer [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

/// Adam learning rate (Keras default).
pub const LEARNING_RATE: f64 = 1e-3;
/// Adam ε (Keras default; candle and burn default to other values).
pub const ADAM_EPSILON: f64 = 1e-7;
/// Probabilities are clipped to [CLIP, 1 − CLIP] before the log of a cross-entropy, as Keras does.
pub const CLIP: f64 = 1e-7;

/// One of the BENCH.md models.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Spec {
    /// fusion: left[8] → Dense16 relu → Dense8 relu; right[4] → Dense8 relu; concat → Dense1 sigmoid.
    M1,
    /// multitask: x[64] → Dense128 relu → Dense128 relu, + Dense128(x); heads Dense10 softmax and Dense1 sigmoid.
    M2,
    /// vision_meta: image[32,32,3] → Conv16 → Conv32 (3×3 same relu) → GAP; meta[6] → Dense8 relu; concat → Dense3 softmax.
    M3,
    /// wide_mlp: x[784] → Dense512 relu = h1 → Dense512 relu = h2; h1 + h2 → Dense10 softmax.
    M4,
    /// siamese: a[128], b[128] → one shared Dense64 relu; average → Dense1 sigmoid.
    M5,
    /// U-Net (issue #19): image[64,64,3] → Conv16 → pool → Conv32 → pool → ConvT32 (stride 2) ⧺ skip →
    /// ConvT16 (stride 2) ⧺ skip → Conv1 (1×1) sigmoid mask [64,64,1].
    M6,
    /// MobileNet-like (issue #19): image[32,32,3], four times depthwise 3×3 (no bias; strides 1, 2, 1, 2) →
    /// BatchNorm → relu → pointwise Conv (16, 32, 32, 64) relu; GAP → Dense10 softmax.
    M7,
    /// Transformer encoder (issue #18): tokens[128] (vocabulary 2000) + positions[128] embedded to 128, two
    /// blocks (4-head attention, Add, LayerNorm, Dense256 gelu, Dense128, Add, LayerNorm); mean → Dense2 softmax.
    M8,
    /// Recurrent model (issue #17): tokens[64] (vocabulary 1000) → Embedding64 → LSTM128 (last state) →
    /// Dense1 sigmoid.
    R1,
    /// R1 with GRU128 (Keras' `reset_after = true`, PyTorch's GRU) in place of the LSTM.
    R2,
    /// R1 with Bidirectional(LSTM64) (the two directions' last states concatenated) in place of the LSTM.
    R3,
}

/// The loss of one model output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// Binary cross-entropy of a sigmoid output against 0/1 labels.
    BinaryCrossentropy,
    /// Categorical cross-entropy of a softmax output against one-hot rows.
    CategoricalCrossentropy,
}

impl Spec {
    /// All models, in order.
    pub const ALL: [Spec; 11] =
        [Spec::M1, Spec::M2, Spec::M3, Spec::M4, Spec::M5, Spec::M6, Spec::M7, Spec::M8, Spec::R1, Spec::R2, Spec::R3];

    /// "M1" … "M8", "R1" … "R3".
    pub fn id(self) -> &'static str {
        match self {
            Spec::M1 => "M1",
            Spec::M2 => "M2",
            Spec::M3 => "M3",
            Spec::M4 => "M4",
            Spec::M5 => "M5",
            Spec::M6 => "M6",
            Spec::M7 => "M7",
            Spec::M8 => "M8",
            Spec::R1 => "R1",
            Spec::R2 => "R2",
            Spec::R3 => "R3",
        }
    }

    /// Parses "M1" … "M8", "R1" … "R3" (case-insensitive).
    pub fn parse(s: &str) -> Option<Spec> {
        Spec::ALL.into_iter().find(|m| m.id().eq_ignore_ascii_case(s))
    }

    /// The per-sample shape of each real-valued input, channels-last for images (the modelc and Keras
    /// layout); empty for the models that take token ids (see [`Spec::id_inputs`]).
    pub fn input_shapes(self) -> &'static [&'static [usize]] {
        match self {
            Spec::M1 => &[&[8], &[4]],
            Spec::M2 => &[&[64]],
            Spec::M3 => &[&[32, 32, 3], &[6]],
            Spec::M4 => &[&[784]],
            Spec::M5 => &[&[128], &[128]],
            Spec::M6 => &[&[64, 64, 3]],
            Spec::M7 => &[&[32, 32, 3]],
            Spec::M8 | Spec::R1 | Spec::R2 | Spec::R3 => &[],
        }
    }

    /// The token-id inputs of M8 and R1–R3 as (sequence length, vocabulary size, is a position input: each
    /// row is 0, 1, …); empty for the other models.
    pub fn id_inputs(self) -> &'static [(usize, usize, bool)] {
        match self {
            Spec::M8 => &[(128, 2000, false), (128, 128, true)],
            Spec::R1 | Spec::R2 | Spec::R3 => &[(64, 1000, false)],
            _ => &[],
        }
    }

    /// Per-sample shape and loss of each output (M6's mask is `[64, 64, 1]`, the others are vectors).
    pub fn outputs(self) -> &'static [(&'static [usize], LossKind)] {
        use LossKind::*;
        match self {
            Spec::M1 | Spec::M5 | Spec::R1 | Spec::R2 | Spec::R3 => &[(&[1], BinaryCrossentropy)],
            Spec::M2 => &[(&[10], CategoricalCrossentropy), (&[1], BinaryCrossentropy)],
            Spec::M3 => &[(&[3], CategoricalCrossentropy)],
            Spec::M4 | Spec::M7 => &[(&[10], CategoricalCrossentropy)],
            Spec::M6 => &[(&[64, 64, 1], BinaryCrossentropy)],
            Spec::M8 => &[(&[2], CategoricalCrossentropy)],
        }
    }

    /// Inference batch sizes measured for this model (BENCH.md: 1 and 32, and 256 for M4).
    pub fn inference_batches(self) -> &'static [usize] {
        match self {
            Spec::M4 => &[1, 32, 256],
            _ => &[1, 32],
        }
    }

    /// Training batch sizes measured for this model (BENCH.md: 32 and 256; 1 too for M1; the models
    /// of issues #17–#19 at 32, as `benches/models.rs` and `benches/recurrent.rs`).
    pub fn train_batches(self) -> &'static [usize] {
        match self {
            // The M1 target covers training at batch 1 too.
            Spec::M1 => &[1, 32, 256],
            Spec::M6 | Spec::M7 | Spec::M8 | Spec::R1 | Spec::R2 | Spec::R3 => &[32],
            _ => &[32, 256],
        }
    }

    /// A synthetic batch: inputs uniform in [-1, 1] (images in [0, 1]), token ids uniform over the
    /// vocabulary, 0/1 labels for sigmoid outputs and one-hot rows for softmax outputs. Deterministic in
    /// `batch`.
    pub fn batch(self, batch: usize) -> Batch {
        let inputs = self
            .input_shapes()
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let mut rng = Rng::new(1 + i as u64);
                let mut full = vec![batch];
                full.extend_from_slice(shape);
                let (lo, hi) = if shape.len() == 3 { (0.0, 1.0) } else { (-1.0, 1.0) };
                ArrayD::from_shape_fn(full, |_| rng.uniform(lo, hi))
            })
            .collect();
        let ids = self
            .id_inputs()
            .iter()
            .enumerate()
            .map(|(i, &(len, vocab, positions))| {
                let mut rng = Rng::new(1 + i as u64);
                Array2::from_shape_fn((batch, len), |(_, t)| {
                    if positions {
                        t as i32
                    } else {
                        ((rng.uniform(0.0, 1.0) * vocab as f32) as i32).min(vocab as i32 - 1)
                    }
                })
            })
            .collect();
        let targets = self
            .outputs()
            .iter()
            .enumerate()
            .map(|(o, &(shape, kind))| {
                let mut rng = Rng::new(100 + o as u64);
                let mut full = vec![batch];
                full.extend_from_slice(shape);
                match kind {
                    LossKind::BinaryCrossentropy => ArrayD::from_shape_fn(full, |_| f32::from(u8::from(rng.uniform(0.0, 1.0) > 0.5))),
                    LossKind::CategoricalCrossentropy => {
                        let width = shape.iter().product::<usize>();
                        let mut y = Array2::zeros((batch, width));
                        for mut row in y.rows_mut() {
                            let k = ((rng.uniform(0.0, 1.0) * width as f32) as usize).min(width - 1);
                            row[k] = 1.0;
                        }
                        y.into_shape_with_order(IxDyn(&full)).expect("one-hot rows have the output's shape")
                    }
                }
            })
            .collect();
        Batch { inputs, ids, targets }
    }
}

/// One batch of a model's inputs and targets, in modelc's layout (rows first, images NHWC).
#[derive(Clone, Debug)]
pub struct Batch {
    /// One array per real-valued model input: batch × the input's shape.
    pub inputs: Vec<ArrayD<f32>>,
    /// One batch × length array per token-id input (M8, R1–R3).
    pub ids: Vec<Array2<i32>>,
    /// One array per model output: batch × the output's shape.
    pub targets: Vec<ArrayD<f32>>,
}

impl Batch {
    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.targets.first().map_or(0, |t| t.shape()[0])
    }

    /// The `o`-th target as a 2-D array, or an error if it has another rank.
    pub fn target2(&self, o: usize) -> Result<Array2<f32>> {
        Ok(self.targets.get(o).ok_or("no such output")?.clone().into_dimensionality()?)
    }

    /// The `o`-th target as a 4-D NHWC array, or an error if it has another rank.
    pub fn target4(&self, o: usize) -> Result<Array4<f32>> {
        Ok(self.targets.get(o).ok_or("no such output")?.clone().into_dimensionality()?)
    }

    /// The `o`-th target flattened to batch × (values per sample), row-major, for the peers: the
    /// layout their outputs are compared in (M6's one-channel mask is the same in NHWC and NCHW).
    pub fn peer_target(&self, o: usize) -> Result<(Vec<f32>, [usize; 2])> {
        let y = self.targets.get(o).ok_or("no such output")?;
        let rows = y.shape()[0];
        Ok((y.iter().copied().collect(), [rows, y.len() / rows.max(1)]))
    }

    /// The `i`-th input as a 2-D array, or an error if it has another rank.
    pub fn flat(&self, i: usize) -> Result<Array2<f32>> {
        Ok(self.inputs.get(i).ok_or("no such input")?.clone().into_dimensionality()?)
    }

    /// The `i`-th input as a 4-D NHWC array, or an error if it has another rank.
    pub fn image(&self, i: usize) -> Result<Array4<f32>> {
        Ok(self.inputs.get(i).ok_or("no such input")?.clone().into_dimensionality()?)
    }

    /// The `i`-th input with its layout converted for the peers: NHWC images become NCHW, the native
    /// layout of candle's and burn's conv2d, so no peer pays a transpose inside the timed loop.
    pub fn peer_input(&self, i: usize) -> Result<(Vec<f32>, Vec<usize>)> {
        let x = self.inputs.get(i).ok_or("no such input")?;
        let x = if x.ndim() == 4 { x.view().permuted_axes(vec![0, 3, 1, 2]) } else { x.view() };
        Ok((x.iter().copied().collect(), x.shape().to_vec()))
    }
}

/// A model in one framework with its optimizer state and one prepared batch.
pub trait Runner {
    /// The framework's name, as used for the criterion function id ("candle", "burn").
    fn name(&self) -> &'static str;

    /// One forward pass in inference mode on the prepared batch; returns the output shapes.
    fn infer(&mut self) -> Result<Vec<Vec<usize>>>;

    /// One training step on the prepared batch (forward, loss, backward, Adam update); returns the
    /// loss before the update.
    fn train_step(&mut self) -> Result<f32>;
}

/// Glorot-uniform limit for a kernel with these fans (Keras' default kernel initializer).
pub fn glorot_limit(fan_in: usize, fan_out: usize) -> f64 {
    (6.0 / (fan_in + fan_out) as f64).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_have_the_spec_shapes() {
        for spec in Spec::ALL {
            let b = spec.batch(3);
            assert_eq!(b.rows(), 3);
            for (x, shape) in b.inputs.iter().zip(spec.input_shapes()) {
                assert_eq!(&x.shape()[1..], *shape);
            }
            for (y, (shape, _)) in b.targets.iter().zip(spec.outputs()) {
                assert_eq!(&y.shape()[1..], *shape);
            }
            for (ids, &(len, vocab, _)) in b.ids.iter().zip(spec.id_inputs()) {
                assert_eq!(ids.dim(), (3, len));
                assert!(ids.iter().all(|&t| (0..vocab as i32).contains(&t)));
            }
        }
    }

    #[test]
    fn images_are_handed_to_peers_nchw() {
        let b = Spec::M3.batch(2);
        let (data, shape) = b.peer_input(0).expect("image input");
        assert_eq!(shape, [2, 3, 32, 32]);
        let nhwc = b.image(0).expect("4-D");
        assert_eq!(data[32 * 32 + 5], nhwc[[0, 0, 5, 1]]);
    }
}
