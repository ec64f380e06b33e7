//! Functional semantics of the DMA instructions (SPEC.md §9.2); the MXU's
//! are in `matrix.rs`, the VPU's in `vpu.rs`.
//!
//! Each function applies one resolved instruction to the memories and
//! returns the memory accesses it made, for the race detector. Faults are
//! returned as `FaultKind` plus a message; the scheduler adds pc and text.

use tessera_isa::Mem;

use crate::memory::{AccessError, Memories};
use crate::ops::{Addr, DmaDimRegs, Pattern};

/// Kinds of faults (SPEC.md §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// Access outside a memory, or pc outside the code.
    OutOfBounds,
    /// Element access not aligned to its size.
    Misaligned,
    /// Semaphore number, count or discipline violation.
    BadSemaphore,
    /// Operand value out of its range.
    BadOperand,
    /// `dma.gather` index outside the table.
    GatherIndex,
    /// `dma.scatter` index outside the table.
    ScatterIndex,
    /// The run exceeded the cycle limit.
    CycleLimit,
    /// The simulator's host could not allocate the memory a run touches.
    HostMemory,
}

impl FaultKind {
    /// Short name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::OutOfBounds => "out of bounds",
            FaultKind::Misaligned => "misaligned access",
            FaultKind::BadSemaphore => "bad semaphore",
            FaultKind::BadOperand => "bad operand",
            FaultKind::GatherIndex => "gather index out of range",
            FaultKind::ScatterIndex => "scatter index out of range",
            FaultKind::CycleLimit => "cycle limit exceeded",
            FaultKind::HostMemory => "host out of memory",
        }
    }
}

/// A fault before pc and text are attached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawFault {
    /// Kind.
    pub kind: FaultKind,
    /// What exactly (memory, range, value).
    pub detail: String,
}

impl From<AccessError> for RawFault {
    fn from(e: AccessError) -> RawFault {
        let kind = match e {
            AccessError::OutOfBounds { .. } => FaultKind::OutOfBounds,
            AccessError::Misaligned { .. } => FaultKind::Misaligned,
            AccessError::HostMemory { .. } => FaultKind::HostMemory,
        };
        RawFault {
            kind,
            detail: e.to_string(),
        }
    }
}

/// Shorthand for a bad-operand fault.
pub fn bad_operand(detail: String) -> RawFault {
    RawFault {
        kind: FaultKind::BadOperand,
        detail,
    }
}

/// Most bytes one DMA transfer may move (SPEC.md §7).
pub const MAX_TRANSFER_BYTES: u64 = 1 << 32;
/// Most elements one VPU or MXU instruction may process (SPEC.md §7).
pub const MAX_ELEMENTS: u64 = 1 << 28;

/// A zero point must fit its quantized type (FP8 takes none).
pub fn check_zero_point(what: &str, dtype: tessera_isa::DType, zp: i64) -> Result<(), RawFault> {
    if tessera_isa::lowp::zero_point_fits(dtype, zp) {
        Ok(())
    } else {
        Err(bad_operand(format!(
            "{what} zero point {zp} does not fit {dtype}"
        )))
    }
}

/// Checks a work size against its limit.
pub fn check_work(what: &str, amount: u64, limit: u64) -> Result<(), RawFault> {
    if amount > limit {
        Err(bad_operand(format!(
            "{what} of {amount} exceeds the limit of {limit}"
        )))
    } else {
        Ok(())
    }
}

/// Sizes and strides must stay below 2^32 (SPEC.md §7).
pub fn check_size(name: &str, value: u64) -> Result<u64, RawFault> {
    if value >= 1 << 32 {
        Err(bad_operand(format!("{name} = {value} is not below 2^32")))
    } else {
        Ok(value)
    }
}

/// One memory access of an instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Access {
    /// The bytes.
    pub pattern: Pattern,
    /// Whether it writes them.
    pub write: bool,
}

/// The accesses of one instruction.
pub type Accesses = Vec<Access>;

/// `dma.copy`: returns its accesses and the number of runs.
pub fn dma_copy(
    mems: &mut Memories,
    dst: Addr,
    src: Addr,
    bytes: u64,
    dims: &[DmaDimRegs; 3],
) -> Result<(Accesses, u64), RawFault> {
    check_size("bytes", bytes)?;
    for d in dims {
        check_size("count", d.count)?;
    }
    let pat = |a: Addr, src_side: bool| Pattern {
        mem: a.mem,
        base: a.addr,
        run: bytes,
        dims: [0, 1, 2].map(|i| {
            (
                dims[i].count,
                if src_side {
                    dims[i].sstride
                } else {
                    dims[i].dstride
                },
            )
        }),
    };
    let src_pat = pat(src, true);
    let dst_pat = pat(dst, false);
    let runs = src_pat.runs();
    check_work(
        "a DMA transfer",
        runs.saturating_mul(bytes),
        MAX_TRANSFER_BYTES,
    )?;
    src_pat.check(mems)?;
    dst_pat.check(mems)?;
    if src_pat.is_empty() {
        return Ok((Vec::new(), 0));
    }
    // Read every source run first (SPEC: as if through a temporary).
    let mut buffer = vec![0u8; (runs * bytes) as usize];
    let mut at = 0usize;
    let mut result = Ok(());
    src_pat.for_each_run(|start| {
        if result.is_ok() {
            result = mems.read(src.mem, start, &mut buffer[at..at + bytes as usize]);
            at += bytes as usize;
        }
    });
    result.clone()?;
    let mut at = 0usize;
    dst_pat.for_each_run(|start| {
        if result.is_ok() {
            result = mems.write(dst.mem, start, &buffer[at..at + bytes as usize]);
            at += bytes as usize;
        }
    });
    result?;
    Ok((
        vec![
            Access {
                pattern: src_pat,
                write: false,
            },
            Access {
                pattern: dst_pat,
                write: true,
            },
        ],
        runs,
    ))
}

/// Reads `rows` indices of a `dma.gather`/`dma.scatter` from SPM and
/// resolves them against a table of `limit` rows (negative from the end).
/// Returns the row numbers and the index read.
fn table_rows(
    mems: &mut Memories,
    idx: u64,
    rows: u64,
    limit: u64,
    i64_idx: bool,
    kind: FaultKind,
) -> Result<(Vec<u64>, Access), RawFault> {
    check_size("rows", rows)?;
    check_size("limit", limit)?;
    let isize = if i64_idx { 8 } else { 4 };
    let idx_pat = Pattern::contiguous(Mem::Spm, idx, rows * isize);
    idx_pat.check(mems)?;
    idx_pat.check_align(isize)?;
    let mut raw = vec![0u8; (rows * isize) as usize];
    mems.read(Mem::Spm, idx, &mut raw)?;
    let resolved = raw
        .chunks_exact(isize as usize)
        .enumerate()
        .map(|(i, chunk)| {
            let given: i64 = if i64_idx {
                let mut b = [0u8; 8];
                b.copy_from_slice(chunk);
                i64::from_le_bytes(b)
            } else {
                i64::from(i32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]))
            };
            let v = if given < 0 {
                given.wrapping_add(limit as i64)
            } else {
                given
            };
            if v < 0 || v as u64 >= limit {
                return Err(RawFault {
                    kind,
                    detail: format!(
                        "index {given} of row {i} is outside the table of {limit} rows"
                    ),
                });
            }
            Ok(v as u64)
        })
        .collect::<Result<Vec<u64>, RawFault>>()?;
    Ok((
        resolved,
        Access {
            pattern: idx_pat,
            write: false,
        },
    ))
}

/// `dma.gather`.
#[allow(clippy::too_many_arguments)]
pub fn dma_gather(
    mems: &mut Memories,
    dst: u64,
    table: u64,
    idx: u64,
    rows: u64,
    bytes: u64,
    limit: u64,
    i64_idx: bool,
) -> Result<Accesses, RawFault> {
    check_size("bytes", bytes)?;
    check_work("a gather", rows.saturating_mul(bytes), MAX_TRANSFER_BYTES)?;
    let (selected, idx_access) =
        table_rows(mems, idx, rows, limit, i64_idx, FaultKind::GatherIndex)?;
    let dst_pat = Pattern::contiguous(Mem::Spm, dst, rows * bytes);
    dst_pat.check(mems)?;
    let mut accesses = vec![
        idx_access,
        Access {
            pattern: dst_pat,
            write: true,
        },
    ];
    let mut row = vec![0u8; bytes as usize];
    for (i, &v) in selected.iter().enumerate() {
        let from = table.wrapping_add(v.wrapping_mul(bytes));
        let src = Pattern::contiguous(Mem::Dram, from, bytes);
        src.check(mems)?;
        mems.read(Mem::Dram, from, &mut row)?;
        mems.write(Mem::Spm, dst + i as u64 * bytes, &row)?;
        accesses.push(Access {
            pattern: src,
            write: false,
        });
    }
    Ok(accesses)
}

/// `dma.scatter`: every index and destination row is checked before the
/// first row is written, then rows are written in order (a later equal
/// index wins).
#[allow(clippy::too_many_arguments)]
pub fn dma_scatter(
    mems: &mut Memories,
    table: u64,
    src: u64,
    idx: u64,
    rows: u64,
    bytes: u64,
    limit: u64,
    i64_idx: bool,
) -> Result<Accesses, RawFault> {
    check_size("bytes", bytes)?;
    check_work("a scatter", rows.saturating_mul(bytes), MAX_TRANSFER_BYTES)?;
    let (selected, idx_access) =
        table_rows(mems, idx, rows, limit, i64_idx, FaultKind::ScatterIndex)?;
    let src_pat = Pattern::contiguous(Mem::Spm, src, rows * bytes);
    src_pat.check(mems)?;
    let mut accesses = vec![
        idx_access,
        Access {
            pattern: src_pat,
            write: false,
        },
    ];
    for &v in &selected {
        let to = table.wrapping_add(v.wrapping_mul(bytes));
        let dst = Pattern::contiguous(Mem::Dram, to, bytes);
        dst.check(mems)?;
        accesses.push(Access {
            pattern: dst,
            write: true,
        });
    }
    let mut row = vec![0u8; bytes as usize];
    for (i, &v) in selected.iter().enumerate() {
        mems.read(Mem::Spm, src + i as u64 * bytes, &mut row)?;
        mems.write(Mem::Dram, table.wrapping_add(v.wrapping_mul(bytes)), &row)?;
    }
    Ok(accesses)
}

#[cfg(test)]
mod tests {
    use super::*;
    use tessera_isa::Target;

    fn dram_row(mems: &Memories, at: u64) -> [u8; 4] {
        let mut row = [0u8; 4];
        mems.read(Mem::Dram, at, &mut row).expect("read");
        row
    }

    #[test]
    fn a_faulting_scatter_writes_nothing() {
        let mut mems = Memories::new(&Target::tiny());
        let ids: Vec<u8> = [0i32, 1, 7].iter().flat_map(|v| v.to_le_bytes()).collect();
        mems.write(Mem::Spm, 0, &ids).expect("ids");
        mems.write(Mem::Spm, 64, &[9u8; 12]).expect("rows");
        let err = dma_scatter(&mut mems, 0x1000, 64, 0, 3, 4, 4, false).err();
        assert!(err.is_some(), "index 7 of a 4-row table must fault");
        assert_eq!(dram_row(&mems, 0x1000), [0; 4]);
        assert_eq!(dram_row(&mems, 0x1004), [0; 4]);
        // In range, the same scatter writes rows 0 and 1 only.
        let ids: Vec<u8> = [0i32, 1, -1].iter().flat_map(|v| v.to_le_bytes()).collect();
        mems.write(Mem::Spm, 0, &ids).expect("ids");
        dma_scatter(&mut mems, 0x1000, 64, 0, 3, 4, 4, false).expect("scatter");
        assert_eq!(dram_row(&mems, 0x1000), [9; 4]);
        assert_eq!(dram_row(&mems, 0x1008), [0; 4]);
        assert_eq!(dram_row(&mems, 0x100c), [9; 4]);
    }
}
