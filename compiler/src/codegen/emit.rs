//! The emitter's bookkeeping: appending instructions, labels and the
//! branch fixups resolved at the end, temporaries and loop registers.

use tessera_isa::{BranchTarget, Imm64, Instr, Reg};

use super::{CodegenError, Emitter, Fixup, TEMP_BASE};
use crate::kernel::Var;

impl<'t> Emitter<'t> {
    pub(super) fn err(&self, message: impl Into<String>) -> CodegenError {
        CodegenError::Kernel {
            kernel: self.kernel.clone(),
            message: message.into(),
        }
    }

    pub(super) fn emit(&mut self, i: Instr) {
        self.code.push(i);
    }

    pub(super) fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    pub(super) fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
        // Control flow merges here: the DMA dims are no longer known.
        self.dma_dims = [None; 3];
    }

    pub(super) fn branch(&mut self, make: impl Fn(BranchTarget) -> Instr, label: usize) {
        self.fixups.push(Fixup {
            at: self.code.len(),
            label,
        });
        self.emit(make(BranchTarget(0)));
    }

    pub(super) fn temp(&mut self) -> Result<Reg, CodegenError> {
        if TEMP_BASE + self.temps_used >= 32 {
            return Err(self.err("out of temporary registers for one instruction"));
        }
        self.temps_used += 1;
        Ok(Reg(TEMP_BASE + self.temps_used - 1))
    }

    pub(super) fn free_temps(&mut self) {
        self.temps_used = 0;
    }

    pub(super) fn li(&mut self, value: i64) -> Result<Reg, CodegenError> {
        if value == 0 {
            return Ok(Reg::ZERO);
        }
        let t = self.temp()?;
        self.emit(Instr::Li {
            rd: t,
            imm: Imm64(value),
        });
        Ok(t)
    }

    pub(super) fn var_reg(&self, v: Var) -> Result<Reg, CodegenError> {
        self.loop_regs
            .get(&v)
            .copied()
            .or_else(|| self.rotators.get(&v).map(|r| r.0))
            .ok_or_else(|| self.err(format!("variable v{} used outside its loop", v.0)))
    }

    pub(super) fn resolve(mut self) -> Result<Vec<Instr>, CodegenError> {
        for f in std::mem::take(&mut self.fixups) {
            let dest =
                self.labels[f.label].ok_or_else(|| self.err("branch to an unplaced label"))?;
            let offset = BranchTarget(dest as i32 - f.at as i32);
            self.code[f.at] = match self.code[f.at] {
                Instr::Bne { rs1, rs2, .. } => Instr::Bne {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Beq { rs1, rs2, .. } => Instr::Beq {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Blt { rs1, rs2, .. } => Instr::Blt {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Bge { rs1, rs2, .. } => Instr::Bge {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Jmp { .. } => Instr::Jmp { target: offset },
                other => return Err(self.err(format!("cannot patch `{other}`"))),
            };
        }
        Ok(self.code)
    }
}
