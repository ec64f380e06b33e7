//! Moving tensors in and out of a loadable's DRAM layout: dtype mapping
//! between Graph IR and the ISA, and checked conversion of a `Tensor` to and
//! from the dense little-endian bytes a `TensorDesc` describes.

use tessera_isa::{DType as IsaType, TensorDesc};

use crate::tensor::{DType, Tensor, TensorData};

/// The ISA memory type holding a Graph IR element type.
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

/// Checks that `tensor` fits the descriptor and returns its bytes. The
/// shape must match exactly. So must the element type, except that f32
/// values for an f16 or bf16 input are rounded to it (nearest even): NumPy
/// has no bf16, so `.npy` inputs of bf16 programs arrive as f32. Integer
/// and bool types are never converted.
pub fn tensor_to_bytes(tensor: &Tensor, desc: &TensorDesc) -> Result<Vec<u8>, String> {
    let shape: Vec<u64> = tensor.shape().iter().map(|&d| d as u64).collect();
    if shape != desc.shape {
        return Err(format!(
            "input `{}` needs shape {:?}, got {:?}",
            desc.name, desc.shape, shape
        ));
    }
    let wanted = graph_dtype(desc.dtype());
    if let Some(fmt) = tessera_isa::lowp::Fp8::of(desc.dtype()) {
        if tensor.dtype() == DType::F32 {
            let values = tensor.to_f32_vec();
            return Ok(values.iter().map(|&x| fmt.from_f32(x, true)).collect());
        }
    } else if tensor.dtype() == wanted {
        return Ok(tensor.data().to_le_bytes());
    }
    if tensor.dtype() == DType::F32 && matches!(wanted, DType::F16 | DType::BF16) {
        let rounded = Tensor::from_f32_as(wanted, tensor.shape().to_vec(), tensor.to_f32_vec())
            .ok_or_else(|| {
                format!(
                    "input `{}`: cannot convert f32 to {}",
                    desc.name,
                    wanted.name()
                )
            })?;
        return Ok(rounded.data().to_le_bytes());
    }
    Err(format!(
        "input `{}` needs element type {}, got {}",
        desc.name,
        desc.dtype(),
        tensor.dtype().name()
    ))
}

/// Builds a tensor from the bytes of a descriptor, as Graph IR type
/// `dtype` (which must map to the descriptor's type).
pub fn bytes_to_tensor(bytes: &[u8], desc: &TensorDesc, dtype: DType) -> Result<Tensor, String> {
    let shape: Vec<usize> = desc.shape.iter().map(|&d| d as usize).collect();
    if let Some(fmt) = tessera_isa::lowp::Fp8::of(desc.dtype()) {
        let values = bytes.iter().map(|&b| fmt.to_f32(b)).collect();
        return Tensor::new(shape, TensorData::F32(values)).ok_or_else(|| {
            format!(
                "output `{}`: data does not fit shape {:?}",
                desc.name, desc.shape
            )
        });
    }
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
        // Graph IR has no FP8 type: FP8 tensors enter and leave as f32.
        IsaType::E4m3 | IsaType::E5m2 => DType::F32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desc(dtype: IsaType, shape: &[u64]) -> TensorDesc {
        TensorDesc::new("x", dtype, shape, 0)
    }

    #[test]
    fn f32_values_are_rounded_to_a_bf16_or_f16_input() {
        // 1 + 2^-8 lies halfway between two bf16 values: ties to even (1.0);
        // 1 + 3 * 2^-8 rounds up to 1 + 2^-7.
        let x = Tensor::from_f32(&[3], vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -2.5]);
        let bytes = tensor_to_bytes(&x, &desc(IsaType::Bf16, &[3])).expect("bf16");
        assert_eq!(bytes, [0x80, 0x3f, 0x82, 0x3f, 0x20, 0xc0]);
        // 1 + 2^-11 is halfway between two f16 values: ties to even (1.0).
        let x = Tensor::from_f32(&[2], vec![1.0 + 1.0 / 2048.0, 65520.0]);
        let bytes = tensor_to_bytes(&x, &desc(IsaType::F16, &[2])).expect("f16");
        assert_eq!(bytes, [0x00, 0x3c, 0x00, 0x7c], "65520 overflows to inf");
    }

    #[test]
    fn integer_and_bool_types_must_match_exactly() {
        let ints = Tensor::from_i64(&[2], vec![1, 2]);
        let err = tensor_to_bytes(&ints, &desc(IsaType::I32, &[2])).expect_err("i64 for i32");
        assert_eq!(err, "input `x` needs element type i32, got i64");
        let floats = Tensor::from_f32(&[2], vec![1.0, 0.0]);
        let err = tensor_to_bytes(&floats, &desc(IsaType::Bool, &[2])).expect_err("f32 for bool");
        assert_eq!(err, "input `x` needs element type bool, got f32");
        let half = Tensor::from_f32_as(DType::F16, vec![2], vec![1.0, 2.0]).expect("f16");
        let err = tensor_to_bytes(&half, &desc(IsaType::F32, &[2])).expect_err("f16 for f32");
        assert_eq!(err, "input `x` needs element type f32, got f16");
    }
}
