//! The training loop (Keras 3 `compile`/`fit`/`evaluate`/`predict` semantics) over a compiled model.
//!
//! A [`Trainer`] borrows the model, owns the optimizer, the gradient buffer and the target staging
//! buffers, and reuses the model's workspace: after the first step of a given batch size, a
//! training step allocates nothing.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::Path;
use std::time::Instant;

use crate::callbacks::{Callback, Checkpoint, Control, EarlyStopping, LogsView, Schedule};
use crate::distributed::{Collective, Local};
use crate::error::{Error, Result};
use crate::kernels::activation::Activation;
use crate::loss::Loss;
use crate::metrics::{Metric, MetricState, MetricTracker};
use crate::model::{
    check_inputs, check_shape, gather_input, input_buffer, output_slice, output_spec, output_vecs, run_forward, run_inference, see_inputs,
    stage_checked_inputs, BatchCheck, Rows,
};
use crate::network::{zero_param_grads, Input, InputView, Network, State};
use crate::optim::{Optimizer, StateMut};
use crate::spec::{DType, TensorSpec};
use crate::workspace::{rows_len, try_reserve_len, Layout};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use ndarray::ArrayViewD;

/// Settings of [`Trainer::fit`], named as Keras' `fit` arguments.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    /// Passes over the training rows (Keras default 1).
    pub epochs: usize,
    /// Rows per gradient step; the last batch of an epoch may be smaller (Keras default 32).
    pub batch_size: usize,
    /// Visit the training rows in a new seeded random order every epoch (Keras default true).
    pub shuffle: bool,
    /// Seed of the shuffling.
    pub seed: u64,
    /// Fraction in `[0, 1)` of the rows, taken from the END before any shuffling, held out and
    /// evaluated after every epoch (`val_` keys of the history).
    pub validation_split: f32,
    /// Show a progress bar per epoch (one plain line per epoch on stderr when stderr is not a
    /// terminal); nothing when false.
    pub verbose: bool,
    /// Learning rate per optimizer step (Keras' `LearningRateSchedule`); the optimizer's own rate when `None`.
    pub schedule: Option<Schedule>,
    /// Stop when a monitored value stops improving (Keras' `EarlyStopping`): a shorthand for passing it
    /// to [`Trainer::fit_with_callbacks`], told before the callbacks passed there.
    pub early_stopping: Option<EarlyStopping>,
    /// Save the last and the best weights after each epoch (two Keras `ModelCheckpoint`s): a shorthand
    /// for passing [`Checkpoint::into_callbacks`] to [`Trainer::fit_with_callbacks`].
    pub checkpoint: Option<Checkpoint>,
    /// Epoch to start from (Keras' `initial_epoch`): epochs `initial_epoch + 1 ..= epochs` run, and the
    /// history holds only those. The schedule follows the optimizer steps already taken, not the epoch.
    /// The skipped epochs' shuffles are drawn (and their batches counted) without training, so the
    /// resumed epochs see the batches an uninterrupted run with the same `seed` sees: with a training
    /// checkpoint ([`Trainer::load_checkpoint`]) the weights are those of one run, bit for bit.
    pub initial_epoch: usize,
    /// Batches per epoch (Keras' `steps_per_epoch`); `None` for one pass over the training rows. With
    /// fewer, the next epoch goes on from the next batch of the same pass, and a new (shuffled) pass
    /// starts when one is used up, as Keras 3 iterates arrays; an epoch never spans two passes. More
    /// batches than a pass holds is an error.
    pub steps_per_epoch: Option<usize>,
    /// Weights of the training samples in the loss and the weighted metrics (Keras' `sample_weight`): one per
    /// row of the data, shuffled with the rows; the rows `validation_split` holds out keep theirs for
    /// the `val_` values. See [`SampleWeight`].
    pub sample_weight: Option<SampleWeight>,
    /// A weight per class id (Keras' `class_weight={class: weight}`): each training sample is weighted
    /// by its target's class (the integer class id, the one-hot target's argmax, or a single target
    /// value rounded), 1 for classes not listed. Single-output models only, and not together with
    /// `sample_weight` (as in Keras); validation rows are not weighted.
    pub class_weight: Option<Vec<(usize, f32)>>,
    /// Validate after every `validation_freq`-th epoch only (Keras' integer `validation_freq`, default
    /// 1): after epochs `validation_freq`, `2 · validation_freq`, ... counted from 1, so the `val_` keys
    /// of the history have one value per validated epoch, as in Keras. Must be at least 1.
    pub validation_freq: usize,
    /// At most this many batches of the validation data per validation (Keras' `validation_steps`):
    /// the first `validation_steps` batches of a validation stream (a fresh pass of it each time), or of
    /// the validation rows in batches of `batch_size`; `None` (the default) for all of them. Must be at
    /// least 1.
    pub validation_steps: Option<usize>,
    /// Under `mpirun` (feature `mpi`, after [`Mpi::init`](crate::distributed)): whether `fit` trains
    /// data-parallel over every process (true, the default), or in this process alone on all the rows,
    /// exactly as without MPI (a single-process reference run beside a data-parallel one, or a model one
    /// rank trains by itself; every rank that does runs every callback, those that write files too).
    /// No effect without MPI.
    pub data_parallel: bool,
    /// Data-parallel only: sum the gradients over the processes while backward runs, in buckets of
    /// about this many bytes sent in the order backward finishes the layers (reverse layer order, as
    /// PyTorch DDP's `bucket_cap_mb`); the default is [`Fit::OVERLAP_BUCKET`] (1 MiB), measured faster
    /// than the sum after backward on BENCH M4 (`docs/distributed.md`). `None`: one `MPI_Allreduce`
    /// after backward. Every step sums the same values either way: on 2 processes the same bits; on
    /// more, MPI may associate the sum in another order, so the two settings end a few ulps apart
    /// (each the same from run to run). The weights stay the same bits on every rank and within
    /// rounding of one process'.
    pub overlap_buckets: Option<usize>,
}

/// Per-sample weights of the loss and the metrics (Keras' `sample_weight`).
///
/// Each sample's loss (reduced over its last axis) is multiplied by its weight, then the batch's values
/// are summed and divided by the number of samples, not by the sum of the weights (Keras 3's
/// `"sum_over_batch_size"`): the gradient of each sample scales by its weight. As in Keras 3, only the
/// weighted metrics ([`Trainer::with_weighted_metrics`], Keras' `weighted_metrics`) weigh the samples
/// (weighted accuracy is `Σ w·correct / Σ w`); the metrics of `compile` ignore the weights. The logged
/// loss is each batch's weighted loss averaged over the batches by their number of samples, as Keras'
/// loss tracker does (not by the sum of the weights).
///
/// Every weight must be finite and not negative, and there must be one per row of the data.
#[derive(Clone, Debug, PartialEq)]
pub enum SampleWeight {
    /// One weight per sample, applied to every output (Keras' single array, `sample_weight=w`).
    All(Vec<f32>),
    /// One array per output, by output name (Keras' dict, `sample_weight={"y": w, "z": v}`); every
    /// output must be named, as Keras requires one array per output.
    PerOutput(Vec<(String, Vec<f32>)>),
}

impl From<Vec<f32>> for SampleWeight {
    fn from(w: Vec<f32>) -> Self {
        SampleWeight::All(w)
    }
}

impl From<&[f32]> for SampleWeight {
    fn from(w: &[f32]) -> Self {
        SampleWeight::All(w.to_vec())
    }
}

impl From<ndarray::ArrayView1<'_, f32>> for SampleWeight {
    fn from(w: ndarray::ArrayView1<'_, f32>) -> Self {
        SampleWeight::All(w.iter().copied().collect())
    }
}

impl SampleWeight {
    /// One array per output, by output name (Keras' `sample_weight` dict).
    pub fn per_output<S: Into<String>, W: Into<Vec<f32>>>(arrays: impl IntoIterator<Item = (S, W)>) -> Self {
        SampleWeight::PerOutput(arrays.into_iter().map(|(s, w)| (s.into(), w.into())).collect())
    }

    /// The weights of output `name` (`None` when a per-output weighting does not name it).
    fn of(&self, name: &str) -> Option<&[f32]> {
        match self {
            SampleWeight::All(w) => Some(w),
            SampleWeight::PerOutput(v) => v.iter().find(|(n, _)| n == name).map(|(_, w)| w.as_slice()),
        }
    }

    /// Checks the weights for outputs `outputs` and `n` rows of data: one array per output (every name
    /// known, none missing or repeated), `n` weights each, every weight finite and not negative.
    /// Allocates nothing unless it fails.
    pub(crate) fn check(&self, outputs: &[TensorSpec], n: usize) -> Result<()> {
        if let SampleWeight::PerOutput(v) = self {
            for (i, (name, _)) in v.iter().enumerate() {
                if !outputs.iter().any(|o| o.name == name) {
                    return Err(Error::config(
                        "sample_weight",
                        name,
                        format!(
                            "names no output; the outputs are {}",
                            outputs.iter().map(|o| format!("`{}`", o.name)).collect::<Vec<_>>().join(", ")
                        ),
                    ));
                }
                if v[..i].iter().any(|(m, _)| m == name) {
                    return Err(Error::config("sample_weight", name, "names this output twice; give one array per output"));
                }
            }
            if let Some(o) = outputs.iter().find(|o| self.of(o.name).is_none()) {
                return Err(Error::config(
                    "sample_weight",
                    o.name,
                    "has no array for this output; give one per output (as Keras requires), or one array for all",
                ));
            }
        }
        for o in outputs.iter().map(|o| o.name) {
            let Some(w) = self.of(o) else { continue };
            let whose = || if matches!(self, SampleWeight::All(_)) { String::new() } else { format!(" of output `{o}`") };
            if w.len() != n {
                return Err(Error::config(
                    "sample_weight",
                    format!("{} weights", w.len()),
                    format!("the data has {n} samples; give one weight per sample{}", whose()),
                ));
            }
            if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
                return Err(Error::config(
                    "sample_weight",
                    w[i],
                    format!("the weight of sample {i}{} must be finite and not negative", whose()),
                ));
            }
        }
        Ok(())
    }
}

/// The class of one sample's target, as Keras' `class_weight_to_sample_weights` reads it: the value itself
/// when there is one, else the position of the first largest value (the argmax of a one-hot target).
fn class_of(values: impl Iterator<Item = f32>) -> f32 {
    let (mut best, mut at, mut len) = (f32::NEG_INFINITY, 0usize, 0usize);
    let mut first = 0.0;
    for (i, v) in values.enumerate() {
        if i == 0 {
            first = v;
        }
        if v > best {
            (best, at) = (v, i);
        }
        len += 1;
    }
    if len == 1 {
        first
    } else {
        at as f32
    }
}

/// [`Trainer::class_weights`] without a trainer (what a streamed fit applies to each batch on its prefetch thread).
pub(crate) fn class_weights_of<N: Network>(targets: &N::Targets<'_>, class_weight: &[(usize, f32)]) -> Result<SampleWeight> {
    check_class_weight(class_weight)?;
    if N::OUTPUTS.len() != 1 {
        return Err(Error::config(
            "class_weight",
            format!("{class_weight:?}"),
            format!(
                "is only supported for models with a single output (as in Keras); model `{}` has {}: give a `SampleWeight::PerOutput` instead",
                N::NAME,
                N::OUTPUTS.len()
            ),
        ));
    }
    let weight_of = |y: f32| {
        let c = y.round_ties_even();
        class_weight.iter().find(|&&(k, _)| c >= 0.0 && k as f32 == c).map_or(1.0, |&(_, w)| w)
    };
    let mut weights = Vec::new();
    N::visit_targets(targets, &mut |o, target| {
        let name = N::TARGETS.get(o).or(N::OUTPUTS.get(o)).map_or("?", |s| s.name);
        let one_class = |shape: &[usize]| -> Result<()> {
            match shape {
                [_] | [_, _] => Ok(()),
                _ => Err(Error::config(
                    "class_weight",
                    format!("{class_weight:?}"),
                    format!("needs one class per sample; target `{name}` has shape {:?} per sample", &shape[1..]),
                )),
            }
        };
        match target.view() {
            InputView::F32(v) => {
                one_class(v.shape())?;
                weights.extend(v.outer_iter().map(|row| weight_of(class_of(row.iter().copied()))));
            }
            InputView::I32(v) => {
                one_class(v.shape())?;
                weights.extend(v.outer_iter().map(|row| weight_of(class_of(row.iter().map(|&c| c as f32)))));
            }
        }
        Ok(())
    })?;
    Ok(SampleWeight::All(weights))
}

/// Checks a `class_weight` list: each class once, every weight finite and not negative.
pub(crate) fn check_class_weight(class_weight: &[(usize, f32)]) -> Result<()> {
    for (i, &(c, w)) in class_weight.iter().enumerate() {
        if class_weight[..i].iter().any(|&(d, _)| d == c) {
            return Err(Error::config("class_weight", c, "lists this class twice; give one weight per class"));
        }
        if !(w.is_finite() && w >= 0.0) {
            return Err(Error::config("class_weight", w, format!("the weight of class {c} must be finite and not negative")));
        }
    }
    Ok(())
}

impl Default for Fit {
    fn default() -> Self {
        Fit {
            epochs: 1,
            batch_size: 32,
            shuffle: true,
            seed: 0,
            validation_split: 0.0,
            verbose: true,
            schedule: None,
            early_stopping: None,
            checkpoint: None,
            initial_epoch: 0,
            steps_per_epoch: None,
            sample_weight: None,
            class_weight: None,
            validation_freq: 1,
            validation_steps: None,
            data_parallel: true,
            overlap_buckets: Some(Fit::OVERLAP_BUCKET),
        }
    }
}

impl Fit {
    /// The default [`overlap_buckets`](Fit::overlap_buckets), in bytes: 1 MiB. On BENCH M4 (2.7 MB of
    /// gradients) 1 MiB and 256 KiB buckets both beat the sum after backward in every round measured,
    /// within noise of each other; 1 MiB sends fewer messages, each of which costs a latency on a real
    /// network (PyTorch DDP's 25 MB default serves models 100× larger).
    pub const OVERLAP_BUCKET: usize = 1 << 20;

    /// Whether epoch `epoch` (from 1) validates (Keras' `_should_eval` with an integer frequency).
    pub(crate) fn validates(&self, epoch: usize) -> bool {
        epoch.is_multiple_of(self.validation_freq.max(1))
    }

    /// The validation rows `rows` limited to `validation_steps` batches of `batch_size`.
    pub(crate) fn validation_rows(&self, rows: std::ops::Range<usize>) -> std::ops::Range<usize> {
        match self.validation_steps {
            Some(steps) => rows.start..rows.end.min(rows.start.saturating_add(steps.saturating_mul(self.batch_size))),
            None => rows,
        }
    }

    /// Checks `validation_freq` and `validation_steps`.
    pub(crate) fn check_validation(&self) -> Result<()> {
        if self.validation_freq == 0 {
            return Err(Error::config("validation_freq", 0, "must be at least 1 (validate after every epoch with 1)"));
        }
        if self.validation_steps == Some(0) {
            return Err(Error::config("validation_steps", 0, "must be at least 1 (`None` validates on all the batches)"));
        }
        Ok(())
    }
}

/// One value per log key for one epoch or one evaluation (`loss`, `accuracy`, `val_loss`, ...).
pub type Logs = BTreeMap<String, f64>;

/// What `fit` returns: every logged value per epoch, keyed like Keras 3's `history.history`.
///
/// A single-output model logs `loss` and one key per metric (`accuracy`, `mean_squared_error`,
/// ...); a model with several outputs logs the weighted total `loss`, each output's unweighted
/// `<output>_loss` and `<output>_<metric>`. Validation values have the same keys prefixed `val_`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Key to one value per epoch.
    pub history: BTreeMap<String, Vec<f64>>,
    /// The index of each epoch recorded, counted from 0 as Keras' `history.epoch`: from
    /// `initial_epoch` on when training resumes.
    pub epoch: Vec<usize>,
    /// Per key, the epochs (as in [`epoch`](Self::epoch)) its values belong to: every recorded epoch,
    /// except for the `val_` keys when `Fit::validation_freq` skipped some (Keras' history then holds
    /// fewer values for them too).
    pub logged_at: BTreeMap<String, Vec<usize>>,
}

impl History {
    /// The values of `key`, one per epoch.
    pub fn get(&self, key: &str) -> Option<&[f64]> {
        self.history.get(key).map(Vec::as_slice)
    }

    /// The value of `key` after the last epoch.
    pub fn last(&self, key: &str) -> Option<f64> {
        self.history.get(key).and_then(|v| v.last().copied())
    }

    /// Number of epochs recorded.
    pub fn epochs(&self) -> usize {
        self.history.values().map(Vec::len).max().unwrap_or(0)
    }

    /// The keys, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.history.keys().map(String::as_str)
    }

    /// Appends one epoch's logs, numbered after the last one recorded (0 first).
    pub fn push(&mut self, logs: &Logs) {
        let next = self.epoch.last().map_or(0, |e| e + 1);
        self.push_epoch(next, logs);
    }

    /// Appends the logs of epoch `epoch` (counted from 0).
    pub fn push_epoch(&mut self, epoch: usize, logs: &Logs) {
        self.epoch.push(epoch);
        for (k, &v) in logs {
            self.logged_at.entry(k.clone()).or_default().push(epoch);
            self.history.entry(k.clone()).or_default().push(v);
        }
    }

    /// The history as CSV, like Keras' `CSVLogger`: header `epoch,<keys...>` (keys sorted),
    /// then one line per epoch numbered as [`epoch`](Self::epoch) (from 0, or from `initial_epoch`).
    pub fn to_csv(&self) -> String {
        let mut out = String::from("epoch");
        for k in self.history.keys() {
            out.push(',');
            out.push_str(&csv_field(k));
        }
        out.push('\n');
        for e in 0..self.epochs() {
            let at = self.epoch.get(e).copied().unwrap_or(e);
            out.push_str(&at.to_string());
            for (k, v) in &self.history {
                out.push(',');
                // A key logged at fewer epochs (`validation_freq`) leaves the others empty.
                let i = match self.logged_at.get(k) {
                    Some(epochs) if epochs.len() == v.len() => epochs.iter().position(|&x| x == at),
                    _ => Some(e),
                };
                if let Some(x) = i.and_then(|i| v.get(i)) {
                    out.push_str(&x.to_string());
                }
            }
            out.push('\n');
        }
        out
    }

    /// Writes [`to_csv`](Self::to_csv) to `path` (through a temporary file and a rename).
    pub fn write_csv(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::write_atomic(path.as_ref(), self.to_csv().as_bytes())
    }
}

/// Sets `key` in `logs`, allocating only when the key is new.
fn set_log(logs: &mut Logs, key: &str, value: f64) {
    match logs.get_mut(key) {
        Some(v) => *v = value,
        None => {
            logs.insert(key.to_string(), value);
        }
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// What [`Trainer::fit`] returns when it stops on an error: the error and the history of the epochs
/// completed before it (empty when the error came before training started).
///
/// It displays as its error, and converts into [`Error`], so `?` works in a function returning
/// `modelc::Result` (dropping the history) as well as in one returning `Box<dyn std::error::Error>`.
/// Match on [`FitError::error`] for the kind of failure.
#[derive(Debug)]
pub struct FitError {
    /// Why training stopped.
    pub error: Error,
    /// The logs of every epoch completed before the error (boxed, to keep `Result`s small).
    pub history: Box<History>,
}

impl FitError {
    /// The error and the partial history.
    pub fn into_parts(self) -> (Error, History) {
        (self.error, *self.history)
    }
}

impl std::fmt::Display for FitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(&self.error, f)
    }
}

impl std::error::Error for FitError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        std::error::Error::source(&self.error)
    }
}

impl From<FitError> for Error {
    fn from(e: FitError) -> Self {
        e.error
    }
}

/// The parameters before the last optimizer step, to undo a step that made one non-finite.
///
/// Two buffers in turn: after a step, one pass over the parameters checks them and copies them into
/// `next`, which becomes `prev` (a swap). A fault found by that pass is undone from `prev`, which the
/// pass has not touched. Allocated on the first training step, reused after.
#[derive(Debug, Default)]
struct Rollback {
    prev: Vec<f32>,
    next: Vec<f32>,
    /// Whether `prev` holds the current parameters (false until the first step, and after anything
    /// other than a step may have changed them).
    valid: bool,
}

/// Elements per block of the finiteness scans: a block is checked in one vectorized pass, and only a
/// block holding a non-finite value is searched element by element.
const SCAN_BLOCK: usize = 1024;

/// Whether every value of `x` is finite: one vectorizable pass comparing exponent bits, no early exit.
#[inline(always)]
fn all_finite(x: &[f32]) -> bool {
    const EXP: u32 = 0x7f80_0000;
    let mut bad = 0u32;
    for v in x {
        bad |= u32::from(v.to_bits() & EXP == EXP);
    }
    bad == 0
}

/// The position of the first non-finite value of `x`, scanned a block at a time (in 8-lane vectors where
/// the CPU has AVX2, as Adam's pass; a short `x`, such as a sample at batch 1, in line).
#[inline]
pub(crate) fn first_non_finite(x: &[f32]) -> Option<usize> {
    if x.len() <= SHORT_SCAN {
        return if all_finite(x) { None } else { x.iter().position(|v| !v.is_finite()) };
    }
    first_non_finite_long(x)
}

/// Most values [`first_non_finite`] scans in line, without dispatching.
const SHORT_SCAN: usize = 64;

/// [`first_non_finite`] of a longer `x`.
fn first_non_finite_long(x: &[f32]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { first_non_finite_avx2(x) };
    }
    first_non_finite_portable(x)
}

/// [`first_non_finite`] compiled for AVX2. Safety: the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn first_non_finite_avx2(x: &[f32]) -> Option<usize> {
    first_non_finite_portable(x)
}

#[inline(always)]
fn first_non_finite_portable(x: &[f32]) -> Option<usize> {
    for (b, block) in x.chunks(SCAN_BLOCK).enumerate() {
        if !all_finite(block) {
            return block.iter().position(|v| !v.is_finite()).map(|i| b * SCAN_BLOCK + i);
        }
    }
    None
}

/// Checks `src` block by block, copying each finite block into `dst` (same length); returns the position
/// of the first non-finite value, leaving the blocks from its own on uncopied. In 8-lane vectors where
/// the CPU has AVX2 (a fifth faster than SSE2 on BENCH M4's 670k parameters: 66 µs instead of 81).
pub(crate) fn check_and_copy(src: &[f32], dst: &mut [f32]) -> Option<usize> {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2.
        return unsafe { check_and_copy_avx2(src, dst) };
    }
    check_and_copy_portable(src, dst)
}

/// [`check_and_copy`] compiled for AVX2. Safety: the CPU must have AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn check_and_copy_avx2(src: &[f32], dst: &mut [f32]) -> Option<usize> {
    check_and_copy_portable(src, dst)
}

#[inline(always)]
fn check_and_copy_portable(src: &[f32], dst: &mut [f32]) -> Option<usize> {
    for (b, (s, d)) in src.chunks(SCAN_BLOCK).zip(dst.chunks_mut(SCAN_BLOCK)).enumerate() {
        if !all_finite(s) {
            return s.iter().position(|v| !v.is_finite()).map(|i| b * SCAN_BLOCK + i);
        }
        d.copy_from_slice(s);
    }
    None
}

/// `Error::NonFiniteData` for the flat position `k` of a batch whose samples have `spec`'s shape; `rows`
/// gives the row of the data each batch position holds.
fn non_finite_data(what: &'static str, spec: &TensorSpec, value: f32, k: usize, rows: Rows<'_>) -> Error {
    let len = spec.sample_len().max(1);
    let (pos, within) = (k / len, k % len);
    let row = rows.iter().nth(pos).unwrap_or(pos);
    Error::NonFiniteData { what, name: spec.name.to_string(), value, row, index: unravel(within, spec.shape) }
}

/// The index `[i, j, ...]` of flat position `k` in a row-major tensor of `shape`.
pub(crate) fn unravel(k: usize, shape: &[usize]) -> Vec<usize> {
    let mut rest = k;
    let mut index = vec![0; shape.len()];
    for (i, &d) in index.iter_mut().zip(shape).rev() {
        *i = rest % d.max(1);
        rest /= d.max(1);
    }
    index
}

/// Checks a float tensor (batch first, samples of `spec`'s shape) for NaN and infinities.
fn check_finite_view(what: &'static str, spec: &TensorSpec, view: &ArrayViewD<'_, f32>) -> Result<()> {
    let all = Rows::Range(0, view.shape().first().copied().unwrap_or(0));
    match view.as_slice() {
        Some(x) => match first_non_finite(x) {
            None => Ok(()),
            Some(k) => Err(non_finite_data(what, spec, x[k], k, all)),
        },
        None => match view.iter().enumerate().find(|(_, v)| !v.is_finite()) {
            None => Ok(()),
            Some((k, &v)) => Err(non_finite_data(what, spec, v, k, all)),
        },
    }
}

/// Checks every float input and target for NaN and infinities, all rows.
fn check_finite_data<N: Network>(inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<()> {
    N::visit_inputs(inputs, &mut |i, input: Input<'_>| match (input.view(), N::INPUTS.get(i)) {
        (InputView::F32(v), Some(spec)) => check_finite_view("input", spec, &v),
        _ => Ok(()),
    })?;
    // Integer class-id targets hold no NaN; their range is checked as they are staged.
    N::visit_targets(targets, &mut |o, target: Input<'_>| match (target.view(), N::OUTPUTS.get(o)) {
        (InputView::F32(v), Some(spec)) => check_finite_view("target", spec, &v),
        _ => Ok(()),
    })
}

/// Rejects a learning rate that is not finite.
fn check_learning_rate(lr: f32) -> Result<()> {
    if lr.is_finite() {
        Ok(())
    } else {
        Err(Error::config("learning_rate", lr, "must be finite; the optimizer's learning rate is NaN or infinite"))
    }
}

/// Rejects a schedule with a setting that is not finite.
fn check_schedule(schedule: &Schedule) -> Result<()> {
    schedule.validate()?;
    let values: Vec<(&str, f32)> = match schedule {
        Schedule::ExponentialDecay { initial, decay_rate, .. } | Schedule::InverseTimeDecay { initial, decay_rate, .. } => {
            vec![("initial", *initial), ("decay_rate", *decay_rate)]
        }
        Schedule::CosineDecay { initial, alpha, warmup_target, .. } => {
            let mut v = vec![("initial", *initial), ("alpha", *alpha)];
            v.extend(warmup_target.map(|t| ("warmup_target", t)));
            v
        }
        Schedule::PiecewiseConstantDecay { values, .. } => values.iter().map(|&v| ("values", v)).collect(),
        Schedule::PolynomialDecay { initial, end, power, .. } => vec![("initial", *initial), ("end", *end), ("power", *power)],
    };
    match values.iter().find(|(_, v)| !v.is_finite()) {
        None => Ok(()),
        Some((field, v)) => Err(Error::config("schedule", format!("{schedule:?}"), format!("`{field}` = {v} must be finite"))),
    }
}

/// Sizes target staging buffer `buf` for `batch` rows of `spec` (fallibly) and returns it.
fn stage_target<'b>(buf: &'b mut Vec<f32>, spec: &TensorSpec, sample_len: usize, batch: usize) -> Result<&'b mut [f32]> {
    let what = || format!("the staging buffer of target `{}`", spec.name);
    let len = rows_len(what, batch, sample_len)?;
    try_reserve_len(buf, len, what, batch)?;
    buf.resize(len, 0.0);
    Ok(buf)
}

/// Makes `dst` a copy of `src`, reserving fallibly (reusing its storage when it has room).
fn copy_fallibly(dst: &mut Vec<f32>, src: &[f32]) -> Result<()> {
    dst.clear();
    try_reserve_len(dst, src.len(), || "the copy of the parameters that undoes a faulty step".to_string(), 1)?;
    dst.extend_from_slice(src);
    Ok(())
}

/// Makes `rollback.prev` hold `params` when it may not (before the first step, or after anything else
/// changed them).
fn prepare_rollback(rollback: &mut Rollback, params: &[f32]) -> Result<()> {
    if !rollback.valid {
        copy_fallibly(&mut rollback.prev, params)?;
        copy_fallibly(&mut rollback.next, params)?;
        rollback.valid = true;
    }
    Ok(())
}

/// One optimizer step with `grads`, checked: a step that makes a parameter non-finite is undone from
/// `rollback.prev` ([`Error::NonFiniteParams`] naming `epoch` and `batch`); otherwise the new parameters
/// become the next step's undo copy.
fn apply_step<N: Network, O: Optimizer>(
    params: &mut [f32],
    optimizer: &mut O,
    grads: &[f32],
    rollback: &mut Rollback,
    (epoch, batch): (usize, usize),
) -> Result<()> {
    // One pass checks the new parameters and keeps them for the next step's undo: the optimizer's own
    // where it can write them as it updates, else one after it (always after constraints).
    let fault = if N::CONSTRAINTS.is_empty() {
        optimizer.step_and_keep(params, grads, N::PARAMS, &mut rollback.next)
    } else {
        optimizer.step(params, grads, N::PARAMS);
        crate::regularize::constrain(params, N::CONSTRAINTS);
        check_and_copy(params, &mut rollback.next)
    };
    match fault {
        None => {
            std::mem::swap(&mut rollback.prev, &mut rollback.next);
            Ok(())
        }
        Some(k) => {
            let value = params[k];
            params.copy_from_slice(&rollback.prev);
            let param = N::PARAMS.iter().find(|p| p.range().contains(&k)).map_or("?", |p| p.name).to_string();
            Err(Error::NonFiniteParams { epoch, batch, param, value })
        }
    }
}

/// Data-parallel: whether every process' loss is finite. One that is not fails the step on every
/// process ([`Error::NonFiniteLoss`], naming the output; the value is NaN on the processes whose own
/// loss was finite), so that all stop at the same step. `fault` is this process' first non-finite
/// output loss.
fn agree_finite<N: Network>(c: &mut dyn Collective, fault: Option<(usize, f64)>, (epoch, batch): (usize, usize)) -> Result<()> {
    let mut flags = [0.0f64; 2];
    if let Some((o, _)) = fault {
        flags = [1.0, o as f64];
    }
    c.sum_f64(&mut flags);
    if flags[0] == 0.0 {
        return Ok(());
    }
    let (o, value) = fault.unwrap_or((if flags[0] == 1.0 { flags[1] as usize } else { 0 }, f64::NAN));
    let name = N::OUTPUTS.get(o).map_or("?", |s| s.name);
    let output = if fault.is_some() { name.to_string() } else { format!("{name} (on another rank)") };
    Err(Error::NonFiniteLoss { epoch, batch, output, value })
}

/// Data-parallel: makes `grads` (this process' gradient of its share's mean loss) the gradient of the
/// global batch's mean loss, the same bits on every process. Each share is scaled by its rows over the
/// global batch's (`share`: this process' rows and the global batch's), then the shares are summed in
/// the flat buffer: with Keras' `sum_over_batch_size` reduction (sample weights included) that is the
/// gradient one process computes on the whole batch. The moving statistics (BatchNormalization's) are
/// averaged the same way, so that they too stay identical.
///
/// `backward` computes `grads` (reporting its finished ranges to its second argument): with `overlap`
/// (floats per bucket) the sum of the finished ranges starts while it runs
/// ([`Collective::sum_f32_overlapped`]), else after it. Returns the scale, for [`sum_statistics`].
fn sum_over_processes(
    c: &mut dyn Collective,
    grads: &mut Vec<f32>,
    (local, global): (usize, usize),
    overlap: Option<usize>,
    backward: &mut crate::distributed::Backward<'_>,
) -> f32 {
    let scale = local as f32 / global.max(1) as f32;
    match overlap {
        Some(bucket) => c.sum_f32_overlapped(grads, scale, bucket, backward),
        None => {
            backward(grads, &mut |_, _| {});
            grads.iter_mut().for_each(|g| *g *= scale);
            c.sum_f32(grads);
        }
    }
    scale
}

/// Data-parallel: averages the moving statistics (BatchNormalization's) over the processes, each
/// process' weighted by `scale` (its share of the global batch), so that they stay identical.
fn sum_statistics<N: Network>(c: &mut dyn Collective, params: &mut [f32], stat_buf: &mut Vec<f32>, scale: f32) {
    let stats = || N::PARAMS.iter().filter(|p| p.statistic);
    if stats().next().is_none() {
        return;
    }
    stat_buf.clear();
    for p in stats() {
        stat_buf.extend(params.get(p.range()).unwrap_or(&[]).iter().map(|v| v * scale));
    }
    c.sum_f32(stat_buf);
    let mut at = 0;
    for p in stats() {
        let r = p.range();
        if let (Some(dst), Some(src)) = (params.get_mut(r.clone()), stat_buf.get(at..at + r.len())) {
            dst.copy_from_slice(src);
        }
        at += r.len();
    }
}

/// Data-parallel: copies rank 0's parameters, optimizer state, learning rate and step counts to every
/// process (the start of `fit`), so that all start from the same point, also when only rank 0 loaded a
/// checkpoint ([`Trainer::load_checkpoint`]). Buffers are sized to rank 0's first.
fn broadcast_state<O: Optimizer>(c: &mut dyn Collective, state: &mut crate::network::State, optimizer: &mut O, iterations: &mut u64) {
    c.broadcast_f32(&mut state.params);
    let mut lr = [optimizer.learning_rate()];
    c.broadcast_f32(&mut lr);
    optimizer.set_learning_rate(lr[0]);
    // The trainer's steps, and the model's (the dropout masks mix it in).
    let mut steps = [*iterations as f64, state.ws.step as f64];
    c.broadcast_f64(&mut steps);
    *iterations = steps[0] as u64;
    state.ws.step = steps[1] as u64;
    optimizer.visit_state(&mut |part| match part {
        StateMut::Steps(n) => {
            let mut v = [*n as f64];
            c.broadcast_f64(&mut v);
            *n = v[0] as u64;
        }
        StateMut::Scalar(x) => c.broadcast_f32(std::slice::from_mut(x)),
        StateMut::Buffer(buf) => {
            let mut len = [buf.len() as f64];
            c.broadcast_f64(&mut len);
            buf.resize(len[0] as usize, 0.0);
            c.broadcast_f32(buf);
        }
    });
}

/// The regularizers' share of the loss, as Keras 3 adds it: every weight penalty, and the activity
/// penalties the forward pass that filled `ws` summed (divided by the batch size). Zero without regularizers.
fn regularization_loss<N: Network>(params: &[f32], ws: &crate::workspace::Workspace) -> f64 {
    crate::regularize::weight_penalty(params, N::WEIGHT_PENALTIES) + ws.activity_penalty
}

/// Checks the float inputs staged in the training workspace `ws` for NaN and infinities (after
/// [`stage_checked_inputs`], so the scan reads contiguous buffers the copy just wrote).
fn check_staged_inputs<N: Network>(ws: &mut crate::workspace::Workspace, batch: usize) -> Result<()> {
    for (i, spec) in N::INPUTS.iter().enumerate() {
        if spec.dtype != crate::spec::DType::F32 {
            continue;
        }
        let x = input_buffer::<N>(ws, i, batch * spec.sample_len())?;
        if let Some(k) = first_non_finite(x) {
            return Err(non_finite_data("input", spec, x[k], k, Rows::Range(0, batch)));
        }
    }
    Ok(())
}

/// Per-output training configuration and running statistics.
#[derive(Debug)]
struct OutputSlot {
    name: &'static str,
    /// The buffer holding the output in the training workspace.
    buf: usize,
    /// The buffer holding it in the inference workspace (evaluation).
    infer_buf: usize,
    sample_len: usize,
    cols: usize,
    /// Target values per sample (`sample_len`, or `sample_len / cols` class ids when sparse).
    target_len: usize,
    /// The targets are integer class ids (`as i32 target`).
    sparse: bool,
    loss: Loss,
    weight: f32,
    /// The output's activation when the loss gradient can skip it, else `Linear`.
    fused: Activation,
    /// Resolved metric and its log key (without `val_`).
    /// The metrics of `compile`/`with_metrics` first, then the weighted metrics (Keras' order).
    metrics: Vec<(Metric, String)>,
    /// The metrics as given (Keras' `metrics` and `weighted_metrics`), before resolving.
    given: (Vec<Metric>, Vec<Metric>),
    /// How many of `metrics` come from Keras' `metrics` (ignoring sample weights); the rest are
    /// `weighted_metrics`.
    unweighted: usize,
    loss_key: String,
    loss_state: MetricState,
    metric_states: Vec<MetricTracker>,
}

impl OutputSlot {
    fn rows(&self, batch: usize) -> usize {
        batch * self.sample_len / self.cols.max(1)
    }
}

/// The loss weight of each of `rows` rows of an output that carries `mask` (one value per step of each
/// sample; a step may span several rows): Keras 3's `apply_mask`, `m · total / valid` (0 everywhere when
/// no step is kept), times the row's sample weight when there are `sample` weights (one per sample).
/// `counts` is `(total, valid)`, the steps and the kept steps of the whole batch: those of `mask` in one
/// process; data-parallel, those of the global batch (the sum over the ranks, [`mask_counts`]), so that
/// each rank's share is weighted as one process weighs those rows of the whole batch.
fn masked_row_weights(mask: &[f32], sample: Option<&[f32]>, rows: usize, (total, valid): (f32, f32), out: &mut Vec<f32>) {
    let scale = if valid > 0.0 { total / valid } else { 0.0 };
    out.clear();
    out.resize(rows, 0.0);
    step_row_weights(mask, sample, rows, scale, out);
}

/// The steps and kept steps `(total, valid)` of masked output `o`'s `mask` in a batch: its own, or with
/// `global` (data-parallel: this share's part of a global batch of `global` rows, over `batch` rows)
/// the global batch's, `summed[o]` holding the kept steps summed over the ranks.
fn mask_counts(mask: &[f32], steps: usize, global: Option<(usize, &[f64])>, o: usize) -> (f32, f32) {
    match global {
        Some((g, summed)) => ((steps * g) as f32, summed.get(o).copied().unwrap_or(0.0) as f32),
        None => (mask.len() as f32, mask.iter().sum()),
    }
}

/// Whether the model has an output that carries a mask.
fn has_masked_outputs<N: Network>() -> bool {
    N::OUTPUT_MASKS.iter().any(Option::is_some)
}

/// Data-parallel: the kept steps of each masked output of the staged share of `batch` rows (0 for an
/// output without a mask, and for an empty share), summed over the ranks into `sums` (one per output).
/// `training` picks the workspace holding the masks. Collective: every rank calls it for every step of
/// a model with masked outputs, in the same order.
fn sum_mask_steps<N: Network>(c: &mut dyn Collective, state: &State, batch: usize, training: bool, sums: &mut Vec<f64>) {
    sums.clear();
    for (o, spec) in N::OUTPUTS.iter().enumerate() {
        let steps = spec.shape.first().copied().unwrap_or(1);
        let kept = N::OUTPUT_MASKS.get(o).copied().flatten().map_or(0.0, |(train_buf, infer_buf)| {
            let (ws, buf) = if training { (&state.ws, train_buf) } else { (&state.infer, infer_buf) };
            ws.values.get(buf).and_then(|v| v.get(..batch * steps)).map_or(0.0, |m| m.iter().map(|&x| f64::from(x)).sum())
        });
        sums.push(kept);
    }
    c.sum_f64(sums);
}

/// `out[r] = scale · m[step of r] · w[sample of r]` for each of `rows` rows (a step may span several
/// rows; `w` 1 without `sample` weights).
fn step_row_weights(mask: &[f32], sample: Option<&[f32]>, rows: usize, scale: f32, out: &mut [f32]) {
    let per_step = (rows / mask.len().max(1)).max(1);
    let steps_per_sample = sample.map_or(1, |w| (mask.len() / w.len().max(1)).max(1));
    for (r, o) in out.iter_mut().take(rows).enumerate() {
        let step = r / per_step;
        let w = sample.and_then(|w| w.get(step / steps_per_sample)).copied().unwrap_or(1.0);
        *o = mask.get(step).copied().unwrap_or(0.0) * scale * w;
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Mode {
    /// A training forward and backward; `apply` also steps the optimizer (else the gradients stay in
    /// `Trainer::grads`); `track` adds the batch to the running loss and metrics. `global` is the rows of
    /// the global batch whose share this is when `fit` trains data-parallel (`None` outside `fit`).
    Train { epoch: usize, batch: usize, track: bool, apply: bool, global: Option<usize> },
    /// An inference forward, adding the batch to the running loss and metrics. `global` is the rows of
    /// the global batch whose share this is when `fit` validates data-parallel.
    Eval { global: Option<usize> },
}

impl Mode {
    /// The rows of the global batch whose share this is, data-parallel.
    fn global(self) -> Option<usize> {
        match self {
            Mode::Train { global, .. } | Mode::Eval { global } => global,
        }
    }
}

/// Explicit validation rows of an array `fit`: inputs, targets and optionally their sample weights.
type ValidationArrays<'v, 'a, 'b, N> = (&'v <N as Network>::Inputs<'a>, &'v <N as Network>::Targets<'b>, Option<&'v SampleWeight>);

/// Says that a validation sample weight is wrong (its own check names the rows of the validation data).
pub(crate) fn validation_weight_error(e: Error) -> Error {
    match e {
        Error::Config { name: "sample_weight", value, reason } => {
            Error::Config { name: "sample_weight", value, reason: format!("{reason} (the weights of the validation data)") }
        }
        e => e,
    }
}

/// One epoch of `fit` in progress, shared by the array and the streamed paths.
pub(crate) struct EpochRun<'f> {
    /// The epoch, counted from 1.
    pub(crate) epoch: usize,
    schedule: Option<&'f Schedule>,
    /// Whether this process prints (`Fit::verbose`, and rank 0 under MPI).
    verbose: bool,
    /// The batches it will hold, when known.
    len: Option<usize>,
    /// The batches trained so far.
    pub(crate) done: usize,
    bar: Option<ProgressBar>,
    started: Instant,
    /// A callback asked to stop.
    pub(crate) stopped: bool,
    /// The non-finite loss a callback turned into a stop.
    non_finite: Option<f64>,
}

impl EpochRun<'_> {
    /// Leaves the bar as it is (training stopped on an error).
    pub(crate) fn abandon(&self) {
        if let Some(bar) = &self.bar {
            bar.abandon();
        }
    }
}

/// The callbacks `Fit`'s shorthands stand for: the checkpoints, then early stopping.
pub(crate) fn builtin_callbacks<N: Network>(fit: &Fit) -> Vec<Box<dyn Callback<N>>> {
    let mut builtin: Vec<Box<dyn Callback<N>>> = Vec::new();
    if let Some(c) = &fit.checkpoint {
        for m in c.clone().into_callbacks() {
            builtin.push(Box::new(m));
        }
    }
    if let Some(e) = &fit.early_stopping {
        builtin.push(Box::new(e.clone()));
    }
    builtin
}

/// `Fit`'s shorthands first, then the caller's callbacks, each told in order.
pub(crate) fn all_callbacks<'a, N: Network>(
    builtin: &'a mut [Box<dyn Callback<N>>],
    callbacks: &'a mut [&mut dyn Callback<N>],
) -> Vec<&'a mut dyn Callback<N>> {
    let mut all: Vec<&mut dyn Callback<N>> = builtin.iter_mut().map(|b| &mut **b as &mut dyn Callback<N>).collect();
    all.extend(callbacks.iter_mut().map(|c| &mut **c as &mut dyn Callback<N>));
    all
}

/// A model compiled for training: optimizer, losses, loss weights and metrics (Keras' `compile`).
pub struct Trainer<'m, N: Network, O: Optimizer> {
    model: &'m mut N,
    optimizer: O,
    outputs: Vec<OutputSlot>,
    grads: Vec<f32>,
    targets: Vec<Vec<f32>>,
    /// The staged batch's sample weights per output (one per sample), read when `weighted`.
    weights: Vec<Vec<f32>>,
    /// Whether the staged batch has sample weights.
    weighted: bool,
    /// Per output: the loss weight of each row of a masked output (its mask, scaled as Keras'
    /// `apply_mask`, times the sample weights).
    mask_weights: Vec<Vec<f32>>,
    /// Per masked output: the metrics' row weights, the mask (0/1) then the mask times the sample
    /// weights (`2 · rows`; Keras passes the mask to its mean metrics as sample weights).
    metric_weights: Vec<Vec<f32>>,
    total: MetricState,
    rollback: Rollback,
    /// Optimizer steps taken through this trainer (Keras' `optimizer.iterations`), which schedules follow.
    iterations: u64,
    /// The processes `fit` trains over ([`Local`] unless MPI runs, see [`crate::distributed`]).
    collective: Box<dyn Collective>,
    /// The running states packed for their sum over the processes (data-parallel only).
    sync_buf: Vec<f64>,
    /// The moving statistics packed for their average over the processes (data-parallel only).
    stat_buf: Vec<f32>,
    /// The callbacks' states of the checkpoint loaded last, which the next `fit` resuming from it
    /// (`initial_epoch` above 0) hands to its callbacks.
    resume_callbacks: crate::checkpoint::CallbackStates,
    /// Data-parallel: the kept steps of each masked output over the global batch (one per output).
    mask_sums: Vec<f64>,
    /// Data-parallel: the gradient sum overlaps backward in buckets of this many floats
    /// (`Fit::overlap_buckets`, set by `fit`).
    overlap: Option<usize>,
}

impl<N: Network, O: Optimizer + std::fmt::Debug> std::fmt::Debug for Trainer<'_, N, O> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Trainer")
            .field("model", &N::NAME)
            .field("optimizer", &self.optimizer)
            .field("outputs", &self.outputs)
            .finish_non_exhaustive()
    }
}

/// Prepares `model` for training with `optimizer`, one loss per output and `metrics` applied to
/// every output (as a Keras metrics list). Output activations that can be fused with their loss
/// (`N::OUTPUT_INFO`) get the stable logits gradient.
pub fn compile<'m, N: Network, O: Optimizer>(
    model: &'m mut N,
    optimizer: O,
    losses: N::PerOutput<Loss>,
    metrics: &[Metric],
) -> Trainer<'m, N, O> {
    let losses = N::per_output(&losses);
    let multi = N::OUTPUTS.len() > 1;
    let outputs = N::OUTPUTS
        .iter()
        .enumerate()
        .map(|(o, spec)| {
            let loss = losses.get(o).copied().unwrap_or(Loss::MeanSquaredError);
            let act = N::OUTPUT_INFO.get(o).map_or(Activation::Linear, |i| i.fusable_activation);
            let target = N::TARGETS.get(o).unwrap_or(spec);
            let mut slot = OutputSlot {
                name: spec.name,
                buf: N::OUTPUT_BUFFERS.get(o).copied().unwrap_or(usize::MAX),
                infer_buf: N::INFER_OUTPUT_BUFFERS.get(o).copied().unwrap_or(usize::MAX),
                sample_len: spec.sample_len(),
                cols: spec.shape.last().copied().unwrap_or(1),
                target_len: target.sample_len(),
                sparse: target.dtype == DType::I32,
                loss,
                weight: 1.0,
                fused: if loss.can_fuse(act) { act } else { Activation::Linear },
                metrics: Vec::new(),
                given: (metrics.to_vec(), Vec::new()),
                unweighted: 0,
                loss_key: if multi { format!("{}_loss", spec.name) } else { "loss".to_string() },
                loss_state: MetricState::default(),
                metric_states: Vec::new(),
            };
            set_metrics(&mut slot, multi);
            slot
        })
        .collect();
    Trainer {
        model,
        optimizer,
        outputs,
        grads: vec![0.0; N::PARAM_COUNT],
        targets: vec![Vec::new(); N::OUTPUTS.len()],
        weights: vec![Vec::new(); N::OUTPUTS.len()],
        weighted: false,
        mask_weights: vec![Vec::new(); N::OUTPUTS.len()],
        metric_weights: vec![Vec::new(); N::OUTPUTS.len()],
        total: MetricState::default(),
        rollback: Rollback::default(),
        iterations: 0,
        collective: Box::new(Local),
        sync_buf: Vec::new(),
        stat_buf: Vec::new(),
        resume_callbacks: Vec::new(),
        mask_sums: Vec::new(),
        overlap: None,
    }
}

/// Resolves an output's metrics (`slot.given`: Keras' `metrics`, then its `weighted_metrics`) and names
/// their log keys as Keras does: `<output>_<name>` with several outputs; a repeated name gets `_1`, `_2`,
/// ...; a weighted metric whose name is taken becomes `weighted_<name>` (`<output>_weighted_<name>`).
fn set_metrics(slot: &mut OutputSlot, multi: bool) {
    slot.metrics.clear();
    let prefixed = |name: &str| if multi { format!("{}_{name}", slot.name) } else { name.to_string() };
    let (plain, weighted) = (&slot.given.0, &slot.given.1);
    for (i, m) in plain.iter().chain(weighted).enumerate() {
        let mut base = prefixed(m.keras_name());
        if i >= plain.len() && slot.metrics.iter().any(|(_, k)| *k == base) {
            base = prefixed(&format!("weighted_{}", m.keras_name()));
        }
        let mut key = base.clone();
        let mut n = 1;
        while slot.metrics.iter().any(|(_, k)| *k == key) {
            key = format!("{base}_{n}");
            n += 1;
        }
        slot.metrics.push((m.resolve(slot.loss, slot.cols), key));
    }
    slot.unweighted = plain.len();
    slot.metric_states = slot.metrics.iter().map(|(m, _)| MetricTracker::new(*m)).collect();
}

impl<'m, N: Network, O: Optimizer> Trainer<'m, N, O> {
    /// Weights each output's loss in the total (Keras' `loss_weights`; default 1.0 each).
    pub fn with_loss_weights(mut self, weights: N::PerOutput<f32>) -> Self {
        for (slot, w) in self.outputs.iter_mut().zip(N::per_output(&weights)) {
            slot.weight = w;
        }
        self
    }

    /// Replaces the metrics with a list per output (Keras' metrics dict).
    pub fn with_metrics(mut self, metrics: N::PerOutput<Vec<Metric>>) -> Self {
        let multi = self.outputs.len() > 1;
        for (slot, m) in self.outputs.iter_mut().zip(N::per_output(&metrics)) {
            slot.given.0 = m;
            set_metrics(slot, multi);
        }
        self
    }

    /// Sets metrics per output that weigh each sample by its sample weight (Keras' `weighted_metrics`):
    /// with [`SampleWeight`]s or [`Fit::class_weight`], a mean metric is `Σ w·value / Σ w` (weighted
    /// accuracy is `Σ w·correct / Σ w`), RMSE the weighted mean of the squared errors, and precision,
    /// recall and AUC count each sample at its weight. Without weights they equal the plain metrics. The
    /// metrics of `compile` and [`with_metrics`](Self::with_metrics) ignore sample weights, as Keras'
    /// `metrics` do. Logged after those, under the same keys, or as `weighted_<name>` (with several
    /// outputs `<output>_weighted_<name>`) when the name is already logged.
    pub fn with_weighted_metrics(mut self, metrics: N::PerOutput<Vec<Metric>>) -> Self {
        let multi = self.outputs.len() > 1;
        for (slot, m) in self.outputs.iter_mut().zip(N::per_output(&metrics)) {
            slot.given.1 = m;
            set_metrics(slot, multi);
        }
        self
    }

    /// Keras' `class_weight={class: weight}` as per-sample weights for the rows of `targets` (Keras'
    /// `class_weight_to_sample_weights`): each sample weighs what its class does, 1 for a class not
    /// listed. The class of a sample is its integer class id, the argmax of its one-hot (or
    /// probability) target, or its single target value rounded (a binary target). What
    /// [`Fit::class_weight`] uses; pass it to [`train_on_batch_weighted`](Self::train_on_batch_weighted)
    /// for Keras' `train_on_batch(x, y, class_weight=...)`.
    ///
    /// An error for a model with several outputs (as in Keras), for targets holding more than one class
    /// per sample, and for a class listed twice or a weight that is negative or not finite.
    pub fn class_weights(&self, targets: &N::Targets<'_>, class_weight: &[(usize, f32)]) -> Result<SampleWeight> {
        class_weights_of::<N>(targets, class_weight)
    }

    /// The model.
    pub fn model(&self) -> &N {
        self.model
    }

    /// The model, mutably (to read or set parameters between epochs).
    pub fn model_mut(&mut self) -> &mut N {
        self.rollback.valid = false;
        self.model
    }

    /// The optimizer.
    pub fn optimizer(&self) -> &O {
        &self.optimizer
    }

    /// The optimizer, mutably (to change the learning rate).
    pub fn optimizer_mut(&mut self) -> &mut O {
        &mut self.optimizer
    }

    /// Optimizer steps taken through this trainer (Keras' `optimizer.iterations`): the position of
    /// `Fit::schedule`. Restored by [`load_checkpoint`](Self::load_checkpoint).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }

    /// Saves a training checkpoint to `path` atomically: the weights, the optimizer's state (its
    /// moments, step counter and learning rate) and this trainer's step count, which learning-rate
    /// schedules follow (Keras' `model.save`, for training state). See [`crate::checkpoint`].
    pub fn save_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        self.save_checkpoint_with(path, &[])
    }

    /// [`save_checkpoint`](Self::save_checkpoint) with the state of `callbacks` (the ones a loop of your
    /// own passes to `fit`, in the same order, Fit's shorthands first: see [`Callback::state`]), so that a
    /// `fit` resumed from the file hands it back to them.
    pub fn save_checkpoint_with(&mut self, path: impl AsRef<Path>, callbacks: &[&dyn Callback<N>]) -> Result<()> {
        let states: crate::checkpoint::CallbackStates =
            callbacks.iter().enumerate().filter_map(|(i, c)| c.state().map(|s| (i, s))).collect();
        crate::checkpoint::save(&*self.model, &mut self.optimizer, self.iterations, path, &states)
    }

    /// Loads a checkpoint [`save_checkpoint`](Self::save_checkpoint) (or a `ModelCheckpoint` with
    /// `save_weights_only: false`) wrote: training then goes on exactly as if it had not stopped (with
    /// `Fit::initial_epoch` set to the epochs done). A file of weights only, of another optimizer kind
    /// or another model is an error, and then nothing changes. See [`crate::checkpoint`].
    ///
    /// The callbacks' states the file holds ([`Callback::state`]: EarlyStopping's `wait` and `best`,
    /// ReduceLROnPlateau's, ...) go to the callbacks of the next `fit` with `initial_epoch` above 0, each
    /// to the callback at the position it was saved from (pass the same callbacks, in the same order):
    /// a callback of another kind there is an error.
    pub fn load_checkpoint(&mut self, path: impl AsRef<Path>) -> Result<()> {
        (self.iterations, self.resume_callbacks) = crate::checkpoint::load(&mut *self.model, &mut self.optimizer, path)?;
        self.rollback.valid = false;
        Ok(())
    }

    /// Resuming (`initial_epoch` above 0): hands the callbacks' states of the checkpoint loaded last to
    /// the callbacks at their positions (after `on_train_begin`), rank 0's to every rank. Otherwise
    /// forgets them.
    pub(crate) fn restore_callbacks(&mut self, all: &mut [&mut dyn Callback<N>], fit: &Fit) -> Result<()> {
        let mut states = std::mem::take(&mut self.resume_callbacks);
        if fit.initial_epoch == 0 {
            return Ok(());
        }
        if self.collective.size() > 1 {
            crate::distributed::broadcast_callback_states(&mut *self.collective, &mut states);
        }
        for (i, state) in &states {
            let Some(c) = all.get_mut(*i) else {
                return Err(Error::config(
                    "callbacks",
                    all.len(),
                    format!(
                        "the checkpoint holds the state of callback {i} (a `{}`), but this fit has {} callbacks \
                         (Fit's shorthands first); pass the callbacks of the run that saved it, in its order",
                        state.kind,
                        all.len()
                    ),
                ));
            };
            c.restore_state(state)?;
        }
        Ok(())
    }

    /// Checks the losses and metrics against the targets, then inputs and targets together; returns
    /// the common batch size.
    pub(crate) fn check_batch(&self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<usize> {
        for slot in &self.outputs {
            slot.loss.check(slot.name, slot.sparse)?;
            slot.metrics.iter().try_for_each(|(m, _)| m.check(slot.name, slot.sparse))?;
        }
        let mut batch = BatchCheck::default();
        see_inputs::<N>(inputs, &mut batch)?;
        N::visit_targets(targets, &mut |o, view| {
            let (out, _) = output_spec::<N>(o, Layout::Training)?;
            let spec = N::TARGETS.get(o).unwrap_or(out);
            if view.dtype() != spec.dtype {
                let name = |d| if d == DType::I32 { "int32" } else { "float32" };
                return Err(Error::DType {
                    what: "target",
                    name: spec.name.into(),
                    expected: name(spec.dtype).into(),
                    actual: name(view.dtype()).into(),
                });
            }
            let b = check_shape("target", spec, view.shape())?;
            batch.see("target", spec.name, b)
        })?;
        batch.finish()
    }

    /// Checks the settings training reads: a finite learning rate (the optimizer's, or every value of
    /// `schedule`'s settings when there is one) and finite loss weights.
    pub(crate) fn check_settings(&self, schedule: Option<&Schedule>) -> Result<()> {
        match schedule {
            Some(s) => check_schedule(s)?,
            None => check_learning_rate(self.optimizer.learning_rate())?,
        }
        match self.outputs.iter().find(|slot| !slot.weight.is_finite()) {
            None => Ok(()),
            Some(slot) => {
                Err(Error::config("loss_weights", slot.weight, format!("the loss weight of output `{}` must be finite", slot.name)))
            }
        }
    }

    /// One gradient step on one batch (already in memory, any size): forward in training mode,
    /// losses, backward, optimizer step. Returns the weighted total loss of the batch (before
    /// the step). After the first call with a given batch size, allocates nothing.
    ///
    /// A non-finite learning rate or loss weight, or a NaN or infinity in the inputs or targets, is an
    /// error before anything runs; a non-finite loss, before the step; a step that makes a parameter
    /// non-finite is undone ([`Error::NonFiniteParams`]).
    pub fn train_step(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<f64> {
        let batch = self.stage_batch(inputs, targets, None)?;
        self.step_staged(batch, Mode::Train { epoch: 0, batch: 0, track: false, apply: true, global: None })
    }

    /// [`train_step`](Self::train_step) with per-sample weights (Keras' `sample_weight`, see
    /// [`SampleWeight`]): one per row of the batch. Wrong lengths and negative or non-finite weights
    /// are an [`Error::Config`] before anything runs. Allocates nothing after the first call with a
    /// given batch size.
    pub fn train_step_weighted(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>, sample_weight: &SampleWeight) -> Result<f64> {
        let batch = self.stage_batch(inputs, targets, Some(sample_weight))?;
        self.step_staged(batch, Mode::Train { epoch: 0, batch: 0, track: false, apply: true, global: None })
    }

    /// One gradient step on one batch, like [`train_step`](Self::train_step), returning the batch's
    /// loss and metrics as Keras' `train_on_batch(..., return_dict=True)` does (the running values are
    /// reset first, as Keras' default `reset_metrics=True`): `loss` (the weighted total) and the
    /// metrics, plus each `<output>_loss` with several outputs, keyed as [`fit`](Self::fit)'s history.
    /// Loss and metrics are those of the forward pass, before the step. The step itself allocates
    /// nothing after warm-up, as `train_step`; the returned map does.
    pub fn train_on_batch(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<Logs> {
        self.train_on_batch_with(inputs, targets, None)
    }

    /// [`train_on_batch`](Self::train_on_batch) with per-sample weights (Keras'
    /// `train_on_batch(x, y, sample_weight=w)`; for Keras' `class_weight`, pass
    /// [`class_weights`](Self::class_weights)). The loss and metrics returned are weighted as in Keras.
    pub fn train_on_batch_weighted(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: &SampleWeight,
    ) -> Result<Logs> {
        self.train_on_batch_with(inputs, targets, Some(sample_weight))
    }

    fn train_on_batch_with(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<Logs> {
        let batch = self.stage_batch(inputs, targets, sample_weight)?;
        self.reset_states();
        self.step_staged(batch, Mode::Train { epoch: 0, batch: 0, track: true, apply: true, global: None })?;
        let mut logs = Logs::new();
        self.logs("", &mut logs);
        Ok(logs)
    }

    /// Loss and metrics of one batch in inference mode (Keras' `test_on_batch(..., return_dict=True)`),
    /// keyed as [`train_on_batch`](Self::train_on_batch); the same values as
    /// [`evaluate`](Self::evaluate) with a `batch_size` of at least the batch.
    pub fn test_on_batch(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<Logs> {
        self.test_on_batch_with(inputs, targets, None)
    }

    /// [`test_on_batch`](Self::test_on_batch) with per-sample weights (Keras'
    /// `test_on_batch(x, y, sample_weight=w)`).
    pub fn test_on_batch_weighted(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: &SampleWeight,
    ) -> Result<Logs> {
        self.test_on_batch_with(inputs, targets, Some(sample_weight))
    }

    fn test_on_batch_with(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<Logs> {
        self.reset_states();
        self.eval_batch(inputs, targets, sample_weight)?;
        let mut logs = Logs::new();
        self.logs("", &mut logs);
        Ok(logs)
    }

    /// Adds one whole batch, checked, to the running loss and metrics in inference mode.
    pub(crate) fn eval_batch(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<()> {
        let n = self.check_batch(inputs, targets)?;
        if let Some(sw) = sample_weight {
            sw.check(N::OUTPUTS, n)?;
        }
        self.stage_rows(inputs, Some(targets), Rows::Range(0, n), Mode::Eval { global: None }, sample_weight)?;
        self.step_staged(n, Mode::Eval { global: None }).map(|_| ())
    }

    /// The model's outputs for one batch in inference mode (Keras' `predict_on_batch`), in one pass
    /// however large the batch.
    pub fn predict_on_batch(&mut self, inputs: &N::Inputs<'_>) -> Result<N::Outputs> {
        crate::model::predict_staged(self.model, inputs)?;
        crate::model::collect_outputs::<N>(&self.model.state().infer)
    }

    /// The weighted total loss of one batch and the gradient of that loss with respect to every
    /// parameter (flat, in `Network::PARAMS` order, zero for the non-trainable ones), updating no
    /// trainable parameter: what Keras computes under a `GradientTape` around `model(x, training=True)`
    /// and the loss. As in Keras, the forward pass runs in training mode: Dropout is active and
    /// BatchNormalization uses the batch's statistics and moves its moving statistics (Keras'
    /// BatchNormalization updates them whenever it is called with `training=True`, tape or not).
    ///
    /// [`apply_gradients`](Self::apply_gradients) with these gradients then takes exactly the step
    /// [`train_step`](Self::train_step) would have taken, bit for bit. The same checks as `train_step`
    /// apply (non-finite data or loss is an error). Allocates nothing after the first call with a
    /// given batch size. The slice borrows the trainer: copy it (into a buffer of your own, reused)
    /// to change it or to keep it across calls.
    pub fn compute_gradients(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>) -> Result<(f64, &[f32])> {
        self.compute_gradients_with(inputs, targets, None)
    }

    /// [`compute_gradients`](Self::compute_gradients) of the loss weighted by `sample_weight` (one per
    /// row of the batch, see [`SampleWeight`]): what Keras' `compute_loss(x, y, y_pred, sample_weight)`
    /// differentiates.
    pub fn compute_gradients_weighted(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: &SampleWeight,
    ) -> Result<(f64, &[f32])> {
        self.compute_gradients_with(inputs, targets, Some(sample_weight))
    }

    fn compute_gradients_with(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<(f64, &[f32])> {
        let batch = self.stage_batch(inputs, targets, sample_weight)?;
        let loss = self.step_staged(batch, Mode::Train { epoch: 0, batch: 0, track: false, apply: false, global: None })?;
        if self.rollback.valid {
            // The moving statistics moved outside a step: the undo copy takes them, so that it still
            // holds the parameters (a copy of the non-trainable ones only).
            let params = &self.model.state().params;
            for p in N::PARAMS.iter().filter(|p| !p.trainable) {
                if let (Some(dst), Some(src)) = (self.rollback.prev.get_mut(p.range()), params.get(p.range())) {
                    dst.copy_from_slice(src);
                }
            }
        }
        Ok((loss, &self.grads))
    }

    /// Applies `grads` (flat, one value per parameter, as [`compute_gradients`](Self::compute_gradients)
    /// returns them) through the trainer's optimizer, with its clipping and weight decay (Keras'
    /// `optimizer.apply_gradients`), and counts one step for the schedules. The learning rate is the
    /// optimizer's current one. A step that makes a parameter non-finite is undone
    /// ([`Error::NonFiniteParams`]); gradients of the wrong length are an error before anything changes.
    pub fn apply_gradients(&mut self, grads: &[f32]) -> Result<()> {
        if grads.len() != N::PARAM_COUNT {
            return Err(Error::config(
                "gradients",
                grads.len(),
                format!("model `{}` has {} parameters; give one gradient per parameter", N::NAME, N::PARAM_COUNT),
            ));
        }
        check_learning_rate(self.optimizer.learning_rate())?;
        let _flush = crate::fpenv::FlushDenormals::new();
        let params = &mut self.model.state_mut().params;
        prepare_rollback(&mut self.rollback, params)?;
        self.iterations += 1;
        apply_step::<N, O>(params, &mut self.optimizer, grads, &mut self.rollback, (0, 0))
    }

    /// Checks the settings and the batch and stages it (inputs in the training workspace, targets in
    /// the staging buffers), checking every value for NaN and infinities; returns the batch size.
    pub(crate) fn stage_batch(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<usize> {
        self.check_settings(None)?;
        let batch = self.check_batch(inputs, targets)?;
        if let Some(sw) = sample_weight {
            sw.check(N::OUTPUTS, batch)?;
        }
        self.stage_weights(sample_weight, Rows::Range(0, batch))?;
        let ws = &mut self.model.state_mut().ws;
        ws.set_layout(Layout::Training);
        // `check_batch` has checked every input: stage them without checking again.
        stage_checked_inputs::<N>(inputs, ws, batch)?;
        check_staged_inputs::<N>(ws, batch)?;
        let (staged, slots) = (&mut self.targets, &self.outputs);
        N::visit_targets(targets, &mut |o, view| {
            let (spec, slot) = (&N::OUTPUTS[o], &slots[o]);
            let buf = stage_target(&mut staged[o], spec, slot.target_len, batch)?;
            crate::loss::stage_target(slot.name, view, Rows::Range(0, batch), slot.target_len, slot.cols, buf)?;
            match first_non_finite(buf) {
                None => Ok(()),
                Some(k) => Err(non_finite_data("target", spec, buf[k], k, Rows::Range(0, batch))),
            }
        })?;
        Ok(batch)
    }

    /// Copies `rows` of the sample weights (checked) into the staging buffers, or marks the batch
    /// unweighted. Allocates nothing once the buffers have room for the batch.
    fn stage_weights(&mut self, sample_weight: Option<&SampleWeight>, rows: Rows<'_>) -> Result<()> {
        self.weighted = sample_weight.is_some();
        let Some(sw) = sample_weight else { return Ok(()) };
        let batch = rows.len();
        for (slot, buf) in self.outputs.iter().zip(&mut self.weights) {
            try_reserve_len(buf, batch, || format!("the staging buffer of the sample weights of output `{}`", slot.name), batch)?;
            buf.clear();
            match sw.of(slot.name) {
                Some(w) => buf.extend(rows.iter().map(|r| w[r])),
                None => buf.resize(batch, 1.0),
            }
        }
        Ok(())
    }

    /// Copies `rows` of the inputs into the workspace of `mode` (the training one, or the inference one
    /// for evaluation), of the targets into the staging buffers, and of the (checked) sample weights.
    pub(crate) fn stage_rows(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: Option<&N::Targets<'_>>,
        rows: Rows<'_>,
        mode: Mode,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<()> {
        self.stage_weights(sample_weight, rows)?;
        let batch = rows.len();
        let state = self.model.state_mut();
        let ws = match mode {
            Mode::Train { .. } => &mut state.ws,
            Mode::Eval { .. } => &mut state.infer,
        };
        ws.set_layout(match mode {
            Mode::Train { .. } => Layout::Training,
            Mode::Eval { .. } => Layout::Inference,
        });
        ws.resize::<N>(batch)?;
        N::visit_inputs(inputs, &mut |i, view| {
            let spec = &N::INPUTS[i];
            let len = spec.sample_len();
            let dst = input_buffer::<N>(ws, i, batch * len)?;
            gather_input::<N>(i, view, rows, len, dst)
        })?;
        if let Some(targets) = targets {
            let (staged, slots) = (&mut self.targets, &self.outputs);
            N::visit_targets(targets, &mut |o, view| {
                let (spec, slot) = (&N::OUTPUTS[o], &slots[o]);
                let buf = stage_target(&mut staged[o], spec, slot.target_len, batch)?;
                crate::loss::stage_target(slot.name, view, rows, slot.target_len, slot.cols, buf)
            })?;
        }
        Ok(())
    }

    /// Forward, losses and metrics on the staged batch; in training mode also backward and the
    /// optimizer step. Returns the weighted total loss.
    pub(crate) fn step_staged(&mut self, batch: usize, mode: Mode) -> Result<f64> {
        let _flush = crate::fpenv::FlushDenormals::new();
        let training = matches!(mode, Mode::Train { .. });
        let (rank, ranks) = (self.collective.rank(), self.collective.size());
        let state = self.model.state_mut();
        let _bf16 = state.dtype_policy.scope();
        state.ws.first_row = match mode {
            Mode::Train { global: Some(g), .. } if ranks > 1 => crate::distributed::shard(g, rank, ranks).start,
            _ => 0,
        };
        if training {
            run_forward::<N>(state, true);
        } else {
            run_inference::<N>(state);
        }
        // Data-parallel (several processes): the rows of the global batch this share belongs to.
        let global = mode.global().filter(|_| ranks > 1);
        if global.is_some() && has_masked_outputs::<N>() {
            sum_mask_steps::<N>(&mut *self.collective, state, batch, training, &mut self.mask_sums);
        }
        let State { params, ws, infer, .. } = state;
        if training {
            ws.zero_grads::<N>();
        }
        let mut total = 0.0f64;
        let mut fault = None;
        for (o, slot) in self.outputs.iter_mut().enumerate() {
            let n = batch * slot.sample_len;
            let rows = slot.rows(batch);
            let pred = if training { &ws.values[slot.buf][..n] } else { &infer.values[slot.infer_buf][..n] };
            let target = &self.targets[o][..batch * slot.target_len];
            let grad = if training { Some(&mut ws.grads[slot.buf][..n]) } else { None };
            let weights = self.weighted.then(|| &self.weights[o][..batch]);
            let steps = N::OUTPUTS[o].shape.first().copied().unwrap_or(1);
            let mask = N::OUTPUT_MASKS.get(o).copied().flatten().map(|(train_buf, infer_buf)| {
                if training {
                    &ws.values[train_buf][..batch * steps]
                } else {
                    &infer.values[infer_buf][..batch * steps]
                }
            });
            let loss_weights = match mask {
                Some(mask) => {
                    let out = &mut self.mask_weights[o];
                    try_reserve_len(out, rows, || format!("the loss weights of the masked output `{}`", slot.name), batch)?;
                    let counts = mask_counts(mask, steps, global.map(|g| (g, &self.mask_sums[..])), o);
                    masked_row_weights(mask, weights, rows, counts, out);
                    Some(&out[..rows])
                }
                None => weights,
            };
            let tracks = matches!(mode, Mode::Train { track: true, .. } | Mode::Eval { .. });
            let metric_weights = match mask.filter(|_| tracks && slot.metric_states.iter().any(MetricTracker::reads_mask)) {
                Some(mask) => {
                    let out = &mut self.metric_weights[o];
                    try_reserve_len(out, 2 * rows, || format!("the metric weights of the masked output `{}`", slot.name), batch)?;
                    out.resize(out.len().max(2 * rows), 0.0);
                    let (plain, weighted) = out[..2 * rows].split_at_mut(rows);
                    step_row_weights(mask, None, rows, 1.0, plain);
                    step_row_weights(mask, weights, rows, 1.0, weighted);
                    Some((&out[..rows], &out[rows..2 * rows]))
                }
                None => None,
            };
            let value = slot.loss.compute_weighted(pred, target, rows, slot.cols, loss_weights, grad, slot.weight, slot.fused);
            if let Mode::Train { epoch, batch: b, .. } = mode {
                ws.fused[o] = slot.fused != Activation::Linear;
                if !value.is_finite() {
                    if global.is_none() {
                        return Err(Error::NonFiniteLoss { epoch, batch: b, output: slot.name.to_string(), value });
                    }
                    fault = fault.or(Some((o, value)));
                }
            }
            total += f64::from(slot.weight) * value;
            if matches!(mode, Mode::Train { track: true, .. } | Mode::Eval { .. }) {
                slot.loss_state.add_mean(value, batch);
                let from = slot.unweighted;
                for (i, st) in slot.metric_states.iter_mut().enumerate() {
                    // Keras' `metrics` ignore the sample weights; its `weighted_metrics` use them. A masked
                    // output's mask weighs the mean metrics' rows (0 at a masked step), times the sample
                    // weights for the weighted ones.
                    let w = match metric_weights.filter(|_| st.reads_mask()) {
                        Some((plain, weighted)) => Some(if i >= from && weights.is_some() { weighted } else { plain }),
                        None => weights.filter(|_| i >= from),
                    };
                    st.update_weighted(pred, target, rows, slot.cols, w);
                }
            }
        }
        total += regularization_loss::<N>(params, if training { ws } else { infer });
        if matches!(mode, Mode::Train { track: true, .. } | Mode::Eval { .. }) {
            self.total.add_mean(total, batch);
        }
        if let (Some(_), Mode::Train { epoch, batch: b, .. }) = (global, mode) {
            agree_finite::<N>(&mut *self.collective, fault, (epoch, b))?;
        }
        if let Mode::Train { epoch, batch: b, apply, .. } = mode {
            // Every loss is finite: the step is applied, moving statistics first (backward uses the batch's).
            if apply {
                prepare_rollback(&mut self.rollback, params)?;
            }
            N::update_state(params, ws);
            zero_param_grads::<N>(&mut self.grads);
            match global {
                Some(g) => {
                    let c = &mut *self.collective;
                    let mut backward =
                        |grads: &mut [f32], ready: &mut dyn FnMut(&[f32], usize)| N::backward_hooked(&params[..], ws, grads, ready);
                    let scale = sum_over_processes(c, &mut self.grads, (batch, g), self.overlap, &mut backward);
                    sum_statistics::<N>(c, params, &mut self.stat_buf, scale);
                }
                None => N::backward(params, ws, &mut self.grads),
            }
            // After the sum: the penalties are the same on every process, added once.
            if !N::WEIGHT_PENALTIES.is_empty() {
                crate::regularize::add_weight_gradients(params, &mut self.grads, N::WEIGHT_PENALTIES);
            }
            if apply {
                self.iterations += 1;
                apply_step::<N, O>(params, &mut self.optimizer, &self.grads, &mut self.rollback, (epoch, b))?;
            }
        }
        Ok(total)
    }

    pub(crate) fn reset_states(&mut self) {
        self.total.reset();
        for slot in &mut self.outputs {
            slot.loss_state.reset();
            slot.metric_states.iter_mut().for_each(MetricTracker::reset);
        }
    }

    /// Every number of the running loss and metric states, in a fixed order.
    fn for_each_state(&mut self, mut f: impl FnMut(&mut f64)) {
        f(&mut self.total.sum);
        f(&mut self.total.count);
        for slot in &mut self.outputs {
            f(&mut slot.loss_state.sum);
            f(&mut slot.loss_state.count);
            slot.metric_states.iter_mut().flat_map(MetricTracker::state_mut).for_each(&mut f);
        }
    }

    /// `read` of the running loss and metric states summed over the processes (data-parallel; with one
    /// process, the states as they are). Every process then holds the totals; after `read`, only rank 0
    /// keeps them and the others start again from zero, so that the next sum counts every row once.
    /// Collective: every rank calls it at the same point.
    fn read_synced<R>(&mut self, read: impl FnOnce(&Self) -> R) -> R {
        if self.collective.size() <= 1 {
            return read(self);
        }
        let mut buf = std::mem::take(&mut self.sync_buf);
        buf.clear();
        self.for_each_state(|v| buf.push(*v));
        self.collective.sum_f64(&mut buf);
        let mut summed = buf.iter();
        self.for_each_state(|v| *v = summed.next().copied().unwrap_or(0.0));
        self.sync_buf = buf;
        let out = read(self);
        if self.collective.rank() != 0 {
            self.reset_states();
        }
        out
    }

    /// Data-parallel: this process' share of a global batch of `global` rows is empty (a last batch
    /// smaller than the number of processes); it still takes part in the step's collectives, with a
    /// zero gradient, and takes the same step as the others.
    fn idle_step(&mut self, global: usize, (epoch, batch): (usize, usize)) -> Result<()> {
        let _flush = crate::fpenv::FlushDenormals::new();
        if has_masked_outputs::<N>() {
            sum_mask_steps::<N>(&mut *self.collective, self.model.state(), 0, true, &mut self.mask_sums);
        }
        agree_finite::<N>(&mut *self.collective, None, (epoch, batch))?;
        let state = self.model.state_mut();
        // The other ranks' training forward advanced their step counter (the dropout masks mix it in).
        state.ws.step = state.ws.step.wrapping_add(1);
        let params = &mut state.params;
        prepare_rollback(&mut self.rollback, params)?;
        self.grads.fill(0.0);
        // No backward: the zero gradients, reported range by range as the other ranks' backward
        // reports them, so that every rank starts the same sums in the same order.
        let mut backward = |grads: &mut [f32], ready: &mut dyn FnMut(&[f32], usize)| {
            for &(offset, len) in N::BACKWARD_READY {
                if let Some(slice) = grads.get(offset..offset + len) {
                    ready(slice, offset);
                }
            }
        };
        let c = &mut *self.collective;
        let scale = sum_over_processes(c, &mut self.grads, (0, global), self.overlap, &mut backward);
        sum_statistics::<N>(c, params, &mut self.stat_buf, scale);
        if !N::WEIGHT_PENALTIES.is_empty() {
            crate::regularize::add_weight_gradients(params, &mut self.grads, N::WEIGHT_PENALTIES);
        }
        self.iterations += 1;
        apply_step::<N, O>(params, &mut self.optimizer, &self.grads, &mut self.rollback, (epoch, batch))
    }

    /// The current running values, keys prefixed with `prefix`.
    pub(crate) fn logs(&self, prefix: &str, into: &mut Logs) {
        into.insert(format!("{prefix}loss"), self.total.result());
        for slot in &self.outputs {
            if self.outputs.len() > 1 {
                into.insert(format!("{prefix}{}", slot.loss_key), slot.loss_state.result());
            }
            for ((_, key), st) in slot.metrics.iter().zip(&slot.metric_states) {
                into.insert(format!("{prefix}{key}"), st.result());
            }
        }
    }

    /// [`evaluate_rows`](Self::evaluate_rows) data-parallel (the validation of `fit`): each rank evaluates
    /// its share of every batch of `batch_size` rows (the batches one process evaluates, shared as
    /// training shares them, so that masked outputs are normalized by the same steps), and the loss and
    /// metric states are summed over the ranks: every rank logs the values one process logs. A rank whose
    /// share of a batch is empty skips it (taking part in its collective when outputs are masked). With one
    /// process, `evaluate_rows` itself.
    pub(crate) fn validate_rows(
        &mut self,
        data: (&N::Inputs<'_>, &N::Targets<'_>),
        rows: std::ops::Range<usize>,
        batch_size: usize,
        (prefix, into): (&str, &mut Logs),
        sample_weight: Option<&SampleWeight>,
    ) -> Result<()> {
        let (rank, ranks) = (self.collective.rank(), self.collective.size());
        if ranks <= 1 {
            return self.evaluate_rows(data, rows, batch_size, (prefix, into), sample_weight);
        }
        self.reset_states();
        let (mut s, end) = (rows.start, rows.end);
        while s < end {
            let e = s.saturating_add(batch_size).min(end);
            let share = crate::distributed::shard(e - s, rank, ranks);
            let (a, b) = (s + share.start, s + share.end);
            let mode = Mode::Eval { global: Some(e - s) };
            if a < b {
                self.stage_rows(data.0, Some(data.1), Rows::Range(a, b), mode, sample_weight)?;
                self.step_staged(b - a, mode)?;
            } else if has_masked_outputs::<N>() {
                sum_mask_steps::<N>(&mut *self.collective, self.model.state(), 0, false, &mut self.mask_sums);
            }
            s = e;
        }
        self.read_synced(|t| t.logs(prefix, into));
        Ok(())
    }

    /// Loss and metrics over `rows` in chunks of `batch_size`, in inference mode; the logs go into
    /// `into` with their keys prefixed by `prefix`.
    pub(crate) fn evaluate_rows(
        &mut self,
        (inputs, targets): (&N::Inputs<'_>, &N::Targets<'_>),
        rows: std::ops::Range<usize>,
        batch_size: usize,
        (prefix, into): (&str, &mut Logs),
        sample_weight: Option<&SampleWeight>,
    ) -> Result<()> {
        self.reset_states();
        let (mut s, end) = (rows.start, rows.end);
        while s < end {
            let e = s.saturating_add(batch_size).min(end);
            self.stage_rows(inputs, Some(targets), Rows::Range(s, e), Mode::Eval { global: None }, sample_weight)?;
            self.step_staged(e - s, Mode::Eval { global: None })?;
            s = e;
        }
        self.logs(prefix, into);
        Ok(())
    }

    /// Trains for `fit.epochs` epochs (Keras' `fit`): the last `validation_split` fraction of the
    /// rows is held out before shuffling; each epoch visits the other rows in a seeded random
    /// order (if `shuffle`) in batches of `batch_size`, the last one possibly smaller. Epoch
    /// values are means over samples.
    ///
    /// Faults stop training with a [`FitError`]: the error and the history of the epochs completed
    /// before it. Checked before training starts: the settings (a learning rate, schedule setting or
    /// loss weight that is not finite is an [`Error::Config`] naming it) and every input and target
    /// value (a NaN or infinity is an [`Error::NonFiniteData`] naming the tensor, row and column). Checked
    /// at every step: a non-finite loss ([`Error::NonFiniteLoss`]) stops training before the step is
    /// applied, and a step that makes a parameter non-finite ([`Error::NonFiniteParams`]) is undone. Either
    /// way the model keeps the weights from before the faulty step. The optimizer's own state (momenta)
    /// is the one after it: compile again for a fresh optimizer before training on.
    pub fn fit(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>, fit: &Fit) -> Result<History, FitError> {
        self.fit_with_callbacks(inputs, targets, None, fit, &mut [])
    }

    /// [`fit`](Self::fit) with the validation rows given explicitly (Keras' `validation_data`): they are
    /// evaluated after every epoch (the `val_` keys, as [`evaluate`](Self::evaluate) with `fit.batch_size`
    /// gives them), every training row is trained on, and `fit.validation_split` is ignored, as in Keras.
    pub fn fit_with_validation_data(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        (val_inputs, val_targets): (&N::Inputs<'_>, &N::Targets<'_>),
        fit: &Fit,
    ) -> Result<History, FitError> {
        self.fit_with_callbacks(inputs, targets, Some((val_inputs, val_targets)), fit, &mut [])
    }

    /// [`fit_with_validation_data`](Self::fit_with_validation_data) with the validation samples weighted
    /// (Keras' `validation_data=(x_val, y_val, sample_weight_val)`): the `val_` loss and weighted metrics
    /// are those of [`evaluate_weighted`](Self::evaluate_weighted) with `fit.batch_size`, as in Keras 3
    /// (the metrics of `compile` ignore the weights). One weight per validation row; `callbacks` as in
    /// [`fit_with_callbacks`](Self::fit_with_callbacks).
    pub fn fit_with_weighted_validation_data(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        (val_inputs, val_targets, val_weight): (&N::Inputs<'_>, &N::Targets<'_>, &SampleWeight),
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
    ) -> Result<History, FitError> {
        let mut history = History::default();
        match self.fit_into(inputs, targets, Some((val_inputs, val_targets, Some(val_weight))), fit, callbacks, &mut history) {
            Ok(()) => Ok(history),
            Err(error) => Err(FitError { error, history: Box::new(history) }),
        }
    }

    /// [`fit`](Self::fit) telling `callbacks` (Keras' `callbacks=[...]`), in order, about the training,
    /// every epoch and every batch (see [`Callback`]), after `fit.checkpoint` and `fit.early_stopping`;
    /// `validation`, when given, replaces `fit.validation_split` as in
    /// [`fit_with_validation_data`](Self::fit_with_validation_data). A callback can stop training and
    /// change the learning rate; an error it returns stops training with that error.
    ///
    /// Without callbacks that read the batch logs, the steps allocate nothing after the first; the batch
    /// logs are updated in place, so they allocate only on the first batch.
    pub fn fit_with_callbacks(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        validation: Option<(&N::Inputs<'_>, &N::Targets<'_>)>,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
    ) -> Result<History, FitError> {
        let mut history = History::default();
        match self.fit_into(inputs, targets, validation.map(|(x, y)| (x, y, None)), fit, callbacks, &mut history) {
            Ok(()) => Ok(history),
            Err(error) => Err(FitError { error, history: Box::new(history) }),
        }
    }

    /// [`fit`](Self::fit), appending each epoch's logs to `history`; `validation` (with its sample
    /// weights, if any) replaces the split.
    fn fit_into(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        validation: Option<ValidationArrays<'_, '_, '_, N>>,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
        history: &mut History,
    ) -> Result<()> {
        if fit.batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        fit.check_validation()?;
        let vs = if validation.is_some() { 0.0 } else { fit.validation_split };
        if !(0.0..1.0).contains(&vs) {
            return Err(Error::config("validation_split", vs, "must be in [0, 1)"));
        }
        self.check_settings(fit.schedule.as_ref())?;
        let n = self.check_batch(inputs, targets)?;
        let split_at = (n as f64 * (1.0 - f64::from(vs))).floor() as usize;
        if vs > 0.0 && (split_at == 0 || split_at == n) {
            return Err(Error::config(
                "validation_split",
                vs,
                format!(
                    "with {n} samples it leaves {split_at} for training and {} for validation; \
                     both must be non-empty",
                    n - split_at
                ),
            ));
        }
        let mut order: Vec<usize> = Vec::new();
        order.try_reserve_exact(split_at).map_err(|e| Error::Allocation {
            what: format!("the shuffling order of {split_at} rows"),
            size: format!("{split_at} indices: {e}"),
        })?;
        order.extend(0..split_at);
        // Once over every value, before any step: far cheaper than an epoch, and nothing has moved when it fails.
        check_finite_data::<N>(inputs, targets)?;
        let class_sample_weight;
        let train_weight = match (&fit.sample_weight, &fit.class_weight) {
            (None, None) => None,
            (Some(sw), None) => {
                sw.check(N::OUTPUTS, n)?;
                Some(sw)
            }
            (None, Some(cw)) => {
                class_sample_weight = self.class_weights(targets, cw)?;
                Some(&class_sample_weight)
            }
            (Some(_), Some(cw)) => {
                return Err(Error::config(
                    "class_weight",
                    format!("{cw:?}"),
                    "cannot be given together with `sample_weight` (as in Keras); multiply the class weights into the sample weights",
                ))
            }
        };
        if let Some((val_inputs, val_targets, val_weight)) = validation {
            let m = self.check_batch(val_inputs, val_targets)?;
            if let Some(sw) = val_weight {
                sw.check(N::OUTPUTS, m).map_err(validation_weight_error)?;
            }
        }
        // Data-parallel under MPI: every rank starts from rank 0's state and walks the same order.
        self.collective = if fit.data_parallel { crate::distributed::current() } else { Box::new(Local) };
        let (rank, ranks) = (self.collective.rank(), self.collective.size());
        self.overlap = fit.overlap_buckets.map(|bytes| (bytes / std::mem::size_of::<f32>()).max(1));
        if ranks > 1 {
            broadcast_state(&mut *self.collective, self.model.state_mut(), &mut self.optimizer, &mut self.iterations);
            self.rollback.valid = false;
        }
        let mut rng = crate::init::Rng::new(fit.seed);
        let pass = split_at.div_ceil(fit.batch_size);
        let batches = match fit.steps_per_epoch {
            None => pass,
            Some(s) if (1..=pass).contains(&s) => s,
            Some(s) => {
                return Err(Error::config(
                    "steps_per_epoch",
                    s,
                    format!(
                        "must be between 1 and the {pass} batches of {} rows that {split_at} training rows make; \
                         use more epochs instead of more steps",
                        fit.batch_size
                    ),
                ))
            }
        };
        // The next batch of the current pass over the training rows (0: a new pass, shuffled anew).
        let mut next_batch = 0usize;
        let mut builtin = builtin_callbacks::<N>(fit);
        let mut all = all_callbacks(&mut builtin, callbacks);
        let schedule = fit.schedule.as_ref();
        let mut logs = Logs::new();
        // The running values after each batch, updated in place (no allocation once every key is in).
        let mut batch_logs = Logs::new();
        // Resuming: the skipped epochs' shuffles and batches, so that the resumed ones match one run's.
        for _ in 0..fit.initial_epoch.min(fit.epochs) {
            if next_batch == 0 && fit.shuffle {
                rng.shuffle(&mut order);
            }
            next_batch = (next_batch + batches.min(pass - next_batch)) % pass;
        }
        let mut stopped = self.notify(&mut all, schedule, |c, ctx| c.on_train_begin(ctx))?;
        self.restore_callbacks(&mut all, fit)?;
        for epoch in fit.initial_epoch.saturating_add(1)..=fit.epochs {
            if stopped {
                break;
            }
            if next_batch == 0 && fit.shuffle {
                rng.shuffle(&mut order);
            }
            let take = batches.min(pass - next_batch);
            let mut run = self.begin_epoch(&mut all, fit, epoch, Some(take))?;
            for chunk in order.chunks(fit.batch_size).skip(next_batch).take(take) {
                if run.stopped {
                    break;
                }
                // This process' share of the global batch (all of it with one process).
                let rows = &chunk[crate::distributed::shard(chunk.len(), rank, ranks)];
                self.fit_batch(&mut all, &mut run, &mut batch_logs, Some(chunk.len()), |t, mode| {
                    if !rows.is_empty() {
                        t.stage_rows(inputs, Some(targets), Rows::List(rows), mode, train_weight)?;
                    }
                    Ok(rows.len())
                })?;
            }
            next_batch = (next_batch + take) % pass;
            stopped = self.end_epoch(&mut all, fit, run, (&mut logs, history), |t, logs| match validation {
                Some((val_inputs, val_targets, val_weight)) => {
                    let m = t.check_batch(val_inputs, val_targets)?;
                    t.validate_rows((val_inputs, val_targets), fit.validation_rows(0..m), fit.batch_size, ("val_", logs), val_weight)
                }
                None if split_at < n => t.validate_rows(
                    (inputs, targets),
                    fit.validation_rows(split_at..n),
                    fit.batch_size,
                    ("val_", logs),
                    fit.sample_weight.as_ref(),
                ),
                None => Ok(()),
            })?;
        }
        let view = LogsView::new(&logs, self.optimizer.learning_rate());
        self.notify(&mut all, schedule, |c, ctx| c.on_train_end(&view, ctx))?;
        Ok(())
    }

    /// Makes this trainer run in this process alone, for the training entry points that do not (yet)
    /// split their data across MPI processes (`fit_stream`): under `mpirun -n N` with `N > 1` each rank
    /// would otherwise train on the whole stream by itself, so that is an error naming the way out,
    /// unless `fit` asks for exactly that (`data_parallel: false`).
    pub(crate) fn single_process(&mut self, what: &str, fit: &Fit) -> Result<()> {
        let ranks = crate::distributed::current().size();
        if ranks > 1 && fit.data_parallel {
            return Err(Error::Distributed {
                message: format!(
                    "{what} runs in one process, but this is one of {ranks} MPI processes; \
                     every rank would train on the whole stream alone. Use `fit` on arrays (it shards \
                     every batch across the ranks), set `Fit {{ data_parallel: false, .. }}` to train this rank alone on \
                     the stream, or run without `mpirun`"
                ),
            });
        }
        self.collective = Box::new(Local);
        Ok(())
    }

    /// Starts epoch `epoch` (from 1) of `fit`: the progress bar (of `len` batches, when known), the running
    /// values reset, the callbacks told. Shared by the array and the streamed `fit`.
    pub(crate) fn begin_epoch<'f>(
        &mut self,
        all: &mut [&mut dyn Callback<N>],
        fit: &'f Fit,
        epoch: usize,
        len: Option<usize>,
    ) -> Result<EpochRun<'f>> {
        // Under MPI only rank 0 prints.
        let verbose = fit.verbose && self.collective.rank() == 0;
        let bar = (verbose && std::io::stderr().is_terminal()).then(|| progress_bar(epoch, fit.epochs, len));
        self.reset_states();
        let mut run = EpochRun {
            epoch,
            verbose,
            schedule: fit.schedule.as_ref(),
            len,
            done: 0,
            bar,
            started: Instant::now(),
            stopped: false,
            non_finite: None,
        };
        match self.notify(all, run.schedule, |c, ctx| c.on_epoch_begin(epoch - 1, ctx)) {
            Ok(stop) => run.stopped = stop,
            Err(e) => {
                run.abandon();
                return Err(e);
            }
        }
        Ok(run)
    }

    /// One training batch of an epoch, shared by the array and the streamed `fit`: sets the scheduled
    /// learning rate, tells the callbacks, stages the batch through `stage` (which returns its size),
    /// takes the step and updates the bar. A non-finite loss that a callback turns into a stop
    /// (TerminateOnNaN) sets `run.stopped` and `run.non_finite`; any other error abandons the bar.
    pub(crate) fn fit_batch(
        &mut self,
        all: &mut [&mut dyn Callback<N>],
        run: &mut EpochRun<'_>,
        batch_logs: &mut Logs,
        global: Option<usize>,
        stage: impl FnOnce(&mut Self, Mode) -> Result<usize>,
    ) -> Result<()> {
        let result = self.fit_batch_unguarded(all, run, batch_logs, global, stage);
        if result.is_err() {
            run.abandon();
        }
        result
    }

    /// [`fit_batch`](Self::fit_batch) without abandoning the bar on an error.
    fn fit_batch_unguarded(
        &mut self,
        all: &mut [&mut dyn Callback<N>],
        run: &mut EpochRun<'_>,
        batch_logs: &mut Logs,
        global: Option<usize>,
        stage: impl FnOnce(&mut Self, Mode) -> Result<usize>,
    ) -> Result<()> {
        let (epoch, b, schedule) = (run.epoch, run.done, run.schedule);
        let step = self.iterations;
        if let Some(schedule) = schedule {
            let lr = schedule.at(step);
            if !lr.is_finite() {
                return Err(Error::config(
                    "schedule",
                    format!("{schedule:?}"),
                    format!("gives a non-finite learning rate ({lr}) at step {step} (epoch {epoch}, batch {})", b + 1),
                ));
            }
            self.optimizer.set_learning_rate(lr);
        }
        run.stopped = self.notify(all, schedule, |c, ctx| c.on_train_batch_begin(b, ctx))?;
        let mode = Mode::Train { epoch, batch: b + 1, track: true, apply: true, global };
        let size = stage(self, mode)?;
        run.done += 1;
        let stepped = match global {
            // A process whose share of this global batch is empty still takes part in its collectives.
            Some(global) if size == 0 => self.idle_step(global, (epoch, b + 1)),
            _ => self.step_staged(size, mode).map(|_| ()),
        };
        if let Err(e) = stepped {
            // A callback may turn a non-finite loss into a stop (TerminateOnNaN).
            let Error::NonFiniteLoss { value, .. } = e else { return Err(e) };
            if all.is_empty() {
                return Err(e);
            }
            self.read_synced(|t| t.refresh_logs(batch_logs));
            set_log(batch_logs, "loss", value);
            let view = LogsView::new(batch_logs, self.optimizer.learning_rate());
            if !self.notify(all, schedule, |c, ctx| c.on_train_batch_end(b, &view, ctx))? {
                return Err(e);
            }
            (run.stopped, run.non_finite) = (true, Some(value));
            return Ok(());
        }
        if !all.is_empty() {
            self.read_synced(|t| t.refresh_logs(batch_logs));
            let view = LogsView::new(batch_logs, self.optimizer.learning_rate());
            run.stopped |= self.notify(all, schedule, |c, ctx| c.on_train_batch_end(b, &view, ctx))?;
        }
        if let Some(bar) = &run.bar {
            bar.inc(1);
            let mut logs = Logs::new();
            self.logs("", &mut logs);
            bar.set_message(format_logs(&logs));
        }
        Ok(())
    }

    /// Ends epoch `run` of `fit`, shared by the array and the streamed `fit`: the epoch's logs into `logs`,
    /// the `val_` values through `validate`, the history, the callbacks told, the bar finished (or one
    /// line printed). Returns whether training stops.
    pub(crate) fn end_epoch(
        &mut self,
        all: &mut [&mut dyn Callback<N>],
        fit: &Fit,
        run: EpochRun<'_>,
        (logs, history): (&mut Logs, &mut History),
        validate: impl FnOnce(&mut Self, &mut Logs) -> Result<()>,
    ) -> Result<bool> {
        logs.clear();
        self.read_synced(|t| t.logs("", logs));
        if let Some(value) = run.non_finite {
            logs.insert("loss".into(), value);
        }
        if !fit.validates(run.epoch) {
            // Keras' `validation_freq`: this epoch logs no `val_` values.
        } else if let Err(e) = validate(self, logs) {
            run.abandon();
            return Err(e);
        }
        let epoch = run.epoch;
        history.push_epoch(epoch - 1, logs);
        let view = LogsView::new(logs, self.optimizer.learning_rate());
        let view = if fit.validates(epoch) { view } else { view.without_validation() };
        let stopped = run.stopped | self.notify(all, run.schedule, |c, ctx| c.on_epoch_end(epoch - 1, &view, ctx))?;
        if let Some(bar) = run.bar {
            bar.finish_with_message(format_logs(logs));
        } else if run.verbose {
            let secs = run.started.elapsed().as_secs_f64();
            let step = per_step(secs / run.done.max(1) as f64);
            let len = run.len.map_or_else(|| run.done.to_string(), |l| l.to_string());
            eprintln!("Epoch {epoch}/{} - {}/{len} - {secs:.1}s - {step} - {}", fit.epochs, run.done, format_logs(logs));
        }
        if stopped && run.verbose {
            eprintln!("Epoch {epoch}: early stopping");
        }
        Ok(stopped)
    }

    /// Tells every callback in `callbacks` about one event through `f`, in order, then applies what they
    /// asked: a new learning rate (checked; refused when a schedule sets the rate), and forgets the undo
    /// copy when one took the model mutably. Returns whether one asked to stop.
    pub(crate) fn notify(
        &mut self,
        callbacks: &mut [&mut dyn Callback<N>],
        schedule: Option<&Schedule>,
        mut f: impl FnMut(&mut dyn Callback<N>, &mut Control<'_, N>) -> Result<()>,
    ) -> Result<bool> {
        if callbacks.is_empty() {
            return Ok(false);
        }
        let root = self.collective.rank() == 0;
        let lr = self.optimizer.learning_rate();
        let mut ctx = Control::new(&mut *self.model, lr).with_optimizer(&mut self.optimizer, self.iterations).deferring_checkpoints();
        let mut told = Ok(());
        // Data-parallel: the callbacks that write files run on rank 0 only.
        for c in callbacks.iter_mut().filter(|c| root || !c.root_only()) {
            told = f(&mut **c, &mut ctx);
            if told.is_err() {
                break;
            }
        }
        let (mut stop, lr, changed) = (ctx.stop_requested(), ctx.changed_learning_rate(), ctx.model_changed());
        let saves = ctx.take_checkpoints();
        if changed {
            self.rollback.valid = false;
        }
        if let (Ok(()), Some(lr)) = (&told, lr) {
            told = self.set_callback_learning_rate(lr, schedule);
        }
        if told.is_ok() && !saves.is_empty() {
            // After every callback and the new rate: the files hold the state the next event starts from.
            let states: crate::checkpoint::CallbackStates =
                callbacks.iter().enumerate().filter_map(|(i, c)| c.state().map(|s| (i, s))).collect();
            told = saves
                .iter()
                .try_for_each(|path| crate::checkpoint::save(&*self.model, &mut self.optimizer, self.iterations, path, &states));
        }
        if self.collective.size() > 1 {
            // Every rank stops when one does, and fails when one does, rather than wait for it.
            let mut flags = [f64::from(u8::from(stop)), f64::from(u8::from(told.is_err()))];
            self.collective.sum_f64(&mut flags);
            stop = flags[0] > 0.0;
            if flags[1] > 0.0 && told.is_ok() {
                told = Err(crate::distributed::peer_failed(flags[1] as usize));
            }
        }
        told?;
        Ok(stop)
    }

    /// Applies the learning rate a callback set (checked; refused when a schedule sets the rate).
    fn set_callback_learning_rate(&mut self, lr: f32, schedule: Option<&Schedule>) -> Result<()> {
        if schedule.is_some() {
            return Err(Error::config(
                "learning_rate",
                lr,
                "a callback cannot set it while `Fit::schedule` sets the rate of every step; drop the schedule or the callback",
            ));
        }
        check_learning_rate(lr)?;
        self.optimizer.set_learning_rate(lr);
        Ok(())
    }

    /// The running values, updated in place: no allocation once every key is present.
    fn refresh_logs(&self, into: &mut Logs) {
        set_log(into, "loss", self.total.result());
        for slot in &self.outputs {
            if self.outputs.len() > 1 {
                set_log(into, &slot.loss_key, slot.loss_state.result());
            }
            for ((_, key), st) in slot.metrics.iter().zip(&slot.metric_states) {
                set_log(into, key, st.result());
            }
        }
    }

    /// Loss and metrics over all rows in inference mode, in chunks of `batch_size` (Keras'
    /// `evaluate(..., return_dict=True)`), keyed like the history without `val_`.
    pub fn evaluate(&mut self, inputs: &N::Inputs<'_>, targets: &N::Targets<'_>, batch_size: usize) -> Result<Logs> {
        self.evaluate_with(inputs, targets, batch_size, None)
    }

    /// [`evaluate`](Self::evaluate) with per-sample weights (Keras' `evaluate(x, y, sample_weight=w)`,
    /// see [`SampleWeight`]): one per row.
    pub fn evaluate_weighted(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        batch_size: usize,
        sample_weight: &SampleWeight,
    ) -> Result<Logs> {
        self.evaluate_with(inputs, targets, batch_size, Some(sample_weight))
    }

    fn evaluate_with(
        &mut self,
        inputs: &N::Inputs<'_>,
        targets: &N::Targets<'_>,
        batch_size: usize,
        sample_weight: Option<&SampleWeight>,
    ) -> Result<Logs> {
        if batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1"));
        }
        let n = self.check_batch(inputs, targets)?;
        if let Some(sw) = sample_weight {
            sw.check(N::OUTPUTS, n)?;
        }
        let mut logs = Logs::new();
        self.evaluate_rows((inputs, targets), 0..n, batch_size, ("", &mut logs), sample_weight)?;
        Ok(logs)
    }

    /// The model's outputs over all rows in inference mode, computed in chunks of `batch_size`
    /// (bounding the workspace) and assembled in order.
    pub fn predict(&mut self, inputs: &N::Inputs<'_>, batch_size: usize) -> Result<N::Outputs> {
        predict_batched(self.model, inputs, batch_size)
    }
}

/// [`Trainer::predict`] without a trainer: inference in chunks of `batch_size` rows.
pub fn predict_batched<N: Network>(model: &mut N, inputs: &N::Inputs<'_>, batch_size: usize) -> Result<N::Outputs> {
    let _flush = crate::fpenv::FlushDenormals::new();
    if batch_size == 0 {
        return Err(Error::config("batch_size", 0, "must be at least 1"));
    }
    let n = check_inputs::<N>(inputs)?;
    // The outputs first: when even they cannot be allocated, fail before any work.
    let mut data = output_vecs::<N>(n)?;
    let mut s = 0;
    while s < n {
        let e = s.saturating_add(batch_size).min(n);
        // Inference only: the parameters do not change, so the packed weights stay valid across chunks.
        let state = model.state_for_inference();
        let _bf16 = state.dtype_policy.scope();
        state.infer.set_layout(Layout::Inference);
        state.infer.resize::<N>(e - s)?;
        N::visit_inputs(inputs, &mut |i, view| {
            let spec = &N::INPUTS[i];
            let len = spec.sample_len();
            let dst = input_buffer::<N>(&mut state.infer, i, (e - s) * len)?;
            gather_input::<N>(i, view, Rows::Range(s, e), len, dst)
        })?;
        run_inference::<N>(state);
        for (o, d) in data.iter_mut().enumerate() {
            d.extend_from_slice(output_slice::<N>(&state.infer, o)?);
        }
        s = e;
    }
    Ok(N::outputs_from(n, data))
}

/// The bar of one epoch: of `batches` steps when known, else a spinner counting the batches (a stream
/// whose length nobody knows).
fn progress_bar(epoch: usize, epochs: usize, batches: Option<usize>) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(batches.map(|b| b as u64), ProgressDrawTarget::stderr());
    let template = match batches {
        Some(_) => "{prefix} {bar:30.cyan/blue} {pos}/{len} [{elapsed_precise}<{eta_precise}] {msg}",
        None => "{prefix} {spinner} {pos} batches [{elapsed_precise}] {msg}",
    };
    if let Ok(style) = ProgressStyle::with_template(template) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_prefix(format!("Epoch {epoch}/{epochs}"));
    bar
}

/// Time per step as Keras prints it: `12ms/step`, or `350us/step` below a millisecond.
fn per_step(secs: f64) -> String {
    if secs >= 1e-3 {
        format!("{:.0}ms/step", secs * 1e3)
    } else {
        format!("{:.0}us/step", secs * 1e6)
    }
}

/// `loss: 0.1234 - accuracy: 0.9000` in key order.
fn format_logs(logs: &Logs) -> String {
    let parts: Vec<String> = logs.iter().map(|(k, v)| format!("{k}: {v:.4}")).collect();
    parts.join(" - ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_records_and_exports_csv() {
        let mut h = History::default();
        let mut logs = Logs::new();
        logs.insert("loss".into(), 0.5);
        logs.insert("accuracy".into(), 0.25);
        h.push(&logs);
        logs.insert("loss".into(), 0.125);
        h.push(&logs);
        assert_eq!(h.epochs(), 2);
        assert_eq!(h.get("loss"), Some(&[0.5, 0.125][..]));
        assert_eq!(h.last("accuracy"), Some(0.25));
        assert_eq!(h.last("val_loss"), None);
        assert_eq!(h.to_csv(), "epoch,accuracy,loss\n0,0.25,0.5\n1,0.25,0.125\n");
    }

    #[test]
    fn fit_defaults_match_keras() {
        let f = Fit::default();
        assert_eq!((f.epochs, f.batch_size, f.shuffle, f.seed), (1, 32, true, 0));
        assert_eq!(f.validation_split, 0.0);
        assert!(f.verbose);
    }

    #[test]
    fn step_time_prints_like_keras() {
        assert_eq!(per_step(0.012), "12ms/step");
        assert_eq!(per_step(0.00035), "350us/step");
    }

    #[test]
    fn finiteness_scans_find_the_first_bad_value_in_any_block() {
        for n in [1usize, 7, SCAN_BLOCK, SCAN_BLOCK + 3, 3 * SCAN_BLOCK + 5] {
            let x: Vec<f32> = (0..n).map(|i| i as f32 * 0.5 - 3.0).collect();
            assert_eq!(first_non_finite(&x), None);
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                for at in [0, n / 2, n - 1] {
                    let mut y = x.clone();
                    y[at] = bad;
                    if at + 1 < n {
                        y[n - 1] = f32::NAN;
                    }
                    assert_eq!(first_non_finite(&y), Some(at), "n {n}, {bad} at {at}");
                }
            }
        }
        // The largest finite values and subnormals are finite.
        assert!(all_finite(&[f32::MAX, f32::MIN, f32::MIN_POSITIVE / 2.0, -0.0]));
    }

    #[test]
    fn dispatched_scans_agree_with_the_portable_ones() {
        let mut x: Vec<f32> = (0..2 * SCAN_BLOCK + 37).map(|i| (i as f32).sin()).collect();
        x[SCAN_BLOCK + 21] = f32::NAN;
        assert_eq!(first_non_finite(&x), first_non_finite_portable(&x));
        let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
        assert_eq!(check_and_copy(&x, &mut a), check_and_copy_portable(&x, &mut b));
        assert_eq!(a, b);
    }

    #[test]
    fn check_and_copy_stops_at_the_block_holding_the_fault() {
        let src: Vec<f32> = (0..3 * SCAN_BLOCK).map(|i| i as f32).collect();
        let mut dst = vec![-1.0; src.len()];
        assert_eq!(check_and_copy(&src, &mut dst), None);
        assert_eq!(dst, src);
        let mut bad = src.clone();
        bad[SCAN_BLOCK + 10] = f32::INFINITY;
        let mut dst = vec![-1.0; src.len()];
        assert_eq!(check_and_copy(&bad, &mut dst), Some(SCAN_BLOCK + 10));
        assert_eq!(dst[..SCAN_BLOCK], src[..SCAN_BLOCK]);
        assert!(dst[SCAN_BLOCK..].iter().all(|&v| v == -1.0), "a block holding the fault was copied");
    }

    #[test]
    fn non_finite_data_names_the_row_and_the_index_within_the_sample() {
        let image = TensorSpec { name: "image", shape: &[2, 3, 4], dtype: crate::spec::DType::F32 };
        // Row 1, element (1, 2, 3) of a 2x3x4 sample: flat 24 + 12 + 8 + 3.
        let e = non_finite_data("input", &image, f32::NAN, 24 + 12 + 8 + 3, Rows::Range(0, 5));
        assert_eq!(
            e.to_string(),
            "input `image` holds a non-finite value (NaN) at row 1, index (1, 2, 3); replace or drop NaN/inf values before training"
        );
        let flat = TensorSpec { name: "y", shape: &[3], dtype: crate::spec::DType::F32 };
        // Batch position 2 of a shuffled batch is row 9 of the data.
        let e = non_finite_data("target", &flat, f32::NEG_INFINITY, 2 * 3 + 1, Rows::List(&[4, 0, 9]));
        assert!(e.to_string().starts_with("target `y` holds a non-finite value (-inf) at row 9, column 1;"), "{e}");
    }

    #[test]
    fn schedules_with_non_finite_settings_are_rejected() {
        let ok = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: 0.5, staircase: false };
        assert!(check_schedule(&ok).is_ok());
        let bad = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: f32::NAN, staircase: false };
        let msg = check_schedule(&bad).unwrap_err().to_string();
        assert!(msg.contains("`schedule`") && msg.contains("`decay_rate` = NaN must be finite"), "{msg}");
        let bad = Schedule::CosineDecay { initial: f32::INFINITY, decay_steps: 10, alpha: 0.0, warmup_target: None, warmup_steps: 0 };
        assert!(check_schedule(&bad).unwrap_err().to_string().contains("`initial` = inf"));
        assert!(check_learning_rate(f32::NAN).unwrap_err().to_string().contains("`learning_rate` = NaN"));
    }

    #[test]
    fn fit_error_displays_as_its_error_and_converts_with_question_mark() {
        let mut history = History::default();
        history.push(&Logs::from([("loss".to_string(), 0.5)]));
        let fit_error = FitError { error: Error::config("batch_size", 0, "must be at least 1"), history: Box::new(history) };
        assert_eq!(fit_error.to_string(), fit_error.error.to_string());
        let via_question_mark = || -> Result<()> { Err(FitError { error: Error::BackwardBeforeForward, history: Box::default() })? };
        assert!(matches!(via_question_mark(), Err(Error::BackwardBeforeForward)));
        let (error, history) = fit_error.into_parts();
        assert!(matches!(error, Error::Config { name: "batch_size", .. }));
        assert_eq!(history.epochs(), 1);
    }

    #[test]
    fn masked_shares_weighted_by_the_global_batch_give_the_whole_batch_s_weights() {
        // Two samples of 4 steps, one row per step: sample 0 keeps 1 step, sample 1 keeps 3.
        let mask = [1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 0.0];
        let sample = [0.5, 2.0];
        let mut whole = Vec::new();
        masked_row_weights(&mask, Some(&sample), 8, mask_counts(&mask, 4, None, 0), &mut whole);
        // Each share (one sample per rank) with the kept steps summed over the ranks (4).
        let summed = [4.0];
        for (r, rows) in [(0usize, 0..4), (1, 4..8)] {
            let mut share = Vec::new();
            let counts = mask_counts(&mask[rows.clone()], 4, Some((2, &summed[..])), 0);
            masked_row_weights(&mask[rows.clone()], Some(&sample[r..r + 1]), 4, counts, &mut share);
            assert_eq!(share, whole[rows.clone()], "share {r}");
            // Weighted by its own kept steps instead, a share differs: what data-parallel training did before.
            let mut local = Vec::new();
            masked_row_weights(&mask[rows.clone()], Some(&sample[r..r + 1]), 4, mask_counts(&mask[rows.clone()], 4, None, 0), &mut local);
            assert_ne!(local, whole[rows], "share {r}");
        }
        assert_eq!(whole, [0.5 * 2.0, 0.0, 0.0, 0.0, 2.0 * 2.0, 2.0 * 2.0, 2.0 * 2.0, 0.0]);
    }

    #[test]
    fn logs_format_in_key_order() {
        let mut logs = Logs::new();
        logs.insert("loss".into(), 0.5);
        logs.insert("accuracy".into(), 1.0);
        assert_eq!(format_logs(&logs), "accuracy: 1.0000 - loss: 0.5000");
    }
}
