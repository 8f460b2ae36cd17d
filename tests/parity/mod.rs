//! The Keras parity fixtures, shared by the parity tests (`mod parity;`): a fixture is a safetensors
//! file that a script under `scripts/` wrote with Keras itself, holding `input/`, `target/`, `param/`
//! (the weights to start from), `output/`, `grad/` (each trainable weight's gradient of the loss) and
//! `adam3/` (the weights after three Adam steps).
// Each test binary uses its own subset of these helpers.
#![allow(dead_code)]

use std::collections::BTreeMap;

use modelc::io::read_tensors;
use modelc::ndarray::{ArrayD, ArrayView, Dimension};
use modelc::network::Network;
use modelc::ops::Gradients;
use modelc::prelude::*;

/// A fixture's tensors by name.
pub type Fixture = BTreeMap<String, ArrayD<f32>>;

/// `tests/fixtures/<name>.safetensors`.
pub fn fixture(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The tensor `key`, or a panic listing the fixture's keys.
pub fn get<'f>(fx: &'f Fixture, key: &str) -> &'f ArrayD<f32> {
    fx.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`; it has {:?}", fx.keys().collect::<Vec<_>>()))
}

/// A fixture tensor as a view of the rank the model's input field has.
pub fn view<'f, D: Dimension>(fx: &'f Fixture, key: &str) -> ArrayView<'f, f32, D> {
    get(fx, key).view().into_dimensionality::<D>().unwrap()
}

/// Sets every parameter of `model` from the fixture's `param/<name>` and checks none is left over.
pub fn set_params<N: Network>(model: &mut N, fx: &Fixture) {
    for spec in N::PARAMS {
        modelc::ops::set_param(model, spec.name, get(fx, &format!("param/{}", spec.name)).view()).unwrap();
    }
    let in_file = fx.keys().filter(|k| k.starts_with("param/")).count();
    assert_eq!(in_file, N::PARAMS.len(), "the fixture and the model have different weights");
}

/// `|got - want| <= atol + rtol · |want|` element by element.
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: modelc {g} vs Keras {w}");
    }
}

/// The loss value and its gradient with respect to the predictions, as Keras computes them.
pub fn loss_and_grad(loss: Loss, pred: &ArrayD<f32>, target: &ArrayD<f32>) -> (f64, ArrayD<f32>) {
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

/// Every trainable parameter's gradient against the fixture's `grad/`: within 1e-4 relative and 1e-6
/// absolute.
pub fn check_grads<N: Network>(grads: &Gradients, fx: &Fixture) {
    check_grads_within::<N>(grads, fx, false);
}

/// As [`check_grads`], with the absolute tolerance 1e-6 of the tensor's largest gradient (at least
/// 1e-6): for deep models whose elements near zero carry the f32 rounding of that scale.
pub fn check_grads_scaled<N: Network>(grads: &Gradients, fx: &Fixture) {
    check_grads_within::<N>(grads, fx, true);
}

fn check_grads_within<N: Network>(grads: &Gradients, fx: &Fixture, scaled: bool) {
    for spec in N::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        let want = get(fx, &format!("grad/{}", spec.name));
        let scale = if scaled { want.iter().fold(1.0f32, |a, v| a.max(v.abs())) } else { 1.0 };
        assert_close(&format!("gradient of {}", spec.name), &got, want.as_slice().unwrap(), 1e-6 * scale, 1e-4);
    }
}

/// Every parameter after three Adam steps against the fixture's `adam3/`, within 1e-4 relative and
/// `atol` absolute.
pub fn check_adam3<N: Network>(model: &N, fx: &Fixture, atol: f32) {
    for spec in N::PARAMS {
        let got: Vec<f32> = modelc::ops::param(model, spec.name).unwrap().iter().copied().collect();
        let want = get(fx, &format!("adam3/{}", spec.name));
        // A parameter whose gradient is zero up to rounding (MultiHeadAttention's key bias: it adds
        // the same q·b to every score of a row, which the softmax ignores) takes Adam steps that follow
        // the sign of the rounding noise, amplified by 1 / epsilon: both frameworks move it by up to
        // about lr / 100 per step, in directions set by their summation orders. Its gradient is
        // checked to the noise level by the callers; its steps are held to that size only.
        let noise = fx.get(&format!("grad/{}", spec.name)).is_some_and(|g| g.iter().all(|v| v.abs() < 1e-7));
        let atol = if noise { atol.max(1e-3) } else { atol };
        assert_close(&format!("{} after 3 Adam steps", spec.name), &got, want.as_slice().unwrap(), atol, 1e-4);
    }
}
