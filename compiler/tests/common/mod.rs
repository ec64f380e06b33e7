//! Shared helpers of the compiler's integration tests: where the models
//! are, their symbolic dims, and running one end to end; [`isa`] has the
//! helpers of the ISA command tests.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tessera_compiler::compare::{check_outputs, read_numbered_pbs, OutputCheck, Tolerance};
use tessera_compiler::egraph::{optimize, EgraphOptions, EgraphReport};
use tessera_compiler::frontend::{import_file, ImportOptions};
use tessera_compiler::graph::Graph;
use tessera_compiler::interp::{bind_inputs, evaluate, Keep};
use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
use tessera_compiler::tensor::Tensor;

pub mod isa;

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("workspace root")
        .to_path_buf()
}

/// Runs the `tessera` binary in the repository root.
pub fn tessera(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(repo())
        .output()
        .expect("runs tessera")
}

/// A run's stdout as text.
pub fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A run's stderr as text.
pub fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Model directories under `models/` (those with a `model.onnx`), sorted.
pub fn model_dirs() -> Vec<PathBuf> {
    dirs_with_model(&repo().join("models"))
}

/// Runnable fixture directories under `models/fixtures/`, sorted.
pub fn fixture_dirs() -> Vec<PathBuf> {
    dirs_with_model(&repo().join("models/fixtures"))
}

fn dirs_with_model(root: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(root)
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path()).collect())
        .unwrap_or_default();
    dirs.retain(|d| d.join("model.onnx").is_file() && d.join("test_data_set_0").is_dir());
    dirs.sort();
    dirs
}

/// The `dims` of a model directory's `meta.json`.
pub fn meta_dims(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_else(|_| "{}".into());
    let meta: serde_json::Value = serde_json::from_str(&text).expect("meta.json is JSON");
    meta.get("dims")
        .and_then(|d| d.as_object())
        .map(|d| {
            d.iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("dim value") as usize))
                .collect()
        })
        .unwrap_or_default()
}

/// `--dim NAME=N` arguments for a model directory.
pub fn dim_args(dir: &Path) -> Vec<String> {
    meta_dims(dir)
        .into_iter()
        .flat_map(|(k, v)| ["--dim".to_string(), format!("{k}={v}")])
        .collect()
}

/// Imports a model directory's model with its meta dims and runs the
/// frontend's Graph IR passes (import, fold; verifier included): the graph
/// as exported, before the e-graph optimizer.
pub fn import_and_fold(dir: &Path) -> Graph {
    let options = ImportOptions {
        dims: meta_dims(dir),
        ..ImportOptions::default()
    };
    let mut graph = import_file(&dir.join("model.onnx"), &options)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    run_graph_passes_with(&mut graph, &PassOptions::frontend_only(), |_, _, _| {})
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    graph
}

/// The model imported and folded as the pipeline does before the e-graph
/// (dequantized 8-bit weights kept), then the e-graph optimizer with
/// `options` (verified): the unoptimized graph, the optimized one, and the
/// report.
pub fn import_and_optimize(dir: &Path, options: &EgraphOptions) -> (Graph, Graph, EgraphReport) {
    let options_import = ImportOptions {
        dims: meta_dims(dir),
        ..ImportOptions::default()
    };
    let mut graph = import_file(&dir.join("model.onnx"), &options_import)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    tessera_compiler::fold::fold_before_egraph(&mut graph)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let mut optimized = graph.clone();
    let report =
        optimize(&mut optimized, options).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    // What the `egraph` pass does after extraction (not while bisecting).
    if options.rule_limit.is_none() {
        tessera_compiler::fuse::fuse_after_extraction(&mut optimized)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    }
    tessera_compiler::graph::verify::verify(&optimized)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    (graph, optimized, report)
}

/// Interprets a graph on a directory's test data and compares every output
/// with the model tolerance. Returns the checks and the actual outputs.
pub fn check_on_test_data(graph: &Graph, dir: &Path) -> (Vec<OutputCheck>, Vec<(String, Tensor)>) {
    let data = dir.join("test_data_set_0");
    let inputs = read_numbered_pbs(&data, "input").expect("inputs");
    let expected = read_numbered_pbs(&data, "output").expect("outputs");
    let bound = bind_inputs(graph, &inputs).expect("inputs match the graph");
    let evaluation = evaluate(graph, &bound, Keep::Outputs).expect("interprets");
    let actual: Vec<(String, &Tensor)> = evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), t.as_ref()))
        .collect();
    let tolerance = Tolerance::for_graph(graph, false, &expected);
    let checks = check_outputs(&actual, &expected, tolerance).expect("comparable");
    let owned = evaluation
        .outputs()
        .iter()
        .map(|(n, t)| (n.clone(), Tensor::clone(t)))
        .collect();
    (checks, owned)
}
