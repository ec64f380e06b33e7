//! Moving tensors in and out of a loadable's DRAM layout: dtype mapping
//! between Graph IR and the ISA, and checked conversion of a `Tensor` to and
//! from the dense little-endian bytes a `TensorDesc` describes.

use tessera_isa::{DType as IsaType, TensorDesc};

use crate::tensor::{DType, Tensor, TensorData};

/// The ISA memory type holding a Graph IR element type .
pub fn isa_dtype(dtype: DType) -> IsaType {
    match dtype {
        DType::F32 => IsaType::F32,
        DType::F16 => IsaType::F16,
        DType::BF16 => IsaType::Bf16,
        DType::I64 => IsaType::I64,
        DType::I32 => IsaType::I32,
        DType::I8 => IsaType::I8,
        DType::U8 => IsaType::U8,
        DType::Bool => IsaType::Bool,
    }
}

/// Checks that `tensor` fits the descriptor exactly and returns its bytes.
pub fn tensor_to_bytes(tensor: &Tensor, desc: &TensorDesc) -> Result<Vec<u8>, String> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    if shape != desc.shape {
        return Err(format!(
            "input `{}` needs shape {:?}, got {:?}",
            desc.name, desc.shape, shape
        ));
    }
    if isa_dtype(tensor.dtype()) != desc.dtype() {
        return Err(format!(
            "input `{}` needs element type {}, got {}",
            desc.name,
            desc.dtype(),
            tensor.dtype().name()
        ));
    }
    Ok(tensor.data().to_le_bytes())
}

/// Builds a tensor from the bytes of a descriptor, as Graph IR type
/// `dtype` (which must map to the descriptor's type).
pub fn bytes_to_tensor(bytes: &[u8], desc: &TensorDesc, dtype: DType) -> Result<Tensor, String> {
    let shape: Vec<usize> = desc.shape.iter().map(|&d| d as usize).collect();
    let data = TensorData::from_le_bytes(dtype, bytes).ok_or_else(|| {
        format!(
            "output `{}`: {} bytes do not hold {}",
            desc.name,
            bytes.len(),
            dtype.name()
        )
    })?;
    Tensor::new(shape, data).ok_or_else(|| {
        format!(
            "output `{}`: data does not fit shape {:?}",
            desc.name, desc.shape
        )
    })
}

/// The natural Graph IR type of an ISA memory type.
pub fn graph_dtype(dtype: IsaType) -> DType {
    match dtype {
        IsaType::F32 => DType::F32,
        IsaType::Bf16 => DType::BF16,
        IsaType::F16 => DType::F16,
        IsaType::I32 => DType::I32,
        IsaType::I64 => DType::I64,
        IsaType::U8 => DType::U8,
        IsaType::I8 => DType::I8,
        IsaType::Bool => DType::Bool,
    }
}
