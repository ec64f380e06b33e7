//! Memory operand fields: `spm[rN+off]`, `acc[…]`, `dram[…]` and the
//! operands that take one of several memories.

use super::*;

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
