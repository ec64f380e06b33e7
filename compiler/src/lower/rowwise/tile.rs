//! The statements of one tile of rows: its DMA loads and stores through
//! the row view, the conversions, and the row operation on the VPU.

use tessera_isa::{AccMode, Bcast, BinFunc, DType as IsaType, Mem, Order, RedFunc, UnFunc};

use crate::kernel::{Addr, Affine, Buffer, DmaDim, Ext, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt};
use crate::lower::alloc::Vars;
use crate::runtime_io::isa_dtype;
use crate::tensor::DType;

use super::plan::{RowBuffers, RowPlan};
use super::spec::{ReduceFn, RowOp, RowSpec, RowView};

/// DMA statement moving a `tr × cols` tile between DRAM (view `v` at
/// `base`) and an SPM tile of pitch `pitch` bytes.
fn tile_copy(
    to_spm: bool,
    dram: Affine,
    spm: Addr,
    v: &RowView,
    tr: &Ext,
    es: u64,
    pitch: u64,
) -> Stmt {
    let (cols, cs) = v.cols;
    let rs = v.rows.1;
    let dram = Addr::new(Mem::Dram, dram);
    let (run, dims) = if cs == 1 {
        (
            Ext::Const(cols * es),
            vec![DmaDim {
                count: tr.clone(),
                sstride: (rs * es) as i64,
                dstride: pitch as i64,
            }],
        )
    } else {
        (
            Ext::Const(es),
            vec![
                DmaDim {
                    count: Ext::Const(cols),
                    sstride: (cs * es) as i64,
                    dstride: es as i64,
                },
                DmaDim {
                    count: tr.clone(),
                    sstride: (rs * es) as i64,
                    dstride: pitch as i64,
                },
            ],
        )
    };
    if to_spm {
        Stmt::Copy {
            dst: spm,
            src: dram,
            run,
            dims,
        }
    } else {
        let dims = dims
            .into_iter()
            .map(|d| DmaDim {
                count: d.count,
                sstride: d.dstride,
                dstride: d.sstride,
            })
            .collect();
        Stmt::Copy {
            dst: dram,
            src: spm,
            run,
            dims,
        }
    }
}

/// One row kernel being built: the statements of one tile of `tr` rows
/// (loop variable `vr`, SPM slot `slot`).
pub(super) struct RowKernel<'a> {
    spec: &'a RowSpec,
    plan: &'a RowPlan,
    bufs: &'a RowBuffers,
    pub(super) outer_vars: Vec<(Var, u64)>,
    pub(super) vr: Var,
    pub(super) slot: Var,
    /// Rows in this tile (`tr`, or fewer in the last).
    trx: Ext,
}

impl<'a> RowKernel<'a> {
    pub(super) fn new(spec: &'a RowSpec, plan: &'a RowPlan, bufs: &'a RowBuffers) -> RowKernel<'a> {
        let mut vars = Vars::default();
        let v = &spec.view;
        let outer_vars: Vec<_> = v.outer.iter().map(|&(n, _)| (vars.fresh(), n)).collect();
        let vr = vars.fresh();
        let slot = vars.fresh();
        RowKernel {
            spec,
            plan,
            bufs,
            outer_vars,
            vr,
            slot,
            trx: Ext::tile(plan.tr, v.rows.0, Affine::var(0, vr, plan.tr as i64)),
        }
    }

    fn s(&self) -> Affine {
        Affine::var(0, self.slot, 1)
    }

    fn cols(&self) -> u64 {
        self.spec.view.cols.0
    }

    /// The vectors loaded once, with their DRAM addresses and sizes.
    pub(super) fn resident_vectors(&self) -> Vec<(&Buffer, u64, u64)> {
        let bytes = self.cols() * 4;
        self.bufs
            .vectors
            .iter()
            .map(|(b, addr)| (b, *addr, bytes))
            .collect()
    }

    /// DRAM address of the tile's first row in a tensor with this view.
    fn base(&self, addr: u64, es: u64) -> Affine {
        let v = &self.spec.view;
        let mut a = Affine::c(addr as i64);
        for (d, &(var, _)) in self.outer_vars.iter().enumerate() {
            a = a.plus(var, (v.outer[d].1 * es) as i64);
        }
        a.plus(self.vr, (self.plan.tr * v.rows.1 * es) as i64)
    }

    /// DMA: the input tile (and the residual's).
    pub(super) fn loads(&self) -> Vec<Stmt> {
        let (spec, b, s, cols) = (self.spec, self.bufs, self.s(), self.cols());
        let ies = spec.input.1.size() as u64;
        let mut loads = vec![tile_copy(
            true,
            self.base(spec.input.0, ies),
            b.xstage.at(&s, 0),
            &spec.view,
            &self.trx,
            ies,
            cols * ies,
        )];
        if let (Some(addr), Some(r)) = (spec.residual, &b.rin) {
            loads.push(tile_copy(
                true,
                self.base(addr, 4),
                r.at(&s, 0),
                &spec.view,
                &self.trx,
                4,
                cols * 4,
            ));
        }
        loads
    }

    /// VPU: the input to f32 when it is not.
    pub(super) fn convert_in(&self) -> Vec<Stmt> {
        let (in_t, s, cols) = (self.spec.input.1, self.s(), self.cols());
        if in_t == DType::F32 {
            return vec![];
        }
        vec![Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: IsaType::F32,
                a: self.bufs.xstage.at(&s, 0),
                atype: isa_dtype(in_t),
                astride: cols * in_t.size() as u64,
            },
            dst: self.bufs.xin.at(&s, 0),
            dstride: cols * 4,
            rows: self.trx.clone(),
            cols: Ext::Const(cols),
        })]
    }

    /// The tile as an operand.
    fn x(&self) -> Opnd {
        Opnd {
            addr: self.bufs.xin.at(&self.s(), 0),
            stride: self.cols() * 4,
            bcast: Bcast::Full,
        }
    }

    /// The per-row statistics as a column.
    fn stat_col(&self) -> Opnd {
        Opnd {
            addr: self.bufs.stat.at(&self.s(), 0),
            stride: 4,
            bcast: Bcast::Col,
        }
    }

    /// A reduction of each row of `a` into `dst`.
    fn red(&self, func: RedFunc, dst: Addr, a: Opnd) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Red {
                func,
                a,
                mode: Mode::Fixed(AccMode::Set),
            },
            dst,
            dstride: 4,
            rows: self.trx.clone(),
            cols: Ext::Const(self.cols()),
        })
    }

    /// An operation on whole tiles.
    fn tile_op(&self, op: VpuOp, dst: Addr) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op,
            dst,
            dstride: self.cols() * 4,
            rows: self.trx.clone(),
            cols: Ext::Const(self.cols()),
        })
    }

    fn bin(&self, func: BinFunc, dst: Addr, a: Opnd, b: Opnd) -> Stmt {
        self.tile_op(VpuOp::Bin { func, a, b }, dst)
    }

    /// An operation on a packed column of per-row values in `buf` (the VPU
    /// handles one as a single row of `tr` lanes), in place.
    fn on_col(&self, buf: &Buffer, op: impl FnOnce(Opnd) -> VpuOp) -> Stmt {
        let tr = self.plan.tr;
        let at = buf.at(&self.s(), 0);
        Stmt::Vpu(VpuStmt {
            op: op(Opnd {
                addr: at.clone(),
                stride: tr * 4,
                bcast: Bcast::Full,
            }),
            dst: at,
            dstride: tr * 4,
            rows: Ext::Const(1),
            cols: self.trx.clone(),
        })
    }

    fn col_scalar(&self, func: BinFunc, scalar: f32) -> Stmt {
        self.on_col(&self.bufs.stat, |a| VpuOp::BinS {
            func,
            a,
            scalar,
            order: Order::As,
        })
    }

    fn col_unary(&self, func: UnFunc) -> Stmt {
        self.on_col(&self.bufs.stat, |a| VpuOp::Un { func, a })
    }

    /// A vector loaded once, broadcast down the rows.
    fn vector_row(&self, i: usize) -> Opnd {
        Opnd {
            addr: self.bufs.vectors[i].0.at(&Affine::c(0), 0),
            stride: 0,
            bcast: Bcast::Row,
        }
    }

    /// VPU: the residual added, then the row operation in f32.
    pub(super) fn compute(&self) -> Vec<Stmt> {
        let (b, s) = (self.bufs, self.s());
        let (x, col, xin) = (self.x(), self.stat_col(), b.xin.at(&s, 0));
        let stat = b.stat.at(&s, 0);
        let tmp = b.tmp.at(&Affine::c(0), 0);
        let tmp_full = Opnd {
            addr: tmp.clone(),
            stride: self.cols() * 4,
            bcast: Bcast::Full,
        };
        let inv_n = 1.0 / self.cols() as f32;
        let mut compute = Vec::new();
        if let Some(r) = &b.rin {
            let r = Opnd {
                addr: r.at(&s, 0),
                stride: self.cols() * 4,
                bcast: Bcast::Full,
            };
            compute.push(self.bin(BinFunc::Add, xin.clone(), x.clone(), r));
        }
        match &self.spec.op {
            RowOp::Softmax => {
                compute.push(self.red(RedFunc::Max, stat.clone(), x.clone()));
                compute.push(self.bin(BinFunc::Sub, xin.clone(), x.clone(), col.clone()));
                compute.push(self.tile_op(
                    VpuOp::Un {
                        func: UnFunc::Exp,
                        a: x.clone(),
                    },
                    xin.clone(),
                ));
                compute.push(self.red(RedFunc::Sum, stat, x.clone()));
                compute.push(self.bin(BinFunc::Div, xin, x, col));
            }
            RowOp::LayerNorm { epsilon, bias, .. } => {
                compute.push(self.red(RedFunc::Sum, stat.clone(), x.clone()));
                compute.push(self.col_scalar(BinFunc::Mul, inv_n));
                compute.push(self.bin(BinFunc::Sub, xin.clone(), x.clone(), col.clone()));
                compute.push(self.bin(BinFunc::Mul, tmp, x.clone(), x.clone()));
                compute.push(self.red(RedFunc::Sum, stat, tmp_full));
                compute.push(self.col_scalar(BinFunc::Mul, inv_n));
                compute.push(self.col_scalar(BinFunc::Add, *epsilon));
                compute.push(self.col_unary(UnFunc::Rsqrt));
                compute.push(self.bin(BinFunc::Mul, xin.clone(), x.clone(), col));
                compute.push(self.bin(BinFunc::Mul, xin.clone(), x.clone(), self.vector_row(0)));
                if bias.is_some() {
                    compute.push(self.bin(BinFunc::Add, xin, x, self.vector_row(1)));
                }
            }
            RowOp::RmsNorm { epsilon, .. } => {
                compute.push(self.bin(BinFunc::Mul, tmp, x.clone(), x.clone()));
                compute.push(self.red(RedFunc::Sum, stat, tmp_full));
                compute.push(self.col_scalar(BinFunc::Mul, inv_n));
                compute.push(self.col_scalar(BinFunc::Add, *epsilon));
                compute.push(self.col_unary(UnFunc::Rsqrt));
                compute.push(self.bin(BinFunc::Mul, xin.clone(), x.clone(), col));
                compute.push(self.bin(BinFunc::Mul, xin, x, self.vector_row(0)));
            }
            RowOp::Reduce(f) => {
                let func = match f {
                    ReduceFn::Sum | ReduceFn::Mean => RedFunc::Sum,
                    ReduceFn::Max => RedFunc::Max,
                };
                compute.push(self.red(func, b.yout.at(&s, 0), x));
                if *f == ReduceFn::Mean {
                    compute.push(self.on_col(&b.yout, |a| VpuOp::BinS {
                        func: BinFunc::Mul,
                        a,
                        scalar: inv_n,
                        order: Order::As,
                    }));
                }
            }
        }
        compute
    }

    /// VPU: the result to the output type when it is not f32.
    pub(super) fn convert_out(&self) -> Vec<Stmt> {
        let (out_t, s, out_cols) = (self.spec.output.1, self.s(), self.plan.out_cols);
        if out_t == DType::F32 {
            return vec![];
        }
        vec![Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: isa_dtype(out_t),
                a: self.bufs.yout.at(&s, 0),
                atype: IsaType::F32,
                astride: out_cols * 4,
            },
            dst: self.bufs.ystage.at(&s, 0),
            dstride: out_cols * out_t.size() as u64,
            rows: self.trx.clone(),
            cols: Ext::Const(out_cols),
        })]
    }

    /// DMA: the result tile; a reduction's one value per row, dense in
    /// outer × rows order.
    pub(super) fn stores(&self) -> Vec<Stmt> {
        let (spec, s) = (self.spec, self.s());
        let v = &spec.view;
        let (out_addr, out_t) = spec.output;
        let oes = out_t.size() as u64;
        if !matches!(spec.op, RowOp::Reduce(_)) {
            return vec![tile_copy(
                false,
                self.base(out_addr, oes),
                self.bufs.ystage.at(&s, 0),
                v,
                &self.trx,
                oes,
                self.cols() * oes,
            )];
        }
        let mut dst = Affine::c(out_addr as i64);
        let mut stride = 1u64;
        let mut strides = vec![0u64; v.outer.len()];
        for d in (0..v.outer.len()).rev() {
            strides[d] = stride * v.rows.0;
            stride *= v.outer[d].0;
        }
        for (d, &(var, _)) in self.outer_vars.iter().enumerate() {
            dst = dst.plus(var, (strides[d] * oes) as i64);
        }
        dst = dst.plus(self.vr, (self.plan.tr * oes) as i64);
        vec![Stmt::Copy {
            dst: Addr::new(Mem::Dram, dst),
            src: self.bufs.ystage.at(&s, 0),
            run: self.trx.clone().scaled(oes),
            dims: vec![],
        }]
    }
}
