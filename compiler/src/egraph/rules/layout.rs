//! Layout: transposes, reshape chains, and layout ops moved past the ops
//! that do not care about them (elementwise ops, GEMMs whose rows are
//! flattened anyway). Attention's head split comes out canonical from
//! these: the key transpose `[0, 2, 3, 1]` that exporters emit composes
//! with the fusion's `[0, 1, 3, 2]` into the split `[0, 2, 1, 3]`.

use egg::Id;

use crate::graph::{Op, UnaryOp};

use super::{is_identity, Ctx, RuleDef};

/// The layout rules.
pub fn rules() -> Vec<RuleDef> {
    vec![
        // transpose(transpose(x, q), p) = transpose(x, q∘p), or x when the
        // composition is the identity.
        RuleDef {
            name: "transpose-of-transpose",
            lhs: "(transpose ?p (transpose ?q ?x))",
            apply: |cx| {
                let (Op::Transpose { perm: p }, Op::Transpose { perm: q }) = (
                    cx.op("transpose", cx.v("?p"))?,
                    cx.op("transpose", cx.v("?q"))?,
                ) else {
                    return None;
                };
                let x = cx.v("?x");
                let perm: Vec<usize> = p.iter().map(|&i| q[i]).collect();
                if is_identity(&perm) {
                    Some(x)
                } else {
                    cx.add(Op::Transpose { perm }, &[x])
                }
            },
        },
        // transpose(x, identity) = x.
        RuleDef {
            name: "transpose-identity",
            lhs: "(transpose ?p ?x)",
            apply: |cx| match cx.op("transpose", cx.v("?p"))? {
                Op::Transpose { perm } if is_identity(&perm) => Some(cx.v("?x")),
                _ => None,
            },
        },
        // reshape(reshape(x, t), s) = reshape(x, s), or x when s is x's shape.
        RuleDef {
            name: "reshape-of-reshape",
            lhs: "(reshape ?s (reshape ?t ?x))",
            apply: |cx| {
                let Op::Reshape { shape } = cx.op("reshape", cx.v("?s"))? else {
                    return None;
                };
                let x = cx.v("?x");
                if cx.shape(x) == shape {
                    Some(x)
                } else {
                    cx.add(Op::Reshape { shape }, &[x])
                }
            },
        },
        // reshape(x, shape(x)) = x.
        RuleDef {
            name: "reshape-identity",
            lhs: "(reshape ?s ?x)",
            apply: same_shape,
        },
        // expand(x, shape(x)) = x.
        RuleDef {
            name: "expand-identity",
            lhs: "(expand ?s ?x)",
            apply: same_shape,
        },
        // slice(x, everything) = x.
        RuleDef {
            name: "slice-identity",
            lhs: "(slice ?s ?x)",
            apply: |cx| {
                let x = cx.v("?x");
                let Op::Slice { starts, steps, .. } = cx.op("slice", cx.v("?s"))? else {
                    return None;
                };
                let full = starts.iter().all(|&s| s == 0) && steps.iter().all(|&s| s == 1);
                (full && cx.shape(cx.root) == cx.shape(x)).then_some(x)
            },
        },
        // gelu(reshape(x)) = reshape(gelu(x)): elementwise ops do not see
        // the shape, and under the reshape the GELU can join its GEMM.
        RuleDef {
            name: "gelu-through-reshape",
            lhs: "(gelu ?a (reshape ?s ?x))",
            apply: |cx| {
                let gelu = cx.op("gelu", cx.v("?a"))?;
                through_reshape(cx, gelu)
            },
        },
        // silu(reshape(x)) = reshape(silu(x)).
        RuleDef {
            name: "silu-through-reshape",
            lhs: "(silu (reshape ?s ?x))",
            apply: |cx| through_reshape(cx, Op::Unary(UnaryOp::Silu)),
        },
        // relu(reshape(x)) = reshape(relu(x)).
        RuleDef {
            name: "relu-through-reshape",
            lhs: "(relu (reshape ?s ?x))",
            apply: |cx| through_reshape(cx, Op::Unary(UnaryOp::Relu)),
        },
        // reshape(x) + b = reshape(x + b) when b is a row (broadcast over
        // all but the last axis) and the reshape keeps the last axis.
        RuleDef {
            name: "bias-add-through-reshape",
            lhs: "(add (reshape ?s ?x) ?b)",
            apply: |cx| {
                let (x, b) = (cx.v("?x"), cx.v("?b"));
                let (xs, bs, out) = (cx.shape(x), cx.shape(b), cx.shape(cx.root));
                if !cx.is_const(b) || xs.last() != out.last() || !is_row(&bs) {
                    return None;
                }
                let sum = cx.add(Op::Binary(crate::graph::BinaryOp::Add), &[x, b])?;
                cx.add(Op::Reshape { shape: out }, &[sum])
            },
        },
        // reshape(gemm(reshape(x, [rows, K]), w), [..., N]) = gemm(x, w):
        // a GEMM flattens the leading dims of its left operand anyway.
        RuleDef {
            name: "gemm-absorbs-reshapes",
            lhs: "(reshape ?s (gemm ?g (reshape ?t ?x) ?w))",
            apply: |cx| gemm_absorbs_reshapes(cx, false),
        },
        // The same with a bias.
        RuleDef {
            name: "gemm-absorbs-reshapes-bias",
            lhs: "(reshape ?s (gemm ?g (reshape ?t ?x) ?w ?bias))",
            apply: |cx| gemm_absorbs_reshapes(cx, true),
        },
    ]
}

fn same_shape(cx: &mut Ctx<'_>) -> Option<Id> {
    let x = cx.v("?x");
    (cx.shape(x) == cx.shape(cx.root)).then_some(x)
}

fn through_reshape(cx: &mut Ctx<'_>, op: Op) -> Option<Id> {
    let x = cx.v("?x");
    let inner = cx.add(op, &[x])?;
    let shape = cx.shape(cx.root);
    cx.add(Op::Reshape { shape }, &[inner])
}

/// Whether a shape is `[N]` or `[1, ..., 1, N]`.
pub(super) fn is_row(shape: &[usize]) -> bool {
    !shape.is_empty() && shape[..shape.len() - 1].iter().all(|&d| d == 1)
}

fn gemm_absorbs_reshapes(cx: &mut Ctx<'_>, bias: bool) -> Option<Id> {
    let (x, w) = (cx.v("?x"), cx.v("?w"));
    let gemm = cx.op("gemm", cx.v("?g"))?;
    let (xs, out) = (cx.shape(x), cx.shape(cx.root));
    // The inner reshape to [rows, K] can only flatten x's rows when the
    // GEMM type-checks with x itself (same K); the outer one must restore
    // them.
    if xs.len() < 2 || out.len() != xs.len() || xs[..xs.len() - 1] != out[..out.len() - 1] {
        return None;
    }
    let mut operands = vec![x, w];
    if bias {
        operands.push(cx.v("?bias"));
    }
    let fused = cx.add(gemm, &operands)?;
    (cx.shape(fused) == out).then_some(fused)
}
