//! The compute steps of one key block: Q·K_jᵀ, the online softmax step,
//! and P·V_j.

use tessera_isa::{Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Trans, UnFunc};

use crate::kernel::{Addr, Affine, Chan, Cmp, Ext, Mode, Opnd, Stmt, VpuOp, VpuStmt};
use crate::lower::attention::plan::chunks;
use crate::lower::attention::steps::times;

use Engine::{Dma, Mxu, Vpu};

use super::state::{at, col, full, Online};

impl Online<'_> {
    /// The key sub-tiles of a block (one weight tile of keys each): their
    /// count, and for sub-tile `var` its first key within the block, its
    /// width, and the guard that it holds keys (a short last block has
    /// fewer sub-tiles).
    fn key_tiles(&self, var: crate::kernel::Var) -> (u64, u64, Ext, Affine) {
        let tile = u64::from(self.target.mxu_k.min(self.target.mxu_n)).min(self.plan.tk);
        let count = self.plan.tk.div_ceil(tile);
        let start = self.j0.clone().plus(var, tile as i64);
        let width = Ext::tile(tile, self.spec.sk, start.clone());
        (count, tile, width, start)
    }

    /// `body` for each key sub-tile that holds keys.
    fn over_key_tiles(&self, var: crate::kernel::Var, body: Vec<Stmt>) -> Stmt {
        let (count, _, _, start) = self.key_tiles(var);
        if count == 1 {
            return Stmt::For { var, count, body };
        }
        Stmt::For {
            var,
            count,
            body: vec![Stmt::If {
                lhs: start,
                cmp: Cmp::Lt,
                value: self.spec.sk as i64,
                body,
            }],
        }
    }

    /// MXU: S = Q·K_jᵀ, per key sub-tile over chunks of D.
    pub(super) fn scores_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let d = spec.d;
        let (dk, dk_count) = chunks(d, u64::from(self.target.mxu_k));
        let (vd, vt) = (self.loops.score_depth, self.loops.key_tile);
        let (_, tile, width, _) = self.key_tiles(vt);
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            self.over_key_tiles(
                vt,
                vec![Stmt::For {
                    var: vd,
                    count: dk_count,
                    body: vec![
                        Stmt::LoadW {
                            src: at(&b.kbuf)
                                .at
                                .plus(vd, (dk * e) as i64)
                                .plus(vt, (tile * d * e) as i64),
                            k: Ext::tile(dk, d, Affine::var(0, vd, dk as i64)),
                            n: width.clone(),
                            stride: d * e,
                            dtype: spec.mxu,
                            trans: Trans::T,
                            quant: None,
                        },
                        Stmt::Matmul {
                            dst: at(&b.sacc).at.plus(vt, (tile * 4) as i64),
                            a: at(&b.qbuf).at.plus(vd, (dk * e) as i64),
                            m: self.qt.clone(),
                            astride: d * e,
                            dstride: self.plan.tk * 4,
                            mode: Mode::AccAfterFirst(vd),
                            ascales: None,
                        },
                    ],
                }],
            ),
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
                full(self.staged(ms), sp)
            } else {
                Opnd {
                    addr: self.staged(ms),
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

    /// MXU: P·V_j over chunks of D, accumulating over the key sub-tiles.
    pub(super) fn pv_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let d = spec.d;
        let (on, on_count) = chunks(d, u64::from(self.target.mxu_n));
        let (vo, vt) = (self.loops.out_cols, self.loops.key_tile);
        let (_, tile, width, _) = self.key_tiles(vt);
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            Stmt::For {
                var: vo,
                count: on_count,
                body: vec![self.over_key_tiles(
                    vt,
                    vec![
                        Stmt::LoadW {
                            src: at(&b.vbuf)
                                .at
                                .plus(vo, (on * e) as i64)
                                .plus(vt, (tile * d * e) as i64),
                            k: width.clone(),
                            n: Ext::tile(on, d, Affine::var(0, vo, on as i64)),
                            stride: d * e,
                            dtype: spec.mxu,
                            trans: Trans::N,
                            quant: None,
                        },
                        Stmt::Matmul {
                            dst: at(&b.pvacc).at.plus(vo, (on * 4) as i64),
                            a: at(&b.pbuf).at.plus(vt, (tile * e) as i64),
                            m: self.qt.clone(),
                            astride: self.plan.tk * e,
                            dstride: d * 4,
                            mode: Mode::AccAfterFirst(vt),
                            ascales: None,
                        },
                    ],
                )],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }
}
