//! Shape and layout ops: Transpose, Reshape, Flatten, Squeeze, Unsqueeze
//! (the last three become `reshape`), Concat, Split (one `slice` per
//! output), Slice, Expand, Shape and Size (constants: shapes are static),
//! Trilu.

use crate::graph::infer::{broadcast_shapes, slice_len};
use crate::graph::{NodeId, Op};
use crate::tensor::Tensor;

use super::super::ctx::{check_size, static_shape, ConvertResult, Ctx};
use super::one;

/// Transpose; `perm` defaults to reversing the dimensions.
pub(super) fn transpose(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let rank = ctx.ty(x).rank();
    let perm = match ctx.attr_ints("perm")? {
        Some(p) => p
            .into_iter()
            .map(|a| ctx.axis(a, rank))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..rank).rev().collect(),
    };
    if perm.iter().enumerate().all(|(i, &p)| i == p) && perm.len() == rank {
        return one(x);
    }
    one(ctx.add("transpose", Op::Transpose { perm }, &[x])?)
}

/// Reshape: 0 copies the input's dimension (unless `allowzero`), -1 is
/// inferred. The target comes from input 1 (opset >= 5) or the `shape`
/// attribute (opset < 5).
pub(super) fn reshape(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let input = ctx.ty(x).shape;
    let target = match ctx.attr_ints("shape")? {
        Some(s) if ctx.opset < 5 => s,
        _ => ctx
            .opt_ints_input(1)?
            .ok_or("the target shape (input 1) is required")?,
    };
    let allow_zero = ctx.attr_int("allowzero")?.unwrap_or(0) != 0;
    let mut shape = Vec::with_capacity(target.len());
    let mut inferred = None;
    for (i, &d) in target.iter().enumerate() {
        shape.push(match d {
            -1 if inferred.is_none() => {
                inferred = Some(i);
                1
            }
            -1 => return Err(format!("shape {target:?} has more than one -1").into()),
            0 if !allow_zero => *input.get(i).ok_or_else(|| {
                format!("shape {target:?}: 0 at {i} copies a dimension the input {input:?} lacks")
            })?,
            d => usize::try_from(d)
                .map_err(|_| format!("shape {target:?} has a negative dimension"))?,
        });
    }
    let total = crate::tensor::checked_numel(&input).ok_or("input size overflows")?;
    if let Some(i) = inferred {
        let known = crate::tensor::checked_numel(&shape)
            .ok_or_else(|| format!("shape {target:?} overflows"))?;
        if known == 0 || total % known != 0 {
            return Err(format!("cannot infer -1 in {target:?} for input {input:?}").into());
        }
        shape[i] = total / known;
    }
    check_size(&shape)?;
    if crate::tensor::checked_numel(&shape) != Some(total) {
        return Err(format!("cannot reshape {input:?} to {target:?}").into());
    }
    one(ctx.reshape("reshape", x, shape)?)
}

/// Flatten to `[prod(d[..axis]), prod(d[axis..])]`.
pub(super) fn flatten(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let rank = shape.len() as i64;
    let given = ctx.attr_int("axis")?.unwrap_or(1);
    // Unlike most axes, Flatten's may equal the rank.
    let axis = if given < 0 { given + rank } else { given };
    if !(0..=rank).contains(&axis) {
        return Err(format!("axis {given} is out of range for rank {rank}").into());
    }
    let axis = axis as usize;
    let outer = shape[..axis].iter().product();
    let inner = shape[axis..].iter().product();
    one(ctx.reshape("flatten", x, vec![outer, inner])?)
}

fn axes_of(ctx: &mut Ctx) -> ConvertResult<Option<Vec<i64>>> {
    match ctx.attr_ints("axes")? {
        Some(axes) => Ok(Some(axes)),
        None => ctx.opt_ints_input(1),
    }
}

/// Squeeze the given size-1 axes (all of them by default).
pub(super) fn squeeze(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let axes = match axes_of(ctx)? {
        Some(axes) => axes
            .into_iter()
            .map(|a| ctx.axis(a, shape.len()))
            .collect::<Result<Vec<_>, _>>()?,
        None => (0..shape.len()).filter(|&d| shape[d] == 1).collect(),
    };
    if let Some(&d) = axes.iter().find(|&&d| shape[d] != 1) {
        return Err(format!("cannot squeeze axis {d} of size {} in {shape:?}", shape[d]).into());
    }
    let out = (0..shape.len())
        .filter(|d| !axes.contains(d))
        .map(|d| shape[d])
        .collect();
    one(ctx.reshape("squeeze", x, out)?)
}

/// Unsqueeze: insert size-1 axes (positions in the output).
pub(super) fn unsqueeze(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let axes = axes_of(ctx)?.ok_or("axes are required")?;
    let rank = shape.len() + axes.len();
    let mut positions = axes
        .into_iter()
        .map(|a| ctx.axis(a, rank))
        .collect::<Result<Vec<_>, _>>()?;
    positions.sort_unstable();
    if positions.windows(2).any(|w| w[0] == w[1]) {
        return Err("axes must be distinct".into());
    }
    let mut dims = shape.iter();
    let out = (0..rank)
        .map(|d| {
            if positions.contains(&d) {
                1
            } else {
                dims.next().copied().unwrap_or(1)
            }
        })
        .collect();
    one(ctx.reshape("unsqueeze", x, out)?)
}

/// Concat along `axis`.
pub(super) fn concat(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let inputs: Vec<NodeId> = (0..ctx.input_count())
        .map(|i| ctx.input(i))
        .collect::<Result<_, _>>()?;
    let first = *inputs.first().ok_or("needs at least one input")?;
    let rank = ctx.ty(first).rank();
    let default_axis = if ctx.opset < 4 { Some(1) } else { None };
    let axis = ctx
        .attr_int("axis")?
        .or(default_axis)
        .ok_or("attribute `axis` is required")?;
    let axis = ctx.axis(axis, rank)?;
    if inputs.len() == 1 {
        return one(first);
    }
    one(ctx.add("concat", Op::Concat { axis }, &inputs)?)
}

/// A full-rank slice selecting `[start, start + len)` on one axis.
fn axis_window(shape: &[usize], axis: usize, start: usize, len: usize) -> Op {
    let mut starts = vec![0i64; shape.len()];
    let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    starts[axis] = start as i64;
    ends[axis] = (start + len) as i64;
    Op::Slice {
        starts,
        ends,
        steps: vec![1; shape.len()],
    }
}

/// Split into one slice per output. Sizes come from input 1 (opset >= 13),
/// the `split` attribute (before), `num_outputs` (opset >= 18, the last
/// part may be smaller), or equal parts.
pub(super) fn split(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    ctx.keep_part_names = true;
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(0), shape.len())?;
    let dim = shape[axis];
    let outputs = ctx.output_count();
    let sizes: Vec<usize> = match (
        ctx.attr_ints("split")?,
        ctx.opt_ints_input(1)?,
        ctx.attr_int("num_outputs")?,
    ) {
        (Some(s), _, _) | (None, Some(s), _) => static_shape(&s)?,
        (None, None, Some(n)) => {
            let n = usize::try_from(n)
                .ok()
                .filter(|&n| n > 0)
                .ok_or("num_outputs must be positive")?;
            if n != outputs {
                return Err(format!("num_outputs {n} but the node has {outputs} outputs").into());
            }
            let chunk = dim.div_ceil(n);
            (0..n)
                .map(|i| chunk.min(dim.saturating_sub(i * chunk)))
                .collect()
        }
        (None, None, None) => {
            if outputs == 0 || dim % outputs != 0 {
                return Err(format!(
                    "cannot split a dimension of {dim} into {outputs} equal parts"
                )
                .into());
            }
            vec![dim / outputs; outputs]
        }
    };
    let total = sizes.iter().try_fold(0usize, |acc, &s| acc.checked_add(s));
    if sizes.len() != outputs || total != Some(dim) {
        return Err(format!(
            "split sizes {sizes:?} do not cover dimension {dim} with {outputs} outputs"
        )
        .into());
    }
    let mut start = 0;
    let mut result = Vec::with_capacity(outputs);
    for (i, &len) in sizes.iter().enumerate() {
        let op = axis_window(&shape, axis, start, len);
        result.push(Some(ctx.add(&i.to_string(), op, &[x])?));
        start += len;
    }
    Ok(result)
}

/// Normalizes one axis of an ONNX slice to `(start, end, step)` as
/// `Op::Slice` requires.
fn normalize_slice(start: i64, end: i64, step: i64, dim: usize) -> Result<(i64, i64, i64), String> {
    if step == 0 {
        return Err("slice step must not be 0".into());
    }
    let d = dim as i64;
    // A step larger than the dimension reads at most one element.
    let step = step.clamp(-(d + 1), d + 1);
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (start, end) = (wrap(start), wrap(end));
    if step > 0 {
        let start = start.clamp(0, d);
        let end = end.clamp(start, d.max(start));
        Ok((start, end, step))
    } else {
        let start = start.clamp(-1, d - 1);
        let end = end.clamp(-1, start);
        Ok((start, end, step))
    }
}

/// Slice: starts, ends, optional axes and steps, as inputs (opset >= 10)
/// or attributes (before).
pub(super) fn slice(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let (starts, ends, axes, steps) = if ctx.opset < 10 {
        (
            ctx.attr_ints("starts")?
                .ok_or("attribute `starts` is required")?,
            ctx.attr_ints("ends")?
                .ok_or("attribute `ends` is required")?,
            ctx.attr_ints("axes")?,
            None,
        )
    } else {
        (
            ctx.opt_ints_input(1)?.ok_or("input `starts` is required")?,
            ctx.opt_ints_input(2)?.ok_or("input `ends` is required")?,
            ctx.opt_ints_input(3)?,
            ctx.opt_ints_input(4)?,
        )
    };
    let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return Err("starts, ends, axes and steps must have the same length".into());
    }
    let rank = shape.len();
    let mut out_starts = vec![0i64; rank];
    let mut out_ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut out_steps = vec![1i64; rank];
    let mut seen = vec![false; rank];
    for i in 0..starts.len() {
        let axis = ctx.axis(axes[i], rank)?;
        if std::mem::replace(&mut seen[axis], true) {
            return Err(format!("axis {axis} appears twice").into());
        }
        let (s, e, st) = normalize_slice(starts[i], ends[i], steps[i], shape[axis])?;
        out_starts[axis] = s;
        out_ends[axis] = e;
        out_steps[axis] = st;
    }
    let identity = (0..rank).all(|d| {
        out_steps[d] == 1
            && out_starts[d] == 0
            && slice_len(out_starts[d], out_ends[d], 1, shape[d]) == Some(shape[d])
    });
    if identity {
        return one(x);
    }
    let op = Op::Slice {
        starts: out_starts,
        ends: out_ends,
        steps: out_steps,
    };
    one(ctx.add("slice", op, &[x])?)
}

/// Expand: NumPy broadcasting of the input and the given shape.
pub(super) fn expand(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let input = ctx.ty(x).shape;
    let dims = ctx
        .opt_ints_input(1)?
        .ok_or("the shape (input 1) is required")?;
    let target = static_shape(&dims)?;
    let shape = broadcast_shapes(&input, &target)?;
    check_size(&shape)?;
    if shape == input {
        return one(x);
    }
    one(ctx.add("expand", Op::Expand { shape }, &[x])?)
}

/// Shape (with opset-15 `start`/`end`): a constant.
pub(super) fn shape(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let dims: Vec<i64> = ctx.ty(x).shape.iter().map(|&d| d as i64).collect();
    let rank = dims.len() as i64;
    let clamp = |v: i64| (if v < 0 { v + rank } else { v }).clamp(0, rank) as usize;
    let start = clamp(ctx.attr_int("start")?.unwrap_or(0));
    let end = clamp(ctx.attr_int("end")?.unwrap_or(rank));
    let selected = dims[start..end.max(start)].to_vec();
    let value = Tensor::from_i64(&[selected.len()], selected);
    one(ctx.constant("shape", value)?)
}

/// Size: a constant.
pub(super) fn size(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let n = ctx.ty(x).numel() as i64;
    one(ctx.constant("size", Tensor::from_i64(&[], vec![n]))?)
}

/// Trilu with an optional diagonal offset `k` (input 1).
pub(super) fn trilu(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let upper = ctx.attr_int("upper")?.unwrap_or(1) != 0;
    let k = match ctx.opt_ints_input(1)? {
        Some(v) if v.len() == 1 => v[0],
        Some(_) => return Err("k must be a single value".into()),
        None => 0,
    };
    one(ctx.add("trilu", Op::Trilu { upper, k }, &[x])?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_normalization_follows_onnx_clamping() {
        assert_eq!(normalize_slice(0, i64::MAX, 1, 10), Ok((0, 10, 1)));
        assert_eq!(normalize_slice(-3, -1, 1, 10), Ok((7, 9, 1)));
        assert_eq!(normalize_slice(20, 1000, 1, 10), Ok((10, 10, 1)));
        assert_eq!(normalize_slice(-1, i64::MIN, -1, 10), Ok((9, -1, -1)));
        assert_eq!(normalize_slice(5, 8, -1, 10), Ok((5, 5, -1)));
        assert_eq!(normalize_slice(0, 3, i64::MIN, 10), Ok((0, 0, -11)));
        assert!(normalize_slice(0, 1, 0, 10).is_err());
    }
}

#[cfg(test)]
mod onnx_tests {
    use crate::frontend::testutil::*;
    use crate::graph::Op;

    fn x234() -> crate::tensor::Tensor {
        f(&[2, 3, 4], &(0..24).map(|v| v as f32).collect::<Vec<_>>())
    }

    #[test]
    fn reshape_copies_zero_and_infers_minus_one() {
        let out = run_node_with_consts(
            "Reshape",
            14,
            &[("x", x234())],
            &[("s", i(&[2], &[0, -1]))],
            &["x", "s"],
            &["y"],
            vec![],
        );
        assert_eq!(out[0].shape(), &[2, 12]);
    }

    #[test]
    fn flatten_squeeze_unsqueeze_become_reshapes() {
        let out = run_node(
            "Flatten",
            13,
            &[("x", x234())],
            &["y"],
            vec![("axis", A::I(-1))],
        );
        assert_eq!(out[0].shape(), &[6, 4]);
        let out = run_node(
            "Flatten",
            13,
            &[("x", x234())],
            &["y"],
            vec![("axis", A::I(0))],
        );
        assert_eq!(out[0].shape(), &[1, 24]);
        let out = run_node(
            "Squeeze",
            11,
            &[("x", f(&[2, 1], &[1., 2.]))],
            &["y"],
            vec![("axes", A::Is(vec![-1]))],
        );
        assert_eq!(out[0].shape(), &[2]);
        let out = run_node_with_consts(
            "Unsqueeze",
            13,
            &[("x", f(&[3], &[1., 2., 3.]))],
            &[("a", i(&[2], &[-1, 0]))],
            &["x", "a"],
            &["y"],
            vec![],
        );
        assert_eq!(out[0].shape(), &[1, 3, 1]);
        let x = f(&[2, 1], &[1., 2.]);
        let bytes = model(
            vec![node("Squeeze", &["x"], &["y"], vec![])],
            &[("x", &x)],
            &[],
            &["y"],
            13,
        );
        let g = import(&bytes).expect("imports");
        assert!(matches!(&g.node(g.outputs()[0].1).op, Op::Reshape { shape } if shape == &[2]));
    }

    #[test]
    fn concat_negative_axis() {
        let out = run_node(
            "Concat",
            13,
            &[
                ("a", f(&[2, 1], &[1., 2.])),
                ("b", f(&[2, 2], &[3., 4., 5., 6.])),
            ],
            &["y"],
            vec![("axis", A::I(-1))],
        );
        assert_close(&out[0], &[2, 3], &[1., 3., 4., 2., 5., 6.]);
    }

    #[test]
    fn split_num_outputs_uneven_and_part_names() {
        let x = f(&[5], &[0., 1., 2., 3., 4.]);
        let out = run_node(
            "Split",
            18,
            &[("x", x.clone())],
            &["a", "b"],
            vec![("num_outputs", A::I(2))],
        );
        assert_close(&out[0], &[3], &[0., 1., 2.]);
        assert_close(&out[1], &[2], &[3., 4.]);
        let bytes = model(
            vec![node(
                "Split",
                &["x"],
                &["a", "b"],
                vec![("split", A::Is(vec![1, 4]))],
            )],
            &[("x", &x)],
            &[],
            &["a", "b"],
            11,
        );
        let g = import(&bytes).expect("imports");
        assert_eq!(g.node(g.outputs()[1].1).name, "Split_node.1");
        assert_eq!(g.node(g.outputs()[1].1).ty.shape, vec![4]);
        // Hostile counts and sizes are errors, not panics or huge
        // allocations.
        for (attr, value) in [
            ("num_outputs", A::I(1 << 62)),
            ("num_outputs", A::I(1 << 31)),
            ("split", A::Is(vec![i64::MAX, i64::MAX])),
        ] {
            let bytes = model(
                vec![node("Split", &["x"], &["a", "b"], vec![(attr, value)])],
                &[("x", &x)],
                &[],
                &["a", "b"],
                18,
            );
            let err = import(&bytes).expect_err("refused").to_string();
            assert!(err.contains("(Split)"), "{err}");
        }
    }

    #[test]
    fn slice_negative_step_and_attribute_form() {
        let x = f(&[5], &[0., 1., 2., 3., 4.]);
        let consts = [
            ("s", i(&[1], &[-1])),
            ("e", i(&[1], &[-1000])),
            ("a", i(&[1], &[0])),
            ("t", i(&[1], &[-2])),
        ];
        let out = run_node_with_consts(
            "Slice",
            13,
            &[("x", x.clone())],
            &consts,
            &["x", "s", "e", "a", "t"],
            &["y"],
            vec![],
        );
        assert_close(&out[0], &[3], &[4., 2., 0.]);
        let attrs = vec![
            ("starts", A::Is(vec![1])),
            ("ends", A::Is(vec![i64::MAX])),
            ("axes", A::Is(vec![-1])),
        ];
        let out = run_node("Slice", 9, &[("x", x)], &["y"], attrs);
        assert_close(&out[0], &[4], &[1., 2., 3., 4.]);
    }

    #[test]
    fn expand_broadcasts_both_ways() {
        let out = run_node_with_consts(
            "Expand",
            13,
            &[("x", f(&[3, 1], &[1., 2., 3.]))],
            &[("s", i(&[3], &[2, 1, 4]))],
            &["x", "s"],
            &["y"],
            vec![],
        );
        assert_eq!(out[0].shape(), &[2, 3, 4]);
        assert_eq!(out[0].to_f32_vec()[4..8], [2., 2., 2., 2.]);
    }

    #[test]
    fn shape_is_a_constant_and_its_chain_folds_away() {
        let x = x234();
        let nodes = vec![
            node("Shape", &["x"], &["s"], vec![("start", A::I(1))]),
            node("Reshape", &["x", "s2"], &["y"], vec![]),
            node("Concat", &["one", "s"], &["s2"], vec![("axis", A::I(0))]),
        ];
        let bytes = model(
            nodes,
            &[("x", &x)],
            &[("one", i(&[1], &[-1]))],
            &["y", "s"],
            15,
        );
        let g = import(&bytes).expect("imports out of order too");
        assert_eq!(g.node(g.outputs()[0].1).ty.shape, vec![2, 3, 4]);
        match &g.node(g.outputs()[1].1).op {
            Op::Constant(t) => assert_eq!(t.to_i64_vec(), vec![3, 4]),
            other => panic!("{other:?}"),
        }
        // Only the input, the shape constant, and nothing else: the
        // reshape is a no-op and the concat chain is gone.
        assert_eq!(g.node_count(), 2);
    }

    #[test]
    fn trilu_with_k_input_and_default_transpose() {
        let x = f(&[2, 2], &[1., 2., 3., 4.]);
        let out = run_node_with_consts(
            "Trilu",
            14,
            &[("x", x.clone())],
            &[("k", i(&[], &[-1]))],
            &["x", "k"],
            &["y"],
            vec![("upper", A::I(0))],
        );
        assert_close(&out[0], &[2, 2], &[0., 0., 3., 0.]);
        let out = run_node("Transpose", 13, &[("x", x)], &["y"], vec![]);
        assert_close(&out[0], &[2, 2], &[1., 3., 2., 4.]);
    }
}
