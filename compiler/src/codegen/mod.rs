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

use tessera_isa::{
    AccAddr, AccMode, BranchTarget, DmaAddr, DramAddr, Engine, Imm32, Imm64, Instr, Mem, OnChip,
    Reg, Sem, SourceRange, SpmAddr, Target, Val, U16,
};

use crate::kernel::{Addr, Affine, Chan, Cmp, DmaDim, Ext, Kernel, KernelProgram, Mode, Stmt, Var};

mod balance;
mod peephole;
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

impl<'t> Emitter<'t> {
    fn err(&self, message: impl Into<String>) -> CodegenError {
        CodegenError::Kernel {
            kernel: self.kernel.clone(),
            message: message.into(),
        }
    }

    fn emit(&mut self, i: Instr) {
        self.code.push(i);
    }

    fn new_label(&mut self) -> usize {
        self.labels.push(None);
        self.labels.len() - 1
    }

    fn place(&mut self, label: usize) {
        self.labels[label] = Some(self.code.len());
        // Control flow merges here: the DMA dims are no longer known.
        self.dma_dims = [None; 3];
    }

    fn branch(&mut self, make: impl Fn(BranchTarget) -> Instr, label: usize) {
        self.fixups.push(Fixup {
            at: self.code.len(),
            label,
        });
        self.emit(make(BranchTarget(0)));
    }

    fn temp(&mut self) -> Result<Reg, CodegenError> {
        if TEMP_BASE + self.temps_used >= 32 {
            return Err(self.err("out of temporary registers for one instruction"));
        }
        self.temps_used += 1;
        Ok(Reg(TEMP_BASE + self.temps_used - 1))
    }

    fn free_temps(&mut self) {
        self.temps_used = 0;
    }

    fn li(&mut self, value: i64) -> Result<Reg, CodegenError> {
        if value == 0 {
            return Ok(Reg::ZERO);
        }
        let t = self.temp()?;
        self.emit(Instr::Li {
            rd: t,
            imm: Imm64(value),
        });
        Ok(t)
    }

    fn var_reg(&self, v: Var) -> Result<Reg, CodegenError> {
        self.loop_regs
            .get(&v)
            .copied()
            .or_else(|| self.rotators.get(&v).map(|r| r.0))
            .ok_or_else(|| self.err(format!("variable v{} used outside its loop", v.0)))
    }

    /// The variable part of an affine expression in a register (r0 if none).
    fn terms_reg(&mut self, a: &Affine) -> Result<Reg, CodegenError> {
        let mut acc: Option<Reg> = None;
        for &(v, k) in &a.terms {
            let r = self.var_reg(v)?;
            let term = if k == 1 {
                r
            } else {
                let t = self.temp()?;
                if fits(k, 32) {
                    self.emit(Instr::Muli {
                        rd: t,
                        rs1: r,
                        imm: Imm32(k as i32),
                    });
                } else {
                    let kr = self.li(k)?;
                    self.emit(Instr::Mul {
                        rd: t,
                        rs1: r,
                        rs2: kr,
                    });
                }
                t
            };
            acc = Some(match acc {
                None => term,
                Some(prev) => {
                    let t = self.temp()?;
                    self.emit(Instr::Add {
                        rd: t,
                        rs1: prev,
                        rs2: term,
                    });
                    t
                }
            });
        }
        Ok(acc.unwrap_or(Reg::ZERO))
    }

    /// A register holding the whole expression.
    fn affine_reg(&mut self, a: &Affine) -> Result<Reg, CodegenError> {
        let base = self.terms_reg(a)?;
        if a.constant == 0 {
            return Ok(base);
        }
        if base == Reg::ZERO {
            return self.li(a.constant);
        }
        let t = self.temp()?;
        if fits(a.constant, 32) {
            self.emit(Instr::Addi {
                rd: t,
                rs1: base,
                imm: Imm32(a.constant as i32),
            });
        } else {
            let c = self.li(a.constant)?;
            self.emit(Instr::Add {
                rd: t,
                rs1: base,
                rs2: c,
            });
        }
        Ok(t)
    }

    /// Base register and immediate offset for an address whose immediate
    /// field has `bits` bits.
    fn base_off(&mut self, a: &Affine, bits: u32) -> Result<(Reg, i32), CodegenError> {
        if fits(a.constant, bits) {
            Ok((self.terms_reg(a)?, a.constant as i32))
        } else {
            Ok((self.affine_reg(a)?, 0))
        }
    }

    /// A size in a register.
    fn ext_reg(&mut self, e: &Ext) -> Result<Reg, CodegenError> {
        match e {
            Ext::Const(n) => self.li(*n as i64),
            Ext::Tail { tile, limit, start } => {
                let s = self.affine_reg(start)?;
                let t = self.temp()?;
                let l = self.li(*limit)?;
                self.emit(Instr::Sub {
                    rd: t,
                    rs1: l,
                    rs2: s,
                });
                let tile = self.imm32(*tile)?;
                self.emit(Instr::Mini {
                    rd: t,
                    rs1: t,
                    imm: tile,
                });
                self.emit(Instr::Maxi {
                    rd: t,
                    rs1: t,
                    imm: Imm32(0),
                });
                Ok(t)
            }
            Ext::Scaled(inner, k) => {
                let r = self.ext_reg(inner)?;
                let t = self.temp()?;
                let k = self.imm32(*k)?;
                self.emit(Instr::Muli {
                    rd: t,
                    rs1: r,
                    imm: k,
                });
                Ok(t)
            }
        }
    }

    /// A tile size or scale as a 32-bit immediate (kernels keep these small;
    /// a larger one is a lowering bug, not something to truncate).
    fn imm32(&self, n: u64) -> Result<Imm32, CodegenError> {
        i32::try_from(n)
            .map(Imm32)
            .map_err(|_| self.err(format!("size {n} does not fit a 32-bit immediate")))
    }

    /// A size as a `Val` (register + 16-bit immediate).
    fn ext_val(&mut self, e: &Ext) -> Result<Val, CodegenError> {
        match e {
            Ext::Const(n) if *n <= 65535 => Ok(Val::imm(*n as u16)),
            other => Ok(Val::reg(self.ext_reg(other)?)),
        }
    }

    /// A constant as a `Val`.
    fn const_val(&mut self, n: u64) -> Result<Val, CodegenError> {
        self.ext_val(&Ext::Const(n))
    }

    fn onchip(&mut self, a: &Addr) -> Result<OnChip, CodegenError> {
        let (base, off) = self.base_off(&a.at, 20)?;
        OnChip::new(a.mem, base, off)
            .ok_or_else(|| self.err(format!("{} is not an on-chip memory", a.mem)))
    }

    fn spm(&mut self, a: &Affine) -> Result<SpmAddr, CodegenError> {
        let (base, off) = self.base_off(a, 20)?;
        SpmAddr::new(Mem::Spm, base, off).ok_or_else(|| self.err("bad SPM operand"))
    }

    fn acc(&mut self, a: &Affine) -> Result<AccAddr, CodegenError> {
        let (base, off) = self.base_off(a, 20)?;
        AccAddr::new(Mem::Acc, base, off).ok_or_else(|| self.err("bad ACC operand"))
    }

    fn dma_addr(&mut self, a: &Addr) -> Result<DmaAddr, CodegenError> {
        let (base, off) = self.base_off(&a.at, 32)?;
        DmaAddr::new(a.mem, base, off)
            .ok_or_else(|| self.err(format!("the DMA cannot address {}", a.mem)))
    }

    fn stmts(&mut self, body: &[Stmt]) -> Result<(), CodegenError> {
        for s in body {
            self.stmt(s)?;
            self.free_temps();
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), CodegenError> {
        match s {
            Stmt::For { var, count, body } => self.for_loop(*var, *count, body)?,
            Stmt::Copy {
                dst,
                src,
                run,
                dims,
            } => self.copy(dst, src, run, dims)?,
            Stmt::Gather {
                dst,
                table,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => {
                let dst = self.spm(dst)?;
                let (tb, to) = self.base_off(table, 32)?;
                let table =
                    DramAddr::new(Mem::Dram, tb, to).ok_or_else(|| self.err("bad table"))?;
                let idx = self.spm(idx)?;
                let rows = self.ext_reg(rows)?;
                let bytes = self.li(*bytes as i64)?;
                let limit = self.li(*limit as i64)?;
                self.emit(Instr::DmaGather {
                    dst,
                    table,
                    idx,
                    rows,
                    bytes,
                    limit,
                    itype: *itype,
                });
            }
            Stmt::Scatter {
                table,
                src,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => {
                let (tb, to) = self.base_off(table, 32)?;
                let table =
                    DramAddr::new(Mem::Dram, tb, to).ok_or_else(|| self.err("bad table"))?;
                let src = self.spm(src)?;
                let idx = self.spm(idx)?;
                let rows = self.ext_reg(rows)?;
                let bytes = self.li(*bytes as i64)?;
                let limit = self.li(*limit as i64)?;
                self.emit(Instr::DmaScatter {
                    table,
                    src,
                    idx,
                    rows,
                    bytes,
                    limit,
                    itype: *itype,
                });
            }
            Stmt::LoadW {
                src,
                k,
                n,
                stride,
                dtype,
                trans,
            } => {
                let src = self.spm(src)?;
                let k = self.ext_val(k)?;
                let n = self.ext_val(n)?;
                let stride = self.const_val(*stride)?;
                self.emit(Instr::MxuLoadW {
                    src,
                    k,
                    n,
                    stride,
                    dtype: *dtype,
                    trans: *trans,
                });
            }
            Stmt::Matmul {
                dst,
                a,
                m,
                astride,
                dstride,
                mode,
            } => {
                let dst = self.acc(dst)?;
                let a = self.spm(a)?;
                let m = self.ext_val(m)?;
                let astride = self.const_val(*astride)?;
                let dstride = self.const_val(*dstride)?;
                let mm = |mode| Instr::MxuMatmul {
                    dst,
                    a,
                    m,
                    astride,
                    dstride,
                    mode,
                };
                match mode {
                    Mode::Fixed(mode) => self.emit(mm(*mode)),
                    Mode::AccAfterFirst(v) => self.set_then_acc(*v, mm)?,
                }
            }
            Stmt::Vpu(v) => self.vpu(v)?,
            Stmt::Signal(chan, n) => {
                let (sem, n) = (Sem(chan.semaphore()), U16(*n));
                self.emit(match chan.producer() {
                    Engine::Dma => Instr::DmaSignal { sem, n },
                    Engine::Mxu => Instr::MxuSignal { sem, n },
                    _ => Instr::VpuSignal { sem, n },
                });
            }
            Stmt::Wait(chan, n) => {
                let (sem, n) = (Sem(chan.semaphore()), U16(*n));
                self.emit(match chan.consumer() {
                    Engine::Dma => Instr::DmaWait { sem, n },
                    Engine::Mxu => Instr::MxuWait { sem, n },
                    _ => Instr::VpuWait { sem, n },
                });
            }
            Stmt::If {
                lhs,
                cmp,
                value,
                body,
            } => {
                let r = self.affine_reg(lhs)?;
                let v = self.li(*value)?;
                let skip = self.new_label();
                // Branch around the body when the condition fails.
                let skip_if: fn(Reg, Reg, BranchTarget) -> Instr = match cmp {
                    Cmp::Eq => |rs1, rs2, target| Instr::Bne { rs1, rs2, target },
                    Cmp::Ne => |rs1, rs2, target| Instr::Beq { rs1, rs2, target },
                    Cmp::Lt => |rs1, rs2, target| Instr::Bge { rs1, rs2, target },
                    Cmp::Ge => |rs1, rs2, target| Instr::Blt { rs1, rs2, target },
                };
                self.branch(|t| skip_if(r, v, t), skip);
                self.free_temps();
                self.stmts(body)?;
                self.place(skip);
            }
            Stmt::Advance(var) => {
                let (r, modulus) = *self
                    .rotators
                    .get(var)
                    .ok_or_else(|| self.err(format!("v{} is not a rotating variable", var.0)))?;
                self.emit(Instr::Addi {
                    rd: r,
                    rs1: r,
                    imm: Imm32(1),
                });
                let m = self.li(modulus as i64)?;
                self.emit(Instr::Remu {
                    rd: r,
                    rs1: r,
                    rs2: m,
                });
            }
            Stmt::Note(_) => {}
        }
        Ok(())
    }

    /// `make(set)` on the first iteration of the loop over `var`,
    /// `make(acc)` after: a branch on the loop register.
    fn set_then_acc(
        &mut self,
        var: Var,
        make: impl Fn(AccMode) -> Instr,
    ) -> Result<(), CodegenError> {
        let r = self.var_reg(var)?;
        let (acc_label, done) = (self.new_label(), self.new_label());
        self.branch(
            |target| Instr::Bne {
                rs1: r,
                rs2: Reg::ZERO,
                target,
            },
            acc_label,
        );
        self.emit(make(AccMode::Set));
        self.branch(|target| Instr::Jmp { target }, done);
        self.place(acc_label);
        self.emit(make(AccMode::Acc));
        self.place(done);
        Ok(())
    }

    fn for_loop(&mut self, var: Var, count: u64, body: &[Stmt]) -> Result<(), CodegenError> {
        if count == 0 {
            return Ok(());
        }
        if self.depth >= MAX_DEPTH {
            return Err(self.err(format!("loops nest deeper than {MAX_DEPTH}")));
        }
        let reg = Reg(LOOP_BASE + self.depth as u8);
        if self.loop_regs.insert(var, reg).is_some() {
            return Err(self.err(format!("variable v{} bound twice", var.0)));
        }
        self.depth += 1;
        self.emit(Instr::Li {
            rd: reg,
            imm: Imm64(0),
        });
        let top = self.new_label();
        self.place(top);
        self.stmts(body)?;
        self.emit(Instr::Addi {
            rd: reg,
            rs1: reg,
            imm: Imm32(1),
        });
        let limit = self.li(count as i64)?;
        self.branch(
            |t| Instr::Blt {
                rs1: reg,
                rs2: limit,
                target: t,
            },
            top,
        );
        self.free_temps();
        self.depth -= 1;
        self.loop_regs.remove(&var);
        // After the loop the dims are whatever the last iteration left.
        self.dma_dims = [None; 3];
        Ok(())
    }

    fn copy(
        &mut self,
        dst: &Addr,
        src: &Addr,
        run: &Ext,
        dims: &[DmaDim],
    ) -> Result<(), CodegenError> {
        if dims.len() > 3 {
            return Err(self.err("a DMA copy has at most 3 outer dimensions"));
        }
        for d in 0..3 {
            let (count, sstride, dstride) = match dims.get(d) {
                Some(dim) => {
                    let ss = i32::try_from(dim.sstride)
                        .map_err(|_| self.err("DMA source stride beyond 32 bits"))?;
                    let ds = i32::try_from(dim.dstride)
                        .map_err(|_| self.err("DMA destination stride beyond 32 bits"))?;
                    (self.ext_val(&dim.count)?, ss, ds)
                }
                None => (Val::imm(1), 0, 0),
            };
            let known =
                count.reg == Reg::ZERO && self.dma_dims[d] == Some((count, sstride, dstride));
            if !known {
                let dim = [
                    tessera_isa::DmaDim::D1,
                    tessera_isa::DmaDim::D2,
                    tessera_isa::DmaDim::D3,
                ][d];
                self.emit(Instr::DmaDim {
                    dim,
                    count,
                    sstride: Imm32(sstride),
                    dstride: Imm32(dstride),
                });
                self.dma_dims[d] = (count.reg == Reg::ZERO).then_some((count, sstride, dstride));
            }
        }
        let bytes = self.ext_val(run)?;
        let dst = self.dma_addr(dst)?;
        let src = self.dma_addr(src)?;
        self.emit(Instr::DmaCopy { dst, src, bytes });
        Ok(())
    }

    fn resolve(mut self) -> Result<Vec<Instr>, CodegenError> {
        for f in std::mem::take(&mut self.fixups) {
            let dest =
                self.labels[f.label].ok_or_else(|| self.err("branch to an unplaced label"))?;
            let offset = BranchTarget(dest as i32 - f.at as i32);
            self.code[f.at] = match self.code[f.at] {
                Instr::Bne { rs1, rs2, .. } => Instr::Bne {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Beq { rs1, rs2, .. } => Instr::Beq {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Blt { rs1, rs2, .. } => Instr::Blt {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Bge { rs1, rs2, .. } => Instr::Bge {
                    rs1,
                    rs2,
                    target: offset,
                },
                Instr::Jmp { .. } => Instr::Jmp { target: offset },
                other => return Err(self.err(format!("cannot patch `{other}`"))),
            };
        }
        Ok(self.code)
    }
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
