//! Helpers every kernel template uses: fresh loop variables, a bump
//! allocator for SPM and ACC buffers, and tile-size arithmetic.

use tessera_isa::{Mem, Target};

use crate::kernel::{Buffer, Var};

use super::LowerError;

/// Hands out fresh loop variables within one kernel.
#[derive(Debug, Default)]
pub struct Vars(u16);

impl Vars {
    /// A new variable.
    pub fn fresh(&mut self) -> Var {
        self.0 += 1;
        Var(self.0 - 1)
    }
}

/// Bump allocation of one kernel's buffers in SPM and ACC.
#[derive(Debug)]
pub struct OnChip {
    spm_next: u64,
    spm_limit: u64,
    acc_next: u64,
    acc_limit: u64,
    /// Everything allocated, in order.
    pub buffers: Vec<Buffer>,
}

impl OnChip {
    /// All of the target's SPM and ACC, empty.
    pub fn new(target: &Target) -> OnChip {
        OnChip {
            spm_next: 0,
            spm_limit: target.spm_bytes,
            acc_next: 0,
            acc_limit: target.acc_bytes,
            buffers: Vec::new(),
        }
    }

    /// Bytes still free in a memory.
    pub fn free(&self, mem: Mem) -> u64 {
        match mem {
            Mem::Acc => self.acc_limit - self.acc_next,
            _ => self.spm_limit - self.spm_next,
        }
    }

    /// Allocates `slots` slots of `bytes` bytes, each aligned to 64 bytes.
    pub fn alloc(
        &mut self,
        name: &str,
        mem: Mem,
        bytes: u64,
        slots: u64,
    ) -> Result<Buffer, LowerError> {
        let bytes = bytes.max(4).div_ceil(64) * 64;
        let (next, limit) = match mem {
            Mem::Acc => (&mut self.acc_next, self.acc_limit),
            _ => (&mut self.spm_next, self.spm_limit),
        };
        let end = *next + bytes * slots;
        if end > limit {
            return Err(LowerError::DoesNotFit(format!(
                "buffer `{name}` ({slots} x {bytes} B) does not fit {mem} ({} of {limit} B used)",
                *next
            )));
        }
        let b = Buffer {
            name: name.to_string(),
            mem,
            offset: *next,
            bytes,
            slots,
        };
        *next = end;
        self.buffers.push(b.clone());
        Ok(b)
    }
}

/// Splits `total` into `ceil(total / max)` near-equal tiles; returns the
/// tile size (≥ 1).
pub fn balanced_tile(total: u64, max: u64) -> u64 {
    let max = max.max(1);
    let tiles = total.div_ceil(max).max(1);
    total.div_ceil(tiles).max(1)
}

/// Number of tiles of `tile` covering `total`.
pub fn tiles(total: u64, tile: u64) -> u64 {
    total.div_ceil(tile.max(1)).max(1)
}
