//! The model and the synthetic data of the residual example, also used by tests/residual.rs and tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A stem and two residual blocks.
    pub struct ResNet {
        input x: [10];
        let h = Dense(16, activation = relu)(x);
        let r = Dense(16, activation = relu)(h);
        let r = Dense(16)(r);
        let h = Add()([h, r]);
        let r = Dense(16, activation = tanh)(h);
        let h = Add()([h, Dense(16)(r)]);
        output y = Dense(1, activation = sigmoid)(h);
    }
}

/// y = [x0·x1 + x2/2 > 0].
pub fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 10), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] * x[[i, 1]] + 0.5 * x[[i, 2]] > 0.0)));
    (x, y)
}
