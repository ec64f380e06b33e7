//! The op registry: every supported ONNX op type and its converter, in one
//! table. Converters live one file per op family.
//!
//! A converter reads the ONNX node through [`Ctx`] and returns the IR node
//! of each ONNX output (`None` for outputs it cannot produce). Adding an op:
//! write the converter in its family's file and add one line here.

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
mod resize;
mod scatter;
mod shape;

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

const fn entry(
    op_type: &'static str,
    convert: Converter,
    attributes: &'static str,
    dtypes: &'static str,
    runs: &'static str,
) -> OpEntry {
    OpEntry {
        op_type,
        convert,
        attributes,
        dtypes,
        runs,
    }
}

/// Floating point.
const FLOAT: &str = "f32, f16, bf16";
/// Numbers.
const NUM: &str = "f32, f16, bf16, i64, i32, i8, u8";
/// Every element type.
const ALL: &str = "f32, f16, bf16, i64, i32, i8, u8, bool";
/// Bool.
const BOOL: &str = "bool";

/// Every supported ONNX op.
pub const REGISTRY: &[OpEntry] = &[
    // elementwise.rs
    entry("Add", elementwise::binary, "", NUM, "VPU"),
    entry("Sub", elementwise::binary, "", NUM, "VPU"),
    entry("Mul", elementwise::binary, "", NUM, "VPU"),
    entry(
        "Div",
        elementwise::binary,
        "",
        NUM,
        "VPU (integers truncate)",
    ),
    entry("Pow", elementwise::binary, "", NUM, "VPU"),
    entry("Equal", elementwise::binary, "", ALL, "VPU"),
    entry("Less", elementwise::binary, "", NUM, "VPU"),
    entry("LessOrEqual", elementwise::binary, "", NUM, "VPU"),
    entry("Greater", elementwise::binary, "", NUM, "VPU"),
    entry("GreaterOrEqual", elementwise::binary, "", NUM, "VPU"),
    entry("And", elementwise::binary, "", BOOL, "VPU"),
    entry("Or", elementwise::binary, "", BOOL, "VPU"),
    entry(
        "Min",
        elementwise::variadic,
        "",
        NUM,
        "VPU (a chain of `min`)",
    ),
    entry(
        "Max",
        elementwise::variadic,
        "",
        NUM,
        "VPU (a chain of `max`)",
    ),
    entry("Sqrt", elementwise::unary, "", FLOAT, "VPU"),
    entry("Reciprocal", elementwise::unary, "", FLOAT, "VPU"),
    entry("Neg", elementwise::unary, "", NUM, "VPU"),
    entry("Abs", elementwise::unary, "", NUM, "VPU"),
    entry("Exp", elementwise::unary, "", FLOAT, "VPU"),
    entry("Log", elementwise::unary, "", FLOAT, "VPU"),
    entry("Tanh", elementwise::unary, "", FLOAT, "VPU"),
    entry("Erf", elementwise::unary, "", FLOAT, "VPU"),
    entry("Sigmoid", elementwise::unary, "", FLOAT, "VPU"),
    entry("Relu", elementwise::unary, "", NUM, "VPU"),
    entry("Cos", elementwise::unary, "", FLOAT, "VPU"),
    entry("Sin", elementwise::unary, "", FLOAT, "VPU"),
    entry("Not", elementwise::unary, "", BOOL, "VPU"),
    entry("Sign", elementwise::unary, "", NUM, "VPU"),
    entry("Floor", elementwise::unary, "", FLOAT, "VPU"),
    entry("Ceil", elementwise::unary, "", FLOAT, "VPU"),
    entry("Round", elementwise::unary, "", FLOAT, "VPU (ties to even)"),
    entry("Where", elementwise::where_, "", ALL, "VPU"),
    entry(
        "Cast",
        elementwise::cast,
        "to",
        ALL,
        "VPU (DMA converts at the edges)",
    ),
    entry("CastLike", elementwise::cast_like, "", ALL, "as Cast"),
    entry(
        "Mod",
        elementwise::modulo,
        "fmod",
        NUM,
        "VPU (div, floor/ceil, where)",
    ),
    entry(
        "BitShift",
        elementwise::bit_shift,
        "direction",
        "i64, i32, i8, u8",
        "DMA gathers 2^y; VPU multiply or floor-divide, wrap by cast (exact for 8-bit; 32/64-bit while values fit fp32)",
    ),
    entry(
        "Clip",
        elementwise::clip,
        "min, max (opset < 11)",
        NUM,
        "VPU (max, min)",
    ),
    // activation.rs
    entry(
        "Gelu",
        activation::gelu,
        "approximate",
        FLOAT,
        "VPU; fused into a GEMM's epilogue",
    ),
    entry(
        "Softmax",
        activation::softmax,
        "axis",
        FLOAT,
        "VPU row kernel; inside attention kernels",
    ),
    // composite.rs
    entry(
        "LeakyRelu",
        composite::activation,
        "alpha",
        FLOAT,
        "VPU (where, mul)",
    ),
    entry(
        "PRelu",
        composite::activation,
        "",
        FLOAT,
        "VPU (where, mul)",
    ),
    entry(
        "Elu",
        composite::activation,
        "alpha",
        FLOAT,
        "VPU (exp, where)",
    ),
    entry(
        "Selu",
        composite::activation,
        "alpha, gamma",
        FLOAT,
        "VPU (exp, where)",
    ),
    entry(
        "Celu",
        composite::activation,
        "alpha",
        FLOAT,
        "VPU (exp, min, max)",
    ),
    entry(
        "ThresholdedRelu",
        composite::activation,
        "alpha",
        FLOAT,
        "VPU (where)",
    ),
    entry(
        "HardSigmoid",
        composite::activation,
        "alpha, beta",
        FLOAT,
        "VPU (mul, add, min, max)",
    ),
    entry("HardSwish", composite::activation, "", FLOAT, "VPU"),
    entry(
        "Softplus",
        composite::activation,
        "",
        FLOAT,
        "VPU (relu(x) + log(1 + exp(-abs x)))",
    ),
    entry("Softsign", composite::activation, "", FLOAT, "VPU"),
    entry(
        "Mish",
        composite::activation,
        "",
        FLOAT,
        "VPU (softplus, tanh)",
    ),
    entry(
        "LogSoftmax",
        composite::log_softmax,
        "axis",
        FLOAT,
        "VPU (row max, sum, log)",
    ),
    entry("IsNaN", composite::is_special, "", FLOAT, "VPU (x != x)"),
    entry(
        "IsInf",
        composite::is_special,
        "detect_positive, detect_negative",
        FLOAT,
        "VPU (compares)",
    ),
    entry("Xor", composite::xor, "", BOOL, "VPU (or, and, not)"),
    entry(
        "ReduceMin",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        ALL,
        "VPU row reduction (-max(-x))",
    ),
    entry(
        "ReduceProd",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        NUM,
        "DMA halves + VPU multiplies (log2 n steps per axis)",
    ),
    entry(
        "ReduceL1",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        NUM,
        "VPU row reduction",
    ),
    entry(
        "ReduceL2",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        FLOAT,
        "VPU row reduction",
    ),
    entry(
        "ReduceSumSquare",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        NUM,
        "VPU row reduction",
    ),
    entry(
        "ReduceLogSum",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        FLOAT,
        "VPU row reduction",
    ),
    entry(
        "ReduceLogSumExp",
        composite::reduce,
        "axes, keepdims, noop_with_empty_axes",
        FLOAT,
        "VPU row reductions (max, sum)",
    ),
    entry(
        "BatchNormalization",
        norm::batch_normalization,
        "epsilon, momentum, training_mode (batch statistics, running mean and variance outputs)",
        FLOAT,
        "VPU (folds into constants per channel)",
    ),
    entry(
        "InstanceNormalization",
        norm::instance_group_normalization,
        "epsilon",
        FLOAT,
        "VPU row kernel (layer norm per channel)",
    ),
    entry(
        "GroupNormalization",
        norm::instance_group_normalization,
        "num_groups, epsilon (opset 21: per-channel scale)",
        FLOAT,
        "VPU row kernel (layer norm per group)",
    ),
    entry(
        "GlobalAveragePool",
        composite::global_pool,
        "",
        FLOAT,
        "VPU row reduction",
    ),
    entry(
        "GlobalMaxPool",
        composite::global_pool,
        "",
        FLOAT,
        "VPU row reduction",
    ),
    entry(
        "DepthToSpace",
        composite::depth_space,
        "blocksize, mode",
        ALL,
        "DMA (reshape, transpose)",
    ),
    entry(
        "SpaceToDepth",
        composite::depth_space,
        "blocksize, mode",
        ALL,
        "DMA (reshape, transpose)",
    ),
    entry(
        "ArgMax",
        composite::arg_extreme,
        "axis, keepdims, select_last_index",
        ALL,
        "VPU (row max, compare, position max)",
    ),
    entry(
        "ArgMin",
        composite::arg_extreme,
        "axis, keepdims, select_last_index",
        ALL,
        "VPU (row max of -x, compare, position max)",
    ),
    entry(
        "TopK",
        composite::top_k,
        "axis, largest, sorted (always sorted); K known at compile time, at most 64",
        NUM,
        "VPU (K passes of row max, position, mask)",
    ),
    entry(
        "OneHot",
        composite::one_hot,
        "axis",
        NUM,
        "VPU (compare with positions, where); depth known at compile time",
    ),
    // pool.rs
    entry(
        "MaxPool",
        pool::pool,
        "kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, storage_order (Indices output: first maximum)",
        NUM,
        "DMA (strided windows) + VPU max; Indices by compare and select",
    ),
    entry(
        "AveragePool",
        pool::pool,
        "kernel_shape, strides, pads, dilations, auto_pad, ceil_mode, count_include_pad",
        FLOAT,
        "DMA (strided windows) + VPU add, divide",
    ),
    // norm.rs
    entry(
        "LayerNormalization",
        norm::layer_normalization,
        "axis, epsilon, stash_type",
        FLOAT,
        "VPU row kernel",
    ),
    entry(
        "RMSNormalization",
        norm::rms_normalization,
        "axis, epsilon, stash_type",
        FLOAT,
        "VPU row kernel",
    ),
    // reduce.rs
    entry(
        "ReduceMean",
        reduce::reduce,
        "axes, keepdims, noop_with_empty_axes",
        NUM,
        "VPU row reduction",
    ),
    entry(
        "ReduceSum",
        reduce::reduce,
        "axes, keepdims, noop_with_empty_axes",
        NUM,
        "VPU row reduction",
    ),
    entry(
        "ReduceMax",
        reduce::reduce,
        "axes, keepdims, noop_with_empty_axes",
        ALL,
        "VPU row reduction",
    ),
    // einsum.rs
    entry(
        "Einsum",
        einsum::einsum,
        "equation (1 or 2 operands, no diagonals)",
        NUM,
        "MXU (one batched matmul) + DMA transposes, VPU sums",
    ),
    // matmul.rs
    entry("MatMul", matmul::matmul, "", NUM, "MXU"),
    entry(
        "Gemm",
        matmul::gemm,
        "alpha, beta, transA, transB",
        FLOAT,
        "MXU (bias and activation fused)",
    ),
    // shape.rs
    entry(
        "Transpose",
        shape::transpose,
        "perm",
        ALL,
        "DMA (strided copy), often absorbed into its producer",
    ),
    entry("Reshape", shape::reshape, "allowzero", ALL, "none (a view)"),
    entry("Flatten", shape::flatten, "axis", ALL, "none (a view)"),
    entry("Squeeze", shape::squeeze, "axes", ALL, "none (a view)"),
    entry("Unsqueeze", shape::unsqueeze, "axes", ALL, "none (a view)"),
    entry("Concat", shape::concat, "axis", ALL, "DMA"),
    entry(
        "Split",
        shape::split,
        "axis, split, num_outputs",
        ALL,
        "DMA (one slice per output)",
    ),
    entry(
        "Slice",
        shape::slice,
        "starts, ends, axes (opset < 10)",
        ALL,
        "DMA (strided copy)",
    ),
    entry("Expand", shape::expand, "", ALL, "DMA (broadcast copy)"),
    entry("Shape", shape::shape, "start, end", ALL, "compile time"),
    entry("Size", shape::size, "", ALL, "compile time"),
    entry(
        "Trilu",
        shape::trilu,
        "upper",
        ALL,
        "DMA copy + VPU zeroing",
    ),
    // movement.rs
    entry(
        "Tile",
        movement::tile,
        "",
        ALL,
        "DMA (reshape + broadcast copy)",
    ),
    entry(
        "Pad",
        movement::pad,
        "mode (constant, reflect, edge, wrap), pads and value (opset < 11)",
        ALL,
        "DMA (slices, broadcast constants, concat)",
    ),
    entry(
        "CumSum",
        movement::cumsum,
        "exclusive, reverse",
        NUM,
        "DMA shifts + VPU adds (log2 n steps)",
    ),
    // resize.rs
    entry(
        "Resize",
        resize::resize,
        "mode (nearest, linear, cubic), coordinate_transformation_mode (all; tf_crop_and_resize with roi known at compile time), nearest_mode, cubic_coeff_a, exclude_outside, extrapolation_value, keep_aspect_ratio_policy, axes, antialias; scales or sizes known at compile time",
        FLOAT,
        "DMA (constant-index gathers) + VPU weights",
    ),
    // gather.rs
    entry("Gather", gather::gather, "axis", ALL, "DMA (indexed rows)"),
    entry(
        "GatherElements",
        gather::gather_elements,
        "axis",
        ALL,
        "DMA (indexed elements)",
    ),
    entry(
        "GatherND",
        gather::gather_nd,
        "batch_dims",
        ALL,
        "DMA (static copies for compile-time indices, a row gather for run-time ones)",
    ),
    // scatter.rs
    entry(
        "ScatterElements",
        scatter::scatter_elements,
        "axis, reduction (add, mul, max, min composed by one-hot comparison)",
        ALL,
        "DMA (dma.scatter); reductions on the VPU",
    ),
    entry(
        "Scatter",
        scatter::scatter_elements,
        "axis (deprecated alias of ScatterElements)",
        ALL,
        "DMA (dma.scatter)",
    ),
    entry(
        "ScatterND",
        scatter::scatter_nd,
        "reduction (add, mul, max, min composed by one-hot comparison)",
        ALL,
        "DMA (dma.scatter of rows); reductions on the VPU",
    ),
    // conv.rs
    entry(
        "Conv",
        conv::conv,
        "auto_pad, dilations, group, kernel_shape, pads, strides",
        FLOAT,
        "MXU (im2col GEMM)",
    ),
    entry(
        "ConvTranspose",
        conv::conv_transpose,
        "auto_pad, dilations, group, kernel_shape, output_padding, output_shape, pads, strides",
        FLOAT,
        "MXU (zero-inserted input, stride-1 im2col GEMM with flipped weights)",
    ),
    // constant.rs
    entry(
        "Constant",
        constant::constant,
        "value, value_float(s), value_int(s), sparse_value",
        ALL,
        "compile time",
    ),
    entry(
        "ConstantOfShape",
        constant::constant_of_shape,
        "value",
        ALL,
        "compile time",
    ),
    entry(
        "Range",
        constant::range,
        "",
        NUM,
        "compile time (bounds must be known)",
    ),
    entry(
        "NonZero",
        constant::non_zero,
        "",
        ALL,
        "compile time (its operand must be known: the count decides the shape)",
    ),
    entry(
        "Identity",
        constant::identity,
        "",
        ALL,
        "none (the operand itself)",
    ),
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
        assert_eq!(before, 111);
    }
}
