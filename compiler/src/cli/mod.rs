//! Command-line interface: the subcommands and their dispatch. Each
//! subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod asm;
mod check;
mod compare_dumps;
mod compile;
mod generate;
mod layers;
mod ops;
pub mod output;
mod run;
mod tensors;

/// Tessera: compile ONNX models into `.tnpu` loadables for the Tessera NPU,
/// simulate and check them, assemble and disassemble NPU programs.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile an ONNX model into a `.tnpu` loadable.
    ///
    /// `-o FILE` writes the loadable; `--emit` prints an IR; `--dump-dir DIR`
    /// writes the Graph IR after every stage, the Kernel IR (`kernels.txt`)
    /// and the assembly (`program.s`). Without `-o` the model is compiled
    /// and summarized but not written; `--emit graph|egraph` or `--report`
    /// alone stops after the Graph IR stages.
    Compile(compile::CompileArgs),
    /// Check a model against expected outputs on the simulator or the
    /// reference interpreter.
    ///
    /// Reads `input_N.pb` and `output_N.pb` from `--data DIR`; compiles the
    /// model for the target and precision and simulates it (or, with
    /// `--interpret`, runs the reference interpreter on the Graph IR); then
    /// compares every output and exits with 1 if one is out of tolerance.
    Check(check::CheckArgs),
    /// Simulate a `.tnpu` loadable on inputs.
    ///
    /// Prints a one-line summary of each output (or writes them with
    /// `--output-dir`), and on request statistics, a per-kernel profile and
    /// a Chrome trace.
    Run(run::RunArgs),
    /// Decode autoregressively on the simulator: prefill, then one step per
    /// token with the KV cache carried over; prints time to first token,
    /// per-token latency and tokens/s at the target clock.
    ///
    /// The model is a decoder exported with its cache (`use_cache=True`):
    /// `input_ids [1, seq]`, `past_*` inputs of a symbolic length, `present_*`
    /// outputs and `logits`. Each step is compiled for its lengths.
    Generate(generate::GenerateArgs),
    /// Compare two tensor dumps by name, with the metrics of
    /// `check --compare-all`.
    ///
    /// Each is a directory written by `--dump-tensors` (an `index.json` and
    /// `.npy` files) or any directory of `.npy` files named by value; the
    /// second is the reference. Exits with 1 if a matched tensor is out of
    /// tolerance.
    Compare(compare_dumps::CompareArgs),
    /// Assemble a `.s` file into a `.tnpu` loadable.
    Asm(asm::AsmArgs),
    /// Print a `.tnpu` loadable as assembly that re-assembles identically.
    Disasm(asm::DisasmArgs),
    /// List the target presets and their parameters, or print one as TOML.
    Targets(asm::TargetsArgs),
    /// List every supported ONNX op: its attributes, element types and
    /// where it runs on the NPU (`--markdown`: `docs/ops.md`).
    Ops(ops::OpsArgs),
}

/// Parses the command line as [`Parser::parse`] does (usage errors exit
/// with 2), then records in the arguments what only the matches know.
pub fn parse() -> Cli {
    use clap::{CommandFactory as _, FromArgMatches as _};
    let matches = Cli::command().get_matches();
    let mut cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    if let (Command::Check(args), Some(("check", sub))) = (&mut cli.command, matches.subcommand()) {
        args.note_matches(sub);
    }
    cli
}

/// Runs one subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Compile(args) => compile::compile(args),
        Command::Check(args) => check::check(args),
        Command::Run(args) => run::run(args),
        Command::Generate(args) => generate::generate(args),
        Command::Compare(args) => compare_dumps::compare_dumps(args),
        Command::Asm(args) => asm::asm(args),
        Command::Disasm(args) => asm::disasm(args),
        Command::Targets(args) => asm::targets(args),
        Command::Ops(args) => ops::ops(args),
    }
}
