//! The `tessera` command-line tool: compile, run, check, assemble and
//! disassemble programs for the Tessera NPU.
//!
//! Exit codes: 0 success (also when the reader of stdout stops early, as
//! `head` does); 1 a user-facing error (bad input, unsupported op,
//! mismatch), printed as one line naming the file, node or offset; 2 usage.

use std::io::Write as _;
use std::process::ExitCode;

mod cli;

fn main() -> ExitCode {
    let args = cli::parse();
    let result = cli::run(args).and_then(|code| cli::output::flush_stdout().map(|()| code));
    match result {
        Ok(code) => code,
        // The reader of our output has gone (`tessera ... | head`): not a failure.
        Err(err) if err.is::<cli::output::StdoutClosed>() => ExitCode::SUCCESS,
        Err(err) => {
            // One line: the chain of contexts, outermost first. An error that
            // shows its source in its own message must not also return it
            // from `source()`, or the text would appear twice.
            let message: Vec<String> = err.chain().map(|e| e.to_string()).collect();
            // Nothing useful is left to do if stderr is gone too.
            let _ = writeln!(std::io::stderr(), "error: {}", message.join(": "));
            ExitCode::from(1)
        }
    }
}
