//! Builders of the larger patterns the fusion rules match: attention
//! (plain and grouped), RMS and layer norm, softmax, RoPE and GEMM.

use crate::graph::{BinaryOp, NodeId, Op, ReduceKind, UnaryOp};

use super::{gemm, reduce, shape, Builder};

/// The decomposition of attention over random q, kᵀ, v: `scale` and
/// `mask` say which parts to include. Shapes: B, H, Sq, Sk, D random.
pub(super) fn attention_case(b: &mut Builder, scale: bool, mask: bool) -> NodeId {
    let (batch, heads, sq, sk, d) = (
        b.dim(1, 2),
        b.dim(1, 3),
        b.dim(1, 5),
        b.dim(1, 6),
        b.dim(1, 6),
    );
    let q = b.input(&[batch, heads, sq, d]);
    let kt = b.input(&[batch, heads, d, sk]);
    let v = b.input(&[batch, heads, sk, d]);
    let mut scores = b.op(Op::MatMul, &[q, kt]);
    if scale {
        let s = b.random_scalar(0.125, 1.125);
        scores = b.binary(BinaryOp::Mul, scores, s);
    }
    if mask {
        let m = b.input(&[1, 1, sq, sk]);
        scores = b.binary(BinaryOp::Add, scores, m);
    }
    let p = b.op(Op::Softmax { axis: 3 }, &[scores]);
    b.op(Op::MatMul, &[p, v])
}

/// `repeat_kv`: [B, Hkv, S, D] → [B, Hkv·n, S, D].
pub(super) fn repeat_kv(b: &mut Builder, x: NodeId, n: usize) -> NodeId {
    let s = b.g.node(x).ty.shape.clone();
    let un = b.op(
        Op::Reshape {
            shape: vec![s[0], s[1], 1, s[2], s[3]],
        },
        &[x],
    );
    let ex = b.op(
        Op::Expand {
            shape: vec![s[0], s[1], n, s[2], s[3]],
        },
        &[un],
    );
    b.op(
        Op::Reshape {
            shape: vec![s[0], s[1] * n, s[2], s[3]],
        },
        &[ex],
    )
}

pub(super) fn grouped_case(b: &mut Builder, mask: bool) -> NodeId {
    let (batch, hkv, n, s, d) = (
        b.dim(1, 2),
        b.dim(1, 2),
        b.dim(2, 3),
        b.dim(1, 5),
        b.dim(1, 4),
    );
    let q = b.input(&[batch, hkv * n, s, d]);
    let k = b.input(&[batch, hkv, s, d]);
    let v = b.input(&[batch, hkv, s, d]);
    let (k, v) = (repeat_kv(b, k, n), repeat_kv(b, v, n));
    let mut operands = vec![q, k, v];
    if mask {
        operands.push(b.input(&[1, 1, s, s]));
    }
    b.op(
        Op::Attention {
            scale: 0.5,
            causal: false,
        },
        &operands,
    )
}

/// `x · 1/√(mean(x²) + ε)` (or the division form).
pub(super) fn rms_case(b: &mut Builder, divide: bool) -> NodeId {
    let s = shape(b, 2, 3);
    let x = b.input(&s);
    let two = b.scalar(2.0);
    let sq = b.binary(BinaryOp::Pow, x, two);
    let mean = b.op(reduce(ReduceKind::Mean, vec![s.len() - 1]), &[sq]);
    let eps = b.scalar(1e-5);
    let var = b.binary(BinaryOp::Add, mean, eps);
    let root = b.unary(UnaryOp::Sqrt, var);
    if divide {
        b.binary(BinaryOp::Div, x, root)
    } else {
        let inv = b.unary(UnaryOp::Reciprocal, root);
        b.binary(BinaryOp::Mul, x, inv)
    }
}

/// `(x - mean(x)) / √(mean((x - mean(x))²) + ε)` over the last `n` axes.
pub(super) fn layer_norm_case(b: &mut Builder, reciprocal: bool) -> NodeId {
    let s = shape(b, 2, 4);
    let n = b.dim(1, s.len() - 1);
    let axes: Vec<usize> = (s.len() - n..s.len()).collect();
    let x = b.input(&s);
    let mean = b.op(reduce(ReduceKind::Mean, axes.clone()), &[x]);
    let d = b.binary(BinaryOp::Sub, x, mean);
    let two = b.scalar(2.0);
    let sq = b.binary(BinaryOp::Pow, d, two);
    let var = b.op(reduce(ReduceKind::Mean, axes), &[sq]);
    let eps = b.scalar(1e-5);
    let var = b.binary(BinaryOp::Add, var, eps);
    let root = b.unary(UnaryOp::Sqrt, var);
    if reciprocal {
        let inv = b.unary(UnaryOp::Reciprocal, root);
        b.binary(BinaryOp::Mul, d, inv)
    } else {
        b.binary(BinaryOp::Div, d, root)
    }
}

pub(super) fn softmax_case(b: &mut Builder, stable: bool) -> NodeId {
    let s = shape(b, 1, 3);
    let axis = b.dim(0, s.len() - 1);
    let x = b.input(&s);
    let shifted = if stable {
        let max = b.op(reduce(ReduceKind::Max, vec![axis]), &[x]);
        b.binary(BinaryOp::Sub, x, max)
    } else {
        x
    };
    let e = b.unary(UnaryOp::Exp, shifted);
    let sum = b.op(reduce(ReduceKind::Sum, vec![axis]), &[e]);
    b.binary(BinaryOp::Div, e, sum)
}

pub(super) fn rope_case(b: &mut Builder, swapped: bool) -> NodeId {
    let (batch, heads, s, half) = (b.dim(1, 2), b.dim(1, 3), b.dim(1, 5), b.dim(1, 4));
    let d = 2 * half;
    let x = b.input(&[batch, heads, s, d]);
    let cos = b.random(&[1, 1, s, d], -1.0, 1.0);
    let sin = b.random(&[1, 1, s, d], -1.0, 1.0);
    let slice = |b: &mut Builder, lo: usize| {
        b.op(
            Op::Slice {
                starts: vec![0, 0, 0, lo as i64],
                ends: vec![batch as i64, heads as i64, s as i64, (lo + half) as i64],
                steps: vec![1; 4],
            },
            &[x],
        )
    };
    let upper = slice(b, half);
    let lower = slice(b, 0);
    let neg = b.unary(UnaryOp::Neg, upper);
    let rotated = b.op(Op::Concat { axis: 3 }, &[neg, lower]);
    let a = b.binary(BinaryOp::Mul, x, cos);
    let r = b.binary(BinaryOp::Mul, rotated, sin);
    if swapped {
        b.binary(BinaryOp::Add, r, a)
    } else {
        b.binary(BinaryOp::Add, a, r)
    }
}

/// `gemm(x, w)` with random `[.., K]`, `[K, N]`.
pub(super) fn gemm_case(b: &mut Builder) -> (NodeId, usize) {
    let mut s = shape(b, 2, 3);
    let n = b.dim(1, 6);
    let k = *s.last().expect("rank >= 2");
    let x = b.input(&s);
    let w = b.random(&[k, n], -1.0, 1.0);
    s.pop();
    (b.op(gemm(None), &[x, w]), n)
}
