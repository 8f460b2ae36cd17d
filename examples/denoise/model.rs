//! The model and helpers of the denoise example, also used by tests/denoise.rs (through `#[path]`), so CI
//! trains exactly the model the example trains.

use modelc::init::Rng;
use modelc::ndarray::{Array4, ArrayView4};
use modelc::prelude::*;

model! {
    /// Noisy 8×8 digit in, clean digit out.
    pub struct Denoiser {
        input noisy: [8, 8, 1];
        let x = Conv2D(16, 3, padding = same, activation = relu)(noisy);                    // (8, 8, 16)
        let x = Conv2D(32, 3, strides = 2, padding = same, activation = relu)(x);           // (4, 4, 32)
        let x = Conv2DTranspose(16, 3, strides = 2, padding = same, activation = relu)(x);  // (8, 8, 16)
        output clean = Conv2D(1, 3, padding = same, activation = sigmoid)(x);               // (8, 8, 1)
    }
}

/// `images` with Gaussian noise of standard deviation `sigma` added, clipped to [0, 1].
pub fn add_noise(images: &Array4<f32>, sigma: f32, rng: &mut Rng) -> Array4<f32> {
    images.mapv(|v| (v + sigma * rng.normal()).clamp(0.0, 1.0))
}

/// Peak signal-to-noise ratio in dB of `a` against the reference `b`, both in [0, 1].
pub fn psnr(a: ArrayView4<'_, f32>, b: ArrayView4<'_, f32>) -> f64 {
    let n = a.len().max(1) as f64;
    let mse = a.iter().zip(b.iter()).map(|(x, y)| f64::from(x - y).powi(2)).sum::<f64>() / n;
    10.0 * (1.0 / mse.max(1e-12)).log10()
}
