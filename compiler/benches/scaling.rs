//! Compile-time and memory scaling: how the Graph IR passes, lowering and
//! the reference interpreter grow with the size of what they are given.
//!
//! `cargo bench -p tessera-compiler --bench scaling` runs every case at
//! several sizes, each in a fresh child process so its peak resident
//! memory (Linux `VmHWM`) is its own, and prints one table row per run:
//!
//! - `chain`: a chain of N elementwise nodes (add a constant, relu, scale)
//!   on a [64, 64] input, through fold, the e-graph and lowering for
//!   `base` (N up to 100,000);
//! - `chain-no-egraph`: the same without the e-graph (`--no-egraph`);
//! - `fold-adds`: N `Add`s of a 2^24-element constant to itself, folded;
//! - `interp-chain`: N `Add`s over a 2^26-element input (256 MiB each),
//!   interpreted keeping only the outputs: peak memory stays a few
//!   tensors whatever N.
//!
//! `BENCH_CASES=chain,fold-adds` picks cases; `BENCH_MAX=N` caps the sizes.
//! Results are recorded in bench/RESULTS.md.

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use tessera_compiler::driver::compile_graph;
use tessera_compiler::fold::fold;
use tessera_compiler::graph::{BinaryOp, Graph, NodeId, Op, TensorType, UnaryOp};
use tessera_compiler::interp::{evaluate, Keep};
use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
use tessera_compiler::precision::Precision;
use tessera_compiler::tensor::{DType, Tensor};
use tessera_isa::Target;

/// A case: its name and the sizes it runs at.
const CASES: &[(&str, &[usize])] = &[
    ("chain", &[1_000, 4_000, 16_000, 32_000, 64_000, 100_000]),
    (
        "chain-no-egraph",
        &[1_000, 4_000, 16_000, 32_000, 64_000, 100_000],
    ),
    ("fold-adds", &[10, 20, 40, 80]),
    ("interp-chain", &[2, 4, 8]),
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(at) = args.iter().position(|a| a == "--case") {
        let name = &args[at + 1];
        let size: usize = args[at + 2].parse().expect("a size");
        run_case(name, size);
        return;
    }
    let picked: Option<Vec<String>> = std::env::var("BENCH_CASES")
        .ok()
        .map(|s| s.split(',').map(str::to_string).collect());
    let max: usize = std::env::var("BENCH_MAX")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let exe = std::env::current_exe().expect("the bench binary");
    println!("| case | N | seconds | peak MiB | what |");
    println!("|---|---:|---:|---:|---|");
    for &(name, sizes) in CASES {
        if picked
            .as_ref()
            .is_some_and(|p| !p.iter().any(|c| c == name))
        {
            continue;
        }
        for &size in sizes.iter().filter(|&&s| s <= max) {
            let output = Command::new(&exe)
                .args(["--case", name, &size.to_string()])
                .output()
                .expect("run a case");
            let line = String::from_utf8_lossy(&output.stdout);
            if output.status.success() {
                print!("{line}");
            } else {
                println!(
                    "| {name} | {size} | failed | | {} |",
                    String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                );
            }
        }
    }
}

/// Runs one case in this process and prints its table row.
fn run_case(name: &str, size: usize) {
    let start = Instant::now();
    let what = match name {
        "chain" => compile_chain(size, true),
        "chain-no-egraph" => compile_chain(size, false),
        "fold-adds" => fold_adds(size),
        "interp-chain" => interpret_chain(size),
        other => panic!("no case `{other}`"),
    };
    let seconds = start.elapsed().as_secs_f64();
    let peak = peak_mib().map_or_else(|| "n/a".to_string(), |m| format!("{m:.0}"));
    println!("| {name} | {size} | {seconds:.2} | {peak} | {what} |");
}

/// A chain of `length` elementwise nodes on a [64, 64] input.
fn chain(length: usize) -> Graph {
    let mut g = Graph::new("bench");
    let ty = TensorType::new(DType::F32, vec![64, 64]);
    let mut x = g.add_input("x", ty).expect("input");
    let one = constant(&mut g, "one", 1.0, &[64]);
    let half = constant(&mut g, "half", 0.5, &[1]);
    for i in 0..length {
        x = match i % 3 {
            0 => g.add_node(format!("add{i}"), Op::Binary(BinaryOp::Add), &[x, one]),
            1 => g.add_node(format!("relu{i}"), Op::Unary(UnaryOp::Relu), &[x]),
            _ => g.add_node(format!("mul{i}"), Op::Binary(BinaryOp::Mul), &[x, half]),
        }
        .expect("node");
    }
    g.add_output("y", x);
    g
}

fn constant(g: &mut Graph, name: &str, value: f32, shape: &[usize]) -> NodeId {
    let numel = shape.iter().product();
    let tensor = Tensor::from_f32(shape, vec![value; numel]);
    g.add_constant(name, Arc::new(tensor)).expect("constant")
}

/// Compiles a chain for `base` in bf16; says how many kernels came out.
fn compile_chain(length: usize, egraph: bool) -> String {
    let mut g = chain(length);
    let options = if egraph {
        PassOptions::default()
    } else {
        PassOptions::frontend_only()
    };
    run_graph_passes_with(&mut g, &options, |_, _, _| {}).expect("passes");
    let compiled = compile_graph(&g, &Target::base(), Precision::Bf16).expect("compiles");
    format!("{} kernels", compiled.lowered.program.kernels.len())
}

/// Folds `count` Adds of a 2^24-element constant.
fn fold_adds(count: usize) -> String {
    let mut g = Graph::new("bench");
    let big = constant(&mut g, "big", 1.0, &[1 << 24]);
    let mut x = big;
    for i in 0..count {
        x = g
            .add_node(format!("add{i}"), Op::Binary(BinaryOp::Add), &[x, big])
            .expect("add");
    }
    g.add_output("y", x);
    let stats = fold(&mut g).expect("folds");
    format!("{} folded, {} removed", stats.folded, stats.removed)
}

/// Interprets `count` Adds over a 2^26-element input, outputs only.
fn interpret_chain(count: usize) -> String {
    let n = 1 << 26;
    let mut g = Graph::new("bench");
    let mut x = g
        .add_input("x", TensorType::new(DType::F32, vec![n]))
        .expect("input");
    let input = x;
    for i in 0..count {
        x = g
            .add_node(format!("add{i}"), Op::Binary(BinaryOp::Add), &[x, input])
            .expect("add");
    }
    g.add_output("y", x);
    let value = Arc::new(Tensor::from_f32(&[n], vec![1.0; n]));
    let eval = evaluate(&g, &[value], Keep::Outputs).expect("runs");
    let y = eval.outputs()[0].1.to_f32_vec();
    format!("y[0] = {}", y[0])
}

/// This process's peak resident memory in MiB (Linux).
fn peak_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}
