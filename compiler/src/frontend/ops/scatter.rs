//! ScatterND, ScatterElements and the deprecated Scatter.
//!
//! Without a reduction each becomes the Graph IR scatter that the DMA
//! engine runs (`dma.scatter`): ScatterElements directly, ScatterND as a
//! row scatter over the first `q` dimensions flattened (the index tuples
//! linearized in the graph). With a reduction (`add`, `mul`, `max`, `min`)
//! the result is composed: a one-hot comparison of every index with every
//! target position selects each update or the reduction's identity, a
//! reduction over the updates combines all contributions to a target (so
//! repeated indices all count, as ONNX specifies), and the data is combined
//! with that. The composed form costs `updates × targets` elements and is
//! refused above [`COMPOSED_LIMIT`].

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};
use crate::tensor::{DType, Tensor};

use super::super::ctx::{built_constant, ConvertResult, Ctx};
use super::super::ExpertRole;
use super::one;

/// The most elements the composed reduction form may build.
pub const COMPOSED_LIMIT: usize = 1 << 24;

/// A scatter's `reduction` attribute.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Reduction {
    Add,
    Mul,
    Max,
    Min,
}

/// The `reduction` attribute; `None` for the plain overwrite.
fn reduction(ctx: &Ctx) -> ConvertResult<Option<Reduction>> {
    Ok(Some(
        match ctx.attr_string("reduction")?.as_deref().unwrap_or("none") {
            "none" => return Ok(None),
            "add" => Reduction::Add,
            "mul" => Reduction::Mul,
            "max" => Reduction::Max,
            "min" => Reduction::Min,
            other => return Err(format!("unknown reduction `{other}`").into()),
        },
    ))
}

/// `indices` as i64 with negative entries wrapped by `dims` (a scalar or a
/// tensor broadcasting to the indices).
fn resolved(ctx: &mut Ctx, part: &str, indices: NodeId, dims: NodeId) -> ConvertResult<NodeId> {
    let indices = if ctx.ty(indices).dtype == DType::I64 {
        indices
    } else {
        ctx.add(
            &format!("{part}_i64"),
            Op::Cast { to: DType::I64 },
            &[indices],
        )?
    };
    let zero = ctx.scalar(&format!("{part}_zero"), DType::I64, 0.0)?;
    let negative = ctx.add(
        &format!("{part}_negative"),
        Op::Binary(BinaryOp::Less),
        &[indices, zero],
    )?;
    let wrapped = ctx.add(
        &format!("{part}_wrapped"),
        Op::Binary(BinaryOp::Add),
        &[indices, dims],
    )?;
    ctx.add(part, Op::Where, &[negative, wrapped, indices])
}

/// `data ⊕ reduce(contributions)` where target `t` on `axis` of `data`
/// receives every update whose (resolved, i64) index is `t`. `idx` and
/// `upd` have size 1 at `axis + 1`, where the targets are spread; `idx`
/// broadcasts to `upd`; reducing over `axis` leaves data's shape.
fn reduce_into(
    ctx: &mut Ctx,
    data: NodeId,
    idx: NodeId,
    upd: NodeId,
    axis: usize,
    kind: Reduction,
) -> ConvertResult<NodeId> {
    let targets = ctx.ty(data).shape[axis];
    let mut shape = ctx.ty(upd).shape;
    shape[axis + 1] = targets;
    let size: usize = shape.iter().product();
    if size > COMPOSED_LIMIT {
        return Err(format!(
            "a scatter with a reduction is composed over updates × targets = {size} elements \
             (at most {COMPOSED_LIMIT})"
        )
        .into());
    }
    let dtype = ctx.ty(data).dtype;
    if dtype == DType::Bool || (kind == Reduction::Min && dtype == DType::U8) {
        return Err(format!("a scatter reduction over {}", dtype.name()).into());
    }
    let rank = shape.len();
    let mut at = vec![1; rank];
    at[axis + 1] = targets;
    built_constant("the target positions", &at)?;
    let positions = Tensor::from_i64_as(DType::I64, at, (0..targets as i64).collect())
        .ok_or("cannot build target positions")?;
    let positions = ctx.constant("targets", positions)?;
    let hot = ctx.add("hot", Op::Binary(BinaryOp::Equal), &[idx, positions])?;
    let (values, identity) = match kind {
        Reduction::Add => (upd, 0.0),
        Reduction::Mul => (upd, 1.0),
        Reduction::Max => (upd, super::pool::lowest(dtype)),
        Reduction::Min => (
            ctx.add("negated", Op::Unary(UnaryOp::Neg), &[upd])?,
            super::pool::lowest(dtype),
        ),
    };
    let identity = ctx.scalar("identity", dtype, identity)?;
    let spread = ctx.add("contributions", Op::Where, &[hot, values, identity])?;
    let reduce = |kind| Op::Reduce {
        kind,
        axes: vec![axis],
        keep_dims: false,
    };
    let (combined, op) = match kind {
        Reduction::Add => (
            ctx.add("sum", reduce(ReduceKind::Sum), &[spread])?,
            BinaryOp::Add,
        ),
        Reduction::Mul => {
            let product = super::composite::product_along(ctx, spread, axis)?;
            let mut kept = ctx.ty(product).shape;
            kept.remove(axis);
            (ctx.reshape("product", product, kept)?, BinaryOp::Mul)
        }
        Reduction::Max => (
            ctx.add("max", reduce(ReduceKind::Max), &[spread])?,
            BinaryOp::Max,
        ),
        Reduction::Min => {
            let max = ctx.add("max_negated", reduce(ReduceKind::Max), &[spread])?;
            (
                ctx.add("min", Op::Unary(UnaryOp::Neg), &[max])?,
                BinaryOp::Min,
            )
        }
    };
    ctx.add("scatter", Op::Binary(op), &[data, combined])
}

/// `x` grown to `to` along every dimension but `axis` by appending `fill`.
fn pad_to(
    ctx: &mut Ctx,
    part: &str,
    mut x: NodeId,
    to: &[usize],
    axis: usize,
    fill: f64,
) -> ConvertResult<NodeId> {
    for (d, &want) in to.iter().enumerate() {
        let shape = ctx.ty(x).shape;
        if d == axis || shape[d] >= want {
            continue;
        }
        let mut extra = shape.clone();
        extra[d] = want - shape[d];
        let dtype = ctx.ty(x).dtype;
        let value = ctx.scalar(&format!("{part}_fill{d}"), dtype, fill)?;
        let block = ctx.add(
            &format!("{part}_pad{d}"),
            Op::Expand { shape: extra },
            &[value],
        )?;
        x = ctx.add(
            &format!("{part}_padded{d}"),
            Op::Concat { axis: d },
            &[x, block],
        )?;
    }
    Ok(x)
}

/// ScatterElements (`axis`, `reduction`) and the deprecated Scatter.
pub(super) fn scatter_elements(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    if let Some(ExpertRole::MaskedScatter(mask)) = ctx.expert {
        return one(expert_rows_added(ctx, mask)?);
    }
    let (data, indices, updates) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let shape = ctx.ty(data).shape;
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(0), shape.len())?;
    let Some(kind) = reduction(ctx)? else {
        return one(ctx.add(
            "scatter_elements",
            Op::ScatterElements { axis },
            &[data, indices, updates],
        )?);
    };
    let ishape = ctx.ty(indices).shape;
    if ishape.len() != shape.len() || ctx.ty(updates).shape != ishape {
        return Err(format!(
            "indices {ishape:?} and updates {:?} must have one shape of data's rank {}",
            ctx.ty(updates).shape,
            shape.len()
        )
        .into());
    }
    let dim = ctx.scalar("dim", DType::I64, shape[axis] as f64)?;
    let idx = resolved(ctx, "index", indices, dim)?;
    // Positions outside the indices' extent (other than on the axis) get
    // no update: their padded index -1 is never hot.
    let idx = pad_to(ctx, "index", idx, &shape, axis, -1.0)?;
    let fill = match kind {
        Reduction::Mul => 1.0,
        _ => 0.0,
    };
    let upd = pad_to(ctx, "updates", updates, &shape, axis, fill)?;
    let mut spread = ctx.ty(upd).shape;
    spread.insert(axis + 1, 1);
    let idx = ctx.reshape("index_spread", idx, spread.clone())?;
    let upd = ctx.reshape("updates_spread", upd, spread)?;
    one(reduce_into(ctx, data, idx, upd, axis, kind)?)
}

/// The `index_add_` of an expert loop made static (`expert_loop.rs`):
/// `ScatterElements(zeros [T, …], t, rows [T, …])` whose indices are every
/// token `t` in order (the inner `NonZero` became one position per token,
/// see `constant::token_positions`), masked by the expert's `[S, T]`
/// routing mask: the rows of the tokens the expert serves (`Σ_k mask[k,
/// t]` is 1 for them, 0 for the others). Checks what makes it exact:
/// zeros for data, axis 0, no reduction, and the shapes (the analysis
/// proved the indices are the enumerated tokens).
fn expert_rows_added(ctx: &mut Ctx, mask: NodeId) -> ConvertResult<NodeId> {
    let (data, indices, updates) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let not_loop = |why: &str| -> ConvertResult<NodeId> {
        Err(format!("an expert loop's scatter-add, but {why}").into())
    };
    let shape = ctx.ty(data).shape;
    let ushape = ctx.ty(updates).shape;
    let mshape = ctx.ty(mask).shape;
    if ctx.attr_int("axis")?.unwrap_or(0) != 0 || reduction(ctx)?.is_some() {
        return not_loop("it has an axis or a reduction");
    }
    let [_, tokens] = mshape[..] else {
        return not_loop("its mask is not [slots, tokens]");
    };
    if shape.first() != Some(&tokens) || ushape != shape {
        return not_loop(&format!(
            "data {shape:?}, updates {ushape:?} and mask {mshape:?} do not line up"
        ));
    }
    let zeros = ctx
        .node_value(data)?
        .is_some_and(|d| d.to_f64_vec().iter().all(|&v| v == 0.0));
    if !zeros {
        return not_loop("its data is not zeros");
    }
    // The indices are the enumerated tokens, in order: what the analysis
    // found them to be (`expert_loop::index_source`), and their shape.
    if ctx.ty(indices).shape != ushape {
        return not_loop("its indices do not have the updates' shape");
    }
    let dtype = ctx.ty(updates).dtype;
    let m = ctx.add("mask", Op::Cast { to: dtype }, &[mask])?;
    let served = ctx.sum("served", m, vec![0], false)?;
    let mut spread = vec![1; ushape.len()];
    spread[0] = tokens;
    let served = ctx.reshape("served_rows", served, spread)?;
    ctx.add(
        "served_updates",
        Op::Binary(BinaryOp::Mul),
        &[updates, served],
    )
}

/// ScatterND (`reduction`): the index tuples address the first `q`
/// dimensions of the data; each selects a slice of the remaining ones.
pub(super) fn scatter_nd(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (data, indices, updates) = (ctx.input(0)?, ctx.input(1)?, ctx.input(2)?);
    let shape = ctx.ty(data).shape;
    let ishape = ctx.ty(indices).shape;
    let q = *ishape.last().ok_or("indices must have rank >= 1")?;
    if q == 0 || q > shape.len() {
        return Err(format!(
            "index tuples of length {q} for data of rank {}",
            shape.len()
        )
        .into());
    }
    let prefix = ishape[..ishape.len() - 1].to_vec();
    let slice = shape[q..].to_vec();
    let expected: Vec<usize> = prefix.iter().chain(&slice).copied().collect();
    if ctx.ty(updates).shape != expected {
        return Err(format!(
            "updates {:?} do not match indices {ishape:?} and data {shape:?} (expected {expected:?})",
            ctx.ty(updates).shape
        )
        .into());
    }
    let kind = reduction(ctx)?;
    let rows: usize = shape[..q].iter().product();
    let count: usize = prefix.iter().product();
    // One linear row number per tuple: Σ index[d] · stride[d], each
    // component wrapped first when negative.
    let linear = if q == 1 && kind.is_none() {
        ctx.reshape("rows", indices, vec![count])?
    } else {
        let indices = if ctx.ty(indices).dtype == DType::I64 {
            indices
        } else {
            ctx.add("index_i64", Op::Cast { to: DType::I64 }, &[indices])?
        };
        let sum = super::gather::linear_rows(ctx, indices, &shape[..q])?;
        ctx.reshape("rows", sum, vec![count])?
    };
    let mut row_shape = vec![rows];
    row_shape.extend_from_slice(&slice);
    let table = ctx.reshape("table", data, row_shape.clone())?;
    let mut upd_shape = vec![count];
    upd_shape.extend_from_slice(&slice);
    let upd = ctx.reshape("update_rows", updates, upd_shape)?;
    let out = if let Some(kind) = kind {
        let mut spread = vec![count, 1];
        spread.extend(slice.iter().map(|_| 1));
        let idx = ctx.reshape("index_spread", linear, spread)?;
        let mut spread = vec![count, 1];
        spread.extend_from_slice(&slice);
        let upd = ctx.reshape("updates_spread", upd, spread)?;
        reduce_into(ctx, table, idx, upd, 0, kind)?
    } else {
        ctx.add("scatter_nd", Op::Scatter { axis: 0 }, &[table, linear, upd])?
    };
    one(ctx.reshape("result", out, shape)?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    fn s(v: &'static str) -> A {
        A::S(v)
    }

    #[test]
    fn scatter_elements_overwrites_in_order() {
        let data = f(&[2, 3], &[0.; 6]);
        let out = run_node(
            "ScatterElements",
            18,
            &[
                ("d", data),
                ("i", i(&[2, 2], &[1, 1, -1, 0])),
                ("u", f(&[2, 2], &[1., 2., 3., 4.])),
            ],
            &["y"],
            vec![("axis", A::I(1))],
        );
        // Row 0: indices 1, 1 (the later wins); row 1: indices 2 (-1), 0.
        assert_close(&out[0], &[2, 3], &[0., 2., 0., 4., 0., 3.]);
    }

    #[test]
    fn scatter_elements_reductions_count_repeated_indices() {
        let data = f(&[1, 4], &[1., 2., 3., 4.]);
        let idx = i(&[1, 3], &[1, 1, 3]);
        let upd = f(&[1, 3], &[5., 7., -2.]);
        let run = |r: &'static str| {
            run_node(
                "ScatterElements",
                18,
                &[("d", data.clone()), ("i", idx.clone()), ("u", upd.clone())],
                &["y"],
                vec![("axis", A::I(1)), ("reduction", s(r))],
            )
        };
        assert_close(&run("add")[0], &[1, 4], &[1., 14., 3., 2.]);
        assert_close(&run("mul")[0], &[1, 4], &[1., 70., 3., -8.]);
        assert_close(&run("max")[0], &[1, 4], &[1., 7., 3., 4.]);
        assert_close(&run("min")[0], &[1, 4], &[1., 2., 3., -2.]);
    }

    #[test]
    fn scatter_elements_with_indices_smaller_than_data() {
        let data = f(&[3, 3], &[0.; 9]);
        let out = run_node(
            "ScatterElements",
            18,
            &[
                ("d", data),
                ("i", i(&[2, 2], &[2, 0, 1, 2])),
                ("u", f(&[2, 2], &[1., 2., 3., 4.])),
            ],
            &["y"],
            vec![("axis", A::I(0)), ("reduction", s("add"))],
        );
        assert_close(&out[0], &[3, 3], &[0., 2., 0., 3., 0., 0., 1., 4., 0.]);
    }

    #[test]
    fn scatter_nd_rows_and_elements() {
        let data = f(&[3, 2], &[0.; 6]);
        let out = run_node(
            "ScatterND",
            18,
            &[
                ("d", data.clone()),
                ("i", i(&[2, 1], &[2, -3])),
                ("u", f(&[2, 2], &[1., 2., 3., 4.])),
            ],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[3, 2], &[3., 4., 0., 0., 1., 2.]);
        let out = run_node(
            "ScatterND",
            18,
            &[
                ("d", data.clone()),
                ("i", i(&[2, 2], &[1, 1, -1, 0])),
                ("u", f(&[2], &[5., 6.])),
            ],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[3, 2], &[0., 0., 0., 5., 6., 0.]);
        let out = run_node(
            "ScatterND",
            18,
            &[
                ("d", data),
                ("i", i(&[3, 2], &[1, 1, 1, 1, 0, 0])),
                ("u", f(&[3], &[5., 6., 7.])),
            ],
            &["y"],
            vec![("reduction", s("add"))],
        );
        assert_close(&out[0], &[3, 2], &[7., 0., 0., 11., 0., 0.]);
    }

    #[test]
    fn bad_scatters_are_named_errors() {
        let (d, idx, u) = (
            f(&[3, 2], &[0.; 6]),
            i(&[2, 1], &[0, 1]),
            f(&[2, 3], &[0.; 6]),
        );
        let bytes = model(
            vec![node("ScatterND", &["d", "i", "u"], &["y"], vec![])],
            &[("d", &d), ("i", &idx), ("u", &u)],
            &[],
            &["y"],
            18,
        );
        let err = import(&bytes).expect_err("refused").to_string();
        assert!(err.contains("updates [2, 3] do not match"), "{err}");
        let bytes = model(
            vec![node(
                "ScatterElements",
                &["d", "i", "u"],
                &["y"],
                vec![("reduction", s("sum"))],
            )],
            &[("d", &d), ("i", &idx), ("u", &f(&[2, 1], &[0.; 2]))],
            &[],
            &["y"],
            18,
        );
        let err = import(&bytes).expect_err("refused").to_string();
        assert!(err.contains("unknown reduction `sum`"), "{err}");
        // An index out of range is a run-time error of the interpreter.
        let (d, idx, u) = (f(&[1, 2], &[0., 0.]), i(&[1, 1], &[2]), f(&[1, 1], &[1.]));
        let bytes = model(
            vec![node(
                "ScatterElements",
                &["d", "i", "u"],
                &["y"],
                vec![("axis", A::I(1))],
            )],
            &[("d", &d), ("i", &idx), ("u", &u)],
            &[],
            &["y"],
            18,
        );
        let g = import(&bytes).expect("imports");
        let err = crate::interp::run(&g, &[d, idx, u])
            .expect_err("index out of range")
            .to_string();
        assert!(err.contains("out of range"), "{err}");
    }
}
