//! The model and the synthetic data of the multitask example, also used by tests/multitask.rs and tests/keras_parity.rs
//! (through `#[path]`), so the tests check exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs (and some other tests) use only the model

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// A shared trunk and three heads.
    pub struct MultiTask {
        input x: [6];
        let trunk = Dense(24, activation = relu)(x);
        let trunk = Dense(16, activation = tanh)(trunk);
        output flag = Dense(1, activation = sigmoid)(trunk);
        output amount = Dense(1)(trunk);
        output class = Dense(3, activation = softmax)(Dense(8, activation = relu)(trunk));
    }
}

/// flag = [x0 + x1 > 0], amount = x2/2 − x3 + 1/4, class by thresholds on x4 and x5.
pub fn data(n: usize, seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let flag = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] + x[[i, 1]] > 0.0)));
    let amount = Array2::from_shape_fn((n, 1), |(i, _)| 0.5 * x[[i, 2]] - x[[i, 3]] + 0.25);
    let class = Array2::from_shape_fn((n, 3), |(i, k)| {
        let c = if x[[i, 4]] > 0.3 {
            0
        } else if x[[i, 5]] > 0.0 {
            1
        } else {
            2
        };
        f32::from(u8::from(c == k))
    });
    (x, flag, amount, class)
}
