//! The back half of the pipeline as one call: Graph IR → kernels → code →
//! loadable. The CLI's `compile` and `check` and the end-to-end tests use it.

use tessera_isa::{Loadable, Target};

use crate::codegen::{generate, Code, CodegenError};
use crate::graph::Graph;
use crate::lower::{lower, LowerError, Lowered, Precision};

/// Why the back end failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Lowering failed.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Codegen failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
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
