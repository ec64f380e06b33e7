//! Starting an engine's head instruction: its functional effect, its
//! timing (DMA bus and in-flight slots, MXU weight tokens, VPU occupancy),
//! semaphore ownership and the race detector's view of it.

use tessera_isa::cost::{self, Bus};
use tessera_isa::Mem;

use crate::error::SimError;
use crate::exec::{self, bad_operand, Access, FaultKind, RawFault};
use crate::matrix;
use crate::ops::Op;
use crate::race::join;
use crate::stats::StallReason;

use super::*;

impl Machine<'_> {
    /// Earliest start of a DMA transfer at or after `base` given the
    /// in-flight limit and the interlock with conflicting transfers.
    pub(super) fn dma_start(&self, base: u64, ranges: &[(Mem, i128, i128, bool)]) -> u64 {
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

    /// Starts engine `e`'s head instruction at `start`.
    pub(super) fn engine_start(
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
                quant,
            } => {
                let (w, acc) = matrix::mxu_load(
                    self.target,
                    self.mems,
                    src,
                    k,
                    n,
                    stride,
                    dtype,
                    trans,
                    quant,
                )
                .map_err(|r| fail(self, r))?;
                accesses = acc;
                let b = self.mxu.cur.map_or(0, |c| 1 - c);
                let end = start + cost::mxu_load_weights(k);
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
                ascales,
            } => {
                let Some(weights) = self.mxu.weights.as_ref() else {
                    return Err(fail(
                        self,
                        bad_operand("mxu.mm with no weights loaded (mxu.ldw first)".into()),
                    ));
                };
                let dtype = weights.dtype;
                let (acc, macs) = matrix::mxu_matmul(
                    self.mems, weights, dst, a, m, astride, dstride, mode, ascales,
                )
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

    pub(super) fn sem_check(
        &mut self,
        e: usize,
        pc: u32,
        sem: u8,
        signal: bool,
    ) -> Result<(), SimError> {
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
    pub(super) fn dma_transfer(
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
    pub(super) fn trace_instr(
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
