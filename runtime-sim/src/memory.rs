//! The NPU's memories: DRAM, SPM and ACC as byte arrays with checked access.
//!
//! Every memory is allocated lazily: it grows (zero-filled) up to the highest
//! byte a run touches, so a 4 GiB `base` DRAM or a 4 GiB SPM declared by a
//! target file costs only what the program uses. Growth is fallible: when the
//! host cannot provide the bytes the run ends with a `host memory` fault
//! naming the memory and the size, never an abort. Every access is
//! bounds-checked against the target's size and reported as a fault with the
//! memory and byte range.

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
    /// The host could not allocate the bytes that model `mem` up to `bytes`.
    HostMemory {
        /// Memory.
        mem: Mem,
        /// Bytes the memory had to grow to.
        bytes: u64,
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
            AccessError::HostMemory { mem, bytes } => write!(
                f,
                "the simulator could not allocate {bytes} bytes of host memory to model {mem}"
            ),
        }
    }
}

/// All three memories, indexed by [`slot`].
pub struct Memories {
    /// The bytes allocated so far (a prefix of each memory).
    bytes: [Vec<u8>; 3],
    /// Declared sizes.
    sizes: [u64; 3],
}

fn slot(mem: Mem) -> usize {
    match mem {
        Mem::Dram => 0,
        Mem::Spm => 1,
        Mem::Acc => 2,
    }
}

impl Memories {
    /// Memories sized for `target`; nothing is allocated until touched.
    pub fn new(target: &Target) -> Memories {
        Memories {
            bytes: Default::default(),
            sizes: [target.dram_bytes, target.spm_bytes, target.acc_bytes],
        }
    }

    /// Size of a memory in bytes.
    pub fn size(&self, mem: Mem) -> u64 {
        self.sizes[slot(mem)]
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

    /// Makes bytes `[0, end)` of `mem` addressable (zero-filled), `end`
    /// already checked against the memory's size. Grows geometrically to
    /// amortize, never beyond the declared size, and falls back to the exact
    /// size when the host refuses the geometric step.
    pub(crate) fn cover(&mut self, mem: Mem, end: u64) -> Result<(), AccessError> {
        let limit = usize::try_from(self.size(mem)).unwrap_or(usize::MAX);
        let bytes = &mut self.bytes[slot(mem)];
        let Ok(end_bytes) = usize::try_from(end) else {
            return Err(AccessError::HostMemory { mem, bytes: end });
        };
        if end_bytes <= bytes.len() {
            return Ok(());
        }
        let geometric = bytes.len().saturating_mul(3) / 2;
        let want = geometric.min(limit).max(end_bytes);
        let have = bytes.len();
        if bytes.try_reserve_exact(want - have).is_err()
            && bytes.try_reserve_exact(end_bytes - have).is_err()
        {
            return Err(AccessError::HostMemory { mem, bytes: end });
        }
        let grown = want.min(bytes.capacity()).max(end_bytes);
        bytes.resize(grown, 0);
        Ok(())
    }

    /// Reads bytes (bounds-checked); bytes never written read as zero.
    pub fn read(&self, mem: Mem, addr: u64, out: &mut [u8]) -> Result<(), AccessError> {
        let len = out.len() as u64;
        self.check(mem, addr, len)?;
        let a = addr as usize;
        let src = &self.bytes[slot(mem)];
        let have = src.len();
        if a >= have {
            out.fill(0);
            return Ok(());
        }
        let avail = (have - a).min(out.len());
        out[..avail].copy_from_slice(&src[a..a + avail]);
        out[avail..].fill(0);
        Ok(())
    }

    /// Reads `len` bytes into a new vector, refusing (instead of aborting)
    /// when the host cannot allocate it.
    pub fn read_vec(&self, mem: Mem, addr: u64, len: u64) -> Result<Vec<u8>, AccessError> {
        self.check(mem, addr, len)?;
        let mut out = Vec::new();
        usize::try_from(len)
            .ok()
            .and_then(|n| out.try_reserve_exact(n).ok())
            .ok_or(AccessError::HostMemory { mem, bytes: len })?;
        out.resize(len as usize, 0);
        self.read(mem, addr, &mut out)?;
        Ok(out)
    }

    /// Writes bytes (bounds-checked).
    pub fn write(&mut self, mem: Mem, addr: u64, data: &[u8]) -> Result<(), AccessError> {
        let len = data.len() as u64;
        self.check(mem, addr, len)?;
        self.cover(mem, addr + len)?;
        let a = addr as usize;
        self.bytes[slot(mem)][a..a + data.len()].copy_from_slice(data);
        Ok(())
    }

    /// A view of the allocated bytes of `mem`. On-chip callers have checked
    /// and covered their pattern first (`Pattern::check`), so every byte they
    /// index exists.
    pub(crate) fn onchip(&self, mem: Mem) -> &[u8] {
        &self.bytes[slot(mem)]
    }

    /// Mutable view of the allocated bytes of `mem` (see `onchip`).
    pub(crate) fn onchip_mut(&mut self, mem: Mem) -> &mut [u8] {
        &mut self.bytes[slot(mem)]
    }

    /// Reads one little-endian f32 from on-chip memory (checked by caller).
    #[inline]
    pub(crate) fn f32_at(bytes: &[u8], addr: u64) -> f32 {
        let a = addr as usize;
        f32::from_le_bytes([bytes[a], bytes[a + 1], bytes[a + 2], bytes[a + 3]])
    }

    /// Bytes of DRAM actually allocated (for memory statistics).
    pub fn dram_allocated(&self) -> u64 {
        self.bytes[slot(Mem::Dram)].len() as u64
    }
}
