//! The DMA steps of the whole-row kernel: K and V per KV group, a task's
//! Q, K, V and mask rows, and its output.

use tessera_isa::{Engine, Mem};

use crate::kernel::{Addr, Affine, Chan, DmaDim, Ext, Stmt};
use crate::lower::attention::steps::{rows_copy, times, to_mxu_type};

use Engine::{Dma, Mxu, Vpu};

use super::state::WholeRow;

impl WholeRow<'_> {
    /// K and V once per KV head (nothing when they are per task).
    pub(super) fn group_loads(&self) -> Vec<Stmt> {
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

    pub(super) fn task_loads(&self) -> Vec<Stmt> {
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

    pub(super) fn store(&self) -> Vec<Stmt> {
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
}
