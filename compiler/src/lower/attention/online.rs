//! Attention with an online softmax, for sequences whose score rows or K
//! and V do not fit on chip (the kernel of `whole_row.rs` keeps whole score
//! rows and a head's whole K and V in SPM).
//!
//! Per batch entry, query head and block of `TQ` query rows (a *task*),
//! keys are visited in blocks of `TK` (at most the MXU's K and N, so each
//! block is one weight tile; the last block may be shorter). For each
//! block, with `s = Q·K_jᵀ·scale (+ mask)`:
//!
//! ```text
//! m' = max(m, rowmax(s))      α = exp(m − m')
//! p  = exp(s − m')            l = l·α + rowsum(p)
//! O  = O·α + p·V_j            m = m'
//! ```
//!
//! and at the end `O / l` is stored. `m` starts at −f32::MAX rather than
//! −∞, so a block whose scores are all −∞ (masked) gives α = 1 and p = 0
//! instead of NaN. `O`, `m` and `l` stay in SPM in f32; `p` goes to the
//! MXU in its input type.
//!
//! Causal attention skips key blocks a query block cannot see (the same
//! condition guards every engine's part of the block, so the block's
//! synchronization balances on its own), and adds a window of one
//! precomputed `TQ × (TQ + 2·TK − 2)` triangle to the blocks that cross the
//! diagonal.
//!
//! Synchronization, in program order on each lane:
//!
//! | channel | events |
//! |---------|--------|
//! | dma→vpu data | Q loaded; per block: K, V (and mask) loaded |
//! | vpu→mxu data | Q converted; per block: K/V converted, P ready |
//! | mxu→vpu data | per block: scores ready, P·V ready |
//! | vpu→dma data | O ready to store |
//! | vpu→dma credit | the staging buffers are free (1) |
//! | dma→vpu credit | the output buffer is free (1) |

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Target, Trans, UnFunc,
};

use crate::kernel::{
    Addr, Affine, Buffer, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt,
};
use crate::lower::alloc::{OnChip, Vars};
use crate::lower::template::credited;
use crate::lower::LowerError;

use super::plan::{chunks, OnlinePlan};
use super::spec::AttentionSpec;
use super::steps::{causal_triangle, row_at, rows_copy, times, to_mxu_type};

use Engine::{Dma, Mxu, Vpu};

/// Builds the online-softmax attention kernel for a plan of
/// [`super::plan::online_plan`] (checks on the spec are the caller's).
pub(super) fn attention_online(
    spec: &AttentionSpec,
    plan: &OnlinePlan,
    target: &Target,
) -> Result<Kernel, LowerError> {
    let mut mem = OnChip::new(target);
    let bufs = Buffers::allocate(&mut mem, spec, plan)?;
    let kernel = Online::new(spec, target, plan, bufs);
    let mut task = kernel.task_start();
    task.push(Stmt::For {
        var: kernel.loops.key_block,
        count: plan.key_blocks,
        body: kernel.key_block(),
    });
    task.extend(kernel.task_end());
    let body = kernel.body(task);
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "attention (online softmax) {} ({}; {} query rows x {} keys per step)",
            spec.describe(),
            spec.mxu,
            plan.tq,
            plan.tk
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![],
        macs: spec.macs(),
        compulsory_dram_bytes: spec.compulsory_dram_bytes(),
    })
}

/// The kernel's SPM and ACC buffers (one of each: the engines take turns).
struct Buffers {
    qstage: Buffer,
    qbuf: Buffer,
    kstage: Buffer,
    vstage: Buffer,
    kbuf: Buffer,
    vbuf: Buffer,
    mstage: Option<Buffer>,
    scores: Buffer,
    pbuf: Buffer,
    obuf: Buffer,
    /// Running row maximum, its update, row sum, rescale factor, scratch.
    m: Buffer,
    m_new: Buffer,
    l: Buffer,
    alpha: Buffer,
    tmp: Buffer,
    triangle: Option<Buffer>,
    sacc: Buffer,
    pvacc: Buffer,
}

impl Buffers {
    fn allocate(
        mem: &mut OnChip,
        spec: &AttentionSpec,
        plan: &OnlinePlan,
    ) -> Result<Buffers, LowerError> {
        let (d, tq, tk) = (spec.d, plan.tq, plan.tk);
        let e = spec.mxu.dtype().size();
        let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
        let qstage = mem.alloc("q_f32", Mem::Spm, tq * d * 4, 1)?;
        let qbuf = mem.alloc("q", Mem::Spm, tq * d * e, 1)?;
        let kstage = mem.alloc("k_f32", Mem::Spm, tk * d * 4, 1)?;
        let vstage = mem.alloc("v_f32", Mem::Spm, tk * d * 4, 1)?;
        let kbuf = mem.alloc("k", Mem::Spm, tk * d * e, 1)?;
        let vbuf = mem.alloc("v", Mem::Spm, tk * d * e, 1)?;
        let mstage = match &spec.mask {
            Some(_) if mask_full => Some(mem.alloc("mask", Mem::Spm, tq * tk * 4, 1)?),
            Some(_) => Some(mem.alloc("mask_row", Mem::Spm, tk * 4, 1)?),
            None => None,
        };
        let scores = mem.alloc("scores", Mem::Spm, tq * tk * 4, 1)?;
        let pbuf = mem.alloc("p", Mem::Spm, tq * tk * e, 1)?;
        let obuf = mem.alloc("o", Mem::Spm, tq * d * 4, 1)?;
        let [m, m_new, l, alpha, tmp] = ["m", "m_new", "l", "alpha", "row_tmp"]
            .map(|name| mem.alloc(name, Mem::Spm, tq * 4, 1));
        let (m, m_new, l, alpha, tmp) = (m?, m_new?, l?, alpha?, tmp?);
        let triangle = if spec.causal {
            Some(mem.alloc("causal", Mem::Spm, tq * plan.window * 4, 1)?)
        } else {
            None
        };
        Ok(Buffers {
            qstage,
            qbuf,
            kstage,
            vstage,
            kbuf,
            vbuf,
            mstage,
            scores,
            pbuf,
            obuf,
            m,
            m_new,
            l,
            alpha,
            tmp,
            triangle,
            sacc: mem.alloc("s_acc", Mem::Acc, tq * tk * 4, 1)?,
            pvacc: mem.alloc("pv_acc", Mem::Acc, tq * d * 4, 1)?,
        })
    }
}

/// Loop variables.
struct Loops {
    batch: Var,
    kv_head: Var,
    /// Query head within the KV head's group.
    head_in_group: Var,
    query_block: Var,
    key_block: Var,
    /// Chunks of D in Q·K_jᵀ.
    score_depth: Var,
    /// Chunks of D in P·V_j.
    out_cols: Var,
    /// Rows of the causal triangle.
    triangle_row: Var,
}

/// One online attention kernel being built.
struct Online<'a> {
    spec: &'a AttentionSpec,
    target: &'a Target,
    plan: &'a OnlinePlan,
    loops: Loops,
    bufs: Buffers,
    /// Bytes per MXU input element.
    e: u64,
    /// The query head: kvh·group + hh.
    head: Affine,
    /// First query row of the task, and how many it has (TQ or fewer).
    q0: Affine,
    qt: Ext,
    /// First key of the block, and how many it has (TK or fewer).
    j0: Affine,
    kt: Ext,
}

fn full(addr: Addr, stride: u64) -> Opnd {
    Opnd {
        addr,
        stride,
        bcast: Bcast::Full,
    }
}

fn at(b: &Buffer) -> Addr {
    b.at(&Affine::c(0), 0)
}

fn col(b: &Buffer) -> Opnd {
    Opnd {
        addr: at(b),
        stride: 4,
        bcast: Bcast::Col,
    }
}

fn fill(dst: Addr, stride: u64, bits: u32, rows: Ext, cols: Ext) -> Stmt {
    Stmt::Vpu(VpuStmt {
        op: VpuOp::Fill { bits },
        dst,
        dstride: stride,
        rows,
        cols,
    })
}

impl<'a> Online<'a> {
    fn new(
        spec: &'a AttentionSpec,
        target: &'a Target,
        plan: &'a OnlinePlan,
        bufs: Buffers,
    ) -> Online<'a> {
        let mut vars = Vars::default();
        let [batch, kv_head, head_in_group, query_block, key_block, score_depth, out_cols, triangle_row] =
            [(); 8].map(|()| vars.fresh());
        let group = spec.h / spec.hkv.max(1);
        let q0 = Affine::var(0, query_block, plan.tq as i64);
        let j0 = Affine::var(0, key_block, plan.tk as i64);
        Online {
            spec,
            target,
            plan,
            bufs,
            e: spec.mxu.dtype().size(),
            head: Affine::var(0, kv_head, group as i64).plus(head_in_group, 1),
            qt: Ext::tile(plan.tq, spec.sq, q0.clone()),
            q0,
            kt: Ext::tile(plan.tk, spec.sk, j0.clone()),
            j0,
            loops: Loops {
                batch,
                kv_head,
                head_in_group,
                query_block,
                key_block,
                score_depth,
                out_cols,
                triangle_row,
            },
        }
    }

    /// An operation on the row vectors (the block's values as one row).
    fn vec_bin(&self, func: BinFunc, dst: &Buffer, a: &Buffer, b: &Buffer) -> Stmt {
        let tq = self.plan.tq;
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func,
                a: full(at(a), tq * 4),
                b: full(at(b), tq * 4),
            },
            dst: at(dst),
            dstride: tq * 4,
            rows: Ext::Const(1),
            cols: self.qt.clone(),
        })
    }

    fn vec_un(&self, func: UnFunc, dst: &Buffer, a: &Buffer) -> Stmt {
        let tq = self.plan.tq;
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Un {
                func,
                a: full(at(a), tq * 4),
            },
            dst: at(dst),
            dstride: tq * 4,
            rows: Ext::Const(1),
            cols: self.qt.clone(),
        })
    }

    /// `op` over the block's scores, in place.
    fn on_scores(&self, op: VpuOp) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op,
            dst: at(&self.bufs.scores),
            dstride: self.plan.tk * 4,
            rows: self.qt.clone(),
            cols: self.kt.clone(),
        })
    }

    fn scores_bin(&self, func: BinFunc, b: Opnd) -> Stmt {
        self.on_scores(VpuOp::Bin {
            func,
            a: full(at(&self.bufs.scores), self.plan.tk * 4),
            b,
        })
    }

    /// A reduction of each score row into `row_tmp`.
    fn row_red(&self, func: RedFunc) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Red {
                func,
                a: full(at(&self.bufs.scores), self.plan.tk * 4),
                mode: Mode::Fixed(AccMode::Set),
            },
            dst: at(&self.bufs.tmp),
            dstride: 4,
            rows: self.qt.clone(),
            cols: self.kt.clone(),
        })
    }

    /// `O = O func b`.
    fn on_o(&self, func: BinFunc, b: Opnd) -> Stmt {
        let d = self.spec.d;
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func,
                a: full(at(&self.bufs.obuf), d * 4),
                b,
            },
            dst: at(&self.bufs.obuf),
            dstride: d * 4,
            rows: self.qt.clone(),
            cols: Ext::Const(d),
        })
    }

    /// Q loaded and converted; m, l and O reset.
    fn task_start(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        let (d, tq) = (spec.d, self.plan.tq);
        vec![
            Stmt::Wait(Chan::credit(Vpu, Dma), 1),
            rows_copy(
                true,
                row_at(&spec.q, self.loops.batch, &self.head, &self.q0),
                &spec.q,
                d,
                at(&b.qstage),
                self.qt.clone(),
            ),
            Stmt::Signal(Chan::data(Dma, Vpu), 1),
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
            to_mxu_type(spec, at(&b.qbuf), at(&b.qstage), self.qt.clone(), d),
            Stmt::Signal(Chan::credit(Vpu, Dma), 1),
            Stmt::Wait(Chan::credit(Dma, Vpu), 1),
            fill(
                at(&b.m),
                tq * 4,
                (-f32::MAX).to_bits(),
                Ext::Const(1),
                Ext::Const(tq),
            ),
            fill(at(&b.l), tq * 4, 0, Ext::Const(1), Ext::Const(tq)),
            fill(at(&b.obuf), d * 4, 0, Ext::Const(tq), Ext::Const(d)),
            Stmt::Signal(Chan::data(Vpu, Mxu), 1),
            Stmt::Wait(Chan::data(Vpu, Mxu), 1),
        ]
    }

    /// DMA: K_j, V_j (and the mask block) into staging.
    fn block_loads(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        let (d, tq, tk) = (spec.d, self.plan.tq, self.plan.tk);
        let l = &self.loops;
        let kv_head = Affine::var(0, l.kv_head, 1);
        let mut loads = vec![
            Stmt::Wait(Chan::credit(Vpu, Dma), 1),
            rows_copy(
                true,
                row_at(&spec.k, l.batch, &kv_head, &self.j0),
                &spec.k,
                d,
                at(&b.kstage),
                self.kt.clone(),
            ),
            rows_copy(
                true,
                row_at(&spec.v, l.batch, &kv_head, &self.j0),
                &spec.v,
                d,
                at(&b.vstage),
                self.kt.clone(),
            ),
        ];
        if let (Some(mk), Some(ms)) = (&spec.mask, &b.mstage) {
            let [mb, mh, mq, mc] = mk.strides;
            let src = Affine::var(mk.addr as i64, l.batch, mb * 4)
                .plus_affine(&times(&self.head, mh * 4))
                .plus(l.query_block, tq as i64 * mq * 4)
                .plus(l.key_block, tk as i64 * mc * 4);
            let mut dims = Vec::new();
            let run = if mc == 1 {
                self.kt.clone().scaled(4)
            } else {
                dims.push(DmaDim {
                    count: self.kt.clone(),
                    sstride: mc * 4,
                    dstride: 4,
                });
                Ext::Const(4)
            };
            if mq != 0 {
                dims.push(DmaDim {
                    count: self.qt.clone(),
                    sstride: mq * 4,
                    dstride: (tk * 4) as i64,
                });
            }
            loads.push(Stmt::Copy {
                dst: at(ms),
                src: Addr::new(Mem::Dram, src),
                run,
                dims,
            });
        }
        loads.push(Stmt::Signal(Chan::data(Dma, Vpu), 1));
        loads
    }

    /// MXU: S = Q·K_jᵀ over chunks of D.
    fn scores_matmul(&self) -> Vec<Stmt> {
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
                    },
                    Stmt::Matmul {
                        dst: at(&b.sacc).at,
                        a: at(&b.qbuf).at.plus(vd, (dk * e) as i64),
                        m: self.qt.clone(),
                        astride: d * e,
                        dstride: self.plan.tk * 4,
                        mode: Mode::AccAfterFirst(vd),
                    },
                ],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }

    /// δ = j0 − q0 − (Sk − Sq): key j0 + c is hidden from query q0 + i
    /// when c + δ > i.
    fn delta(&self) -> Affine {
        let (sq, sk) = (self.spec.sq, self.spec.sk);
        self.j0
            .clone()
            .plus(self.loops.query_block, -(self.plan.tq as i64))
            .plus_affine(&Affine::c(-(sk as i64 - sq as i64)))
    }

    /// VPU: scale and mask the scores, then the online softmax step.
    fn softmax_step(&self) -> Vec<Stmt> {
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
                    dtype: spec.mxu.dtype(),
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
    fn pv_matmul(&self) -> Vec<Stmt> {
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
                    },
                    Stmt::Matmul {
                        dst: at(&b.pvacc).at.plus(vo, (on * 4) as i64),
                        a: at(&b.pbuf).at,
                        m: self.qt.clone(),
                        astride: self.plan.tk * e,
                        dstride: d * 4,
                        mode: Mode::Fixed(AccMode::Set),
                    },
                ],
            },
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
        ]
    }

    /// One key block: loads, conversion, both products and the softmax
    /// step; causal attention skips blocks every row of the query block is
    /// past (δ ≥ TQ).
    fn key_block(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        let mut block = self.block_loads();
        block.extend([
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
            to_mxu_type(spec, at(&b.kbuf), at(&b.kstage), self.kt.clone(), spec.d),
            to_mxu_type(spec, at(&b.vbuf), at(&b.vstage), self.kt.clone(), spec.d),
        ]);
        if b.mstage.is_none() {
            block.push(Stmt::Signal(Chan::credit(Vpu, Dma), 1));
        }
        block.push(Stmt::Signal(Chan::data(Vpu, Mxu), 1));
        block.extend(self.scores_matmul());
        block.extend(self.softmax_step());
        block.extend(self.pv_matmul());
        // VPU: O = O·α + P·V.
        block.extend([
            Stmt::Wait(Chan::data(Mxu, Vpu), 1),
            self.on_o(BinFunc::Mul, col(&b.alpha)),
            self.on_o(BinFunc::Add, full(at(&b.pvacc), spec.d * 4)),
        ]);
        if spec.causal {
            vec![Stmt::If {
                lhs: self.delta(),
                cmp: Cmp::Lt,
                value: self.plan.tq as i64,
                body: block,
            }]
        } else {
            block
        }
    }

    /// O / l, stored.
    fn task_end(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        vec![
            self.vec_un(UnFunc::Recip, &b.l, &b.l),
            self.on_o(BinFunc::Mul, col(&b.l)),
            Stmt::Signal(Chan::data(Vpu, Dma), 1),
            Stmt::Wait(Chan::data(Vpu, Dma), 1),
            rows_copy(
                false,
                row_at(&spec.out, self.loops.batch, &self.head, &self.q0),
                &spec.out,
                spec.d,
                at(&b.obuf),
                self.qt.clone(),
            ),
            Stmt::Signal(Chan::credit(Dma, Vpu), 1),
        ]
    }

    /// The causal triangle, then the task loops between the credit lanes'
    /// setup and drain.
    fn body(&self, task: Vec<Stmt>) -> Vec<Stmt> {
        let (spec, l, plan) = (self.spec, &self.loops, self.plan);
        let mut body = Vec::new();
        if let Some(tri) = &self.bufs.triangle {
            // Row r: 0 up to column r + TK − 1, −∞ after.
            body.extend(causal_triangle(
                tri,
                l.triangle_row,
                plan.tq,
                plan.window,
                plan.tk,
            ));
        }
        let group = spec.h / spec.hkv.max(1);
        let credits = [(Chan::credit(Vpu, Dma), 1), (Chan::credit(Dma, Vpu), 1)];
        body.extend(credited(
            &credits,
            vec![Stmt::For {
                var: l.batch,
                count: spec.b,
                body: vec![Stmt::For {
                    var: l.kv_head,
                    count: spec.hkv,
                    body: vec![Stmt::For {
                        var: l.head_in_group,
                        count: group,
                        body: vec![Stmt::For {
                            var: l.query_block,
                            count: plan.query_blocks,
                            body: task,
                        }],
                    }],
                }],
            }],
        ));
        body
    }
}
