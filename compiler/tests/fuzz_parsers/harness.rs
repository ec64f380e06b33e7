//! The fuzzing loop: a deterministic generator, byte and token mutations
//! of seeds, and the driver that runs a target for a number of inputs or
//! `TESSERA_FUZZ_SECONDS`, saving a failing input.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// An input taking longer than this is a hang.
const SLOW_INPUT: Duration = Duration::from_secs(10);

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A file of the repository, by its path from the root.
pub fn read(relative: &str) -> Vec<u8> {
    let path = repo().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic, seedable.
pub struct Rng(u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
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
pub fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], text: bool) -> Vec<u8> {
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

/// Where failing inputs are saved.
fn failure_dir() -> PathBuf {
    repo().join("target").join("fuzz-failures")
}

/// Runs `check` on mutated seeds: a few hundred inputs, or for
/// `TESSERA_FUZZ_SECONDS` seconds.
pub fn fuzz(name: &str, seeds: Vec<Vec<u8>>, text: bool, check: impl Fn(&[u8])) {
    fuzz_with(name, seeds, |rng, seeds| mutate(rng, seeds, text), check);
}

/// [`fuzz`] with the mutator `next` (given the generator and the seeds).
pub fn fuzz_with(
    name: &str,
    seeds: Vec<Vec<u8>>,
    mut next: impl FnMut(&mut Rng, &[Vec<u8>]) -> Vec<u8>,
    check: impl Fn(&[u8]),
) {
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
        // Every seed first in a long run; a sample of them by default.
        let plain = if budget.is_some() {
            seeds.len()
        } else {
            seeds.len().min(100)
        };
        let input = if runs < plain as u64 {
            seeds[runs as usize].clone()
        } else {
            next(&mut rng, &seeds)
        };
        if budget.is_some() {
            // What an abort (which no unwind catches) leaves behind.
            std::fs::create_dir_all(failure_dir()).ok();
            std::fs::write(failure_dir().join(format!("{name}-current.bin")), &input).ok();
        }
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

/// The example programs `isa/examples/*.s`, sorted.
pub fn examples() -> Vec<Vec<u8>> {
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
