//! The types of a model's graph inputs and declared outputs: supported
//! dtypes only, symbolic dimensions bound from the import options.

use std::collections::BTreeMap;

use onnx_protobuf::ValueInfoProto;

use crate::graph::TensorType;
use crate::tensor::DType;

use super::ImportError;

pub(super) fn check_declared_dtype(info: &ValueInfoProto) -> Result<(), ImportError> {
    if let Some(tp) = info.type_.as_ref() {
        if tp.has_tensor_type() {
            let code = tp.tensor_type().elem_type;
            if code != 0 {
                DType::from_onnx(code).map_err(|dtype| ImportError::UnsupportedDtype {
                    what: format!("output `{}`", info.name),
                    dtype,
                })?;
            }
        } else {
            return Err(ImportError::UnsupportedDtype {
                what: format!("output `{}`", info.name),
                dtype: "non-tensor type".into(),
            });
        }
    }
    Ok(())
}

/// The static type of a graph input, binding symbolic dimensions.
pub(super) fn input_type(
    input: &ValueInfoProto,
    dims: &BTreeMap<String, usize>,
) -> Result<TensorType, ImportError> {
    use onnx_protobuf::tensor_shape_proto::dimension::Value as Dim;
    let name = &input.name;
    let tp = input
        .type_
        .as_ref()
        .ok_or_else(|| ImportError::Model(format!("input `{name}` has no type")))?;
    if !tp.has_tensor_type() {
        return Err(ImportError::UnsupportedDtype {
            what: format!("input `{name}`"),
            dtype: "non-tensor type (sequence, map or optional)".into(),
        });
    }
    let tensor = tp.tensor_type();
    let dtype =
        DType::from_onnx(tensor.elem_type).map_err(|dtype| ImportError::UnsupportedDtype {
            what: format!("input `{name}`"),
            dtype,
        })?;
    let shape_proto = tensor
        .shape
        .as_ref()
        .ok_or_else(|| ImportError::Model(format!("input `{name}` has no shape (unknown rank)")))?;
    let mut shape = Vec::with_capacity(shape_proto.dim.len());
    for (i, dim) in shape_proto.dim.iter().enumerate() {
        let size = match &dim.value {
            Some(Dim::DimValue(v)) => usize::try_from(*v)
                .map_err(|_| ImportError::Model(format!("input `{name}`: dimension {i} is {v}")))?,
            Some(Dim::DimParam(param)) => {
                *dims.get(param).ok_or_else(|| ImportError::UnboundDim {
                    dim: param.clone(),
                    input: name.clone(),
                })?
            }
            _ => {
                return Err(ImportError::UnboundDim {
                    dim: format!("#{i} (unnamed)"),
                    input: name.clone(),
                })
            }
        };
        shape.push(size);
    }
    let ty = TensorType::new(dtype, shape);
    if ty
        .checked_numel()
        .and_then(|n| n.checked_mul(dtype.size()))
        .is_none_or(|b| b > isize::MAX as usize)
    {
        return Err(ImportError::Model(format!(
            "input `{name}`: shape {:?} has too many elements",
            ty.shape
        )));
    }
    Ok(ty)
}
