//! Scalar operand fields: registers, immediates, semaphores, branch
//! targets and register-plus-immediate values.

use super::*;

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

/// A register operand that may be left out: omitted means `r0`, which reads
/// as 0 (zero points, scale addresses and strides that unquantized code does
/// not use).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OptReg(pub Reg);

impl OptReg {
    /// The omitted operand: `r0`.
    pub const NONE: OptReg = OptReg(Reg::ZERO);
}

impl Field for OptReg {
    const BITS: u32 = Reg::BITS;
    const SYNTAX: &'static str = "a register r0..r31 (r0 when omitted)";
    fn to_bits(self) -> u128 {
        self.0.to_bits()
    }
    fn from_bits(bits: u128) -> Result<Self, String> {
        Reg::from_bits(bits).map(OptReg)
    }
    fn write_asm(&self, out: &mut String, ctx: &WriteCtx) {
        self.0.write_asm(out, ctx)
    }
    fn parse_asm(text: &str, ctx: &ParseCtx) -> Result<Self, String> {
        Reg::parse_asm(text, ctx).map(OptReg)
    }
    fn random(next: &mut dyn FnMut() -> u64) -> Self {
        OptReg(Reg::random(next))
    }
    fn omitted() -> Option<Self> {
        Some(OptReg::NONE)
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
pub(super) fn split_reg_plus(text: &str) -> (Option<&str>, Option<&str>) {
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
