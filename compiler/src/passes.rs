//! The pass list: one ordered, named sequence that the CLI's `--emit`,
//! `--dump-dir` and `--report` read (rustc's MIR pass habit).
//!
//! The pipeline starts with the stage `import` (the frontend's output),
//! followed by each pass of [`GRAPH_PASSES`] in order: `fold`, then
//! `egraph` (skipped with `--no-egraph`). The verifier runs on the
//! imported graph and again after every pass, in debug and release
//! builds. An observer sees the graph after each stage that ran: the CLI
//! numbers them (`01-import.graph`, `02-fold.graph`, `03-egraph.graph`).
//!
//! Lowering (`kernels`) and codegen (`asm`) follow the Graph IR passes and
//! have their own stage kinds.

use std::time::{Duration, Instant};

use tessera_isa::{MxuType, Target};

use crate::egraph::{optimize, EgraphOptions, EgraphReport};
use crate::fold::{fold, fold_before_egraph};
use crate::fuse::fuse_after_extraction;
use crate::graph::verify::{verify, VerifyError};
use crate::graph::Graph;

/// The name of the first stage: the graph as the frontend produced it.
pub const IMPORT_STAGE: &str = "import";

/// Options of the Graph IR passes.
#[derive(Clone, Debug)]
pub struct PassOptions {
    /// The e-graph optimizer's options; `None` skips it (`--no-egraph`).
    pub egraph: Option<EgraphOptions>,
}

impl PassOptions {
    /// Only the frontend's passes (import, fold): the graph as exported.
    pub fn frontend_only() -> PassOptions {
        PassOptions { egraph: None }
    }

    /// Every pass, the e-graph costed for `target` and `mxu`.
    pub fn for_target(target: Target, mxu: MxuType) -> PassOptions {
        PassOptions {
            egraph: Some(EgraphOptions::new(target, mxu)),
        }
    }
}

/// Every pass, for the `base` target with bf16 MXU operands.
impl Default for PassOptions {
    fn default() -> PassOptions {
        PassOptions::for_target(Target::base(), MxuType::Bf16)
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default)]
pub struct PassOutcome {
    /// One line on what changed.
    pub summary: String,
    /// The e-graph pass's report.
    pub egraph: Option<EgraphReport>,
}

/// A pass over Graph IR.
pub struct GraphPass {
    /// Name, used by `--emit`/`--dump-dir` and in errors.
    pub name: &'static str,
    /// One line on what it does.
    pub description: &'static str,
    /// Runs the pass; `Ok(None)` when the options skip it.
    pub run: fn(&mut Graph, &PassOptions) -> Result<Option<PassOutcome>, String>,
}

/// The Graph IR passes, in order.
pub const GRAPH_PASSES: &[GraphPass] = &[
    GraphPass {
        name: "fold",
        description: "evaluate constant subgraphs, remove dead nodes",
        run: |graph, options| {
            // With the e-graph to follow, dequantized 8-bit weights stay
            // as integers and their dequantization (see `fold`).
            let stats = if options.egraph.is_some() {
                fold_before_egraph(graph)
            } else {
                fold(graph)
            }
            .map_err(|e| e.to_string())?;
            Ok(Some(PassOutcome {
                summary: format!("{} folded, {} removed", stats.folded, stats.removed),
                egraph: None,
            }))
        },
    },
    GraphPass {
        name: "egraph",
        description:
            "e-graph optimizer: lift and fuse into NPU-native ops, then fuse elementwise chains",
        run: |graph, options| {
            let Some(egraph) = &options.egraph else {
                return Ok(None);
            };
            let report = optimize(graph, egraph).map_err(|e| e.to_string())?;
            // Bisecting rewrites (a rule limit) leaves chains alone, so that
            // a limit of 0 gives the graph unchanged.
            let chains = if egraph.rule_limit.is_none() {
                fuse_after_extraction(graph).map_err(|e| e.to_string())?
            } else {
                0
            };
            Ok(Some(PassOutcome {
                summary: format!(
                    "{} rewrites, cost {:.0} -> {:.0}, {chains} elementwise chains fused",
                    report.rewrites(),
                    report.cost_before,
                    report.cost_after
                ),
                egraph: Some(report),
            }))
        },
    },
];

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
    /// The verifier rejected the graph after a stage. (The finding is
    /// part of the message, so it is deliberately not named `source`:
    /// thiserror would make it the `source()` too and chain printers would
    /// show it twice.)
    #[error("after `{pass}`: {finding}")]
    Verify {
        /// Stage name.
        pass: String,
        /// The verifier's finding.
        finding: VerifyError,
    },
}

/// One stage that ran.
#[derive(Clone, Debug)]
pub struct StageRecord {
    /// Stage name.
    pub name: &'static str,
    /// What it did.
    pub summary: String,
    /// How long it took (verifier included).
    pub time: Duration,
}

/// What the Graph IR passes did.
#[derive(Clone, Debug, Default)]
pub struct PipelineReport {
    /// The stages that ran, in order (skipped ones are absent).
    pub stages: Vec<StageRecord>,
    /// The e-graph pass's report, if it ran.
    pub egraph: Option<EgraphReport>,
}

/// Names of all stages, in order: `import`, then each pass.
pub fn stage_names() -> Vec<&'static str> {
    std::iter::once(IMPORT_STAGE)
        .chain(GRAPH_PASSES.iter().map(|p| p.name))
        .collect()
}

/// Runs every pass with the default options ([`PassOptions::default`]).
pub fn run_graph_passes(
    graph: &mut Graph,
    observe: impl FnMut(&str, &str, &Graph),
) -> Result<PipelineReport, PassError> {
    run_graph_passes_with(graph, &PassOptions::default(), observe)
}

/// Verifies the imported graph, then runs every Graph IR pass the options
/// enable, with the verifier after each. `observe(stage, summary, graph)`
/// is called after each stage that ran (including `import`).
pub fn run_graph_passes_with(
    graph: &mut Graph,
    options: &PassOptions,
    mut observe: impl FnMut(&str, &str, &Graph),
) -> Result<PipelineReport, PassError> {
    verify(graph).map_err(|finding| PassError::Verify {
        pass: IMPORT_STAGE.into(),
        finding,
    })?;
    observe(IMPORT_STAGE, "", graph);
    let mut report = PipelineReport::default();
    for pass in GRAPH_PASSES {
        let start = Instant::now();
        let outcome = (pass.run)(graph, options).map_err(|message| PassError::Failed {
            pass: pass.name.into(),
            message,
        })?;
        let Some(outcome) = outcome else {
            continue;
        };
        verify(graph).map_err(|finding| PassError::Verify {
            pass: pass.name.into(),
            finding,
        })?;
        observe(pass.name, &outcome.summary, graph);
        report.stages.push(StageRecord {
            name: pass.name,
            summary: outcome.summary,
            time: start.elapsed(),
        });
        if outcome.egraph.is_some() {
            report.egraph = outcome.egraph;
        }
    }
    Ok(report)
}
