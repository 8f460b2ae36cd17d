//! The model and helpers of the sunspots example, also used by tests/sunspots.rs (through `#[path]`), so
//! CI trains exactly the model the example trains and checks the same windows and split.

use modelc::datasets::{sliding_windows, Series};
use modelc::ndarray::{Array2, Array3, ArrayView2, Axis};
use modelc::prelude::*;

/// Years of history in each input window (about two solar cycles of ~11 years).
pub const STEPS: usize = 24;

model! {
    /// The last `STEPS` yearly sunspot numbers (scaled) in, next year's (scaled) out.
    pub struct SunspotNet {
        input past: [24, 1];                          // STEPS years, one value each
        let h = LSTM(32)(past);                       // (32,)
        output next = Dense(1)(h);                    // (1,)
    }
}

/// Min-max scaling fitted on the training years only: `(v - min) / (max - min)`, so the training values
/// lie in [0, 1] and later years may fall a little outside.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Scale {
    /// Smallest training value.
    pub min: f32,
    /// Largest training value.
    pub max: f32,
}

impl Scale {
    /// The scaling of `values` (at least one, not all equal for a useful scale).
    pub fn fit(values: &[f32]) -> Scale {
        let min = values.iter().copied().fold(f32::INFINITY, f32::min);
        let max = values.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        Scale { min, max }
    }

    /// `v` scaled.
    pub fn apply(&self, v: f32) -> f32 {
        (v - self.min) / (self.max - self.min).max(f32::EPSILON)
    }

    /// A scaled value back in the original units.
    pub fn invert(&self, s: f32) -> f32 {
        s * (self.max - self.min).max(f32::EPSILON) + self.min
    }
}

/// Windows of one part of the split: scaled inputs `[n, STEPS, 1]`, scaled targets `[n, 1]`, and the
/// year of each target.
#[derive(Clone, Debug)]
pub struct Windows {
    /// The `STEPS` scaled values before each target.
    pub inputs: Array3<f32>,
    /// The scaled value to forecast.
    pub targets: Array2<f32>,
    /// The year of each target.
    pub years: Vec<f64>,
}

impl Windows {
    /// Number of windows.
    pub fn len(&self) -> usize {
        self.years.len()
    }

    /// True when there is no window.
    pub fn is_empty(&self) -> bool {
        self.years.is_empty()
    }

    /// The windows as the model's inputs.
    pub fn inputs(&self) -> SunspotNetInputs<'_> {
        SunspotNetInputs { past: self.inputs.view() }
    }

    /// The targets as the model's targets.
    pub fn targets(&self) -> SunspotNetTargets<'_> {
        SunspotNetTargets { next: self.targets.view() }
    }

    /// The naive forecast of each target, scaled: the window's last value ("next year as this year").
    pub fn naive(&self) -> Array2<f32> {
        self.inputs.index_axis(Axis(1), STEPS - 1).to_owned()
    }

    /// The windows `rows` (a range of indices).
    fn rows(&self, rows: std::ops::Range<usize>) -> Windows {
        Windows {
            inputs: self.inputs.slice(modelc::ndarray::s![rows.clone(), .., ..]).to_owned(),
            targets: self.targets.slice(modelc::ndarray::s![rows.clone(), ..]).to_owned(),
            years: self.years[rows].to_vec(),
        }
    }
}

/// The chronological split: windows whose target year is before `val_from` train, those before
/// `test_from` validate, the rest test. No window is shuffled across a boundary, and the scale is
/// fitted on the values of the years before `val_from` only (all that the training windows see).
#[derive(Clone, Debug)]
pub struct Split {
    /// Training windows, in year order.
    pub train: Windows,
    /// Validation windows, in year order.
    pub val: Windows,
    /// Test windows, in year order.
    pub test: Windows,
    /// The scaling, fitted on the training years.
    pub scale: Scale,
}

/// Splits the yearly `series` (keys are years, no missing value) into windows of `STEPS` years, by
/// target year: `[.., val_from)` train, `[val_from, test_from)` validate, `[test_from, ..]` test.
///
/// # Errors
/// A message when a value is missing, the years are not increasing, or a part is empty.
pub fn split(series: &Series, val_from: f64, test_from: f64) -> Result<Split, String> {
    let values: Vec<f32> = series
        .values
        .iter()
        .enumerate()
        .map(|(i, v)| v.ok_or_else(|| format!("the value of row {} is missing", i + 1)))
        .collect::<Result<_, _>>()?;
    if series.keys.windows(2).any(|w| w[1] <= w[0]) {
        return Err("the years are not in increasing order".into());
    }
    let train_years = series.keys.iter().take_while(|&&y| y < val_from).count();
    let scale = Scale::fit(&values[..train_years]);
    let scaled: Vec<f32> = values.iter().map(|&v| scale.apply(v)).collect();
    let (inputs, targets) = sliding_windows(&scaled, STEPS, 1);
    let all = Windows { inputs, targets, years: series.keys[STEPS..].to_vec() };
    let first = |from: f64| all.years.iter().take_while(|&&y| y < from).count();
    let (v, t) = (first(val_from), first(test_from));
    let split = Split { train: all.rows(0..v), val: all.rows(v..t), test: all.rows(t..all.len()), scale };
    if split.train.is_empty() || split.val.is_empty() || split.test.is_empty() {
        return Err(format!(
            "a part is empty: {} training, {} validation, {} test windows",
            split.train.len(),
            split.val.len(),
            split.test.len()
        ));
    }
    Ok(split)
}

/// Root mean squared error and mean absolute error of `forecast` against `actual`, both scaled, in the
/// original units.
pub fn rmse_mae(forecast: ArrayView2<'_, f32>, actual: ArrayView2<'_, f32>, scale: Scale) -> (f64, f64) {
    let n = actual.len().max(1) as f64;
    let errors: Vec<f64> = forecast.iter().zip(actual.iter()).map(|(&f, &a)| f64::from(scale.invert(f) - scale.invert(a))).collect();
    let rmse = (errors.iter().map(|e| e * e).sum::<f64>() / n).sqrt();
    let mae = errors.iter().map(|e| e.abs()).sum::<f64>() / n;
    (rmse, mae)
}
