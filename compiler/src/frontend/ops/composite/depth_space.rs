//! DepthToSpace and SpaceToDepth as reshape, transpose, reshape.

use crate::frontend::ctx::{ConvertResult, Ctx};
use crate::frontend::ops::one;
use crate::graph::{NodeId, Op};

/// DepthToSpace (DCR and CRD) and SpaceToDepth: reshape, transpose,
/// reshape.
pub(in crate::frontend::ops) fn depth_space(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let x = ctx.input(0)?;
    let shape = ctx.ty(x).shape;
    let [n, c, h, w] = shape[..] else {
        return Err("needs a rank-4 input [N, C, H, W]".into());
    };
    let b = ctx
        .attr_int("blocksize")?
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b > 0)
        .ok_or("attribute `blocksize` must be positive")?;
    // Every size below is at most the input's element count times b², so
    // bounding b² by it keeps the arithmetic exact.
    if b.checked_mul(b)
        .and_then(|bb| bb.checked_mul(n * c * h * w))
        .is_none()
    {
        return Err(format!("attribute `blocksize` {b} is too large").into());
    }
    let (split, perm, out) = if ctx.op_type() == "DepthToSpace" {
        if c % (b * b) != 0 {
            return Err(format!("blocksize {b}² does not divide {c} channels").into());
        }
        let c2 = c / (b * b);
        let crd = ctx.attr_string("mode")?.as_deref() == Some("CRD");
        if crd {
            (
                vec![n, c2, b, b, h, w],
                vec![0, 1, 4, 2, 5, 3],
                vec![n, c2, h * b, w * b],
            )
        } else {
            (
                vec![n, b, b, c2, h, w],
                vec![0, 3, 4, 1, 5, 2],
                vec![n, c2, h * b, w * b],
            )
        }
    } else {
        if h % b != 0 || w % b != 0 {
            return Err(format!("blocksize {b} does not divide {h}×{w}").into());
        }
        // DCR: channel = (bh·b + bw)·C + c; CRD: c·b² + bh·b + bw.
        let perm = if ctx.attr_string("mode")?.as_deref() == Some("CRD") {
            vec![0, 1, 3, 5, 2, 4]
        } else {
            vec![0, 3, 5, 1, 2, 4]
        };
        (
            vec![n, c, h / b, b, w / b, b],
            perm,
            vec![n, c * b * b, h / b, w / b],
        )
    };
    let split = ctx.reshape("split", x, split)?;
    let moved = ctx.add("transpose", Op::Transpose { perm }, &[split])?;
    one(ctx.reshape("merged", moved, out)?)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn depth_to_space_and_back_is_the_identity_in_both_modes() {
        let values: Vec<f32> = (0..32).map(|v| v as f32).collect();
        for mode in ["DCR", "CRD"] {
            let x = f(&[1, 8, 2, 2], &values);
            let up = run_node(
                "DepthToSpace",
                13,
                &[("x", x)],
                &["y"],
                vec![("blocksize", A::I(2)), ("mode", A::S(mode))],
            );
            assert_eq!(up[0].shape(), &[1, 2, 4, 4]);
            let down = run_node(
                "SpaceToDepth",
                13,
                &[("y", up[0].clone())],
                &["z"],
                vec![("blocksize", A::I(2)), ("mode", A::S(mode))],
            );
            assert_close(&down[0], &[1, 8, 2, 2], &values);
        }
    }
}
