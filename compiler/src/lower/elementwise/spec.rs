//! What an elementwise kernel computes: the expression, its operands in
//! DRAM and the output.

use tessera_isa::{BinFunc, UnFunc};

use crate::tensor::DType;

/// An elementwise expression over the kernel's operands.
#[derive(Clone, Debug, PartialEq)]
pub enum Ew {
    /// Operand `i`.
    Input(usize),
    /// A constant.
    Scalar(f32),
    /// A unary function.
    Unary(UnFunc, Box<Ew>),
    /// A binary function.
    Binary(BinFunc, Box<Ew>, Box<Ew>),
    /// `cond != 0 ? a : b`.
    Select(Box<Ew>, Box<Ew>, Box<Ew>),
}

/// An operand in DRAM.
#[derive(Clone, Debug, PartialEq)]
pub struct EwOperand {
    /// Byte address.
    pub addr: u64,
    /// Shape (broadcastable to the output, right-aligned).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Explicit element strides over the output's dimensions (a strided
    /// view, e.g. half of each row); `None` for a dense, broadcast operand.
    pub strides: Option<Vec<i64>>,
}

/// The whole kernel description.
#[derive(Clone, Debug, PartialEq)]
pub struct EwSpec {
    /// Source node.
    pub node: String,
    /// Operands.
    pub operands: Vec<EwOperand>,
    /// The value computed (fp32).
    pub expr: Ew,
    /// Output address.
    pub out: u64,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Output element type (the fp32 result is converted to it).
    pub dtype: DType,
    /// When set, the output is a plain conversion of operand 0 (no fp32
    /// round trip: exact integer casts).
    pub cast_only: bool,
    /// Explicit output element strides (a strided view); `None` for dense.
    pub out_strides: Option<Vec<i64>>,
}
