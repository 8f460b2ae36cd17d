//! BatchNormalization, LayerNormalization, Softmax(axis) and Embedding through the whole pipeline:
//! gradients against finite differences (training and inference mode), Keras' training/inference and
//! frozen-layer semantics, the moving statistics, training, and token ids out of range as errors.
//! Forward values against naive references are in the kernels' unit tests; against Keras in
//! `keras_parity.rs`.

use modelc::gradcheck::{check_gradients, check_gradients_training};
use modelc::init::Rng;
use modelc::ndarray::{Array2, Array3};
use modelc::prelude::*;

model! {
    /// Every normalization, each after a layer with weights so that its input gradient is checked too.
    struct Norms {
        input x: [3, 5];
        let h = Dense(6, activation = tanh)(x);
        let h = BatchNormalization(momentum = 0.8)(h);
        let h = Dense(4)(h);
        let h = BatchNormalization(axis = 1, center = false)(h);
        let h = Dense(4)(h);
        let h = LayerNormalization()(h);
        let h = Dense(4)(h);
        let h = LayerNormalization(axis = (1, 2), scale = false)(h);
        let h = Dense(4)(h);
        let h = Softmax(axis = 1)(h);
        output y = Dense(2)(Flatten()(h));
    }
}

fn batch(rows: usize, seed: u64) -> Array3<f32> {
    let mut rng = Rng::new(seed);
    Array3::from_shape_fn((rows, 3, 5), |_| rng.uniform(-1.5, 1.5))
}

/// Every parameter element but the moving statistics checked, none skipped, all agreeing.
fn assert_passed<N: modelc::network::Network>(report: &modelc::gradcheck::GradCheck) {
    let weights: usize = N::PARAMS.iter().filter(|p| !p.statistic).map(|p| p.len()).sum();
    assert_eq!(report.checked, weights);
    assert_eq!(report.skipped, 0, "smooth layers have no kinks");
    assert!(report.passed(), "{} of {} disagree: {:?}", report.failures.len(), report.checked, &report.failures);
}

#[test]
fn normalization_gradients_match_finite_differences_in_training_and_inference() {
    let mut model = Norms::new(1);
    let x = batch(6, 2);
    let inputs = NormsInputs { x: x.view() };
    // Moving statistics away from their initial 0 and 1, so inference mode is not the identity.
    for _ in 0..3 {
        model.forward(&inputs, true).unwrap();
    }
    let report = check_gradients_training(&mut model, &inputs, 1e-2, 1e-3, 2e-2, 3).unwrap();
    assert_passed::<Norms>(&report);
    let report = check_gradients(&mut model, &inputs, 1e-2, 1e-3, 2e-2, 4).unwrap();
    assert_passed::<Norms>(&report);
}

model! {
    struct Bn {
        input x: [2];
        output y = BatchNormalization(momentum = 0.5, epsilon = 0.0001)(x);
    }
}

model! {
    struct FrozenBn {
        input x: [2];
        output y = BatchNormalization(momentum = 0.5, trainable = false)(x);
    }
}

#[test]
fn batch_norm_uses_batch_statistics_in_training_and_moves_its_moving_statistics() {
    // Column 0 has mean 2 and variance 2/3; column 1 mean -1 and variance 8/3.
    let x = Array2::from_shape_vec((3, 2), vec![1.0, -3.0, 2.0, -1.0, 3.0, 1.0]).unwrap();
    let inputs = BnInputs { x: x.view() };
    let mut model = Bn::new(0);
    assert_eq!(model.param("batch_normalization/moving_mean").unwrap().as_slice().unwrap(), &[0.0, 0.0]);
    assert_eq!(model.param("batch_normalization/moving_variance").unwrap().as_slice().unwrap(), &[1.0, 1.0]);
    let y = model.forward(&inputs, true).unwrap().y;
    let sd = (2.0f32 / 3.0 + 1e-4).sqrt();
    assert!((y[[0, 0]] + 1.0 / sd).abs() < 1e-5 && (y[[2, 0]] - 1.0 / sd).abs() < 1e-5, "{y}");
    assert!(y.column(1).sum().abs() < 1e-5, "each column is centred: {y}");
    // moving = 0.5 · moving + 0.5 · batch, the variance biased (÷ n).
    let mean = model.param("batch_normalization/moving_mean").unwrap().to_owned();
    let var = model.param("batch_normalization/moving_variance").unwrap().to_owned();
    assert!((mean[0] - 1.0).abs() < 1e-6 && (mean[1] + 0.5).abs() < 1e-6, "{mean}");
    assert!((var[0] - (0.5 + 1.0 / 3.0)).abs() < 1e-6 && (var[1] - (0.5 + 4.0 / 3.0)).abs() < 1e-6, "{var}");
    // Inference normalizes with the moving statistics and moves nothing.
    let p = model.predict(&inputs).unwrap().y;
    assert!((p[[0, 0]] - (1.0 - 1.0) / (var[0] + 1e-4).sqrt()).abs() < 1e-6, "{p}");
    assert!((p[[0, 1]] - (-3.0 + 0.5) / (var[1] + 1e-4).sqrt()).abs() < 1e-5, "{p}");
    assert_eq!(model.param("batch_normalization/moving_mean").unwrap(), mean.view());
    // The statistics are saved and loaded with the weights, as non-trainable parameters.
    assert!(Bn::SUMMARY.contains("Non-trainable params: 4"), "{}", Bn::SUMMARY);

    // A frozen BatchNormalization runs in inference mode even in training, as in Keras 3.
    let mut frozen = FrozenBn::new(0);
    let t = frozen.forward(&FrozenBnInputs { x: x.view() }, true).unwrap().y;
    let i = frozen.predict(&FrozenBnInputs { x: x.view() }).unwrap().y;
    assert_eq!(t, i);
    assert_eq!(frozen.param("batch_normalization/moving_mean").unwrap().as_slice().unwrap(), &[0.0, 0.0]);
}

#[test]
fn a_batch_normalized_model_trains_and_evaluates_with_its_moving_statistics() {
    let mut rng = Rng::new(7);
    // Badly scaled inputs (feature scales 0.01 to 100) with a linear rule.
    let x = Array3::from_shape_fn((256, 3, 5), |(_, _, j)| rng.uniform(-1.0, 1.0) * 10f32.powi(j as i32 - 2));
    let y = Array2::from_shape_fn((256, 2), |(i, k)| x[[i, k, 0]] * 100.0 - x[[i, 2, 4]] / 100.0 + k as f32);
    let mut model = Norms::new(3);
    let mut trainer = model.compile(Adam::new(1e-2), NormsLosses { y: Loss::MeanSquaredError }, &[]);
    let (inputs, targets) = (NormsInputs { x: x.view() }, NormsTargets { y: y.view() });
    let before = trainer.evaluate(&inputs, &targets, 64).unwrap()["loss"];
    let history = trainer.fit(&inputs, &targets, &Fit { epochs: 15, verbose: false, ..Fit::default() }).unwrap();
    let after = trainer.evaluate(&inputs, &targets, 64).unwrap()["loss"];
    let loss = history.get("loss").unwrap();
    assert!(loss[loss.len() - 1] < loss[0] * 0.5, "{loss:?}");
    assert!(after < before * 0.5, "inference with the moving statistics also improved: {before} -> {after}");
}

model! {
    /// Token ids of two inputs through two embedding tables, one input read by both.
    struct Tokens {
        input words: [5] as i32;
        input tags: [5] as i32;
        let w = Embedding(10, 3)(words);
        let t = Embedding(4, 3)(tags);
        let u = Embedding(6, 3)(words);
        let h = Add()([w, t, u]);
        output y = Dense(2)(Flatten()(h));
    }
}

fn token_batch(rows: usize, limit: i32, seed: u64) -> Array2<i32> {
    let mut rng = Rng::new(seed);
    Array2::from_shape_fn((rows, 5), |_| (rng.uniform(0.0, limit as f32) as i32).min(limit - 1))
}

#[test]
fn embeddings_gather_their_rows_and_their_gradients_match_finite_differences() {
    let mut model = Tokens::new(5);
    let table = model.param("embedding/embeddings").unwrap().to_owned();
    assert_eq!(table.shape(), &[10, 3]);
    assert!(table.iter().all(|v| v.abs() <= 0.05), "Keras' uniform(-0.05, 0.05)");
    let (words, tags) = (token_batch(4, 6, 1), token_batch(4, 4, 2));
    let inputs = TokensInputs { words: words.view(), tags: tags.view() };
    let report = check_gradients(&mut model, &inputs, 1e-2, 1e-4, 1e-2, 6).unwrap();
    assert_passed::<Tokens>(&report);
}

model! {
    struct Lookup {
        input ids: [3] as i32;
        output y = Embedding(4, 2)(ids);
    }
}

#[test]
fn an_embedding_outputs_the_table_row_of_each_id() {
    let mut model = Lookup::new(1);
    let ids = Array2::from_shape_vec((2, 3), vec![3, 0, 3, 1, 2, 0]).unwrap();
    let y = model.predict(&LookupInputs { ids: ids.view() }).unwrap().y;
    assert_eq!(y.shape(), &[2, 3, 2]);
    let table = model.param("embedding/embeddings").unwrap().into_dimensionality::<modelc::ndarray::Ix2>().unwrap().to_owned();
    for ((b, t), &id) in ids.indexed_iter() {
        assert_eq!(y.slice(modelc::ndarray::s![b, t, ..]), table.row(id as usize), "sample {b}, token {t}");
    }
}

#[test]
fn token_ids_outside_an_embedding_table_are_errors_naming_the_input_and_layer() {
    let mut model = Tokens::new(5);
    let tags = token_batch(3, 4, 2);
    // `words` feeds tables of 10 and 6 rows: 6 is the limit.
    let mut words = token_batch(3, 6, 1);
    words[[2, 3]] = 6;
    let err = model.predict(&TokensInputs { words: words.view(), tags: tags.view() }).unwrap_err().to_string();
    assert_eq!(err, "input `words` holds token id 6 (sample 2, position 3), outside 0..6: Embedding `embedding_2` has input_dim 6");
    words[[2, 3]] = -1;
    let err = model.predict(&TokensInputs { words: words.view(), tags: tags.view() }).unwrap_err().to_string();
    assert!(err.contains("token id -1 (sample 2, position 3)"), "{err}");
    // The same check guards training batches gathered from a dataset.
    let y = Array2::zeros((3, 2));
    let mut trainer = model.compile(Sgd::new(0.1), TokensLosses { y: Loss::MeanSquaredError }, &[]);
    let fit = Fit { epochs: 1, batch_size: 2, verbose: false, shuffle: false, ..Fit::default() };
    let err = trainer.fit(&TokensInputs { words: words.view(), tags: tags.view() }, &TokensTargets { y: y.view() }, &fit).unwrap_err();
    assert!(err.to_string().contains("holds token id -1 (sample 2, position 3)"), "{err}");
    // Nothing ran: the weights are unchanged.
    assert_eq!(model.params(), Tokens::new(5).params());
}

#[path = "../examples/token_topics/model.rs"]
mod token_topics;

#[test]
fn the_token_topics_example_learns_its_rule() {
    use token_topics::*;
    let (tokens, y) = make_data(600, 1);
    let (test_tokens, test_y) = make_data(200, 2);
    let mut model = TokenTopics::new(42);
    let mut trainer = model.compile(Adam::new(3e-3), TokenTopicsLosses { topic: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let fit = Fit { epochs: 4, verbose: false, ..Fit::default() };
    trainer.fit(&TokenTopicsInputs { tokens: tokens.view() }, &TokenTopicsTargets { topic: y.view() }, &fit).unwrap();
    let logs =
        trainer.evaluate(&TokenTopicsInputs { tokens: test_tokens.view() }, &TokenTopicsTargets { topic: test_y.view() }, 100).unwrap();
    assert!(logs["accuracy"] > 0.9, "{logs:?}");
}

model! {
    struct SoftmaxLayer {
        input x: [4];
        output probs = Softmax()(Dense(3)(x));
    }
}

model! {
    struct SoftmaxActivation {
        input x: [4];
        output probs = Dense(3, activation = softmax)(x);
    }
}

#[test]
fn a_softmax_layer_output_trains_like_a_softmax_activation_fused_with_cross_entropy() {
    let mut rng = Rng::new(11);
    let x = Array2::from_shape_fn((16, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((16, 3), |(i, k)| f32::from(u8::from(i % 3 == k)));
    let mut a = SoftmaxLayer::new(2);
    let mut b = SoftmaxActivation::new(2);
    assert_eq!(a.params(), b.params(), "same layout, same seed");
    let losses_a: Vec<f64> = {
        let mut t = a.compile(Adam::new(1e-2), SoftmaxLayerLosses { probs: Loss::CategoricalCrossentropy }, &[]);
        (0..5).map(|_| t.train_step(&SoftmaxLayerInputs { x: x.view() }, &SoftmaxLayerTargets { probs: y.view() }).unwrap()).collect()
    };
    let losses_b: Vec<f64> = {
        let mut t = b.compile(Adam::new(1e-2), SoftmaxActivationLosses { probs: Loss::CategoricalCrossentropy }, &[]);
        (0..5)
            .map(|_| t.train_step(&SoftmaxActivationInputs { x: x.view() }, &SoftmaxActivationTargets { probs: y.view() }).unwrap())
            .collect()
    };
    for (p, q) in losses_a.iter().zip(&losses_b) {
        assert!((p - q).abs() < 1e-6, "{losses_a:?} vs {losses_b:?}");
    }
    assert!(losses_a[4] < losses_a[0]);
    for (p, q) in a.params().iter().zip(b.params()) {
        assert!((p - q).abs() < 1e-6);
    }
}
