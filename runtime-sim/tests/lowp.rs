//! The 8-bit MXU modes, the narrow accumulator and the quantize
//! instructions, run as assembled programs and compared bit for bit with a
//! plain reference written from SPEC.md §4.4 and §4.4.1 (one output at a
//! time, no shared code with the simulator's kernels beyond the rounding
//! primitives of `tessera_isa::lowp`, which have their own tests).

mod common;

use std::fmt::Write as _;

use common::*;
use proptest::prelude::*;
use tessera_isa::lowp::{self, Fp8};
use tessera_isa::{DType, Mem, MxuClass, MxuType};

/// SPM layout of the test program.
const A_AT: u64 = 0;
const W_AT: u64 = 512;
const WS_AT: u64 = 1024;
const AS_AT: u64 = 1536;
/// Where A's and the weights' zero points sit when the `mxu.ldw` reads
/// them from SPM.
const AZP_AT: u64 = 2047;
const WZP_AT: u64 = 2046;
const DATA_BYTES: u64 = 2048;

/// One `mxu.ldw` + two `mxu.mm` (set, then acc over the same A) case.
#[derive(Debug, Clone)]
struct Case {
    dtype: MxuType,
    m: usize,
    k: usize,
    n: usize,
    a: Vec<u8>,
    w: Vec<u8>,
    azp: i64,
    wzp: i64,
    /// Whether `mxu.ldw` reads `azp` from SPM (`azsrc=spm`).
    azp_in_spm: bool,
    /// Whether `mxu.ldw` reads `wzp` from SPM (`wzsrc=spm`).
    wzp_in_spm: bool,
    /// fp32 scales (or E8M0 exponents) for W: blocks(k) x blocks(n).
    wscales: Vec<f32>,
    /// For A: m x blocks(k).
    ascales: Vec<f32>,
    block: usize,
    e8m0: bool,
    man_bits: u32,
    promote: u32,
    truncate: bool,
}

impl Case {
    /// A case with no zero points, unit scales, blocks of 128 and the fp32
    /// accumulator.
    fn new(dtype: MxuType, (m, k, n): (usize, usize, usize), a: Vec<u8>, w: Vec<u8>) -> Case {
        Case {
            dtype,
            m,
            k,
            n,
            a,
            w,
            azp: 0,
            wzp: 0,
            azp_in_spm: false,
            wzp_in_spm: false,
            wscales: vec![1.0; k.div_ceil(128) * n.div_ceil(128)],
            ascales: vec![1.0; m * k.div_ceil(128)],
            block: 128,
            e8m0: false,
            man_bits: 23,
            promote: 0,
            truncate: false,
        }
    }
}

fn esize(t: DType) -> usize {
    t.size() as usize
}

fn scale_bytes(case: &Case, v: f32) -> Vec<u8> {
    if case.e8m0 {
        // Exponents: v holds an integer power of two by construction.
        vec![(v.log2() as i32 + 127) as u8]
    } else {
        v.to_le_bytes().to_vec()
    }
}

fn program(case: &Case) -> String {
    let mut data = vec![0u8; DATA_BYTES as usize];
    data[..case.a.len()].copy_from_slice(&case.a);
    let w_at = W_AT as usize;
    data[w_at..w_at + case.w.len()].copy_from_slice(&case.w);
    let sb = if case.e8m0 { 1 } else { 4 };
    let kb = case.k.div_ceil(case.block);
    for (i, &s) in case.wscales.iter().enumerate() {
        let at = WS_AT as usize + i * sb;
        data[at..at + sb].copy_from_slice(&scale_bytes(case, s));
    }
    for (i, &s) in case.ascales.iter().enumerate() {
        let at = AS_AT as usize + i * sb;
        data[at..at + sb].copy_from_slice(&scale_bytes(case, s));
    }
    // The elements' bits (an i8 as two's complement).
    if case.azp_in_spm {
        data[AZP_AT as usize] = case.azp as u8;
    }
    if case.wzp_in_spm {
        data[WZP_AT as usize] = case.wzp as u8;
    }
    let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
    let ea = esize(case.dtype.a_type());
    let ew = esize(case.dtype.w_type());
    let mut s = String::new();
    let _ = writeln!(s, ".target tiny");
    let _ = writeln!(s, ".param mxu_acc_mantissa_bits {}", case.man_bits);
    let _ = writeln!(s, ".param mxu_promote_interval {}", case.promote);
    let _ = writeln!(s, ".param mxu_scale_block {}", case.block);
    let _ = writeln!(s, ".param mxu_scale_e8m0 {}", case.e8m0);
    let _ = writeln!(s, ".param mxu_acc_truncate {}", case.truncate);
    let _ = writeln!(s, ".segment \"data\" @ 0x1000\n.bytes {hex}");
    let (azp, azsrc) = if case.azp_in_spm {
        (AZP_AT as i64, ", azsrc=spm")
    } else {
        (case.azp, "")
    };
    let (wzp, wzsrc) = if case.wzp_in_spm {
        (WZP_AT as i64, ", wzsrc=spm")
    } else {
        (case.wzp, "")
    };
    let _ = writeln!(s, "li r1, {wzp}\nli r2, {azp}");
    let _ = writeln!(s, "li r3, {WS_AT}\nli r4, {}\nli r5, {AS_AT}", kb * sb);
    let _ = writeln!(s, "dma.copy spm[0], dram[0x1000], bytes={DATA_BYTES}");
    let _ = writeln!(s, "dma.signal s0, 1\nmxu.wait s0, 1");
    let _ = writeln!(
        s,
        "mxu.ldw spm[{W_AT}], k={}, n={}, stride={}, dtype={}, trans=n, wzp=r1, azp=r2, scales=r3, sstride=r4{azsrc}{wzsrc}",
        case.k,
        case.n,
        case.n * ew,
        case.dtype
    );
    for mode in ["set", "acc"] {
        let _ = writeln!(
            s,
            "mxu.mm acc[0], spm[{A_AT}], m={}, astride={}, dstride={}, mode={mode}, ascales=r5",
            case.m,
            case.k * ea,
            case.n * 4
        );
    }
    let _ = writeln!(s, "halt");
    s
}

/// An element's value as SPEC.md §4.1 defines it.
fn value(t: DType, bytes: &[u8]) -> f32 {
    match t {
        DType::I8 => f32::from(bytes[0] as i8),
        DType::U8 => f32::from(bytes[0]),
        DType::Bf16 => f32::from_bits(u32::from(u16::from_le_bytes([bytes[0], bytes[1]])) << 16),
        _ => Fp8::of(t).expect("fp8").to_f32(bytes[0]),
    }
}

/// ACC after `mm set` then `mm acc`, per SPEC.md §4.4, as raw 4-byte words.
fn reference(case: &Case) -> Vec<[u8; 4]> {
    let (at, wt) = (case.dtype.a_type(), case.dtype.w_type());
    let (ea, ew) = (esize(at), esize(wt));
    let a = |i: usize, kk: usize| value(at, &case.a[(i * case.k + kk) * ea..]);
    let w = |kk: usize, j: usize| value(wt, &case.w[(kk * case.n + j) * ew..]);
    let b = case.block;
    let (kb, nb) = (case.k.div_ceil(b), case.n.div_ceil(b));
    let narrow = |x: f64| {
        if case.truncate {
            lowp::truncate_to_mantissa(x, case.man_bits)
        } else {
            lowp::round_to_mantissa(x, case.man_bits)
        }
    };
    let mut out = Vec::new();
    for i in 0..case.m {
        for j in 0..case.n {
            match case.dtype.class() {
                MxuClass::Int => {
                    let mut c: i32 = 0;
                    for _ in 0..2 {
                        for kk in 0..case.k {
                            let x = a(i, kk) as i64 - case.azp;
                            let y = w(kk, j) as i64 - case.wzp;
                            c = c.wrapping_add((x * y) as i32);
                        }
                    }
                    out.push(c.to_le_bytes());
                }
                class => {
                    let fp8 = class == MxuClass::Fp8;
                    let g = |kk: usize| {
                        if fp8 {
                            case.ascales[i * kb + kk / b] * case.wscales[(kk / b) * nb + j / b]
                        } else {
                            1.0
                        }
                    };
                    let mut c = 0.0f32;
                    for _ in 0..2 {
                        if case.promote == 0 {
                            for kk in 0..case.k {
                                let p = a(i, kk) * w(kk, j);
                                let p = if fp8 { p * g(kk) } else { p };
                                c = narrow(f64::from(c) + f64::from(p));
                            }
                        } else {
                            let (mut s, mut n) = (0.0f32, 0);
                            for kk in 0..case.k {
                                s = narrow(f64::from(s) + f64::from(a(i, kk) * w(kk, j)));
                                n += 1;
                                let block_end = fp8 && (kk + 1) % b == 0;
                                if n == case.promote || kk + 1 == case.k || block_end {
                                    c += if fp8 { s * g(kk) } else { s };
                                    s = 0.0;
                                    n = 0;
                                }
                            }
                        }
                    }
                    out.push(c.to_le_bytes());
                }
            }
        }
    }
    out
}

fn same(x: [u8; 4], y: [u8; 4], float: bool) -> bool {
    if float {
        let (a, b) = (f32::from_le_bytes(x), f32::from_le_bytes(y));
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    } else {
        x == y
    }
}

/// Assembles for the target (and parameters) the source names.
fn assemble_own(source: &str) -> tessera_isa::Loadable {
    tessera_isa::assemble(source, "test.s", None).unwrap_or_else(|e| panic!("{e}\n{source}"))
}

fn check(case: &Case) -> Result<(), TestCaseError> {
    let source = program(case);
    let (_, sim) = run(assemble_own(&source), &[])
        .map_err(|e| TestCaseError::fail(format!("{e}\n{source}")))?;
    let len = (case.m * case.n * 4) as u64;
    let acc = sim.memories().read_vec(Mem::Acc, 0, len).expect("acc");
    let got: Vec<[u8; 4]> = acc
        .chunks_exact(4)
        .map(|b| [b[0], b[1], b[2], b[3]])
        .collect();
    let want = reference(case);
    let float = case.dtype.class() != MxuClass::Int;
    for (idx, (g, w)) in got.iter().zip(&want).enumerate() {
        prop_assert!(
            same(*g, *w, float),
            "output {idx}: simulator {:?} reference {:?} ({:?})",
            g,
            w,
            case.dtype
        );
    }
    Ok(())
}

fn int_types() -> impl Strategy<Value = MxuType> {
    prop::sample::select(vec![MxuType::I8, MxuType::U8, MxuType::U8I8, MxuType::I8U8])
}

fn fp8_types() -> impl Strategy<Value = MxuType> {
    prop::sample::select(vec![
        MxuType::E4m3,
        MxuType::E5m2,
        MxuType::E4m3E5m2,
        MxuType::E5m2E4m3,
    ])
}

/// Finite FP8 bytes of a type (NaN codes excluded, infinities too).
fn fp8_bytes(t: DType, n: usize) -> impl Strategy<Value = Vec<u8>> {
    let fmt = Fp8::of(t).expect("fp8");
    prop::collection::vec(any::<u8>(), n).prop_map(move |v| {
        v.into_iter()
            .map(|b| {
                if fmt.to_f32(b).is_finite() {
                    b
                } else {
                    b & 0x3f
                }
            })
            .collect()
    })
}

fn zero_point(t: DType) -> impl Strategy<Value = i64> {
    let (lo, hi) = lowp::int_range(t);
    lo..=hi
}

fn int_case() -> impl Strategy<Value = Case> {
    (int_types(), 1usize..=12, 1usize..=8, 1usize..=8).prop_flat_map(|(dtype, m, k, n)| {
        (
            prop::collection::vec(any::<u8>(), m * k),
            prop::collection::vec(any::<u8>(), k * n),
            zero_point(dtype.a_type()),
            zero_point(dtype.w_type()),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(move |(a, w, azp, wzp, azp_in_spm, wzp_in_spm)| Case {
                azp,
                wzp,
                azp_in_spm,
                wzp_in_spm,
                ..Case::new(dtype, (m, k, n), a, w)
            })
    })
}

/// Half the cases the default fp32 accumulator (the simulator's fast
/// paths), half a narrow one with or without promotion.
fn accumulator() -> impl Strategy<Value = (u32, u32, bool)> {
    prop_oneof![
        Just((23u32, 0u32, false)),
        (
            prop::sample::select(vec![3u32, 7, 10, 14, 23]),
            prop::sample::select(vec![0u32, 1, 3, 4, 128]),
            any::<bool>(),
        ),
    ]
}

fn fp8_case() -> impl Strategy<Value = Case> {
    (
        fp8_types(),
        1usize..=10,
        1usize..=8,
        1usize..=8,
        prop::sample::select(vec![1usize, 2, 4, 128]),
        any::<bool>(),
        accumulator(),
    )
        .prop_flat_map(
            |(dtype, m, k, n, block, e8m0, (man_bits, promote, truncate))| {
                let (kb, nb) = (k.div_ceil(block), n.div_ceil(block));
                let scale = move || -> BoxedStrategy<f32> {
                    if e8m0 {
                        (-20i32..20).prop_map(|e| 2f32.powi(e)).boxed()
                    } else {
                        (1e-3f32..1e3).boxed()
                    }
                };
                (
                    fp8_bytes(dtype.a_type(), m * k),
                    fp8_bytes(dtype.w_type(), k * n),
                    prop::collection::vec(scale(), kb * nb),
                    prop::collection::vec(scale(), m * kb),
                )
                    .prop_map(move |(a, w, wscales, ascales)| Case {
                        dtype,
                        m,
                        k,
                        n,
                        a,
                        w,
                        azp: 0,
                        wzp: 0,
                        azp_in_spm: false,
                        wzp_in_spm: false,
                        wscales,
                        ascales,
                        block,
                        e8m0,
                        man_bits,
                        promote,
                        truncate,
                    })
            },
        )
}

fn bf16_case() -> impl Strategy<Value = Case> {
    (1usize..=10, 1usize..=8, 1usize..=8, accumulator()).prop_flat_map(
        |(m, k, n, (man_bits, promote, truncate))| {
            let finite = |n: usize| {
                prop::collection::vec(-1e4f32..1e4, n).prop_map(|v| {
                    v.iter()
                        .flat_map(|&x| ((x.to_bits() >> 16) as u16).to_le_bytes())
                        .collect::<Vec<u8>>()
                })
            };
            (finite(m * k), finite(k * n)).prop_map(move |(a, w)| Case {
                man_bits,
                promote,
                truncate,
                ..Case::new(MxuType::Bf16, (m, k, n), a, w)
            })
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn integer_matmuls_are_exact_with_zero_points(case in int_case()) {
        check(&case)?;
    }

    #[test]
    fn fp8_matmuls_follow_the_block_scaled_accumulation(case in fp8_case()) {
        check(&case)?;
    }

    #[test]
    fn bf16_matmuls_follow_the_narrow_accumulator(case in bf16_case()) {
        check(&case)?;
    }
}

#[test]
fn zero_points_outside_the_type_are_a_bad_operand() {
    let mut case = Case {
        azp: 256,
        ..Case::new(MxuType::U8, (1, 1, 1), vec![1], vec![1])
    };
    let fault = |case: &Case| match run(assemble_own(&program(case)), &[]) {
        Ok(_) => panic!("{case:?} ran"),
        Err(e) => e,
    };
    let err = fault(&case);
    assert!(err.to_string().contains("zero point 256"), "{err}");
    // Read from SPM, an i8 zero point is in range whatever its bits; a
    // register value outside u8 is not.
    case.azp_in_spm = true;
    case.azp = 200;
    case.dtype = MxuType::I8;
    assert!(run(assemble_own(&program(&case)), &[]).is_ok());
    case.azp_in_spm = false;
    case.dtype = MxuType::U8;
    case.azp = 0;
    case.wzp = -1;
    let err = fault(&case);
    assert!(err.to_string().contains("zero point -1"), "{err}");
}

#[test]
fn eight_bit_matmuls_stream_at_the_8bit_rate() {
    let stats = |dtype: MxuType| {
        let case = Case::new(dtype, (12, 8, 8), vec![0; 96], vec![0; 64]);
        let source = program(&case);
        let (result, _) = run(assemble_own(&source), &[]).expect("run");
        result.stats.engines["mxu"].busy_cycles
    };
    // Two matmuls of 12 rows: 24 cycles at bf16, 12 at 2 rows per cycle.
    let (bf16, int8, fp8) = (
        stats(MxuType::Bf16),
        stats(MxuType::I8),
        stats(MxuType::E4m3),
    );
    assert_eq!(bf16 - int8, 12, "bf16 {bf16}, int8 {int8}");
    assert_eq!(int8, fp8);
}

/// `vpu.quant` then `vpu.dequant` of one row, per tensor, per column and
/// per row, against §4.4.1.
#[test]
fn quantize_and_dequantize_follow_the_written_rounding() {
    let x: Vec<f32> = (0..8).map(|i| (i as f32 - 3.3) * 7.9).collect();
    let scales = [0.5f32, 0.75, 1.25, 2.0, 0.1, 3.0, 0.3, 1.0];
    for (dtype, zp) in [
        (DType::I8, -3i64),
        (DType::U8, 100),
        (DType::E4m3, 0),
        (DType::E5m2, 0),
    ] {
        for (bcast, sop) in [
            ("scalar", "div"),
            ("row", "div"),
            ("col", "div"),
            ("row", "mul"),
            ("col", "mul"),
        ] {
            let mut data = Vec::new();
            for v in x.iter().chain(&scales) {
                data.extend_from_slice(&v.to_le_bytes());
            }
            let hex: String = data.iter().map(|b| format!("{b:02x}")).collect();
            // One row of 8 (row/scalar) or 8 rows of 1 (col).
            let (rows, cols) = if bcast == "col" { (8, 1) } else { (1, 8) };
            let source = format!(
                ".target tiny\n.segment \"d\" @ 0x1000\n.bytes {hex}\n\
                 li r1, {rows}\nli r2, {cols}\nli r3, {astride}\nli r4, {qstride}\nli r5, {zp}\n\
                 dma.copy spm[0], dram[0x1000], bytes=64\ndma.signal s0, 1\nvpu.wait s0, 1\n\
                 vpu.quant spm[128], spm[0], spm[32], dtype={dtype}, rows=r1, cols=r2, dstride=r4, astride=r3, sbcast={bcast}, zp=r5, sop={sop}\n\
                 vpu.dequant spm[256], spm[128], spm[32], atype={dtype}, rows=r1, cols=r2, dstride=r3, astride=r4, sbcast={bcast}, zp=r5\n\
                 halt\n",
                astride = 4 * cols,
                qstride = cols,
            );
            let (_, sim) = run(assemble_own(&source), &[]).expect("run");
            let q = sim.memories().read_vec(Mem::Spm, 128, 8).expect("q");
            let back = bytes_f32(&sim.memories().read_vec(Mem::Spm, 256, 32).expect("dq"));
            for e in 0..8 {
                let s = if bcast == "scalar" {
                    scales[0]
                } else {
                    scales[e]
                };
                // `mul` multiplies by s (the reciprocal scale) instead.
                let scaled = if sop == "mul" { x[e] * s } else { x[e] / s };
                let want_q = match Fp8::of(dtype) {
                    Some(fmt) => fmt.from_f32(scaled, true),
                    None => {
                        let (lo, hi) = lowp::int_range(dtype);
                        let r = f64::from(scaled).round_ties_even() as i64 + zp;
                        r.clamp(lo, hi) as u8
                    }
                };
                assert_eq!(q[e], want_q, "{dtype} {bcast} element {e}");
                let level = match dtype {
                    DType::I8 => f32::from(q[e] as i8) - zp as f32,
                    DType::U8 => f32::from(q[e]) - zp as f32,
                    _ => Fp8::of(dtype).expect("fp8").to_f32(q[e]),
                };
                assert_eq!(
                    back[e].to_bits(),
                    (level * s).to_bits(),
                    "{dtype} {bcast} {e}"
                );
            }
        }
    }
}
