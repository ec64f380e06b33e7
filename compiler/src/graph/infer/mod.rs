//! Shape and type inference: the result type of each op from its operand
//! types and attributes. The builder, the parser and the verifier all use
//! [`Op::infer`], so a node's declared type is always what inference says.

use crate::tensor::{checked_numel, DType};

use super::op::{BinaryOp, Op, ReduceKind, UnaryOp, TOO_MANY_ELEMENTS};
use super::TensorType;

mod compound;

use compound::{attention_type, conv_type, gemm_type, qgemm_type, rope_type};

impl Op {
    /// The result type for these operand types, or why they do not fit.
    /// `Input` has no inferable type and always fails here.
    pub fn infer(&self, operands: &[&TensorType]) -> Result<TensorType, String> {
        let arity = |lo: usize, hi: usize| -> Result<(), String> {
            if operands.len() < lo || operands.len() > hi {
                let expected = if lo == hi {
                    lo.to_string()
                } else {
                    format!("{lo} to {hi}")
                };
                Err(format!(
                    "expects {expected} operands, has {}",
                    operands.len()
                ))
            } else {
                Ok(())
            }
        };
        let ty = match self {
            Op::Input => return Err("an input's type cannot be inferred".into()),
            Op::Constant(t) => {
                arity(0, 0)?;
                TensorType::new(t.dtype(), t.shape().to_vec())
            }
            Op::Unary(u) => {
                arity(1, 1)?;
                let x = operands[0];
                let ok = match u {
                    UnaryOp::Not => x.dtype == DType::Bool,
                    UnaryOp::Neg | UnaryOp::Abs | UnaryOp::Relu | UnaryOp::Sign => {
                        x.dtype != DType::Bool
                    }
                    _ => x.dtype.is_float(),
                };
                if !ok {
                    return Err(format!("{} does not take {}", u.name(), x.dtype));
                }
                x.clone()
            }
            Op::Binary(b) => {
                arity(2, 2)?;
                let (x, y) = (operands[0], operands[1]);
                let shape = broadcast_shapes(&x.shape, &y.shape)?;
                match b {
                    BinaryOp::And | BinaryOp::Or => {
                        if x.dtype != DType::Bool || y.dtype != DType::Bool {
                            return Err(format!(
                                "{} takes bool, not {} and {}",
                                b.name(),
                                x.dtype,
                                y.dtype
                            ));
                        }
                    }
                    BinaryOp::Pow => {
                        if x.dtype == DType::Bool || y.dtype == DType::Bool {
                            return Err("pow does not take bool".into());
                        }
                    }
                    BinaryOp::Equal => same_dtype(x, y)?,
                    _ => {
                        same_dtype(x, y)?;
                        if x.dtype == DType::Bool {
                            return Err(format!("{} does not take bool", b.name()));
                        }
                    }
                }
                let dtype = if b.is_predicate() {
                    DType::Bool
                } else {
                    x.dtype
                };
                TensorType::new(dtype, shape)
            }
            Op::Where => {
                arity(3, 3)?;
                let (c, x, y) = (operands[0], operands[1], operands[2]);
                if c.dtype != DType::Bool {
                    return Err(format!("condition must be bool, not {}", c.dtype));
                }
                same_dtype(x, y)?;
                let shape = broadcast_shapes(&broadcast_shapes(&c.shape, &x.shape)?, &y.shape)?;
                TensorType::new(x.dtype, shape)
            }
            Op::Cast { to } => {
                arity(1, 1)?;
                TensorType::new(*to, operands[0].shape.clone())
            }
            Op::Gelu { .. } => {
                arity(1, 1)?;
                float_operand(operands[0])?;
                operands[0].clone()
            }
            Op::MatMul => {
                arity(2, 2)?;
                let (a, b) = (operands[0], operands[1]);
                same_dtype(a, b)?;
                if a.dtype == DType::Bool {
                    return Err("matmul does not take bool".into());
                }
                let (ra, rb) = (a.shape.len(), b.shape.len());
                if ra < 2 || rb < 2 {
                    return Err(format!(
                        "operands must have rank >= 2, have {:?} and {:?}",
                        a.shape, b.shape
                    ));
                }
                let (m, k) = (a.shape[ra - 2], a.shape[ra - 1]);
                let (k2, n) = (b.shape[rb - 2], b.shape[rb - 1]);
                if k != k2 {
                    return Err(format!(
                        "inner dimensions differ: {:?} x {:?}",
                        a.shape, b.shape
                    ));
                }
                let mut shape = broadcast_shapes(&a.shape[..ra - 2], &b.shape[..rb - 2])?;
                shape.extend([m, n]);
                TensorType::new(a.dtype, shape)
            }
            Op::Transpose { perm } => {
                arity(1, 1)?;
                let x = operands[0];
                check_permutation(perm, x.rank())?;
                TensorType::new(x.dtype, perm.iter().map(|&p| x.shape[p]).collect())
            }
            Op::Reshape { shape } => {
                arity(1, 1)?;
                let x = operands[0];
                if checked_numel(shape) != Some(x.numel()) {
                    return Err(format!("cannot reshape {:?} to {shape:?}", x.shape));
                }
                TensorType::new(x.dtype, shape.clone())
            }
            Op::Expand { shape } => {
                arity(1, 1)?;
                let x = operands[0];
                if broadcast_shapes(&x.shape, shape).ok().as_ref() != Some(shape) {
                    return Err(format!("cannot broadcast {:?} to {shape:?}", x.shape));
                }
                TensorType::new(x.dtype, shape.clone())
            }
            Op::Concat { axis } => {
                if operands.is_empty() {
                    return Err("expects at least 1 operand".into());
                }
                let first = operands[0];
                if *axis >= first.rank() {
                    return Err(format!(
                        "axis {axis} out of range for rank {}",
                        first.rank()
                    ));
                }
                let mut shape = first.shape.clone();
                shape[*axis] = 0;
                for x in operands {
                    same_dtype(first, x)?;
                    let compatible = x.rank() == first.rank()
                        && x.shape
                            .iter()
                            .zip(&first.shape)
                            .enumerate()
                            .all(|(i, (a, b))| i == *axis || a == b);
                    if !compatible {
                        return Err(format!(
                            "cannot concatenate {:?} and {:?} on axis {axis}",
                            first.shape, x.shape
                        ));
                    }
                    shape[*axis] = shape[*axis]
                        .checked_add(x.shape[*axis])
                        .ok_or("size overflows")?;
                }
                TensorType::new(first.dtype, shape)
            }
            Op::Slice {
                starts,
                ends,
                steps,
            } => {
                arity(1, 1)?;
                let x = operands[0];
                if starts.len() != x.rank() || ends.len() != x.rank() || steps.len() != x.rank() {
                    return Err(format!(
                        "needs one start, end and step per dimension of {:?}",
                        x.shape
                    ));
                }
                let mut shape = Vec::with_capacity(x.rank());
                for d in 0..x.rank() {
                    shape.push(
                        slice_len(starts[d], ends[d], steps[d], x.shape[d]).ok_or_else(|| {
                            format!(
                                "slice {}:{}:{} is not normalized for dimension {d} of size {}",
                                starts[d], ends[d], steps[d], x.shape[d]
                            )
                        })?,
                    );
                }
                TensorType::new(x.dtype, shape)
            }
            Op::GatherMatMul => {
                arity(3, 3)?;
                let (table, rows, x) = (operands[0], operands[1], operands[2]);
                float_operand(table)?;
                index_operand(rows)?;
                same_dtype(table, x)?;
                let (&[_, k], &[b, m], &[xb, xk, n]) =
                    (&table.shape[..], &rows.shape[..], &x.shape[..])
                else {
                    return Err(format!(
                        "expects a [V, K] table, [B, M] rows and a [B, K, N] operand, \
                         have {:?}, {:?} and {:?}",
                        table.shape, rows.shape, x.shape
                    ));
                };
                if (xb, xk) != (b, k) {
                    return Err(format!(
                        "the operand {:?} is not [{b}, {k}, N] (rows {:?}, table {:?})",
                        x.shape, rows.shape, table.shape
                    ));
                }
                TensorType::new(table.dtype, vec![b, m, n])
            }
            Op::Gather { axis } => {
                arity(2, 2)?;
                let (data, idx) = (operands[0], operands[1]);
                index_operand(idx)?;
                if *axis >= data.rank() {
                    return Err(format!("axis {axis} out of range for rank {}", data.rank()));
                }
                let mut shape = data.shape[..*axis].to_vec();
                shape.extend_from_slice(&idx.shape);
                shape.extend_from_slice(&data.shape[axis + 1..]);
                TensorType::new(data.dtype, shape)
            }
            Op::GatherElements { axis } => {
                arity(2, 2)?;
                let (data, idx) = (operands[0], operands[1]);
                index_operand(idx)?;
                if *axis >= data.rank() || idx.rank() != data.rank() {
                    return Err(format!(
                        "indices {:?} do not fit data {:?} on axis {axis}",
                        idx.shape, data.shape
                    ));
                }
                TensorType::new(data.dtype, idx.shape.clone())
            }
            Op::Scatter { axis } => {
                arity(3, 3)?;
                let (data, idx, upd) = (operands[0], operands[1], operands[2]);
                index_operand(idx)?;
                if *axis >= data.rank() {
                    return Err(format!("axis {axis} out of range for rank {}", data.rank()));
                }
                let mut expected = data.shape[..*axis].to_vec();
                expected.extend_from_slice(&idx.shape);
                expected.extend_from_slice(&data.shape[axis + 1..]);
                if upd.shape != expected || upd.dtype != data.dtype {
                    return Err(format!(
                        "updates {} do not match data {} and indices {:?} on axis {axis} (expected {:?})",
                        upd, data, idx.shape, expected
                    ));
                }
                data.clone()
            }
            Op::ScatterElements { axis } => {
                arity(3, 3)?;
                let (data, idx, upd) = (operands[0], operands[1], operands[2]);
                index_operand(idx)?;
                if *axis >= data.rank()
                    || idx.rank() != data.rank()
                    || idx.shape.iter().zip(&data.shape).any(|(i, d)| i > d)
                {
                    return Err(format!(
                        "indices {:?} do not fit data {:?} on axis {axis}",
                        idx.shape, data.shape
                    ));
                }
                if upd.shape != idx.shape || upd.dtype != data.dtype {
                    return Err(format!(
                        "updates {} must have the indices' shape {:?} and the data's type {}",
                        upd,
                        idx.shape,
                        data.dtype.name()
                    ));
                }
                data.clone()
            }
            Op::GatherNd { batch_dims } => {
                arity(2, 2)?;
                let (data, idx) = (operands[0], operands[1]);
                index_operand(idx)?;
                let b = *batch_dims;
                let last = *idx.shape.last().ok_or("indices must have rank >= 1")?;
                if b >= idx.rank()
                    || b > data.rank()
                    || data.shape[..b] != idx.shape[..b]
                    || b + last > data.rank()
                {
                    return Err(format!(
                        "indices {:?} do not fit data {:?} with batch_dims {b}",
                        idx.shape, data.shape
                    ));
                }
                let mut shape = idx.shape[..idx.rank() - 1].to_vec();
                shape.extend_from_slice(&data.shape[b + last..]);
                TensorType::new(data.dtype, shape)
            }
            Op::Reduce {
                kind,
                axes,
                keep_dims,
            } => {
                arity(1, 1)?;
                let x = operands[0];
                if axes.windows(2).any(|w| w[0] >= w[1]) || axes.iter().any(|&a| a >= x.rank()) {
                    return Err(format!(
                        "axes {axes:?} must be sorted, distinct and below rank {}",
                        x.rank()
                    ));
                }
                if *kind == ReduceKind::Mean && !x.dtype.is_float() {
                    return Err(format!("reduce_mean does not take {}", x.dtype));
                }
                if *kind == ReduceKind::Sum && x.dtype == DType::Bool {
                    return Err("reduce_sum does not take bool".into());
                }
                let shape = (0..x.rank())
                    .filter_map(|d| match (axes.contains(&d), keep_dims) {
                        (false, _) => Some(x.shape[d]),
                        (true, true) => Some(1),
                        (true, false) => None,
                    })
                    .collect();
                TensorType::new(x.dtype, shape)
            }
            Op::Elementwise { expr } => {
                if operands.len() != expr.arity() {
                    return Err(format!(
                        "the expression reads {} operands, the node has {}",
                        expr.arity(),
                        operands.len()
                    ));
                }
                expr.infer(operands)?
            }
            Op::Softmax { axis } => {
                arity(1, 1)?;
                let x = operands[0];
                float_operand(x)?;
                if *axis >= x.rank() {
                    return Err(format!("axis {axis} out of range for rank {}", x.rank()));
                }
                x.clone()
            }
            Op::LayerNorm { axis, .. }
            | Op::RmsNorm { axis, .. }
            | Op::AddLayerNorm { axis, .. }
            | Op::AddRmsNorm { axis, .. } => {
                match self {
                    Op::LayerNorm { .. } => arity(2, 3)?,
                    Op::RmsNorm { .. } => arity(2, 2)?,
                    Op::AddLayerNorm { .. } => arity(3, 4)?,
                    _ => arity(3, 3)?,
                }
                let x = operands[0];
                float_operand(x)?;
                if *axis >= x.rank() {
                    return Err(format!("axis {axis} out of range for rank {}", x.rank()));
                }
                let residual = matches!(self, Op::AddLayerNorm { .. } | Op::AddRmsNorm { .. });
                if residual && operands[1] != x {
                    return Err(format!("residual {} differs from x {}", operands[1], x));
                }
                for p in &operands[1 + usize::from(residual)..] {
                    same_dtype(x, p)?;
                    if broadcast_shapes(&x.shape, &p.shape).ok().as_ref() != Some(&x.shape) {
                        return Err(format!(
                            "scale/bias {:?} does not broadcast to {:?}",
                            p.shape, x.shape
                        ));
                    }
                }
                x.clone()
            }
            Op::Conv(c) => {
                arity(2, 3)?;
                conv_type(c, operands)?
            }
            Op::Trilu { .. } => {
                arity(1, 1)?;
                if operands[0].rank() < 2 {
                    return Err("trilu needs rank >= 2".into());
                }
                operands[0].clone()
            }
            Op::Gemm { trans_b, .. } => {
                arity(2, 3)?;
                gemm_type(*trans_b, operands)?
            }
            Op::QGemm {
                a_zp,
                b_zp,
                trans_b,
                out,
                ..
            } => {
                arity(3, 7)?;
                qgemm_type(*trans_b, (*a_zp, *b_zp), *out, operands)?
            }
            Op::Attention { .. } => {
                arity(3, 4)?;
                attention_type(operands)?
            }
            Op::Rope => {
                arity(3, 3)?;
                rope_type(operands)?
            }
        };
        let bytes = ty.checked_numel().and_then(|n| n.checked_mul(8));
        if bytes.is_none_or(|b| b > isize::MAX as usize) {
            return Err(format!("result shape {:?} {TOO_MANY_ELEMENTS}", ty.shape));
        }
        Ok(ty)
    }
}

/// The number of elements a normalized slice selects, or `None` if the
/// slice is not normalized for a dimension of size `dim`.
pub fn slice_len(start: i64, end: i64, step: i64, dim: usize) -> Option<usize> {
    let dim = i64::try_from(dim).ok()?;
    // The span is at most dim + 1 and non-negative; dividing it rounding up
    // cannot overflow, whatever the step (a step near ±2^63 selects one).
    let (span, stride) = if step > 0 {
        if !(0 <= start && start <= end && end <= dim) {
            return None;
        }
        (end - start, step.unsigned_abs())
    } else if step < 0 {
        if !(-1 <= end && end <= start && start < dim) {
            return None;
        }
        (start - end, step.unsigned_abs())
    } else {
        return None;
    };
    usize::try_from(span.unsigned_abs().div_ceil(stride)).ok()
}

/// NumPy broadcasting of two shapes.
pub fn broadcast_shapes(a: &[usize], b: &[usize]) -> Result<Vec<usize>, String> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i < rank - a.len() {
            1
        } else {
            a[i - (rank - a.len())]
        };
        let db = if i < rank - b.len() {
            1
        } else {
            b[i - (rank - b.len())]
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return Err(format!("shapes {a:?} and {b:?} do not broadcast"));
        };
    }
    Ok(out)
}

fn same_dtype(a: &TensorType, b: &TensorType) -> Result<(), String> {
    if a.dtype == b.dtype {
        Ok(())
    } else {
        Err(format!("operand types differ: {} and {}", a.dtype, b.dtype))
    }
}

fn float_operand(x: &TensorType) -> Result<(), String> {
    if x.dtype.is_float() {
        Ok(())
    } else {
        Err(format!("expects a float operand, not {}", x.dtype))
    }
}

fn index_operand(x: &TensorType) -> Result<(), String> {
    if matches!(x.dtype, DType::I64 | DType::I32) {
        Ok(())
    } else {
        Err(format!("indices must be i64 or i32, not {}", x.dtype))
    }
}

fn check_permutation(perm: &[usize], rank: usize) -> Result<(), String> {
    let mut seen = vec![false; rank];
    if perm.len() != rank {
        return Err(format!("perm {perm:?} does not have rank {rank}"));
    }
    for &p in perm {
        if p >= rank || std::mem::replace(&mut seen[p], true) {
            return Err(format!("perm {perm:?} is not a permutation of 0..{rank}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
