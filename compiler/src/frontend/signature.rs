//! A model's interface as declared, before any dimension is bound: each
//! graph input's and output's name, element type and dimensions (sizes
//! or symbolic names). `tessera generate` reads it to find the token
//! input, the cache inputs and the length dimensions to bind per step.

use std::path::Path;

use onnx_protobuf::tensor_shape_proto::dimension::Value as DimValue;
use onnx_protobuf::{ModelProto, ValueInfoProto};

use crate::tensor::DType;

use super::ImportError;

/// One dimension as declared.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A fixed size.
    Fixed(usize),
    /// A symbolic dimension (`dim_param`), bound with `--dim NAME=N`.
    Named(String),
    /// Neither (unknown).
    Unknown,
}

/// A declared graph input or output.
#[derive(Clone, Debug, PartialEq)]
pub struct Port {
    /// The value's name.
    pub name: String,
    /// Its element type (`None` when undeclared or unsupported).
    pub dtype: Option<DType>,
    /// Its dimensions (empty when the shape is undeclared).
    pub dims: Vec<Dim>,
}

/// The declared inputs (initializers excluded) and outputs of a model.
#[derive(Clone, Debug, PartialEq)]
pub struct Signature {
    /// Graph inputs that are not initializers, in order.
    pub inputs: Vec<Port>,
    /// Graph outputs, in order.
    pub outputs: Vec<Port>,
}

/// Reads the signature of the model in `path`.
pub fn signature_of_file(path: &Path) -> Result<Signature, ImportError> {
    signature(&super::read_model(path)?)
}

/// The signature of a parsed model.
pub fn signature(model: &ModelProto) -> Result<Signature, ImportError> {
    let graph = model
        .graph
        .as_ref()
        .ok_or_else(|| ImportError::Model("the model has no graph".into()))?;
    let initializers: std::collections::HashSet<&str> =
        graph.initializer.iter().map(|t| t.name.as_str()).collect();
    Ok(Signature {
        inputs: graph
            .input
            .iter()
            .filter(|i| !initializers.contains(i.name.as_str()))
            .map(port)
            .collect(),
        outputs: graph.output.iter().map(port).collect(),
    })
}

fn port(info: &ValueInfoProto) -> Port {
    let tensor = info
        .type_
        .as_ref()
        .filter(|t| t.has_tensor_type())
        .map(|t| t.tensor_type());
    Port {
        name: info.name.clone(),
        dtype: tensor.and_then(|t| DType::from_onnx(t.elem_type).ok()),
        dims: tensor
            .and_then(|t| t.shape.as_ref())
            .map(|s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(DimValue::DimValue(v)) => {
                            usize::try_from(*v).map_or(Dim::Unknown, Dim::Fixed)
                        }
                        Some(DimValue::DimParam(p)) if !p.is_empty() => Dim::Named(p.clone()),
                        _ => Dim::Unknown,
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}
