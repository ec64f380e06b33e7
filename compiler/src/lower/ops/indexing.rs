//! Ops that select or place elements: rotary embedding, gathers,
//! scatters, Trilu.

use tessera_isa::BinFunc;

use super::{copy_to_node, unsupported};
use crate::graph::NodeId;
use crate::kernel::Kernel;
use crate::lower::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use crate::lower::gather::{gather, rows_kernels, scatter, static_gather, RowsSpec};
use crate::lower::movement::{copies, dense_strides, CopySpec};
use crate::lower::{Ctx, LowerError};
use crate::tensor::DType;

/// Rotary embedding as two elementwise kernels over the halves of each row:
/// `out[:h] = x1·cos[:h] − x2·sin[:h]`, `out[h:] = x2·cos[h:] + x1·sin[h:]`.
pub(super) fn rope(ctx: &Ctx, id: NodeId) -> Result<Vec<Kernel>, LowerError> {
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
        let mut strides = crate::lower::elementwise::broadcast_strides(&t.shape, &shape);
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

/// The index type of an indices operand on the DMA engine.
fn index_type(
    ctx: &Ctx,
    id: NodeId,
    what: &str,
    dtype: DType,
) -> Result<tessera_isa::IdxType, LowerError> {
    match dtype {
        DType::I64 => Ok(tessera_isa::IdxType::I64),
        DType::I32 => Ok(tessera_isa::IdxType::I32),
        other => Err(unsupported(
            ctx,
            id,
            format!("{what} indices of type {}", other.name()),
        )),
    }
}

/// Copies moving `axis` of a dense tensor last (`back = false`) or from last
/// back to `axis` (`back = true`), for the element-wise gathers and
/// scatters, which work on rows along the last dimension. `shape` is the
/// tensor's shape with `axis` in place. Returns where the moved tensor is:
/// `to` when given, else a scratch buffer (or `addr` itself when `axis` is
/// already last and no destination is asked for).
#[allow(clippy::too_many_arguments)]
fn move_axis(
    ctx: &Ctx,
    kernels: &mut Vec<Kernel>,
    node: &str,
    what: &str,
    axis: usize,
    back: bool,
    addr: u64,
    to: Option<u64>,
    shape: &[usize],
    esize: u64,
) -> u64 {
    let r = shape.len();
    if axis + 1 == r && to.is_none() {
        return addr;
    }
    let at = to.unwrap_or_else(|| ctx.scratch(shape.iter().product::<usize>() as u64 * esize));
    let perm: Vec<usize> = (0..r).filter(|&d| d != axis).chain([axis]).collect();
    let permuted: Vec<usize> = perm.iter().map(|&p| shape[p]).collect();
    let (sizes, src_strides, dst_strides) = if back {
        // out[i] = permuted[perm⁻¹(i)]
        let pd = dense_strides(&permuted);
        let mut src_strides = vec![0i64; r];
        for (j, &p) in perm.iter().enumerate() {
            src_strides[p] = pd[j];
        }
        (shape.to_vec(), src_strides, dense_strides(shape))
    } else {
        let dense = dense_strides(shape);
        (
            permuted.clone(),
            perm.iter().map(|&p| dense[p]).collect(),
            dense_strides(&permuted),
        )
    };
    let purpose = if back {
        "move the indexed axis back"
    } else {
        "move the indexed axis last"
    };
    kernels.push(copies(
        &format!("{node}.{what}"),
        purpose,
        &[CopySpec {
            node: node.into(),
            what: what.into(),
            sizes,
            src: addr as i64,
            src_strides,
            dst: at as i64,
            dst_strides,
            esize,
        }],
    ));
    at
}

/// GatherElements: with the gathered axis moved last (by copies when it
/// is not), each row of indices selects single elements of the matching
/// data row — a `dma.gather` of one-element rows per row.
pub(super) fn gather_elements(
    ctx: &Ctx,
    id: NodeId,
    axis: usize,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let data = &ctx.graph.node(ops[0]).ty;
    let idx = &ctx.graph.node(ops[1]).ty;
    let r = data.shape.len();
    let itype = index_type(ctx, id, "gather_elements", idx.dtype)?;
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
    let name = &node.name;
    let mut kernels = Vec::new();
    let k = &mut kernels;
    let d_addr = move_axis(
        ctx,
        k,
        name,
        "data",
        axis,
        false,
        ctx.addr(ops[0]),
        None,
        &data.shape,
        es,
    );
    let i_addr = move_axis(
        ctx,
        k,
        name,
        "indices",
        axis,
        false,
        ctx.addr(ops[1]),
        None,
        &idx.shape,
        isz,
    );
    let out_last = if axis + 1 == r {
        ctx.addr(id)
    } else {
        ctx.scratch(idx.numel() as u64 * es)
    };
    let c_in = data.shape[axis] as u64;
    let c_out = idx.shape[axis] as u64;
    let spec = RowsSpec {
        node: name.clone(),
        table: d_addr,
        outer: idx.numel() as u64 / c_out.max(1),
        rows: c_in,
        row_bytes: es,
        indices: i_addr,
        count: c_out,
        idx_outer_stride: c_out * isz,
        itype,
        dense: out_last,
        dense_stride: es,
    };
    kernels.push(gather(&spec, ctx.target)?);
    if axis + 1 != r {
        let k = &mut kernels;
        move_axis(
            ctx,
            k,
            name,
            "out",
            axis,
            true,
            out_last,
            Some(ctx.addr(id)),
            &idx.shape,
            es,
        );
    }
    Ok(kernels)
}

/// Scatter (the row form): the data copied to the output, then the update
/// rows written over it with `dma.scatter`.
pub(super) fn scatter_rows(ctx: &Ctx, id: NodeId, axis: usize) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let indices = &ctx.graph.node(ops[1]).ty;
    let itype = index_type(ctx, id, "scatter", indices.dtype)?;
    let shape = &node.ty.shape;
    let es = node.ty.dtype.size() as u64;
    let mut kernels = copy_to_node(ctx, id, ops[0])?;
    let row_bytes = shape[axis + 1..].iter().product::<usize>() as u64 * es;
    let spec = RowsSpec {
        node: node.name.clone(),
        table: ctx.addr(id),
        outer: shape[..axis].iter().product::<usize>() as u64,
        rows: shape[axis] as u64,
        row_bytes,
        indices: ctx.addr(ops[1]),
        count: indices.numel() as u64,
        idx_outer_stride: 0,
        itype,
        dense: ctx.addr(ops[2]),
        dense_stride: row_bytes,
    };
    if spec.count > 0 && spec.row_bytes > 0 {
        kernels.extend(rows_kernels(&spec, ctx.target, true, &|b| ctx.scratch(b))?);
    }
    Ok(kernels)
}

/// ScatterElements: with the scattered axis moved last (by copies when it
/// is not), each row of indices places single elements into the matching
/// row of the data — a `dma.scatter` of one-element rows per row — and the
/// result is moved back.
pub(super) fn scatter_elements(
    ctx: &Ctx,
    id: NodeId,
    axis: usize,
) -> Result<Vec<Kernel>, LowerError> {
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let data = &node.ty;
    let idx = &ctx.graph.node(ops[1]).ty;
    let r = data.shape.len();
    let itype = index_type(ctx, id, "scatter_elements", idx.dtype)?;
    if (0..r).any(|d| d != axis && data.shape[d] != idx.shape[d]) {
        return Err(unsupported(
            ctx,
            id,
            "scatter_elements with indices smaller than the data outside the axis",
        ));
    }
    let es = data.dtype.size() as u64;
    let isz = idx.dtype.size() as u64;
    let name = &node.name;
    let mut kernels = Vec::new();
    let k = &mut kernels;
    // The table: the data, with the axis last, in the output or a scratch.
    let table = if axis + 1 == r {
        k.extend(copy_to_node(ctx, id, ops[0])?);
        ctx.addr(id)
    } else {
        move_axis(
            ctx,
            k,
            name,
            "data",
            axis,
            false,
            ctx.addr(ops[0]),
            None,
            &data.shape,
            es,
        )
    };
    if idx.numel() > 0 {
        let i_addr = move_axis(
            ctx,
            k,
            name,
            "indices",
            axis,
            false,
            ctx.addr(ops[1]),
            None,
            &idx.shape,
            isz,
        );
        let u_addr = move_axis(
            ctx,
            k,
            name,
            "updates",
            axis,
            false,
            ctx.addr(ops[2]),
            None,
            &idx.shape,
            es,
        );
        let c_out = idx.shape[axis] as u64;
        let spec = RowsSpec {
            node: name.clone(),
            table,
            outer: idx.numel() as u64 / c_out.max(1),
            rows: data.shape[axis] as u64,
            row_bytes: es,
            indices: i_addr,
            count: c_out,
            idx_outer_stride: c_out * isz,
            itype,
            dense: u_addr,
            dense_stride: es,
        };
        kernels.push(scatter(&spec, ctx.target)?);
    }
    if axis + 1 != r {
        let k = &mut kernels;
        move_axis(
            ctx,
            k,
            name,
            "out",
            axis,
            true,
            table,
            Some(ctx.addr(id)),
            &data.shape,
            es,
        );
    }
    Ok(kernels)
}

/// Trilu: copy, then zero the excluded part of every row with DMA copies
/// from a zeroed SPM buffer. Row `i` keeps columns `j >= i + k` (upper) or
/// `j <= i + k` (lower).
pub(super) fn trilu(ctx: &Ctx, id: NodeId, upper: bool, k: i64) -> Result<Vec<Kernel>, LowerError> {
    use crate::kernel::{Addr, Affine, Chan, Ext, Stmt, VpuOp, VpuStmt};
    use tessera_isa::{Engine, Mem};
    let node = ctx.graph.node(id);
    let ops = ctx.graph.operands(id);
    let shape = &node.ty.shape;
    let r = shape.len();
    if r < 2 || node.ty.numel() == 0 {
        return copy_to_node(ctx, id, ops[0]);
    }
    let (rows, cols) = (shape[r - 2] as i64, shape[r - 1] as i64);
    // Beyond ±(rows, cols) every k keeps or zeroes the same elements;
    // clamping keeps the address arithmetic below from overflowing.
    let k = k.clamp(-(rows + 1), cols + 1);
    let mats = (node.ty.numel() as i64) / (rows * cols);
    let es = node.ty.dtype.size() as i64;
    let mut kernels = copy_to_node(ctx, id, ops[0])?;
    let mut mem = crate::lower::alloc::OnChip::new(ctx.target);
    let zeros = mem.alloc("zeros", Mem::Spm, (cols * es) as u64, 1)?;
    let mut vars = crate::lower::alloc::Vars::default();
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
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits: 0 },
            dst: zeros.at(&Affine::c(0), 0),
            dstride: 0,
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
pub(super) fn gather_nd(
    ctx: &Ctx,
    id: NodeId,
    batch_dims: usize,
) -> Result<Vec<Kernel>, LowerError> {
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
    )])
}
