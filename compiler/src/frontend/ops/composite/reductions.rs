//! Reductions composed from `reduce_sum`/`reduce_max` (ReduceMin,
//! ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
//! ReduceLogSumExp) and GlobalAverage/MaxPool.

use crate::frontend::ctx::{ConvertResult, Ctx};
use crate::frontend::ops::one;
use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};

use super::{bin, scalar_like, un};

/// The reductions composed from `reduce_sum`/`reduce_max`: ReduceMin
/// (`−max(−x)`), ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum,
/// ReduceLogSumExp (`log(sum(exp(x − max))) + max`).
pub(in crate::frontend::ops) fn reduce(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let op_type = ctx.op_type().to_string();
    // With no axes and `noop_with_empty_axes`, only the elementwise part.
    let (axes, keep_dims) = crate::frontend::ops::reduce::reduction_axes(ctx, rank)?;
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
pub(in crate::frontend::ops) fn product_along(
    ctx: &mut Ctx,
    x: NodeId,
    axis: usize,
) -> ConvertResult<NodeId> {
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
            let op =
                crate::frontend::ops::movement::window(&shape, axis, start as i64, end as i64, 1);
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
            let first_op = crate::frontend::ops::movement::window(&half, axis, 0, 1, 1);
            let first = ctx.add(&format!("first{axis}_{step}"), first_op, &[product])?;
            let first = bin(
                ctx,
                &format!("with_odd{axis}_{step}"),
                BinaryOp::Mul,
                first,
                odd,
            )?;
            product = if h > 1 {
                let rest_op = crate::frontend::ops::movement::window(&half, axis, 1, h as i64, 1);
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
pub(in crate::frontend::ops) fn global_pool(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
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
}
