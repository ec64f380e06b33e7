//! Dispatch-time resolution: a tensor instruction and the register file
//! into an [`Op`] of plain numbers. One arm per instruction of the ISA
//! table, with no wildcard, so an instruction the simulator cannot execute
//! does not compile.

use tessera_isa::Instr;

use super::*;

/// Resolves a tensor instruction against the register file. `dims` is the
/// dispatch-side copy of the DMA dimension registers (updated by `dma.dim`).
/// Returns `None` for scalar instructions.
pub fn resolve(instr: &Instr, regs: &[u64; 32], dims: &mut [DmaDimRegs; 3]) -> Option<Op> {
    let r = |reg: tessera_isa::Reg| regs[reg.0 as usize];
    let opt = |reg: tessera_isa::OptReg| regs[reg.0 .0 as usize];
    let val = |v: tessera_isa::Val| r(v.reg).wrapping_add(u64::from(v.imm));
    let at = |base: tessera_isa::Reg, off: i32| r(base).wrapping_add(off as i64 as u64);
    // An on-chip or DMA operand: its memory and resolved address.
    macro_rules! onchip {
        ($o:expr) => {
            Addr {
                mem: $o.mem,
                addr: at($o.base, $o.off),
            }
        };
    }
    let shape = |rows, cols| Region {
        rows: r(rows),
        cols: r(cols),
    };
    Some(match *instr {
        Instr::DmaWait { sem, n } | Instr::MxuWait { sem, n } | Instr::VpuWait { sem, n } => {
            Op::Wait {
                sem: sem.0,
                n: u32::from(n.0),
            }
        }
        Instr::DmaSignal { sem, n } | Instr::MxuSignal { sem, n } | Instr::VpuSignal { sem, n } => {
            Op::Signal {
                sem: sem.0,
                n: u32::from(n.0),
            }
        }
        Instr::DmaDim {
            dim,
            count,
            sstride,
            dstride,
        } => {
            let index = match dim {
                tessera_isa::DmaDim::D1 => 0,
                tessera_isa::DmaDim::D2 => 1,
                tessera_isa::DmaDim::D3 => 2,
            };
            dims[index] = DmaDimRegs {
                count: val(count),
                sstride: i64::from(sstride.0),
                dstride: i64::from(dstride.0),
            };
            Op::DmaDim
        }
        Instr::DmaCopy { dst, src, bytes } => Op::Copy {
            dst: onchip!(dst),
            src: onchip!(src),
            bytes: val(bytes),
            dims: *dims,
        },
        Instr::DmaGather {
            dst,
            table,
            idx,
            rows,
            bytes,
            limit,
            itype,
        } => Op::Gather {
            dst: at(dst.base, dst.off),
            table: at(table.base, table.off),
            idx: at(idx.base, idx.off),
            rows: r(rows),
            bytes: r(bytes),
            limit: r(limit),
            i64_idx: itype == tessera_isa::IdxType::I64,
        },
        Instr::DmaScatter {
            table,
            src,
            idx,
            rows,
            bytes,
            limit,
            itype,
        } => Op::Scatter {
            table: at(table.base, table.off),
            src: at(src.base, src.off),
            idx: at(idx.base, idx.off),
            rows: r(rows),
            bytes: r(bytes),
            limit: r(limit),
            i64_idx: itype == tessera_isa::IdxType::I64,
        },
        Instr::MxuLoadW {
            src,
            k,
            n,
            stride,
            dtype,
            trans,
            wzp,
            azp,
            scales,
            sstride,
            azsrc,
            wzsrc,
        } => Op::LoadW {
            src: at(src.base, src.off),
            k: val(k),
            n: val(n),
            stride: val(stride),
            dtype,
            trans,
            quant: MxuQuant {
                wzp: opt(wzp) as i64,
                azp: opt(azp) as i64,
                scales: opt(scales),
                sstride: opt(sstride),
                azp_in_spm: azsrc == tessera_isa::ZpSrc::Spm,
                wzp_in_spm: wzsrc == tessera_isa::ZpSrc::Spm,
            },
        },
        Instr::MxuMatmul {
            dst,
            a,
            m,
            astride,
            dstride,
            mode,
            ascales,
        } => Op::Matmul {
            dst: at(dst.base, dst.off),
            a: at(a.base, a.off),
            m: val(m),
            astride: val(astride),
            dstride: val(dstride),
            mode,
            ascales: opt(ascales),
        },
        Instr::VpuBin {
            func,
            dst,
            a,
            b,
            rows,
            cols,
            dstride,
            astride,
            bstride,
            abcast,
            bbcast,
        } => Op::Bin {
            func,
            dst: onchip!(dst),
            a: onchip!(a),
            b: onchip!(b),
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            bstride: r(bstride),
            abcast,
            bbcast,
        },
        Instr::VpuBinScalar {
            func,
            dst,
            a,
            s,
            rows,
            cols,
            dstride,
            astride,
            abcast,
            order,
        } => Op::BinS {
            func,
            dst: onchip!(dst),
            a: onchip!(a),
            s: f32::from_bits(r(s) as u32),
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            abcast,
            order,
        },
        Instr::VpuUn {
            func,
            dst,
            a,
            rows,
            cols,
            dstride,
            astride,
            abcast,
        } => Op::Un {
            func,
            dst: onchip!(dst),
            a: onchip!(a),
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            abcast,
        },
        Instr::VpuRed {
            func,
            dst,
            a,
            rows,
            cols,
            dstride,
            astride,
            mode,
        } => Op::Red {
            func,
            dst: onchip!(dst),
            a: onchip!(a),
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            mode,
        },
        Instr::VpuQuant {
            dst,
            a,
            s,
            dtype: qtype,
            rows,
            cols,
            dstride,
            astride,
            sbcast,
            zp,
            ..
        }
        | Instr::VpuDequant {
            dst,
            a,
            s,
            atype: qtype,
            rows,
            cols,
            dstride,
            astride,
            sbcast,
            zp,
        } => Op::Quant {
            dequant: matches!(instr, Instr::VpuDequant { .. }),
            dst: onchip!(dst),
            a: onchip!(a),
            s: onchip!(s),
            qtype,
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            sbcast,
            zp: opt(zp) as i64,
            sop: match instr {
                Instr::VpuQuant { sop, .. } => *sop,
                _ => ScaleOp::Div,
            },
        },
        Instr::VpuCvt {
            dst,
            a,
            dtype,
            atype,
            rows,
            cols,
            dstride,
            astride,
        } => Op::Cvt {
            dst: onchip!(dst),
            a: onchip!(a),
            dtype,
            atype,
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
        },
        Instr::VpuFill {
            dst,
            value,
            rows,
            cols,
            dstride,
        } => Op::Fill {
            dst: onchip!(dst),
            bits: r(value) as u32,
            shape: shape(rows, cols),
            dstride: r(dstride),
        },
        Instr::VpuTrans {
            dst,
            a,
            dtype,
            rows,
            cols,
            dstride,
            astride,
        } => Op::Trans {
            dst: onchip!(dst),
            a: onchip!(a),
            dtype,
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
        },
        // The scalar unit executes these itself (sched/scalar.rs). Listed one
        // by one, with no wildcard: an instruction added to the ISA table
        // does not compile until the simulator says what it does.
        Instr::Nop { .. }
        | Instr::Halt { .. }
        | Instr::Li { .. }
        | Instr::Add { .. }
        | Instr::Sub { .. }
        | Instr::Mul { .. }
        | Instr::Divu { .. }
        | Instr::Remu { .. }
        | Instr::And { .. }
        | Instr::Or { .. }
        | Instr::Xor { .. }
        | Instr::Shl { .. }
        | Instr::Shr { .. }
        | Instr::Sra { .. }
        | Instr::Slt { .. }
        | Instr::Sltu { .. }
        | Instr::Min { .. }
        | Instr::Max { .. }
        | Instr::Addi { .. }
        | Instr::Muli { .. }
        | Instr::Andi { .. }
        | Instr::Shli { .. }
        | Instr::Shri { .. }
        | Instr::Srai { .. }
        | Instr::Slti { .. }
        | Instr::Mini { .. }
        | Instr::Maxi { .. }
        | Instr::Beq { .. }
        | Instr::Bne { .. }
        | Instr::Blt { .. }
        | Instr::Bge { .. }
        | Instr::Bltu { .. }
        | Instr::Bgeu { .. }
        | Instr::Jmp { .. }
        | Instr::Loop { .. } => return None,
    })
}
