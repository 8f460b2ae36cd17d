//! Training steps on subnormal-laden state against fresh state, with subnormals flushed to zero (the
//! default) and without (`modelc::set_flush_denormals(false)`), and the cost of entering the flush
//! guard at the smallest cell (M1 inference at batch 1).
//!
//! Laden state: the model's fresh parameters scaled by 1e-38, so that nearly all of them are
//! subnormal; the gradients that flow back through them, and Adam's first moments, are subnormal
//! too. Every iteration first copies its starting parameters back (fresh or laden: the same copy in
//! both cells), so every step sees the same state instead of one that training has moved. With
//! flushing on, `laden` should take as long as `fresh`; without it, as long as the CPU's subnormal
//! path makes it (on CPUs that handle subnormals in microcode, several times longer).
//!
//! `cargo bench --bench subnormal [-- FILTER]`

#[path = "bench_models/mod.rs"]
#[allow(dead_code, unused_imports)] // only some models are used here
mod bench_models;

use bench_models::*;
use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;
use std::hint::black_box;
use std::time::Duration;

fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}

fn one_hot(rows: usize, classes: usize) -> Array2<f32> {
    Array2::from_shape_fn((rows, classes), |(i, k)| f32::from(u8::from(i % classes == k)))
}

/// `params` scaled into the subnormal range; returns them and the fraction that is subnormal.
fn laden(params: &[f32]) -> (Vec<f32>, f64) {
    let v: Vec<f32> = params.iter().map(|p| p * 1e-38).collect();
    let frac = v.iter().filter(|p| p.is_subnormal()).count() as f64 / v.len().max(1) as f64;
    (v, frac)
}

/// The cells: (name, start laden, flush subnormals).
const CELLS: [(&str, bool, bool); 4] =
    [("fresh", false, true), ("laden", true, true), ("fresh-noflush", false, false), ("laden-noflush", true, false)];

fn group<'c>(c: &'c mut Criterion, name: &str) -> BenchmarkGroup<'c, WallTime> {
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1500));
    g.sample_size(20);
    g
}

/// Benches cell `id` of `group` at `batch`: `step` after copying `start` into the parameters, in the
/// flush mode `flush`, then restores the default mode.
fn cell<O>(g: &mut BenchmarkGroup<'_, WallTime>, id: &str, batch: usize, flush: bool, mut step: impl FnMut() -> O) {
    modelc::set_flush_denormals(flush);
    step();
    g.bench_with_input(BenchmarkId::new(id, batch), &batch, |b, _| b.iter(&mut step));
    modelc::set_flush_denormals(true);
}

fn m1_train(c: &mut Criterion) {
    let mut g = group(c, "subnormal/M1 fusion train step");
    for batch in [1usize, 32] {
        let (l, r) = (random(batch, 8, 1), random(batch, 4, 2));
        let y = Array2::from_shape_fn((batch, 1), |(i, _)| f32::from(u8::from(l[[i, 0]] > 0.0)));
        let inputs = FusionInputs { left: l.view(), right: r.view() };
        let targets = FusionTargets { score: y.view() };
        let fresh = Fusion::new(0).params().to_vec();
        let (sub, frac) = laden(&fresh);
        eprintln!("M1: {:.0}% of the laden parameters are subnormal", 100.0 * frac);
        for (id, is_laden, flush) in CELLS {
            let start = if is_laden { &sub } else { &fresh };
            let mut model = Fusion::new(0);
            let mut trainer = model.compile(Adam::default(), FusionLosses { score: Loss::BinaryCrossentropy }, &[]);
            cell(&mut g, id, batch, flush, || {
                trainer.model_mut().params_mut().copy_from_slice(start);
                trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap()
            });
        }
    }
    g.finish();
}

fn m4_train(c: &mut Criterion) {
    let mut g = group(c, "subnormal/M4 wide_mlp train step");
    g.sample_size(10);
    let batch = 32;
    let x = random(batch, 784, 1);
    let y = one_hot(batch, 10);
    let inputs = WideMlpInputs { x: x.view() };
    let targets = WideMlpTargets { probs: y.view() };
    let fresh = WideMlp::new(0).params().to_vec();
    let (sub, frac) = laden(&fresh);
    eprintln!("M4: {:.0}% of the laden parameters are subnormal", 100.0 * frac);
    for (id, is_laden, flush) in CELLS {
        let start = if is_laden { &sub } else { &fresh };
        let mut model = WideMlp::new(0);
        let mut trainer = model.compile(Adam::default(), WideMlpLosses { probs: Loss::CategoricalCrossentropy }, &[]);
        cell(&mut g, id, batch, flush, || {
            trainer.model_mut().params_mut().copy_from_slice(start);
            trainer.train_step(black_box(&inputs), black_box(&targets)).unwrap()
        });
    }
    g.finish();
}

/// The guard's cost where it weighs most: M1 inference at batch 1 (a call of about a microsecond),
/// fresh state, with flushing on (the guard sets and restores the mode) and off (it only reads the
/// setting).
fn guard_cost(c: &mut Criterion) {
    let mut g = group(c, "subnormal/M1 fusion inference guard cost");
    let batch = 1;
    let (l, r) = (random(batch, 8, 1), random(batch, 4, 2));
    let inputs = FusionInputs { left: l.view(), right: r.view() };
    for (id, flush) in [("flush", true), ("noflush", false), ("flush-again", true)] {
        let mut model = Fusion::new(0);
        let mut out = model.predict(&inputs).unwrap();
        cell(&mut g, id, batch, flush, || model.predict_into(black_box(&inputs), &mut out).unwrap());
    }
    g.finish();
}

criterion_group!(benches, guard_cost, m1_train, m4_train);
criterion_main!(benches);
