//! `spotlight train`: a 3-step VPPO smoke run on the synthetic perception task, exact resume
//! (interrupted after step 2 of 4, resumed: same weights and same metrics, timings aside), and
//! a step changes every trainable variable.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;

use candle_core::{Device, Tensor};

const MODEL: &str = "tests/fixtures/qwen25vl/tiny";

/// Tiny sizes: 2 prompts x 4 responses of at most 16 tokens per step.
const SMALL: &[&str] = &[
    "--set",
    "batch.prompts_per_step=2",
    "--set",
    "batch.mini_batch_prompts=2",
    "--set",
    "batch.micro_batch_responses=4",
    "--set",
    "batch.world_size=2",
    "--set",
    "rollout.responses_per_prompt=4",
    "--set",
    "rollout.max_response_tokens=16",
    // a random-weight model solves nothing, so no group would pass the filter
    "--set",
    "filtering.enabled=false",
    "--set",
    "validation.every_steps=2",
    "--set",
    "validation.samples_per_item=2",
];

fn spotlight() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn data(dir: &Path) {
    let out = spotlight()
        .args([
            "synth",
            "perception",
            "--train",
            "16",
            "--test",
            "4",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn train(data: &Path, out: &Path, steps: usize, resume: bool) {
    train_with(data, out, steps, resume, &[]);
}

fn train_with(data: &Path, out: &Path, steps: usize, resume: bool, extra: &[&str]) {
    let mut cmd = spotlight();
    cmd.args([
        "train",
        "--recipe",
        "recipes/synth-vppo.toml",
        "--init",
        MODEL,
        "--json",
    ])
    .arg("--data")
    .arg(data.join("train.parquet"))
    .arg("--val-data")
    .arg(data.join("test.parquet"))
    .args(["--val-items", "2", "--save-every", "2", "--seed", "5"])
    .args(["--steps", &steps.to_string()])
    .args(SMALL)
    .args(extra)
    .arg("--out")
    .arg(out);
    if resume {
        cmd.arg("--resume");
    }
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn weights(dir: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap()
}

/// metrics.jsonl without the timings.
fn metrics(run: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
            v.as_object_mut().unwrap().remove("time_s");
            v
        })
        .collect()
}

fn same_bits(a: &Tensor, b: &Tensor) -> bool {
    let a: Vec<f32> = a.flatten_all().unwrap().to_vec1().unwrap();
    let b: Vec<f32> = b.flatten_all().unwrap().to_vec1().unwrap();
    a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn three_step_vppo_smoke_run_writes_checkpoints_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let run = tmp.path().join("run");
    train(tmp.path(), &run, 3, false);
    let m = metrics(&run);
    assert_eq!(m.len(), 3);
    for (i, line) in m.iter().enumerate() {
        assert_eq!(line["step"], i + 1);
        assert_eq!(line["kept_groups"], 2);
        // VPPO: TGF keeps about rho = 0.4 of the tokens (more for short responses: ceil)
        let f = line["perception_token_fraction"].as_f64().unwrap();
        assert!((0.4..0.6).contains(&f), "{f}");
        assert!(line["grad_norm"].as_f64().unwrap().is_finite());
    }
    assert!(m[1]["validation_avg_at_k"].is_number());
    for step in ["step-2", "step-3"] {
        let dir = run.join(step);
        for f in [
            "config.json",
            "model.safetensors",
            "tokenizer.json",
            "optimizer.safetensors",
            "trainer_state.json",
        ] {
            assert!(dir.join(f).is_file(), "{step}/{f}");
        }
    }
    // the checkpoint loads back as a model folder
    let info = spotlight()
        .args(["model", "info", "--json"])
        .arg(run.join("step-3"))
        .output()
        .unwrap();
    assert!(info.status.success());

    // every trainable variable moved in the first steps
    let before = weights(Path::new(env!("CARGO_MANIFEST_DIR")).join(MODEL).as_path());
    let after = weights(&run.join("step-2"));
    assert_eq!(before.len(), after.len());
    let unchanged: Vec<&String> = before
        .iter()
        .filter(|(name, t)| same_bits(t, &after[*name]))
        .map(|(name, _)| name)
        .collect();
    assert!(
        unchanged.is_empty(),
        "unchanged after training: {unchanged:?}"
    );
}

#[test]
fn an_interrupted_run_resumes_to_the_same_weights_and_metrics() {
    let tmp = tempfile::tempdir().unwrap();
    data(tmp.path());
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    train(tmp.path(), &whole, 4, false);
    train(tmp.path(), &split, 2, false);
    // without --resume an existing run is refused
    let refused = spotlight()
        .args([
            "train",
            "--recipe",
            "recipes/synth-vppo.toml",
            "--init",
            MODEL,
        ])
        .arg("--data")
        .arg(tmp.path().join("train.parquet"))
        .arg("--out")
        .arg(&split)
        .args(SMALL)
        .output()
        .unwrap();
    assert!(!refused.status.success());
    train(tmp.path(), &split, 4, true);
    assert_eq!(metrics(&whole), metrics(&split));
    let (a, b) = (
        weights(&whole.join("step-4")),
        weights(&split.join("step-4")),
    );
    for (name, t) in &a {
        assert!(same_bits(t, &b[name]), "{name} differs after resume");
    }
    let (oa, ob) = (
        candle_core::safetensors::load(whole.join("step-4/optimizer.safetensors"), &Device::Cpu)
            .unwrap(),
        candle_core::safetensors::load(split.join("step-4/optimizer.safetensors"), &Device::Cpu)
            .unwrap(),
    );
    for (name, t) in &oa {
        assert!(
            same_bits(t, &ob[name]),
            "optimizer {name} differs after resume"
        );
    }
}

/// `kl_coef > 0` is not accepted and ignored: the init checkpoint is scored as a frozen
/// reference and the step reports the KL term (finite, >= 0), and the layout metrics show the
/// rows of 2 prompts balanced over 2 workers.
#[test]
fn a_kl_coefficient_scores_a_frozen_reference() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let run = dir.path().join("kl");
    let extra = [
        "--set",
        "objective.kl_coef=0.1",
        "--set",
        "validation.every_steps=0",
    ];
    train_with(dir.path(), &run, 1, false, &extra);
    let m = metrics(&run);
    let kl = m[0]["kl"].as_f64().expect("a kl metric");
    assert!(kl.is_finite() && kl >= 0.0, "kl {kl}");
    let mixed = m[0]["prompts_per_micro_batch"].as_f64().unwrap();
    assert!((1.0..=2.0).contains(&mixed), "{mixed}");
    let plain = dir.path().join("plain");
    train_with(
        dir.path(),
        &plain,
        1,
        false,
        &["--set", "validation.every_steps=0"],
    );
    assert!(metrics(&plain)[0]["kl"].is_null());
}

/// `--dump-step` writes the rows of a step with the layout and the TAS scales the update
/// applied; `debug tas-layout --check` recomputes both through the case runner and must agree,
/// so the trainer's own path (not a copy of it) is what the golden cases check.
#[test]
fn a_dumped_step_is_reproduced_by_debug_tas_layout() {
    let dir = tempfile::tempdir().unwrap();
    data(dir.path());
    let run = dir.path().join("run");
    let dump = dir.path().join("dump");
    let extra = [
        "--set",
        "validation.every_steps=0",
        "--set",
        "batch.prompts_per_step=4",
        "--set",
        "batch.micro_batch_responses=2",
        "--dump-step",
        "2",
        dump.to_str().unwrap(),
    ];
    train_with(dir.path(), &run, 2, false, &extra);
    let file = dump.join("tas-layout-step-2.jsonl");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text.lines().count(), 1);
    let case: serde_json::Value = serde_json::from_str(text.trim()).unwrap();
    let scales: Vec<f64> = case["expected"]["advantage_scale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    assert_eq!(scales.len(), 16);
    assert!(
        scales.iter().any(|s| (s - 1.0).abs() > 1e-3),
        "every scale is 1: the dump would check nothing"
    );
    let devices = case["expected"]["device"].as_array().unwrap();
    assert!(devices.iter().any(|d| d == 1), "both workers hold rows");
    let out = spotlight()
        .args(["debug", "tas-layout", "--check", "--input"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "debug tas-layout --check disagrees with the trainer:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    // a recipe without TAS has nothing to dump: a usage error, not a silent no-op
    let grpo = spotlight()
        .args([
            "train",
            "--recipe",
            "recipes/synth-grpo.toml",
            "--init",
            MODEL,
        ])
        .arg("--data")
        .arg(dir.path().join("train.parquet"))
        .arg("--out")
        .arg(dir.path().join("grpo"))
        .arg("--dump-step")
        .arg("1")
        .arg(&dump)
        .output()
        .unwrap();
    assert_eq!(grpo.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&grpo.stderr).contains("--dump-step"));
}
