//! DRAM planning: where every tensor of the graph lives.
//!
//! Constants become loadable segments (weights the MXU reads are converted
//! to its input type at compile time), graph inputs and outputs get their
//! own regions, and intermediate results share an arena whose blocks are
//! reused once their last reader has run (liveness over the kernel order).
//! `Reshape` never moves data: its result aliases its operand.

use std::collections::{BTreeMap, HashMap};

use crate::graph::{Graph, NodeId};

use super::views::Views;

/// Alignment of every DRAM tensor.
pub const DRAM_ALIGN: u64 = 64;

/// Rounds up to the DRAM alignment.
pub fn align(x: u64) -> u64 {
    x.div_ceil(DRAM_ALIGN) * DRAM_ALIGN
}

/// First-fit allocator over an address range, with coalescing frees.
#[derive(Debug)]
pub struct Arena {
    base: u64,
    /// Free blocks: start → size.
    free: BTreeMap<u64, u64>,
    top: u64,
    /// Highest address ever used.
    pub peak: u64,
}

impl Arena {
    /// An empty arena starting at `base`.
    pub fn new(base: u64) -> Arena {
        Arena {
            base,
            free: BTreeMap::new(),
            top: base,
            peak: base,
        }
    }

    /// Allocates `bytes` (aligned); the smallest free block that fits, else
    /// new space at the top.
    pub fn alloc(&mut self, bytes: u64) -> u64 {
        let size = align(bytes.max(1));
        let best = self
            .free
            .iter()
            .filter(|(_, &s)| s >= size)
            .min_by_key(|(&a, &s)| (s, a))
            .map(|(&a, &s)| (a, s));
        if let Some((addr, s)) = best {
            self.free.remove(&addr);
            if s > size {
                self.free.insert(addr + size, s - size);
            }
            return addr;
        }
        let addr = self.top;
        self.top += size;
        self.peak = self.peak.max(self.top);
        addr
    }

    /// Returns a block.
    pub fn release(&mut self, addr: u64, bytes: u64) {
        let mut start = addr;
        let mut size = align(bytes.max(1));
        if let Some((&prev, &psize)) = self.free.range(..start).next_back() {
            if prev + psize == start {
                self.free.remove(&prev);
                start = prev;
                size += psize;
            }
        }
        if let Some(&nsize) = self.free.get(&(start + size)) {
            self.free.remove(&(start + size));
            size += nsize;
        }
        if start + size == self.top {
            self.top = start;
        } else {
            self.free.insert(start, size);
        }
    }

    /// Bytes from the base to the highest address used.
    pub fn used(&self) -> u64 {
        self.peak - self.base
    }
}

/// The node whose storage a node uses: itself, unless it is a reshape or
/// an absorbed (virtual) layout op.
pub fn storage_root(graph: &Graph, views: &Views, id: NodeId) -> NodeId {
    views.root(graph, id)
}

/// For every storage root, the position (in `order`) of its last reader;
/// graph outputs live to the end.
pub fn last_uses(graph: &Graph, views: &Views, order: &[NodeId]) -> HashMap<NodeId, usize> {
    let mut last = HashMap::new();
    for (pos, &id) in order.iter().enumerate() {
        for op in graph.operands(id) {
            let root = storage_root(graph, views, op);
            last.insert(root, pos);
        }
    }
    for (_, id) in graph.outputs() {
        last.insert(storage_root(graph, views, *id), usize::MAX);
    }
    last
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn freed_blocks_are_reused_and_coalesced() {
        let mut a = Arena::new(1000 * 64);
        let x = a.alloc(100);
        let y = a.alloc(64);
        let z = a.alloc(64);
        a.release(x, 100);
        a.release(y, 64);
        // x and y merged: 128 + 64 = 192 bytes at x.
        assert_eq!(a.alloc(190), x);
        a.release(z, 64);
        assert_eq!(a.used(), 256);
    }
}
