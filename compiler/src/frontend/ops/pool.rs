//! MaxPool and AveragePool over any number of spatial axes, composed: the
//! input padded (−∞ or the type's lowest value for max, 0 for average;
//! explicit pads, `auto_pad` and the extra end of `ceil_mode`), one strided
//! slice per kernel offset, combined with `max` or `add`; an average
//! divides by the number of counted positions per window (a constant,
//! computed at compile time from a tensor of ones padded the same way).
//! MaxPool's optional Indices output tracks each window's first maximum
//! alongside, from a constant tensor of positions padded the same way.

use crate::graph::{BinaryOp, NodeId, Op};
use crate::tensor::{DType, Tensor};

use super::super::ctx::{built_constant, ConvertResult, Ctx};
use super::movement::{pad_axis, PadMode};

/// One spatial axis of a pooling window.
struct Axis {
    kernel: usize,
    stride: usize,
    dilation: usize,
    /// Explicit (or `auto_pad`) padding before and after.
    begin: usize,
    end: usize,
    /// Padding past `end` that `ceil_mode` windows reach, never counted.
    extra: usize,
    out: usize,
}

/// The largest kernel size, stride, dilation or pad a pool takes.
const MAX_WINDOW_PARAM: usize = 1 << 31;

fn usizes(
    values: Option<Vec<i64>>,
    n: usize,
    default: usize,
    what: &str,
) -> ConvertResult<Vec<usize>> {
    match values {
        None => Ok(vec![default; n]),
        Some(v) if v.len() == n => v
            .iter()
            .map(|&x| match usize::try_from(x) {
                Err(_) => Err(format!("{what} {x} is negative").into()),
                // Window arithmetic (span, padded size, output count) on
                // values this large would overflow.
                Ok(x) if x > MAX_WINDOW_PARAM => {
                    Err(format!("{what} {x} is too large (at most 2^31)").into())
                }
                Ok(x) => Ok(x),
            })
            .collect(),
        Some(v) => Err(format!("{} {what} for {n} spatial axes", v.len()).into()),
    }
}

/// The windows along each spatial axis of `shape`.
fn axes(ctx: &Ctx, shape: &[usize]) -> ConvertResult<Vec<Axis>> {
    let n = shape.len() - 2;
    let kernel = ctx
        .attr_ints("kernel_shape")?
        .ok_or("attribute `kernel_shape` is required")?;
    let kernel = usizes(Some(kernel), n, 1, "kernel sizes")?;
    let strides = usizes(ctx.attr_ints("strides")?, n, 1, "strides")?;
    let dilations = usizes(ctx.attr_ints("dilations")?, n, 1, "dilations")?;
    let pads = usizes(ctx.attr_ints("pads")?, 2 * n, 0, "pads")?;
    let ceil = ctx.attr_int("ceil_mode")?.unwrap_or(0) != 0;
    let auto_pad = ctx
        .attr_string("auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let mut result = Vec::with_capacity(n);
    for i in 0..n {
        let (size, k, s, d) = (shape[i + 2], kernel[i], strides[i], dilations[i]);
        if k == 0 || s == 0 || d == 0 {
            return Err("kernel sizes, strides and dilations must be positive".into());
        }
        let span = (k - 1) * d + 1;
        let (begin, end) = match auto_pad.as_str() {
            "NOTSET" => (pads[i], pads[n + i]),
            "VALID" => (0, 0),
            "SAME_UPPER" | "SAME_LOWER" => {
                let out = size.div_ceil(s);
                let total = ((out.max(1) - 1) * s + span).saturating_sub(size);
                let small = total / 2;
                if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                }
            }
            other => return Err(format!("unknown auto_pad `{other}`").into()),
        };
        let padded = size + begin + end;
        if padded < span {
            return Err(format!("a window of {span} does not fit an axis of {padded}").into());
        }
        let mut out = if ceil {
            (padded - span).div_ceil(s) + 1
        } else {
            (padded - span) / s + 1
        };
        // A ceil-mode window must start inside the input or its begin pad.
        if ceil && (out - 1) * s >= size + begin {
            out -= 1;
        }
        let extra = ((out - 1) * s + span).saturating_sub(padded);
        result.push(Axis {
            kernel: k,
            stride: s,
            dilation: d,
            begin,
            end,
            extra,
            out,
        });
    }
    Ok(result)
}

/// The lowest value of `dtype` (the padding of a max pool).
pub(super) fn lowest(dtype: DType) -> f64 {
    match dtype {
        DType::U8 => 0.0,
        DType::I8 => f64::from(i8::MIN),
        DType::I32 => f64::from(i32::MIN),
        DType::I64 => i64::MIN as f64,
        _ => f64::NEG_INFINITY,
    }
}

/// Pads `x` on every spatial axis: `fill` before, `fill` in the explicit
/// end pad and `extra_fill` past it.
fn pad_spatial(
    ctx: &mut Ctx,
    mut x: NodeId,
    axes: &[Axis],
    fill: NodeId,
    extra_fill: NodeId,
) -> ConvertResult<NodeId> {
    for (i, a) in axes.iter().enumerate() {
        let axis = i + 2;
        let (begin, end) = (a.begin as i64, a.end as i64);
        x = pad_axis(ctx, x, axis, begin, end, PadMode::Constant, Some(fill))?;
        if a.extra > 0 {
            let extra = a.extra as i64;
            x = pad_axis(ctx, x, axis, 0, extra, PadMode::Constant, Some(extra_fill))?;
        }
    }
    Ok(x)
}

/// Pools are composed of one window slice per kernel position; more than
/// this many is refused rather than built.
const MAX_WINDOW_POSITIONS: usize = 1 << 16;

/// `x`'s strided window at every kernel offset, in row-major offset order.
fn window_slices(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    axes: &[Axis],
) -> ConvertResult<Vec<NodeId>> {
    let shape = ctx.ty(x).shape;
    // One Slice node per kernel position: bound their number before
    // enumerating them.
    axes.iter()
        .try_fold(1usize, |n, a| n.checked_mul(a.kernel))
        .filter(|&n| n <= MAX_WINDOW_POSITIONS)
        .ok_or_else(|| {
            let kernel: Vec<usize> = axes.iter().map(|a| a.kernel).collect();
            format!("kernel {kernel:?} has more than {MAX_WINDOW_POSITIONS} positions")
        })?;
    let offsets: Vec<Vec<usize>> = axes.iter().fold(vec![vec![]], |acc, a| {
        acc.into_iter()
            .flat_map(|prefix| {
                (0..a.kernel).map(move |k| {
                    let mut next = prefix.clone();
                    next.push(k);
                    next
                })
            })
            .collect()
    });
    let mut slices = Vec::with_capacity(offsets.len());
    for (w, offset) in offsets.iter().enumerate() {
        let mut starts = vec![0i64; shape.len()];
        let mut ends: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let mut steps = vec![1i64; shape.len()];
        for (i, a) in axes.iter().enumerate() {
            let start = offset[i] * a.dilation;
            starts[i + 2] = start as i64;
            ends[i + 2] = (start + (a.out - 1) * a.stride + 1) as i64;
            steps[i + 2] = a.stride as i64;
        }
        let op = Op::Slice {
            starts,
            ends,
            steps,
        };
        slices.push(ctx.add(&format!("{part}_window{w}"), op, &[x])?);
    }
    Ok(slices)
}

/// Combines `x`'s window at every kernel offset with `op`.
fn windows(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    axes: &[Axis],
    op: BinaryOp,
) -> ConvertResult<NodeId> {
    let slices = window_slices(ctx, part, x, axes)?;
    let mut acc: Option<NodeId> = None;
    for (w, slice) in slices.into_iter().enumerate() {
        acc = Some(match acc {
            Some(prev) => ctx.add(
                &format!("{part}_combine{w}"),
                Op::Binary(op),
                &[prev, slice],
            )?,
            None => slice,
        });
    }
    acc.ok_or_else(|| "an empty kernel".into())
}

/// MaxPool's Indices output: the flat position in `x` (`[N, C, spatial…]`,
/// spatial axes row-major, or column-major for `storage_order = 1`) of
/// each window's first maximum. Positions are padded like the values
/// (with −1); a later offset wins only where its value is greater, or
/// where the position so far is padding and its own is not.
fn max_indices(
    ctx: &mut Ctx,
    x: NodeId,
    padded: NodeId,
    axes: &[Axis],
    column_major: bool,
) -> ConvertResult<NodeId> {
    let shape = ctx.ty(x).shape;
    let spatial = &shape[2..];
    let plane: usize = spatial.iter().product();
    let mut strides = vec![1usize; spatial.len()];
    if column_major {
        for d in 1..spatial.len() {
            strides[d] = strides[d - 1] * spatial[d - 1];
        }
    } else {
        for d in (0..spatial.len().saturating_sub(1)).rev() {
            strides[d] = strides[d + 1] * spatial[d + 1];
        }
    }
    built_constant("the in-plane positions", spatial)?;
    built_constant("the plane offsets", &shape[..2])?;
    let positions: Vec<i64> = (0..plane)
        .map(|flat| {
            let (mut rest, mut at) = (flat, 0);
            for d in (0..spatial.len()).rev() {
                at += (rest % spatial[d]) * strides[d];
                rest /= spatial[d];
            }
            at as i64
        })
        .collect();
    let mut in_plane = vec![1, 1];
    in_plane.extend_from_slice(spatial);
    let in_plane = ctx.constant("in_plane", Tensor::from_i64(&in_plane, positions))?;
    let (n, c) = (shape[0], shape[1]);
    let planes: Vec<i64> = (0..(n * c) as i64).map(|p| p * plane as i64).collect();
    let mut plane_shape = vec![n, c];
    plane_shape.extend(std::iter::repeat_n(1, spatial.len()));
    let planes = ctx.constant("planes", Tensor::from_i64(&plane_shape, planes))?;
    let position = ctx.add("position", Op::Binary(BinaryOp::Add), &[planes, in_plane])?;
    let minus_one = ctx.scalar("no_position", DType::I64, -1.0)?;
    let padded_position = pad_spatial(ctx, position, axes, minus_one, minus_one)?;
    let values = window_slices(ctx, "value", padded, axes)?;
    let positions = window_slices(ctx, "index", padded_position, axes)?;
    let bin = |ctx: &mut Ctx, part: String, op: BinaryOp, a: NodeId, b: NodeId| {
        ctx.add(&part, Op::Binary(op), &[a, b])
    };
    let zero = ctx.scalar("zero_position", DType::I64, 0.0)?;
    let (mut best, mut index) = (values[0], positions[0]);
    for (w, (&v, &p)) in values.iter().zip(&positions).enumerate().skip(1) {
        let greater = bin(ctx, format!("greater{w}"), BinaryOp::Greater, v, best)?;
        let was_pad = bin(ctx, format!("was_pad{w}"), BinaryOp::Less, index, zero)?;
        let is_real = bin(
            ctx,
            format!("is_real{w}"),
            BinaryOp::GreaterOrEqual,
            p,
            zero,
        )?;
        let fills = bin(ctx, format!("fills{w}"), BinaryOp::And, was_pad, is_real)?;
        let take = bin(ctx, format!("take{w}"), BinaryOp::Or, greater, fills)?;
        best = ctx.add(&format!("best{w}"), Op::Where, &[take, v, best])?;
        index = ctx.add(&format!("argmax{w}"), Op::Where, &[take, p, index])?;
    }
    Ok(index)
}

/// MaxPool and AveragePool.
pub(super) fn pool(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    if ty.rank() < 3 {
        return Err("needs rank >= 3 ([N, C, spatial…])".into());
    }
    let column_major = ctx.attr_int("storage_order")?.unwrap_or(0) != 0;
    let axes = axes(ctx, &ty.shape)?;
    let dtype = ty.dtype;
    if ctx.op_type() == "MaxPool" {
        let low = ctx.scalar("lowest", dtype, lowest(dtype))?;
        let padded = pad_spatial(ctx, x, &axes, low, low)?;
        let values = windows(ctx, "max", padded, &axes, BinaryOp::Max)?;
        let indices = match ctx.output_name(1) {
            Some(_) => Some(max_indices(ctx, x, padded, &axes, column_major)?),
            None => None,
        };
        return Ok(vec![Some(values), indices]);
    }
    if !dtype.is_float() {
        return Err(format!("AveragePool takes floats, not {dtype}").into());
    }
    let include_pad = ctx.attr_int("count_include_pad")?.unwrap_or(0) != 0;
    let zero = ctx.scalar("zero", dtype, 0.0)?;
    let padded = pad_spatial(ctx, x, &axes, zero, zero)?;
    let sum = windows(ctx, "sum", padded, &axes, BinaryOp::Add)?;
    // How many positions each window counts: a tensor of ones, padded with
    // ones (explicit pads counted) or zeros, pooled the same way.
    let mut ones_shape = vec![1, 1];
    ones_shape.extend_from_slice(&ty.shape[2..]);
    let numel = built_constant("the window counts", &ones_shape)?;
    let ones = Tensor::from_f32_as(dtype, ones_shape, vec![1.0; numel]).ok_or("ones")?;
    let ones = ctx.constant("ones", ones)?;
    let one_ = ctx.scalar("one", dtype, 1.0)?;
    let pad_fill = if include_pad { one_ } else { zero };
    let counted = pad_spatial(ctx, ones, &axes, pad_fill, zero)?;
    let count = windows(ctx, "count", counted, &axes, BinaryOp::Add)?;
    Ok(vec![Some(ctx.add(
        "average",
        Op::Binary(BinaryOp::Div),
        &[sum, count],
    )?)])
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn max_pool_indices_point_at_real_elements_even_when_padding_ties() {
        // All −∞: every window ties with its padding; the index must still
        // name an input element (the first real one), never the pad.
        let x = f(&[1, 1, 1, 3], &[f32::NEG_INFINITY; 3]);
        let out = run_node(
            "MaxPool",
            12,
            &[("x", x)],
            &["y", "i"],
            vec![
                ("kernel_shape", A::Is(vec![1, 2])),
                ("pads", A::Is(vec![0, 1, 0, 1])),
                ("strides", A::Is(vec![1, 2])),
            ],
        );
        assert_eq!(out[1].to_i64_vec(), vec![0, 1]);
        // Ties between real elements: the first wins; row-major positions.
        let x = f(&[1, 2, 2, 2], &[1., 3., 3., 0., 5., 5., 7., 7.]);
        let out = run_node(
            "MaxPool",
            12,
            &[("x", x)],
            &["y", "i"],
            vec![("kernel_shape", A::Is(vec![2, 2]))],
        );
        assert_close(&out[0], &[1, 2, 1, 1], &[3., 7.]);
        assert_eq!(out[1].to_i64_vec(), vec![1, 6]);
    }
}
