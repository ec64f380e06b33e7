//! What an attention kernel computes: the operands' strided views in DRAM,
//! the optional mask, and the shape, with the figures kernel summaries and
//! the cost report use.

use tessera_isa::MxuType;

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
