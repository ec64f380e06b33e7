//! Elementwise kernels: any expression over broadcast operands, computed by
//! the VPU in fp32 over tiles streamed through SPM.
//!
//! The iteration space is the output's shape with dimensions merged where
//! every operand is contiguous across them; the last merged dimension is
//! the tile's columns, the one before it the tile's rows, and the rest are
//! loops. Each operand is loaded as a full tile, a row vector (broadcast
//! down the rows), a packed column (broadcast along the row) or a scalar,
//! matching the VPU's broadcast modes. Operands that are not fp32 are
//! loaded in their own type and converted; the result is converted to the
//! output's type before it is stored. Integer arithmetic therefore runs in
//! fp32 and is exact while magnitudes stay below 2^24.
//!
//! `spec.rs` says what is computed, `space.rs` merges the dimensions and
//! chooses the tile, `eval.rs` turns the expression into VPU statements.

use tessera_isa::{Bcast, DType as IsaType, Mem, Target};

use crate::kernel::{Addr, Affine, DmaDim, Ext, Kernel, Opnd, Stmt, Var, VpuOp, VpuStmt};
use crate::tensor::DType;

use super::alloc::{tiles, OnChip, Vars};
use super::pipeline::{build, Stream};
use super::LowerError;

mod eval;
mod space;
mod spec;

pub use space::{broadcast_strides, coalesce};
pub use spec::{Ew, EwOperand, EwSpec};

use eval::Eval;
use space::{ew_plan, EwPlan, Layout};

/// Builds the kernel.
pub fn elementwise(spec: &EwSpec, target: &Target) -> Result<Kernel, LowerError> {
    let plan = ew_plan(spec, target)?;
    let mut mem = OnChip::new(target);
    let tile = Tile::new(&plan);
    let operands = load_operands(spec, &plan, &tile, &mut mem)?;
    let out_es = spec.dtype.size() as u64;
    let (tr, tc) = (plan.tr, plan.tc);
    let out_f32 = mem.alloc("out", Mem::Spm, tr * tc * 4, 2)?;
    let out_stage = if spec.dtype == DType::F32 {
        out_f32.clone()
    } else {
        mem.alloc(
            &format!("out_{}", spec.dtype.name()),
            Mem::Spm,
            tr * tc * out_es,
            2,
        )?
    };
    let mut compute = operands.prep;
    let out = (out_f32.at(&tile.slot(), 0), out_stage.at(&tile.slot(), 0));
    compute.extend(if spec.cast_only {
        cast(spec, &plan, &tile, &operands.opnds, &out.1)?
    } else {
        evaluate(spec, &plan, &tile, &operands.opnds, out.clone(), &mut mem)?
    });
    let stores = vec![store(spec, &plan, &tile, out.1)];
    let mut outer = tile.outer_vars.clone();
    outer.push((tile.vc, tiles(plan.cols, tc)));
    let body = build(Stream {
        outer,
        inner: (tile.vr, tiles(plan.rows, tr)),
        slot: tile.slot,
        loads: operands.loads,
        compute,
        stores,
    });
    let numel: u64 = plan.sizes.iter().product();
    let in_bytes: u64 = spec
        .operands
        .iter()
        .map(|o| o.shape.iter().product::<usize>() as u64 * o.dtype.size() as u64)
        .sum();
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "elementwise {:?} -> {}{:?} (tiles {tr}x{tc})",
            spec.expr,
            spec.dtype.name(),
            spec.shape
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(tile.slot, 2)],
        macs: 0,
        compulsory_dram_bytes: in_bytes + numel * out_es,
    })
}

/// The loop variables of the tile loops and the tile's extents.
struct Tile {
    outer_vars: Vec<(Var, u64)>,
    /// Column tiles.
    vc: Var,
    /// Row tiles (the pipelined loop).
    vr: Var,
    /// SPM slot rotator.
    slot: Var,
    /// Columns in this tile (full, or fewer at the edge).
    tcx: Ext,
    /// Rows in this tile.
    trx: Ext,
}

impl Tile {
    fn new(plan: &EwPlan) -> Tile {
        let mut vars = Vars::default();
        let outer_vars: Vec<_> = plan
            .outer_sizes
            .iter()
            .map(|&n| (vars.fresh(), n))
            .collect();
        let vc = vars.fresh();
        let vr = vars.fresh();
        let slot = vars.fresh();
        Tile {
            outer_vars,
            vc,
            vr,
            slot,
            tcx: Ext::tile(plan.tc, plan.cols, Affine::var(0, vc, plan.tc as i64)),
            trx: Ext::tile(plan.tr, plan.rows, Affine::var(0, vr, plan.tr as i64)),
        }
    }

    fn slot(&self) -> Affine {
        Affine::var(0, self.slot, 1)
    }

    /// DRAM address of the tile's element (0, 0) for stride list `i`.
    fn addr(&self, plan: &EwPlan, base: u64, i: usize, esize: u64) -> Affine {
        let mut a = Affine::c(base as i64);
        for (d, &(v, _)) in self.outer_vars.iter().enumerate() {
            a = a.plus(v, plan.strides[i][d] * esize as i64);
        }
        a = a.plus(self.vc, plan.col_stride(i) * (plan.tc * esize) as i64);
        a.plus(self.vr, plan.row_stride(i) * (plan.tr * esize) as i64)
    }
}

/// The operands' tiles: DMA loads, conversions to f32, and the VPU
/// operands the expression reads.
struct OperandTiles {
    loads: Vec<Stmt>,
    prep: Vec<Stmt>,
    opnds: Vec<Opnd>,
}

/// Allocates each operand's tile (and staging in its own type) and builds
/// its load and conversion.
fn load_operands(
    spec: &EwSpec,
    plan: &EwPlan,
    tile: &Tile,
    mem: &mut OnChip,
) -> Result<OperandTiles, LowerError> {
    let (tr, tc) = (plan.tr, plan.tc);
    let (trx, tcx, slot_a) = (&tile.trx, &tile.tcx, tile.slot());
    let mut loads = Vec::new();
    let mut prep = Vec::new();
    let mut opnds: Vec<Opnd> = Vec::new();
    for (i, (o, layout)) in spec.operands.iter().zip(&plan.layouts).enumerate() {
        let es = o.dtype.size() as u64;
        let (elems_rows, elems_cols) = match layout {
            Layout::Full => (tr, tc),
            Layout::Row => (1, tc),
            Layout::Col => (tr, 1),
            Layout::Scalar => (1, 1),
        };
        let f32buf = mem.alloc(&format!("in{i}"), Mem::Spm, elems_rows * elems_cols * 4, 2)?;
        let stage = if o.dtype == DType::F32 {
            f32buf.clone()
        } else {
            mem.alloc(
                &format!("in{i}_{}", o.dtype.name()),
                Mem::Spm,
                elems_rows * elems_cols * es,
                2,
            )?
        };
        let src = Addr::new(Mem::Dram, tile.addr(plan, o.addr, i, es));
        let dst = stage.at(&slot_a, 0);
        let (run, dims, rows_ext, cols_ext, pitch) = match layout {
            Layout::Full => (
                tcx.clone().scaled(es),
                vec![DmaDim {
                    count: trx.clone(),
                    sstride: plan.row_stride(i) * es as i64,
                    dstride: (tc * es) as i64,
                }],
                trx.clone(),
                tcx.clone(),
                tc,
            ),
            Layout::Row => (
                tcx.clone().scaled(es),
                vec![],
                Ext::Const(1),
                tcx.clone(),
                tc,
            ),
            Layout::Col => (
                Ext::Const(es),
                vec![DmaDim {
                    count: trx.clone(),
                    sstride: plan.row_stride(i) * es as i64,
                    dstride: es as i64,
                }],
                trx.clone(),
                Ext::Const(1),
                1,
            ),
            Layout::Scalar => (Ext::Const(es), vec![], Ext::Const(1), Ext::Const(1), 1),
        };
        loads.push(Stmt::Copy {
            dst,
            src,
            run,
            dims,
        });
        if o.dtype != DType::F32 && !spec.cast_only {
            prep.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Cvt {
                    dtype: DType::F32.into_isa(),
                    a: stage.at(&slot_a, 0),
                    atype: o.dtype.into_isa(),
                    astride: pitch * es,
                },
                dst: f32buf.at(&slot_a, 0),
                dstride: pitch * 4,
                rows: rows_ext,
                cols: cols_ext,
            }));
        }
        let (bcast, stride) = match layout {
            Layout::Full => (Bcast::Full, tc * 4),
            Layout::Row => (Bcast::Row, 0),
            Layout::Col => (Bcast::Col, 4),
            Layout::Scalar => (Bcast::Scalar, 0),
        };
        let buf = if spec.cast_only { stage } else { f32buf };
        opnds.push(Opnd {
            addr: buf.at(&slot_a, 0),
            stride,
            bcast,
        });
    }
    Ok(OperandTiles { loads, prep, opnds })
}

/// VPU: operand 0 converted straight to the output type (exact integer
/// casts, no f32 round trip).
fn cast(
    spec: &EwSpec,
    plan: &EwPlan,
    tile: &Tile,
    opnds: &[Opnd],
    out_stage: &Addr,
) -> Result<Vec<Stmt>, LowerError> {
    // A one-element output reads its one operand element whatever the
    // layout (a scalar zero point converted for QuantizeLinear).
    let single = spec.shape.iter().product::<usize>() == 1;
    if plan.layouts[0] != Layout::Full && !single {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: "a broadcasting cast".into(),
        });
    }
    let tc = plan.tc;
    Ok(vec![Stmt::Vpu(VpuStmt {
        op: VpuOp::Cvt {
            dtype: spec.dtype.into_isa(),
            a: opnds[0].addr.clone(),
            atype: spec.operands[0].dtype.into_isa(),
            astride: tc * spec.operands[0].dtype.size() as u64,
        },
        dst: out_stage.clone(),
        dstride: tc * spec.dtype.size() as u64,
        rows: tile.trx.clone(),
        cols: tile.tcx.clone(),
    })])
}

/// VPU: the expression into the f32 output tile, then converted to the
/// output type when it is not f32.
fn evaluate(
    spec: &EwSpec,
    plan: &EwPlan,
    tile: &Tile,
    opnds: &[Opnd],
    (out_f32, out_stage): (Addr, Addr),
    mem: &mut OnChip,
) -> Result<Vec<Stmt>, LowerError> {
    let (tr, tc) = (plan.tr, plan.tc);
    let mut compute = Vec::new();
    let mut temps = Vec::new();
    let mut eval = Eval {
        opnds,
        rows: tile.trx.clone(),
        cols: tile.tcx.clone(),
        pitch: tc,
        stmts: &mut compute,
        next_temp: 0,
        temps: &mut temps,
        mem,
        tile_bytes: tr * tc * 4,
    };
    eval.emit(&spec.expr, Some(out_f32.clone()))?;
    if spec.dtype != DType::F32 {
        compute.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: spec.dtype.into_isa(),
                a: out_f32,
                atype: IsaType::F32,
                astride: tc * 4,
            },
            dst: out_stage,
            dstride: tc * spec.dtype.size() as u64,
            rows: tile.trx.clone(),
            cols: tile.tcx.clone(),
        }));
    }
    Ok(compute)
}

/// DMA: the output tile (the last stride list is the output's).
fn store(spec: &EwSpec, plan: &EwPlan, tile: &Tile, out_stage: Addr) -> Stmt {
    let out_es = spec.dtype.size() as u64;
    let n_ops = spec.operands.len();
    Stmt::Copy {
        dst: Addr::new(Mem::Dram, tile.addr(plan, spec.out, n_ops, out_es)),
        src: out_stage,
        run: tile.tcx.clone().scaled(out_es),
        dims: vec![DmaDim {
            count: tile.trx.clone(),
            sstride: (plan.tc * out_es) as i64,
            dstride: plan.row_stride(n_ops) * out_es as i64,
        }],
    }
}

/// Graph IR element types as ISA memory types.
trait IntoIsa {
    fn into_isa(self) -> IsaType;
}

impl IntoIsa for DType {
    fn into_isa(self) -> IsaType {
        crate::runtime_io::isa_dtype(self)
    }
}
