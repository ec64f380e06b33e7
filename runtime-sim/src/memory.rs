//! The NPU's memories: DRAM, SPM and ACC as byte arrays with checked access.
//!
//! DRAM is allocated lazily: it grows (zero-filled) up to the highest byte a
//! run touches, so a 4 GiB `base` target costs only what the program uses.
//! Every access is bounds-checked against the target's size and reported as
//! a fault with the memory and byte range.

use tessera_isa::{Mem, Target};

/// Why an access failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccessError {
    /// Bytes `[addr, addr+len)` are not all inside the memory.
    OutOfBounds {
        /// Memory.
        mem: Mem,
        /// First byte.
        addr: u64,
        /// Length.
        len: u64,
        /// Memory size.
        size: u64,
    },
    /// `addr` is not a multiple of `align`.
    Misaligned {
        /// Memory.
        mem: Mem,
        /// Address.
        addr: u64,
        /// Required alignment.
        align: u64,
    },
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::OutOfBounds {
                mem,
                addr,
                len,
                size,
            } => write!(
                f,
                "out of bounds: {mem} bytes {addr:#x}..{:#x} (size {size:#x})",
                addr.saturating_add(*len)
            ),
            AccessError::Misaligned { mem, addr, align } => {
                write!(
                    f,
                    "misaligned: {mem} address {addr:#x} is not a multiple of {align}"
                )
            }
        }
    }
}

/// All three memories.
pub struct Memories {
    dram: Vec<u8>,
    dram_size: u64,
    spm: Vec<u8>,
    acc: Vec<u8>,
}

impl Memories {
    /// Zeroed memories sized for `target` (DRAM grows on demand).
    pub fn new(target: &Target) -> Memories {
        Memories {
            dram: Vec::new(),
            dram_size: target.dram_bytes,
            spm: vec![0; target.spm_bytes as usize],
            acc: vec![0; target.acc_bytes as usize],
        }
    }

    /// Size of a memory in bytes.
    pub fn size(&self, mem: Mem) -> u64 {
        match mem {
            Mem::Dram => self.dram_size,
            Mem::Spm => self.spm.len() as u64,
            Mem::Acc => self.acc.len() as u64,
        }
    }

    /// Checks that `[addr, addr+len)` lies inside `mem`.
    pub fn check(&self, mem: Mem, addr: u64, len: u64) -> Result<(), AccessError> {
        let size = self.size(mem);
        match addr.checked_add(len) {
            Some(end) if end <= size => Ok(()),
            _ => Err(AccessError::OutOfBounds {
                mem,
                addr,
                len,
                size,
            }),
        }
    }

    /// Checks alignment of an address.
    pub fn check_align(mem: Mem, addr: u64, align: u64) -> Result<(), AccessError> {
        if align > 1 && addr % align != 0 {
            Err(AccessError::Misaligned { mem, addr, align })
        } else {
            Ok(())
        }
    }

    fn grow_dram(&mut self, end: u64) {
        if end as usize > self.dram.len() {
            // Grow geometrically to amortize, but never beyond the target's DRAM.
            let want = (end as usize).max(self.dram.len().saturating_mul(3) / 2);
            let capped = want.min(self.dram_size as usize).max(end as usize);
            self.dram.resize(capped, 0);
        }
    }

    /// Reads bytes (bounds-checked).
    pub fn read(&self, mem: Mem, addr: u64, out: &mut [u8]) -> Result<(), AccessError> {
        let len = out.len() as u64;
        self.check(mem, addr, len)?;
        let a = addr as usize;
        let src: &[u8] = match mem {
            Mem::Dram => {
                let have = self.dram.len();
                if a >= have {
                    out.fill(0);
                    return Ok(());
                }
                let avail = (have - a).min(out.len());
                out[..avail].copy_from_slice(&self.dram[a..a + avail]);
                out[avail..].fill(0);
                return Ok(());
            }
            Mem::Spm => &self.spm,
            Mem::Acc => &self.acc,
        };
        out.copy_from_slice(&src[a..a + out.len()]);
        Ok(())
    }

    /// Writes bytes (bounds-checked).
    pub fn write(&mut self, mem: Mem, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        self.check(mem, addr, len)?;
        let a = addr as usize;
        let dst = self.slice_mut(mem, addr, len);
        dst.copy_from_slice(data);
        let _ = a;
        Ok(())
    }

    /// A mutable view of checked bytes (DRAM grows to cover them).
    /// The caller has already called `check`.
    pub(crate) fn slice_mut(&mut self, mem: Mem, addr: u64, len: u64) -> &mut [u8] {
        let a = addr as usize;
        let l = len as usize;
        match mem {
            Mem::Dram => {
                self.grow_dram(addr + len);
                &mut self.dram[a..a + l]
            }
            Mem::Spm => &mut self.spm[a..a + l],
            Mem::Acc => &mut self.acc[a..a + l],
        }
    }

    /// A view of checked on-chip bytes (SPM or ACC).
    pub(crate) fn onchip(&self, mem: Mem) -> &[u8] {
        match mem {
            Mem::Spm => &self.spm,
            Mem::Acc => &self.acc,
            Mem::Dram => &self.dram,
        }
    }

    /// Mutable view of a whole on-chip memory.
    pub(crate) fn onchip_mut(&mut self, mem: Mem) -> &mut [u8] {
        match mem {
            Mem::Spm => &mut self.spm,
            Mem::Acc => &mut self.acc,
            Mem::Dram => &mut self.dram,
        }
    }

    /// Reads one little-endian f32 from on-chip memory (checked by caller).
    #[inline]
    pub(crate) fn f32_at(bytes: &[u8], addr: u64) -> f32 {
        let a = addr as usize;
        f32::from_le_bytes([bytes[a], bytes[a + 1], bytes[a + 2], bytes[a + 3]])
    }

    /// Bytes of DRAM actually allocated (for memory statistics).
    pub fn dram_allocated(&self) -> u64 {
        self.dram.len() as u64
    }
}
