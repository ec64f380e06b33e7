//! Lowering: Graph IR → Kernel IR.
//!
//! Each NPU-native op becomes one kernel from a template (`gemm`, …) whose
//! tile sizes fit the target; the DRAM planner places every tensor.

pub mod alloc;
pub mod gemm;

/// Why a graph cannot be lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    /// A kernel's buffers do not fit on chip.
    #[error("does not fit on chip: {0}")]
    DoesNotFit(String),
    /// The op or form is not supported by any kernel.
    #[error("node `{node}`: {message}")]
    Unsupported {
        /// Node name.
        node: String,
        /// What is missing.
        message: String,
    },
}
