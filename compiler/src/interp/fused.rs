//! The NPU-native fused ops: GEMM with bias and activation, attention,
//! rotary embedding. Each computes with the same arithmetic, in the same
//! order, as the chain of ops it replaces (matmul's i-k-j loop, the
//! interpreter's softmax), so that lifting a chain into one of these ops
//! changes results by rounding at most.

use crate::graph::{Activation, GeluApprox, TensorType, UnaryOp};
use crate::tensor::{DType, Tensor};

use super::broadcast_index;
use super::elementwise::{gelu_value, unary_f32};

/// `act(a · b (+ bias))` with `a` as `[rows, K]` and `b` as `[K, N]` (or
/// `[N, K]` with `trans_b`).
pub(crate) fn gemm(
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_b: bool,
    act: Option<Activation>,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let (rows, k, n) = gemm_dims(a, ty)?;
    let av = a.to_f32_vec();
    let bv = k_major(b.to_f32_vec(), k, n, trans_b);
    let bias = bias.map(Tensor::to_f32_vec);
    let mut out = vec![0f32; rows * n];
    for i in 0..rows {
        let row = &mut out[i * n..(i + 1) * n];
        for p in 0..k {
            let x = av[i * k + p];
            for (o, &y) in row.iter_mut().zip(&bv[p * n..(p + 1) * n]) {
                *o += x * y;
            }
        }
        if let Some(bias) = &bias {
            for (o, &c) in row.iter_mut().zip(bias) {
                *o += c;
            }
        }
        if let Some(act) = act {
            for o in row.iter_mut() {
                *o = activation(act, *o);
            }
        }
    }
    Tensor::from_f32_as(ty.dtype, ty.shape.clone(), out).ok_or_else(|| "shape mismatch".into())
}

/// What a qgemm reads besides `a`, `b` and `scale`, from its operands.
pub(crate) struct QGemmArgs<'t> {
    /// The zero points of `a` and `b` (attributes, or run-time operands).
    pub zero_points: (i32, i32),
    /// The bias.
    pub bias: Option<&'t Tensor>,
    /// The requantization: type, zero point and scale.
    pub out: Option<(DType, i32, f32)>,
}

/// A qgemm's [`QGemmArgs`] from its attributes and operands `args`.
pub(crate) fn qgemm_args<'t>(
    (a_zp, b_zp): (Option<i32>, Option<i32>),
    out: Option<(DType, i32)>,
    args: &[&'t Tensor],
) -> Result<QGemmArgs<'t>, String> {
    let slots = crate::graph::qgemm_operands((a_zp, b_zp), out.is_some(), args.len());
    let first = |at: usize| -> Result<f64, String> {
        let t = args.get(at).ok_or("qgemm is missing an operand")?;
        t.to_f64_vec()
            .first()
            .copied()
            .ok_or_else(|| "qgemm's one-element operand is empty".to_string())
    };
    let value = |attr: Option<i32>, at: Option<usize>| -> Result<i32, String> {
        match (attr, at) {
            (Some(z), _) => Ok(z),
            (None, Some(at)) => Ok(first(at)? as i32),
            (None, None) => Err("qgemm zero point without an operand".into()),
        }
    };
    let out = match (out, slots.out_scale) {
        (Some((t, zp)), Some(at)) => Some((t, zp, first(at)? as f32)),
        _ => None,
    };
    Ok(QGemmArgs {
        zero_points: (value(a_zp, slots.a_zp)?, value(b_zp, slots.b_zp)?),
        bias: slots.bias.map(|at| args[at]),
        out,
    })
}

/// The integer GEMM (see [`crate::graph::Op::QGemm`]):
/// `act(f32(Σₖ (a − a_zp)(b − b_zp)) · scale + bias)`, the sum in wrapping
/// int32, converted with round-to-nearest-even, then one f32 multiply and
/// one f32 add per element. `act` maps each value through the activation
/// (the exact one, or the VPU's for a compiled program).
#[allow(clippy::too_many_arguments)]
pub(crate) fn qgemm(
    a: &Tensor,
    b: &Tensor,
    scale: &Tensor,
    extra: &QGemmArgs<'_>,
    trans_b: bool,
    act: Option<&dyn Fn(f32) -> f32>,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let (rows, k, n) = gemm_dims(a, ty)?;
    let centered = |t: &Tensor, zp: i32| -> Vec<i32> {
        t.to_i64_vec().into_iter().map(|v| v as i32 - zp).collect()
    };
    let ((a_zp, b_zp), bias) = (extra.zero_points, extra.bias);
    let av = centered(a, a_zp);
    let bv = k_major(centered(b, b_zp), k, n, trans_b);
    // A batched b ([..., K, N]) pairs each batch entry's rows with its own
    // K × N matrix.
    let batch = (b.numel() / (k * n).max(1)).max(1);
    let rows_per = rows / batch;
    let scale = scale.to_f32_vec();
    let bias = bias.map(Tensor::to_f32_vec);
    let mut out = vec![0f32; rows * n];
    let mut acc = vec![0i32; n];
    for i in 0..rows {
        acc.fill(0);
        let bm = &bv[(i / rows_per.max(1)).min(batch - 1) * k * n..];
        for p in 0..k {
            let x = av[i * k + p];
            for (c, &y) in acc.iter_mut().zip(&bm[p * n..(p + 1) * n]) {
                *c = c.wrapping_add(x.wrapping_mul(y));
            }
        }
        let row = &mut out[i * n..(i + 1) * n];
        for (j, (o, &c)) in row.iter_mut().zip(&acc).enumerate() {
            *o = c as f32 * scale[j];
            if let Some(bias) = &bias {
                *o += bias[j];
            }
            if let Some(act) = act {
                *o = act(*o);
            }
        }
    }
    if let Some((t, zp, s)) = extra.out {
        // QuantizeLinear of the f32 result, as `vpu.quant` computes it.
        let isa = crate::runtime_io::isa_dtype(t);
        let q: Vec<i64> = out
            .iter()
            .map(|&y| {
                let byte = tessera_isa::lowp::quantize(isa, y, s, i64::from(zp));
                if t == DType::I8 {
                    i64::from(byte as i8)
                } else {
                    i64::from(byte)
                }
            })
            .collect();
        return Tensor::from_i64_as(t, ty.shape.clone(), q).ok_or_else(|| "shape mismatch".into());
    }
    Tensor::from_f32_as(ty.dtype, ty.shape.clone(), out).ok_or_else(|| "shape mismatch".into())
}

/// A GEMM's rows (of A, batch flattened), K and N.
fn gemm_dims(a: &Tensor, ty: &TensorType) -> Result<(usize, usize, usize), String> {
    let k = *a.shape().last().ok_or("gemm needs a of rank >= 2")?;
    let n = *ty.shape.last().ok_or("gemm needs a result of rank >= 2")?;
    let rows = a
        .numel()
        .checked_div(k)
        .unwrap_or_else(|| ty.numel() / n.max(1));
    Ok((rows, k, n))
}

/// B as `[K, N]` (transposed from `[N, K]` when `trans_b`), so the inner
/// loop streams rows as matmul does.
fn k_major<T: Copy + Default>(raw: Vec<T>, k: usize, n: usize, trans_b: bool) -> Vec<T> {
    if !trans_b {
        return raw;
    }
    let mut t = vec![T::default(); raw.len()];
    for j in 0..n {
        for p in 0..k {
            t[p * n + j] = raw[j * k + p];
        }
    }
    t
}

/// One value through a GEMM activation.
pub(crate) fn activation(act: Activation, x: f32) -> f32 {
    match act {
        Activation::Relu => unary_f32(UnaryOp::Relu, x),
        Activation::Silu => unary_f32(UnaryOp::Silu, x),
        Activation::Gelu => gelu_value(x, GeluApprox::None),
        Activation::GeluTanh => gelu_value(x, GeluApprox::Tanh),
    }
}

/// The geometry of an attention (`q` `[B, H, SQ, D]`, `k` and `v` `[B,
/// HKV, SK, D]`, `H / HKV` query heads per KV head) and its scores: what the
/// exact attention and the program's ([`super::mxu::attention`]) compute
/// alike before the softmax.
pub(crate) struct Scores<'a> {
    pub batch: usize,
    pub heads: usize,
    pub sq: usize,
    pub sk: usize,
    pub d: usize,
    kv_heads: usize,
    q: &'a [f32],
    k: &'a [f32],
    mask: Option<(Vec<usize>, Vec<f32>)>,
    scale: f32,
    causal: bool,
}

impl<'a> Scores<'a> {
    /// The scores of `q` and `k` (whose f32 values, as the caller rounded
    /// them, are `qv` and `kv`).
    pub fn new(
        q: &Tensor,
        k: &Tensor,
        (qv, kv): (&'a [f32], &'a [f32]),
        mask: Option<&Tensor>,
        scale: f32,
        causal: bool,
    ) -> Result<Scores<'a>, String> {
        let &[batch, heads, sq, d] = q.shape() else {
            return Err("q must have rank 4".into());
        };
        let &[_, kv_heads, sk, _] = k.shape() else {
            return Err("k must have rank 4".into());
        };
        let scores_shape = [batch, heads, sq, sk];
        let mask = mask.map(|m| (broadcast_index(&scores_shape, m.shape()), m.to_f32_vec()));
        Ok(Scores {
            batch,
            heads,
            sq,
            sk,
            d,
            kv_heads,
            q: qv,
            k: kv,
            mask,
            scale,
            causal,
        })
    }

    /// Where head `(b, h)`'s query rows start, and its KV head's key and
    /// value rows.
    pub fn offsets(&self, b: usize, h: usize) -> (usize, usize) {
        let group = self.heads / self.kv_heads.max(1);
        let hk = h / group.max(1);
        let (sq, sk, d) = (self.sq, self.sk, self.d);
        (
            (b * self.heads + h) * sq * d,
            (b * self.kv_heads + hk) * sk * d,
        )
    }

    /// `scores[j] = (q_i · k_j) · scale + mask`, −∞ above the causal
    /// diagonal, for query row `i` of head `(b, h)`.
    pub fn row(&self, b: usize, h: usize, i: usize, scores: &mut [f32]) {
        let (q0, k0) = self.offsets(b, h);
        let (sq, sk, d) = (self.sq, self.sk, self.d);
        let q_row = &self.q[q0 + i * d..q0 + (i + 1) * d];
        for (j, score) in scores.iter_mut().enumerate() {
            let k_row = &self.k[k0 + j * d..k0 + (j + 1) * d];
            let mut dot = 0f32;
            for (x, y) in q_row.iter().zip(k_row) {
                dot += x * y;
            }
            let mut s = dot * self.scale;
            if let Some((at, values)) = &self.mask {
                s += values[at[((b * self.heads + h) * sq + i) * sk + j]];
            }
            if self.causal && j + sq > i + sk {
                s = f32::NEG_INFINITY;
            }
            *score = s;
        }
    }
}

/// `softmax(q · kᵀ · scale + mask) · v` per batch and head, with grouped
/// kv heads and an optional causal mask.
pub(crate) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
    causal: bool,
) -> Result<Tensor, String> {
    let (qv, kv, vv) = (q.to_f32_vec(), k.to_f32_vec(), v.to_f32_vec());
    let rows = Scores::new(q, k, (&qv, &kv), mask, scale, causal)?;
    let (sq, d) = (rows.sq, rows.d);
    let mut out = vec![0f32; qv.len()];
    let mut scores = vec![0f32; rows.sk];
    for b in 0..rows.batch {
        for h in 0..rows.heads {
            let (q0, k0) = rows.offsets(b, h);
            for i in 0..sq {
                rows.row(b, h, i, &mut scores);
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0f64;
                for s in scores.iter_mut() {
                    *s = (*s - max).exp();
                    sum += f64::from(*s);
                }
                let out_row = &mut out[q0 + i * d..q0 + (i + 1) * d];
                for (j, s) in scores.iter().enumerate() {
                    let p = (f64::from(*s) / sum) as f32;
                    let v_row = &vv[k0 + j * d..k0 + (j + 1) * d];
                    for (o, y) in out_row.iter_mut().zip(v_row) {
                        *o += p * y;
                    }
                }
            }
        }
    }
    Tensor::from_f32_as(q.dtype(), q.shape().to_vec(), out).ok_or_else(|| "shape mismatch".into())
}

/// `x * cos + rotate_half(x) * sin`, `rotate_half(x) = concat(-x[D/2:], x[:D/2])`.
pub(crate) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor, String> {
    let shape = x.shape();
    let d = *shape.last().ok_or("rope needs rank >= 2")?;
    let half = d / 2;
    let xv = x.to_f32_vec();
    let (ic, cv) = (broadcast_index(shape, cos.shape()), cos.to_f32_vec());
    let (is, sv) = (broadcast_index(shape, sin.shape()), sin.to_f32_vec());
    let mut out = vec![0f32; xv.len()];
    for (e, o) in out.iter_mut().enumerate() {
        let col = e % d;
        let rotated = if col < half {
            -xv[e + half]
        } else {
            xv[e - half]
        };
        *o = xv[e] * cv[ic[e]] + rotated * sv[is[e]];
    }
    Tensor::from_f32_as(x.dtype(), shape.to_vec(), out).ok_or_else(|| "shape mismatch".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v)
    }

    #[test]
    fn gemm_adds_the_bias_then_applies_the_activation() {
        // [1, 2] · [2, 2] = [1·1 + 2·3, 1·2 + 2·4] = [7, 10]; + [-10, 1].
        let a = t(&[1, 2], vec![1.0, 2.0]);
        let b = t(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let bias = t(&[2], vec![-10.0, 1.0]);
        let ty = TensorType::new(DType::F32, vec![1, 2]);
        let y = gemm(&a, &b, Some(&bias), false, Some(Activation::Relu), &ty).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![0.0, 11.0]);
        // The same weights stored [N, K].
        let bt = t(&[2, 2], vec![1.0, 3.0, 2.0, 4.0]);
        let y = gemm(&a, &bt, None, true, None, &ty).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![7.0, 10.0]);
    }

    #[test]
    fn attention_weights_values_by_softmax_of_scaled_scores() {
        // One head, one query, two keys: scores q·k = [0, 2], scale 0.5 →
        // [0, 1]; softmax → [1/(1+e), e/(1+e)].
        let q = t(&[1, 1, 1, 2], vec![1.0, 1.0]);
        let k = t(&[1, 1, 2, 2], vec![0.0, 0.0, 1.0, 1.0]);
        let v = t(&[1, 1, 2, 2], vec![10.0, 0.0, 0.0, 10.0]);
        let y = attention(&q, &k, &v, None, 0.5, false).expect("ok");
        let e = std::f32::consts::E;
        let (p0, p1) = (1.0 / (1.0 + e), e / (1.0 + e));
        let out = y.to_f32_vec();
        assert!((out[0] - 10.0 * p0).abs() < 1e-5 && (out[1] - 10.0 * p1).abs() < 1e-5);
        // A mask of -inf on the second key leaves only the first.
        let mask = t(&[1, 1, 1, 2], vec![0.0, f32::NEG_INFINITY]);
        let y = attention(&q, &k, &v, Some(&mask), 0.5, false).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![10.0, 0.0]);
    }

    #[test]
    fn causal_attention_hides_later_keys_and_groups_heads() {
        // Two query heads over one kv head; two positions. Row 0 sees only
        // key 0; row 1 sees both (equal scores: the mean of the values).
        let q = t(&[1, 2, 2, 1], vec![0.0; 4]);
        let k = t(&[1, 1, 2, 1], vec![0.0, 0.0]);
        let v = t(&[1, 1, 2, 1], vec![2.0, 4.0]);
        let y = attention(&q, &k, &v, None, 1.0, true).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![2.0, 3.0, 2.0, 3.0]);
    }

    #[test]
    fn rope_rotates_pairs_of_halves() {
        // D = 2: [x0, x1] → [x0 cos - x1 sin, x1 cos + x0 sin].
        let x = t(&[1, 2], vec![1.0, 2.0]);
        let (c, s) = (0.6f32, 0.8f32);
        let y = rope(&x, &t(&[1], vec![c]), &t(&[1], vec![s])).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![1.0 * c - 2.0 * s, 2.0 * c + 1.0 * s]);
    }
}
