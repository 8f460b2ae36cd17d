//! modelc beside candle and burn on the BENCH.md models (M1–M5), the vision models of issue #19 (M6,
//! M7), the transformer encoder of issue #18 (M8) and the recurrent models of issue #17 (R1 LSTM, R2 GRU,
//! R3 bidirectional LSTM), one
//! criterion group per (model, task, batch) cell so the ratios in a cell come from one run. A framework
//! without one of a model's layers has no function in that model's groups (candle: no M8).
//!
//! ```sh
//! cd peers && RAYON_NUM_THREADS=1 cargo bench --bench peers -- --warm-up-time 1 --measurement-time 2
//! ```
//!
//! Groups are named `"<model> <task> b<batch>"` (e.g. `M4 train b256`, filter with `-- 'M4 train'`),
//! functions `modelc`, `candle` and `burn`. Everything runs on one thread: modelc and burn's NdArray
//! backend (built without its `multi-threads` feature) are single-threaded, and this bench sets
//! `RAYON_NUM_THREADS=1` for candle's GEMM unless the caller already set it.
//! `scripts/peers_py.py --criterion peers/target/criterion` reads the results into one table.

use criterion::{criterion_group, Criterion};
use modelc::prelude::*;
use modelc_peers::modelc_models::*;
use modelc_peers::modelc_recurrent::*;
use modelc_peers::{burn_peer, candle_peer, Batch, Runner, Spec};
use std::hint::black_box;

/// Inference or one training step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Task {
    Inference,
    Train,
}

impl Task {
    fn name(self) -> &'static str {
        match self {
            Task::Inference => "inference",
            Task::Train => "train",
        }
    }
}

/// Times modelc's graph of `spec` on `batch` under `name` in `group`.
fn bench_modelc(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, spec: Spec, task: Task, batch: &Batch) {
    let flat = |i| batch.flat(i).expect("flat input");
    let y: Vec<_> = (0..batch.targets.len()).map(|o| batch.target2(o)).collect();
    let y2 = |o: usize| y[o].as_ref().expect("2-D target").view();
    let bce = Loss::BinaryCrossentropy;
    let cce = Loss::CategoricalCrossentropy;
    // One arm per model: the inputs, targets and losses structs are generated per model by `model!`.
    macro_rules! run {
        ($model:ty, $inputs:expr, $targets:expr, $losses:expr) => {{
            let mut model = <$model>::new(0);
            let inputs = $inputs;
            match task {
                Task::Inference => {
                    // `predict_into`: inference into reused output arrays, as a serving loop would run it.
                    let mut out = model.predict(&inputs).expect("modelc predict");
                    group.bench_function("modelc", |b| {
                        b.iter(|| model.predict_into(black_box(&inputs), &mut out).expect("modelc predict_into"))
                    })
                }
                Task::Train => {
                    let targets = $targets;
                    let mut trainer = model.compile(Adam::default(), $losses, &[]);
                    group.bench_function("modelc", |b| {
                        b.iter(|| trainer.train_step(black_box(&inputs), black_box(&targets)).expect("modelc train step"))
                    })
                }
            };
        }};
    }
    let ids = &batch.ids;
    match spec {
        Spec::M1 => {
            let (l, r) = (flat(0), flat(1));
            run!(Fusion, FusionInputs { left: l.view(), right: r.view() }, FusionTargets { score: y2(0) }, FusionLosses { score: bce })
        }
        Spec::M2 => {
            let x = flat(0);
            run!(
                Multitask,
                MultitaskInputs { x: x.view() },
                MultitaskTargets { head_a: y2(0), head_b: y2(1) },
                MultitaskLosses { head_a: cce, head_b: bce }
            )
        }
        Spec::M3 => {
            let (image, meta) = (batch.image(0).expect("image input"), flat(1));
            run!(
                VisionMeta,
                VisionMetaInputs { image: image.view(), meta: meta.view() },
                VisionMetaTargets { probs: y2(0) },
                VisionMetaLosses { probs: cce }
            )
        }
        Spec::M4 => {
            let x = flat(0);
            run!(WideMlp, WideMlpInputs { x: x.view() }, WideMlpTargets { probs: y2(0) }, WideMlpLosses { probs: cce })
        }
        Spec::M5 => {
            let (a, b_) = (flat(0), flat(1));
            run!(Siamese, SiameseInputs { a: a.view(), b: b_.view() }, SiameseTargets { same: y2(0) }, SiameseLosses { same: bce })
        }
        Spec::M6 => {
            let (image, mask) = (batch.image(0).expect("image input"), batch.target4(0).expect("4-D mask"));
            run!(UNet, UNetInputs { image: image.view() }, UNetTargets { mask: mask.view() }, UNetLosses { mask: bce })
        }
        Spec::M7 => {
            let image = batch.image(0).expect("image input");
            run!(MobileNet, MobileNetInputs { image: image.view() }, MobileNetTargets { probs: y2(0) }, MobileNetLosses { probs: cce })
        }
        Spec::M8 => {
            run!(
                TextEncoder,
                TextEncoderInputs { tokens: ids[0].view(), positions: ids[1].view() },
                TextEncoderTargets { probs: y2(0) },
                TextEncoderLosses { probs: cce }
            )
        }
        Spec::R1 => {
            run!(Sentiment, SentimentInputs { tokens: ids[0].view() }, SentimentTargets { score: y2(0) }, SentimentLosses { score: bce })
        }
        Spec::R2 => {
            let (inputs, targets) = (SentimentGruInputs { tokens: ids[0].view() }, SentimentGruTargets { score: y2(0) });
            run!(SentimentGru, inputs, targets, SentimentGruLosses { score: bce })
        }
        Spec::R3 => {
            let (inputs, targets) = (SentimentBiInputs { tokens: ids[0].view() }, SentimentBiTargets { score: y2(0) });
            run!(SentimentBi, inputs, targets, SentimentBiLosses { score: bce })
        }
    }
}

/// Times a peer's runner under its own name in `group`.
fn bench_peer(group: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>, task: Task, mut runner: Box<dyn Runner>) {
    let name = runner.name();
    match task {
        Task::Inference => group.bench_function(name, |b| b.iter(|| black_box(runner.infer().expect("peer inference")))),
        Task::Train => group.bench_function(name, |b| b.iter(|| black_box(runner.train_step().expect("peer train step")))),
    };
}

/// Every BENCH.md cell: inference at 1 and 32 (and 256 for M4), a training step at 32 and 256.
fn peers(c: &mut Criterion) {
    for spec in Spec::ALL {
        let cells =
            spec.inference_batches().iter().map(|&b| (Task::Inference, b)).chain(spec.train_batches().iter().map(|&b| (Task::Train, b)));
        for (task, rows) in cells {
            let batch = spec.batch(rows);
            let mut group = c.benchmark_group(format!("{} {} b{rows}", spec.id(), task.name()));
            if !matches!(spec, Spec::M1 | Spec::M2 | Spec::M4 | Spec::M5) || rows == 256 {
                group.sample_size(10);
            }
            bench_modelc(&mut group, spec, task, &batch);
            match candle_peer::supports(spec) {
                Ok(()) => bench_peer(&mut group, task, candle_peer::runner(spec, &batch).expect("candle model")),
                Err(why) => eprintln!("{} {} b{rows}: no candle cell ({why})", spec.id(), task.name()),
            }
            bench_peer(&mut group, task, burn_peer::runner(spec, &batch).expect("burn model"));
            group.finish();
        }
    }
}

criterion_group!(benches, peers);

fn main() {
    // Before any thread pool exists: candle's GEMM sizes its rayon pool from this variable.
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        std::env::set_var("RAYON_NUM_THREADS", "1");
    }
    benches();
    Criterion::default().configure_from_args().final_summary();
}
