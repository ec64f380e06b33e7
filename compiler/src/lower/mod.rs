//! Lowering: Graph IR → Kernel IR.
//!
//! Every NPU-native op becomes one kernel built by a template whose tile
//! sizes fit the target (`gemm`, `elementwise`, `rowwise`, `movement`, …);
//! `Reshape` costs nothing (its result aliases its operand). The DRAM plan
//! (`plan`) places constants, inputs, outputs and a liveness-reused arena
//! for intermediates. All kernels read and write DRAM; on-chip buffers live
//! only inside one kernel.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};

use tessera_isa::{MxuType, Segment, Target, TensorDesc};

use crate::graph::{Graph, NodeId, Op};
use crate::kernel::{DramKind, DramTensor, Kernel, KernelProgram};
use crate::precision::Precision;
use crate::runtime_io::isa_dtype;
use crate::tensor::{DType, Tensor};

pub mod alloc;
pub mod attention;
pub mod elementwise;
pub mod gather;
pub mod gemm;
pub mod ksplit;
pub mod movement;
pub(crate) mod ops;
pub mod pipeline;
pub mod plan;
pub mod quantize;
pub mod rowwise;
pub mod template;
pub mod views;

use plan::{align, last_uses, Arena};
use views::Views;

/// Why a graph cannot be lowered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LowerError {
    /// A kernel's buffers do not fit on chip.
    #[error("does not fit on chip: {0}")]
    DoesNotFit(String),
    /// The op or form is not supported by any kernel.
    #[error("node `{node}`: {message}")]
    Unsupported {
        /// Node name.
        node: String,
        /// What is missing.
        message: String,
    },
    /// The compile's options do not fit the graph or target (a
    /// `--keep-high` naming no node, FP8 on an E8M0 target).
    #[error("{0}")]
    Options(String),
    /// Several nodes cannot be lowered (all are listed).
    #[error("{} nodes cannot run on the NPU: {}", .0.len(), .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    Many(Vec<LowerError>),
    /// The program does not fit the target's DRAM.
    #[error("the program needs {needed} bytes of DRAM, the target has {available}")]
    DramFull {
        /// Bytes needed.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
}

/// A lowered program: kernels plus everything the loadable records.
#[derive(Debug, Clone)]
pub struct Lowered {
    /// Kernels and the DRAM plan.
    pub program: KernelProgram,
    /// Constant DRAM contents.
    pub segments: Vec<Segment>,
    /// Graph inputs.
    pub inputs: Vec<TensorDesc>,
    /// Graph outputs.
    pub outputs: Vec<TensorDesc>,
    /// Every value the kernels compute into DRAM, in execution order.
    pub tensors: Vec<ComputedTensor>,
    /// The Graph IR node each kernel of `program` was lowered from (the
    /// copied node for a copy into an output), one per kernel.
    pub kernel_nodes: Vec<NodeId>,
}

/// A value the program computes into DRAM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComputedTensor {
    /// The Graph IR node whose value it is.
    pub node: NodeId,
    /// The node whose kernels write it (`node` itself, or an attention
    /// that writes its transposing user's layout directly).
    pub producer: NodeId,
    /// DRAM byte address (dense, row-major, the node's type).
    pub addr: u64,
    /// The kernels (indices into the program's) that compute it.
    pub kernels: std::ops::Range<usize>,
}

/// What a kernel template may ask of the lowering.
pub struct Ctx<'g> {
    /// The graph.
    pub graph: &'g Graph,
    /// The target.
    pub target: &'g Target,
    /// Precision.
    pub precision: Precision,
    addr: HashMap<NodeId, u64>,
    weights: HashMap<NodeId, u64>,
    /// The GEMMs run in 8 bits, with their quantized weights' and scales'
    /// DRAM addresses.
    weights_8bit: HashMap<NodeId, (u64, u64)>,
    arena: RefCell<Arena>,
    scratch: RefCell<Vec<(u64, u64)>>,
    /// Nodes a template asked the address of but that have no storage (a
    /// lowering bug, reported once the node's kernels are built).
    unplaced: RefCell<Vec<NodeId>>,
    views: Views,
}

impl Ctx<'_> {
    /// DRAM scratch space that lives until the current node's kernels end.
    pub fn scratch(&self, bytes: u64) -> u64 {
        let at = self.arena.borrow_mut().alloc(bytes);
        self.scratch.borrow_mut().push((at, bytes));
        at
    }

    /// DRAM address of a node's storage (for absorbed layout ops, of the
    /// tensor they view: use [`Ctx::view4`] for those).
    pub fn addr(&self, id: NodeId) -> u64 {
        let root = self.views.root(self.graph, id);
        self.placed(root)
    }

    /// DRAM address of a node with storage; a node without is recorded as a
    /// lowering bug (see [`Ctx::take_unplaced`]) and gets address 0.
    fn placed(&self, id: NodeId) -> u64 {
        match self.addr.get(&id) {
            Some(&at) => at,
            None => {
                self.unplaced.borrow_mut().push(id);
                0
            }
        }
    }

    /// The lowering bug [`Ctx::placed`] recorded for `node`, if any.
    fn take_unplaced(&self, node: NodeId) -> Option<LowerError> {
        let missing = std::mem::take(&mut *self.unplaced.borrow_mut());
        let first = *missing.first()?;
        Some(LowerError::Unsupported {
            node: self.graph.node(node).name.clone(),
            message: format!(
                "internal: `{}` has no DRAM storage when the kernels are built",
                self.graph.node(first).name
            ),
        })
    }

    /// A rank-4 f32 operand as a strided view (through absorbed layout ops).
    pub fn view4(&self, id: NodeId) -> attention::Tensor4 {
        let shape = &self.graph.node(id).ty.shape;
        let dense = || {
            attention::Tensor4::dense(
                self.addr(id),
                [0, 1, 2, 3].map(|d| shape.get(d).copied().unwrap_or(1) as u64),
            )
        };
        match self.views.view(self.graph, id) {
            Some(v) if v.strides.len() == 4 => attention::Tensor4 {
                addr: self.placed(v.root).wrapping_add((v.offset * 4) as u64),
                strides: [v.strides[0], v.strides[1], v.strides[2], v.strides[3]],
            },
            _ => dense(),
        }
    }

    /// Where a rank-4 producer writes: into its transposing user's storage
    /// when that transpose was absorbed, else densely into its own.
    pub fn out_view4(&self, id: NodeId) -> attention::Tensor4 {
        let shape = &self.graph.node(id).ty.shape;
        if let Some(&t) = self.views.produces_into.get(&id) {
            if let Op::Transpose { perm } = &self.graph.node(t).op {
                let tshape = &self.graph.node(t).ty.shape;
                let mut tstrides = vec![0i64; tshape.len()];
                let mut acc = 1i64;
                for d in (0..tshape.len()).rev() {
                    tstrides[d] = acc;
                    acc *= tshape[d] as i64;
                }
                let mut strides = [0i64; 4];
                for (i, &p) in perm.iter().enumerate() {
                    strides[p] = tstrides[i];
                }
                return attention::Tensor4 {
                    addr: self.addr(t),
                    strides,
                };
            }
        }
        attention::Tensor4::dense(
            self.addr(id),
            [0, 1, 2, 3].map(|d| shape.get(d).copied().unwrap_or(1) as u64),
        )
    }

    /// DRAM address of a constant converted to the MXU input type, if it
    /// was prepared (constant right operands of matmuls).
    pub fn weights(&self, id: NodeId) -> Option<u64> {
        self.weights.get(&self.views.root(self.graph, id)).copied()
    }

    /// For a GEMM an 8-bit precision runs in 8 bits: its MXU type and the
    /// DRAM addresses of its quantized weights and of their scales.
    pub fn weights_8bit(&self, gemm: NodeId) -> Option<(MxuType, u64, u64)> {
        let (data, scales) = *self.weights_8bit.get(&gemm)?;
        Some((self.precision.gemm_8bit()?, data, scales))
    }

    /// The constant value of a node, if it is one (through reshapes).
    pub fn constant(&self, id: NodeId) -> Option<&Tensor> {
        match &self.graph.node(self.views.root(self.graph, id)).op {
            Op::Constant(t) => Some(t),
            _ => None,
        }
    }
}

/// Whether operand `pos` of `op` is read by the MXU as weights (the right
/// operand of a matmul, GEMM or convolution; the table of a
/// `gather_matmul`, which the MXU streams as A rows).
fn is_weight_use(op: &Op, pos: usize) -> bool {
    (pos == 1 && matches!(op, Op::MatMul | Op::Gemm { .. } | Op::Conv(_)))
        || (pos == 0 && *op == Op::GatherMatMul)
}

/// Constants the MXU reads as weights, and constants read any other way
/// (which need their raw bytes in DRAM), in one pass over the graph.
fn constant_uses(graph: &Graph, views: &Views, order: &[NodeId]) -> (Vec<NodeId>, HashSet<NodeId>) {
    let mut weights = Vec::new();
    let mut raw = HashSet::new();
    let is_const = |id: NodeId| matches!(graph.node(id).op, Op::Constant(_));
    for &id in order {
        let op = &graph.node(id).op;
        if matches!(op, Op::Reshape { .. }) {
            // An alias: its users' reads are the constant's.
            continue;
        }
        for (pos, operand) in graph.operands(id).into_iter().enumerate() {
            let root = views.root(graph, operand);
            if !is_const(root) {
                continue;
            }
            if is_weight_use(op, pos) {
                if !weights.contains(&root) {
                    weights.push(root);
                }
            } else {
                raw.insert(root);
            }
        }
    }
    for (_, o) in graph.outputs() {
        raw.insert(views.root(graph, *o));
    }
    (weights, raw)
}

fn mxu_bytes(tensor: &Tensor, mxu: MxuType) -> Vec<u8> {
    let dtype = mxu.a_type();
    let size = dtype.size() as usize;
    let mut out = vec![0u8; tensor.numel() * size];
    let mut put = |i: usize, x: f32| {
        let slot = &mut out[i * size..(i + 1) * size];
        tessera_isa::numerics::convert(tessera_isa::DType::F32, &x.to_le_bytes(), dtype, slot);
    };
    match tensor.data() {
        crate::tensor::TensorData::F32(v) => v.iter().enumerate().for_each(|(i, &x)| put(i, x)),
        _ => (tensor.to_f32_vec().into_iter().enumerate()).for_each(|(i, x)| put(i, x)),
    }
    out
}

/// Lowers a graph for a target.
pub fn lower(graph: &Graph, target: &Target, precision: Precision) -> Result<Lowered, LowerError> {
    lower_keeping(graph, target, precision, &[])
}

/// [`lower`], keeping the GEMMs `keep_high` names (see
/// [`quantize::eight_bit_gemms`]) out of an 8-bit precision.
pub fn lower_keeping(
    graph: &Graph,
    target: &Target,
    precision: Precision,
    keep_high: &[String],
) -> Result<Lowered, LowerError> {
    let order = graph
        .canonical_order()
        .map_err(|e| LowerError::Unsupported {
            node: String::new(),
            message: e.to_string(),
        })?;
    // A tensor larger than DRAM cannot be placed: refused before any
    // kernel arithmetic, which then stays within a tensor's size.
    for &id in &order {
        let ty = &graph.node(id).ty;
        let bytes = crate::tensor::checked_numel(&ty.shape)
            .and_then(|n| n.checked_mul(ty.dtype.size()))
            .map_or(u64::MAX, |b| b as u64);
        if bytes > target.dram_bytes {
            return Err(LowerError::DramFull {
                needed: bytes,
                available: target.dram_bytes,
            });
        }
    }
    let views = Views::analyze(graph, &order);
    let mut dram = Vec::new();
    let mut segments = Vec::new();
    let mut addr: HashMap<NodeId, u64> = HashMap::new();
    let mut weights: HashMap<NodeId, u64> = HashMap::new();
    let mut next = 0u64;

    // Constants: raw values and MXU-ready weights; the 8-bit GEMMs' weights
    // quantized (and only those, when no float GEMM reads them).
    let mut eight_bit = quantize::eight_bit_gemms(graph, precision, keep_high, target)
        .map_err(LowerError::Options)?;
    let (weight_roots, raw_roots) = constant_uses(graph, &views, &order);
    // Weight root → the 8-bit GEMMs reading it, all in one layout (a GEMM
    // reading it transposed the other way stays high).
    let mut quantized: HashMap<NodeId, Vec<NodeId>> = HashMap::new();
    let trans = |id: NodeId| matches!(graph.node(id).op, Op::Gemm { trans_b: true, .. });
    for &id in &order {
        if eight_bit.contains(&id) {
            let root = views.root(graph, graph.operands(id)[1]);
            let readers = quantized.entry(root).or_default();
            if readers.first().is_some_and(|&g| trans(g) != trans(id)) {
                eight_bit.remove(&id);
            } else {
                readers.push(id);
            }
        }
    }
    let float_read = |root: NodeId| {
        order.iter().any(|&id| {
            !eight_bit.contains(&id)
                && graph.operands(id).into_iter().enumerate().any(|(pos, o)| {
                    is_weight_use(&graph.node(id).op, pos) && views.root(graph, o) == root
                })
        })
    };
    let mut weights_8bit: HashMap<NodeId, (u64, u64)> = HashMap::new();
    for &id in &order {
        let node = graph.node(id);
        let Op::Constant(tensor) = &node.op else {
            continue;
        };
        let mut place = |name: String, data: Vec<u8>| {
            let at = next;
            dram.push(DramTensor {
                name: name.clone(),
                addr: at,
                bytes: data.len() as u64,
                kind: DramKind::Constant,
            });
            next = align(at + data.len() as u64);
            segments.push(Segment {
                name,
                dram_addr: at,
                data,
            });
            at
        };
        if raw_roots.contains(&id) {
            addr.insert(id, place(node.name.clone(), tensor.data().to_le_bytes()));
        }
        if let (Some(gemms), Some(mxu)) = (quantized.get(&id), precision.gemm_8bit()) {
            // Every GEMM reading this weight has its shape and layout.
            let g = gemms[0];
            let Op::Gemm { trans_b, .. } = graph.node(g).op else {
                unreachable!("eight_bit_gemms chooses gemms");
            };
            let shape = &graph.node(graph.operands(g)[1]).ty.shape;
            let (k, n) = if trans_b {
                (shape[1], shape[0])
            } else {
                (shape[0], shape[1])
            };
            let q = quantize::quantize_weights(&tensor.to_f32_vec(), (k, n), trans_b, mxu, target);
            let scales: Vec<u8> = q.scales.iter().flat_map(|s| s.to_le_bytes()).collect();
            let data_at = place(format!("{}.{mxu}", node.name), q.data);
            let scales_at = place(format!("{}.{mxu}.scales", node.name), scales);
            for &g in gemms {
                weights_8bit.insert(g, (data_at, scales_at));
            }
        }
        if weight_roots.contains(&id) && (!quantized.contains_key(&id) || float_read(id)) {
            let name = format!("{}.{}", node.name, precision.mxu());
            weights.insert(id, place(name, mxu_bytes(tensor, precision.mxu())));
        }
    }

    // Inputs.
    let mut inputs = Vec::new();
    for &id in graph.inputs() {
        let node = graph.node(id);
        let bytes = node.ty.numel() as u64 * node.ty.dtype.size() as u64;
        addr.insert(id, next);
        let shape: Vec<u64> = node.ty.shape.iter().map(|&d| d as u64).collect();
        inputs.push(TensorDesc::new(
            &node.name,
            isa_dtype(node.ty.dtype),
            &shape,
            next,
        ));
        dram.push(DramTensor {
            name: node.name.clone(),
            addr: next,
            bytes,
            kind: DramKind::Input,
        });
        next = align(next + bytes);
    }

    // Outputs: each gets its own region; its producer writes there
    // directly unless it must be copied (an input, a constant, or a value
    // that is also another output).
    let mut outputs = Vec::new();
    let mut output_copies: Vec<(NodeId, u64)> = Vec::new();
    let mut owned: HashMap<NodeId, u64> = HashMap::new();
    for (name, id) in graph.outputs() {
        let node = graph.node(*id);
        let bytes = node.ty.numel() as u64 * node.ty.dtype.size() as u64;
        let root = views.root(graph, *id);
        let region = next;
        next = align(next + bytes);
        let shape: Vec<u64> = node.ty.shape.iter().map(|&d| d as u64).collect();
        outputs.push(TensorDesc::new(
            name,
            isa_dtype(node.ty.dtype),
            &shape,
            region,
        ));
        dram.push(DramTensor {
            name: name.clone(),
            addr: region,
            bytes,
            kind: DramKind::Output,
        });
        let computed = !matches!(graph.node(root).op, Op::Input | Op::Constant(_));
        if computed && !owned.contains_key(&root) {
            owned.insert(root, region);
            addr.insert(root, region);
        } else {
            output_copies.push((*id, region));
        }
    }

    // Intermediates: liveness-based reuse.
    let last = last_uses(graph, &views, &order);
    let mut ctx = Ctx {
        graph,
        target,
        precision,
        addr,
        weights,
        weights_8bit,
        arena: RefCell::new(Arena::new(next)),
        scratch: RefCell::new(Vec::new()),
        unplaced: RefCell::new(Vec::new()),
        views,
    };
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut tensors: Vec<ComputedTensor> = Vec::new();
    let mut kernel_nodes: Vec<NodeId> = Vec::new();
    let mut errors = Vec::new();
    let mut live: Vec<(NodeId, u64, u64)> = Vec::new();
    for (pos, &id) in order.iter().enumerate() {
        let node = graph.node(id);
        if matches!(node.op, Op::Input | Op::Constant(_) | Op::Reshape { .. })
            || ctx.views.virtuals.contains(&id)
        {
            continue;
        }
        // A transpose its producer writes directly: storage is already
        // allocated, nothing to run.
        if ctx.views.produces_into.values().any(|&t| t == id) {
            continue;
        }
        if let Some(&t) = ctx.views.produces_into.get(&id) {
            // Allocate the transpose's storage now; the producer writes it.
            if !ctx.addr.contains_key(&t) {
                let tn = graph.node(t);
                let bytes = tn.ty.numel() as u64 * tn.ty.dtype.size() as u64;
                let at = ctx.arena.borrow_mut().alloc(bytes);
                ctx.addr.insert(t, at);
                dram.push(DramTensor {
                    name: tn.name.clone(),
                    addr: at,
                    bytes,
                    kind: DramKind::Intermediate,
                });
                live.push((t, at, bytes));
            }
        }
        if node.ty.numel() == 0 {
            // An empty result needs no kernel (and no storage).
            ctx.addr.entry(id).or_insert(0);
            continue;
        }
        if !ctx.addr.contains_key(&id) && !ctx.views.produces_into.contains_key(&id) {
            let bytes = node.ty.numel() as u64 * node.ty.dtype.size() as u64;
            let at = ctx.arena.borrow_mut().alloc(bytes);
            ctx.addr.insert(id, at);
            dram.push(DramTensor {
                name: node.name.clone(),
                addr: at,
                bytes,
                kind: DramKind::Intermediate,
            });
            live.push((id, at, bytes));
        }
        match ops::lower_node(&ctx, id) {
            Ok(mut ks) if !ks.is_empty() => {
                let first = kernels.len();
                kernel_nodes.extend(std::iter::repeat_n(id, ks.len()));
                kernels.append(&mut ks);
                let value = ctx.views.produces_into.get(&id).copied().unwrap_or(id);
                if let Some(&addr) = ctx.addr.get(&value) {
                    tensors.push(ComputedTensor {
                        node: value,
                        producer: id,
                        addr,
                        kernels: first..kernels.len(),
                    });
                }
            }
            Ok(_) => {}
            Err(LowerError::Many(mut v)) => errors.append(&mut v),
            Err(e) => errors.push(e),
        }
        errors.extend(ctx.take_unplaced(id));
        // Free the node's scratch, then what is dead after this node.
        for (at, bytes) in ctx.scratch.borrow_mut().drain(..) {
            ctx.arena.borrow_mut().release(at, bytes);
        }
        live.retain(|&(n, at, bytes)| {
            let dead = match last.get(&n) {
                Some(&l) => l != usize::MAX && l <= pos,
                None => true,
            };
            if dead {
                ctx.arena.borrow_mut().release(at, bytes);
            }
            !dead
        });
    }
    for (id, region) in output_copies {
        match ops::copy_to(&ctx, id, region) {
            Ok(mut ks) => {
                kernel_nodes.extend(std::iter::repeat_n(id, ks.len()));
                kernels.append(&mut ks);
            }
            Err(e) => errors.push(e),
        }
        errors.extend(ctx.take_unplaced(id));
    }
    if !errors.is_empty() {
        return Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            LowerError::Many(errors)
        });
    }
    let peak = ctx.arena.borrow().peak;
    if peak > target.dram_bytes {
        return Err(LowerError::DramFull {
            needed: peak,
            available: target.dram_bytes,
        });
    }
    Ok(Lowered {
        program: KernelProgram {
            dram,
            kernels,
            dram_peak: peak,
        },
        segments,
        inputs,
        outputs,
        tensors,
        kernel_nodes,
    })
}

/// Byte size of an element type in DRAM.
pub fn dsize(dtype: DType) -> u64 {
    dtype.size() as u64
}
