//! The model and the synthetic data of the branch_concat example, also used by tests/branch_concat.rs and tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// One input, three parallel paths, joined.
    pub struct Branches {
        input features: [8];
        let wide = Dense(16, activation = relu)(features);
        let narrow = Dense(8, activation = tanh)(features);
        let linear = Dense(4)(features);
        let joined = Concatenate()([wide, narrow, linear]);
        output label = Dense(1, activation = sigmoid)(joined);
    }
}

/// label = [x0 − x1 + x2·x3 > 0].
pub fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 8), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] - x[[i, 1]] + x[[i, 2]] * x[[i, 3]] > 0.0)));
    (x, y)
}
