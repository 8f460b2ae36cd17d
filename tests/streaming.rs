//! Training, evaluation and prediction on streamed batches (`fit_stream`, `evaluate_stream`,
//! `predict_stream`): the same numbers as the array path on the same batches, errors and panics of the
//! source as `Error::Source`, unknown lengths, the prefetch thread stopped on an early stop, validation
//! streams and arrays, and a steady state that allocates nothing on the training thread.

use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use modelc::ndarray::{s, Array2};
use modelc::prelude::*;
use modelc::{ValidationArrays, ValidationStream};

use crate::counting_alloc;
use counting_alloc::allocations_in;

#[path = "../examples/fusion/model.rs"]
mod fusion;

#[path = "../examples/digits/model.rs"]
mod model;
#[path = "../examples/streaming_digits/source.rs"]
mod source;
use fusion::{make_data, Fusion, FusionInputArrays, FusionInputs, FusionLosses, FusionTargetArrays, FusionTargets};

type Item = Result<Batch<FusionInputArrays, FusionTargetArrays>, String>;

/// The rows `start..end` of the data as an owned batch.
fn batch(data: &(Array2<f32>, Array2<f32>, Array2<f32>), start: usize, end: usize) -> Batch<FusionInputArrays, FusionTargetArrays> {
    let (l, r, y) = data;
    Batch::new(
        FusionInputArrays { left_features: l.slice(s![start..end, ..]).to_owned(), right_features: r.slice(s![start..end, ..]).to_owned() },
        FusionTargetArrays { score: y.slice(s![start..end, ..]).to_owned() },
    )
}

/// The data in batches of `size` rows, in order, the last one smaller.
fn batches(data: &(Array2<f32>, Array2<f32>, Array2<f32>), size: usize) -> Vec<Item> {
    let n = data.0.nrows();
    (0..n).step_by(size).map(|s| Ok(batch(data, s, (s + size).min(n)))).collect()
}

fn quiet(epochs: usize) -> Fit {
    Fit { epochs, batch_size: 8, shuffle: false, verbose: false, ..Fit::default() }
}

fn compile(model: &mut Fusion) -> Trainer<'_, Fusion, Adam> {
    model.compile(Adam::new(0.01), FusionLosses { score: Loss::BinaryCrossentropy }, &[Metric::Accuracy])
}

#[test]
fn the_same_batches_streamed_give_the_weights_and_history_of_the_array_fit_bit_for_bit() {
    let data = make_data(44, 1);
    let (l, r, y) = &data;
    let mut by_arrays = Fusion::new(5);
    let history = compile(&mut by_arrays)
        .fit(&FusionInputs { left_features: l.view(), right_features: r.view() }, &FusionTargets { score: y.view() }, &quiet(3))
        .unwrap();
    let mut streamed = Fusion::new(5);
    let streamed_history = compile(&mut streamed).fit_stream(batches(&data, 8), &quiet(3)).unwrap();
    assert_eq!(streamed.params(), by_arrays.params(), "the weights differ");
    assert_eq!(streamed_history, history);
    assert_eq!(streamed_history.epochs(), 3);
}

#[test]
fn a_stream_of_borrowed_views_of_unknown_length_trains_as_a_stream_of_known_length() {
    let data = make_data(40, 2);
    let (l, r, y) = &data;
    // `filter` forgets the exact length: the progress bar counts batches without a total.
    let views = (0..40).step_by(8).filter(|_| true).map(|s| {
        Ok::<_, Infallible>(Batch::new(
            FusionInputs { left_features: l.slice(s![s..s + 8, ..]), right_features: r.slice(s![s..s + 8, ..]) },
            FusionTargets { score: y.slice(s![s..s + 8, ..]) },
        ))
    });
    assert_eq!(views.size_hint(), (0, Some(5)));
    let fit = Fit { verbose: true, ..quiet(2) };
    let mut unknown = Fusion::new(3);
    let h1 = compile(&mut unknown).fit_stream(views, &fit).unwrap();
    let mut known = Fusion::new(3);
    let h2 = compile(&mut known).fit_stream(batches(&data, 8), &fit).unwrap();
    assert_eq!(unknown.params(), known.params());
    assert_eq!(h1, h2);
}

#[test]
fn an_error_of_the_source_mid_epoch_stops_training_with_the_epoch_the_batch_and_the_message() {
    let data = make_data(32, 3);
    let mut source = batches(&data, 8);
    source[2] = Err("disk read failed".to_string());
    let mut model = Fusion::new(1);
    let (error, history) = compile(&mut model).fit_stream(source, &quiet(2)).unwrap_err().into_parts();
    assert_eq!(error.to_string(), "the data source failed at batch 3 of epoch 1: disk read failed");
    assert!(matches!(error, modelc::Error::Source { batch: 3, .. }));
    assert_eq!(history.epochs(), 0);
    // The error's source is the source's own error.
    assert_eq!(std::error::Error::source(&error).map(|e| e.to_string()), Some("disk read failed".to_string()));
}

#[test]
fn a_panicking_source_is_an_error_not_an_abort() {
    let data = make_data(32, 4);
    let ok = batches(&data, 8);
    let source = (0..4usize).map(move |i| if i == 1 { panic!("corrupt record {i}") } else { ok[i].clone() });
    let mut model = Fusion::new(1);
    let before = model.params().to_vec();
    let error = compile(&mut model).fit_stream(source, &quiet(1)).unwrap_err().error;
    assert_eq!(error.to_string(), "the data source failed at batch 2 of epoch 1: it panicked: corrupt record 1");
    assert_ne!(model.params(), &before[..], "the first batch trained");
}

#[test]
fn a_batch_that_does_not_fit_the_model_names_the_batch() {
    let data = make_data(16, 4);
    let mut source = batches(&data, 8);
    let bad = batch(&data, 0, 8);
    let bad = Batch::new(FusionInputArrays { right_features: Array2::zeros((8, 3)), ..bad.inputs }, bad.targets);
    source[1] = Ok(bad);
    let mut model = Fusion::new(1);
    let error = compile(&mut model).fit_stream(source, &quiet(1)).unwrap_err().error;
    assert_eq!(
        error.to_string(),
        "the data source failed at batch 2 of epoch 1: the batch is not valid: input `right_features`: expected shape (None, 4), got (8, 3)"
    );
}

/// Counts its live clones, to see that the prefetch thread dropped the source.
struct Live(Arc<AtomicUsize>);

impl Clone for Live {
    fn clone(&self) -> Self {
        self.0.fetch_add(1, Ordering::SeqCst);
        Live(self.0.clone())
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Stops training after `after` batches.
struct StopAfter(usize);

impl<N: Network> Callback<N> for StopAfter {
    fn on_train_batch_end(&mut self, batch: usize, _: &LogsView<'_>, ctx: &mut Control<'_, N>) -> modelc::Result<()> {
        if batch + 1 == self.0 {
            ctx.stop_training();
        }
        Ok(())
    }
}

#[test]
fn an_early_stop_on_an_endless_source_shuts_the_prefetch_thread_down() {
    let data = make_data(8, 5);
    let one = batch(&data, 0, 8);
    let live = Arc::new(AtomicUsize::new(1));
    let guard = Live(live.clone());
    let pulled = Arc::new(AtomicUsize::new(0));
    let counter = pulled.clone();
    // An endless generator (Keras' `while True: yield x, y`), holding a clone of the guard.
    let endless = std::iter::repeat(()).map(move |()| {
        let _hold = &guard;
        counter.fetch_add(1, Ordering::SeqCst);
        Ok::<_, Infallible>(one.clone())
    });
    let mut model = Fusion::new(2);
    let history = compile(&mut model).fit_stream_with(endless, modelc::NoValidation, &quiet(5), &mut [&mut StopAfter(3)]).unwrap();
    assert_eq!(history.epochs(), 1);
    assert_eq!(live.load(Ordering::SeqCst), 0, "the prefetch thread still holds the source");
    let pulled = pulled.load(Ordering::SeqCst);
    assert!((3..=3 + 1 + modelc::stream::PREFETCH).contains(&pulled), "{pulled} batches loaded for 3 trained");
}

#[test]
fn steps_per_epoch_cuts_an_endless_source_into_epochs_and_resumes_from_initial_epoch() {
    let data = make_data(8, 6);
    let one = batch(&data, 0, 8);
    let endless = std::iter::repeat_with(move || Ok::<_, Infallible>(one.clone()));
    let fit = Fit { steps_per_epoch: Some(3), initial_epoch: 1, ..quiet(4) };
    let mut model = Fusion::new(2);
    let mut trainer = compile(&mut model);
    let history = trainer.fit_stream(endless.take(1000), &fit).unwrap();
    assert_eq!(history.epoch, vec![1, 2, 3]);
    // Three epochs of three steps each, the same as nine array steps on the same batch.
    let (l, r, y) = &data;
    let mut by_steps = Fusion::new(2);
    let mut t = compile(&mut by_steps);
    for _ in 0..9 {
        t.train_step(&FusionInputs { left_features: l.view(), right_features: r.view() }, &FusionTargets { score: y.view() }).unwrap();
    }
    assert_eq!(by_steps.params(), model.params());
}

#[test]
fn a_pass_shorter_than_steps_per_epoch_ends_the_epoch_and_the_next_starts_a_new_pass() {
    let data = make_data(24, 7);
    let fit = Fit { steps_per_epoch: Some(2), ..quiet(3) };
    let mut model = Fusion::new(2);
    let mut trainer = compile(&mut model);
    // Three batches per pass, two per epoch: epoch 1 = b1 b2, epoch 2 = b3 (the pass runs out), epoch 3 = b1 b2.
    let history = trainer.fit_stream(batches(&data, 8), &fit).unwrap();
    assert_eq!(history.epochs(), 3);
    let mut by_steps = Fusion::new(2);
    let mut t = compile(&mut by_steps);
    for s in [0, 8, 16, 0, 8] {
        let b = batch(&data, s, s + 8);
        t.train_step(&b.inputs.view(), &b.targets.view()).unwrap();
    }
    assert_eq!(by_steps.params(), model.params());
}

#[test]
fn an_empty_source_is_an_error() {
    let mut model = Fusion::new(2);
    let error = compile(&mut model).fit_stream(Vec::<Item>::new(), &quiet(1)).unwrap_err().error;
    assert_eq!(error.to_string(), "the data source failed at batch 1 of epoch 1: it yielded no batch");
}

#[test]
fn settings_a_stream_cannot_honour_are_errors() {
    let data = make_data(8, 8);
    let mut model = Fusion::new(2);
    let mut trainer = compile(&mut model);
    let split = Fit { validation_split: 0.2, ..quiet(1) };
    let e = trainer.fit_stream(batches(&data, 8), &split).unwrap_err().error;
    assert!(e.to_string().contains("cannot split a stream"), "{e}");
    let sw = Fit { sample_weight: Some(vec![1.0; 8].into()), ..quiet(1) };
    let e = trainer.fit_stream(batches(&data, 8), &sw).unwrap_err().error;
    assert!(e.to_string().contains("give each batch its `Batch::sample_weight`"), "{e}");
    let bad = Fit { class_weight: Some(vec![(0, -2.0)]), ..quiet(1) };
    let e = trainer.fit_stream(batches(&data, 8), &bad).unwrap_err().error;
    assert!(e.to_string().contains("the weight of class 0 must be finite and not negative"), "{e}");
}

#[test]
fn class_weight_on_a_stream_weighs_each_batch_as_the_array_fit_does() {
    let data = make_data(40, 14);
    let (l, r, y) = &data;
    let fit = Fit { class_weight: Some(vec![(0, 1.0), (1, 4.0)]), ..quiet(2) };
    let mut by_arrays = Fusion::new(8);
    let history = compile(&mut by_arrays)
        .fit(&FusionInputs { left_features: l.view(), right_features: r.view() }, &FusionTargets { score: y.view() }, &fit)
        .unwrap();
    let mut streamed = Fusion::new(8);
    let streamed_history = compile(&mut streamed).fit_stream(batches(&data, 8), &fit).unwrap();
    assert_eq!(streamed.params(), by_arrays.params());
    assert_eq!(streamed_history, history);
    // Weights of its own in a batch and class_weight together are an error, as in Keras.
    let mut weighted = batches(&data, 8);
    weighted[1] = Ok(batch(&data, 8, 16).with_sample_weight(vec![1.0; 8]));
    let mut model = Fusion::new(8);
    let e = compile(&mut model).fit_stream(weighted, &fit).unwrap_err().error;
    assert!(e.to_string().starts_with("the data source failed at batch 2 of epoch 1: invalid configuration: `class_weight`"), "{e}");
}

#[test]
fn evaluate_and_predict_on_streams_equal_the_array_calls() {
    let data = make_data(30, 9);
    let (l, r, y) = &data;
    let inputs = FusionInputs { left_features: l.view(), right_features: r.view() };
    let targets = FusionTargets { score: y.view() };
    let mut model = Fusion::new(4);
    let mut trainer = compile(&mut model);
    trainer.fit(&inputs, &targets, &quiet(2)).unwrap();
    let w: Vec<f32> = (0..30).map(|i| (i % 3) as f32 * 0.5).collect();
    let weighted = trainer.evaluate_weighted(&inputs, &targets, 8, &SampleWeight::from(w.clone())).unwrap();
    let weighted_batches: Vec<Item> = batches(&data, 8)
        .into_iter()
        .enumerate()
        .map(|(k, b)| b.map(|b| b.with_sample_weight(w[k * 8..(k * 8 + 8).min(30)].to_vec())))
        .collect();
    let streamed = trainer.evaluate_stream(weighted_batches).unwrap();
    for (k, v) in &weighted {
        assert!((v - streamed[k]).abs() < 1e-6, "{k}: {v} vs {}", streamed[k]);
    }
    let predicted = trainer.predict(&inputs, 8).unwrap();
    let input_batches = batches(&data, 7).into_iter().map(|b| b.map(|b| b.inputs));
    let streamed = trainer.predict_stream(input_batches).unwrap();
    assert_eq!(streamed.score, predicted.score);
}

#[test]
fn validation_by_stream_or_by_weighted_arrays_gives_the_val_values_of_evaluate() {
    let data = make_data(40, 10);
    let val = make_data(20, 11);
    let (vl, vr, vy) = &val;
    let val_inputs = FusionInputs { left_features: vl.view(), right_features: vr.view() };
    let val_targets = FusionTargets { score: vy.view() };
    let w = SampleWeight::from((0..20).map(|i| if i < 10 { 2.0 } else { 0.5 }).collect::<Vec<f32>>());

    let mut by_stream = Fusion::new(6);
    let mut trainer = compile(&mut by_stream);
    let history = trainer.fit_stream_with(batches(&data, 8), ValidationStream(batches(&val, 8)), &quiet(2), &mut []).unwrap();
    let evaluated = trainer.evaluate(&val_inputs, &val_targets, 8).unwrap();
    assert_eq!(history.last("val_loss"), Some(evaluated["loss"]));
    assert_eq!(history.last("val_accuracy"), Some(evaluated["accuracy"]));

    let mut by_arrays = Fusion::new(6);
    let mut trainer = compile(&mut by_arrays);
    let validation = ValidationArrays::new(&val_inputs, &val_targets).weighted(&w);
    let history = trainer.fit_stream_with(batches(&data, 8), validation, &quiet(2), &mut []).unwrap();
    let evaluated = trainer.evaluate_weighted(&val_inputs, &val_targets, 8, &w).unwrap();
    assert_eq!(history.last("val_loss"), Some(evaluated["loss"]));
    assert_eq!(by_arrays.params(), by_stream.params(), "validation changed the training");
}

#[test]
fn steady_state_streamed_steps_allocate_nothing_on_the_training_thread() {
    let data = make_data(8 * 24, 12);
    let mut model = Fusion::new(7);
    let mut trainer = compile(&mut model);
    let fit = quiet(1);
    // Warm up (the workspace, the staging buffers, the logs' keys), then count whole fits of 4 and of 24
    // batches: the batches are built (and allocated) on the prefetch thread; what the training thread
    // allocates per fit (the thread, the channel, the history) does not grow with the batches.
    let few = batches(&data, 8)[..4].to_vec();
    let many = batches(&data, 8);
    trainer.fit_stream(few.clone(), &fit).unwrap();
    block_once_on_a_channel();
    let n_few = allocations_in(|| {
        trainer.fit_stream(few, &fit).unwrap();
    });
    let n_many = allocations_in(|| {
        trainer.fit_stream(many, &fit).unwrap();
    });
    assert!(n_few > 0, "the counter sees the fit's own allocations (the thread, the channel, the history)");
    assert_eq!(n_many, n_few, "{n_few} allocations for 4 batches, {n_many} for 24: the steps allocate");
}

/// Makes this thread wait once in a `std::sync::mpsc` receive. std's channels allocate a thread's
/// waiting context the first time that thread blocks, once per thread: whether the training thread first
/// blocks on the prefetch channel during the warm-up or later depends on the prefetch thread's timing
/// (on a loaded machine, later), so the count above would see that one allocation or not.
fn block_once_on_a_channel() {
    let (tx, rx) = std::sync::mpsc::sync_channel::<()>(0);
    let sender = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(20));
        tx.send(()).unwrap();
    });
    rx.recv().unwrap();
    sender.join().unwrap();
}

/// The example's source: the digits file streamed through gzip, a part of it, shuffled anew every pass.
fn digits_file(keep: Vec<bool>, shuffle: bool) -> source::DigitsFile {
    source::DigitsFile {
        path: concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz").into(),
        keep: Arc::new(keep),
        shuffle: shuffle.then(|| Arc::new(std::sync::atomic::AtomicU64::new(0))),
        seed: 42,
    }
}

#[test]
fn the_streaming_digits_source_yields_every_kept_row_once_per_pass_and_trains_the_digits_model() {
    let path = std::path::Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/data/digits/digits.csv.gz"));
    let n = source::count_rows(path).unwrap();
    let all = modelc::datasets::load_digits(path).unwrap();
    assert_eq!(n, all.len());
    // Every third sample, unshuffled: the same rows as loaded in memory, in order, in batches of 32.
    let keep: Vec<bool> = (0..n).map(|i| i % 3 == 0).collect();
    let rows: Vec<usize> = (0..n).filter(|i| i % 3 == 0).collect();
    let batches: Vec<_> = digits_file(keep.clone(), false).into_iter().map(Result::unwrap).collect();
    assert_eq!(batches.len(), rows.len().div_ceil(source::BATCH));
    let images: Vec<f32> = batches.iter().flat_map(|b| b.inputs.image.iter().copied()).collect();
    let want: Vec<f32> =
        rows.iter().flat_map(|&r| all.images.index_axis(modelc::ndarray::Axis(0), r).iter().copied().collect::<Vec<_>>()).collect();
    assert_eq!(images, want);
    // Shuffled: the same rows in another order, and another order on the next pass.
    let shuffled = digits_file(keep, true);
    let labels = |file: &source::DigitsFile| -> Vec<usize> {
        file.clone()
            .into_iter()
            .flat_map(|b| b.unwrap().targets.digit.outer_iter().map(|r| r.iter().position(|&v| v == 1.0).unwrap()).collect::<Vec<_>>())
            .collect()
    };
    let (first, second) = (labels(&shuffled), labels(&shuffled));
    let mut sorted = first.clone();
    sorted.sort_unstable();
    let mut want: Vec<usize> = rows.iter().map(|&r| usize::from(all.labels[r])).collect();
    want.sort_unstable();
    assert_eq!(sorted, want);
    assert_ne!(first, second, "each pass shuffles anew");
    // Two epochs of the digits model on the stream: the loss falls.
    let mut net = model::DigitNet::new(1);
    let mut trainer = net.compile(Adam::new(2e-3), model::DigitNetLosses { digit: Loss::CategoricalCrossentropy }, &[Metric::Accuracy]);
    let history = trainer.fit_stream(shuffled, &quiet(2)).unwrap();
    let loss = history.get("loss").unwrap();
    assert!(loss[1] < loss[0], "{loss:?}");
    // A missing file is the source's error, not a panic.
    let missing = source::DigitsFile { path: "/nonexistent/digits.csv.gz".into(), ..digits_file(vec![true; n], false) };
    let e = trainer.fit_stream(missing, &quiet(1)).unwrap_err().error;
    assert!(e.to_string().starts_with("the data source failed at batch 1 of epoch 1: /nonexistent/digits.csv.gz:"), "{e}");
}

#[test]
fn an_error_of_the_validation_stream_names_the_validation_after_the_epoch() {
    let data = make_data(16, 13);
    let mut val = batches(&data, 8);
    val[1] = Err("validation shard missing".to_string());
    let mut model = Fusion::new(1);
    let (error, history) =
        compile(&mut model).fit_stream_with(batches(&data, 8), ValidationStream(val), &quiet(2), &mut []).unwrap_err().into_parts();
    assert_eq!(error.to_string(), "the data source failed at batch 2 of the validation after epoch 1: validation shard missing");
    assert_eq!(history.epochs(), 0, "the epoch whose validation failed is not recorded");
}

#[test]
fn validation_freq_and_validation_steps_validate_every_nth_epoch_on_the_first_batches() {
    // Keras' `validation_freq=2`: epochs 2 and 4 of 4 validate, so `val_loss` has two values; with
    // `validation_steps=2` each validation is the first two batches of a fresh pass of the stream (as
    // a `keras.utils.PyDataset` restarts), here 16 of the 20 validation rows.
    let data = make_data(32, 14);
    let val = make_data(20, 15);
    let (vl, vr, vy) = &val;
    let first =
        |n: usize| (FusionInputs { left_features: vl.slice(s![..n, ..]), right_features: vr.slice(s![..n, ..]) }, vy.slice(s![..n, ..]));
    let fit = Fit { validation_freq: 2, validation_steps: Some(2), ..quiet(4) };
    let mut model = Fusion::new(3);
    let mut trainer = compile(&mut model);
    let history = trainer.fit_stream_with(batches(&data, 8), ValidationStream(batches(&val, 8)), &fit, &mut []).unwrap();
    assert_eq!(history.get("loss").map(<[f64]>::len), Some(4));
    assert_eq!(history.get("val_loss").map(<[f64]>::len), Some(2), "{history:?}");
    assert_eq!(history.logged_at.get("val_loss").map(Vec::as_slice), Some(&[1, 3][..]));
    // The CSV leaves the epochs without validation empty in the `val_` columns and aligns the others.
    let csv = history.to_csv();
    let rows: Vec<&str> = csv.lines().collect();
    assert_eq!(rows[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    assert!(rows[1].starts_with("0,") && rows[1].ends_with(",,"), "{csv}");
    assert!(rows[4].ends_with(&format!(",{}", history.last("val_loss").unwrap())), "{csv}");
    let (inputs, targets) = first(16);
    let evaluated = trainer.evaluate(&inputs, &FusionTargets { score: targets }, 8).unwrap();
    assert_eq!(history.last("val_loss"), Some(evaluated["loss"]));
    let (all_in, all_t) = first(20);
    let all = trainer.evaluate(&all_in, &FusionTargets { score: all_t }, 8).unwrap();
    assert_ne!(all["loss"], evaluated["loss"], "the steps limit must matter for this data");

    // Validation arrays: the first `validation_steps` batches of `batch_size` rows; an early stop on
    // `val_loss` skips the epochs without validation, as Keras' callbacks skip a missing value.
    let (val_inputs, val_targets) = first(20);
    let val_targets = FusionTargets { score: val_targets };
    let stop = EarlyStopping { monitor: "val_loss".into(), patience: 5, ..EarlyStopping::default() };
    let fit = Fit { validation_freq: 3, validation_steps: Some(1), early_stopping: Some(stop), ..quiet(3) };
    let validation = ValidationArrays::new(&val_inputs, &val_targets);
    let history = trainer.fit_stream_with(batches(&data, 8), validation, &fit, &mut []).unwrap();
    assert_eq!(history.get("val_loss").map(<[f64]>::len), Some(1));
    let (inputs, targets) = first(8);
    assert_eq!(history.last("val_loss"), Some(trainer.evaluate(&inputs, &FusionTargets { score: targets }, 8).unwrap()["loss"]));

    // The array `fit` takes both as well.
    let (dl, dr, dy) = &data;
    let train_inputs = FusionInputs { left_features: dl.view(), right_features: dr.view() };
    let fit = Fit { validation_freq: 2, validation_steps: Some(1), ..quiet(4) };
    let history =
        trainer.fit_with_validation_data(&train_inputs, &FusionTargets { score: dy.view() }, (&val_inputs, &val_targets), &fit).unwrap();
    assert_eq!(history.get("val_loss").map(<[f64]>::len), Some(2));
    assert_eq!(history.last("val_loss"), Some(trainer.evaluate(&inputs, &FusionTargets { score: targets }, 8).unwrap()["loss"]));

    for (bad, key) in
        [(Fit { validation_freq: 0, ..quiet(1) }, "validation_freq"), (Fit { validation_steps: Some(0), ..quiet(1) }, "validation_steps")]
    {
        let e = trainer.fit_stream(batches(&data, 8), &bad).unwrap_err().error.to_string();
        assert!(e.contains(key), "{e}");
        let e = trainer.fit(&train_inputs, &FusionTargets { score: dy.view() }, &bad).unwrap_err().error.to_string();
        assert!(e.contains(key), "{e}");
    }
}
