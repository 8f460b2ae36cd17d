//! The im2col baselines of `benches/baseline/vision.rs` (the `handwritten` cells of M6 and M7 in
//! benches/models.rs) compute what modelc computes for the same benchmark model
//! (`benches/bench_models`): loaded with modelc's initial weights, the same outputs, the same
//! gradients of the training loss, and the same weights (moving statistics included) after one Adam
//! step. The same for the recurrent baselines of `benches/baseline/recurrent.rs` (R1–R3 of issue #17,
//! the `handwritten` cells of benches/recurrent.rs). A baseline that computes something else is not a
//! baseline, so its figures would mean nothing.

use modelc::init::Rng;
use modelc::ndarray::{Array2, Array4, ArrayD};
use modelc::network::Network;
use modelc::prelude::*;

use crate::parity::loss_and_grad;

#[allow(dead_code)]
#[path = "../benches/baseline/mod.rs"]
mod baseline;
#[allow(dead_code, unused_imports)]
#[path = "../benches/bench_models/mod.rs"]
mod bench_models;

/// `|got - want| <= atol · max |want| + rtol · |want|` element by element: the absolute part scaled
/// by the tensor's largest value, as the gradients of a loss averaged over 8192 pixels are small.
fn assert_near(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: {} values vs {}", got.len(), want.len());
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= atol * scale + rtol * w.abs(), "{what}[{i}]: baseline {g} vs modelc {w}");
    }
}

/// Every parameter of `model`, by name.
fn params<N: Network>(model: &N) -> Vec<(&'static str, ArrayD<f32>)> {
    N::PARAMS.iter().map(|s| (s.name, modelc::ops::param(model, s.name).unwrap().to_owned())).collect()
}

/// Sets every parameter of `model` from `saved`.
fn restore<N: Network>(model: &mut N, saved: &[(&'static str, ArrayD<f32>)]) {
    for (name, value) in saved {
        modelc::ops::set_param(model, name, value.view()).unwrap();
    }
}

/// Loads modelc's parameters into the baseline's (`params_mut` of a baseline), checking that the two
/// have the same names and sizes.
fn load(hand: Vec<(String, &mut [f32])>, saved: &[(&'static str, ArrayD<f32>)]) {
    assert_eq!(
        hand.len(),
        saved.len(),
        "baseline weights {:?} vs modelc's {:?}",
        hand.iter().map(|h| &h.0).collect::<Vec<_>>(),
        saved.iter().map(|s| s.0).collect::<Vec<_>>()
    );
    for (name, slot) in hand {
        let value = &saved
            .iter()
            .find(|s| s.0 == name)
            .unwrap_or_else(|| panic!("modelc has no weight `{name}`; it has {:?}", saved.iter().map(|s| s.0).collect::<Vec<_>>()))
            .1;
        slot.copy_from_slice(value.as_slice().unwrap());
    }
}

/// The baseline's weights after its step against modelc's after its own.
fn compare_weights(hand: Vec<(String, &mut [f32])>, after: &[(&'static str, ArrayD<f32>)]) {
    for (name, got) in hand {
        let want = &after.iter().find(|s| s.0 == name).unwrap().1;
        // Absolute: a step is lr = 1e-3 per weight (less where |g| is near Adam's ε), so a gradient of
        // the wrong sign or size shows; a bias starts at 0, so no relative scale would do.
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs(), "{name} after one Adam step [{i}]: baseline {g} vs modelc {w}");
        }
    }
}

fn images(batch: usize, side: usize, seed: u64) -> Array4<f32> {
    let mut rng = Rng::new(seed);
    Array4::from_shape_fn((batch, side, side, 3), |_| rng.uniform(0.0, 1.0))
}

#[test]
fn the_unet_baseline_computes_what_modelc_computes() {
    let batch = 2;
    let image = images(batch, 64, 1);
    let mut rng = Rng::new(2);
    let mask = Array4::from_shape_fn((batch, 64, 64, 1), |_| f32::from(u8::from(rng.uniform(0.0, 1.0) > 0.5)));
    let mut model = bench_models::UNet::new(7);
    let initial = params(&model);
    let mut hand = baseline::UNet::new(batch);
    load(hand.params_mut(), &initial);

    let inputs = bench_models::UNetInputs { image: image.view() };
    let out = model.predict(&inputs).unwrap();
    assert_near("mask", hand.forward(image.as_slice().unwrap()).as_slice().unwrap(), out.mask.as_slice().unwrap(), 1e-5, 1e-4);

    let out = model.forward(&inputs, true).unwrap();
    let (_, d) = loss_and_grad(Loss::BinaryCrossentropy, &out.mask.into_dyn(), &mask.clone().into_dyn());
    let grads = model.backward(&bench_models::UNetOutputs { mask: d.into_dimensionality().unwrap() }).unwrap();
    hand.train_step(image.as_slice().unwrap(), mask.as_slice().unwrap());
    for (name, got) in hand.grads() {
        let want: Vec<f32> = grads.get(&name).unwrap().iter().copied().collect();
        assert_near(&format!("gradient of {name}"), got, &want, 1e-5, 1e-4);
    }

    restore(&mut model, &initial);
    let targets = bench_models::UNetTargets { mask: mask.view() };
    let mut trainer = model.compile(Adam::default(), bench_models::UNetLosses { mask: Loss::BinaryCrossentropy }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    drop(trainer);
    compare_weights(hand.params_mut(), &params(&model));
}

#[test]
fn the_mobilenet_baseline_computes_what_modelc_computes() {
    let batch = 4;
    let image = images(batch, 32, 1);
    // One-hot targets (the baseline's fused softmax + cross-entropy gradient assumes rows summing to 1).
    let y = Array2::from_shape_fn((batch, 10), |(r, c)| f32::from(u8::from(c == (r * 7 + 3) % 10)));
    let mut model = bench_models::MobileNet::new(7);
    let initial = params(&model);
    let mut hand = baseline::MobileNet::new(batch);
    load(hand.params_mut(), &initial);

    let inputs = bench_models::MobileNetInputs { image: image.view() };
    let out = model.predict(&inputs).unwrap();
    let got = hand.forward(image.as_slice().unwrap(), false);
    assert_near("probs", got.as_slice().unwrap(), out.probs.as_slice().unwrap(), 1e-5, 1e-4);

    let out = model.forward(&inputs, true).unwrap();
    let (_, d) = loss_and_grad(Loss::CategoricalCrossentropy, &out.probs.into_dyn(), &y.clone().into_dyn());
    let grads = model.backward(&bench_models::MobileNetOutputs { probs: d.into_dimensionality().unwrap() }).unwrap();
    hand.train_step(image.as_slice().unwrap(), y.view());
    for (name, got) in hand.grads() {
        let want: Vec<f32> = grads.get(&name).unwrap().iter().copied().collect();
        assert_near(&format!("gradient of {name}"), got, &want, 1e-5, 1e-4);
    }

    restore(&mut model, &initial);
    let targets = bench_models::MobileNetTargets { probs: y.view() };
    let mut trainer = model.compile(Adam::default(), bench_models::MobileNetLosses { probs: Loss::CategoricalCrossentropy }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    drop(trainer);
    compare_weights(hand.params_mut(), &params(&model));
}

#[allow(dead_code)]
#[path = "../benches/bench_models/recurrent.rs"]
mod recurrent_models;

fn tokens(batch: usize, seed: u64) -> Array2<i32> {
    let mut rng = Rng::new(seed);
    let vocab = baseline::recurrent::VOCAB;
    Array2::from_shape_fn((batch, baseline::recurrent::STEPS), |_| ((rng.uniform(0.0, 1.0) * vocab as f32) as i32).min(vocab as i32 - 1))
}

/// How far Adam's first step may carry a weight apart when the gradients it starts from differ by what
/// `assert_near(.., atol, rtol)` let through: the step is lr·g/(|g| + ε′), ε′ = ε/√(1 − β₂) = 3.2e-6,
/// whose slope lr·ε′/(|g| + ε′)² is 316·lr where g is near zero. A weight whose gradient is a sum that
/// nearly cancels (a dense kernel's entry over three rows, 3e-8 here against 4e-8) moves by a tenth
/// of lr or so more or less, while one whose gradient is 1e-3 is allowed no more than 1e-9 over the
/// plain tolerance.
fn adam_slack(want: &[f32], atol: f32, rtol: f32) -> Vec<f32> {
    let (lr, eps) = (1e-3f32, 1e-7 / (1.0f32 - 0.999).sqrt());
    let scale = want.iter().fold(0.0f32, |a, v| a.max(v.abs()));
    want.iter()
        .map(|g| {
            let d = atol * scale + rtol * g.abs();
            let near = (g.abs() - d).max(0.0);
            (lr * d * eps / ((near + eps) * (near + eps))).min(2.0 * lr)
        })
        .collect()
}

/// [`compare_weights`] with each weight's tolerance widened by its [`adam_slack`].
fn compare_steps(hand: Vec<(String, &mut [f32])>, after: &[(&'static str, ArrayD<f32>)], slack: &[(String, Vec<f32>)]) {
    for (name, got) in hand {
        let want = &after.iter().find(|s| s.0 == name).unwrap().1;
        let slack = &slack.iter().find(|s| s.0 == name).unwrap_or_else(|| panic!("no gradient of {name}")).1;
        for (i, ((g, w), e)) in got.iter().zip(want.iter()).zip(slack).enumerate() {
            assert!((g - w).abs() <= 1e-6 + 1e-5 * w.abs() + e, "{name} after one Adam step [{i}]: baseline {g} vs modelc {w}");
        }
    }
}

/// The recurrent baselines of `benches/baseline/recurrent.rs` (the `handwritten` cells of
/// benches/recurrent.rs): loaded with modelc's initial weights, the same probabilities at batch 1
/// (modelc's one-row path) and at batch 3, the same gradients of the loss, the same weights after one
/// Adam step. The gradients are what can tell a wrong backward: Adam's first step moves every weight by
/// about lr · sign(g) whatever g's size.
macro_rules! recurrent_baseline_test {
    ($test:ident, $model:ident, $inputs:ident, $outputs:ident, $targets:ident, $losses:ident, $hand:ident) => {
        #[test]
        fn $test() {
            use recurrent_models::{$inputs, $losses, $model, $outputs, $targets};
            let batch = 3;
            let x = tokens(batch, 1);
            let y = Array2::from_shape_fn((batch, 1), |(r, _)| f32::from(u8::from(r % 2 == 0)));
            let mut model = $model::new(7);
            let initial = params(&model);
            for rows in [1, batch] {
                let x = x.slice(modelc::ndarray::s![..rows, ..]);
                let mut hand = baseline::recurrent::$hand::new(rows);
                load(hand.params_mut(), &initial);
                let mut got = vec![0.0f32; rows];
                hand.forward(x, &mut got);
                let out = model.predict(&$inputs { tokens: x }).unwrap();
                assert_near(&format!("score at batch {rows}"), &got, out.score.as_slice().unwrap(), 1e-5, 1e-4);
            }

            let inputs = $inputs { tokens: x.view() };
            let mut hand = baseline::recurrent::$hand::new(batch);
            load(hand.params_mut(), &initial);
            let out = model.forward(&inputs, true).unwrap();
            let (_, d) = loss_and_grad(Loss::BinaryCrossentropy, &out.score.into_dyn(), &y.clone().into_dyn());
            let grads = model.backward(&$outputs { score: d.into_dimensionality().unwrap() }).unwrap();
            let mut probs = vec![0.0f32; batch];
            hand.train_step(x.view(), y.view(), &mut probs);
            let mut slack = Vec::new();
            for (name, got) in hand.grads() {
                let want: Vec<f32> = grads.get(&name).unwrap().iter().copied().collect();
                assert_near(&format!("gradient of {name}"), got, &want, 1e-5, 1e-4);
                slack.push((name, adam_slack(&want, 1e-5, 1e-4)));
            }

            restore(&mut model, &initial);
            let targets = $targets { score: y.view() };
            let mut trainer = model.compile(Adam::default(), $losses { score: Loss::BinaryCrossentropy }, &[]);
            trainer.train_step(&inputs, &targets).unwrap();
            drop(trainer);
            compare_steps(hand.params_mut(), &params(&model), &slack);
        }
    };
}

recurrent_baseline_test!(
    the_lstm_baseline_computes_what_modelc_computes,
    Sentiment,
    SentimentInputs,
    SentimentOutputs,
    SentimentTargets,
    SentimentLosses,
    LstmModel
);
recurrent_baseline_test!(
    the_gru_baseline_computes_what_modelc_computes,
    SentimentGru,
    SentimentGruInputs,
    SentimentGruOutputs,
    SentimentGruTargets,
    SentimentGruLosses,
    GruModel
);
recurrent_baseline_test!(
    the_bidirectional_lstm_baseline_computes_what_modelc_computes,
    SentimentBi,
    SentimentBiInputs,
    SentimentBiOutputs,
    SentimentBiTargets,
    SentimentBiLosses,
    BiLstmModel
);
