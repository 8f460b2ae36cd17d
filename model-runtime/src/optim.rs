//! Optimizers (Keras 3 update rules) over the flat parameter and gradient buffers.
//!
//! Each optimizer is one Keras optimizer with its defaults: [`Sgd`], [`Adam`], [`AdamW`], [`RMSprop`],
//! [`Adagrad`], [`Nadam`], [`Adamax`] and [`Lion`]. All of them also take the arguments of Keras' base
//! `Optimizer` ([`Common`]): gradient clipping (`clipnorm`, `clipvalue`, `global_clipnorm`) and decoupled
//! weight decay, applied once here, before the optimizer's own update, exactly as Keras 3 does:
//!
//! ```text
//! g = clip(g)                          clipnorm: per parameter tensor, g * c / max(|g|, c)
//!                                      global_clipnorm: every tensor scaled by c * min(1 / |all g|, 1 / c)
//!                                      clipvalue: each element clamped to [-c, c]
//! p -= p * weight_decay * lr           every trainable tensor not excluded by name
//! update(p, g)                         the optimizer's own rule, with the same lr
//! ```
//!
//! Only trainable parameters (`ParamSpec::trainable`) are clipped, decayed or updated. State is
//! allocated on the first step; later steps allocate nothing.
//!
//! | Keras 3 | modelc |
//! |---|---|
//! | `SGD(learning_rate=0.1, momentum=0.9, nesterov=True)` | `Sgd::new(0.1).with_momentum(0.9).with_nesterov(true)` |
//! | `Adam(1e-3, beta_1=0.8, beta_2=0.99, epsilon=1e-6, amsgrad=True)` | `Adam::new(1e-3).with_betas(0.8, 0.99).with_epsilon(1e-6).with_amsgrad(true)` |
//! | `AdamW(1e-3, weight_decay=0.01)` | `AdamW::new(1e-3).with_weight_decay(0.01)` |
//! | `RMSprop(1e-3, rho=0.8, momentum=0.5, centered=True)` | `RMSprop::new(1e-3).with_rho(0.8).with_momentum(0.5).with_centered(true)` |
//! | `Adagrad(1e-2, initial_accumulator_value=0.2)` | `Adagrad::new(1e-2).with_initial_accumulator_value(0.2)` |
//! | `Nadam(1e-3)`, `Adamax(1e-3)`, `Lion(1e-4)` | `Nadam::new(1e-3)`, `Adamax::new(1e-3)`, `Lion::new(1e-4)` |
//! | `clipnorm=1.0` / `clipvalue=0.5` / `global_clipnorm=1.0` | `.with_clipnorm(1.0)` / `.with_clipvalue(0.5)` / `.with_global_clipnorm(1.0)` |
//! | `weight_decay=1e-4` | `.with_weight_decay(1e-4)` |
//! | `opt.exclude_from_weight_decay(var_names=["bias"])` | `.exclude_from_weight_decay(["bias"])` |
//! | `learning_rate=schedules.CosineDecay(...)` | `Fit { schedule: Some(Schedule::CosineDecay { .. }), .. }` |
//!
//! Not supported: `use_ema`, `loss_scale_factor`, `gradient_accumulation_steps`, and excluding
//! variables from weight decay by object (`var_list`; exclude them by name).

use crate::spec::ParamSpec;

/// Updates parameters from their gradients. Implementations update only the ranges of
/// `trainable` specs, in one pass over flat slices, and allocate their state on the first step.
pub trait Optimizer {
    /// Applies one update. `params` and `grads` are the model's flat buffers (same length),
    /// `specs` its parameter table (`Network::PARAMS`).
    fn step(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]);
    /// [`step`](Self::step), then the checked copy a trainer keeps to undo a step that makes a
    /// parameter non-finite: copies the new `params` into `keep` (as long as `params`) and returns
    /// the position of the first non-finite parameter, if any (`keep` is then left unspecified).
    ///
    /// The default steps, then checks and copies in a pass of its own. An optimizer whose update can
    /// write the copy as it goes overrides it to save that pass over the parameters ([`Adam`] does: for
    /// a small model at batch 1 the pass is a noticeable part of a step).
    fn step_and_keep(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], keep: &mut [f32]) -> Option<usize> {
        self.step(params, grads, specs);
        crate::train::check_and_copy(params, keep)
    }
    /// The current learning rate.
    fn learning_rate(&self) -> f32;
    /// Changes the learning rate (for schedules), keeping the state.
    fn set_learning_rate(&mut self, lr: f32);
    /// Shows `f` every part of the state (step counter, moment buffers, running scalars), in a fixed
    /// order, so that data-parallel training can copy rank 0's state to the other processes. The
    /// default shows nothing: right for an optimizer without state; one with state must show it, or
    /// processes that start from different states will diverge.
    fn visit_state(&mut self, f: &mut dyn FnMut(StateMut<'_>)) {
        let _ = f;
    }
    /// A name for each part [`visit_state`](Self::visit_state) shows, in its order (`iterations`, `m`,
    /// `v`, ...): the tensor names of the optimizer's state in a checkpoint
    /// ([`crate::checkpoint`]). The default names none, and the parts are then named `part_<i>`.
    fn state_names(&self) -> &'static [&'static str] {
        &[]
    }
    /// The optimizer's kind, recorded in a checkpoint so that loading into another optimizer is refused:
    /// the type's name by default.
    fn kind(&self) -> &'static str {
        std::any::type_name::<Self>()
    }
}

/// One part of an optimizer's state, as [`Optimizer::visit_state`] shows it.
#[derive(Debug)]
pub enum StateMut<'a> {
    /// The number of steps taken.
    Steps(&'a mut u64),
    /// A buffer (empty before the first step, one value per parameter after).
    Buffer(&'a mut Vec<f32>),
    /// A running scalar (Nadam's product of momentum factors).
    Scalar(&'a mut f32),
}

/// Calls `f(range)` for each maximal run of contiguous trainable elements.
fn for_trainable(specs: &[ParamSpec], len: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
    let mut run: Option<std::ops::Range<usize>> = None;
    for r in trainable_ranges(specs, len) {
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

/// The range of every trainable parameter tensor, cut to `len`.
fn trainable_ranges(specs: &[ParamSpec], len: usize) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    specs.iter().filter(|s| s.trainable).map(move |s| {
        let r = s.range();
        r.start.min(len)..r.end.min(len)
    })
}

/// Gradient clipping, as the base Keras optimizer's `clipnorm`, `clipvalue` and `global_clipnorm`
/// (Keras accepts at most one of them; here setting one replaces the other). A threshold that is
/// not positive clips nothing, as in Keras.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum Clip {
    /// No clipping (Keras' default).
    #[default]
    None,
    /// `clipnorm`: the gradient of each parameter tensor is scaled to an L2 norm of at most this.
    Norm(f32),
    /// `clipvalue`: each gradient element is clamped to `[-value, value]`.
    Value(f32),
    /// `global_clipnorm`: all gradients are scaled together to a joint L2 norm of at most this.
    GlobalNorm(f32),
}

/// The arguments every Keras optimizer takes from the base `Optimizer` (clipping and weight decay),
/// and the step counter. Set them with the optimizers' `with_*` methods, or here directly.
#[derive(Clone, Debug, Default)]
pub struct Common {
    /// Keras' `weight_decay`: before each update, every trainable tensor not excluded by name is
    /// decayed by `p -= p * weight_decay * learning_rate` (decoupled decay). `None` decays nothing.
    pub weight_decay: Option<f32>,
    /// Gradient clipping, applied before the update.
    pub clip: Clip,
    /// Keras' `exclude_from_weight_decay(var_names=...)`: a parameter whose name (`dense/bias`)
    /// contains one of these strings is not decayed. Empty by default: Keras decays every weight.
    pub exclude_from_weight_decay: Vec<String>,
    iterations: u64,
    /// The clipped gradients (only used when clipping is on).
    clipped: Vec<f32>,
}

impl Common {
    /// Keras' `_apply_weight_decay` then `_clip_gradients`, run before every update with its
    /// learning rate. Returns true when the clipped gradients were written to `clipped` (the update
    /// must then read those instead of `grads`); also counts the step.
    fn begin(&mut self, lr: f32, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], clipped: &mut Vec<f32>) -> bool {
        self.iterations += 1;
        let len = params.len().min(grads.len());
        if let Some(wd) = self.weight_decay {
            for spec in specs.iter().filter(|s| s.trainable && !self.exclude_from_weight_decay.iter().any(|n| s.name.contains(n.as_str())))
            {
                let r = spec.range();
                for p in &mut params[r.start.min(len)..r.end.min(len)] {
                    *p -= *p * wd * lr;
                }
            }
        }
        let clip = match self.clip {
            Clip::Norm(c) | Clip::Value(c) | Clip::GlobalNorm(c) if c > 0.0 => self.clip,
            _ => return false,
        };
        if clipped.len() != len {
            clipped.clear();
            clipped.resize(len, 0.0);
        }
        match clip {
            Clip::Value(c) => {
                for r in trainable_ranges(specs, len) {
                    for (o, &g) in clipped[r.clone()].iter_mut().zip(&grads[r]) {
                        *o = g.clamp(-c, c);
                    }
                }
            }
            Clip::Norm(c) => {
                for r in trainable_ranges(specs, len) {
                    // Keras' `_clip_by_norm`: g * c / max(norm, c), the norm 0 for a zero gradient.
                    let norm = sum_of_squares(&grads[r.clone()]).sqrt();
                    let denom = if norm.is_nan() { norm } else { norm.max(c) };
                    for (o, &g) in clipped[r.clone()].iter_mut().zip(&grads[r]) {
                        *o = g * c / denom;
                    }
                }
            }
            Clip::GlobalNorm(c) => {
                // Keras' `clip_by_global_norm`: one scale for all, NaN when the norm is not finite.
                let norm = trainable_ranges(specs, len).map(|r| sum_of_squares(&grads[r])).sum::<f32>().sqrt();
                let inv = 1.0 / norm;
                let min = if inv.is_nan() { inv } else { inv.min(1.0 / c) };
                let scale = if norm.is_finite() { c * min } else { f32::NAN };
                for r in trainable_ranges(specs, len) {
                    for (o, &g) in clipped[r.clone()].iter_mut().zip(&grads[r]) {
                        *o = g * scale;
                    }
                }
            }
            Clip::None => return false,
        }
        true
    }
}

/// The sum of squares of `x`, accumulated in f64.
fn sum_of_squares(x: &[f32]) -> f32 {
    x.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>() as f32
}

/// One optimizer's own update rule, run after clipping and weight decay.
trait Rule {
    /// Updates the trainable ranges of `params` from `grads` at step `t` (from 1) with rate `lr`.
    fn update(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]);

    /// [`update`](Self::update) writing each new parameter into `keep` too, returning whether every
    /// one is finite, when the rule can do so within its own pass; `None`, having changed nothing,
    /// when it cannot (the caller then runs `update` and checks and copies on its own).
    fn update_keep(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], keep: &mut [f32]) -> Option<bool> {
        let _ = (lr, t, params, grads, specs, keep);
        None
    }
}

/// Whether `specs` are all trainable and lie end to end over exactly `0..len` (in the order of their
/// offsets, as a model's table is), so that one pass over the whole buffer updates exactly the
/// trainable parameters. A table in any other order only takes the general way.
fn all_trainable(specs: &[ParamSpec], len: usize) -> bool {
    let mut end = 0;
    for s in specs {
        if !s.trainable || s.offset != end {
            return false;
        }
        end += s.len();
    }
    end == len
}

/// Implements [`Optimizer`] through [`Common::begin`] and the type's [`Rule`], and the builder
/// methods of the base Keras optimizer arguments.
macro_rules! keras_optimizer {
    ($name:ident [$($buf:ident $(. $sub:ident)?),*] [$($scalar:ident),*]) => {
        impl $name {
            /// Keras' `weight_decay`: decoupled decay `p -= p * weight_decay * learning_rate` before each update.
            pub fn with_weight_decay(mut self, weight_decay: f32) -> Self {
                self.common.weight_decay = Some(weight_decay);
                self
            }

            /// Keras' `clipnorm`: clips the gradient of each parameter tensor to this L2 norm.
            pub fn with_clipnorm(mut self, clipnorm: f32) -> Self {
                self.common.clip = Clip::Norm(clipnorm);
                self
            }

            /// Keras' `clipvalue`: clamps each gradient element to `[-clipvalue, clipvalue]`.
            pub fn with_clipvalue(mut self, clipvalue: f32) -> Self {
                self.common.clip = Clip::Value(clipvalue);
                self
            }

            /// Keras' `global_clipnorm`: scales all gradients together to this joint L2 norm at most.
            pub fn with_global_clipnorm(mut self, global_clipnorm: f32) -> Self {
                self.common.clip = Clip::GlobalNorm(global_clipnorm);
                self
            }

            /// Keras' `exclude_from_weight_decay(var_names=...)`: parameters whose name contains one of
            /// `names` (`"bias"`, `"gamma"`) are not decayed.
            pub fn exclude_from_weight_decay<S: Into<String>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
                self.common.exclude_from_weight_decay = names.into_iter().map(Into::into).collect();
                self
            }

            /// Number of steps taken so far (Keras' `optimizer.iterations`).
            pub fn iterations(&self) -> u64 {
                self.common.iterations
            }
        }

        impl $name {
            /// [`Optimizer::step`], and with `keep` [`Optimizer::step_and_keep`] (whose result it returns).
            fn step_keeping(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], keep: Option<&mut [f32]>) -> Option<usize> {
                let len = params.len().min(grads.len());
                let lr = self.learning_rate;
                // Taken out for the step so the update can borrow `self` (moving a Vec allocates nothing).
                let mut clipped = std::mem::take(&mut self.common.clipped);
                let grads = if self.common.begin(lr, params, grads, specs, &mut clipped) { &clipped[..len] } else { &grads[..len] };
                let t = self.common.iterations;
                let mut keep = keep;
                let kept = match keep.as_deref_mut() {
                    Some(k) if len == params.len() && k.len() == len => Rule::update_keep(self, lr, t, params, grads, specs, k),
                    _ => None,
                };
                if kept.is_none() {
                    Rule::update(self, lr, t, &mut params[..len], grads, specs);
                }
                self.common.clipped = clipped;
                match (kept, keep) {
                    (Some(true), _) | (None, None) => None,
                    (Some(false), _) => crate::train::first_non_finite(params),
                    (None, Some(k)) => crate::train::check_and_copy(params, k),
                }
            }
        }

        impl Optimizer for $name {
            fn step(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
                self.step_keeping(params, grads, specs, None);
            }

            fn step_and_keep(&mut self, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], keep: &mut [f32]) -> Option<usize> {
                self.step_keeping(params, grads, specs, Some(keep))
            }

            fn learning_rate(&self) -> f32 {
                self.learning_rate
            }

            fn set_learning_rate(&mut self, lr: f32) {
                self.learning_rate = lr;
            }

            fn visit_state(&mut self, f: &mut dyn FnMut(StateMut<'_>)) {
                f(StateMut::Steps(&mut self.common.iterations));
                $(f(StateMut::Buffer(&mut self.$buf $(. $sub)?));)*
                $(f(StateMut::Scalar(&mut self.$scalar));)*
            }

            fn state_names(&self) -> &'static [&'static str] {
                &["iterations" $(, concat!(stringify!($buf) $(, ".", stringify!($sub))?))* $(, stringify!($scalar))*]
            }
        }
    };
}

/// Resizes an optimizer state buffer to `len` elements of `init` when its length differs (the first step).
fn ensure(state: &mut Vec<f32>, len: usize, init: f32) {
    if state.len() != len {
        state.clear();
        state.resize(len, init);
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
    /// Momentum factor in `[0, 1]` (Keras default 0.0).
    pub momentum: f32,
    /// Use Nesterov momentum (Keras default false).
    pub nesterov: bool,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
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
        Sgd { learning_rate: 0.01, momentum: 0.0, nesterov: false, common: Common::default(), velocity: Vec::new() }
    }
}

keras_optimizer!(Sgd [velocity] []);

impl Rule for Sgd {
    fn update(&mut self, lr: f32, _t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        let momentum = self.momentum;
        if momentum == 0.0 {
            for_trainable(specs, len, |r| {
                for (p, &g) in params[r.clone()].iter_mut().zip(&grads[r]) {
                    *p -= lr * g;
                }
            });
            return;
        }
        ensure(&mut self.velocity, len, 0.0);
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
}

/// The moments of Adam and AdamW.
#[derive(Clone, Debug, Default)]
struct AdamState {
    m: Vec<f32>,
    v: Vec<f32>,
    /// The running maximum of `v` (`amsgrad` only).
    v_hat: Vec<f32>,
}

/// The hyper-parameters Adam and AdamW share.
#[derive(Clone, Copy)]
struct AdamHyper {
    beta_1: f32,
    beta_2: f32,
    epsilon: f32,
    amsgrad: bool,
}

impl AdamState {
    /// Keras 3's `Adam.update_step` at step `t` (from 1):
    ///
    /// ```text
    /// alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
    /// m += (g - m) * (1 - beta_1)
    /// v += (g^2 - v) * (1 - beta_2)
    /// v_hat = max(v_hat, v)                  (amsgrad only, then used for v)
    /// p -= alpha * m / (sqrt(v) + epsilon)
    /// ```
    fn update(&mut self, h: AdamHyper, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        ensure(&mut self.m, len, 0.0);
        ensure(&mut self.v, len, 0.0);
        let (b1, b2, eps) = (h.beta_1, h.beta_2, h.epsilon);
        let alpha = h.alpha(lr, t);
        let (m, v) = (&mut self.m, &mut self.v);
        if h.amsgrad {
            ensure(&mut self.v_hat, len, 0.0);
            let v_hat = &mut self.v_hat;
            for_trainable(specs, len, |r| {
                let it = params[r.clone()]
                    .iter_mut()
                    .zip(&grads[r.clone()])
                    .zip(m[r.clone()].iter_mut().zip(&mut v[r.clone()]))
                    .zip(&mut v_hat[r]);
                for (((p, &g), (m, v)), vh) in it {
                    *m += (g - *m) * (1.0 - b1);
                    *v += (g * g - *v) * (1.0 - b2);
                    *vh = vh.max(*v);
                    *p -= alpha * *m / (vh.sqrt() + eps);
                }
            });
            return;
        }
        let k = AdamStep { b1, b2, eps, alpha };
        for_trainable(specs, len, |r| k.run(&mut params[r.clone()], &grads[r.clone()], &mut m[r.clone()], &mut v[r]));
    }

    /// [`update`](Self::update) that writes the new parameters into `keep` in the same pass, when every
    /// parameter is trainable and AMSGrad is off (`None` otherwise, having changed nothing); returns
    /// whether they are all finite.
    #[allow(clippy::too_many_arguments)]
    fn update_keep(
        &mut self,
        h: AdamHyper,
        lr: f32,
        t: u64,
        params: &mut [f32],
        grads: &[f32],
        specs: &[ParamSpec],
        keep: &mut [f32],
    ) -> Option<bool> {
        let len = params.len();
        if h.amsgrad || grads.len() != len || keep.len() != len || !all_trainable(specs, len) {
            return None;
        }
        ensure(&mut self.m, len, 0.0);
        ensure(&mut self.v, len, 0.0);
        let k = AdamStep { b1: h.beta_1, b2: h.beta_2, eps: h.epsilon, alpha: h.alpha(lr, t) };
        Some(k.run_keep(params, grads, &mut self.m, &mut self.v, keep))
    }
}

impl AdamHyper {
    /// The step size at step `t` (from 1) with both bias corrections, `lr·sqrt(1 - beta_2^t) / (1 - beta_1^t)`.
    fn alpha(self, lr: f32, t: u64) -> f32 {
        // Keras computes the bias corrections in the variable's dtype (f32).
        let t = t as f32;
        lr * (1.0 - self.beta_2.powf(t)).sqrt() / (1.0 - self.beta_1.powf(t))
    }
}

/// Adam, as `keras.optimizers.Adam` (Keras 3 formulas). At step `t` (from 1):
///
/// ```text
/// alpha = lr * sqrt(1 - beta_2^t) / (1 - beta_1^t)
/// m += (g - m) * (1 - beta_1)
/// v += (g^2 - v) * (1 - beta_2)
/// p -= alpha * m / (sqrt(v) + epsilon)         (with amsgrad: v replaced by its running maximum)
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
    /// Use the running maximum of the second moment (AMSGrad; Keras default false).
    pub amsgrad: bool,
    /// Clipping and weight decay (Keras' base optimizer arguments; no weight decay by default).
    pub common: Common,
    state: AdamState,
}

/// AdamW, as `keras.optimizers.AdamW`: [`Adam`] with decoupled weight decay, 0.004 by default.
/// The decay `p -= p * weight_decay * lr` is applied to every trainable parameter before the Adam update
/// (use [`AdamW::exclude_from_weight_decay`] to spare biases or normalization weights).
#[derive(Clone, Debug)]
pub struct AdamW {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (Keras default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (Keras default 0.999).
    pub beta_2: f32,
    /// Added to the denominator (Keras default 1e-7).
    pub epsilon: f32,
    /// Use the running maximum of the second moment (AMSGrad; Keras default false).
    pub amsgrad: bool,
    /// Clipping and weight decay (Keras' base optimizer arguments; `weight_decay` 0.004 by default).
    pub common: Common,
    state: AdamState,
}

/// Constructors and the Adam-specific builders of [`Adam`] and [`AdamW`].
macro_rules! adam_like {
    ($name:ident, $weight_decay:expr) => {
        impl $name {
            /// With learning rate `lr` and Keras' other defaults.
            pub fn new(lr: f32) -> Self {
                $name { learning_rate: lr, ..$name::default() }
            }

            /// Sets `beta_1` and `beta_2`, the decay rates of the first and second moments.
            pub fn with_betas(mut self, beta_1: f32, beta_2: f32) -> Self {
                self.beta_1 = beta_1;
                self.beta_2 = beta_2;
                self
            }

            /// Sets `epsilon`, added to the denominator.
            pub fn with_epsilon(mut self, epsilon: f32) -> Self {
                self.epsilon = epsilon;
                self
            }

            /// Turns AMSGrad on or off.
            pub fn with_amsgrad(mut self, amsgrad: bool) -> Self {
                self.amsgrad = amsgrad;
                self
            }
        }

        impl Default for $name {
            fn default() -> Self {
                $name {
                    learning_rate: 0.001,
                    beta_1: 0.9,
                    beta_2: 0.999,
                    epsilon: 1e-7,
                    amsgrad: false,
                    common: Common { weight_decay: $weight_decay, ..Common::default() },
                    state: AdamState::default(),
                }
            }
        }

        keras_optimizer!($name [state.m, state.v, state.v_hat] []);

        impl Rule for $name {
            fn update(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
                let h = AdamHyper { beta_1: self.beta_1, beta_2: self.beta_2, epsilon: self.epsilon, amsgrad: self.amsgrad };
                self.state.update(h, lr, t, params, grads, specs);
            }

            fn update_keep(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec], keep: &mut [f32]) -> Option<bool> {
                let h = AdamHyper { beta_1: self.beta_1, beta_2: self.beta_2, epsilon: self.epsilon, amsgrad: self.amsgrad };
                self.state.update_keep(h, lr, t, params, grads, specs, keep)
            }
        }
    };
}

adam_like!(Adam, None);
adam_like!(AdamW, Some(0.004));

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

    /// [`AdamStep::run`] that also writes each new parameter into `keep` (same length as `p`) and
    /// returns whether all of them are finite: the trainer's undo copy and check without a pass of
    /// their own.
    fn run_keep(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], keep: &mut [f32]) -> bool {
        #[cfg(target_arch = "x86_64")]
        if is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU has AVX2.
            return unsafe { self.run_keep_avx2(p, g, m, v, keep) };
        }
        self.run_keep_portable(p, g, m, v, keep)
    }

    /// [`AdamStep::run_keep`] compiled for AVX2. Safety: the CPU must have AVX2.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn run_keep_avx2(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], keep: &mut [f32]) -> bool {
        self.run_keep_portable(p, g, m, v, keep)
    }

    #[inline(always)]
    fn run_keep_portable(self, p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], keep: &mut [f32]) -> bool {
        const EXP: u32 = 0x7f80_0000;
        let AdamStep { b1, b2, eps, alpha } = self;
        let mut bad = 0u32;
        for (((p, &g), (m, v)), k) in p.iter_mut().zip(g).zip(m.iter_mut().zip(v)).zip(keep) {
            *m += (g - *m) * (1.0 - b1);
            *v += (g * g - *v) * (1.0 - b2);
            *p -= alpha * *m / (v.sqrt() + eps);
            *k = *p;
            bad |= u32::from(p.to_bits() & EXP == EXP);
        }
        bad == 0
    }
}

/// RMSprop, as `keras.optimizers.RMSprop` (Keras 3 formulas):
///
/// ```text
/// v = rho * v + (1 - rho) * g^2
/// a = rho * a + (1 - rho) * g                  (centered only)
/// step = lr * g / sqrt(v - a^2 + epsilon)      (centered; otherwise lr * g / sqrt(v + epsilon))
/// mom = momentum * mom + step; p -= mom        (momentum > 0; otherwise p -= step)
/// ```
#[derive(Clone, Debug)]
pub struct RMSprop {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Decay of the moving average of squared gradients (Keras default 0.9).
    pub rho: f32,
    /// Momentum factor (Keras default 0.0: none).
    pub momentum: f32,
    /// Added inside the square root (Keras default 1e-7).
    pub epsilon: f32,
    /// Divide by the estimated variance instead of the second moment (Keras default false).
    pub centered: bool,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
    velocity: Vec<f32>,
    momentums: Vec<f32>,
    average_gradient: Vec<f32>,
}

impl RMSprop {
    /// RMSprop with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        RMSprop { learning_rate: lr, ..RMSprop::default() }
    }

    /// Sets `rho`.
    pub fn with_rho(mut self, rho: f32) -> Self {
        self.rho = rho;
        self
    }

    /// Sets the momentum factor.
    pub fn with_momentum(mut self, momentum: f32) -> Self {
        self.momentum = momentum;
        self
    }

    /// Sets `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }

    /// Turns the centered variant on or off.
    pub fn with_centered(mut self, centered: bool) -> Self {
        self.centered = centered;
        self
    }
}

impl Default for RMSprop {
    fn default() -> Self {
        RMSprop {
            learning_rate: 0.001,
            rho: 0.9,
            momentum: 0.0,
            epsilon: 1e-7,
            centered: false,
            common: Common::default(),
            velocity: Vec::new(),
            momentums: Vec::new(),
            average_gradient: Vec::new(),
        }
    }
}

keras_optimizer!(RMSprop [velocity, momentums, average_gradient] []);

impl Rule for RMSprop {
    fn update(&mut self, lr: f32, _t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        let (rho, momentum, eps, centered) = (self.rho, self.momentum, self.epsilon, self.centered);
        ensure(&mut self.velocity, len, 0.0);
        // Keras keeps the momentum and average-gradient slots only when they are used.
        ensure(&mut self.momentums, if momentum > 0.0 { len } else { 0 }, 0.0);
        ensure(&mut self.average_gradient, if centered { len } else { 0 }, 0.0);
        let (velocity, moms, avg) = (&mut self.velocity, &mut self.momentums, &mut self.average_gradient);
        for_trainable(specs, len, |r| {
            for i in r {
                let g = grads[i];
                let v = rho * velocity[i] + (1.0 - rho) * (g * g);
                velocity[i] = v;
                let denominator = if centered {
                    let a = rho * avg[i] + (1.0 - rho) * g;
                    avg[i] = a;
                    v - a * a + eps
                } else {
                    v + eps
                };
                let increment = lr * g / denominator.sqrt();
                if momentum > 0.0 {
                    let m = momentum * moms[i] + increment;
                    moms[i] = m;
                    params[i] -= m;
                } else {
                    params[i] -= increment;
                }
            }
        });
    }
}

/// Adagrad, as `keras.optimizers.Adagrad` (Keras 3 formulas): the accumulator starts at
/// `initial_accumulator_value`, then `acc += g^2; p -= lr * g / sqrt(acc + epsilon)`.
#[derive(Clone, Debug)]
pub struct Adagrad {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Starting value of the accumulators (Keras default 0.1).
    pub initial_accumulator_value: f32,
    /// Added inside the square root (Keras default 1e-7).
    pub epsilon: f32,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
    accumulators: Vec<f32>,
}

impl Adagrad {
    /// Adagrad with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        Adagrad { learning_rate: lr, ..Adagrad::default() }
    }

    /// Sets the starting value of the accumulators.
    pub fn with_initial_accumulator_value(mut self, value: f32) -> Self {
        self.initial_accumulator_value = value;
        self
    }

    /// Sets `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for Adagrad {
    fn default() -> Self {
        Adagrad { learning_rate: 0.001, initial_accumulator_value: 0.1, epsilon: 1e-7, common: Common::default(), accumulators: Vec::new() }
    }
}

keras_optimizer!(Adagrad [accumulators] []);

impl Rule for Adagrad {
    fn update(&mut self, lr: f32, _t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        let eps = self.epsilon;
        ensure(&mut self.accumulators, len, self.initial_accumulator_value);
        let acc = &mut self.accumulators;
        for_trainable(specs, len, |r| {
            for ((p, &g), a) in params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(&mut acc[r]) {
                *a += g * g;
                *p -= lr * g / (*a + eps).sqrt();
            }
        });
    }
}

/// Nadam (Adam with Nesterov momentum), as `keras.optimizers.Nadam` (Keras 3 formulas, with its
/// momentum schedule `u_t = beta_1 * (1 - 0.5 * 0.96^t)` and running product `u_prod`):
///
/// ```text
/// u_prod *= u_t                                 (once per step)
/// m += (g - m) * (1 - beta_1);   v += (g^2 - v) * (1 - beta_2)
/// m_hat = u_{t+1} * m / (1 - u_prod * u_{t+1}) + (1 - u_t) * g / (1 - u_prod)
/// v_hat = v / (1 - beta_2^t)
/// p -= m_hat * lr / (sqrt(v_hat) + epsilon)
/// ```
#[derive(Clone, Debug)]
pub struct Nadam {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (Keras default 0.9).
    pub beta_1: f32,
    /// Decay of the second moment (Keras default 0.999).
    pub beta_2: f32,
    /// Added to the denominator (Keras default 1e-7).
    pub epsilon: f32,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
    u_product: f32,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl Nadam {
    /// Nadam with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        Nadam { learning_rate: lr, ..Nadam::default() }
    }

    /// Sets `beta_1` and `beta_2`.
    pub fn with_betas(mut self, beta_1: f32, beta_2: f32) -> Self {
        self.beta_1 = beta_1;
        self.beta_2 = beta_2;
        self
    }

    /// Sets `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for Nadam {
    fn default() -> Self {
        Nadam {
            learning_rate: 0.001,
            beta_1: 0.9,
            beta_2: 0.999,
            epsilon: 1e-7,
            common: Common::default(),
            u_product: 1.0,
            m: Vec::new(),
            v: Vec::new(),
        }
    }
}

keras_optimizer!(Nadam [m, v] [u_product]);

impl Rule for Nadam {
    fn update(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        ensure(&mut self.m, len, 0.0);
        ensure(&mut self.v, len, 0.0);
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let (t, next) = (t as f32, (t + 1) as f32);
        let u_t = b1 * (1.0 - 0.5 * 0.96f32.powf(t));
        let u_t_1 = b1 * (1.0 - 0.5 * 0.96f32.powf(next));
        self.u_product = self.u_product * b1 * (1.0 - 0.5 * 0.96f32.powf(t));
        let u_product_t = self.u_product;
        let u_product_t_1 = u_product_t * u_t_1;
        let beta_2_power = b2.powf(t);
        let (m, v) = (&mut self.m, &mut self.v);
        for_trainable(specs, len, |r| {
            let it = params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(m[r.clone()].iter_mut().zip(&mut v[r]));
            for ((p, &g), (m, v)) in it {
                *m += (g - *m) * (1.0 - b1);
                *v += (g * g - *v) * (1.0 - b2);
                let m_hat = u_t_1 * *m / (1.0 - u_product_t_1) + (1.0 - u_t) * g / (1.0 - u_product_t);
                let v_hat = *v / (1.0 - beta_2_power);
                *p -= m_hat * lr / (v_hat.sqrt() + eps);
            }
        });
    }
}

/// Adamax (Adam with the infinity norm), as `keras.optimizers.Adamax` (Keras 3 formulas):
///
/// ```text
/// m += (g - m) * (1 - beta_1)
/// u = max(beta_2 * u, |g|)
/// p -= lr * m / ((1 - beta_1^t) * (u + epsilon))
/// ```
#[derive(Clone, Debug)]
pub struct Adamax {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Decay of the first moment (Keras default 0.9).
    pub beta_1: f32,
    /// Decay of the infinity norm (Keras default 0.999).
    pub beta_2: f32,
    /// Added to the denominator (Keras default 1e-7).
    pub epsilon: f32,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
    m: Vec<f32>,
    u: Vec<f32>,
}

impl Adamax {
    /// Adamax with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        Adamax { learning_rate: lr, ..Adamax::default() }
    }

    /// Sets `beta_1` and `beta_2`.
    pub fn with_betas(mut self, beta_1: f32, beta_2: f32) -> Self {
        self.beta_1 = beta_1;
        self.beta_2 = beta_2;
        self
    }

    /// Sets `epsilon`.
    pub fn with_epsilon(mut self, epsilon: f32) -> Self {
        self.epsilon = epsilon;
        self
    }
}

impl Default for Adamax {
    fn default() -> Self {
        Adamax { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.999, epsilon: 1e-7, common: Common::default(), m: Vec::new(), u: Vec::new() }
    }
}

keras_optimizer!(Adamax [m, u] []);

impl Rule for Adamax {
    fn update(&mut self, lr: f32, t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        ensure(&mut self.m, len, 0.0);
        ensure(&mut self.u, len, 0.0);
        let (b1, b2, eps) = (self.beta_1, self.beta_2, self.epsilon);
        let correction = 1.0 - b1.powf(t as f32);
        let (m, u) = (&mut self.m, &mut self.u);
        for_trainable(specs, len, |r| {
            let it = params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(m[r.clone()].iter_mut().zip(&mut u[r]));
            for ((p, &g), (m, u)) in it {
                *m += (g - *m) * (1.0 - b1);
                // NaN-propagating, as Keras' `maximum`.
                let decayed = b2 * *u;
                *u = if g.is_nan() || decayed.is_nan() { f32::NAN } else { decayed.max(g.abs()) };
                *p -= lr * *m / (correction * (*u + eps));
            }
        });
    }
}

/// Lion, as `keras.optimizers.Lion` (Keras 3 formulas; `beta_1` must lie in `(0, 1]`):
///
/// ```text
/// p -= lr * sign(beta_1 * m + (1 - beta_1) * g)      (sign(0) = 0)
/// m = beta_2 * m + (1 - beta_2) * g
/// ```
#[derive(Clone, Debug)]
pub struct Lion {
    /// Step size (Keras default 0.001).
    pub learning_rate: f32,
    /// Interpolation of the update direction (Keras default 0.9).
    pub beta_1: f32,
    /// Decay of the momentum (Keras default 0.99).
    pub beta_2: f32,
    /// Clipping and weight decay (Keras' base optimizer arguments).
    pub common: Common,
    momentums: Vec<f32>,
}

impl Lion {
    /// Lion with learning rate `lr` and Keras' other defaults.
    pub fn new(lr: f32) -> Self {
        Lion { learning_rate: lr, ..Lion::default() }
    }

    /// Sets `beta_1` and `beta_2`.
    pub fn with_betas(mut self, beta_1: f32, beta_2: f32) -> Self {
        self.beta_1 = beta_1;
        self.beta_2 = beta_2;
        self
    }
}

impl Default for Lion {
    fn default() -> Self {
        Lion { learning_rate: 0.001, beta_1: 0.9, beta_2: 0.99, common: Common::default(), momentums: Vec::new() }
    }
}

keras_optimizer!(Lion [momentums] []);

/// `sign(x)` as Keras' `ops.sign`: 0 for zero, NaN for NaN (not `f32::signum`, which gives ±1 for ±0).
fn sign(x: f32) -> f32 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        x
    }
}

impl Rule for Lion {
    fn update(&mut self, lr: f32, _t: u64, params: &mut [f32], grads: &[f32], specs: &[ParamSpec]) {
        let len = params.len();
        ensure(&mut self.momentums, len, 0.0);
        let (b1, b2) = (self.beta_1, self.beta_2);
        let moms = &mut self.momentums;
        for_trainable(specs, len, |r| {
            for ((p, &g), m) in params[r.clone()].iter_mut().zip(&grads[r.clone()]).zip(&mut moms[r]) {
                *p -= lr * sign(*m * b1 + g * (1.0 - b1));
                *m = *m * b2 + g * (1.0 - b2);
            }
        });
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
    fn step_and_keep_gives_steps_values_and_a_checked_copy() {
        // Every parameter trainable: Adam updates and keeps in one pass (`update_keep`); with a frozen
        // one (SPECS), with AMSGrad or with clipping it steps and then checks and copies. Both give
        // `step`'s values and a copy of them, three steps running, and name the first non-finite one.
        const ALL: &[ParamSpec] = &[
            ParamSpec { name: "dense/kernel", shape: &[3, 3], offset: 0, init: Init::Zeros, trainable: true, statistic: false },
            ParamSpec { name: "dense/bias", shape: &[3], offset: 9, init: Init::Zeros, trainable: true, statistic: false },
        ];
        let g: Vec<f32> = (0..12).map(|i| (i as f32 * 0.7).sin()).collect();
        let optimizers = || [Adam::default(), Adam::default().with_amsgrad(true), Adam::default().with_clipnorm(0.5)];
        for specs in [ALL, SPECS] {
            let len = specs.iter().map(|s| s.offset + s.len()).max().unwrap_or(0);
            for (mut a, mut b) in optimizers().into_iter().zip(optimizers()) {
                let (mut p, mut q) = (vec![0.5f32; len], vec![0.5f32; len]);
                let mut keep = vec![f32::NAN; len];
                for _ in 0..3 {
                    a.step(&mut p, &g[..len], specs);
                    assert_eq!(b.step_and_keep(&mut q, &g[..len], specs, &mut keep), None);
                    assert_eq!(p, q);
                    assert_eq!(keep, q);
                }
                let mut bad = g[..len].to_vec();
                bad[len - 1] = f32::INFINITY;
                assert_eq!(b.step_and_keep(&mut q, &bad, specs, &mut keep), Some(len - 1), "{specs:?}");
            }
        }
        // A parameter table out of offset order takes the general way, with the same values.
        let reversed = [ALL[1], ALL[0]];
        let (mut a, mut b) = (Adam::default(), Adam::default());
        let (mut p, mut q, mut keep) = (vec![0.5f32; 12], vec![0.5f32; 12], vec![0.0f32; 12]);
        a.step(&mut p, &g, ALL);
        assert_eq!(b.step_and_keep(&mut q, &g, &reversed, &mut keep), None);
        assert_eq!(q, p);
        assert_eq!(keep, p);
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

    /// Plain SGD with learning rate 1 moves each parameter by minus its (clipped) gradient.
    fn moved_by(opt: &mut Sgd, g: [f32; 4]) -> [f32; 4] {
        let mut p = [0.0f32; 4];
        opt.step(&mut p, &g, SPECS);
        p.map(|x| -x)
    }

    #[test]
    fn clipnorm_clips_each_parameter_tensor_on_its_own() {
        // Kernel gradient norm 5 -> scaled to norm 1; bias norm 0.5 < 1 -> unchanged; frozen untouched.
        let moved = moved_by(&mut Sgd::new(1.0).with_clipnorm(1.0), [3.0, 4.0, 100.0, 0.5]);
        assert_eq!(moved, [0.6, 0.8, 0.0, 0.5]);
    }

    #[test]
    fn global_clipnorm_scales_all_trainable_gradients_together() {
        // Trainable norm sqrt(9 + 16) = 5 (the frozen 100 does not count): scale 1 / 5.
        let moved = moved_by(&mut Sgd::new(1.0).with_global_clipnorm(1.0), [3.0, 0.0, 100.0, 4.0]);
        assert_eq!(moved, [0.6, 0.0, 0.0, 0.8]);
        // A non-finite norm gives NaN parameters, as Keras.
        let moved = moved_by(&mut Sgd::new(1.0).with_global_clipnorm(1.0), [f32::INFINITY, 0.0, 0.0, 1.0]);
        assert!(moved[0].is_nan() && moved[3].is_nan() && moved[2] == 0.0, "{moved:?}");
    }

    #[test]
    fn clipvalue_clamps_each_element_and_a_non_positive_threshold_clips_nothing() {
        assert_eq!(moved_by(&mut Sgd::new(1.0).with_clipvalue(0.5), [3.0, -4.0, 100.0, 0.25]), [0.5, -0.5, 0.0, 0.25]);
        assert_eq!(moved_by(&mut Sgd::new(1.0).with_clipnorm(0.0), [3.0, -4.0, 100.0, 0.25]), [3.0, -4.0, 0.0, 0.25]);
        // The last clipping option set wins (Keras accepts only one).
        let opt = Sgd::new(1.0).with_clipnorm(1.0).with_clipvalue(2.0);
        assert_eq!(opt.common.clip, Clip::Value(2.0));
    }

    #[test]
    fn weight_decay_is_decoupled_and_skips_excluded_names() {
        // Zero gradients: only the decay p -= p * wd * lr = p * 0.05 moves anything.
        let mut p = [1.0f32, -2.0, 5.0, 4.0];
        let mut opt = Sgd::new(0.1).with_weight_decay(0.5);
        opt.step(&mut p, &[0.0; 4], SPECS);
        assert_eq!(p, [0.95, -1.9, 5.0, 3.8]);
        let mut p = [1.0f32, -2.0, 5.0, 4.0];
        let mut opt = Sgd::new(0.1).with_weight_decay(0.5).exclude_from_weight_decay(["bias"]);
        opt.step(&mut p, &[0.0; 4], SPECS);
        assert_eq!(p, [0.95, -1.9, 5.0, 4.0]);
        // AdamW decays by default (0.004), Adam does not.
        assert_eq!(AdamW::default().common.weight_decay, Some(0.004));
        assert_eq!(Adam::default().common.weight_decay, None);
    }

    #[test]
    fn lion_does_not_move_where_its_direction_is_zero() {
        let mut p = [1.0f32, 1.0, 1.0, 1.0];
        let mut opt = Lion::new(0.1);
        opt.step(&mut p, &[0.0, -3.0, 1.0, 2.0], SPECS);
        assert_eq!(p, [1.0, 1.1, 1.0, 0.9]);
    }

    #[test]
    fn adagrad_accumulators_start_at_their_initial_value() {
        // acc = 0.1 + 0.09 = 0.19: p -= 0.1 * 0.3 / sqrt(0.19 + 1e-7).
        let mut p = [0.0f32; 4];
        let mut opt = Adagrad::new(0.1);
        opt.step(&mut p, &[0.3, 0.0, 0.0, 0.0], SPECS);
        assert!((p[0] + 0.03 / 0.19f32.sqrt()).abs() < 1e-7, "{p:?}");
        assert_eq!(opt.iterations(), 1);
    }

    #[test]
    fn amsgrad_steps_no_further_than_adam() {
        // After a large gradient then a small one, AMSGrad keeps the large second moment.
        let (mut p1, mut p2) = ([0.0f32; 4], [0.0f32; 4]);
        let (mut adam, mut ams) = (Adam::new(0.1), Adam::new(0.1).with_amsgrad(true));
        for g in [[10.0f32, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0], [0.1, 0.0, 0.0, 0.0]] {
            adam.step(&mut p1, &g, SPECS);
            ams.step(&mut p2, &g, SPECS);
        }
        assert!(p2[0] > p1[0] && p2[0] < 0.0, "amsgrad {} vs adam {}", p2[0], p1[0]);
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

    /// Copies every part of `from`'s state into `to` through `visit_state`, as data-parallel training
    /// broadcasts rank 0's optimizer.
    fn copy_state<O: Optimizer>(from: &mut O, to: &mut O) {
        let mut parts: Vec<(Vec<f32>, u64)> = Vec::new();
        from.visit_state(&mut |part| match part {
            StateMut::Steps(n) => parts.push((Vec::new(), *n)),
            StateMut::Buffer(b) => parts.push((b.clone(), 0)),
            StateMut::Scalar(x) => parts.push((vec![*x], 0)),
        });
        let mut parts = parts.into_iter();
        to.visit_state(&mut |part| {
            let (values, steps) = parts.next().unwrap_or_default();
            match part {
                StateMut::Steps(n) => *n = steps,
                StateMut::Buffer(b) => *b = values,
                StateMut::Scalar(x) => *x = values.first().copied().unwrap_or(0.0),
            }
        });
    }

    /// Two steps on `a`; `b`, fresh, takes `a`'s state; then both step on the same gradients and must
    /// agree bit for bit (they would not if a part of the state were missing from `visit_state`).
    fn state_copy_continues_identically<O: Optimizer + Clone>(fresh: O) {
        let mut p = [1.0f32, -1.0, 5.0, 0.5];
        let (g1, g2) = ([0.5f32, -2.0, 7.0, 1.0], [-0.3f32, 0.7, 1.0, 2.0]);
        let mut a = fresh.clone();
        a.step(&mut p, &g1, SPECS);
        a.step(&mut p, &g2, SPECS);
        let mut b = fresh;
        copy_state(&mut a, &mut b);
        let (mut pa, mut pb) = (p, p);
        a.step(&mut pa, &g1, SPECS);
        b.step(&mut pb, &g1, SPECS);
        assert_eq!(pa.map(f32::to_bits), pb.map(f32::to_bits), "{pa:?} vs {pb:?}");
    }

    #[test]
    fn visit_state_shows_every_part_of_every_optimizer() {
        state_copy_continues_identically(Sgd::new(0.1).with_momentum(0.9));
        state_copy_continues_identically(Adam::new(0.1).with_amsgrad(true));
        state_copy_continues_identically(AdamW::new(0.1));
        state_copy_continues_identically(RMSprop::new(0.1).with_momentum(0.5).with_centered(true));
        state_copy_continues_identically(Adagrad::new(0.1));
        state_copy_continues_identically(Nadam::new(0.1));
        state_copy_continues_identically(Adamax::new(0.1));
        state_copy_continues_identically(Lion::new(0.1));
    }
}
