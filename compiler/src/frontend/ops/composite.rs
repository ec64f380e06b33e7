//! ONNX ops composed from Graph IR ops in the frontend, so each runs
//! wherever its parts run (and fuses like them): the activations (LeakyRelu,
//! PRelu, Elu, Selu, Celu, ThresholdedRelu, HardSigmoid, HardSwish,
//! Softplus, Softsign, Mish), LogSoftmax, IsNaN, IsInf, Xor, the
//! reductions ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
//! ReduceLogSum and ReduceLogSumExp, GlobalAverage/MaxPool, DepthToSpace
//! and SpaceToDepth, ArgMax/ArgMin, TopK, OneHot.

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::Tensor;

use super::super::ctx::{built_constant, ConvertResult, Ctx};
use super::one;

pub(super) fn bin(
    ctx: &mut Ctx,
    part: &str,
    op: BinaryOp,
    a: NodeId,
    b: NodeId,
) -> ConvertResult<NodeId> {
    ctx.add(part, Op::Binary(op), &[a, b])
}

pub(super) fn un(ctx: &mut Ctx, part: &str, op: UnaryOp, x: NodeId) -> ConvertResult<NodeId> {
    ctx.add(part, Op::Unary(op), &[x])
}

/// A scalar of `x`'s element type.
pub(super) fn scalar_like(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    value: f64,
) -> ConvertResult<NodeId> {
    let dtype = ctx.ty(x).dtype;
    ctx.scalar(part, dtype, value)
}

/// A float attribute with its ONNX default.
pub(super) fn float_attr(ctx: &Ctx, name: &str, default: f32) -> ConvertResult<f64> {
    Ok(f64::from(ctx.attr_float(name)?.unwrap_or(default)))
}

/// `log(1 + exp(x))` as `relu(x) + log(1 + exp(-|x|))`, which neither
/// overflows for large `x` nor loses it.
fn softplus_of(ctx: &mut Ctx, x: NodeId) -> ConvertResult<NodeId> {
    let one_ = scalar_like(ctx, "one", x, 1.0)?;
    let abs = un(ctx, "abs", UnaryOp::Abs, x)?;
    let neg = un(ctx, "neg_abs", UnaryOp::Neg, abs)?;
    let exp = un(ctx, "exp", UnaryOp::Exp, neg)?;
    let sum = bin(ctx, "one_plus", BinaryOp::Add, one_, exp)?;
    let log = un(ctx, "log", UnaryOp::Log, sum)?;
    let relu = un(ctx, "relu", UnaryOp::Relu, x)?;
    bin(ctx, "softplus", BinaryOp::Add, relu, log)
}

/// `max(0, min(1, alpha·x + beta))`.
fn hard_sigmoid_of(ctx: &mut Ctx, x: NodeId, alpha: f64, beta: f64) -> ConvertResult<NodeId> {
    let a = scalar_like(ctx, "alpha", x, alpha)?;
    let b = scalar_like(ctx, "beta", x, beta)?;
    let scaled = bin(ctx, "scaled", BinaryOp::Mul, a, x)?;
    let shifted = bin(ctx, "shifted", BinaryOp::Add, scaled, b)?;
    let one_ = scalar_like(ctx, "one", x, 1.0)?;
    let zero = scalar_like(ctx, "zero", x, 0.0)?;
    let upper = bin(ctx, "min", BinaryOp::Min, shifted, one_)?;
    bin(ctx, "hard_sigmoid", BinaryOp::Max, upper, zero)
}

/// The elementwise activations.
pub(super) fn activation(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    if !ctx.ty(x).dtype.is_float() {
        return Err(format!("{} takes floats, not {}", ctx.op_type(), ctx.ty(x).dtype).into());
    }
    let zero = scalar_like(ctx, "zero", x, 0.0)?;
    let y = match ctx.op_type() {
        "LeakyRelu" | "PRelu" => {
            let slope = if ctx.op_type() == "PRelu" {
                ctx.input(1)?
            } else {
                let alpha = float_attr(ctx, "alpha", 0.01)?;
                scalar_like(ctx, "alpha", x, alpha)?
            };
            let negative = bin(ctx, "negative", BinaryOp::Less, x, zero)?;
            let scaled = bin(ctx, "scaled", BinaryOp::Mul, slope, x)?;
            ctx.add("select", Op::Where, &[negative, scaled, x])?
        }
        "Elu" | "Selu" => {
            let selu = ctx.op_type() == "Selu";
            let alpha = if selu {
                float_attr(ctx, "alpha", 1.673_263_2)?
            } else {
                float_attr(ctx, "alpha", 1.0)?
            };
            let a = scalar_like(ctx, "alpha", x, alpha)?;
            let exp = un(ctx, "exp", UnaryOp::Exp, x)?;
            // Elu: alpha·(e^x − 1) for x < 0; Selu: alpha·e^x − alpha for x ≤ 0.
            let negative_part = if selu {
                let scaled = bin(ctx, "scaled", BinaryOp::Mul, a, exp)?;
                bin(ctx, "shifted", BinaryOp::Sub, scaled, a)?
            } else {
                let one_ = scalar_like(ctx, "one", x, 1.0)?;
                let em1 = bin(ctx, "expm1", BinaryOp::Sub, exp, one_)?;
                bin(ctx, "scaled", BinaryOp::Mul, a, em1)?
            };
            let cmp = if selu {
                BinaryOp::LessOrEqual
            } else {
                BinaryOp::Less
            };
            let negative = bin(ctx, "negative", cmp, x, zero)?;
            let y = ctx.add("select", Op::Where, &[negative, negative_part, x])?;
            if selu {
                let gamma = float_attr(ctx, "gamma", 1.050_701)?;
                let g = scalar_like(ctx, "gamma", x, gamma)?;
                bin(ctx, "selu", BinaryOp::Mul, g, y)?
            } else {
                y
            }
        }
        "Celu" => {
            // max(0, x) + min(0, alpha·(e^(x/alpha) − 1))
            let alpha = float_attr(ctx, "alpha", 1.0)?;
            let a = scalar_like(ctx, "alpha", x, alpha)?;
            let one_ = scalar_like(ctx, "one", x, 1.0)?;
            let over = bin(ctx, "over_alpha", BinaryOp::Div, x, a)?;
            let exp = un(ctx, "exp", UnaryOp::Exp, over)?;
            let em1 = bin(ctx, "expm1", BinaryOp::Sub, exp, one_)?;
            let scaled = bin(ctx, "scaled", BinaryOp::Mul, a, em1)?;
            let low = bin(ctx, "min", BinaryOp::Min, scaled, zero)?;
            let high = bin(ctx, "max", BinaryOp::Max, x, zero)?;
            bin(ctx, "celu", BinaryOp::Add, high, low)?
        }
        "ThresholdedRelu" => {
            let alpha = float_attr(ctx, "alpha", 1.0)?;
            let a = scalar_like(ctx, "alpha", x, alpha)?;
            let above = bin(ctx, "above", BinaryOp::Greater, x, a)?;
            ctx.add("select", Op::Where, &[above, x, zero])?
        }
        "HardSigmoid" => {
            let alpha = float_attr(ctx, "alpha", 0.2)?;
            let beta = float_attr(ctx, "beta", 0.5)?;
            hard_sigmoid_of(ctx, x, alpha, beta)?
        }
        "HardSwish" => {
            let gate = hard_sigmoid_of(ctx, x, 1.0 / 6.0, 0.5)?;
            bin(ctx, "hard_swish", BinaryOp::Mul, x, gate)?
        }
        "Softplus" => softplus_of(ctx, x)?,
        "Softsign" => {
            let one_ = scalar_like(ctx, "one", x, 1.0)?;
            let abs = un(ctx, "abs", UnaryOp::Abs, x)?;
            let denominator = bin(ctx, "one_plus", BinaryOp::Add, one_, abs)?;
            bin(ctx, "softsign", BinaryOp::Div, x, denominator)?
        }
        "Mish" => {
            let softplus = softplus_of(ctx, x)?;
            let tanh = un(ctx, "tanh", UnaryOp::Tanh, softplus)?;
            bin(ctx, "mish", BinaryOp::Mul, x, tanh)?
        }
        other => return Err(format!("not an activation: {other}").into()),
    };
    one(y)
}

/// LogSoftmax: `(x − max) − log(sum(exp(x − max)))` along `axis` (opset
/// ≥ 13; before, only along the last axis, where the two agree).
pub(super) fn log_softmax(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    if rank == 0 {
        return Err("log_softmax needs rank >= 1".into());
    }
    let default = if ctx.opset >= 13 { -1 } else { 1 };
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(default), rank)?;
    if ctx.opset < 13 && axis != rank - 1 {
        return Err("LogSoftmax before opset 13 is supported along the last axis only".into());
    }
    let reduce = |kind| Op::Reduce {
        kind,
        axes: vec![axis],
        keep_dims: true,
    };
    let max = ctx.add("max", reduce(ReduceKind::Max), &[x])?;
    let shifted = bin(ctx, "shifted", BinaryOp::Sub, x, max)?;
    let exp = un(ctx, "exp", UnaryOp::Exp, shifted)?;
    let sum = ctx.add("sum", reduce(ReduceKind::Sum), &[exp])?;
    let log = un(ctx, "log", UnaryOp::Log, sum)?;
    one(bin(ctx, "log_softmax", BinaryOp::Sub, shifted, log)?)
}

/// IsNaN (`x ≠ x`) and IsInf (`x = ±∞`, each sign on request).
pub(super) fn is_special(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    if !ctx.ty(x).dtype.is_float() {
        return Err(format!("{} takes floats, not {}", ctx.op_type(), ctx.ty(x).dtype).into());
    }
    if ctx.op_type() == "IsNaN" {
        let equal = bin(ctx, "self_equal", BinaryOp::Equal, x, x)?;
        return one(un(ctx, "is_nan", UnaryOp::Not, equal)?);
    }
    let positive = ctx.attr_int("detect_positive")?.unwrap_or(1) != 0;
    let negative = ctx.attr_int("detect_negative")?.unwrap_or(1) != 0;
    let mut found = None;
    for (wanted, value, part) in [
        (positive, f64::INFINITY, "positive"),
        (negative, f64::NEG_INFINITY, "negative"),
    ] {
        if !wanted {
            continue;
        }
        let inf = scalar_like(ctx, &format!("{part}_inf"), x, value)?;
        let is = bin(ctx, part, BinaryOp::Equal, x, inf)?;
        found = Some(match found {
            Some(previous) => bin(ctx, "either", BinaryOp::Or, previous, is)?,
            None => is,
        });
    }
    match found {
        Some(found) => one(found),
        None => {
            let shape = ctx.ty(x).shape;
            let numel = built_constant("the all-false result", &shape)?;
            let none = Tensor::new(shape, crate::tensor::TensorData::Bool(vec![false; numel]))
                .ok_or("cannot build the result")?;
            one(ctx.constant("none", none)?)
        }
    }
}

/// Xor: `(a ∨ b) ∧ ¬(a ∧ b)`.
pub(super) fn xor(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    let either = bin(ctx, "either", BinaryOp::Or, a, b)?;
    let both = bin(ctx, "both", BinaryOp::And, a, b)?;
    let not_both = un(ctx, "not_both", UnaryOp::Not, both)?;
    one(bin(ctx, "xor", BinaryOp::And, either, not_both)?)
}

/// The reductions composed from `reduce_sum`/`reduce_max`: ReduceMin
/// (`−max(−x)`), ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
/// ReduceLogSumExp (`log(sum(exp(x − max))) + max`).
pub(super) fn reduce(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let op_type = ctx.op_type().to_string();
    // With no axes and `noop_with_empty_axes`, only the elementwise part.
    let (axes, keep_dims) = super::reduce::reduction_axes(ctx, rank)?;
    let axes = axes.unwrap_or_default();
    let reduce = |ctx: &mut Ctx, part: &str, kind, x, keep_dims| {
        if axes.is_empty() {
            return Ok(x);
        }
        let op = Op::Reduce {
            kind,
            axes: axes.clone(),
            keep_dims,
        };
        ctx.add(part, op, &[x])
    };
    let y = match op_type.as_str() {
        "ReduceMin" => {
            // −max(−x); for bools (all) ¬max(¬x).
            let flip = if ctx.ty(x).dtype == crate::tensor::DType::Bool {
                UnaryOp::Not
            } else {
                UnaryOp::Neg
            };
            let flipped = un(ctx, "flipped", flip, x)?;
            let max = reduce(ctx, "max", ReduceKind::Max, flipped, keep_dims)?;
            un(ctx, "reduce_min", flip, max)?
        }
        "ReduceL1" => {
            let abs = un(ctx, "abs", UnaryOp::Abs, x)?;
            reduce(ctx, "reduce_l1", ReduceKind::Sum, abs, keep_dims)?
        }
        "ReduceL2" | "ReduceSumSquare" => {
            let square = bin(ctx, "square", BinaryOp::Mul, x, x)?;
            let sum = reduce(ctx, "sum_square", ReduceKind::Sum, square, keep_dims)?;
            if op_type == "ReduceL2" {
                if !ctx.ty(x).dtype.is_float() {
                    return Err("ReduceL2 of integers is not supported".into());
                }
                un(ctx, "reduce_l2", UnaryOp::Sqrt, sum)?
            } else {
                sum
            }
        }
        "ReduceProd" => {
            // Per axis, halves multiplied pairwise until one slice is left
            // (⌈log₂ n⌉ products; integers exact, floats in tree order).
            let mut y = x;
            for &axis in &axes {
                y = product_along(ctx, y, axis)?;
            }
            if keep_dims {
                y
            } else {
                let shape: Vec<usize> = ctx
                    .ty(y)
                    .shape
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| !axes.contains(i))
                    .map(|(_, &d)| d)
                    .collect();
                ctx.reshape("reduce_prod", y, shape)?
            }
        }
        "ReduceLogSum" => {
            let sum = reduce(ctx, "sum", ReduceKind::Sum, x, keep_dims)?;
            un(ctx, "reduce_log_sum", UnaryOp::Log, sum)?
        }
        "ReduceLogSumExp" => {
            let max = reduce(ctx, "max", ReduceKind::Max, x, true)?;
            // An infinite maximum would give ∞ − ∞: shift by 0 there.
            let zero = scalar_like(ctx, "zero", x, 0.0)?;
            let inf = scalar_like(ctx, "inf", x, f64::INFINITY)?;
            let abs = un(ctx, "abs_max", UnaryOp::Abs, max)?;
            let finite = bin(ctx, "finite", BinaryOp::Less, abs, inf)?;
            let shift = ctx.add("shift", Op::Where, &[finite, max, zero])?;
            let shifted = bin(ctx, "shifted", BinaryOp::Sub, x, shift)?;
            let exp = un(ctx, "exp", UnaryOp::Exp, shifted)?;
            let sum = reduce(ctx, "sum", ReduceKind::Sum, exp, keep_dims)?;
            let log = un(ctx, "log", UnaryOp::Log, sum)?;
            let shift = if keep_dims || axes.is_empty() {
                shift
            } else {
                let shape = ctx.ty(log).shape;
                ctx.reshape("shift_squeezed", shift, shape)?
            };
            bin(ctx, "reduce_log_sum_exp", BinaryOp::Add, log, shift)?
        }
        other => return Err(format!("not a composed reduction: {other}").into()),
    };
    one(y)
}

/// The product of `x` along `axis`, kept as size 1 (1 for an empty axis).
pub(super) fn product_along(ctx: &mut Ctx, x: NodeId, axis: usize) -> ConvertResult<NodeId> {
    let shape = ctx.ty(x).shape;
    let mut n = shape[axis];
    if n == 0 {
        let mut out = shape.clone();
        out[axis] = 1;
        let one_ = scalar_like(ctx, "one", x, 1.0)?;
        return ctx.add("empty_product", Op::Expand { shape: out }, &[one_]);
    }
    let mut y = x;
    let mut step = 0;
    while n > 1 {
        let shape = ctx.ty(y).shape;
        let h = n / 2;
        let part = |ctx: &mut Ctx, name: &str, start: usize, end: usize, y| {
            let op = super::movement::window(&shape, axis, start as i64, end as i64, 1);
            ctx.add(&format!("{name}{axis}_{step}"), op, &[y])
        };
        let low = part(ctx, "low", 0, h, y)?;
        let high = part(ctx, "high", h, 2 * h, y)?;
        let mut product = bin(
            ctx,
            &format!("product{axis}_{step}"),
            BinaryOp::Mul,
            low,
            high,
        )?;
        if n % 2 == 1 {
            // The odd one out joins the first of the products.
            let odd = part(ctx, "odd", 2 * h, n, y)?;
            let mut half = shape.clone();
            half[axis] = h;
            let first_op = super::movement::window(&half, axis, 0, 1, 1);
            let first = ctx.add(&format!("first{axis}_{step}"), first_op, &[product])?;
            let first = bin(
                ctx,
                &format!("with_odd{axis}_{step}"),
                BinaryOp::Mul,
                first,
                odd,
            )?;
            product = if h > 1 {
                let rest_op = super::movement::window(&half, axis, 1, h as i64, 1);
                let rest = ctx.add(&format!("rest{axis}_{step}"), rest_op, &[product])?;
                ctx.add(
                    &format!("joined{axis}_{step}"),
                    Op::Concat { axis },
                    &[first, rest],
                )?
            } else {
                first
            };
        }
        y = product;
        n = h;
        step += 1;
    }
    Ok(y)
}

/// GlobalAveragePool and GlobalMaxPool: the mean or maximum over the
/// spatial axes, kept as 1.
pub(super) fn global_pool(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    if rank < 3 {
        return Err("needs rank >= 3 ([N, C, spatial…])".into());
    }
    let kind = if ctx.op_type() == "GlobalMaxPool" {
        ReduceKind::Max
    } else {
        ReduceKind::Mean
    };
    let op = Op::Reduce {
        kind,
        axes: (2..rank).collect(),
        keep_dims: true,
    };
    one(ctx.add("pool", op, &[x])?)
}

/// DepthToSpace (DCR and CRD) and SpaceToDepth: reshape, transpose,
/// reshape.
pub(super) fn depth_space(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let [n, c, h, w] = shape[..] else {
        return Err("needs a rank-4 input [N, C, H, W]".into());
    };
    let b = ctx
        .attr_int("blocksize")?
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b > 0)
        .ok_or("attribute `blocksize` must be positive")?;
    // Every size below is at most the input's element count times b², so
    // bounding b² by it keeps the arithmetic exact.
    if b.checked_mul(b)
        .and_then(|bb| bb.checked_mul(n * c * h * w))
        .is_none()
    {
        return Err(format!("attribute `blocksize` {b} is too large").into());
    }
    let (split, perm, out) = if ctx.op_type() == "DepthToSpace" {
        if c % (b * b) != 0 {
            return Err(format!("blocksize {b}² does not divide {c} channels").into());
        }
        let c2 = c / (b * b);
        let crd = ctx.attr_string("mode")?.as_deref() == Some("CRD");
        if crd {
            (
                vec![n, c2, b, b, h, w],
                vec![0, 1, 4, 2, 5, 3],
                vec![n, c2, h * b, w * b],
            )
        } else {
            (
                vec![n, b, b, c2, h, w],
                vec![0, 3, 4, 1, 5, 2],
                vec![n, c2, h * b, w * b],
            )
        }
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(format!("blocksize {b} does not divide {h}×{w}").into());
        }
        // DCR: channel = (bh·b + bw)·C + c; CRD: c·b² + bh·b + bw.
        let perm = if ctx.attr_string("mode")?.as_deref() == Some("CRD") {
            vec![0, 1, 3, 5, 2, 4]
        } else {
            vec![0, 3, 5, 1, 2, 4]
        };
        (
            vec![n, c, h / b, b, w / b, b],
            perm,
            vec![n, c * b * b, h / b, w / b],
        )
    };
    let split = ctx.reshape("split", x, split)?;
    let moved = ctx.add("transpose", Op::Transpose { perm }, &[split])?;
    one(ctx.reshape("merged", moved, out)?)
}

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
pub(super) fn arg_extreme(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
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
pub(super) fn top_k(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
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
    let masked = scalar_like(ctx, "masked", x, super::pool::lowest(ty.dtype))?;
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
pub(super) fn one_hot(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
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

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn reduce_prod_of_every_length_is_the_product() {
        for n in 0..=9usize {
            let values: Vec<i64> = (0..2 * n as i64).map(|v| v % 5 - 2).collect();
            let got = run_node(
                "ReduceProd",
                13,
                &[("x", i(&[2, n], &values))],
                &["y"],
                vec![("axes", A::Is(vec![1])), ("keepdims", A::I(0))],
            );
            let want: Vec<i64> = (0..2)
                .map(|r| values[r * n..(r + 1) * n].iter().product())
                .collect();
            assert_eq!(got[0].shape(), &[2]);
            assert_eq!(got[0].to_i64_vec(), want, "n = {n}");
        }
    }

    #[test]
    fn softplus_neither_overflows_nor_loses_large_inputs() {
        let x = f(&[4], &[-100., 0., 1., 100.]);
        let got = run_node("Softplus", 13, &[("x", x)], &["y"], vec![]);
        let want = [0.0, std::f32::consts::LN_2, 1.313_261_7, 100.0];
        assert_close(&got[0], &[4], &want);
    }

    #[test]
    fn log_sum_exp_is_stable_and_keeps_infinities() {
        let x = f(
            &[3, 2],
            &[1000., 1000., f32::NEG_INFINITY, 0., f32::INFINITY, 1.],
        );
        let got = run_node(
            "ReduceLogSumExp",
            13,
            &[("x", x)],
            &["y"],
            vec![("axes", A::Is(vec![1])), ("keepdims", A::I(0))],
        );
        let y = got[0].to_f32_vec();
        assert_eq!(got[0].shape(), &[3]);
        assert!(
            (y[0] - (1000.0 + std::f32::consts::LN_2)).abs() < 1e-3,
            "{y:?}"
        );
        assert!(y[1].abs() < 1e-6, "{y:?}");
        assert_eq!(y[2], f32::INFINITY, "{y:?}");
    }

    #[test]
    fn depth_to_space_and_back_is_the_identity_in_both_modes() {
        let values: Vec<f32> = (0..32).map(|v| v as f32).collect();
        for mode in ["DCR", "CRD"] {
            let x = f(&[1, 8, 2, 2], &values);
            let up = run_node(
                "DepthToSpace",
                13,
                &[("x", x)],
                &["y"],
                vec![("blocksize", A::I(2)), ("mode", A::S(mode))],
            );
            assert_eq!(up[0].shape(), &[1, 2, 4, 4]);
            let down = run_node(
                "SpaceToDepth",
                13,
                &[("y", up[0].clone())],
                &["z"],
                vec![("blocksize", A::I(2)), ("mode", A::S(mode))],
            );
            assert_close(&down[0], &[1, 8, 2, 2], &values);
        }
    }
}
