//! Times BENCH M3 (the vision_meta model) in a loop, for profilers and A/B runs:
//! `cargo run --release --example m3_step -- [train|infer] [batch] [iters] [threads]`.
//! Prints the median, min and max milliseconds per call over blocks of calls.
#[path = "../vision_meta/model.rs"]
mod model;

use model::{VisionMeta, VisionMetaInputs, VisionMetaLosses, VisionMetaTargets};
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4};
use modelc::prelude::*;
use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let mode = args.get(1).map(String::as_str).unwrap_or("train").to_string();
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(32);
    let iters: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(200);
    let threads: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1);
    modelc::set_num_threads(threads);
    let mut rng = Rng::new(1);
    let image = Array4::from_shape_fn((batch, 32, 32, 3), |_| rng.uniform(0.0, 1.0));
    let meta = Array2::from_shape_fn((batch, 6), |_| rng.uniform(-1.0, 1.0));
    let mut y = Array2::zeros((batch, 3));
    for i in 0..batch {
        y[[i, i % 3]] = 1.0;
    }
    let mut model = VisionMeta::new(0);
    let inputs = VisionMetaInputs { image: image.view(), meta: meta.view() };
    let targets = VisionMetaTargets { probs: y.view() };
    let block = 10;
    let mut times = Vec::new();
    if mode == "train" {
        let mut trainer = model.compile(Adam::default(), VisionMetaLosses { probs: Loss::CategoricalCrossentropy }, &[]);
        for _ in 0..5 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
        for _ in 0..iters.div_ceil(block) {
            let t = Instant::now();
            for _ in 0..block {
                black_box(trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap());
            }
            times.push(t.elapsed().as_secs_f64() * 1e3 / block as f64);
        }
    } else {
        for _ in 0..5 {
            model.forward(&inputs, false).unwrap();
        }
        for _ in 0..iters.div_ceil(block) {
            let t = Instant::now();
            for _ in 0..block {
                black_box(model.forward(black_box(&inputs), false).unwrap());
            }
            times.push(t.elapsed().as_secs_f64() * 1e3 / block as f64);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{mode} batch {batch} threads {threads}: median {:.3} ms, min {:.3}, max {:.3}",
        times[times.len() / 2],
        times[0],
        times[times.len() - 1]
    );
}
