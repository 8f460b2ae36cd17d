//! `TimeDistributed(layer)`: a layer applied to every step of a sequence, as Keras does. The operand
//! `(None, steps, ...)` is seen by the wrapped layer as `steps` times more samples `(None·steps, ...)`
//! (row-major data needs no copy for that), so every layer that takes one tensor can be wrapped, with its
//! own shape rule, parameters, kernels and backward. Keras 3 names the weights
//! `time_distributed/dense/kernel`: the wrapper's name, the wrapped layer's name, the weight.

use super::args::ArgReader;
use super::{Act, Arity, CallArgsCx, EmitCx, InferCx, LayerDef, LayerKind, MaskRule, Operand, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// `TimeDistributed(layer)`.
#[derive(Clone, Debug, PartialEq)]
pub struct TimeDistributed {
    /// The wrapped layer.
    pub inner: Box<LayerKind>,
    /// Its Keras class name (`Dense`).
    pub inner_type: &'static str,
    /// Its name, the middle part of the weight names (`dense`): given with `name = "..."` inside, or
    /// Keras' default, assigned with the other default names.
    pub inner_name: String,
}

impl TimeDistributed {
    /// `TimeDistributed(layer)`: any layer of one tensor but `Embedding` (whose operand must be an integer
    /// model input).
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        let Some(w) = r.layer("layer", Some(0)) else {
            if !r.failed() {
                r.error(
                    Diagnostic::new(span, "TimeDistributed is missing its required argument `layer`")
                        .help("give the layer to apply at every step, e.g. `TimeDistributed(Dense(8))(seq)`"),
                );
            }
            return None;
        };
        // A layer with call arguments of its own (`mha(query, value)`) is never called on one tensor alone.
        let own_call = CallArgsCx { positional: 1, keywords: &[], span: w.span };
        let problem = match (w.layer.arity(), w.layer.id_limit(), w.layer.result_names().len()) {
            (Arity::List { .. }, _, _) => Some("it takes a list of tensors, and TimeDistributed applies a layer to one"),
            (_, Some(_), _) => Some("its operand must be an integer model input; apply it to the whole sequence instead"),
            (_, _, n) if n > 1 => Some("it returns several tensors, and TimeDistributed gives one"),
            _ if w.layer.call_args(&own_call).is_some() => {
                Some("it is called with arguments of its own (several tensors, call-time options), and TimeDistributed passes one tensor")
            }
            _ => None,
        };
        if let Some(why) = problem {
            r.error(
                Diagnostic::new(w.span, format!("TimeDistributed cannot wrap {}: {why}", w.keras_type))
                    .help(format!("call `{}` directly on the sequence, or wrap a layer of one tensor such as `Dense`", w.keras_type)),
            );
            return None;
        }
        let inner_name = w.name.map(|(n, _)| n).unwrap_or_default();
        Some(TimeDistributed { inner: Box::new(w.layer), inner_type: w.keras_type, inner_name })
    }

    /// Keras import: `TimeDistributed(Dense(8, name = "dense"))`, the wrapped layer written by its own
    /// mapping from the nested `layer` config.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.layer("layer", true);
    }

    /// Steps of the operand (its first axis after the batch).
    fn steps(cx: &EmitCx) -> usize {
        cx.inputs.first().and_then(|o| o.shape.0.first().copied()).unwrap_or(1)
    }

    /// The emitter context of the wrapped layer: each operand and the result without their steps axis,
    /// scratch lengths per step.
    fn inner_cx(cx: &EmitCx) -> EmitCx {
        let t = Self::steps(cx).max(1);
        let strip = |o: &Operand| Operand { shape: step_shape(&o.shape), ..o.clone() };
        EmitCx {
            inputs: cx.inputs.iter().map(strip).collect(),
            output: strip(&cx.output),
            extra: cx.extra.iter().map(strip).collect(),
            positional: cx.positional,
            n_params: cx.n_params,
            scratch: cx.scratch.clone(),
            scratch_len: cx.scratch_len.iter().map(|n| n / t).collect(),
            fused_output: cx.fused_output,
            trainable: cx.trainable,
            inference: cx.inference,
            dx_set: cx.dx_set.clone(),
            params_set: cx.params_set,
            masks: Vec::new(),
            mask_out: None,
        }
    }

    /// The wrapped layer's code with `__b` standing for `batch · steps` rows.
    fn wrap(cx: &EmitCx, code: TokenStream) -> TokenStream {
        if code.is_empty() {
            return code;
        }
        let t = Self::steps(cx);
        quote!({
            let __b = __b * #t;
            #code
        })
    }
}

/// A per-sample shape without its first axis (the steps).
fn step_shape(s: &Shape) -> Shape {
    Shape(s.0.get(1..).map(<[usize]>::to_vec).unwrap_or_default())
}

impl LayerDef for TimeDistributed {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // Reshape (N, steps, ...) -> (N·steps, ...); the wrapped layer's own nodes with the steps as samples;
    // Reshape (N·steps, out...) -> (N, steps, out...).
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let (xs, ys) = (cx.input_shape(0), cx.output_shape().clone());
        let steps = xs.0.first().copied().unwrap_or(1);
        let (x_step, y_step) = (step_shape(&xs), step_shape(&ys));
        let x = cx.input(0);
        let merged = cx.fresh("steps_as_samples");
        cx.reshape_into(&x, &x_step.0, &merged);
        let per_step = cx.fresh("per_step");
        let back: Vec<usize> = std::iter::once(steps).chain(y_step.0.iter().copied()).collect();
        cx.nested(vec![(merged, x_step)], (per_step.clone(), y_step), |inner| self.inner.onnx(inner))?;
        cx.reshape_into(&per_step, &back, &cx.output());
        Ok(())
    }

    // Rule: (None, steps, ...) with at least one axis after the steps; the wrapped layer's rule on
    // (None, ...) gives (None, out...), and the result is (None, steps, out...).
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "TimeDistributed takes one tensor"))?;
        if x.rank() < 2 {
            let name = cx.name(0);
            return Err(Diagnostic::new(
                cx.span,
                format!("TimeDistributed needs a sequence (None, steps, ...) per sample, but {} has rank {}", cx.describe(0), x.rank() + 1),
            )
            .help(format!(
                "`{name}` has no steps: call the {} layer on it directly, or make steps first, e.g. `RepeatVector(4)({name})`",
                self.inner_type
            )));
        }
        let steps = x.0.first().copied().unwrap_or(0);
        let inner_in = [step_shape(x)];
        let inner =
            InferCx { inputs: &inner_in, names: cx.names, dtypes: cx.dtypes, spans: cx.spans, span: cx.span, keywords: &[], masks: &[] };
        let out = self.inner.infer(&inner)?;
        Ok(Shape(std::iter::once(steps).chain(out.0).collect()))
    }

    // The wrapped layer's rank plus the steps axis.
    fn output_rank(&self, inputs: &[Option<usize>]) -> Option<usize> {
        let inner = inputs.first().copied().flatten().map(|r| r.saturating_sub(1));
        self.inner.output_rank(&[inner]).map(|r| r + 1)
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        self.inner.params(&inputs.iter().map(step_shape).collect::<Vec<_>>())
    }

    fn param_scope(&self) -> Option<String> {
        Some(match self.inner.param_scope() {
            Some(deeper) => format!("{}/{deeper}", self.inner_name),
            None => self.inner_name.clone(),
        })
    }

    fn wrapped(&self, depth: usize) -> Option<(&'static str, &str)> {
        match depth.checked_sub(1) {
            None => Some((self.inner_type, &self.inner_name)),
            Some(d) => self.inner.wrapped(d),
        }
    }

    fn name_wrapped(&mut self, depth: usize, name: String) {
        match depth.checked_sub(1) {
            None => self.inner_name = name,
            Some(d) => self.inner.name_wrapped(d, name),
        }
    }

    // The wrapped layer's buffers, one per step.
    fn scratch(&self, inputs: &[Shape], output: &Shape) -> Vec<usize> {
        let steps = inputs.first().and_then(|s| s.0.first().copied()).unwrap_or(1);
        let ins: Vec<Shape> = inputs.iter().map(step_shape).collect();
        self.inner.scratch(&ins, &step_shape(output)).into_iter().map(|n| n * steps).collect()
    }

    fn backward_only_scratch(&self) -> Vec<usize> {
        self.inner.backward_only_scratch()
    }

    // { let __b = __b * steps; <the wrapped layer's forward> }
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        Self::wrap(cx, self.inner.forward(&Self::inner_cx(cx)))
    }

    // { let __b = __b * steps; <the wrapped layer's backward> }
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        Self::wrap(cx, self.inner.backward(&Self::inner_cx(cx)))
    }

    fn update(&self, cx: &EmitCx) -> TokenStream {
        Self::wrap(cx, self.inner.update(&Self::inner_cx(cx)))
    }

    fn output_activation(&self) -> Option<Act> {
        self.inner.output_activation()
    }

    fn backward_sets_first_writes(&self) -> bool {
        self.inner.backward_sets_first_writes()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use crate::layers::conv::tests::one_error;
    use crate::layers::tests::ok_shapes;

    #[test]
    fn time_distributed_applies_the_rule_of_the_wrapped_layer_per_step() {
        let src = |layer: &str, shape: &str| format!("struct M {{ input x: {shape}; output y = {layer}(x); }}");
        assert_eq!(ok_shapes(&src("TimeDistributed(Dense(8))", "[5, 3]")), vec![vec![5, 8]]);
        assert_eq!(ok_shapes(&src("TimeDistributed(Conv2D(4, 3))", "[5, 6, 6, 2]")), vec![vec![5, 4, 4, 4]]);
        assert_eq!(ok_shapes(&src("TimeDistributed(Flatten())", "[5, 2, 3]")), vec![vec![5, 6]]);
        assert_eq!(ok_shapes(&src("TimeDistributed(MaxPooling2D())", "[3, 4, 4, 1]")), vec![vec![3, 2, 2, 1]]);
        assert_eq!(ok_shapes(&src("TimeDistributed(layer = GlobalAveragePooling1D())", "[3, 4, 2]")), vec![vec![3, 2]]);
        // Layers given as arguments nest: a recurrent layer per step, a bidirectional one too.
        assert_eq!(ok_shapes(&src("TimeDistributed(LSTM(3))", "[5, 4, 2]")), vec![vec![5, 3]]);
        assert_eq!(ok_shapes(&src("TimeDistributed(Bidirectional(GRU(3), merge_mode = sum))", "[5, 4, 2]")), vec![vec![5, 3]]);
    }

    #[test]
    fn time_distributed_rejects_a_vector_and_layers_it_cannot_wrap() {
        let (line, col, text) = one_error("input x: [4];\noutput y = TimeDistributed(Dense(2))(x);");
        assert_eq!((line, col), (3, 12));
        assert!(text.contains("TimeDistributed needs a sequence (None, steps, ...) per sample, but `x` (None, 4) has rank 2"), "{text}");
        assert!(text.contains("help: `x` has no steps: call the Dense layer on it directly"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed(Concatenate())(x);");
        assert!(text.contains("TimeDistributed cannot wrap Concatenate: it takes a list of tensors"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed(Embedding(10, 2))(x);");
        assert!(text.contains("TimeDistributed cannot wrap Embedding"), "{text}");
        let (_, _, text) = one_error("input x: [4, 3, 2];\noutput y = TimeDistributed(LSTM(2, return_state = true))(x);");
        assert!(text.contains("TimeDistributed cannot wrap LSTM: it returns several tensors"), "{text}");
        let (_, _, text) = one_error("input x: [4, 3, 2];\noutput y = TimeDistributed(MultiHeadAttention(2, 4))(x);");
        assert!(text.contains("TimeDistributed cannot wrap MultiHeadAttention: it is called with arguments of its own"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed(Dense(0))(x);");
        assert!(text.contains("`units` of Dense must be a positive integer, got 0"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed(Dnse(3))(x);");
        assert!(text.contains("unknown layer `Dnse`") && text.contains("did you mean `Dense`?"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed(relu)(x);");
        assert!(text.contains("`layer` of TimeDistributed must be a layer, e.g. `Dense(8)`, got `relu`"), "{text}");
        let (_, _, text) = one_error("input x: [4, 2];\noutput y = TimeDistributed()(x);");
        assert!(text.contains("TimeDistributed is missing its required argument `layer`"), "{text}");
    }

    #[test]
    fn the_wrapped_layers_errors_name_the_step_shape() {
        let (_, _, text) = one_error("input x: [4, 6];\noutput y = TimeDistributed(Conv1D(2, 3))(x);");
        assert!(text.contains("Conv1D expects a sequence"), "{text}");
    }
}
