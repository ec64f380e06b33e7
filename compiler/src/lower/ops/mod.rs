//! Dispatch: which kernel template implements each Graph IR op, and the
//! translation of its operands and attributes into the template's spec.
//! Elementwise, row-wise and data-movement ops are here; `mxu.rs` has the
//! ops that run on the MXU, `indexing.rs` gathers, Trilu and RoPE.

mod indexing;
mod mxu;

use tessera_isa::{BinFunc, UnFunc};

use crate::graph::{BinaryOp, FusedExpr, GeluApprox, NodeId, Op, ReduceKind, UnaryOp};
use crate::kernel::Kernel;
use crate::tensor::DType;

use super::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use super::gather::{rows_kernels, RowsSpec};
use super::movement::{copies, dense_strides, CopySpec};
use super::rowwise::{row_kernels, ReduceFn, RowOp, RowSpec, RowView};
use super::{Ctx, LowerError};
use indexing::{gather_elements, gather_nd, rope, scatter_elements, scatter_rows, trilu};
use mxu::{attention_op, conv, gather_matmul, gemm_op, matmul};

fn unsupported(ctx: &Ctx, id: NodeId, message: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: ctx.graph.node(id).name.clone(),
        message: message.into(),
    }
}

/// The VPU function computing a unary op (also the reference
/// interpreter's, when it follows a compiled program).
pub(crate) fn unary_func(op: UnaryOp) -> UnFunc {
    match op {
        UnaryOp::Neg => UnFunc::Neg,
        UnaryOp::Abs => UnFunc::Abs,
        UnaryOp::Sqrt => UnFunc::Sqrt,
        UnaryOp::Reciprocal => UnFunc::Recip,
        UnaryOp::Exp => UnFunc::Exp,
        UnaryOp::Log => UnFunc::Log,
        UnaryOp::Tanh => UnFunc::Tanh,
        UnaryOp::Erf => UnFunc::Erf,
        UnaryOp::Sigmoid => UnFunc::Sigmoid,
        UnaryOp::Relu => UnFunc::Relu,
        UnaryOp::Cos => UnFunc::Cos,
        UnaryOp::Sin => UnFunc::Sin,
        UnaryOp::Not => UnFunc::Not,
        UnaryOp::Silu => UnFunc::Silu,
        UnaryOp::Sign => UnFunc::Sign,
        UnaryOp::Floor => UnFunc::Floor,
        UnaryOp::Ceil => UnFunc::Ceil,
        UnaryOp::Round => UnFunc::Round,
    }
}

/// The VPU function computing GELU.
pub(crate) fn gelu_func(approximate: GeluApprox) -> UnFunc {
    match approximate {
        GeluApprox::None => UnFunc::Gelu,
        GeluApprox::Tanh => UnFunc::GeluTanh,
    }
}

/// The VPU function computing a binary op.
pub(crate) fn binary_func(op: BinaryOp) -> BinFunc {
    match op {
        BinaryOp::Add => BinFunc::Add,
        BinaryOp::Sub => BinFunc::Sub,
        BinaryOp::Mul => BinFunc::Mul,
        BinaryOp::Div => BinFunc::Div,
        BinaryOp::Pow => BinFunc::Pow,
        BinaryOp::Min => BinFunc::Min,
        BinaryOp::Max => BinFunc::Max,
        BinaryOp::Equal => BinFunc::Eq,
        BinaryOp::Less => BinFunc::Lt,
        BinaryOp::LessOrEqual => BinFunc::Le,
        BinaryOp::Greater => BinFunc::Gt,
        BinaryOp::GreaterOrEqual => BinFunc::Ge,
        BinaryOp::And => BinFunc::And,
        BinaryOp::Or => BinFunc::Or,
    }
}

/// The kernel expression of a fused chain over its operands' leaves
/// (`None` for a malformed expression, which the verifier rejects).
fn fused_ew(expr: &FusedExpr, leaves: &[Ew]) -> Option<Ew> {
    match expr {
        FusedExpr::Input(i) => leaves.get(*i).cloned(),
        FusedExpr::Apply(op, args) => {
            let args = args
                .iter()
                .map(|a| fused_ew(a, leaves).map(Box::new))
                .collect::<Option<Vec<_>>>()?;
            let mut args = args.into_iter();
            let mut next = || args.next();
            Some(match op.as_ref() {
                Op::Unary(u) => Ew::Unary(unary_func(*u), next()?),
                Op::Gelu { approximate } => Ew::Unary(gelu_func(*approximate), next()?),
                Op::Binary(b) => Ew::Binary(binary_func(*b), next()?, next()?),
                Op::Where => Ew::Select(next()?, next()?, next()?),
                // The operand is widened to f32 as it is loaded; a root
                // cast (into 8 bits) is the conversion of the result as
                // it is stored.
                Op::Cast { .. } => *next()?,
                _ => return None,
            })
        }
    }
}

/// An elementwise operand; scalar constants become immediates.
fn ew_leaf(ctx: &Ctx, id: NodeId, operands: &mut Vec<EwOperand>) -> Ew {
    if let Some(t) = ctx.constant(id) {
        if t.numel() == 1 && t.dtype().is_float() {
            return Ew::Scalar(t.to_f32_vec()[0]);
        }
    }
    let node = ctx.graph.node(id);
    operands.push(EwOperand {
        addr: ctx.addr(id),
        shape: node.ty.shape.clone(),
        dtype: node.ty.dtype,
        strides: None,
    });
    Ew::Input(operands.len() - 1)
}

fn ew_kernel(
    ctx: &Ctx,
    id: NodeId,
    expr: Ew,
    operands: Vec<EwOperand>,
    cast_only: bool,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let spec = EwSpec {
        node: node.name.clone(),
        operands,
        expr,
        out: ctx.addr(id),
        shape: node.ty.shape.clone(),
        dtype: node.ty.dtype,
        cast_only,
        out_strides: None,
    };
    Ok(vec![elementwise(&spec, ctx.target)?])
}

/// Kernels for one node (none for inputs, constants and reshapes).
pub fn lower_node(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    match &node.op {
        Op::Input | Op::Constant(_) | Op::Reshape { .. } => Ok(vec![]),
        Op::Unary(u) => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            ew_kernel(
                ctx,
                id,
                Ew::Unary(unary_func(*u), Box::new(a)),
                operands,
                false,
            )
        }
        Op::Elementwise { expr } => {
            let mut operands = Vec::new();
            let leaves: Vec<Ew> = ops
                .iter()
                .map(|&o| ew_leaf(ctx, o, &mut operands))
                .collect();
            let expr = fused_ew(expr, &leaves)
                .ok_or_else(|| unsupported(ctx, id, "internal: malformed fused expression"))?;
            ew_kernel(ctx, id, expr, operands, false)
        }
        Op::Gelu { approximate } => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            let f = gelu_func(*approximate);
            ew_kernel(ctx, id, Ew::Unary(f, Box::new(a)), operands, false)
        }
        Op::Binary(b) => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            let c = ew_leaf(ctx, ops[1], &mut operands);
            if matches!((&a, &c), (Ew::Scalar(_), Ew::Scalar(_))) {
                return Err(unsupported(
                    ctx,
                    id,
                    "binary op of two constants (should have been folded)",
                ));
            }
            ew_kernel(
                ctx,
                id,
                Ew::Binary(binary_func(*b), Box::new(a), Box::new(c)),
                operands,
                false,
            )
        }
        Op::Where => {
            let mut operands = Vec::new();
            let c = ew_leaf(ctx, ops[0], &mut operands);
            let a = ew_leaf(ctx, ops[1], &mut operands);
            let b = ew_leaf(ctx, ops[2], &mut operands);
            ew_kernel(
                ctx,
                id,
                Ew::Select(Box::new(c), Box::new(a), Box::new(b)),
                operands,
                false,
            )
        }
        Op::Cast { .. } => {
            let src = ctx.graph.node(ops[0]);
            let operands = vec![EwOperand {
                addr: ctx.addr(ops[0]),
                shape: src.ty.shape.clone(),
                dtype: src.ty.dtype,
                strides: None,
            }];
            ew_kernel(ctx, id, Ew::Input(0), operands, true)
        }
        Op::MatMul => matmul(ctx, id),
        Op::GatherMatMul => gather_matmul(ctx, id),
        Op::Softmax { axis } => {
            let x = ctx.graph.node(ops[0]);
            row_kernel(
                ctx,
                id,
                RowOp::Softmax,
                RowView::of(&x.ty.shape, *axis, false),
            )
        }
        Op::LayerNorm { axis, epsilon }
        | Op::RmsNorm { axis, epsilon }
        | Op::AddLayerNorm { axis, epsilon }
        | Op::AddRmsNorm { axis, epsilon } => {
            let x = ctx.graph.node(ops[0]);
            // Operands: x, (residual,) scale, (bias).
            let at = 1 + usize::from(matches!(
                node.op,
                Op::AddLayerNorm { .. } | Op::AddRmsNorm { .. }
            ));
            let scale = vector(ctx, id, ops[at])?;
            let op = match node.op {
                Op::LayerNorm { .. } | Op::AddLayerNorm { .. } => RowOp::LayerNorm {
                    epsilon: *epsilon,
                    scale,
                    bias: match ops.get(at + 1) {
                        Some(&b) => Some(vector(ctx, id, b)?),
                        None => None,
                    },
                },
                _ => RowOp::RmsNorm {
                    epsilon: *epsilon,
                    scale,
                },
            };
            row_kernel(ctx, id, op, RowView::of(&x.ty.shape, *axis, true))
        }
        Op::Reduce { kind, axes, .. } => reduce(ctx, id, *kind, axes),
        Op::Transpose { perm } => {
            let x = ctx.graph.node(ops[0]);
            let src = dense_strides(&x.ty.shape);
            let spec = copy_spec(
                ctx,
                id,
                "transpose",
                perm.iter().map(|&p| src[p]).collect(),
                ctx.addr(ops[0]) as i64,
            );
            Ok(vec![copies(
                &node.name,
                &format!("transpose {perm:?} of {:?}", x.ty.shape),
                &[spec],
            )])
        }
        Op::Slice { starts, steps, .. } => {
            let x = ctx.graph.node(ops[0]);
            let src = dense_strides(&x.ty.shape);
            let es = node.ty.dtype.size() as i64;
            let offset: i64 = starts
                .iter()
                .zip(&src)
                .map(|(s, st)| s.max(&0) * st)
                .sum::<i64>()
                * es;
            // A dimension the slice keeps one element of never steps: its
            // stride is 0 (its step may be anything up to 2^63, and
            // step × stride would overflow). Otherwise the step is at most
            // the dimension's size, so the product is within the tensor.
            let strides = steps
                .iter()
                .zip(&src)
                .zip(&node.ty.shape)
                .map(|((k, st), &n)| if n <= 1 { 0 } else { k * st })
                .collect();
            let spec = copy_spec(ctx, id, "slice", strides, ctx.addr(ops[0]) as i64 + offset);
            Ok(vec![copies(
                &node.name,
                &format!("slice of {:?}", x.ty.shape),
                &[spec],
            )])
        }
        Op::Expand { .. } => {
            let x = ctx.graph.node(ops[0]);
            let r = node.ty.shape.len();
            let offset = r - x.ty.shape.len();
            let dense = dense_strides(&x.ty.shape);
            let strides = (0..r)
                .map(|d| {
                    if d < offset || x.ty.shape[d - offset] == 1 {
                        0
                    } else {
                        dense[d - offset]
                    }
                })
                .collect();
            let spec = copy_spec(ctx, id, "expand", strides, ctx.addr(ops[0]) as i64);
            Ok(vec![copies(
                &node.name,
                &format!("expand {:?} -> {:?}", x.ty.shape, node.ty.shape),
                &[spec],
            )])
        }
        Op::Concat { axis } => {
            let es = node.ty.dtype.size() as i64;
            let out_strides = dense_strides(&node.ty.shape);
            let mut offset = 0i64;
            let mut specs = Vec::new();
            for &op in &ops {
                let x = ctx.graph.node(op);
                specs.push(CopySpec {
                    node: node.name.clone(),
                    what: "concat".into(),
                    sizes: x.ty.shape.clone(),
                    src: ctx.addr(op) as i64,
                    src_strides: dense_strides(&x.ty.shape),
                    dst: ctx.addr(id) as i64 + offset * out_strides[*axis] * es,
                    dst_strides: out_strides.clone(),
                    esize: es as u64,
                });
                offset += x.ty.shape[*axis] as i64;
            }
            Ok(vec![copies(
                &node.name,
                &format!("concat of {} along axis {axis}", ops.len()),
                &specs,
            )])
        }
        Op::Gather { axis } => {
            let data = ctx.graph.node(ops[0]);
            let indices = ctx.graph.node(ops[1]);
            let itype = match indices.ty.dtype {
                DType::I64 => tessera_isa::IdxType::I64,
                DType::I32 => tessera_isa::IdxType::I32,
                other => {
                    return Err(unsupported(
                        ctx,
                        id,
                        format!("gather indices of type {}", other.name()),
                    ))
                }
            };
            let shape = &data.ty.shape;
            let es = data.ty.dtype.size() as u64;
            let row_bytes = shape[axis + 1..].iter().product::<usize>() as u64 * es;
            let spec = RowsSpec {
                node: node.name.clone(),
                table: ctx.addr(ops[0]),
                outer: shape[..*axis].iter().product::<usize>() as u64,
                rows: shape[*axis] as u64,
                row_bytes,
                indices: ctx.addr(ops[1]),
                count: indices.ty.numel() as u64,
                idx_outer_stride: 0,
                itype,
                dense: ctx.addr(id),
                dense_stride: row_bytes,
            };
            if spec.count == 0 || spec.row_bytes == 0 {
                return Ok(vec![]);
            }
            rows_kernels(&spec, ctx.target, false, &|b| ctx.scratch(b))
        }
        Op::GatherNd { batch_dims } => gather_nd(ctx, id, *batch_dims),
        Op::GatherElements { axis } => gather_elements(ctx, id, *axis),
        Op::Scatter { axis } => scatter_rows(ctx, id, *axis),
        Op::ScatterElements { axis } => scatter_elements(ctx, id, *axis),
        Op::Trilu { upper, k } => trilu(ctx, id, *upper, *k),
        Op::Gemm { trans_b, act } => gemm_op(ctx, id, *trans_b, *act, None, None),
        Op::QGemm {
            a_zp,
            b_zp,
            trans_b,
            act,
            out,
        } => gemm_op(ctx, id, *trans_b, *act, Some((*a_zp, *b_zp)), *out),
        Op::Attention { scale, causal } => attention_op(ctx, id, *scale, *causal),
        Op::Rope => rope(ctx, id),
        Op::Conv(attrs) => conv(ctx, id, attrs),
    }
}

/// A copy producing node `id` (dense) from a strided source.
fn copy_spec(ctx: &Ctx, id: NodeId, what: &str, src_strides: Vec<i64>, src: i64) -> CopySpec {
    let node = ctx.graph.node(id);
    CopySpec {
        node: node.name.clone(),
        what: what.into(),
        sizes: node.ty.shape.clone(),
        src,
        src_strides,
        dst: ctx.addr(id) as i64,
        dst_strides: dense_strides(&node.ty.shape),
        esize: node.ty.dtype.size() as u64,
    }
}

/// The DRAM address of an f32 vector operand (scale, bias).
fn vector(ctx: &Ctx, id: NodeId, op: NodeId) -> Result<u64, LowerError> {
    if ctx.graph.node(op).ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "scale and bias must be f32"));
    }
    Ok(ctx.addr(op))
}

/// A row kernel over operand 0 (plus operand 1 added first, for the
/// residual norms).
fn row_kernel(ctx: &Ctx, id: NodeId, op: RowOp, view: RowView) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let operands = ctx.graph.operands(id);
    let x = operands[0];
    let residual = match node.op {
        Op::AddLayerNorm { .. } | Op::AddRmsNorm { .. } => Some(ctx.addr(operands[1])),
        _ => None,
    };
    let spec = RowSpec {
        node: node.name.clone(),
        op,
        input: (ctx.addr(x), ctx.graph.node(x).ty.dtype),
        residual,
        view,
        output: (ctx.addr(id), node.ty.dtype),
    };
    row_kernels(&spec, ctx.target, &|b| ctx.scratch(b))
}

fn reduce(
    ctx: &Ctx,
    id: NodeId,
    kind: ReduceKind,
    axes: &[usize],
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let x_id = ctx.graph.operands(id)[0];
    let x = ctx.graph.node(x_id);
    let f = match kind {
        ReduceKind::Sum => ReduceFn::Sum,
        ReduceKind::Mean => ReduceFn::Mean,
        ReduceKind::Max => ReduceFn::Max,
    };
    let shape = &x.ty.shape;
    if axes.is_empty() {
        return copy_to_node(ctx, id, x_id);
    }
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous {
        let view = RowView::block(shape, axes[0], axes[axes.len() - 1]);
        let spec = RowSpec {
            node: node.name.clone(),
            residual: None,
            op: RowOp::Reduce(f),
            input: (ctx.addr(x_id), x.ty.dtype),
            view,
            output: (ctx.addr(id), node.ty.dtype),
        };
        return row_kernels(&spec, ctx.target, &|b| ctx.scratch(b));
    }
    // Move the reduced axes last, then reduce the trailing block.
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let permuted: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let es = x.ty.dtype.size() as u64;
    let scratch = ctx.scratch(x.ty.numel() as u64 * es);
    let dense = dense_strides(shape);
    let spec = CopySpec {
        node: node.name.clone(),
        what: "reduce: move reduced axes last".into(),
        sizes: permuted.clone(),
        src: ctx.addr(x_id) as i64,
        src_strides: perm.iter().map(|&p| dense[p]).collect(),
        dst: scratch as i64,
        dst_strides: dense_strides(&permuted),
        esize: es,
    };
    let mut kernels = vec![copies(
        &format!("{}.transpose", node.name),
        "move reduced axes last",
        &[spec],
    )];
    let view = RowView::of(&permuted, kept.len(), true);
    let row = RowSpec {
        node: node.name.clone(),
        residual: None,
        op: RowOp::Reduce(f),
        input: (scratch, x.ty.dtype),
        view,
        output: (ctx.addr(id), node.ty.dtype),
    };
    kernels.extend(row_kernels(&row, ctx.target, &|b| ctx.scratch(b))?);
    Ok(kernels)
}

/// A dense copy of `from`'s value into node `id`'s storage.
fn copy_to_node(ctx: &Ctx, id: NodeId, from: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let spec = copy_spec(
        ctx,
        id,
        "copy",
        dense_strides(&node.ty.shape),
        ctx.addr(from) as i64,
    );
    Ok(vec![copies(&node.name, "copy", &[spec])])
}

/// Kernels copying a node's value into an output region.
pub fn copy_to(ctx: &Ctx, id: NodeId, region: u64) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let dense = dense_strides(&node.ty.shape);
    let spec = CopySpec {
        node: format!("{}.output_copy", node.name),
        what: "output copy".into(),
        sizes: node.ty.shape.clone(),
        src: ctx.addr(id) as i64,
        src_strides: dense.clone(),
        dst: region as i64,
        dst_strides: dense,
        esize: node.ty.dtype.size() as u64,
    };
    Ok(vec![copies(&spec.node.clone(), "output copy", &[spec])])
}
