//! Every instruction resolves on its engine; footprints and patterns.

use super::*;
use tessera_isa::{Engine, Instr, INSTRUCTIONS};

/// Every instruction of the ISA table, each field at its smallest
/// valid encoding.
fn every_instruction() -> Vec<Instr> {
    INSTRUCTIONS
        .iter()
        .map(|info| {
            info.smallest()
                .unwrap_or_else(|e| panic!("{}: {e}", info.mnemonic))
        })
        .collect()
}

#[test]
fn every_queued_instruction_resolves_and_no_scalar_one_does() {
    let instrs = every_instruction();
    assert_eq!(instrs.len(), INSTRUCTIONS.len());
    for instr in instrs {
        let mut dims = [DmaDimRegs::default(); 3];
        let op = resolve(&instr, &[0; 32], &mut dims);
        assert_eq!(
            op.is_some(),
            instr.engine() != Engine::Su,
            "`{}` on {:?}",
            instr.mnemonic(),
            instr.engine()
        );
    }
}

#[test]
fn interleaved_rows_do_not_overlap() {
    // Even rows vs odd rows of a 4-row, 16-byte-stride region.
    let even = Pattern::rows(Mem::Spm, 0, 2, 16, 32);
    let odd = Pattern::rows(Mem::Spm, 16, 2, 16, 32);
    assert_eq!(even.overlap(&odd), None);
    let all = Pattern::rows(Mem::Spm, 0, 4, 16, 16);
    assert_eq!(all.overlap(&odd), Some((16, 32)));
}

#[test]
fn negative_strides_bound_correctly() {
    let p = Pattern {
        mem: Mem::Dram,
        base: 100,
        run: 4,
        dims: [(3, -10), (1, 0), (1, 0)],
    };
    assert_eq!(p.bounds(), Some((80, 104)));
    let q = Pattern {
        mem: Mem::Dram,
        base: 5,
        run: 4,
        dims: [(3, -10), (1, 0), (1, 0)],
    };
    assert!(q.bounds().is_some_and(|(lo, _)| lo < 0));
}
