//! Parity of MultiHeadAttention (issue #18) with Keras itself, against the fixtures written by
//! `scripts/keras_attention.py` (Keras 3, JAX backend) in the format of tests/keras_parity.rs: outputs
//! within 1e-5, the training loss, every gradient within 1e-4 relative, the weights after three Adam(1e-2)
//! steps. Causal self-attention, cross-attention with a padding mask (value_dim and output_shape set),
//! and a transformer encoder block on embedded tokens.

use std::collections::BTreeMap;

use modelc::io::read_tensors;
use modelc::ndarray::{ArrayD, ArrayView, Dimension};
use modelc::network::Network;
use modelc::prelude::*;

model! {
    /// scripts/keras_attention.py, `self_causal`.
    struct SelfCausal {
        input x: [5, 3];
        let h = Dense(6, activation = tanh)(x);
        layer mha = MultiHeadAttention(num_heads = 2, key_dim = 3);
        output y = mha(h, h, use_causal_mask = true);
    }
}

model! {
    /// scripts/keras_attention.py, `cross_masked`.
    struct CrossMasked {
        input q: [4, 3];
        input v: [6, 2];
        input m: [4, 6];
        let hq = Dense(5, activation = tanh)(q);
        let hv = Dense(4, activation = tanh)(v);
        layer mha = MultiHeadAttention(num_heads = 3, key_dim = 2, value_dim = 4, output_shape = 7);
        output y = mha(hq, hv, attention_mask = m);
    }
}

model! {
    /// scripts/keras_attention.py, `encoder`: one transformer encoder block.
    struct Encoder {
        input tokens: [8] as i32;
        let x = Embedding(20, 8)(tokens);
        let a = MultiHeadAttention(num_heads = 2, key_dim = 4)(x, x);
        let x = LayerNormalization()(Add()([x, a]));
        let f = Dense(16, activation = gelu)(x);
        let f = Dense(8)(f);
        let x = LayerNormalization()(Add()([x, f]));
        output probs = Dense(3, activation = softmax)(GlobalAveragePooling1D()(x));
    }
}

type Fixture = BTreeMap<String, ArrayD<f32>>;

fn fixture(name: &str) -> Fixture {
    let path = format!("{}/tests/fixtures/{name}.safetensors", env!("CARGO_MANIFEST_DIR"));
    read_tensors(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn get<'f>(fx: &'f Fixture, key: &str) -> &'f ArrayD<f32> {
    fx.get(key).unwrap_or_else(|| panic!("fixture has no `{key}`; it has {:?}", fx.keys().collect::<Vec<_>>()))
}

fn view<'f, D: Dimension>(fx: &'f Fixture, key: &str) -> ArrayView<'f, f32, D> {
    get(fx, key).view().into_dimensionality::<D>().unwrap()
}

fn set_params<N: Network>(model: &mut N, fx: &Fixture) {
    for spec in N::PARAMS {
        modelc::ops::set_param(model, spec.name, get(fx, &format!("param/{}", spec.name)).view()).unwrap();
    }
    assert_eq!(fx.keys().filter(|k| k.starts_with("param/")).count(), N::PARAMS.len(), "the fixture and the model have different weights");
}

fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol + rtol * w.abs(), "{what}[{i}]: modelc {g} vs Keras {w}");
    }
}

fn loss_and_grad(loss: Loss, pred: &ArrayD<f32>, target: &ArrayD<f32>) -> (f64, ArrayD<f32>) {
    let cols = *pred.shape().last().unwrap();
    let mut grad = ArrayD::zeros(pred.shape());
    let value = loss.compute(
        pred.as_slice().unwrap(),
        target.as_slice().unwrap(),
        pred.len() / cols,
        cols,
        Some(grad.as_slice_mut().unwrap()),
        1.0,
        modelc::Activation::Linear,
    );
    (value, grad)
}

fn check_grads<N: Network>(grads: &modelc::ops::Gradients, fx: &Fixture) {
    for spec in N::PARAMS.iter().filter(|s| s.trainable) {
        let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
        assert_close(&format!("gradient of {}", spec.name), &got, get(fx, &format!("grad/{}", spec.name)).as_slice().unwrap(), 1e-6, 1e-4);
    }
}

fn check_adam3<N: Network>(model: &N, fx: &Fixture) {
    for spec in N::PARAMS {
        let got: Vec<f32> = modelc::ops::param(model, spec.name).unwrap().iter().copied().collect();
        assert_close(
            &format!("{} after 3 Adam steps", spec.name),
            &got,
            get(fx, &format!("adam3/{}", spec.name)).as_slice().unwrap(),
            1e-5,
            1e-4,
        );
    }
}

#[test]
fn causal_self_attention_matches_keras() {
    let fx = fixture("attention_self_causal");
    let mut model = SelfCausal::new(0);
    set_params(&mut model, &fx);
    let inputs = SelfCausalInputs { x: view(&fx, "input/x") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&SelfCausalOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<SelfCausal>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), SelfCausalLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &SelfCausalTargets { y: view(&fx, "target/y") }).unwrap();
    }
    check_adam3(&model, &fx);
}

#[test]
fn masked_cross_attention_matches_keras() {
    let fx = fixture("attention_cross_masked");
    let mut model = CrossMasked::new(0);
    set_params(&mut model, &fx);
    let inputs = CrossMaskedInputs { q: view(&fx, "input/q"), v: view(&fx, "input/v"), m: view(&fx, "input/m") };
    let out = model.predict(&inputs).unwrap();
    assert_close("y", out.y.as_slice().unwrap(), get(&fx, "output/y").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::MeanSquaredError, &out.y.into_dyn(), get(&fx, "target/y"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&CrossMaskedOutputs { y: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<CrossMasked>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), CrossMaskedLosses { y: Loss::MeanSquaredError }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &CrossMaskedTargets { y: view(&fx, "target/y") }).unwrap();
    }
    check_adam3(&model, &fx);
}

#[test]
fn encoder_block_matches_keras() {
    let fx = fixture("attention_encoder");
    let mut model = Encoder::new(0);
    set_params(&mut model, &fx);
    let ids = get(&fx, "input/tokens").mapv(|v| v as i32).into_dimensionality().unwrap();
    let inputs = EncoderInputs { tokens: ids.view() };
    let out = model.predict(&inputs).unwrap();
    assert_close("probs", out.probs.as_slice().unwrap(), get(&fx, "output/probs").as_slice().unwrap(), 1e-5, 0.0);
    let out = model.forward(&inputs, true).unwrap();
    let (l, d) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), get(&fx, "target/probs"));
    assert_close("loss", &[l as f32], get(&fx, "loss").as_slice().unwrap(), 1e-5, 1e-5);
    let grads = model.backward(&EncoderOutputs { probs: d.into_dimensionality().unwrap() }).unwrap();
    check_grads::<Encoder>(&grads, &fx);
    set_params(&mut model, &fx);
    let mut trainer = model.compile(Adam::new(1e-2), EncoderLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    for _ in 0..3 {
        trainer.train_step(&inputs, &EncoderTargets { probs: view(&fx, "target/probs") }).unwrap();
    }
    check_adam3(&model, &fx);
}
