//! Metrics (Keras 3 semantics) and the streaming accumulator that turns batches into epoch means.

use crate::loss::Loss;

/// A metric, by its Keras name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Keras' `"accuracy"` string: resolved per output by [`Metric::resolve`] to binary or
    /// categorical accuracy; logged as `accuracy`.
    Accuracy,
    /// Fraction of elements with `(p > 0.5) == y`, averaged over the last axis.
    BinaryAccuracy,
    /// Whether `argmax(p) == argmax(y)` per sample.
    CategoricalAccuracy,
    /// `mean((y - p)^2)` over the last axis.
    MeanSquaredError,
    /// `mean(|y - p|)` over the last axis.
    MeanAbsoluteError,
}

/// The threshold of binary accuracy (Keras' default).
pub const BINARY_THRESHOLD: f32 = 0.5;

impl Metric {
    /// The Keras name, used in `History` keys: `accuracy` stays `accuracy`, the others are the
    /// names of Keras' metric classes (`binary_accuracy`, `mean_squared_error`, ...).
    pub fn keras_name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::MeanSquaredError => "mean_squared_error",
            Metric::MeanAbsoluteError => "mean_absolute_error",
        }
    }

    /// The metric actually computed for an output trained with `loss` whose last axis has
    /// `cols` elements. `Accuracy` becomes binary accuracy with binary cross-entropy and
    /// categorical accuracy with categorical cross-entropy; with any other loss it follows
    /// Keras 3's shape rule (`compile_utils.get_metric`): binary when the last axis is 1,
    /// categorical otherwise. Every other metric is itself.
    pub fn resolve(&self, loss: Loss, cols: usize) -> Metric {
        match (self, loss) {
            (Metric::Accuracy, Loss::BinaryCrossentropy) => Metric::BinaryAccuracy,
            (Metric::Accuracy, Loss::CategoricalCrossentropy) => Metric::CategoricalAccuracy,
            (Metric::Accuracy, _) if cols == 1 => Metric::BinaryAccuracy,
            (Metric::Accuracy, _) => Metric::CategoricalAccuracy,
            (m, _) => *m,
        }
    }

    /// The sum over rows of the per-row metric value of a `rows × cols` row-major batch.
    /// Divide by `rows` for the batch mean; [`MetricState`] keeps the running sum instead.
    /// `Accuracy` is computed as [resolved](Self::resolve) without a loss (by shape).
    pub fn sum_over_rows(&self, pred: &[f32], target: &[f32], rows: usize, cols: usize) -> f64 {
        if cols == 0 {
            return 0.0;
        }
        let metric = self.resolve(Loss::MeanSquaredError, cols);
        let mut total = 0.0f64;
        for (p, y) in pred.chunks_exact(cols).zip(target.chunks_exact(cols)).take(rows) {
            total += match metric {
                Metric::BinaryAccuracy => {
                    let hits = p
                        .iter()
                        .zip(y)
                        .filter(|&(&pi, &yi)| {
                            let label = if pi > BINARY_THRESHOLD { 1.0 } else { 0.0 };
                            label == yi
                        })
                        .count();
                    hits as f64 / cols as f64
                }
                // `resolve` never returns `Accuracy`; it shares the categorical arm.
                Metric::CategoricalAccuracy | Metric::Accuracy => f64::from(u8::from(argmax(p) == argmax(y))),
                Metric::MeanSquaredError => p.iter().zip(y).map(|(&a, &b)| f64::from(a - b) * f64::from(a - b)).sum::<f64>() / cols as f64,
                Metric::MeanAbsoluteError => p.iter().zip(y).map(|(&a, &b)| f64::from((a - b).abs())).sum::<f64>() / cols as f64,
            };
        }
        total
    }
}

/// Index of the first maximum (like `ops.argmax`); NaN never wins.
fn argmax(v: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in v.iter().enumerate() {
        if x > v[best] {
            best = i;
        }
    }
    best
}

/// A running mean: the sum of per-row values and the number of rows seen, so that an epoch's
/// value is the exact mean over its samples whatever the batch sizes (Keras' `Mean` metric).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct MetricState {
    /// Sum of the values seen.
    pub sum: f64,
    /// Number of values (rows) seen.
    pub count: f64,
}

impl MetricState {
    /// Adds `sum` over `count` rows.
    pub fn add(&mut self, sum: f64, count: usize) {
        self.sum += sum;
        self.count += count as f64;
    }

    /// Adds one batch mean weighted by its number of rows.
    pub fn add_mean(&mut self, mean: f64, count: usize) {
        self.add(mean * count as f64, count);
    }

    /// The mean so far (0 before any update, as Keras).
    pub fn result(&self) -> f64 {
        if self.count == 0.0 {
            0.0
        } else {
            self.sum / self.count
        }
    }

    /// Forgets everything (start of an epoch).
    pub fn reset(&mut self) {
        *self = MetricState::default();
    }
}

/// Counts of (true class, predicted class) pairs: `counts[t][p]`, as scikit-learn's `confusion_matrix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfusionMatrix {
    /// Row = true class, column = predicted class.
    pub counts: Vec<Vec<usize>>,
}

impl ConfusionMatrix {
    /// Tallies `probs` (`rows × classes` scores, argmax = prediction) against the true class of each row.
    /// Rows beyond `labels` and labels outside `0..classes` are ignored.
    pub fn from_scores(probs: ndarray::ArrayView2<'_, f32>, labels: &[u8]) -> Self {
        let classes = probs.ncols();
        let mut counts = vec![vec![0; classes]; classes];
        for (row, &label) in probs.rows().into_iter().zip(labels) {
            let predicted = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (k, &v)| if v > best.1 { (k, v) } else { best }).0;
            if let Some(cell) = counts.get_mut(usize::from(label)).and_then(|r| r.get_mut(predicted)) {
                *cell += 1;
            }
        }
        ConfusionMatrix { counts }
    }

    /// Fraction of rows on the diagonal.
    pub fn accuracy(&self) -> f64 {
        let total: usize = self.counts.iter().flatten().sum();
        let right: usize = self.counts.iter().enumerate().filter_map(|(i, r)| r.get(i)).sum();
        if total == 0 {
            0.0
        } else {
            right as f64 / total as f64
        }
    }
}

impl std::fmt::Display for ConfusionMatrix {
    /// A table with true classes down and predicted classes across.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let width = self.counts.iter().flatten().max().map_or(1, |m| m.to_string().len()).max(2);
        write!(f, "{:>8} ", "true\\pred")?;
        for p in 0..self.counts.len() {
            write!(f, " {p:>width$}")?;
        }
        writeln!(f)?;
        for (t, row) in self.counts.iter().enumerate() {
            write!(f, "{t:>9} ")?;
            for c in row {
                write!(f, " {c:>width$}")?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accuracy_resolves_like_keras() {
        assert_eq!(Metric::Accuracy.resolve(Loss::BinaryCrossentropy, 1), Metric::BinaryAccuracy);
        assert_eq!(Metric::Accuracy.resolve(Loss::BinaryCrossentropy, 3), Metric::BinaryAccuracy);
        assert_eq!(Metric::Accuracy.resolve(Loss::CategoricalCrossentropy, 3), Metric::CategoricalAccuracy);
        assert_eq!(Metric::Accuracy.resolve(Loss::MeanSquaredError, 1), Metric::BinaryAccuracy);
        assert_eq!(Metric::Accuracy.resolve(Loss::MeanSquaredError, 4), Metric::CategoricalAccuracy);
        assert_eq!(Metric::MeanAbsoluteError.resolve(Loss::BinaryCrossentropy, 1), Metric::MeanAbsoluteError);
        assert_eq!(Metric::Accuracy.keras_name(), "accuracy");
        assert_eq!(Metric::MeanSquaredError.keras_name(), "mean_squared_error");
    }

    #[test]
    fn binary_accuracy_uses_strict_threshold() {
        // Keras: y_pred > 0.5 -> 1. Docs example [[1],[1],[0],[0]] vs [[0.98],[1],[0],[0.6]] = 0.75.
        let y = [1.0, 1.0, 0.0, 0.0];
        let p = [0.98, 1.0, 0.0, 0.6];
        assert_eq!(Metric::BinaryAccuracy.sum_over_rows(&p, &y, 4, 1) / 4.0, 0.75);
        assert_eq!(Metric::BinaryAccuracy.sum_over_rows(&[0.5], &[1.0], 1, 1), 0.0);
        // Multi-label: mean over the last axis per row.
        assert_eq!(Metric::BinaryAccuracy.sum_over_rows(&[0.9, 0.9], &[1.0, 0.0], 1, 2), 0.5);
    }

    #[test]
    fn categorical_accuracy_and_errors() {
        // Keras docs: [[0,0,1],[0,1,0]] vs [[0.1,0.9,0.8],[0.05,0.95,0]] = 0.5.
        let y = [0.0, 0.0, 1.0, 0.0, 1.0, 0.0];
        let p = [0.1, 0.9, 0.8, 0.05, 0.95, 0.0];
        assert_eq!(Metric::CategoricalAccuracy.sum_over_rows(&p, &y, 2, 3) / 2.0, 0.5);
        assert_eq!(Metric::Accuracy.sum_over_rows(&p, &y, 2, 3) / 2.0, 0.5);
        let mse = Metric::MeanSquaredError.sum_over_rows(&[1.0, 1.0], &[0.0, 3.0], 1, 2);
        assert_eq!(mse, 2.5);
        let mae = Metric::MeanAbsoluteError.sum_over_rows(&[1.0, 1.0], &[0.0, 3.0], 1, 2);
        assert_eq!(mae, 1.5);
    }

    #[test]
    fn confusion_matrix_counts_true_against_predicted() {
        let probs = ndarray::arr2(&[[0.9f32, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1], [0.0, 0.3, 0.7]]);
        let cm = ConfusionMatrix::from_scores(probs.view(), &[0, 1, 2, 2]);
        assert_eq!(cm.counts, vec![vec![1, 0, 0], vec![0, 1, 0], vec![0, 1, 1]]);
        assert_eq!(cm.accuracy(), 0.75);
        let text = cm.to_string();
        assert_eq!(text.lines().count(), 4, "{text}");
        assert!(text.lines().nth(3).unwrap().trim_start().starts_with('2'), "{text}");
    }

    #[test]
    fn state_is_an_exact_mean_over_samples() {
        let mut s = MetricState::default();
        assert_eq!(s.result(), 0.0);
        s.add_mean(1.0, 3);
        s.add_mean(0.0, 1);
        assert_eq!(s.result(), 0.75);
        s.reset();
        assert_eq!(s.count, 0.0);
    }
}
