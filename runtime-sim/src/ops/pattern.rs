//! Memory footprints: the bytes an operand touches, as up to three strided
//! dimensions of contiguous runs, checked against and grown into the
//! simulator's memories.

use tessera_isa::{Bcast, Mem};

use crate::memory::{AccessError, Memories};

use super::{Addr, Region};

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
