//! Property tests: every instruction survives encode/decode and
//! disassemble/assemble, and no input makes the decoder or assembler panic.

use proptest::prelude::*;
use tessera_isa::{assemble, decode_program, Instr, INSTRUCTIONS};

/// A splitmix64 stream seeded by proptest, for `Instr::random`.
fn stream(seed: u64) -> impl FnMut() -> u64 {
    let mut state = seed;
    move || {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn reassemble(instr: &Instr) -> Instr {
    let text = format!("{instr}\n");
    let l = assemble(&text, "prop.s", None).unwrap_or_else(|e| panic!("{e}\n{text}"));
    l.instructions().expect("decode")[0]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2048))]

    #[test]
    fn decode_inverts_encode(index in 0usize..1000, seed: u64) {
        let mut next = stream(seed);
        let instr = Instr::random(index, &mut next);
        prop_assert_eq!(Instr::decode(instr.encode(), 0), Ok(instr));
    }

    #[test]
    fn assemble_inverts_disassemble(index in 0usize..1000, seed: u64) {
        let mut next = stream(seed);
        let instr = Instr::random(index, &mut next);
        prop_assert_eq!(reassemble(&instr), instr);
    }

    #[test]
    fn decoding_random_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = decode_program(&bytes);
        let _ = tessera_isa::Loadable::from_bytes(&bytes);
    }

    #[test]
    fn assembling_random_text_never_panics(text in "[ -~\n\t]{0,200}") {
        let _ = assemble(&text, "fuzz.s", None);
    }

    #[test]
    fn assembling_mutated_instructions_never_panics(index in 0usize..1000, seed: u64, cut in 0usize..80, junk in "[ -~]{0,8}") {
        let mut next = stream(seed);
        let text = Instr::random(index, &mut next).to_string();
        let cut = cut.min(text.len());
        let mutated = format!("{}{}{}", &text[..cut], junk, &text[cut..]);
        let _ = assemble(&mutated, "fuzz.s", None);
    }
}

#[test]
fn every_opcode_is_exercised_by_the_generator() {
    let mut next = stream(1);
    for (i, info) in INSTRUCTIONS.iter().enumerate() {
        assert_eq!(Instr::random(i, &mut next).opcode(), info.opcode);
    }
}

#[test]
fn opcodes_and_mnemonics_are_unique() {
    for (i, a) in INSTRUCTIONS.iter().enumerate() {
        for b in &INSTRUCTIONS[i + 1..] {
            assert_ne!(a.opcode, b.opcode, "{} / {}", a.mnemonic, b.mnemonic);
            assert_ne!(a.mnemonic, b.mnemonic);
        }
        assert_ne!(
            a.opcode, 0,
            "opcode 0 is reserved so zeroed memory is illegal"
        );
    }
}

#[test]
fn reserved_bits_and_unknown_opcodes_are_decode_errors() {
    let nop = Instr::Nop {}.encode();
    let err = Instr::decode(nop | (1 << 100), 32).expect_err("reserved");
    assert_eq!(
        err.to_string(),
        "byte offset 32: `nop` has reserved bits set (bit 8 and up must be zero)"
    );
    let err = Instr::decode(0xff, 48).expect_err("opcode");
    assert_eq!(err.to_string(), "byte offset 48: unknown opcode 0xff");
    let err = decode_program(&[1u8; 20]).expect_err("partial word");
    assert!(err.to_string().starts_with("byte offset 16:"), "{err}");
}
