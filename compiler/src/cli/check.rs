//! `tessera check`: run a model on a test data directory and compare every
//! output with the expected one.
//!
//! With `--interpret`, the Graph IR (after the Graph IR passes) is run by
//! the reference interpreter. Without it the model will be compiled and
//! simulated once that pipeline exists. Both use the same comparison
//! (`tessera_compiler::compare`): per output, max abs error, max relative
//! error and cosine similarity; within tolerance when
//! `max_abs <= 1e-4 * max(1, max |expected|)`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::interp::{bind_inputs, evaluate, Keep};

use super::compile::{graph_pipeline, CompileOptions};

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
    #[command(flatten)]
    options: CompileOptions,
}

pub fn check(args: CheckArgs) -> anyhow::Result<ExitCode> {
    if !args.interpret {
        bail!("compiling and simulating is not implemented yet; use --interpret");
    }
    let graph = graph_pipeline(&args.model, &args.options, |_, _, _| Ok(()))?;
    let data = &args.data;
    let inputs = read_numbered_pbs(data, "input").map_err(|m| anyhow!(m))?;
    let expected = read_numbered_pbs(data, "output").map_err(|m| anyhow!(m))?;
    if expected.is_empty() {
        bail!("{}: no output_0.pb", data.display());
    }
    let bound = bind_inputs(&graph, &inputs).with_context(|| data.display().to_string())?;
    let evaluation = evaluate(&graph, &bound, Keep::Outputs)
        .with_context(|| args.model.display().to_string())?;
    let actual: Vec<(String, &_)> = evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_ref()))
        .collect();
    let tolerance = Tolerance::MODEL_FP32;
    let checks = check_outputs(&actual, &expected, tolerance).map_err(|m| anyhow!(m))?;
    for c in &checks {
        println!("{}", c.line());
    }
    let failed: Vec<&str> = checks
        .iter()
        .filter(|c| !c.comparison.pass)
        .map(|c| c.name.as_str())
        .collect();
    println!(
        "{} of {} outputs within tolerance ({tolerance})",
        checks.len() - failed.len(),
        checks.len()
    );
    if let Some(first) = checks.iter().find(|c| !c.comparison.pass) {
        let metrics = &first.comparison.metrics;
        let allowed = tolerance.allowed_abs(metrics).unwrap_or(0.0);
        bail!(
            "output `{}` is out of tolerance: max_abs {:.3e} > {allowed:.3e}",
            first.name,
            metrics.max_abs
        );
    }
    Ok(ExitCode::SUCCESS)
}
