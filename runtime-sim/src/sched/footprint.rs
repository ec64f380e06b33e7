//! The byte ranges a DMA transfer touches, for the in-flight interlock.

use tessera_isa::Mem;

use crate::ops::{Op, Pattern};

/// Bounding ranges of a DMA op's accesses, for the interlock.
pub(super) fn footprint(op: &Op) -> Vec<(Mem, i128, i128, bool)> {
    let mut out = Vec::new();
    let mut add = |p: Pattern, write: bool| {
        if let Some((lo, hi)) = p.bounds() {
            out.push((p.mem, lo, hi, write));
        }
    };
    match *op {
        Op::Copy {
            dst,
            src,
            bytes,
            dims,
        } => {
            let pat = |a: crate::ops::Addr, src_side: bool| Pattern {
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
            add(pat(src, true), false);
            add(pat(dst, false), true);
        }
        Op::Gather {
            dst,
            table,
            idx,
            rows,
            bytes,
            limit,
            i64_idx,
        } => {
            let isize = if i64_idx { 8 } else { 4 };
            add(
                Pattern::contiguous(Mem::Spm, idx, rows.saturating_mul(isize)),
                false,
            );
            add(
                Pattern::contiguous(Mem::Spm, dst, rows.saturating_mul(bytes)),
                true,
            );
            add(
                Pattern::contiguous(Mem::Dram, table, limit.saturating_mul(bytes)),
                false,
            );
        }
        Op::Scatter {
            table,
            src,
            idx,
            rows,
            bytes,
            limit,
            i64_idx,
        } => {
            let isize = if i64_idx { 8 } else { 4 };
            add(
                Pattern::contiguous(Mem::Spm, idx, rows.saturating_mul(isize)),
                false,
            );
            add(
                Pattern::contiguous(Mem::Spm, src, rows.saturating_mul(bytes)),
                false,
            );
            add(
                Pattern::contiguous(Mem::Dram, table, limit.saturating_mul(bytes)),
                true,
            );
        }
        // Not DMA transfers: nothing in flight on the DMA engine.
        Op::Wait { .. }
        | Op::Signal { .. }
        | Op::DmaDim
        | Op::LoadW { .. }
        | Op::Matmul { .. }
        | Op::Bin { .. }
        | Op::BinS { .. }
        | Op::Un { .. }
        | Op::Red { .. }
        | Op::Cvt { .. }
        | Op::Quant { .. }
        | Op::Fill { .. }
        | Op::Trans { .. } => {}
    }
    out
}

pub(super) fn conflicts(a: &[(Mem, i128, i128, bool)], b: &[(Mem, i128, i128, bool)]) -> bool {
    a.iter().any(|x| {
        b.iter()
            .any(|y| x.0 == y.0 && (x.3 || y.3) && x.1 < y.2 && y.1 < x.2)
    })
}
