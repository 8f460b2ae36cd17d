//! The foundation model (seed pattern 1, BENCH M1) end to end: every parameter's gradient against finite
//! differences, forward outputs against an independent ndarray computation, input checks, and training.

use modelc::gradcheck::check_gradients;
use modelc::ndarray::{Array2, Axis};
use modelc::prelude::*;

use crate::common;
use common::random;

model! {
    /// Fuses two feature sources into one score.
    pub struct Fusion {
        input left_features: [8];
        input right_features: [4];

        let left = Dense(16, activation = relu)(left_features);
        let left = Dense(8, activation = tanh)(left);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

fn param2(model: &Fusion, name: &str) -> Array2<f32> {
    model.param(name).unwrap().into_dimensionality().unwrap().to_owned()
}

fn param1(model: &Fusion, name: &str) -> Array2<f32> {
    let b = model.param(name).unwrap();
    b.to_shape((1, b.len())).unwrap().to_owned()
}

#[test]
fn forward_matches_an_independent_ndarray_computation() {
    let mut model = Fusion::new(3);
    let (l, r) = (random(5, 8, 1), random(5, 4, 2));
    let out = model.predict(&FusionInputs { left_features: l.view(), right_features: r.view() }).unwrap();

    let relu = |a: Array2<f32>| a.mapv(|v| v.max(0.0));
    let h = relu(l.dot(&param2(&model, "dense/kernel")) + param1(&model, "dense/bias"));
    let h = (h.dot(&param2(&model, "dense_1/kernel")) + param1(&model, "dense_1/bias")).mapv(f32::tanh);
    let g = relu(r.dot(&param2(&model, "dense_2/kernel")) + param1(&model, "dense_2/bias"));
    let merged = modelc::ndarray::concatenate(Axis(1), &[h.view(), g.view()]).unwrap();
    let z = merged.dot(&param2(&model, "dense_3/kernel")) + param1(&model, "dense_3/bias");
    let expected = z.mapv(|v| 1.0 / (1.0 + (-v).exp()));

    assert_eq!(out.score.shape(), &[5, 1]);
    for (a, b) in out.score.iter().zip(expected.iter()) {
        assert!((a - b).abs() < 1e-5, "{a} vs {b}");
    }
}

#[test]
fn every_parameter_gradient_matches_finite_differences() {
    let mut model = Fusion::new(11);
    let (l, r) = (random(6, 8, 4), random(6, 4, 5));
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 2e-3, 2e-2, 9).unwrap();
    assert_eq!(report.checked, model.count_params());
    assert!(report.skipped * 20 < report.checked, "{} of {} elements sit on a kink", report.skipped, report.checked);
    assert!(report.passed(), "{} of {} elements disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn parameters_have_keras_names_layouts_and_initialization() {
    let model = Fusion::new(42);
    let names: Vec<&str> = <Fusion as Network>::PARAMS.iter().map(|p| p.name).collect();
    assert_eq!(
        names,
        [
            "dense/kernel",
            "dense/bias",
            "dense_1/kernel",
            "dense_1/bias",
            "dense_2/kernel",
            "dense_2/bias",
            "dense_3/kernel",
            "dense_3/bias"
        ]
    );
    assert_eq!(model.param("dense/kernel").unwrap().shape(), &[8, 16]);
    assert_eq!(model.param("dense_3/kernel").unwrap().shape(), &[16, 1]);
    assert!(model.param("dense/bias").unwrap().iter().all(|b| *b == 0.0));
    let limit = (6.0f32 / (8.0 + 16.0)).sqrt();
    let k = model.param("dense/kernel").unwrap();
    assert!(k.iter().all(|w| w.abs() <= limit) && k.iter().any(|w| w.abs() > limit / 2.0));
    assert_eq!(model.count_params(), 8 * 16 + 16 + 16 * 8 + 8 + 4 * 8 + 8 + 16 + 1);
    assert_eq!(Fusion::new(42).params(), model.params(), "same seed, same weights");
}

#[test]
fn set_param_checks_names_and_shapes() {
    let mut model = Fusion::new(1);
    model.set_param("dense_3/bias", modelc::ndarray::arr1(&[0.5f32]).view()).unwrap();
    assert_eq!(model.param("dense_3/bias").unwrap()[[0]], 0.5);
    let err = model.set_param("dense_3/bias", modelc::ndarray::arr1(&[0.5f32, 1.0]).view()).unwrap_err().to_string();
    assert!(err.contains("dense_3/bias"), "{err}");
    let err = model.param("dense_9/kernel").unwrap_err().to_string();
    assert!(err.contains("dense_9/kernel"), "{err}");
}

#[test]
fn wrong_input_shapes_are_errors_naming_the_input() {
    let mut model = Fusion::new(1);
    let (l, r) = (random(4, 7, 1), random(4, 4, 2));
    let err = model.predict(&FusionInputs { left_features: l.view(), right_features: r.view() }).unwrap_err().to_string();
    assert!(err.contains("left_features") && err.contains("(None, 8)"), "{err}");
    let (l, r) = (random(4, 8, 1), random(3, 4, 2));
    let err = model.predict(&FusionInputs { left_features: l.view(), right_features: r.view() }).unwrap_err().to_string();
    assert!(err.contains("left_features") && err.contains("right_features"), "{err}");
}

#[test]
fn fit_learns_a_linear_rule() {
    let (l, r) = (random(1000, 8, 21), random(1000, 4, 22));
    let y = Array2::from_shape_fn((1000, 1), |(i, _)| if l[[i, 0]] + l[[i, 3]] - r[[i, 1]] > 0.0 { 1.0 } else { 0.0 });
    let mut model = Fusion::new(5);
    let mut trainer = model.compile(Adam::new(1e-2), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let history = trainer
        .fit(
            &FusionInputs { left_features: l.view(), right_features: r.view() },
            &FusionTargets { score: y.view() },
            &Fit { epochs: 8, verbose: false, ..Fit::default() },
        )
        .unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.5, "{loss:?}");
    assert!(history.last("accuracy").unwrap() > 0.9, "{:?}", history.get("accuracy"));
}
