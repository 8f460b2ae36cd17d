//! The denoise example's autoencoder (examples/denoise/model.rs) learns on the shipped digits: after a
//! short training on noisy images, its outputs on held-out noisy digits are closer to the clean digits
//! (higher PSNR) than the noisy inputs are, by more than a decibel.

#[path = "../examples/denoise/model.rs"]
mod model;

use model::*;
use modelc::datasets::load_digits;
use modelc::init::Rng;
use modelc::ndarray::{s, Axis};
use modelc::prelude::*;

#[test]
fn the_denoiser_raises_the_psnr_of_held_out_noisy_digits() {
    let all = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz")).unwrap();
    let (train, test) = (all.images.slice(s![..1200, .., .., ..]).to_owned(), all.images.slice(s![1200.., .., .., ..]).to_owned());
    let mut rng = Rng::new(5);
    let (noisy, test_noisy) = (add_noise(&train, 0.3, &mut rng), add_noise(&test, 0.3, &mut rng));
    let mut model = Denoiser::new(5);
    let settings = Fit { epochs: 12, batch_size: 32, seed: 5, verbose: false, ..Fit::default() };
    let mut trainer = model.compile(Adam::new(3e-3), DenoiserLosses { clean: Loss::BinaryCrossentropy }, &[]);
    trainer.fit(&DenoiserInputs { noisy: noisy.view() }, &DenoiserTargets { clean: train.view() }, &settings).unwrap();
    let denoised = model.predict(&DenoiserInputs { noisy: test_noisy.view() }).unwrap().clean;
    assert_eq!(denoised.len_of(Axis(0)), test.len_of(Axis(0)));
    let (before, after) = (psnr(test_noisy.view(), test.view()), psnr(denoised.view(), test.view()));
    assert!(after > before + 1.0, "PSNR of the noisy digits {before:.2} dB, of the denoised {after:.2} dB");
}
