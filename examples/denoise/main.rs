//! A denoising convolutional autoencoder on the digits shipped with the project (`data/digits/`, 8×8):
//! Gaussian noise (σ = 0.3, clipped to [0, 1]) is added to every image, and the model learns to give back
//! the clean one. Conv2D down (a strided 3×3), Conv2DTranspose up, a sigmoid Conv2D to one channel; Adam,
//! binary cross-entropy against the clean pixels, a fixed 70/10/20 split, early stopping on the
//! validation loss.
//!
//! It prints the peak signal-to-noise ratio (PSNR, pixels in [0, 1]) of the noisy test images and of the
//! denoised ones, both against the clean images, and writes `out/denoise/denoise.svg`: a strip of test
//! digits, rows clean / noisy / denoised.
//!
//! Run: `cargo run --release --example denoise`

use std::fmt::Write as _;
use std::path::Path;

use modelc::datasets::{load_digits, split_indices};
use modelc::init::Rng;
use modelc::ndarray::{concatenate, ArrayView4, Axis};
use modelc::prelude::*;

mod model;
use model::*;

const SEED: u64 = 42;
const NOISE: f32 = 0.3;
const OUT: &str = "out/denoise";
/// Test digits shown in the strip.
const SHOWN: usize = 12;

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
    let all = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz"))?;
    let (train, val, test) = split_indices(all.len(), 0.1, 0.2, SEED);
    let pick = |rows: &[usize]| all.images.select(Axis(0), rows);
    // Training rows then validation rows: `validation_split` holds out the end, before shuffling.
    let clean = concatenate(Axis(0), &[pick(&train).view(), pick(&val).view()])?;
    let test_clean = pick(&test);
    let mut rng = Rng::new(SEED);
    let noisy = add_noise(&clean, NOISE, &mut rng);
    let test_noisy = add_noise(&test_clean, NOISE, &mut rng);
    println!("digits: {} training, {} validation, {} test images; noise σ = {NOISE}", train.len(), val.len(), test.len());

    let mut model = Denoiser::new(SEED);
    print!("{}", Denoiser::SUMMARY);
    let settings = Fit {
        epochs: 80,
        batch_size: 32,
        seed: SEED,
        validation_split: val.len() as f32 / (train.len() + val.len()) as f32,
        early_stopping: Some(EarlyStopping { patience: 6, restore_best_weights: true, ..EarlyStopping::default() }),
        ..Fit::default()
    };
    let mut trainer = model.compile(Adam::new(3e-3), DenoiserLosses { clean: Loss::BinaryCrossentropy }, &[]);
    let history = trainer.fit(&DenoiserInputs { noisy: noisy.view() }, &DenoiserTargets { clean: clean.view() }, &settings)?;
    let best = history.get("val_loss").unwrap_or(&[]).iter().copied().fold(f64::INFINITY, f64::min);
    println!("trained {} epochs; best val_loss {best:.4}", history.epochs());

    let denoised = model.predict(&DenoiserInputs { noisy: test_noisy.view() })?.clean;
    let (before, after) = (psnr(test_noisy.view(), test_clean.view()), psnr(denoised.view(), test_clean.view()));
    println!("test PSNR against the clean digits: noisy input {before:.2} dB, denoised {after:.2} dB ({:+.2} dB)", after - before);

    std::fs::create_dir_all(OUT)?;
    let path = Path::new(OUT).join("denoise.svg");
    let rows = [("clean", test_clean.view()), ("noisy", test_noisy.view()), ("denoised", denoised.view())];
    std::fs::write(&path, strip_svg(&rows, SHOWN))?;
    println!("wrote {}", path.display());
    Ok(())
}

/// An SVG of `shown` images per row, one row per `(label, images)`, each pixel a grey square (white = 0).
fn strip_svg(rows: &[(&str, ArrayView4<'_, f32>)], shown: usize) -> String {
    const PX: usize = 6;
    const GAP: usize = 6;
    const LABEL: usize = 70;
    let cell = 8 * PX + GAP;
    let (width, height) = (LABEL + shown * cell, rows.len() * cell + GAP);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n\
         <rect width=\"{width}\" height=\"{height}\" fill=\"white\"/>\n"
    );
    for (r, (label, images)) in rows.iter().enumerate() {
        let top = GAP + r * cell;
        let _ = writeln!(svg, "<text x=\"4\" y=\"{}\" font-family=\"sans-serif\" font-size=\"13\">{label}</text>", top + 4 * PX + 4);
        for (i, img) in images.outer_iter().take(shown).enumerate() {
            let left = LABEL + i * cell;
            for ((y, x, _), &v) in img.indexed_iter() {
                let grey = 255 - (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                let _ = writeln!(
                    svg,
                    "<rect x=\"{}\" y=\"{}\" width=\"{PX}\" height=\"{PX}\" fill=\"rgb({grey},{grey},{grey})\"/>",
                    left + x * PX,
                    top + y * PX
                );
            }
        }
    }
    svg.push_str("</svg>\n");
    svg
}
