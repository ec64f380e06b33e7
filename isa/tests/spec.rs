//! SPEC.md documents every instruction of the table, with the encoding the
//! table actually produces.

use tessera_isa::INSTRUCTIONS;

fn spec() -> String {
    std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/SPEC.md")).expect("read SPEC.md")
}

#[test]
fn every_instruction_has_a_section_with_its_encoding() {
    let spec = spec();
    let mut missing = Vec::new();
    for info in INSTRUCTIONS {
        let heading = format!(
            "#### `{}`\nEncoding: `{}`\n",
            info.mnemonic,
            info.encoding_line()
        );
        if !spec.contains(&heading) {
            missing.push(format!(
                "{}\n  expected: {}",
                info.mnemonic,
                heading.replace('\n', "\n  ")
            ));
        }
    }
    assert!(
        missing.is_empty(),
        "SPEC.md is out of date for:\n{}",
        missing.join("\n")
    );
}

#[test]
fn spec_has_no_sections_for_instructions_that_do_not_exist() {
    let spec = spec();
    for line in spec.lines().filter(|l| l.starts_with("#### `")) {
        let mnemonic = line.trim_start_matches("#### `").trim_end_matches('`');
        assert!(
            INSTRUCTIONS.iter().any(|i| i.mnemonic == mnemonic),
            "SPEC.md documents `{mnemonic}`, which is not in the table"
        );
    }
}
