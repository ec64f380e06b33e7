//! Conv (any number of spatial dimensions), with explicit or automatic
//! padding resolved to explicit pads.

use crate::graph::{ConvAttrs, NodeId, Op};

use super::super::ctx::{check_size, ConvertResult, Ctx};
use super::one;

fn positive(values: Vec<i64>, what: &str) -> ConvertResult<Vec<usize>> {
    if let Some(v) = values.iter().find(|&&v| v > MAX_WINDOW_PARAM) {
        return Err(format!("{what} {v} is too large (at most 2^31)").into());
    }
    values
        .into_iter()
        .map(|v| usize::try_from(v).ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{what} must be positive").into())
}

/// The largest stride, dilation or group a convolution takes: output sizes
/// computed from it and a tensor's dimensions stay far from overflowing.
const MAX_WINDOW_PARAM: i64 = 1 << 31;

/// Conv: X, W, optional B.
pub(super) fn conv(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let (x_shape, w_shape) = (ctx.ty(x).shape, ctx.ty(w).shape);
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(format!(
            "input {x_shape:?} and weights {w_shape:?} must be N,C,spatial... of the same rank"
        )
        .into());
    }
    let spatial = x_shape.len() - 2;
    let kernel = &w_shape[2..];
    if let Some(k) = ctx.attr_ints("kernel_shape")? {
        if k.len() != spatial || k.iter().zip(kernel).any(|(&a, &b)| a != b as i64) {
            return Err(
                format!("kernel_shape {k:?} does not match the weights {w_shape:?}").into(),
            );
        }
    }
    let strides = positive(
        ctx.attr_ints("strides")?.unwrap_or(vec![1; spatial]),
        "strides",
    )?;
    let dilations = positive(
        ctx.attr_ints("dilations")?.unwrap_or(vec![1; spatial]),
        "dilations",
    )?;
    let group = positive(vec![ctx.attr_int("group")?.unwrap_or(1)], "group")?[0];
    if strides.len() != spatial || dilations.len() != spatial {
        return Err("strides and dilations need one value per spatial dimension".into());
    }
    let auto_pad = ctx
        .attr_string("auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let pads = match auto_pad.as_str() {
        "NOTSET" => {
            let pads = ctx.attr_ints("pads")?.unwrap_or(vec![0; 2 * spatial]);
            if pads.len() != 2 * spatial {
                return Err(format!("pads {pads:?} needs {} values", 2 * spatial).into());
            }
            pads.into_iter()
                .map(|p| usize::try_from(p).map_err(|_| "pads must be >= 0".to_string()))
                .collect::<Result<Vec<_>, _>>()?
        }
        "VALID" => vec![0; 2 * spatial],
        "SAME_UPPER" | "SAME_LOWER" => {
            let mut pads = vec![0; 2 * spatial];
            for d in 0..spatial {
                let input = x_shape[2 + d];
                let out = input.div_ceil(strides[d]);
                let reach = (kernel[d].saturating_sub(1)) * dilations[d] + 1;
                let total = ((out.saturating_sub(1)) * strides[d] + reach).saturating_sub(input);
                let small = total / 2;
                let (begin, end) = if auto_pad == "SAME_UPPER" {
                    (small, total - small)
                } else {
                    (total - small, small)
                };
                pads[d] = begin;
                pads[spatial + d] = end;
            }
            pads
        }
        other => return Err(format!("unknown auto_pad `{other}`").into()),
    };
    let attrs = ConvAttrs {
        strides,
        pads,
        dilations,
        group,
    };
    let mut operands = vec![x, w];
    operands.extend(ctx.opt_input(2));
    one(ctx.add("conv", Op::Conv(attrs), &operands)?)
}

/// ConvTranspose: X `[N, C, spatial…]`, W `[C, M/group, k…]`, optional B
/// `[M]`. Composed as the equivalent direct convolution: zeros inserted
/// between the input elements (`stride − 1` per gap), the result padded by
/// `dilation·(k − 1)` less the ONNX pads (cropped where that is negative)
/// with `output_padding` added at the end, then a stride-1 Conv with the
/// weights' channel axes swapped per group and their taps flipped. Pads
/// come from `pads`, `auto_pad` or `output_shape` as the operator's spec
/// says. The MXU does `stride^spatial` times the MACs of a scatter-add
/// implementation, spent on the inserted zeros.
pub(super) fn conv_transpose(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (x, w) = (ctx.input(0)?, ctx.input(1)?);
    let (x_shape, w_shape) = (ctx.ty(x).shape, ctx.ty(w).shape);
    if x_shape.len() < 3 || w_shape.len() != x_shape.len() {
        return Err(format!(
            "input {x_shape:?} and weights {w_shape:?} must be N,C,spatial... of the same rank"
        )
        .into());
    }
    let spatial = x_shape.len() - 2;
    if x_shape.contains(&0) || w_shape.contains(&0) {
        return Err(format!("input {x_shape:?} or weights {w_shape:?} are empty").into());
    }
    let kernel = w_shape[2..].to_vec();
    if let Some(k) = ctx.attr_ints("kernel_shape")? {
        if k.len() != spatial || k.iter().zip(&kernel).any(|(&a, &b)| a != b as i64) {
            return Err(
                format!("kernel_shape {k:?} does not match the weights {w_shape:?}").into(),
            );
        }
    }
    let per_dim = |ctx: &Ctx, name: &str, default: i64| -> ConvertResult<Vec<i64>> {
        let v = ctx.attr_ints(name)?.unwrap_or(vec![default; spatial]);
        if v.len() != spatial {
            return Err(format!("{name} {v:?} needs one value per spatial dimension").into());
        }
        Ok(v)
    };
    let strides = positive(per_dim(ctx, "strides", 1)?, "strides")?;
    let dilations = positive(per_dim(ctx, "dilations", 1)?, "dilations")?;
    let output_padding = per_dim(ctx, "output_padding", 0)?;
    let group = positive(vec![ctx.attr_int("group")?.unwrap_or(1)], "group")?[0];
    let (c_in, m_per_group) = (x_shape[1], w_shape[1]);
    if w_shape[0] != c_in || c_in % group != 0 {
        return Err(format!(
            "weights {w_shape:?} need {c_in} input channels divisible by group {group}"
        )
        .into());
    }
    for d in 0..spatial {
        let op = output_padding[d];
        if op < 0 || op >= strides[d].max(dilations[d]) as i64 {
            return Err(format!(
                "output_padding {op} must be in [0, max(stride, dilation)) on axis {d}"
            )
            .into());
        }
    }
    // The full (unpadded) output length per axis.
    let full: Vec<i64> = (0..spatial)
        .map(|d| {
            let reach = (kernel[d] as i64 - 1)
                .checked_mul(dilations[d] as i64)?
                .checked_add(1)?;
            (strides[d] as i64)
                .checked_mul(x_shape[2 + d] as i64 - 1)?
                .checked_add(output_padding[d])?
                .checked_add(reach)
        })
        .collect::<Option<_>>()
        .ok_or("the output size overflows")?;
    let auto_pad = ctx
        .attr_string("auto_pad")?
        .unwrap_or_else(|| "NOTSET".into());
    let output_shape = ctx.attr_ints("output_shape")?;
    let pads: Vec<i64> = if let Some(out) = &output_shape {
        // The last `spatial` values are the spatial output sizes.
        if out.len() < spatial {
            return Err(format!("output_shape {out:?} needs {spatial} spatial sizes").into());
        }
        let out = &out[out.len() - spatial..];
        let mut pads = vec![0; 2 * spatial];
        for d in 0..spatial {
            let total = full[d] - out[d];
            let (begin, end) = if auto_pad == "SAME_UPPER" {
                (total.div_euclid(2), total - total.div_euclid(2))
            } else {
                (total - total.div_euclid(2), total.div_euclid(2))
            };
            (pads[d], pads[spatial + d]) = (begin, end);
        }
        pads
    } else {
        match auto_pad.as_str() {
            "NOTSET" => {
                let pads = ctx.attr_ints("pads")?.unwrap_or(vec![0; 2 * spatial]);
                if pads.len() != 2 * spatial || pads.iter().any(|&p| p < 0) {
                    return Err(format!("pads {pads:?} needs {} values >= 0", 2 * spatial).into());
                }
                pads
            }
            "VALID" => vec![0; 2 * spatial],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = vec![0; 2 * spatial];
                for d in 0..spatial {
                    let total = full[d] - (x_shape[2 + d] * strides[d]) as i64;
                    let small = total.div_euclid(2);
                    (pads[d], pads[spatial + d]) = if auto_pad == "SAME_UPPER" {
                        (small, total - small)
                    } else {
                        (total - small, small)
                    };
                }
                pads
            }
            other => return Err(format!("unknown auto_pad `{other}`").into()),
        }
    };
    let dtype = ctx.ty(x).dtype;
    let zero = ctx.scalar("zero", dtype, 0.0)?;
    let mut z = x;
    let mut conv_pads = vec![0usize; 2 * spatial];
    for d in 0..spatial {
        let axis = 2 + d;
        z = insert_zeros(ctx, z, axis, strides[d], zero)?;
        let reach = (kernel[d] as i64 - 1) * dilations[d] as i64;
        let begin = reach - pads[d];
        let end = reach - pads[spatial + d] + output_padding[d];
        // Crop what is negative; the Conv pads what is positive.
        z = super::movement::pad_axis(
            ctx,
            z,
            axis,
            begin.min(0),
            end.min(0),
            super::movement::PadMode::Constant,
            Some(zero),
        )?;
        (conv_pads[d], conv_pads[spatial + d]) = (begin.max(0) as usize, end.max(0) as usize);
    }
    // W [C, M/g, k…] -> [g, C/g, M/g, k…] -> [g, M/g, C/g, k…] -> [M, C/g, k…].
    let c_per_group = c_in / group;
    let mut grouped = vec![group, c_per_group, m_per_group];
    grouped.extend(&kernel);
    let wg = ctx.reshape("w_groups", w, grouped)?;
    let mut perm = vec![0, 2, 1];
    perm.extend(3..3 + spatial);
    let wt = ctx.add("w_swapped", Op::Transpose { perm }, &[wg])?;
    let mut conv_shape = vec![group * m_per_group, c_per_group];
    conv_shape.extend(&kernel);
    let mut wf = ctx.reshape("w_conv", wt, conv_shape.clone())?;
    for (d, &k) in kernel.iter().enumerate() {
        if k > 1 {
            let flip = super::movement::window(&conv_shape, 2 + d, k as i64 - 1, -1, -1);
            wf = ctx.add(&format!("w_flip{d}"), flip, &[wf])?;
        }
    }
    let attrs = ConvAttrs {
        strides: vec![1; spatial],
        pads: conv_pads,
        dilations,
        group,
    };
    let mut operands = vec![z, wf];
    operands.extend(ctx.opt_input(2));
    let y = ctx.add("conv", Op::Conv(attrs), &operands)?;
    check_size(&ctx.ty(y).shape)?;
    one(y)
}

/// `stride − 1` zeros between consecutive elements along `axis`:
/// `[…, n, …]` becomes `[…, (n − 1)·stride + 1, …]`.
fn insert_zeros(
    ctx: &mut Ctx,
    x: NodeId,
    axis: usize,
    stride: usize,
    zero: NodeId,
) -> ConvertResult<NodeId> {
    if stride == 1 {
        return Ok(x);
    }
    let shape = ctx.ty(x).shape;
    let n = shape[axis];
    let mut split = shape.clone();
    split.insert(axis + 1, 1);
    let column = ctx.reshape(&format!("gaps{axis}_column"), x, split.clone())?;
    split[axis + 1] = stride - 1;
    let zeros = ctx.add(
        &format!("gaps{axis}_zeros"),
        Op::Expand { shape: split },
        &[zero],
    )?;
    let both = ctx.add(
        &format!("gaps{axis}_interleaved"),
        Op::Concat { axis: axis + 1 },
        &[column, zeros],
    )?;
    let mut merged = shape.clone();
    merged[axis] = n * stride;
    let flat = ctx.reshape(&format!("gaps{axis}_merged"), both, merged.clone())?;
    let keep = ((n - 1) * stride + 1) as i64;
    ctx.add(
        &format!("gaps{axis}"),
        super::movement::window(&merged, axis, 0, keep, 1),
        &[flat],
    )
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn conv_same_upper_padding_with_stride() {
        let x = f(&[1, 1, 5, 5], &[1.; 25]);
        let w = f(&[1, 1, 3, 3], &[1.; 9]);
        let attrs = vec![
            ("auto_pad", A::S("SAME_UPPER")),
            ("strides", A::Is(vec![2, 2])),
        ];
        let out = run_node("Conv", 11, &[("x", x), ("w", w)], &["y"], attrs);
        assert_close(
            &out[0],
            &[1, 1, 3, 3],
            &[4., 6., 4., 6., 9., 6., 4., 6., 4.],
        );
    }

    #[test]
    fn conv_groups_and_bias() {
        // Two channels, group 2: each output channel sees one input channel.
        let x = f(&[1, 2, 1, 2], &[1., 2., 10., 20.]);
        let w = f(&[2, 1, 1, 1], &[3., -1.]);
        let b = f(&[2], &[0.5, 1.]);
        let out = run_node(
            "Conv",
            11,
            &[("x", x), ("w", w), ("b", b)],
            &["y"],
            vec![("group", A::I(2))],
        );
        assert_close(&out[0], &[1, 2, 1, 2], &[3.5, 6.5, -9., -19.]);
    }

    /// ConvTranspose by its definition: every input element scatters
    /// `x · W` into the output (2-D, one batch).
    #[allow(clippy::too_many_arguments)]
    fn scatter_add(
        x: &[f32],
        (c, h, w): (usize, usize, usize),
        wt: &[f32],
        (m, kh, kw): (usize, usize, usize),
        (sh, sw): (usize, usize),
        pads: [usize; 4],
        out_pad: (usize, usize),
    ) -> (Vec<usize>, Vec<f32>) {
        let full_h = sh * (h - 1) + kh + out_pad.0;
        let full_w = sw * (w - 1) + kw + out_pad.1;
        let mut full = vec![0f32; m * full_h * full_w];
        for ci in 0..c {
            for (y, xx) in (0..h).flat_map(|y| (0..w).map(move |xx| (y, xx))) {
                let v = x[(ci * h + y) * w + xx];
                for mo in 0..m {
                    for (a, b) in (0..kh).flat_map(|a| (0..kw).map(move |b| (a, b))) {
                        let k = wt[((ci * m + mo) * kh + a) * kw + b];
                        full[(mo * full_h + y * sh + a) * full_w + xx * sw + b] += v * k;
                    }
                }
            }
        }
        let (oh, ow) = (full_h - pads[0] - pads[2], full_w - pads[1] - pads[3]);
        let mut out = Vec::with_capacity(m * oh * ow);
        for mo in 0..m {
            for y in 0..oh {
                for xx in 0..ow {
                    out.push(full[(mo * full_h + y + pads[0]) * full_w + xx + pads[1]]);
                }
            }
        }
        (vec![1, m, oh, ow], out)
    }

    #[test]
    fn conv_transpose_matches_the_scatter_definition() {
        let x: Vec<f32> = (0..2 * 3 * 4).map(|v| (v as f32 * 0.37).sin()).collect();
        let w: Vec<f32> = (0..2 * 3 * 3 * 2)
            .map(|v| (v as f32 * 0.61).cos())
            .collect();
        let (shape, want) = scatter_add(&x, (2, 3, 4), &w, (3, 3, 2), (2, 3), [1, 0, 2, 1], (1, 2));
        let out = run_node(
            "ConvTranspose",
            11,
            &[("x", f(&[1, 2, 3, 4], &x)), ("w", f(&[2, 3, 3, 2], &w))],
            &["y"],
            vec![
                ("strides", A::Is(vec![2, 3])),
                ("pads", A::Is(vec![1, 0, 2, 1])),
                ("output_padding", A::Is(vec![1, 2])),
            ],
        );
        assert_close(&out[0], &shape, &want);
    }

    #[test]
    fn conv_transpose_refuses_bad_output_padding() {
        let bytes = model(
            vec![node(
                "ConvTranspose",
                &["x", "w"],
                &["y"],
                vec![("output_padding", A::Is(vec![1, 0]))],
            )],
            &[
                ("x", &f(&[1, 1, 2, 2], &[0.; 4])),
                ("w", &f(&[1, 1, 2, 2], &[0.; 4])),
            ],
            &[],
            &["y"],
            11,
        );
        let err = import(&bytes).expect_err("refused").to_string();
        assert!(
            err.contains("output_padding 1 must be in [0, max(stride, dilation))"),
            "{err}"
        );
    }
}
