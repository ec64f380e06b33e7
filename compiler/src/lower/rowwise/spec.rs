//! What a row kernel computes, and the strided view of its input: the
//! operation, the tensors' addresses and types, and the rows and columns.

use crate::tensor::DType;

/// What a row kernel computes.
#[derive(Clone, Debug, PartialEq)]
pub enum RowOp {
    /// Softmax along the row.
    Softmax,
    /// `(x - mean) / sqrt(var + eps) * scale (+ bias)`; scale and bias are
    /// f32 vectors of the row's length in DRAM.
    LayerNorm {
        /// Added to the variance.
        epsilon: f32,
        /// Scale vector.
        scale: u64,
        /// Bias vector.
        bias: Option<u64>,
    },
    /// `x / sqrt(mean(x²) + eps) * scale`.
    RmsNorm {
        /// Added to the mean square.
        epsilon: f32,
        /// Scale vector.
        scale: u64,
    },
    /// One value per row.
    Reduce(ReduceFn),
}

/// Row reductions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceFn {
    /// Sum.
    Sum,
    /// Mean.
    Mean,
    /// Maximum.
    Max,
}

/// A strided view `outer × rows × cols` of a tensor (element strides).
#[derive(Clone, Debug, PartialEq)]
pub struct RowView {
    /// Loops outside the rows: (count, element stride).
    pub outer: Vec<(u64, u64)>,
    /// Rows: (count, element stride).
    pub rows: (u64, u64),
    /// Columns (the reduced axis): (count, element stride).
    pub cols: (u64, u64),
}

impl RowView {
    /// The view of `shape` whose columns are axis `axis` (or, with
    /// `through_end`, all axes from `axis` on, which are contiguous).
    pub fn of(shape: &[usize], axis: usize, through_end: bool) -> RowView {
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        if through_end || axis + 1 >= shape.len() {
            let cols: u64 = shape[axis.min(shape.len())..].iter().product();
            let rows: u64 = shape[..axis.min(shape.len())].iter().product();
            return RowView {
                outer: vec![],
                rows: (rows, cols),
                cols: (cols, 1),
            };
        }
        let outer: u64 = shape[..axis].iter().product();
        let a = shape[axis];
        let inner: u64 = shape[axis + 1..].iter().product();
        RowView {
            outer: vec![(outer, a * inner)],
            rows: (inner, 1),
            cols: (a, inner),
        }
    }
}

impl RowView {
    /// The view of `shape` whose columns are the contiguous block of axes
    /// `first..=last` (flattened).
    pub fn block(shape: &[usize], first: usize, last: usize) -> RowView {
        if last + 1 >= shape.len() {
            return RowView::of(shape, first, true);
        }
        let shape: Vec<u64> = shape.iter().map(|&d| d as u64).collect();
        let outer: u64 = shape[..first].iter().product();
        let cols: u64 = shape[first..=last].iter().product();
        let inner: u64 = shape[last + 1..].iter().product();
        RowView {
            outer: vec![(outer, cols * inner)],
            rows: (inner, 1),
            cols: (cols, inner),
        }
    }
}

/// A row kernel.
#[derive(Clone, Debug, PartialEq)]
pub struct RowSpec {
    /// Source node.
    pub node: String,
    /// What to compute.
    pub op: RowOp,
    /// Input address and element type.
    pub input: (u64, DType),
    /// A second f32 input with the same view, added to the input first
    /// (residual add + norm); only for the norms.
    pub residual: Option<u64>,
    /// The input's view.
    pub view: RowView,
    /// Output address and element type; reductions write one value per
    /// row, densely in `outer × rows` order.
    pub output: (u64, DType),
}
