//! The vector unit's arithmetic, for the reference of a compiled program:
//! the same functions (`tessera_isa::numerics`, which the simulator runs)
//! and the same sequence of f32 operations as the kernels that compute
//! each op (`lower/rowwise/`, `lower/elementwise/`), with row sums
//! folded in the VPU's lane order (SPEC.md §4.6).
//!
//! This matters even though every value is f32 on both sides: in a
//! reduced-precision program a value that differs by one f32 ulp rounds to
//! a different bf16 operand once in about 2¹⁶ elements, that operand
//! perturbs a whole row of the next product, and in a deep model these
//! perturbations multiply layer by layer until the two computations are as
//! far apart as two unrelated bf16 roundings. Computing what the program
//! computes, operation for operation, keeps them equal.
//!
//! Row kernels, per row of `n` values (`inv_n = 1 / n` in f32):
//! - softmax: `m = max(x)`, `e = exp(x − m)`, `y = e / sum(e)`;
//! - layer norm: `mean = sum(x)·inv_n`, `d = x − mean`, `var =
//!   sum(d·d)·inv_n`, `y = d · rsqrt(var + ε) · scale (+ bias)`;
//! - RMS norm: `y = x · rsqrt(sum(x·x)·inv_n + ε) · scale`;
//! - reductions: `sum`, `sum·inv_n` (mean), `max`, over the reduced
//!   elements in row-major order.

use tessera_isa::numerics::{binary, reduce_row, unary};
use tessera_isa::{BinFunc, RedFunc, UnFunc};

use crate::graph::{GeluApprox, ReduceKind, TensorType, UnaryOp};
use crate::lower::ops::{gelu_func, unary_func};
use crate::tensor::Tensor;

use super::broadcast_index;

/// The vector unit of a target: what its arithmetic depends on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Vpu {
    /// Lanes: row reductions fold lane by lane, then pairwise.
    pub lanes: usize,
}

fn result(like: &Tensor, shape: &[usize], values: Vec<f32>) -> Result<Tensor, String> {
    Tensor::from_f32_as(like.dtype(), shape.to_vec(), values).ok_or_else(|| "shape mismatch".into())
}

impl Vpu {
    fn reduce(&self, func: RedFunc, row: &[f32]) -> f32 {
        reduce_row(func, row.iter().copied(), self.lanes)
    }

    /// A float unary op, by the VPU function the lowering picks.
    pub(crate) fn unary(&self, u: UnaryOp, x: &Tensor) -> Result<Tensor, String> {
        let func = unary_func(u);
        let values = x.to_f32_vec().into_iter().map(|v| unary(func, v)).collect();
        result(x, x.shape(), values)
    }

    /// GELU, by the VPU's function.
    pub(crate) fn gelu(&self, x: &Tensor, approximate: GeluApprox) -> Result<Tensor, String> {
        let func = gelu_func(approximate);
        let values = x.to_f32_vec().into_iter().map(|v| unary(func, v)).collect();
        result(x, x.shape(), values)
    }

    /// `x ^ y` on floats: the VPU's `powf`, whatever the exponent.
    pub(crate) fn pow(&self, x: &Tensor, y: &Tensor, ty: &TensorType) -> Result<Tensor, String> {
        let (ix, iy) = (
            broadcast_index(&ty.shape, x.shape()),
            broadcast_index(&ty.shape, y.shape()),
        );
        let (a, b) = (x.to_f32_vec(), y.to_f32_vec());
        let values = ix
            .iter()
            .zip(&iy)
            .map(|(&i, &j)| binary(BinFunc::Pow, a[i], b[j], 0.0))
            .collect();
        Tensor::from_f32_as(ty.dtype, ty.shape.clone(), values)
            .ok_or_else(|| "shape mismatch".into())
    }

    /// Softmax along `axis`, as the row kernel computes it.
    pub(crate) fn softmax(&self, x: &Tensor, axis: usize) -> Result<Tensor, String> {
        let shape = x.shape();
        let (outer, n, inner) = (
            shape[..axis].iter().product::<usize>(),
            shape[axis],
            shape[axis + 1..].iter().product::<usize>(),
        );
        let mut values = x.to_f32_vec();
        let mut row = vec![0f32; n];
        for o in 0..outer {
            for i in 0..inner {
                let at = |j: usize| (o * n + j) * inner + i;
                for (j, r) in row.iter_mut().enumerate() {
                    *r = values[at(j)];
                }
                let max = self.reduce(RedFunc::Max, &row);
                for r in row.iter_mut() {
                    *r = unary(UnFunc::Exp, *r - max);
                }
                let sum = self.reduce(RedFunc::Sum, &row);
                for (j, r) in row.iter().enumerate() {
                    values[at(j)] = r / sum;
                }
            }
        }
        result(x, shape, values)
    }

    /// Layer norm (`rms = false`) or RMS norm over dims `axis..`, as the
    /// row kernel computes them.
    pub(crate) fn norm(
        &self,
        x: &Tensor,
        scale: &Tensor,
        bias: Option<&Tensor>,
        axis: usize,
        epsilon: f32,
        rms: bool,
    ) -> Result<Tensor, String> {
        let shape = x.shape();
        let n: usize = shape[axis..].iter().product();
        let inv_n = 1.0 / n as f32;
        let mut values = x.to_f32_vec();
        let scale_at = broadcast_index(shape, scale.shape());
        let scale_values = scale.to_f32_vec();
        let bias = bias.map(|b| (broadcast_index(shape, b.shape()), b.to_f32_vec()));
        let mut squares = vec![0f32; n];
        for (r, row) in values.chunks_mut(n.max(1)).enumerate() {
            if !rms {
                let mean = self.reduce(RedFunc::Sum, row) * inv_n;
                row.iter_mut().for_each(|v| *v -= mean);
            }
            for (s, v) in squares.iter_mut().zip(row.iter()) {
                *s = v * v;
            }
            let var = self.reduce(RedFunc::Sum, &squares) * inv_n;
            let rstd = unary(UnFunc::Rsqrt, var + epsilon);
            for (j, v) in row.iter_mut().enumerate() {
                let k = r * n + j;
                *v = *v * rstd * scale_values[scale_at[k]];
                if let Some((at, b)) = &bias {
                    *v += b[at[k]];
                }
            }
        }
        result(x, shape, values)
    }

    /// A float reduction over `axes` (sum, mean, max), as the row kernel
    /// computes it; `ty` is the result type.
    pub(crate) fn reduce_axes(
        &self,
        x: &Tensor,
        kind: ReduceKind,
        axes: &[usize],
        ty: &TensorType,
    ) -> Result<Tensor, String> {
        let keep_shape = super::reduce::kept_shape(x.shape(), axes);
        let out_len: usize = keep_shape.iter().product();
        let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
        // In row-major order, each output's elements arrive in the
        // row-major order of the reduced axes: the kernel's row.
        let mut rows = vec![Vec::with_capacity(count); out_len];
        let target = broadcast_index(x.shape(), &keep_shape);
        for (v, &t) in x.to_f32_vec().into_iter().zip(&target) {
            rows[t].push(v);
        }
        let inv_n = 1.0 / count as f32;
        let values = rows
            .iter()
            .map(|row| match kind {
                ReduceKind::Sum => self.reduce(RedFunc::Sum, row),
                ReduceKind::Mean => self.reduce(RedFunc::Sum, row) * inv_n,
                ReduceKind::Max => self.reduce(RedFunc::Max, row),
            })
            .collect();
        Tensor::from_f32_as(ty.dtype, ty.shape.clone(), values)
            .ok_or_else(|| "shape mismatch".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v)
    }

    #[test]
    fn sums_fold_lane_by_lane() {
        // 2 lanes over [1e8, 1, -1e8, 1]: lane 0 = 1e8 + -1e8 = 0, lane 1 =
        // 1 + 1 = 2, total 2; in order (or in f64) the 1s are absorbed
        // differently: ((1e8 + 1) − 1e8) + 1 = 1 in f32.
        let x = t(&[1, 4], vec![1e8, 1.0, -1e8, 1.0]);
        let ty = TensorType::new(DType::F32, vec![1]);
        let two = Vpu { lanes: 2 }.reduce_axes(&x, ReduceKind::Sum, &[1], &ty);
        assert_eq!(two.expect("ok").to_f32_vec(), vec![2.0]);
        let one = Vpu { lanes: 1 }.reduce_axes(&x, ReduceKind::Sum, &[1], &ty);
        assert_eq!(one.expect("ok").to_f32_vec(), vec![1.0]);
    }

    #[test]
    fn layer_norm_subtracts_the_mean_then_scales_by_rsqrt() {
        // [1, 3]: mean 2, d = [-1, 1], var 1, rsqrt(1 + 0) = 1; scale 2,
        // bias 0.5: [-1.5, 2.5].
        let y = Vpu { lanes: 8 }
            .norm(
                &t(&[1, 2], vec![1.0, 3.0]),
                &t(&[2], vec![2.0, 2.0]),
                Some(&t(&[2], vec![0.5, 0.5])),
                1,
                0.0,
                false,
            )
            .expect("ok");
        assert_eq!(y.to_f32_vec(), vec![-1.5, 2.5]);
        // RMS: [3, 4] → mean square 12.5, x / sqrt(12.5).
        let y = Vpu { lanes: 8 }
            .norm(
                &t(&[1, 2], vec![3.0, 4.0]),
                &t(&[2], vec![1.0, 1.0]),
                None,
                1,
                0.0,
                true,
            )
            .expect("ok");
        let r = unary(UnFunc::Rsqrt, 12.5);
        assert_eq!(y.to_f32_vec(), vec![3.0 * r, 4.0 * r]);
    }

    #[test]
    fn softmax_divides_by_the_sum_along_a_middle_axis() {
        // [2, 2, 1] along axis 1: rows (x[0,0], x[0,1]) and (x[1,0], x[1,1]).
        let y = Vpu { lanes: 8 }
            .softmax(&t(&[2, 2, 1], vec![0.0, 0.0, 1.0, 1.0]), 1)
            .expect("ok");
        assert_eq!(y.to_f32_vec(), vec![0.5; 4]);
    }
}
