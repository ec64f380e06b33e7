//! Snapshots of watched DRAM tensors (`Options::watch`): each is taken when
//! the tensor is final, before a later kernel reuses its memory.

mod common;

use common::*;
use tessera_isa::Target;
use tessera_sim::{Options, Simulator, Watch};

/// Three "kernels" on the DMA: `t = x`, `y = t`, then `t = z` (the memory
/// of `t` reused for another value).
const REUSE: &str = r#"
    .input "x" f32 [4] @ 0x0
    .input "z" f32 [4] @ 0x40
    .output "y" f32 [4] @ 0x200
    .loc "t"
        dma.copy dram[0x100], dram[0x0], bytes=16
    .loc "y"
        dma.copy dram[0x200], dram[0x100], bytes=16
    .loc "t2"
        dma.copy dram[0x100], dram[0x40], bytes=16
    .loc
        halt
"#;

fn run_watching(watch: Vec<Watch>) -> Vec<Vec<f32>> {
    let mut sim = Simulator::new(build(REUSE, &Target::tiny())).expect("load");
    sim.set_input("x", &f32_bytes(&[1.0, 2.0, 3.0, 4.0]))
        .expect("x");
    sim.set_input("z", &f32_bytes(&[9.0, 8.0, 7.0, 6.0]))
        .expect("z");
    let options = Options {
        watch,
        ..Default::default()
    };
    let result = sim.run(&options).expect("run");
    result.snapshots.iter().map(|b| bytes_f32(b)).collect()
}

#[test]
fn a_tensor_is_snapshot_before_its_memory_is_reused() {
    let t = Watch {
        addr: 0x100,
        bytes: 16,
        ready_pc: 1,
    };
    let t2 = Watch {
        ready_pc: 3,
        ..t.clone()
    };
    let y = Watch {
        addr: 0x200,
        bytes: 16,
        ready_pc: 2,
    };
    let snaps = run_watching(vec![t2, t, y]);
    assert_eq!(snaps[0], vec![9.0, 8.0, 7.0, 6.0], "t2: the last value");
    assert_eq!(
        snaps[1],
        vec![1.0, 2.0, 3.0, 4.0],
        "t: before `t2` overwrote it"
    );
    assert_eq!(snaps[2], vec![1.0, 2.0, 3.0, 4.0], "y: at the end");
}

#[test]
fn a_tensor_not_yet_ready_is_not_taken_by_an_earlier_writer() {
    // `t` as the third kernel writes it: the first kernel's write to the
    // same bytes comes before `ready_pc` and must not trigger the snapshot.
    let snaps = run_watching(vec![Watch {
        addr: 0x100,
        bytes: 16,
        ready_pc: 3,
    }]);
    assert_eq!(snaps[0], vec![9.0, 8.0, 7.0, 6.0]);
}

#[test]
fn watching_does_not_change_the_run() {
    let plain = run_watching(Vec::new());
    assert!(plain.is_empty());
    let mut sim = Simulator::new(build(REUSE, &Target::tiny())).expect("load");
    sim.set_input("x", &f32_bytes(&[1.0; 4])).expect("x");
    sim.set_input("z", &f32_bytes(&[2.0; 4])).expect("z");
    let a = sim.run(&Options::default()).expect("run").stats.cycles;
    let watch = vec![Watch {
        addr: 0x100,
        bytes: 16,
        ready_pc: 1,
    }];
    let b = sim
        .run(&Options {
            watch,
            ..Default::default()
        })
        .expect("run")
        .stats
        .cycles;
    assert_eq!(a, b);
}
