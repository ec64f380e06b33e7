//! Result types of the ops with several structured operands: convolution
//! and the NPU's fused Gemm, attention and RoPE.

use super::super::op::{qgemm_operands, ConvAttrs};
use super::super::TensorType;
use super::{broadcast_shapes, float_operand, same_dtype};
use crate::tensor::DType;

/// `[a, b(, bias)]` → `[..., M, N]`; see [`Op::Gemm`].
pub(super) fn gemm_type(trans_b: bool, operands: &[&TensorType]) -> Result<TensorType, String> {
    let (a, b) = (operands[0], operands[1]);
    float_operand(a)?;
    same_dtype(a, b)?;
    if a.rank() < 2 || b.rank() != 2 {
        return Err(format!(
            "gemm needs a of rank >= 2 and b of rank 2, has {:?} and {:?}",
            a.shape, b.shape
        ));
    }
    let k = a.shape[a.rank() - 1];
    let (bk, n) = if trans_b {
        (b.shape[1], b.shape[0])
    } else {
        (b.shape[0], b.shape[1])
    };
    if k != bk {
        return Err(format!(
            "inner dimensions differ: {:?} x {:?}{}",
            a.shape,
            b.shape,
            if trans_b { "ᵀ" } else { "" }
        ));
    }
    if let Some(bias) = operands.get(2) {
        same_dtype(a, bias)?;
        if bias.shape != [n] {
            return Err(format!("bias must be [{n}], is {:?}", bias.shape));
        }
    }
    let mut shape = a.shape.clone();
    *shape.last_mut().ok_or("gemm needs a of rank >= 2")? = n;
    Ok(TensorType::new(a.dtype, shape))
}

/// `[a, b, scale(, a_zp)(, b_zp)(, bias)(, out_scale)]` → f32 (or the
/// `out` type) `[..., M, N]`; see [`Op::QGemm`].
pub(super) fn qgemm_type(
    trans_b: bool,
    (a_zp, b_zp): (Option<i32>, Option<i32>),
    out: Option<(DType, i32)>,
    operands: &[&TensorType],
) -> Result<TensorType, String> {
    let (a, b, scale) = (operands[0], operands[1], operands[2]);
    for (what, t, zp) in [("a", a, a_zp), ("b", b, b_zp)] {
        let range = match t.dtype {
            DType::U8 => 0..=255,
            DType::I8 => -128..=127,
            other => return Err(format!("qgemm's {what} must be u8 or i8, is {other}")),
        };
        if let Some(zp) = zp.filter(|zp| !range.contains(zp)) {
            return Err(format!(
                "qgemm's {what} zero point {zp} is outside {}",
                t.dtype
            ));
        }
    }
    let slots = qgemm_operands((a_zp, b_zp), out.is_some(), operands.len());
    let (min, max) = slots.arity;
    if !(min..=max).contains(&operands.len()) {
        return Err(format!(
            "qgemm takes {min} or {max} operands, has {}",
            operands.len()
        ));
    }
    for (what, at, t) in [("a", slots.a_zp, a), ("b", slots.b_zp, b)] {
        let Some(at) = at else { continue };
        let zp = operands.get(at).ok_or(format!(
            "qgemm with a run-time zero point of {what} needs it as operand {at}"
        ))?;
        if zp.dtype != t.dtype || zp.numel() != 1 {
            return Err(format!(
                "qgemm's run-time zero point of {what} must be one {}, is {zp}",
                t.dtype
            ));
        }
    }
    let bias = slots.bias.map(|at| operands[at]);
    let out_scale = slots.out_scale.map(|at| operands[at]);
    for (what, t) in [
        ("scale", Some(scale)),
        ("bias", bias),
        ("out_scale", out_scale),
    ] {
        match t {
            Some(t) if t.dtype != DType::F32 => {
                return Err(format!("qgemm's {what} must be f32, is {}", t.dtype));
            }
            _ => {}
        }
    }
    if out_scale.is_some_and(|t| t.numel() != 1) {
        return Err("qgemm's output scale must be one value".into());
    }
    if let Some((t, zp)) = out {
        let fits = match t {
            DType::U8 => (0..=255).contains(&zp),
            DType::I8 => (-128..=127).contains(&zp),
            _ => return Err(format!("qgemm requantizes into u8 or i8, not {t}")),
        };
        if !fits {
            return Err(format!("qgemm's output zero point {zp} is outside {t}"));
        }
    }
    let typed = |ty: TensorType| match out {
        Some((t, _)) => TensorType::new(t, ty.shape),
        None => ty,
    };
    let n = if trans_b {
        b.shape.first()
    } else {
        b.shape.last()
    };
    if scale.shape.len() != 1 || Some(&scale.shape[0]) != n {
        return Err(format!(
            "qgemm's scale must be one per output column, is {:?}",
            scale.shape
        ));
    }
    let as_f32 = |t: &TensorType| TensorType::new(DType::F32, t.shape.clone());
    if b.rank() > 2 {
        // Batched: b [..., K, N] with a's batch dimensions [..., M, K].
        let batch = &b.shape[..b.rank() - 2];
        if trans_b || a.rank() != b.rank() || &a.shape[..a.rank() - 2] != batch {
            return Err(format!(
                "a batched qgemm needs a [..., M, K] and b [..., K, N] (not transposed) with the \
                 same batch, has {:?} and {:?}",
                a.shape, b.shape
            ));
        }
        let mut b2 = as_f32(b);
        b2.shape.drain(..b.rank() - 2);
        let mut f32_operands = vec![as_f32(a), b2];
        f32_operands.extend(bias.cloned());
        let refs: Vec<&TensorType> = f32_operands.iter().collect();
        return gemm_type(false, &refs).map(typed);
    }
    let mut f32_operands = vec![as_f32(a), as_f32(b)];
    f32_operands.extend(bias.cloned());
    let refs: Vec<&TensorType> = f32_operands.iter().collect();
    gemm_type(trans_b, &refs).map(typed)
}

/// `[q, k, v(, mask)]` → q's type; see [`Op::Attention`].
pub(super) fn attention_type(operands: &[&TensorType]) -> Result<TensorType, String> {
    let (q, k, v) = (operands[0], operands[1], operands[2]);
    float_operand(q)?;
    same_dtype(q, k)?;
    same_dtype(q, v)?;
    if q.rank() != 4 || k.rank() != 4 || v.rank() != 4 {
        return Err(format!(
            "q, k, v must be [B, H, S, D], are {:?}, {:?}, {:?}",
            q.shape, k.shape, v.shape
        ));
    }
    let (b, h, sq, d) = (q.shape[0], q.shape[1], q.shape[2], q.shape[3]);
    let (hkv, sk) = (k.shape[1], k.shape[2]);
    if k.shape[0] != b || k.shape[3] != d || v.shape != k.shape {
        return Err(format!(
            "k and v must be [{b}, Hkv, Sk, {d}] and equal, are {:?} and {:?}",
            k.shape, v.shape
        ));
    }
    if hkv == 0 || h % hkv != 0 {
        return Err(format!("{h} query heads do not group over {hkv} kv heads"));
    }
    if let Some(mask) = operands.get(3) {
        same_dtype(q, mask)?;
        let scores = [b, h, sq, sk];
        if broadcast_shapes(&mask.shape, &scores).ok().as_deref() != Some(&scores[..]) {
            return Err(format!(
                "mask {:?} does not broadcast to {scores:?}",
                mask.shape
            ));
        }
    }
    Ok(q.clone())
}

/// `[x, cos, sin]` → x's type; see [`Op::Rope`].
pub(super) fn rope_type(operands: &[&TensorType]) -> Result<TensorType, String> {
    let x = operands[0];
    float_operand(x)?;
    if x.rank() < 2 || x.shape.last().is_none_or(|d| d % 2 != 0) {
        return Err(format!(
            "x must be [..., S, D] with D even, is {:?}",
            x.shape
        ));
    }
    for table in &operands[1..] {
        same_dtype(x, table)?;
        if broadcast_shapes(&x.shape, &table.shape).ok().as_ref() != Some(&x.shape) {
            return Err(format!(
                "cos/sin {:?} does not broadcast to {:?}",
                table.shape, x.shape
            ));
        }
    }
    Ok(x.clone())
}

pub(super) fn conv_type(c: &ConvAttrs, operands: &[&TensorType]) -> Result<TensorType, String> {
    let (x, w) = (operands[0], operands[1]);
    float_operand(x)?;
    same_dtype(x, w)?;
    let spatial = x
        .rank()
        .checked_sub(2)
        .filter(|&s| s >= 1)
        .ok_or("conv input needs rank >= 3")?;
    if w.rank() != x.rank()
        || c.strides.len() != spatial
        || c.dilations.len() != spatial
        || c.pads.len() != 2 * spatial
    {
        return Err(format!(
            "weights {:?}, strides, dilations and pads do not match input {:?}",
            w.shape, x.shape
        ));
    }
    let (channels, out_channels) = (x.shape[1], w.shape[0]);
    if c.group == 0
        || channels % c.group != 0
        || out_channels % c.group != 0
        || w.shape[1] * c.group != channels
    {
        return Err(format!(
            "group {} does not fit {channels} input and {out_channels} output channels (weights {:?})",
            c.group, w.shape
        ));
    }
    if let Some(b) = operands.get(2) {
        same_dtype(x, b)?;
        if b.shape != [out_channels] {
            return Err(format!("bias {:?} must be [{out_channels}]", b.shape));
        }
    }
    let mut shape = vec![x.shape[0], out_channels];
    for d in 0..spatial {
        if c.strides[d] == 0 || c.dilations[d] == 0 {
            return Err("strides and dilations must be positive".into());
        }
        let padded = x.shape[2 + d]
            .checked_add(c.pads[d])
            .and_then(|v| v.checked_add(c.pads[spatial + d]))
            .ok_or("padding overflows")?;
        let reach = (w.shape[2 + d].saturating_sub(1))
            .checked_mul(c.dilations[d])
            .ok_or("dilation overflows")?
            + 1;
        if padded < reach {
            return Err(format!(
                "kernel {:?} is larger than the padded input {:?}",
                w.shape, x.shape
            ));
        }
        shape.push((padded - reach) / c.strides[d] + 1);
    }
    Ok(TensorType::new(x.dtype, shape))
}
