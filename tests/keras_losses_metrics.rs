//! Parity of the losses and metrics with Keras itself, against `tests/fixtures/losses_metrics.safetensors`
//! written by `scripts/keras_losses_metrics.py` (Keras 3, JAX backend):
//! - every loss value within 1e-6 relative (+1e-6 absolute), its gradient w.r.t. the predictions (or the
//!   logits, for the fused softmax/sigmoid paths) within 1e-5 relative + 1e-6 of the case's largest
//!   gradient: float32 (Keras) against float64 accumulation (modelc); exact zeros where Keras clips;
//! - every metric streamed over two batches within 1e-6 relative;
//! - a one-layer model whose softmax / sigmoid saturates: outputs, loss, the gradient w.r.t. the logits
//!   and every weight, and the weights after three Adam(1e-2) steps (1e-5 absolute, as tests/keras_parity.rs).
//!
//! Also the `as i32 target` path end to end: sparse class ids train exactly like their one-hot form.

use modelc::metrics::{AucCurve, MetricTracker};
use modelc::ndarray::{Array1, Array2, ArrayD, Ix2};
use modelc::network::Network;
use modelc::prelude::*;

use crate::counting_alloc;
use crate::parity;
use counting_alloc::allocations_in;
use modelc::Activation;
use parity::*;

/// `tests/fixtures/losses_metrics.safetensors`.
fn fixture() -> Fixture {
    parity::fixture("losses_metrics")
}

fn slice<'f>(fx: &'f Fixture, key: &str) -> &'f [f32] {
    get(fx, key).as_slice().unwrap()
}

fn scalar(fx: &Fixture, key: &str) -> f64 {
    f64::from(slice(fx, key)[0])
}

fn close(what: &str, got: f64, want: f64, rtol: f64) {
    assert!((got - want).abs() <= rtol * want.abs() + 1e-6, "{what}: modelc {got} vs Keras {want}");
}

/// `got` against `want` within `rtol` relative plus `atol` times the largest `|want|` (at least 1);
/// Keras' exact zeros must be exact zeros.
fn close_all(what: &str, got: &[f32], want: &[f32], rtol: f32, atol: f32) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1.0f32, |m, w| m.max(w.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        if *w == 0.0 {
            assert_eq!(*g, 0.0, "{what}[{i}]: Keras has an exact zero, modelc {g}");
        }
        assert!((g - w).abs() <= rtol * w.abs() + atol * scale, "{what}[{i}]: modelc {g} vs Keras {w}");
    }
}

fn rows_cols(a: &ArrayD<f32>) -> (usize, usize) {
    let cols = *a.shape().last().unwrap();
    (a.len() / cols, cols)
}

const LOSSES: &[(&str, Loss)] = &[
    ("mean_squared_error", Loss::MeanSquaredError),
    ("mean_absolute_error", Loss::MeanAbsoluteError),
    ("huber", Loss::Huber),
    ("huber_delta_0.5", Loss::Huber.delta(0.5)),
    ("log_cosh", Loss::LogCosh),
    ("kl_divergence", Loss::KLDivergence),
    ("cosine_similarity", Loss::CosineSimilarity),
    ("cosine_similarity_tiny", Loss::CosineSimilarity),
    ("poisson", Loss::Poisson),
    ("binary_crossentropy", Loss::BinaryCrossentropy),
    ("binary_crossentropy_ls_0.2", Loss::BinaryCrossentropy.label_smoothing(0.2)),
    ("binary_crossentropy_logits", Loss::BinaryCrossentropy.from_logits(true)),
    ("binary_crossentropy_logits_ls_0.1", Loss::BinaryCrossentropy.from_logits(true).label_smoothing(0.1)),
    ("categorical_crossentropy", Loss::CategoricalCrossentropy),
    ("categorical_crossentropy_ls_0.1", Loss::CategoricalCrossentropy.label_smoothing(0.1)),
    ("categorical_crossentropy_logits", Loss::CategoricalCrossentropy.from_logits(true)),
    ("categorical_crossentropy_logits_ls_0.2", Loss::CategoricalCrossentropy.from_logits(true).label_smoothing(0.2)),
    ("sparse_categorical_crossentropy", Loss::SparseCategoricalCrossentropy),
    ("sparse_categorical_crossentropy_logits", Loss::SparseCategoricalCrossentropy.from_logits(true)),
];

#[test]
fn every_loss_and_its_gradient_match_keras() {
    let fx = fixture();
    for &(case, loss) in LOSSES {
        let pred = get(&fx, &format!("loss/{case}/pred"));
        let (rows, cols) = rows_cols(pred);
        let mut grad = vec![f32::NAN; rows * cols];
        let target = slice(&fx, &format!("loss/{case}/target"));
        let value = loss.compute(pred.as_slice().unwrap(), target, rows, cols, Some(&mut grad), 1.0, Activation::Linear);
        close(&format!("{case} value"), value, scalar(&fx, &format!("loss/{case}/value")), 1e-6);
        close_all(&format!("{case} gradient"), &grad, slice(&fx, &format!("loss/{case}/grad")), 1e-5, 1e-6);
    }
}

fn softmax(z: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; z.len()];
    modelc::kernels::activation::forward(Activation::Softmax, z, &mut out, cols);
    out
}

fn sigmoid(z: &[f32], cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; z.len()];
    modelc::kernels::activation::forward(Activation::Sigmoid, z, &mut out, cols);
    out
}

#[test]
fn fused_gradients_match_keras_including_saturated_rows() {
    let fx = fixture();
    let cases: &[(&str, Loss, Activation)] = &[
        ("softmax_categorical_crossentropy", Loss::CategoricalCrossentropy, Activation::Softmax),
        ("softmax_categorical_crossentropy_ls_0.1", Loss::CategoricalCrossentropy.label_smoothing(0.1), Activation::Softmax),
        ("softmax_sparse_categorical_crossentropy", Loss::SparseCategoricalCrossentropy, Activation::Softmax),
        ("sigmoid_binary_crossentropy", Loss::BinaryCrossentropy, Activation::Sigmoid),
        ("sigmoid_binary_crossentropy_ls_0.2", Loss::BinaryCrossentropy.label_smoothing(0.2), Activation::Sigmoid),
    ];
    for &(case, loss, act) in cases {
        let z = get(&fx, &format!("fused/{case}/logits"));
        let (rows, cols) = rows_cols(z);
        let p = if act == Activation::Softmax { softmax(z.as_slice().unwrap(), cols) } else { sigmoid(z.as_slice().unwrap(), cols) };
        let mut grad = vec![f32::NAN; rows * cols];
        let target = slice(&fx, &format!("fused/{case}/target"));
        let value = loss.compute(&p, target, rows, cols, Some(&mut grad), 1.0, act);
        close(&format!("{case} value"), value, scalar(&fx, &format!("fused/{case}/value")), 1e-6);
        let want = slice(&fx, &format!("fused/{case}/grad"));
        close_all(&format!("{case} gradient w.r.t. the logits"), &grad, want, 1e-5, 1e-6);
        // The saturated first row: Keras' gradient is exactly zero, and so is modelc's.
        assert!(want[..cols].iter().all(|&g| g == 0.0), "{case}: the fixture's first row should saturate");
    }
}

#[test]
fn every_metric_streamed_over_two_batches_matches_keras() {
    let fx = fixture();
    let cases: &[(&str, Metric)] = &[
        ("sparse_categorical_accuracy", Metric::SparseCategoricalAccuracy),
        ("top_k_categorical_accuracy_2", Metric::TopKCategoricalAccuracy(2)),
        ("sparse_top_k_categorical_accuracy_2", Metric::SparseTopKCategoricalAccuracy(2)),
        ("auc_roc", Metric::Auc(AucCurve::Roc)),
        ("auc_pr", Metric::Auc(AucCurve::Pr)),
        ("precision", Metric::Precision),
        ("recall", Metric::Recall),
        ("root_mean_squared_error", Metric::RootMeanSquaredError),
        ("mean_absolute_percentage_error", Metric::MeanAbsolutePercentageError),
    ];
    for &(case, metric) in cases {
        let mut tracker = MetricTracker::new(metric);
        for b in 1..=2 {
            let pred = get(&fx, &format!("metric/{case}/pred{b}"));
            let (rows, cols) = rows_cols(pred);
            tracker.update(pred.as_slice().unwrap(), slice(&fx, &format!("metric/{case}/target{b}")), rows, cols);
        }
        close(case, tracker.result(), scalar(&fx, &format!("metric/{case}/value")), 1e-6);
    }
}

model! {
    /// A softmax head with weights large enough to saturate on some samples.
    struct SatSoftmax {
        input x: [3];
        output y = Dense(4, activation = softmax)(x);
    }
}

model! {
    /// A sigmoid head with weights large enough to saturate on some samples.
    struct SatSigmoid {
        input x: [3];
        output y = Dense(3, activation = sigmoid)(x);
    }
}

/// Outputs, loss, d loss / d logits (the fused form), every weight's gradient (through the
/// activation's own backward) and three Adam steps (the trainer, fused) against Keras.
macro_rules! saturated_parity {
    ($test:ident, $case:literal, $model:ident, $inputs:ident, $outputs:ident, $targets:ident, $losses:ident, $loss:expr, $act:expr) => {
        #[test]
        fn $test() {
            let fx = fixture();
            let key = |k: &str| format!("model/{}/{k}", $case);
            let set = |model: &mut $model| {
                for spec in $model::PARAMS {
                    model.set_param(spec.name, get(&fx, &key(&format!("param/{}", spec.name))).view()).unwrap();
                }
            };
            let mut model = $model::new(0);
            set(&mut model);
            let x = get(&fx, &key("input")).view().into_dimensionality::<Ix2>().unwrap();
            let y = get(&fx, &key("target")).view().into_dimensionality::<Ix2>().unwrap();
            let inputs = $inputs { x };
            let out = model.forward(&inputs, true).unwrap();
            close_all("outputs", out.y.as_slice().unwrap(), slice(&fx, &key("output")), 1e-5, 1e-7);
            let p = out.y.as_slice().unwrap();
            let (rows, cols) = (out.y.nrows(), out.y.ncols());
            let mut dlogits = vec![f32::NAN; p.len()];
            let value = $loss.compute(p, y.as_slice().unwrap(), rows, cols, Some(&mut dlogits), 1.0, $act);
            close("loss", value, scalar(&fx, &key("loss")), 1e-6);
            close_all("d loss / d logits (fused)", &dlogits, slice(&fx, &key("dlogits")), 1e-5, 1e-6);
            let mut dp = vec![f32::NAN; p.len()];
            $loss.compute(p, y.as_slice().unwrap(), rows, cols, Some(&mut dp), 1.0, Activation::Linear);
            let grads = model.backward(&$outputs { y: Array2::from_shape_vec((rows, cols), dp).unwrap() }).unwrap();
            for spec in $model::PARAMS {
                let got: Vec<f32> = grads.get(spec.name).unwrap().iter().copied().collect();
                close_all(&format!("gradient of {}", spec.name), &got, slice(&fx, &key(&format!("grad/{}", spec.name))), 1e-5, 1e-6);
            }
            set(&mut model);
            let mut trainer = model.compile(Adam::new(1e-2), $losses { y: $loss }, &[]);
            for _ in 0..3 {
                trainer.train_step(&inputs, &$targets { y }).unwrap();
            }
            for spec in $model::PARAMS {
                let got: Vec<f32> = model.param(spec.name).unwrap().iter().copied().collect();
                let want = slice(&fx, &key(&format!("adam3/{}", spec.name)));
                for (i, (g, w)) in got.iter().zip(want).enumerate() {
                    assert!((g - w).abs() <= 1e-5 + 1e-5 * w.abs(), "{} after 3 Adam steps [{i}]: modelc {g} vs Keras {w}", spec.name);
                }
            }
        }
    };
}

saturated_parity!(
    saturated_softmax_matches_keras,
    "softmax",
    SatSoftmax,
    SatSoftmaxInputs,
    SatSoftmaxOutputs,
    SatSoftmaxTargets,
    SatSoftmaxLosses,
    Loss::CategoricalCrossentropy,
    Activation::Softmax
);
saturated_parity!(
    saturated_sigmoid_matches_keras,
    "sigmoid",
    SatSigmoid,
    SatSigmoidInputs,
    SatSigmoidOutputs,
    SatSigmoidTargets,
    SatSigmoidLosses,
    Loss::BinaryCrossentropy,
    Activation::Sigmoid
);

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
fn integer_targets_train_exactly_like_one_hot_ones() {
    let x = Array2::from_shape_fn((10, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
    let ids = Array1::from_shape_fn(10, |i| (i % 4) as i32);
    let onehot = Array2::from_shape_fn((10, 4), |(i, j)| f32::from(u8::from(i % 4 == j)));
    let fit = Fit { epochs: 2, batch_size: 4, verbose: false, ..Fit::default() };

    let mut sparse = SparseHead::new(3);
    let mut trainer = sparse.compile(Adam::new(1e-2), SparseHeadLosses { y: Loss::SparseCategoricalCrossentropy }, &[Metric::Accuracy]);
    let inputs = SparseHeadInputs { x: x.view() };
    let h_sparse = trainer.fit(&inputs, &SparseHeadTargets { y: ids.view() }, &fit).unwrap();
    let mut dense = DenseHead::new(3);
    let mut trainer = dense.compile(Adam::new(1e-2), DenseHeadLosses { y: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let h_dense = trainer.fit(&DenseHeadInputs { x: x.view() }, &DenseHeadTargets { y: onehot.view() }, &fit).unwrap();
    assert_eq!(h_sparse.get("loss"), h_dense.get("loss"));
    assert_eq!(h_sparse.get("accuracy"), h_dense.get("accuracy"));
    assert_eq!(sparse.params(), dense.params());
    assert_eq!(<SparseHead as Network>::TARGETS[0].shape, &[] as &[usize]);

    // A class id outside 0..4 is an error naming the output, the sample and the id.
    let mut trainer = sparse.compile(Adam::new(1e-2), SparseHeadLosses { y: Loss::SparseCategoricalCrossentropy }, &[]);
    let mut bad = ids.clone();
    bad[7] = 4;
    let err = trainer.train_step(&inputs, &SparseHeadTargets { y: bad.view() }).unwrap_err().to_string();
    assert!(err.contains("class id 4") && err.contains("sample 7") && err.contains("`y`"), "{err}");
    // A dense loss on integer targets is a configuration error, before anything runs.
    let mut trainer = sparse.compile(Adam::new(1e-2), SparseHeadLosses { y: Loss::CategoricalCrossentropy }, &[]);
    let err = trainer.train_step(&inputs, &SparseHeadTargets { y: ids.view() }).unwrap_err().to_string();
    assert!(err.contains("only SparseCategoricalCrossentropy"), "{err}");
}

#[test]
fn metric_updates_and_sparse_train_steps_allocate_nothing() {
    let metrics = [
        Metric::BinaryAccuracy,
        Metric::CategoricalAccuracy,
        Metric::SparseCategoricalAccuracy,
        Metric::TopKCategoricalAccuracy(2),
        Metric::SparseTopKCategoricalAccuracy(2),
        Metric::Auc(AucCurve::Roc),
        Metric::Auc(AucCurve::Pr),
        Metric::Precision,
        Metric::Recall,
        Metric::RootMeanSquaredError,
        Metric::MeanAbsolutePercentageError,
    ];
    let mut trackers: Vec<MetricTracker> = metrics.iter().map(|&m| MetricTracker::new(m)).collect();
    let pred: Vec<f32> = (0..12).map(|i| (i as f32 * 0.29).fract()).collect();
    let dense: Vec<f32> = (0..12).map(|i| f32::from(u8::from(i % 5 == 0))).collect();
    let ids = [0.0f32, 3.0, 1.0];
    let n = allocations_in(|| {
        for _ in 0..3 {
            for t in &mut trackers {
                let target = if t.metric().sparse() { &ids[..] } else { &dense[..] };
                t.update(&pred, target, 3, 4);
                std::hint::black_box(t.result());
            }
        }
        trackers.iter_mut().for_each(MetricTracker::reset);
    });
    assert_eq!(n, 0, "{n} allocations in metric updates");

    let x = Array2::from_shape_fn((8, 3), |(i, j)| ((i * 3 + j) as f32 * 0.37).sin());
    let ids = Array1::from_shape_fn(8, |i| (i % 4) as i32);
    let mut model = SparseHead::new(1);
    let mut trainer = model.compile(Adam::default(), SparseHeadLosses { y: Loss::SparseCategoricalCrossentropy.from_logits(false) }, &[]);
    let (inputs, targets) = (SparseHeadInputs { x: x.view() }, SparseHeadTargets { y: ids.view() });
    trainer.train_step(&inputs, &targets).unwrap();
    let n = allocations_in(|| {
        for _ in 0..20 {
            trainer.train_step(&inputs, &targets).unwrap();
        }
    });
    assert_eq!(n, 0, "{n} allocations in 20 steady-state training steps on integer targets");
}
