//! Layout absorption: transposes, slices and reshapes that never move data.
//!
//! A layout op whose every consumer can read a strided operand (fused
//! attention's Q, K and V, or another such layout op) becomes *virtual*:
//! no kernel and no storage; its consumers read the original tensor through
//! a strided [`View`]. On the producer side, when fused attention's only
//! user is a transpose, the attention writes its output straight into the
//! transpose's storage in the transposed layout. Together these remove the
//! head split and merge copies of multi-head attention.

use std::collections::{HashMap, HashSet};

use crate::graph::{Graph, NodeId, Op};

/// A strided view of a node's storage: element offset, sizes and element
/// strides.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct View {
    /// The node that owns the storage.
    pub root: NodeId,
    /// Element offset from the storage's start.
    pub offset: i64,
    /// Sizes (the viewed node's shape).
    pub sizes: Vec<usize>,
    /// Element strides.
    pub strides: Vec<i64>,
}

/// Dense row-major element strides.
fn dense(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d] as i64;
    }
    s
}

/// The view after reshaping to `shape`, when no copy is needed: every
/// group of dimensions merged or split must be contiguous in the view.
pub fn reshape_view(v: &View, shape: &[usize]) -> Option<View> {
    // Size-1 dimensions carry no layout: drop them on both sides.
    let dims: Vec<(usize, i64)> = v
        .sizes
        .iter()
        .copied()
        .zip(v.strides.iter().copied())
        .filter(|(n, _)| *n != 1)
        .collect();
    let out: Vec<usize> = (0..shape.len()).filter(|&k| shape[k] != 1).collect();
    let mut strides = vec![0i64; shape.len()];
    let (mut i, mut j) = (0usize, 0usize);
    while i < dims.len() && j < out.len() {
        let (i0, j0) = (i, j);
        let (mut pi, mut pj) = (dims[i].0, shape[out[j]]);
        i += 1;
        j += 1;
        while pi != pj {
            if pi < pj {
                pi *= dims.get(i)?.0;
                i += 1;
            } else {
                pj *= shape[*out.get(j)?];
                j += 1;
            }
        }
        // The merged input dims must be contiguous with each other.
        if (i0..i - 1).any(|k| dims[k].1 != dims[k + 1].1 * dims[k + 1].0 as i64) {
            return None;
        }
        let mut stride = dims[i - 1].1;
        for &k in out[j0..j].iter().rev() {
            strides[k] = stride;
            stride *= shape[k] as i64;
        }
    }
    (i == dims.len() && j == out.len()).then(|| View {
        root: v.root,
        offset: v.offset,
        sizes: shape.to_vec(),
        strides,
    })
}

fn is_layout(op: &Op) -> bool {
    matches!(
        op,
        Op::Transpose { .. } | Op::Slice { .. } | Op::Reshape { .. }
    )
}

/// The view of a layout node's value given its operand's view.
fn apply(graph: &Graph, id: NodeId, input: &View) -> Option<View> {
    let node = graph.node(id);
    match &node.op {
        Op::Transpose { perm } => Some(View {
            root: input.root,
            offset: input.offset,
            sizes: perm.iter().map(|&p| input.sizes[p]).collect(),
            strides: perm.iter().map(|&p| input.strides[p]).collect(),
        }),
        Op::Slice { starts, steps, .. } => Some(View {
            root: input.root,
            offset: input.offset
                + starts
                    .iter()
                    .zip(&input.strides)
                    .map(|(s, st)| s * st)
                    .sum::<i64>(),
            sizes: node.ty.shape.clone(),
            strides: steps
                .iter()
                .zip(&input.strides)
                .map(|(k, st)| k * st)
                .collect(),
        }),
        Op::Reshape { .. } => reshape_view(input, &node.ty.shape),
        _ => None,
    }
}

/// Layout absorption decisions for a graph.
#[derive(Debug, Default)]
pub struct Views {
    /// Layout nodes with no kernel and no storage.
    pub virtuals: HashSet<NodeId>,
    /// Attention nodes that write into the storage of their only user, a
    /// transpose: attention → transpose.
    pub produces_into: HashMap<NodeId, NodeId>,
}

impl Views {
    /// Decides which layout ops to absorb.
    pub fn analyze(graph: &Graph, order: &[NodeId]) -> Views {
        let outputs: HashSet<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
        let mut views = Views::default();
        let accepts = |user: NodeId, operand: NodeId, virtuals: &HashSet<NodeId>| -> bool {
            let u = graph.node(user);
            match &u.op {
                Op::Attention { .. } => graph.operands(user).iter().take(3).any(|&o| o == operand),
                _ => virtuals.contains(&user),
            }
        };
        // Start optimistic, then remove nodes until every virtual node's
        // users accept views.
        let mut candidates: HashSet<NodeId> = order
            .iter()
            .copied()
            .filter(|&id| {
                is_layout(&graph.node(id).op)
                    && !outputs.contains(&id)
                    && !graph.users(id).is_empty()
            })
            .collect();
        loop {
            let before = candidates.len();
            let snapshot = candidates.clone();
            candidates.retain(|&id| graph.users(id).iter().all(|&u| accepts(u, id, &snapshot)));
            if candidates.len() == before {
                break;
            }
        }
        // Keep only those whose view is representable and, where attention
        // reads it, contiguous along D.
        views.virtuals = candidates;
        loop {
            let mut drop = None;
            for &id in order {
                if !views.virtuals.contains(&id) {
                    continue;
                }
                let ok = match views.view(graph, id) {
                    Some(v) => graph.users(id).iter().all(|&u| {
                        !matches!(graph.node(u).op, Op::Attention { .. })
                            || (v.sizes.len() == 4 && v.strides[3] == 1)
                    }),
                    None => false,
                };
                if !ok {
                    drop = Some(id);
                    break;
                }
            }
            match drop {
                Some(id) => {
                    views.virtuals.remove(&id);
                    // Its virtual operands now feed a real node: re-check.
                    let snapshot = views.virtuals.clone();
                    views
                        .virtuals
                        .retain(|&v| graph.users(v).iter().all(|&u| accepts(u, v, &snapshot)));
                }
                None => break,
            }
        }
        for &id in order {
            if !matches!(graph.node(id).op, Op::Attention { .. }) || outputs.contains(&id) {
                continue;
            }
            let users = graph.users(id);
            if let [t] = users.as_slice() {
                if matches!(graph.node(*t).op, Op::Transpose { .. }) && !views.virtuals.contains(t)
                {
                    views.produces_into.insert(id, *t);
                }
            }
        }
        views
    }

    /// The storage-owning node behind `id` (through virtual nodes and
    /// dense reshapes).
    pub fn root(&self, graph: &Graph, mut id: NodeId) -> NodeId {
        loop {
            let node = graph.node(id);
            let through = self.virtuals.contains(&id) || matches!(node.op, Op::Reshape { .. });
            match (through, graph.operands(id).first()) {
                (true, Some(&op)) => id = op,
                _ => return id,
            }
        }
    }

    /// The view through which `id`'s value is read.
    pub fn view(&self, graph: &Graph, id: NodeId) -> Option<View> {
        let node = graph.node(id);
        if self.virtuals.contains(&id) || matches!(node.op, Op::Reshape { .. }) {
            let op = *graph.operands(id).first()?;
            let input = self.view(graph, op)?;
            return apply(graph, id, &input);
        }
        Some(View {
            root: id,
            offset: 0,
            sizes: node.ty.shape.clone(),
            strides: dense(&node.ty.shape),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use petgraph::stable_graph::NodeIndex;

    #[test]
    fn splitting_a_contiguous_dim_keeps_strides() {
        // A slice [1, 128, 768] of a [1, 128, 2304] tensor, reshaped to heads.
        let v = View {
            root: NodeIndex::new(0),
            offset: 768,
            sizes: vec![1, 128, 768],
            strides: vec![294912, 2304, 1],
        };
        let r = reshape_view(&v, &[1, 128, 12, 64]).expect("representable");
        assert_eq!(r.strides, vec![0, 2304, 64, 1]);
        assert_eq!(r.offset, 768);
    }

    #[test]
    fn merging_non_contiguous_dims_is_refused() {
        let v = View {
            root: NodeIndex::new(0),
            offset: 0,
            sizes: vec![4, 8],
            strides: vec![16, 1],
        };
        assert!(reshape_view(&v, &[32]).is_none());
        let dense = View {
            root: NodeIndex::new(0),
            offset: 0,
            sizes: vec![4, 8],
            strides: vec![8, 1],
        };
        assert_eq!(
            reshape_view(&dense, &[32]).map(|v| v.strides),
            Some(vec![1])
        );
    }
}
