//! `tessera run`: simulate a loadable on given inputs, write its outputs,
//! and report statistics and a trace.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{anyhow, bail, Context as _};
use clap::Args;
use tessera_compiler::runtime_io::{bytes_to_tensor, graph_dtype, tensor_to_bytes};
use tessera_compiler::tensor::{read_npy, write_npy, Tensor};
use tessera_isa::Loadable;
use tessera_sim::{Options, Simulator, Stats};

use super::asm::{load_target, read_loadable};
use super::output::{out, outln};

/// Arguments of `tessera run`.
#[derive(Args, Debug)]
pub struct RunArgs {
    /// The loadable to run.
    pub program: PathBuf,
    /// An input: NAME=FILE, FILE being `.npy` or an ONNX TensorProto `.pb`.
    #[arg(long = "input", value_name = "NAME=FILE")]
    pub inputs: Vec<String>,
    /// Read inputs from DIR/input_N.pb (ONNX backend-test layout).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// Write outputs here: `NAME.npy` for `--input` files, `output_N.pb` for `--data`.
    #[arg(long, value_name = "DIR")]
    pub output_dir: Option<PathBuf>,
    /// Print a statistics table.
    #[arg(long)]
    pub stats: bool,
    /// Write the statistics as JSON.
    #[arg(long, value_name = "FILE")]
    pub stats_json: Option<PathBuf>,
    /// Write a Chrome trace (Perfetto, chrome://tracing).
    #[arg(long, value_name = "FILE")]
    pub trace: Option<PathBuf>,
    /// Refuse the loadable unless it was built for this target.
    #[arg(long)]
    pub target: Option<String>,
    /// Stop with a fault after this many cycles.
    #[arg(long, default_value_t = 1u64 << 40)]
    pub max_cycles: u64,
}

/// How inputs were given, which decides how outputs are written.
enum InputStyle {
    Files,
    Data,
}

/// Reads a tensor from `.npy` or `.pb` by extension.
pub fn read_tensor_file(path: &Path) -> anyhow::Result<Tensor> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    match ext {
        "npy" => read_npy(path).with_context(|| path.display().to_string()),
        "pb" => Ok(Tensor::read_pb(path)
            .with_context(|| path.display().to_string())?
            .1),
        _ => bail!(
            "{}: unknown tensor file type (expected .npy or .pb)",
            path.display()
        ),
    }
}

/// Pairs inputs with the loadable's input descriptors.
fn gather_inputs(
    loadable: &Loadable,
    args: &RunArgs,
) -> anyhow::Result<(Vec<(String, Tensor)>, InputStyle)> {
    let mut given: Vec<(String, Tensor)> = Vec::new();
    let style = if let Some(dir) = &args.data {
        let tensors =
            tessera_compiler::compare::read_numbered_pbs(dir, "input").map_err(|m| anyhow!(m))?;
        if tensors.is_empty() {
            bail!("{}: no input_0.pb found", dir.display());
        }
        for (position, (name, tensor)) in tensors.into_iter().enumerate() {
            let name = if loadable.inputs.iter().any(|d| d.name == name) {
                name
            } else {
                loadable
                    .inputs
                    .get(position)
                    .map(|d| d.name.clone())
                    .ok_or_else(|| {
                        anyhow!(
                            "{}: input_{position}.pb has no matching program input",
                            dir.display()
                        )
                    })?
            };
            given.push((name, tensor));
        }
        InputStyle::Data
    } else {
        InputStyle::Files
    };
    for spec in &args.inputs {
        let (name, file) = spec
            .split_once('=')
            .ok_or_else(|| anyhow!("--input `{spec}`: expected NAME=FILE"))?;
        given.push((name.to_string(), read_tensor_file(Path::new(file))?));
    }
    Ok((given, style))
}

/// `tessera run`.
pub fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let loadable = read_loadable(&args.program)?;
    if let Some(spec) = &args.target {
        let wanted = load_target(spec)?;
        let built = loadable.target();
        if wanted != built {
            bail!(
                "{}: built for target `{}`, not `{}` (recompile for this target)",
                args.program.display(),
                built.name,
                wanted.name
            );
        }
    }
    let (inputs, style) = gather_inputs(&loadable, &args)?;
    let mut sim =
        Simulator::new(loadable.clone()).with_context(|| args.program.display().to_string())?;
    for (name, tensor) in &inputs {
        let desc = loadable
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| {
                let names: Vec<&str> = loadable.inputs.iter().map(|d| d.name.as_str()).collect();
                anyhow!(
                    "the program has no input `{name}` (inputs: {})",
                    names.join(", ")
                )
            })?;
        let bytes = tensor_to_bytes(tensor, desc).map_err(|m| anyhow!(m))?;
        sim.set_input(name, &bytes)?;
    }
    let options = Options {
        max_cycles: args.max_cycles,
        trace: args.trace.is_some(),
    };
    let result = sim.run(&options)?;
    let outputs = read_outputs(&sim, &loadable)?;
    match &args.output_dir {
        Some(dir) => write_outputs(dir, &outputs, &style)?,
        None => {
            for (name, tensor) in &outputs {
                outln!("{}", summarize(name, tensor))?;
            }
        }
    }
    report(&result.stats, &loadable, &args)?;
    if let (Some(path), Some(trace)) = (&args.trace, &result.trace) {
        let text = serde_json::to_string(&trace.to_json())?;
        std::fs::write(path, text).with_context(|| path.display().to_string())?;
    }
    Ok(ExitCode::SUCCESS)
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
    style: &InputStyle,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| dir.display().to_string())?;
    for (i, (name, tensor)) in outputs.iter().enumerate() {
        match style {
            InputStyle::Data => {
                let path = dir.join(format!("output_{i}.pb"));
                tensor
                    .write_pb(name, &path)
                    .with_context(|| path.display().to_string())?;
            }
            InputStyle::Files => {
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
                let path = dir.join(format!("{safe}.npy"));
                write_npy(tensor, &path).with_context(|| path.display().to_string())?;
            }
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

fn report(stats: &Stats, loadable: &Loadable, args: &RunArgs) -> anyhow::Result<()> {
    if args.stats {
        print_stats(stats, loadable)?;
    }
    if let Some(path) = &args.stats_json {
        let mut json = stats.to_json();
        json["profile"] = serde_json::to_value(stats.by_node(loadable, &loadable.target()))?;
        std::fs::write(path, serde_json::to_string_pretty(&json)?)
            .with_context(|| path.display().to_string())?;
    }
    Ok(())
}
