//! ONNX backend node tests compiled for the NPU (`tiny`, fp32) and run on
//! the simulator, end to end.
//!
//! Every test that passes with the reference interpreter
//! (`expected-interpret.txt`) is compiled and simulated; its outcome —
//! `pass`, `refused: <why the NPU cannot run it>` or `fail: <reason>` — is
//! compared with `tests/conformance/expected-npu.txt`, in both directions,
//! and at least 90% must pass. Re-bless with
//! `TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_npu`.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tessera_compiler::driver::{compile_graph, BackendError};
use tessera_compiler::lower::LowerError;
use tessera_compiler::precision::Precision;
use tessera_compiler::runtime_io::{bytes_to_tensor, tensor_to_bytes};
use tessera_compiler::tensor::Tensor;
use tessera_isa::Target;
use tessera_sim::{Options, Simulator};
use tessera_tests::conformance::{
    check_expectations, compare_outputs, load_case, one_line, read_expectations, Outcome,
};
use tessera_tests::repo_root;

fn run_test(dir: &Path, target: &Target) -> Outcome {
    let case = match load_case(dir) {
        Ok(c) => c,
        Err(outcome) => return outcome,
    };
    let compiled = match compile_graph(&case.graph, target, Precision::Fp32) {
        Ok(c) => c,
        Err(BackendError::Lower(
            e @ (LowerError::Unsupported { .. } | LowerError::Many(_) | LowerError::DoesNotFit(_)),
        )) => return Outcome::Refused(one_line(&e.to_string())),
        Err(e) => return Outcome::Fail(one_line(&format!("compile: {e}"))),
    };
    let loadable = compiled.loadable;
    let mut sim = match Simulator::new(loadable.clone()) {
        Ok(s) => s,
        Err(e) => return Outcome::Fail(one_line(&format!("load: {e}"))),
    };
    for (&id, tensor) in case.graph.inputs().iter().zip(&case.inputs) {
        let name = &case.graph.node(id).name;
        let Some(desc) = loadable.inputs.iter().find(|d| &d.name == name) else {
            return Outcome::Fail(format!("no program input `{name}`"));
        };
        let set = tensor_to_bytes(tensor, desc)
            .map_err(|m| m.to_string())
            .and_then(|b| sim.set_input(name, &b).map_err(|e| e.to_string()));
        if let Err(m) = set {
            return Outcome::Fail(one_line(&m));
        }
    }
    if let Err(e) = sim.run(&Options {
        max_cycles: 1 << 32,
        ..Default::default()
    }) {
        return Outcome::Fail(one_line(&format!("simulate: {e}")));
    }
    let mut actual: Vec<(String, Tensor)> = Vec::new();
    for ((name, id), desc) in case.graph.outputs().iter().zip(&loadable.outputs) {
        let dtype = case.graph.node(*id).ty.dtype;
        let bytes = match sim.read_tensor(desc) {
            Ok(b) => b,
            Err(e) => return Outcome::Fail(one_line(&e.to_string())),
        };
        match bytes_to_tensor(&bytes, desc, dtype) {
            Ok(t) => actual.push((name.clone(), t)),
            Err(m) => return Outcome::Fail(one_line(&m)),
        }
    }
    let refs: Vec<(String, &Tensor)> = actual.iter().map(|(n, t)| (n.clone(), t)).collect();
    compare_outputs(&refs, &case.expected)
}

#[test]
fn conformance_node_tests_run_on_the_npu() {
    let root: PathBuf = repo_root().join("tests/conformance");
    let interpret = read_expectations(&root.join("expected-interpret.txt"));
    let names: Vec<&String> = interpret
        .iter()
        .filter(|(_, k)| k.as_str() == "pass")
        .map(|(n, _)| n)
        .collect();
    assert!(!names.is_empty(), "no interpreter-passing tests");
    let target = Target::tiny();
    let mut outcomes = Vec::with_capacity(names.len());
    for name in names {
        let dir = root.join("node").join(name);
        let outcome = catch_unwind(AssertUnwindSafe(|| run_test(&dir, &target)))
            .unwrap_or_else(|_| Outcome::Fail("panic (a bug)".into()));
        outcomes.push((name.clone(), outcome));
    }
    let passed = outcomes.iter().filter(|(_, o)| *o == Outcome::Pass).count();
    let refused = outcomes
        .iter()
        .filter(|(_, o)| matches!(o, Outcome::Refused(_)))
        .count();
    let rate = 100.0 * passed as f64 / outcomes.len() as f64;
    let summary = format!(
        "{passed} of {} interpreter-passing tests pass on the NPU (tiny, fp32): {rate:.1}%; {refused} refused, {} fail.",
        outcomes.len(),
        outcomes.len() - passed - refused
    );
    println!("conformance (npu): {summary}");
    let header = vec![
        "Outcome of every interpreter-passing conformance test compiled for `tiny` (fp32) and simulated.".to_string(),
        "See tests/conformance/RUNNER.md.".to_string(),
        summary,
    ];
    let problems = check_expectations(
        &root.join("expected-npu.txt"),
        &header,
        &outcomes,
        "cargo test -p tessera-tests --test conformance_npu",
    );
    assert!(
        problems.is_empty(),
        "{} NPU conformance outcome(s) changed:\n  {}\nIf intended, re-bless with TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_npu",
        problems.len(),
        problems.join("\n  ")
    );
    assert!(
        rate >= 90.0,
        "only {rate:.1}% of interpreter-passing tests pass on the NPU (need 90%)"
    );
}
