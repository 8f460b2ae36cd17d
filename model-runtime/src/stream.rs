//! Data that does not fit in memory: typed batches read from a source (an iterator) on a prefetch thread
//! while the trainer computes, as Keras' `fit(generator)` and `tf.data` pipelines do.
//!
//! A source is any `IntoIterator` of `Result<Batch<I, T>, E>` (or of `Result<I, E>` for `predict`), where
//! `I` and `T` are the model's generated owned arrays (`<Model>InputArrays`, `<Model>TargetArrays`) or any
//! type implementing [`AsInputs`] / [`AsTargets`]. A fit that runs several epochs clones the source at
//! the start of every pass over it, as Keras re-iterates a `tf.data.Dataset`: a source that opens a file
//! in its `into_iter` reads the file again; an infinite one is cut into epochs by `Fit::steps_per_epoch`.
//!
//! The prefetch thread is a scoped thread: it owns the iterator, sends each batch through a bounded
//! channel ([`PREFETCH`] batches ahead), and stops when the trainer drops the receiving end (at the end,
//! on an error or an early stop); the trainer's call returns only after the thread has finished. An
//! error the source returns, or a panic inside it, reaches the caller as [`Error::Source`].

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};

use crate::callbacks::{Callback, LogsView};
use crate::error::{Error, Result};
use crate::network::Network;
use crate::optim::Optimizer;
use crate::train::{all_callbacks, builtin_callbacks, Fit, FitError, History, Logs, SampleWeight, Trainer};

/// How many batches the prefetch thread loads ahead of the one being computed.
pub const PREFETCH: usize = 2;

/// A value that gives the typed input views of model `N` (the generated `<Model>InputArrays` does).
pub trait AsInputs<N: Network> {
    /// The views the model reads, borrowing `self`.
    fn as_inputs(&self) -> N::Inputs<'_>;
}

/// A value that gives the typed target views of model `N` (the generated `<Model>TargetArrays` does).
pub trait AsTargets<N: Network> {
    /// The views the losses read, borrowing `self`.
    fn as_targets(&self) -> N::Targets<'_>;
}

/// One batch of a streamed source: owned inputs and targets, and optionally the samples' weights (what a
/// Keras generator yields as `(x, y)` or `(x, y, sample_weight)`). Every batch may have its own size.
#[derive(Clone, Debug)]
pub struct Batch<I, T> {
    /// The inputs, batch first (a generated `<Model>InputArrays`).
    pub inputs: I,
    /// The targets, batch first (a generated `<Model>TargetArrays`).
    pub targets: T,
    /// The weight of each sample of this batch (see [`SampleWeight`]); `None` weighs them all 1.
    pub sample_weight: Option<SampleWeight>,
}

impl<I, T> Batch<I, T> {
    /// A batch of `inputs` and `targets`, unweighted.
    pub fn new(inputs: I, targets: T) -> Self {
        Batch { inputs, targets, sample_weight: None }
    }

    /// The batch with per-sample weights (one per row, or one array per output).
    pub fn with_sample_weight(mut self, sample_weight: impl Into<SampleWeight>) -> Self {
        self.sample_weight = Some(sample_weight.into());
        self
    }
}

/// What the prefetch thread sends.
pub(crate) enum Msg<B> {
    /// A pass over the source begins; the number of batches it holds when its iterator knows it exactly
    /// (`size_hint` with equal bounds).
    Pass(Option<usize>),
    /// The next batch.
    Batch(B),
    /// The pass over the source ended.
    End,
    /// The source returned an error or panicked: the message and the error, if any. Nothing follows.
    Failed(String, Option<Box<dyn std::error::Error + Send + Sync>>),
}

/// The receiving end of a prefetch thread.
pub(crate) struct Prefetch<B> {
    rx: Receiver<Msg<B>>,
}

impl<B> Prefetch<B> {
    /// The next message; a thread that ended without a word (it cannot, but a channel can close) is a
    /// failure, not an end.
    pub(crate) fn next(&self) -> Msg<B> {
        self.rx.recv().unwrap_or_else(|_| Msg::Failed("the prefetch thread stopped unexpectedly".into(), None))
    }
}

/// Starts a prefetch thread in `scope` that iterates `source` once: [`Msg::Pass`], the batches, [`Msg::End`].
pub(crate) fn spawn_once<'scope, S, B, E>(scope: &'scope std::thread::Scope<'scope, '_>, source: S) -> Prefetch<B>
where
    S: IntoIterator<Item = std::result::Result<B, E>> + Send + 'scope,
    B: Send + 'scope,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (tx, rx) = sync_channel(PREFETCH);
    scope.spawn(move || send_pass(source, &tx));
    Prefetch { rx }
}

/// Starts a prefetch thread in `scope` that iterates a clone of `source` per pass, pass after pass,
/// until the receiver is dropped. An error or a panic of the source is sent as [`Msg::Failed`] and ends
/// the thread.
pub(crate) fn spawn_repeat<'scope, S, B, E>(scope: &'scope std::thread::Scope<'scope, '_>, source: S) -> Prefetch<B>
where
    S: IntoIterator<Item = std::result::Result<B, E>> + Clone + Send + 'scope,
    B: Send + 'scope,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (tx, rx) = sync_channel(PREFETCH);
    scope.spawn(move || while send_pass(source.clone(), &tx) {});
    Prefetch { rx }
}

/// Sends every batch of one pass over `pass` and then [`Msg::End`]; false when the thread must stop (the
/// receiver is gone, or the source failed).
fn send_pass<S, B, E>(pass: S, tx: &SyncSender<Msg<B>>) -> bool
where
    S: IntoIterator<Item = std::result::Result<B, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut it = match catch_unwind(AssertUnwindSafe(|| pass.into_iter())) {
        Ok(it) => it,
        Err(panic) => {
            let _ = tx.send(Msg::Failed(format!("it panicked when iterated: {}", panic_message(&*panic)), None));
            return false;
        }
    };
    let len = match it.size_hint() {
        (lo, Some(hi)) if lo == hi => Some(lo),
        _ => None,
    };
    if tx.send(Msg::Pass(len)).is_err() {
        return false;
    }
    loop {
        let msg = match catch_unwind(AssertUnwindSafe(|| it.next())) {
            Ok(Some(Ok(b))) => Msg::Batch(b),
            Ok(Some(Err(e))) => {
                let e = e.into();
                Msg::Failed(e.to_string(), Some(e))
            }
            Ok(None) => return tx.send(Msg::End).is_ok(),
            Err(panic) => Msg::Failed(format!("it panicked: {}", panic_message(&*panic)), None),
        };
        let go_on = matches!(msg, Msg::Batch(_));
        if tx.send(msg).is_err() || !go_on {
            return false;
        }
    }
}

/// The message of a caught panic (a `&str` or `String` payload), or a placeholder for other payloads.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    match (panic.downcast_ref::<&str>(), panic.downcast_ref::<String>()) {
        (Some(s), _) => (*s).to_string(),
        (_, Some(s)) => s.clone(),
        _ => "(a panic payload that is not a message)".to_string(),
    }
}

/// [`Error::Source`] for batch `batch` (from 1) of `during`.
pub(crate) fn source_error(
    during: String,
    batch: usize,
    message: String,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
) -> Error {
    Error::Source { during, batch, message, source }
}

/// Adds which batch of which pass to an error about a streamed batch's contents (its shapes, values or weights).
pub(crate) fn in_batch(e: Error, during: &str, batch: usize) -> Error {
    match e {
        e @ (Error::Source { .. } | Error::NonFiniteLoss { .. } | Error::NonFiniteParams { .. }) => e,
        e => {
            Error::Source { during: during.to_string(), batch, message: format!("the batch is not valid: {e}"), source: Some(Box::new(e)) }
        }
    }
}

/// What a source's error converts into (any `std::error::Error + Send + Sync`, a `String`, a `&str`);
/// `Result<_, Infallible>` items say that a source cannot fail.
type SourceError = Box<dyn std::error::Error + Send + Sync>;

/// The validation data of a streamed `fit` ([`Trainer::fit_stream_with`]), evaluated after every
/// `Fit::validation_freq`-th epoch into the `val_` keys: [`NoValidation`], rows in memory
/// ([`ValidationArrays`]) or another stream ([`ValidationStream`]). Implement it to validate in a way of
/// your own (write `val_` keys into `logs`).
pub trait ValidationData<N: Network> {
    /// Evaluates the model after epoch `epoch` (from 1) and adds the `val_` values to `logs`; `fit` gives
    /// `batch_size` (of validation arrays) and `validation_steps` (at most that many batches).
    fn validate<O: Optimizer>(&self, trainer: &mut Trainer<'_, N, O>, epoch: usize, fit: &Fit, logs: &mut Logs) -> Result<()>;
}

/// No validation: the history holds the training values only.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoValidation;

impl<N: Network> ValidationData<N> for NoValidation {
    fn validate<O: Optimizer>(&self, _: &mut Trainer<'_, N, O>, _: usize, _: &Fit, _: &mut Logs) -> Result<()> {
        Ok(())
    }
}

/// Validation rows in memory, optionally weighted (Keras' `validation_data=(x, y)` or `(x, y, sample_weight)`),
/// evaluated in batches of `Fit::batch_size`.
pub struct ValidationArrays<'v, 'a, 'b, N: Network> {
    /// The inputs.
    pub inputs: &'v N::Inputs<'a>,
    /// The targets.
    pub targets: &'v N::Targets<'b>,
    /// One weight per row (see [`SampleWeight`]), or `None`.
    pub sample_weight: Option<&'v SampleWeight>,
}

impl<'v, 'a, 'b, N: Network> ValidationArrays<'v, 'a, 'b, N> {
    /// Unweighted validation rows.
    pub fn new(inputs: &'v N::Inputs<'a>, targets: &'v N::Targets<'b>) -> Self {
        ValidationArrays { inputs, targets, sample_weight: None }
    }

    /// The rows weighted by `sample_weight`.
    pub fn weighted(mut self, sample_weight: &'v SampleWeight) -> Self {
        self.sample_weight = Some(sample_weight);
        self
    }
}

impl<N: Network> ValidationData<N> for ValidationArrays<'_, '_, '_, N> {
    fn validate<O: Optimizer>(&self, trainer: &mut Trainer<'_, N, O>, _: usize, fit: &Fit, logs: &mut Logs) -> Result<()> {
        let m = trainer.check_batch(self.inputs, self.targets)?;
        if let Some(sw) = self.sample_weight {
            sw.check(N::OUTPUTS, m).map_err(crate::train::validation_weight_error)?;
        }
        trainer.evaluate_rows((self.inputs, self.targets), fit.validation_rows(0..m), fit.batch_size, ("val_", logs), self.sample_weight)
    }
}

/// A stream of validation batches (Keras' `validation_data=generator`), iterated once (a clone of it) after
/// every validated epoch on a prefetch thread of its own, for at most `Fit::validation_steps` batches (a
/// `keras.utils.PyDataset` restarts each validation as well); a batch's `sample_weight` weighs its samples.
#[derive(Clone, Debug)]
pub struct ValidationStream<S>(pub S);

impl<N, S, I, T, E> ValidationData<N> for ValidationStream<S>
where
    N: Network,
    S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Clone + Send,
    I: AsInputs<N> + Send,
    T: AsTargets<N> + Send,
    E: Into<SourceError>,
{
    fn validate<O: Optimizer>(&self, trainer: &mut Trainer<'_, N, O>, epoch: usize, fit: &Fit, logs: &mut Logs) -> Result<()> {
        let during = format!("the validation after epoch {epoch}");
        trainer.evaluate_stream_into(self.0.clone(), fit.validation_steps, &during, ("val_", logs))
    }
}

/// Where the streamed fit stands in the source: at the start of a pass (its length not yet known), or
/// within one.
struct PassState {
    /// A [`Msg::Pass`] is the next message.
    at_boundary: bool,
    /// Batches left in the current pass, when known.
    left: Option<usize>,
    /// No batch of the current pass has been trained on yet.
    fresh: bool,
}

impl<N: Network, O: Optimizer> Trainer<'_, N, O> {
    /// Trains on batches streamed from `source` (Keras' `fit(generator)` or `fit(dataset)`): each epoch
    /// is one pass over a clone of `source` (see [the module docs](crate::stream)), or
    /// `fit.steps_per_epoch` batches of it, going on in the next epoch from where the last one stopped (a
    /// new pass begins when one is used up; an epoch that runs out of data ends early, as in Keras). A
    /// prefetch thread loads the next batches while the current one trains.
    ///
    /// The source decides the batches: `fit.batch_size` and `fit.shuffle` do not apply, and
    /// `fit.validation_split` and `fit.sample_weight` are errors (Keras refuses to split a generator; weights
    /// ride in each [`Batch::sample_weight`]). `fit.class_weight` weighs each batch by its targets' classes,
    /// computed on the prefetch thread (a batch with weights of its own is then an error, as in Keras). Settings,
    /// callbacks, `initial_epoch`, schedules and the checks of every batch (shapes, NaN and infinities,
    /// weights) are those of [`fit`](Self::fit). A source that returns an error or panics stops training
    /// with [`Error::Source`] naming the epoch and the batch; the prefetch thread has stopped when this
    /// returns. After the first batch of each size, a training step allocates nothing but what the
    /// source itself allocates for its batches.
    pub fn fit_stream<S, I, T, E>(&mut self, source: S, fit: &Fit) -> Result<History, FitError>
    where
        S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Clone + Send,
        I: AsInputs<N> + Send,
        T: AsTargets<N> + Send,
        E: Into<SourceError>,
    {
        self.fit_stream_with(source, NoValidation, fit, &mut [])
    }

    /// [`fit_stream`](Self::fit_stream) with validation data (Keras' `validation_data`: arrays, weighted or
    /// not, or another stream) evaluated after every epoch into the `val_` keys, and `callbacks` told as by
    /// [`fit_with_callbacks`](Self::fit_with_callbacks).
    pub fn fit_stream_with<S, I, T, E, V>(
        &mut self,
        source: S,
        validation: V,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
    ) -> Result<History, FitError>
    where
        S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Clone + Send,
        I: AsInputs<N> + Send,
        T: AsTargets<N> + Send,
        E: Into<SourceError>,
        V: ValidationData<N>,
    {
        let mut history = History::default();
        let result =
            self.single_process("fit_stream", fit).and_then(|()| self.check_stream_fit(fit)).and_then(|()| match &fit.class_weight {
                None => self.fit_stream_into(source, &validation, fit, callbacks, &mut history),
                Some(cw) => {
                    let source = ClassWeighted { source, class_weight: cw.clone(), model: std::marker::PhantomData };
                    self.fit_stream_into(source, &validation, fit, callbacks, &mut history)
                }
            });
        match result {
            Ok(()) => Ok(history),
            Err(error) => Err(FitError { error, history: Box::new(history) }),
        }
    }

    /// The streamed fit: a prefetch thread over `source` and the epochs, appending to `history`.
    fn fit_stream_into<S, I, T, E, V>(
        &mut self,
        source: S,
        validation: &V,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
        history: &mut History,
    ) -> Result<()>
    where
        S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Clone + Send,
        I: AsInputs<N> + Send,
        T: AsTargets<N> + Send,
        E: Into<SourceError>,
        V: ValidationData<N>,
    {
        std::thread::scope(|scope| {
            let rx = spawn_repeat(scope, source);
            // Dropping the receiver first stops the prefetch thread; the scope then joins it.
            let result = self.stream_epochs(&rx, validation, fit, callbacks, history);
            drop(rx);
            result
        })
    }

    /// Rejects the settings of `fit` that a stream cannot honour.
    fn check_stream_fit(&self, fit: &Fit) -> Result<()> {
        if fit.validation_split != 0.0 {
            return Err(Error::config(
                "validation_split",
                fit.validation_split,
                "cannot split a stream (as in Keras); give validation data to `fit_stream_with` instead",
            ));
        }
        if let Some(cw) = &fit.class_weight {
            crate::train::check_class_weight(cw)?;
        }
        if fit.sample_weight.is_some() {
            return Err(Error::config(
                "sample_weight",
                "Some(..)",
                "is not applied to a stream; give each batch its `Batch::sample_weight`",
            ));
        }
        if fit.steps_per_epoch == Some(0) {
            return Err(Error::config("steps_per_epoch", 0, "must be at least 1"));
        }
        fit.check_validation()?;
        if fit.batch_size == 0 {
            return Err(Error::config("batch_size", 0, "must be at least 1 (it sizes the batches of validation arrays)"));
        }
        self.check_settings(fit.schedule.as_ref())
    }

    /// The epochs of a streamed fit, reading batches from `rx`.
    fn stream_epochs<I: AsInputs<N>, T: AsTargets<N>>(
        &mut self,
        rx: &Prefetch<Batch<I, T>>,
        validation: &impl ValidationData<N>,
        fit: &Fit,
        callbacks: &mut [&mut dyn Callback<N>],
        history: &mut History,
    ) -> Result<()> {
        let mut builtin = builtin_callbacks::<N>(fit);
        let mut all = all_callbacks(&mut builtin, callbacks);
        let (mut logs, mut batch_logs) = (Logs::new(), Logs::new());
        let mut pass = PassState { at_boundary: true, left: None, fresh: true };
        let mut stopped = self.notify(&mut all, fit.schedule.as_ref(), |c, ctx| c.on_train_begin(ctx))?;
        self.restore_callbacks(&mut all, fit)?;
        for epoch in fit.initial_epoch.saturating_add(1)..=fit.epochs {
            if stopped {
                break;
            }
            let during = format!("epoch {epoch}");
            if pass.at_boundary {
                begin_pass(rx, &mut pass, &during, 1)?;
            }
            let len = match (fit.steps_per_epoch, pass.left) {
                (Some(s), Some(left)) if left > 0 => Some(s.min(left)),
                (Some(s), _) => Some(s),
                (None, left) => left,
            };
            let mut run = self.begin_epoch(&mut all, fit, epoch, len)?;
            while !run.stopped && fit.steps_per_epoch.is_none_or(|s| run.done < s) {
                let batch = match rx.next() {
                    Msg::Batch(batch) => batch,
                    Msg::End if run.done == 0 && !pass.fresh => {
                        // The last epoch used up the pass exactly: this one begins the next.
                        begin_pass(rx, &mut pass, &during, 1).inspect_err(|_| run.abandon())?;
                        continue;
                    }
                    Msg::End => {
                        pass.at_boundary = true;
                        if run.done == 0 {
                            run.abandon();
                            return Err(source_error(during, 1, "it yielded no batch".into(), None));
                        }
                        if fit.verbose && fit.steps_per_epoch.is_some() {
                            eprintln!(
                                "Epoch {epoch}: the source ran out of data after {} batches; the next epoch starts a new pass",
                                run.done
                            );
                        }
                        break;
                    }
                    Msg::Pass(_) => {
                        run.abandon();
                        return Err(source_error(during, run.done + 1, "the prefetch thread began a pass within a pass".into(), None));
                    }
                    Msg::Failed(message, source) => {
                        run.abandon();
                        return Err(source_error(during, run.done + 1, message, source));
                    }
                };
                pass.fresh = false;
                pass.left = pass.left.map(|l| l.saturating_sub(1));
                let b = run.done + 1;
                self.fit_batch(&mut all, &mut run, &mut batch_logs, None, |t, _| {
                    let (inputs, targets) = (batch.inputs.as_inputs(), batch.targets.as_targets());
                    t.stage_batch(&inputs, &targets, batch.sample_weight.as_ref()).map_err(|e| in_batch(e, &during, b))
                })?;
            }
            stopped = self.end_epoch(&mut all, fit, run, (&mut logs, history), |t, logs| validation.validate(t, epoch, fit, logs))?;
        }
        let view = LogsView::new(&logs, self.optimizer().learning_rate());
        self.notify(&mut all, fit.schedule.as_ref(), |c, ctx| c.on_train_end(&view, ctx))?;
        Ok(())
    }

    /// Loss and metrics over every batch of `source`, in inference mode (Keras' `evaluate(generator)`,
    /// `return_dict=True`), keyed as [`evaluate`](Self::evaluate); a batch's `sample_weight` weighs its
    /// samples as [`evaluate_weighted`](Self::evaluate_weighted) does. Batches load on a prefetch thread;
    /// an error or panic of the source is an [`Error::Source`].
    pub fn evaluate_stream<S, I, T, E>(&mut self, source: S) -> Result<Logs>
    where
        S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Send,
        I: AsInputs<N> + Send,
        T: AsTargets<N> + Send,
        E: Into<SourceError>,
    {
        let mut logs = Logs::new();
        self.evaluate_stream_into(source, None, "the evaluation", ("", &mut logs))?;
        Ok(logs)
    }

    /// [`evaluate_stream`](Self::evaluate_stream) into `into`, keys prefixed; `during` names the pass in errors.
    pub(crate) fn evaluate_stream_into<S, I, T, E>(
        &mut self,
        source: S,
        steps: Option<usize>,
        during: &str,
        (prefix, into): (&str, &mut Logs),
    ) -> Result<()>
    where
        S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>> + Send,
        I: AsInputs<N> + Send,
        T: AsTargets<N> + Send,
        E: Into<SourceError>,
    {
        self.reset_states();
        let mut seen = 0usize;
        std::thread::scope(|scope| {
            let rx = spawn_once(scope, source);
            let result = drain(&rx, steps, during, |batch: Batch<I, T>| {
                seen += 1;
                let (inputs, targets) = (batch.inputs.as_inputs(), batch.targets.as_targets());
                self.eval_batch(&inputs, &targets, batch.sample_weight.as_ref()).map_err(|e| in_batch(e, during, seen))
            });
            drop(rx);
            result
        })?;
        self.logs(prefix, into);
        Ok(())
    }

    /// The model's outputs for every batch of inputs `source` yields, in inference mode, assembled in
    /// order (Keras' `predict(generator)`); batches load on a prefetch thread; an error or panic of the
    /// source is an [`Error::Source`].
    pub fn predict_stream<S, I, E>(&mut self, source: S) -> Result<N::Outputs>
    where
        S: IntoIterator<Item = std::result::Result<I, E>> + Send,
        I: AsInputs<N> + Send,
        E: Into<SourceError>,
    {
        predict_stream(self.model_mut(), source)
    }
}

/// [`Trainer::predict_stream`] without a trainer.
pub fn predict_stream<N, S, I, E>(model: &mut N, source: S) -> Result<N::Outputs>
where
    N: Network,
    S: IntoIterator<Item = std::result::Result<I, E>> + Send,
    I: AsInputs<N> + Send,
    E: Into<SourceError>,
{
    let mut data: Vec<Vec<f32>> = vec![Vec::new(); N::OUTPUTS.len()];
    let (mut rows, mut seen) = (0usize, 0usize);
    std::thread::scope(|scope| {
        let rx = spawn_once(scope, source);
        let result = drain(&rx, None, "the prediction", |inputs: I| {
            seen += 1;
            let n = crate::model::predict_staged(model, &inputs.as_inputs()).map_err(|e| in_batch(e, "the prediction", seen))?;
            for (o, d) in data.iter_mut().enumerate() {
                d.extend_from_slice(crate::model::output_slice::<N>(&model.state().infer, o)?);
            }
            rows += n;
            Ok(())
        });
        drop(rx);
        result
    })?;
    Ok(N::outputs_from(rows, data))
}

/// Reads the one pass of a [`spawn_once`] thread, calling `f` on every batch.
fn drain<B>(rx: &Prefetch<B>, steps: Option<usize>, during: &str, mut f: impl FnMut(B) -> Result<()>) -> Result<()> {
    let mut seen = 0usize;
    loop {
        if steps.is_some_and(|s| seen >= s) {
            // `validation_steps` batches: the caller drops the receiver, which stops the prefetch thread.
            return Ok(());
        }
        match rx.next() {
            Msg::Pass(_) => {}
            Msg::Batch(b) => {
                seen += 1;
                f(b)?;
            }
            Msg::End => return Ok(()),
            Msg::Failed(message, source) => return Err(source_error(during.to_string(), seen + 1, message, source)),
        }
    }
}

/// Reads the [`Msg::Pass`] that begins a pass, learning its length.
fn begin_pass<B>(rx: &Prefetch<B>, pass: &mut PassState, during: &str, batch: usize) -> Result<()> {
    match rx.next() {
        Msg::Pass(left) => {
            *pass = PassState { at_boundary: false, left, fresh: true };
            Ok(())
        }
        Msg::Failed(message, source) => Err(source_error(during.to_string(), batch, message, source)),
        Msg::Batch(_) | Msg::End => {
            Err(source_error(during.to_string(), batch, "the prefetch thread skipped the start of a pass".into(), None))
        }
    }
}

/// A source whose batches get `class_weight`'s sample weights (Keras' `fit(dataset, class_weight=...)`),
/// computed on the prefetch thread as the batches arrive.
struct ClassWeighted<S, N> {
    source: S,
    class_weight: Vec<(usize, f32)>,
    model: std::marker::PhantomData<fn() -> N>,
}

impl<S: Clone, N> Clone for ClassWeighted<S, N> {
    fn clone(&self) -> Self {
        ClassWeighted { source: self.source.clone(), class_weight: self.class_weight.clone(), model: std::marker::PhantomData }
    }
}

impl<S, I, T, E, N> IntoIterator for ClassWeighted<S, N>
where
    S: IntoIterator<Item = std::result::Result<Batch<I, T>, E>>,
    T: AsTargets<N>,
    E: Into<SourceError>,
    N: Network,
{
    type Item = std::result::Result<Batch<I, T>, SourceError>;
    type IntoIter = ClassWeightedIter<S::IntoIter, N>;

    fn into_iter(self) -> Self::IntoIter {
        ClassWeightedIter { it: self.source.into_iter(), class_weight: self.class_weight, model: std::marker::PhantomData }
    }
}

/// The iterator of a [`ClassWeighted`] source.
struct ClassWeightedIter<It, N> {
    it: It,
    class_weight: Vec<(usize, f32)>,
    model: std::marker::PhantomData<fn() -> N>,
}

impl<It, I, T, E, N> Iterator for ClassWeightedIter<It, N>
where
    It: Iterator<Item = std::result::Result<Batch<I, T>, E>>,
    T: AsTargets<N>,
    E: Into<SourceError>,
    N: Network,
{
    type Item = std::result::Result<Batch<I, T>, SourceError>;

    fn next(&mut self) -> Option<Self::Item> {
        let batch = match self.it.next()? {
            Ok(batch) => batch,
            Err(e) => return Some(Err(e.into())),
        };
        if batch.sample_weight.is_some() {
            let e = Error::config(
                "class_weight",
                format!("{:?}", self.class_weight),
                "cannot be given together with a batch's own `sample_weight` (as in Keras); multiply the class weights into them",
            );
            return Some(Err(Box::new(e)));
        }
        let weights = {
            let targets = batch.targets.as_targets();
            crate::train::class_weights_of::<N>(&targets, &self.class_weight)
        };
        Some(match weights {
            Ok(w) => Ok(Batch { sample_weight: Some(w), ..batch }),
            Err(e) => Err(Box::new(e)),
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.it.size_hint()
    }
}
