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

use tessera_isa::{Bcast, BinFunc, DType as IsaType, Mem, Order, Target, UnFunc};

use crate::tensor::DType;

use crate::kernel::{Addr, Affine, DmaDim, Ext, Kernel, Opnd, Stmt, VpuOp, VpuStmt};

use super::alloc::{tiles, OnChip, Vars};
use super::pipeline::{build, Stream};
use super::LowerError;

/// An elementwise expression over the kernel's operands.
#[derive(Clone, Debug, PartialEq)]
pub enum Ew {
    /// Operand `i`.
    Input(usize),
    /// A constant.
    Scalar(f32),
    /// A unary function.
    Unary(UnFunc, Box<Ew>),
    /// A binary function.
    Binary(BinFunc, Box<Ew>, Box<Ew>),
    /// `cond != 0 ? a : b`.
    Select(Box<Ew>, Box<Ew>, Box<Ew>),
}

/// An operand in DRAM.
#[derive(Clone, Debug, PartialEq)]
pub struct EwOperand {
    /// Byte address.
    pub addr: u64,
    /// Shape (broadcastable to the output, right-aligned).
    pub shape: Vec<usize>,
    /// Element type.
    pub dtype: DType,
    /// Explicit element strides over the output's dimensions (a strided
    /// view, e.g. half of each row); `None` for a dense, broadcast operand.
    pub strides: Option<Vec<i64>>,
}

/// The whole kernel description.
#[derive(Clone, Debug, PartialEq)]
pub struct EwSpec {
    /// Source node.
    pub node: String,
    /// Operands.
    pub operands: Vec<EwOperand>,
    /// The value computed (fp32).
    pub expr: Ew,
    /// Output address.
    pub out: u64,
    /// Output shape.
    pub shape: Vec<usize>,
    /// Output element type (the fp32 result is converted to it).
    pub dtype: DType,
    /// When set, the output is a plain conversion of operand 0 (no fp32
    /// round trip: exact integer casts).
    pub cast_only: bool,
    /// Explicit output element strides (a strided view); `None` for dense.
    pub out_strides: Option<Vec<i64>>,
}

/// Element strides of an operand over the output's dimensions (0 where it
/// broadcasts).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let r = out.len();
    let offset = r - shape.len().min(r);
    let mut dense = vec![0i64; shape.len()];
    let mut s = 1i64;
    for d in (0..shape.len()).rev() {
        dense[d] = s;
        s *= shape[d] as i64;
    }
    (0..r)
        .map(|d| {
            if d < offset {
                0
            } else {
                let od = d - offset;
                if shape[od] == 1 && out[d] != 1 {
                    0
                } else {
                    dense[od]
                }
            }
        })
        .collect()
}

/// Merges adjacent dimensions across which every stride list is
/// contiguous; drops size-1 dimensions. Returns sizes and per-list strides.
pub fn coalesce(sizes: &[usize], strides: &[Vec<i64>]) -> (Vec<u64>, Vec<Vec<i64>>) {
    let mut out_sizes: Vec<u64> = Vec::new();
    let mut out_strides: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for d in 0..sizes.len() {
        if sizes[d] == 1 {
            continue;
        }
        let mergeable = !out_sizes.is_empty()
            && strides.iter().enumerate().all(|(i, s)| {
                let prev = *out_strides[i].last().unwrap_or(&0);
                prev == s[d] * sizes[d] as i64
            });
        if mergeable {
            let last = out_sizes.len() - 1;
            out_sizes[last] *= sizes[d] as u64;
            for (i, s) in strides.iter().enumerate() {
                out_strides[i][last] = s[d];
            }
        } else {
            out_sizes.push(sizes[d] as u64);
            for (i, s) in strides.iter().enumerate() {
                out_strides[i].push(s[d]);
            }
        }
    }
    if out_sizes.is_empty() {
        out_sizes.push(1);
        for s in &mut out_strides {
            s.push(0);
        }
    }
    (out_sizes, out_strides)
}

/// How an operand is laid out in a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Layout {
    Full,
    Row,
    Col,
    Scalar,
}

fn count_nodes(e: &Ew) -> usize {
    match e {
        Ew::Input(_) | Ew::Scalar(_) => 0,
        Ew::Unary(_, a) => 1 + count_nodes(a),
        Ew::Binary(_, a, b) => 1 + count_nodes(a) + count_nodes(b),
        Ew::Select(c, a, b) => 1 + count_nodes(c) + count_nodes(a) + count_nodes(b),
    }
}

/// Builds the kernel.
pub fn elementwise(spec: &EwSpec, target: &Target) -> Result<Kernel, LowerError> {
    let out_dims = if spec.shape.is_empty() {
        vec![1]
    } else {
        spec.shape.clone()
    };
    let mut stride_lists: Vec<Vec<i64>> = spec
        .operands
        .iter()
        .map(|o| {
            o.strides
                .clone()
                .unwrap_or_else(|| broadcast_strides(&o.shape, &out_dims))
        })
        .collect();
    stride_lists.push(
        spec.out_strides
            .clone()
            .unwrap_or_else(|| broadcast_strides(&out_dims, &out_dims)),
    );
    let (mut sizes, mut strides) = coalesce(&out_dims, &stride_lists);
    // A long last dimension (typically everything merged into one) becomes
    // rows × columns, so tiles have many rows and the pipeline has many
    // tiles to overlap.
    let last = sizes.len() - 1;
    if sizes[last] > 2048 && strides.iter().all(|s| s[last] == 0 || s[last] == 1) {
        let lanes = u64::from(target.vpu_lanes);
        let split = (lanes.max(64)..=2048u64)
            .rev()
            .find(|c| sizes[last] % c == 0 && c % lanes == 0)
            .or_else(|| (64..=2048u64).rev().find(|c| sizes[last] % c == 0));
        if let Some(c) = split {
            sizes[last] /= c;
            sizes.push(c);
            for s in &mut strides {
                let inner = s[last];
                s[last] = inner * c as i64;
                s.push(inner);
            }
        }
    }
    let k = sizes.len();
    let cols = sizes[k - 1];
    let rows = if k >= 2 { sizes[k - 2] } else { 1 };
    let outer_sizes: Vec<u64> = if k >= 3 {
        sizes[..k - 2].to_vec()
    } else {
        vec![]
    };
    let col_stride = |i: usize| strides[i][k - 1];
    let row_stride = |i: usize| if k >= 2 { strides[i][k - 2] } else { 0 };
    let layouts: Vec<Layout> = (0..spec.operands.len())
        .map(
            |i| match (col_stride(i) != 0, row_stride(i) != 0 || rows == 1) {
                (true, true) => Layout::Full,
                (true, false) => Layout::Row,
                (false, true) if rows > 1 => Layout::Col,
                _ => Layout::Scalar,
            },
        )
        .collect();

    // Tile sizes: bytes(tr, tc) = tc·A + tr·B + tr·tc·C + D must fit SPM.
    let temps = count_nodes(&spec.expr) as u64 + 1;
    let lanes = u64::from(target.vpu_lanes);
    let stage = |d: DType| {
        if d == DType::F32 || spec.cast_only {
            0
        } else {
            d.size() as u64
        }
    };
    let (mut ca, mut cb, mut cc, mut cd) = (0u64, 0u64, 0u64, 0u64);
    for (l, o) in layouts.iter().zip(&spec.operands) {
        let per = 2 * (4 + stage(o.dtype));
        match l {
            Layout::Full => cc += per,
            Layout::Row => ca += per,
            Layout::Col => cb += per,
            Layout::Scalar => cd += 2 * 2 * 64,
        }
    }
    cc += 4 * temps + 2 * (4 + spec.dtype.size() as u64);
    cd += 64 * (2 * spec.operands.len() as u64 * 2 + temps + 4);
    let bytes = |tr: u64, tc: u64| tc * ca + tr * cb + tr * tc * cc + cd;
    let budget = target.spm_bytes;
    let mut tc = cols.min(1024);
    while tc > lanes && bytes(4.min(rows), tc) > budget {
        tc = (tc / 2).div_ceil(lanes) * lanes;
    }
    let tc = tc.min(cols).max(1);
    let mut tr_cap = rows.min(4096);
    while tr_cap > 1 && bytes(tr_cap, tc) > budget {
        tr_cap = tr_cap * 3 / 4;
    }
    if bytes(tr_cap, tc) > budget {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: a row of {tc} elements with {} operands exceeds SPM",
            spec.node,
            spec.operands.len()
        )));
    }
    // At least four tiles when there are rows enough (pipelining).
    let tr_cap = if rows >= 16 {
        tr_cap.min(rows.div_ceil(4))
    } else {
        tr_cap
    };
    let tr = super::alloc::balanced_tile(rows, tr_cap);

    let mut mem = OnChip::new(target);
    let mut vars = Vars::default();
    let outer_vars: Vec<_> = outer_sizes.iter().map(|&n| (vars.fresh(), n)).collect();
    let vc = vars.fresh();
    let vr = vars.fresh();
    let slot = vars.fresh();
    let slot_a = Affine::var(0, slot, 1);
    let col0 = Affine::var(0, vc, tc as i64);
    let row0 = Affine::var(0, vr, tr as i64);
    let tcx = Ext::tile(tc, cols, col0);
    let trx = Ext::tile(tr, rows, row0);

    // DRAM address of the tile's element (0, 0) for stride list i.
    let tile_addr = |base: u64, i: usize, esize: u64| -> Affine {
        let mut a = Affine::c(base as i64);
        for (d, &(v, _)) in outer_vars.iter().enumerate() {
            a = a.plus(v, strides[i][d] * esize as i64);
        }
        a = a.plus(vc, col_stride(i) * (tc * esize) as i64);
        a.plus(vr, row_stride(i) * (tr * esize) as i64)
    };

    let mut loads = Vec::new();
    let mut prep = Vec::new();
    let mut opnds: Vec<Opnd> = Vec::new();
    for (i, (o, layout)) in spec.operands.iter().zip(&layouts).enumerate() {
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
        let src = Addr::new(Mem::Dram, tile_addr(o.addr, i, es));
        let dst = stage.at(&slot_a, 0);
        let (run, dims, rows_ext, cols_ext, pitch) = match layout {
            Layout::Full => (
                tcx.clone().scaled(es),
                vec![DmaDim {
                    count: trx.clone(),
                    sstride: row_stride(i) * es as i64,
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
                    sstride: row_stride(i) * es as i64,
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

    let out_es = spec.dtype.size() as u64;
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
    let mut compute = prep;
    if spec.cast_only {
        let src = &opnds[0];
        compute.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: spec.dtype.into_isa(),
                a: src.addr.clone(),
                atype: spec.operands[0].dtype.into_isa(),
                astride: if layouts[0] == Layout::Full {
                    tc * spec.operands[0].dtype.size() as u64
                } else {
                    0
                },
            },
            dst: out_stage.at(&slot_a, 0),
            dstride: tc * out_es,
            rows: trx.clone(),
            cols: tcx.clone(),
        }));
        if layouts[0] != Layout::Full {
            return Err(LowerError::Unsupported {
                node: spec.node.clone(),
                message: "a broadcasting cast".into(),
            });
        }
    } else {
        let mut temps_bufs = Vec::new();
        let mut eval = Eval {
            opnds: &opnds,
            rows: trx.clone(),
            cols: tcx.clone(),
            pitch: tc,
            stmts: &mut compute,
            next_temp: 0,
            temps: &mut temps_bufs,
            mem: &mut mem,
            tile_bytes: tr * tc * 4,
        };
        let dst = out_f32.at(&slot_a, 0);
        eval.emit(&spec.expr, Some(dst))?;
        if spec.dtype != DType::F32 {
            compute.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Cvt {
                    dtype: spec.dtype.into_isa(),
                    a: out_f32.at(&slot_a, 0),
                    atype: IsaType::F32,
                    astride: tc * 4,
                },
                dst: out_stage.at(&slot_a, 0),
                dstride: tc * out_es,
                rows: trx.clone(),
                cols: tcx.clone(),
            }));
        }
    }
    let n_ops = spec.operands.len();
    let stores = vec![Stmt::Copy {
        dst: Addr::new(Mem::Dram, tile_addr(spec.out, n_ops, out_es)),
        src: out_stage.at(&slot_a, 0),
        run: tcx.clone().scaled(out_es),
        dims: vec![DmaDim {
            count: trx.clone(),
            sstride: (tc * out_es) as i64,
            dstride: row_stride(n_ops) * out_es as i64,
        }],
    }];
    let mut outer = outer_vars.clone();
    outer.push((vc, tiles(cols, tc)));
    let body = build(Stream {
        outer,
        inner: (vr, tiles(rows, tr)),
        slot,
        loads,
        compute,
        stores,
    });
    let numel: u64 = sizes.iter().product();
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
        rotators: vec![(slot, 2)],
        macs: 0,
        compulsory_dram_bytes: in_bytes + numel * out_es,
    })
}

/// Emits VPU statements for an expression tree.
struct Eval<'a> {
    opnds: &'a [Opnd],
    rows: Ext,
    cols: Ext,
    pitch: u64,
    stmts: &'a mut Vec<Stmt>,
    next_temp: usize,
    temps: &'a mut Vec<crate::kernel::Buffer>,
    mem: &'a mut OnChip,
    tile_bytes: u64,
}

impl Eval<'_> {
    fn temp(&mut self) -> Result<Addr, LowerError> {
        if self.next_temp == self.temps.len() {
            let b = self.mem.alloc(
                &format!("t{}", self.next_temp),
                Mem::Spm,
                self.tile_bytes,
                1,
            )?;
            self.temps.push(b);
        }
        self.next_temp += 1;
        Ok(self.temps[self.next_temp - 1].at(&Affine::c(0), 0))
    }

    fn full(&self, a: Addr) -> Opnd {
        Opnd {
            addr: a,
            stride: self.pitch * 4,
            bcast: Bcast::Full,
        }
    }

    /// `dst`, or a fresh temporary.
    fn dest(&mut self, dst: Option<Addr>) -> Result<Addr, LowerError> {
        match dst {
            Some(d) => Ok(d),
            None => self.temp(),
        }
    }

    fn un(&self, func: UnFunc, dst: &Addr, a: Opnd) -> VpuStmt {
        VpuStmt {
            op: VpuOp::Un { func, a },
            dst: dst.clone(),
            dstride: self.pitch * 4,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
        }
    }

    fn bin(&self, func: BinFunc, dst: &Addr, a: Opnd, b: Opnd) -> VpuStmt {
        VpuStmt {
            op: VpuOp::Bin { func, a, b },
            dst: dst.clone(),
            dstride: self.pitch * 4,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
        }
    }

    fn bin_scalar(&self, func: BinFunc, dst: &Addr, a: Opnd, scalar: f32, order: Order) -> VpuStmt {
        VpuStmt {
            op: VpuOp::BinS {
                func,
                a,
                scalar,
                order,
            },
            dst: dst.clone(),
            dstride: self.pitch * 4,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
        }
    }

    fn fill(&self, dst: &Addr, x: f32) -> VpuStmt {
        VpuStmt {
            op: VpuOp::Fill { bits: x.to_bits() },
            dst: dst.clone(),
            dstride: self.pitch * 4,
            rows: self.rows.clone(),
            cols: self.cols.clone(),
        }
    }

    /// Evaluates `e` into `dst` (or a fresh temporary); returns where the
    /// value is (leaves return their operand without copying when `dst`
    /// is `None`).
    fn emit(&mut self, e: &Ew, dst: Option<Addr>) -> Result<Opnd, LowerError> {
        let (d, stmt) = match e {
            Ew::Input(i) => {
                let o = self.opnds[*i].clone();
                let Some(d) = dst else {
                    return Ok(o);
                };
                let stmt = self.un(UnFunc::Mov, &d, o);
                (d, stmt)
            }
            Ew::Scalar(x) => {
                let d = self.dest(dst)?;
                (d.clone(), self.fill(&d, *x))
            }
            Ew::Unary(f, a) => {
                let av = self.emit(a, None)?;
                let d = self.dest(dst)?;
                (d.clone(), self.un(*f, &d, av))
            }
            Ew::Binary(f, a, b) => match (a.as_ref(), b.as_ref()) {
                (_, Ew::Scalar(s)) => {
                    let av = self.emit(a, None)?;
                    let d = self.dest(dst)?;
                    (d.clone(), self.bin_scalar(*f, &d, av, *s, Order::As))
                }
                (Ew::Scalar(s), _) => {
                    let bv = self.emit(b, None)?;
                    let d = self.dest(dst)?;
                    (d.clone(), self.bin_scalar(*f, &d, bv, *s, Order::Sa))
                }
                _ => {
                    let av = self.emit(a, None)?;
                    let bv = self.emit(b, None)?;
                    let d = self.dest(dst)?;
                    (d.clone(), self.bin(*f, &d, av, bv))
                }
            },
            Ew::Select(c, a, b) => {
                // The condition goes into the destination, then `sel`.
                let d = self.dest(dst)?;
                let av = match a.as_ref() {
                    Ew::Scalar(_) => None,
                    other => Some(self.emit(other, None)?),
                };
                let bv = match b.as_ref() {
                    Ew::Scalar(_) => None,
                    other => Some(self.emit(other, None)?),
                };
                self.emit(c, Some(d.clone()))?;
                let stmt = match (av, bv, a.as_ref(), b.as_ref()) {
                    (Some(av), Some(bv), _, _) => self.bin(BinFunc::Sel, &d, av, bv),
                    (Some(av), None, _, Ew::Scalar(s)) => {
                        self.bin_scalar(BinFunc::Sel, &d, av, *s, Order::As)
                    }
                    (None, Some(bv), Ew::Scalar(s), _) => {
                        self.bin_scalar(BinFunc::Sel, &d, bv, *s, Order::Sa)
                    }
                    _ => {
                        // Both constant: `x` goes into a temporary, then
                        // sel(cond, t, y).
                        let (Ew::Scalar(x), Ew::Scalar(y)) = (a.as_ref(), b.as_ref()) else {
                            return Err(LowerError::Unsupported {
                                node: String::new(),
                                message: "select form".into(),
                            });
                        };
                        let t = self.temp()?;
                        self.stmts.push(Stmt::Vpu(self.fill(&t, *x)));
                        self.bin_scalar(BinFunc::Sel, &d, self.full(t), *y, Order::As)
                    }
                };
                (d, stmt)
            }
        };
        self.stmts.push(Stmt::Vpu(stmt));
        Ok(self.full(d))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_dims_get_zero_strides_and_merge() {
        // [2, 3, 4] + [4] + [3, 1]
        let out = [2, 3, 4];
        let lists = vec![
            broadcast_strides(&[4], &out),
            broadcast_strides(&[3, 1], &out),
            broadcast_strides(&out, &out),
        ];
        assert_eq!(lists[0], vec![0, 0, 1]);
        assert_eq!(lists[1], vec![0, 1, 0]);
        let (sizes, strides) = coalesce(&out, &lists);
        assert_eq!(sizes, vec![2, 3, 4]);
        assert_eq!(strides[2], vec![12, 4, 1]);
        // Two full operands merge into one dimension.
        let (sizes, _) = coalesce(
            &out,
            &[broadcast_strides(&out, &out), broadcast_strides(&out, &out)],
        );
        assert_eq!(sizes, vec![24]);
    }
}
