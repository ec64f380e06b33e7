//! The VPU statements of an elementwise expression tree, with the
//! temporaries it needs allocated on the way.

use tessera_isa::{Bcast, BinFunc, Mem, Order, UnFunc};

use crate::kernel::{Addr, Affine, Buffer, Ext, Opnd, Stmt, VpuOp, VpuStmt};
use crate::lower::alloc::OnChip;
use crate::lower::LowerError;

use super::spec::Ew;

/// Emits VPU statements for an expression tree.
pub(super) struct Eval<'a> {
    pub(super) opnds: &'a [Opnd],
    pub(super) rows: Ext,
    pub(super) cols: Ext,
    pub(super) pitch: u64,
    pub(super) stmts: &'a mut Vec<Stmt>,
    pub(super) next_temp: usize,
    pub(super) temps: &'a mut Vec<Buffer>,
    pub(super) mem: &'a mut OnChip,
    pub(super) tile_bytes: u64,
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
    pub(super) fn emit(&mut self, e: &Ew, dst: Option<Addr>) -> Result<Opnd, LowerError> {
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
