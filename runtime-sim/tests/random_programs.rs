//! Random programs of valid MXU and VPU instructions — every input type,
//! zero point, scale operand and quantize mode the table allows, with
//! register values from small to huge — either run or fault; the simulator
//! never panics on them. `TESSERA_PRINT_OUTCOMES=1` prints how each ran
//! (with `--nocapture`), to check that most get past their first instruction.

use proptest::prelude::*;
use tessera_isa::{assemble, Engine, Instr, Target, INSTRUCTIONS};
use tessera_sim::{Options, Simulator};

/// Table indices of the MXU and VPU data instructions (no waits, which
/// would only deadlock).
fn tensor_ops() -> Vec<usize> {
    INSTRUCTIONS
        .iter()
        .enumerate()
        .filter(|(_, i)| matches!(i.engine, Engine::Mxu | Engine::Vpu))
        .filter(|(_, i)| !i.mnemonic.ends_with(".wait"))
        .map(|(at, _)| at)
        .collect()
}

fn program(values: &[u64], picks: &[(usize, u64)]) -> String {
    let mut s = String::from(".target tiny\n");
    for (r, v) in values.iter().enumerate() {
        // Small values mostly (sizes that fit), some anything.
        let v = if v % 7 == 0 {
            *v as i64
        } else {
            (v % 24) as i64
        };
        s += &format!("li r{}, {v}\n", r + 1);
    }
    let ops = tensor_ops();
    for &(pick, seed) in picks {
        let mut state = seed;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            state >> 11
        };
        let instr = Instr::random(ops[pick % ops.len()], &mut next);
        s += &in_reach(&instr.to_string(), &mut next);
        s.push('\n');
    }
    s + "halt\n"
}

/// Rewrites a random instruction's operands into reach of `tiny`'s
/// memories: memory operands at small aligned offsets from r0, and
/// immediate sizes small, so that most instructions execute instead of
/// faulting on their first address.
fn in_reach(text: &str, next: &mut dyn FnMut() -> u64) -> String {
    let (mnemonic, rest) = text.split_once(' ').unwrap_or((text, ""));
    let operands: Vec<String> = rest
        .split(", ")
        .map(|op| {
            let (key, value) = match op.split_once('=') {
                Some((k, v)) => (Some(k), v),
                None => (None, op),
            };
            let value = if let Some(mem) = ["spm[", "acc["].iter().find(|m| value.starts_with(**m))
            {
                let limit = if *mem == "acc[" { 256 } else { 1024 };
                format!("{mem}{}]", 4 * (next() % limit))
            } else if let Some((reg, _)) = value.split_once('+') {
                reg.to_string()
            } else if value.bytes().all(|b| b.is_ascii_digit()) && !value.is_empty() {
                (next() % 12).to_string()
            } else {
                value.to_string()
            };
            match key {
                Some(k) => format!("{k}={value}"),
                None => value,
            }
        })
        .collect();
    format!("{mnemonic} {}", operands.join(", "))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_tensor_programs_run_or_fault(
        values in prop::collection::vec(any::<u64>(), 31),
        picks in prop::collection::vec((any::<usize>(), any::<u64>()), 1..12),
    ) {
        let source = program(&values, &picks);
        let loadable = assemble(&source, "random.s", Some(&Target::tiny()))
            .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
        let mut sim = Simulator::new(loadable).expect("load");
        let outcome = sim.run(&Options {
            max_cycles: 1 << 20,
            ..Options::default()
        });
        if std::env::var("TESSERA_PRINT_OUTCOMES").is_ok() {
            println!("{}", match &outcome { Ok(_) => "ran".to_string(), Err(e) => e.to_string() });
        }
    }
}
