//! Command-line interface: the subcommands and their dispatch. Each
//! subcommand lives in its own module.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod asm;
mod check;
mod compile;
pub mod output;
mod run;

/// Tessera: an ahead-of-time compiler and simulator for the Tessera NPU.
#[derive(Parser, Debug)]
#[command(name = "tessera", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Compile an ONNX model (for now: import, fold, and dump the IR).
    Compile(compile::CompileArgs),
    /// Run a model on test data and compare its outputs with the expected ones.
    Check(check::CheckArgs),
    /// Simulate a `.tnpu` loadable on inputs; print outputs, statistics, trace.
    Run(run::RunArgs),
    /// Assemble a `.s` file into a `.tnpu` loadable.
    Asm(asm::AsmArgs),
    /// Print a `.tnpu` loadable as assembly that re-assembles identically.
    Disasm(asm::DisasmArgs),
    /// List the target presets and their parameters.
    Targets(asm::TargetsArgs),
}

/// Runs one subcommand.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Compile(args) => compile::compile(args),
        Command::Check(args) => check::check(args),
        Command::Run(args) => run::run(args),
        Command::Asm(args) => asm::asm(args),
        Command::Disasm(args) => asm::disasm(args),
        Command::Targets(args) => asm::targets(args),
    }
}
