//! Conv (any number of spatial dimensions), with explicit or automatic
//! padding resolved to explicit pads.

use crate::graph::{ConvAttrs, NodeId, Op};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

fn positive(values: Vec<i64>, what: &str) -> ConvertResult<Vec<usize>> {
    values
        .into_iter()
        .map(|v| usize::try_from(v).ok().filter(|&v| v > 0))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("{what} must be positive").into())
}

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
}
