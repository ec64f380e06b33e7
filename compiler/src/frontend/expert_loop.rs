//! The expert loop of a mixture-of-experts layer as tracing exports it
//! (transformers' `experts_implementation="eager"`, Mixtral, Qwen2-MoE,
//! DeepSeek-V3): a data-dependent loop made static.
//!
//! ```text
//! hit   = NonZero(sum(one_hot(topk_index)) > 0)     # the experts used
//! for e in hit:                                     # unrolled at trace
//!     k, t = NonZero(one_hot(topk_index)[e])        # its (slot, token) pairs
//!     y    = expert_e(x[t]) * weight[t, k]
//!     acc  = acc + ScatterElements(zeros, t, y)     # index_add_
//! ```
//!
//! Every `NonZero` there decides a shape from run-time values. Tessera
//! compiles it with static shapes by enumerating *every* position instead
//! of the nonzero ones — every expert, every token — and masking what the
//! real loop would not have computed:
//!
//! - the outer `NonZero` (the experts hit) becomes all experts, when the
//!   trace unrolled the loop once per expert (its `Split` has as many
//!   pieces as there are experts; otherwise the export itself only runs on
//!   inputs that hit exactly the traced number of experts, and it is
//!   refused, naming the node);
//! - an inner `NonZero` over an expert's `[slots, tokens]` mask becomes one
//!   position per token: every token, with the slot it routes to the
//!   expert from (`Σ_k k · mask[k, t]`; a token uses an expert in at most
//!   one of its top-k slots, and slot 0 for the tokens it does not);
//! - the `ScatterElements` that adds the expert's rows into zeros, its
//!   indices now every token in order, becomes the rows times whether the
//!   expert serves the token (`Σ_k mask[k, t]`, 0 or 1) — exactly the
//!   scatter-add of the tokens the real loop had.
//!
//! The result equals the traced loop wherever that runs (the masked terms
//! add exact zeros, given finite activations), but every expert computes
//! over every token: `experts / top-k ×` the routed MACs. The
//! gathered-weights export (`experts_implementation="batched_mm"`) runs
//! only the routed experts of each token.
//!
//! The rewrite applies only when it is exact by construction: every value
//! computed from the `NonZero` flows into such a `ScatterElements` (nothing
//! else sees the enumerated rows), and the converters check the shapes and
//! the index values when they build it.

use std::collections::{HashMap, HashSet};

use onnx_protobuf::NodeProto;

/// What the analysis found, by node index.
#[derive(Debug, Default)]
pub struct ExpertLoops {
    /// `NonZero` nodes enumerated over all positions, with the number of
    /// pieces the loop's `Split` makes of the count (the outer loop), if
    /// it splits the count.
    pub expand: HashMap<usize, Option<usize>>,
    /// For an outer loop's `NonZero` over `one_hot(TopK(x).indices) …`:
    /// the `TopK` operand `x` and the axis it selects along (the experts
    /// that can be hit are `0 .. x.shape[axis]`).
    pub routed: HashMap<usize, (String, i64)>,
    /// `ScatterElements` nodes masked, with the `NonZero` whose operand is
    /// their mask.
    pub masked: HashMap<usize, usize>,
}

/// The part a node plays in an expert loop, for its converter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExpertRole {
    /// A `NonZero` enumerated over every position; `pieces`: how many the
    /// traced loop splits the count into (must equal the positions).
    Enumerate {
        /// The `Split`'s pieces of the count, for the outer loop.
        pieces: Option<usize>,
        /// How many experts the router can choose (the classes past them,
        /// a one-hot's padding class, are never hit).
        experts: Option<usize>,
    },
    /// A `ScatterElements` adding an expert's rows, masked by this value
    /// (the inner `NonZero`'s operand, in Graph IR).
    MaskedScatter(crate::graph::NodeId),
}

/// Finds the expert loops among `nodes`.
pub fn find(nodes: &[NodeProto]) -> ExpertLoops {
    let mut consumers: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, n) in nodes.iter().enumerate() {
        for input in n.input.iter().filter(|s| !s.is_empty()) {
            consumers.entry(input.as_str()).or_default().push(i);
        }
    }
    let users = |i: usize| -> Vec<usize> {
        let mut out: Vec<usize> = nodes[i]
            .output
            .iter()
            .filter_map(|o| consumers.get(o.as_str()))
            .flatten()
            .copied()
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    };
    let mut found = ExpertLoops::default();
    // Each NonZero's closure, computed once.
    let closures: Vec<(usize, Vec<usize>, Option<usize>)> = (0..nodes.len())
        .filter(|&i| nodes[i].op_type == "NonZero")
        .filter_map(|nz| closure(nodes, nz, &users).map(|(s, p)| (nz, s, p)))
        .collect();
    // The inner loops first: a NonZero whose coordinates index a
    // ScatterElements into zeros, and nothing else.
    for (nz, scatters, pieces) in &closures {
        let indexed = scatters
            .iter()
            .filter(|&&s| index_source(nodes, s) == Some(*nz))
            .count();
        if pieces.is_none() && indexed > 0 && indexed == scatters.len() {
            found.expand.insert(*nz, None);
            for &s in scatters {
                found.masked.insert(s, *nz);
            }
        }
    }
    // The outer loop: a NonZero whose values reach only inner loops'
    // masked scatters.
    for (nz, scatters, pieces) in &closures {
        if pieces.is_some()
            && !scatters.is_empty()
            && scatters.iter().all(|s| found.masked.contains_key(s))
        {
            found.expand.insert(*nz, *pieces);
            if let Some(routed) = router(nodes, *nz) {
                found.routed.insert(*nz, routed);
            }
        }
    }
    found
}

/// The nodes computed from `start`'s output, stopping at the
/// `ScatterElements` nodes whose data does not depend on it: those
/// scatters, if nothing else computed from `start` escapes (is used by a
/// node outside, or is a graph output — a value with no users), and the
/// number of pieces a `Split` along axis 0 right after a `Transpose`
/// makes of `start`'s count, if it does.
fn closure(
    nodes: &[NodeProto],
    start: usize,
    users: &dyn Fn(usize) -> Vec<usize>,
) -> Option<(Vec<usize>, Option<usize>)> {
    let mut inside = HashSet::from([start]);
    let mut scatters = HashSet::new();
    let mut stack = vec![start];
    let mut order = Vec::new();
    while let Some(i) = stack.pop() {
        order.push(i);
        for u in users(i) {
            if inside.contains(&u) || scatters.contains(&u) {
                continue;
            }
            let n = &nodes[u];
            if n.op_type == "ScatterElements" {
                scatters.insert(u);
                continue;
            }
            inside.insert(u);
            stack.push(u);
        }
    }
    // A scatter whose data depends on `start` is not a boundary.
    if scatters.iter().any(|&s| match nodes[s].input.first() {
        Some(data) => produced_inside(nodes, &inside, data),
        None => true,
    }) {
        return None;
    }
    // Nothing escapes: every computed value has users, all inside.
    for &i in &order {
        let u = users(i);
        if u.is_empty()
            || u.iter()
                .any(|x| !inside.contains(x) && !scatters.contains(x))
        {
            return None;
        }
    }
    let pieces = users(start)
        .into_iter()
        .filter(|&t| nodes[t].op_type == "Transpose")
        .flat_map(&users)
        .find(|&s| nodes[s].op_type == "Split" && int_attr(&nodes[s], "axis").unwrap_or(0) == 0)
        .map(|s| nodes[s].output.len());
    let mut scatters: Vec<usize> = scatters.into_iter().collect();
    scatters.sort_unstable();
    Some((scatters, pieces))
}

fn produced_inside(nodes: &[NodeProto], inside: &HashSet<usize>, value: &str) -> bool {
    inside
        .iter()
        .any(|&i| nodes[i].output.iter().any(|o| o == value))
}

/// The `NonZero` whose token coordinates a scatter's indices are: the
/// indices are `Transpose(NonZero(mask), [1, 0])` split in two along axis 1,
/// its second part (the coordinate along the mask's last axis, the token),
/// then only reshaped (Squeeze, Unsqueeze, Expand, Reshape, Cast). The
/// converters rely on it: the indices of such a scatter are every token in
/// order once the `NonZero` is enumerated per token.
fn index_source(nodes: &[NodeProto], scatter: usize) -> Option<usize> {
    let mut value = nodes[scatter].input.get(1)?.clone();
    let mut split = false;
    for _ in 0..16 {
        let p = nodes.iter().position(|n| n.output.contains(&value))?;
        let n = &nodes[p];
        match n.op_type.as_str() {
            "Unsqueeze" | "Squeeze" | "Expand" | "Reshape" | "Cast" if !split => {}
            "Split" if !split => {
                let second = n.output.len() == 2 && n.output[1] == value;
                if !second || int_attr(n, "axis") != Some(1) {
                    return None;
                }
                split = true;
            }
            "Transpose" if split => {
                let perm = n.attribute.iter().find(|a| a.name == "perm")?;
                let source = n.input.first()?;
                let producer = nodes.iter().position(|m| m.output.contains(source))?;
                let nonzero = nodes[producer].op_type == "NonZero";
                return (perm.ints == [1, 0] && nonzero).then_some(producer);
            }
            _ => return None,
        }
        value = n.input.first()?.clone();
    }
    None
}

/// `NonZero(Greater(ReduceSum(Transpose(OneHot(TopK(x).indices)))))`:
/// `x` and the TopK's axis.
fn router(nodes: &[NodeProto], nz: usize) -> Option<(String, i64)> {
    let producer = |value: &str| nodes.iter().find(|n| n.output.iter().any(|o| o == value));
    let mut value = nodes[nz].input.first()?.clone();
    for op in ["Greater", "ReduceSum", "Transpose", "OneHot"] {
        let n = producer(&value)?;
        if n.op_type != op {
            return None;
        }
        value = n.input.first()?.clone();
    }
    let topk = producer(&value)?;
    (topk.op_type == "TopK" && topk.output.get(1) == Some(&value))
        .then(|| topk.input.first())
        .flatten()
        .map(|x| (x.clone(), int_attr(topk, "axis").unwrap_or(-1)))
}

fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name == name).map(|a| a.i)
}
