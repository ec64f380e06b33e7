//! The cost model: estimated cycles of one Graph IR op on a target.
//!
//! Every op that runs is a kernel: it pays a fixed start-up (the target's
//! DRAM latency, once) plus the larger of its compute time and its DRAM
//! time, plus a sixteenth of its DRAM time ([`CONTENTION`]). DRAM time counts every operand read and the result written at
//! the target's bandwidth, so a chain of unfused ops pays for each
//! intermediate twice (written, then read) and a fused op only for its
//! inputs and output. Compute time comes from the ISA cost model
//! (`tessera_isa::cost`): MXU passes over `mxu_k × mxu_n` weight tiles at
//! the precision's rate, VPU lane-groups at one per cycle (simple) or
//! `vpu_special_cycles` (division, roots, transcendentals), row
//! reductions.
//!
//! Free: graph inputs, constants (and, in the e-graph, every class
//! computable from constants alone: it is folded at compile time), and
//! `reshape` (a contiguous tensor keeps its bytes). Forms the NPU cannot
//! run cost [`UNSUPPORTED`], a large finite number, so that any
//! alternative wins but a graph without one still has a cost.

use tessera_isa::cost::{mxu_load_weights, mxu_matmul, vpu_elementwise, vpu_reduce, VpuClass};
use tessera_isa::{MxuType, Target};

use crate::graph::{BinaryOp, Graph, Op, TensorType, UnaryOp};
use crate::lower::attention::OnlineShape;

/// The share of a kernel's DRAM time it costs even when compute dominates:
/// DRAM bandwidth is shared by every engine's transfers, so moving fewer
/// bytes helps the kernels around it (and of two forms with the same
/// compute, the one that moves less wins).
pub const CONTENTION: f64 = 1.0 / 16.0;

/// The cost of a form the NPU cannot run.
pub const UNSUPPORTED: f64 = 1.0e12;

/// Costs ops for one target and MXU input type.
#[derive(Clone, Debug)]
pub struct CostModel {
    /// The target.
    pub target: Target,
    /// The MXU's input type (bf16 runs at full rate, fp32 in several
    /// passes).
    pub mxu: MxuType,
}

fn bytes(t: &TensorType) -> f64 {
    t.numel() as f64 * t.dtype.size() as f64
}

/// `(rows, cols)` of a shape seen as rows of its last dimension.
fn rows_cols(shape: &[usize]) -> (u64, u64) {
    let cols = shape.last().copied().unwrap_or(1).max(1) as u64;
    let numel: usize = shape.iter().product();
    (numel as u64 / cols, cols)
}

impl CostModel {
    /// A cost model.
    pub fn new(target: Target, mxu: MxuType) -> CostModel {
        CostModel { target, mxu }
    }

    /// Cycles to move `bytes` through the DRAM interface.
    fn dram(&self, bytes: f64) -> f64 {
        bytes / f64::from(self.target.dram_bytes_per_cycle.max(1))
    }

    /// VPU cycles of `passes` elementwise passes over `shape`.
    fn vpu(&self, class: VpuClass, shape: &[usize], passes: u64) -> f64 {
        let (rows, cols) = rows_cols(shape);
        // In f64: a declared shape may be large enough to overflow u64.
        vpu_elementwise(&self.target, class, rows, cols) as f64 * passes as f64
    }

    /// VPU cycles of `passes` row reductions of `rows × cols`.
    fn reduce(&self, rows: u64, cols: u64, passes: u64) -> f64 {
        vpu_reduce(&self.target, rows, cols) as f64 * passes as f64
    }

    /// MXU cycles of an `m × k` by `k × n` product: every weight tile is
    /// loaded once and `m` rows stream through it.
    fn mxu(&self, m: u64, k: u64, n: u64) -> f64 {
        self.mxu_as(self.mxu, m, k, n)
    }

    /// [`CostModel::mxu`] in the MXU mode `mxu`.
    fn mxu_as(&self, mxu: MxuType, m: u64, k: u64, n: u64) -> f64 {
        let t = &self.target;
        let (tk, tn) = (u64::from(t.mxu_k.max(1)), u64::from(t.mxu_n.max(1)));
        let tiles = k.div_ceil(tk).max(1) as f64 * n.div_ceil(tn).max(1) as f64;
        let per_tile = mxu_load_weights(k.min(tk)) as f64 + mxu_matmul(t, m, mxu).0 as f64;
        tiles * per_tile + f64::from(t.mxu_pipeline_cycles)
    }

    /// Whether the GEMM kernel can tile `K` and `N` on this target: one
    /// row of A, its output and staging rows, two weight tiles and the bias
    /// must fit in SPM (the conditions of the lowering's tile choice).
    pub fn gemm_fits(&self, k: usize, n: usize) -> bool {
        self.gemm_fits_as(self.mxu, k, n)
    }

    /// [`CostModel::gemm_fits`] in the MXU mode `mxu` (an integer mode
    /// reads A as stored: no staging rows).
    pub fn gemm_fits_as(&self, mxu: MxuType, k: usize, n: usize) -> bool {
        let t = &self.target;
        let (k, n) = (k as u64, n as u64);
        let tk = k.min(u64::from(t.mxu_k)).max(1);
        let tn = n.min(u64::from(t.mxu_n)).max(1);
        let e = mxu.a_type().size();
        let fixed = 2 * tk * tn * e + n * 4 + 64 * 8;
        let kch = if mxu == MxuType::F32 || mxu.class() == tessera_isa::MxuClass::Int {
            0
        } else {
            k.min(512.max(tk))
        };
        let per_row = k * e + 2 * tn * 4 + 2 * kch * 4;
        per_row <= t.spm_bytes.saturating_sub(fixed) && 2 * tn * 4 <= t.acc_bytes
    }

    /// Whether fused attention fits: the lowering keeps whole score rows
    /// on chip when they fit and else streams the keys (online softmax),
    /// which needs one block of query rows and of keys.
    pub fn attention_fits(&self, shape: OnlineShape) -> bool {
        shape.tiles(&self.target).is_some()
    }

    /// Estimated cycles of computing `op` from operands of these types
    /// (with the DRAM traffic of reading them and writing the result).
    pub fn op_cost(&self, op: &Op, operands: &[&TensorType], ty: &TensorType) -> f64 {
        let compute = match self.compute(op, operands, ty) {
            Some(c) => c,
            None => return UNSUPPORTED,
        };
        if matches!(op, Op::Input | Op::Constant(_) | Op::Reshape { .. }) {
            return 0.0;
        }
        let traffic: f64 = operands.iter().map(|t| bytes(t)).sum::<f64>() + bytes(ty);
        // A matmul costs one cycle more than the same product as a `gemm`,
        // so the NPU-native form wins a tie.
        let tie_break = if matches!(op, Op::MatMul) { 1.0 } else { 0.0 };
        let dram = self.dram(traffic);
        f64::from(self.target.dram_latency_cycles)
            + compute.max(dram)
            + dram * CONTENTION
            + tie_break
    }

    /// Compute cycles, or `None` for a form the NPU cannot run.
    fn compute(&self, op: &Op, operands: &[&TensorType], ty: &TensorType) -> Option<f64> {
        use VpuClass::{Simple, Special};
        let shape = &ty.shape;
        let operand = |i: usize| operands.get(i).copied();
        Some(match op {
            Op::Input
            | Op::Constant(_)
            | Op::Reshape { .. }
            | Op::Transpose { .. }
            | Op::Slice { .. }
            | Op::Concat { .. }
            | Op::Expand { .. }
            | Op::Gather { .. }
            | Op::GatherNd { .. }
            | Op::Scatter { .. }
            | Op::ScatterElements { .. }
            | Op::Trilu { .. } => 0.0,
            Op::GatherElements { .. } => return None,
            Op::Unary(u) => match u {
                UnaryOp::Neg
                | UnaryOp::Abs
                | UnaryOp::Relu
                | UnaryOp::Not
                | UnaryOp::Sign
                | UnaryOp::Floor
                | UnaryOp::Ceil
                | UnaryOp::Round => self.vpu(Simple, shape, 1),
                UnaryOp::Silu => self.vpu(Special, shape, 1) + self.vpu(Simple, shape, 1),
                _ => self.vpu(Special, shape, 1),
            },
            Op::Binary(BinaryOp::Div | BinaryOp::Pow) => self.vpu(Special, shape, 1),
            Op::Binary(_) | Op::Where | Op::Cast { .. } => self.vpu(Simple, shape, 1),
            Op::Gelu { .. } => self.vpu(Special, shape, 1),
            // Each op of the chain is one pass over the result.
            Op::Elementwise { expr } => expr
                .ops()
                .into_iter()
                .map(|op| self.compute(op, &[ty], ty))
                .sum::<Option<f64>>()?,
            Op::MatMul => {
                let (a, b) = (operand(0)?, operand(1)?);
                let (m, k) = (a.shape[a.rank() - 2], a.shape[a.rank() - 1]);
                let n = b.shape[b.rank() - 1];
                let batch = (ty.numel() / (m * n).max(1)) as u64;
                let mm = if b.rank() == 2 {
                    if !self.gemm_fits(k, n) {
                        return None;
                    }
                    self.mxu(batch * m as u64, k as u64, n as u64)
                } else {
                    batch as f64 * self.mxu(m as u64, k as u64, n as u64)
                };
                mm + self.vpu(Simple, shape, 1)
            }
            // Made after extraction (`fuse.rs`); priced as the batched
            // matmul it is.
            Op::GatherMatMul => {
                let (rows, x) = (operand(1)?, operand(2)?);
                let (b, m) = (rows.shape[0] as u64, rows.shape[1] as u64);
                let (k, n) = (x.shape[1] as u64, x.shape[2] as u64);
                b as f64 * self.mxu(m, k, n) + self.vpu(Simple, shape, 1)
            }
            Op::Gemm { act, .. } => {
                let a = operand(0)?;
                let k = a.shape[a.rank() - 1];
                let n = shape[shape.len() - 1];
                if !self.gemm_fits(k, n) {
                    return None;
                }
                let rows = (a.numel() / k.max(1)) as u64;
                let drain = self.vpu(Simple, shape, 1)
                    + if act.is_some() {
                        self.vpu(Special, shape, 1)
                    } else {
                        0.0
                    };
                self.mxu(rows, k as u64, n as u64) + drain
            }
            Op::QGemm {
                act,
                a_zp,
                b_zp,
                out,
                ..
            } => {
                let (a, b) = (operand(0)?, operand(1)?);
                let mxu = crate::precision::integer_mxu(a.dtype, b.dtype)?;
                let k = a.shape[a.rank() - 1];
                let n = shape[shape.len() - 1];
                if !self.gemm_fits_as(mxu, k, n) {
                    return None;
                }
                let rows = (a.numel() / k.max(1)) as u64;
                let slots =
                    crate::graph::qgemm_operands((*a_zp, *b_zp), out.is_some(), operands.len());
                // Dequantize, the bias, requantize: a VPU pass each.
                let passes = 1 + u64::from(slots.bias.is_some()) + u64::from(out.is_some());
                let drain = self.vpu(Simple, shape, passes)
                    + if act.is_some() {
                        self.vpu(Special, shape, 1)
                    } else {
                        0.0
                    };
                self.mxu_as(mxu, rows, k as u64, n as u64) + drain
            }
            Op::Attention { .. } => {
                let (q, k) = (operand(0)?, operand(1)?);
                let (heads, sq, d) = (
                    (q.shape[0] * q.shape[1]) as u64,
                    q.shape[2] as u64,
                    q.shape[3] as u64,
                );
                let sk = k.shape[2] as u64;
                let Op::Attention { causal, .. } = op else {
                    return None;
                };
                // The lowering's conditions: the tiles fit, a causal mask
                // has at least as many keys as queries, a mask varies along
                // the keys.
                let row_mask = operand(3).is_some_and(|m| m.shape.last().is_none_or(|&l| l == 1));
                let per_query_mask = operand(3)
                    .is_some_and(|m| m.shape.len() >= 2 && m.shape[m.shape.len() - 2] != 1);
                let shape = OnlineShape {
                    sq,
                    sk,
                    d,
                    e: self.mxu.a_type().size(),
                    mask: operand(3).map(|_| per_query_mask),
                    causal: *causal,
                };
                if !self.attention_fits(shape) || *causal && sk < sq || row_mask && sk > 1 {
                    return None;
                }
                let scores = [sq as usize, sk as usize];
                let per_head = self.mxu(sq, d, sk)
                    + self.mxu(sq, sk, d)
                    + self.vpu(Simple, &scores, 2)
                    + self.vpu(Special, &scores, 2)
                    + self.reduce(sq, sk, 2);
                heads as f64 * per_head
            }
            Op::Softmax { axis } => {
                if *axis + 1 != shape.len() {
                    return None;
                }
                let (rows, cols) = rows_cols(shape);
                self.reduce(rows, cols, 2)
                    + self.vpu(Simple, shape, 1)
                    + self.vpu(Special, shape, 2)
            }
            Op::LayerNorm { axis, .. }
            | Op::RmsNorm { axis, .. }
            | Op::AddLayerNorm { axis, .. }
            | Op::AddRmsNorm { axis, .. } => {
                let cols: usize = shape[*axis..].iter().product();
                let rows = (ty.numel() / cols.max(1)) as u64;
                let (reductions, passes) = match op {
                    Op::LayerNorm { .. } => (2, 4),
                    Op::AddLayerNorm { .. } => (2, 5),
                    Op::RmsNorm { .. } => (1, 3),
                    _ => (1, 4),
                };
                self.reduce(rows, cols as u64, reductions) + self.vpu(Simple, shape, passes)
            }
            Op::Reduce { .. } => {
                let x = operand(0)?;
                let rows = ty.numel().max(1) as u64;
                let cols = (x.numel() / ty.numel().max(1)) as u64;
                self.reduce(rows, cols, 1)
            }
            Op::Rope => self.vpu(Simple, shape, 4),
            Op::Conv(c) => {
                let (x, w) = (operand(0)?, operand(1)?);
                let spatial_out: usize = shape[2..].iter().product();
                let m = (shape[0] * spatial_out) as u64;
                let k = (w.numel() / w.shape[0].max(1)) as u64;
                let n = (w.shape[0] / c.group.max(1)) as u64;
                let _ = x;
                c.group as f64 * self.mxu(m, k, n) + self.vpu(Simple, shape, 1)
            }
        })
    }

    /// The summed cost of every operation of a graph.
    pub fn graph_cost(&self, graph: &Graph) -> f64 {
        graph
            .node_ids()
            .into_iter()
            .map(|id| {
                let node = graph.node(id);
                let operands = graph.operands(id);
                let types: Vec<&TensorType> = operands.iter().map(|&o| &graph.node(o).ty).collect();
                self.op_cost(&node.op, &types, &node.ty)
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::Activation;
    use crate::tensor::DType;

    fn f32(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec())
    }

    fn model() -> CostModel {
        CostModel::new(Target::base(), MxuType::Bf16)
    }

    #[test]
    fn a_fused_gemm_beats_matmul_plus_bias_plus_activation() {
        let m = model();
        let (x, w, b, y) = (
            f32(&[128, 768]),
            f32(&[768, 3072]),
            f32(&[3072]),
            f32(&[128, 3072]),
        );
        let fused = m.op_cost(
            &Op::Gemm {
                trans_b: false,
                act: Some(Activation::Gelu),
            },
            &[&x, &w, &b],
            &y,
        );
        let unfused = m.op_cost(&Op::MatMul, &[&x, &w], &y)
            + m.op_cost(&Op::Binary(BinaryOp::Add), &[&y, &b], &y)
            + m.op_cost(
                &Op::Gelu {
                    approximate: crate::graph::GeluApprox::None,
                },
                &[&y],
                &y,
            );
        assert!(fused < unfused, "{fused} vs {unfused}");
        // And a plain matmul is one cycle dearer than the same gemm.
        let gemm = m.op_cost(
            &Op::Gemm {
                trans_b: false,
                act: None,
            },
            &[&x, &w],
            &y,
        );
        assert_eq!(m.op_cost(&Op::MatMul, &[&x, &w], &y), gemm + 1.0);
    }

    #[test]
    fn fp32_matmuls_cost_more_than_bf16() {
        let (x, w, y) = (f32(&[512, 1024]), f32(&[1024, 1024]), f32(&[512, 1024]));
        let bf16 = model().op_cost(&Op::MatMul, &[&x, &w], &y);
        let fp32 = CostModel::new(Target::base(), MxuType::F32).op_cost(&Op::MatMul, &[&x, &w], &y);
        assert!(fp32 > 2.0 * bf16, "{fp32} vs {bf16}");
    }

    #[test]
    fn reshapes_are_free_and_unsupported_forms_are_dear() {
        let m = model();
        let x = f32(&[2, 8, 32]);
        assert_eq!(
            m.op_cost(
                &Op::Reshape {
                    shape: vec![16, 32]
                },
                &[&x],
                &f32(&[16, 32])
            ),
            0.0
        );
        assert_eq!(m.op_cost(&Op::Softmax { axis: 1 }, &[&x], &x), UNSUPPORTED);
        assert!(m.op_cost(&Op::Softmax { axis: 2 }, &[&x], &x) < UNSUPPORTED);
        // A transpose pays its DRAM round trip.
        let t = m.op_cost(
            &Op::Transpose {
                perm: vec![0, 2, 1],
            },
            &[&x],
            &f32(&[2, 32, 8]),
        );
        let round_trip = 2.0 * 2048.0 / 256.0;
        assert_eq!(t, 200.0 + round_trip * (1.0 + CONTENTION));
    }

    #[test]
    fn the_tiny_target_cannot_tile_a_huge_reduction() {
        let tiny = CostModel::new(Target::tiny(), MxuType::Bf16);
        assert!(tiny.gemm_fits(64, 64));
        assert!(!tiny.gemm_fits(1 << 16, 64));
    }
}
