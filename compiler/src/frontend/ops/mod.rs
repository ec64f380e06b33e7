//! The op registry: every supported ONNX op type and its converter, in one
//! table. Converters live one file per op family.
//!
//! A converter reads the ONNX node through [`Ctx`] and returns the IR node
//! of each ONNX output (`None` for outputs it cannot produce). Adding an op:
//! write the converter in its family's file and add one line here.

use crate::graph::NodeId;

use super::ctx::{ConvertResult, Ctx};

mod activation;
mod constant;
mod conv;
mod elementwise;
mod gather;
mod matmul;
mod movement;
mod norm;
mod reduce;
mod shape;

/// Converts one ONNX node.
pub type Converter = fn(&mut Ctx) -> ConvertResult<Vec<Option<NodeId>>>;

/// A registry entry.
pub struct OpEntry {
    /// ONNX op type (default domain).
    pub op_type: &'static str,
    /// Its converter.
    pub convert: Converter,
}

const fn entry(op_type: &'static str, convert: Converter) -> OpEntry {
    OpEntry { op_type, convert }
}

/// Every supported ONNX op.
pub const REGISTRY: &[OpEntry] = &[
    // elementwise.rs
    entry("Add", elementwise::binary),
    entry("Sub", elementwise::binary),
    entry("Mul", elementwise::binary),
    entry("Div", elementwise::binary),
    entry("Pow", elementwise::binary),
    entry("Equal", elementwise::binary),
    entry("Less", elementwise::binary),
    entry("LessOrEqual", elementwise::binary),
    entry("Greater", elementwise::binary),
    entry("GreaterOrEqual", elementwise::binary),
    entry("And", elementwise::binary),
    entry("Or", elementwise::binary),
    entry("Min", elementwise::variadic),
    entry("Max", elementwise::variadic),
    entry("Sqrt", elementwise::unary),
    entry("Reciprocal", elementwise::unary),
    entry("Neg", elementwise::unary),
    entry("Abs", elementwise::unary),
    entry("Exp", elementwise::unary),
    entry("Log", elementwise::unary),
    entry("Tanh", elementwise::unary),
    entry("Erf", elementwise::unary),
    entry("Sigmoid", elementwise::unary),
    entry("Relu", elementwise::unary),
    entry("Cos", elementwise::unary),
    entry("Sin", elementwise::unary),
    entry("Not", elementwise::unary),
    entry("Sign", elementwise::unary),
    entry("Floor", elementwise::unary),
    entry("Ceil", elementwise::unary),
    entry("Round", elementwise::unary),
    entry("Where", elementwise::where_),
    entry("Cast", elementwise::cast),
    entry("CastLike", elementwise::cast_like),
    entry("Mod", elementwise::modulo),
    entry("Clip", elementwise::clip),
    // activation.rs
    entry("Gelu", activation::gelu),
    entry("Softmax", activation::softmax),
    // norm.rs
    entry("LayerNormalization", norm::layer_normalization),
    entry("RMSNormalization", norm::rms_normalization),
    // reduce.rs
    entry("ReduceMean", reduce::reduce),
    entry("ReduceSum", reduce::reduce),
    entry("ReduceMax", reduce::reduce),
    // matmul.rs
    entry("MatMul", matmul::matmul),
    entry("Gemm", matmul::gemm),
    // shape.rs
    entry("Transpose", shape::transpose),
    entry("Reshape", shape::reshape),
    entry("Flatten", shape::flatten),
    entry("Squeeze", shape::squeeze),
    entry("Unsqueeze", shape::unsqueeze),
    entry("Concat", shape::concat),
    entry("Split", shape::split),
    entry("Slice", shape::slice),
    entry("Expand", shape::expand),
    entry("Shape", shape::shape),
    entry("Size", shape::size),
    entry("Trilu", shape::trilu),
    // movement.rs
    entry("Tile", movement::tile),
    entry("Pad", movement::pad),
    entry("CumSum", movement::cumsum),
    // gather.rs
    entry("Gather", gather::gather),
    entry("GatherElements", gather::gather_elements),
    entry("GatherND", gather::gather_nd),
    // conv.rs
    entry("Conv", conv::conv),
    // constant.rs
    entry("Constant", constant::constant),
    entry("ConstantOfShape", constant::constant_of_shape),
    entry("Range", constant::range),
    entry("Identity", constant::identity),
];

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
        assert_eq!(before, 68);
    }
}
