//! Data-movement ONNX ops composed from Graph IR slices, concatenations,
//! reshapes and broadcasts: Tile, Pad (every mode) and CumSum (a
//! log-depth scan of shifted copies). Each runs wherever those ops run —
//! DMA on the NPU, a VPU add per scan step — and needs its repeats, pads
//! and axis at compile time.

use crate::graph::{BinaryOp, NodeId, Op};

use super::super::ctx::{check_size, ConvertResult, Ctx};
use super::one;

/// Tile(x, repeats) = reshape(expand(x as [1, d0, 1, d1, …]) to
/// [r0, d0, r1, d1, …]) to [r0·d0, r1·d1, …].
pub(super) fn tile(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let repeats = ctx
        .opt_ints_input(1)?
        .ok_or("the repeats (input 1) are required")?;
    if repeats.len() != shape.len() {
        return Err(format!(
            "{} repeats for an input of rank {}",
            repeats.len(),
            shape.len()
        )
        .into());
    }
    let repeats: Vec<usize> = repeats
        .iter()
        .map(|&r| usize::try_from(r).map_err(|_| format!("repeat {r} is negative")))
        .collect::<Result<_, _>>()?;
    if repeats.iter().all(|&r| r == 1) {
        return one(x);
    }
    let out: Vec<usize> = shape.iter().zip(&repeats).map(|(d, r)| d * r).collect();
    check_size(&out)?;
    let interleaved = |outer: &dyn Fn(usize) -> usize| -> Vec<usize> {
        shape
            .iter()
            .enumerate()
            .flat_map(|(i, &d)| [outer(i), d])
            .collect()
    };
    let spread = ctx.reshape("spread", x, interleaved(&|_| 1))?;
    let expanded = ctx.add(
        "expand",
        Op::Expand {
            shape: interleaved(&|i| repeats[i]),
        },
        &[spread],
    )?;
    one(ctx.reshape("tile", expanded, out)?)
}

/// The Pad modes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PadMode {
    Constant,
    Reflect,
    Edge,
    Wrap,
}

/// Pad(x, pads, constant_value, axes) with `mode` constant, reflect, edge
/// or wrap; negative pads crop. Pads and axes must be constants; the
/// constant value may be computed at run time.
pub(super) fn pad(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let mut x = ctx.input(0)?;
    let ty = ctx.ty(x);
    let rank = ty.rank();
    let mode = match ctx.attr_string("mode")?.as_deref().unwrap_or("constant") {
        "constant" => PadMode::Constant,
        "reflect" => PadMode::Reflect,
        "edge" => PadMode::Edge,
        "wrap" => PadMode::Wrap,
        other => return Err(format!("unknown pad mode `{other}`").into()),
    };
    let (pads, value) = if ctx.opset < 11 {
        let pads = ctx
            .attr_ints("pads")?
            .ok_or("attribute `pads` is required")?;
        let value = ctx.attr_float("value")?.unwrap_or(0.0);
        (pads, Err(value))
    } else {
        let pads = ctx
            .opt_ints_input(1)?
            .ok_or("the pads (input 1) are required")?;
        (pads, ctx.opt_input(2).ok_or(0.0))
    };
    let axes: Vec<usize> = match ctx.opt_ints_input(3)? {
        Some(axes) => axes
            .iter()
            .map(|&a| ctx.axis(a, rank))
            .collect::<Result<_, _>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return Err(format!("{} pads for {} axes", pads.len(), axes.len()).into());
    }
    let fill = match (mode, value) {
        (PadMode::Constant, Ok(node)) => {
            if ctx.ty(node).numel() != 1 {
                return Err("the constant value (input 2) must be a scalar".into());
            }
            Some(ctx.reshape("value", node, vec![])?)
        }
        (PadMode::Constant, Err(v)) => Some(ctx.scalar("value", ty.dtype, f64::from(v))?),
        _ => None,
    };
    for (i, &axis) in axes.iter().enumerate() {
        let (begin, end) = (pads[i], pads[axes.len() + i]);
        x = pad_axis(ctx, x, axis, begin, end, mode, fill)?;
    }
    check_size(&ctx.ty(x).shape)?;
    one(x)
}

/// Pads (or, for negative amounts, crops) `x` along `axis`.
pub(super) fn pad_axis(
    ctx: &mut Ctx,
    x: NodeId,
    axis: usize,
    begin: i64,
    end: i64,
    mode: PadMode,
    fill: Option<NodeId>,
) -> ConvertResult<NodeId> {
    let shape = ctx.ty(x).shape;
    let n = shape[axis] as i64;
    // Crop first: negative pads remove elements.
    let (lo, hi) = (begin.min(0).unsigned_abs(), end.min(0).unsigned_abs());
    let x = if lo + hi > 0 {
        if lo + hi > n as u64 {
            return Err(format!("pads crop {} elements of an axis of {n}", lo + hi).into());
        }
        ctx.add(
            &format!("crop{axis}"),
            window(&shape, axis, lo as i64, n - hi as i64, 1),
            &[x],
        )?
    } else {
        x
    };
    let (begin, end) = (begin.max(0), end.max(0));
    if begin == 0 && end == 0 {
        return Ok(x);
    }
    let shape = ctx.ty(x).shape;
    let n = shape[axis] as i64;
    let limit = match mode {
        PadMode::Reflect => n - 1,
        PadMode::Edge | PadMode::Wrap => n,
        PadMode::Constant => i64::MAX,
    };
    if (mode != PadMode::Constant && n == 0) || begin.max(end) > limit {
        return Err(format!(
            "a pad of {} on an axis of {n} in this mode (at most {limit})",
            begin.max(end)
        )
        .into());
    }
    let mut parts = Vec::with_capacity(3);
    for (side, amount) in [("begin", begin), ("end", end)] {
        if amount == 0 {
            continue;
        }
        let at_begin = side == "begin";
        let part = format!("{side}{axis}");
        let block = match mode {
            PadMode::Constant => {
                let mut block_shape = shape.clone();
                block_shape[axis] = amount as usize;
                let value = fill.ok_or("internal: constant pad without a value")?;
                ctx.add(&part, Op::Expand { shape: block_shape }, &[value])?
            }
            PadMode::Edge => {
                let at = if at_begin { 0 } else { n - 1 };
                let edge = ctx.add(
                    &format!("{part}_edge"),
                    window(&shape, axis, at, at + 1, 1),
                    &[x],
                )?;
                let mut block_shape = shape.clone();
                block_shape[axis] = amount as usize;
                ctx.add(&part, Op::Expand { shape: block_shape }, &[edge])?
            }
            // x[amount], …, x[1] before; x[n-2], …, x[n-1-amount] after.
            PadMode::Reflect if at_begin => {
                ctx.add(&part, window(&shape, axis, amount, 0, -1), &[x])?
            }
            PadMode::Reflect => {
                let op = window(&shape, axis, n - 2, n - 2 - amount, -1);
                ctx.add(&part, op, &[x])?
            }
            PadMode::Wrap if at_begin => {
                ctx.add(&part, window(&shape, axis, n - amount, n, 1), &[x])?
            }
            PadMode::Wrap => ctx.add(&part, window(&shape, axis, 0, amount, 1), &[x])?,
        };
        parts.push((at_begin, block));
    }
    let mut operands: Vec<NodeId> = parts.iter().filter(|p| p.0).map(|p| p.1).collect();
    operands.push(x);
    operands.extend(parts.iter().filter(|p| !p.0).map(|p| p.1));
    ctx.add(&format!("pad{axis}"), Op::Concat { axis }, &operands)
}

/// A slice of `[start, end)` by `step` along `axis`, everything elsewhere.
pub(super) fn window(shape: &[usize], axis: usize, start: i64, end: i64, step: i64) -> Op {
    let mut starts = vec![0i64; shape.len()];
    let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
    let mut steps = vec![1i64; shape.len()];
    starts[axis] = start;
    ends[axis] = end;
    steps[axis] = step;
    Op::Slice {
        starts,
        ends,
        steps,
    }
}

/// CumSum(x, axis) with `exclusive` and `reverse`: a Hillis–Steele scan,
/// `y += shift(y, k)` for k = 1, 2, 4, … (⌈log₂ n⌉ additions of shifted
/// copies; integers exact, floats summed in a tree order rather than
/// left to right).
pub(super) fn cumsum(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    let axis = ctx
        .opt_ints_input(1)?
        .ok_or("the axis (input 1) is required")?;
    let [axis] = axis[..] else {
        return Err("the axis (input 1) must be a single value".into());
    };
    let axis = ctx.axis(axis, ty.rank())?;
    let reverse = ctx.attr_int("reverse")?.unwrap_or(0) != 0;
    let exclusive = ctx.attr_int("exclusive")?.unwrap_or(0) != 0;
    let n = ty.shape[axis];
    if n == 0 {
        return one(x);
    }
    let zero = ctx.scalar("zero", ty.dtype, 0.0)?;
    let mut y = x;
    if exclusive {
        y = shift(ctx, y, zero, axis, 1, reverse, "exclusive")?;
    }
    let mut k = 1;
    while k < n {
        let shifted = shift(ctx, y, zero, axis, k, reverse, &format!("shift{k}"))?;
        y = ctx.add(
            &format!("scan{k}"),
            Op::Binary(BinaryOp::Add),
            &[y, shifted],
        )?;
        k *= 2;
    }
    one(y)
}

/// `y` moved by `k` along `axis` (toward higher indices, or lower with
/// `reverse`), the vacated places zero.
fn shift(
    ctx: &mut Ctx,
    y: NodeId,
    zero: NodeId,
    axis: usize,
    k: usize,
    reverse: bool,
    part: &str,
) -> ConvertResult<NodeId> {
    let shape = ctx.ty(y).shape;
    let n = shape[axis];
    let k = k.min(n);
    let mut zeros_shape = shape.clone();
    zeros_shape[axis] = k;
    let zeros = ctx.add(
        &format!("{part}_zeros"),
        Op::Expand { shape: zeros_shape },
        &[zero],
    )?;
    if k == n {
        return Ok(zeros);
    }
    let (start, end) = if reverse { (k, n) } else { (0, n - k) };
    let kept = ctx.add(
        &format!("{part}_kept"),
        window(&shape, axis, start as i64, end as i64, 1),
        &[y],
    )?;
    let operands = if reverse {
        [kept, zeros]
    } else {
        [zeros, kept]
    };
    ctx.add(part, Op::Concat { axis }, &operands)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    /// CumSum by the definition: one running sum per line along `axis`.
    fn cumsum_reference(
        x: &[i64],
        shape: &[usize],
        axis: usize,
        exclusive: bool,
        reverse: bool,
    ) -> Vec<i64> {
        let n = shape[axis];
        let inner: usize = shape[axis + 1..].iter().product();
        let outer: usize = shape[..axis].iter().product();
        let mut out = vec![0; x.len()];
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| (o * n + k) * inner + i;
                let order: Vec<usize> = if reverse {
                    (0..n).rev().collect()
                } else {
                    (0..n).collect()
                };
                let mut sum = 0;
                for k in order {
                    if exclusive {
                        out[at(k)] = sum;
                        sum += x[at(k)];
                    } else {
                        sum += x[at(k)];
                        out[at(k)] = sum;
                    }
                }
            }
        }
        out
    }

    #[test]
    fn cumsum_matches_its_definition_for_every_length_axis_and_mode() {
        for n in 1..=9usize {
            for (shape, axis) in [(vec![n], 0i64), (vec![2, n, 3], 1), (vec![n, 2], -2)] {
                let numel: usize = shape.iter().product();
                let x: Vec<i64> = (0..numel as i64).map(|v| (v * 7) % 11 - 5).collect();
                let rank = shape.len() as i64;
                let axis_index = ((axis + rank) % rank) as usize;
                for exclusive in [0, 1] {
                    for reverse in [0, 1] {
                        let attrs =
                            vec![("exclusive", A::I(exclusive)), ("reverse", A::I(reverse))];
                        let want =
                            cumsum_reference(&x, &shape, axis_index, exclusive == 1, reverse == 1);
                        let ints = run_node_with_consts(
                            "CumSum",
                            14,
                            &[("x", i(&shape, &x))],
                            &[("axis", i(&[], &[axis]))],
                            &["x", "axis"],
                            &["y"],
                            attrs,
                        );
                        assert_eq!(
                            ints[0].to_i64_vec(),
                            want,
                            "{shape:?} {axis} {exclusive} {reverse}"
                        );
                        let floats: Vec<f32> = x.iter().map(|&v| v as f32 * 0.5).collect();
                        let attrs =
                            vec![("exclusive", A::I(exclusive)), ("reverse", A::I(reverse))];
                        let got = run_node_with_consts(
                            "CumSum",
                            14,
                            &[("x", f(&shape, &floats))],
                            &[("axis", i(&[1], &[axis]))],
                            &["x", "axis"],
                            &["y"],
                            attrs,
                        );
                        let want: Vec<f32> = want.iter().map(|&v| v as f32 * 0.5).collect();
                        assert_close(&got[0], &shape, &want);
                    }
                }
            }
        }
    }

    #[test]
    fn tile_repeats_every_axis() {
        let got = run_node_with_consts(
            "Tile",
            13,
            &[("x", f(&[2, 2], &[1., 2., 3., 4.]))],
            &[("r", i(&[2], &[2, 3]))],
            &["x", "r"],
            &["y"],
            vec![],
        );
        let row = |a: f32, b: f32| [a, b, a, b, a, b];
        let want: Vec<f32> = [row(1., 2.), row(3., 4.), row(1., 2.), row(3., 4.)].concat();
        assert_close(&got[0], &[4, 6], &want);
    }

    fn pad(mode: &'static str, pads: &[i64], x: &[f32]) -> Vec<f32> {
        let got = run_node_with_consts(
            "Pad",
            18,
            &[("x", f(&[1, x.len()], x))],
            &[("p", i(&[4], pads)), ("v", f(&[], &[9.]))],
            &["x", "p", "v"],
            &["y"],
            vec![("mode", A::S(mode))],
        );
        got[0].to_f32_vec()
    }

    #[test]
    fn pad_in_every_mode_and_crop() {
        let x = [1., 2., 3., 4.];
        assert_eq!(
            pad("constant", &[0, 2, 0, 1], &x),
            [9., 9., 1., 2., 3., 4., 9.]
        );
        assert_eq!(pad("edge", &[0, 2, 0, 1], &x), [1., 1., 1., 2., 3., 4., 4.]);
        assert_eq!(
            pad("reflect", &[0, 3, 0, 2], &x),
            [4., 3., 2., 1., 2., 3., 4., 3., 2.]
        );
        assert_eq!(
            pad("wrap", &[0, 3, 0, 2], &x),
            [2., 3., 4., 1., 2., 3., 4., 1., 2.]
        );
        assert_eq!(pad("constant", &[0, -1, 0, 2], &x), [2., 3., 4., 9., 9.]);
        assert_eq!(pad("reflect", &[0, 1, 0, -2], &x), [2., 1., 2.]);
    }

    #[test]
    fn pads_that_do_not_fit_are_errors_naming_the_node() {
        let bytes = model(
            vec![node(
                "Pad",
                &["x", "p"],
                &["y"],
                vec![("mode", A::S("reflect"))],
            )],
            &[("x", &f(&[1, 2], &[1., 2.]))],
            &[("p", i(&[4], &[0, 2, 0, 0]))],
            &["y"],
            18,
        );
        let err = import(&bytes)
            .expect_err("reflect pad of 2 on 2")
            .to_string();
        assert!(
            err.contains("Pad_node") && err.contains("at most 1"),
            "{err}"
        );
    }
}

/// Random attributes and constant operands for the composed ops: import,
/// folding and interpretation return errors, never panic.
#[cfg(test)]
mod fuzz {
    use proptest::prelude::*;

    use crate::frontend::testutil::*;
    use crate::interp::run;
    use crate::passes::{run_graph_passes_with, PassOptions};

    fn try_node(
        op: &str,
        attrs: Vec<(&str, A)>,
        consts: Vec<(&str, crate::tensor::Tensor)>,
        order: &[&str],
    ) {
        let x = f(
            &[1, 2, 3, 4],
            &(0..24).map(|v| v as f32).collect::<Vec<_>>(),
        );
        let bytes = model(
            vec![node(op, order, &["y"], attrs)],
            &[("x", &x)],
            &consts,
            &["y"],
            18,
        );
        if let Ok(mut g) = import(&bytes) {
            if run_graph_passes_with(&mut g, &PassOptions::frontend_only(), |_, _, _| {}).is_ok() {
                let _ = run(&g, &[x]);
            }
        }
    }

    /// Found by `einsum_equations_never_panic`: a `.` outside `...` made the
    /// broadcast axes land past the term's letters.
    #[test]
    fn einsum_stray_dots_are_refused() {
        for eq in [".i...->", "i.->i", "i....->", "..i->i"] {
            try_node("Einsum", vec![("equation", A::S(eq))], vec![], &["x"]);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        #[test]
        fn einsum_equations_never_panic(eq in "[ijk.,>-]{0,12}") {
            try_node("Einsum", vec![("equation", A::S(Box::leak(eq.into_boxed_str())))], vec![], &["x"]);
        }

        #[test]
        fn pads_tiles_and_scans_never_panic(
            pads in prop::collection::vec(-6i64..6, 0..10),
            mode in 0usize..5,
            repeats in prop::collection::vec(-1i64..3, 0..6),
            axis in -6i64..6,
        ) {
            let modes = ["constant", "reflect", "edge", "wrap", "bogus"];
            let p = i(&[pads.len()], &pads);
            try_node("Pad", vec![("mode", A::S(modes[mode]))], vec![("p", p)], &["x", "p"]);
            let r = i(&[repeats.len()], &repeats);
            try_node("Tile", vec![], vec![("r", r)], &["x", "r"]);
            try_node("CumSum", vec![("reverse", A::I(axis & 1))], vec![("a", i(&[], &[axis]))], &["x", "a"]);
            let depth = i(&[], &[axis]);
            let values = f(&[2], &[0., 1.]);
            try_node("OneHot", vec![("axis", A::I(axis))], vec![("d", depth), ("v", values)], &["x", "d", "v"]);
        }

        #[test]
        fn pools_and_blocks_never_panic(
            kernel in prop::collection::vec(-1i64..5, 0..4),
            strides in prop::collection::vec(-1i64..4, 0..4),
            pads in prop::collection::vec(-1i64..4, 0..6),
            ceil in 0i64..2,
            block in -1i64..4,
        ) {
            for op in ["MaxPool", "AveragePool"] {
                let attrs = vec![
                    ("kernel_shape", A::Is(kernel.clone())),
                    ("strides", A::Is(strides.clone())),
                    ("pads", A::Is(pads.clone())),
                    ("ceil_mode", A::I(ceil)),
                ];
                try_node(op, attrs, vec![], &["x"]);
            }
            for op in ["DepthToSpace", "SpaceToDepth"] {
                try_node(op, vec![("blocksize", A::I(block))], vec![], &["x"]);
            }
            try_node("ArgMax", vec![("axis", A::I(block - 2))], vec![], &["x"]);
            let modes = ["nearest", "linear", "cubic", "area"];
            let transforms = ["half_pixel", "align_corners", "asymmetric", "pytorch_half_pixel"];
            let scales = f(&[4], &[1.0, 1.0, block as f32 * 0.75, ceil as f32 + 0.5]);
            let attrs = vec![
                ("mode", A::S(modes[(block + 1) as usize % 4])),
                ("coordinate_transformation_mode", A::S(transforms[ceil as usize * 2 + (block & 1) as usize])),
            ];
            try_node("Resize", attrs, vec![("s", scales)], &["x", "", "s"]);
            let k = i(&[1], &[block * 2 - 1]);
            try_node("TopK", vec![("axis", A::I(ceil - 1)), ("largest", A::I(ceil))], vec![("k", k)], &["x", "k"]);
        }
    }
}
