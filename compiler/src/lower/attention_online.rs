//! Attention with an online softmax, for sequences whose score rows or K
//! and V do not fit on chip (the kernel of `attention.rs` keeps whole score
//! rows and a head's whole K and V in SPM).
//!
//! Per batch entry, query head and block of `TQ` query rows (a *task*),
//! keys are visited in blocks of `TK` (at most the MXU's K and N, so each
//! block is one weight tile; the last block may be shorter). For each
//! block, with `s = Q·K_jᵀ·scale (+ mask)`:
//!
//! ```text
//! m' = max(m, rowmax(s))      α = exp(m − m')
//! p  = exp(s − m')            l = l·α + rowsum(p)
//! O  = O·α + p·V_j            m = m'
//! ```
//!
//! and at the end `O / l` is stored. `m` starts at −f32::MAX rather than
//! −∞, so a block whose scores are all −∞ (masked) gives α = 1 and p = 0
//! instead of NaN. `O`, `m` and `l` stay in SPM in f32; `p` goes to the
//! MXU in its input type.
//!
//! Causal attention skips key blocks a query block cannot see (the same
//! condition guards every engine's part of the block, so the block's
//! synchronization balances on its own), and adds a window of one
//! precomputed `TQ × (TQ + 2·TK − 2)` triangle to the blocks that cross the
//! diagonal.
//!
//! Synchronization, in program order on each lane:
//!
//! | channel | events |
//! |---------|--------|
//! | dma→vpu data | Q loaded; per block: K, V (and mask) loaded |
//! | vpu→mxu data | Q converted; per block: K/V converted, P ready |
//! | mxu→vpu data | per block: scores ready, P·V ready |
//! | vpu→dma data | O ready to store |
//! | vpu→dma credit | the staging buffers are free (1) |
//! | dma→vpu credit | the output buffer is free (1) |

use tessera_isa::{AccMode, Bcast, BinFunc, Engine, Mem, Order, RedFunc, Target, Trans, UnFunc};

use crate::kernel::{
    Addr, Affine, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, VpuOp, VpuStmt,
};

use super::alloc::{tiles, OnChip, Vars};
use super::attention::{chunks, AttentionSpec, Tensor4};
use super::LowerError;

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
            e: spec.mxu.dtype().size(),
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
        // Each of the 17 buffers may lose up to 63 bytes to alignment.
        let spm = tq * d * (4 + e)
            + 2 * tk * d * (4 + e)
            + mask
            + tq * tk * (4 + e)
            + tq * d * 4
            + 5 * tq * 4
            + causal
            + 17 * 64;
        let acc = tq * tk * 4 + tq * d * 4 + 2 * 64;
        (spm, acc)
    }

    /// The tiles (`TQ`, `TK`), the largest that fit, preferring query rows
    /// (the last query block may be shorter); `None` when not even one row
    /// fits.
    pub fn tiles(&self, target: &Target) -> Option<(u64, u64)> {
        let max_tk = self
            .sk
            .min(u64::from(target.mxu_k))
            .min(u64::from(target.mxu_n));
        let fits = |tq, tk| {
            let (spm, acc) = self.needs(tq, tk);
            spm <= target.spm_bytes && acc <= target.acc_bytes
        };
        let mut best = None;
        for tq in (1..=self.sq.min(128)).rev() {
            if let Some(tk) = (1..=max_tk).rev().find(|&tk| fits(tq, tk)) {
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

/// Builds the online-softmax attention kernel (checks on the spec are the
/// caller's, see [`super::attention::attention`]).
pub fn attention_online(spec: &AttentionSpec, target: &Target) -> Result<Kernel, LowerError> {
    use Engine::{Dma, Mxu, Vpu};
    let (sq, sk, d) = (spec.sq, spec.sk, spec.d);
    let e = spec.mxu.dtype().size();
    let mxu_type = spec.mxu.dtype();
    let group = spec.h / spec.hkv.max(1);
    let Some((tq, tk)) = OnlineShape::of(spec).tiles(target) else {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: attention with head dimension {d} needs more SPM/ACC than the target has, \
             even one query row and one key at a time",
            spec.node
        )));
    };
    let (qb, kb) = (tiles(sq, tq), tiles(sk, tk));
    let mask_full = spec.mask.as_ref().is_some_and(|m| m.strides[2] != 0);
    let window = tq + 2 * tk - 2;

    let mut mem = OnChip::new(target);
    let qstage = mem.alloc("q_f32", Mem::Spm, tq * d * 4, 1)?;
    let qbuf = mem.alloc("q", Mem::Spm, tq * d * e, 1)?;
    let kstage = mem.alloc("k_f32", Mem::Spm, tk * d * 4, 1)?;
    let vstage = mem.alloc("v_f32", Mem::Spm, tk * d * 4, 1)?;
    let kbuf = mem.alloc("k", Mem::Spm, tk * d * e, 1)?;
    let vbuf = mem.alloc("v", Mem::Spm, tk * d * e, 1)?;
    let mstage = match &spec.mask {
        Some(_) if mask_full => Some(mem.alloc("mask", Mem::Spm, tq * tk * 4, 1)?),
        Some(_) => Some(mem.alloc("mask_row", Mem::Spm, tk * 4, 1)?),
        None => None,
    };
    let scores = mem.alloc("scores", Mem::Spm, tq * tk * 4, 1)?;
    let pbuf = mem.alloc("p", Mem::Spm, tq * tk * e, 1)?;
    let obuf = mem.alloc("o", Mem::Spm, tq * d * 4, 1)?;
    let [m, m_new, l, alpha, tmp] =
        ["m", "m_new", "l", "alpha", "row_tmp"].map(|name| mem.alloc(name, Mem::Spm, tq * 4, 1));
    let (m, m_new, l, alpha, tmp) = (m?, m_new?, l?, alpha?, tmp?);
    let triangle = if spec.causal {
        Some(mem.alloc("causal", Mem::Spm, tq * window * 4, 1)?)
    } else {
        None
    };
    let sacc = mem.alloc("s_acc", Mem::Acc, tq * tk * 4, 1)?;
    let pvacc = mem.alloc("pv_acc", Mem::Acc, tq * d * 4, 1)?;

    let mut vars = Vars::default();
    let [vb, vkv, vg, vq, vj, vd, vo, vr] = [(); 8].map(|()| vars.fresh());
    let zero = Affine::c(0);
    let at = |b: &crate::kernel::Buffer| b.at(&zero, 0);
    let (data, credit) = (Chan::data, Chan::credit);
    let head = Affine::var(0, vkv, group as i64).plus(vg, 1);
    let q0 = Affine::var(0, vq, tq as i64);
    // Query rows in this block: TQ, or fewer in the last.
    let qt = Ext::tile(tq, sq, q0.clone());
    let j0 = Affine::var(0, vj, tk as i64);
    // Keys in this block: TK, or fewer in the last.
    let kt = Ext::tile(tk, sk, j0.clone());

    // DRAM address of row `row` of (batch vb, head `h`) in a strided view.
    let row_at = |t: &Tensor4, h: &Affine, row: &Affine| -> Affine {
        let [sb, sh, ss, _] = t.strides;
        let scale = |a: &Affine, k: i64| Affine {
            constant: a.constant * k,
            terms: a.terms.iter().map(|&(v, c)| (v, c * k)).collect(),
        };
        Affine::var(t.addr as i64, vb, sb * 4)
            .plus_affine(&scale(h, sh * 4))
            .plus_affine(&scale(row, ss * 4))
    };
    // `rows` rows of D floats between DRAM and a dense SPM tile.
    let rows_copy = |to_spm: bool, dram: Affine, t: &Tensor4, spm: Addr, rows: Ext| {
        let dram = Addr::new(Mem::Dram, dram);
        let row = (d * 4) as i64;
        let (dst, src, ss, ds) = if to_spm {
            (spm, dram, t.strides[2] * 4, row)
        } else {
            (dram, spm, row, t.strides[2] * 4)
        };
        Stmt::Copy {
            dst,
            src,
            run: Ext::Const(d * 4),
            dims: vec![DmaDim {
                count: rows,
                sstride: ss,
                dstride: ds,
            }],
        }
    };
    let cvt = |dst: Addr, a: Addr, rows: Ext| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: mxu_type,
                a,
                atype: tessera_isa::DType::F32,
                astride: d * 4,
            },
            dst,
            dstride: d * e,
            rows,
            cols: Ext::Const(d),
        })
    };
    let full = |a: Addr, stride: u64| Opnd {
        addr: a,
        stride,
        bcast: Bcast::Full,
    };
    let col = |b: &crate::kernel::Buffer| Opnd {
        addr: at(b),
        stride: 4,
        bcast: Bcast::Col,
    };
    let rows = qt.clone();
    // An operation on the row vectors (the block's values as one row).
    let vec_bin = |func,
                   dst: &crate::kernel::Buffer,
                   a: &crate::kernel::Buffer,
                   b: &crate::kernel::Buffer| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func,
                a: full(at(a), tq * 4),
                b: full(at(b), tq * 4),
            },
            dst: at(dst),
            dstride: tq * 4,
            rows: Ext::Const(1),
            cols: qt.clone(),
        })
    };
    let vec_un = |func, dst: &crate::kernel::Buffer, a: &crate::kernel::Buffer| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Un {
                func,
                a: full(at(a), tq * 4),
            },
            dst: at(dst),
            dstride: tq * 4,
            rows: Ext::Const(1),
            cols: qt.clone(),
        })
    };
    let fill = |dst: Addr, stride: u64, bits: u32, rows: Ext, cols: Ext| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits },
            dst,
            dstride: stride,
            rows,
            cols,
        })
    };
    let sp = tk * 4;
    let on_scores = |func, b: Opnd| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func,
                a: full(at(&scores), sp),
                b,
            },
            dst: at(&scores),
            dstride: sp,
            rows: rows.clone(),
            cols: kt.clone(),
        })
    };
    let row_red = |func| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Red {
                func,
                a: full(at(&scores), sp),
                mode: Mode::Fixed(AccMode::Set),
            },
            dst: at(&tmp),
            dstride: 4,
            rows: rows.clone(),
            cols: kt.clone(),
        })
    };

    // ---- task start: Q, and m, l, O reset ----------------------------------
    let mut task = vec![
        Stmt::Wait(credit(Vpu, Dma), 1),
        rows_copy(
            true,
            row_at(&spec.q, &head, &q0),
            &spec.q,
            at(&qstage),
            qt.clone(),
        ),
        Stmt::Signal(data(Dma, Vpu), 1),
        Stmt::Wait(data(Dma, Vpu), 1),
        cvt(at(&qbuf), at(&qstage), qt.clone()),
        Stmt::Signal(credit(Vpu, Dma), 1),
        Stmt::Wait(credit(Dma, Vpu), 1),
        fill(
            at(&m),
            tq * 4,
            (-f32::MAX).to_bits(),
            Ext::Const(1),
            Ext::Const(tq),
        ),
        fill(at(&l), tq * 4, 0, Ext::Const(1), Ext::Const(tq)),
        fill(at(&obuf), d * 4, 0, Ext::Const(tq), Ext::Const(d)),
        Stmt::Signal(data(Vpu, Mxu), 1),
        Stmt::Wait(data(Vpu, Mxu), 1),
    ];

    // ---- one key block ---------------------------------------------------------
    let kv_head = Affine::var(0, vkv, 1);
    let mut block = vec![
        Stmt::Wait(credit(Vpu, Dma), 1),
        rows_copy(
            true,
            row_at(&spec.k, &kv_head, &j0),
            &spec.k,
            at(&kstage),
            kt.clone(),
        ),
        rows_copy(
            true,
            row_at(&spec.v, &kv_head, &j0),
            &spec.v,
            at(&vstage),
            kt.clone(),
        ),
    ];
    if let (Some(mk), Some(ms)) = (&spec.mask, &mstage) {
        let [mb, mh, mq, mc] = mk.strides;
        let src = Affine::var(mk.addr as i64, vb, mb * 4)
            .plus_affine(&Affine {
                constant: 0,
                terms: head.terms.iter().map(|&(v, c)| (v, c * mh * 4)).collect(),
            })
            .plus(vq, tq as i64 * mq * 4)
            .plus(vj, tk as i64 * mc * 4);
        let mut dims = Vec::new();
        let run = if mc == 1 {
            kt.clone().scaled(4)
        } else {
            dims.push(DmaDim {
                count: kt.clone(),
                sstride: mc * 4,
                dstride: 4,
            });
            Ext::Const(4)
        };
        if mask_full {
            dims.push(DmaDim {
                count: qt.clone(),
                sstride: mq * 4,
                dstride: sp as i64,
            });
        }
        block.push(Stmt::Copy {
            dst: at(ms),
            src: Addr::new(Mem::Dram, src),
            run,
            dims,
        });
    }
    block.extend([
        Stmt::Signal(data(Dma, Vpu), 1),
        Stmt::Wait(data(Dma, Vpu), 1),
        cvt(at(&kbuf), at(&kstage), kt.clone()),
        cvt(at(&vbuf), at(&vstage), kt.clone()),
    ]);
    if mstage.is_none() {
        block.push(Stmt::Signal(credit(Vpu, Dma), 1));
    }
    block.push(Stmt::Signal(data(Vpu, Mxu), 1));
    // MXU: S = Q·K_jᵀ over chunks of D.
    let (dk, dk_count) = chunks(d, u64::from(target.mxu_k));
    block.extend([
        Stmt::Wait(data(Vpu, Mxu), 1),
        Stmt::For {
            var: vd,
            count: dk_count,
            body: vec![
                Stmt::LoadW {
                    src: at(&kbuf).at.plus(vd, (dk * e) as i64),
                    k: Ext::tile(dk, d, Affine::var(0, vd, dk as i64)),
                    n: kt.clone(),
                    stride: d * e,
                    dtype: spec.mxu,
                    trans: Trans::T,
                },
                Stmt::Matmul {
                    dst: at(&sacc).at,
                    a: at(&qbuf).at.plus(vd, (dk * e) as i64),
                    m: qt.clone(),
                    astride: d * e,
                    dstride: sp,
                    mode: Mode::AccAfterFirst(vd),
                },
            ],
        },
        Stmt::Signal(data(Mxu, Vpu), 1),
    ]);
    // VPU: the online softmax step.
    block.push(Stmt::Wait(data(Mxu, Vpu), 1));
    block.push(Stmt::Vpu(VpuStmt {
        op: VpuOp::BinS {
            func: BinFunc::Mul,
            a: full(at(&sacc), sp),
            scalar: spec.scale,
            order: Order::As,
        },
        dst: at(&scores),
        dstride: sp,
        rows: rows.clone(),
        cols: kt.clone(),
    }));
    if let Some(ms) = &mstage {
        let b = if mask_full {
            full(at(ms), sp)
        } else {
            Opnd {
                addr: at(ms),
                stride: 0,
                bcast: Bcast::Row,
            }
        };
        block.push(on_scores(BinFunc::Add, b));
        block.push(Stmt::Signal(credit(Vpu, Dma), 1));
    }
    // Key j0 + c is hidden from query q0 + i when c + δ > i, with
    // δ = j0 − q0 − (Sk − Sq).
    let delta = j0
        .clone()
        .plus(vq, -(tq as i64))
        .plus_affine(&Affine::c(-(sk as i64 - sq as i64)));
    if let Some(tri) = &triangle {
        // Some key of the block is hidden from some row: add the window of
        // the triangle that starts at column δ + TK − 1.
        let window_at = Affine::c((tri.offset + (tk - 1) * 4) as i64).plus_affine(&Affine {
            constant: delta.constant * 4,
            terms: delta.terms.iter().map(|&(v, c)| (v, c * 4)).collect(),
        });
        block.push(Stmt::If {
            lhs: delta.clone(),
            cmp: Cmp::Ge,
            value: 2 - tk as i64,
            body: vec![on_scores(
                BinFunc::Add,
                full(Addr::new(Mem::Spm, window_at), window * 4),
            )],
        });
    }
    block.extend([
        row_red(RedFunc::Max),
        vec_bin(BinFunc::Max, &m_new, &m, &tmp),
        vec_bin(BinFunc::Sub, &alpha, &m, &m_new),
        vec_un(UnFunc::Exp, &alpha, &alpha),
        on_scores(BinFunc::Sub, col(&m_new)),
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Un {
                func: UnFunc::Exp,
                a: full(at(&scores), sp),
            },
            dst: at(&scores),
            dstride: sp,
            rows: rows.clone(),
            cols: kt.clone(),
        }),
        row_red(RedFunc::Sum),
        vec_bin(BinFunc::Mul, &l, &l, &alpha),
        vec_bin(BinFunc::Add, &l, &l, &tmp),
        vec_un(UnFunc::Mov, &m, &m_new),
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Cvt {
                dtype: mxu_type,
                a: at(&scores),
                atype: tessera_isa::DType::F32,
                astride: sp,
            },
            dst: at(&pbuf),
            dstride: tk * e,
            rows: rows.clone(),
            cols: kt.clone(),
        }),
        Stmt::Signal(data(Vpu, Mxu), 1),
    ]);
    // MXU: P·V_j over chunks of D (one chunk of keys: TK ≤ K).
    let (on, on_count) = chunks(d, u64::from(target.mxu_n));
    block.extend([
        Stmt::Wait(data(Vpu, Mxu), 1),
        Stmt::For {
            var: vo,
            count: on_count,
            body: vec![
                Stmt::LoadW {
                    src: at(&vbuf).at.plus(vo, (on * e) as i64),
                    k: kt.clone(),
                    n: Ext::tile(on, d, Affine::var(0, vo, on as i64)),
                    stride: d * e,
                    dtype: spec.mxu,
                    trans: Trans::N,
                },
                Stmt::Matmul {
                    dst: at(&pvacc).at.plus(vo, (on * 4) as i64),
                    a: at(&pbuf).at,
                    m: qt.clone(),
                    astride: tk * e,
                    dstride: d * 4,
                    mode: Mode::Fixed(AccMode::Set),
                },
            ],
        },
        Stmt::Signal(data(Mxu, Vpu), 1),
    ]);
    // VPU: O = O·α + P·V.
    let on_o = |func, b: Opnd| {
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func,
                a: full(at(&obuf), d * 4),
                b,
            },
            dst: at(&obuf),
            dstride: d * 4,
            rows: rows.clone(),
            cols: Ext::Const(d),
        })
    };
    block.extend([
        Stmt::Wait(data(Mxu, Vpu), 1),
        on_o(BinFunc::Mul, col(&alpha)),
        on_o(BinFunc::Add, full(at(&pvacc), d * 4)),
    ]);
    let block = if spec.causal {
        // Skip blocks every row of the query block is past (δ ≥ TQ).
        vec![Stmt::If {
            lhs: delta,
            cmp: Cmp::Lt,
            value: tq as i64,
            body: block,
        }]
    } else {
        block
    };
    task.push(Stmt::For {
        var: vj,
        count: kb,
        body: block,
    });

    // ---- task end: O / l, stored --------------------------------------------
    task.extend([
        vec_un(UnFunc::Recip, &l, &l),
        on_o(BinFunc::Mul, col(&l)),
        Stmt::Signal(data(Vpu, Dma), 1),
        Stmt::Wait(data(Vpu, Dma), 1),
        rows_copy(
            false,
            row_at(&spec.out, &head, &q0),
            &spec.out,
            at(&obuf),
            qt.clone(),
        ),
        Stmt::Signal(credit(Dma, Vpu), 1),
    ]);

    let mut body = Vec::new();
    if let Some(tri) = &triangle {
        // Row r: 0 up to column r + TK − 1, −∞ after.
        body.push(fill(
            at(tri),
            window * 4,
            0,
            Ext::Const(tq),
            Ext::Const(window),
        ));
        body.push(Stmt::For {
            var: vr,
            count: tq,
            body: vec![fill(
                Addr::new(
                    Mem::Spm,
                    Affine::var((tri.offset + tk * 4) as i64, vr, (window * 4 + 4) as i64),
                ),
                window * 4,
                f32::NEG_INFINITY.to_bits(),
                Ext::Const(1),
                Ext::Tail {
                    tile: window,
                    limit: (tq + tk) as i64 - 2,
                    start: Affine::var(0, vr, 1),
                },
            )],
        });
    }
    body.extend([
        Stmt::Signal(credit(Vpu, Dma), 1),
        Stmt::Signal(credit(Dma, Vpu), 1),
        Stmt::For {
            var: vb,
            count: spec.b,
            body: vec![Stmt::For {
                var: vkv,
                count: spec.hkv,
                body: vec![Stmt::For {
                    var: vg,
                    count: group,
                    body: vec![Stmt::For {
                        var: vq,
                        count: qb,
                        body: task,
                    }],
                }],
            }],
        },
        Stmt::Wait(credit(Vpu, Dma), 1),
        Stmt::Wait(credit(Dma, Vpu), 1),
    ]);

    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "attention (online softmax) {} ({}; {tq} query rows x {tk} keys per step)",
            spec.describe(),
            spec.mxu
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![],
        macs: spec.macs(),
        compulsory_dram_bytes: spec.compulsory_dram_bytes(),
    })
}
