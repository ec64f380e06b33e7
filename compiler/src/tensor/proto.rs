//! ONNX `TensorProto` conversion: decoding raw, typed and external data
//! into a [`Tensor`], encoding one back, and the `.pb` file format.

use std::path::{Component, Path};

use half::{bf16, f16};
use onnx_protobuf::{Message as _, TensorProto};

use super::{checked_numel, invalid, io_error, DType, Tensor, TensorData, TensorError};

impl Tensor {
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
}
