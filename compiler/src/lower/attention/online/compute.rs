//! The compute steps of one key block: Q·K_jᵀ, the online softmax step,
//! and P·V_j.

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Trans, UnFunc,
};

use crate::kernel::{Addr, Affine, Chan, Cmp, Ext, Mode, Opnd, Stmt, VpuOp, VpuStmt};
use crate::lower::attention::plan::chunks;
use crate::lower::attention::steps::times;

use Engine::{Dma, Mxu, Vpu};

use super::state::{at, col, full, Online};

impl Online<'_> {
    /// MXU: S = Q·K_jᵀ over chunks of D.
    pub(super) fn scores_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let d = spec.d;
        let (dk, dk_count) = chunks(d, u64::from(self.target.mxu_k));
        let vd = self.loops.score_depth;
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            Stmt::For {
                var: vd,
                count: dk_count,
                body: vec![
                    Stmt::LoadW {
                        src: at(&b.kbuf).at.plus(vd, (dk * e) as i64),
                        k: Ext::tile(dk, d, Affine::var(0, vd, dk as i64)),
                        n: self.kt.clone(),
                        stride: d * e,
                        dtype: spec.mxu,
                        trans: Trans::T,
                        quant: None,
                    },
                    Stmt::Matmul {
                        dst: at(&b.sacc).at,
                        a: at(&b.qbuf).at.plus(vd, (dk * e) as i64),
                        m: self.qt.clone(),
                        astride: d * e,
                        dstride: self.plan.tk * 4,
                        mode: Mode::AccAfterFirst(vd),
                        ascales: None,
                    },
                ],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }

    /// VPU: scale and mask the scores, then the online softmax step.
    pub(super) fn softmax_step(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        let (tk, sp) = (self.plan.tk, self.plan.tk * 4);
        let mut step = vec![
            Stmt::Wait(Chan::data(Mxu, Vpu), 1),
            self.on_scores(VpuOp::BinS {
                func: BinFunc::Mul,
                a: full(at(&b.sacc), sp),
                scalar: spec.scale,
                order: Order::As,
            }),
        ];
        if let Some(ms) = &b.mstage {
            let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
            let mask = if mask_full {
                full(at(ms), sp)
            } else {
                Opnd {
                    addr: at(ms),
                    stride: 0,
                    bcast: Bcast::Row,
                }
            };
            step.push(self.scores_bin(BinFunc::Add, mask));
            step.push(Stmt::Signal(Chan::credit(Vpu, Dma), 1));
        }
        if let Some(tri) = &b.triangle {
            // Some key of the block is hidden from some row: add the window of
            // the triangle that starts at column δ + TK − 1.
            let delta = self.delta();
            let window_at =
                Affine::c((tri.offset + (tk - 1) * 4) as i64).plus_affine(&times(&delta, 4));
            step.push(Stmt::If {
                lhs: delta,
                cmp: Cmp::Ge,
                value: 2 - tk as i64,
                body: vec![self.scores_bin(
                    BinFunc::Add,
                    full(Addr::new(Mem::Spm, window_at), self.plan.window * 4),
                )],
            });
        }
        step.extend([
            self.row_red(RedFunc::Max),
            self.vec_bin(BinFunc::Max, &b.m_new, &b.m, &b.tmp),
            self.vec_bin(BinFunc::Sub, &b.alpha, &b.m, &b.m_new),
            self.vec_un(UnFunc::Exp, &b.alpha, &b.alpha),
            self.scores_bin(BinFunc::Sub, col(&b.m_new)),
            self.on_scores(VpuOp::Un {
                func: UnFunc::Exp,
                a: full(at(&b.scores), sp),
            }),
            self.row_red(RedFunc::Sum),
            self.vec_bin(BinFunc::Mul, &b.l, &b.l, &b.alpha),
            self.vec_bin(BinFunc::Add, &b.l, &b.l, &b.tmp),
            self.vec_un(UnFunc::Mov, &b.m, &b.m_new),
            Stmt::Vpu(VpuStmt {
                op: VpuOp::Cvt {
                    dtype: spec.mxu.a_type(),
                    a: at(&b.scores),
                    atype: IsaType::F32,
                    astride: sp,
                },
                dst: at(&b.pbuf),
                dstride: tk * self.e,
                rows: self.qt.clone(),
                cols: self.kt.clone(),
            }),
            Stmt::Signal(Chan::data(Vpu, Mxu), 1),
        ]);
        step
    }

    /// MXU: P·V_j over chunks of D (one chunk of keys: TK ≤ K).
    pub(super) fn pv_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let d = spec.d;
        let (on, on_count) = chunks(d, u64::from(self.target.mxu_n));
        let vo = self.loops.out_cols;
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            Stmt::For {
                var: vo,
                count: on_count,
                body: vec![
                    Stmt::LoadW {
                        src: at(&b.vbuf).at.plus(vo, (on * e) as i64),
                        k: self.kt.clone(),
                        n: Ext::tile(on, d, Affine::var(0, vo, on as i64)),
                        stride: d * e,
                        dtype: spec.mxu,
                        trans: Trans::N,
                        quant: None,
                    },
                    Stmt::Matmul {
                        dst: at(&b.pvacc).at.plus(vo, (on * 4) as i64),
                        a: at(&b.pbuf).at,
                        m: self.qt.clone(),
                        astride: self.plan.tk * e,
                        dstride: d * 4,
                        mode: Mode::Fixed(AccMode::Set),
                        ascales: None,
                    },
                ],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }
}
