//! Losses (Keras 3 semantics): predictions and targets in, mean loss and its gradient out.
//!
//! Every loss reduces each sample over the last axis (mean for MSE, MAE and binary cross-entropy,
//! sum for categorical cross-entropy), then averages over the rows of the batch: Keras'
//! `"sum_over_batch_size"` reduction. Outputs of rank > 1 per sample are flattened to
//! `rows = batch * prod(shape[..-1])`, `cols = shape[-1]`, which is the same thing.

use crate::kernels::activation::Activation;

/// Keras' `backend.epsilon()`, used to clip probabilities in the cross-entropies.
pub const EPSILON: f32 = 1e-7;

/// A loss function, by its Keras name.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Loss {
    /// `mean((y - p)^2)` over the last axis.
    MeanSquaredError,
    /// `mean(|y - p|)` over the last axis.
    MeanAbsoluteError,
    /// `mean(-(y ln p + (1 - y) ln(1 - p)))` over the last axis, `p` clipped to `[eps, 1 - eps]`.
    BinaryCrossentropy,
    /// `-sum(y ln p)` over the last axis, `p` renormalized to sum 1 then clipped to `[eps, 1 - eps]`.
    CategoricalCrossentropy,
}

impl Loss {
    /// The Keras name (`"mean_squared_error"`, `"binary_crossentropy"`, ...).
    pub fn keras_name(&self) -> &'static str {
        match self {
            Loss::MeanSquaredError => "mean_squared_error",
            Loss::MeanAbsoluteError => "mean_absolute_error",
            Loss::BinaryCrossentropy => "binary_crossentropy",
            Loss::CategoricalCrossentropy => "categorical_crossentropy",
        }
    }

    /// Whether the gradient of this loss can be taken straight to the logits of `act`:
    /// sigmoid with binary cross-entropy, softmax with categorical cross-entropy.
    pub fn can_fuse(&self, act: Activation) -> bool {
        matches!((self, act), (Loss::BinaryCrossentropy, Activation::Sigmoid) | (Loss::CategoricalCrossentropy, Activation::Softmax))
    }

    /// The mean loss over a `rows × cols` row-major batch (`pred` and `target` both
    /// `rows * cols` long), computed like Keras with `"sum_over_batch_size"`.
    ///
    /// When `grad` is given, WRITES `grad_scale × d(mean loss)/d(pred)` into it (it is not
    /// accumulated), with a zero gradient where Keras clips the prediction.
    ///
    /// When `fused` is an activation this loss [can fuse](Self::can_fuse) with (`pred` being that
    /// activation's output), the gradient written is instead taken w.r.t. the activation's input
    /// (the logits), in the numerically stable closed form:
    /// - softmax + categorical cross-entropy: `(p·sum(y) − y) / rows` (`(p − y) / rows` for
    ///   targets that sum to one);
    /// - sigmoid + binary cross-entropy: `(p − y) / (rows·cols)`.
    ///
    /// This is the exact derivative of the unclipped loss. Keras (JAX, PyTorch and NumPy
    /// backends) differentiates the clipped form instead, so the two differ only where a
    /// probability saturates beyond `[1e-7, 1 − 1e-7]`: there Keras' gradient vanishes while this
    /// one keeps pushing the logit towards the target, which is what `from_logits=True` does.
    /// The loss value returned is always Keras' clipped value. Any other `fused` value
    /// (`Activation::Linear` in particular) means "not fused".
    ///
    /// # Panics
    /// If `pred`, `target` or `grad` is shorter than `rows * cols` (a bug in the caller,
    /// never caused by user data: the runtime checks shapes first).
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
        let n = rows * cols;
        let pred = &pred[..n];
        let target = &target[..n];
        let mut grad = grad.map(|g| &mut g[..n]);
        if n == 0 {
            return 0.0;
        }
        let fused = self.can_fuse(fused);
        match self {
            Loss::MeanSquaredError => {
                let inv = 1.0 / n as f64;
                let mut sum = 0.0f64;
                for (i, (&p, &y)) in pred.iter().zip(target).enumerate() {
                    let d = p - y;
                    sum += f64::from(d) * f64::from(d);
                    if let Some(g) = grad.as_deref_mut() {
                        g[i] = (2.0 * f64::from(d) * inv * f64::from(grad_scale)) as f32;
                    }
                }
                sum * inv
            }
            Loss::MeanAbsoluteError => {
                let inv = 1.0 / n as f64;
                let mut sum = 0.0f64;
                for (i, (&p, &y)) in pred.iter().zip(target).enumerate() {
                    let d = p - y;
                    sum += f64::from(d.abs());
                    if let Some(g) = grad.as_deref_mut() {
                        // d|x|/dx = sign(x), 0 at 0 (as ops.abs' gradient in Keras' backends).
                        let s = if d > 0.0 {
                            1.0
                        } else if d < 0.0 {
                            -1.0
                        } else {
                            0.0
                        };
                        g[i] = (s * inv * f64::from(grad_scale)) as f32;
                    }
                }
                sum * inv
            }
            Loss::BinaryCrossentropy => {
                let inv = 1.0 / n as f64;
                let mut sum = 0.0f64;
                for (i, (&p, &y)) in pred.iter().zip(target).enumerate() {
                    let pc = p.clamp(EPSILON, 1.0 - EPSILON);
                    let (pc64, y64) = (f64::from(pc), f64::from(y));
                    sum -= y64 * pc64.ln() + (1.0 - y64) * (1.0 - pc64).ln();
                    if let Some(g) = grad.as_deref_mut() {
                        let d = if fused {
                            f64::from(p) - y64
                        } else if (EPSILON..=1.0 - EPSILON).contains(&p) {
                            -y64 / pc64 + (1.0 - y64) / (1.0 - pc64)
                        } else {
                            0.0
                        };
                        g[i] = (d * inv * f64::from(grad_scale)) as f32;
                    }
                }
                sum * inv
            }
            Loss::CategoricalCrossentropy => {
                let inv_rows = 1.0 / rows as f64;
                let scale = inv_rows * f64::from(grad_scale);
                let mut sum = 0.0f64;
                for r in 0..rows {
                    let p = &pred[r * cols..(r + 1) * cols];
                    let y = &target[r * cols..(r + 1) * cols];
                    // Keras: output / sum(output), then clip, then -sum(y ln q).
                    let s: f32 = p.iter().sum();
                    let mut row = 0.0f64;
                    for (&pi, &yi) in p.iter().zip(y) {
                        let q = (pi / s).clamp(EPSILON, 1.0 - EPSILON);
                        row -= f64::from(yi) * f64::from(q).ln();
                    }
                    sum += row;
                    let Some(g) = grad.as_deref_mut() else {
                        continue;
                    };
                    let g = &mut g[r * cols..(r + 1) * cols];
                    if fused {
                        let ysum: f64 = y.iter().map(|&v| f64::from(v)).sum();
                        for ((gi, &pi), &yi) in g.iter_mut().zip(p).zip(y) {
                            *gi = ((f64::from(pi) * ysum - f64::from(yi)) * scale) as f32;
                        }
                    } else {
                        // dL/dq_i = -y_i / q_i where unclipped (0 where clipped);
                        // q = p / S  =>  dL/dp_j = (dL/dq_j - sum_i dL/dq_i q_i) / S.
                        let s64 = f64::from(s);
                        let mut dot = 0.0f64;
                        for (gi, (&pi, &yi)) in g.iter_mut().zip(p.iter().zip(y)) {
                            let q = pi / s;
                            let dq = if (EPSILON..=1.0 - EPSILON).contains(&q) { -f64::from(yi) / f64::from(q) } else { 0.0 };
                            dot += dq * f64::from(q);
                            *gi = dq as f32;
                        }
                        for gi in g.iter_mut() {
                            *gi = ((f64::from(*gi) - dot) / s64 * scale) as f32;
                        }
                    }
                }
                sum * inv_rows
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL: [Loss; 4] = [Loss::MeanSquaredError, Loss::MeanAbsoluteError, Loss::BinaryCrossentropy, Loss::CategoricalCrossentropy];

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
            let y = if loss == Loss::CategoricalCrossentropy { &target } else { &soft };
            let mut g = vec![f32::NAN; rows * cols];
            loss.compute(&pred, y, rows, cols, Some(&mut g), 0.5, Activation::Linear);
            let num = numeric_grad(loss, &pred, y, rows, cols, 0.5, &id);
            check(&g, &num);
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
        assert!(Loss::CategoricalCrossentropy.can_fuse(Activation::Softmax));
        assert!(Loss::BinaryCrossentropy.can_fuse(Activation::Sigmoid));
        assert!(!Loss::BinaryCrossentropy.can_fuse(Activation::Softmax));
        assert!(!Loss::MeanSquaredError.can_fuse(Activation::Sigmoid));
        assert!(!Loss::CategoricalCrossentropy.can_fuse(Activation::Linear));
    }
}
