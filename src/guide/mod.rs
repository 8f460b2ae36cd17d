//! # The modelc guide
//!
//! A guide for Keras users and Rust developers, living in the API docs so that every example in it
//! is a doctest: `cargo test` compiles each one (and runs most of them), so none can go stale.
//!
//! | chapter | what it teaches |
//! |---|---|
//! | [`dsl`] | the `model!` language: every statement form, shapes, integer inputs, shared layers, nested and frozen models |
//! | [`layers`] | every layer kind with its arguments, defaults, weights and Keras equivalent; the activations |
//! | [`api`] | what `model!` generates: `new`, `predict`/`predict_into`, `forward`/`backward`, parameters by name, `save`/`load`, ONNX export, `SUMMARY`, `DOT`, pictures |
//! | [`training`] | `compile`, `fit`, `evaluate`, `train_step`; losses, metrics, optimizers, schedules, early stopping, checkpoints; several outputs; streaming data that does not fit in memory |
//! | [`distributed`] | data-parallel training on MPI (feature `mpi`): `mpirun`, what `fit` does across processes, faults, when it pays |
//! | [`keras`] | porting from Keras: a table of Keras calls and their modelc equivalents, and the differences |
//! | [`import`] | bringing a Keras `.keras` or `.h5` model in as `model!` source and weights (`modelc import`) |
//! | [`errors`] | compile-time errors (where they appear, how to read them) and run-time errors |
//! | [`performance`] | release builds, threads, `MODELC_NUM_THREADS`, the instruction set (`MODELC_GEMM_ISA`), batch sizes, allocation-free calls, the inference plan |
//! | [`mixed_precision`] | Keras' `mixed_bfloat16` dtype policy: bf16 products with f32 weights and losses, the hardware it uses, the fallback |
//! | [`editor`] | what the errors look like in an editor with rust-analyzer, and what it needs |
//!
//! For the compiler's inner workings (passes, invariants, where a layer kind lives) read
//! `ARCHITECTURE.md` at the repository root; every compile-time error is listed with an example and
//! its fix in `docs/diagnostics.md`.
//!
//! ## A first model
//!
//! A model is written inside [`model!`](crate::model) in the vocabulary of Keras' functional API:
//! inputs with their shapes (the batch excluded), layers called on tensors, outputs. The macro checks
//! every shape while your crate compiles and generates a struct with typed companions
//! (`FusionInputs`, `FusionTargets`, ...) and the Keras-style methods.
//!
//! ```rust
//! use modelc::ndarray::Array2;
//! use modelc::prelude::*;
//!
//! model! {
//!     /// Fuses two feature sources into one score.
//!     pub struct Fusion {
//!         input left_features: [8];
//!         input right_features: [4];
//!
//!         let left = Dense(16, activation = relu)(left_features);
//!         let left = Dense(8, activation = relu)(left);
//!         let right = Dense(8, activation = relu)(right_features);
//!         let merged = Concatenate()([left, right]);
//!         output score = Dense(1, activation = sigmoid)(merged);
//!     }
//! }
//!
//! fn main() -> modelc::Result<()> {
//!     // 256 samples of a learnable rule: the label says whether the features sum above zero.
//!     let mut rng = modelc::init::Rng::new(7);
//!     let left = Array2::from_shape_fn((256, 8), |_| rng.uniform(-1.0, 1.0));
//!     let right = Array2::from_shape_fn((256, 4), |_| rng.uniform(-1.0, 1.0));
//!     let y = Array2::from_shape_fn((256, 1), |(i, _)| f32::from(u8::from(left.row(i).sum() + right.row(i).sum() > 0.0)));
//!
//!     let mut model = Fusion::new(42); // Keras' initializers (Glorot-uniform kernels, zero biases), seeded
//!     print!("{}", Fusion::SUMMARY); // the table Keras' model.summary() prints, made at compile time
//!
//!     let inputs = FusionInputs { left_features: left.view(), right_features: right.view() };
//!     let targets = FusionTargets { score: y.view() };
//!     let mut trainer = model.compile(Adam::new(1e-2), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
//!     let history = trainer.fit(&inputs, &targets, &Fit { epochs: 20, verbose: false, ..Fit::default() })?;
//!     let logs = trainer.evaluate(&inputs, &targets, 64)?;
//!     assert!(logs["accuracy"] > 0.8, "{history:?}");
//!
//!     let out = model.predict(&inputs)?; // FusionOutputs { score: Array2<f32> of shape (256, 1) }
//!     assert_eq!(out.score.dim(), (256, 1));
//!
//!     let path = std::env::temp_dir().join("modelc-guide-fusion.safetensors");
//!     model.save(&path)?; // Keras names and layouts: dense/kernel, dense/bias, dense_1/kernel, ...
//!     let mut again = Fusion::new(0);
//!     again.load(&path)?;
//!     assert_eq!(again.predict(&inputs)?, out);
//!     # std::fs::remove_file(&path).ok();
//!     Ok(())
//! }
//! ```
//!
//! The same program with a real dataset is `cargo run --release --example digits`; `examples/` holds
//! one program per pattern (branches, several heads, merges, residuals, shared layers, nested models,
//! a conv branch fused with a tabular one, token ids).

#[doc = include_str!("dsl.md")]
pub mod dsl {}

#[doc = include_str!("layers.md")]
pub mod layers {}

#[doc = include_str!("api.md")]
pub mod api {}

#[doc = include_str!("training.md")]
pub mod training {}

#[doc = include_str!("distributed.md")]
pub mod distributed {}

#[doc = include_str!("keras.md")]
pub mod keras {}

#[doc = include_str!("import.md")]
pub mod import {}

#[doc = include_str!("errors.md")]
pub mod errors {}

#[doc = include_str!("performance.md")]
pub mod performance {}

#[doc = include_str!("mixed_precision.md")]
pub mod mixed_precision {}

#[doc = include_str!("editor.md")]
pub mod editor {}
