//! Seed pattern 7 (BENCH M3): a conv branch pooled by GlobalAveragePooling2D and fused with a tabular
//! branch, trained with Adam, categorical cross-entropy and accuracy.
//!
//! Synthetic data with a learnable rule: each image is noise plus a brightened quadrant in every color
//! channel, by a random amount per channel; the class is the channel with the largest
//! `brightness + 0.5 · meta[channel]`, so both branches are needed.
//!
//! Run: `cargo run --release --example vision_meta`

use modelc::init::Rng;
use modelc::ndarray::{s, Array2, Array4};
use modelc::prelude::*;
use std::time::Instant;

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
fn make_data(n: usize, seed: u64) -> (Array4<f32>, Array2<f32>, Array2<f32>) {
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

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (image, meta, y) = make_data(512, 7);
    let (test_image, test_meta, test_y) = make_data(256, 8);

    let mut model = VisionMeta::new(42);
    print!("{}", VisionMeta::SUMMARY);

    let inputs = VisionMetaInputs { image: image.view(), meta: meta.view() };
    let targets = VisionMetaTargets { probs: y.view() };
    let mut trainer = model.compile(Adam::new(3e-3), VisionMetaLosses { probs: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let start = Instant::now();
    let history = trainer.fit(&inputs, &targets, &Fit { epochs: 8, batch_size: 32, seed: 1, ..Fit::default() })?;
    let train_time = start.elapsed();

    let losses = history.get("loss").unwrap_or(&[]);
    for (epoch, loss) in losses.iter().enumerate() {
        println!("epoch {:>2}: loss {loss:.4}", epoch + 1);
    }
    let test_inputs = VisionMetaInputs { image: test_image.view(), meta: test_meta.view() };
    let test_targets = VisionMetaTargets { probs: test_y.view() };
    let logs = trainer.evaluate(&test_inputs, &test_targets, 64)?;
    println!("test accuracy: {:.4}", logs.get("accuracy").copied().unwrap_or(0.0));
    println!(
        "trained {} epochs on {} samples in {:.2} s ({:.1} ms/step)",
        losses.len(),
        image.shape()[0],
        train_time.as_secs_f64(),
        train_time.as_secs_f64() * 1e3 / (losses.len() * image.shape()[0].div_ceil(32)) as f64
    );
    Ok(())
}
