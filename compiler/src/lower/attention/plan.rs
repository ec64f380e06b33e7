//! Tiling plans of the two attention kernels: which block of query rows
//! (and of keys) each uses, how many tasks and loops that makes, and which
//! kernel an attention of a given shape runs.

use tessera_isa::Target;

use super::spec::AttentionSpec;
use crate::lower::alloc::tiles;
use crate::lower::LowerError;

/// What the tile choice depends on.
#[derive(Clone, Copy, Debug)]
pub struct OnlineShape {
    /// Query length.
    pub sq: u64,
    /// Key length.
    pub sk: u64,
    /// Head dimension.
    pub d: u64,
    /// Bytes per MXU input element.
    pub e: u64,
    /// No mask (`None`), a mask row shared by all queries (`Some(false)`),
    /// or one per query (`Some(true)`).
    pub mask: Option<bool>,
    /// Causal.
    pub causal: bool,
}

impl OnlineShape {
    /// The shape of an attention spec.
    pub fn of(spec: &AttentionSpec) -> OnlineShape {
        OnlineShape {
            sq: spec.sq,
            sk: spec.sk,
            d: spec.d,
            e: spec.mxu.a_type().size(),
            mask: spec.mask.as_ref().map(|m| m.strides[2] != 0),
            causal: spec.causal,
        }
    }

    /// Bytes of SPM and ACC the kernel needs with these tiles.
    fn needs(&self, tq: u64, tk: u64) -> (u64, u64) {
        let (d, e) = (self.d, self.e);
        let mask = match self.mask {
            Some(true) => tq * tk * 4,
            Some(false) => tk * 4,
            None => 0,
        };
        let causal = if self.causal {
            tq * (tq + 2 * tk - 2) * 4
        } else {
            0
        };
        // Each of the 17 buffers (20 slots) may lose up to 63 bytes to alignment.
        // K and V: two f32 staging slots each, and the MXU-typed copy.
        let spm = tq * d * (4 + e)
            + 2 * tk * d * (2 * 4 + e)
            + 2 * mask
            + tq * tk * (4 + e)
            + tq * d * 4
            + 5 * tq * 4
            + causal
            + 20 * 64;
        let acc = tq * tk * 4 + tq * d * 4 + 2 * 64;
        (spm, acc)
    }

    /// The tiles (`TQ`, `TK`), the largest that fit, preferring query rows
    /// (the last query block may be shorter); `None` when not even one row
    /// fits.
    pub fn tiles(&self, target: &Target) -> Option<(u64, u64)> {
        let tile = u64::from(target.mxu_k.min(target.mxu_n));
        // A short query block (a decode step's one row per head) takes
        // several weight tiles of keys per block: each block's two
        // dependent products pay the MXU's pipeline latency once, and
        // the softmax step's fixed costs, over more keys.
        let tiles_per_block = if self.sq < tile {
            KEY_TILES_SHORT_QUERY
        } else {
            1
        };
        let max_tk = self.sk.min(tile * tiles_per_block);
        let fits = |tq, tk| {
            let (spm, acc) = self.needs(tq, tk);
            spm <= target.spm_bytes && acc <= target.acc_bytes
        };
        // Sub-tiles end at the block's end: a block of several tiles holds
        // whole tiles, or all the keys.
        let whole_tiles = |tk: u64| tk <= tile || tk % tile == 0 || tk == self.sk;
        let mut best = None;
        for tq in (1..=self.sq.min(128)).rev() {
            if let Some(tk) = (1..=max_tk)
                .rev()
                .find(|&tk| whole_tiles(tk) && fits(tq, tk))
            {
                // Blocks of keys at least as wide as the query block (or
                // all keys the MXU takes at once) keep the per-block
                // overhead low.
                if tk >= tq.min(max_tk) {
                    return Some((tq, tk));
                }
                best = best.or(Some((tq, tk)));
            }
        }
        best
    }
}

/// Weight tiles of keys per block of the online kernel when the query
/// block is shorter than a tile.
pub const KEY_TILES_SHORT_QUERY: u64 = 8;

/// Chunks of `total` no larger than `max`: (tile, count).
pub(super) fn chunks(total: u64, max: u64) -> (u64, u64) {
    let t = total.min(max).max(1);
    (t, tiles(total, t))
}

/// The whole-row kernel's block of query rows, and whether each task
/// loads its own K and V (one query head per KV head, one block per head);
/// a block of 0 means the online-softmax kernel computes this attention.
pub(super) fn whole_row_blocks(shape: &OnlineShape, group: u64, target: &Target) -> (u64, bool) {
    let OnlineShape { sq, sk, d, e, .. } = *shape;
    let mask_full = shape.mask == Some(true);
    // Bytes per query row (Q, scores, P, O, row statistics, mask rows).
    let per_q = 2 * d * 4
        + 2 * d * e
        + sk * 4
        + 2 * sk * e
        + 2 * d * 4
        + 2 * 4
        + if mask_full { 2 * sk * 4 } else { 0 };
    let acc_rows = target.acc_bytes.saturating_sub(256) / (3 * (sk + d) * 4);
    // The largest TQ dividing SQ that fits, with `kv_slots` copies of K
    // and V on chip.
    let choose_tq = |kv_slots: u64| {
        let fixed = 2 * kv_slots * sk * d * (4 + e)
            + if shape.mask == Some(false) {
                2 * sk * 4
            } else {
                0
            }
            + if shape.causal { sk * 4 } else { 0 }
            + 64 * 24;
        // The causal mask is one TQ × TQ triangle (see below).
        let spm_need = |tq: u64| fixed + tq * per_q + if shape.causal { tq * tq * 4 } else { 0 };
        let fits = |t: &u64| spm_need(*t) <= target.spm_bytes;
        let mut sizes = (1..=acc_rows.min(512).min(sq)).rev();
        // The largest block that fits, and the largest dividing SQ.
        let largest = sizes.clone().find(fits).unwrap_or(0);
        let dividing = sizes.find(|t| sq % t == 0 && fits(t)).unwrap_or(0);
        // Far smaller blocks than fit (SQ has no divisor near them: a prime
        // length) run the online kernel, whose last block may be short.
        if dividing * 4 < largest {
            0
        } else {
            dividing
        }
    };
    // With one query head per KV head (plain multi-head attention) and
    // one query block per head, each task loads its own K and V and the
    // pipeline runs over all heads, overlapping the loads. Otherwise K and
    // V are loaded once per KV head and the pipeline runs over the query
    // heads of the group and the query blocks: a head's K and V are not
    // loaded and converted again for each of its query blocks.
    let per_task_tq = if group == 1 { choose_tq(2) } else { 0 };
    let kv_per_task = per_task_tq == sq;
    let tq = if kv_per_task { sq } else { choose_tq(1) };
    (tq, kv_per_task)
}

/// The whole-row kernel's tiles and loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct WholeRowPlan {
    /// Query rows per task (divides the query length).
    pub tq: u64,
    /// Whether each task loads its own K and V (else once per KV head).
    pub kv_per_task: bool,
    /// Copies of K and V on chip.
    pub kv_slots: u64,
    /// Blocks of `tq` query rows per head.
    pub query_blocks: u64,
    /// Whether the pipelined loop runs over query heads (else over query
    /// blocks, the query heads being the loop around it).
    pub heads_inner: bool,
    /// Iterations of the loop over KV heads (1 when K and V are per task).
    pub group_count: u64,
    /// Query heads each iteration of that loop covers.
    pub heads: u64,
    /// Iterations of the loop around the pipelined one.
    pub outer_count: u64,
    /// Tasks of the pipelined loop.
    pub pipelined_count: u64,
}

/// The whole-row plan for `spec`, or `None` when the online-softmax kernel
/// computes it.
pub(super) fn whole_row_plan(spec: &AttentionSpec, target: &Target) -> Option<WholeRowPlan> {
    let group = spec.h / spec.hkv.max(1);
    let (tq, kv_per_task) = whole_row_blocks(&OnlineShape::of(spec), group, target);
    if tq == 0 {
        return None;
    }
    let query_blocks = spec.sq / tq;
    // The pipelined loop runs over whichever of (query head in group, query
    // block) is longer; the other is an outer loop.
    let heads_inner = kv_per_task || group >= query_blocks;
    // In per-task mode the group loop runs once and the head loop over all heads.
    let (group_count, heads) = if kv_per_task {
        (1, spec.h)
    } else {
        (spec.hkv, group)
    };
    let (outer_count, pipelined_count) = if heads_inner {
        (query_blocks, heads)
    } else {
        (heads, query_blocks)
    };
    Some(WholeRowPlan {
        tq,
        kv_per_task,
        kv_slots: if kv_per_task { 2 } else { 1 },
        query_blocks,
        heads_inner,
        group_count,
        heads,
        outer_count,
        pipelined_count,
    })
}

/// The online kernel's tiles and loops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct OnlinePlan {
    /// Query rows per task (the last block may be shorter).
    pub tq: u64,
    /// Keys per block (the last block may be shorter).
    pub tk: u64,
    /// Blocks of query rows per head.
    pub query_blocks: u64,
    /// Blocks of keys per task.
    pub key_blocks: u64,
    /// Columns of the causal triangle: `TQ + 2·TK − 2`.
    pub window: u64,
}

/// The online plan for `spec`; an error when not even one query row and
/// one key fit.
pub(super) fn online_plan(spec: &AttentionSpec, target: &Target) -> Result<OnlinePlan, LowerError> {
    let Some((tq, tk)) = OnlineShape::of(spec).tiles(target) else {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: attention with head dimension {} needs more SPM/ACC than the target has, \
             even one query row and one key at a time",
            spec.node, spec.d
        )));
    };
    Ok(OnlinePlan {
        tq,
        tk,
        query_blocks: tiles(spec.sq, tq),
        key_blocks: tiles(spec.sk, tk),
        window: tq + 2 * tk - 2,
    })
}
