//! `tessera generate`: greedy decoding with the KV cache carried between
//! steps, against onnxruntime's tokens, and its errors.

mod common;

use common::{stderr, stdout, tessera};

/// The LLaMA and DeepSeek-V3 (MLA, MoE) decode steps reproduce
/// onnxruntime's greedy tokens on `tiny` in fp32 and on `base` in bf16.
#[test]
fn greedy_tokens_equal_onnxruntime() {
    for model in ["llama_kv", "deepseek_v3_kv"] {
        for config in [
            &["--target", "tiny", "--precision", "fp32"][..],
            &["--target", "base"][..],
        ] {
            let onnx = format!("models/{model}/model.onnx");
            let reference = format!("models/{model}/generate.json");
            let mut args = vec!["generate", &onnx, "--reference", &reference];
            args.extend(config);
            let out = tessera(&args);
            let text = stdout(&out);
            assert!(out.status.success(), "{model} {config:?}: {}", stderr(&out));
            assert!(
                text.contains("tokens match the reference: 9 of 9"),
                "{text}"
            );
            for needle in ["time to first token", "tokens/s", "cycles/token"] {
                assert!(text.contains(needle), "{needle}: {text}");
            }
        }
    }
}

/// The CSV has the prefill and one row per decode step, each step's past
/// one longer than the one before; a random prompt is seeded.
#[test]
fn csv_curve_and_seeded_prompts() {
    let csv = std::env::temp_dir().join(format!("tessera-generate-{}.csv", std::process::id()));
    let csv_arg = csv.display().to_string();
    let run = |seed: &str| {
        let out = tessera(&[
            "generate",
            "models/llama_kv/model.onnx",
            "--prompt-len",
            "5",
            "--steps",
            "3",
            "--seed",
            seed,
            "--target",
            "tiny",
            "--precision",
            "fp32",
            "--csv",
            &csv_arg,
        ]);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out)
    };
    let first = run("1");
    let text = std::fs::read_to_string(&csv).expect("csv");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .skip(1)
        .map(|l| l.split(',').collect())
        .collect();
    assert_eq!(rows.len(), 4, "{text}");
    assert_eq!(rows[0][1], "prefill");
    assert_eq!(rows[0][2], "5");
    for (i, row) in rows.iter().enumerate().skip(1) {
        assert_eq!(row[1], "decode");
        assert_eq!(row[3], (4 + i).to_string(), "past of step {i}: {text}");
        assert!(row[4].parse::<u64>().expect("cycles") > 0);
    }
    std::fs::remove_file(&csv).ok();
    let prompt = |t: &str| {
        t.lines()
            .find(|l| l.starts_with("prompt"))
            .expect("prompt line")
            .to_string()
    };
    assert_eq!(prompt(&first), prompt(&run("1")));
    assert_ne!(prompt(&first), prompt(&run("2")));
}

/// A model without a cache, a wrong reference and a missing prompt are
/// one-line errors with exit code 1.
#[test]
fn generate_errors_name_the_problem() {
    let out = tessera(&["generate", "models/llama_ts/model.onnx", "--prompt", "1,2"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("no KV-cache inputs"),
        "{}",
        stderr(&out)
    );
    assert!(stderr(&out).contains("use_cache=True"), "{}", stderr(&out));

    let out = tessera(&["generate", "models/llama_kv/model.onnx"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("--prompt"), "{}", stderr(&out));

    let wrong = std::env::temp_dir().join(format!("tessera-wrong-{}.json", std::process::id()));
    std::fs::write(&wrong, r#"{"prompt": [74, 202, 48], "tokens": [1, 2]}"#).expect("write");
    let wrong_arg = wrong.display().to_string();
    let out = tessera(&[
        "generate",
        "models/llama_kv/model.onnx",
        "--reference",
        &wrong_arg,
        "--target",
        "tiny",
        "--precision",
        "fp32",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("token 0 is"), "{}", stderr(&out));
    std::fs::write(&wrong, "{not json").expect("write");
    let out = tessera(&[
        "generate",
        "models/llama_kv/model.onnx",
        "--reference",
        &wrong_arg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains(&wrong_arg), "{}", stderr(&out));
    std::fs::remove_file(&wrong).ok();
}
