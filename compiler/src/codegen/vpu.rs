//! VPU statements to `vpu.*` instructions.

use tessera_isa::{Instr, OnChip, OptReg, Reg};

use super::{flatten, CodegenError, Emitter};
use crate::kernel::{Mode, Opnd, VpuOp, VpuStmt};

impl Emitter<'_> {
    pub(super) fn opnd(&mut self, o: &Opnd) -> Result<(OnChip, Reg), CodegenError> {
        let addr = self.onchip(&o.addr)?;
        let stride = self.li(o.stride as i64)?;
        Ok((addr, stride))
    }

    /// The sizes of a VPU statement's block, in registers.
    fn block(&mut self, v: &VpuStmt) -> Result<(Reg, Reg), CodegenError> {
        Ok((self.ext_reg(&v.rows)?, self.ext_reg(&v.cols)?))
    }

    /// Emits one VPU statement. Registers load in the order the instruction
    /// lists its fields: destination, sources, then the block's sizes.
    pub(super) fn vpu(&mut self, v: &VpuStmt) -> Result<(), CodegenError> {
        let flat = flatten(v);
        let v = flat.as_ref().unwrap_or(v);
        let dst = self.onchip(&v.dst)?;
        let dstride = self.li(v.dstride as i64)?;
        match &v.op {
            VpuOp::Bin { func, a, b } => {
                let (ao, astride) = self.opnd(a)?;
                let (bo, bstride) = self.opnd(b)?;
                let (rows, cols) = self.block(v)?;
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
            VpuOp::BinS {
                func,
                a,
                scalar,
                order,
            } => {
                let (ao, astride) = self.opnd(a)?;
                let s = self.li(i64::from(scalar.to_bits()))?;
                let (rows, cols) = self.block(v)?;
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
            VpuOp::Un { func, a } => {
                let (ao, astride) = self.opnd(a)?;
                let (rows, cols) = self.block(v)?;
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
            VpuOp::Red { func, a, mode } => {
                let (ao, astride) = self.opnd(a)?;
                let (rows, cols) = self.block(v)?;
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
            VpuOp::Cvt {
                dtype,
                a,
                atype,
                astride,
            } => {
                let ao = self.onchip(a)?;
                let astride = self.li(*astride as i64)?;
                let (rows, cols) = self.block(v)?;
                self.emit(Instr::VpuCvt {
                    dst,
                    a: ao,
                    dtype: *dtype,
                    atype: *atype,
                    rows,
                    cols,
                    dstride,
                    astride,
                });
            }
            VpuOp::Fill { bits } => {
                let value = self.li(i64::from(*bits))?;
                let (rows, cols) = self.block(v)?;
                self.emit(Instr::VpuFill {
                    dst,
                    value,
                    rows,
                    cols,
                    dstride,
                });
            }
            VpuOp::Dequant { a, s, atype } => {
                let (ao, astride) = self.opnd(a)?;
                let so = self.onchip(&s.addr)?;
                let (rows, cols) = self.block(v)?;
                self.emit(Instr::VpuDequant {
                    dst,
                    a: ao,
                    s: so,
                    atype: *atype,
                    rows,
                    cols,
                    dstride,
                    astride,
                    sbcast: s.bcast,
                    zp: OptReg::NONE,
                });
            }
            VpuOp::Quant {
                a,
                s,
                dtype,
                by,
                zp,
            } => {
                let zp = if *zp == 0 {
                    OptReg::NONE
                } else {
                    OptReg(self.li(i64::from(*zp))?)
                };
                let (ao, astride) = self.opnd(a)?;
                let so = self.onchip(&s.addr)?;
                let (rows, cols) = self.block(v)?;
                self.emit(Instr::VpuQuant {
                    dst,
                    a: ao,
                    s: so,
                    dtype: *dtype,
                    rows,
                    cols,
                    dstride,
                    astride,
                    sbcast: s.bcast,
                    zp,
                    sop: *by,
                });
            }
            VpuOp::Trans { a, astride, dtype } => {
                let ao = self.onchip(a)?;
                let astride = self.li(*astride as i64)?;
                let (rows, cols) = self.block(v)?;
                self.emit(Instr::VpuTrans {
                    dst,
                    a: ao,
                    dtype: *dtype,
                    rows,
                    cols,
                    dstride,
                    astride,
                });
            }
        }
        Ok(())
    }
}
