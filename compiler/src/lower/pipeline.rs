//! The streaming pipeline most vector kernels share: for each tile, the DMA
//! loads its operands into one of two slots, the VPU computes, the DMA
//! stores the result — with the store of tile `i` issued after the loads of
//! tile `i + 1`, so loading, computing and storing overlap.
//!
//! Synchronization needs only two data channels: dma→vpu "tile `i`
//! loaded" and vpu→dma "tile `i` computed". A slot is reloaded (tile
//! `i + 2`) only after the DMA stored tile `i`, which it did after the VPU
//! finished it; the DMA's own order carries that guarantee.

use tessera_isa::Engine;

use crate::kernel::{Affine, Chan, Cmp, Stmt, Var};

/// A pipelined tile loop.
pub struct Stream {
    /// Loops around the pipelined loop, outermost first.
    pub outer: Vec<(Var, u64)>,
    /// The pipelined loop.
    pub inner: (Var, u64),
    /// The slot rotator (mod 2) the statements index buffers with.
    pub slot: Var,
    /// DMA statements loading the current tile.
    pub loads: Vec<Stmt>,
    /// VPU statements computing the current tile.
    pub compute: Vec<Stmt>,
    /// DMA statements storing the current tile.
    pub stores: Vec<Stmt>,
}

/// The body for a stream (the kernel declares `slot` as a rotator mod 2).
pub fn build(stream: Stream) -> Vec<Stmt> {
    let (inner, count) = stream.inner;
    let slot = stream.slot;
    // The previous tile: inner − 1, slot 1 − slot.
    let previous = |stmts: &[Stmt], inner_value: Affine| -> Vec<Stmt> {
        let prev_slot = Affine::var(1, slot, -1);
        stmts
            .iter()
            .map(|s| {
                s.map_affine(&|a: &Affine| {
                    a.substitute(inner, &inner_value)
                        .substitute(slot, &prev_slot)
                })
            })
            .collect()
    };
    let data_in = Chan::data(Engine::Dma, Engine::Vpu);
    let data_out = Chan::data(Engine::Vpu, Engine::Dma);
    let mut store_prev = vec![Stmt::Wait(data_out, 1)];
    store_prev.extend(previous(&stream.stores, Affine::var(-1, inner, 1)));
    let mut store_last = vec![Stmt::Wait(data_out, 1)];
    store_last.extend(previous(&stream.stores, Affine::c(count as i64 - 1)));

    let mut body = stream.loads;
    body.push(Stmt::Signal(data_in, 1));
    body.push(Stmt::Wait(data_in, 1));
    body.extend(stream.compute);
    body.push(Stmt::Signal(data_out, 1));
    body.push(Stmt::If {
        lhs: Affine::var(0, inner, 1),
        cmp: Cmp::Ge,
        value: 1,
        body: store_prev,
    });
    body.push(Stmt::Advance(slot));

    let mut nest = vec![Stmt::For {
        var: inner,
        count,
        body,
    }];
    nest.extend(store_last);
    for &(var, n) in stream.outer.iter().rev() {
        nest = vec![Stmt::For {
            var,
            count: n,
            body: nest,
        }];
    }
    nest
}
