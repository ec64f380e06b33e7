//! Busy and stall accounting (SPEC.md §10.5): a unit is never busy for more
//! cycles than the run lasts, and every stall is charged to the reason that
//! really held the instruction back.

mod common;

use common::*;
use tessera_isa::Target;
use tessera_sim::Stats;

/// An 8 KiB DRAM→SPM copy, then an SPM→SPM copy that runs on the on-chip
/// bus while the first still occupies the DRAM bus.
const DRAM_AND_ONCHIP: &str = "\
dma.copy spm[0], dram[0], bytes=8192
dma.copy spm[8192], spm[12288], bytes=4096
halt
";

/// Three weight tiles, each followed by a 16-row matmul on it.
const LDW_MM_CHAIN: &str = "\
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=set
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=acc
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=acc
halt
";

fn unit<'s>(stats: &'s Stats, name: &str) -> &'s tessera_sim::UnitStats {
    stats
        .engines
        .get(name)
        .unwrap_or_else(|| panic!("no unit {name}"))
}

fn stalls(stats: &Stats, name: &str) -> Vec<(&'static str, u64)> {
    unit(stats, name)
        .stalls
        .iter()
        .map(|(r, c)| (*r, *c))
        .collect()
}

#[test]
fn overlapping_dram_and_onchip_transfers_count_their_cycles_once() {
    let s = stats_of(DRAM_AND_ONCHIP, &Target::tiny());
    // The DRAM copy moves data in cycles [33, 545) (start 1, latency 32,
    // 8192 B / 16 B per cycle), the on-chip copy in [2, 130) (4096 B / 32 B
    // per cycle). Their union is [2, 545): 543 cycles, not 512 + 128 = 640.
    assert_eq!(s.cycles, 545);
    let dma = unit(&s, "dma");
    assert_eq!(dma.busy_cycles, 543);
    assert!(dma.busy_cycles <= s.cycles);
    // Attribution per instruction still charges each its own bus time.
    assert_eq!(s.busy_by_pc[..2], [512, 128]);
}

#[test]
fn dma_busy_cycles_never_exceed_the_run_on_any_target() {
    // Many copies on both buses at once, with the in-flight limit reached.
    let mut source = String::new();
    for i in 0..6 {
        source.push_str(&format!(
            "dma.copy spm[{}], dram[{}], bytes=1024\n",
            i * 1024,
            i * 1024
        ));
        source.push_str(&format!(
            "dma.copy spm[{}], spm[{}], bytes=512\n",
            8192 + i * 512,
            12288 + i * 512
        ));
    }
    source.push_str("halt\n");
    for target in [Target::tiny(), Target::base()] {
        let s = stats_of(&source, &target);
        let dma = unit(&s, "dma");
        let summed: u64 = s.busy_by_pc.iter().sum();
        assert!(
            dma.busy_cycles <= s.cycles,
            "{}: DMA busy {} of {} cycles",
            target.name,
            dma.busy_cycles,
            s.cycles
        );
        assert!(dma.busy_cycles <= summed, "{}: {summed}", target.name);
        if target.name == "tiny" {
            // On tiny the on-chip copies run during the DRAM copies' data
            // phases (on base they finish before DRAM's 200-cycle latency),
            // so the union is strictly less than the sum.
            assert!(dma.busy_cycles < summed, "{summed}");
        }
        assert!(s.dram_utilization <= 1.0);
    }
}

#[test]
fn transfers_sharing_the_dram_bus_are_bandwidth_stalls() {
    let source = "\
dma.copy spm[0], dram[0], bytes=1024
dma.copy spm[1024], dram[1024], bytes=1024
halt
";
    let s = stats_of(source, &Target::tiny());
    // The second copy is ready at 2 + 32 = 34 but the bus is busy until 97.
    assert_eq!(stalls(&s, "dma"), [("bandwidth", 63)]);
    assert_eq!(unit(&s, "dma").busy_cycles, 128);
}

#[test]
fn matmul_waiting_for_the_stream_port_is_not_a_stall() {
    let s = stats_of(LDW_MM_CHAIN, &Target::tiny());
    // Only the first matmul waits for weights (cycles 2..9, while the first
    // mxu.ldw loads 8 rows); the second and third wait for the stream port,
    // busy with the matmul before them, and their weights are ready by then.
    let mxu = unit(&s, "mxu");
    assert_eq!(stalls(&s, "mxu"), [("weights", 7)]);
    assert_eq!(mxu.stall_cycles, 7);
    assert_eq!(mxu.busy_cycles, 48);
    assert!(mxu.busy_cycles + mxu.stall_cycles <= s.cycles);
}

#[test]
fn matmul_waiting_for_its_weights_is_a_weights_stall() {
    // Short matmuls: the second ldw (cycles 10..18) outlasts the first
    // matmul's stream (9..11), so the second matmul waits 11..18 for weights.
    let source = "\
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=2, astride=16, dstride=32, mode=set
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=2, astride=16, dstride=32, mode=acc
halt
";
    let s = stats_of(source, &Target::tiny());
    assert_eq!(stalls(&s, "mxu"), [("weights", 7 + 7)]);
    // Last stream ends at 20; results 16 pipeline cycles later.
    assert_eq!(s.cycles, 36);
}
