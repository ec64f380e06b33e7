//! QuantizeLinear, DequantizeLinear and DynamicQuantizeLinear composed
//! from Graph IR ops, exactly as ONNX defines them (opset 10–21):
//!
//! - `DequantizeLinear`: `y = (f32(x) − f32(zp)) · scale`; the difference is
//!   exact for 8-bit and (below 2²⁴) 32-bit integers.
//! - `QuantizeLinear`: `y = saturate(round(x / scale) + zp)` with `round`
//!   half to even (the VPU's `round`), saturation as `max`/`min` and an exact
//!   cast of the integral result.
//! - `DynamicQuantizeLinear`: uint8 with `scale = (max(0, max x) − min(0,
//!   min x)) / 255` and `zp = round(saturate(−min(0, min x) / scale))`.
//!
//! - `MatMulInteger`: `(i32(A) − a_zp) @ (i32(B) − b_zp)` in exact
//!   (wrapping) int32; zero points per tensor, or per row of A / per column
//!   of B.
//! - `QLinearMatMul`: that product, times `a_scale · b_scale / y_scale` in
//!   f32, rounded half to even, plus `y_zp`, saturated.
//!
//! Scales and zero points are per tensor (a scalar or 1-element tensor), per
//! axis (1-D along `axis`) or blocked (`block_size > 0`: the same rank as
//! `x`, each element covering `block_size` consecutive elements along
//! `axis`). FP8, int4 and 16-bit integer quantized types are refused: Graph
//! IR has no such element types.

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::DType;

use super::{bin, un};
use crate::frontend::ctx::{ConvertError, ConvertResult, Ctx};

/// The integer range of a quantized type.
fn range(dtype: DType) -> ConvertResult<(f64, f64)> {
    match dtype {
        DType::U8 => Ok((0.0, 255.0)),
        DType::I8 => Ok((-128.0, 127.0)),
        DType::I32 => Ok((f64::from(i32::MIN), f64::from(i32::MAX))),
        other => {
            Err(format!("quantized type {other} is not supported (int8 and uint8 are)").into())
        }
    }
}

fn to_f32(ctx: &mut Ctx, part: &str, x: NodeId) -> ConvertResult<NodeId> {
    if ctx.ty(x).dtype == DType::F32 {
        Ok(x)
    } else {
        ctx.add(part, Op::Cast { to: DType::F32 }, &[x])
    }
}

/// The axis attribute, normalized against rank `rank`.
fn axis(ctx: &Ctx, rank: usize) -> ConvertResult<usize> {
    let axis = ctx.attr_int("axis")?.unwrap_or(1);
    let r = rank as i64;
    let a = if axis < 0 { axis + r } else { axis };
    if rank == 0 || !(0..r).contains(&a) {
        return Err(format!("axis {axis} is out of range for rank {rank}").into());
    }
    Ok(a as usize)
}

/// A scale or zero point made to broadcast against `x` (shape `shape`):
/// scalars stay, 1-D per-axis vectors become `[1, …, C, …, 1]`, blocked
/// parameters are repeated `block` times along the axis.
fn broadcast_param(ctx: &mut Ctx, part: &str, p: NodeId, shape: &[usize]) -> ConvertResult<NodeId> {
    let pshape = ctx.ty(p).shape;
    let numel: usize = pshape.iter().product();
    let block = ctx.attr_int("block_size")?.unwrap_or(0);
    if block < 0 {
        return Err(format!("block_size {block} is negative").into());
    }
    if pshape.is_empty() || (numel == 1 && block == 0) {
        return ctx.reshape(part, p, vec![]);
    }
    let axis = axis(ctx, shape.len())?;
    let d = shape[axis];
    if block == 0 {
        if pshape != [d] {
            return Err(format!(
                "per-axis {part} has shape {pshape:?}; axis {axis} of the input has {d} elements"
            )
            .into());
        }
        let mut target = vec![1; shape.len()];
        target[axis] = d;
        return ctx.reshape(part, p, target);
    }
    let block = block as usize;
    let blocks = d.div_ceil(block);
    let mut want = shape.to_vec();
    want[axis] = blocks;
    if pshape != want {
        return Err(format!(
            "blocked {part} has shape {pshape:?}, expected {want:?} for block_size {block}"
        )
        .into());
    }
    // [.., nb, ..] → [.., nb, 1, ..] → [.., nb, block, ..] → [.., nb·block, ..] → slice to d.
    let mut split = want.clone();
    split.insert(axis + 1, 1);
    let split_node = ctx.reshape(&format!("{part}_split"), p, split.clone())?;
    split[axis + 1] = block;
    let expanded = ctx.add(
        &format!("{part}_repeat"),
        Op::Expand {
            shape: split.clone(),
        },
        &[split_node],
    )?;
    let mut joined = want.clone();
    joined[axis] = blocks * block;
    let joined_node = ctx.reshape(&format!("{part}_joined"), expanded, joined.clone())?;
    if blocks * block == d {
        return Ok(joined_node);
    }
    let rank = joined.len();
    let mut ends: Vec<i64> = joined.iter().map(|&x| x as i64).collect();
    ends[axis] = d as i64;
    ctx.add(
        &format!("{part}_trim"),
        Op::Slice {
            starts: vec![0; rank],
            ends,
            steps: vec![1; rank],
        },
        &[joined_node],
    )
}

/// `saturate(round(x / scale) + zp)` as `dtype`, in f32.
fn quantize_of(
    ctx: &mut Ctx,
    x: NodeId,
    scale: NodeId,
    zp: Option<NodeId>,
    dtype: DType,
) -> ConvertResult<NodeId> {
    let (lo, hi) = range(dtype)?;
    let ratio = bin(ctx, "ratio", BinaryOp::Div, x, scale)?;
    let mut q = un(ctx, "round", UnaryOp::Round, ratio)?;
    if let Some(zp) = zp {
        q = bin(ctx, "shift", BinaryOp::Add, q, zp)?;
    }
    let lo = ctx.scalar("qmin", DType::F32, lo)?;
    let hi = ctx.scalar("qmax", DType::F32, hi)?;
    let low = bin(ctx, "clip_low", BinaryOp::Max, q, lo)?;
    let clipped = bin(ctx, "clip_high", BinaryOp::Min, low, hi)?;
    ctx.add("quantized", Op::Cast { to: dtype }, &[clipped])
}

/// QuantizeLinear(x, y_scale, y_zero_point).
pub(in crate::frontend::ops) fn quantize_linear(
    ctx: &mut Ctx,
) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let scale = ctx.input(1)?;
    let zp = ctx.opt_input(2);
    if !ctx.ty(x).dtype.is_float() {
        return Err(format!("QuantizeLinear quantizes floats, not {}", ctx.ty(x).dtype).into());
    }
    let dtype = match (zp, ctx.attr_int("output_dtype")?) {
        (Some(zp), _) => ctx.ty(zp).dtype,
        (None, Some(code)) if code != 0 => {
            DType::from_onnx(code as i32).map_err(|dtype| ConvertError::UnsupportedDtype {
                what: "QuantizeLinear output".into(),
                dtype,
            })?
        }
        (None, _) => DType::U8,
    };
    range(dtype)?;
    let shape = ctx.ty(x).shape;
    let xf = to_f32(ctx, "x_f32", x)?;
    let s = to_f32(ctx, "scale_f32", scale)?;
    let s = broadcast_param(ctx, "scale", s, &shape)?;
    let zp = match zp {
        Some(zp) => {
            let z = to_f32(ctx, "zero_point_f32", zp)?;
            Some(broadcast_param(ctx, "zero_point", z, &shape)?)
        }
        None => None,
    };
    Ok(vec![Some(quantize_of(ctx, xf, s, zp, dtype)?)])
}

/// DequantizeLinear(x, x_scale, x_zero_point).
pub(in crate::frontend::ops) fn dequantize_linear(
    ctx: &mut Ctx,
) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let scale = ctx.input(1)?;
    let zp = ctx.opt_input(2);
    range(ctx.ty(x).dtype)?;
    let out = ctx.ty(scale).dtype;
    if !out.is_float() {
        return Err(format!("DequantizeLinear scale must be a float, is {out}").into());
    }
    let shape = ctx.ty(x).shape;
    let xf = to_f32(ctx, "x_f32", x)?;
    let s = to_f32(ctx, "scale_f32", scale)?;
    let s = broadcast_param(ctx, "scale", s, &shape)?;
    // A constant zero point with one value everywhere (per-channel
    // symmetric weights have all zeros) is that one scalar, or no
    // subtraction at all for 0: the e-graph then sees a per-tensor zero
    // point it can give the MXU.
    let uniform = match zp {
        Some(zp) => ctx
            .node_value(zp)?
            .map(|v| v.to_f32_vec())
            .filter(|v| !v.is_empty() && v.iter().all(|&x| x == v[0]))
            .map(|v| v[0]),
        None => Some(0.0),
    };
    let zp = match uniform {
        Some(0.0) => None,
        Some(z) => Some(ctx.scalar("zero_point_f32", DType::F32, f64::from(z))?),
        None => zp,
    };
    let centered = match zp {
        Some(zp) => {
            let z = to_f32(ctx, "zero_point_f32", zp)?;
            let z = broadcast_param(ctx, "zero_point", z, &shape)?;
            bin(ctx, "centered", BinaryOp::Sub, xf, z)?
        }
        None => xf,
    };
    let y = bin(ctx, "dequantized", BinaryOp::Mul, centered, s)?;
    let y = if out == DType::F32 {
        y
    } else {
        ctx.add("cast", Op::Cast { to: out }, &[y])?
    };
    Ok(vec![Some(y)])
}

/// DynamicQuantizeLinear(x) → (y: uint8, y_scale, y_zero_point).
pub(in crate::frontend::ops) fn dynamic_quantize_linear(
    ctx: &mut Ctx,
) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    if ctx.ty(x).dtype != DType::F32 {
        return Err(format!("DynamicQuantizeLinear takes f32, not {}", ctx.ty(x).dtype).into());
    }
    let rank = ctx.ty(x).shape.len();
    let all = |kind| Op::Reduce {
        kind,
        axes: (0..rank).collect(),
        keep_dims: false,
    };
    let zero = ctx.scalar("zero", DType::F32, 0.0)?;
    let max = ctx.add("max", all(ReduceKind::Max), &[x])?;
    let neg = un(ctx, "neg", UnaryOp::Neg, x)?;
    let neg_max = ctx.add("neg_max", all(ReduceKind::Max), &[neg])?;
    let min = un(ctx, "min", UnaryOp::Neg, neg_max)?;
    let rmax = bin(ctx, "range_max", BinaryOp::Max, max, zero)?;
    let rmin = bin(ctx, "range_min", BinaryOp::Min, min, zero)?;
    let width = bin(ctx, "width", BinaryOp::Sub, rmax, rmin)?;
    let levels = ctx.scalar("levels", DType::F32, 255.0)?;
    let scale = bin(ctx, "y_scale", BinaryOp::Div, width, levels)?;
    // zp = round(saturate(0 − rmin / scale)), as ONNX's reference computes it.
    let ratio = bin(ctx, "min_ratio", BinaryOp::Div, rmin, scale)?;
    let izp = bin(ctx, "zp_exact", BinaryOp::Sub, zero, ratio)?;
    let hi = ctx.scalar("qmax", DType::F32, 255.0)?;
    let low = bin(ctx, "zp_low", BinaryOp::Max, izp, zero)?;
    let sat = bin(ctx, "zp_high", BinaryOp::Min, low, hi)?;
    let zpf = un(ctx, "zp_round", UnaryOp::Round, sat)?;
    let zp = ctx.add("y_zero_point", Op::Cast { to: DType::U8 }, &[zpf])?;
    let y = quantize_of(ctx, x, scale, Some(zpf), DType::U8)?;
    Ok(vec![Some(y), Some(scale), Some(zp)])
}

/// `i32(x) − zp`, with `zp` a scalar or a vector along `dim` (0: rows of a
/// matrix, so it becomes a column `[M, 1]`; 1: columns, `[N]`).
fn centered_i32(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    zp: Option<NodeId>,
    rows: bool,
) -> ConvertResult<NodeId> {
    range(ctx.ty(x).dtype)?;
    let xi = ctx.add(&format!("{part}_i32"), Op::Cast { to: DType::I32 }, &[x])?;
    let Some(zp) = zp else {
        return Ok(xi);
    };
    // A constant zero point with one value everywhere (per-channel
    // symmetric weights: all 0) is that scalar, or nothing for 0, as in
    // DequantizeLinear: the e-graph gives a per-tensor zero point to the MXU.
    if let Some(v) = ctx.node_value(zp)?.map(|v| v.to_i64_vec()) {
        if !v.is_empty() && v.iter().all(|&z| z == v[0]) {
            if v[0] == 0 {
                return Ok(xi);
            }
            let z = ctx.scalar(&format!("{part}_zp_i32"), DType::I32, v[0] as f64)?;
            return bin(ctx, &format!("{part}_centered"), BinaryOp::Sub, xi, z);
        }
    }
    range(ctx.ty(zp).dtype)?;
    let zi = ctx.add(
        &format!("{part}_zp_i32"),
        Op::Cast { to: DType::I32 },
        &[zp],
    )?;
    let z = matrix_param(
        ctx,
        &format!("{part} zero point"),
        &format!("{part}_zp"),
        zi,
        rows,
    )?;
    bin(ctx, &format!("{part}_centered"), BinaryOp::Sub, xi, z)
}

/// The exact int32 product `(A − a_zp) @ (B − b_zp)`.
fn integer_product(
    ctx: &mut Ctx,
    (a, azp): (NodeId, Option<NodeId>),
    (b, bzp): (NodeId, Option<NodeId>),
) -> ConvertResult<NodeId> {
    let ac = centered_i32(ctx, "a", a, azp, true)?;
    let bc = centered_i32(ctx, "b", b, bzp, false)?;
    super::super::matmul::matmul_of(ctx, ac, bc)
}

/// MatMulInteger(A, B, a_zero_point, b_zero_point) → int32.
pub(in crate::frontend::ops) fn matmul_integer(
    ctx: &mut Ctx,
) -> ConvertResult<Vec<Option<NodeId>>> {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    let (azp, bzp) = (ctx.opt_input(2), ctx.opt_input(3));
    Ok(vec![Some(integer_product(ctx, (a, azp), (b, bzp))?)])
}

/// A QLinearMatMul scale as f32, per tensor or along rows (`[M, 1]`) or
/// columns (`[N]`).
fn matmul_scale(ctx: &mut Ctx, part: &str, s: NodeId, rows: bool) -> ConvertResult<NodeId> {
    let sf = to_f32(ctx, &format!("{part}_f32"), s)?;
    matrix_param(ctx, part, part, sf, rows)
}

/// A matmul scale or zero point made to broadcast against the product: a
/// scalar (or one element) stays a scalar, a vector along the rows of A
/// becomes a column `[M, 1]`, one along the columns of B stays `[N]`.
fn matrix_param(
    ctx: &mut Ctx,
    what: &str,
    part: &str,
    p: NodeId,
    rows: bool,
) -> ConvertResult<NodeId> {
    let shape = ctx.ty(p).shape;
    let numel: usize = shape.iter().product();
    if numel == 1 {
        ctx.reshape(part, p, vec![])
    } else if shape.len() == 1 && rows {
        ctx.reshape(part, p, vec![numel, 1])
    } else if shape.len() == 1 {
        Ok(p)
    } else {
        Err(format!("{what} must be a scalar or 1-D, has shape {shape:?}").into())
    }
}

/// QLinearMatMul(a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp).
pub(in crate::frontend::ops) fn qlinear_matmul(
    ctx: &mut Ctx,
) -> ConvertResult<Vec<Option<NodeId>>> {
    let (a, sa, azp) = (ctx.input(0)?, ctx.input(1)?, ctx.opt_input(2));
    let (b, sb, bzp) = (ctx.input(3)?, ctx.input(4)?, ctx.opt_input(5));
    let (sy, yzp) = (ctx.input(6)?, ctx.opt_input(7));
    let dtype = yzp.map_or(DType::U8, |z| ctx.ty(z).dtype);
    let product = integer_product(ctx, (a, azp), (b, bzp))?;
    let pf = ctx.add("product_f32", Op::Cast { to: DType::F32 }, &[product])?;
    let sa = matmul_scale(ctx, "a_scale", sa, true)?;
    let sb = matmul_scale(ctx, "b_scale", sb, false)?;
    let sy = matmul_scale(ctx, "y_scale", sy, false)?;
    let sab = bin(ctx, "ab_scale", BinaryOp::Mul, sa, sb)?;
    let factor = bin(ctx, "requant_scale", BinaryOp::Div, sab, sy)?;
    let scaled = bin(ctx, "requantized", BinaryOp::Mul, pf, factor)?;
    let zp = match yzp {
        Some(z) => Some(to_f32(ctx, "y_zero_point_f32", z)?),
        None => None,
    };
    let one_ = ctx.scalar("unit", DType::F32, 1.0)?;
    Ok(vec![Some(quantize_of(ctx, scaled, one_, zp, dtype)?)])
}
