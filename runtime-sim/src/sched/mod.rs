//! The event-driven timing model (SPEC.md §10) that drives execution.
//!
//! Four units — the SU and three engine queues — each have a *next action
//! time* computed from their state; the loop always performs the earliest
//! action (ties: SU, DMA, MXU, VPU), so every semaphore, queue and bus
//! interaction is seen in time order. Functional effects happen at an
//! instruction's start; the race detector makes that choice unobservable
//! for well-synchronized programs.

use std::collections::VecDeque;

use tessera_isa::{Engine, Instr, Mem, Target};

use crate::error::{Deadlock, Fault, InstrRef, RaceReport, SimError};
use crate::exec::{FaultKind, RawFault};
use crate::matrix::Weights;
use crate::memory::Memories;
use crate::ops::{resolve, DmaDimRegs, Op};
use crate::race::{Detector, Vc, ENGINES};
use crate::stats::{BusyUnion, StallReason, Stats, UnitStats};
use crate::trace::{tracks, Trace};

mod engine;
mod footprint;
mod scalar;
mod vector;
mod watch;

use footprint::{conflicts, footprint};
pub use watch::Watch;
use watch::Watcher;

const DMA: usize = 0;
const MXU: usize = 1;
const VPU: usize = 2;
const ENGINE_OF: [Engine; ENGINES] = [Engine::Dma, Engine::Mxu, Engine::Vpu];

/// The default cycle limit: 10^10 cycles, 10 s of NPU time at 1 GHz. Far
/// above what a single inference of the models here needs, yet low enough
/// that an infinite loop is reported after minutes of simulation, not days.
pub const DEFAULT_MAX_CYCLES: u64 = 10_000_000_000;

/// Knobs of a run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop with a fault after this many cycles (infinite loops).
    pub max_cycles: u64,
    /// Record a trace.
    pub trace: bool,
    /// DRAM tensors to snapshot as they are final (see [`Watch`]); their
    /// bytes are in [`RunResult::snapshots`], in this order.
    pub watch: Vec<Watch>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            max_cycles: DEFAULT_MAX_CYCLES,
            trace: false,
            watch: Vec::new(),
        }
    }
}

struct Queued {
    pc: u32,
    op: Op,
    dispatched: u64,
}

struct Su {
    pc: u32,
    regs: [u64; 32],
    t: u64,
    halted: bool,
    /// Blocked dispatching to this engine since this cycle.
    stalled: Option<(usize, u64)>,
    /// Cycles the pending dispatch was stalled on a full queue (for its
    /// trace slice).
    dispatch_stall: u64,
    dims: [DmaDimRegs; 3],
}

struct Inflight {
    complete: u64,
    ranges: Vec<(Mem, i128, i128, bool)>,
    slot: u32,
}

#[derive(Default)]
struct DmaState {
    last_issue: Option<u64>,
    inflight: Vec<Inflight>,
    dram_bus_free: u64,
    onchip_bus_free: u64,
    /// Cycles in which either bus moves data (the DMA's busy cycles).
    busy: BusyUnion,
}

#[derive(Default)]
struct MxuState {
    last_issue: Option<u64>,
    load_free: u64,
    stream_free: u64,
    buf_ready: [u64; 2],
    buf_stream_end: [u64; 2],
    cur: Option<usize>,
    weights: Option<Weights>,
}

/// Tokens of one signal: count, the signaler's clock, and the cycle from
/// which they can be consumed.
struct Tokens {
    count: u64,
    vc: Vc,
    arrives: u64,
}

#[derive(Default)]
struct SemState {
    /// Tokens signaled and not yet consumed (some may not have arrived).
    value: u64,
    tokens: VecDeque<Tokens>,
    signaler: Option<usize>,
    waiter: Option<usize>,
}

impl SemState {
    /// The cycle at which `n` tokens will have arrived, if they ever will
    /// given the signals issued so far.
    fn available_at(&self, n: u64) -> Option<u64> {
        let mut have = 0;
        for t in &self.tokens {
            if have >= n {
                break;
            }
            have += t.count;
            if have >= n {
                return Some(t.arrives);
            }
        }
        (n == 0).then_some(0)
    }
}

/// Outcome of a run.
pub struct RunResult {
    /// Statistics.
    pub stats: Stats,
    /// The trace, if requested.
    pub trace: Option<Trace>,
    /// The bytes of each watched tensor ([`Options::watch`]) once final.
    pub snapshots: Vec<Vec<u8>>,
}

struct Machine<'a> {
    target: &'a Target,
    code: &'a [Instr],
    node_of: &'a dyn Fn(u32) -> Option<String>,
    mems: &'a mut Memories,
    su: Su,
    queues: [VecDeque<Queued>; ENGINES],
    depth: [usize; ENGINES],
    dma: DmaState,
    mxu: MxuState,
    vpu_free: u64,
    max_complete: [u64; ENGINES],
    sems: Vec<SemState>,
    vcs: [Vc; ENGINES],
    detector: Detector,
    stats: Stats,
    units: [UnitStats; 4],
    trace: Option<Trace>,
    executed: u64,
    watcher: Watcher,
    /// `Options::max_cycles`.
    max_cycles: u64,
}

/// Runs a decoded program on initialized memories.
pub fn run(
    target: &Target,
    code: &[Instr],
    node_of: &dyn Fn(u32) -> Option<String>,
    mems: &mut Memories,
    options: &Options,
) -> Result<RunResult, SimError> {
    let mut m = Machine {
        target,
        code,
        node_of,
        mems,
        su: Su {
            pc: 0,
            regs: [0; 32],
            t: 0,
            halted: false,
            stalled: None,
            dispatch_stall: 0,
            dims: [DmaDimRegs::default(); 3],
        },
        queues: Default::default(),
        depth: [
            target.dma_queue_depth as usize,
            target.mxu_queue_depth as usize,
            target.vpu_queue_depth as usize,
        ],
        dma: DmaState::default(),
        mxu: MxuState::default(),
        vpu_free: 0,
        max_complete: [0; ENGINES],
        sems: (0..target.semaphores)
            .map(|_| SemState::default())
            .collect(),
        vcs: [[0; ENGINES]; ENGINES],
        detector: Detector::default(),
        stats: Stats {
            busy_by_pc: vec![0; code.len()],
            macs_by_pc: vec![0; code.len()],
            start_by_pc: vec![u64::MAX; code.len()],
            end_by_pc: vec![0; code.len()],
            ..Default::default()
        },
        units: Default::default(),
        trace: options.trace.then(|| Trace::new(target.clock_mhz)),
        executed: 0,
        watcher: Watcher::new(&options.watch),
        max_cycles: options.max_cycles,
    };
    m.run_loop(options.max_cycles)?;
    let end = m
        .max_complete
        .iter()
        .copied()
        .chain([m.su.t])
        .max()
        .unwrap_or(0);
    m.stats.cycles = end;
    m.units[DMA + 1].busy_cycles = m.dma.busy.total();
    for (name, unit) in ["su", "dma", "mxu", "vpu"].into_iter().zip(m.units) {
        m.stats.engines.insert(name, unit);
    }
    m.stats.race_window_peak = m.detector.peak_records;
    m.stats.finish(target);
    let snapshots = m.watcher.finish(m.mems);
    Ok(RunResult {
        stats: m.stats,
        trace: m.trace,
        snapshots,
    })
}

impl Machine<'_> {
    fn instr_ref(&self, engine: Engine, pc: u32) -> InstrRef {
        let text = self
            .code
            .get(pc as usize)
            .map(|i| i.to_asm_at(pc))
            .unwrap_or_else(|| "(outside the code)".into());
        InstrRef {
            engine,
            pc,
            text,
            node: (self.node_of)(pc),
        }
    }

    fn fault(&self, engine: Engine, pc: u32, raw: RawFault) -> SimError {
        SimError::Fault(Box::new(Fault {
            kind: raw.kind,
            at: self.instr_ref(engine, pc),
            detail: raw.detail,
        }))
    }

    /// Faults with the cycle limit when work starting at `start` and taking
    /// `cycles` would end past it.
    fn within_cycle_limit(&self, pc: u32, start: u64, cycles: u64) -> Result<(), SimError> {
        let end = start.saturating_add(cycles);
        if end <= self.max_cycles {
            return Ok(());
        }
        let engine = self.code[pc as usize].engine();
        Err(self.fault(
            engine,
            pc,
            RawFault {
                kind: FaultKind::CycleLimit,
                detail: format!(
                    "this instruction alone runs to cycle {end} (limit {})",
                    self.max_cycles
                ),
            },
        ))
    }

    fn run_loop(&mut self, max_cycles: u64) -> Result<(), SimError> {
        loop {
            let su_next = (!self.su.halted && self.su.stalled.is_none()).then_some(self.su.t);
            let mut best: Option<(u64, usize)> = su_next.map(|t| (t, 0));
            let mut plans: [Option<(u64, StallReason, u64)>; ENGINES] = [None; ENGINES];
            for (e, plan) in plans.iter_mut().enumerate() {
                *plan = self.plan(e);
                if let Some((start, _, _)) = *plan {
                    if best.is_none_or(|(t, _)| start < t) {
                        best = Some((start, e + 1));
                    }
                }
            }
            let Some((time, unit)) = best else {
                if self.su.halted && self.queues.iter().all(VecDeque::is_empty) {
                    return Ok(());
                }
                return Err(self.deadlock());
            };
            if time > max_cycles {
                return Err(self.fault(
                    Engine::Su,
                    self.su.pc,
                    RawFault {
                        kind: FaultKind::CycleLimit,
                        detail: format!("still running at cycle {time} (limit {max_cycles})"),
                    },
                ));
            }
            if unit == 0 {
                self.su_step()?;
            } else {
                let e = unit - 1;
                let (start, reason, base) = plans[e].unwrap_or((time, StallReason::None, time));
                self.engine_start(e, start, reason, base)?;
            }
        }
    }

    fn deadlock(&self) -> SimError {
        let mut blocked = Vec::new();
        for (e, q) in self.queues.iter().enumerate() {
            if let Some(h) = q.front() {
                let why = match h.op {
                    Op::Wait { sem, n } => format!(
                        "waits for {n} on s{sem}, which holds {}",
                        self.sems.get(sem as usize).map_or(0, |s| s.value)
                    ),
                    _ => "is blocked".into(),
                };
                blocked.push((self.instr_ref(ENGINE_OF[e], h.pc), why));
            }
        }
        if let Some((e, _)) = self.su.stalled {
            blocked.push((
                self.instr_ref(Engine::Su, self.su.pc),
                format!("cannot dispatch: the {} queue is full", ENGINE_OF[e]),
            ));
        }
        let cycle = self
            .max_complete
            .iter()
            .copied()
            .chain([self.su.t])
            .max()
            .unwrap_or(0);
        SimError::Deadlock(Box::new(Deadlock { blocked, cycle }))
    }

    /// When engine `e` could start its head instruction: (start, reason for
    /// any delay beyond `base`, base). `None` if it is blocked or empty.
    fn plan(&self, e: usize) -> Option<(u64, StallReason, u64)> {
        let h = self.queues[e].front()?;
        let mut base = h.dispatched + 1;
        match e {
            DMA => base = base.max(self.dma.last_issue.map_or(0, |t| t + 1)),
            MXU => base = base.max(self.mxu.last_issue.map_or(0, |t| t + 1)),
            _ => base = base.max(self.vpu_free),
        }
        let (start, reason) = match &h.op {
            Op::Wait { sem, n } => match self.sems.get(*sem as usize) {
                Some(s) => (
                    base.max(s.available_at(u64::from(*n))?),
                    StallReason::Semaphore,
                ),
                None => (base, StallReason::Semaphore),
            },
            Op::Copy { .. } | Op::Gather { .. } | Op::Scatter { .. } => (
                self.dma_start(base, &footprint(&h.op)),
                StallReason::Inflight,
            ),
            Op::LoadW { .. } => {
                let b = self.mxu.cur.map_or(0, |c| 1 - c);
                (
                    base.max(self.mxu.load_free).max(self.mxu.buf_stream_end[b]),
                    StallReason::Weights,
                )
            }
            Op::Matmul { .. } => {
                // Waiting for the stream port is waiting for the previous
                // matmul, which keeps the MXU busy: it is not a stall. Only
                // the wait for the weights beyond that counts.
                base = base.max(self.mxu.stream_free);
                let ready = self.mxu.cur.map_or(0, |c| self.mxu.buf_ready[c]);
                (base.max(ready), StallReason::Weights)
            }
            _ => (base, StallReason::None),
        };
        Some((start, reason, base))
    }

    fn su_step(&mut self) -> Result<(), SimError> {
        let pc = self.su.pc;
        let Some(instr) = self.code.get(pc as usize).copied() else {
            return Err(self.fault(
                Engine::Su,
                pc,
                RawFault {
                    kind: FaultKind::OutOfBounds,
                    detail: format!(
                        "pc {pc} is outside the code ({} instructions)",
                        self.code.len()
                    ),
                },
            ));
        };
        let engine = instr.engine();
        if engine != Engine::Su {
            let e = match engine {
                Engine::Dma => DMA,
                Engine::Mxu => MXU,
                _ => VPU,
            };
            if self.queues[e].len() >= self.depth[e] {
                self.su.stalled = Some((e, self.su.t));
                return Ok(());
            }
            // Every queued instruction resolves (ops.rs lists each one; the
            // `every_instruction_executes` test checks engine and arm agree).
            let op = resolve(&instr, &self.su.regs, &mut self.su.dims).unwrap_or_else(|| {
                unreachable!(
                    "`{}` is queued but resolves to no operation",
                    instr.mnemonic()
                )
            });
            self.queues[e].push_back(Queued {
                pc,
                op,
                dispatched: self.su.t,
            });
            let stall = std::mem::take(&mut self.su.dispatch_stall);
            self.trace_instr(
                tracks::SU,
                pc,
                self.su.t - stall,
                self.su.t + 1,
                (StallReason::QueueFull, stall),
            );
            self.su.t += 1;
            self.su.pc += 1;
            self.units[0].busy_cycles += 1;
            self.units[0].instructions += 1;
            return Ok(());
        }
        let taken = self.scalar(pc, &instr)?;
        let cycles = 1 + if taken {
            u64::from(self.target.branch_penalty_cycles)
        } else {
            0
        };
        let t = self.su.t;
        self.trace_instr(tracks::SU, pc, t, t + cycles, (StallReason::None, 0));
        self.su.t += cycles;
        self.units[0].busy_cycles += cycles;
        self.units[0].instructions += 1;
        Ok(())
    }
}
