//! The operations of Graph IR. Their text-form attributes are in
//! [`super::attrs`], their type inference in [`super::infer`].
//!
//! Ops are tensor-level and ONNX-free: attributes are typed and fully
//! resolved (axes non-negative, shapes static, slices normalized), and each
//! op's result type is a function of its operand types and attributes
//! ([`Op::infer`]). ONNX ops that are sugar for others (Gemm, Flatten,
//! Squeeze, Unsqueeze, Clip, Identity, Split, ...) are expanded by the
//! frontend and have no variant here.
//!
//! Adding an op (e.g. an NPU-native fused op): add a variant, then follow
//! the compiler's exhaustiveness errors: [`Op::mnemonic`], `Op::attrs` and
//! `Op::from_parts` (text form), `Op::infer` (types), and the
//! interpreter's `eval`.

use std::sync::Arc;

use crate::tensor::{DType, Tensor};

/// The phrase every "shape too large" error contains.
pub const TOO_MANY_ELEMENTS: &str = "has too many elements";

/// Elementwise operations with one operand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum UnaryOp {
    /// `-x`.
    Neg,
    /// `|x|`.
    Abs,
    /// `sqrt(x)`.
    Sqrt,
    /// `1 / x`.
    Reciprocal,
    /// `e^x`.
    Exp,
    /// Natural logarithm.
    Log,
    /// Hyperbolic tangent.
    Tanh,
    /// The error function.
    Erf,
    /// `1 / (1 + e^-x)`.
    Sigmoid,
    /// `max(x, 0)`.
    Relu,
    /// Cosine.
    Cos,
    /// Sine.
    Sin,
    /// Logical not (bool).
    Not,
    /// `x * sigmoid(x)` (SiLU, also called swish).
    Silu,
    /// `1` for positive, `-1` for negative, else `x` (zero, NaN).
    Sign,
    /// Round toward negative infinity.
    Floor,
    /// Round toward positive infinity.
    Ceil,
    /// Round to the nearest integer, ties to even.
    Round,
}

impl UnaryOp {
    /// Every unary op.
    pub const ALL: [UnaryOp; 18] = [
        UnaryOp::Neg,
        UnaryOp::Abs,
        UnaryOp::Sqrt,
        UnaryOp::Reciprocal,
        UnaryOp::Exp,
        UnaryOp::Log,
        UnaryOp::Tanh,
        UnaryOp::Erf,
        UnaryOp::Sigmoid,
        UnaryOp::Relu,
        UnaryOp::Cos,
        UnaryOp::Sin,
        UnaryOp::Not,
        UnaryOp::Silu,
        UnaryOp::Sign,
        UnaryOp::Floor,
        UnaryOp::Ceil,
        UnaryOp::Round,
    ];

    /// The name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            UnaryOp::Neg => "neg",
            UnaryOp::Abs => "abs",
            UnaryOp::Sqrt => "sqrt",
            UnaryOp::Reciprocal => "reciprocal",
            UnaryOp::Exp => "exp",
            UnaryOp::Log => "log",
            UnaryOp::Tanh => "tanh",
            UnaryOp::Erf => "erf",
            UnaryOp::Sigmoid => "sigmoid",
            UnaryOp::Relu => "relu",
            UnaryOp::Cos => "cos",
            UnaryOp::Sin => "sin",
            UnaryOp::Not => "not",
            UnaryOp::Silu => "silu",
            UnaryOp::Sign => "sign",
            UnaryOp::Floor => "floor",
            UnaryOp::Ceil => "ceil",
            UnaryOp::Round => "round",
        }
    }
}

/// Elementwise operations with two operands, with NumPy broadcasting.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinaryOp {
    /// `a + b`.
    Add,
    /// `a - b`.
    Sub,
    /// `a * b`.
    Mul,
    /// `a / b` (integers truncate toward zero).
    Div,
    /// `a ^ b`; the result has `a`'s type, `b` may be any numeric type.
    Pow,
    /// Minimum (NaN-propagating).
    Min,
    /// Maximum (NaN-propagating).
    Max,
    /// `a == b` → bool.
    Equal,
    /// `a < b` → bool.
    Less,
    /// `a <= b` → bool.
    LessOrEqual,
    /// `a > b` → bool.
    Greater,
    /// `a >= b` → bool.
    GreaterOrEqual,
    /// Logical and (bool).
    And,
    /// Logical or (bool).
    Or,
}

impl BinaryOp {
    /// Every binary op.
    pub const ALL: [BinaryOp; 14] = [
        BinaryOp::Add,
        BinaryOp::Sub,
        BinaryOp::Mul,
        BinaryOp::Div,
        BinaryOp::Pow,
        BinaryOp::Min,
        BinaryOp::Max,
        BinaryOp::Equal,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::And,
        BinaryOp::Or,
    ];

    /// The name in the text form.
    pub fn name(self) -> &'static str {
        match self {
            BinaryOp::Add => "add",
            BinaryOp::Sub => "sub",
            BinaryOp::Mul => "mul",
            BinaryOp::Div => "div",
            BinaryOp::Pow => "pow",
            BinaryOp::Min => "min",
            BinaryOp::Max => "max",
            BinaryOp::Equal => "equal",
            BinaryOp::Less => "less",
            BinaryOp::LessOrEqual => "less_equal",
            BinaryOp::Greater => "greater",
            BinaryOp::GreaterOrEqual => "greater_equal",
            BinaryOp::And => "and",
            BinaryOp::Or => "or",
        }
    }

    /// Whether the result is bool (comparisons and logic).
    pub fn is_predicate(self) -> bool {
        matches!(
            self,
            BinaryOp::Equal
                | BinaryOp::Less
                | BinaryOp::LessOrEqual
                | BinaryOp::Greater
                | BinaryOp::GreaterOrEqual
                | BinaryOp::And
                | BinaryOp::Or
        )
    }
}

/// What a reduction computes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ReduceKind {
    /// Sum (0 over an empty set).
    Sum,
    /// Arithmetic mean (NaN over an empty set).
    Mean,
    /// Maximum (the type's lowest value over an empty set).
    Max,
}

impl ReduceKind {
    fn name(self) -> &'static str {
        match self {
            ReduceKind::Sum => "reduce_sum",
            ReduceKind::Mean => "reduce_mean",
            ReduceKind::Max => "reduce_max",
        }
    }
}

/// How GELU is computed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GeluApprox {
    /// `0.5 x (1 + erf(x / √2))`.
    None,
    /// `0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³)))`.
    Tanh,
}

/// The activation a [`Op::Gemm`] applies to its result.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Activation {
    /// `max(x, 0)`.
    Relu,
    /// Exact GELU, `0.5 x (1 + erf(x / √2))`.
    Gelu,
    /// GELU with the tanh approximation.
    GeluTanh,
    /// `x * sigmoid(x)`.
    Silu,
}

impl Activation {
    /// Every activation.
    pub const ALL: [Activation; 4] = [
        Activation::Relu,
        Activation::Gelu,
        Activation::GeluTanh,
        Activation::Silu,
    ];

    /// The name in the text form (`act = ...`).
    pub fn name(self) -> &'static str {
        match self {
            Activation::Relu => "relu",
            Activation::Gelu => "gelu",
            Activation::GeluTanh => "gelu_tanh",
            Activation::Silu => "silu",
        }
    }

    /// The VPU function that applies it in a GEMM's epilogue.
    pub fn vpu_func(self) -> tessera_isa::UnFunc {
        use tessera_isa::UnFunc;
        match self {
            Activation::Relu => UnFunc::Relu,
            Activation::Gelu => UnFunc::Gelu,
            Activation::GeluTanh => UnFunc::GeluTanh,
            Activation::Silu => UnFunc::Silu,
        }
    }
}

/// Attributes of a convolution over `N, C, spatial...` tensors.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ConvAttrs {
    /// Stride per spatial dimension.
    pub strides: Vec<usize>,
    /// Padding: all begins, then all ends (ONNX order).
    pub pads: Vec<usize>,
    /// Dilation per spatial dimension.
    pub dilations: Vec<usize>,
    /// Number of groups (channels are split evenly).
    pub group: usize,
}

/// A Graph IR operation. Every node has exactly one result.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    /// A graph input, supplied at run time.
    Input,
    /// A compile-time constant (weights, folded values).
    Constant(Arc<Tensor>),
    /// Elementwise with one operand.
    Unary(UnaryOp),
    /// Elementwise with two broadcast operands.
    Binary(BinaryOp),
    /// `cond ? x : y` with broadcasting over all three.
    Where,
    /// Element type conversion (round to nearest even into f16/bf16,
    /// truncation toward zero into integers, non-zero into true).
    Cast {
        /// Target type.
        to: DType,
    },
    /// Gaussian error linear unit.
    Gelu {
        /// Exact or tanh approximation.
        approximate: GeluApprox,
    },
    /// Matrix product over the last two dimensions, with broadcast batch
    /// dimensions. Both operands have rank ≥ 2.
    MatMul,
    /// Permutes dimensions: output dim `i` is input dim `perm[i]`.
    Transpose {
        /// The permutation.
        perm: Vec<usize>,
    },
    /// Same elements, new shape.
    Reshape {
        /// The result shape.
        shape: Vec<usize>,
    },
    /// Broadcasts to a shape (NumPy rules).
    Expand {
        /// The result shape.
        shape: Vec<usize>,
    },
    /// Joins operands along an axis.
    Concat {
        /// The axis.
        axis: usize,
    },
    /// Strided window, one entry per dimension: output index `i` reads input
    /// index `start + i * step`. Normalized: `step != 0`, and with
    /// `step > 0`, `0 <= start <= end <= dim`; with `step < 0`,
    /// `-1 <= end <= start <= dim - 1` (or an empty range).
    Slice {
        /// First index per dimension.
        starts: Vec<i64>,
        /// Exclusive bound per dimension.
        ends: Vec<i64>,
        /// Step per dimension.
        steps: Vec<i64>,
    },
    /// `out[..a, idx.., b..] = data[..a, indices[idx..], b..]`; negative
    /// indices count from the end.
    Gather {
        /// The indexed axis.
        axis: usize,
    },
    /// `out[i] = data[i with i[axis] replaced by indices[i]]`.
    GatherElements {
        /// The indexed axis.
        axis: usize,
    },
    /// Gathers slices of `data` addressed by the last dimension of
    /// `indices` (ONNX GatherND).
    GatherNd {
        /// Leading dimensions shared by data and indices.
        batch_dims: usize,
    },
    /// The inverse of `Gather`: `out = data`, then for every position `p`
    /// of the flattened indices, in order,
    /// `out[..a, indices[p], b..] = updates[..a, p, b..]` (a later equal
    /// index wins; negative indices count from the end). Operands
    /// `[data, indices, updates]`; `updates` is
    /// `data[..axis] ++ indices.shape ++ data[axis + 1..]`. ONNX ScatterND
    /// with `reduction = none` becomes this on axis 0.
    Scatter {
        /// The indexed axis.
        axis: usize,
    },
    /// The inverse of `GatherElements`: `out = data`, then for every
    /// position `i` of `indices` (row-major order),
    /// `out[i with i[axis] = indices[i]] = updates[i]`. Operands
    /// `[data, indices, updates]`; `indices` and `updates` have one shape,
    /// of data's rank and no larger than data in any dimension.
    ScatterElements {
        /// The indexed axis.
        axis: usize,
    },
    /// Reduction over some axes.
    Reduce {
        /// Sum, mean or max.
        kind: ReduceKind,
        /// Sorted, distinct axes.
        axes: Vec<usize>,
        /// Whether reduced axes stay as size 1.
        keep_dims: bool,
    },
    /// `exp(x - max) / sum(exp(x - max))` along one axis.
    Softmax {
        /// The axis.
        axis: usize,
    },
    /// `(x - mean) / sqrt(var + epsilon) * scale (+ bias)`, statistics over
    /// dimensions `axis..`. Operands: x, scale, optional bias.
    LayerNorm {
        /// First normalized dimension.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// `x / sqrt(mean(x²) + epsilon) * scale`, over dimensions `axis..`.
    /// Operands: x, scale.
    RmsNorm {
        /// First normalized dimension.
        axis: usize,
        /// Added to the mean square.
        epsilon: f32,
    },
    /// `layer_norm(x + residual)`: a residual add and the norm after it
    /// in one pass (post-norm blocks, where the sum has no other use).
    /// Operands: x, residual (same shape), scale, optional bias.
    AddLayerNorm {
        /// First normalized dimension.
        axis: usize,
        /// Added to the variance.
        epsilon: f32,
    },
    /// `rms_norm(x + residual)`. Operands: x, residual (same shape), scale.
    AddRmsNorm {
        /// First normalized dimension.
        axis: usize,
        /// Added to the mean square.
        epsilon: f32,
    },
    /// A fused chain of elementwise ops (see [`super::fused`]): one
    /// kernel, intermediates never stored.
    Elementwise {
        /// The expression over the operands.
        expr: super::fused::FusedExpr,
    },
    /// Convolution (cross-correlation) over `N, C, spatial...`. Operands:
    /// x, weights `[M, C / group, kernel...]`, optional bias `[M]`.
    Conv(ConvAttrs),
    /// Keeps the upper (or lower) triangle of the last two dimensions,
    /// relative to diagonal `k`; zeroes the rest.
    Trilu {
        /// Upper (`j - i >= k`) or lower (`j - i <= k`).
        upper: bool,
        /// Diagonal offset.
        k: i64,
    },
    /// NPU-native matmul whose left operand's rows are gathered: `out[b] =
    /// table[rows[b, :], :] · x[b]`. Operands `[table, rows, x]`: `table`
    /// is `[V, K]` (float), `rows` `[B, M]` integer (negative rows count
    /// from the end, as in `gather`), `x` `[B, K, N]` of the table's type.
    /// Result `[B, M, N]`. A mixture-of-experts layer's routed experts
    /// (`matmul(gather(W[E, R, K], experts), x)`, the gathered-weights
    /// export) fuse into it after extraction (`fuse.rs`), so the chosen
    /// experts' weights stream from the expert table straight into the MXU
    /// instead of being copied through DRAM first.
    GatherMatMul,
    /// NPU-native GEMM: `act(a · b (+ bias))`. Operands `[a, b]` or
    /// `[a, b, bias]`: `a` is `[..., M, K]` (rank ≥ 2; the leading dims are
    /// batch, flattened into M), `b` is `[K, N]` (`[N, K]` when `trans_b`),
    /// `bias` is `[N]`. Result `[..., M, N]`.
    Gemm {
        /// `b` is stored `[N, K]` and used transposed.
        trans_b: bool,
        /// Activation applied after the bias.
        act: Option<Activation>,
    },
    /// NPU-native integer GEMM with a dequantizing epilogue:
    /// `act(f32(Σₖ (a − a_zp)(b − b_zp)) · scale + bias)`, the sum exact in
    /// wrapping int32 (the MXU's integer class), converted to f32 by
    /// round-to-nearest-even, then one f32 multiply by the column's scale
    /// and one f32 add of its bias. Operands `[a, b, scale]`, then (with
    /// `a_zp: None`) the zero point of `a`, (with `b_zp: None`) that of
    /// `b`, then optionally `bias`: `a` is
    /// `[..., M, K]` u8 or i8, `b` is `[K, N]` (`[N, K]` when `trans_b`) u8
    /// or i8, `scale` and `bias` are f32 `[N]`, a zero-point operand is one
    /// element of its operand's type, and (with `out`) last the output
    /// scale, one f32. Result f32 `[..., M, N]`, or with `out = (t, zp)`
    /// that f32 value `y` requantized as ONNX QuantizeLinear does:
    /// `saturate(round(y / out_scale) + zp)` in `t` (u8 or i8). What Q/DQ
    /// around a MatMul, and MatMulInteger and QLinearMatMul, fuse into.
    QGemm {
        /// Zero point of `a` (in `a`'s type's range); `None`: the operand
        /// after `scale`, computed at run time (DynamicQuantizeLinear).
        a_zp: Option<i32>,
        /// Zero point of `b` (in `b`'s type's range); `None`: an operand
        /// (after `a`'s), computed at run time.
        b_zp: Option<i32>,
        /// `b` is stored `[N, K]` and used transposed.
        trans_b: bool,
        /// Activation applied after the bias.
        act: Option<Activation>,
        /// Requantize the result into this 8-bit type with this zero point
        /// (and the last operand's scale).
        out: Option<(DType, i32)>,
    },
    /// NPU-native fused attention:
    /// `softmax(q · kᵀ · scale + mask, over Sk) · v`. Operands `[q, k, v]`
    /// or `[q, k, v, mask]`: `q` is `[B, H, Sq, D]`, `k` and `v` are
    /// `[B, Hkv, Sk, D]` with `H % Hkv == 0` (grouped-query: query head `h`
    /// reads kv head `h / (H / Hkv)`), `mask` is additive and broadcasts to
    /// `[B, H, Sq, Sk]`. With `causal`, positions `j > i + (Sk - Sq)` get
    /// `-inf` before the softmax. Result `[B, H, Sq, D]`.
    Attention {
        /// Multiplies `q · kᵀ` before the mask is added.
        scale: f32,
        /// Whether the causal mask applies.
        causal: bool,
    },
    /// Rotary position embedding (the LLaMA / Hugging Face rotate-half
    /// form): `x * cos + rotate_half(x) * sin`, where
    /// `rotate_half(x) = concat(-x[..., D/2:], x[..., :D/2])`. Operands
    /// `[x, cos, sin]`: `x` is `[..., S, D]` with `D` even; `cos` and `sin`
    /// broadcast to `x`.
    Rope,
}

/// Where a qgemm's optional operands are (see [`Op::QGemm`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct QGemmOperands {
    /// The run-time zero point of `a` (`a_zp: None`).
    pub a_zp: Option<usize>,
    /// The run-time zero point of `b` (`b_zp: None`).
    pub b_zp: Option<usize>,
    /// The bias.
    pub bias: Option<usize>,
    /// The output scale (`out` set).
    pub out_scale: Option<usize>,
    /// How many operands there are at least, and at most.
    pub arity: (usize, usize),
}

/// The operand positions of a qgemm with these zero points and `out`, of
/// `count` operands.
pub fn qgemm_operands(
    (a_zp, b_zp): (Option<i32>, Option<i32>),
    out: bool,
    count: usize,
) -> QGemmOperands {
    let a_at = a_zp.is_none().then_some(3);
    let b_at = b_zp.is_none().then_some(3 + usize::from(a_zp.is_none()));
    let fixed = 3 + usize::from(a_zp.is_none()) + usize::from(b_zp.is_none());
    let with_bias = count > fixed + usize::from(out);
    QGemmOperands {
        a_zp: a_at,
        b_zp: b_at,
        bias: with_bias.then_some(fixed),
        out_scale: out.then_some(fixed + usize::from(with_bias)),
        arity: (fixed + usize::from(out), fixed + 1 + usize::from(out)),
    }
}

impl Op {
    /// The op's name in the text form (`matmul`, `reduce_sum`, ...).
    pub fn mnemonic(&self) -> &'static str {
        match self {
            Op::Input => "input",
            Op::Constant(_) => "const",
            Op::Unary(u) => u.name(),
            Op::Binary(b) => b.name(),
            Op::Where => "where",
            Op::Cast { .. } => "cast",
            Op::Gelu { .. } => "gelu",
            Op::MatMul => "matmul",
            Op::GatherMatMul => "gather_matmul",
            Op::Transpose { .. } => "transpose",
            Op::Reshape { .. } => "reshape",
            Op::Expand { .. } => "expand",
            Op::Concat { .. } => "concat",
            Op::Slice { .. } => "slice",
            Op::Gather { .. } => "gather",
            Op::GatherElements { .. } => "gather_elements",
            Op::GatherNd { .. } => "gather_nd",
            Op::Scatter { .. } => "scatter",
            Op::ScatterElements { .. } => "scatter_elements",
            Op::Reduce { kind, .. } => kind.name(),
            Op::Softmax { .. } => "softmax",
            Op::LayerNorm { .. } => "layer_norm",
            Op::RmsNorm { .. } => "rms_norm",
            Op::AddLayerNorm { .. } => "add_layer_norm",
            Op::AddRmsNorm { .. } => "add_rms_norm",
            Op::Elementwise { .. } => "elementwise",
            Op::Conv(_) => "conv",
            Op::Trilu { .. } => "trilu",
            Op::Gemm { .. } => "gemm",
            Op::QGemm { .. } => "qgemm",
            Op::Attention { .. } => "attention",
            Op::Rope => "rope",
        }
    }
}
