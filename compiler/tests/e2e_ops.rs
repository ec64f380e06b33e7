//! Every NPU-native op, compiled and simulated on `tiny` and `base` in fp32
//! and bf16, against the reference interpreter on the same graph.

use std::sync::Arc;

use tessera_compiler::compare::{compare, Tolerance};
use tessera_compiler::driver::compile_graph;
use tessera_compiler::graph::op::Activation;
use tessera_compiler::graph::{Graph, NodeId, Op, TensorType};
use tessera_compiler::interp::{evaluate, evaluate_with, EvalOptions, Keep};
use tessera_compiler::precision::Precision;
use tessera_compiler::runtime_io::{bytes_to_tensor, graph_dtype, tensor_to_bytes};
use tessera_compiler::tensor::{DType, Tensor};
use tessera_isa::Target;
use tessera_sim::{Options, Simulator};

struct Rng(u64);
impl Rng {
    fn floats(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n)
            .map(|_| {
                self.0 ^= self.0 << 13;
                self.0 ^= self.0 >> 7;
                self.0 ^= self.0 << 17;
                (((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0) * scale
            })
            .collect()
    }
}

fn constant(g: &mut Graph, name: &str, shape: &[usize], rng: &mut Rng) -> NodeId {
    let n = shape.iter().product();
    g.add_constant(name, Arc::new(Tensor::from_f32(shape, rng.floats(n, 1.0))))
        .expect("constant")
}

/// Compiles `g` for `target` at `precision` and simulates it on `inputs`:
/// the outputs, and the loadable.
fn simulate(
    g: &Graph,
    target: &Target,
    precision: Precision,
    inputs: &[Arc<Tensor>],
) -> (Vec<Tensor>, tessera_isa::Loadable) {
    let compiled = compile_graph(g, target, precision).unwrap_or_else(|e| panic!("{e}"));
    let l = compiled.loadable;
    let mut sim = Simulator::new(l.clone()).expect("load");
    for (desc, t) in l.inputs.iter().zip(inputs) {
        sim.set_input(&desc.name, &tensor_to_bytes(t, desc).expect("bytes"))
            .expect("input");
    }
    sim.run(&Options::default())
        .unwrap_or_else(|e| panic!("{} {}: {e}", target.name, precision.name()));
    let outputs = l
        .outputs
        .iter()
        .map(|desc| {
            let bytes = sim.read_tensor(desc).expect("read");
            bytes_to_tensor(&bytes, desc, graph_dtype(desc.dtype())).expect("tensor")
        })
        .collect();
    (outputs, l)
}

/// Compiles and simulates `g` on random inputs; compares with the
/// interpreter (fp32: 1e-4 scaled; bf16: cosine ≥ 0.999) and, in bf16,
/// with the interpreter at the program's precision
/// (`Tolerance::SAME_PRECISION`).
fn check(g: &Graph, seed: u64) {
    let mut rng = Rng(seed | 1);
    let inputs: Vec<Arc<Tensor>> = g
        .inputs()
        .iter()
        .map(|&id| {
            let ty = &g.node(id).ty;
            Arc::new(Tensor::from_f32(&ty.shape, rng.floats(ty.numel(), 2.0)))
        })
        .collect();
    let reference = evaluate(g, &inputs, Keep::Outputs).expect("interpret");
    for target in [Target::tiny(), Target::base()] {
        for precision in [Precision::Fp32, Precision::Bf16] {
            let same_precision = (precision == Precision::Bf16).then(|| {
                let options = EvalOptions {
                    mxu: precision.mxu(),
                    target: Some(target.clone()),
                };
                evaluate_with(g, &inputs, Keep::Outputs, &options).expect("interpret")
            });
            let (outputs, l) = simulate(g, &target, precision, &inputs);
            for (o, ((desc, got), (_, want))) in l
                .outputs
                .iter()
                .zip(outputs)
                .zip(reference.outputs())
                .enumerate()
            {
                let tol = Tolerance::for_precision(precision);
                let c = compare(&got, want, tol).expect("comparable");
                assert!(
                    c.pass,
                    "{} {} {}: {:?}",
                    desc.name,
                    target.name,
                    precision.name(),
                    c.metrics
                );
                if std::env::var_os("SHOW_METRICS").is_some() {
                    eprintln!(
                        "{} {} {}: {:?}",
                        desc.name,
                        target.name,
                        precision.name(),
                        c.metrics
                    );
                }
                if let Some(same) = &same_precision {
                    let want = &same.outputs()[o].1;
                    let c = compare(&got, want, Tolerance::SAME_PRECISION).expect("comparable");
                    assert!(
                        c.pass,
                        "{} {} against the bf16 interpreter: {:?}",
                        desc.name, target.name, c.metrics
                    );
                    if std::env::var_os("SHOW_METRICS").is_some() {
                        eprintln!(
                            "{} {} bf16 vs the bf16 interpreter: {:?}",
                            desc.name, target.name, c.metrics
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn gemm_with_bias_activation_and_transposed_weights() {
    for (trans_b, act) in [
        (false, Some(Activation::Gelu)),
        (true, Some(Activation::Silu)),
        (false, None),
        (true, Some(Activation::GeluTanh)),
    ] {
        let mut rng = Rng(7);
        let mut g = Graph::new("gemm");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![2, 9, 20]))
            .expect("x");
        let w = constant(
            &mut g,
            "w",
            if trans_b { &[19, 20] } else { &[20, 19] },
            &mut rng,
        );
        let b = constant(&mut g, "b", &[19], &mut rng);
        let y = g
            .add_node("y", Op::Gemm { trans_b, act }, &[x, w, b])
            .expect("gemm");
        g.add_output("y", y);
        check(&g, 11);
    }
}

#[test]
fn gemm_of_two_activations() {
    let mut g = Graph::new("gemm2");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![10, 12]))
        .expect("x");
    let w = g
        .add_input("w", TensorType::new(DType::F32, vec![12, 13]))
        .expect("w");
    let y = g
        .add_node(
            "y",
            Op::Gemm {
                trans_b: false,
                act: Some(Activation::Relu),
            },
            &[x, w],
        )
        .expect("gemm");
    g.add_output("y", y);
    check(&g, 12);
}

/// Batch dimensions that broadcast both ways ([3, 1] against [1, 2]), with
/// the right operand an activation and a constant (weights in the MXU type).
#[test]
fn matmul_broadcasting_batches_both_ways() {
    for constant_b in [false, true] {
        let mut rng = Rng(41);
        let mut g = Graph::new("matmul_bcast");
        let a = g
            .add_input("a", TensorType::new(DType::F32, vec![3, 1, 5, 12]))
            .expect("a");
        let b = if constant_b {
            constant(&mut g, "b", &[1, 2, 12, 7], &mut rng)
        } else {
            g.add_input("b", TensorType::new(DType::F32, vec![1, 2, 12, 7]))
                .expect("b")
        };
        let c = g.add_node("c", Op::MatMul, &[a, b]).expect("matmul");
        g.add_output("c", c);
        check(&g, 42);
    }
}

#[allow(clippy::too_many_arguments)] // one argument per dimension
fn attention_graph(
    b: usize,
    h: usize,
    hkv: usize,
    sq: usize,
    sk: usize,
    d: usize,
    mask: Option<Vec<usize>>,
    causal: bool,
) -> Graph {
    let mut g = Graph::new("attention");
    let q = g
        .add_input("q", TensorType::new(DType::F32, vec![b, h, sq, d]))
        .expect("q");
    let k = g
        .add_input("k", TensorType::new(DType::F32, vec![b, hkv, sk, d]))
        .expect("k");
    let v = g
        .add_input("v", TensorType::new(DType::F32, vec![b, hkv, sk, d]))
        .expect("v");
    let mut ops = vec![q, k, v];
    if let Some(shape) = mask {
        ops.push(
            g.add_input("mask", TensorType::new(DType::F32, shape))
                .expect("mask"),
        );
    }
    let o = g
        .add_node(
            "o",
            Op::Attention {
                scale: 1.0 / (d as f32).sqrt(),
                causal,
            },
            &ops,
        )
        .expect("attention");
    g.add_output("o", o);
    g
}

#[test]
fn attention_multi_head() {
    check(&attention_graph(1, 4, 4, 8, 8, 8, None, false), 21);
}

#[test]
fn attention_grouped_query_with_padding_mask() {
    check(
        &attention_graph(2, 4, 2, 6, 6, 16, Some(vec![2, 1, 1, 6]), false),
        22,
    );
}

#[test]
fn attention_causal_with_full_mask_and_long_keys() {
    check(
        &attention_graph(1, 2, 1, 12, 20, 8, Some(vec![12, 20]), false),
        23,
    );
    check(&attention_graph(1, 3, 3, 10, 10, 12, None, true), 24);
}

/// Causal attention in several query blocks on `tiny` (ACC holds few rows):
/// each block's softmax runs over the keys it can see and zeroes P past
/// them, for grouped and per-head K/V, with more keys than queries, and
/// with an additive mask as well.
#[test]
fn causal_attention_skips_the_keys_a_query_block_cannot_see() {
    check(&attention_graph(1, 4, 2, 24, 24, 8, None, true), 25);
    check(&attention_graph(1, 2, 2, 20, 28, 8, None, true), 26);
    check(
        &attention_graph(2, 2, 2, 16, 16, 8, Some(vec![2, 1, 1, 16]), true),
        27,
    );
}

/// Keys too many for whole score rows (or K and V) on `tiny`: the keys
/// stream through an online softmax there (and on `base` the same graphs
/// take the whole-row kernel): plain, causal with more keys than queries
/// (blocks skipped and blocks crossing the diagonal), grouped heads with a
/// mask per query, and a mask row shared by all queries.
#[test]
fn long_key_sequences_stream_through_an_online_softmax() {
    check(&attention_graph(1, 2, 2, 12, 200, 8, None, false), 51);
    check(&attention_graph(1, 2, 1, 64, 84, 16, None, true), 52);
    check(
        &attention_graph(2, 4, 2, 10, 150, 8, Some(vec![2, 1, 10, 150]), false),
        53,
    );
    check(
        &attention_graph(2, 2, 2, 6, 150, 8, Some(vec![2, 1, 1, 150]), true),
        54,
    );
}

/// A decode step: one query row per head against a cache too long for
/// whole rows on either target, so the online kernel takes several weight
/// tiles of keys per block (the last block short, some of its tiles
/// empty); with grouped heads, each KV head's query heads run as the rows
/// of one task (K and V read once per group), under a padding mask row, a
/// mask per head, and causal masking (which hides nothing from the one
/// query row).
#[test]
fn decode_attention_takes_several_key_tiles_per_block() {
    check(&attention_graph(1, 2, 1, 1, 9000, 128, None, false), 57);
    check(
        &attention_graph(1, 4, 2, 1, 301, 16, Some(vec![1, 1, 1, 301]), false),
        58,
    );
    check(
        &attention_graph(2, 4, 2, 1, 301, 16, Some(vec![2, 4, 1, 301]), false),
        59,
    );
    check(&attention_graph(1, 8, 2, 1, 300, 16, None, true), 60);
}

/// Prime query lengths longer than a query block fits: the online kernel
/// runs with a shorter last block (whole-row blocks must divide the length).
#[test]
fn prime_query_lengths_end_in_a_short_query_block() {
    check(&attention_graph(1, 2, 2, 131, 131, 8, None, true), 55);
    check(
        &attention_graph(1, 2, 1, 131, 40, 8, Some(vec![131, 40]), false),
        56,
    );
}

/// A fused elementwise chain runs as one kernel: arithmetic, a special
/// function, a comparison feeding `not` and `where`, a broadcast operand and
/// a scalar constant.
#[test]
fn fused_elementwise_chains_run_as_one_kernel() {
    use tessera_compiler::graph::FusedExpr;
    let mut rng = Rng(61);
    let mut g = Graph::new("fused");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![3, 40]))
        .expect("x");
    let y = g
        .add_input("y", TensorType::new(DType::F32, vec![3, 40]))
        .expect("y");
    let row = constant(&mut g, "row", &[40], &mut rng);
    let half = g
        .add_constant("half", Arc::new(Tensor::from_f32(&[], vec![0.5])))
        .expect("half");
    // where(not(x < y), gelu_tanh(x · row + 0.5), y − x)
    let expr = FusedExpr::parse("x0.x1.less.not.x0.x2.mul.x3.add.gelu_tanh.x1.x0.sub.where")
        .expect("expression");
    let z = g
        .add_node("z", Op::Elementwise { expr }, &[x, y, row, half])
        .expect("elementwise");
    g.add_output("z", z);
    check(&g, 62);
}

#[test]
fn rope_rotates_halves() {
    let mut rng = Rng(5);
    let mut g = Graph::new("rope");
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![1, 2, 6, 8]))
        .expect("x");
    let cos = constant(&mut g, "cos", &[6, 8], &mut rng);
    let sin = constant(&mut g, "sin", &[6, 8], &mut rng);
    let y = g.add_node("y", Op::Rope, &[x, cos, sin]).expect("rope");
    g.add_output("y", y);
    check(&g, 31);
}

#[test]
fn scatter_writes_new_rows_into_a_kv_cache() {
    // past[:, :, 13..16, :] = new, as a KV-cache update exports it, with a
    // negative index and the last row written twice (the later one wins).
    let mut g = Graph::new("kv_update");
    let past = g
        .add_input("past", TensorType::new(DType::F32, vec![1, 2, 16, 8]))
        .expect("past");
    let new = g
        .add_input("new", TensorType::new(DType::F32, vec![1, 2, 4, 8]))
        .expect("new");
    let idx = g
        .add_constant(
            "idx",
            Arc::new(Tensor::from_i64(&[4], vec![13, -2, 15, 15])),
        )
        .expect("idx");
    let y = g
        .add_node("y", Op::Scatter { axis: 2 }, &[past, idx, new])
        .expect("scatter");
    g.add_output("y", y);
    check(&g, 41);
}

#[test]
fn scatter_elements_with_duplicate_indices() {
    let mut g = Graph::new("scatter_elements");
    let data = g
        .add_input("data", TensorType::new(DType::F32, vec![6, 10]))
        .expect("data");
    let upd = g
        .add_input("upd", TensorType::new(DType::F32, vec![6, 3]))
        .expect("upd");
    let ids: Vec<i64> = (0..18).map(|i| (i * 7 % 10) as i64 - 3).collect();
    let idx = g
        .add_constant("idx", Arc::new(Tensor::from_i64(&[6, 3], ids)))
        .expect("idx");
    let y = g
        .add_node("y", Op::ScatterElements { axis: 1 }, &[data, idx, upd])
        .expect("scatter_elements");
    g.add_output("y", y);
    check(&g, 43);
}

#[test]
fn trilu_with_extreme_diagonal_offsets() {
    // k far beyond the matrix (i64 extremes) keeps or zeroes everything,
    // as the interpreter says; the NPU's address arithmetic must not wrap.
    for upper in [false, true] {
        for k in [i64::MAX, i64::MIN, 1 << 40, -(1 << 40), 3, -2] {
            let mut g = Graph::new("trilu");
            let x = g
                .add_input("x", TensorType::new(DType::F32, vec![2, 5, 4]))
                .expect("x");
            let y = g
                .add_node("y", Op::Trilu { upper, k }, &[x])
                .expect("trilu");
            g.add_output("y", y);
            check(&g, 47);
        }
    }
}

#[test]
fn slices_with_extreme_steps() {
    // A step near ±2^63 keeps one element of its dimension; its stride in
    // the copy must not be step × stride (which overflowed).
    for (start, end, step) in [(1, 5, i64::MAX), (3, -1, i64::MIN), (0, 5, 2)] {
        let mut g = Graph::new("slice");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![3, 5, 4]))
            .expect("x");
        let op = Op::Slice {
            starts: vec![0, start, 0],
            ends: vec![3, end, 4],
            steps: vec![1, step, 1],
        };
        let y = g.add_node("y", op, &[x]).expect("slice");
        g.add_output("y", y);
        check(&g, 53);
    }
}

/// A graph of one op over a `[rows, cols]` input (constant operands after
/// it), its output the graph's.
fn row_graph(name: &str, op: Op, rows: usize, cols: usize, vectors: usize) -> Graph {
    let mut rng = Rng(29);
    let mut g = Graph::new(name);
    let x = g
        .add_input("x", TensorType::new(DType::F32, vec![rows, cols]))
        .expect("x");
    let mut operands = vec![x];
    for v in 0..vectors {
        operands.push(constant(&mut g, &format!("v{v}"), &[cols], &mut rng));
    }
    let y = g.add_node("y", op, &operands).expect("node");
    g.add_output("y", y);
    g
}

/// Rows far wider than `tiny`'s 16 KiB of SPM: a vocabulary-sized softmax
/// (131072 values), norms of width 16384 and a long sum run as passes over
/// chunks of the rows.
#[test]
fn rows_wider_than_spm_split_into_passes() {
    check(
        &row_graph("softmax", Op::Softmax { axis: 1 }, 2, 131072, 0),
        31,
    );
    let layer_norm = Op::LayerNorm {
        axis: 1,
        epsilon: 1e-5,
    };
    check(&row_graph("layer_norm", layer_norm, 3, 16384, 2), 32);
    let rms = Op::RmsNorm {
        axis: 1,
        epsilon: 1e-6,
    };
    check(&row_graph("rms_norm", rms, 2, 16384, 1), 33);
    let sum = Op::Reduce {
        kind: tessera_compiler::graph::op::ReduceKind::Sum,
        axes: vec![1],
        keep_dims: true,
    };
    check(&row_graph("sum", sum, 2, 20000, 0), 34);
}

/// K = 16384: a row of A is 64 KiB of f32, four times `tiny`'s SPM, so the
/// GEMM runs as K chunks summed (with the bias and the activation) by the
/// VPU; transposed weights, and a matmul of two activations.
#[test]
fn gemms_deeper_than_spm_split_along_k() {
    for (trans_b, act) in [(false, Some(Activation::Gelu)), (true, None)] {
        let mut rng = Rng(41);
        let mut g = Graph::new("deep_gemm");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![3, 16384]))
            .expect("x");
        let w = constant(
            &mut g,
            "w",
            if trans_b { &[10, 16384] } else { &[16384, 10] },
            &mut rng,
        );
        let b = constant(&mut g, "b", &[10], &mut rng);
        let y = g
            .add_node("y", Op::Gemm { trans_b, act }, &[x, w, b])
            .expect("gemm");
        g.add_output("y", y);
        check(&g, 42);
    }
    // In 8 bits too: each K chunk quantizes its part of A's rows on chip
    // (int8: one scale per row of the chunk; FP8: per 1 × 128 block, the
    // chunks whole blocks, reading their weights' block scales in place).
    for precision in [Precision::Int8, Precision::Fp8E4m3] {
        let mut rng = Rng(44);
        let mut g = Graph::new("deep_gemm_8bit");
        let x = g
            .add_input("x", TensorType::new(DType::F32, vec![3, 16384]))
            .expect("x");
        let w = constant(&mut g, "w", &[16384, 10], &mut rng);
        let gemm = Op::Gemm {
            trans_b: false,
            act: None,
        };
        let y = g.add_node("y", gemm, &[x, w]).expect("gemm");
        g.add_output("y", y);
        let inputs = vec![Arc::new(Tensor::from_f32(
            &[3, 16384],
            rng.floats(3 * 16384, 2.0),
        ))];
        let reference = evaluate(&g, &inputs, Keep::Outputs).expect("interpret");
        let (outputs, _) = simulate(&g, &Target::tiny(), precision, &inputs);
        let got = &outputs[0];
        let tolerance = Tolerance::for_precision(precision);
        let c = compare(got, &reference.outputs()[0].1, tolerance).expect("comparable");
        assert!(c.pass, "{} K-split GEMM: {:?}", precision.name(), c.metrics);
    }

    let mut g = Graph::new("deep_matmul");
    let a = g
        .add_input("a", TensorType::new(DType::F32, vec![2, 5, 16384]))
        .expect("a");
    let b = g
        .add_input("b", TensorType::new(DType::F32, vec![2, 16384, 6]))
        .expect("b");
    let y = g.add_node("y", Op::MatMul, &[a, b]).expect("matmul");
    g.add_output("y", y);
    check(&g, 43);
}
