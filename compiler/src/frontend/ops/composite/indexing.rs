//! Ops composed from position constants: ArgMax/ArgMin, TopK and OneHot
//! compare values or indices against `[0, 1, …, n-1]` along an axis.

use crate::frontend::ctx::{built_constant, ConvertResult, Ctx};
use crate::frontend::ops::one;
use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::Tensor;

use super::{bin, scalar_like, un};

/// A constant `[0, 1, …, n-1]` (or reversed) of `dtype`, shaped to run
/// along `axis` of a rank-`rank` tensor.
fn positions(
    ctx: &mut Ctx,
    part: &str,
    n: usize,
    axis: usize,
    rank: usize,
    reversed: bool,
) -> ConvertResult<NodeId> {
    built_constant("positions", &[n])?;
    let values: Vec<i64> = (0..n as i64)
        .map(|i| if reversed { n as i64 - 1 - i } else { i })
        .collect();
    let mut shape = vec![1; rank];
    shape[axis] = n;
    let tensor = Tensor::from_i64_as(crate::tensor::DType::I64, shape, values)
        .ok_or("cannot build positions")?;
    ctx.constant(part, tensor)
}

/// ArgMax and ArgMin (`axis`, `keepdims`, `select_last_index`): the
/// positions where `x` equals its maximum (of `−x` for ArgMin), reduced to
/// the first (or last) of them with a maximum over positions. NaN inputs
/// are not singled out.
pub(in crate::frontend::ops) fn arg_extreme(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    let rank = ty.rank();
    if rank == 0 {
        return Err("needs rank >= 1".into());
    }
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(0), rank)?;
    let keep_dims = ctx.attr_int("keepdims")?.unwrap_or(1) != 0;
    let last = ctx.attr_int("select_last_index")?.unwrap_or(0) != 0;
    let n = ty.shape[axis];
    if n == 0 {
        return Err("an arg-reduction over an empty axis".into());
    }
    let values = if ctx.op_type() == "ArgMin" {
        if ty.dtype == crate::tensor::DType::Bool {
            un(ctx, "flipped", UnaryOp::Not, x)?
        } else {
            un(ctx, "negated", UnaryOp::Neg, x)?
        }
    } else {
        x
    };
    let (_, chosen) = max_and_position(ctx, "", values, axis, last, keep_dims)?;
    one(chosen)
}

/// The maximum of `values` along `axis` (kept as 1) and the first (or
/// last) position where it is reached (i64, kept as 1 when `keep_dims`).
fn max_and_position(
    ctx: &mut Ctx,
    part: &str,
    values: NodeId,
    axis: usize,
    last: bool,
    keep_dims: bool,
) -> ConvertResult<(NodeId, NodeId)> {
    let ty = ctx.ty(values);
    let (n, rank) = (ty.shape[axis], ty.rank());
    let reduce = |keep_dims| Op::Reduce {
        kind: ReduceKind::Max,
        axes: vec![axis],
        keep_dims,
    };
    let max = ctx.add(&format!("{part}max"), reduce(true), &[values])?;
    let at_max = bin(ctx, &format!("{part}at_max"), BinaryOp::Equal, values, max)?;
    // The last index: max(i where at_max); the first: n−1 − max(n−1−i …).
    let index = positions(ctx, &format!("{part}positions"), n, axis, rank, !last)?;
    let none = ctx.scalar(&format!("{part}none"), crate::tensor::DType::I64, -1.0)?;
    let candidates = ctx.add(
        &format!("{part}candidates"),
        Op::Where,
        &[at_max, index, none],
    )?;
    let mut chosen = ctx.add(&format!("{part}chosen"), reduce(keep_dims), &[candidates])?;
    if !last {
        let top = ctx.scalar(
            &format!("{part}last_position"),
            crate::tensor::DType::I64,
            (n - 1) as f64,
        )?;
        chosen = bin(ctx, &format!("{part}first"), BinaryOp::Sub, top, chosen)?;
    }
    Ok((max, chosen))
}

/// The most values TopK takes (one pass over the row per value).
const TOP_K_MAX: usize = 64;

/// TopK(x, K) with `axis`, `largest`, `sorted`: K passes, each taking the
/// row maximum (of −x for the smallest) and its first position, then
/// masking that position with −∞ (the type's lowest value) for the next pass. Values come out sorted
/// (ties: lower index first, as ONNX specifies); K must be known at
/// compile time and at most 64.
pub(in crate::frontend::ops) fn top_k(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    if matches!(ty.dtype, crate::tensor::DType::Bool) {
        return Err("TopK of bool is not supported".into());
    }
    let rank = ty.rank();
    if rank == 0 {
        return Err("needs rank >= 1".into());
    }
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(-1), rank)?;
    let k = if ctx.opset < 10 {
        ctx.attr_int("k")?.ok_or("attribute `k` is required")?
    } else {
        let k = ctx.opt_ints_input(1)?.ok_or("K (input 1) is required")?;
        *k.first()
            .filter(|_| k.len() == 1)
            .ok_or("K must be a single value")?
    };
    let n = ty.shape[axis];
    let k = usize::try_from(k)
        .ok()
        .filter(|&k| k <= n)
        .ok_or_else(|| format!("K = {k} for an axis of {n}"))?;
    if k > TOP_K_MAX {
        return Err(format!("TopK with K = {k} (at most {TOP_K_MAX} are supported)").into());
    }
    let largest = ctx.attr_int("largest")?.unwrap_or(1) != 0;
    if !largest && ty.dtype == crate::tensor::DType::U8 {
        return Err("TopK of the smallest u8 values is not supported".into());
    }
    let mut current = if largest {
        x
    } else {
        un(ctx, "negated", UnaryOp::Neg, x)?
    };
    let index = positions(ctx, "positions", n, axis, rank, false)?;
    let masked = scalar_like(
        ctx,
        "masked",
        x,
        crate::frontend::ops::pool::lowest(ty.dtype),
    )?;
    let (mut values, mut indices) = (Vec::with_capacity(k), Vec::with_capacity(k));
    for j in 0..k {
        let (max, at) = max_and_position(ctx, &format!("pass{j}_"), current, axis, false, true)?;
        values.push(max);
        indices.push(at);
        if j + 1 < k {
            let taken = bin(ctx, &format!("pass{j}_taken"), BinaryOp::Equal, index, at)?;
            current = ctx.add(
                &format!("pass{j}_rest"),
                Op::Where,
                &[taken, masked, current],
            )?;
        }
    }
    let join = |ctx: &mut Ctx, part: &str, parts: Vec<NodeId>| -> ConvertResult<NodeId> {
        match parts[..] {
            [] => Err("K = 0 is not supported".into()),
            [single] => Ok(single),
            _ => ctx.add(part, Op::Concat { axis }, &parts),
        }
    };
    let mut values = join(ctx, "values", values)?;
    if !largest {
        values = un(ctx, "values_negated", UnaryOp::Neg, values)?;
    }
    let indices = join(ctx, "indices", indices)?;
    Ok(vec![Some(values), Some(indices)])
}

/// OneHot(indices, depth, values = [off, on]) with `axis`: `on` where the
/// (wrapped, for negative indices) index equals the position along the new
/// axis, `off` elsewhere. The depth must be known at compile time.
pub(in crate::frontend::ops) fn one_hot(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let indices = ctx.input(0)?;
    let depth = ctx.value(1)?;
    if depth.numel() != 1 {
        return Err("the depth (input 1) must be a single value".into());
    }
    let depth = depth.to_f32_vec()[0];
    let depth = usize::try_from(depth as i64)
        .ok()
        .filter(|&d| d > 0 && depth.fract() == 0.0)
        .ok_or_else(|| format!("depth {depth} is not a positive integer"))?;
    let values = ctx.input(2)?;
    if ctx.ty(values).numel() != 2 {
        return Err("values (input 2) must be [off, on]".into());
    }
    let shape = ctx.ty(indices).shape;
    let rank = shape.len() + 1;
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(-1), rank)?;
    let indices = if ctx.ty(indices).dtype == crate::tensor::DType::I64 {
        indices
    } else {
        ctx.add(
            "as_i64",
            Op::Cast {
                to: crate::tensor::DType::I64,
            },
            &[indices],
        )?
    };
    // Negative indices count from the end.
    let zero = ctx.scalar("zero", crate::tensor::DType::I64, 0.0)?;
    let d = ctx.scalar("depth", crate::tensor::DType::I64, depth as f64)?;
    let negative = bin(ctx, "negative", BinaryOp::Less, indices, zero)?;
    let wrapped = bin(ctx, "wrapped", BinaryOp::Add, indices, d)?;
    let indices = ctx.add("index", Op::Where, &[negative, wrapped, indices])?;
    let mut spread = shape.clone();
    spread.insert(axis, 1);
    let indices = ctx.reshape("spread", indices, spread)?;
    let position = positions(ctx, "positions", depth, axis, rank, false)?;
    let hot = bin(ctx, "hot", BinaryOp::Equal, indices, position)?;
    let flat = ctx.reshape("values_flat", values, vec![2])?;
    let pick = |ctx: &mut Ctx, i: i64, part: &str| -> ConvertResult<NodeId> {
        let op = Op::Slice {
            starts: vec![i],
            ends: vec![i + 1],
            steps: vec![1],
        };
        let v = ctx.add(part, op, &[flat])?;
        ctx.reshape(&format!("{part}_scalar"), v, vec![])
    };
    let off = pick(ctx, 0, "off")?;
    let on = pick(ctx, 1, "on")?;
    one(ctx.add("one_hot", Op::Where, &[hot, on, off])?)
}
