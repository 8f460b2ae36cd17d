//! What Keras does with callbacks, as plain settings of [`Fit`](crate::train::Fit): learning-rate
//! schedules, early stopping with best-weight restore, and checkpoints of the best and the last weights.

use std::path::PathBuf;

use crate::error::{Error, Result};
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

/// Whether a monitored value improves by going down or up.
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
    fn resolve(self, monitor: &str) -> Direction {
        match self {
            Direction::Auto if ["acc", "auc", "precision", "recall"].iter().any(|k| monitor.contains(k)) => Direction::Max,
            Direction::Auto => Direction::Min,
            d => d,
        }
    }
}

/// Stops training when `monitor` has not improved by more than `min_delta` for `patience`
/// epochs, like `keras.callbacks.EarlyStopping`; with `restore_best_weights` the model ends
/// with the weights of its best epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    /// The log key watched (`val_loss` by default, as Keras).
    pub monitor: String,
    /// Epochs without improvement before stopping.
    pub patience: usize,
    /// Smallest change that counts as an improvement.
    pub min_delta: f64,
    /// Which way is better.
    pub direction: Direction,
    /// Put back the weights of the best epoch when training ends.
    pub restore_best_weights: bool,
}

impl Default for EarlyStopping {
    fn default() -> Self {
        EarlyStopping { monitor: "val_loss".into(), patience: 0, min_delta: 0.0, direction: Direction::Auto, restore_best_weights: false }
    }
}

/// Saves the weights after every epoch (`last`) and whenever `monitor` reaches a new best
/// (`best`), like `keras.callbacks.ModelCheckpoint`; each save is crash-safe.
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

/// Tracks the best value of one monitored log key.
#[derive(Debug)]
pub(crate) struct Monitor {
    key: String,
    direction: Direction,
    min_delta: f64,
    best: Option<f64>,
}

impl Monitor {
    pub(crate) fn new(key: &str, direction: Direction, min_delta: f64) -> Self {
        Monitor { key: key.to_string(), direction: direction.resolve(key), min_delta: min_delta.abs(), best: None }
    }

    /// Reads the monitored value from `logs`: true when it improves on the best so far.
    pub(crate) fn improved(&mut self, logs: &Logs) -> Result<bool> {
        let Some(&v) = logs.get(&self.key) else {
            let keys: Vec<&str> = logs.keys().map(String::as_str).collect();
            return Err(Error::config(
                "monitor",
                &self.key,
                format!("no such value is logged; the logs have {} (a `val_` key needs validation_split > 0)", keys.join(", ")),
            ));
        };
        let better = match (self.best, self.direction) {
            (None, _) => v.is_finite(),
            (Some(b), Direction::Max) => v > b + self.min_delta,
            (Some(b), _) => v < b - self.min_delta,
        };
        if better {
            self.best = Some(v);
        }
        Ok(better)
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
    fn monitors_pick_direction_from_the_name() {
        let logs = |v: f64, k: &str| -> Logs { [(k.to_string(), v)].into_iter().collect() };
        let mut m = Monitor::new("val_loss", Direction::Auto, 0.01);
        assert!(m.improved(&logs(1.0, "val_loss")).unwrap());
        assert!(!m.improved(&logs(0.995, "val_loss")).unwrap(), "within min_delta");
        assert!(m.improved(&logs(0.9, "val_loss")).unwrap());
        let mut m = Monitor::new("val_accuracy", Direction::Auto, 0.0);
        assert!(m.improved(&logs(0.5, "val_accuracy")).unwrap());
        assert!(!m.improved(&logs(0.4, "val_accuracy")).unwrap());
        assert!(m.improved(&logs(0.6, "val_accuracy")).unwrap());
    }

    #[test]
    fn a_missing_monitor_key_names_the_logged_keys() {
        let mut m = Monitor::new("val_loss", Direction::Auto, 0.0);
        let logs: Logs = [("loss".to_string(), 1.0)].into_iter().collect();
        let e = m.improved(&logs).unwrap_err().to_string();
        assert!(e.contains("val_loss") && e.contains("loss"), "{e}");
    }
}
