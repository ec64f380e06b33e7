//! Import errors: every variant names the file, node, input or value.

use crate::tensor::TensorError;

/// An import failure. Every variant names the file, node, input or value.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The file could not be read (the path is not repeated in the message:
    /// callers prefix it, as they do for every other error).
    #[error("cannot read: {message}")]
    Io {
        /// File path.
        path: String,
        /// OS error.
        message: String,
    },
    /// Not a protobuf `ModelProto` (or truncated).
    #[error("not a valid ONNX model: {0}")]
    Parse(String),
    /// The model is structurally unusable (no graph, no opset, ...).
    #[error("{0}")]
    Model(String),
    /// Ops without a registry entry (all of them).
    #[error("{} unsupported op{}: {}", .0.len(), if .0.len() == 1 { "" } else { "s" }, list_ops(.0))]
    UnsupportedOps(Vec<(String, String)>),
    /// A tensor, input or output has a dtype Tessera does not support.
    #[error("{what}: unsupported dtype {dtype}")]
    UnsupportedDtype {
        /// What has it (`input `x``, `initializer `w``, ...).
        what: String,
        /// ONNX name of the type.
        dtype: String,
    },
    /// A symbolic dimension without a value.
    #[error("input `{input}`: symbolic dimension `{dim}` is not bound (use --dim {dim}=N)")]
    UnboundDim {
        /// Dimension name.
        dim: String,
        /// Graph input it belongs to.
        input: String,
    },
    /// A node reads a value nothing defines.
    #[error("node `{node}`: input `{value}` is not defined (not a graph input, initializer or node output)")]
    UndefinedValue {
        /// Node name.
        node: String,
        /// Value name.
        value: String,
    },
    /// A graph output nothing defines.
    #[error("graph output `{0}` is not defined by any node, input or initializer")]
    UndefinedOutput(String),
    /// The nodes do not form a DAG.
    #[error("graph has a cycle through {}", list_names(.0))]
    Cycle(Vec<String>),
    /// A node's operand must be known at compile time but is not.
    #[error(
        "node `{node}` ({op_type}): input `{value}` must be known at compile time{}",
        .input.as_ref().map(|i| format!(" but depends on graph input `{i}`")).unwrap_or_default()
    )]
    NotConstant {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// The operand's value name.
        value: String,
        /// A graph input it depends on, if any.
        input: Option<String>,
    },
    /// A size computation overflows.
    #[error("node `{node}` ({op_type}): {message}")]
    Overflow {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// Which size.
        message: String,
    },
    /// A node cannot be converted (bad attributes, types, shapes).
    #[error("node `{node}` ({op_type}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// ONNX op type.
        op_type: String,
        /// What is wrong.
        message: String,
    },
    /// An initializer or constant tensor is malformed.
    #[error(transparent)]
    Tensor(#[from] TensorError),
}

fn list_ops(ops: &[(String, String)]) -> String {
    ops.iter()
        .map(|(node, op)| format!("`{node}` ({op})"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn list_names(names: &[String]) -> String {
    let shown: Vec<String> = names.iter().take(8).map(|n| format!("`{n}`")).collect();
    let more = if names.len() > 8 {
        format!(" and {} more", names.len() - 8)
    } else {
        String::new()
    };
    format!(
        "node{} {}{more}",
        if names.len() == 1 { "" } else { "s" },
        shown.join(", ")
    )
}
