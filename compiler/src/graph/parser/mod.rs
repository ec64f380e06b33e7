//! Reads the text form written by [`super::printer`] (full data mode).
//!
//! One statement per line; blank lines and lines starting with `#` are
//! ignored. Operands must be defined on an earlier line, and each node's
//! declared type must equal the type its op infers. Errors carry the
//! `line:column` where they were found.

use std::sync::Arc;

use super::{Graph, Op, TensorType};

mod cursor;
mod values;

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
