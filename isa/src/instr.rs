//! Types around the generated `Instr`: engines, instruction metadata, decode
//! errors, operand splitting for the assembler, and whole-program encoding.

use std::fmt;

use crate::fields::WriteCtx;
pub use crate::table::{Instr, INSTRUCTIONS};

/// Size of one instruction word in bytes.
pub const WORD_BYTES: usize = 16;

/// The units of the NPU. The scalar unit executes its own instructions and
/// dispatches the others, in program order, to the queue of their engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Engine {
    /// Scalar unit.
    Su,
    /// DMA engine.
    Dma,
    /// Matrix engine (systolic array).
    Mxu,
    /// Vector engine.
    Vpu,
}

impl Engine {
    /// The three engines with queues, in a fixed order.
    pub const QUEUED: [Engine; 3] = [Engine::Dma, Engine::Mxu, Engine::Vpu];

    /// Lower-case name.
    pub fn name(self) -> &'static str {
        match self {
            Engine::Su => "su",
            Engine::Dma => "dma",
            Engine::Mxu => "mxu",
            Engine::Vpu => "vpu",
        }
    }
}

impl fmt::Display for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Description of one operand field in the table.
#[derive(Debug)]
pub struct FieldInfo {
    /// Operand name (also the keyword for keyword operands).
    pub name: &'static str,
    /// Field type name.
    pub ty: &'static str,
    /// Width in bits.
    pub bits: u32,
    /// Written as `name=value` rather than positionally.
    pub keyword: bool,
    /// Accepted assembly syntax.
    pub syntax: &'static str,
}

/// Description of one instruction in the table.
#[derive(Debug)]
pub struct InstrInfo {
    /// Opcode byte.
    pub opcode: u8,
    /// Assembly mnemonic.
    pub mnemonic: &'static str,
    /// Executing unit.
    pub engine: Engine,
    /// One-line semantics.
    pub doc: &'static str,
    /// Operand fields in encoding order.
    pub fields: &'static [FieldInfo],
}

impl InstrInfo {
    /// Looks an instruction up by mnemonic.
    pub fn by_mnemonic(mnemonic: &str) -> Option<&'static InstrInfo> {
        INSTRUCTIONS.iter().find(|i| i.mnemonic == mnemonic)
    }

    /// Bit offset of each field, after the opcode byte.
    pub fn field_offsets(&self) -> Vec<(u32, &'static FieldInfo)> {
        let mut shift = 8;
        self.fields
            .iter()
            .map(|f| {
                let at = shift;
                shift += f.bits;
                (at, f)
            })
            .collect()
    }

    /// The instruction with every field at its smallest valid encoding
    /// (0 where 0 means something): one concrete instance per table
    /// entry, for tests that must cover every instruction. An error only if
    /// some field has no valid value among its first 256 encodings.
    pub fn smallest(&self) -> Result<Instr, DecodeError> {
        let mut word = u128::from(self.opcode);
        for (at, field) in self.field_offsets() {
            let chosen = (0..=u128::from(u8::MAX)).find(|&v| {
                let w = word | (v << at);
                !matches!(
                    Instr::decode(w, 0),
                    Err(DecodeError::BadField { field: f, .. }) if f == field.name
                )
            });
            word |= chosen.unwrap_or(0) << at;
        }
        Instr::decode(word, 0)
    }
}

/// Why a word or byte stream is not a valid instruction. Offsets count
/// bytes from the start of the code section (instruction k is at 16·k), not
/// from the start of a `.tnpu` file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The opcode byte is not in the table.
    #[error("byte offset {offset}: unknown opcode {opcode:#04x}")]
    UnknownOpcode {
        /// Byte offset of the word in the code section.
        offset: u64,
        /// The opcode byte.
        opcode: u8,
    },
    /// A field holds a value with no meaning.
    #[error("byte offset {offset}: `{mnemonic}` field `{field}`: {reason}")]
    BadField {
        /// Byte offset of the word in the code section.
        offset: u64,
        /// Instruction mnemonic.
        mnemonic: &'static str,
        /// Field name.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// Bits above the last field are set.
    #[error("byte offset {offset}: `{mnemonic}` has reserved bits set (bit {first_bit} and up must be zero)")]
    ReservedBits {
        /// Byte offset of the word in the code section.
        offset: u64,
        /// Instruction mnemonic.
        mnemonic: &'static str,
        /// First reserved bit.
        first_bit: u32,
    },
    /// The code is not a whole number of words.
    #[error("byte offset {offset}: code ends inside an instruction word ({len} bytes is not a multiple of 16)")]
    Truncated {
        /// Byte offset of the partial word in the code section.
        offset: u64,
        /// Total code length.
        len: u64,
    },
}

impl fmt::Display for Instr {
    /// The instruction alone, branch targets written relative (`.+N`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut out = String::new();
        self.write_asm(&mut out, &WriteCtx { pc: 0, label: None });
        f.write_str(&out)
    }
}

impl Instr {
    /// The instruction's text at `pc`, branch targets as absolute labels
    /// `L<pc>`.
    pub fn to_asm_at(&self, pc: u32) -> String {
        let mut out = String::new();
        let label = |dest: u32| format!("L{dest}");
        self.write_asm(
            &mut out,
            &WriteCtx {
                pc,
                label: Some(&label),
            },
        );
        out
    }

    /// The branch destination, if this is a branch.
    pub fn branch_target(&self, pc: u32) -> Option<u32> {
        let off = match self {
            Instr::Beq { target, .. }
            | Instr::Bne { target, .. }
            | Instr::Blt { target, .. }
            | Instr::Bge { target, .. }
            | Instr::Bltu { target, .. }
            | Instr::Bgeu { target, .. }
            | Instr::Loop { target, .. }
            | Instr::Jmp { target } => target.0,
            _ => return None,
        };
        u32::try_from(i64::from(pc) + i64::from(off)).ok()
    }
}

/// Encodes a program into little-endian bytes, 16 per instruction.
pub fn encode_program(code: &[Instr]) -> Vec<u8> {
    code.iter().flat_map(|i| i.encode().to_le_bytes()).collect()
}

/// Decodes little-endian code bytes; errors name the byte offset.
pub fn decode_program(bytes: &[u8]) -> Result<Vec<Instr>, DecodeError> {
    if bytes.len() % WORD_BYTES != 0 {
        return Err(DecodeError::Truncated {
            offset: (bytes.len() - bytes.len() % WORD_BYTES) as u64,
            len: bytes.len() as u64,
        });
    }
    bytes
        .chunks_exact(WORD_BYTES)
        .enumerate()
        .map(|(i, chunk)| {
            let mut word = [0u8; WORD_BYTES];
            word.copy_from_slice(chunk);
            Instr::decode(u128::from_le_bytes(word), (i * WORD_BYTES) as u64)
        })
        .collect()
}

/// One operand as written in assembly: `value` or `key=value`.
#[derive(Debug, Clone, Copy)]
pub struct Operand<'a> {
    /// The keyword, if written as `key=value`.
    pub key: Option<&'a str>,
    /// The value text, trimmed.
    pub value: &'a str,
    /// 1-based column of the value in its line.
    pub value_column: usize,
}

/// An operand-level assembly error; `column` 0 means the whole instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OperandError {
    /// 1-based column, or 0.
    pub column: usize,
    /// What was expected.
    pub message: String,
}

/// Checks operand counts and keywords against the table and splits them
/// into positional and keyword operands.
pub(crate) fn split_operands<'a>(
    mnemonic: &str,
    positional: &[&str],
    keywords: &[&str],
    operands: &[Operand<'a>],
) -> Result<(Vec<Operand<'a>>, Vec<Operand<'a>>), OperandError> {
    let usage = || {
        let mut parts: Vec<String> = positional.iter().map(|p| p.to_string()).collect();
        parts.extend(keywords.iter().map(|k| format!("{k}=…")));
        if parts.is_empty() {
            format!("`{mnemonic}` takes no operands")
        } else {
            format!("`{mnemonic}` takes: {}", parts.join(", "))
        }
    };
    let pos: Vec<Operand> = operands
        .iter()
        .filter(|o| o.key.is_none())
        .copied()
        .collect();
    let kw: Vec<Operand> = operands
        .iter()
        .filter(|o| o.key.is_some())
        .copied()
        .collect();
    if let Some(first_kw) = operands.iter().position(|o| o.key.is_some()) {
        if let Some(late) = operands[first_kw..].iter().find(|o| o.key.is_none()) {
            return Err(OperandError {
                column: late.value_column,
                message: format!("positional operand after a keyword operand; {}", usage()),
            });
        }
    }
    if pos.len() != positional.len() {
        return Err(OperandError {
            column: 0,
            message: format!(
                "wrong operand count: {} positional operand(s), expected {}; {}",
                pos.len(),
                positional.len(),
                usage()
            ),
        });
    }
    for (i, op) in kw.iter().enumerate() {
        let key = op.key.unwrap_or_default();
        if !keywords.contains(&key) {
            return Err(OperandError {
                column: op.value_column,
                message: format!("unknown operand `{key}=`; {}", usage()),
            });
        }
        if kw[..i].iter().any(|o| o.key == op.key) {
            return Err(OperandError {
                column: op.value_column,
                message: format!("operand `{key}=` given twice"),
            });
        }
    }
    Ok((pos, kw))
}

/// The table mnemonic closest to `text`, if one is close enough to suggest.
pub(crate) fn suggest_mnemonic(text: &str) -> Option<&'static str> {
    INSTRUCTIONS
        .iter()
        .map(|i| (edit_distance(text, i.mnemonic), i.mnemonic))
        .filter(|(d, m)| *d <= 2.max(m.len() / 4))
        .min()
        .map(|(_, m)| m)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

impl InstrInfo {
    /// The encoding line SPEC.md shows for this instruction, derived from
    /// the table: `opcode 0xNN | name:Type lo..hi | … | reserved lo..128`.
    pub fn encoding_line(&self) -> String {
        let mut parts = vec![format!("opcode {:#04x} 0..8", self.opcode)];
        let mut end = 8;
        for (at, f) in self.field_offsets() {
            parts.push(format!("{}:{} {}..{}", f.name, f.ty, at, at + f.bits));
            end = at + f.bits;
        }
        if end < 128 {
            parts.push(format!("reserved {end}..128"));
        }
        parts.join(" | ")
    }
}
