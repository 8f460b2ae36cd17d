//! The model, features and data split of the digits example, also used by tests/digits.rs (through `#[path]`),
//! so CI trains exactly the model the example trains.
#![allow(dead_code)] // the test uses part of it

use modelc::datasets::{load_digits, one_hot, split_indices, Digits};
use modelc::ndarray::{s, Array2, Array4, Axis};
use modelc::prelude::*;

/// Tabular features per image: 8 row sums, 8 column sums, 8 row stroke counts, total ink and left-right balance.
pub const STATS: usize = 26;

model! {
    /// Handwritten digits: a convolutional branch over the 8×8 image fused with a dense branch over ink statistics.
    pub struct DigitNet {
        input image: [8, 8, 1];
        input stats: [26];

        let x = Conv2D(32, 3, padding = same, activation = relu)(image);
        let x = Conv2D(32, 3, padding = same, activation = relu)(x);
        let x = MaxPooling2D(2)(x);
        let x = Flatten()(x);
        let s = Dense(32, activation = relu)(stats);
        let merged = Concatenate()([x, s]);
        let h = Dense(64, activation = relu)(merged);
        let h = Dropout(0.2, seed = 7)(h);
        output digit = Dense(10, activation = softmax)(h);
    }
}

/// One part of the split: images, their statistics, one-hot targets and the labels.
pub struct Part {
    pub images: Array4<f32>,
    pub stats: Array2<f32>,
    pub targets: Array2<f32>,
    pub labels: Vec<u8>,
}

impl Part {
    fn select(all: &Digits, rows: &[usize]) -> Part {
        let images = all.images.select(Axis(0), rows);
        let labels: Vec<u8> = rows.iter().map(|&r| all.labels[r]).collect();
        Part { stats: ink_statistics(&images), targets: one_hot(&labels, 10), images, labels }
    }

    /// The model's inputs for this part.
    pub fn inputs(&self) -> DigitNetInputs<'_> {
        DigitNetInputs { image: self.images.view(), stats: self.stats.view() }
    }

    /// The model's targets for this part.
    pub fn targets(&self) -> DigitNetTargets<'_> {
        DigitNetTargets { digit: self.targets.view() }
    }

    /// Rows of `self` followed by rows of `other` (training rows then validation rows, for `validation_split`).
    pub fn then(&self, other: &Part) -> Part {
        let cat4 =
            |a: &Array4<f32>, b: &Array4<f32>| modelc::ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap_or_else(|_| a.clone());
        let cat2 =
            |a: &Array2<f32>, b: &Array2<f32>| modelc::ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap_or_else(|_| a.clone());
        Part {
            images: cat4(&self.images, &other.images),
            stats: cat2(&self.stats, &other.stats),
            targets: cat2(&self.targets, &other.targets),
            labels: self.labels.iter().chain(&other.labels).copied().collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.labels.len()
    }
}

/// The shipped digits set, split by `seed` into 70% training, 10% validation and 20% test rows.
pub fn load_split(seed: u64) -> modelc::Result<(Part, Part, Part)> {
    let all = load_digits(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz"))?;
    let (train, val, test) = split_indices(all.len(), 0.1, 0.2, seed);
    Ok((Part::select(&all, &train), Part::select(&all, &val), Part::select(&all, &test)))
}

/// The tabular branch's features, computed from each `[8, 8, 1]` image (pixels in 0..=1): row and column
/// sums, the number of ink strokes crossed along each row, the total ink and the left-minus-right ink,
/// each scaled to about 0..=1.
pub fn ink_statistics(images: &Array4<f32>) -> Array2<f32> {
    let n = images.len_of(Axis(0));
    let mut out = Array2::zeros((n, STATS));
    for (i, img) in images.outer_iter().enumerate() {
        let img = img.slice(s![.., .., 0]);
        for r in 0..8 {
            out[[i, r]] = img.row(r).sum() / 8.0;
            out[[i, 8 + r]] = img.column(r).sum() / 8.0;
            let mut strokes = 0.0;
            let mut inside = false;
            for &v in img.row(r) {
                let on = v > 0.3;
                if on && !inside {
                    strokes += 1.0;
                }
                inside = on;
            }
            out[[i, 16 + r]] = strokes / 4.0;
        }
        out[[i, 24]] = img.sum() / 64.0;
        out[[i, 25]] = (img.slice(s![.., ..4]).sum() - img.slice(s![.., 4..]).sum()) / 32.0;
    }
    out
}
