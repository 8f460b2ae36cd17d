//! A digits classifier trained in Keras (`scripts/keras_digits.py`, shipped as
//! `data/keras_digits/digits.keras`), imported at build time by `build.rs` with `modelc_cli::import`:
//! the generated model, Keras' weights, and the digits split the Keras script trained on.
//!
//! `src/main.rs` evaluates the imported model, fine-tunes it and evaluates it again; `tests/import.rs`
//! checks that it predicts what Keras predicted.

use modelc::datasets::{load_digits, one_hot, split_indices, Digits};
use modelc::metrics::ConfusionMatrix;
use modelc::ndarray::{Array2, Array4, Axis};

pub mod model {
    //! The `model!` source `modelc_cli::import` generated from `digits.keras` (see `OUT_DIR/keras_digits.rs`).
    use modelc::prelude::*;
    include!(concat!(env!("OUT_DIR"), "/keras_digits.rs"));
}

use model::{KerasDigits, KerasDigitsInputs, KerasDigitsTargets};

/// Keras' trained weights, converted by `build.rs` to the names the generated model expects.
pub const WEIGHTS: &str = concat!(env!("OUT_DIR"), "/keras_digits.safetensors");

/// What `scripts/keras_digits.py` recorded: `test_indices` (every test row), `probs` (Keras' predictions
/// for the first 20 test rows) and `accuracy` (Keras' test accuracy).
pub const KERAS_CHECK: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/keras_digits/digits.check.safetensors");

/// The seed of the split (the digits example's and the Keras script's).
pub const SEED: u64 = 42;

/// One part of the split: images, one-hot targets and labels.
pub struct Part {
    /// `[n, 8, 8, 1]`, pixels in `0..=1`.
    pub images: Array4<f32>,
    /// `[n, 10]`, one-hot.
    pub targets: Array2<f32>,
    /// The digit of each image.
    pub labels: Vec<u8>,
}

impl Part {
    fn select(all: &Digits, rows: &[usize]) -> Part {
        let labels: Vec<u8> = rows.iter().map(|&r| all.labels[r]).collect();
        Part { images: all.images.select(Axis(0), rows), targets: one_hot(&labels, 10), labels }
    }

    /// The model's inputs for this part.
    pub fn inputs(&self) -> KerasDigitsInputs<'_> {
        KerasDigitsInputs { image: self.images.view() }
    }

    /// The model's targets for this part.
    pub fn targets(&self) -> KerasDigitsTargets<'_> {
        KerasDigitsTargets { digit: self.targets.view() }
    }

    /// Number of samples.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the part holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// The shipped digits, split as the Keras script split them: 70% training, 10% validation, 20% test
/// rows, and the test rows' indices into the file.
pub fn load_split() -> modelc::Result<(Part, Part, Part, Vec<usize>)> {
    let all = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/../../data/digits/digits.csv.gz"))?;
    let (train, val, test) = split_indices(all.len(), 0.1, 0.2, SEED);
    Ok((Part::select(&all, &train), Part::select(&all, &val), Part::select(&all, &test), test))
}

/// The imported model with Keras' trained weights.
pub fn imported() -> modelc::Result<KerasDigits> {
    let mut model = KerasDigits::new(SEED);
    model.load(WEIGHTS)?;
    Ok(model)
}

/// The share of `part` that `model` classifies correctly (the most probable digit is the label).
pub fn accuracy(model: &mut KerasDigits, part: &Part) -> modelc::Result<f64> {
    let probs = model.predict(&part.inputs())?;
    Ok(ConfusionMatrix::from_scores(probs.digit.view(), &part.labels).accuracy())
}
