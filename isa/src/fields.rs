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

/// A scalar register `r0`..`r31`; `r0` always reads zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u8);

impl Reg {
    /// The hard-wired zero register.
    pub const ZERO: Reg = Reg(0);
    /// Number of scalar registers.
    pub const COUNT: usize = 32;
}

impl Field for Reg {
    const BITS: u32 = 5;
    const SYNTAX: &'static str = "a register r0..r31";
    fn to_bits(self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Reg(bits as u8))
    }
    fn write_asm(&self, out: &mut String, _: &WriteCtx) {
        let _ = write!(out, "r{}", self.0);
    }
    fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
        let num = text
            .strip_prefix('r')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("expected a register r0..r31, found `{text}`"))?;
        match num.parse::<u8>() {
            Ok(n) if n < 32 => Ok(Reg(n)),
            _ => Err(format!("register `{text}` does not exist (r0..r31)")),
        }
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Reg((next() % 32) as u8)
    }
}

/// A 64-bit immediate (for `li`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imm64(pub i64);

impl Field for Imm64 {
    const BITS: u32 = 64;
    const SYNTAX: &'static str = "a 64-bit integer";
    fn to_bits(self) -> u128 {
        u128::from(self.0 as u64)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Imm64(bits as u64 as i64))
    }
    fn write_asm(&self, out: &mut String, _: &WriteCtx) {
        write_int(out, i128::from(self.0));
    }
    fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
        let v = parse_int(text)?;
        // Accept both the signed and the unsigned spelling of 64-bit patterns.
        let v = check_range(v, i128::from(i64::MIN), i128::from(u64::MAX), "immediate")?;
        Ok(Imm64(v as u64 as i64))
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Imm64(random_signed(next, 64))
    }
}

/// A signed 32-bit immediate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imm32(pub i32);

impl Field for Imm32 {
    const BITS: u32 = 32;
    const SYNTAX: &'static str = "a signed 32-bit integer";
    fn to_bits(self) -> u128 {
        u128::from(self.0 as u32)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Imm32(bits as u32 as i32))
    }
    fn write_asm(&self, out: &mut String, _: &WriteCtx) {
        write_int(out, i128::from(self.0));
    }
    fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
        let v = parse_int(text)?;
        let v = check_range(v, i128::from(i32::MIN), i128::from(i32::MAX), "immediate")?;
        Ok(Imm32(v as i32))
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Imm32(random_signed(next, 32) as i32)
    }
}

/// An unsigned 16-bit immediate (semaphore counts).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct U16(pub u16);

impl Field for U16 {
    const BITS: u32 = 16;
    const SYNTAX: &'static str = "an integer 0..=65535";
    fn to_bits(self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(U16(bits as u16))
    }
    fn write_asm(&self, out: &mut String, _: &WriteCtx) {
        write_int(out, i128::from(self.0));
    }
    fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
        let v = check_range(parse_int(text)?, 0, 65535, "value")?;
        Ok(U16(v as u16))
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        U16(random_unsigned(next, 16) as u16)
    }
}

/// A branch destination, stored as a signed instruction offset from the
/// branch itself. Written as a label, or `.+N` / `.-N`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target(pub i32);

impl Field for Target {
    const BITS: u32 = 32;
    const SYNTAX: &'static str = "a label or .+N / .-N";
    fn to_bits(self) -> u128 {
        u128::from(self.0 as u32)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Target(bits as u32 as i32))
    }
    fn write_asm(&self, out: &mut String, ctx: &WriteCtx) {
        let dest = i64::from(ctx.pc) + i64::from(self.0);
        match (ctx.label, u32::try_from(dest)) {
            (Some(label), Ok(dest)) => out.push_str(&label(dest)),
            _ if self.0 >= 0 => {
                let _ = write!(out, ".+{}", self.0);
            }
            _ => {
                let _ = write!(out, ".-{}", self.0.unsigned_abs());
            }
        }
    }
    fn parse_asm(text: &str, ctx: &ParseCtx) -> Result<Self, String> {
        if let Some(rel) = text.strip_prefix('.') {
            if rel.starts_with('+') || rel.starts_with('-') {
                let v = parse_int(rel)?;
                let v = check_range(v, i128::from(i32::MIN), i128::from(i32::MAX), "offset")?;
                return Ok(Target(v as i32));
            }
        }
        if !is_identifier(text) {
            return Err(format!("expected a label or .+N, found `{text}`"));
        }
        let dest = (ctx.resolve)(text).ok_or_else(|| format!("undefined label `{text}`"))?;
        let offset = i64::from(dest) - i64::from(ctx.pc);
        i32::try_from(offset)
            .map(Target)
            .map_err(|_| format!("label `{text}` is too far away"))
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Target(random_signed(next, 32) as i32)
    }
}

/// True for names usable as labels: `[A-Za-z_.$][A-Za-z0-9_.$]*`, not a
/// register name.
pub fn is_identifier(text: &str) -> bool {
    let mut chars = text.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == '.' || c == '$');
    first_ok
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '$')
        && Reg::parse_asm(
            text,
            &ParseCtx {
                pc: 0,
                resolve: &|_| None,
            },
        )
        .is_err()
}

/// A semaphore number `s0`..`s31` (the target says how many exist).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sem(pub u8);

impl Field for Sem {
    const BITS: u32 = 5;
    const SYNTAX: &'static str = "a semaphore s0..s31";
    fn to_bits(self) -> u128 {
        u128::from(self.0)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Sem(bits as u8))
    }
    fn write_asm(&self, out: &mut String, _: &WriteCtx) {
        let _ = write!(out, "s{}", self.0);
    }
    fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
        let num = text
            .strip_prefix('s')
            .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| format!("expected a semaphore s0..s31, found `{text}`"))?;
        match num.parse::<u8>() {
            Ok(n) if n < 32 => Ok(Sem(n)),
            _ => Err(format!("semaphore `{text}` does not exist (s0..s31)")),
        }
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Sem((next() % 32) as u8)
    }
}

/// A size or stride: register plus unsigned 16-bit immediate, `r4+16`, `r4`
/// or `16`. Read at dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Val {
    /// Register added to the immediate.
    pub reg: Reg,
    /// Unsigned immediate.
    pub imm: u16,
}

impl Val {
    /// A constant value (register r0).
    pub const fn imm(imm: u16) -> Val {
        Val { reg: Reg(0), imm }
    }
    /// A register value with no immediate.
    pub const fn reg(reg: Reg) -> Val {
        Val { reg, imm: 0 }
    }
}

impl Field for Val {
    const BITS: u32 = 21;
    const SYNTAX: &'static str = "rN, an integer 0..=65535, or rN+integer";
    fn to_bits(self) -> u128 {
        u128::from(self.reg.0) | (u128::from(self.imm) << 5)
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Ok(Val {
            reg: Reg((bits & 31) as u8),
            imm: (bits >> 5) as u16,
        })
    }
    fn write_asm(&self, out: &mut String, ctx: &WriteCtx) {
        match (self.reg.0, self.imm) {
            (0, imm) => write_int(out, i128::from(imm)),
            (_, 0) => self.reg.write_asm(out, ctx),
            (_, imm) => {
                self.reg.write_asm(out, ctx);
                out.push('+');
                write_int(out, i128::from(imm));
            }
        }
    }
    fn parse_asm(text: &str, ctx: &ParseCtx) -> Result<Self, String> {
        let (reg, imm) = split_reg_plus(text);
        let reg = match reg {
            Some(r) => Reg::parse_asm(r, ctx)?,
            None => Reg(0),
        };
        let imm = match imm {
            Some(i) => check_range(parse_int(i)?, 0, 65535, "immediate")? as u16,
            None => 0,
        };
        Ok(Val { reg, imm })
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        Val {
            reg: Reg::random(next),
            imm: random_unsigned(next, 16) as u16,
        }
    }
}

/// Splits `r4+16` / `r4` / `16` / `r4-16` into register and signed-immediate
/// text (the immediate keeps its sign).
fn split_reg_plus(text: &str) -> (Option<&str>, Option<&str>) {
    let text = text.trim();
    if text.starts_with('r') {
        match text.find(['+', '-']) {
            Some(i) => {
                let imm = &text[i..];
                let imm = imm.strip_prefix('+').unwrap_or(imm);
                (Some(text[..i].trim()), Some(imm.trim()))
            }
            None => (Some(text), None),
        }
    } else {
        (None, Some(text))
    }
}

/// Declares a memory-operand type: `mem[rN+off]` with a signed offset of the
/// given width, in one memory or one of two selected by a bit.
macro_rules! mem_operand {
    (
        $(#[$meta:meta])*
        $name:ident, off_bits = $off:literal, spaces = [$($space:ident),+]
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        pub struct $name {
            /// Memory the operand lives in.
            pub mem: Mem,
            /// Base register.
            pub base: Reg,
            /// Signed byte offset added to the base.
            pub off: i32,
        }

        impl $name {
            const SPACES: &'static [Mem] = &[$(Mem::$space),+];
            const SEL_BITS: u32 = if Self::SPACES.len() > 1 { 1 } else { 0 };

            /// An operand at `base + off` in `mem`; `None` if `mem` is not one
            /// of this operand's memories.
            pub fn new(mem: Mem, base: Reg, off: i32) -> Option<Self> {
                Self::SPACES.contains(&mem).then_some($name { mem, base, off })
            }
        }

        impl Field for $name {
            const BITS: u32 = Self::SEL_BITS + 5 + $off;
            const SYNTAX: &'static str = concat!(
                "a memory operand like ", $( stringify!($space), "[r3+16] " ),+
            );
            fn to_bits(self) -> u128 {
                let sel = Self::SPACES.iter().position(|m| *m == self.mem).unwrap_or(0) as u128;
                sel | (u128::from(self.base.0) << Self::SEL_BITS)
                    | ((u128::from(self.off as u32) & mask($off)) << (Self::SEL_BITS + 5))
            }
            fn from_bits(bits: u128) -> Result<Self, String> {
                let sel = (bits & mask(Self::SEL_BITS)) as usize;
                let base = Reg(((bits >> Self::SEL_BITS) & 31) as u8);
                let off = sext(bits >> (Self::SEL_BITS + 5), $off) as i32;
                Ok($name { mem: Self::SPACES[sel], base, off })
            }
            fn write_asm(&self, out: &mut String, _: &WriteCtx) {
                write_mem_operand(out, self.mem, self.base, self.off);
            }
            fn parse_asm(text: &str, ctx: &ParseCtx) -> Result<Self, String> {
                let (mem, base, off) = parse_mem_operand(text, Self::SPACES, ctx)?;
                let limit = 1i128 << ($off - 1);
                check_range(off, -limit, limit - 1, "offset")?;
                Ok($name { mem, base, off: off as i32 })
            }
            fn random(next: &mut dyn FnMut() -> u64) -> Self {
                let mem = Self::SPACES[(next() % Self::SPACES.len() as u64) as usize];
                $name { mem, base: Reg::random(next), off: random_signed(next, $off) as i32 }
            }
        }
    };
}

/// The memories an instruction can address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mem {
    /// Off-chip memory.
    Dram,
    /// The scratchpad.
    Spm,
    /// The accumulator memory.
    Acc,
}

impl Mem {
    /// Lower-case name used in assembly.
    pub fn name(self) -> &'static str {
        match self {
            Mem::Dram => "dram",
            Mem::Spm => "spm",
            Mem::Acc => "acc",
        }
    }
}

impl std::fmt::Display for Mem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn write_mem_operand(out: &mut String, mem: Mem, base: Reg, off: i32) {
    out.push_str(mem.name());
    out.push('[');
    if base.0 == 0 {
        write_int(out, i128::from(off));
    } else {
        let _ = write!(out, "r{}", base.0);
        if off > 0 {
            out.push('+');
            write_int(out, i128::from(off));
        } else if off < 0 {
            write_int(out, i128::from(off));
        }
    }
    out.push(']');
}

fn parse_mem_operand(
    text: &str,
    spaces: &[Mem],
    ctx: &ParseCtx,
) -> Result<(Mem, Reg, i128), String> {
    let expected = || {
        let names: Vec<String> = spaces
            .iter()
            .map(|m| format!("{}[...]", m.name()))
            .collect();
        format!("expected {}, found `{text}`", names.join(" or "))
    };
    let open = text.find('[').ok_or_else(expected)?;
    let inner = text[open + 1..].strip_suffix(']').ok_or_else(expected)?;
    let space = text[..open].trim();
    let mem = spaces
        .iter()
        .copied()
        .find(|m| m.name() == space)
        .ok_or_else(expected)?;
    let (reg, imm) = split_reg_plus(inner);
    let base = match reg {
        Some(r) => Reg::parse_asm(r, ctx)?,
        None => Reg(0),
    };
    let off = match imm {
        Some(i) => parse_int(i)?,
        None => 0,
    };
    Ok((mem, base, off))
}

mem_operand! {
    /// An SPM operand `spm[rN+off]`, 20-bit signed offset.
    SpmAddr, off_bits = 20, spaces = [Spm]
}
mem_operand! {
    /// An ACC operand `acc[rN+off]`, 20-bit signed offset.
    AccAddr, off_bits = 20, spaces = [Acc]
}
mem_operand! {
    /// A DRAM operand `dram[rN+off]`, 32-bit signed offset.
    DramAddr, off_bits = 32, spaces = [Dram]
}
mem_operand! {
    /// An on-chip operand in SPM or ACC, 20-bit signed offset.
    OnChip, off_bits = 20, spaces = [Spm, Acc]
}
mem_operand! {
    /// A DMA operand in DRAM or SPM, 32-bit signed offset.
    DmaAddr, off_bits = 32, spaces = [Dram, Spm]
}

/// Declares an enumerated field: named values, each with its encoding.
/// Encodings not listed are decode errors.
macro_rules! enum_field {
    (
        $(#[$meta:meta])*
        $name:ident, bits = $bits:literal, {
            $( $(#[$vmeta:meta])* $variant:ident = $code:literal, $text:literal ),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name {
            $( $(#[$vmeta])* $variant ),+
        }

        impl $name {
            /// Every value, in encoding order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The assembly name.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// Looks a value up by its assembly name.
            pub fn from_name(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl Field for $name {
            const BITS: u32 = $bits;
            const SYNTAX: &'static str = concat!("one of:", $(" ", $text),+);
            fn to_bits(self) -> u128 {
                match self { $($name::$variant => $code),+ }
            }
            fn from_bits(bits: u128) -> Result<Self, String> {
                match bits {
                    $($code => Ok($name::$variant),)+
                    other => Err(format!(concat!("invalid ", stringify!($name), " code {}"), other)),
                }
            }
            fn write_asm(&self, out: &mut String, _: &WriteCtx) {
                out.push_str(self.name());
            }
            fn parse_asm(text: &str, _: &ParseCtx) -> Result<Self, String> {
                Self::from_name(text).ok_or_else(|| {
                    format!("expected {}, found `{}`", Self::SYNTAX, text)
                })
            }
            fn random(next: &mut dyn FnMut() -> u64) -> Self {
                Self::ALL[(next() % Self::ALL.len() as u64) as usize]
            }
        }
    };
}

enum_field! {
    /// Element data types in memory.
    DType, bits = 3, {
        /// IEEE binary32.
        F32 = 0, "f32",
        /// bfloat16 (upper half of a binary32).
        Bf16 = 1, "bf16",
        /// IEEE binary16.
        F16 = 2, "f16",
        /// Two's-complement 32-bit integer.
        I32 = 3, "i32",
        /// Two's-complement 64-bit integer.
        I64 = 4, "i64",
        /// Unsigned byte.
        U8 = 5, "u8",
        /// Two's-complement 8-bit integer.
        I8 = 6, "i8",
        /// Boolean byte: 0 false, 1 true.
        Bool = 7, "bool",
    }
}

impl DType {
    /// Size of one element in bytes.
    pub fn size(self) -> u64 {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::Bf16 | DType::F16 => 2,
            DType::I64 => 8,
            DType::U8 | DType::I8 | DType::Bool => 1,
        }
    }
}

enum_field! {
    /// Input type of the matrix engine.
    MxuType, bits = 2, {
        /// bfloat16 inputs, full rate.
        Bf16 = 0, "bf16",
        /// binary16 inputs, full rate.
        F16 = 1, "f16",
        /// binary32 inputs, reduced rate.
        F32 = 2, "f32",
    }
}

impl MxuType {
    /// The memory type of one input element.
    pub fn dtype(self) -> DType {
        match self {
            MxuType::Bf16 => DType::Bf16,
            MxuType::F16 => DType::F16,
            MxuType::F32 => DType::F32,
        }
    }
}

enum_field! {
    /// Whether `mxu.ldw` reads the weight tile as stored or transposed.
    Trans, bits = 1, {
        /// W[k][n] at src + k*stride + n*esize.
        N = 0, "n",
        /// W[k][n] at src + n*stride + k*esize.
        T = 1, "t",
    }
}

enum_field! {
    /// Whether a result overwrites or accumulates into its destination.
    AccMode, bits = 1, {
        /// dst = result.
        Set = 0, "set",
        /// dst = dst + result (or dst op result for reductions).
        Acc = 1, "acc",
    }
}

enum_field! {
    /// How a VPU source operand is indexed over the rows x cols region.
    Bcast, bits = 2, {
        /// Element (i, j) at addr + i*stride + j*4.
        Full = 0, "full",
        /// One row: element (i, j) at addr + j*4.
        Row = 1, "row",
        /// One column: element (i, j) at addr + i*stride.
        Col = 2, "col",
        /// One scalar: every element at addr.
        Scalar = 3, "scalar",
    }
}

enum_field! {
    /// Operand order of `vpu.bins`.
    Order, bits = 1, {
        /// dst = a op s.
        As = 0, "as",
        /// dst = s op a.
        Sa = 1, "sa",
    }
}

enum_field! {
    /// Index element type of `dma.gather`.
    IdxType, bits = 1, {
        /// 32-bit indices.
        I32 = 0, "i32",
        /// 64-bit indices.
        I64 = 1, "i64",
    }
}

enum_field! {
    /// Outer dimension set by `dma.dim`.
    DmaDim, bits = 2, {
        /// Dimension 1 (just outside the contiguous run).
        D1 = 1, "1",
        /// Dimension 2.
        D2 = 2, "2",
        /// Dimension 3 (outermost).
        D3 = 3, "3",
    }
}

enum_field! {
    /// Elementwise binary functions of the VPU (fp32).
    BinFunc, bits = 5, {
        /// a + b
        Add = 0, "add",
        /// a - b
        Sub = 1, "sub",
        /// a * b
        Mul = 2, "mul",
        /// a / b
        Div = 3, "div",
        /// maximum, NaN if either is NaN
        Max = 4, "max",
        /// minimum, NaN if either is NaN
        Min = 5, "min",
        /// a to the power b
        Pow = 6, "pow",
        /// 1.0 if a == b else 0.0
        Eq = 7, "eq",
        /// 1.0 if a != b else 0.0
        Ne = 8, "ne",
        /// 1.0 if a < b else 0.0
        Lt = 9, "lt",
        /// 1.0 if a <= b else 0.0
        Le = 10, "le",
        /// 1.0 if a > b else 0.0
        Gt = 11, "gt",
        /// 1.0 if a >= b else 0.0
        Ge = 12, "ge",
        /// 1.0 if a != 0 and b != 0 else 0.0
        And = 13, "and",
        /// 1.0 if a != 0 or b != 0 else 0.0
        Or = 14, "or",
        /// dst != 0 ? a : b (reads the destination as the condition)
        Sel = 15, "sel",
    }
}

enum_field! {
    /// Elementwise unary functions of the VPU (fp32).
    UnFunc, bits = 5, {
        /// x
        Mov = 0, "mov",
        /// -x
        Neg = 1, "neg",
        /// |x|
        Abs = 2, "abs",
        /// e^x
        Exp = 3, "exp",
        /// ln x
        Log = 4, "log",
        /// sqrt x
        Sqrt = 5, "sqrt",
        /// 1 / sqrt x
        Rsqrt = 6, "rsqrt",
        /// 1 / x
        Recip = 7, "recip",
        /// tanh x
        Tanh = 8, "tanh",
        /// erf x
        Erf = 9, "erf",
        /// 1 / (1 + e^-x)
        Sigmoid = 10, "sigmoid",
        /// max(x, 0)
        Relu = 11, "relu",
        /// x * 0.5 * (1 + erf(x / sqrt 2))
        Gelu = 12, "gelu",
        /// x * 0.5 * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))
        GeluTanh = 13, "gelu_tanh",
        /// x * sigmoid(x)
        Silu = 14, "silu",
        /// sin x
        Sin = 15, "sin",
        /// cos x
        Cos = 16, "cos",
        /// 1.0 if x == 0 else 0.0
        Not = 17, "not",
        /// round toward negative infinity
        Floor = 18, "floor",
        /// round toward positive infinity
        Ceil = 19, "ceil",
        /// round to the nearest integer, ties to even
        Round = 20, "round",
        /// 1.0 if x > 0, -1.0 if x < 0, else x (±0 and NaN unchanged)
        Sign = 21, "sign",
    }
}

enum_field! {
    /// Row reductions of the VPU.
    RedFunc, bits = 2, {
        /// sum of the row
        Sum = 0, "sum",
        /// maximum of the row
        Max = 1, "max",
        /// minimum of the row
        Min = 2, "min",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pctx() -> ParseCtx<'static> {
        ParseCtx {
            pc: 10,
            resolve: &|name| (name == "top").then_some(4),
        }
    }

    fn text_of<F: Field>(f: F) -> String {
        let mut out = String::new();
        f.write_asm(
            &mut out,
            &WriteCtx {
                pc: 10,
                label: None,
            },
        );
        out
    }

    #[test]
    fn integers_parse_in_decimal_and_hex() {
        assert_eq!(parse_int("42"), Ok(42));
        assert_eq!(parse_int("-0x10"), Ok(-16));
        assert_eq!(parse_int("1_000"), Ok(1000));
        assert!(parse_int("12a").is_err());
        assert!(parse_int("").is_err());
    }

    #[test]
    fn memory_operands_round_trip_in_text() {
        let a = SpmAddr::new(Mem::Spm, Reg(3), -16).expect("spm");
        assert_eq!(text_of(a), "spm[r3-16]");
        assert_eq!(SpmAddr::parse_asm("spm[r3-16]", &pctx()), Ok(a));
        let d = DmaAddr::new(Mem::Dram, Reg(0), 0x12345).expect("dram");
        assert_eq!(text_of(d), "dram[0x12345]");
        assert_eq!(DmaAddr::parse_asm("dram[0x12345]", &pctx()), Ok(d));
        assert!(SpmAddr::parse_asm("acc[r1]", &pctx()).is_err());
        assert!(SpmAddr::parse_asm("spm[r1+0x80000]", &pctx()).is_err());
    }

    #[test]
    fn vals_and_targets_parse() {
        let v = Val::parse_asm("r4+16", &pctx()).expect("val");
        assert_eq!(
            v,
            Val {
                reg: Reg(4),
                imm: 16
            }
        );
        assert_eq!(text_of(v), "r4+16");
        assert_eq!(text_of(Val::imm(7)), "7");
        assert_eq!(Target::parse_asm("top", &pctx()), Ok(Target(-6)));
        assert_eq!(Target::parse_asm(".-6", &pctx()), Ok(Target(-6)));
        assert!(Target::parse_asm("nowhere", &pctx()).is_err());
        assert_eq!(text_of(Target(-6)), ".-6");
    }

    #[test]
    fn enum_codes_outside_the_table_are_errors() {
        assert!(DmaDim::from_bits(0).is_err());
        assert!(DType::from_bits(8).is_err());
        assert!(MxuType::from_bits(3).is_err());
        assert_eq!(UnFunc::from_bits(12), Ok(UnFunc::Gelu));
    }
}
