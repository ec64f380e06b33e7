//! Functional semantics of the VPU instructions (SPEC.md §9.4).
//!
//! Every instruction reads all its sources into temporaries before writing
//! its destination, which is what makes in-place operations well-defined.

use tessera_isa::lowp;
use tessera_isa::numerics::{self, binary, reduce_row, reduce_step, unary};
use tessera_isa::{AccMode, Bcast, BinFunc, DType, Mem, Order, RedFunc, ScaleOp, UnFunc};

use crate::exec::{
    bad_operand, check_size, check_work, check_zero_point, Access, Accesses, RawFault, MAX_ELEMENTS,
};
use crate::memory::Memories;
use crate::ops::{vpu_pattern, Addr, Pattern, Region};

fn check_shape(shape: Region, strides: &[(&str, u64)]) -> Result<(), RawFault> {
    check_size("rows", shape.rows)?;
    check_size("cols", shape.cols)?;
    check_work(
        "a vector instruction (elements)",
        shape.rows.saturating_mul(shape.cols),
        MAX_ELEMENTS,
    )?;
    for (name, s) in strides {
        check_size(name, *s)?;
    }
    Ok(())
}

/// Checks a pattern's bounds and alignment and records it.
fn operand(
    mems: &mut Memories,
    accesses: &mut Accesses,
    pattern: Pattern,
    align: u64,
    write: bool,
) -> Result<(), RawFault> {
    pattern.check(mems)?;
    pattern.check_align(align)?;
    if !pattern.is_empty() {
        accesses.push(Access { pattern, write });
    }
    Ok(())
}

/// Reads an fp32 operand under a broadcast mode into a rows×cols vector.
fn read_f32(mems: &Memories, addr: Addr, bcast: Bcast, shape: Region, stride: u64) -> Vec<f32> {
    let bytes = mems.onchip(addr.mem);
    let (rows, cols) = (shape.rows as usize, shape.cols as usize);
    let mut out = Vec::with_capacity(rows * cols);
    for i in 0..rows {
        for j in 0..cols {
            let at = match bcast {
                Bcast::Full => addr.addr + i as u64 * stride + 4 * j as u64,
                Bcast::Row => addr.addr + 4 * j as u64,
                Bcast::Col => addr.addr + i as u64 * stride,
                Bcast::Scalar => addr.addr,
            };
            out.push(Memories::f32_at(bytes, at));
        }
    }
    out
}

/// Writes a rows×cols fp32 region.
fn write_f32(mems: &mut Memories, addr: Addr, shape: Region, stride: u64, values: &[f32]) {
    let bytes = mems.onchip_mut(addr.mem);
    let cols = shape.cols as usize;
    for (i, row) in values
        .chunks(cols.max(1))
        .enumerate()
        .take(shape.rows as usize)
    {
        let base = (addr.addr + i as u64 * stride) as usize;
        for (j, v) in row.iter().enumerate() {
            bytes[base + 4 * j..base + 4 * j + 4].copy_from_slice(&v.to_le_bytes());
        }
    }
}

fn full(addr: Addr, shape: Region, stride: u64) -> Pattern {
    vpu_pattern(addr, Bcast::Full, shape, stride, 4)
}

/// `vpu.bin`.
#[allow(clippy::too_many_arguments)]
pub fn bin(
    mems: &mut Memories,
    func: BinFunc,
    dst: Addr,
    a: Addr,
    b: Addr,
    shape: Region,
    strides: (u64, u64, u64),
    bcasts: (Bcast, Bcast),
) -> Result<Accesses, RawFault> {
    let (dstride, astride, bstride) = strides;
    check_shape(
        shape,
        &[
            ("dstride", dstride),
            ("astride", astride),
            ("bstride", bstride),
        ],
    )?;
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, bcasts.0, shape, astride, 4),
        4,
        false,
    )?;
    operand(
        mems,
        &mut acc,
        vpu_pattern(b, bcasts.1, shape, bstride, 4),
        4,
        false,
    )?;
    if func == BinFunc::Sel {
        operand(mems, &mut acc, full(dst, shape, dstride), 4, false)?;
    }
    operand(mems, &mut acc, full(dst, shape, dstride), 4, true)?;
    let av = read_f32(mems, a, bcasts.0, shape, astride);
    let bv = read_f32(mems, b, bcasts.1, shape, bstride);
    let out: Vec<f32> = if func == BinFunc::Sel {
        let old = read_f32(mems, dst, Bcast::Full, shape, dstride);
        av.iter()
            .zip(&bv)
            .zip(&old)
            .map(|((x, y), o)| binary(func, *x, *y, *o))
            .collect()
    } else {
        av.iter()
            .zip(&bv)
            .map(|(x, y)| binary(func, *x, *y, 0.0))
            .collect()
    };
    write_f32(mems, dst, shape, dstride, &out);
    Ok(acc)
}

/// `vpu.bins`.
#[allow(clippy::too_many_arguments)]
pub fn bin_scalar(
    mems: &mut Memories,
    func: BinFunc,
    dst: Addr,
    a: Addr,
    s: f32,
    shape: Region,
    strides: (u64, u64),
    abcast: Bcast,
    order: Order,
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, abcast, shape, astride, 4),
        4,
        false,
    )?;
    if func == BinFunc::Sel {
        operand(mems, &mut acc, full(dst, shape, dstride), 4, false)?;
    }
    operand(mems, &mut acc, full(dst, shape, dstride), 4, true)?;
    let av = read_f32(mems, a, abcast, shape, astride);
    let old = if func == BinFunc::Sel {
        read_f32(mems, dst, Bcast::Full, shape, dstride)
    } else {
        vec![0.0; av.len()]
    };
    let out: Vec<f32> = av
        .iter()
        .zip(&old)
        .map(|(x, o)| match order {
            Order::As => binary(func, *x, s, *o),
            Order::Sa => binary(func, s, *x, *o),
        })
        .collect();
    write_f32(mems, dst, shape, dstride, &out);
    Ok(acc)
}

/// `vpu.un`.
pub fn un(
    mems: &mut Memories,
    func: UnFunc,
    dst: Addr,
    a: Addr,
    shape: Region,
    strides: (u64, u64),
    abcast: Bcast,
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, abcast, shape, astride, 4),
        4,
        false,
    )?;
    operand(mems, &mut acc, full(dst, shape, dstride), 4, true)?;
    let out: Vec<f32> = read_f32(mems, a, abcast, shape, astride)
        .into_iter()
        .map(|x| unary(func, x))
        .collect();
    write_f32(mems, dst, shape, dstride, &out);
    Ok(acc)
}

/// `vpu.red`.
#[allow(clippy::too_many_arguments)]
pub fn red(
    mems: &mut Memories,
    lanes: usize,
    func: RedFunc,
    dst: Addr,
    a: Addr,
    shape: Region,
    strides: (u64, u64),
    mode: AccMode,
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
    let mut acc = Vec::new();
    let column = Region {
        rows: shape.rows,
        cols: 1,
    };
    if shape.cols > 0 {
        operand(mems, &mut acc, full(a, shape, astride), 4, false)?;
    }
    if mode == AccMode::Acc {
        operand(mems, &mut acc, full(dst, column, dstride), 4, false)?;
    }
    operand(mems, &mut acc, full(dst, column, dstride), 4, true)?;
    let values = read_f32(mems, a, Bcast::Full, shape, astride);
    let cols = shape.cols as usize;
    let old = read_f32(mems, dst, Bcast::Full, column, dstride);
    let out: Vec<f32> = (0..shape.rows as usize)
        .map(|i| {
            let r = reduce_row(
                func,
                values[i * cols..(i + 1) * cols].iter().copied(),
                lanes,
            );
            match mode {
                AccMode::Set => r,
                AccMode::Acc => reduce_step(func, old[i], r),
            }
        })
        .collect();
    write_f32(mems, dst, column, dstride, &out);
    Ok(acc)
}

/// `vpu.cvt`.
pub fn cvt(
    mems: &mut Memories,
    dst: Addr,
    a: Addr,
    types: (DType, DType),
    shape: Region,
    strides: (u64, u64),
) -> Result<Accesses, RawFault> {
    let (dtype, atype) = types;
    let (dstride, astride) = strides;
    check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
    for (name, addr, t) in [("dst", dst, dtype), ("a", a, atype)] {
        check_acc_type("vpu.cvt", name, addr, t)?;
    }
    let (ds, as_) = (dtype.size(), atype.size());
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, Bcast::Full, shape, astride, as_),
        as_,
        false,
    )?;
    operand(
        mems,
        &mut acc,
        vpu_pattern(dst, Bcast::Full, shape, dstride, ds),
        ds,
        true,
    )?;
    let (rows, cols) = (shape.rows as usize, shape.cols as usize);
    if rows == 0 || cols == 0 {
        // Nothing moves (and an untouched memory may not be allocated yet).
        return Ok(acc);
    }
    let src = mems.onchip(a.mem);
    let mut out = vec![0u8; rows * cols * ds as usize];
    for i in 0..rows {
        for j in 0..cols {
            let from = (a.addr + i as u64 * astride + j as u64 * as_) as usize;
            let to = (i * cols + j) * ds as usize;
            numerics::convert(
                atype,
                &src[from..from + as_ as usize],
                dtype,
                &mut out[to..to + ds as usize],
            );
        }
    }
    let bytes = mems.onchip_mut(dst.mem);
    let row_bytes = cols * ds as usize;
    for i in 0..rows {
        let base = (dst.addr + i as u64 * dstride) as usize;
        bytes[base..base + row_bytes].copy_from_slice(&out[i * row_bytes..(i + 1) * row_bytes]);
    }
    Ok(acc)
}

/// ACC holds 4-byte elements only: fp32, or int32 from integer matmuls.
fn check_acc_type(mnemonic: &str, name: &str, addr: Addr, t: DType) -> Result<(), RawFault> {
    if addr.mem == Mem::Acc && !matches!(t, DType::F32 | DType::I32) {
        return Err(bad_operand(format!(
            "{mnemonic} operand `{name}` in ACC must be f32 or i32, is {t}"
        )));
    }
    Ok(())
}

/// The scale operand of `vpu.quant` / `vpu.dequant`: per tensor, per row
/// or per column (not full).
fn read_scales(
    mems: &mut Memories,
    accesses: &mut Accesses,
    mnemonic: &str,
    s: Addr,
    sbcast: Bcast,
    shape: Region,
) -> Result<Vec<f32>, RawFault> {
    if sbcast == Bcast::Full {
        return Err(bad_operand(format!(
            "{mnemonic} scale broadcast must be scalar, row or col, is full"
        )));
    }
    operand(
        mems,
        accesses,
        vpu_pattern(s, sbcast, shape, 4, 4),
        4,
        false,
    )?;
    Ok(read_f32(mems, s, sbcast, shape, 4))
}

/// Byte `k` of each element of a rows×cols region of `size`-byte elements.
fn element_at(addr: Addr, stride: u64, size: u64, i: usize, j: usize) -> usize {
    (addr.addr + i as u64 * stride + j as u64 * size) as usize
}

/// The quantized side of `vpu.quant` / `vpu.dequant`, for the checks both
/// make.
struct Quantized<'a> {
    mnemonic: &'a str,
    /// The operand holding quantized values.
    operand: (&'a str, Addr),
    dtype: DType,
    /// ("reads"/"writes", the types taken, whether `dtype` is one).
    allowed: (&'a str, &'a str, bool),
    zp: i64,
}

impl Quantized<'_> {
    fn check(&self, shape: Region, (dstride, astride): (u64, u64)) -> Result<(), RawFault> {
        check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
        let (verb, types, ok) = self.allowed;
        if !ok {
            return Err(bad_operand(format!(
                "{} {verb} {types}, not {}",
                self.mnemonic, self.dtype
            )));
        }
        check_acc_type(self.mnemonic, self.operand.0, self.operand.1, self.dtype)?;
        check_zero_point(self.mnemonic, self.dtype, self.zp)
    }
}

/// `vpu.quant`.
#[allow(clippy::too_many_arguments)] // one argument per operand of the instruction
pub fn quant(
    mems: &mut Memories,
    dst: Addr,
    a: Addr,
    s: Addr,
    dtype: DType,
    shape: Region,
    strides: (u64, u64),
    (sbcast, sop): (Bcast, ScaleOp),
    zp: i64,
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    let quantized = Quantized {
        mnemonic: "vpu.quant",
        operand: ("dst", dst),
        dtype,
        allowed: ("writes", "i8, u8, e4m3 or e5m2", lowp::quant_type_ok(dtype)),
        zp,
    };
    quantized.check(shape, strides)?;
    let mut acc = Vec::new();
    operand(mems, &mut acc, full(a, shape, astride), 4, false)?;
    let scales = read_scales(mems, &mut acc, "vpu.quant", s, sbcast, shape)?;
    operand(
        mems,
        &mut acc,
        vpu_pattern(dst, Bcast::Full, shape, dstride, 1),
        1,
        true,
    )?;
    let values = read_f32(mems, a, Bcast::Full, shape, astride);
    let bytes = mems.onchip_mut(dst.mem);
    let cols = shape.cols as usize;
    for (idx, (&x, &sc)) in values.iter().zip(&scales).enumerate() {
        let (i, j) = (idx / cols.max(1), idx % cols.max(1));
        bytes[element_at(dst, dstride, 1, i, j)] = lowp::quantize_by(dtype, x, sc, sop, zp);
    }
    Ok(acc)
}

/// `vpu.dequant`.
#[allow(clippy::too_many_arguments)] // one argument per operand of the instruction
pub fn dequant(
    mems: &mut Memories,
    dst: Addr,
    a: Addr,
    s: Addr,
    atype: DType,
    shape: Region,
    strides: (u64, u64),
    sbcast: Bcast,
    zp: i64,
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    let quantized = Quantized {
        mnemonic: "vpu.dequant",
        operand: ("a", a),
        dtype: atype,
        allowed: (
            "reads",
            "i8, u8, i32, e4m3 or e5m2",
            lowp::dequant_type_ok(atype),
        ),
        zp,
    };
    quantized.check(shape, strides)?;
    let size = atype.size();
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, Bcast::Full, shape, astride, size),
        size,
        false,
    )?;
    let scales = read_scales(mems, &mut acc, "vpu.dequant", s, sbcast, shape)?;
    operand(mems, &mut acc, full(dst, shape, dstride), 4, true)?;
    let src = mems.onchip(a.mem);
    let cols = shape.cols as usize;
    let size = size as usize;
    let out: Vec<f32> = scales
        .iter()
        .enumerate()
        .map(|(idx, &sc)| {
            let at = element_at(
                a,
                astride,
                size as u64,
                idx / cols.max(1),
                idx % cols.max(1),
            );
            lowp::dequantize(atype, &src[at..at + size], sc, zp)
        })
        .collect();
    write_f32(mems, dst, shape, dstride, &out);
    Ok(acc)
}

/// `vpu.fill`.
pub fn fill(
    mems: &mut Memories,
    dst: Addr,
    bits: u32,
    shape: Region,
    dstride: u64,
) -> Result<Accesses, RawFault> {
    check_shape(shape, &[("dstride", dstride)])?;
    let mut acc = Vec::new();
    operand(mems, &mut acc, full(dst, shape, dstride), 4, true)?;
    let values = vec![f32::from_bits(bits); (shape.rows * shape.cols) as usize];
    write_f32(mems, dst, shape, dstride, &values);
    Ok(acc)
}

/// `vpu.trans`.
pub fn trans(
    mems: &mut Memories,
    dst: Addr,
    a: Addr,
    dtype: DType,
    shape: Region,
    strides: (u64, u64),
) -> Result<Accesses, RawFault> {
    let (dstride, astride) = strides;
    check_shape(shape, &[("dstride", dstride), ("astride", astride)])?;
    let e = dtype.size();
    for (name, addr) in [("dst", dst), ("a", a)] {
        if addr.mem == Mem::Acc && e != 4 {
            return Err(bad_operand(format!(
                "vpu.trans operand `{name}` in ACC needs 4-byte elements, {dtype} has {e}"
            )));
        }
    }
    let out_shape = Region {
        rows: shape.cols,
        cols: shape.rows,
    };
    let mut acc = Vec::new();
    operand(
        mems,
        &mut acc,
        vpu_pattern(a, Bcast::Full, shape, astride, e),
        e,
        false,
    )?;
    operand(
        mems,
        &mut acc,
        vpu_pattern(dst, Bcast::Full, out_shape, dstride, e),
        e,
        true,
    )?;
    let (rows, cols, e) = (shape.rows as usize, shape.cols as usize, e as usize);
    if rows == 0 || cols == 0 {
        // Nothing moves (and an untouched memory may not be allocated yet).
        return Ok(acc);
    }
    let src = mems.onchip(a.mem);
    let mut out = vec![0u8; rows * cols * e];
    for i in 0..rows {
        for j in 0..cols {
            let from = (a.addr as usize) + i * astride as usize + j * e;
            let to = (j * rows + i) * e;
            out[to..to + e].copy_from_slice(&src[from..from + e]);
        }
    }
    let bytes = mems.onchip_mut(dst.mem);
    let row_bytes = rows * e;
    for j in 0..cols {
        let base = (dst.addr + j as u64 * dstride) as usize;
        bytes[base..base + row_bytes].copy_from_slice(&out[j * row_bytes..(j + 1) * row_bytes]);
    }
    Ok(acc)
}
