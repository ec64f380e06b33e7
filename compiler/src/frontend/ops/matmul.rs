//! MatMul (1-D operands handled with reshapes) and Gemm (expanded into
//! transpose, matmul, scaling and bias add).

use crate::graph::{BinaryOp, NodeId, Op};

use super::super::ctx::{ConvertResult, Ctx};
use super::one;

/// MatMul with NumPy semantics: a 1-D left operand is a row, a 1-D right
/// operand a column, and the inserted dimension is removed again.
pub(super) fn matmul(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (a, b) = (ctx.input(0)?, ctx.input(1)?);
    one(matmul_of(ctx, a, b)?)
}

/// `a @ b` with MatMul's NumPy semantics for 1-D operands.
pub(super) fn matmul_of(ctx: &mut Ctx, a: NodeId, b: NodeId) -> ConvertResult<NodeId> {
    let (a_shape, b_shape) = (ctx.ty(a).shape, ctx.ty(b).shape);
    if a_shape.is_empty() || b_shape.is_empty() {
        return Err("matmul operands must have rank >= 1".into());
    }
    let a2 = if a_shape.len() == 1 {
        ctx.reshape("a_row", a, vec![1, a_shape[0]])?
    } else {
        a
    };
    let b2 = if b_shape.len() == 1 {
        ctx.reshape("b_column", b, vec![b_shape[0], 1])?
    } else {
        b
    };
    let product = ctx.add("matmul", Op::MatMul, &[a2, b2])?;
    let mut shape = ctx.ty(product).shape;
    // Drop the column dimension added to b, then the row dimension added to a.
    let (a_vector, b_vector) = (a_shape.len() == 1, b_shape.len() == 1);
    if b_vector {
        shape.pop();
    }
    if a_vector {
        let row = shape.len() - if b_vector { 1 } else { 2 };
        shape.remove(row);
    }
    ctx.reshape("squeeze", product, shape)
}

/// Gemm: `alpha * op(A) @ op(B) + beta * C`, op = optional transpose.
pub(super) fn gemm(ctx: &mut Ctx) -> ConvertResult<Vec<Option<NodeId>>> {
    let (mut a, mut b) = (ctx.input(0)?, ctx.input(1)?);
    if ctx.ty(a).rank() != 2 || ctx.ty(b).rank() != 2 {
        return Err("Gemm operands A and B must be 2-D".into());
    }
    let dtype = ctx.ty(a).dtype;
    if ctx.attr_int("transA")?.unwrap_or(0) != 0 {
        a = ctx.add("transpose_a", Op::Transpose { perm: vec![1, 0] }, &[a])?;
    }
    if ctx.attr_int("transB")?.unwrap_or(0) != 0 {
        b = ctx.add("transpose_b", Op::Transpose { perm: vec![1, 0] }, &[b])?;
    }
    let alpha = ctx.attr_float("alpha")?.unwrap_or(1.0);
    let beta = ctx.attr_float("beta")?.unwrap_or(1.0);
    let mut y = ctx.add("matmul", Op::MatMul, &[a, b])?;
    let out_shape = ctx.ty(y).shape;
    if alpha != 1.0 {
        let s = ctx.scalar("alpha", dtype, f64::from(alpha))?;
        y = ctx.add("scale", Op::Binary(BinaryOp::Mul), &[y, s])?;
    }
    if let Some(mut c) = ctx.opt_input(2) {
        if beta != 1.0 {
            let s = ctx.scalar("beta", dtype, f64::from(beta))?;
            c = ctx.add("scale_c", Op::Binary(BinaryOp::Mul), &[c, s])?;
        }
        y = ctx.add("add", Op::Binary(BinaryOp::Add), &[y, c])?;
        if ctx.ty(y).shape != out_shape {
            return Err(
                format!("C does not broadcast to the product's shape {out_shape:?}").into(),
            );
        }
    }
    one(y)
}

#[cfg(test)]
mod tests {
    use crate::frontend::testutil::*;

    #[test]
    fn matmul_with_vector_operands() {
        let m = f(&[3, 2], &[1., 2., 3., 4., 5., 6.]);
        let v = f(&[3], &[1., 0., 1.]);
        let out = run_node("MatMul", 13, &[("v", v.clone()), ("m", m)], &["y"], vec![]);
        assert_close(&out[0], &[2], &[6., 8.]);
        let mt = f(&[2, 3], &[1., 3., 5., 2., 4., 6.]);
        let out = run_node("MatMul", 13, &[("m", mt), ("v", v.clone())], &["y"], vec![]);
        assert_close(&out[0], &[2], &[6., 8.]);
        let out = run_node("MatMul", 13, &[("a", v.clone()), ("b", v)], &["y"], vec![]);
        assert_close(&out[0], &[], &[2.]);
    }

    #[test]
    fn gemm_transposes_scales_and_adds_bias() {
        let a = f(&[1, 2], &[1., 2.]);
        let b = f(&[2, 2], &[1., 2., 3., 4.]); // transposed: [[1, 3], [2, 4]]
        let c = f(&[2], &[10., 20.]);
        let attrs = vec![
            ("transB", A::I(1)),
            ("alpha", A::F(2.)),
            ("beta", A::F(0.5)),
        ];
        let out = run_node("Gemm", 13, &[("a", a), ("b", b), ("c", c)], &["y"], attrs);
        // a @ b^T = [5, 11]; * 2 = [10, 22]; + 0.5 * [10, 20].
        assert_close(&out[0], &[1, 2], &[15., 32.]);
    }
}
