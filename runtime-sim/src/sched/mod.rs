//! The event-driven timing model (SPEC.md §10) that drives execution.
//!
//! Four units — the SU and three engine queues — each have a *next action
//! time* computed from their state; the loop always performs the earliest
//! action (ties: SU, DMA, MXU, VPU), so every semaphore, queue and bus
//! interaction is seen in time order. Functional effects happen at an
//! instruction's start; the race detector makes that choice unobservable
//! for well-synchronized programs.

use std::collections::VecDeque;

use tessera_isa::cost::{self, Bus};
use tessera_isa::{Engine, Instr, Mem, Target};

use crate::error::{Deadlock, Fault, InstrRef, RaceReport, SimError};
use crate::exec::{self, bad_operand, Access, FaultKind, RawFault, Weights};
use crate::memory::Memories;
use crate::ops::{resolve, DmaDimRegs, Op};
use crate::race::{join, Detector, Vc, ENGINES};
use crate::stats::{BusyUnion, StallReason, Stats, UnitStats};
use crate::trace::{tracks, Trace};

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

    /// Earliest start of a DMA transfer at or after `base` given the
    /// in-flight limit and the interlock with conflicting transfers.
    fn dma_start(&self, base: u64, ranges: &[(Mem, i128, i128, bool)]) -> u64 {
        let limit = self.target.dma_max_inflight as usize;
        let mut s = base;
        loop {
            let mut moved = false;
            for f in &self.dma.inflight {
                if f.complete > s && conflicts(&f.ranges, ranges) {
                    s = f.complete;
                    moved = true;
                }
            }
            let mut active: Vec<u64> = self
                .dma
                .inflight
                .iter()
                .map(|f| f.complete)
                .filter(|&c| c > s)
                .collect();
            if active.len() >= limit {
                active.sort_unstable();
                s = active[active.len() - limit];
                moved = true;
            }
            if !moved {
                return s;
            }
        }
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

    /// Starts engine `e`'s head instruction at `start`.
    fn engine_start(
        &mut self,
        e: usize,
        start: u64,
        reason: StallReason,
        base: u64,
    ) -> Result<(), SimError> {
        let Some(head) = self.queues[e].pop_front() else {
            return Ok(());
        };
        if let Some((se, since)) = self.su.stalled {
            if se == e {
                let resume = self.su.t.max(start).max(since);
                self.units[0].stall(StallReason::QueueFull, resume - since);
                self.su.dispatch_stall = resume - since;
                self.su.t = resume;
                self.su.stalled = None;
            }
        }
        let pc = head.pc;
        let engine = ENGINE_OF[e];
        self.units[e + 1].stall(reason, start - base);
        self.units[e + 1].instructions += 1;
        self.vcs[e][e] += 1;
        let fail = |this: &Self, raw: RawFault| this.fault(engine, pc, raw);
        let mut accesses: Vec<Access> = Vec::new();
        let complete: u64;
        // The instruction's trace slice: track, first and last cycle, and
        // the stall at its beginning.
        let control_track = [tracks::DMA_CONTROL, tracks::MXU_CONTROL, tracks::VPU][e];
        let mut slice = (control_track, start, start + cost::QUEUE_CONTROL_CYCLES);
        let mut slice_stall = (StallReason::None, 0);
        if self.watcher.active()
            && matches!(
                head.op,
                Op::Copy { .. } | Op::Gather { .. } | Op::Scatter { .. }
            )
        {
            self.watcher
                .before_transfer(pc, &footprint(&head.op), self.mems);
        }
        match head.op {
            Op::Wait { sem, n } => {
                self.sem_check(e, pc, sem, false)?;
                let s = &mut self.sems[sem as usize];
                let mut need = u64::from(n);
                while need > 0 {
                    let Some(front) = s.tokens.front_mut() else {
                        break;
                    };
                    join(&mut self.vcs[e], &front.vc);
                    let take = need.min(front.count);
                    front.count -= take;
                    need -= take;
                    if front.count == 0 {
                        s.tokens.pop_front();
                    }
                }
                s.value -= u64::from(n);
                complete = start + cost::QUEUE_CONTROL_CYCLES;
                // A wait occupies the head of its queue from when it could
                // have started: the wait is visible as a long slice.
                slice.1 = base;
                slice_stall = (reason, start - base);
            }
            Op::Signal { sem, n } => {
                self.sem_check(e, pc, sem, true)?;
                // The signal leaves the queue at once; its tokens arrive when
                // every earlier instruction of this engine has completed.
                let vc = self.vcs[e];
                let arrives = start.max(self.max_complete[e]) + 1;
                let s = &mut self.sems[sem as usize];
                s.value += u64::from(n);
                if s.value > u64::from(u32::MAX) {
                    return Err(fail(
                        self,
                        RawFault {
                            kind: FaultKind::BadSemaphore,
                            detail: format!("s{sem} would exceed 2^32-1"),
                        },
                    ));
                }
                s.tokens.push_back(Tokens {
                    count: u64::from(n),
                    vc,
                    arrives,
                });
                complete = arrives;
            }
            Op::DmaDim => complete = start + cost::QUEUE_CONTROL_CYCLES,
            Op::Copy {
                dst,
                src,
                bytes,
                dims,
            } => {
                // A transfer whose bus time alone runs past the cycle limit
                // faults before its (possibly billions of) runs are copied.
                let runs = dims.iter().fold(1u64, |n, d| n.saturating_mul(d.count));
                let estimate = cost::dma_copy(self.target, dst.mem, src.mem, bytes, runs);
                self.within_cycle_limit(pc, start, estimate.latency + estimate.bus_cycles)?;
                let (acc, runs) =
                    exec::dma_copy(self.mems, dst, src, bytes, &dims).map_err(|r| fail(self, r))?;
                accesses = acc;
                let c = cost::dma_copy(self.target, dst.mem, src.mem, bytes, runs);
                let slot;
                (complete, slot) = self.dma_transfer(pc, start, c, &accesses);
                slice = (tracks::DMA + slot, start, complete);
            }
            Op::Gather {
                dst,
                table,
                idx,
                rows,
                bytes,
                limit,
                i64_idx,
            } => {
                accesses =
                    exec::dma_gather(self.mems, dst, table, idx, rows, bytes, limit, i64_idx)
                        .map_err(|r| fail(self, r))?;
                let c = cost::dma_gather(self.target, rows, bytes);
                let slot;
                (complete, slot) = self.dma_transfer(pc, start, c, &accesses);
                slice = (tracks::DMA + slot, start, complete);
            }
            Op::Scatter {
                table,
                src,
                idx,
                rows,
                bytes,
                limit,
                i64_idx,
            } => {
                accesses =
                    exec::dma_scatter(self.mems, table, src, idx, rows, bytes, limit, i64_idx)
                        .map_err(|r| fail(self, r))?;
                let c = cost::dma_scatter(self.target, rows, bytes);
                let slot;
                (complete, slot) = self.dma_transfer(pc, start, c, &accesses);
                slice = (tracks::DMA + slot, start, complete);
            }
            Op::LoadW {
                src,
                k,
                n,
                stride,
                dtype,
                trans,
            } => {
                let (w, acc) =
                    exec::mxu_load(self.target, self.mems, src, k, n, stride, dtype, trans)
                        .map_err(|r| fail(self, r))?;
                accesses = acc;
                let b = self.mxu.cur.map_or(0, |c| 1 - c);
                let end = start + cost::mxu_load_weights(self.target, k, n);
                self.mxu.load_free = end;
                self.mxu.buf_ready[b] = end;
                self.mxu.cur = Some(b);
                self.mxu.weights = Some(w);
                self.stats.busy_by_pc[pc as usize] += end - start;
                slice = (tracks::MXU_LOAD, start, end);
                complete = end;
            }
            Op::Matmul {
                dst,
                a,
                m,
                astride,
                dstride,
                mode,
            } => {
                let Some(weights) = self.mxu.weights.as_ref() else {
                    return Err(fail(
                        self,
                        bad_operand("mxu.mm with no weights loaded (mxu.ldw first)".into()),
                    ));
                };
                let dtype = weights.dtype;
                let (acc, macs) =
                    exec::mxu_matmul(self.mems, weights, dst, a, m, astride, dstride, mode)
                        .map_err(|r| fail(self, r))?;
                accesses = acc;
                let (occupancy, latency) = cost::mxu_matmul(self.target, m, dtype);
                let stream_end = start + occupancy;
                self.mxu.stream_free = stream_end;
                if let Some(c) = self.mxu.cur {
                    self.mxu.buf_stream_end[c] = self.mxu.buf_stream_end[c].max(stream_end);
                }
                self.units[MXU + 1].busy_cycles += occupancy;
                self.stats.busy_by_pc[pc as usize] += occupancy;
                self.stats.macs_by_pc[pc as usize] += macs;
                self.stats.macs += macs;
                slice = (tracks::MXU_STREAM, start, stream_end);
                complete = start + latency;
            }
            ref op => {
                let (acc, cycles) = self.vector(op).map_err(|r| fail(self, r))?;
                accesses = acc;
                complete = start + cycles;
                self.vpu_free = complete;
                self.units[VPU + 1].busy_cycles += cycles;
                self.stats.busy_by_pc[pc as usize] += cycles;
                slice = (tracks::VPU, start, complete);
            }
        }
        self.trace_instr(slice.0, pc, slice.1, slice.2, slice_stall);
        if e == VPU {
            self.vpu_free = self.vpu_free.max(complete);
        }
        match e {
            DMA => self.dma.last_issue = Some(start),
            MXU => self.mxu.last_issue = Some(start),
            _ => {}
        }
        self.max_complete[e] = self.max_complete[e].max(complete);
        let p = pc as usize;
        self.stats.start_by_pc[p] = self.stats.start_by_pc[p].min(start);
        self.stats.end_by_pc[p] = self.stats.end_by_pc[p].max(complete);
        let vc = self.vcs[e];
        self.detector
            .check_and_record(e, &vc, pc, accesses)
            .map_err(|race| {
                SimError::Race(Box::new(RaceReport {
                    first: self.instr_ref(ENGINE_OF[race.first.engine], race.first.pc),
                    first_writes: race.first.write,
                    second: self.instr_ref(ENGINE_OF[race.second.engine], race.second.pc),
                    second_writes: race.second.write,
                    mem: race.mem,
                    range: race.range,
                }))
            })?;
        self.executed += 1;
        if self.executed % 32 == 0 {
            self.detector.prune(&self.vcs);
        }
        Ok(())
    }

    fn sem_check(&mut self, e: usize, pc: u32, sem: u8, signal: bool) -> Result<(), SimError> {
        let engine = ENGINE_OF[e];
        let Some(s) = self.sems.get_mut(sem as usize) else {
            let count = self.target.semaphores;
            return Err(self.fault(
                engine,
                pc,
                RawFault {
                    kind: FaultKind::BadSemaphore,
                    detail: format!("s{sem} does not exist (the target has {count} semaphores)"),
                },
            ));
        };
        let slot = if signal {
            &mut s.signaler
        } else {
            &mut s.waiter
        };
        match *slot {
            Some(other) if other != e => {
                let role = if signal { "signaled" } else { "waited on" };
                let detail = format!(
                    "s{sem} is {role} from both {} and {} (each semaphore has one signaling and one waiting engine)",
                    ENGINE_OF[other], engine
                );
                Err(self.fault(
                    engine,
                    pc,
                    RawFault {
                        kind: FaultKind::BadSemaphore,
                        detail,
                    },
                ))
            }
            _ => {
                *slot = Some(e);
                Ok(())
            }
        }
    }

    /// Schedules a DMA transfer's data phase; returns its completion and
    /// the in-flight slot it occupies.
    fn dma_transfer(
        &mut self,
        pc: u32,
        start: u64,
        c: cost::DmaCost,
        accesses: &[Access],
    ) -> (u64, u32) {
        let bus_free = match c.bus {
            Bus::Dram => &mut self.dma.dram_bus_free,
            Bus::OnChip => &mut self.dma.onchip_bus_free,
        };
        let ready = start + c.latency;
        let data_start = ready.max(*bus_free);
        let complete = data_start + c.bus_cycles;
        *bus_free = complete;
        self.units[DMA + 1].stall(StallReason::Bandwidth, data_start - ready);
        // The two buses run at once, so busy cycles are the union of their
        // data phases, not the sum of the transfers' bus cycles.
        self.dma.busy.settle(start);
        self.dma.busy.add(data_start, complete);
        self.stats.busy_by_pc[pc as usize] += c.bus_cycles;
        self.stats.dram_read_bytes += c.dram_read;
        self.stats.dram_write_bytes += c.dram_write;
        self.dma.inflight.retain(|f| f.complete > start);
        let used: Vec<u32> = self.dma.inflight.iter().map(|f| f.slot).collect();
        let slot = (0..).find(|s| !used.contains(s)).unwrap_or(0);
        let ranges = accesses
            .iter()
            .filter_map(|a| {
                a.pattern
                    .bounds()
                    .map(|(lo, hi)| (a.pattern.mem, lo, hi, a.write))
            })
            .collect();
        self.dma.inflight.push(Inflight {
            complete,
            ranges,
            slot,
        });
        if let Some(t) = self.trace.as_mut() {
            if c.bus == Bus::Dram && c.bus_cycles > 0 {
                let rate = (c.dram_read + c.dram_write) as f64 / c.bus_cycles as f64;
                t.counter("DRAM bandwidth", data_start, rate);
                t.counter("DRAM bandwidth", complete, 0.0);
            }
        }
        (complete, slot)
    }

    /// Records the trace slice of the instruction at `pc`, if tracing.
    fn trace_instr(
        &mut self,
        track: u32,
        pc: u32,
        start: u64,
        end: u64,
        (reason, stalled): (StallReason, u64),
    ) {
        let code = self.code;
        if let Some(t) = self.trace.as_mut() {
            let disassembly = || {
                code.get(pc as usize)
                    .map_or_else(String::new, |i| i.to_asm_at(pc))
            };
            t.instruction(track, pc, start, end, (reason.name(), stalled), disassembly);
        }
    }
}
