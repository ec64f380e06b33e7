//! The op registry: every supported ONNX op type and its converter, in one
//! table. Converters live one file per op family.
//!
//! A converter reads the ONNX node through [`Ctx`] and returns the IR node
//! of each ONNX output (`None` for outputs it cannot produce). Adding an op:
//! write the converter in its family's file and add one line to the table
//! in `registry.rs`.

use crate::graph::NodeId;

use super::ctx::{ConvertResult, Ctx};

mod activation;
mod composite;
mod constant;
mod conv;
mod einsum;
mod elementwise;
mod gather;
mod matmul;
mod movement;
mod norm;
mod pool;
mod reduce;
mod registry;
mod resize;
mod scatter;
mod shape;

pub use registry::REGISTRY;

/// Converts one ONNX node.
pub type Converter = fn(&mut Ctx) -> ConvertResult<Vec<Option<NodeId>>>;

/// A registry entry.
pub struct OpEntry {
    /// ONNX op type (default domain).
    pub op_type: &'static str,
    /// Its converter.
    pub convert: Converter,
    /// The attributes the converter reads (empty: none), for `tessera ops`.
    pub attributes: &'static str,
    /// The element types it takes.
    pub dtypes: &'static str,
    /// Where it runs on the NPU when its operands are not constants (an op
    /// on constants is computed at compile time).
    pub runs: &'static str,
}

/// The registry entry of an op type.
pub fn lookup(op_type: &str) -> Option<&'static OpEntry> {
    REGISTRY.iter().find(|e| e.op_type == op_type)
}

/// A converter's result for a single output.
fn one(id: NodeId) -> ConvertResult<Vec<Option<NodeId>>> {
    Ok(vec![Some(id)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registry_has_no_duplicates() {
        let mut names: Vec<&str> = REGISTRY.iter().map(|e| e.op_type).collect();
        names.sort_unstable();
        let before = names.len();
        names.dedup();
        assert_eq!(names.len(), before);
        assert_eq!(before, 116);
    }
}
