//! ONNX ops composed from Graph IR ops in the frontend, so each runs
//! wherever its parts run (and fuses like them): the activations (LeakyRelu,
//! PRelu, Elu, Selu, Celu, ThresholdedRelu, HardSigmoid, HardSwish,
//! Softplus, Softsign, Mish), LogSoftmax, IsNaN, IsInf, Xor, the
//! reductions ReduceMin, ReduceProd, ReduceL1, ReduceL2, ReduceSumSquare,
//! ReduceLogSum and ReduceLogSumExp, GlobalAverage/MaxPool, DepthToSpace
//! and SpaceToDepth, ArgMax/ArgMin, TopK, OneHot, and QuantizeLinear,
//! DequantizeLinear, DynamicQuantizeLinear, MatMulInteger and QLinearMatMul
//! (`quant.rs`).

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::Tensor;

use super::super::ctx::{built_constant, ConvertResult, Ctx};
use super::one;

mod depth_space;
mod indexing;
mod quant;
mod reductions;

pub(super) use depth_space::depth_space;
pub(super) use indexing::{arg_extreme, one_hot, top_k};
pub(super) use quant::{
    dequantize_linear, dynamic_quantize_linear, matmul_integer, qlinear_matmul, quantize_linear,
};
pub(super) use reductions::{global_pool, product_along, reduce};

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

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn softplus_neither_overflows_nor_loses_large_inputs() {
        let x = f(&[4], &[-100., 0., 1., 100.]);
        let got = run_node("Softplus", 13, &[("x", x)], &["y"], vec![]);
        let want = [0.0, std::f32::consts::LN_2, 1.313_261_7, 100.0];
        assert_close(&got[0], &[4], &want);
    }
}
