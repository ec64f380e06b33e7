//! NumPy `.npy` files (format versions 1.0, 2.0 and 3.0), little-endian,
//! C order. bf16 has no NumPy dtype: it is refused (use `.pb` instead).

use std::path::Path;

use super::{checked_numel, invalid, io_error, DType, Tensor, TensorData, TensorError};

const MAGIC: &[u8] = b"\x93NUMPY";

fn descr(dtype: DType) -> Option<&'static str> {
    Some(match dtype {
        DType::F32 => "<f4",
        DType::F16 => "<f2",
        DType::I64 => "<i8",
        DType::I32 => "<i4",
        DType::I8 => "|i1",
        DType::U8 => "|u1",
        DType::Bool => "|b1",
        DType::BF16 => return None,
    })
}

/// Reads a `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor, TensorError> {
    let bytes = std::fs::read(path).map_err(|e| io_error(path, e))?;
    parse_npy(&bytes).map_err(|message| TensorError::Io {
        path: path.display().to_string(),
        message,
    })
}

/// Writes a `.npy` file (format 1.0).
pub fn write_npy(tensor: &Tensor, path: &Path) -> Result<(), TensorError> {
    let descr = descr(tensor.dtype())
        .ok_or_else(|| invalid(&path.display().to_string(), "bf16 cannot be stored as .npy"))?;
    let shape = match tensor.shape() {
        [d] => format!("({d},)"),
        dims => format!(
            "({})",
            dims.iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    let mut header = format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape}, }}");
    // Pad so the data starts on a 64-byte boundary; the header ends in '\n'.
    let unpadded = MAGIC.len() + 2 + 2 + header.len() + 1;
    header.push_str(&" ".repeat((64 - unpadded % 64) % 64));
    header.push('\n');
    let mut out =
        Vec::with_capacity(MAGIC.len() + 4 + header.len() + tensor.numel() * tensor.dtype().size());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&[1, 0]);
    let header_len = u16::try_from(header.len())
        .map_err(|_| invalid("npy", "shape too long for a .npy header"))?;
    out.extend_from_slice(&header_len.to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(&tensor.data().to_le_bytes());
    std::fs::write(path, out).map_err(|e| io_error(path, e))
}

fn parse_npy(bytes: &[u8]) -> Result<Tensor, String> {
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err("not a .npy file (bad magic)".into());
    }
    let (header_len, header_start): (usize, usize) = match bytes[6] {
        1 => (usize::from(u16::from_le_bytes([bytes[8], bytes[9]])), 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(format!("unsupported .npy version {v}")),
    };
    let header_end = header_start
        .checked_add(header_len)
        .filter(|&end| end <= bytes.len())
        .ok_or("truncated .npy header")?;
    let header =
        std::str::from_utf8(&bytes[header_start..header_end]).map_err(|_| "header is not text")?;
    let descr = dict_value(header, "descr").ok_or("header has no 'descr'")?;
    let descr = descr.trim_matches(|c| c == '\'' || c == '"');
    let dtype = DType::ALL
        .into_iter()
        .find(|&d| descr_matches(d, descr))
        .ok_or_else(|| format!("unsupported dtype '{descr}'"))?;
    if dict_value(header, "fortran_order").is_some_and(|v| v.starts_with("True")) {
        return Err("Fortran-order arrays are not supported".into());
    }
    let shape_text = dict_value(header, "shape").ok_or("header has no 'shape'")?;
    let inner = shape_text
        .strip_prefix('(')
        .and_then(|s| s.find(')').map(|end| &s[..end]))
        .ok_or("malformed shape")?;
    let shape = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.trim_end_matches('L')
                .parse::<usize>()
                .map_err(|_| format!("bad dimension `{s}`"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let numel = checked_numel(&shape).ok_or("element count overflows")?;
    let nbytes = numel
        .checked_mul(dtype.size())
        .ok_or("byte size overflows")?;
    let body = &bytes[header_end..];
    if body.len() < nbytes {
        return Err(format!(
            "truncated data: {} bytes for {numel} elements",
            body.len()
        ));
    }
    let data = TensorData::from_le_bytes(dtype, &body[..nbytes]).ok_or("bad data length")?;
    Tensor::new(shape, data).ok_or_else(|| "shape does not match data".into())
}

fn descr_matches(dtype: DType, text: &str) -> bool {
    let Some(ours) = descr(dtype) else {
        return false;
    };
    // Single-byte types may be written with any byte-order mark.
    text == ours || (dtype.size() == 1 && text.len() == 3 && text.get(1..) == ours.get(1..))
}

/// The text after `'key':` up to the next top-level comma (tuples kept whole).
fn dict_value<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let pattern_single = format!("'{key}':");
    let pattern_double = format!("\"{key}\":");
    let start = header
        .find(&pattern_single)
        .map(|i| i + pattern_single.len())
        .or_else(|| {
            header
                .find(&pattern_double)
                .map(|i| i + pattern_double.len())
        })?;
    let rest = header[start..].trim_start();
    let mut depth = 0i32;
    for (i, c) in rest.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' | '}' if depth == 0 => return Some(rest[..i].trim()),
            _ => {}
        }
    }
    Some(rest.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn npy_round_trips() {
        let dir = std::env::temp_dir().join(format!("tessera-npy-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let cases = [
            Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, -6.5]),
            Tensor::from_i64(&[4], vec![1, -2, 3, i64::MAX]),
            Tensor::from_bool(&[], vec![true]),
            Tensor::from_f32(&[0, 2], vec![]),
        ];
        for (i, t) in cases.iter().enumerate() {
            let path = dir.join(format!("{i}.npy"));
            write_npy(t, &path).expect("write");
            let bytes = std::fs::read(&path).expect("read");
            let header_len = usize::from(u16::from_le_bytes([bytes[8], bytes[9]]));
            assert_eq!((10 + header_len) % 64, 0, "data is 64-byte aligned");
            assert_eq!(&read_npy(&path).expect("parse"), t);
        }
        std::fs::remove_dir_all(&dir).ok();
    }

    #[test]
    fn truncated_npy_is_an_error() {
        let err = parse_npy(b"\x93NUMPY\x01\x00\x40\x00{'descr'").expect_err("truncated");
        assert!(err.contains("truncated"), "{err}");
    }
}
