//! Inference on the liveness plan (`predict`: buffers shared by liveness, no gradients) against inference on
//! the training plan (`forward(.., false)`: one buffer per value plus gradients, what `predict` ran before),
//! interleaved in one process so that both see the same machine load: each round times a block of calls of
//! one path, then of the other (the order alternating), and the figures are the median and the minimum
//! over rounds of the time per call, and the median of the two paths' ratio within a round. Time is this
//! thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`; Linux), so that time spent descheduled by other processes on
//! a shared machine does not count; on 1 thread all the work runs on this thread.
//! `cargo bench --bench inference_plan` (add a cell name to filter; `ROUNDS=n` sets the rounds, 15).

#[path = "bench_models/mod.rs"]
#[allow(dead_code, unused_imports)] // only the inference models are used here
mod bench_models;

use bench_models::*;
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4};
use modelc::ops;
use modelc::prelude::Network;
use std::hint::black_box;
use std::time::Duration;

#[path = "support/cputime.rs"]
mod cputime;

/// This thread's time on a CPU (`CLOCK_THREAD_CPUTIME_ID`), or the wall clock if that fails.
fn now() -> Duration {
    cputime::duration(cputime::THREAD)
}

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}

/// Per-call seconds of each path over `rounds` interleaved blocks of calls lasting about `block` each.
fn interleave(rounds: usize, block: Duration, mut training_plan: impl FnMut(), mut liveness_plan: impl FnMut()) -> (Vec<f64>, Vec<f64>) {
    training_plan();
    liveness_plan();
    let start = now();
    training_plan();
    let once = now().saturating_sub(start).max(Duration::from_micros(1));
    let reps = (block.as_secs_f64() / once.as_secs_f64()).ceil().max(1.0) as usize;
    let (mut old, mut new) = (Vec::new(), Vec::new());
    let time = |f: &mut dyn FnMut()| {
        let t = now();
        for _ in 0..reps {
            f();
        }
        now().saturating_sub(t).as_secs_f64() / reps as f64
    };
    for r in 0..rounds {
        if r % 2 == 0 {
            old.push(time(&mut training_plan));
            new.push(time(&mut liveness_plan));
        } else {
            new.push(time(&mut liveness_plan));
            old.push(time(&mut training_plan));
        }
    }
    (old, new)
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn report(cell: &str, (old, new): (Vec<f64>, Vec<f64>)) {
    let us = 1e6;
    // Each round's two blocks ran back to back: their ratio cancels load that drifts more slowly.
    let paired: Vec<f64> = new.iter().zip(&old).map(|(n, o)| n / o).collect();
    println!(
        "| {cell} | {:.1} / {:.1} | {:.1} / {:.1} | {:.3} | {:.3} | {:.3} ({:.3}–{:.3}) |",
        median(&old) * us,
        min(&old) * us,
        median(&new) * us,
        min(&new) * us,
        median(&new) / median(&old),
        min(&new) / min(&old),
        median(&paired),
        min(&paired),
        paired.iter().copied().fold(0.0, f64::max)
    );
}

/// Reports `cell`: `forward(.., false)` on the training plan of one model against `predict` on the
/// liveness plan of another, built alike by `new`, interleaved.
fn compare<N: Network>(cell: &str, rounds: usize, block: Duration, inputs: &N::Inputs<'_>, new: impl Fn() -> N) {
    let (mut a, mut b) = (new(), new());
    report(
        cell,
        interleave(
            rounds,
            block,
            || drop(black_box(ops::forward(&mut a, black_box(inputs), false).unwrap())),
            || drop(black_box(ops::predict(&mut b, black_box(inputs)).unwrap())),
        ),
    );
}

fn main() {
    let filter: Vec<String> = std::env::args().skip(1).filter(|a| !a.starts_with('-')).collect();
    let wanted = |cell: &str| filter.is_empty() || filter.iter().any(|f| cell.contains(f.as_str()));
    modelc::set_num_threads(1);
    let rounds = std::env::var("ROUNDS").ok().and_then(|r| r.parse().ok()).unwrap_or(15);
    let block = Duration::from_millis(200);
    println!(
        "| cell (1 thread) | training plan µs (CPU), median / min | liveness plan µs (CPU), median / min | ratio of medians | ratio of minima | median ratio per round (range) |"
    );
    println!("|---|---|---|---|---|---|");
    for batch in [32usize, 256] {
        let cell = format!("M2 inference {batch}");
        if wanted(&cell) {
            let x = random(batch, 64, 1);
            let inputs = MultitaskInputs { x: x.view() };
            compare(&cell, rounds, block, &inputs, || Multitask::new(0));
        }
    }
    for batch in [1usize, 32] {
        let cell = format!("M3 inference {batch}");
        if wanted(&cell) {
            let mut rng = Rng::new(1);
            let image = Array4::from_shape_fn((batch, 32, 32, 3), |_| rng.uniform(0.0, 1.0));
            let meta = random(batch, 6, 2);
            let inputs = VisionMetaInputs { image: image.view(), meta: meta.view() };
            compare(&cell, rounds, block, &inputs, || VisionMeta::new(0));
        }
    }
    for batch in [32usize, 256] {
        let cell = format!("M4 inference {batch}");
        if wanted(&cell) {
            let x = random(batch, 784, 1);
            let inputs = WideMlpInputs { x: x.view() };
            compare(&cell, rounds, block, &inputs, || WideMlp::new(0));
        }
    }
    for batch in [32usize, 256] {
        let cell = format!("M5 inference {batch}");
        if wanted(&cell) {
            let (l, r) = (random(batch, 128, 1), random(batch, 128, 2));
            let inputs = SiameseInputs { a: l.view(), b: r.view() };
            compare(&cell, rounds, block, &inputs, || Siamese::new(0));
        }
    }
}
