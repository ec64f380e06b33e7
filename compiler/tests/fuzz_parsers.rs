//! Mutation fuzzing of every parser a user's file reaches: the `.tnpu`
//! reader (and the simulator on what it accepts), the assembler, target
//! files, the Graph IR text parser and the ONNX importer (with every pass
//! after it). Each input comes from a committed
//! seed mutated by a deterministic generator; every parser must return
//! `Ok` or `Err` — a panic, or one input taking more than
//! `SLOW_INPUT` seconds, fails the test and writes the input to
//! `target/fuzz-failures/` for a regression test.
//!
//! By default each target runs a few hundred inputs (part of `cargo
//! test`). `TESSERA_FUZZ_SECONDS=600 cargo test --release -p
//! tessera-compiler --test fuzz_parsers` runs each target for that long.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use tessera_isa::{assemble, Loadable, Target};
use tessera_sim::{Options, Simulator};

/// An input taking longer than this is a hang.
const SLOW_INPUT: Duration = Duration::from_secs(10);

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(relative: &str) -> Vec<u8> {
    let path = repo().join(relative);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// xorshift64*: deterministic, seedable.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// Values that break parsers: boundaries of every width, as bytes.
const INTERESTING: &[u64] = &[
    0,
    1,
    0x7f,
    0x80,
    0xff,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0xffff_ffff,
    1 << 32,
    1 << 40,
    0x7fff_ffff_ffff_ffff,
    u64::MAX,
];

/// Decimal tokens for text formats.
const INTERESTING_TEXT: &[&str] = &[
    "0",
    "-1",
    "4294967296",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "1e308",
    "nan",
    "",
    "[",
    "]",
    "{",
    "\"",
    "\n",
];

/// One mutation of `seed` (several edits), sometimes spliced with another
/// seed.
fn mutate(rng: &mut Rng, seeds: &[Vec<u8>], text: bool) -> Vec<u8> {
    let mut v = seeds[rng.below(seeds.len())].clone();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(v.len() + 1);
        match rng.below(8) {
            0 if !v.is_empty() => {
                let at = at.min(v.len() - 1);
                v[at] ^= 1 << rng.below(8);
            }
            1 if !v.is_empty() => {
                let at = at.min(v.len() - 1);
                v[at] = rng.next() as u8;
            }
            2 => {
                let end = (at + 1 + rng.below(16)).min(v.len());
                v.drain(at.min(end)..end);
            }
            3 => v.truncate(at),
            4 => {
                let other = &seeds[rng.below(seeds.len())];
                let from = rng.below(other.len());
                let len = rng.below(64).min(other.len() - from);
                let piece = other[from..from + len].to_vec();
                v.splice(at..at, piece);
            }
            5 if text => {
                let token = INTERESTING_TEXT[rng.below(INTERESTING_TEXT.len())];
                v.splice(at..at, token.bytes());
            }
            5 | 6 => {
                let value = INTERESTING[rng.below(INTERESTING.len())];
                let width = [1, 2, 4, 8][rng.below(4)];
                let end = (at + width).min(v.len());
                let bytes = value.to_le_bytes();
                v.splice(at..end, bytes[..width].iter().copied());
            }
            _ => {
                // Duplicate a run (repetition finds size and count bugs).
                let end = (at + rng.below(32)).min(v.len());
                let piece = v[at.min(end)..end].to_vec();
                v.splice(at..at, piece);
            }
        }
    }
    v
}

fn failure_dir() -> PathBuf {
    repo().join("target").join("fuzz-failures")
}

/// Runs `check` on mutated seeds: a few hundred inputs, or for
/// `TESSERA_FUZZ_SECONDS` seconds.
fn fuzz(name: &str, seeds: Vec<Vec<u8>>, text: bool, check: impl Fn(&[u8])) {
    fuzz_with(name, seeds, |rng, seeds| mutate(rng, seeds, text), check);
}

/// [`fuzz`] with the mutator `next` (given the generator and the seeds).
fn fuzz_with(
    name: &str,
    seeds: Vec<Vec<u8>>,
    mut next: impl FnMut(&mut Rng, &[Vec<u8>]) -> Vec<u8>,
    check: impl Fn(&[u8]),
) {
    let budget = std::env::var("TESSERA_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut runs = 0u64;
    loop {
        match budget {
            Some(s) if started.elapsed() >= Duration::from_secs(s) => break,
            None if runs >= 300 => break,
            _ => {}
        }
        // Every seed first in a long run; a sample of them by default.
        let plain = if budget.is_some() {
            seeds.len()
        } else {
            seeds.len().min(100)
        };
        let input = if runs < plain as u64 {
            seeds[runs as usize].clone()
        } else {
            next(&mut rng, &seeds)
        };
        if budget.is_some() {
            // What an abort (which no unwind catches) leaves behind.
            std::fs::create_dir_all(failure_dir()).ok();
            std::fs::write(failure_dir().join(format!("{name}-current.bin")), &input).ok();
        }
        let t0 = Instant::now();
        let outcome = catch_unwind(AssertUnwindSafe(|| check(&input)));
        let slow = t0.elapsed() > SLOW_INPUT;
        if outcome.is_err() || slow {
            let dir = failure_dir();
            std::fs::create_dir_all(&dir).ok();
            let path = dir.join(format!("{name}-{runs}.bin"));
            std::fs::write(&path, &input).ok();
            panic!(
                "{name}: input {runs} {} (saved to {})",
                if slow { "took too long" } else { "panicked" },
                path.display()
            );
        }
        runs += 1;
    }
    if budget.is_some() {
        eprintln!(
            "{name}: {runs} inputs in {:.0} s, no failure",
            started.elapsed().as_secs_f64()
        );
    }
}

fn examples() -> Vec<Vec<u8>> {
    let mut names: Vec<PathBuf> = std::fs::read_dir(repo().join("isa/examples"))
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "s"))
        .collect();
    names.sort();
    names
        .iter()
        .map(|p| std::fs::read(p).expect("example"))
        .collect()
}

#[test]
fn assembler_never_panics() {
    fuzz("asm", examples(), true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        let _ = assemble(&text, "fuzz.s", Some(&Target::tiny()));
    });
}

#[test]
fn loadable_reader_and_simulator_never_panic() {
    let seeds: Vec<Vec<u8>> = examples()
        .iter()
        .map(|s| {
            assemble(&String::from_utf8_lossy(s), "seed.s", Some(&Target::tiny()))
                .expect("examples assemble")
                .to_bytes()
        })
        .collect();
    fuzz("tnpu", seeds, false, |bytes| {
        if let Ok(loadable) = Loadable::from_bytes(bytes) {
            if let Ok(mut sim) = Simulator::new(loadable) {
                let _ = sim.run(&Options {
                    max_cycles: 20_000,
                    ..Default::default()
                });
            }
        }
    });
}

#[test]
fn target_files_never_panic() {
    let seeds: Vec<Vec<u8>> = Target::PRESETS
        .iter()
        .map(|p| Target::preset(p).expect("preset").to_toml().into_bytes())
        .collect();
    let dir = std::env::temp_dir().join(format!("tessera-fuzz-target-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("t.toml");
    fuzz("target", seeds, true, |bytes| {
        std::fs::write(&path, bytes).expect("write");
        if let Ok(target) = Target::from_file(&path) {
            // An accepted target must also be usable: a tiny program runs.
            let l = assemble("li r1, 1\nhalt\n", "t.s", Some(&target)).expect("assembles");
            if let Ok(mut sim) = Simulator::new(l) {
                let _ = sim.run(&Options::default());
            }
        }
    });
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn graph_ir_parser_never_panics() {
    let mut seeds = Vec::new();
    for dir in std::fs::read_dir(repo().join("compiler/tests/filetests")).expect("filetests") {
        let path = dir.expect("entry").path();
        if path.extension().is_some_and(|e| e == "graph") {
            seeds.push(std::fs::read(&path).expect("filetest"));
        }
    }
    seeds.sort();
    assert!(!seeds.is_empty());
    fuzz("graph", seeds, true, |bytes| {
        let text = String::from_utf8_lossy(bytes);
        if let Ok(g) = tessera_compiler::graph::parser::parse_graph(&text) {
            let _ = tessera_compiler::driver::compile_graph(
                &g,
                &Target::tiny(),
                tessera_compiler::precision::Precision::Fp32,
            );
        }
    });
    let _ = read;
}

/// ONNX models the importer fuzzer starts from: the fixtures, every
/// conformance model under 8 KiB (one or a few nodes of each op, so the
/// mutations reach every importer) and the two small transformer blocks.
fn onnx_seeds() -> Vec<Vec<u8>> {
    let mut paths = Vec::new();
    for dir in ["models/fixtures", "tests/conformance/node"] {
        for entry in std::fs::read_dir(repo().join(dir)).expect("model directory") {
            let model = entry.expect("entry").path().join("model.onnx");
            if std::fs::metadata(&model).is_ok_and(|m| m.len() <= 8192) {
                paths.push(model);
            }
        }
    }
    paths.sort();
    paths.push(repo().join("models/attention_block/model.onnx"));
    paths.push(repo().join("models/mlp_block/model.onnx"));
    paths
        .iter()
        .map(|p| std::fs::read(p).expect("model"))
        .collect()
}

/// Signed values that break shape, axis and count arithmetic.
const INTERESTING_I64: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    -2,
    7,
    255,
    1 << 31,
    -(1 << 31),
    1 << 32,
    1 << 62,
    i64::MAX,
    i64::MIN,
];

const INTERESTING_F32: &[f32] = &[
    0.0,
    -0.0,
    1.0,
    -1.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MAX,
    f32::MIN_POSITIVE,
    1e-45,
];

fn pick<T: Copy>(rng: &mut Rng, values: &[T]) -> T {
    values[rng.below(values.len())]
}

/// Sets one element of `v` (or appends, or drops one) to an interesting value.
fn mutate_i64s(rng: &mut Rng, v: &mut Vec<i64>) {
    match rng.below(4) {
        0 if !v.is_empty() => {
            v.pop();
        }
        1 => v.push(pick(rng, INTERESTING_I64)),
        _ if v.is_empty() => v.push(pick(rng, INTERESTING_I64)),
        _ => {
            let at = rng.below(v.len());
            v[at] = pick(rng, INTERESTING_I64);
        }
    }
}

/// Mutates a tensor's header or one of its values.
fn mutate_tensor(rng: &mut Rng, t: &mut onnx_protobuf::TensorProto) {
    match rng.below(5) {
        0 => mutate_i64s(rng, &mut t.dims),
        1 => t.data_type = rng.below(24) as i32,
        2 if t.raw_data.len() >= 8 => {
            let at = rng.below(t.raw_data.len() / 8) * 8;
            let value = pick(rng, INTERESTING_I64).to_le_bytes();
            t.raw_data[at..at + 8].copy_from_slice(&value);
        }
        2 if !t.raw_data.is_empty() => {
            let at = rng.below(t.raw_data.len());
            t.raw_data[at] = rng.next() as u8;
        }
        3 if !t.int64_data.is_empty() => mutate_i64s(rng, &mut t.int64_data),
        3 if !t.float_data.is_empty() => {
            let at = rng.below(t.float_data.len());
            t.float_data[at] = pick(rng, INTERESTING_F32);
        }
        _ => {
            let keep = rng.below(t.raw_data.len() + 1);
            t.raw_data.truncate(keep);
        }
    }
}

/// One structural mutation of a decoded model: an attribute, an
/// initializer, an op type, a node's wiring, a declared shape or the opset.
/// Returns `None` when `bytes` is not a model.
fn mutate_model(rng: &mut Rng, bytes: &[u8], op_types: &[String]) -> Option<Vec<u8>> {
    use onnx_protobuf::Message as _;
    let mut model = onnx_protobuf::ModelProto::parse_from_bytes(bytes).ok()?;
    for _ in 0..1 + rng.below(3) {
        let graph = model.graph.mut_or_insert_default();
        let names: Vec<String> = graph
            .node
            .iter()
            .flat_map(|n| n.input.iter().chain(&n.output).cloned())
            .chain(graph.initializer.iter().map(|t| t.name.clone()))
            .collect();
        match rng.below(8) {
            0..=2 if !graph.node.is_empty() => {
                let n = rng.below(graph.node.len());
                let node = &mut graph.node[n];
                if node.attribute.is_empty() || rng.below(4) == 0 {
                    // A wiring change: another value, none, one more or one less.
                    match rng.below(4) {
                        0 if !node.input.is_empty() => {
                            node.input.pop();
                        }
                        1 if !names.is_empty() => {
                            node.input.push(names[rng.below(names.len())].clone())
                        }
                        2 if !node.input.is_empty() => {
                            let at = rng.below(node.input.len());
                            node.input[at] = String::new();
                        }
                        _ if !node.input.is_empty() && !names.is_empty() => {
                            let at = rng.below(node.input.len());
                            node.input[at] = names[rng.below(names.len())].clone();
                        }
                        _ => node.output.push(format!("extra{}", rng.below(4))),
                    }
                    continue;
                }
                let a = rng.below(node.attribute.len());
                let attr = &mut node.attribute[a];
                match rng.below(5) {
                    0 => attr.i = pick(rng, INTERESTING_I64),
                    1 => mutate_i64s(rng, &mut attr.ints),
                    2 => attr.f = pick(rng, INTERESTING_F32),
                    3 if attr.t.is_some() => mutate_tensor(rng, attr.t.mut_or_insert_default()),
                    _ => attr.type_ = protobuf::EnumOrUnknown::from_i32(rng.below(16) as i32),
                }
            }
            3 if !graph.node.is_empty() && !op_types.is_empty() => {
                let n = rng.below(graph.node.len());
                graph.node[n].op_type = op_types[rng.below(op_types.len())].clone();
            }
            4 if !graph.initializer.is_empty() => {
                let t = rng.below(graph.initializer.len());
                mutate_tensor(rng, &mut graph.initializer[t]);
            }
            5 if !graph.input.is_empty() || !graph.output.is_empty() => {
                let list =
                    if graph.output.is_empty() || (!graph.input.is_empty() && rng.below(2) == 0) {
                        &mut graph.input
                    } else {
                        &mut graph.output
                    };
                let v = rng.below(list.len());
                let tensor = list[v].type_.mut_or_insert_default().mut_tensor_type();
                match rng.below(3) {
                    0 => tensor.elem_type = rng.below(24) as i32,
                    _ => {
                        let shape = tensor.shape.mut_or_insert_default();
                        if shape.dim.is_empty() || rng.below(4) == 0 {
                            shape.dim.push(Default::default());
                        }
                        let d = rng.below(shape.dim.len());
                        if rng.below(3) == 0 {
                            shape.dim[d].set_dim_param("seq".into());
                        } else {
                            shape.dim[d].set_dim_value(pick(rng, INTERESTING_I64));
                        }
                    }
                }
            }
            6 if !model.opset_import.is_empty() => {
                let o = rng.below(model.opset_import.len());
                model.opset_import[o].version =
                    pick(rng, &[1, 6, 7, 9, 10, 11, 12, 13, 17, 18, 21, 22, 99]);
            }
            _ if graph.node.len() > 1 => {
                let n = rng.below(graph.node.len());
                graph.node.remove(n);
            }
            _ => {}
        }
    }
    model.write_to_bytes().ok()
}

/// The importer and every pass after it on mutated models: byte-level
/// mutations test the protobuf reader, structural ones (interesting
/// attribute values, shapes, dtypes, op types, rewiring) the op importers,
/// shape inference, folding, the e-graph and lowering; small float models
/// also run on the interpreter.
#[test]
fn onnx_importer_and_passes_never_panic() {
    use onnx_protobuf::Message as _;
    use std::sync::Arc;
    use tessera_compiler::frontend::{import_bytes, ImportOptions};
    use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
    use tessera_compiler::tensor::{DType, Tensor};
    use tessera_isa::MxuType;

    let seeds = onnx_seeds();
    let mut op_types: Vec<String> = seeds
        .iter()
        .filter_map(|b| onnx_protobuf::ModelProto::parse_from_bytes(b).ok())
        .flat_map(|m| {
            m.graph
                .node
                .iter()
                .map(|n| n.op_type.clone())
                .collect::<Vec<_>>()
        })
        .collect();
    op_types.sort();
    op_types.dedup();
    let mut options = ImportOptions::default();
    for dim in ["seq", "batch", "N", "sequence", "past"] {
        options.dims.insert(dim.into(), 3);
    }
    let passes = PassOptions::for_target(Target::tiny(), MxuType::F32);
    // How far inputs got: imported, through the passes, interpreted, compiled.
    let reached = std::cell::Cell::new([0u64; 4]);
    let count = |stage: usize| {
        let mut r = reached.get();
        r[stage] += 1;
        reached.set(r);
    };
    fuzz_with(
        "onnx",
        seeds,
        |rng, seeds| {
            let seed = &seeds[rng.below(seeds.len())];
            match rng.below(3) {
                0 => mutate(rng, seeds, false),
                _ => mutate_model(rng, seed, &op_types).unwrap_or_else(|| seed.clone()),
            }
        },
        |bytes| {
            let Ok(mut graph) = import_bytes(bytes, None, &options) else {
                return;
            };
            count(0);
            if run_graph_passes_with(&mut graph, &passes, |_, _, _| {}).is_err() {
                return;
            }
            count(1);
            let inputs: Option<Vec<Arc<Tensor>>> = graph
                .inputs()
                .iter()
                .map(|&id| {
                    let ty = &graph.node(id).ty;
                    (ty.dtype == DType::F32 && ty.numel() <= 1 << 16)
                        .then(|| Arc::new(Tensor::from_f32(&ty.shape, vec![0.5; ty.numel()])))
                })
                .collect();
            if let Some(inputs) = inputs {
                let run = tessera_compiler::interp::evaluate(
                    &graph,
                    &inputs,
                    tessera_compiler::interp::Keep::Outputs,
                );
                if run.is_ok() {
                    count(2);
                }
            }
            let compiled = tessera_compiler::driver::compile_graph(
                &graph,
                &Target::tiny(),
                tessera_compiler::precision::Precision::Fp32,
            );
            if compiled.is_ok() {
                count(3);
            }
        },
    );
    let [imported, passed, interpreted, compiled] = reached.get();
    eprintln!(
        "onnx: {imported} imported, {passed} through the passes, {interpreted} interpreted, {compiled} compiled"
    );
}

/// Every input a fuzzer found (`compiler/tests/fuzz-regressions/onnx-*.onnx`)
/// now fails cleanly: import and the passes return an error containing the
/// text of its `.expected` file.
#[test]
fn onnx_fuzz_findings_are_clean_errors() {
    use tessera_compiler::frontend::{import_bytes, ImportOptions};
    use tessera_compiler::passes::{run_graph_passes_with, PassOptions};
    let dir = repo().join("compiler/tests/fuzz-regressions");
    let mut found = 0;
    for entry in std::fs::read_dir(&dir).expect("regressions") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "onnx") {
            continue;
        }
        found += 1;
        let expected = std::fs::read_to_string(path.with_extension("expected"))
            .unwrap_or_else(|e| panic!("{}: {e}", path.with_extension("expected").display()));
        let mut options = ImportOptions::default();
        options.dims.insert("seq".into(), 3);
        let bytes = std::fs::read(&path).expect("read");
        let error = match import_bytes(&bytes, None, &options) {
            Err(e) => e.to_string(),
            Ok(mut graph) => {
                match run_graph_passes_with(&mut graph, &PassOptions::default(), |_, _, _| {}) {
                    Err(e) => e.to_string(),
                    Ok(_) => panic!(
                        "{}: imported and optimized without an error",
                        path.display()
                    ),
                }
            }
        };
        assert!(
            error.contains(expected.trim()),
            "{}: `{error}` does not contain `{}`",
            path.display(),
            expected.trim()
        );
    }
    assert!(found > 0);
}
