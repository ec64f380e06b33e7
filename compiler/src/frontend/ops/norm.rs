//! Normalizations that stay ops in Graph IR: LayerNormalization (with its
//! optional Mean and InvStdDev outputs expanded into reductions) and
//! RMSNormalization.

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};

use super::super::ctx::{ConvertResult, Ctx};

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
