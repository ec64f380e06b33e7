//! The GEMM kernel: `C = act(A · B + bias)`, batched.
//!
//! A (f32 in DRAM) stays resident in SPM one block of `TM` rows at a time,
//! converted to the MXU's input type by the VPU; B streams through the
//! array in `TK × TN` weight tiles, double-buffered, accumulating over K in
//! one of two ACC tiles; the VPU drains each finished ACC tile (adding the
//! bias and applying the activation) into one of two output buffers, which
//! the DMA stores one tile late so that it never waits before loading the
//! next weights. B must already be in the MXU's input type in DRAM
//! (constant weights are converted at compile time).
//!
//! Synchronization (lane 0 = data ready, lane 1 = credits):
//!
//! | channel | meaning |
//! |---------|---------|
//! | dma→vpu data | bias loaded; an A chunk is in staging |
//! | vpu→dma credit | a staging slot is free (2) |
//! | vpu→mxu data | the A block is converted |
//! | mxu→vpu credit | the A block may be overwritten (1) |
//! | dma→mxu data | a B tile is loaded (f32 mode: also the A block) |
//! | mxu→dma credit | a B slot is free (2) |
//! | mxu→dma data | f32 mode: the A block may be overwritten (1) |
//! | mxu→vpu data | an ACC tile is complete |
//! | vpu→mxu credit | an ACC tile is free (2) |
//! | vpu→dma data | an output tile is ready |
//! | dma→vpu credit | an output buffer is free (2) |

use tessera_isa::{Bcast, BinFunc, Engine, Mem, MxuType, Target, Trans, UnFunc};

use crate::kernel::{
    Addr, Affine, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, VpuOp, VpuStmt,
};

use super::alloc::{balanced_tile, tiles, OnChip, Vars};
use super::LowerError;

/// A matrix in DRAM: first element, bytes between rows, bytes between
/// batch entries (0 when shared by the whole batch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DramMat {
    /// Byte address of element (0, 0) of batch 0.
    pub addr: u64,
    /// Bytes between rows.
    pub row_stride: u64,
    /// Bytes between batch entries.
    pub batch_stride: u64,
}

/// Everything the GEMM kernel needs.
#[derive(Clone, Debug, PartialEq)]
pub struct GemmSpec {
    /// Source node name.
    pub node: String,
    /// Batch entries.
    pub batch: u64,
    /// Rows of A and C.
    pub m: u64,
    /// Columns of A, rows of B.
    pub k: u64,
    /// Columns of B and C.
    pub n: u64,
    /// A, f32.
    pub a: DramMat,
    /// B in the MXU input type; `[K, N]`, or `[N, K]` if `b_trans`.
    pub b: DramMat,
    /// Whether B is stored transposed.
    pub b_trans: bool,
    /// Bias `[N]`, f32.
    pub bias: Option<u64>,
    /// Activation applied after the bias.
    pub act: Option<UnFunc>,
    /// C, f32.
    pub out: DramMat,
    /// MXU input type.
    pub mxu: MxuType,
}

/// Tile sizes chosen for a GEMM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GemmTiles {
    /// Rows per A block.
    pub tm: u64,
    /// Reduction depth per weight tile.
    pub tk: u64,
    /// Output columns per weight tile.
    pub tn: u64,
    /// Columns of A per staging chunk.
    pub kch: u64,
    /// Weight-tile buffers: enough to keep loads in flight across the DRAM
    /// latency and the MXU pipeline (at least 2).
    pub b_slots: u64,
}

/// Picks tiles: TK × TN the array (or less), TM as many rows as SPM and
/// ACC allow (A resident), balanced so the last block is not tiny.
pub fn choose_tiles(spec: &GemmSpec, target: &Target) -> Result<GemmTiles, LowerError> {
    let tk = spec.k.min(u64::from(target.mxu_k)).max(1);
    let tn = spec.n.min(u64::from(target.mxu_n)).max(1);
    let e = spec.mxu.dtype().size();
    let convert = spec.mxu != MxuType::F32;
    // A weight slot is busy from its load's issue to the end of the matmul
    // reading it (DRAM latency, the transfer, the stream and the pipeline);
    // a new tile is needed every max(transfer, stream) cycles.
    let tile_bytes = tk * tn * e;
    let transfer = tile_bytes.div_ceil(u64::from(target.dram_bytes_per_cycle));
    let busy = u64::from(target.dram_latency_cycles)
        + transfer
        + 2 * spec.m.min(1024)
        + u64::from(target.mxu_pipeline_cycles);
    let want = busy
        .div_ceil(transfer.max(spec.m.min(1024)).max(1))
        .clamp(2, 8);
    let b_slots = want.min((target.spm_bytes / 4 / tile_bytes.max(1)).max(2));
    let fixed = b_slots * tile_bytes + spec.bias.map_or(0, |_| spec.n * 4) + 64 * 16;
    let spm = target.spm_bytes.saturating_sub(fixed);
    // Per row of the A block: the row itself, two output rows, and (when
    // converting) two staging rows of a chunk.
    let kch = if convert { spec.k.min(512.max(tk)) } else { 0 };
    let per_row = spec.k * e + 2 * tn * 4 + 2 * kch * 4;
    let by_spm = spm / per_row.max(1);
    let by_acc = target.acc_bytes / (2 * tn * 4);
    let cap = by_spm.min(by_acc).min(1024);
    if cap == 0 {
        return Err(LowerError::DoesNotFit(format!(
            "`{}`: one row of A ({} columns) and its buffers exceed the {} bytes of SPM",
            spec.node, spec.k, target.spm_bytes
        )));
    }
    let tm = balanced_tile(spec.m, cap);
    Ok(GemmTiles {
        tm,
        tk,
        tn,
        kch: kch.max(1),
        b_slots,
    })
}

/// Builds the GEMM kernel.
pub fn gemm(spec: &GemmSpec, target: &Target) -> Result<Kernel, LowerError> {
    use Engine::{Dma, Mxu, Vpu};
    let t = choose_tiles(spec, target)?;
    let (m, k, n) = (spec.m, spec.k, spec.n);
    let e = spec.mxu.dtype().size();
    let convert = spec.mxu != MxuType::F32;
    let mut mem = OnChip::new(target);
    let abuf = mem.alloc("a", Mem::Spm, t.tm * k * e, 1)?;
    let bbuf = mem.alloc("b", Mem::Spm, t.tk * t.tn * e, t.b_slots)?;
    let obuf = mem.alloc("out", Mem::Spm, t.tm * t.tn * 4, 2)?;
    let stage = if convert {
        Some(mem.alloc("a_stage", Mem::Spm, t.tm * t.kch * 4, 2)?)
    } else {
        None
    };
    let bias_buf = match spec.bias {
        Some(_) => Some(mem.alloc("bias", Mem::Spm, n * 4, 1)?),
        None => None,
    };
    let acc = mem.alloc("acc", Mem::Acc, t.tm * t.tn * 4, 2)?;

    let mut vars = Vars::default();
    let (vb, vm, vc, vn, vk) = (
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
        vars.fresh(),
    );
    let (rot_a, rot_b, rot_t) = (vars.fresh(), vars.fresh(), vars.fresh());
    let mb = tiles(m, t.tm);
    let kc = tiles(k, t.kch);
    let nt = tiles(n, t.tn);
    let kt = tiles(k, t.tk);

    let row0 = Affine::var(0, vm, t.tm as i64);
    let tm = Ext::tile(t.tm, m, row0.clone());
    let a_batch = Affine::var(spec.a.addr as i64, vb, spec.a.batch_stride as i64)
        .plus_affine(&Affine::var(0, vm, (t.tm * spec.a.row_stride) as i64));
    let b_batch = Affine::var(spec.b.addr as i64, vb, spec.b.batch_stride as i64);
    let c_batch = Affine::var(spec.out.addr as i64, vb, spec.out.batch_stride as i64)
        .plus_affine(&Affine::var(0, vm, (t.tm * spec.out.row_stride) as i64));
    let data = |from, to| Chan::data(from, to);
    let credit = |from, to| Chan::credit(from, to);

    let mut prologue = Vec::new();
    if let (Some(bias_addr), Some(bb)) = (spec.bias, &bias_buf) {
        prologue.push(Stmt::Copy {
            dst: bb.at(&Affine::c(0), 0),
            src: Addr::new(Mem::Dram, Affine::c(bias_addr as i64)),
            run: Ext::Const(n * 4),
            dims: vec![],
        });
        prologue.push(Stmt::Signal(data(Dma, Vpu), 1));
        prologue.push(Stmt::Wait(data(Dma, Vpu), 1));
    }
    prologue.push(Stmt::Signal(credit(Mxu, Dma), t.b_slots as u16));
    prologue.push(Stmt::Signal(credit(Vpu, Mxu), 2));
    prologue.push(Stmt::Signal(credit(Dma, Vpu), 2));
    let a_free = if convert {
        credit(Mxu, Vpu)
    } else {
        data(Mxu, Dma)
    };
    prologue.push(Stmt::Signal(a_free, 1));
    if convert {
        prologue.push(Stmt::Signal(credit(Vpu, Dma), 2));
    }

    // ---- the A block ------------------------------------------------------
    let mut a_load = vec![Stmt::Note(
        "A block: rows of A, resident for every output column tile".into(),
    )];
    if let Some(stage) = &stage {
        a_load.push(Stmt::Wait(a_free, 1));
        let col0 = Affine::var(0, vc, t.kch as i64);
        let cols = Ext::tile(t.kch, k, col0.clone());
        a_load.push(Stmt::For {
            var: vc,
            count: kc,
            body: vec![
                Stmt::Wait(credit(Vpu, Dma), 1),
                Stmt::Copy {
                    dst: stage.at(&Affine::var(0, rot_a, 1), 0),
                    src: Addr::new(Mem::Dram, a_batch.clone().plus(vc, (t.kch * 4) as i64)),
                    run: cols.clone().scaled(4),
                    dims: vec![DmaDim {
                        count: tm.clone(),
                        sstride: spec.a.row_stride as i64,
                        dstride: (t.kch * 4) as i64,
                    }],
                },
                Stmt::Signal(data(Dma, Vpu), 1),
                Stmt::Wait(data(Dma, Vpu), 1),
                Stmt::Vpu(VpuStmt {
                    op: VpuOp::Cvt {
                        dtype: spec.mxu.dtype(),
                        a: stage.at(&Affine::var(0, rot_a, 1), 0),
                        atype: tessera_isa::DType::F32,
                        astride: t.kch * 4,
                    },
                    dst: Addr::new(
                        Mem::Spm,
                        Affine::var(abuf.offset as i64, vc, (t.kch * e) as i64),
                    ),
                    dstride: k * e,
                    rows: tm.clone(),
                    cols,
                }),
                Stmt::Signal(credit(Vpu, Dma), 1),
                Stmt::Advance(rot_a),
            ],
        });
        a_load.push(Stmt::Signal(data(Vpu, Mxu), 1));
        a_load.push(Stmt::Wait(data(Vpu, Mxu), 1));
    } else {
        a_load.push(Stmt::Wait(a_free, 1));
        a_load.push(Stmt::Copy {
            dst: abuf.at(&Affine::c(0), 0),
            src: Addr::new(Mem::Dram, a_batch.clone()),
            run: Ext::Const(k * 4),
            dims: vec![DmaDim {
                count: tm.clone(),
                sstride: spec.a.row_stride as i64,
                dstride: (k * 4) as i64,
            }],
        });
        a_load.push(Stmt::Signal(data(Dma, Mxu), 1));
        a_load.push(Stmt::Wait(data(Dma, Mxu), 1));
    }

    // ---- one weight tile ----------------------------------------------------
    let col0 = Affine::var(0, vn, t.tn as i64);
    let tn = Ext::tile(t.tn, n, col0.clone());
    let k0 = Affine::var(0, vk, t.tk as i64);
    let tk = Ext::tile(t.tk, k, k0.clone());
    let bslot = Affine::var(0, rot_b, 1);
    let (b_src, b_run, b_rows, trans) = if spec.b_trans {
        // B stored [N, K]: tn rows of tk elements.
        let at = b_batch
            .clone()
            .plus(vn, (t.tn * spec.b.row_stride) as i64)
            .plus(vk, (t.tk * e) as i64);
        (at, tk.clone().scaled(e), tn.clone(), Trans::T)
    } else {
        let at = b_batch
            .clone()
            .plus(vk, (t.tk * spec.b.row_stride) as i64)
            .plus(vn, (t.tn * e) as i64);
        (at, tn.clone().scaled(e), tk.clone(), Trans::N)
    };
    let slot_stride = if spec.b_trans { t.tk * e } else { t.tn * e };
    let k_step = vec![
        Stmt::Wait(credit(Mxu, Dma), 1),
        Stmt::Copy {
            dst: bbuf.at(&bslot, 0),
            src: Addr::new(Mem::Dram, b_src),
            run: b_run,
            dims: vec![DmaDim {
                count: b_rows,
                sstride: spec.b.row_stride as i64,
                dstride: slot_stride as i64,
            }],
        },
        Stmt::Signal(data(Dma, Mxu), 1),
        Stmt::Wait(data(Dma, Mxu), 1),
        Stmt::LoadW {
            src: bbuf.at(&bslot, 0).at,
            k: tk.clone(),
            n: tn.clone(),
            stride: slot_stride,
            dtype: spec.mxu,
            trans,
        },
        Stmt::Matmul {
            dst: acc.at(&Affine::var(0, rot_t, 1), 0).at,
            a: Affine::var(abuf.offset as i64, vk, (t.tk * e) as i64),
            m: tm.clone(),
            astride: k * e,
            dstride: t.tn * 4,
            mode: Mode::AccAfterFirst(vk),
        },
        Stmt::Signal(credit(Mxu, Dma), 1),
        Stmt::Advance(rot_b),
    ];

    // ---- epilogue of one output tile -----------------------------------------
    let slot = Affine::var(0, rot_t, 1);
    let acc_tile = Opnd {
        addr: acc.at(&slot, 0),
        stride: t.tn * 4,
        bcast: Bcast::Full,
    };
    let out_tile = obuf.at(&slot, 0);
    let mut epilogue = vec![
        Stmt::Signal(data(Mxu, Vpu), 1),
        Stmt::Wait(data(Mxu, Vpu), 1),
        Stmt::Wait(credit(Dma, Vpu), 1),
    ];
    let mut src = acc_tile.clone();
    if let Some(bb) = &bias_buf {
        epilogue.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Bin {
                func: BinFunc::Add,
                a: acc_tile.clone(),
                b: Opnd {
                    addr: Addr::new(
                        Mem::Spm,
                        Affine::var(bb.offset as i64, vn, (t.tn * 4) as i64),
                    ),
                    stride: 0,
                    bcast: Bcast::Row,
                },
            },
            dst: out_tile.clone(),
            dstride: t.tn * 4,
            rows: tm.clone(),
            cols: tn.clone(),
        }));
        src = Opnd {
            addr: out_tile.clone(),
            stride: t.tn * 4,
            bcast: Bcast::Full,
        };
    }
    let func = spec.act.unwrap_or(UnFunc::Mov);
    if spec.act.is_some() || bias_buf.is_none() {
        epilogue.push(Stmt::Vpu(VpuStmt {
            op: VpuOp::Un { func, a: src },
            dst: out_tile.clone(),
            dstride: t.tn * 4,
            rows: tm.clone(),
            cols: tn.clone(),
        }));
    }
    epilogue.push(Stmt::Signal(credit(Vpu, Mxu), 1));
    epilogue.push(Stmt::Signal(data(Vpu, Dma), 1));

    // Store the tile of column block `col` from output slot `slot`.
    let store = |col: Affine, slot: Affine| {
        let cols = Ext::tile(t.tn, n, col.clone());
        let dst = c_batch.clone().plus_affine(&Affine {
            constant: col.constant * 4,
            terms: col.terms.iter().map(|&(v, c)| (v, c * 4)).collect(),
        });
        vec![
            Stmt::Wait(data(Vpu, Dma), 1),
            Stmt::Copy {
                dst: Addr::new(Mem::Dram, dst),
                src: obuf.at(&slot, 0),
                run: cols.scaled(4),
                dims: vec![DmaDim {
                    count: tm.clone(),
                    sstride: (t.tn * 4) as i64,
                    dstride: spec.out.row_stride as i64,
                }],
            },
            Stmt::Signal(credit(Dma, Vpu), 1),
        ]
    };
    // Inside the n loop, before advancing: the previous tile is in slot 1 - rot_t.
    let previous = store(
        Affine::var(-(t.tn as i64), vn, t.tn as i64),
        Affine::var(1, rot_t, -1),
    );
    // After the loop (rot_t advanced once more): the last tile, in slot 1 - rot_t.
    let last = store(
        Affine::c(((nt - 1) * t.tn) as i64),
        Affine::var(1, rot_t, -1),
    );

    let mut n_body = vec![
        Stmt::Wait(credit(Vpu, Mxu), 1),
        Stmt::For {
            var: vk,
            count: kt,
            body: k_step,
        },
    ];
    n_body.extend(epilogue);
    n_body.push(Stmt::If {
        lhs: Affine::var(0, vn, 1),
        cmp: Cmp::Ge,
        value: 1,
        body: previous,
    });
    n_body.push(Stmt::Advance(rot_t));

    let mut m_body = a_load;
    m_body.push(Stmt::For {
        var: vn,
        count: nt,
        body: n_body,
    });
    m_body.extend(last);
    m_body.push(Stmt::Signal(a_free, 1));

    let mut body = prologue;
    body.push(Stmt::For {
        var: vb,
        count: spec.batch.max(1),
        body: vec![Stmt::For {
            var: vm,
            count: mb,
            body: m_body,
        }],
    });
    // Drain the credits.
    body.push(Stmt::Wait(credit(Mxu, Dma), t.b_slots as u16));
    body.push(Stmt::Wait(credit(Vpu, Mxu), 2));
    body.push(Stmt::Wait(credit(Dma, Vpu), 2));
    body.push(Stmt::Wait(a_free, 1));
    if convert {
        body.push(Stmt::Wait(credit(Vpu, Dma), 2));
    }

    let batch = spec.batch.max(1);
    let b_bytes = if spec.b.batch_stride == 0 {
        k * n * e
    } else {
        batch * k * n * e
    };
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "gemm {}x{}x{}{}{}{}{} ({}; tiles {}x{}x{}, {} weight buffers)",
            m,
            k,
            n,
            if batch > 1 {
                format!(" x{batch}")
            } else {
                String::new()
            },
            if spec.b_trans { " B^T" } else { "" },
            if spec.bias.is_some() { " +bias" } else { "" },
            spec.act.map(|a| format!(" {a}")).unwrap_or_default(),
            spec.mxu,
            t.tm,
            t.tk,
            t.tn,
            t.b_slots
        ),
        buffers: mem.buffers,
        body,
        rotators: vec![(rot_a, 2), (rot_b, t.b_slots), (rot_t, 2)],
        macs: batch * m * k * n,
        compulsory_dram_bytes: batch * m * k * 4
            + b_bytes
            + batch * m * n * 4
            + spec.bias.map_or(0, |_| n * 4),
    })
}
