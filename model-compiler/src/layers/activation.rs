//! Activations: the `activation =` argument of other layers and the `Activation(...)` layer.

use super::args::{list, ArgReader};
use super::{EmitCx, InferCx, LayerDef, MaskRule};
use crate::ast::{ArgKind, ArgValue};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{Attr, OnnxCx, OnnxError};
use crate::shape::Shape;
use crate::suggest::did_you_mean;
use proc_macro2::TokenStream;
use quote::quote;

/// An activation function (Keras names and defaults).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    /// Identity.
    Linear,
    /// max(x, 0).
    Relu,
    /// Logistic sigmoid.
    Sigmoid,
    /// tanh.
    Tanh,
    /// Softmax over the last axis.
    Softmax,
    /// GELU, exact (erf) form: Keras 3's default.
    Gelu,
    /// x * sigmoid(x); `swish` is an alias.
    Silu,
    /// ELU with alpha 1.
    Elu,
    /// Leaky ReLU with negative slope 0.2 (Keras 3's default).
    LeakyRelu,
    /// ln(1 + e^x).
    Softplus,
}

const NAMES: &[(&str, Act)] = &[
    ("linear", Act::Linear),
    ("relu", Act::Relu),
    ("sigmoid", Act::Sigmoid),
    ("tanh", Act::Tanh),
    ("softmax", Act::Softmax),
    ("gelu", Act::Gelu),
    ("silu", Act::Silu),
    ("swish", Act::Silu),
    ("elu", Act::Elu),
    ("leaky_relu", Act::LeakyRelu),
    ("softplus", Act::Softplus),
];

impl Act {
    /// Keras name.
    pub fn keras_name(self) -> &'static str {
        NAMES.iter().find(|(_, a)| *a == self).map(|(n, _)| *n).unwrap_or("linear")
    }

    /// The runtime's `Activation` value for this activation.
    pub fn tokens(self) -> TokenStream {
        let a = quote!(::modelc::__private::kernels::activation::Activation);
        match self {
            Act::Linear => quote!(#a::Linear),
            Act::Relu => quote!(#a::Relu),
            Act::Sigmoid => quote!(#a::Sigmoid),
            Act::Tanh => quote!(#a::Tanh),
            Act::Softmax => quote!(#a::Softmax),
            Act::Gelu => quote!(#a::Gelu { approximate: false }),
            Act::Silu => quote!(#a::Silu),
            Act::Elu => quote!(#a::Elu { alpha: 1.0 }),
            Act::LeakyRelu => quote!(#a::LeakyRelu { negative_slope: 0.2 }),
            Act::Softplus => quote!(#a::Softplus),
        }
    }

    /// Writes `out = act(x)` as ONNX nodes (opset 17: `gelu` and `silu` are composed, exact erf gelu).
    pub fn onnx(self, cx: &mut OnnxCx, x: &str, out: &str) {
        let simple = |cx: &mut OnnxCx, op: &'static str, attrs: Vec<(&'static str, Attr)>| cx.node(op, &[x], &[out], attrs);
        match self {
            Act::Linear => simple(cx, "Identity", Vec::new()),
            Act::Relu => simple(cx, "Relu", Vec::new()),
            Act::Sigmoid => simple(cx, "Sigmoid", Vec::new()),
            Act::Tanh => simple(cx, "Tanh", Vec::new()),
            Act::Softplus => simple(cx, "Softplus", Vec::new()),
            Act::Softmax => simple(cx, "Softmax", vec![("axis", Attr::Int(-1))]),
            Act::Elu => simple(cx, "Elu", vec![("alpha", Attr::Float(1.0))]),
            Act::LeakyRelu => simple(cx, "LeakyRelu", vec![("alpha", Attr::Float(0.2))]),
            Act::Silu => {
                let s = cx.op("Sigmoid", &[x], Vec::new());
                cx.node("Mul", &[x, &s], &[out], Vec::new());
            }
            Act::Gelu => {
                // 0.5 · x · (1 + erf(x / √2))
                let r2 = cx.scalar(std::f32::consts::SQRT_2);
                let t = cx.op("Div", &[x, &r2], Vec::new());
                let e = cx.op("Erf", &[&t], Vec::new());
                let one = cx.scalar(1.0);
                let a = cx.op("Add", &[&e, &one], Vec::new());
                let m = cx.op("Mul", &[x, &a], Vec::new());
                let half = cx.scalar(0.5);
                cx.node("Mul", &[&m, &half], &[out], Vec::new());
            }
        }
    }

    /// Whether the derivative needs the pre-activation input, not only the output.
    pub fn needs_input(self) -> bool {
        matches!(self, Act::Gelu | Act::Silu | Act::Elu | Act::Softplus | Act::LeakyRelu)
    }

    /// Whether a loss can take its gradient through this activation (softmax + CCE, sigmoid + BCE).
    pub fn fusable(self) -> bool {
        matches!(self, Act::Softmax | Act::Sigmoid)
    }

    /// Reads activation argument `name` (an identifier or string) with a "did you mean".
    pub fn read(r: &mut ArgReader<'_>, name: &'static str, pos: Option<usize>, default: Act) -> Option<Act> {
        match r.raw(name, pos) {
            None => Some(default),
            Some(v) => Act::from_value(r, &v),
        }
    }

    fn from_value(r: &mut ArgReader<'_>, v: &ArgValue) -> Option<Act> {
        let word = match &v.kind {
            ArgKind::Ident(id) => id.to_string(),
            ArgKind::Str(s) => s.clone(),
            _ => {
                let kind = r.kind();
                let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
                r.error(
                    Diagnostic::new(
                        v.span,
                        format!("the activation of {kind} must be a name like `relu`, got {}", super::args::describe(&v.kind)),
                    )
                    .help(format!("activations: {}", list(&names))),
                );
                return None;
            }
        };
        if let Some((_, a)) = NAMES.iter().find(|(n, _)| *n == word) {
            return Some(*a);
        }
        if word == "None" {
            return Some(Act::Linear);
        }
        let names: Vec<&str> = NAMES.iter().map(|(n, _)| *n).collect();
        let d = Diagnostic::new(v.span, format!("unknown activation `{word}`"));
        let d = match did_you_mean(&word, names.iter().copied()) {
            Some(s) => d.help(format!("did you mean `{s}`? Activations: {}", list(&names))),
            None => d.help(format!("activations: {}", list(&names))),
        };
        r.error(d);
        None
    }
}

/// `Activation(relu)`: applies an activation to a tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct ActivationLayer {
    /// The function.
    pub act: Act,
}

impl ActivationLayer {
    /// `Activation(activation)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let span = r.span();
        match r.raw("activation", Some(0)) {
            Some(v) => Act::from_value(r, &v).map(|act| ActivationLayer { act }),
            None => {
                r.error(
                    Diagnostic::new(span, "Activation is missing its required argument `activation`").help("write e.g. `Activation(relu)`"),
                );
                None
            }
        }
    }
}

impl LayerDef for ActivationLayer {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        cx.activation(self.act, &cx.input(0), &cx.output());
        Ok(())
    }

    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        cx.inputs.first().cloned().ok_or_else(|| Diagnostic::new(cx.span, "Activation takes one tensor"))
    }

    fn scratch(&self, _inputs: &[Shape], _output: &Shape) -> Vec<usize> {
        Vec::new()
    }

    // activation::forward(act, x, y, cols)
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let act = self.act.tokens();
        let x = cx.x(0);
        let cols = cx.output.shape.last();
        quote!(::modelc::__private::kernels::activation::forward(#act, #x, &mut __y[..], #cols);)
    }

    // activation::backward_accumulate(act, Some(x), y, dy, dx, cols)
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        if !cx.needs_grad(0) {
            return TokenStream::new();
        }
        let act = cx.backward_act(self.act);
        let (x, y, dx) = (cx.x(0), cx.y(), cx.dx_mut(0));
        let cols = cx.output.shape.last();
        quote!(::modelc::__private::kernels::activation::backward_accumulate(#act, ::core::option::Option::Some(#x), #y, &__dy[..], #dx, #cols);)
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.act)
    }
}

impl ActivationLayer {
    /// Keras import: `Activation(relu)`.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.activation("activation", true);
    }
}
