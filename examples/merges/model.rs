//! The model and the synthetic data of the merges example, also used by tests/merges.rs and tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Two projections combined by every merge.
    pub struct Interactions {
        input a: [6];
        input b: [6];
        let pa = Dense(8, activation = tanh)(a);
        let pb = Dense(8, activation = tanh)(b);
        let merged = Concatenate()([
            Add()([pa, pb]),
            Subtract()([pa, pb]),
            Multiply()([pa, pb]),
            Average()([pa, pb]),
            Maximum()([pa, pb]),
            Minimum()([pa, pb]),
            Dot(axes = 1)([pa, pb]),
        ]);
        output y = Dense(1)(Dense(16, activation = relu)(merged));
    }
}

/// The rule to learn: y = a0·b0 + a1 − b2, one row per sample.
pub fn target(a: &Array2<f32>, b: &Array2<f32>) -> Array2<f32> {
    Array2::from_shape_fn((a.nrows(), 1), |(i, _)| a[[i, 0]] * b[[i, 0]] + a[[i, 1]] - b[[i, 2]])
}

/// `n` samples of a, b ~ U(-1, 1)^6 and their `target`.
pub fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let y = target(&a, &b);
    (a, b, y)
}
