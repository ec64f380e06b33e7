//! `tessera check --compare-all` and `--dump-tensors`: every tensor the
//! compiled program computes, against the reference interpreter's value of
//! the same ONNX value, to find the layer that went wrong.
//!
//! The program is compiled with its provenance (every ONNX node fused into
//! each kernel), simulated once with a snapshot of each debug tensor as it
//! becomes final, and compared with the interpreter's fp32 values of the
//! folded graph (`tessera_compiler::layerwise`), widened to f32 between its
//! edges for a half-precision model as the NPU computes it. The run is the
//! ordinary one: snapshots do not change the program or its timing.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::graph::{Graph, Op};
use tessera_compiler::interp::{
    bind_inputs, evaluate, evaluate_with, EvalOptions, Evaluation, Keep,
};
use tessera_compiler::layerwise::{captured_tensors, compare_tensors};
use tessera_compiler::runtime_io::tensor_to_bytes;
use tessera_compiler::tensor::Tensor;
use tessera_compiler::widen::widen_half;
use tessera_isa::Target;

use super::check::reference;
use super::compile::{backend_traced, graph_pipeline_traced, CompileOptions, Pipeline};
use super::output::{out, outln};
use super::run::SimArgs;
use super::tensors::{entries, write_dump, Entry};

/// Per-tensor options of `tessera check`.
#[derive(Args, Debug, Clone, Default)]
pub struct LayerArgs {
    /// Compare every tensor the compiled program computes with the
    /// reference interpreter's fp32 value, in graph order, and name the
    /// first one out of tolerance.
    #[arg(long)]
    pub compare_all: bool,
    /// With `--compare-all`: write every row (tensors, fused values,
    /// compile-time nodes) to FILE as CSV.
    #[arg(long, value_name = "FILE", requires = "compare_all")]
    pub csv: Option<PathBuf>,
    /// Write every computed tensor as `.npy` with an `index.json` into DIR
    /// (with `--interpret`, the interpreter's value of every node).
    #[arg(long, value_name = "DIR")]
    pub dump_tensors: Option<PathBuf>,
}

impl LayerArgs {
    /// Whether any per-tensor option was given.
    pub fn active(&self) -> bool {
        self.compare_all || self.dump_tensors.is_some()
    }
}

/// The interpreter's values of `graph` by node name.
fn values_by_name<'a>(
    graph: &'a Graph,
    eval: &'a Evaluation,
) -> impl Fn(&str) -> Option<Arc<Tensor>> + 'a {
    move |name: &str| graph.find(name).and_then(|id| eval.value(id).cloned())
}

/// Every operation's value as a dump entry, named after its ONNX value.
fn interpreter_entries(pipeline: &Pipeline, graph: &Graph, eval: &Evaluation) -> Vec<Entry> {
    let order = graph.canonical_order().unwrap_or_else(|_| graph.node_ids());
    order
        .into_iter()
        .filter(|&id| !matches!(graph.node(id).op, Op::Input | Op::Constant(_)))
        .filter_map(|id| {
            let node = graph.node(id);
            let tensor = eval.value(id)?.as_ref().clone();
            let provenance = &pipeline.provenance;
            Some(Entry {
                name: provenance
                    .value_of(&node.name)
                    .unwrap_or(&node.name)
                    .to_string(),
                node: node.name.clone(),
                op: node.op.mnemonic().to_string(),
                onnx_nodes: provenance
                    .sources_of(&node.name)
                    .iter()
                    .map(|&i| provenance.origins.nodes[i].name.clone())
                    .collect(),
                tensor,
            })
        })
        .collect()
}

/// Runs `check` with per-tensor options: the comparison table and/or the
/// dump, then the usual per-output comparison with `DIR/output_N.pb`.
pub fn check(
    model: &Path,
    data: &Path,
    options: &CompileOptions,
    target: &Target,
    sim: &SimArgs,
    layers: &LayerArgs,
    interpret: Option<Option<&EvalOptions>>,
) -> anyhow::Result<ExitCode> {
    if interpret.is_some() && layers.compare_all {
        bail!("--compare-all compares the compiled program with the interpreter: leave out --interpret");
    }
    let pipeline = graph_pipeline_traced(model, options, target, |_, _, _| Ok(()))?;
    let inputs = read_numbered_pbs(data, "input").map_err(|m| anyhow!(m))?;
    let expected = read_numbered_pbs(data, "output").map_err(|m| anyhow!(m))?;
    if expected.is_empty() {
        bail!("{}: no output_0.pb", data.display());
    }
    let context = || data.display().to_string();
    if let Some(program) = interpret {
        // As `check --interpret`: exact f32, or as the program compiled
        // with `program` computes (the same-precision reference).
        let (widened, eval_options) = match program {
            Some(program) => (
                widen_half(&pipeline.graph).map_err(|e| anyhow!("internal: {e}"))?,
                program,
            ),
            None => (None, &EvalOptions::FP32),
        };
        let graph = widened.as_ref().unwrap_or(&pipeline.graph);
        let bound = bind_inputs(graph, &inputs).with_context(context)?;
        let eval = evaluate_with(graph, &bound, Keep::All, eval_options)
            .with_context(|| model.display().to_string())?;
        if let Some(dir) = &layers.dump_tensors {
            let dumped = interpreter_entries(&pipeline, graph, &eval);
            write_dump(dir, &dumped)?;
            outln!("wrote {} tensors to {}", dumped.len(), dir.display())?;
        }
        let actual: Vec<(String, &Tensor)> = eval
            .outputs()
            .iter()
            .map(|(n, t)| (n.clone(), t.as_ref()))
            .collect();
        let reduced = program.is_some() && options.precision.is_reduced();
        let tolerance = Tolerance::for_graph(&pipeline.graph, reduced, &expected);
        return check_named_outputs(&actual, &expected, tolerance);
    }

    let compiled = backend_traced(
        &pipeline.graph,
        options,
        target,
        model,
        Some(&pipeline.provenance),
    )?;
    let loadable = compiled.loadable;
    let bound = bind_inputs(&pipeline.graph, &inputs).with_context(context)?;
    let mut simulator = tessera_sim::Simulator::new(loadable.clone())?;
    for (&id, tensor) in pipeline.graph.inputs().iter().zip(&bound) {
        let name = &pipeline.graph.node(id).name;
        let desc = loadable
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| anyhow!("the compiled program has no input `{name}`"))?;
        simulator.set_input(
            name,
            &tensor_to_bytes(tensor, desc).map_err(|m| anyhow!(m))?,
        )?;
    }
    let run_options = tessera_sim::Options {
        max_cycles: sim.max_cycles,
        watch: tessera_sim::Watch::every_tensor(&loadable),
        ..Default::default()
    };
    let result = simulator
        .run(&run_options)
        .map_err(|e| super::run::simulation_error(e, model))?;
    let tensors = captured_tensors(&loadable, &result.snapshots).map_err(|m| anyhow!(m))?;
    // Kernels are named after the graph the back end lowered (widened for
    // a half-precision model).
    let lowered = widen_half(&pipeline.graph).map_err(|e| anyhow!("internal: {e}"))?;
    let lowered = lowered.as_ref().unwrap_or(&pipeline.graph);
    let op_of = |name: &str| {
        lowered
            .find(name)
            .map_or_else(String::new, |id| lowered.node(id).op.mnemonic().to_string())
    };
    let mut tensors_failed = false;
    if layers.compare_all {
        // The NPU computes a half-precision model in f32 between its edges
        // (`widen`): so does its reference.
        let widened = widen_half(&pipeline.folded).map_err(|e| anyhow!("internal: {e}"))?;
        let folded = widened.as_ref().unwrap_or(&pipeline.folded);
        let folded_inputs = bind_inputs(folded, &inputs).with_context(context)?;
        let model_eval = evaluate(folded, &folded_inputs, Keep::All)
            .with_context(|| model.display().to_string())?;
        let optimized_eval = evaluate(&pipeline.graph, &bound, Keep::All)
            .with_context(|| model.display().to_string())?;
        let tolerance = Tolerance::for_precision(options.precision);
        let report = compare_tensors(
            &loadable,
            &tensors,
            &values_by_name(folded, &model_eval),
            &values_by_name(&pipeline.graph, &optimized_eval),
            &op_of,
            &pipeline.provenance,
            tolerance,
        );
        out!("{}", report.table())?;
        if let Some(path) = &layers.csv {
            std::fs::write(path, report.csv()).with_context(|| path.display().to_string())?;
        }
        tensors_failed = report.first_failure().is_some();
    }
    if let Some(dir) = &layers.dump_tensors {
        let dumped = entries(&loadable, tensors, op_of);
        write_dump(dir, &dumped)?;
        outln!("wrote {} tensors to {}", dumped.len(), dir.display())?;
    }
    let outputs = super::run::read_outputs(&simulator, &loadable)?;
    let code = if options.precision.gemm_8bit().is_some() {
        // As a plain `check`: the 8-bit precision's threshold.
        reference::judge_8bit(&outputs, &expected, options.precision)
    } else if options.precision.is_reduced() {
        // As a plain `check`: against the same-precision reference, the
        // distance to the expected outputs beside it.
        let program = reference::eval_options(options, target);
        let reference =
            reference::interpret(&pipeline.graph, &inputs, Some(&program), model, data)?;
        reference::judge(&outputs, &reference, &expected, options.precision)
    } else {
        let actual: Vec<(String, &Tensor)> = outputs.iter().map(|(n, t)| (n.clone(), t)).collect();
        let tolerance = Tolerance::for_graph(&pipeline.graph, false, &expected);
        check_named_outputs(&actual, &expected, tolerance)
    };
    if tensors_failed {
        bail!("a computed tensor is out of tolerance (see `first failing tensor` above)");
    }
    code
}

/// Prints one line per output and a summary; fails on the first output out
/// of tolerance.
fn check_named_outputs(
    actual: &[(String, &Tensor)],
    expected: &[(String, Tensor)],
    tolerance: Tolerance,
) -> anyhow::Result<ExitCode> {
    let checks = check_outputs(actual, expected, tolerance).map_err(|m| anyhow!(m))?;
    for c in &checks {
        outln!("{}", c.line())?;
    }
    let passed = checks.iter().filter(|c| c.comparison.pass).count();
    outln!(
        "{passed} of {} outputs within tolerance ({tolerance})",
        checks.len()
    )?;
    if let Some(first) = checks.iter().find(|c| !c.comparison.pass) {
        bail!("output `{}` is out of tolerance", first.name);
    }
    Ok(ExitCode::SUCCESS)
}
