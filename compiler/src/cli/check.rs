//! `tessera check`: run a model on a test data directory and compare every
//! output with the expected one.
//!
//! With `--interpret`, the Graph IR (after the Graph IR passes) is run by
//! the reference interpreter; without it the model is compiled for the
//! target and simulated. Both use the same comparison
//! (`tessera_compiler::compare`): per output, max abs error, max relative
//! error, relative L2 error and cosine similarity.
//!
//! `--interpret` alone interprets the Graph IR in exact f32; with an
//! explicit `--precision P` it computes what the program compiled at `P`
//! computes (the same-precision reference, `check/reference.rs`: MXU
//! operands rounded, half-precision models widened to f32). Tolerance:
//! `max_abs <= 1e-4 * max(1, max |expected|)` for f32 arithmetic; cosine
//! similarity ≥ 0.999 and relative L2 error ≤ 0.05 for bf16 and for models
//! whose outputs are fp16 or bf16.
//!
//! A `--precision bf16` program is judged against the bf16 reference on
//! the same inputs (cosine ≥ 0.9999, relative L2 ≤ 5e-3); its distance to
//! the expected outputs is printed too, with a note when it exceeds the
//! usual bf16 tolerance — what the number format costs on that model.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::Args;
use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::frontend::{import_file_traced, import_specializing};
use tessera_compiler::interp::EvalOptions;

use tessera_compiler::precision::Precision;
use tessera_isa::Target;

use super::asm::load_target;
use super::compile::{graph_pipeline_traced, CompileOptions};
use super::output::outln;
use super::run::SimArgs;

pub(super) mod reference;

/// Arguments of `tessera check`.
#[derive(Args, Debug)]
pub struct CheckArgs {
    /// The ONNX model.
    model: PathBuf,
    /// Directory with `input_N.pb` and the expected `output_N.pb`.
    #[arg(long, value_name = "DIR")]
    data: PathBuf,
    /// Run the reference interpreter instead of compiling and simulating:
    /// in exact f32, or, with an explicit `--precision`, rounding where the
    /// program compiled at that precision rounds.
    #[arg(long)]
    interpret: bool,
    /// With the simulator: print the run's statistics and per-kernel profile.
    #[arg(long)]
    stats: bool,
    #[command(flatten)]
    options: CompileOptions,
    #[command(flatten)]
    sim: SimArgs,
    #[command(flatten)]
    layers: super::layers::LayerArgs,
    /// Fix at compile time, to their values in the data directory, the
    /// graph inputs that must be known then (a Reshape's shape, a Slice's
    /// bounds, … fed as inputs): `--const-input` for each, found by import.
    #[arg(long)]
    const_inputs_from_data: bool,
    /// Whether `--precision` was on the command line (not its default).
    #[arg(skip)]
    precision_given: bool,
}

impl CheckArgs {
    /// Records what only the parsed matches know: whether `--precision`
    /// was given (an explicit precision makes `--interpret` compute at it).
    pub fn note_matches(&mut self, matches: &clap::ArgMatches) {
        self.precision_given =
            matches.value_source("precision") == Some(clap::parser::ValueSource::CommandLine);
    }

    /// The program `--interpret` computes as: the one compiled with these
    /// options for `target` when `--precision` is given, else none (exact
    /// f32).
    fn interpreted_program(&self, target: &Target) -> Option<EvalOptions> {
        (self.interpret && self.precision_given)
            .then(|| reference::eval_options(&self.options, target))
    }
}

/// Compiles, simulates on the bound inputs, returns the outputs.
fn simulate(
    pipeline: &super::compile::Pipeline,
    args: &CheckArgs,
    target: &Target,
    inputs: &[(String, tessera_compiler::tensor::Tensor)],
) -> anyhow::Result<Vec<(String, tessera_compiler::tensor::Tensor)>> {
    let graph = &pipeline.graph;
    let compiled = super::compile::backend_traced(
        graph,
        &args.options,
        target,
        &args.model,
        Some(&pipeline.provenance),
    )?;
    let (outputs, stats) = super::run::simulate_on(
        &compiled.loadable,
        graph,
        inputs,
        &args.sim,
        &args.model,
        &args.data,
    )?;
    if args.stats {
        super::run::print_stats(&stats, &compiled.loadable)?;
    }
    Ok(outputs)
}

/// With `--const-inputs-from-data`: the data's values of the inputs that
/// must be known at compile time, into the compile options.
fn const_inputs_from_data(args: &mut CheckArgs) -> anyhow::Result<()> {
    if !args.const_inputs_from_data {
        return Ok(());
    }
    let inputs = read_numbered_pbs(&args.data, "input").map_err(|m| anyhow!(m))?;
    let options = super::compile::import_options(&args.options)?;
    let model = &args.model;
    let (_, fixed) = import_specializing(&options, &inputs, |o| import_file_traced(model, o))
        .map_err(|e| super::compile::import_error(e, model))?;
    if !fixed.is_empty() {
        outln!(
            "inputs fixed at compile time from the data: {}",
            fixed.join(", ")
        )?;
    }
    for name in fixed {
        if let Some((_, value)) = inputs.iter().find(|(n, _)| *n == name) {
            args.options.const_values.push((name, value.clone()));
        }
    }
    Ok(())
}

pub fn check(mut args: CheckArgs) -> anyhow::Result<ExitCode> {
    if args.interpret && args.precision_given && args.options.precision.gemm_8bit().is_some() {
        bail!(
            "check --interpret has no 8-bit arithmetic: --precision {} is checked on the \
             simulator (without --interpret)",
            args.options.precision.name()
        );
    }
    const_inputs_from_data(&mut args)?;
    let target = load_target(&args.options.target)?;
    let interpreted = args.interpreted_program(&target);
    if args.layers.active() {
        return super::layers::check(
            &args.model,
            &args.data,
            &args.options,
            &target,
            &args.sim,
            &args.layers,
            args.interpret.then_some(interpreted.as_ref()),
        );
    }
    let pipeline = graph_pipeline_traced(&args.model, &args.options, &target, |_, _, _| Ok(()))?;
    let graph = &pipeline.graph;
    let data = &args.data;
    let inputs = read_numbered_pbs(data, "input").map_err(|m| anyhow!(m))?;
    let expected = read_numbered_pbs(data, "output").map_err(|m| anyhow!(m))?;
    if expected.is_empty() {
        bail!("{}: no output_0.pb", data.display());
    }
    let interpret_precision = interpreted.is_some().then_some(args.options.precision);
    let actual = if args.interpret {
        reference::interpret(graph, &inputs, interpreted.as_ref(), &args.model, data)?
    } else {
        let simulated = simulate(&pipeline, &args, &target, &inputs)?;
        if args.options.precision.gemm_8bit().is_some() {
            // No interpreter computes the 8-bit GEMMs: the program is
            // judged against the expected outputs, with the precision's
            // threshold.
            return reference::judge_8bit(&simulated, &expected, args.options.precision);
        }
        if args.options.precision.is_reduced() {
            // The program is judged against the interpreter at its own
            // precision, on the same graph and inputs.
            let program = reference::eval_options(&args.options, &target);
            let reference =
                reference::interpret(graph, &inputs, Some(&program), &args.model, data)?;
            return reference::judge(&simulated, &reference, &expected, args.options.precision);
        }
        simulated
    };
    let actual: Vec<(String, &_)> = actual.iter().map(|(n, t)| (n.clone(), t)).collect();
    let reduced = interpret_precision.is_some_and(Precision::is_reduced);
    let tolerance = Tolerance::for_graph(graph, reduced, &expected);
    let checks = check_outputs(&actual, &expected, tolerance).map_err(|m| anyhow!(m))?;
    for c in &checks {
        outln!("{}", c.line())?;
    }
    let failed = checks.iter().filter(|c| !c.comparison.pass).count();
    let of_what = match interpret_precision {
        Some(p) => format!(" (the {} reference)", p.name()),
        None => String::new(),
    };
    outln!(
        "{} of {} outputs{of_what} within tolerance ({tolerance})",
        checks.len() - failed,
        checks.len()
    )?;
    if let Some(first) = checks.iter().find(|c| !c.comparison.pass) {
        let why = reference::out_of_tolerance(first, tolerance);
        let whose = match interpret_precision {
            Some(Precision::Bf16) => {
                " (the bf16 reference itself: what the number format costs on this model)"
            }
            _ => "",
        };
        bail!("output `{}` is out of tolerance: {why}{whose}", first.name);
    }
    Ok(ExitCode::SUCCESS)
}
