//! Unit tests of shape and type inference.

use super::*;
use crate::graph::ConvAttrs;

fn t(dtype: DType, shape: &[usize]) -> TensorType {
    TensorType::new(dtype, shape.to_vec())
}

#[test]
fn binary_broadcasts_numpy_style() {
    let ty = Op::Binary(BinaryOp::Add)
        .infer(&[&t(DType::F32, &[2, 1, 4]), &t(DType::F32, &[3, 1])])
        .expect("broadcastable");
    assert_eq!(ty.shape, vec![2, 3, 4]);
    let err = Op::Binary(BinaryOp::Add)
        .infer(&[&t(DType::F32, &[2, 3]), &t(DType::F32, &[4])])
        .expect_err("3 vs 4");
    assert!(err.contains("do not broadcast"), "{err}");
    let ty = Op::Binary(BinaryOp::Less)
        .infer(&[&t(DType::I64, &[]), &t(DType::I64, &[5])])
        .expect("scalar");
    assert_eq!(ty, t(DType::Bool, &[5]));
}

#[test]
fn matmul_broadcasts_batch_dims() {
    let ty = Op::MatMul
        .infer(&[&t(DType::F32, &[2, 1, 3, 4]), &t(DType::F32, &[5, 4, 6])])
        .expect("ok");
    assert_eq!(ty.shape, vec![2, 5, 3, 6]);
    assert!(Op::MatMul
        .infer(&[&t(DType::F32, &[3, 4]), &t(DType::F32, &[5, 6])])
        .is_err());
}

#[test]
fn slice_lengths_follow_normalized_bounds() {
    assert_eq!(slice_len(0, 10, 3, 10), Some(4));
    assert_eq!(slice_len(9, -1, -1, 10), Some(10));
    assert_eq!(slice_len(9, -1, -4, 10), Some(3));
    assert_eq!(slice_len(5, 5, 1, 10), Some(0));
    assert_eq!(slice_len(0, 11, 1, 10), None);
    assert_eq!(slice_len(0, 1, 0, 10), None);
    // Steps near ±2^63 select one element and do not overflow.
    assert_eq!(slice_len(0, 10, i64::MAX, 10), Some(1));
    assert_eq!(slice_len(9, -1, i64::MIN, 10), Some(1));
    assert_eq!(slice_len(3, 3, i64::MAX, 10), Some(0));
}

#[test]
fn conv_output_size() {
    let c = ConvAttrs {
        strides: vec![8, 8],
        pads: vec![0; 4],
        dilations: vec![1, 1],
        group: 1,
    };
    let ty = Op::Conv(c)
        .infer(&[
            &t(DType::F32, &[1, 3, 32, 32]),
            &t(DType::F32, &[32, 3, 8, 8]),
            &t(DType::F32, &[32]),
        ])
        .expect("patch embedding");
    assert_eq!(ty.shape, vec![1, 32, 4, 4]);
}

#[test]
fn npu_ops_check_their_operands() {
    let f = |shape: &[usize]| t(DType::F32, shape);
    let gemm = |trans_b| Op::Gemm { trans_b, act: None };
    let ty = gemm(false)
        .infer(&[&f(&[2, 8, 32]), &f(&[32, 64]), &f(&[64])])
        .expect("ok");
    assert_eq!(ty.shape, vec![2, 8, 64]);
    assert_eq!(
        gemm(true)
            .infer(&[&f(&[8, 32]), &f(&[64, 32])])
            .expect("ok")
            .shape,
        vec![8, 64]
    );
    assert!(gemm(false).infer(&[&f(&[8, 32]), &f(&[64, 32])]).is_err());
    let err = gemm(false)
        .infer(&[&f(&[8, 32]), &f(&[32, 64]), &f(&[1, 64])])
        .expect_err("bias rank");
    assert!(err.contains("bias must be [64]"), "{err}");
    let attention = Op::Attention {
        scale: 0.125,
        causal: true,
    };
    let (q, kv) = (f(&[1, 4, 8, 16]), f(&[1, 2, 8, 16]));
    assert_eq!(attention.infer(&[&q, &kv, &kv]).expect("gqa"), q);
    assert!(attention
        .infer(&[&q, &f(&[1, 3, 8, 16]), &f(&[1, 3, 8, 16])])
        .is_err());
    assert!(attention.infer(&[&q, &kv, &kv, &f(&[1, 1, 8, 8])]).is_ok());
    let err = attention
        .infer(&[&q, &kv, &kv, &f(&[1, 1, 8, 9])])
        .expect_err("mask");
    assert!(err.contains("does not broadcast"), "{err}");
    let x = f(&[1, 4, 8, 16]);
    assert_eq!(
        Op::Rope
            .infer(&[&x, &f(&[8, 16]), &f(&[1, 1, 8, 16])])
            .expect("ok"),
        x
    );
    assert!(Op::Rope
        .infer(&[&f(&[8, 15]), &f(&[15]), &f(&[15])])
        .is_err());
}

#[test]
fn reduce_keeps_or_drops_axes() {
    let op = |keep_dims| Op::Reduce {
        kind: ReduceKind::Sum,
        axes: vec![0, 2],
        keep_dims,
    };
    assert_eq!(
        op(true)
            .infer(&[&t(DType::F32, &[2, 3, 4])])
            .expect("ok")
            .shape,
        vec![1, 3, 1]
    );
    assert_eq!(
        op(false)
            .infer(&[&t(DType::F32, &[2, 3, 4])])
            .expect("ok")
            .shape,
        vec![3]
    );
}
