//! The model and the synthetic data of the fusion example, also used by tests/keras_parity.rs and tests/alloc_free.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Fuses two feature sources into one score.
    pub struct Fusion {
        input left_features: [8];
        input right_features: [4];

        let left = Dense(16, activation = relu)(left_features);
        let left = Dense(8, activation = relu)(left);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

/// `n` samples: left ~ U(-1, 1)^8, right ~ U(-1, 1)^4, label = [w·left + v·right + left0·right0 / 2 > 0].
pub fn make_data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let w = [0.9f32, -0.7, 0.5, 0.0, 0.3, -0.4, 0.8, 0.0];
    let v = [-0.6f32, 0.9, 0.0, 0.5];
    let left = Array2::from_shape_fn((n, 8), |_| rng.uniform(-1.0, 1.0));
    let right = Array2::from_shape_fn((n, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| {
        let s: f32 = (0..8).map(|j| w[j] * left[[i, j]]).sum::<f32>()
            + (0..4).map(|j| v[j] * right[[i, j]]).sum::<f32>()
            + 0.5 * left[[i, 0]] * right[[i, 0]];
        if s > 0.0 {
            1.0
        } else {
            0.0
        }
    });
    (left, right, y)
}
