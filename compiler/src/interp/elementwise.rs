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
    let strides = broadcast_strides(out_shape, in_shape);
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

/// The stride in a tensor of `in_shape` of each dimension of `out_shape`
/// under NumPy broadcasting (0 where the tensor is broadcast).
fn broadcast_strides(out_shape: &[usize], in_shape: &[usize]) -> Vec<usize> {
    let offset = out_shape.len() - in_shape.len();
    let in_strides = crate::tensor::strides(in_shape);
    (0..out_shape.len())
        .map(|d| {
            if d < offset || in_shape[d - offset] == 1 {
                0
            } else {
                in_strides[d - offset]
            }
        })
        .collect()
}

/// `f` of each pair of elements that broadcasting pairs, in row-major
/// order of `shape`: the pairs are walked row by row with strides, so no
/// per-element index is stored (a binary op over N elements allocates only
/// its result).
pub(crate) fn zip_broadcast<A: Copy, B: Copy, R>(
    shape: &[usize],
    (a, a_shape): (&[A], &[usize]),
    (b, b_shape): (&[B], &[usize]),
    mut f: impl FnMut(A, B) -> R,
) -> Vec<R> {
    if a_shape == shape && b_shape == shape {
        return a.iter().zip(b).map(|(&p, &q)| f(p, q)).collect();
    }
    let n: usize = shape.iter().product();
    let mut out = Vec::with_capacity(n);
    if n == 0 {
        return out;
    }
    let (sa, sb) = (
        broadcast_strides(shape, a_shape),
        broadcast_strides(shape, b_shape),
    );
    let rank = shape.len();
    let (row, step_a, step_b) = match rank {
        0 => (1, 0, 0),
        _ => (shape[rank - 1], sa[rank - 1], sb[rank - 1]),
    };
    // An odometer over every dimension but the last.
    let outer = rank.saturating_sub(1);
    let mut index = vec![0usize; outer];
    let (mut base_a, mut base_b) = (0usize, 0usize);
    loop {
        let (mut i, mut j) = (base_a, base_b);
        for _ in 0..row {
            out.push(f(a[i], b[j]));
            i += step_a;
            j += step_b;
        }
        let mut d = outer;
        loop {
            if d == 0 {
                return out;
            }
            d -= 1;
            index[d] += 1;
            base_a += sa[d];
            base_b += sb[d];
            if index[d] < shape[d] {
                break;
            }
            base_a -= sa[d] * shape[d];
            base_b -= sb[d] * shape[d];
            index[d] = 0;
        }
    }
}

/// A tensor's elements as f32, borrowed when they already are.
fn f32_values(t: &Tensor) -> std::borrow::Cow<'_, [f32]> {
    match t.data() {
        TensorData::F32(v) => std::borrow::Cow::Borrowed(v),
        _ => std::borrow::Cow::Owned(t.to_f32_vec()),
    }
}

/// A tensor's elements as i64, borrowed when they already are.
fn i64_values(t: &Tensor) -> std::borrow::Cow<'_, [i64]> {
    match t.data() {
        TensorData::I64(v) => std::borrow::Cow::Borrowed(v),
        _ => std::borrow::Cow::Owned(t.to_i64_vec()),
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
    let dtype = x.dtype();
    if dtype == DType::Bool {
        let (a, c) = (x.to_bool_vec(), y.to_bool_vec());
        let f: fn(bool, bool) -> bool = match b {
            BinaryOp::And => |p, q| p && q,
            BinaryOp::Or => |p, q| p || q,
            BinaryOp::Equal => |p, q| p == q,
            _ => return Err(format!("{} does not take bool", b.name())),
        };
        let values = zip_broadcast(shape, (&a, x.shape()), (&c, y.shape()), f);
        return bool_result(shape, values);
    }
    if b == BinaryOp::Pow {
        let ix = broadcast_index(shape, x.shape());
        let iy = broadcast_index(shape, y.shape());
        return pow(x, y, &ix, &iy, ty);
    }
    if dtype.is_float() {
        let (a, c) = (f32_values(x), f32_values(y));
        let (a, c) = ((a.as_ref(), x.shape()), (c.as_ref(), y.shape()));
        if b.is_predicate() {
            let f: fn(f32, f32) -> bool = match b {
                BinaryOp::Equal => |p, q| p == q,
                BinaryOp::Less => |p, q| p < q,
                BinaryOp::LessOrEqual => |p, q| p <= q,
                BinaryOp::Greater => |p, q| p > q,
                BinaryOp::GreaterOrEqual => |p, q| p >= q,
                _ => return Err(format!("{} does not take {dtype}", b.name())),
            };
            return bool_result(shape, zip_broadcast(shape, a, c, f));
        }
        // One monomorphic loop per op (a function pointer would cost an
        // indirect call per element when folding large constants).
        let values = match b {
            BinaryOp::Add => zip_broadcast(shape, a, c, |p, q| p + q),
            BinaryOp::Sub => zip_broadcast(shape, a, c, |p, q| p - q),
            BinaryOp::Mul => zip_broadcast(shape, a, c, |p, q| p * q),
            BinaryOp::Div => zip_broadcast(shape, a, c, |p, q| p / q),
            BinaryOp::Min => zip_broadcast(shape, a, c, min_nan),
            BinaryOp::Max => zip_broadcast(shape, a, c, max_nan),
            _ => return Err(format!("{} does not take {dtype}", b.name())),
        };
        return float_result(dtype, shape, values);
    }
    let (a, c) = (i64_values(x), i64_values(y));
    let (a, c) = ((a.as_ref(), x.shape()), (c.as_ref(), y.shape()));
    if b.is_predicate() {
        let f: fn(i64, i64) -> bool = match b {
            BinaryOp::Equal => |p, q| p == q,
            BinaryOp::Less => |p, q| p < q,
            BinaryOp::LessOrEqual => |p, q| p <= q,
            BinaryOp::Greater => |p, q| p > q,
            BinaryOp::GreaterOrEqual => |p, q| p >= q,
            _ => return Err(format!("{} does not take {dtype}", b.name())),
        };
        return bool_result(shape, zip_broadcast(shape, a, c, f));
    }
    let f: fn(i64, i64) -> i64 = match b {
        BinaryOp::Add => i64::wrapping_add,
        BinaryOp::Sub => i64::wrapping_sub,
        BinaryOp::Mul => i64::wrapping_mul,
        // A zero divisor is refused below, before any result is used.
        BinaryOp::Div => |p, q| if q == 0 { 0 } else { p.wrapping_div(q) },
        BinaryOp::Min => i64::min,
        BinaryOp::Max => i64::max,
        _ => return Err(format!("{} does not take {dtype}", b.name())),
    };
    if b == BinaryOp::Div && zip_broadcast(shape, a, c, |_, q| q == 0).contains(&true) {
        return Err("integer division by zero".into());
    }
    int_result(dtype, shape, zip_broadcast(shape, a, c, f))
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

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(300))]

        /// The strided walk pairs exactly the elements broadcasting pairs.
        #[test]
        fn zip_broadcast_pairs_what_broadcast_index_pairs(
            dims in proptest::collection::vec((1usize..4, proptest::bool::ANY, proptest::bool::ANY), 0..5),
            drop_a in 0usize..3,
            drop_b in 0usize..3,
        ) {
            let shape: Vec<usize> = dims.iter().map(|d| d.0).collect();
            let keep = |broadcast: bool, n: usize| if broadcast { 1 } else { n };
            let a_shape: Vec<usize> = dims.iter().map(|d| keep(d.1, d.0)).skip(drop_a.min(dims.len())).collect();
            let b_shape: Vec<usize> = dims.iter().map(|d| keep(d.2, d.0)).skip(drop_b.min(dims.len())).collect();
            let a: Vec<usize> = (0..a_shape.iter().product()).collect();
            let b: Vec<usize> = (0..b_shape.iter().product()).collect();
            let walked = zip_broadcast(&shape, (&a, &a_shape), (&b, &b_shape), |p, q| (p, q));
            let indexed: Vec<(usize, usize)> = broadcast_index(&shape, &a_shape)
                .into_iter()
                .zip(broadcast_index(&shape, &b_shape))
                .collect();
            proptest::prop_assert_eq!(walked, indexed);
        }
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
