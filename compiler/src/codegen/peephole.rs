//! Rewrites of single statements before they are emitted.

use crate::kernel::{Ext, Opnd, VpuOp, VpuStmt};

/// A dense rows × cols region processed as one row of rows·cols elements:
/// the VPU's cost is per row (rows × ⌈cols / lanes⌉), so a narrow dense
/// tile (say 128 × 64 on 128 lanes) costs half as much flattened. Applies
/// when the sizes are constant and every operand is a full, dense region.
pub(super) fn flatten(v: &VpuStmt) -> Option<VpuStmt> {
    let (Ext::Const(r), Ext::Const(c)) = (&v.rows, &v.cols) else {
        return None;
    };
    let (r, c) = (*r, *c);
    if r <= 1 {
        return None;
    }
    let n = r * c;
    let dense = |o: &Opnd| o.bcast == tessera_isa::Bcast::Full && o.stride == c * 4;
    let wide = |o: &Opnd| Opnd {
        stride: n * 4,
        ..o.clone()
    };
    // The flattened operation, if every source is dense, and the size of a
    // destination element.
    let (op, elem) = match &v.op {
        VpuOp::Bin { func, a, b } => {
            let op = (dense(a) && dense(b)).then(|| VpuOp::Bin {
                func: *func,
                a: wide(a),
                b: wide(b),
            });
            (op, 4)
        }
        VpuOp::BinS {
            func,
            a,
            scalar,
            order,
        } => {
            let op = dense(a).then(|| VpuOp::BinS {
                func: *func,
                a: wide(a),
                scalar: *scalar,
                order: *order,
            });
            (op, 4)
        }
        VpuOp::Un { func, a } => {
            let op = dense(a).then(|| VpuOp::Un {
                func: *func,
                a: wide(a),
            });
            (op, 4)
        }
        VpuOp::Cvt {
            dtype,
            a,
            atype,
            astride,
        } => {
            let op = (*astride == c * atype.size()).then(|| VpuOp::Cvt {
                dtype: *dtype,
                a: a.clone(),
                atype: *atype,
                astride: n * atype.size(),
            });
            (op, dtype.size())
        }
        VpuOp::Fill { bits } => (Some(VpuOp::Fill { bits: *bits }), 4),
        // A reduction's result is per row, a transpose's layout is 2-D.
        // A dequantization's scales are per column.
        VpuOp::Red { .. } | VpuOp::Trans { .. } | VpuOp::Dequant { .. } | VpuOp::Quant { .. } => {
            (None, 4)
        }
    };
    let op = op.filter(|_| v.dstride == c * elem)?;
    Some(VpuStmt {
        op,
        dst: v.dst.clone(),
        dstride: n * elem,
        rows: Ext::Const(1),
        cols: Ext::Const(n),
    })
}
