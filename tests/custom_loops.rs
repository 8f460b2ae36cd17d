//! Custom training loops as Keras users write them: `train_on_batch`, `test_on_batch`, `predict_on_batch`,
//! `compute_gradients` then `apply_gradients`, a forward pass with Dropout and BatchNormalization set
//! apart, and the `fit` options `validation_data`, `initial_epoch` and `steps_per_epoch`. Each is checked
//! against the path it must agree with (fit, evaluate, predict, train_step), bit for bit.

use crate::counting_alloc;
use counting_alloc::allocations_in;
use modelc::init::Rng;
use modelc::ndarray::{s, Array2};
use modelc::network::Network;
use modelc::ops::{forward, forward_with, ForwardMode};
use modelc::prelude::*;

model! {
    /// Two outputs through BatchNormalization and Dropout, so that the moving statistics and the dropout
    /// masks take part in every comparison.
    struct Loops {
        input x: [4];
        let h = Dense(8, activation = relu)(x);
        let h = BatchNormalization()(h);
        let h = Dropout(0.25, seed = 7)(h);
        output y = Dense(1, activation = sigmoid)(h);
        output z = Dense(2)(h);
    }
}

model! {
    /// Dropout right on the output, to see both modes in the output itself.
    struct Modes {
        input x: [4];
        let h = Dense(6)(x);
        let h = BatchNormalization()(h);
        output y = Dropout(0.5, seed = 1)(h);
    }
}

model! {
    /// `Modes` without its Dropout: the same parameters.
    struct NoDrop {
        input x: [4];
        let h = Dense(6)(x);
        output y = BatchNormalization()(h);
    }
}

const N: usize = 40;

fn data(seed: u64) -> (Array2<f32>, Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(seed);
    let x = Array2::from_shape_fn((N, 4), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((N, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] - x[[i, 2]] > 0.0)));
    let z = Array2::from_shape_fn((N, 2), |(i, k)| x[[i, k]] * x[[i, 3]]);
    (x, y, z)
}

fn losses() -> LoopsPerOutput<Loss> {
    LoopsPerOutput { y: Loss::BinaryCrossentropy, z: Loss::MeanSquaredError }
}

fn compile(model: &mut Loops) -> Trainer<'_, Loops, Adam> {
    model.compile(Adam::new(1e-2), losses(), &[Metric::Accuracy, Metric::MeanAbsoluteError])
}

fn quiet() -> Fit {
    Fit { verbose: false, shuffle: false, batch_size: 8, ..Fit::default() }
}

#[test]
fn train_on_batch_equals_one_fit_epoch_of_one_batch() {
    let (x, y, z) = data(1);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let mut a = Loops::new(3);
    let logs = compile(&mut a).train_on_batch(&inputs, &targets).unwrap();
    let mut b = Loops::new(3);
    let history = compile(&mut b).fit(&inputs, &targets, &Fit { batch_size: N, ..quiet() }).unwrap();
    let keys: Vec<&str> = logs.keys().map(String::as_str).collect();
    assert_eq!(keys, history.keys().collect::<Vec<_>>());
    assert!(keys.contains(&"loss") && keys.contains(&"y_loss") && keys.contains(&"z_mean_absolute_error"), "{keys:?}");
    for (k, v) in &logs {
        assert_eq!(Some(*v), history.last(k), "{k}");
    }
    assert_eq!(a.params(), b.params(), "the same step");
}

#[test]
fn train_on_batch_reports_that_batch_only() {
    let (x, y, z) = data(1);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let (head, tail) = (LoopsInputs { x: x.slice(s![..8, ..]) }, LoopsTargets { y: y.slice(s![..8, ..]), z: z.slice(s![..8, ..]) });
    let mut a = Loops::new(3);
    let mut trainer = compile(&mut a);
    trainer.train_on_batch(&inputs, &targets).unwrap();
    // Keras' `reset_metrics=True`: the second call's logs are its own batch's, not a running mean.
    let second = trainer.train_on_batch(&head, &tail).unwrap();
    let mut b = Loops::new(3);
    let mut other = compile(&mut b);
    other.train_step(&inputs, &targets).unwrap();
    let first_of_head = other.train_on_batch(&head, &tail).unwrap();
    assert_eq!(second, first_of_head);
}

#[test]
fn test_on_batch_equals_evaluate_and_predict_on_batch_equals_predict() {
    let (x, y, z) = data(2);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let mut model = Loops::new(4);
    let mut trainer = compile(&mut model);
    trainer.fit(&inputs, &targets, &Fit { epochs: 2, ..quiet() }).unwrap();
    let before = trainer.model().params().to_vec();
    let logs = trainer.test_on_batch(&inputs, &targets).unwrap();
    assert_eq!(logs, trainer.evaluate(&inputs, &targets, N).unwrap());
    assert_eq!(logs.len(), 7, "{logs:?}");
    let on_batch = trainer.predict_on_batch(&inputs).unwrap();
    let predicted = trainer.predict(&inputs, 8).unwrap();
    assert_eq!((on_batch.y, on_batch.z), (predicted.y, predicted.z));
    assert_eq!(trainer.model().params(), &before[..], "inference changes nothing");
}

/// `Loops`' non-trainable parameters (the moving statistics) and trainable ones, flat.
fn split_params(params: &[f32]) -> (Vec<f32>, Vec<f32>) {
    let (mut frozen, mut trained) = (Vec::new(), Vec::new());
    for p in Loops::PARAMS {
        let v = &params[p.range()];
        if p.trainable { &mut trained } else { &mut frozen }.extend_from_slice(v);
    }
    (frozen, trained)
}

#[test]
fn compute_then_apply_gradients_equals_train_step_bit_for_bit() {
    let (x, y, z) = data(3);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let optimizer = || Adam::new(1e-2).with_clipnorm(0.5).with_weight_decay(1e-3);
    let mut a = Loops::new(5);
    let mut stepped = a.compile(optimizer(), losses(), &[]);
    let mut b = Loops::new(5);
    let mut custom = b.compile(optimizer(), losses(), &[]);
    let mut grads = vec![0.0; Loops::PARAM_COUNT];
    for _ in 0..4 {
        let loss = stepped.train_step(&inputs, &targets).unwrap();
        let (l, g) = custom.compute_gradients(&inputs, &targets).unwrap();
        assert_eq!(loss, l);
        grads.copy_from_slice(g);
        custom.apply_gradients(&grads).unwrap();
        assert_eq!(stepped.model().params(), custom.model().params());
    }
    assert_eq!(stepped.optimizer().iterations(), custom.optimizer().iterations());
}

#[test]
fn compute_gradients_moves_only_the_moving_statistics_and_sgd_applies_them_as_given() {
    let (x, y, z) = data(4);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let mut model = Loops::new(6);
    let mut trainer = model.compile(Sgd::new(1.0), losses(), &[]);
    let before = trainer.model().params().to_vec();
    let (loss, g) = trainer.compute_gradients(&inputs, &targets).unwrap();
    assert!(loss.is_finite() && loss > 0.0);
    let grads = g.to_vec();
    let after = trainer.model().params().to_vec();
    let ((frozen_0, trained_0), (frozen_1, trained_1)) = (split_params(&before), split_params(&after));
    assert_eq!(trained_0, trained_1, "no trainable parameter moves");
    assert_ne!(frozen_0, frozen_1, "the moving statistics move, as Keras' BatchNormalization under training=True");
    assert!(grads.iter().any(|&g| g != 0.0));
    for p in Loops::PARAMS.iter().filter(|p| !p.trainable) {
        assert!(grads[p.range()].iter().all(|&g| g == 0.0), "{} has no gradient", p.name);
    }
    // Plain SGD at rate 1 subtracts exactly the given gradients.
    trainer.apply_gradients(&grads).unwrap();
    let stepped = trainer.model().params();
    for p in Loops::PARAMS.iter().filter(|p| p.trainable) {
        for i in p.range() {
            assert_eq!(stepped[i], after[i] - grads[i], "{} [{i}]", p.name);
        }
    }
}

#[test]
fn apply_gradients_rejects_a_wrong_length_and_undoes_a_non_finite_step() {
    let (x, y, z) = data(10);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let mut model = Loops::new(7);
    let mut trainer = compile(&mut model);
    trainer.train_step(&inputs, &targets).unwrap();
    // The moving statistics this moves are kept when the step after it is undone.
    trainer.compute_gradients(&inputs, &targets).unwrap();
    let before = trainer.model().params().to_vec();
    let err = trainer.apply_gradients(&[0.0; 3]).unwrap_err().to_string();
    assert!(err.contains(&format!("{} parameters", Loops::PARAM_COUNT)), "{err}");
    let mut grads = vec![0.0; Loops::PARAM_COUNT];
    grads[1] = f32::NAN;
    let err = trainer.apply_gradients(&grads).unwrap_err();
    assert!(matches!(err, modelc::Error::NonFiniteParams { .. }), "{err}");
    assert_eq!(trainer.model().params(), &before[..], "the faulty step is undone");
}

#[test]
fn custom_steps_allocate_nothing_after_warm_up() {
    let (x, y, z) = data(5);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let mut model = Loops::new(8);
    let mut trainer = compile(&mut model);
    let mut grads = vec![0.0; Loops::PARAM_COUNT];
    let mut step = |trainer: &mut Trainer<'_, Loops, Adam>| {
        let (_, g) = trainer.compute_gradients(&inputs, &targets).unwrap();
        grads.copy_from_slice(g);
        trainer.apply_gradients(&grads).unwrap();
    };
    step(&mut trainer);
    let n = allocations_in(|| {
        for _ in 0..10 {
            step(&mut trainer);
        }
    });
    assert_eq!(n, 0, "{n} allocations in 10 compute_gradients + apply_gradients steps");
}

#[test]
fn validation_data_logs_equal_evaluate_and_override_the_split() {
    let (x, y, z) = data(6);
    let (vx, vy, vz) = data(7);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let (val_inputs, val_targets) = (LoopsInputs { x: vx.view() }, LoopsTargets { y: vy.view(), z: vz.view() });
    let settings = Fit { epochs: 3, batch_size: 16, validation_split: 0.5, ..quiet() };
    let mut a = Loops::new(9);
    let mut trainer = compile(&mut a);
    let history = trainer.fit_with_validation_data(&inputs, &targets, (&val_inputs, &val_targets), &settings).unwrap();
    let evaluated = trainer.evaluate(&val_inputs, &val_targets, 16).unwrap();
    for (k, v) in &evaluated {
        assert_eq!(history.last(&format!("val_{k}")), Some(*v), "val_{k}");
    }
    assert_eq!(history.epochs(), 3);
    // Every training row was trained on: the split is ignored.
    let mut b = Loops::new(9);
    compile(&mut b).fit(&inputs, &targets, &Fit { validation_split: 0.0, ..settings }).unwrap();
    assert_eq!(a.params(), b.params());
}

#[test]
fn initial_epoch_resumes_with_the_schedule_where_the_optimizer_left_it() {
    let (x, y, z) = data(8);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    let schedule = Schedule::ExponentialDecay { initial: 0.05, decay_steps: 3, decay_rate: 0.5, staircase: false };
    let settings = Fit { epochs: 4, schedule: Some(schedule.clone()), ..quiet() };
    let mut once = Loops::new(10);
    let whole = compile(&mut once).fit(&inputs, &targets, &settings).unwrap();
    let mut twice = Loops::new(10);
    let mut trainer = compile(&mut twice);
    let first = trainer.fit(&inputs, &targets, &Fit { epochs: 2, ..settings.clone() }).unwrap();
    let second = trainer.fit(&inputs, &targets, &Fit { initial_epoch: 2, ..settings.clone() }).unwrap();
    assert_eq!((first.epochs(), second.epochs()), (2, 2), "only the epochs run are recorded");
    assert_eq!(trainer.optimizer().iterations(), 20);
    // The last step's rate is the schedule's at step 19, not at the second fit's own step 9.
    assert_eq!(trainer.optimizer().learning_rate(), schedule.at(19));
    assert_ne!(schedule.at(19), schedule.at(9));
    assert_eq!(whole.get("loss").unwrap()[2..], *second.get("loss").unwrap());
    assert_eq!(once.params(), twice.params());
    // Starting at or past `epochs` trains nothing, as in Keras.
    let mut model = Loops::new(10);
    let none = compile(&mut model).fit(&inputs, &targets, &Fit { initial_epoch: 4, ..settings }).unwrap();
    assert_eq!(none.epochs(), 0);
    assert_eq!(model.params(), Loops::new(10).params());
}

#[test]
fn steps_per_epoch_goes_on_through_the_pass_as_keras_iterates_arrays() {
    let (x, y, z) = data(9);
    let (inputs, targets) = (LoopsInputs { x: x.view() }, LoopsTargets { y: y.view(), z: z.view() });
    // 40 rows in batches of 8: a pass of 5 batches. Two per epoch: batches 0-1, 2-3, 4 (the pass ends),
    // then a new pass: 0-1.
    let mut fitted = Loops::new(11);
    let history = compile(&mut fitted).fit(&inputs, &targets, &Fit { epochs: 4, steps_per_epoch: Some(2), ..quiet() }).unwrap();
    assert_eq!(history.epochs(), 4);
    let mut stepped = Loops::new(11);
    let mut trainer = compile(&mut stepped);
    let mut third_epoch = None;
    for b in [0, 1, 2, 3, 4, 0, 1] {
        let r = s![b * 8..(b + 1) * 8, ..];
        let logs = trainer.train_on_batch(&LoopsInputs { x: x.slice(r) }, &LoopsTargets { y: y.slice(r), z: z.slice(r) }).unwrap();
        if b == 4 {
            third_epoch = logs.get("loss").copied();
        }
    }
    assert_eq!(fitted.params(), stepped.params());
    assert_eq!(history.get("loss").unwrap()[2], third_epoch.unwrap(), "the third epoch is the pass's last batch alone");

    let mut model = Loops::new(11);
    let mut trainer = compile(&mut model);
    for bad in [0, 6] {
        let err = trainer.fit(&inputs, &targets, &Fit { steps_per_epoch: Some(bad), ..quiet() }).unwrap_err().to_string();
        assert!(err.contains("steps_per_epoch") && err.contains("the 5 batches of 8 rows"), "{err}");
    }
}

#[test]
fn dropout_and_batch_normalization_modes_are_set_apart() {
    let mut rng = Rng::new(12);
    let x = Array2::from_shape_fn((16, 4), |_| rng.uniform(-1.0, 1.0));
    let inputs = ModesInputs { x: x.view() };
    let moving =
        |m: &Modes| -> Vec<f32> { Modes::PARAMS.iter().filter(|p| !p.trainable).flat_map(|p| m.params()[p.range()].to_vec()).collect() };
    let fresh = || Modes::new(2);

    // The bool flag is the two modes together.
    let (mut a, mut b) = (fresh(), fresh());
    assert_eq!(forward(&mut a, &inputs, true).unwrap().y, forward_with(&mut b, &inputs, ForwardMode::TRAINING).unwrap().y);
    assert_eq!(a.params(), b.params());
    let inference = forward(&mut fresh(), &inputs, false).unwrap().y;

    // Dropout off, batch statistics on: deterministic, the training output before its mask.
    let batch_stats = ForwardMode { dropout: false, batch_statistics: true };
    let mut m = fresh();
    let bn_only = forward_with(&mut m, &inputs, batch_stats).unwrap().y;
    assert_ne!(moving(&m), moving(&fresh()), "batch statistics move the moving statistics");
    assert_eq!(bn_only, forward_with(&mut fresh(), &inputs, batch_stats).unwrap().y);
    assert_ne!(bn_only, inference);
    let training = forward(&mut fresh(), &inputs, true).unwrap().y;
    let dropped = training.iter().zip(&bn_only).filter(|&(&t, &v)| t == 0.0 && v != 0.0).count();
    assert!(training.iter().zip(&bn_only).all(|(&t, &v)| t == 0.0 || t == 2.0 * v));
    assert!(dropped > 0 && dropped < training.len(), "{dropped} of {} dropped", training.len());

    // Dropout on, moving statistics: the inference output under the mask, and nothing moves.
    let mut m = fresh();
    let drop_only = forward_with(&mut m, &inputs, ForwardMode { dropout: true, batch_statistics: false }).unwrap().y;
    assert_eq!(moving(&m), moving(&fresh()));
    assert!(drop_only.iter().zip(&inference).all(|(&d, &v)| d == 0.0 || d == 2.0 * v));
    assert!(drop_only.iter().any(|&d| d == 0.0) && drop_only != inference);
}

#[test]
fn backward_follows_the_modes_of_the_forward_pass() {
    let mut rng = Rng::new(13);
    let x = Array2::from_shape_fn((16, 4), |_| rng.uniform(-1.0, 1.0));
    let dy = Array2::from_shape_fn((16, 6), |_| rng.uniform(-1.0, 1.0));
    let mut modes = Modes::new(2);
    let mut twin = NoDrop::new(0);
    assert_eq!(Modes::PARAMS.len(), NoDrop::PARAMS.len());
    twin.state_mut().params.copy_from_slice(modes.params());
    // Dropout off and batch statistics on: the twin without Dropout in training mode, forward and backward.
    let out = forward_with(&mut modes, &ModesInputs { x: x.view() }, ForwardMode { dropout: false, batch_statistics: true }).unwrap();
    let expected = forward(&mut twin, &NoDropInputs { x: x.view() }, true).unwrap();
    assert_eq!(out.y, expected.y);
    assert_eq!(modes.params(), twin.params(), "the same moving statistics");
    let grads = modes.backward(&ModesOutputs { y: dy.clone() }).unwrap();
    let twin_grads = twin.backward(&NoDropOutputs { y: dy }).unwrap();
    assert_eq!(grads.as_slice(), twin_grads.as_slice());
    assert!(grads.as_slice().iter().any(|&g| g != 0.0));
}
