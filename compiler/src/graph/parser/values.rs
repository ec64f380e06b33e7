//! Parsing typed values: tensor types, attribute values and constant
//! data (literal lists or hex bytes).

use half::{bf16, f16};

use crate::tensor::{DType, Tensor, TensorData};

use super::super::{AttrValue, TensorType};
use super::{Cursor, ParseError};

impl Cursor {
    /// `dtype[d, ...]`.
    pub(super) fn tensor_type(&mut self) -> Result<TensorType, ParseError> {
        let at = self.pos;
        let word = self.word();
        let dtype = DType::from_name(&word)
            .ok_or_else(|| self.error_at(at, format!("unknown dtype `{word}`")))?;
        let shape = self.usize_list()?;
        let ty = TensorType::new(dtype, shape);
        if ty.checked_numel().is_none() {
            return Err(self.error_at(at, "shape has too many elements"));
        }
        Ok(ty)
    }

    pub(super) fn attr_value(&mut self) -> Result<AttrValue, ParseError> {
        if self.peek() == Some('[') {
            return Ok(AttrValue::Ints(self.number_list("an integer")?));
        }
        let at = self.pos;
        let token = self.number_token();
        if token.is_empty() {
            return Err(self.error("expected an attribute value"));
        }
        Ok(match token.as_str() {
            "true" => AttrValue::Bool(true),
            "false" => AttrValue::Bool(false),
            "inf" | "-inf" | "NaN" => AttrValue::Float(token.parse().unwrap_or(f32::NAN)),
            t if t.starts_with(|c: char| c.is_ascii_digit() || c == '-' || c == '+') => {
                match t.parse::<i64>() {
                    Ok(v) => AttrValue::Int(v),
                    Err(_) => AttrValue::Float(
                        t.parse::<f32>()
                            .map_err(|_| self.error_at(at, format!("bad number `{t}`")))?,
                    ),
                }
            }
            t => AttrValue::Word(t.to_string()),
        })
    }

    pub(super) fn constant_data(&mut self, ty: &TensorType) -> Result<Tensor, ParseError> {
        let at = self.pos;
        let numel = ty.numel();
        let data = match self.peek() {
            Some('<') => {
                return Err(self.error(
                    "constant data elided (compact dump); only dumps printed with full data can be parsed",
                ))
            }
            Some('[') => self.literal_list(ty.dtype)?,
            Some('0') => {
                let token = self.number_token();
                let hex = token
                    .strip_prefix("0x")
                    .ok_or_else(|| self.error_at(at, "expected `0x` and hex bytes, or `[...]`"))?;
                let bytes = decode_hex(hex).ok_or_else(|| self.error_at(at, "bad hex data"))?;
                TensorData::from_le_bytes(ty.dtype, &bytes)
                    .ok_or_else(|| self.error_at(at, format!("{} bytes is not a whole number of {}", bytes.len(), ty.dtype)))?
            }
            _ => return Err(self.error("expected constant data: `[...]` or `0x...`")),
        };
        if data.len() != numel {
            return Err(self.error_at(at, format!("{} elements for type {ty}", data.len())));
        }
        Tensor::new(ty.shape.clone(), data)
            .ok_or_else(|| self.error_at(at, "data does not match the shape"))
    }

    pub(super) fn literal_list(&mut self, dtype: DType) -> Result<TensorData, ParseError> {
        self.expect('[')?;
        let mut tokens = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                break;
            }
            let at = self.pos;
            tokens.push((at, self.number_token()));
            self.skip_ws();
            if self.peek() == Some(',') {
                self.bump();
            } else {
                break;
            }
        }
        self.skip_ws();
        self.expect(']')?;
        let bad = |(at, t): &(usize, String)| {
            self.error_at(*at, format!("`{t}` is not a {dtype} literal"))
        };
        let floats = || -> Result<Vec<f32>, ParseError> {
            tokens
                .iter()
                .map(|tok| tok.1.parse::<f32>().map_err(|_| bad(tok)))
                .collect()
        };
        let ints = || -> Result<Vec<i64>, ParseError> {
            tokens
                .iter()
                .map(|tok| tok.1.parse::<i64>().map_err(|_| bad(tok)))
                .collect()
        };
        let narrow = |values: Vec<i64>, fits: fn(i64) -> bool| -> Result<Vec<i64>, ParseError> {
            match values.iter().position(|&v| !fits(v)) {
                Some(i) => Err(bad(&tokens[i])),
                None => Ok(values),
            }
        };
        Ok(match dtype {
            DType::F32 => TensorData::F32(floats()?),
            DType::F16 => TensorData::F16(floats()?.into_iter().map(f16::from_f32).collect()),
            DType::BF16 => TensorData::BF16(floats()?.into_iter().map(bf16::from_f32).collect()),
            DType::I64 => TensorData::I64(ints()?),
            DType::I32 => TensorData::I32(
                narrow(ints()?, |v| i32::try_from(v).is_ok())?
                    .into_iter()
                    .map(|v| v as i32)
                    .collect(),
            ),
            DType::I8 => TensorData::I8(
                narrow(ints()?, |v| i8::try_from(v).is_ok())?
                    .into_iter()
                    .map(|v| v as i8)
                    .collect(),
            ),
            DType::U8 => TensorData::U8(
                narrow(ints()?, |v| u8::try_from(v).is_ok())?
                    .into_iter()
                    .map(|v| v as u8)
                    .collect(),
            ),
            DType::Bool => TensorData::Bool(
                tokens
                    .iter()
                    .map(|tok| match tok.1.as_str() {
                        "true" => Ok(true),
                        "false" => Ok(false),
                        _ => Err(bad(tok)),
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }
}

fn decode_hex(hex: &str) -> Option<Vec<u8>> {
    if hex.len() % 2 != 0 || !hex.is_ascii() {
        return None;
    }
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).ok())
        .collect()
}
