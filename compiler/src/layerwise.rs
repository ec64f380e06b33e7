//! Per-tensor comparison of a compiled program with the reference
//! interpreter (`tessera check --compare-all`): which kernel's output
//! diverged first, and by how much.
//!
//! Every tensor the program computes into DRAM (the loadable's debug
//! tensors, captured by the simulator as each becomes final) is compared
//! with the interpreter's value of the same Graph IR value: the folded graph
//! (the model as exported, only compile-time values computed) where it has
//! that value, else the optimized graph (values the e-graph made, such as a
//! re-laid-out weight). Each row lists the ONNX nodes fused into the kernel
//! that wrote it; the ONNX values that exist only inside that kernel are
//! listed under it as fused, and ONNX nodes computed at compile time are
//! listed apart, so every ONNX node of the model is accounted for.

use std::collections::HashSet;
use std::fmt::Write as _;
use std::sync::Arc;

use tessera_isa::Loadable;

use crate::compare::{compare, Metrics, Tolerance};
use crate::provenance::Provenance;
use crate::runtime_io::{bytes_to_tensor, graph_dtype};
use crate::tensor::{DType, Tensor};

/// Where a row's reference value came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reference {
    /// The folded graph (the model as exported).
    Model,
    /// The optimized graph (a value the optimizer made).
    Optimized,
    /// Neither graph has the value.
    Missing,
}

impl Reference {
    /// The name used in the CSV.
    pub fn name(self) -> &'static str {
        match self {
            Reference::Model => "model",
            Reference::Optimized => "optimized",
            Reference::Missing => "none",
        }
    }
}

/// One computed tensor and how it compares.
#[derive(Clone, Debug, PartialEq)]
pub struct Row {
    /// The ONNX value (else the compiler's name for it).
    pub value: String,
    /// The Graph IR node of the value.
    pub node: String,
    /// The kernel that writes it: its Graph IR node (`node`, or an
    /// attention writing its transposing user's layout directly).
    pub kernel: String,
    /// The kernel's Graph IR op (`gemm`, `attention`, ...).
    pub op: String,
    /// The ONNX nodes fused into the kernel that writes it: (name, op type).
    pub sources: Vec<(String, String)>,
    /// Element type and shape of the captured tensor.
    pub dtype: DType,
    /// Shape.
    pub shape: Vec<usize>,
    /// Metrics against the reference, if there is one.
    pub metrics: Option<Metrics>,
    /// Within tolerance (a row without reference passes).
    pub pass: bool,
    /// The tolerance it was judged by: the report's, or for a tensor stored
    /// in fp16/bf16, [`Tolerance::MODEL_BF16`].
    pub tolerance: Tolerance,
    /// Where the reference came from.
    pub reference: Reference,
    /// Why the comparison could not be made (type or shape mismatch).
    pub error: Option<String>,
    /// ONNX values computed inside this kernel and never stored: (value,
    /// ONNX node, op type).
    pub fused: Vec<(String, String, String)>,
}

impl Row {
    /// The distinct ONNX op types of the sources, in order, joined by ` + `.
    pub fn op_types(&self) -> String {
        let mut seen = HashSet::new();
        let ops: Vec<&str> = self
            .sources
            .iter()
            .map(|(_, op)| op.as_str())
            .filter(|op| seen.insert(*op))
            .collect();
        ops.join(" + ")
    }
}

/// The whole comparison.
#[derive(Clone, Debug, PartialEq)]
pub struct LayerReport {
    /// One row per computed tensor, in execution order.
    pub rows: Vec<Row>,
    /// ONNX nodes computed at compile time: (name, op type).
    pub compile_time: Vec<(String, String)>,
    /// The tolerance rows were judged by (fp16/bf16 tensors excepted: see
    /// [`Row::tolerance`]).
    pub tolerance: Tolerance,
}

/// The captured bytes of each of the loadable's debug tensors (in its
/// order, e.g. a simulator's snapshots) as tensors.
pub fn captured_tensors(loadable: &Loadable, snapshots: &[Vec<u8>]) -> Result<Vec<Tensor>, String> {
    loadable
        .tensors
        .iter()
        .zip(snapshots)
        .map(|(t, bytes)| {
            let desc = t.desc();
            bytes_to_tensor(bytes, &desc, graph_dtype(desc.dtype()))
                .map_err(|m| format!("tensor `{}`: {m}", desc.name))
        })
        .collect()
}

/// The values a reference graph computed, by Graph IR name.
pub type Values<'a> = &'a dyn Fn(&str) -> Option<Arc<Tensor>>;

/// Compares the captured tensors (one per `loadable.tensors` entry) with
/// the reference values: `model(name)` from the folded graph, else
/// `optimized(name)`; `op_of(name)` is the optimized graph's op mnemonic.
pub fn compare_tensors(
    loadable: &Loadable,
    captured: &[Tensor],
    model: Values,
    optimized: Values,
    op_of: &dyn Fn(&str) -> String,
    provenance: &Provenance,
    tolerance: Tolerance,
) -> LayerReport {
    let op_type = |name: &str| {
        loadable
            .onnx_nodes
            .iter()
            .find(|n| n.name == name)
            .map_or_else(String::new, |n| n.op_type.clone())
    };
    let stored: HashSet<&str> = loadable.tensors.iter().map(|t| t.display_name()).collect();
    let onnx_index = |name: &str| provenance.origins.nodes.iter().position(|n| n.name == name);
    let mut rows = Vec::new();
    for (t, tensor) in loadable.tensors.iter().zip(captured) {
        let desc = t.desc();
        // The range that ends where the tensor becomes ready wrote it.
        let range = loadable.source_map.iter().find(|r| r.end == t.ready_pc);
        let sources: Vec<String> = range.map(|r| r.sources.clone()).unwrap_or_default();
        let kernel = range.map_or_else(|| desc.name.clone(), |r| r.node.clone());
        let (reference, expected) = match (model(&desc.name), optimized(&desc.name)) {
            (Some(v), _) => (Reference::Model, Some(v)),
            (None, Some(v)) => (Reference::Optimized, Some(v)),
            (None, None) => (Reference::Missing, None),
        };
        let row_tolerance = match tensor.dtype() {
            DType::F16 | DType::BF16 => Tolerance::MODEL_BF16,
            _ => tolerance,
        };
        let (metrics, pass, error) = match expected {
            Some(e) => match compare(tensor, &as_dtype(&e, tensor.dtype()), row_tolerance) {
                Ok(c) => (Some(c.metrics), c.pass, None),
                Err(m) => (None, false, Some(m)),
            },
            None => (None, true, None),
        };
        let mut fused = Vec::new();
        for source in &sources {
            let Some(i) = onnx_index(source) else {
                continue;
            };
            let node = &provenance.origins.nodes[i];
            for value in &node.outputs {
                if !stored.contains(value.as_str()) && value != t.display_name() {
                    fused.push((value.clone(), node.name.clone(), node.op_type.clone()));
                }
            }
        }
        rows.push(Row {
            value: t.display_name().to_string(),
            node: desc.name.clone(),
            op: kernel_op(&kernel, &desc.name, op_of),
            kernel,
            sources: sources.iter().map(|s| (s.clone(), op_type(s))).collect(),
            dtype: tensor.dtype(),
            shape: tensor.shape().to_vec(),
            metrics,
            pass,
            tolerance: row_tolerance,
            reference,
            error,
            fused,
        });
    }
    let compile_time = provenance
        .compile_time
        .iter()
        .map(|&i| {
            let n = &provenance.origins.nodes[i];
            (n.name.clone(), n.op_type.clone())
        })
        .collect();
    LayerReport {
        rows,
        compile_time,
        tolerance,
    }
}

/// The op of a kernel: its node's, or for a part of a node's lowering
/// (`{node}.{part}`) the node's, else that of the value it writes.
fn kernel_op(kernel: &str, value: &str, op_of: &dyn Fn(&str) -> String) -> String {
    let mut name = kernel;
    loop {
        let op = op_of(name);
        if !op.is_empty() {
            return op;
        }
        match name.rsplit_once('.') {
            Some((head, _)) => name = head,
            None => return op_of(value),
        }
    }
}

/// `t` in `dtype` when both are floats of different widths (a half model's
/// reference against the NPU's f32 values), else `t` itself.
fn as_dtype(t: &Tensor, dtype: DType) -> Tensor {
    if t.dtype() == dtype || !t.dtype().is_float() || !dtype.is_float() {
        return t.clone();
    }
    Tensor::from_f32_as(dtype, t.shape().to_vec(), t.to_f32_vec()).unwrap_or_else(|| t.clone())
}

impl LayerReport {
    /// The first row out of tolerance, in execution order.
    pub fn first_failure(&self) -> Option<(usize, &Row)> {
        self.rows.iter().enumerate().find(|(_, r)| !r.pass)
    }

    /// The table `check --compare-all` prints: one line per tensor, the
    /// values fused into it indented below, the first failure marked.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let first = self.first_failure().map(|(i, _)| i);
        let _ = writeln!(
            out,
            "{:>4}  {:<6} {:>10} {:>8} {:>10} {:>10}  {:<18} {:<12} value  [ONNX ops]",
            "#", "status", "cosine", "SQNR dB", "max_abs", "rel_l2", "type", "op"
        );
        for (i, row) in self.rows.iter().enumerate() {
            let status = match (row.pass, row.metrics.is_some() || row.error.is_some()) {
                (true, true) => "ok",
                (true, false) => "n/a",
                (false, _) => "FAIL",
            };
            let (cosine, sqnr, max_abs, rel_l2) = match &row.metrics {
                Some(m) => (
                    format!("{:.6}", m.cosine),
                    format_db(m.sqnr_db),
                    format!("{:.3e}", m.max_abs),
                    format!("{:.3e}", m.rel_l2),
                ),
                None => ("-".into(), "-".into(), "-".into(), "-".into()),
            };
            let ty = format!("{}{:?}", row.dtype.name(), row.shape);
            let _ = write!(
                out,
                "{:>4}  {:<6} {:>10} {:>8} {:>10} {:>10}  {:<18} {:<12} {}  [{}]",
                i + 1,
                status,
                cosine,
                sqnr,
                max_abs,
                rel_l2,
                ty,
                row.op,
                row.value,
                if row.sources.is_empty() {
                    "no ONNX node: made by the compiler".to_string()
                } else {
                    row.op_types()
                }
            );
            if first == Some(i) {
                out.push_str("  <<< first failure");
            }
            out.push('\n');
            if let Some(e) = &row.error {
                let _ = writeln!(out, "{:>12}  cannot compare: {e}", "");
            }
            if row.reference == Reference::Missing {
                let _ = writeln!(out, "{:>12}  no reference value", "");
            }
            if !row.fused.is_empty() {
                let fused: Vec<String> = row
                    .fused
                    .iter()
                    .map(|(value, _, op)| format!("{value} [{op}]"))
                    .collect();
                let _ = writeln!(out, "{:>12}  fused: {}", "", fused.join(", "));
            }
        }
        if !self.compile_time.is_empty() {
            let mut ops: Vec<&str> = self
                .compile_time
                .iter()
                .map(|(_, op)| op.as_str())
                .collect();
            ops.sort_unstable();
            ops.dedup();
            let _ = writeln!(
                out,
                "computed at compile time: {} ONNX nodes ({})",
                self.compile_time.len(),
                ops.join(", ")
            );
        }
        let failed = self.rows.iter().filter(|r| !r.pass).count();
        let half = if self.rows.iter().any(|r| r.tolerance != self.tolerance) {
            format!("; fp16/bf16 tensors: {}", Tolerance::MODEL_BF16)
        } else {
            String::new()
        };
        let _ = writeln!(
            out,
            "{} of {} tensors within tolerance ({}{half})",
            self.rows.len() - failed,
            self.rows.len(),
            self.tolerance
        );
        if let Some((i, row)) = self.first_failure() {
            let nodes: Vec<&str> = row.sources.iter().map(|(n, _)| n.as_str()).collect();
            let _ = writeln!(
                out,
                "first failing tensor: #{} `{}` ({} kernel `{}`, from ONNX {})",
                i + 1,
                row.value,
                row.op,
                row.kernel,
                if nodes.is_empty() {
                    "nodes unknown".to_string()
                } else {
                    nodes.join(", ")
                }
            );
        }
        out
    }

    /// Every row as CSV (a header line first); fused values and compile-time
    /// nodes are rows too, with empty metrics.
    pub fn csv(&self) -> String {
        let mut out = String::from(
            "index,value,node,kernel,op,onnx_nodes,onnx_ops,dtype,shape,cosine,sqnr_db,max_abs,rel_l2,status,reference,fused_into\n",
        );
        for (i, row) in self.rows.iter().enumerate() {
            let names: Vec<&str> = row.sources.iter().map(|(n, _)| n.as_str()).collect();
            let (cosine, sqnr, max_abs, rel_l2) = match &row.metrics {
                Some(m) => (
                    m.cosine.to_string(),
                    m.sqnr_db.to_string(),
                    m.max_abs.to_string(),
                    m.rel_l2.to_string(),
                ),
                None => Default::default(),
            };
            let status = match (row.pass, &row.metrics) {
                (false, _) => "fail",
                (true, Some(_)) => "pass",
                (true, None) => "unchecked",
            };
            let shape: Vec<String> = row.shape.iter().map(usize::to_string).collect();
            let fields = [
                (i + 1).to_string(),
                row.value.clone(),
                row.node.clone(),
                row.kernel.clone(),
                row.op.clone(),
                names.join(" "),
                row.op_types(),
                row.dtype.name().to_string(),
                shape.join("x"),
                cosine,
                sqnr,
                max_abs,
                rel_l2,
                status.to_string(),
                row.reference.name().to_string(),
                String::new(),
            ];
            push_csv(&mut out, &fields);
            for (value, node, op) in &row.fused {
                let fields = [
                    String::new(),
                    value.clone(),
                    String::new(),
                    row.kernel.clone(),
                    String::new(),
                    node.clone(),
                    op.clone(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    "fused".to_string(),
                    String::new(),
                    row.value.clone(),
                ];
                push_csv(&mut out, &fields);
            }
        }
        for (node, op) in &self.compile_time {
            let mut fields: [String; 16] = Default::default();
            fields[5] = node.clone();
            fields[6] = op.clone();
            fields[13] = "compile-time".to_string();
            push_csv(&mut out, &fields);
        }
        out
    }
}

/// SQNR for the table: `inf` when exact.
fn format_db(db: f64) -> String {
    if db.is_infinite() && db > 0.0 {
        "inf".into()
    } else {
        format!("{db:.1}")
    }
}

/// Appends one CSV record, quoting fields that need it (RFC 4180).
pub fn push_csv(out: &mut String, fields: &[String]) {
    for (i, f) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        if f.contains([',', '"', '\n']) {
            out.push('"');
            out.push_str(&f.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(f);
        }
    }
    out.push('\n');
}
