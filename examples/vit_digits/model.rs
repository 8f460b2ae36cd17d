//! The model and data of the vit_digits example, also used by tests/vit_digits.rs (through `#[path]`), so
//! CI trains exactly the model the example trains.
#![allow(dead_code)] // the test uses part of it

use modelc::datasets::{load_digits, one_hot, split_indices, Digits};
use modelc::ndarray::{Array2, Array3, Axis};
use modelc::prelude::*;

/// Tokens per image: its 8 rows.
pub const TOKENS: usize = 8;
/// Attention heads.
pub const HEADS: usize = 4;

model! {
    /// A small vision transformer over the 8×8 digits: each image row is a token of 8 pixels, embedded
    /// by a Dense layer plus a learned position embedding, then one transformer encoder block, the mean
    /// over the tokens and ten class probabilities.
    pub struct DigitTransformer {
        input rows: [8, 8];
        input positions: [8] as i32;
        let x = Add()([Dense(32)(rows), Embedding(8, 32)(positions)]);
        let (a, scores) = MultiHeadAttention(num_heads = 4, key_dim = 8)(x, x, return_attention_scores = true);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(32)(Dense(64, activation = gelu)(x));
        let x = LayerNormalization()(Add()([x, f]));
        output digit = Dense(10, activation = softmax)(GlobalAveragePooling1D()(x));
        output attention = scores;
    }
}

model! {
    /// The same network without the scores output, for training: its layers, names and weights are
    /// exactly `DigitTransformer`'s (the weights move between the two by name).
    pub struct DigitTransformerTrainer {
        input rows: [8, 8];
        input positions: [8] as i32;
        let x = Add()([Dense(32)(rows), Embedding(8, 32)(positions)]);
        let a = MultiHeadAttention(num_heads = 4, key_dim = 8)(x, x);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(32)(Dense(64, activation = gelu)(x));
        let x = LayerNormalization()(Add()([x, f]));
        output digit = Dense(10, activation = softmax)(GlobalAveragePooling1D()(x));
    }
}

/// One part of the split: the images as 8 row tokens, their position ids, one-hot targets and labels.
pub struct Part {
    pub rows: Array3<f32>,
    pub positions: Array2<i32>,
    pub targets: Array2<f32>,
    pub labels: Vec<u8>,
}

impl Part {
    fn select(all: &Digits, picked: &[usize]) -> Part {
        let images = all.images.select(Axis(0), picked);
        let n = picked.len();
        let rows = images.into_shape_with_order((n, TOKENS, 8)).unwrap_or_else(|_| Array3::zeros((n, TOKENS, 8)));
        let labels: Vec<u8> = picked.iter().map(|&r| all.labels[r]).collect();
        let positions = Array2::from_shape_fn((n, TOKENS), |(_, t)| t as i32);
        Part { rows, positions, targets: one_hot(&labels, 10), labels }
    }

    /// The inputs of either model for this part.
    pub fn inputs(&self) -> DigitTransformerInputs<'_> {
        DigitTransformerInputs { rows: self.rows.view(), positions: self.positions.view() }
    }

    /// The training model's inputs.
    pub fn trainer_inputs(&self) -> DigitTransformerTrainerInputs<'_> {
        DigitTransformerTrainerInputs { rows: self.rows.view(), positions: self.positions.view() }
    }

    /// The training model's targets.
    pub fn targets(&self) -> DigitTransformerTrainerTargets<'_> {
        DigitTransformerTrainerTargets { digit: self.targets.view() }
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

/// Copies every weight of the training model into the model with the scores output (same names).
pub fn copy_weights(from: &DigitTransformerTrainer, to: &mut DigitTransformer) -> modelc::Result<()> {
    for spec in DigitTransformerTrainer::PARAMS {
        let w = modelc::ops::param(from, spec.name)?;
        modelc::ops::set_param(to, spec.name, w.view())?;
    }
    Ok(())
}

/// The heatmap grid of the first `n` samples of `part`: per sample its image, then each head's
/// attention of the 8 row tokens over the 8 row tokens (query rows down, key rows across).
pub fn attention_grid<'a>(part: &'a Part, scores: &'a [f32], predicted: &[usize], n: usize) -> Vec<Vec<modelc::viz::Heatmap<'a>>> {
    let per_head = TOKENS * TOKENS;
    let (images, scores) = (part.rows.as_slice().unwrap_or(&[]), scores);
    (0..n.min(part.len()))
        .map(|s| {
            let label = part.labels[s];
            let guess = predicted.get(s).copied().unwrap_or(usize::MAX);
            let image = modelc::viz::Heatmap {
                caption: format!("digit {label}, predicted {guess}"),
                rows: 8,
                cols: 8,
                values: &images[s * 64..(s + 1) * 64],
            };
            let heads = (0..HEADS).map(move |h| modelc::viz::Heatmap {
                caption: format!("head {}", h + 1),
                rows: TOKENS,
                cols: TOKENS,
                values: &scores[(s * HEADS + h) * per_head..][..per_head],
            });
            std::iter::once(image).chain(heads).collect()
        })
        .collect()
}

/// The class of highest probability of each row.
pub fn argmax_rows(probs: &Array2<f32>) -> Vec<usize> {
    probs.outer_iter().map(|r| r.iter().enumerate().fold((0, f32::MIN), |best, (i, &p)| if p > best.1 { (i, p) } else { best }).0).collect()
}
