//! The ISA commands against the host: a closed stdout ends quietly, and
//! host memory running out is a one-line error, not an abort.

use std::path::PathBuf;
use std::process::{Command, Output};

mod common;

use common::isa::{assemble, assemble_example, scratch};

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

/// Runs `tessera args` in a shell whose address space is capped at
/// `limit_kib` (so a large allocation fails instead of succeeding lazily).
fn tessera_capped(limit_kib: u64, args: &[&str]) -> Output {
    let mut script = format!("ulimit -v {limit_kib} && exec \"$0\"");
    for i in 0..args.len() {
        script.push_str(&format!(" \"${}\"", i + 1));
    }
    Command::new("sh")
        .arg("-c")
        .arg(script)
        .arg(env!("CARGO_BIN_EXE_tessera"))
        .args(args)
        .output()
        .expect("run tessera under ulimit")
}

/// A target declaring 4 GiB of SPM and ACC costs only the bytes a program
/// touches; touching the top of SPM on a host that cannot provide 4 GiB is a
/// one-line `host out of memory` fault, not an abort.
#[test]
fn huge_on_chip_memories_are_lazy_and_their_exhaustion_is_an_error() {
    let low = scratch("huge-spm-low.s");
    let high = scratch("huge-spm-high.s");
    let header = ".target tiny\n.param spm_bytes 4294967296\n.param acc_bytes 4294967296\n";
    let fill = "li r2, 1\nli r3, 16\nli r4, 64\nvpu.fill spm[r1], value=r0, rows=r2, cols=r3, dstride=r4\nhalt\n";
    std::fs::write(&low, format!("{header}li r1, 0\n{fill}")).expect("write");
    std::fs::write(&high, format!("{header}li r1, 4294967232\n{fill}")).expect("write");
    let run = |src: &PathBuf, name: &str| {
        let prog = scratch(name);
        assemble(src, &prog);
        let prog = prog.display().to_string();
        tessera_capped(1 << 20, &["run", &prog])
    };
    let out = run(&low, "huge-spm-low.tnpu");
    assert!(
        out.status.success(),
        "a program touching 64 bytes of a 4 GiB SPM failed under a 1 GiB cap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&high, "huge-spm-high.tnpu");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("host out of memory")
            && stderr.contains("4294967296 bytes of host memory to model spm")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}

/// An output of 256 GiB (valid in a 1 TiB DRAM) that the host cannot hold
/// is a one-line error naming the output.
#[test]
fn an_output_larger_than_the_host_is_an_error() {
    let src = scratch("huge-output.s");
    std::fs::write(
        &src,
        ".target tiny\n.param dram_bytes 1099511627776\n\
         .output \"y\" f32 [68719476736] @ 0x0\nhalt\n",
    )
    .expect("write");
    let prog = scratch("huge-output.tnpu");
    assemble(&src, &prog);
    let prog = prog.display().to_string();
    let out = tessera_capped(1 << 20, &["run", &prog]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("output `y`")
            && stderr.contains("could not allocate 274877906944 bytes")
            && stderr.lines().count() == 1,
        "{stderr}"
    );
}
