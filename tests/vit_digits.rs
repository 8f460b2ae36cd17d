//! The vit_digits example's transformer (examples/vit_digits/model.rs) on the shipped digits: a short
//! training lowers the loss, the weights move to the model with the scores output unchanged, its
//! attention scores are per head probability rows over the 8 row tokens, and the heatmap draws them.

#[path = "../examples/vit_digits/model.rs"]
mod model;

use model::*;
use modelc::ndarray::s;
use modelc::prelude::*;

#[test]
fn a_short_training_lowers_the_loss_and_the_scores_draw_as_a_heatmap() {
    let (train, val, test) = load_split(7).unwrap();
    assert_eq!(train.len() + val.len() + test.len(), 1797);
    // Each token is one image row, in order, and the positions count the rows.
    assert_eq!(train.rows.shape(), &[train.len(), TOKENS, 8]);
    assert_eq!(train.positions.row(0).to_vec(), (0..8).collect::<Vec<i32>>());

    let mut trainer_model = DigitTransformerTrainer::new(3);
    let losses = DigitTransformerTrainerLosses { digit: Loss::CategoricalCrossentropy };
    let mut trainer = trainer_model.compile(Adam::new(3e-3), losses, &[]);
    let first = trainer.evaluate(&val.trainer_inputs(), &val.targets(), 64).unwrap()["loss"];
    let fit = Fit { epochs: 2, batch_size: 32, seed: 1, verbose: false, ..Fit::default() };
    trainer.fit(&train.trainer_inputs(), &train.targets(), &fit).unwrap();
    let after = trainer.evaluate(&val.trainer_inputs(), &val.targets(), 64).unwrap()["loss"];
    assert!(after < 0.8 * first, "validation loss {first} -> {after}");
    drop(trainer);

    let mut model = DigitTransformer::new(0);
    copy_weights(&trainer_model, &mut model).unwrap();
    let few = 5;
    let rows = test.rows.slice(s![..few, .., ..]);
    let positions = test.positions.slice(s![..few, ..]);
    let out = model.predict(&DigitTransformerInputs { rows, positions }).unwrap();
    let same = trainer_model.predict(&DigitTransformerTrainerInputs { rows, positions }).unwrap();
    // Equal up to rounding: the model returning its scores keeps the normalized probabilities, the
    // training model's inference forward divides the context rows instead (kernels::attention::infer).
    let gap = out.digit.iter().zip(&same.digit).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(gap < 1e-5, "the copied weights give the training model's predictions: {} against {}", out.digit, same.digit);
    assert_eq!(out.attention.shape(), &[few, HEADS, TOKENS, TOKENS]);
    for row in out.attention.as_slice().unwrap().chunks_exact(TOKENS) {
        assert!((row.iter().sum::<f32>() - 1.0).abs() < 1e-4 && row.iter().all(|&p| p >= 0.0), "{row:?}");
    }

    let few_part = Part {
        rows: rows.to_owned(),
        positions: positions.to_owned(),
        targets: test.targets.slice(s![..few, ..]).to_owned(),
        labels: test.labels[..few].to_vec(),
    };
    let predicted = argmax_rows(&out.digit);
    let grid = attention_grid(&few_part, out.attention.as_slice().unwrap(), &predicted, 3);
    assert_eq!(grid.len(), 3);
    assert!(grid.iter().all(|line| line.len() == 1 + HEADS));
    let svg = modelc::viz::heatmaps_svg("attention", &grid);
    assert_eq!(svg.matches("<title>").count(), 3 * (64 + HEADS * TOKENS * TOKENS));
    assert!(svg.contains(&format!("digit {}, predicted {}", test.labels[0], predicted[0])));
}
