//! Reductions and the ops built on them: reduce, softmax, layer norm, RMS
//! norm. Sums and statistics accumulate in f64.

use crate::graph::{ReduceKind, TensorType};
use crate::tensor::{DType, Tensor, TensorData};

use super::broadcast_index;

/// `shape` with the reduced `axes` kept as 1.
pub(crate) fn kept_shape(shape: &[usize], axes: &[usize]) -> Vec<usize> {
    shape
        .iter()
        .enumerate()
        .map(|(d, &n)| if axes.contains(&d) { 1 } else { n })
        .collect()
}

/// Reduces over `axes`; `ty` is the result type.
pub(crate) fn reduce(
    x: &Tensor,
    kind: ReduceKind,
    axes: &[usize],
    ty: &TensorType,
) -> Result<Tensor, String> {
    let keep_shape = kept_shape(x.shape(), axes);
    let out_len: usize = keep_shape.iter().product();
    let target = broadcast_index(x.shape(), &keep_shape);
    let count: usize = axes.iter().map(|&a| x.shape()[a]).product();
    let dtype = x.dtype();
    if dtype == DType::Bool {
        if kind != ReduceKind::Max {
            return Err("only reduce_max takes bool".into());
        }
        let mut out = vec![false; out_len];
        for (v, &t) in x.to_bool_vec().into_iter().zip(&target) {
            out[t] |= v;
        }
        return Tensor::new(ty.shape.clone(), TensorData::Bool(out))
            .ok_or_else(|| "shape mismatch".into());
    }
    if dtype.is_float() {
        let values = x.to_f32_vec();
        let out: Vec<f32> = match kind {
            ReduceKind::Sum | ReduceKind::Mean => {
                let mut acc = vec![0f64; out_len];
                for (v, &t) in values.into_iter().zip(&target) {
                    acc[t] += f64::from(v);
                }
                let scale = if kind == ReduceKind::Mean {
                    count as f64
                } else {
                    1.0
                };
                acc.into_iter().map(|s| (s / scale) as f32).collect()
            }
            ReduceKind::Max => {
                let mut acc = vec![f32::NEG_INFINITY; out_len];
                for (v, &t) in values.into_iter().zip(&target) {
                    if v.is_nan() || acc[t].is_nan() {
                        acc[t] = f32::NAN;
                    } else if v > acc[t] {
                        acc[t] = v;
                    }
                }
                acc
            }
        };
        return Tensor::from_f32_as(dtype, ty.shape.clone(), out)
            .ok_or_else(|| "shape mismatch".into());
    }
    let values = x.to_i64_vec();
    let out: Vec<i64> = match kind {
        ReduceKind::Sum => {
            let mut acc = vec![0i64; out_len];
            for (v, &t) in values.into_iter().zip(&target) {
                acc[t] = acc[t].wrapping_add(v);
            }
            acc
        }
        ReduceKind::Max => {
            let lowest = match dtype {
                DType::I32 => i64::from(i32::MIN),
                DType::I8 => i64::from(i8::MIN),
                DType::U8 => 0,
                _ => i64::MIN,
            };
            let mut acc = vec![lowest; out_len];
            for (v, &t) in values.into_iter().zip(&target) {
                acc[t] = acc[t].max(v);
            }
            acc
        }
        ReduceKind::Mean => return Err(format!("reduce_mean does not take {dtype}")),
    };
    Tensor::from_i64_as(dtype, ty.shape.clone(), out).ok_or_else(|| "shape mismatch".into())
}

/// `(outer, n, inner)` view of a shape around `axis`.
fn split_at_axis(shape: &[usize], axis: usize) -> (usize, usize, usize) {
    (
        shape[..axis].iter().product(),
        shape[axis],
        shape[axis + 1..].iter().product(),
    )
}

/// Softmax along `axis`.
pub(crate) fn softmax(x: &Tensor, axis: usize) -> Result<Tensor, String> {
    let (outer, n, inner) = split_at_axis(x.shape(), axis);
    let mut values = x.to_f32_vec();
    for o in 0..outer {
        for i in 0..inner {
            let at = |j: usize| (o * n + j) * inner + i;
            let max = (0..n)
                .map(|j| values[at(j)])
                .fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0f64;
            for j in 0..n {
                let e = (values[at(j)] - max).exp();
                values[at(j)] = e;
                sum += f64::from(e);
            }
            for j in 0..n {
                values[at(j)] = (f64::from(values[at(j)]) / sum) as f32;
            }
        }
    }
    Tensor::from_f32_as(x.dtype(), x.shape().to_vec(), values)
        .ok_or_else(|| "shape mismatch".into())
}

/// Normalizes each row of the `[prod(shape[..axis]), prod(shape[axis..])]`
/// view: `row -> (row - shift) * inv(row)`, then applies scale and bias
/// broadcast against the full shape.
fn normalize(
    x: &Tensor,
    axis: usize,
    stats: impl Fn(&[f32]) -> (f64, f64),
    scale: &Tensor,
    bias: Option<&Tensor>,
) -> Result<Tensor, String> {
    let shape = x.shape();
    let row: usize = shape[axis..].iter().product();
    let values = x.to_f32_vec();
    let scale_at = broadcast_index(shape, scale.shape());
    let scale_values = scale.to_f32_vec();
    let bias_parts = bias.map(|b| (broadcast_index(shape, b.shape()), b.to_f32_vec()));
    let mut out = vec![0f32; values.len()];
    if row > 0 {
        for (r, chunk) in values.chunks(row).enumerate() {
            let (shift, inv) = stats(chunk);
            for (j, &v) in chunk.iter().enumerate() {
                let k = r * row + j;
                let mut y = ((f64::from(v) - shift) * inv) as f32 * scale_values[scale_at[k]];
                if let Some((at, b)) = &bias_parts {
                    y += b[at[k]];
                }
                out[k] = y;
            }
        }
    }
    Tensor::from_f32_as(x.dtype(), shape.to_vec(), out).ok_or_else(|| "shape mismatch".into())
}

/// Layer normalization over dims `axis..`.
pub(crate) fn layer_norm(
    x: &Tensor,
    scale: &Tensor,
    bias: Option<&Tensor>,
    axis: usize,
    epsilon: f32,
) -> Result<Tensor, String> {
    let stats = |row: &[f32]| {
        let n = row.len() as f64;
        let mean = row.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
        let var = row
            .iter()
            .map(|&v| (f64::from(v) - mean).powi(2))
            .sum::<f64>()
            / n;
        (mean, 1.0 / (var + f64::from(epsilon)).sqrt())
    };
    normalize(x, axis, stats, scale, bias)
}

/// RMS normalization over dims `axis..`.
pub(crate) fn rms_norm(
    x: &Tensor,
    scale: &Tensor,
    axis: usize,
    epsilon: f32,
) -> Result<Tensor, String> {
    let stats = |row: &[f32]| {
        let n = row.len() as f64;
        let mean_square = row.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>() / n;
        (0.0, 1.0 / (mean_square + f64::from(epsilon)).sqrt())
    };
    normalize(x, axis, stats, scale, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reduce_sum_and_max_over_an_axis() {
        let x = Tensor::from_f32(&[2, 3], vec![1.0, 5.0, 3.0, -4.0, -2.0, -6.0]);
        let sum = reduce(
            &x,
            ReduceKind::Sum,
            &[1],
            &TensorType::new(DType::F32, vec![2]),
        )
        .expect("ok");
        assert_eq!(sum.to_f32_vec(), vec![9.0, -12.0]);
        let max = reduce(
            &x,
            ReduceKind::Max,
            &[0],
            &TensorType::new(DType::F32, vec![1, 3]),
        )
        .expect("ok");
        assert_eq!(max.to_f32_vec(), vec![1.0, 5.0, 3.0]);
    }

    #[test]
    fn empty_reductions_give_identities() {
        let x = Tensor::from_f32(&[2, 0], vec![]);
        let sum = reduce(
            &x,
            ReduceKind::Sum,
            &[1],
            &TensorType::new(DType::F32, vec![2]),
        )
        .expect("ok");
        assert_eq!(sum.to_f32_vec(), vec![0.0, 0.0]);
        let max = reduce(
            &x,
            ReduceKind::Max,
            &[1],
            &TensorType::new(DType::F32, vec![2]),
        )
        .expect("ok");
        assert_eq!(max.to_f32_vec(), vec![f32::NEG_INFINITY; 2]);
    }

    #[test]
    fn softmax_rows_sum_to_one_and_match_values() {
        let x = Tensor::from_f32(&[2, 2], vec![0.0, 0.0, 1.0, 3.0]);
        let y = softmax(&x, 1).expect("ok").to_f32_vec();
        assert_eq!(&y[..2], &[0.5, 0.5]);
        let e = 2f32.exp();
        assert!((y[3] - e / (1.0 + e)).abs() < 1e-7);
        // Along axis 0 instead: columns.
        let y0 = softmax(&x, 0).expect("ok").to_f32_vec();
        assert!((y0[0] + y0[2] - 1.0).abs() < 1e-7);
    }

    #[test]
    fn layer_norm_normalizes_then_scales() {
        let x = Tensor::from_f32(&[1, 4], vec![1.0, 2.0, 3.0, 4.0]);
        let scale = Tensor::from_f32(&[4], vec![2.0; 4]);
        let bias = Tensor::from_f32(&[4], vec![1.0; 4]);
        let y = layer_norm(&x, &scale, Some(&bias), 1, 0.0)
            .expect("ok")
            .to_f32_vec();
        // mean 2.5, var 1.25.
        let inv = 1.0 / 1.25f32.sqrt();
        let expected: Vec<f32> = [-1.5f32, -0.5, 0.5, 1.5]
            .iter()
            .map(|d| d * inv * 2.0 + 1.0)
            .collect();
        for (a, b) in y.iter().zip(&expected) {
            assert!((a - b).abs() < 1e-6, "{y:?} vs {expected:?}");
        }
    }

    #[test]
    fn rms_norm_divides_by_root_mean_square() {
        let x = Tensor::from_f32(&[2], vec![3.0, 4.0]);
        let scale = Tensor::from_f32(&[2], vec![1.0, 10.0]);
        let y = rms_norm(&x, &scale, 0, 0.0).expect("ok").to_f32_vec();
        let rms = 12.5f32.sqrt();
        assert!(
            (y[0] - 3.0 / rms).abs() < 1e-6 && (y[1] - 40.0 / rms).abs() < 1e-5,
            "{y:?}"
        );
    }
}
