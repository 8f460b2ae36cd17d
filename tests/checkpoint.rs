//! Training checkpoints with the optimizer's state: training k epochs, checkpointing, loading into a
//! fresh model and training the rest gives the weights of one uninterrupted run, bit for bit; a
//! checkpoint that does not fit the model or optimizer is a clear error that changes nothing. The model
//! has a Dropout, whose masks follow the model's step counter: the checkpoint restores it too.

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;
use modelc::Schedule;

model! {
    struct Small {
        input x: [3];
        let h = Dense(8, activation = tanh)(x);
        let d = Dropout(0.25)(h);
        output y = Dense(1, activation = sigmoid)(d);
    }
}

model! {
    struct Other {
        input x: [3];
        output y = Dense(1, activation = sigmoid)(x);
    }
}

fn data() -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(5);
    let x = Array2::from_shape_fn((96, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((96, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] + 0.5 * x[[i, 1]] > 0.0)));
    (x, y)
}

/// A fresh directory for this test's files.
fn dir(name: &str) -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!("modelc-ckpt-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Settings with a schedule (so its position must be restored too), shuffled (`fit` replays the skipped
/// epochs' shuffles), and 4 of the 6 batches of a pass per epoch (so a resumed epoch starts mid-pass).
fn settings(epochs: usize, initial_epoch: usize) -> Fit {
    Fit {
        epochs,
        initial_epoch,
        batch_size: 16,
        seed: 11,
        steps_per_epoch: Some(4),
        verbose: false,
        schedule: Some(Schedule::ExponentialDecay { initial: 0.05, decay_steps: 4, decay_rate: 0.7, staircase: false }),
        ..Fit::default()
    }
}

fn bits(model: &Small) -> Vec<u32> {
    model.state().params.iter().map(|v| v.to_bits()).collect()
}

/// Trains 5 epochs in one go, and 2 epochs, a checkpoint by `ModelCheckpoint` (optimizer state kept),
/// then 3 more epochs in a fresh model and optimizer loaded from it: the weights must be identical.
fn resume_is_exact<O: Optimizer + Clone>(opt: O, name: &str) {
    let (x, y) = data();
    let (inputs, targets) = (SmallInputs { x: x.view() }, SmallTargets { y: y.view() });
    let losses = || SmallLosses { y: Loss::BinaryCrossentropy };

    let mut whole = Small::new(7);
    let mut trainer = whole.compile(opt.clone(), losses(), &[]);
    trainer.fit(&inputs, &targets, &settings(5, 0)).unwrap();
    drop(trainer);

    let path = dir(name).join("epoch{epoch}.safetensors");
    let mut first = Small::new(7);
    let mut ckpt = ModelCheckpoint::new(&path).with_optimizer_state();
    let mut trainer = first.compile(opt.clone(), losses(), &[]);
    trainer.fit_with_callbacks(&inputs, &targets, None, &settings(2, 0), &mut [&mut ckpt]).unwrap();
    let steps = trainer.iterations();
    drop(trainer);

    let mut resumed = Small::new(99);
    let mut trainer = resumed.compile(opt.clone(), losses(), &[]);
    let saved = dir(name).join("epoch2.safetensors");
    trainer.load_checkpoint(&saved).unwrap();
    assert_eq!(trainer.iterations(), steps, "the schedule's position is restored");
    trainer.fit(&inputs, &targets, &settings(5, 2)).unwrap();
    drop(trainer);
    assert_eq!(bits(&resumed), bits(&whole), "{name}: resumed training differs from one run");

    // Without the optimizer state (weights only), the resumed run differs: the test can fail.
    let mut weights_only = Small::new(99);
    modelc::io::load(&mut weights_only, &saved).unwrap();
    let mut trainer = weights_only.compile(opt, losses(), &[]);
    trainer.fit(&inputs, &targets, &settings(5, 2)).unwrap();
    drop(trainer);
    assert_ne!(bits(&weights_only), bits(&whole), "{name}: a fresh optimizer should not match");
    let _ = std::fs::remove_dir_all(dir(name));
}

#[test]
fn resuming_from_a_checkpoint_with_adam_state_matches_one_run_bit_for_bit() {
    resume_is_exact(Adam::new(0.05), "adam");
}

#[test]
fn resuming_from_a_checkpoint_with_rmsprop_state_matches_one_run_bit_for_bit() {
    resume_is_exact(RMSprop::new(0.05).with_momentum(0.5).with_centered(true), "rmsprop");
}

#[test]
fn resuming_from_a_checkpoint_with_nadam_state_matches_one_run_bit_for_bit() {
    // Nadam has a running scalar (the product of its momentum factors) besides its buffers.
    resume_is_exact(Nadam::new(0.05), "nadam");
}

#[test]
fn trainer_save_checkpoint_round_trips_before_the_first_step() {
    // Before any step the buffers are empty: they save and load as such.
    let path = dir("fresh").join("c.safetensors");
    let mut model = Small::new(1);
    let mut trainer = model.compile(Sgd::new(0.1).with_momentum(0.9), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    trainer.save_checkpoint(&path).unwrap();
    trainer.load_checkpoint(&path).unwrap();
    assert_eq!(trainer.iterations(), 0);
    let _ = std::fs::remove_dir_all(dir("fresh"));
}

/// The error message of loading `path` into a fresh `Small` with `opt`, checking nothing changed.
fn load_error<O: Optimizer>(opt: O, path: &std::path::Path) -> String {
    let mut model = Small::new(3);
    let before = bits(&model);
    let mut trainer = model.compile(opt, SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    let err = trainer.load_checkpoint(path).unwrap_err().to_string();
    assert_eq!(trainer.iterations(), 0);
    drop(trainer);
    assert_eq!(bits(&model), before, "a failed load changed the weights");
    err
}

#[test]
fn a_checkpoint_that_does_not_fit_is_a_clear_error_and_changes_nothing() {
    let d = dir("mismatch");
    let (x, y) = data();
    let (inputs, targets) = (SmallInputs { x: x.view() }, SmallTargets { y: y.view() });
    let mut model = Small::new(1);
    let mut trainer = model.compile(Adam::new(0.01), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    trainer.fit(&inputs, &targets, &settings(1, 0)).unwrap();
    let adam = d.join("adam.safetensors");
    trainer.save_checkpoint(&adam).unwrap();
    drop(trainer);

    // Another kind of optimizer.
    let err = load_error(Sgd::new(0.1), &adam);
    assert!(err.contains("Adam") && err.contains("Sgd"), "{err}");
    // AdamW has Adam's buffers: the kind still tells them apart.
    let err = load_error(AdamW::new(0.1), &adam);
    assert!(err.contains("AdamW"), "{err}");

    // A weights-only file.
    let weights = d.join("weights.safetensors");
    modelc::io::save(&model, &weights).unwrap();
    let err = load_error(Adam::new(0.01), &weights);
    assert!(err.contains("weights only"), "{err}");
    // ...while a checkpoint loads as weights.
    let mut copy = Small::new(9);
    modelc::io::load(&mut copy, &adam).unwrap();
    assert_eq!(bits(&copy), bits(&model));

    // Another model: its weights and its state's sizes do not fit.
    let mut other = Other::new(1);
    let mut trainer = other.compile(Adam::new(0.01), OtherLosses { y: Loss::BinaryCrossentropy }, &[]);
    trainer.fit(&OtherInputs { x: x.view() }, &OtherTargets { y: y.view() }, &settings(1, 0)).unwrap();
    let other_path = d.join("other.safetensors");
    trainer.save_checkpoint(&other_path).unwrap();
    drop(trainer);
    let err = load_error(Adam::new(0.01), &other_path);
    assert!(err.contains("optimizer/m") && err.contains("expected 41"), "{err}");

    // A missing state tensor: rewrite the file without `optimizer/v`.
    let mut tensors = modelc::io::read_tensors(&adam).unwrap();
    tensors.remove("optimizer/v");
    let meta = modelc::io::read_metadata(&adam).unwrap();
    let cut = d.join("cut.safetensors");
    write_safetensors(&cut, &meta, &tensors);
    let err = load_error(Adam::new(0.01), &cut);
    assert!(err.contains("missing tensor `optimizer/v`"), "{err}");

    // Non-finite values: a weight, a moment, the learning rate. Each is named; nothing is loaded.
    let mut tensors = modelc::io::read_tensors(&adam).unwrap();
    let kernel = Small::PARAMS[0];
    tensors.get_mut(kernel.name).unwrap()[[1, 2]] = f32::NAN;
    tensors.get_mut("optimizer/v").unwrap()[[4]] = f32::INFINITY;
    tensors.get_mut("optimizer/learning_rate").unwrap()[[0]] = f32::NEG_INFINITY;
    let poisoned = d.join("poisoned.safetensors");
    write_safetensors(&poisoned, &meta, &tensors);
    let err = load_error(Adam::new(0.01), &poisoned);
    assert!(err.contains("tensor `optimizer/v` holds inf at 4: the optimizer state must be finite"), "{err}");
    assert!(err.contains("tensor `optimizer/learning_rate` holds -inf"), "{err}");
    // The state checks come first; the weights are checked by `io::load` (as a weights file too).
    tensors.get_mut("optimizer/v").unwrap()[[4]] = 0.0;
    tensors.get_mut("optimizer/learning_rate").unwrap()[[0]] = 0.01;
    write_safetensors(&poisoned, &meta, &tensors);
    let err = load_error(Adam::new(0.01), &poisoned);
    assert!(err.contains(&format!("parameter `{}` holds NaN at [1, 2]: weights must be finite", kernel.name)), "{err}");
    let mut copy = Small::new(9);
    let before = bits(&copy);
    let err = modelc::io::load(&mut copy, &poisoned).unwrap_err().to_string();
    assert!(err.contains("holds NaN at [1, 2]"), "{err}");
    assert_eq!(bits(&copy), before, "a refused file changed the weights");
    let _ = std::fs::remove_dir_all(d);
}

/// A safetensors file with `meta` and `tensors` (F32), written by hand.
fn write_safetensors(
    path: &std::path::Path,
    meta: &std::collections::BTreeMap<String, String>,
    tensors: &std::collections::BTreeMap<String, modelc::ndarray::ArrayD<f32>>,
) {
    let meta: Vec<String> = meta.iter().map(|(k, v)| format!("\"{k}\":\"{v}\"")).collect();
    let mut header = format!("{{\"__metadata__\":{{{}}}", meta.join(","));
    let mut offset = 0;
    for (name, a) in tensors {
        let dims: Vec<String> = a.shape().iter().map(ToString::to_string).collect();
        let end = offset + a.len() * 4;
        header.push_str(&format!(",\"{name}\":{{\"dtype\":\"F32\",\"shape\":[{}],\"data_offsets\":[{offset},{end}]}}", dims.join(",")));
        offset = end;
    }
    header.push('}');
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    for a in tensors.values() {
        for v in a.iter() {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
    }
    std::fs::write(path, bytes).unwrap();
}

/// The callbacks whose decisions depend on the epochs before: early stopping (restoring the best weights,
/// an array in the checkpoint) and a plateau schedule with a cooldown.
fn deciding_callbacks() -> (EarlyStopping, ReduceLROnPlateau) {
    let early = EarlyStopping { patience: 3, min_delta: 1e-3, restore_best_weights: true, ..EarlyStopping::default() };
    let plateau = ReduceLROnPlateau { patience: 1, factor: 0.5, cooldown: 1, min_delta: 1e-3, ..ReduceLROnPlateau::default() };
    (early, plateau)
}

/// Settings without a schedule (the plateau callback sets the rate), validating on the last quarter.
fn deciding_settings(initial_epoch: usize) -> Fit {
    Fit { epochs: 40, initial_epoch, batch_size: 16, seed: 3, validation_split: 0.25, verbose: false, ..Fit::default() }
}

/// Trains with the deciding callbacks from `initial_epoch`, after loading `resume_from`; returns the
/// history, the callbacks and the final learning rate.
fn train_deciding(
    model: &mut Small,
    resume_from: Option<&std::path::Path>,
    save_to: &std::path::Path,
    epochs: usize,
    initial_epoch: usize,
) -> (History, EarlyStopping, ReduceLROnPlateau, f32) {
    let (x, y) = data();
    let (inputs, targets) = (SmallInputs { x: x.view() }, SmallTargets { y: y.view() });
    let mut trainer = model.compile(Adam::new(0.08), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    if let Some(path) = resume_from {
        trainer.load_checkpoint(path).unwrap();
    }
    let (mut early, mut plateau) = deciding_callbacks();
    let mut save = ModelCheckpoint::new(save_to.join("epoch{epoch}.safetensors")).with_optimizer_state();
    let fit = Fit { epochs, ..deciding_settings(initial_epoch) };
    let history = trainer.fit_with_callbacks(&inputs, &targets, None, &fit, &mut [&mut save, &mut early, &mut plateau]).unwrap();
    let lr = trainer.optimizer().learning_rate();
    (history, early, plateau, lr)
}

#[test]
fn a_run_resumed_from_a_checkpoint_stops_and_reduces_the_rate_as_the_uninterrupted_one() {
    let d = dir("deciding");
    let (whole_dir, part_dir, resumed_dir) = (d.join("whole"), d.join("part"), d.join("resumed"));
    for p in [&whole_dir, &part_dir, &resumed_dir] {
        std::fs::create_dir_all(p).unwrap();
    }
    let mut whole = Small::new(21);
    let (full, early, plateau, lr) = train_deciding(&mut whole, None, &whole_dir, 40, 0);
    let stopped = early.stopped_epoch.expect("the uninterrupted run stops early");
    eprintln!("uninterrupted: stopped at {stopped}, lr {lr}, val_loss {:?}", full.get("val_loss"));
    assert!(lr < 0.08, "the plateau callback reduced the rate");
    // Split where early stopping is waiting (the plateau callback has reduced the rate before, or will).
    let k = (1..stopped)
        .rev()
        .find(|&k| {
            let meta = modelc::io::read_metadata(whole_dir.join(format!("epoch{k}.safetensors"))).unwrap();
            meta.get("callback.1.wait").is_some_and(|w| w != "0")
        })
        .expect("an epoch at which early stopping waits");
    let mut part = Small::new(21);
    train_deciding(&mut part, None, &part_dir, k, 0);
    let saved = part_dir.join(format!("epoch{k}.safetensors"));

    let mut resumed = Small::new(99);
    let (rest, early2, plateau2, lr2) = train_deciding(&mut resumed, Some(&saved), &resumed_dir, 40, k);
    assert_eq!(rest.epoch, (k..=stopped).collect::<Vec<_>>(), "the resumed run stops at the same epoch");
    assert_eq!(rest.get("val_loss").unwrap(), &full.get("val_loss").unwrap()[k..], "the same validation losses");
    assert_eq!(rest.get("loss").unwrap(), &full.get("loss").unwrap()[k..]);
    assert_eq!((early2.stopped_epoch, early2.best_epoch, early2.best), (early.stopped_epoch, early.best_epoch, early.best));
    assert_eq!((plateau2.wait, plateau2.cooldown_counter, plateau2.best), (plateau.wait, plateau.cooldown_counter, plateau.best));
    assert_eq!(lr2.to_bits(), lr.to_bits(), "the same learning rate");
    assert_eq!(bits(&resumed), bits(&whole), "the same (best) weights restored at the end");

    // Without the callbacks' states (the same file, its `callback.` entries dropped), the resumed run decides
    // otherwise: the test can fail.
    let mut tensors = modelc::io::read_tensors(&saved).unwrap();
    tensors.retain(|name, _| !name.starts_with("callback/"));
    let mut meta = modelc::io::read_metadata(&saved).unwrap();
    meta.retain(|key, _| !key.starts_with("callback."));
    let cut = d.join("without-callbacks.safetensors");
    write_safetensors(&cut, &meta, &tensors);
    let mut fresh = Small::new(99);
    let (other, ..) = train_deciding(&mut fresh, Some(&cut), &resumed_dir, 40, k);
    assert_ne!(other.epoch, rest.epoch, "fresh callbacks should stop elsewhere");
    let _ = std::fs::remove_dir_all(d);
}

#[test]
fn a_callback_state_restored_into_another_kind_is_an_error() {
    let d = dir("wrong-kind");
    let (x, y) = data();
    let (inputs, targets) = (SmallInputs { x: x.view() }, SmallTargets { y: y.view() });
    let mut model = Small::new(1);
    let mut trainer = model.compile(Adam::new(0.01), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    let (mut early, mut plateau) = deciding_callbacks();
    let fit = Fit { epochs: 1, ..deciding_settings(0) };
    trainer.fit_with_callbacks(&inputs, &targets, None, &fit, &mut [&mut early, &mut plateau]).unwrap();
    let path = d.join("c.safetensors");
    trainer.save_checkpoint_with(&path, &[&early, &plateau]).unwrap();
    let meta = modelc::io::read_metadata(&path).unwrap();
    assert_eq!(meta.get("callback.0.kind").map(String::as_str), Some("EarlyStopping"));
    assert_eq!(meta.get("callback.1.kind").map(String::as_str), Some("ReduceLROnPlateau"));
    trainer.load_checkpoint(&path).unwrap();
    // The callbacks swapped: each position holds the other kind.
    let fit = Fit { epochs: 2, ..deciding_settings(1) };
    let (mut early, mut plateau) = deciding_callbacks();
    let err = trainer.fit_with_callbacks(&inputs, &targets, None, &fit, &mut [&mut plateau, &mut early]).unwrap_err().to_string();
    assert!(err.contains("EarlyStopping") && err.contains("ReduceLROnPlateau"), "{err}");
    let _ = std::fs::remove_dir_all(d);
}
