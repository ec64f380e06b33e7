//! Operand field types of the instruction table.
//!
//! Every operand of every instruction is one of these types. Each knows its
//! bit width, how it encodes into and decodes from an instruction word, how it
//! is written and read in assembly, and how to draw a random valid value (for
//! the round-trip property tests). The instruction table in `table.rs` names
//! only these types; everything else is derived from them.

use std::fmt::Write as _;

/// Context the disassembler gives a field when writing it.
pub struct WriteCtx<'a> {
    /// Index of the instruction being written.
    pub pc: u32,
    /// Names a branch destination (an instruction index); `None` writes the
    /// relative form `.+N`.
    pub label: Option<&'a dyn Fn(u32) -> String>,
}

/// Context the assembler gives a field when parsing it.
pub struct ParseCtx<'a> {
    /// Index of the instruction being assembled.
    pub pc: u32,
    /// Resolves a label name to an instruction index.
    pub resolve: &'a dyn Fn(&str) -> Option<u32>,
}

/// One operand field: a fixed number of bits in the instruction word.
pub trait Field: Copy + Sized {
    /// Width of the field in the instruction word.
    const BITS: u32;
    /// Short description of the accepted assembly syntax, for error messages.
    const SYNTAX: &'static str;
    /// The field's bits (only the low `BITS` may be set).
    fn to_bits(self) -> u128;
    /// Reads the field from its bits; fails on a value with no meaning.
    fn from_bits(bits: u128) -> Result<Self, String>;
    /// Writes the operand in canonical assembly syntax.
    fn write_asm(&self, out: &mut String, ctx: &WriteCtx);
    /// Parses the operand from assembly text (already trimmed).
    fn parse_asm(text: &str, ctx: &ParseCtx) -> Result<Self, String>;
    /// A random valid value, from a stream of random words.
    fn random(next: &mut dyn FnMut() -> u64) -> Self;
    /// The value an omitted keyword operand of this type takes; `None` (the
    /// default) makes the operand required. The disassembler omits a
    /// keyword operand holding this value.
    fn omitted() -> Option<Self> {
        None
    }
    /// Whether this is the value an omitted operand takes.
    fn is_omitted(&self) -> bool {
        Self::omitted().is_some_and(|d| d.to_bits() == self.to_bits())
    }
}

/// Mask of the low `bits` bits.
pub(crate) const fn mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// Parses an integer literal: decimal or `0x` hex, optional leading `-`,
/// `_` separators allowed.
pub fn parse_int(text: &str) -> Result<i128, String> {
    let t = text.trim();
    let (neg, body) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t.strip_prefix('+').unwrap_or(t)),
    };
    let body = body.replace('_', "");
    let value = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u128::from_str_radix(hex, 16)
    } else if !body.is_empty() && body.bytes().all(|b| b.is_ascii_digit()) {
        body.parse::<u128>()
    } else {
        return Err(format!("expected an integer, found `{t}`"));
    }
    .map_err(|_| format!("integer `{t}` is too large"))?;
    let value = i128::try_from(value).map_err(|_| format!("integer `{t}` is too large"))?;
    Ok(if neg { -value } else { value })
}

/// Writes an integer the way the disassembler always does: decimal below
/// 65536 in magnitude, hex above.
pub fn write_int(out: &mut String, value: i128) {
    let magnitude = value.unsigned_abs();
    let sign = if value < 0 { "-" } else { "" };
    if magnitude < 65536 {
        let _ = write!(out, "{sign}{magnitude}");
    } else {
        let _ = write!(out, "{sign}{magnitude:#x}");
    }
}

fn check_range(value: i128, min: i128, max: i128, what: &str) -> Result<i128, String> {
    if value < min || value > max {
        Err(format!("{what} {value} out of range {min}..={max}"))
    } else {
        Ok(value)
    }
}

/// Sign-extends the low `bits` bits of `raw`.
fn sext(raw: u128, bits: u32) -> i64 {
    let shift = 128 - bits;
    (((raw << shift) as i128) >> shift) as i64
}

/// A random signed value of `bits` bits, biased towards small magnitudes so
/// tests exercise both the common and the extreme encodings.
fn random_signed(next: &mut dyn FnMut() -> u64, bits: u32) -> i64 {
    let raw = next();
    let value = if raw % 4 == 0 { next() % 64 } else { next() };
    sext(u128::from(value), bits)
}

fn random_unsigned(next: &mut dyn FnMut() -> u64, bits: u32) -> u64 {
    let raw = next();
    let value = if raw % 4 == 0 { next() % 64 } else { next() };
    (u128::from(value) & mask(bits)) as u64
}

mod enums;
mod memory;
mod scalar;

pub use enums::*;
pub use memory::*;
pub use scalar::*;

#[cfg(test)]
mod tests;
