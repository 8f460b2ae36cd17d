//! Element-wise and row-wise activations with their derivatives.

/// An activation function, as a layer or as a layer's `activation =` argument (Keras names).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    /// Identity.
    Linear,
    /// max(x, 0).
    Relu,
    /// 1 / (1 + e^-x).
    Sigmoid,
    /// tanh(x).
    Tanh,
    /// Softmax over the last axis.
    Softmax,
    /// Gaussian error linear unit; `approximate` selects the tanh form (Keras' default is exact erf).
    Gelu {
        /// Use the tanh approximation.
        approximate: bool,
    },
    /// x * sigmoid(x) (also called swish).
    Silu,
    /// x if x > 0 else alpha * (e^x - 1).
    Elu {
        /// Scale of the negative part (Keras default 1.0).
        alpha: f32,
    },
    /// x if x >= 0 else negative_slope * x.
    LeakyRelu {
        /// Slope of the negative part (Keras default 0.2).
        negative_slope: f32,
    },
    /// ln(1 + e^x).
    Softplus,
}
