//! `tessera asm`, `tessera disasm` and `tessera targets`.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::Args;
use tessera_isa::{assemble, disassemble, DisasmOptions, Loadable, Target};

use super::output::{out, outln};

/// Arguments of `tessera asm`.
#[derive(Args, Debug)]
pub struct AsmArgs {
    /// Assembly source file.
    file: PathBuf,
    /// Output loadable.
    #[arg(short, long, value_name = "FILE")]
    output: PathBuf,
    /// Target preset or file for a source without `.target` (default:
    /// tiny); a source with `.target` must agree with it.
    #[arg(long)]
    target: Option<String>,
}

/// Arguments of `tessera disasm`.
#[derive(Args, Debug)]
pub struct DisasmArgs {
    /// Loadable to print.
    file: PathBuf,
    /// Omit segment contents (the output then no longer re-assembles to the
    /// same loadable).
    #[arg(long)]
    no_data: bool,
    /// Omit the `; pc` comments.
    #[arg(long)]
    no_pc: bool,
}

/// Arguments of `tessera targets`.
#[derive(Args, Debug)]
pub struct TargetsArgs {
    /// Print only this preset (or target file), as TOML: a starting point
    /// for a target file of your own.
    name: Option<String>,
}

/// Reads a target given as a preset name or a file path.
pub fn load_target(spec: &str) -> anyhow::Result<Target> {
    Ok(Target::from_name_or_file(spec)?)
}

/// Reads and validates a loadable file.
pub fn read_loadable(path: &std::path::Path) -> anyhow::Result<Loadable> {
    let bytes = std::fs::read(path).with_context(|| path.display().to_string())?;
    Loadable::from_bytes(&bytes).with_context(|| path.display().to_string())
}

pub fn asm(args: AsmArgs) -> anyhow::Result<ExitCode> {
    let source =
        std::fs::read_to_string(&args.file).with_context(|| args.file.display().to_string())?;
    let target = args.target.as_deref().map(load_target).transpose()?;
    let loadable = assemble(&source, &args.file.display().to_string(), target.as_ref())?;
    std::fs::write(&args.output, loadable.to_bytes())
        .with_context(|| args.output.display().to_string())?;
    Ok(ExitCode::SUCCESS)
}

pub fn disasm(args: DisasmArgs) -> anyhow::Result<ExitCode> {
    let loadable = read_loadable(&args.file)?;
    let options = DisasmOptions {
        data: !args.no_data,
        pc_comments: !args.no_pc,
    };
    let text = disassemble(&loadable, options).with_context(|| args.file.display().to_string())?;
    out!("{text}")?;
    Ok(ExitCode::SUCCESS)
}

pub fn targets(args: TargetsArgs) -> anyhow::Result<ExitCode> {
    match args.name {
        Some(name) => out!("{}", load_target(&name)?.describe())?,
        None => {
            for name in Target::PRESETS {
                let t = Target::preset(name)?;
                outln!("# {name}: {}x{} MXU, {} VPU lanes, {} KiB SPM, {} KiB ACC, {} B/cycle DRAM at {} MHz",
                    t.mxu_k, t.mxu_n, t.vpu_lanes, t.spm_bytes / 1024, t.acc_bytes / 1024,
                    t.dram_bytes_per_cycle, t.clock_mhz)?;
                outln!("[{name}]")?;
                out!("{}", t.describe())?;
                outln!()?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
