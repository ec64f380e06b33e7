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
//!
//! `state.rs` holds the buffers, loops and addresses; `dma.rs` and
//! `compute.rs` build a task's steps; this file assembles them into the
//! pipeline and the kernel.

use tessera_isa::{Engine, Target};

use crate::kernel::{Affine, Chan, Cmp, Ext, Kernel, Stmt, Var, VpuOp, VpuStmt};
use crate::lower::alloc::OnChip;
use crate::lower::attention::plan::WholeRowPlan;
use crate::lower::attention::spec::AttentionSpec;
use crate::lower::attention::steps::causal_triangle;
use crate::lower::template::credited;
use crate::lower::LowerError;

use Engine::{Dma, Mxu, Vpu};

mod compute;
mod dma;
mod state;

use state::{Buffers, Loops, WholeRow};

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
        e: spec.mxu.a_type().size(),
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

/// The statements of task `t` (loop variable `task`, SPM slot `slot`, ACC
/// slot `acc`), shifted to other tasks by substitution.
pub(super) struct TaskSteps {
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

impl WholeRow<'_> {
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
