//! Tensors: an element type, a static shape and row-major data.
//!
//! This is the value type of the whole compiler: graph constants, interpreter
//! values, and the inputs and outputs that the CLI reads and writes. It reads
//! and writes ONNX `TensorProto` (`.pb`, raw or typed fields, external data)
//! and NumPy `.npy` files.
//!
//! Supported element types: f32, f16, bf16, i64, i32, i8, u8, bool. Anything
//! else (float64, string, complex, uint16/32/64, int16, float8, int4, ...)
//! is refused with [`TensorError::UnsupportedDtype`] naming the tensor.

use std::fmt;
use std::path::Path;

use half::{bf16, f16};

mod npy;
mod proto;

pub use npy::{read_npy, write_npy};

/// Element type of a tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DType {
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16 (the top half of an f32).
    BF16,
    /// Signed 64-bit integer.
    I64,
    /// Signed 32-bit integer.
    I32,
    /// Signed 8-bit integer.
    I8,
    /// Unsigned 8-bit integer.
    U8,
    /// Boolean, one byte per element (0 or 1).
    Bool,
}

impl DType {
    /// Every supported element type, in a fixed order.
    pub const ALL: [DType; 8] = [
        DType::F32,
        DType::F16,
        DType::BF16,
        DType::I64,
        DType::I32,
        DType::I8,
        DType::U8,
        DType::Bool,
    ];

    /// The short name used in the Graph IR text (`f32`, `i64`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F16 => "f16",
            DType::BF16 => "bf16",
            DType::I64 => "i64",
            DType::I32 => "i32",
            DType::I8 => "i8",
            DType::U8 => "u8",
            DType::Bool => "bool",
        }
    }

    /// Parses a short name (`f32`, ...).
    pub fn from_name(name: &str) -> Option<DType> {
        DType::ALL.into_iter().find(|d| d.name() == name)
    }

    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F16 | DType::BF16 => 2,
            DType::I64 => 8,
            DType::I8 | DType::U8 | DType::Bool => 1,
        }
    }

    /// Whether this is a floating-point type (computed in f32).
    pub fn is_float(self) -> bool {
        matches!(self, DType::F32 | DType::F16 | DType::BF16)
    }

    /// Whether this is an integer type (computed in i64).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I64 | DType::I32 | DType::I8 | DType::U8)
    }

    /// The ONNX `TensorProto.DataType` code.
    pub fn onnx_code(self) -> i32 {
        match self {
            DType::F32 => 1,
            DType::U8 => 2,
            DType::I8 => 3,
            DType::I32 => 6,
            DType::I64 => 7,
            DType::Bool => 9,
            DType::F16 => 10,
            DType::BF16 => 16,
        }
    }

    /// Maps an ONNX data type code to a supported type, or names the
    /// unsupported one (`float64`, `string`, ...).
    pub fn from_onnx(code: i32) -> Result<DType, String> {
        Ok(match code {
            1 => DType::F32,
            2 => DType::U8,
            3 => DType::I8,
            6 => DType::I32,
            7 => DType::I64,
            9 => DType::Bool,
            10 => DType::F16,
            16 => DType::BF16,
            other => return Err(onnx_dtype_name(other).to_string()),
        })
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The conventional name of an ONNX data type code (for error messages).
pub fn onnx_dtype_name(code: i32) -> &'static str {
    match code {
        0 => "undefined",
        1 => "float32",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "float64",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        24 => "float8e8m0",
        25 => "uint2",
        26 => "int2",
        _ => "unknown",
    }
}

/// The element count of a shape, or `None` when it overflows `usize`.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d))
}

/// Row-major strides (in elements) of a shape.
pub fn strides(shape: &[usize]) -> Vec<usize> {
    let mut strides = vec![1usize; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        strides[i] = strides[i + 1] * shape[i + 1];
    }
    strides
}

/// Typed element storage.
#[derive(Clone, Debug)]
pub enum TensorData {
    /// f32 elements.
    F32(Vec<f32>),
    /// f16 elements.
    F16(Vec<f16>),
    /// bf16 elements.
    BF16(Vec<bf16>),
    /// i64 elements.
    I64(Vec<i64>),
    /// i32 elements.
    I32(Vec<i32>),
    /// i8 elements.
    I8(Vec<i8>),
    /// u8 elements.
    U8(Vec<u8>),
    /// bool elements.
    Bool(Vec<bool>),
}

/// Applies `$body` to the vector inside any `TensorData` variant, rebuilding
/// the same variant from the result.
macro_rules! map_data {
    ($data:expr, $v:ident => $body:expr) => {
        match $data {
            TensorData::F32($v) => TensorData::F32($body),
            TensorData::F16($v) => TensorData::F16($body),
            TensorData::BF16($v) => TensorData::BF16($body),
            TensorData::I64($v) => TensorData::I64($body),
            TensorData::I32($v) => TensorData::I32($body),
            TensorData::I8($v) => TensorData::I8($body),
            TensorData::U8($v) => TensorData::U8($body),
            TensorData::Bool($v) => TensorData::Bool($body),
        }
    };
}
pub(crate) use map_data;

impl TensorData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            TensorData::F32(_) => DType::F32,
            TensorData::F16(_) => DType::F16,
            TensorData::BF16(_) => DType::BF16,
            TensorData::I64(_) => DType::I64,
            TensorData::I32(_) => DType::I32,
            TensorData::I8(_) => DType::I8,
            TensorData::U8(_) => DType::U8,
            TensorData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            TensorData::F32(v) => v.len(),
            TensorData::F16(v) => v.len(),
            TensorData::BF16(v) => v.len(),
            TensorData::I64(v) => v.len(),
            TensorData::I32(v) => v.len(),
            TensorData::I8(v) => v.len(),
            TensorData::U8(v) => v.len(),
            TensorData::Bool(v) => v.len(),
        }
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A new vector with element `indices[i]` at position `i`. Every index
    /// must be in range (callers compute them from validated shapes).
    pub fn select(&self, indices: &[usize]) -> TensorData {
        map_data!(self, v => indices.iter().map(|&i| v[i]).collect())
    }

    /// Concatenates vectors of the same type; `None` if the types differ.
    pub fn concat(parts: &[&TensorData]) -> Option<TensorData> {
        let first = parts.first()?;
        let mut out = map_data!(first, _v => Vec::new());
        for part in parts {
            match (&mut out, part) {
                (TensorData::F32(o), TensorData::F32(p)) => o.extend_from_slice(p),
                (TensorData::F16(o), TensorData::F16(p)) => o.extend_from_slice(p),
                (TensorData::BF16(o), TensorData::BF16(p)) => o.extend_from_slice(p),
                (TensorData::I64(o), TensorData::I64(p)) => o.extend_from_slice(p),
                (TensorData::I32(o), TensorData::I32(p)) => o.extend_from_slice(p),
                (TensorData::I8(o), TensorData::I8(p)) => o.extend_from_slice(p),
                (TensorData::U8(o), TensorData::U8(p)) => o.extend_from_slice(p),
                (TensorData::Bool(o), TensorData::Bool(p)) => o.extend_from_slice(p),
                _ => return None,
            }
        }
        Some(out)
    }

    /// Little-endian bytes, as in ONNX `raw_data` and `.npy`.
    pub fn to_le_bytes(&self) -> Vec<u8> {
        // Sized up front: collecting a flat_map grows the vector step by
        // step, which for weight tensors of hundreds of MB means many
        // reallocations and freshly zeroed pages.
        fn bytes<T, const N: usize>(v: &[T], f: impl Fn(&T) -> [u8; N]) -> Vec<u8> {
            let mut out = Vec::with_capacity(v.len() * N);
            for x in v {
                out.extend_from_slice(&f(x));
            }
            out
        }
        match self {
            TensorData::F32(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::F16(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::BF16(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::I64(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::I32(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::I8(v) => bytes(v, |x| x.to_le_bytes()),
            TensorData::U8(v) => v.clone(),
            TensorData::Bool(v) => v.iter().map(|&b| u8::from(b)).collect(),
        }
    }

    /// Decodes little-endian bytes; `None` if the length is not a multiple
    /// of the element size.
    pub fn from_le_bytes(dtype: DType, bytes: &[u8]) -> Option<TensorData> {
        if bytes.len() % dtype.size() != 0 {
            return None;
        }
        fn chunks<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
            bytes.chunks_exact(N).map(|c| {
                let mut a = [0u8; N];
                a.copy_from_slice(c);
                a
            })
        }
        Some(match dtype {
            DType::F32 => TensorData::F32(chunks::<4>(bytes).map(f32::from_le_bytes).collect()),
            DType::F16 => TensorData::F16(chunks::<2>(bytes).map(f16::from_le_bytes).collect()),
            DType::BF16 => TensorData::BF16(chunks::<2>(bytes).map(bf16::from_le_bytes).collect()),
            DType::I64 => TensorData::I64(chunks::<8>(bytes).map(i64::from_le_bytes).collect()),
            DType::I32 => TensorData::I32(chunks::<4>(bytes).map(i32::from_le_bytes).collect()),
            DType::I8 => TensorData::I8(bytes.iter().map(|&b| b as i8).collect()),
            DType::U8 => TensorData::U8(bytes.to_vec()),
            DType::Bool => TensorData::Bool(bytes.iter().map(|&b| b != 0).collect()),
        })
    }
}

/// Bitwise equality: two NaNs with the same bits are equal, 0.0 and -0.0
/// are not. This is what "the same constant" means for graph equality.
impl PartialEq for TensorData {
    fn eq(&self, other: &Self) -> bool {
        self.dtype() == other.dtype()
            && self.len() == other.len()
            && self.to_le_bytes() == other.to_le_bytes()
    }
}

/// A dense, row-major tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: TensorData,
}

/// Errors reading or building tensors.
#[derive(Debug, thiserror::Error)]
pub enum TensorError {
    /// The element type is not one Tessera supports.
    #[error("tensor `{name}`: unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// Tensor name.
        name: String,
        /// ONNX name of the type (`float64`, `string`, ...).
        dtype: String,
    },
    /// The data does not match the shape.
    #[error("tensor `{name}`: {message}")]
    Invalid {
        /// Tensor name.
        name: String,
        /// What is wrong.
        message: String,
    },
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// File path.
        path: String,
        /// The OS error.
        message: String,
    },
}

fn invalid(name: &str, message: impl Into<String>) -> TensorError {
    TensorError::Invalid {
        name: name.to_string(),
        message: message.into(),
    }
}

impl Tensor {
    /// Builds a tensor; `None` if the element count does not match the shape.
    pub fn new(shape: Vec<usize>, data: TensorData) -> Option<Tensor> {
        (checked_numel(&shape)? == data.len()).then_some(Tensor { shape, data })
    }

    /// An f32 tensor. Panics if the length does not match: for literals in
    /// code and tests, never for user data (use [`Tensor::new`]).
    pub fn from_f32(shape: &[usize], values: Vec<f32>) -> Tensor {
        Self::literal(shape, TensorData::F32(values))
    }

    /// An i64 tensor; see [`Tensor::from_f32`].
    pub fn from_i64(shape: &[usize], values: Vec<i64>) -> Tensor {
        Self::literal(shape, TensorData::I64(values))
    }

    /// A bool tensor; see [`Tensor::from_f32`].
    pub fn from_bool(shape: &[usize], values: Vec<bool>) -> Tensor {
        Self::literal(shape, TensorData::Bool(values))
    }

    fn literal(shape: &[usize], data: TensorData) -> Tensor {
        assert_eq!(
            checked_numel(shape),
            Some(data.len()),
            "literal tensor: shape does not match data"
        );
        Tensor {
            shape: shape.to_vec(),
            data,
        }
    }

    /// A scalar (shape `[]`).
    pub fn scalar(data: TensorData) -> Option<Tensor> {
        Tensor::new(Vec::new(), data)
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The elements.
    pub fn data(&self) -> &TensorData {
        &self.data
    }

    /// Consumes the tensor, returning its elements.
    pub fn into_data(self) -> TensorData {
        self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// Same data, another shape with the same element count.
    pub fn reshaped(self, shape: Vec<usize>) -> Option<Tensor> {
        Tensor::new(shape, self.data)
    }

    /// The elements as f32 (floats exactly, integers and bools converted).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            TensorData::F32(v) => v.clone(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            TensorData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            TensorData::I8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// The elements as f64 (for error metrics).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            TensorData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            _ => self.to_f32_vec().into_iter().map(f64::from).collect(),
        }
    }

    /// The elements as i64 (floats truncated toward zero, saturating).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match &self.data {
            TensorData::F32(v) => v.iter().map(|&x| x as i64).collect(),
            TensorData::F16(v) => v.iter().map(|x| x.to_f32() as i64).collect(),
            TensorData::BF16(v) => v.iter().map(|x| x.to_f32() as i64).collect(),
            TensorData::I64(v) => v.clone(),
            TensorData::I32(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::I8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::U8(v) => v.iter().map(|&x| i64::from(x)).collect(),
            TensorData::Bool(v) => v.iter().map(|&x| i64::from(x)).collect(),
        }
    }

    /// The elements as bool (non-zero is true).
    pub fn to_bool_vec(&self) -> Vec<bool> {
        match &self.data {
            TensorData::Bool(v) => v.clone(),
            TensorData::F32(_) | TensorData::F16(_) | TensorData::BF16(_) => {
                self.to_f32_vec().into_iter().map(|x| x != 0.0).collect()
            }
            _ => self.to_i64_vec().into_iter().map(|x| x != 0).collect(),
        }
    }

    /// Builds a float tensor of `dtype` from f32 values, rounding to nearest
    /// even for f16/bf16. `dtype` must be a float type.
    pub fn from_f32_as(dtype: DType, shape: Vec<usize>, values: Vec<f32>) -> Option<Tensor> {
        let data = match dtype {
            DType::F32 => TensorData::F32(values),
            DType::F16 => TensorData::F16(values.into_iter().map(f16::from_f32).collect()),
            DType::BF16 => TensorData::BF16(values.into_iter().map(bf16::from_f32).collect()),
            _ => return None,
        };
        Tensor::new(shape, data)
    }

    /// Builds an integer tensor of `dtype` from i64 values, wrapping to the
    /// type's width (two's complement, as C casts do).
    pub fn from_i64_as(dtype: DType, shape: Vec<usize>, values: Vec<i64>) -> Option<Tensor> {
        let data = match dtype {
            DType::I64 => TensorData::I64(values),
            DType::I32 => TensorData::I32(values.into_iter().map(|x| x as i32).collect()),
            DType::I8 => TensorData::I8(values.into_iter().map(|x| x as i8).collect()),
            DType::U8 => TensorData::U8(values.into_iter().map(|x| x as u8).collect()),
            _ => return None,
        };
        Tensor::new(shape, data)
    }

    /// A short, stable checksum of the type, shape and bytes (FNV-1a, 32
    /// bits), shown by compact IR dumps instead of the data.
    pub fn checksum(&self) -> u32 {
        let mut hash: u32 = 0x811c_9dc5;
        let mut feed = |b: u8| {
            hash ^= u32::from(b);
            hash = hash.wrapping_mul(0x0100_0193);
        };
        feed(self.dtype().onnx_code() as u8);
        for &d in &self.shape {
            for b in (d as u64).to_le_bytes() {
                feed(b);
            }
        }
        for b in self.data.to_le_bytes() {
            feed(b);
        }
        hash
    }
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> TensorError {
    TensorError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ints_wrap_to_their_width() {
        let t = Tensor::from_i64_as(DType::I8, vec![2], vec![127 + 1, -129]).expect("shape");
        assert_eq!(t.to_i64_vec(), vec![-128, 127]);
        let t = Tensor::from_i64_as(DType::U8, vec![1], vec![256 + 7]).expect("shape");
        assert_eq!(t.to_i64_vec(), vec![7]);
    }
}
