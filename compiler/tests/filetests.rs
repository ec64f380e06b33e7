//! Filetests, in Cranelift's style: every `filetests/*.graph` (Graph IR
//! text, one NPU-native op or one fusion family each, its first line a `#`
//! comment saying what it shows) goes through the Graph IR passes (the
//! e-graph optimizer included) and the back end for `tiny` in bf16. One
//! snapshot per file holds the optimized graph, the Kernel IR and the
//! assembly, so a change's effect on codegen is a reviewable diff. Each
//! program also runs on the simulator (race detection on) against the
//! reference interpreter on the unoptimized graph.
//!
//! Adding a test: write `filetests/NAME.graph`, run `INSTA_UPDATE=always
//! cargo test -p tessera-compiler --test filetests`, review the new
//! `snapshots/filetests__NAME.snap`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tessera_compiler::compare::{compare, Tolerance};
use tessera_compiler::driver::compile_graph;
use tessera_compiler::graph::parser::parse_graph;
use tessera_compiler::graph::printer::{print_graph, DataMode};
use tessera_compiler::interp::{evaluate, Keep};
use tessera_compiler::passes::run_graph_passes;
use tessera_compiler::precision::Precision;
use tessera_compiler::runtime_io::{bytes_to_tensor, graph_dtype, tensor_to_bytes};
use tessera_compiler::tensor::Tensor;
use tessera_isa::{disassemble, DisasmOptions, Target};
use tessera_sim::{Options, Simulator};

fn filetests() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/filetests");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("filetests/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "graph"))
        .collect();
    v.sort();
    v
}

/// Deterministic inputs: floats in [-2, 2); integers in [0, 2) (valid
/// indices for every test's tables).
fn inputs(g: &tessera_compiler::graph::Graph) -> Vec<Arc<Tensor>> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    g.inputs()
        .iter()
        .map(|&id| {
            let ty = &g.node(id).ty;
            let mut next = || {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state
            };
            let t = if ty.dtype.is_float() {
                let v = (0..ty.numel())
                    .map(|_| ((next() >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0)
                    .collect();
                Tensor::from_f32(&ty.shape, v)
            } else {
                let v = (0..ty.numel()).map(|_| (next() % 2) as i64).collect();
                Tensor::from_i64_as(ty.dtype, ty.shape.clone(), v).expect("int input")
            };
            Arc::new(t)
        })
        .collect()
}

fn run_filetest(path: &Path) {
    let name = path.file_stem().and_then(|s| s.to_str()).expect("name");
    let text = std::fs::read_to_string(path).expect("read");
    assert!(
        text.starts_with("# "),
        "{name}: the first line says what the test shows"
    );
    let original = parse_graph(&text).unwrap_or_else(|e| panic!("{name}.graph:{e}"));
    let mut g = original.clone();
    run_graph_passes(&mut g, |_, _, _| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
    let target = Target::tiny();
    let compiled =
        compile_graph(&g, &target, Precision::Bf16).unwrap_or_else(|e| panic!("{name}: {e}"));
    let asm = disassemble(
        &compiled.loadable,
        DisasmOptions {
            data: false,
            pc_comments: true,
        },
    )
    .expect("disasm");
    let optimized = print_graph(&g, DataMode::Compact).expect("print");
    let snapshot = format!(
        "{}\n## optimized graph\n{optimized}\n## kernels\n{}\n## assembly\n{asm}",
        text.lines().next().unwrap_or_default(),
        compiled.lowered.program
    );
    insta::assert_snapshot!(name, snapshot);

    // The program computes what the graph says.
    let values = inputs(&original);
    let reference = evaluate(&original, &values, Keep::Outputs).expect("interpret");
    let l = compiled.loadable;
    let mut sim = Simulator::new(l.clone()).expect("load");
    for (desc, t) in l.inputs.iter().zip(&values) {
        sim.set_input(&desc.name, &tensor_to_bytes(t, desc).expect("bytes"))
            .expect("input");
    }
    sim.run(&Options::default())
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    for (desc, (_, want)) in l.outputs.iter().zip(reference.outputs()) {
        let got = bytes_to_tensor(
            &sim.read_tensor(desc).expect("read"),
            desc,
            graph_dtype(desc.dtype()),
        )
        .expect("tensor");
        let c = compare(&got, want, Tolerance::MODEL_BF16).expect("comparable");
        assert!(c.pass, "{name}: `{}`: {:?}", desc.name, c.metrics);
    }
}

#[test]
fn every_filetest_matches_its_snapshot_and_the_interpreter() {
    let files = filetests();
    assert!(files.len() >= 20, "{files:?}");
    for path in files {
        run_filetest(&path);
    }
}
