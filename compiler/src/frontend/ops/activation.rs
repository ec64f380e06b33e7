//! Activations that stay ops in Graph IR: Gelu and Softmax.

use crate::graph::{GeluApprox, NodeId, Op};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

/// Gelu (opset 20), exact or tanh-approximated.
pub(super) fn gelu(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let approximate = match ctx.attr_string("approximate")?.as_deref() {
        None | Some("none") => GeluApprox::None,
        Some("tanh") => GeluApprox::Tanh,
        Some(other) => return Err(format!("unknown approximation `{other}`").into()),
    };
    one(ctx.add("gelu", Op::Gelu { approximate }, &[x])?)
}

/// Softmax. From opset 13 it normalizes along `axis` (default -1). Before,
/// the input is coerced to 2-D `[prod(d[..axis]), prod(d[axis..])]` and
/// normalized along the second dimension (default axis 1); that is what we
/// build, with reshapes around a softmax on axis 1.
pub(super) fn softmax(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let rank = shape.len();
    if rank == 0 {
        return Err("softmax needs rank >= 1".into());
    }
    if ctx.opset >= 13 {
        let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(-1), rank)?;
        return one(ctx.add("softmax", Op::Softmax { axis }, &[x])?);
    }
    let axis = ctx.axis(ctx.attr_int("axis")?.unwrap_or(1), rank)?;
    if axis == rank - 1 {
        return one(ctx.add("softmax", Op::Softmax { axis }, &[x])?);
    }
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis..].iter().product();
    let flat = ctx.reshape("flatten", x, vec![outer, inner])?;
    let y = ctx.add("softmax", Op::Softmax { axis: 1 }, &[flat])?;
    one(ctx.reshape("unflatten", y, shape)?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn softmax_from_opset_13_uses_one_axis() {
        let out = run_node(
            "Softmax",
            13,
            &[("x", f(&[2, 2], &[0., 1., 0., 1.]))],
            &["y"],
            vec![("axis", A::I(0))],
        );
        assert_close(&out[0], &[2, 2], &[0.5, 0.5, 0.5, 0.5]);
    }

    #[test]
    fn softmax_before_opset_13_coerces_to_2d() {
        let x = f(
            &[2, 3, 2],
            &[0., 1., 2., 3., 4., 5., 0., 0., 0., 0., 0., 0.],
        );
        let out = run_node("Softmax", 11, &[("x", x)], &["y"], vec![("axis", A::I(1))]);
        let y = out[0].to_f32_vec();
        // Each batch's 6 elements sum to 1 (not each size-3 column).
        assert!((y[..6].iter().sum::<f32>() - 1.0).abs() < 1e-6);
        assert!(
            y[6..].iter().all(|&v| (v - 1.0 / 6.0).abs() < 1e-6),
            "{y:?}"
        );
        let e: Vec<f32> = (0..6).map(|k| (k as f32).exp()).collect();
        let total: f32 = e.iter().sum();
        assert!((y[5] - e[5] / total).abs() < 1e-6);
    }

    #[test]
    fn gelu_tanh_approximation() {
        let out = run_node(
            "Gelu",
            20,
            &[("x", f(&[2], &[0., 1.]))],
            &["y"],
            vec![("approximate", A::S("tanh"))],
        );
        assert_close(&out[0], &[2], &[0., 0.841_192]);
    }
}
