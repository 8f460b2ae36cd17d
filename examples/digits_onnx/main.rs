//! Train in Rust, serve anywhere: trains the digits model (as `examples/digits`, fewer epochs), exports it
//! with `save_onnx`, and writes the test split with modelc's own predictions as JSON so that
//! `scripts/serve_digits_onnx.py` serves the file with onnxruntime and checks it agrees. It also measures
//! `predict`'s throughput at batch 1 and 256, to set beside onnxruntime's.
//!
//! Run: `cargo run --release --example digits_onnx`, then
//! `python scripts/serve_digits_onnx.py out/digits_onnx` (with `onnxruntime` and `numpy` installed).

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use modelc::ndarray::{s, Axis};
use modelc::prelude::*;

#[path = "../digits/model.rs"]
mod model;
use model::*;

const SEED: u64 = 42;
const OUT: &str = "out/digits_onnx";

fn main() -> std::process::ExitCode {
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let (train, val, test) = load_split(SEED)?;
    let mut model = DigitNet::new(SEED);
    let both = train.then(&val);
    let settings = Fit {
        epochs: 15,
        batch_size: 32,
        seed: SEED,
        validation_split: val.len() as f32 / both.len() as f32,
        verbose: false,
        ..Fit::default()
    };
    let mut trainer = model.compile(Adam::new(2e-3), DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    trainer.fit(&both.inputs(), &both.targets(), &settings)?;

    let out = Path::new(OUT);
    std::fs::create_dir_all(out)?;
    model.save_onnx(out.join("digits.onnx"))?;
    let probs = model.predict(&test.inputs())?;
    std::fs::write(out.join("test.json"), test_json(&test, probs.digit.as_slice().unwrap_or_default()))?;
    let correct =
        probs.digit.outer_iter().zip(&test.labels).filter(|(p, &l)| argmax(p.as_slice().unwrap_or_default()) == l as usize).count();
    println!("wrote {OUT}/digits.onnx and {OUT}/test.json; modelc test accuracy {:.4}", correct as f64 / test.len() as f64);

    for batch in [1usize, 256] {
        let rate = predictions_per_second(&mut model, &test, batch)?;
        println!("modelc predict, batch {batch}: {rate:.0} predictions/s");
    }
    Ok(())
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0
}

/// Predictions per second of `predict_into` on batches of `batch` test rows (repeated to fill 256), for
/// about a second.
fn predictions_per_second(model: &mut DigitNet, test: &Part, batch: usize) -> modelc::Result<f64> {
    let rows: Vec<usize> = (0..batch).map(|i| i % test.len()).collect();
    let images = test.images.select(Axis(0), &rows);
    let stats = test.stats.select(Axis(0), &rows);
    let inputs = DigitNetInputs { image: images.view(), stats: stats.view() };
    let mut outputs = model.predict(&inputs)?;
    let (started, mut done) = (Instant::now(), 0usize);
    while started.elapsed().as_secs_f64() < 1.0 {
        model.predict_into(&inputs, &mut outputs)?;
        done += batch;
    }
    Ok(done as f64 / started.elapsed().as_secs_f64())
}

/// `{"image": [...], "stats": [...], "labels": [...], "probs": [...]}`, flat, row-major.
fn test_json(test: &Part, probs: &[f32]) -> String {
    let list = |v: &mut dyn Iterator<Item = String>| v.collect::<Vec<_>>().join(",");
    let mut s = String::new();
    let _ = write!(
        s,
        "{{\"image\": [{}], \"stats\": [{}], \"labels\": [{}], \"probs\": [{}]}}",
        list(&mut test.images.slice(s![.., .., .., ..]).iter().map(|v| format!("{v:?}"))),
        list(&mut test.stats.iter().map(|v| format!("{v:?}"))),
        list(&mut test.labels.iter().map(|v| v.to_string())),
        list(&mut probs.iter().map(|v| format!("{v:?}"))),
    );
    s
}
