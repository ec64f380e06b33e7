//! Kernel IR statements to instructions: loops, synchronization, MXU and
//! DMA statements (VPU statements are in `vpu.rs`).

use tessera_isa::{
    AccMode, BranchTarget, DramAddr, Engine, Imm32, Imm64, Instr, Mem, OptReg, Reg, Sem, Val,
    ZpSrc, U16,
};

use super::{CodegenError, Emitter, LOOP_BASE, MAX_DEPTH};
use crate::kernel::{Addr, Cmp, DmaDim, Ext, Mode, Stmt, Var, WeightQuant, ZeroPoint};

impl<'t> Emitter<'t> {
    pub(super) fn stmts(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        for s in body {
            self.stmt(s)?;
            self.free_temps();
        }
        Ok(())
    }

    pub(super) fn stmt(&mut self, s: &Stmt) -> Result<(), CodegenError> {
        match s {
            Stmt::For { var, count, body } => self.for_loop(*var, *count, body)?,
            Stmt::Copy {
                dst,
                src,
                run,
                dims,
            } => self.copy(dst, src, run, dims)?,
            Stmt::Gather {
                dst,
                table,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => {
                let dst = self.spm(dst)?;
                let (tb, to) = self.base_off(table, 32)?;
                let table =
                    DramAddr::new(Mem::Dram, tb, to).ok_or_else(|| self.err("bad table"))?;
                let idx = self.spm(idx)?;
                let rows = self.ext_reg(rows)?;
                let bytes = self.li(*bytes as i64)?;
                let limit = self.li(*limit as i64)?;
                self.emit(Instr::DmaGather {
                    dst,
                    table,
                    idx,
                    rows,
                    bytes,
                    limit,
                    itype: *itype,
                });
            }
            Stmt::Scatter {
                table,
                src,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => {
                let (tb, to) = self.base_off(table, 32)?;
                let table =
                    DramAddr::new(Mem::Dram, tb, to).ok_or_else(|| self.err("bad table"))?;
                let src = self.spm(src)?;
                let idx = self.spm(idx)?;
                let rows = self.ext_reg(rows)?;
                let bytes = self.li(*bytes as i64)?;
                let limit = self.li(*limit as i64)?;
                self.emit(Instr::DmaScatter {
                    table,
                    src,
                    idx,
                    rows,
                    bytes,
                    limit,
                    itype: *itype,
                });
            }
            Stmt::LoadW {
                src,
                k,
                n,
                stride,
                dtype,
                trans,
                quant,
            } => {
                let src = self.spm(src)?;
                let k = self.ext_val(k)?;
                let n = self.ext_val(n)?;
                let stride = self.const_val(*stride)?;
                let (mut azp, mut wzp) = (OptReg::NONE, OptReg::NONE);
                let (mut azsrc, mut wzsrc) = (ZpSrc::Reg, ZpSrc::Reg);
                let (mut scales, mut sstride) = (OptReg::NONE, OptReg::NONE);
                match quant {
                    Some(WeightQuant::ZeroPoints(a, w)) => {
                        // A value, or an SPM address with `*zsrc=spm`.
                        let mut register = |z: &ZeroPoint| match z {
                            ZeroPoint::Const(c) => Ok((self.li(i64::from(*c))?, ZpSrc::Reg)),
                            ZeroPoint::At(at) => {
                                Ok::<_, CodegenError>((self.affine_reg(at)?, ZpSrc::Spm))
                            }
                        };
                        let (a, a_src) = register(a)?;
                        let (w, w_src) = register(w)?;
                        (azp, wzp, azsrc, wzsrc) = (OptReg(a), OptReg(w), a_src, w_src);
                    }
                    Some(WeightQuant::Scales { at, a_stride }) => {
                        scales = OptReg(self.affine_reg(at)?);
                        sstride = OptReg(self.li(*a_stride as i64)?);
                    }
                    None => {}
                }
                self.emit(Instr::MxuLoadW {
                    src,
                    k,
                    n,
                    stride,
                    dtype: *dtype,
                    trans: *trans,
                    wzp,
                    azp,
                    scales,
                    sstride,
                    azsrc,
                    wzsrc,
                });
            }
            Stmt::Matmul {
                dst,
                a,
                m,
                astride,
                dstride,
                mode,
                ascales,
            } => {
                let ascales = match ascales {
                    Some(at) => OptReg(self.affine_reg(at)?),
                    None => OptReg::NONE,
                };
                let dst = self.acc(dst)?;
                let a = self.spm(a)?;
                let m = self.ext_val(m)?;
                let astride = self.const_val(*astride)?;
                let dstride = self.const_val(*dstride)?;
                let mm = |mode| Instr::MxuMatmul {
                    dst,
                    a,
                    m,
                    astride,
                    dstride,
                    mode,
                    ascales,
                };
                match mode {
                    Mode::Fixed(mode) => self.emit(mm(*mode)),
                    Mode::AccAfterFirst(v) => self.set_then_acc(*v, mm)?,
                }
            }
            Stmt::Vpu(v) => self.vpu(v)?,
            Stmt::Signal(chan, n) => {
                let (sem, n) = (Sem(chan.semaphore()), U16(*n));
                self.emit(match chan.producer() {
                    Engine::Dma => Instr::DmaSignal { sem, n },
                    Engine::Mxu => Instr::MxuSignal { sem, n },
                    _ => Instr::VpuSignal { sem, n },
                });
            }
            Stmt::Wait(chan, n) => {
                let (sem, n) = (Sem(chan.semaphore()), U16(*n));
                self.emit(match chan.consumer() {
                    Engine::Dma => Instr::DmaWait { sem, n },
                    Engine::Mxu => Instr::MxuWait { sem, n },
                    _ => Instr::VpuWait { sem, n },
                });
            }
            Stmt::If {
                lhs,
                cmp,
                value,
                body,
            } => {
                let r = self.affine_reg(lhs)?;
                let v = self.li(*value)?;
                let skip = self.new_label();
                // Branch around the body when the condition fails.
                let skip_if: fn(Reg, Reg, BranchTarget) -> Instr = match cmp {
                    Cmp::Eq => |rs1, rs2, target| Instr::Bne { rs1, rs2, target },
                    Cmp::Ne => |rs1, rs2, target| Instr::Beq { rs1, rs2, target },
                    Cmp::Lt => |rs1, rs2, target| Instr::Bge { rs1, rs2, target },
                    Cmp::Ge => |rs1, rs2, target| Instr::Blt { rs1, rs2, target },
                };
                self.branch(|t| skip_if(r, v, t), skip);
                self.free_temps();
                self.stmts(body)?;
                self.place(skip);
            }
            Stmt::Advance(var) => {
                let (r, modulus) = *self
                    .rotators
                    .get(var)
                    .ok_or_else(|| self.err(format!("v{} is not a rotating variable", var.0)))?;
                self.emit(Instr::Addi {
                    rd: r,
                    rs1: r,
                    imm: Imm32(1),
                });
                let m = self.li(modulus as i64)?;
                self.emit(Instr::Remu {
                    rd: r,
                    rs1: r,
                    rs2: m,
                });
            }
            Stmt::Note(_) => {}
        }
        Ok(())
    }

    /// `make(set)` on the first iteration of the loop over `var`,
    /// `make(acc)` after: a branch on the loop register.
    pub(super) fn set_then_acc(
        &mut self,
        var: Var,
        make: impl Fn(AccMode) -> Instr,
    ) -> Result<(), CodegenError> {
        let r = self.var_reg(var)?;
        let (acc_label, done) = (self.new_label(), self.new_label());
        self.branch(
            |target| Instr::Bne {
                rs1: r,
                rs2: Reg::ZERO,
                target,
            },
            acc_label,
        );
        self.emit(make(AccMode::Set));
        self.branch(|target| Instr::Jmp { target }, done);
        self.place(acc_label);
        self.emit(make(AccMode::Acc));
        self.place(done);
        Ok(())
    }

    pub(super) fn for_loop(
        &mut self,
        var: Var,
        count: u64,
        body: &[Stmt],
    ) -> Result<(), CodegenError> {
        if count == 0 {
            return Ok(());
        }
        if self.depth >= MAX_DEPTH {
            return Err(self.err(format!("loops nest deeper than {MAX_DEPTH}")));
        }
        let reg = Reg(LOOP_BASE + self.depth as u8);
        if self.loop_regs.insert(var, reg).is_some() {
            return Err(self.err(format!("variable v{} bound twice", var.0)));
        }
        self.depth += 1;
        self.emit(Instr::Li {
            rd: reg,
            imm: Imm64(0),
        });
        let top = self.new_label();
        self.place(top);
        self.stmts(body)?;
        self.emit(Instr::Addi {
            rd: reg,
            rs1: reg,
            imm: Imm32(1),
        });
        let limit = self.li(count as i64)?;
        self.branch(
            |t| Instr::Blt {
                rs1: reg,
                rs2: limit,
                target: t,
            },
            top,
        );
        self.free_temps();
        self.depth -= 1;
        self.loop_regs.remove(&var);
        // After the loop the dims are whatever the last iteration left.
        self.dma_dims = [None; 3];
        Ok(())
    }

    pub(super) fn copy(
        &mut self,
        dst: &Addr,
        src: &Addr,
        run: &Ext,
        dims: &[DmaDim],
    ) -> Result<(), CodegenError> {
        if dims.len() > 3 {
            return Err(self.err("a DMA copy has at most 3 outer dimensions"));
        }
        for d in 0..3 {
            let (count, sstride, dstride) = match dims.get(d) {
                Some(dim) => {
                    let ss = i32::try_from(dim.sstride)
                        .map_err(|_| self.err("DMA source stride beyond 32 bits"))?;
                    let ds = i32::try_from(dim.dstride)
                        .map_err(|_| self.err("DMA destination stride beyond 32 bits"))?;
                    (self.ext_val(&dim.count)?, ss, ds)
                }
                None => (Val::imm(1), 0, 0),
            };
            let known =
                count.reg == Reg::ZERO && self.dma_dims[d] == Some((count, sstride, dstride));
            if !known {
                let dim = [
                    tessera_isa::DmaDim::D1,
                    tessera_isa::DmaDim::D2,
                    tessera_isa::DmaDim::D3,
                ][d];
                self.emit(Instr::DmaDim {
                    dim,
                    count,
                    sstride: Imm32(sstride),
                    dstride: Imm32(dstride),
                });
                self.dma_dims[d] = (count.reg == Reg::ZERO).then_some((count, sstride, dstride));
            }
        }
        let bytes = self.ext_val(run)?;
        let dst = self.dma_addr(dst)?;
        let src = self.dma_addr(src)?;
        self.emit(Instr::DmaCopy { dst, src, bytes });
        Ok(())
    }
}
