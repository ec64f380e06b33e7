//! Data movement kernels: transposes, slices, broadcasts, concatenation
//! and copies, all as strided DMA copies from DRAM to DRAM.
//!
//! A copy is described per output dimension by a source and a destination
//! element stride. Dimensions that are contiguous in both merge; the
//! innermost contiguous dimension becomes the run of each DMA transfer, up
//! to three more become its dimensions, and any others become loops on the
//! scalar unit. Runs of single elements (transposes of the last axis) are
//! correct but cost a DRAM burst each.

use tessera_isa::{Mem, Target};

use crate::kernel::{Addr, Affine, DmaDim, Ext, Kernel, Stmt};

use super::alloc::Vars;
use super::elementwise::coalesce;

/// A strided copy: for every index `i` of `sizes`, element
/// `src + Σ i_d·src_strides[d]` goes to `dst + Σ i_d·dst_strides[d]`.
#[derive(Clone, Debug, PartialEq)]
pub struct CopySpec {
    /// Source node (for the source map).
    pub node: String,
    /// What the copy implements, for dumps.
    pub what: String,
    /// Index space.
    pub sizes: Vec<usize>,
    /// Source base byte address.
    pub src: i64,
    /// Source element strides (may be 0 or negative).
    pub src_strides: Vec<i64>,
    /// Destination base byte address.
    pub dst: i64,
    /// Destination element strides.
    pub dst_strides: Vec<i64>,
    /// Element size in bytes.
    pub esize: u64,
}

/// Dense row-major element strides of a shape.
pub fn dense_strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![0i64; shape.len()];
    let mut acc = 1i64;
    for d in (0..shape.len()).rev() {
        s[d] = acc;
        acc *= shape[d] as i64;
    }
    s
}

/// Statements for a strided copy (no synchronization: DMA only).
pub fn copy_stmts(spec: &CopySpec, vars: &mut Vars) -> Vec<Stmt> {
    let (sizes, strides) = coalesce(
        &spec.sizes,
        &[spec.src_strides.clone(), spec.dst_strides.clone()],
    );
    if sizes.iter().product::<u64>() == 0 {
        return vec![];
    }
    let (ss, ds) = (&strides[0], &strides[1]);
    let es = spec.esize as i64;
    let k = sizes.len();
    // The run: the innermost dimension if it is contiguous on both sides.
    let (run, counted_from) = if ss[k - 1] == 1 && ds[k - 1] == 1 {
        (sizes[k - 1] * spec.esize, k - 1)
    } else {
        (spec.esize, k)
    };
    // Up to three dimensions inside the transfer, innermost first.
    let inner_dims: Vec<usize> = (0..counted_from).rev().take(3).collect();
    let loop_dims: Vec<usize> = (0..counted_from)
        .filter(|d| !inner_dims.contains(d))
        .collect();
    let loop_vars: Vec<_> = loop_dims.iter().map(|&d| (vars.fresh(), d)).collect();
    let mut src = Affine::c(spec.src);
    let mut dst = Affine::c(spec.dst);
    for &(v, d) in &loop_vars {
        src = src.plus(v, ss[d] * es);
        dst = dst.plus(v, ds[d] * es);
    }
    let dims = inner_dims
        .iter()
        .map(|&d| DmaDim {
            count: Ext::Const(sizes[d]),
            sstride: ss[d] * es,
            dstride: ds[d] * es,
        })
        .collect();
    let mut body = vec![Stmt::Copy {
        dst: Addr::new(Mem::Dram, dst),
        src: Addr::new(Mem::Dram, src),
        run: Ext::Const(run),
        dims,
    }];
    for &(v, d) in loop_vars.iter().rev() {
        body = vec![Stmt::For {
            var: v,
            count: sizes[d],
            body,
        }];
    }
    body
}

/// A kernel made of strided copies.
pub fn copies(node: &str, what: &str, specs: &[CopySpec]) -> Kernel {
    let mut vars = Vars::default();
    let mut body = Vec::new();
    let mut bytes = 0;
    for s in specs {
        body.extend(copy_stmts(s, &mut vars));
        bytes += 2 * s.sizes.iter().product::<usize>() as u64 * s.esize;
    }
    Kernel {
        node: node.to_string(),
        summary: what.to_string(),
        buffers: vec![],
        body,
        rotators: vec![],
        macs: 0,
        compulsory_dram_bytes: bytes,
    }
}

/// A kernel that zeroes `bytes` bytes of DRAM at `addr`: the VPU fills one
/// SPM tile with zeros, the DMA repeats it over the region.
pub fn zero_fill(
    node: &str,
    addr: u64,
    bytes: u64,
    target: &Target,
) -> Result<Kernel, super::LowerError> {
    use crate::kernel::{Chan, VpuOp, VpuStmt};
    use tessera_isa::Engine;
    let mut mem = super::alloc::OnChip::new(target);
    let tile = bytes.clamp(4, 4096).div_ceil(4) * 4;
    let buf = mem.alloc("zeros", Mem::Spm, tile, 1)?;
    let full = bytes / tile;
    let rest = bytes % tile;
    let mut body = vec![
        Stmt::Vpu(VpuStmt {
            op: VpuOp::Fill { bits: 0 },
            dst: buf.at(&Affine::c(0), 0),
            dstride: tile,
            rows: Ext::Const(1),
            cols: Ext::Const(tile / 4),
        }),
        Stmt::Signal(Chan::data(Engine::Vpu, Engine::Dma), 1),
        Stmt::Wait(Chan::data(Engine::Vpu, Engine::Dma), 1),
    ];
    if full > 0 {
        body.push(Stmt::Copy {
            dst: Addr::new(Mem::Dram, Affine::c(addr as i64)),
            src: buf.at(&Affine::c(0), 0),
            run: Ext::Const(tile),
            dims: vec![DmaDim {
                count: Ext::Const(full),
                sstride: 0,
                dstride: tile as i64,
            }],
        });
    }
    if rest > 0 {
        body.push(Stmt::Copy {
            dst: Addr::new(Mem::Dram, Affine::c((addr + full * tile) as i64)),
            src: buf.at(&Affine::c(0), 0),
            run: Ext::Const(rest),
            dims: vec![],
        });
    }
    Ok(Kernel {
        node: node.to_string(),
        summary: format!("zero {bytes} bytes"),
        buffers: mem.buffers,
        body,
        rotators: vec![],
        macs: 0,
        compulsory_dram_bytes: bytes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_split_is_one_transfer_with_contiguous_runs() {
        // [S=4, H=2, D=8] -> [H, S, D]: perm (1, 0, 2).
        let shape = [4usize, 2, 8];
        let src = dense_strides(&shape);
        let out = [2usize, 4, 8];
        let spec = CopySpec {
            node: "t".into(),
            what: "transpose".into(),
            sizes: out.to_vec(),
            src: 0,
            src_strides: vec![src[1], src[0], src[2]],
            dst: 4096,
            dst_strides: dense_strides(&out),
            esize: 4,
        };
        let stmts = copy_stmts(&spec, &mut Vars::default());
        assert_eq!(stmts.len(), 1);
        let Stmt::Copy { run, dims, .. } = &stmts[0] else {
            panic!("not a copy")
        };
        assert_eq!(*run, Ext::Const(32));
        assert_eq!(dims.len(), 2);
        assert_eq!((dims[0].sstride, dims[0].dstride), (64, 32));
    }
}
