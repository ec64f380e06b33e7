//! Assembler and disassembler tests: round trips, directives, errors with
//! their positions.

use super::*;

const SAMPLE: &str = r#"
    .target tiny
    .input "x" f32 [2, 4] @ 0x0
    .output "y" f32 [2, 4] @ 0x100
    .segment "w" @ 0x200
    .f32 1.0, 2.0
    .loc "node/a"
    li r1, 3          ; loop count
top:
    addi r2, r2, 1
    loop r1, top
    .loc
    dma.copy spm[r0+64], dram[0x200], bytes=8
    halt
"#;

#[test]
fn assembles_labels_directives_and_source_map() {
    let l = assemble(SAMPLE, "t.s", None).expect("assemble");
    let code = l.instructions().expect("decode");
    assert_eq!(code.len(), 5);
    assert_eq!(code[2].branch_target(2), Some(1));
    assert_eq!(l.source_map, vec![SourceRange::new(0, 3, "node/a")]);
    assert_eq!(l.segments[0].data.len(), 8);
    assert_eq!(l.inputs[0].shape, vec![2, 4]);
}

const DEBUG_SAMPLE: &str = r#"
    .target tiny
    .input "x" f32 [2, 4] @ 0x0
    .output "y" f32 [2, 4] @ 0x100
    .onnx "/mm" MatMul
    .onnx "/add \"b\"" Add
    .tensor "t" f32 [2, 4] @ 0x40 ready=2 value "/mm_output_0"
    .tensor "y" f32 [2, 4] @ 0x100 ready=3
    .loc "t" macs=64 roofline=9 from "/mm" "/add \"b\""
    nop
    nop
    .loc "y" from "/add \"b\""
    nop
    halt
"#;

#[test]
fn debug_directives_record_onnx_nodes_tensors_and_sources() {
    let l = assemble(DEBUG_SAMPLE, "t.s", None).expect("assemble");
    assert_eq!(l.onnx_nodes.len(), 2);
    assert_eq!(l.onnx_nodes[1].name, "/add \"b\"");
    assert_eq!(l.onnx_nodes[1].op_type, "Add");
    assert_eq!(l.source_map[0].sources, vec!["/mm", "/add \"b\""]);
    assert_eq!(
        (l.source_map[0].macs, l.source_map[0].roofline_cycles),
        (64, 9)
    );
    assert_eq!(l.source_map[1].sources, vec!["/add \"b\""]);
    assert_eq!(l.tensors[0].value, "/mm_output_0");
    assert_eq!(l.tensors[0].ready_pc, 2);
    assert_eq!(l.tensors[0].desc().dram_addr, 0x40);
    assert_eq!(l.tensors[1].display_name(), "y");
    let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
    let again = assemble(&text, "d.s", None).expect("reassemble");
    assert_eq!(again.to_bytes(), l.to_bytes(), "{text}");
}

#[test]
fn a_source_that_is_not_a_listed_onnx_node_is_refused() {
    let src = DEBUG_SAMPLE.replace(".onnx \"/mm\" MatMul", "");
    let err = assemble(&src, "t.s", None).expect_err("unlisted source");
    assert!(err.message.contains("names ONNX node `/mm`"), "{err}");
}

#[test]
fn a_debug_tensor_ready_past_the_code_is_refused() {
    let src = DEBUG_SAMPLE.replace("ready=3", "ready=99");
    let err = assemble(&src, "t.s", None).expect_err("ready past the code");
    assert!(err.message.contains("ready at instruction 99"), "{err}");
}

#[test]
fn disassembly_reassembles_identically() {
    let l = assemble(SAMPLE, "t.s", None).expect("assemble");
    let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
    let again = assemble(&text, "d.s", None).expect("reassemble");
    assert_eq!(again.to_bytes(), l.to_bytes(), "{text}");
}

#[test]
fn errors_carry_line_and_column() {
    let err = assemble("nop\n  frob r1, r2\n", "e.s", None).expect_err("unknown");
    assert_eq!((err.line, err.column), (2, 3));
    assert!(err.message.contains("unknown mnemonic `frob`"), "{err}");
    let err = assemble("addi r1, r2, 99999999999\n", "e.s", None).expect_err("range");
    assert_eq!((err.line, err.column), (1, 14));
    let err = assemble("jmp nowhere\n", "e.s", None).expect_err("label");
    assert!(err.message.contains("undefined label `nowhere`"), "{err}");
    let err = assemble("add r1, r2\n", "e.s", None).expect_err("count");
    assert!(err.message.contains("expected 3"), "{err}");
    let err = assemble("dma.copy spm[0], dram[0]\n", "e.s", None).expect_err("kw");
    assert!(err.message.contains("bytes="), "{err}");
    let src = ".output \"y\" f32 [1] @ 0\n.output \"y\" f32 [1] @ 64\nhalt\n";
    let err = assemble(src, "e.s", None).expect_err("twice");
    assert_eq!(err.line, 2);
    assert_eq!(err.message, ".output: `y` is declared twice");
}

#[test]
fn equ_symbols_substitute_in_operands_and_directives() {
    let src = ".equ ROW, 48\n.equ BASE 0x100\n.input \"x\" f32 [ROW] @ BASE\nli r1, ROW\naddi r2, r1, BASE\ndma.copy spm[r1+ROW], dram[BASE], bytes=r2+ROW\nhalt\n";
    let l = assemble(src, "e.s", None).expect("assemble");
    let code = l.instructions().expect("decode");
    assert_eq!(code[0].to_string(), "li r1, 48");
    assert_eq!(code[1].to_string(), "addi r2, r1, 256");
    assert_eq!(
        code[2].to_string(),
        "dma.copy spm[r1+48], dram[256], bytes=r2+48"
    );
    assert_eq!(l.inputs[0].shape, vec![48]);
    assert_eq!(l.inputs[0].dram_addr, 0x100);
    let err = assemble(".equ X, 1\nX: nop\n", "e.s", None).expect_err("clash");
    assert!(err.message.contains("both a label"), "{err}");
}

#[test]
fn custom_targets_round_trip_through_params() {
    let src = ".target base\n.param name \"mine\"\n.param dram_latency_cycles 7\nhalt\n";
    let l = assemble(src, "p.s", None).expect("assemble");
    assert_eq!(l.target().dram_latency_cycles, 7);
    let text = disassemble(&l, DisasmOptions::default()).expect("disasm");
    assert_eq!(assemble(&text, "d.s", None).expect("again"), l);
}
