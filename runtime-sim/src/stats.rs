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

/// Everything a run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Stats {
    /// Cycle at which the last unit finished.
    pub cycles: u64,
    /// Wall time at the target clock, in microseconds.
    pub time_us: f64,
    /// Multiply-accumulates performed by the MXU.
    pub macs: u64,
    /// MACs / (cycles × K × N).
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

    /// Busy cycles and MACs grouped by the loadable's source-map node, sorted
    /// by cycles, descending. Instructions outside any range go to `(none)`.
    pub fn by_node(&self, loadable: &Loadable) -> Vec<NodeProfile> {
        let mut map: BTreeMap<String, NodeProfile> = BTreeMap::new();
        for (pc, (&busy, &macs)) in self.busy_by_pc.iter().zip(&self.macs_by_pc).enumerate() {
            if busy == 0 && macs == 0 {
                continue;
            }
            let node = loadable.node_of(pc as u32).unwrap_or("(none)").to_string();
            let entry = map.entry(node.clone()).or_insert_with(|| NodeProfile {
                node,
                ..Default::default()
            });
            entry.busy_cycles += busy;
            entry.macs += macs;
        }
        let mut v: Vec<NodeProfile> = map.into_values().collect();
        v.sort_by(|a, b| b.busy_cycles.cmp(&a.busy_cycles).then(a.node.cmp(&b.node)));
        v
    }
}

/// Engine time spent on one source node.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct NodeProfile {
    /// Source-map node name.
    pub node: String,
    /// Sum of engine busy cycles of its instructions.
    pub busy_cycles: u64,
    /// MACs of its instructions.
    pub macs: u64,
}
