//! Tensor instructions as resolved at dispatch, and their memory footprints.
//!
//! When the scalar unit dispatches a tensor instruction it reads every
//! register the instruction names (SPEC.md §5.1); the result is an `Op` with
//! plain numbers only, which is what the engine queues hold. The DMA
//! dimension registers are applied at dispatch too: the DMA queue is FIFO,
//! so the dims in force when a copy is dispatched are exactly those in force
//! when it starts.

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType, Instr, Mem, MxuType, Order, RedFunc, Trans, UnFunc,
};

use crate::memory::{AccessError, Memories};

/// An address in a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// Memory.
    pub mem: Mem,
    /// Byte address.
    pub addr: u64,
}

/// One outer dimension of a DMA copy: count and signed byte strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaDimRegs {
    /// Number of runs along this dimension.
    pub count: u64,
    /// Source stride in bytes.
    pub sstride: i64,
    /// Destination stride in bytes.
    pub dstride: i64,
}

impl Default for DmaDimRegs {
    fn default() -> Self {
        DmaDimRegs {
            count: 1,
            sstride: 0,
            dstride: 0,
        }
    }
}

/// A resolved 2-D VPU region shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Rows.
    pub rows: u64,
    /// Elements per row.
    pub cols: u64,
}

/// A resolved tensor instruction.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Wait {
        sem: u8,
        n: u32,
    },
    Signal {
        sem: u8,
        n: u32,
    },
    DmaDim,
    Copy {
        dst: Addr,
        src: Addr,
        bytes: u64,
        dims: [DmaDimRegs; 3],
    },
    Gather {
        dst: u64,
        table: u64,
        idx: u64,
        rows: u64,
        bytes: u64,
        limit: u64,
        i64_idx: bool,
    },
    Scatter {
        table: u64,
        src: u64,
        idx: u64,
        rows: u64,
        bytes: u64,
        limit: u64,
        i64_idx: bool,
    },
    LoadW {
        src: u64,
        k: u64,
        n: u64,
        stride: u64,
        dtype: MxuType,
        trans: Trans,
    },
    Matmul {
        dst: u64,
        a: u64,
        m: u64,
        astride: u64,
        dstride: u64,
        mode: AccMode,
    },
    Bin {
        func: BinFunc,
        dst: Addr,
        a: Addr,
        b: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        bstride: u64,
        abcast: Bcast,
        bbcast: Bcast,
    },
    BinS {
        func: BinFunc,
        dst: Addr,
        a: Addr,
        s: f32,
        shape: Region,
        dstride: u64,
        astride: u64,
        abcast: Bcast,
        order: Order,
    },
    Un {
        func: UnFunc,
        dst: Addr,
        a: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        abcast: Bcast,
    },
    Red {
        func: RedFunc,
        dst: Addr,
        a: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        mode: AccMode,
    },
    Cvt {
        dst: Addr,
        a: Addr,
        dtype: DType,
        atype: DType,
        shape: Region,
        dstride: u64,
        astride: u64,
    },
    Fill {
        dst: Addr,
        bits: u32,
        shape: Region,
        dstride: u64,
    },
    Trans {
        dst: Addr,
        a: Addr,
        dtype: DType,
        shape: Region,
        dstride: u64,
        astride: u64,
    },
}

/// Resolves a tensor instruction against the register file. `dims` is the
/// dispatch-side copy of the DMA dimension registers (updated by `dma.dim`).
/// Returns `None` for scalar instructions.
pub fn resolve(instr: &Instr, regs: &[u64; 32], dims: &mut [DmaDimRegs; 3]) -> Option<Op> {
    let r = |reg: tessera_isa::Reg| regs[reg.0 as usize];
    let val = |v: tessera_isa::Val| r(v.reg).wrapping_add(u64::from(v.imm));
    let at = |base: tessera_isa::Reg, off: i32| r(base).wrapping_add(off as i64 as u64);
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            src: Addr {
                mem: src.mem,
                addr: at(src.base, src.off),
            },
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
        } => Op::LoadW {
            src: at(src.base, src.off),
            k: val(k),
            n: val(n),
            stride: val(stride),
            dtype,
            trans,
        },
        Instr::MxuMatmul {
            dst,
            a,
            m,
            astride,
            dstride,
            mode,
        } => Op::Matmul {
            dst: at(dst.base, dst.off),
            a: at(a.base, a.off),
            m: val(m),
            astride: val(astride),
            dstride: val(dstride),
            mode,
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
            b: Addr {
                mem: b.mem,
                addr: at(b.base, b.off),
            },
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
            shape: shape(rows, cols),
            dstride: r(dstride),
            astride: r(astride),
            mode,
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
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
            dst: Addr {
                mem: dst.mem,
                addr: at(dst.base, dst.off),
            },
            a: Addr {
                mem: a.mem,
                addr: at(a.base, a.off),
            },
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

/// The bytes one operand touches: `runs` contiguous runs of `run` bytes
/// starting at `base`, laid out by up to three (count, stride) dimensions,
/// innermost first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern {
    /// Memory.
    pub mem: Mem,
    /// Address of the first run.
    pub base: u64,
    /// Bytes per run.
    pub run: u64,
    /// (count, byte stride) per outer dimension, innermost first.
    pub dims: [(u64, i64); 3],
}

impl Pattern {
    /// One contiguous range.
    pub fn contiguous(mem: Mem, base: u64, len: u64) -> Pattern {
        Pattern {
            mem,
            base,
            run: len,
            dims: [(1, 0); 3],
        }
    }

    /// `rows` runs of `run` bytes, `stride` apart.
    pub fn rows(mem: Mem, base: u64, rows: u64, run: u64, stride: u64) -> Pattern {
        Pattern {
            mem,
            base,
            run,
            dims: [(rows, stride as i64), (1, 0), (1, 0)],
        }
    }

    /// Number of runs.
    pub fn runs(&self) -> u64 {
        self.dims.iter().fold(1u64, |n, d| n.saturating_mul(d.0))
    }

    /// True if it touches no byte.
    pub fn is_empty(&self) -> bool {
        self.run == 0 || self.runs() == 0
    }

    /// The bounding byte range `[lo, hi)`, or `None` if empty; computed
    /// without wrapping so negative or overflowing addresses are detected.
    pub fn bounds(&self) -> Option<(i128, i128)> {
        if self.is_empty() {
            return None;
        }
        let mut lo = i128::from(self.base);
        let mut hi = i128::from(self.base) + i128::from(self.run);
        for &(count, stride) in &self.dims {
            let span = i128::from(count - 1) * i128::from(stride);
            if span < 0 {
                lo += span;
            } else {
                hi += span;
            }
        }
        Some((lo, hi))
    }

    /// Checks the whole pattern lies inside its memory and makes its bytes
    /// addressable (`Memories::cover`).
    pub fn check(&self, mems: &mut Memories) -> Result<(), AccessError> {
        let Some((lo, hi)) = self.bounds() else {
            return Ok(());
        };
        let size = i128::from(mems.size(self.mem));
        if lo < 0 || hi > size {
            return Err(AccessError::OutOfBounds {
                mem: self.mem,
                addr: lo.max(0) as u64,
                len: (hi - lo.max(0)).max(0) as u64,
                size: size as u64,
            });
        }
        mems.cover(self.mem, hi as u64)
    }

    /// Checks the base and every used stride are multiples of `align`.
    pub fn check_align(&self, align: u64) -> Result<(), AccessError> {
        if self.is_empty() {
            return Ok(());
        }
        Memories::check_align(self.mem, self.base, align)?;
        for &(count, stride) in &self.dims {
            if count > 1 && stride.unsigned_abs() % align != 0 {
                return Err(AccessError::Misaligned {
                    mem: self.mem,
                    addr: self.base.wrapping_add(stride as u64),
                    align,
                });
            }
        }
        Ok(())
    }

    /// Calls `f` with the start address of every run, outermost dimension
    /// slowest. Only valid after `check`.
    pub fn for_each_run(&self, mut f: impl FnMut(u64)) {
        if self.is_empty() {
            return;
        }
        let [(c0, s0), (c1, s1), (c2, s2)] = self.dims;
        for i2 in 0..c2 {
            let b2 = self.base.wrapping_add((i2 as i64).wrapping_mul(s2) as u64);
            for i1 in 0..c1 {
                let b1 = b2.wrapping_add((i1 as i64).wrapping_mul(s1) as u64);
                for i0 in 0..c0 {
                    f(b1.wrapping_add((i0 as i64).wrapping_mul(s0) as u64));
                }
            }
        }
    }

    /// The touched byte ranges, sorted and merged.
    pub fn intervals(&self) -> Vec<(u64, u64)> {
        let mut v = Vec::with_capacity(self.runs().min(1 << 20) as usize);
        let run = self.run;
        self.for_each_run(|start| v.push((start, start + run)));
        v.sort_unstable();
        let mut merged: Vec<(u64, u64)> = Vec::with_capacity(v.len());
        for (s, e) in v {
            match merged.last_mut() {
                Some(last) if s <= last.1 => last.1 = last.1.max(e),
                _ => merged.push((s, e)),
            }
        }
        merged
    }

    /// The first byte range both patterns touch, if any.
    pub fn overlap(&self, other: &Pattern) -> Option<(u64, u64)> {
        if self.mem != other.mem {
            return None;
        }
        let (a_lo, a_hi) = self.bounds()?;
        let (b_lo, b_hi) = other.bounds()?;
        if a_hi <= b_lo || b_hi <= a_lo {
            return None;
        }
        // Exact check on the runs themselves.
        let a = self.intervals();
        let b = other.intervals();
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            let lo = a[i].0.max(b[j].0);
            let hi = a[i].1.min(b[j].1);
            if lo < hi {
                return Some((lo, hi));
            }
            if a[i].1 <= b[j].1 {
                i += 1;
            } else {
                j += 1;
            }
        }
        None
    }
}

/// The footprint of a VPU operand of `elem` bytes under a broadcast mode.
pub fn vpu_pattern(addr: Addr, bcast: Bcast, shape: Region, stride: u64, elem: u64) -> Pattern {
    if shape.rows == 0 || shape.cols == 0 {
        return Pattern::contiguous(addr.mem, addr.addr, 0);
    }
    match bcast {
        Bcast::Full => Pattern::rows(addr.mem, addr.addr, shape.rows, shape.cols * elem, stride),
        Bcast::Row => Pattern::contiguous(addr.mem, addr.addr, shape.cols * elem),
        Bcast::Col => Pattern::rows(addr.mem, addr.addr, shape.rows, elem, stride),
        Bcast::Scalar => Pattern::contiguous(addr.mem, addr.addr, elem),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_isa::{Engine, INSTRUCTIONS};

    /// Every instruction of the ISA table, each field at its smallest
    /// valid encoding.
    fn every_instruction() -> Vec<Instr> {
        INSTRUCTIONS
            .iter()
            .map(|info| {
                info.smallest()
                    .unwrap_or_else(|e| panic!("{}: {e}", info.mnemonic))
            })
            .collect()
    }

    #[test]
    fn every_queued_instruction_resolves_and_no_scalar_one_does() {
        let instrs = every_instruction();
        assert_eq!(instrs.len(), INSTRUCTIONS.len());
        for instr in instrs {
            let mut dims = [DmaDimRegs::default(); 3];
            let op = resolve(&instr, &[0; 32], &mut dims);
            assert_eq!(
                op.is_some(),
                instr.engine() != Engine::Su,
                "`{}` on {:?}",
                instr.mnemonic(),
                instr.engine()
            );
        }
    }

    #[test]
    fn interleaved_rows_do_not_overlap() {
        // Even rows vs odd rows of a 4-row, 16-byte-stride region.
        let even = Pattern::rows(Mem::Spm, 0, 2, 16, 32);
        let odd = Pattern::rows(Mem::Spm, 16, 2, 16, 32);
        assert_eq!(even.overlap(&odd), None);
        let all = Pattern::rows(Mem::Spm, 0, 4, 16, 16);
        assert_eq!(all.overlap(&odd), Some((16, 32)));
    }

    #[test]
    fn negative_strides_bound_correctly() {
        let p = Pattern {
            mem: Mem::Dram,
            base: 100,
            run: 4,
            dims: [(3, -10), (1, 0), (1, 0)],
        };
        assert_eq!(p.bounds(), Some((80, 104)));
        let q = Pattern {
            mem: Mem::Dram,
            base: 5,
            run: 4,
            dims: [(3, -10), (1, 0), (1, 0)],
        };
        assert!(q.bounds().is_some_and(|(lo, _)| lo < 0));
    }
}
