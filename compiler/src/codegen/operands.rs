//! Materializing operands: affine expressions, extents, immediates and
//! on-chip/DMA addresses into registers and instruction fields, folding
//! constant parts into immediates.

use tessera_isa::{AccAddr, DmaAddr, Imm32, Instr, Mem, OnChip, Reg, SpmAddr, Val};

use super::{fits, CodegenError, Emitter};
use crate::kernel::{Addr, Affine, Ext};

impl<'t> Emitter<'t> {
    /// The variable part of an affine expression in a register (r0 if none).
    pub(super) fn terms_reg(&mut self, a: &Affine) -> Result<Reg, CodegenError> {
        let mut acc: Option<Reg> = None;
        for &(v, k) in &a.terms {
            let r = self.var_reg(v)?;
            let term = if k == 1 {
                r
            } else {
                let t = self.temp()?;
                if fits(k, 32) {
                    self.emit(Instr::Muli {
                        rd: t,
                        rs1: r,
                        imm: Imm32(k as i32),
                    });
                } else {
                    let kr = self.li(k)?;
                    self.emit(Instr::Mul {
                        rd: t,
                        rs1: r,
                        rs2: kr,
                    });
                }
                t
            };
            acc = Some(match acc {
                None => term,
                Some(prev) => {
                    let t = self.temp()?;
                    self.emit(Instr::Add {
                        rd: t,
                        rs1: prev,
                        rs2: term,
                    });
                    t
                }
            });
        }
        Ok(acc.unwrap_or(Reg::ZERO))
    }

    /// A register holding the whole expression.
    pub(super) fn affine_reg(&mut self, a: &Affine) -> Result<Reg, CodegenError> {
        let base = self.terms_reg(a)?;
        if a.constant == 0 {
            return Ok(base);
        }
        if base == Reg::ZERO {
            return self.li(a.constant);
        }
        let t = self.temp()?;
        if fits(a.constant, 32) {
            self.emit(Instr::Addi {
                rd: t,
                rs1: base,
                imm: Imm32(a.constant as i32),
            });
        } else {
            let c = self.li(a.constant)?;
            self.emit(Instr::Add {
                rd: t,
                rs1: base,
                rs2: c,
            });
        }
        Ok(t)
    }

    /// Base register and immediate offset for an address whose immediate
    /// field has `bits` bits.
    pub(super) fn base_off(&mut self, a: &Affine, bits: u32) -> Result<(Reg, i32), CodegenError> {
        if fits(a.constant, bits) {
            Ok((self.terms_reg(a)?, a.constant as i32))
        } else {
            Ok((self.affine_reg(a)?, 0))
        }
    }

    /// A size in a register.
    pub(super) fn ext_reg(&mut self, e: &Ext) -> Result<Reg, CodegenError> {
        match e {
            Ext::Const(n) => self.li(*n as i64),
            Ext::Tail { tile, limit, start } => {
                let s = self.affine_reg(start)?;
                let t = self.temp()?;
                let l = self.li(*limit)?;
                self.emit(Instr::Sub {
                    rd: t,
                    rs1: l,
                    rs2: s,
                });
                let tile = self.imm32(*tile)?;
                self.emit(Instr::Mini {
                    rd: t,
                    rs1: t,
                    imm: tile,
                });
                self.emit(Instr::Maxi {
                    rd: t,
                    rs1: t,
                    imm: Imm32(0),
                });
                Ok(t)
            }
            Ext::Scaled(inner, k) => {
                let r = self.ext_reg(inner)?;
                let t = self.temp()?;
                let k = self.imm32(*k)?;
                self.emit(Instr::Muli {
                    rd: t,
                    rs1: r,
                    imm: k,
                });
                Ok(t)
            }
        }
    }

    /// A tile size or scale as a 32-bit immediate (kernels keep these small;
    /// a larger one is a lowering bug, not something to truncate).
    pub(super) fn imm32(&self, n: u64) -> Result<Imm32, CodegenError> {
        i32::try_from(n)
            .map(Imm32)
            .map_err(|_| self.err(format!("size {n} does not fit a 32-bit immediate")))
    }

    /// A size as a `Val` (register + 16-bit immediate).
    pub(super) fn ext_val(&mut self, e: &Ext) -> Result<Val, CodegenError> {
        match e {
            Ext::Const(n) if *n <= 65535 => Ok(Val::imm(*n as u16)),
            other => Ok(Val::reg(self.ext_reg(other)?)),
        }
    }

    /// A constant as a `Val`.
    pub(super) fn const_val(&mut self, n: u64) -> Result<Val, CodegenError> {
        self.ext_val(&Ext::Const(n))
    }

    pub(super) fn onchip(&mut self, a: &Addr) -> Result<OnChip, CodegenError> {
        let (base, off) = self.base_off(&a.at, 20)?;
        OnChip::new(a.mem, base, off)
            .ok_or_else(|| self.err(format!("{} is not an on-chip memory", a.mem)))
    }

    pub(super) fn spm(&mut self, a: &Affine) -> Result<SpmAddr, CodegenError> {
        let (base, off) = self.base_off(a, 20)?;
        SpmAddr::new(Mem::Spm, base, off).ok_or_else(|| self.err("bad SPM operand"))
    }

    pub(super) fn acc(&mut self, a: &Affine) -> Result<AccAddr, CodegenError> {
        let (base, off) = self.base_off(a, 20)?;
        AccAddr::new(Mem::Acc, base, off).ok_or_else(|| self.err("bad ACC operand"))
    }

    pub(super) fn dma_addr(&mut self, a: &Addr) -> Result<DmaAddr, CodegenError> {
        let (base, off) = self.base_off(&a.at, 32)?;
        DmaAddr::new(a.mem, base, off)
            .ok_or_else(|| self.err(format!("the DMA cannot address {}", a.mem)))
    }
}
