//! The runtime's generic model operations on hand-written networks: staging and its errors,
//! predict, backward against finite differences, parameters by name.

mod common;

use common::*;
use model_runtime::model::{self, stage_inputs};
use model_runtime::workspace::Workspace;
use model_runtime::Error;
use ndarray::{arr2, ArrayD, IxDyn};

fn inputs<'a>(a: &'a ArrayD<f32>, b: &'a ArrayD<f32>) -> TwoInInputs<'a> {
    TwoInInputs { a: a.view(), b: b.view() }
}

#[test]
fn stage_inputs_rejects_a_wrong_shape_naming_the_input() {
    let mut rng = Lcg(1);
    let (a, b) = (rng.array(32, 7), rng.array(32, 2));
    let err = stage_inputs::<TwoIn>(&inputs(&a, &b), &mut Workspace::default()).unwrap_err();
    assert_eq!(err.to_string(), "input `a`: expected shape (None, 4), got (32, 7)");

    let a3 = ArrayD::<f32>::zeros(IxDyn(&[2, 4, 1]));
    let err = stage_inputs::<TwoIn>(&inputs(&a3, &b), &mut Workspace::default()).unwrap_err();
    assert!(matches!(err, Error::Shape { .. }), "{err}");
    assert!(err.to_string().contains("got (2, 4, 1)"), "{err}");
}

#[test]
fn stage_inputs_rejects_disagreeing_batch_sizes_naming_both() {
    let mut rng = Lcg(2);
    let (a, b) = (rng.array(5, 4), rng.array(4, 2));
    let err = stage_inputs::<TwoIn>(&inputs(&a, &b), &mut Workspace::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, Error::BatchMismatch { first_batch: 5, second_batch: 4, .. }), "{msg}");
    assert!(msg.contains("input `a` has 5 rows") && msg.contains("input `b` has 4"), "{msg}");
}

#[test]
fn stage_inputs_rejects_an_empty_batch() {
    let (a, b) = (ArrayD::<f32>::zeros(IxDyn(&[0, 4])), ArrayD::<f32>::zeros(IxDyn(&[0, 2])));
    let err = stage_inputs::<TwoIn>(&inputs(&a, &b), &mut Workspace::default()).unwrap_err();
    assert!(matches!(err, Error::EmptyBatch { .. }), "{err}");
    assert!(err.to_string().contains("empty batch"), "{err}");
}

#[test]
fn stage_inputs_copies_non_contiguous_views_in_logical_order() {
    let a = arr2(&[[1.0f32, 2.0], [3.0, 4.0], [5.0, 6.0], [7.0, 8.0]]).into_dyn();
    let at = a.t(); // [2, 4], not standard layout
    let b = arr2(&[[9.0f32, 10.0], [11.0, 12.0]]).into_dyn();
    let mut ws = Workspace::default();
    let batch = stage_inputs::<TwoIn>(&TwoInInputs { a: at.view(), b: b.view() }, &mut ws).unwrap();
    assert_eq!(batch, 2);
    assert_eq!(ws.values[0], [1.0, 3.0, 5.0, 7.0, 2.0, 4.0, 6.0, 8.0]);
    assert_eq!(ws.values[1], [9.0, 10.0, 11.0, 12.0]);
}

#[test]
fn integer_inputs_are_converted_exactly_or_rejected() {
    let mut m = Ids { state: model::new_state::<Ids>(0) };
    let ids = ndarray::arr2(&[[0i32, 7, -3], [16_777_216, 1, 2]]).into_dyn();
    let out = model::predict(&mut m, &IdsInputs { ids: ids.view() }).unwrap();
    assert_eq!(out.out.as_slice().unwrap(), [0.0, 7.0, -3.0, 16_777_216.0, 1.0, 2.0]);
    let big = ndarray::arr2(&[[16_777_217i32, 0, 0]]).into_dyn();
    let err = model::predict(&mut m, &IdsInputs { ids: big.view() }).unwrap_err();
    assert!(matches!(err, Error::InexactInteger { value: 16_777_217, .. }), "{err}");
}

/// The model computed independently of the `Network` impl, from named parameters.
fn reference(m: &TwoIn, a: &ArrayD<f32>, b: &ArrayD<f32>) -> Vec<f32> {
    let k0 = model::param(m, "dense/kernel").unwrap();
    let b0 = model::param(m, "dense/bias").unwrap();
    let k1 = model::param(m, "dense_1/kernel").unwrap();
    let b1 = model::param(m, "dense_1/bias").unwrap();
    (0..a.shape()[0])
        .map(|r| {
            let mut feats = Vec::new();
            for j in 0..3 {
                let z: f32 = (0..4).map(|i| a[[r, i]] * k0[[i, j]]).sum::<f32>() + b0[[j]];
                feats.push(z.max(0.0));
            }
            feats.extend([b[[r, 0]], b[[r, 1]]]);
            let z: f32 = feats.iter().enumerate().map(|(i, f)| f * k1[[i, 0]]).sum::<f32>() + b1[[0]];
            1.0 / (1.0 + (-z).exp())
        })
        .collect()
}

#[test]
fn predict_matches_the_reference_computation() {
    let mut m = TwoIn::new(3);
    // Non-zero biases so every parameter matters.
    model::set_param(&mut m, "dense/bias", ndarray::arr1(&[0.1f32, -0.2, 0.3]).into_dyn().view()).unwrap();
    let (a, b, _) = two_in_data(9, 4);
    let out = model::predict(&mut m, &inputs(&a, &b)).unwrap();
    assert_eq!(out.score.shape(), [9, 1]);
    let expected = reference(&m, &a, &b);
    for (x, y) in out.score.iter().zip(&expected) {
        assert!((x - y).abs() < 1e-6, "{x} vs {y}");
    }
    assert!(!m.state.ws.training, "predict runs in inference mode");
}

#[test]
fn backward_matches_finite_differences_on_the_whole_model() {
    let mut m = TwoIn::new(5);
    model::set_param(&mut m, "dense/bias", ndarray::arr1(&[0.3f32, 0.2, 0.4]).into_dyn().view()).unwrap();
    let (a, b, _) = two_in_data(6, 6);
    // Scalar L = sum_r w_r * score_r, so dL/dscore = w.
    let w: Vec<f32> = (0..6).map(|r| 0.5 + r as f32 * 0.25).collect();
    let d_out = TwoInOutputs { score: ArrayD::from_shape_vec(IxDyn(&[6, 1]), w.clone()).unwrap() };
    model::forward(&mut m, &inputs(&a, &b), true).unwrap();
    let grads = model::backward(&mut m, &d_out).unwrap();
    assert_eq!(grads.as_slice().len(), 21);
    assert_eq!(grads.get("dense_1/kernel").unwrap().shape(), [5, 1]);
    assert!(grads.get("nope").is_none());

    let loss = |m: &mut TwoIn| -> f64 {
        let out = model::predict(m, &inputs(&a, &b)).unwrap();
        out.score.iter().zip(&w).map(|(&s, &w)| f64::from(s) * f64::from(w)).sum()
    };
    let h = 1e-2f32;
    for k in 0..21 {
        let orig = m.state.params[k];
        m.state.params[k] = orig + h;
        let lp = loss(&mut m);
        m.state.params[k] = orig - h;
        let lm = loss(&mut m);
        m.state.params[k] = orig;
        let num = (lp - lm) / (2.0 * f64::from(h));
        let ana = f64::from(grads.as_slice()[k]);
        assert!((num - ana).abs() < 1e-3 * (1.0 + num.abs()), "param {k}: analytic {ana} vs numeric {num}");
    }
}

#[test]
fn backward_checks_its_preconditions() {
    let mut m = TwoIn::new(0);
    let d_out = TwoInOutputs { score: ArrayD::zeros(IxDyn(&[3, 1])) };
    assert!(matches!(model::backward(&mut m, &d_out), Err(Error::BackwardBeforeForward)));
    let (a, b, _) = two_in_data(4, 1);
    model::forward(&mut m, &inputs(&a, &b), true).unwrap();
    let err = model::backward(&mut m, &d_out).unwrap_err();
    assert_eq!(err.to_string(), "output gradient `score`: expected shape (4, 1), got (3, 1)");
    // A forward pass whose second input is rejected (its batch differs) after the first was staged
    // leaves no half-staged pass for backward to differentiate.
    let (a3, _, _) = two_in_data(3, 2);
    assert!(matches!(model::forward(&mut m, &inputs(&a3, &b), true), Err(Error::BatchMismatch { .. })));
    assert!(matches!(model::backward(&mut m, &d_out), Err(Error::BackwardBeforeForward)));
}

#[test]
fn parameters_are_reachable_by_name() {
    let mut m = TwoIn::new(7);
    let names: Vec<&str> = model::param_names::<TwoIn>().collect();
    assert_eq!(names, ["dense/kernel", "dense/bias", "dense_1/kernel", "dense_1/bias"]);
    assert_eq!(model::count_params::<TwoIn>(), (21, 21, 0));

    let k = model::param(&m, "dense/kernel").unwrap();
    assert_eq!(k.shape(), [4, 3]);
    assert!(k.iter().any(|&v| v != 0.0), "glorot init");
    assert!(model::param(&m, "dense/bias").unwrap().iter().all(|&v| v == 0.0));

    // A transposed (non-contiguous) value is copied in logical order.
    let v = ArrayD::from_shape_vec(IxDyn(&[3, 4]), (0..12).map(|i| i as f32).collect()).unwrap();
    model::set_param(&mut m, "dense/kernel", v.t()).unwrap();
    let k = model::param(&m, "dense/kernel").unwrap();
    assert_eq!(k[[1, 2]], v[[2, 1]]);
    assert_eq!(k[[3, 0]], v[[0, 3]]);

    let err = model::set_param(&mut m, "dense/kernel", v.view()).unwrap_err();
    assert_eq!(err.to_string(), "parameter `dense/kernel`: expected shape [4, 3], got [3, 4]");
    let err = model::param(&m, "dense/kernal").unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("unknown parameter `dense/kernal`") && msg.contains("`dense/kernel`"), "{msg}");
    assert!(matches!(err, Error::UnknownParam { .. }));
}

#[test]
fn new_state_is_deterministic_in_the_seed() {
    assert_eq!(TwoIn::new(11).state.params, TwoIn::new(11).state.params);
    assert_ne!(TwoIn::new(11).state.params, TwoIn::new(12).state.params);
}
