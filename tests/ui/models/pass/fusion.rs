// A valid two-branch model compiles, and its generated API (new, predict, SUMMARY) is usable.
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    /// Fuses two feature sources into one score.
    pub struct Fusion {
        input left_features: [8];
        input right_features: [4];
        let left = Dense(16, activation = relu)(left_features);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

#[test]
fn compiles_and_runs() {
    let mut model = Fusion::new(42);
    let left = Array2::<f32>::zeros((2, 8));
    let right = Array2::<f32>::zeros((2, 4));
    let out = model.predict(&FusionInputs { left_features: left.view(), right_features: right.view() }).unwrap();
    assert_eq!(out.score.shape(), &[2, 1]);
    assert!(Fusion::SUMMARY.contains("dense"));
}
