//! Splitting a graph into segments, and recognizing identical ones.
//!
//! A transformer is a stack of blocks that differ only in their weights.
//! The optimizer cuts the graph where the residual stream passes from one
//! block (or sub-block) to the next, runs the e-graph once per distinct
//! segment, and replays the result on the identical ones, so its time
//! grows with the number of *distinct* blocks, not with depth.
//!
//! **Cuts.** Walk the operations in canonical topological order; after
//! each one, count the values that are live (defined, graph inputs
//! included, and still used later or a graph output). Cut after position
//! `i` when nothing is live, or when exactly one value is live and it stays
//! live for at least [`STREAM_RANGE`] more positions: that is a residual
//! stream, not a value in the middle of a chain (a GELU's input, a matmul
//! feeding its bias add), so no fusion pattern spans the cut. Values that
//! several far-apart nodes read in the same role (an attention mask or a
//! position table shared by every layer) do not count as live: they are
//! parameters of every segment that reads them.
//!
//! **Identity.** Two segments are identical when their signatures are
//! equal: the same ops and attributes in the same order, wired the same
//! way, with parameters of the same types, and the same outputs. Constant
//! parameters are *visible* to rules (their values can decide a rewrite)
//! when they are small ([`VISIBLE_ELEMENTS`] elements at most, compared by
//! value) or shared by several segments (compared by node); other
//! constants (weights) are compared by type only and rules never see their
//! values, which is what makes replaying a rewrite on another block sound.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::graph::{Graph, GraphError, NodeId, Op};
use crate::tensor::Tensor;

use super::analysis::ParamInfo;
use super::lang::AttrLeaf;

/// A single live value must stay live this many positions past a cut.
pub const STREAM_RANGE: usize = 8;

/// Constants with at most this many elements are visible to rules.
pub const VISIBLE_ELEMENTS: usize = 16;

/// A run of operations between two cuts.
#[derive(Clone, Debug)]
pub struct Segment {
    /// The operations, in topological order.
    pub nodes: Vec<NodeId>,
    /// Values from outside the segment (graph inputs, constants, results
    /// of earlier segments), in order of first use.
    pub params: Vec<NodeId>,
    /// Indices (into `nodes`) of the values used after the segment or as
    /// graph outputs, ascending.
    pub outputs: Vec<usize>,
}

/// Splits a graph's operations into segments, in topological order.
pub fn split(graph: &Graph) -> Result<Vec<Segment>, GraphError> {
    let ops: Vec<NodeId> = graph
        .canonical_order()?
        .into_iter()
        .filter(|&id| !matches!(graph.node(id).op, Op::Input | Op::Constant(_)))
        .collect();
    let n = ops.len();
    let pos: HashMap<NodeId, usize> = ops.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let outputs: HashSet<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    // Live intervals [first position live after, last use) of every
    // counted value.
    let mut intervals = Vec::new();
    for &v in graph.inputs().iter().chain(&ops) {
        let users: Vec<usize> = graph.users(v).iter().map(|u| pos[u]).collect();
        let def = pos.get(&v).copied().unwrap_or(0);
        let last = if outputs.contains(&v) {
            n
        } else {
            match users.iter().max() {
                Some(&l) => l,
                None => continue,
            }
        };
        if is_shared_role(graph, v, &users) {
            continue;
        }
        if last > def {
            intervals.push((def, last, v));
        }
    }
    // Sweep: the values live after each position.
    intervals.sort_by_key(|&(def, _, _)| def);
    let mut next = 0;
    let mut live: BTreeSet<(usize, NodeId)> = BTreeSet::new();
    let mut cuts = Vec::new();
    for i in 0..n.saturating_sub(1) {
        while next < intervals.len() && intervals[next].0 <= i {
            live.insert((intervals[next].1, intervals[next].2));
            next += 1;
        }
        while live.first().is_some_and(|&(last, _)| last <= i) {
            live.pop_first();
        }
        let cut = match live.len() {
            0 => true,
            1 => live
                .first()
                .is_some_and(|&(last, _)| last - i >= STREAM_RANGE),
            _ => false,
        };
        if cut {
            cuts.push(i + 1);
        }
    }
    cuts.push(n);
    let mut segments = Vec::new();
    let mut start = 0;
    for end in cuts {
        if end > start {
            segments.push(segment(graph, &ops[start..end], &outputs));
            start = end;
        }
    }
    Ok(segments)
}

/// Whether `v` is read in the same role by several nodes far apart (a mask
/// or table shared by every layer).
fn is_shared_role(graph: &Graph, v: NodeId, user_positions: &[usize]) -> bool {
    let users = graph.users(v);
    if users.len() < 2 {
        return false;
    }
    let span = user_positions.iter().max().copied().unwrap_or(0)
        - user_positions.iter().min().copied().unwrap_or(0);
    if span < STREAM_RANGE {
        return false;
    }
    let role = |u: NodeId| {
        let node = graph.node(u);
        let slots: Vec<usize> = graph
            .operands(u)
            .iter()
            .enumerate()
            .filter(|(_, &o)| o == v)
            .map(|(i, _)| i)
            .collect();
        (
            node.op.mnemonic(),
            AttrLeaf::of(&node.op).text().to_string(),
            slots,
            node.ty.clone(),
        )
    };
    let first = role(users[0]);
    users[1..].iter().all(|&u| role(u) == first)
}

fn segment(graph: &Graph, nodes: &[NodeId], outputs: &HashSet<NodeId>) -> Segment {
    let inside: HashSet<NodeId> = nodes.iter().copied().collect();
    let mut params = Vec::new();
    let mut seen = HashSet::new();
    for &id in nodes {
        for o in graph.operands(id) {
            if !inside.contains(&o) && seen.insert(o) {
                params.push(o);
            }
        }
    }
    let used_outside =
        |id: NodeId| outputs.contains(&id) || graph.users(id).iter().any(|u| !inside.contains(u));
    let outputs = (0..nodes.len())
        .filter(|&i| used_outside(nodes[i]))
        .collect();
    Segment {
        nodes: nodes.to_vec(),
        params,
        outputs,
    }
}

/// Constants read by more than one segment.
pub fn shared_constants(graph: &Graph, segments: &[Segment]) -> HashSet<NodeId> {
    let mut count: HashMap<NodeId, usize> = HashMap::new();
    for s in segments {
        for &p in &s.params {
            if matches!(graph.node(p).op, Op::Constant(_)) {
                *count.entry(p).or_default() += 1;
            }
        }
    }
    count
        .into_iter()
        .filter(|&(_, c)| c > 1)
        .map(|(id, _)| id)
        .collect()
}

/// The tensor of a visible constant parameter.
fn visible_value(graph: &Graph, id: NodeId, shared: &HashSet<NodeId>) -> Option<Arc<Tensor>> {
    match &graph.node(id).op {
        Op::Constant(t) if t.numel() <= VISIBLE_ELEMENTS || shared.contains(&id) => {
            Some(Arc::clone(t))
        }
        _ => None,
    }
}

/// What the e-graph may know about each parameter of a segment.
pub fn param_infos(graph: &Graph, segment: &Segment, shared: &HashSet<NodeId>) -> Vec<ParamInfo> {
    segment
        .params
        .iter()
        .map(|&p| {
            let node = graph.node(p);
            ParamInfo {
                ty: node.ty.clone(),
                constant: matches!(node.op, Op::Constant(_)),
                value: visible_value(graph, p, shared),
            }
        })
        .collect()
}

/// The signature of a segment: equal signatures mean the segments are
/// the same computation up to the values of invisible constants.
pub fn signature(graph: &Graph, segment: &Segment, shared: &HashSet<NodeId>) -> String {
    let mut out = String::new();
    for &p in &segment.params {
        let node = graph.node(p);
        let _ = match &node.op {
            Op::Constant(t) if t.numel() <= VISIBLE_ELEMENTS => {
                write!(out, "c {} {:?};", node.ty, t.data().to_le_bytes())
            }
            Op::Constant(_) if shared.contains(&p) => write!(out, "s {};", p.index()),
            Op::Constant(_) => write!(out, "w {};", node.ty),
            _ => write!(out, "v {};", node.ty),
        };
    }
    let index: HashMap<NodeId, usize> = segment
        .nodes
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    let param: HashMap<NodeId, usize> = segment
        .params
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i))
        .collect();
    for &id in &segment.nodes {
        let node = graph.node(id);
        let refs: Vec<String> = graph
            .operands(id)
            .iter()
            .map(|o| match index.get(o) {
                Some(i) => format!("n{i}"),
                None => format!("p{}", param.get(o).copied().unwrap_or(usize::MAX)),
            })
            .collect();
        let _ = write!(
            out,
            "{}{}({}):{};",
            node.op.mnemonic(),
            AttrLeaf::of(&node.op).text(),
            refs.join(","),
            node.ty
        );
    }
    let _ = write!(out, "out{:?}", segment.outputs);
    out
}
