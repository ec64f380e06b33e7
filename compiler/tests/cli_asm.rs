//! The `tessera asm`, `disasm` and `targets` commands, through the
//! binary: round trips, and one-line errors with exit code 1 on bad input.

mod common;

use common::isa::{assemble, assert_user_error, examples, scratch, tessera};
use common::repo;

#[test]
fn every_example_reassembles_byte_identically() {
    let examples = examples();
    assert!(examples.len() >= 5, "{examples:?}");
    for src in examples {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let first = scratch(&format!("{stem}.tnpu"));
        let text = scratch(&format!("{stem}.dis.s"));
        let second = scratch(&format!("{stem}.2.tnpu"));
        assemble(&src, &first);
        let out = tessera(&["disasm", first.to_str().expect("path")]);
        assert!(out.status.success());
        std::fs::write(&text, &out.stdout).expect("write");
        assemble(&text, &second);
        assert_eq!(
            std::fs::read(&first).expect("a"),
            std::fs::read(&second).expect("b"),
            "{stem}"
        );
    }
}

#[test]
fn disasm_refuses_truncated_and_random_files() {
    let good = scratch("good.tnpu");
    let src = repo().join("isa/examples/gemm.s");
    assemble(&src, &good);
    let bytes = std::fs::read(&good).expect("read");
    for cut in [3, 10, 24, bytes.len() / 2, bytes.len() - 1] {
        let path = scratch(&format!("cut{cut}.tnpu"));
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let out = tessera(&["disasm", path.to_str().expect("p")]);
        assert_user_error(&out, "byte offset");
    }
    let mut state = 0x1234_5678_u32;
    for trial in 0..20 {
        let mut junk: Vec<u8> = (0..64 + trial * 13)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        if trial % 2 == 0 {
            // A plausible header over random payload.
            junk[..4].copy_from_slice(b"TNPU");
            junk[4..8].copy_from_slice(&tessera_isa::ISA_VERSION.to_le_bytes());
        }
        let path = scratch(&format!("junk{trial}.tnpu"));
        std::fs::write(&path, &junk).expect("write");
        let out = tessera(&["disasm", path.to_str().expect("p")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let mut other_version = bytes.clone();
    // Version 1 is the encoding before the 8-bit MXU types widened the
    // type fields: refused, not misread.
    other_version[4] = 1;
    let path = scratch("v1.tnpu");
    std::fs::write(&path, &other_version).expect("write");
    assert_user_error(
        &tessera(&["disasm", path.to_str().expect("p")]),
        "ISA version 1",
    );
}

#[test]
fn malformed_assembly_reports_file_line_and_column() {
    let cases = [
        (
            "nop\n  frobnicate r1\n",
            "bad.s:2:3: unknown mnemonic `frobnicate`",
        ),
        (
            "addi r1, r2, 0x1_0000_0000\n",
            "bad.s:1:14: operand `imm`: immediate 4294967296 out of range",
        ),
        (
            "jmp nowhere\n",
            "bad.s:1:5: operand `target`: undefined label `nowhere`",
        ),
        ("add r1, r2\n", "bad.s:1:1: wrong operand count"),
        (
            "li r32, 1\n",
            "bad.s:1:4: operand `rd`: register `r32` does not exist",
        ),
        (
            "dma.copy spm[0], dram[0]\n",
            "bad.s:1:1: `dma.copy` needs operand `bytes=`",
        ),
        (
            "vpu.un fly, spm[0], spm[0], rows=r1, cols=r1, dstride=r1, astride=r1, abcast=full\n",
            "expected one of: mov neg",
        ),
    ];
    for (source, needle) in cases {
        let path = scratch("bad.s");
        std::fs::write(&path, source).expect("write");
        let out = tessera(&[
            "asm",
            path.to_str().expect("p"),
            "-o",
            scratch("bad.tnpu").to_str().expect("p"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let expected_tail = needle.trim_start_matches("bad.s");
        assert!(stderr.contains(expected_tail), "{source:?}: {stderr}");
        assert!(stderr.contains("bad.s:"), "{stderr}");
    }
}

#[test]
fn targets_lists_the_presets() {
    let out = tessera(&["targets"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[tiny]") && text.contains("[base]"), "{text}");
    assert!(
        text.contains("mxu_k = 128") && text.contains("mxu_k = 8"),
        "{text}"
    );
    let bad = scratch("bad_target.toml");
    let toml = String::from_utf8_lossy(&tessera(&["targets", "tiny"]).stdout)
        .replace("vpu_lanes = 8", "vpu_lanes = 6");
    std::fs::write(&bad, toml).expect("write");
    assert_user_error(
        &tessera(&["targets", bad.to_str().expect("p")]),
        "field `vpu_lanes`: must be a power of two",
    );
}
