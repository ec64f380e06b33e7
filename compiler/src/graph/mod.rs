//! Graph IR: a DAG of tensor operations with static shapes and dtypes.
//!
//! A [`Graph`] is a petgraph `StableDiGraph` of [`Node`]s. Every node has a
//! unique name, an [`Op`], and one result of a static [`TensorType`]. Edges
//! run from an operand to its user and carry the operand's position. Graph
//! inputs and constants are nodes too (`Op::Input`, `Op::Constant`); graph
//! outputs are named references to nodes.
//!
//! Node names come from ONNX; nodes created by expanding one ONNX node are
//! named `{onnx_name}.{part}` so dumps show where everything came from.
//!
//! The canonical text form is written by [`printer`] and read by [`parser`];
//! [`verify`] checks the invariants and runs after every pass. Two graphs
//! are equal (`==`) when they list the same nodes in the same canonical
//! order with the same names, ops, attributes, types, operands and constant
//! bytes, and the same inputs and outputs.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use petgraph::stable_graph::{NodeIndex, StableDiGraph};
use petgraph::visit::EdgeRef;
use petgraph::Direction;

use crate::tensor::{checked_numel, DType, Tensor};

pub mod attrs;
pub mod fused;
pub mod infer;
pub mod op;
pub mod parser;
pub mod printer;
pub mod verify;

pub use attrs::AttrValue;
pub use fused::FusedExpr;
pub use op::{
    qgemm_operands, Activation, BinaryOp, ConvAttrs, GeluApprox, Op, ReduceKind, UnaryOp,
};

/// Identifies a node of a [`Graph`]; stable across removals of other nodes.
pub type NodeId = NodeIndex<u32>;

/// The static type of a value: element type and shape.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    /// Element type.
    pub dtype: DType,
    /// Dimensions; empty for a scalar.
    pub shape: Vec<usize>,
}

impl TensorType {
    /// A type.
    pub fn new(dtype: DType, shape: Vec<usize>) -> TensorType {
        TensorType { dtype, shape }
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Number of elements, saturating (see [`TensorType::checked_numel`]).
    pub fn numel(&self) -> usize {
        self.checked_numel().unwrap_or(usize::MAX)
    }

    /// Number of elements, or `None` if it overflows.
    pub fn checked_numel(&self) -> Option<usize> {
        checked_numel(&self.shape)
    }
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        write!(f, "{}[{}]", self.dtype, dims.join(", "))
    }
}

/// A node: a named operation and the type of its result.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    /// Unique name (from ONNX, or `{onnx_name}.{part}`).
    pub name: String,
    /// The operation.
    pub op: Op,
    /// The result type.
    pub ty: TensorType,
}

/// Errors building or editing a graph.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum GraphError {
    /// Operand types do not fit the op.
    #[error("node `{node}` ({op}): {message}")]
    Type {
        /// Node name.
        node: String,
        /// Op mnemonic.
        op: String,
        /// What does not fit.
        message: String,
    },
    /// Two nodes have the same name.
    #[error("duplicate node name `{0}`")]
    DuplicateName(String),
    /// The graph has a cycle.
    #[error("graph has a cycle through node `{0}`")]
    Cycle(String),
}

/// A Graph IR graph.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Graph name (ONNX `graph.name`).
    pub name: String,
    dag: StableDiGraph<Node, usize>,
    inputs: Vec<NodeId>,
    outputs: Vec<(String, NodeId)>,
    names: HashMap<String, NodeId>,
}

impl Graph {
    /// An empty graph.
    pub fn new(name: impl Into<String>) -> Graph {
        Graph {
            name: name.into(),
            ..Graph::default()
        }
    }

    fn insert(&mut self, node: Node) -> Result<NodeId, GraphError> {
        if self.names.contains_key(&node.name) {
            return Err(GraphError::DuplicateName(node.name));
        }
        let name = node.name.clone();
        let id = self.dag.add_node(node);
        self.names.insert(name, id);
        Ok(id)
    }

    /// Adds a graph input (appended to the input list).
    pub fn add_input(
        &mut self,
        name: impl Into<String>,
        ty: TensorType,
    ) -> Result<NodeId, GraphError> {
        let id = self.insert(Node {
            name: name.into(),
            op: Op::Input,
            ty,
        })?;
        self.inputs.push(id);
        Ok(id)
    }

    /// Adds a constant.
    pub fn add_constant(
        &mut self,
        name: impl Into<String>,
        value: Arc<Tensor>,
    ) -> Result<NodeId, GraphError> {
        let ty = TensorType::new(value.dtype(), value.shape().to_vec());
        self.insert(Node {
            name: name.into(),
            op: Op::Constant(value),
            ty,
        })
    }

    /// Adds an operation; its type is inferred from the operands.
    pub fn add_node(
        &mut self,
        name: impl Into<String>,
        op: Op,
        operands: &[NodeId],
    ) -> Result<NodeId, GraphError> {
        let name = name.into();
        let types: Vec<&TensorType> = operands.iter().map(|&o| &self.dag[o].ty).collect();
        let ty = op.infer(&types).map_err(|message| GraphError::Type {
            node: name.clone(),
            op: op.mnemonic().to_string(),
            message,
        })?;
        self.add_node_typed(name, op, operands, ty)
    }

    /// Adds an operation with a given result type, unchecked (the parser
    /// uses this; the verifier checks it).
    pub fn add_node_typed(
        &mut self,
        name: impl Into<String>,
        op: Op,
        operands: &[NodeId],
        ty: TensorType,
    ) -> Result<NodeId, GraphError> {
        let id = self.insert(Node {
            name: name.into(),
            op,
            ty,
        })?;
        for (position, &operand) in operands.iter().enumerate() {
            self.dag.add_edge(operand, id, position);
        }
        Ok(id)
    }

    /// Appends a named graph output.
    pub fn add_output(&mut self, name: impl Into<String>, node: NodeId) {
        self.outputs.push((name.into(), node));
    }

    /// A node. Panics if `id` was removed: ids come from this graph.
    pub fn node(&self, id: NodeId) -> &Node {
        &self.dag[id]
    }

    /// Whether `id` is a live node.
    pub fn contains(&self, id: NodeId) -> bool {
        self.dag.contains_node(id)
    }

    /// The node named `name`.
    pub fn find(&self, name: &str) -> Option<NodeId> {
        self.names.get(name).copied()
    }

    /// Renames a node; fails if the new name is taken.
    pub fn rename(&mut self, id: NodeId, name: impl Into<String>) -> Result<(), GraphError> {
        let name = name.into();
        if self.dag[id].name == name {
            return Ok(());
        }
        if self.names.contains_key(&name) {
            return Err(GraphError::DuplicateName(name));
        }
        let old = std::mem::replace(&mut self.dag[id].name, name.clone());
        self.names.remove(&old);
        self.names.insert(name, id);
        Ok(())
    }

    /// The operands of a node, in order.
    pub fn operands(&self, id: NodeId) -> Vec<NodeId> {
        let mut edges: Vec<(usize, NodeId)> = self
            .dag
            .edges_directed(id, Direction::Incoming)
            .map(|e| (*e.weight(), e.source()))
            .collect();
        edges.sort_unstable();
        edges.into_iter().map(|(_, n)| n).collect()
    }

    /// The distinct nodes using a node's result, in id order.
    pub fn users(&self, id: NodeId) -> Vec<NodeId> {
        let mut users: Vec<NodeId> = self
            .dag
            .neighbors_directed(id, Direction::Outgoing)
            .collect();
        users.sort_unstable();
        users.dedup();
        users
    }

    /// Graph inputs, in order.
    pub fn inputs(&self) -> &[NodeId] {
        &self.inputs
    }

    /// Graph outputs (name, node), in order.
    pub fn outputs(&self) -> &[(String, NodeId)] {
        &self.outputs
    }

    /// Number of live nodes.
    pub fn node_count(&self) -> usize {
        self.dag.node_count()
    }

    /// Every live node id, in id order.
    pub fn node_ids(&self) -> Vec<NodeId> {
        self.dag.node_indices().collect()
    }

    /// Nodes in topological order, deterministic: among the ready nodes, the
    /// one created first goes first. Fails on a cycle.
    pub fn topo_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let mut pending: HashMap<NodeId, usize> = HashMap::new();
        let mut ready = BinaryHeap::new();
        for id in self.dag.node_indices() {
            let n = self.dag.edges_directed(id, Direction::Incoming).count();
            if n == 0 {
                ready.push(Reverse(id));
            } else {
                pending.insert(id, n);
            }
        }
        let mut order = Vec::with_capacity(self.dag.node_count());
        while let Some(Reverse(id)) = ready.pop() {
            order.push(id);
            for edge in self.dag.edges_directed(id, Direction::Outgoing) {
                let user = edge.target();
                if let Some(n) = pending.get_mut(&user) {
                    *n -= 1;
                    if *n == 0 {
                        pending.remove(&user);
                        ready.push(Reverse(user));
                    }
                }
            }
        }
        match pending.keys().min() {
            Some(&stuck) => Err(GraphError::Cycle(self.dag[stuck].name.clone())),
            None => Ok(order),
        }
    }

    /// The canonical node order: inputs (in input order), then constants,
    /// then operations, each group in topological order. The printer writes
    /// this order and the parser recreates it.
    pub fn canonical_order(&self) -> Result<Vec<NodeId>, GraphError> {
        let topo = self.topo_order()?;
        let mut order: Vec<NodeId> = self.inputs.clone();
        order.extend(
            topo.iter()
                .copied()
                .filter(|&id| matches!(self.dag[id].op, Op::Constant(_))),
        );
        order.extend(
            topo.iter()
                .copied()
                .filter(|&id| !matches!(self.dag[id].op, Op::Constant(_) | Op::Input)),
        );
        Ok(order)
    }

    /// Turns a node into a constant with the given value, dropping its
    /// operand edges. The value must have the node's type.
    pub fn replace_with_constant(&mut self, id: NodeId, value: Arc<Tensor>) {
        let incoming: Vec<_> = self
            .dag
            .edges_directed(id, Direction::Incoming)
            .map(|e| e.id())
            .collect();
        for e in incoming {
            self.dag.remove_edge(e);
        }
        self.dag[id].op = Op::Constant(value);
    }

    /// Makes every user of `old` (and every output naming it) use `new`.
    pub fn replace_uses(&mut self, old: NodeId, new: NodeId) {
        let outgoing: Vec<_> = self
            .dag
            .edges_directed(old, Direction::Outgoing)
            .map(|e| (e.id(), e.target(), *e.weight()))
            .collect();
        for (edge, target, position) in outgoing {
            self.dag.remove_edge(edge);
            self.dag.add_edge(new, target, position);
        }
        for output in &mut self.outputs {
            if output.1 == old {
                output.1 = new;
            }
        }
    }

    /// Removes a node and its edges (also from the inputs and outputs).
    pub fn remove_node(&mut self, id: NodeId) {
        if let Some(node) = self.dag.remove_node(id) {
            self.names.remove(&node.name);
        }
        self.inputs.retain(|&i| i != id);
        self.outputs.retain(|(_, o)| *o != id);
    }

    /// Removes every node in `dead` and their edges at once, in time linear
    /// in the graph's size (removing them one by one walks the edge list of
    /// each neighbour: quadratic when thousands of nodes share a constant).
    pub fn remove_nodes(&mut self, dead: &HashSet<NodeId>) {
        if dead.is_empty() {
            return;
        }
        let dag = std::mem::take(&mut self.dag);
        let names = &mut self.names;
        self.dag = dag.filter_map_owned(
            |id, node| {
                if dead.contains(&id) {
                    names.remove(&node.name);
                    None
                } else {
                    Some(node)
                }
            },
            |_, position| Some(position),
        );
        self.inputs.retain(|i| !dead.contains(i));
        self.outputs.retain(|(_, o)| !dead.contains(o));
    }

    /// Checks that each node's operands and attributes produce its declared
    /// type; returns the first mismatch.
    pub fn check_types(&self, id: NodeId) -> Result<(), String> {
        let node = &self.dag[id];
        if matches!(node.op, Op::Input) {
            return Ok(());
        }
        let operands = self.operands(id);
        let types: Vec<&TensorType> = operands.iter().map(|&o| &self.dag[o].ty).collect();
        let inferred = node.op.infer(&types)?;
        if inferred != node.ty {
            return Err(format!(
                "declared type {} but operands give {inferred}",
                node.ty
            ));
        }
        Ok(())
    }
}

/// Structural equality: see the module docs.
impl PartialEq for Graph {
    fn eq(&self, other: &Self) -> bool {
        let (Ok(a), Ok(b)) = (self.canonical_order(), other.canonical_order()) else {
            return false;
        };
        let names = |g: &Graph, ids: &[NodeId]| -> Vec<String> {
            ids.iter().map(|&i| g.dag[i].name.clone()).collect()
        };
        self.name == other.name
            && a.len() == b.len()
            && names(self, &self.inputs) == names(other, &other.inputs)
            && self.outputs.len() == other.outputs.len()
            && self
                .outputs
                .iter()
                .zip(&other.outputs)
                .all(|((na, ia), (nb, ib))| na == nb && self.dag[*ia].name == other.dag[*ib].name)
            && a.iter().zip(&b).all(|(&x, &y)| {
                self.dag[x] == other.dag[y]
                    && names(self, &self.operands(x)) == names(other, &other.operands(y))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_ty(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec())
    }

    #[test]
    fn removing_nodes_at_once_keeps_the_rest_intact() {
        let mut g = Graph::new("g");
        let a = g.add_input("a", f32_ty(&[2])).expect("a");
        let b = g.add_input("b", f32_ty(&[2])).expect("b");
        let s = g
            .add_node("s", Op::Binary(BinaryOp::Sub), &[b, a])
            .expect("sub");
        let n = g.add_node("n", Op::Unary(UnaryOp::Neg), &[s]).expect("n");
        let m = g
            .add_node("m", Op::Binary(BinaryOp::Mul), &[s, a])
            .expect("m");
        g.add_output("n", n);
        g.add_output("m", m);
        g.remove_nodes(&HashSet::from([n, b]));
        assert_eq!(g.node_ids(), vec![a, s, m]);
        assert_eq!(g.inputs(), &[a]);
        assert_eq!(g.outputs(), &[("m".to_string(), m)]);
        assert!(g.find("n").is_none() && g.find("b").is_none());
        assert_eq!(g.find("s"), Some(s));
        assert_eq!(g.operands(s), vec![a], "the edge from `b` went with it");
        assert_eq!(g.operands(m), vec![s, a]);
        assert_eq!(g.users(s), vec![m]);
        // Ids stay stable, and the freed ones are reused.
        let again = g
            .add_node("again", Op::Unary(UnaryOp::Neg), &[m])
            .expect("again");
        assert!(again == n || again == b, "{again:?}");
    }

    #[test]
    fn operands_keep_their_positions() {
        let mut g = Graph::new("g");
        let a = g.add_input("a", f32_ty(&[2])).expect("a");
        let b = g.add_input("b", f32_ty(&[2])).expect("b");
        let s = g
            .add_node("s", Op::Binary(BinaryOp::Sub), &[b, a])
            .expect("sub");
        assert_eq!(g.operands(s), vec![b, a]);
        let t = g
            .add_node("t", Op::Binary(BinaryOp::Mul), &[s, s])
            .expect("mul");
        assert_eq!(g.operands(t), vec![s, s]);
        assert_eq!(g.users(s), vec![t]);
    }

    #[test]
    fn duplicate_names_are_refused() {
        let mut g = Graph::new("g");
        g.add_input("x", f32_ty(&[1])).expect("x");
        assert_eq!(
            g.add_input("x", f32_ty(&[1])),
            Err(GraphError::DuplicateName("x".into()))
        );
    }

    #[test]
    fn type_errors_name_the_node() {
        let mut g = Graph::new("g");
        let a = g.add_input("a", f32_ty(&[2, 3])).expect("a");
        let b = g.add_input("b", f32_ty(&[4, 5])).expect("b");
        let err = g.add_node("mm", Op::MatMul, &[a, b]).expect_err("3 vs 4");
        assert!(
            err.to_string()
                .starts_with("node `mm` (matmul): inner dimensions differ"),
            "{err}"
        );
    }

    #[test]
    fn canonical_order_groups_inputs_constants_ops() {
        let mut g = Graph::new("g");
        let x = g.add_input("x", f32_ty(&[2])).expect("x");
        let n = g.add_node("n", Op::Unary(UnaryOp::Neg), &[x]).expect("neg");
        let c = g
            .add_constant("c", Arc::new(Tensor::from_f32(&[2], vec![1.0, 2.0])))
            .expect("c");
        let s = g
            .add_node("s", Op::Binary(BinaryOp::Add), &[n, c])
            .expect("add");
        assert_eq!(g.canonical_order().expect("acyclic"), vec![x, c, n, s]);
    }
}
