//! ONNX export: a compiled model written as a standard ONNX `ModelProto` (opset 17, default domain only).
//!
//! The compiler describes each model's inference graph at compile time ([`Graph`], the generated
//! `Network::ONNX`): nodes with their attributes, extra constants (reshape targets, padding amounts),
//! and the value each model output comes from. [`to_bytes`] adds what only the running model has, its
//! parameters, as initializers under their Keras weight names and layouts (the graph transposes them
//! where ONNX wants another layout), and [`save`] writes the file atomically like the weights' save.
//!
//! Protobuf: the message types are generated at build time by `prost-build` from the ONNX project's
//! `onnx.proto` vendored in `proto/` (Apache-2.0), parsed by `protox`, a pure-Rust protobuf compiler,
//! so no system `protoc` is needed. `prost` is the maintained protobuf crate most of the ecosystem uses
//! (tract reads ONNX with it); the crates that ship ready-made ONNX types are unmaintained or pin old
//! protobuf runtimes.

use crate::io::write_atomic;
use crate::network::Network;
use crate::spec::{DType, TensorSpec};
use crate::{Error, Result};
use prost::Message;
use std::path::Path;

/// The prost-generated ONNX message types (package `onnx`), committed in `onnx_proto.rs` (see its header).
#[allow(missing_docs, clippy::all, clippy::pedantic)]
pub mod proto {
    include!("onnx_proto.rs");
}

/// The operator set every exported file imports (default domain).
pub const OPSET: i64 = 17;
/// The ONNX IR version written (8 is the first with opset 17).
pub const IR_VERSION: i64 = 8;

/// A model's inference graph as the compiler describes it.
#[derive(Clone, Copy, Debug)]
pub struct Graph {
    /// Nodes in a valid execution order.
    pub nodes: &'static [Node],
    /// Constants the nodes read besides the parameters.
    pub consts: &'static [Const],
    /// For each model output (in `Network::OUTPUTS` order), the value it is.
    pub outputs: &'static [&'static str],
    /// Why the model cannot be exported (names the layer), when it cannot.
    pub unsupported: Option<&'static str>,
}

impl Graph {
    /// The description of a network that has none (written by hand, not by `model!`).
    pub const UNAVAILABLE: Graph =
        Graph { nodes: &[], consts: &[], outputs: &[], unsupported: Some("this network has no ONNX description") };
}

/// One ONNX node.
#[derive(Clone, Copy, Debug)]
pub struct Node {
    /// Operator type (`MatMul`, `Conv`...), default domain.
    pub op: &'static str,
    /// Node name (unique).
    pub name: &'static str,
    /// Input value names.
    pub inputs: &'static [&'static str],
    /// Output value names.
    pub outputs: &'static [&'static str],
    /// Attributes.
    pub attrs: &'static [Attr],
}

/// One node attribute.
#[derive(Clone, Copy, Debug)]
pub struct Attr {
    /// Its name.
    pub name: &'static str,
    /// Its value.
    pub value: AttrValue,
}

/// An attribute value.
#[derive(Clone, Copy, Debug)]
pub enum AttrValue {
    /// `INT`.
    Int(i64),
    /// `INTS`.
    Ints(&'static [i64]),
    /// `FLOAT`.
    Float(f32),
    /// `STRING`.
    Str(&'static str),
    /// `STRINGS` (a recurrent operator's `activations`).
    Strs(&'static [&'static str]),
    /// `FLOATS` (a recurrent operator's `activation_alpha`).
    Floats(&'static [f32]),
}

/// A constant initializer that is not a parameter.
#[derive(Clone, Copy, Debug)]
pub struct Const {
    /// Its name.
    pub name: &'static str,
    /// Its dimensions.
    pub dims: &'static [i64],
    /// Its values.
    pub data: ConstData,
}

/// The values of a [`Const`].
#[derive(Clone, Copy, Debug)]
pub enum ConstData {
    /// int64 values (shapes, pads, axes).
    I64(&'static [i64]),
    /// float values.
    F32(&'static [f32]),
}

/// Writes `model` as an ONNX file at `path`, atomically (a temporary file renamed over `path`, as
/// [`crate::io::save`] does). `Err` names the layer when the model has one that cannot be exported.
pub fn save<N: Network>(model: &N, path: impl AsRef<Path>) -> Result<()> {
    let bytes = to_bytes(model)?;
    write_atomic(path.as_ref(), &bytes)
}

/// The ONNX file of `model` as bytes.
pub fn to_bytes<N: Network>(model: &N) -> Result<Vec<u8>> {
    Ok(model_proto(model)?.encode_to_vec())
}

/// The `ModelProto` of `model`: its graph, parameters and metadata.
pub fn model_proto<N: Network>(model: &N) -> Result<proto::ModelProto> {
    let g = N::ONNX;
    if let Some(why) = g.unsupported {
        return Err(Error::Onnx { model: N::NAME.to_string(), reason: why.to_string() });
    }
    let mut initializer = params(model)?;
    initializer.extend(g.consts.iter().map(const_tensor));
    let mut node: Vec<proto::NodeProto> = g.nodes.iter().map(node_proto).collect();
    let mut output = Vec::with_capacity(N::OUTPUTS.len());
    for (spec, value) in N::OUTPUTS.iter().zip(g.outputs) {
        node.push(proto::NodeProto {
            input: vec![value.to_string()],
            output: vec![spec.name.to_string()],
            name: Some(format!("{}/output", spec.name)),
            op_type: Some("Identity".into()),
            ..Default::default()
        });
        output.push(value_info(spec));
    }
    let graph = proto::GraphProto {
        node,
        name: Some(N::NAME.to_string()),
        initializer,
        input: N::INPUTS.iter().map(value_info).collect(),
        output,
        ..Default::default()
    };
    Ok(proto::ModelProto {
        ir_version: Some(IR_VERSION),
        opset_import: vec![proto::OperatorSetIdProto { domain: Some(String::new()), version: Some(OPSET) }],
        producer_name: Some("modelc".into()),
        producer_version: Some(env!("CARGO_PKG_VERSION").into()),
        graph: Some(graph),
        metadata_props: vec![entry("model_name", N::NAME), entry("modelc_version", env!("CARGO_PKG_VERSION"))],
        ..Default::default()
    })
}

fn entry(key: &str, value: &str) -> proto::StringStringEntryProto {
    proto::StringStringEntryProto { key: Some(key.into()), value: Some(value.into()) }
}

/// Every parameter as a float tensor under its Keras name, in its Keras layout.
fn params<N: Network>(model: &N) -> Result<Vec<proto::TensorProto>> {
    let flat = &model.state().params;
    N::PARAMS
        .iter()
        .map(|spec| {
            let values = flat.get(spec.range()).ok_or_else(|| Error::Onnx {
                model: N::NAME.to_string(),
                reason: format!("parameter `{}` lies outside the model's parameter buffer", spec.name),
            })?;
            Ok(float_tensor(spec.name, spec.shape.iter().map(|&d| d as i64).collect(), values))
        })
        .collect()
}

fn float_tensor(name: &str, dims: Vec<i64>, values: &[f32]) -> proto::TensorProto {
    let raw: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    proto::TensorProto {
        dims,
        data_type: Some(proto::tensor_proto::DataType::Float as i32),
        name: Some(name.to_string()),
        raw_data: Some(raw),
        ..Default::default()
    }
}

fn const_tensor(c: &Const) -> proto::TensorProto {
    match c.data {
        ConstData::F32(v) => float_tensor(c.name, c.dims.to_vec(), v),
        ConstData::I64(v) => proto::TensorProto {
            dims: c.dims.to_vec(),
            data_type: Some(proto::tensor_proto::DataType::Int64 as i32),
            name: Some(c.name.to_string()),
            int64_data: v.to_vec(),
            ..Default::default()
        },
    }
}

fn node_proto(n: &Node) -> proto::NodeProto {
    proto::NodeProto {
        input: n.inputs.iter().map(|s| s.to_string()).collect(),
        output: n.outputs.iter().map(|s| s.to_string()).collect(),
        name: Some(n.name.to_string()),
        op_type: Some(n.op.to_string()),
        attribute: n.attrs.iter().map(attr_proto).collect(),
        ..Default::default()
    }
}

fn attr_proto(a: &Attr) -> proto::AttributeProto {
    use proto::attribute_proto::AttributeType;
    let mut p = proto::AttributeProto { name: Some(a.name.to_string()), ..Default::default() };
    match a.value {
        AttrValue::Int(i) => {
            p.i = Some(i);
            p.r#type = Some(AttributeType::Int as i32);
        }
        AttrValue::Ints(v) => {
            p.ints = v.to_vec();
            p.r#type = Some(AttributeType::Ints as i32);
        }
        AttrValue::Float(f) => {
            p.f = Some(f);
            p.r#type = Some(AttributeType::Float as i32);
        }
        AttrValue::Str(t) => {
            p.s = Some(t.as_bytes().to_vec());
            p.r#type = Some(AttributeType::String as i32);
        }
        AttrValue::Strs(v) => {
            p.strings = v.iter().map(|t| t.as_bytes().to_vec()).collect();
            p.r#type = Some(AttributeType::Strings as i32);
        }
        AttrValue::Floats(v) => {
            p.floats = v.to_vec();
            p.r#type = Some(AttributeType::Floats as i32);
        }
    }
    p
}

/// A graph input or output: the model's name, its element type, a dynamic batch dimension `batch`
/// followed by the per-sample shape `predict` takes (channels-last where the model is).
fn value_info(spec: &TensorSpec) -> proto::ValueInfoProto {
    use proto::tensor_shape_proto::{dimension::Value, Dimension};
    let elem = match spec.dtype {
        DType::F32 => proto::tensor_proto::DataType::Float,
        DType::I32 => proto::tensor_proto::DataType::Int32,
    };
    let mut dim = vec![Dimension { value: Some(Value::DimParam("batch".into())), ..Default::default() }];
    dim.extend(spec.shape.iter().map(|&d| Dimension { value: Some(Value::DimValue(d as i64)), ..Default::default() }));
    let tensor = proto::type_proto::Tensor { elem_type: Some(elem as i32), shape: Some(proto::TensorShapeProto { dim }) };
    proto::ValueInfoProto {
        name: Some(spec.name.to_string()),
        r#type: Some(proto::TypeProto { value: Some(proto::type_proto::Value::TensorType(tensor)), ..Default::default() }),
        ..Default::default()
    }
}
