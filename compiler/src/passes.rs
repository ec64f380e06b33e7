//! The pass list: one ordered, named sequence that the CLI's `--emit` and
//! `--dump-dir` read (rustc's MIR pass habit).
//!
//! The pipeline starts with the stage `import` (the frontend's output),
//! followed by each pass of [`GRAPH_PASSES`] in order. The verifier runs on
//! the imported graph and again after every pass, in debug and release
//! builds. An observer sees the graph after each stage: the CLI numbers
//! them (`01-import.graph`, `02-fold.graph`, ...).
//!
//! Later stages append here: the e-graph optimizer (`egraph`) as another
//! Graph IR pass, then lowering (`kernels`) and codegen (`asm`), which
//! change the IR and will get their own stage kinds.

use crate::fold::fold;
use crate::graph::verify::{verify, VerifyError};
use crate::graph::Graph;

/// The name of the first stage: the graph as the frontend produced it.
pub const IMPORT_STAGE: &str = "import";

/// A pass over Graph IR.
pub struct GraphPass {
    /// Name, used by `--emit`/`--dump-dir` and in errors.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// Runs the pass, returning a one-line summary of what it changed.
    pub run: fn(&mut Graph) -> Result<String, String>,
}

/// The Graph IR passes, in order.
pub const GRAPH_PASSES: &[GraphPass] = &[GraphPass {
    name: "fold",
    description: "evaluate constant subgraphs, remove dead nodes",
    run: |graph| {
        let stats = fold(graph).map_err(|e| e.to_string())?;
        Ok(format!(
            "{} folded, {} removed",
            stats.folded, stats.removed
        ))
    },
}];

/// A pass failure.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PassError {
    /// The pass itself failed.
    #[error("pass `{pass}`: {message}")]
    Failed {
        /// Pass name.
        pass: String,
        /// Why.
        message: String,
    },
    /// The verifier rejected the graph after a stage.
    #[error("after `{pass}`: {source}")]
    Verify {
        /// Stage name.
        pass: String,
        /// The verifier's finding.
        source: VerifyError,
    },
}

/// Names of all stages, in order: `import`, then each pass.
pub fn stage_names() -> Vec<&'static str> {
    std::iter::once(IMPORT_STAGE)
        .chain(GRAPH_PASSES.iter().map(|p| p.name))
        .collect()
}

/// Verifies the imported graph, then runs every Graph IR pass with the
/// verifier after each. `observe(stage, summary, graph)` is called after
/// each stage (including `import`).
pub fn run_graph_passes(
    graph: &mut Graph,
    mut observe: impl FnMut(&str, &str, &Graph),
) -> Result<(), PassError> {
    verify(graph).map_err(|source| PassError::Verify {
        pass: IMPORT_STAGE.into(),
        source,
    })?;
    observe(IMPORT_STAGE, "", graph);
    for pass in GRAPH_PASSES {
        let summary = (pass.run)(graph).map_err(|message| PassError::Failed {
            pass: pass.name.into(),
            message,
        })?;
        verify(graph).map_err(|source| PassError::Verify {
            pass: pass.name.into(),
            source,
        })?;
        observe(pass.name, &summary, graph);
    }
    Ok(())
}
