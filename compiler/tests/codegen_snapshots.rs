//! Snapshots of what the back end produces for the two hand-built blocks —
//! the Kernel IR and the assembly — and the property that code size does
//! not grow with tensor sizes.

use std::sync::Arc;

use tessera_compiler::driver::compile_graph;
use tessera_compiler::frontend::{import_file, ImportOptions};
use tessera_compiler::graph::{Graph, Op, TensorType};
use tessera_compiler::passes::run_graph_passes;
use tessera_compiler::precision::Precision;
use tessera_compiler::tensor::{DType, Tensor};
use tessera_isa::{disassemble, DisasmOptions, Target};

fn block(name: &str) -> Graph {
    let path = format!("{}/../models/{name}/model.onnx", env!("CARGO_MANIFEST_DIR"));
    let mut g =
        import_file(std::path::Path::new(&path), &ImportOptions::default()).expect("import");
    run_graph_passes(&mut g, |_, _, _| {}).expect("passes");
    g
}

fn snapshot(name: &str) {
    snapshot_at(name, Precision::Bf16, "");
}

fn snapshot_at(name: &str, precision: Precision, suffix: &str) {
    let g = block(name);
    let compiled = compile_graph(&g, &Target::tiny(), precision).expect("compile");
    insta::assert_snapshot!(
        format!("{name}{suffix}_kernels"),
        compiled.lowered.program.to_string()
    );
    let asm = disassemble(
        &compiled.loadable,
        DisasmOptions {
            data: false,
            pc_comments: true,
        },
    )
    .expect("disasm");
    insta::assert_snapshot!(format!("{name}{suffix}_asm"), asm);
}

#[test]
fn attention_block_kernels_and_assembly() {
    snapshot("attention_block");
}

#[test]
fn mlp_block_kernels_and_assembly() {
    snapshot("mlp_block");
}

/// The 8-bit GEMMs: A quantized on chip (`vpu.red amax`, `vpu.quant …
/// sop=mul`), weights with per-column (int8) or per-block (FP8) scales
/// (`mxu.ldw … scales=`, `mxu.mm … ascales=`).
#[test]
fn mlp_block_in_8_bit_kernels_and_assembly() {
    snapshot_at("mlp_block", Precision::Int8, "_int8");
    snapshot_at("mlp_block", Precision::Fp8E4m3, "_fp8_e4m3");
}

fn matmul_code_len(m: usize, k: usize, n: usize) -> usize {
    let mut g = Graph::new("mm");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![m, k]))
        .expect("x");
    let w = g
        .add_constant("w", Arc::new(Tensor::from_f32(&[k, n], vec![0.5; k * n])))
        .expect("w");
    let y = g.add_node("y", Op::MatMul, &[x, w]).expect("mm");
    g.add_output("y", y);
    let compiled = compile_graph(&g, &Target::base(), Precision::Bf16).expect("compile");
    compiled.code.instrs.len()
}

#[test]
fn code_size_does_not_grow_with_tensor_size() {
    let small = matmul_code_len(64, 64, 64);
    let large = matmul_code_len(1024, 1024, 1024);
    // The loops are the same; only constants change (and a few edge-tile
    // computations may appear or vanish).
    assert!(
        large <= small + small / 4,
        "64³: {small} instructions, 1024³: {large}"
    );
}
