//! Constant folding and dead-node elimination.
//!
//! Every operation whose operands are all constants (or empty: an empty
//! tensor's value is known, so a reduction over it folds to its identity)
//! is evaluated with the reference interpreter and becomes a constant (keeping its name), unless
//! its result has more than [`FOLD_LIMIT`] elements: folding must not blow
//! up the graph (an `expand` of a scalar to a huge mask stays an `expand`).
//! Then every node that no output depends on is removed, except graph
//! inputs, which stay so input positions do not change.
//!
//! Shape bookkeeping (`Shape`, `Size`) never reaches Graph IR: the frontend
//! turns it into constants because shapes are static. Folding then clears
//! the Gather/Concat/Cast/Where chains that exporters build from them, and
//! dead-node elimination drops the constants that only fed `reshape`'s or
//! `expand`'s (now static) shape operands.

use std::collections::HashSet;
use std::sync::Arc;

use crate::graph::{Graph, GraphError, NodeId, Op};
use crate::interp::{eval_op, InterpError};
use crate::tensor::{DType, Tensor, TensorData};

/// Results with more elements than this are not folded.
pub const FOLD_LIMIT: usize = 1 << 24;

/// What a fold run did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FoldStats {
    /// Operations replaced by constants.
    pub folded: usize,
    /// Nodes removed as dead.
    pub removed: usize,
}

/// Folds constants and removes dead nodes.
pub fn fold(graph: &mut Graph) -> Result<FoldStats, InterpError> {
    fold_except(graph, &|_, _| false)
}

/// The fold before the e-graph: [`fold`], except that the widening casts
/// of 8-bit constants stay ([`widens_8bit_constant`]).
pub fn fold_before_egraph(graph: &mut Graph) -> Result<FoldStats, InterpError> {
    fold_except(graph, &widens_8bit_constant)
}

/// [`fold`], except that nodes `keep` selects stay (and so does what only
/// they feed).
fn fold_except(
    graph: &mut Graph,
    keep: &dyn Fn(&Graph, NodeId) -> bool,
) -> Result<FoldStats, InterpError> {
    let mut stats = fold_constants(graph, keep)?;
    stats.removed += remove_dead(graph).map_err(|e| InterpError::Graph(e.to_string()))?;
    Ok(stats)
}

/// Whether `id` is the f32 (DequantizeLinear) or i32 (MatMulInteger,
/// QLinearMatMul) cast of an 8-bit integer constant of more than one
/// element (zero points fold): the start of the dequantization of quantized
/// weights. The e-graph reads the integer weights from it to run the
/// product in the MXU's integer mode, and folds the chain itself where it
/// does not.
fn widens_8bit_constant(graph: &Graph, id: NodeId) -> bool {
    let node = graph.node(id);
    matches!(
        node.op,
        Op::Cast {
            to: DType::F32 | DType::I32
        }
    ) && graph.operands(id).first().is_some_and(|&o| {
        let operand = graph.node(o);
        matches!(operand.op, Op::Constant(_))
            && matches!(operand.ty.dtype, DType::I8 | DType::U8)
            && operand.ty.numel() > 1
    })
}

/// Replaces each operation whose operands are all constants by its value
/// (unless `keep` selects it), removing the constants that only those
/// operations used.
pub fn fold_constants(
    graph: &mut Graph,
    keep: &dyn Fn(&Graph, NodeId) -> bool,
) -> Result<FoldStats, InterpError> {
    let order = graph
        .topo_order()
        .map_err(|e| InterpError::Graph(e.to_string()))?;
    let mut stats = FoldStats::default();
    for id in order {
        let node = graph.node(id);
        if matches!(node.op, Op::Input | Op::Constant(_))
            || node.ty.numel() > FOLD_LIMIT
            || keep(graph, id)
        {
            continue;
        }
        let operands = graph.operands(id);
        let mut values = Vec::with_capacity(operands.len());
        for &operand in &operands {
            let producer = graph.node(operand);
            match &producer.op {
                Op::Constant(t) => values.push(Arc::clone(t)),
                // An empty tensor's value is known whatever produces it.
                _ if producer.ty.numel() == 0 => {
                    let empty = TensorData::from_le_bytes(producer.ty.dtype, &[])
                        .and_then(|data| Tensor::new(producer.ty.shape.clone(), data));
                    match empty {
                        Some(t) => values.push(Arc::new(t)),
                        None => break,
                    }
                }
                _ => break,
            }
        }
        if values.len() != operands.len() {
            continue;
        }
        let refs: Vec<_> = values.iter().map(|v| v.as_ref()).collect();
        let value = eval_op(&node.op, &refs, &node.ty).map_err(|message| InterpError::Node {
            node: node.name.clone(),
            op: node.op.mnemonic().to_string(),
            message,
        })?;
        graph.replace_with_constant(id, Arc::new(value));
        stats.folded += 1;
        // A constant whose every user is now folded is dead: dropping it
        // here keeps a folded chain's memory at a few tensors rather than
        // one per link until dead-node elimination.
        drop(values);
        let mut operands = operands;
        operands.sort_unstable();
        operands.dedup();
        for operand in operands {
            let dead = !graph.outputs().iter().any(|&(_, o)| o == operand)
                && graph.users(operand).is_empty()
                && matches!(graph.node(operand).op, Op::Constant(_));
            if dead {
                graph.remove_node(operand);
                stats.removed += 1;
            }
        }
    }
    Ok(stats)
}

/// Removes nodes that no graph output depends on (graph inputs stay).
pub fn remove_dead(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut live: HashSet<NodeId> = graph.inputs().iter().copied().collect();
    let mut stack: Vec<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    while let Some(id) = stack.pop() {
        if live.insert(id) {
            stack.extend(graph.operands(id).into_iter().filter(|o| !live.contains(o)));
        }
    }
    let dead: HashSet<NodeId> = graph
        .node_ids()
        .into_iter()
        .filter(|id| !live.contains(id))
        .collect();
    graph.remove_nodes(&dead);
    Ok(dead.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BinaryOp, TensorType, UnaryOp};
    use crate::tensor::Tensor;

    #[test]
    fn a_folded_chain_keeps_only_its_last_link() {
        let mut g = Graph::new("g");
        let c = g
            .add_constant("c", Arc::new(Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0])))
            .expect("c");
        let mut y = c;
        for i in 0..10 {
            y = g
                .add_node(format!("add{i}"), Op::Binary(BinaryOp::Add), &[y, c])
                .expect("add");
        }
        g.add_output("y", y);
        let stats = fold_constants(&mut g, &|_, _| false).expect("folds");
        // Each link's constant goes as soon as the next link is folded, not
        // at dead-node elimination; `c` goes with the last: only the result
        // is left.
        assert_eq!(
            stats,
            FoldStats {
                folded: 10,
                removed: 10
            }
        );
        assert_eq!(g.node_ids().len(), 1);
        match &g.node(g.find("add9").expect("result")).op {
            Op::Constant(t) => assert_eq!(t.to_f32_vec(), vec![11.0, 22.0, 33.0]),
            other => panic!("not folded: {other:?}"),
        }
    }

    #[test]
    fn constant_subgraphs_fold_and_dead_nodes_go() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        let a = g
            .add_constant("a", Arc::new(Tensor::from_f32(&[2], vec![1.0, 4.0])))
            .expect("a");
        let s = g
            .add_node("sqrt", Op::Unary(UnaryOp::Sqrt), &[a])
            .expect("sqrt");
        let y = g
            .add_node("y", Op::Binary(BinaryOp::Mul), &[x, s])
            .expect("mul");
        let _unused = g
            .add_node("unused", Op::Unary(UnaryOp::Neg), &[x])
            .expect("neg");
        g.add_output("y", y);
        let stats = fold(&mut g).expect("folds");
        assert_eq!(
            stats,
            FoldStats {
                folded: 1,
                removed: 2
            }
        );
        let sqrt = g.find("sqrt").expect("kept its name");
        match &g.node(sqrt).op {
            Op::Constant(t) => assert_eq!(t.to_f32_vec(), vec![1.0, 2.0]),
            other => panic!("not folded: {other:?}"),
        }
        assert!(g.find("unused").is_none() && g.find("a").is_none());
        assert_eq!(g.inputs(), &[x]);
    }

    #[test]
    fn reductions_over_empty_inputs_fold_to_their_identity() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::Bool, vec![2, 0, 4]))
            .expect("x");
        let max = g
            .add_node(
                "max",
                Op::Reduce {
                    kind: crate::graph::ReduceKind::Max,
                    axes: vec![1],
                    keep_dims: true,
                },
                &[x],
            )
            .expect("reduce");
        g.add_output("max", max);
        assert_eq!(fold(&mut g).expect("folds").folded, 1);
        match &g.node(max).op {
            Op::Constant(t) => {
                assert_eq!(t.shape(), &[2, 1, 4]);
                assert_eq!(t.to_f32_vec(), vec![0.0; 8], "max over nothing is false");
            }
            other => panic!("not folded: {other:?}"),
        }
        assert_eq!(g.inputs(), &[x], "the empty input stays an input");
    }

    #[test]
    fn large_results_stay_unfolded() {
        let mut g = Graph::new("g");
        let one = g
            .add_constant("one", Arc::new(Tensor::from_f32(&[], vec![1.0])))
            .expect("c");
        let big = g
            .add_node(
                "big",
                Op::Expand {
                    shape: vec![FOLD_LIMIT + 1],
                },
                &[one],
            )
            .expect("expand");
        g.add_output("big", big);
        assert_eq!(fold(&mut g).expect("ok").folded, 0);
        assert!(matches!(g.node(big).op, Op::Expand { .. }));
    }
}
