//! Helpers shared by several integration tests (each test file that needs them has `mod common;`).

use modelc::init::Rng;
use modelc::ndarray::Array2;

/// A `rows × cols` matrix of U(-1, 1) samples from a generator seeded with `seed`.
pub fn random(rows: usize, cols: usize, seed: u64) -> Array2<f32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, cols), |_| rng.uniform(-1.0, 1.0))
}
