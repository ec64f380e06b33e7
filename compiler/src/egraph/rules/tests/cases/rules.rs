//! The case for each rule: a graph its left-hand side matches.

use std::sync::Arc;

use crate::graph::{Activation, BinaryOp, ConvAttrs, GeluApprox, NodeId, Op, UnaryOp};
use crate::tensor::{DType, Tensor};

use super::patterns::{
    attention_case, gemm_case, grouped_case, layer_norm_case, rms_case, rope_case, softmax_case,
};
use super::{gemm, shape, Builder};

/// The case for each rule: builds a graph its left-hand side matches.
pub(in crate::egraph::rules::tests) fn case(rule: &str, b: &mut Builder) -> NodeId {
    match rule {
        "add-constant-right" | "mul-constant-right" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let c = b.random(&s[s.len() - 1..], -2.0, 2.0);
            let op = if rule.starts_with("add") {
                BinaryOp::Add
            } else {
                BinaryOp::Mul
            };
            b.binary(op, c, x)
        }
        "mul-by-one" | "add-zero" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let (value, op) = if rule == "mul-by-one" {
                (1.0, BinaryOp::Mul)
            } else {
                (0.0, BinaryOp::Add)
            };
            let c = b.konst(&s[s.len() - 1..], vec![value; s[s.len() - 1]]);
            b.binary(op, x, c)
        }
        "div-by-constant" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let c = b.random(&s[s.len() - 1..], 0.5, 2.0);
            b.binary(BinaryOp::Div, x, c)
        }
        "reciprocal-from-div" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let one = b.scalar(1.0);
            b.binary(BinaryOp::Div, one, x)
        }
        "neg-neg" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let n = b.unary(UnaryOp::Neg, x);
            b.unary(UnaryOp::Neg, n)
        }
        "mul-constants-fold" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let a = b.random(&s[s.len() - 1..], -2.0, 2.0);
            let c = b.random_scalar(0.5, 2.0);
            let xa = b.binary(BinaryOp::Mul, x, a);
            b.binary(BinaryOp::Mul, xa, c)
        }
        "scale-hoist-left" | "scale-hoist-right" => {
            let s = shape(b, 1, 3);
            let (x, y) = (b.input(&s), b.input(&s));
            let c = b.random_scalar(0.5, 2.0);
            if rule.ends_with("left") {
                let xc = b.binary(BinaryOp::Mul, x, c);
                b.binary(BinaryOp::Mul, xc, y)
            } else {
                let yc = b.binary(BinaryOp::Mul, y, c);
                b.binary(BinaryOp::Mul, x, yc)
            }
        }
        "scale-out-of-matmul-lhs" | "scale-out-of-matmul-rhs" => {
            let (m, k, n) = (b.dim(1, 5), b.dim(1, 5), b.dim(1, 5));
            let (x, y) = (b.input(&[2, m, k]), b.input(&[2, k, n]));
            let c = b.random_scalar(0.5, 2.0);
            if rule.ends_with("lhs") {
                let xc = b.binary(BinaryOp::Mul, x, c);
                b.op(Op::MatMul, &[xc, y])
            } else {
                let yc = b.binary(BinaryOp::Mul, y, c);
                b.op(Op::MatMul, &[x, yc])
            }
        }
        "scale-out-of-transpose" => {
            let s = shape(b, 2, 3);
            let x = b.input(&s);
            let c = b.random_scalar(0.5, 2.0);
            let xc = b.binary(BinaryOp::Mul, x, c);
            let perm = (0..s.len()).rev().collect();
            b.op(Op::Transpose { perm }, &[xc])
        }
        "transpose-of-transpose" => {
            let s = shape(b, 2, 4);
            let x = b.input(&s);
            let perm = |b: &mut Builder| {
                let mut p: Vec<usize> = (0..s.len()).collect();
                for i in (1..p.len()).rev() {
                    p.swap(i, b.dim(0, i));
                }
                p
            };
            let (q, p) = (perm(b), perm(b));
            let t = b.op(Op::Transpose { perm: q }, &[x]);
            b.op(Op::Transpose { perm: p }, &[t])
        }
        "transpose-identity" => {
            let s = shape(b, 1, 4);
            let x = b.input(&s);
            b.op(
                Op::Transpose {
                    perm: (0..s.len()).collect(),
                },
                &[x],
            )
        }
        "reshape-of-reshape" => {
            let s = shape(b, 2, 3);
            let x = b.input(&s);
            let n: usize = s.iter().product();
            let flat = b.op(Op::Reshape { shape: vec![n] }, &[x]);
            b.op(Op::Reshape { shape: vec![1, n] }, &[flat])
        }
        "reshape-identity" | "expand-identity" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let op = if rule.starts_with("reshape") {
                Op::Reshape { shape: s }
            } else {
                Op::Expand { shape: s }
            };
            b.op(op, &[x])
        }
        "slice-identity" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            b.op(
                Op::Slice {
                    starts: vec![0; s.len()],
                    ends: s.iter().map(|&d| d as i64).collect(),
                    steps: vec![1; s.len()],
                },
                &[x],
            )
        }
        "gelu-through-reshape" | "silu-through-reshape" | "relu-through-reshape" => {
            let s = shape(b, 2, 3);
            let x = b.input(&s);
            let n: usize = s.iter().product();
            let r = b.op(Op::Reshape { shape: vec![n] }, &[x]);
            let op = match rule {
                "gelu-through-reshape" => Op::Gelu {
                    approximate: GeluApprox::Tanh,
                },
                "silu-through-reshape" => Op::Unary(UnaryOp::Silu),
                _ => Op::Unary(UnaryOp::Relu),
            };
            b.op(op, &[r])
        }
        "bias-add-through-reshape" => {
            let (a, c, d) = (b.dim(1, 3), b.dim(1, 3), b.dim(1, 5));
            let x = b.input(&[a, c, d]);
            let r = b.op(
                Op::Reshape {
                    shape: vec![a * c, d],
                },
                &[x],
            );
            let bias = b.random(&[d], -1.0, 1.0);
            b.binary(BinaryOp::Add, r, bias)
        }
        "gemm-absorbs-reshapes" | "gemm-absorbs-reshapes-bias" => {
            let (a, c, k, n) = (b.dim(1, 3), b.dim(1, 3), b.dim(1, 5), b.dim(1, 5));
            let x = b.input(&[a, c, k]);
            let flat = b.op(
                Op::Reshape {
                    shape: vec![a * c, k],
                },
                &[x],
            );
            let w = b.random(&[k, n], -1.0, 1.0);
            let mut operands = vec![flat, w];
            if rule.ends_with("bias") {
                operands.push(b.random(&[n], -1.0, 1.0));
            }
            let y = b.op(gemm(None), &operands);
            b.op(
                Op::Reshape {
                    shape: vec![a, c, n],
                },
                &[y],
            )
        }
        "gelu-erf" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let a = b.scalar(std::f32::consts::FRAC_1_SQRT_2);
            let xa = b.binary(BinaryOp::Mul, x, a);
            let e = b.unary(UnaryOp::Erf, xa);
            let one = b.scalar(1.0);
            let e1 = b.binary(BinaryOp::Add, e, one);
            let xe = b.binary(BinaryOp::Mul, x, e1);
            let half = b.scalar(0.5);
            b.binary(BinaryOp::Mul, xe, half)
        }
        "gelu-tanh" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let three = b.scalar(3.0);
            let cube = b.binary(BinaryOp::Pow, x, three);
            let k = b.scalar(0.044715);
            let kc = b.binary(BinaryOp::Mul, cube, k);
            let inner = b.binary(BinaryOp::Add, x, kc);
            let s2 = b.scalar((2.0 / std::f32::consts::PI).sqrt());
            let scaled = b.binary(BinaryOp::Mul, inner, s2);
            let t = b.unary(UnaryOp::Tanh, scaled);
            let one = b.scalar(1.0);
            let t1 = b.binary(BinaryOp::Add, t, one);
            let xt = b.binary(BinaryOp::Mul, x, t1);
            let half = b.scalar(0.5);
            b.binary(BinaryOp::Mul, xt, half)
        }
        "silu" | "silu-swapped" => {
            let s = shape(b, 1, 3);
            let x = b.input(&s);
            let sg = b.unary(UnaryOp::Sigmoid, x);
            if rule == "silu" {
                b.binary(BinaryOp::Mul, x, sg)
            } else {
                b.binary(BinaryOp::Mul, sg, x)
            }
        }
        "rms-norm" => rms_case(b, false),
        "rms-norm-div" => rms_case(b, true),
        "layer-norm" => layer_norm_case(b, false),
        "layer-norm-reciprocal" => layer_norm_case(b, true),
        "rms-norm-scale"
        | "layer-norm-scale"
        | "layer-norm-scale-bias"
        | "layer-norm-bias"
        | "layer-norm-bias-add" => {
            let s = shape(b, 2, 3);
            let d = s[s.len() - 1];
            let x = b.input(&s);
            let scale = b.random(&[d], 0.5, 1.5);
            let mut operands = vec![x, scale];
            if rule.ends_with("scale-bias") || rule.ends_with("bias-add") {
                operands.push(b.random(&[d], -1.0, 1.0));
            }
            let axis = s.len() - 1;
            let norm = if rule.starts_with("rms") {
                b.op(
                    Op::RmsNorm {
                        axis,
                        epsilon: 1e-5,
                    },
                    &operands,
                )
            } else {
                b.op(
                    Op::LayerNorm {
                        axis,
                        epsilon: 1e-5,
                    },
                    &operands,
                )
            };
            let w = b.random(&[1, d], 0.5, 1.5);
            if rule.contains("scale") {
                b.binary(BinaryOp::Mul, norm, w)
            } else {
                b.binary(BinaryOp::Add, norm, w)
            }
        }
        "add-layer-norm" | "add-layer-norm-bias" | "add-rms-norm" => {
            let s = shape(b, 2, 3);
            let d = s[s.len() - 1];
            let (x, r) = (b.input(&s), b.input(&s));
            let sum = b.binary(BinaryOp::Add, x, r);
            let mut operands = vec![sum, b.random(&[d], 0.5, 1.5)];
            if rule.ends_with("bias") {
                operands.push(b.random(&[d], -1.0, 1.0));
            }
            let (axis, epsilon) = (s.len() - 1, 1e-5);
            if rule == "add-rms-norm" {
                b.op(Op::RmsNorm { axis, epsilon }, &operands)
            } else {
                b.op(Op::LayerNorm { axis, epsilon }, &operands)
            }
        }
        "softmax" => softmax_case(b, true),
        "softmax-unstable" => softmax_case(b, false),
        "rope" => rope_case(b, false),
        "rope-swapped" => rope_case(b, true),
        "gemm-from-matmul" => {
            let s = shape(b, 2, 3);
            let n = b.dim(1, 6);
            let x = b.input(&s);
            let w = b.random(&[s[s.len() - 1], n], -1.0, 1.0);
            b.op(Op::MatMul, &[x, w])
        }
        "qgemm-from-dequantized" => {
            // u8 activations quantized from an input (zero point 131), i8
            // weights with one scale per column and no zero point.
            let (m, k, n) = (b.dim(1, 5), b.dim(1, 7), b.dim(1, 6));
            let (q, zp) = quantized_input(b, &[2, m, k], 40.0, 131.0);
            let qf = b.op(Op::Cast { to: DType::F32 }, &[q]);
            let zp = b.scalar(zp);
            let centered = b.binary(BinaryOp::Sub, qf, zp);
            let sa = b.scalar(0.025);
            let a = b.binary(BinaryOp::Mul, centered, sa);
            let wq = int8_weights(b, k, n);
            let wf = b.op(Op::Cast { to: DType::F32 }, &[wq]);
            let sw = b.random(&[n], 0.001, 0.01);
            let w = b.binary(BinaryOp::Mul, wf, sw);
            b.op(Op::MatMul, &[a, w])
        }
        "qgemm-from-integer-matmul" => {
            // MatMulInteger: a runtime u8 A, a constant i8 B, zero points
            // per tensor.
            let (m, k, n) = (b.dim(1, 5), b.dim(1, 7), b.dim(1, 6));
            let (q, _) = quantized_input(b, &[m, k], 60.0, 128.0);
            let qi = b.op(Op::Cast { to: DType::I32 }, &[q]);
            let za = Tensor::from_i64_as(DType::I32, vec![], vec![121]).expect("i32");
            let name = b.name();
            let za = b.g.add_constant(name, Arc::new(za)).expect("constant");
            let a = b.binary(BinaryOp::Sub, qi, za);
            let wq = int8_weights(b, k, n);
            let wi = b.op(Op::Cast { to: DType::I32 }, &[wq]);
            let product = b.op(Op::MatMul, &[a, wi]);
            b.op(Op::Cast { to: DType::F32 }, &[product])
        }
        "qgemm-int32-product" => {
            // MatMulInteger's int32 result: u8 A and B, zero points per
            // tensor (K · 255² < 2²⁴).
            let (m, k, n) = (b.dim(1, 5), b.dim(1, 7), b.dim(1, 6));
            let (q, _) = quantized_input(b, &[m, k], 60.0, 128.0);
            let qi = b.op(Op::Cast { to: DType::I32 }, &[q]);
            let za = Tensor::from_i64_as(DType::I32, vec![], vec![3]).expect("i32");
            let name = b.name();
            let za = b.g.add_constant(name, Arc::new(za)).expect("constant");
            let a = b.binary(BinaryOp::Sub, qi, za);
            let wq = int8_weights(b, k, n);
            let wi = b.op(Op::Cast { to: DType::I32 }, &[wq]);
            b.op(Op::MatMul, &[a, wi])
        }
        "qgemm-bias" => {
            let (y, n) = qgemm_case(b, 0.001);
            let bias = b.random(&[1, n], -1.0, 1.0);
            b.binary(BinaryOp::Add, y, bias)
        }
        "qgemm-column-scale" => {
            let (y, n) = qgemm_case(b, 1.0);
            let c = b.random(&[n], 0.001, 0.01);
            b.binary(BinaryOp::Mul, y, c)
        }
        "qgemm-requantize" => {
            // QuantizeLinear(y, 0.1, 100) as u8, y about ±2.
            let (y, _) = qgemm_case(b, 2e-5);
            let s = b.scalar(0.1);
            let ratio = b.binary(BinaryOp::Div, y, s);
            let rounded = b.unary(UnaryOp::Round, ratio);
            let zp = b.scalar(100.0);
            let shifted = b.binary(BinaryOp::Add, rounded, zp);
            let (lo, hi) = (b.scalar(0.0), b.scalar(255.0));
            let low = b.binary(BinaryOp::Max, shifted, lo);
            let clipped = b.binary(BinaryOp::Min, low, hi);
            b.op(Op::Cast { to: DType::U8 }, &[clipped])
        }
        "gemm-bias" => {
            let (y, n) = gemm_case(b);
            let bias = b.random(&[1, n], -1.0, 1.0);
            b.binary(BinaryOp::Add, y, bias)
        }
        "gemm-relu" | "gemm-silu" | "gemm-gelu" => {
            let (y, _) = gemm_case(b);
            let op = match rule {
                "gemm-relu" => Op::Unary(UnaryOp::Relu),
                "gemm-silu" => Op::Unary(UnaryOp::Silu),
                _ => Op::Gelu {
                    approximate: if b.dim(0, 1) == 0 {
                        GeluApprox::None
                    } else {
                        GeluApprox::Tanh
                    },
                },
            };
            b.op(op, &[y])
        }
        "gemm-transposed-weight" | "gemm-transposed-weight-bias" => {
            let s = shape(b, 2, 3);
            let (k, n) = (s[s.len() - 1], b.dim(1, 5));
            let x = b.input(&s);
            let w = b.input(&[n, k]);
            let wt = b.op(Op::Transpose { perm: vec![1, 0] }, &[w]);
            let mut operands = vec![x, wt];
            if rule.ends_with("bias") {
                operands.push(b.random(&[n], -1.0, 1.0));
            }
            b.op(gemm(Some(Activation::Relu)), &operands)
        }
        "conv-bias" => {
            let (c, m, h) = (b.dim(1, 3), b.dim(1, 4), b.dim(3, 6));
            let x = b.input(&[1, c, h, h]);
            let w = b.random(&[m, c, 2, 2], -1.0, 1.0);
            let y = b.op(
                Op::Conv(ConvAttrs {
                    strides: vec![1, 1],
                    pads: vec![0; 4],
                    dilations: vec![1, 1],
                    group: 1,
                }),
                &[x, w],
            );
            let bias = b.random(&[1, m, 1, 1], -1.0, 1.0);
            b.binary(BinaryOp::Add, y, bias)
        }
        "attention-scaled-masked" => attention_case(b, true, true),
        "attention-scaled" => attention_case(b, true, false),
        "attention-masked" => attention_case(b, false, true),
        "attention-unscaled" => attention_case(b, false, false),
        "attention-causal" => {
            let (heads, sq, d) = (b.dim(1, 3), b.dim(1, 5), b.dim(1, 4));
            let sk = sq + b.dim(0, 3);
            let q = b.input(&[1, heads, sq, d]);
            let k = b.input(&[1, heads, sk, d]);
            let v = b.input(&[1, heads, sk, d]);
            let fill = if b.dim(0, 1) == 0 {
                f32::MIN
            } else {
                f32::NEG_INFINITY
            };
            let mask: Vec<f32> = (0..sq * sk)
                .map(|e| if e % sk > e / sk + sk - sq { fill } else { 0.0 })
                .collect();
            let m = b.konst(&[1, 1, sq, sk], mask);
            b.op(
                Op::Attention {
                    scale: 0.5,
                    causal: false,
                },
                &[q, k, v, m],
            )
        }
        "attention-row-constant-mask" => {
            let (heads, s, d) = (b.dim(1, 3), b.dim(2, 5), b.dim(1, 4));
            let q = b.input(&[1, heads, s, d]);
            let k = b.input(&[1, heads, s, d]);
            let v = b.input(&[1, heads, s, d]);
            let m = if b.dim(0, 1) == 0 {
                b.random_scalar(-1.0, 1.0)
            } else {
                b.random(&[1, 1, s, 1], -3.0, 3.0)
            };
            b.op(
                Op::Attention {
                    scale: 0.5,
                    causal: false,
                },
                &[q, k, v, m],
            )
        }
        "attention-grouped-kv" => grouped_case(b, false),
        "attention-grouped-kv-masked" => grouped_case(b, true),
        "masked-fill-to-additive-mask" | "masked-fill-to-additive-mask-else" => {
            let s = shape(b, 1, 3);
            let c = b.bool_input(&s);
            let x = b.input(&s);
            let fill = if b.dim(0, 1) == 0 {
                f32::MIN
            } else {
                f32::NEG_INFINITY
            };
            let fill = b.scalar(fill);
            if rule.ends_with("else") {
                b.op(Op::Where, &[c, x, fill])
            } else {
                b.op(Op::Where, &[c, fill, x])
            }
        }
        other => panic!("no validation case for rule `{other}`"),
    }
}

/// A u8 input: `u8(clip(round(x · inv) + zp, 0, 255))` of a new f32 input
/// of `shape`. Returns the u8 node and `zp`.
fn quantized_input(b: &mut Builder, shape: &[usize], inv: f32, zp: f32) -> (NodeId, f32) {
    let x = b.input(shape);
    let inv = b.scalar(inv);
    let z = b.scalar(zp);
    let (lo, hi) = (b.scalar(0.0), b.scalar(255.0));
    let scaled = b.binary(BinaryOp::Mul, x, inv);
    let rounded = b.unary(UnaryOp::Round, scaled);
    let shifted = b.binary(BinaryOp::Add, rounded, z);
    let clipped = b.binary(BinaryOp::Max, shifted, lo);
    let clipped = b.binary(BinaryOp::Min, clipped, hi);
    (b.op(Op::Cast { to: DType::U8 }, &[clipped]), zp)
}

/// A qgemm of quantized u8 activations `[m, k]` (zero point 128) by
/// random i8 weights, with column scales `scale` (1: the unit scales of
/// MatMulInteger), and its N.
fn qgemm_case(b: &mut Builder, scale: f32) -> (NodeId, usize) {
    let (m, k, n) = (b.dim(1, 5), b.dim(1, 7), b.dim(1, 6));
    let (q, zp) = quantized_input(b, &[m, k], 60.0, 128.0);
    let w = int8_weights(b, k, n);
    let scales = Tensor::from_f32(&[n], vec![scale; n]);
    let name = b.name();
    let scales = b.g.add_constant(name, Arc::new(scales)).expect("constant");
    let op = Op::QGemm {
        a_zp: Some(zp as i32),
        b_zp: Some(0),
        trans_b: false,
        act: None,
        out: None,
    };
    (b.op(op, &[q, w, scales]), n)
}

/// A constant `[k, n]` of random i8 weights in -127..=127.
fn int8_weights(b: &mut Builder, k: usize, n: usize) -> NodeId {
    let ints: Vec<i64> = (0..k * n).map(|_| b.dim(0, 254) as i64 - 127).collect();
    let w = Tensor::from_i64_as(DType::I8, vec![k, n], ints).expect("i8");
    let name = b.name();
    b.g.add_constant(name, Arc::new(w)).expect("constant")
}
