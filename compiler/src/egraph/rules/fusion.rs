//! Fusion into the NPU-native ops: GEMM with bias, transposed weight and
//! activation; convolution with bias; attention (scale, additive or causal
//! mask, grouped-query heads). Whether the target can run the fused form
//! (its tiles fit on chip) is the cost model's business: a form it cannot
//! run costs `UNSUPPORTED`, and extraction keeps the unfused ops.

use egg::Id;

use crate::graph::{Activation, BinaryOp, GeluApprox, Op, UnaryOp};
use crate::tensor::DType;

use super::algebra::is_scalar_constant;
use super::layout::is_row;
use super::{Ctx, RuleDef};

/// The fusion rules.
pub fn rules() -> Vec<RuleDef> {
    vec![
        // a @ b = gemm(a, b) for a rank-2 (weight) operand b.
        RuleDef {
            name: "gemm-from-matmul",
            lhs: "(matmul ?a ?b)",
            apply: |cx| {
                let (a, b) = (cx.v("?a"), cx.v("?b"));
                if cx.ty(b)?.rank() != 2 {
                    return None;
                }
                cx.add(
                    Op::Gemm {
                        trans_b: false,
                        act: None,
                    },
                    &[a, b],
                )
            },
        },
        // dq(qa) @ dq(qb) = qgemm(qa, qb, sa · sb): a matmul between two
        // DequantizeLinears — activations per tensor, constant weights per
        // tensor or per output column (or, batched or computed at run time,
        // another activation per tensor), zero points per tensor — runs in
        // the MXU's integer mode, the scales becoming the epilogue's
        // per-column dequantization.
        RuleDef {
            name: "qgemm-from-dequantized",
            lhs: "(matmul ?a ?b)",
            apply: qgemm_from_dequantized,
        },
        // f32((i32(qa) − za) @ (i32(qb) − zb)) = qgemm(qa, qb, 1): the
        // exact integer product of MatMulInteger and QLinearMatMul (zero
        // points per tensor; A's constant or computed at run time, as
        // dynamic quantization does) on the MXU's integer mode.
        RuleDef {
            name: "qgemm-from-integer-matmul",
            lhs: "(cast ?f (matmul ?a ?b))",
            apply: |cx| {
                if cx.op("cast", cx.v("?f"))? != (Op::Cast { to: DType::F32 }) {
                    return None;
                }
                let (a, b) = (cx.v("?a"), cx.v("?b"));
                let (_, n) = integer_matmul_dims(cx, a, b)?;
                let (qa, qb) = (widened(cx, a, DType::I32)?, widened(cx, b, DType::I32)?);
                let one = cx.literal(1.0);
                let ones = cx.add(Op::Expand { shape: vec![n] }, &[one])?;
                qgemm_of(cx, qa, qb, ones)
            },
        },
        // (i32(qa) − za) @ (i32(qb) − zb) = i32(qgemm(qa, qb, 1)) when every
        // partial sum is below 2²⁴, so that the qgemm's f32 result is the
        // exact int32 sum: MatMulInteger's own int32 output.
        RuleDef {
            name: "qgemm-int32-product",
            lhs: "(matmul ?a ?b)",
            apply: |cx| {
                let (a, b) = (cx.v("?a"), cx.v("?b"));
                let (k, n) = integer_matmul_dims(cx, a, b)?;
                let (qa, qb) = (widened(cx, a, DType::I32)?, widened(cx, b, DType::I32)?);
                let bound = |(q, zp): (Id, Zp)| -> Option<u64> {
                    let (lo, hi) = match cx.ty(q)?.dtype {
                        DType::U8 => (0, 255),
                        _ => (-128, 127),
                    };
                    Some(match zp {
                        Zp::Const(z) => (z - lo).max(hi - z) as u64,
                        Zp::Tensor(_) => (hi - lo) as u64,
                    })
                };
                if k as u64 * bound(qa)? * bound(qb)? > 1 << 24 {
                    return None;
                }
                let one = cx.literal(1.0);
                let ones = cx.add(Op::Expand { shape: vec![n] }, &[one])?;
                let f = qgemm_of(cx, qa, qb, ones)?;
                cx.add(Op::Cast { to: DType::I32 }, &[f])
            },
        },
        // qgemm(a, b, s) + bias = qgemm(a, b, s, bias): the qgemm adds its
        // bias in f32 after the scale, as the Add does.
        RuleDef {
            name: "qgemm-bias",
            lhs: "(add ?y ?bias)",
            apply: qgemm_bias,
        },
        // qgemm(a, b, 1) · c = qgemm(a, b, c) for a constant c per tensor or
        // per output column: with unit scales the product is the same f32
        // multiply (MatMulInteger and QLinearMatMul's scales).
        RuleDef {
            name: "qgemm-column-scale",
            lhs: "(mul ?y ?c)",
            apply: qgemm_column_scale,
        },
        // QuantizeLinear(qgemm(...), s, zp) = qgemm(...) requantized in its
        // epilogue (`vpu.quant`): saturate(round(y / s) + zp) as u8/i8.
        RuleDef {
            name: "qgemm-requantize",
            lhs: "(cast ?t (min (max ?q ?lo) ?hi))",
            apply: qgemm_requantize,
        },
        // gemm(a, b) + bias = gemm(a, b, bias) for a row bias [N].
        RuleDef {
            name: "gemm-bias",
            lhs: "(add ?y ?bias)",
            apply: |cx| {
                let (y, bias) = (cx.v("?y"), cx.v("?bias"));
                let n = *cx.shape(y).last()?;
                let shape = cx.shape(bias);
                if !is_row(&shape) || shape.last() != Some(&n) {
                    return None;
                }
                let (op, operands) = find_gemm(cx, y, 2)?;
                let bias = if shape == [n] {
                    bias
                } else {
                    cx.add(Op::Reshape { shape: vec![n] }, &[bias])?
                };
                cx.add(op, &[operands[0], operands[1], bias])
            },
        },
        // relu(gemm(...)) = gemm(...) with act = relu.
        RuleDef {
            name: "gemm-relu",
            lhs: "(relu ?y)",
            apply: |cx| gemm_activation(cx, Activation::Relu),
        },
        // silu(gemm(...)) = gemm(...) with act = silu.
        RuleDef {
            name: "gemm-silu",
            lhs: "(silu ?y)",
            apply: |cx| gemm_activation(cx, Activation::Silu),
        },
        // gelu(gemm(...)) = gemm(...) with act = gelu or gelu_tanh.
        RuleDef {
            name: "gemm-gelu",
            lhs: "(gelu ?g ?y)",
            apply: |cx| match cx.op("gelu", cx.v("?g"))? {
                Op::Gelu {
                    approximate: GeluApprox::None,
                } => gemm_activation(cx, Activation::Gelu),
                Op::Gelu {
                    approximate: GeluApprox::Tanh,
                } => gemm_activation(cx, Activation::GeluTanh),
                _ => None,
            },
        },
        // gemm(a, transpose(w)) = gemm(a, w) with trans_b.
        RuleDef {
            name: "gemm-transposed-weight",
            lhs: "(gemm ?g ?a (transpose ?p ?w))",
            apply: |cx| gemm_transposed(cx, false),
        },
        // The same with a bias.
        RuleDef {
            name: "gemm-transposed-weight-bias",
            lhs: "(gemm ?g ?a (transpose ?p ?w) ?bias)",
            apply: |cx| gemm_transposed(cx, true),
        },
        // layer_norm(x + r) = add_layer_norm(x, r): the sum is not stored
        // (extraction keeps the plain add when the sum has other users, as
        // in pre-norm blocks, where reading x and r costs more).
        RuleDef {
            name: "add-layer-norm",
            lhs: "(layer_norm ?n (add ?x ?r) ?g)",
            apply: |cx| residual_norm(cx, "layer_norm", false),
        },
        // The same with a bias.
        RuleDef {
            name: "add-layer-norm-bias",
            lhs: "(layer_norm ?n (add ?x ?r) ?g ?b)",
            apply: |cx| residual_norm(cx, "layer_norm", true),
        },
        // rms_norm(x + r) = add_rms_norm(x, r).
        RuleDef {
            name: "add-rms-norm",
            lhs: "(rms_norm ?n (add ?x ?r) ?g)",
            apply: |cx| residual_norm(cx, "rms_norm", false),
        },
        // conv(x, w) + b = conv(x, w, b) for b varying only over channels.
        RuleDef {
            name: "conv-bias",
            lhs: "(add ?y ?b)",
            apply: |cx| {
                let (y, b) = (cx.v("?y"), cx.v("?b"));
                let out = cx.shape(y);
                let bs = cx.shape(b);
                if out.len() < 3 || bs.len() > out.len() || !cx.is_const(b) {
                    return None;
                }
                let channels = out[1];
                let offset = out.len() - bs.len();
                let per_channel = bs.iter().enumerate().all(|(i, &d)| {
                    if i + offset == 1 {
                        d == channels
                    } else {
                        d == 1
                    }
                });
                if !per_channel || offset > 1 {
                    return None;
                }
                let (op, operands) = cx
                    .nodes(y)
                    .into_iter()
                    .find(|(op, operands)| matches!(op, Op::Conv(_)) && operands.len() == 2)?;
                let bias = cx.add(
                    Op::Reshape {
                        shape: vec![channels],
                    },
                    &[b],
                )?;
                cx.add(op, &[operands[0], operands[1], bias])
            },
        },
        // softmax(q @ kᵀ · s + mask) @ v = attention(q, k, v, mask; s).
        RuleDef {
            name: "attention-scaled-masked",
            lhs: "(matmul (softmax ?sm (add (mul (matmul ?q ?kt) ?s) ?mask)) ?v)",
            apply: |cx| attention(cx, true, true),
        },
        // softmax(q @ kᵀ · s) @ v = attention(q, k, v; s).
        RuleDef {
            name: "attention-scaled",
            lhs: "(matmul (softmax ?sm (mul (matmul ?q ?kt) ?s)) ?v)",
            apply: |cx| attention(cx, true, false),
        },
        // softmax(q @ kᵀ + mask) @ v = attention(q, k, v, mask; 1).
        RuleDef {
            name: "attention-masked",
            lhs: "(matmul (softmax ?sm (add (matmul ?q ?kt) ?mask)) ?v)",
            apply: |cx| attention(cx, false, true),
        },
        // softmax(q @ kᵀ) @ v = attention(q, k, v; 1).
        RuleDef {
            name: "attention-unscaled",
            lhs: "(matmul (softmax ?sm (matmul ?q ?kt)) ?v)",
            apply: |cx| attention(cx, false, false),
        },
        // attention(q, k, v, causal mask constant) = attention(q, k, v)
        // with causal: the mask is 0 on and below the diagonal (offset
        // Sk - Sq) and ≤ -1e30 above it, which the softmax turns into the
        // same zeros as -inf.
        RuleDef {
            name: "attention-causal",
            lhs: "(attention ?a ?q ?k ?v ?mask)",
            apply: |cx| {
                let Op::Attention {
                    scale,
                    causal: false,
                } = cx.op("attention", cx.v("?a"))?
                else {
                    return None;
                };
                let (q, k, v, mask) = (cx.v("?q"), cx.v("?k"), cx.v("?v"), cx.v("?mask"));
                let (sq, sk) = (cx.shape(q)[2], cx.shape(k)[2]);
                if !is_causal_mask(cx, mask, sq, sk) {
                    return None;
                }
                cx.add(
                    Op::Attention {
                        scale,
                        causal: true,
                    },
                    &[q, k, v],
                )
            },
        },
        // attention(q, k, v, m) = attention(q, k, v) when the mask m is a
        // finite constant that does not vary along the keys: softmax is
        // invariant to adding a constant to a row.
        RuleDef {
            name: "attention-row-constant-mask",
            lhs: "(attention ?a ?q ?k ?v ?mask)",
            apply: |cx| {
                let op = cx.op("attention", cx.v("?a"))?;
                let (q, k, v, mask) = (cx.v("?q"), cx.v("?k"), cx.v("?v"), cx.v("?mask"));
                let value = cx.value(mask)?;
                let along_keys = value.shape().last().copied().unwrap_or(1);
                if along_keys != 1 || !value.to_f32_vec().iter().all(|m| m.is_finite()) {
                    return None;
                }
                cx.add(op, &[q, k, v])
            },
        },
        // attention(q, repeat(k), repeat(v)) = attention(q, k, v), where
        // repeat is repeat_kv's reshape [B,Hkv,1,S,D] → expand
        // [B,Hkv,n,S,D] → reshape [B,Hkv·n,S,D]: query head h reads kv
        // head h / n either way.
        RuleDef {
            name: "attention-grouped-kv",
            lhs: "(attention ?a ?q (reshape ?r1 (expand ?e1 (reshape ?r2 ?k))) (reshape ?r3 (expand ?e2 (reshape ?r4 ?v))))",
            apply: |cx| grouped_kv(cx, false),
        },
        // The same with a mask.
        RuleDef {
            name: "attention-grouped-kv-masked",
            lhs: "(attention ?a ?q (reshape ?r1 (expand ?e1 (reshape ?r2 ?k))) (reshape ?r3 (expand ?e2 (reshape ?r4 ?v))) ?mask)",
            apply: |cx| grouped_kv(cx, true),
        },
        // where(c, fill, x) = x + where(c, fill, 0) for fill ≤ -1e30: a
        // masked fill becomes an additive mask (constant when c is), which
        // attention takes as its mask operand.
        RuleDef {
            name: "masked-fill-to-additive-mask",
            lhs: "(where ?c ?fill ?x)",
            apply: |cx| additive_mask(cx, true),
        },
        // where(c, x, fill) = x + where(c, 0, fill) for fill ≤ -1e30.
        RuleDef {
            name: "masked-fill-to-additive-mask-else",
            lhs: "(where ?c ?x ?fill)",
            apply: |cx| additive_mask(cx, false),
        },
    ]
}

/// K and N of an integer matmul `a @ b` a qgemm can run: `b` one
/// `[K, N]` matrix, or `[..., K, N]` with exactly `a`'s batch dimensions.
fn integer_matmul_dims(cx: &Ctx<'_>, a: Id, b: Id) -> Option<(usize, usize)> {
    let (a_shape, b_shape) = (cx.shape(a), cx.shape(b));
    let r = b_shape.len();
    if r < 2 || (r > 2 && (a_shape.len() != r || a_shape[..r - 2] != b_shape[..r - 2])) {
        return None;
    }
    Some((b_shape[r - 2], b_shape[r - 1]))
}

/// The zero point of an 8-bit operand as the qgemm rules find it.
#[derive(Clone, Copy)]
enum Zp {
    /// A one-element integral constant in the operand's range.
    Const(i32),
    /// A one-element tensor of the operand's type, computed at run time
    /// (DynamicQuantizeLinear's zero point).
    Tensor(Id),
}

/// An 8-bit integer widened to `to` (f32 or i32) in class `id`:
/// `to(q) − zp` or `to(q)`, `q` u8/i8. Returns `q` and its zero point.
fn widened(cx: &Ctx<'_>, id: Id, to: DType) -> Option<(Id, Zp)> {
    let int8 = |c: Id| -> Option<Id> {
        cx.nodes(c).into_iter().find_map(|(op, operands)| {
            let q = *operands.first()?;
            let is_8bit = matches!(cx.ty(q)?.dtype, DType::U8 | DType::I8);
            (op == (Op::Cast { to }) && is_8bit).then_some(q)
        })
    };
    if let Some(q) = int8(id) {
        return Some((q, Zp::Const(0)));
    }
    cx.nodes(id).into_iter().find_map(|(op, operands)| {
        let (&x, &z) = (operands.first()?, operands.get(1)?);
        if op != Op::Binary(BinaryOp::Sub) {
            return None;
        }
        let q = int8(x)?;
        let dtype = cx.ty(q)?.dtype;
        if let Some(zp) = cx.value(z).filter(|v| v.numel() == 1) {
            let zp = zp.to_f64_vec()[0];
            let range = if dtype == DType::U8 {
                0.0..=255.0
            } else {
                -128.0..=127.0
            };
            return (zp.fract() == 0.0 && range.contains(&zp)).then_some((q, Zp::Const(zp as i32)));
        }
        // to(zq), possibly reshaped to a scalar, for a one-element zq of
        // q's type.
        let scalar = cx.ty(z)?.numel() == 1;
        let through_reshape = cx.nodes(z).into_iter().find_map(|(op, operands)| {
            matches!(op, Op::Reshape { .. }).then(|| operands.first().copied())?
        });
        [Some(z), through_reshape]
            .into_iter()
            .flatten()
            .filter_map(int8)
            .find(|&zq| scalar && cx.ty(zq).is_some_and(|t| t.dtype == dtype))
            .map(|zq| (q, Zp::Tensor(zq)))
    })
}

/// A DequantizeLinear in class `id`: `(f32(q) − zp) · s` or `f32(q) · s`
/// (see [`widened`]) with a constant f32 `s`. Returns `q`, `zp` and `s`.
fn dequantized(cx: &Ctx<'_>, id: Id) -> Option<(Id, Zp, Id)> {
    cx.nodes(id).into_iter().find_map(|(op, operands)| {
        let (&centered, &s) = (operands.first()?, operands.get(1)?);
        if op != Op::Binary(BinaryOp::Mul) || !cx.is_const(s) || cx.ty(s)?.dtype != DType::F32 {
            return None;
        }
        let (q, zp) = widened(cx, centered, DType::F32)?;
        Some((q, zp, s))
    })
}

/// `qgemm(qa, qb, scale)` with the zero points of `qa` and `qb`, each a
/// constant or an operand after `scale`.
fn qgemm_of(cx: &mut Ctx<'_>, (qa, a_zp): (Id, Zp), (qb, b_zp): (Id, Zp), scale: Id) -> Option<Id> {
    let mut operands = vec![qa, qb, scale];
    let mut attr = |zp| match zp {
        Zp::Const(z) => Some(z),
        Zp::Tensor(z) => {
            operands.push(z);
            None
        }
    };
    let (a_zp, b_zp) = (attr(a_zp), attr(b_zp));
    let op = Op::QGemm {
        a_zp,
        b_zp,
        trans_b: false,
        act: None,
        out: None,
    };
    cx.add(op, &operands)
}

fn qgemm_from_dequantized(cx: &mut Ctx<'_>) -> Option<Id> {
    let (a, b) = (cx.v("?a"), cx.v("?b"));
    let (_, n) = integer_matmul_dims(cx, a, b)?;
    let batched = cx.shape(b).len() > 2;
    let (qa, a_zp, sa) = dequantized(cx, a)?;
    let (qb, b_zp, sb) = dequantized(cx, b)?;
    // Per tensor for A; per tensor or per output column for constant
    // weights B (a scale along K cannot leave the sum); per tensor for a B
    // computed at run time or batched (attention's Q·Kᵀ and P·V, both sides
    // quantized).
    let sb_shape = cx.shape(sb);
    let per_column = sb_shape.last() == Some(&n) && sb_shape.iter().rev().skip(1).all(|&d| d == 1);
    let weights = cx.is_const(qb) && !batched;
    if !is_scalar_constant(cx, sa) || !(is_scalar_constant(cx, sb) || (per_column && weights)) {
        return None;
    }
    let scale = cx.add(Op::Binary(BinaryOp::Mul), &[sb, sa])?;
    let scale = match cx.shape(scale).iter().product::<usize>() {
        1 if n != 1 => {
            let scalar = cx.add(Op::Reshape { shape: vec![] }, &[scale])?;
            cx.add(Op::Expand { shape: vec![n] }, &[scalar])?
        }
        _ => cx.add(Op::Reshape { shape: vec![n] }, &[scale])?,
    };
    qgemm_of(cx, (qa, a_zp), (qb, b_zp), scale)
}

/// A qgemm node in class `y` that only dequantizes (no bias, activation or
/// requantization), with its operands.
fn plain_qgemm(cx: &Ctx<'_>, y: Id) -> Option<(Op, Vec<Id>)> {
    cx.nodes(y).into_iter().find(|(op, operands)| match op {
        Op::QGemm {
            a_zp,
            b_zp,
            act: None,
            out: None,
            ..
        } => crate::graph::qgemm_operands((*a_zp, *b_zp), false, operands.len())
            .bias
            .is_none(),
        _ => false,
    })
}

fn qgemm_bias(cx: &mut Ctx<'_>) -> Option<Id> {
    let (y, bias) = (cx.v("?y"), cx.v("?bias"));
    let n = *cx.shape(y).last()?;
    let shape = cx.shape(bias);
    if !is_row(&shape) || shape.last() != Some(&n) || cx.ty(bias)?.dtype != DType::F32 {
        return None;
    }
    let (op, mut operands) = plain_qgemm(cx, y)?;
    let bias = if shape == [n] {
        bias
    } else {
        cx.add(Op::Reshape { shape: vec![n] }, &[bias])?
    };
    operands.push(bias);
    cx.add(op, &operands)
}

fn qgemm_column_scale(cx: &mut Ctx<'_>) -> Option<Id> {
    let (y, c) = (cx.v("?y"), cx.v("?c"));
    let n = *cx.shape(y).last()?;
    let shape = cx.shape(c);
    let last = shape.last().copied().unwrap_or(1);
    if !cx.is_const(c)
        || cx.ty(c)?.dtype != DType::F32
        || !is_row(&shape)
        || (last != n && last != 1)
    {
        return None;
    }
    let (op, mut operands) = plain_qgemm(cx, y)?;
    let ones = cx.value(operands[2])?;
    if ones.to_f64_vec().iter().any(|&v| v != 1.0) {
        return None;
    }
    operands[2] = if last == n {
        cx.add(Op::Reshape { shape: vec![n] }, &[c])?
    } else {
        let scalar = cx.add(Op::Reshape { shape: vec![] }, &[c])?;
        cx.add(Op::Expand { shape: vec![n] }, &[scalar])?
    };
    cx.add(op, &operands)
}

/// `saturate(round(y / s) + zp)` as ?t, for a qgemm `y` (any epilogue but
/// requantization), `s` a one-element f32 constant (or no division: 1) and
/// `zp` a one-element integral constant (or none: 0) in ?t's range.
fn qgemm_requantize(cx: &mut Ctx<'_>) -> Option<Id> {
    let Op::Cast { to } = cx.op("cast", cx.v("?t"))? else {
        return None;
    };
    let (lo, hi) = match to {
        DType::U8 => (0.0, 255.0),
        DType::I8 => (-128.0, 127.0),
        _ => return None,
    };
    let one = |cx: &Ctx<'_>, id: Id| -> Option<f64> {
        let v = cx.value(id).filter(|v| v.numel() == 1)?;
        Some(v.to_f64_vec()[0])
    };
    if one(cx, cx.v("?lo"))? != lo || one(cx, cx.v("?hi"))? != hi {
        return None;
    }
    let q = cx.v("?q");
    // q = round(r) + zp or round(r).
    let (rounded, zp) = cx
        .nodes(q)
        .into_iter()
        .find_map(|(op, operands)| match op {
            Op::Binary(BinaryOp::Add) => {
                let (x, z) = match one(cx, operands[0]) {
                    Some(_) => (operands[1], operands[0]),
                    None => (operands[0], operands[1]),
                };
                let zp = one(cx, z)?;
                (zp.fract() == 0.0 && (lo..=hi).contains(&zp)).then_some((x, zp as i32))
            }
            _ => None,
        })
        .unwrap_or((q, 0));
    let r = cx
        .nodes(rounded)
        .into_iter()
        .find_map(|(op, operands)| (op == Op::Unary(UnaryOp::Round)).then(|| operands[0]))?;
    // r = y / s or y.
    let (y, s) = cx
        .nodes(r)
        .into_iter()
        .find_map(|(op, operands)| {
            let s = operands.get(1).copied()?;
            let scale = op == Op::Binary(BinaryOp::Div)
                && cx.ty(s)?.dtype == DType::F32
                && one(cx, s).is_some();
            scale.then_some((operands[0], Some(s)))
        })
        .unwrap_or((r, None));
    let (op, mut operands) = cx
        .nodes(y)
        .into_iter()
        .find(|(op, _)| matches!(op, Op::QGemm { out: None, .. }))?;
    let Op::QGemm {
        a_zp,
        b_zp,
        trans_b,
        act,
        ..
    } = op
    else {
        return None;
    };
    let s = match s {
        Some(s) => cx.add(Op::Reshape { shape: vec![] }, &[s])?,
        None => cx.literal(1.0),
    };
    operands.push(s);
    let requantized = Op::QGemm {
        a_zp,
        b_zp,
        trans_b,
        act,
        out: Some((to, zp)),
    };
    cx.add(requantized, &operands)
}

/// A GEMM node of class `y` with `arity` operands and no activation.
fn find_gemm(cx: &Ctx<'_>, y: Id, arity: usize) -> Option<(Op, Vec<Id>)> {
    cx.nodes(y)
        .into_iter()
        .find(|(op, operands)| matches!(op, Op::Gemm { act: None, .. }) && operands.len() == arity)
}

fn gemm_activation(cx: &mut Ctx<'_>, act: Activation) -> Option<Id> {
    let y = cx.v("?y");
    let (op, operands) = find_gemm(cx, y, 2).or_else(|| find_gemm(cx, y, 3))?;
    let Op::Gemm { trans_b, .. } = op else {
        return None;
    };
    cx.add(
        Op::Gemm {
            trans_b,
            act: Some(act),
        },
        &operands,
    )
}

fn gemm_transposed(cx: &mut Ctx<'_>, with_bias: bool) -> Option<Id> {
    let (a, w) = (cx.v("?a"), cx.v("?w"));
    let Op::Gemm {
        trans_b: false,
        act,
    } = cx.op("gemm", cx.v("?g"))?
    else {
        return None;
    };
    match cx.op("transpose", cx.v("?p"))? {
        Op::Transpose { perm } if perm == [1, 0] => {}
        _ => return None,
    }
    let mut operands = vec![a, w];
    if with_bias {
        operands.push(cx.v("?bias"));
    }
    cx.add(Op::Gemm { trans_b: true, act }, &operands)
}

/// The residual norm for the patterns `(norm ?n (add ?x ?r) ?g [?b])`,
/// when neither addend broadcasts.
fn residual_norm(cx: &mut Ctx<'_>, kind: &str, bias: bool) -> Option<Id> {
    let (x, r) = (cx.v("?x"), cx.v("?r"));
    if cx.ty(x)? != cx.ty(r)? {
        return None;
    }
    let fused = match cx.op(kind, cx.v("?n"))? {
        Op::LayerNorm { axis, epsilon } => Op::AddLayerNorm { axis, epsilon },
        Op::RmsNorm { axis, epsilon } => Op::AddRmsNorm { axis, epsilon },
        _ => return None,
    };
    let mut operands = vec![x, r, cx.v("?g")];
    if bias {
        operands.push(cx.v("?b"));
    }
    cx.add(fused, &operands)
}

/// Builds the attention for the attention patterns: `?q`, `?kt` (kᵀ, rank
/// 4), `?v`, `?sm` (the softmax), and `?s` / `?mask` when the pattern has
/// them.
fn attention(cx: &mut Ctx<'_>, scaled: bool, masked: bool) -> Option<Id> {
    let (q, kt, v) = (cx.v("?q"), cx.v("?kt"), cx.v("?v"));
    let (qs, kts, vs) = (cx.shape(q), cx.shape(kt), cx.shape(v));
    match cx.op("softmax", cx.v("?sm"))? {
        Op::Softmax { axis: 3 } => {}
        _ => return None,
    }
    if qs.len() != 4 || kts.len() != 4 || vs.len() != 4 {
        return None;
    }
    // q [B,H,Sq,D], kᵀ [B,H,D,Sk], v [B,H,Sk,D].
    let (b, h, d, sk) = (qs[0], qs[1], qs[3], kts[3]);
    if kts[..3] != [b, h, d] || vs != [b, h, sk, d] {
        return None;
    }
    let scale = if scaled {
        let s = cx.v("?s");
        if !is_scalar_constant(cx, s) {
            return None;
        }
        cx.scalar(s)?
    } else {
        1.0
    };
    let k = cx.add(
        Op::Transpose {
            perm: vec![0, 1, 3, 2],
        },
        &[kt],
    )?;
    let mut operands = vec![q, k, v];
    if masked {
        operands.push(cx.v("?mask"));
    }
    cx.add(
        Op::Attention {
            scale,
            causal: false,
        },
        &operands,
    )
}

/// Whether `mask` is a visible constant that is 0 where `j <= i + sk - sq`
/// and ≤ -1e30 elsewhere (≤ -65504, the lowest value, in an fp16 mask),
/// for every broadcast copy: after adding scores of any sane size, the
/// softmax gives those keys exactly 0, as −∞ would.
fn is_causal_mask(cx: &Ctx<'_>, mask: Id, sq: usize, sk: usize) -> bool {
    let Some(value) = cx.value(mask) else {
        return false;
    };
    let shape = value.shape();
    if shape.len() < 2 || shape[shape.len() - 2..] != [sq, sk] || !value.dtype().is_float() {
        return false;
    }
    let hidden = if value.dtype() == DType::F16 {
        -65504.0
    } else {
        -1e30
    };
    value.to_f32_vec().iter().enumerate().all(|(e, &m)| {
        let (i, j) = ((e / sk) % sq, e % sk);
        if j + sq > i + sk {
            m <= hidden
        } else {
            m == 0.0
        }
    })
}

fn grouped_kv(cx: &mut Ctx<'_>, masked: bool) -> Option<Id> {
    let Op::Attention { scale, causal } = cx.op("attention", cx.v("?a"))? else {
        return None;
    };
    let (q, k, v) = (cx.v("?q"), cx.v("?k"), cx.v("?v"));
    let ks = cx.shape(k);
    if ks.len() != 4 || cx.shape(v) != ks {
        return None;
    }
    let (b, hkv, s, d) = (ks[0], ks[1], ks[2], ks[3]);
    let shape = |cx: &Ctx<'_>, var: &str, kind: &str| match cx.op(kind, cx.v(var))? {
        Op::Reshape { shape } | Op::Expand { shape } => Some(shape),
        _ => None,
    };
    let n = cx.shape(q)[1] / hkv.max(1);
    let unsqueezed = vec![b, hkv, 1, s, d];
    let repeated = vec![b, hkv, n, s, d];
    let merged = vec![b, hkv * n, s, d];
    for (r_in, e, r_out) in [("?r2", "?e1", "?r1"), ("?r4", "?e2", "?r3")] {
        if shape(cx, r_in, "reshape")? != unsqueezed
            || shape(cx, e, "expand")? != repeated
            || shape(cx, r_out, "reshape")? != merged
        {
            return None;
        }
    }
    let mut operands = vec![q, k, v];
    if masked {
        operands.push(cx.v("?mask"));
    }
    cx.add(Op::Attention { scale, causal }, &operands)
}

fn additive_mask(cx: &mut Ctx<'_>, fill_first: bool) -> Option<Id> {
    let (c, x, fill) = (cx.v("?c"), cx.v("?x"), cx.v("?fill"));
    let fill_value = cx.scalar(fill)?;
    if !is_scalar_constant(cx, fill) || fill_value > -1e30 || cx.is_const(x) {
        return None;
    }
    let zero = cx.literal(0.0);
    let mask = if fill_first {
        cx.add(Op::Where, &[c, fill, zero])?
    } else {
        cx.add(Op::Where, &[c, zero, fill])?
    };
    cx.add(Op::Binary(BinaryOp::Add), &[x, mask])
}
