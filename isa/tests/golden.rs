//! Golden table: for every opcode, one instruction with its encoding and
//! text, snapshotted so any change to the table shows up in review.

use std::fmt::Write as _;

use tessera_isa::{Instr, INSTRUCTIONS};

#[test]
fn golden_encodings() {
    // A fixed, varied stream of field values.
    let mut state = 7u64;
    let mut next = move || {
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        state >> 11
    };
    let mut out = String::new();
    for (i, info) in INSTRUCTIONS.iter().enumerate() {
        let instr = Instr::random(i, &mut next);
        let _ = writeln!(
            out,
            "{:#04x} {:<12} {:032x}  {}",
            info.opcode,
            info.mnemonic,
            instr.encode(),
            instr
        );
    }
    insta::assert_snapshot!(out);
}

#[test]
fn field_layout_table() {
    let mut out = String::new();
    for info in INSTRUCTIONS {
        let fields: Vec<String> = info
            .field_offsets()
            .iter()
            .map(|(at, f)| {
                format!(
                    "{}{}@{}:{}",
                    if f.keyword { "=" } else { "" },
                    f.name,
                    at,
                    f.bits
                )
            })
            .collect();
        let used: u32 = 8 + info.fields.iter().map(|f| f.bits).sum::<u32>();
        let _ = writeln!(
            out,
            "{:<12} {:<4} {:>3} bits  {}",
            info.mnemonic,
            info.engine,
            used,
            fields.join(" ")
        );
    }
    insta::assert_snapshot!(out);
}
