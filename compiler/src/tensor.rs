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
use std::path::{Component, Path};

use half::{bf16, f16};
use onnx_protobuf::{Message as _, TensorProto};

mod npy;

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

    /// Converts an ONNX `TensorProto`. Data may be in `raw_data`, in the
    /// typed fields, or in an external file resolved against `base_dir`
    /// (the model's directory).
    pub fn from_proto(proto: &TensorProto, base_dir: Option<&Path>) -> Result<Tensor, TensorError> {
        let name = proto.name.as_str();
        let dtype =
            DType::from_onnx(proto.data_type).map_err(|dtype| TensorError::UnsupportedDtype {
                name: name.to_string(),
                dtype,
            })?;
        let mut shape = Vec::with_capacity(proto.dims.len());
        for &d in &proto.dims {
            shape.push(
                usize::try_from(d).map_err(|_| invalid(name, format!("negative dimension {d}")))?,
            );
        }
        let numel =
            checked_numel(&shape).ok_or_else(|| invalid(name, "element count overflows"))?;
        let data = if is_external(proto) {
            let bytes = read_external(proto, base_dir)?;
            decode_raw(name, dtype, &bytes)?
        } else if !proto.raw_data.is_empty() || numel == 0 {
            decode_raw(name, dtype, &proto.raw_data)?
        } else {
            decode_typed(proto, dtype)?
        };
        if data.len() != numel {
            return Err(invalid(
                name,
                format!(
                    "has {} elements but its shape {shape:?} needs {numel}",
                    data.len()
                ),
            ));
        }
        Ok(Tensor { shape, data })
    }

    /// Converts to an ONNX `TensorProto` with the data in `raw_data`.
    pub fn to_proto(&self, name: &str) -> TensorProto {
        let mut proto = TensorProto::new();
        proto.name = name.to_string();
        proto.data_type = self.dtype().onnx_code();
        proto.dims = self.shape.iter().map(|&d| d as i64).collect();
        proto.raw_data = self.data.to_le_bytes();
        proto
    }

    /// Reads a serialized `TensorProto` (`.pb`), returning its name too.
    /// Every error names the file.
    pub fn read_pb(path: &Path) -> Result<(String, Tensor), TensorError> {
        let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
        let proto = TensorProto::parse_from_bytes(&bytes).map_err(|e| TensorError::Io {
            path: path.display().to_string(),
            message: format!("not a TensorProto: {e}"),
        })?;
        let tensor = Tensor::from_proto(&proto, path.parent()).map_err(|e| match e {
            // Already names the file it failed on (this one or external data).
            TensorError::Io { .. } => e,
            other => TensorError::Io {
                path: path.display().to_string(),
                message: other.to_string(),
            },
        })?;
        Ok((proto.name.clone(), tensor))
    }

    /// Writes a serialized `TensorProto` (`.pb`).
    pub fn write_pb(&self, name: &str, path: &Path) -> Result<(), TensorError> {
        let bytes = self
            .to_proto(name)
            .write_to_bytes()
            .map_err(|e| TensorError::Io {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        std::fs::write(path, bytes).map_err(|e| io_error(path, e))
    }
}

pub(crate) fn io_error(path: &Path, e: std::io::Error) -> TensorError {
    TensorError::Io {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

fn decode_raw(name: &str, dtype: DType, bytes: &[u8]) -> Result<TensorData, TensorError> {
    TensorData::from_le_bytes(dtype, bytes).ok_or_else(|| {
        invalid(
            name,
            format!(
                "raw data of {} bytes is not a whole number of {dtype}",
                bytes.len()
            ),
        )
    })
}

/// Decodes the typed repeated fields, as the ONNX spec assigns them: f32 in
/// `float_data`; i32, i8, u8, bool and the bit patterns of f16/bf16 in
/// `int32_data`; i64 in `int64_data`.
fn decode_typed(proto: &TensorProto, dtype: DType) -> Result<TensorData, TensorError> {
    let ints = &proto.int32_data;
    Ok(match dtype {
        DType::F32 => TensorData::F32(proto.float_data.clone()),
        DType::I64 => TensorData::I64(proto.int64_data.clone()),
        DType::I32 => TensorData::I32(ints.clone()),
        DType::I8 => TensorData::I8(ints.iter().map(|&x| x as i8).collect()),
        DType::U8 => TensorData::U8(ints.iter().map(|&x| x as u8).collect()),
        DType::Bool => TensorData::Bool(ints.iter().map(|&x| x != 0).collect()),
        DType::F16 => TensorData::F16(ints.iter().map(|&x| f16::from_bits(x as u16)).collect()),
        DType::BF16 => TensorData::BF16(ints.iter().map(|&x| bf16::from_bits(x as u16)).collect()),
    })
}

fn is_external(proto: &TensorProto) -> bool {
    // DataLocation::EXTERNAL == 1.
    proto.data_location.value() == 1
}

/// Reads external data: `location` relative to the model directory (no
/// absolute paths, no `..`), optional `offset` and `length` in bytes.
fn read_external(proto: &TensorProto, base_dir: Option<&Path>) -> Result<Vec<u8>, TensorError> {
    let name = proto.name.as_str();
    let mut location = None;
    let mut offset = 0u64;
    let mut length = None;
    for entry in &proto.external_data {
        let parse = |v: &str| {
            v.parse::<u64>().map_err(|_| {
                invalid(
                    name,
                    format!("external data {} `{v}` is not a number", entry.key),
                )
            })
        };
        match entry.key.as_str() {
            "location" => location = Some(entry.value.clone()),
            "offset" => offset = parse(&entry.value)?,
            "length" => length = Some(parse(&entry.value)?),
            _ => {}
        }
    }
    let location = location.ok_or_else(|| invalid(name, "external data without a location"))?;
    let relative = Path::new(&location);
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return Err(invalid(
            name,
            format!("external data location `{location}` must be a relative path inside the model's directory"),
        ));
    }
    let base = base_dir.unwrap_or(Path::new("."));
    let path = base.join(relative);
    // A symbolic link (the file or a directory on the way) must not lead
    // out of the model's directory, and only a regular file is read (a
    // FIFO or device would block or never end).
    let real = path.canonicalize().map_err(|e| io_error(&path, e))?;
    let real_base = base.canonicalize().map_err(|e| io_error(base, e))?;
    if !real.starts_with(&real_base) {
        return Err(invalid(
            name,
            format!(
                "external data location `{location}` resolves to `{}`, outside the model's directory",
                real.display()
            ),
        ));
    }
    // Read only the tensor's range: one file often holds every weight.
    let mut file = std::fs::File::open(&real).map_err(|e| io_error(&path, e))?;
    let metadata = file.metadata().map_err(|e| io_error(&path, e))?;
    if !metadata.is_file() {
        return Err(invalid(
            name,
            format!("external data location `{location}` is not a regular file"),
        ));
    }
    let file_len = metadata.len();
    let end = match length {
        Some(len) => offset.checked_add(len),
        None => Some(file_len),
    };
    match end {
        Some(end) if offset <= end && end <= file_len => {
            use std::io::{Read as _, Seek as _, SeekFrom};
            let len = usize::try_from(end - offset).map_err(|_| {
                invalid(name, format!("external data of {} bytes is too large", end - offset))
            })?;
            let mut bytes = vec![0u8; len];
            file.seek(SeekFrom::Start(offset))
                .and_then(|_| file.read_exact(&mut bytes))
                .map_err(|e| io_error(&path, e))?;
            Ok(bytes)
        }
        _ => Err(invalid(
            name,
            format!(
                "external data range offset {offset} length {length:?} is outside `{}` ({file_len} bytes)",
                path.display(),
            ),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_fields_decode_per_the_onnx_spec() {
        let mut proto = TensorProto::new();
        proto.name = "h".into();
        proto.data_type = 10; // float16 bit patterns in int32_data
        proto.dims = vec![2];
        proto.int32_data = vec![0x3c00, 0xc000]; // 1.0, -2.0
        let t = Tensor::from_proto(&proto, None).expect("valid");
        assert_eq!(t.to_f32_vec(), vec![1.0, -2.0]);
        assert_eq!(t.dtype(), DType::F16);
    }

    #[test]
    fn proto_round_trips_every_dtype() {
        let values = vec![0.0f32, 1.5, -3.0, 100.0];
        for dtype in DType::ALL {
            let t = if dtype.is_float() {
                Tensor::from_f32_as(dtype, vec![2, 2], values.clone())
            } else if dtype.is_int() {
                Tensor::from_i64_as(dtype, vec![2, 2], vec![0, 1, -3, 100])
            } else {
                Tensor::new(vec![2, 2], TensorData::Bool(vec![true, false, false, true]))
            }
            .expect("shape matches");
            let back = Tensor::from_proto(&t.to_proto("t"), None).expect("valid");
            assert_eq!(back, t, "{dtype}");
        }
    }

    #[test]
    fn element_count_mismatch_is_an_error_not_a_panic() {
        let mut proto = TensorProto::new();
        proto.name = "w".into();
        proto.data_type = 1;
        proto.dims = vec![3];
        proto.float_data = vec![1.0, 2.0];
        let err = Tensor::from_proto(&proto, None).expect_err("2 elements for shape [3]");
        assert!(err.to_string().contains("tensor `w`"), "{err}");
    }

    #[test]
    fn float64_is_refused_by_name() {
        let mut proto = TensorProto::new();
        proto.name = "d".into();
        proto.data_type = 11;
        let err = Tensor::from_proto(&proto, None).expect_err("float64");
        assert_eq!(err.to_string(), "tensor `d`: unsupported dtype float64");
    }

    #[test]
    fn ints_wrap_to_their_width() {
        let t = Tensor::from_i64_as(DType::I8, vec![2], vec![127 + 1, -129]).expect("shape");
        assert_eq!(t.to_i64_vec(), vec![-128, 127]);
        let t = Tensor::from_i64_as(DType::U8, vec![1], vec![256 + 7]).expect("shape");
        assert_eq!(t.to_i64_vec(), vec![7]);
    }
}
