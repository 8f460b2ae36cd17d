//! Parity with Keras itself: outputs, the training loss, the gradient of every weight and the weights after
//! three Adam steps, against fixtures written by `scripts/keras_reference.py` (Keras 3, JAX backend) into
//! `tests/fixtures/`. Outputs must agree within 1e-5 absolute, gradients within 1e-4 relative.

use std::collections::BTreeMap;

use modelc::io::read_tensors;
use modelc::ndarray::{ArrayD, ArrayView2, Ix2};
use modelc::network::Network;
use modelc::ops::Gradients;
use modelc::prelude::*;

type Fixture = BTreeMap<String, ArrayD<f32>>;

fn fixture(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn get<'f>(fx: &'f Fixture, key: &str) -> &'f ArrayD<f32> {
    fx.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`; it has {:?}", fx.keys().collect::<Vec<_>>()))
}

fn view2<'f>(fx: &'f Fixture, key: &str) -> ArrayView2<'f, f32> {
    get(fx, key).view().into_dimensionality::<Ix2>().unwrap()
}

/// Sets every parameter of `model` from the fixture's `param/<name>` and checks none is left over.
fn set_params<N: Network>(model: &mut N, fx: &Fixture) {
    for spec in N::PARAMS {
        modelc::ops::set_param(model, spec.name, get(fx, &format!("param/{}", spec.name)).view()).unwrap();
    }
    let in_file = fx.keys().filter(|k| k.starts_with("param/")).count();
    assert_eq!(in_file, N::PARAMS.len(), "the fixture and the model have different weights");
}

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: modelc {g} vs Keras {w}");
    }
}

/// The loss value and its gradient with respect to the predictions, as Keras computes them.
fn loss_and_grad(loss: Loss, pred: &ArrayD<f32>, target: &ArrayD<f32>) -> (f64, ArrayD<f32>) {
    let cols = *pred.shape().last().unwrap();
    let rows = pred.len() / cols;
    let mut grad = ArrayD::zeros(pred.shape());
    let value = loss.compute(
        pred.as_slice().unwrap(),
        target.as_slice().unwrap(),
        rows,
        cols,
        Some(grad.as_slice_mut().unwrap()),
        1.0,
        modelc::Activation::Linear,
    );
    (value, grad)
}

fn check_grads<N: Network>(grads: &Gradients, fx: &Fixture) {
    for spec in N::PARAMS.iter().filter(|s| s.trainable) {
        let want = get(fx, &format!("grad/{}", spec.name));
        let got = grads.get(spec.name).unwrap();
        assert_close(&format!("gradient of {}", spec.name), &got.iter().copied().collect::<Vec<_>>(), want.as_slice().unwrap(), 1e-6, 1e-4);
    }
}

fn check_adam<N: Network>(model: &N, fx: &Fixture) {
    for spec in N::PARAMS {
        let want = get(fx, &format!("adam3/{}", spec.name));
        let got = modelc::ops::param(model, spec.name).unwrap();
        assert_close(
            &format!("{} after 3 Adam steps", spec.name),
            &got.iter().copied().collect::<Vec<_>>(),
            want.as_slice().unwrap(),
            1e-5,
            1e-4,
        );
    }
}

model! {
    /// BENCH M1, as examples/fusion.rs.
    struct Fusion {
        input left_features: [8];
        input right_features: [4];
        let left = Dense(16, activation = relu)(left_features);
        let left = Dense(8, activation = relu)(left);
        let right = Dense(8, activation = relu)(right_features);
        let merged = Concatenate()([left, right]);
        output score = Dense(1, activation = sigmoid)(merged);
    }
}

#[test]
fn fusion_matches_keras() {
    let fx = fixture("fusion");
    let mut model = Fusion::new(0);
    set_params(&mut model, &fx);
    let inputs = FusionInputs { left_features: view2(&fx, "input/left_features"), right_features: view2(&fx, "input/right_features") };
    let out = model.forward(&inputs, true).unwrap();
    assert_close("score", out.score.as_slice().unwrap(), get(&fx, "output/score").as_slice().unwrap(), 1e-5, 0.0);

    let target = get(&fx, "target/score");
    let (loss, dy) = loss_and_grad(Loss::BinaryCrossentropy, &out.score.clone().into_dyn(), target);
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&FusionOutputs { score: dy.into_dimensionality().unwrap() }).unwrap();
    check_grads::<Fusion>(&grads, &fx);

    let targets = FusionTargets { score: view2(&fx, "target/score") };
    let mut trainer = model.compile(Adam::new(1e-2), FusionLosses { score: Loss::BinaryCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam(&model, &fx);
}

model! {
    /// A tanh hidden layer, a sigmoid Activation layer and a softmax head.
    struct SoftmaxHead {
        input x: [5];
        let h = Dense(7, activation = tanh)(x);
        let h = Activation(sigmoid)(h);
        output probs = Dense(3, activation = softmax)(h);
    }
}

#[test]
fn softmax_head_matches_keras() {
    let fx = fixture("softmax_head");
    let mut model = SoftmaxHead::new(0);
    set_params(&mut model, &fx);
    let inputs = SoftmaxHeadInputs { x: view2(&fx, "input/x") };
    let out = model.forward(&inputs, true).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);

    let (loss, dy) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.clone().into_dyn(), get(&fx, "target/probs"));
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SoftmaxHeadOutputs { probs: dy.into_dimensionality().unwrap() }).unwrap();
    check_grads::<SoftmaxHead>(&grads, &fx);

    let targets = SoftmaxHeadTargets { probs: view2(&fx, "target/probs") };
    let mut trainer = model.compile(Adam::new(1e-2), SoftmaxHeadLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam(&model, &fx);
}

model! {
    /// Linear layers, one without bias, and mean squared error.
    struct LinearMse {
        input x: [4];
        let h = Dense(6, use_bias = false)(x);
        output y = Dense(2)(h);
    }
}

#[test]
fn linear_mse_matches_keras() {
    let fx = fixture("linear_mse");
    let mut model = LinearMse::new(0);
    set_params(&mut model, &fx);
    let inputs = LinearMseInputs { x: view2(&fx, "input/x") };
    let out = model.forward(&inputs, true).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);

    let (loss, dy) = loss_and_grad(Loss::MeanSquaredError, &out.y.clone().into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[loss as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&LinearMseOutputs { y: dy.into_dimensionality().unwrap() }).unwrap();
    check_grads::<LinearMse>(&grads, &fx);

    let targets = LinearMseTargets { y: view2(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(1e-2), LinearMseLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &targets).unwrap();
    }
    check_adam(&model, &fx);
}
