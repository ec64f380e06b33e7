//! Gather, GatherElements, GatherND.

use crate::graph::{NodeId, Op};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

/// Gather along `axis` (default 0).
pub(super) fn gather(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (data, indices) = (ctx.input(0)?, ctx.input(1)?);
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(0), ctx.ty(data).rank())?;
    one(ctx.add("gather", Op::Gather { axis }, &[data, indices])?)
}

/// GatherElements along `axis` (default 0).
pub(super) fn gather_elements(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (data, indices) = (ctx.input(0)?, ctx.input(1)?);
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(0), ctx.ty(data).rank())?;
    one(ctx.add(
        "gather_elements",
        Op::GatherElements { axis },
        &[data, indices],
    )?)
}

/// GatherND with `batch_dims` (default 0).
pub(super) fn gather_nd(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (data, indices) = (ctx.input(0)?, ctx.input(1)?);
    let batch_dims = usize::try_from(ctx.attr_int("batch_dims")?.unwrap_or(0))
        .map_err(|_| "batch_dims must be >= 0")?;
    one(ctx.add("gather_nd", Op::GatherNd { batch_dims }, &[data, indices])?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn gather_negative_axis_and_indices() {
        let x = f(&[2, 3], &[1., 2., 3., 4., 5., 6.]);
        let out = run_node(
            "Gather",
            13,
            &[("x", x), ("i", i(&[1, 2], &[0, -1]))],
            &["y"],
            vec![("axis", A::I(-1))],
        );
        assert_close(&out[0], &[2, 1, 2], &[1., 3., 4., 6.]);
    }

    #[test]
    fn gather_elements_and_gather_nd() {
        let x = f(&[2, 2], &[1., 2., 3., 4.]);
        let out = run_node(
            "GatherElements",
            13,
            &[("x", x.clone()), ("i", i(&[2, 2], &[1, 0, 0, -1]))],
            &["y"],
            vec![("axis", A::I(0))],
        );
        assert_close(&out[0], &[2, 2], &[3., 2., 1., 4.]);
        let out = run_node(
            "GatherND",
            13,
            &[("x", x), ("i", i(&[2, 2], &[0, 1, 1, 0]))],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[2], &[2., 3.]);
    }
}
