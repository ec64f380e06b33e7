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
//!
//! The loop and byte mutations are in `harness.rs`, the ONNX model
//! mutations in `onnx.rs`.

use tessera_isa::{assemble, Loadable, Target};
use tessera_sim::{Options, Simulator};

mod harness;
mod onnx;

use harness::{examples, fuzz, fuzz_with, mutate, read, repo};
use onnx::{mutate_model, onnx_seeds};

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
/// now fails cleanly: import, the passes or lowering for `tiny` return an
/// error containing the text of its `.expected` file.
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
                    Ok(_) => match tessera_compiler::driver::compile_graph(
                        &graph,
                        &Target::tiny(),
                        tessera_compiler::precision::Precision::Fp32,
                    ) {
                        Err(e) => e.to_string(),
                        Ok(_) => panic!("{}: compiled without an error", path.display()),
                    },
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
