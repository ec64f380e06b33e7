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
}

impl Precision {
    /// The MXU input type.
    pub fn mxu(self) -> MxuType {
        match self {
            Precision::Fp32 => MxuType::F32,
            Precision::Bf16 => MxuType::Bf16,
        }
    }

    /// The name used on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Whether MXU operands are rounded below fp32 (comparisons against
    /// the fp32 reference then use the reduced-precision tolerance).
    pub fn is_reduced(self) -> bool {
        self != Precision::Fp32
    }
}
