//! Every model in `models/`: import and fold, interpret on its test data
//! within tolerance, print/parse round trip, and a snapshot of its Graph IR
//! after folding (compact form). Models are discovered, so new ones are
//! covered (and need `cargo insta review` for their first snapshot).

mod common;

use tessera_compiler::graph::parser::parse_graph;
use tessera_compiler::graph::printer::{print_graph, DataMode};
use tessera_compiler::graph::Op;

#[test]
fn models_exist() {
    let names: Vec<String> = common::model_dirs()
        .iter()
        .map(|d| d.file_name().expect("name").to_string_lossy().into_owned())
        .collect();
    for expected in [
        "attention_block",
        "mlp_block",
        "gpt2_ts",
        "bert_dynamo",
        "llama_ts",
        "vit_dynamo",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "models/{expected} is missing: {names:?}"
        );
    }
}

#[test]
fn every_model_matches_onnxruntime_under_the_interpreter() {
    let mut failures = Vec::new();
    for dir in common::model_dirs() {
        let graph = common::import_and_fold(&dir);
        let (checks, _) = common::check_on_test_data(&graph, &dir);
        for c in checks {
            if !c.comparison.pass {
                failures.push(format!("{}: {}", dir.display(), c.line()));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_model_round_trips_through_the_text_form() {
    for dir in common::model_dirs() {
        let graph = common::import_and_fold(&dir);
        let text = print_graph(&graph, DataMode::Full).expect("acyclic");
        let parsed = parse_graph(&text).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        assert!(parsed == graph, "{}: parse(print(g)) != g", dir.display());
        // And the parsed graph computes the same outputs.
        let (_, a) = common::check_on_test_data(&graph, &dir);
        let (_, b) = common::check_on_test_data(&parsed, &dir);
        assert_eq!(a, b, "{}", dir.display());
    }
}

#[test]
fn folding_leaves_only_real_computation() {
    for dir in common::model_dirs() {
        let graph = common::import_and_fold(&dir);
        for id in graph.node_ids() {
            let node = graph.node(id);
            if matches!(node.op, Op::Input | Op::Constant(_)) {
                continue;
            }
            let operands = graph.operands(id);
            let all_constant = operands
                .iter()
                .all(|&o| matches!(graph.node(o).op, Op::Constant(_)));
            assert!(
                !all_constant,
                "{}: `{}` could have been folded",
                dir.display(),
                node.name
            );
        }
    }
}

#[test]
fn graph_ir_snapshots() {
    let mut settings = insta::Settings::clone_current();
    settings.set_prepend_module_to_snapshot(false);
    settings.bind(|| {
        for dir in common::model_dirs() {
            let name = dir
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            let graph = common::import_and_fold(&dir);
            let text = print_graph(&graph, DataMode::Compact).expect("acyclic");
            insta::assert_snapshot!(format!("graph_{name}"), text);
        }
    });
}
