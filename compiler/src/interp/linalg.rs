//! Matrix product and convolution.

use crate::graph::{ConvAttrs, TensorType};
use crate::tensor::{strides, DType, Tensor};

use super::broadcast_index;

/// `gather_matmul`: the table rows `rows` selects (`[B, M, K]`), times
/// `x` (`[B, K, N]`).
pub(crate) fn gather_matmul(
    table: &Tensor,
    rows: &Tensor,
    x: &Tensor,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let k = *table
        .shape()
        .last()
        .ok_or("gather_matmul of a scalar table")?;
    let mut shape = rows.shape().to_vec();
    shape.push(k);
    let gathered = super::movement::gather(table, rows, 0, &TensorType::new(table.dtype(), shape))?;
    matmul(&gathered, x, ty)
}

/// Batched matrix product with broadcast batch dimensions. Loops run
/// i-k-j so the inner loop streams rows of both `b` and the output.
pub(crate) fn matmul(a: &Tensor, b: &Tensor, ty: &TensorType) -> Result<Tensor, String> {
    let (ra, rb, ro) = (a.shape().len(), b.shape().len(), ty.shape.len());
    if ra < 2 || rb < 2 || ro < 2 {
        return Err("matmul operands need rank >= 2".into());
    }
    let (m, k, n) = (a.shape()[ra - 2], a.shape()[ra - 1], b.shape()[rb - 1]);
    let batch_shape = &ty.shape[..ro - 2];
    let a_batch = broadcast_index(batch_shape, &a.shape()[..ra - 2]);
    let b_batch = broadcast_index(batch_shape, &b.shape()[..rb - 2]);
    let (a_mat, b_mat, o_mat) = (m * k, k * n, m * n);
    if ty.dtype.is_float() {
        let (av, bv) = (a.to_f32_vec(), b.to_f32_vec());
        let mut out = vec![0f32; a_batch.len() * o_mat];
        for (batch, (&ia, &ib)) in a_batch.iter().zip(&b_batch).enumerate() {
            let (a0, b0, o0) = (ia * a_mat, ib * b_mat, batch * o_mat);
            for i in 0..m {
                let row = &mut out[o0 + i * n..o0 + (i + 1) * n];
                for p in 0..k {
                    let x = av[a0 + i * k + p];
                    let b_row = &bv[b0 + p * n..b0 + (p + 1) * n];
                    for (o, &y) in row.iter_mut().zip(b_row) {
                        *o += x * y;
                    }
                }
            }
        }
        Tensor::from_f32_as(ty.dtype, ty.shape.clone(), out).ok_or_else(|| "shape mismatch".into())
    } else {
        let (av, bv) = (a.to_i64_vec(), b.to_i64_vec());
        let mut out = vec![0i64; a_batch.len() * o_mat];
        for (batch, (&ia, &ib)) in a_batch.iter().zip(&b_batch).enumerate() {
            let (a0, b0, o0) = (ia * a_mat, ib * b_mat, batch * o_mat);
            for i in 0..m {
                for p in 0..k {
                    let x = av[a0 + i * k + p];
                    for j in 0..n {
                        out[o0 + i * n + j] =
                            out[o0 + i * n + j].wrapping_add(x.wrapping_mul(bv[b0 + p * n + j]));
                    }
                }
            }
        }
        Tensor::from_i64_as(ty.dtype, ty.shape.clone(), out).ok_or_else(|| "shape mismatch".into())
    }
}

/// N-dimensional convolution (cross-correlation) with groups, strides,
/// dilations and zero padding, over `N, C, spatial...`.
pub(crate) fn conv(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    attrs: &ConvAttrs,
    ty: &TensorType,
) -> Result<Tensor, String> {
    if !matches!(ty.dtype, DType::F32 | DType::F16 | DType::BF16) {
        return Err(format!("conv does not take {}", ty.dtype));
    }
    let xs = x.shape();
    let ws = w.shape();
    let os = &ty.shape;
    let spatial = xs.len() - 2;
    let (batch, channels, out_channels) = (xs[0], xs[1], ws[0]);
    let group = attrs.group;
    let (in_per_group, out_per_group) = (channels / group, out_channels / group);
    let (xv, wv) = (x.to_f32_vec(), w.to_f32_vec());
    let bv = bias.map(Tensor::to_f32_vec);
    let (x_strides, w_strides, o_strides) = (strides(xs), strides(ws), strides(os));
    let kernel_shape = &ws[2..];
    let out_spatial = &os[2..];
    // Kernel positions as multi-indices, computed once.
    let mut kernel_positions = Vec::new();
    super::for_each_index(kernel_shape, |k| kernel_positions.push(k.to_vec()));
    let mut out = vec![0f32; ty.numel()];
    let mut in_pos = vec![0i64; spatial];
    for n in 0..batch {
        for oc in 0..out_channels {
            let g = oc / out_per_group;
            let init = bv.as_ref().map_or(0.0, |b| b[oc]);
            super::for_each_index(out_spatial, |o| {
                let mut acc = init;
                for (kflat, k) in kernel_positions.iter().enumerate() {
                    let mut inside = true;
                    for d in 0..spatial {
                        let pos = (o[d] * attrs.strides[d] + k[d] * attrs.dilations[d]) as i64
                            - attrs.pads[d] as i64;
                        inside &= pos >= 0 && (pos as usize) < xs[2 + d];
                        in_pos[d] = pos;
                    }
                    if !inside {
                        continue;
                    }
                    let x_spatial: usize = (0..spatial)
                        .map(|d| in_pos[d] as usize * x_strides[2 + d])
                        .sum();
                    for ic in 0..in_per_group {
                        let c = g * in_per_group + ic;
                        let xv_at = xv[n * x_strides[0] + c * x_strides[1] + x_spatial];
                        let wv_at = wv[oc * w_strides[0] + ic * w_strides[1] + kflat];
                        acc += xv_at * wv_at;
                    }
                }
                let o_spatial: usize = (0..spatial).map(|d| o[d] * o_strides[2 + d]).sum();
                out[n * o_strides[0] + oc * o_strides[1] + o_spatial] = acc;
            });
        }
    }
    Tensor::from_f32_as(ty.dtype, os.clone(), out).ok_or_else(|| "shape mismatch".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_2x3_by_3x2() {
        let a = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let b = Tensor::from_f32(&[3, 2], vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let out = matmul(&a, &b, &TensorType::new(DType::F32, vec![2, 2])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![58.0, 64.0, 139.0, 154.0]);
    }

    #[test]
    fn matmul_broadcasts_a_shared_weight_over_batches() {
        let a = Tensor::from_f32(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = Tensor::from_f32(&[2, 1], vec![10.0, 1.0]);
        let out = matmul(&a, &b, &TensorType::new(DType::F32, vec![2, 1, 1])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![12.0, 34.0]);
    }

    #[test]
    fn conv_with_padding_matches_the_onnx_example() {
        // ONNX Conv doc example: 5x5 input 0..25, 3x3 ones kernel, pads 1.
        let x = Tensor::from_f32(&[1, 1, 5, 5], (0..25).map(|v| v as f32).collect());
        let w = Tensor::from_f32(&[1, 1, 3, 3], vec![1.0; 9]);
        let attrs = ConvAttrs {
            strides: vec![1, 1],
            pads: vec![1, 1, 1, 1],
            dilations: vec![1, 1],
            group: 1,
        };
        let out = conv(
            &x,
            &w,
            None,
            &attrs,
            &TensorType::new(DType::F32, vec![1, 1, 5, 5]),
        )
        .expect("ok");
        let v = out.to_f32_vec();
        assert_eq!(&v[..5], &[12.0, 21.0, 27.0, 33.0, 24.0]);
        assert_eq!(v[12], 108.0);
    }

    #[test]
    fn conv_patch_embedding_with_bias_and_stride() {
        // 2x2 patches of a 1-channel 4x4 image, two output channels.
        let x = Tensor::from_f32(&[1, 1, 4, 4], (0..16).map(|v| v as f32).collect());
        let w = Tensor::from_f32(&[2, 1, 2, 2], vec![1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 1.0, 1.0]);
        let b = Tensor::from_f32(&[2], vec![0.5, -1.0]);
        let attrs = ConvAttrs {
            strides: vec![2, 2],
            pads: vec![0; 4],
            dilations: vec![1, 1],
            group: 1,
        };
        let out = conv(
            &x,
            &w,
            Some(&b),
            &attrs,
            &TensorType::new(DType::F32, vec![1, 2, 2, 2]),
        )
        .expect("ok");
        assert_eq!(
            out.to_f32_vec(),
            vec![0.5, 2.5, 8.5, 10.5, 9.0, 17.0, 41.0, 49.0]
        );
    }
}
