//! The instruction table of Tessera NPU v1: the single definition of every
//! instruction.
//!
//! Each entry: opcode, variant name, mnemonic, executing engine, positional
//! operands `( … )` and keyword operands `[ … ]`, each with its field type.
//! Fields are packed into the 128-bit little-endian word from bit 8 upward in
//! the order listed; bits above the last field are reserved and must be zero.
//! The `///` line is the instruction's one-line semantics; `isa/SPEC.md` has
//! the full definition and cost of each.

use crate::define::define_isa;
use crate::fields::*;
use crate::instr::{
    split_operands, suggest_mnemonic, DecodeError, Engine, FieldInfo, InstrInfo, Operand,
    OperandError,
};

define_isa! {
    // ---- Scalar unit: executed by the SU itself --------------------------
    /// Does nothing.
    0x01 Nop "nop" Su () [];
    /// Stops dispatch; the run ends when every engine has drained its queue.
    0x02 Halt "halt" Su () [];
    /// rd = imm
    0x03 Li "li" Su (rd: Reg, imm: Imm64) [];
    /// rd = rs1 + rs2 (wrapping)
    0x04 Add "add" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 - rs2 (wrapping)
    0x05 Sub "sub" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 * rs2 (low 64 bits)
    0x06 Mul "mul" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 / rs2 (unsigned; faults if rs2 = 0)
    0x07 Divu "divu" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 % rs2 (unsigned; faults if rs2 = 0)
    0x08 Remu "remu" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 & rs2
    0x09 And "and" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 | rs2
    0x0A Or "or" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 ^ rs2
    0x0B Xor "xor" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 << (rs2 & 63)
    0x0C Shl "shl" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 >> (rs2 & 63), logical
    0x0D Shr "shr" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 >> (rs2 & 63), arithmetic
    0x0E Sra "sra" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = (rs1 < rs2) signed ? 1 : 0
    0x0F Slt "slt" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = (rs1 < rs2) unsigned ? 1 : 0
    0x10 Sltu "sltu" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = min(rs1, rs2), signed
    0x11 Min "min" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = max(rs1, rs2), signed
    0x12 Max "max" Su (rd: Reg, rs1: Reg, rs2: Reg) [];
    /// rd = rs1 + imm (wrapping)
    0x18 Addi "addi" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = rs1 * imm (low 64 bits)
    0x19 Muli "muli" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = rs1 & imm (imm sign-extended)
    0x1A Andi "andi" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = rs1 << (imm & 63)
    0x1B Shli "shli" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = rs1 >> (imm & 63), logical
    0x1C Shri "shri" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = rs1 >> (imm & 63), arithmetic
    0x1D Srai "srai" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = (rs1 < imm) signed ? 1 : 0
    0x1E Slti "slti" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = min(rs1, imm), signed
    0x1F Mini "mini" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// rd = max(rs1, imm), signed
    0x20 Maxi "maxi" Su (rd: Reg, rs1: Reg, imm: Imm32) [];
    /// if rs1 == rs2: pc = target
    0x28 Beq "beq" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// if rs1 != rs2: pc = target
    0x29 Bne "bne" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// if rs1 < rs2 (signed): pc = target
    0x2A Blt "blt" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// if rs1 >= rs2 (signed): pc = target
    0x2B Bge "bge" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// if rs1 < rs2 (unsigned): pc = target
    0x2C Bltu "bltu" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// if rs1 >= rs2 (unsigned): pc = target
    0x2D Bgeu "bgeu" Su (rs1: Reg, rs2: Reg, target: Target) [];
    /// pc = target
    0x2E Jmp "jmp" Su (target: Target) [];
    /// rc = rc - 1; if rc != 0: pc = target (counted loop)
    0x2F Loop "loop" Su (rc: Reg, target: Target) [];

    // ---- DMA engine -------------------------------------------------------
    /// Copies a block of `bytes`-byte runs, shaped by the dims of dma.dim, src -> dst.
    0x40 DmaCopy "dma.copy" Dma (dst: DmaAddr, src: DmaAddr) [bytes: Val];
    /// Sets outer dimension `dim` of later copies: count runs, src/dst byte strides.
    0x41 DmaDim "dma.dim" Dma (dim: DmaDim) [count: Val, sstride: Imm32, dstride: Imm32];
    /// for i < rows: dst[i] = table[idx[i]] (rows of `bytes` bytes; idx < limit, negative from the end).
    0x42 DmaGather "dma.gather" Dma (dst: SpmAddr, table: DramAddr, idx: SpmAddr)
        [rows: Reg, bytes: Reg, limit: Reg, itype: IdxType];
    /// for i < rows, in order: table[idx[i]] = src[i] (rows of `bytes` bytes; idx < limit, negative from the end).
    0x43 DmaScatter "dma.scatter" Dma (table: DramAddr, src: SpmAddr, idx: SpmAddr)
        [rows: Reg, bytes: Reg, limit: Reg, itype: IdxType];
    /// Waits until semaphore sem >= n, then subtracts n (in the DMA queue).
    0x4E DmaWait "dma.wait" Dma (sem: Sem, n: U16) [];
    /// Adds n to semaphore sem once all earlier DMA instructions completed.
    0x4F DmaSignal "dma.signal" Dma (sem: Sem, n: U16) [];

    // ---- Matrix engine ----------------------------------------------------
    /// Loads a k x n weight tile from SPM into the systolic array (optionally transposed), with its zero points or block scales.
    0x60 MxuLoadW "mxu.ldw" Mxu (src: SpmAddr)
        [k: Val, n: Val, stride: Val, dtype: MxuType, trans: Trans,
         wzp: OptReg, azp: OptReg, scales: OptReg, sstride: OptReg, azsrc: ZpSrc,
         wzsrc: ZpSrc];
    /// acc[m x n] (=|+=) A[m x k] * W: streams m rows of A through the loaded weights.
    0x61 MxuMatmul "mxu.mm" Mxu (dst: AccAddr, a: SpmAddr)
        [m: Val, astride: Val, dstride: Val, mode: AccMode, ascales: OptReg];
    /// Waits until semaphore sem >= n, then subtracts n (in the MXU queue).
    0x6E MxuWait "mxu.wait" Mxu (sem: Sem, n: U16) [];
    /// Adds n to semaphore sem once all earlier MXU instructions completed.
    0x6F MxuSignal "mxu.signal" Mxu (sem: Sem, n: U16) [];

    // ---- Vector engine ----------------------------------------------------
    /// dst[i][j] = func(a[i][j], b[i][j]) over rows x cols fp32, with broadcasting.
    0x80 VpuBin "vpu.bin" Vpu (func: BinFunc, dst: OnChip, a: OnChip, b: OnChip)
        [rows: Reg, cols: Reg, dstride: Reg, astride: Reg, bstride: Reg,
         abcast: Bcast, bbcast: Bcast];
    /// dst[i][j] = func(a[i][j], s) (or func(s, a[i][j])), s = fp32 bits of register s.
    0x81 VpuBinScalar "vpu.bins" Vpu (func: BinFunc, dst: OnChip, a: OnChip, s: Reg)
        [rows: Reg, cols: Reg, dstride: Reg, astride: Reg, abcast: Bcast, order: Order];
    /// dst[i][j] = func(a[i][j]) over rows x cols fp32.
    0x82 VpuUn "vpu.un" Vpu (func: UnFunc, dst: OnChip, a: OnChip)
        [rows: Reg, cols: Reg, dstride: Reg, astride: Reg, abcast: Bcast];
    /// dst[i] (=|op=) reduce_j a[i][j]: one fp32 result per row.
    0x83 VpuRed "vpu.red" Vpu (func: RedFunc, dst: OnChip, a: OnChip)
        [rows: Reg, cols: Reg, dstride: Reg, astride: Reg, mode: AccMode];
    /// dst[i][j] = convert(a[i][j]) from atype to dtype, round to nearest even.
    0x84 VpuCvt "vpu.cvt" Vpu (dst: OnChip, a: OnChip)
        [dtype: DType, atype: DType, rows: Reg, cols: Reg, dstride: Reg, astride: Reg];
    /// dst[i][j] = fp32 bits of register value, over rows x cols.
    0x85 VpuFill "vpu.fill" Vpu (dst: OnChip)
        [value: Reg, rows: Reg, cols: Reg, dstride: Reg];
    /// dst[j][i] = a[i][j] for a rows x cols tile of dtype elements.
    0x86 VpuTrans "vpu.trans" Vpu (dst: OnChip, a: OnChip)
        [dtype: DType, rows: Reg, cols: Reg, dstride: Reg, astride: Reg];
    /// dst[i][j] = saturate(round(a[i][j] / s) + zp) as dtype (i8, u8, e4m3, e5m2), or a * s with sop=mul; s per tensor, row or column.
    0x87 VpuQuant "vpu.quant" Vpu (dst: OnChip, a: OnChip, s: OnChip)
        [dtype: DType, rows: Reg, cols: Reg, dstride: Reg, astride: Reg, sbcast: Bcast,
         zp: OptReg, sop: ScaleOp];
    /// dst[i][j] = (a[i][j] - zp) * s as fp32, a of atype (i8, u8, i32, e4m3, e5m2); s per tensor, row or column.
    0x88 VpuDequant "vpu.dequant" Vpu (dst: OnChip, a: OnChip, s: OnChip)
        [atype: DType, rows: Reg, cols: Reg, dstride: Reg, astride: Reg, sbcast: Bcast,
         zp: OptReg];
    /// Waits until semaphore sem >= n, then subtracts n (in the VPU queue).
    0x8E VpuWait "vpu.wait" Vpu (sem: Sem, n: U16) [];
    /// Adds n to semaphore sem once all earlier VPU instructions completed.
    0x8F VpuSignal "vpu.signal" Vpu (sem: Sem, n: U16) [];
}
