//! `BatchNormalization(axis = -1, momentum = 0.99, epsilon = 1e-3, center = true, scale = true)` and
//! `LayerNormalization(axis = -1, epsilon = 1e-3, center = true, scale = true)`, with Keras' weights
//! (`gamma`, `beta`, then `moving_mean`, `moving_variance`, non-trainable) and semantics: batch
//! normalization uses the batch's statistics in training and its moving statistics otherwise (also when
//! the layer is frozen); the moving statistics move after each training forward.

use super::args::ArgReader;
use super::weights::{read_initializer, role, InitSpec, WeightArgs};
use super::{some_if, EmitCx, InferCx, InitKind, LayerDef, MaskRule, ParamDecl};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::{Span, TokenStream};
use quote::quote;
use serde_json::json;

/// The arguments both normalizations share.
#[derive(Clone, Debug, PartialEq)]
pub struct Affine {
    /// Added to the variance before the square root.
    pub epsilon: f32,
    /// Learn `beta`, an offset.
    pub center: bool,
    /// Learn `gamma`, a scale.
    pub scale: bool,
    /// `gamma_initializer`, `gamma_regularizer`, `gamma_constraint`.
    pub gamma: WeightArgs,
    /// `beta_initializer`, `beta_regularizer`, `beta_constraint`.
    pub beta: WeightArgs,
}

impl Affine {
    /// The shared arguments; `rank` is the rank of `gamma` and `beta`.
    fn parse(r: &mut ArgReader<'_>, rank: usize) -> Option<Self> {
        let epsilon = match r.raw("epsilon", None) {
            None => Some(1e-3),
            Some(ArgValue { kind: ArgKind::Float(e), span }) => positive_epsilon(r, e, span),
            Some(ArgValue { kind: ArgKind::Int(n), span }) => positive_epsilon(r, n as f64, span),
            Some(v) => {
                r.error(
                    Diagnostic::new(v.span, format!("`epsilon` of {} must be a positive number", r.kind())).help("e.g. `epsilon = 1e-3`"),
                );
                None
            }
        };
        let center = r.bool_or("center", None, true);
        let scale = r.bool_or("scale", None, true);
        let gamma = WeightArgs::read(r, role!("gamma", rank));
        let beta = WeightArgs::read(r, role!("beta", rank));
        Some(Affine { epsilon: epsilon?, center: center?, scale: scale?, gamma: gamma?, beta: beta? })
    }

    /// `gamma` then `beta` of shape `shape`, as present (Keras' order).
    fn params(&self, shape: Vec<usize>) -> Vec<ParamDecl> {
        let mut p = Vec::new();
        if self.scale {
            p.push(ParamDecl::new("gamma", shape.clone(), InitKind::Ones, true).with(&self.gamma));
        }
        if self.center {
            p.push(ParamDecl::new("beta", shape, InitKind::Zeros, true).with(&self.beta));
        }
        p
    }

    /// (`Some(gamma)`, `Some(beta)`) as emitted kernel arguments, from parameter or gradient slices `slot(i)`.
    fn gamma_beta(&self, slot: impl Fn(usize) -> TokenStream) -> (TokenStream, TokenStream) {
        (some_if(self.scale, slot(0)), some_if(self.center, slot(usize::from(self.scale))))
    }

    /// Number of `gamma`/`beta` parameters.
    fn count(&self) -> usize {
        usize::from(self.scale) + usize::from(self.center)
    }
}

fn positive_epsilon(r: &mut ArgReader<'_>, e: f64, span: Span) -> Option<f32> {
    // As the float32 the emitted code holds: 1e39 would be an infinity, 1e-50 a zero, and a subnormal
    // one flushes to zero while modelc computes.
    let x = e as f32;
    if x >= f32::MIN_POSITIVE && x.is_finite() {
        return Some(x);
    }
    let kind = r.kind();
    let (what, shown) = match e > 0.0 {
        true => ("a positive float32 number (between 1.2e-38 and 3.4e38)", format!("{e:?}")),
        false => ("a positive number", e.to_string()),
    };
    r.error(
        Diagnostic::new(span, format!("`epsilon` of {kind} must be {what}, got {shown}"))
            .help("it keeps the division away from zero; Keras' default is 1e-3"),
    );
    None
}

/// The normalized axes as a consecutive per-sample range, or a diagnostic naming the operand.
fn resolve_axes(cx: &InferCx<'_>, kind: &str, axes: &[i64]) -> Result<std::ops::Range<usize>, Diagnostic> {
    let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, format!("{kind} takes one tensor")))?;
    let (full, span) = (x.rank() + 1, cx.span);
    let mut resolved = Vec::new();
    for &a in axes {
        match x.sample_axis(a) {
            Some(s) => resolved.push(s),
            None if a == 0 || a == -(full as i64) => {
                return Err(Diagnostic::new(span, format!("{kind} cannot normalize over the batch axis (axis 0) of {}", cx.describe(0)))
                    .help(format!("pick a feature axis: from 1 to {} or from -1 to -{}", full - 1, full - 1)))
            }
            None => {
                return Err(Diagnostic::new(
                    span,
                    format!("axis {a} is out of range for {kind} of {}, which has rank {full}", cx.describe(0)),
                )
                .help(format!("use an axis from 1 to {} or from -1 to -{}", full - 1, full - 1)))
            }
        }
    }
    resolved.sort_unstable();
    resolved.dedup();
    let (Some(&lo), Some(&hi)) = (resolved.first(), resolved.last()) else {
        return Err(Diagnostic::new(span, format!("{kind} needs at least one axis")).help("e.g. `axis = -1`, the last axis"));
    };
    if hi - lo + 1 != resolved.len() {
        return Err(Diagnostic::new(span, format!("{kind} normalizes over consecutive axes, got {axes:?}"))
            .help("name neighbouring axes, e.g. `axis = (1, 2, 3)`, or transpose with Reshape first"));
    }
    Ok(lo..hi + 1)
}

/// `Axis { outer: __b * .., n, inner }` of the operand around `axes`.
fn axis_tokens(shape: &Shape, axes: std::ops::Range<usize>) -> TokenStream {
    let (outer, n, inner) = shape.around(axes);
    quote!(::modelc::__private::kernels::Axis { outer: __b * #outer, n: #n, inner: #inner })
}

/// Keras `BatchNormalization`: per-channel statistics along one axis.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchNormalization {
    /// The channel axis as written (full-tensor numbering, -1 the last).
    pub axis: i64,
    /// Weight of the old moving statistics in each update.
    pub momentum: f32,
    /// epsilon, center, scale.
    pub affine: Affine,
    /// `moving_mean_initializer`, when given (else zeros).
    pub moving_mean: Option<InitSpec>,
    /// `moving_variance_initializer`, when given (else ones).
    pub moving_variance: Option<InitSpec>,
}

impl BatchNormalization {
    /// `BatchNormalization(axis = -1, momentum = 0.99, epsilon = 1e-3, center = true, scale = true)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let axis_value = r.raw("axis", Some(0));
        let axis = match &axis_value {
            None => Some(-1),
            Some(ArgValue { kind: ArgKind::Int(n), .. }) => Some(*n),
            Some(v) => {
                r.error(
                    Diagnostic::new(v.span, "`axis` of BatchNormalization must be one integer, the channel axis")
                        .help("e.g. `axis = -1` for channels-last tensors"),
                );
                None
            }
        };
        let momentum = r.float_in_or("momentum", None, 0.99, 0.0, 1.0, false);
        let affine = Affine::parse(r, 1);
        let moving_mean = read_initializer(r, role!("moving_mean", 1));
        let moving_variance = read_initializer(r, role!("moving_variance", 1));
        Some(BatchNormalization {
            axis: axis?,
            momentum: momentum? as f32,
            affine: affine?,
            moving_mean: moving_mean?,
            moving_variance: moving_variance?,
        })
    }

    /// The channel axis of operand shape `x`, as a one-axis range.
    fn channel(&self, x: &Shape) -> std::ops::Range<usize> {
        let c = x.sample_axis(self.axis).unwrap_or(0);
        c..c + 1
    }

    /// The channel count of the operand of shape `inputs[0]`.
    fn channels(&self, inputs: &[Shape]) -> usize {
        inputs.first().map_or(0, |x| x.around(self.channel(x)).1)
    }

    /// Index of `moving_mean` among the layer's parameters.
    fn moving(&self) -> usize {
        self.affine.count()
    }
}

impl LayerDef for BatchNormalization {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // A BatchNormalization node (inference: the moving statistics) on the channel axis moved to position 1;
    // ones and zeros stand for a missing gamma or beta.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let shape = cx.input_shape(0);
        let (full, c) = (shape.rank() + 1, self.channel(&shape).start + 1);
        let n = shape.0.get(c - 1).copied().unwrap_or(0);
        let mut perm: Vec<usize> = vec![0, c];
        perm.extend((1..full).filter(|&a| a != c));
        let moved = perm.iter().enumerate().any(|(i, &p)| i != p);
        let x = if moved { cx.transpose(&cx.input(0), &perm) } else { cx.input(0) };
        let gamma = match cx.param_named("gamma") {
            Some(g) => g,
            None => cx.const_f32(&[n as i64], &vec![1.0; n]),
        };
        let beta = match cx.param_named("beta") {
            Some(b) => b,
            None => cx.const_f32(&[n as i64], &vec![0.0; n]),
        };
        let (mean, var) = (cx.param_named("moving_mean").unwrap_or_default(), cx.param_named("moving_variance").unwrap_or_default());
        let attrs = vec![("epsilon", Attr::Float(self.affine.epsilon))];
        if moved {
            let y = cx.op("BatchNormalization", &[&x, &gamma, &beta, &mean, &var], attrs);
            let mut inverse = vec![0; full];
            for (i, &p) in perm.iter().enumerate() {
                if let Some(slot) = inverse.get_mut(p) {
                    *slot = i;
                }
            }
            cx.node("Transpose", &[&y], &[&cx.output()], vec![("perm", crate::onnx::ints(&inverse))]);
        } else {
            cx.node("BatchNormalization", &[&x, &gamma, &beta, &mean, &var], &[&cx.output()], attrs);
        }
        Ok(())
    }

    // Rule: any tensor with a feature axis at `axis`; the shape is unchanged.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        resolve_axes(cx, "BatchNormalization", &[self.axis])?;
        cx.inputs.first().cloned().ok_or_else(|| Diagnostic::new(cx.span, "BatchNormalization takes one tensor"))
    }

    // gamma, beta, moving_mean, moving_variance: each one value per channel.
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let n = self.channels(inputs);
        let mut p = self.affine.params(vec![n]);
        let init = |spec: Option<InitSpec>, default| spec.map_or(default, |s| s.resolve(&[n]));
        p.push(ParamDecl::new("moving_mean", vec![n], init(self.moving_mean, InitKind::Zeros), false));
        p.push(ParamDecl::new("moving_variance", vec![n], init(self.moving_variance, InitKind::Ones), false));
        p
    }

    // [mean, variance, inv_std per channel] (per-sample sized: 3n rows suffice for any batch).
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        vec![3 * self.channels(inputs)]
    }

    // norm::batch_norm_forward(axis, epsilon, training, gamma, beta, moving_mean, moving_var, x, stats, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        // The output has the operand's shape.
        let a = axis_tokens(&cx.output.shape, self.channel(&cx.output.shape));
        let (eps, trainable) = (self.affine.epsilon, cx.trainable);
        let (gamma, beta) = self.affine.gamma_beta(|i| cx.p(i));
        let (mm, mv) = (cx.p(self.moving()), cx.p(self.moving() + 1));
        let (xs, stats) = (cx.x(0), cx.scratch_mut(0));
        quote!(::modelc::__private::kernels::norm::batch_norm_forward(#a, #eps, __ws.batch_statistics && #trainable, #gamma, #beta, #mm, #mv, #xs, #stats, &mut __y[..]);)
    }

    // norm::batch_norm_backward(axis, training, gamma, x, stats, dy, dx, dgamma, dbeta)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        // The output has the operand's shape.
        let a = axis_tokens(&cx.output.shape, self.channel(&cx.output.shape));
        let trainable = cx.trainable;
        let (gamma, _) = self.affine.gamma_beta(|i| cx.p(i));
        let (dgamma, dbeta) = self.affine.gamma_beta(|i| cx.g(i));
        let (xs, stats, dx) = (cx.x(0), cx.scratch(0), cx.dx(0));
        quote!(::modelc::__private::kernels::norm::batch_norm_backward(#a, __ws.batch_statistics && #trainable, #gamma, #xs, #stats, &__dy[..], #dx, #dgamma, #dbeta);)
    }

    // After a training forward of a trainable layer: norm::batch_norm_update(momentum, stats, moving_mean, moving_var)
    fn update(&self, cx: &EmitCx) -> TokenStream {
        if !cx.trainable {
            return TokenStream::new();
        }
        let momentum = self.momentum;
        let (mm, mv) = (cx.p(self.moving()), cx.p(self.moving() + 1));
        let stats = cx.scratch(0);
        quote!(if __ws.batch_statistics { ::modelc::__private::kernels::norm::batch_norm_update(#momentum, #stats, #mm, #mv); })
    }
}

/// Keras `LayerNormalization`: per-sample statistics over one axis or consecutive axes.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerNormalization {
    /// The normalized axes as written (full-tensor numbering, -1 the last).
    pub axes: Vec<i64>,
    /// epsilon, center, scale.
    pub affine: Affine,
}

impl LayerNormalization {
    /// `LayerNormalization(axis = -1, epsilon = 1e-3, center = true, scale = true)`; `axis` may be a tuple.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let axes = match r.int_tuple("axis", Some(0)) {
            Some((axes, _)) => Some(axes),
            None if r.failed() => None,
            None => Some(vec![-1]),
        };
        let rank = axes.as_ref().map_or(1, Vec::len);
        let affine = Affine::parse(r, rank);
        Some(LayerNormalization { axes: axes?, affine: affine? })
    }

    /// The normalized axes of operand shape `x`, as a range (consecutive, checked by `infer`).
    fn axes(&self, x: &Shape) -> std::ops::Range<usize> {
        let mut axes: Vec<usize> = self.axes.iter().filter_map(|&a| x.sample_axis(a)).collect();
        axes.sort_unstable();
        match (axes.first(), axes.last()) {
            (Some(&lo), Some(&hi)) => lo..hi + 1,
            _ => 0..0,
        }
    }
}

impl LayerDef for LayerNormalization {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // (x − mean) / √(var + ε) over the axes (ReduceMean), · gamma + beta broadcast over the other axes.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let shape = cx.input_shape(0);
        let axes = self.axes(&shape);
        let full: Vec<usize> = axes.clone().map(|a| a + 1).collect();
        let reduce = vec![("axes", crate::onnx::ints(&full)), ("keepdims", Attr::Int(1))];
        let x = cx.input(0);
        let mean = cx.op("ReduceMean", &[&x], reduce.clone());
        let d = cx.op("Sub", &[&x, &mean], Vec::new());
        let sq = cx.op("Mul", &[&d, &d], Vec::new());
        let var = cx.op("ReduceMean", &[&sq], reduce);
        let eps = cx.scalar(self.affine.epsilon);
        let ve = cx.op("Add", &[&var, &eps], Vec::new());
        let sd = cx.op("Sqrt", &[&ve], Vec::new());
        let mut y = cx.op("Div", &[&d, &sd], Vec::new());
        // gamma and beta have the normalized axes' sizes: reshape them to broadcast over the rest.
        let mut bshape = vec![1i64];
        bshape.extend(shape.0.iter().enumerate().map(|(i, &n)| if axes.contains(&i) { n as i64 } else { 1 }));
        for (name, op) in [("gamma", "Mul"), ("beta", "Add")] {
            if let Some(p) = cx.param_named(name) {
                let b = cx.reshape_exact(&p, &bshape);
                y = cx.op(op, &[&y, &b], Vec::new());
            }
        }
        cx.node("Identity", &[&y], &[&cx.output()], Vec::new());
        Ok(())
    }

    // Rule: the axes exist, are not the batch, and are consecutive; the shape is unchanged.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        resolve_axes(cx, "LayerNormalization", &self.axes)?;
        cx.inputs.first().cloned().ok_or_else(|| Diagnostic::new(cx.span, "LayerNormalization takes one tensor"))
    }

    // gamma, beta: the shape of the normalized axes.
    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let x = inputs.first().cloned().unwrap_or(Shape(Vec::new()));
        self.affine.params(x.0.get(self.axes(&x)).map(<[usize]>::to_vec).unwrap_or_default())
    }

    // [mean per group, inv_std per group]: groups = elements / n per sample.
    fn scratch(&self, inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        let (outer, _, inner) = inputs.first().map_or((0, 0, 0), |x| x.around(self.axes(x)));
        vec![2 * outer * inner]
    }

    // norm::layer_norm_forward(axis, epsilon, gamma, beta, x, stats, y)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        // The output has the operand's shape.
        let a = axis_tokens(&cx.output.shape, self.axes(&cx.output.shape));
        let eps = self.affine.epsilon;
        let (gamma, beta) = self.affine.gamma_beta(|i| cx.p(i));
        let (xs, stats) = (cx.x(0), cx.scratch_mut(0));
        quote!(::modelc::__private::kernels::norm::layer_norm_forward(#a, #eps, #gamma, #beta, #xs, #stats, &mut __y[..]);)
    }

    // norm::layer_norm_backward(axis, gamma, x, stats, dy, dx, dgamma, dbeta)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        // The output has the operand's shape.
        let a = axis_tokens(&cx.output.shape, self.axes(&cx.output.shape));
        let (gamma, _) = self.affine.gamma_beta(|i| cx.p(i));
        let (dgamma, dbeta) = self.affine.gamma_beta(|i| cx.g(i));
        let (xs, stats, dx) = (cx.x(0), cx.scratch(0), cx.dx(0));
        quote!(::modelc::__private::kernels::norm::layer_norm_backward(#a, #gamma, #xs, #stats, &__dy[..], #dx, #dgamma, #dbeta);)
    }
}

/// Keras import: the arguments both normalizations share (epsilon, center, scale and their weights').
fn affine_from_keras(a: &mut KerasArgs<'_>) {
    a.kw("epsilon", json!(1e-3));
    a.kw("center", json!(true));
    a.kw("scale", json!(true));
    a.initializer("beta_initializer", "Zeros");
    a.initializer("gamma_initializer", "Ones");
    for key in ["beta_regularizer", "gamma_regularizer", "beta_constraint", "gamma_constraint"] {
        a.optional_object(key);
    }
}

impl BatchNormalization {
    /// Keras import: `BatchNormalization(axis, momentum, epsilon, center, scale)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.kw("axis", json!(-1));
        a.kw("momentum", json!(0.99));
        affine_from_keras(a);
        a.initializer("moving_mean_initializer", "Zeros");
        a.initializer("moving_variance_initializer", "Ones");
        a.expect("renorm", json!(false), "modelc has no batch renormalization; remove renorm=True");
        a.expect("synchronized", json!(false), "synchronized only matters across devices; remove it");
        a.get("renorm_momentum");
        a.get("renorm_clipping");
    }
}

impl LayerNormalization {
    /// Keras import: `LayerNormalization(axis, epsilon, center, scale)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        match a.get("axis") {
            Some(v) if *v == json!(-1) || *v == json!([-1]) => {}
            Some(v) => {
                let v = crate::import::args::dsl_value(v);
                a.args.push(format!("axis = {v}"));
            }
            None => {}
        }
        affine_from_keras(a);
        a.expect("rms_scaling", json!(false), "modelc's LayerNormalization centers; remove rms_scaling=True");
    }
}
#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn normalizations_keep_the_shape_on_any_feature_axis() {
        let m = |layer: &str| ok_shapes(&format!("struct M {{ input x: [4, 5, 6]; output y = {layer}(x); }}"));
        assert_eq!(m("BatchNormalization()"), [vec![4, 5, 6]]);
        assert_eq!(m("BatchNormalization(axis = 1, momentum = 0.9, epsilon = 1e-5)"), [vec![4, 5, 6]]);
        assert_eq!(m("LayerNormalization(axis = (2, 3), center = false)"), [vec![4, 5, 6]]);
        assert_eq!(m("LayerNormalization(axis = [-1, -3, -2])"), [vec![4, 5, 6]]);
    }

    #[test]
    fn bad_axes_and_arguments_are_reported_at_the_argument() {
        let (_, _, text) = one_error("input x: [4, 5];\noutput y = BatchNormalization(axis = 0)(x);");
        assert!(text.contains("cannot normalize over the batch axis (axis 0) of `x` (None, 4, 5)"), "{text}");
        let (_, _, text) = one_error("input x: [4, 5];\noutput y = BatchNormalization(axis = 3)(x);");
        assert!(text.contains("axis 3 is out of range for BatchNormalization of `x` (None, 4, 5), which has rank 3"), "{text}");
        let (_, _, text) = one_error("input x: [4, 5, 6];\noutput y = LayerNormalization(axis = (1, 3))(x);");
        assert!(text.contains("consecutive axes, got [1, 3]"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = BatchNormalization(momentum = 1.5)(x);");
        assert!(text.contains("`momentum` of BatchNormalization must be in [0, 1], got 1.5"), "{text}");
        let (_, _, text) = one_error("input x: [4];\noutput y = LayerNormalization(epsilon = 0)(x);");
        assert!(text.contains("`epsilon` of LayerNormalization must be a positive number, got 0"), "{text}");
    }
}
