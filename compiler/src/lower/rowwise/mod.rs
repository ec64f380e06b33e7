//! Row kernels: softmax, layer norm, RMS norm and reductions, each over
//! whole rows held in SPM.
//!
//! The input is viewed as `outer × rows × cols` with element strides: the
//! reduced (or normalized) axis is `cols`. When it is the last axis, rows
//! and columns are contiguous; when it is a middle axis, the DMA gathers
//! each row with element-sized runs (slower, but any axis works). Rows
//! stream through SPM in tiles with the shared load/compute/store
//! pipeline; scale and bias vectors are loaded once.
//!
//! `spec.rs` says what is computed, `plan.rs` chooses the tile and its
//! buffers, `tile.rs` builds the statements of one tile.

use tessera_isa::Target;

use crate::kernel::Kernel;
use crate::tensor::DType;

use super::alloc::{tiles, OnChip};
use super::pipeline::{build, Stream};
use super::template::resident_vectors;
use super::LowerError;

mod plan;
mod spec;
mod split;
mod tile;

pub use spec::{ReduceFn, RowOp, RowSpec, RowView};
pub use split::row_kernels;

use plan::{row_plan, RowBuffers};
use tile::RowKernel;

/// Builds a row kernel.
pub fn rowwise(spec: &RowSpec, target: &Target) -> Result<Kernel, LowerError> {
    check(spec)?;
    let plan = row_plan(spec, target)?;
    let mut mem = OnChip::new(target);
    let bufs = RowBuffers::allocate(&mut mem, spec, &plan)?;
    let kernel = RowKernel::new(spec, &plan, &bufs);
    let mut compute = kernel.convert_in();
    compute.extend(kernel.compute());
    compute.extend(kernel.convert_out());
    let mut body = resident_vectors(&kernel.resident_vectors());
    body.extend(build(Stream {
        outer: kernel.outer_vars.clone(),
        inner: (kernel.vr, tiles(spec.view.rows.0, plan.tr)),
        slot: kernel.slot,
        loads: kernel.loads(),
        compute,
        stores: kernel.stores(),
    }));
    let v = &spec.view;
    let (rows, cols) = (v.rows.0, v.cols.0);
    let (ies, oes) = (spec.input.1.size() as u64, spec.output.1.size() as u64);
    let outer_n: u64 = v.outer.iter().map(|o| o.0).product();
    let in_bytes = outer_n * rows * cols * (ies + if spec.residual.is_some() { 4 } else { 0 });
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "{}{:?} over {} x {} rows of {} (tile {} rows)",
            if spec.residual.is_some() {
                "residual add + "
            } else {
                ""
            },
            spec.op,
            outer_n,
            rows,
            cols,
            plan.tr
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(kernel.slot, 2)],
        macs: 0,
        compulsory_dram_bytes: in_bytes + outer_n * rows * plan.out_cols * oes + plan.vectors,
    })
}

/// Refuses types and operands the row kernels do not handle.
fn check(spec: &RowSpec) -> Result<(), LowerError> {
    let (in_t, out_t) = (spec.input.1, spec.output.1);
    let reduce = matches!(spec.op, RowOp::Reduce(_));
    if !reduce && (in_t != DType::F32 || out_t != DType::F32) {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: format!("{:?} on {} data", spec.op, in_t.name()),
        });
    }
    let norm = matches!(spec.op, RowOp::LayerNorm { .. } | RowOp::RmsNorm { .. });
    if spec.residual.is_some() && !norm {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: format!("internal: a residual operand for {:?}", spec.op),
        });
    }
    Ok(())
}
