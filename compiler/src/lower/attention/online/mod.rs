//! Attention with an online softmax, for sequences whose score rows or K
//! and V do not fit on chip (the kernel of `whole_row/` keeps whole score
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
//!
//! `state.rs` holds the buffers, loops and VPU operations; `compute.rs`
//! builds a key block's products and softmax step; this file builds the
//! task around them and the kernel.

use tessera_isa::{BinFunc, Engine, Mem, Target, UnFunc};

use crate::kernel::{Addr, Affine, Chan, Cmp, DmaDim, Ext, Kernel, Stmt};
use crate::lower::alloc::OnChip;
use crate::lower::attention::plan::OnlinePlan;
use crate::lower::attention::spec::AttentionSpec;
use crate::lower::attention::steps::{causal_triangle, row_at, rows_copy, times, to_mxu_type};
use crate::lower::template::credited;
use crate::lower::LowerError;

use Engine::{Dma, Mxu, Vpu};

mod compute;
mod state;

use state::{at, col, fill, full, Buffers, Online};

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
        rotators: vec![(kernel.loops.stage_slot, 2)],
        macs: spec.macs(),
        compulsory_dram_bytes: spec.compulsory_dram_bytes(),
    })
}

impl Online<'_> {
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
                self.staged(&b.kstage),
                self.kt.clone(),
            ),
            rows_copy(
                true,
                row_at(&spec.v, l.batch, &kv_head, &self.j0),
                &spec.v,
                d,
                self.staged(&b.vstage),
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
                dst: self.staged(ms),
                src: Addr::new(Mem::Dram, src),
                run,
                dims,
            });
        }
        loads.push(Stmt::Signal(Chan::data(Dma, Vpu), 1));
        loads
    }

    /// One key block: loads, conversion, both products and the softmax
    /// step; causal attention skips blocks every row of the query block is
    /// past (δ ≥ TQ).
    fn key_block(&self) -> Vec<Stmt> {
        let (spec, b) = (self.spec, &self.bufs);
        let mut block = self.block_loads();
        block.extend([
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
            to_mxu_type(
                spec,
                at(&b.kbuf),
                self.staged(&b.kstage),
                self.kt.clone(),
                spec.d,
            ),
            to_mxu_type(
                spec,
                at(&b.vbuf),
                self.staged(&b.vstage),
                self.kt.clone(),
                spec.d,
            ),
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
            Stmt::Advance(self.loops.stage_slot),
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
        // Two staging credits: the slots of K, V and the mask (Q's single
        // buffer is loaded once per task, and converted before the task's
        // first block is loaded into a slot it could share).
        let credits = [(Chan::credit(Vpu, Dma), 2), (Chan::credit(Dma, Vpu), 1)];
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
