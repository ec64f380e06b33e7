//! The tiles of a row kernel and the SPM buffers they take.

use tessera_isa::{Mem, Target};

use crate::kernel::Buffer;
use crate::lower::alloc::OnChip;
use crate::lower::template::pipelined_row_tile;
use crate::lower::LowerError;
use crate::tensor::DType;

use super::spec::{RowOp, RowSpec};

/// The tiles of a row kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct RowPlan {
    /// Rows per tile.
    pub(super) tr: u64,
    /// Values per output row (1 for a reduction).
    pub(super) out_cols: u64,
    /// Bytes of the scale and bias vectors, loaded once.
    pub(super) vectors: u64,
}

/// As many rows per tile as SPM holds double-buffered, at most 1024.
pub(super) fn row_plan(spec: &RowSpec, target: &Target) -> Result<RowPlan, LowerError> {
    let (rows, cols) = (spec.view.rows.0, spec.view.cols.0);
    let (in_t, out_t) = (spec.input.1, spec.output.1);
    let (ies, oes) = (in_t.size() as u64, out_t.size() as u64);
    let out_cols = if matches!(spec.op, RowOp::Reduce(_)) {
        1
    } else {
        cols
    };
    // Per row: input (staging + f32) and output, double-buffered, plus one
    // temporary row and two per-row statistics.
    let per_row = 2 * cols * (4 + if in_t == DType::F32 { 0 } else { ies })
        + if spec.residual.is_some() {
            2 * cols * 4
        } else {
            0
        }
        + 2 * out_cols * (4 + if out_t == DType::F32 { 0 } else { oes })
        + cols * 4
        + 16;
    let vectors = match spec.op {
        RowOp::LayerNorm { bias, .. } => cols * 4 * (1 + u64::from(bias.is_some())),
        RowOp::RmsNorm { .. } => cols * 4,
        _ => 0,
    };
    let budget = target.spm_bytes.saturating_sub(vectors + 64 * 16);
    let cap = (budget / per_row.max(1)).min(rows).min(1024);
    if cap == 0 {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: a row of {cols} elements does not fit SPM",
            spec.node
        )));
    }
    Ok(RowPlan {
        tr: pipelined_row_tile(rows, cap),
        out_cols,
        vectors,
    })
}

/// The kernel's SPM buffers; staging buffers alias the f32 ones when the
/// data already is f32, and the output of a norm is its input, in place.
pub(super) struct RowBuffers {
    pub(super) xin: Buffer,
    pub(super) xstage: Buffer,
    pub(super) yout: Buffer,
    pub(super) ystage: Buffer,
    pub(super) rin: Option<Buffer>,
    pub(super) tmp: Buffer,
    pub(super) stat: Buffer,
    /// Scale (and bias) vectors with their DRAM addresses.
    pub(super) vectors: Vec<(Buffer, u64)>,
}

impl RowBuffers {
    pub(super) fn allocate(
        mem: &mut OnChip,
        spec: &RowSpec,
        plan: &RowPlan,
    ) -> Result<RowBuffers, LowerError> {
        let (tr, cols) = (plan.tr, spec.view.cols.0);
        let (in_t, out_t) = (spec.input.1, spec.output.1);
        let xin = mem.alloc("x", Mem::Spm, tr * cols * 4, 2)?;
        let xstage = if in_t == DType::F32 {
            xin.clone()
        } else {
            mem.alloc("x_raw", Mem::Spm, tr * cols * in_t.size() as u64, 2)?
        };
        let yout = if matches!(spec.op, RowOp::Reduce(_)) {
            mem.alloc("y", Mem::Spm, tr * 4, 2)?
        } else {
            xin.clone()
        };
        let ystage = if out_t == DType::F32 {
            yout.clone()
        } else {
            let bytes = tr * plan.out_cols * out_t.size() as u64;
            mem.alloc("y_raw", Mem::Spm, bytes, 2)?
        };
        let rin = match spec.residual {
            Some(_) => Some(mem.alloc("residual", Mem::Spm, tr * cols * 4, 2)?),
            None => None,
        };
        let tmp = mem.alloc("tmp", Mem::Spm, tr * cols * 4, 1)?;
        let stat = mem.alloc("stat", Mem::Spm, tr * 4, 2)?;
        let named = match &spec.op {
            RowOp::LayerNorm { scale, bias, .. } => {
                let mut v = vec![("scale", *scale)];
                if let Some(b) = bias {
                    v.push(("bias", *b));
                }
                v
            }
            RowOp::RmsNorm { scale, .. } => vec![("scale", *scale)],
            _ => vec![],
        };
        let mut vectors = Vec::new();
        for (name, addr) in named {
            vectors.push((mem.alloc(name, Mem::Spm, cols * 4, 1)?, addr));
        }
        Ok(RowBuffers {
            xin,
            xstage,
            yout,
            ystage,
            rin,
            tmp,
            stat,
            vectors,
        })
    }
}
