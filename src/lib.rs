//! # modelc
//!
//! Keras-functional-style neural network graphs, compiled to specialized Rust at compile time.
//!
//! You write a model in [`model!`] with Keras' vocabulary: inputs with their shapes, layers called on
//! tensors, branches, merges, shared layers, nested models, outputs. The macro checks every shape
//! while your crate compiles (a mistake is a compile error at the exact token, in `cargo check` and
//! in your editor), plans the memory, and generates plain Rust: the model struct, typed
//! `<Model>Inputs` / `<Model>Outputs` / `<Model>Targets` structs, forward and backward passes as
//! straight-line kernel calls, and a Keras-style `SUMMARY` and Graphviz `DOT` made at compile time.
//! Training (`compile`, `fit`, `evaluate`, `predict`), losses, metrics, optimizers, callbacks and
//! weight files (safetensors, Keras names and layouts) come from a small runtime built on ndarray,
//! re-exported here.
//!
//! ```
//! use modelc::ndarray::Array2;
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
//!
//! # fn main() -> modelc::Result<()> {
//! let mut model = Fusion::new(42);
//! let (left, right) = (Array2::<f32>::zeros((2, 8)), Array2::<f32>::zeros((2, 4)));
//! let out = model.predict(&FusionInputs { left_features: left.view(), right_features: right.view() })?;
//! assert_eq!(out.score.dim(), (2, 1));
//! # Ok(())
//! # }
//! ```
//!
//! **Start with [the guide](guide)**: the language, every layer, the generated API, training,
//! porting from Keras, errors, performance and the editor, each chapter with examples that are
//! compiled and run by `cargo test`.
//!
//! Large matrix products (big batches, wide layers, convolutions) are split across threads:
//! [`set_num_threads`] or the `MODELC_NUM_THREADS` environment variable choose how many
//! (default: the CPUs available); small ones always run on the calling thread.
//!
//! Like TensorFlow and JAX on CPU, modelc computes with subnormal floats flushed to zero
//! (flush-to-zero and denormals-are-zero), so a trainer whose gradients or Adam moments have
//! decayed toward zero does not slow down, and results match TensorFlow's and JAX's. The mode is
//! set on the threads that compute for the duration of each call (`predict`, `forward`,
//! `backward`, `train_step`, `fit`, `evaluate`) and the caller's mode is restored on return.
//! [`set_flush_denormals`]`(false)` or `MODELC_FLUSH_DENORMALS=0` keep subnormals instead
//! (see [`fpenv`]).

pub mod guide;

/// Compiles Keras-functional-style models into specialized Rust at compile time.
///
/// One invocation holds one or more models. Each is written like a struct whose body declares the
/// inputs (per-sample shapes, batch excluded), the layers and how they are called, and the outputs:
///
/// ```
/// use modelc::ndarray::Array2;
/// use modelc::prelude::*;
///
/// model! {
///     /// A shared encoder on two inputs (one set of weights), merged and scored.
///     pub struct Siamese {
///         input a: [12];
///         input b: [12];
///         layer enc = Dense(16, activation = tanh);   // declared once, called twice
///         let d = Subtract()([enc(a), enc(b)]);
///         output same = Dense(1, activation = sigmoid)(Multiply()([d, d]));
///     }
/// }
///
/// # fn main() -> modelc::Result<()> {
/// let mut model = Siamese::new(7);                  // Keras' initializers, seeded
/// print!("{}", Siamese::SUMMARY);                   // Keras-style summary, made at compile time
/// let (a, b) = (Array2::<f32>::ones((4, 12)), Array2::<f32>::zeros((4, 12)));
/// let inputs = SiameseInputs { a: a.view(), b: b.view() };
/// let y = Array2::<f32>::zeros((4, 1));
/// let mut trainer = model.compile(Adam::new(1e-3), SiameseLosses { same: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
/// trainer.fit(&inputs, &SiameseTargets { same: y.view() }, &Fit { epochs: 2, verbose: false, ..Fit::default() })?;
/// let out = model.predict(&inputs)?;                // SiameseOutputs { same: Array2<f32> of shape (4, 1) }
/// assert_eq!(out.same.dim(), (4, 1));
/// assert_eq!(model.param("dense/kernel")?.shape(), &[12, 16]); // the shared encoder: one kernel
/// # Ok(())
/// # }
/// ```
///
/// Statements: `input x: [8];` (`as i32` for token ids), `layer enc = Dense(16);` (a layer instance,
/// shared by every call), `let h = Dense(8)(x);` (shadowing allowed; `let (a, b) = ...;` for a
/// nested model with two outputs) and `output y = ...;`. Merges take a list: `Concatenate()([a, b])`.
/// A model of another `model!` is a layer: `layer tower = Tower;`. Every layer takes `name = "..."`
/// and `trainable = false`.
///
/// For each model `Net`, the macro generates `Net` (with `new`, `predict`, `predict_into`,
/// `forward`, `backward`, `compile`, `param`, `set_param`, `count_params`, `save`, `load`,
/// `SUMMARY`, `DOT`), `NetInputs`, `NetOutputs`, `NetTargets`, `NetPerOutput<T>` and `NetLosses`.
///
/// Every mistake is a compile error at the token at fault, naming the tensors, their shapes and a
/// fix; the model's items are still generated, so the rest of your code adds no errors.
///
/// The guide covers it all: [the language](crate::guide::dsl), [the layers](crate::guide::layers),
/// [the generated API](crate::guide::api), [training](crate::guide::training),
/// [errors](crate::guide::errors).
pub use model_macros::model;
pub use model_runtime::{Error, Result};

pub use model_runtime::callbacks::{
    Callback, CallbackState, Checkpoint, Control, CsvLogger, Direction, EarlyStopping, LogsView, ModelCheckpoint, ReduceLROnPlateau,
    Schedule, TerminateOnNaN,
};
pub use model_runtime::fpenv::{flush_denormals, set_flush_denormals};
pub use model_runtime::kernels::activation::Activation;
pub use model_runtime::kernels::gemm::{num_threads, set_num_threads};
pub use model_runtime::loss::Loss;
pub use model_runtime::metrics::{AucCurve, Metric};
pub use model_runtime::optim::{Adagrad, Adam, AdamW, Adamax, Clip, Lion, Nadam, Optimizer, RMSprop, Sgd, StateMut};
pub use model_runtime::precision::{Bf16Mode, DTypePolicy, PolicyStatus};
pub use model_runtime::stream::{Batch, NoValidation, ValidationArrays, ValidationData, ValidationStream};
pub use model_runtime::tensorboard::{TensorBoard, UpdateFreq};
pub use model_runtime::train::{Fit, FitError, History, SampleWeight, Trainer};
pub use model_runtime::{
    checkpoint, datasets, fpenv, gradcheck, init, io, kernels, loss, metrics, model as ops, network, optim, precision, spec, stream,
    tensorboard, train, viz,
};

/// Re-exported so users name the same ndarray version the generated code uses.
pub use ndarray;

/// Data-parallel training on MPI (feature `mpi`): `distributed::Mpi`, and how `fit` shards the batches.
pub use model_runtime::distributed;
/// ONNX export of compiled models: `onnx::save(&model, path)`, the same as `model.save_onnx(path)`.
pub use model_runtime::onnx;

/// Everything a model file needs: `use modelc::prelude::*;`.
pub mod prelude {
    pub use crate::model;
    pub use crate::{Adagrad, AdamW, Adamax, Lion, Nadam, RMSprop};
    pub use crate::{
        Adam, AucCurve, Batch, Checkpoint, DTypePolicy, EarlyStopping, Fit, History, Loss, Metric, Optimizer, SampleWeight, Schedule, Sgd,
        Trainer,
    };
    pub use crate::{
        Callback, CallbackState, Control, CsvLogger, LogsView, ModelCheckpoint, ReduceLROnPlateau, TensorBoard, TerminateOnNaN,
    };
    pub use model_runtime::network::Network;
}

/// The only paths generated code names. Not a public API: may change in any release.
#[doc(hidden)]
pub mod __private {
    pub use model_runtime::*;
    pub use ndarray;
    pub use std::{mem::take, result::Result as StdResult, vec::Vec};
}
