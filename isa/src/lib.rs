//! `tessera-isa`: the architecture of the Tessera NPU, version 2.
//!
//! One table (`table.rs`) defines every instruction; the `Instr` enum, the
//! binary encoder and decoder, the assembler and the disassembler are
//! generated from it. Around it: the hardware parameters (`Target`), the cost
//! of each instruction on a target (`cost`), the arithmetic the hardware
//! performs (`numerics`; the 8-bit formats, accumulator and quantization in
//! `lowp`) and the `.tnpu` loadable format (`loadable`).
//! `isa/SPEC.md` is the human-readable specification.

mod define;

pub mod asm;
pub mod cost;
pub mod fields;
pub mod instr;
pub mod loadable;
pub mod lowp;
pub mod numerics;
mod table;
pub mod target;

pub use asm::{assemble, disassemble, AsmError, DisasmOptions};
pub use fields::{
    AccAddr, AccMode, Bcast, BinFunc, DType, DmaAddr, DmaDim, DramAddr, Field, IdxType, Imm32,
    Imm64, Mem, MxuClass, MxuType, OnChip, OptReg, Order, RedFunc, Reg, ScaleOp, Sem, SpmAddr,
    Target as BranchTarget, Trans, UnFunc, Val, ZpSrc, U16,
};
pub use instr::{
    decode_program, encode_program, DecodeError, Engine, FieldInfo, Instr, InstrInfo, INSTRUCTIONS,
    WORD_BYTES,
};
pub use loadable::{
    DebugTensor, Loadable, LoadableError, OnnxNode, Segment, SourceRange, TensorDesc, ISA_VERSION,
};
pub use target::{Target, TargetError};
