//! Algebra: identities, a canonical operand order for constants, folding
//! of constant scales, division by a constant. None of these is a blanket
//! commutativity or associativity: each moves a constant in one direction
//! only (to the right, or outward), so the rules terminate.

use egg::Id;

use crate::graph::{BinaryOp, Op, UnaryOp};

use super::{Ctx, RuleDef};

/// The algebra rules.
pub fn rules() -> Vec<RuleDef> {
    vec![
        // c + x = x + c (c constant, x not): constants go right.
        RuleDef {
            name: "add-constant-right",
            lhs: "(add ?c ?x)",
            apply: |cx| constant_right(cx, BinaryOp::Add),
        },
        // c · x = x · c (c constant, x not): constants go right.
        RuleDef {
            name: "mul-constant-right",
            lhs: "(mul ?c ?x)",
            apply: |cx| constant_right(cx, BinaryOp::Mul),
        },
        // x · 1 = x (when the ones do not broadcast x).
        RuleDef {
            name: "mul-by-one",
            lhs: "(mul ?x ?c)",
            apply: |cx| identity_operand(cx, 1.0),
        },
        // x + 0 = x (when the zeros do not broadcast x).
        RuleDef {
            name: "add-zero",
            lhs: "(add ?x ?c)",
            apply: |cx| identity_operand(cx, 0.0),
        },
        // x / c = x · (1/c) (c constant): a multiplication is cheaper, and
        // 1/c is folded at compile time.
        RuleDef {
            name: "div-by-constant",
            lhs: "(div ?x ?c)",
            apply: |cx| {
                let (x, c) = (cx.v("?x"), cx.v("?c"));
                if !cx.is_const(c) || cx.is_const(x) || !cx.ty(c)?.dtype.is_float() {
                    return None;
                }
                let inverse = cx.add(Op::Unary(UnaryOp::Reciprocal), &[c])?;
                cx.add(Op::Binary(BinaryOp::Mul), &[x, inverse])
            },
        },
        // 1 / x = reciprocal(x).
        RuleDef {
            name: "reciprocal-from-div",
            lhs: "(div ?one ?x)",
            apply: |cx| {
                let (one, x) = (cx.v("?one"), cx.v("?x"));
                if cx.is_const(x) || !all_equal(cx, one, 1.0) {
                    return None;
                }
                cx.add(Op::Unary(UnaryOp::Reciprocal), &[x])
            },
        },
        // -(-x) = x.
        RuleDef {
            name: "neg-neg",
            lhs: "(neg (neg ?x))",
            apply: |cx| Some(cx.v("?x")),
        },
        // (x · a) · b = x · (a · b) (a, b constant): one multiplication at
        // run time, a · b folded. Only for an unscaled x (no `y · c` in its
        // class), so a chain folds from the inside out: where a dequantize
        // scale meets its quantize reciprocal, a · b = 1 makes x = (x · a) · b
        // and, without the guard, every further constant would fold around
        // that cycle again, each time to a product rounded differently.
        RuleDef {
            name: "mul-constants-fold",
            lhs: "(mul (mul ?x ?a) ?b)",
            apply: |cx| {
                let (x, a, b) = (cx.v("?x"), cx.v("?a"), cx.v("?b"));
                if cx.is_const(x) || !cx.is_const(a) || !cx.is_const(b) || is_scaled(cx, x) {
                    return None;
                }
                let ab = cx.add(Op::Binary(BinaryOp::Mul), &[a, b])?;
                cx.add(Op::Binary(BinaryOp::Mul), &[x, ab])
            },
        },
        // (x · c) · y = (x · y) · c (c a one-element constant): scalar
        // factors move outward, so a decomposition matches one pattern
        // whichever factor the exporter applied first.
        RuleDef {
            name: "scale-hoist-left",
            lhs: "(mul (mul ?x ?c) ?y)",
            apply: |cx| {
                let (x, c, y) = (cx.v("?x"), cx.v("?c"), cx.v("?y"));
                hoist(cx, x, y, c)
            },
        },
        // x · (y · c) = (x · y) · c (c a one-element constant).
        RuleDef {
            name: "scale-hoist-right",
            lhs: "(mul ?x (mul ?y ?c))",
            apply: |cx| {
                let (x, y, c) = (cx.v("?x"), cx.v("?y"), cx.v("?c"));
                hoist(cx, x, y, c)
            },
        },
        // transpose(x · c) = transpose(x) · c (c a one-element constant):
        // the scale can then leave a matmul the transpose feeds.
        RuleDef {
            name: "scale-out-of-transpose",
            lhs: "(transpose ?p (mul ?x ?c))",
            apply: |cx| {
                let (x, c) = (cx.v("?x"), cx.v("?c"));
                let transpose = cx.op("transpose", cx.v("?p"))?;
                if !is_scalar_constant(cx, c) || cx.is_const(x) {
                    return None;
                }
                let t = cx.add(transpose, &[x])?;
                cx.add(Op::Binary(BinaryOp::Mul), &[t, c])
            },
        },
        // (a · c) @ b = (a @ b) · c (c a one-element constant).
        RuleDef {
            name: "scale-out-of-matmul-lhs",
            lhs: "(matmul (mul ?a ?c) ?b)",
            apply: |cx| {
                let (a, c, b) = (cx.v("?a"), cx.v("?c"), cx.v("?b"));
                scale_out_of_matmul(cx, a, b, c)
            },
        },
        // a @ (b · c) = (a @ b) · c (c a one-element constant).
        RuleDef {
            name: "scale-out-of-matmul-rhs",
            lhs: "(matmul ?a (mul ?b ?c))",
            apply: |cx| {
                let (a, b, c) = (cx.v("?a"), cx.v("?b"), cx.v("?c"));
                scale_out_of_matmul(cx, a, b, c)
            },
        },
    ]
}

fn constant_right(cx: &mut Ctx<'_>, op: BinaryOp) -> Option<Id> {
    let (c, x) = (cx.v("?c"), cx.v("?x"));
    if !cx.is_const(c) || cx.is_const(x) {
        return None;
    }
    cx.add(Op::Binary(op), &[x, c])
}

/// `x` when `?c` is a visible constant of all `value` that leaves `x`'s
/// type unchanged (the applier checks the type).
fn identity_operand(cx: &mut Ctx<'_>, value: f32) -> Option<Id> {
    let (x, c) = (cx.v("?x"), cx.v("?c"));
    all_equal(cx, c, value).then_some(x)
}

/// Whether a class is a visible float constant with every element `value`.
pub(super) fn all_equal(cx: &Ctx<'_>, id: Id, value: f32) -> bool {
    cx.value(id).is_some_and(|t| {
        t.dtype().is_float() && t.numel() > 0 && t.to_f32_vec().iter().all(|&v| v == value)
    })
}

/// Whether a class is a one-element constant (a scalar scale).
pub(super) fn is_scalar_constant(cx: &Ctx<'_>, id: Id) -> bool {
    cx.is_const(id)
        && cx
            .ty(id)
            .is_some_and(|t| t.numel() == 1 && t.dtype.is_float())
}

/// Whether a class holds `y · c` (y computed, c constant).
fn is_scaled(cx: &Ctx<'_>, id: Id) -> bool {
    cx.nodes(id).iter().any(|(op, operands)| {
        *op == Op::Binary(BinaryOp::Mul) && !cx.is_const(operands[0]) && cx.is_const(operands[1])
    })
}

fn hoist(cx: &mut Ctx<'_>, x: Id, y: Id, c: Id) -> Option<Id> {
    if !is_scalar_constant(cx, c) || cx.is_const(x) || cx.is_const(y) {
        return None;
    }
    let xy = cx.add(Op::Binary(BinaryOp::Mul), &[x, y])?;
    cx.add(Op::Binary(BinaryOp::Mul), &[xy, c])
}

fn scale_out_of_matmul(cx: &mut Ctx<'_>, a: Id, b: Id, c: Id) -> Option<Id> {
    if !is_scalar_constant(cx, c) || cx.is_const(a) && cx.is_const(b) {
        return None;
    }
    let ab = cx.add(Op::MatMul, &[a, b])?;
    cx.add(Op::Binary(BinaryOp::Mul), &[ab, c])
}
