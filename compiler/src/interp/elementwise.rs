//! Elementwise ops: unary, binary with broadcasting, where, cast, gelu.

use half::{bf16, f16};

use crate::graph::{BinaryOp, GeluApprox, TensorType, UnaryOp};
use crate::tensor::{DType, Tensor, TensorData};

/// For each element of `out_shape` (row-major), the flat index of the
/// element of a tensor of `in_shape` that NumPy broadcasting reads there.
/// Also maps each element of a tensor to its reduced position when
/// `in_shape` is the tensor's shape with reduced axes set to 1.
pub(crate) fn broadcast_index(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let n: usize = out_shape.iter().product();
    if out_shape == in_shape {
        return (0..n).collect();
    }
    let rank = out_shape.len();
    let offset = rank - in_shape.len();
    let in_strides = crate::tensor::strides(in_shape);
    // Stride of each output dimension in the input (0 where broadcast).
    let strides: Vec<usize> = (0..rank)
        .map(|d| {
            if d < offset || in_shape[d - offset] == 1 {
                0
            } else {
                in_strides[d - offset]
            }
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    super::for_each_index(out_shape, |idx| {
        out.push(idx.iter().zip(&strides).map(|(i, s)| i * s).sum());
    });
    out
}

fn float_result(dtype: DType, shape: &[usize], values: Vec<f32>) -> Result<Tensor, String> {
    Tensor::from_f32_as(dtype, shape.to_vec(), values)
        .ok_or_else(|| format!("cannot build a {dtype} result"))
}

fn int_result(dtype: DType, shape: &[usize], values: Vec<i64>) -> Result<Tensor, String> {
    Tensor::from_i64_as(dtype, shape.to_vec(), values)
        .ok_or_else(|| format!("cannot build a {dtype} result"))
}

fn bool_result(shape: &[usize], values: Vec<bool>) -> Result<Tensor, String> {
    Tensor::new(shape.to_vec(), TensorData::Bool(values))
        .ok_or_else(|| "cannot build a bool result".into())
}

/// The f32 value of a unary op (also the fused GEMM's activations).
pub(crate) fn unary_f32(u: UnaryOp, x: f32) -> f32 {
    match u {
        UnaryOp::Neg => -x,
        UnaryOp::Abs => x.abs(),
        UnaryOp::Sqrt => x.sqrt(),
        UnaryOp::Reciprocal => 1.0 / x,
        UnaryOp::Exp => x.exp(),
        UnaryOp::Log => x.ln(),
        UnaryOp::Tanh => x.tanh(),
        UnaryOp::Erf => libm::erf(f64::from(x)) as f32,
        UnaryOp::Sigmoid => {
            if x >= 0.0 {
                1.0 / (1.0 + (-x).exp())
            } else {
                let e = x.exp();
                e / (1.0 + e)
            }
        }
        UnaryOp::Relu => {
            if x > 0.0 || x.is_nan() {
                x
            } else {
                0.0
            }
        }
        UnaryOp::Cos => x.cos(),
        UnaryOp::Sin => x.sin(),
        UnaryOp::Not => f32::from(u8::from(x == 0.0)),
        // The same arithmetic as `mul(x, sigmoid(x))`, so lifting SiLU is exact.
        UnaryOp::Silu => x * unary_f32(UnaryOp::Sigmoid, x),
        UnaryOp::Sign => {
            if x > 0.0 {
                1.0
            } else if x < 0.0 {
                -1.0
            } else {
                x
            }
        }
        UnaryOp::Floor => x.floor(),
        UnaryOp::Ceil => x.ceil(),
        UnaryOp::Round => x.round_ties_even(),
    }
}

/// A unary op.
pub(crate) fn unary(u: UnaryOp, x: &Tensor) -> Result<Tensor, String> {
    let dtype = x.dtype();
    if dtype == DType::Bool {
        if u != UnaryOp::Not {
            return Err(format!("{} does not take bool", u.name()));
        }
        return bool_result(x.shape(), x.to_bool_vec().into_iter().map(|b| !b).collect());
    }
    if dtype.is_float() {
        let values = x
            .to_f32_vec()
            .into_iter()
            .map(|v| unary_f32(u, v))
            .collect();
        return float_result(dtype, x.shape(), values);
    }
    let f: fn(i64) -> i64 = match u {
        UnaryOp::Neg => i64::wrapping_neg,
        UnaryOp::Abs => i64::wrapping_abs,
        UnaryOp::Relu => |v| v.max(0),
        UnaryOp::Sign => i64::signum,
        _ => return Err(format!("{} does not take {dtype}", u.name())),
    };
    int_result(
        dtype,
        x.shape(),
        x.to_i64_vec().into_iter().map(f).collect(),
    )
}

fn max_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.max(b)
    }
}

fn min_nan(a: f32, b: f32) -> f32 {
    if a.is_nan() || b.is_nan() {
        f32::NAN
    } else {
        a.min(b)
    }
}

/// A binary op with broadcasting; `ty` is the result type.
pub(crate) fn binary(
    b: BinaryOp,
    x: &Tensor,
    y: &Tensor,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let shape = &ty.shape;
    let ix = broadcast_index(shape, x.shape());
    let iy = broadcast_index(shape, y.shape());
    let pairs = ix.iter().zip(&iy);
    let dtype = x.dtype();
    if dtype == DType::Bool {
        let (a, c) = (x.to_bool_vec(), y.to_bool_vec());
        let f: fn(bool, bool) -> bool = match b {
            BinaryOp::And => |p, q| p && q,
            BinaryOp::Or => |p, q| p || q,
            BinaryOp::Equal => |p, q| p == q,
            _ => return Err(format!("{} does not take bool", b.name())),
        };
        return bool_result(shape, pairs.map(|(&i, &j)| f(a[i], c[j])).collect());
    }
    if b == BinaryOp::Pow {
        return pow(x, y, &ix, &iy, ty);
    }
    if dtype.is_float() {
        let (a, c) = (x.to_f32_vec(), y.to_f32_vec());
        if b.is_predicate() {
            let f: fn(f32, f32) -> bool = match b {
                BinaryOp::Equal => |p, q| p == q,
                BinaryOp::Less => |p, q| p < q,
                BinaryOp::LessOrEqual => |p, q| p <= q,
                BinaryOp::Greater => |p, q| p > q,
                BinaryOp::GreaterOrEqual => |p, q| p >= q,
                _ => return Err(format!("{} does not take {dtype}", b.name())),
            };
            return bool_result(shape, pairs.map(|(&i, &j)| f(a[i], c[j])).collect());
        }
        let f: fn(f32, f32) -> f32 = match b {
            BinaryOp::Add => |p, q| p + q,
            BinaryOp::Sub => |p, q| p - q,
            BinaryOp::Mul => |p, q| p * q,
            BinaryOp::Div => |p, q| p / q,
            BinaryOp::Min => min_nan,
            BinaryOp::Max => max_nan,
            _ => return Err(format!("{} does not take {dtype}", b.name())),
        };
        return float_result(dtype, shape, pairs.map(|(&i, &j)| f(a[i], c[j])).collect());
    }
    let (a, c) = (x.to_i64_vec(), y.to_i64_vec());
    if b.is_predicate() {
        let f: fn(i64, i64) -> bool = match b {
            BinaryOp::Equal => |p, q| p == q,
            BinaryOp::Less => |p, q| p < q,
            BinaryOp::LessOrEqual => |p, q| p <= q,
            BinaryOp::Greater => |p, q| p > q,
            BinaryOp::GreaterOrEqual => |p, q| p >= q,
            _ => return Err(format!("{} does not take {dtype}", b.name())),
        };
        return bool_result(shape, pairs.map(|(&i, &j)| f(a[i], c[j])).collect());
    }
    let mut out = Vec::with_capacity(ix.len());
    for (&i, &j) in pairs {
        let (p, q) = (a[i], c[j]);
        out.push(match b {
            BinaryOp::Add => p.wrapping_add(q),
            BinaryOp::Sub => p.wrapping_sub(q),
            BinaryOp::Mul => p.wrapping_mul(q),
            BinaryOp::Div => {
                if q == 0 {
                    return Err("integer division by zero".into());
                }
                p.wrapping_div(q)
            }
            BinaryOp::Min => p.min(q),
            BinaryOp::Max => p.max(q),
            _ => return Err(format!("{} does not take {dtype}", b.name())),
        });
    }
    int_result(dtype, shape, out)
}

/// `x ^ y`: the result has x's type; y may be any numeric type.
fn pow(
    x: &Tensor,
    y: &Tensor,
    ix: &[usize],
    iy: &[usize],
    ty: &TensorType,
) -> Result<Tensor, String> {
    let exponent = y.to_f64_vec();
    if x.dtype().is_float() {
        let base = x.to_f32_vec();
        let values = ix
            .iter()
            .zip(iy)
            .map(|(&i, &j)| {
                let e = exponent[j];
                if e == 2.0 {
                    base[i] * base[i]
                } else {
                    base[i].powf(e as f32)
                }
            })
            .collect();
        float_result(ty.dtype, &ty.shape, values)
    } else {
        let base = x.to_i64_vec();
        let values = ix
            .iter()
            .zip(iy)
            .map(|(&i, &j)| (base[i] as f64).powf(exponent[j]) as i64)
            .collect();
        int_result(ty.dtype, &ty.shape, values)
    }
}

/// `cond ? x : y` with broadcasting.
pub(crate) fn select(
    cond: &Tensor,
    x: &Tensor,
    y: &Tensor,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let c = cond.to_bool_vec();
    let ic = broadcast_index(&ty.shape, cond.shape());
    let ix = broadcast_index(&ty.shape, x.shape());
    let iy = broadcast_index(&ty.shape, y.shape());
    // Select from the concatenation [x, y]: y's elements follow x's.
    let offset = x.numel();
    let plan: Vec<usize> = (0..ic.len())
        .map(|k| if c[ic[k]] { ix[k] } else { offset + iy[k] })
        .collect();
    let both = TensorData::concat(&[x.data(), y.data()]).ok_or("x and y differ in type")?;
    Tensor::new(ty.shape.clone(), both.select(&plan)).ok_or_else(|| "shape mismatch".into())
}

/// Element type conversion.
pub(crate) fn cast(x: &Tensor, to: DType) -> Result<Tensor, String> {
    let shape = x.shape().to_vec();
    let from = x.dtype();
    if from == to {
        return Ok(x.clone());
    }
    let data = match to {
        DType::F32 => TensorData::F32(x.to_f32_vec()),
        // f16 <-> bf16 go through f32 exactly; int64 -> f16 rounds twice,
        // which is within the type's precision for the values we see.
        DType::F16 => TensorData::F16(x.to_f32_vec().into_iter().map(f16::from_f32).collect()),
        DType::BF16 => TensorData::BF16(x.to_f32_vec().into_iter().map(bf16::from_f32).collect()),
        DType::Bool => TensorData::Bool(x.to_bool_vec()),
        _ => {
            return Tensor::from_i64_as(to, shape, x.to_i64_vec())
                .ok_or_else(|| "cannot cast".into());
        }
    };
    Tensor::new(shape, data).ok_or_else(|| "cannot cast".into())
}

/// GELU, exact or with the tanh approximation.
pub(crate) fn gelu(x: &Tensor, approximate: GeluApprox) -> Result<Tensor, String> {
    let values = x
        .to_f32_vec()
        .into_iter()
        .map(|v| gelu_value(v, approximate))
        .collect();
    float_result(x.dtype(), x.shape(), values)
}

/// GELU of one value (computed in f64).
pub(crate) fn gelu_value(v: f32, approximate: GeluApprox) -> f32 {
    let v = f64::from(v);
    let y = match approximate {
        GeluApprox::None => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
        GeluApprox::Tanh => {
            let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v * v * v);
            0.5 * v * (1.0 + inner.tanh())
        }
    };
    y as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ty(dtype: DType, shape: &[usize]) -> TensorType {
        TensorType::new(dtype, shape.to_vec())
    }

    #[test]
    fn broadcast_index_repeats_rows_and_columns() {
        assert_eq!(broadcast_index(&[2, 3], &[3]), vec![0, 1, 2, 0, 1, 2]);
        assert_eq!(broadcast_index(&[2, 3], &[2, 1]), vec![0, 0, 0, 1, 1, 1]);
        assert_eq!(broadcast_index(&[2, 2], &[]), vec![0, 0, 0, 0]);
    }

    #[test]
    fn add_broadcasts_a_column_against_a_row() {
        let a = Tensor::from_f32(&[2, 1], vec![10.0, 20.0]);
        let b = Tensor::from_f32(&[3], vec![1.0, 2.0, 3.0]);
        let out = binary(BinaryOp::Add, &a, &b, &ty(DType::F32, &[2, 3])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![11.0, 12.0, 13.0, 21.0, 22.0, 23.0]);
    }

    #[test]
    fn integer_division_truncates_and_refuses_zero() {
        let a = Tensor::from_i64(&[2], vec![-7, 7]);
        let b = Tensor::from_i64(&[2], vec![2, 2]);
        let out = binary(BinaryOp::Div, &a, &b, &ty(DType::I64, &[2])).expect("ok");
        assert_eq!(out.to_i64_vec(), vec![-3, 3]);
        let zero = Tensor::from_i64(&[], vec![0]);
        assert!(binary(BinaryOp::Div, &a, &zero, &ty(DType::I64, &[2])).is_err());
    }

    #[test]
    fn int8_arithmetic_wraps() {
        let a = Tensor::from_i64_as(DType::I8, vec![1], vec![120]).expect("shape");
        let b = Tensor::from_i64_as(DType::I8, vec![1], vec![10]).expect("shape");
        let out = binary(BinaryOp::Add, &a, &b, &ty(DType::I8, &[1])).expect("ok");
        assert_eq!(out.to_i64_vec(), vec![-126]);
    }

    #[test]
    fn max_propagates_nan_and_min_picks_smaller() {
        let a = Tensor::from_f32(&[3], vec![1.0, f32::NAN, -2.0]);
        let b = Tensor::from_f32(&[3], vec![0.5, 0.0, 3.0]);
        let max = binary(BinaryOp::Max, &a, &b, &ty(DType::F32, &[3]))
            .expect("ok")
            .to_f32_vec();
        assert_eq!(max[0], 1.0);
        assert!(max[1].is_nan());
        let min = binary(BinaryOp::Min, &a, &b, &ty(DType::F32, &[3]))
            .expect("ok")
            .to_f32_vec();
        assert_eq!(min[2], -2.0);
    }

    #[test]
    fn pow_keeps_the_base_type() {
        let a = Tensor::from_i64(&[3], vec![1, 2, 3]);
        let b = Tensor::from_f32(&[3], vec![4.0, 5.0, 6.0]);
        let out = binary(BinaryOp::Pow, &a, &b, &ty(DType::I64, &[3])).expect("ok");
        assert_eq!(out.to_i64_vec(), vec![1, 32, 729]);
    }

    #[test]
    fn where_picks_per_element_with_broadcasting() {
        let c = Tensor::from_bool(&[2, 1], vec![true, false]);
        let x = Tensor::from_f32(&[2], vec![1.0, 2.0]);
        let y = Tensor::from_f32(&[], vec![-1.0]);
        let out = select(&c, &x, &y, &ty(DType::F32, &[2, 2])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![1.0, 2.0, -1.0, -1.0]);
    }

    #[test]
    fn cast_rounds_and_truncates() {
        let x = Tensor::from_f32(&[4], vec![1.7, -1.7, 0.0, 1.0 + 1.0 / 1024.0]);
        assert_eq!(
            cast(&x, DType::I64).expect("ok").to_i64_vec(),
            vec![1, -1, 0, 1]
        );
        assert_eq!(
            cast(&x, DType::Bool).expect("ok").to_bool_vec(),
            vec![true, true, false, true]
        );
        // 1 + 2^-10 is exact in f16 but rounds to 1 in bf16 (7 mantissa bits).
        assert_eq!(
            cast(&x, DType::F16).expect("ok").to_f32_vec()[3],
            1.0 + 1.0 / 1024.0
        );
        assert_eq!(cast(&x, DType::BF16).expect("ok").to_f32_vec()[3], 1.0);
    }

    #[test]
    fn gelu_matches_known_values() {
        let x = Tensor::from_f32(&[3], vec![-1.0, 0.0, 1.0]);
        let exact = gelu(&x, GeluApprox::None).expect("ok").to_f32_vec();
        assert!((exact[0] + 0.158_655_3).abs() < 1e-6);
        assert!((exact[2] - 0.841_344_7).abs() < 1e-6);
        let tanh = gelu(&x, GeluApprox::Tanh).expect("ok").to_f32_vec();
        assert!((tanh[2] - 0.841_192).abs() < 1e-6);
    }

    #[test]
    fn sigmoid_is_stable_for_large_inputs() {
        let x = Tensor::from_f32(&[3], vec![-100.0, 0.0, 100.0]);
        let y = unary(UnaryOp::Sigmoid, &x).expect("ok").to_f32_vec();
        assert_eq!(
            y,
            vec![(-100.0f32).exp() / (1.0 + (-100.0f32).exp()), 0.5, 1.0]
        );
    }
}
