//! Ops on the MXU: matmul, GEMM, convolution (im2col + GEMM), attention.

use tessera_isa::IdxType;

use super::{unsupported, vector};
use crate::graph::{Activation, NodeId};
use crate::kernel::{Affine, Kernel, ZeroPoint};
use crate::lower::attention::{attention, AttentionSpec, MaskSpec};
use crate::lower::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use crate::lower::gemm::{DramMat, GemmQuant, GemmSpec, OnlineQuant, Requantize, RowGather};
use crate::lower::ksplit::gemm_kernels;
use crate::lower::movement::{copies, dense_strides, CopySpec};
use crate::lower::{Ctx, LowerError};
use crate::precision::{integer_mxu, Precision};
use crate::tensor::DType;

/// Convolution as im2col (a strided DMA copy, after zero padding) and a
/// GEMM against the weights viewed as `[M, C/g · kernel]` (B transposed),
/// then a copy into `N, M, spatial` order.
pub(super) fn conv(
    ctx: &Ctx,
    id: NodeId,
    attrs: &crate::graph::ConvAttrs,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let x = ctx.graph.node(ops[0]);
    let w = ctx.graph.node(ops[1]);
    if x.ty.dtype != DType::F32 || w.ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "conv on non-f32 data"));
    }
    let xs = &x.ty.shape;
    let ws = &w.ty.shape;
    let os = &node.ty.shape;
    let spatial = xs.len() - 2;
    let (n, c) = (xs[0], xs[1]);
    let (m, cg) = (ws[0], ws[1]);
    let group = attrs.group.max(1);
    let mg = m / group;
    let kernel: Vec<usize> = ws[2..].to_vec();
    let out_sp: Vec<usize> = os[2..].to_vec();
    let kdim: usize = cg * kernel.iter().product::<usize>();
    let positions: usize = out_sp.iter().product();
    let mut kernels = Vec::new();
    // Zero-padded input, if padded.
    let pads_begin = &attrs.pads[..spatial.min(attrs.pads.len())];
    let padded = attrs.pads.iter().any(|&p| p > 0);
    let (xp, xp_shape) = if padded {
        let mut shape = xs.clone();
        for d in 0..spatial {
            shape[2 + d] += attrs.pads[d] + attrs.pads.get(spatial + d).copied().unwrap_or(0);
        }
        let bytes = shape.iter().product::<usize>() as u64 * 4;
        let at = ctx.scratch(bytes);
        kernels.push(crate::lower::movement::zero_fill(
            &format!("{}.pad", node.name),
            at,
            bytes,
            ctx.target,
        )?);
        let pstrides = dense_strides(&shape);
        let offset: i64 = (0..spatial)
            .map(|d| pads_begin[d] as i64 * pstrides[2 + d])
            .sum();
        kernels.push(copies(
            &format!("{}.pad", node.name),
            "copy into the padded input",
            &[CopySpec {
                node: node.name.clone(),
                what: "pad".into(),
                sizes: xs.clone(),
                src: ctx.addr(ops[0]) as i64,
                src_strides: dense_strides(xs),
                dst: at as i64 + offset * 4,
                dst_strides: pstrides,
                esize: 4,
            }],
        ));
        (at, shape)
    } else {
        (ctx.addr(ops[0]), xs.clone())
    };
    let xstr = dense_strides(&xp_shape);
    // im2col: cols[n][g][pos][c, k...]
    let cols_bytes = [n, group, positions, kdim, 4]
        .iter()
        .fold(1u64, |acc, &d| acc.saturating_mul(d as u64));
    if cols_bytes > ctx.target.dram_bytes {
        return Err(LowerError::DramFull {
            needed: cols_bytes,
            available: ctx.target.dram_bytes,
        });
    }
    let cols = ctx.scratch(cols_bytes);
    let mut sizes = vec![n, group];
    sizes.extend(&out_sp);
    sizes.push(cg);
    sizes.extend(&kernel);
    let mut src_strides = vec![xstr[0], cg as i64 * xstr[1]];
    for d in 0..spatial {
        src_strides.push(attrs.strides[d] as i64 * xstr[2 + d]);
    }
    src_strides.push(xstr[1]);
    for d in 0..spatial {
        src_strides.push(attrs.dilations[d] as i64 * xstr[2 + d]);
    }
    let dst_strides = dense_strides(&sizes);
    kernels.push(copies(
        &format!("{}.im2col", node.name),
        "im2col",
        &[CopySpec {
            node: node.name.clone(),
            what: "im2col".into(),
            sizes,
            src: xp as i64,
            src_strides,
            dst: cols as i64,
            dst_strides,
            esize: 4,
        }],
    ));
    // The GEMM per group: [positions, kdim] x [mg, kdim]^T (+ bias).
    let mxu = ctx.precision.mxu();
    let e = mxu.a_type().size();
    let w_addr = match ctx.weights(ops[1]) {
        Some(a) => a,
        None if ctx.precision == Precision::Fp32 => ctx.addr(ops[1]),
        None => {
            return Err(unsupported(
                ctx,
                id,
                "conv weights computed at run time in bf16",
            ))
        }
    };
    let res = ctx.scratch((n * positions * m) as u64 * 4);
    for g in 0..group {
        let spec = GemmSpec {
            node: node.name.clone(),
            batch: n as u64,
            m: positions as u64,
            k: kdim as u64,
            n: mg as u64,
            a: DramMat {
                addr: cols + (g * positions * kdim) as u64 * 4,
                row_stride: kdim as u64 * 4,
                batch_stride: (group * positions * kdim) as u64 * 4,
            },
            b: DramMat {
                addr: w_addr + (g * mg * kdim) as u64 * e,
                row_stride: kdim as u64 * e,
                batch_stride: 0,
            },
            b_trans: true,
            bias: ops.get(2).map(|&b| ctx.addr(b) + (g * mg) as u64 * 4),
            act: None,
            out: DramMat {
                addr: res + (g * mg) as u64 * 4,
                row_stride: m as u64 * 4,
                batch_stride: (positions * m) as u64 * 4,
            },
            mxu,
            quant: None,
            online: None,
            a_rows: None,
        };
        kernels.extend(gemm_kernels(&spec, ctx.target, &|b| ctx.scratch(b))?);
    }
    // [n, positions, m] -> [n, m, positions]
    kernels.push(copies(
        &format!("{}.layout", node.name),
        "conv output to N, M, spatial",
        &[CopySpec {
            node: node.name.clone(),
            what: "conv output".into(),
            sizes: vec![n, m, positions],
            src: res as i64,
            src_strides: vec![(positions * m) as i64, 1, m as i64],
            dst: ctx.addr(id) as i64,
            dst_strides: dense_strides(&[n, m, positions]),
            esize: 4,
        }],
    ));
    let _ = c;
    Ok(kernels)
}

/// The MXU-typed copy of a right-hand matmul operand: prepared weights
/// for constants, else (bf16) a conversion kernel into scratch.
pub(super) fn mxu_operand(
    ctx: &Ctx,
    id: NodeId,
    b: NodeId,
    kernels: &mut Vec<Kernel>,
) -> Result<u64, LowerError> {
    let node = ctx.graph.node(id);
    let bn = ctx.graph.node(b);
    if let Some(w) = ctx.weights(b) {
        return Ok(w);
    }
    if ctx.precision == Precision::Fp32 {
        return Ok(ctx.addr(b));
    }
    let mxu = ctx.precision.mxu();
    let at = ctx.scratch(bn.ty.numel() as u64 * mxu.a_type().size());
    let spec = EwSpec {
        node: format!("{}.b_to_{}", node.name, mxu),
        operands: vec![EwOperand {
            addr: ctx.addr(b),
            shape: bn.ty.shape.clone(),
            dtype: DType::F32,
            strides: None,
        }],
        expr: Ew::Input(0),
        out: at,
        shape: bn.ty.shape.clone(),
        dtype: DType::BF16,
        cast_only: true,
        out_strides: None,
    };
    kernels.push(elementwise(&spec, ctx.target)?);
    Ok(at)
}

pub(super) fn gemm_op(
    ctx: &Ctx,
    id: NodeId,
    trans_b: bool,
    act: Option<Activation>,
    zero_points: Option<(Option<i32>, Option<i32>)>,
    out: Option<(DType, i32)>,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let a = ctx.graph.node(ops[0]);
    let b = ctx.graph.node(ops[1]);
    let eight_bit = ctx.weights_8bit(id).filter(|_| zero_points.is_none());
    let mxu = match (zero_points, eight_bit) {
        (Some(_), _) => integer_mxu(a.ty.dtype, b.ty.dtype)
            .ok_or_else(|| unsupported(ctx, id, "qgemm on operands other than u8/i8"))?,
        _ if a.ty.dtype != DType::F32 || b.ty.dtype != DType::F32 => {
            return Err(unsupported(ctx, id, "gemm on non-f32 operands"));
        }
        (None, Some((mxu, _, _))) => mxu,
        (None, None) => ctx.precision.mxu(),
    };
    let k = *a.ty.shape.last().unwrap_or(&1) as u64;
    let n = if trans_b {
        b.ty.shape[0]
    } else {
        *b.ty.shape.last().unwrap_or(&1)
    } as u64;
    // A batched qgemm's b is [..., K, N], one matrix per batch entry of a.
    let batch = b.ty.numel() as u64 / (k * n).max(1);
    let m = a.ty.numel() as u64 / k.max(1) / batch.max(1);
    let e = mxu.a_type().size();
    let mut kernels = Vec::new();
    // Integer weights are read as stored; 8-bit ones as quantized when
    // compiling; float ones in the MXU's type.
    let b_addr = match (zero_points, eight_bit) {
        (Some(_), _) => ctx.addr(ops[1]),
        (None, Some((_, data, _))) => data,
        (None, None) => mxu_operand(ctx, id, ops[1], &mut kernels)?,
    };
    // The operands after A and B: a qgemm's column scales, run-time zero
    // points and output scale; the bias.
    let (quant, bias_at) = match zero_points {
        Some((a_zp, b_zp)) => {
            let slots = crate::graph::qgemm_operands((a_zp, b_zp), out.is_some(), ops.len());
            let zero_point = |zp: Option<i32>, at: Option<usize>| match (zp, at) {
                (Some(z), _) => Ok(ZeroPoint::Const(z)),
                (None, Some(at)) => Ok(ZeroPoint::At(Affine::c(ctx.addr(ops[at]) as i64))),
                (None, None) => Err(unsupported(ctx, id, "qgemm without its zero point")),
            };
            let out = match (out, slots.out_scale) {
                (Some((t, zp)), Some(at)) => Some(Requantize {
                    dtype: crate::runtime_io::isa_dtype(t),
                    zp,
                    scale: ctx.addr(ops[at]),
                }),
                (None, _) => None,
                (Some(_), None) => {
                    return Err(unsupported(ctx, id, "qgemm without its output scale"))
                }
            };
            let quant = GemmQuant {
                a_zp: zero_point(a_zp, slots.a_zp)?,
                b_zp: zero_point(b_zp, slots.b_zp)?,
                scales: vector(ctx, id, ops[2])?,
                out,
            };
            (Some(quant), slots.bias)
        }
        None => (None, (ops.len() > 2).then_some(2)),
    };
    let bias = match bias_at {
        Some(at) => Some(vector(ctx, id, ops[at])?),
        None => None,
    };
    let out_size = quant
        .as_ref()
        .map_or(4, |q| if q.out.is_some() { 1 } else { 4 });
    let a_size = a.ty.dtype.size() as u64;
    let batched = batch > 1;
    let spec = GemmSpec {
        node: node.name.clone(),
        batch,
        m,
        k,
        n,
        a: DramMat {
            addr: ctx.addr(ops[0]),
            row_stride: k * a_size,
            batch_stride: if batched { m * k * a_size } else { 0 },
        },
        b: DramMat {
            addr: b_addr,
            row_stride: if trans_b { k * e } else { n * e },
            batch_stride: if batched { k * n * e } else { 0 },
        },
        b_trans: trans_b,
        bias,
        act: act.map(Activation::vpu_func),
        out: DramMat {
            addr: ctx.addr(id),
            row_stride: n * out_size,
            batch_stride: if batched { m * n * out_size } else { 0 },
        },
        mxu,
        quant,
        online: eight_bit.map(|(_, _, w_scales)| OnlineQuant { w_scales }),
        a_rows: None,
    };
    kernels.extend(gemm_kernels(&spec, ctx.target, &|b| ctx.scratch(b))?);
    Ok(kernels)
}

pub(super) fn attention_op(
    ctx: &Ctx,
    id: NodeId,
    scale: f32,
    causal: bool,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let q = &ctx.graph.node(ops[0]).ty;
    let k = &ctx.graph.node(ops[1]).ty;
    if [ops[0], ops[1], ops[2]]
        .iter()
        .any(|&o| ctx.graph.node(o).ty.dtype != DType::F32)
    {
        return Err(unsupported(ctx, id, "attention on non-f32 operands"));
    }
    let mask = match ops.get(3) {
        Some(&m) => {
            let mt = &ctx.graph.node(m).ty;
            if mt.dtype != DType::F32 {
                return Err(unsupported(ctx, id, "attention mask that is not f32"));
            }
            let full = [q.shape[0], q.shape[1], q.shape[2], k.shape[2]];
            let s = crate::lower::elementwise::broadcast_strides(&mt.shape, &full);
            Some(MaskSpec {
                addr: ctx.addr(m),
                strides: [s[0], s[1], s[2], s[3]],
            })
        }
        None => None,
    };
    let spec = AttentionSpec {
        node: node.name.clone(),
        b: q.shape[0] as u64,
        h: q.shape[1] as u64,
        hkv: k.shape[1] as u64,
        sq: q.shape[2] as u64,
        sk: k.shape[2] as u64,
        d: q.shape[3] as u64,
        q: ctx.view4(ops[0]),
        k: ctx.view4(ops[1]),
        v: ctx.view4(ops[2]),
        mask,
        scale,
        causal,
        out: ctx.out_view4(id),
        mxu: ctx.precision.mxu(),
    };
    Ok(vec![attention(&spec, ctx.target)?])
}

pub(super) fn matmul(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let (a, b) = (ctx.graph.node(ops[0]), ctx.graph.node(ops[1]));
    if a.ty.dtype != DType::F32 || b.ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "matmul on non-f32 operands"));
    }
    let mxu = ctx.precision.mxu();
    let e = mxu.a_type().size();
    let a_shape = &a.ty.shape;
    let b_shape = &b.ty.shape;
    let k = *a_shape.last().unwrap_or(&1) as u64;
    let (m_rows, a_batch_dims): (u64, &[usize]) = if a_shape.len() >= 2 {
        (
            a_shape[a_shape.len() - 2] as u64,
            &a_shape[..a_shape.len() - 2],
        )
    } else {
        (1, &[])
    };
    let n = if b_shape.len() >= 2 {
        *b_shape.last().unwrap_or(&1) as u64
    } else {
        1
    };
    let b_batch_dims: &[usize] = if b_shape.len() > 2 {
        &b_shape[..b_shape.len() - 2]
    } else {
        &[]
    };
    let a_batch: u64 = a_batch_dims.iter().product::<usize>() as u64;
    let b_batch: u64 = b_batch_dims.iter().product::<usize>() as u64;
    let mut kernels = Vec::new();
    // B in the MXU type.
    let b_addr = match ctx.weights(ops[1]) {
        Some(w) => w,
        None if ctx.precision == Precision::Fp32 => ctx.addr(ops[1]),
        None => {
            let bytes = b.ty.numel() as u64 * e;
            let at = ctx.scratch(bytes);
            let spec = EwSpec {
                node: format!("{}.b_to_{}", node.name, mxu),
                operands: vec![EwOperand {
                    addr: ctx.addr(ops[1]),
                    shape: b_shape.clone(),
                    dtype: DType::F32,
                    strides: None,
                }],
                expr: Ew::Input(0),
                out: at,
                shape: b_shape.clone(),
                dtype: DType::BF16,
                cast_only: true,
                out_strides: None,
            };
            kernels.push(elementwise(&spec, ctx.target)?);
            at
        }
    };
    let (batch, m, a_bs, b_bs) = if b_batch <= 1 {
        // Shared weights: fold a's batch into its rows.
        (1, a_batch.max(1) * m_rows, 0, 0)
    } else if a_batch == b_batch && a_batch_dims == b_batch_dims {
        (a_batch, m_rows, m_rows * k * 4, k * n * e)
    } else if a_batch <= 1 {
        (b_batch, m_rows, 0, k * n * e)
    } else {
        (0, m_rows, m_rows * k * 4, k * n * e)
    };
    let (batch, a_addr, b_addr) = if batch > 0 {
        (batch, ctx.addr(ops[0]), b_addr)
    } else {
        // Batch dimensions broadcasting both ways ([3, 1] x [1, 2]):
        // both operands are expanded to the result's batch shape first.
        let out_shape = &node.ty.shape;
        let out_batch = &out_shape[..out_shape.len() - 2];
        let mut copies_spec = Vec::new();
        let mut expand = |what: &str, src: u64, shape: &[usize], rows: usize, cols: usize, es| {
            let full: Vec<usize> = out_batch.iter().copied().chain([rows, cols]).collect();
            let bytes = full.iter().product::<usize>() as u64 * es;
            let at = ctx.scratch(bytes);
            copies_spec.push(CopySpec {
                node: node.name.clone(),
                what: format!("matmul: broadcast {what} to the batch"),
                src_strides: crate::lower::elementwise::broadcast_strides(shape, &full),
                dst_strides: dense_strides(&full),
                sizes: full,
                src: src as i64,
                dst: at as i64,
                esize: es,
            });
            at
        };
        let a_at = expand(
            "A",
            ctx.addr(ops[0]),
            a_shape,
            m_rows as usize,
            k as usize,
            4,
        );
        let b_at = expand("B", b_addr, b_shape, k as usize, n as usize, e);
        kernels.push(copies(
            &format!("{}.broadcast", node.name),
            "broadcast operands to the batch",
            &copies_spec,
        ));
        (out_batch.iter().product::<usize>() as u64, a_at, b_at)
    };
    let a = DramMat {
        addr: a_addr,
        row_stride: k * 4,
        batch_stride: a_bs,
    };
    let b = DramMat {
        addr: b_addr,
        row_stride: n * e,
        batch_stride: b_bs,
    };
    let spec = plain_gemm(ctx, id, [batch, m, k, n], a, b, None);
    kernels.extend(gemm_kernels(&spec, ctx.target, &|b| ctx.scratch(b))?);
    Ok(kernels)
}

/// The GEMM of a matmul node `id` (`[batch, m, k, n]`, no bias, no
/// activation, f32 result dense at the node), A rows gathered or not.
fn plain_gemm(
    ctx: &Ctx,
    id: NodeId,
    [batch, m, k, n]: [u64; 4],
    a: DramMat,
    b: DramMat,
    a_rows: Option<RowGather>,
) -> GemmSpec {
    GemmSpec {
        node: ctx.graph.node(id).name.clone(),
        batch,
        m,
        k,
        n,
        a,
        b,
        b_trans: false,
        bias: None,
        act: None,
        out: DramMat {
            addr: ctx.addr(id),
            row_stride: n * 4,
            batch_stride: m * n * 4,
        },
        mxu: ctx.precision.mxu(),
        quant: None,
        online: None,
        a_rows,
    }
}

/// `gather_matmul`: a batched GEMM whose A rows come from the prepared
/// (MXU-typed) table by `dma.gather` (see [`RowGather`]).
pub(super) fn gather_matmul(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let ops = ctx.graph.operands(id);
    let (table, rows, x) = (
        ctx.graph.node(ops[0]),
        ctx.graph.node(ops[1]),
        ctx.graph.node(ops[2]),
    );
    if table.ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "gather_matmul on a non-f32 table"));
    }
    let table_at = match ctx.weights(ops[0]) {
        Some(w) => w,
        None if ctx.precision == Precision::Fp32 => ctx.addr(ops[0]),
        None => {
            return Err(unsupported(
                ctx,
                id,
                "gather_matmul of a table that is not a constant (below fp32 it is \
                 prepared in the MXU's type when compiling)",
            ))
        }
    };
    let itype = match rows.ty.dtype {
        DType::I64 => IdxType::I64,
        DType::I32 => IdxType::I32,
        other => {
            return Err(unsupported(
                ctx,
                id,
                format!("gather_matmul rows of {other}"),
            ))
        }
    };
    let mxu = ctx.precision.mxu();
    let e = mxu.a_type().size();
    let (limit, k) = (table.ty.shape[0] as u64, table.ty.shape[1] as u64);
    let (batch, m) = (rows.ty.shape[0] as u64, rows.ty.shape[1] as u64);
    let n = x.ty.shape[2] as u64;
    let mut kernels = Vec::new();
    let x_at = mxu_operand(ctx, id, ops[2], &mut kernels)?;
    let table = DramMat {
        addr: table_at,
        row_stride: k * e,
        batch_stride: 0,
    };
    let operand = DramMat {
        addr: x_at,
        row_stride: n * e,
        batch_stride: k * n * e,
    };
    let rows = RowGather {
        indices: ctx.addr(ops[1]),
        itype,
        limit,
    };
    let spec = plain_gemm(ctx, id, [batch, m, k, n], table, operand, Some(rows));
    kernels.extend(gemm_kernels(&spec, ctx.target, &|b| ctx.scratch(b))?);
    Ok(kernels)
}
