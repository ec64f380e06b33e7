//! Helpers shared by the simulator's tests: assembling the examples,
//! deterministic random data, byte conversions.

#![allow(dead_code)]

use tessera_isa::numerics::{bf16_to_f32, f32_to_bf16};
use tessera_isa::{assemble, Loadable, Target};
use tessera_sim::{Options, RunResult, SimError, Simulator};

/// Reads an example from `isa/examples/`.
pub fn example(name: &str) -> String {
    let path = format!("{}/../isa/examples/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// Assembles source for a target.
pub fn build(source: &str, target: &Target) -> Loadable {
    assemble(source, "test.s", Some(target)).unwrap_or_else(|e| panic!("{e}"))
}

/// Replaces the value of `.equ NAME, …` lines.
pub fn with_params(source: &str, params: &[(&str, i64)]) -> String {
    source
        .lines()
        .map(|line| {
            for (name, value) in params {
                let prefix = format!(".equ {name},");
                if line.starts_with(&prefix) {
                    return format!(".equ {name}, {value}");
                }
            }
            line.to_string()
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A deterministic stream of floats in [-scale, scale).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn float(&mut self, scale: f32) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0) * scale
    }
    pub fn floats(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| self.float(scale)).collect()
    }
}

pub fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub fn bytes_f32(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Rounds values to bf16; returns (bytes, the widened values).
pub fn bf16_data(v: &[f32]) -> (Vec<u8>, Vec<f32>) {
    let bits: Vec<u16> = v.iter().map(|x| f32_to_bf16(*x)).collect();
    (
        bits.iter().flat_map(|b| b.to_le_bytes()).collect(),
        bits.iter().map(|b| bf16_to_f32(*b)).collect(),
    )
}

/// Runs a loadable with the given inputs; returns the result and the simulator.
pub fn run(
    loadable: Loadable,
    inputs: &[(&str, Vec<u8>)],
) -> Result<(RunResult, Simulator), SimError> {
    let mut sim = Simulator::new(loadable)?;
    for (name, data) in inputs {
        sim.set_input(name, data)?;
    }
    let result = sim.run(&Options {
        trace: true,
        ..Options::default()
    })?;
    Ok((result, sim))
}

/// Assembles `source` for `target`, runs it without inputs and returns its
/// statistics.
pub fn stats_of(source: &str, target: &Target) -> tessera_sim::Stats {
    match run(build(source, target), &[]) {
        Ok((result, _)) => result.stats,
        Err(e) => panic!("{e}"),
    }
}

/// The GEMM reference of SPEC.md §4.4: sequential fp32 sum from +0.0.
pub fn gemm_reference(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut c = vec![0f32; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut acc = 0f32;
            for kk in 0..k {
                acc += a[i * k + kk] * b[kk * n + j];
            }
            c[i * n + j] = acc;
        }
    }
    c
}

/// The GEMM example's parameter block for other sizes.
pub fn gemm_params(m: i64, k: i64, n: i64, tm: i64, tk: i64, tn: i64) -> Vec<(&'static str, i64)> {
    let a_bytes = m * k * 2;
    let b_bytes = k * n * 2;
    let a_slot = tm * tk * 2;
    let b_slot = tk * tn * 2;
    let c_slot = tm * tn * 4;
    vec![
        ("M", m),
        ("K", k),
        ("N", n),
        ("TM", tm),
        ("TK", tk),
        ("TN", tn),
        ("A_ADDR", 0),
        ("B_ADDR", a_bytes),
        ("C_ADDR", a_bytes + b_bytes),
        ("A_ROW", k * 2),
        ("B_ROW", n * 2),
        ("C_ROW", n * 4),
        ("TK2", tk * 2),
        ("TN2", tn * 2),
        ("TN4", tn * 4),
        ("A_SLOT", a_slot),
        ("B_BASE", 2 * a_slot),
        ("B_SLOT", b_slot),
        ("C_BASE", 2 * a_slot + 2 * b_slot),
        ("C_SLOT", c_slot),
        ("ACC_TILE", c_slot),
    ]
}
