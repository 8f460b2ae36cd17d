//! Keras' per-weight arguments in the DSL: initializers (with seeds), regularizers (kernel, bias, gamma
//! and activity) and constraints, against Keras 3 itself from `tests/fixtures/regularizers.safetensors`,
//! written by `scripts/keras_regularizers.py` (JAX backend).
//!
//! Tolerances: the loss within 1e-5 relative, gradients
//! within 2e-5 absolute + 1e-4 relative, weights after three Adam steps within 2e-5 absolute. The
//! initializers draw other random numbers than Keras: their statistics are compared instead.

use modelc::init::{fill, Rng};
use modelc::network::Network;
use modelc::prelude::*;

use crate::parity;
use modelc::spec::{Distribution, FanMode, Init};
use parity::*;

use crate::counting_alloc;
use counting_alloc::allocations_in;

model! {
    /// The twin of `reg_model` in scripts/keras_regularizers.py.
    struct Reg {
        input x: [6, 3];
        let h = Conv1D(4, 3, activation = relu, kernel_initializer = he_normal(seed = 3), kernel_regularizer = l2(0.01),
                       kernel_constraint = unit_norm(axis = (0, 1)), bias_initializer = constant(0.1), bias_regularizer = l1(0.02))(x);
        let f = Flatten()(h);
        let n = BatchNormalization(gamma_regularizer = l2(0.05), beta_initializer = constant(value = 0.05), beta_constraint = non_neg)(f);
        let d = Dense(5, activation = tanh, kernel_initializer = glorot_normal(seed = 5), kernel_regularizer = l1_l2(l1 = 0.01, l2 = 0.02),
                      kernel_constraint = max_norm(max_value = 0.5), activity_regularizer = l1(0.03), dtype = "float32")(n);
        output y = Dense(2, kernel_initializer = orthogonal(seed = 7), bias_initializer = random_uniform(0.1, 0.3, seed = 9),
                         bias_regularizer = l2(0.1), bias_constraint = min_max_norm(min_value = 0.1, max_value = 0.3, rate = 0.7),
                         activity_regularizer = l2(0.05))(d);
    }
}

model! {
    /// The same layers without any regularizer or constraint.
    struct Plain {
        input x: [6, 3];
        let h = Conv1D(4, 3, activation = relu)(x);
        let n = BatchNormalization()(Flatten()(h));
        output y = Dense(2)(Dense(5, activation = tanh)(n));
    }
}

/// `tests/fixtures/regularizers.safetensors`.
fn fixture() -> Fixture {
    parity::fixture("regularizers")
}

/// A `Reg` holding Keras' initial weights.
fn keras_model(fx: &Fixture) -> Reg {
    let mut model = Reg::new(0);
    for spec in Reg::PARAMS {
        modelc::ops::set_param(&mut model, spec.name, get(fx, &format!("param/{}", spec.name)).view()).unwrap();
    }
    model
}

#[test]
fn only_the_weights_and_outputs_given_a_regularizer_or_constraint_are_listed() {
    let names =
        |offsets: Vec<usize>| -> Vec<&str> { offsets.iter().map(|&o| Reg::PARAMS.iter().find(|p| p.offset == o).unwrap().name).collect() };
    let penalized = names(Reg::WEIGHT_PENALTIES.iter().map(|p| p.offset).collect());
    assert_eq!(penalized, ["conv1d/kernel", "conv1d/bias", "batch_normalization/gamma", "dense/kernel", "dense_1/bias"]);
    let constrained = names(Reg::CONSTRAINTS.iter().map(|c| c.offset).collect());
    assert_eq!(constrained, ["conv1d/kernel", "batch_normalization/beta", "dense/kernel", "dense_1/bias"]);
    // Nothing is emitted for a model without them: the training step pays nothing.
    assert!(Plain::WEIGHT_PENALTIES.is_empty() && Plain::CONSTRAINTS.is_empty());
}

#[test]
fn loss_with_every_regularizer_and_its_gradients_match_keras() {
    let fx = fixture();
    let mut model = keras_model(&fx);
    let inputs = RegInputs { x: view(&fx, "input/x") };
    let targets = RegTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(0.05), RegLosses { y: Loss::MeanSquaredError }, &[]);
    let (loss, grads) = trainer.compute_gradients(&inputs, &targets).unwrap();
    let want = f64::from(get(&fx, "loss")[0]);
    let data = f64::from(get(&fx, "data_loss")[0]);
    assert!(want - data > 0.5, "the penalties must weigh in the check: {want} vs {data}");
    assert!((loss - want).abs() <= 1e-5 * want, "loss: modelc {loss} vs Keras {want}");
    for spec in Reg::PARAMS.iter().filter(|p| p.trainable) {
        let g = &grads[spec.range()];
        assert_close(&format!("d loss / d {}", spec.name), g, get(&fx, &format!("grad/{}", spec.name)).as_slice().unwrap(), 2e-5, 1e-4);
    }
}

#[test]
fn evaluation_loss_with_every_regularizer_matches_keras() {
    let fx = fixture();
    let mut model = keras_model(&fx);
    let inputs = RegInputs { x: view(&fx, "input/x") };
    let targets = RegTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(0.05), RegLosses { y: Loss::MeanSquaredError }, &[]);
    let logs = trainer.evaluate(&inputs, &targets, 4).unwrap();
    let loss = logs["loss"];
    let want = f64::from(get(&fx, "eval_loss")[0]);
    assert!((loss - want).abs() <= 1e-5 * want, "evaluation loss: modelc {loss} vs Keras {want}");
}

#[test]
fn three_adam_steps_with_constraints_match_keras() {
    let fx = fixture();
    let mut model = keras_model(&fx);
    let inputs = RegInputs { x: view(&fx, "input/x") };
    let targets = RegTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(0.05), RegLosses { y: Loss::MeanSquaredError }, &[]);
    for k in 1..=3 {
        let loss = trainer.train_step(&inputs, &targets).unwrap();
        let want = f64::from(get(&fx, &format!("adam_loss{k}"))[0]);
        assert!((loss - want).abs() <= 1e-5 * want, "loss of step {k}: modelc {loss} vs Keras {want}");
        for spec in Reg::PARAMS {
            let got = modelc::ops::param(trainer.model(), spec.name).unwrap();
            let want = get(&fx, &format!("adam{k}/{}", spec.name));
            assert_close(
                &format!("{} after step {k}", spec.name),
                &got.iter().copied().collect::<Vec<_>>(),
                want.as_slice().unwrap(),
                2e-5,
                0.0,
            );
        }
    }
    // The constraints hold: unit norm of each conv filter, beta non-negative, dense kernel columns within 0.5.
    let model = trainer.model();
    let k = modelc::ops::param(model, "conv1d/kernel").unwrap();
    for f in 0..4 {
        let n: f32 = k.iter().skip(f).step_by(4).map(|v| v * v).sum::<f32>().sqrt();
        assert!((n - 1.0).abs() < 1e-5, "filter {f} norm {n}");
    }
    assert!(modelc::ops::param(model, "batch_normalization/beta").unwrap().iter().all(|&b| b >= 0.0));
    let d = modelc::ops::param(model, "dense/kernel").unwrap();
    for c in 0..5 {
        let n: f32 = d.iter().skip(c).step_by(5).map(|v| v * v).sum::<f32>().sqrt();
        assert!(n <= 0.5 + 1e-5, "column {c} norm {n}");
    }
}

#[test]
fn seeded_initializers_do_not_depend_on_the_model_seed() {
    // Every weight of `Reg` has a seeded or constant initializer, or is a statistic.
    let (a, b) = (Reg::new(1), Reg::new(2));
    assert_eq!(a.state().params, b.state().params);
    let (c, d) = (Plain::new(1), Plain::new(2));
    assert_ne!(c.state().params, d.state().params);
    assert_eq!(Plain::new(1).state().params, c.state().params, "construction with a seed is reproducible");
    let bias = modelc::ops::param(&a, "dense_1/bias").unwrap();
    assert!(bias.iter().all(|&v| (0.1..0.3).contains(&v)), "{bias:?}");
    assert!(modelc::ops::param(&a, "conv1d/bias").unwrap().iter().all(|&v| v == 0.1));
}

fn stats(v: &[f32]) -> (f64, f64, f32, f32) {
    let n = v.len() as f64;
    let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
    let std = (v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n).sqrt();
    let min = v.iter().copied().fold(f32::INFINITY, f32::min);
    let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    (mean, std, min, max)
}

/// The runtime initializer of each fixture name, configured as `INITIALIZERS` in the script, for a
/// [100, 100] weight (fans 100 and 100).
fn init(name: &str) -> Init {
    let vs = |scale, mode, distribution| Init::VarianceScaling { scale, mode, distribution, fan_in: 100, fan_out: 100, seed: None };
    match name {
        "random_normal" => Init::RandomNormal { mean: 0.5, stddev: 2.0, seed: None },
        "random_uniform" => Init::RandomUniform { minval: -1.0, maxval: 3.0, seed: None },
        "truncated_normal" => Init::TruncatedNormal { mean: 0.0, stddev: 1.5, seed: None },
        "glorot_normal" => vs(1.0, FanMode::FanAvg, Distribution::TruncatedNormal),
        "glorot_uniform" => Init::GlorotUniform { fan_in: 100, fan_out: 100 },
        "he_normal" => vs(2.0, FanMode::FanIn, Distribution::TruncatedNormal),
        "he_uniform" => vs(2.0, FanMode::FanIn, Distribution::Uniform),
        "lecun_normal" => vs(1.0, FanMode::FanIn, Distribution::TruncatedNormal),
        "lecun_uniform" => vs(1.0, FanMode::FanIn, Distribution::Uniform),
        "variance_scaling" => vs(3.0, FanMode::FanOut, Distribution::UntruncatedNormal),
        "orthogonal" => Init::Orthogonal { gain: 2.0, rows: 100, cols: 100, seed: None },
        "identity" => Init::Identity { gain: 3.0, rows: 100, cols: 100 },
        "constant" => Init::Constant { value: 0.25 },
        other => panic!("fixture initializer `{other}` has no twin here: add it to `init`"),
    }
}

#[test]
fn every_initializer_draws_from_keras_distribution() {
    let fx = fixture();
    let names: Vec<&str> = fx.keys().filter_map(|k| k.strip_prefix("init/")).collect();
    assert_eq!(names.len(), 13, "{names:?}");
    for name in names {
        let want = get(&fx, &format!("init/{name}")).as_slice().unwrap().to_vec();
        let mut got = vec![f32::NAN; want.len()];
        fill(init(name), &mut Rng::new(4), &mut got);
        let (gm, gs, gmin, gmax) = stats(&got);
        let (wm, ws, wmin, wmax) = stats(&want);
        // 10 000 samples: the mean within 4 standard errors, the spread within 3 %.
        let se = ws / 100.0;
        assert!((gm - wm).abs() <= 4.0 * se + 1e-6, "{name}: mean {gm} vs Keras {wm}");
        assert!((gs - ws).abs() <= 0.03 * ws + 1e-6, "{name}: std {gs} vs Keras {ws}");
        // Bounded distributions (uniform, truncated, constant, identity) reach the same bounds.
        let unbounded = ["random_normal", "variance_scaling", "orthogonal"];
        if !unbounded.contains(&name) {
            let width = wmin.abs().max(wmax.abs());
            assert!((gmin - wmin).abs() <= 0.02 * width + 1e-6, "{name}: min {gmin} vs Keras {wmin}");
            assert!((gmax - wmax).abs() <= 0.02 * width + 1e-6, "{name}: max {gmax} vs Keras {wmax}");
        }
    }
}

#[test]
fn orthogonal_gives_orthonormal_rows_or_columns_times_gain() {
    for (rows, cols) in [(6, 4), (4, 6), (5, 5)] {
        let mut w = vec![0.0; rows * cols];
        fill(Init::Orthogonal { gain: 2.0, rows, cols, seed: None }, &mut Rng::new(1), &mut w);
        // The smaller Gram matrix is 4 I.
        let (outer, inner, stride_o, stride_i) = if rows >= cols { (cols, rows, 1, cols) } else { (rows, cols, cols, 1) };
        for a in 0..outer {
            for b in 0..outer {
                let dot: f32 = (0..inner).map(|k| w[a * stride_o + k * stride_i] * w[b * stride_o + k * stride_i]).sum();
                let want = if a == b { 4.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-4, "{rows}x{cols}: <{a}, {b}> = {dot}");
            }
        }
    }
}

#[test]
fn steady_state_training_with_regularizers_and_constraints_allocates_nothing() {
    let fx = fixture();
    let mut model = keras_model(&fx);
    let inputs = RegInputs { x: view(&fx, "input/x") };
    let targets = RegTargets { y: view(&fx, "target/y") };
    let mut trainer = model.compile(Adam::new(0.01), RegLosses { y: Loss::MeanSquaredError }, &[]);
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..10 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 steady-state training steps");
}

model! {
    /// The weight arguments of the recurrent and attention layers: per-weight initializers, regularizers
    /// and constraints, as Keras names them.
    struct SeqWeights {
        input x: [5, 3];
        let h = LSTM(4, return_sequences = true, recurrent_initializer = zeros, kernel_regularizer = l2(0.01),
                     bias_constraint = non_neg, unit_forget_bias = false)(x);
        let a = MultiHeadAttention(2, 3, kernel_initializer = ones, bias_regularizer = l1(0.5))(h, h);
        output y = Dense(1)(GRU(2, recurrent_constraint = max_norm(max_value = 1.0))(a));
    }
}

#[test]
fn recurrent_and_attention_layers_take_the_weight_arguments() {
    let model = SeqWeights::new(2);
    assert!(model.param("lstm/lstm_cell/recurrent_kernel").unwrap().iter().all(|&v| v == 0.0), "recurrent_initializer = zeros");
    assert!(model.param("multi_head_attention/query/kernel").unwrap().iter().all(|&v| v == 1.0), "kernel_initializer = ones");
    let offset = |name: &str| SeqWeights::PARAMS.iter().find(|p| p.name == name).unwrap().offset;
    let penalized: Vec<usize> = SeqWeights::WEIGHT_PENALTIES.iter().map(|p| p.offset).collect();
    let want: Vec<usize> =
        ["lstm/lstm_cell/kernel", "multi_head_attention/query/bias", "multi_head_attention/key/bias"].iter().map(|n| offset(n)).collect();
    assert!(want.iter().all(|o| penalized.contains(o)), "penalized offsets {penalized:?} lack some of {want:?}");
    assert_eq!(penalized.len(), 5, "the LSTM kernel and the attention's four biases");
    let constrained: Vec<usize> = SeqWeights::CONSTRAINTS.iter().map(|c| c.offset).collect();
    assert_eq!(constrained, [offset("lstm/lstm_cell/bias"), offset("gru/gru_cell/recurrent_kernel")]);
}
