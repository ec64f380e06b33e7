//! Shared machinery of the ONNX node conformance runners: reading the
//! manifest and a test case, comparing outputs with the runners' tolerance,
//! and checking outcomes against an expectations file (re-blessed with
//! `TESSERA_BLESS=1`). See `tests/conformance/RUNNER.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::frontend::{import_file, import_specializing, ImportError, ImportOptions};
use tessera_compiler::graph::Graph;
use tessera_compiler::interp::bind_inputs;
use tessera_compiler::passes::run_graph_passes;
use tessera_compiler::tensor::{DType, Tensor, TensorError};

/// The outcome of one node test.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every output within tolerance.
    Pass,
    /// Wrong values, an error, or a panic.
    Fail(String),
    /// Refused with a clear "unsupported" error.
    Refused(String),
}

impl Outcome {
    /// `pass`, `fail` or `refused`.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Pass => "pass",
            Outcome::Fail(_) => "fail",
            Outcome::Refused(_) => "refused",
        }
    }

    /// The expectations-file line.
    pub fn line(&self, name: &str) -> String {
        match self {
            Outcome::Pass => format!("{name} pass"),
            Outcome::Fail(reason) => format!("{name} fail: {reason}"),
            Outcome::Refused(reason) => format!("{name} refused: {reason}"),
        }
    }
}

/// ONNX's backend tests use rtol 1e-3 (and atol 1e-7); we allow atol 1e-5
/// for values near zero, and rtol 1e-2 for bf16 results.
pub fn tolerance_for(dtype: DType) -> Tolerance {
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

/// A message on one line, at most 200 characters.
pub fn one_line(text: &str) -> String {
    let line = text.replace('\n', " ");
    if line.chars().count() > 200 {
        format!("{}...", line.chars().take(200).collect::<String>())
    } else {
        line
    }
}

/// A test ready to run: the graph after the Graph IR passes, its bound
/// inputs, the expected outputs, and the inputs specialized to constants.
pub struct Case {
    /// The graph.
    pub graph: Graph,
    /// Inputs in graph-input order.
    pub inputs: Vec<Arc<Tensor>>,
    /// Expected outputs with their names.
    pub expected: Vec<(String, Tensor)>,
    /// Inputs that decide a shape and were fixed to their test values.
    pub specialized: Vec<String>,
}

/// Imports a test directory (specializing shape-deciding inputs), runs the
/// Graph IR passes and binds the inputs.
pub fn load_case(dir: &Path) -> Result<Case, Outcome> {
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
    let (inputs, expected) = match (read("input"), read("output")) {
        (Ok(i), Ok(o)) => (i, o),
        (Err(e), _) | (_, Err(e)) => {
            return Err(
                match import_file(&dir.join("model.onnx"), &ImportOptions::default()) {
                    Err(
                        error @ (ImportError::UnsupportedDtype { .. }
                        | ImportError::Tensor(TensorError::UnsupportedDtype { .. })),
                    ) => Outcome::Refused(one_line(&error.to_string())),
                    _ => e,
                },
            )
        }
    };
    let path = dir.join("model.onnx");
    let specialized = import_specializing(&ImportOptions::default(), &inputs, |options| {
        import_file(&path, options)
    });
    let (mut graph, specialized) = specialized.map_err(|error| match error {
        ImportError::UnsupportedDtype { .. }
        | ImportError::Tensor(TensorError::UnsupportedDtype { .. }) => {
            Outcome::Refused(one_line(&error.to_string()))
        }
        _ => Outcome::Fail(one_line(&format!("import: {error}"))),
    })?;
    run_graph_passes(&mut graph, |_, _, _| {})
        .map_err(|e| Outcome::Fail(one_line(&e.to_string())))?;
    let bound =
        bind_inputs(&graph, &inputs).map_err(|e| Outcome::Fail(one_line(&e.to_string())))?;
    Ok(Case {
        graph,
        inputs: bound,
        expected,
        specialized,
    })
}

/// Compares actual outputs with the expected ones.
pub fn compare_outputs(actual: &[(String, &Tensor)], expected: &[(String, Tensor)]) -> Outcome {
    for (i, (_, e)) in expected.iter().enumerate() {
        let tolerance = tolerance_for(e.dtype());
        let checks = match check_outputs(actual, expected, tolerance) {
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

/// One manifest line.
pub struct ManifestEntry {
    /// Test name.
    pub name: String,
    /// Marked `# dtype-unsupported`.
    pub dtype_unsupported: bool,
}

/// Reads `tests/conformance/manifest.txt`.
pub fn read_manifest(root: &Path) -> Vec<ManifestEntry> {
    let text = std::fs::read_to_string(root.join("manifest.txt")).unwrap_or_default();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .filter_map(|l| {
            Some(ManifestEntry {
                name: l.split_whitespace().next()?.to_string(),
                dtype_unsupported: l.contains("# dtype-unsupported"),
            })
        })
        .collect()
}

/// Reads an expectations file: test name → outcome kind.
pub fn read_expectations(path: &Path) -> BTreeMap<String, String> {
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

/// Writes the expectations file (with `TESSERA_BLESS`) or lists every
/// outcome that differs from it.
pub fn check_expectations(
    path: &Path,
    header: &[String],
    outcomes: &[(String, Outcome)],
    bless_command: &str,
) -> Vec<String> {
    let mut problems = Vec::new();
    if std::env::var_os("TESSERA_BLESS").is_some() {
        let mut text = String::new();
        for h in header {
            let _ = writeln!(text, "# {h}");
        }
        let _ = writeln!(text, "# Written by `TESSERA_BLESS=1 {bless_command}`; the test fails when an outcome changes.");
        for (name, outcome) in outcomes {
            let _ = writeln!(text, "{}", outcome.line(name));
        }
        if let Err(e) = std::fs::write(path, text) {
            problems.push(format!("{}: {e}", path.display()));
        }
        return problems;
    }
    let expected = read_expectations(path);
    for (name, outcome) in outcomes {
        match expected.get(name) {
            None => problems.push(format!(
                "{name}: not in {} (now: {})",
                path.display(),
                outcome.kind()
            )),
            Some(kind) if kind != outcome.kind() => problems.push(format!(
                "{name}: expected {kind}, now {}",
                outcome.line(name)
            )),
            Some(_) => {}
        }
    }
    for name in expected.keys() {
        if !outcomes.iter().any(|(n, _)| n == name) {
            problems.push(format!("{name}: listed in {} but not run", path.display()));
        }
    }
    problems
}
