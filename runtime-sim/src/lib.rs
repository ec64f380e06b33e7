//! `tessera-sim`: executes Tessera NPU programs exactly as `isa/SPEC.md`
//! says, times them, and proves every run well-synchronized.
//!
//! ```no_run
//! # fn demo(loadable: tessera_isa::Loadable, x: &[u8]) -> Result<(), tessera_sim::SimError> {
//! let mut sim = tessera_sim::Simulator::new(loadable)?;
//! sim.set_input("x", x)?;
//! let result = sim.run(&tessera_sim::Options::default())?;
//! println!("{} cycles", result.stats.cycles);
//! let y = sim.output("y")?;
//! # Ok(()) }
//! ```

mod error;
mod exec;
mod matrix;
mod memory;
mod mxu;
mod ops;
mod race;
mod sched;
mod stats;
mod trace;
mod vpu;

pub use error::{Deadlock, Fault, InstrRef, RaceReport, SimError};
pub use exec::FaultKind;
pub use memory::Memories;
pub use sched::{Options, RunResult, Watch, DEFAULT_MAX_CYCLES};
pub use stats::{NodeProfile, OpTypeProfile, StallReason, Stats, UnitStats};
pub use trace::Trace;

use tessera_isa::{Instr, Loadable, Mem, TensorDesc};

/// One `Kernels` track slice per source-map range that executed.
fn add_kernel_slices(trace: &mut Trace, stats: &Stats, loadable: &Loadable) {
    for r in &loadable.source_map {
        let pcs = r.start as usize..(r.end as usize).min(stats.start_by_pc.len());
        let start = stats.start_by_pc[pcs.clone()].iter().copied().min();
        let end = stats.end_by_pc[pcs].iter().copied().max();
        let (Some(start), Some(end)) = (start, end) else {
            continue;
        };
        if start == u64::MAX {
            continue;
        }
        let ops = loadable.onnx_ops(&r.sources);
        trace.kernel(&r.node, start, end, ops, r.sources.join(", "));
    }
}

/// A loaded program with its memories.
pub struct Simulator {
    loadable: Loadable,
    code: Vec<Instr>,
    mems: Memories,
    provided: Vec<bool>,
}

impl Simulator {
    /// Loads a (validated) loadable: decodes the code and writes the
    /// segments into DRAM.
    pub fn new(loadable: Loadable) -> Result<Simulator, SimError> {
        loadable
            .validate()
            .map_err(|e| SimError::Input(e.to_string()))?;
        let code = loadable
            .instructions()
            .map_err(|e| SimError::Input(e.to_string()))?;
        let target = loadable.target();
        let mut mems = Memories::new(&target);
        for seg in &loadable.segments {
            mems.write(Mem::Dram, seg.dram_addr, &seg.data)
                .map_err(|e| SimError::Input(format!("segment `{}`: {e}", seg.name)))?;
        }
        let provided = vec![false; loadable.inputs.len()];
        Ok(Simulator {
            loadable,
            code,
            mems,
            provided,
        })
    }

    /// The loadable being simulated.
    pub fn loadable(&self) -> &Loadable {
        &self.loadable
    }

    /// Writes an input tensor's bytes (dense, little-endian, its dtype) into
    /// DRAM. The length must match the descriptor.
    pub fn set_input(&mut self, name: &str, data: &[u8]) -> Result<(), SimError> {
        let Some(i) = self.loadable.inputs.iter().position(|t| t.name == name) else {
            let names: Vec<&str> = self
                .loadable
                .inputs
                .iter()
                .map(|t| t.name.as_str())
                .collect();
            return Err(SimError::Input(format!(
                "the program has no input `{name}` (inputs: {})",
                names.join(", ")
            )));
        };
        let desc = &self.loadable.inputs[i];
        if data.len() as u64 != desc.bytes() {
            return Err(SimError::Input(format!(
                "input `{name}` needs {} bytes ({} {:?}), got {}",
                desc.bytes(),
                desc.dtype(),
                desc.shape,
                data.len()
            )));
        }
        self.mems
            .write(Mem::Dram, desc.dram_addr, data)
            .map_err(|e| SimError::Input(format!("input `{name}`: {e}")))?;
        self.provided[i] = true;
        Ok(())
    }

    /// Runs the program to completion (or a fault, race or deadlock).
    pub fn run(&mut self, options: &Options) -> Result<RunResult, SimError> {
        if let Some(i) = self.provided.iter().position(|p| !p) {
            return Err(SimError::Input(format!(
                "input `{}` was not provided",
                self.loadable.inputs[i].name
            )));
        }
        let target = self.loadable.target();
        let loadable = &self.loadable;
        let node_of = |pc: u32| loadable.node_of(pc).map(str::to_string);
        let mut result = sched::run(&target, &self.code, &node_of, &mut self.mems, options)?;
        result.stats.roofline_cycles = loadable.source_map.iter().map(|r| r.roofline_cycles).sum();
        if let Some(trace) = result.trace.as_mut() {
            add_kernel_slices(trace, &result.stats, loadable);
        }
        Ok(result)
    }

    /// Reads an output tensor's bytes after a run.
    pub fn output(&self, name: &str) -> Result<Vec<u8>, SimError> {
        let desc = self
            .loadable
            .outputs
            .iter()
            .find(|t| t.name == name)
            .ok_or_else(|| SimError::Input(format!("the program has no output `{name}`")))?;
        self.read_tensor(desc)
    }

    /// Reads any DRAM tensor.
    pub fn read_tensor(&self, desc: &TensorDesc) -> Result<Vec<u8>, SimError> {
        self.mems
            .read_vec(Mem::Dram, desc.dram_addr, desc.bytes())
            .map_err(|e| SimError::Input(format!("output `{}`: {e}", desc.name)))
    }

    /// The memories (for tests and debugging).
    pub fn memories(&self) -> &Memories {
        &self.mems
    }
}
