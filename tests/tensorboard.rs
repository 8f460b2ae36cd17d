//! The TensorBoard callback's event files, read back by TensorBoard's own reader
//! (`scripts/tensorboard_scalars.py`, with `MODELC_CI_PYTHON`; `.ci/run` sets it).

use std::path::Path;
use std::process::Command;

use modelc::init::Rng;
use modelc::ndarray::Array2;
use modelc::prelude::*;

model! {
    struct Small {
        input x: [3];
        let h = Dense(8, activation = tanh)(x);
        output y = Dense(1, activation = sigmoid)(h);
    }
}

fn train(log_dir: &Path, board: TensorBoard) -> History {
    let mut rng = Rng::new(5);
    let x = Array2::from_shape_fn((128, 3), |_| rng.uniform(-1.0, 1.0));
    let y = Array2::from_shape_fn((128, 1), |(i, _)| f32::from(u8::from(x[[i, 0]] > 0.0)));
    let mut model = Small::new(1);
    let mut trainer = model.compile(Adam::new(1e-2), SmallLosses { y: Loss::BinaryCrossentropy }, &[Metric::Accuracy]);
    let settings = Fit { epochs: 3, batch_size: 32, verbose: false, validation_split: 0.25, ..Fit::default() };
    let mut board = board;
    let history =
        trainer.fit_with_callbacks(&SmallInputs { x: x.view() }, &SmallTargets { y: y.view() }, None, &settings, &mut [&mut board]);
    assert_eq!(board.log_dir, log_dir);
    history.unwrap()
}

fn event_files(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.to_string_lossy().contains("tfevents")).collect()
}

#[test]
fn tensorboard_event_files_open_in_tensorboard() {
    let dir = std::env::temp_dir().join(format!("modelc-tb-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let history = train(&dir, TensorBoard::new(&dir).every_batches(1));
    assert_eq!(event_files(&dir.join("train")).len(), 1);
    assert_eq!(event_files(&dir.join("validation")).len(), 1);

    let Ok(python) = std::env::var("MODELC_CI_PYTHON") else {
        eprintln!("MODELC_CI_PYTHON is unset: the event files are not read back with TensorBoard (.ci/run sets it)");
        return;
    };
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/tensorboard_scalars.py");
    let out = Command::new(python).arg(script).arg(&dir).args(["train", "validation"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let runs: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let series = |run: &str, tag: &str| -> Vec<(i64, f64)> {
        let points = runs[run][tag].as_array().unwrap_or_else(|| panic!("no {run}/{tag} in {runs}"));
        points.iter().map(|p| (p[0].as_i64().unwrap(), p[1].as_f64().unwrap())).collect()
    };
    for (run, prefix) in [("train", ""), ("validation", "val_")] {
        for key in ["loss", "accuracy"] {
            let got = series(run, &format!("epoch_{key}"));
            let want = history.get(&format!("{prefix}{key}")).unwrap();
            assert_eq!(got.iter().map(|p| p.0).collect::<Vec<_>>(), [0, 1, 2]);
            for ((_, g), w) in got.iter().zip(want) {
                assert_eq!(*g, f64::from(*w as f32), "{run} {key}");
            }
        }
    }
    assert_eq!(series("train", "epoch_learning_rate").iter().map(|p| p.1).collect::<Vec<_>>(), [f64::from(1e-2f32); 3]);
    // 96 training rows in batches of 32: the global batch numbers 1..=9.
    assert_eq!(series("train", "batch_loss").iter().map(|p| p.0).collect::<Vec<_>>(), (1..=9).collect::<Vec<_>>());
    std::fs::remove_dir_all(&dir).unwrap();
}
