//! The iteration space of an elementwise kernel and its tiles: operands'
//! strides over the output, dimensions merged where every operand is
//! contiguous, how each operand lies in a tile, and the tile size that
//! fits SPM.

use tessera_isa::Target;

use crate::lower::template::pipelined_row_tile;
use crate::lower::LowerError;
use crate::tensor::DType;

use super::spec::{Ew, EwSpec};

/// Element strides of an operand over the output's dimensions (0 where it
/// broadcasts).
pub fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<i64> {
    let r = out.len();
    let offset = r - shape.len().min(r);
    let mut dense = vec![0i64; shape.len()];
    let mut s = 1i64;
    for d in (0..shape.len()).rev() {
        dense[d] = s;
        s *= shape[d] as i64;
    }
    (0..r)
        .map(|d| {
            if d < offset {
                0
            } else {
                let od = d - offset;
                if shape[od] == 1 && out[d] != 1 {
                    0
                } else {
                    dense[od]
                }
            }
        })
        .collect()
}

/// Merges adjacent dimensions across which every stride list is
/// contiguous; drops size-1 dimensions. Returns sizes and per-list strides.
pub fn coalesce(sizes: &[usize], strides: &[Vec<i64>]) -> (Vec<u64>, Vec<Vec<i64>>) {
    let mut out_sizes: Vec<u64> = Vec::new();
    let mut out_strides: Vec<Vec<i64>> = vec![Vec::new(); strides.len()];
    for d in 0..sizes.len() {
        if sizes[d] == 1 {
            continue;
        }
        let mergeable = !out_sizes.is_empty()
            && strides.iter().enumerate().all(|(i, s)| {
                let prev = *out_strides[i].last().unwrap_or(&0);
                prev == s[d] * sizes[d] as i64
            });
        if mergeable {
            let last = out_sizes.len() - 1;
            out_sizes[last] *= sizes[d] as u64;
            for (i, s) in strides.iter().enumerate() {
                out_strides[i][last] = s[d];
            }
        } else {
            out_sizes.push(sizes[d] as u64);
            for (i, s) in strides.iter().enumerate() {
                out_strides[i].push(s[d]);
            }
        }
    }
    if out_sizes.is_empty() {
        out_sizes.push(1);
        for s in &mut out_strides {
            s.push(0);
        }
    }
    (out_sizes, out_strides)
}

/// How an operand is laid out in a tile.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Layout {
    /// A full tile.
    Full,
    /// A row vector, broadcast down the rows.
    Row,
    /// A packed column, broadcast along the row.
    Col,
    /// One value.
    Scalar,
}

fn count_nodes(e: &Ew) -> usize {
    match e {
        Ew::Input(_) | Ew::Scalar(_) => 0,
        Ew::Unary(_, a) => 1 + count_nodes(a),
        Ew::Binary(_, a, b) => 1 + count_nodes(a) + count_nodes(b),
        Ew::Select(c, a, b) => 1 + count_nodes(c) + count_nodes(a) + count_nodes(b),
    }
}

/// The merged iteration space and the tile over it.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct EwPlan {
    /// Sizes of the merged dimensions.
    pub sizes: Vec<u64>,
    /// Element strides over them: one list per operand, then the output's.
    pub strides: Vec<Vec<i64>>,
    /// Size of the dimension the tile's rows run along.
    pub rows: u64,
    /// Size of the dimension the tile's columns run along.
    pub cols: u64,
    /// Loops around the tile's two dimensions.
    pub outer_sizes: Vec<u64>,
    /// How each operand lies in a tile.
    pub layouts: Vec<Layout>,
    /// Rows per tile.
    pub tr: u64,
    /// Columns per tile.
    pub tc: u64,
}

impl EwPlan {
    /// Stride of list `i` along the tile's columns.
    pub fn col_stride(&self, i: usize) -> i64 {
        self.strides[i][self.sizes.len() - 1]
    }

    /// Stride of list `i` down the tile's rows.
    pub fn row_stride(&self, i: usize) -> i64 {
        let k = self.sizes.len();
        if k >= 2 {
            self.strides[i][k - 2]
        } else {
            0
        }
    }
}

/// The plan for `spec`: dimensions merged, a long last one split into
/// rows × columns, the largest tile that fits SPM.
pub(super) fn ew_plan(spec: &EwSpec, target: &Target) -> Result<EwPlan, LowerError> {
    let out_dims = if spec.shape.is_empty() {
        vec![1]
    } else {
        spec.shape.clone()
    };
    let mut stride_lists: Vec<Vec<i64>> = spec
        .operands
        .iter()
        .map(|o| {
            o.strides
                .clone()
                .unwrap_or_else(|| broadcast_strides(&o.shape, &out_dims))
        })
        .collect();
    stride_lists.push(
        spec.out_strides
            .clone()
            .unwrap_or_else(|| broadcast_strides(&out_dims, &out_dims)),
    );
    let (mut sizes, mut strides) = coalesce(&out_dims, &stride_lists);
    // A long last dimension (typically everything merged into one) becomes
    // rows × columns, so tiles have many rows and the pipeline has many
    // tiles to overlap.
    let last = sizes.len() - 1;
    if sizes[last] > 2048 && strides.iter().all(|s| s[last] == 0 || s[last] == 1) {
        let lanes = u64::from(target.vpu_lanes);
        let split = (lanes.max(64)..=2048u64)
            .rev()
            .find(|c| sizes[last] % c == 0 && c % lanes == 0)
            .or_else(|| (64..=2048u64).rev().find(|c| sizes[last] % c == 0));
        if let Some(c) = split {
            sizes[last] /= c;
            sizes.push(c);
            for s in &mut strides {
                let inner = s[last];
                s[last] = inner * c as i64;
                s.push(inner);
            }
        }
    }
    let k = sizes.len();
    let cols = sizes[k - 1];
    let rows = if k >= 2 { sizes[k - 2] } else { 1 };
    let outer_sizes: Vec<u64> = if k >= 3 {
        sizes[..k - 2].to_vec()
    } else {
        vec![]
    };
    let col_stride = |i: usize| strides[i][k - 1];
    let row_stride = |i: usize| if k >= 2 { strides[i][k - 2] } else { 0 };
    let layouts: Vec<Layout> = (0..spec.operands.len())
        .map(
            |i| match (col_stride(i) != 0, row_stride(i) != 0 || rows == 1) {
                (true, true) => Layout::Full,
                (true, false) => Layout::Row,
                (false, true) if rows > 1 => Layout::Col,
                _ => Layout::Scalar,
            },
        )
        .collect();

    // Tile sizes: bytes(tr, tc) = tc·A + tr·B + tr·tc·C + D must fit SPM.
    let temps = count_nodes(&spec.expr) as u64 + 1;
    let lanes = u64::from(target.vpu_lanes);
    let stage = |d: DType| {
        if d == DType::F32 || spec.cast_only {
            0
        } else {
            d.size() as u64
        }
    };
    let (mut ca, mut cb, mut cc, mut cd) = (0u64, 0u64, 0u64, 0u64);
    for (l, o) in layouts.iter().zip(&spec.operands) {
        let per = 2 * (4 + stage(o.dtype));
        match l {
            Layout::Full => cc += per,
            Layout::Row => ca += per,
            Layout::Col => cb += per,
            Layout::Scalar => cd += 2 * 2 * 64,
        }
    }
    cc += 4 * temps + 2 * (4 + spec.dtype.size() as u64);
    cd += 64 * (2 * spec.operands.len() as u64 * 2 + temps + 4);
    let bytes = |tr: u64, tc: u64| tc * ca + tr * cb + tr * tc * cc + cd;
    let budget = target.spm_bytes;
    let mut tc = cols.min(1024);
    while tc > lanes && bytes(4.min(rows), tc) > budget {
        tc = (tc / 2).div_ceil(lanes) * lanes;
    }
    let tc = tc.min(cols).max(1);
    let mut tr_cap = rows.min(4096);
    while tr_cap > 1 && bytes(tr_cap, tc) > budget {
        tr_cap = tr_cap * 3 / 4;
    }
    if bytes(tr_cap, tc) > budget {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: a row of {tc} elements with {} operands exceeds SPM",
            spec.node,
            spec.operands.len()
        )));
    }
    Ok(EwPlan {
        tr: pipelined_row_tile(rows, tr_cap),
        tc,
        sizes,
        strides,
        rows,
        cols,
        outer_sizes,
        layouts,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_dims_get_zero_strides_and_merge() {
        // [2, 3, 4] + [4] + [3, 1]
        let out = [2, 3, 4];
        let lists = vec![
            broadcast_strides(&[4], &out),
            broadcast_strides(&[3, 1], &out),
            broadcast_strides(&out, &out),
        ];
        assert_eq!(lists[0], vec![0, 0, 1]);
        assert_eq!(lists[1], vec![0, 1, 0]);
        let (sizes, strides) = coalesce(&out, &lists);
        assert_eq!(sizes, vec![2, 3, 4]);
        assert_eq!(strides[2], vec![12, 4, 1]);
        // Two full operands merge into one dimension.
        let (sizes, _) = coalesce(
            &out,
            &[broadcast_strides(&out, &out), broadcast_strides(&out, &out)],
        );
        assert_eq!(sizes, vec![24]);
    }
}
