//! Mutation fuzzing of every parser a user's file reaches: the `.tnpu`
//! reader (and the simulator on what it accepts), the assembler, target
//! files and the Graph IR text parser. Each input comes from a committed
//! seed mutated by a deterministic generator; every parser must return
//! `Ok` or `Err` — a panic, or one input taking more than
//! `SLOW_INPUT` seconds, fails the test and writes the input to
//! `target/fuzz-failures/` for a regression test.
//!
//! By default each target runs a few hundred inputs (part of `cargo
//! test`). `TESSERA_FUZZ_SECONDS=600 cargo test --release -p
//! tessera-compiler --test fuzz_parsers` runs each target for that long.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_isa::{assemble, Loadable, Target};
use tessera_sim::{Options, Simulator};

/// An input taking longer than this is a hang.
const SLOW_INPUT: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> Vec<u8> {
    let path = repo().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: boundaries of every width, as bytes.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Decimal tokens for text formats.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "nan",
    "",
    "[",
    "]",
    "{",
    "\"",
    "\n",
];

/// One mutation of `seed` (several edits), sometimes spliced with another
/// seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], text: bool) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let at = at.min(v.len() - 1);
                v[at] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let at = at.min(v.len() - 1);
                v[at] = rng.next() as u8;
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => v.truncate(at),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from);
                let piece = other[from..from + len].to_vec();
                v.splice(at..at, piece);
            }
            5 if text => {
                let token = INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())];
                v.splice(at..at, token.bytes());
            }
            5 | 6 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                let end = (at + width).min(v.len());
                let bytes = value.to_le_bytes();
                v.splice(at..end, bytes[..width].iter().copied());
            }
            _ => {
                // Duplicate a run (repetition finds size and count bugs).
                let end = (at + rng.below(32)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(at..at, piece);
            }
        }
    }
    v
}

fn failure_dir() -> PathBuf {
    repo().join("target").join("fuzz-failures")
}

/// Runs `check` on mutated seeds: a few hundred inputs, or for
/// `TESSERA_FUZZ_SECONDS` seconds.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, text: bool, check: impl Fn(&[u8])) {
    let budget = std::env::var("TESSERA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut runs = 0u64;
    loop {
        match budget {
            Some(s) if started.elapsed() >= Duration::from_secs(s) => break,
            None if runs >= 300 => break,
            _ => {}
        }
        let input = if runs < seeds.len() as u64 {
            seeds[runs as usize].clone()
        } else {
            mutate(&mut rng, &seeds, text)
        };
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let slow = t0.elapsed() > SLOW_INPUT;
        if outcome.is_err() || slow {
            let dir = failure_dir();
            std::fs::create_dir_all(&dir).ok();
            let path = dir.join(format!("{name}-{runs}.bin"));
            std::fs::write(&path, &input).ok();
            panic!(
                "{name}: input {runs} {} (saved to {})",
                if slow { "took too long" } else { "panicked" },
                path.display()
            );
        }
        runs += 1;
    }
    if budget.is_some() {
        eprintln!(
            "{name}: {runs} inputs in {:.0} s, no failure",
            started.elapsed().as_secs_f64()
        );
    }
}

fn examples() -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo().join("isa/examples"))
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "s"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).expect("example"))
        .collect()
}

#[test]
fn assembler_never_panics() {
    fuzz("asm", examples(), true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = assemble(&text, "fuzz.s", Some(&Target::tiny()));
    });
}

#[test]
fn loadable_reader_and_simulator_never_panic() {
    let seeds: Vec<Vec<u8>> = examples()
        .iter()
        .map(|s| {
            assemble(&String::from_utf8_lossy(s), "seed.s", Some(&Target::tiny()))
                .expect("examples assemble")
                .to_bytes()
        })
        .collect();
    fuzz("tnpu", seeds, false, |bytes| {
        if let Ok(loadable) = Loadable::from_bytes(bytes) {
            if let Ok(mut sim) = Simulator::new(loadable) {
                let _ = sim.run(&Options {
                    max_cycles: 20_000,
                    ..Default::default()
                });
            }
        }
    });
}

#[test]
fn target_files_never_panic() {
    let seeds: Vec<Vec<u8>> = Target::PRESETS
        .iter()
        .map(|p| Target::preset(p).expect("preset").to_toml().into_bytes())
        .collect();
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("t.toml");
    fuzz("target", seeds, true, |bytes| {
        std::fs::write(&path, bytes).expect("write");
        if let Ok(target) = Target::from_file(&path) {
            // An accepted target must also be usable: a tiny program runs.
            let l = assemble("li r1, 1\nhalt\n", "t.s", Some(&target)).expect("assembles");
            if let Ok(mut sim) = Simulator::new(l) {
                let _ = sim.run(&Options::default());
            }
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn graph_ir_parser_never_panics() {
    let mut seeds = Vec::new();
    for dir in std::fs::read_dir(repo().join("compiler/tests/filetests")).expect("filetests") {
        let path = dir.expect("entry").path();
        if path.extension().is_some_and(|e| e == "graph") {
            seeds.push(std::fs::read(&path).expect("filetest"));
        }
    }
    seeds.sort();
    assert!(!seeds.is_empty());
    fuzz("graph", seeds, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(g) = tessera_compiler::graph::parser::parse_graph(&text) {
            let _ = tessera_compiler::driver::compile_graph(
                &g,
                &Target::tiny(),
                tessera_compiler::lower::Precision::Fp32,
            );
        }
    });
    let _ = read;
}
