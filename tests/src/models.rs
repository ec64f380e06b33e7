//! The bundled models compiled and simulated as `tessera check` does, with
//! the per-tensor comparison of `check --compare-all`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_compiler::compare::{read_numbered_pbs, Tolerance};
use tessera_compiler::frontend::{import_file_traced, ImportOptions};
use tessera_compiler::graph::Graph;
use tessera_compiler::interp::{bind_inputs, evaluate, Evaluation, Keep};
use tessera_compiler::layerwise::{captured_tensors, compare_tensors, LayerReport};
use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
use tessera_compiler::precision::Precision;
use tessera_compiler::provenance::Provenance;
use tessera_compiler::runtime_io::{bytes_to_tensor, tensor_to_bytes};
use tessera_compiler::tensor::Tensor;
use tessera_compiler::widen::widen_half;
use tessera_isa::{Loadable, Target};
use tessera_sim::{Options, RunResult, Simulator, Watch};

use crate::repo_root;

/// The models of `models/` (directories with a `model.onnx`), sorted.
pub fn models() -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(repo_root().join("models"))
        .expect("models/")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("model.onnx").exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    v.sort();
    v
}

/// The symbolic dims a model's `meta.json` binds.
pub fn dims(dir: &Path) -> BTreeMap<String, usize> {
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

/// A model after the Graph IR passes (costed for the target and precision
/// it will be compiled for), with its test data.
pub struct Prepared {
    /// Model name.
    pub name: String,
    /// The graph lowering reads.
    pub graph: Graph,
    /// The graph after folding.
    pub folded: Graph,
    /// Which ONNX nodes each node of `graph` computes.
    pub provenance: Provenance,
    /// `test_data_set_0/input_N.pb`.
    pub inputs: Vec<(String, Tensor)>,
    /// `test_data_set_0/output_N.pb`.
    pub expected: Vec<(String, Tensor)>,
}

/// The directory of model `name`.
pub fn model_dir(name: &str) -> PathBuf {
    repo_root().join("models").join(name)
}

/// Imports and optimizes a bundled model as `tessera check` does.
pub fn prepare(name: &str, target: &Target, precision: Precision) -> Prepared {
    let dir = model_dir(name);
    let options = ImportOptions {
        dims: dims(&dir),
        ..ImportOptions::default()
    };
    let (mut graph, origins) = import_file_traced(&dir.join("model.onnx"), &options)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    let passes = PassOptions::for_target(target.clone(), precision.mxu());
    let mut folded = None;
    run_graph_passes_with(&mut graph, &passes, |stage, _, g| {
        if stage == "fold" {
            folded = Some(g.clone());
        }
    })
    .expect("passes");
    let folded = folded.expect("a fold stage");
    let provenance = origins.attribute(&folded, &graph);
    let data = dir.join("test_data_set_0");
    Prepared {
        name: name.to_string(),
        graph,
        folded,
        provenance,
        inputs: read_numbered_pbs(&data, "input").expect("inputs"),
        expected: read_numbered_pbs(&data, "output").expect("outputs"),
    }
}

/// A simulated run with every debug tensor captured.
pub struct Simulated {
    /// The run.
    pub result: RunResult,
    /// The graph outputs.
    pub outputs: Vec<(String, Tensor)>,
    /// Each of the loadable's debug tensors, as it became final.
    pub tensors: Vec<Tensor>,
}

/// Runs a loadable compiled from `p` on its test inputs, capturing every
/// debug tensor.
pub fn simulate(p: &Prepared, loadable: &Loadable) -> Result<Simulated, String> {
    let bound = bind_inputs(&p.graph, &p.inputs).map_err(|e| e.to_string())?;
    let mut sim = Simulator::new(loadable.clone()).map_err(|e| e.to_string())?;
    for (&id, t) in p.graph.inputs().iter().zip(&bound) {
        let name = &p.graph.node(id).name;
        let desc = loadable
            .inputs
            .iter()
            .find(|d| &d.name == name)
            .ok_or_else(|| format!("no input `{name}`"))?;
        sim.set_input(name, &tensor_to_bytes(t, desc)?)
            .map_err(|e| e.to_string())?;
    }
    let options = Options {
        watch: Watch::every_tensor(loadable),
        ..Default::default()
    };
    let result = sim.run(&options).map_err(|e| e.to_string())?;
    let outputs = p
        .graph
        .outputs()
        .iter()
        .zip(&loadable.outputs)
        .map(|((n, id), desc)| {
            let bytes = sim.read_tensor(desc).map_err(|e| e.to_string())?;
            Ok((
                n.clone(),
                bytes_to_tensor(&bytes, desc, p.graph.node(*id).ty.dtype)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let tensors = captured_tensors(loadable, &result.snapshots)?;
    Ok(Simulated {
        result,
        outputs,
        tensors,
    })
}

fn by_name<'a>(g: &'a Graph, e: &'a Evaluation) -> impl Fn(&str) -> Option<Arc<Tensor>> + 'a {
    move |name: &str| g.find(name).and_then(|id| e.value(id).cloned())
}

/// The per-tensor comparison `check --compare-all` makes.
pub fn layer_report(
    p: &Prepared,
    loadable: &Loadable,
    tensors: &[Tensor],
    precision: Precision,
) -> LayerReport {
    let widened = widen_half(&p.folded).expect("widen");
    let folded = widened.as_ref().unwrap_or(&p.folded);
    let model = evaluate(
        folded,
        &bind_inputs(folded, &p.inputs).expect("bind"),
        Keep::All,
    )
    .expect("interpret the folded graph");
    let optimized = evaluate(
        &p.graph,
        &bind_inputs(&p.graph, &p.inputs).expect("bind"),
        Keep::All,
    )
    .expect("interpret the optimized graph");
    let lowered = widen_half(&p.graph).expect("widen");
    let lowered = lowered.as_ref().unwrap_or(&p.graph);
    let op_of = |name: &str| {
        lowered
            .find(name)
            .map_or_else(String::new, |id| lowered.node(id).op.mnemonic().to_string())
    };
    let tolerance = Tolerance::for_precision(precision);
    let (model_values, optimized_values) = (by_name(folded, &model), by_name(&p.graph, &optimized));
    compare_tensors(
        loadable,
        tensors,
        &model_values,
        &optimized_values,
        &op_of,
        &p.provenance,
        tolerance,
    )
}
