//! The macro that turns the instruction table into code.
//!
//! `define_isa!` takes the table in `table.rs` and generates the `Instr` enum,
//! the binary encoder and decoder, the per-instruction assembly writer and
//! operand parser, the metadata table `INSTRUCTIONS` (for docs and tests) and
//! a random-instruction generator for the round-trip property tests. Nothing
//! about an instruction's format is written anywhere else.

/// Generates the ISA from its table; see `table.rs`.
macro_rules! define_isa {
    (
        $(
            $(#[doc = $doc:literal])*
            $opcode:literal $variant:ident $mnemonic:literal $engine:ident
            ( $($pname:ident : $pty:ty),* $(,)? )
            [ $($kname:ident : $kty:ty),* $(,)? ];
        )*
    ) => {
        /// One decoded instruction. Generated from the instruction table.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Instr {
            $(
                $(#[doc = $doc])*
                $variant { $($pname: $pty,)* $($kname: $kty,)* },
            )*
        }

        // Every format must fit the 128-bit word after the 8-bit opcode.
        $(
            const _: () = assert!(
                8 $(+ <$pty as Field>::BITS)* $(+ <$kty as Field>::BITS)* <= 128,
                concat!("instruction `", $mnemonic, "` does not fit 128 bits")
            );
        )*

        /// Metadata of every instruction, in table order.
        pub static INSTRUCTIONS: &[InstrInfo] = &[
            $(
                InstrInfo {
                    opcode: $opcode,
                    mnemonic: $mnemonic,
                    engine: Engine::$engine,
                    doc: concat!($($doc, "\n"),*),
                    fields: &[
                        $(FieldInfo {
                            name: stringify!($pname),
                            ty: stringify!($pty),
                            bits: <$pty as Field>::BITS,
                            keyword: false,
                            syntax: <$pty as Field>::SYNTAX,
                        },)*
                        $(FieldInfo {
                            name: stringify!($kname),
                            ty: stringify!($kty),
                            bits: <$kty as Field>::BITS,
                            keyword: true,
                            syntax: <$kty as Field>::SYNTAX,
                        },)*
                    ],
                },
            )*
        ];

        impl Instr {
            /// The opcode byte.
            pub fn opcode(&self) -> u8 {
                match self { $(Instr::$variant { .. } => $opcode,)* }
            }

            /// The assembly mnemonic.
            pub fn mnemonic(&self) -> &'static str {
                match self { $(Instr::$variant { .. } => $mnemonic,)* }
            }

            /// The unit that executes the instruction.
            pub fn engine(&self) -> Engine {
                match self { $(Instr::$variant { .. } => Engine::$engine,)* }
            }

            /// Encodes into one 128-bit instruction word.
            #[allow(unused_assignments, unused_mut, unused_variables)]
            pub fn encode(&self) -> u128 {
                match *self {
                    $(
                        Instr::$variant { $($pname,)* $($kname,)* } => {
                            let mut word: u128 = $opcode;
                            let mut shift: u32 = 8;
                            $(
                                word |= $pname.to_bits() << shift;
                                shift += <$pty as Field>::BITS;
                            )*
                            $(
                                word |= $kname.to_bits() << shift;
                                shift += <$kty as Field>::BITS;
                            )*
                            word
                        }
                    )*
                }
            }

            /// Decodes one 128-bit instruction word. `offset` is the byte
            /// offset of the word, carried into errors.
            #[allow(unused_assignments, unused_mut, unused_variables)]
            pub fn decode(word: u128, offset: u64) -> Result<Instr, DecodeError> {
                let opcode = (word & 0xff) as u8;
                match opcode {
                    $(
                        $opcode => {
                            let mut shift: u32 = 8;
                            $(
                                let $pname = <$pty as Field>::from_bits(
                                    (word >> shift) & mask(<$pty as Field>::BITS),
                                ).map_err(|reason| DecodeError::BadField {
                                    offset, mnemonic: $mnemonic,
                                    field: stringify!($pname), reason,
                                })?;
                                shift += <$pty as Field>::BITS;
                            )*
                            $(
                                let $kname = <$kty as Field>::from_bits(
                                    (word >> shift) & mask(<$kty as Field>::BITS),
                                ).map_err(|reason| DecodeError::BadField {
                                    offset, mnemonic: $mnemonic,
                                    field: stringify!($kname), reason,
                                })?;
                                shift += <$kty as Field>::BITS;
                            )*
                            if shift < 128 && (word >> shift) != 0 {
                                return Err(DecodeError::ReservedBits {
                                    offset, mnemonic: $mnemonic, first_bit: shift,
                                });
                            }
                            Ok(Instr::$variant { $($pname,)* $($kname,)* })
                        }
                    )*
                    _ => Err(DecodeError::UnknownOpcode { offset, opcode }),
                }
            }

            /// Writes the instruction in canonical assembly syntax.
            #[allow(unused_mut, unused_variables, unused_assignments)]
            pub fn write_asm(&self, out: &mut String, ctx: &WriteCtx) {
                match self {
                    $(
                        Instr::$variant { $($pname,)* $($kname,)* } => {
                            out.push_str($mnemonic);
                            let mut first = true;
                            $(
                                out.push_str(if first { " " } else { ", " });
                                first = false;
                                $pname.write_asm(out, ctx);
                            )*
                            $(
                                if !$kname.is_omitted() {
                                out.push_str(if first { " " } else { ", " });
                                first = false;
                                out.push_str(stringify!($kname));
                                out.push('=');
                                $kname.write_asm(out, ctx);
                                }
                            )*
                        }
                    )*
                }
            }

            /// Builds an instruction from its mnemonic and operand texts.
            /// Positional operands come first, in table order; keyword
            /// operands (`name=value`) follow in any order, each exactly once.
            #[allow(unused_mut, unused_variables, unused_assignments)]
            pub fn parse_operands(
                mnemonic: &str,
                operands: &[Operand<'_>],
                ctx: &ParseCtx,
            ) -> Result<Instr, OperandError> {
                match mnemonic {
                    $(
                        $mnemonic => {
                            let positional: &[&str] = &[$(stringify!($pname)),*];
                            let keywords: &[&str] = &[$(stringify!($kname)),*];
                            let (pos, kw) = split_operands(
                                $mnemonic, positional, keywords, operands,
                            )?;
                            let mut index = 0usize;
                            $(
                                let op = pos[index];
                                let $pname = <$pty as Field>::parse_asm(op.value, ctx)
                                    .map_err(|message| OperandError {
                                        column: op.value_column, message: format!(
                                            "operand `{}`: {message}", stringify!($pname)),
                                    })?;
                                index += 1;
                            )*
                            $(
                                let op = kw.iter().find(|o| o.key == Some(stringify!($kname)))
                                    .copied();
                                let $kname = match (op, <$kty as Field>::omitted()) {
                                    (Some(op), _) => <$kty as Field>::parse_asm(op.value, ctx)
                                        .map_err(|message| OperandError {
                                            column: op.value_column, message: format!(
                                                "operand `{}`: {message}", stringify!($kname)),
                                        })?,
                                    (None, Some(omitted)) => omitted,
                                    (None, None) => return Err(OperandError {
                                        column: 0, message: format!(
                                            "`{}` needs operand `{}=` ({})", $mnemonic,
                                            stringify!($kname), <$kty as Field>::SYNTAX) }),
                                };
                            )*
                            Ok(Instr::$variant { $($pname,)* $($kname,)* })
                        }
                    )*
                    other => Err(OperandError {
                        column: 0,
                        message: match suggest_mnemonic(other) {
                            Some(s) => format!("unknown mnemonic `{other}` (did you mean `{s}`?)"),
                            None => format!("unknown mnemonic `{other}`"),
                        },
                    }),
                }
            }

            /// A random valid instruction with the opcode of table entry
            /// `index % INSTRUCTIONS.len()`, for property tests.
            pub fn random(index: usize, next: &mut dyn FnMut() -> u64) -> Instr {
                let opcode = INSTRUCTIONS[index % INSTRUCTIONS.len()].opcode;
                match opcode {
                    $(
                        $opcode => Instr::$variant {
                            $($pname: <$pty as Field>::random(next),)*
                            $($kname: <$kty as Field>::random(next),)*
                        },
                    )*
                    _ => unreachable!("opcode taken from the table"),
                }
            }
        }
    };
}

pub(crate) use define_isa;
