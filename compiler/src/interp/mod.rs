//! The reference interpreter: evaluates Graph IR with plain loops.
//!
//! It is the oracle for graph rewrites, for the simulator and for per-layer
//! comparison, so it favours clarity over speed (but a matmul is a cache-
//! friendly triple loop, not something absurd). Floating-point types are
//! computed in f32 (statistics such as sums and variances in f64) and
//! f16/bf16 results are rounded to their type after each op; integers are
//! computed in i64 and wrapped to their width; bools are bools.
//!
//! [`evaluate_with`] computes what a compiled program computes instead
//! ([`EvalOptions`], `program.rs`): with a bf16 (or f16) MXU the operands
//! of every matrix product are rounded where the program rounds them
//! (`mxu.rs`), and with a target the vector unit's functions, reduction
//! order and row kernels are followed (`vpu.rs`), so that a program can be
//! compared with a reference of its own precision almost bit for bit.
//!
//! Run-time errors (an index out of range, an integer division by zero, a
//! tensor too large to allocate) are [`InterpError`]s naming the node, never
//! panics.

use std::collections::HashMap;
use std::sync::Arc;

use crate::graph::{Graph, NodeId, Op, TensorType};
use crate::tensor::Tensor;

mod elementwise;
mod fused;
mod linalg;
mod movement;
mod mxu;
mod program;
mod reduce;
mod vpu;

pub(crate) use elementwise::broadcast_index;

/// Results larger than this many bytes are refused instead of allocated.
pub const MAX_TENSOR_BYTES: usize = 1 << 30;

/// An evaluation error.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InterpError {
    /// The inputs do not match the graph's inputs.
    #[error("input `{input}`: {message}")]
    Input {
        /// Graph input name.
        input: String,
        /// What does not match.
        message: String,
    },
    /// A node failed.
    #[error("node `{node}` ({op}): {message}")]
    Node {
        /// Node name.
        node: String,
        /// Op mnemonic.
        op: String,
        /// What went wrong.
        message: String,
    },
    /// The graph is malformed (run the verifier).
    #[error("{0}")]
    Graph(String),
}

/// Which node values an evaluation keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Keep {
    /// Only graph outputs; intermediate values are freed after their last use.
    Outputs,
    /// Every node's value (for per-layer comparison).
    All,
}

/// How an evaluation computes: exact f32 (the default, ONNX semantics) or
/// what a compiled program computes (the same-precision reference).
///
/// Emulated: MXU operands rounded to `mxu` (round to nearest even) and
/// accumulated in f32 in the MXU's order (SPEC.md §4.4); convolution as
/// im2col + GEMM; attention in the form of the kernel the target runs;
/// with a target, the VPU's functions and lane-order reductions in the
/// row kernels (softmax, norms, reductions) and elementwise functions.
/// Not emulated: anything the program does in a different f32 order that
/// is not listed here; every value stays f32 between ops, as the
/// program's DRAM intermediates are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalOptions {
    /// The MXU's input type. `F32`: products of exact f32 operands, as ONNX
    /// specifies. `Bf16`/`F16`: both operands of every matmul, GEMM,
    /// convolution and attention product rounded to that type.
    pub mxu: tessera_isa::MxuType,
    /// The target the program is compiled for, whose kernels change
    /// rounding: which attention kernel runs (whole score rows or an
    /// online softmax over blocks of keys) and the vector unit (its
    /// functions, its lanes, which order row sums). `None` (with an f32
    /// MXU: the exact interpreter): attention with whole score rows, the
    /// interpreter's own functions, statistics in f64.
    pub target: Option<tessera_isa::Target>,
}

impl EvalOptions {
    /// Exact f32 operands: what [`evaluate`] does.
    pub const FP32: EvalOptions = EvalOptions {
        mxu: tessera_isa::MxuType::F32,
        target: None,
    };
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions::FP32
    }
}

/// The result of evaluating a graph.
#[derive(Debug)]
pub struct Evaluation {
    values: HashMap<NodeId, Arc<Tensor>>,
    outputs: Vec<(String, Arc<Tensor>)>,
}

impl Evaluation {
    /// The graph outputs (name, value), in order.
    pub fn outputs(&self) -> &[(String, Arc<Tensor>)] {
        &self.outputs
    }

    /// A node's value, if it was kept.
    pub fn value(&self, id: NodeId) -> Option<&Arc<Tensor>> {
        self.values.get(&id)
    }
}

/// Orders named tensors (e.g. the `input_N.pb` of a test) as the graph's
/// inputs: each graph input takes the tensor with its name, else the tensor
/// at its position.
pub fn bind_inputs(
    graph: &Graph,
    tensors: &[(String, Tensor)],
) -> Result<Vec<Arc<Tensor>>, InterpError> {
    let mut bound = Vec::with_capacity(graph.inputs().len());
    for (position, &id) in graph.inputs().iter().enumerate() {
        let name = &graph.node(id).name;
        let value = tensors
            .iter()
            .find(|(n, _)| n == name)
            .or_else(|| {
                tensors
                    .get(position)
                    .filter(|(n, _)| n.is_empty() || graph.find(n).is_none())
            })
            .ok_or_else(|| InterpError::Input {
                input: name.clone(),
                message: "no value given".into(),
            })?;
        bound.push(Arc::new(value.1.clone()));
    }
    Ok(bound)
}

/// Evaluates a graph on inputs given in graph-input order, returning the
/// outputs in order.
pub fn run(graph: &Graph, inputs: &[Tensor]) -> Result<Vec<Tensor>, InterpError> {
    let inputs: Vec<Arc<Tensor>> = inputs.iter().cloned().map(Arc::new).collect();
    let evaluation = evaluate(graph, &inputs, Keep::Outputs)?;
    Ok(evaluation
        .outputs
        .into_iter()
        .map(|(_, t)| Arc::unwrap_or_clone(t))
        .collect())
}

/// Evaluates a graph on inputs given in graph-input order.
pub fn evaluate(
    graph: &Graph,
    inputs: &[Arc<Tensor>],
    keep: Keep,
) -> Result<Evaluation, InterpError> {
    evaluate_with(graph, inputs, keep, &EvalOptions::FP32)
}

/// [`evaluate`] with the arithmetic `options` describe (a compiled
/// program's precision).
pub fn evaluate_with(
    graph: &Graph,
    inputs: &[Arc<Tensor>],
    keep: Keep,
    options: &EvalOptions,
) -> Result<Evaluation, InterpError> {
    if inputs.len() != graph.inputs().len() {
        return Err(InterpError::Input {
            input: "*".into(),
            message: format!(
                "the graph has {} inputs, {} were given",
                graph.inputs().len(),
                inputs.len()
            ),
        });
    }
    let mut values: HashMap<NodeId, Arc<Tensor>> = HashMap::new();
    for (&id, value) in graph.inputs().iter().zip(inputs) {
        let node = graph.node(id);
        if value.dtype() != node.ty.dtype || value.shape() != node.ty.shape.as_slice() {
            return Err(InterpError::Input {
                input: node.name.clone(),
                message: format!(
                    "expected {} but got {}",
                    node.ty,
                    TensorType::new(value.dtype(), value.shape().to_vec())
                ),
            });
        }
        values.insert(id, Arc::clone(value));
    }
    let order = graph
        .topo_order()
        .map_err(|e| InterpError::Graph(e.to_string()))?;
    // Remaining uses of each value, to free intermediates early.
    let mut remaining: HashMap<NodeId, usize> = HashMap::new();
    for &id in &order {
        for operand in graph.operands(id) {
            *remaining.entry(operand).or_default() += 1;
        }
    }
    let output_ids: std::collections::HashSet<NodeId> =
        graph.outputs().iter().map(|(_, id)| *id).collect();
    for &id in &order {
        let node = graph.node(id);
        if matches!(node.op, Op::Input) {
            continue;
        }
        let operands = graph.operands(id);
        let mut args = Vec::with_capacity(operands.len());
        for operand in &operands {
            let value = values.get(operand).ok_or_else(|| {
                InterpError::Graph(format!("node `{}` has an unevaluated operand", node.name))
            })?;
            args.push(Arc::clone(value));
        }
        let arg_refs: Vec<&Tensor> = args.iter().map(|a| a.as_ref()).collect();
        let value =
            match &node.op {
                Op::Constant(t) => Arc::clone(t),
                op => Arc::new(eval_op_with(op, &arg_refs, &node.ty, options).map_err(
                    |message| InterpError::Node {
                        node: node.name.clone(),
                        op: op.mnemonic().to_string(),
                        message,
                    },
                )?),
            };
        values.insert(id, value);
        if keep == Keep::Outputs {
            for operand in operands {
                if let Some(n) = remaining.get_mut(&operand) {
                    *n -= 1;
                    if *n == 0 && !output_ids.contains(&operand) {
                        values.remove(&operand);
                    }
                }
            }
        }
    }
    let mut outputs = Vec::with_capacity(graph.outputs().len());
    for (name, id) in graph.outputs() {
        let value = values
            .get(id)
            .ok_or_else(|| InterpError::Graph(format!("output `{name}` was not evaluated")))?;
        outputs.push((name.clone(), Arc::clone(value)));
    }
    Ok(Evaluation { values, outputs })
}

/// Evaluates a fused expression op by op, each as its own node would be.
fn fused(
    expr: &crate::graph::FusedExpr,
    args: &[&Tensor],
    options: &EvalOptions,
) -> Result<Tensor, String> {
    use crate::graph::FusedExpr;
    match expr {
        FusedExpr::Input(i) => args
            .get(*i)
            .map(|t| Tensor::clone(t))
            .ok_or_else(|| format!("operand x{i} is missing")),
        FusedExpr::Apply(op, sub) => {
            let values = sub
                .iter()
                .map(|e| fused(e, args, options))
                .collect::<Result<Vec<_>, _>>()?;
            let refs: Vec<&Tensor> = values.iter().collect();
            let types: Vec<TensorType> = values
                .iter()
                .map(|t| TensorType::new(t.dtype(), t.shape().to_vec()))
                .collect();
            let type_refs: Vec<&TensorType> = types.iter().collect();
            let ty = op.infer(&type_refs)?;
            eval_op_with(op, &refs, &ty, options)
        }
    }
}

/// Evaluates one operation on operand values, producing a value of type
/// `ty` (the node's inferred type). Errors are messages for the caller to
/// attach to a node.
pub fn eval_op(op: &Op, args: &[&Tensor], ty: &TensorType) -> Result<Tensor, String> {
    eval_op_with(op, args, ty, &EvalOptions::FP32)
}

/// [`eval_op`] with the arithmetic `options` describe.
pub fn eval_op_with(
    op: &Op,
    args: &[&Tensor],
    ty: &TensorType,
    options: &EvalOptions,
) -> Result<Tensor, String> {
    let bytes = ty
        .checked_numel()
        .and_then(|n| n.checked_mul(ty.dtype.size()));
    if bytes.is_none_or(|b| b > MAX_TENSOR_BYTES) {
        return Err(format!(
            "result {ty} is too large for the reference interpreter"
        ));
    }
    let arg = |i: usize| -> Result<&Tensor, String> {
        args.get(i)
            .copied()
            .ok_or_else(|| format!("missing operand {i}"))
    };
    if let Some(out) = program::eval(op, args, ty, options) {
        return of_type(out?, ty);
    }
    let out = match op {
        Op::Input => return Err("inputs are not evaluated".into()),
        Op::Constant(t) => Tensor::clone(t),
        Op::Unary(u) => elementwise::unary(*u, arg(0)?)?,
        Op::Binary(b) => elementwise::binary(*b, arg(0)?, arg(1)?, ty)?,
        Op::Where => elementwise::select(arg(0)?, arg(1)?, arg(2)?, ty)?,
        Op::Cast { to } => elementwise::cast(arg(0)?, *to)?,
        Op::Gelu { approximate } => elementwise::gelu(arg(0)?, *approximate)?,
        Op::MatMul => linalg::matmul(arg(0)?, arg(1)?, ty)?,
        Op::GatherMatMul => linalg::gather_matmul(arg(0)?, arg(1)?, arg(2)?, ty)?,
        Op::Conv(attrs) => linalg::conv(arg(0)?, arg(1)?, args.get(2).copied(), attrs, ty)?,
        Op::Transpose { perm } => movement::transpose(arg(0)?, perm, ty)?,
        Op::Reshape { shape } => Tensor::clone(arg(0)?)
            .reshaped(shape.clone())
            .ok_or("element count differs")?,
        Op::Expand { shape } => movement::expand(arg(0)?, shape)?,
        Op::Concat { axis } => movement::concat(args, *axis, ty)?,
        Op::Slice {
            starts,
            ends: _,
            steps,
        } => movement::slice(arg(0)?, starts, steps, ty)?,
        Op::Gather { axis } => movement::gather(arg(0)?, arg(1)?, *axis, ty)?,
        Op::GatherElements { axis } => movement::gather_elements(arg(0)?, arg(1)?, *axis)?,
        Op::GatherNd { batch_dims } => movement::gather_nd(arg(0)?, arg(1)?, *batch_dims, ty)?,
        Op::Scatter { axis } => movement::scatter(arg(0)?, arg(1)?, arg(2)?, *axis)?,
        Op::ScatterElements { axis } => {
            movement::scatter_elements(arg(0)?, arg(1)?, arg(2)?, *axis)?
        }
        Op::Trilu { upper, k } => movement::trilu(arg(0)?, *upper, *k)?,
        Op::Reduce {
            kind,
            axes,
            keep_dims: _,
        } => reduce::reduce(arg(0)?, *kind, axes, ty)?,
        Op::Softmax { axis } => reduce::softmax(arg(0)?, *axis)?,
        Op::LayerNorm { axis, epsilon } => {
            reduce::layer_norm(arg(0)?, arg(1)?, args.get(2).copied(), *axis, *epsilon)?
        }
        Op::RmsNorm { axis, epsilon } => reduce::rms_norm(arg(0)?, arg(1)?, *axis, *epsilon)?,
        Op::Elementwise { expr } => fused(expr, args, options)?,
        Op::AddLayerNorm { axis, epsilon } => {
            let sum = elementwise::binary(crate::graph::BinaryOp::Add, arg(0)?, arg(1)?, ty)?;
            reduce::layer_norm(&sum, arg(2)?, args.get(3).copied(), *axis, *epsilon)?
        }
        Op::AddRmsNorm { axis, epsilon } => {
            let sum = elementwise::binary(crate::graph::BinaryOp::Add, arg(0)?, arg(1)?, ty)?;
            reduce::rms_norm(&sum, arg(2)?, *axis, *epsilon)?
        }
        Op::Gemm { trans_b, act } => {
            fused::gemm(arg(0)?, arg(1)?, args.get(2).copied(), *trans_b, *act, ty)?
        }
        Op::QGemm {
            a_zp,
            b_zp,
            trans_b,
            act,
            out,
        } => {
            let act = act.map(|act| move |x| fused::activation(act, x));
            let extra = fused::qgemm_args((*a_zp, *b_zp), *out, args)?;
            fused::qgemm(
                arg(0)?,
                arg(1)?,
                arg(2)?,
                &extra,
                *trans_b,
                act.as_ref().map(|f| f as &dyn Fn(f32) -> f32),
                ty,
            )?
        }
        Op::Attention { scale, causal } => fused::attention(
            arg(0)?,
            arg(1)?,
            arg(2)?,
            args.get(3).copied(),
            *scale,
            *causal,
        )?,
        Op::Rope => fused::rope(arg(0)?, arg(1)?, arg(2)?)?,
    };
    of_type(out, ty)
}

/// `out`, checked to be of the declared type.
fn of_type(out: Tensor, ty: &TensorType) -> Result<Tensor, String> {
    if out.dtype() != ty.dtype || out.shape() != ty.shape.as_slice() {
        return Err(format!(
            "internal: produced {} for declared {ty}",
            TensorType::new(out.dtype(), out.shape().to_vec())
        ));
    }
    Ok(out)
}

/// Calls `f` with every multi-index of `shape` in row-major order.
pub(crate) fn for_each_index(shape: &[usize], mut f: impl FnMut(&[usize])) {
    if shape.contains(&0) {
        return;
    }
    let mut index = vec![0usize; shape.len()];
    loop {
        f(&index);
        let mut d = shape.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            index[d] += 1;
            if index[d] < shape[d] {
                break;
            }
            index[d] = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::{BinaryOp, UnaryOp};
    use crate::tensor::DType;

    fn graph() -> (Graph, NodeId, NodeId) {
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2]))
            .expect("x");
        let n = g.add_node("n", Op::Unary(UnaryOp::Neg), &[x]).expect("neg");
        let y = g
            .add_node("y", Op::Binary(BinaryOp::Mul), &[n, x])
            .expect("mul");
        g.add_output("y", y);
        (g, n, y)
    }

    #[test]
    fn keep_all_returns_intermediate_values() {
        let (g, n, _) = graph();
        let x = Arc::new(Tensor::from_f32(&[2], vec![2.0, -3.0]));
        let all = evaluate(&g, &[Arc::clone(&x)], Keep::All).expect("runs");
        assert_eq!(all.value(n).expect("kept").to_f32_vec(), vec![-2.0, 3.0]);
        assert_eq!(all.outputs()[0].1.to_f32_vec(), vec![-4.0, -9.0]);
        let outputs_only = evaluate(&g, &[x], Keep::Outputs).expect("runs");
        assert!(outputs_only.value(n).is_none(), "intermediates are freed");
    }

    #[test]
    fn bf16_mxu_rounds_matmul_operands_and_nothing_else() {
        // y = x · w + x with x = 1 + 2^-8 and w = 3 + 2^-7, both ties in
        // bf16 (8 significand bits) that round to even: 1 and 3. bf16: the
        // product sees 1 · 3, the add sees the exact x; f32: x · w + x.
        let x_value = 1.0 + 2f32.powi(-8);
        let w_value = 3.0 + 2f32.powi(-7);
        let mut g = Graph::new("g");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![1, 1]))
            .expect("x");
        let w = g
            .add_constant("w", Arc::new(Tensor::from_f32(&[1, 1], vec![w_value])))
            .expect("w");
        let p = g.add_node("p", Op::MatMul, &[x, w]).expect("matmul");
        let y = g
            .add_node("y", Op::Binary(BinaryOp::Add), &[p, x])
            .expect("add");
        g.add_output("y", y);
        let input = [Arc::new(Tensor::from_f32(&[1, 1], vec![x_value]))];
        let bf16 = EvalOptions {
            mxu: tessera_isa::MxuType::Bf16,
            target: None,
        };
        let rounded = evaluate_with(&g, &input, Keep::Outputs, &bf16).expect("runs");
        assert_eq!(rounded.outputs()[0].1.to_f32_vec(), vec![3.0 + x_value]);
        let exact = evaluate(&g, &input, Keep::Outputs).expect("runs");
        assert_eq!(
            exact.outputs()[0].1.to_f32_vec(),
            vec![x_value * w_value + x_value]
        );
        assert_ne!(x_value * w_value, 3.0);
    }

    #[test]
    fn inputs_of_the_wrong_type_are_refused() {
        let (g, _, _) = graph();
        let err = run(&g, &[Tensor::from_f32(&[3], vec![0.0; 3])]).expect_err("shape");
        assert_eq!(err.to_string(), "input `x`: expected f32[2] but got f32[3]");
    }

    #[test]
    fn bind_inputs_matches_names_then_positions() {
        let (g, _, _) = graph();
        let by_name = bind_inputs(&g, &[("x".into(), Tensor::from_f32(&[2], vec![1.0, 2.0]))])
            .expect("by name");
        assert_eq!(by_name[0].to_f32_vec(), vec![1.0, 2.0]);
        let by_position = bind_inputs(
            &g,
            &[(String::new(), Tensor::from_f32(&[2], vec![5.0, 6.0]))],
        )
        .expect("by position");
        assert_eq!(by_position[0].to_f32_vec(), vec![5.0, 6.0]);
    }
}
