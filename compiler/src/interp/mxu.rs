//! The MXU's arithmetic at a reduced input precision: what a program
//! compiled with `--precision bf16` computes where it rounds.
//!
//! The compiled program rounds in one place only: the operands of the
//! matrix engine. Every matmul, GEMM, convolution (im2col + GEMM) and both
//! products of attention convert their operands to the MXU's input type
//! (round to nearest even, `tessera_isa::numerics`; constant weights at
//! compile time, the rest by `vpu.cvt`), multiply exactly in f32 and add in
//! f32, sequentially over K in increasing order (SPEC.md §4.4: within one
//! `mxu.mm` and tile after tile in ACC, which is one running sum). Every
//! other value — stored intermediates in DRAM, softmax, norms, bias,
//! activations — is f32.
//!
//! So here: matmul and GEMM round both operands and run the interpreter's
//! i-k-j loop, whose per-element order is the MXU's; a convolution sums
//! over (input channel, kernel position) in im2col order and adds the bias
//! afterwards, as the GEMM's epilogue does; attention follows whichever
//! kernel the program runs for it ([`AttentionKernel`]): with whole score
//! rows (`lower/attention/whole_row/`), unnormalized probabilities `exp(s − max)`
//! rounded for P·V and the product scaled by `1 / rowsum` afterwards; with
//! the online softmax (`lower/attention/online/`), block by block of
//! keys against a running maximum, as that kernel does. Attention's
//! exponentials are the VPU's (`tessera_isa::numerics`), and its row sums
//! follow the VPU's lane order when the target is known.
//!
//! Not emulated: the VPU's reduction order and functions outside attention
//! (norms, softmax, GELU: the interpreter's own, f64 statistics), which
//! differ from the program's by f32 rounding, far below what bf16 operands
//! cost.

use std::borrow::Cow;

use tessera_isa::numerics::{bf16_to_f32, f16_to_f32, f32_to_bf16, f32_to_f16, reduce_row, unary};
use tessera_isa::{MxuType, RedFunc, Target, UnFunc};

use crate::graph::{Activation, ConvAttrs, TensorType};
use crate::lower::attention::online_key_block;
use crate::lower::attention::OnlineShape;
use crate::lower::elementwise::broadcast_strides;
use crate::tensor::{strides, DType, Tensor};

/// One value as the MXU sees it: rounded to its input type (FP8:
/// saturating, unscaled). Integer inputs carry a scale and zero point that
/// only the quantized path knows, so there is no rounding to emulate here.
pub(crate) fn round(mxu: MxuType, x: f32) -> f32 {
    match mxu {
        MxuType::F32 => x,
        MxuType::Bf16 => bf16_to_f32(f32_to_bf16(x)),
        MxuType::F16 => f16_to_f32(f32_to_f16(x)),
        t => match tessera_isa::lowp::Fp8::of(t.a_type()) {
            Some(fmt) => fmt.to_f32(fmt.from_f32(x, true)),
            None => x,
        },
    }
}

/// A float operand rounded to the MXU's input type, as an f32 tensor of
/// the same shape (unchanged for an f32 MXU and for integer tensors).
pub(crate) fn rounded(mxu: MxuType, t: &Tensor) -> Cow<'_, Tensor> {
    if mxu == MxuType::F32 || !t.dtype().is_float() {
        return Cow::Borrowed(t);
    }
    let values = t.to_f32_vec().into_iter().map(|x| round(mxu, x)).collect();
    Cow::Owned(Tensor::from_f32(t.shape(), values))
}

/// `act(a · b (+ bias))` as the GEMM kernel computes it: both operands
/// rounded, the bias added in f32 and the activation applied by the VPU's
/// function (`tessera_isa::numerics`) as ACC is drained.
pub(crate) fn gemm(
    mxu: MxuType,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    trans_b: bool,
    act: Option<Activation>,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let (a, b) = (rounded(mxu, a), rounded(mxu, b));
    let f32_ty = TensorType::new(DType::F32, ty.shape.clone());
    let product = super::fused::gemm(&a, &b, bias, trans_b, None, &f32_ty)?;
    let Some(act) = act else {
        return Tensor::from_f32_as(ty.dtype, ty.shape.clone(), product.to_f32_vec())
            .ok_or_else(|| "shape mismatch".into());
    };
    let func = act.vpu_func();
    let values = product
        .to_f32_vec()
        .into_iter()
        .map(|x| unary(func, x))
        .collect();
    Tensor::from_f32_as(ty.dtype, ty.shape.clone(), values).ok_or_else(|| "shape mismatch".into())
}

/// Convolution as the compiled program computes it: im2col and a GEMM
/// against the weights as `[M, C/g · kernel]`, both operands rounded, the
/// sum over `(input channel, kernel position)` in that order, then the
/// bias.
pub(crate) fn conv(
    mxu: MxuType,
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    attrs: &ConvAttrs,
    ty: &TensorType,
) -> Result<Tensor, String> {
    if !matches!(ty.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(format!("conv does not take {}", ty.dtype));
    }
    let (xs, ws, os) = (x.shape(), w.shape(), &ty.shape);
    let spatial = xs.len() - 2;
    let (batch, channels, out_channels) = (xs[0], xs[1], ws[0]);
    let group = attrs.group.max(1);
    let (in_per_group, out_per_group) = (channels / group, out_channels / group);
    let xv: Vec<f32> = x.to_f32_vec().into_iter().map(|v| round(mxu, v)).collect();
    let wv: Vec<f32> = w.to_f32_vec().into_iter().map(|v| round(mxu, v)).collect();
    let bv = bias.map(Tensor::to_f32_vec);
    let (x_strides, w_strides, o_strides) = (strides(xs), strides(ws), strides(os));
    let mut kernel_positions = Vec::new();
    super::for_each_index(&ws[2..], |k| kernel_positions.push(k.to_vec()));
    let mut out = vec![0f32; ty.numel()];
    // Per output position, the input offset of every kernel position (None
    // in the zero padding), shared by all channels.
    let mut offsets: Vec<Option<usize>> = vec![None; kernel_positions.len()];
    for n in 0..batch {
        super::for_each_index(&os[2..], |o| {
            for (slot, k) in offsets.iter_mut().zip(&kernel_positions) {
                let mut at = Some(n * x_strides[0]);
                for d in 0..spatial {
                    let pos = (o[d] * attrs.strides[d] + k[d] * attrs.dilations[d]) as i64
                        - attrs.pads[d] as i64;
                    at = at.filter(|_| pos >= 0 && (pos as usize) < xs[2 + d]);
                    at = at.map(|a| a + pos as usize * x_strides[2 + d]);
                }
                *slot = at;
            }
            let o_spatial: usize = (0..spatial).map(|d| o[d] * o_strides[2 + d]).sum();
            for oc in 0..out_channels {
                let g = oc / out_per_group.max(1);
                let mut acc = 0f32;
                for ic in 0..in_per_group {
                    let c = g * in_per_group + ic;
                    let w_row = oc * w_strides[0] + ic * w_strides[1];
                    for (kflat, at) in offsets.iter().enumerate() {
                        // Padding is a zero in im2col: its product adds nothing.
                        if let Some(at) = at {
                            acc += xv[at + c * x_strides[1]] * wv[w_row + kflat];
                        }
                    }
                }
                if let Some(b) = &bv {
                    acc += b[oc];
                }
                out[n * o_strides[0] + oc * o_strides[1] + o_spatial] = acc;
            }
        });
    }
    Tensor::from_f32_as(ty.dtype, os.clone(), out).ok_or_else(|| "shape mismatch".into())
}

/// Which attention kernel a program runs, where that changes rounding.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct AttentionKernel {
    /// `Some(tk)`: the online softmax over blocks of `tk` keys; `None`:
    /// whole score rows.
    pub key_block: Option<usize>,
    /// The VPU's lanes (its row sums fold lane by lane, SPEC.md §4.6);
    /// `None`: sums in f64, rounded once.
    pub lanes: Option<usize>,
}

impl AttentionKernel {
    /// A row sum as the VPU computes it.
    fn sum(&self, row: &[f32]) -> f32 {
        match self.lanes {
            Some(lanes) => reduce_row(RedFunc::Sum, row.iter().copied(), lanes),
            None => row.iter().map(|&x| f64::from(x)).sum::<f64>() as f32,
        }
    }
}

/// The attention kernel a program compiled for `target` runs for these
/// operands (the lowering's own choice, `lower::attention`); whole score
/// rows and f64 sums without a target.
pub(crate) fn attention_kernel(
    mxu: MxuType,
    target: Option<&Target>,
    q: &Tensor,
    k: &Tensor,
    mask: Option<&Tensor>,
    causal: bool,
) -> AttentionKernel {
    let (Some(target), &[b, h, sq, d], &[_, hkv, sk, _]) = (target, q.shape(), k.shape()) else {
        return AttentionKernel::default();
    };
    let scores = [b, h, sq, sk];
    let strides = mask.map(|m| broadcast_strides(m.shape(), &scores));
    let shape = OnlineShape {
        sq: sq as u64,
        sk: sk as u64,
        d: d as u64,
        e: mxu.a_type().size(),
        mask: strides.as_ref().map(|s| s[2] != 0),
        causal,
    };
    let group = (h / hkv.max(1)) as u64;
    let mask_by_head = strides.is_some_and(|s| s[1] != 0);
    AttentionKernel {
        key_block: online_key_block(&shape, group, mask_by_head, target).map(|tk| tk as usize),
        lanes: Some(target.vpu_lanes as usize),
    }
}

/// `softmax(q · kᵀ · scale + mask) · v` as the attention kernels compute
/// it: Q and K rounded for the scores, `s = (q · k) · scale + mask` in
/// f32; then per [`AttentionKernel`] either whole rows — `p = exp(s −
/// rowmax)`, rounded with V for P·V, the product times the f32 reciprocal
/// of the row sum — or blocks of keys against a running maximum `m`
/// (from `−f32::MAX`): `α = exp(m − m')`, `p = exp(s − m')`, `l = l·α +
/// rowsum(p)`, `O = O·α + p·V`, and `O · (1 / l)` at the end.
#[allow(clippy::too_many_arguments)]
pub(crate) fn attention(
    mxu: MxuType,
    kernel: &AttentionKernel,
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    mask: Option<&Tensor>,
    scale: f32,
    causal: bool,
) -> Result<Tensor, String> {
    let operand =
        |t: &Tensor| -> Vec<f32> { t.to_f32_vec().into_iter().map(|x| round(mxu, x)).collect() };
    let (qv, kv, vv) = (operand(q), operand(k), operand(v));
    let rows = super::fused::Scores::new(q, k, (&qv, &kv), mask, scale, causal)?;
    let (sq, sk, d) = (rows.sq, rows.sk, rows.d);
    let key_block = kernel.key_block.unwrap_or(sk).max(1);
    let mut out = vec![0f32; qv.len()];
    let mut scores = vec![0f32; sk];
    let mut block_out = vec![0f32; d];
    let exp = |x: f32| unary(UnFunc::Exp, x);
    for b in 0..rows.batch {
        for h in 0..rows.heads {
            let (q0, k0) = rows.offsets(b, h);
            for i in 0..sq {
                rows.row(b, h, i, &mut scores);
                let out_row = &mut out[q0 + i * d..q0 + (i + 1) * d];
                let online = kernel.key_block.is_some();
                // The online kernel starts from −f32::MAX, so that a block
                // whose scores are all −∞ leaves it unchanged (α = 1).
                let mut max = if online { -f32::MAX } else { f32::NEG_INFINITY };
                let mut sum = 0f32;
                for j0 in (0..sk).step_by(key_block) {
                    let block = &mut scores[j0..(j0 + key_block).min(sk)];
                    let new_max = block.iter().copied().fold(max, f32::max);
                    let alpha = exp(max - new_max);
                    for s in block.iter_mut() {
                        *s = exp(*s - new_max);
                    }
                    sum = if online {
                        sum * alpha + kernel.sum(block)
                    } else {
                        kernel.sum(block)
                    };
                    max = new_max;
                    block_out.iter_mut().for_each(|o| *o = 0.0);
                    for (j, p) in (j0..).zip(block.iter()) {
                        let p = round(mxu, *p);
                        let v_row = &vv[k0 + j * d..k0 + (j + 1) * d];
                        for (o, y) in block_out.iter_mut().zip(v_row) {
                            *o += p * y;
                        }
                    }
                    if online {
                        for (o, pv) in out_row.iter_mut().zip(&block_out) {
                            *o = *o * alpha + pv;
                        }
                    } else {
                        // Whole rows: one block, P·V straight out of ACC.
                        out_row.copy_from_slice(&block_out);
                    }
                }
                let recip = 1.0 / sum;
                for o in out_row.iter_mut() {
                    *o *= recip;
                }
            }
        }
    }
    Tensor::from_f32_as(q.dtype(), q.shape().to_vec(), out).ok_or_else(|| "shape mismatch".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(shape: &[usize], v: Vec<f32>) -> Tensor {
        Tensor::from_f32(shape, v)
    }

    const WHOLE: AttentionKernel = AttentionKernel {
        key_block: None,
        lanes: None,
    };

    #[test]
    fn bf16_rounds_to_nearest_even() {
        // bf16 keeps 8 significand bits: 1 + 2^-8 is a tie between 1 and
        // 1 + 2^-7 and goes to the even one (1); 1 + 3·2^-9 rounds up.
        assert_eq!(round(MxuType::Bf16, 1.0 + 2f32.powi(-8)), 1.0);
        assert_eq!(
            round(MxuType::Bf16, 1.0 + 3.0 * 2f32.powi(-9)),
            1.0 + 2f32.powi(-7)
        );
        assert_eq!(
            round(MxuType::F32, 1.0 + 2f32.powi(-8)),
            1.0 + 2f32.powi(-8)
        );
        // f16 keeps 11: 1 + 2^-11 is a tie, to 1.
        assert_eq!(round(MxuType::F16, 1.0 + 2f32.powi(-11)), 1.0);
    }

    #[test]
    fn conv_rounds_operands_and_adds_the_bias_last() {
        // 1x1 conv over two channels: x = [1.00390625, 3], w = [1, 1],
        // bias 2^-9. bf16: x0 → 1, sum 4, + 2^-9 = 4.001953125.
        let x = t(&[1, 2, 1, 1], vec![1.003_906_3, 3.0]);
        let w = t(&[1, 2, 1, 1], vec![1.0, 1.0]);
        let bias = t(&[1], vec![2f32.powi(-9)]);
        let attrs = ConvAttrs {
            strides: vec![1, 1],
            pads: vec![0; 4],
            dilations: vec![1, 1],
            group: 1,
        };
        let ty = TensorType::new(DType::F32, vec![1, 1, 1, 1]);
        let y = conv(MxuType::Bf16, &x, &w, Some(&bias), &attrs, &ty).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![4.0 + 2f32.powi(-9)]);
        let exact = conv(MxuType::F32, &x, &w, Some(&bias), &attrs, &ty).expect("ok");
        assert_eq!(exact.to_f32_vec(), vec![1.003_906_3 + 3.0 + 2f32.powi(-9)]);
    }

    #[test]
    fn conv_with_padding_matches_the_f32_interpreter_on_exact_values() {
        // Small integers are exact in bf16: the ONNX Conv example again.
        let x = t(&[1, 1, 5, 5], (0..25).map(|v| v as f32).collect());
        let w = t(&[1, 1, 3, 3], vec![1.0; 9]);
        let attrs = ConvAttrs {
            strides: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            dilations: vec![1, 1],
            group: 1,
        };
        let ty = TensorType::new(DType::F32, vec![1, 1, 5, 5]);
        let y = conv(MxuType::Bf16, &x, &w, None, &attrs, &ty).expect("ok");
        let reference = super::super::linalg::conv(&x, &w, None, &attrs, &ty).expect("ok");
        assert_eq!(y.to_f32_vec(), reference.to_f32_vec());
    }

    #[test]
    fn attention_rounds_unnormalized_probabilities_and_values() {
        // One query, two keys with equal scores: p = [1, 1] unnormalized
        // (exact in bf16), sum 2; V = [1.00390625], [3] rounds to [1], [3]:
        // O = (1 + 3) / 2 = 2, where f32 gives 2.001953125.
        let q = t(&[1, 1, 1, 1], vec![0.0]);
        let k = t(&[1, 1, 2, 1], vec![0.0, 0.0]);
        let v = t(&[1, 1, 2, 1], vec![1.003_906_3, 3.0]);
        let y = attention(MxuType::Bf16, &WHOLE, &q, &k, &v, None, 1.0, false).expect("ok");
        assert_eq!(y.to_f32_vec(), vec![2.0]);
        let exact = attention(MxuType::F32, &WHOLE, &q, &k, &v, None, 1.0, false).expect("ok");
        assert_eq!(exact.to_f32_vec(), vec![(1.003_906_3 + 3.0) * 0.5]);
    }

    #[test]
    fn attention_rounds_q_and_k_for_the_scores() {
        // q = 1 + 2^-8 rounds to 1 in bf16: the scores are [0, 1] (not
        // [0, 1.0039]), so the result is the same as for q = 1.
        let k = t(&[1, 1, 2, 1], vec![0.0, 1.0]);
        let v = t(&[1, 1, 2, 1], vec![1.0, 0.0]);
        let run = |q: f32| {
            attention(
                MxuType::Bf16,
                &WHOLE,
                &t(&[1, 1, 1, 1], vec![q]),
                &k,
                &v,
                None,
                1.0,
                false,
            )
            .expect("ok")
            .to_f32_vec()
        };
        assert_eq!(run(1.0 + 2f32.powi(-8)), run(1.0));
        // p = exp([0, 1] − 1) = [e^-1, 1], unnormalized; P·V = bf16(e^-1) · 1
        // = 0.3671875 (e^-1 = 0.36787945), then times 1 / (e^-1 + 1).
        let p0 = unary(UnFunc::Exp, -1.0);
        assert_eq!(round(MxuType::Bf16, p0), 0.367_187_5);
        assert_eq!(run(1.0), vec![0.367_187_5 * (1.0 / (p0 + 1.0))]);
    }

    #[test]
    fn online_attention_rescales_a_running_maximum() {
        // Scores [0, 1], V = [1, 0], one key per block. Block 0: m = 0,
        // p = 1, l = 1, O = 1. Block 1: m' = 1, α = e^-1, p = 1, l = α + 1,
        // O = 1·α + 1·0 = α, unrounded (the whole-row kernel rounds p = e^-1
        // to bf16 instead). Result: α · (1 / (α + 1)).
        let q = t(&[1, 1, 1, 1], vec![1.0]);
        let k = t(&[1, 1, 2, 1], vec![0.0, 1.0]);
        let v = t(&[1, 1, 2, 1], vec![1.0, 0.0]);
        let online = AttentionKernel {
            key_block: Some(1),
            lanes: Some(8),
        };
        let run = |mask: Option<&Tensor>| {
            attention(MxuType::Bf16, &online, &q, &k, &v, mask, 1.0, false)
                .expect("ok")
                .to_f32_vec()
        };
        let alpha = unary(UnFunc::Exp, -1.0);
        assert_eq!(run(None), vec![alpha * (1.0 / (alpha + 1.0))]);
        // A block whose scores are all −∞ leaves m, l and O as they were.
        let mask = t(&[1, 1, 1, 2], vec![0.0, f32::NEG_INFINITY]);
        assert_eq!(run(Some(&mask)), vec![1.0]);
    }
}
