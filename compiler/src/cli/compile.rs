//! `tessera compile`: import an ONNX model, run the pass pipeline, lower,
//! generate code and write the loadable.
//!
//! `--emit graph` prints the final Graph IR (compact: large constants as
//! size and checksum), `--emit kernels` the Kernel IR, `--emit asm` the
//! program's assembly; `--dump-dir DIR` writes the IR after every stage as
//! numbered files (`NN-STAGE.graph`, then `kernels.txt`, `program.s`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Args, ValueEnum};
use tessera_compiler::driver::{compile_graph, Compiled};
use tessera_compiler::frontend::{import_file, ImportOptions};
use tessera_compiler::graph::printer::{print_graph, DataMode};
use tessera_compiler::graph::Graph;
use tessera_compiler::passes::run_graph_passes;
use tessera_isa::{disassemble, DisasmOptions};

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
    #[arg(long, value_enum, default_value_t = Precision::Bf16)]
    pub precision: Precision,
    /// Skip the e-graph optimizer.
    #[arg(long)]
    pub no_egraph: bool,
}

/// Arithmetic precision.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// fp32 everywhere (MXU at reduced rate).
    Fp32,
    /// bf16 MXU operands, fp32 accumulation and vector math.
    Bf16,
}

impl Precision {
    /// The lowering's precision.
    pub fn lower(self) -> tessera_compiler::lower::Precision {
        match self {
            Precision::Fp32 => tessera_compiler::lower::Precision::Fp32,
            Precision::Bf16 => tessera_compiler::lower::Precision::Bf16,
        }
    }
}

/// An IR that `--emit` can print.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Graph IR after the Graph IR passes.
    Graph,
    /// Kernel IR: tiled loop nests, buffers, DMA.
    Kernels,
    /// The generated program as assembly (segment data omitted).
    Asm,
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

/// Runs the back end on a graph for the options' target and precision.
pub fn backend(graph: &Graph, options: &CompileOptions, model: &Path) -> anyhow::Result<Compiled> {
    let target = super::asm::load_target(&options.target)?;
    compile_graph(graph, &target, options.precision.lower())
        .with_context(|| model.display().to_string())
}

pub fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    let _ = args.options.no_egraph;
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
    let wants_backend = args.output.is_some()
        || args
            .emit
            .iter()
            .any(|e| matches!(e, Emit::Kernels | Emit::Asm))
        || args.dump_dir.is_some();
    if !wants_backend {
        return Ok(ExitCode::SUCCESS);
    }
    let compiled = backend(&graph, &args.options, &args.model)?;
    let kernels = compiled.lowered.program.to_string();
    let asm_options = DisasmOptions {
        data: false,
        pc_comments: true,
    };
    let asm = disassemble(&compiled.loadable, asm_options)?;
    if let Some(dir) = &args.dump_dir {
        for (name, text) in [("kernels.txt", &kernels), ("program.s", &asm)] {
            let path = dir.join(name);
            std::fs::write(&path, text).with_context(|| path.display().to_string())?;
        }
    } else {
        if args.emit.contains(&Emit::Kernels) {
            print!("{kernels}");
        }
        if args.emit.contains(&Emit::Asm) {
            print!("{asm}");
        }
    }
    if let Some(out) = &args.output {
        std::fs::write(out, compiled.loadable.to_bytes())
            .with_context(|| out.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}
