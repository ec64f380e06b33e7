//! The state of one whole-row kernel being built: its buffers, loop
//! variables, and the addresses and operands every phase reads.

use tessera_isa::{Bcast, Mem, Target};

use crate::kernel::{Addr, Affine, Buffer, Opnd, Var};
use crate::lower::alloc::{OnChip, Vars};
use crate::lower::attention::plan::WholeRowPlan;
use crate::lower::attention::spec::{AttentionSpec, Tensor4};
use crate::lower::attention::steps::row_at;
use crate::lower::LowerError;

/// The kernel's SPM and ACC buffers.
pub(super) struct Buffers {
    pub(super) kstage: Buffer,
    pub(super) vstage: Buffer,
    pub(super) kbuf: Buffer,
    pub(super) vbuf: Buffer,
    pub(super) qstage: Buffer,
    pub(super) qbuf: Buffer,
    pub(super) mstage: Option<Buffer>,
    pub(super) scores: Buffer,
    pub(super) causal_mask: Option<Buffer>,
    pub(super) zero_row: Option<Buffer>,
    pub(super) stat: Buffer,
    pub(super) pbuf: Buffer,
    pub(super) oout: Buffer,
    pub(super) sacc: Buffer,
    pub(super) oacc: Buffer,
}

impl Buffers {
    pub(super) fn allocate(
        mem: &mut OnChip,
        spec: &AttentionSpec,
        plan: &WholeRowPlan,
    ) -> Result<Buffers, LowerError> {
        let (sq, sk, d, tq) = (spec.sq, spec.sk, spec.d, plan.tq);
        let e = spec.mxu.a_type().size();
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
pub(super) struct Loops {
    pub(super) batch: Var,
    pub(super) kv_head: Var,
    /// The loop around the pipelined one.
    pub(super) outer: Var,
    /// The pipelined loop over tasks.
    pub(super) task: Var,
    /// SPM slot (mod 2) of the current task.
    pub(super) slot: Var,
    /// Query head within the group (`outer` or `task`).
    pub(super) head_in_group: Var,
    /// Query block (the other of `outer` and `task`).
    pub(super) query_block: Var,
    /// ACC slots (mod 3) of tasks t, t + 1 and t − 1.
    pub(super) acc: Var,
    pub(super) acc_next: Var,
    pub(super) acc_prev: Var,
    /// Chunks of keys and of D in Q·Kᵀ.
    pub(super) score_keys: Var,
    pub(super) score_depth: Var,
    /// Chunks of D and of keys in P·V.
    pub(super) out_cols: Var,
    pub(super) out_depth: Var,
    /// Rows of the causal triangle.
    pub(super) triangle_row: Var,
}

impl Loops {
    pub(super) fn new(plan: &WholeRowPlan) -> Loops {
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

/// One whole-row attention kernel being built.
pub(super) struct WholeRow<'a> {
    pub(super) spec: &'a AttentionSpec,
    pub(super) target: &'a Target,
    pub(super) plan: &'a WholeRowPlan,
    pub(super) loops: Loops,
    pub(super) bufs: Buffers,
    /// Bytes per MXU input element.
    pub(super) e: u64,
    /// The mask has a row per query.
    pub(super) mask_full: bool,
}

pub(super) fn full(addr: Addr, stride: u64) -> Opnd {
    Opnd {
        addr,
        stride,
        bcast: Bcast::Full,
    }
}

impl WholeRow<'_> {
    /// The task's SPM slot.
    pub(super) fn slot(&self) -> Affine {
        Affine::var(0, self.loops.slot, 1)
    }

    /// The slot of K and V: the task's when per task, else the only one.
    pub(super) fn kv_slot(&self) -> Affine {
        if self.plan.kv_per_task {
            self.slot()
        } else {
            Affine::c(0)
        }
    }

    /// The task's ACC slot.
    pub(super) fn acc_slot(&self) -> Affine {
        Affine::var(0, self.loops.acc, 1)
    }

    /// h = kvh·group + hh.
    pub(super) fn head(&self) -> Affine {
        let group = self.spec.h / self.spec.hkv.max(1);
        Affine::var(0, self.loops.kv_head, group as i64).plus(self.loops.head_in_group, 1)
    }

    /// DRAM address of the task's first query row in `t`.
    pub(super) fn q_rows(&self, t: &Tensor4) -> Affine {
        let first = Affine::var(0, self.loops.query_block, self.plan.tq as i64);
        row_at(t, self.loops.batch, &self.head(), &first)
    }

    /// DRAM address of the K or V rows the task reads.
    pub(super) fn kv_base(&self, t: &Tensor4) -> Affine {
        let head = if self.plan.kv_per_task {
            self.loops.head_in_group
        } else {
            self.loops.kv_head
        };
        row_at(t, self.loops.batch, &Affine::var(0, head, 1), &Affine::c(0))
    }

    /// The row statistics of the task (one per query row) as a column.
    pub(super) fn stat_col(&self) -> Opnd {
        Opnd {
            addr: self.bufs.stat.at(&self.slot(), 0),
            stride: 4,
            bcast: Bcast::Col,
        }
    }
}
