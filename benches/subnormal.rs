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
//! Time is the bench thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, Linux; wall-clock elsewhere), so
//! that time spent descheduled by other processes on a shared machine does not count; every cell runs
//! its GEMMs on that one thread.
//!
//! `cargo bench --bench subnormal [-- FILTER]`

#[path = "bench_models/mod.rs"]
#[allow(dead_code, unused_imports)] // only some models are used here
mod bench_models;

use bench_models::*;
use criterion::measurement::{Measurement, ValueFormatter, WallTime};
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion};
use modelc::fpenv::FlushDenormals;
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

fn group<'c>(c: &'c mut Criterion<ThreadCpuTime>, name: &str) -> BenchmarkGroup<'c, ThreadCpuTime> {
    modelc::set_num_threads(1);
    let mut g = c.benchmark_group(name);
    g.warm_up_time(Duration::from_millis(300));
    g.measurement_time(Duration::from_millis(1500));
    g.sample_size(20);
    g
}

/// Benches cell `id` of `group` at `batch`: `step` after copying `start` into the parameters, in the
/// flush mode `flush`, then restores the default mode.
fn cell<O>(g: &mut BenchmarkGroup<'_, ThreadCpuTime>, id: &str, batch: usize, flush: bool, mut step: impl FnMut() -> O) {
    modelc::set_flush_denormals(flush);
    step();
    g.bench_with_input(BenchmarkId::new(id, batch), &batch, |b, _| b.iter(&mut step));
    modelc::set_flush_denormals(true);
}

fn m1_train(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = group(c, "subnormal/M1 fusion train step");
    for batch in [1usize, 32, 256] {
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

fn m4_train(c: &mut Criterion<ThreadCpuTime>) {
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
fn guard_cost(c: &mut Criterion<ThreadCpuTime>) {
    let mut g = group(c, "subnormal/M1 fusion inference guard cost");
    let batch = 1;
    let (l, r) = (random(batch, 8, 1), random(batch, 4, 2));
    let inputs = FusionInputs { left: l.view(), right: r.view() };
    for (id, flush) in [("flush", true), ("noflush", false), ("flush-again", true)] {
        let mut model = Fusion::new(0);
        let mut out = model.predict(&inputs).unwrap();
        cell(&mut g, id, batch, flush, || model.predict_into(black_box(&inputs), &mut out).unwrap());
    }
    // The same inside a guard the caller holds: the call's own guard finds the mode set and only
    // reads the register.
    {
        let _outer = FlushDenormals::new();
        let mut model = Fusion::new(0);
        let mut out = model.predict(&inputs).unwrap();
        cell(&mut g, "flush-in-callers-guard", batch, true, || model.predict_into(black_box(&inputs), &mut out).unwrap());
    }
    // The guard alone: entered and dropped, setting and restoring the mode, or only reading it
    // (nested in a guard that set it), or only reading the setting (flushing off).
    let alone = |g: &mut BenchmarkGroup<'_, ThreadCpuTime>, id: &str, flush: bool| {
        g.bench_with_input(BenchmarkId::new(id, 0), &0, |b, _| b.iter(|| drop(black_box(FlushDenormals::when(flush)))));
    };
    alone(&mut g, "guard-alone-sets", true);
    {
        let _outer = FlushDenormals::new();
        alone(&mut g, "guard-alone-nested", true);
    }
    alone(&mut g, "guard-alone-off", false);
    g.finish();
}

/// This thread's CPU time, as a criterion measurement; formatted as durations.
struct ThreadCpuTime(WallTime);

impl Measurement for ThreadCpuTime {
    type Intermediate = Duration;
    type Value = Duration;
    fn start(&self) -> Duration {
        cpu_now()
    }
    fn end(&self, start: Duration) -> Duration {
        cpu_now().saturating_sub(start)
    }
    fn add(&self, a: &Duration, b: &Duration) -> Duration {
        *a + *b
    }
    fn zero(&self) -> Duration {
        Duration::ZERO
    }
    fn to_f64(&self, v: &Duration) -> f64 {
        v.as_nanos() as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        self.0.formatter()
    }
}

#[path = "support/cputime.rs"]
mod cputime;

/// This thread's CPU time (`CLOCK_THREAD_CPUTIME_ID`, Linux), or the wall clock.
fn cpu_now() -> Duration {
    cputime::duration(cputime::THREAD)
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime(WallTime));
    targets = guard_cost, m1_train, m4_train
}
criterion_main!(benches);
