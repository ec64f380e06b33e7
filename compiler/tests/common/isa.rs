//! Helpers of the ISA command tests (`cli_asm`, `cli_run`, `cli_host`):
//! running the binary, scratch files, the one-line error checks and
//! assembled example programs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use super::repo;

/// Runs the `tessera` binary in the test's working directory (the ISA
/// commands get absolute paths; unlike [`super::tessera`], not run in the
/// repository root).
pub fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

/// A path for `name` in this test process's scratch directory.
pub fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-cli-isa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// Asserts exit code 1 and a single `error: …` line containing `needle`.
pub fn assert_user_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{stderr}"
    );
}

/// The example programs `isa/examples/*.s`, sorted.
pub fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("isa/examples"))
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "s"))
        .collect();
    v.sort();
    v
}

/// Assembles `src` into `prog` with `tessera asm`; fails the test on error.
pub fn assemble(src: &Path, prog: &Path) {
    let out = tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        prog.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Assembles `isa/examples/{example}.s` into the scratch directory as `{name}`.
pub fn assemble_example(example: &str, name: &str) -> PathBuf {
    let prog = scratch(name);
    assemble(&repo().join(format!("isa/examples/{example}.s")), &prog);
    prog
}

/// Asserts exit code 1 and exactly `expected` on stderr.
pub fn assert_error_text(out: &Output, expected: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr, format!("error: {expected}\n"));
}
