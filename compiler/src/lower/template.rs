//! Phases several kernel templates share: the pipelined tile size of a
//! streamed row loop, vectors loaded once before the loops, and credit
//! lanes pre-signaled before the kernel's loops and drained after them.

use tessera_isa::{Engine, Mem};

use crate::kernel::{Addr, Affine, Buffer, Chan, Ext, Stmt};

use super::alloc::balanced_tile;

/// Rows per tile of a streamed loop over `rows` rows, at most `cap`: at
/// least four tiles when there are rows enough, so that loads, compute and
/// stores overlap, and balanced so the last tile is not tiny.
pub fn pipelined_row_tile(rows: u64, cap: u64) -> u64 {
    let cap = if rows >= 16 {
        cap.min(rows.div_ceil(4))
    } else {
        cap
    };
    balanced_tile(rows, cap)
}

/// DMA loads of vectors the VPU reads throughout the kernel (scales,
/// biases): each `(buffer, DRAM address, bytes)` copied once, then one
/// dma→vpu event; nothing when there are none.
pub fn resident_vectors(vectors: &[(&Buffer, u64, u64)]) -> Vec<Stmt> {
    let mut stmts: Vec<Stmt> = vectors
        .iter()
        .map(|&(buf, addr, bytes)| Stmt::Copy {
            dst: buf.at(&Affine::c(0), 0),
            src: Addr::new(Mem::Dram, Affine::c(addr as i64)),
            run: Ext::Const(bytes),
            dims: vec![],
        })
        .collect();
    if !stmts.is_empty() {
        let loaded = Chan::data(Engine::Dma, Engine::Vpu);
        stmts.push(Stmt::Signal(loaded, 1));
        stmts.push(Stmt::Wait(loaded, 1));
    }
    stmts
}

/// `body` with each credit lane pre-signaled with its number of slots
/// before it and drained after it, so every lane ends balanced.
pub fn credited(credits: &[(Chan, u16)], body: Vec<Stmt>) -> Vec<Stmt> {
    let mut stmts: Vec<Stmt> = credits.iter().map(|&(c, n)| Stmt::Signal(c, n)).collect();
    stmts.extend(body);
    stmts.extend(credits.iter().map(|&(c, n)| Stmt::Wait(c, n)));
    stmts
}
