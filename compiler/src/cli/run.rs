//! `tessera run`: simulate a loadable on given inputs, write its outputs,
//! and report statistics and a trace.

use std::fs::File;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::runtime_io::{bytes_to_tensor, graph_dtype, tensor_to_bytes};
use tessera_compiler::tensor::{read_npy, write_npy, Tensor};
use tessera_isa::Loadable;
use tessera_sim::{FaultKind, Options, SimError, Simulator, Stats};

use super::asm::{load_target, read_loadable};
use super::output::{out, outln};

/// Arguments of `tessera run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The loadable to run.
    pub program: PathBuf,
    /// An input: NAME=FILE, FILE being `.npy` or an ONNX TensorProto `.pb`
    /// (repeatable). f32 data for an f16 or bf16 input is rounded to it.
    #[arg(long = "input", value_name = "NAME=FILE", value_parser = parse_input)]
    pub inputs: Vec<(String, PathBuf)>,
    /// Read inputs from DIR/input_N.pb (ONNX backend-test layout).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// An input the program was compiled with fixed (`compile
    /// --const-input NAME=FILE`): its value is in the program, so `--data`
    /// skips it (repeatable).
    #[arg(long = "const-input", value_name = "NAME")]
    pub const_inputs: Vec<String>,
    /// Write outputs here, in the format of the inputs: `output_N.pb` with
    /// `--data`, else `NAME.pb` or `NAME.npy` like the first `--input`
    /// file. Without it, each output is summarized in one line on stdout.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Print a statistics table and a per-kernel profile.
    #[arg(long)]
    pub stats: bool,
    /// Write the statistics and the profile as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Write a Chrome trace (Perfetto, chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Write every tensor the program computes (each kernel's output, as
    /// it becomes final) as `.npy` with an `index.json` into DIR.
    #[arg(long, value_name = "DIR")]
    pub dump_tensors: Option<PathBuf>,
    /// Refuse the loadable unless it was built for this target (preset or
    /// target file).
    #[arg(long)]
    pub target: Option<String>,
    #[command(flatten)]
    pub sim: SimArgs,
}

/// Simulator options shared by `run` and `check`.
#[derive(Args, Debug, Clone)]
pub struct SimArgs {
    /// Fail if the program is still running after this many cycles.
    #[arg(long, value_name = "N", default_value_t = tessera_sim::DEFAULT_MAX_CYCLES)]
    pub max_cycles: u64,
}

pub fn parse_input(text: &str) -> Result<(String, PathBuf), String> {
    match text.split_once('=') {
        Some((name, file)) if !name.is_empty() && !file.is_empty() => {
            Ok((name.to_string(), PathBuf::from(file)))
        }
        _ => Err("expected NAME=FILE, e.g. `x=x.npy`".into()),
    }
}

/// How outputs are written, which follows how inputs were given.
enum OutputStyle {
    /// `output_N.pb` (ONNX backend-test layout), for `--data`.
    Numbered,
    /// `NAME.pb` (ONNX TensorProto), when the first `--input` is `.pb`.
    NamedPb,
    /// `NAME.npy`, when the first `--input` is `.npy` or there is none.
    NamedNpy,
}

/// One input tensor and the file it came from.
struct Given {
    name: String,
    tensor: Tensor,
    file: PathBuf,
}

/// Reads a tensor from `.npy` or `.pb` by extension. Errors name the file.
pub fn read_tensor_file(path: &Path) -> anyhow::Result<Tensor> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "npy" => Ok(read_npy(path)?),
        "pb" => Ok(Tensor::read_pb(path)?.1),
        _ => bail!(
            "{}: unknown tensor file type (expected .npy or .pb)",
            path.display()
        ),
    }
}

/// Pairs inputs with the loadable's input descriptors.
fn gather_inputs(loadable: &Loadable, args: &RunArgs) -> anyhow::Result<(Vec<Given>, OutputStyle)> {
    let mut given: Vec<Given> = Vec::new();
    let style = if let Some(dir) = &args.data {
        let tensors =
            tessera_compiler::compare::read_numbered_pbs(dir, "input").map_err(|m| anyhow!(m))?;
        if tensors.is_empty() {
            bail!("{}: no input_0.pb found", dir.display());
        }
        let mut position = 0;
        for (file_index, (name, tensor)) in tensors.into_iter().enumerate() {
            let file = dir.join(format!("input_{file_index}.pb"));
            if args.const_inputs.contains(&name) {
                continue;
            }
            let name = if loadable.inputs.iter().any(|d| d.name == name) {
                name
            } else {
                loadable
                    .inputs
                    .get(position)
                    .map(|d| d.name.clone())
                    .ok_or_else(|| anyhow!("{}: no matching program input", file.display()))?
            };
            given.push(Given { name, tensor, file });
            position += 1;
        }
        OutputStyle::Numbered
    } else {
        match args.inputs.first() {
            Some((_, file)) if file.extension().is_some_and(|e| e == "pb") => OutputStyle::NamedPb,
            _ => OutputStyle::NamedNpy,
        }
    };
    for (name, file) in &args.inputs {
        given.push(Given {
            name: name.clone(),
            tensor: read_tensor_file(file)?,
            file: file.clone(),
        });
    }
    for (i, g) in given.iter().enumerate() {
        if let Some(first) = given[..i].iter().find(|h| h.name == g.name) {
            bail!(
                "input `{}` is given twice ({} and {})",
                g.name,
                first.file.display(),
                g.file.display()
            );
        }
    }
    Ok((given, style))
}

/// Refuses a loadable built for another target than `spec`.
fn check_target(loadable: &Loadable, program: &Path, spec: &str) -> anyhow::Result<()> {
    let wanted = load_target(spec)?;
    let built = loadable.target();
    if built == wanted {
        return Ok(());
    }
    if built.name != wanted.name {
        bail!(
            "{}: built for target `{}`, not `{}` (recompile for this target)",
            program.display(),
            built.name,
            wanted.name
        );
    }
    let differences: Vec<String> = built
        .differences(&wanted)
        .iter()
        .map(|(field, in_loadable, in_target)| format!("{field} {in_loadable} vs {in_target}"))
        .collect();
    bail!(
        "{}: built for target `{}` with different parameters than `{spec}` ({}; recompile for this target)",
        program.display(),
        built.name,
        differences.join(", ")
    )
}

/// The one-line error for a failed simulation of `program`.
pub fn simulation_error(err: SimError, program: &Path) -> anyhow::Error {
    let hint = match &err {
        SimError::Fault(fault) if fault.kind == FaultKind::CycleLimit => {
            "; raise the limit with --max-cycles"
        }
        _ => "",
    };
    anyhow!("{}: {err}{hint}", program.display())
}

/// Creates an output file before the (possibly long) simulation, so that
/// an unwritable path fails at once.
fn create_file(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("cannot create {}", path.display()))
}

/// `tessera run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loadable = read_loadable(&args.program)?;
    if let Some(spec) = &args.target {
        check_target(&loadable, &args.program, spec)?;
    }
    let (inputs, style) = gather_inputs(&loadable, &args)?;
    let mut sim =
        Simulator::new(loadable.clone()).with_context(|| args.program.display().to_string())?;
    for given in &inputs {
        let desc = loadable
            .inputs
            .iter()
            .find(|d| d.name == given.name)
            .ok_or_else(|| {
                let names: Vec<&str> = loadable.inputs.iter().map(|d| d.name.as_str()).collect();
                anyhow!(
                    "{}: the program has no input `{}` (inputs: {})",
                    given.file.display(),
                    given.name,
                    names.join(", ")
                )
            })?;
        let bytes = tensor_to_bytes(&given.tensor, desc)
            .map_err(|m| anyhow!("{}: {m}", given.file.display()))?;
        sim.set_input(&given.name, &bytes)
            .with_context(|| given.file.display().to_string())?;
    }
    let trace_file = args.trace.as_deref().map(create_file).transpose()?;
    let stats_file = args.stats_json.as_deref().map(create_file).transpose()?;
    if let Some(dir) = &args.output_dir {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if args.dump_tensors.is_some() && loadable.tensors.is_empty() {
        bail!(
            "{}: the loadable records no computed tensors to dump (it was assembled, or has no kernels)",
            args.program.display()
        );
    }
    let options = Options {
        max_cycles: args.sim.max_cycles,
        trace: args.trace.is_some(),
        watch: match args.dump_tensors {
            Some(_) => tessera_sim::Watch::every_tensor(&loadable),
            None => Vec::new(),
        },
    };
    let result = sim
        .run(&options)
        .map_err(|e| simulation_error(e, &args.program))?;
    if let Some(dir) = &args.dump_tensors {
        let tensors = tessera_compiler::layerwise::captured_tensors(&loadable, &result.snapshots)
            .map_err(|m| anyhow!(m))?;
        let entries = super::tensors::entries(&loadable, tensors, |_| String::new());
        super::tensors::write_dump(dir, &entries)?;
        outln!("wrote {} tensors to {}", entries.len(), dir.display())?;
    }
    let outputs = read_outputs(&sim, &loadable)?;
    match &args.output_dir {
        Some(dir) => write_outputs(dir, &outputs, &style)?,
        None => {
            for (name, tensor) in &outputs {
                outln!("{}", summarize(name, tensor))?;
            }
        }
    }
    if args.stats {
        print_stats(&result.stats, &loadable)?;
    }
    if let (Some(file), Some(path)) = (stats_file, &args.stats_json) {
        let mut json = result.stats.to_json();
        json["profile"] =
            serde_json::to_value(result.stats.by_node(&loadable, &loadable.target()))?;
        json["profile_by_op_type"] =
            serde_json::to_value(result.stats.by_op_type(&loadable, &loadable.target()))?;
        write_json(file, path, &json)?;
    }
    if let (Some(file), Some(path), Some(trace)) = (trace_file, &args.trace, &result.trace) {
        trace
            .write_json(file)
            .with_context(|| path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
}

fn write_json(file: File, path: &Path, json: &serde_json::Value) -> anyhow::Result<()> {
    let mut writer = std::io::BufWriter::new(file);
    serde_json::to_writer_pretty(&mut writer, json).with_context(|| path.display().to_string())?;
    writer.flush().with_context(|| path.display().to_string())
}

/// Simulates `loadable`, compiled from `graph`, on `inputs` bound to the
/// graph's inputs (by name, else position); returns every output and the
/// run's statistics. `model` and `data` name the files in errors.
pub fn simulate_on(
    loadable: &Loadable,
    graph: &tessera_compiler::graph::Graph,
    inputs: &[(String, Tensor)],
    sim_args: &SimArgs,
    model: &Path,
    data: &Path,
) -> anyhow::Result<(Vec<(String, Tensor)>, Stats)> {
    let bound = tessera_compiler::interp::bind_inputs(graph, inputs)
        .with_context(|| data.display().to_string())?;
    let mut sim = Simulator::new(loadable.clone())?;
    for (&id, tensor) in graph.inputs().iter().zip(&bound) {
        let name = &graph.node(id).name;
        let desc = loadable
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| anyhow!("the compiled program has no input `{name}`"))?;
        let bytes = tensor_to_bytes(tensor, desc).map_err(|m| anyhow!(m))?;
        sim.set_input(name, &bytes)?;
    }
    let options = Options {
        max_cycles: sim_args.max_cycles,
        ..Default::default()
    };
    let result = sim.run(&options).map_err(|e| simulation_error(e, model))?;
    Ok((read_outputs(&sim, loadable)?, result.stats))
}

/// Every output of a finished run as a tensor.
pub fn read_outputs(sim: &Simulator, loadable: &Loadable) -> anyhow::Result<Vec<(String, Tensor)>> {
    loadable
        .outputs
        .iter()
        .map(|desc| {
            let bytes = sim.read_tensor(desc)?;
            let tensor =
                bytes_to_tensor(&bytes, desc, graph_dtype(desc.dtype())).map_err(|m| anyhow!(m))?;
            Ok((desc.name.clone(), tensor))
        })
        .collect()
}

fn write_outputs(
    dir: &Path,
    outputs: &[(String, Tensor)],
    style: &OutputStyle,
) -> anyhow::Result<()> {
    for (i, (name, tensor)) in outputs.iter().enumerate() {
        let safe: String = name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        match style {
            OutputStyle::Numbered => tensor.write_pb(name, &dir.join(format!("output_{i}.pb")))?,
            OutputStyle::NamedPb => tensor.write_pb(name, &dir.join(format!("{safe}.pb")))?,
            OutputStyle::NamedNpy => write_npy(tensor, &dir.join(format!("{safe}.npy")))?,
        }
    }
    Ok(())
}

/// One line describing a tensor's values.
fn summarize(name: &str, tensor: &Tensor) -> String {
    let v = tensor.to_f64_vec();
    let finite: Vec<f64> = v.iter().copied().filter(|x| x.is_finite()).collect();
    let (min, max) = finite
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), x| {
            (a.min(*x), b.max(*x))
        });
    let mean = finite.iter().sum::<f64>() / finite.len().max(1) as f64;
    let head: Vec<String> = v.iter().take(4).map(|x| format!("{x:.6}")).collect();
    format!(
        "output {name}: {}{:?} min {min:.6} max {max:.6} mean {mean:.6} first [{}{}]",
        tensor.dtype().name(),
        tensor.shape(),
        head.join(", "),
        if v.len() > 4 { ", …" } else { "" }
    )
}

/// Prints the statistics table, the roofline comparison and the per-node
/// profile (the `--stats` output of `run` and `check`).
pub fn print_stats(stats: &Stats, loadable: &Loadable) -> anyhow::Result<()> {
    out!("{}", stats.table())?;
    if stats.roofline_cycles > 0 {
        outln!(
            "roofline          {:>14}  (cycles / roofline = {:.2})",
            stats.roofline_cycles,
            stats.cycles as f64 / stats.roofline_cycles as f64
        )?;
    }
    if !loadable.source_map.is_empty() {
        out!("{}", stats.profile_table(loadable, &loadable.target(), 25))?;
    }
    Ok(())
}
