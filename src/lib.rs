//! # modelc
//!
//! Keras-functional-style neural network graphs, compiled to specialized Rust at compile time.
//!
//! ```ignore
//! use modelc::prelude::*;
//!
//! model! {
//!     /// Fuses two feature sources into one score.
//!     pub struct Fusion {
//!         input left_features: [8];
//!         input right_features: [4];
//!         let left = Dense(16, activation = relu)(left_features);
//!         let right = Dense(8, activation = relu)(right_features);
//!         let merged = Concatenate()([left, right]);
//!         output score = Dense(1, activation = sigmoid)(merged);
//!     }
//! }
//! ```
//!
//! The macro checks every shape at compile time and emits the model struct, typed
//! `FusionInputs` / `FusionOutputs` / `FusionTargets` structs, `forward`, `backward`,
//! `SUMMARY` and `DOT`. Training, losses, optimizers and weight I/O come from the runtime,
//! re-exported here.
//!
//! Large matrix products (big batches, wide layers, convolutions) are split across threads:
//! [`set_num_threads`] or the `MODELC_NUM_THREADS` environment variable choose how many
//! (default: the CPUs available); small ones always run on the calling thread.

pub use model_macros::model;
pub use model_runtime::{Error, Result};

pub use model_runtime::callbacks::{Checkpoint, Direction, EarlyStopping, Schedule};
pub use model_runtime::kernels::activation::Activation;
pub use model_runtime::kernels::gemm::{num_threads, set_num_threads};
pub use model_runtime::loss::Loss;
pub use model_runtime::metrics::Metric;
pub use model_runtime::optim::{Adagrad, Adam, AdamW, Adamax, Clip, Lion, Nadam, Optimizer, RMSprop, Sgd};
pub use model_runtime::train::{Fit, History, Trainer};
pub use model_runtime::{datasets, gradcheck, init, io, kernels, loss, metrics, model as ops, network, optim, spec, train, viz};

/// Re-exported so users name the same ndarray version the generated code uses.
pub use ndarray;

/// Everything a model file needs: `use modelc::prelude::*;`.
pub mod prelude {
    pub use crate::model;
    pub use crate::{Adagrad, AdamW, Adamax, Lion, Nadam, RMSprop};
    pub use crate::{Adam, Checkpoint, EarlyStopping, Fit, History, Loss, Metric, Optimizer, Schedule, Sgd, Trainer};
    pub use model_runtime::network::Network;
}

/// The only paths generated code names. Not a public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use model_runtime::*;
    pub use ndarray;
    pub use std::{mem::take, result::Result as StdResult, vec::Vec};
}
