//! Normalizations: LayerNormalization (with its optional Mean and
//! InvStdDev outputs expanded into reductions) and RMSNormalization, which
//! stay ops in Graph IR; BatchNormalization (inference and training mode),
//! InstanceNormalization and GroupNormalization, composed.

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::Tensor;

use super::super::ctx::{built_constant, ConvertResult, Ctx};
use super::composite::{bin, float_attr, scalar_like, un};
use super::one;

/// LayerNormalization (opset 17): X, Scale, optional B; outputs Y and,
/// when requested, Mean and InvStdDev (with the normalized axes kept as 1).
pub(super) fn layer_normalization(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let scale = ctx.input(1)?;
    let ty = ctx.ty(x);
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(-1), ty.rank())?;
    let epsilon = ctx.attr_float("epsilon")?.unwrap_or(1e-5);
    let mut operands = vec![x, scale];
    operands.extend(ctx.opt_input(2));
    let y = ctx.add("layer_norm", Op::LayerNorm { axis, epsilon }, &operands)?;
    let mut outputs = vec![Some(y)];
    let wants_stats = (1..3).any(|i| ctx.output_name(i).is_some());
    if wants_stats {
        let axes: Vec<usize> = (axis..ty.rank()).collect();
        let mean_op = Op::Reduce {
            kind: ReduceKind::Mean,
            axes,
            keep_dims: true,
        };
        let mean = ctx.add("mean", mean_op.clone(), &[x])?;
        let centered = ctx.add("centered", Op::Binary(BinaryOp::Sub), &[x, mean])?;
        let square = ctx.add("square", Op::Binary(BinaryOp::Mul), &[centered, centered])?;
        let variance = ctx.add("variance", mean_op, &[square])?;
        let eps = ctx.scalar("epsilon", ty.dtype, f64::from(epsilon))?;
        let shifted = ctx.add("variance_eps", Op::Binary(BinaryOp::Add), &[variance, eps])?;
        let std_dev = ctx.add("std_dev", Op::Unary(UnaryOp::Sqrt), &[shifted])?;
        let inv = ctx.add("inv_std_dev", Op::Unary(UnaryOp::Reciprocal), &[std_dev])?;
        outputs.push(Some(mean));
        outputs.push(Some(inv));
    }
    Ok(outputs)
}

/// RMSNormalization (opset 23): X, scale.
pub(super) fn rms_normalization(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let scale = ctx.input(1)?;
    let rank = ctx.ty(x).rank();
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(-1), rank)?;
    let epsilon = ctx.attr_float("epsilon")?.unwrap_or(1e-5);
    Ok(vec![Some(ctx.add(
        "rms_norm",
        Op::RmsNorm { axis, epsilon },
        &[x, scale],
    )?)])
}

/// A per-channel parameter `[C]` shaped to broadcast over `[N, C, …]`.
fn per_channel(ctx: &mut Ctx, part: &str, p: NodeId, rank: usize) -> ConvertResult<NodeId> {
    let c = ctx.ty(p).numel();
    let mut shape = vec![1; rank.saturating_sub(1)];
    if let Some(first) = shape.first_mut() {
        *first = c;
    }
    ctx.reshape(part, p, shape)
}

/// BatchNormalization per channel (axis 1): `(x − mean) / sqrt(var + ε) ·
/// scale + B`. In inference mode `mean` and `var` are the inputs; in
/// training mode (opset ≥ 14 `training_mode = 1`) they are the batch's
/// statistics over every axis but 1 (population variance), and the
/// optional outputs are the updated running statistics
/// `input · momentum + batch · (1 − momentum)`.
pub(super) fn batch_normalization(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let training = ctx.attr_int("training_mode")?.unwrap_or(0) != 0;
    if !training && ctx.output_count() > 1 {
        return Err(
            "BatchNormalization's running mean and variance outputs need training_mode = 1".into(),
        );
    }
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    if rank < 2 {
        return Err("BatchNormalization needs rank >= 2".into());
    }
    let epsilon = float_attr(ctx, "epsilon", 1e-5)?;
    let (scale, bias) = (ctx.input(1)?, ctx.input(2)?);
    let (input_mean, input_var) = (ctx.input(3)?, ctx.input(4)?);
    let scale = per_channel(ctx, "scale_c", scale, rank)?;
    let bias = per_channel(ctx, "bias_c", bias, rank)?;
    let mut outputs = vec![None; ctx.output_count().max(1)];
    let (mean, var) = if training {
        let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
        let mean_of = |ctx: &mut Ctx, part: &str, v: NodeId| {
            let op = Op::Reduce {
                kind: ReduceKind::Mean,
                axes: axes.clone(),
                keep_dims: true,
            };
            ctx.add(part, op, &[v])
        };
        let mean = mean_of(ctx, "batch_mean", x)?;
        let centered = bin(ctx, "batch_centered", BinaryOp::Sub, x, mean)?;
        let squared = bin(ctx, "batch_squared", BinaryOp::Mul, centered, centered)?;
        let var = mean_of(ctx, "batch_var", squared)?;
        let momentum = float_attr(ctx, "momentum", 0.9)?;
        for (slot, (part, batch, input)) in [
            ("running_mean", mean, input_mean),
            ("running_var", var, input_var),
        ]
        .into_iter()
        .enumerate()
        {
            if ctx.output_name(slot + 1).is_none() {
                continue;
            }
            let c = ctx.ty(input).shape;
            let batch = ctx.reshape(&format!("{part}_batch"), batch, c)?;
            let keep = scalar_like(ctx, &format!("{part}_momentum"), input, momentum)?;
            let take = scalar_like(ctx, &format!("{part}_rest"), input, 1.0 - momentum)?;
            let old = bin(ctx, &format!("{part}_old"), BinaryOp::Mul, input, keep)?;
            let new = bin(ctx, &format!("{part}_new"), BinaryOp::Mul, batch, take)?;
            outputs[slot + 1] = Some(bin(ctx, part, BinaryOp::Add, old, new)?);
        }
        (mean, var)
    } else {
        (
            per_channel(ctx, "mean_c", input_mean, rank)?,
            per_channel(ctx, "var_c", input_var, rank)?,
        )
    };
    let eps = scalar_like(ctx, "epsilon", var, epsilon)?;
    let shifted = bin(ctx, "var_eps", BinaryOp::Add, var, eps)?;
    let std_dev = un(ctx, "std_dev", UnaryOp::Sqrt, shifted)?;
    let centered = bin(ctx, "centered", BinaryOp::Sub, x, mean)?;
    let normalized = bin(ctx, "normalized", BinaryOp::Div, centered, std_dev)?;
    let scaled = bin(ctx, "scaled", BinaryOp::Mul, normalized, scale)?;
    outputs[0] = Some(bin(ctx, "batch_norm", BinaryOp::Add, scaled, bias)?);
    Ok(outputs)
}

/// InstanceNormalization (statistics per sample and channel, over the
/// spatial axes) and GroupNormalization (per sample and group of
/// channels): a layer norm of `x` reshaped to `[N, G, rest]` with unit
/// scale, then the per-channel scale and bias.
pub(super) fn instance_group_normalization(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    let shape = ty.shape.clone();
    if shape.len() < 2 || !ty.dtype.is_float() {
        return Err("needs a float input of rank >= 2".into());
    }
    let (n, c) = (shape[0], shape[1]);
    let epsilon = ctx.attr_float("epsilon")?.unwrap_or(1e-5);
    let groups = if ctx.op_type() == "GroupNormalization" {
        let g = ctx
            .attr_int("num_groups")?
            .ok_or("attribute `num_groups` is required")?;
        usize::try_from(g)
            .ok()
            .filter(|&g| g > 0 && c % g == 0)
            .ok_or_else(|| format!("num_groups {g} does not divide {c} channels"))?
    } else {
        c
    };
    let total: usize = shape.iter().product();
    let rest = total.checked_div(n * groups).unwrap_or(0);
    let grouped = ctx.reshape("grouped", x, vec![n, groups, rest])?;
    built_constant("the unit scale", &[rest])?;
    let ones = Tensor::from_f32_as(ty.dtype, vec![rest], vec![1.0; rest]).ok_or("ones")?;
    let ones = ctx.constant("unit_scale", ones)?;
    let normalized = ctx.add(
        "normalized",
        Op::LayerNorm { axis: 2, epsilon },
        &[grouped, ones],
    )?;
    let normalized = ctx.reshape("ungrouped", normalized, shape.clone())?;
    let (scale, bias) = (ctx.input(1)?, ctx.input(2)?);
    let per_group = ctx.ty(scale).numel() == groups && groups != c;
    if per_group {
        // GroupNormalization opset 18: scale and bias per group.
        return Err(
            "GroupNormalization with per-group scale and bias (opset 18) is not supported; \
             opset 21 takes them per channel"
                .into(),
        );
    }
    let scale = per_channel(ctx, "scale_c", scale, shape.len())?;
    let bias = per_channel(ctx, "bias_c", bias, shape.len())?;
    let scaled = bin(ctx, "scaled", BinaryOp::Mul, normalized, scale)?;
    one(bin(ctx, "norm", BinaryOp::Add, scaled, bias)?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn layer_norm_with_mean_and_inv_std_dev_outputs() {
        let inputs = [
            ("x", f(&[2, 2], &[1., 3., 2., 6.])),
            ("s", f(&[2], &[1., 2.])),
            ("b", f(&[2], &[0., 1.])),
        ];
        let out = run_node(
            "LayerNormalization",
            17,
            &inputs,
            &["y", "mean", "inv"],
            vec![("epsilon", A::F(0.))],
        );
        assert_close(&out[0], &[2, 2], &[-1., 3., -1., 3.]);
        assert_close(&out[1], &[2, 1], &[2., 4.]);
        assert_close(&out[2], &[2, 1], &[1., 0.5]);
    }

    #[test]
    fn rms_norm_over_the_last_axis() {
        let inputs = [
            ("x", f(&[2, 2], &[3., 4., 0., 0.])),
            ("s", f(&[2], &[1., 2.])),
        ];
        let out = run_node(
            "RMSNormalization",
            23,
            &inputs,
            &["y"],
            vec![("epsilon", A::F(0.))],
        );
        let rms = 12.5f32.sqrt();
        let y = out[0].to_f32_vec();
        assert!(
            (y[0] - 3. / rms).abs() < 1e-6 && (y[1] - 8. / rms).abs() < 1e-6,
            "{y:?}"
        );
        assert!(y[2].is_nan(), "0 / sqrt(0 + 0) is NaN: {y:?}");
    }
}
