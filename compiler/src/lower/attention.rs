//! Fused attention: `O = softmax(Q·Kᵀ·scale + mask) · V` per head.
//!
//! Work is grouped by key/value head: for each batch entry and KV head the
//! DMA loads K and V once and the VPU converts them to the MXU's type; then
//! every query head of the group (grouped-query attention) and every block
//! of `TQ` query rows is one *task*: Q·Kᵀ into ACC (K used transposed by
//! `mxu.ldw … trans=t`), scale, mask and softmax on the VPU over whole
//! score rows in SPM, P·V into ACC, and the result stored. Tasks are
//! double-buffered and the output of task `t` is stored after task `t + 1`
//! was loaded, so loads, both matmuls and the softmax overlap across heads.
//! `TQ` divides the query length so every address stays affine. When no
//! `TQ` fits (long sequences), or the query length has no divisor near the
//! block size that fits (a prime length), `attention_online.rs` streams the
//! keys instead.
//!
//! Synchronization (data lanes carry events in program order; credit lanes
//! guard slot reuse, pre-signaled and drained):
//!
//! | channel | events |
//! |---------|--------|
//! | dma→vpu data | K/V loaded; a task's Q (and mask) loaded |
//! | vpu→mxu data | K/V converted; Q converted; P ready |
//! | mxu→vpu data | scores ready; O ready |
//! | vpu→dma data | O ready to store |
//! | vpu→dma credit | a Q/mask staging slot is free (2) |
//! | mxu→vpu credit | a Q/P operand slot is free (2) |
//! | vpu→mxu credit | an ACC slot is free (2) |
//! | dma→vpu credit | an output slot is free (2) |

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType as IsaType, Engine, Mem, MxuType, Order, RedFunc, Target, Trans,
    UnFunc,
};

use crate::kernel::{
    Addr, Affine, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt,
};

use super::alloc::{tiles, OnChip, Vars};
use super::attention_online::{attention_online, OnlineShape};
use super::LowerError;

/// An additive mask operand: f32 in DRAM, with element strides over
/// `[B, H, Sq, Sk]` (0 where it broadcasts).
#[derive(Clone, Debug, PartialEq)]
pub struct MaskSpec {
    /// Base address.
    pub addr: u64,
    /// Strides over batch, head, query row, key column.
    pub strides: [i64; 4],
}

/// A 4-D f32 tensor `[B, H, S, D]` in DRAM as a strided view: base
/// address and element strides (the last must be 1). Views let attention
/// read Q, K, V straight out of a fused projection's output and write O
/// in the layout its consumer wants, without transpose kernels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tensor4 {
    /// Byte address of element (0, 0, 0, 0).
    pub addr: u64,
    /// Element strides of B, H, S, D.
    pub strides: [i64; 4],
}

impl Tensor4 {
    /// A dense `[b, h, s, d]` tensor.
    pub fn dense(addr: u64, shape: [u64; 4]) -> Tensor4 {
        let [_, h, s, d] = shape.map(|x| x as i64);
        Tensor4 {
            addr,
            strides: [h * s * d, s * d, d, 1],
        }
    }
}

/// Everything the attention kernel needs.
#[derive(Clone, Debug, PartialEq)]
pub struct AttentionSpec {
    /// Source node.
    pub node: String,
    /// Batch.
    pub b: u64,
    /// Query heads.
    pub h: u64,
    /// Key/value heads (divides `h`).
    pub hkv: u64,
    /// Query length.
    pub sq: u64,
    /// Key length.
    pub sk: u64,
    /// Head dimension.
    pub d: u64,
    /// Q `[B, H, Sq, D]` f32.
    pub q: Tensor4,
    /// K `[B, Hkv, Sk, D]` f32.
    pub k: Tensor4,
    /// V `[B, Hkv, Sk, D]` f32.
    pub v: Tensor4,
    /// Optional additive mask.
    pub mask: Option<MaskSpec>,
    /// Scale of the scores.
    pub scale: f32,
    /// Causal masking (`j > i + sk - sq` excluded).
    pub causal: bool,
    /// Output `[B, H, Sq, D]` f32.
    pub out: Tensor4,
    /// MXU input type.
    pub mxu: MxuType,
}

impl AttentionSpec {
    /// Shapes and flags for kernel summaries: `b1 h12/kv12 q128 k128 d64 causal`.
    pub fn describe(&self) -> String {
        format!(
            "b{} h{}/kv{} q{} k{} d{}{}{}",
            self.b,
            self.h,
            self.hkv,
            self.sq,
            self.sk,
            self.d,
            if self.mask.is_some() { " +mask" } else { "" },
            if self.causal { " causal" } else { "" },
        )
    }

    /// MACs of both products over all heads.
    pub fn macs(&self) -> u64 {
        2 * self.b * self.h * self.sq * self.sk * self.d
    }

    /// DRAM bytes any schedule moves: Q and O once per query head, K and V
    /// once per KV head, the mask once per head.
    pub fn compulsory_dram_bytes(&self) -> u64 {
        let heads = self.b * self.h;
        let mask = self
            .mask
            .as_ref()
            .map_or(0, |_| heads * self.sq * self.sk * 4);
        heads * self.sq * self.d * 4 * 2 + 2 * self.b * self.hkv * self.sk * self.d * 4 + mask
    }
}

/// Chunks of `total` no larger than `max`: (tile, count).
pub(super) fn chunks(total: u64, max: u64) -> (u64, u64) {
    let t = total.min(max).max(1);
    (t, tiles(total, t))
}

/// The whole-row kernel's block of query rows, and whether each task
/// loads its own K and V (one query head per KV head, one block per head);
/// a block of 0 means the online-softmax kernel computes this attention.
fn whole_row_blocks(shape: &OnlineShape, group: u64, target: &Target) -> (u64, bool) {
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

/// The key block of the online-softmax kernel when [`attention`] computes
/// an attention of this shape with it (`group` query heads per KV head),
/// else `None` (whole score rows). The kernels round differently (the
/// online one rounds probabilities relative to a running maximum), so the
/// reference interpreter asks which one a program uses.
pub fn online_key_block(shape: &OnlineShape, group: u64, target: &Target) -> Option<u64> {
    match whole_row_blocks(shape, group, target) {
        (0, _) => shape.tiles(target).map(|(_, tk)| tk),
        _ => None,
    }
}

/// Builds the attention kernel.
pub fn attention(spec: &AttentionSpec, target: &Target) -> Result<Kernel, LowerError> {
    use Engine::{Dma, Mxu, Vpu};
    let (sq, sk, d) = (spec.sq, spec.sk, spec.d);
    let e = spec.mxu.dtype().size();
    let group = spec.h / spec.hkv.max(1);
    let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
    if [spec.q, spec.k, spec.v, spec.out]
        .iter()
        .any(|t| t.strides[3] != 1)
    {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: "attention operands must be contiguous along D".into(),
        });
    }
    if spec.causal && sk < sq {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: "causal attention with fewer keys than queries".into(),
        });
    }
    if spec
        .mask
        .as_ref()
        .is_some_and(|m| m.strides[3] == 0 && sk > 1)
    {
        return Err(LowerError::Unsupported {
            node: spec.node.clone(),
            message: "an attention mask constant along the keys".into(),
        });
    }
    let (tq, kv_per_task) = whole_row_blocks(&OnlineShape::of(spec), group, target);
    let kv_slots = if kv_per_task { 2 } else { 1 };
    if tq == 0 {
        // Whole score rows or K and V do not fit, or SQ only divides into
        // far smaller blocks than fit: stream the keys.
        return attention_online(spec, target);
    }
    let qb = sq / tq;
    let mut mem = OnChip::new(target);
    let kstage = mem.alloc("k_f32", Mem::Spm, sk * d * 4, kv_slots)?;
    let vstage = mem.alloc("v_f32", Mem::Spm, sk * d * 4, kv_slots)?;
    let kbuf = mem.alloc("k", Mem::Spm, sk * d * e, kv_slots)?;
    let vbuf = mem.alloc("v", Mem::Spm, sk * d * e, kv_slots)?;
    let qstage = mem.alloc("q_f32", Mem::Spm, tq * d * 4, 2)?;
    let qbuf = mem.alloc("q", Mem::Spm, tq * d * e, 2)?;
    let mstage = match &spec.mask {
        Some(_) if mask_full => Some(mem.alloc("mask", Mem::Spm, tq * sk * 4, 2)?),
        Some(_) => Some(mem.alloc("mask_row", Mem::Spm, sk * 4, 2)?),
        None => None,
    };
    let scores = mem.alloc("scores", Mem::Spm, tq * sk * 4, 1)?;
    // Causal attention: query row q0 + i sees keys j <= q0 + i + (sk - sq).
    // A block of TQ rows at q0 therefore sees nothing past column
    // w = q0 + TQ + (sk - sq), and only the TQ columns of the diagonal band
    // [w - TQ, w) are partly masked, the same way for every block: one
    // TQ × TQ triangle (0 on and below the diagonal, -inf above), built once,
    // is added to the band, and the softmax runs over w columns, not SK.
    let causal_mask = if spec.causal {
        Some(mem.alloc("causal", Mem::Spm, tq * tq * 4, 1)?)
    } else {
        None
    };
    let zero_row = if spec.causal && sq > tq {
        Some(mem.alloc("zero_row", Mem::Spm, sk * 4, 1)?)
    } else {
        None
    };
    let stat = mem.alloc("row_stat", Mem::Spm, tq * 4, 2)?;
    let pbuf = mem.alloc("p", Mem::Spm, tq * sk * e, 2)?;
    let oout = mem.alloc("o", Mem::Spm, tq * d * 4, 2)?;
    let sacc = mem.alloc("s_acc", Mem::Acc, tq * sk * 4, 3)?;
    let oacc = mem.alloc("o_acc", Mem::Acc, tq * d * 4, 3)?;

    let mut vars = Vars::default();
    let (vb, vkv, vx, vy, slot) = (
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
    );
    // The pipelined loop runs over whichever of (query head in group, query
    // block) is longer; the other is an outer loop.
    let heads_inner = kv_per_task || group >= qb;
    let (vhh, vqb) = if heads_inner { (vy, vx) } else { (vx, vy) };
    // In per-task mode the group loop runs once and the head loop over all heads.
    let (group_count, heads) = if kv_per_task {
        (1, spec.h)
    } else {
        (spec.hkv, group)
    };
    let (x_count, y_count) = if heads_inner {
        (qb, heads)
    } else {
        (heads, qb)
    };
    let s = Affine::var(0, slot, 1);
    let kv_slot = if kv_per_task { s.clone() } else { Affine::c(0) };
    let data = Chan::data;
    let credit = Chan::credit;

    // h = kvh·group + hh; rows q0 = qb·tq.
    let head = Affine::var(0, vkv, group as i64).plus(vhh, 1);
    let q_rows = |t: &Tensor4| -> Affine {
        let [sb, sh, ss, _] = t.strides;
        let mut a = Affine::var(t.addr as i64, vb, sb * 4);
        a = a.plus_affine(&Affine {
            constant: 0,
            terms: head.terms.iter().map(|&(v, k)| (v, k * sh * 4)).collect(),
        });
        a.plus(vqb, tq as i64 * ss * 4)
    };
    let kv_base = |t: &Tensor4| {
        let base = Affine::var(t.addr as i64, vb, t.strides[0] * 4);
        if kv_per_task {
            base.plus(vhh, t.strides[1] * 4)
        } else {
            base.plus(vkv, t.strides[1] * 4)
        }
    };
    // `rows` rows of D floats between DRAM (row stride from the view) and
    // a dense SPM tile.
    let rows_copy = |to_spm: bool, dram: Affine, t: &Tensor4, spm: Addr, rows: u64| -> Stmt {
        let dram = Addr::new(Mem::Dram, dram);
        let (dst, src, ss, ds) = if to_spm {
            (spm, dram, t.strides[2] * 4, (d * 4) as i64)
        } else {
            (dram, spm, (d * 4) as i64, t.strides[2] * 4)
        };
        Stmt::Copy {
            dst,
            src,
            run: Ext::Const(d * 4),
            dims: vec![DmaDim {
                count: Ext::Const(rows),
                sstride: ss,
                dstride: ds,
            }],
        }
    };

    // ---- per group: K and V --------------------------------------------------
    let cvt = |dst: Addr, a: Addr, rows: Ext, cols: u64| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: spec.mxu.dtype(),
                a,
                atype: IsaType::F32,
                astride: cols * 4,
            },
            dst,
            dstride: cols * e,
            rows,
            cols: Ext::Const(cols),
        })
    };
    let zero = Affine::c(0);
    let group_prologue = if kv_per_task {
        vec![]
    } else {
        vec![
            rows_copy(true, kv_base(&spec.k), &spec.k, kstage.at(&zero, 0), sk),
            rows_copy(true, kv_base(&spec.v), &spec.v, vstage.at(&zero, 0), sk),
            Stmt::Signal(data(Dma, Vpu), 1),
            Stmt::Wait(data(Dma, Vpu), 1),
            cvt(kbuf.at(&zero, 0), kstage.at(&zero, 0), Ext::Const(sk), d),
            cvt(vbuf.at(&zero, 0), vstage.at(&zero, 0), Ext::Const(sk), d),
            Stmt::Signal(data(Vpu, Mxu), 1),
            Stmt::Wait(data(Vpu, Mxu), 1),
        ]
    };

    // ---- the steps of one task --------------------------------------------------
    // Built for task t (loop variable vy, SPM slot `slot`, ACC slot `a0`),
    // then shifted to t + 1 or t − 1 by substitution.
    let (a0, a1, am) = (vars.fresh(), vars.fresh(), vars.fresh());
    let acc_slot = Affine::var(0, a0, 1);
    let mut load = vec![
        Stmt::Wait(credit(Vpu, Dma), 1),
        rows_copy(true, q_rows(&spec.q), &spec.q, qstage.at(&s, 0), tq),
    ];
    if kv_per_task {
        load.push(rows_copy(
            true,
            kv_base(&spec.k),
            &spec.k,
            kstage.at(&s, 0),
            sk,
        ));
        load.push(rows_copy(
            true,
            kv_base(&spec.v),
            &spec.v,
            vstage.at(&s, 0),
            sk,
        ));
    }
    if let (Some(m), Some(ms)) = (&spec.mask, &mstage) {
        let mut src = Affine::var(m.addr as i64, vb, m.strides[0] * 4);
        src = src.plus_affine(&Affine {
            constant: 0,
            terms: head
                .terms
                .iter()
                .map(|&(v, k)| (v, k * m.strides[1] * 4))
                .collect(),
        });
        src = src.plus(vqb, tq as i64 * m.strides[2] * 4);
        let (run, dims) = if m.strides[3] == 1 {
            let dims = if mask_full {
                vec![DmaDim {
                    count: Ext::Const(tq),
                    sstride: m.strides[2] * 4,
                    dstride: (sk * 4) as i64,
                }]
            } else {
                vec![]
            };
            (Ext::Const(sk * 4), dims)
        } else {
            let mut dims = vec![DmaDim {
                count: Ext::Const(sk),
                sstride: m.strides[3] * 4,
                dstride: 4,
            }];
            if mask_full {
                dims.push(DmaDim {
                    count: Ext::Const(tq),
                    sstride: m.strides[2] * 4,
                    dstride: (sk * 4) as i64,
                });
            }
            (Ext::Const(4), dims)
        };
        load.push(Stmt::Copy {
            dst: ms.at(&s, 0),
            src: Addr::new(Mem::Dram, src),
            run,
            dims,
        });
    }
    load.push(Stmt::Signal(data(Dma, Vpu), 1));
    let mut cvt_q = vec![
        Stmt::Wait(data(Dma, Vpu), 1),
        Stmt::Wait(credit(Mxu, Vpu), 1),
        cvt(qbuf.at(&s, 0), qstage.at(&s, 0), Ext::Const(tq), d),
    ];
    if kv_per_task {
        cvt_q.push(cvt(kbuf.at(&s, 0), kstage.at(&s, 0), Ext::Const(sk), d));
        cvt_q.push(cvt(vbuf.at(&s, 0), vstage.at(&s, 0), Ext::Const(sk), d));
    }
    cvt_q.push(Stmt::Signal(data(Vpu, Mxu), 1));
    // MXU: S = Q·Kᵀ, in chunks of keys (≤ N) and of D (≤ K).
    let (kn, kn_count) = chunks(sk, u64::from(target.mxu_n));
    let (dk, dk_count) = chunks(d, u64::from(target.mxu_k));
    let (vc, vd) = (vars.fresh(), vars.fresh());
    let keys = Ext::tile(kn, sk, Affine::var(0, vc, kn as i64));
    let dims_k = Ext::tile(dk, d, Affine::var(0, vd, dk as i64));
    let scores_mm = vec![
        Stmt::Wait(data(Vpu, Mxu), 1),
        Stmt::Wait(credit(Vpu, Mxu), 1),
        Stmt::For {
            var: vc,
            count: kn_count,
            body: vec![Stmt::For {
                var: vd,
                count: dk_count,
                body: vec![
                    Stmt::LoadW {
                        src: kbuf
                            .at(&kv_slot, 0)
                            .at
                            .plus(vc, (kn * d * e) as i64)
                            .plus(vd, (dk * e) as i64),
                        k: dims_k.clone(),
                        n: keys.clone(),
                        stride: d * e,
                        dtype: spec.mxu,
                        trans: Trans::T,
                    },
                    Stmt::Matmul {
                        dst: sacc.at(&acc_slot, 0).at.plus(vc, (kn * 4) as i64),
                        a: qbuf.at(&s, 0).at.plus(vd, (dk * e) as i64),
                        m: Ext::Const(tq),
                        astride: d * e,
                        dstride: sk * 4,
                        mode: Mode::AccAfterFirst(vd),
                    },
                ],
            }],
        },
        Stmt::Signal(data(Mxu, Vpu), 1),
    ];
    // VPU: scores = S·scale (+ mask), causal, softmax, P.
    let sp = sk * 4;
    let rows = Ext::Const(tq);
    // (Causal attention has sk >= sq, checked above.)
    let band = tq + sk.saturating_sub(sq);
    let cols = if spec.causal {
        // w = min(SK, vqb·TQ + TQ + SK − SQ).
        Ext::Tail {
            tile: sk,
            limit: band as i64,
            start: Affine::var(0, vqb, -(tq as i64)),
        }
    } else {
        Ext::Const(sk)
    };
    let full = |a: Addr, stride: u64| Opnd {
        addr: a,
        stride,
        bcast: Bcast::Full,
    };
    let mut softmax = vec![Stmt::Wait(data(Mxu, Vpu), 1)];
    softmax.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::BinS {
            func: BinFunc::Mul,
            a: full(sacc.at(&acc_slot, 0), sp),
            scalar: spec.scale,
            order: Order::As,
        },
        dst: scores.at(&zero, 0),
        dstride: sp,
        rows: rows.clone(),
        cols: cols.clone(),
    }));
    if let Some(ms) = &mstage {
        let m = if mask_full {
            full(ms.at(&s, 0), sp)
        } else {
            Opnd {
                addr: ms.at(&s, 0),
                stride: 0,
                bcast: Bcast::Row,
            }
        };
        softmax.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func: BinFunc::Add,
                a: full(scores.at(&zero, 0), sp),
                b: m,
            },
            dst: scores.at(&zero, 0),
            dstride: sp,
            rows: rows.clone(),
            cols: cols.clone(),
        }));
    }
    softmax.push(Stmt::Signal(credit(Vpu, Dma), 1));
    if let Some(cm) = &causal_mask {
        // The triangle onto the band: columns q0 + SK − SQ ..
        let at_band = Affine::var(((sk - sq) * 4) as i64, vqb, (tq * 4) as i64);
        let band_at = scores.at(&zero, 0).at.plus_affine(&at_band);
        let band_at = Addr::new(Mem::Spm, band_at);
        softmax.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func: BinFunc::Add,
                a: full(band_at.clone(), sp),
                b: full(cm.at(&zero, 0), tq * 4),
            },
            dst: band_at.clone(),
            dstride: sp,
            rows: rows.clone(),
            cols: Ext::Const(tq),
        }));
    }
    // Row statistics are per SPM slot: task t's 1/sum scales its O after
    // task t + 1's softmax has run.
    let col = Opnd {
        addr: stat.at(&s, 0),
        stride: 4,
        bcast: Bcast::Col,
    };
    let red = |func| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Red {
                func,
                a: full(scores.at(&zero, 0), sp),
                mode: Mode::Fixed(AccMode::Set),
            },
            dst: stat.at(&s, 0),
            dstride: 4,
            rows: rows.clone(),
            cols: cols.clone(),
        })
    };
    softmax.push(red(RedFunc::Max));
    softmax.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::Bin {
            func: BinFunc::Sub,
            a: full(scores.at(&zero, 0), sp),
            b: col.clone(),
        },
        dst: scores.at(&zero, 0),
        dstride: sp,
        rows: rows.clone(),
        cols: cols.clone(),
    }));
    softmax.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::Un {
            func: UnFunc::Exp,
            a: full(scores.at(&zero, 0), sp),
        },
        dst: scores.at(&zero, 0),
        dstride: sp,
        rows: rows.clone(),
        cols: cols.clone(),
    }));
    softmax.push(red(RedFunc::Sum));
    // P stays unnormalized (its entries are in [0, 1]); O = (P·V) / sum is
    // scaled when it leaves ACC, which touches TQ × D values instead of
    // TQ × SK. One reciprocal per row (a packed column of tq values is
    // processed as one row of tq lanes), then a multiply.
    softmax.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::Un {
            func: UnFunc::Recip,
            a: full(stat.at(&s, 0), tq * 4),
        },
        dst: stat.at(&s, 0),
        dstride: tq * 4,
        rows: Ext::Const(1),
        cols: rows.clone(),
    }));
    softmax.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::Cvt {
            dtype: spec.mxu.dtype(),
            a: scores.at(&zero, 0),
            atype: IsaType::F32,
            astride: sp,
        },
        dst: pbuf.at(&s, 0),
        dstride: sk * e,
        rows: rows.clone(),
        cols: cols.clone(),
    }));
    if let Some(zeros) = &zero_row {
        // P·V runs over all SK keys: P is 0 past w (converted from a row
        // of zeros read with stride 0).
        let past_w =
            pbuf.at(&s, 0)
                .at
                .plus_affine(&Affine::var((band * e) as i64, vqb, (tq * e) as i64));
        softmax.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: spec.mxu.dtype(),
                a: zeros.at(&zero, 0),
                atype: IsaType::F32,
                astride: 0,
            },
            dst: Addr::new(Mem::Spm, past_w),
            dstride: sk * e,
            rows: rows.clone(),
            cols: Ext::Tail {
                tile: sk,
                limit: (sq - tq) as i64,
                start: Affine::var(0, vqb, tq as i64),
            },
        }));
    }
    softmax.push(Stmt::Signal(data(Vpu, Mxu), 1));
    // MXU: O = P·V, in chunks of D (≤ N) and of keys (≤ K).
    let (on, on_count) = chunks(d, u64::from(target.mxu_n));
    let (pk, pk_count) = chunks(sk, u64::from(target.mxu_k));
    let (vo, vk) = (vars.fresh(), vars.fresh());
    let pv = vec![
        Stmt::Wait(data(Vpu, Mxu), 1),
        Stmt::For {
            var: vo,
            count: on_count,
            body: vec![Stmt::For {
                var: vk,
                count: pk_count,
                body: vec![
                    Stmt::LoadW {
                        src: vbuf
                            .at(&kv_slot, 0)
                            .at
                            .plus(vk, (pk * d * e) as i64)
                            .plus(vo, (on * e) as i64),
                        k: Ext::tile(pk, sk, Affine::var(0, vk, pk as i64)),
                        n: Ext::tile(on, d, Affine::var(0, vo, on as i64)),
                        stride: d * e,
                        dtype: spec.mxu,
                        trans: Trans::N,
                    },
                    Stmt::Matmul {
                        dst: oacc.at(&acc_slot, 0).at.plus(vo, (on * 4) as i64),
                        a: pbuf.at(&s, 0).at.plus(vk, (pk * e) as i64),
                        m: Ext::Const(tq),
                        astride: sk * e,
                        dstride: d * 4,
                        mode: Mode::AccAfterFirst(vk),
                    },
                ],
            }],
        },
        Stmt::Signal(data(Mxu, Vpu), 1),
        Stmt::Signal(credit(Mxu, Vpu), 1),
    ];
    let move_o = vec![
        Stmt::Wait(data(Mxu, Vpu), 1),
        Stmt::Wait(credit(Dma, Vpu), 1),
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func: BinFunc::Mul,
                a: full(oacc.at(&acc_slot, 0), d * 4),
                b: col,
            },
            dst: oout.at(&s, 0),
            dstride: d * 4,
            rows: rows.clone(),
            cols: Ext::Const(d),
        }),
        Stmt::Signal(credit(Vpu, Mxu), 1),
        Stmt::Signal(data(Vpu, Dma), 1),
    ];
    let store = vec![
        Stmt::Wait(data(Vpu, Dma), 1),
        rows_copy(false, q_rows(&spec.out), &spec.out, oout.at(&s, 0), tq),
        Stmt::Signal(credit(Dma, Vpu), 1),
    ];
    // Task t ± 1: shift vy, the SPM slot (1 − slot) and the ACC slot.
    let shift = |stmts: &[Stmt], y: Affine, acc: Var| -> Vec<Stmt> {
        let other = Affine::var(1, slot, -1);
        let acc_var = Affine::var(0, acc, 1);
        stmts
            .iter()
            .map(|st| {
                st.map_affine(&|a: &Affine| {
                    a.substitute(vy, &y)
                        .substitute(slot, &other)
                        .substitute(a0, &acc_var)
                })
            })
            .collect()
    };
    let at_task = |stmts: &[Stmt], y: Affine| -> Vec<Stmt> {
        stmts
            .iter()
            .map(|st| st.map_affine(&|a: &Affine| a.substitute(vy, &y)))
            .collect()
    };
    let next = Affine::var(1, vy, 1);
    let prev = Affine::var(-1, vy, 1);
    let mut prefetch = shift(&load, next.clone(), a1);
    prefetch.extend(shift(&cvt_q, next.clone(), a1));
    prefetch.extend(shift(&scores_mm, next, a1));
    let mut drain = shift(&move_o, prev.clone(), am);
    drain.extend(shift(&store, prev, am));
    let mut task = vec![Stmt::If {
        lhs: Affine::var(0, vy, 1),
        cmp: Cmp::Lt,
        value: y_count as i64 - 1,
        body: prefetch,
    }];
    task.extend(softmax);
    task.extend(pv);
    task.push(Stmt::If {
        lhs: Affine::var(0, vy, 1),
        cmp: Cmp::Ge,
        value: 1,
        body: drain,
    });
    task.extend([
        Stmt::Advance(slot),
        Stmt::Advance(a0),
        Stmt::Advance(a1),
        Stmt::Advance(am),
    ]);
    // Before the loop: task 0's load, Q and scores; after it: the last O.
    let mut x_body = at_task(&load, Affine::c(0));
    x_body.extend(at_task(&cvt_q, Affine::c(0)));
    x_body.extend(at_task(&scores_mm, Affine::c(0)));
    x_body.push(Stmt::For {
        var: vy,
        count: y_count,
        body: task,
    });
    let last = Affine::c(y_count as i64 - 1);
    x_body.extend(shift(&move_o, last.clone(), am));
    x_body.extend(shift(&store, last, am));
    let mut group_body = group_prologue;
    group_body.push(Stmt::For {
        var: vx,
        count: x_count,
        body: x_body,
    });

    let mut mask_build = Vec::new();
    if let Some(cm) = &causal_mask {
        // Row r of the triangle: 0 up to column r, -inf after.
        let vr = vars.fresh();
        mask_build.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits: 0 },
            dst: cm.at(&zero, 0),
            dstride: tq * 4,
            rows: Ext::Const(tq),
            cols: Ext::Const(tq),
        }));
        mask_build.push(Stmt::For {
            var: vr,
            count: tq,
            body: vec![Stmt::Vpu(VpuStmt {
                op: VpuOp::Fill {
                    bits: f32::NEG_INFINITY.to_bits(),
                },
                dst: Addr::new(
                    Mem::Spm,
                    Affine::var(cm.offset as i64 + 4, vr, (tq * 4 + 4) as i64),
                ),
                dstride: tq * 4,
                rows: Ext::Const(1),
                cols: Ext::Tail {
                    tile: tq,
                    limit: tq as i64 - 1,
                    start: Affine::var(0, vr, 1),
                },
            })],
        });
    }
    if let Some(zeros) = &zero_row {
        mask_build.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits: 0 },
            dst: zeros.at(&zero, 0),
            dstride: sk * 4,
            rows: Ext::Const(1),
            cols: Ext::Const(sk),
        }));
    }
    // ACC slots rotate mod 3: a0 is task t's, a1 task t+1's, am task t-1's.
    let mut body = mask_build;
    body.extend(vec![
        Stmt::Advance(a1),
        Stmt::Advance(am),
        Stmt::Advance(am),
        Stmt::Signal(credit(Vpu, Dma), 2),
        Stmt::Signal(credit(Mxu, Vpu), 2),
        Stmt::Signal(credit(Vpu, Mxu), 3),
        Stmt::Signal(credit(Dma, Vpu), 2),
    ]);
    body.push(Stmt::For {
        var: vb,
        count: spec.b,
        body: vec![Stmt::For {
            var: vkv,
            count: group_count,
            body: group_body,
        }],
    });
    body.push(Stmt::Wait(credit(Vpu, Dma), 2));
    body.push(Stmt::Wait(credit(Mxu, Vpu), 2));
    body.push(Stmt::Wait(credit(Vpu, Mxu), 3));
    body.push(Stmt::Wait(credit(Dma, Vpu), 2));

    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "attention {} ({}; {tq} query rows per task)",
            spec.describe(),
            spec.mxu
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(slot, 2), (a0, 3), (a1, 3), (am, 3)],
        macs: spec.macs(),
        compulsory_dram_bytes: spec.compulsory_dram_bytes(),
    })
}
