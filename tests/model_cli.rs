//! `spotlight model logprobs --json` reproduces transformers' ids and log-probs on every fixture
//! case; `spotlight model info --json` describes each fixture.

mod model_common;

use std::process::Command;

use model_common::*;

fn spotlight() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
}

#[test]
fn logprobs_json_equals_the_reference_ids_and_log_probs() {
    // both paths of `model::ops`: the fused kernels (the default) and the compositions
    for fused in ["1", "0"] {
        for &name in FIXTURES {
            let golden = Golden::load(name);
            for case in golden.cases() {
                let label = format!("{name}/{} (fused kernels {fused})", case["case"]);
                let mut cmd = spotlight();
                cmd.env("SPOTLIGHT_FUSED_KERNELS", fused);
                cmd.args(["model", "logprobs", "--json", "--model"])
                    .arg(fixture_dir(name))
                    .args(["--prompt", case["prompt"].as_str().unwrap()])
                    .args(["--response", case["response"].as_str().unwrap()]);
                if let Some(img) = case["image"].as_str() {
                    cmd.arg("--image")
                        .arg(fixtures_root().join("images").join(img));
                }
                if let Some(system) = case["system"].as_str() {
                    cmd.args(["--system", system]);
                }
                let out = cmd.output().unwrap();
                assert!(
                    out.status.success(),
                    "{label}: {}",
                    String::from_utf8_lossy(&out.stderr)
                );
                let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
                assert_eq!(ids(&v["prompt_ids"]), ids(&case["prompt_ids"]), "{label}");
                assert_eq!(
                    ids(&v["response_ids"]),
                    ids(&case["response_ids"]),
                    "{label}"
                );
                assert_eq!(v["response_tokens"], case["response_tokens"], "{label}");
                let ours: Vec<f32> = v["logprobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x.as_f64().unwrap() as f32)
                    .collect();
                let reference: Vec<f32> =
                    golden.tensor(&case["logprobs"]["1.0"]).to_vec1().unwrap();
                assert_eq!(ours.len(), reference.len(), "{label}");
                for (a, b) in ours.iter().zip(&reference) {
                    assert!((a - b).abs() <= 1e-4, "{label}: {a} vs {b}");
                }
            }
        }
    }
}

#[test]
fn info_json_describes_each_fixture() {
    for &name in FIXTURES {
        let out = spotlight()
            .args(["model", "info", "--json"])
            .arg(fixture_dir(name))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        // the count from safetensors headers equals the loaded model's Vars
        let ckpt = spotlight::model::Checkpoint::load(&fixture_dir(name)).unwrap();
        assert_eq!(
            v["parameters"].as_u64().unwrap() as usize,
            ckpt.parameter_count().unwrap(),
            "{name}"
        );
        assert!(
            v["chat_template"].is_string() && v["tokenizer"].is_object(),
            "{name}"
        );
    }
}

#[test]
fn bad_folder_exits_2_and_missing_template_exits_1() {
    let out = spotlight()
        .args(["model", "info", "/nonexistent/ckpt"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/ckpt"));

    let tmp = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(fixture_dir("tiny")).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "chat_template.json" {
            std::fs::copy(entry.path(), tmp.path().join(entry.file_name())).unwrap();
        }
    }
    let out = spotlight()
        .args(["model", "info"])
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// `model generate --json`: the documented fields, and the same bytes on every run and with
/// one, two or four threads.
#[test]
fn generate_json_is_reproducible_across_runs_and_thread_counts() {
    let run = |threads: &str| {
        let out = spotlight()
            .env("RAYON_NUM_THREADS", threads)
            .args([
                "model",
                "generate",
                "--json",
                "--k",
                "4",
                "--max-tokens",
                "12",
            ])
            .args(["--seed", "9", "--top-k", "50", "--top-p", "0.95", "--model"])
            .arg(fixture_dir("tied"))
            .arg("--image")
            .arg(fixtures_root().join("images").join("wide84x112.png"))
            .args(["--prompt", "How many shapes?"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        out.stdout
    };
    let first = run("1");
    for threads in ["2", "4", "1"] {
        assert!(
            run(threads) == first,
            "output differs with {threads} thread(s)"
        );
    }
    let v: serde_json::Value = serde_json::from_slice(&first).unwrap();
    assert!(!ids(&v["prompt_ids"]).is_empty());
    let samples = v["samples"].as_array().unwrap();
    assert_eq!(samples.len(), 4);
    for s in samples {
        let n = s["token_ids"].as_array().unwrap().len();
        assert_eq!(s["logprobs"].as_array().unwrap().len(), n);
        assert!(s["text"].is_string());
        let finish = s["finish"].as_str().unwrap();
        assert!(finish == "length" && n == 12 || finish == "stop" && n <= 12);
    }
    // four distinct seeds: not four copies of one sample
    let distinct: std::collections::HashSet<String> =
        samples.iter().map(|s| s["token_ids"].to_string()).collect();
    assert!(distinct.len() > 1);
}
