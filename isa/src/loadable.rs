//! The `.tnpu` loadable: a checked container around a protobuf message.
//!
//! File layout (little-endian):
//!
//! | offset | size | content                                  |
//! |--------|------|------------------------------------------|
//! | 0      | 4    | magic `TNPU`                             |
//! | 4      | 4    | ISA version                              |
//! | 8      | 8    | payload length in bytes                  |
//! | 16     | 4    | CRC-32 (IEEE) of the payload             |
//! | 20     | 4    | reserved, zero                           |
//! | 24     | n    | payload: the `Loadable` protobuf message |
//!
//! A file from another ISA version, a truncated or corrupt one is refused
//! before the payload is trusted; then the message itself is validated (code
//! decodes, segments and tensors lie inside DRAM, the source map is ordered).

use crate::fields::{DType, Field};
use crate::instr::{decode_program, DecodeError, Instr, WORD_BYTES};
use crate::target::Target;

/// Version of the instruction set and of this file format.
pub const ISA_VERSION: u32 = 2;

const MAGIC: &[u8; 4] = b"TNPU";
const HEADER_BYTES: usize = 24;

/// A compiled or assembled program with everything needed to run it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Loadable {
    /// ISA version the code is encoded for.
    #[prost(uint32, tag = "1")]
    pub isa_version: u32,
    /// Target the program was built for.
    #[prost(message, optional, tag = "2")]
    pub target: Option<Target>,
    /// Instruction words, 16 bytes each, little-endian.
    #[prost(bytes = "vec", tag = "3")]
    pub code: Vec<u8>,
    /// Initialized DRAM contents (weights, constants).
    #[prost(message, repeated, tag = "4")]
    pub segments: Vec<Segment>,
    /// Tensors the caller writes into DRAM before the run.
    #[prost(message, repeated, tag = "5")]
    pub inputs: Vec<TensorDesc>,
    /// Tensors the caller reads from DRAM after the run.
    #[prost(message, repeated, tag = "6")]
    pub outputs: Vec<TensorDesc>,
    /// Instruction ranges and the ONNX nodes they implement.
    #[prost(message, repeated, tag = "7")]
    pub source_map: Vec<SourceRange>,
    /// The ONNX nodes of the compiled model that a source range names in
    /// its `sources`, with their op types (for profiles by op type).
    #[prost(message, repeated, tag = "8")]
    pub onnx_nodes: Vec<OnnxNode>,
    /// Every tensor the program computes into DRAM (kernel outputs,
    /// graph outputs included), for dumps and per-tensor comparison.
    #[prost(message, repeated, tag = "9")]
    pub tensors: Vec<DebugTensor>,
}

/// An ONNX node of the compiled model.
#[derive(Clone, PartialEq, prost::Message)]
pub struct OnnxNode {
    /// Node name (its first output's name when the model left it empty).
    #[prost(string, tag = "1")]
    pub name: String,
    /// ONNX op type (`MatMul`, `Softmax`, ...).
    #[prost(string, tag = "2")]
    pub op_type: String,
}

/// A tensor the program writes into DRAM, and from when its value is final.
///
/// Its bytes hold the value from the moment the last instruction before
/// `ready_pc` that writes them has run until the first instruction at or
/// after `ready_pc` that touches them (a reader, or a later kernel reusing
/// the memory). In a well-synchronized program that first touch is ordered
/// after every write, so a debugger that snapshots the bytes just before it
/// (or at the end of the run) reads the final value.
#[derive(Clone, PartialEq, prost::Message)]
pub struct DebugTensor {
    /// Where it lies; the name is the compiler's (Graph IR) value name.
    #[prost(message, optional, tag = "1")]
    pub desc: Option<TensorDesc>,
    /// The ONNX value it holds (empty for a value the compiler made).
    #[prost(string, tag = "2")]
    pub value: String,
    /// One past the last instruction of the kernels that compute it.
    #[prost(uint32, tag = "3")]
    pub ready_pc: u32,
}

impl DebugTensor {
    /// The tensor's location (validated on load).
    pub fn desc(&self) -> TensorDesc {
        self.desc.clone().unwrap_or_default()
    }

    /// The ONNX value name, else the compiler's name.
    pub fn display_name(&self) -> &str {
        match (&self.value, &self.desc) {
            (v, _) if !v.is_empty() => v,
            (_, Some(d)) => &d.name,
            _ => "",
        }
    }
}

/// Initialized DRAM bytes.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Segment {
    /// What the bytes are (e.g. the initializer name).
    #[prost(string, tag = "1")]
    pub name: String,
    /// DRAM byte address of the first byte.
    #[prost(uint64, tag = "2")]
    pub dram_addr: u64,
    /// The bytes.
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
}

/// A tensor in DRAM: dense, row-major, little-endian.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TensorDesc {
    /// Name (the ONNX graph input or output name).
    #[prost(string, tag = "1")]
    pub name: String,
    /// Element type, encoded as the `DType` field code.
    #[prost(uint32, tag = "2")]
    pub dtype: u32,
    /// Dimensions, outermost first.
    #[prost(uint64, repeated, tag = "3")]
    pub shape: Vec<u64>,
    /// DRAM byte address of the first element.
    #[prost(uint64, tag = "4")]
    pub dram_addr: u64,
}

impl TensorDesc {
    /// A descriptor for a tensor of `dtype` and `shape` at `dram_addr`.
    pub fn new(name: &str, dtype: DType, shape: &[u64], dram_addr: u64) -> TensorDesc {
        TensorDesc {
            name: name.to_string(),
            dtype: dtype.to_bits() as u32,
            shape: shape.to_vec(),
            dram_addr,
        }
    }

    /// The element type (validated on load).
    pub fn dtype(&self) -> DType {
        DType::from_bits(u128::from(self.dtype)).unwrap_or(DType::U8)
    }

    /// Number of elements (saturating).
    pub fn elements(&self) -> u64 {
        self.shape.iter().fold(1u64, |n, d| n.saturating_mul(*d))
    }

    /// Size in bytes (saturating).
    pub fn bytes(&self) -> u64 {
        self.elements().saturating_mul(self.dtype().size())
    }
}

/// Instructions `[start, end)` implement the ONNX node `node`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct SourceRange {
    /// First instruction index.
    #[prost(uint32, tag = "1")]
    pub start: u32,
    /// One past the last instruction index.
    #[prost(uint32, tag = "2")]
    pub end: u32,
    /// ONNX node name (or a `{node}.{part}` name of an expansion).
    #[prost(string, tag = "3")]
    pub node: String,
    /// Multiply-accumulates the range performs (0 if unknown).
    #[prost(uint64, tag = "4")]
    pub macs: u64,
    /// The compiler's lower bound on the range's cycles on this target
    /// (larger of MXU-bound and DRAM-bound time; 0 if unknown).
    #[prost(uint64, tag = "5")]
    pub roofline_cycles: u64,
    /// Every ONNX node whose computation the range performs (the ops fused
    /// into its kernel), by name, in model order; empty if unknown.
    #[prost(string, repeated, tag = "6")]
    pub sources: Vec<String>,
}

impl SourceRange {
    /// A range with no cost annotations.
    pub fn new(start: u32, end: u32, node: &str) -> SourceRange {
        SourceRange {
            start,
            end,
            node: node.to_string(),
            ..Default::default()
        }
    }
}

/// Why a loadable is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LoadableError {
    /// The file does not start with `TNPU`.
    #[error("byte offset 0: not a Tessera loadable (bad magic, expected `TNPU`)")]
    BadMagic,
    /// The file is shorter than its header says.
    #[error("byte offset {offset}: truncated loadable (header says {expected} bytes, file has {actual})")]
    Truncated {
        /// Where the data ends.
        offset: u64,
        /// Expected total size.
        expected: u64,
        /// Actual size.
        actual: u64,
    },
    /// The payload checksum does not match.
    #[error("byte offset {HEADER_BYTES}: corrupt loadable (payload checksum mismatch)")]
    Checksum,
    /// The file is for another ISA version.
    #[error("byte offset 4: loadable is for ISA version {found}, this tool implements version {expected}")]
    Version {
        /// Version in the file.
        found: u32,
        /// Version of this tool.
        expected: u32,
    },
    /// The payload is not a valid message.
    #[error("byte offset {HEADER_BYTES}: corrupt loadable payload: {0}")]
    Payload(String),
    /// The message is well-formed but inconsistent.
    #[error("invalid loadable: {0}")]
    Invalid(String),
    /// The code does not decode (offsets count from the start of the code
    /// section, not of the file). The message includes the decode error, so
    /// it is not also a `source()` (printers of error chains would repeat it).
    #[error("invalid code section: {0}")]
    Code(DecodeError),
}

impl Loadable {
    /// A loadable with the current ISA version.
    pub fn new(target: Target, code: &[Instr]) -> Loadable {
        Loadable {
            isa_version: ISA_VERSION,
            target: Some(target),
            code: crate::instr::encode_program(code),
            ..Default::default()
        }
    }

    /// The file bytes: header and payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        // One allocation: the payload is encoded in place after the header.
        let len = prost::Message::encoded_len(self);
        let mut out = Vec::with_capacity(HEADER_BYTES + len);
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.isa_version.to_le_bytes());
        out.extend_from_slice(&(len as u64).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        if prost::Message::encode(self, &mut out).is_err() {
            // Capacity was reserved for exactly encoded_len bytes.
            unreachable!("encoding into a vector with reserved capacity cannot fail");
        }
        let crc = crc32(&out[HEADER_BYTES..]);
        out[16..20].copy_from_slice(&crc.to_le_bytes());
        out
    }

    /// Reads and validates a loadable from file bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Loadable, LoadableError> {
        if bytes.len() < 4 || &bytes[..4] != MAGIC {
            return Err(LoadableError::BadMagic);
        }
        if bytes.len() < HEADER_BYTES {
            return Err(LoadableError::Truncated {
                offset: bytes.len() as u64,
                expected: HEADER_BYTES as u64,
                actual: bytes.len() as u64,
            });
        }
        let word = |at: usize| {
            u32::from_le_bytes([bytes[at], bytes[at + 1], bytes[at + 2], bytes[at + 3]])
        };
        let version = word(4);
        if version != ISA_VERSION {
            return Err(LoadableError::Version {
                found: version,
                expected: ISA_VERSION,
            });
        }
        let mut len_bytes = [0u8; 8];
        len_bytes.copy_from_slice(&bytes[8..16]);
        let payload_len = u64::from_le_bytes(len_bytes);
        let expected = (HEADER_BYTES as u64).saturating_add(payload_len);
        if (bytes.len() as u64) < expected {
            return Err(LoadableError::Truncated {
                offset: bytes.len() as u64,
                expected,
                actual: bytes.len() as u64,
            });
        }
        if (bytes.len() as u64) > expected {
            return Err(LoadableError::Invalid(format!(
                "{} trailing bytes after the payload at byte offset {expected}",
                bytes.len() as u64 - expected
            )));
        }
        if word(20) != 0 {
            return Err(LoadableError::Invalid(
                "byte offset 20: reserved header word is not zero".into(),
            ));
        }
        let payload = &bytes[HEADER_BYTES..];
        if crc32(payload) != word(16) {
            return Err(LoadableError::Checksum);
        }
        let loadable: Loadable =
            prost::Message::decode(payload).map_err(|e| LoadableError::Payload(e.to_string()))?;
        if loadable.isa_version != version {
            return Err(LoadableError::Invalid(format!(
                "header says ISA version {version}, payload says {}",
                loadable.isa_version
            )));
        }
        loadable.validate()?;
        Ok(loadable)
    }

    /// The target (validated on load).
    pub fn target(&self) -> Target {
        self.target.clone().unwrap_or_default()
    }

    /// The decoded instructions.
    pub fn instructions(&self) -> Result<Vec<Instr>, DecodeError> {
        decode_program(&self.code)
    }

    /// Checks internal consistency: target, code, memory ranges, source map.
    pub fn validate(&self) -> Result<(), LoadableError> {
        let invalid = |m: String| Err(LoadableError::Invalid(m));
        let Some(target) = &self.target else {
            return invalid("no target recorded".into());
        };
        target
            .validate()
            .map_err(|e| LoadableError::Invalid(e.to_string()))?;
        let code = decode_program(&self.code).map_err(LoadableError::Code)?;
        let dram = target.dram_bytes;
        for seg in &self.segments {
            let end = seg.dram_addr.checked_add(seg.data.len() as u64);
            if end.is_none_or(|e| e > dram) {
                return invalid(format!(
                    "segment `{}` at {:#x} ({} bytes) lies outside DRAM ({dram} bytes)",
                    seg.name,
                    seg.dram_addr,
                    seg.data.len()
                ));
            }
        }
        for (kind, list) in [("input", &self.inputs), ("output", &self.outputs)] {
            // Callers find tensors by name, so a second one of the same
            // name could never be written or read.
            let mut seen = std::collections::HashSet::new();
            for t in list {
                if !seen.insert(t.name.as_str()) {
                    return invalid(format!("two {kind}s are named `{}`", t.name));
                }
                check_tensor(kind, t, dram)?;
            }
        }
        for t in &self.tensors {
            let Some(desc) = &t.desc else {
                return invalid(format!("debug tensor `{}` has no location", t.value));
            };
            check_tensor("debug tensor", desc, dram)?;
            if t.ready_pc as usize > code.len() {
                return invalid(format!(
                    "debug tensor `{}` is ready at instruction {}, past the code ({} instructions)",
                    desc.name,
                    t.ready_pc,
                    code.len()
                ));
            }
        }
        let onnx: std::collections::HashSet<&str> =
            self.onnx_nodes.iter().map(|n| n.name.as_str()).collect();
        if let Some((range, source)) = self
            .source_map
            .iter()
            .find_map(|r| Some((r, r.sources.iter().find(|s| !onnx.contains(s.as_str()))?)))
        {
            return invalid(format!(
                "source map range `{}` names ONNX node `{source}`, which the loadable does not list",
                range.node
            ));
        }
        let mut last_end = 0;
        for range in &self.source_map {
            if range.start < last_end || range.end < range.start || range.end as usize > code.len()
            {
                return invalid(format!(
                    "source map range {}..{} (`{}`) is out of order or outside the code ({} instructions)",
                    range.start,
                    range.end,
                    range.node,
                    code.len()
                ));
            }
            last_end = range.end;
        }
        Ok(())
    }

    /// Number of instructions.
    pub fn code_len(&self) -> usize {
        self.code.len() / WORD_BYTES
    }

    /// The distinct op types of `sources` (ONNX node names, as a range
    /// lists them) in order, joined by ` + ` (`MatMul + Add + Gelu`); `?`
    /// for a node `onnx_nodes` does not list.
    pub fn onnx_ops(&self, sources: &[String]) -> String {
        let mut ops: Vec<&str> = Vec::new();
        for source in sources {
            let op = self
                .onnx_nodes
                .iter()
                .find(|n| &n.name == source)
                .map_or("?", |n| n.op_type.as_str());
            if !ops.contains(&op) {
                ops.push(op);
            }
        }
        ops.join(" + ")
    }

    /// The source-map node of instruction `pc`, if any.
    pub fn node_of(&self, pc: u32) -> Option<&str> {
        let i = self.source_map.partition_point(|r| r.end <= pc);
        self.source_map
            .get(i)
            .filter(|r| r.start <= pc && pc < r.end)
            .map(|r| r.node.as_str())
    }
}

/// Checks a tensor's dtype code and that it lies inside DRAM.
fn check_tensor(kind: &str, t: &TensorDesc, dram: u64) -> Result<(), LoadableError> {
    if DType::from_bits(u128::from(t.dtype)).is_err() {
        return Err(LoadableError::Invalid(format!(
            "{kind} `{}` has unknown dtype code {}",
            t.name, t.dtype
        )));
    }
    let bytes = t
        .shape
        .iter()
        .try_fold(t.dtype().size(), |n, d| n.checked_mul(*d));
    let end = bytes.and_then(|b| t.dram_addr.checked_add(b));
    if end.is_none_or(|e| e > dram) {
        return Err(LoadableError::Invalid(format!(
            "{kind} `{}` at {:#x} with shape {:?} lies outside DRAM",
            t.name, t.dram_addr, t.shape
        )));
    }
    Ok(())
}

/// CRC-32 (IEEE 802.3, reflected, as zlib computes it).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::Reg;

    fn sample() -> Loadable {
        let code = [
            Instr::Li {
                rd: Reg(1),
                imm: crate::fields::Imm64(5),
            },
            Instr::Halt {},
        ];
        let mut l = Loadable::new(Target::tiny(), &code);
        l.inputs.push(TensorDesc::new("x", DType::F32, &[2, 3], 0));
        l.source_map.push(SourceRange::new(0, 1, "n0"));
        l
    }

    #[test]
    fn crc_matches_zlib() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn round_trips_through_bytes() {
        let l = sample();
        assert_eq!(Loadable::from_bytes(&l.to_bytes()), Ok(l));
    }

    #[test]
    fn truncation_corruption_and_versions_are_refused() {
        let bytes = sample().to_bytes();
        let err = Loadable::from_bytes(&bytes[..bytes.len() - 3]).expect_err("truncated");
        assert!(matches!(err, LoadableError::Truncated { .. }), "{err}");
        let mut bad = bytes.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x55;
        assert_eq!(Loadable::from_bytes(&bad), Err(LoadableError::Checksum));
        let mut other = bytes.clone();
        other[4] = 9;
        assert!(matches!(
            Loadable::from_bytes(&other),
            Err(LoadableError::Version { found: 9, .. })
        ));
        assert_eq!(Loadable::from_bytes(b"hello"), Err(LoadableError::BadMagic));
    }

    #[test]
    fn duplicate_tensor_names_are_refused() {
        let mut l = sample();
        l.inputs.push(TensorDesc::new("x", DType::F32, &[1], 64));
        let err = l.validate().expect_err("two inputs x").to_string();
        assert_eq!(err, "invalid loadable: two inputs are named `x`");
        assert!(Loadable::from_bytes(&l.to_bytes()).is_err());

        let mut l = sample();
        l.outputs.push(TensorDesc::new("y", DType::F32, &[1], 64));
        l.outputs.push(TensorDesc::new("z", DType::F32, &[1], 128));
        l.validate().expect("distinct names");
        l.outputs.push(TensorDesc::new("y", DType::F32, &[2], 256));
        let err = l.validate().expect_err("two outputs y").to_string();
        assert_eq!(err, "invalid loadable: two outputs are named `y`");

        // An input and an output may share a name (a graph passing its
        // input through), each list being looked up on its own.
        let mut l = sample();
        l.outputs
            .push(TensorDesc::new("x", DType::F32, &[2, 3], 64));
        l.validate().expect("input and output both named x");
    }

    #[test]
    fn decode_errors_name_offsets_in_the_code_section() {
        let mut l = sample();
        // Second word (code bytes 16..32): an unassigned opcode.
        l.code[16] = 0xff;
        let bytes = l.to_bytes();
        let err = Loadable::from_bytes(&bytes).expect_err("bad opcode");
        assert_eq!(
            err,
            LoadableError::Code(DecodeError::UnknownOpcode {
                offset: 16,
                opcode: 0xff
            })
        );
        assert_eq!(
            err.to_string(),
            "invalid code section: byte offset 16: unknown opcode 0xff"
        );
        // In the file the word sits after the header and the payload's
        // leading fields, so the file offset would be a different number.
        let in_file = bytes
            .windows(16)
            .position(|w| w == &l.code[16..32])
            .expect("word in file");
        assert!(in_file > HEADER_BYTES + 16, "{in_file}");
    }

    #[test]
    fn node_lookup_uses_the_source_map() {
        let l = sample();
        assert_eq!(l.node_of(0), Some("n0"));
        assert_eq!(l.node_of(1), None);
    }
}
