//! Keras' callbacks: the [`Callback`] trait users implement, told about the training, epochs and batches
//! with their logs, able to stop training and change the learning rate; its Keras implementations
//! ([`EarlyStopping`], [`ModelCheckpoint`], [`ReduceLROnPlateau`], [`CsvLogger`], [`TerminateOnNaN`],
//! [`TensorBoard`](crate::tensorboard::TensorBoard)); and the learning-rate schedules.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::error::{Error, Result};
use crate::network::Network;
use crate::optim::Optimizer;
use crate::train::Logs;

/// A learning rate that changes with the optimizer step, as `keras.optimizers.schedules`.
///
/// The step is Keras' `optimizer.iterations`: the number of updates already applied, so the first
/// update uses `at(0)`. Check a schedule built from user input with [`Schedule::validate`]
/// (`fit` does); `at` itself never panics.
#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    /// `initial * decay_rate ^ (step / decay_steps)`, the exponent floored when `staircase`.
    ExponentialDecay {
        /// Learning rate at step 0.
        initial: f32,
        /// Steps per decay period.
        decay_steps: u64,
        /// Factor per period.
        decay_rate: f32,
        /// Decay in whole periods.
        staircase: bool,
    },
    /// `initial * ((1 - alpha) * (1 + cos(pi * min(step, decay_steps) / decay_steps)) / 2 + alpha)`.
    ///
    /// With a `warmup_target`, as Keras 3's `CosineDecay(warmup_target=, warmup_steps=)`: the rate first
    /// goes linearly from `initial` to `warmup_target` over `warmup_steps`, then decays from
    /// `warmup_target` by the formula above with `step - warmup_steps`.
    CosineDecay {
        /// Learning rate at step 0.
        initial: f32,
        /// Steps to decay over (after the warmup).
        decay_steps: u64,
        /// Floor, as a fraction of the rate decayed from.
        alpha: f32,
        /// Rate reached at the end of the warmup; `None` (Keras' default) for no warmup.
        warmup_target: Option<f32>,
        /// Length of the linear warmup (Keras default 0).
        warmup_steps: u64,
    },
    /// `values[i]` for `boundaries[i - 1] < step <= boundaries[i]`: `values[0]` up to and including
    /// the first boundary, the last value after the last one. Needs one more value than boundaries.
    PiecewiseConstantDecay {
        /// Increasing step boundaries.
        boundaries: Vec<u64>,
        /// The rate on each interval.
        values: Vec<f32>,
    },
    /// `(initial - end) * (1 - step / decay_steps) ^ power + end`, the step held at `decay_steps`; with
    /// `cycle`, `decay_steps` is instead multiplied by `ceil(step / decay_steps)` (1 at step 0).
    PolynomialDecay {
        /// Learning rate at step 0.
        initial: f32,
        /// Steps to decay over.
        decay_steps: u64,
        /// The final rate (Keras' `end_learning_rate`, default 0.0001).
        end: f32,
        /// Exponent (Keras default 1.0: linear).
        power: f32,
        /// Restart the decay every `decay_steps` (Keras default false).
        cycle: bool,
    },
    /// `initial / (1 + decay_rate * step / decay_steps)`, the ratio floored when `staircase`.
    InverseTimeDecay {
        /// Learning rate at step 0.
        initial: f32,
        /// Steps per decay period.
        decay_steps: u64,
        /// Rate of decay.
        decay_rate: f32,
        /// Decay in whole periods.
        staircase: bool,
    },
}

impl Schedule {
    /// Keras' `CosineDecay(initial, decay_steps)`: alpha 0, no warmup.
    pub fn cosine_decay(initial: f32, decay_steps: u64) -> Self {
        Schedule::CosineDecay { initial, decay_steps, alpha: 0.0, warmup_target: None, warmup_steps: 0 }
    }

    /// Keras' `PolynomialDecay(initial, decay_steps)`: end 0.0001, power 1, no cycle.
    pub fn polynomial_decay(initial: f32, decay_steps: u64) -> Self {
        Schedule::PolynomialDecay { initial, decay_steps, end: 0.0001, power: 1.0, cycle: false }
    }

    /// Checks what Keras checks when a schedule is made: `decay_steps` positive, one more value than
    /// boundaries for a piecewise constant schedule, and boundaries increasing.
    pub fn validate(&self) -> Result<()> {
        match self {
            Schedule::ExponentialDecay { decay_steps: 0, .. }
            | Schedule::CosineDecay { decay_steps: 0, .. }
            | Schedule::PolynomialDecay { decay_steps: 0, .. }
            | Schedule::InverseTimeDecay { decay_steps: 0, .. } => Err(Error::config("decay_steps", 0, "must be > 0")),
            Schedule::PiecewiseConstantDecay { boundaries, values } if values.len() != boundaries.len() + 1 => Err(Error::config(
                "values",
                format!("{values:?}"),
                format!("needs one more value than boundaries ({} boundaries {boundaries:?})", boundaries.len()),
            )),
            Schedule::PiecewiseConstantDecay { boundaries, .. } if boundaries.windows(2).any(|w| w[0] >= w[1]) => {
                Err(Error::config("boundaries", format!("{boundaries:?}"), "must be strictly increasing"))
            }
            _ => Ok(()),
        }
    }

    /// The learning rate at optimizer step `step` (counted from 0).
    pub fn at(&self, step: u64) -> f32 {
        match self {
            &Schedule::ExponentialDecay { initial, decay_steps, decay_rate, staircase } => {
                let p = step as f64 / decay_steps.max(1) as f64;
                let p = if staircase { p.floor() } else { p };
                (f64::from(initial) * f64::from(decay_rate).powf(p)) as f32
            }
            &Schedule::CosineDecay { initial, decay_steps, alpha, warmup_target, warmup_steps } => {
                let decay = |step: u64, from: f64| {
                    let t = step.min(decay_steps) as f64 / decay_steps.max(1) as f64;
                    let cosine = 0.5 * (1.0 + (std::f64::consts::PI * t).cos());
                    (from * ((1.0 - f64::from(alpha)) * cosine + f64::from(alpha))) as f32
                };
                let Some(target) = warmup_target else {
                    return decay(step, f64::from(initial));
                };
                let step = step.min(decay_steps.saturating_add(warmup_steps));
                if step < warmup_steps {
                    let (initial, target) = (f64::from(initial), f64::from(target));
                    ((target - initial) * (step as f64 / warmup_steps as f64) + initial) as f32
                } else {
                    decay(step - warmup_steps, f64::from(target))
                }
            }
            Schedule::PiecewiseConstantDecay { boundaries, values } => {
                let i = boundaries.iter().take_while(|&&b| step > b).count();
                values.get(i).or(values.last()).copied().unwrap_or(0.0)
            }
            &Schedule::PolynomialDecay { initial, decay_steps, end, power, cycle } => {
                let decay_steps = decay_steps.max(1);
                let (step, steps) = if cycle {
                    (step as f64, (decay_steps * step.div_ceil(decay_steps).max(1)) as f64)
                } else {
                    (step.min(decay_steps) as f64, decay_steps as f64)
                };
                let (initial, end) = (f64::from(initial), f64::from(end));
                ((initial - end) * (1.0 - step / steps).powf(f64::from(power)) + end) as f32
            }
            &Schedule::InverseTimeDecay { initial, decay_steps, decay_rate, staircase } => {
                let p = step as f64 / decay_steps.max(1) as f64;
                let p = if staircase { p.floor() } else { p };
                (f64::from(initial) / (1.0 + f64::from(decay_rate) * p)) as f32
            }
        }
    }
}

/// Whether a monitored value improves by going down or up (Keras' `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// From the name, as Keras' `mode="auto"`: up for accuracy, AUC, precision and recall, down otherwise.
    Auto,
    /// Lower is better (losses).
    Min,
    /// Higher is better (accuracies).
    Max,
}

impl Direction {
    /// `Min` or `Max` for the log key `monitor` (`Auto` resolved from its name).
    pub fn resolve(self, monitor: &str) -> Direction {
        match self {
            Direction::Auto if ["acc", "auc", "precision", "recall"].iter().any(|k| monitor.contains(k)) => Direction::Max,
            Direction::Auto => Direction::Min,
            d => d,
        }
    }

    /// Keras' `MonitorCallback._is_improvement`: whether `current` beats `reference` by more than
    /// `min_delta` in this direction (resolved for `monitor`). Anything finite beats no reference.
    pub fn is_improvement(self, monitor: &str, min_delta: f64, current: f64, reference: Option<f64>) -> bool {
        let delta = min_delta.abs();
        match (reference, self.resolve(monitor)) {
            (None, _) => current.is_finite(),
            (Some(r), Direction::Max) => current - delta > r,
            (Some(r), _) => current + delta < r,
        }
    }
}

/// The logs a [`Callback`] is given: the running loss and metrics of the epoch so far (after a batch),
/// the epoch's training and validation values (after an epoch), keyed as the [`History`](crate::train::History)
/// (`loss`, `<output>_loss`, `<metric>`, `val_...`), and the learning rate.
#[derive(Clone, Copy, Debug)]
pub struct LogsView<'a> {
    logs: &'a Logs,
    learning_rate: f32,
    unvalidated: bool,
}

impl<'a> LogsView<'a> {
    /// A view of `logs` with the optimizer's current `learning_rate`.
    pub fn new(logs: &'a Logs, learning_rate: f32) -> Self {
        LogsView { logs, learning_rate, unvalidated: false }
    }

    /// The logs of an epoch that `Fit::validation_freq` left without validation: a callback monitoring a
    /// `val_` key skips it, as Keras' do (they warn and skip a missing monitored value).
    pub(crate) fn without_validation(mut self) -> Self {
        self.unvalidated = true;
        self
    }

    /// The weighted total loss (`loss`).
    pub fn loss(&self) -> Option<f64> {
        self.get("loss")
    }

    /// The validation loss (`val_loss`), after an epoch with validation data.
    pub fn val_loss(&self) -> Option<f64> {
        self.get("val_loss")
    }

    /// Any value by its log key (`accuracy`, `val_auc`, `score_loss`, ...).
    pub fn get(&self, key: &str) -> Option<f64> {
        self.logs.get(key).copied()
    }

    /// A metric by its Keras name, with several outputs prefixed by the output (`score_accuracy`);
    /// the same as [`get`](Self::get), named for readability.
    pub fn metric(&self, name: &str) -> Option<f64> {
        self.get(name)
    }

    /// The optimizer's learning rate when the callback is called.
    pub fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    /// Every key and value, keys sorted.
    pub fn iter(&self) -> impl Iterator<Item = (&'a str, f64)> + 'a {
        self.logs.iter().map(|(k, &v)| (k.as_str(), v))
    }

    /// The logs as a map.
    pub fn as_map(&self) -> &'a Logs {
        self.logs
    }
}

/// What a callback carries from one epoch to the next (EarlyStopping's `wait` and `best`,
/// ReduceLROnPlateau's `cooldown_counter`, ...), saved in training checkpoints
/// ([`ModelCheckpoint::with_optimizer_state`], [`Trainer::save_checkpoint_with`]) so that a resumed `fit`
/// decides exactly as an uninterrupted one (what Keras' `BackupAndRestore` is for). See
/// [`Callback::state`].
///
/// [`Trainer::save_checkpoint_with`]: crate::train::Trainer::save_checkpoint_with
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallbackState {
    /// The kind of callback (`EarlyStopping`): a state is restored only into a callback of the same kind.
    pub kind: String,
    /// Named numbers (counters and best values); a value that is not set (`None`) is left out.
    pub values: BTreeMap<String, f64>,
    /// Named arrays (EarlyStopping's best weights).
    pub arrays: BTreeMap<String, Vec<f32>>,
}

impl CallbackState {
    /// An empty state of callback kind `kind`.
    pub fn new(kind: impl Into<String>) -> Self {
        CallbackState { kind: kind.into(), ..CallbackState::default() }
    }

    /// With value `name` set to `value`.
    pub fn with(mut self, name: &str, value: f64) -> Self {
        self.values.insert(name.to_string(), value);
        self
    }

    /// With value `name` set when `value` is `Some` (left out when `None`).
    pub fn with_option(self, name: &str, value: Option<f64>) -> Self {
        match value {
            Some(v) => self.with(name, v),
            None => self,
        }
    }

    /// With array `name` set when `value` is `Some`.
    pub fn with_array(mut self, name: &str, value: Option<&[f32]>) -> Self {
        if let Some(v) = value {
            self.arrays.insert(name.to_string(), v.to_vec());
        }
        self
    }

    /// Value `name`, `None` when it was not set.
    pub fn value(&self, name: &str) -> Option<f64> {
        self.values.get(name).copied()
    }

    /// Value `name` as a count (an epoch, a number of epochs): an error when it is missing, negative or
    /// not a whole number.
    pub fn count(&self, name: &str) -> Result<usize> {
        match self.value(name) {
            Some(v) if v >= 0.0 && v.fract() == 0.0 && v < 2f64.powi(53) => Ok(v as usize),
            other => Err(Error::config(
                "callback state",
                format!("{}.{name} = {other:?}", self.kind),
                "must be a count (a whole number, not negative); the checkpoint is damaged or of another version",
            )),
        }
    }

    /// Value `name` as an optional count (`None` when it was not set).
    pub fn count_option(&self, name: &str) -> Result<Option<usize>> {
        self.values.contains_key(name).then(|| self.count(name)).transpose()
    }

    /// Checks that this state is of kind `kind`.
    pub fn expect_kind(&self, kind: &str) -> Result<()> {
        if self.kind == kind {
            Ok(())
        } else {
            Err(Error::config(
                "callback state",
                &self.kind,
                format!("is restored into a `{kind}`; pass the callbacks in the order of the run that saved the checkpoint"),
            ))
        }
    }
}

/// What a [`Callback`] may act on: the model (its weights), the learning rate and whether training
/// goes on (Keras' `self.model`, `self.model.optimizer.learning_rate` and `self.model.stop_training`).
pub struct Control<'a, N: Network> {
    model: &'a mut N,
    /// The optimizer and the trainer's step count, for checkpoints of the training state.
    optimizer: Option<(&'a mut dyn Optimizer, u64)>,
    learning_rate: f32,
    lr_changed: bool,
    stop: bool,
    params_changed: bool,
    /// Under `fit`: the checkpoints asked for during this event, written once every callback has been
    /// told (so that they hold every callback's state after the event).
    deferred: Option<Vec<PathBuf>>,
}

impl<N: Network> std::fmt::Debug for Control<'_, N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Control")
            .field("model", &N::NAME)
            .field("learning_rate", &self.learning_rate)
            .field("stop", &self.stop)
            .finish_non_exhaustive()
    }
}

impl<'a, N: Network> Control<'a, N> {
    /// A control over `model` whose optimizer's rate is `learning_rate`.
    pub fn new(model: &'a mut N, learning_rate: f32) -> Self {
        Control { model, optimizer: None, learning_rate, lr_changed: false, stop: false, params_changed: false, deferred: None }
    }

    /// Makes [`save_checkpoint`](Self::save_checkpoint) ask for the checkpoint instead of writing it:
    /// `fit` writes the ones asked for ([`take_checkpoints`](Self::take_checkpoints)) once every callback
    /// has been told about the event, with every callback's state.
    pub(crate) fn deferring_checkpoints(mut self) -> Self {
        self.deferred = Some(Vec::new());
        self
    }

    /// The checkpoints asked for during the event (deferred), in order.
    pub(crate) fn take_checkpoints(&mut self) -> Vec<PathBuf> {
        self.deferred.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// Gives the control the trainer's `optimizer` and step count `iterations`, so that callbacks can
    /// save the training state ([`save_checkpoint`](Self::save_checkpoint)). `fit` always does.
    pub fn with_optimizer(mut self, optimizer: &'a mut dyn Optimizer, iterations: u64) -> Self {
        self.optimizer = Some((optimizer, iterations));
        self
    }

    /// Saves the weights and, when the control has the optimizer (always under `fit`), its state and
    /// the step count, as [`Trainer::save_checkpoint`](crate::train::Trainer::save_checkpoint) does.
    /// Without the optimizer it is an error rather than a weights-only file that cannot resume.
    ///
    /// Under `fit` the file is written once every callback has been told about the current event (an
    /// error writing it stops training as an error of the callback would), and it holds the state of
    /// every callback ([`Callback::state`]) and the learning rate as they are after the event: a run
    /// resumed from it decides exactly as the uninterrupted one.
    pub fn save_checkpoint(&mut self, path: impl AsRef<std::path::Path>) -> Result<()> {
        if let (Some(deferred), Some(_)) = (&mut self.deferred, &self.optimizer) {
            deferred.push(path.as_ref().to_path_buf());
            return Ok(());
        }
        match &mut self.optimizer {
            Some((optimizer, iterations)) => crate::checkpoint::save(&*self.model, &mut **optimizer, *iterations, path, &[]),
            None => Err(Error::config(
                "save_weights_only",
                false,
                "this callback control has no optimizer to save (made with `Control::new` without `with_optimizer`)",
            )),
        }
    }

    /// The model.
    pub fn model(&self) -> &N {
        self.model
    }

    /// The model, mutably (to set its weights).
    pub fn model_mut(&mut self) -> &mut N {
        self.params_changed = true;
        self.model
    }

    /// The learning rate the next step uses.
    pub fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    /// Sets the optimizer's learning rate from the next step on (an error, once the callback returns,
    /// when it is not finite or when `Fit::schedule` sets the rate of every step, as Keras refuses).
    pub fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
        self.lr_changed = true;
    }

    /// Ends training after the current batch (Keras' `model.stop_training = True`): the epoch is
    /// completed with the batches already run, its logs recorded, and `fit` returns the history.
    pub fn stop_training(&mut self) {
        self.stop = true;
    }

    /// Whether a callback asked training to stop.
    pub fn stop_requested(&self) -> bool {
        self.stop
    }

    /// The new learning rate, if a callback set one.
    pub fn changed_learning_rate(&self) -> Option<f32> {
        self.lr_changed.then_some(self.learning_rate)
    }

    /// Whether a callback took the model mutably (its weights may have changed).
    pub fn model_changed(&self) -> bool {
        self.params_changed
    }
}

/// Told about training as Keras' `keras.callbacks.Callback`; every method does nothing by default.
///
/// Epochs and batches are counted from 0 as in Keras (the first epoch of `fit` with `initial_epoch: 3`
/// is epoch 3; batches restart at 0 every epoch). An error a method returns stops training with it
/// ([`FitError`](crate::train::FitError)). Pass callbacks to
/// [`Trainer::fit_with_callbacks`](crate::train::Trainer::fit_with_callbacks).
pub trait Callback<N: Network> {
    /// Before the first epoch.
    fn on_train_begin(&mut self, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = ctx;
        Ok(())
    }

    /// After the last epoch, with the last epoch's logs (also after a stop).
    fn on_train_end(&mut self, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = (logs, ctx);
        Ok(())
    }

    /// Before epoch `epoch`'s first batch.
    fn on_epoch_begin(&mut self, epoch: usize, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = (epoch, ctx);
        Ok(())
    }

    /// After epoch `epoch`, its validation included: the epoch's mean training values and the `val_` ones.
    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = (epoch, logs, ctx);
        Ok(())
    }

    /// Before training batch `batch` of the epoch.
    fn on_train_batch_begin(&mut self, batch: usize, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = (batch, ctx);
        Ok(())
    }

    /// After training batch `batch`, with the epoch's running means so far. After a batch whose loss is
    /// not finite (before its step, which is not applied), `loss` holds that value: a callback that stops
    /// training then ends `fit` normally instead of with [`Error::NonFiniteLoss`].
    fn on_train_batch_end(&mut self, batch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        let _ = (batch, logs, ctx);
        Ok(())
    }

    /// Whether only rank 0 runs this callback when `fit` trains data-parallel (feature `mpi`): true for
    /// the ones that write files (checkpoints, CSV, TensorBoard), false (every rank) by default, as
    /// callbacks that stop training or change the learning rate must decide alike everywhere. One
    /// process is rank 0: it runs every callback.
    fn root_only(&self) -> bool {
        false
    }

    /// What this callback carries from one epoch to the next, saved in training checkpoints
    /// ([`ModelCheckpoint::with_optimizer_state`], [`Trainer::save_checkpoint_with`]); `None` (the
    /// default) for a callback without such state. A `fit` resumed from a checkpoint (its
    /// `initial_epoch` above 0, after [`Trainer::load_checkpoint`]) hands each callback the state saved
    /// for the callback at its position, after [`on_train_begin`](Self::on_train_begin), through
    /// [`restore_state`](Self::restore_state). EarlyStopping, ReduceLROnPlateau, ModelCheckpoint
    /// (`save_best_only`) and TensorBoard implement it.
    ///
    /// [`Trainer::save_checkpoint_with`]: crate::train::Trainer::save_checkpoint_with
    /// [`Trainer::load_checkpoint`]: crate::train::Trainer::load_checkpoint
    fn state(&self) -> Option<CallbackState> {
        None
    }

    /// Takes back the state [`state`](Self::state) gave (when training resumes from a checkpoint); an
    /// error for a state of another kind or with a missing or wrong value.
    fn restore_state(&mut self, state: &CallbackState) -> Result<()> {
        let _ = state;
        Ok(())
    }
}

/// The monitored value in `logs`, `None` for a `val_` key after an epoch `validation_freq` did not
/// validate (the callback skips the epoch, as Keras'), or an error naming the logged keys.
fn monitored(logs: &LogsView<'_>, monitor: &str) -> Result<Option<f64>> {
    if logs.unvalidated && monitor.starts_with("val_") && logs.get(monitor).is_none() {
        return Ok(None);
    }
    logs.get(monitor).map(Some).ok_or_else(|| {
        let keys: Vec<&str> = logs.iter().map(|(k, _)| k).collect();
        Error::config(
            "monitor",
            monitor,
            format!(
                "no such value is logged; the logs have {} (a `val_` key needs validation_split > 0 or validation data)",
                keys.join(", ")
            ),
        )
    })
}

/// Stops training when `monitor` has not improved by more than `min_delta` for `patience` epochs,
/// as `keras.callbacks.EarlyStopping`; with `restore_best_weights` the model ends with the weights of
/// its best epoch. The public state (`wait`, `best`, `stopped_epoch`, ...) is Keras' and is reset when
/// training begins.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The log key watched (Keras default `val_loss`).
    pub monitor: String,
    /// Epochs without improvement before stopping (default 0).
    pub patience: usize,
    /// Smallest change that counts as an improvement (default 0).
    pub min_delta: f64,
    /// Which way is better (Keras' `mode`, default auto).
    pub direction: Direction,
    /// A value to beat: until the monitored value beats it, epochs count as without improvement.
    pub baseline: Option<f64>,
    /// Put back the weights of the best epoch when training ends (default false).
    pub restore_best_weights: bool,
    /// Epochs to wait before watching (Keras' `start_from_epoch`, default 0).
    pub start_from_epoch: usize,
    /// Epochs since the last improvement.
    pub wait: usize,
    /// The best value so far.
    pub best: Option<f64>,
    /// The epoch that stopped training, if one did.
    pub stopped_epoch: Option<usize>,
    /// The epoch of the best value.
    pub best_epoch: Option<usize>,
    /// The parameters of the best epoch (with `restore_best_weights`).
    pub best_weights: Option<Vec<f32>>,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping {
            monitor: "val_loss".into(),
            patience: 0,
            min_delta: 0.0,
            direction: Direction::Auto,
            baseline: None,
            restore_best_weights: false,
            start_from_epoch: 0,
            wait: 0,
            best: None,
            stopped_epoch: None,
            best_epoch: None,
            best_weights: None,
        }
    }
}

impl<N: Network> Callback<N> for EarlyStopping {
    fn on_train_begin(&mut self, _: &mut Control<'_, N>) -> Result<()> {
        (self.wait, self.best, self.stopped_epoch, self.best_epoch, self.best_weights) = (0, self.baseline, None, None, None);
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        let Some(current) = monitored(logs, &self.monitor)? else { return Ok(()) };
        if epoch < self.start_from_epoch {
            return Ok(());
        }
        if self.restore_best_weights && self.best_weights.is_none() {
            self.best_weights = Some(ctx.model().state().params.clone());
            self.best_epoch = Some(epoch);
        }
        self.wait += 1;
        if self.direction.is_improvement(&self.monitor, self.min_delta, current, self.best) {
            self.best = Some(current);
            self.best_epoch = Some(epoch);
            if self.restore_best_weights {
                self.best_weights = Some(ctx.model().state().params.clone());
            }
            if self.baseline.is_none_or(|b| self.direction.is_improvement(&self.monitor, self.min_delta, current, Some(b))) {
                self.wait = 0;
            }
            return Ok(());
        }
        if self.wait >= self.patience && epoch > 0 {
            self.stopped_epoch = Some(epoch);
            ctx.stop_training();
        }
        Ok(())
    }

    fn on_train_end(&mut self, _: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        if let (true, Some(best)) = (self.restore_best_weights, &self.best_weights) {
            ctx.model_mut().state_mut().params.copy_from_slice(best);
        }
        Ok(())
    }

    fn state(&self) -> Option<CallbackState> {
        let epoch = |e: Option<usize>| e.map(|e| e as f64);
        Some(
            CallbackState::new("EarlyStopping")
                .with("wait", self.wait as f64)
                .with_option("best", self.best)
                .with_option("stopped_epoch", epoch(self.stopped_epoch))
                .with_option("best_epoch", epoch(self.best_epoch))
                .with_array("best_weights", self.best_weights.as_deref()),
        )
    }

    fn restore_state(&mut self, state: &CallbackState) -> Result<()> {
        state.expect_kind("EarlyStopping")?;
        let best_weights = state.arrays.get("best_weights").cloned();
        if let Some(w) = &best_weights {
            if w.len() != N::PARAM_COUNT {
                return Err(Error::config(
                    "callback state",
                    format!("EarlyStopping.best_weights ({} values)", w.len()),
                    format!("model `{}` has {} parameters", N::NAME, N::PARAM_COUNT),
                ));
            }
        }
        (self.wait, self.stopped_epoch, self.best_epoch) =
            (state.count("wait")?, state.count_option("stopped_epoch")?, state.count_option("best_epoch")?);
        (self.best, self.best_weights) = (state.value("best"), best_weights);
        Ok(())
    }
}

/// Saves the weights after every epoch (`last`) and whenever `monitor` reaches a new best (`best`);
/// each save is crash-safe. Two [`ModelCheckpoint`]s in one.
#[derive(Clone, Debug, PartialEq)]
pub struct Checkpoint {
    /// Where the latest epoch's weights go, if anywhere.
    pub last: Option<PathBuf>,
    /// Where the best epoch's weights go, if anywhere.
    pub best: Option<PathBuf>,
    /// The log key that decides "best" (`val_loss` by default).
    pub monitor: String,
    /// Which way is better.
    pub direction: Direction,
}

impl Default for Checkpoint {
    fn default() -> Self {
        Checkpoint { last: None, best: None, monitor: "val_loss".into(), direction: Direction::Auto }
    }
}

impl Checkpoint {
    /// The two [`ModelCheckpoint`]s it stands for.
    pub fn into_callbacks(self) -> Vec<ModelCheckpoint> {
        let mut v = Vec::new();
        if let Some(path) = self.last {
            v.push(ModelCheckpoint { monitor: self.monitor.clone(), direction: self.direction, ..ModelCheckpoint::new(path) });
        }
        if let Some(path) = self.best {
            v.push(ModelCheckpoint {
                monitor: self.monitor,
                direction: self.direction,
                save_best_only: true,
                ..ModelCheckpoint::new(path)
            });
        }
        v
    }
}

/// Saves the model's weights (safetensors, crash-safe) after every epoch, or only when `monitor`
/// improves, as `keras.callbacks.ModelCheckpoint(save_weights_only=True)`.
///
/// `filepath` may hold Keras' placeholders: `{epoch}` (counted from 1, as Keras), `{epoch:02d}`, and any
/// log key, `{val_loss}` or `{val_loss:.2f}`, so that every epoch gets its own file.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelCheckpoint {
    /// Where to save; may hold placeholders.
    pub filepath: String,
    /// The log key deciding "best" (default `val_loss`).
    pub monitor: String,
    /// Which way is better (default auto).
    pub direction: Direction,
    /// Save only when `monitor` improves on the best so far (default false: every epoch).
    pub save_best_only: bool,
    /// A value the first save must beat (with `save_best_only`).
    pub initial_value_threshold: Option<f64>,
    /// The best value so far.
    pub best: Option<f64>,
    /// Save the weights only (default true, a file [`io::load`](crate::io::load) reads). False, as
    /// Keras' `save_weights_only=False`, also saves the optimizer's state and step count, so that
    /// [`Trainer::load_checkpoint`](crate::train::Trainer::load_checkpoint) resumes training exactly.
    pub save_weights_only: bool,
}

impl ModelCheckpoint {
    /// Saves to `filepath` after every epoch, watching `val_loss` (Keras' defaults).
    pub fn new(filepath: impl Into<PathBuf>) -> Self {
        ModelCheckpoint {
            filepath: filepath.into().to_string_lossy().into_owned(),
            monitor: "val_loss".into(),
            direction: Direction::Auto,
            save_best_only: false,
            initial_value_threshold: None,
            best: None,
            save_weights_only: true,
        }
    }

    /// Saves the optimizer's state with the weights (Keras' `save_weights_only=False`): see
    /// [`save_weights_only`](Self::save_weights_only).
    pub fn with_optimizer_state(mut self) -> Self {
        self.save_weights_only = false;
        self
    }
}

impl<N: Network> Callback<N> for ModelCheckpoint {
    fn root_only(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, _: &mut Control<'_, N>) -> Result<()> {
        self.best = self.initial_value_threshold;
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        if self.save_best_only {
            let Some(current) = monitored(logs, &self.monitor)? else { return Ok(()) };
            if !self.direction.is_improvement(&self.monitor, 0.0, current, self.best) {
                return Ok(());
            }
            self.best = Some(current);
        }
        let path = format_filepath(&self.filepath, epoch + 1, logs)?;
        if self.save_weights_only {
            crate::io::save(ctx.model(), path)
        } else {
            ctx.save_checkpoint(path)
        }
    }

    fn state(&self) -> Option<CallbackState> {
        self.save_best_only.then(|| CallbackState::new("ModelCheckpoint").with_option("best", self.best))
    }

    fn restore_state(&mut self, state: &CallbackState) -> Result<()> {
        state.expect_kind("ModelCheckpoint")?;
        self.best = state.value("best");
        Ok(())
    }
}

/// Fills Keras' `{epoch}`, `{epoch:02d}`, `{key}` and `{key:.Nf}` placeholders of a checkpoint path.
pub fn format_filepath(template: &str, epoch: usize, logs: &LogsView<'_>) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}') else {
            return Err(Error::config("filepath", template, "has a `{` without its `}`"));
        };
        let field = &rest[open + 1..open + close];
        let (key, spec) = field.split_once(':').unwrap_or((field, ""));
        let value = if key == "epoch" { Some(epoch as f64) } else { logs.get(key) };
        let Some(value) = value else {
            return Err(Error::config("filepath", template, format!("`{{{key}}}` is neither `epoch` nor a logged key")));
        };
        out.push_str(
            &format_number(value, spec)
                .ok_or_else(|| Error::config("filepath", template, format!("`{spec}` is not a supported format (use `02d` or `.4f`)")))?,
        );
        rest = &rest[open + close + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Formats `v` by a Python format spec: empty, `d`, `0Nd`, `Nd`, `.Nf`, `N.Mf`.
fn format_number(v: f64, spec: &str) -> Option<String> {
    if spec.is_empty() {
        return Some(if v.fract() == 0.0 && v.abs() < 1e15 { format!("{}", v as i64) } else { v.to_string() });
    }
    if let Some(w) = spec.strip_suffix('d') {
        let zero = w.starts_with('0');
        let width: usize = if w.is_empty() { 0 } else { w.parse().ok()? };
        let n = v as i64;
        return Some(if zero { format!("{n:0width$}") } else { format!("{n:width$}") });
    }
    let f = spec.strip_suffix('f')?;
    let (width, prec) = f.split_once('.')?;
    let width: usize = if width.is_empty() { 0 } else { width.parse().ok()? };
    let prec: usize = prec.parse().ok()?;
    Some(format!("{v:width$.prec$}"))
}

/// Multiplies the learning rate by `factor` when `monitor` has not improved by more than `min_delta`
/// for `patience` epochs, then waits `cooldown` epochs, never going below `min_lr`, as
/// `keras.callbacks.ReduceLROnPlateau` (same defaults).
#[derive(Clone, Debug, PartialEq)]
pub struct ReduceLROnPlateau {
    /// The log key watched (default `val_loss`).
    pub monitor: String,
    /// Factor the rate is multiplied by (default 0.1; must be below 1).
    pub factor: f32,
    /// Epochs without improvement before reducing (default 10).
    pub patience: usize,
    /// Which way is better (default auto).
    pub direction: Direction,
    /// Smallest change that counts as an improvement (default 1e-4).
    pub min_delta: f64,
    /// Epochs after a reduction during which nothing counts (default 0).
    pub cooldown: usize,
    /// The lowest rate (default 0).
    pub min_lr: f32,
    /// Epochs since the last improvement.
    pub wait: usize,
    /// Epochs of cooldown left.
    pub cooldown_counter: usize,
    /// The best value so far.
    pub best: Option<f64>,
}

impl Default for ReduceLROnPlateau {
    fn default() -> Self {
        ReduceLROnPlateau {
            monitor: "val_loss".into(),
            factor: 0.1,
            patience: 10,
            direction: Direction::Auto,
            min_delta: 1e-4,
            cooldown: 0,
            min_lr: 0.0,
            wait: 0,
            cooldown_counter: 0,
            best: None,
        }
    }
}

impl<N: Network> Callback<N> for ReduceLROnPlateau {
    fn on_train_begin(&mut self, _: &mut Control<'_, N>) -> Result<()> {
        if self.factor.is_nan() || self.factor >= 1.0 {
            return Err(Error::config("factor", self.factor, "ReduceLROnPlateau needs a factor below 1.0"));
        }
        (self.best, self.cooldown_counter, self.wait) = (None, 0, 0);
        Ok(())
    }

    fn on_epoch_end(&mut self, _: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        let Some(current) = monitored(logs, &self.monitor)? else { return Ok(()) };
        if self.cooldown_counter > 0 {
            self.cooldown_counter -= 1;
            self.wait = 0;
        }
        if self.direction.is_improvement(&self.monitor, self.min_delta, current, self.best) {
            self.best = Some(current);
            self.wait = 0;
        } else if self.cooldown_counter == 0 {
            self.wait += 1;
            let old = ctx.learning_rate();
            if self.wait >= self.patience && old > self.min_lr {
                // Keras computes in Python floats (f64) and stores the rate as float32.
                let new = (f64::from(old) * f64::from(self.factor)).max(f64::from(self.min_lr));
                ctx.set_learning_rate(new as f32);
                self.cooldown_counter = self.cooldown;
                self.wait = 0;
            }
        }
        Ok(())
    }

    fn state(&self) -> Option<CallbackState> {
        Some(
            CallbackState::new("ReduceLROnPlateau")
                .with("wait", self.wait as f64)
                .with("cooldown_counter", self.cooldown_counter as f64)
                .with_option("best", self.best),
        )
    }

    fn restore_state(&mut self, state: &CallbackState) -> Result<()> {
        state.expect_kind("ReduceLROnPlateau")?;
        (self.wait, self.cooldown_counter, self.best) = (state.count("wait")?, state.count("cooldown_counter")?, state.value("best"));
        Ok(())
    }
}

/// Streams the epoch logs to a CSV file, as `keras.callbacks.CSVLogger`: header `epoch` and the keys of
/// the first epoch's logs sorted (with a `val_` column for each when there is none, as Keras), one row
/// per epoch (numbered from 0, or from `initial_epoch`), `NA` for a missing value, numbers as Python
/// prints them. The file is rewritten crash-safely after every epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct CsvLogger {
    /// The file.
    pub filename: PathBuf,
    /// Between fields (default `,`).
    pub separator: char,
    /// Add to an existing file instead of replacing it (default false); the header is written only
    /// when the file is empty.
    pub append: bool,
    keys: Option<Vec<String>>,
    text: String,
}

impl CsvLogger {
    /// Logs to `filename` with Keras' defaults (comma, no append).
    pub fn new(filename: impl Into<PathBuf>) -> Self {
        CsvLogger { filename: filename.into(), separator: ',', append: false, keys: None, text: String::new() }
    }

    /// Adds to an existing file (Keras' `append=True`).
    pub fn appending(mut self) -> Self {
        self.append = true;
        self
    }

    /// Separates fields with `separator` (Keras' `separator`).
    pub fn with_separator(mut self, separator: char) -> Self {
        self.separator = separator;
        self
    }

    fn field(&self, s: &str) -> String {
        if s.contains([self.separator, '"', '\n', '\r']) {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    }
}

/// `v` as Python's `repr(float)`: `0.5`, `1.0`, `1e-05`, `nan`, `inf`.
pub fn python_float(v: f64) -> String {
    if v.is_nan() {
        return "nan".into();
    }
    if v.is_infinite() {
        return if v > 0.0 { "inf".into() } else { "-inf".into() };
    }
    let a = v.abs();
    if a != 0.0 && !(1e-4..1e16).contains(&a) {
        let s = format!("{v:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((&s, "0"));
        let (sign, digits) = exp.strip_prefix('-').map_or(("+", exp), |d| ("-", d));
        return format!("{mantissa}e{sign}{digits:0>2}");
    }
    let s = v.to_string();
    if s.contains('.') {
        s
    } else {
        format!("{s}.0")
    }
}

impl<N: Network> Callback<N> for CsvLogger {
    fn root_only(&self) -> bool {
        true
    }

    fn on_train_begin(&mut self, _: &mut Control<'_, N>) -> Result<()> {
        self.keys = None;
        self.text = if self.append {
            match std::fs::read_to_string(&self.filename) {
                Ok(t) => t,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
                Err(e) => return Err(Error::io(&self.filename, e)),
            }
        } else {
            String::new()
        };
        Ok(())
    }

    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, _: &mut Control<'_, N>) -> Result<()> {
        let sep = self.separator.to_string();
        if self.keys.is_none() {
            let mut keys: Vec<String> = logs.iter().map(|(k, _)| k.to_string()).collect();
            if !keys.is_empty() && !keys.iter().any(|k| k.starts_with("val_")) {
                let val: Vec<String> = keys.iter().map(|k| format!("val_{k}")).collect();
                keys.extend(val);
            }
            if self.text.is_empty() {
                let header: Vec<String> = std::iter::once("epoch".to_string()).chain(keys.iter().map(|k| self.field(k))).collect();
                self.text = header.join(&sep) + "\r\n";
            }
            self.keys = Some(keys);
        }
        let keys = self.keys.as_deref().unwrap_or_default();
        let row: Vec<String> =
            std::iter::once(epoch.to_string()).chain(keys.iter().map(|k| logs.get(k).map_or("NA".into(), python_float))).collect();
        self.text.push_str(&row.join(&sep));
        self.text.push_str("\r\n");
        crate::io::write_atomic(&self.filename, self.text.as_bytes())
    }
}

/// Stops training at the first batch whose loss is NaN or infinite, as `keras.callbacks.TerminateOnNaN`:
/// `fit` then returns the history (the stopped epoch's `loss` is that value) instead of
/// [`Error::NonFiniteLoss`], and the step of that batch is not applied. With `raise_error` (Keras'
/// `raise_error=True`), the error is returned instead.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TerminateOnNaN {
    /// Return the error instead of stopping gracefully (default false).
    pub raise_error: bool,
}

impl<N: Network> Callback<N> for TerminateOnNaN {
    fn on_train_batch_end(&mut self, batch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, N>) -> Result<()> {
        match logs.loss() {
            Some(loss) if !loss.is_finite() && !self.raise_error => {
                eprintln!("Batch {batch}: Invalid loss, terminating training");
                ctx.stop_training();
            }
            _ => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_decay_matches_keras_formula() {
        let s = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: 0.5, staircase: false };
        assert!((s.at(0) - 0.1).abs() < 1e-7);
        assert!((s.at(10) - 0.05).abs() < 1e-7);
        assert!((s.at(5) - 0.1 * 0.5f32.sqrt()).abs() < 1e-7);
        let s = Schedule::ExponentialDecay { initial: 0.1, decay_steps: 10, decay_rate: 0.5, staircase: true };
        assert!((s.at(19) - 0.05).abs() < 1e-7);
    }

    #[test]
    fn cosine_decay_goes_from_initial_to_alpha_floor() {
        let s = Schedule::CosineDecay { initial: 1.0, decay_steps: 100, alpha: 0.1, warmup_target: None, warmup_steps: 0 };
        assert!((s.at(0) - 1.0).abs() < 1e-6);
        assert!((s.at(50) - 0.55).abs() < 1e-6);
        assert!((s.at(100) - 0.1).abs() < 1e-6);
        assert!((s.at(1000) - 0.1).abs() < 1e-6);
    }

    #[test]
    fn improvements_pick_direction_from_the_name() {
        let d = Direction::Auto;
        assert!(d.is_improvement("val_loss", 0.01, 1.0, None));
        assert!(!d.is_improvement("val_loss", 0.01, 0.995, Some(1.0)), "within min_delta");
        assert!(d.is_improvement("val_loss", 0.01, 0.9, Some(1.0)));
        assert!(!d.is_improvement("val_accuracy", 0.0, 0.4, Some(0.5)));
        assert!(d.is_improvement("val_accuracy", 0.0, 0.6, Some(0.5)));
        assert!(Direction::Max.is_improvement("loss", 0.0, 2.0, Some(1.0)));
        assert!(!d.is_improvement("loss", 0.0, f64::NAN, None), "a NaN is never a best");
    }

    #[test]
    fn a_missing_monitor_key_names_the_logged_keys() {
        let logs: Logs = [("loss".to_string(), 1.0)].into_iter().collect();
        let e = monitored(&LogsView::new(&logs, 0.1), "val_loss").unwrap_err().to_string();
        assert!(e.contains("val_loss") && e.contains("loss") && e.contains("validation"), "{e}");
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (v, s) in [(0.5, "0.5"), (1.0, "1.0"), (1e-5, "1e-05"), (0.0001, "0.0001"), (1.5e20, "1.5e+20"), (-2.0, "-2.0")] {
            assert_eq!(python_float(v), s);
        }
        assert_eq!(python_float(f64::NAN), "nan");
        assert_eq!(python_float(0.1f32 as f64), "0.10000000149011612");
    }

    #[test]
    fn checkpoint_paths_fill_keras_placeholders() {
        let logs: Logs = [("val_loss".to_string(), 0.123456)].into_iter().collect();
        let view = LogsView::new(&logs, 0.1);
        assert_eq!(format_filepath("w.{epoch:02d}-{val_loss:.2f}.st", 3, &view).unwrap(), "w.03-0.12.st");
        assert_eq!(format_filepath("w{epoch}.st", 12, &view).unwrap(), "w12.st");
        let e = format_filepath("w{accuracy}.st", 1, &view).unwrap_err().to_string();
        assert!(e.contains("accuracy"), "{e}");
        assert!(format_filepath("w{epoch.st", 1, &view).is_err());
    }
}
