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
pub fn online_key_block(shape: &OnlineShape, group: u64, target: &Target) -> Option<u64> {
    match plan::whole_row_blocks(shape, group, target) {
        (0, _) => shape.tiles(target).map(|(_, tk)| tk),
        _ => None,
    }
}

/// Builds the attention kernel: whole score rows when they fit, else the
/// online softmax.
pub fn attention(spec: &AttentionSpec, target: &Target) -> Result<Kernel, LowerError> {
    check(spec)?;
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
