//! A model trained in Keras, used and trained on in Rust: `build.rs` imported
//! `data/keras_digits/digits.keras` (a small convolutional digits classifier, trained by
//! `scripts/keras_digits.py` for two epochs only) into `model!` source and weights. This program loads
//! Keras' weights, evaluates them on the test rows Keras evaluated (the accuracy Keras printed), fine-tunes
//! the model with Adam for a few epochs, evaluates it again and writes the fine-tuned weights to
//! `out/keras_import/`.
//!
//! Run: `cargo run --release -p keras-import-example`

use std::path::Path;
use std::time::Instant;

use keras_import_example::model::{KerasDigits, KerasDigitsLosses};
use keras_import_example::{accuracy, imported, load_split, KERAS_CHECK, SEED};
use modelc::metrics::ConfusionMatrix;
use modelc::prelude::*;

const EPOCHS: usize = 10;
const OUT: &str = "out/keras_import";

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
    let started = Instant::now();
    let (train, val, test, _) = load_split()?;
    println!("digits: {} training, {} validation, {} test samples", train.len(), val.len(), test.len());
    print!("{}", KerasDigits::SUMMARY);

    let mut model = imported()?;
    let keras = modelc::io::read_typed_tensors(KERAS_CHECK)?;
    let keras_accuracy =
        keras.get("accuracy").and_then(|t| t.as_f32()).and_then(|a| a.iter().next().copied()).ok_or("no `accuracy` in the check file")?;
    let before = accuracy(&mut model, &test)?;
    println!("imported from Keras: test accuracy {before:.4} (Keras printed {keras_accuracy:.4})");

    let mut trainer = model.compile(Adam::new(2e-3), KerasDigitsLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let settings = Fit { epochs: EPOCHS, batch_size: 32, seed: SEED, ..Fit::default() };
    let tuning = Instant::now();
    let history = trainer.fit_with_validation_data(&train.inputs(), &train.targets(), (&val.inputs(), &val.targets()), &settings)?;
    let losses = history.get("loss").unwrap_or(&[]);
    println!(
        "fine-tuned {} epochs in {:.2} s: training loss {:.4} -> {:.4}",
        history.epochs(),
        tuning.elapsed().as_secs_f64(),
        losses.first().copied().unwrap_or(f64::NAN),
        losses.last().copied().unwrap_or(f64::NAN)
    );

    let probs = model.predict(&test.inputs())?;
    let matrix = ConfusionMatrix::from_scores(probs.digit.view(), &test.labels);
    println!("test accuracy: {before:.4} as imported from Keras, {:.4} after fine-tuning in Rust", matrix.accuracy());
    println!("confusion matrix (rows: true digit, columns: predicted):\n{matrix}");

    std::fs::create_dir_all(OUT)?;
    let weights = Path::new(OUT).join("keras_digits.safetensors");
    model.save(&weights)?;
    println!("wrote {}; {:.2} s in all", weights.display(), started.elapsed().as_secs_f64());
    Ok(())
}
