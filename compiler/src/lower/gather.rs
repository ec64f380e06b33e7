//! Gathers and scatters: row gathers and scatters with runtime indices on
//! the DMA engine (`dma.gather`, `dma.scatter`), and gathers with
//! compile-time indices as static copies.
//!
//! `Gather` on axis `a` of `data [outer, V, inner]` with indices `[N]`
//! (any shape, flattened) copies, for every outer index, the `inner`-sized
//! rows `data[o, idx[p], :]` to `out[o, p, :]`: the indices go to SPM once,
//! then tiles of rows are gathered into SPM and stored, alternating
//! between two buffers. Only the DMA engine is involved; it orders its own
//! transfers.

use tessera_isa::{BinFunc, IdxType, Mem, Target};

use crate::kernel::{Addr, Affine, DmaDim, Ext, Kernel, Stmt};

use crate::tensor::DType;

use super::alloc::{balanced_tile, tiles, OnChip, Vars};
use super::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use super::movement::{copy_stmts, CopySpec};
use super::LowerError;

/// A row gather or scatter between a table in DRAM and dense rows.
///
/// Gather on axis `a` of `table [outer, rows, inner]` with `count`
/// indices per outer entry copies the rows `table[o, idx[p], :]` to
/// `dense[o, p, :]`; a scatter writes `dense[o, p, :]` over
/// `table[o, idx[p], :]` (into a table the kernel before it filled). Tiles
/// of indices (and, for a scatter, of update rows) go to SPM, alternating
/// between two buffers. Only the DMA engine is involved: it orders its own
/// transfers, and its interlock keeps the scatters in order (each writes
/// the whole table for the interlock), so a later equal index wins.
#[derive(Clone, Debug, PartialEq)]
pub struct RowsSpec {
    /// Source node.
    pub node: String,
    /// Table base address (the gather's source, the scatter's output).
    pub table: u64,
    /// Outer count (dimensions before the axis).
    pub outer: u64,
    /// Rows per outer entry (the axis length).
    pub rows: u64,
    /// Bytes per row (inner elements × element size).
    pub row_bytes: u64,
    /// Indices base address.
    pub indices: u64,
    /// Number of indices (and dense rows) per outer entry.
    pub count: u64,
    /// Bytes between the index lists of consecutive outer entries (0 when
    /// every outer entry uses the same indices).
    pub idx_outer_stride: u64,
    /// Index type.
    pub itype: IdxType,
    /// Dense rows base address: the gather's output, the scatter's
    /// updates; `count` rows per outer entry.
    pub dense: u64,
    /// Bytes between consecutive dense rows: `row_bytes`, or more when
    /// each gathered row is one piece of a wider row (see [`rows_kernels`]).
    pub dense_stride: u64,
}

/// Builds a row-gather kernel.
pub fn gather(spec: &RowsSpec, target: &Target) -> Result<Kernel, LowerError> {
    rows_kernel(spec, target, false)
}

/// Builds a row-scatter kernel.
pub fn scatter(spec: &RowsSpec, target: &Target) -> Result<Kernel, LowerError> {
    rows_kernel(spec, target, true)
}

/// Bytes per index of type `itype`.
fn index_size(itype: IdxType) -> u64 {
    if itype == IdxType::I64 {
        8
    } else {
        4
    }
}

/// How many rows of `row_bytes` (with their `isize`-byte indices) one of
/// the two tile buffers holds in SPM.
fn rows_per_tile(row_bytes: u64, isize: u64, target: &Target) -> u64 {
    let free = OnChip::new(target).free(Mem::Spm).saturating_sub(4 * 64);
    free / (2 * (row_bytes + isize).max(1))
}

fn rows_kernel(spec: &RowsSpec, target: &Target, scatter: bool) -> Result<Kernel, LowerError> {
    let (verb, preposition) = if scatter {
        ("scatter", "into")
    } else {
        ("gather", "from")
    };
    let isize = index_size(spec.itype);
    let mut mem = OnChip::new(target);
    let cap = rows_per_tile(spec.row_bytes, isize, target).min(spec.count);
    if cap == 0 {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: a {verb}ed row of {} bytes does not fit SPM",
            spec.node, spec.row_bytes
        )));
    }
    let tile = balanced_tile(spec.count, cap);
    let idx = mem.alloc("indices", Mem::Spm, tile * isize, 2)?;
    let rows_buf = mem.alloc("rows", Mem::Spm, tile * spec.row_bytes, 2)?;
    let mut vars = Vars::default();
    let (vo, vt, slot) = (vars.fresh(), vars.fresh(), vars.fresh());
    let s = Affine::var(0, slot, 1);
    let n = Ext::tile(tile, spec.count, Affine::var(0, vt, tile as i64));
    let table = Affine::var(spec.table as i64, vo, (spec.rows * spec.row_bytes) as i64);
    let pitch = spec.dense_stride.max(spec.row_bytes);
    let dense = Addr::new(
        Mem::Dram,
        Affine::var(spec.dense as i64, vo, (spec.count * pitch) as i64)
            .plus(vt, (tile * pitch) as i64),
    );
    // Dense rows one run, or one run per row when they are pieces of
    // wider rows.
    let (run, dims) = if pitch == spec.row_bytes {
        (n.clone().scaled(spec.row_bytes), vec![])
    } else {
        (
            Ext::Const(spec.row_bytes),
            vec![DmaDim {
                count: n.clone(),
                sstride: if scatter { pitch } else { spec.row_bytes } as i64,
                dstride: if scatter { spec.row_bytes } else { pitch } as i64,
            }],
        )
    };
    let load_indices = Stmt::Copy {
        dst: idx.at(&s, 0),
        src: Addr::new(
            Mem::Dram,
            Affine::var(spec.indices as i64, vo, spec.idx_outer_stride as i64)
                .plus(vt, (tile * isize) as i64),
        ),
        run: n.clone().scaled(isize),
        dims: vec![],
    };
    let moves = if scatter {
        vec![
            Stmt::Copy {
                dst: rows_buf.at(&s, 0),
                src: dense,
                run,
                dims,
            },
            Stmt::Scatter {
                table,
                src: rows_buf.at(&s, 0).at,
                idx: idx.at(&s, 0).at,
                rows: n,
                bytes: spec.row_bytes,
                limit: spec.rows,
                itype: spec.itype,
            },
        ]
    } else {
        vec![
            Stmt::Gather {
                dst: rows_buf.at(&s, 0).at,
                table,
                idx: idx.at(&s, 0).at,
                rows: n.clone(),
                bytes: spec.row_bytes,
                limit: spec.rows,
                itype: spec.itype,
            },
            Stmt::Copy {
                dst: dense,
                src: rows_buf.at(&s, 0),
                run,
                dims,
            },
        ]
    };
    let mut tile_body = vec![load_indices];
    tile_body.extend(moves);
    tile_body.push(Stmt::Advance(slot));
    let body = vec![Stmt::For {
        var: vo,
        count: spec.outer.max(1),
        body: vec![Stmt::For {
            var: vt,
            count: tiles(spec.count, tile),
            body: tile_body,
        }],
    }];
    let index_bytes = if scatter {
        spec.outer * spec.count * isize
    } else {
        spec.count * isize
    };
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "{verb} {} x {} rows of {} B {preposition} a table of {} rows",
            spec.outer, spec.count, spec.row_bytes, spec.rows
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(slot, 2)],
        macs: 0,
        compulsory_dram_bytes: index_bytes + 2 * spec.outer * spec.count * spec.row_bytes,
    })
}

/// The kernels of a row gather (or scatter): one, or, when a row does not
/// fit SPM, one per piece of the rows. Row `r` of `B` bytes is pieces `r ·
/// c + j` (`j < c`) of a table of `rows · c` rows of `B / c` bytes, so
/// piece `j` of every selected row is a gather with the indices `idx · c +
/// j` (computed by the VPU into scratch: exact while `rows · c < 2²⁴`)
/// into every `B`-th byte of the dense rows.
pub fn rows_kernels(
    spec: &RowsSpec,
    target: &Target,
    scatter: bool,
    scratch: &dyn Fn(u64) -> u64,
) -> Result<Vec<Kernel>, LowerError> {
    let err = match rows_kernel(spec, target, scatter) {
        Ok(k) => return Ok(vec![k]),
        Err(LowerError::DoesNotFit(why)) => why,
        Err(e) => return Err(e),
    };
    let refuse = |what: &str| Err(LowerError::DoesNotFit(format!("{err} ({what})")));
    if spec.idx_outer_stride != 0 || spec.dense_stride != spec.row_bytes {
        return refuse("and its indices differ per outer entry");
    }
    let isize = index_size(spec.itype);
    let Some(pieces) = (2..=spec.row_bytes)
        .filter(|c| spec.row_bytes % c == 0)
        .find(|c| rows_per_tile(spec.row_bytes / c, isize, target) > 0)
    else {
        return refuse("and no piece of it does");
    };
    if spec.rows * pieces >= 1 << 24 {
        return refuse("and its pieces would number 2^24 or more");
    }
    let dtype = if isize == 8 { DType::I64 } else { DType::I32 };
    let count = spec.count as usize;
    let piece = spec.row_bytes / pieces;
    let mut kernels = Vec::new();
    for j in 0..pieces {
        let at = scratch(spec.count * isize);
        let expr = Ew::Binary(
            BinFunc::Add,
            Box::new(Ew::Binary(
                BinFunc::Mul,
                Box::new(Ew::Input(0)),
                Box::new(Ew::Scalar(pieces as f32)),
            )),
            Box::new(Ew::Scalar(j as f32)),
        );
        kernels.push(elementwise(
            &EwSpec {
                node: format!("{}.piece{j}_indices", spec.node),
                operands: vec![EwOperand {
                    addr: spec.indices,
                    shape: vec![count],
                    dtype,
                    strides: None,
                }],
                expr,
                out: at,
                shape: vec![count],
                dtype,
                cast_only: false,
                out_strides: None,
            },
            target,
        )?);
        let part = RowsSpec {
            node: format!("{}.piece{j}", spec.node),
            rows: spec.rows * pieces,
            row_bytes: piece,
            indices: at,
            dense: spec.dense + j * piece,
            dense_stride: spec.row_bytes,
            ..spec.clone()
        };
        kernels.push(rows_kernel(&part, target, scatter)?);
    }
    Ok(kernels)
}

/// A gather whose indices are known at compile time: one copy per
/// selected slice (`slices` gives source and destination byte offsets).
pub fn static_gather(node: &str, what: &str, slices: &[(i64, i64)], slice_bytes: u64) -> Kernel {
    let mut vars = Vars::default();
    let mut body = Vec::new();
    for &(src, dst) in slices {
        body.extend(copy_stmts(
            &CopySpec {
                node: node.into(),
                what: what.into(),
                sizes: vec![slice_bytes as usize],
                src,
                src_strides: vec![1],
                dst,
                dst_strides: vec![1],
                esize: 1,
            },
            &mut vars,
        ));
    }
    Kernel {
        node: node.to_string(),
        summary: format!("{what}: {} static slices of {slice_bytes} B", slices.len()),
        buffers: vec![],
        body,
        rotators: vec![],
        macs: 0,
        compulsory_dram_bytes: 2 * slices.len() as u64 * slice_bytes,
    }
}
