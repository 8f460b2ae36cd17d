//! Keras' `sample_weight` and `class_weight` against Keras 3 itself, from
//! `tests/fixtures/sample_weight.safetensors` written by `scripts/keras_sample_weight.py` (JAX backend):
//! the weighted loss, its gradients, three Adam steps, the weighted metrics and evaluation of a model with
//! two outputs weighted per output (a fused softmax + cross-entropy head and an MSE head), and `fit` with
//! `class_weight` on a sigmoid output. Then the checks Keras makes (and a few more): wrong lengths,
//! negative or non-finite weights, unknown or missing outputs, `class_weight` with several outputs.
//!
//! Tolerances (those of tests/regularizers.rs): losses within 1e-5 relative, gradients within 2e-5
//! absolute + 1e-4 relative, weights after three Adam steps within 2e-5 absolute; logged values within
//! 1e-5 absolute + 1e-5 relative.

use modelc::ndarray::Array2;
use modelc::network::Network;
use modelc::prelude::*;

use crate::parity;
use parity::*;

model! {
    /// The twin of `two_heads` in scripts/keras_sample_weight.py.
    struct TwoHeads {
        input x: [5];
        let h = Dense(8, activation = tanh)(x);
        output y = Dense(3, activation = softmax, name = "y")(h);
        output z = Dense(2, name = "z")(h);
    }
}

model! {
    /// The twin of `binary` in scripts/keras_sample_weight.py.
    struct Binary {
        input x: [4];
        output y = Dense(1, activation = sigmoid, name = "y")(Dense(6, activation = relu)(x));
    }
}

/// `tests/fixtures/sample_weight.safetensors`.
fn fixture() -> Fixture {
    parity::fixture("sample_weight")
}

fn values(fx: &Fixture, key: &str) -> Vec<f32> {
    get(fx, key).iter().copied().collect()
}

fn assert_log(what: &str, got: f64, want: f32) {
    let want = f64::from(want);
    assert!((got - want).abs() <= 1e-5 + 1e-5 * want.abs(), "{what}: modelc {got} vs Keras {want}");
}

/// Sets every parameter of `model` from `<prefix>/<name>` of the fixture.
fn load<N: Network>(model: &mut N, fx: &Fixture, prefix: &str) {
    for spec in N::PARAMS {
        modelc::ops::set_param(model, spec.name, get(fx, &format!("{prefix}/{}", spec.name)).view()).unwrap();
    }
}

fn assert_params<N: Network>(model: &N, fx: &Fixture, prefix: &str) {
    for spec in N::PARAMS {
        let got = &model.state().params[spec.range()];
        assert_close(&format!("{prefix}/{}", spec.name), got, get(fx, &format!("{prefix}/{}", spec.name)).as_slice().unwrap(), 2e-5, 0.0);
    }
}

fn two_heads_weights(fx: &Fixture) -> SampleWeight {
    SampleWeight::per_output([("y", values(fx, "sw/weight/y")), ("z", values(fx, "sw/weight/z"))])
}

fn two_heads_losses() -> TwoHeadsLosses {
    TwoHeadsLosses { y: Loss::CategoricalCrossentropy, z: Loss::MeanSquaredError }
}

fn two_heads_metrics() -> TwoHeadsPerOutput<Vec<Metric>> {
    TwoHeadsPerOutput { y: vec![Metric::Accuracy], z: vec![Metric::MeanAbsoluteError] }
}

fn two_heads_weighted_metrics() -> TwoHeadsPerOutput<Vec<Metric>> {
    TwoHeadsPerOutput { y: vec![Metric::Accuracy], z: vec![Metric::MeanAbsoluteError, Metric::RootMeanSquaredError] }
}

/// Every key the two-headed model logs: losses, plain metrics (which ignore the weights, as Keras'
/// `metrics`) and weighted metrics (Keras' `weighted_metrics`).
const TWO_HEADS_KEYS: [&str; 8] = [
    "loss",
    "y_loss",
    "z_loss",
    "y_accuracy",
    "z_mean_absolute_error",
    "y_weighted_accuracy",
    "z_weighted_mean_absolute_error",
    "z_root_mean_squared_error",
];

#[test]
fn per_output_sample_weights_give_kerass_loss_and_gradients() {
    let fx = fixture();
    let mut model = TwoHeads::new(0);
    load(&mut model, &fx, "sw/param");
    let inputs = TwoHeadsInputs { x: view(&fx, "sw/input/x") };
    let targets = TwoHeadsTargets { y: view(&fx, "sw/target/y"), z: view(&fx, "sw/target/z") };
    let mut trainer = model.compile(Adam::new(0.05), two_heads_losses(), &[]);
    let sw = two_heads_weights(&fx);
    let (loss, grads) = trainer.compute_gradients_weighted(&inputs, &targets, &sw).unwrap();
    let want = f64::from(get(&fx, "sw/loss")[0]);
    assert!((loss - want).abs() <= 1e-5 * want, "loss: modelc {loss} vs Keras {want}");
    let grads = grads.to_vec();
    for spec in TwoHeads::PARAMS {
        assert_close(
            &format!("d loss / d {}", spec.name),
            &grads[spec.range()],
            &values(&fx, &format!("sw/grad/{}", spec.name)),
            2e-5,
            1e-4,
        );
    }
    // The weights matter: the unweighted loss is another number.
    let (plain, _) = trainer.compute_gradients(&inputs, &targets).unwrap();
    assert!((plain - want).abs() > 1e-3, "unweighted {plain} vs weighted {want}");
}

#[test]
fn weighted_train_on_batch_steps_metrics_and_evaluation_match_keras() {
    let fx = fixture();
    let mut model = TwoHeads::new(0);
    load(&mut model, &fx, "sw/param");
    let inputs = TwoHeadsInputs { x: view(&fx, "sw/input/x") };
    let targets = TwoHeadsTargets { y: view(&fx, "sw/target/y"), z: view(&fx, "sw/target/z") };
    let mut trainer = model
        .compile(Adam::new(0.05), two_heads_losses(), &[])
        .with_metrics(two_heads_metrics())
        .with_weighted_metrics(two_heads_weighted_metrics());
    let sw = two_heads_weights(&fx);
    for k in 1..=3 {
        let logs = trainer.train_on_batch_weighted(&inputs, &targets, &sw).unwrap();
        assert_eq!(logs.keys().count(), TWO_HEADS_KEYS.len(), "{logs:?}");
        for key in TWO_HEADS_KEYS {
            assert_log(&format!("step {k} {key}"), logs[key], get(&fx, &format!("sw/step{k}/{key}"))[0]);
        }
        assert_params(trainer.model(), &fx, &format!("sw/step{k}"));
    }
    // Two batches (4 + 2 rows): the loss is the mean of the batch losses weighted by batch size, the
    // metrics are weighted by the sample weights.
    let logs = trainer.evaluate_weighted(&inputs, &targets, 4, &sw).unwrap();
    for key in TWO_HEADS_KEYS {
        assert_log(&format!("evaluate {key}"), logs[key], get(&fx, &format!("sw/eval/{key}"))[0]);
    }
    let batch = trainer.test_on_batch_weighted(&inputs, &targets, &sw).unwrap();
    let whole = trainer.evaluate_weighted(&inputs, &targets, 6, &sw).unwrap();
    assert_eq!(batch, whole);
}

const CLASS_WEIGHT: [(usize, f32); 2] = [(0, 1.0), (1, 5.0)];

#[test]
fn class_weight_becomes_kerass_sample_weights_loss_and_gradients() {
    let fx = fixture();
    let mut model = Binary::new(0);
    load(&mut model, &fx, "cw/param");
    let inputs = BinaryInputs { x: view(&fx, "cw/input/x") };
    let targets = BinaryTargets { y: view(&fx, "cw/target/y") };
    let mut trainer = model.compile(Adam::new(0.05), BinaryLosses { y: Loss::BinaryCrossentropy }, &[]);
    let sw = trainer.class_weights(&targets, &CLASS_WEIGHT).unwrap();
    assert_eq!(sw, SampleWeight::All(values(&fx, "cw/weight")));
    let (loss, grads) = trainer.compute_gradients_weighted(&inputs, &targets, &sw).unwrap();
    let want = f64::from(get(&fx, "cw/loss")[0]);
    assert!((loss - want).abs() <= 1e-5 * want, "loss: modelc {loss} vs Keras {want}");
    let grads = grads.to_vec();
    for spec in Binary::PARAMS {
        assert_close(
            &format!("d loss / d {}", spec.name),
            &grads[spec.range()],
            &values(&fx, &format!("cw/grad/{}", spec.name)),
            2e-5,
            1e-4,
        );
    }
}

#[test]
fn fit_with_class_weight_matches_kerass_history_and_weights() {
    let fx = fixture();
    let mut model = Binary::new(0);
    load(&mut model, &fx, "cw/param");
    let inputs = BinaryInputs { x: view(&fx, "cw/input/x") };
    let targets = BinaryTargets { y: view(&fx, "cw/target/y") };
    let weighted = BinaryPerOutput { y: vec![Metric::Accuracy, Metric::Precision, Metric::Auc(AucCurve::Roc)] };
    let mut trainer =
        model.compile(Adam::new(0.05), BinaryLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]).with_weighted_metrics(weighted);
    let fit = Fit { epochs: 3, batch_size: 8, shuffle: false, verbose: false, class_weight: Some(CLASS_WEIGHT.to_vec()), ..Fit::default() };
    let history = trainer.fit(&inputs, &targets, &fit).unwrap();
    for key in ["loss", "accuracy", "weighted_accuracy", "precision", "auc"] {
        let got = history.get(key).unwrap();
        let want = values(&fx, &format!("cw/fit/{key}"));
        for (e, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_log(&format!("epoch {} {key}", e + 1), *g, *w);
        }
    }
    assert_params(trainer.model(), &fx, "cw/fit");
}

fn data(n: usize) -> (Array2<f32>, Array2<f32>) {
    let x = Array2::from_shape_fn((n, 4), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 5.0 - 1.0);
    let y = Array2::from_shape_fn((n, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] + x[[i, 1]] > 0.0)));
    (x, y)
}

#[test]
fn unit_weights_take_the_unweighted_steps_bit_for_bit() {
    let (x, y) = data(12);
    let inputs = BinaryInputs { x: x.view() };
    let targets = BinaryTargets { y: y.view() };
    let (mut a, mut b) = (Binary::new(3), Binary::new(3));
    let mut ta = a.compile(Adam::new(0.01), BinaryLosses { y: Loss::BinaryCrossentropy }, &[]);
    let mut tb = b.compile(Adam::new(0.01), BinaryLosses { y: Loss::BinaryCrossentropy }, &[]);
    let ones = SampleWeight::from(vec![1.0; 12]);
    for _ in 0..3 {
        // The gradients are the same bits; the loss value may differ in its last bit (the order of the sums).
        let (a, b) = (ta.train_step(&inputs, &targets).unwrap(), tb.train_step_weighted(&inputs, &targets, &ones).unwrap());
        assert!((a - b).abs() <= 1e-12, "{a} vs {b}");
    }
    assert_eq!(ta.model().state().params, tb.model().state().params);
}

#[test]
fn shuffling_moves_each_weight_with_its_row() {
    // One batch holds every row: shuffled or not, the step sees the same weighted rows, so the training
    // is the same up to the order of the sums (it would not be if the weights stayed in place).
    let (x, y) = data(16);
    let inputs = BinaryInputs { x: x.view() };
    let targets = BinaryTargets { y: y.view() };
    let w: Vec<f32> = (0..16).map(|i| (i % 5) as f32 * 0.5).collect();
    let run = |shuffle: bool| {
        let mut m = Binary::new(5);
        let mut t = m.compile(Adam::new(0.05), BinaryLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
        let fit = Fit { epochs: 3, batch_size: 16, shuffle, verbose: false, sample_weight: Some(w.clone().into()), ..Fit::default() };
        let h = t.fit(&inputs, &targets, &fit).unwrap();
        (h, t.model().state().params.clone())
    };
    let ((h1, p1), (h2, p2)) = (run(false), run(true));
    assert_close("params", &p1, &p2, 1e-5, 0.0);
    for key in ["loss", "accuracy"] {
        for (a, b) in h1.get(key).unwrap().iter().zip(h2.get(key).unwrap()) {
            assert!((a - b).abs() < 1e-5, "{key}: {a} vs {b}");
        }
    }
}

#[test]
fn held_out_rows_keep_their_weights() {
    let (x, y) = data(20);
    let inputs = BinaryInputs { x: x.view() };
    let targets = BinaryTargets { y: y.view() };
    let w: Vec<f32> = (0..20).map(|i| 1.0 + (i % 3) as f32).collect();
    let mut m = Binary::new(5);
    let mut t = m.compile(Adam::new(0.05), BinaryLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let fit =
        Fit { epochs: 1, batch_size: 4, validation_split: 0.25, verbose: false, sample_weight: Some(w.clone().into()), ..Fit::default() };
    let h = t.fit(&inputs, &targets, &fit).unwrap();
    let (vx, vy) = (x.slice(modelc::ndarray::s![15.., ..]), y.slice(modelc::ndarray::s![15.., ..]));
    let logs = t.evaluate_weighted(&BinaryInputs { x: vx }, &BinaryTargets { y: vy }, 4, &SampleWeight::from(&w[15..])).unwrap();
    assert_eq!(h.last("val_loss"), Some(logs["loss"]));
    assert_eq!(h.last("val_accuracy"), Some(logs["accuracy"]));
}

fn message<T: std::fmt::Debug>(r: Result<T, impl std::fmt::Display>) -> String {
    r.expect_err("must be refused").to_string()
}

#[test]
fn bad_weights_are_errors_naming_the_fix() {
    let (x, y) = data(6);
    let inputs = BinaryInputs { x: x.view() };
    let targets = BinaryTargets { y: y.view() };
    let mut m = Binary::new(1);
    let before = m.state().params.clone();
    let mut t = m.compile(Adam::new(0.05), BinaryLosses { y: Loss::BinaryCrossentropy }, &[]);
    let e = message(t.train_step_weighted(&inputs, &targets, &vec![1.0; 5].into()));
    assert!(e.contains("5 weights") && e.contains("6 samples"), "{e}");
    let e = message(t.evaluate_weighted(&inputs, &targets, 4, &vec![1.0, -1.0, 1.0, 1.0, 1.0, 1.0].into()));
    assert!(e.contains("sample 1") && e.contains("not negative"), "{e}");
    let e = message(t.train_on_batch_weighted(&inputs, &targets, &vec![1.0, 1.0, f32::NAN, 1.0, 1.0, 1.0].into()));
    assert!(e.contains("sample 2") && e.contains("finite"), "{e}");
    let e = message(t.test_on_batch_weighted(&inputs, &targets, &SampleWeight::per_output([("q", vec![1.0; 6])])));
    assert!(e.contains("`q`") || e.contains("\"q\"") || e.contains("names no output"), "{e}");
    let both = Fit { verbose: false, sample_weight: Some(vec![1.0; 6].into()), class_weight: Some(vec![(0, 2.0)]), ..Fit::default() };
    let e = message(t.fit(&inputs, &targets, &both));
    assert!(e.contains("sample_weight"), "{e}");
    let e = message(t.fit(&inputs, &targets, &Fit { verbose: false, class_weight: Some(vec![(0, 2.0), (0, 1.0)]), ..Fit::default() }));
    assert!(e.contains("twice"), "{e}");
    let e = message(t.fit(&inputs, &targets, &Fit { verbose: false, class_weight: Some(vec![(1, f32::INFINITY)]), ..Fit::default() }));
    assert!(e.contains("class 1"), "{e}");
    // Nothing was trained.
    assert_eq!(t.model().state().params, before);
}

#[test]
fn per_output_weights_must_name_every_output_and_class_weight_needs_one_output() {
    let x = Array2::from_shape_fn((4, 5), |(i, j)| (i + j) as f32 / 10.0);
    let y = Array2::from_shape_fn((4, 3), |(i, j)| f32::from(u8::from(i % 3 == j)));
    let z = Array2::zeros((4, 2));
    let inputs = TwoHeadsInputs { x: x.view() };
    let targets = TwoHeadsTargets { y: y.view(), z: z.view() };
    let mut m = TwoHeads::new(1);
    let mut t = m.compile(Adam::new(0.05), two_heads_losses(), &[]);
    let e = message(t.train_step_weighted(&inputs, &targets, &SampleWeight::per_output([("y", vec![1.0; 4])])));
    assert!(e.contains("no array for this output") && e.contains('z'), "{e}");
    let e = message(t.train_step_weighted(&inputs, &targets, &SampleWeight::per_output([("y", vec![1.0; 4]), ("y", vec![1.0; 4])])));
    assert!(e.contains("twice"), "{e}");
    let e = message(t.class_weights(&targets, &[(0, 2.0)]));
    assert!(e.contains("single output"), "{e}");
    // One array weights every output (Keras replicates it).
    let one = t.train_step_weighted(&inputs, &targets, &vec![2.0; 4].into()).unwrap();
    let per = t.compute_gradients_weighted(&inputs, &targets, &SampleWeight::per_output([("y", vec![2.0; 4]), ("z", vec![2.0; 4])]));
    assert!(one.is_finite() && per.is_ok());
}

model! {
    /// Integer class ids as targets.
    struct SparseHead {
        input x: [3];
        output y = Dense(4, activation = softmax)(x) as i32 target;
    }
}

model! {
    /// The same model with one-hot targets.
    struct DenseHead {
        input x: [3];
        output y = Dense(4, activation = softmax)(x);
    }
}

#[test]
fn class_weight_reads_class_ids_and_one_hot_targets_alike() {
    let x = Array2::from_shape_fn((10, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
    let ids = modelc::ndarray::Array1::from_shape_fn(10, |i| (i % 4) as i32);
    let onehot = Array2::from_shape_fn((10, 4), |(i, j)| f32::from(u8::from(i % 4 == j)));
    // Class 3 is not listed: it weighs 1, as in Keras.
    let cw = vec![(0, 0.5), (1, 2.0), (2, 0.0)];
    let fit = Fit { epochs: 2, batch_size: 4, verbose: false, class_weight: Some(cw.clone()), ..Fit::default() };

    let mut sparse = SparseHead::new(3);
    let mut ts = sparse.compile(Adam::new(1e-2), SparseHeadLosses { y: Loss::SparseCategoricalCrossentropy }, &[]);
    let weights = ts.class_weights(&SparseHeadTargets { y: ids.view() }, &cw).unwrap();
    let want: Vec<f32> = (0..10).map(|i| [0.5, 2.0, 0.0, 1.0][i % 4]).collect();
    assert_eq!(weights, SampleWeight::All(want.clone()));
    let hs = ts.fit(&SparseHeadInputs { x: x.view() }, &SparseHeadTargets { y: ids.view() }, &fit).unwrap();

    let mut dense = DenseHead::new(3);
    let mut td = dense.compile(Adam::new(1e-2), DenseHeadLosses { y: Loss::CategoricalCrossentropy }, &[]);
    assert_eq!(td.class_weights(&DenseHeadTargets { y: onehot.view() }, &cw).unwrap(), SampleWeight::All(want));
    let hd = td.fit(&DenseHeadInputs { x: x.view() }, &DenseHeadTargets { y: onehot.view() }, &fit).unwrap();
    for (a, b) in hs.get("loss").unwrap().iter().zip(hd.get("loss").unwrap()) {
        assert!((a - b).abs() < 1e-9, "{a} vs {b}");
    }
    assert_close("params", sparse.params(), dense.params(), 1e-7, 0.0);
}

#[test]
fn weighted_validation_data_gives_kerass_val_loss_and_metrics() {
    // Keras' `fit(x, y, validation_data=(x_val, y_val, sample_weight_val), epochs=2, batch_size=4,
    // shuffle=False)`: the validation loss and weighted metrics weigh the validation samples, the plain
    // metrics do not; training is unweighted.
    let fx = fixture();
    let mut model = TwoHeads::new(0);
    load(&mut model, &fx, "vd/param");
    let inputs = TwoHeadsInputs { x: view(&fx, "vd/input/x") };
    let targets = TwoHeadsTargets { y: view(&fx, "vd/target/y"), z: view(&fx, "vd/target/z") };
    let val_inputs = TwoHeadsInputs { x: view(&fx, "vd/val/x") };
    let val_targets = TwoHeadsTargets { y: view(&fx, "vd/val/y"), z: view(&fx, "vd/val/z") };
    let val_weight = SampleWeight::per_output([("y", values(&fx, "vd/val/weight/y")), ("z", values(&fx, "vd/val/weight/z"))]);
    let mut trainer = model
        .compile(Adam::new(0.05), two_heads_losses(), &[])
        .with_metrics(two_heads_metrics())
        .with_weighted_metrics(two_heads_weighted_metrics());
    let fit = Fit { epochs: 2, batch_size: 4, shuffle: false, verbose: false, ..Fit::default() };
    let history =
        trainer.fit_with_weighted_validation_data(&inputs, &targets, (&val_inputs, &val_targets, &val_weight), &fit, &mut []).unwrap();
    assert_eq!(history.keys().count(), 2 * TWO_HEADS_KEYS.len(), "{:?}", history.keys().collect::<Vec<_>>());
    for key in TWO_HEADS_KEYS.iter().flat_map(|k| [k.to_string(), format!("val_{k}")]) {
        let want = values(&fx, &format!("vd/fit/{key}"));
        let got = history.get(&key).unwrap_or_else(|| panic!("no `{key}` in the history"));
        for (epoch, (&g, &w)) in got.iter().zip(&want).enumerate() {
            assert_log(&format!("epoch {} {key}", epoch + 1), g, w);
        }
    }
    assert_params(trainer.model(), &fx, "vd/fit");
    // The weights matter: unweighted validation gives another val_loss.
    let unweighted = trainer.evaluate(&val_inputs, &val_targets, 4).unwrap()["loss"];
    let weighted = trainer.evaluate_weighted(&val_inputs, &val_targets, 4, &val_weight).unwrap()["loss"];
    assert!((unweighted - weighted).abs() > 1e-3, "{unweighted} vs {weighted}");
    assert_eq!(history.last("val_loss"), Some(weighted));
}

#[test]
fn validation_weights_of_the_wrong_length_are_an_error_naming_the_validation_data() {
    let fx = fixture();
    let mut model = TwoHeads::new(0);
    let inputs = TwoHeadsInputs { x: view(&fx, "vd/input/x") };
    let targets = TwoHeadsTargets { y: view(&fx, "vd/target/y"), z: view(&fx, "vd/target/z") };
    let mut trainer = model.compile(Adam::new(0.05), two_heads_losses(), &[]);
    let fit = Fit { epochs: 1, verbose: false, ..Fit::default() };
    // Eight weights (the training rows) for six validation rows.
    let wrong = SampleWeight::from(vec![1.0f32; 8]);
    let val_inputs = TwoHeadsInputs { x: view(&fx, "vd/val/x") };
    let val_targets = TwoHeadsTargets { y: view(&fx, "vd/val/y"), z: view(&fx, "vd/val/z") };
    let e = trainer.fit_with_weighted_validation_data(&inputs, &targets, (&val_inputs, &val_targets, &wrong), &fit, &mut []).unwrap_err();
    assert_eq!(
        e.to_string(),
        "invalid configuration: `sample_weight` = 8 weights: the data has 6 samples; give one weight per sample (the weights of the validation data)"
    );
    assert_eq!(e.history.epochs(), 0, "checked before training");
}
