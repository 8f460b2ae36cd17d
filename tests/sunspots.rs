//! The sunspots example's forecaster (examples/sunspots/model.rs) on the shipped yearly series: its
//! windows are the series' own values, split chronologically by the year they forecast with the scale
//! fitted on the training years only, and a short training lowers the validation loss.

#[path = "../examples/sunspots/model.rs"]
mod model;

use model::*;
use modelc::datasets::{load_series, Series};
use modelc::ndarray::s;
use modelc::prelude::*;

fn sunspots() -> Series {
    load_series(concat!(env!("CARGO_MANIFEST_DIR"), "/data/series/sunspots.csv")).unwrap()
}

#[test]
fn the_windows_are_the_series_values_split_in_year_order() {
    let series = sunspots();
    let raw: Vec<f32> = series.values.iter().map(|v| v.unwrap()).collect();
    let Split { train, val, test, scale } = split(&series, 1920.0, 1960.0).unwrap();
    assert!(SunspotNet::SUMMARY.contains(&format!("(None, {STEPS}, 1)")), "the model's input is a window of STEPS years");
    assert_eq!((train.len(), val.len(), test.len()), (1920 - 1700 - STEPS, 40, 2008 - 1960 + 1));

    // Every part in year order, and each part entirely before the next.
    let years: Vec<f64> = [&train, &val, &test].iter().flat_map(|w| w.years.iter().copied()).collect();
    assert!(years.windows(2).all(|w| w[1] == w[0] + 1.0), "target years are consecutive across the split");
    assert_eq!((train.years[0], *train.years.last().unwrap()), (1700.0 + STEPS as f64, 1919.0));
    assert_eq!((val.years[0], *val.years.last().unwrap()), (1920.0, 1959.0));
    assert_eq!((test.years[0], *test.years.last().unwrap()), (1960.0, 2008.0));

    // The scale comes from the training years only: 1957's 190.2 lies above the training maximum.
    let train_raw = &raw[..1920 - 1700];
    assert_eq!(
        scale,
        Scale { min: train_raw.iter().copied().fold(f32::MAX, f32::min), max: train_raw.iter().copied().fold(f32::MIN, f32::max) }
    );
    assert!(val.targets.iter().any(|&v| v > 1.0));

    // Each window holds the STEPS scaled values before its target year, and the target is that year's.
    for part in [&train, &val, &test] {
        for (i, &year) in part.years.iter().enumerate() {
            let at = (year - 1700.0) as usize;
            assert_eq!(series.keys[at], year);
            let window: Vec<f32> = part.inputs.slice(s![i, .., 0]).to_vec();
            let expected: Vec<f32> = raw[at - STEPS..at].iter().map(|&v| scale.apply(v)).collect();
            assert_eq!(window, expected, "window of {year}");
            assert_eq!(part.targets[[i, 0]], scale.apply(raw[at]), "target of {year}");
            assert_eq!(part.naive()[[i, 0]], scale.apply(raw[at - 1]), "naive forecast of {year}");
        }
    }
    assert!((scale.invert(scale.apply(123.4)) - 123.4).abs() < 1e-3);

    // The errors are in sunspot numbers: the naive forecast's, computed from the raw test years.
    let diffs: Vec<f64> = (1960..=2008).map(|y| f64::from(raw[y - 1700] - raw[y - 1701])).collect();
    let rmse = (diffs.iter().map(|d| d * d).sum::<f64>() / diffs.len() as f64).sqrt();
    let mae = diffs.iter().map(|d| d.abs()).sum::<f64>() / diffs.len() as f64;
    let (naive_rmse, naive_mae) = rmse_mae(test.naive().view(), test.targets.view(), scale);
    assert!((naive_rmse - rmse).abs() < 1e-3 && (naive_mae - mae).abs() < 1e-3, "{naive_rmse} {naive_mae} vs {rmse} {mae}");
}

#[test]
fn a_short_training_lowers_the_validation_loss() {
    let Split { train, val, .. } = split(&sunspots(), 1920.0, 1960.0).unwrap();
    let mut model = SunspotNet::new(3);
    let mut trainer = model.compile(Adam::new(3e-3), SunspotNetLosses { next: Loss::MeanSquaredError }, &[]);
    let before = trainer.evaluate(&val.inputs(), &val.targets(), 64).unwrap()["loss"];
    let settings = Fit { epochs: 15, batch_size: 16, seed: 3, verbose: false, ..Fit::default() };
    let history = trainer.fit_with_validation_data(&train.inputs(), &train.targets(), (&val.inputs(), &val.targets()), &settings).unwrap();
    let after = history.last("val_loss").unwrap();
    assert!(after < 0.5 * before, "validation loss {before:.5} before training, {after:.5} after 15 epochs");
}
