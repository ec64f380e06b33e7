//! The validation cases: for each rule, a small graph its left-hand side
//! matches, with random shapes and values satisfying its conditions.

use std::sync::Arc;

use crate::graph::{Activation, BinaryOp, Graph, NodeId, Op, ReduceKind, TensorType, UnaryOp};
use crate::tensor::{DType, Tensor};

mod patterns;
mod rules;

pub(super) use rules::case;

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
