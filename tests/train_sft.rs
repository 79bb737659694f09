//! `spotlight sft`: a few steps on the synthetic task's reference solutions lower the loss and
//! write a loadable checkpoint with per-step metrics.

use std::process::Command;

#[test]
fn sft_lowers_the_loss_and_writes_a_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let spotlight = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_spotlight"));
        c.current_dir(env!("CARGO_MANIFEST_DIR"));
        c
    };
    let data = tmp.path().join("data");
    let o = spotlight()
        .args([
            "synth",
            "perception",
            "--train",
            "8",
            "--test",
            "2",
            "--out",
        ])
        .arg(&data)
        .output()
        .unwrap();
    assert!(o.status.success());
    let out = tmp.path().join("sft");
    let o = spotlight()
        .args([
            "sft",
            "--init",
            "tests/fixtures/qwen25vl/tiny",
            "--steps",
            "4",
            "--json",
        ])
        .arg("--data")
        .arg(data.join("train.parquet"))
        .arg("--eval-data")
        .arg(data.join("test.parquet"))
        .args([
            "--set",
            "batch.examples_per_step=8",
            "--set",
            "optim.warmup_steps=0",
        ])
        .args([
            "--set",
            "evaluation.items=2",
            "--set",
            "evaluation.samples_per_item=1",
        ])
        .args(["--set", "evaluation.max_new_tokens=8", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"], 4);
    assert!(v["accuracy_before"].is_number() && v["accuracy_after"].is_number());
    let losses: Vec<f64> = std::fs::read_to_string(out.join("sft_metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["loss"]
                .as_f64()
                .unwrap()
        })
        .collect();
    assert_eq!(losses.len(), 4);
    // the same 8 examples every step: the loss must go down
    assert!(losses[3] < losses[0], "{losses:?}");
    let info = spotlight()
        .args(["model", "info"])
        .arg(&out)
        .output()
        .unwrap();
    assert!(info.status.success());
}
