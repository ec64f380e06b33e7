//! Statements both attention kernels build the same way: addressing rows
//! of a strided `[B, H, S, D]` view, moving rows of D floats between DRAM
//! and SPM, converting them to the MXU's type, and the causal triangle of
//! 0 and −∞ the scores are masked with.

use tessera_isa::{DType as IsaType, Mem};

use crate::kernel::{Addr, Affine, Buffer, DmaDim, Ext, Stmt, Var, VpuOp, VpuStmt};

use super::spec::{AttentionSpec, Tensor4};

/// `a · k`, constant and coefficients.
pub(super) fn times(a: &Affine, k: i64) -> Affine {
    Affine {
        constant: a.constant * k,
        terms: a.terms.iter().map(|&(v, c)| (v, c * k)).collect(),
    }
}

/// DRAM address of row `row` of head `head` in batch entry `batch` of a
/// strided view.
pub(super) fn row_at(t: &Tensor4, batch: Var, head: &Affine, row: &Affine) -> Affine {
    let [sb, sh, ss, _] = t.strides;
    Affine::var(t.addr as i64, batch, sb * 4)
        .plus_affine(&times(head, sh * 4))
        .plus_affine(&times(row, ss * 4))
}

/// `rows` rows of `d` floats between DRAM (row stride from the view `t`)
/// and a dense SPM tile.
pub(super) fn rows_copy(
    to_spm: bool,
    dram: Affine,
    t: &Tensor4,
    d: u64,
    spm: Addr,
    rows: Ext,
) -> Stmt {
    let dram = Addr::new(Mem::Dram, dram);
    let row = (d * 4) as i64;
    let (dst, src, ss, ds) = if to_spm {
        (spm, dram, t.strides[2] * 4, row)
    } else {
        (dram, spm, row, t.strides[2] * 4)
    };
    Stmt::Copy {
        dst,
        src,
        run: Ext::Const(d * 4),
        dims: vec![DmaDim {
            count: rows,
            sstride: ss,
            dstride: ds,
        }],
    }
}

/// VPU conversion of `rows` dense f32 rows of `cols` values to the MXU's
/// input type.
pub(super) fn to_mxu_type(
    spec: &AttentionSpec,
    dst: Addr,
    src: Addr,
    rows: Ext,
    cols: u64,
) -> Stmt {
    Stmt::Vpu(VpuStmt {
        op: VpuOp::Cvt {
            dtype: spec.mxu.a_type(),
            a: src,
            atype: IsaType::F32,
            astride: cols * 4,
        },
        dst,
        dstride: cols * spec.mxu.a_type().size(),
        rows,
        cols: Ext::Const(cols),
    })
}

/// Fills `buf` with a `rows × width` f32 triangle: row `r` is 0 up to
/// column `first_hidden + r − 1` and −∞ from there on (`row_var` counts the
/// rows).
pub(super) fn causal_triangle(
    buf: &Buffer,
    row_var: Var,
    rows: u64,
    width: u64,
    first_hidden: u64,
) -> Vec<Stmt> {
    vec![
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits: 0 },
            dst: buf.at(&Affine::c(0), 0),
            dstride: width * 4,
            rows: Ext::Const(rows),
            cols: Ext::Const(width),
        }),
        Stmt::For {
            var: row_var,
            count: rows,
            body: vec![Stmt::Vpu(VpuStmt {
                op: VpuOp::Fill {
                    bits: f32::NEG_INFINITY.to_bits(),
                },
                dst: Addr::new(
                    Mem::Spm,
                    Affine::var(
                        (buf.offset + first_hidden * 4) as i64,
                        row_var,
                        (width * 4 + 4) as i64,
                    ),
                ),
                dstride: width * 4,
                rows: Ext::Const(1),
                cols: Ext::Tail {
                    tile: width,
                    limit: (width - first_hidden) as i64,
                    start: Affine::var(0, row_var, 1),
                },
            })],
        },
    ]
}
