//! The ONNX node tests through the binary, as a user runs them: `tessera
//! check TEST/model.onnx --data TEST/test_data_set_0
//! --const-inputs-from-data`, on the interpreter and compiled for `tiny`
//! in fp32. Every test the library runners pass (tests/conformance/
//! expected-*.txt) passes through the CLI too, at least as many pass as
//! onnxruntime reproduces (988 of the 1009 with supported dtypes,
//! tests/conformance/README.md), and every failure is a one-line error.

mod common;

use std::collections::BTreeSet;

use common::{repo, stderr, tessera};

/// onnxruntime 1.32 reproduces the expected outputs of this many of the
/// tests with supported dtypes.
const ONNXRUNTIME_PASSES: usize = 988;

fn supported_tests() -> Vec<String> {
    let manifest =
        std::fs::read_to_string(repo().join("tests/conformance/manifest.txt")).expect("manifest");
    manifest
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter(|l| !l.contains("dtype-unsupported"))
        .filter_map(|l| l.split_whitespace().next().map(str::to_string))
        .collect()
}

fn listed_passes(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join("tests/conformance").join(file)).expect(file);
    text.lines()
        .filter_map(|l| l.strip_suffix(" pass"))
        .map(str::to_string)
        .collect()
}

/// Runs every supported test through `check` with `extra`; the names that
/// pass.
fn cli_passes(extra: &[&str]) -> BTreeSet<String> {
    let mut passes = BTreeSet::new();
    for test in supported_tests() {
        let dir = format!("tests/conformance/node/{test}");
        let model = format!("{dir}/model.onnx");
        let data = format!("{dir}/test_data_set_0");
        let mut args = vec!["check", &model, "--data", &data, "--const-inputs-from-data"];
        args.extend(extra);
        let out = tessera(&args);
        match out.status.code() {
            Some(0) => {
                passes.insert(test);
            }
            Some(1) => {
                let err = stderr(&out);
                assert!(
                    err.starts_with("error: ") && err.lines().count() == 1,
                    "{test}: {err}"
                );
            }
            code => panic!("{test}: exit {code:?}: {}", stderr(&out)),
        }
    }
    passes
}

fn assert_covers(cli: &BTreeSet<String>, runner: &BTreeSet<String>, what: &str) {
    let missing: Vec<&String> = runner.difference(cli).collect();
    assert!(
        missing.is_empty(),
        "{what}: the runner passes, the CLI does not: {missing:?}"
    );
    assert!(
        cli.len() >= ONNXRUNTIME_PASSES,
        "{what}: {} of {} pass through the CLI, onnxruntime passes {ONNXRUNTIME_PASSES}",
        cli.len(),
        supported_tests().len()
    );
    println!(
        "{what}: {} of {} pass through the CLI",
        cli.len(),
        supported_tests().len()
    );
}

#[test]
fn node_tests_through_check_on_the_interpreter() {
    let cli = cli_passes(&["--interpret"]);
    assert_covers(
        &cli,
        &listed_passes("expected-interpret.txt"),
        "interpreter",
    );
}

#[test]
fn node_tests_through_check_on_the_npu() {
    let cli = cli_passes(&["--target", "tiny", "--precision", "fp32"]);
    assert_covers(&cli, &listed_passes("expected-npu.txt"), "NPU tiny fp32");
}
