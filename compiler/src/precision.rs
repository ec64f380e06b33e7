//! The arithmetic precision of a compiled program: one type for the CLI's
//! `--precision`, the e-graph's cost model, lowering and codegen.

use tessera_isa::MxuType;

/// The MXU's integer mode for a `qgemm` of `a` by `w` (u8/i8 each), or
/// `None` for other types.
pub fn integer_mxu(a: crate::tensor::DType, w: crate::tensor::DType) -> Option<MxuType> {
    use crate::runtime_io::isa_dtype;
    MxuType::of(isa_dtype(a), isa_dtype(w)).filter(|t| t.class() == tessera_isa::MxuClass::Int)
}

/// Arithmetic precision of the compiled program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[cfg_attr(feature = "cli", derive(clap::ValueEnum))]
pub enum Precision {
    /// fp32 everywhere (MXU at reduced rate).
    Fp32,
    /// bf16 MXU operands, fp32 accumulation and vector math.
    #[default]
    Bf16,
    /// int8 GEMMs: weights per output channel (symmetric, quantized when
    /// compiling), activations per row quantized on chip from their
    /// max-abs; the rest as bf16.
    Int8,
    /// FP8 E4M3 GEMMs: weights per 128×128 block, activations per 1×128
    /// tile quantized on chip (DeepSeek-V3's scheme); the rest as bf16.
    #[cfg_attr(feature = "cli", value(name = "fp8-e4m3"))]
    Fp8E4m3,
    /// FP8 E5M2 GEMMs, scaled as `fp8-e4m3`; the rest as bf16.
    #[cfg_attr(feature = "cli", value(name = "fp8-e5m2"))]
    Fp8E5m2,
}

impl Precision {
    /// The MXU input type of float matmuls (every one in fp32 and bf16;
    /// those kept high in the 8-bit precisions).
    pub fn mxu(self) -> MxuType {
        match self {
            Precision::Fp32 => MxuType::F32,
            _ => MxuType::Bf16,
        }
    }

    /// The MXU input type of GEMMs with constant weights in an 8-bit
    /// precision (`i8`, `e4m3`, `e5m2`), or `None` in fp32 and bf16.
    pub fn gemm_8bit(self) -> Option<MxuType> {
        match self {
            Precision::Int8 => Some(MxuType::I8),
            Precision::Fp8E4m3 => Some(MxuType::E4m3),
            Precision::Fp8E5m2 => Some(MxuType::E5m2),
            Precision::Fp32 | Precision::Bf16 => None,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
            Precision::Fp8E4m3 => "fp8-e4m3",
            Precision::Fp8E5m2 => "fp8-e5m2",
        }
    }

    /// Whether MXU operands are rounded below fp32 (comparisons against
    /// the fp32 reference then use the reduced-precision tolerance).
    pub fn is_reduced(self) -> bool {
        self != Precision::Fp32
    }
}
