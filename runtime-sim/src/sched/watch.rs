//! Snapshots of DRAM tensors as they are final (`tessera run
//! --dump-tensors`, per-tensor comparison).
//!
//! A watched tensor is final once every instruction before its `ready_pc`
//! that writes it has run. The first DMA transfer at or after `ready_pc`
//! whose footprint overlaps the tensor (its reader, or a later kernel
//! reusing the memory) is, in a well-synchronized program, ordered after
//! those writes; functional effects happen at an instruction's start, so
//! the bytes are copied just before that transfer executes. A tensor no
//! later transfer touches is copied at the end of the run. Only the DMA
//! reaches DRAM, so only its transfers are checked.

use tessera_isa::{Loadable, Mem};

use crate::memory::Memories;

/// A DRAM tensor to snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watch {
    /// First byte in DRAM.
    pub addr: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// One past the last instruction of the kernels that compute it.
    pub ready_pc: u32,
}

impl Watch {
    /// A watch for every debug tensor the loadable records, in its order.
    pub fn every_tensor(loadable: &Loadable) -> Vec<Watch> {
        loadable
            .tensors
            .iter()
            .map(|t| {
                let desc = t.desc();
                Watch {
                    addr: desc.dram_addr,
                    bytes: desc.bytes(),
                    ready_pc: t.ready_pc,
                }
            })
            .collect()
    }
}

/// The watches of one run and the snapshots taken so far.
pub(super) struct Watcher {
    watches: Vec<Watch>,
    /// Watch indices by `ready_pc`, and how many of them are armed.
    by_ready: Vec<usize>,
    next: usize,
    /// Armed, not yet taken.
    armed: Vec<usize>,
    taken: Vec<Option<Vec<u8>>>,
}

impl Watcher {
    pub(super) fn new(watches: &[Watch]) -> Watcher {
        let mut by_ready: Vec<usize> = (0..watches.len()).collect();
        by_ready.sort_by_key(|&i| watches[i].ready_pc);
        Watcher {
            watches: watches.to_vec(),
            by_ready,
            next: 0,
            armed: Vec::new(),
            taken: vec![None; watches.len()],
        }
    }

    /// Whether anything is watched (else no transfer needs looking at).
    pub(super) fn active(&self) -> bool {
        !self.watches.is_empty()
    }

    /// Before the transfer at `pc` with footprint `ranges` executes: copies
    /// every final watched tensor it touches.
    pub(super) fn before_transfer(
        &mut self,
        pc: u32,
        ranges: &[(Mem, i128, i128, bool)],
        mems: &Memories,
    ) {
        if self.watches.is_empty() {
            return;
        }
        while let Some(&i) = self.by_ready.get(self.next) {
            if self.watches[i].ready_pc > pc {
                break;
            }
            self.armed.push(i);
            self.next += 1;
        }
        let watches = &self.watches;
        let touched = |i: usize| {
            let w = &watches[i];
            let (lo, hi) = (i128::from(w.addr), i128::from(w.addr) + i128::from(w.bytes));
            w.ready_pc <= pc
                && ranges
                    .iter()
                    .any(|&(mem, a, b, _)| mem == Mem::Dram && a < hi && lo < b)
        };
        let mut k = 0;
        while k < self.armed.len() {
            let i = self.armed[k];
            if touched(i) {
                self.taken[i] = Some(read(mems, &self.watches[i]));
                self.armed.swap_remove(k);
            } else {
                k += 1;
            }
        }
    }

    /// Every snapshot, copying the tensors no transfer touched after they
    /// were ready from the final memory.
    pub(super) fn finish(self, mems: &Memories) -> Vec<Vec<u8>> {
        self.taken
            .into_iter()
            .zip(&self.watches)
            .map(|(taken, w)| taken.unwrap_or_else(|| read(mems, w)))
            .collect()
    }
}

/// The watched bytes (zeros past the end of DRAM, which the loadable's
/// validation rules out for compiled programs).
fn read(mems: &Memories, w: &Watch) -> Vec<u8> {
    let mut out = vec![0u8; w.bytes as usize];
    let _ = mems.read(Mem::Dram, w.addr, &mut out);
    out
}
