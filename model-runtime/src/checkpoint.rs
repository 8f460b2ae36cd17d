//! Training checkpoints: the weights and the optimizer's state in one safetensors file, so that training
//! resumes exactly where it stopped (Keras' full-model save and `BackupAndRestore`, for the training
//! state).
//!
//! The file is a weight file as [`io::save`](crate::io::save) writes it, with more in it, written in one
//! atomic save (the file holds the old checkpoint or the complete new one, never weights of one step and
//! moments of another):
//!
//! | where | what |
//! |---|---|
//! | tensors named as the parameters | the weights, exactly as in a weight file |
//! | tensor `optimizer/<part>` (`F32`, 1-D) | each buffer of the optimizer (`optimizer/m`, `optimizer/v`, ...: flat, one value per parameter, or empty before the first step) and each running scalar (`optimizer/u_product`) |
//! | tensor `optimizer/learning_rate` (`F32`, `[1]`) | the optimizer's current learning rate (as a callback or schedule last set it) |
//! | `__metadata__` `optimizer` | the optimizer's kind ([`Optimizer::kind`]) |
//! | `__metadata__` `optimizer.iterations` | the optimizer's step counter (decimal) |
//! | `__metadata__` `trainer.iterations` | the steps the trainer took, which learning-rate schedules follow |
//! | `__metadata__` `model.step` | the model's training-step counter, which Dropout's masks mix in |
//! | `__metadata__` `callback.<i>.kind` | the kind of the `i`-th callback of `fit` (Fit's shorthands first) that carries state ([`Callback::state`](crate::callbacks::Callback::state)) |
//! | `__metadata__` `callback.<i>.<name>` | each of its numbers (`callback.2.wait` = `"3"`), as Rust prints an `f64` (exact) |
//! | tensor `callback/<i>/<name>` (`F32`, 1-D) | each of its arrays (EarlyStopping's `best_weights`) |
//!
//! [`io::load`](crate::io::load) skips the `optimizer/` and `callback/` tensors, so a checkpoint also
//! loads as weights.
//! Loading a checkpoint checks everything before changing anything: a file saved without the optimizer
//! state, by another kind of optimizer, for another model, or with a missing, unknown or wrongly sized
//! part is an [`Error::WeightFile`] listing every problem, and the model and optimizer stay as they were.

use std::collections::BTreeMap;
use std::path::Path;

use crate::callbacks::CallbackState;
use crate::error::{Error, Result};
use crate::network::Network;
use crate::optim::{Optimizer, StateMut};

/// The prefix of the optimizer's tensors in a checkpoint.
pub const PREFIX: &str = "optimizer/";
/// The prefix of the callbacks' tensors in a checkpoint.
pub const CALLBACK_PREFIX: &str = "callback/";
/// The prefix of the callbacks' metadata keys.
const CALLBACK_META: &str = "callback.";
/// The metadata key of the optimizer's kind.
const KIND: &str = "optimizer";
/// The metadata key of the trainer's step counter.
const TRAINER_STEPS: &str = "trainer.iterations";
/// The metadata key of the model's training-step counter (`Workspace::step`).
const MODEL_STEP: &str = "model.step";
/// The tensor of the learning rate.
const LEARNING_RATE: &str = "optimizer/learning_rate";

/// Whether the tensor `name` of a checkpoint is training state (the optimizer's or a callback's): under
/// [`PREFIX`] or [`CALLBACK_PREFIX`] and not a parameter of `N` (a layer named `optimizer` keeps its
/// weights).
pub fn is_state<N: Network>(name: &str) -> bool {
    (name.starts_with(PREFIX) || name.starts_with(CALLBACK_PREFIX)) && !N::PARAMS.iter().any(|p| p.name == name)
}

/// The state of the callbacks of a `fit`, each with its position among them (Fit's shorthands first).
pub type CallbackStates = Vec<(usize, CallbackState)>;

/// The checkpoint metadata and tensors of `callbacks`' states.
fn callback_entries(callbacks: &[(usize, CallbackState)]) -> (Vec<(String, String)>, Vec<crate::io::Extra<'_>>) {
    let (mut meta, mut tensors) = (Vec::new(), Vec::new());
    for (i, state) in callbacks {
        meta.push((format!("{CALLBACK_META}{i}.kind"), state.kind.clone()));
        meta.extend(state.values.iter().map(|(k, v)| (format!("{CALLBACK_META}{i}.{k}"), v.to_string())));
        tensors.extend(state.arrays.iter().map(|(k, v)| (format!("{CALLBACK_PREFIX}{i}/{k}"), v.as_slice())));
    }
    (meta, tensors)
}

/// The callbacks' states of a checkpoint from its metadata and (taken out of `tensors`) its `callback/`
/// tensors; a malformed entry is a problem.
fn read_callbacks(meta: &BTreeMap<String, String>, tensors: &mut BTreeMap<String, Vec<f32>>, problems: &mut Vec<String>) -> CallbackStates {
    let mut states: BTreeMap<usize, CallbackState> = BTreeMap::new();
    let position = |s: &str| s.parse::<usize>().ok();
    for (key, value) in meta {
        let Some(rest) = key.strip_prefix(CALLBACK_META) else { continue };
        let Some((i, name)) = rest.split_once('.').and_then(|(i, n)| Some((position(i)?, n))) else {
            problems.push(format!("metadata `{key}`: expected `{CALLBACK_META}<position>.<name>`"));
            continue;
        };
        let state = states.entry(i).or_default();
        if name == "kind" {
            state.kind = value.clone();
        } else {
            match value.parse::<f64>() {
                Ok(v) => {
                    state.values.insert(name.to_string(), v);
                }
                Err(_) => problems.push(format!("metadata `{key}` = {value:?} is not a number")),
            }
        }
    }
    let names: Vec<String> = tensors.keys().filter(|k| k.starts_with(CALLBACK_PREFIX)).cloned().collect();
    for key in names {
        let values = tensors.remove(&key).unwrap_or_default();
        let rest = &key[CALLBACK_PREFIX.len()..];
        match rest.split_once('/').and_then(|(i, n)| Some((position(i)?, n))) {
            Some((i, name)) => {
                states.entry(i).or_default().arrays.insert(name.to_string(), values);
            }
            None => problems.push(format!("tensor `{key}`: expected `{CALLBACK_PREFIX}<position>/<name>`")),
        }
    }
    for (i, state) in &states {
        if state.kind.is_empty() {
            problems.push(format!("the state of callback {i} has no `{CALLBACK_META}{i}.kind`"));
        }
    }
    states.into_iter().collect()
}

/// The name of part `i` of `optimizer`'s state: its [`Optimizer::state_names`] entry without a struct
/// path (`state.m` is `m`), or `part_<i>`.
fn part_name<O: Optimizer + ?Sized>(optimizer: &O, i: usize) -> String {
    match optimizer.state_names().get(i) {
        Some(name) => name.rsplit('.').next().unwrap_or(name).to_string(),
        None => format!("part_{i}"),
    }
}

/// One part of an optimizer's state, owned.
enum Part {
    Steps(u64),
    Buffer(Vec<f32>),
    Scalar(f32),
}

/// Every part of `optimizer`'s state, named, in its order.
fn parts<O: Optimizer + ?Sized>(optimizer: &mut O) -> Vec<Part> {
    let mut out = Vec::new();
    optimizer.visit_state(&mut |part| match part {
        StateMut::Steps(n) => out.push(Part::Steps(*n)),
        StateMut::Buffer(b) => out.push(Part::Buffer(b.clone())),
        StateMut::Scalar(x) => out.push(Part::Scalar(*x)),
    });
    out
}

/// Saves `model`'s weights, `optimizer`'s state, the trainer's step count `iterations` and the
/// `callbacks`' states (each with its position among the callbacks of `fit`) to `path` atomically (see
/// the [module](self) for the layout). [`Trainer::save_checkpoint`](crate::train::Trainer::save_checkpoint)
/// calls it.
pub fn save<N: Network, O: Optimizer + ?Sized>(
    model: &N,
    optimizer: &mut O,
    iterations: u64,
    path: impl AsRef<Path>,
    callbacks: &[(usize, CallbackState)],
) -> Result<()> {
    let parts = parts(optimizer);
    let names: Vec<String> = (0..parts.len()).map(|i| part_name(optimizer, i)).collect();
    let lr = [optimizer.learning_rate()];
    let mut extra: Vec<crate::io::Extra<'_>> = vec![(LEARNING_RATE.to_string(), &lr[..])];
    let mut meta: Vec<(String, String)> = vec![
        (KIND.into(), optimizer.kind().into()),
        (TRAINER_STEPS.into(), iterations.to_string()),
        (MODEL_STEP.into(), model.state().ws.step.to_string()),
    ];
    for (name, part) in names.iter().zip(&parts) {
        match part {
            Part::Steps(n) => meta.push((format!("optimizer.{name}"), n.to_string())),
            Part::Buffer(v) => extra.push((format!("{PREFIX}{name}"), v)),
            Part::Scalar(x) => extra.push((format!("{PREFIX}{name}"), std::slice::from_ref(x))),
        }
    }
    let (callback_meta, callback_tensors) = callback_entries(callbacks);
    meta.extend(callback_meta);
    extra.extend(callback_tensors);
    let meta: Vec<(&str, &str)> = meta.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    crate::io::save_with_extra(model, path.as_ref(), &extra, &meta)
}

/// Loads a checkpoint [`save`] wrote into `model` and `optimizer`, and returns the trainer's step count
/// and the callbacks' states it holds. Everything is checked first; on an error nothing has changed.
/// [`Trainer::load_checkpoint`](crate::train::Trainer::load_checkpoint) calls it.
pub fn load<N: Network, O: Optimizer + ?Sized>(model: &mut N, optimizer: &mut O, path: impl AsRef<Path>) -> Result<(u64, CallbackStates)> {
    let path = path.as_ref();
    let meta = crate::io::read_metadata(path)?;
    let bad = |problems: Vec<String>| Error::WeightFile { path: path.to_path_buf(), problems };
    let Some(kind) = meta.get(KIND) else {
        return Err(bad(vec!["the file holds weights only, no optimizer state (saved by `io::save` or a `ModelCheckpoint` with \
             `save_weights_only`); load it with `io::load`, or save checkpoints with `Trainer::save_checkpoint` \
             or `ModelCheckpoint::with_optimizer_state`"
            .into()]));
    };
    if kind != optimizer.kind() {
        return Err(bad(vec![format!("the optimizer state is of a `{kind}`, but it is loaded into a `{}`", optimizer.kind())]));
    }
    let mut tensors: BTreeMap<String, Vec<f32>> = crate::io::read_tensors(path)?
        .into_iter()
        .filter(|(name, _)| is_state::<N>(name))
        .map(|(name, a)| (name, a.into_iter().collect()))
        .collect();
    let mut problems = Vec::new();
    let steps = |key: &str, problems: &mut Vec<String>| match meta.get(key).map(|v| v.parse::<u64>()) {
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            problems.push(format!("metadata `{key}` = {:?} is not a step count", meta[key]));
            0
        }
        None => {
            problems.push(format!("missing metadata `{key}` (a step count)"));
            0
        }
    };
    let trainer_steps = steps(TRAINER_STEPS, &mut problems);
    let model_step = steps(MODEL_STEP, &mut problems);
    let lr = match tensors.remove(LEARNING_RATE).as_deref() {
        Some(&[lr]) if lr.is_finite() => lr,
        Some(&[lr]) => {
            problems.push(format!("tensor `{LEARNING_RATE}` holds {lr}: the learning rate must be finite"));
            0.0
        }
        other => {
            problems.push(format!("tensor `{LEARNING_RATE}` must hold one value, found {:?}", other.map(<[f32]>::len)));
            0.0
        }
    };
    // Take each part from the file, checked against what this optimizer holds.
    let current = parts(optimizer);
    let mut loaded = Vec::with_capacity(current.len());
    for (i, part) in current.iter().enumerate() {
        let name = part_name(optimizer, i);
        match part {
            Part::Steps(_) => loaded.push(Part::Steps(steps(&format!("optimizer.{name}"), &mut problems))),
            Part::Buffer(_) | Part::Scalar(_) => {
                let key = format!("{PREFIX}{name}");
                let Some(values) = tensors.remove(&key) else {
                    problems.push(format!("missing tensor `{key}` of the `{kind}` state"));
                    continue;
                };
                // A NaN or an infinity in the state would make every step non-finite (and undone).
                if let Some(k) = crate::train::first_non_finite(&values) {
                    let v = values.get(k).copied().unwrap_or(f32::NAN);
                    problems.push(format!("tensor `{key}` holds {v} at {k}: the optimizer state must be finite"));
                }
                if let Part::Scalar(_) = part {
                    match values[..] {
                        [x] => loaded.push(Part::Scalar(x)),
                        _ => problems.push(format!("tensor `{key}`: {} values, expected 1 (a running scalar)", values.len())),
                    }
                    continue;
                }
                if !(values.is_empty() || values.len() == N::PARAM_COUNT) {
                    problems.push(format!(
                        "tensor `{key}`: {} values, expected {} (one per parameter of model `{}`) or none (before the first step)",
                        values.len(),
                        N::PARAM_COUNT,
                        N::NAME
                    ));
                }
                loaded.push(Part::Buffer(values));
            }
        }
    }
    let callbacks = read_callbacks(&meta, &mut tensors, &mut problems);
    problems.extend(tensors.keys().map(|k| format!("unknown tensor `{k}`: a `{kind}` has no such state")));
    if !problems.is_empty() {
        return Err(bad(problems));
    }
    // The weights are checked (and swapped in whole) by `io::load`; the state only once they are in.
    crate::io::load(model, path)?;
    model.state_mut().ws.step = model_step;
    let mut loaded = loaded.into_iter();
    optimizer.visit_state(&mut |part| match (part, loaded.next()) {
        (StateMut::Steps(n), Some(Part::Steps(v))) => *n = v,
        (StateMut::Buffer(b), Some(Part::Buffer(v))) => *b = v,
        (StateMut::Scalar(x), Some(Part::Scalar(v))) => *x = v,
        _ => {}
    });
    optimizer.set_learning_rate(lr);
    Ok((trainer_steps, callbacks))
}
