//! Functional execution of VPU instructions, with their cost.

use tessera_isa::cost;

use crate::exec::{Access, RawFault};
use crate::ops::Op;
use crate::vpu;

use super::Machine;

impl Machine<'_> {
    /// Executes a VPU instruction; returns accesses and cycles.
    pub(super) fn vector(&mut self, op: &Op) -> Result<(Vec<Access>, u64), RawFault> {
        let t = self.target;
        let lanes = t.vpu_lanes as usize;
        let m = &mut *self.mems;
        Ok(match *op {
            Op::Bin {
                func,
                dst,
                a,
                b,
                shape,
                dstride,
                astride,
                bstride,
                abcast,
                bbcast,
            } => (
                vpu::bin(
                    m,
                    func,
                    dst,
                    a,
                    b,
                    shape,
                    (dstride, astride, bstride),
                    (abcast, bbcast),
                )?,
                cost::vpu_elementwise(t, cost::bin_class(func), shape.rows, shape.cols),
            ),
            Op::BinS {
                func,
                dst,
                a,
                s,
                shape,
                dstride,
                astride,
                abcast,
                order,
            } => (
                vpu::bin_scalar(m, func, dst, a, s, shape, (dstride, astride), abcast, order)?,
                cost::vpu_elementwise(t, cost::bin_class(func), shape.rows, shape.cols),
            ),
            Op::Un {
                func,
                dst,
                a,
                shape,
                dstride,
                astride,
                abcast,
            } => (
                vpu::un(m, func, dst, a, shape, (dstride, astride), abcast)?,
                cost::vpu_elementwise(t, cost::un_class(func), shape.rows, shape.cols),
            ),
            Op::Red {
                func,
                dst,
                a,
                shape,
                dstride,
                astride,
                mode,
            } => (
                vpu::red(m, lanes, func, dst, a, shape, (dstride, astride), mode)?,
                cost::vpu_reduce(t, shape.rows, shape.cols),
            ),
            Op::Cvt {
                dst,
                a,
                dtype,
                atype,
                shape,
                dstride,
                astride,
            } => (
                vpu::cvt(m, dst, a, (dtype, atype), shape, (dstride, astride))?,
                cost::vpu_elementwise(t, cost::VpuClass::Simple, shape.rows, shape.cols),
            ),
            Op::Fill {
                dst,
                bits,
                shape,
                dstride,
            } => (
                vpu::fill(m, dst, bits, shape, dstride)?,
                cost::vpu_elementwise(t, cost::VpuClass::Simple, shape.rows, shape.cols),
            ),
            Op::Trans {
                dst,
                a,
                dtype,
                shape,
                dstride,
                astride,
            } => (
                vpu::trans(m, dst, a, dtype, shape, (dstride, astride))?,
                cost::vpu_elementwise(t, cost::VpuClass::Simple, shape.rows, shape.cols),
            ),
            Op::Quant {
                dequant,
                dst,
                a,
                s,
                qtype,
                shape,
                dstride,
                astride,
                sbcast,
                zp,
                sop,
            } => {
                let strides = (dstride, astride);
                if dequant {
                    (
                        vpu::dequant(m, dst, a, s, qtype, shape, strides, sbcast, zp)?,
                        cost::vpu_elementwise(t, cost::VpuClass::Simple, shape.rows, shape.cols),
                    )
                } else {
                    // Dividing by the scale runs at the special-function
                    // rate, multiplying by its reciprocal at the simple one.
                    let class = match sop {
                        tessera_isa::ScaleOp::Div => cost::VpuClass::Special,
                        tessera_isa::ScaleOp::Mul => cost::VpuClass::Simple,
                    };
                    (
                        vpu::quant(m, dst, a, s, qtype, shape, strides, (sbcast, sop), zp)?,
                        cost::vpu_elementwise(t, class, shape.rows, shape.cols),
                    )
                }
            }
            // Queue control (semaphores, `dma.dim`): no data, fixed cost.
            Op::Wait { .. } | Op::Signal { .. } | Op::DmaDim => {
                (Vec::new(), cost::QUEUE_CONTROL_CYCLES)
            }
            // The DMA and MXU operations are executed by their engines'
            // arms in `sched/mod.rs` before this is reached.
            Op::Copy { .. }
            | Op::Gather { .. }
            | Op::Scatter { .. }
            | Op::LoadW { .. }
            | Op::Matmul { .. } => unreachable!("not a VPU operation: {op:?}"),
        })
    }
}
