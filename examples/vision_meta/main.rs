//! Seed pattern 7 (BENCH M3): a conv branch pooled by GlobalAveragePooling2D and fused with a tabular
//! branch, trained with Adam, categorical cross-entropy and accuracy.
//!
//! Synthetic data with a learnable rule: each image is noise plus a brightened quadrant in every color
//! channel, by a random amount per channel; the class is the channel with the largest
//! `brightness + 0.5 · meta[channel]`, so both branches are needed.
//!
//! Run: `cargo run --release --example vision_meta`

use modelc::prelude::*;
use std::time::Instant;

mod model;
use model::*;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let (image, meta, y) = make_data(512, 7);
    let (test_image, test_meta, test_y) = make_data(256, 8);

    let mut model = VisionMeta::new(42);
    print!("{}", VisionMeta::SUMMARY);
    std::fs::create_dir_all("out")?;
    modelc::viz::write_graph_svg(VisionMeta::DOT, "out/vision_meta.svg")?;
    println!("wrote out/vision_meta.svg (the model graph)");

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
