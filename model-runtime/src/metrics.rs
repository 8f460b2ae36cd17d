//! Metrics (Keras 3 semantics) and the streaming state that turns batches into epoch values, as
//! Keras' stateful metrics do: means over samples, ratios of counts, AUC from per-threshold counts.

use crate::error::{Error, Result};
use crate::loss::{Loss, LossKind};

/// A metric, by its Keras name. Set for every output by `compile`'s list, or per output by name
/// with `Trainer::with_metrics` (Keras' metrics dict); each is streamed over the batches of an
/// epoch ([`MetricTracker`]) as Keras' stateful metrics are:
///
/// | Keras | modelc |
/// |---|---|
/// | `"accuracy"` | `Metric::Accuracy` |
/// | `SparseCategoricalAccuracy()` | `Metric::SparseCategoricalAccuracy` (an output declared `as i32 target`) |
/// | `TopKCategoricalAccuracy(k=5)` | `Metric::TopKCategoricalAccuracy(5)` |
/// | `SparseTopKCategoricalAccuracy(k=5)` | `Metric::SparseTopKCategoricalAccuracy(5)` |
/// | `AUC()`, `AUC(curve="PR")` | `Metric::Auc(AucCurve::Roc)`, `Metric::Auc(AucCurve::Pr)` |
/// | `Precision()`, `Recall()` | `Metric::Precision`, `Metric::Recall` |
/// | `RootMeanSquaredError()` | `Metric::RootMeanSquaredError` |
/// | `MeanAbsolutePercentageError()` | `Metric::MeanAbsolutePercentageError` |
/// | `BinaryAccuracy()`, `CategoricalAccuracy()`, `MeanSquaredError()`, `MeanAbsoluteError()` | the variants of those names |
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    /// Keras' `"accuracy"` string: resolved per output by [`Metric::resolve`] to binary,
    /// categorical or sparse categorical accuracy; logged as `accuracy`.
    Accuracy,
    /// Fraction of elements with `(p > 0.5) == y`, averaged over the last axis.
    BinaryAccuracy,
    /// Whether `argmax(p) == argmax(y)` per sample.
    CategoricalAccuracy,
    /// `mean((y - p)^2)` over the last axis.
    MeanSquaredError,
    /// `mean(|y - p|)` over the last axis.
    MeanAbsoluteError,
    /// Whether `argmax(p)` is the integer class id (an output declared `as i32 target`).
    SparseCategoricalAccuracy,
    /// Whether the target class (`argmax(y)`) is among the `k` largest predictions (Keras'
    /// default `k` is 5): fewer than `k` classes score strictly higher than it.
    TopKCategoricalAccuracy(usize),
    /// [`TopKCategoricalAccuracy`](Self::TopKCategoricalAccuracy) against integer class ids.
    SparseTopKCategoricalAccuracy(usize),
    /// Area under the ROC or precision-recall curve, from counts at 200 thresholds (Keras'
    /// `AUC(num_thresholds=200, curve=..., summation_method="interpolation")`): every element
    /// is one binary prediction, positive when its target is non-zero.
    Auc(AucCurve),
    /// `tp / (tp + fp)` over every element, predicted positive when `p > 0.5`, actually positive
    /// when `y != 0` (Keras' `Precision()`).
    Precision,
    /// `tp / (tp + fn)` over every element, with [`Precision`](Self::Precision)'s rules.
    Recall,
    /// `sqrt(mean((y - p)^2))` over every element seen.
    RootMeanSquaredError,
    /// `100 mean(|(y - p) / max(|y|, eps)|)` over the last axis.
    MeanAbsolutePercentageError,
}

/// Which curve [`Metric::Auc`] integrates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AucCurve {
    /// True-positive rate against false-positive rate, by the trapezoid rule (Keras' default).
    Roc,
    /// Precision against recall, by Davis & Goadrich's interpolation.
    Pr,
}

/// The threshold of binary accuracy, precision and recall (Keras' default).
pub const BINARY_THRESHOLD: f32 = 0.5;

/// Keras' `AUC` default `num_thresholds`.
pub const AUC_THRESHOLDS: usize = 200;

impl Metric {
    /// The Keras name, used in `History` keys: `accuracy` stays `accuracy`, the others are the
    /// names of Keras' metric classes (`binary_accuracy`, `mean_squared_error`, `auc`, ...).
    pub fn keras_name(&self) -> &'static str {
        match self {
            Metric::Accuracy => "accuracy",
            Metric::BinaryAccuracy => "binary_accuracy",
            Metric::CategoricalAccuracy => "categorical_accuracy",
            Metric::MeanSquaredError => "mean_squared_error",
            Metric::MeanAbsoluteError => "mean_absolute_error",
            Metric::SparseCategoricalAccuracy => "sparse_categorical_accuracy",
            Metric::TopKCategoricalAccuracy(_) => "top_k_categorical_accuracy",
            Metric::SparseTopKCategoricalAccuracy(_) => "sparse_top_k_categorical_accuracy",
            Metric::Auc(_) => "auc",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::RootMeanSquaredError => "root_mean_squared_error",
            Metric::MeanAbsolutePercentageError => "mean_absolute_percentage_error",
        }
    }

    /// Whether this metric reads integer class ids (one per row) rather than dense targets.
    pub fn sparse(&self) -> bool {
        matches!(self, Metric::SparseCategoricalAccuracy | Metric::SparseTopKCategoricalAccuracy(_))
    }

    /// The metric actually computed for an output trained with `loss` whose last axis has
    /// `cols` elements. `Accuracy` becomes binary accuracy with binary cross-entropy, categorical
    /// accuracy with categorical cross-entropy and sparse categorical accuracy with its sparse
    /// form; with any other loss it follows Keras 3's shape rule (`compile_utils.get_metric`):
    /// binary when the last axis is 1, categorical otherwise. Every other metric is itself.
    pub fn resolve(&self, loss: Loss, cols: usize) -> Metric {
        match (self, loss.kind()) {
            (Metric::Accuracy, LossKind::BinaryCrossentropy) => Metric::BinaryAccuracy,
            (Metric::Accuracy, LossKind::CategoricalCrossentropy) => Metric::CategoricalAccuracy,
            (Metric::Accuracy, LossKind::SparseCategoricalCrossentropy) => Metric::SparseCategoricalAccuracy,
            (Metric::Accuracy, _) if cols == 1 => Metric::BinaryAccuracy,
            (Metric::Accuracy, _) => Metric::CategoricalAccuracy,
            (m, _) => *m,
        }
    }

    /// Checks that this (resolved) metric reads the kind of targets `output` has.
    pub fn check(&self, output: &str, sparse_target: bool) -> Result<()> {
        let name = self.keras_name();
        match (self.sparse(), sparse_target) {
            (true, false) => Err(Error::config(
                "metrics",
                name,
                format!("output `{output}` has dense targets; sparse metrics need integer class ids (`output {output} = ... as i32 target;`)"),
            )),
            (false, true) => Err(Error::config(
                "metrics",
                name,
                format!(
                    "output `{output}` has integer class ids (`as i32 target`); use SparseCategoricalAccuracy or SparseTopKCategoricalAccuracy"
                ),
            )),
            _ => Ok(()),
        }
    }

    /// The sum over rows of the per-row value of a mean metric over a `rows × cols` row-major
    /// batch (`target` one class id per row for the sparse metrics). Divide by `rows` for the
    /// batch mean; [`MetricTracker`] keeps the running sums. `Accuracy` is computed as
    /// [resolved](Self::resolve) without a loss (by shape). The metrics that are not means of
    /// per-row values (AUC, precision, recall, RMSE) give the sum of their per-row mean of
    /// squared errors / hits, used only by [`MetricTracker`].
    pub fn sum_over_rows(&self, pred: &[f32], target: &[f32], rows: usize, cols: usize) -> f64 {
        if cols == 0 {
            return 0.0;
        }
        let metric = self.resolve(Loss::MeanSquaredError, cols);
        let ylen = if metric.sparse() { 1 } else { cols };
        let mut total = 0.0f64;
        for (p, y) in pred.chunks_exact(cols).zip(target.chunks_exact(ylen)).take(rows) {
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
                Metric::SparseCategoricalAccuracy => f64::from(u8::from(argmax(p) as f32 == y[0])),
                Metric::TopKCategoricalAccuracy(k) => f64::from(u8::from(in_top_k(p, argmax(y), k))),
                Metric::SparseTopKCategoricalAccuracy(k) => f64::from(u8::from(class_id(y[0], cols).is_some_and(|t| in_top_k(p, t, k)))),
                Metric::MeanSquaredError | Metric::RootMeanSquaredError => {
                    p.iter().zip(y).map(|(&a, &b)| f64::from(a - b) * f64::from(a - b)).sum::<f64>() / cols as f64
                }
                Metric::MeanAbsoluteError => p.iter().zip(y).map(|(&a, &b)| f64::from((a - b).abs())).sum::<f64>() / cols as f64,
                Metric::MeanAbsolutePercentageError => {
                    let s: f64 = p.iter().zip(y).map(|(&a, &b)| f64::from(((b - a) / b.abs().max(crate::loss::EPSILON)).abs())).sum();
                    100.0 * s / cols as f64
                }
                Metric::Precision | Metric::Recall | Metric::Auc(_) => {
                    let (tp, pp, ap) = counts_at_half(p, y);
                    let den = if metric == Metric::Precision { pp } else { ap };
                    if den == 0.0 {
                        0.0
                    } else {
                        tp / den
                    }
                }
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

/// A class id stored as a float, when it is one of `0..cols`.
fn class_id(y: f32, cols: usize) -> Option<usize> {
    (y >= 0.0 && y.fract() == 0.0 && (y as usize) < cols).then_some(y as usize)
}

/// Keras' `in_top_k` (JAX backend): fewer than `k` predictions strictly above the target's
/// (a NaN target score counts as `-inf`).
fn in_top_k(p: &[f32], target: usize, k: usize) -> bool {
    let Some(&at) = p.get(target) else { return false };
    let at = if at.is_nan() { f32::NEG_INFINITY } else { at };
    p.iter().filter(|&&x| x > at).count() < k
}

/// `(true positives, predicted positives, actual positives)` of one row at threshold 0.5.
fn counts_at_half(p: &[f32], y: &[f32]) -> (f64, f64, f64) {
    let (mut tp, mut pp, mut ap) = (0.0, 0.0, 0.0);
    for (&pi, &yi) in p.iter().zip(y) {
        let (pos, real) = (pi > BINARY_THRESHOLD, yi != 0.0);
        tp += f64::from(u8::from(pos && real));
        pp += f64::from(u8::from(pos));
        ap += f64::from(u8::from(real));
    }
    (tp, pp, ap)
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

/// One metric's state over the batches of an epoch, like a Keras stateful metric: `update` per
/// batch, `result` at any time, `reset` at the start of an epoch. Mean metrics keep a sum and a
/// count of rows; RMSE a sum of squared errors and a count of elements; precision and recall
/// their counts; AUC the positive and negative labels per threshold bucket, in a buffer
/// allocated by [`new`](Self::new), so that updates allocate nothing.
#[derive(Clone, Debug, PartialEq)]
pub struct MetricTracker {
    metric: Metric,
    sum: f64,
    count: f64,
    /// AUC only: `[positives; AUC_THRESHOLDS]` then `[negatives; AUC_THRESHOLDS]` per bucket.
    buckets: Vec<f64>,
}

impl MetricTracker {
    /// Whether the metric reads a model output's mask, as Keras 3's do: the mean metrics
    /// (`MeanMetricWrapper`: accuracies, `mse`, `mae`, `mape`) take it as their sample weights (0 for a
    /// masked step); `RootMeanSquaredError` (whose squared errors lose the mask), `Precision`, `Recall`
    /// and `AUC` ignore it.
    pub fn reads_mask(&self) -> bool {
        !matches!(self.metric, Metric::RootMeanSquaredError | Metric::Precision | Metric::Recall | Metric::Auc(_))
    }

    /// A fresh state for `metric` (resolved: not `Accuracy`).
    pub fn new(metric: Metric) -> Self {
        let buckets = if matches!(metric, Metric::Auc(_)) { vec![0.0; 2 * AUC_THRESHOLDS] } else { Vec::new() };
        MetricTracker { metric, sum: 0.0, count: 0.0, buckets }
    }

    /// The metric tracked.
    pub fn metric(&self) -> Metric {
        self.metric
    }

    /// Adds one `rows × cols` batch (`target` one class id per row for the sparse metrics).
    pub fn update(&mut self, pred: &[f32], target: &[f32], rows: usize, cols: usize) {
        let n = rows * cols;
        match self.metric {
            Metric::RootMeanSquaredError => {
                self.sum += pred.iter().zip(target).take(n).map(|(&a, &b)| f64::from(a - b) * f64::from(a - b)).sum::<f64>();
                self.count += n as f64;
            }
            Metric::Precision | Metric::Recall => {
                let (tp, pp, ap) = counts_at_half(&pred[..n.min(pred.len())], target);
                self.sum += tp;
                self.count += if self.metric == Metric::Precision { pp } else { ap };
            }
            Metric::Auc(_) => {
                // Keras' bucketing: index ceil(clip(p, 0, 1) * (T - 1)) - 1, at least 0, in float32.
                let (pos, neg) = self.buckets.split_at_mut(AUC_THRESHOLDS);
                let top = (AUC_THRESHOLDS - 1) as f32;
                for (&p, &y) in pred.iter().zip(target).take(n) {
                    let b = ((p.clamp(0.0, 1.0) * top).ceil() - 1.0).max(0.0) as usize;
                    let b = b.min(AUC_THRESHOLDS - 1);
                    if y != 0.0 {
                        pos[b] += 1.0;
                    } else {
                        neg[b] += 1.0;
                    }
                }
            }
            m => {
                self.sum += m.sum_over_rows(pred, target, rows, cols);
                self.count += rows as f64;
            }
        }
    }

    /// [`update`](Self::update) with per-sample weights (Keras' `sample_weight`): `weights` holds one
    /// weight per sample, each sample being `rows / weights.len()` consecutive rows. As Keras' stateful
    /// metrics weight them: a mean metric adds `Σ w·value` and `Σ w` (weighted accuracy is
    /// `Σ w·correct / Σ w`); RMSE the weighted mean of each row's mean squared error; precision, recall
    /// and AUC count every element at its sample's weight. `None` (or an empty slice) is `update`.
    ///
    /// # Panics
    /// If `weights` is not empty and its length does not divide `rows` (a bug in the caller: the
    /// runtime checks the weights first).
    pub fn update_weighted(&mut self, pred: &[f32], target: &[f32], rows: usize, cols: usize, weights: Option<&[f32]>) {
        let Some(w) = weights.filter(|w| !w.is_empty()) else {
            return self.update(pred, target, rows, cols);
        };
        let per_sample = rows / w.len();
        assert_eq!(w.len() * per_sample, rows, "{rows} rows are not a whole number of weighted samples");
        if cols == 0 {
            return;
        }
        let ylen = if self.metric.resolve(Loss::MeanSquaredError, cols).sparse() { 1 } else { cols };
        for (r, (p, y)) in pred.chunks_exact(cols).zip(target.chunks_exact(ylen)).take(rows).enumerate() {
            let wr = f64::from(w[r / per_sample]);
            match self.metric {
                Metric::RootMeanSquaredError => {
                    self.sum += wr * p.iter().zip(y).map(|(&a, &b)| f64::from(a - b) * f64::from(a - b)).sum::<f64>() / cols as f64;
                    self.count += wr;
                }
                Metric::Precision | Metric::Recall => {
                    let (tp, pp, ap) = counts_at_half(p, y);
                    self.sum += wr * tp;
                    self.count += wr * if self.metric == Metric::Precision { pp } else { ap };
                }
                Metric::Auc(_) => {
                    let (pos, neg) = self.buckets.split_at_mut(AUC_THRESHOLDS);
                    let top = (AUC_THRESHOLDS - 1) as f32;
                    for (&p, &y) in p.iter().zip(y) {
                        let b = (((p.clamp(0.0, 1.0) * top).ceil() - 1.0).max(0.0) as usize).min(AUC_THRESHOLDS - 1);
                        if y != 0.0 {
                            pos[b] += wr;
                        } else {
                            neg[b] += wr;
                        }
                    }
                }
                m => {
                    self.sum += wr * m.sum_over_rows(p, y, 1, cols);
                    self.count += wr;
                }
            }
        }
    }

    /// The value over everything seen since the last reset (0 before any update, as Keras'
    /// `divide_no_nan`).
    pub fn result(&self) -> f64 {
        let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
        match self.metric {
            Metric::RootMeanSquaredError => ratio(self.sum, self.count).sqrt(),
            Metric::Auc(curve) => auc(curve, &self.buckets),
            _ => ratio(self.sum, self.count),
        }
    }

    /// Every number of the state (sums, counts, AUC buckets), in a fixed order: summing them
    /// element-wise over several trackers of the same metric merges what they saw (data-parallel
    /// training sums them over the processes).
    pub fn state_mut(&mut self) -> impl Iterator<Item = &mut f64> {
        [&mut self.sum, &mut self.count].into_iter().chain(self.buckets.iter_mut())
    }

    /// Forgets everything (start of an epoch), keeping the buffers.
    pub fn reset(&mut self) {
        self.sum = 0.0;
        self.count = 0.0;
        self.buckets.fill(0.0);
    }
}

/// Keras' `AUC.result()` from per-bucket label counts: the counts at threshold `i` are the sums
/// over buckets `>= i` (predictions strictly above the threshold).
fn auc(curve: AucCurve, buckets: &[f64]) -> f64 {
    let (pos, neg) = buckets.split_at(buckets.len() / 2);
    let (total_pos, total_neg): (f64, f64) = (pos.iter().sum(), neg.iter().sum());
    let ratio = |a: f64, b: f64| if b == 0.0 { 0.0 } else { a / b };
    // Walk thresholds from the top, keeping the counts at i + 1 while forming those at i.
    let (mut tp1, mut fp1) = (0.0f64, 0.0f64);
    let mut area = 0.0f64;
    for i in (0..pos.len()).rev() {
        let (tp, fp) = (tp1 + pos[i], fp1 + neg[i]);
        if i + 1 < pos.len() {
            area += match curve {
                // Trapezoids of recall over the false-positive rate.
                AucCurve::Roc => (ratio(fp, total_neg) - ratio(fp1, total_neg)) * (ratio(tp, total_pos) + ratio(tp1, total_pos)) / 2.0,
                // Davis & Goadrich: precision interpolated along the predicted positives P.
                AucCurve::Pr => {
                    let (p0, p1) = (tp + fp, tp1 + fp1);
                    let dtp = tp - tp1;
                    let slope = ratio(dtp, (p0 - p1).max(0.0));
                    let intercept = tp1 - slope * p1;
                    let safe = if p0 > 0.0 && p1 > 0.0 { ratio(p0, p1.max(0.0)) } else { 1.0 };
                    let fn1 = total_pos - tp1;
                    ratio(slope * (dtp + intercept * safe.ln()), (tp1 + fn1).max(0.0))
                }
            };
        }
        (tp1, fp1) = (tp, fp);
    }
    area
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
    fn sparse_and_top_k_accuracy() {
        let p = [0.1, 0.6, 0.3, 0.5, 0.2, 0.3, 0.2, 0.2, 0.6];
        // Sparse: argmax 1, 0, 2 against ids 1, 2, 2.
        assert_eq!(Metric::SparseCategoricalAccuracy.sum_over_rows(&p, &[1.0, 2.0, 2.0], 3, 3), 2.0);
        // Top-2 of row 1 is {0, 2}: id 2 is in; top-1 is not.
        assert_eq!(Metric::SparseTopKCategoricalAccuracy(2).sum_over_rows(&p, &[1.0, 2.0, 0.0], 3, 3), 3.0);
        assert_eq!(Metric::SparseTopKCategoricalAccuracy(1).sum_over_rows(&p, &[1.0, 2.0, 0.0], 3, 3), 1.0);
        // Ties share a rank (Keras' in_top_k counts strictly greater scores): row 3's 0.2s are both second.
        assert_eq!(Metric::SparseTopKCategoricalAccuracy(2).sum_over_rows(&p[6..], &[1.0], 1, 3), 1.0);
        let onehot = [0.0, 0.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0];
        assert_eq!(Metric::TopKCategoricalAccuracy(2).sum_over_rows(&p, &onehot, 3, 3), 3.0);
        assert_eq!(Metric::TopKCategoricalAccuracy(5).keras_name(), "top_k_categorical_accuracy");
        // An id outside the classes is never a hit.
        assert_eq!(Metric::SparseTopKCategoricalAccuracy(3).sum_over_rows(&p[..3], &[7.0], 1, 3), 0.0);
        assert_eq!(Metric::Accuracy.resolve(Loss::SparseCategoricalCrossentropy, 3), Metric::SparseCategoricalAccuracy);
    }

    #[test]
    fn precision_recall_rmse_mape_stream_over_batches() {
        let mut pr = MetricTracker::new(Metric::Precision);
        let mut re = MetricTracker::new(Metric::Recall);
        let mut rmse = MetricTracker::new(Metric::RootMeanSquaredError);
        // Batch 1: tp 1 (0.9/1), fp 1 (0.7/0), fn 1 (0.2/1); batch 2: tp 1, fn 0, threshold strict.
        for (p, y) in [(&[0.9f32, 0.7, 0.2, 0.1][..], &[1.0f32, 0.0, 1.0, 0.0][..]), (&[0.8, 0.5][..], &[1.0, 0.0][..])] {
            pr.update(p, y, p.len(), 1);
            re.update(p, y, p.len(), 1);
            rmse.update(p, y, p.len() / 2, 2);
        }
        assert_eq!(pr.result(), 2.0 / 3.0);
        assert_eq!(re.result(), 2.0 / 3.0);
        let sq: f64 = [0.1f32, 0.7, 0.8, 0.1, 0.2, 0.5].iter().map(|&d| f64::from(d) * f64::from(d)).sum();
        assert!((rmse.result() - (sq / 6.0).sqrt()).abs() < 1e-7);
        pr.reset();
        assert_eq!(pr.result(), 0.0);
        // MAPE: Keras docs, [[0, 1], [0, 0]] vs [[1, 1], [1, 0]] = 5e8 per row 1 of 2 -> mean 5e8.
        let mape = Metric::MeanAbsolutePercentageError.sum_over_rows(&[1.0, 1.0, 1.0, 0.0], &[0.0, 1.0, 0.0, 0.0], 2, 2) / 2.0;
        assert!((mape / 5e8 - 1.0).abs() < 1e-6, "{mape}");
    }

    #[test]
    fn auc_matches_hand_computed_curves() {
        // Perfect separation: ROC and PR areas are 1.
        let mut roc = MetricTracker::new(Metric::Auc(AucCurve::Roc));
        let mut pr = MetricTracker::new(Metric::Auc(AucCurve::Pr));
        let (p, y) = ([0.1f32, 0.2, 0.8, 0.9], [0.0f32, 0.0, 1.0, 1.0]);
        roc.update(&p, &y, 4, 1);
        pr.update(&p, &y, 4, 1);
        assert!((roc.result() - 1.0).abs() < 1e-12, "{}", roc.result());
        assert!((pr.result() - 1.0).abs() < 1e-12, "{}", pr.result());
        // Keras docs: AUC()([0, 0, 1, 1], [0, 0.5, 0.3, 0.9]) = 0.75 (with 3 thresholds; 200 give 0.75 too).
        roc.reset();
        roc.update(&[0.0, 0.5, 0.3, 0.9], &[0.0, 0.0, 1.0, 1.0], 4, 1);
        assert!((roc.result() - 0.75).abs() < 1e-12, "{}", roc.result());
        // No positives at all: 0 (divide_no_nan), and no allocation on update (buffer preallocated).
        roc.reset();
        let cap = roc.buckets.capacity();
        roc.update(&[0.3], &[0.0], 1, 1);
        assert_eq!(roc.result(), 0.0);
        assert_eq!(roc.buckets.capacity(), cap);
    }

    #[test]
    fn metric_checks_target_kinds() {
        assert!(Metric::SparseCategoricalAccuracy.check("y", true).is_ok());
        assert!(Metric::SparseCategoricalAccuracy.check("y", false).is_err());
        assert!(Metric::Auc(AucCurve::Pr).check("y", true).unwrap_err().to_string().contains("SparseTopKCategoricalAccuracy"));
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

    #[test]
    fn weighted_updates_weigh_each_sample_as_keras_weighted_metrics() {
        // Three samples of one row, weights 1, 3, 0: weighted accuracy Σ w·correct / Σ w.
        let pred = [0.9f32, 0.1, 0.2, 0.8, 0.6, 0.4];
        let target = [1.0f32, 0.0, 1.0, 0.0, 0.0, 1.0];
        let w = [1.0f32, 3.0, 0.0];
        let mut acc = MetricTracker::new(Metric::CategoricalAccuracy);
        acc.update_weighted(&pred, &target, 3, 2, Some(&w));
        assert_eq!(acc.result(), 0.25);
        // Precision counts each element at its sample's weight: tp 1 (w 1), fp 3 (w 3) + 1 (w 0) at 0.5.
        let mut p = MetricTracker::new(Metric::Precision);
        p.update_weighted(&pred, &target, 3, 2, Some(&w));
        assert_eq!(p.result(), 0.25);
        // Unit weights are the unweighted update.
        for m in [Metric::MeanSquaredError, Metric::RootMeanSquaredError, Metric::Recall, Metric::Auc(AucCurve::Pr)] {
            let (mut a, mut b) = (MetricTracker::new(m), MetricTracker::new(m));
            a.update(&pred, &target, 3, 2);
            b.update_weighted(&pred, &target, 3, 2, Some(&[1.0; 3]));
            assert!((a.result() - b.result()).abs() < 1e-12, "{m:?}");
        }
    }
}
