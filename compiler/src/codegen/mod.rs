//! Codegen: Kernel IR → ISA instructions.
//!
//! Each `For` becomes a counted loop on an index register (one per nesting
//! depth, `r1`…`r11`), rotating slot counters live in `r12`…`r15`, and
//! every symbolic address and size is materialized into
//! temporaries (`r16`…`r31`) right before its instruction, folding constant
//! parts into the instruction's immediates. Code size therefore depends on
//! the loop structure, not on tensor sizes.
//!
//! Between kernels codegen inserts a barrier: the DMA waits for the MXU's
//! and VPU's last work, then hands both an epoch token that the next kernel
//! waits for. Every kernel is thus ordered after the previous one on every
//! engine, which is what makes on-chip buffer reuse across kernels safe.
//! Within a kernel, synchronization is the lowering's `Signal`/`Wait`
//! statements; codegen checks that every channel is balanced.

use std::collections::HashMap;

use tessera_isa::{Engine, Imm64, Instr, Reg, SourceRange, Target, Val};

use crate::kernel::{Chan, Kernel, KernelProgram, Stmt, Var};

mod balance;
mod emit;
mod operands;
mod peephole;
mod stmt;
mod vpu;

use peephole::flatten;

pub use balance::check_balance;

/// First loop-index register.
const LOOP_BASE: u8 = 1;
/// Loop nesting limit.
const MAX_DEPTH: usize = 11;
/// First rotating-variable register.
const ROT_BASE: u8 = 12;
/// Rotating variables per kernel.
const MAX_ROTATORS: usize = 4;
/// First temporary register.
const TEMP_BASE: u8 = 16;

/// Why a kernel cannot be turned into code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CodegenError {
    /// The kernel breaks a codegen limit or invariant.
    #[error("kernel `{kernel}`: {message}")]
    Kernel {
        /// The kernel's node.
        kernel: String,
        /// What is wrong.
        message: String,
    },
}

/// Generated code with its source map.
#[derive(Debug, Clone, PartialEq)]
pub struct Code {
    /// The instructions.
    pub instrs: Vec<Instr>,
    /// Instruction ranges per kernel node (kernels without instructions
    /// left out).
    pub source_map: Vec<SourceRange>,
    /// Each kernel's instruction range `[start, end)`, one per kernel of the
    /// program, in order (empty for a kernel without instructions).
    pub kernel_ranges: Vec<std::ops::Range<u32>>,
}

/// A branch to patch once its label's position is known.
struct Fixup {
    at: usize,
    label: usize,
}

/// Instruction emission with labels, temporaries and loop registers.
struct Emitter<'t> {
    target: &'t Target,
    code: Vec<Instr>,
    labels: Vec<Option<usize>>,
    fixups: Vec<Fixup>,
    temps_used: u8,
    loop_regs: HashMap<Var, Reg>,
    rotators: HashMap<Var, (Reg, u64)>,
    depth: usize,
    /// DMA dimension registers as last set in straight-line code.
    dma_dims: [Option<(Val, i32, i32)>; 3],
    kernel: String,
}

fn fits(v: i64, bits: u32) -> bool {
    let limit = 1i64 << (bits - 1);
    (-limit..limit).contains(&v)
}

/// The statements that order kernel `i + 1` after kernel `i` on every engine.
fn barrier() -> (Vec<Stmt>, Vec<Stmt>) {
    use Engine::{Dma, Mxu, Vpu};
    let end = vec![
        Stmt::Signal(Chan::data(Mxu, Dma), 1),
        Stmt::Signal(Chan::data(Vpu, Dma), 1),
        Stmt::Wait(Chan::data(Mxu, Dma), 1),
        Stmt::Wait(Chan::data(Vpu, Dma), 1),
        Stmt::Signal(Chan::data(Dma, Mxu), 1),
        Stmt::Signal(Chan::data(Dma, Vpu), 1),
    ];
    let start = vec![
        Stmt::Wait(Chan::data(Dma, Mxu), 1),
        Stmt::Wait(Chan::data(Dma, Vpu), 1),
    ];
    (end, start)
}

/// Generates the whole program: kernels in order with barriers between
/// them, ending in `halt`.
pub fn generate(program: &KernelProgram, target: &Target) -> Result<Code, CodegenError> {
    if target.semaphores < u32::from(Chan::SEMAPHORES) {
        return Err(CodegenError::Kernel {
            kernel: String::new(),
            message: format!(
                "the target has {} semaphores, codegen needs {}",
                target.semaphores,
                Chan::SEMAPHORES
            ),
        });
    }
    let mut em = Emitter {
        target,
        code: Vec::new(),
        labels: Vec::new(),
        fixups: Vec::new(),
        temps_used: 0,
        loop_regs: HashMap::new(),
        rotators: HashMap::new(),
        depth: 0,
        dma_dims: [None; 3],
        kernel: String::new(),
    };
    let mut ranges: Vec<(usize, usize, String, u64, u64)> = Vec::new();
    let (end, start) = barrier();
    for (i, kernel) in program.kernels.iter().enumerate() {
        em.kernel = kernel.node.clone();
        check_balance(kernel).map_err(|m| em.err(m))?;
        let first = em.code.len();
        if i > 0 {
            em.stmts(&start)?;
        }
        if kernel.rotators.len() > MAX_ROTATORS {
            return Err(em.err(format!("more than {MAX_ROTATORS} rotating variables")));
        }
        em.rotators.clear();
        for (slot, &(var, modulus)) in kernel.rotators.iter().enumerate() {
            let r = Reg(ROT_BASE + slot as u8);
            em.rotators.insert(var, (r, modulus.max(1)));
            em.emit(Instr::Li {
                rd: r,
                imm: Imm64(0),
            });
        }
        em.stmts(&kernel.body)?;
        if i + 1 < program.kernels.len() {
            em.stmts(&end)?;
        }
        ranges.push((
            first,
            em.code.len(),
            kernel.node.clone(),
            kernel.macs,
            roofline_cycles(kernel, target),
        ));
    }
    em.emit(Instr::Halt {});
    let _ = em.target;
    let instrs = em.resolve()?;
    let kernel_ranges = ranges
        .iter()
        .map(|&(start, end, ..)| start as u32..end as u32)
        .collect();
    let source_map = ranges
        .into_iter()
        .filter(|(s, e, ..)| e > s)
        .map(|(start, end, node, macs, roofline_cycles)| SourceRange {
            start: start as u32,
            end: end as u32,
            node,
            macs,
            roofline_cycles,
            sources: Vec::new(),
        })
        .collect();
    Ok(Code {
        instrs,
        source_map,
        kernel_ranges,
    })
}

/// A kernel's lower bound on this target: the larger of its MACs at the
/// MXU's peak (bf16 rate) and its compulsory DRAM bytes at full bandwidth.
pub fn roofline_cycles(kernel: &Kernel, target: &Target) -> u64 {
    let mxu = kernel.macs.div_ceil(target.peak_macs_per_cycle().max(1));
    let dram = kernel
        .compulsory_dram_bytes
        .div_ceil(u64::from(target.dram_bytes_per_cycle).max(1));
    mxu.max(dram)
}

/// Code for a single kernel on its own (tests and examples).
pub fn generate_kernel(kernel: &Kernel, target: &Target) -> Result<Code, CodegenError> {
    let program = KernelProgram {
        kernels: vec![kernel.clone()],
        ..Default::default()
    };
    generate(&program, target)
}
