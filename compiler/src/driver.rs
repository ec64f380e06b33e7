//! The back half of the pipeline as one call: Graph IR → kernels → code →
//! loadable. The CLI's `compile` and `check` and the end-to-end tests use it.

use tessera_isa::{Loadable, Target};

use crate::codegen::{generate, Code, CodegenError};
use crate::graph::Graph;
use crate::graph::GraphError;
use crate::lower::{lower, LowerError, Lowered, Precision};
use crate::widen::widen_half;

/// Why the back end failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Lowering failed.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Codegen failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// Widening a half-precision graph failed (a compiler bug).
    #[error("internal: widening to f32: {0}")]
    Widen(String),
}

/// Everything the back end produced.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Kernels and DRAM plan (its segments moved into the loadable).
    pub lowered: Lowered,
    /// Instructions and source map.
    pub code: Code,
    /// The loadable.
    pub loadable: Loadable,
}

/// Lowers, generates code and packages the loadable.
pub fn compile_graph(
    graph: &Graph,
    target: &Target,
    precision: Precision,
) -> Result<Compiled, BackendError> {
    // The NPU computes in f32 between a half-precision model's edges.
    let widened = widen_half(graph).map_err(|e: GraphError| BackendError::Widen(e.to_string()))?;
    let graph = widened.as_ref().unwrap_or(graph);
    let mut lowered = lower(graph, target, precision)?;
    let code = generate(&lowered.program, target)?;
    let mut loadable = Loadable::new(target.clone(), &code.instrs);
    // The weights move into the loadable (no second copy of hundreds of MB).
    loadable.segments = std::mem::take(&mut lowered.segments);
    loadable.inputs = lowered.inputs.clone();
    loadable.outputs = lowered.outputs.clone();
    loadable.source_map = code.source_map.clone();
    Ok(Compiled {
        lowered,
        code,
        loadable,
    })
}
