//! The model and the synthetic data of the nested_models example, also used by tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A small tower.
    pub struct Tower {
        input x: [6];
        let h = Dense(12, activation = relu)(x);
        output y = Dense(4, activation = tanh)(h);
    }

    /// A feature extractor whose weights are kept fixed.
    pub struct Features {
        input x: [4];
        output f = Dense(6, activation = tanh)(x);
    }

    /// Towers on two inputs, frozen features on a third, merged and scored.
    pub struct Composed {
        input left: [6];
        input right: [6];
        input meta: [4];
        layer tower = Tower;
        layer features = Features(trainable = false);
        let merged = Concatenate()([tower(left), tower(right), features(meta)]);
        output score = Dense(1, activation = sigmoid)(Dense(8, activation = relu)(merged));
    }
}

/// score = [left0 + right1 − meta0 > 0].
pub fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let l = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let r = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let m = Array2::from_shape_fn((n, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] + r[[i, 1]] - m[[i, 0]] > 0.0)));
    (l, r, m, y)
}
