//! Optimizers (Keras 3 update rules) over the flat parameter and gradient buffers.

use crate::spec::ParamSpec;

/// Updates parameters from their gradients. Implementations update only the ranges of
/// `trainable` specs, in one pass over flat slices, and allocate their state on the first step.
pub trait Optimizer {
    /// Applies one update. `params` and `grads` are the model's flat buffers (same length),
    /// `specs` its parameter table (`Network::PARAMS`).
    fn step(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]);
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (for schedules), keeping the state.
    fn set_learning_rate(&mut self, lr: f32);
}

/// Calls `f(range)` for each maximal run of contiguous trainable elements.
fn for_trainable(specs: &[ParamSpec], len: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let mut run: Option<std::ops::Range<usize>> = None;
    for spec in specs.iter().filter(|s| s.trainable) {
        let r = spec.range();
        let r = r.start.min(len)..r.end.min(len);
        match &mut run {
            Some(cur) if cur.end == r.start => cur.end = r.end,
            _ => {
                if let Some(cur) = run.take() {
                    f(cur);
                }
                run = Some(r);
            }
        }
    }
    if let Some(cur) = run {
        f(cur);
    }
}

/// Stochastic gradient descent with optional (Nesterov) momentum, as `keras.optimizers.SGD`.
///
/// Without momentum: `p -= lr * g`. With momentum: `v = momentum * v - lr * g`, then
/// `p += v` (or `p += momentum * v - lr * g` with Nesterov).
#[derive(Clone, Debug)]
pub struct Sgd {
    /// Step size (Keras default 0.01).
    pub learning_rate: f32,
    /// Momentum factor in `[0, 1)` (Keras default 0.0).
    pub momentum: f32,
    /// Use Nesterov momentum (Keras default false).
    pub nesterov: bool,
    velocity: Vec<f32>,
}

impl Sgd {
    /// Plain SGD with learning rate `lr`, no momentum.
    pub fn new(lr: f32) -> Self {
        Sgd { learning_rate: lr, ..Sgd::default() }
    }

    /// Sets the momentum factor.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Turns Nesterov momentum on or off.
    pub fn with_nesterov(mut self, nesterov: bool) -> Self {
        self.nesterov = nesterov;
        self
    }
}

impl Default for Sgd {
    fn default() -> Self {
        Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false, velocity: Vec::new() }
    }
}

impl Optimizer for Sgd {
    fn step(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len().min(grads.len());
        let lr = self.learning_rate;
        let momentum = self.momentum;
        if momentum == 0.0 {
            for_trainable(specs, len, |r| {
                for (p, &g) in params[r.clone()].iter_mut().zip(&grads[r]) {
                    *p -= lr * g;
                }
            });
            return;
        }
        if self.velocity.len() != len {
            self.velocity = vec![0.0; len];
        }
        let velocity = &mut self.velocity;
        let nesterov = self.nesterov;
        for_trainable(specs, len, |r| {
            let it = params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(&mut velocity[r]);
            for ((p, &g), v) in it {
                *v = momentum * *v - lr * g;
                if nesterov {
                    *p += momentum * *v - lr * g;
                } else {
                    *p += *v;
                }
            }
        });
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }
}

/// Adam, as `keras.optimizers.Adam` (Keras 3 formulas, `amsgrad = false`). At step `t` (from 1):
///
/// ```text
/// alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
/// m += (g - m) * (1 - beta_1)
/// v += (g^2 - v) * (1 - beta_2)
/// p -= alpha * m / (sqrt(v) + epsilon)
/// ```
#[derive(Clone, Debug)]
pub struct Adam {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (Keras default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (Keras default 0.999).
    pub beta_2: f32,
    /// Added to the denominator (Keras default 1e-7).
    pub epsilon: f32,
    iterations: u64,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Adam {
    /// Adam with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        Adam { learning_rate: lr, ..Adam::default() }
    }

    /// Number of steps taken so far (Keras' `optimizer.iterations`).
    pub fn iterations(&self) -> u64 {
        self.iterations
    }
}

impl Default for Adam {
    fn default() -> Self {
        Adam { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, iterations: 0, m: Vec::new(), v: Vec::new() }
    }
}

impl Optimizer for Adam {
    fn step(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len().min(grads.len());
        if self.m.len() != len {
            self.m = vec![0.0; len];
            self.v = vec![0.0; len];
        }
        self.iterations += 1;
        // Keras computes the bias corrections in the variable's dtype (f32).
        let t = self.iterations as f32;
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let alpha = self.learning_rate * (1.0 - b2.powf(t)).sqrt() / (1.0 - b1.powf(t));
        let (m, v) = (&mut self.m, &mut self.v);
        let k = AdamStep { b1, b2, eps, alpha };
        for_trainable(specs, len, |r| k.run(&mut params[r.clone()], &grads[r.clone()], &mut m[r.clone()], &mut v[r]));
    }

    fn learning_rate(&self) -> f32 {
        self.learning_rate
    }

    fn set_learning_rate(&mut self, lr: f32) {
        self.learning_rate = lr;
    }
}

/// One Adam update of a run of parameters with their gradients and moments.
#[derive(Clone, Copy)]
struct AdamStep {
    b1: f32,
    b2: f32,
    eps: f32,
    /// The learning rate with both bias corrections.
    alpha: f32,
}

impl AdamStep {
    /// One pass over `p`, `g`, `m`, `v`, in 8-lane vectors where the CPU has AVX2 (the same values:
    /// the arithmetic is the same, only wider; the square root and division are the exact ones).
    fn run(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.run_avx2(p, g, m, v) };
        }
        self.run_portable(p, g, m, v)
    }

    /// [`AdamStep::run`] compiled for AVX2. Safety: the CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_avx2(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        self.run_portable(p, g, m, v)
    }

    #[inline(always)]
    fn run_portable(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32]) {
        let AdamStep { b1, b2, eps, alpha } = self;
        for ((p, &g), (m, v)) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v)) {
            *m += (g - *m) * (1.0 - b1);
            *v += (g * g - *v) * (1.0 - b2);
            *p -= alpha * *m / (v.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Init;

    const SPECS: &[ParamSpec] = &[
        ParamSpec { name: "dense/kernel", shape: &[2], offset: 0, init: Init::Zeros, trainable: true, statistic: false },
        ParamSpec { name: "frozen/kernel", shape: &[1], offset: 2, init: Init::Zeros, trainable: false, statistic: false },
        ParamSpec { name: "dense/bias", shape: &[1], offset: 3, init: Init::Zeros, trainable: true, statistic: false },
    ];

    #[test]
    fn sgd_first_steps_match_hand_computation() {
        let mut p = [1.0f32, -1.0, 5.0, 0.5];
        let g = [0.5f32, -2.0, 7.0, 1.0];
        let mut opt = Sgd::default();
        opt.step(&mut p, &g, SPECS);
        for (a, b) in p.iter().zip([0.995f32, -0.98, 5.0, 0.49]) {
            assert!((a - b).abs() < 1e-7, "{p:?}");
        }
        assert_eq!(p[2], 5.0, "frozen parameter moved");

        // Momentum 0.9, lr 0.1: v1 = -0.1 g, p1 = p0 + v1; v2 = 0.9 v1 - 0.1 g.
        let mut p = [1.0f32, 0.0, 5.0, 0.0];
        let g = [1.0f32, 0.0, 1.0, 0.0];
        let mut opt = Sgd::new(0.1).with_momentum(0.9);
        opt.step(&mut p, &g, SPECS);
        assert!((p[0] - 0.9).abs() < 1e-7);
        opt.step(&mut p, &g, SPECS);
        assert!((p[0] - (0.9 - 0.19)).abs() < 1e-6);
        assert_eq!(p[2], 5.0);

        // Nesterov: p1 = p0 + 0.9 v1 - 0.1 g = 1 - 0.09 - 0.1.
        let mut p = [1.0f32, 0.0, 0.0, 0.0];
        let mut opt = Sgd::new(0.1).with_momentum(0.9).with_nesterov(true);
        opt.step(&mut p, &g, SPECS);
        assert!((p[0] - 0.81).abs() < 1e-6);
    }

    #[test]
    fn adam_first_step_matches_hand_computation() {
        // t = 1: m = 0.1 g, v = 0.001 g^2, alpha = lr sqrt(0.001) / 0.1,
        // p -= alpha m / (sqrt(v) + eps) = lr * g / (|g| + eps / sqrt(0.001)) ~ lr * sign(g).
        let mut p = [1.0f32, 2.0, 3.0, 4.0];
        let g = [0.5f32, -0.25, 9.0, 1e-3];
        let mut opt = Adam::default();
        opt.step(&mut p, &g, SPECS);
        for (i, gi) in [(0usize, g[0]), (1, g[1]), (3, g[3])] {
            let gi = f64::from(gi);
            let m = 0.1 * gi;
            let v = 0.001 * gi * gi;
            let alpha = 0.001 * 0.001f64.sqrt() / 0.1;
            let expected = [1.0, 2.0, 3.0, 4.0][i] - alpha * m / (v.sqrt() + 1e-7);
            assert!((f64::from(p[i]) - expected).abs() < 1e-6, "{i}: {} vs {expected}", p[i]);
        }
        assert_eq!(p[2], 3.0, "frozen parameter moved");
        assert_eq!(opt.iterations(), 1);
    }

    #[test]
    fn adam_step_gives_the_portable_values_bit_for_bit() {
        // 37 elements: full 8-lane vectors and a tail on the AVX2 build.
        let n = 37;
        let val = |i: usize, s: f32| ((i * 37 % 11) as f32 - 5.0) * s;
        let (g, m0, v0): (Vec<f32>, Vec<f32>, Vec<f32>) = (0..n).map(|i| (val(i, 0.3), val(i + 3, 0.01), val(i + 5, 0.02).abs())).collect();
        let k = AdamStep { b1: 0.9, b2: 0.999, eps: 1e-7, alpha: 1e-3 };
        let (mut p, mut m, mut v) = (vec![0.5f32; n], m0.clone(), v0.clone());
        k.run(&mut p, &g, &mut m, &mut v);
        let (mut p2, mut m2, mut v2) = (vec![0.5f32; n], m0, v0);
        k.run_portable(&mut p2, &g, &mut m2, &mut v2);
        let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert_eq!((bits(&p), bits(&m), bits(&v)), (bits(&p2), bits(&m2), bits(&v2)));
        assert!(p.iter().any(|&x| x != 0.5), "nothing moved");
    }

    #[test]
    fn adam_converges_on_a_quadratic() {
        // f(p) = sum (p_i - c_i)^2 over the trainable elements.
        let c = [3.0f32, -2.0, 0.0, 0.5];
        let mut p = [0.0f32, 0.0, 7.0, 0.0];
        let mut g = [0.0f32; 4];
        let mut opt = Adam::new(0.05);
        for _ in 0..2000 {
            for i in 0..4 {
                g[i] = 2.0 * (p[i] - c[i]);
            }
            opt.step(&mut p, &g, SPECS);
        }
        for i in [0, 1, 3] {
            assert!((p[i] - c[i]).abs() < 1e-3, "p[{i}] = {}", p[i]);
        }
        assert_eq!(p[2], 7.0, "frozen parameter moved");
    }

    #[test]
    fn learning_rate_can_be_changed() {
        let mut opt = Adam::default();
        assert_eq!(opt.learning_rate(), 0.001);
        opt.set_learning_rate(0.5);
        assert_eq!(opt.learning_rate(), 0.5);
        let mut sgd = Sgd::default();
        sgd.set_learning_rate(0.2);
        assert_eq!(sgd.learning_rate(), 0.2);
    }
}
