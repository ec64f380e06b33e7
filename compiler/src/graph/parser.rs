//! Reads the text form written by [`super::printer`] (full data mode).
//!
//! One statement per line; blank lines and lines starting with `#` are
//! ignored. Operands must be defined on an earlier line, and each node's
//! declared type must equal the type its op infers. Errors carry the
//! `line:column` where they were found.

use std::sync::Arc;

use half::{bf16, f16};

use crate::tensor::{DType, Tensor, TensorData};

use super::{AttrValue, Graph, NodeId, Op, TensorType};

/// A parse error at a position (1-based line and column).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{line}:{column}: {message}")]
pub struct ParseError {
    /// 1-based line.
    pub line: usize,
    /// 1-based column (in characters).
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// Parses a graph in the canonical text form.
pub fn parse_graph(text: &str) -> Result<Graph, ParseError> {
    let mut graph: Option<Graph> = None;
    let mut closed = false;
    let mut last_line = 0;
    for (index, line) in text.lines().enumerate() {
        last_line = index + 1;
        let mut c = Cursor::new(line, index + 1);
        c.skip_ws();
        if c.at_end() || c.peek() == Some('#') {
            continue;
        }
        if closed {
            return Err(c.error("text after the closing `}`"));
        }
        match graph.as_mut() {
            None => {
                c.keyword("graph")?;
                c.skip_ws();
                let name = c.name()?;
                c.skip_ws();
                c.expect('{')?;
                c.end()?;
                graph = Some(Graph::new(name));
            }
            Some(g) => {
                if c.peek() == Some('}') {
                    c.expect('}')?;
                    c.end()?;
                    closed = true;
                } else {
                    statement(g, &mut c)?;
                }
            }
        }
    }
    match graph {
        Some(g) if closed => Ok(g),
        Some(_) => Err(ParseError {
            line: last_line.max(1),
            column: 1,
            message: "missing closing `}`".into(),
        }),
        None => Err(ParseError {
            line: 1,
            column: 1,
            message: "expected `graph NAME {`".into(),
        }),
    }
}

fn statement(g: &mut Graph, c: &mut Cursor) -> Result<(), ParseError> {
    if c.peek() == Some('%') {
        return operation(g, c);
    }
    let start = c.pos;
    let word = c.word();
    c.skip_ws();
    match word.as_str() {
        "input" => {
            let (name, name_at) = c.value_name()?;
            c.skip_ws();
            c.expect(':')?;
            c.skip_ws();
            let ty = c.tensor_type()?;
            c.end()?;
            g.add_input(name, ty)
                .map_err(|e| c.error_at(name_at, e.to_string()))?;
        }
        "const" => {
            let (name, name_at) = c.value_name()?;
            c.skip_ws();
            c.expect(':')?;
            c.skip_ws();
            let ty = c.tensor_type()?;
            c.skip_ws();
            c.expect('=')?;
            c.skip_ws();
            let value = c.constant_data(&ty)?;
            c.end()?;
            g.add_constant(name, Arc::new(value))
                .map_err(|e| c.error_at(name_at, e.to_string()))?;
        }
        "output" => {
            let name = c.quoted()?;
            c.skip_ws();
            c.expect('=')?;
            c.skip_ws();
            let id = c.operand(g)?;
            c.end()?;
            g.add_output(name, id);
        }
        _ => {
            c.pos = start;
            return Err(c.error("expected `input`, `const`, `output`, `%name = ...` or `}`"));
        }
    }
    Ok(())
}

fn operation(g: &mut Graph, c: &mut Cursor) -> Result<(), ParseError> {
    let (name, name_at) = c.value_name()?;
    c.skip_ws();
    c.expect('=')?;
    c.skip_ws();
    let op_at = c.pos;
    let mnemonic = c.word();
    if mnemonic.is_empty() {
        return Err(c.error("expected an op name"));
    }
    c.expect('(')?;
    let mut operands = Vec::new();
    c.skip_ws();
    if c.peek() != Some(')') {
        loop {
            c.skip_ws();
            operands.push(c.operand(g)?);
            c.skip_ws();
            if c.peek() == Some(',') {
                c.bump();
            } else {
                break;
            }
        }
    }
    c.expect(')')?;
    c.skip_ws();
    let mut attrs = Vec::new();
    if c.peek() == Some('{') {
        c.bump();
        loop {
            c.skip_ws();
            if c.peek() == Some('}') {
                break;
            }
            let key = c.word();
            if key.is_empty() {
                return Err(c.error("expected an attribute name"));
            }
            c.skip_ws();
            c.expect('=')?;
            c.skip_ws();
            attrs.push((key, c.attr_value()?));
            c.skip_ws();
            if c.peek() == Some(',') {
                c.bump();
            } else {
                break;
            }
        }
        c.skip_ws();
        c.expect('}')?;
        c.skip_ws();
    }
    let op = Op::from_parts(&mnemonic, &attrs).map_err(|m| c.error_at(op_at, m))?;
    if matches!(op, Op::Input | Op::Constant(_)) {
        return Err(c.error_at(
            op_at,
            "inputs and constants are declared with `input` and `const`",
        ));
    }
    c.expect(':')?;
    c.skip_ws();
    let ty_at = c.pos;
    let ty = c.tensor_type()?;
    c.end()?;
    let types: Vec<&TensorType> = operands.iter().map(|&o| &g.node(o).ty).collect();
    let inferred = op
        .infer(&types)
        .map_err(|m| c.error_at(op_at, format!("{mnemonic}: {m}")))?;
    if inferred != ty {
        return Err(c.error_at(
            ty_at,
            format!("declared type {ty} but the operands give {inferred}"),
        ));
    }
    g.add_node_typed(name, op, &operands, ty)
        .map_err(|e| c.error_at(name_at, e.to_string()))?;
    Ok(())
}

/// A position in one line of text.
struct Cursor {
    chars: Vec<char>,
    pos: usize,
    line: usize,
}

impl Cursor {
    fn new(text: &str, line: usize) -> Cursor {
        Cursor {
            chars: text.chars().collect(),
            pos: 0,
            line,
        }
    }

    fn error(&self, message: impl Into<String>) -> ParseError {
        self.error_at(self.pos, message)
    }

    fn error_at(&self, pos: usize, message: impl Into<String>) -> ParseError {
        ParseError {
            line: self.line,
            column: pos + 1,
            message: message.into(),
        }
    }

    fn peek(&self) -> Option<char> {
        self.chars.get(self.pos).copied()
    }

    fn bump(&mut self) {
        self.pos += 1;
    }

    fn at_end(&self) -> bool {
        self.pos >= self.chars.len()
    }

    fn skip_ws(&mut self) {
        while self.peek().is_some_and(char::is_whitespace) {
            self.pos += 1;
        }
    }

    fn end(&mut self) -> Result<(), ParseError> {
        self.skip_ws();
        if self.at_end() {
            Ok(())
        } else {
            Err(self.error("unexpected text at the end of the line"))
        }
    }

    fn expect(&mut self, ch: char) -> Result<(), ParseError> {
        if self.peek() == Some(ch) {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.error(format!("expected `{ch}`")))
        }
    }

    fn keyword(&mut self, word: &str) -> Result<(), ParseError> {
        let start = self.pos;
        if self.word() == word {
            Ok(())
        } else {
            self.pos = start;
            Err(self.error(format!("expected `{word}`")))
        }
    }

    /// `[A-Za-z0-9_]*`.
    fn word(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    /// A bare or quoted name.
    fn name(&mut self) -> Result<String, ParseError> {
        if self.peek() == Some('"') {
            return self.quoted();
        }
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
        {
            self.pos += 1;
        }
        if start == self.pos {
            return Err(self.error("expected a name"));
        }
        Ok(self.chars[start..self.pos].iter().collect())
    }

    /// `%name`, returning the name and where it starts.
    fn value_name(&mut self) -> Result<(String, usize), ParseError> {
        let at = self.pos;
        self.expect('%')?;
        Ok((self.name()?, at))
    }

    fn operand(&mut self, g: &Graph) -> Result<NodeId, ParseError> {
        let (name, at) = self.value_name()?;
        g.find(&name)
            .ok_or_else(|| self.error_at(at, format!("undefined value %{name}")))
    }

    /// A string in Rust's `{:?}` form.
    fn quoted(&mut self) -> Result<String, ParseError> {
        self.expect('"')?;
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(self.error("unterminated string"));
            };
            self.pos += 1;
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(e) = self.peek() else {
                        return Err(self.error("unterminated escape"));
                    };
                    self.pos += 1;
                    match e {
                        'n' => out.push('\n'),
                        'r' => out.push('\r'),
                        't' => out.push('\t'),
                        '0' => out.push('\0'),
                        '\\' | '"' | '\'' => out.push(e),
                        'u' => {
                            self.expect('{')?;
                            let start = self.pos;
                            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                                self.pos += 1;
                            }
                            let hex: String = self.chars[start..self.pos].iter().collect();
                            self.expect('}')?;
                            let ch = u32::from_str_radix(&hex, 16)
                                .ok()
                                .and_then(char::from_u32)
                                .ok_or_else(|| self.error_at(start, "bad unicode escape"))?;
                            out.push(ch);
                        }
                        _ => {
                            return Err(
                                self.error_at(self.pos - 1, format!("unknown escape `\\{e}`"))
                            )
                        }
                    }
                }
                c => out.push(c),
            }
        }
    }

    /// A token of number or word characters (`-1`, `1e-5`, `0x00ff`, `inf`,
    /// `NaN`, `gelu_tanh`).
    fn number_token(&mut self) -> String {
        let start = self.pos;
        while self
            .peek()
            .is_some_and(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '+' | '_'))
        {
            self.pos += 1;
        }
        self.chars[start..self.pos].iter().collect()
    }

    fn usize_list(&mut self) -> Result<Vec<usize>, ParseError> {
        self.expect('[')?;
        let mut dims = Vec::new();
        loop {
            self.skip_ws();
            if self.peek() == Some(']') {
                break;
            }
            let at = self.pos;
            let token = self.number_token();
            dims.push(token.parse::<usize>().map_err(|_| {
                self.error_at(at, format!("expected a dimension, found `{token}`"))
            })?);
            self.skip_ws();
            if self.peek() == Some(',') {
                self.bump();
            } else {
                break;
            }
        }
        self.skip_ws();
        self.expect(']')?;
        Ok(dims)
    }

    /// `dtype[d, ...]`.
    fn tensor_type(&mut self) -> Result<TensorType, ParseError> {
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

    fn attr_value(&mut self) -> Result<AttrValue, ParseError> {
        if self.peek() == Some('[') {
            self.bump();
            let mut items = Vec::new();
            loop {
                self.skip_ws();
                if self.peek() == Some(']') {
                    break;
                }
                let at = self.pos;
                let token = self.number_token();
                items.push(token.parse::<i64>().map_err(|_| {
                    self.error_at(at, format!("expected an integer, found `{token}`"))
                })?);
                self.skip_ws();
                if self.peek() == Some(',') {
                    self.bump();
                } else {
                    break;
                }
            }
            self.skip_ws();
            self.expect(']')?;
            return Ok(AttrValue::Ints(items));
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

    fn constant_data(&mut self, ty: &TensorType) -> Result<Tensor, ParseError> {
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

    fn literal_list(&mut self, dtype: DType) -> Result<TensorData, ParseError> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::printer::{print_graph, DataMode};

    const SAMPLE: &str = r#"graph main {
  input %x: f32[2, 3]
  const %w: f32[3, 2] = [1.0, 2.0, 3.0, 4.0, 5.0, -6.5]
  const %"odd name": i64[] = [7]
  %/h/MatMul = matmul(%x, %w) : f32[2, 2]
  %t = transpose(%/h/MatMul) {perm = [1, 0]} : f32[2, 2]
  %n = layer_norm(%t, %t) {axis = 1, epsilon = 1e-5} : f32[2, 2]
  output "y" = %n
  output "k" = %"odd name"
}
"#;

    #[test]
    fn print_parse_print_is_identity() {
        let g = parse_graph(SAMPLE).expect("parses");
        let text = print_graph(&g, DataMode::Full).expect("acyclic");
        assert_eq!(text, SAMPLE);
        assert_eq!(parse_graph(&text).expect("reparses"), g);
    }

    #[test]
    fn npu_ops_round_trip() {
        let text = r#"graph npu {
  input %x: f32[1, 8, 4]
  input %q: f32[1, 4, 8, 16]
  input %k: f32[1, 2, 8, 16]
  const %w: f32[2, 4] = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
  %h = gemm(%x, %w) {trans_b = true, act = gelu_tanh} : f32[1, 8, 2]
  %s = silu(%h) : f32[1, 8, 2]
  %r = rope(%q, %q, %q) : f32[1, 4, 8, 16]
  %a = attention(%r, %k, %k) {scale = 0.25, causal = true} : f32[1, 4, 8, 16]
  output "s" = %s
  output "a" = %a
}
"#;
        let g = parse_graph(text).expect("parses");
        assert_eq!(print_graph(&g, DataMode::Full).expect("acyclic"), text);
    }

    #[test]
    fn errors_carry_line_and_column() {
        let text = SAMPLE.replace("matmul(%x, %w)", "matmul(%x, %nope)");
        let err = parse_graph(&text).expect_err("undefined operand");
        let column = text
            .lines()
            .nth(4)
            .and_then(|l| l.find("%nope"))
            .expect("present")
            + 1;
        assert_eq!((err.line, err.column), (5, column));
        assert!(err.message.contains("undefined value %nope"), "{err}");

        let text = SAMPLE.replace(": f32[2, 2]\n  %t", ": f32[2, 3]\n  %t");
        let err = parse_graph(&text).expect_err("wrong type");
        assert_eq!(err.line, 5);
        assert!(
            err.message
                .contains("declared type f32[2, 3] but the operands give f32[2, 2]"),
            "{err}"
        );
    }

    #[test]
    fn compact_data_is_refused() {
        let text = "graph g {\n  const %c: f32[100] = <400 bytes, fnv1a 0123abcd>\n}\n";
        let err = parse_graph(text).expect_err("compact");
        assert_eq!((err.line, err.column), (2, 24));
        assert!(err.message.contains("elided"), "{err}");
    }

    #[test]
    fn hex_data_must_fill_the_type() {
        let text = "graph g {\n  const %c: f32[2] = 0x0000803f\n}\n";
        let err = parse_graph(text).expect_err("one element for two");
        assert!(err.message.contains("1 elements for type f32[2]"), "{err}");
    }
}
