//! Kernel IR: tiled loop nests over explicit buffers, one per NPU kernel.
//!
//! Lowering turns each NPU-native Graph IR op into a [`Kernel`]: counted
//! loops whose bodies are tensor instructions with *symbolic* addresses and
//! sizes — affine in the loop variables ([`Affine`]) and clipped at tensor
//! edges ([`Ext`]) — plus explicit synchronization over [`Chan`]nels. The
//! lowering decides tiles, buffers, loop order and synchronization; codegen
//! only allocates registers, materializes addresses and emits instructions.
//!
//! The text form (`--emit kernels`) is the `Display` of [`KernelProgram`].

use std::fmt;

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType, Engine, IdxType, Mem, MxuType, Order, RedFunc, ScaleOp, Trans,
    UnFunc,
};

mod print;
mod rewrite;

/// A loop variable: the iteration index (0, 1, …) of an enclosing `For`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u16);

/// `constant + Σ coefficient · variable`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Default)]
pub struct Affine {
    /// The constant term.
    pub constant: i64,
    /// (variable, coefficient) terms, at most one per variable.
    pub terms: Vec<(Var, i64)>,
}

impl Affine {
    /// A constant.
    pub fn c(constant: i64) -> Affine {
        Affine {
            constant,
            terms: Vec::new(),
        }
    }

    /// `constant + coefficient · var`.
    pub fn var(constant: i64, var: Var, coefficient: i64) -> Affine {
        Affine::c(constant).plus(var, coefficient)
    }

    /// Adds `coefficient · var`.
    pub fn plus(mut self, var: Var, coefficient: i64) -> Affine {
        if coefficient != 0 {
            match self.terms.iter_mut().find(|(v, _)| *v == var) {
                Some(t) => t.1 += coefficient,
                None => self.terms.push((var, coefficient)),
            }
            self.terms.retain(|(_, k)| *k != 0);
        }
        self
    }

    /// Adds a constant.
    pub fn offset(mut self, delta: i64) -> Affine {
        self.constant += delta;
        self
    }

    /// Adds another expression.
    pub fn plus_affine(mut self, other: &Affine) -> Affine {
        self.constant += other.constant;
        for &(v, k) in &other.terms {
            self = self.plus(v, k);
        }
        self
    }

    /// Whether it has no variables.
    pub fn is_const(&self) -> bool {
        self.terms.is_empty()
    }

    /// The value for given variable values.
    pub fn eval(&self, vars: &dyn Fn(Var) -> i64) -> i64 {
        self.terms
            .iter()
            .fold(self.constant, |acc, &(v, k)| acc + k * vars(v))
    }
}

/// A size: a constant, or a tile clipped at a tensor edge,
/// `clamp(limit - start, 0, tile)`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Ext {
    /// A fixed size.
    Const(u64),
    /// `min(tile, limit - start)`, at least 0.
    Tail {
        /// Full tile size.
        tile: u64,
        /// The edge.
        limit: i64,
        /// Where this tile starts.
        start: Affine,
    },
    /// `Ext` times a constant (e.g. a row count in bytes).
    Scaled(Box<Ext>, u64),
}

impl Ext {
    /// The largest value it can take.
    pub fn max(&self) -> u64 {
        match self {
            Ext::Const(n) => *n,
            Ext::Tail { tile, .. } => *tile,
            Ext::Scaled(e, k) => e.max() * k,
        }
    }

    /// The value for given variable values.
    pub fn eval(&self, vars: &dyn Fn(Var) -> i64) -> u64 {
        match self {
            Ext::Const(n) => *n,
            Ext::Tail { tile, limit, start } => {
                (limit - start.eval(vars)).clamp(0, *tile as i64) as u64
            }
            Ext::Scaled(e, k) => e.eval(vars) * k,
        }
    }

    /// `self · k`.
    pub fn scaled(self, k: u64) -> Ext {
        match self {
            Ext::Const(n) => Ext::Const(n * k),
            other if k == 1 => other,
            other => Ext::Scaled(Box::new(other), k),
        }
    }

    /// A tile of `tile` elements starting at `start` within `0..limit`;
    /// constant when every tile is full.
    pub fn tile(tile: u64, limit: u64, start: Affine) -> Ext {
        if start.is_const() {
            Ext::Const((limit as i64 - start.constant).clamp(0, tile as i64) as u64)
        } else if limit % tile.max(1) == 0 {
            Ext::Const(tile.min(limit))
        } else {
            Ext::Tail {
                tile,
                limit: limit as i64,
                start,
            }
        }
    }
}

/// A byte address in one memory.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Addr {
    /// The memory.
    pub mem: Mem,
    /// The byte address.
    pub at: Affine,
}

impl Addr {
    /// An address.
    pub fn new(mem: Mem, at: Affine) -> Addr {
        Addr { mem, at }
    }

    /// The address plus `coefficient · var`.
    pub fn plus(self, var: Var, coefficient: i64) -> Addr {
        Addr {
            mem: self.mem,
            at: self.at.plus(var, coefficient),
        }
    }
}

/// A VPU source operand: address, row stride and broadcast mode.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Opnd {
    /// Address of element (0, 0).
    pub addr: Addr,
    /// Bytes between rows.
    pub stride: u64,
    /// How element (i, j) is found.
    pub bcast: Bcast,
}

/// A producer → consumer synchronization channel between two engines; each
/// is one semaphore (SPEC.md §6: one signaling and one waiting engine).
///
/// Every directed engine pair has [`Chan::LANES`] lanes. Tokens on one
/// semaphore are consumed first-in, first-out, so one lane must carry one
/// purpose within a kernel: by convention lane 0 carries "data ready"
/// notifications and lane 1 carries "slot free" credits (pre-signaled at
/// kernel start, drained at its end).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Chan {
    /// Signaling engine.
    pub from: Engine,
    /// Waiting engine.
    pub to: Engine,
    /// Lane (0 data, 1 credits).
    pub lane: u8,
}

impl Chan {
    /// Lanes per directed pair.
    pub const LANES: u8 = 2;
    /// Semaphores used in all.
    pub const SEMAPHORES: u8 = 6 * Chan::LANES;

    /// The data lane from `from` to `to`.
    pub fn data(from: Engine, to: Engine) -> Chan {
        Chan { from, to, lane: 0 }
    }

    /// The credit lane from `from` to `to`.
    pub fn credit(from: Engine, to: Engine) -> Chan {
        Chan { from, to, lane: 1 }
    }

    /// The signaling engine.
    pub fn producer(self) -> Engine {
        self.from
    }

    /// The waiting engine.
    pub fn consumer(self) -> Engine {
        self.to
    }

    /// The semaphore number: six directed pairs, `LANES` each.
    pub fn semaphore(self) -> u8 {
        let pair = match (self.from, self.to) {
            (Engine::Dma, Engine::Mxu) => 0,
            (Engine::Dma, Engine::Vpu) => 1,
            (Engine::Mxu, Engine::Dma) => 2,
            (Engine::Mxu, Engine::Vpu) => 3,
            (Engine::Vpu, Engine::Dma) => 4,
            _ => 5,
        };
        pair * Chan::LANES + self.lane
    }
}

impl fmt::Display for Chan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let lane = if self.lane == 0 { "data" } else { "credit" };
        write!(f, "{}->{}.{lane}", self.from, self.to)
    }
}

/// Whether an `mxu.mm` or reduction overwrites or accumulates.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Always one mode.
    Fixed(AccMode),
    /// `set` on the first iteration of the loop over `Var`, `acc` after.
    AccAfterFirst(Var),
}

/// One outer dimension of a DMA copy.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DmaDim {
    /// Number of runs.
    pub count: Ext,
    /// Source byte stride.
    pub sstride: i64,
    /// Destination byte stride.
    pub dstride: i64,
}

/// A VPU instruction: what it computes ([`VpuOp`]) over a `rows × cols`
/// block written at `dst` with row stride `dstride`.
#[derive(Clone, Debug, PartialEq)]
pub struct VpuStmt {
    /// The operation and its operands.
    pub op: VpuOp,
    /// Destination address.
    pub dst: Addr,
    /// Destination row stride in bytes.
    pub dstride: u64,
    /// Rows of the block.
    pub rows: Ext,
    /// Columns of the block.
    pub cols: Ext,
}

/// The operation of a [`VpuStmt`], with the operands only it has.
#[derive(Clone, Debug, PartialEq)]
#[allow(missing_docs)]
pub enum VpuOp {
    Bin {
        func: BinFunc,
        a: Opnd,
        b: Opnd,
    },
    BinS {
        func: BinFunc,
        a: Opnd,
        scalar: f32,
        order: Order,
    },
    Un {
        func: UnFunc,
        a: Opnd,
    },
    Red {
        func: RedFunc,
        a: Opnd,
        mode: Mode,
    },
    Cvt {
        dtype: DType,
        a: Addr,
        atype: DType,
        astride: u64,
    },
    Fill {
        bits: u32,
    },
    Trans {
        a: Addr,
        astride: u64,
        dtype: DType,
    },
    /// `vpu.dequant`: `f32(a) × s`, `a` of type `atype` (zero point 0).
    Dequant {
        a: Opnd,
        s: Opnd,
        atype: DType,
    },
    /// `vpu.quant`: `a ÷ s` (or `a × s`, `by` = `mul`, `s` then the
    /// reciprocal scales) into `dtype` (i8/u8 rounded and saturated, FP8
    /// saturating; zero point 0), one byte per element; `s` per tensor, row
    /// or column (`s.bcast`, the stride of a column being 4).
    Quant {
        a: Opnd,
        s: Opnd,
        dtype: DType,
        by: ScaleOp,
        /// The zero point added after rounding (i8/u8).
        zp: i32,
    },
}

/// What an 8-bit `mxu.ldw` adds to its weights.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum WeightQuant {
    /// Integer modes: the zero points of A and of the weights.
    ZeroPoints(ZeroPoint, ZeroPoint),
    /// FP8 modes: the weight tile's block scales in SPM, and the byte
    /// stride between the rows of A's block scales.
    Scales {
        /// SPM address of the tile's scales.
        at: Affine,
        /// Bytes between consecutive rows' A scales.
        a_stride: u64,
    },
}

/// An integer GEMM's zero point of A.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ZeroPoint {
    /// Known when compiling: an `mxu.ldw` register value.
    Const(i32),
    /// Computed at run time: one element of A's type at this address (in
    /// SPM for a `LoadW`, read with `azsrc=spm`).
    At(Affine),
}

impl fmt::Display for ZeroPoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ZeroPoint::Const(z) => write!(f, "{z}"),
            ZeroPoint::At(at) => write!(f, "spm[{at}]"),
        }
    }
}

/// A statement of a kernel body.
#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for var in 0..count { body }`.
    For {
        /// The index variable.
        var: Var,
        /// Iterations (≥ 1).
        count: u64,
        /// The body.
        body: Vec<Stmt>,
    },
    /// `dma.copy` of `run`-byte runs shaped by up to three outer dims.
    Copy {
        /// Destination.
        dst: Addr,
        /// Source.
        src: Addr,
        /// Bytes per contiguous run.
        run: Ext,
        /// Outer dimensions, innermost first (at most 3).
        dims: Vec<DmaDim>,
    },
    /// `dma.gather` of table rows selected by indices in SPM.
    Gather {
        /// SPM destination.
        dst: Affine,
        /// DRAM table.
        table: Affine,
        /// SPM indices.
        idx: Affine,
        /// Rows to gather.
        rows: Ext,
        /// Bytes per row.
        bytes: u64,
        /// Rows in the table.
        limit: u64,
        /// Index type.
        itype: IdxType,
    },
    /// `dma.scatter` of SPM rows to the table rows selected by indices in
    /// SPM (in order: a later equal index wins).
    Scatter {
        /// DRAM table.
        table: Affine,
        /// SPM rows.
        src: Affine,
        /// SPM indices.
        idx: Affine,
        /// Rows to scatter.
        rows: Ext,
        /// Bytes per row.
        bytes: u64,
        /// Rows in the table.
        limit: u64,
        /// Index type.
        itype: IdxType,
    },
    /// `mxu.ldw`.
    LoadW {
        /// SPM source.
        src: Affine,
        /// Reduction depth.
        k: Ext,
        /// Output width.
        n: Ext,
        /// Row stride in bytes.
        stride: u64,
        /// Input type.
        dtype: MxuType,
        /// Stored transposed.
        trans: Trans,
        /// 8-bit modes: zero points or block scales.
        quant: Option<WeightQuant>,
    },
    /// `mxu.mm`.
    Matmul {
        /// ACC destination.
        dst: Affine,
        /// SPM rows of A.
        a: Affine,
        /// Rows.
        m: Ext,
        /// A row stride.
        astride: u64,
        /// ACC row stride.
        dstride: u64,
        /// Overwrite or accumulate.
        mode: Mode,
        /// FP8 modes: SPM address of A's block scales (row `i` at
        /// `ascales + i·a_stride` of the `LoadW`).
        ascales: Option<Affine>,
    },
    /// A vector instruction.
    Vpu(VpuStmt),
    /// `producer.signal chan, n`.
    Signal(Chan, u16),
    /// `consumer.wait chan, n`.
    Wait(Chan, u16),
    /// `body` only when `lhs cmp value` (e.g. store the previous tile from
    /// the second iteration on, or skip a block of keys a causal query
    /// block cannot see). A condition on more than one loop variable must
    /// guard a body whose synchronization balances on its own.
    If {
        /// The tested expression.
        lhs: Affine,
        /// The comparison.
        cmp: Cmp,
        /// The constant compared with.
        value: i64,
        /// The guarded statements.
        body: Vec<Stmt>,
    },
    /// Advances a rotating variable: `var = (var + 1) mod modulus`.
    Advance(Var),
    /// A comment carried into the assembly.
    Note(String),
}

/// A comparison of a variable with a constant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cmp {
    /// `var == value`.
    Eq,
    /// `var != value`.
    Ne,
    /// `var < value`.
    Lt,
    /// `var >= value`.
    Ge,
}

/// A named on-chip buffer of a kernel (documentation and checks).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Name.
    pub name: String,
    /// SPM or ACC.
    pub mem: Mem,
    /// First byte.
    pub offset: u64,
    /// Bytes per slot.
    pub bytes: u64,
    /// Slots (double buffering = 2).
    pub slots: u64,
}

impl Buffer {
    /// One past the last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.bytes * self.slots
    }

    /// Address of slot `slot` plus `delta`.
    pub fn at(&self, slot: &Affine, delta: i64) -> Addr {
        let mut a = Affine::c(self.offset as i64 + delta);
        a = a.plus_affine(&Affine {
            constant: slot.constant * self.bytes as i64,
            terms: slot
                .terms
                .iter()
                .map(|&(v, k)| (v, k * self.bytes as i64))
                .collect(),
        });
        Addr::new(self.mem, a)
    }
}

/// One kernel: the lowering of one NPU-native op.
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    /// The Graph IR node it implements (the source-map name).
    pub node: String,
    /// What it computes, for dumps (`gemm 128x768x3072 +bias gelu`).
    pub summary: String,
    /// On-chip buffers.
    pub buffers: Vec<Buffer>,
    /// The body.
    pub body: Vec<Stmt>,
    /// Rotating variables (buffer slot counters) and their moduli; each
    /// starts at 0 and moves on at `Advance`.
    pub rotators: Vec<(Var, u64)>,
    /// Multiply-accumulates it performs.
    pub macs: u64,
    /// Bytes it must move to and from DRAM at least (its inputs and output).
    pub compulsory_dram_bytes: u64,
}

/// A tensor placed in DRAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DramTensor {
    /// Name (Graph IR node or ONNX graph input/output).
    pub name: String,
    /// Byte address.
    pub addr: u64,
    /// Size in bytes.
    pub bytes: u64,
    /// What it holds.
    pub kind: DramKind,
}

/// Role of a DRAM tensor.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DramKind {
    /// Graph input, written by the caller.
    Input,
    /// Graph output, read by the caller.
    Output,
    /// A constant segment of the loadable.
    Constant,
    /// An intermediate result (memory reused by liveness).
    Intermediate,
}

/// A whole lowered program: DRAM plan and kernels in execution order.
#[derive(Clone, Debug, PartialEq, Default)]
pub struct KernelProgram {
    /// DRAM tensors.
    pub dram: Vec<DramTensor>,
    /// Kernels in order.
    pub kernels: Vec<Kernel>,
    /// Peak DRAM bytes in use.
    pub dram_peak: u64,
}

impl fmt::Display for KernelProgram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        print::program(self, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn affine_terms_combine_and_cancel() {
        let (v0, v1) = (Var(0), Var(1));
        let a = Affine::var(4, v0, 8).plus(v1, 2).plus(v0, -8);
        assert_eq!(a, Affine::var(4, v1, 2));
        assert_eq!(a.eval(&|v| if v == v1 { 3 } else { 100 }), 10);
    }

    #[test]
    fn tiles_are_constant_unless_they_can_be_clipped() {
        assert_eq!(Ext::tile(8, 64, Affine::var(0, Var(0), 8)), Ext::Const(8));
        let t = Ext::tile(8, 20, Affine::var(0, Var(0), 8));
        assert_eq!(t.eval(&|_| 2), 4);
        assert_eq!(t.eval(&|_| 1), 8);
        assert_eq!(t.max(), 8);
        assert_eq!(Ext::tile(16, 5, Affine::c(0)), Ext::Const(5));
    }
}
