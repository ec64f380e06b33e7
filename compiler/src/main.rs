//! The `tessera` command-line tool: compile, run, check, assemble and
//! disassemble programs for the Tessera NPU.
//!
//! Exit codes: 0 success; 1 a user-facing error (bad input, unsupported op,
//! mismatch), printed as one line naming the file, node or offset; 2 usage.

use std::process::ExitCode;

use clap::Parser;

mod cli;

fn main() -> ExitCode {
    let args = cli::Cli::parse();
    match cli::run(args) {
        Ok(code) => code,
        Err(err) => {
            // One line: the chain of contexts, outermost first.
            let message: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            eprintln!("error: {}", message.join(": "));
            ExitCode::from(1)
        }
    }
}
