//! Run plans: a resume that would silently continue as a different run is refused, naming
//! what changed — for `train` (overrides, data, recipe contents, initial weights), `sft`
//! (and its exact resume), and `eval` (model weights, manifest, prompt template).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use candle_core::{Device, Tensor};

const MODEL: &str = "tests/fixtures/qwen25vl/tiny";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn spotlight() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    c.current_dir(root());
    c
}

fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A refusal: exit code 2 and every `needle` in the error.
fn refused(out: &Output, needles: &[&str]) {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("cannot resume"), "{err}");
    for n in needles {
        assert!(err.contains(n), "missing {n:?} in: {err}");
    }
}

fn synth_data(dir: &Path, train: usize) {
    ok(&spotlight()
        .args([
            "synth",
            "perception",
            "--train",
            &train.to_string(),
            "--test",
            "2",
            "--out",
        ])
        .arg(dir)
        .output()
        .unwrap());
}

/// A copy of the tiny checkpoint (so a test may change its weights).
fn model_copy(dir: &Path) -> PathBuf {
    std::fs::create_dir_all(dir).unwrap();
    for entry in std::fs::read_dir(root().join(MODEL)).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, dir.join(p.file_name().unwrap())).unwrap();
    }
    dir.to_path_buf()
}

/// Adds 1e-3 to one weight tensor: a model that still loads but computes otherwise.
fn nudge_weights(dir: &Path) {
    let path = dir.join("model.safetensors");
    let mut tensors = candle_core::safetensors::load(&path, &Device::Cpu).unwrap();
    let name = tensors.keys().min().unwrap().clone();
    let t: &Tensor = &tensors[&name];
    let nudged = (t + 1e-3).unwrap();
    tensors.insert(name, nudged);
    candle_core::safetensors::save(&tensors, &path).unwrap();
}

const TRAIN_SMALL: &[&str] = &[
    "--set",
    "batch.prompts_per_step=2",
    "--set",
    "batch.mini_batch_prompts=2",
    "--set",
    "batch.micro_batch_responses=4",
    "--set",
    "batch.world_size=1",
    "--set",
    "rollout.responses_per_prompt=2",
    "--set",
    "rollout.max_response_tokens=4",
    "--set",
    "filtering.enabled=false",
    "--set",
    "validation.every_steps=0",
];

fn train(recipe: &Path, init: &Path, data: &Path, out: &Path, extra: &[&str]) -> Output {
    spotlight()
        .args(["train", "--json", "--save-every", "1", "--seed", "3"])
        .arg("--recipe")
        .arg(recipe)
        .arg("--init")
        .arg(init)
        .arg("--data")
        .arg(data)
        .arg("--out")
        .arg(out)
        .args(TRAIN_SMALL)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn train_resume_with_a_changed_override_data_recipe_or_init_weights_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    synth_data(&tmp.path().join("data"), 8);
    let data = tmp.path().join("data/train.parquet");
    let recipe = tmp.path().join("vppo.toml");
    std::fs::copy(root().join("recipes/synth-vppo.toml"), &recipe).unwrap();
    let init = model_copy(&tmp.path().join("init"));
    let run = tmp.path().join("run");
    ok(&train(&recipe, &init, &data, &run, &["--steps", "1"]));
    assert!(run.join("train_plan.json").is_file());

    // the same plan resumes
    ok(&train(
        &recipe,
        &init,
        &data,
        &run,
        &["--steps", "2", "--resume"],
    ));

    // a changed override
    let o = train(
        &recipe,
        &init,
        &data,
        &run,
        &["--steps", "3", "--resume", "--set", "optim.lr=0.5"],
    );
    refused(&o, &["recipe field optim.lr"]);

    // changed recipe contents (same path)
    let text = std::fs::read_to_string(&recipe).unwrap();
    assert!(text.contains("weight_decay = 1e-2"));
    std::fs::write(
        &recipe,
        text.replace("weight_decay = 1e-2", "weight_decay = 0.125"),
    )
    .unwrap();
    let o = train(&recipe, &init, &data, &run, &["--steps", "3", "--resume"]);
    refused(&o, &["recipe field optim.weight_decay"]);
    std::fs::write(&recipe, &text).unwrap();

    // other training data
    synth_data(&tmp.path().join("data2"), 9);
    let o = train(
        &recipe,
        &init,
        &tmp.path().join("data2/train.parquet"),
        &run,
        &["--steps", "3", "--resume"],
    );
    refused(&o, &["training data"]);

    // the init checkpoint's weights changed under the run
    nudge_weights(&init);
    let o = train(&recipe, &init, &data, &run, &["--steps", "3", "--resume"]);
    refused(&o, &["init checkpoint", "model.safetensors changed"]);
}

fn sft(data: &Path, out: &Path, extra: &[&str]) -> Output {
    spotlight()
        .args([
            "sft",
            "--init",
            MODEL,
            "--json",
            "--save-every",
            "1",
            "--seed",
            "2",
        ])
        .arg("--data")
        .arg(data.join("train.parquet"))
        .arg("--eval-data")
        .arg(data.join("test.parquet"))
        .args([
            "--set",
            "batch.examples_per_step=3",
            "--set",
            "optim.warmup_steps=0",
        ])
        .args([
            "--set",
            "evaluation.items=1",
            "--set",
            "evaluation.samples_per_item=1",
        ])
        .args(["--set", "evaluation.max_new_tokens=4", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn losses(dir: &Path) -> Vec<(u64, f64)> {
    std::fs::read_to_string(dir.join("sft_metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            (v["step"].as_u64().unwrap(), v["loss"].as_f64().unwrap())
        })
        .collect()
}

#[test]
fn sft_resumes_bit_for_bit_and_refuses_a_changed_plan() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    synth_data(&data, 5);
    let (whole, split) = (tmp.path().join("whole"), tmp.path().join("split"));
    ok(&sft(&data, &whole, &["--steps", "4"]));
    ok(&sft(&data, &split, &["--steps", "2"]));
    // without --resume an existing run is refused
    let o = sft(&data, &split, &["--steps", "4"]);
    assert_eq!(o.status.code(), Some(2));
    let o = sft(
        &data,
        &split,
        &["--steps", "4", "--resume", "--set", "optim.lr=0.5"],
    );
    refused(&o, &["recipe field optim.lr"]);
    ok(&sft(&data, &split, &["--steps", "4", "--resume"]));
    assert_eq!(losses(&whole), losses(&split));
    assert_eq!(losses(&split).len(), 4);
    let a = std::fs::read(whole.join("model.safetensors")).unwrap();
    let b = std::fs::read(split.join("model.safetensors")).unwrap();
    assert!(a == b, "weights differ after resume");
    // only the latest checkpoint is kept
    let steps: Vec<String> = std::fs::read_dir(&split)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("step-"))
        .collect();
    assert_eq!(steps, vec!["step-4".to_string()]);
}

/// A copy of the project's benchmarks/, reward_rules/ and reports/paper/ to edit.
fn project_copy(dir: &Path) -> PathBuf {
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let p = entry.unwrap().path();
            let dest = to.join(p.file_name().unwrap());
            if p.is_dir() {
                copy_dir(&p, &dest);
            } else {
                std::fs::copy(&p, &dest).unwrap();
            }
        }
    }
    for sub in ["benchmarks", "reward_rules", "reports/paper"] {
        copy_dir(&root().join(sub), &dir.join(sub));
    }
    dir.to_path_buf()
}

fn eval_model(project: &Path, model: &Path, out: &Path, resume: bool) -> Output {
    let mut c = spotlight();
    c.env("SPOTLIGHT_ROOT", project)
        .args([
            "eval",
            "--bench",
            "geo3k",
            "--limit",
            "1",
            "--k",
            "1",
            "--max-tokens",
            "3",
        ])
        .args(["--max-pixels", "12544", "--json", "--model"])
        .arg(model)
        .arg("--out")
        .arg(out)
        .arg("--report-dir")
        .arg(project.join("reports"));
    if resume {
        c.arg("--resume");
    }
    c.output().unwrap()
}

#[test]
fn eval_resume_with_other_weights_or_an_edited_prompt_template_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let project = project_copy(&tmp.path().join("project"));
    let model = model_copy(&tmp.path().join("model"));
    let run = tmp.path().join("run");
    ok(&eval_model(&project, &model, &run, false));
    ok(&eval_model(&project, &model, &run, true));

    // the prompt template of the evaluated benchmark
    let manifest = project.join("benchmarks/geo3k.toml");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let edited = if text.contains("[prompt]") {
        text.replacen(
            "[prompt]",
            "[prompt]\ntemplate = \"{{ question }} Be brief.\"",
            1,
        )
    } else {
        format!("{text}\n[prompt]\ntemplate = \"{{{{ question }}}} Be brief.\"\n")
    };
    std::fs::write(&manifest, edited).unwrap();
    let o = eval_model(&project, &model, &run, true);
    refused(&o, &["Geo3k's prompt template changed"]);
    std::fs::write(&manifest, &text).unwrap();

    // swapped weights
    nudge_weights(&model);
    let o = eval_model(&project, &model, &run, true);
    refused(&o, &["model.safetensors changed"]);
}
