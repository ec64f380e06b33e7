//! Run statistics: cycles, per-unit busy and stall cycles by reason, MACs,
//! DRAM traffic, and per-instruction attribution for profiles
//! (SPEC.md §10.5, §13).

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::Serialize;
use tessera_isa::{Loadable, Target};

/// Why a unit could not proceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StallReason {
    /// A `wait` whose semaphore is not yet high enough.
    Semaphore,
    /// The SU found an engine queue full.
    QueueFull,
    /// A DMA transfer waited for its bus.
    Bandwidth,
    /// A DMA transfer waited for the in-flight limit or an interlock.
    Inflight,
    /// The MXU waited for weights or a free weight buffer.
    Weights,
    /// Not a stall: the instruction started as soon as its engine could.
    None,
}

impl StallReason {
    /// Name used in tables and JSON.
    pub fn name(self) -> &'static str {
        match self {
            StallReason::Semaphore => "semaphore",
            StallReason::QueueFull => "queue_full",
            StallReason::Bandwidth => "bandwidth",
            StallReason::Inflight => "inflight",
            StallReason::Weights => "weights",
            StallReason::None => "none",
        }
    }
}

/// Statistics of one unit.
#[derive(Debug, Clone, Default, Serialize)]
pub struct UnitStats {
    /// Cycles doing useful work (SPEC.md §10.5).
    pub busy_cycles: u64,
    /// Total stall cycles.
    pub stall_cycles: u64,
    /// Stall cycles by reason.
    pub stalls: BTreeMap<&'static str, u64>,
    /// Instructions executed.
    pub instructions: u64,
}

impl UnitStats {
    /// Adds stall cycles for a reason.
    pub fn stall(&mut self, reason: StallReason, cycles: u64) {
        if cycles > 0 {
            self.stall_cycles += cycles;
            *self.stalls.entry(reason.name()).or_default() += cycles;
        }
    }
}

/// The total length of a union of half-open cycle intervals, for a unit
/// with several resources that can be busy at once (the DMA engine's DRAM
/// and on-chip buses): a cycle in which any of them moves data counts once.
///
/// Intervals may arrive out of order, but none that is added later may
/// start before the `now` last given to [`BusyUnion::settle`]; intervals
/// that end by then are folded into a count, so memory stays bounded by the
/// intervals still open.
#[derive(Debug, Clone, Default)]
pub(crate) struct BusyUnion {
    settled: u64,
    /// Disjoint, sorted, not touching.
    open: Vec<(u64, u64)>,
}

impl BusyUnion {
    /// Adds the cycles `[start, end)`.
    pub(crate) fn add(&mut self, start: u64, end: u64) {
        if start >= end {
            return;
        }
        let (mut lo, mut hi) = (start, end);
        // Absorb every open interval that overlaps or touches [lo, hi).
        self.open.retain(|&(a, b)| {
            if a <= hi && lo <= b {
                lo = lo.min(a);
                hi = hi.max(b);
                false
            } else {
                true
            }
        });
        let at = self.open.partition_point(|&(a, _)| a < lo);
        self.open.insert(at, (lo, hi));
    }

    /// Declares that no interval added from now on starts before `now`.
    pub(crate) fn settle(&mut self, now: u64) {
        let done = self.open.partition_point(|&(_, b)| b <= now);
        self.settled += self.open.drain(..done).map(|(a, b)| b - a).sum::<u64>();
    }

    /// Cycles covered by at least one interval.
    pub(crate) fn total(&self) -> u64 {
        self.settled + self.open.iter().map(|(a, b)| b - a).sum::<u64>()
    }
}

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Cycle at which the last unit finished.
    pub cycles: u64,
    /// Wall time at the target clock, in microseconds.
    pub time_us: f64,
    /// Multiply-accumulates performed by the MXU.
    pub macs: u64,
    /// MACs / (cycles × K × N): against the bf16 peak, so 8-bit matmuls
    /// can exceed 1.
    pub mxu_utilization: f64,
    /// Bytes the DMA read from DRAM.
    pub dram_read_bytes: u64,
    /// Bytes the DMA wrote to DRAM.
    pub dram_write_bytes: u64,
    /// Average DRAM bandwidth use as a fraction of peak.
    pub dram_utilization: f64,
    /// Per unit: su, dma, mxu, vpu.
    pub engines: BTreeMap<&'static str, UnitStats>,
    /// Most unordered accesses the race detector held at once.
    pub race_window_peak: usize,
    /// Busy cycles attributed to each instruction (by pc).
    #[serde(skip)]
    pub busy_by_pc: Vec<u64>,
    /// MACs attributed to each instruction (by pc).
    #[serde(skip)]
    pub macs_by_pc: Vec<u64>,
    /// Earliest start of each engine instruction (by pc; `u64::MAX` if it
    /// never ran).
    #[serde(skip)]
    pub start_by_pc: Vec<u64>,
    /// Latest completion of each engine instruction (by pc).
    #[serde(skip)]
    pub end_by_pc: Vec<u64>,
    /// The compiler's lower bound on this program's cycles (sum over the
    /// source map; 0 for hand-written programs).
    pub roofline_cycles: u64,
}

impl Stats {
    /// Finishes derived numbers once the run ended.
    pub fn finish(&mut self, target: &Target) {
        let peak = target.peak_macs_per_cycle() as f64;
        let cycles = self.cycles.max(1) as f64;
        self.mxu_utilization = self.macs as f64 / (cycles * peak);
        self.dram_utilization = (self.dram_read_bytes + self.dram_write_bytes) as f64
            / (cycles * f64::from(target.dram_bytes_per_cycle));
        self.time_us = self.cycles as f64 / f64::from(target.clock_mhz);
    }

    /// A readable table of the numbers.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "cycles            {:>14}  ({:.3} ms at the target clock)",
            self.cycles,
            self.time_us / 1000.0
        );
        let _ = writeln!(
            out,
            "MACs              {:>14}  (MXU utilization {:.1}%)",
            self.macs,
            100.0 * self.mxu_utilization
        );
        let _ = writeln!(
            out,
            "DRAM read/write   {:>14} / {} bytes  (bandwidth utilization {:.1}%)",
            self.dram_read_bytes,
            self.dram_write_bytes,
            100.0 * self.dram_utilization
        );
        let _ = writeln!(
            out,
            "unit  instructions   busy cycles   busy%   stall cycles  stalls by reason"
        );
        for name in ["su", "dma", "mxu", "vpu"] {
            let Some(u) = self.engines.get(name) else {
                continue;
            };
            let reasons: Vec<String> = u.stalls.iter().map(|(r, c)| format!("{r} {c}")).collect();
            let _ = writeln!(
                out,
                "{name:<4} {:>13} {:>13} {:>6.1}% {:>14}  {}",
                u.instructions,
                u.busy_cycles,
                100.0 * u.busy_cycles as f64 / self.cycles.max(1) as f64,
                u.stall_cycles,
                reasons.join(", ")
            );
        }
        out
    }

    /// The statistics as JSON (the `--stats-json` format).
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }

    /// Time per source-map node (a kernel of the compiled program), sorted
    /// by elapsed cycles, descending: the span from its first engine
    /// instruction's start to its last one's completion, engine busy cycles,
    /// MACs, MXU utilization over the span and the compiler's roofline.
    /// Instructions outside any range go to `(none)`.
    pub fn by_node(&self, loadable: &Loadable, target: &Target) -> Vec<NodeProfile> {
        let mut map: BTreeMap<String, NodeProfile> = BTreeMap::new();
        let mut spans: BTreeMap<String, (u64, u64)> = BTreeMap::new();
        for pc in 0..self.busy_by_pc.len() {
            let (busy, macs) = (self.busy_by_pc[pc], self.macs_by_pc[pc]);
            let (start, end) = (self.start_by_pc[pc], self.end_by_pc[pc]);
            if start == u64::MAX && busy == 0 {
                continue;
            }
            let node = loadable.node_of(pc as u32).unwrap_or("(none)").to_string();
            let entry = map.entry(node.clone()).or_insert_with(|| NodeProfile {
                node: node.clone(),
                ..Default::default()
            });
            entry.busy_cycles += busy;
            entry.macs += macs;
            if start != u64::MAX {
                let span = spans.entry(node).or_insert((u64::MAX, 0));
                span.0 = span.0.min(start);
                span.1 = span.1.max(end);
            }
        }
        for r in &loadable.source_map {
            if let Some(p) = map.get_mut(&r.node) {
                p.roofline_cycles += r.roofline_cycles;
                for source in &r.sources {
                    if !p.onnx_nodes.contains(source) {
                        p.onnx_nodes.push(source.clone());
                    }
                }
            }
        }
        for p in map.values_mut() {
            p.onnx_ops = loadable.onnx_ops(&p.onnx_nodes);
        }
        let peak = target.peak_macs_per_cycle().max(1) as f64;
        for (node, (lo, hi)) in spans {
            if let Some(p) = map.get_mut(&node) {
                p.cycles = hi.saturating_sub(lo);
                p.mxu_utilization = p.macs as f64 / (p.cycles.max(1) as f64 * peak);
            }
        }
        let mut v: Vec<NodeProfile> = map.into_values().collect();
        v.sort_by(|a, b| {
            b.cycles
                .cmp(&a.cycles)
                .then(b.busy_cycles.cmp(&a.busy_cycles))
                .then(a.node.cmp(&b.node))
        });
        v
    }

    /// Time per ONNX op-type combination: the kernels of [`Stats::by_node`]
    /// grouped by the ONNX op types fused into them (`Gemm + Add + Gelu`;
    /// `(unknown)` for ranges without sources), sorted by cycles.
    pub fn by_op_type(&self, loadable: &Loadable, target: &Target) -> Vec<OpTypeProfile> {
        let mut map: BTreeMap<String, OpTypeProfile> = BTreeMap::new();
        for p in self.by_node(loadable, target) {
            let ops = if p.onnx_ops.is_empty() {
                "(unknown)".to_string()
            } else {
                p.onnx_ops.clone()
            };
            let entry = map.entry(ops.clone()).or_insert_with(|| OpTypeProfile {
                onnx_ops: ops,
                ..Default::default()
            });
            entry.kernels += 1;
            entry.cycles += p.cycles;
            entry.macs += p.macs;
            entry.roofline_cycles += p.roofline_cycles;
        }
        let peak = target.peak_macs_per_cycle().max(1) as f64;
        let mut v: Vec<OpTypeProfile> = map.into_values().collect();
        for p in &mut v {
            p.mxu_utilization = p.macs as f64 / (p.cycles.max(1) as f64 * peak);
        }
        v.sort_by(|a, b| b.cycles.cmp(&a.cycles).then(a.onnx_ops.cmp(&b.onnx_ops)));
        v
    }

    /// The profile as tables (the `--stats` profile sections): the `limit`
    /// slowest kernels with the ONNX ops fused into each, then the time per
    /// ONNX op-type combination.
    pub fn profile_table(&self, loadable: &Loadable, target: &Target, limit: usize) -> String {
        let profile = self.by_node(loadable, target);
        let mut out = String::new();
        let _ = writeln!(
            out,
            "profile by kernel / source node (sorted by elapsed cycles):"
        );
        let _ = writeln!(
            out,
            "{:>12} {:>6} {:>12} {:>8} {:>14}  node  [ONNX ops]",
            "cycles", "share", "roofline", "MXU%", "MACs"
        );
        let total = self.cycles.max(1) as f64;
        for p in profile.iter().take(limit) {
            let _ = write!(
                out,
                "{:>12} {:>5.1}% {:>12} {:>7.1}% {:>14}  {}",
                p.cycles,
                100.0 * p.cycles as f64 / total,
                p.roofline_cycles,
                100.0 * p.mxu_utilization,
                p.macs,
                p.node
            );
            if !p.onnx_ops.is_empty() {
                let _ = write!(out, "  [{}]", p.onnx_ops);
            }
            out.push('\n');
        }
        if profile.len() > limit {
            let _ = writeln!(out, "  … {} more", profile.len() - limit);
        }
        let by_op = self.by_op_type(loadable, target);
        if by_op.iter().any(|p| p.onnx_ops != "(unknown)") {
            let _ = writeln!(
                out,
                "profile by ONNX op types (kernels grouped by what they fuse):"
            );
            let _ = writeln!(
                out,
                "{:>12} {:>6} {:>12} {:>8} {:>8}  ONNX ops",
                "cycles", "share", "roofline", "MXU%", "kernels"
            );
            for p in &by_op {
                let _ = writeln!(
                    out,
                    "{:>12} {:>5.1}% {:>12} {:>7.1}% {:>8}  {}",
                    p.cycles,
                    100.0 * p.cycles as f64 / total,
                    p.roofline_cycles,
                    100.0 * p.mxu_utilization,
                    p.kernels,
                    p.onnx_ops
                );
            }
        }
        out
    }
}

/// Time spent on one combination of ONNX op types.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct OpTypeProfile {
    /// The ONNX op types fused into the kernels, joined by ` + `.
    pub onnx_ops: String,
    /// How many kernels (source nodes) fuse exactly these.
    pub kernels: usize,
    /// Their elapsed cycles, summed.
    pub cycles: u64,
    /// Their MACs.
    pub macs: u64,
    /// MACs / (cycles × MXU peak).
    pub mxu_utilization: f64,
    /// Their rooflines, summed.
    pub roofline_cycles: u64,
}

/// Time spent on one source node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeProfile {
    /// Source-map node name.
    pub node: String,
    /// Elapsed cycles from its first engine instruction's start to its last
    /// one's completion.
    pub cycles: u64,
    /// Sum of engine busy cycles of its instructions.
    pub busy_cycles: u64,
    /// MACs of its instructions.
    pub macs: u64,
    /// MACs / (cycles × MXU peak).
    pub mxu_utilization: f64,
    /// The compiler's lower bound on its cycles.
    pub roofline_cycles: u64,
    /// Every ONNX node fused into it (empty if the loadable does not say).
    pub onnx_nodes: Vec<String>,
    /// Their distinct op types in order, joined by ` + `.
    pub onnx_ops: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_union_counts_overlapping_cycles_once() {
        let mut u = BusyUnion::default();
        u.add(33, 545);
        u.add(2, 130);
        assert_eq!(u.total(), 543);
        u.add(545, 600);
        assert_eq!(u.total(), 598);
        u.add(700, 710);
        u.add(650, 655);
        u.add(600, 650);
        assert_eq!(u.total(), 598 + 50 + 5 + 10);
    }

    #[test]
    fn busy_union_settles_finished_intervals() {
        let mut u = BusyUnion::default();
        u.add(0, 10);
        u.add(20, 30);
        u.add(25, 40);
        u.settle(15);
        assert_eq!(u.open, vec![(20, 40)]);
        u.add(15, 22);
        assert_eq!(u.open, vec![(15, 40)]);
        u.settle(40);
        assert!(u.open.is_empty());
        assert_eq!(u.total(), 10 + 25);
        u.add(40, 40);
        assert_eq!(u.total(), 35);
    }
}
