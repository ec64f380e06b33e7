//! Enumerated operand fields: element types, MXU input types, VPU
//! functions, broadcast and transpose modes, each written by name.

use super::*;

/// Declares an enumerated field: named values, each with its encoding.
/// Encodings not listed are decode errors.
macro_rules! enum_field {
    (
        $(#[$meta:meta])*
        $name:ident, bits = $bits:literal, $(omitted = $omitted:ident,)? {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in encoding order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The assembly name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Looks a value up by its assembly name.
            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Field for $name {
            const BITS: u32 = $bits;
            const SYNTAX: &'static str = concat!("one of:", $(" ", $text),+);
            fn to_bits(self) -> u128 {
                match self { $($name::$variant => $code),+ }
            }
            fn from_bits(bits: u128) -> Result<Self, String> {
                match bits {
                    $($code => Ok($name::$variant),)+
                    other => Err(format!(concat!("invalid ", stringify!($name), " code {}"), other)),
                }
            }
            fn write_asm(&self, out: &mut String, _: &WriteCtx) {
                out.push_str(self.name());
            }
            fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
                Self::from_name(text).ok_or_else(|| {
                    format!("expected {}, found `{}`", Self::SYNTAX, text)
                })
            }
            fn random(next: &mut dyn FnMut() -> u64) -> Self {
                Self::ALL[(next() % Self::ALL.len() as u64) as usize]
            }
            $(
                fn omitted() -> Option<Self> {
                    Some($name::$omitted)
                }
            )?
        }
    };
}

enum_field! {
    /// Element data types in memory.
    DType, bits = 4, {
        /// IEEE binary32.
        F32 = 0, "f32",
        /// bfloat16 (upper half of a binary32).
        Bf16 = 1, "bf16",
        /// IEEE binary16.
        F16 = 2, "f16",
        /// Two's-complement 32-bit integer.
        I32 = 3, "i32",
        /// Two's-complement 64-bit integer.
        I64 = 4, "i64",
        /// Unsigned byte.
        U8 = 5, "u8",
        /// Two's-complement 8-bit integer.
        I8 = 6, "i8",
        /// Boolean byte: 0 false, 1 true.
        Bool = 7, "bool",
        /// OCP FP8 E4M3 (ONNX float8e4m3fn): bias 7, no infinities, max 448.
        E4m3 = 8, "e4m3",
        /// OCP FP8 E5M2 (ONNX float8e5m2): bias 15, IEEE-style, max 57344.
        E5m2 = 9, "e5m2",
    }
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::Bf16 | DType::F16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool | DType::E4m3 | DType::E5m2 => 1,
        }
    }

    /// Whether this is an integer type (booleans are not).
    pub fn is_int(self) -> bool {
        matches!(self, DType::I32 | DType::I64 | DType::U8 | DType::I8)
    }

    /// Whether this is one of the 8-bit float types.
    pub fn is_fp8(self) -> bool {
        matches!(self, DType::E4m3 | DType::E5m2)
    }
}

enum_field! {
    /// Input types of the matrix engine: the type of A, then of the weights
    /// where they differ.
    MxuType, bits = 4, {
        /// bfloat16 inputs, full rate.
        Bf16 = 0, "bf16",
        /// binary16 inputs, full rate.
        F16 = 1, "f16",
        /// binary32 inputs, reduced rate.
        F32 = 2, "f32",
        /// int8 A and weights, exact int32 accumulation.
        I8 = 3, "i8",
        /// uint8 A and weights, exact int32 accumulation.
        U8 = 4, "u8",
        /// uint8 A, int8 weights, exact int32 accumulation.
        U8I8 = 5, "u8i8",
        /// int8 A, uint8 weights, exact int32 accumulation.
        I8U8 = 6, "i8u8",
        /// FP8 E4M3 A and weights, block-scaled, fp32 accumulation.
        E4m3 = 7, "e4m3",
        /// FP8 E5M2 A and weights, block-scaled, fp32 accumulation.
        E5m2 = 8, "e5m2",
        /// FP8 E4M3 A, E5M2 weights, block-scaled.
        E4m3E5m2 = 9, "e4m3e5m2",
        /// FP8 E5M2 A, E4M3 weights, block-scaled.
        E5m2E4m3 = 10, "e5m2e4m3",
    }
}

/// What the matrix engine accumulates for an input type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MxuClass {
    /// bf16, f16, f32: fp32 accumulation, unscaled.
    Float,
    /// 8-bit integers with zero points: exact int32 accumulation.
    Int,
    /// FP8 with block scales: fp32 accumulation.
    Fp8,
}

impl MxuType {
    /// The memory type of one A element.
    pub fn a_type(self) -> DType {
        match self {
            MxuType::Bf16 => DType::Bf16,
            MxuType::F16 => DType::F16,
            MxuType::F32 => DType::F32,
            MxuType::I8 | MxuType::I8U8 => DType::I8,
            MxuType::U8 | MxuType::U8I8 => DType::U8,
            MxuType::E4m3 | MxuType::E4m3E5m2 => DType::E4m3,
            MxuType::E5m2 | MxuType::E5m2E4m3 => DType::E5m2,
        }
    }

    /// The memory type of one weight element.
    pub fn w_type(self) -> DType {
        match self {
            MxuType::Bf16 => DType::Bf16,
            MxuType::F16 => DType::F16,
            MxuType::F32 => DType::F32,
            MxuType::I8 | MxuType::U8I8 => DType::I8,
            MxuType::U8 | MxuType::I8U8 => DType::U8,
            MxuType::E4m3 | MxuType::E5m2E4m3 => DType::E4m3,
            MxuType::E5m2 | MxuType::E4m3E5m2 => DType::E5m2,
        }
    }

    /// The input type with A of type `a` and weights of type `w`, if the
    /// engine has one.
    pub fn of(a: DType, w: DType) -> Option<MxuType> {
        MxuType::ALL
            .iter()
            .copied()
            .find(|t| t.a_type() == a && t.w_type() == w)
    }

    /// How the engine accumulates this type.
    pub fn class(self) -> MxuClass {
        match self.a_type() {
            DType::I8 | DType::U8 => MxuClass::Int,
            DType::E4m3 | DType::E5m2 => MxuClass::Fp8,
            _ => MxuClass::Float,
        }
    }

    /// Whether the inputs are 8 bits wide (the engine's fast rate).
    pub fn is_8bit(self) -> bool {
        self.class() != MxuClass::Float
    }
}

enum_field! {
    /// Whether `mxu.ldw` reads the weight tile as stored or transposed.
    Trans, bits = 1, {
        /// W[k][n] at src + k*stride + n*esize.
        N = 0, "n",
        /// W[k][n] at src + n*stride + k*esize.
        T = 1, "t",
    }
}

enum_field! {
    /// How `vpu.quant` applies its scale operand.
    ScaleOp, bits = 1, omitted = Div, {
        /// `a / s`: ONNX QuantizeLinear's division (special-function rate).
        Div = 0, "div",
        /// `a × s`, `s` holding the reciprocal scale: one multiply per
        /// element (simple rate), as a quantizer in hardware is built.
        Mul = 1, "mul",
    }
}

enum_field! {
    /// Where `mxu.ldw` takes A's or the weights' zero point from (integer
    /// inputs).
    ZpSrc, bits = 1, omitted = Reg, {
        /// The value of register `azp`.
        Reg = 0, "reg",
        /// The A-type element at the SPM address in register `azp` (a zero
        /// point computed at run time, as ONNX DynamicQuantizeLinear does).
        Spm = 1, "spm",
    }
}

enum_field! {
    /// Whether a result overwrites or accumulates into its destination.
    AccMode, bits = 1, {
        /// dst = result.
        Set = 0, "set",
        /// dst = dst + result (or dst op result for reductions).
        Acc = 1, "acc",
    }
}

enum_field! {
    /// How a VPU source operand is indexed over the rows x cols region.
    Bcast, bits = 2, {
        /// Element (i, j) at addr + i*stride + j*4.
        Full = 0, "full",
        /// One row: element (i, j) at addr + j*4.
        Row = 1, "row",
        /// One column: element (i, j) at addr + i*stride.
        Col = 2, "col",
        /// One scalar: every element at addr.
        Scalar = 3, "scalar",
    }
}

enum_field! {
    /// Operand order of `vpu.bins`.
    Order, bits = 1, {
        /// dst = a op s.
        As = 0, "as",
        /// dst = s op a.
        Sa = 1, "sa",
    }
}

enum_field! {
    /// Index element type of `dma.gather`.
    IdxType, bits = 1, {
        /// 32-bit indices.
        I32 = 0, "i32",
        /// 64-bit indices.
        I64 = 1, "i64",
    }
}

enum_field! {
    /// Outer dimension set by `dma.dim`.
    DmaDim, bits = 2, {
        /// Dimension 1 (just outside the contiguous run).
        D1 = 1, "1",
        /// Dimension 2.
        D2 = 2, "2",
        /// Dimension 3 (outermost).
        D3 = 3, "3",
    }
}

enum_field! {
    /// Elementwise binary functions of the VPU (fp32).
    BinFunc, bits = 5, {
        /// a + b
        Add = 0, "add",
        /// a - b
        Sub = 1, "sub",
        /// a * b
        Mul = 2, "mul",
        /// a / b
        Div = 3, "div",
        /// maximum, NaN if either is NaN
        Max = 4, "max",
        /// minimum, NaN if either is NaN
        Min = 5, "min",
        /// a to the power b
        Pow = 6, "pow",
        /// 1.0 if a == b else 0.0
        Eq = 7, "eq",
        /// 1.0 if a != b else 0.0
        Ne = 8, "ne",
        /// 1.0 if a < b else 0.0
        Lt = 9, "lt",
        /// 1.0 if a <= b else 0.0
        Le = 10, "le",
        /// 1.0 if a > b else 0.0
        Gt = 11, "gt",
        /// 1.0 if a >= b else 0.0
        Ge = 12, "ge",
        /// 1.0 if a != 0 and b != 0 else 0.0
        And = 13, "and",
        /// 1.0 if a != 0 or b != 0 else 0.0
        Or = 14, "or",
        /// dst != 0 ? a : b (reads the destination as the condition)
        Sel = 15, "sel",
    }
}

enum_field! {
    /// Elementwise unary functions of the VPU (fp32).
    UnFunc, bits = 5, {
        /// x
        Mov = 0, "mov",
        /// -x
        Neg = 1, "neg",
        /// |x|
        Abs = 2, "abs",
        /// e^x
        Exp = 3, "exp",
        /// ln x
        Log = 4, "log",
        /// sqrt x
        Sqrt = 5, "sqrt",
        /// 1 / sqrt x
        Rsqrt = 6, "rsqrt",
        /// 1 / x
        Recip = 7, "recip",
        /// tanh x
        Tanh = 8, "tanh",
        /// erf x
        Erf = 9, "erf",
        /// 1 / (1 + e^-x)
        Sigmoid = 10, "sigmoid",
        /// max(x, 0)
        Relu = 11, "relu",
        /// x * 0.5 * (1 + erf(x / sqrt 2))
        Gelu = 12, "gelu",
        /// x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        GeluTanh = 13, "gelu_tanh",
        /// x * sigmoid(x)
        Silu = 14, "silu",
        /// sin x
        Sin = 15, "sin",
        /// cos x
        Cos = 16, "cos",
        /// 1.0 if x == 0 else 0.0
        Not = 17, "not",
        /// round toward negative infinity
        Floor = 18, "floor",
        /// round toward positive infinity
        Ceil = 19, "ceil",
        /// round to the nearest integer, ties to even
        Round = 20, "round",
        /// 1.0 if x > 0, -1.0 if x < 0, else x (±0 and NaN unchanged)
        Sign = 21, "sign",
    }
}

enum_field! {
    /// Row reductions of the VPU.
    RedFunc, bits = 2, {
        /// sum of the row
        Sum = 0, "sum",
        /// maximum of the row
        Max = 1, "max",
        /// minimum of the row
        Min = 2, "min",
        /// maximum of |a| over the row (per-row scales for quantization)
        Amax = 3, "amax",
    }
}
