//! The accumulator study: `cargo bench -p tessera-sim --bench accumulator`.
//!
//! A K = 4096 GEMM (M = 64, N = 128) of standard-normal A and W, quantized
//! to FP8 E4M3 the DeepSeek-V3 way (A per 1×128 tile, W per 128×128 block,
//! scale = max|x| / 448), run on the simulator for `base` with the
//! accumulator's mantissa width in {10, 14, 23} bits and promotion every
//! {never, 128} products (SPEC.md §4.4), rounding to nearest even and, as
//! cheap tensor-core adders do, toward zero. For each it prints the relative
//! Frobenius error of C against (a) the exact product of the quantized
//! operands — the accumulator's own error — and (b) the exact product of
//! the unquantized fp32 operands — everything FP8 costs. `TESSERA_BENCH_SEED`
//! changes the data.

use tessera_isa::lowp::E4M3;
use tessera_isa::{assemble, Mem};
use tessera_sim::{Options, Simulator};

const M: usize = 64;
const K: usize = 4096;
const N: usize = 128;
const B: usize = 128;
const KB: usize = K / B;

/// SPM layout.
const A_AT: usize = 0;
const W_AT: usize = 0x4_0000;
const SA_AT: usize = 0xC_0000;
const SW_AT: usize = 0xC_2000;

/// Deterministic standard normals (Box–Muller over a 64-bit LCG).
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// FP8 bytes and the scale of one block of values.
fn quantize(values: &[f32]) -> (Vec<u8>, f32) {
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let scale = if amax == 0.0 { 1.0 } else { amax / E4M3.max };
    (
        values
            .iter()
            .map(|&v| E4M3.from_f32(v / scale, true))
            .collect(),
        scale,
    )
}

struct Data {
    a: Vec<f32>,
    w: Vec<f32>,
    a8: Vec<u8>,
    w8: Vec<u8>,
    sa: Vec<f32>,
    sw: Vec<f32>,
}

fn data(seed: u64) -> Data {
    let mut rng = Normal(seed);
    let a: Vec<f32> = (0..M * K).map(|_| rng.next()).collect();
    let w: Vec<f32> = (0..K * N).map(|_| rng.next()).collect();
    let mut a8 = vec![0u8; M * K];
    let mut sa = vec![0f32; M * KB];
    for i in 0..M {
        for b in 0..KB {
            let at = i * K + b * B;
            let (q, s) = quantize(&a[at..at + B]);
            a8[at..at + B].copy_from_slice(&q);
            sa[i * KB + b] = s;
        }
    }
    // One 128×128 block per K tile (N = 128).
    let mut w8 = vec![0u8; K * N];
    let mut sw = vec![0f32; KB];
    for (b, scale) in sw.iter_mut().enumerate() {
        let block = &w[b * B * N..(b + 1) * B * N];
        let (q, s) = quantize(block);
        w8[b * B * N..(b + 1) * B * N].copy_from_slice(&q);
        *scale = s;
    }
    Data {
        a,
        w,
        a8,
        w8,
        sa,
        sw,
    }
}

fn program(mantissa: u32, promote: u32, truncate: bool) -> String {
    let mut s = format!(
        ".target base\n.param mxu_acc_mantissa_bits {mantissa}\n.param mxu_promote_interval {promote}\n\
         .param mxu_acc_truncate {truncate}\n\
         .input \"A\" u8 [{M}, {K}] @ 0x0\n.input \"W\" u8 [{K}, {N}] @ 0x100000\n\
         .input \"SA\" f32 [{M}, {KB}] @ 0x200000\n.input \"SW\" f32 [{KB}] @ 0x210000\n"
    );
    for (dram, spm, bytes) in [
        (0x0, A_AT, M * K),
        (0x10_0000, W_AT, K * N),
        (0x20_0000, SA_AT, M * KB * 4),
        (0x21_0000, SW_AT, KB * 4),
    ] {
        s += &format!(
            "li r1, {spm}\nli r2, {dram}\nli r3, {bytes}\ndma.copy spm[r1], dram[r2], bytes=r3\n"
        );
    }
    s += "dma.signal s0, 1\nmxu.wait s0, 1\nli r12, 128\n";
    for kt in 0..KB {
        let mode = if kt == 0 { "set" } else { "acc" };
        s += &format!(
            "li r10, {w}\nli r11, {ws}\nli r13, {as_}\nli r14, {a}\n\
             mxu.ldw spm[r10], k={B}, n={N}, stride={N}, dtype=e4m3, trans=n, scales=r11, sstride=r12\n\
             mxu.mm acc[0], spm[r14], m={M}, astride={K}, dstride={dstride}, mode={mode}, ascales=r13\n",
            w = W_AT + kt * B * N,
            ws = SW_AT + kt * 4,
            as_ = SA_AT + kt * 4,
            a = A_AT + kt * B,
            dstride = N * 4,
        );
    }
    s + "halt\n"
}

fn bytes_of(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// ‖c − r‖ / ‖r‖ in f64.
fn relative_error(c: &[f32], r: &[f64]) -> f64 {
    let num: f64 = c
        .iter()
        .zip(r)
        .map(|(&x, &y)| (f64::from(x) - y).powi(2))
        .sum();
    let den: f64 = r.iter().map(|y| y * y).sum();
    (num / den).sqrt()
}

fn main() {
    let seed = std::env::var("TESSERA_BENCH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1u64);
    let d = data(seed);
    // References in f64: the quantized operands exactly, and the originals.
    let mut exact_q = vec![0f64; M * N];
    let mut exact = vec![0f64; M * N];
    for i in 0..M {
        for kk in 0..K {
            let aq = f64::from(E4M3.to_f32(d.a8[i * K + kk])) * f64::from(d.sa[i * KB + kk / B]);
            let a = f64::from(d.a[i * K + kk]);
            for j in 0..N {
                let wq = f64::from(E4M3.to_f32(d.w8[kk * N + j])) * f64::from(d.sw[kk / B]);
                exact_q[i * N + j] += aq * wq;
                exact[i * N + j] += a * f64::from(d.w[kk * N + j]);
            }
        }
    }
    println!("accumulator study: C[{M}x{N}] = A[{M}x{K}] · W[{K}x{N}], e4m3, A per 1x{B}, W per {B}x{B}, base");
    println!("| accumulator mantissa bits | rounding | promotion | rel. error vs exact FP8 product | rel. error vs fp32 operands | MXU cycles |");
    println!("|---:|---|---|---:|---:|---:|");
    for (mantissa, truncate, promote) in [10u32, 14, 23]
        .into_iter()
        .flat_map(|m| [false, true].map(move |t| (m, t)))
        .flat_map(|(m, t)| [0u32, 128].map(move |p| (m, t, p)))
    {
        {
            let source = program(mantissa, promote, truncate);
            let loadable = assemble(&source, "accumulator.s", None).expect("assemble");
            let mut sim = Simulator::new(loadable).expect("load");
            sim.set_input("A", &d.a8).expect("A");
            sim.set_input("W", &d.w8).expect("W");
            sim.set_input("SA", &bytes_of(&d.sa)).expect("SA");
            sim.set_input("SW", &bytes_of(&d.sw)).expect("SW");
            let result = sim.run(&Options::default()).expect("run");
            let acc = sim
                .memories()
                .read_vec(Mem::Acc, 0, (M * N * 4) as u64)
                .expect("acc");
            let c: Vec<f32> = acc
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect();
            let promotion = if promote == 0 {
                "none".to_string()
            } else {
                format!("every {promote}")
            };
            let rounding = if truncate {
                "toward zero"
            } else {
                "nearest even"
            };
            println!(
                "| {mantissa} | {rounding} | {promotion} | {:.3e} | {:.3e} | {} |",
                relative_error(&c, &exact_q),
                relative_error(&c, &exact),
                result.stats.engines["mxu"].busy_cycles
            );
        }
    }
}
