//! Kernel templates run on the simulator against naive references, on
//! `tiny` (edge tiles, many tiles) and `base`.

use tessera_compiler::codegen::generate_kernel;
use tessera_compiler::kernel::{Affine, Kernel, ZeroPoint};
use tessera_compiler::lower::gemm::{gemm, DramMat, GemmQuant, GemmSpec};
use tessera_isa::numerics::{bf16_to_f32, f32_to_bf16, unary};
use tessera_isa::{DType, Instr, Loadable, MxuType, Segment, Target, TensorDesc, UnFunc, ZpSrc};
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
/// `a_zp_in_dram` A's zero point is a byte in DRAM (computed at run time,
/// as by DynamicQuantizeLinear), read by `mxu.ldw ... azsrc=spm`.
#[allow(clippy::too_many_arguments)]
fn check_qgemm(
    target: &Target,
    (m, k, n): (u64, u64, u64),
    mxu: MxuType,
    (a_zp, b_zp, a_zp_in_dram): (i32, i32, bool),
    trans_b: bool,
    bias: bool,
    act: Option<UnFunc>,
    seed: u64,
) {
    let mut rng = Rng(seed | 1);
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
            row_stride: n * 4,
            batch_stride: 0,
        },
        mxu,
        quant: Some(GemmQuant {
            a_zp: if a_zp_in_dram {
                ZeroPoint::At(Affine::c(zp_addr as i64))
            } else {
                ZeroPoint::Const(a_zp)
            },
            b_zp,
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
        .any(|i| matches!(i, Instr::MxuLoadW { dtype, azsrc, .. }
            if *dtype == mxu && (*azsrc == ZpSrc::Spm) == a_zp_in_dram)));
    let mut segments = vec![(b_addr, b_store), (scales_addr, f32_bytes(&scales))];
    if a_zp_in_dram {
        segments.push((zp_addr, vec![a_zp as u8]));
    }
    if bias {
        segments.push((bias_addr, f32_bytes(&bias_v)));
    }
    let (out, _) = run_kernel(
        &kernel,
        target,
        &[(a_addr, a.iter().map(byte).collect())],
        &segments,
        (c_addr, m * n * 4),
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
            let at = ((i * n + j) * 4) as usize;
            let got = f32::from_le_bytes([out[at], out[at + 1], out[at + 2], out[at + 3]]);
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
fn qgemm_u8_i8_with_zero_points_is_bit_exact_on_tiny_with_edge_tiles() {
    check_qgemm(
        &Target::tiny(),
        (13, 20, 19),
        MxuType::U8I8,
        (131, 0, false),
        false,
        false,
        None,
        5,
    );
}

#[test]
fn qgemm_i8_with_bias_activation_and_transposed_b_on_tiny() {
    check_qgemm(
        &Target::tiny(),
        (9, 17, 12),
        MxuType::I8,
        (-3, 2, false),
        true,
        true,
        Some(UnFunc::Gelu),
        6,
    );
}

#[test]
fn qgemm_with_run_time_zero_points_of_a_on_tiny() {
    for (mxu, a_zp, seed) in [(MxuType::U8I8, 201, 8), (MxuType::I8, -77, 9)] {
        check_qgemm(
            &Target::tiny(),
            (11, 40, 21),
            mxu,
            (a_zp, 0, true),
            false,
            true,
            None,
            seed,
        );
    }
}

#[test]
fn qgemm_on_base() {
    check_qgemm(
        &Target::base(),
        (40, 300, 260),
        MxuType::U8I8,
        (7, 0, false),
        false,
        true,
        None,
        7,
    );
}
