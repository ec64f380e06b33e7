//! Lifting: recognize an op the NPU has (or that fuses into one) in the
//! decomposition an exporter wrote. Patterns match the canonical forms the
//! algebra rules produce (constants on the right, scalar factors outermost,
//! division by a constant as a multiplication), so one pattern covers the
//! usual orderings.

use egg::Id;

use crate::graph::{BinaryOp, GeluApprox, Op, ReduceKind, UnaryOp};

use super::{Ctx, RuleDef};

/// The lifting rules.
pub fn rules() -> Vec<RuleDef> {
    vec![
        // x · (1 + erf(x · (1/√2))) · 0.5 = gelu(x).
        RuleDef {
            name: "gelu-erf",
            lhs: "(mul (mul ?x (add (erf (mul ?x ?a)) ?one)) ?half)",
            apply: |cx| {
                let ok = cx.is_scalar(cx.v("?a"), std::f32::consts::FRAC_1_SQRT_2, 1e-4)
                    && cx.is_scalar(cx.v("?one"), 1.0, 0.0)
                    && cx.is_scalar(cx.v("?half"), 0.5, 0.0);
                let x = cx.v("?x");
                ok.then_some(())?;
                cx.add(
                    Op::Gelu {
                        approximate: GeluApprox::None,
                    },
                    &[x],
                )
            },
        },
        // x · (1 + tanh((x + x³ · 0.044715) · √(2/π))) · 0.5 = gelu_tanh(x).
        RuleDef {
            name: "gelu-tanh",
            lhs: "(mul (mul ?x (add (tanh (mul (add ?x (mul (pow ?x ?three) ?k)) ?s)) ?one)) ?half)",
            apply: |cx| {
                let sqrt_2_over_pi = (2.0 / std::f32::consts::PI).sqrt();
                let ok = cx.is_scalar(cx.v("?three"), 3.0, 0.0)
                    // (1e-3: the constants of an fp16 model are rounded.)
                    && cx.is_scalar(cx.v("?k"), 0.044715, 1e-3)
                    && cx.is_scalar(cx.v("?s"), sqrt_2_over_pi, 1e-3)
                    && cx.is_scalar(cx.v("?one"), 1.0, 0.0)
                    && cx.is_scalar(cx.v("?half"), 0.5, 0.0);
                let x = cx.v("?x");
                ok.then_some(())?;
                cx.add(
                    Op::Gelu {
                        approximate: GeluApprox::Tanh,
                    },
                    &[x],
                )
            },
        },
        // x · sigmoid(x) = silu(x).
        RuleDef {
            name: "silu",
            lhs: "(mul ?x (sigmoid ?x))",
            apply: |cx| {
                let x = cx.v("?x");
                cx.add(Op::Unary(UnaryOp::Silu), &[x])
            },
        },
        // sigmoid(x) · x = silu(x).
        RuleDef {
            name: "silu-swapped",
            lhs: "(mul (sigmoid ?x) ?x)",
            apply: |cx| {
                let x = cx.v("?x");
                cx.add(Op::Unary(UnaryOp::Silu), &[x])
            },
        },
        // x · 1/√(mean(x²) + ε) = rms_norm(x, 1) (LLaMA's decomposition).
        RuleDef {
            name: "rms-norm",
            lhs: "(mul ?x (reciprocal (sqrt (add (reduce_mean ?r (pow ?x ?two)) ?eps))))",
            apply: rms_norm,
        },
        // x / √(mean(x²) + ε) = rms_norm(x, 1).
        RuleDef {
            name: "rms-norm-div",
            lhs: "(div ?x (sqrt (add (reduce_mean ?r (pow ?x ?two)) ?eps)))",
            apply: rms_norm,
        },
        // (x - mean(x)) / √(mean((x - mean(x))²) + ε) = layer_norm(x, 1).
        RuleDef {
            name: "layer-norm",
            lhs: "(div (sub ?x (reduce_mean ?r ?x)) (sqrt (add (reduce_mean ?r2 (pow (sub ?x (reduce_mean ?r ?x)) ?two)) ?eps)))",
            apply: layer_norm,
        },
        // (x - mean(x)) · 1/√(mean((x - mean(x))²) + ε) = layer_norm(x, 1).
        RuleDef {
            name: "layer-norm-reciprocal",
            lhs: "(mul (sub ?x (reduce_mean ?r ?x)) (reciprocal (sqrt (add (reduce_mean ?r2 (pow (sub ?x (reduce_mean ?r ?x)) ?two)) ?eps))))",
            apply: layer_norm,
        },
        // rms_norm(x, s) · w = rms_norm(x, s · w) (w constant over the
        // normalized axes).
        RuleDef {
            name: "rms-norm-scale",
            lhs: "(mul (rms_norm ?a ?x ?s) ?w)",
            apply: |cx| norm_scale(cx, "rms_norm", false),
        },
        // layer_norm(x, s) · w = layer_norm(x, s · w).
        RuleDef {
            name: "layer-norm-scale",
            lhs: "(mul (layer_norm ?a ?x ?s) ?w)",
            apply: |cx| norm_scale(cx, "layer_norm", false),
        },
        // layer_norm(x, s, b) · w = layer_norm(x, s · w, b · w).
        RuleDef {
            name: "layer-norm-scale-bias",
            lhs: "(mul (layer_norm ?a ?x ?s ?b) ?w)",
            apply: |cx| norm_scale(cx, "layer_norm", true),
        },
        // layer_norm(x, s) + c = layer_norm(x, s, c) (c constant over the
        // normalized axes).
        RuleDef {
            name: "layer-norm-bias",
            lhs: "(add (layer_norm ?a ?x ?s) ?c)",
            apply: |cx| norm_bias(cx, false),
        },
        // layer_norm(x, s, b) + c = layer_norm(x, s, b + c).
        RuleDef {
            name: "layer-norm-bias-add",
            lhs: "(add (layer_norm ?a ?x ?s ?b) ?c)",
            apply: |cx| norm_bias(cx, true),
        },
        // exp(x - max(x)) / sum(exp(x - max(x))) = softmax(x).
        RuleDef {
            name: "softmax",
            lhs: "(div (exp (sub ?x (reduce_max ?r ?x))) (reduce_sum ?r2 (exp (sub ?x (reduce_max ?r ?x)))))",
            apply: softmax,
        },
        // exp(x) / sum(exp(x)) = softmax(x) (softmax is the stable form of
        // the same value).
        RuleDef {
            name: "softmax-unstable",
            lhs: "(div (exp ?x) (reduce_sum ?r2 (exp ?x)))",
            apply: softmax,
        },
        // x · cos + concat(-x[D/2:], x[:D/2]) · sin = rope(x, cos, sin).
        RuleDef {
            name: "rope",
            lhs: "(add (mul ?x ?cos) (mul (concat ?c (neg (slice ?s1 ?x)) (slice ?s2 ?x)) ?sin))",
            apply: rope,
        },
        // concat(-x[D/2:], x[:D/2]) · sin + x · cos = rope(x, cos, sin).
        RuleDef {
            name: "rope-swapped",
            lhs: "(add (mul (concat ?c (neg (slice ?s1 ?x)) (slice ?s2 ?x)) ?sin) (mul ?x ?cos))",
            apply: rope,
        },
    ]
}

/// The first normalized axis of `reduce_mean ?var` over `x`: its axes must
/// be the trailing axes `a..rank`, kept.
fn trailing_mean_axis(cx: &Ctx<'_>, var: &str, rank: usize) -> Option<usize> {
    match cx.op("reduce_mean", cx.v(var))? {
        Op::Reduce {
            kind: ReduceKind::Mean,
            axes,
            keep_dims: true,
        } if !axes.is_empty()
            && axes.iter().enumerate().all(|(i, &a)| a == axes[0] + i)
            && axes.last() == Some(&(rank - 1)) =>
        {
            Some(axes[0])
        }
        _ => None,
    }
}

/// The epsilon of a norm decomposition: a one-element constant ≥ 0.
fn epsilon(cx: &Ctx<'_>) -> Option<f32> {
    cx.scalar(cx.v("?eps")).filter(|e| *e >= 0.0)
}

/// Ones over the normalized dims `x.shape[axis..]` (folded at compile
/// time).
fn ones(cx: &mut Ctx<'_>, x: Id, axis: usize) -> Option<Id> {
    let shape = cx.shape(x)[axis..].to_vec();
    let one = cx.literal(1.0);
    cx.add(Op::Expand { shape }, &[one])
}

fn rms_norm(cx: &mut Ctx<'_>) -> Option<Id> {
    let x = cx.v("?x");
    let rank = cx.ty(x)?.rank();
    let axis = trailing_mean_axis(cx, "?r", rank)?;
    if !cx.is_scalar(cx.v("?two"), 2.0, 0.0) {
        return None;
    }
    let epsilon = epsilon(cx)?;
    let scale = ones(cx, x, axis)?;
    cx.add(Op::RmsNorm { axis, epsilon }, &[x, scale])
}

fn layer_norm(cx: &mut Ctx<'_>) -> Option<Id> {
    let x = cx.v("?x");
    let rank = cx.ty(x)?.rank();
    let axis = trailing_mean_axis(cx, "?r", rank)?;
    if trailing_mean_axis(cx, "?r2", rank)? != axis || !cx.is_scalar(cx.v("?two"), 2.0, 0.0) {
        return None;
    }
    let epsilon = epsilon(cx)?;
    let scale = ones(cx, x, axis)?;
    cx.add(Op::LayerNorm { axis, epsilon }, &[x, scale])
}

/// Whether constant `w` varies only over the normalized axes `axis..` of
/// a rank-`rank` tensor.
fn over_normalized_axes(cx: &Ctx<'_>, w: Id, axis: usize, rank: usize) -> bool {
    let shape = cx.shape(w);
    cx.is_const(w)
        && shape.len() <= rank
        && shape
            .iter()
            .enumerate()
            .all(|(i, &d)| i + rank - shape.len() >= axis || d == 1)
}

fn norm_scale(cx: &mut Ctx<'_>, kind: &str, with_bias: bool) -> Option<Id> {
    let (x, s, w) = (cx.v("?x"), cx.v("?s"), cx.v("?w"));
    let op = cx.op(kind, cx.v("?a"))?;
    let (Op::LayerNorm { axis, .. } | Op::RmsNorm { axis, .. }) = op else {
        return None;
    };
    let rank = cx.ty(x)?.rank();
    if !over_normalized_axes(cx, w, axis, rank) {
        return None;
    }
    let mut operands = vec![x, cx.add(Op::Binary(BinaryOp::Mul), &[s, w])?];
    if with_bias {
        let b = cx.v("?b");
        operands.push(cx.add(Op::Binary(BinaryOp::Mul), &[b, w])?);
    }
    cx.add(op, &operands)
}

fn norm_bias(cx: &mut Ctx<'_>, with_bias: bool) -> Option<Id> {
    let (x, s, c) = (cx.v("?x"), cx.v("?s"), cx.v("?c"));
    let op = cx.op("layer_norm", cx.v("?a"))?;
    let Op::LayerNorm { axis, .. } = op else {
        return None;
    };
    let rank = cx.ty(x)?.rank();
    if !over_normalized_axes(cx, c, axis, rank) {
        return None;
    }
    let bias = if with_bias {
        let b = cx.v("?b");
        cx.add(Op::Binary(BinaryOp::Add), &[b, c])?
    } else {
        c
    };
    cx.add(op, &[x, s, bias])
}

fn softmax(cx: &mut Ctx<'_>) -> Option<Id> {
    let x = cx.v("?x");
    let axis_of = |cx: &Ctx<'_>, var: &str, kind: &str| match cx.op(kind, cx.v(var))? {
        Op::Reduce {
            axes,
            keep_dims: true,
            ..
        } if axes.len() == 1 => Some(axes[0]),
        _ => None,
    };
    let axis = axis_of(cx, "?r2", "reduce_sum")?;
    // The stable form also subtracts the maximum over the same axis.
    if cx.try_v("?r").is_some() && axis_of(cx, "?r", "reduce_max")? != axis {
        return None;
    }
    cx.add(Op::Softmax { axis }, &[x])
}

fn rope(cx: &mut Ctx<'_>) -> Option<Id> {
    let (x, cos, sin) = (cx.v("?x"), cx.v("?cos"), cx.v("?sin"));
    let shape = cx.shape(x);
    let rank = shape.len();
    let d = *shape.last()?;
    if rank < 2 || d % 2 != 0 {
        return None;
    }
    let Op::Concat { axis } = cx.op("concat", cx.v("?c"))? else {
        return None;
    };
    // s1 = x[..., D/2:], s2 = x[..., :D/2], everything else whole.
    let half = (d / 2) as i64;
    let is_half = |op: Option<Op>, start: i64| match op {
        Some(Op::Slice {
            starts,
            ends,
            steps,
        }) => (0..rank).all(|i| {
            let (lo, hi) = if i + 1 == rank {
                (start, start + half)
            } else {
                (0, shape[i] as i64)
            };
            starts[i] == lo && ends[i] == hi && steps[i] == 1
        }),
        _ => false,
    };
    let upper = is_half(cx.op("slice", cx.v("?s1")), half);
    let lower = is_half(cx.op("slice", cx.v("?s2")), 0);
    if axis + 1 != rank
        || !upper
        || !lower
        || !broadcasts_to(cx, cos, &shape)
        || !broadcasts_to(cx, sin, &shape)
    {
        return None;
    }
    cx.add(Op::Rope, &[x, cos, sin])
}

/// Whether a cos/sin operand broadcasts to `shape` without growing it.
fn broadcasts_to(cx: &Ctx<'_>, table: Id, shape: &[usize]) -> bool {
    crate::graph::infer::broadcast_shapes(shape, &cx.shape(table)).is_ok_and(|s| s == shape)
}
