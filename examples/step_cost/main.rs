//! The Adam training step of BENCH M1 and M2 in a loop, for instruction counts and A/B timing against
//! older trees (issue #15 item 8: "none of it may slow the Adam training step by more than 2%").
//!
//! `cargo run --release --example step_cost -- <m1|m2> <batch> <steps> [block]`
//!
//! Runs `steps` calls of `Trainer::train_step` (1 thread), cycling over a pool of random batches (4096
//! rows in all, random labels) so that the trainer keeps learning-sized gradients however long it runs,
//! then prints the median, min and max of the thread's CPU time per step over blocks of `block` steps
//! (default 1000). For instructions per step, run it under `perf stat -e instructions:u` twice with
//! different `steps` and divide the difference of the counts by the difference of the steps (the set-up
//! cancels). The file uses only the API that existed before issue #15 (the tree at 894f0be), so that
//! the same file measures both trees: copy it there as it is. The models are those of
//! `benches/bench_models` (M1 `Fusion`, M2 `Multitask`), repeated here for that reason.

#[path = "../../benches/support/cputime.rs"]
mod cputime;

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;
use std::hint::black_box;

model! {
    /// BENCH M1.
    pub struct Fusion {
        input left: [8];
        input right: [4];
        let l = Dense(16, activation = relu)(left);
        let l = Dense(8, activation = relu)(l);
        let r = Dense(8, activation = relu)(right);
        let merged = Concatenate()([l, r]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

model! {
    /// BENCH M2.
    pub struct Multitask {
        input x: [64];
        let h = Dense(128, activation = relu)(x);
        let backbone = Dense(128, activation = relu)(h);
        let trunk = Add()([backbone, Dense(128)(x)]);
        output head_a = Dense(10, activation = softmax)(trunk);
        output head_b = Dense(1, activation = sigmoid)(trunk);
    }
}

/// Rows of random data the batches cycle over.
const POOL_ROWS: usize = 4096;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}

fn labels(rows: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, 1), |_| f32::from(u8::from(rng.uniform(0.0, 1.0) > 0.5)))
}

fn one_hot(rows: usize, classes: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    let mut y = Array2::zeros((rows, classes));
    for mut row in y.rows_mut() {
        let k = ((rng.uniform(0.0, 1.0) * classes as f32) as usize).min(classes - 1);
        row[k] = 1.0;
    }
    y
}

/// Runs `steps` calls of `step(i)` (`i` the call's number) and returns the thread CPU time per call of
/// each block of `block` calls, in µs.
fn timed(steps: usize, block: usize, mut step: impl FnMut(usize)) -> Vec<f64> {
    let mut per_step = Vec::new();
    let mut i = 0;
    while i < steps {
        let n = block.min(steps - i);
        let start = cputime::seconds(cputime::THREAD);
        for j in i..i + n {
            step(j);
        }
        per_step.push((cputime::seconds(cputime::THREAD) - start) * 1e6 / n as f64);
        i += n;
    }
    per_step
}

fn m1(batch: usize, steps: usize, block: usize) -> Vec<f64> {
    let batches = (POOL_ROWS / batch).max(1);
    let data: Vec<_> =
        (0..batches as u64).map(|s| (random(batch, 8, 3 * s + 1), random(batch, 4, 3 * s + 2), labels(batch, 3 * s + 3))).collect();
    let mut model = Fusion::new(0);
    let mut trainer = model.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[]);
    timed(steps, block, |i| {
        let (l, r, y) = &data[i % batches];
        let inputs = FusionInputs { left: l.view(), right: r.view() };
        let targets = FusionTargets { score: y.view() };
        black_box(trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap());
    })
}

fn m2(batch: usize, steps: usize, block: usize) -> Vec<f64> {
    let batches = (POOL_ROWS / batch).max(1);
    let data: Vec<_> =
        (0..batches as u64).map(|s| (random(batch, 64, 3 * s + 1), one_hot(batch, 10, 3 * s + 2), labels(batch, 3 * s + 3))).collect();
    let mut model = Multitask::new(0);
    let losses = MultitaskLosses { head_a: Loss::CategoricalCrossentropy, head_b: Loss::BinaryCrossentropy };
    let mut trainer = model.compile(Adam::default(), losses, &[]);
    timed(steps, block, |i| {
        let (x, ya, yb) = &data[i % batches];
        let inputs = MultitaskInputs { x: x.view() };
        let targets = MultitaskTargets { head_a: ya.view(), head_b: yb.view() };
        black_box(trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap());
    })
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: step_cost <m1|m2> <batch> <steps> [block]";
    let model = args.get(1).map(String::as_str).unwrap_or("m1").to_string();
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let steps: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(100_000);
    let block: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(1000).max(1);
    modelc::set_num_threads(1);
    let mut t = match model.as_str() {
        "m1" => m1(batch, steps, block),
        "m2" => m2(batch, steps, block),
        _ => {
            eprintln!("{usage}");
            std::process::exit(2);
        }
    };
    if t.is_empty() {
        return;
    }
    t.sort_by(f64::total_cmp);
    println!(
        "{model} batch {batch}: {steps} steps, thread CPU µs/step over blocks of {block}: median {:.4}, min {:.4}, max {:.4}",
        t[t.len() / 2],
        t[0],
        t[t.len() - 1]
    );
}
