//! Rewrites of single statements before they are emitted.

use crate::kernel::{Ext, Opnd, VpuStmt};

/// A dense rows × cols region processed as one row of rows·cols elements:
/// the VPU's cost is per row (rows × ⌈cols / lanes⌉), so a narrow dense
/// tile (say 128 × 64 on 128 lanes) costs half as much flattened. Applies
/// when the sizes are constant and every operand is a full, dense region.
pub(super) fn flatten(v: &VpuStmt) -> Option<VpuStmt> {
    let consts = |rows: &Ext, cols: &Ext| match (rows, cols) {
        (Ext::Const(r), Ext::Const(c)) if *r > 1 => Some((*r, *c)),
        _ => None,
    };
    let dense = |o: &Opnd, cols: u64| o.bcast == tessera_isa::Bcast::Full && o.stride == cols * 4;
    let one = |n: u64| (Ext::Const(1), Ext::Const(n));
    match v {
        VpuStmt::Bin {
            func,
            dst,
            dstride,
            a,
            b,
            rows,
            cols,
        } => {
            let (r, c) = consts(rows, cols)?;
            (*dstride == c * 4 && dense(a, c) && dense(b, c)).then(|| {
                let (rows, cols) = one(r * c);
                let wide = |o: &Opnd| Opnd {
                    stride: r * c * 4,
                    ..o.clone()
                };
                VpuStmt::Bin {
                    func: *func,
                    dst: dst.clone(),
                    dstride: r * c * 4,
                    a: wide(a),
                    b: wide(b),
                    rows,
                    cols,
                }
            })
        }
        VpuStmt::BinS {
            func,
            dst,
            dstride,
            a,
            scalar,
            order,
            rows,
            cols,
        } => {
            let (r, c) = consts(rows, cols)?;
            (*dstride == c * 4 && dense(a, c)).then(|| {
                let (rows, cols) = one(r * c);
                let a = Opnd {
                    stride: r * c * 4,
                    ..a.clone()
                };
                VpuStmt::BinS {
                    func: *func,
                    dst: dst.clone(),
                    dstride: r * c * 4,
                    a,
                    scalar: *scalar,
                    order: *order,
                    rows,
                    cols,
                }
            })
        }
        VpuStmt::Un {
            func,
            dst,
            dstride,
            a,
            rows,
            cols,
        } => {
            let (r, c) = consts(rows, cols)?;
            (*dstride == c * 4 && dense(a, c)).then(|| {
                let (rows, cols) = one(r * c);
                let a = Opnd {
                    stride: r * c * 4,
                    ..a.clone()
                };
                VpuStmt::Un {
                    func: *func,
                    dst: dst.clone(),
                    dstride: r * c * 4,
                    a,
                    rows,
                    cols,
                }
            })
        }
        VpuStmt::Cvt {
            dst,
            dtype,
            dstride,
            a,
            atype,
            astride,
            rows,
            cols,
        } => {
            let (r, c) = consts(rows, cols)?;
            (*dstride == c * dtype.size() && *astride == c * atype.size()).then(|| {
                let (rows, cols) = one(r * c);
                VpuStmt::Cvt {
                    dst: dst.clone(),
                    dtype: *dtype,
                    dstride: r * c * dtype.size(),
                    a: a.clone(),
                    atype: *atype,
                    astride: r * c * atype.size(),
                    rows,
                    cols,
                }
            })
        }
        VpuStmt::Fill {
            dst,
            dstride,
            bits,
            rows,
            cols,
        } => {
            let (r, c) = consts(rows, cols)?;
            (*dstride == c * 4).then(|| {
                let (rows, cols) = one(r * c);
                VpuStmt::Fill {
                    dst: dst.clone(),
                    dstride: r * c * 4,
                    bits: *bits,
                    rows,
                    cols,
                }
            })
        }
        VpuStmt::Red { .. } | VpuStmt::Trans { .. } => None,
    }
}
