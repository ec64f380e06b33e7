//! The GEMM kernel: `C = act(A · B + bias)`, batched; and the integer GEMM
//! `C = act(f32(A · B) · scale + bias)` of a `qgemm`.
//!
//! A (f32 in DRAM) stays resident in SPM one block of `TM` rows at a time,
//! converted to the MXU's input type by the VPU (in an integer mode, A is
//! u8/i8 in DRAM already and is copied as it is, as in f32 mode); B streams through the
//! array in `TK × TN` weight tiles, double-buffered, accumulating over K in
//! one of two ACC tiles; the VPU drains each finished ACC tile (adding the
//! bias and applying the activation) into one of two output buffers, which
//! the DMA stores one tile late so that it never waits before loading the
//! next weights. An integer ACC tile holds int32: the drain's first step
//! is `vpu.dequant`, times the column scales, into the output tile. B must already be in the MXU's input type in DRAM
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

use tessera_isa::{
    AccMode, Bcast, BinFunc, DType, Engine, IdxType, Mem, MxuClass, MxuType, Order, RedFunc,
    ScaleOp, Target, Trans, UnFunc,
};

use crate::kernel::{
    Addr, Affine, Buffer, Chan, Cmp, DmaDim, Ext, Kernel, Mode, Opnd, Stmt, Var, VpuOp, VpuStmt,
    WeightQuant, ZeroPoint,
};

use super::alloc::{balanced_tile, tiles, OnChip, Vars};
use super::template::{credited, resident_vectors};
use super::LowerError;

use Engine::{Dma, Mxu, Vpu};

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
    /// An integer GEMM's zero points and column scales.
    pub quant: Option<GemmQuant>,
    /// An 8-bit GEMM of f32 A by prepared 8-bit weights (`mxu` `i8`,
    /// `e4m3` or `e5m2`): A quantized on chip, the weights' scales.
    pub online: Option<OnlineQuant>,
    /// A's rows gathered from a table at run time (`gather_matmul`); then
    /// `a` is the table, its rows `K` contiguous elements in the MXU's
    /// type (prepared when compiling), and `a.batch_stride` is unused.
    pub a_rows: Option<RowGather>,
}

/// Where a GEMM whose A rows are gathered finds them: row `i` of batch
/// entry `b` is table row `indices[b · M + i]` (negative rows count from
/// the end). Each A block's indices go to SPM, then one `dma.gather`
/// brings its rows from the table: the routed experts' weights stream from
/// the expert table into the array without a copy through DRAM.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RowGather {
    /// DRAM address of the `[batch, M]` row indices.
    pub indices: u64,
    /// Their type.
    pub itype: IdxType,
    /// Rows in the table.
    pub limit: u64,
}

impl RowGather {
    /// Bytes per index.
    fn index_bytes(&self) -> u64 {
        if self.itype == IdxType::I64 {
            8
        } else {
            4
        }
    }
}

/// What an 8-bit GEMM whose activations are quantized on chip adds
/// (`--precision int8|fp8-e4m3|fp8-e5m2`).
///
/// - `i8`: each row of A gets the scale `s_a = max(amax(row) · (1/127),
///   2⁻¹²⁶)` and is quantized to i8 by `vpu.quant … sop=mul` times
///   `1 / s_a` (every quantization here multiplies by the reciprocal
///   scale: one multiply per element, not a division); the weights were
///   quantized per output column when compiling; the drain is
///   `f32(acc) · s_w[j]` (`vpu.dequant`), then `· s_a[i]`.
/// - `e4m3`/`e5m2`: each 1×B tile of A (B = `mxu_scale_block`) gets `s =
///   max(amax · (1/max_finite), 2⁻¹²⁶)`, the weights one scale per B×B
///   block, and the MXU applies both as it accumulates (SPEC.md §4.4).
///   Weight tiles never straddle a block (see [`tile_dims`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OnlineQuant {
    /// DRAM address of the weight scales (f32): `i8`, `[N]`; FP8, one per
    /// weight tile, tile `(kt, nt)` at index `kt · NT + nt` (`NT` tiles
    /// along N).
    pub w_scales: u64,
}

/// The smallest scale an on-chip quantization uses (an all-zero row or
/// tile quantizes to zeros, not NaN).
pub const MIN_SCALE: f32 = f32::MIN_POSITIVE;

/// The weight tile `TK × TN` of a GEMM of depth `k` and width `n` in MXU
/// type `mxu`: the array (or less); for FP8, also no larger than a scale
/// block and dividing it, so that no tile straddles two blocks.
pub fn tile_dims(k: u64, n: u64, mxu: MxuType, target: &Target) -> (u64, u64) {
    let fit = |extent: u64, array: u64| -> u64 {
        let plain = extent.min(array).max(1);
        if mxu.class() != MxuClass::Fp8 {
            return plain;
        }
        let block = u64::from(target.mxu_scale_block);
        if extent <= block {
            return plain;
        }
        (1..=array.min(block))
            .rev()
            .find(|d| block % d == 0)
            .unwrap_or(1)
    };
    (
        fit(k, u64::from(target.mxu_k)),
        fit(n, u64::from(target.mxu_n)),
    )
}

/// The largest finite value of an 8-bit MXU input type (what a scale maps
/// the max-abs to).
pub fn max_finite(t: DType) -> f32 {
    match t {
        DType::I8 => 127.0,
        DType::E4m3 => 448.0,
        DType::E5m2 => 57344.0,
        _ => 1.0,
    }
}

/// What an integer GEMM adds: A's and B's zero points (the `mxu.ldw`
/// registers) and the f32 scale of each output column, `[N]` in DRAM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GemmQuant {
    /// A's zero point: a constant, or one element of A's type in DRAM
    /// (loaded into SPM once, read there by every `mxu.ldw`).
    pub a_zp: ZeroPoint,
    /// B's zero point, likewise.
    pub b_zp: ZeroPoint,
    /// Address of the `[N]` f32 column scales.
    pub scales: u64,
    /// The result requantized into 8 bits (C is then u8/i8).
    pub out: Option<Requantize>,
}

/// A `qgemm`'s output quantization: `saturate(rne(y / s) + zp)`, `vpu.quant`
/// as the drain's last step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Requantize {
    /// `u8` or `i8`.
    pub dtype: DType,
    /// The zero point.
    pub zp: i32,
    /// DRAM address of the one f32 scale.
    pub scale: u64,
}

impl GemmSpec {
    /// Whether A must be converted to the MXU's type on chip (a float mode
    /// below f32); otherwise A is copied as stored.
    fn converts_a(&self) -> bool {
        self.a_rows.is_none()
            && ((self.mxu != MxuType::F32 && self.mxu.class() == MxuClass::Float)
                || self.online.is_some())
    }

    /// Whether the weights come with FP8 block scales.
    fn fp8_online(&self) -> bool {
        self.online.is_some() && self.mxu.class() == MxuClass::Fp8
    }

    /// Whether the drain dequantizes int32 with per-column scales (a
    /// `qgemm`, or an int8 GEMM of on-chip-quantized A).
    fn column_scales(&self) -> Option<u64> {
        match (&self.quant, &self.online) {
            (Some(q), _) => Some(q.scales),
            (None, Some(o)) if !self.fp8_online() => Some(o.w_scales),
            _ => None,
        }
    }

    /// Columns of A's scales (each `[TM]`): int8 one; FP8 one per weight
    /// tile along K (the tiles of one block sharing its scale), for whole
    /// blocks.
    fn a_scale_columns(&self, tk: u64, target: &Target) -> u64 {
        match self.online {
            None => 0,
            Some(_) if self.fp8_online() => {
                let block = u64::from(target.mxu_scale_block);
                self.k.div_ceil(block) * self.tiles_per_block(tk, target)
            }
            Some(_) => 1,
        }
    }

    /// Weight tiles along K per scale block (FP8): all of them when K fits
    /// one block, else `B / TK` (`TK` divides `B`).
    fn tiles_per_block(&self, tk: u64, target: &Target) -> u64 {
        let block = u64::from(target.mxu_scale_block);
        if self.k <= block {
            self.k.div_ceil(tk)
        } else {
            block / tk
        }
    }

    /// Bytes per element of A in DRAM.
    pub(super) fn a_size(&self) -> u64 {
        if self.converts_a() {
            4
        } else {
            self.mxu.a_type().size()
        }
    }

    /// The requantization of the result, if any.
    fn requantize(&self) -> Option<Requantize> {
        self.quant.as_ref().and_then(|q| q.out)
    }

    /// Bytes per element of C.
    fn out_size(&self) -> u64 {
        if self.requantize().is_some() {
            1
        } else {
            4
        }
    }

    /// The resident `[N]` f32 vectors: the column scales, then the bias.
    fn vectors(&self) -> u64 {
        u64::from(self.column_scales().is_some()) + u64::from(self.bias.is_some())
    }
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
    /// A-block buffers: 2 when A is copied as stored (no conversion), there
    /// are several blocks (batch entries or row blocks) and SPM holds a
    /// second block beside the first at this `tm`, so the next block loads
    /// while the MXU streams this one (a batch of GEMVs — routed experts,
    /// attention heads — is otherwise one DRAM latency per entry); else 1.
    pub a_slots: u64,
}

/// Picks tiles: TK × TN the array (or less), TM as many rows as SPM and
/// ACC allow (A resident), balanced so the last block is not tiny.
pub fn choose_tiles(spec: &GemmSpec, target: &Target) -> Result<GemmTiles, LowerError> {
    let (tk, tn) = tile_dims(spec.k, spec.n, spec.mxu, target);
    let e = spec.mxu.a_type().size();
    let convert = spec.converts_a();
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
    let w_scales = if spec.fp8_online() {
        spec.k.div_ceil(tk) * spec.n.div_ceil(tn) * 4
    } else {
        0
    };
    let fixed = b_slots * tile_bytes + spec.vectors() * spec.n * 4 + w_scales + 64 * 16;
    let spm = target.spm_bytes.saturating_sub(fixed);
    // Per row of the A block: the row itself, two output rows, (when
    // converting) two staging rows of a chunk — when A is quantized on
    // chip, the whole row staged (chunks of one weight tile for int8, of
    // one scale block for FP8) — and its scales.
    let block = u64::from(target.mxu_scale_block);
    let (kch, staged) = match (convert, spec.online) {
        (true, Some(_)) if spec.fp8_online() => {
            let kch = spec.k.min(block);
            (kch, tiles(spec.k, kch) * kch)
        }
        (true, Some(_)) => (tk, tiles(spec.k, tk) * tk),
        (true, None) => {
            let kch = spec.k.min(512.max(tk));
            (kch, 2 * kch)
        }
        (false, _) => (0, 0),
    };
    let per_row = spec.k * e
        + 2 * tn * 4
        + staged * 4
        + spec.a_scale_columns(tk, target) * 4
        + spec.a_rows.map_or(0, |g| g.index_bytes());
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
    let a_row = spec.k * e + spec.a_rows.map_or(0, |g| g.index_bytes());
    let blocks = spec.batch.max(1) * tiles(spec.m, tm);
    // The second block's bytes, with a margin for the buffers' alignment.
    let margin = 64 * 16;
    // Without room for a second block at this `tm`, a narrow B (a GEMV's
    // vector: each extra block reloads only `K × N`, at most 1/8 of its A
    // rows' bytes) takes half-height blocks that load while the MXU streams
    // the other: otherwise the DMA and the MXU take turns.
    let halved = by_spm_double(spm, per_row + a_row, margin)
        .min(by_acc)
        .min(1024);
    let (tm, a_slots) = if convert || blocks == 1 {
        (tm, 1)
    } else if tm * (per_row + a_row) + margin <= spm {
        (tm, 2)
    } else if spec.n * 8 <= tm && halved > 0 {
        // Gathered blocks prefetch when they divide M (see
        // `GemmKernel::prefetches`): a divisor, unless that halves them.
        let divisor = (1..=halved.min(spec.m)).rev().find(|d| spec.m % d == 0);
        match divisor {
            Some(d) if spec.a_rows.is_some() && 2 * d >= halved => (d, 2),
            _ => (balanced_tile(spec.m, halved), 2),
        }
    } else {
        (tm, 1)
    };
    Ok(GemmTiles {
        tm,
        tk,
        tn,
        kch: kch.max(1),
        b_slots,
        a_slots,
    })
}

/// Rows whose `per_row` bytes fit `spm` less `margin`.
fn by_spm_double(spm: u64, per_row: u64, margin: u64) -> u64 {
    spm.saturating_sub(margin) / per_row.max(1)
}

/// Builds the GEMM kernel.
pub fn gemm(spec: &GemmSpec, target: &Target) -> Result<Kernel, LowerError> {
    let t = choose_tiles(spec, target)?;
    let mut mem = OnChip::new(target);
    let bufs = GemmBuffers::allocate(&mut mem, spec, &t, target)?;
    let kernel = GemmKernel::new(spec, &t, &bufs, target);
    let body = kernel.body();
    let (m, k, n) = (spec.m, spec.k, spec.n);
    let e = spec.mxu.a_type().size();
    let batch = spec.batch.max(1);
    let b_bytes = if spec.b.batch_stride == 0 {
        k * n * e
    } else {
        batch * k * n * e
    };
    let l = &kernel.loops;
    Ok(Kernel {
        node: spec.node.clone(),
        summary: format!(
            "gemm {}x{}x{}{}{}{}{}{} ({}; tiles {}x{}x{}, {} weight buffers)",
            m,
            k,
            n,
            if batch > 1 {
                format!(" x{batch}")
            } else {
                String::new()
            },
            if spec.b_trans { " B^T" } else { "" },
            if spec.a_rows.is_some() {
                " A-rows-gathered"
            } else {
                ""
            },
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
        rotators: [(l.stage_slot, 2), (l.b_slot, t.b_slots), (l.out_slot, 2)]
            .into_iter()
            .chain((t.a_slots > 1).then_some((l.a_slot, t.a_slots)))
            .collect(),
        macs: batch * m * k * n,
        compulsory_dram_bytes: batch * m * k * spec.a_size()
            + b_bytes
            + batch * m * n * spec.out_size()
            + spec.vectors() * n * 4
            + u64::from(bufs.a_zp.is_some())
            + u64::from(bufs.b_zp.is_some())
            + bufs.w_scales.as_ref().map_or(0, |(_, bytes)| *bytes)
            + spec.a_rows.map_or(0, |g| batch * m * g.index_bytes()),
    })
}

/// The GEMM's SPM and ACC buffers.
struct GemmBuffers {
    /// The resident A block, in the MXU's type.
    abuf: Buffer,
    /// Weight tiles.
    bbuf: Buffer,
    /// Output tiles.
    obuf: Buffer,
    /// f32 chunks of A before conversion (none in f32 mode).
    stage: Option<Buffer>,
    bias: Option<Buffer>,
    /// An integer GEMM's column scales.
    scales: Option<Buffer>,
    /// A run-time zero point of A, and where it is in DRAM.
    a_zp: Option<(Buffer, Affine)>,
    /// A run-time zero point of B, likewise.
    b_zp: Option<(Buffer, Affine)>,
    /// A's scales when it is quantized on chip: int8 `[TM]`; FP8 one
    /// `[TM]` column per weight tile along K.
    a_scales: Option<Buffer>,
    /// FP8 weight scales, one per weight tile, and their bytes.
    w_scales: Option<(Buffer, u64)>,
    /// The reciprocals of one column of A's scales, which `vpu.quant …
    /// sop=mul` multiplies by.
    a_recip: Option<Buffer>,
    /// A requantized result: its 8-bit output tiles and its scale.
    requant: Option<(Buffer, Buffer)>,
    /// The A block's row indices, when its rows are gathered.
    a_idx: Option<Buffer>,
    acc: Buffer,
}

impl GemmBuffers {
    fn allocate(
        mem: &mut OnChip,
        spec: &GemmSpec,
        t: &GemmTiles,
        target: &Target,
    ) -> Result<GemmBuffers, LowerError> {
        let e = spec.mxu.a_type().size();
        let abuf = mem.alloc("a", Mem::Spm, t.tm * spec.k * e, t.a_slots)?;
        let bbuf = mem.alloc("b", Mem::Spm, t.tk * t.tn * e, t.b_slots)?;
        let obuf = mem.alloc("out", Mem::Spm, t.tm * t.tn * 4, 2)?;
        let stage = match (spec.converts_a(), spec.online) {
            // The whole rows, quantized once all (int8) or each block (FP8)
            // of their columns are in.
            // chunk-major ([chunk][row][column]), so that each chunk's DMA
            // writes one contiguous range.
            (true, Some(_)) => {
                let bytes = tiles(spec.k, t.kch) * t.tm * t.kch * 4;
                Some(mem.alloc("a_stage", Mem::Spm, bytes, 1)?)
            }
            (true, None) => Some(mem.alloc("a_stage", Mem::Spm, t.tm * t.kch * 4, 2)?),
            (false, _) => None,
        };
        let bias = match spec.bias {
            Some(_) => Some(mem.alloc("bias", Mem::Spm, spec.n * 4, 1)?),
            None => None,
        };
        let scales = match spec.column_scales() {
            Some(_) => Some(mem.alloc("scales", Mem::Spm, spec.n * 4, 1)?),
            None => None,
        };
        let a_scales = match spec.a_scale_columns(t.tk, target) {
            0 => None,
            cols => Some(mem.alloc("a_scales", Mem::Spm, cols * t.tm * 4, 1)?),
        };
        let requant = match spec.requantize() {
            Some(_) => Some((
                mem.alloc("out_q", Mem::Spm, t.tm * t.tn, 2)?,
                mem.alloc("out_scale", Mem::Spm, 4, 1)?,
            )),
            None => None,
        };
        let a_recip = match spec.online {
            Some(_) => Some(mem.alloc("a_recip", Mem::Spm, t.tm * 4, 1)?),
            None => None,
        };
        let w_scales = if spec.fp8_online() {
            let bytes = spec.k.div_ceil(t.tk) * spec.n.div_ceil(t.tn) * 4;
            Some((mem.alloc("w_scales", Mem::Spm, bytes, 1)?, bytes))
        } else {
            None
        };
        let mut run_time = |name: &str, zp: Option<&ZeroPoint>| match zp {
            Some(ZeroPoint::At(dram)) => Ok(Some((mem.alloc(name, Mem::Spm, 4, 1)?, dram.clone()))),
            _ => Ok::<_, LowerError>(None),
        };
        let a_zp = run_time("a_zp", spec.quant.as_ref().map(|q| &q.a_zp))?;
        let b_zp = run_time("b_zp", spec.quant.as_ref().map(|q| &q.b_zp))?;
        let a_idx = match spec.a_rows {
            Some(g) => Some(mem.alloc("a_rows", Mem::Spm, t.tm * g.index_bytes(), t.a_slots)?),
            None => None,
        };
        Ok(GemmBuffers {
            abuf,
            bbuf,
            obuf,
            stage,
            bias,
            scales,
            a_zp,
            b_zp,
            a_scales,
            w_scales,
            a_recip,
            requant,
            a_idx,
            acc: mem.alloc("acc", Mem::Acc, t.tm * t.tn * 4, 2)?,
        })
    }
}

/// Loop variables and rotators.
struct GemmLoops {
    batch: Var,
    /// Blocks of A rows.
    row_block: Var,
    /// Staging chunks of A columns.
    a_chunk: Var,
    /// Output column tiles.
    col_tile: Var,
    /// Weight tiles along K.
    k_tile: Var,
    /// Scale blocks along a row of A (FP8 A quantized on chip).
    block: Var,
    /// Rotators: A-block slot (when there are two), staging slot, weight
    /// slot, ACC/output slot.
    a_slot: Var,
    stage_slot: Var,
    b_slot: Var,
    out_slot: Var,
}

/// One GEMM kernel being built.
struct GemmKernel<'a> {
    spec: &'a GemmSpec,
    t: &'a GemmTiles,
    bufs: &'a GemmBuffers,
    target: &'a Target,
    loops: GemmLoops,
    /// Bytes per MXU input element.
    e: u64,
    /// Rows in this A block (`tm`, or fewer in the last).
    tm: Ext,
    /// The channel saying the A block may be overwritten: a credit from
    /// the VPU's converter, or (f32 mode) the MXU telling the DMA.
    a_free: Chan,
}

impl<'a> GemmKernel<'a> {
    fn new(
        spec: &'a GemmSpec,
        t: &'a GemmTiles,
        bufs: &'a GemmBuffers,
        target: &'a Target,
    ) -> GemmKernel<'a> {
        let mut vars = Vars::default();
        let [batch, row_block, a_chunk, col_tile, k_tile, stage_slot, b_slot, out_slot, block, a_slot] =
            [(); 10].map(|()| vars.fresh());
        GemmKernel {
            spec,
            t,
            bufs,
            target,
            e: spec.mxu.a_type().size(),
            tm: Ext::tile(t.tm, spec.m, Affine::var(0, row_block, t.tm as i64)),
            a_free: if bufs.stage.is_some() {
                Chan::credit(Mxu, Vpu)
            } else {
                Chan::data(Mxu, Dma)
            },
            loops: GemmLoops {
                batch,
                row_block,
                a_chunk,
                col_tile,
                k_tile,
                block,
                a_slot,
                stage_slot,
                b_slot,
                out_slot,
            },
        }
    }

    /// The A block's slot: the rotator when there are two.
    fn a_slot(&self) -> Affine {
        if self.t.a_slots > 1 {
            Affine::var(0, self.loops.a_slot, 1)
        } else {
            Affine::c(0)
        }
    }

    /// The bias loaded once, then the loops over batch entries and row
    /// blocks between the credit lanes' setup and drain.
    fn body(&self) -> Vec<Stmt> {
        let (spec, t, l) = (self.spec, self.t, &self.loops);
        let mut credits = vec![
            (Chan::credit(Mxu, Dma), t.b_slots as u16),
            (Chan::credit(Vpu, Mxu), 2),
            (Chan::credit(Dma, Vpu), 2),
            (self.a_free, t.a_slots as u16),
        ];
        if self.bufs.stage.is_some() {
            // Staging slots (one, whole rows, for A quantized on chip).
            let slots = if spec.online.is_some() { 1 } else { 2 };
            credits.push((Chan::credit(Vpu, Dma), slots));
        }
        let mut m_body = self.a_block();
        m_body.push(Stmt::For {
            var: l.col_tile,
            count: tiles(spec.n, t.tn),
            body: self.column_tile(),
        });
        if self.fp8_interleaved() {
            // The stage was read during the first column tile.
            m_body.push(Stmt::Signal(Chan::credit(Vpu, Dma), 1));
        }
        if self.prefetches() {
            // The next block's pieces are all in.
            m_body.extend(self.unless_last_block(vec![Stmt::Signal(Chan::data(Dma, Mxu), 1)]));
        }
        m_body.push(Stmt::Signal(self.a_free, 1));
        if t.a_slots > 1 {
            m_body.push(Stmt::Advance(l.a_slot));
        }
        let mut vectors: Vec<_> = match (spec.column_scales(), &self.bufs.scales) {
            (Some(addr), Some(buf)) => vec![(buf, addr, spec.n * 4)],
            _ => vec![],
        };
        if let (Some(addr), Some(buf)) = (spec.bias, &self.bufs.bias) {
            vectors.push((buf, addr, spec.n * 4));
        }
        if let (Some(r), Some((_, buf))) = (spec.requantize(), &self.bufs.requant) {
            vectors.push((buf, r.scale, 4));
        }
        let mut body = resident_vectors(&vectors);
        if let (Some((buf, bytes)), Some(o)) = (&self.bufs.w_scales, &spec.online) {
            // The MXU reads a tile's block scales at every weight load.
            body.extend(resident_for_mxu(buf, Affine::c(o.w_scales as i64), *bytes));
        }
        for (buf, dram) in self.bufs.a_zp.iter().chain(&self.bufs.b_zp) {
            // The MXU reads a run-time zero point at every weight load.
            body.extend(resident_for_mxu(buf, dram.clone(), 1));
        }
        let (batches, blocks) = (spec.batch.max(1), tiles(spec.m, t.tm));
        let mut loops = if self.prefetches() {
            self.first_block()
        } else {
            vec![]
        };
        loops.push(Stmt::For {
            var: l.batch,
            count: batches,
            body: vec![Stmt::For {
                var: l.row_block,
                count: blocks,
                body: m_body,
            }],
        });
        // After the loops (out_slot advanced once more): the last tile, in
        // slot 1 - out_slot (every block's last tile is stored during the
        // next block's first column tile, see `column_tile`).
        loops.extend(self.store_in(
            self.last_col(),
            Affine::var(1, l.out_slot, -1),
            Affine::c(batches as i64 - 1),
            Affine::c(blocks as i64 - 1),
            self.rows_of_last_block(),
        ));
        body.extend(credited(&credits, loops));
        body
    }

    /// The A block: rows of A, resident for every output column tile;
    /// converted chunk by chunk through staging unless the MXU takes f32.
    fn a_block(&self) -> Vec<Stmt> {
        let (spec, t, l, b) = (self.spec, self.t, &self.loops, self.bufs);
        let (k, e) = (spec.k, self.e);
        let a_batch =
            Affine::var(spec.a.addr as i64, l.batch, spec.a.batch_stride as i64).plus_affine(
                &Affine::var(0, l.row_block, (t.tm * spec.a.row_stride) as i64),
            );
        let mut a_load = vec![Stmt::Note(
            "A block: rows of A, resident for every output column tile".into(),
        )];
        if self.prefetches() {
            // Loaded during the block before (see `prefetch_piece`).
            a_load.push(Stmt::Wait(Chan::data(Dma, Mxu), 1));
            return a_load;
        }
        a_load.push(Stmt::Wait(self.a_free, 1));
        if spec.online.is_some() {
            a_load.extend(self.a_block_quantized());
            return a_load;
        }
        let Some(stage) = &b.stage else {
            match (&spec.a_rows, &b.a_idx) {
                (Some(g), Some(idx)) => a_load.extend(self.a_block_gathered(g, idx)),
                _ => a_load.push(Stmt::Copy {
                    dst: b.abuf.at(&self.a_slot(), 0),
                    src: Addr::new(Mem::Dram, a_batch),
                    run: Ext::Const(k * e),
                    dims: vec![DmaDim {
                        count: self.tm.clone(),
                        sstride: spec.a.row_stride as i64,
                        dstride: (k * e) as i64,
                    }],
                }),
            }
            a_load.push(Stmt::Signal(Chan::data(Dma, Mxu), 1));
            a_load.push(Stmt::Wait(Chan::data(Dma, Mxu), 1));
            return a_load;
        };
        let vc = l.a_chunk;
        let cols = Ext::tile(t.kch, k, Affine::var(0, vc, t.kch as i64));
        let slot = Affine::var(0, l.stage_slot, 1);
        a_load.push(Stmt::For {
            var: vc,
            count: tiles(k, t.kch),
            body: vec![
                Stmt::Wait(Chan::credit(Vpu, Dma), 1),
                self.a_chunk_copy(&a_batch, vc, stage.at(&slot, 0)),
                Stmt::Signal(Chan::data(Dma, Vpu), 1),
                Stmt::Wait(Chan::data(Dma, Vpu), 1),
            ]
            .into_iter()
            .chain([Stmt::Vpu(VpuStmt {
                op: VpuOp::Cvt {
                    dtype: spec.mxu.a_type(),
                    a: stage.at(&slot, 0),
                    atype: DType::F32,
                    astride: t.kch * 4,
                },
                dst: Addr::new(
                    Mem::Spm,
                    Affine::var(b.abuf.offset as i64, vc, (t.kch * e) as i64),
                ),
                dstride: k * e,
                rows: self.tm.clone(),
                cols,
            })])
            .chain([
                Stmt::Signal(Chan::credit(Vpu, Dma), 1),
                Stmt::Advance(l.stage_slot),
            ])
            .collect(),
        });
        a_load.push(Stmt::Signal(Chan::data(Vpu, Mxu), 1));
        a_load.push(Stmt::Wait(Chan::data(Vpu, Mxu), 1));
        a_load
    }

    /// DMA: the A block's rows gathered from the table (see [`RowGather`]):
    /// their indices into SPM, then one `dma.gather` of whole rows (the
    /// DMA engine orders the two itself).
    fn a_block_gathered(&self, g: &RowGather, idx: &Buffer) -> Vec<Stmt> {
        let (spec, t, l) = (self.spec, self.t, &self.loops);
        let isize = g.index_bytes();
        let indices = Affine::var(g.indices as i64, l.batch, (spec.m * isize) as i64)
            .plus(l.row_block, (t.tm * isize) as i64);
        let slot = self.a_slot();
        vec![
            Stmt::Copy {
                dst: idx.at(&slot, 0),
                src: Addr::new(Mem::Dram, indices),
                run: self.tm.clone().scaled(isize),
                dims: vec![],
            },
            self.gather_rows(g, idx, &slot, Affine::c(0), self.tm.clone()),
        ]
    }

    /// DMA: `rows` rows of the A block in `slot`, from row `first` on, by
    /// the indices already in that slot of `idx`.
    fn gather_rows(
        &self,
        g: &RowGather,
        idx: &Buffer,
        slot: &Affine,
        first: Affine,
        rows: Ext,
    ) -> Stmt {
        let (spec, e) = (self.spec, self.e);
        let isize = g.index_bytes() as i64;
        let scaled = |k: i64| Affine {
            constant: first.constant * k,
            terms: first.terms.iter().map(|&(v, c)| (v, c * k)).collect(),
        };
        Stmt::Gather {
            dst: self
                .bufs
                .abuf
                .at(slot, 0)
                .at
                .plus_affine(&scaled((spec.k * e) as i64)),
            table: Affine::c(spec.a.addr as i64),
            idx: idx.at(slot, 0).at.plus_affine(&scaled(isize)),
            rows,
            bytes: spec.k * e,
            limit: g.limit,
            itype: g.itype,
        }
    }

    /// Whether the next A block is gathered during this one, a piece of
    /// rows after each weight tile of the first column tile: a gathered A
    /// (each block's rows are a whole `dma.gather`, which at one block per
    /// MXU pass would hold the in-order DMA queue behind it) with two A
    /// slots, whole blocks (block `f` of the flattened (batch, row block)
    /// order has the indices `f · TM ..`), and several weight tiles.
    fn prefetches(&self) -> bool {
        let (spec, t) = (self.spec, self.t);
        spec.a_rows.is_some() && t.a_slots == 2 && spec.m % t.tm == 0 && tiles(spec.k, t.tk) > 1
    }

    /// The flattened index of this block.
    fn block_index(&self) -> Affine {
        let (spec, t, l) = (self.spec, self.t, &self.loops);
        Affine::var(0, l.batch, tiles(spec.m, t.tm) as i64).plus(l.row_block, 1)
    }

    /// `body` on every block but the last: before the batch entry's last
    /// row block, or on it but before the last batch entry (conditions on
    /// one loop variable each, so the channel balance check counts them).
    fn unless_last_block(&self, body: Vec<Stmt>) -> Vec<Stmt> {
        let (spec, t, l) = (self.spec, self.t, &self.loops);
        let blocks = tiles(spec.m, t.tm) as i64;
        let mut stmts = Vec::new();
        if blocks > 1 {
            stmts.push(Stmt::If {
                lhs: Affine::var(0, l.row_block, 1),
                cmp: Cmp::Lt,
                value: blocks - 1,
                body: body.clone(),
            });
        }
        if spec.batch > 1 {
            stmts.push(Stmt::If {
                lhs: Affine::var(0, l.row_block, 1),
                cmp: Cmp::Ge,
                value: blocks - 1,
                body: vec![Stmt::If {
                    lhs: Affine::var(0, l.batch, 1),
                    cmp: Cmp::Lt,
                    value: spec.batch as i64 - 1,
                    body,
                }],
            });
        }
        stmts
    }

    /// Rows per prefetched piece, and the pieces of a block.
    fn pieces(&self) -> (u64, u64) {
        let (spec, t) = (self.spec, self.t);
        let per = t.tm.div_ceil(tiles(spec.k, t.tk));
        (per, t.tm.div_ceil(per))
    }

    /// The first A block, before the loops (prefetching, see
    /// [`GemmKernel::prefetches`]).
    fn first_block(&self) -> Vec<Stmt> {
        let (Some(g), Some(idx)) = (&self.spec.a_rows, &self.bufs.a_idx) else {
            unreachable!("only gathered A blocks are prefetched");
        };
        let isize = g.index_bytes();
        let slot = Affine::c(0);
        vec![
            Stmt::Wait(self.a_free, 1),
            Stmt::Copy {
                dst: idx.at(&slot, 0),
                src: Addr::new(Mem::Dram, Affine::c(g.indices as i64)),
                run: Ext::Const(self.t.tm * isize),
                dims: vec![],
            },
            self.gather_rows(g, idx, &slot, Affine::c(0), Ext::Const(self.t.tm)),
            Stmt::Signal(Chan::data(Dma, Mxu), 1),
        ]
    }

    /// DMA, after weight tile `k` of the first column tile when a next
    /// block exists: piece `k` of the next block's rows into the other A
    /// slot (at `k = 0` first its indices, once the MXU is done with the
    /// block before this one, which used that slot).
    fn prefetch_piece(&self) -> Vec<Stmt> {
        let (t, l) = (self.t, &self.loops);
        let (Some(g), Some(idx)) = (&self.spec.a_rows, &self.bufs.a_idx) else {
            unreachable!("only gathered A blocks are prefetched");
        };
        let isize = g.index_bytes();
        let other = Affine::var(1, l.a_slot, -1);
        let f = self.block_index();
        let (per, pieces) = self.pieces();
        let vk = l.k_tile;
        let next_indices = Affine::c((g.indices + t.tm * isize) as i64).plus_affine(&Affine {
            constant: 0,
            terms: f
                .terms
                .iter()
                .map(|&(v, c)| (v, c * (t.tm * isize) as i64))
                .collect(),
        });
        let piece = self.gather_rows(
            g,
            idx,
            &other,
            Affine::var(0, vk, per as i64),
            Ext::tile(per, t.tm, Affine::var(0, vk, per as i64)),
        );
        let mut body = vec![Stmt::If {
            lhs: Affine::var(0, vk, 1),
            cmp: Cmp::Eq,
            value: 0,
            body: vec![
                Stmt::Wait(self.a_free, 1),
                Stmt::Copy {
                    dst: idx.at(&other, 0),
                    src: Addr::new(Mem::Dram, next_indices),
                    run: Ext::Const(t.tm * isize),
                    dims: vec![],
                },
            ],
        }];
        body.push(if pieces < tiles(self.spec.k, t.tk) {
            Stmt::If {
                lhs: Affine::var(0, vk, 1),
                cmp: Cmp::Lt,
                value: pieces as i64,
                body: vec![piece],
            }
        } else {
            piece
        });
        vec![Stmt::If {
            lhs: Affine::var(0, l.col_tile, 1),
            cmp: Cmp::Eq,
            value: 0,
            body: self.unless_last_block(body),
        }]
    }

    /// The A block of an 8-bit GEMM, quantized on chip and streamed to the
    /// MXU: the DMA stages f32 chunks of the rows (all resident, in one
    /// buffer); the VPU takes each group's max-abs, its scale, and
    /// quantizes, signaling the MXU once per weight tile along K as soon as
    /// that tile's columns are ready (the MXU waits for them on the first
    /// column tile only). int8 groups are whole rows (the amax accumulates
    /// over the chunks, then the row is quantized tile by tile); FP8 groups
    /// are blocks of B columns, one per chunk. The stage is free again for
    /// the DMA once the VPU has quantized the whole block.
    fn a_block_quantized(&self) -> Vec<Stmt> {
        let (spec, t, l, b, e) = (self.spec, self.t, &self.loops, self.bufs, self.e);
        let (Some(stage), Some(scales)) = (&b.stage, &b.a_scales) else {
            unreachable!("an 8-bit GEMM stages A and keeps its scales");
        };
        let (k, vc) = (spec.k, l.a_chunk);
        let chunks = tiles(k, t.kch);
        let a_batch = self.a_rows();
        let staged = |at: Addr| Opnd {
            addr: at,
            stride: t.kch * 4,
            bcast: Bcast::Full,
        };
        let chunk = (t.tm * t.kch * 4) as i64;
        let ready = Chan::data(Vpu, Mxu);
        let mut stmts = vec![Stmt::Wait(Chan::credit(Vpu, Dma), 1)];
        if !spec.fp8_online() {
            // int8: the row's amax over every chunk, then its scale, then
            // the row quantized one weight tile of columns at a time.
            let scale = scales.at(&Affine::c(0), 0);
            let mut body = self.stage_chunk(&a_batch, vc);
            body.push(self.vpu_into(
                VpuOp::Red {
                    func: RedFunc::Amax,
                    a: staged(stage.at(&Affine::c(0), 0).plus(vc, chunk)),
                    mode: Mode::AccAfterFirst(vc),
                },
                &scale,
                4,
                self.tm.clone(),
                Ext::tile(t.kch, k, Affine::var(0, vc, t.kch as i64)),
            ));
            stmts.push(Stmt::For {
                var: vc,
                count: chunks,
                body,
            });
            stmts.extend(self.scale_from_amax(&scale));
            let vt = l.block;
            let tile_cols = Ext::tile(t.tk, k, Affine::var(0, vt, t.tk as i64));
            // int8 chunks are weight tiles.
            let tile_at = stage.at(&Affine::c(0), 0).plus(vt, chunk);
            stmts.push(Stmt::For {
                var: vt,
                count: tiles(k, t.tk),
                body: vec![
                    self.quantize(
                        staged(tile_at),
                        Addr::new(
                            Mem::Spm,
                            Affine::var(b.abuf.offset as i64, vt, (t.tk * e) as i64),
                        ),
                        tile_cols,
                    ),
                    Stmt::Signal(ready, 1),
                ],
            });
        } else if self.fp8_interleaved() {
            // FP8, each block when the first column tile reaches it (see
            // `k_step`); the stage is free after the column tiles.
            return stmts;
        } else {
            // FP8: chunk vc is block vc.
            let tpb = spec.tiles_per_block(t.tk, self.target);
            let mut body = self.fp8_block(&a_batch, vc);
            // Every block but a short last one holds tpb weight tiles.
            let last = tiles(k, t.tk) - (chunks - 1) * tpb;
            if last == tpb {
                body.push(Stmt::Signal(ready, tpb as u16));
            } else {
                body.push(Stmt::If {
                    lhs: Affine::var(0, vc, 1),
                    cmp: Cmp::Lt,
                    value: chunks as i64 - 1,
                    body: vec![Stmt::Signal(ready, tpb as u16)],
                });
                body.push(Stmt::If {
                    lhs: Affine::var(0, vc, 1),
                    cmp: Cmp::Ge,
                    value: chunks as i64 - 1,
                    body: vec![Stmt::Signal(ready, last as u16)],
                });
            }
            stmts.push(Stmt::For {
                var: vc,
                count: chunks,
                body,
            });
        }
        stmts.push(Stmt::Signal(Chan::credit(Vpu, Dma), 1));
        stmts
    }

    /// Whether an FP8 GEMM quantizes each block of A as the first column
    /// tile reaches it, its DMA interleaved with the weight tiles': when a
    /// block is one weight tile (`TK = B`) or A is one block (K ≤ B).
    /// Otherwise (several tiles per block and several blocks) every block
    /// is quantized before the column tiles.
    fn fp8_interleaved(&self) -> bool {
        let (spec, t) = (self.spec, self.t);
        spec.fp8_online()
            && (spec.tiles_per_block(t.tk, self.target) == 1 || tiles(spec.k, t.kch) == 1)
    }

    /// DMA: chunk `v` (of `kch` columns) of the A block's rows into its
    /// place in the (chunk-major) stage, then one dma→vpu event.
    fn stage_chunk(&self, a_batch: &Affine, v: Var) -> Vec<Stmt> {
        let t = self.t;
        let Some(stage) = &self.bufs.stage else {
            unreachable!("an 8-bit GEMM stages A");
        };
        let dst = stage
            .at(&Affine::c(0), 0)
            .plus(v, (t.tm * t.kch * 4) as i64);
        vec![
            self.a_chunk_copy(a_batch, v, dst),
            Stmt::Signal(Chan::data(Dma, Vpu), 1),
            Stmt::Wait(Chan::data(Dma, Vpu), 1),
        ]
    }

    /// DMA: chunk `v` (`kch` f32 columns) of the A block's rows, from
    /// `a_batch`, to `dst`, its rows `kch` apart.
    fn a_chunk_copy(&self, a_batch: &Affine, v: Var, dst: Addr) -> Stmt {
        let (spec, t) = (self.spec, self.t);
        Stmt::Copy {
            dst,
            src: Addr::new(Mem::Dram, a_batch.clone().plus(v, (t.kch * 4) as i64)),
            run: Ext::tile(t.kch, spec.k, Affine::var(0, v, t.kch as i64)).scaled(4),
            dims: vec![DmaDim {
                count: self.tm.clone(),
                sstride: spec.a.row_stride as i64,
                dstride: (t.kch * 4) as i64,
            }],
        }
    }

    /// FP8: block `v` of A staged, its max-abs per row, its scales (in the
    /// column of its first weight tile, copied to its other tiles') and
    /// the block quantized into the A block.
    fn fp8_block(&self, a_batch: &Affine, v: Var) -> Vec<Stmt> {
        let (spec, t, b, e) = (self.spec, self.t, self.bufs, self.e);
        let (Some(stage), Some(scales)) = (&b.stage, &b.a_scales) else {
            unreachable!("an 8-bit GEMM stages A and keeps its scales");
        };
        let tpb = spec.tiles_per_block(t.tk, self.target);
        let column = |extra: i64| {
            Addr::new(
                Mem::Spm,
                Affine::var(scales.offset as i64 + extra, v, (tpb * t.tm * 4) as i64),
            )
        };
        let staged = Opnd {
            addr: stage
                .at(&Affine::c(0), 0)
                .plus(v, (t.tm * t.kch * 4) as i64),
            stride: t.kch * 4,
            bcast: Bcast::Full,
        };
        let cols = Ext::tile(t.kch, spec.k, Affine::var(0, v, t.kch as i64));
        let mut body = self.stage_chunk(a_batch, v);
        body.push(self.vpu_into(
            VpuOp::Red {
                func: RedFunc::Amax,
                a: staged.clone(),
                mode: Mode::Fixed(AccMode::Set),
            },
            &column(0),
            4,
            self.tm.clone(),
            cols.clone(),
        ));
        body.extend(self.scale_from_amax(&column(0)));
        let dst = Addr::new(
            Mem::Spm,
            Affine::var(b.abuf.offset as i64, v, (t.kch * e) as i64),
        );
        body.push(self.quantize(staged, dst, cols));
        if tpb > 1 {
            body.push(self.vpu_into(
                VpuOp::Un {
                    func: UnFunc::Mov,
                    a: Opnd {
                        addr: column(0),
                        stride: 0,
                        bcast: Bcast::Row,
                    },
                },
                &column((t.tm * 4) as i64),
                t.tm * 4,
                Ext::Const(tpb - 1),
                self.tm.clone(),
            ));
        }
        body
    }

    /// The first row of this A block in DRAM.
    fn a_rows(&self) -> Affine {
        let (spec, t, l) = (self.spec, self.t, &self.loops);
        Affine::var(spec.a.addr as i64, l.batch, spec.a.batch_stride as i64).plus_affine(
            &Affine::var(0, l.row_block, (t.tm * spec.a.row_stride) as i64),
        )
    }

    /// A VPU statement writing `rows × cols` at `dst`.
    fn vpu_into(&self, op: VpuOp, dst: &Addr, dstride: u64, rows: Ext, cols: Ext) -> Stmt {
        Stmt::Vpu(VpuStmt {
            op,
            dst: dst.clone(),
            dstride,
            rows,
            cols,
        })
    }

    /// VPU: the `[tm]` column of max-abs values at `scale` made scales, in
    /// place — `max(amax · (1/max_finite), MIN_SCALE)` — and their
    /// reciprocals `1 / s` into the `a_recip` column.
    fn scale_from_amax(&self, scale: &Addr) -> Vec<Stmt> {
        let t = self.t;
        let as_row = || Opnd {
            addr: scale.clone(),
            stride: t.tm * 4,
            bcast: Bcast::Full,
        };
        let recip = self.recip();
        [
            (
                BinFunc::Mul,
                1.0 / max_finite(self.spec.mxu.a_type()),
                Order::As,
                scale,
            ),
            (BinFunc::Max, MIN_SCALE, Order::As, scale),
            (BinFunc::Div, 1.0, Order::Sa, &recip),
        ]
        .into_iter()
        .map(|(func, scalar, order, dst)| {
            self.vpu_into(
                VpuOp::BinS {
                    func,
                    a: as_row(),
                    scalar,
                    order,
                },
                dst,
                t.tm * 4,
                Ext::Const(1),
                self.tm.clone(),
            )
        })
        .collect()
    }

    /// The column of reciprocal scales.
    fn recip(&self) -> Addr {
        match &self.bufs.a_recip {
            Some(buf) => buf.at(&Affine::c(0), 0),
            None => unreachable!("an 8-bit GEMM has a reciprocal-scale column"),
        }
    }

    /// VPU: `cols` columns of the staged rows `src` quantized into `dst`
    /// (the A block): times the reciprocals of the latest row scales
    /// (`vpu.quant … sop=mul`, one multiply per element).
    fn quantize(&self, src: Opnd, dst: Addr, cols: Ext) -> Stmt {
        self.vpu_into(
            VpuOp::Quant {
                a: src,
                s: Opnd {
                    addr: self.recip(),
                    stride: 4,
                    bcast: Bcast::Col,
                },
                dtype: self.spec.mxu.a_type(),
                by: ScaleOp::Mul,
                zp: 0,
            },
            &dst,
            self.spec.k * self.e,
            self.tm.clone(),
            cols,
        )
    }

    /// Output columns in this column tile (`tn`, or fewer in the last).
    fn tn(&self) -> Ext {
        let col0 = Affine::var(0, self.loops.col_tile, self.t.tn as i64);
        Ext::tile(self.t.tn, self.spec.n, col0)
    }

    /// One weight tile: loaded by the DMA, multiplied into ACC.
    fn k_step(&self) -> Vec<Stmt> {
        let (spec, t, l, b, e) = (self.spec, self.t, &self.loops, self.bufs, self.e);
        let (vn, vk) = (l.col_tile, l.k_tile);
        let tn = self.tn();
        let tk = Ext::tile(t.tk, spec.k, Affine::var(0, vk, t.tk as i64));
        let bslot = Affine::var(0, l.b_slot, 1);
        let b_batch = Affine::var(spec.b.addr as i64, l.batch, spec.b.batch_stride as i64);
        let (b_src, b_run, b_rows, trans) = if spec.b_trans {
            // B stored [N, K]: tn rows of tk elements.
            let at = b_batch
                .plus(vn, (t.tn * spec.b.row_stride) as i64)
                .plus(vk, (t.tk * e) as i64);
            (at, tk.clone().scaled(e), tn.clone(), Trans::T)
        } else {
            let at = b_batch
                .plus(vk, (t.tk * spec.b.row_stride) as i64)
                .plus(vn, (t.tn * e) as i64);
            (at, tn.clone().scaled(e), tk.clone(), Trans::N)
        };
        let slot_stride = if spec.b_trans { t.tk * e } else { t.tn * e };
        let mut step = Vec::new();
        if self.fp8_interleaved() {
            // The first column tile quantizes A block by block as it goes:
            // each block's DMA just before the weights that need it.
            let mut block = self.fp8_block(&self.a_rows(), vk);
            let signal = if tiles(spec.k, t.kch) == 1 {
                tiles(spec.k, t.tk)
            } else {
                1
            };
            block.push(Stmt::Signal(Chan::data(Vpu, Mxu), signal as u16));
            if signal > 1 {
                // A is one block, quantized at the first weight tile.
                block = vec![Stmt::If {
                    lhs: Affine::var(0, vk, 1),
                    cmp: Cmp::Eq,
                    value: 0,
                    body: block,
                }];
            }
            step.push(Stmt::If {
                lhs: Affine::var(0, vn, 1),
                cmp: Cmp::Eq,
                value: 0,
                body: block,
            });
        }
        step.extend([
            Stmt::Wait(Chan::credit(Mxu, Dma), 1),
            Stmt::Copy {
                dst: b.bbuf.at(&bslot, 0),
                src: Addr::new(Mem::Dram, b_src),
                run: b_run,
                dims: vec![DmaDim {
                    count: b_rows,
                    sstride: spec.b.row_stride as i64,
                    dstride: slot_stride as i64,
                }],
            },
            Stmt::Signal(Chan::data(Dma, Mxu), 1),
        ]);
        if self.prefetches() {
            step.extend(self.prefetch_piece());
        }
        step.extend([
            Stmt::Wait(Chan::data(Dma, Mxu), 1),
            Stmt::LoadW {
                src: b.bbuf.at(&bslot, 0).at,
                k: tk,
                n: tn,
                stride: slot_stride,
                dtype: spec.mxu,
                trans,
                quant: self.weight_quant(),
            },
        ]);
        if spec.online.is_some() {
            // This K tile's columns of A, quantized (see
            // `a_block_quantized`), before the first column tile uses them.
            step.push(Stmt::If {
                lhs: Affine::var(0, vn, 1),
                cmp: Cmp::Eq,
                value: 0,
                body: vec![Stmt::Wait(Chan::data(Vpu, Mxu), 1)],
            });
        }
        step.extend([
            Stmt::Matmul {
                dst: b.acc.at(&Affine::var(0, l.out_slot, 1), 0).at,
                a: b.abuf.at(&self.a_slot(), 0).at.plus(vk, (t.tk * e) as i64),
                m: self.tm.clone(),
                astride: spec.k * e,
                dstride: t.tn * 4,
                mode: Mode::AccAfterFirst(vk),
                // This K tile's column of A's scales.
                ascales: match (&b.w_scales, &b.a_scales) {
                    (Some(_), Some(a)) => Some(Affine::var(a.offset as i64, vk, (t.tm * 4) as i64)),
                    _ => None,
                },
            },
            Stmt::Signal(Chan::credit(Mxu, Dma), 1),
            Stmt::Advance(l.b_slot),
        ]);
        step
    }

    /// What this GEMM's `mxu.ldw` adds: zero points (a `qgemm`; zeros for
    /// int8 A quantized on chip) or the weight tile's FP8 block scales.
    fn weight_quant(&self) -> Option<WeightQuant> {
        let (spec, t, l, b) = (self.spec, self.t, &self.loops, self.bufs);
        if let Some(q) = &spec.quant {
            let on_chip = |buf: &Option<(Buffer, Affine)>, zp: &ZeroPoint| match buf {
                Some((buf, _)) => ZeroPoint::At(buf.at(&Affine::c(0), 0).at),
                None => zp.clone(),
            };
            return Some(WeightQuant::ZeroPoints(
                on_chip(&b.a_zp, &q.a_zp),
                on_chip(&b.b_zp, &q.b_zp),
            ));
        }
        spec.online?;
        match &b.w_scales {
            Some((buf, _)) => {
                let nt = spec.n.div_ceil(t.tn) as i64;
                let at = Affine::var(buf.offset as i64, l.k_tile, nt * 4).plus(l.col_tile, 4);
                Some(WeightQuant::Scales { at, a_stride: 4 })
            }
            None => Some(WeightQuant::ZeroPoints(
                ZeroPoint::Const(0),
                ZeroPoint::Const(0),
            )),
        }
    }

    /// VPU: a finished ACC tile plus the bias, through the activation,
    /// into an output tile.
    fn epilogue(&self) -> Vec<Stmt> {
        let (t, l, b) = (self.t, &self.loops, self.bufs);
        let tn = self.tn();
        let slot = Affine::var(0, l.out_slot, 1);
        let acc_tile = Opnd {
            addr: b.acc.at(&slot, 0),
            stride: t.tn * 4,
            bcast: Bcast::Full,
        };
        let out_tile = b.obuf.at(&slot, 0);
        let mut epilogue = vec![
            Stmt::Signal(Chan::data(Mxu, Vpu), 1),
            Stmt::Wait(Chan::data(Mxu, Vpu), 1),
            Stmt::Wait(Chan::credit(Dma, Vpu), 1),
        ];
        let mut src = acc_tile.clone();
        let out_opnd = Opnd {
            addr: out_tile.clone(),
            stride: t.tn * 4,
            bcast: Bcast::Full,
        };
        if let Some(sb) = &b.scales {
            // int32 → f32, times the column's scale.
            epilogue.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Dequant {
                    a: acc_tile.clone(),
                    s: self.column_vector(sb),
                    atype: DType::I32,
                },
                dst: out_tile.clone(),
                dstride: t.tn * 4,
                rows: self.tm.clone(),
                cols: tn.clone(),
            }));
            src = out_opnd.clone();
            if let (Some(_), Some(sa)) = (&self.spec.online, &b.a_scales) {
                // … times the row's scale (int8 A quantized on chip).
                epilogue.push(Stmt::Vpu(VpuStmt {
                    op: VpuOp::Bin {
                        func: BinFunc::Mul,
                        a: src.clone(),
                        b: Opnd {
                            addr: sa.at(&Affine::c(0), 0),
                            stride: 4,
                            bcast: Bcast::Col,
                        },
                    },
                    dst: out_tile.clone(),
                    dstride: t.tn * 4,
                    rows: self.tm.clone(),
                    cols: tn.clone(),
                }));
            }
        }
        if let Some(bb) = &b.bias {
            epilogue.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Bin {
                    func: BinFunc::Add,
                    a: src,
                    b: self.column_vector(bb),
                },
                dst: out_tile.clone(),
                dstride: t.tn * 4,
                rows: self.tm.clone(),
                cols: tn.clone(),
            }));
            src = out_opnd;
        }
        let func = self.spec.act.unwrap_or(UnFunc::Mov);
        if self.spec.act.is_some() || (b.bias.is_none() && b.scales.is_none()) {
            epilogue.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Un { func, a: src },
                dst: out_tile.clone(),
                dstride: t.tn * 4,
                rows: self.tm.clone(),
                cols: tn.clone(),
            }));
        }
        if let (Some(r), Some((qbuf, sbuf))) = (self.spec.requantize(), &b.requant) {
            // … requantized, as QuantizeLinear: into the 8-bit tile.
            epilogue.push(Stmt::Vpu(VpuStmt {
                op: VpuOp::Quant {
                    a: Opnd {
                        addr: out_tile,
                        stride: t.tn * 4,
                        bcast: Bcast::Full,
                    },
                    s: Opnd {
                        addr: sbuf.at(&Affine::c(0), 0),
                        stride: 0,
                        bcast: Bcast::Scalar,
                    },
                    dtype: r.dtype,
                    by: ScaleOp::Div,
                    zp: r.zp,
                },
                dst: qbuf.at(&slot, 0),
                dstride: t.tn,
                rows: self.tm.clone(),
                cols: tn,
            }));
        }
        epilogue.push(Stmt::Signal(Chan::credit(Vpu, Mxu), 1));
        epilogue.push(Stmt::Signal(Chan::data(Vpu, Dma), 1));
        epilogue
    }

    /// This column tile's part of a resident `[N]` vector, broadcast down
    /// the rows.
    fn column_vector(&self, buf: &Buffer) -> Opnd {
        Opnd {
            addr: Addr::new(
                Mem::Spm,
                Affine::var(
                    buf.offset as i64,
                    self.loops.col_tile,
                    (self.t.tn * 4) as i64,
                ),
            ),
            stride: 0,
            bcast: Bcast::Row,
        }
    }

    /// DMA: the tile of column block `col` from output slot `slot`.
    fn store(&self, col: Affine, slot: Affine) -> Vec<Stmt> {
        let l = &self.loops;
        let (batch, block) = (Affine::var(0, l.batch, 1), Affine::var(0, l.row_block, 1));
        self.store_in(col, slot, batch, block, self.tm.clone())
    }

    /// The first column of the last output column tile.
    fn last_col(&self) -> Affine {
        Affine::c(((tiles(self.spec.n, self.t.tn) - 1) * self.t.tn) as i64)
    }

    /// Rows in the last row block of a batch entry.
    fn rows_of_last_block(&self) -> Ext {
        let (m, tm) = (self.spec.m, self.t.tm);
        Ext::Const(m - (tiles(m, tm) - 1) * tm)
    }

    /// [`GemmKernel::store`] of the block at (`batch`, `block`), of `rows`
    /// rows.
    fn store_in(
        &self,
        col: Affine,
        slot: Affine,
        batch: Affine,
        block: Affine,
        rows: Ext,
    ) -> Vec<Stmt> {
        let (spec, t) = (self.spec, self.t);
        let cols = Ext::tile(t.tn, spec.n, col.clone());
        let scaled = |a: &Affine, k: u64| Affine {
            constant: a.constant * k as i64,
            terms: a.terms.iter().map(|&(v, c)| (v, c * k as i64)).collect(),
        };
        let c_batch = Affine::c(spec.out.addr as i64)
            .plus_affine(&scaled(&batch, spec.out.batch_stride))
            .plus_affine(&scaled(&block, t.tm * spec.out.row_stride));
        let es = spec.out_size() as i64;
        let dst = c_batch.plus_affine(&Affine {
            constant: col.constant * es,
            terms: col.terms.iter().map(|&(v, c)| (v, c * es)).collect(),
        });
        // The f32 tile, or its requantized bytes.
        let src = match &self.bufs.requant {
            Some((qbuf, _)) => qbuf.at(&slot, 0),
            None => self.bufs.obuf.at(&slot, 0),
        };
        vec![
            Stmt::Wait(Chan::data(Vpu, Dma), 1),
            Stmt::Copy {
                dst: Addr::new(Mem::Dram, dst),
                src,
                run: cols.scaled(es as u64),
                dims: vec![DmaDim {
                    count: rows,
                    sstride: t.tn as i64 * es,
                    dstride: spec.out.row_stride as i64,
                }],
            },
            Stmt::Signal(Chan::credit(Dma, Vpu), 1),
        ]
    }

    /// One output column tile: the K loop of weight tiles, the epilogue,
    /// and the previous tile's store (one tile late, so the DMA never waits
    /// before loading the next weights).
    fn column_tile(&self) -> Vec<Stmt> {
        let (t, l) = (self.t, &self.loops);
        let mut n_body = vec![
            Stmt::Wait(Chan::credit(Vpu, Mxu), 1),
            Stmt::For {
                var: l.k_tile,
                count: tiles(self.spec.k, t.tk),
                body: self.k_step(),
            },
        ];
        n_body.extend(self.epilogue());
        // Before advancing: the previous tile is in slot 1 - out_slot. On
        // the first column tile, that is the previous block's last.
        let previous = Affine::var(1, l.out_slot, -1);
        n_body.push(Stmt::If {
            lhs: Affine::var(0, l.col_tile, 1),
            cmp: Cmp::Ge,
            value: 1,
            body: self.store(
                Affine::var(-(t.tn as i64), l.col_tile, t.tn as i64),
                previous.clone(),
            ),
        });
        let (batch, block) = (l.batch, l.row_block);
        let mut first = Vec::new();
        if tiles(self.spec.m, t.tm) > 1 {
            // The block before, in this batch entry: a whole one.
            first.push(Stmt::If {
                lhs: Affine::var(0, block, 1),
                cmp: Cmp::Ge,
                value: 1,
                body: self.store_in(
                    self.last_col(),
                    previous.clone(),
                    Affine::var(0, batch, 1),
                    Affine::var(-1, block, 1),
                    Ext::Const(t.tm),
                ),
            });
        }
        if self.spec.batch > 1 {
            // The last block of the batch entry before.
            let blocks = tiles(self.spec.m, t.tm) as i64;
            first.push(Stmt::If {
                lhs: Affine::var(0, block, 1),
                cmp: Cmp::Eq,
                value: 0,
                body: vec![Stmt::If {
                    lhs: Affine::var(0, batch, 1),
                    cmp: Cmp::Ge,
                    value: 1,
                    body: self.store_in(
                        self.last_col(),
                        previous,
                        Affine::var(-1, batch, 1),
                        Affine::c(blocks - 1),
                        self.rows_of_last_block(),
                    ),
                }],
            });
        }
        if !first.is_empty() {
            n_body.push(Stmt::If {
                lhs: Affine::var(0, l.col_tile, 1),
                cmp: Cmp::Eq,
                value: 0,
                body: first,
            });
        }
        n_body.push(Stmt::Advance(l.out_slot));
        n_body
    }
}

/// DMA: `bytes` at DRAM `src` into `buf`, once before the loops, then one
/// dma→mxu event: data the MXU reads at every weight load (a run-time zero
/// point, FP8 weight scales).
fn resident_for_mxu(buf: &Buffer, src: Affine, bytes: u64) -> Vec<Stmt> {
    vec![
        Stmt::Copy {
            dst: buf.at(&Affine::c(0), 0),
            src: Addr::new(Mem::Dram, src),
            run: Ext::Const(bytes),
            dims: vec![],
        },
        Stmt::Signal(Chan::data(Dma, Mxu), 1),
        Stmt::Wait(Chan::data(Dma, Mxu), 1),
    ]
}
