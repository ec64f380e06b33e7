//! Kernel templates run on the simulator against naive references, on
//! `tiny` (edge tiles, many tiles) and `base`.

use tessera_compiler::codegen::generate_kernel;
use tessera_compiler::kernel::{Affine, Kernel, ZeroPoint};
use tessera_compiler::lower::gemm::{
    gemm, tile_dims, DramMat, GemmQuant, GemmSpec, OnlineQuant, Requantize,
};
use tessera_compiler::lower::quantize::quantize_weights;
use tessera_isa::numerics::{bf16_to_f32, f32_to_bf16, unary};
use tessera_isa::{
    DType, Instr, Loadable, MxuType, ScaleOp, Segment, Target, TensorDesc, UnFunc, ZpSrc,
};
use tessera_sim::{Options, Simulator};

struct Rng(u64);
impl Rng {
    fn float(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    fn floats(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.float()).collect()
    }
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn align(x: u64) -> u64 {
    x.div_ceil(256) * 256
}

/// Runs one kernel: `inputs` are written at their addresses, `segments`
/// are constants; returns the bytes of `out` and the cycle count.
fn run_kernel(
    kernel: &Kernel,
    target: &Target,
    inputs: &[(u64, Vec<u8>)],
    segments: &[(u64, Vec<u8>)],
    out: (u64, u64),
) -> (Vec<u8>, u64) {
    let code = generate_kernel(kernel, target).unwrap_or_else(|e| panic!("{e}"));
    let mut l = Loadable::new(target.clone(), &code.instrs);
    l.source_map = code.source_map;
    for (i, (addr, data)) in inputs.iter().enumerate() {
        l.inputs.push(TensorDesc::new(
            &format!("in{i}"),
            DType::U8,
            &[data.len() as u64],
            *addr,
        ));
    }
    for (i, (addr, data)) in segments.iter().enumerate() {
        l.segments.push(Segment {
            name: format!("seg{i}"),
            dram_addr: *addr,
            data: data.clone(),
        });
    }
    l.outputs
        .push(TensorDesc::new("out", DType::U8, &[out.1], out.0));
    let mut sim = Simulator::new(l).expect("load");
    for (i, (_, data)) in inputs.iter().enumerate() {
        sim.set_input(&format!("in{i}"), data).expect("input");
    }
    let result = sim
        .run(&Options::default())
        .unwrap_or_else(|e| panic!("{e}\n{kernel:?}"));
    (sim.output("out").expect("out"), result.stats.cycles)
}

/// What a GEMM's drain does to one accumulated value: the bias, then the
/// activation.
fn epilogue(acc: f32, bias: Option<f32>, act: Option<UnFunc>) -> f32 {
    let biased = bias.map_or(acc, |b| acc + b);
    act.map_or(biased, |f| unary(f, biased))
}

#[allow(clippy::too_many_arguments)]
fn check_gemm(
    target: &Target,
    batch: u64,
    m: u64,
    k: u64,
    n: u64,
    trans_b: bool,
    bias: bool,
    act: Option<UnFunc>,
    mxu: MxuType,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    let a = rng.floats((batch * m * k) as usize);
    let b = rng.floats((k * n) as usize);
    let bias_v = rng.floats(n as usize);
    let e = mxu.a_type().size();
    // B in the MXU type, [K, N] or [N, K].
    let b_store: Vec<f32> = if trans_b {
        (0..n)
            .flat_map(|j| (0..k).map(move |kk| (j, kk)))
            .map(|(j, kk)| b[(kk * n + j) as usize])
            .collect()
    } else {
        b.clone()
    };
    let b_bytes: Vec<u8> = match mxu {
        MxuType::Bf16 => b_store
            .iter()
            .flat_map(|x| f32_to_bf16(*x).to_le_bytes())
            .collect(),
        _ => f32_bytes(&b_store),
    };
    let a_addr = 0;
    let b_addr = align(batch * m * k * 4);
    let bias_addr = align(b_addr + k * n * e);
    let c_addr = align(bias_addr + n * 4);
    let spec = GemmSpec {
        node: "test/gemm".into(),
        batch,
        m,
        k,
        n,
        a: DramMat {
            addr: a_addr,
            row_stride: k * 4,
            batch_stride: m * k * 4,
        },
        b: DramMat {
            addr: b_addr,
            row_stride: if trans_b { k * e } else { n * e },
            batch_stride: 0,
        },
        b_trans: trans_b,
        bias: bias.then_some(bias_addr),
        act,
        out: DramMat {
            addr: c_addr,
            row_stride: n * 4,
            batch_stride: m * n * 4,
        },
        mxu,
        quant: None,
        online: None,
        a_rows: None,
    };
    let kernel = gemm(&spec, target).expect("lower");
    let mut segments = vec![(b_addr, b_bytes)];
    if bias {
        segments.push((bias_addr, f32_bytes(&bias_v)));
    }
    let (out, _) = run_kernel(
        &kernel,
        target,
        &[(a_addr, f32_bytes(&a))],
        &segments,
        (c_addr, batch * m * n * 4),
    );
    let got: Vec<f32> = out
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    // Reference: inputs rounded as the MXU sees them, sequential fp32 sum.
    let round = |x: f32| {
        if mxu == MxuType::Bf16 {
            bf16_to_f32(f32_to_bf16(x))
        } else {
            x
        }
    };
    let mut mismatches = 0;
    for bi in 0..batch {
        for i in 0..m {
            for j in 0..n {
                let mut acc = 0f32;
                for kk in 0..k {
                    acc += round(a[(bi * m * k + i * k + kk) as usize])
                        * round(b[(kk * n + j) as usize]);
                }
                let want = epilogue(acc, bias.then(|| bias_v[j as usize]), act);
                let g = got[(bi * m * n + i * n + j) as usize];
                mismatches += usize::from(g.to_bits() != want.to_bits());
            }
        }
    }
    assert_eq!(
        mismatches, 0,
        "{mismatches} mismatches for b{batch} {m}x{k}x{n} trans {trans_b} on {}",
        target.name
    );
}

#[test]
fn gemm_bf16_with_bias_and_gelu_is_bit_exact_on_tiny_with_edge_tiles() {
    check_gemm(
        &Target::tiny(),
        1,
        13,
        20,
        19,
        false,
        true,
        Some(UnFunc::Gelu),
        MxuType::Bf16,
        1,
    );
}

#[test]
fn gemm_f32_transposed_b_on_tiny() {
    check_gemm(
        &Target::tiny(),
        1,
        9,
        17,
        12,
        true,
        false,
        None,
        MxuType::F32,
        2,
    );
}

#[test]
fn gemm_batched_shared_weights_on_tiny() {
    check_gemm(
        &Target::tiny(),
        3,
        5,
        8,
        10,
        false,
        true,
        Some(UnFunc::Relu),
        MxuType::Bf16,
        3,
    );
}

#[test]
fn gemm_many_m_blocks_on_tiny() {
    check_gemm(
        &Target::tiny(),
        1,
        70,
        64,
        24,
        false,
        true,
        None,
        MxuType::Bf16,
        4,
    );
}

#[test]
fn gemm_on_base() {
    check_gemm(
        &Target::base(),
        1,
        40,
        300,
        260,
        false,
        true,
        Some(UnFunc::Silu),
        MxuType::Bf16,
        5,
    );
    check_gemm(
        &Target::base(),
        2,
        17,
        33,
        129,
        true,
        false,
        None,
        MxuType::F32,
        6,
    );
}

/// An integer GEMM (`qgemm`): u8 or i8 A and B with zero points, int32 in
/// ACC, drained by `vpu.dequant` times per-column scales, then bias and
/// activation; bit-exact against the written semantics. With
/// `in_dram.0` A's zero point is a byte in DRAM (computed at run time, as
/// by DynamicQuantizeLinear), read by `mxu.ldw ... azsrc=spm`; with
/// `in_dram.1` B's, by `wzsrc=spm`.
#[allow(clippy::too_many_arguments)]
fn check_qgemm(
    target: &Target,
    (m, k, n): (u64, u64, u64),
    mxu: MxuType,
    (a_zp, b_zp, in_dram): (i32, i32, (bool, bool)),
    trans_b: bool,
    bias: bool,
    (act, requant): (Option<UnFunc>, Option<(DType, i32)>),
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    // The output scale of a requantized result.
    let out_scale = 0.0125f32;
    let mut ints = |count: u64, signed: bool| -> Vec<i32> {
        (0..count)
            .map(|_| {
                let byte = ((rng.float() + 1.0) * 127.9) as i32;
                if signed {
                    byte - 128
                } else {
                    byte
                }
            })
            .collect()
    };
    let a_signed = mxu.a_type() == DType::I8;
    let b_signed = mxu.w_type() == DType::I8;
    let a = ints(m * k, a_signed);
    let b = ints(k * n, b_signed);
    let scales: Vec<f32> = rng.floats(n as usize).iter().map(|x| x * 1e-3).collect();
    let bias_v = rng.floats(n as usize);
    let byte = |x: &i32| *x as u8;
    let b_store: Vec<u8> = if trans_b {
        (0..n)
            .flat_map(|j| (0..k).map(move |kk| (kk * n + j) as usize))
            .map(|i| byte(&b[i]))
            .collect()
    } else {
        b.iter().map(byte).collect()
    };
    let a_addr = 0;
    let b_addr = align(m * k);
    let scales_addr = align(b_addr + k * n);
    let bias_addr = align(scales_addr + n * 4);
    let c_addr = align(bias_addr + n * 4);
    let zp_addr = align(c_addr + m * n * 4);
    let out_scale_addr = zp_addr + 64;
    let zero_point = |z: i32, in_dram: bool, at: u64| {
        if in_dram {
            ZeroPoint::At(Affine::c(at as i64))
        } else {
            ZeroPoint::Const(z)
        }
    };
    let spec = GemmSpec {
        node: "test/qgemm".into(),
        batch: 1,
        m,
        k,
        n,
        a: DramMat {
            addr: a_addr,
            row_stride: k,
            batch_stride: 0,
        },
        b: DramMat {
            addr: b_addr,
            row_stride: if trans_b { k } else { n },
            batch_stride: 0,
        },
        b_trans: trans_b,
        bias: bias.then_some(bias_addr),
        act,
        out: DramMat {
            addr: c_addr,
            row_stride: n * if requant.is_some() { 1 } else { 4 },
            batch_stride: 0,
        },
        mxu,
        online: None,
        a_rows: None,
        quant: Some(GemmQuant {
            a_zp: zero_point(a_zp, in_dram.0, zp_addr),
            b_zp: zero_point(b_zp, in_dram.1, zp_addr + 1),
            out: requant.map(|(dtype, zp)| Requantize {
                dtype,
                zp,
                scale: out_scale_addr,
            }),
            scales: scales_addr,
        }),
    };
    let kernel = gemm(&spec, target).expect("lower");
    let code = generate_kernel(&kernel, target).expect("codegen");
    assert!(code.instrs.iter().any(|i| matches!(
        i,
        Instr::VpuDequant {
            atype: DType::I32,
            ..
        }
    )));
    assert!(code
        .instrs
        .iter()
        .any(|i| matches!(i, Instr::MxuLoadW { dtype, azsrc, wzsrc, .. }
            if *dtype == mxu && (*azsrc == ZpSrc::Spm, *wzsrc == ZpSrc::Spm) == in_dram)));
    let mut segments = vec![(b_addr, b_store), (scales_addr, f32_bytes(&scales))];
    if in_dram != (false, false) {
        segments.push((zp_addr, vec![a_zp as u8, b_zp as u8]));
    }
    if bias {
        segments.push((bias_addr, f32_bytes(&bias_v)));
    }
    if requant.is_some() {
        segments.push((out_scale_addr, f32_bytes(&[out_scale])));
    }
    let es = if requant.is_some() { 1 } else { 4 };
    let (out, _) = run_kernel(
        &kernel,
        target,
        &[(a_addr, a.iter().map(byte).collect())],
        &segments,
        (c_addr, m * n * es),
    );
    let mut mismatches = 0;
    for i in 0..m {
        for j in 0..n {
            let mut c = 0i32;
            for kk in 0..k {
                c += (a[(i * k + kk) as usize] - a_zp) * (b[(kk * n + j) as usize] - b_zp);
            }
            let dequantized = c as f32 * scales[j as usize];
            let want = epilogue(dequantized, bias.then(|| bias_v[j as usize]), act);
            let at = ((i * n + j) * es) as usize;
            mismatches += usize::from(match requant {
                // QuantizeLinear: saturate(round_half_even(y / s) + zp).
                Some((dtype, zp)) => {
                    let (lo, hi) = if dtype == DType::U8 {
                        (0, 255)
                    } else {
                        (-128, 127)
                    };
                    let q = (f64::from(want / out_scale).round_ties_even() as i64 + i64::from(zp))
                        .clamp(lo, hi);
                    out[at] != q as u8
                }
                None => {
                    let got = f32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
                    got.to_bits() != want.to_bits()
                }
            });
        }
    }
    assert_eq!(
        mismatches, 0,
        "{mismatches} mismatches for {m}x{k}x{n} {mxu} on {}",
        target.name
    );
}

#[test]
fn qgemm_u8_i8_with_zero_points_is_bit_exact_on_tiny_with_edge_tiles() {
    check_qgemm(
        &Target::tiny(),
        (13, 20, 19),
        MxuType::U8I8,
        (131, 0, (false, false)),
        false,
        false,
        (None, None),
        5,
    );
}

#[test]
fn qgemm_i8_with_bias_activation_and_transposed_b_on_tiny() {
    check_qgemm(
        &Target::tiny(),
        (9, 17, 12),
        MxuType::I8,
        (-3, 2, (false, false)),
        true,
        true,
        (Some(UnFunc::Gelu), None),
        6,
    );
}

#[test]
fn qgemm_with_run_time_zero_points_on_tiny() {
    for (mxu, (a_zp, b_zp), in_dram, seed) in [
        (MxuType::U8I8, (201, 0), (true, false), 8),
        (MxuType::I8, (-77, 0), (true, false), 9),
        (MxuType::U8, (17, 250), (true, true), 10),
        (MxuType::I8U8, (-5, 99), (false, true), 11),
    ] {
        check_qgemm(
            &Target::tiny(),
            (11, 40, 21),
            mxu,
            (a_zp, b_zp, in_dram),
            false,
            true,
            (None, None),
            seed,
        );
    }
}

#[test]
fn qgemm_requantized_into_8_bits_on_tiny() {
    // QLinearMatMul's u8 output, and an i8 one after bias and activation.
    check_qgemm(
        &Target::tiny(),
        (9, 24, 13),
        MxuType::U8I8,
        (128, 0, (false, false)),
        false,
        false,
        (None, Some((DType::U8, 128))),
        21,
    );
    check_qgemm(
        &Target::tiny(),
        (10, 17, 11),
        MxuType::I8,
        (-3, 2, (true, false)),
        true,
        true,
        (Some(UnFunc::Relu), Some((DType::I8, -5))),
        22,
    );
}

#[test]
fn qgemm_on_base() {
    check_qgemm(
        &Target::base(),
        (40, 300, 260),
        MxuType::U8I8,
        (7, 0, (false, false)),
        false,
        true,
        (None, None),
        7,
    );
}

/// An 8-bit GEMM whose f32 A is quantized on chip (`--precision int8` /
/// `fp8-*`), against the semantics written in `lower::gemm::OnlineQuant`
/// and SPEC.md §4.4, bit for bit: int8 A per row and weights per column
/// (drain `f32(acc) · s_w[j] · s_a[i]`); FP8 A per 1×B tile and weights per
/// B×B block, applied by the MXU as it accumulates.
fn check_online_gemm(
    target: &Target,
    (m, k, n): (u64, u64, u64),
    mxu: MxuType,
    trans_b: bool,
    bias: bool,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
    // Rows of different magnitudes, so that the per-row scales differ.
    let a: Vec<f32> = (0..m * k)
        .map(|i| rng.float() * (1 + i / k) as f32)
        .collect();
    let w_logical: Vec<f32> = rng.floats((k * n) as usize);
    let stored: Vec<f32> = if trans_b {
        (0..n)
            .flat_map(|j| (0..k).map(move |kk| (kk * n + j) as usize))
            .map(|i| w_logical[i])
            .collect()
    } else {
        w_logical.clone()
    };
    let q = quantize_weights(&stored, (k as usize, n as usize), trans_b, mxu, target);
    let bias_v = rng.floats(n as usize);
    let (tk, tn) = tile_dims(k, n, mxu, target);

    let a_addr = 0;
    let b_addr = align(m * k * 4);
    let scales_addr = align(b_addr + k * n);
    let bias_addr = align(scales_addr + q.scales.len() as u64 * 4);
    let c_addr = align(bias_addr + n * 4);
    let spec = GemmSpec {
        node: "test/online".into(),
        batch: 1,
        m,
        k,
        n,
        a: DramMat {
            addr: a_addr,
            row_stride: k * 4,
            batch_stride: 0,
        },
        b: DramMat {
            addr: b_addr,
            row_stride: if trans_b { k } else { n },
            batch_stride: 0,
        },
        b_trans: trans_b,
        bias: bias.then_some(bias_addr),
        act: None,
        out: DramMat {
            addr: c_addr,
            row_stride: n * 4,
            batch_stride: 0,
        },
        mxu,
        quant: None,
        online: Some(OnlineQuant {
            w_scales: scales_addr,
        }),
        a_rows: None,
    };
    let kernel = gemm(&spec, target).expect("lower");
    let mut segments = vec![
        (b_addr, q.data.clone()),
        (scales_addr, f32_bytes(&q.scales)),
    ];
    if bias {
        segments.push((bias_addr, f32_bytes(&bias_v)));
    }
    let (out, _) = run_kernel(
        &kernel,
        target,
        &[(a_addr, f32_bytes(&a))],
        &segments,
        (c_addr, m * n * 4),
    );
    let at = mxu.a_type();
    let value = |t: DType, byte: u8| tessera_isa::lowp::byte_value(t, byte);
    let w = |kk: u64, j: u64| {
        let i = if trans_b { j * k + kk } else { kk * n + j };
        q.data[i as usize]
    };
    let fp8 = at != DType::I8;
    let block = if fp8 {
        u64::from(target.mxu_scale_block)
    } else {
        k
    };
    let qmax = if at == DType::I8 {
        127.0
    } else if at == DType::E4m3 {
        448.0
    } else {
        57344.0
    };
    let mut mismatches = 0;
    for i in 0..m {
        let row = &a[(i * k) as usize..((i + 1) * k) as usize];
        // One scale per group of `block` columns.
        let scales: Vec<f32> = row
            .chunks(block as usize)
            .map(|g| {
                let amax = g.iter().fold(0f32, |x, v| x.max(v.abs()));
                (amax * (1.0 / qmax)).max(f32::MIN_POSITIVE)
            })
            .collect();
        let qa: Vec<u8> = row
            .iter()
            .enumerate()
            .map(|(kk, &x)| {
                // Times the reciprocal scale (`vpu.quant … sop=mul`).
                let r = 1.0 / scales[kk / block as usize];
                tessera_isa::lowp::quantize_by(at, x, r, ScaleOp::Mul, 0)
            })
            .collect();
        for j in 0..n {
            let got_at = ((i * n + j) * 4) as usize;
            let got = f32::from_le_bytes(out[got_at..got_at + 4].try_into().expect("4 bytes"));
            let want = if fp8 {
                let mut c = 0f32;
                for kk in 0..k {
                    let p = value(at, qa[kk as usize]) * value(mxu.w_type(), w(kk, j));
                    let sw = q.scales[((kk / tk) * n.div_ceil(tn) + j / tn) as usize];
                    let g = scales[(kk / block) as usize] * sw;
                    c += p * g;
                }
                c
            } else {
                let mut acc = 0i32;
                for kk in 0..k {
                    acc += i32::from(qa[kk as usize] as i8) * i32::from(w(kk, j) as i8);
                }
                acc as f32 * q.scales[j as usize] * scales[0]
            };
            let want = epilogue(want, bias.then(|| bias_v[j as usize]), None);
            mismatches += usize::from(got.to_bits() != want.to_bits());
        }
    }
    assert_eq!(
        mismatches, 0,
        "{mismatches} mismatches for {m}x{k}x{n} {mxu} on {}",
        target.name
    );
}

#[test]
fn int8_gemm_of_on_chip_quantized_activations_is_bit_exact() {
    check_online_gemm(&Target::tiny(), (13, 40, 21), MxuType::I8, false, true, 11);
    check_online_gemm(&Target::tiny(), (5, 17, 9), MxuType::I8, true, false, 12);
}

#[test]
fn fp8_gemm_with_block_scales_is_bit_exact_across_blocks_and_tiles() {
    // Blocks of 16 on tiny's 8×8 array: two weight tiles per block along
    // K and N, and a partial last block.
    let small_blocks = Target {
        mxu_scale_block: 16,
        ..Target::tiny()
    };
    for (mxu, seed) in [(MxuType::E4m3, 13), (MxuType::E5m2, 14)] {
        check_online_gemm(&small_blocks, (11, 40, 21), mxu, false, true, seed);
        check_online_gemm(&small_blocks, (6, 24, 10), mxu, true, false, seed + 10);
    }
    // The default block (128) is larger than tiny's K tile.
    check_online_gemm(
        &Target::tiny(),
        (9, 40, 12),
        MxuType::E4m3,
        false,
        false,
        15,
    );
}

#[test]
fn eight_bit_gemms_on_base() {
    check_online_gemm(
        &Target::base(),
        (40, 300, 260),
        MxuType::E4m3,
        false,
        true,
        16,
    );
    check_online_gemm(&Target::base(), (40, 300, 260), MxuType::I8, true, true, 17);
}
