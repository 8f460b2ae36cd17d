//! Losses (Keras 3 semantics): predictions and targets in, mean loss and its gradient out.
//!
//! Every loss reduces each sample over the last axis (mean for the element-wise losses: MSE, MAE,
//! binary cross-entropy, Huber, log-cosh, Poisson; sum for the distribution losses: the categorical
//! cross-entropies, KL divergence, cosine similarity), then averages over the rows of the batch:
//! Keras' `"sum_over_batch_size"` reduction. Outputs of rank > 1 per sample are flattened to
//! `rows = batch * prod(shape[..-1])`, `cols = shape[-1]`, which is the same thing.
//!
//! Gradients are those Keras' JAX backend takes of the same formulas, clips included: where Keras
//! clips a probability to `[1e-7, 1 − 1e-7]` the gradient through it is zero (one half exactly on a
//! bound, as `jnp.clip` differentiates).

use crate::error::{Error, Result};
use crate::kernels::activation::Activation;
use crate::model::{gather_f32, Rows};
use crate::network::{Input, InputView};

/// Keras' `backend.epsilon()`, used to clip probabilities in the cross-entropies.
pub const EPSILON: f32 = 1e-7;

/// What a [`Loss`] computes, by its Keras class name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossKind {
    /// `mean((y - p)^2)` over the last axis.
    MeanSquaredError,
    /// `mean(|y - p|)` over the last axis.
    MeanAbsoluteError,
    /// `mean(-(y ln p + (1 - y) ln(1 - p)))` over the last axis, `p` clipped to `[eps, 1 - eps]`.
    BinaryCrossentropy,
    /// `-sum(y ln p)` over the last axis, `p` renormalized to sum 1 then clipped to `[eps, 1 - eps]`.
    CategoricalCrossentropy,
    /// [`CategoricalCrossentropy`](Self::CategoricalCrossentropy) of the one-hot encoding of an
    /// integer class id per row (an output declared `as i32 target`).
    SparseCategoricalCrossentropy,
    /// `mean(0.5 e^2 if |e| <= delta else delta (|e| - 0.5 delta))` over the last axis, `e = p - y`.
    Huber,
    /// `mean(ln cosh(p - y))` over the last axis.
    LogCosh,
    /// `sum(y ln(y / p))` over the last axis, `y` and `p` clipped to `[eps, 1]`.
    KLDivergence,
    /// `-sum(l2_normalize(y) * l2_normalize(p))` over the last axis (minus the cosine similarity,
    /// so that minimizing it aligns `p` with `y`); norms below `eps` count as `eps`.
    CosineSimilarity,
    /// `mean(p - y ln(p + eps))` over the last axis.
    Poisson,
}

/// A loss function with its options, named and configured as in Keras 3:
///
/// | Keras | modelc |
/// |---|---|
/// | `"mse"`, `MeanSquaredError()` | `Loss::MeanSquaredError` |
/// | `"mae"`, `MeanAbsoluteError()` | `Loss::MeanAbsoluteError` |
/// | `BinaryCrossentropy(from_logits=True, label_smoothing=0.1)` | `Loss::BinaryCrossentropy.from_logits(true).label_smoothing(0.1)` |
/// | `CategoricalCrossentropy(from_logits=True, label_smoothing=0.1)` | `Loss::CategoricalCrossentropy.from_logits(true).label_smoothing(0.1)` |
/// | `SparseCategoricalCrossentropy(from_logits=True)` | `Loss::SparseCategoricalCrossentropy.from_logits(true)` (the output declared `as i32 target`) |
/// | `Huber(delta=2.0)` | `Loss::Huber.delta(2.0)` |
/// | `LogCosh()`, `KLDivergence()`, `CosineSimilarity()`, `Poisson()` | `Loss::LogCosh`, `Loss::KLDivergence`, `Loss::CosineSimilarity`, `Loss::Poisson` |
///
/// An option the loss does not have in Keras (`from_logits` on MSE, say) is reported as an
/// [`Error::Config`] by the first `fit`, `evaluate` or `train_step`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Loss {
    kind: LossKind,
    from_logits: bool,
    label_smoothing: f32,
    delta: f32,
}

#[allow(non_upper_case_globals)] // Keras' class names, so that `Loss::BinaryCrossentropy` reads as in Keras
impl Loss {
    /// Keras' `MeanSquaredError()`.
    pub const MeanSquaredError: Loss = Loss::of(LossKind::MeanSquaredError);
    /// Keras' `MeanAbsoluteError()`.
    pub const MeanAbsoluteError: Loss = Loss::of(LossKind::MeanAbsoluteError);
    /// Keras' `BinaryCrossentropy()`: probabilities, no label smoothing.
    pub const BinaryCrossentropy: Loss = Loss::of(LossKind::BinaryCrossentropy);
    /// Keras' `CategoricalCrossentropy()`: probabilities, no label smoothing.
    pub const CategoricalCrossentropy: Loss = Loss::of(LossKind::CategoricalCrossentropy);
    /// Keras' `SparseCategoricalCrossentropy()`: probabilities against integer class ids.
    pub const SparseCategoricalCrossentropy: Loss = Loss::of(LossKind::SparseCategoricalCrossentropy);
    /// Keras' `Huber()`: `delta` 1.0.
    pub const Huber: Loss = Loss::of(LossKind::Huber);
    /// Keras' `LogCosh()`.
    pub const LogCosh: Loss = Loss::of(LossKind::LogCosh);
    /// Keras' `KLDivergence()`.
    pub const KLDivergence: Loss = Loss::of(LossKind::KLDivergence);
    /// Keras' `CosineSimilarity()` (axis -1).
    pub const CosineSimilarity: Loss = Loss::of(LossKind::CosineSimilarity);
    /// Keras' `Poisson()`.
    pub const Poisson: Loss = Loss::of(LossKind::Poisson);
}

impl Loss {
    const fn of(kind: LossKind) -> Loss {
        Loss { kind, from_logits: false, label_smoothing: 0.0, delta: 1.0 }
    }

    /// Keras' `from_logits`: the predictions are logits, not probabilities (the cross-entropies
    /// only). The output then has no sigmoid or softmax of its own.
    #[must_use]
    pub const fn from_logits(mut self, from_logits: bool) -> Loss {
        self.from_logits = from_logits;
        self
    }

    /// Keras' `label_smoothing` in `[0, 1]` (binary and categorical cross-entropy): targets become
    /// `y (1 - s) + s / 2` (binary) or `y (1 - s) + s / classes` (categorical).
    #[must_use]
    pub const fn label_smoothing(mut self, label_smoothing: f32) -> Loss {
        self.label_smoothing = label_smoothing;
        self
    }

    /// Keras' `delta` of [`Loss::Huber`]: where the loss turns from quadratic to linear.
    #[must_use]
    pub const fn delta(mut self, delta: f32) -> Loss {
        self.delta = delta;
        self
    }

    /// What this loss computes.
    pub fn kind(&self) -> LossKind {
        self.kind
    }

    /// Whether the predictions are logits (`from_logits`).
    pub fn takes_logits(&self) -> bool {
        self.from_logits
    }

    /// The label smoothing factor (0 when none).
    pub fn smoothing(&self) -> f32 {
        self.label_smoothing
    }

    /// Huber's `delta`.
    pub fn huber_delta(&self) -> f32 {
        self.delta
    }

    /// The Keras name (`"mean_squared_error"`, `"binary_crossentropy"`, ...).
    pub fn keras_name(&self) -> &'static str {
        match self.kind {
            LossKind::MeanSquaredError => "mean_squared_error",
            LossKind::MeanAbsoluteError => "mean_absolute_error",
            LossKind::BinaryCrossentropy => "binary_crossentropy",
            LossKind::CategoricalCrossentropy => "categorical_crossentropy",
            LossKind::SparseCategoricalCrossentropy => "sparse_categorical_crossentropy",
            LossKind::Huber => "huber_loss",
            LossKind::LogCosh => "log_cosh",
            LossKind::KLDivergence => "kl_divergence",
            LossKind::CosineSimilarity => "cosine_similarity",
            LossKind::Poisson => "poisson",
        }
    }

    /// Whether the targets of this loss are integer class ids, one per row, rather than arrays of
    /// the output's shape.
    pub fn sparse(&self) -> bool {
        self.kind == LossKind::SparseCategoricalCrossentropy
    }

    /// The number of target values [`compute`](Self::compute) reads for a `rows × cols` batch.
    pub fn target_len(&self, rows: usize, cols: usize) -> usize {
        if self.sparse() {
            rows
        } else {
            rows * cols
        }
    }

    /// Checks the options against Keras' (each option only where Keras has it) and the kind of
    /// targets `output` takes (`sparse_target`: declared `as i32 target`).
    pub fn check(&self, output: &str, sparse_target: bool) -> Result<()> {
        use LossKind::*;
        let name = self.keras_name();
        if self.from_logits && !matches!(self.kind, BinaryCrossentropy | CategoricalCrossentropy | SparseCategoricalCrossentropy) {
            return Err(Error::config(
                "from_logits",
                true,
                format!("{name} (output `{output}`) has no logits form; only the cross-entropies do"),
            ));
        }
        let s = self.label_smoothing;
        if s != 0.0 {
            if !matches!(self.kind, BinaryCrossentropy | CategoricalCrossentropy) {
                return Err(Error::config(
                    "label_smoothing",
                    s,
                    format!("{name} (output `{output}`) does not smooth labels; binary and categorical cross-entropy do"),
                ));
            }
            if !(0.0..=1.0).contains(&s) {
                return Err(Error::config("label_smoothing", s, format!("must be in [0, 1] (output `{output}`)")));
            }
        }
        if self.delta != 1.0 && self.kind != Huber {
            return Err(Error::config("delta", self.delta, format!("only Huber has a delta, not {name} (output `{output}`)")));
        }
        match (self.sparse(), sparse_target) {
            (true, false) => Err(Error::config(
                "loss",
                name,
                format!("output `{output}` has dense targets; declare integer class ids with `output {output} = ... as i32 target;`, or use CategoricalCrossentropy on one-hot targets"),
            )),
            (false, true) => Err(Error::config(
                "loss",
                name,
                format!("output `{output}` takes integer class ids (`as i32 target`); only SparseCategoricalCrossentropy reads them"),
            )),
            _ => Ok(()),
        }
    }

    /// Whether the gradient of this loss can be taken straight to the logits of `act`: sigmoid
    /// with binary cross-entropy, softmax with the categorical cross-entropies (on probabilities).
    pub fn can_fuse(&self, act: Activation) -> bool {
        !self.from_logits
            && matches!(
                (self.kind, act),
                (LossKind::BinaryCrossentropy, Activation::Sigmoid)
                    | (LossKind::CategoricalCrossentropy | LossKind::SparseCategoricalCrossentropy, Activation::Softmax)
            )
    }

    /// The mean loss over a `rows × cols` row-major batch (`pred` `rows * cols` long, `target`
    /// [`target_len`](Self::target_len) long: class ids as floats for the sparse loss), computed
    /// like Keras with `"sum_over_batch_size"`.
    ///
    /// When `grad` is given, WRITES `grad_scale × d(mean loss)/d(pred)` into it (it is not
    /// accumulated), the gradient Keras' JAX backend takes: zero where Keras clips the prediction.
    ///
    /// When `fused` is an activation this loss [can fuse](Self::can_fuse) with (`pred` being that
    /// activation's output), the gradient written is instead taken w.r.t. the activation's input
    /// (the logits), in closed form and in the same pass, still exactly Keras' (clips included):
    /// - sigmoid + binary cross-entropy: `w (p − y) / (rows·cols)`, where `w` is 1 when `p` lies
    ///   inside `(eps, 1 − eps)`, 0 outside and 1/2 on a bound;
    /// - softmax + categorical cross-entropy: `(p·Σ_j y_j w_j / S − y w) / rows` with `w` the same
    ///   weight of `p / S` and `S = Σ p`: for a one-hot target, `(p − y) / rows` unless the target
    ///   class is clipped, and then exactly zero for the whole row.
    ///
    /// The loss value returned is always Keras' clipped value. Any other `fused` value
    /// (`Activation::Linear` in particular) means "not fused".
    ///
    /// # Panics
    /// If `pred`, `target` or `grad` is shorter than stated (a bug in the caller, never caused by
    /// user data: the runtime checks shapes first).
    #[allow(clippy::too_many_arguments)] // a kernel entry point: flat slices and their dimensions
    pub fn compute(
        &self,
        pred: &[f32],
        target: &[f32],
        rows: usize,
        cols: usize,
        grad: Option<&mut [f32]>,
        grad_scale: f32,
        fused: Activation,
    ) -> f64 {
        self.compute_weighted(pred, target, rows, cols, None, grad, grad_scale, fused)
    }

    /// [`compute`](Self::compute) with per-sample weights (Keras' `sample_weight`): `weights` holds one
    /// weight per sample, each sample being `rows / weights.len()` consecutive rows. Each row's loss is
    /// multiplied by its sample's weight before the `"sum_over_batch_size"` reduction, which still divides
    /// by the number of rows, not by the sum of the weights (Keras 3's `reduce_weighted_values`); the
    /// gradient of every row scales by its weight, fused paths included. `None` (or an empty slice) is
    /// [`compute`](Self::compute), bit for bit.
    ///
    /// # Panics
    /// As [`compute`](Self::compute); also if `weights` is not empty and its length does not divide `rows`.
    #[allow(clippy::too_many_arguments)] // a kernel entry point: flat slices and their dimensions
    pub fn compute_weighted(
        &self,
        pred: &[f32],
        target: &[f32],
        rows: usize,
        cols: usize,
        weights: Option<&[f32]>,
        grad: Option<&mut [f32]>,
        grad_scale: f32,
        fused: Activation,
    ) -> f64 {
        let n = rows * cols;
        let pred = &pred[..n];
        let target = &target[..self.target_len(rows, cols)];
        let grad = grad.map(|g| &mut g[..n]);
        if n == 0 {
            return 0.0;
        }
        let w = RowWeights::new(weights.filter(|w| !w.is_empty()), rows, cols);
        let fused = self.can_fuse(fused);
        let scale = f64::from(grad_scale);
        match self.kind {
            LossKind::MeanSquaredError => mean_elementwise(pred, target, grad, scale, w, |p, y| {
                let d = f64::from(p - y);
                (d * d, 2.0 * d)
            }),
            // d|x|/dx = sign(x), 0 at 0 (as ops.abs' gradient in Keras' backends).
            LossKind::MeanAbsoluteError => mean_elementwise(pred, target, grad, scale, w, |p, y| {
                let d = p - y;
                (f64::from(d.abs()), sign(d))
            }),
            LossKind::BinaryCrossentropy => {
                let s = self.label_smoothing;
                let smooth = move |y: f32| y * (1.0 - s) + 0.5 * s;
                if self.from_logits {
                    // -y ln σ(x) - (1 - y) ln σ(-x) = y softplus(-x) + (1 - y) softplus(x).
                    mean_elementwise(pred, target, grad, scale, w, |x, y| {
                        let (x, y) = (f64::from(x), f64::from(smooth(y)));
                        (y * softplus(-x) + (1.0 - y) * softplus(x), sigmoid(x) - y)
                    })
                } else {
                    mean_elementwise(pred, target, grad, scale, w, |p, y| {
                        let y = f64::from(smooth(y));
                        let c = p.clamp(EPSILON, 1.0 - EPSILON);
                        let w = clip_grad(p, EPSILON, 1.0 - EPSILON);
                        let c64 = f64::from(c);
                        let value = -(y * c64.ln() + (1.0 - y) * (1.0 - c64).ln());
                        let d = if w == 0.0 {
                            0.0
                        } else if fused {
                            w * (f64::from(p) - y)
                        } else {
                            w * (-y / c64 + (1.0 - y) / (1.0 - c64))
                        };
                        (value, d)
                    })
                }
            }
            LossKind::CategoricalCrossentropy => {
                let s = self.label_smoothing;
                let classes = cols as f32;
                self.crossentropy(pred, rows, cols, grad, (scale, w), fused, |r, j| target[r * cols + j] * (1.0 - s) + s / classes)
            }
            LossKind::SparseCategoricalCrossentropy => {
                self.crossentropy(pred, rows, cols, grad, (scale, w), fused, |r, j| if j as f32 == target[r] { 1.0 } else { 0.0 })
            }
            LossKind::Huber => {
                let delta = f64::from(self.delta);
                mean_elementwise(pred, target, grad, scale, w, |p, y| {
                    let e = f64::from(p - y);
                    if e.abs() <= delta {
                        (0.5 * e * e, e)
                    } else {
                        (delta * e.abs() - 0.5 * delta * delta, delta * e.signum())
                    }
                })
            }
            // ln cosh x = |x| + ln(1 + e^{-2|x|}) - ln 2, stable for large |x|; derivative tanh x.
            LossKind::LogCosh => mean_elementwise(pred, target, grad, scale, w, |p, y| {
                let x = f64::from(p - y);
                (x.abs() + (-2.0 * x.abs()).exp().ln_1p() - std::f64::consts::LN_2, x.tanh())
            }),
            LossKind::Poisson => mean_elementwise(pred, target, grad, scale, w, |p, y| {
                let (p, y) = (f64::from(p), f64::from(y));
                let pe = p + f64::from(EPSILON);
                (p - y * pe.ln(), 1.0 - y / pe)
            }),
            LossKind::KLDivergence => sum_rows(pred, target, rows, cols, grad, scale, w, |p, y, mut g, k| {
                let mut row = 0.0f64;
                for (j, (&pj, &yj)) in p.iter().zip(y).enumerate() {
                    let yc = f64::from(yj.clamp(EPSILON, 1.0));
                    let pc = f64::from(pj.clamp(EPSILON, 1.0));
                    row += yc * (yc.ln() - pc.ln());
                    if let Some(g) = g.as_deref_mut() {
                        g[j] = (-yc / pc * clip_grad(pj, EPSILON, 1.0) * k) as f32;
                    }
                }
                row
            }),
            LossKind::CosineSimilarity => sum_rows(pred, target, rows, cols, grad, scale, w, |p, y, g, k| {
                // normalize(x) = x * min(rsqrt(sum x^2), 1 / eps) (keras.ops.normalize).
                let cap = 1.0 / f64::from(EPSILON);
                let sp: f64 = p.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                let sy: f64 = y.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
                let ip = 1.0 / sp.sqrt();
                let (ap, ay) = (ip.min(cap), (1.0 / sy.sqrt()).min(cap));
                let dot: f64 = p.iter().zip(y).map(|(&a, &b)| f64::from(a) * f64::from(b)).sum();
                if let Some(g) = g {
                    // d/dp of -ay ap (y·p): -ay ap y + ay (y·p) ap^3 p where ap = sp^-1/2 (not capped).
                    let through_norm = if ip < cap { ay * dot * ap * ap * ap } else { 0.0 };
                    for ((gj, &pj), &yj) in g.iter_mut().zip(p).zip(y) {
                        *gj = ((-ay * ap * f64::from(yj) + through_norm * f64::from(pj)) * k) as f32;
                    }
                }
                -dot * ap * ay
            }),
        }
    }

    /// The categorical cross-entropies (dense or sparse), `y(r, j)` being the (smoothed) target.
    #[allow(clippy::too_many_arguments)]
    fn crossentropy(
        &self,
        pred: &[f32],
        rows: usize,
        cols: usize,
        mut grad: Option<&mut [f32]>,
        (scale, weights): (f64, RowWeights<'_>),
        fused: bool,
        y: impl Fn(usize, usize) -> f32,
    ) -> f64 {
        let unit = scale / rows as f64;
        let mut sum = 0.0f64;
        for (r, p) in pred.chunks_exact(cols).enumerate() {
            let g = grad.as_deref_mut().map(|g| &mut g[r * cols..(r + 1) * cols]);
            // The row's loss is `-Σ y ln q` times its sample's weight; so is its gradient.
            let wr = weights.of_row(r);
            let scale = unit * wr;
            if self.from_logits {
                // -Σ y log_softmax(x); gradient softmax(x) Σy - y.
                let m = p.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
                let m64 = f64::from(m);
                let lse = m64 + p.iter().map(|&x| (f64::from(x) - m64).exp()).sum::<f64>().ln();
                let mut ysum = 0.0f64;
                let mut row = 0.0f64;
                for (j, &x) in p.iter().enumerate() {
                    let yj = f64::from(y(r, j));
                    ysum += yj;
                    row -= yj * (f64::from(x) - lse);
                }
                sum += row * wr;
                if let Some(g) = g {
                    for (j, (gj, &x)) in g.iter_mut().zip(p).enumerate() {
                        *gj = (((f64::from(x) - lse).exp() * ysum - f64::from(y(r, j))) * scale) as f32;
                    }
                }
                continue;
            }
            // Keras: q = output / sum(output), clipped to [eps, 1 - eps], then -Σ y ln q.
            let s: f32 = p.iter().sum();
            let (mut yw, mut row) = (0.0f64, 0.0f64);
            for (j, &pj) in p.iter().enumerate() {
                let q = pj / s;
                let yj = f64::from(y(r, j));
                // A zero target adds nothing (ln q is finite, q being clipped): the same bits without
                // the logarithm, which one-hot targets skip for all classes but one.
                if yj != 0.0 {
                    row -= yj * f64::from(q.clamp(EPSILON, 1.0 - EPSILON)).ln();
                }
                yw += yj * clip_grad(q, EPSILON, 1.0 - EPSILON);
            }
            sum += row * wr;
            let Some(g) = g else { continue };
            let s64 = f64::from(s);
            if fused {
                // Through the softmax: p_i Σ_j y_j w_j / S - y_i w_i (derivation in `compute`).
                for (j, (gj, &pj)) in g.iter_mut().zip(p).enumerate() {
                    let w = clip_grad(pj / s, EPSILON, 1.0 - EPSILON);
                    *gj = ((f64::from(pj) * yw / s64 - f64::from(y(r, j)) * w) * scale) as f32;
                }
            } else {
                // dL/dq_j = -y_j w_j / q_j; q = p / S  =>  dL/dp_j = (dL/dq_j - Σ_i dL/dq_i q_i) / S,
                // and Σ_i dL/dq_i q_i = -Σ_i y_i w_i.
                for (j, (gj, &pj)) in g.iter_mut().zip(p).enumerate() {
                    let q = pj / s;
                    let w = clip_grad(q, EPSILON, 1.0 - EPSILON);
                    let dq = if w == 0.0 { 0.0 } else { -f64::from(y(r, j)) * w / f64::from(q) };
                    *gj = ((dq + yw) / s64 * scale) as f32;
                }
            }
        }
        sum / rows as f64
    }
}

/// Copies rows `rows` of the target `view` of output `output` into `dst`, `row_len` values per row,
/// as floats. Integer targets are class ids: each must lie in `0..classes` ([`Error::ClassId`]).
/// Allocates nothing.
pub(crate) fn stage_target(output: &str, view: Input<'_>, rows: Rows<'_>, row_len: usize, classes: usize, dst: &mut [f32]) -> Result<()> {
    // Contiguous float targets, a range of rows (`train_step`): one copy, no dynamic-rank view.
    if let (Some(s), Rows::Range(start, end)) = (view.f32_slice(), rows) {
        if let Some(src) = s.get(start * row_len..end * row_len).filter(|src| src.len() == dst.len()) {
            dst.copy_from_slice(src);
            return Ok(());
        }
    }
    let ids = match view.view() {
        InputView::F32(v) => {
            gather_f32(&v, rows, row_len, dst);
            return Ok(());
        }
        InputView::I32(v) => v,
    };
    let id = |id: i32, sample: usize, index: usize| match usize::try_from(id) {
        Ok(c) if c < classes => Ok(c as f32),
        _ => Err(Error::ClassId { output: output.to_string(), value: id, sample, index, classes }),
    };
    for (d, r) in dst.chunks_exact_mut(row_len.max(1)).zip(rows.iter()) {
        match ids.as_slice() {
            Some(s) => {
                for (i, (x, &y)) in d.iter_mut().zip(&s[r * row_len..(r + 1) * row_len]).enumerate() {
                    *x = id(y, r, i)?;
                }
            }
            None => {
                for (i, (x, &y)) in d.iter_mut().zip(ids.index_axis(ndarray::Axis(0), r).iter()).enumerate() {
                    *x = id(y, r, i)?;
                }
            }
        }
    }
    Ok(())
}

/// The weight of each row of a batch: its sample's weight (Keras' `sample_weight`, one per sample of
/// `rows / weights.len()` rows), or 1 for every row when there are none.
#[derive(Clone, Copy)]
struct RowWeights<'w> {
    weights: Option<&'w [f32]>,
    /// Rows per sample.
    per_sample: usize,
    cols: usize,
}

impl<'w> RowWeights<'w> {
    fn new(weights: Option<&'w [f32]>, rows: usize, cols: usize) -> Self {
        let per_sample = weights.map_or(1, |w| rows / w.len());
        assert!(weights.is_none_or(|w| w.len() * per_sample == rows), "{rows} rows are not a whole number of weighted samples");
        RowWeights { weights, per_sample, cols }
    }

    /// Row `r`'s weight (1 without weights).
    #[inline(always)]
    fn of_row(&self, r: usize) -> f64 {
        self.weights.map_or(1.0, |w| f64::from(w[r / self.per_sample]))
    }
}

/// Mean over every element of `f(p, y) = (value, d value / d p)`, each element's value weighted by its
/// row's weight; writes `scale × d(mean)/d(p)`.
#[inline(always)]
fn mean_elementwise(
    pred: &[f32],
    target: &[f32],
    grad: Option<&mut [f32]>,
    scale: f64,
    weights: RowWeights<'_>,
    f: impl Fn(f32, f32) -> (f64, f64),
) -> f64 {
    let inv = 1.0 / pred.len() as f64;
    let mut sum = 0.0f64;
    if let Some(w) = weights.weights {
        // One sample (`per_sample` rows of `cols`) at a time, at its weight.
        let len = weights.per_sample * weights.cols;
        let samples = pred.chunks_exact(len).zip(target.chunks_exact(len)).zip(w);
        match grad {
            Some(g) => {
                for (((p, y), &wi), g) in samples.zip(g.chunks_exact_mut(len)) {
                    let (wi, mut s) = (f64::from(wi), 0.0f64);
                    let k = inv * scale * wi;
                    for ((gi, &p), &y) in g.iter_mut().zip(p).zip(y) {
                        let (v, d) = f(p, y);
                        s += v;
                        *gi = (d * k) as f32;
                    }
                    sum += s * wi;
                }
            }
            None => {
                for ((p, y), &wi) in samples {
                    sum += p.iter().zip(y).map(|(&p, &y)| f(p, y).0).sum::<f64>() * f64::from(wi);
                }
            }
        }
        return sum * inv;
    }
    match grad {
        Some(g) => {
            let k = inv * scale;
            for ((gi, &p), &y) in g.iter_mut().zip(pred).zip(target) {
                let (v, d) = f(p, y);
                sum += v;
                *gi = (d * k) as f32;
            }
        }
        None => {
            for (&p, &y) in pred.iter().zip(target) {
                sum += f(p, y).0;
            }
        }
    }
    sum * inv
}

/// Mean over rows of `f(p_row, y_row, grad_row, k)` times the row's weight, where `f` returns the row's
/// value and, given a gradient row, writes `k × d(row value)/d(p)` into it, `k = scale × weight / rows`.
#[allow(clippy::too_many_arguments)]
fn sum_rows(
    pred: &[f32],
    target: &[f32],
    rows: usize,
    cols: usize,
    mut grad: Option<&mut [f32]>,
    scale: f64,
    weights: RowWeights<'_>,
    mut f: impl FnMut(&[f32], &[f32], Option<&mut [f32]>, f64) -> f64,
) -> f64 {
    let k = scale / rows as f64;
    let mut sum = 0.0f64;
    for (r, (p, y)) in pred.chunks_exact(cols).zip(target.chunks_exact(cols)).enumerate() {
        let g = grad.as_deref_mut().map(|g| &mut g[r * cols..(r + 1) * cols]);
        let wr = weights.of_row(r);
        sum += f(p, y, g, k * wr) * wr;
    }
    sum / rows as f64
}

/// `sign(d)` as a float, 0 at 0.
#[inline(always)]
fn sign(d: f32) -> f64 {
    if d > 0.0 {
        1.0
    } else if d < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The derivative of `jnp.clip(x, lo, hi)` (`minimum(maximum(x, lo), hi)`) as JAX takes it: 1
/// strictly inside, 0 outside, 1/2 exactly on a bound (a tie of `maximum`/`minimum`), 0 for NaN.
#[inline(always)]
fn clip_grad(x: f32, lo: f32, hi: f32) -> f64 {
    if x > lo && x < hi {
        1.0
    } else if x == lo || x == hi {
        0.5
    } else {
        0.0
    }
}

/// `ln(1 + e^x)`, stable for large `|x|`.
#[inline(always)]
fn softplus(x: f64) -> f64 {
    x.max(0.0) + (-x.abs()).exp().ln_1p()
}

/// `1 / (1 + e^-x)`.
#[inline(always)]
fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every dense-target loss, with options.
    const ALL: [Loss; 14] = [
        Loss::MeanSquaredError,
        Loss::MeanAbsoluteError,
        Loss::BinaryCrossentropy,
        Loss::BinaryCrossentropy.label_smoothing(0.2),
        Loss::BinaryCrossentropy.from_logits(true),
        Loss::BinaryCrossentropy.from_logits(true).label_smoothing(0.1),
        Loss::CategoricalCrossentropy,
        Loss::CategoricalCrossentropy.label_smoothing(0.3),
        Loss::CategoricalCrossentropy.from_logits(true).label_smoothing(0.1),
        Loss::Huber.delta(0.2),
        Loss::LogCosh,
        Loss::KLDivergence,
        Loss::CosineSimilarity,
        Loss::Poisson,
    ];

    fn value(loss: Loss, pred: &[f32], target: &[f32], rows: usize, cols: usize) -> f64 {
        loss.compute(pred, target, rows, cols, None, 1.0, Activation::Linear)
    }

    fn assert_close(a: f64, b: f64, tol: f64) {
        assert!((a - b).abs() <= tol * (1.0 + b.abs()), "{a} vs {b}");
    }

    #[test]
    fn mse_and_mae_match_keras_values() {
        // keras.losses.MeanSquaredError()([[0, 1], [0, 0]], [[1, 1], [1, 0]]) == 0.5
        let y = [0.0, 1.0, 0.0, 0.0];
        let p = [1.0, 1.0, 1.0, 0.0];
        assert_close(value(Loss::MeanSquaredError, &p, &y, 2, 2), 0.5, 1e-12);
        assert_close(value(Loss::MeanAbsoluteError, &p, &y, 2, 2), 0.5, 1e-12);
        // Non-trivial: rows (0.25 + 0.04)/2 and (0.09 + 0.49)/2 -> mean 0.2175.
        let p = [0.5, 0.8, 0.3, 0.7];
        let y = [0.0, 1.0, 0.0, 0.0];
        assert_close(value(Loss::MeanSquaredError, &p, &y, 2, 2), 0.2175, 1e-6);
        assert_close(value(Loss::MeanAbsoluteError, &p, &y, 2, 2), 0.425, 1e-6);
    }

    #[test]
    fn bce_matches_keras_values() {
        // The Keras docs example: BinaryCrossentropy()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]])
        // = mean(-(ln 0.4 + ln 0.4)/2, -(ln 0.6 + ln 0.4)/2) = 0.81492 (docs: 0.8149).
        let y = [0.0, 1.0, 0.0, 0.0];
        let p = [0.6, 0.4, 0.4, 0.6];
        let expected = -(0.4f64.ln() + 0.4f64.ln() + 0.6f64.ln() + 0.4f64.ln()) / 4.0;
        assert_close(value(Loss::BinaryCrossentropy, &p, &y, 2, 2), expected, 1e-6);
        assert_close(expected, 0.814_924_5, 1e-6);
        // Clipping: p = 0 with y = 1 gives -ln(1e-7) = 16.118..., not infinity.
        let v = value(Loss::BinaryCrossentropy, &[0.0], &[1.0], 1, 1);
        assert_close(v, -(f64::from(EPSILON)).ln(), 1e-6);
    }

    #[test]
    fn cce_matches_keras_values() {
        // The Keras docs example: CategoricalCrossentropy()([[0, 1, 0], [0, 0, 1]],
        // [[0.05, 0.95, 0], [0.1, 0.8, 0.1]]) = 1.177.
        let y = [0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let p = [0.05, 0.95, 0.0, 0.1, 0.8, 0.1];
        let expected = -(0.95f64.ln() + 0.1f64.ln()) / 2.0;
        assert_close(value(Loss::CategoricalCrossentropy, &p, &y, 2, 3), expected, 1e-6);
        assert_close(expected, 1.176_939_1, 1e-6);
        // Renormalization: predictions summing to 2 are halved first.
        let p2: Vec<f32> = p.iter().map(|v| v * 2.0).collect();
        assert_close(value(Loss::CategoricalCrossentropy, &p2, &y, 2, 3), expected, 1e-6);
    }

    /// Central finite differences of the mean loss (times `scale`) w.r.t. `x`, where the loss
    /// input is `f(x)` (identity, or an activation for the fused forms).
    fn numeric_grad(loss: Loss, x: &[f32], y: &[f32], rows: usize, cols: usize, scale: f64, f: &dyn Fn(&[f32]) -> Vec<f32>) -> Vec<f64> {
        let h = 1e-3f64;
        (0..x.len())
            .map(|i| {
                let mut xp: Vec<f64> = x.iter().map(|&v| f64::from(v)).collect();
                xp[i] += h;
                let lp = value(loss, &f(&to32(&xp)), y, rows, cols);
                xp[i] -= 2.0 * h;
                let lm = value(loss, &f(&to32(&xp)), y, rows, cols);
                scale * (lp - lm) / (2.0 * h)
            })
            .collect()
    }

    fn to32(v: &[f64]) -> Vec<f32> {
        v.iter().map(|&x| x as f32).collect()
    }

    fn sigmoid(x: &[f32]) -> Vec<f32> {
        x.iter().map(|&v| 1.0 / (1.0 + (-v).exp())).collect()
    }

    fn softmax_rows(cols: usize) -> impl Fn(&[f32]) -> Vec<f32> {
        move |x: &[f32]| {
            let mut out = Vec::with_capacity(x.len());
            for row in x.chunks(cols) {
                let m = row.iter().cloned().fold(f32::NEG_INFINITY, f32::max);
                let e: Vec<f32> = row.iter().map(|&v| (v - m).exp()).collect();
                let s: f32 = e.iter().sum();
                out.extend(e.iter().map(|v| v / s));
            }
            out
        }
    }

    fn check(analytic: &[f32], numeric: &[f64]) {
        for (i, (&a, &n)) in analytic.iter().zip(numeric).enumerate() {
            assert!((f64::from(a) - n).abs() <= 2e-3 * (1.0 + n.abs()), "element {i}: analytic {a} vs numeric {n}");
        }
    }

    #[test]
    fn every_loss_gradient_matches_finite_differences() {
        let (rows, cols) = (3, 4);
        // Probabilities well inside (0, 1), not summing to 1 (exercises CCE's renormalization).
        let pred: Vec<f32> = (0..rows * cols).map(|i| 0.1 + 0.07 * ((i * 7) % 11) as f32).collect();
        let target: Vec<f32> = (0..rows * cols).map(|i| if i % cols == i / cols { 1.0 } else { 0.0 }).collect();
        // A soft target for MSE/MAE/BCE, away from the predictions (MAE's kink).
        let soft: Vec<f32> = (0..rows * cols).map(|i| 0.05 * (i % 5) as f32).collect();
        let id = |x: &[f32]| x.to_vec();
        for loss in ALL {
            let y = if loss.kind() == LossKind::CategoricalCrossentropy { &target } else { &soft };
            let mut g = vec![f32::NAN; rows * cols];
            loss.compute(&pred, y, rows, cols, Some(&mut g), 0.5, Activation::Linear);
            let num = numeric_grad(loss, &pred, y, rows, cols, 0.5, &id);
            check(&g, &num);
        }
        // Sparse targets: class ids, one per row; from logits too.
        let ids = [2.0f32, 0.0, 3.0];
        for loss in [Loss::SparseCategoricalCrossentropy, Loss::SparseCategoricalCrossentropy.from_logits(true)] {
            let mut g = vec![f32::NAN; rows * cols];
            loss.compute(&pred, &ids, rows, cols, Some(&mut g), 0.5, Activation::Linear);
            check(&g, &numeric_grad(loss, &pred, &ids, rows, cols, 0.5, &id));
        }
    }

    #[test]
    fn fused_gradients_match_finite_differences_through_the_activation() {
        let (rows, cols) = (3, 4);
        let logits: Vec<f32> = (0..rows * cols).map(|i| ((i * 5) % 9) as f32 * 0.4 - 1.6).collect();
        let onehot: Vec<f32> = (0..rows * cols).map(|i| if i % cols == (i / cols + 1) % cols { 1.0 } else { 0.0 }).collect();
        let soft: Vec<f32> = (0..rows * cols).map(|i| 0.1 * (i % 9) as f32).collect();

        let sm = softmax_rows(cols);
        let p = sm(&logits);
        let mut g = vec![f32::NAN; rows * cols];
        let loss = Loss::CategoricalCrossentropy;
        loss.compute(&p, &onehot, rows, cols, Some(&mut g), 2.0, Activation::Softmax);
        check(&g, &numeric_grad(loss, &logits, &onehot, rows, cols, 2.0, &sm));

        let p = sigmoid(&logits);
        let loss = Loss::BinaryCrossentropy;
        loss.compute(&p, &soft, rows, cols, Some(&mut g), 2.0, Activation::Sigmoid);
        check(&g, &numeric_grad(loss, &logits, &soft, rows, cols, 2.0, &sigmoid));

        // Label smoothing and sparse ids fuse too.
        let p = sm(&logits);
        let loss = Loss::CategoricalCrossentropy.label_smoothing(0.2);
        loss.compute(&p, &onehot, rows, cols, Some(&mut g), 2.0, Activation::Softmax);
        check(&g, &numeric_grad(loss, &logits, &onehot, rows, cols, 2.0, &sm));
        let ids = [1.0f32, 3.0, 0.0];
        let loss = Loss::SparseCategoricalCrossentropy;
        loss.compute(&p, &ids, rows, cols, Some(&mut g), 2.0, Activation::Softmax);
        check(&g, &numeric_grad(loss, &logits, &ids, rows, cols, 2.0, &sm));
        let p = sigmoid(&logits);
        let loss = Loss::BinaryCrossentropy.label_smoothing(0.3);
        loss.compute(&p, &soft, rows, cols, Some(&mut g), 2.0, Activation::Sigmoid);
        check(&g, &numeric_grad(loss, &logits, &soft, rows, cols, 2.0, &sigmoid));
    }

    #[test]
    fn from_logits_equals_the_probability_form_on_the_activation() {
        let (rows, cols) = (2, 3);
        let logits = [0.3f32, -1.2, 2.0, 0.5, 0.1, -0.7];
        let onehot = [0.0f32, 0.0, 1.0, 1.0, 0.0, 0.0];
        let p = softmax_rows(cols)(&logits);
        let a = value(Loss::CategoricalCrossentropy.from_logits(true), &logits, &onehot, rows, cols);
        assert_close(a, value(Loss::CategoricalCrossentropy, &p, &onehot, rows, cols), 1e-6);
        let b = value(Loss::SparseCategoricalCrossentropy.from_logits(true), &logits, &[2.0, 0.0], rows, cols);
        assert_close(a, b, 1e-12);
        let p = sigmoid(&logits);
        let a = value(Loss::BinaryCrossentropy.from_logits(true), &logits, &onehot, rows, cols);
        assert_close(a, value(Loss::BinaryCrossentropy, &p, &onehot, rows, cols), 1e-6);
    }

    #[test]
    fn new_losses_match_keras_doc_values() {
        // keras.losses.Huber()([[0, 1], [0, 0]], [[0.6, 0.4], [0.4, 0.6]]) = 0.155
        let y = [0.0, 1.0, 0.0, 0.0];
        let p = [0.6, 0.4, 0.4, 0.6];
        assert_close(value(Loss::Huber, &p, &y, 2, 2), 0.155, 1e-6);
        // LogCosh()([[0, 1], [0, 0]], [[1, 1], [0, 0]]) = 0.108 (ln cosh 1 / 4).
        assert_close(value(Loss::LogCosh, &[1.0, 1.0, 0.0, 0.0], &y, 2, 2), 1f64.cosh().ln() / 4.0, 1e-9);
        // CosineSimilarity()([[0, 1], [1, 1]], [[1, 0], [1, 1]]) = -0.5
        assert_close(value(Loss::CosineSimilarity, &[1.0, 0.0, 1.0, 1.0], &[0.0, 1.0, 1.0, 1.0], 2, 2), -0.5, 1e-6);
        // Sparse: [1, 2] vs [[0.05, 0.95, 0], [0.1, 0.8, 0.1]] = mean(0.0513, 2.303)
        let sp = [0.05, 0.95, 0.0, 0.1, 0.8, 0.1];
        assert_close(value(Loss::SparseCategoricalCrossentropy, &sp, &[1.0, 2.0], 2, 3), (-(0.95f64.ln()) - 0.1f64.ln()) / 2.0, 1e-6);
        // Huber's linear part: e = 3, delta 1 -> 2.5.
        assert_close(value(Loss::Huber, &[3.0], &[0.0], 1, 1), 2.5, 1e-12);
        assert_close(value(Loss::Huber.delta(2.0), &[3.0], &[0.0], 1, 1), 4.0, 1e-12);
    }

    #[test]
    fn saturated_fused_gradients_are_keras_zeros() {
        // A softmax whose target class is clipped below eps: Keras' gradient for the row is 0.
        let logits = [-30.0f32, 20.0, 0.0, 1.0, 2.0, 0.5];
        let p = softmax_rows(3)(&logits);
        assert!(p[0] < EPSILON);
        let mut g = [f32::NAN; 6];
        Loss::CategoricalCrossentropy.compute(&p, &[1.0, 0.0, 0.0, 0.0, 1.0, 0.0], 2, 3, Some(&mut g), 1.0, Activation::Softmax);
        assert_eq!(&g[..3], &[0.0, 0.0, 0.0]);
        // The other row keeps p - y.
        assert!((g[4] - (p[4] - 1.0) / 2.0).abs() < 1e-7 && g[3] > 0.0);
        // Same in sparse form; and confidently right (p_t > 1 - eps) is zero as well.
        Loss::SparseCategoricalCrossentropy.compute(&p, &[0.0, 1.0], 2, 3, Some(&mut g), 1.0, Activation::Softmax);
        assert_eq!(&g[..3], &[0.0, 0.0, 0.0]);
        Loss::SparseCategoricalCrossentropy.compute(&p, &[1.0, 1.0], 2, 3, Some(&mut g), 1.0, Activation::Softmax);
        assert_eq!(&g[..3], &[0.0, 0.0, 0.0]);
        // Sigmoid: zero beyond the clip, half on the bound, p - y inside.
        let hi = 1.0 - EPSILON;
        let mut g = [f32::NAN; 3];
        Loss::BinaryCrossentropy.compute(&[1.0, hi, 0.25], &[0.0, 0.0, 1.0], 1, 3, Some(&mut g), 3.0, Activation::Sigmoid);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - 0.5 * hi).abs() < 1e-7, "{}", g[1]);
        assert!((g[2] - (0.25 - 1.0)).abs() < 1e-7);
        // from_logits never clips.
        Loss::BinaryCrossentropy.from_logits(true).compute(
            &[40.0, -40.0, 0.0],
            &[0.0, 0.0, 1.0],
            1,
            3,
            Some(&mut g),
            3.0,
            Activation::Linear,
        );
        assert!((g[0] - 1.0).abs() < 1e-7 && g[1].abs() < 1e-7 && (g[2] + 0.5).abs() < 1e-7);
    }

    #[test]
    fn upper_clip_bound_is_kerass_float32() {
        // Keras clips to float32(1 - 1e-7) = 0.99999988.
        assert_eq!((1.0 - EPSILON).to_bits(), 0x3f7f_fffe);
        assert_eq!(clip_grad(EPSILON, EPSILON, 1.0 - EPSILON), 0.5);
        assert_eq!(clip_grad(f32::NAN, EPSILON, 1.0 - EPSILON), 0.0);
    }

    #[test]
    fn options_are_checked_like_keras() {
        assert!(Loss::CategoricalCrossentropy.from_logits(true).label_smoothing(0.1).check("y", false).is_ok());
        assert!(Loss::SparseCategoricalCrossentropy.from_logits(true).check("y", true).is_ok());
        let msg = |l: Loss, sparse: bool| l.check("y", sparse).unwrap_err().to_string();
        assert!(msg(Loss::MeanSquaredError.from_logits(true), false).contains("no logits form"));
        assert!(msg(Loss::SparseCategoricalCrossentropy.label_smoothing(0.1), true).contains("does not smooth"));
        assert!(msg(Loss::BinaryCrossentropy.label_smoothing(1.5), false).contains("[0, 1]"));
        assert!(msg(Loss::Poisson.delta(2.0), false).contains("only Huber"));
        assert!(msg(Loss::SparseCategoricalCrossentropy, false).contains("as i32 target"));
        assert!(msg(Loss::CategoricalCrossentropy, true).contains("only SparseCategoricalCrossentropy"));
    }

    #[test]
    fn gradient_is_written_not_accumulated_and_zero_where_clipped() {
        let mut g = [100.0f32; 2];
        Loss::BinaryCrossentropy.compute(&[0.0, 0.5], &[1.0, 1.0], 1, 2, Some(&mut g), 1.0, Activation::Linear);
        assert_eq!(g[0], 0.0);
        assert!((g[1] - (-1.0 / 0.5 / 2.0)).abs() < 1e-6);
    }

    #[test]
    fn fusion_only_pairs_matching_activations() {
        assert!(Loss::SparseCategoricalCrossentropy.can_fuse(Activation::Softmax));
        assert!(!Loss::CategoricalCrossentropy.from_logits(true).can_fuse(Activation::Softmax));
        assert!(Loss::CategoricalCrossentropy.can_fuse(Activation::Softmax));
        assert!(Loss::BinaryCrossentropy.can_fuse(Activation::Sigmoid));
        assert!(!Loss::BinaryCrossentropy.can_fuse(Activation::Softmax));
        assert!(!Loss::MeanSquaredError.can_fuse(Activation::Sigmoid));
        assert!(!Loss::CategoricalCrossentropy.can_fuse(Activation::Linear));
    }

    #[test]
    fn sample_weights_scale_each_rows_loss_and_gradient_fused_or_not() {
        // Two samples of two rows: Keras multiplies each row's loss by its sample's weight and still
        // divides by the number of rows.
        let (rows, cols, w) = (4, 3, [0.5f32, 2.0]);
        let x: Vec<f32> = (0..12).map(|i| 0.05 + 0.075 * i as f32).collect();
        let y: Vec<f32> = (0..12).map(|i| ((i * 5) % 7) as f32 / 7.0).collect();
        for loss in ALL {
            for fused in [Activation::Linear, Activation::Sigmoid, Activation::Softmax] {
                let mut g = vec![0.0; rows * cols];
                let v = loss.compute_weighted(&x, &y, rows, cols, Some(&w), Some(&mut g), 1.5, fused);
                let mut want = 0.0;
                for r in 0..rows {
                    let (xr, yr) = (&x[r * cols..(r + 1) * cols], &y[r * cols..(r + 1) * cols]);
                    let mut gr = vec![0.0; cols];
                    let wr = w[r / 2];
                    want += loss.compute(xr, yr, 1, cols, Some(&mut gr), 1.5, fused) * f64::from(wr) / rows as f64;
                    for (j, &gj) in gr.iter().enumerate() {
                        let expect = gj * wr / rows as f32;
                        assert!((g[r * cols + j] - expect).abs() <= 1e-6 + 1e-5 * expect.abs(), "{loss:?} {fused:?} grad[{r}, {j}]");
                    }
                }
                assert!((v - want).abs() <= 1e-9 * want.abs().max(1.0), "{loss:?} {fused:?}: {v} vs {want}");
                // Unit weights give the unweighted gradient bit for bit (the value up to the order of the sums).
                let mut g1 = vec![0.0; rows * cols];
                let mut g2 = vec![0.0; rows * cols];
                let a = loss.compute(&x, &y, rows, cols, Some(&mut g1), 1.5, fused);
                let b = loss.compute_weighted(&x, &y, rows, cols, Some(&[1.0, 1.0]), Some(&mut g2), 1.5, fused);
                assert_eq!(g1, g2, "{loss:?} {fused:?}");
                assert!((a - b).abs() <= 1e-12 * a.abs().max(1.0), "{loss:?} {fused:?}: {a} vs {b}");
            }
        }
    }
}
