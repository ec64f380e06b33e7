//! Shape and type inference: the result type of each op from its operand
//! types and attributes. The builder, the parser and the verifier all use
//! [`Op::infer`], so a node's declared type is always what inference says.

use crate::tensor::{checked_numel, DType};

use super::op::{BinaryOp, ConvAttrs, Op, ReduceKind, UnaryOp, TOO_MANY_ELEMENTS};
use super::TensorType;

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
    let len = if step > 0 {
        if !(0 <= start && start <= end && end <= dim) {
            return None;
        }
        (end - start + step - 1) / step
    } else if step < 0 {
        if !(-1 <= end && end <= start && start < dim) {
            return None;
        }
        (start - end + (-step) - 1) / (-step)
    } else {
        return None;
    };
    usize::try_from(len).ok()
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

/// `[a, b(, bias)]` → `[..., M, N]`; see [`Op::Gemm`].
fn gemm_type(trans_b: bool, operands: &[&TensorType]) -> Result<TensorType, String> {
    let (a, b) = (operands[0], operands[1]);
    float_operand(a)?;
    same_dtype(a, b)?;
    if a.rank() < 2 || b.rank() != 2 {
        return Err(format!(
            "gemm needs a of rank >= 2 and b of rank 2, has {:?} and {:?}",
            a.shape, b.shape
        ));
    }
    let k = a.shape[a.rank() - 1];
    let (bk, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != bk {
        return Err(format!(
            "inner dimensions differ: {:?} x {:?}{}",
            a.shape,
            b.shape,
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    if let Some(bias) = operands.get(2) {
        same_dtype(a, bias)?;
        if bias.shape != [n] {
            return Err(format!("bias must be [{n}], is {:?}", bias.shape));
        }
    }
    let mut shape = a.shape.clone();
    *shape.last_mut().ok_or("gemm needs a of rank >= 2")? = n;
    Ok(TensorType::new(a.dtype, shape))
}

/// `[q, k, v(, mask)]` → q's type; see [`Op::Attention`].
fn attention_type(operands: &[&TensorType]) -> Result<TensorType, String> {
    let (q, k, v) = (operands[0], operands[1], operands[2]);
    float_operand(q)?;
    same_dtype(q, k)?;
    same_dtype(q, v)?;
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Err(format!(
            "q, k, v must be [B, H, S, D], are {:?}, {:?}, {:?}",
            q.shape, k.shape, v.shape
        ));
    }
    let (b, h, sq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (hkv, sk) = (k.shape[1], k.shape[2]);
    if k.shape[0] != b || k.shape[3] != d || v.shape != k.shape {
        return Err(format!(
            "k and v must be [{b}, Hkv, Sk, {d}] and equal, are {:?} and {:?}",
            k.shape, v.shape
        ));
    }
    if hkv == 0 || h % hkv != 0 {
        return Err(format!("{h} query heads do not group over {hkv} kv heads"));
    }
    if let Some(mask) = operands.get(3) {
        same_dtype(q, mask)?;
        let scores = [b, h, sq, sk];
        if broadcast_shapes(&mask.shape, &scores).ok().as_deref() != Some(&scores[..]) {
            return Err(format!(
                "mask {:?} does not broadcast to {scores:?}",
                mask.shape
            ));
        }
    }
    Ok(q.clone())
}

/// `[x, cos, sin]` → x's type; see [`Op::Rope`].
fn rope_type(operands: &[&TensorType]) -> Result<TensorType, String> {
    let x = operands[0];
    float_operand(x)?;
    if x.rank() < 2 || x.shape.last().is_none_or(|d| d % 2 != 0) {
        return Err(format!(
            "x must be [..., S, D] with D even, is {:?}",
            x.shape
        ));
    }
    for table in &operands[1..] {
        same_dtype(x, table)?;
        if broadcast_shapes(&x.shape, &table.shape).ok().as_ref() != Some(&x.shape) {
            return Err(format!(
                "cos/sin {:?} does not broadcast to {:?}",
                table.shape, x.shape
            ));
        }
    }
    Ok(x.clone())
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

fn conv_type(c: &ConvAttrs, operands: &[&TensorType]) -> Result<TensorType, String> {
    let (x, w) = (operands[0], operands[1]);
    float_operand(x)?;
    same_dtype(x, w)?;
    let spatial = x
        .rank()
        .checked_sub(2)
        .filter(|&s| s >= 1)
        .ok_or("conv input needs rank >= 3")?;
    if w.rank() != x.rank()
        || c.strides.len() != spatial
        || c.dilations.len() != spatial
        || c.pads.len() != 2 * spatial
    {
        return Err(format!(
            "weights {:?}, strides, dilations and pads do not match input {:?}",
            w.shape, x.shape
        ));
    }
    let (channels, out_channels) = (x.shape[1], w.shape[0]);
    if c.group == 0
        || channels % c.group != 0
        || out_channels % c.group != 0
        || w.shape[1] * c.group != channels
    {
        return Err(format!(
            "group {} does not fit {channels} input and {out_channels} output channels (weights {:?})",
            c.group, w.shape
        ));
    }
    if let Some(b) = operands.get(2) {
        same_dtype(x, b)?;
        if b.shape != [out_channels] {
            return Err(format!("bias {:?} must be [{out_channels}]", b.shape));
        }
    }
    let mut shape = vec![x.shape[0], out_channels];
    for d in 0..spatial {
        if c.strides[d] == 0 || c.dilations[d] == 0 {
            return Err("strides and dilations must be positive".into());
        }
        let padded = x.shape[2 + d]
            .checked_add(c.pads[d])
            .and_then(|v| v.checked_add(c.pads[spatial + d]))
            .ok_or("padding overflows")?;
        let reach = (w.shape[2 + d].saturating_sub(1))
            .checked_mul(c.dilations[d])
            .ok_or("dilation overflows")?
            + 1;
        if padded < reach {
            return Err(format!(
                "kernel {:?} is larger than the padded input {:?}",
                w.shape, x.shape
            ));
        }
        shape.push((padded - reach) / c.strides[d] + 1);
    }
    Ok(TensorType::new(x.dtype, shape))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(dtype: DType, shape: &[usize]) -> TensorType {
        TensorType::new(dtype, shape.to_vec())
    }

    #[test]
    fn binary_broadcasts_numpy_style() {
        let ty = Op::Binary(BinaryOp::Add)
            .infer(&[&t(DType::F32, &[2, 1, 4]), &t(DType::F32, &[3, 1])])
            .expect("broadcastable");
        assert_eq!(ty.shape, vec![2, 3, 4]);
        let err = Op::Binary(BinaryOp::Add)
            .infer(&[&t(DType::F32, &[2, 3]), &t(DType::F32, &[4])])
            .expect_err("3 vs 4");
        assert!(err.contains("do not broadcast"), "{err}");
        let ty = Op::Binary(BinaryOp::Less)
            .infer(&[&t(DType::I64, &[]), &t(DType::I64, &[5])])
            .expect("scalar");
        assert_eq!(ty, t(DType::Bool, &[5]));
    }

    #[test]
    fn matmul_broadcasts_batch_dims() {
        let ty = Op::MatMul
            .infer(&[&t(DType::F32, &[2, 1, 3, 4]), &t(DType::F32, &[5, 4, 6])])
            .expect("ok");
        assert_eq!(ty.shape, vec![2, 5, 3, 6]);
        assert!(Op::MatMul
            .infer(&[&t(DType::F32, &[3, 4]), &t(DType::F32, &[5, 6])])
            .is_err());
    }

    #[test]
    fn slice_lengths_follow_normalized_bounds() {
        assert_eq!(slice_len(0, 10, 3, 10), Some(4));
        assert_eq!(slice_len(9, -1, -1, 10), Some(10));
        assert_eq!(slice_len(9, -1, -4, 10), Some(3));
        assert_eq!(slice_len(5, 5, 1, 10), Some(0));
        assert_eq!(slice_len(0, 11, 1, 10), None);
        assert_eq!(slice_len(0, 1, 0, 10), None);
    }

    #[test]
    fn conv_output_size() {
        let c = ConvAttrs {
            strides: vec![8, 8],
            pads: vec![0; 4],
            dilations: vec![1, 1],
            group: 1,
        };
        let ty = Op::Conv(c)
            .infer(&[
                &t(DType::F32, &[1, 3, 32, 32]),
                &t(DType::F32, &[32, 3, 8, 8]),
                &t(DType::F32, &[32]),
            ])
            .expect("patch embedding");
        assert_eq!(ty.shape, vec![1, 32, 4, 4]);
    }

    #[test]
    fn npu_ops_check_their_operands() {
        let f = |shape: &[usize]| t(DType::F32, shape);
        let gemm = |trans_b| Op::Gemm { trans_b, act: None };
        let ty = gemm(false)
            .infer(&[&f(&[2, 8, 32]), &f(&[32, 64]), &f(&[64])])
            .expect("ok");
        assert_eq!(ty.shape, vec![2, 8, 64]);
        assert_eq!(
            gemm(true)
                .infer(&[&f(&[8, 32]), &f(&[64, 32])])
                .expect("ok")
                .shape,
            vec![8, 64]
        );
        assert!(gemm(false).infer(&[&f(&[8, 32]), &f(&[64, 32])]).is_err());
        let err = gemm(false)
            .infer(&[&f(&[8, 32]), &f(&[32, 64]), &f(&[1, 64])])
            .expect_err("bias rank");
        assert!(err.contains("bias must be [64]"), "{err}");
        let attention = Op::Attention {
            scale: 0.125,
            causal: true,
        };
        let (q, kv) = (f(&[1, 4, 8, 16]), f(&[1, 2, 8, 16]));
        assert_eq!(attention.infer(&[&q, &kv, &kv]).expect("gqa"), q);
        assert!(attention
            .infer(&[&q, &f(&[1, 3, 8, 16]), &f(&[1, 3, 8, 16])])
            .is_err());
        assert!(attention.infer(&[&q, &kv, &kv, &f(&[1, 1, 8, 8])]).is_ok());
        let err = attention
            .infer(&[&q, &kv, &kv, &f(&[1, 1, 8, 9])])
            .expect_err("mask");
        assert!(err.contains("does not broadcast"), "{err}");
        let x = f(&[1, 4, 8, 16]);
        assert_eq!(
            Op::Rope
                .infer(&[&x, &f(&[8, 16]), &f(&[1, 1, 8, 16])])
                .expect("ok"),
            x
        );
        assert!(Op::Rope
            .infer(&[&f(&[8, 15]), &f(&[15]), &f(&[15])])
            .is_err());
    }

    #[test]
    fn reduce_keeps_or_drops_axes() {
        let op = |keep_dims| Op::Reduce {
            kind: ReduceKind::Sum,
            axes: vec![0, 2],
            keep_dims,
        };
        assert_eq!(
            op(true)
                .infer(&[&t(DType::F32, &[2, 3, 4])])
                .expect("ok")
                .shape,
            vec![1, 3, 1]
        );
        assert_eq!(
            op(false)
                .infer(&[&t(DType::F32, &[2, 3, 4])])
                .expect("ok")
                .shape,
            vec![3]
        );
    }
}
