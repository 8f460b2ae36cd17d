//! Keras' training callbacks as `Fit` settings: learning-rate schedules, early stopping with best-weight
//! restore, checkpoints of the last and best weights, and the history as CSV and SVG.

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

fn fit(model: &mut Small, settings: Fit) -> History {
    let (x, y) = data();
    let mut trainer = model.compile(Adam::new(1e-2), SmallLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    trainer.fit(&SmallInputs { x: x.view() }, &SmallTargets { y: y.view() }, &settings).unwrap()
}

fn quiet() -> Fit {
    Fit { epochs: 6, batch_size: 16, verbose: false, seed: 3, validation_split: 0.25, ..Fit::default() }
}

#[test]
fn early_stopping_stops_after_patience_and_restores_the_best_weights() {
    // Nothing counts as an improvement after the first epoch, so training stops after `patience` more.
    let stop =
        EarlyStopping { monitor: "loss".into(), patience: 2, min_delta: 1e9, restore_best_weights: true, ..EarlyStopping::default() };
    let mut model = Small::new(1);
    let history = fit(&mut model, Fit { early_stopping: Some(stop), ..quiet() });
    assert_eq!(history.epochs(), 3);

    let mut one_epoch = Small::new(1);
    fit(&mut one_epoch, Fit { epochs: 1, ..quiet() });
    assert_eq!(model.params(), one_epoch.params(), "the weights of the best (first) epoch are restored");
}

#[test]
fn early_stopping_on_a_key_that_is_not_logged_is_an_error() {
    let (x, y) = data();
    let mut model = Small::new(1);
    let mut trainer = model.compile(Adam::new(1e-2), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    let settings = Fit { early_stopping: Some(EarlyStopping::default()), validation_split: 0.0, ..quiet() };
    let err = trainer.fit(&SmallInputs { x: x.view() }, &SmallTargets { y: y.view() }, &settings).unwrap_err().to_string();
    assert!(err.contains("val_loss") && err.contains("validation_split"), "{err}");
}

#[test]
fn checkpoints_keep_the_last_and_the_best_epoch() {
    let dir = std::env::temp_dir().join(format!("modelc-ckpt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (last, best) = (dir.join("last.safetensors"), dir.join("best.safetensors"));
    // "Best" by the highest loss: with a falling loss, that is the first epoch.
    let ckpt = Checkpoint { last: Some(last.clone()), best: Some(best.clone()), monitor: "loss".into(), direction: Direction::Max };
    let mut model = Small::new(2);
    let history = fit(&mut model, Fit { checkpoint: Some(ckpt), ..quiet() });
    let losses = history.get("loss").unwrap();
    assert!(losses.windows(2).all(|w| w[1] < w[0]), "loss falls: {losses:?}");

    let mut loaded = Small::new(0);
    loaded.load(&last).unwrap();
    assert_eq!(loaded.params(), model.params());
    let mut first = Small::new(2);
    fit(&mut first, Fit { epochs: 1, ..quiet() });
    loaded.load(&best).unwrap();
    assert_eq!(loaded.params(), first.params());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_schedule_sets_the_learning_rate_of_every_step() {
    let (x, y) = data();
    let mut model = Small::new(1);
    let schedule = Schedule::cosine_decay(0.05, 30);
    let mut trainer = model.compile(Adam::new(1.0), SmallLosses { y: Loss::BinaryCrossentropy }, &[]);
    // 96 training rows in batches of 16: 6 steps per epoch, 36 in all; the last step is step 35.
    trainer.fit(&SmallInputs { x: x.view() }, &SmallTargets { y: y.view() }, &Fit { schedule: Some(schedule.clone()), ..quiet() }).unwrap();
    assert_eq!(trainer.optimizer().learning_rate(), schedule.at(35));
    assert_eq!(trainer.optimizer().iterations(), 36);
}

#[test]
fn history_is_written_as_csv_and_svg() {
    let mut model = Small::new(4);
    let history = fit(&mut model, quiet());
    let dir = std::env::temp_dir().join(format!("modelc-hist-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    history.write_csv(dir.join("h.csv")).unwrap();
    modelc::viz::write_history_svg(&history, dir.join("h.svg")).unwrap();
    let csv = std::fs::read_to_string(dir.join("h.csv")).unwrap();
    assert_eq!(csv.lines().next(), Some("epoch,accuracy,loss,val_accuracy,val_loss"));
    assert_eq!(csv.lines().count(), 7);
    let svg = std::fs::read_to_string(dir.join("h.svg")).unwrap();
    assert_eq!(svg.matches("<polyline").count(), 4);
    std::fs::remove_dir_all(&dir).unwrap();
}
