//! Times M6 (U-Net) or M7 (MobileNet-like), the vision models of issue #19, in a loop on this thread's
//! CPU time (`CLOCK_THREAD_CPUTIME_ID`), for profilers and A/B runs of two builds on a shared machine:
//! `cargo run --profile bench --example vision_step -- [M6|M7] [infer|train] [batch] [rounds]`.
//! Each round times a block of calls of about 50 ms; prints the median and the minimum per call over
//! the rounds. One thread (modelc's default).
#[path = "../../benches/bench_models/mod.rs"]
#[allow(dead_code, unused_imports)] // only M6 and M7 are used here
mod bench_models;
#[path = "../../benches/support/cputime.rs"]
mod cputime;

use bench_models::{MobileNet, MobileNetInputs, MobileNetLosses, MobileNetTargets, UNet, UNetInputs, UNetLosses, UNetTargets};
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4};
use modelc::prelude::*;
use std::hint::black_box;

/// Per-call seconds of `f` over `rounds` blocks of about 50 ms of CPU time each.
fn rounds(rounds: usize, mut f: impl FnMut()) -> Vec<f64> {
    f();
    let t0 = cputime::seconds(cputime::THREAD);
    f();
    let per = (cputime::seconds(cputime::THREAD) - t0).max(1e-6);
    let calls = ((0.05 / per) as usize).max(1);
    (0..rounds)
        .map(|_| {
            let t0 = cputime::seconds(cputime::THREAD);
            for _ in 0..calls {
                f();
            }
            (cputime::seconds(cputime::THREAD) - t0) / calls as f64
        })
        .collect()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let model = args.get(1).map_or("M6", String::as_str).to_ascii_uppercase();
    let mode = args.get(2).map_or("infer", String::as_str).to_string();
    let batch: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(1);
    let n: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(15);
    let mut rng = Rng::new(1);
    let side = if model == "M6" { 64 } else { 32 };
    let image = Array4::from_shape_fn((batch, side, side, 3), |_| rng.uniform(0.0, 1.0));
    let times = match (model.as_str(), mode.as_str()) {
        ("M6", "infer") => {
            let mut m = UNet::new(0);
            let inputs = UNetInputs { image: image.view() };
            let mut out = m.predict(&inputs).expect("predict");
            rounds(n, || m.predict_into(black_box(&inputs), &mut out).expect("predict_into"))
        }
        ("M6", _) => {
            let mask = Array4::from_shape_fn((batch, 64, 64, 1), |_| f32::from(u8::from(rng.uniform(0.0, 1.0) > 0.5)));
            let mut m = UNet::new(0);
            let inputs = UNetInputs { image: image.view() };
            let targets = UNetTargets { mask: mask.view() };
            let mut trainer = m.compile(Adam::default(), UNetLosses { mask: Loss::BinaryCrossentropy }, &[]);
            rounds(n, || {
                black_box(trainer.train_step(black_box(&inputs), black_box(&targets)).expect("train step"));
            })
        }
        (_, "infer") => {
            let mut m = MobileNet::new(0);
            let inputs = MobileNetInputs { image: image.view() };
            let mut out = m.predict(&inputs).expect("predict");
            rounds(n, || m.predict_into(black_box(&inputs), &mut out).expect("predict_into"))
        }
        _ => {
            let mut y = Array2::zeros((batch, 10));
            for i in 0..batch {
                y[[i, i % 10]] = 1.0;
            }
            let mut m = MobileNet::new(0);
            let inputs = MobileNetInputs { image: image.view() };
            let targets = MobileNetTargets { probs: y.view() };
            let mut trainer = m.compile(Adam::default(), MobileNetLosses { probs: Loss::CategoricalCrossentropy }, &[]);
            rounds(n, || {
                black_box(trainer.train_step(black_box(&inputs), black_box(&targets)).expect("train step"));
            })
        }
    };
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    println!(
        "{model} {mode} b{batch}: median {:.1} µs, min {:.1} µs per call (thread CPU time, {n} rounds)",
        sorted[n / 2] * 1e6,
        sorted[0] * 1e6
    );
}
