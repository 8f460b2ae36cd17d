//! `Dense(units, activation = linear, use_bias = true, kernel_*/bias_* initializer, regularizer and
//! constraint)`: y = act(x · kernel + bias) on the last axis.

use super::args::ArgReader;
use super::weights::{role, WeightArgs};
use super::{some_if, Act, EmitCx, InferCx, InitKind, LayerDef, MaskRule, ParamDecl};
use crate::diag::Diagnostic;
use crate::import::args::KerasArgs;
use crate::onnx::{OnnxCx, OnnxError};
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;
use serde_json::json;

/// A densely connected layer. Kernel layout `[in, units]` (Keras).
#[derive(Clone, Debug, PartialEq)]
pub struct Dense {
    /// Output features.
    pub units: usize,
    /// Activation fused into the output pass.
    pub activation: Act,
    /// Whether a bias is added.
    pub use_bias: bool,
    /// `kernel_initializer`, `kernel_regularizer`, `kernel_constraint`.
    pub kernel: WeightArgs,
    /// `bias_initializer`, `bias_regularizer`, `bias_constraint`.
    pub bias: WeightArgs,
}

impl Dense {
    /// `Dense(units, activation, use_bias)`.
    pub fn parse(r: &mut ArgReader<'_>) -> Option<Self> {
        let units = r.required_positive("units", Some(0));
        let activation = Act::read(r, "activation", Some(1), Act::Linear);
        let use_bias = r.bool_or("use_bias", Some(2), true);
        let kernel = WeightArgs::read(r, role!("kernel", 2));
        let bias = WeightArgs::read(r, role!("bias", 1));
        Some(Dense { units: units?, activation: activation?, use_bias: use_bias?, kernel: kernel?, bias: bias? })
    }
}

impl LayerDef for Dense {
    // Keras: `supports_masking`, so the operand's mask passes through (docs/masks.md).
    fn mask_rule(&self, _cx: &InferCx<'_>) -> MaskRule {
        MaskRule::Keep(0)
    }

    // MatMul(x, kernel) on the last axis, Add(bias), the activation.
    fn onnx(&self, cx: &mut OnnxCx) -> Result<(), OnnxError> {
        let (x, k) = (cx.input(0), cx.param(0));
        let mut y = cx.op("MatMul", &[&x, &k], Vec::new());
        if self.use_bias {
            let b = cx.param(1);
            y = cx.op("Add", &[&y, &b], Vec::new());
        }
        cx.activation(self.activation, &y, &cx.output());
        Ok(())
    }

    // Rule (Keras): Dense applies to the last axis of a tensor of any rank; (None, ..., n) becomes
    // (None, ..., units) with a kernel of shape (n, units) shared by every leading position.
    fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, Diagnostic> {
        let x = cx.inputs.first().ok_or_else(|| Diagnostic::new(cx.span, "Dense takes one tensor"))?;
        let mut dims = x.0.clone();
        if let Some(last) = dims.last_mut() {
            *last = self.units;
        }
        Ok(Shape(dims))
    }

    fn params(&self, inputs: &[Shape]) -> Vec<ParamDecl> {
        let fin = inputs.first().map(Shape::last).unwrap_or(0);
        let glorot = InitKind::GlorotUniform { fan_in: fin, fan_out: self.units };
        let mut p = vec![ParamDecl::new("kernel", vec![fin, self.units], glorot, true).with(&self.kernel)];
        if self.use_bias {
            p.push(ParamDecl::new("bias", vec![self.units], InitKind::Zeros, true).with(&self.bias));
        }
        p
    }

    fn scratch(&self, _inputs: &[Shape], output: &Shape) -> Vec<usize> {
        if self.activation.needs_input() {
            vec![output.numel()]
        } else {
            Vec::new()
        }
    }

    // dense::forward(x, kernel, bias, act, pre, y, rows, in, units); on the parts of an elided
    // Concatenate (several operands, see `plan`): dense::forward_parts([x0, x1, ..], [in0, in1, ..], ..).
    fn forward(&self, cx: &EmitCx) -> TokenStream {
        let w = cx.p(0);
        let b = some_if(self.use_bias, cx.p(1));
        // The pre-activation is kept for backward only: the inference forward skips it.
        let pre = some_if(self.activation.needs_input() && !cx.inference, cx.scratch_mut(0));
        let act = self.activation.tokens();
        let rows = cx.rows(cx.output.shape.lead());
        let fout = self.units;
        let k = quote!(::modelc::__private::kernels::dense);
        if let [x] = &cx.inputs[..] {
            let fin = x.shape.last();
            let x = cx.x(0);
            if cx.inference {
                // The kernel is constant across inference calls: packed once into the workspace.
                return quote!(#k::forward_inference(#x, #w, #b, #act, &mut __y[..], #rows, #fin, #fout, &mut __ws.packed););
            }
            return quote!(#k::forward(#x, #w, #b, #act, #pre, &mut __y[..], #rows, #fin, #fout););
        }
        let xs: Vec<TokenStream> = (0..cx.inputs.len()).map(|i| cx.x(i)).collect();
        let fins: Vec<usize> = cx.inputs.iter().map(|o| o.shape.last()).collect();
        quote!(#k::forward_parts(&[#(#xs),*], &[#(#fins),*], #w, #b, #act, #pre, &mut __y[..], #rows, #fout);)
    }

    // dense::backward(x, kernel, pre, y, dy, act, dx, dkernel, dbias, rows, in, units); on parts,
    // dense::backward_output once, then dense::backward_input per part with its rows of the kernel.
    fn backward(&self, cx: &EmitCx) -> TokenStream {
        let y = cx.y();
        let w = cx.p(0);
        let gw = cx.g(0);
        let gb = some_if(self.use_bias, cx.g(1));
        let pre = some_if(self.activation.needs_input(), cx.scratch(0));
        let act = cx.backward_act(self.activation);
        let rows = cx.rows(cx.output.shape.lead());
        let fout = self.units;
        let k = quote!(::modelc::__private::kernels::dense);
        let gp = cx.params_write();
        let writes = |i: usize| {
            let gx = cx.dx_write(i);
            quote!(#k::Writes { dx: #gx, params: #gp })
        };
        if let [x] = &cx.inputs[..] {
            let fin = x.shape.last();
            let (x, dx, wr) = (cx.x(0), cx.dx(0), writes(0));
            return quote!(#k::backward(#x, #w, #pre, #y, &mut __dy[..], #act, #dx, #gw, #gb, #rows, #fin, #fout, #wr););
        }
        let mut out = quote!(#k::backward_output(#act, #pre, #y, &mut __dy[..], #gb, #fout, #gp););
        let mut row0 = 0;
        for (i, o) in cx.inputs.iter().enumerate() {
            let fin = o.shape.last();
            let (a, z) = (row0 * fout, (row0 + fin) * fout);
            let (x, dx, wr) = (cx.x(i), cx.dx(i), writes(i));
            out.extend(quote!(#k::backward_input(#x, &#w[#a..#z], &__dy[..], #dx, &mut #gw[#a..#z], #rows, #fin, #fout, #wr);));
            row0 += fin;
        }
        out
    }

    fn backward_sets_first_writes(&self) -> bool {
        true
    }

    fn output_activation(&self) -> Option<Act> {
        Some(self.activation)
    }
}

impl Dense {
    /// Keras import: `Dense(units, activation, use_bias, ...)` from a Keras config.
    pub fn from_keras(a: &mut KerasArgs<'_>) {
        a.positional("units");
        a.activation("activation", false);
        a.kw("use_bias", json!(true));
        a.weights("kernel", "GlorotUniform");
    }
}
