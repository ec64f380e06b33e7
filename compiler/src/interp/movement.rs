//! Data movement: transpose, expand, concat, slice, gathers, scatters,
//! trilu. Each computes, for every output element, the flat index it reads,
//! then selects those elements (so every dtype is handled alike).

use crate::graph::TensorType;
use crate::tensor::{map_data, strides, Tensor, TensorData};

use super::{broadcast_index, for_each_index};

fn build(ty: &TensorType, data: TensorData) -> Result<Tensor, String> {
    Tensor::new(ty.shape.clone(), data).ok_or_else(|| "shape mismatch".into())
}

/// Output dim `i` is input dim `perm[i]`.
pub(crate) fn transpose(x: &Tensor, perm: &[usize], ty: &TensorType) -> Result<Tensor, String> {
    let in_strides = strides(x.shape());
    let permuted: Vec<usize> = perm.iter().map(|&p| in_strides[p]).collect();
    let mut plan = Vec::with_capacity(x.numel());
    for_each_index(&ty.shape, |idx| {
        plan.push(idx.iter().zip(&permuted).map(|(i, s)| i * s).sum())
    });
    build(ty, x.data().select(&plan))
}

/// Broadcasts to `shape`.
pub(crate) fn expand(x: &Tensor, shape: &[usize]) -> Result<Tensor, String> {
    let plan = broadcast_index(shape, x.shape());
    Tensor::new(shape.to_vec(), x.data().select(&plan)).ok_or_else(|| "shape mismatch".into())
}

/// Joins along `axis`.
pub(crate) fn concat(parts: &[&Tensor], axis: usize, ty: &TensorType) -> Result<Tensor, String> {
    let outer: usize = ty.shape[..axis].iter().product();
    let inner: usize = ty.shape[axis + 1..].iter().product();
    // Index into the concatenation of all parts' data.
    let mut bases = Vec::with_capacity(parts.len());
    let mut base = 0;
    for p in parts {
        bases.push(base);
        base += p.numel();
    }
    let mut plan = Vec::with_capacity(ty.numel());
    for o in 0..outer {
        for (p, &b) in parts.iter().zip(&bases) {
            let chunk = p.shape()[axis] * inner;
            plan.extend(b + o * chunk..b + (o + 1) * chunk);
        }
    }
    let datas: Vec<&TensorData> = parts.iter().map(|p| p.data()).collect();
    let all = TensorData::concat(&datas).ok_or("operands differ in type")?;
    build(ty, all.select(&plan))
}

/// Output index `i` reads input index `starts[d] + i * steps[d]` per dim.
pub(crate) fn slice(
    x: &Tensor,
    starts: &[i64],
    steps: &[i64],
    ty: &TensorType,
) -> Result<Tensor, String> {
    let in_strides = strides(x.shape());
    let mut plan = Vec::with_capacity(ty.numel());
    let mut bad = false;
    for_each_index(&ty.shape, |idx| {
        let mut flat = 0i64;
        for d in 0..idx.len() {
            let pos = starts[d] + idx[d] as i64 * steps[d];
            bad |= pos < 0 || pos as usize >= x.shape()[d];
            flat += pos * in_strides[d] as i64;
        }
        plan.push(flat.max(0) as usize);
    });
    if bad {
        return Err("slice reads outside its operand".into());
    }
    build(ty, x.data().select(&plan))
}

/// Resolves a possibly negative index against a dimension.
fn resolve(index: i64, dim: usize) -> Result<usize, String> {
    let resolved = if index < 0 { index + dim as i64 } else { index };
    if resolved < 0 || resolved >= dim as i64 {
        Err(format!(
            "index {index} is out of range for a dimension of size {dim}"
        ))
    } else {
        Ok(resolved as usize)
    }
}

/// ONNX Gather.
pub(crate) fn gather(
    data: &Tensor,
    indices: &Tensor,
    axis: usize,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let shape = data.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let dim = shape[axis];
    let idx = indices
        .to_i64_vec()
        .into_iter()
        .map(|i| resolve(i, dim))
        .collect::<Result<Vec<_>, _>>()?;
    let mut plan = Vec::with_capacity(ty.numel());
    for o in 0..outer {
        for &i in &idx {
            let base = (o * dim + i) * inner;
            plan.extend(base..base + inner);
        }
    }
    build(ty, data.data().select(&plan))
}

/// ONNX GatherElements: the output has the indices' shape.
pub(crate) fn gather_elements(
    data: &Tensor,
    indices: &Tensor,
    axis: usize,
) -> Result<Tensor, String> {
    let data_strides = strides(data.shape());
    let idx = indices.to_i64_vec();
    let mut plan = Vec::with_capacity(idx.len());
    let mut error = None;
    let mut k = 0;
    for_each_index(indices.shape(), |pos| {
        let mut flat = 0;
        for d in 0..pos.len() {
            let coordinate = if d == axis {
                match resolve(idx[k], data.shape()[d]) {
                    Ok(c) => c,
                    Err(e) => {
                        error.get_or_insert(e);
                        0
                    }
                }
            } else if pos[d] < data.shape()[d] {
                pos[d]
            } else {
                error.get_or_insert_with(|| {
                    format!(
                        "indices {:?} exceed data {:?}",
                        indices.shape(),
                        data.shape()
                    )
                });
                0
            };
            flat += coordinate * data_strides[d];
        }
        plan.push(flat);
        k += 1;
    });
    if let Some(e) = error {
        return Err(e);
    }
    Tensor::new(indices.shape().to_vec(), data.data().select(&plan))
        .ok_or_else(|| "shape mismatch".into())
}

/// ONNX GatherND with `batch_dims` leading shared dimensions.
pub(crate) fn gather_nd(
    data: &Tensor,
    indices: &Tensor,
    batch_dims: usize,
    ty: &TensorType,
) -> Result<Tensor, String> {
    let ds = data.shape();
    let is = indices.shape();
    let q = is[is.len() - 1];
    let data_strides = strides(ds);
    let batch: usize = ds[..batch_dims].iter().product();
    let batch_stride = if batch_dims == 0 {
        data.numel()
    } else {
        data_strides[batch_dims - 1]
    };
    let tuples_per_batch: usize = is[batch_dims..is.len() - 1].iter().product();
    let slice_len: usize = ds[batch_dims + q..].iter().product();
    let idx = indices.to_i64_vec();
    let mut plan = Vec::with_capacity(ty.numel());
    for b in 0..batch {
        for t in 0..tuples_per_batch {
            let tuple = &idx[(b * tuples_per_batch + t) * q..(b * tuples_per_batch + t + 1) * q];
            let mut base = b * batch_stride;
            for (j, &i) in tuple.iter().enumerate() {
                base += resolve(i, ds[batch_dims + j])? * data_strides[batch_dims + j];
            }
            plan.extend(base..base + slice_len);
        }
    }
    build(ty, data.data().select(&plan))
}

/// `data` with the elements at `targets` (flat output positions, in
/// order: a later equal target wins) taken from `updates`.
fn overwrite(data: &Tensor, updates: &Tensor, targets: &[usize]) -> Result<Tensor, String> {
    let n = data.numel();
    let mut plan: Vec<usize> = (0..n).collect();
    for (k, &t) in targets.iter().enumerate() {
        plan[t] = n + k;
    }
    let all =
        TensorData::concat(&[data.data(), updates.data()]).ok_or("operands differ in type")?;
    Tensor::new(data.shape().to_vec(), all.select(&plan)).ok_or_else(|| "shape mismatch".into())
}

/// The inverse of Gather: rows `data[o, indices[p], :]` replaced by
/// `updates[o, p, :]`, in index order.
pub(crate) fn scatter(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: usize,
) -> Result<Tensor, String> {
    let shape = data.shape();
    let outer: usize = shape[..axis].iter().product();
    let inner: usize = shape[axis + 1..].iter().product();
    let dim = shape[axis];
    let idx = indices
        .to_i64_vec()
        .into_iter()
        .map(|i| resolve(i, dim))
        .collect::<Result<Vec<_>, _>>()?;
    let mut targets = Vec::with_capacity(updates.numel());
    for o in 0..outer {
        for &i in &idx {
            let base = (o * dim + i) * inner;
            targets.extend(base..base + inner);
        }
    }
    overwrite(data, updates, &targets)
}

/// The inverse of GatherElements: `out[i with i[axis] = indices[i]] =
/// updates[i]` for every position of `indices`, in row-major order.
pub(crate) fn scatter_elements(
    data: &Tensor,
    indices: &Tensor,
    updates: &Tensor,
    axis: usize,
) -> Result<Tensor, String> {
    let data_strides = strides(data.shape());
    let idx = indices.to_i64_vec();
    let mut targets = Vec::with_capacity(idx.len());
    let mut error = None;
    let mut k = 0;
    for_each_index(indices.shape(), |pos| {
        let mut flat = 0;
        for d in 0..pos.len() {
            let coordinate = if d == axis {
                resolve(idx[k], data.shape()[d]).unwrap_or_else(|e| {
                    error.get_or_insert(e);
                    0
                })
            } else {
                pos[d]
            };
            flat += coordinate * data_strides[d];
        }
        targets.push(flat);
        k += 1;
    });
    if let Some(e) = error {
        return Err(e);
    }
    overwrite(data, updates, &targets)
}

/// Keeps the upper (`j - i >= k`) or lower (`j - i <= k`) triangle of the
/// last two dimensions; zeroes the rest.
pub(crate) fn trilu(x: &Tensor, upper: bool, k: i64) -> Result<Tensor, String> {
    let shape = x.shape();
    let (rows, cols) = (shape[shape.len() - 2] as i64, shape[shape.len() - 1] as i64);
    let keep = |flat: usize| {
        let flat = flat as i64;
        let (i, j) = ((flat / cols) % rows, flat % cols);
        if upper {
            j - i >= k
        } else {
            j - i <= k
        }
    };
    let data = map_data!(x.data(), v => v
        .iter()
        .enumerate()
        .map(|(n, &e)| if keep(n) { e } else { Default::default() })
        .collect());
    Tensor::new(shape.to_vec(), data).ok_or_else(|| "shape mismatch".into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tensor::DType;

    fn ty(shape: &[usize]) -> TensorType {
        TensorType::new(DType::F32, shape.to_vec())
    }

    #[test]
    fn transpose_swaps_axes() {
        let x = Tensor::from_f32(&[2, 3], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let out = transpose(&x, &[1, 0], &ty(&[3, 2])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![1.0, 4.0, 2.0, 5.0, 3.0, 6.0]);
    }

    #[test]
    fn concat_on_the_middle_axis() {
        let a = Tensor::from_f32(&[2, 1, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let b = Tensor::from_f32(&[2, 2, 2], vec![5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]);
        let out = concat(&[&a, &b], 1, &ty(&[2, 3, 2])).expect("ok");
        assert_eq!(
            out.to_f32_vec(),
            vec![1.0, 2.0, 5.0, 6.0, 7.0, 8.0, 3.0, 4.0, 9.0, 10.0, 11.0, 12.0]
        );
    }

    #[test]
    fn slice_with_negative_step_reverses() {
        let x = Tensor::from_f32(&[5], vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        let out = slice(&x, &[4], &[-2], &ty(&[3])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![4.0, 2.0, 0.0]);
    }

    #[test]
    fn gather_rows_with_negative_indices() {
        let x = Tensor::from_f32(&[3, 2], vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        let idx = Tensor::from_i64(&[2], vec![-1, 0]);
        let out = gather(&x, &idx, 0, &ty(&[2, 2])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![5.0, 6.0, 1.0, 2.0]);
        let bad = Tensor::from_i64(&[1], vec![3]);
        assert!(gather(&x, &bad, 0, &ty(&[1, 2])).is_err());
    }

    #[test]
    fn gather_elements_along_axis_1() {
        // ONNX doc example.
        let x = Tensor::from_f32(&[2, 2], vec![1.0, 2.0, 3.0, 4.0]);
        let idx = Tensor::from_i64(&[2, 2], vec![0, 0, 1, 0]);
        let out = gather_elements(&x, &idx, 1).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![1.0, 1.0, 4.0, 3.0]);
    }

    #[test]
    fn gather_nd_with_a_batch_dim() {
        // ONNX doc example 5: batch_dims = 1.
        let x = Tensor::from_f32(&[2, 2, 2], (0..8).map(|v| v as f32).collect());
        let idx = Tensor::from_i64(&[2, 1], vec![1, 0]);
        let out = gather_nd(&x, &idx, 1, &ty(&[2, 2])).expect("ok");
        assert_eq!(out.to_f32_vec(), vec![2.0, 3.0, 4.0, 5.0]);
    }

    #[test]
    fn trilu_lower_and_upper() {
        let x = Tensor::from_f32(&[3, 3], (1..10).map(|v| v as f32).collect());
        let lower = trilu(&x, false, 0).expect("ok").to_f32_vec();
        assert_eq!(lower, vec![1.0, 0.0, 0.0, 4.0, 5.0, 0.0, 7.0, 8.0, 9.0]);
        let upper = trilu(&x, true, 1).expect("ok").to_f32_vec();
        assert_eq!(upper, vec![0.0, 2.0, 3.0, 0.0, 0.0, 6.0, 0.0, 0.0, 0.0]);
    }
}
