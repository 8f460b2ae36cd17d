//! The main job: a two-input model trained on real data shipped with the project, the UCI handwritten
//! digits (8×8, 1,797 samples, `data/digits/`). A convolutional branch reads the image; a dense branch reads
//! ink statistics computed from it; Concatenate fuses them into ten class probabilities. Adam,
//! categorical cross-entropy, a fixed 70/10/20 split by seed, early stopping on the validation loss.
//!
//! It prints the summary, a line (or a progress bar) per epoch, the test accuracy, a confusion matrix and
//! the time per epoch, and writes to `out/digits/`: the weights, the model graph and training curves as SVG,
//! and the history as CSV.
//!
//! Run: `cargo run --release --example digits`
//! Evaluate saved weights without training: `cargo run --release --example digits -- --eval out/digits/digits.safetensors`
//! Under Keras' `mixed_bfloat16` dtype policy (bf16 products where the CPU has AVX512_BF16, else f32 with
//! the reason printed; outputs go to `out/digits_bf16/`): `cargo run --release --example digits -- --bf16`

use std::path::Path;
use std::time::Instant;

use modelc::metrics::ConfusionMatrix;
use modelc::prelude::*;

mod model;
use model::*;

const SEED: u64 = 42;
const OUT: &str = "out/digits";
/// Where `--bf16` writes instead, so that it never replaces the f32 run's files.
const OUT_BF16: &str = "out/digits_bf16";

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
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let bf16 = args.iter().any(|a| a == "--bf16");
    args.retain(|a| a != "--bf16");
    let (train, val, test) = load_split(SEED)?;
    println!("digits: {} training, {} validation, {} test samples", train.len(), val.len(), test.len());

    let mut model = DigitNet::new(SEED);
    if bf16 {
        let status = model.set_dtype_policy(DTypePolicy::MixedBfloat16);
        println!("dtype policy: {} asked for, {} in effect: {}", status.requested, status.effective, status.reason);
    }
    match args.as_slice() {
        [flag, weights] if flag == "--eval" => {
            model.load(weights)?;
            println!("loaded {weights}");
        }
        [] => train_and_save(&mut model, &train, &val, if bf16 { OUT_BF16 } else { OUT })?,
        _ => return Err("usage: digits [--bf16] [--eval <weights.safetensors>]".into()),
    }

    let probs = model.predict(&test.inputs())?;
    let matrix = ConfusionMatrix::from_scores(probs.digit.view(), &test.labels);
    println!("test accuracy: {:.4} ({} samples)", matrix.accuracy(), test.len());
    println!("confusion matrix (rows: true digit, columns: predicted):\n{matrix}");
    Ok(())
}

fn train_and_save(model: &mut DigitNet, train: &Part, val: &Part, dir: &str) -> Result<(), Box<dyn std::error::Error>> {
    print!("{}", DigitNet::SUMMARY);
    // Training rows first, validation rows last: `validation_split` holds out the end, before shuffling.
    let both = train.then(val);
    let settings = Fit {
        epochs: 60,
        batch_size: 32,
        seed: SEED,
        validation_split: val.len() as f32 / both.len() as f32,
        early_stopping: Some(EarlyStopping { patience: 6, restore_best_weights: true, ..EarlyStopping::default() }),
        ..Fit::default()
    };
    let started = Instant::now();
    let mut trainer = model.compile(Adam::new(2e-3), DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit(&both.inputs(), &both.targets(), &settings)?;
    let secs = started.elapsed().as_secs_f64();
    let epochs = history.epochs();
    println!(
        "trained {epochs} epochs in {secs:.1} s ({:.0} ms per epoch); best val_loss {:.4}",
        1000.0 * secs / epochs.max(1) as f64,
        history.get("val_loss").unwrap_or(&[]).iter().copied().fold(f64::INFINITY, f64::min)
    );

    std::fs::create_dir_all(dir)?;
    let out = Path::new(dir);
    model.save(out.join("digits.safetensors"))?;
    modelc::viz::write_graph_svg(DigitNet::DOT, out.join("digits.svg"))?;
    modelc::viz::write_history_svg(&history, out.join("digits_history.svg"))?;
    history.write_csv(out.join("digits_history.csv"))?;
    println!("wrote {dir}/digits.safetensors, digits.svg, digits_history.svg, digits_history.csv");
    Ok(())
}
