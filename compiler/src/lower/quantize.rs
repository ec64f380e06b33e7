//! Constant weights quantized when compiling, for the 8-bit precisions
//! (`--precision int8|fp8-e4m3|fp8-e5m2`), in the layouts the GEMM kernel
//! reads (see [`OnlineQuant`](super::gemm::OnlineQuant)).
//!
//! A scale maps a group's max-abs to the type's largest finite value:
//! `s = max(amax · (1/max_finite), MIN_SCALE)`, the product in f32, as the
//! VPU computes activation scales on chip; each weight is then quantized
//! exactly as `vpu.quant` does (`tessera_isa::lowp::quantize`).
//!
//! - int8: one scale per output column (symmetric, zero point 0);
//! - FP8: one scale per `B × B` block (`B = mxu_scale_block`), stored once
//!   per weight tile (tiles never straddle a block, see
//!   [`tile_dims`](super::gemm::tile_dims)).

use std::collections::HashSet;

use tessera_isa::{lowp, DType, MxuClass, MxuType, Target};

use super::gemm::{max_finite, tile_dims, MIN_SCALE};
use crate::graph::{Graph, NodeId, Op};
use crate::precision::Precision;

/// Quantized weights: the bytes, in the stored layout, and the scales.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantizedWeights {
    /// One byte per weight, `[K, N]` (or `[N, K]` when stored transposed).
    pub data: Vec<u8>,
    /// int8: `[N]`; FP8: one per weight tile, tile `(kt, nt)` at
    /// `kt · NT + nt` (K-major: the tiles of a range of K are contiguous,
    /// so a GEMM split along K reads its chunk's scales in place).
    pub scales: Vec<f32>,
}

/// The scale of a group with max-abs `amax` in type `t`.
pub fn scale_of(amax: f32, t: DType) -> f32 {
    (amax * (1.0 / max_finite(t))).max(MIN_SCALE)
}

/// Quantizes a weight matrix `w` of logical shape `[k, n]` (stored `[n, k]`
/// when `trans`) for an 8-bit MXU type `mxu` (`i8`, `e4m3` or `e5m2`).
pub fn quantize_weights(
    w: &[f32],
    (k, n): (usize, usize),
    trans: bool,
    mxu: MxuType,
    target: &Target,
) -> QuantizedWeights {
    let t = mxu.w_type();
    let at = |kk: usize, j: usize| if trans { j * k + kk } else { kk * n + j };
    // The group of element (kk, j) and the groups' count.
    let (tk, tn) = tile_dims(k as u64, n as u64, mxu, target);
    let (tk, tn) = (tk as usize, tn as usize);
    let (kt, nt) = (k.div_ceil(tk), n.div_ceil(tn));
    let fp8 = mxu.class() == MxuClass::Fp8;
    let block = target.mxu_scale_block as usize;
    let group = |kk: usize, j: usize| -> usize {
        if fp8 {
            // The block's scale, stored at each of its tiles.
            (j / block) * k.div_ceil(block) + kk / block
        } else {
            j
        }
    };
    let groups = if fp8 {
        n.div_ceil(block) * k.div_ceil(block)
    } else {
        n
    };
    let mut amax = vec![0f32; groups];
    for kk in 0..k {
        for j in 0..n {
            let g = group(kk, j);
            amax[g] = amax[g].max(w[at(kk, j)].abs());
        }
    }
    let scale: Vec<f32> = amax.iter().map(|&a| scale_of(a, t)).collect();
    let mut data = vec![0u8; k * n];
    for kk in 0..k {
        for j in 0..n {
            let i = at(kk, j);
            data[i] = lowp::quantize(t, w[i], scale[group(kk, j)], 0);
        }
    }
    let scales = if fp8 {
        let mut per_tile = vec![0f32; kt * nt];
        for ntile in 0..nt {
            for ktile in 0..kt {
                per_tile[ktile * nt + ntile] = scale[group(ktile * tk, ntile * tn)];
            }
        }
        per_tile
    } else {
        scale
    };
    QuantizedWeights { data, scales }
}

/// The GEMMs an 8-bit `precision` runs in 8 bits: every `gemm` whose
/// weights are a constant, except where DeepSeek-V3 keeps high precision —
/// the output head (a GEMM whose result is a graph output, through
/// reshapes and transposes) — and those `keep_high` names: a node's name,
/// or a name scope (`/m/h.0/attn` keeps every node under it). Embeddings,
/// norms, softmax and attention are not GEMMs with constant weights and stay
/// high anyway. Fails when a `keep_high` name matches no node, or when FP8
/// meets a target with E8M0 block scales (the VPU computes fp32 scales).
pub fn eight_bit_gemms(
    graph: &Graph,
    precision: Precision,
    keep_high: &[String],
    target: &Target,
) -> Result<HashSet<NodeId>, String> {
    let mut chosen = HashSet::new();
    let Some(mxu) = precision.gemm_8bit() else {
        return Ok(chosen);
    };
    if mxu.class() == MxuClass::Fp8 && target.mxu_scale_e8m0 {
        return Err(format!(
            "--precision {} quantizes activations with fp32 block scales, but target `{}` sets \
             mxu_scale_e8m0",
            precision.name(),
            target.name
        ));
    }
    let named = |name: &str, pattern: &str| {
        name == pattern
            || name
                .strip_prefix(pattern)
                .is_some_and(|rest| pattern.ends_with('/') || rest.starts_with('/'))
    };
    let ids = graph.node_ids();
    for pattern in keep_high {
        if !ids.iter().any(|&id| named(&graph.node(id).name, pattern)) {
            return Err(format!(
                "--keep-high `{pattern}` names no node of the graph"
            ));
        }
    }
    let through_views = |mut id: NodeId| loop {
        match graph.node(id).op {
            Op::Reshape { .. } | Op::Transpose { .. } => id = graph.operands(id)[0],
            _ => return id,
        }
    };
    let heads: HashSet<NodeId> = graph
        .outputs()
        .iter()
        .map(|(_, o)| through_views(*o))
        .collect();
    for id in ids {
        let node = graph.node(id);
        if !matches!(node.op, Op::Gemm { .. }) || heads.contains(&id) || chooses(graph, id) {
            continue;
        }
        let mut w = graph.operands(id)[1];
        while let Op::Reshape { .. } = graph.node(w).op {
            w = graph.operands(w)[0];
        }
        let constant = matches!(graph.node(w).op, Op::Constant(_));
        if constant && !keep_high.iter().any(|p| named(&node.name, p)) {
            chosen.insert(id);
        }
    }
    Ok(chosen)
}

/// Whether a GEMM's result decides a discrete choice: it reaches, through
/// elementwise ops, casts, softmax and views only, a row maximum (the
/// `TopK` of a mixture-of-experts router, an `ArgMax`). Those stay in the
/// high precision, as DeepSeek-V3 keeps its gating: a choice taken from
/// 8-bit logits flips wherever two scores are close, and a flipped expert
/// changes the whole row.
fn chooses(graph: &Graph, gemm: NodeId) -> bool {
    let mut frontier = vec![gemm];
    let mut seen = HashSet::from([gemm]);
    for _ in 0..16 {
        let mut next = Vec::new();
        for id in frontier {
            for user in graph.users(id) {
                match &graph.node(user).op {
                    Op::Reduce {
                        kind: crate::graph::ReduceKind::Max,
                        ..
                    } => return true,
                    Op::Unary(_)
                    | Op::Binary(_)
                    | Op::Cast { .. }
                    | Op::Softmax { .. }
                    | Op::Elementwise { .. }
                    | Op::Reshape { .. }
                    | Op::Transpose { .. }
                    | Op::Where
                    | Op::Expand { .. }
                        if seen.insert(user) =>
                    {
                        next.push(user)
                    }
                    _ => {}
                }
            }
        }
        frontier = next;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int8_weights_get_one_scale_per_output_column() {
        // [k=2, n=2]: columns with max-abs 127 and 254.
        let w = [127.0, -254.0, -63.0, 100.0];
        let q = quantize_weights(&w, (2, 2), false, MxuType::I8, &Target::tiny());
        assert_eq!(
            q.scales,
            vec![scale_of(127.0, DType::I8), scale_of(254.0, DType::I8)]
        );
        let v: Vec<i8> = q.data.iter().map(|&b| b as i8).collect();
        assert_eq!(v, vec![127, -127, -63, 50]);
        // The same matrix stored transposed quantizes to the same values.
        let wt = [127.0, -63.0, -254.0, 100.0];
        let qt = quantize_weights(&wt, (2, 2), true, MxuType::I8, &Target::tiny());
        assert_eq!(qt.scales, q.scales);
        assert_eq!(qt.data, vec![q.data[0], q.data[2], q.data[1], q.data[3]]);
    }

    #[test]
    fn fp8_weights_get_one_scale_per_block_stored_per_tile() {
        // tiny: 8×8 array, blocks of 4 → tiles of 4×4, one block each.
        let target = Target {
            mxu_scale_block: 4,
            ..Target::tiny()
        };
        let (k, n) = (8, 4);
        let w: Vec<f32> = (0..k * n)
            .map(|i| if i < 16 { 1.0 } else { 100.0 })
            .collect();
        let q = quantize_weights(&w, (k, n), false, MxuType::E4m3, &target);
        // Two tiles along K (rows 0-3 and 4-7), one along N.
        assert_eq!(
            q.scales,
            vec![scale_of(1.0, DType::E4m3), scale_of(100.0, DType::E4m3)]
        );
        // Each block's max maps to 448.
        let max = lowp::Fp8::of(DType::E4m3)
            .expect("fp8")
            .from_f32(448.0, true);
        assert!(q.data.iter().all(|&b| b == max));
    }

    #[test]
    fn an_all_zero_group_quantizes_to_zeros() {
        let q = quantize_weights(&[0.0; 4], (2, 2), false, MxuType::I8, &Target::tiny());
        assert_eq!(q.data, vec![0; 4]);
        assert!(q.scales.iter().all(|&s| s == MIN_SCALE));
    }
}
