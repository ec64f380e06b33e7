//! VPU statements to `vpu.*` instructions.

use tessera_isa::{Instr, OnChip, Reg};

use super::{flatten, CodegenError, Emitter};
use crate::kernel::{Mode, Opnd, VpuStmt};

impl Emitter<'_> {
    pub(super) fn opnd(&mut self, o: &Opnd) -> Result<(OnChip, Reg), CodegenError> {
        let addr = self.onchip(&o.addr)?;
        let stride = self.li(o.stride as i64)?;
        Ok((addr, stride))
    }

    pub(super) fn vpu(&mut self, v: &VpuStmt) -> Result<(), CodegenError> {
        let flat = flatten(v);
        let v = flat.as_ref().unwrap_or(v);
        match v {
            VpuStmt::Bin {
                func,
                dst,
                dstride,
                a,
                b,
                rows,
                cols,
            } => {
                let dst = self.onchip(dst)?;
                let dstride = self.li(*dstride as i64)?;
                let (ao, astride) = self.opnd(a)?;
                let (bo, bstride) = self.opnd(b)?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuBin {
                    func: *func,
                    dst,
                    a: ao,
                    b: bo,
                    rows,
                    cols,
                    dstride,
                    astride,
                    bstride,
                    abcast: a.bcast,
                    bbcast: b.bcast,
                });
            }
            VpuStmt::BinS {
                func,
                dst,
                dstride,
                a,
                scalar,
                order,
                rows,
                cols,
            } => {
                let dst = self.onchip(dst)?;
                let dstride = self.li(*dstride as i64)?;
                let (ao, astride) = self.opnd(a)?;
                let s = self.li(i64::from(scalar.to_bits()))?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuBinScalar {
                    func: *func,
                    dst,
                    a: ao,
                    s,
                    rows,
                    cols,
                    dstride,
                    astride,
                    abcast: a.bcast,
                    order: *order,
                });
            }
            VpuStmt::Un {
                func,
                dst,
                dstride,
                a,
                rows,
                cols,
            } => {
                let dst = self.onchip(dst)?;
                let dstride = self.li(*dstride as i64)?;
                let (ao, astride) = self.opnd(a)?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuUn {
                    func: *func,
                    dst,
                    a: ao,
                    rows,
                    cols,
                    dstride,
                    astride,
                    abcast: a.bcast,
                });
            }
            VpuStmt::Red {
                func,
                dst,
                dstride,
                a,
                rows,
                cols,
                mode,
            } => {
                let dst = self.onchip(dst)?;
                let dstride = self.li(*dstride as i64)?;
                let (ao, astride) = self.opnd(a)?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                let red = |mode| Instr::VpuRed {
                    func: *func,
                    dst,
                    a: ao,
                    rows,
                    cols,
                    dstride,
                    astride,
                    mode,
                };
                match mode {
                    Mode::Fixed(m) => self.emit(red(*m)),
                    Mode::AccAfterFirst(v) => self.set_then_acc(*v, red)?,
                }
            }
            VpuStmt::Cvt {
                dst,
                dtype,
                dstride,
                a,
                atype,
                astride,
                rows,
                cols,
            } => {
                let d = self.onchip(dst)?;
                let ds = self.li(*dstride as i64)?;
                let ao = self.onchip(a)?;
                let as_ = self.li(*astride as i64)?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuCvt {
                    dst: d,
                    a: ao,
                    dtype: *dtype,
                    atype: *atype,
                    rows,
                    cols,
                    dstride: ds,
                    astride: as_,
                });
            }
            VpuStmt::Fill {
                dst,
                dstride,
                bits,
                rows,
                cols,
            } => {
                let d = self.onchip(dst)?;
                let ds = self.li(*dstride as i64)?;
                let value = self.li(i64::from(*bits))?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuFill {
                    dst: d,
                    value,
                    rows,
                    cols,
                    dstride: ds,
                });
            }
            VpuStmt::Trans {
                dst,
                dstride,
                a,
                astride,
                dtype,
                rows,
                cols,
            } => {
                let d = self.onchip(dst)?;
                let ds = self.li(*dstride as i64)?;
                let ao = self.onchip(a)?;
                let as_ = self.li(*astride as i64)?;
                let rows = self.ext_reg(rows)?;
                let cols = self.ext_reg(cols)?;
                self.emit(Instr::VpuTrans {
                    dst: d,
                    a: ao,
                    dtype: *dtype,
                    rows,
                    cols,
                    dstride: ds,
                    astride: as_,
                });
            }
        }
        Ok(())
    }
}
