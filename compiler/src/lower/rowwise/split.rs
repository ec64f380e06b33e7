//! Rows longer than SPM holds: a softmax, a norm or a reduction over a row
//! that does not fit is computed in passes over DRAM, each of which does
//! fit.
//!
//! A reduction of a row of `C` values is two row kernels: one over chunks
//! of `W` columns (`W` the widest divisor of `C` whose chunk fits), giving
//! `C / W` partial values per row, and one over those (itself split again
//! if needed). The row operations are composed from such reductions and
//! elementwise kernels over the whole rows, broadcasting the per-row
//! statistics:
//!
//! - softmax: `m = max(x)`, `e = exp(x - m)`, `s = sum(e)`, `y = e / s`;
//! - layer norm: `μ = mean(x)`, `v = mean((x - μ)²)`,
//!   `y = (x - μ) · rsqrt(v + ε) · scale (+ bias)`;
//! - RMS norm: `q = mean(x²)`, `y = x · rsqrt(q + ε) · scale`;
//!
//! with a residual operand added into a scratch copy first. Every pass
//! streams the rows once: a split softmax reads `x` three times (not
//! once) and writes `e` once, the price of not fitting.

use tessera_isa::{BinFunc, Target, UnFunc};

use crate::kernel::Kernel;
use crate::lower::elementwise::{elementwise, Ew, EwOperand, EwSpec};
use crate::lower::LowerError;
use crate::tensor::DType;

use super::plan::row_plan;
use super::rowwise;
use super::spec::{ReduceFn, RowOp, RowSpec, RowView};

/// The row kernel of `spec`, or, when its rows do not fit SPM, the passes
/// that compute it (scratch DRAM from `scratch`).
pub fn row_kernels(
    spec: &RowSpec,
    target: &Target,
    scratch: &dyn Fn(u64) -> u64,
) -> Result<Vec<Kernel>, LowerError> {
    match rowwise(spec, target) {
        Err(LowerError::DoesNotFit(why)) => {
            let Some((rows, cols)) = splittable(spec) else {
                return Err(LowerError::DoesNotFit(why));
            };
            let split = Split {
                node: &spec.node,
                rows,
                cols,
                target,
                scratch,
                kernels: Vec::new(),
            };
            split.run(spec)
        }
        other => other.map(|k| vec![k]),
    }
}

/// `rows × cols` when the view is dense rows of f32 (what the passes
/// handle).
fn splittable(spec: &RowSpec) -> Option<(u64, u64)> {
    let v = &spec.view;
    let dense = v.cols.1 == 1 && (v.rows.0 <= 1 || v.rows.1 == v.cols.0);
    let outer_dense = match v.outer.as_slice() {
        [] => true,
        [(_, stride)] => *stride == v.rows.0 * v.cols.0,
        _ => false,
    };
    let f32s = spec.input.1 == DType::F32 && spec.output.1 == DType::F32;
    let outer: u64 = v.outer.iter().map(|o| o.0).product();
    (dense && outer_dense && f32s).then_some((outer * v.rows.0, v.cols.0))
}

/// The passes of one split row operation.
struct Split<'a> {
    node: &'a str,
    rows: u64,
    cols: u64,
    target: &'a Target,
    scratch: &'a dyn Fn(u64) -> u64,
    kernels: Vec<Kernel>,
}

impl Split<'_> {
    fn run(mut self, spec: &RowSpec) -> Result<Vec<Kernel>, LowerError> {
        let cols = self.cols;
        let out = spec.output.0;
        let mut x = spec.input.0;
        if let Some(r) = spec.residual {
            let sum = self.scratch_rows(cols);
            self.map(
                "residual",
                &[(x, cols), (r, cols)],
                bin(BinFunc::Add, Ew::Input(0), Ew::Input(1)),
                sum,
            )?;
            x = sum;
        }
        match &spec.op {
            RowOp::Reduce(f) => self.reduce(*f, x, cols, out)?,
            RowOp::Softmax => {
                let m = self.statistic(ReduceFn::Max, x)?;
                let e = self.scratch_rows(cols);
                let shifted = bin(BinFunc::Sub, Ew::Input(0), Ew::Input(1));
                self.map(
                    "exp",
                    &[(x, cols), (m, 1)],
                    Ew::Unary(UnFunc::Exp, Box::new(shifted)),
                    e,
                )?;
                let s = self.statistic(ReduceFn::Sum, e)?;
                self.map(
                    "normalize",
                    &[(e, cols), (s, 1)],
                    bin(BinFunc::Div, Ew::Input(0), Ew::Input(1)),
                    out,
                )?;
            }
            RowOp::LayerNorm {
                epsilon,
                scale,
                bias,
            } => {
                let mean = self.statistic(ReduceFn::Mean, x)?;
                let sq = self.scratch_rows(cols);
                let d = bin(BinFunc::Sub, Ew::Input(0), Ew::Input(1));
                self.map(
                    "squared deviation",
                    &[(x, cols), (mean, 1)],
                    bin(BinFunc::Mul, d.clone(), d.clone()),
                    sq,
                )?;
                let var = self.statistic(ReduceFn::Mean, sq)?;
                let mut operands = vec![(x, cols), (mean, 1), (var, 1)];
                let mut y = bin(
                    BinFunc::Mul,
                    bin(BinFunc::Mul, d, inv_sqrt(Ew::Input(2), *epsilon)),
                    Ew::Input(3),
                );
                operands.push((*scale, 0));
                if let Some(b) = bias {
                    operands.push((*b, 0));
                    y = bin(BinFunc::Add, y, Ew::Input(4));
                }
                self.map("normalize", &operands, y, out)?;
            }
            RowOp::RmsNorm { epsilon, scale } => {
                let sq = self.scratch_rows(cols);
                self.map(
                    "square",
                    &[(x, cols)],
                    bin(BinFunc::Mul, Ew::Input(0), Ew::Input(0)),
                    sq,
                )?;
                let q = self.statistic(ReduceFn::Mean, sq)?;
                let y = bin(
                    BinFunc::Mul,
                    bin(BinFunc::Mul, Ew::Input(0), inv_sqrt(Ew::Input(1), *epsilon)),
                    Ew::Input(2),
                );
                self.map("normalize", &[(x, cols), (q, 1), (*scale, 0)], y, out)?;
            }
        }
        Ok(self.kernels)
    }

    /// `[rows, width]` f32 of scratch.
    fn scratch_rows(&self, width: u64) -> u64 {
        (self.scratch)(self.rows * width * 4)
    }

    /// One value per row of the `rows × cols` f32 at `x`, into scratch.
    fn statistic(&mut self, f: ReduceFn, x: u64) -> Result<u64, LowerError> {
        let at = self.scratch_rows(1);
        self.reduce(f, x, self.cols, at)?;
        Ok(at)
    }

    /// `f` over each row of `rows × width` f32 at `x` into `out`, in two
    /// levels (chunks, then the chunks' values) when a row does not fit.
    fn reduce(&mut self, f: ReduceFn, x: u64, width: u64, out: u64) -> Result<(), LowerError> {
        let whole = self.reduce_spec(f, x, self.rows, width, out);
        if row_plan(&whole, self.target).is_ok() {
            self.kernels.push(rowwise(&whole, self.target)?);
            return Ok(());
        }
        let chunk = (1..width)
            .rev()
            .filter(|w| width % w == 0)
            .find(|&w| {
                let trial = self.reduce_spec(f, x, self.rows * (width / w), w, out);
                row_plan(&trial, self.target).is_ok()
            })
            .filter(|&w| w > 1)
            .ok_or_else(|| {
                LowerError::DoesNotFit(format!(
                    "`{}`: no chunk of a row of {width} elements fits SPM",
                    self.node
                ))
            })?;
        let parts = width / chunk;
        let partial = self.scratch_rows(parts);
        let spec = self.reduce_spec(f, x, self.rows * parts, chunk, partial);
        self.kernels.push(rowwise(&spec, self.target)?);
        // A mean of equal chunks' means is the mean; sums and maxima
        // combine as themselves.
        self.reduce(f, partial, parts, out)
    }

    fn reduce_spec(&self, f: ReduceFn, x: u64, rows: u64, cols: u64, out: u64) -> RowSpec {
        RowSpec {
            node: self.node.to_string(),
            op: RowOp::Reduce(f),
            input: (x, DType::F32),
            residual: None,
            view: RowView {
                outer: vec![],
                rows: (rows, cols),
                cols: (cols, 1),
            },
            output: (out, DType::F32),
        }
    }

    /// An elementwise pass over the rows: operands are `(addr, width)`
    /// with width `cols` (a whole row), 1 (one value per row) or 0 (one
    /// `[cols]` vector for every row).
    fn map(
        &mut self,
        what: &str,
        operands: &[(u64, u64)],
        expr: Ew,
        out: u64,
    ) -> Result<(), LowerError> {
        let (rows, cols) = (self.rows as usize, self.cols as usize);
        let shape = |width: u64| match width {
            0 => vec![cols],
            w => vec![rows, w as usize],
        };
        let spec = EwSpec {
            node: format!("{}.{}", self.node, what.replace(' ', "_")),
            operands: operands
                .iter()
                .map(|&(addr, width)| EwOperand {
                    addr,
                    shape: shape(width),
                    dtype: DType::F32,
                    strides: None,
                })
                .collect(),
            expr,
            out,
            shape: vec![rows, cols],
            dtype: DType::F32,
            cast_only: false,
            out_strides: None,
        };
        self.kernels.push(elementwise(&spec, self.target)?);
        Ok(())
    }
}

fn bin(f: BinFunc, a: Ew, b: Ew) -> Ew {
    Ew::Binary(f, Box::new(a), Box::new(b))
}

/// `rsqrt(v + ε)`.
fn inv_sqrt(v: Ew, epsilon: f32) -> Ew {
    Ew::Unary(
        UnFunc::Rsqrt,
        Box::new(bin(BinFunc::Add, v, Ew::Scalar(epsilon))),
    )
}
