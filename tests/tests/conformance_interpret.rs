//! ONNX backend node tests (`tests/conformance/`) through the frontend, the
//! Graph IR passes and the reference interpreter.
//!
//! Every test listed in `tests/conformance/manifest.txt` is run and its
//! outcome (`pass`, `fail: <reason>`, `refused: <reason>`) compared with
//! `tests/conformance/expected-interpret.txt`. The test fails when an
//! outcome differs from the expected one in either direction (a pass that
//! regressed, or a listed failure that now passes), and when a test marked
//! `# dtype-unsupported` is not refused. Re-bless the expectations with
//! `TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_interpret`.
//! See `tests/conformance/RUNNER.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};

use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::frontend::{import_file, ImportError, ImportOptions};
use tessera_compiler::interp::{bind_inputs, evaluate, Keep};
use tessera_compiler::passes::run_graph_passes;
use tessera_compiler::tensor::{DType, Tensor, TensorError};
use tessera_tests::repo_root;

/// The outcome of one node test.
#[derive(Clone, Debug, PartialEq)]
enum Outcome {
    Pass,
    Fail(String),
    Refused(String),
}

impl Outcome {
    fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Refused(_) => "refused",
        }
    }

    fn line(&self, name: &str) -> String {
        match self {
            Outcome::Pass => format!("{name} pass"),
            Outcome::Fail(reason) => format!("{name} fail: {reason}"),
            Outcome::Refused(reason) => format!("{name} refused: {reason}"),
        }
    }
}

/// ONNX's backend tests use rtol 1e-3 (and atol 1e-7); we allow atol 1e-5
/// for values near zero, and rtol 1e-2 for bf16 results (8-bit mantissa:
/// one rounding step of a bf16 value is ~4e-3 relative).
fn tolerance_for(dtype: DType) -> Tolerance {
    match dtype {
        DType::BF16 => Tolerance::Elementwise {
            rtol: 1e-2,
            atol: 1e-5,
        },
        _ => Tolerance::Elementwise {
            rtol: 1e-3,
            atol: 1e-5,
        },
    }
}

fn one_line(text: &str) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() > 200 {
        format!("{}...", line.chars().take(200).collect::<String>())
    } else {
        line
    }
}

/// Runs one test; also returns the inputs that had to be specialized.
fn run_test(dir: &Path) -> (Outcome, Vec<String>) {
    let mut specialized = Vec::new();
    let outcome = run_test_inner(dir, &mut specialized);
    (outcome, specialized)
}

fn run_test_inner(dir: &Path, specialized: &mut Vec<String>) -> Outcome {
    let data = dir.join("test_data_set_0");
    let read = |prefix| {
        read_numbered_pbs(&data, prefix).map_err(|m| {
            if m.contains("unsupported dtype") {
                Outcome::Refused(one_line(&m))
            } else {
                Outcome::Fail(one_line(&m))
            }
        })
    };
    // Read errors are reported after the import, which refuses non-tensor
    // and unsupported types with a clearer message.
    let (inputs, expected) = match (read("input"), read("output")) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            return match import_file(&dir.join("model.onnx"), &ImportOptions::default()) {
                Err(
                    error @ (ImportError::UnsupportedDtype { .. }
                    | ImportError::Tensor(TensorError::UnsupportedDtype { .. })),
                ) => Outcome::Refused(one_line(&error.to_string())),
                _ => e,
            }
        }
    };
    // Inputs that decide a shape are specialized to their test values
    // (Tessera compiles for static shapes); the importer says which.
    let mut options = ImportOptions::default();
    let mut graph = loop {
        let error = match import_file(&dir.join("model.onnx"), &options) {
            Ok(g) => break g,
            Err(e) => e,
        };
        if let ImportError::NotConstant {
            input: Some(name), ..
        } = &error
        {
            let known = inputs.iter().find(|(n, _)| n == name);
            if let (Some((_, value)), false) = (known, options.input_values.contains_key(name)) {
                options.input_values.insert(name.clone(), value.clone());
                specialized.push(name.clone());
                continue;
            }
        }
        return match error {
            ImportError::UnsupportedDtype { .. }
            | ImportError::Tensor(TensorError::UnsupportedDtype { .. }) => {
                Outcome::Refused(one_line(&error.to_string()))
            }
            _ => Outcome::Fail(one_line(&format!("import: {error}"))),
        };
    };
    if let Err(e) = run_graph_passes(&mut graph, |_, _, _| {}) {
        return Outcome::Fail(one_line(&e.to_string()));
    }
    let bound = match bind_inputs(&graph, &inputs) {
        Ok(b) => b,
        Err(e) => return Outcome::Fail(one_line(&e.to_string())),
    };
    let evaluation = match evaluate(&graph, &bound, Keep::Outputs) {
        Ok(e) => e,
        Err(e) => return Outcome::Fail(one_line(&format!("interpret: {e}"))),
    };
    let actual: Vec<(String, &Tensor)> = evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_ref()))
        .collect();
    for (i, (_, e)) in expected.iter().enumerate() {
        let tolerance = tolerance_for(e.dtype());
        let checks = match check_outputs(&actual, &expected, tolerance) {
            Ok(c) => c,
            Err(m) => return Outcome::Fail(one_line(&m)),
        };
        let c = &checks[i];
        if !c.comparison.pass {
            return Outcome::Fail(one_line(&format!(
                "output `{}`: {} of {} elements outside {tolerance} (max_abs {:.3e})",
                c.name,
                c.comparison.mismatches,
                e.numel(),
                c.comparison.metrics.max_abs
            )));
        }
    }
    Outcome::Pass
}

struct ManifestEntry {
    name: String,
    dtype_unsupported: bool,
}

fn read_manifest(root: &Path) -> Vec<ManifestEntry> {
    let text =
        std::fs::read_to_string(root.join("manifest.txt")).expect("tests/conformance/manifest.txt");
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| ManifestEntry {
            name: l
                .split_whitespace()
                .next()
                .expect("non-empty line")
                .to_string(),
            dtype_unsupported: l.contains("# dtype-unsupported"),
        })
        .collect()
}

fn read_expectations(path: &Path) -> BTreeMap<String, String> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            let (name, rest) = l.split_once(' ')?;
            let kind = rest.split(':').next()?.trim().to_string();
            Some((name.to_string(), kind))
        })
        .collect()
}

#[test]
fn conformance_node_tests_match_expectations() {
    let root: PathBuf = repo_root().join("tests/conformance");
    let manifest = read_manifest(&root);
    assert!(!manifest.is_empty(), "no tests in the manifest");
    let expectations_path = root.join("expected-interpret.txt");
    let expected = read_expectations(&expectations_path);

    let mut outcomes = Vec::with_capacity(manifest.len());
    let mut specializations = 0;
    for entry in &manifest {
        let dir = root.join("node").join(&entry.name);
        let (outcome, specialized) = catch_unwind(AssertUnwindSafe(|| run_test(&dir)))
            .unwrap_or_else(|_| (Outcome::Fail("panic (a bug)".into()), Vec::new()));
        if !specialized.is_empty() {
            specializations += 1;
        }
        outcomes.push((entry, outcome));
    }

    let supported: Vec<_> = outcomes
        .iter()
        .filter(|(e, _)| !e.dtype_unsupported)
        .collect();
    let passed = supported
        .iter()
        .filter(|(_, o)| *o == Outcome::Pass)
        .count();
    let rate = 100.0 * passed as f64 / supported.len().max(1) as f64;
    println!(
        "conformance (interpreter): {passed} of {} tests with supported dtypes pass ({rate:.1}%)",
        supported.len()
    );
    println!(
        "{specializations} tests had shape-determining inputs specialized to their test values"
    );

    let mut problems = Vec::new();
    for (entry, outcome) in &outcomes {
        if entry.dtype_unsupported && !matches!(outcome, Outcome::Refused(_)) {
            problems.push(format!(
                "{}: dtype-unsupported but not refused: {}",
                entry.name,
                outcome.line(&entry.name)
            ));
        }
    }

    if std::env::var_os("TESSERA_BLESS").is_some() {
        let mut text = String::new();
        text.push_str(
            "# Expected outcome of every conformance node test under the reference interpreter.\n",
        );
        text.push_str("# Written by `TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_interpret`;\n");
        text.push_str(
            "# the test fails when an outcome changes. See tests/conformance/RUNNER.md.\n",
        );
        let _ = writeln!(
            text,
            "# {passed} of {} tests with supported dtypes pass ({rate:.1}%).",
            supported.len()
        );
        for (entry, outcome) in &outcomes {
            let _ = writeln!(text, "{}", outcome.line(&entry.name));
        }
        std::fs::write(&expectations_path, text).expect("write expected-interpret.txt");
    } else {
        for (entry, outcome) in &outcomes {
            match expected.get(&entry.name) {
                None => problems.push(format!(
                    "{}: not in expected-interpret.txt (now: {})",
                    entry.name,
                    outcome.kind()
                )),
                Some(kind) if kind != outcome.kind() => problems.push(format!(
                    "{}: expected {kind}, now {}",
                    entry.name,
                    outcome.line(&entry.name)
                )),
                Some(_) => {}
            }
        }
        for name in expected.keys() {
            if !manifest.iter().any(|e| &e.name == name) {
                problems.push(format!(
                    "{name}: listed in expected-interpret.txt but not in the manifest"
                ));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} conformance outcome(s) changed:\n  {}\nIf the change is intended, re-bless with \
         TESSERA_BLESS=1 cargo test -p tessera-tests --test conformance_interpret",
        problems.len(),
        problems.join("\n  ")
    );
}
