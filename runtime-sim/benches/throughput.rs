//! Simulator throughput: `cargo bench -p tessera-sim`.
//!
//! Runs the GEMM example re-parameterized to 1024×1024×1024 (bf16, `base`)
//! and a scalar-heavy loop, and prints simulated MACs per second of host
//! time, instructions per second, simulated cycles and MXU utilization.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::Instant;

use common::*;
use tessera_isa::Target;

fn main() {
    let size = std::env::var("TESSERA_BENCH_GEMM")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1024i64);
    let target = Target::base();
    let source = with_params(
        &example("gemm.s"),
        &gemm_params(size, size, size, 512, 128, 128),
    );
    let loadable = build(&source, &target);
    let mut rng = Rng::new(1);
    let n = (size * size) as usize;
    let (a, _) = bf16_data(&rng.floats(n, 1.0));
    let (b, _) = bf16_data(&rng.floats(n, 1.0));
    let mut sim = tessera_sim::Simulator::new(loadable).expect("load");
    sim.set_input("A", &a).expect("A");
    sim.set_input("B", &b).expect("B");
    let start = Instant::now();
    let result = sim.run(&tessera_sim::Options::default()).expect("run");
    let secs = start.elapsed().as_secs_f64();
    let s = &result.stats;
    let instrs: u64 = s.engines.values().map(|u| u.instructions).sum();
    println!("gemm {size}x{size}x{size} bf16 on base:");
    println!("  host time        {secs:.3} s");
    println!(
        "  simulated MACs   {} ({:.2} GMAC/s of host time)",
        s.macs,
        s.macs as f64 / secs / 1e9
    );
    println!(
        "  instructions     {instrs} ({:.2} M instr/s)",
        instrs as f64 / secs / 1e6
    );
    println!(
        "  simulated cycles {} (MXU bound {}, utilization {:.1}%)",
        s.cycles,
        s.macs / target.peak_macs_per_cycle(),
        100.0 * s.mxu_utilization
    );
    println!("{}", s.table());

    if std::env::var_os("TESSERA_BENCH_GEMM_ONLY").is_some() {
        return;
    }
    // Scalar-unit and dispatch throughput: a loop of scalar instructions.
    let loop_src = "li r1, 2000000\ntop:\naddi r2, r2, 3\nxor r3, r3, r2\nloop r1, top\nhalt\n";
    let mut sim = tessera_sim::Simulator::new(build(loop_src, &target)).expect("load");
    let start = Instant::now();
    let result = sim.run(&tessera_sim::Options::default()).expect("run");
    let secs = start.elapsed().as_secs_f64();
    let instrs = result.stats.engines["su"].instructions;
    println!(
        "scalar loop: {instrs} instructions in {secs:.3} s ({:.1} M instr/s)",
        instrs as f64 / secs / 1e6
    );
}
