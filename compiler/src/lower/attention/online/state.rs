//! The state of one online-softmax kernel being built: its buffers, loop
//! variables, the task's and block's extents, and the VPU operations on
//! scores, row vectors and O that every step uses.

use tessera_isa::{AccMode, Bcast, BinFunc, Mem, RedFunc, Target, UnFunc};

use crate::kernel::{Addr, Affine, Buffer, Ext, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt};
use crate::lower::alloc::{OnChip, Vars};
use crate::lower::attention::plan::OnlinePlan;
use crate::lower::attention::spec::AttentionSpec;
use crate::lower::LowerError;

/// The kernel's SPM and ACC buffers (one of each: the engines take turns).
pub(super) struct Buffers {
    pub(super) qstage: Buffer,
    pub(super) qbuf: Buffer,
    pub(super) kstage: Buffer,
    pub(super) vstage: Buffer,
    pub(super) kbuf: Buffer,
    pub(super) vbuf: Buffer,
    pub(super) mstage: Option<Buffer>,
    pub(super) scores: Buffer,
    pub(super) pbuf: Buffer,
    pub(super) obuf: Buffer,
    /// Running row maximum, its update, row sum, rescale factor, scratch.
    pub(super) m: Buffer,
    pub(super) m_new: Buffer,
    pub(super) l: Buffer,
    pub(super) alpha: Buffer,
    pub(super) tmp: Buffer,
    pub(super) triangle: Option<Buffer>,
    pub(super) sacc: Buffer,
    pub(super) pvacc: Buffer,
}

impl Buffers {
    pub(super) fn allocate(
        mem: &mut OnChip,
        spec: &AttentionSpec,
        plan: &OnlinePlan,
    ) -> Result<Buffers, LowerError> {
        let (d, tq, tk) = (spec.d, plan.tq, plan.tk);
        let e = spec.mxu.a_type().size();
        let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
        let qstage = mem.alloc("q_f32", Mem::Spm, tq * d * 4, 1)?;
        let qbuf = mem.alloc("q", Mem::Spm, tq * d * e, 1)?;
        // Staging in two slots: the DMA loads block j + 1 while the VPU
        // still works on block j.
        let kstage = mem.alloc("k_f32", Mem::Spm, tk * d * 4, 2)?;
        let vstage = mem.alloc("v_f32", Mem::Spm, tk * d * 4, 2)?;
        let kbuf = mem.alloc("k", Mem::Spm, tk * d * e, 1)?;
        let vbuf = mem.alloc("v", Mem::Spm, tk * d * e, 1)?;
        let mstage = match &spec.mask {
            Some(_) if mask_full => Some(mem.alloc("mask", Mem::Spm, tq * tk * 4, 2)?),
            Some(_) => Some(mem.alloc("mask_row", Mem::Spm, tk * 4, 2)?),
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
pub(super) struct Loops {
    pub(super) batch: Var,
    pub(super) kv_head: Var,
    /// Query head within the KV head's group.
    pub(super) head_in_group: Var,
    pub(super) query_block: Var,
    pub(super) key_block: Var,
    /// Chunks of D in Q·K_jᵀ.
    pub(super) score_depth: Var,
    /// Chunks of D in P·V_j.
    pub(super) out_cols: Var,
    /// Weight tiles of keys within a block.
    pub(super) key_tile: Var,
    /// The staging slot of the block (a rotator over 2).
    pub(super) stage_slot: Var,
    /// Rows of the causal triangle.
    pub(super) triangle_row: Var,
}

/// One online attention kernel being built.
pub(super) struct Online<'a> {
    pub(super) spec: &'a AttentionSpec,
    pub(super) target: &'a Target,
    pub(super) plan: &'a OnlinePlan,
    pub(super) loops: Loops,
    pub(super) bufs: Buffers,
    /// Bytes per MXU input element.
    pub(super) e: u64,
    /// The query head: kvh·group + hh.
    pub(super) head: Affine,
    /// First query row of the task, and how many it has (TQ or fewer).
    pub(super) q0: Affine,
    pub(super) qt: Ext,
    /// First key of the block, and how many it has (TK or fewer).
    pub(super) j0: Affine,
    pub(super) kt: Ext,
}

pub(super) fn full(addr: Addr, stride: u64) -> Opnd {
    Opnd {
        addr,
        stride,
        bcast: Bcast::Full,
    }
}

pub(super) fn at(b: &Buffer) -> Addr {
    b.at(&Affine::c(0), 0)
}

impl Online<'_> {
    /// A staging buffer's slot of the current block.
    pub(super) fn staged(&self, b: &Buffer) -> Addr {
        b.at(&Affine::var(0, self.loops.stage_slot, 1), 0)
    }
}

pub(super) fn col(b: &Buffer) -> Opnd {
    Opnd {
        addr: at(b),
        stride: 4,
        bcast: Bcast::Col,
    }
}

pub(super) fn fill(dst: Addr, stride: u64, bits: u32, rows: Ext, cols: Ext) -> Stmt {
    Stmt::Vpu(VpuStmt {
        op: VpuOp::Fill { bits },
        dst,
        dstride: stride,
        rows,
        cols,
    })
}

impl<'a> Online<'a> {
    pub(super) fn new(
        spec: &'a AttentionSpec,
        target: &'a Target,
        plan: &'a OnlinePlan,
        bufs: Buffers,
    ) -> Online<'a> {
        let mut vars = Vars::default();
        let [batch, kv_head, head_in_group, query_block, key_block, score_depth, out_cols, triangle_row, key_tile, stage_slot] =
            [(); 10].map(|()| vars.fresh());
        let group = spec.h / spec.hkv.max(1);
        let q0 = Affine::var(0, query_block, plan.tq as i64);
        let j0 = Affine::var(0, key_block, plan.tk as i64);
        Online {
            spec,
            target,
            plan,
            bufs,
            e: spec.mxu.a_type().size(),
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
                key_tile,
                stage_slot,
            },
        }
    }

    /// An operation on the row vectors (the block's values as one row).
    pub(super) fn vec_bin(&self, func: BinFunc, dst: &Buffer, a: &Buffer, b: &Buffer) -> Stmt {
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

    pub(super) fn vec_un(&self, func: UnFunc, dst: &Buffer, a: &Buffer) -> Stmt {
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
    pub(super) fn on_scores(&self, op: VpuOp) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op,
            dst: at(&self.bufs.scores),
            dstride: self.plan.tk * 4,
            rows: self.qt.clone(),
            cols: self.kt.clone(),
        })
    }

    pub(super) fn scores_bin(&self, func: BinFunc, b: Opnd) -> Stmt {
        self.on_scores(VpuOp::Bin {
            func,
            a: full(at(&self.bufs.scores), self.plan.tk * 4),
            b,
        })
    }

    /// A reduction of each score row into `row_tmp`.
    pub(super) fn row_red(&self, func: RedFunc) -> Stmt {
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
    pub(super) fn on_o(&self, func: BinFunc, b: Opnd) -> Stmt {
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

    /// δ = j0 − q0 − (Sk − Sq): key j0 + c is hidden from query q0 + i
    /// when c + δ > i.
    pub(super) fn delta(&self) -> Affine {
        let (sq, sk) = (self.spec.sq, self.spec.sk);
        self.j0
            .clone()
            .plus(self.loops.query_block, -(self.plan.tq as i64))
            .plus_affine(&Affine::c(-(sk as i64 - sq as i64)))
    }
}
