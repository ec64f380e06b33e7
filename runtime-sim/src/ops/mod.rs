//! Tensor instructions as resolved at dispatch, and their memory footprints.
//!
//! When the scalar unit dispatches a tensor instruction it reads every
//! register the instruction names (SPEC.md §5.1); the result is an `Op` with
//! plain numbers only, which is what the engine queues hold. The DMA
//! dimension registers are applied at dispatch too: the DMA queue is FIFO,
//! so the dims in force when a copy is dispatched are exactly those in force
//! when it starts.

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType, Mem, MxuType, Order, RedFunc, ScaleOp, Trans, UnFunc,
};

mod pattern;
mod resolve;
#[cfg(test)]
mod tests;

pub use pattern::{vpu_pattern, Pattern};
pub use resolve::resolve;

/// An address in a memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addr {
    /// Memory.
    pub mem: Mem,
    /// Byte address.
    pub addr: u64,
}

/// One outer dimension of a DMA copy: count and signed byte strides.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaDimRegs {
    /// Number of runs along this dimension.
    pub count: u64,
    /// Source stride in bytes.
    pub sstride: i64,
    /// Destination stride in bytes.
    pub dstride: i64,
}

impl Default for DmaDimRegs {
    fn default() -> Self {
        DmaDimRegs {
            count: 1,
            sstride: 0,
            dstride: 0,
        }
    }
}

/// A resolved 2-D VPU region shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Rows.
    pub rows: u64,
    /// Elements per row.
    pub cols: u64,
}

/// The register operands of `mxu.ldw` that only 8-bit inputs read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MxuQuant {
    /// Weight zero point (integer inputs).
    pub wzp: i64,
    /// A zero point (integer inputs), or with `azp_in_spm` the SPM address
    /// of an A-type element holding it.
    pub azp: i64,
    /// Whether `azp` is an SPM address (`azsrc=spm`).
    pub azp_in_spm: bool,
    /// Whether `wzp` is an SPM address (`wzsrc=spm`).
    pub wzp_in_spm: bool,
    /// SPM address of the weight block scales (FP8 inputs).
    pub scales: u64,
    /// Byte stride between the rows of A's block scales (FP8 inputs).
    pub sstride: u64,
}

/// A resolved tensor instruction.
#[derive(Debug, Clone, PartialEq)]
#[allow(missing_docs)]
pub enum Op {
    Wait {
        sem: u8,
        n: u32,
    },
    Signal {
        sem: u8,
        n: u32,
    },
    DmaDim,
    Copy {
        dst: Addr,
        src: Addr,
        bytes: u64,
        dims: [DmaDimRegs; 3],
    },
    Gather {
        dst: u64,
        table: u64,
        idx: u64,
        rows: u64,
        bytes: u64,
        limit: u64,
        i64_idx: bool,
    },
    Scatter {
        table: u64,
        src: u64,
        idx: u64,
        rows: u64,
        bytes: u64,
        limit: u64,
        i64_idx: bool,
    },
    LoadW {
        src: u64,
        k: u64,
        n: u64,
        stride: u64,
        dtype: MxuType,
        trans: Trans,
        quant: MxuQuant,
    },
    Matmul {
        dst: u64,
        a: u64,
        m: u64,
        astride: u64,
        dstride: u64,
        mode: AccMode,
        ascales: u64,
    },
    Bin {
        func: BinFunc,
        dst: Addr,
        a: Addr,
        b: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        bstride: u64,
        abcast: Bcast,
        bbcast: Bcast,
    },
    BinS {
        func: BinFunc,
        dst: Addr,
        a: Addr,
        s: f32,
        shape: Region,
        dstride: u64,
        astride: u64,
        abcast: Bcast,
        order: Order,
    },
    Un {
        func: UnFunc,
        dst: Addr,
        a: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        abcast: Bcast,
    },
    Red {
        func: RedFunc,
        dst: Addr,
        a: Addr,
        shape: Region,
        dstride: u64,
        astride: u64,
        mode: AccMode,
    },
    Cvt {
        dst: Addr,
        a: Addr,
        dtype: DType,
        atype: DType,
        shape: Region,
        dstride: u64,
        astride: u64,
    },
    /// `vpu.quant` (fp32 `a` into `qtype` `dst`) or, with `dequant`,
    /// `vpu.dequant` (`qtype` `a` into fp32 `dst`).
    Quant {
        dequant: bool,
        dst: Addr,
        a: Addr,
        s: Addr,
        qtype: DType,
        shape: Region,
        dstride: u64,
        astride: u64,
        sbcast: Bcast,
        zp: i64,
        /// How `vpu.quant` applies the scale (`div` for `vpu.dequant`).
        sop: ScaleOp,
    },
    Fill {
        dst: Addr,
        bits: u32,
        shape: Region,
        dstride: u64,
    },
    Trans {
        dst: Addr,
        a: Addr,
        dtype: DType,
        shape: Region,
        dstride: u64,
        astride: u64,
    },
}
