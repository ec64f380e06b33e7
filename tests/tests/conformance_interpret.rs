//! ONNX backend node tests (`tests/conformance/`) through the frontend, the
//! Graph IR passes and the reference interpreter.
//!
//! Every test listed in `tests/conformance/manifest.txt` is run and its
//! outcome (`pass`, `fail: <reason>`, `refused: <reason>`) compared with
//! `tests/conformance/expected-interpret.txt`. The test fails when an
//! outcome differs from the expected one in either direction (a pass that
//! regressed, or a listed failure that now passes), and when a test marked
//! `# dtype-unsupported` is not refused. At least [`PASS_FLOOR_PERCENT`] of the
//! tests with supported dtypes must pass (the acceptance floor; the
//! dtype-unsupported ones must be refused instead). Re-bless the expectations with
//! `TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_interpret`.
//! See `tests/conformance/RUNNER.md`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tessera_compiler::interp::{evaluate, Keep};
use tessera_compiler::tensor::Tensor;
use tessera_tests::conformance::{
    check_expectations, compare_outputs, load_case, one_line, read_manifest, Outcome,
};
use tessera_tests::repo_root;

/// The share of manifest tests with supported dtypes that must pass, in percent.
const PASS_FLOOR_PERCENT: f64 = 95.0;

/// Runs one test; also returns whether inputs had to be specialized.
fn run_test(dir: &Path) -> (Outcome, bool) {
    let case = match load_case(dir) {
        Ok(c) => c,
        Err(outcome) => return (outcome, false),
    };
    let specialized = !case.specialized.is_empty();
    let evaluation = match evaluate(&case.graph, &case.inputs, Keep::Outputs) {
        Ok(e) => e,
        Err(e) => {
            return (
                Outcome::Fail(one_line(&format!("interpret: {e}"))),
                specialized,
            )
        }
    };
    let actual: Vec<(String, &Tensor)> = evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_ref()))
        .collect();
    (compare_outputs(&actual, &case.expected), specialized)
}

#[test]
fn conformance_node_tests_match_expectations() {
    let root: PathBuf = repo_root().join("tests/conformance");
    let manifest = read_manifest(&root);
    assert!(!manifest.is_empty(), "no tests in the manifest");
    let mut outcomes = Vec::with_capacity(manifest.len());
    let mut specializations = 0;
    let mut problems = Vec::new();
    for entry in &manifest {
        let dir = root.join("node").join(&entry.name);
        let (outcome, specialized) = catch_unwind(AssertUnwindSafe(|| run_test(&dir)))
            .unwrap_or_else(|_| (Outcome::Fail("panic (a bug)".into()), false));
        specializations += usize::from(specialized);
        if entry.dtype_unsupported && !matches!(outcome, Outcome::Refused(_)) {
            problems.push(format!(
                "{}: dtype-unsupported but not refused: {}",
                entry.name,
                outcome.line(&entry.name)
            ));
        }
        outcomes.push((entry.name.clone(), outcome));
    }
    let supported: Vec<_> = outcomes
        .iter()
        .zip(&manifest)
        .filter(|(_, e)| !e.dtype_unsupported)
        .collect();
    let passed = supported
        .iter()
        .filter(|((_, o), _)| *o == Outcome::Pass)
        .count();
    let rate = 100.0 * passed as f64 / supported.len().max(1) as f64;
    let summary = format!(
        "{passed} of {} tests with supported dtypes pass ({rate:.1}%).",
        supported.len()
    );
    println!("conformance (interpreter): {summary}");
    println!(
        "{specializations} tests had shape-determining inputs specialized to their test values"
    );
    let header = vec![
        "Expected outcome of every conformance node test under the reference interpreter."
            .to_string(),
        "See tests/conformance/RUNNER.md.".to_string(),
        summary,
    ];
    problems.extend(check_expectations(
        &root.join("expected-interpret.txt"),
        &header,
        &outcomes,
        "cargo test -p tessera-tests --test conformance_interpret",
    ));
    assert!(
        problems.is_empty(),
        "{} conformance outcome(s) changed:\n  {}\nIf the change is intended, re-bless with \
         TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_interpret",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(
        rate >= PASS_FLOOR_PERCENT,
        "only {rate:.1}% of the tests with supported dtypes pass with the interpreter \
         ({passed} of {}; need {PASS_FLOOR_PERCENT}%)",
        supported.len()
    );
}
