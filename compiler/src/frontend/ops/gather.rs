//! Gather, GatherElements, GatherND.

use crate::graph::{BinaryOp, NodeId, Op};
use crate::tensor::Tensor;

use super::super::ctx::{built_constant, ConvertResult, Ctx};
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

/// GatherND with `batch_dims` (default 0). Compile-time indices stay one
/// node (static copies); indices computed at run time become one row
/// Gather: each index tuple is flattened (negative components wrapped,
/// times the strides of the indexed dimensions, summed, plus the batch's
/// offset) into a row of `data` reshaped to `[rows, rest…]`.
pub(super) fn gather_nd(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (data, indices) = (ctx.input(0)?, ctx.input(1)?);
    let batch_dims = usize::try_from(ctx.attr_int("batch_dims")?.unwrap_or(0))
        .map_err(|_| "batch_dims must be >= 0")?;
    if ctx.node_value(indices)?.is_some() {
        return one(ctx.add("gather_nd", Op::GatherNd { batch_dims }, &[data, indices])?);
    }
    let (d_shape, i_ty) = (ctx.ty(data).shape, ctx.ty(indices));
    let i_shape = i_ty.shape.clone();
    let k = *i_shape.last().ok_or("indices must have rank >= 1")?;
    if batch_dims >= i_shape.len()
        || batch_dims + k > d_shape.len()
        || d_shape[..batch_dims] != i_shape[..batch_dims]
    {
        return Err(format!(
            "indices {i_shape:?} do not address data {d_shape:?} with batch_dims {batch_dims}"
        )
        .into());
    }
    if k == 0 {
        // Whole slices per batch: the same node the constant case uses.
        return one(ctx.add("gather_nd", Op::GatherNd { batch_dims }, &[data, indices])?);
    }
    let dt = i_ty.dtype;
    let dims = &d_shape[batch_dims..batch_dims + k];
    let per_batch: i64 = dims.iter().map(|&d| d as i64).product();
    let mut flat = linear_rows(ctx, indices, dims)?;
    let last = i_shape.len() - 1;
    let batches: usize = d_shape[..batch_dims].iter().product();
    if batches > 1 {
        let mut shape = i_shape[..batch_dims].to_vec();
        shape.extend(std::iter::repeat_n(1, last - batch_dims));
        built_constant("the batch offsets", &shape)?;
        let offsets: Vec<i64> = (0..batches as i64).map(|b| b * per_batch).collect();
        let t = Tensor::from_i64_as(dt, shape, offsets).ok_or("batch offsets")?;
        let offsets = ctx.constant("batch_offsets", t)?;
        flat = ctx.add("row", Op::Binary(BinaryOp::Add), &[flat, offsets])?;
    }
    let rows = batches * per_batch as usize;
    let mut table = vec![rows];
    table.extend(&d_shape[batch_dims + k..]);
    let table = ctx.reshape("rows", data, table)?;
    one(ctx.add("gather_nd", Op::Gather { axis: 0 }, &[table, flat])?)
}

/// One linear row number per index tuple (the last axis of `indices`)
/// into the dimensions `dims` the tuples address: Σ index[d] · stride[d],
/// each component wrapped first when negative, in the indices' type and
/// without the tuple axis. GatherND and ScatterND share it.
pub(super) fn linear_rows(ctx: &mut Ctx, indices: NodeId, dims: &[usize]) -> ConvertResult<NodeId> {
    let i_ty = ctx.ty(indices);
    let dt = i_ty.dtype;
    let dims: Vec<i64> = dims.iter().map(|&d| d as i64).collect();
    let k = dims.len();
    let mut strides = vec![1i64; k];
    for j in (0..k.saturating_sub(1)).rev() {
        strides[j] = strides[j + 1] * dims[j + 1];
    }
    let vector = |ctx: &mut Ctx, part: &str, v: Vec<i64>| {
        let t = Tensor::from_i64_as(dt, vec![v.len()], v).ok_or("index constant")?;
        ctx.constant(part, t)
    };
    let dims_c = vector(ctx, "dims", dims)?;
    let strides_c = vector(ctx, "strides", strides)?;
    let zero = ctx.scalar("zero", dt, 0.0)?;
    let bin = |ctx: &mut Ctx, part: &str, op: BinaryOp, a: NodeId, b: NodeId| {
        ctx.add(part, Op::Binary(op), &[a, b])
    };
    let negative = bin(ctx, "negative", BinaryOp::Less, indices, zero)?;
    let wrapped = bin(ctx, "wrapped", BinaryOp::Add, indices, dims_c)?;
    let index = ctx.add("index", Op::Where, &[negative, wrapped, indices])?;
    let scaled = bin(ctx, "scaled", BinaryOp::Mul, index, strides_c)?;
    ctx.sum("flat", scaled, vec![i_ty.rank() - 1], false)
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

    #[test]
    fn gather_nd_with_run_time_indices_becomes_a_row_gather() {
        // data [2, 3, 2]; batch_dims 1; one index per batch (negative wraps).
        let x = f(&[2, 3, 2], &(0..12).map(|v| v as f32).collect::<Vec<_>>());
        let idx = i(&[2, 1, 1], &[-1, 1]);
        let bytes = model(
            vec![node(
                "GatherND",
                &["x", "i"],
                &["y"],
                vec![("batch_dims", A::I(1))],
            )],
            &[("x", &x), ("i", &idx)],
            &[],
            &["y"],
            13,
        );
        let g = import(&bytes).expect("imports");
        let ops: Vec<&str> = g
            .node_ids()
            .into_iter()
            .map(|n| g.node(n).op.mnemonic())
            .collect();
        assert!(
            ops.contains(&"gather") && !ops.contains(&"gather_nd"),
            "{ops:?}"
        );
        let out = eval(&bytes, &[x, idx]);
        assert_close(&out[0], &[2, 1, 2], &[4., 5., 8., 9.]);
    }
}
