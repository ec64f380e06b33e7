//! ReduceMean, ReduceSum, ReduceMax. Axes come from the `axes` attribute
//! (ReduceSum before opset 13, the others before 18) or the second input
//! (after); whichever the node carries is used.

use crate::graph::{NodeId, Op, ReduceKind};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

/// The sorted, distinct axes a reduction of a rank-`rank` input reduces
/// (from the `axes` attribute or input 1; all when none are given) and its
/// `keepdims`; `None` for the axes when none are given and
/// `noop_with_empty_axes` is set (the input passes through).
pub(super) fn reduction_axes(
    ctx: &mut Ctx,
    rank: usize,
) -> ConvertResult<(Option<Vec<usize>>, bool)> {
    let keep_dims = ctx.attr_int("keepdims")?.unwrap_or(1) != 0;
    let noop = ctx.attr_int("noop_with_empty_axes")?.unwrap_or(0) != 0;
    let given = match ctx.attr_ints("axes")? {
        Some(axes) => Some(axes),
        None => ctx.opt_ints_input(1)?,
    };
    let mut axes = match given {
        Some(axes) if !axes.is_empty() => axes
            .into_iter()
            .map(|a| ctx.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        _ if noop => return Ok((None, keep_dims)),
        _ => (0..rank).collect(),
    };
    axes.sort_unstable();
    axes.dedup();
    Ok((Some(axes), keep_dims))
}

/// A reduction; `noop_with_empty_axes` and `keepdims` as in ONNX.
pub(super) fn reduce(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let kind = match ctx.op_type() {
        "ReduceMean" => ReduceKind::Mean,
        "ReduceSum" => ReduceKind::Sum,
        _ => ReduceKind::Max,
    };
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let (Some(axes), keep_dims) = reduction_axes(ctx, rank)? else {
        return one(x);
    };
    let name = match kind {
        ReduceKind::Mean => "reduce_mean",
        ReduceKind::Sum => "reduce_sum",
        ReduceKind::Max => "reduce_max",
    };
    one(ctx.add(
        name,
        Op::Reduce {
            kind,
            axes,
            keep_dims,
        },
        &[x],
    )?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    fn x() -> crate::tensor::Tensor {
        f(&[2, 3], &[1., 2., 3., 4., 5., 9.])
    }

    #[test]
    fn reduce_sum_axes_input_negative_no_keepdims() {
        let out = run_node_with_consts(
            "ReduceSum",
            13,
            &[("x", x())],
            &[("axes", i(&[1], &[-1]))],
            &["x", "axes"],
            &["y"],
            vec![("keepdims", A::I(0))],
        );
        assert_close(&out[0], &[2], &[6., 18.]);
    }

    #[test]
    fn reduce_mean_axes_attribute_keeps_dims() {
        let out = run_node(
            "ReduceMean",
            17,
            &[("x", x())],
            &["y"],
            vec![("axes", A::Is(vec![0]))],
        );
        assert_close(&out[0], &[1, 3], &[2.5, 3.5, 6.]);
    }

    #[test]
    fn reduce_max_axes_input_from_opset_18() {
        let out = run_node_with_consts(
            "ReduceMax",
            18,
            &[("x", x())],
            &[("axes", i(&[1], &[1]))],
            &["x", "axes"],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[2, 1], &[3., 9.]);
    }

    #[test]
    fn empty_axes_reduce_everything_or_nothing() {
        let all = run_node(
            "ReduceSum",
            13,
            &[("x", x())],
            &["y"],
            vec![("keepdims", A::I(0))],
        );
        assert_close(&all[0], &[], &[24.]);
        let none = run_node(
            "ReduceMax",
            18,
            &[("x", x())],
            &["y"],
            vec![("noop_with_empty_axes", A::I(1))],
        );
        assert_close(&none[0], &[2, 3], &[1., 2., 3., 4., 5., 9.]);
    }
}
