//! Fusing elementwise chains into `elementwise` nodes (one kernel each).
//!
//! Runs after e-graph extraction, on the chosen graph. An elementwise op
//! (unary, binary, `gelu`, `where`, or an `elementwise` node) takes in a
//! producer that is itself elementwise when the producer's result is f32 or
//! bool (the fused kernel keeps intermediates in f32, where a bool is
//! exactly 0 or 1), has the consumer's shape
//! (nothing is recomputed per broadcast copy), is not a graph output and is
//! used by nothing else (its value is never stored). Chains form bottom-up
//! in topological order, so a whole tree of such ops becomes one node,
//! named after its root, up to [`MAX_FUSED_OPS`] ops: a longer chain
//! becomes several nodes, so each expression (a tree that typing, lowering
//! and printing walk recursively) stays small and fusing a chain of N ops
//! costs O(N), not O(N²). This is a separate pass rather than an e-graph
//! rule because merging a single-use chain never changes what else is
//! optimal, and a variadic expression node matches no fixed-arity pattern.

use std::collections::{HashMap, HashSet};

use crate::fold::remove_dead;
use crate::graph::{FusedExpr, Graph, GraphError, NodeId, Op};
use crate::tensor::DType;

/// The most ops one fused node computes. Beyond a few dozen ops a kernel
/// gains nothing from more fusion (its DMA is already amortized) and only
/// grows its code.
pub const MAX_FUSED_OPS: usize = 64;

/// A node's expression over its leaves so far.
struct Chain {
    expr: FusedExpr,
    leaves: Vec<NodeId>,
    /// Ops in `expr`.
    ops: usize,
}

/// `expr` with its operands renumbered into `leaves` (added as needed).
fn rebase(expr: &FusedExpr, own: &[NodeId], leaves: &mut Vec<NodeId>) -> FusedExpr {
    match expr {
        FusedExpr::Input(i) => FusedExpr::Input(leaf(own[*i], leaves)),
        FusedExpr::Apply(op, args) => FusedExpr::Apply(
            op.clone(),
            args.iter().map(|a| rebase(a, own, leaves)).collect(),
        ),
    }
}

fn leaf(id: NodeId, leaves: &mut Vec<NodeId>) -> usize {
    match leaves.iter().position(|&l| l == id) {
        Some(i) => i,
        None => {
            leaves.push(id);
            leaves.len() - 1
        }
    }
}

/// Fuses elementwise chains; returns how many fused nodes it made.
pub fn fuse_elementwise(graph: &mut Graph) -> Result<usize, GraphError> {
    let outputs: HashSet<NodeId> = graph.outputs().iter().map(|(_, id)| *id).collect();
    let mut chains: HashMap<NodeId, Chain> = HashMap::new();
    let mut inlined: HashSet<NodeId> = HashSet::new();
    let mut roots: Vec<NodeId> = Vec::new();
    for id in graph.topo_order()? {
        let node = graph.node(id);
        let operands = graph.operands(id);
        let own = match &node.op {
            Op::Elementwise { expr } => expr.clone(),
            op if FusedExpr::fusable(op) => FusedExpr::Apply(
                Box::new(op.clone()),
                (0..operands.len()).map(FusedExpr::Input).collect(),
            ),
            _ => continue,
        };
        let mut ops = own.ops().len();
        let mut leaves = Vec::new();
        let mut fused_any = false;
        // Each operand position becomes either the producer's chain or a leaf.
        let mut parts: Vec<FusedExpr> = Vec::with_capacity(operands.len());
        for &o in &operands {
            let producer = graph.node(o);
            let takes = chains.contains_key(&o)
                && !outputs.contains(&o)
                && matches!(producer.ty.dtype, DType::F32 | DType::Bool)
                && producer.ty.shape == node.ty.shape
                && graph.users(o).iter().all(|&u| u == id)
                && ops + chains[&o].ops <= MAX_FUSED_OPS;
            if takes {
                let chain = &chains[&o];
                ops += chain.ops;
                parts.push(rebase(&chain.expr, &chain.leaves, &mut leaves));
                inlined.insert(o);
                fused_any = true;
            } else {
                parts.push(FusedExpr::Input(leaf(o, &mut leaves)));
            }
        }
        let expr = substitute(&own, &parts);
        if fused_any {
            roots.push(id);
        }
        chains.insert(id, Chain { expr, leaves, ops });
    }
    let roots: Vec<NodeId> = roots.into_iter().filter(|r| !inlined.contains(r)).collect();
    // A root may be a leaf of a later one: leaves follow replacements.
    let mut replaced: HashMap<NodeId, NodeId> = HashMap::new();
    for &root in &roots {
        let chain = &chains[&root];
        let leaves: Vec<NodeId> = chain
            .leaves
            .iter()
            .map(|l| replaced.get(l).copied().unwrap_or(*l))
            .collect();
        let name = graph.node(root).name.clone();
        let mut temporary = format!("{name}.fused");
        while graph.find(&temporary).is_some() {
            temporary.push('_');
        }
        let op = Op::Elementwise {
            expr: chain.expr.clone(),
        };
        let fused = graph.add_node(temporary, op, &leaves)?;
        graph.replace_uses(root, fused);
        graph.remove_node(root);
        graph.rename(fused, name)?;
        replaced.insert(root, fused);
    }
    remove_dead(graph)?;
    Ok(roots.len())
}

/// `expr` with operand `i` replaced by `parts[i]`.
fn substitute(expr: &FusedExpr, parts: &[FusedExpr]) -> FusedExpr {
    match expr {
        FusedExpr::Input(i) => parts[*i].clone(),
        FusedExpr::Apply(op, args) => FusedExpr::Apply(
            op.clone(),
            args.iter().map(|a| substitute(a, parts)).collect(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::graph::{BinaryOp, TensorType, UnaryOp};
    use crate::interp::run;
    use crate::tensor::Tensor;

    #[test]
    fn single_use_chains_fuse_and_compute_the_same() {
        let mut g = Graph::new("g");
        let f = |shape: &[usize]| TensorType::new(DType::F32, shape.to_vec());
        let x = g.add_input("x", f(&[2, 3])).expect("x");
        let y = g.add_input("y", f(&[2, 3])).expect("y");
        let c = g
            .add_constant("c", Arc::new(Tensor::from_f32(&[], vec![0.5])))
            .expect("c");
        let a = g
            .add_node("a", Op::Binary(BinaryOp::Sub), &[x, y])
            .expect("a");
        let b = g
            .add_node("b", Op::Binary(BinaryOp::Mul), &[a, c])
            .expect("b");
        let e = g.add_node("e", Op::Unary(UnaryOp::Exp), &[b]).expect("e");
        // `shared` has two users: it stays a node of its own.
        let shared = g
            .add_node("shared", Op::Unary(UnaryOp::Neg), &[x])
            .expect("shared");
        let s = g
            .add_node("s", Op::Binary(BinaryOp::Add), &[e, shared])
            .expect("s");
        let t = g
            .add_node("t", Op::Binary(BinaryOp::Mul), &[shared, y])
            .expect("t");
        g.add_output("s", s);
        g.add_output("t", t);
        let before = g.clone();
        assert_eq!(fuse_elementwise(&mut g).expect("fuses"), 1);
        let fused = g.find("s").expect("keeps the root's name");
        match &g.node(fused).op {
            Op::Elementwise { expr } => {
                assert_eq!(expr.to_word(), "x0.x1.sub.x2.mul.exp.x3.add");
            }
            other => panic!("not fused: {other:?}"),
        }
        assert!(g.find("a").is_none() && g.find("e").is_none());
        assert!(matches!(
            g.node(g.find("shared").expect("kept")).op,
            Op::Unary(_)
        ));
        let inputs = [
            Tensor::from_f32(&[2, 3], vec![1.0, -2.0, 0.5, 3.0, 0.0, -1.5]),
            Tensor::from_f32(&[2, 3], vec![0.25, 1.0, -0.5, 2.0, 4.0, 1.0]),
        ];
        let (want, got) = (
            run(&before, &inputs).expect("before"),
            run(&g, &inputs).expect("after"),
        );
        assert_eq!(want, got, "bit for bit the same values");
    }

    #[test]
    fn long_chains_fuse_in_pieces_of_at_most_max_fused_ops() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![4]))
            .expect("x");
        let mut y = x;
        let length = 3 * MAX_FUSED_OPS + 5;
        for i in 0..length {
            let op = match i % 2 {
                0 => Op::Unary(UnaryOp::Neg),
                _ => Op::Unary(UnaryOp::Abs),
            };
            y = g.add_node(format!("n{i}"), op, &[y]).expect("node");
        }
        g.add_output("y", y);
        let before = g.clone();
        assert_eq!(fuse_elementwise(&mut g).expect("fuses"), 4);
        let sizes: Vec<usize> = g
            .node_ids()
            .into_iter()
            .filter_map(|id| match &g.node(id).op {
                Op::Elementwise { expr } => Some(expr.ops().len()),
                _ => None,
            })
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), length);
        assert!(sizes.iter().all(|&n| n <= MAX_FUSED_OPS), "{sizes:?}");
        let input = [Tensor::from_f32(&[4], vec![1.0, -2.0, 0.5, -0.0])];
        assert_eq!(
            run(&before, &input).expect("before"),
            run(&g, &input).expect("after")
        );
    }

    #[test]
    fn bool_intermediates_fuse() {
        let mut g = Graph::new("g");
        let f = TensorType::new(DType::F32, vec![4]);
        let x = g.add_input("x", f.clone()).expect("x");
        let y = g.add_input("y", f).expect("y");
        let lt = g
            .add_node("lt", Op::Binary(BinaryOp::Less), &[x, y])
            .expect("lt");
        let not = g
            .add_node("not", Op::Unary(UnaryOp::Not), &[lt])
            .expect("not");
        let w = g.add_node("w", Op::Where, &[not, x, y]).expect("where");
        g.add_output("w", w);
        let before = g.clone();
        assert_eq!(fuse_elementwise(&mut g).expect("ok"), 1);
        match &g.node(g.find("w").expect("w")).op {
            Op::Elementwise { expr } => assert_eq!(expr.to_word(), "x0.x1.less.not.x0.x1.where"),
            other => panic!("{other:?}"),
        }
        let inputs = [
            Tensor::from_f32(&[4], vec![1.0, 2.0, 3.0, 4.0]),
            Tensor::from_f32(&[4], vec![4.0, 2.0, 1.0, 5.0]),
        ];
        assert_eq!(
            run(&before, &inputs).expect("a"),
            run(&g, &inputs).expect("b")
        );
    }

    #[test]
    fn broadcast_and_non_f32_producers_stay_separate() {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![3]))
            .expect("x");
        let m = g
            .add_input("m", TensorType::new(DType::F32, vec![2, 3]))
            .expect("m");
        // Broadcast: [3] feeding a [2, 3] result.
        let n = g.add_node("n", Op::Unary(UnaryOp::Neg), &[x]).expect("n");
        let a = g
            .add_node("a", Op::Binary(BinaryOp::Add), &[n, m])
            .expect("a");
        // An integer intermediate.
        let i = g
            .add_node("i", Op::Cast { to: DType::I32 }, &[a])
            .expect("i");
        let ni = g.add_node("ni", Op::Unary(UnaryOp::Neg), &[i]).expect("ni");
        let back = g
            .add_node("back", Op::Cast { to: DType::I64 }, &[ni])
            .expect("back");
        g.add_output("back", back);
        let k = g
            .add_input("k", TensorType::new(DType::I32, vec![2, 3]))
            .expect("k");
        let ik = g
            .add_node("ik", Op::Binary(BinaryOp::Add), &[k, k])
            .expect("ik");
        let nk = g
            .add_node("nk", Op::Unary(UnaryOp::Neg), &[ik])
            .expect("nk");
        g.add_output("nk", nk);
        assert_eq!(fuse_elementwise(&mut g).expect("ok"), 0);
        assert!(g.find("n").is_some() && g.find("ik").is_some());
    }
}
