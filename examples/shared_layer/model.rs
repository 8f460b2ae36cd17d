//! The model and the synthetic data of the shared_layer example, also used by tests/shared_layer.rs and tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Are two vectors near each other? One encoder for both.
    pub struct Siamese {
        input a: [12];
        input b: [12];
        layer enc = Dense(16, activation = tanh);
        let d = Subtract()([enc(a), enc(b)]);
        output same = Dense(1, activation = sigmoid)(Multiply()([d, d]));
    }
}

/// Pairs: even rows a near copy of `a` (label 1), odd rows an unrelated vector (label 0).
pub fn pairs(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let a = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let noise = Array2::from_shape_fn((n, 12), |_| rng.uniform(-0.1, 0.1));
    let other = Array2::from_shape_fn((n, 12), |_| rng.uniform(-1.0, 1.0));
    let b = Array2::from_shape_fn((n, 12), |(i, j)| if i % 2 == 0 { a[[i, j]] + noise[[i, j]] } else { other[[i, j]] });
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(i % 2 == 0)));
    (a, b, y)
}
