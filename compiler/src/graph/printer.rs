//! The canonical text form of Graph IR.
//!
//! ```text
//! graph main {
//!   input %x: f32[1, 8, 64]
//!   const %w: f32[64, 64] = 0x0000803f...
//!   const %eps: f32[] = [1e-5]
//!   %h = matmul(%x, %w) : f32[1, 8, 64]
//!   %t = transpose(%h) {perm = [0, 2, 1]} : f32[1, 64, 8]
//!   output "logits" = %t
//! }
//! ```
//!
//! Nodes appear in [`Graph::canonical_order`]: inputs, constants, then
//! operations in topological order. Names are bare when they consist of
//! `[A-Za-z0-9_./-]` (and are not empty), otherwise quoted like a Rust
//! string. Constants with at most [`INLINE_LIMIT`] elements, all finite, are
//! written as a flat row-major list of literals; other constants as `0x` and
//! the hex of their little-endian bytes ([`DataMode::Full`]) or as
//! `<N bytes, fnv1a XXXXXXXX>` ([`DataMode::Compact`], for humans; the
//! parser refuses it). Floats are printed in the shortest form that parses
//! back to the same value.

use std::fmt::Write as _;

use crate::tensor::{Tensor, TensorData};

use super::{Graph, GraphError, Op};

/// Constants with at most this many elements are printed as literals.
pub const INLINE_LIMIT: usize = 16;

/// How constant data is printed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// Every byte: the output parses back to an equal graph.
    Full,
    /// Large constants as size and checksum: for dumps read by people.
    Compact,
}

/// Prints a graph. Fails only if the graph has a cycle.
pub fn print_graph(graph: &Graph, mode: DataMode) -> Result<String, GraphError> {
    let mut out = String::new();
    let _ = writeln!(out, "graph {} {{", name_token(&graph.name));
    for id in graph.canonical_order()? {
        let node = graph.node(id);
        let name = name_token(&node.name);
        match &node.op {
            Op::Input => {
                let _ = writeln!(out, "  input %{name}: {}", node.ty);
            }
            Op::Constant(value) => {
                let _ = writeln!(
                    out,
                    "  const %{name}: {} = {}",
                    node.ty,
                    constant_data(value, mode)
                );
            }
            op => {
                let operands: Vec<String> = graph
                    .operands(id)
                    .into_iter()
                    .map(|o| format!("%{}", name_token(&graph.node(o).name)))
                    .collect();
                let _ = write!(
                    out,
                    "  %{name} = {}({})",
                    op.mnemonic(),
                    operands.join(", ")
                );
                let attrs = op.attrs();
                if !attrs.is_empty() {
                    let items: Vec<String> =
                        attrs.iter().map(|(k, v)| format!("{k} = {v}")).collect();
                    let _ = write!(out, " {{{}}}", items.join(", "));
                }
                let _ = writeln!(out, " : {}", node.ty);
            }
        }
    }
    for (name, id) in graph.outputs() {
        let _ = writeln!(
            out,
            "  output {name:?} = %{}",
            name_token(&graph.node(*id).name)
        );
    }
    out.push_str("}\n");
    Ok(out)
}

/// Whether a name can be printed without quotes.
pub fn is_bare_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-'))
}

fn name_token(name: &str) -> String {
    if is_bare_name(name) {
        name.to_string()
    } else {
        format!("{name:?}")
    }
}

fn constant_data(value: &Tensor, mode: DataMode) -> String {
    if let Some(literal) = literal_list(value) {
        return literal;
    }
    let bytes = value.data().to_le_bytes();
    match mode {
        DataMode::Full => {
            let mut hex = String::with_capacity(2 + 2 * bytes.len());
            hex.push_str("0x");
            for b in bytes {
                let _ = write!(hex, "{b:02x}");
            }
            hex
        }
        DataMode::Compact => format!("<{} bytes, fnv1a {:08x}>", bytes.len(), value.checksum()),
    }
}

/// `[a, b, ...]` for small constants whose values all print exactly.
fn literal_list(value: &Tensor) -> Option<String> {
    if value.numel() > INLINE_LIMIT {
        return None;
    }
    let items: Vec<String> = match value.data() {
        TensorData::F32(_) | TensorData::F16(_) | TensorData::BF16(_) => {
            let floats = value.to_f32_vec();
            if floats.iter().any(|x| !x.is_finite()) {
                return None;
            }
            floats.iter().map(|x| format!("{x:?}")).collect()
        }
        TensorData::Bool(v) => v.iter().map(|b| b.to_string()).collect(),
        _ => value.to_i64_vec().iter().map(|x| x.to_string()).collect(),
    };
    Some(format!("[{}]", items.join(", ")))
}
