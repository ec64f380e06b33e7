//! The `tessera` binary: `compile` and `check` on real models, and every
//! bad input from the acceptance list: exit 1 with one line naming the
//! problem, never a panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .current_dir(common::repo())
        .output()
        .expect("runs tessera")
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Asserts exit code 1 and a single `error:` line containing `needles`.
fn assert_user_error(out: &Output, needles: &[&str]) {
    let err = stderr(out);
    assert_eq!(out.status.code(), Some(1), "stderr: {err}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    for needle in needles {
        assert!(err.contains(needle), "`{needle}` not in: {err}");
    }
}

#[test]
fn check_interpret_passes_on_every_model() {
    for dir in common::model_dirs() {
        let model = dir.join("model.onnx");
        let data = dir.join("test_data_set_0");
        let mut args = vec![
            "check".to_string(),
            model.display().to_string(),
            "--data".into(),
            data.display().to_string(),
            "--interpret".into(),
        ];
        args.extend(common::dim_args(&dir));
        let argv: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = tessera(&argv);
        assert_eq!(
            out.status.code(),
            Some(0),
            "{}: {}{}",
            dir.display(),
            stdout(&out),
            stderr(&out)
        );
        let text = stdout(&out);
        assert!(
            text.lines()
                .next()
                .is_some_and(|l| l.contains(" max_abs ") && l.ends_with(" PASS")),
            "{text}"
        );
        assert!(text.contains("outputs within tolerance"), "{text}");
    }
}

#[test]
fn check_reports_a_mismatch_with_exit_1() {
    // mlp_block's model against attention_block's data: same shapes, other values.
    let out = tessera(&[
        "check",
        "models/mlp_block/model.onnx",
        "--data",
        "models/attention_block/test_data_set_0",
        "--interpret",
    ]);
    assert!(stdout(&out).contains(" FAIL"), "{}", stdout(&out));
    assert_user_error(&out, &["output `y` is out of tolerance"]);
}

#[test]
fn check_with_a_wrong_dim_fails_cleanly() {
    let out = tessera(&[
        "check",
        "models/mlp_block_dynamic/model.onnx",
        "--data",
        "models/mlp_block_dynamic/test_data_set_0",
        "--interpret",
        "--dim",
        "seq=5",
    ]);
    assert_user_error(&out, &["input `x`", "expected f32[1, 5, 32]"]);
}

#[test]
fn compile_emits_graph_ir_and_dumps_every_stage() {
    let out = tessera(&["compile", "models/mlp_block/model.onnx", "--emit", "graph"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("graph ") && text.contains("layer_norm(") && text.contains("output \"y\""),
        "{text}"
    );

    let dir = std::env::temp_dir().join(format!("tessera-dump-{}", std::process::id()));
    let dir_arg = dir.display().to_string();
    let out = tessera(&[
        "compile",
        "models/fixtures/shape_chain/model.onnx",
        "--dim",
        "seq=6",
        "--dump-dir",
        &dir_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let import = std::fs::read_to_string(dir.join("01-import.graph")).expect("import dump");
    let fold = std::fs::read_to_string(dir.join("02-fold.graph")).expect("fold dump");
    assert!(
        import.contains("concat("),
        "the exporter's shape chain before folding: {import}"
    );
    assert!(
        !fold.contains("concat(") && fold.contains("reshape("),
        "{fold}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn compile_writes_a_loadable_that_run_and_check_accept() {
    let dir = std::env::temp_dir().join(format!("tessera-cli-compile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let out_path = dir.join("mlp.tnpu");
    let out = tessera(&[
        "compile",
        "models/mlp_block/model.onnx",
        "-o",
        out_path.to_str().expect("path"),
        "--target",
        "tiny",
        "--precision",
        "bf16",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let loadable = tessera_isa::Loadable::from_bytes(&std::fs::read(&out_path).expect("read"))
        .expect("valid loadable");
    assert_eq!(loadable.target().name, "tiny");
    assert_eq!(loadable.outputs.len(), 1);
    assert!(!loadable.source_map.is_empty());
    let run = tessera(&[
        "run",
        out_path.to_str().expect("path"),
        "--data",
        "models/mlp_block/test_data_set_0",
        "--stats",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stdout).contains("roofline"));
    for precision in ["fp32", "bf16"] {
        let check = tessera(&[
            "check",
            "models/mlp_block/model.onnx",
            "--data",
            "models/mlp_block/test_data_set_0",
            "--target",
            "tiny",
            "--precision",
            precision,
        ]);
        let stdout = String::from_utf8_lossy(&check.stdout);
        assert!(
            check.status.success(),
            "{precision}: {stdout} {}",
            String::from_utf8_lossy(&check.stderr)
        );
        assert!(stdout.contains("PASS"), "{stdout}");
    }
}

#[test]
fn usage_errors_exit_2() {
    let out = tessera(&["check", "models/mlp_block/model.onnx"]);
    assert_eq!(out.status.code(), Some(2));
    let out = tessera(&["compile", "models/mlp_block/model.onnx", "--dim", "seq"]);
    assert_eq!(out.status.code(), Some(2));
}

fn compile_fixture(file: &str) -> Output {
    let path = Path::new("models/fixtures").join(file);
    tessera(&["compile", &path.display().to_string(), "--emit", "graph"])
}

#[test]
fn bad_input_not_onnx() {
    assert_user_error(
        &compile_fixture("not_onnx.onnx"),
        &["not_onnx.onnx", "not a valid ONNX model"],
    );
}

#[test]
fn bad_input_truncated() {
    assert_user_error(
        &compile_fixture("truncated.onnx"),
        &["truncated.onnx", "not a valid ONNX model"],
    );
}

#[test]
fn bad_input_unknown_ops_are_all_listed() {
    assert_user_error(
        &compile_fixture("bad_unknown_ops.onnx"),
        &[
            "2 unsupported ops",
            "`my_lstm` (LSTM)",
            "`my_nms` (NonMaxSuppression)",
        ],
    );
}

#[test]
fn bad_input_unsupported_dtype() {
    assert_user_error(
        &compile_fixture("bad_float64.onnx"),
        &["input `x`", "unsupported dtype float64"],
    );
}

#[test]
fn bad_input_missing_initializer() {
    assert_user_error(
        &compile_fixture("bad_missing_initializer.onnx"),
        &["input `w_missing` is not defined"],
    );
}

#[test]
fn bad_input_cycle() {
    assert_user_error(
        &compile_fixture("bad_cycle.onnx"),
        &["cycle", "`cycle_a`", "`cycle_b`"],
    );
}

#[test]
fn bad_input_unbound_dim() {
    assert_user_error(
        &compile_fixture("bad_unbound_dim.onnx"),
        &["input `x`", "symbolic dimension `seq` is not bound"],
    );
}

#[test]
fn bad_input_dim_product_overflows() {
    assert_user_error(
        &compile_fixture("bad_overflow_dim.onnx"),
        &["node `", "(ConstantOfShape)", "too many elements"],
    );
    assert_user_error(
        &compile_fixture("bad_overflow_dim_expand.onnx"),
        &["node `", "(Expand)", "too many elements"],
    );
}

#[test]
fn bad_input_missing_file() {
    assert_user_error(
        &compile_fixture("does_not_exist.onnx"),
        &["does_not_exist.onnx"],
    );
}

#[test]
fn check_takes_a_cycle_limit() {
    let out = tessera(&[
        "check",
        "models/mlp_block/model.onnx",
        "--data",
        "models/mlp_block/test_data_set_0",
        "--target",
        "tiny",
        "--max-cycles",
        "100",
    ]);
    assert_user_error(
        &out,
        &[
            "models/mlp_block/model.onnx: fault: cycle limit exceeded at ",
            "(limit 100); raise the limit with --max-cycles",
        ],
    );
}

#[test]
fn compile_emits_what_is_asked_also_with_a_dump_dir() {
    let dir = std::env::temp_dir().join(format!("tessera-emit-dump-{}", std::process::id()));
    let dir_arg = dir.display().to_string();
    let out = tessera(&[
        "compile",
        "models/mlp_block/model.onnx",
        "--target",
        "tiny",
        "--emit",
        "graph",
        "--emit",
        "asm",
        "--dump-dir",
        &dir_arg,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = stdout(&out);
    let asm = std::fs::read_to_string(dir.join("program.s")).expect("program.s");
    let fold = std::fs::read_to_string(dir.join("02-fold.graph")).expect("fold dump");
    assert_eq!(text, format!("{fold}{asm}"));
    assert!(dir.join("kernels.txt").is_file());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn help_describes_what_the_commands_do() {
    let top = stdout(&tessera(&["--help"]));
    assert!(
        top.starts_with("Tessera: compile ONNX models into `.tnpu` loadables"),
        "{top}"
    );
    for (command, what) in [
        ("compile", "Compile an ONNX model into a `.tnpu` loadable"),
        ("generate", "Decode autoregressively on the simulator"),
    ] {
        assert!(
            top.lines()
                .any(|l| l.trim_start().starts_with(command) && l.contains(what)),
            "{top}"
        );
    }
    let compile = stdout(&tessera(&["compile", "--help"]));
    for needle in [
        "kernels.txt",
        "program.s",
        "01-import.graph",
        "-o, --output <FILE>",
    ] {
        assert!(compile.contains(needle), "`{needle}` not in:\n{compile}");
    }
    assert!(!compile.contains("for now"), "{compile}");
    for command in ["run", "check"] {
        let help = stdout(&tessera(&[command, "--help"]));
        assert!(help.contains("--max-cycles <N>"), "{command}:\n{help}");
    }
}

#[test]
fn compile_without_an_output_compiles_and_summarizes() {
    let out = tessera(&["compile", "models/mlp_block/model.onnx", "--target", "tiny"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("models/mlp_block/model.onnx (not written: -o FILE writes it): ")
            && text.contains(" kernels, ")
            && text.contains("roofline"),
        "{text}"
    );
    // Asking only for Graph IR stops there: no summary.
    let out = tessera(&["compile", "models/mlp_block/model.onnx", "--emit", "graph"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.starts_with("graph ") && !text.contains("not written"),
        "{text}"
    );
}

/// The `rel_l2` of the report line of `output` that contains `label`.
fn rel_l2(text: &str, label: &str) -> f64 {
    let line = text
        .lines()
        .find(|l| l.contains(label))
        .unwrap_or_else(|| panic!("no line with `{label}` in:\n{text}"));
    let mut words = line.split_whitespace();
    words.find(|w| *w == "rel_l2");
    words
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no rel_l2 in: {line}"))
}

#[test]
fn the_bf16_reference_rounds_where_the_program_does_and_judges_it() {
    let gpt2 = [
        "models/gpt2_ts/model.onnx",
        "--data",
        "models/gpt2_ts/test_data_set_0",
    ];
    let run = |extra: &[&str]| {
        let mut args = vec!["check"];
        args.extend(gpt2);
        args.extend(["--target", "tiny"]);
        args.extend(extra);
        let out = tessera(&args);
        assert_eq!(out.status.code(), Some(0), "{extra:?}: {}", stderr(&out));
        stdout(&out)
    };
    // The reference alone: bf16 MXU operands put it far from exact f32.
    let exact = rel_l2(&run(&["--interpret"]), "logits:");
    let reference = run(&["--interpret", "--precision", "bf16"]);
    assert!(
        reference.contains("(the bf16 reference) within tolerance"),
        "{reference}"
    );
    let reference = rel_l2(&reference, "logits:");
    assert!(
        exact < 1e-5 && reference > 100.0 * exact,
        "{exact} {reference}"
    );

    // The program: judged against the reference, its distance to the
    // expected outputs printed beside; it is the reference's own distance.
    let program = run(&["--precision", "bf16"]);
    assert!(program.contains("logits vs bf16 reference:"), "{program}");
    assert!(
        program.lines().next().is_some_and(|l| l.ends_with(" PASS")),
        "{program}"
    );
    assert!(rel_l2(&program, "vs bf16 reference") < 1e-4, "{program}");
    let to_expected = rel_l2(&program, "logits vs expected:");
    assert!(
        (to_expected - reference).abs() <= 0.05 * reference,
        "{program}"
    );
    assert!(
        program.contains("1 of 1 outputs within tolerance of the bf16 reference"),
        "{program}"
    );
}

#[test]
fn const_input_fixes_a_shape_operand_in_compile_check_and_run() {
    let dir = "tests/conformance/node/test_reshape_negative_dim";
    let model = format!("{dir}/model.onnx");
    let data = format!("{dir}/test_data_set_0");
    let shape = format!("{data}/input_1.pb");
    // Without it: the error names the input and the flags.
    let out = tessera(&["check", &model, "--data", &data, "--interpret"]);
    assert_user_error(
        &out,
        &[
            "node `reshaped` (Reshape)",
            "graph input `shape`",
            "--const-input shape=FILE",
            "--const-inputs-from-data",
        ],
    );
    let out = tessera(&["check", &model, "--data", &data, "--const-inputs-from-data"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(
        stdout(&out).starts_with("inputs fixed at compile time from the data: shape\n"),
        "{}",
        stdout(&out)
    );
    let program = std::env::temp_dir().join(format!("tessera-const-{}.tnpu", std::process::id()));
    let program = program.display().to_string();
    let const_input = format!("shape={shape}");
    let out = tessera(&[
        "compile",
        &model,
        "--const-input",
        &const_input,
        "-o",
        &program,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let outputs = std::env::temp_dir().join(format!("tessera-const-out-{}", std::process::id()));
    let outputs = outputs.display().to_string();
    let out = tessera(&[
        "run",
        &program,
        "--data",
        &data,
        "--const-input",
        "shape",
        "--output-dir",
        &outputs,
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let read = |path: &Path| {
        tessera_compiler::tensor::Tensor::read_pb(path)
            .expect("a tensor")
            .1
            .to_f32_vec()
    };
    let got = read(&Path::new(&outputs).join("output_0.pb"));
    let want = read(&common::repo().join(&data).join("output_0.pb"));
    assert_eq!(got, want);
    let out = tessera(&[
        "compile",
        &model,
        "--const-input",
        &format!("nosuch={shape}"),
    ]);
    assert_user_error(
        &out,
        &["`nosuch`", "not a graph input", "inputs: data, shape"],
    );
    let data_file = format!("shape={data}/input_0.pb");
    let out = tessera(&["compile", &model, "--const-input", &data_file]);
    assert_user_error(&out, &["input `shape`", "f32[2, 3, 4]", "i64[3]"]);
}

#[test]
fn docs_ops_md_is_what_tessera_ops_prints() {
    let out = tessera(&["ops", "--markdown"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let committed =
        std::fs::read_to_string(common::repo().join("docs/ops.md")).expect("docs/ops.md");
    assert!(
        stdout(&out) == committed,
        "docs/ops.md is stale: regenerate it with `tessera ops --markdown > docs/ops.md`"
    );
    let table = stdout(&tessera(&["ops"]));
    for op in ["CumSum", "Pad", "Tile", "Mod", "Sign", "MatMul", "Conv"] {
        assert!(
            table.lines().any(|l| l.starts_with(&format!("{op} "))),
            "{op}: {table}"
        );
    }
}

/// A model converted to fp16 inside (f32 inputs and outputs) is computed
/// with each op rounded to fp16, as onnxruntime does: the interpreter is
/// nearer onnxruntime's fp16 outputs than the fp32 model's, and far from
/// computing in f32 throughout.
#[test]
fn an_fp16_converted_model_rounds_like_onnx() {
    let model = "models/gpt2_fp16_converted/model.onnx";
    let run = |data: &str| {
        let out = tessera(&["check", model, "--data", data, "--interpret"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let text = stdout(&out);
        assert!(
            text.contains("within tolerance (cosine similarity >= 0.999"),
            "{text}"
        );
        rel_l2(&text, "logits:")
    };
    let to_fp16_onnxruntime = run("models/gpt2_fp16_converted/test_data_set_0");
    let to_fp32_model = run("models/gpt2_ts/test_data_set_0");
    assert!(
        to_fp32_model > 1e-4 && to_fp16_onnxruntime < to_fp32_model,
        "fp16 rounding: {to_fp16_onnxruntime} to onnxruntime fp16, {to_fp32_model} to fp32"
    );
}

fn check_mlp_block(extra: &[&str]) -> Output {
    let mut args = vec![
        "check",
        "models/mlp_block/model.onnx",
        "--data",
        "models/mlp_block/test_data_set_0",
        "--target",
        "tiny",
    ];
    args.extend(extra);
    tessera(&args)
}

/// The number after `label` in `text` (e.g. `cosine 0.999`).
fn number_after(text: &str, label: &str) -> f64 {
    let at = text
        .find(label)
        .unwrap_or_else(|| panic!("no `{label}` in {text}"))
        + label.len();
    text[at..]
        .split_whitespace()
        .next()
        .and_then(|w| w.parse().ok())
        .unwrap_or_else(|| panic!("no number after `{label}` in {text}"))
}

#[test]
fn check_at_8_bit_precisions_reports_cosine_and_sqnr_against_the_threshold() {
    for (precision, min_cosine) in [("int8", 0.99), ("fp8-e4m3", 0.99), ("fp8-e5m2", 0.98)] {
        let out = check_mlp_block(&["--precision", precision]);
        let text = stdout(&out);
        assert!(out.status.success(), "{precision}: {text} {}", stderr(&out));
        assert!(
            text.contains(&format!("within the {precision} threshold")),
            "{text}"
        );
        let cosine = number_after(&text, "cosine ");
        let sqnr = number_after(&text, "sqnr ");
        assert!(
            cosine >= min_cosine && cosine < 1.0,
            "{precision}: cosine {cosine}"
        );
        // Below fp32's (> 100 dB): the 8-bit GEMMs cost something.
        assert!((15.0..80.0).contains(&sqnr), "{precision}: sqnr {sqnr}");
    }
    // Keeping both GEMMs high is bf16 on this block: far closer.
    // (The GEMMs by the names `--emit kernels` gives them.)
    let kept = check_mlp_block(&[
        "--precision",
        "fp8-e4m3",
        "--keep-high",
        "gelu_half",
        "--keep-high",
        "fc2_bias",
    ]);
    let text = stdout(&kept);
    assert!(kept.status.success(), "{text} {}", stderr(&kept));
    let plain = stdout(&check_mlp_block(&["--precision", "fp8-e4m3"]));
    assert!(
        number_after(&text, "sqnr ") > number_after(&plain, "sqnr ") + 6.0,
        "{text}\n{plain}"
    );
}

#[test]
fn keep_high_naming_no_node_is_a_one_line_error() {
    let out = check_mlp_block(&["--precision", "int8", "--keep-high", "/no/such/layer"]);
    assert_user_error(&out, &["--keep-high `/no/such/layer` names no node"]);
}

#[test]
fn check_interpret_refuses_an_8_bit_precision() {
    let out = check_mlp_block(&["--interpret", "--precision", "int8"]);
    assert_user_error(&out, &["no 8-bit arithmetic", "without --interpret"]);
}
