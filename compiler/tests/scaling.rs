//! Large graphs compile: a long elementwise chain once overflowed the stack
//! (one fused expression thousands of ops deep) after the e-graph and
//! fusion had spent seconds and gigabytes on it. Time and memory are
//! measured by `cargo bench -p tessera-compiler --bench scaling`; this only
//! checks the shape of the result.

use std::sync::Arc;

use tessera_compiler::driver::compile_graph;
use tessera_compiler::fuse::MAX_FUSED_OPS;
use tessera_compiler::graph::{BinaryOp, Graph, Op, TensorType, UnaryOp};
use tessera_compiler::interp::run;
use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
use tessera_compiler::precision::Precision;
use tessera_compiler::tensor::{DType, Tensor};
use tessera_isa::Target;

#[test]
fn a_chain_of_ten_thousand_elementwise_ops_compiles_in_bounded_kernels() {
    let length = 10_000;
    let mut g = Graph::new("chain");
    let mut x = g
        .add_input("x", TensorType::new(DType::F32, vec![8, 64]))
        .expect("input");
    let one = g
        .add_constant("one", Arc::new(Tensor::from_f32(&[64], vec![1.0; 64])))
        .expect("constant");
    let half = g
        .add_constant("half", Arc::new(Tensor::from_f32(&[], vec![0.5])))
        .expect("constant");
    for i in 0..length {
        x = match i % 3 {
            0 => g.add_node(format!("add{i}"), Op::Binary(BinaryOp::Add), &[x, one]),
            1 => g.add_node(format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[x]),
            _ => g.add_node(format!("mul{i}"), Op::Binary(BinaryOp::Mul), &[x, half]),
        }
        .expect("node");
    }
    g.add_output("y", x);
    let original = g.clone();
    run_graph_passes_with(&mut g, &PassOptions::default(), |_, _, _| {}).expect("passes");
    let input = [Tensor::from_f32(
        &[8, 64],
        (0..512).map(|i| i as f32).collect(),
    )];
    assert_eq!(
        run(&original, &input).expect("original"),
        run(&g, &input).expect("optimized"),
        "the optimized chain computes the same values"
    );
    let compiled = compile_graph(&g, &Target::base(), Precision::Bf16).expect("compiles");
    let kernels = compiled.lowered.program.kernels.len();
    assert!(
        kernels >= length / MAX_FUSED_OPS && kernels <= length,
        "{kernels} kernels for {length} ops"
    );
}
