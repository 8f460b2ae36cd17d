//! Static descriptions of a compiled model's tensors and parameters, written by the generated code as consts.

use crate::kernels::activation::Activation;

/// Element type of a model input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DType {
    /// 32-bit float.
    F32,
    /// 32-bit signed integer (token ids for `Embedding`).
    I32,
}

/// One model input or output: its name and its shape without the batch dimension.
#[derive(Clone, Copy, Debug)]
pub struct TensorSpec {
    /// The name written in the `model!` block.
    pub name: &'static str,
    /// Shape without the batch dimension, as in `keras.Input(shape=...)`.
    pub shape: &'static [usize],
    /// Element type.
    pub dtype: DType,
}

impl TensorSpec {
    /// Number of elements of one sample (the product of `shape`).
    pub fn sample_len(&self) -> usize {
        self.shape.iter().product()
    }

    /// The shape in Keras notation, batch first: `(None, 8)`.
    pub fn keras_shape(&self) -> String {
        keras_shape(self.shape)
    }
}

/// Formats a batch-less shape in Keras notation: `[8, 8, 3]` becomes `(None, 8, 8, 3)`.
pub fn keras_shape(shape: &[usize]) -> String {
    let mut s = String::from("(None");
    for d in shape {
        s.push_str(", ");
        s.push_str(&d.to_string());
    }
    s.push(')');
    s
}

/// The token ids an integer input may hold: `Embedding` layer `layer` reads it, so its ids must lie in
/// `0..limit` (the layer's `input_dim`). Checked when inputs are staged, before anything runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IdBound {
    /// The input's index in `Network::INPUTS`.
    pub input: usize,
    /// One past the largest valid id.
    pub limit: usize,
    /// The Embedding layer's name, for messages.
    pub layer: &'static str,
}

/// How a parameter is initialized by `new(seed)`: Keras' defaults per role.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Init {
    /// Glorot (Xavier) uniform: U(-l, l) with l = sqrt(6 / (fan_in + fan_out)). Keras' default kernel init.
    GlorotUniform {
        /// Fan-in of the kernel.
        fan_in: usize,
        /// Fan-out of the kernel.
        fan_out: usize,
    },
    /// Uniform on [-limit, limit] (Keras' Embedding default uses limit 0.05).
    Uniform {
        /// Half-width of the interval.
        limit: f32,
    },
    /// All zeros (biases, `beta`, moving means).
    Zeros,
    /// All ones (`gamma`, moving variances).
    Ones,
    /// Every value `value` (Keras' `constant(value = 0.5)`).
    Constant {
        /// The value.
        value: f32,
    },
    /// N(mean, stddev²) (Keras' `random_normal`).
    RandomNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
        /// The initializer's own seed: the values then do not depend on the model's seed.
        seed: Option<u64>,
    },
    /// U(minval, maxval) (Keras' `random_uniform`).
    RandomUniform {
        /// Lower bound.
        minval: f32,
        /// Upper bound.
        maxval: f32,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// N(mean, stddev²) redrawn outside two standard deviations (Keras' `truncated_normal`).
    TruncatedNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation before truncation.
        stddev: f32,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// Keras' `variance_scaling`, of which `glorot_*`, `he_*` and `lecun_*` are instances.
    VarianceScaling {
        /// The variance's scale.
        scale: f32,
        /// Which fan divides it.
        mode: FanMode,
        /// The distribution drawn from.
        distribution: Distribution,
        /// Fan-in, computed from the shape as Keras does.
        fan_in: usize,
        /// Fan-out, computed from the shape as Keras does.
        fan_out: usize,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// A random orthogonal matrix of `rows × cols` (the shape's leading axes flattened), times `gain`.
    Orthogonal {
        /// Multiplier.
        gain: f32,
        /// Product of every axis but the last.
        rows: usize,
        /// The last axis.
        cols: usize,
        /// The initializer's own seed.
        seed: Option<u64>,
    },
    /// `gain` times the `rows × cols` identity matrix (ones on the main diagonal).
    Identity {
        /// Multiplier.
        gain: f32,
        /// Rows.
        rows: usize,
        /// Columns.
        cols: usize,
    },
    /// An LSTM bias with `unit_forget_bias`: zeros, except ones on the forget gate's block (the second
    /// of four blocks of `units`).
    ForgetBias {
        /// Units of the LSTM.
        units: usize,
    },
}

impl Init {
    /// The initializer's own seed, when it was given one.
    pub fn seed(&self) -> Option<u64> {
        match *self {
            Init::RandomNormal { seed, .. }
            | Init::RandomUniform { seed, .. }
            | Init::TruncatedNormal { seed, .. }
            | Init::VarianceScaling { seed, .. }
            | Init::Orthogonal { seed, .. } => seed,
            _ => None,
        }
    }
}

/// Which fan `variance_scaling` divides its scale by (Keras' `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// `fan_in`.
    FanIn,
    /// `fan_out`.
    FanOut,
    /// `(fan_in + fan_out) / 2`.
    FanAvg,
}

/// The distribution `variance_scaling` draws from (Keras' `distribution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Normal truncated at two standard deviations, its standard deviation corrected for the truncation.
    TruncatedNormal,
    /// Normal.
    UntruncatedNormal,
    /// Uniform.
    Uniform,
}

/// One named parameter tensor of a model, stored at `offset` in the model's flat `f32` buffer.
#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    /// Keras-style path, e.g. `dense_1/kernel` or `vision/conv2d/bias`.
    pub name: &'static str,
    /// Keras layout, e.g. `[in, out]` for a Dense kernel.
    pub shape: &'static [usize],
    /// Offset of the first element in the flat parameter buffer.
    pub offset: usize,
    /// Initializer used by `new(seed)`.
    pub init: Init,
    /// Whether the optimizer updates it (false for frozen layers and moving statistics).
    pub trainable: bool,
    /// A statistic the training forward pass maintains (`BatchNormalization`'s moving mean and variance):
    /// never trained, and without a gradient.
    pub statistic: bool,
}

impl ParamSpec {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// True for a zero-sized parameter.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The range of this parameter in the flat buffer.
    pub fn range(&self) -> std::ops::Range<usize> {
        self.offset..self.offset + self.len()
    }
}

/// Per-output facts the training loop needs from the compiler.
#[derive(Clone, Copy, Debug)]
pub struct OutputInfo {
    /// The activation that produced this output when it may be fused with the loss
    /// (softmax with categorical cross-entropy, sigmoid with binary cross-entropy);
    /// `Activation::Linear` when no fusion is possible (the output also feeds other layers).
    pub fusable_activation: Activation,
}
