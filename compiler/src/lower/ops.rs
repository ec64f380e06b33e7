//! Dispatch: which kernel template implements each Graph IR op, and the
//! translation of its operands and attributes into the template's spec.

use tessera_isa::{BinFunc, UnFunc};

use crate::graph::{BinaryOp, GeluApprox, NodeId, Op, UnaryOp};
use crate::kernel::Kernel;
use crate::tensor::DType;

use super::attention::{attention, AttentionSpec, MaskSpec};
use super::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use super::gather::{gather, static_gather, GatherSpec};
use super::gemm::{gemm, DramMat, GemmSpec};
use super::movement::{copies, dense_strides, CopySpec};
use super::rowwise::{rowwise, ReduceFn, RowOp, RowSpec, RowView};
use super::{Ctx, LowerError, Precision};
use crate::graph::ReduceKind;

fn unsupported(ctx: &Ctx, id: NodeId, message: impl Into<String>) -> LowerError {
    LowerError::Unsupported {
        node: ctx.graph.node(id).name.clone(),
        message: message.into(),
    }
}

fn unary_func(op: UnaryOp) -> UnFunc {
    match op {
        UnaryOp::Neg => UnFunc::Neg,
        UnaryOp::Abs => UnFunc::Abs,
        UnaryOp::Sqrt => UnFunc::Sqrt,
        UnaryOp::Reciprocal => UnFunc::Recip,
        UnaryOp::Exp => UnFunc::Exp,
        UnaryOp::Log => UnFunc::Log,
        UnaryOp::Tanh => UnFunc::Tanh,
        UnaryOp::Erf => UnFunc::Erf,
        UnaryOp::Sigmoid => UnFunc::Sigmoid,
        UnaryOp::Relu => UnFunc::Relu,
        UnaryOp::Cos => UnFunc::Cos,
        UnaryOp::Sin => UnFunc::Sin,
        UnaryOp::Not => UnFunc::Not,
        UnaryOp::Silu => UnFunc::Silu,
    }
}

fn binary_func(op: BinaryOp) -> BinFunc {
    match op {
        BinaryOp::Add => BinFunc::Add,
        BinaryOp::Sub => BinFunc::Sub,
        BinaryOp::Mul => BinFunc::Mul,
        BinaryOp::Div => BinFunc::Div,
        BinaryOp::Pow => BinFunc::Pow,
        BinaryOp::Min => BinFunc::Min,
        BinaryOp::Max => BinFunc::Max,
        BinaryOp::Equal => BinFunc::Eq,
        BinaryOp::Less => BinFunc::Lt,
        BinaryOp::LessOrEqual => BinFunc::Le,
        BinaryOp::Greater => BinFunc::Gt,
        BinaryOp::GreaterOrEqual => BinFunc::Ge,
        BinaryOp::And => BinFunc::And,
        BinaryOp::Or => BinFunc::Or,
    }
}

/// An elementwise operand; scalar constants become immediates.
fn ew_leaf(ctx: &Ctx, id: NodeId, operands: &mut Vec<EwOperand>) -> Ew {
    if let Some(t) = ctx.constant(id) {
        if t.numel() == 1 && t.dtype().is_float() {
            return Ew::Scalar(t.to_f32_vec()[0]);
        }
    }
    let node = ctx.graph.node(id);
    operands.push(EwOperand {
        addr: ctx.addr(id),
        shape: node.ty.shape.clone(),
        dtype: node.ty.dtype,
        strides: None,
    });
    Ew::Input(operands.len() - 1)
}

fn ew_kernel(
    ctx: &Ctx,
    id: NodeId,
    expr: Ew,
    operands: Vec<EwOperand>,
    cast_only: bool,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let spec = EwSpec {
        node: node.name.clone(),
        operands,
        expr,
        out: ctx.addr(id),
        shape: node.ty.shape.clone(),
        dtype: node.ty.dtype,
        cast_only,
        out_strides: None,
    };
    Ok(vec![elementwise(&spec, ctx.target)?])
}

/// Kernels for one node (none for inputs, constants and reshapes).
pub fn lower_node(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    match &node.op {
        Op::Input | Op::Constant(_) | Op::Reshape { .. } => Ok(vec![]),
        Op::Unary(u) => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            ew_kernel(
                ctx,
                id,
                Ew::Unary(unary_func(*u), Box::new(a)),
                operands,
                false,
            )
        }
        Op::Gelu { approximate } => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            let f = match approximate {
                GeluApprox::None => UnFunc::Gelu,
                GeluApprox::Tanh => UnFunc::GeluTanh,
            };
            ew_kernel(ctx, id, Ew::Unary(f, Box::new(a)), operands, false)
        }
        Op::Binary(b) => {
            let mut operands = Vec::new();
            let a = ew_leaf(ctx, ops[0], &mut operands);
            let c = ew_leaf(ctx, ops[1], &mut operands);
            if matches!((&a, &c), (Ew::Scalar(_), Ew::Scalar(_))) {
                return Err(unsupported(
                    ctx,
                    id,
                    "binary op of two constants (should have been folded)",
                ));
            }
            ew_kernel(
                ctx,
                id,
                Ew::Binary(binary_func(*b), Box::new(a), Box::new(c)),
                operands,
                false,
            )
        }
        Op::Where => {
            let mut operands = Vec::new();
            let c = ew_leaf(ctx, ops[0], &mut operands);
            let a = ew_leaf(ctx, ops[1], &mut operands);
            let b = ew_leaf(ctx, ops[2], &mut operands);
            ew_kernel(
                ctx,
                id,
                Ew::Select(Box::new(c), Box::new(a), Box::new(b)),
                operands,
                false,
            )
        }
        Op::Cast { .. } => {
            let src = ctx.graph.node(ops[0]);
            let operands = vec![EwOperand {
                addr: ctx.addr(ops[0]),
                shape: src.ty.shape.clone(),
                dtype: src.ty.dtype,
                strides: None,
            }];
            ew_kernel(ctx, id, Ew::Input(0), operands, true)
        }
        Op::MatMul => matmul(ctx, id),
        Op::Softmax { axis } => {
            let x = ctx.graph.node(ops[0]);
            row_kernel(
                ctx,
                id,
                RowOp::Softmax,
                RowView::of(&x.ty.shape, *axis, false),
            )
        }
        Op::LayerNorm { axis, epsilon } => {
            let x = ctx.graph.node(ops[0]);
            let op = RowOp::LayerNorm {
                epsilon: *epsilon,
                scale: vector(ctx, id, ops[1])?,
                bias: match ops.get(2) {
                    Some(&b) => Some(vector(ctx, id, b)?),
                    None => None,
                },
            };
            row_kernel(ctx, id, op, RowView::of(&x.ty.shape, *axis, true))
        }
        Op::RmsNorm { axis, epsilon } => {
            let x = ctx.graph.node(ops[0]);
            let op = RowOp::RmsNorm {
                epsilon: *epsilon,
                scale: vector(ctx, id, ops[1])?,
            };
            row_kernel(ctx, id, op, RowView::of(&x.ty.shape, *axis, true))
        }
        Op::Reduce { kind, axes, .. } => reduce(ctx, id, *kind, axes),
        Op::Transpose { perm } => {
            let x = ctx.graph.node(ops[0]);
            let src = dense_strides(&x.ty.shape);
            let spec = copy_spec(
                ctx,
                id,
                "transpose",
                perm.iter().map(|&p| src[p]).collect(),
                ctx.addr(ops[0]) as i64,
            );
            Ok(vec![copies(
                &node.name,
                &format!("transpose {perm:?} of {:?}", x.ty.shape),
                &[spec],
                ctx.target,
            )])
        }
        Op::Slice { starts, steps, .. } => {
            let x = ctx.graph.node(ops[0]);
            let src = dense_strides(&x.ty.shape);
            let es = node.ty.dtype.size() as i64;
            let offset: i64 = starts
                .iter()
                .zip(&src)
                .map(|(s, st)| s.max(&0) * st)
                .sum::<i64>()
                * es;
            let strides = steps.iter().zip(&src).map(|(k, st)| k * st).collect();
            let spec = copy_spec(ctx, id, "slice", strides, ctx.addr(ops[0]) as i64 + offset);
            Ok(vec![copies(
                &node.name,
                &format!("slice of {:?}", x.ty.shape),
                &[spec],
                ctx.target,
            )])
        }
        Op::Expand { .. } => {
            let x = ctx.graph.node(ops[0]);
            let r = node.ty.shape.len();
            let offset = r - x.ty.shape.len();
            let dense = dense_strides(&x.ty.shape);
            let strides = (0..r)
                .map(|d| {
                    if d < offset || x.ty.shape[d - offset] == 1 {
                        0
                    } else {
                        dense[d - offset]
                    }
                })
                .collect();
            let spec = copy_spec(ctx, id, "expand", strides, ctx.addr(ops[0]) as i64);
            Ok(vec![copies(
                &node.name,
                &format!("expand {:?} -> {:?}", x.ty.shape, node.ty.shape),
                &[spec],
                ctx.target,
            )])
        }
        Op::Concat { axis } => {
            let es = node.ty.dtype.size() as i64;
            let out_strides = dense_strides(&node.ty.shape);
            let mut offset = 0i64;
            let mut specs = Vec::new();
            for &op in &ops {
                let x = ctx.graph.node(op);
                specs.push(CopySpec {
                    node: node.name.clone(),
                    what: "concat".into(),
                    sizes: x.ty.shape.clone(),
                    src: ctx.addr(op) as i64,
                    src_strides: dense_strides(&x.ty.shape),
                    dst: ctx.addr(id) as i64 + offset * out_strides[*axis] * es,
                    dst_strides: out_strides.clone(),
                    esize: es as u64,
                });
                offset += x.ty.shape[*axis] as i64;
            }
            Ok(vec![copies(
                &node.name,
                &format!("concat of {} along axis {axis}", ops.len()),
                &specs,
                ctx.target,
            )])
        }
        Op::Gather { axis } => {
            let data = ctx.graph.node(ops[0]);
            let indices = ctx.graph.node(ops[1]);
            let itype = match indices.ty.dtype {
                DType::I64 => tessera_isa::IdxType::I64,
                DType::I32 => tessera_isa::IdxType::I32,
                other => {
                    return Err(unsupported(
                        ctx,
                        id,
                        format!("gather indices of type {}", other.name()),
                    ))
                }
            };
            let shape = &data.ty.shape;
            let es = data.ty.dtype.size() as u64;
            let spec = GatherSpec {
                node: node.name.clone(),
                data: ctx.addr(ops[0]),
                outer: shape[..*axis].iter().product::<usize>() as u64,
                rows: shape[*axis] as u64,
                row_bytes: shape[axis + 1..].iter().product::<usize>() as u64 * es,
                indices: ctx.addr(ops[1]),
                count: indices.ty.numel() as u64,
                idx_outer_stride: 0,
                itype,
                out: ctx.addr(id),
            };
            if spec.count == 0 || spec.row_bytes == 0 {
                return Ok(vec![]);
            }
            Ok(vec![gather(&spec, ctx.target)?])
        }
        Op::GatherNd { batch_dims } => gather_nd(ctx, id, *batch_dims),
        Op::GatherElements { axis } => gather_elements(ctx, id, *axis),
        Op::Trilu { upper, k } => trilu(ctx, id, *upper, *k),
        Op::Gemm { trans_b, act } => gemm_op(ctx, id, *trans_b, *act),
        Op::Attention { scale, causal } => attention_op(ctx, id, *scale, *causal),
        Op::Rope => rope(ctx, id),
        Op::Conv(attrs) => conv(ctx, id, attrs),
    }
}

/// Convolution as im2col (a strided DMA copy, after zero padding) and a
/// GEMM against the weights viewed as `[M, C/g · kernel]` (B transposed),
/// then a copy into `N, M, spatial` order.
fn conv(ctx: &Ctx, id: NodeId, attrs: &crate::graph::ConvAttrs) -> Result<Vec<Kernel>, LowerError> {
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
        kernels.push(super::movement::zero_fill(
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
            ctx.target,
        ));
        (at, shape)
    } else {
        (ctx.addr(ops[0]), xs.clone())
    };
    let xstr = dense_strides(&xp_shape);
    // im2col: cols[n][g][pos][c, k...]
    let cols_bytes = (n * group * positions * kdim) as u64 * 4;
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
        ctx.target,
    ));
    // The GEMM per group: [positions, kdim] x [mg, kdim]^T (+ bias).
    let mxu = ctx.precision.mxu();
    let e = mxu.dtype().size();
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
        };
        kernels.push(gemm(&spec, ctx.target)?);
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
        ctx.target,
    ));
    let _ = c;
    Ok(kernels)
}

/// The MXU-typed copy of a right-hand matmul operand: prepared weights
/// for constants, else (bf16) a conversion kernel into scratch.
fn mxu_operand(
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
    let at = ctx.scratch(bn.ty.numel() as u64 * mxu.dtype().size());
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

fn gemm_op(
    ctx: &Ctx,
    id: NodeId,
    trans_b: bool,
    act: Option<crate::graph::op::Activation>,
) -> Result<Vec<Kernel>, LowerError> {
    use crate::graph::op::Activation;
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let a = ctx.graph.node(ops[0]);
    let b = ctx.graph.node(ops[1]);
    if a.ty.dtype != DType::F32 || b.ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "gemm on non-f32 operands"));
    }
    let k = *a.ty.shape.last().unwrap_or(&1) as u64;
    let m = a.ty.numel() as u64 / k.max(1);
    let n = if trans_b {
        b.ty.shape[0]
    } else {
        b.ty.shape[1]
    } as u64;
    let mxu = ctx.precision.mxu();
    let e = mxu.dtype().size();
    let mut kernels = Vec::new();
    let b_addr = mxu_operand(ctx, id, ops[1], &mut kernels)?;
    let bias = match ops.get(2) {
        Some(&bias) => Some(vector(ctx, id, bias)?),
        None => None,
    };
    let spec = GemmSpec {
        node: node.name.clone(),
        batch: 1,
        m,
        k,
        n,
        a: DramMat {
            addr: ctx.addr(ops[0]),
            row_stride: k * 4,
            batch_stride: 0,
        },
        b: DramMat {
            addr: b_addr,
            row_stride: if trans_b { k * e } else { n * e },
            batch_stride: 0,
        },
        b_trans: trans_b,
        bias,
        act: act.map(|a| match a {
            Activation::Relu => UnFunc::Relu,
            Activation::Gelu => UnFunc::Gelu,
            Activation::GeluTanh => UnFunc::GeluTanh,
            Activation::Silu => UnFunc::Silu,
        }),
        out: DramMat {
            addr: ctx.addr(id),
            row_stride: n * 4,
            batch_stride: 0,
        },
        mxu,
    };
    kernels.push(gemm(&spec, ctx.target)?);
    Ok(kernels)
}

fn attention_op(
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
            let s = super::elementwise::broadcast_strides(&mt.shape, &full);
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

/// Rotary embedding as two elementwise kernels over the halves of each row:
/// `out[:h] = x1·cos[:h] − x2·sin[:h]`, `out[h:] = x2·cos[h:] + x1·sin[h:]`.
fn rope(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let shape = node.ty.shape.clone();
    let r = shape.len();
    let dmodel = shape[r - 1];
    if dmodel % 2 != 0
        || ops
            .iter()
            .any(|&o| ctx.graph.node(o).ty.dtype != DType::F32)
    {
        return Err(unsupported(
            ctx,
            id,
            "rope needs f32 operands with an even last dimension",
        ));
    }
    let h = dmodel / 2;
    let mut half = shape.clone();
    half[r - 1] = h;
    let view = |op: NodeId, offset: usize| -> EwOperand {
        let t = &ctx.graph.node(op).ty;
        let mut strides = super::elementwise::broadcast_strides(&t.shape, &shape);
        strides[r - 1] = if t.shape.last().copied().unwrap_or(1) == 1 {
            0
        } else {
            1
        };
        let off = if strides[r - 1] == 0 { 0 } else { offset };
        EwOperand {
            addr: ctx.addr(op) + off as u64 * 4,
            shape: half.clone(),
            dtype: DType::F32,
            strides: Some(strides),
        }
    };
    let out_strides = dense_strides(&shape);
    let mut kernels = Vec::new();
    for (part, first) in [(0usize, true), (1, false)] {
        let (x_here, x_other) = if first {
            (view(ops[0], 0), view(ops[0], h))
        } else {
            (view(ops[0], h), view(ops[0], 0))
        };
        let off = part * h;
        let operands = vec![x_here, x_other, view(ops[1], off), view(ops[2], off)];
        // first half: x1·cos − x2·sin; second half: x2·cos + x1·sin.
        let prod = |a, b| Ew::Binary(BinFunc::Mul, Box::new(Ew::Input(a)), Box::new(Ew::Input(b)));
        let expr = Ew::Binary(
            if first { BinFunc::Sub } else { BinFunc::Add },
            Box::new(prod(0, 2)),
            Box::new(prod(1, 3)),
        );
        let spec = EwSpec {
            node: format!("{}.{}", node.name, if first { "lo" } else { "hi" }),
            operands,
            expr,
            out: ctx.addr(id) + off as u64 * 4,
            shape: half.clone(),
            dtype: DType::F32,
            cast_only: false,
            out_strides: Some(out_strides.clone()),
        };
        kernels.push(elementwise(&spec, ctx.target)?);
    }
    Ok(kernels)
}

/// GatherElements: with the gathered axis moved last (by copies when it
/// is not), each row of indices selects single elements of the matching
/// data row — a `dma.gather` of one-element rows per row.
fn gather_elements(ctx: &Ctx, id: NodeId, axis: usize) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let data = &ctx.graph.node(ops[0]).ty;
    let idx = &ctx.graph.node(ops[1]).ty;
    let r = data.shape.len();
    let itype = match idx.dtype {
        DType::I64 => tessera_isa::IdxType::I64,
        DType::I32 => tessera_isa::IdxType::I32,
        other => {
            return Err(unsupported(
                ctx,
                id,
                format!("gather_elements indices of type {}", other.name()),
            ))
        }
    };
    if (0..r).any(|d| d != axis && data.shape[d] != idx.shape[d]) {
        return Err(unsupported(
            ctx,
            id,
            "gather_elements with indices smaller than the data outside the axis",
        ));
    }
    if idx.numel() == 0 {
        return Ok(vec![]);
    }
    let es = data.dtype.size() as u64;
    let isz = idx.dtype.size() as u64;
    let perm: Vec<usize> = (0..r).filter(|&d| d != axis).chain([axis]).collect();
    let mut kernels = Vec::new();
    let mut to_last = |addr: u64, shape: &[usize], esize: u64, what: &str| -> u64 {
        if axis + 1 == r {
            return addr;
        }
        let permuted: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
        let at = ctx.scratch(shape.iter().product::<usize>() as u64 * esize);
        let dense = dense_strides(shape);
        kernels.push(copies(
            &format!("{}.{what}", node.name),
            "move the gathered axis last",
            &[CopySpec {
                node: node.name.clone(),
                what: what.into(),
                sizes: permuted.clone(),
                src: addr as i64,
                src_strides: perm.iter().map(|&p| dense[p]).collect(),
                dst: at as i64,
                dst_strides: dense_strides(&permuted),
                esize,
            }],
            ctx.target,
        ));
        at
    };
    let d_addr = to_last(ctx.addr(ops[0]), &data.shape, es, "data");
    let i_addr = to_last(ctx.addr(ops[1]), &idx.shape, isz, "indices");
    let out_last = if axis + 1 == r {
        ctx.addr(id)
    } else {
        ctx.scratch(idx.numel() as u64 * es)
    };
    let c_in = data.shape[axis] as u64;
    let c_out = idx.shape[axis] as u64;
    let spec = GatherSpec {
        node: node.name.clone(),
        data: d_addr,
        outer: idx.numel() as u64 / c_out.max(1),
        rows: c_in,
        row_bytes: es,
        indices: i_addr,
        count: c_out,
        idx_outer_stride: c_out * isz,
        itype,
        out: out_last,
    };
    kernels.push(gather(&spec, ctx.target)?);
    if axis + 1 != r {
        let permuted: Vec<usize> = perm.iter().map(|&p| idx.shape[p]).collect();
        let pd = dense_strides(&permuted);
        // out[i] = permuted[perm^-1(i)]
        let mut src_strides = vec![0i64; r];
        for (j, &p) in perm.iter().enumerate() {
            src_strides[p] = pd[j];
        }
        kernels.push(copies(
            &format!("{}.out", node.name),
            "move the gathered axis back",
            &[CopySpec {
                node: node.name.clone(),
                what: "gather_elements output".into(),
                sizes: idx.shape.clone(),
                src: out_last as i64,
                src_strides,
                dst: ctx.addr(id) as i64,
                dst_strides: dense_strides(&idx.shape),
                esize: es,
            }],
            ctx.target,
        ));
    }
    Ok(kernels)
}

/// Trilu: copy, then zero the excluded part of every row with DMA copies
/// from a zeroed SPM buffer. Row `i` keeps columns `j >= i + k` (upper) or
/// `j <= i + k` (lower).
fn trilu(ctx: &Ctx, id: NodeId, upper: bool, k: i64) -> Result<Vec<Kernel>, LowerError> {
    use crate::kernel::{Addr, Affine, Chan, Ext, Stmt, VpuStmt};
    use tessera_isa::{Engine, Mem};
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let shape = &node.ty.shape;
    let r = shape.len();
    if r < 2 || node.ty.numel() == 0 {
        return copy_to_node(ctx, id, ops[0]);
    }
    let (rows, cols) = (shape[r - 2] as i64, shape[r - 1] as i64);
    let mats = (node.ty.numel() as i64) / (rows * cols);
    let es = node.ty.dtype.size() as i64;
    let mut kernels = copy_to_node(ctx, id, ops[0])?;
    let mut mem = super::alloc::OnChip::new(ctx.target);
    let zeros = mem.alloc("zeros", Mem::Spm, (cols * es) as u64, 1)?;
    let mut vars = super::alloc::Vars::default();
    let (vm, vr) = (vars.fresh(), vars.fresh());
    let out = ctx.addr(id) as i64;
    // Rows in [lo, hi) with the zeroed range [start(i), end(i)) of columns.
    let mut ranges: Vec<(i64, i64, Affine, Ext)> = Vec::new();
    let row_i = |lo: i64| Affine::var(lo, vr, 1);
    if upper {
        // zero [0, clamp(i + k, 0, cols))
        let lo = (-k).clamp(0, rows);
        let count = Ext::Tail {
            tile: cols as u64,
            limit: 0,
            start: Affine::var(-k - lo, vr, -1),
        };
        ranges.push((lo, rows, Affine::c(0), count));
    } else {
        // rows with i + k + 1 <= 0: all columns; rows with 0 < i + k + 1 < cols: [i + k + 1, cols)
        let full_hi = (-k - 1 + 1).clamp(0, rows);
        if full_hi > 0 {
            ranges.push((0, full_hi, Affine::c(0), Ext::Const(cols as u64)));
        }
        let part_hi = (cols - k - 1).clamp(full_hi, rows);
        if part_hi > full_hi {
            let start = Affine::var(full_hi + k + 1, vr, 1);
            let count = Ext::Tail {
                tile: cols as u64,
                limit: cols,
                start: start.clone(),
            };
            ranges.push((full_hi, part_hi, start, count));
        }
    }
    let mut body = vec![
        Stmt::Vpu(VpuStmt::Fill {
            dst: zeros.at(&Affine::c(0), 0),
            dstride: 0,
            bits: 0,
            rows: Ext::Const(1),
            cols: Ext::Const(((cols * es + 3) / 4) as u64),
        }),
        Stmt::Signal(Chan::data(Engine::Vpu, Engine::Dma), 1),
        Stmt::Wait(Chan::data(Engine::Vpu, Engine::Dma), 1),
    ];
    let mut loops = Vec::new();
    for (lo, hi, start_col, count) in ranges {
        let dst = Affine::var(out + lo * cols * es, vm, rows * cols * es)
            .plus(vr, cols * es)
            .plus_affine(&Affine {
                constant: start_col.constant * es,
                terms: start_col.terms.iter().map(|&(v, c)| (v, c * es)).collect(),
            });
        let _ = row_i;
        loops.push(Stmt::For {
            var: vr,
            count: (hi - lo) as u64,
            body: vec![Stmt::Copy {
                dst: Addr::new(Mem::Dram, dst),
                src: zeros.at(&Affine::c(0), 0),
                run: count.scaled(es as u64),
                dims: vec![],
            }],
        });
    }
    body.push(Stmt::For {
        var: vm,
        count: mats as u64,
        body: loops,
    });
    kernels.push(Kernel {
        node: node.name.clone(),
        summary: format!(
            "trilu {} k={k}: zero the excluded part of {mats} x {rows} rows",
            if upper { "upper" } else { "lower" }
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![],
        macs: 0,
        compulsory_dram_bytes: node.ty.numel() as u64 * es as u64,
    });
    Ok(kernels)
}

/// GatherND with compile-time indices: one static copy per index tuple.
fn gather_nd(ctx: &Ctx, id: NodeId, batch_dims: usize) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let data = ctx.graph.node(ops[0]);
    let Some(indices) = ctx.constant(ops[1]) else {
        return Err(unsupported(
            ctx,
            id,
            "gather_nd with indices computed at run time",
        ));
    };
    if batch_dims != 0 {
        return Err(unsupported(ctx, id, "gather_nd with batch_dims > 0"));
    }
    let idx = indices.to_i64_vec();
    let ishape = indices.shape();
    let q = *ishape.last().unwrap_or(&0);
    let dshape = &data.ty.shape;
    if q == 0 || q > dshape.len() {
        return Err(unsupported(ctx, id, "gather_nd index tuple length"));
    }
    let es = data.ty.dtype.size() as i64;
    let slice: i64 = dshape[q..].iter().product::<usize>() as i64;
    let dense = dense_strides(dshape);
    let tuples = idx.len() / q;
    if tuples > 4096 {
        return Err(unsupported(
            ctx,
            id,
            format!("gather_nd selecting {tuples} slices (static copies limited to 4096)"),
        ));
    }
    let mut slices = Vec::with_capacity(tuples);
    for t in 0..tuples {
        let mut offset = 0i64;
        for d in 0..q {
            let mut i = idx[t * q + d];
            if i < 0 {
                i += dshape[d] as i64;
            }
            if i < 0 || i >= dshape[d] as i64 {
                return Err(unsupported(
                    ctx,
                    id,
                    format!("gather_nd index {i} out of range for dimension {d}"),
                ));
            }
            offset += i * dense[d];
        }
        slices.push((
            ctx.addr(ops[0]) as i64 + offset * es,
            ctx.addr(id) as i64 + t as i64 * slice * es,
        ));
    }
    Ok(vec![static_gather(
        &node.name,
        "gather_nd",
        &slices,
        (slice * es) as u64,
        ctx.target,
    )])
}

/// A copy producing node `id` (dense) from a strided source.
fn copy_spec(ctx: &Ctx, id: NodeId, what: &str, src_strides: Vec<i64>, src: i64) -> CopySpec {
    let node = ctx.graph.node(id);
    CopySpec {
        node: node.name.clone(),
        what: what.into(),
        sizes: node.ty.shape.clone(),
        src,
        src_strides,
        dst: ctx.addr(id) as i64,
        dst_strides: dense_strides(&node.ty.shape),
        esize: node.ty.dtype.size() as u64,
    }
}

/// The DRAM address of an f32 vector operand (scale, bias).
fn vector(ctx: &Ctx, id: NodeId, op: NodeId) -> Result<u64, LowerError> {
    if ctx.graph.node(op).ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "scale and bias must be f32"));
    }
    Ok(ctx.addr(op))
}

fn row_kernel(ctx: &Ctx, id: NodeId, op: RowOp, view: RowView) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let x = ctx.graph.operands(id)[0];
    let spec = RowSpec {
        node: node.name.clone(),
        op,
        input: (ctx.addr(x), ctx.graph.node(x).ty.dtype),
        view,
        output: (ctx.addr(id), node.ty.dtype),
    };
    Ok(vec![rowwise(&spec, ctx.target)?])
}

fn reduce(
    ctx: &Ctx,
    id: NodeId,
    kind: ReduceKind,
    axes: &[usize],
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let x_id = ctx.graph.operands(id)[0];
    let x = ctx.graph.node(x_id);
    let f = match kind {
        ReduceKind::Sum => ReduceFn::Sum,
        ReduceKind::Mean => ReduceFn::Mean,
        ReduceKind::Max => ReduceFn::Max,
    };
    let shape = &x.ty.shape;
    if axes.is_empty() {
        return copy_to_node(ctx, id, x_id);
    }
    let contiguous = axes.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous {
        let view = RowView::block(shape, axes[0], axes[axes.len() - 1]);
        let spec = RowSpec {
            node: node.name.clone(),
            op: RowOp::Reduce(f),
            input: (ctx.addr(x_id), x.ty.dtype),
            view,
            output: (ctx.addr(id), node.ty.dtype),
        };
        return Ok(vec![rowwise(&spec, ctx.target)?]);
    }
    // Move the reduced axes last, then reduce the trailing block.
    let kept: Vec<usize> = (0..shape.len()).filter(|d| !axes.contains(d)).collect();
    let perm: Vec<usize> = kept.iter().chain(axes.iter()).copied().collect();
    let permuted: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let es = x.ty.dtype.size() as u64;
    let scratch = ctx.scratch(x.ty.numel() as u64 * es);
    let dense = dense_strides(shape);
    let spec = CopySpec {
        node: node.name.clone(),
        what: "reduce: move reduced axes last".into(),
        sizes: permuted.clone(),
        src: ctx.addr(x_id) as i64,
        src_strides: perm.iter().map(|&p| dense[p]).collect(),
        dst: scratch as i64,
        dst_strides: dense_strides(&permuted),
        esize: es,
    };
    let mut kernels = vec![copies(
        &format!("{}.transpose", node.name),
        "move reduced axes last",
        &[spec],
        ctx.target,
    )];
    let view = RowView::of(&permuted, kept.len(), true);
    let row = RowSpec {
        node: node.name.clone(),
        op: RowOp::Reduce(f),
        input: (scratch, x.ty.dtype),
        view,
        output: (ctx.addr(id), node.ty.dtype),
    };
    kernels.push(rowwise(&row, ctx.target)?);
    Ok(kernels)
}

/// A dense copy of `from`'s value into node `id`'s storage.
fn copy_to_node(ctx: &Ctx, id: NodeId, from: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let spec = copy_spec(
        ctx,
        id,
        "copy",
        dense_strides(&node.ty.shape),
        ctx.addr(from) as i64,
    );
    Ok(vec![copies(&node.name, "copy", &[spec], ctx.target)])
}

/// Kernels copying a node's value into an output region.
pub fn copy_to(ctx: &Ctx, id: NodeId, region: u64) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let dense = dense_strides(&node.ty.shape);
    let spec = CopySpec {
        node: format!("{}.output_copy", node.name),
        what: "output copy".into(),
        sizes: node.ty.shape.clone(),
        src: ctx.addr(id) as i64,
        src_strides: dense.clone(),
        dst: region as i64,
        dst_strides: dense,
        esize: node.ty.dtype.size() as u64,
    };
    Ok(vec![copies(
        &spec.node.clone(),
        "output copy",
        &[spec],
        ctx.target,
    )])
}

fn matmul(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let (a, b) = (ctx.graph.node(ops[0]), ctx.graph.node(ops[1]));
    if a.ty.dtype != DType::F32 || b.ty.dtype != DType::F32 {
        return Err(unsupported(ctx, id, "matmul on non-f32 operands"));
    }
    let mxu = ctx.precision.mxu();
    let e = mxu.dtype().size();
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
        return Err(unsupported(
            ctx,
            id,
            format!("matmul batch broadcast {a_shape:?} x {b_shape:?}"),
        ));
    };
    let spec = GemmSpec {
        node: node.name.clone(),
        batch,
        m,
        k,
        n,
        a: DramMat {
            addr: ctx.addr(ops[0]),
            row_stride: k * 4,
            batch_stride: a_bs,
        },
        b: DramMat {
            addr: b_addr,
            row_stride: n * e,
            batch_stride: b_bs,
        },
        b_trans: false,
        bias: None,
        act: None,
        out: DramMat {
            addr: ctx.addr(id),
            row_stride: n * 4,
            batch_stride: m * n * 4,
        },
        mxu,
    };
    kernels.push(gemm(&spec, ctx.target)?);
    Ok(kernels)
}
