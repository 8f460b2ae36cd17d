//! Keras' weight and activity regularizers (`l1`, `l2`, `l1_l2`) and weight constraints (`max_norm`,
//! `non_neg`, `unit_norm`, `min_max_norm`), as the code `model!` generates lists them.
//!
//! Keras 3 adds `l1 * Σ|w| + l2 * Σw²` (no ½) of every regularized weight to the training loss, and an
//! activity regularizer's penalty of a layer's output divided by the batch size (the generated forward
//! pass sums those into `Workspace::activity_penalty`, its backward adds their gradients); constraints
//! project a weight after every optimizer step. A model that uses none of them has empty lists and
//! emits no such code: no cost.

/// A regularizer's factors: penalty `l1 * Σ|x| + l2 * Σx²`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalty {
    /// Factor of the sum of absolute values.
    pub l1: f32,
    /// Factor of the sum of squares.
    pub l2: f32,
}

impl Penalty {
    /// The penalty of `x`, summed in `f64`.
    pub fn value(&self, x: &[f32]) -> f64 {
        let (l1, l2) = (f64::from(self.l1), f64::from(self.l2));
        let (mut abs, mut sq) = (0.0f64, 0.0f64);
        for &v in x {
            let v = f64::from(v);
            abs += v.abs();
            sq += v * v;
        }
        l1 * abs + l2 * sq
    }

    /// Adds `scale` times the penalty's gradient, `l1 * sign(x) + 2 * l2 * x` (sign(0) = 0 as Keras' `ops.sign`), to `g`.
    pub fn add_gradient(&self, x: &[f32], g: &mut [f32], scale: f32) {
        let (l1, l2) = (self.l1 * scale, 2.0 * self.l2 * scale);
        for (g, &v) in g.iter_mut().zip(x) {
            let sign = if v > 0.0 {
                1.0
            } else if v < 0.0 {
                -1.0
            } else {
                0.0
            };
            *g += l1 * sign + l2 * v;
        }
    }
}

/// A regularized parameter: `penalty` of `params[offset..offset + len]` joins the loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct WeightPenalty {
    /// Offset of the parameter in the flat buffer.
    pub offset: usize,
    /// Its element count.
    pub len: usize,
    /// The regularizer.
    pub penalty: Penalty,
}

/// The total penalty of the regularized parameters.
pub fn weight_penalty(params: &[f32], penalties: &[WeightPenalty]) -> f64 {
    penalties.iter().filter_map(|p| params.get(p.offset..p.offset + p.len).map(|w| p.penalty.value(w))).sum()
}

/// Adds the gradient of every weight penalty to `grads`.
pub fn add_weight_gradients(params: &[f32], grads: &mut [f32], penalties: &[WeightPenalty]) {
    for p in penalties {
        let r = p.offset..p.offset + p.len;
        if let (Some(w), Some(g)) = (params.get(r.clone()), grads.get_mut(r)) {
            p.penalty.add_gradient(w, g, 1.0);
        }
    }
}

/// Activity penalty of one output of `batch` samples: the penalty of its values divided by the batch size.
pub fn activity_penalty(y: &[f32], penalty: Penalty, batch: usize) -> f64 {
    penalty.value(y) / batch.max(1) as f64
}

/// Adds the activity penalty's gradient (divided by the batch size) to the output gradient `dy`.
pub fn add_activity_gradient(y: &[f32], dy: &mut [f32], penalty: Penalty, batch: usize) {
    penalty.add_gradient(y, dy, 1.0 / batch.max(1) as f32);
}

/// Keras' weight constraints, applied after every optimizer step.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Constraint {
    /// Scales each slice whose norm over `axes` exceeds `max_value` back to it: `w * clip(n, 0, max) / (ε + n)`.
    MaxNorm {
        /// Largest norm.
        max_value: f32,
        /// Axes the norm is taken over (Keras' `axis`, non-negative).
        axes: &'static [usize],
    },
    /// Sets negative values to zero.
    NonNeg,
    /// Scales each slice to unit norm over `axes`: `w / (ε + n)`.
    UnitNorm {
        /// Axes the norm is taken over.
        axes: &'static [usize],
    },
    /// `w * (rate * clip(n, min, max) + (1 - rate) * n) / (ε + n)`.
    MinMaxNorm {
        /// Smallest norm.
        min_value: f32,
        /// Largest norm.
        max_value: f32,
        /// How far to move towards the interval each step (1: all the way).
        rate: f32,
        /// Axes the norm is taken over.
        axes: &'static [usize],
    },
}

/// A constrained parameter.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ParamConstraint {
    /// Offset in the flat buffer.
    pub offset: usize,
    /// The parameter's shape (Keras layout).
    pub shape: &'static [usize],
    /// The constraint.
    pub constraint: Constraint,
}

/// Keras' `backend.epsilon()`, added to norms before dividing.
const EPSILON: f32 = 1e-7;

/// Applies every constraint to its parameter in `params`.
pub fn constrain(params: &mut [f32], constraints: &[ParamConstraint]) {
    for c in constraints {
        let len: usize = c.shape.iter().product();
        let Some(w) = params.get_mut(c.offset..c.offset + len) else { continue };
        match c.constraint {
            Constraint::NonNeg => w.iter_mut().for_each(|v| *v = if *v >= 0.0 { *v } else { 0.0 }),
            Constraint::MaxNorm { max_value, axes } => rescale(w, c.shape, axes, |n| n.clamp(0.0, max_value) / (EPSILON + n)),
            Constraint::UnitNorm { axes } => rescale(w, c.shape, axes, |n| 1.0 / (EPSILON + n)),
            Constraint::MinMaxNorm { min_value, max_value, rate, axes } => {
                rescale(w, c.shape, axes, |n| (rate * n.clamp(min_value, max_value) + (1.0 - rate) * n) / (EPSILON + n))
            }
        }
    }
}

/// Multiplies each slice of `w` (of `shape`) spanning `axes` by `factor(norm of the slice)`.
/// Allocation-free: slices are enumerated by their multi-index.
fn rescale(w: &mut [f32], shape: &[usize], axes: &[usize], factor: impl Fn(f32) -> f32) {
    let rank = shape.len();
    let mut strides = [0usize; 8];
    let mut acc = 1;
    for d in (0..rank.min(8)).rev() {
        strides[d] = acc;
        acc *= shape[d];
    }
    let reduced = |d: usize| axes.contains(&d);
    let count = |keep: bool| (0..rank).filter(|&d| reduced(d) != keep).map(|d| shape[d]).product::<usize>();
    let (outer, inner) = (count(true), count(false));
    // The flat offset of the `k`-th combination of the axes that are (`of_reduced`) or are not reduced.
    let offset = |mut k: usize, of_reduced: bool| {
        let mut off = 0;
        for d in (0..rank.min(8)).rev() {
            if reduced(d) == of_reduced {
                off += (k % shape[d]) * strides[d];
                k /= shape[d];
            }
        }
        off
    };
    for o in 0..outer {
        let base = offset(o, false);
        let sq: f32 = (0..inner).filter_map(|i| w.get(base + offset(i, true))).map(|v| v * v).sum();
        let f = factor(sq.sqrt());
        for i in 0..inner {
            if let Some(v) = w.get_mut(base + offset(i, true)) {
                *v *= f;
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::init::{testing::check_grad, Rng};

    #[test]
    fn penalty_is_l1_abs_plus_l2_squares_without_a_half() {
        let p = Penalty { l1: 0.1, l2: 0.01 };
        let x = [1.0, -2.0, 0.0, 3.0];
        assert!((p.value(&x) - (0.1 * 6.0 + 0.01 * 14.0)).abs() < 1e-6);
    }

    #[test]
    fn penalty_gradient_matches_finite_differences() {
        let p = Penalty { l1: 0.3, l2: 0.2 };
        let mut rng = Rng::new(3);
        let x: Vec<f32> = (0..12).map(|_| rng.uniform(-1.0, 1.0)).filter(|v| v.abs() > 0.01).collect();
        let mut g = vec![0.0; x.len()];
        p.add_gradient(&x, &mut g, 1.0);
        check_grad("penalty", &x, &g, 1e-2, |x| p.value(x));
        let mut ga = vec![0.0; x.len()];
        add_activity_gradient(&x, &mut ga, p, 4);
        check_grad("activity penalty", &x, &ga, 1e-2, |x| activity_penalty(x, p, 4));
    }

    #[test]
    fn weight_penalties_sum_and_add_gradients_only_to_their_ranges() {
        let params = [1.0, 2.0, -3.0, 4.0];
        let pens = [WeightPenalty { offset: 1, len: 2, penalty: Penalty { l1: 0.0, l2: 0.5 } }];
        assert!((weight_penalty(&params, &pens) - 0.5 * 13.0).abs() < 1e-9);
        let mut g = [0.0; 4];
        add_weight_gradients(&params, &mut g, &pens);
        assert_eq!(g, [0.0, 2.0, -3.0, 0.0]);
    }

    #[test]
    fn max_norm_scales_columns_of_a_dense_kernel_over_axis_zero() {
        // A [2, 2] kernel; column 0 has norm 5, column 1 norm 1.
        let mut w = [3.0, 1.0, 4.0, 0.0];
        let c = [ParamConstraint { offset: 0, shape: &[2, 2], constraint: Constraint::MaxNorm { max_value: 2.0, axes: &[0] } }];
        constrain(&mut w, &c);
        let f = 2.0 / (5.0 + EPSILON);
        assert!((w[0] - 3.0 * f).abs() < 1e-6 && (w[2] - 4.0 * f).abs() < 1e-6);
        assert!((w[1] - 1.0 / (1.0 + EPSILON)).abs() < 1e-6 && w[3] == 0.0);
    }

    #[test]
    fn unit_norm_over_several_axes_and_non_neg_and_min_max_norm() {
        let mut w: Vec<f32> = (1..=8).map(|v| v as f32).collect();
        let c = [ParamConstraint { offset: 0, shape: &[2, 2, 2], constraint: Constraint::UnitNorm { axes: &[0, 1] } }];
        constrain(&mut w, &c);
        for last in 0..2 {
            let n: f32 = (0..4).map(|k| w[k * 2 + last].powi(2)).sum::<f32>().sqrt();
            assert!((n - 1.0).abs() < 1e-5, "norm {n}");
        }
        let mut v = [-1.0, 0.5, -0.0, 2.0];
        constrain(&mut v, &[ParamConstraint { offset: 0, shape: &[4], constraint: Constraint::NonNeg }]);
        assert_eq!(v, [0.0, 0.5, 0.0, 2.0]);
        let mut m = [0.3, 0.4];
        let mm = Constraint::MinMaxNorm { min_value: 1.0, max_value: 2.0, rate: 0.5, axes: &[0] };
        constrain(&mut m, &[ParamConstraint { offset: 0, shape: &[2], constraint: mm }]);
        // norm 0.5 -> desired 0.5 * 1 + 0.5 * 0.5 = 0.75.
        let n = (m[0] * m[0] + m[1] * m[1]).sqrt();
        assert!((n - 0.75).abs() < 1e-5, "norm {n}");
    }
}
