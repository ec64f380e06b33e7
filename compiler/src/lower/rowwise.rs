//! Row kernels: softmax, layer norm, RMS norm and reductions, each over
//! whole rows held in SPM.
//!
//! The input is viewed as `outer × rows × cols` with element strides: the
//! reduced (or normalized) axis is `cols`. When it is the last axis, rows
//! and columns are contiguous; when it is a middle axis, the DMA gathers
//! each row with element-sized runs (slower, but any axis works). Rows
//! stream through SPM in tiles with the shared load/compute/store
//! pipeline; scale and bias vectors are loaded once.

use tessera_isa::{AccMode, Bcast, BinFunc, DType as IsaType, Mem, Order, RedFunc, Target, UnFunc};

use crate::kernel::{
    Addr, Affine, Buffer, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt,
};
use crate::runtime_io::isa_dtype;
use crate::tensor::DType;

use super::alloc::{tiles, OnChip, Vars};
use super::pipeline::{build, Stream};
use super::template::{pipelined_row_tile, resident_vectors};
use super::LowerError;

/// What a row kernel computes.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOp {
    /// Softmax along the row.
    Softmax,
    /// `(x - mean) / sqrt(var + eps) * scale (+ bias)`; scale and bias are
    /// f32 vectors of the row's length in DRAM.
    LayerNorm {
        /// Added to the variance.
        epsilon: f32,
        /// Scale vector.
        scale: u64,
        /// Bias vector.
        bias: Option<u64>,
    },
    /// `x / sqrt(mean(x²) + eps) * scale`.
    RmsNorm {
        /// Added to the mean square.
        epsilon: f32,
        /// Scale vector.
        scale: u64,
    },
    /// One value per row.
    Reduce(ReduceFn),
}

/// Row reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceFn {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Maximum.
    Max,
}

/// A strided view `outer × rows × cols` of a tensor (element strides).
#[derive(Clone, Debug, PartialEq)]
pub struct RowView {
    /// Loops outside the rows: (count, element stride).
    pub outer: Vec<(u64, u64)>,
    /// Rows: (count, element stride).
    pub rows: (u64, u64),
    /// Columns (the reduced axis): (count, element stride).
    pub cols: (u64, u64),
}

impl RowView {
    /// The view of `shape` whose columns are axis `axis` (or, with
    /// `through_end`, all axes from `axis` on, which are contiguous).
    pub fn of(shape: &[usize], axis: usize, through_end: bool) -> RowView {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if through_end || axis + 1 >= shape.len() {
            let cols: u64 = shape[axis.min(shape.len())..].iter().product();
            let rows: u64 = shape[..axis.min(shape.len())].iter().product();
            return RowView {
                outer: vec![],
                rows: (rows, cols),
                cols: (cols, 1),
            };
        }
        let outer: u64 = shape[..axis].iter().product();
        let a = shape[axis];
        let inner: u64 = shape[axis + 1..].iter().product();
        RowView {
            outer: vec![(outer, a * inner)],
            rows: (inner, 1),
            cols: (a, inner),
        }
    }
}

impl RowView {
    /// The view of `shape` whose columns are the contiguous block of axes
    /// `first..=last` (flattened).
    pub fn block(shape: &[usize], first: usize, last: usize) -> RowView {
        if last + 1 >= shape.len() {
            return RowView::of(shape, first, true);
        }
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let outer: u64 = shape[..first].iter().product();
        let cols: u64 = shape[first..=last].iter().product();
        let inner: u64 = shape[last + 1..].iter().product();
        RowView {
            outer: vec![(outer, cols * inner)],
            rows: (inner, 1),
            cols: (cols, inner),
        }
    }
}

/// A row kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSpec {
    /// Source node.
    pub node: String,
    /// What to compute.
    pub op: RowOp,
    /// Input address and element type.
    pub input: (u64, DType),
    /// A second f32 input with the same view, added to the input first
    /// (residual add + norm); only for the norms.
    pub residual: Option<u64>,
    /// The input's view.
    pub view: RowView,
    /// Output address and element type; reductions write one value per
    /// row, densely in `outer × rows` order.
    pub output: (u64, DType),
}

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

/// Builds a row kernel.
pub fn rowwise(spec: &RowSpec, target: &Target) -> Result<Kernel, LowerError> {
    check(spec)?;
    let plan = row_plan(spec, target)?;
    let mut mem = OnChip::new(target);
    let bufs = RowBuffers::allocate(&mut mem, spec, &plan)?;
    let kernel = RowKernel::new(spec, &plan, &bufs);
    let mut compute = kernel.convert_in();
    compute.extend(kernel.compute());
    compute.extend(kernel.convert_out());
    let mut body = resident_vectors(&kernel.resident_vectors());
    body.extend(build(Stream {
        outer: kernel.outer_vars.clone(),
        inner: (kernel.vr, tiles(spec.view.rows.0, plan.tr)),
        slot: kernel.slot,
        loads: kernel.loads(),
        compute,
        stores: kernel.stores(),
    }));
    let v = &spec.view;
    let (rows, cols) = (v.rows.0, v.cols.0);
    let (ies, oes) = (spec.input.1.size() as u64, spec.output.1.size() as u64);
    let outer_n: u64 = v.outer.iter().map(|o| o.0).product();
    let in_bytes = outer_n * rows * cols * (ies + if spec.residual.is_some() { 4 } else { 0 });
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "{}{:?} over {} x {} rows of {} (tile {} rows)",
            if spec.residual.is_some() {
                "residual add + "
            } else {
                ""
            },
            spec.op,
            outer_n,
            rows,
            cols,
            plan.tr
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(kernel.slot, 2)],
        macs: 0,
        compulsory_dram_bytes: in_bytes + outer_n * rows * plan.out_cols * oes + plan.vectors,
    })
}

/// Refuses types and operands the row kernels do not handle.
fn check(spec: &RowSpec) -> Result<(), LowerError> {
    let (in_t, out_t) = (spec.input.1, spec.output.1);
    let reduce = matches!(spec.op, RowOp::Reduce(_));
    if !reduce && (in_t != DType::F32 || out_t != DType::F32) {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: format!("{:?} on {} data", spec.op, in_t.name()),
        });
    }
    let norm = matches!(spec.op, RowOp::LayerNorm { .. } | RowOp::RmsNorm { .. });
    if spec.residual.is_some() && !norm {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: format!("internal: a residual operand for {:?}", spec.op),
        });
    }
    Ok(())
}

/// The tiles of a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct RowPlan {
    /// Rows per tile.
    tr: u64,
    /// Values per output row (1 for a reduction).
    out_cols: u64,
    /// Bytes of the scale and bias vectors, loaded once.
    vectors: u64,
}

/// As many rows per tile as SPM holds double-buffered, at most 1024.
fn row_plan(spec: &RowSpec, target: &Target) -> Result<RowPlan, LowerError> {
    let (rows, cols) = (spec.view.rows.0, spec.view.cols.0);
    let (in_t, out_t) = (spec.input.1, spec.output.1);
    let (ies, oes) = (in_t.size() as u64, out_t.size() as u64);
    let out_cols = if matches!(spec.op, RowOp::Reduce(_)) {
        1
    } else {
        cols
    };
    // Per row: input (staging + f32) and output, double-buffered, plus one
    // temporary row and two per-row statistics.
    let per_row = 2 * cols * (4 + if in_t == DType::F32 { 0 } else { ies })
        + if spec.residual.is_some() {
            2 * cols * 4
        } else {
            0
        }
        + 2 * out_cols * (4 + if out_t == DType::F32 { 0 } else { oes })
        + cols * 4
        + 16;
    let vectors = match spec.op {
        RowOp::LayerNorm { bias, .. } => cols * 4 * (1 + u64::from(bias.is_some())),
        RowOp::RmsNorm { .. } => cols * 4,
        _ => 0,
    };
    let budget = target.spm_bytes.saturating_sub(vectors + 64 * 16);
    let cap = (budget / per_row.max(1)).min(rows).min(1024);
    if cap == 0 {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: a row of {cols} elements does not fit SPM",
            spec.node
        )));
    }
    Ok(RowPlan {
        tr: pipelined_row_tile(rows, cap),
        out_cols,
        vectors,
    })
}

/// The kernel's SPM buffers; staging buffers alias the f32 ones when the
/// data already is f32, and the output of a norm is its input, in place.
struct RowBuffers {
    xin: Buffer,
    xstage: Buffer,
    yout: Buffer,
    ystage: Buffer,
    rin: Option<Buffer>,
    tmp: Buffer,
    stat: Buffer,
    /// Scale (and bias) vectors with their DRAM addresses.
    vectors: Vec<(Buffer, u64)>,
}

impl RowBuffers {
    fn allocate(
        mem: &mut OnChip,
        spec: &RowSpec,
        plan: &RowPlan,
    ) -> Result<RowBuffers, LowerError> {
        let (tr, cols) = (plan.tr, spec.view.cols.0);
        let (in_t, out_t) = (spec.input.1, spec.output.1);
        let xin = mem.alloc("x", Mem::Spm, tr * cols * 4, 2)?;
        let xstage = if in_t == DType::F32 {
            xin.clone()
        } else {
            mem.alloc("x_raw", Mem::Spm, tr * cols * in_t.size() as u64, 2)?
        };
        let yout = if matches!(spec.op, RowOp::Reduce(_)) {
            mem.alloc("y", Mem::Spm, tr * 4, 2)?
        } else {
            xin.clone()
        };
        let ystage = if out_t == DType::F32 {
            yout.clone()
        } else {
            let bytes = tr * plan.out_cols * out_t.size() as u64;
            mem.alloc("y_raw", Mem::Spm, bytes, 2)?
        };
        let rin = match spec.residual {
            Some(_) => Some(mem.alloc("residual", Mem::Spm, tr * cols * 4, 2)?),
            None => None,
        };
        let tmp = mem.alloc("tmp", Mem::Spm, tr * cols * 4, 1)?;
        let stat = mem.alloc("stat", Mem::Spm, tr * 4, 2)?;
        let named = match &spec.op {
            RowOp::LayerNorm { scale, bias, .. } => {
                let mut v = vec![("scale", *scale)];
                if let Some(b) = bias {
                    v.push(("bias", *b));
                }
                v
            }
            RowOp::RmsNorm { scale, .. } => vec![("scale", *scale)],
            _ => vec![],
        };
        let mut vectors = Vec::new();
        for (name, addr) in named {
            vectors.push((mem.alloc(name, Mem::Spm, cols * 4, 1)?, addr));
        }
        Ok(RowBuffers {
            xin,
            xstage,
            yout,
            ystage,
            rin,
            tmp,
            stat,
            vectors,
        })
    }
}

/// One row kernel being built: the statements of one tile of `tr` rows
/// (loop variable `vr`, SPM slot `slot`).
struct RowKernel<'a> {
    spec: &'a RowSpec,
    plan: &'a RowPlan,
    bufs: &'a RowBuffers,
    outer_vars: Vec<(Var, u64)>,
    vr: Var,
    slot: Var,
    /// Rows in this tile (`tr`, or fewer in the last).
    trx: Ext,
}

impl<'a> RowKernel<'a> {
    fn new(spec: &'a RowSpec, plan: &'a RowPlan, bufs: &'a RowBuffers) -> RowKernel<'a> {
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
    fn resident_vectors(&self) -> Vec<(&Buffer, u64, u64)> {
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
    fn loads(&self) -> Vec<Stmt> {
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
    fn convert_in(&self) -> Vec<Stmt> {
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
    fn compute(&self) -> Vec<Stmt> {
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
    fn convert_out(&self) -> Vec<Stmt> {
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
    fn stores(&self) -> Vec<Stmt> {
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
