//! Builds small ONNX models in memory for the op-family tests, and runs
//! them through import, the Graph IR passes and the interpreter.

use onnx_protobuf::{
    attribute_proto::AttributeType, tensor_shape_proto, type_proto, AttributeProto, GraphProto,
    Message as _, ModelProto, NodeProto, OperatorSetIdProto, TensorShapeProto, TypeProto,
    ValueInfoProto,
};

use crate::graph::Graph;
use crate::interp::run;
use crate::passes::{run_graph_passes_with, PassOptions};
use crate::tensor::{DType, Tensor};

use super::{import_bytes, ImportError, ImportOptions};

/// An attribute value.
pub enum A {
    I(i64),
    F(f32),
    Is(Vec<i64>),
    Fs(Vec<f32>),
    S(&'static str),
    T(Tensor),
}

/// A node: op type, inputs, outputs, attributes.
pub fn node(op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<(&str, A)>) -> NodeProto {
    let mut n = NodeProto::new();
    n.op_type = op.into();
    n.name = format!("{op}_node");
    n.input = inputs.iter().map(|s| s.to_string()).collect();
    n.output = outputs.iter().map(|s| s.to_string()).collect();
    for (name, value) in attrs {
        let mut a = AttributeProto::new();
        a.name = name.into();
        let kind = match value {
            A::I(v) => {
                a.i = v;
                AttributeType::INT
            }
            A::F(v) => {
                a.f = v;
                AttributeType::FLOAT
            }
            A::Is(v) => {
                a.ints = v;
                AttributeType::INTS
            }
            A::Fs(v) => {
                a.floats = v;
                AttributeType::FLOATS
            }
            A::S(v) => {
                a.s = v.as_bytes().to_vec();
                AttributeType::STRING
            }
            A::T(t) => {
                a.t = Some(t.to_proto("")).into();
                AttributeType::TENSOR
            }
        };
        a.type_ = kind.into();
        n.attribute.push(a);
    }
    n
}

fn value_info(name: &str, dtype: DType, shape: &[usize]) -> ValueInfoProto {
    let mut dims = TensorShapeProto::new();
    for &d in shape {
        let mut dim = tensor_shape_proto::Dimension::new();
        dim.value = Some(tensor_shape_proto::dimension::Value::DimValue(d as i64));
        dims.dim.push(dim);
    }
    let mut tensor = type_proto::Tensor::new();
    tensor.elem_type = dtype.onnx_code();
    tensor.shape = Some(dims).into();
    let mut tp = TypeProto::new();
    tp.value = Some(type_proto::Value::TensorType(tensor));
    let mut info = ValueInfoProto::new();
    info.name = name.into();
    info.type_ = Some(tp).into();
    info
}

/// A model: nodes, graph inputs (name and value, used for the type),
/// initializers, output names, opset.
pub fn model(
    nodes: Vec<NodeProto>,
    inputs: &[(&str, &Tensor)],
    initializers: &[(&str, Tensor)],
    outputs: &[&str],
    opset: i64,
) -> Vec<u8> {
    let mut g = GraphProto::new();
    g.name = "test".into();
    g.node = nodes;
    g.input = inputs
        .iter()
        .map(|(n, t)| value_info(n, t.dtype(), t.shape()))
        .collect();
    g.initializer = initializers.iter().map(|(n, t)| t.to_proto(n)).collect();
    g.output = outputs
        .iter()
        .map(|n| {
            let mut info = ValueInfoProto::new();
            info.name = n.to_string();
            info
        })
        .collect();
    let mut m = ModelProto::new();
    m.ir_version = 8;
    let mut op = OperatorSetIdProto::new();
    op.version = opset;
    m.opset_import.push(op);
    m.graph = Some(g).into();
    m.write_to_bytes().expect("serializes")
}

/// Imports and folds a model.
pub fn import(bytes: &[u8]) -> Result<Graph, ImportError> {
    let mut g = import_bytes(bytes, None, &ImportOptions::default())?;
    run_graph_passes_with(&mut g, &PassOptions::frontend_only(), |_, _, _| {})
        .expect("passes and verifier");
    Ok(g)
}

/// Imports, folds and runs a model on the inputs (in graph-input order).
pub fn eval(bytes: &[u8], inputs: &[Tensor]) -> Vec<Tensor> {
    let g = import(bytes).expect("imports");
    run(&g, inputs).expect("runs")
}

/// A one-node model over the given inputs, run on them; returns the outputs.
pub fn run_node(
    op: &str,
    opset: i64,
    inputs: &[(&str, Tensor)],
    outputs: &[&str],
    attrs: Vec<(&str, A)>,
) -> Vec<Tensor> {
    let names: Vec<&str> = inputs.iter().map(|(n, _)| *n).collect();
    let typed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let bytes = model(
        vec![node(op, &names, outputs, attrs)],
        &typed,
        &[],
        outputs,
        opset,
    );
    let values: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    eval(&bytes, &values)
}

/// Like [`run_node`], but some operands are initializers (constants).
pub fn run_node_with_consts(
    op: &str,
    opset: i64,
    inputs: &[(&str, Tensor)],
    consts: &[(&str, Tensor)],
    operand_order: &[&str],
    outputs: &[&str],
    attrs: Vec<(&str, A)>,
) -> Vec<Tensor> {
    let typed: Vec<(&str, &Tensor)> = inputs.iter().map(|(n, t)| (*n, t)).collect();
    let bytes = model(
        vec![node(op, operand_order, outputs, attrs)],
        &typed,
        consts,
        outputs,
        opset,
    );
    let values: Vec<Tensor> = inputs.iter().map(|(_, t)| t.clone()).collect();
    eval(&bytes, &values)
}

/// f32 tensor shorthand.
pub fn f(shape: &[usize], values: &[f32]) -> Tensor {
    Tensor::from_f32(shape, values.to_vec())
}

/// i64 tensor shorthand.
pub fn i(shape: &[usize], values: &[i64]) -> Tensor {
    Tensor::from_i64(shape, values.to_vec())
}

/// Asserts shape and values (within 1e-5).
pub fn assert_close(t: &Tensor, shape: &[usize], values: &[f32]) {
    assert_eq!(t.shape(), shape, "shape");
    let got = t.to_f32_vec();
    assert_eq!(got.len(), values.len(), "{got:?} vs {values:?}");
    for (a, b) in got.iter().zip(values) {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "{got:?} vs {values:?}"
        );
    }
}
