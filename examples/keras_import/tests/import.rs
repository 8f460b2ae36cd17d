//! The model imported at build time from `data/keras_digits/digits.keras` is the model Keras trained: with
//! the imported weights it predicts what Keras predicted on the same test rows and scores Keras' test
//! accuracy; and it trains on in Rust (one epoch of fine-tuning lowers the training loss).

use keras_import_example::model::KerasDigitsLosses;
use keras_import_example::{accuracy, imported, load_split, KERAS_CHECK};
use modelc::ndarray::{s, ArrayD};
use modelc::prelude::*;
use std::collections::BTreeMap;

/// What `scripts/keras_digits.py` recorded next to the `.keras` file.
fn keras_check() -> BTreeMap<String, modelc::io::Tensor> {
    modelc::io::read_typed_tensors(KERAS_CHECK).unwrap()
}

fn floats<'a>(check: &'a BTreeMap<String, modelc::io::Tensor>, name: &str) -> &'a ArrayD<f32> {
    check[name].as_f32().unwrap()
}

#[test]
fn imported_model_predicts_what_keras_predicted() {
    let check = keras_check();
    let (_, _, test, test_rows) = load_split().unwrap();
    // The Keras script split the rows as `split_indices` does.
    let keras_rows: Vec<usize> = check["test_indices"].as_i32().unwrap().iter().map(|&i| i as usize).collect();
    assert_eq!(keras_rows, test_rows, "the Keras script's test rows are the Rust split's");

    let mut model = imported().unwrap();
    let probs = model.predict(&test.inputs()).unwrap().digit;
    let expected = floats(&check, "probs");
    let n = expected.shape()[0];
    assert_eq!(expected.shape(), &[n, 10]);
    let ours = probs.slice(s![..n, ..]);
    for ((index, &got), &want) in ours.indexed_iter().zip(expected.iter()) {
        assert!((got - want).abs() <= 1e-5, "probability {index:?}: modelc {got}, Keras {want}");
    }

    let keras_accuracy = f64::from(floats(&check, "accuracy")[[0]]);
    let ours = accuracy(&mut model, &test).unwrap();
    // Keras' accuracy was stored as f32: equal to within its rounding, far below one sample (1/359).
    assert!((ours - keras_accuracy).abs() < 1e-6, "test accuracy: modelc {ours}, Keras {keras_accuracy}");
}

#[test]
fn one_epoch_of_fine_tuning_lowers_the_training_loss() {
    let (train, _, _, _) = load_split().unwrap();
    let mut model = imported().unwrap();
    let mut trainer = model.compile(Adam::new(2e-3), KerasDigitsLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let before = trainer.evaluate(&train.inputs(), &train.targets(), 256).unwrap()["loss"];
    let history = trainer.fit(&train.inputs(), &train.targets(), &Fit { epochs: 1, verbose: false, seed: 42, ..Fit::default() }).unwrap();
    assert_eq!(history.epochs(), 1);
    let after = trainer.evaluate(&train.inputs(), &train.targets(), 256).unwrap()["loss"];
    assert!(after < before, "training loss: {before} before one epoch, {after} after");
}
