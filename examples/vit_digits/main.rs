//! A small vision transformer trained on real data shipped with the project, the UCI handwritten digits
//! (8×8, 1,797 samples, `data/digits/`): each image row is a token, one transformer encoder block
//! (MultiHeadAttention with 4 heads, Add, LayerNormalization, a gelu feed-forward) reads the 8 row tokens,
//! and the mean over the tokens gives ten class probabilities. Adam, categorical cross-entropy, a fixed
//! 70/10/20 split by seed, early stopping on the validation loss.
//!
//! It prints the summary, a line per epoch, the test accuracy and the time per epoch, and writes to
//! `out/vit_digits/`: the weights, the model graph and training curves as SVG, the history as CSV, and
//! `attention.svg`, a heatmap of what each head attends to (`return_attention_scores = true`) for the first
//! test images: which image rows each row looks at.
//!
//! Run: `cargo run --release --example vit_digits`

use std::path::Path;
use std::time::Instant;

use modelc::prelude::*;

mod model;
use model::*;

const SEED: u64 = 7;
const OUT: &str = "out/vit_digits";
/// Test images drawn in the heatmap.
const SHOWN: usize = 6;

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
    println!("digits: {} training, {} validation, {} test samples", train.len(), val.len(), test.len());
    print!("{}", DigitTransformer::SUMMARY);

    let mut trainer_model = DigitTransformerTrainer::new(SEED);
    let settings = Fit {
        epochs: 40,
        batch_size: 32,
        seed: SEED,
        early_stopping: Some(EarlyStopping { patience: 5, restore_best_weights: true, ..EarlyStopping::default() }),
        ..Fit::default()
    };
    let started = Instant::now();
    let losses = DigitTransformerTrainerLosses { digit: Loss::CategoricalCrossentropy };
    let mut trainer = trainer_model.compile(Adam::new(3e-3), losses, &[Metric::Accuracy]);
    let validation = (&val.trainer_inputs(), &val.targets());
    let history = trainer.fit_with_validation_data(&train.trainer_inputs(), &train.targets(), validation, &settings)?;
    let secs = started.elapsed().as_secs_f64();
    let epochs = history.epochs();
    println!("trained {epochs} epochs in {secs:.1} s ({:.0} ms per epoch)", 1000.0 * secs / epochs.max(1) as f64);
    drop(trainer);

    let mut model = DigitTransformer::new(SEED);
    copy_weights(&trainer_model, &mut model)?;
    let out = model.predict(&test.inputs())?;
    let predicted = argmax_rows(&out.digit);
    let correct = predicted.iter().zip(&test.labels).filter(|(p, l)| **p == usize::from(**l)).count();
    println!("test accuracy: {:.4} ({} samples)", correct as f64 / test.len() as f64, test.len());

    std::fs::create_dir_all(OUT)?;
    let dir = Path::new(OUT);
    model.save(dir.join("vit_digits.safetensors"))?;
    modelc::viz::write_graph_svg(DigitTransformer::DOT, dir.join("vit_digits.svg"))?;
    modelc::viz::write_history_svg(&history, dir.join("vit_digits_history.svg"))?;
    history.write_csv(dir.join("vit_digits_history.csv"))?;
    let scores = out.attention.as_slice().ok_or("the scores are not contiguous")?;
    let grid = attention_grid(&test, scores, &predicted, SHOWN);
    let title = "Attention of each image row (down) over the image rows (across), per head";
    modelc::viz::write_heatmaps_svg(title, &grid, dir.join("attention.svg"))?;
    println!("wrote {OUT}/vit_digits.safetensors, vit_digits.svg, vit_digits_history.svg, vit_digits_history.csv, attention.svg");
    Ok(())
}
