//! The `Callback` trait and its Keras implementations: what a callback is told and when, stopping,
//! changing the learning rate, ReduceLROnPlateau, CSVLogger, TerminateOnNaN and ModelCheckpoint.

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;
use modelc::Direction;

model! {
    struct Small {
        input x: [3];
        let h = Dense(8, activation = tanh)(x);
        output y = Dense(1, activation = sigmoid)(h);
    }
}

fn data() -> (Array2<f32>, Array2<f32>) {
    let mut rng = Rng::new(5);
    let x = Array2::from_shape_fn((128, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((128, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] + 0.5 * x[[i, 1]] > 0.0)));
    (x, y)
}

fn quiet() -> Fit {
    Fit { epochs: 4, batch_size: 32, verbose: false, seed: 3, validation_split: 0.25, ..Fit::default() }
}

fn fit_with(model: &mut Small, settings: &Fit, callbacks: &mut [&mut dyn Callback<Small>]) -> Result<History, modelc::train::FitError> {
    let (x, y) = data();
    let mut trainer = model.compile(Adam::new(1e-2), SmallLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    trainer.fit_with_callbacks(&SmallInputs { x: x.view() }, &SmallTargets { y: y.view() }, None, settings, callbacks)
}

/// Records every call, stops after `stop_after` epochs and halves the rate after each epoch.
#[derive(Default)]
struct Recorder {
    events: Vec<String>,
    rates: Vec<f32>,
    stop_after: Option<usize>,
}

impl Callback<Small> for Recorder {
    fn on_train_begin(&mut self, _: &mut Control<'_, Small>) -> modelc::Result<()> {
        self.events.push("train_begin".into());
        Ok(())
    }
    fn on_epoch_begin(&mut self, epoch: usize, _: &mut Control<'_, Small>) -> modelc::Result<()> {
        self.events.push(format!("epoch_begin {epoch}"));
        Ok(())
    }
    fn on_train_batch_begin(&mut self, batch: usize, _: &mut Control<'_, Small>) -> modelc::Result<()> {
        self.events.push(format!("batch_begin {batch}"));
        Ok(())
    }
    fn on_train_batch_end(&mut self, batch: usize, logs: &LogsView<'_>, _: &mut Control<'_, Small>) -> modelc::Result<()> {
        assert!(logs.loss().is_some_and(f64::is_finite) && logs.metric("accuracy").is_some());
        assert!(logs.val_loss().is_none(), "no validation values after a batch");
        self.events.push(format!("batch_end {batch}"));
        Ok(())
    }
    fn on_epoch_end(&mut self, epoch: usize, logs: &LogsView<'_>, ctx: &mut Control<'_, Small>) -> modelc::Result<()> {
        assert!(logs.val_loss().is_some() && logs.get("val_accuracy").is_some());
        self.rates.push(logs.learning_rate());
        self.events.push(format!("epoch_end {epoch}"));
        ctx.set_learning_rate(ctx.learning_rate() / 2.0);
        if self.stop_after == Some(epoch + 1) {
            ctx.stop_training();
        }
        Ok(())
    }
    fn on_train_end(&mut self, logs: &LogsView<'_>, _: &mut Control<'_, Small>) -> modelc::Result<()> {
        assert!(logs.loss().is_some());
        self.events.push("train_end".into());
        Ok(())
    }
}

#[test]
fn a_user_callback_is_told_everything_in_order_and_sets_the_learning_rate() {
    let mut rec = Recorder::default();
    let mut model = Small::new(1);
    // 96 training rows in batches of 32: three batches per epoch; epochs 2 and 3 (0-based) run.
    let history = fit_with(&mut model, &Fit { initial_epoch: 2, ..quiet() }, &mut [&mut rec]).unwrap();
    let mut expected = vec!["train_begin".to_string()];
    for e in 2..4 {
        expected.push(format!("epoch_begin {e}"));
        for b in 0..3 {
            expected.extend([format!("batch_begin {b}"), format!("batch_end {b}")]);
        }
        expected.push(format!("epoch_end {e}"));
    }
    expected.push("train_end".into());
    assert_eq!(rec.events, expected);
    assert_eq!(rec.rates, [1e-2, 5e-3], "the rate set after epoch 2 is the one epoch 3 trains with");
    assert_eq!(history.epoch, [2, 3], "the history counts from initial_epoch, as Keras");
    assert!(history.to_csv().lines().nth(1).unwrap().starts_with("2,"));
}

#[test]
fn a_callback_stops_training_after_the_epoch() {
    let mut rec = Recorder { stop_after: Some(2), ..Recorder::default() };
    let mut model = Small::new(1);
    let history = fit_with(&mut model, &Fit { epochs: 10, ..quiet() }, &mut [&mut rec]).unwrap();
    assert_eq!(history.epochs(), 2);
    assert_eq!(rec.events.last().map(String::as_str), Some("train_end"));
}

#[test]
fn a_callback_cannot_set_the_rate_a_schedule_sets() {
    let mut rec = Recorder::default();
    let mut model = Small::new(1);
    let settings = Fit { schedule: Some(Schedule::cosine_decay(0.01, 100)), ..quiet() };
    let err = fit_with(&mut model, &settings, &mut [&mut rec]).unwrap_err();
    assert!(err.to_string().contains("schedule"), "{err}");
    assert_eq!(err.history.epochs(), 1, "the first epoch completed");
}

#[test]
fn reduce_lr_on_plateau_follows_keras_patience_cooldown_and_floor() {
    // Nothing improves by more than 1e9: with patience 2 and cooldown 1 the rate is halved after
    // epochs 2, 4 and 6 (0-based) as Keras does, never below min_lr.
    let mut reduce = ReduceLROnPlateau {
        monitor: "loss".into(),
        patience: 2,
        cooldown: 1,
        factor: 0.5,
        min_delta: 1e9,
        min_lr: 2e-3,
        ..ReduceLROnPlateau::default()
    };
    struct Rates(Vec<f32>);
    impl Callback<Small> for Rates {
        fn on_epoch_end(&mut self, _: usize, _: &LogsView<'_>, ctx: &mut Control<'_, Small>) -> modelc::Result<()> {
            self.0.push(ctx.learning_rate());
            Ok(())
        }
    }
    let mut rates = Rates(Vec::new());
    let mut model = Small::new(1);
    fit_with(&mut model, &Fit { epochs: 9, ..quiet() }, &mut [&mut reduce, &mut rates]).unwrap();
    // Keras: epoch 0 sets best; 1: wait 1; 2: wait 2 -> reduce, cooldown 1; 3: the cooldown ends, and
    // the same epoch counts (wait 1); 4: reduce; 6: reduce to the floor (not 1.25e-3); 8: at the floor.
    assert_eq!(rates.0, [1e-2, 1e-2, 5e-3, 5e-3, 2.5e-3, 2.5e-3, 2e-3, 2e-3, 2e-3]);
    let mut bad = ReduceLROnPlateau { factor: 1.0, ..ReduceLROnPlateau::default() };
    let err = fit_with(&mut Small::new(1), &quiet(), &mut [&mut bad]).unwrap_err().to_string();
    assert!(err.contains("factor"), "{err}");
}

#[test]
fn csv_logger_writes_what_keras_writes_and_appends() {
    let dir = std::env::temp_dir().join(format!("modelc-csvlog-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("log.csv");
    let mut logger = CsvLogger::new(&path);
    let mut model = Small::new(1);
    let history = fit_with(&mut model, &Fit { epochs: 2, ..quiet() }, &mut [&mut logger]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let lines: Vec<&str> = text.split("\r\n").collect();
    assert_eq!(lines[0], "epoch,accuracy,loss,val_accuracy,val_loss");
    let loss = history.get("loss").unwrap();
    assert_eq!(lines[1].split(',').nth(2).unwrap().parse::<f64>().unwrap(), loss[0]);
    assert_eq!(lines.len(), 4, "two rows and the final line break: {text:?}");

    // Resumed with append: no second header, epochs numbered from initial_epoch; no validation gives
    // the `val_` columns `NA`, as Keras.
    let mut logger = CsvLogger::new(&path).appending();
    fit_with(&mut model, &Fit { epochs: 3, initial_epoch: 2, validation_split: 0.0, ..quiet() }, &mut [&mut logger]).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let last = text.split("\r\n").nth(3).unwrap();
    assert!(last.starts_with("2,") && last.ends_with(",NA,NA"), "{text}");
    assert_eq!(text.matches("epoch").count(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}

model! {
    struct Linear {
        input x: [3];
        output y = Dense(1)(x);
    }
}

#[test]
fn terminate_on_nan_ends_fit_gracefully_where_it_would_fail() {
    // Inputs of 1e38 in the second batch and weights of 10: the output overflows to infinity there.
    let (mut x, y) = data();
    x.slice_mut(modelc::ndarray::s![40..50, ..]).fill(1e38);
    let run = |callbacks: &mut [&mut dyn Callback<Linear>]| {
        let mut model = Linear::new(1);
        model.state_mut().params.fill(10.0);
        let mut trainer = model.compile(Sgd::new(1e-6), LinearLosses { y: Loss::MeanSquaredError }, &[]);
        let settings = Fit { shuffle: false, validation_split: 0.0, ..quiet() };
        trainer.fit_with_callbacks(&LinearInputs { x: x.view() }, &LinearTargets { y: y.view() }, None, &settings, callbacks)
    };
    let err = run(&mut []).unwrap_err();
    assert!(matches!(err.error, modelc::Error::NonFiniteLoss { epoch: 1, batch: 2, .. }), "{err}");
    let history = run(&mut [&mut TerminateOnNaN::default()]).unwrap();
    assert_eq!(history.epochs(), 1);
    assert!(history.last("loss").unwrap().is_infinite());
    let err = run(&mut [&mut TerminateOnNaN { raise_error: true }]).unwrap_err();
    assert!(matches!(err.error, modelc::Error::NonFiniteLoss { .. }));
}

#[test]
fn early_stopping_and_model_checkpoint_work_from_the_callback_list() {
    let dir = std::env::temp_dir().join(format!("modelc-cbckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let mut stop = EarlyStopping { monitor: "loss".into(), patience: 1, min_delta: 1e9, ..EarlyStopping::default() };
    let template = dir.join("w.{epoch:02d}-{loss:.3f}.safetensors");
    let mut every = ModelCheckpoint::new(&template);
    // "Best" as the highest loss: only the first epoch saves.
    let mut best = ModelCheckpoint {
        monitor: "loss".into(),
        direction: Direction::Max,
        save_best_only: true,
        ..ModelCheckpoint::new(dir.join("best.safetensors"))
    };
    let mut model = Small::new(2);
    let history = fit_with(&mut model, &Fit { epochs: 10, ..quiet() }, &mut [&mut stop, &mut every, &mut best]).unwrap();
    assert_eq!(history.epochs(), 2);
    assert_eq!(stop.stopped_epoch, Some(1));
    let losses = history.get("loss").unwrap();
    for (e, l) in losses.iter().enumerate() {
        let name = format!("w.{:02}-{l:.3}.safetensors", e + 1);
        assert!(dir.join(&name).exists(), "{name}");
    }
    let mut first = Small::new(2);
    fit_with(&mut first, &Fit { epochs: 1, ..quiet() }, &mut []).unwrap();
    let mut loaded = Small::new(0);
    loaded.load(dir.join("best.safetensors")).unwrap();
    assert_eq!(loaded.params(), first.params());
    std::fs::remove_dir_all(&dir).unwrap();
}
