//! The whole-row attention kernel: whole score rows and a head's whole K
//! and V stay in SPM.
//!
//! Work is grouped by key/value head: for each batch entry and KV head the
//! DMA loads K and V once and the VPU converts them to the MXU's type; then
//! every query head of the group (grouped-query attention) and every block
//! of `TQ` query rows is one *task*: Q·Kᵀ into ACC (K used transposed by
//! `mxu.ldw … trans=t`), scale, mask and softmax on the VPU over whole
//! score rows in SPM, P·V into ACC, and the result stored. Tasks are
//! double-buffered and the output of task `t` is stored after task `t + 1`
//! was loaded, so loads, both matmuls and the softmax overlap across heads.
//! `TQ` divides the query length so every address stays affine.
//!
//! Synchronization (data lanes carry events in program order; credit lanes
//! guard slot reuse, pre-signaled and drained):
//!
//! | channel | events |
//! |---------|--------|
//! | dma→vpu data | K/V loaded; a task's Q (and mask) loaded |
//! | vpu→mxu data | K/V converted; Q converted; P ready |
//! | mxu→vpu data | scores ready; O ready |
//! | vpu→dma data | O ready to store |
//! | vpu→dma credit | a Q/mask staging slot is free (2) |
//! | mxu→vpu credit | a Q/P operand slot is free (2) |
//! | vpu→mxu credit | an ACC slot is free (2) |
//! | dma→vpu credit | an output slot is free (2) |

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Target, Trans, UnFunc,
};

use crate::kernel::{
    Addr, Affine, Buffer, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt,
};
use crate::lower::alloc::{OnChip, Vars};
use crate::lower::template::credited;
use crate::lower::LowerError;

use super::plan::{chunks, WholeRowPlan};
use super::spec::{AttentionSpec, Tensor4};
use super::steps::{causal_triangle, row_at, rows_copy, times, to_mxu_type};

use Engine::{Dma, Mxu, Vpu};

/// Builds the whole-row attention kernel for a plan of
/// [`super::plan::whole_row_plan`] (checks on the spec are the caller's).
pub(super) fn attention_whole_row(
    spec: &AttentionSpec,
    plan: &WholeRowPlan,
    target: &Target,
) -> Result<Kernel, LowerError> {
    let mut mem = OnChip::new(target);
    let bufs = Buffers::allocate(&mut mem, spec, plan)?;
    let kernel = WholeRow {
        spec,
        target,
        plan,
        loops: Loops::new(plan),
        bufs,
        e: spec.mxu.dtype().size(),
        mask_full: spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0),
    };
    let steps = TaskSteps {
        load: kernel.task_loads(),
        convert: kernel.task_convert(),
        scores: kernel.scores_matmul(),
        softmax: kernel.softmax(),
        pv: kernel.pv_matmul(),
        scale_out: kernel.scale_output(),
        store: kernel.store(),
    };
    let group_body = kernel.pipeline(kernel.group_loads(), &steps);
    let body = kernel.body(group_body);
    let rotators = {
        let l = &kernel.loops;
        vec![(l.slot, 2), (l.acc, 3), (l.acc_next, 3), (l.acc_prev, 3)]
    };
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "attention {} ({}; {} query rows per task)",
            spec.describe(),
            spec.mxu,
            plan.tq
        ),
        buffers: mem.buffers,
        body,
        rotators,
        macs: spec.macs(),
        compulsory_dram_bytes: spec.compulsory_dram_bytes(),
    })
}

/// The kernel's SPM and ACC buffers.
struct Buffers {
    kstage: Buffer,
    vstage: Buffer,
    kbuf: Buffer,
    vbuf: Buffer,
    qstage: Buffer,
    qbuf: Buffer,
    mstage: Option<Buffer>,
    scores: Buffer,
    causal_mask: Option<Buffer>,
    zero_row: Option<Buffer>,
    stat: Buffer,
    pbuf: Buffer,
    oout: Buffer,
    sacc: Buffer,
    oacc: Buffer,
}

impl Buffers {
    fn allocate(
        mem: &mut OnChip,
        spec: &AttentionSpec,
        plan: &WholeRowPlan,
    ) -> Result<Buffers, LowerError> {
        let (sq, sk, d, tq) = (spec.sq, spec.sk, spec.d, plan.tq);
        let e = spec.mxu.dtype().size();
        let kv_slots = plan.kv_slots;
        let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
        let kstage = mem.alloc("k_f32", Mem::Spm, sk * d * 4, kv_slots)?;
        let vstage = mem.alloc("v_f32", Mem::Spm, sk * d * 4, kv_slots)?;
        let kbuf = mem.alloc("k", Mem::Spm, sk * d * e, kv_slots)?;
        let vbuf = mem.alloc("v", Mem::Spm, sk * d * e, kv_slots)?;
        let qstage = mem.alloc("q_f32", Mem::Spm, tq * d * 4, 2)?;
        let qbuf = mem.alloc("q", Mem::Spm, tq * d * e, 2)?;
        let mstage = match &spec.mask {
            Some(_) if mask_full => Some(mem.alloc("mask", Mem::Spm, tq * sk * 4, 2)?),
            Some(_) => Some(mem.alloc("mask_row", Mem::Spm, sk * 4, 2)?),
            None => None,
        };
        let scores = mem.alloc("scores", Mem::Spm, tq * sk * 4, 1)?;
        // Causal attention: query row q0 + i sees keys j <= q0 + i + (sk - sq).
        // A block of TQ rows at q0 therefore sees nothing past column
        // w = q0 + TQ + (sk - sq), and only the TQ columns of the diagonal band
        // [w - TQ, w) are partly masked, the same way for every block: one
        // TQ × TQ triangle (0 on and below the diagonal, -inf above), built once,
        // is added to the band, and the softmax runs over w columns, not SK.
        let causal_mask = if spec.causal {
            Some(mem.alloc("causal", Mem::Spm, tq * tq * 4, 1)?)
        } else {
            None
        };
        let zero_row = if spec.causal && sq > tq {
            Some(mem.alloc("zero_row", Mem::Spm, sk * 4, 1)?)
        } else {
            None
        };
        Ok(Buffers {
            kstage,
            vstage,
            kbuf,
            vbuf,
            qstage,
            qbuf,
            mstage,
            scores,
            causal_mask,
            zero_row,
            stat: mem.alloc("row_stat", Mem::Spm, tq * 4, 2)?,
            pbuf: mem.alloc("p", Mem::Spm, tq * sk * e, 2)?,
            oout: mem.alloc("o", Mem::Spm, tq * d * 4, 2)?,
            sacc: mem.alloc("s_acc", Mem::Acc, tq * sk * 4, 3)?,
            oacc: mem.alloc("o_acc", Mem::Acc, tq * d * 4, 3)?,
        })
    }
}

/// Loop variables and rotators.
struct Loops {
    batch: Var,
    kv_head: Var,
    /// The loop around the pipelined one.
    outer: Var,
    /// The pipelined loop over tasks.
    task: Var,
    /// SPM slot (mod 2) of the current task.
    slot: Var,
    /// Query head within the group (`outer` or `task`).
    head_in_group: Var,
    /// Query block (the other of `outer` and `task`).
    query_block: Var,
    /// ACC slots (mod 3) of tasks t, t + 1 and t − 1.
    acc: Var,
    acc_next: Var,
    acc_prev: Var,
    /// Chunks of keys and of D in Q·Kᵀ.
    score_keys: Var,
    score_depth: Var,
    /// Chunks of D and of keys in P·V.
    out_cols: Var,
    out_depth: Var,
    /// Rows of the causal triangle.
    triangle_row: Var,
}

impl Loops {
    fn new(plan: &WholeRowPlan) -> Loops {
        let mut vars = Vars::default();
        let [batch, kv_head, outer, task, slot, acc, acc_next, acc_prev] =
            [(); 8].map(|()| vars.fresh());
        let [score_keys, score_depth, out_cols, out_depth, triangle_row] =
            [(); 5].map(|()| vars.fresh());
        let (head_in_group, query_block) = if plan.heads_inner {
            (task, outer)
        } else {
            (outer, task)
        };
        Loops {
            batch,
            kv_head,
            outer,
            task,
            slot,
            head_in_group,
            query_block,
            acc,
            acc_next,
            acc_prev,
            score_keys,
            score_depth,
            out_cols,
            out_depth,
            triangle_row,
        }
    }
}

/// The statements of task `t` (loop variable `task`, SPM slot `slot`, ACC
/// slot `acc`), shifted to other tasks by substitution.
struct TaskSteps {
    /// DMA: Q (K, V per task, mask) into staging.
    load: Vec<Stmt>,
    /// VPU: Q (K, V) to the MXU's type.
    convert: Vec<Stmt>,
    /// MXU: S = Q·Kᵀ.
    scores: Vec<Stmt>,
    /// VPU: scale, mask, softmax, P.
    softmax: Vec<Stmt>,
    /// MXU: O = P·V.
    pv: Vec<Stmt>,
    /// VPU: O / sum out of ACC.
    scale_out: Vec<Stmt>,
    /// DMA: O stored.
    store: Vec<Stmt>,
}

/// One whole-row attention kernel being built.
struct WholeRow<'a> {
    spec: &'a AttentionSpec,
    target: &'a Target,
    plan: &'a WholeRowPlan,
    loops: Loops,
    bufs: Buffers,
    /// Bytes per MXU input element.
    e: u64,
    /// The mask has a row per query.
    mask_full: bool,
}

fn full(addr: Addr, stride: u64) -> Opnd {
    Opnd {
        addr,
        stride,
        bcast: Bcast::Full,
    }
}

impl WholeRow<'_> {
    /// The task's SPM slot.
    fn slot(&self) -> Affine {
        Affine::var(0, self.loops.slot, 1)
    }

    /// The slot of K and V: the task's when per task, else the only one.
    fn kv_slot(&self) -> Affine {
        if self.plan.kv_per_task {
            self.slot()
        } else {
            Affine::c(0)
        }
    }

    /// The task's ACC slot.
    fn acc_slot(&self) -> Affine {
        Affine::var(0, self.loops.acc, 1)
    }

    /// h = kvh·group + hh.
    fn head(&self) -> Affine {
        let group = self.spec.h / self.spec.hkv.max(1);
        Affine::var(0, self.loops.kv_head, group as i64).plus(self.loops.head_in_group, 1)
    }

    /// DRAM address of the task's first query row in `t`.
    fn q_rows(&self, t: &Tensor4) -> Affine {
        let first = Affine::var(0, self.loops.query_block, self.plan.tq as i64);
        row_at(t, self.loops.batch, &self.head(), &first)
    }

    /// DRAM address of the K or V rows the task reads.
    fn kv_base(&self, t: &Tensor4) -> Affine {
        let head = if self.plan.kv_per_task {
            self.loops.head_in_group
        } else {
            self.loops.kv_head
        };
        row_at(t, self.loops.batch, &Affine::var(0, head, 1), &Affine::c(0))
    }

    /// The row statistics of the task (one per query row) as a column.
    fn stat_col(&self) -> Opnd {
        Opnd {
            addr: self.bufs.stat.at(&self.slot(), 0),
            stride: 4,
            bcast: Bcast::Col,
        }
    }

    /// K and V once per KV head (nothing when they are per task).
    fn group_loads(&self) -> Vec<Stmt> {
        if self.plan.kv_per_task {
            return vec![];
        }
        let (spec, b) = (self.spec, &self.bufs);
        let (sk, d) = (spec.sk, spec.d);
        let zero = Affine::c(0);
        vec![
            rows_copy(
                true,
                self.kv_base(&spec.k),
                &spec.k,
                d,
                b.kstage.at(&zero, 0),
                Ext::Const(sk),
            ),
            rows_copy(
                true,
                self.kv_base(&spec.v),
                &spec.v,
                d,
                b.vstage.at(&zero, 0),
                Ext::Const(sk),
            ),
            Stmt::Signal(Chan::data(Dma, Vpu), 1),
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
            to_mxu_type(
                spec,
                b.kbuf.at(&zero, 0),
                b.kstage.at(&zero, 0),
                Ext::Const(sk),
                d,
            ),
            to_mxu_type(
                spec,
                b.vbuf.at(&zero, 0),
                b.vstage.at(&zero, 0),
                Ext::Const(sk),
                d,
            ),
            Stmt::Signal(Chan::data(Vpu, Mxu), 1),
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
        ]
    }

    fn task_loads(&self) -> Vec<Stmt> {
        let (spec, b, s) = (self.spec, &self.bufs, self.slot());
        let (sk, d, tq) = (spec.sk, spec.d, self.plan.tq);
        let mut load = vec![
            Stmt::Wait(Chan::credit(Vpu, Dma), 1),
            rows_copy(
                true,
                self.q_rows(&spec.q),
                &spec.q,
                d,
                b.qstage.at(&s, 0),
                Ext::Const(tq),
            ),
        ];
        if self.plan.kv_per_task {
            load.push(rows_copy(
                true,
                self.kv_base(&spec.k),
                &spec.k,
                d,
                b.kstage.at(&s, 0),
                Ext::Const(sk),
            ));
            load.push(rows_copy(
                true,
                self.kv_base(&spec.v),
                &spec.v,
                d,
                b.vstage.at(&s, 0),
                Ext::Const(sk),
            ));
        }
        if let (Some(m), Some(ms)) = (&spec.mask, &b.mstage) {
            let src = Affine::var(m.addr as i64, self.loops.batch, m.strides[0] * 4)
                .plus_affine(&times(&self.head(), m.strides[1] * 4))
                .plus(self.loops.query_block, tq as i64 * m.strides[2] * 4);
            let (run, dims) = if m.strides[3] == 1 {
                let dims = if self.mask_full {
                    vec![DmaDim {
                        count: Ext::Const(tq),
                        sstride: m.strides[2] * 4,
                        dstride: (sk * 4) as i64,
                    }]
                } else {
                    vec![]
                };
                (Ext::Const(sk * 4), dims)
            } else {
                let mut dims = vec![DmaDim {
                    count: Ext::Const(sk),
                    sstride: m.strides[3] * 4,
                    dstride: 4,
                }];
                if self.mask_full {
                    dims.push(DmaDim {
                        count: Ext::Const(tq),
                        sstride: m.strides[2] * 4,
                        dstride: (sk * 4) as i64,
                    });
                }
                (Ext::Const(4), dims)
            };
            load.push(Stmt::Copy {
                dst: ms.at(&s, 0),
                src: Addr::new(Mem::Dram, src),
                run,
                dims,
            });
        }
        load.push(Stmt::Signal(Chan::data(Dma, Vpu), 1));
        load
    }

    fn task_convert(&self) -> Vec<Stmt> {
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
    fn scores_matmul(&self) -> Vec<Stmt> {
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
                        },
                        Stmt::Matmul {
                            dst: b.sacc.at(&self.acc_slot(), 0).at.plus(vc, (kn * 4) as i64),
                            a: b.qbuf.at(&self.slot(), 0).at.plus(vd, (dk * e) as i64),
                            m: Ext::Const(self.plan.tq),
                            astride: d * e,
                            dstride: sk * 4,
                            mode: Mode::AccAfterFirst(vd),
                        },
                    ],
                }],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }

    /// VPU: scores = S·scale (+ mask), causal, softmax, P.
    fn softmax(&self) -> Vec<Stmt> {
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
                dtype: spec.mxu.dtype(),
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
                    dtype: spec.mxu.dtype(),
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
    fn pv_matmul(&self) -> Vec<Stmt> {
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
                        },
                        Stmt::Matmul {
                            dst: b.oacc.at(&self.acc_slot(), 0).at.plus(vo, (on * 4) as i64),
                            a: b.pbuf.at(&self.slot(), 0).at.plus(vk, (pk * e) as i64),
                            m: Ext::Const(self.plan.tq),
                            astride: sk * e,
                            dstride: d * 4,
                            mode: Mode::AccAfterFirst(vk),
                        },
                    ],
                }],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
            Stmt::Signal(Chan::credit(Mxu, Vpu), 1),
        ]
    }

    /// VPU: O = (P·V) · (1/sum), out of ACC into the output slot.
    fn scale_output(&self) -> Vec<Stmt> {
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

    fn store(&self) -> Vec<Stmt> {
        let out = &self.spec.out;
        vec![
            Stmt::Wait(Chan::data(Vpu, Dma), 1),
            rows_copy(
                false,
                self.q_rows(out),
                out,
                self.spec.d,
                self.bufs.oout.at(&self.slot(), 0),
                Ext::Const(self.plan.tq),
            ),
            Stmt::Signal(Chan::credit(Dma, Vpu), 1),
        ]
    }

    /// The body of one KV group: its loads, then the software pipeline of
    /// tasks, each prefetching task t + 1 up to its scores and draining
    /// task t − 1's output.
    fn pipeline(&self, group_loads: Vec<Stmt>, steps: &TaskSteps) -> Vec<Stmt> {
        let l = &self.loops;
        let (vy, slot, a0) = (l.task, l.slot, l.acc);
        let y_count = self.plan.pipelined_count;
        // Task t ± 1: shift vy, the SPM slot (1 − slot) and the ACC slot.
        let shift = |stmts: &[Stmt], y: Affine, acc: Var| -> Vec<Stmt> {
            let other = Affine::var(1, slot, -1);
            let acc_var = Affine::var(0, acc, 1);
            stmts
                .iter()
                .map(|st| {
                    st.map_affine(&|a: &Affine| {
                        a.substitute(vy, &y)
                            .substitute(slot, &other)
                            .substitute(a0, &acc_var)
                    })
                })
                .collect()
        };
        let at_task = |stmts: &[Stmt], y: Affine| -> Vec<Stmt> {
            stmts
                .iter()
                .map(|st| st.map_affine(&|a: &Affine| a.substitute(vy, &y)))
                .collect()
        };
        let next = Affine::var(1, vy, 1);
        let prev = Affine::var(-1, vy, 1);
        let mut prefetch = shift(&steps.load, next.clone(), l.acc_next);
        prefetch.extend(shift(&steps.convert, next.clone(), l.acc_next));
        prefetch.extend(shift(&steps.scores, next, l.acc_next));
        let mut drain = shift(&steps.scale_out, prev.clone(), l.acc_prev);
        drain.extend(shift(&steps.store, prev, l.acc_prev));
        let mut task = vec![Stmt::If {
            lhs: Affine::var(0, vy, 1),
            cmp: Cmp::Lt,
            value: y_count as i64 - 1,
            body: prefetch,
        }];
        task.extend(steps.softmax.iter().cloned());
        task.extend(steps.pv.iter().cloned());
        task.push(Stmt::If {
            lhs: Affine::var(0, vy, 1),
            cmp: Cmp::Ge,
            value: 1,
            body: drain,
        });
        task.extend([
            Stmt::Advance(slot),
            Stmt::Advance(a0),
            Stmt::Advance(l.acc_next),
            Stmt::Advance(l.acc_prev),
        ]);
        // Before the loop: task 0's load, Q and scores; after it: the last O.
        let mut x_body = at_task(&steps.load, Affine::c(0));
        x_body.extend(at_task(&steps.convert, Affine::c(0)));
        x_body.extend(at_task(&steps.scores, Affine::c(0)));
        x_body.push(Stmt::For {
            var: vy,
            count: y_count,
            body: task,
        });
        let last = Affine::c(y_count as i64 - 1);
        x_body.extend(shift(&steps.scale_out, last.clone(), l.acc_prev));
        x_body.extend(shift(&steps.store, last, l.acc_prev));
        let mut group_body = group_loads;
        group_body.push(Stmt::For {
            var: l.outer,
            count: self.plan.outer_count,
            body: x_body,
        });
        group_body
    }

    /// The constant masks, the rotators' start, and the loops over batch
    /// entries and KV groups between the credit lanes' setup and drain.
    fn body(&self, group_body: Vec<Stmt>) -> Vec<Stmt> {
        let (l, b) = (&self.loops, &self.bufs);
        let mut body = Vec::new();
        if let Some(cm) = &b.causal_mask {
            body.extend(causal_triangle(
                cm,
                l.triangle_row,
                self.plan.tq,
                self.plan.tq,
                1,
            ));
        }
        if let Some(zeros) = &b.zero_row {
            body.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Fill { bits: 0 },
                dst: zeros.at(&Affine::c(0), 0),
                dstride: self.spec.sk * 4,
                rows: Ext::Const(1),
                cols: Ext::Const(self.spec.sk),
            }));
        }
        // ACC slots rotate mod 3: acc is task t's, acc_next task t+1's,
        // acc_prev task t-1's.
        body.extend([
            Stmt::Advance(l.acc_next),
            Stmt::Advance(l.acc_prev),
            Stmt::Advance(l.acc_prev),
        ]);
        let credits = [
            (Chan::credit(Vpu, Dma), 2),
            (Chan::credit(Mxu, Vpu), 2),
            (Chan::credit(Vpu, Mxu), 3),
            (Chan::credit(Dma, Vpu), 2),
        ];
        body.extend(credited(
            &credits,
            vec![Stmt::For {
                var: l.batch,
                count: self.spec.b,
                body: vec![Stmt::For {
                    var: l.kv_head,
                    count: self.plan.group_count,
                    body: group_body,
                }],
            }],
        ));
        body
    }
}
