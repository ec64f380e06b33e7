//! The analytical cost of each instruction on a target (SPEC.md, "Timing").
//!
//! These functions are the single source of truth for cycle counts: the
//! simulator's timing model calls them with the operand values it resolved at
//! dispatch, and the compiler's cost model calls them with the sizes it plans.
//! They take plain numbers so that both can use them.

use crate::fields::{BinFunc, Mem, MxuType, UnFunc};
use crate::target::Target;

/// Which bus a DMA transfer's data phase occupies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Bus {
    /// The DRAM interface, shared by every transfer that touches DRAM.
    Dram,
    /// The on-chip SPM-to-SPM path.
    OnChip,
}

/// Cost of one DMA transfer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaCost {
    /// Cycles from issue until the data phase may begin.
    pub latency: u64,
    /// Cycles the data phase occupies its bus.
    pub bus_cycles: u64,
    /// The bus.
    pub bus: Bus,
    /// Bytes read from DRAM.
    pub dram_read: u64,
    /// Bytes written to DRAM.
    pub dram_write: u64,
}

fn ceil_div(a: u64, b: u64) -> u64 {
    a.div_ceil(b.max(1))
}

/// Bus cycles to move `runs` contiguous runs of `run_bytes` bytes, each
/// rounded up to the burst size, at `bytes_per_cycle`.
fn run_cycles(runs: u64, run_bytes: u64, burst: u64, bytes_per_cycle: u64) -> u64 {
    if runs == 0 || run_bytes == 0 {
        return 0;
    }
    let charged = run_bytes.div_ceil(burst) * burst;
    ceil_div(runs.saturating_mul(charged), bytes_per_cycle)
}

/// Cost of `dma.copy` moving `runs` runs of `run_bytes` bytes from `src` to
/// `dst`.
pub fn dma_copy(t: &Target, dst: Mem, src: Mem, run_bytes: u64, runs: u64) -> DmaCost {
    let total = run_bytes.saturating_mul(runs);
    let dram_read = if src == Mem::Dram { total } else { 0 };
    let dram_write = if dst == Mem::Dram { total } else { 0 };
    if dram_read == 0 && dram_write == 0 {
        DmaCost {
            latency: 0,
            bus_cycles: run_cycles(runs, run_bytes, 4, t.onchip_dma_bytes_per_cycle.into()),
            bus: Bus::OnChip,
            dram_read,
            dram_write,
        }
    } else {
        // A DRAM-to-DRAM copy crosses the DRAM interface twice.
        let crossings = u64::from(dram_read > 0) + u64::from(dram_write > 0);
        DmaCost {
            latency: t.dram_latency_cycles.into(),
            bus_cycles: crossings
                * run_cycles(
                    runs,
                    run_bytes,
                    t.dram_burst_bytes.into(),
                    t.dram_bytes_per_cycle.into(),
                ),
            bus: Bus::Dram,
            dram_read,
            dram_write,
        }
    }
}

/// Cost of `dma.gather` reading `rows` rows of `row_bytes` bytes from DRAM.
pub fn dma_gather(t: &Target, rows: u64, row_bytes: u64) -> DmaCost {
    DmaCost {
        latency: t.dram_latency_cycles.into(),
        bus_cycles: run_cycles(
            rows,
            row_bytes,
            t.dram_burst_bytes.into(),
            t.dram_bytes_per_cycle.into(),
        ),
        bus: Bus::Dram,
        dram_read: rows.saturating_mul(row_bytes),
        dram_write: 0,
    }
}

/// Cost of `dma.scatter` writing `rows` rows of `row_bytes` bytes to DRAM.
pub fn dma_scatter(t: &Target, rows: u64, row_bytes: u64) -> DmaCost {
    DmaCost {
        dram_read: 0,
        dram_write: rows.saturating_mul(row_bytes),
        ..dma_gather(t, rows, row_bytes)
    }
}

/// Cycles `mxu.ldw` occupies the weight-load port: one weight row per cycle.
pub fn mxu_load_weights(k: u64) -> u64 {
    k.max(1)
}

/// Cost of `mxu.mm` streaming `m` rows: (stream-port occupancy, cycles from
/// start to the last result written in ACC). The occupancy is at least one
/// cycle: an empty matmul still takes its slot on the port.
pub fn mxu_matmul(t: &Target, m: u64, dtype: MxuType) -> (u64, u64) {
    let occupancy = match dtype {
        MxuType::F32 => m.saturating_mul(u64::from(t.mxu_fp32_passes)),
        d if d.is_8bit() => m.div_ceil(u64::from(t.mxu_8bit_rows_per_cycle.max(1))),
        _ => m,
    }
    .max(1);
    (
        occupancy,
        occupancy.saturating_add(u64::from(t.mxu_pipeline_cycles)),
    )
}

/// Throughput class of a vector function.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VpuClass {
    /// One lane-group per cycle.
    Simple,
    /// `vpu_special_cycles` per lane-group (division, roots, transcendentals).
    Special,
}

/// Class of a binary function.
pub fn bin_class(f: BinFunc) -> VpuClass {
    match f {
        BinFunc::Div | BinFunc::Pow => VpuClass::Special,
        _ => VpuClass::Simple,
    }
}

/// Class of a unary function.
pub fn un_class(f: UnFunc) -> VpuClass {
    match f {
        UnFunc::Mov
        | UnFunc::Neg
        | UnFunc::Abs
        | UnFunc::Relu
        | UnFunc::Not
        | UnFunc::Floor
        | UnFunc::Ceil
        | UnFunc::Round
        | UnFunc::Sign => VpuClass::Simple,
        _ => VpuClass::Special,
    }
}

/// Cycles of an elementwise vector instruction over rows x cols.
pub fn vpu_elementwise(t: &Target, class: VpuClass, rows: u64, cols: u64) -> u64 {
    let per_group = match class {
        VpuClass::Simple => 1,
        VpuClass::Special => u64::from(t.vpu_special_cycles),
    };
    let groups = rows.saturating_mul(ceil_div(cols, t.vpu_lanes.into()));
    u64::from(t.vpu_startup_cycles) + groups.saturating_mul(per_group)
}

/// Cycles of a row reduction over rows x cols: one lane-group per cycle plus
/// the depth of the lane-reduction tree once.
pub fn vpu_reduce(t: &Target, rows: u64, cols: u64) -> u64 {
    let tree = u64::from(t.vpu_lanes.max(1).ilog2());
    vpu_elementwise(t, VpuClass::Simple, rows, cols) + tree
}

/// Cycles of a semaphore or configuration instruction in an engine queue.
pub const QUEUE_CONTROL_CYCLES: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dram_runs_round_up_to_bursts() {
        let t = Target::tiny();
        // 100 runs of 4 bytes: each charged one 16-byte burst at 16 B/cycle.
        let c = dma_copy(&t, Mem::Spm, Mem::Dram, 4, 100);
        assert_eq!(c.bus_cycles, 100);
        assert_eq!(c.dram_read, 400);
        assert_eq!(c.latency, 32);
        // One contiguous 1 KiB run: 64 cycles.
        assert_eq!(dma_copy(&t, Mem::Dram, Mem::Spm, 1024, 1).bus_cycles, 64);
    }

    #[test]
    fn onchip_copies_use_the_onchip_bus() {
        let t = Target::tiny();
        let c = dma_copy(&t, Mem::Spm, Mem::Spm, 64, 2);
        assert_eq!((c.bus, c.bus_cycles, c.latency), (Bus::OnChip, 4, 0));
    }

    #[test]
    fn matmul_rate_depends_on_input_type() {
        let t = Target::base();
        assert_eq!(mxu_matmul(&t, 128, MxuType::Bf16), (128, 384));
        assert_eq!(mxu_matmul(&t, 128, MxuType::F32).0, 512);
    }

    #[test]
    fn vector_cost_counts_lane_groups() {
        let t = Target::tiny();
        assert_eq!(vpu_elementwise(&t, VpuClass::Simple, 3, 9), 2 + 3 * 2);
        assert_eq!(vpu_elementwise(&t, VpuClass::Special, 1, 8), 2 + 4);
        assert_eq!(vpu_reduce(&t, 1, 8), 2 + 1 + 3);
    }
}
