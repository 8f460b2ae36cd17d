//! The arguments Keras gives every weight of a layer: `<weight>_initializer`, `<weight>_regularizer`
//! and `<weight>_constraint` (`kernel_initializer = he_normal(seed = 3)`, `kernel_regularizer =
//! l2(1e-4)`, `kernel_constraint = max_norm(2.0)`), and the `activity_regularizer` and `dtype` every
//! layer takes. Each layer reads the ones of its weights in its own `parse` with [`WeightArgs::read`]
//! and applies them to its parameters with [`ParamDecl::with`].

use super::args::{describe, list, ArgReader};
use super::{InitKind, ParamDecl};
use crate::ast::{ArgKind, ArgValue, Args};
use crate::diag::Diagnostic;
use crate::suggest::did_you_mean;
use proc_macro2::Span;

/// Which fan `variance_scaling` divides its scale by (Keras' `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FanMode {
    /// `fan_in`.
    FanIn,
    /// `fan_out`.
    FanOut,
    /// `(fan_in + fan_out) / 2`.
    FanAvg,
}

/// The distribution `variance_scaling` draws from (Keras' `distribution`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Distribution {
    /// Normal truncated at two standard deviations.
    TruncatedNormal,
    /// Normal.
    UntruncatedNormal,
    /// Uniform.
    Uniform,
}

/// An initializer as written, before the parameter's shape gives its fans.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum InitSpec {
    /// `zeros`.
    Zeros,
    /// `ones`.
    Ones,
    /// `constant(value)`.
    Constant(f32),
    /// `random_normal(mean, stddev, seed)`.
    RandomNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
        /// Seed.
        seed: Option<u64>,
    },
    /// `random_uniform(minval, maxval, seed)`.
    RandomUniform {
        /// Lower bound.
        minval: f32,
        /// Upper bound.
        maxval: f32,
        /// Seed.
        seed: Option<u64>,
    },
    /// `truncated_normal(mean, stddev, seed)`.
    TruncatedNormal {
        /// Mean.
        mean: f32,
        /// Standard deviation.
        stddev: f32,
        /// Seed.
        seed: Option<u64>,
    },
    /// `variance_scaling(scale, mode, distribution, seed)` and its named instances.
    VarianceScaling {
        /// Scale.
        scale: f32,
        /// Fan mode.
        mode: FanMode,
        /// Distribution.
        distribution: Distribution,
        /// Seed.
        seed: Option<u64>,
    },
    /// `orthogonal(gain, seed)`.
    Orthogonal {
        /// Gain.
        gain: f32,
        /// Seed.
        seed: Option<u64>,
    },
    /// `identity(gain)`.
    Identity {
        /// Gain.
        gain: f32,
    },
}

/// Keras' fans of a weight of `shape` (`compute_fans`): rank 1 both the length, rank 2 the two axes,
/// higher ranks the last two axes times the product of the others (the receptive field).
pub fn keras_fans(shape: &[usize]) -> (usize, usize) {
    match shape {
        [] => (1, 1),
        [n] => (*n, *n),
        [a, b] => (*a, *b),
        [lead @ .., i, o] => {
            let field: usize = lead.iter().product();
            (i.saturating_mul(field), o.saturating_mul(field))
        }
    }
}

impl InitSpec {
    /// The initializer of a parameter of `shape`.
    pub fn resolve(self, shape: &[usize]) -> InitKind {
        let (fan_in, fan_out) = keras_fans(shape);
        let rows = shape.split_last().map_or(1, |(_, lead)| lead.iter().product());
        let cols = shape.last().copied().unwrap_or(1);
        match self {
            InitSpec::Zeros => InitKind::Zeros,
            InitSpec::Ones => InitKind::Ones,
            InitSpec::Constant(value) => InitKind::Constant(value),
            InitSpec::RandomNormal { mean, stddev, seed } => InitKind::RandomNormal { mean, stddev, seed },
            InitSpec::RandomUniform { minval, maxval, seed } => InitKind::RandomUniform { minval, maxval, seed },
            InitSpec::TruncatedNormal { mean, stddev, seed } => InitKind::TruncatedNormal { mean, stddev, seed },
            // Unseeded `glorot_uniform` is the default kernel initializer: the same values as without it.
            InitSpec::VarianceScaling { scale: 1.0, mode: FanMode::FanAvg, distribution: Distribution::Uniform, seed: None } => {
                InitKind::GlorotUniform { fan_in, fan_out }
            }
            InitSpec::VarianceScaling { scale, mode, distribution, seed } => {
                InitKind::VarianceScaling { scale, mode, distribution, fan_in, fan_out, seed }
            }
            InitSpec::Orthogonal { gain, seed } => InitKind::Orthogonal { gain, rows, cols, seed },
            InitSpec::Identity { gain } => InitKind::Identity { gain, rows, cols },
        }
    }
}

/// A regularizer: penalty `l1 * Σ|x| + l2 * Σx²` (Keras 3, no ½).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Penalty {
    /// L1 factor.
    pub l1: f32,
    /// L2 factor.
    pub l2: f32,
}

/// A weight constraint, applied after each optimizer step.
#[derive(Clone, Debug, PartialEq)]
pub enum ConstraintSpec {
    /// `max_norm(max_value = 2.0, axis = 0)`.
    MaxNorm {
        /// Largest norm.
        max_value: f32,
        /// Axes of the norm, as written (may be negative).
        axis: Vec<i64>,
    },
    /// `non_neg`.
    NonNeg,
    /// `unit_norm(axis = 0)`.
    UnitNorm {
        /// Axes of the norm.
        axis: Vec<i64>,
    },
    /// `min_max_norm(min_value = 0.0, max_value = 1.0, rate = 1.0, axis = 0)`.
    MinMaxNorm {
        /// Smallest norm.
        min_value: f32,
        /// Largest norm.
        max_value: f32,
        /// Rate.
        rate: f32,
        /// Axes of the norm.
        axis: Vec<i64>,
    },
}

impl ConstraintSpec {
    /// The norm axes made non-negative for a weight of rank `rank` (checked at parse time).
    pub fn axes(&self, rank: usize) -> Vec<usize> {
        let axis = match self {
            ConstraintSpec::MaxNorm { axis, .. } | ConstraintSpec::UnitNorm { axis } | ConstraintSpec::MinMaxNorm { axis, .. } => axis,
            ConstraintSpec::NonNeg => return Vec::new(),
        };
        let mut out: Vec<usize> = axis.iter().filter_map(|&a| usize::try_from(if a < 0 { a + rank as i64 } else { a }).ok()).collect();
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The three arguments of one weight, as written.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct WeightArgs {
    /// `<weight>_initializer`, when given (else the layer's default).
    pub init: Option<InitSpec>,
    /// `<weight>_regularizer`.
    pub regularizer: Option<Penalty>,
    /// `<weight>_constraint`.
    pub constraint: Option<ConstraintSpec>,
}

/// The argument names of one weight and its rank (known before shapes for every layer kind).
#[derive(Clone, Copy, Debug)]
pub struct Role {
    /// `kernel_initializer`.
    pub initializer: &'static str,
    /// `kernel_regularizer`.
    pub regularizer: &'static str,
    /// `kernel_constraint`.
    pub constraint: &'static str,
    /// The weight's rank.
    pub rank: usize,
}

/// The [`Role`] of weight `$w` of rank `$rank`: `role!("kernel", 2)`.
macro_rules! role {
    ($w:literal, $rank:expr) => {
        $crate::layers::weights::Role {
            initializer: concat!($w, "_initializer"),
            regularizer: concat!($w, "_regularizer"),
            constraint: concat!($w, "_constraint"),
            rank: $rank,
        }
    };
}
pub(crate) use role;

/// Keras' initializer names (snake case; the class names are accepted too).
pub const INITIALIZERS: &[&str] = &[
    "zeros",
    "ones",
    "constant",
    "random_normal",
    "random_uniform",
    "truncated_normal",
    "glorot_normal",
    "glorot_uniform",
    "he_normal",
    "he_uniform",
    "lecun_normal",
    "lecun_uniform",
    "orthogonal",
    "variance_scaling",
    "identity",
];

/// Keras' regularizer names.
pub const REGULARIZERS: &[&str] = &["l1", "l2", "l1_l2"];

/// Keras' constraint names modelc applies.
pub const CONSTRAINTS: &[&str] = &["max_norm", "non_neg", "unit_norm", "min_max_norm"];

/// A Keras object as written: its name (snake case, from an identifier, a string or a class name),
/// its arguments, and where it was written.
struct Object<'v> {
    name: String,
    args: Option<&'v Args>,
    span: Span,
}

/// `he_normal`, `"he_normal"`, `HeNormal`, `he_normal(seed = 3)`: the name in snake case and the arguments.
fn object(v: &ArgValue) -> Option<Object<'_>> {
    let (name, args) = match &v.kind {
        ArgKind::Ident(id) => (id.to_string(), None),
        ArgKind::Str(s) => (s.clone(), None),
        ArgKind::Call(id, args) => (id.to_string(), Some(args)),
        _ => return None,
    };
    let name = if name.chars().next().is_some_and(|c| c.is_ascii_uppercase()) { class_to_snake(&name) } else { name };
    // Keras' aliases.
    let name = match name.as_str() {
        "uniform" => "random_uniform".to_string(),
        "normal" => "random_normal".to_string(),
        "zero" => "zeros".to_string(),
        "one" => "ones".to_string(),
        _ => name,
    };
    Some(Object { name, args, span: v.span })
}

/// Keras' class names of initializers, regularizers and constraints in snake case: `GlorotUniform` ->
/// `glorot_uniform`, `L1L2` -> `l1_l2`, `MaxNorm` -> `max_norm`, `NonNeg` -> `non_neg`.
fn class_to_snake(name: &str) -> String {
    match name {
        "L1" => "l1".into(),
        "L2" => "l2".into(),
        "L1L2" => "l1_l2".into(),
        _ => super::snake_case(name),
    }
}

impl WeightArgs {
    /// Reads `role`'s three arguments from `r`; `None` when one was invalid (reported).
    pub fn read(r: &mut ArgReader<'_>, role: Role) -> Option<WeightArgs> {
        let init = r.raw(role.initializer, None).map(|v| read_init_value(r, role, &v));
        let regularizer = r.raw(role.regularizer, None).map(|v| read_regularizer(r, role.regularizer, &v));
        let constraint = r.raw(role.constraint, None).map(|v| read_constraint(r, role, &v));
        Some(WeightArgs { init: given(init)?, regularizer: given(regularizer)?, constraint: given(constraint)? })
    }
}

/// An argument read only if given: `None` when given but invalid, else `Some` of what was given.
fn given<T>(x: Option<Option<T>>) -> Option<Option<T>> {
    match x {
        None => Some(None),
        Some(v) => v.map(Some),
    }
}

/// `role`'s initializer alone (`moving_mean_initializer`: a statistic has no regularizer or
/// constraint); the outer `None` when it was invalid (reported), the inner one when not given.
pub fn read_initializer(r: &mut ArgReader<'_>, role: Role) -> Option<Option<InitSpec>> {
    match r.raw(role.initializer, None) {
        Some(v) => read_init_value(r, role, &v).map(Some),
        None => Some(None),
    }
}

/// `activity_regularizer`, which every Keras layer takes; `None` inside when not given.
pub fn read_activity(r: &mut ArgReader<'_>) -> Option<Option<Penalty>> {
    match r.raw("activity_regularizer", None) {
        Some(v) => read_regularizer(r, "activity_regularizer", &v).map(Some),
        None => Some(None),
    }
}

/// `dtype`, which every Keras layer takes: only `"float32"` (or `float32`, or a `float32` policy),
/// which keeps the layer in f32 under the model's `mixed_bfloat16` policy (as a Keras layer with its
/// own `float32` policy in a mixed model). `None` when invalid (reported), else whether it was given.
pub fn read_dtype(r: &mut ArgReader<'_>) -> Option<bool> {
    let Some(v) = r.raw("dtype", None) else { return Some(false) };
    let kind = r.kind();
    let word = match &v.kind {
        ArgKind::Str(s) => s.clone(),
        ArgKind::Ident(id) => id.to_string(),
        other => {
            r.error(
                Diagnostic::new(v.span, format!("`dtype` of {kind} must be a string, got {}", describe(other)))
                    .help("write `dtype = \"float32\"` or leave it out"),
            );
            return None;
        }
    };
    if word == "float32" {
        return Some(true);
    }
    let help = if word == "mixed_bfloat16" {
        "write `dtype = \"float32\"` or leave it out, and set the model's policy instead: `#[dtype_policy = \"mixed_bfloat16\"]` on the model (its layers follow it)"
    } else {
        "write `dtype = \"float32\"` or leave it out (in Keras, set the layer's or the global dtype policy to \"float32\" before saving)"
    };
    r.error(
        Diagnostic::new(v.span, format!("{kind} has dtype \"{word}\", but a layer computes in float32 or in its model's policy"))
            .help(help),
    );
    None
}

/// The problems of one object's arguments, reported against `what` (`he_normal`).
struct ObjArgs<'r, 'a, 'v> {
    r: &'r mut ArgReader<'a>,
    what: String,
    args: Vec<(&'v crate::ast::Arg, bool)>,
    known: Vec<&'static str>,
    failed: bool,
}

impl<'r, 'a, 'v> ObjArgs<'r, 'a, 'v> {
    fn new(r: &'r mut ArgReader<'a>, obj: &Object<'v>) -> Self {
        let args = obj.args.map(|a| a.items.iter().map(|x| (x, false)).collect()).unwrap_or_default();
        ObjArgs { r, what: obj.name.clone(), args, known: Vec::new(), failed: false }
    }

    /// The value of `name`, by keyword or at position `pos`.
    fn raw(&mut self, name: &'static str, pos: Option<usize>) -> Option<ArgValue> {
        self.known.push(name);
        let mut positional = 0usize;
        let mut found = None;
        for (arg, used) in &mut self.args {
            let hit = match &arg.key {
                Some(k) => k == name,
                None => {
                    positional += 1;
                    Some(positional - 1) == pos
                }
            };
            if hit && found.is_none() {
                *used = true;
                found = Some(arg.value.clone());
            }
        }
        found
    }

    fn number(&mut self, name: &'static str, pos: Option<usize>, default: f64) -> f32 {
        match self.raw(name, pos) {
            None => default as f32,
            Some(ArgValue { kind: ArgKind::Float(x), span }) if !(x as f32).is_finite() => {
                // Past f32's range, the weights it sets or bounds would be infinities.
                self.fail(
                    Diagnostic::new(span, format!("`{name}` of {} is {x:?}, which is not a finite float32 number", self.what))
                        .help(format!("use a value between -3.4e38 and 3.4e38, like `{name} = {default:?}`")),
                );
                default as f32
            }
            Some(ArgValue { kind: ArgKind::Float(x), .. }) => x as f32,
            Some(ArgValue { kind: ArgKind::Int(n), .. }) => n as f32,
            Some(ArgValue { kind: ArgKind::Ident(id), .. }) if id == "None" && name == "max_value" => f32::INFINITY,
            Some(v) => {
                self.fail(
                    Diagnostic::new(v.span, format!("`{name}` of {} must be a number, got {}", self.what, describe(&v.kind)))
                        .help(format!("write a number, like `{name} = {default:?}`")),
                );
                default as f32
            }
        }
    }

    fn seed(&mut self) -> Option<u64> {
        match self.raw("seed", None)? {
            ArgValue { kind: ArgKind::Int(n), .. } if n >= 0 => u64::try_from(n).ok(),
            ArgValue { kind: ArgKind::Ident(id), .. } if id == "None" => None,
            v => {
                self.fail(
                    Diagnostic::new(v.span, format!("`seed` of {} must be a non-negative integer, got {}", self.what, describe(&v.kind)))
                        .help("write an integer, like `seed = 3`"),
                );
                None
            }
        }
    }

    fn word(&mut self, name: &'static str, choices: &[&'static str], default: &'static str) -> &'static str {
        let Some(v) = self.raw(name, None) else { return default };
        let word = match &v.kind {
            ArgKind::Str(s) => s.clone(),
            ArgKind::Ident(id) => id.to_string(),
            _ => String::new(),
        };
        match choices.iter().find(|c| **c == word) {
            Some(c) => c,
            None => {
                self.fail(
                    Diagnostic::new(
                        v.span,
                        format!("`{name}` of {} must be one of {}, got {}", self.what, list(choices), describe(&v.kind)),
                    )
                    .help(format!("write one of {}", list(choices))),
                );
                default
            }
        }
    }

    fn axis(&mut self, rank: usize) -> Vec<i64> {
        let Some(v) = self.raw("axis", None) else { return vec![0] };
        let items: Vec<&ArgValue> = match &v.kind {
            ArgKind::Tuple(items) => items.iter().collect(),
            _ => vec![&v],
        };
        let mut out = Vec::new();
        for it in items {
            match it.kind {
                ArgKind::Int(a) if a >= -(rank as i64) && a < rank as i64 => out.push(a),
                _ => {
                    let what = self.what.clone();
                    self.fail(
                        Diagnostic::new(
                            it.span,
                            format!("`axis` of {what} must be an axis of the weight of rank {rank}, got {}", describe(&it.kind)),
                        )
                        .help(format!("use an integer in [-{rank}, {}] or a tuple of them, like `axis = 0`", rank.saturating_sub(1))),
                    );
                }
            }
        }
        out
    }

    fn fail(&mut self, d: Diagnostic) {
        self.failed = true;
        self.r.error(d);
    }

    /// Reports unknown keywords and extra positionals; true when the arguments were all valid.
    fn finish(mut self) -> bool {
        let known = std::mem::take(&mut self.known);
        let what = self.what.clone();
        let unused: Vec<(Span, Option<String>)> = self
            .args
            .iter()
            .filter(|(_, used)| !*used)
            .map(|(a, _)| (a.key.as_ref().map_or(a.value.span, |k| k.span()), a.key.as_ref().map(|k| k.to_string())))
            .collect();
        for (span, key) in unused {
            let takes = if known.is_empty() { format!("{what} takes no arguments") } else { format!("{what} takes {}", list(&known)) };
            match key {
                Some(k) => {
                    let help = match did_you_mean(&k, known.iter().copied()) {
                        Some(s) => format!("did you mean `{s}`? {takes}"),
                        None => takes,
                    };
                    self.fail(Diagnostic::new(span, format!("{what} has no argument `{k}`")).help(help));
                }
                None => self.fail(
                    Diagnostic::new(span, format!("too many positional arguments for {what}"))
                        .help(format!("pass them by keyword: {takes}")),
                ),
            }
        }
        !self.failed
    }
}

/// Which kind of Keras object an argument names, for [`unknown`].
#[derive(Clone, Copy)]
enum Family {
    Initializer,
    Regularizer,
    Constraint,
}

/// Reports `v` as not an object of `family` for argument `name`, with the choices and a suggestion.
fn unknown(r: &mut ArgReader<'_>, name: &str, v: &ArgValue, family: Family) {
    let (choices, example) = match family {
        Family::Initializer => (INITIALIZERS, "he_normal(seed = 3)"),
        Family::Regularizer => (REGULARIZERS, "l2(1e-4)"),
        Family::Constraint => (CONSTRAINTS, "max_norm(max_value = 2.0)"),
    };
    let got = match object(v) {
        Some(o) => format!("`{}`", o.name),
        None => describe(&v.kind),
    };
    let kind = r.kind();
    let help = match object(v).and_then(|o| did_you_mean(&o.name, choices.iter().copied())) {
        Some(s) => format!("did you mean `{s}`? modelc supports {}, e.g. `{name} = {example}`", list(choices)),
        None => format!("modelc supports {}, e.g. `{name} = {example}`", list(choices)),
    };
    let d = match family {
        Family::Initializer => Diagnostic::new(v.span, format!("unknown initializer {got} for `{name}` of {kind}")),
        Family::Regularizer => Diagnostic::new(v.span, format!("unknown regularizer {got} for `{name}` of {kind}")),
        Family::Constraint => Diagnostic::new(v.span, format!("unsupported constraint {got} for `{name}` of {kind}")),
    };
    let d = d.help(help);
    r.error(d);
}

fn read_init_value(r: &mut ArgReader<'_>, role: Role, v: &ArgValue) -> Option<InitSpec> {
    let name = role.initializer;
    let Some(obj) = object(v).filter(|o| INITIALIZERS.contains(&o.name.as_str())) else {
        unknown(r, name, v, Family::Initializer);
        return None;
    };
    let vs = |scale, mode, distribution| (scale, mode, distribution);
    let named = match obj.name.as_str() {
        "glorot_normal" => Some(vs(1.0, FanMode::FanAvg, Distribution::TruncatedNormal)),
        "glorot_uniform" => Some(vs(1.0, FanMode::FanAvg, Distribution::Uniform)),
        "he_normal" => Some(vs(2.0, FanMode::FanIn, Distribution::TruncatedNormal)),
        "he_uniform" => Some(vs(2.0, FanMode::FanIn, Distribution::Uniform)),
        "lecun_normal" => Some(vs(1.0, FanMode::FanIn, Distribution::TruncatedNormal)),
        "lecun_uniform" => Some(vs(1.0, FanMode::FanIn, Distribution::Uniform)),
        _ => None,
    };
    let span = obj.span;
    let mut a = ObjArgs::new(r, &obj);
    let spec = match (obj.name.as_str(), named) {
        (_, Some((scale, mode, distribution))) => InitSpec::VarianceScaling { scale, mode, distribution, seed: a.seed() },
        ("zeros", _) => InitSpec::Zeros,
        ("ones", _) => InitSpec::Ones,
        ("constant", _) => InitSpec::Constant(a.number("value", Some(0), 0.0)),
        ("random_normal", _) => {
            InitSpec::RandomNormal { mean: a.number("mean", Some(0), 0.0), stddev: a.number("stddev", Some(1), 0.05), seed: a.seed() }
        }
        ("random_uniform", _) => InitSpec::RandomUniform {
            minval: a.number("minval", Some(0), -0.05),
            maxval: a.number("maxval", Some(1), 0.05),
            seed: a.seed(),
        },
        ("truncated_normal", _) => {
            InitSpec::TruncatedNormal { mean: a.number("mean", Some(0), 0.0), stddev: a.number("stddev", Some(1), 0.05), seed: a.seed() }
        }
        ("variance_scaling", _) => {
            let scale = a.number("scale", Some(0), 1.0);
            let mode = match a.word("mode", &["fan_in", "fan_out", "fan_avg"], "fan_in") {
                "fan_out" => FanMode::FanOut,
                "fan_avg" => FanMode::FanAvg,
                _ => FanMode::FanIn,
            };
            let distribution =
                match a.word("distribution", &["truncated_normal", "untruncated_normal", "uniform", "normal"], "truncated_normal") {
                    "untruncated_normal" => Distribution::UntruncatedNormal,
                    "uniform" => Distribution::Uniform,
                    _ => Distribution::TruncatedNormal,
                };
            if scale <= 0.0 {
                a.fail(
                    Diagnostic::new(span, format!("`scale` of variance_scaling must be positive, got {scale}"))
                        .help("use a positive scale, like `scale = 2.0`"),
                );
            }
            InitSpec::VarianceScaling { scale, mode, distribution, seed: a.seed() }
        }
        ("orthogonal", _) => InitSpec::Orthogonal { gain: a.number("gain", Some(0), 1.0), seed: a.seed() },
        _ => InitSpec::Identity { gain: a.number("gain", Some(0), 1.0) },
    };
    let ok = a.finish();
    let kind = r.kind();
    match spec {
        InitSpec::Orthogonal { .. } if role.rank < 2 => {
            r.error(
                Diagnostic::new(span, format!("`orthogonal` cannot initialize the rank-{} weight `{name}` of {kind}", role.rank))
                    .help("Keras' orthogonal initializer needs a weight of rank 2 or more: use `zeros`, `ones` or `random_normal` here"),
            );
            None
        }
        InitSpec::Identity { .. } if role.rank != 2 => {
            r.error(
                Diagnostic::new(span, format!("`identity` cannot initialize the rank-{} weight `{name}` of {kind}", role.rank))
                    .help("Keras' identity initializer makes 2-D matrices only: use it on a Dense kernel, or `orthogonal` here"),
            );
            None
        }
        _ if ok => Some(spec),
        _ => None,
    }
}

fn read_regularizer(r: &mut ArgReader<'_>, name: &'static str, v: &ArgValue) -> Option<Penalty> {
    let Some(obj) = object(v).filter(|o| REGULARIZERS.contains(&o.name.as_str())) else {
        unknown(r, name, v, Family::Regularizer);
        return None;
    };
    let span = obj.span;
    let mut a = ObjArgs::new(r, &obj);
    // Keras 3's defaults: `l1` and `l2` 0.01, `l1_l2` 0.0 each.
    let p = match obj.name.as_str() {
        "l1" => Penalty { l1: a.number("l1", Some(0), 0.01), l2: 0.0 },
        "l2" => Penalty { l1: 0.0, l2: a.number("l2", Some(0), 0.01) },
        _ => Penalty { l1: a.number("l1", Some(0), 0.0), l2: a.number("l2", Some(1), 0.0) },
    };
    if !(p.l1 >= 0.0 && p.l2 >= 0.0 && p.l1.is_finite() && p.l2.is_finite()) {
        a.fail(
            Diagnostic::new(span, format!("the factors of {} must be finite and non-negative, got l1 = {}, l2 = {}", obj.name, p.l1, p.l2))
                .help("use a small positive factor, like `l2(1e-4)`"),
        );
    }
    a.finish().then_some(p)
}

fn read_constraint(r: &mut ArgReader<'_>, role: Role, v: &ArgValue) -> Option<ConstraintSpec> {
    let name = role.constraint;
    let Some(obj) = object(v).filter(|o| CONSTRAINTS.contains(&o.name.as_str())) else {
        unknown(r, name, v, Family::Constraint);
        return None;
    };
    let mut a = ObjArgs::new(r, &obj);
    let c = match obj.name.as_str() {
        "non_neg" => ConstraintSpec::NonNeg,
        "max_norm" => ConstraintSpec::MaxNorm { max_value: a.number("max_value", Some(0), 2.0), axis: a.axis(role.rank) },
        "unit_norm" => ConstraintSpec::UnitNorm { axis: a.axis(role.rank) },
        _ => ConstraintSpec::MinMaxNorm {
            min_value: a.number("min_value", Some(0), 0.0),
            max_value: a.number("max_value", Some(1), 1.0),
            rate: a.number("rate", None, 1.0),
            axis: a.axis(role.rank),
        },
    };
    a.finish().then_some(c)
}

impl ParamDecl {
    /// A parameter with no regularizer and no constraint.
    pub fn new(suffix: &'static str, shape: Vec<usize>, init: InitKind, trainable: bool) -> ParamDecl {
        ParamDecl { suffix, shape, init, trainable, regularizer: None, constraint: None }
    }

    /// This parameter with the initializer, regularizer and constraint written for it.
    pub fn with(mut self, w: &WeightArgs) -> ParamDecl {
        if let Some(init) = w.init {
            self.init = init.resolve(&self.shape);
        }
        self.regularizer = w.regularizer;
        self.constraint = w.constraint.clone();
        self
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::tests::{errors, typed_of};
    use crate::layers::LayerDef;
    use crate::shape::Shape;

    fn dense(args: &str) -> String {
        format!("struct M {{ input x: [4]; output y = Dense(3, {args})(x); }}")
    }

    fn params_of(src: &str) -> Vec<ParamDecl> {
        let typed = typed_of(src);
        let layer = typed.model.layers.iter().find(|l| l.keras_type != "Flatten").unwrap();
        layer.kind.as_ref().unwrap().params(&[Shape(vec![4])])
    }

    #[test]
    fn keras_fans_follow_compute_fans() {
        assert_eq!(keras_fans(&[7]), (7, 7));
        assert_eq!(keras_fans(&[4, 3]), (4, 3));
        assert_eq!(keras_fans(&[3, 3, 2, 8]), (18, 72));
    }

    #[test]
    fn named_initializers_are_variance_scaling_instances_with_seeds_and_aliases() {
        let p = params_of(&dense("kernel_initializer = he_normal(seed = 3), bias_initializer = \"Constant\""));
        assert_eq!(
            p[0].init,
            InitKind::VarianceScaling {
                scale: 2.0,
                mode: FanMode::FanIn,
                distribution: Distribution::TruncatedNormal,
                fan_in: 4,
                fan_out: 3,
                seed: Some(3)
            }
        );
        assert_eq!(p[1].init, InitKind::Constant(0.0));
        // Unseeded glorot_uniform is the default: the very same initializer.
        assert_eq!(params_of(&dense("kernel_initializer = GlorotUniform"))[0].init, InitKind::GlorotUniform { fan_in: 4, fan_out: 3 });
        let p = params_of(&dense("kernel_initializer = uniform, bias_initializer = constant(value = 0.5)"));
        assert_eq!(p[0].init, InitKind::RandomUniform { minval: -0.05, maxval: 0.05, seed: None });
        assert_eq!(p[1].init, InitKind::Constant(0.5));
        let p = params_of(&dense("kernel_initializer = variance_scaling(3.0, mode = fan_out, distribution = \"uniform\", seed = 1)"));
        assert!(matches!(
            p[0].init,
            InitKind::VarianceScaling { scale: 3.0, mode: FanMode::FanOut, distribution: Distribution::Uniform, .. }
        ));
        assert_eq!(params_of(&dense("kernel_initializer = identity(2.0)"))[0].init, InitKind::Identity { gain: 2.0, rows: 4, cols: 3 });
    }

    #[test]
    fn regularizers_take_keras_defaults_positions_and_keywords() {
        let p = params_of(&dense("kernel_regularizer = l2(1e-4), bias_regularizer = l1"));
        assert_eq!(p[0].regularizer, Some(Penalty { l1: 0.0, l2: 1e-4 }));
        assert_eq!(p[1].regularizer, Some(Penalty { l1: 0.01, l2: 0.0 }));
        let p = params_of(&dense("kernel_regularizer = l1_l2(l2 = 0.5), bias_regularizer = L1L2(0.1, 0.2)"));
        assert_eq!(p[0].regularizer, Some(Penalty { l1: 0.0, l2: 0.5 }));
        assert_eq!(p[1].regularizer, Some(Penalty { l1: 0.1, l2: 0.2 }));
    }

    #[test]
    fn constraints_keep_their_axes() {
        let p = params_of(&dense("kernel_constraint = max_norm(3, axis = -1), bias_constraint = NonNeg"));
        assert_eq!(p[0].constraint, Some(ConstraintSpec::MaxNorm { max_value: 3.0, axis: vec![-1] }));
        assert_eq!(p[0].constraint.as_ref().unwrap().axes(2), vec![1]);
        assert_eq!(p[1].constraint, Some(ConstraintSpec::NonNeg));
        let c = ConstraintSpec::UnitNorm { axis: vec![0, 1, -2] };
        assert_eq!(c.axes(4), vec![0, 1, 2]);
    }

    #[test]
    fn every_layer_kind_with_weights_takes_its_keras_weight_arguments() {
        let ok = [
            "Conv2D(2, 2, kernel_initializer = orthogonal(seed = 1), bias_regularizer = l2(0.1))(Reshape((2, 2, 1))(x))",
            "Conv1DTranspose(2, 3, kernel_constraint = unit_norm(axis = (0, 1)))(Reshape((4, 1))(x))",
            "DepthwiseConv1D(2, depthwise_initializer = lecun_uniform, depthwise_regularizer = l1(0.1))(Reshape((4, 1))(x))",
            "BatchNormalization(gamma_regularizer = l2(0.1), beta_constraint = non_neg, moving_variance_initializer = constant(2.0))(x)",
            "LayerNormalization(gamma_initializer = random_normal(1.0, 0.1), beta_regularizer = l1)(x)",
            "Dropout(0.5, dtype = \"float32\", activity_regularizer = l2(0.1))(x)",
        ];
        for layer in ok {
            let src = format!("struct M {{ input x: [4]; output y = {layer}; }}");
            assert_eq!(errors(&src), vec![], "{src}");
        }
        let emb = "struct M { input t: [3] as i32; output y = Flatten()(Embedding(10, 2, embeddings_initializer = he_uniform, embeddings_regularizer = l2(0.1))(t)); }";
        assert_eq!(errors(emb), vec![]);
    }

    fn one_error(src: &str) -> (String, String) {
        let e = errors(src);
        assert_eq!(e.len(), 1, "{src}: {e:?}");
        let (m, h) = e.into_iter().next().unwrap();
        (m, h.unwrap_or_default())
    }

    #[test]
    fn unknown_names_get_a_suggestion_and_the_list() {
        let (m, h) = one_error(&dense("kernel_initializer = he_norml"));
        assert_eq!(m, "unknown initializer `he_norml` for `kernel_initializer` of Dense");
        assert!(h.starts_with("did you mean `he_normal`?"), "{h}");
        let (m, h) = one_error(&dense("kernel_regularizer = l3(0.1)"));
        assert_eq!(m, "unknown regularizer `l3` for `kernel_regularizer` of Dense");
        assert!(h.contains("`l1`, `l2` or `l1_l2`"), "{h}");
        let (m, _) = one_error(&dense("kernel_constraint = RadialConstraint"));
        assert_eq!(m, "unsupported constraint `radial_constraint` for `kernel_constraint` of Dense");
        let (m, _) = one_error(&dense("kernel_regularizer = 0.1"));
        assert_eq!(m, "unknown regularizer the number 0.1 for `kernel_regularizer` of Dense");
    }

    #[test]
    fn bad_object_arguments_are_reported_at_the_value() {
        let (m, h) = one_error(&dense("kernel_initializer = he_normal(sed = 3)"));
        assert_eq!((m.as_str(), h.as_str()), ("he_normal has no argument `sed`", "did you mean `seed`? he_normal takes `seed`"));
        assert_eq!(one_error(&dense("kernel_regularizer = l2(0.1, 0.2)")).0, "too many positional arguments for l2");
        assert!(one_error(&dense("kernel_initializer = he_normal(seed = -1)")).0.contains("must be a non-negative integer"));
        assert!(one_error(&dense("kernel_regularizer = l1_l2(l1 = -0.1)")).0.contains("must be finite and non-negative"));
        assert!(one_error(&dense("kernel_constraint = max_norm(axis = 2)")).0.contains("must be an axis of the weight of rank 2"));
        assert!(one_error(&dense("kernel_initializer = variance_scaling(mode = fan_both)")).0.contains("must be one of"));
        assert!(one_error(&dense("kernel_initializer = variance_scaling(0)")).0.contains("must be positive"));
        assert!(one_error(&dense("bias_initializer = orthogonal")).0.contains("cannot initialize the rank-1 weight"));
        let conv = "struct M { input x: [4, 4, 1]; output y = Conv2D(2, 3, kernel_initializer = identity)(x); }";
        assert!(one_error(conv).0.contains("`identity` cannot initialize the rank-4 weight"));
    }

    #[test]
    fn dtype_other_than_float32_is_an_error_with_the_fix() {
        let (m, h) = one_error(&dense("dtype = \"mixed_float16\""));
        assert_eq!(m, "Dense has dtype \"mixed_float16\", but a layer computes in float32 or in its model's policy");
        assert!(h.starts_with("write `dtype = \"float32\"` or leave it out"), "{h}");
        assert!(one_error(&dense("dtype = 32")).0.contains("must be a string"));
        assert_eq!(errors(&dense("dtype = float32")), vec![]);
    }

    #[test]
    fn a_layer_with_an_activity_regularizer_does_not_fuse_its_activation_with_the_loss() {
        let src = "struct M { input x: [4]; output y = Dense(3, activation = softmax, activity_regularizer = l2(0.1))(x); }";
        let plan = crate::plan::plan(typed_of(src));
        assert_eq!(plan.outputs[0].fusable, crate::layers::Act::Linear);
        let src = "struct M { input x: [4]; output y = Dense(3, activation = softmax)(x); }";
        assert_ne!(crate::plan::plan(typed_of(src)).outputs[0].fusable, crate::layers::Act::Linear);
    }

    #[test]
    fn a_model_without_them_emits_no_regularization_code() {
        use std::str::FromStr;
        let expand = |src: &str| crate::compile(proc_macro2::TokenStream::from_str(src).unwrap()).0.to_string();
        let plain = expand("struct M { input x: [4]; output y = Dense(3, kernel_initializer = he_normal)(x); }");
        assert!(!plain.contains("regularize"), "{plain}");
        let reg = expand("struct M { input x: [4]; output y = Dense(3, kernel_regularizer = l2(0.1))(x); }");
        assert!(reg.contains("WEIGHT_PENALTIES") && !reg.contains("CONSTRAINTS") && !reg.contains("activity_penalty"));
        let act = expand("struct M { input x: [4]; output y = Dense(3, activity_regularizer = l1(0.1))(x); }");
        assert!(act.contains("activity_penalty") && act.contains("add_activity_gradient") && !act.contains("WEIGHT_PENALTIES"));
    }

    #[test]
    fn a_regularized_concatenation_keeps_its_buffer_and_step() {
        let src = "struct M { input a: [2]; input b: [3]; output y = Dense(1)(Concatenate(activity_regularizer = l1(0.1))([a, b])); }";
        let plan = crate::plan::plan(typed_of(src));
        assert_eq!(plan.steps.len(), 2, "the Concatenate is not elided");
        let src = "struct M { input a: [2]; input b: [3]; output y = Dense(1)(Concatenate()([a, b])); }";
        assert_eq!(crate::plan::plan(typed_of(src)).steps.len(), 1);
    }
}
