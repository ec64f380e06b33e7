//! Rewriting the affine expressions of statements: substitution of a
//! variable (e.g. "the previous tile": `v -> v - 1`).

use super::{Addr, Affine, DmaDim, Ext, Opnd, Stmt, Var, VpuOp, VpuStmt, WeightQuant, ZeroPoint};

impl Ext {
    /// Rewrites the affine parts.
    pub fn map_affine(&self, f: &dyn Fn(&Affine) -> Affine) -> Ext {
        match self {
            Ext::Const(n) => Ext::Const(*n),
            Ext::Tail { tile, limit, start } => Ext::Tail {
                tile: *tile,
                limit: *limit,
                start: f(start),
            },
            Ext::Scaled(e, k) => Ext::Scaled(Box::new(e.map_affine(f)), *k),
        }
    }
}

impl Addr {
    /// Rewrites the address.
    pub fn map_affine(&self, f: &dyn Fn(&Affine) -> Affine) -> Addr {
        Addr::new(self.mem, f(&self.at))
    }
}

impl VpuOp {
    /// Rewrites the source addresses (the destination is the statement's).
    fn map_affine(&self, f: &dyn Fn(&Affine) -> Affine) -> VpuOp {
        let mut op = self.clone();
        match &mut op {
            VpuOp::Bin { a, b, .. } => {
                *a = a.map_affine(f);
                *b = b.map_affine(f);
            }
            VpuOp::BinS { a, .. } | VpuOp::Un { a, .. } | VpuOp::Red { a, .. } => {
                *a = a.map_affine(f)
            }
            VpuOp::Cvt { a, .. } | VpuOp::Trans { a, .. } => *a = a.map_affine(f),
            VpuOp::Dequant { a, s, .. } | VpuOp::Quant { a, s, .. } => {
                *a = a.map_affine(f);
                *s = s.map_affine(f);
            }
            VpuOp::Fill { .. } => {}
        }
        op
    }
}

impl Opnd {
    fn map_affine(&self, f: &dyn Fn(&Affine) -> Affine) -> Opnd {
        Opnd {
            addr: self.addr.map_affine(f),
            stride: self.stride,
            bcast: self.bcast,
        }
    }
}

impl Affine {
    /// Replaces `var` by `replacement` (an affine expression).
    pub fn substitute(&self, var: Var, replacement: &Affine) -> Affine {
        let mut out = Affine::c(self.constant);
        for &(v, k) in &self.terms {
            if v == var {
                out = out.plus_affine(&Affine {
                    constant: replacement.constant * k,
                    terms: replacement.terms.iter().map(|&(w, c)| (w, c * k)).collect(),
                });
            } else {
                out = out.plus(v, k);
            }
        }
        out
    }
}

impl Stmt {
    /// The statement with every affine expression rewritten by `f` (loop
    /// and guard structure unchanged).
    pub fn map_affine(&self, f: &dyn Fn(&Affine) -> Affine) -> Stmt {
        let ext = |e: &Ext| e.map_affine(f);
        match self {
            Stmt::For { var, count, body } => Stmt::For {
                var: *var,
                count: *count,
                body: body.iter().map(|s| s.map_affine(f)).collect(),
            },
            Stmt::If {
                lhs,
                cmp,
                value,
                body,
            } => Stmt::If {
                lhs: f(lhs),
                cmp: *cmp,
                value: *value,
                body: body.iter().map(|s| s.map_affine(f)).collect(),
            },
            Stmt::Copy {
                dst,
                src,
                run,
                dims,
            } => Stmt::Copy {
                dst: dst.map_affine(f),
                src: src.map_affine(f),
                run: ext(run),
                dims: dims
                    .iter()
                    .map(|d| DmaDim {
                        count: ext(&d.count),
                        sstride: d.sstride,
                        dstride: d.dstride,
                    })
                    .collect(),
            },
            Stmt::Gather {
                dst,
                table,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => Stmt::Gather {
                dst: f(dst),
                table: f(table),
                idx: f(idx),
                rows: ext(rows),
                bytes: *bytes,
                limit: *limit,
                itype: *itype,
            },
            Stmt::Scatter {
                table,
                src,
                idx,
                rows,
                bytes,
                limit,
                itype,
            } => Stmt::Scatter {
                table: f(table),
                src: f(src),
                idx: f(idx),
                rows: ext(rows),
                bytes: *bytes,
                limit: *limit,
                itype: *itype,
            },
            Stmt::LoadW {
                src,
                k,
                n,
                stride,
                dtype,
                trans,
                quant,
            } => Stmt::LoadW {
                src: f(src),
                k: ext(k),
                n: ext(n),
                stride: *stride,
                dtype: *dtype,
                trans: *trans,
                quant: quant.as_ref().map(|q| match q {
                    WeightQuant::ZeroPoints(a, w) => {
                        let moved = |z: &ZeroPoint| match z {
                            ZeroPoint::At(at) => ZeroPoint::At(f(at)),
                            ZeroPoint::Const(c) => ZeroPoint::Const(*c),
                        };
                        WeightQuant::ZeroPoints(moved(a), moved(w))
                    }
                    WeightQuant::Scales { at, a_stride } => WeightQuant::Scales {
                        at: f(at),
                        a_stride: *a_stride,
                    },
                }),
            },
            Stmt::Matmul {
                dst,
                a,
                m,
                astride,
                dstride,
                mode,
                ascales,
            } => Stmt::Matmul {
                dst: f(dst),
                a: f(a),
                m: ext(m),
                astride: *astride,
                dstride: *dstride,
                mode: mode.clone(),
                ascales: ascales.as_ref().map(f),
            },
            Stmt::Vpu(v) => Stmt::Vpu(VpuStmt {
                op: v.op.map_affine(f),
                dst: v.dst.map_affine(f),
                dstride: v.dstride,
                rows: ext(&v.rows),
                cols: ext(&v.cols),
            }),
            other => other.clone(),
        }
    }
}
