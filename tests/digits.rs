//! Guards the main job (`cargo run --release --example digits`): the same model, features and split, trained
//! for a few epochs, must classify the held-out digits far above chance (0.1), and its weights must round-trip.

#[path = "../examples/digits/model.rs"]
mod model;

use model::*;
use modelc::metrics::ConfusionMatrix;
use modelc::prelude::*;

#[test]
fn a_few_epochs_classify_held_out_digits_far_above_chance() {
    let (train, val, test) = load_split(42).unwrap();
    assert_eq!((train.len(), val.len(), test.len()), (1259, 179, 359));
    assert_eq!(train.stats.ncols(), STATS);
    let mut model = DigitNet::new(42);
    let mut trainer = model.compile(Adam::new(2e-3), DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit(&train.inputs(), &train.targets(), &Fit { epochs: 3, verbose: false, seed: 42, ..Fit::default() }).unwrap();
    let losses = history.get("loss").unwrap();
    assert!(losses[2] < losses[0], "loss falls: {losses:?}");
    let val_logs = trainer.evaluate(&val.inputs(), &val.targets(), 128).unwrap();
    assert!(val_logs["accuracy"] > 0.8, "{val_logs:?}");

    let probs = model.predict(&test.inputs()).unwrap();
    let accuracy = ConfusionMatrix::from_scores(probs.digit.view(), &test.labels).accuracy();
    assert!(accuracy > 0.8, "test accuracy {accuracy} after 3 epochs");

    let path = std::env::temp_dir().join(format!("modelc-digits-{}.safetensors", std::process::id()));
    model.save(&path).unwrap();
    let mut loaded = DigitNet::new(0);
    loaded.load(&path).unwrap();
    assert_eq!(loaded.predict(&test.inputs()).unwrap(), probs);
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn ink_statistics_describe_the_image() {
    let mut images = modelc::ndarray::Array4::<f32>::zeros((1, 8, 8, 1));
    // A vertical stroke in column 2: every row crosses one stroke; all ink is on the left.
    for r in 0..8 {
        images[[0, r, 2, 0]] = 1.0;
    }
    let s = ink_statistics(&images);
    assert_eq!(s[[0, 0]], 1.0 / 8.0, "row sum");
    assert_eq!(s[[0, 8 + 2]], 1.0, "column 2 holds 8 ink");
    assert_eq!(s[[0, 16]], 0.25, "one stroke per row, scaled by 4");
    assert_eq!(s[[0, 24]], 8.0 / 64.0, "total ink");
    assert_eq!(s[[0, 25]], 8.0 / 32.0, "left-minus-right ink");
}
