//! Fused attention: `O = softmax(Q·Kᵀ·scale + mask) · V` per head.
//!
//! Two kernels compute it. The whole-row kernel (`whole_row/`) keeps
//! whole score rows and a head's K and V in SPM and pipelines tasks of
//! `TQ` query rows across heads; `TQ` divides the query length so every
//! address stays affine. When no `TQ` fits (long sequences), or the query
//! length has no divisor near the block size that fits (a prime length),
//! the online-softmax kernel (`online/`) streams the keys instead.
//! `plan.rs` makes that choice and the tiles; `spec.rs` says what is
//! computed; `steps.rs` holds the statements both kernels build alike.

use tessera_isa::Target;

use crate::kernel::Kernel;

use super::LowerError;

mod online;
mod plan;
mod spec;
mod steps;
mod whole_row;

pub use plan::OnlineShape;
pub use spec::{AttentionSpec, MaskSpec, Tensor4};

/// The key block of the online-softmax kernel when [`attention`] computes
/// an attention of this shape with it (`group` query heads per KV head),
/// else `None` (whole score rows). The kernels round differently (the
/// online one rounds probabilities relative to a running maximum), so the
/// reference interpreter asks which one a program uses.
/// `mask_by_head`: whether the mask differs between query heads.
pub fn online_key_block(
    shape: &OnlineShape,
    group: u64,
    mask_by_head: bool,
    target: &Target,
) -> Option<u64> {
    let (shape, group) = match decode_rows(shape.sq, group) {
        Some(rows) => (
            OnlineShape {
                sq: rows,
                causal: false,
                mask: shape.mask.map(|_| mask_by_head),
                ..*shape
            },
            1,
        ),
        None => (*shape, group),
    };
    match plan::whole_row_blocks(&shape, group, target) {
        (0, _) => shape.tiles(target).map(|(_, tk)| tk),
        _ => None,
    }
}

/// A decode step of grouped-query attention — one query row, `group > 1`
/// query heads per KV head — runs as one head of `group` query rows per KV
/// head: its K and V are read once for the whole group instead of once per
/// query head. Exact: the rows are independent, and one query row (the
/// last position) sees every key, causal or not. The rows it becomes.
fn decode_rows(sq: u64, group: u64) -> Option<u64> {
    (sq == 1 && group > 1).then_some(group)
}

/// The spec of [`decode_rows`]: query head `kv · group + r` becomes row
/// `r` of head `kv` (Q, O and the mask strided accordingly).
fn as_decode_rows(spec: &AttentionSpec) -> Option<AttentionSpec> {
    let group = decode_rows(spec.sq, spec.h / spec.hkv.max(1))? as i64;
    let rows = |t: Tensor4| Tensor4 {
        addr: t.addr,
        strides: [
            t.strides[0],
            t.strides[1] * group,
            t.strides[1],
            t.strides[3],
        ],
    };
    let mask = spec.mask.as_ref().map(|m| MaskSpec {
        addr: m.addr,
        strides: [
            m.strides[0],
            m.strides[1] * group,
            m.strides[1],
            m.strides[3],
        ],
    });
    Some(AttentionSpec {
        h: spec.hkv,
        sq: group as u64,
        q: rows(spec.q),
        out: rows(spec.out),
        mask,
        causal: false,
        ..spec.clone()
    })
}

/// Builds the attention kernel: whole score rows when they fit, else the
/// online softmax.
pub fn attention(spec: &AttentionSpec, target: &Target) -> Result<Kernel, LowerError> {
    check(spec)?;
    let grouped = as_decode_rows(spec);
    let spec = grouped.as_ref().unwrap_or(spec);
    match plan::whole_row_plan(spec, target) {
        Some(whole_row) => whole_row::attention_whole_row(spec, &whole_row, target),
        // Whole score rows or K and V do not fit, or SQ only divides into
        // far smaller blocks than fit: stream the keys.
        None => online::attention_online(spec, &plan::online_plan(spec, target)?, target),
    }
}

/// Refuses what neither kernel computes.
fn check(spec: &AttentionSpec) -> Result<(), LowerError> {
    let refuse = |message: &str| {
        Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: message.into(),
        })
    };
    if [spec.q, spec.k, spec.v, spec.out]
        .iter()
        .any(|t| t.strides[3] != 1)
    {
        return refuse("attention operands must be contiguous along D");
    }
    if spec.causal && spec.sk < spec.sq {
        return refuse("causal attention with fewer keys than queries");
    }
    if spec
        .mask
        .as_ref()
        .is_some_and(|m| m.strides[3] == 0 && spec.sk > 1)
    {
        return refuse("an attention mask constant along the keys");
    }
    Ok(())
}
