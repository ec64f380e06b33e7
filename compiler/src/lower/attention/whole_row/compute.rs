//! The compute steps of a whole-row task: conversions to the MXU's type,
//! Q·Kᵀ, the softmax over whole score rows, P·V, and the output scaled by
//! the row sums.

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Trans, UnFunc,
};

use crate::kernel::{Addr, Affine, Chan, Ext, Mode, Opnd, Stmt, VpuOp, VpuStmt};
use crate::lower::attention::plan::chunks;
use crate::lower::attention::steps::to_mxu_type;

use Engine::{Dma, Mxu, Vpu};

use super::state::{full, WholeRow};

impl WholeRow<'_> {
    pub(super) fn task_convert(&self) -> Vec<Stmt> {
        let (spec, b, s) = (self.spec, &self.bufs, self.slot());
        let (sk, d) = (spec.sk, spec.d);
        let mut convert = vec![
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
            Stmt::Wait(Chan::credit(Mxu, Vpu), 1),
            to_mxu_type(
                spec,
                b.qbuf.at(&s, 0),
                b.qstage.at(&s, 0),
                Ext::Const(self.plan.tq),
                d,
            ),
        ];
        if self.plan.kv_per_task {
            convert.push(to_mxu_type(
                spec,
                b.kbuf.at(&s, 0),
                b.kstage.at(&s, 0),
                Ext::Const(sk),
                d,
            ));
            convert.push(to_mxu_type(
                spec,
                b.vbuf.at(&s, 0),
                b.vstage.at(&s, 0),
                Ext::Const(sk),
                d,
            ));
        }
        convert.push(Stmt::Signal(Chan::data(Vpu, Mxu), 1));
        convert
    }

    /// MXU: S = Q·Kᵀ, in chunks of keys (≤ N) and of D (≤ K).
    pub(super) fn scores_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let (sk, d) = (spec.sk, spec.d);
        let (kn, kn_count) = chunks(sk, u64::from(self.target.mxu_n));
        let (dk, dk_count) = chunks(d, u64::from(self.target.mxu_k));
        let (vc, vd) = (self.loops.score_keys, self.loops.score_depth);
        let keys = Ext::tile(kn, sk, Affine::var(0, vc, kn as i64));
        let dims_k = Ext::tile(dk, d, Affine::var(0, vd, dk as i64));
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            Stmt::Wait(Chan::credit(Vpu, Mxu), 1),
            Stmt::For {
                var: vc,
                count: kn_count,
                body: vec![Stmt::For {
                    var: vd,
                    count: dk_count,
                    body: vec![
                        Stmt::LoadW {
                            src: b
                                .kbuf
                                .at(&self.kv_slot(), 0)
                                .at
                                .plus(vc, (kn * d * e) as i64)
                                .plus(vd, (dk * e) as i64),
                            k: dims_k.clone(),
                            n: keys.clone(),
                            stride: d * e,
                            dtype: spec.mxu,
                            trans: Trans::T,
                            quant: None,
                        },
                        Stmt::Matmul {
                            dst: b.sacc.at(&self.acc_slot(), 0).at.plus(vc, (kn * 4) as i64),
                            a: b.qbuf.at(&self.slot(), 0).at.plus(vd, (dk * e) as i64),
                            m: Ext::Const(self.plan.tq),
                            astride: d * e,
                            dstride: sk * 4,
                            mode: Mode::AccAfterFirst(vd),
                            ascales: None,
                        },
                    ],
                }],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }

    /// VPU: scores = S·scale (+ mask), causal, softmax, P.
    pub(super) fn softmax(&self) -> Vec<Stmt> {
        let (spec, b, e, s) = (self.spec, &self.bufs, self.e, self.slot());
        let (sq, sk, tq) = (spec.sq, spec.sk, self.plan.tq);
        let vqb = self.loops.query_block;
        let zero = Affine::c(0);
        let scores = b.scores.at(&zero, 0);
        let sp = sk * 4;
        let rows = Ext::Const(tq);
        // (Causal attention has sk >= sq, checked by the caller.)
        let band = tq + sk.saturating_sub(sq);
        let cols = if spec.causal {
            // w = min(SK, vqb·TQ + TQ + SK − SQ).
            Ext::Tail {
                tile: sk,
                limit: band as i64,
                start: Affine::var(0, vqb, -(tq as i64)),
            }
        } else {
            Ext::Const(sk)
        };
        let on_scores = |op: VpuOp| {
            Stmt::Vpu(VpuStmt {
                op,
                dst: scores.clone(),
                dstride: sp,
                rows: rows.clone(),
                cols: cols.clone(),
            })
        };
        let mut softmax = vec![Stmt::Wait(Chan::data(Mxu, Vpu), 1)];
        softmax.push(on_scores(VpuOp::BinS {
            func: BinFunc::Mul,
            a: full(b.sacc.at(&self.acc_slot(), 0), sp),
            scalar: spec.scale,
            order: Order::As,
        }));
        if let Some(ms) = &b.mstage {
            let m = if self.mask_full {
                full(ms.at(&s, 0), sp)
            } else {
                Opnd {
                    addr: ms.at(&s, 0),
                    stride: 0,
                    bcast: Bcast::Row,
                }
            };
            softmax.push(on_scores(VpuOp::Bin {
                func: BinFunc::Add,
                a: full(scores.clone(), sp),
                b: m,
            }));
        }
        softmax.push(Stmt::Signal(Chan::credit(Vpu, Dma), 1));
        if let Some(cm) = &b.causal_mask {
            // The triangle onto the band: columns q0 + SK − SQ ..
            let at_band = Affine::var(((sk - sq) * 4) as i64, vqb, (tq * 4) as i64);
            let band_at = Addr::new(Mem::Spm, scores.at.clone().plus_affine(&at_band));
            softmax.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Bin {
                    func: BinFunc::Add,
                    a: full(band_at.clone(), sp),
                    b: full(cm.at(&zero, 0), tq * 4),
                },
                dst: band_at,
                dstride: sp,
                rows: rows.clone(),
                cols: Ext::Const(tq),
            }));
        }
        // Row statistics are per SPM slot: task t's 1/sum scales its O after
        // task t + 1's softmax has run.
        let stat = b.stat.at(&s, 0);
        let red = |func| {
            Stmt::Vpu(VpuStmt {
                op: VpuOp::Red {
                    func,
                    a: full(scores.clone(), sp),
                    mode: Mode::Fixed(AccMode::Set),
                },
                dst: stat.clone(),
                dstride: 4,
                rows: rows.clone(),
                cols: cols.clone(),
            })
        };
        softmax.push(red(RedFunc::Max));
        softmax.push(on_scores(VpuOp::Bin {
            func: BinFunc::Sub,
            a: full(scores.clone(), sp),
            b: self.stat_col(),
        }));
        softmax.push(on_scores(VpuOp::Un {
            func: UnFunc::Exp,
            a: full(scores.clone(), sp),
        }));
        softmax.push(red(RedFunc::Sum));
        // P stays unnormalized (its entries are in [0, 1]); O = (P·V) / sum is
        // scaled when it leaves ACC, which touches TQ × D values instead of
        // TQ × SK. One reciprocal per row (a packed column of tq values is
        // processed as one row of tq lanes), then a multiply.
        softmax.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Un {
                func: UnFunc::Recip,
                a: full(stat.clone(), tq * 4),
            },
            dst: stat,
            dstride: tq * 4,
            rows: Ext::Const(1),
            cols: rows.clone(),
        }));
        softmax.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: spec.mxu.a_type(),
                a: scores.clone(),
                atype: IsaType::F32,
                astride: sp,
            },
            dst: b.pbuf.at(&s, 0),
            dstride: sk * e,
            rows: rows.clone(),
            cols: cols.clone(),
        }));
        if let Some(zeros) = &b.zero_row {
            // P·V runs over all SK keys: P is 0 past w (converted from a row
            // of zeros read with stride 0).
            let past_w = b.pbuf.at(&s, 0).at.plus_affine(&Affine::var(
                (band * e) as i64,
                vqb,
                (tq * e) as i64,
            ));
            softmax.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Cvt {
                    dtype: spec.mxu.a_type(),
                    a: zeros.at(&zero, 0),
                    atype: IsaType::F32,
                    astride: 0,
                },
                dst: Addr::new(Mem::Spm, past_w),
                dstride: sk * e,
                rows: rows.clone(),
                cols: Ext::Tail {
                    tile: sk,
                    limit: (sq - tq) as i64,
                    start: Affine::var(0, vqb, tq as i64),
                },
            }));
        }
        softmax.push(Stmt::Signal(Chan::data(Vpu, Mxu), 1));
        softmax
    }

    /// MXU: O = P·V, in chunks of D (≤ N) and of keys (≤ K).
    pub(super) fn pv_matmul(&self) -> Vec<Stmt> {
        let (spec, b, e) = (self.spec, &self.bufs, self.e);
        let (sk, d) = (spec.sk, spec.d);
        let (on, on_count) = chunks(d, u64::from(self.target.mxu_n));
        let (pk, pk_count) = chunks(sk, u64::from(self.target.mxu_k));
        let (vo, vk) = (self.loops.out_cols, self.loops.out_depth);
        vec![
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
            Stmt::For {
                var: vo,
                count: on_count,
                body: vec![Stmt::For {
                    var: vk,
                    count: pk_count,
                    body: vec![
                        Stmt::LoadW {
                            src: b
                                .vbuf
                                .at(&self.kv_slot(), 0)
                                .at
                                .plus(vk, (pk * d * e) as i64)
                                .plus(vo, (on * e) as i64),
                            k: Ext::tile(pk, sk, Affine::var(0, vk, pk as i64)),
                            n: Ext::tile(on, d, Affine::var(0, vo, on as i64)),
                            stride: d * e,
                            dtype: spec.mxu,
                            trans: Trans::N,
                            quant: None,
                        },
                        Stmt::Matmul {
                            dst: b.oacc.at(&self.acc_slot(), 0).at.plus(vo, (on * 4) as i64),
                            a: b.pbuf.at(&self.slot(), 0).at.plus(vk, (pk * e) as i64),
                            m: Ext::Const(self.plan.tq),
                            astride: sk * e,
                            dstride: d * 4,
                            mode: Mode::AccAfterFirst(vk),
                            ascales: None,
                        },
                    ],
                }],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
            Stmt::Signal(Chan::credit(Mxu, Vpu), 1),
        ]
    }

    /// VPU: O = (P·V) · (1/sum), out of ACC into the output slot.
    pub(super) fn scale_output(&self) -> Vec<Stmt> {
        let d = self.spec.d;
        vec![
            Stmt::Wait(Chan::data(Mxu, Vpu), 1),
            Stmt::Wait(Chan::credit(Dma, Vpu), 1),
            Stmt::Vpu(VpuStmt {
                op: VpuOp::Bin {
                    func: BinFunc::Mul,
                    a: full(self.bufs.oacc.at(&self.acc_slot(), 0), d * 4),
                    b: self.stat_col(),
                },
                dst: self.bufs.oout.at(&self.slot(), 0),
                dstride: d * 4,
                rows: Ext::Const(self.plan.tq),
                cols: Ext::Const(d),
            }),
            Stmt::Signal(Chan::credit(Vpu, Mxu), 1),
            Stmt::Signal(Chan::data(Vpu, Dma), 1),
        ]
    }
}
