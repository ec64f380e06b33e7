//! `tessera check`: run a model on a test data directory and compare every
//! output with the expected one.
//!
//! With `--interpret`, the Graph IR (after the Graph IR passes) is run by
//! the reference interpreter; without it the model is compiled for the
//! target and simulated. Both use the same comparison
//! (`tessera_compiler::compare`): per output, max abs error, max relative
//! error and cosine similarity. Tolerance: `max_abs <= 1e-4 * max(1, max
//! |expected|)` for the interpreter and `--precision fp32`; cosine
//! similarity ≥ 0.999 and relative L2 error ≤ 0.05 for `--precision bf16`
//! and for models whose outputs are fp16 or bf16.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::interp::{bind_inputs, evaluate, Keep};

use super::compile::{graph_pipeline, CompileOptions};
use super::output::outln;
use super::run::SimArgs;

/// Arguments of `tessera check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The ONNX model.
    model: PathBuf,
    /// Directory with `input_N.pb` and the expected `output_N.pb`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run the reference interpreter instead of compiling and simulating.
    #[arg(long)]
    interpret: bool,
    /// With the simulator: print the run's statistics and per-kernel profile.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    options: CompileOptions,
    #[command(flatten)]
    sim: SimArgs,
}

/// Compiles, simulates on the bound inputs, returns the outputs.
fn simulate(
    graph: &tessera_compiler::graph::Graph,
    args: &CheckArgs,
    inputs: &[(String, tessera_compiler::tensor::Tensor)],
) -> anyhow::Result<Vec<(String, tessera_compiler::tensor::Tensor)>> {
    let compiled = super::compile::backend(graph, &args.options, &args.model)?;
    let loadable = compiled.loadable;
    let bound = bind_inputs(graph, inputs).with_context(|| args.data.display().to_string())?;
    let mut sim = tessera_sim::Simulator::new(loadable.clone())?;
    for (&id, tensor) in graph.inputs().iter().zip(&bound) {
        let name = &graph.node(id).name;
        let desc = loadable
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| anyhow!("the compiled program has no input `{name}`"))?;
        let bytes =
            tessera_compiler::runtime_io::tensor_to_bytes(tensor, desc).map_err(|m| anyhow!(m))?;
        sim.set_input(name, &bytes)?;
    }
    let options = tessera_sim::Options {
        max_cycles: args.sim.max_cycles,
        trace: false,
    };
    let result = sim
        .run(&options)
        .map_err(|e| super::run::simulation_error(e, &args.model))?;
    if args.stats {
        super::run::print_stats(&result.stats, &loadable)?;
    }
    super::run::read_outputs(&sim, &loadable)
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    let graph = graph_pipeline(&args.model, &args.options, |_, _, _| Ok(()))?;
    let data = &args.data;
    let inputs = read_numbered_pbs(data, "input").map_err(|m| anyhow!(m))?;
    let expected = read_numbered_pbs(data, "output").map_err(|m| anyhow!(m))?;
    if expected.is_empty() {
        bail!("{}: no output_0.pb", data.display());
    }
    let simulated;
    let evaluation;
    let actual: Vec<(String, &_)> = if args.interpret {
        let bound = bind_inputs(&graph, &inputs).with_context(|| data.display().to_string())?;
        evaluation = evaluate(&graph, &bound, Keep::Outputs)
            .with_context(|| args.model.display().to_string())?;
        evaluation
            .outputs()
            .iter()
            .map(|(n, t)| (n.clone(), t.as_ref()))
            .collect()
    } else {
        simulated = simulate(&graph, &args, &inputs)?;
        simulated.iter().map(|(n, t)| (n.clone(), t)).collect()
    };
    let bf16_program = !args.interpret && args.options.precision == super::compile::Precision::Bf16;
    let tolerance = Tolerance::for_model(bf16_program, &expected);
    let checks = check_outputs(&actual, &expected, tolerance).map_err(|m| anyhow!(m))?;
    for c in &checks {
        outln!("{}", c.line())?;
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.comparison.pass)
        .map(|c| c.name.as_str())
        .collect();
    outln!(
        "{} of {} outputs within tolerance ({tolerance})",
        checks.len() - failed.len(),
        checks.len()
    )?;
    if let Some(first) = checks.iter().find(|c| !c.comparison.pass) {
        let m = &first.comparison.metrics;
        let why = match tolerance.allowed_abs(m) {
            Some(allowed) => format!("max_abs {:.3e} > {allowed:.3e}", m.max_abs),
            None if m.special_mismatches > 0 => {
                format!("{} NaN/inf values differ", m.special_mismatches)
            }
            None if first.comparison.mismatches > 0
                && !matches!(tolerance, Tolerance::Cosine { .. }) =>
            {
                format!("{} elements differ", first.comparison.mismatches)
            }
            None => format!(
                "cosine {:.6}, relative L2 error {:.3e} (need >= 0.999 and <= {})",
                m.cosine,
                m.rel_l2,
                Tolerance::COSINE_MAX_REL_L2
            ),
        };
        bail!("output `{}` is out of tolerance: {why}", first.name);
    }
    Ok(ExitCode::SUCCESS)
}
