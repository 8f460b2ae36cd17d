//! The integration tests of training, parity with Keras and weight files, one module per file of `tests/`
//! (see `tests/models.rs` for why and for how a new file is registered). Run one file's tests with
//! `cargo test --test training <file>::`.

// Several files include the same example's `model.rs` (`#[path]`), each as its own module, as they did
// when each file was a binary of its own: the files stay independent of each other.
#![allow(clippy::duplicate_mod)]

mod counting_alloc;
mod parity;

mod attention_parity;
mod callbacks;
mod checkpoint;
mod custom_loops;
mod keras_import;
mod keras_losses_metrics;
mod keras_parity;
mod optimizers;
mod regularizers;
mod sample_weight;
mod sequence_parity;
mod streaming;
mod tensorboard;
mod training_extras;
mod training_faults;
mod vision_parity;
mod weights;
