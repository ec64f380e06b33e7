//! Chrome trace event output (opens in Perfetto and chrome://tracing).
//!
//! One track per engine (the DMA has one track per in-flight slot, the MXU
//! one for weight loads and one for streaming), one slice per instruction
//! named by its disassembly, slices for semaphore waits and SU stalls, and a
//! counter track with the DRAM bandwidth in use. Timestamps are in
//! microseconds at the target clock.

use serde_json::{json, Value};

/// Track ids.
pub mod tracks {
    /// Scalar unit (stalls only).
    pub const SU: u32 = 1;
    /// First DMA slot; slot i is `DMA + i`.
    pub const DMA: u32 = 10;
    /// MXU weight-load port.
    pub const MXU_LOAD: u32 = 40;
    /// MXU streaming port.
    pub const MXU_STREAM: u32 = 41;
    /// VPU.
    pub const VPU: u32 = 50;
}

/// Collected trace events.
#[derive(Debug, Default)]
pub struct Trace {
    events: Vec<Value>,
    cycles_per_us: f64,
    dma_slots: u32,
}

impl Trace {
    /// An empty trace for a clock of `clock_mhz`.
    pub fn new(clock_mhz: u32) -> Trace {
        Trace {
            events: Vec::new(),
            cycles_per_us: f64::from(clock_mhz.max(1)),
            dma_slots: 0,
        }
    }

    fn us(&self, cycles: u64) -> f64 {
        cycles as f64 / self.cycles_per_us
    }

    /// A slice on a track.
    pub fn slice(&mut self, track: u32, name: &str, start: u64, end: u64, pc: Option<u32>) {
        if (tracks::DMA..tracks::MXU_LOAD).contains(&track) {
            self.dma_slots = self.dma_slots.max(track - tracks::DMA + 1);
        }
        let mut e = json!({
            "name": name,
            "ph": "X",
            "pid": 1,
            "tid": track,
            "ts": self.us(start),
            "dur": self.us(end.saturating_sub(start)),
        });
        if let Some(pc) = pc {
            e["args"] = json!({ "pc": pc });
        }
        self.events.push(e);
    }

    /// A counter sample.
    pub fn counter(&mut self, name: &str, at: u64, value: f64) {
        let e = json!({
            "name": name, "ph": "C", "pid": 1, "ts": self.us(at),
            "args": { "bytes_per_cycle": value },
        });
        self.events.push(e);
    }

    /// The whole trace as a JSON document.
    pub fn to_json(&self) -> Value {
        let mut events = Vec::with_capacity(self.events.len() + 8);
        let mut name_track = |tid: u32, name: &str, order: u32| {
            events.push(json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": tid, "args": {"name": name}}));
            events.push(json!({"name": "thread_sort_index", "ph": "M", "pid": 1, "tid": tid, "args": {"sort_index": order}}));
        };
        name_track(tracks::SU, "SU", 0);
        for slot in 0..self.dma_slots.max(1) {
            name_track(tracks::DMA + slot, &format!("DMA[{slot}]"), 10 + slot);
        }
        name_track(tracks::MXU_LOAD, "MXU weights", 40);
        name_track(tracks::MXU_STREAM, "MXU stream", 41);
        name_track(tracks::VPU, "VPU", 50);
        events.push(
            json!({"name": "process_name", "ph": "M", "pid": 1, "args": {"name": "Tessera NPU"}}),
        );
        events.extend(self.events.iter().cloned());
        json!({ "traceEvents": events, "displayTimeUnit": "ns" })
    }
}
