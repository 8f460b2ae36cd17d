//! The model and synthetic data of the vision_meta example, also used by tests/keras_parity.rs (through
//! `#[path]`), so the parity test checks exactly the model the example trains.
#![allow(dead_code)] // keras_parity.rs uses only the model

use modelc::init::Rng;
use modelc::ndarray::{s, Array2, Array4};
use modelc::prelude::*;

model! {
    /// An image branch and a tabular branch fused into three class probabilities.
    pub struct VisionMeta {
        input image: [32, 32, 3];
        input meta: [6];

        let v = Conv2D(16, 3, padding = same, activation = relu)(image);
        let v = Conv2D(32, 3, padding = same, activation = relu)(v);
        let v = GlobalAveragePooling2D()(v);
        let m = Dense(8, activation = relu)(meta);
        let merged = Concatenate()([v, m]);
        output probs = Dense(3, activation = softmax)(merged);
    }
}

/// `n` samples: (images, meta, one-hot labels).
pub fn make_data(n: usize, seed: u64) -> (Array4<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let mut image = Array4::from_shape_fn((n, 32, 32, 3), |_| rng.uniform(0.0, 0.5));
    let meta = Array2::from_shape_fn((n, 6), |_| rng.uniform(-1.0, 1.0));
    let mut y = Array2::zeros((n, 3));
    for i in 0..n {
        let mut best = (0, f32::NEG_INFINITY);
        for c in 0..3 {
            let boost = rng.uniform(0.0, 1.0);
            let (qy, qx) = ((rng.next_u64() % 2) as usize * 16, (rng.next_u64() % 2) as usize * 16);
            image.slice_mut(s![i, qy..qy + 16, qx..qx + 16, c]).mapv_inplace(|v| v + boost);
            let score = boost + 0.5 * meta[[i, c]];
            if score > best.1 {
                best = (c, score);
            }
        }
        y[[i, best.0]] = 1.0;
    }
    (image, meta, y)
}
