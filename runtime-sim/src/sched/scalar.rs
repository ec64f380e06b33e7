//! The scalar unit's own instructions: ALU, immediates, branches, loops.

use tessera_isa::{Engine, Instr};

use crate::error::SimError;
use crate::exec::{bad_operand, FaultKind, RawFault};

use super::Machine;

impl Machine<'_> {
    /// Executes a scalar instruction; returns whether a branch was taken.
    pub(super) fn scalar(&mut self, pc: u32, instr: &Instr) -> Result<bool, SimError> {
        let r = &mut self.su.regs;
        let mut next = i64::from(pc) + 1;
        let mut taken = false;
        let set = |r: &mut [u64; 32], rd: tessera_isa::Reg, v: u64| {
            if rd.0 != 0 {
                r[rd.0 as usize] = v;
            }
        };
        let g = |r: &[u64; 32], x: tessera_isa::Reg| r[x.0 as usize];
        let div_zero =
            |this: &Self| Err(this.fault(Engine::Su, pc, bad_operand("division by zero".into())));
        match *instr {
            Instr::Nop {} => {}
            Instr::Halt {} => {
                self.su.halted = true;
                return Ok(false);
            }
            Instr::Li { rd, imm } => set(r, rd, imm.0 as u64),
            Instr::Add { rd, rs1, rs2 } => set(r, rd, g(r, rs1).wrapping_add(g(r, rs2))),
            Instr::Sub { rd, rs1, rs2 } => set(r, rd, g(r, rs1).wrapping_sub(g(r, rs2))),
            Instr::Mul { rd, rs1, rs2 } => set(r, rd, g(r, rs1).wrapping_mul(g(r, rs2))),
            Instr::Divu { rd, rs1, rs2 } => match g(r, rs1).checked_div(g(r, rs2)) {
                Some(v) => set(r, rd, v),
                None => return div_zero(self),
            },
            Instr::Remu { rd, rs1, rs2 } => match g(r, rs1).checked_rem(g(r, rs2)) {
                Some(v) => set(r, rd, v),
                None => return div_zero(self),
            },
            Instr::And { rd, rs1, rs2 } => set(r, rd, g(r, rs1) & g(r, rs2)),
            Instr::Or { rd, rs1, rs2 } => set(r, rd, g(r, rs1) | g(r, rs2)),
            Instr::Xor { rd, rs1, rs2 } => set(r, rd, g(r, rs1) ^ g(r, rs2)),
            Instr::Shl { rd, rs1, rs2 } => set(r, rd, g(r, rs1) << (g(r, rs2) & 63)),
            Instr::Shr { rd, rs1, rs2 } => set(r, rd, g(r, rs1) >> (g(r, rs2) & 63)),
            Instr::Sra { rd, rs1, rs2 } => {
                set(r, rd, ((g(r, rs1) as i64) >> (g(r, rs2) & 63)) as u64)
            }
            Instr::Slt { rd, rs1, rs2 } => {
                set(r, rd, u64::from((g(r, rs1) as i64) < (g(r, rs2) as i64)))
            }
            Instr::Sltu { rd, rs1, rs2 } => set(r, rd, u64::from(g(r, rs1) < g(r, rs2))),
            Instr::Min { rd, rs1, rs2 } => {
                set(r, rd, (g(r, rs1) as i64).min(g(r, rs2) as i64) as u64)
            }
            Instr::Max { rd, rs1, rs2 } => {
                set(r, rd, (g(r, rs1) as i64).max(g(r, rs2) as i64) as u64)
            }
            Instr::Addi { rd, rs1, imm } => {
                set(r, rd, g(r, rs1).wrapping_add(i64::from(imm.0) as u64))
            }
            Instr::Muli { rd, rs1, imm } => {
                set(r, rd, g(r, rs1).wrapping_mul(i64::from(imm.0) as u64))
            }
            Instr::Andi { rd, rs1, imm } => set(r, rd, g(r, rs1) & (i64::from(imm.0) as u64)),
            Instr::Shli { rd, rs1, imm } => set(r, rd, g(r, rs1) << (imm.0 as u32 & 63)),
            Instr::Shri { rd, rs1, imm } => set(r, rd, g(r, rs1) >> (imm.0 as u32 & 63)),
            Instr::Srai { rd, rs1, imm } => {
                set(r, rd, ((g(r, rs1) as i64) >> (imm.0 as u32 & 63)) as u64)
            }
            Instr::Slti { rd, rs1, imm } => {
                set(r, rd, u64::from((g(r, rs1) as i64) < i64::from(imm.0)))
            }
            Instr::Mini { rd, rs1, imm } => {
                set(r, rd, (g(r, rs1) as i64).min(i64::from(imm.0)) as u64)
            }
            Instr::Maxi { rd, rs1, imm } => {
                set(r, rd, (g(r, rs1) as i64).max(i64::from(imm.0)) as u64)
            }
            Instr::Beq { rs1, rs2, target }
            | Instr::Bne { rs1, rs2, target }
            | Instr::Blt { rs1, rs2, target }
            | Instr::Bge { rs1, rs2, target }
            | Instr::Bltu { rs1, rs2, target }
            | Instr::Bgeu { rs1, rs2, target } => {
                let (a, b) = (g(r, rs1), g(r, rs2));
                taken = match instr {
                    Instr::Beq { .. } => a == b,
                    Instr::Bne { .. } => a != b,
                    Instr::Blt { .. } => (a as i64) < (b as i64),
                    Instr::Bge { .. } => (a as i64) >= (b as i64),
                    Instr::Bltu { .. } => a < b,
                    _ => a >= b,
                };
                if taken {
                    next = i64::from(pc) + i64::from(target.0);
                }
            }
            Instr::Jmp { target } => {
                taken = true;
                next = i64::from(pc) + i64::from(target.0);
            }
            Instr::Loop { rc, target } => {
                let v = g(r, rc).wrapping_sub(1);
                set(r, rc, v);
                if v != 0 {
                    taken = true;
                    next = i64::from(pc) + i64::from(target.0);
                }
            }
            // Queued to their engines by dispatch (ops::resolve), never here;
            // listed without a wildcard so a new instruction must be placed.
            Instr::DmaCopy { .. }
            | Instr::DmaDim { .. }
            | Instr::DmaGather { .. }
            | Instr::DmaScatter { .. }
            | Instr::DmaWait { .. }
            | Instr::DmaSignal { .. }
            | Instr::MxuLoadW { .. }
            | Instr::MxuMatmul { .. }
            | Instr::MxuWait { .. }
            | Instr::MxuSignal { .. }
            | Instr::VpuBin { .. }
            | Instr::VpuBinScalar { .. }
            | Instr::VpuUn { .. }
            | Instr::VpuRed { .. }
            | Instr::VpuCvt { .. }
            | Instr::VpuQuant { .. }
            | Instr::VpuDequant { .. }
            | Instr::VpuFill { .. }
            | Instr::VpuTrans { .. }
            | Instr::VpuWait { .. }
            | Instr::VpuSignal { .. } => {
                unreachable!("tensor instructions are dispatched, not executed by the SU")
            }
        }
        if next < 0 || next > self.code.len() as i64 {
            return Err(self.fault(
                Engine::Su,
                pc,
                RawFault {
                    kind: FaultKind::OutOfBounds,
                    detail: format!(
                        "branch to instruction {next}, outside the code ({} instructions)",
                        self.code.len()
                    ),
                },
            ));
        }
        self.su.pc = next as u32;
        Ok(taken)
    }
}
