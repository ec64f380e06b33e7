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
use std::sync::Arc;

use crate::fold::remove_dead;
use crate::graph::{BinaryOp, FusedExpr, Graph, GraphError, NodeId, Op, UnaryOp};
use crate::tensor::{DType, Tensor};

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

/// What the `egraph` pass does after extraction: drops the quantized round
/// trips, then fuses elementwise chains. Returns the fused nodes made.
pub fn fuse_after_extraction(graph: &mut Graph) -> Result<usize, GraphError> {
    causal_masks_by_comparison(graph)?;
    routed_expert_matmuls(graph)?;
    drop_quantized_round_trips(graph)?;
    fuse_elementwise(graph)
}

/// Makes causal the attentions whose mask is `where(key_pos ≤ query_pos,
/// 0, fill)` (or `<`) of constant positions — `key_pos` varying along the
/// keys only, `query_pos` along the queries only — with `fill` ≤ -1e30,
/// when that is causal (the visible keys of query `i` are `0 ..= i + sk -
/// sq`): the mask of a long context, too large to fold into the constant
/// the `attention-causal` rule reads (an 8192-token mask has 2²⁶ values),
/// which transformers builds this way. The key positions must not
/// decrease, so each row's visible keys are a prefix, found by binary
/// search. Returns how many it changed. After extraction, not a rule:
/// the e-graph sees a mask shared by every layer as an opaque parameter.
pub fn causal_masks_by_comparison(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut changed = 0;
    for id in graph.topo_order()? {
        let Op::Attention {
            scale,
            causal: false,
        } = graph.node(id).op
        else {
            continue;
        };
        let operands = graph.operands(id);
        let [q, k, v, mask] = operands[..] else {
            continue;
        };
        let (sq, sk) = (graph.node(q).ty.shape[2], graph.node(k).ty.shape[2]);
        if !causal_comparison(graph, mask, sq, sk) {
            continue;
        }
        let name = graph.node(id).name.clone();
        graph.rename(id, format!("{name}~masked"))?;
        let causal = graph.add_node(
            name,
            Op::Attention {
                scale,
                causal: true,
            },
            &[q, k, v],
        )?;
        graph.replace_uses(id, causal);
        changed += 1;
    }
    if changed > 0 {
        remove_dead(graph)?;
    }
    Ok(changed)
}

/// Whether `mask` is a causal comparison mask (see
/// [`causal_masks_by_comparison`]).
fn causal_comparison(graph: &Graph, mask: NodeId, sq: usize, sk: usize) -> bool {
    let constant = |id: NodeId| match &graph.node(id).op {
        Op::Constant(t) => Some(t.clone()),
        _ => None,
    };
    let scalar = |id: NodeId| {
        constant(id)
            .filter(|t| t.numel() == 1 && t.dtype().is_float())
            .map(|t| t.to_f32_vec()[0])
    };
    let [cond, zero, fill] = graph.operands(mask)[..] else {
        return false;
    };
    let mshape = &graph.node(mask).ty.shape;
    if graph.node(mask).op != Op::Where
        || mshape.len() < 2
        || mshape[mshape.len() - 2..] != [sq, sk]
        || scalar(zero) != Some(0.0)
        || !scalar(fill).is_some_and(|f| f <= -1e30)
    {
        return false;
    }
    let strict = match graph.node(cond).op {
        Op::Binary(BinaryOp::LessOrEqual) => false,
        Op::Binary(BinaryOp::Less) => true,
        _ => return false,
    };
    let [keys, queries] = graph.operands(cond)[..] else {
        return false;
    };
    let (Some(keys), Some(queries)) = (constant(keys), constant(queries)) else {
        return false;
    };
    // All dimensions 1 but the one `from_end` places from the end, `n`.
    let only_axis = |shape: &[usize], from_end: usize, n: usize| {
        shape.len() >= from_end
            && shape
                .iter()
                .enumerate()
                .all(|(d, &e)| e == if shape.len() - d == from_end { n } else { 1 })
    };
    if !only_axis(keys.shape(), 1, sk) || !only_axis(queries.shape(), 2, sq) {
        return false;
    }
    let (keys, queries) = (keys.to_f64_vec(), queries.to_f64_vec());
    if keys.windows(2).any(|w| w[1] < w[0]) {
        return false;
    }
    queries.iter().enumerate().all(|(i, &q)| {
        let visible = keys.partition_point(|&k| if strict { k < q } else { k <= q });
        visible == (i + 1 + sk).saturating_sub(sq).min(sk)
    })
}

/// The most table rows a `gather_matmul` fused here indexes: the rows
/// `R · expert + r` are computed by the VPU, in f32, exact below 2²⁴.
const MAX_ROUTED_ROWS: usize = 1 << 24;

/// Fuses `matmul(gather(W, experts), x)` — the routed experts of a
/// mixture-of-experts layer as the gathered-weights export computes them
/// (`W` the constant expert table `[E, R, C]`, gathered on axis 0 by the
/// `[B]` chosen experts (any shape), `x` `[B, C, N]` with the same batch
/// dimensions) — into `gather_matmul(W as [E·R, C], rows, x)` with `rows[b,
/// r] = R · experts[b] + r`, so the chosen experts' weight rows stream
/// from the table into the MXU instead of being copied through DRAM
/// first. (A negative expert `−j` gives rows `R · (E − j) + r` once the
/// gather adds the table's `E · R` rows, as `Gather` wraps it.) Returns
/// how many it fused. After extraction, not a rule: the fused op has no
/// e-graph form that other rules would rewrite.
pub fn routed_expert_matmuls(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut fused = 0;
    for id in graph.topo_order()? {
        if !graph.contains(id) || graph.node(id).op != Op::MatMul {
            continue;
        }
        let [a, x] = graph.operands(id)[..] else {
            continue;
        };
        if graph.node(a).op != (Op::Gather { axis: 0 }) {
            continue;
        }
        let [table, experts] = graph.operands(a)[..] else {
            continue;
        };
        let (tty, ety, xty) = (
            &graph.node(table).ty,
            &graph.node(experts).ty,
            &graph.node(x).ty,
        );
        let &[e, r, c] = &tty.shape[..] else {
            continue;
        };
        let batch = ety.numel();
        let within = |dims: &[usize]| dims.len() > 2 && dims[..dims.len() - 2] == ety.shape[..];
        if !matches!(graph.node(table).op, Op::Constant(_))
            || tty.dtype != DType::F32
            || xty.dtype != DType::F32
            || !within(&xty.shape)
            || xty.shape[xty.shape.len() - 2] != c
            || e.checked_mul(r).is_none_or(|rows| rows >= MAX_ROUTED_ROWS)
        {
            continue;
        }
        let n = xty.shape[xty.shape.len() - 1];
        let idx = ety.dtype;
        let name = graph.node(id).name.clone();
        let shape = graph.node(id).ty.shape.clone();
        let int = |shape: Vec<usize>, values: Vec<i64>| {
            Tensor::from_i64_as(idx, shape, values)
                .map(Arc::new)
                .expect("an index type")
        };
        let per_expert =
            graph.add_constant(format!("{name}.expert_rows"), int(vec![], vec![r as i64]))?;
        let iota = graph.add_constant(
            format!("{name}.row_offsets"),
            int(vec![1, r], (0..r as i64).collect()),
        )?;
        let column = graph.add_node(
            format!("{name}.experts"),
            Op::Reshape {
                shape: vec![batch, 1],
            },
            &[experts],
        )?;
        let first = graph.add_node(
            format!("{name}.first_rows"),
            Op::Binary(BinaryOp::Mul),
            &[column, per_expert],
        )?;
        let rows = graph.add_node(
            format!("{name}.rows"),
            Op::Binary(BinaryOp::Add),
            &[first, iota],
        )?;
        let flat = graph.add_node(
            format!("{name}.table"),
            Op::Reshape {
                shape: vec![e * r, c],
            },
            &[table],
        )?;
        let operand = graph.add_node(
            format!("{name}.operand"),
            Op::Reshape {
                shape: vec![batch, c, n],
            },
            &[x],
        )?;
        graph.rename(id, format!("{name}~gathered"))?;
        let product = if shape == [batch, r, n] {
            graph.add_node(name, Op::GatherMatMul, &[flat, rows, operand])?
        } else {
            let product = graph.add_node(
                format!("{name}.routed"),
                Op::GatherMatMul,
                &[flat, rows, operand],
            )?;
            graph.add_node(name, Op::Reshape { shape }, &[product])?
        };
        graph.replace_uses(id, product);
        fused += 1;
    }
    if fused > 0 {
        remove_dead(graph)?;
    }
    Ok(fused)
}

/// Drops the round trips `f32(u8(y))` (and through i8) where `y` is a
/// saturated integer in the 8-bit type's range — `min(max(i, lo), hi)` with
/// `i` a `round(·)` or `round(·) + z` and `lo`, `hi`, `z` integral scalar
/// constants, which is what a QuantizeLinear computes before its cast —
/// so a quantize followed by its dequantize is one elementwise chain
/// instead of three kernels. Returns how many it dropped. (For a NaN `y`
/// the casts would give 0; NaN stays NaN.) After extraction, not a rule:
/// in the e-graph, the cheaper float chain would make the float GEMM look
/// cheaper than the integer one the 8-bit value feeds.
pub fn drop_quantized_round_trips(graph: &mut Graph) -> Result<usize, GraphError> {
    let mut dropped = 0;
    for id in graph.topo_order()? {
        if !graph.contains(id) || graph.node(id).op != (Op::Cast { to: DType::F32 }) {
            continue;
        }
        let Some(&q) = graph.operands(id).first() else {
            continue;
        };
        let range = match graph.node(q).op {
            Op::Cast { to: DType::U8 } => 0.0..=255.0,
            Op::Cast { to: DType::I8 } => -128.0..=127.0,
            _ => continue,
        };
        let Some(&y) = graph.operands(q).first() else {
            continue;
        };
        if graph.node(y).ty.dtype == DType::F32 && saturated_integer(graph, y, &range) {
            graph.replace_uses(id, y);
            dropped += 1;
        }
    }
    if dropped > 0 {
        remove_dead(graph)?;
    }
    Ok(dropped)
}

/// Whether `y` is `min(max(i, lo), hi)` as [`drop_quantized_round_trips`]
/// needs.
fn saturated_integer(graph: &Graph, y: NodeId, range: &std::ops::RangeInclusive<f32>) -> bool {
    let scalar = |id: NodeId| match &graph.node(id).op {
        Op::Constant(t) if t.numel() == 1 && t.dtype() == DType::F32 => Some(t.to_f32_vec()[0]),
        _ => None,
    };
    let bound = |id: NodeId| scalar(id).is_some_and(|v| v.fract() == 0.0 && range.contains(&v));
    let binary = |id: NodeId, b: BinaryOp| -> Option<(NodeId, NodeId)> {
        let operands = graph.operands(id);
        (graph.node(id).op == Op::Binary(b)).then(|| (operands[0], operands[1]))
    };
    let rounded = |id: NodeId| graph.node(id).op == Op::Unary(UnaryOp::Round);
    let integer = |id: NodeId| {
        rounded(id)
            || binary(id, BinaryOp::Add)
                .is_some_and(|(r, z)| rounded(r) && scalar(z).is_some_and(|v| v.fract() == 0.0))
    };
    binary(y, BinaryOp::Min).is_some_and(|(below, hi)| {
        bound(hi) && binary(below, BinaryOp::Max).is_some_and(|(i, lo)| integer(i) && bound(lo))
    })
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
        // Of the casts, only the exact widening of an 8-bit value (a
        // dequantization's first step: the kernel widens its operands as it
        // loads them) and the narrowing of an f32 into 8 bits (a
        // quantization's last: the kernel converts its result as it stores
        // it, as the cast's own kernel would) join chains.
        let operand_is = |types: &[DType]| {
            operands
                .first()
                .is_some_and(|&q| types.contains(&graph.node(q).ty.dtype))
        };
        let joins = match node.op {
            Op::Cast { to: DType::F32 } => operand_is(&[DType::U8, DType::I8]),
            Op::Cast { .. } => operand_is(&[DType::F32]),
            _ => true,
        };
        let own = match &node.op {
            Op::Elementwise { expr } => expr.clone(),
            _ if !joins => continue,
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

    /// `attention(q, k, v, where(kpos <= qpos + shift, 0, -max))` over 4
    /// queries and 6 keys, and whether it came out causal.
    fn comparison_mask(shift: i64, strict: bool, fill: f32) -> bool {
        let mut g = Graph::new("g");
        let f = |shape: &[usize]| TensorType::new(DType::F32, shape.to_vec());
        let q = g.add_input("q", f(&[1, 2, 4, 8])).expect("q");
        let k = g.add_input("k", f(&[1, 2, 6, 8])).expect("k");
        let v = g.add_input("v", f(&[1, 2, 6, 8])).expect("v");
        let positions = |name: &str, shape: &[usize], from: i64| {
            let n: usize = shape.iter().product();
            let t = Tensor::from_i64(shape, (from..from + n as i64).collect());
            (name.to_string(), Arc::new(t))
        };
        let (kn, kt) = positions("kpos", &[1, 1, 1, 6], 0);
        let (qn, qt) = positions("qpos", &[1, 1, 4, 1], 2 + shift);
        let kp = g.add_constant(kn, kt).expect("kpos");
        let qp = g.add_constant(qn, qt).expect("qpos");
        let cmp = if strict {
            BinaryOp::Less
        } else {
            BinaryOp::LessOrEqual
        };
        let cond = g.add_node("cond", Op::Binary(cmp), &[kp, qp]).expect("cmp");
        let zero = g
            .add_constant("zero", Arc::new(Tensor::from_f32(&[], vec![0.0])))
            .expect("zero");
        let fill = g
            .add_constant("fill", Arc::new(Tensor::from_f32(&[], vec![fill])))
            .expect("fill");
        let mask = g
            .add_node("mask", Op::Where, &[cond, zero, fill])
            .expect("mask");
        let attention = Op::Attention {
            scale: 0.5,
            causal: false,
        };
        let a = g
            .add_node("attn", attention, &[q, k, v, mask])
            .expect("attn");
        g.add_output("y", a);
        causal_masks_by_comparison(&mut g).expect("rewrite");
        let y = g.outputs()[0].1;
        let causal = g.node(y).op
            == Op::Attention {
                scale: 0.5,
                causal: true,
            };
        assert_eq!(g.node(y).name, "attn");
        assert_eq!(
            g.find("mask").is_none(),
            causal,
            "the mask is dropped with it"
        );
        causal
    }

    #[test]
    fn position_comparison_masks_are_recognized_only_when_causal() {
        // Query i (of 4, after 2 cached keys) sees keys 0 ..= i + 2.
        assert!(comparison_mask(0, false, f32::MIN));
        assert!(comparison_mask(1, true, -1e38));
        // One key too many or too few, or a fill the softmax does not
        // zero: not causal.
        assert!(!comparison_mask(1, false, f32::MIN));
        assert!(!comparison_mask(-1, false, f32::MIN));
        assert!(!comparison_mask(0, false, -1e4));
    }

    /// `matmul(gather(table, experts), x)` for 3 experts of `[4, 5]`
    /// weights, experts `[2, 2]`, `x` `[2, 2, 5, 3]`; the table a constant
    /// or an input.
    fn routed_experts(constant: bool) -> Graph {
        let mut g = Graph::new("g");
        let f = |shape: &[usize]| TensorType::new(DType::F32, shape.to_vec());
        let experts = g
            .add_input("experts", TensorType::new(DType::I64, vec![2, 2]))
            .expect("experts");
        let x = g.add_input("x", f(&[2, 2, 5, 3])).expect("x");
        let table = if constant {
            let w = (0..60).map(|i| ((i * 7 % 11) as f32 - 5.0) / 8.0).collect();
            g.add_constant("w", Arc::new(Tensor::from_f32(&[3, 4, 5], w)))
        } else {
            g.add_input("w", f(&[3, 4, 5]))
        }
        .expect("table");
        let picked = g
            .add_node("picked", Op::Gather { axis: 0 }, &[table, experts])
            .expect("gather");
        let y = g.add_node("y", Op::MatMul, &[picked, x]).expect("matmul");
        g.add_output("y", y);
        g
    }

    #[test]
    fn routed_expert_matmuls_gather_rows_and_compute_the_same() {
        let mut g = routed_experts(true);
        let before = g.clone();
        assert_eq!(routed_expert_matmuls(&mut g).expect("fuses"), 1);
        let routed = g.find("y.routed").expect("the fused product");
        assert_eq!(g.node(routed).op, Op::GatherMatMul);
        assert!(g.find("picked").is_none(), "the gathered copy is gone");
        assert_eq!(g.node(g.outputs()[0].1).name, "y");
        // Every expert, negative ones (counting from the end) included.
        let experts = Tensor::from_i64(&[2, 2], vec![2, -1, 0, -3]);
        let x = Tensor::from_f32(
            &[2, 2, 5, 3],
            (0..60).map(|i| (i % 9) as f32 - 4.0).collect(),
        );
        let inputs = [experts, x];
        let want = run(&before, &inputs).expect("unfused");
        let got = run(&g, &inputs).expect("fused");
        assert_eq!(got[0].to_f32_vec(), want[0].to_f32_vec());
        // An expert past the table is an error, as the gather's is.
        let bad = [
            Tensor::from_i64(&[2, 2], vec![0, 3, 1, 1]),
            inputs[1].clone(),
        ];
        assert!(run(&before, &bad).is_err() && run(&g, &bad).is_err());
    }

    #[test]
    fn routed_expert_matmuls_need_a_constant_table() {
        let mut g = routed_experts(false);
        assert_eq!(routed_expert_matmuls(&mut g).expect("runs"), 0);
        assert!(g.find("picked").is_some());
    }

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

    /// `x` quantized to `to` (scale 1/30, zero point `zp`, clipped to
    /// `lo..=hi`) and dequantized back: the graph and the outer cast.
    fn quantize_dequantize(to: DType, zp: f32, (lo, hi): (f32, f32)) -> (Graph, NodeId) {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![6]))
            .expect("x");
        let k = |g: &mut Graph, name: &str, v: f32| {
            g.add_constant(name, Arc::new(Tensor::from_f32(&[], vec![v])))
                .expect("constant")
        };
        let (r, z, l, h) = (
            k(&mut g, "r", 30.0),
            k(&mut g, "z", zp),
            k(&mut g, "lo", lo),
            k(&mut g, "hi", hi),
        );
        let at = |g: &mut Graph, name: &str, op: Op, operands: &[NodeId]| {
            g.add_node(name, op, operands).expect("node")
        };
        let scaled = at(&mut g, "scaled", Op::Binary(BinaryOp::Mul), &[x, r]);
        let rounded = at(&mut g, "rounded", Op::Unary(UnaryOp::Round), &[scaled]);
        let shifted = at(&mut g, "shifted", Op::Binary(BinaryOp::Add), &[rounded, z]);
        let low = at(&mut g, "low", Op::Binary(BinaryOp::Max), &[shifted, l]);
        let high = at(&mut g, "high", Op::Binary(BinaryOp::Min), &[low, h]);
        let q = at(&mut g, "q", Op::Cast { to }, &[high]);
        let back = at(&mut g, "back", Op::Cast { to: DType::F32 }, &[q]);
        let centered = at(&mut g, "centered", Op::Binary(BinaryOp::Sub), &[back, z]);
        g.add_output("y", centered);
        (g, back)
    }

    #[test]
    fn a_quantize_dequantize_round_trip_goes_and_values_stay() {
        let x = Tensor::from_f32(&[6], vec![-9.0, -0.3, 0.0, 0.21, 4.1, 9.0]);
        for (to, zp, range) in [
            (DType::U8, 131.0, (0.0, 255.0)),
            (DType::I8, -5.0, (-128.0, 127.0)),
        ] {
            let (mut g, back) = quantize_dequantize(to, zp, range);
            let before = g.clone();
            assert_eq!(drop_quantized_round_trips(&mut g).expect("runs"), 1);
            assert!(!g.contains(back) && g.find("q").is_none());
            let run_on = |g: &Graph| run(g, std::slice::from_ref(&x)).expect("runs");
            assert_eq!(run_on(&before), run_on(&g), "{to}");
        }
        // A clip wider than the type: the cast saturates, so it stays.
        let (mut g, _) = quantize_dequantize(DType::U8, 131.0, (0.0, 300.0));
        assert_eq!(drop_quantized_round_trips(&mut g).expect("runs"), 0);
    }

    #[test]
    fn the_8_bit_casts_of_a_quantize_and_a_dequantize_join_chains() {
        // q = u8(clip(round(x·30) + zp)) stays (an output), then
        // f32(q) − zp: the quantize is one node ending in its cast, the
        // dequantize one node starting with its widening.
        let (mut g, _) = quantize_dequantize(DType::U8, 7.0, (0.0, 255.0));
        let q = g.find("q").expect("q");
        g.add_output("q", q);
        let before = g.clone();
        fuse_elementwise(&mut g).expect("fuses");
        let word = |name: &str| match &g.node(g.find(name).expect(name)).op {
            Op::Elementwise { expr } => expr.to_word(),
            other => panic!("`{name}` not fused: {other:?}"),
        };
        assert_eq!(word("q"), "x0.x1.mul.round.x2.add.x3.max.x4.min.u8");
        assert_eq!(word("centered"), "x0.f32.x1.sub");
        // Printed and parsed back, the words are the same expressions.
        for name in ["q", "centered"] {
            let parsed = FusedExpr::parse(&word(name)).expect("parses");
            assert_eq!(parsed.to_word(), word(name));
        }
        let x = Tensor::from_f32(&[6], vec![-9.0, -0.3, 0.0, 0.21, 4.1, 9.0]);
        let (want, got) = (
            run(&before, std::slice::from_ref(&x)).expect("before"),
            run(&g, &[x]).expect("after"),
        );
        assert_eq!(want, got);
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
