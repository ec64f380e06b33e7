//! Deliberately broken programs each produce the right report.

mod common;

use common::*;
use tessera_isa::Target;
use tessera_sim::{FaultKind, SimError};

fn run_src(source: &str, inputs: &[(&str, Vec<u8>)]) -> SimError {
    match run(build(source, &Target::tiny()), inputs) {
        Ok(_) => panic!("the broken program ran to completion"),
        Err(e) => e,
    }
}

#[test]
fn missing_wait_is_a_race_naming_both_instructions() {
    // loop.s without the VPU's wait: the VPU reads the buffer the DMA writes.
    let source = example("loop.s").replace("        vpu.wait   s0, 1\n", "");
    assert_ne!(source, example("loop.s"));
    let x = f32_bytes(&[1.0; 96]);
    let SimError::Race(race) = run_src(&source, &[("x", x)]) else {
        panic!("expected a race")
    };
    assert_eq!(race.first.engine, tessera_isa::Engine::Dma);
    assert!(
        race.first.text.starts_with("dma.copy spm[r4], dram[r2]"),
        "{}",
        race.first.text
    );
    assert!(race.first_writes);
    assert_eq!(race.second.engine, tessera_isa::Engine::Vpu);
    assert!(
        race.second.text.starts_with("vpu.bins mul"),
        "{}",
        race.second.text
    );
    assert_eq!(race.mem, tessera_isa::Mem::Spm);
    assert_eq!(race.range, (0, 96));
    let line = SimError::Race(race).to_string();
    assert!(
        line.starts_with("data race on spm bytes 0x0..0x60: dma pc 9"),
        "{line}"
    );
}

#[test]
fn missing_wait_in_gemm_is_a_race() {
    // Without waiting for the MXU, the VPU drains an ACC tile still being
    // written. (Dropping the MXU's wait for a drained ACC tile instead is not
    // a race: the VPU's C-tile signal reaches the DMA, whose later loads
    // reach the MXU, so the reuse is transitively ordered — and the detector
    // rightly accepts it.)
    let source = example("gemm.s").replace("        vpu.wait   s2, 1\n", "");
    assert_ne!(source, example("gemm.s"));
    let mut rng = Rng::new(5);
    let (a, _) = bf16_data(&rng.floats(20 * 24, 1.0));
    let (b, _) = bf16_data(&rng.floats(24 * 20, 1.0));
    let SimError::Race(race) = run_src(&source, &[("A", a), ("B", b)]) else {
        panic!("expected a race")
    };
    assert_eq!(
        (race.first.engine, race.second.engine),
        (tessera_isa::Engine::Mxu, tessera_isa::Engine::Vpu)
    );
    assert!(
        race.first.text.starts_with("mxu.mm acc[r20]"),
        "{}",
        race.first.text
    );
    assert_eq!(race.mem, tessera_isa::Mem::Acc);
}

#[test]
fn circular_wait_is_a_deadlock_naming_each_engine() {
    let source = "
        dma.wait s0, 1
        vpu.signal s1, 1
        vpu.wait s2, 1
        dma.signal s2, 1
        mxu.wait s1, 2
        halt
    ";
    // DMA waits for s0, which nobody signals; the VPU waits for s2, which
    // only the blocked DMA would signal; the MXU waits for 2 on s1, which
    // gets only 1.
    let SimError::Deadlock(d) = run_src(source, &[]) else {
        panic!("expected a deadlock")
    };
    let engines: Vec<_> = d.blocked.iter().map(|(at, _)| at.engine).collect();
    use tessera_isa::Engine::*;
    assert_eq!(engines, vec![Dma, Mxu, Vpu]);
    assert!(
        d.blocked[0].1.contains("waits for 1 on s0, which holds 0"),
        "{:?}",
        d.blocked[0]
    );
    assert!(
        d.blocked[1].1.contains("waits for 2 on s1, which holds 1"),
        "{:?}",
        d.blocked[1]
    );
    let text = SimError::Deadlock(d).to_string();
    assert!(text.starts_with("deadlock at cycle"), "{text}");
    assert!(text.contains("dma pc 0 `dma.wait s0, 1`"), "{text}");
}

#[test]
fn out_of_bounds_dma_faults_with_pc() {
    let source = "
        li r1, 0x10000000        ; 256 MiB: the end of tiny's DRAM
        dma.copy spm[0], dram[r1-8], bytes=16
        halt
    ";
    let SimError::Fault(f) = run_src(source, &[]) else {
        panic!("expected a fault")
    };
    assert_eq!(f.kind, FaultKind::OutOfBounds);
    assert_eq!(f.at.pc, 1);
    assert_eq!(f.at.text, "dma.copy spm[0], dram[r1-8], bytes=16");
    assert!(
        f.detail.contains("dram bytes 0xffffff8..0x10000008"),
        "{}",
        f.detail
    );
}

#[test]
fn misaligned_and_bad_operands_fault() {
    let err = run_src(
        "li r1, 2\nli r2, 4\nvpu.fill spm[2], value=r0, rows=r1, cols=r1, dstride=r2\nhalt\n",
        &[],
    );
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::Misaligned && f.at.pc == 2),
        "{err}"
    );
    let err = run_src(
        "mxu.mm acc[0], spm[0], m=1, astride=0, dstride=0, mode=set\nhalt\n",
        &[],
    );
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::BadOperand),
        "{err}"
    );
    let err = run_src(
        "mxu.ldw spm[0], k=9, n=8, stride=16, dtype=bf16, trans=n\nhalt\n",
        &[],
    );
    assert!(
        err.to_string().contains("does not fit the 8x8 array"),
        "{err}"
    );
    let err = run_src("li r1, 5\ndivu r2, r1, r0\nhalt\n", &[]);
    assert!(err.to_string().contains("division by zero"), "{err}");
}

#[test]
fn semaphore_discipline_and_range_are_enforced() {
    let err = run_src("dma.signal s20, 1\nhalt\n", &[]);
    assert!(err.to_string().contains("s20 does not exist"), "{err}");
    let err = run_src(
        "dma.signal s1, 1\nvpu.signal s1, 1\nmxu.wait s1, 2\nhalt\n",
        &[],
    );
    assert!(
        err.to_string().contains("signaled from both dma and vpu"),
        "{err}"
    );
}

#[test]
fn runaway_loops_hit_the_cycle_limit() {
    let loadable = build("top: jmp top\n", &Target::tiny());
    let mut sim = tessera_sim::Simulator::new(loadable).expect("load");
    let err = sim
        .run(&tessera_sim::Options {
            max_cycles: 10_000,
            ..Default::default()
        })
        .err()
        .expect("limit");
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::CycleLimit),
        "{err}"
    );
}

#[test]
fn falling_off_the_end_faults() {
    let err = run_src("nop\n", &[]);
    assert!(
        err.to_string().contains("pc 1 is outside the code"),
        "{err}"
    );
}

#[test]
fn gather_index_out_of_range_faults() {
    let source = "
        .segment \"table\" @ 0x1000
        .f32 1, 2, 3, 4, 5, 6
        .segment \"ids\" @ 0x0
        .bytes 05000000 00000000
        li r1, 8
        dma.copy spm[0], dram[0], bytes=8
        dma.signal s0, 1
        dma.wait s1, 1
        vpu.signal s1, 1
        li r2, 1
        li r3, 8
        li r4, 3
        dma.gather spm[64], dram[0x1000], spm[0], rows=r2, bytes=r3, limit=r4, itype=i64
        halt
    ";
    let err = run_src(source, &[]);
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::GatherIndex),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("index 5 of row 0 is outside the table of 3 rows"),
        "{err}"
    );
}

#[test]
fn scatter_index_out_of_range_faults() {
    let source = "
        .segment \"table\" @ 0x1000
        .f32 1, 2, 3, 4, 5, 6
        .segment \"ids\" @ 0x0
        .bytes 00000000 fcffffff
        li r2, 2
        li r3, 8
        li r4, 3
        dma.copy spm[0], dram[0], bytes=8
        dma.scatter dram[0x1000], spm[64], spm[0], rows=r2, bytes=r3, limit=r4, itype=i32
        halt
    ";
    let err = run_src(source, &[]);
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::ScatterIndex),
        "{err}"
    );
    assert!(
        err.to_string()
            .contains("index -4 of row 1 is outside the table of 3 rows"),
        "{err}"
    );
}

/// Every instruction of the ISA table (each field at its smallest valid
/// encoding) runs on the
/// simulator: assembled from its disassembly (the round trip), then
/// executed ahead of a `halt`, it completes or faults at pc 0 with a
/// reason of its own — the simulator never passes over an instruction it
/// does not know.
#[test]
fn every_instruction_executes() {
    for info in tessera_isa::INSTRUCTIONS {
        let instr = info
            .smallest()
            .unwrap_or_else(|e| panic!("{}: {e}", info.mnemonic));
        let text = instr.to_string();
        let source = format!("{text}\nhalt\n");
        let loadable = build(&source, &Target::tiny());
        let decoded = tessera_isa::decode_program(&loadable.code).expect("decodes");
        assert_eq!(
            decoded[0], instr,
            "`{text}` round-trips through the assembler"
        );
        let mut sim = tessera_sim::Simulator::new(loadable).expect("load");
        let result = sim.run(&tessera_sim::Options {
            max_cycles: 10_000,
            ..Default::default()
        });
        match result {
            Ok(r) => assert!(
                instr.engine() == tessera_isa::Engine::Su || r.stats.start_by_pc[0] != u64::MAX,
                "`{text}` was queued but never started"
            ),
            Err(SimError::Fault(f)) => {
                assert_eq!(f.at.pc, 0, "`{text}` faulted elsewhere: {f:?}")
            }
            Err(e) => panic!("`{text}`: {e}"),
        }
    }
}

/// One `dma.copy` of 2³² one-byte runs at stride 0 would take seconds to
/// execute functionally; with a cycle limit far below its bus time it
/// faults before copying anything.
#[test]
fn a_huge_transfer_stops_at_the_cycle_limit_before_running() {
    let source = "
        li r1, 65536
        dma.dim 1, count=r1, sstride=0, dstride=0
        dma.dim 2, count=r1, sstride=0, dstride=0
        dma.copy spm[0], dram[0], bytes=1
        halt
    ";
    let loadable = build(source, &Target::tiny());
    let mut sim = tessera_sim::Simulator::new(loadable).expect("load");
    let started = std::time::Instant::now();
    let err = sim
        .run(&tessera_sim::Options {
            max_cycles: 100_000,
            ..Default::default()
        })
        .err()
        .expect("limit");
    assert!(
        matches!(&err, SimError::Fault(f) if f.kind == FaultKind::CycleLimit && f.at.pc == 3),
        "{err}"
    );
    // Not a timing assertion on the machine: the transfer was never run,
    // which a generous bound shows (running it takes tens of seconds).
    assert!(started.elapsed().as_secs() < 5, "{:?}", started.elapsed());
}
