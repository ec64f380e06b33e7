//! Row kernels: softmax, layer norm, RMS norm and reductions, each over
//! whole rows held in SPM.
//!
//! The input is viewed as `outer × rows × cols` with element strides: the
//! reduced (or normalized) axis is `cols`. When it is the last axis, rows
//! and columns are contiguous; when it is a middle axis, the DMA gathers
//! each row with element-sized runs (slower, but any axis works). Rows
//! stream through SPM in tiles with the shared load/compute/store
//! pipeline; scale and bias vectors are loaded once.

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, Order, RedFunc, Target, UnFunc,
};

use crate::kernel::{Addr, Affine, Chan, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, VpuOp, VpuStmt};
use crate::runtime_io::isa_dtype;
use crate::tensor::DType;

use super::alloc::{balanced_tile, tiles, OnChip, Vars};
use super::pipeline::{build, Stream};
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
    let v = &spec.view;
    let (rows, _) = v.rows;
    let (cols, _) = v.cols;
    let (in_addr, in_t) = spec.input;
    let (out_addr, out_t) = spec.output;
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
    let (ies, oes) = (in_t.size() as u64, out_t.size() as u64);
    let out_cols = if reduce { 1 } else { cols };
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
    // At least four tiles when there are rows enough, so that loads,
    // compute and stores overlap.
    let cap = if rows >= 16 {
        cap.min(rows.div_ceil(4))
    } else {
        cap
    };
    let tr = balanced_tile(rows, cap);
    let mut mem = OnChip::new(target);
    let xin = mem.alloc("x", Mem::Spm, tr * cols * 4, 2)?;
    let xstage = if in_t == DType::F32 {
        xin.clone()
    } else {
        mem.alloc("x_raw", Mem::Spm, tr * cols * ies, 2)?
    };
    let yout = if reduce {
        mem.alloc("y", Mem::Spm, tr * 4, 2)?
    } else {
        xin.clone()
    };
    let ystage = if out_t == DType::F32 {
        yout.clone()
    } else {
        mem.alloc("y_raw", Mem::Spm, tr * out_cols * oes, 2)?
    };
    let rin = match spec.residual {
        Some(_) => Some(mem.alloc("residual", Mem::Spm, tr * cols * 4, 2)?),
        None => None,
    };
    let tmp = mem.alloc("tmp", Mem::Spm, tr * cols * 4, 1)?;
    let stat = mem.alloc("stat", Mem::Spm, tr * 4, 2)?;
    let mut vars = Vars::default();
    let outer_vars: Vec<_> = v.outer.iter().map(|&(n, _)| (vars.fresh(), n)).collect();
    let vr = vars.fresh();
    let slot = vars.fresh();
    let s = Affine::var(0, slot, 1);
    let trx = Ext::tile(tr, rows, Affine::var(0, vr, tr as i64));
    let colx = Ext::Const(cols);
    let pitch = cols * 4;

    let mut prologue = Vec::new();
    let mut vec_bufs = Vec::new();
    for (name, addr) in match &spec.op {
        RowOp::LayerNorm { scale, bias, .. } => {
            let mut v = vec![("scale", *scale)];
            if let Some(b) = bias {
                v.push(("bias", *b));
            }
            v
        }
        RowOp::RmsNorm { scale, .. } => vec![("scale", *scale)],
        _ => vec![],
    } {
        let b = mem.alloc(name, Mem::Spm, cols * 4, 1)?;
        prologue.push(Stmt::Copy {
            dst: b.at(&Affine::c(0), 0),
            src: Addr::new(Mem::Dram, Affine::c(addr as i64)),
            run: Ext::Const(cols * 4),
            dims: vec![],
        });
        vec_bufs.push(b);
    }
    if !vec_bufs.is_empty() {
        prologue.push(Stmt::Signal(Chan::data(Engine::Dma, Engine::Vpu), 1));
        prologue.push(Stmt::Wait(Chan::data(Engine::Dma, Engine::Vpu), 1));
    }

    let base = |addr: u64, es: u64, row_stride: u64| -> Affine {
        let mut a = Affine::c(addr as i64);
        for (d, &(var, _)) in outer_vars.iter().enumerate() {
            a = a.plus(var, (v.outer[d].1 * es) as i64);
        }
        a.plus(vr, (tr * row_stride * es) as i64)
    };
    let mut loads = vec![tile_copy(
        true,
        base(in_addr, ies, v.rows.1),
        xstage.at(&s, 0),
        v,
        &trx,
        ies,
        cols * ies,
    )];
    if let (Some(addr), Some(r)) = (spec.residual, &rin) {
        loads.push(tile_copy(
            true,
            base(addr, 4, v.rows.1),
            r.at(&s, 0),
            v,
            &trx,
            4,
            cols * 4,
        ));
    }
    let mut compute = Vec::new();
    if in_t != DType::F32 {
        compute.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: IsaType::F32,
                a: xstage.at(&s, 0),
                atype: isa_dtype(in_t),
                astride: cols * ies,
            },
            dst: xin.at(&s, 0),
            dstride: pitch,
            rows: trx.clone(),
            cols: colx.clone(),
        }));
    }
    let x = Opnd {
        addr: xin.at(&s, 0),
        stride: pitch,
        bcast: Bcast::Full,
    };
    let col = Opnd {
        addr: stat.at(&s, 0),
        stride: 4,
        bcast: Bcast::Col,
    };
    let red = |func, dst: Addr, a: Opnd| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Red {
                func,
                a,
                mode: Mode::Fixed(AccMode::Set),
            },
            dst,
            dstride: 4,
            rows: trx.clone(),
            cols: colx.clone(),
        })
    };
    let bin = |func, dst: Addr, a: Opnd, b: Opnd| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin { func, a, b },
            dst,
            dstride: pitch,
            rows: trx.clone(),
            cols: colx.clone(),
        })
    };
    // Per-row statistics are packed columns; the VPU handles one as a
    // single row of `tr` lanes.
    let col_scalar = |func, s: f32| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::BinS {
                func,
                a: Opnd {
                    addr: stat.at(&Affine::var(0, slot, 1), 0),
                    stride: tr * 4,
                    bcast: Bcast::Full,
                },
                scalar: s,
                order: Order::As,
            },
            dst: stat.at(&Affine::var(0, slot, 1), 0),
            dstride: tr * 4,
            rows: Ext::Const(1),
            cols: trx.clone(),
        })
    };
    let col_unary = |func| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Un {
                func,
                a: Opnd {
                    addr: stat.at(&Affine::var(0, slot, 1), 0),
                    stride: tr * 4,
                    bcast: Bcast::Full,
                },
            },
            dst: stat.at(&Affine::var(0, slot, 1), 0),
            dstride: tr * 4,
            rows: Ext::Const(1),
            cols: trx.clone(),
        })
    };
    if let Some(r) = &rin {
        let r = Opnd {
            addr: r.at(&s, 0),
            stride: pitch,
            bcast: Bcast::Full,
        };
        compute.push(bin(BinFunc::Add, xin.at(&s, 0), x.clone(), r));
    }
    let inv_n = 1.0 / cols as f32;
    let tmp_full = Opnd {
        addr: tmp.at(&Affine::c(0), 0),
        stride: pitch,
        bcast: Bcast::Full,
    };
    match &spec.op {
        RowOp::Softmax => {
            compute.push(red(RedFunc::Max, stat.at(&s, 0), x.clone()));
            compute.push(bin(BinFunc::Sub, xin.at(&s, 0), x.clone(), col.clone()));
            compute.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Un {
                    func: UnFunc::Exp,
                    a: x.clone(),
                },
                dst: xin.at(&s, 0),
                dstride: pitch,
                rows: trx.clone(),
                cols: colx.clone(),
            }));
            compute.push(red(RedFunc::Sum, stat.at(&s, 0), x.clone()));
            compute.push(bin(BinFunc::Div, xin.at(&s, 0), x.clone(), col.clone()));
        }
        RowOp::LayerNorm { epsilon, bias, .. } => {
            compute.push(red(RedFunc::Sum, stat.at(&s, 0), x.clone()));
            compute.push(col_scalar(BinFunc::Mul, inv_n));
            compute.push(bin(BinFunc::Sub, xin.at(&s, 0), x.clone(), col.clone()));
            compute.push(bin(
                BinFunc::Mul,
                tmp.at(&Affine::c(0), 0),
                x.clone(),
                x.clone(),
            ));
            compute.push(red(RedFunc::Sum, stat.at(&s, 0), tmp_full.clone()));
            compute.push(col_scalar(BinFunc::Mul, inv_n));
            compute.push(col_scalar(BinFunc::Add, *epsilon));
            compute.push(col_unary(UnFunc::Rsqrt));
            compute.push(bin(BinFunc::Mul, xin.at(&s, 0), x.clone(), col.clone()));
            let row = |b: &crate::kernel::Buffer| Opnd {
                addr: b.at(&Affine::c(0), 0),
                stride: 0,
                bcast: Bcast::Row,
            };
            compute.push(bin(
                BinFunc::Mul,
                xin.at(&s, 0),
                x.clone(),
                row(&vec_bufs[0]),
            ));
            if bias.is_some() {
                compute.push(bin(
                    BinFunc::Add,
                    xin.at(&s, 0),
                    x.clone(),
                    row(&vec_bufs[1]),
                ));
            }
        }
        RowOp::RmsNorm { epsilon, .. } => {
            compute.push(bin(
                BinFunc::Mul,
                tmp.at(&Affine::c(0), 0),
                x.clone(),
                x.clone(),
            ));
            compute.push(red(RedFunc::Sum, stat.at(&s, 0), tmp_full));
            compute.push(col_scalar(BinFunc::Mul, inv_n));
            compute.push(col_scalar(BinFunc::Add, *epsilon));
            compute.push(col_unary(UnFunc::Rsqrt));
            compute.push(bin(BinFunc::Mul, xin.at(&s, 0), x.clone(), col.clone()));
            let row = Opnd {
                addr: vec_bufs[0].at(&Affine::c(0), 0),
                stride: 0,
                bcast: Bcast::Row,
            };
            compute.push(bin(BinFunc::Mul, xin.at(&s, 0), x.clone(), row));
        }
        RowOp::Reduce(f) => {
            let func = match f {
                ReduceFn::Sum | ReduceFn::Mean => RedFunc::Sum,
                ReduceFn::Max => RedFunc::Max,
            };
            compute.push(red(func, yout.at(&s, 0), x.clone()));
            if *f == ReduceFn::Mean {
                compute.push(Stmt::Vpu(VpuStmt {
                    op: VpuOp::BinS {
                        func: BinFunc::Mul,
                        a: Opnd {
                            addr: yout.at(&s, 0),
                            stride: tr * 4,
                            bcast: Bcast::Full,
                        },
                        scalar: inv_n,
                        order: Order::As,
                    },
                    dst: yout.at(&s, 0),
                    dstride: tr * 4,
                    rows: Ext::Const(1),
                    cols: trx.clone(),
                }));
            }
        }
    }
    let out_pitch = out_cols * 4;
    if out_t != DType::F32 {
        compute.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: isa_dtype(out_t),
                a: yout.at(&s, 0),
                atype: IsaType::F32,
                astride: out_pitch,
            },
            dst: ystage.at(&s, 0),
            dstride: out_cols * oes,
            rows: trx.clone(),
            cols: Ext::Const(out_cols),
        }));
    }
    let stores = if reduce {
        // One value per row, dense in outer × rows order.
        let mut dst = Affine::c(out_addr as i64);
        let mut stride = 1u64;
        let mut strides = vec![0u64; v.outer.len()];
        for d in (0..v.outer.len()).rev() {
            strides[d] = stride * rows;
            stride *= v.outer[d].0;
        }
        for (d, &(var, _)) in outer_vars.iter().enumerate() {
            dst = dst.plus(var, (strides[d] * oes) as i64);
        }
        dst = dst.plus(vr, (tr * oes) as i64);
        vec![Stmt::Copy {
            dst: Addr::new(Mem::Dram, dst),
            src: ystage.at(&s, 0),
            run: trx.clone().scaled(oes),
            dims: vec![],
        }]
    } else {
        vec![tile_copy(
            false,
            base(out_addr, oes, v.rows.1),
            ystage.at(&s, 0),
            v,
            &trx,
            oes,
            cols * oes,
        )]
    };
    let mut body = prologue;
    body.extend(build(Stream {
        outer: outer_vars,
        inner: (vr, tiles(rows, tr)),
        slot,
        loads,
        compute,
        stores,
    }));
    let outer_n: u64 = v.outer.iter().map(|o| o.0).product();
    let in_bytes = outer_n * rows * cols * (ies + if spec.residual.is_some() { 4 } else { 0 });
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "{}{:?} over {} x {} rows of {} (tile {tr} rows)",
            if spec.residual.is_some() {
                "residual add + "
            } else {
                ""
            },
            spec.op,
            outer_n,
            rows,
            cols
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(slot, 2)],
        macs: 0,
        compulsory_dram_bytes: in_bytes + outer_n * rows * out_cols * oes + vectors,
    })
}
