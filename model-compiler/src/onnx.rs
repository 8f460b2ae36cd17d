//! ONNX export, compile-time half: each scheduled layer call describes itself as ONNX nodes
//! ([`crate::layers::LayerDef::onnx`], in the layer's own file) through an [`OnnxCx`]; [`graph_tokens`] joins
//! them into the model's `Network::ONNX` constant. The runtime (`model_runtime::onnx`) adds the
//! parameters and writes the protobuf.
//!
//! Conventions: values are channels-last as `predict` takes them, with the batch first; a layer whose
//! ONNX operator is channels-first (`Conv`, `MaxPool`, ...) transposes around it. Parameters keep their
//! Keras names and layouts, and a layer transposes them in the graph where ONNX wants another layout
//! (runtimes fold such constant subgraphs when they load the file).

use crate::layers::{Act, LayerDef};
use crate::plan::Plan;
use crate::shape::Shape;
use proc_macro2::TokenStream;
use quote::quote;

/// An attribute value of a node.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(Vec<i64>),
    /// `FLOAT`.
    Float(f32),
    /// `STRING`.
    Str(&'static str),
    /// `STRINGS`.
    Strs(Vec<&'static str>),
    /// `FLOATS`.
    Floats(Vec<f32>),
}

/// One ONNX node.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Operator type, default domain.
    pub op: &'static str,
    /// Unique name.
    pub name: String,
    /// Input value names.
    pub inputs: Vec<String>,
    /// Output value names.
    pub outputs: Vec<String>,
    /// Attributes.
    pub attrs: Vec<(&'static str, Attr)>,
}

/// A constant initializer that is not a parameter.
#[derive(Clone, Debug, PartialEq)]
pub struct Const {
    /// Its name.
    pub name: String,
    /// Its dimensions.
    pub dims: Vec<i64>,
    /// Its values: int64 (shapes, axes, pads) or float.
    pub data: ConstData,
}

/// The values of a [`Const`].
#[derive(Clone, Debug, PartialEq)]
pub enum ConstData {
    /// int64.
    I64(Vec<i64>),
    /// float.
    F32(Vec<f32>),
}

/// Why a layer call has no ONNX description.
#[derive(Clone, Debug, PartialEq)]
pub enum OnnxError {
    /// The layer kind has no ONNX mapping yet (the trait's default).
    NotYet,
    /// This configuration of the layer cannot be written with standard operators: why.
    Unsupported(String),
}

/// What a layer's [`LayerDef::onnx`] sees and writes: its operands' and result's value names and
/// per-sample shapes, its parameters' names (Keras order), and the node and constant lists it appends to.
pub struct OnnxCx {
    inputs: Vec<String>,
    input_shapes: Vec<Shape>,
    output: String,
    output_shape: Shape,
    params: Vec<String>,
    extra_outputs: Vec<String>,
    prefix: String,
    fresh: usize,
    nodes: Vec<Node>,
    consts: Vec<Const>,
    masks: Vec<Option<String>>,
    mask_out: Option<String>,
}

impl OnnxCx {
    /// A context for one call: operand values and shapes, the result's value name and shape, the
    /// layer's parameter names, and `prefix` (unique per call) for the names it invents.
    pub fn new(inputs: Vec<(String, Shape)>, output: (String, Shape), params: Vec<String>, prefix: String) -> Self {
        let (inputs, input_shapes) = inputs.into_iter().unzip();
        OnnxCx {
            inputs,
            input_shapes,
            output: output.0,
            output_shape: output.1,
            params,
            extra_outputs: Vec::new(),
            prefix,
            fresh: 0,
            nodes: Vec::new(),
            consts: Vec::new(),
            masks: Vec::new(),
            mask_out: None,
        }
    }

    /// The value names of the masks the operands carry (docs/masks.md: float, `[batch, steps]`, 1 kept
    /// and 0 masked), and of the mask this call writes, if any.
    pub fn with_masks(mut self, masks: Vec<Option<String>>, out: Option<String>) -> Self {
        self.masks = masks;
        self.mask_out = out;
        self
    }

    /// The value name of the mask operand `i` carries (float `[batch, steps]`), if any.
    pub fn mask_input(&self, i: usize) -> Option<String> {
        self.masks.get(i).cloned().flatten()
    }

    /// The value name of the mask a producer writes (float `[batch, steps]`), when the call writes one.
    pub fn mask_output(&self) -> Option<String> {
        self.mask_out.clone()
    }

    /// The value name of operand `i`.
    pub fn input(&self, i: usize) -> String {
        self.inputs.get(i).cloned().unwrap_or_default()
    }

    /// Number of operands.
    pub fn n_inputs(&self) -> usize {
        self.inputs.len()
    }

    /// The per-sample shape of operand `i` (batch excluded).
    pub fn input_shape(&self, i: usize) -> Shape {
        self.input_shapes.get(i).cloned().unwrap_or(Shape(Vec::new()))
    }

    /// The value name the layer's last node must write.
    pub fn output(&self) -> String {
        self.output.clone()
    }

    /// The value names of the further results of a layer that returns several tensors
    /// ([`LayerDef::result_names`] after the first), in result order.
    pub fn with_extra_outputs(mut self, names: Vec<String>) -> Self {
        self.extra_outputs = names;
        self
    }

    /// The value name result `k >= 1` must be written to (as [`crate::layers::EmitCx::y_extra`]): a layer
    /// that returns several tensors writes each of them.
    pub fn extra_output(&self, k: usize) -> String {
        self.extra_outputs.get(k.wrapping_sub(1)).cloned().unwrap_or_default()
    }

    /// The per-sample shape of the result.
    pub fn output_shape(&self) -> &Shape {
        &self.output_shape
    }

    /// The name of parameter `i` (`dense_1/kernel`), an initializer of the file.
    pub fn param(&self, i: usize) -> String {
        self.params.get(i).cloned().unwrap_or_default()
    }

    /// The parameter whose name ends in `/suffix` (`gamma`), if the layer has it.
    pub fn param_named(&self, suffix: &str) -> Option<String> {
        let tail = format!("/{suffix}");
        self.params.iter().find(|p| p.ends_with(&tail)).cloned()
    }

    /// A new value name, unique in the model.
    pub fn fresh(&mut self, what: &str) -> String {
        self.fresh += 1;
        format!("{}/{what}_{}", self.prefix, self.fresh)
    }

    /// Appends a node `op(inputs) -> outputs`.
    pub fn node(&mut self, op: &'static str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&'static str, Attr)>) {
        let name = format!("{}/{op}_{}", self.prefix, self.nodes.len());
        let own = |v: &[&str]| v.iter().map(|s| s.to_string()).collect();
        self.nodes.push(Node { op, name, inputs: own(inputs), outputs: own(outputs), attrs });
    }

    /// Appends a one-output node writing a new value, and returns that value's name.
    pub fn op(&mut self, op: &'static str, inputs: &[&str], attrs: Vec<(&'static str, Attr)>) -> String {
        let y = self.fresh(&op.to_ascii_lowercase());
        self.node(op, inputs, &[&y], attrs);
        y
    }

    /// A 1-D int64 constant (a shape, axes, pads), by name.
    pub fn const_i64(&mut self, values: &[i64]) -> String {
        let name = self.fresh("const");
        self.consts.push(Const { name: name.clone(), dims: vec![values.len() as i64], data: ConstData::I64(values.to_vec()) });
        name
    }

    /// A float constant of shape `dims`, by name.
    pub fn const_f32(&mut self, dims: &[i64], values: &[f32]) -> String {
        let name = self.fresh("const");
        self.consts.push(Const { name: name.clone(), dims: dims.to_vec(), data: ConstData::F32(values.to_vec()) });
        name
    }

    /// `Transpose(x, perm)`.
    pub fn transpose(&mut self, x: &str, perm: &[usize]) -> String {
        self.op("Transpose", &[x], vec![("perm", ints(perm))])
    }

    /// Batch-first channels-last `x` of full rank `rank` (batch included) to channels-first:
    /// `(N, ..., C)` -> `(N, C, ...)`.
    pub fn to_channels_first(&mut self, x: &str, rank: usize) -> String {
        let mut perm = vec![0, rank.saturating_sub(1)];
        perm.extend(1..rank.saturating_sub(1));
        self.transpose(x, &perm)
    }

    /// Channels-first `x` of full rank `rank` back to channels-last, written to `out`.
    pub fn to_channels_last_into(&mut self, x: &str, rank: usize, out: &str) {
        let mut perm = vec![0];
        perm.extend(2..rank);
        perm.push(1);
        self.node("Transpose", &[x], &[out], vec![("perm", ints(&perm))]);
    }

    /// `Reshape(x)` to a batch of per-sample shape `dims`, written to `out`.
    pub fn reshape_into(&mut self, x: &str, dims: &[usize], out: &str) {
        let mut shape = vec![-1i64];
        shape.extend(dims.iter().map(|&d| d as i64));
        let s = self.const_i64(&shape);
        self.node("Reshape", &[x, &s], &[out], Vec::new());
    }

    /// `Reshape(x)` to the exact shape `dims` (batch included when it is there), as a new value.
    pub fn reshape_exact(&mut self, x: &str, dims: &[i64]) -> String {
        let s = self.const_i64(dims);
        self.op("Reshape", &[x, &s], Vec::new())
    }

    /// A scalar float constant.
    pub fn scalar(&mut self, v: f32) -> String {
        self.const_f32(&[], &[v])
    }

    /// A channels-first operator (`Conv`, `MaxPool`...) run on channels-last `x` of per-sample rank
    /// `rank`: transposes to channels-first, runs `op(x, extra...)`, transposes the result back.
    pub fn channels_first_op(&mut self, op: &'static str, x: &str, extra: &[&str], attrs: Vec<(&'static str, Attr)>, out: &str) {
        let full = self.input_shape(0).rank() + 1;
        let t = self.to_channels_first(x, full);
        let mut ins = vec![t.as_str()];
        ins.extend_from_slice(extra);
        let y = self.op(op, &ins, attrs);
        self.to_channels_last_into(&y, full, out);
    }

    /// Applies `act` to `x`, writing `out` (an `Identity` for `linear`).
    pub fn activation(&mut self, act: Act, x: &str, out: &str) {
        act.onnx(self, x, out)
    }

    /// Runs `f` (a wrapped layer's `onnx`) in a context of its own that reads `inputs` and writes
    /// `output` (names and per-sample shapes as that layer sees them), with this call's parameters and
    /// names under this call's prefix; its nodes and constants are appended to this call's.
    pub fn nested(
        &mut self,
        inputs: Vec<(String, Shape)>,
        output: (String, Shape),
        f: impl FnOnce(&mut OnnxCx) -> Result<(), OnnxError>,
    ) -> Result<(), OnnxError> {
        let prefix = self.fresh("inner");
        let mut inner = OnnxCx::new(inputs, output, self.params.clone(), prefix);
        f(&mut inner)?;
        let (nodes, consts) = inner.finish();
        self.nodes.extend(nodes);
        self.consts.extend(consts);
        Ok(())
    }

    /// The nodes and constants written so far.
    pub fn finish(self) -> (Vec<Node>, Vec<Const>) {
        (self.nodes, self.consts)
    }
}

/// `INTS` of `usize`s.
pub fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&d| d as i64).collect())
}

/// The value name of the result of call `k` of the schedule.
fn value_name(plan: &Plan, v: crate::hir::ValueId) -> String {
    let m = &plan.typed.model;
    match m.values.get(v.0).map(|val| val.producer) {
        Some(crate::hir::Producer::Input(i)) => m.inputs.get(i).map(|x| x.name.to_string()).unwrap_or_default(),
        _ => format!("{}:{}", m.value_name(v), v.0),
    }
}

/// The message of a layer without an ONNX description, naming it and its kind.
pub fn unsupported(layer: &str, kind: &str, e: OnnxError) -> String {
    match e {
        OnnxError::NotYet => format!("layer `{layer}` ({kind}) cannot be exported to ONNX yet"),
        OnnxError::Unsupported(why) => format!("layer `{layer}` ({kind}) cannot be exported to ONNX: {why}"),
    }
}

/// A model's ONNX graph: its nodes, its constants, and the value each model output is.
#[derive(Clone, Debug, PartialEq)]
pub struct Described {
    /// Nodes in execution order.
    pub nodes: Vec<Node>,
    /// Constants besides the parameters.
    pub consts: Vec<Const>,
    /// The value of each model output, in output order.
    pub outputs: Vec<String>,
}

/// The model's ONNX graph, or the message naming the first layer that cannot be exported.
pub fn describe(plan: &Plan) -> Result<Described, String> {
    let m = &plan.typed.model;
    let (mut nodes, mut consts) = (Vec::new(), Vec::new());
    for (k, &call_id) in plan.schedule.iter().enumerate() {
        let Some(call) = m.calls.get(call_id.0) else { continue };
        let Some(layer) = m.layers.get(call.layer.0) else { continue };
        let Some(kind) = layer.kind.as_ref() else { continue };
        let shape = |v: crate::hir::ValueId| plan.typed.shapes.get(v.0).cloned().flatten().unwrap_or(Shape(Vec::new()));
        let inputs = call.inputs.iter().map(|&v| (value_name(plan, v), shape(v))).collect();
        let params = plan
            .layer_params
            .get(call.layer.0)
            .cloned()
            .and_then(|r| plan.params.get(r))
            .unwrap_or(&[])
            .iter()
            .map(|p| p.name.clone())
            .collect();
        let masks = call.inputs.iter().map(|v| plan.typed.masks.get(v.0).copied().flatten().map(|m| value_name(plan, m))).collect();
        let made = plan.typed.made_masks.get(call_id.0).copied().flatten();
        let mut cx = OnnxCx::new(inputs, (value_name(plan, call.output), shape(call.output)), params, format!("{}/call{k}", layer.name))
            .with_extra_outputs(call.extra.iter().map(|&v| value_name(plan, v)).collect())
            .with_masks(masks, made.map(|m| value_name(plan, m.value)));
        kind.onnx(&mut cx).map_err(|e| unsupported(&layer.name, layer.keras_type, e))?;
        // A merge's mask: the OR (max) of its operands' masks; a concatenation's along the steps: the
        // operands' masks joined (each operand must carry one: ONNX has no batch-sized ones here).
        match made.map(|m| (m.rule, m.value)) {
            Some((crate::layers::MaskRule::Any, v)) => {
                let ins: Vec<String> = (0..cx.n_inputs()).filter_map(|i| cx.mask_input(i)).collect();
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                cx.node("Max", &refs, &[&value_name(plan, v)], Vec::new());
            }
            Some((crate::layers::MaskRule::Concat, v)) => {
                let ins: Option<Vec<String>> = (0..cx.n_inputs()).map(|i| cx.mask_input(i)).collect();
                let Some(ins) = ins else {
                    let why = "it joins along the steps a masked and an unmasked sequence, whose mask (all kept) its ONNX export does not build yet; put `Masking()` on the unmasked operand";
                    return Err(unsupported(&layer.name, layer.keras_type, OnnxError::Unsupported(why.to_string())));
                };
                let refs: Vec<&str> = ins.iter().map(String::as_str).collect();
                cx.node("Concat", &refs, &[&value_name(plan, v)], vec![("axis", Attr::Int(1))]);
            }
            _ => {}
        }
        let (n, c) = cx.finish();
        nodes.extend(n);
        consts.extend(c);
    }
    let outputs = m.outputs.iter().map(|o| value_name(plan, o.value)).collect();
    Ok(Described { nodes, consts, outputs })
}

/// The `Network::ONNX` constant of the model, as tokens.
pub fn graph_tokens(plan: &Plan) -> TokenStream {
    let p = quote!(::modelc::__private::onnx);
    let Described { nodes, consts, outputs } = match describe(plan) {
        Ok(g) => g,
        Err(why) => return quote!(#p::Graph { nodes: &[], consts: &[], outputs: &[], unsupported: ::core::option::Option::Some(#why) }),
    };
    let nodes = nodes.iter().map(|n| {
        let (op, name, ins, outs) = (n.op, &n.name, &n.inputs, &n.outputs);
        let attrs = n.attrs.iter().map(|(k, a)| {
            let v = match a {
                Attr::Int(i) => quote!(#p::AttrValue::Int(#i)),
                Attr::Ints(v) => quote!(#p::AttrValue::Ints(&[#(#v),*])),
                Attr::Float(f) => {
                    let bits = f.to_bits();
                    quote!(#p::AttrValue::Float(f32::from_bits(#bits)))
                }
                Attr::Str(t) => quote!(#p::AttrValue::Str(#t)),
                Attr::Strs(v) => quote!(#p::AttrValue::Strs(&[#(#v),*])),
                Attr::Floats(v) => {
                    let bits = v.iter().map(|f| f.to_bits());
                    quote!(#p::AttrValue::Floats(&[#(f32::from_bits(#bits)),*]))
                }
            };
            quote!(#p::Attr { name: #k, value: #v })
        });
        quote!(#p::Node { op: #op, name: #name, inputs: &[#(#ins),*], outputs: &[#(#outs),*], attrs: &[#(#attrs),*] })
    });
    let consts = consts.iter().map(|c| {
        let (name, dims) = (&c.name, &c.dims);
        let data = match &c.data {
            ConstData::I64(v) => quote!(#p::ConstData::I64(&[#(#v),*])),
            // By bits: exact, and no float literal for the user's lints to flag (`approx_constant`).
            ConstData::F32(v) => {
                let bits = v.iter().map(|x| x.to_bits());
                quote!(#p::ConstData::F32(&[#(f32::from_bits(#bits)),*]))
            }
        };
        quote!(#p::Const { name: #name, dims: &[#(#dims),*], data: #data })
    });
    quote!(#p::Graph { nodes: &[#(#nodes),*], consts: &[#(#consts),*], outputs: &[#(#outputs),*], unsupported: ::core::option::Option::None })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::layers::{EmitCx, InferCx};

    /// A layer kind that has not written its ONNX mapping: the trait's default.
    struct Unmapped;

    impl LayerDef for Unmapped {
        fn infer(&self, cx: &InferCx<'_>) -> Result<Shape, crate::diag::Diagnostic> {
            Ok(cx.inputs[0].clone())
        }
        fn forward(&self, _: &EmitCx) -> TokenStream {
            TokenStream::new()
        }
        fn backward(&self, _: &EmitCx) -> TokenStream {
            TokenStream::new()
        }
    }

    #[test]
    fn a_kind_without_a_mapping_is_an_error_naming_the_layer() {
        let mut cx = OnnxCx::new(vec![("x".into(), Shape(vec![3]))], ("y".into(), Shape(vec![3])), Vec::new(), "lstm/call0".into());
        let e = Unmapped.onnx(&mut cx).unwrap_err();
        assert_eq!(unsupported("lstm", "LSTM", e), "layer `lstm` (LSTM) cannot be exported to ONNX yet");
    }

    #[test]
    fn every_call_writes_its_output_and_reads_parameters_by_weight_name() {
        let typed = crate::layers::tests::typed_of(
            "pub struct M { input x: [4, 4, 2]; let h = Conv2D(3, 3, padding = same)(x); output y = Dense(2)(Flatten()(h)); }",
        );
        let plan = crate::plan::plan(typed);
        let Described { nodes, outputs, .. } = describe(&plan).unwrap();
        for o in &outputs {
            assert!(nodes.iter().any(|n| n.outputs.contains(o)), "no node writes {o}");
        }
        let read: Vec<&String> = nodes.iter().flat_map(|n| &n.inputs).collect();
        for p in ["conv2d/kernel", "conv2d/bias", "dense/kernel", "dense/bias"] {
            assert!(read.iter().any(|r| r.as_str() == p), "{p} not read: {read:?}");
        }
        // 'same' 3x3 stride 1: one pixel of padding on each side.
        let conv = nodes.iter().find(|n| n.op == "Conv").unwrap();
        assert!(conv.attrs.contains(&("pads", Attr::Ints(vec![1, 1, 1, 1]))), "{:?}", conv.attrs);
    }
}
