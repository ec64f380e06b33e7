//! MaxPool and AveragePool over any number of spatial axes, composed: the
//! input padded (−∞ or the type's lowest value for max, 0 for average;
//! explicit pads, `auto_pad` and the extra end of `ceil_mode`), one strided
//! slice per kernel offset, combined with `max` or `add`; an average
//! divides by the number of counted positions per window (a constant,
//! computed at compile time from a tensor of ones padded the same way).

use crate::graph::{BinaryOp, NodeId, Op};
use crate::tensor::{DType, Tensor};

use super::super::ctx::{ConvertResult, Ctx};
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
            .map(|&x| usize::try_from(x).map_err(|_| format!("{what} {x} is negative").into()))
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

/// Combines `x`'s window at every kernel offset with `op`.
fn windows(
    ctx: &mut Ctx,
    part: &str,
    x: NodeId,
    axes: &[Axis],
    op: BinaryOp,
) -> ConvertResult<NodeId> {
    let shape = ctx.ty(x).shape;
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
    let mut acc: Option<NodeId> = None;
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
        let slice = ctx.add(
            &format!("{part}_window{w}"),
            Op::Slice {
                starts,
                ends,
                steps,
            },
            &[x],
        )?;
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

/// MaxPool and AveragePool.
pub(super) fn pool(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let ty = ctx.ty(x);
    if ty.rank() < 3 {
        return Err("needs rank >= 3 ([N, C, spatial…])".into());
    }
    if ctx.output_name(1).is_some() {
        return Err("MaxPool's Indices output is not supported".into());
    }
    if ctx.attr_int("storage_order")?.unwrap_or(0) != 0 {
        return Err("storage_order 1 is not supported".into());
    }
    let axes = axes(ctx, &ty.shape)?;
    let dtype = ty.dtype;
    if ctx.op_type() == "MaxPool" {
        let low = ctx.scalar("lowest", dtype, lowest(dtype))?;
        let padded = pad_spatial(ctx, x, &axes, low, low)?;
        return Ok(vec![Some(windows(
            ctx,
            "max",
            padded,
            &axes,
            BinaryOp::Max,
        )?)]);
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
    let numel = ones_shape.iter().product();
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
