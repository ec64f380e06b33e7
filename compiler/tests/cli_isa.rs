//! The `tessera asm`, `disasm`, `targets` and `run` commands, through the
//! binary: round trips, and one-line errors with exit code 1 on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn tessera(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera")
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("tessera-cli-isa-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir.join(name)
}

/// Asserts exit code 1 and a single `error: …` line containing `needle`.
fn assert_user_error(out: &Output, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr}");
    assert!(
        stderr.starts_with("error: ") && stderr.contains(needle),
        "{stderr}"
    );
}

fn examples() -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(repo().join("isa/examples"))
        .expect("examples")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "s"))
        .collect();
    v.sort();
    v
}

#[test]
fn every_example_reassembles_byte_identically() {
    let examples = examples();
    assert!(examples.len() >= 5, "{examples:?}");
    for src in examples {
        let stem = src
            .file_stem()
            .and_then(|s| s.to_str())
            .expect("name")
            .to_string();
        let first = scratch(&format!("{stem}.tnpu"));
        let text = scratch(&format!("{stem}.dis.s"));
        let second = scratch(&format!("{stem}.2.tnpu"));
        let out = tessera(&[
            "asm",
            src.to_str().expect("path"),
            "-o",
            first.to_str().expect("path"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let out = tessera(&["disasm", first.to_str().expect("path")]);
        assert!(out.status.success());
        std::fs::write(&text, &out.stdout).expect("write");
        let out = tessera(&[
            "asm",
            text.to_str().expect("path"),
            "-o",
            second.to_str().expect("path"),
        ]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read(&first).expect("a"),
            std::fs::read(&second).expect("b"),
            "{stem}"
        );
    }
}

#[test]
fn disasm_refuses_truncated_and_random_files() {
    let good = scratch("good.tnpu");
    let src = repo().join("isa/examples/gemm.s");
    assert!(tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        good.to_str().expect("p")
    ])
    .status
    .success());
    let bytes = std::fs::read(&good).expect("read");
    for cut in [3, 10, 24, bytes.len() / 2, bytes.len() - 1] {
        let path = scratch(&format!("cut{cut}.tnpu"));
        std::fs::write(&path, &bytes[..cut]).expect("write");
        let out = tessera(&["disasm", path.to_str().expect("p")]);
        assert_user_error(&out, "byte offset");
    }
    let mut state = 0x1234_5678_u32;
    for trial in 0..20 {
        let mut junk: Vec<u8> = (0..64 + trial * 13)
            .map(|_| {
                state = state.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (state >> 16) as u8
            })
            .collect();
        if trial % 2 == 0 {
            // A plausible header over random payload.
            junk[..4].copy_from_slice(b"TNPU");
            junk[4..8].copy_from_slice(&1u32.to_le_bytes());
        }
        let path = scratch(&format!("junk{trial}.tnpu"));
        std::fs::write(&path, &junk).expect("write");
        let out = tessera(&["disasm", path.to_str().expect("p")]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    let mut other_version = bytes.clone();
    other_version[4] = 2;
    let path = scratch("v2.tnpu");
    std::fs::write(&path, &other_version).expect("write");
    assert_user_error(
        &tessera(&["disasm", path.to_str().expect("p")]),
        "ISA version 2",
    );
}

#[test]
fn malformed_assembly_reports_file_line_and_column() {
    let cases = [
        (
            "nop\n  frobnicate r1\n",
            "bad.s:2:3: unknown mnemonic `frobnicate`",
        ),
        (
            "addi r1, r2, 0x1_0000_0000\n",
            "bad.s:1:14: operand `imm`: immediate 4294967296 out of range",
        ),
        (
            "jmp nowhere\n",
            "bad.s:1:5: operand `target`: undefined label `nowhere`",
        ),
        ("add r1, r2\n", "bad.s:1:1: wrong operand count"),
        (
            "li r32, 1\n",
            "bad.s:1:4: operand `rd`: register `r32` does not exist",
        ),
        (
            "dma.copy spm[0], dram[0]\n",
            "bad.s:1:1: `dma.copy` needs operand `bytes=`",
        ),
        (
            "vpu.un fly, spm[0], spm[0], rows=r1, cols=r1, dstride=r1, astride=r1, abcast=full\n",
            "expected one of: mov neg",
        ),
    ];
    for (source, needle) in cases {
        let path = scratch("bad.s");
        std::fs::write(&path, source).expect("write");
        let out = tessera(&[
            "asm",
            path.to_str().expect("p"),
            "-o",
            scratch("bad.tnpu").to_str().expect("p"),
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
        let expected_tail = needle.trim_start_matches("bad.s");
        assert!(stderr.contains(expected_tail), "{source:?}: {stderr}");
        assert!(stderr.contains("bad.s:"), "{stderr}");
    }
}

#[test]
fn targets_lists_the_presets() {
    let out = tessera(&["targets"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("[tiny]") && text.contains("[base]"), "{text}");
    assert!(
        text.contains("mxu_k = 128") && text.contains("mxu_k = 8"),
        "{text}"
    );
    let bad = scratch("bad_target.toml");
    let toml = String::from_utf8_lossy(&tessera(&["targets", "tiny"]).stdout)
        .replace("vpu_lanes = 8", "vpu_lanes = 6");
    std::fs::write(&bad, toml).expect("write");
    assert_user_error(
        &tessera(&["targets", bad.to_str().expect("p")]),
        "field `vpu_lanes`: must be a power of two",
    );
}

#[test]
fn run_reports_bad_inputs_in_one_line() {
    let prog = scratch("loop.tnpu");
    let src = repo().join("isa/examples/loop.s");
    assert!(tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        prog.to_str().expect("p")
    ])
    .status
    .success());
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
    assert_user_error(&tessera(&["run", p, "--input", "x"]), "expected NAME=FILE");
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
    let prog = scratch("loop2.tnpu");
    let src = repo().join("isa/examples/loop.s");
    assert!(tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        prog.to_str().expect("p")
    ])
    .status
    .success());
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
    assert!(trace["traceEvents"]
        .as_array()
        .is_some_and(|e| e.len() > 10));
}

/// Assembles `isa/examples/{example}.s` into the scratch directory as `{name}`.
fn assemble_example(example: &str, name: &str) -> PathBuf {
    let prog = scratch(name);
    let src = repo().join(format!("isa/examples/{example}.s"));
    let out = tessera(&[
        "asm",
        src.to_str().expect("p"),
        "-o",
        prog.to_str().expect("p"),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    prog
}

/// Runs tessera with its stdout already closed by the reader, as in
/// `tessera ... | head -1` once head has exited.
fn tessera_into_closed_pipe(args: &[&str]) -> Output {
    use std::process::Stdio;
    let mut child = Command::new(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn tessera");
    drop(child.stdout.take());
    child.wait_with_output().expect("wait")
}

#[test]
fn a_closed_stdout_ends_quietly_with_success() {
    let gemm = assemble_example("gemm", "gemm-pipe.tnpu");
    let gemm = gemm.to_str().expect("p");
    let a = scratch("pipe-a.npy");
    let b = scratch("pipe-b.npy");
    {
        use tessera_compiler::tensor::{write_npy, Tensor};
        write_npy(&Tensor::from_f32(&[20, 24], vec![0.5; 480]), &a).expect("a");
        write_npy(&Tensor::from_f32(&[24, 20], vec![0.25; 480]), &b).expect("b");
    }
    let a_arg = format!("A={}", a.display());
    let b_arg = format!("B={}", b.display());
    let commands: [&[&str]; 4] = [
        &["targets"],
        &["targets", "tiny"],
        &["disasm", gemm],
        &["run", gemm, "--input", &a_arg, "--input", &b_arg, "--stats"],
    ];
    for args in commands {
        let out = tessera_into_closed_pipe(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert_eq!(stderr, "", "{args:?}");
    }
}
