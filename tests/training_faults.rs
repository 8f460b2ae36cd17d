//! Training faults and resource limits (issue 14): every divergence `fit` can meet stops it with an error
//! that says where, the model keeps the weights from before the faulty step, and the history of the
//! completed epochs comes back with the error; sizes too large for memory are errors, not aborts, and
//! `predict` works through a bounded workspace whatever the batch.

use modelc::ndarray::{Array2, ArrayView2};
use modelc::prelude::*;
use modelc::{Error, FitError};

#[path = "../examples/fusion/model.rs"]
mod fusion;
use fusion::{Fusion, FusionInputs, FusionLosses, FusionPerOutput, FusionTargets};

#[path = "../examples/merges/model.rs"]
mod merges;
use merges::{Interactions, InteractionsInputs, InteractionsLosses, InteractionsTargets};

const SEED: u64 = 7;

fn quiet(epochs: usize) -> Fit {
    Fit { epochs, batch_size: 32, verbose: false, seed: 3, ..Fit::default() }
}

fn fusion_losses() -> FusionLosses {
    FusionLosses { score: Loss::BinaryCrossentropy }
}

/// Trains a fresh Fusion on its example data, with `left` edited by `poison`.
fn fit_fusion(
    optimizer: impl Optimizer,
    weight: f32,
    fit: &Fit,
    poison: impl FnOnce(&mut Array2<f32>, &mut Array2<f32>),
) -> (Fusion, Result<History, FitError>) {
    let (mut left, right, mut y) = fusion::make_data(64, 1);
    poison(&mut left, &mut y);
    let mut model = Fusion::new(SEED);
    let mut trainer = model.compile(optimizer, fusion_losses(), &[Metric::Accuracy]).with_loss_weights(FusionPerOutput { score: weight });
    let inputs = FusionInputs { left_features: left.view(), right_features: right.view() };
    let result = trainer.fit(&inputs, &FusionTargets { score: y.view() }, fit);
    (model, result)
}

/// Asserts that `result` failed before training moved anything, with a message containing `expected`.
fn assert_rejected_up_front(model: &Fusion, result: Result<History, FitError>, expected: &str) {
    let err = result.expect_err("fit accepted a fault");
    assert!(err.to_string().contains(expected), "{err}");
    assert_eq!(err.history.epochs(), 0, "{:?}", err.history);
    assert_eq!(model.params(), Fusion::new(SEED).params(), "the weights moved");
}

#[test]
fn nan_input_is_an_error_naming_the_input_row_and_column() {
    // relu turns NaN into 0, so the loss stays finite: the inputs must be checked themselves.
    let (model, result) = fit_fusion(Adam::default(), 1.0, &quiet(2), |left, _| left[[37, 5]] = f32::NAN);
    assert_rejected_up_front(&model, result, "input `left_features` holds a non-finite value (NaN) at row 37, column 5");
}

#[test]
fn infinite_target_is_an_error_naming_the_target_and_row() {
    let (model, result) = fit_fusion(Adam::default(), 1.0, &quiet(2), |_, y| y[[50, 0]] = f32::NEG_INFINITY);
    assert_rejected_up_front(&model, result, "target `score` holds a non-finite value (-inf) at row 50, column 0");
}

#[test]
fn non_finite_learning_rates_are_rejected_before_training() {
    let (model, result) = fit_fusion(Adam::new(f32::NAN), 1.0, &quiet(2), |_, _| {});
    assert_rejected_up_front(&model, result, "`learning_rate` = NaN: must be finite");
    let (model, result) = fit_fusion(Sgd::new(f32::INFINITY), 1.0, &quiet(2), |_, _| {});
    assert_rejected_up_front(&model, result, "`learning_rate` = inf: must be finite");
}

#[test]
fn nan_loss_weight_is_rejected_before_training() {
    let (model, result) = fit_fusion(Adam::default(), f32::NAN, &quiet(2), |_, _| {});
    assert_rejected_up_front(&model, result, "`loss_weights` = NaN: the loss weight of output `score` must be finite");
}

#[test]
fn nan_schedule_setting_is_rejected_before_training() {
    let schedule = Schedule::ExponentialDecay { initial: 1e-3, decay_steps: 10, decay_rate: f32::NAN, staircase: false };
    let (model, result) = fit_fusion(Adam::default(), 1.0, &Fit { schedule: Some(schedule), ..quiet(2) }, |_, _| {});
    assert_rejected_up_front(&model, result, "`decay_rate` = NaN must be finite");
}

#[test]
fn schedule_overflowing_mid_training_stops_before_the_step_with_the_history_so_far() {
    // Two steps per epoch; the rate is 2e-38 in epoch 1, 6 in epoch 2 and 1.8e39 (inf as f32) in epoch 3.
    let schedule = Schedule::ExponentialDecay { initial: 2e-38, decay_steps: 2, decay_rate: 3e38, staircase: true };
    let fit = Fit { schedule: Some(schedule), ..quiet(3) };
    let (model, result) = fit_fusion(Sgd::new(0.1), 1.0, &fit, |_, _| {});
    let err = result.expect_err("an infinite learning rate was applied");
    assert!(err.to_string().contains("gives a non-finite learning rate (inf) at step 4 (epoch 3, batch 1)"), "{err}");
    assert_eq!(err.history.epochs(), 2);
    // The weights are the ones the first two epochs gave.
    let (two_epochs, ok) = fit_fusion(Sgd::new(0.1), 1.0, &Fit { epochs: 2, ..fit }, |_, _| {});
    assert_eq!(ok.expect("two epochs train").get("loss"), err.history.get("loss"));
    assert_eq!(model.params(), two_epochs.params());
}

/// Interactions (a linear output) under MSE on targets of 1e4, so the gradients are in the thousands, with
/// plain SGD scheduled at 1e-3 for epoch 1 (two steps) and 3e35 from epoch 2: the first step of epoch 2
/// overflows the parameters while its loss and gradients are finite.
fn fit_interactions(epochs: usize) -> (Interactions, Result<History, FitError>) {
    let (a, b, _) = merges::data(64, 2);
    let y = Array2::from_elem((64, 1), 1e4f32);
    let mut model = Interactions::new(SEED);
    let mut trainer = model.compile(Sgd::new(0.1), InteractionsLosses { y: Loss::MeanSquaredError }, &[]);
    let schedule = Schedule::ExponentialDecay { initial: 1e-3, decay_steps: 2, decay_rate: 3e38, staircase: true };
    let fit = Fit { schedule: Some(schedule), shuffle: false, ..quiet(epochs) };
    let result = trainer.fit(&InteractionsInputs { a: a.view(), b: b.view() }, &InteractionsTargets { y: y.view() }, &fit);
    (model, result)
}

#[test]
fn huge_learning_rate_overflowing_the_parameters_is_undone() {
    let (model, result) = fit_interactions(3);
    let err = result.expect_err("fit returned Ok with overflowed weights");
    let msg = err.to_string();
    assert!(matches!(err.error, Error::NonFiniteParams { epoch: 2, batch: 1, .. }), "{msg}");
    assert!(msg.contains("became non-finite") && msg.contains("epoch 2, batch 1"), "{msg}");
    assert_eq!(err.history.epochs(), 1);
    assert!(model.params().iter().all(|p| p.is_finite()));
    // Exactly the weights after epoch 1: the faulty step left no trace.
    let (one_epoch, ok) = fit_interactions(1);
    assert_eq!(ok.expect("epoch 1 trains").get("loss"), err.history.get("loss"));
    assert_eq!(model.params(), one_epoch.params());
}

#[test]
fn train_step_undoes_an_overflowing_step_and_rejects_nan_data() {
    let (a, b, _) = merges::data(16, 4);
    let y = Array2::from_elem((16, 1), 1e4f32);
    let mut model = Interactions::new(SEED);
    let mut trainer = model.compile(Sgd::new(f32::MAX), InteractionsLosses { y: Loss::MeanSquaredError }, &[]);
    let inputs = InteractionsInputs { a: a.view(), b: b.view() };
    let err = trainer.train_step(&inputs, &InteractionsTargets { y: y.view() }).unwrap_err();
    assert!(matches!(err, Error::NonFiniteParams { epoch: 0, batch: 0, .. }), "{err}");
    assert_eq!(trainer.model().params(), Interactions::new(SEED).params());

    trainer.optimizer_mut().set_learning_rate(1e-3);
    let mut bad = a.clone();
    bad[[9, 4]] = f32::INFINITY;
    let err = trainer.train_step(&InteractionsInputs { a: bad.view(), b: b.view() }, &InteractionsTargets { y: y.view() }).unwrap_err();
    assert_eq!(
        err.to_string(),
        "input `a` holds a non-finite value (inf) at row 9, column 4; replace or drop NaN/inf values before training"
    );
    assert_eq!(trainer.model().params(), Interactions::new(SEED).params());
    // A sound step still trains.
    trainer.train_step(&inputs, &InteractionsTargets { y: y.view() }).unwrap();
    assert_ne!(trainer.model().params(), Interactions::new(SEED).params());
}

#[test]
fn the_error_converts_with_question_mark_dropping_the_history() {
    fn run() -> modelc::Result<History> {
        let (model, result) = fit_fusion(Adam::default(), 1.0, &quiet(1), |left, _| left[[0, 0]] = f32::NAN);
        drop(model);
        Ok(result?)
    }
    assert!(matches!(run(), Err(Error::NonFiniteData { what: "input", row: 0, .. })));
}

/// `rows` copies of one sample, without allocating them: a view whose batch stride is 0.
fn broadcast_rows(sample: &Array2<f32>, rows: usize) -> ArrayView2<'_, f32> {
    sample.broadcast((rows, sample.ncols())).expect("broadcastable")
}

#[test]
fn a_batch_too_large_for_memory_is_an_error_not_an_abort() {
    let (l, r, y) = (Array2::from_elem((1, 8), 0.5f32), Array2::from_elem((1, 4), -0.5f32), Array2::from_elem((1, 1), 1.0f32));
    // 2^59 rows: each 16-wide activation buffer alone would need 2^63 floats.
    let rows = 1usize << 59;
    let inputs = FusionInputs { left_features: broadcast_rows(&l, rows), right_features: broadcast_rows(&r, rows) };
    let targets = FusionTargets { score: broadcast_rows(&y, rows) };
    let mut model = Fusion::new(SEED);
    let mut trainer = model.compile(Adam::default(), fusion_losses(), &[]);
    let err = trainer.train_step(&inputs, &targets).unwrap_err();
    assert!(matches!(err, Error::Allocation { .. }), "{err}");
    assert!(err.to_string().contains("exceed the address space"), "{err}");
    // fit: its shuffling order alone cannot be allocated; a batch_size that large is fine on small data.
    let err = trainer.fit(&inputs, &targets, &Fit { batch_size: usize::MAX, ..quiet(1) }).unwrap_err();
    assert!(matches!(err.error, Error::Allocation { .. }), "{err}");
    let (left, right, score) = fusion::make_data(40, 1);
    let small = FusionInputs { left_features: left.view(), right_features: right.view() };
    trainer.fit(&small, &FusionTargets { score: score.view() }, &Fit { batch_size: usize::MAX, ..quiet(1) }).unwrap();
    // predict: 2^50 rows of output (4 PiB) cannot be allocated; nothing runs.
    let huge = FusionInputs { left_features: broadcast_rows(&l, 1 << 50), right_features: broadcast_rows(&r, 1 << 50) };
    let err = model.predict(&huge).unwrap_err();
    assert!(matches!(err, Error::Allocation { .. }), "{err}");
    assert!(err.to_string().starts_with("cannot allocate output `score` for 1125899906842624 rows"), "{err}");
}

#[test]
fn predict_on_a_huge_batch_runs_in_a_bounded_workspace() {
    let chunk = modelc::ops::predict_chunk_rows::<Fusion>();
    let rows = chunk * 2 + 17;
    let (l, r) = (Array2::from_elem((1, 8), 0.25f32), Array2::from_elem((1, 4), -0.75f32));
    let mut model = Fusion::new(SEED);
    let one = model.predict(&FusionInputs { left_features: l.view(), right_features: r.view() }).unwrap();
    let out = model.predict(&FusionInputs { left_features: broadcast_rows(&l, rows), right_features: broadcast_rows(&r, rows) }).unwrap();
    assert_eq!(out.score.dim(), (rows, 1));
    assert!(out.score.iter().all(|&v| v == one.score[[0, 0]]), "a chunk computed something else");
    // The workspace never held more than one chunk, not `rows` rows.
    assert!(model.state().infer.capacity <= chunk, "capacity {} for chunks of {chunk}", model.state().infer.capacity);
    assert!(chunk < rows);
}

#[test]
fn predict_in_chunks_gives_the_whole_batch_values_in_order() {
    let (left, right, _) = fusion::make_data(50, 9);
    let inputs = FusionInputs { left_features: left.view(), right_features: right.view() };
    let mut model = Fusion::new(SEED);
    let whole = model.predict(&inputs).unwrap();
    let chunked = modelc::train::predict_batched(&mut model, &inputs, 7).unwrap();
    assert_eq!(whole, chunked);
}
