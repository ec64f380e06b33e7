//! The `tessera run` command, through the binary: inputs and outputs in
//! `.npy` and `.pb`, precision rounding, the cycle limit, and one-line
//! errors with exit code 1 on bad input (exit code 2 on usage errors),
//! each fact stated once.

use std::path::Path;
use std::process::Output;

mod common;

use common::isa::{assemble_example, assert_error_text, assert_user_error, scratch, tessera};

#[test]
fn run_reports_bad_inputs_in_one_line() {
    let prog = assemble_example("loop", "loop.tnpu");
    let p = prog.to_str().expect("p");
    assert_user_error(&tessera(&["run", p]), "input `x` was not provided");
    assert_user_error(
        &tessera(&["run", p, "--input", "x=/nonexistent/x.npy"]),
        "/nonexistent/x.npy",
    );
    assert_user_error(
        &tessera(&["run", p, "--target", "base"]),
        "built for target `tiny`, not `base`",
    );
    assert_user_error(
        &tessera(&["run", p, "--input", "x=foo.txt"]),
        "unknown tensor file type",
    );
    let usage = tessera(&["run"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn run_reads_npy_and_writes_outputs_stats_and_trace() {
    use tessera_compiler::tensor::{read_npy, write_npy, Tensor};
    let prog = assemble_example("loop", "loop2.tnpu");
    let x: Vec<f32> = (0..96).map(|i| i as f32 - 40.0).collect();
    let x_path = scratch("x.npy");
    write_npy(&Tensor::from_f32(&[96], x.clone()), &x_path).expect("npy");
    let out_dir = scratch("out");
    let stats = scratch("stats.json");
    let trace = scratch("trace.json");
    let out = tessera(&[
        "run",
        prog.to_str().expect("p"),
        "--input",
        &format!("x={}", x_path.display()),
        "--output-dir",
        out_dir.to_str().expect("p"),
        "--stats",
        "--stats-json",
        stats.to_str().expect("p"),
        "--trace",
        trace.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("cycles") && stdout.contains("vpu"),
        "{stdout}"
    );
    let y = read_npy(&out_dir.join("y.npy")).expect("y.npy");
    let want: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect();
    assert_eq!(y.to_f32_vec(), want);
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&stats).expect("stats")).expect("json");
    for key in ["cycles", "macs", "dram_read_bytes", "dram_write_bytes"] {
        assert!(json[key].is_u64(), "{key} missing in {json}");
    }
    for engine in ["dma", "mxu", "vpu"] {
        assert!(json["engines"][engine]["busy_cycles"].is_u64(), "{json}");
        assert!(json["engines"][engine]["stall_cycles"].is_u64(), "{json}");
    }
    assert_eq!(json["dram_read_bytes"], 384);
    let trace: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&trace).expect("trace")).expect("json");
    // One slice per executed instruction of every unit.
    let slices = trace["traceEvents"]
        .as_array()
        .expect("events")
        .iter()
        .filter(|e| e["ph"] == "X")
        .count() as u64;
    let executed: u64 = ["su", "dma", "mxu", "vpu"]
        .iter()
        .map(|e| json["engines"][e]["instructions"].as_u64().expect("count"))
        .sum();
    assert!(executed > 10, "{json}");
    assert_eq!(slices, executed);
}

#[test]
fn run_writes_pb_outputs_for_pb_inputs() {
    use tessera_compiler::tensor::Tensor;
    let prog = assemble_example("loop", "loop-pb.tnpu");
    let x: Vec<f32> = (0..96).map(|i| i as f32 * 0.25 - 9.0).collect();
    let x_path = scratch("x.pb");
    Tensor::from_f32(&[96], x.clone())
        .write_pb("x", &x_path)
        .expect("pb");
    let out_dir = scratch("out-pb");
    let out = tessera(&[
        "run",
        prog.to_str().expect("p"),
        "--input",
        &format!("x={}", x_path.display()),
        "--output-dir",
        out_dir.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (name, y) = Tensor::read_pb(&out_dir.join("y.pb")).expect("y.pb");
    assert_eq!(name, "y");
    assert_eq!(y.shape(), [96]);
    let want: Vec<f32> = x.iter().map(|v| 2.0 * v + 1.0).collect();
    assert_eq!(y.to_f32_vec(), want);
    assert!(!out_dir.join("y.npy").exists());
}

#[test]
fn run_with_mixed_inputs_writes_outputs_like_the_first_input() {
    use tessera_compiler::tensor::{read_npy, write_npy, Tensor};
    let prog = assemble_example("gemm", "gemm-mixed.tnpu");
    // A = 1 everywhere, B = 0.5 everywhere: every C element is 24 · 0.5.
    let a = Tensor::from_f32(&[20, 24], vec![1.0; 20 * 24]);
    let b = Tensor::from_f32(&[24, 20], vec![0.5; 24 * 20]);
    let (a_pb, a_npy) = (scratch("mixed-a.pb"), scratch("mixed-a.npy"));
    let (b_pb, b_npy) = (scratch("mixed-b.pb"), scratch("mixed-b.npy"));
    a.write_pb("A", &a_pb).expect("pb");
    b.write_pb("B", &b_pb).expect("pb");
    write_npy(&a, &a_npy).expect("npy");
    write_npy(&b, &b_npy).expect("npy");
    let run_into = |dir: &Path, first: String, second: String| {
        let out = tessera(&[
            "run",
            prog.to_str().expect("p"),
            "--input",
            &first,
            "--input",
            &second,
            "--output-dir",
            dir.to_str().expect("p"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let pb_first = scratch("out-pb-first");
    run_into(
        &pb_first,
        format!("A={}", a_pb.display()),
        format!("B={}", b_npy.display()),
    );
    let (_, c) = Tensor::read_pb(&pb_first.join("C.pb")).expect("C.pb");
    assert_eq!(c.to_f32_vec(), vec![12.0; 20 * 20]);
    assert!(!pb_first.join("C.npy").exists());
    let npy_first = scratch("out-npy-first");
    run_into(
        &npy_first,
        format!("A={}", a_npy.display()),
        format!("B={}", b_pb.display()),
    );
    let c = read_npy(&npy_first.join("C.npy")).expect("C.npy");
    assert_eq!(c.to_f32_vec(), vec![12.0; 20 * 20]);
    assert!(!npy_first.join("C.pb").exists());
}

#[test]
fn run_rounds_f32_npy_inputs_to_a_bf16_program_to_nearest_even() {
    use tessera_compiler::tensor::{write_npy, Tensor};
    // gemm.s: C[20x20] f32 = A[20x24] bf16 · B[24x20] bf16. A's values
    // need rounding: 1 + 3/256 rounds up to 1 + 4/256 (truncation would
    // give 1 + 2/256), 1 + 1/256 is a tie and goes to the even 1.0 (half-up
    // would give 1 + 2/256). Scaled by 0 or ±1 or ±2, every product and
    // sum below is exact in f32, so the output is known exactly.
    let prog = assemble_example("gemm", "gemm-f32-inputs.tnpu");
    let (m, k, n) = (20, 24, 20);
    let scale = |i: usize, j: usize| [0.0f32, 1.0, -1.0, 2.0, -2.0][(i * 7 + j * 3) % 5];
    let a: Vec<f32> = (0..m * k)
        .map(|e| {
            let (i, j) = (e / k, e % k);
            let base = if (i + j) % 2 == 0 {
                1.0 + 3.0 / 256.0
            } else {
                1.0 + 1.0 / 256.0
            };
            scale(i, j) * base
        })
        .collect();
    let a_rounded: Vec<f32> = (0..m * k)
        .map(|e| {
            let (i, j) = (e / k, e % k);
            let base = if (i + j) % 2 == 0 {
                1.0 + 4.0 / 256.0
            } else {
                1.0
            };
            scale(i, j) * base
        })
        .collect();
    let b: Vec<f32> = (0..k * n).map(|e| ((e * 5) % 7) as f32 - 3.0).collect();
    let a_path = scratch("gemm-a.npy");
    let b_path = scratch("gemm-b.npy");
    write_npy(&Tensor::from_f32(&[m, k], a), &a_path).expect("a.npy");
    write_npy(&Tensor::from_f32(&[k, n], b.clone()), &b_path).expect("b.npy");
    let out_dir = scratch("gemm-out");
    let out = tessera(&[
        "run",
        prog.to_str().expect("p"),
        "--input",
        &format!("A={}", a_path.display()),
        "--input",
        &format!("B={}", b_path.display()),
        "--output-dir",
        out_dir.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let c = tessera_compiler::tensor::read_npy(&out_dir.join("C.npy")).expect("C.npy");
    let want: Vec<f32> = (0..m * n)
        .map(|e| {
            let (i, j) = (e / n, e % n);
            (0..k).map(|t| a_rounded[i * k + t] * b[t * n + j]).sum()
        })
        .collect();
    assert_eq!(c.shape(), [m, n]);
    assert_eq!(c.to_f32_vec(), want);
}

#[test]
fn run_refuses_integer_data_for_a_float_input() {
    use tessera_compiler::tensor::{write_npy, Tensor};
    let prog = assemble_example("loop", "loop-int-input.tnpu");
    let x = scratch("x-i64.npy");
    write_npy(&Tensor::from_i64(&[96], (0..96).collect()), &x).expect("npy");
    assert_error_text(
        &tessera(&[
            "run",
            prog.to_str().expect("p"),
            "--input",
            &format!("x={}", x.display()),
        ]),
        &format!("{}: input `x` needs element type f32, got i64", x.display()),
    );
}

/// A loop.s input and a run of loop.s that would fail with the cycle limit
/// after the given extra arguments.
fn run_loop_with_limit(name: &str, extra: &[&str]) -> Output {
    use tessera_compiler::tensor::{write_npy, Tensor};
    let prog = assemble_example("loop", &format!("{name}.tnpu"));
    let x = scratch(&format!("{name}-x.npy"));
    write_npy(&Tensor::from_f32(&[96], vec![1.0; 96]), &x).expect("npy");
    let input = format!("x={}", x.display());
    let mut args = vec![
        "run",
        prog.to_str().expect("p"),
        "--input",
        &input,
        "--max-cycles",
        "10",
    ];
    args.extend_from_slice(extra);
    tessera(&args)
}

#[test]
fn exceeding_the_cycle_limit_is_a_one_line_error_and_the_default_is_1e10() {
    let prog = scratch("loop-limit.tnpu");
    assert_error_text(
        &run_loop_with_limit("loop-limit", &[]),
        &format!(
            "{}: fault: cycle limit exceeded at dma pc 9 `dma.copy spm[r4], dram[r2], bytes=96`: this instruction alone runs to cycle 48 (limit 10); raise the limit with --max-cycles",
            prog.display()
        ),
    );
    let help = String::from_utf8_lossy(&tessera(&["run", "--help"]).stdout).into_owned();
    assert!(help.contains("[default: 10000000000]"), "{help}");
    assert_eq!(
        tessera_sim::Options::default().max_cycles,
        10_000_000_000,
        "the CLI and the library agree"
    );
}

#[test]
fn unwritable_outputs_fail_before_simulating() {
    // With --max-cycles 10 the simulation itself would fail; the error must
    // be about the output path instead, so it was checked first.
    let missing = scratch("no-such-dir").join("out.json");
    let missing_arg = missing.display().to_string();
    for flag in ["--trace", "--stats-json"] {
        let out = run_loop_with_limit(&format!("loop-unwritable{flag}"), &[flag, &missing_arg]);
        assert_user_error(&out, &format!("cannot create {missing_arg}: "));
        assert!(!String::from_utf8_lossy(&out.stderr).contains("cycle limit"));
    }
    let file = scratch("a-file");
    std::fs::write(&file, "not a directory").expect("write");
    let under_file = file.join("out").display().to_string();
    let out = run_loop_with_limit("loop-unwritable-dir", &["--output-dir", &under_file]);
    assert_user_error(&out, &format!("cannot create {under_file}: "));
}

#[test]
fn input_without_a_name_is_a_usage_error() {
    let prog = assemble_example("loop", "loop-usage.tnpu");
    for bad in ["x", "=x.npy", "x="] {
        let out = tessera(&["run", prog.to_str().expect("p"), "--input", bad]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{bad}: {stderr}");
        assert!(
            stderr.contains(&format!("invalid value '{bad}' for '--input <NAME=FILE>'"))
                && stderr.contains("expected NAME=FILE"),
            "{stderr}"
        );
    }
}

#[test]
fn a_target_with_the_same_name_but_other_parameters_is_named() {
    let prog = assemble_example("loop", "loop-target.tnpu");
    let toml = String::from_utf8_lossy(&tessera(&["targets", "tiny"]).stdout)
        .replace("spm_bytes = 16384", "spm_bytes = 32768")
        .replace("vpu_lanes = 8", "vpu_lanes = 16");
    let target = scratch("tiny-bigger.toml");
    std::fs::write(&target, toml).expect("write");
    let target_arg = target.display().to_string();
    assert_error_text(
        &tessera(&["run", prog.to_str().expect("p"), "--target", &target_arg]),
        &format!(
            "{}: built for target `tiny` with different parameters than `{target_arg}` (spm_bytes 16384 vs 32768, vpu_lanes 8 vs 16; recompile for this target)",
            prog.display()
        ),
    );
    // The assembler's `.target` against `--target`, likewise.
    let src = scratch("bigger-spm.s");
    std::fs::write(&src, ".target tiny\n.param spm_bytes 32768\nhalt\n").expect("write");
    let out = tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        scratch("bigger-spm.tnpu").to_str().expect("p"),
        "--target",
        "tiny",
    ]);
    assert_error_text(
        &out,
        &format!(
            "{}:1:1: the source's target `tiny` has other parameters than the requested one (spm_bytes 32768 vs 16384)",
            src.display()
        ),
    );
}

#[test]
fn errors_state_each_fact_once() {
    // A loadable whose code does not decode: the decode error is part of
    // the loadable error's message and must not be printed again.
    let mut loadable = tessera_isa::assemble("halt\n", "halt.s", None).expect("assembles");
    loadable.code.extend_from_slice(&[0u8; 16]);
    let bad_code = scratch("bad-code.tnpu");
    std::fs::write(&bad_code, loadable.to_bytes()).expect("write");
    assert_error_text(
        &tessera(&["disasm", bad_code.to_str().expect("p")]),
        &format!(
            "{}: invalid code section: byte offset 16: unknown opcode 0x00",
            bad_code.display()
        ),
    );
    // Tensor files: the path once.
    let prog = assemble_example("loop", "loop-errors.tnpu");
    let p = prog.to_str().expect("p");
    let junk = scratch("junk.npy");
    std::fs::write(&junk, "junk").expect("write");
    assert_error_text(
        &tessera(&["run", p, "--input", &format!("x={}", junk.display())]),
        &format!("{}: not a .npy file (bad magic)", junk.display()),
    );
    let junk_pb = scratch("junk.pb");
    std::fs::write(&junk_pb, [0xffu8; 7]).expect("write");
    let missing = scratch("missing.npy");
    for (path, needle) in [(&junk_pb, "not a TensorProto"), (&missing, "(os error")] {
        let out = tessera(&["run", p, "--input", &format!("x={}", path.display())]);
        assert_user_error(&out, needle);
        let stderr = String::from_utf8_lossy(&out.stderr);
        let path = path.display().to_string();
        assert_eq!(stderr.matches(&path).count(), 1, "{stderr}");
    }
    // A tensor of the wrong shape: names its file.
    use tessera_compiler::tensor::{write_npy, Tensor};
    let short = scratch("short.npy");
    write_npy(&Tensor::from_f32(&[3], vec![1.0; 3]), &short).expect("npy");
    assert_error_text(
        &tessera(&["run", p, "--input", &format!("x={}", short.display())]),
        &format!("{}: input `x` needs shape [96], got [3]", short.display()),
    );
}
