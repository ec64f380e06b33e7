//! Every model in `models/` compiled for `tiny` and `base`, in fp32 and
//! bf16, simulated (race detection on) and compared with onnxruntime's
//! outputs: fp32 within 1e-4 · max(1, max|expected|), bf16 with cosine
//! similarity ≥ 0.999 for every output.

use std::collections::BTreeMap;
use std::path::Path;

use tessera_compiler::compare::{check_outputs, read_numbered_pbs, Tolerance};
use tessera_compiler::driver::compile_graph;
use tessera_compiler::frontend::{import_file, ImportOptions};
use tessera_compiler::graph::Graph;
use tessera_compiler::interp::bind_inputs;
use tessera_compiler::lower::Precision;
use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
use tessera_compiler::runtime_io::{bytes_to_tensor, tensor_to_bytes};
use tessera_compiler::tensor::Tensor;
use tessera_isa::Target;
use tessera_sim::{Options, Simulator};
use tessera_tests::repo_root;

fn models() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo_root().join("models"))
        .expect("models/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

fn dims(dir: &Path) -> BTreeMap<String, usize> {
    let text = std::fs::read_to_string(dir.join("meta.json")).unwrap_or_else(|_| "{}".into());
    let meta: serde_json::Value = serde_json::from_str(&text).expect("meta.json");
    meta["dims"]
        .as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| Some((k.clone(), v.as_u64()? as usize)))
                .collect()
        })
        .unwrap_or_default()
}

/// The model after the Graph IR passes, the e-graph costed for the target
/// and precision it will be compiled for (as `tessera check` does).
fn graph(dir: &Path, target: &Target, precision: Precision) -> Graph {
    let options = ImportOptions {
        dims: dims(dir),
        ..ImportOptions::default()
    };
    let mut g = import_file(&dir.join("model.onnx"), &options)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let passes = PassOptions::for_target(target.clone(), precision.mxu());
    run_graph_passes_with(&mut g, &passes, |_, _, _| {}).expect("passes");
    g
}

/// Compiles, simulates and compares; returns the cycle count.
fn check(name: &str, target: &Target, precision: Precision) -> u64 {
    let dir = repo_root().join("models").join(name);
    let g = graph(&dir, target, precision);
    let data = dir.join("test_data_set_0");
    let inputs = read_numbered_pbs(&data, "input").expect("inputs");
    let expected = read_numbered_pbs(&data, "output").expect("outputs");
    let bound = bind_inputs(&g, &inputs).expect("bind");
    let compiled = compile_graph(&g, target, precision)
        .unwrap_or_else(|e| panic!("{name} {}: {e}", target.name));
    let l = compiled.loadable;
    let mut sim = Simulator::new(l.clone()).expect("load");
    for (&id, t) in g.inputs().iter().zip(&bound) {
        let name = &g.node(id).name;
        let desc = l
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .expect("input desc");
        sim.set_input(name, &tensor_to_bytes(t, desc).expect("bytes"))
            .expect("set");
    }
    let result = sim
        .run(&Options::default())
        .unwrap_or_else(|e| panic!("{name} {} {}: {e}", target.name, precision.name()));
    let actual: Vec<(String, Tensor)> = g
        .outputs()
        .iter()
        .zip(&l.outputs)
        .map(|((n, id), desc)| {
            (
                n.clone(),
                bytes_to_tensor(
                    &sim.read_tensor(desc).expect("read"),
                    desc,
                    g.node(*id).ty.dtype,
                )
                .expect("tensor"),
            )
        })
        .collect();
    let refs: Vec<(String, &Tensor)> = actual.iter().map(|(n, t)| (n.clone(), t)).collect();
    let tolerance = Tolerance::for_model(precision == Precision::Bf16, &expected);
    for c in check_outputs(&refs, &expected, tolerance).expect("comparable") {
        assert!(
            c.comparison.pass,
            "{name} {} {}: {}",
            target.name,
            precision.name(),
            c.line()
        );
    }
    result.stats.cycles
}

fn all(target: Target) {
    let names = models();
    assert!(names.len() >= 10, "{names:?}");
    for name in &names {
        for precision in [Precision::Fp32, Precision::Bf16] {
            let cycles = check(name, &target, precision);
            if std::env::var_os("SHOW_CYCLES").is_some() {
                eprintln!(
                    "{name} {} {}: {cycles} cycles",
                    target.name,
                    precision.name()
                );
            }
            assert!(cycles > 0);
        }
    }
}

#[test]
fn every_model_passes_on_tiny() {
    all(Target::tiny());
}

#[test]
fn every_model_passes_on_base() {
    all(Target::base());
}

#[test]
fn compiling_twice_gives_identical_loadables() {
    let dir = repo_root().join("models/llama_ts");
    let a = compile_graph(
        &graph(&dir, &Target::tiny(), Precision::Bf16),
        &Target::tiny(),
        Precision::Bf16,
    )
    .expect("a")
    .loadable
    .to_bytes();
    let b = compile_graph(
        &graph(&dir, &Target::tiny(), Precision::Bf16),
        &Target::tiny(),
        Precision::Bf16,
    )
    .expect("b")
    .loadable
    .to_bytes();
    assert_eq!(a, b);
}
