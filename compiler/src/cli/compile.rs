//! `tessera compile`: import an ONNX model, run the pass pipeline, dump IR.
//!
//! For now the pipeline ends after the Graph IR passes (import, fold):
//! `--emit graph` prints the final Graph IR (compact: large constants as
//! size and checksum) and `--dump-dir DIR` writes the Graph IR after every
//! stage as `DIR/NN-STAGE.graph`. Code generation (`-o`) is not
//! implemented yet and fails with a clear error; the target, precision and
//! e-graph flags are accepted so the interface is stable.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context as _};
use clap::{Args, ValueEnum};
use tessera_compiler::frontend::{import_file, ImportOptions};
use tessera_compiler::graph::printer::{print_graph, DataMode};
use tessera_compiler::graph::Graph;
use tessera_compiler::passes::run_graph_passes;

/// Options shared by `compile` and `check`.
#[derive(Args, Debug, Clone)]
pub struct CompileOptions {
    /// Bind a symbolic dimension, e.g. `--dim seq=128` (repeatable).
    #[arg(long = "dim", value_name = "NAME=N", value_parser = parse_dim)]
    pub dims: Vec<(String, usize)>,
    /// Target preset or target file.
    #[arg(long, default_value = "base")]
    pub target: String,
    /// Arithmetic precision of the compiled program.
    #[arg(long, value_enum, default_value_t = Precision::Fp32)]
    pub precision: Precision,
    /// Skip the e-graph optimizer.
    #[arg(long)]
    pub no_egraph: bool,
}

/// Arithmetic precision.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 everywhere.
    Fp32,
    /// bf16 operands, fp32 accumulation.
    Bf16,
}

/// An IR that `--emit` can print.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Graph IR after the Graph IR passes.
    Graph,
}

/// Arguments of `tessera compile`.
#[derive(Args, Debug)]
pub struct CompileArgs {
    /// The ONNX model.
    model: PathBuf,
    /// Output loadable.
    #[arg(short, long)]
    output: Option<PathBuf>,
    #[command(flatten)]
    options: CompileOptions,
    /// Print an IR to stdout (repeatable).
    #[arg(long, value_enum)]
    emit: Vec<Emit>,
    /// Write the IR after every stage to numbered files in this directory.
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
}

fn parse_dim(text: &str) -> Result<(String, usize), String> {
    let (name, value) = text.split_once('=').ok_or("expected NAME=N")?;
    let value = value
        .trim()
        .parse::<usize>()
        .map_err(|_| format!("`{value}` is not a size"))?;
    if name.trim().is_empty() {
        return Err("expected NAME=N".into());
    }
    Ok((name.trim().to_string(), value))
}

/// Imports a model with the options' dims.
pub fn import(model: &Path, options: &CompileOptions) -> anyhow::Result<Graph> {
    let import_options = ImportOptions {
        dims: options.dims.iter().cloned().collect::<BTreeMap<_, _>>(),
        ..ImportOptions::default()
    };
    import_file(model, &import_options).with_context(|| model.display().to_string())
}

/// Imports and runs the Graph IR passes, calling `observe(index, stage,
/// graph)` after each stage (index from 1).
pub fn graph_pipeline(
    model: &Path,
    options: &CompileOptions,
    mut observe: impl FnMut(usize, &str, &Graph) -> anyhow::Result<()>,
) -> anyhow::Result<Graph> {
    let mut graph = import(model, options)?;
    let mut index = 0;
    let mut failure = None;
    run_graph_passes(&mut graph, |stage, _summary, g| {
        index += 1;
        if failure.is_none() {
            failure = observe(index, stage, g).err();
        }
    })
    .with_context(|| model.display().to_string())?;
    if let Some(err) = failure {
        return Err(err);
    }
    Ok(graph)
}

pub fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let _ = (
        &args.options.target,
        args.options.precision,
        args.options.no_egraph,
    );
    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let graph = graph_pipeline(&args.model, &args.options, |index, stage, graph| {
        if let Some(dir) = &args.dump_dir {
            let path = dir.join(format!("{index:02}-{stage}.graph"));
            let text = print_graph(graph, DataMode::Compact)?;
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
        }
        Ok(())
    })?;
    if args.emit.contains(&Emit::Graph) && args.dump_dir.is_none() {
        print!("{}", print_graph(&graph, DataMode::Compact)?);
    }
    if args.output.is_some() {
        bail!("code generation is not implemented yet (use --emit graph or `tessera check --interpret`)");
    }
    Ok(ExitCode::SUCCESS)
}
