//! Writing to stdout. `println!` panics when the reader has gone away
//! (`tessera disasm x.tnpu | head -1`); here a closed pipe is a normal end
//! (the reader has what it wanted) and any other write error is an error
//! like the rest.

use std::io::Write as _;

/// Stdout was closed by its reader; `main` exits with success.
#[derive(Debug, thiserror::Error)]
#[error("stdout was closed")]
pub struct StdoutClosed;

/// Writes formatted text to stdout (use the `out!` and `outln!` macros).
pub fn write_stdout(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    std::io::stdout()
        .lock()
        .write_fmt(args)
        .map_err(stdout_error)
}

/// Flushes stdout, for the end of a successful run.
pub fn flush_stdout() -> anyhow::Result<()> {
    std::io::stdout().flush().map_err(stdout_error)
}

fn stdout_error(err: std::io::Error) -> anyhow::Error {
    if err.kind() == std::io::ErrorKind::BrokenPipe {
        StdoutClosed.into()
    } else {
        anyhow::Error::new(err).context("writing to stdout")
    }
}

/// `print!` that returns an error instead of panicking; see [`write_stdout`].
macro_rules! out {
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!($($arg)*))
    };
}

/// `println!` that returns an error instead of panicking; see [`write_stdout`].
macro_rules! outln {
    () => {
        $crate::cli::output::write_stdout(format_args!("\n"))
    };
    ($($arg:tt)*) => {
        $crate::cli::output::write_stdout(format_args!("{}\n", format_args!($($arg)*)))
    };
}

pub(crate) use {out, outln};
