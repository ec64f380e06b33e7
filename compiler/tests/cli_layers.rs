//! `check --compare-all`, `--dump-tensors`, `run --dump-tensors` and
//! `tessera compare`: the per-tensor debugging workflow through the binary.

mod common;

use std::path::PathBuf;
use std::process::Output;

use common::{stderr, stdout, tessera};
use tessera_compiler::tensor::{read_npy, write_npy, Tensor};

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-cli-layers-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    let path = dir.join(name);
    let _ = std::fs::remove_dir_all(&path);
    path
}

fn path(p: &std::path::Path) -> String {
    p.display().to_string()
}

const AB: &str = "models/attention_block/model.onnx";
const AB_DATA: &str = "models/attention_block/test_data_set_0";

/// Exit code 1 with one `error:` line containing `needle`.
fn assert_user_error(out: &Output, needle: &str) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("error: ") && err.contains(needle), "{err}");
}

#[test]
fn compare_all_table_of_the_attention_block() {
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--target",
        "tiny",
        "--precision",
        "fp32",
        "--compare-all",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    insta::assert_snapshot!("compare_all_attention_block", stdout(&out));
}

#[test]
fn profile_by_onnx_op_types_of_gpt2() {
    let out = tessera(&[
        "check",
        "models/gpt2_ts/model.onnx",
        "--data",
        "models/gpt2_ts/test_data_set_0",
        "--target",
        "tiny",
        "--stats",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let start = text
        .find("profile by ONNX op types")
        .expect("op-type profile");
    let section: String = text[start..]
        .lines()
        .take_while(|l| !l.starts_with("logits"))
        .map(|l| format!("{l}\n"))
        .collect();
    insta::assert_snapshot!("profile_by_op_type_gpt2_ts", section);
    // Each kernel row names the ONNX ops fused into it.
    assert!(
        text.contains(
            "/m/transformer/h.0/mlp/act/Mul_3  [Reshape + Gemm + Mul + Pow + Add + Tanh]"
        ),
        "{text}"
    );
}

#[test]
fn csv_lists_tensors_fused_values_and_compile_time_nodes() {
    let csv = scratch("ab.csv");
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--target",
        "tiny",
        "--compare-all",
        "--csv",
        &path(&csv),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = std::fs::read_to_string(&csv).expect("csv");
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("index,value,node,kernel,op,onnx_nodes,onnx_ops,"));
    let status = |s: &str| {
        lines
            .iter()
            .filter(|l| l.contains(&format!(",{s},")))
            .count()
    };
    assert_eq!(status("pass"), 5, "{text}");
    assert_eq!(status("fused"), 15, "{text}");
    assert!(lines
        .iter()
        .any(|l| l.starts_with("4,ctx_t,merge_transpose,PV,attention,")));
}

#[test]
fn a_dump_compared_with_itself_is_exact_and_with_a_scaled_copy_is_off_by_the_scale() {
    let dump = scratch("dump");
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--target",
        "tiny",
        "--precision",
        "fp32",
        "--dump-tensors",
        &path(&dump),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).contains("wrote 5 tensors to"),
        "{}",
        stdout(&out)
    );
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dump.join("index.json")).expect("index"))
            .expect("json");
    let names: Vec<&str> = index["tensors"]
        .as_array()
        .expect("list")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .collect();
    assert_eq!(names, ["q_b", "k_b", "v_b", "ctx_t", "y"]);

    let same = tessera(&[
        "compare",
        &path(&dump),
        &path(&dump),
        "--tolerance",
        "exact",
    ]);
    assert_eq!(same.status.code(), Some(0), "{}", stderr(&same));
    let text = stdout(&same);
    assert_eq!(text.matches("  ok  ").count(), 5, "{text}");
    assert_eq!(text.matches(" inf ").count(), 5, "{text}");
    assert!(
        text.contains("5 of 5 matched tensors within tolerance"),
        "{text}"
    );

    // y scaled by 1.01: relative L2 0.01, SQNR 40 dB, cosine 1.
    let copy = scratch("dump-scaled");
    std::fs::create_dir_all(&copy).expect("copy dir");
    for entry in std::fs::read_dir(&dump).expect("dump") {
        let from = entry.expect("entry").path();
        std::fs::copy(&from, copy.join(from.file_name().expect("name"))).expect("copy");
    }
    let y = read_npy(&copy.join("y.npy")).expect("y");
    let scaled: Vec<f32> = y.to_f32_vec().iter().map(|v| v * 1.01).collect();
    write_npy(&Tensor::from_f32(y.shape(), scaled), &copy.join("y.npy")).expect("write");
    let csv = scratch("scaled.csv");
    let out = tessera(&["compare", &path(&copy), &path(&dump), "--csv", &path(&csv)]);
    assert_user_error(&out, "tensor `y` is out of tolerance (1 of 5 differ)");
    let rows = std::fs::read_to_string(&csv).expect("csv");
    let y_row: Vec<&str> = rows
        .lines()
        .find(|l| l.starts_with("5,y,"))
        .expect("y row")
        .split(',')
        .collect();
    let num = |i: usize| y_row[i].parse::<f64>().expect("number");
    assert!((num(4) - 1.0).abs() < 1e-9, "cosine {}", y_row[4]);
    assert!((num(5) - 40.0).abs() < 0.01, "SQNR {}", y_row[5]);
    assert!((num(7) - 0.01).abs() < 1e-5, "rel_l2 {}", y_row[7]);
    assert_eq!(y_row[8], "fail");
    assert!(stdout(&out).contains("FAIL"));
}

#[test]
fn run_dumps_the_same_tensors_as_check_and_the_interpreter_agrees() {
    let program = scratch("ab.tnpu");
    let out = tessera(&[
        "compile",
        AB,
        "--target",
        "tiny",
        "--precision",
        "fp32",
        "-o",
        &path(&program),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_run = scratch("from-run");
    let out = tessera(&[
        "run",
        &path(&program),
        "--data",
        AB_DATA,
        "--dump-tensors",
        &path(&from_run),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let from_check = scratch("from-check");
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--target",
        "tiny",
        "--precision",
        "fp32",
        "--dump-tensors",
        &path(&from_check),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = tessera(&[
        "compare",
        &path(&from_run),
        &path(&from_check),
        "--tolerance",
        "exact",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );

    let interpreted = scratch("interpreted");
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--interpret",
        "--dump-tensors",
        &path(&interpreted),
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = tessera(&["compare", &path(&from_run), &path(&interpreted)]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        stdout(&out),
        stderr(&out)
    );
    let text = stdout(&out);
    assert!(
        text.contains("5 of 5 matched tensors within tolerance"),
        "{text}"
    );
    assert!(
        text.contains("only B: probs") || text.contains("only B: q_4d"),
        "{text}"
    );
}

/// Every tensor a bf16 GPT-2 program computes equals, bit for bit, the
/// bf16 reference's value (`check --interpret --precision bf16`), and a
/// bf16 `--compare-all` judges the outputs against that reference too.
#[test]
fn a_bf16_program_dump_equals_the_bf16_reference_dump() {
    let model = "models/gpt2_ts/model.onnx";
    let data = "models/gpt2_ts/test_data_set_0";
    let bf16 = ["--target", "tiny", "--precision", "bf16"];
    let dump = |extra: &[&str], dir: &PathBuf| {
        let mut args = vec!["check", model, "--data", data];
        args.extend(bf16);
        args.extend(extra);
        let dir = path(dir);
        args.extend(["--dump-tensors", &dir]);
        let out = tessera(&args);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let program = scratch("gpt2-bf16-program");
    let text = dump(&["--compare-all"], &program);
    assert!(text.contains("21 of 21 tensors within tolerance"), "{text}");
    assert!(text.contains("logits vs bf16 reference:"), "{text}");
    assert!(text.contains("logits vs expected:"), "{text}");
    let reference = scratch("gpt2-bf16-reference");
    dump(&["--interpret"], &reference);
    let out = tessera(&[
        "compare",
        &path(&program),
        &path(&reference),
        "--tolerance",
        "exact",
    ]);
    let text = stdout(&out);
    assert_eq!(out.status.code(), Some(0), "{text}{}", stderr(&out));
    assert!(
        text.contains("21 of 21 matched tensors within tolerance"),
        "{text}"
    );
    assert!(text.contains("0 only in"), "{text}");
}

#[test]
fn bad_dumps_and_flags_are_one_line_errors() {
    let missing = scratch("missing");
    let out = tessera(&["compare", &path(&missing), &path(&missing)]);
    assert_user_error(&out, "missing");

    let evil = scratch("evil");
    std::fs::create_dir_all(&evil).expect("dir");
    std::fs::write(
        evil.join("index.json"),
        r#"{"tensors": [{"name": "x", "file": "../x.npy"}]}"#,
    )
    .expect("index");
    let out = tessera(&["compare", &path(&evil), &path(&evil)]);
    assert_user_error(&out, "is not a file name in the dump");

    for (index, needle) in [
        ("{", "not a tensor index"),
        (r#"{"tensors": 5}"#, "no `tensors` list"),
        (
            r#"{"tensors": [{"name": 1, "file": "x.npy"}]}"#,
            "entry 0 needs string fields",
        ),
        (r#"{"tensors": [{"name": "x", "file": "x.npy"}]}"#, "x.npy"),
    ] {
        std::fs::write(evil.join("index.json"), index).expect("index");
        let out = tessera(&["compare", &path(&evil), &path(&evil)]);
        assert_user_error(&out, needle);
    }
    std::fs::write(evil.join("index.json"), r#"{"tensors": []}"#).expect("index");
    std::fs::write(evil.join("x.npy"), b"\x93NUMPY garbage").expect("npy");
    let out = tessera(&["compare", &path(&evil), &path(&evil)]);
    assert_user_error(&out, "no tensor of");

    let assembled = scratch("gemm.tnpu");
    let out = tessera(&[
        "asm",
        "isa/examples/gemm.s",
        "-o",
        &path(&assembled),
        "--target",
        "tiny",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = tessera(&[
        "run",
        &path(&assembled),
        "--input",
        "A=x.npy",
        "--dump-tensors",
        &path(&scratch("none")),
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));

    let out = tessera(&["check", AB, "--data", AB_DATA, "--csv", "x.csv"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "--csv needs --compare-all: {}",
        stderr(&out)
    );
    let out = tessera(&[
        "check",
        AB,
        "--data",
        AB_DATA,
        "--interpret",
        "--compare-all",
    ]);
    assert_user_error(&out, "leave out --interpret");
}
