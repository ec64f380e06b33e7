//! Where the compiled program's values and kernels come from in the ONNX
//! model: for every kernel, every ONNX node fused into it; for every
//! tensor, the ONNX value it holds.
//!
//! The frontend records which ONNX node created each Graph IR node
//! ([`Origins`]). Later passes keep names: folding replaces a node by a
//! constant of the same name, the e-graph gives each result the name of the
//! original node whose e-class it is, and a fused chain takes its result's
//! name. So attribution works by name, without the passes' help:
//!
//! - a node of the folded graph whose name the optimized graph still has
//!   (as an operation) is computed by that node;
//! - a node the optimized graph no longer has was fused into, or rewritten
//!   away by, the nodes that consume it: it is attributed to whatever its
//!   users are attributed to;
//! - an ONNX node none of whose Graph IR nodes survives folding as an
//!   operation (shape computations, constants, identities, dead code) is
//!   computed at compile time.
//!
//! The back end then maps optimized-graph nodes to kernels the same way: a
//! node without a kernel of its own (a reshape, a layout op read as a
//! strided view) belongs to the kernels of its users, and a transpose that
//! a kernel writes directly belongs to that kernel ([`kernel_sources`]).

use std::collections::{BTreeSet, HashMap};

use crate::graph::{Graph, NodeId, Op};

/// An ONNX node of the imported model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OnnxNode {
    /// Its name as the Graph IR uses it (the ONNX name, else its first
    /// output's name, made unique).
    pub name: String,
    /// The ONNX op type.
    pub op_type: String,
    /// Its non-empty output value names.
    pub outputs: Vec<String>,
}

/// What the frontend recorded about where Graph IR nodes come from.
#[derive(Clone, Debug, Default)]
pub struct Origins {
    /// The model's nodes, in model order.
    pub nodes: Vec<OnnxNode>,
    /// Graph IR node name → index (into `nodes`) of the ONNX node whose
    /// conversion created it.
    pub created_by: HashMap<String, usize>,
    /// Graph IR node name → the ONNX value it computes.
    pub value_of: HashMap<String, String>,
}

/// Which ONNX nodes each node of an optimized graph accounts for.
#[derive(Clone, Debug, Default)]
pub struct Provenance {
    /// What the frontend recorded.
    pub origins: Origins,
    /// Optimized-graph node name → indices of the ONNX nodes it computes
    /// (sorted, in model order).
    pub sources: HashMap<String, Vec<usize>>,
    /// ONNX nodes computed at compile time (no operation of the folded
    /// graph comes from them), in model order.
    pub compile_time: Vec<usize>,
}

impl Origins {
    /// Attributes every ONNX node to the nodes of `optimized` that compute
    /// it, given the graph after folding (`folded`, whose operations all
    /// come from the frontend) — see the module docs.
    pub fn attribute(self, folded: &Graph, optimized: &Graph) -> Provenance {
        let is_op = |g: &Graph, id: NodeId| !matches!(g.node(id).op, Op::Input | Op::Constant(_));
        let owners = owners_by_name(folded, |id| {
            let name = &folded.node(id).name;
            match optimized.find(name) {
                Some(o) if is_op(optimized, o) => Some(Some(name.clone())),
                Some(_) => Some(None),
                None => None,
            }
        });
        let mut sources: HashMap<String, BTreeSet<usize>> = HashMap::new();
        let mut covered = vec![false; self.nodes.len()];
        for (id, owners) in &owners {
            let Some(&onnx) = self.created_by.get(&folded.node(*id).name) else {
                continue;
            };
            for owner in owners {
                covered[onnx] = true;
                sources.entry(owner.clone()).or_default().insert(onnx);
            }
        }
        let compile_time = (0..self.nodes.len()).filter(|&i| !covered[i]).collect();
        Provenance {
            origins: self,
            sources: sources
                .into_iter()
                .map(|(k, v)| (k, v.into_iter().collect()))
                .collect(),
            compile_time,
        }
    }
}

impl Provenance {
    /// The ONNX nodes an optimized-graph node computes.
    pub fn sources_of(&self, node: &str) -> &[usize] {
        self.sources.get(node).map_or(&[], Vec::as_slice)
    }

    /// The ONNX value a Graph IR node computes, if it computes one.
    pub fn value_of(&self, node: &str) -> Option<&str> {
        self.origins.value_of.get(node).map(String::as_str)
    }
}

/// For every operation of `graph`, the names it is attributed to:
/// `own(id)` is `Some(Some(name))` for a node attributed to `name`,
/// `Some(None)` for one attributed to nothing (computed at compile time),
/// and `None` for a node attributed to whatever its users are.
fn owners_by_name(
    graph: &Graph,
    own: impl Fn(NodeId) -> Option<Option<String>>,
) -> Vec<(NodeId, BTreeSet<String>)> {
    let order = graph.topo_order().unwrap_or_else(|_| graph.node_ids());
    let mut owners: HashMap<NodeId, BTreeSet<String>> = HashMap::new();
    let mut out = Vec::new();
    for &id in order.iter().rev() {
        if matches!(graph.node(id).op, Op::Input | Op::Constant(_)) {
            continue;
        }
        let set: BTreeSet<String> = match own(id) {
            Some(Some(name)) => BTreeSet::from([name]),
            Some(None) => BTreeSet::new(),
            None => graph
                .users(id)
                .iter()
                .filter_map(|u| owners.get(u))
                .flatten()
                .cloned()
                .collect(),
        };
        owners.insert(id, set.clone());
        out.push((id, set));
    }
    out.reverse();
    out
}

/// Every kernel's ONNX sources: `kernel_of(id)` names the kernel that
/// computes node `id` of the lowered graph (its own, or the kernel that
/// writes it directly), `None` for a node without one, which belongs to the
/// kernels of its users. Returns kernel node name → ONNX node indices.
pub fn kernel_sources(
    graph: &Graph,
    provenance: &Provenance,
    kernel_of: impl Fn(NodeId) -> Option<String>,
) -> HashMap<String, Vec<usize>> {
    let owners = owners_by_name(graph, |id| kernel_of(id).map(Some));
    let mut sources: HashMap<String, BTreeSet<usize>> = HashMap::new();
    for (id, owners) in owners {
        let of = provenance.sources_of(&graph.node(id).name);
        for owner in owners {
            sources.entry(owner).or_default().extend(of);
        }
    }
    sources
        .into_iter()
        .map(|(k, v)| (k, v.into_iter().collect()))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::{BinaryOp, TensorType, UnaryOp};
    use crate::tensor::{DType, Tensor};

    fn f32s(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec())
    }

    fn origins(nodes: &[(&str, &str, &[&str])]) -> Origins {
        let mut o = Origins::default();
        for (i, (name, op, ir)) in nodes.iter().enumerate() {
            o.nodes.push(OnnxNode {
                name: name.to_string(),
                op_type: op.to_string(),
                outputs: vec![format!("{name}_out")],
            });
            for n in *ir {
                o.created_by.insert(n.to_string(), i);
            }
        }
        o
    }

    #[test]
    fn fused_nodes_belong_to_the_node_that_consumes_them() {
        // folded: t = x + c; y = exp(t). Optimized: y computed in one node.
        let mut folded = Graph::new("g");
        let x = folded.add_input("x", f32s(&[4])).expect("x");
        let c = folded
            .add_constant("c", Arc::new(Tensor::from_f32(&[4], vec![1.0; 4])))
            .expect("c");
        let t = folded
            .add_node("t", Op::Binary(BinaryOp::Add), &[x, c])
            .expect("t");
        let y = folded
            .add_node("y", Op::Unary(UnaryOp::Exp), &[t])
            .expect("y");
        folded.add_output("y", y);
        let mut optimized = Graph::new("g");
        let x = optimized.add_input("x", f32s(&[4])).expect("x");
        let y = optimized
            .add_node("y", Op::Unary(UnaryOp::Exp), &[x])
            .expect("y");
        optimized.add_output("y", y);
        let p = origins(&[
            ("/add", "Add", &["t"]),
            ("/exp", "Exp", &["y"]),
            ("/shape", "Shape", &["s"]),
        ])
        .attribute(&folded, &optimized);
        assert_eq!(p.sources_of("y"), &[0, 1]);
        assert_eq!(p.compile_time, vec![2]);
    }

    #[test]
    fn a_node_without_a_kernel_belongs_to_its_users_kernels() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32s(&[4])).expect("x");
        let r = g.add_node("r", Op::Unary(UnaryOp::Neg), &[x]).expect("r");
        let a = g.add_node("a", Op::Unary(UnaryOp::Exp), &[r]).expect("a");
        let b = g.add_node("b", Op::Unary(UnaryOp::Exp), &[r]).expect("b");
        g.add_output("a", a);
        g.add_output("b", b);
        let p = origins(&[
            ("/r", "Neg", &["r"]),
            ("/a", "Exp", &["a"]),
            ("/b", "Exp", &["b"]),
        ])
        .attribute(&g, &g);
        let kernels = kernel_sources(&g, &p, |id| {
            let name = &g.node(id).name;
            (name != "r").then(|| name.clone())
        });
        assert_eq!(kernels["a"], vec![0, 1]);
        assert_eq!(kernels["b"], vec![0, 2]);
        assert!(!kernels.contains_key("r"));
    }
}
