//! Exact cycle counts of small programs on the `tiny` and `base` presets.
//!
//! Each expected number is derived in a comment from the target parameters
//! (`isa/src/target.rs`), the cost formulas (`isa/src/cost.rs`) and the
//! timing rules of SPEC.md §10, so that any change to the timing model shows
//! up here and has to be made on purpose. Rules used throughout:
//!
//! - the SU issues one instruction per cycle from cycle 0, `halt` included;
//!   an instruction dispatched at cycle t starts on its engine at t + 1 at
//!   the earliest (§10.1);
//! - the run ends when the last unit finishes (§10.5).
//!
//! Parameters used (tiny / base): dram_latency_cycles 32 / 200,
//! dram_bytes_per_cycle 16 / 256, dram_burst_bytes 16 / 64,
//! onchip_dma_bytes_per_cycle 32 / 512, mxu_pipeline_cycles 16 / 256,
//! vpu_lanes 8 / 128, vpu_startup_cycles 2 / 4, vpu_special_cycles 4 / 4,
//! branch_penalty_cycles 1 / 2.

mod common;

use common::*;
use tessera_isa::Target;

fn cycles(source: &str, target: &Target) -> u64 {
    stats_of(source, target).cycles
}

fn tiny_and_base(source: &str) -> (u64, u64) {
    (
        cycles(source, &Target::tiny()),
        cycles(source, &Target::base()),
    )
}

#[test]
fn one_dram_to_spm_copy() {
    let source = "\
dma.copy spm[0], dram[0], bytes=1024
halt
";
    // Dispatched at 0, starts at 1; data phase after the DRAM latency for
    // ceil(roundup(1024, burst) / bandwidth) cycles.
    // tiny: 1 + 32 + 1024/16 = 1 + 32 + 64 = 97
    // base: 1 + 200 + 1024/256 = 1 + 200 + 4 = 205
    assert_eq!(tiny_and_base(source), (97, 205));
}

#[test]
fn two_overlapping_copies_share_the_dram_bus() {
    let source = "\
dma.copy spm[0], dram[0], bytes=1024
dma.copy spm[1024], dram[1024], bytes=1024
halt
";
    // The second copy starts at 2 (no conflict, in-flight limit not
    // reached), so its latency overlaps the first; its data phase waits for
    // the DRAM bus (one FIFO resource).
    // tiny: first data [33, 97); second ready at 2 + 32 = 34, bus free at 97:
    //       97 + 64 = 161
    // base: first data [201, 205); second ready at 202, bus free at 205:
    //       205 + 4 = 209
    assert_eq!(tiny_and_base(source), (161, 209));
}

#[test]
fn weight_load_then_matmul() {
    let source = "\
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=set
halt
";
    // ldw starts at 1 and occupies the load port k = 8 cycles: weights ready
    // at 9. mm (dispatched at 1) starts at 9, streams m = 16 bf16 rows (one
    // per cycle) until 25, and its results land mxu_pipeline_cycles later.
    // tiny: 9 + 16 + 16 = 41
    // base: 9 + 16 + 256 = 281
    assert_eq!(tiny_and_base(source), (41, 281));
}

#[test]
fn one_row_vector_exp() {
    let source = "\
li r1, 1
li r2, 8
vpu.un exp, spm[0], spm[0], rows=r1, cols=r2, dstride=r0, astride=r0, abcast=full
halt
";
    // Two `li` at 0 and 1; vpu.un dispatched at 2, starts at 3 and takes
    // vpu_startup_cycles + rows × ceil(cols / vpu_lanes) × vpu_special_cycles
    // (exp is a special function).
    // tiny: 3 + 2 + 1 × ceil(8/8) × 4 = 3 + 6 = 9
    // base: 3 + 4 + 1 × ceil(8/128) × 4 = 3 + 8 = 11
    assert_eq!(tiny_and_base(source), (9, 11));
}

#[test]
fn three_weight_tiles_chain_through_both_buffers() {
    let source = "\
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=set
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=acc
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=16, astride=16, dstride=32, mode=acc
halt
";
    // MXU instructions start in order, at most one per cycle:
    //   ldw1 (buffer 0) [1, 9);  mm1 streams [9, 25).
    //   ldw2 (buffer 1) starts at 10 (one cycle after mm1), loads [10, 18).
    //   mm2 waits for the stream port: streams [25, 41).
    //   ldw3 (buffer 0, last streamed by mm1 until 25) starts at 26, [26, 34).
    //   mm3 streams [41, 57); results mxu_pipeline_cycles later.
    // tiny: 57 + 16 = 73
    // base: 57 + 256 = 313
    assert_eq!(tiny_and_base(source), (73, 313));
}

#[test]
fn dram_copy_then_onchip_copy() {
    let source = "\
dma.copy spm[0], dram[0], bytes=8192
dma.copy spm[8192], spm[12288], bytes=4096
halt
";
    // The on-chip copy touches other SPM bytes than the DRAM copy, so it
    // starts at 2 with no latency on the on-chip bus and finishes first.
    // tiny: DRAM copy 1 + 32 + 8192/16 = 545; on-chip 2 + 4096/32 = 130
    //       → 545
    // base: DRAM copy 1 + 200 + 8192/256 = 233; on-chip 2 + 4096/512 = 10
    //       → 233
    assert_eq!(tiny_and_base(source), (545, 233));
}

#[test]
fn conflicting_onchip_copy_waits_for_the_dram_copy() {
    let source = "\
dma.copy spm[0], dram[0], bytes=8192
dma.copy spm[8192], spm[4096], bytes=4096
halt
";
    // Now the on-chip copy reads SPM bytes the DRAM copy writes: the
    // interlock (§5.2) holds it until the DRAM copy completes.
    // tiny: 545 + 4096/32 = 545 + 128 = 673
    // base: 233 + 4096/512 = 233 + 8 = 241
    assert_eq!(tiny_and_base(source), (673, 241));
}

#[test]
fn empty_matmul_still_takes_the_stream_port_one_cycle() {
    let source = "\
mxu.ldw spm[0], k=8, n=8, stride=16, dtype=bf16, trans=n
mxu.mm acc[0], spm[0], m=0, astride=16, dstride=32, mode=set
halt
";
    // As `weight_load_then_matmul`, but m = 0: the stream port is occupied
    // max(m, 1) = 1 cycle (SPEC.md §10.3).
    // tiny: 9 + 1 + 16 = 26
    // base: 9 + 1 + 256 = 266
    assert_eq!(tiny_and_base(source), (26, 266));
}

#[test]
fn taken_branches_pay_the_branch_penalty() {
    let source = "\
li r1, 3
top:
loop r1, top
halt
";
    // li at 0; `loop` runs three times, taken twice (1 + penalty each) and
    // falling through once (1); halt takes one cycle.
    // tiny: 1 + 2 × (1 + 1) + 1 + 1 = 7
    // base: 1 + 2 × (1 + 2) + 1 + 1 = 9
    assert_eq!(tiny_and_base(source), (7, 9));
}

#[test]
fn zero_latencies_and_penalties_are_valid_and_cost_nothing() {
    let mut target = Target::tiny();
    target.dram_latency_cycles = 0;
    target.vpu_startup_cycles = 0;
    target.branch_penalty_cycles = 0;
    // 1 + 0 + 1024/16 = 65
    assert_eq!(
        cycles("dma.copy spm[0], dram[0], bytes=1024\nhalt\n", &target),
        65
    );
    // 3 + 0 + 1 × 1 × 4 = 7
    let exp = "li r1, 1\nli r2, 8\nvpu.un exp, spm[0], spm[0], rows=r1, cols=r2, dstride=r0, astride=r0, abcast=full\nhalt\n";
    assert_eq!(cycles(exp, &target), 7);
    // 1 + 3 × 1 + 1 = 5
    assert_eq!(cycles("li r1, 3\ntop:\nloop r1, top\nhalt\n", &target), 5);
}
