//! The back half of the pipeline as one call: Graph IR → kernels → code →
//! loadable. The CLI's `compile` and `check` and the end-to-end tests use it.

use std::collections::{HashMap, HashSet};

use tessera_isa::{DebugTensor, Loadable, OnnxNode, Target, TensorDesc};

use crate::codegen::{generate, Code, CodegenError};
use crate::graph::Graph;
use crate::graph::{GraphError, NodeId};
use crate::lower::{lower_keeping, LowerError, Lowered};
use crate::precision::Precision;
use crate::provenance::{kernel_sources, Provenance};
use crate::runtime_io::isa_dtype;
use crate::widen::widen_half;

/// Why the back end failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BackendError {
    /// Lowering failed.
    #[error(transparent)]
    Lower(#[from] LowerError),
    /// Codegen failed.
    #[error(transparent)]
    Codegen(#[from] CodegenError),
    /// Widening a half-precision graph failed (a compiler bug).
    #[error("internal: widening to f32: {0}")]
    Widen(String),
}

/// Everything the back end produced.
#[derive(Debug, Clone)]
pub struct Compiled {
    /// Kernels and DRAM plan (its segments moved into the loadable).
    pub lowered: Lowered,
    /// Instructions and source map.
    pub code: Code,
    /// The loadable.
    pub loadable: Loadable,
}

/// Lowers, generates code and packages the loadable.
pub fn compile_graph(
    graph: &Graph,
    target: &Target,
    precision: Precision,
) -> Result<Compiled, BackendError> {
    compile_graph_traced(graph, target, precision, &[], None)
}

/// [`compile_graph`], keeping the GEMMs `keep_high` names out of an 8-bit
/// precision (see [`crate::lower::quantize::eight_bit_gemms`]) and
/// recording in the source map every ONNX node fused into each kernel when
/// the graph's provenance is known.
pub fn compile_graph_traced(
    graph: &Graph,
    target: &Target,
    precision: Precision,
    keep_high: &[String],
    provenance: Option<&Provenance>,
) -> Result<Compiled, BackendError> {
    // The NPU computes in f32 between a half-precision model's edges.
    let widened = widen_half(graph).map_err(|e: GraphError| BackendError::Widen(e.to_string()))?;
    let graph = widened.as_ref().unwrap_or(graph);
    let lowered = lower_keeping(graph, target, precision, keep_high)?;
    let code = generate(&lowered.program, target)?;
    Ok(package(graph, target, lowered, code, provenance))
}

/// Packages lowered kernels and their code as a loadable, with its debug
/// information (computed tensors; with the provenance, every ONNX node of
/// each range). `graph` is the graph that was lowered.
pub fn package(
    graph: &Graph,
    target: &Target,
    mut lowered: Lowered,
    code: Code,
    provenance: Option<&Provenance>,
) -> Compiled {
    let mut loadable = Loadable::new(target.clone(), &code.instrs);
    // The weights move into the loadable (no second copy of hundreds of MB).
    loadable.segments = std::mem::take(&mut lowered.segments);
    loadable.inputs = lowered.inputs.clone();
    loadable.outputs = lowered.outputs.clone();
    loadable.source_map = code.source_map.clone();
    loadable.tensors = debug_tensors(graph, &lowered, &code, &loadable, provenance);
    if let Some(provenance) = provenance {
        record_sources(graph, &lowered, &code, provenance, &mut loadable);
    }
    Compiled {
        lowered,
        code,
        loadable,
    }
}

/// Every tensor the kernels compute into DRAM, with the ONNX value it holds
/// and the end of the kernels that write it.
fn debug_tensors(
    graph: &Graph,
    lowered: &Lowered,
    code: &Code,
    loadable: &Loadable,
    provenance: Option<&Provenance>,
) -> Vec<DebugTensor> {
    let output_at: HashMap<u64, &str> = loadable
        .outputs
        .iter()
        .map(|o| (o.dram_addr, o.name.as_str()))
        .collect();
    let mut used = HashSet::new();
    lowered
        .tensors
        .iter()
        .filter_map(|t| {
            let node = graph.node(t.node);
            let ready_pc = code.kernel_ranges[t.kernels.clone()]
                .iter()
                .filter(|r| !r.is_empty())
                .map(|r| r.end)
                .max()?;
            let shape: Vec<u64> = node.ty.shape.iter().map(|&d| d as u64).collect();
            // The ONNX value the node computes, else the graph output it
            // writes; a second tensor of the same value (an output cast
            // back to half precision) keeps the compiler's name.
            let value = provenance
                .and_then(|p| p.value_of(&node.name))
                .or_else(|| output_at.get(&t.addr).copied())
                .filter(|v| used.insert(v.to_string()))
                .unwrap_or_default()
                .to_string();
            Some(DebugTensor {
                desc: Some(TensorDesc::new(
                    &node.name,
                    isa_dtype(node.ty.dtype),
                    &shape,
                    t.addr,
                )),
                value,
                ready_pc,
            })
        })
        .collect()
}

/// Fills each range's `sources` and the loadable's ONNX node list.
fn record_sources(
    graph: &Graph,
    lowered: &Lowered,
    code: &Code,
    provenance: &Provenance,
    loadable: &mut Loadable,
) {
    let with_kernel: HashSet<NodeId> = lowered.kernel_nodes.iter().copied().collect();
    let written_by: HashMap<NodeId, NodeId> = lowered
        .tensors
        .iter()
        .filter(|t| t.node != t.producer)
        .map(|t| (t.node, t.producer))
        .collect();
    let sources = kernel_sources(graph, provenance, |id| {
        let id = written_by.get(&id).copied().unwrap_or(id);
        with_kernel
            .contains(&id)
            .then(|| graph.node(id).name.clone())
    });
    let nodes = &provenance.origins.nodes;
    let by_start: HashMap<u32, NodeId> = code
        .kernel_ranges
        .iter()
        .zip(&lowered.kernel_nodes)
        .filter(|(r, _)| !r.is_empty())
        .map(|(r, &id)| (r.start, id))
        .collect();
    for range in &mut loadable.source_map {
        let Some(&id) = by_start.get(&range.start) else {
            continue;
        };
        range.sources = sources
            .get(&graph.node(id).name)
            .map(|s| s.iter().map(|&i| nodes[i].name.clone()).collect())
            .unwrap_or_default();
    }
    loadable.onnx_nodes = nodes
        .iter()
        .map(|n| OnnxNode {
            name: n.name.clone(),
            op_type: n.op_type.clone(),
        })
        .collect();
}
