//! Chrome trace event output (opens in Perfetto and chrome://tracing).
//!
//! Exactly one slice per executed instruction, named by its disassembly, on
//! its unit's track, plus, for a compiled program, one slice per kernel
//! (source-map range) on the `Kernels` track, from its first instruction's
//! start to its last one's end, with the ONNX nodes fused into it in its
//! `args`: the SU track has every instruction the SU executed or
//! dispatched; each engine has one or more tracks (DMA: one for queue
//! control and one per in-flight transfer slot; MXU: queue control, weight
//! loads, streaming; VPU: one). A `wait`'s slice begins when the wait
//! reached the head of its queue, so semaphore waits show as long wait
//! slices; likewise an SU dispatch that found its queue full. A counter
//! track carries the DRAM bandwidth in use. Timestamps are in microseconds
//! at the target clock.
//!
//! Events are kept compact (a disassembly is formatted once per
//! instruction address) and written as a stream, so a run of millions of
//! instructions costs memory and time linear in its length.

use std::io::{self, Write};

use serde::Serialize;

/// Track ids (Chrome `tid`s).
pub mod tracks {
    /// Scalar unit: scalar instructions and dispatches.
    pub const SU: u32 = 1;
    /// DMA queue control: `dma.wait`, `dma.signal`, `dma.dim`.
    pub const DMA_CONTROL: u32 = 2;
    /// MXU queue control: `mxu.wait`, `mxu.signal`.
    pub const MXU_CONTROL: u32 = 3;
    /// MXU weight-load port.
    pub const MXU_LOAD: u32 = 4;
    /// MXU streaming port.
    pub const MXU_STREAM: u32 = 5;
    /// VPU.
    pub const VPU: u32 = 6;
    /// Kernels: one slice per source-map range of a compiled program.
    pub const KERNELS: u32 = 7;
    /// First DMA transfer slot; slot i is `DMA + i`. Last, so that any
    /// number of in-flight slots fits.
    pub const DMA: u32 = 16;
}

/// Sentinel of `Trace::name_of_pc` for a pc not seen yet.
const UNNAMED: u32 = u32::MAX;

#[derive(Debug)]
enum Event {
    Slice {
        track: u32,
        name: u32,
        pc: u32,
        start: u64,
        end: u64,
        stall: Option<(&'static str, u64)>,
    },
    Counter {
        name: &'static str,
        at: u64,
        value: f64,
    },
}

/// Collected trace events.
#[derive(Debug, Default)]
pub struct Trace {
    events: Vec<Event>,
    /// Distinct slice names (disassemblies), indexed by `Event::Slice::name`.
    names: Vec<String>,
    /// Index into `names` of each instruction address's disassembly.
    name_of_pc: Vec<u32>,
    cycles_per_us: f64,
    dma_slots: u32,
    kernels: Vec<KernelSlice>,
}

/// A kernel's span on the `Kernels` track.
#[derive(Debug)]
struct KernelSlice {
    name: String,
    start: u64,
    end: u64,
    onnx_ops: String,
    onnx_nodes: String,
}

#[derive(Serialize)]
struct KernelJson<'a> {
    name: &'a str,
    ph: &'static str,
    pid: u32,
    tid: u32,
    ts: f64,
    dur: f64,
    args: KernelArgs<'a>,
}

#[derive(Serialize)]
struct KernelArgs<'a> {
    onnx_ops: &'a str,
    onnx_nodes: &'a str,
}

#[derive(Serialize)]
struct SliceJson<'a> {
    name: &'a str,
    ph: &'static str,
    pid: u32,
    tid: u32,
    ts: f64,
    dur: f64,
    args: SliceArgs,
}

#[derive(Serialize)]
struct SliceArgs {
    pc: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stall_cycles: Option<u64>,
}

#[derive(Serialize)]
struct CounterJson {
    name: &'static str,
    ph: &'static str,
    pid: u32,
    ts: f64,
    args: CounterArgs,
}

#[derive(Serialize)]
struct CounterArgs {
    bytes_per_cycle: f64,
}

#[derive(Serialize)]
struct MetaJson<'a> {
    name: &'static str,
    ph: &'static str,
    pid: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    tid: Option<u32>,
    args: MetaArgs<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum MetaArgs<'a> {
    Name { name: &'a str },
    Order { sort_index: u32 },
}

impl Trace {
    /// An empty trace for a clock of `clock_mhz`.
    pub fn new(clock_mhz: u32) -> Trace {
        Trace {
            cycles_per_us: f64::from(clock_mhz.max(1)),
            ..Trace::default()
        }
    }

    fn us(&self, cycles: u64) -> f64 {
        cycles as f64 / self.cycles_per_us
    }

    /// The slice of the instruction at `pc`, from cycle `start` to `end`
    /// (at least one cycle long) on `track`. `disassembly` is called only
    /// the first time `pc` is seen. `stall` is the reason and the number of
    /// cycles at the slice's beginning spent stalled (none if zero).
    pub(crate) fn instruction(
        &mut self,
        track: u32,
        pc: u32,
        start: u64,
        end: u64,
        stall: (&'static str, u64),
        disassembly: impl FnOnce() -> String,
    ) {
        if track >= tracks::DMA {
            self.dma_slots = self.dma_slots.max(track - tracks::DMA + 1);
        }
        let index = pc as usize;
        if self.name_of_pc.len() <= index {
            self.name_of_pc.resize(index + 1, UNNAMED);
        }
        if self.name_of_pc[index] == UNNAMED {
            self.name_of_pc[index] = self.names.len() as u32;
            self.names.push(disassembly());
        }
        self.events.push(Event::Slice {
            track,
            name: self.name_of_pc[index],
            pc,
            start,
            end: end.max(start + 1),
            stall: (stall.1 > 0).then_some(stall),
        });
    }

    /// A kernel's span: `onnx_ops` its ONNX op types (`MatMul + Add`),
    /// `onnx_nodes` the ONNX nodes fused into it.
    pub(crate) fn kernel(
        &mut self,
        name: &str,
        start: u64,
        end: u64,
        onnx_ops: String,
        onnx_nodes: String,
    ) {
        self.kernels.push(KernelSlice {
            name: name.to_string(),
            start,
            end: end.max(start + 1),
            onnx_ops,
            onnx_nodes,
        });
    }

    /// A counter sample.
    pub(crate) fn counter(&mut self, name: &'static str, at: u64, value: f64) {
        self.events.push(Event::Counter { name, at, value });
    }

    /// Writes the whole trace as a Chrome trace JSON document.
    pub fn write_json(&self, out: impl Write) -> io::Result<()> {
        let mut out = io::BufWriter::new(out);
        out.write_all(b"{\"displayTimeUnit\":\"ns\",\"traceEvents\":[")?;
        let mut first = true;
        emit(
            &mut out,
            &mut first,
            &MetaJson {
                name: "process_name",
                ph: "M",
                pid: 1,
                tid: None,
                args: MetaArgs::Name {
                    name: "Tessera NPU",
                },
            },
        )?;
        for (tid, name, order) in self.track_names() {
            emit(
                &mut out,
                &mut first,
                &MetaJson {
                    name: "thread_name",
                    ph: "M",
                    pid: 1,
                    tid: Some(tid),
                    args: MetaArgs::Name { name: &name },
                },
            )?;
            emit(
                &mut out,
                &mut first,
                &MetaJson {
                    name: "thread_sort_index",
                    ph: "M",
                    pid: 1,
                    tid: Some(tid),
                    args: MetaArgs::Order { sort_index: order },
                },
            )?;
        }
        for k in &self.kernels {
            emit(
                &mut out,
                &mut first,
                &KernelJson {
                    name: &k.name,
                    ph: "X",
                    pid: 1,
                    tid: tracks::KERNELS,
                    ts: self.us(k.start),
                    dur: self.us(k.end - k.start),
                    args: KernelArgs {
                        onnx_ops: &k.onnx_ops,
                        onnx_nodes: &k.onnx_nodes,
                    },
                },
            )?;
        }
        for event in &self.events {
            match *event {
                Event::Slice {
                    track,
                    name,
                    pc,
                    start,
                    end,
                    stall,
                } => emit(
                    &mut out,
                    &mut first,
                    &SliceJson {
                        name: &self.names[name as usize],
                        ph: "X",
                        pid: 1,
                        tid: track,
                        ts: self.us(start),
                        dur: self.us(end - start),
                        args: SliceArgs {
                            pc,
                            stall: stall.map(|(reason, _)| reason),
                            stall_cycles: stall.map(|(_, cycles)| cycles),
                        },
                    },
                )?,
                Event::Counter { name, at, value } => emit(
                    &mut out,
                    &mut first,
                    &CounterJson {
                        name,
                        ph: "C",
                        pid: 1,
                        ts: self.us(at),
                        args: CounterArgs {
                            bytes_per_cycle: value,
                        },
                    },
                )?,
            }
        }
        out.write_all(b"]}\n")?;
        out.flush()
    }

    /// (tid, name, sort index) of every track, in display order: the SU,
    /// the DMA, the MXU, the VPU.
    fn track_names(&self) -> Vec<(u32, String, u32)> {
        let mut v = Vec::new();
        if !self.kernels.is_empty() {
            v.push((tracks::KERNELS, "Kernels".to_string()));
        }
        v.extend([
            (tracks::SU, "SU".to_string()),
            (tracks::DMA_CONTROL, "DMA control".to_string()),
        ]);
        for slot in 0..self.dma_slots.max(1) {
            v.push((tracks::DMA + slot, format!("DMA[{slot}]")));
        }
        v.push((tracks::MXU_CONTROL, "MXU control".to_string()));
        v.push((tracks::MXU_LOAD, "MXU weights".to_string()));
        v.push((tracks::MXU_STREAM, "MXU stream".to_string()));
        v.push((tracks::VPU, "VPU".to_string()));
        v.into_iter()
            .enumerate()
            .map(|(order, (tid, name))| (tid, name, order as u32))
            .collect()
    }
}

/// Writes one element of the `traceEvents` array, preceded by a separator
/// unless it is the first.
fn emit<T: Serialize>(out: &mut impl Write, first: &mut bool, event: &T) -> io::Result<()> {
    if !std::mem::take(first) {
        out.write_all(b",\n")?;
    }
    serde_json::to_writer(out, event).map_err(io::Error::from)
}
