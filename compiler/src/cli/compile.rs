//! `tessera compile`: import an ONNX model, run the pass pipeline, lower,
//! generate code and write the loadable.
//!
//! `--emit graph` prints the Graph IR before the e-graph optimizer and
//! `--emit egraph` after it (compact: large constants as size and
//! checksum), `--emit kernels` the Kernel IR, `--emit asm` the program's
//! assembly; `--dump-dir DIR` writes the IR after every stage as numbered
//! files (`NN-STAGE.graph`, then `kernels.txt`, `program.s`), independently
//! of `--emit`. `--report` prints what the e-graph optimizer did;
//! `--no-egraph` skips it and `--egraph-rule-limit N` lets at most N
//! rewrites fire (to bisect one). Asking only for `--emit graph|egraph`
//! or `--report` stops after the Graph IR stages; anything else compiles to the end
//! (without `-o`, the summary is printed and nothing written).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, Context as _};
use clap::{Args, ValueEnum};
use tessera_compiler::driver::{compile_graph_traced, Compiled};
use tessera_compiler::egraph::EgraphOptions;
use tessera_compiler::frontend::{import_file_traced, ImportError, ImportOptions};
use tessera_compiler::graph::printer::{print_graph, DataMode};
use tessera_compiler::graph::Graph;
use tessera_compiler::passes::{run_graph_passes_with, PassOptions, PipelineReport};
use tessera_compiler::precision::Precision;
use tessera_compiler::provenance::{Origins, Provenance};
use tessera_compiler::tensor::Tensor;
use tessera_isa::{disassemble, DisasmOptions, Target};

use super::asm::load_target;
use super::output::{out, outln};

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
    /// With an 8-bit precision, run this node's GEMM (or every GEMM under
    /// this name scope, e.g. `/m/h.0/attn`) in bf16 (repeatable). The output
    /// head is always kept.
    #[arg(long = "keep-high", value_name = "NODE")]
    pub keep_high: Vec<String>,
    /// Skip the e-graph optimizer.
    #[arg(long)]
    pub no_egraph: bool,
    /// Let at most N e-graph rewrites fire (bisects a bad rewrite).
    #[arg(long, value_name = "N")]
    pub egraph_rule_limit: Option<usize>,
    /// Fix a graph input at compile time to the tensor in FILE (`.pb` or
    /// `.npy`), e.g. a Reshape's shape or a Slice's bounds fed as an input
    /// (repeatable). The program no longer has that input.
    #[arg(long = "const-input", value_name = "NAME=FILE", value_parser = super::run::parse_input)]
    pub const_inputs: Vec<(String, PathBuf)>,
    /// Inputs fixed at compile time to values already read (`check
    /// --const-inputs-from-data`).
    #[arg(skip)]
    pub const_values: Vec<(String, Tensor)>,
}

/// An IR that `--emit` can print.
#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Emit {
    /// Graph IR before the e-graph optimizer (imported and folded).
    Graph,
    /// Graph IR after the e-graph optimizer (what lowering reads).
    Egraph,
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
    /// Write the loadable to FILE and, without `--emit`, print a one-line
    /// summary (kernels, code size, memory peaks, roofline).
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    #[command(flatten)]
    options: CompileOptions,
    /// Print an IR to stdout (repeatable).
    #[arg(long, value_enum)]
    emit: Vec<Emit>,
    /// Write the Graph IR after every stage (`01-import.graph`,
    /// `02-fold.graph`, `03-egraph.graph`), the Kernel IR (`kernels.txt`)
    /// and the assembly (`program.s`) into DIR.
    #[arg(long, value_name = "DIR")]
    dump_dir: Option<PathBuf>,
    /// Print what the e-graph optimizer did (rules fired, cost before and
    /// after, e-graph size, stop reasons, time).
    #[arg(long)]
    report: bool,
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

/// Imports a model with the options' dims; also where each node came from.
pub fn import(model: &Path, options: &CompileOptions) -> anyhow::Result<(Graph, Origins)> {
    let import_options = import_options(options)?;
    import_file_traced(model, &import_options).map_err(|e| import_error(e, model))
}

/// The frontend's options: the bound dims and the inputs fixed at compile
/// time (`--const-input`, then the values `check` took from its data).
pub fn import_options(options: &CompileOptions) -> anyhow::Result<ImportOptions> {
    let mut input_values = BTreeMap::new();
    for (name, file) in &options.const_inputs {
        let value = super::run::read_tensor_file(file)
            .with_context(|| format!("--const-input {name}={}", file.display()))?;
        input_values.insert(name.clone(), value);
    }
    for (name, value) in &options.const_values {
        input_values.insert(name.clone(), value.clone());
    }
    Ok(ImportOptions {
        dims: options.dims.iter().cloned().collect::<BTreeMap<_, _>>(),
        input_values,
    })
}

/// An import error in the context of the model file; one that names a
/// graph input that must be known at compile time names the flag that
/// fixes it.
pub fn import_error(error: ImportError, model: &Path) -> anyhow::Error {
    let hint = match &error {
        ImportError::NotConstant {
            input: Some(input), ..
        } => format!(
            " (fix it at compile time with `--const-input {input}=FILE`, \
             or `check --const-inputs-from-data`)"
        ),
        _ => String::new(),
    };
    anyhow!("{}: {error}{hint}", model.display())
}

/// The Graph IR pass options for these compile options and their target.
pub fn pass_options(options: &CompileOptions, target: &Target) -> PassOptions {
    if options.no_egraph {
        return PassOptions::frontend_only();
    }
    let mut egraph = EgraphOptions::new(target.clone(), options.precision.mxu());
    egraph.rule_limit = options.egraph_rule_limit;
    PassOptions {
        egraph: Some(egraph),
    }
}

/// The Graph IR stages' results.
pub struct Pipeline {
    /// The graph lowering reads (after every pass).
    pub graph: Graph,
    /// The graph after folding, before the e-graph: the model as exported,
    /// with only compile-time values computed (the reference for
    /// per-tensor comparison).
    pub folded: Graph,
    /// What the passes did.
    pub report: PipelineReport,
    /// Which ONNX nodes each node of `graph` computes.
    pub provenance: Provenance,
}

/// Imports and runs the Graph IR passes for `target`, calling
/// `observe(index, stage, graph)` after each stage (index from 1); returns
/// the final and the folded graph, what the passes did and the provenance.
pub fn graph_pipeline_traced(
    model: &Path,
    options: &CompileOptions,
    target: &Target,
    mut observe: impl FnMut(usize, &str, &Graph) -> anyhow::Result<()>,
) -> anyhow::Result<Pipeline> {
    let pass_options = pass_options(options, target);
    let (mut graph, origins) = import(model, options)?;
    let mut index = 0;
    let mut failure = None;
    let mut folded = None;
    let report = run_graph_passes_with(&mut graph, &pass_options, |stage, _summary, g| {
        index += 1;
        if stage == "fold" {
            folded = Some(g.clone());
        }
        if failure.is_none() {
            failure = observe(index, stage, g).err();
        }
    })
    .with_context(|| model.display().to_string())?;
    if let Some(err) = failure {
        return Err(err);
    }
    let folded = folded.unwrap_or_else(|| graph.clone());
    let provenance = origins.attribute(&folded, &graph);
    Ok(Pipeline {
        graph,
        folded,
        report,
        provenance,
    })
}

/// Runs the back end on a graph for `target` and the options' precision,
/// recording every ONNX node fused into each kernel in the source map when
/// the provenance is given.
pub fn backend_traced(
    graph: &Graph,
    options: &CompileOptions,
    target: &Target,
    model: &Path,
    provenance: Option<&Provenance>,
) -> anyhow::Result<Compiled> {
    compile_graph_traced(
        graph,
        target,
        options.precision,
        &options.keep_high,
        provenance,
    )
    .with_context(|| model.display().to_string())
}

/// One line on what was produced: kernels, code size, memory, roofline.
fn summary(compiled: &Compiled, out: &str) -> String {
    use tessera_isa::Mem;
    let program = &compiled.lowered.program;
    let target = compiled.loadable.target();
    let spm_peak = program
        .kernels
        .iter()
        .flat_map(|k| k.buffers.iter())
        .filter(|b| b.mem == Mem::Spm)
        .map(|b| b.end())
        .max()
        .unwrap_or(0);
    let weights: u64 = compiled
        .loadable
        .segments
        .iter()
        .map(|s| s.data.len() as u64)
        .sum();
    let roofline: u64 = compiled
        .loadable
        .source_map
        .iter()
        .map(|r| r.roofline_cycles)
        .sum();
    format!(
        "{}: {} kernels, {} instructions; DRAM peak {:.1} MiB ({:.1} MiB constants); SPM peak {} KiB of {} KiB; roofline {} cycles on `{}`",
        out,
        program.kernels.len(),
        compiled.code.instrs.len(),
        program.dram_peak as f64 / (1 << 20) as f64,
        weights as f64 / (1 << 20) as f64,
        spm_peak.div_ceil(1024),
        target.spm_bytes / 1024,
        roofline,
        target.name
    )
}

pub fn compile(args: CompileArgs) -> anyhow::Result<ExitCode> {
    if let Some(dir) = &args.dump_dir {
        std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    }
    let target = load_target(&args.options.target)?;
    let mut before_egraph = None;
    let pipeline = graph_pipeline_traced(
        &args.model,
        &args.options,
        &target,
        |index, stage, graph| {
            if let Some(dir) = &args.dump_dir {
                let path = dir.join(format!("{index:02}-{stage}.graph"));
                let text = print_graph(graph, DataMode::Compact)?;
                std::fs::write(&path, text).with_context(|| path.display().to_string())?;
            }
            if stage == "fold" && args.emit.contains(&Emit::Graph) {
                before_egraph = Some(print_graph(graph, DataMode::Compact)?);
            }
            Ok(())
        },
    )?;
    let (graph, report) = (&pipeline.graph, &pipeline.report);
    if let Some(text) = &before_egraph {
        out!("{text}")?;
    }
    if args.emit.contains(&Emit::Egraph) {
        out!("{}", print_graph(graph, DataMode::Compact)?)?;
    }
    if args.report {
        match &report.egraph {
            Some(egraph) => out!("{}", egraph.render(true))?,
            None => outln!("e-graph: skipped (--no-egraph)")?,
        }
    }
    // Asking only for Graph IR (or the e-graph report) stops at the graph;
    // anything else, even nothing, compiles to the end.
    let graph_only = (!args.emit.is_empty() || args.report)
        && args.output.is_none()
        && args.dump_dir.is_none()
        && args
            .emit
            .iter()
            .all(|e| matches!(e, Emit::Graph | Emit::Egraph));
    let wants_backend = !graph_only;
    if !wants_backend {
        return Ok(ExitCode::SUCCESS);
    }
    let compiled = backend_traced(
        graph,
        &args.options,
        &target,
        &args.model,
        Some(&pipeline.provenance),
    )?;
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
    }
    if args.emit.contains(&Emit::Kernels) {
        out!("{kernels}")?;
    }
    if args.emit.contains(&Emit::Asm) {
        out!("{asm}")?;
    }
    match &args.output {
        Some(out) => {
            std::fs::write(out, compiled.loadable.to_bytes())
                .with_context(|| out.display().to_string())?;
            if args.emit.is_empty() {
                outln!("{}", summary(&compiled, &out.display().to_string()))?;
            }
        }
        None if args.emit.is_empty() => {
            let name = format!("{} (not written: -o FILE writes it)", args.model.display());
            outln!("{}", summary(&compiled, &name))?;
        }
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}
