//! The e-graph optimizer through the `tessera` binary: `--emit egraph`,
//! `--report`, `--no-egraph`, `--egraph-rule-limit`, the `egraph` dump
//! stage, and `check --interpret` with and without the optimizer.

mod common;

use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(common::repo())
        .output()
        .expect("runs tessera")
}

fn ok(out: &Output) -> String {
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

const MLP: &str = "models/mlp_block/model.onnx";

#[test]
fn emit_graph_is_before_and_emit_egraph_after_the_optimizer() {
    let before = ok(&tessera(&["compile", MLP, "--emit", "graph"]));
    assert!(
        before.contains(" = erf(") && before.contains(" = matmul("),
        "{before}"
    );
    let after = ok(&tessera(&["compile", MLP, "--emit", "egraph"]));
    assert!(after.starts_with("graph mlp_block {"), "{after}");
    assert!(
        after.contains("act = gelu}") && !after.contains(" = erf(") && !after.contains("matmul("),
        "{after}"
    );
    let skipped = ok(&tessera(&[
        "compile",
        MLP,
        "--emit",
        "egraph",
        "--no-egraph",
    ]));
    assert_eq!(skipped, before, "--no-egraph leaves the graph as imported");
}

#[test]
fn report_lists_rules_costs_size_stop_reason_and_time() {
    let text = ok(&tessera(&[
        "compile",
        "models/llama_ts/model.onnx",
        "--report",
        "--target",
        "tiny",
    ]));
    for needle in [
        "e-graph: target tiny, MXU bf16",
        "cost: ",
        "largest e-graph: ",
        "stop reasons: saturated",
        "rules fired",
        "rms-norm ",
        "attention-grouped-kv ",
        "time: ",
    ] {
        assert!(text.contains(needle), "`{needle}` not in:\n{text}");
    }
    let skipped = ok(&tessera(&["compile", MLP, "--report", "--no-egraph"]));
    assert_eq!(skipped, "e-graph: skipped (--no-egraph)\n");
}

#[test]
fn the_rule_limit_bisects_from_the_command_line() {
    let model = "models/llama_dynamo/model.onnx";
    let before = ok(&tessera(&["compile", model, "--emit", "graph"]));
    let none = ok(&tessera(&[
        "compile",
        model,
        "--emit",
        "egraph",
        "--egraph-rule-limit",
        "0",
    ]));
    assert_eq!(none, before);
    let three = ok(&tessera(&[
        "compile",
        model,
        "--report",
        "--egraph-rule-limit",
        "3",
    ]));
    assert!(three.contains("rule limit: 3 (3 fired; last: `"), "{three}");
}

#[test]
fn dumps_include_the_egraph_stage_unless_skipped() {
    let dir = std::env::temp_dir().join(format!("tessera-egraph-dump-{}", std::process::id()));
    let dir_arg = dir.display().to_string();
    ok(&tessera(&[
        "compile",
        MLP,
        "--dump-dir",
        &dir_arg,
        "--no-egraph",
    ]));
    assert!(dir.join("02-fold.graph").is_file());
    assert!(!dir.join("03-egraph.graph").exists());
    ok(&tessera(&["compile", MLP, "--dump-dir", &dir_arg]));
    let egraph = std::fs::read_to_string(dir.join("03-egraph.graph")).expect("egraph dump");
    assert!(egraph.contains("gemm("), "{egraph}");
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn check_interpret_passes_with_and_without_the_optimizer() {
    for dir in common::model_dirs() {
        let model = dir.join("model.onnx").display().to_string();
        let data = dir.join("test_data_set_0").display().to_string();
        for extra in [None, Some("--no-egraph")] {
            let mut args = vec![
                "check".to_string(),
                model.clone(),
                "--data".into(),
                data.clone(),
                "--interpret".into(),
            ];
            args.extend(extra.map(String::from));
            args.extend(common::dim_args(&dir));
            let argv: Vec<&str> = args.iter().map(String::as_str).collect();
            let text = ok(&tessera(&argv));
            assert!(text.contains("outputs within tolerance"), "{text}");
        }
    }
}
