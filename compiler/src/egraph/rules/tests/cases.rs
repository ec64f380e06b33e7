//! The validation cases: for each rule, a small graph its left-hand side
//! matches, with random shapes and values satisfying its conditions.

use std::sync::Arc;

use crate::graph::{
    Activation, BinaryOp, ConvAttrs, GeluApprox, Graph, NodeId, Op, ReduceKind, TensorType, UnaryOp,
};
use crate::tensor::{DType, Tensor};

/// A small deterministic generator (xorshift64*).
pub(super) struct Rng(pub(super) u64);

impl Rng {
    pub(super) fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in `lo..=hi`.
    fn int(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }
    /// Uniform in `[lo, hi)`.
    fn float(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next() >> 40) as f32 / (1u64 << 24) as f32)
    }
    pub(super) fn floats(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.float(lo, hi)).collect()
    }
}

/// Builds a test graph.
pub(super) struct Builder {
    g: Graph,
    rng: Rng,
    count: usize,
}

impl Builder {
    pub(super) fn new(seed: u64) -> Builder {
        Builder {
            g: Graph::new("case"),
            rng: Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1),
            count: 0,
        }
    }
    fn dim(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.int(lo, hi)
    }
    fn name(&mut self) -> String {
        self.count += 1;
        format!("n{}", self.count)
    }
    fn input(&mut self, shape: &[usize]) -> NodeId {
        let name = self.name();
        self.g
            .add_input(name, TensorType::new(DType::F32, shape.to_vec()))
            .expect("input")
    }
    fn bool_input(&mut self, shape: &[usize]) -> NodeId {
        let name = self.name();
        self.g
            .add_input(name, TensorType::new(DType::Bool, shape.to_vec()))
            .expect("input")
    }
    fn konst(&mut self, shape: &[usize], values: Vec<f32>) -> NodeId {
        let name = self.name();
        self.g
            .add_constant(name, Arc::new(Tensor::from_f32(shape, values)))
            .expect("constant")
    }
    fn scalar(&mut self, value: f32) -> NodeId {
        self.konst(&[], vec![value])
    }
    fn random_scalar(&mut self, lo: f32, hi: f32) -> NodeId {
        let value = self.rng.float(lo, hi);
        self.scalar(value)
    }
    fn random(&mut self, shape: &[usize], lo: f32, hi: f32) -> NodeId {
        let n = shape.iter().product();
        let values = self.rng.floats(n, lo, hi);
        self.konst(shape, values)
    }
    fn op(&mut self, op: Op, operands: &[NodeId]) -> NodeId {
        let name = self.name();
        self.g
            .add_node(name, op, operands)
            .unwrap_or_else(|e| panic!("case graph: {e}"))
    }
    fn unary(&mut self, u: UnaryOp, x: NodeId) -> NodeId {
        self.op(Op::Unary(u), &[x])
    }
    fn binary(&mut self, b: BinaryOp, x: NodeId, y: NodeId) -> NodeId {
        self.op(Op::Binary(b), &[x, y])
    }
    pub(super) fn finish(mut self, out: NodeId) -> Graph {
        self.g.add_output("out", out);
        self.g
    }
}

const fn gemm(act: Option<Activation>) -> Op {
    Op::Gemm {
        trans_b: false,
        act,
    }
}

fn reduce(kind: ReduceKind, axes: Vec<usize>) -> Op {
    Op::Reduce {
        kind,
        axes,
        keep_dims: true,
    }
}

/// A random shape of rank `lo..=hi` with dims `1..=5`.
fn shape(b: &mut Builder, lo: usize, hi: usize) -> Vec<usize> {
    let rank = b.dim(lo, hi);
    (0..rank).map(|_| b.dim(1, 5)).collect()
}

/// The decomposition of attention over random q, kᵀ, v: `scale` and
/// `mask` say which parts to include. Shapes: B, H, Sq, Sk, D random.
fn attention_case(b: &mut Builder, scale: bool, mask: bool) -> NodeId {
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
fn repeat_kv(b: &mut Builder, x: NodeId, n: usize) -> NodeId {
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

fn grouped_case(b: &mut Builder, mask: bool) -> NodeId {
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
fn rms_case(b: &mut Builder, divide: bool) -> NodeId {
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
fn layer_norm_case(b: &mut Builder, reciprocal: bool) -> NodeId {
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

fn softmax_case(b: &mut Builder, stable: bool) -> NodeId {
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

fn rope_case(b: &mut Builder, swapped: bool) -> NodeId {
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
fn gemm_case(b: &mut Builder) -> (NodeId, usize) {
    let mut s = shape(b, 2, 3);
    let n = b.dim(1, 6);
    let k = *s.last().expect("rank >= 2");
    let x = b.input(&s);
    let w = b.random(&[k, n], -1.0, 1.0);
    s.pop();
    (b.op(gemm(None), &[x, w]), n)
}

/// The case for each rule: builds a graph its left-hand side matches.
pub(super) fn case(rule: &str, b: &mut Builder) -> NodeId {
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
