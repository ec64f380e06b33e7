//! Functional semantics of the MXU instructions (SPEC.md §4.4, §9.3).
//!
//! `mxu.ldw` reads a weight tile (and, for 8-bit inputs, its zero point or
//! block scales) into [`Weights`]; `mxu.mm` streams rows of A through it.
//! Float inputs with the fp32 accumulator take the vectorized kernel of
//! `mxu.rs`; a narrow accumulator, promotion and FP8 block scales follow
//! `tessera_isa::lowp::Accumulator::dot`, the written semantics, output by
//! output; integer inputs accumulate exactly in wrapping int32.

use tessera_isa::lowp::{self, Accumulator};
use tessera_isa::numerics::{bf16_to_f32, f16_to_f32};
use tessera_isa::{AccMode, DType, Mem, MxuClass, MxuType, Target, Trans};

use crate::exec::{
    bad_operand, check_size, check_work, check_zero_point, Access, Accesses, RawFault, MAX_ELEMENTS,
};
use crate::memory::Memories;
use crate::mxu::gemm_accumulate;
use crate::ops::{MxuQuant, Pattern};

/// The weights held by the MXU after `mxu.ldw`.
#[derive(Debug, Clone, PartialEq)]
pub struct Weights {
    /// k x n values, row-major, widened to f32 (float and FP8 inputs).
    pub w: Vec<f32>,
    /// k x n values `w − wzp`, row-major (integer inputs).
    pub wi: Vec<i32>,
    /// Reduction depth.
    pub k: usize,
    /// Output width.
    pub n: usize,
    /// Input types of A and the weights.
    pub dtype: MxuType,
    /// A's zero point (integer inputs).
    pub azp: i64,
    /// Weight block scales, `blocks(k) x blocks(n)` row-major (FP8 inputs).
    pub scales: Vec<f32>,
    /// Byte stride between the rows of A's block scales (FP8 inputs).
    pub sstride: u64,
    /// Elements per scale block.
    pub block: usize,
    /// Whether block scales are E8M0 bytes.
    pub e8m0: bool,
    /// The accumulator the target models.
    pub acc: Accumulator,
}

/// Widens a packed row of `dtype` elements to their values as f32 (8-bit
/// integers as their integer value).
fn widen_row(dtype: DType, bytes: &[u8], out: &mut [f32]) {
    match dtype {
        DType::Bf16 => {
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *x = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::F16 => {
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
                *x = f16_to_f32(u16::from_le_bytes([b[0], b[1]]));
            }
        }
        DType::F32 => {
            for (x, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
                *x = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        _ => {
            for (x, &b) in out.iter_mut().zip(bytes) {
                *x = lowp::byte_value(dtype, b);
            }
        }
    }
}

/// Reads `rows x cols` block scales, rows `stride` bytes apart.
fn read_scales(spm: &[u8], at: u64, rows: usize, cols: usize, stride: u64, e8m0: bool) -> Vec<f32> {
    let size = if e8m0 { 1 } else { 4 };
    let mut out = Vec::with_capacity(rows * cols);
    for r in 0..rows {
        for c in 0..cols {
            let a = (at + r as u64 * stride) as usize + c * size;
            out.push(lowp::block_scale(e8m0, &spm[a..a + size]));
        }
    }
    out
}

/// `mxu.ldw`.
#[allow(clippy::too_many_arguments)] // one argument per operand of the instruction
pub fn mxu_load(
    target: &Target,
    mems: &mut Memories,
    src: u64,
    k: u64,
    n: u64,
    stride: u64,
    dtype: MxuType,
    trans: Trans,
    quant: MxuQuant,
) -> Result<(Weights, Accesses), RawFault> {
    if k == 0 || k > u64::from(target.mxu_k) || n == 0 || n > u64::from(target.mxu_n) {
        return Err(bad_operand(format!(
            "weight tile {k}x{n} does not fit the {}x{} array (k and n must be at least 1)",
            target.mxu_k, target.mxu_n
        )));
    }
    check_size("stride", stride)?;
    let class = dtype.class();
    let (wtype, atype) = (dtype.w_type(), dtype.a_type());
    let e = wtype.size();
    let pattern = match trans {
        Trans::N => Pattern::rows(Mem::Spm, src, k, n * e, stride),
        Trans::T => Pattern::rows(Mem::Spm, src, n, k * e, stride),
    };
    pattern.check(mems)?;
    pattern.check_align(e)?;
    let mut accesses = vec![Access {
        pattern,
        write: false,
    }];
    let (mut wzp, mut azp) = (0, 0);
    if class == MxuClass::Int {
        // A zero point: the register's value, or (`*zsrc=spm`) one element
        // of the operand's type at the SPM address in the register.
        let mut zero_point = |value: i64, in_spm: bool, t: DType| -> Result<i64, RawFault> {
            if !in_spm {
                return Ok(value);
            }
            let pattern = Pattern::contiguous(Mem::Spm, value as u64, 1);
            pattern.check(mems)?;
            accesses.push(Access {
                pattern,
                write: false,
            });
            let byte = mems.onchip(Mem::Spm)[value as usize];
            Ok(if t == DType::I8 {
                i64::from(byte as i8)
            } else {
                i64::from(byte)
            })
        };
        azp = zero_point(quant.azp, quant.azp_in_spm, atype)?;
        wzp = zero_point(quant.wzp, quant.wzp_in_spm, wtype)?;
        check_zero_point("mxu.ldw weight", wtype, wzp)?;
        check_zero_point("mxu.ldw A", atype, azp)?;
    }
    let block = u64::from(target.mxu_scale_block);
    let e8m0 = target.mxu_scale_e8m0;
    let mut scales = Vec::new();
    if class == MxuClass::Fp8 {
        check_size("sstride", quant.sstride)?;
        let (kb, nb) = (lowp::blocks(k, block), lowp::blocks(n, block));
        let row = nb * lowp::scale_bytes(target);
        let pattern = Pattern::rows(Mem::Spm, quant.scales, kb, row, row);
        pattern.check(mems)?;
        pattern.check_align(lowp::scale_bytes(target))?;
        accesses.push(Access {
            pattern,
            write: false,
        });
        let spm = mems.onchip(Mem::Spm);
        scales = read_scales(spm, quant.scales, kb as usize, nb as usize, row, e8m0);
    }
    let spm = mems.onchip(Mem::Spm);
    let (k, n) = (k as usize, n as usize);
    let mut w = vec![0f32; k * n];
    let (src, stride, e) = (src as usize, stride as usize, e as usize);
    let mut one = [0f32];
    for kk in 0..k {
        for j in 0..n {
            let at = match trans {
                Trans::N => src + kk * stride + j * e,
                Trans::T => src + j * stride + kk * e,
            };
            widen_row(wtype, &spm[at..at + e], &mut one);
            w[kk * n + j] = one[0] - wzp as f32;
        }
    }
    let (w, wi) = if class == MxuClass::Int {
        (Vec::new(), w.iter().map(|&x| x as i32).collect())
    } else {
        (w, Vec::new())
    };
    Ok((
        Weights {
            w,
            wi,
            k,
            n,
            dtype,
            azp,
            scales,
            sstride: quant.sstride,
            block: block as usize,
            e8m0,
            acc: Accumulator::of(target),
        },
        accesses,
    ))
}

/// `mxu.mm`: returns the accesses and the MACs performed.
#[allow(clippy::too_many_arguments)] // one argument per operand of the instruction
pub fn mxu_matmul(
    mems: &mut Memories,
    weights: &Weights,
    dst: u64,
    a: u64,
    m: u64,
    astride: u64,
    dstride: u64,
    mode: AccMode,
    ascales: u64,
) -> Result<(Accesses, u64), RawFault> {
    check_size("m", m)?;
    check_size("astride", astride)?;
    check_size("dstride", dstride)?;
    check_work(
        "a matmul's A operand (elements)",
        m.saturating_mul(weights.k as u64),
        MAX_ELEMENTS,
    )?;
    let class = weights.dtype.class();
    let atype = weights.dtype.a_type();
    let e = atype.size();
    let (k, n) = (weights.k as u64, weights.n as u64);
    let a_pat = Pattern::rows(Mem::Spm, a, m, k * e, astride);
    let c_pat = Pattern::rows(Mem::Acc, dst, m, n * 4, dstride);
    a_pat.check(mems)?;
    a_pat.check_align(e)?;
    c_pat.check(mems)?;
    c_pat.check_align(4)?;
    let mut accesses = vec![
        Access {
            pattern: a_pat,
            write: false,
        },
        Access {
            pattern: c_pat,
            write: true,
        },
    ];
    if mode == AccMode::Acc {
        accesses.push(Access {
            pattern: c_pat,
            write: false,
        });
    }
    let block = weights.block as u64;
    let kb = lowp::blocks(k, block) as usize;
    let mut a_scales = Vec::new();
    if class == MxuClass::Fp8 {
        let size = if weights.e8m0 { 1 } else { 4 };
        let s_pat = Pattern::rows(Mem::Spm, ascales, m, kb as u64 * size, weights.sstride);
        s_pat.check(mems)?;
        s_pat.check_align(size)?;
        accesses.push(Access {
            pattern: s_pat,
            write: false,
        });
        let spm = mems.onchip(Mem::Spm);
        a_scales = read_scales(spm, ascales, m as usize, kb, weights.sstride, weights.e8m0);
    }
    let (m, k, n) = (m as usize, k as usize, n as usize);
    let (a, astride, e) = (a as usize, astride as usize, e as usize);
    let spm = mems.onchip(Mem::Spm);
    let mut a_rows = vec![0f32; m * k];
    for (i, dst_row) in a_rows.chunks_exact_mut(k).enumerate() {
        let row = a + i * astride;
        widen_row(atype, &spm[row..row + k * e], dst_row);
    }
    let (dst, dstride) = (dst as usize, dstride as usize);
    let acc_rows = |mems: &Memories| -> Vec<[u8; 4]> {
        let acc = mems.onchip(Mem::Acc);
        let mut out = Vec::with_capacity(m * n);
        for i in 0..m {
            let row = dst + i * dstride;
            for b in acc[row..row + 4 * n].chunks_exact(4) {
                out.push([b[0], b[1], b[2], b[3]]);
            }
        }
        out
    };
    let init = if mode == AccMode::Acc {
        acc_rows(mems)
    } else {
        vec![[0u8; 4]; m * n]
    };
    let out: Vec<[u8; 4]> = match class {
        MxuClass::Int => {
            let (azp, w) = (weights.azp as f32, &weights.wi);
            let mut c: Vec<i32> = init.iter().map(|b| i32::from_le_bytes(*b)).collect();
            for (c_row, a_row) in c.chunks_exact_mut(n).zip(a_rows.chunks_exact(k)) {
                for (kk, &x) in a_row.iter().enumerate() {
                    let x = (x - azp) as i32;
                    let w_row = &w[kk * n..(kk + 1) * n];
                    for (cj, &wj) in c_row.iter_mut().zip(w_row) {
                        *cj = cj.wrapping_add(x.wrapping_mul(wj));
                    }
                }
            }
            c.iter().map(|v| v.to_le_bytes()).collect()
        }
        MxuClass::Float | MxuClass::Fp8 => {
            let mut c: Vec<f32> = init.iter().map(|b| f32::from_le_bytes(*b)).collect();
            float_matmul(weights, &a_rows, &a_scales, &mut c, m);
            c.iter().map(|v| v.to_le_bytes()).collect()
        }
    };
    let acc = mems.onchip_mut(Mem::Acc);
    for (i, c_row) in out.chunks_exact(n).enumerate() {
        let row = dst + i * dstride;
        for (x, b) in c_row.iter().zip(acc[row..row + 4 * n].chunks_exact_mut(4)) {
            b.copy_from_slice(x);
        }
    }
    Ok((accesses, (m * k * n) as u64))
}

/// `c += A · W` for float and FP8 inputs: `a_scales` is `m x blocks(k)`
/// (empty when unscaled).
fn float_matmul(weights: &Weights, a: &[f32], a_scales: &[f32], c: &mut [f32], m: usize) {
    let (k, n, block) = (weights.k, weights.n, weights.block.max(1));
    let scaled = weights.dtype.class() == MxuClass::Fp8;
    let kb = k.div_ceil(block);
    let nb = n.div_ceil(block);
    // g(i, kk, j): the product of A's and W's block scales.
    let g = |i: usize, kk: usize, j: usize| {
        a_scales[i * kb + kk / block] * weights.scales[(kk / block) * nb + j / block]
    };
    if weights.acc.is_fp32() && !scaled {
        gemm_accumulate(a, &weights.w, c, m, k, n);
        return;
    }
    if weights.acc.is_fp32() {
        // c = c + round(a·w)·g, sequentially in kk: the definition, vectorized over j.
        let mut g_row = vec![0f32; n];
        for (i, c_row) in c.chunks_exact_mut(n).enumerate() {
            for kk in 0..k {
                if kk % block == 0 {
                    for (j, x) in g_row.iter_mut().enumerate() {
                        *x = g(i, kk, j);
                    }
                }
                let x = a[i * k + kk];
                let w_row = &weights.w[kk * n..(kk + 1) * n];
                for j in 0..n {
                    c_row[j] += (x * w_row[j]) * g_row[j];
                }
            }
        }
        return;
    }
    let acc = weights.acc;
    let blocks = scaled.then_some(block);
    for (i, c_row) in c.chunks_exact_mut(n).enumerate() {
        let a_row = &a[i * k..(i + 1) * k];
        for (j, cj) in c_row.iter_mut().enumerate() {
            *cj = acc.dot(
                *cj,
                k,
                blocks,
                |kk| a_row[kk] * weights.w[kk * n + j],
                |kk| if scaled { g(i, kk, j) } else { 1.0 },
            );
        }
    }
}
