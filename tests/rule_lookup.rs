//! One rule-set lookup for every command: after a user edits the project's
//! `reward_rules/mathruler.toml`, `grade` and `eval` grade with the edited file and `train`
//! and `sft` record it in their plans, an eval resume across the edit
//! is refused, and a typo in a rule file is an error naming the field in each command.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use spotlight::bench::{DataSource, Registry};

/// A copy of the project's manifests, bundled data, rule files and published tables in a
/// temp folder.
fn project() -> tempfile::TempDir {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let tmp = tempfile::tempdir().unwrap();
    for dir in ["benchmarks", "reward_rules", "reports/paper"] {
        copy_dir(&root.join(dir), &tmp.path().join(dir));
    }
    tmp
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

fn spotlight(root: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(args)
        .env("SPOTLIGHT_ROOT", root)
        .current_dir(root)
        .output()
        .unwrap()
}

fn rules_file(root: &Path) -> PathBuf {
    root.join("reward_rules/mathruler.toml")
}

/// Edit: grade the whole response by exact match (so `\boxed{5}` no longer matches `5`).
fn edit_rules(root: &Path) {
    let text = std::fs::read_to_string(rules_file(root)).unwrap();
    let edited = text
        .replace(
            r#"extract = [{ type = "last_boxed" }]"#,
            r#"extract = [{ type = "whole_response" }]"#,
        )
        .replace(
            r#"compare = { type = "mathruler" }"#,
            r#"compare = { type = "exact" }"#,
        );
    assert_ne!(text, edited, "the edit must change the rule file");
    std::fs::write(rules_file(root), edited).unwrap();
}

/// A replay file answering the first Geo3k item with its boxed ground truth.
fn boxed_truth_replay(root: &Path) -> (PathBuf, String) {
    let registry = Registry::load(root).unwrap();
    let manifest = registry.get("geo3k").unwrap();
    let item = registry
        .load_benchmark(manifest, &DataSource::Bundled)
        .unwrap()
        .items
        .remove(0);
    let response = format!("\\boxed{{{}}}", item.answer);
    let line = serde_json::json!({
        "benchmark": manifest.name, "item_id": item.id, "sample": 0, "response": response
    });
    let path = root.join("replay.jsonl");
    std::fs::write(&path, format!("{line}\n")).unwrap();
    (path, item.answer)
}

fn eval(root: &Path, replay: &Path, out: &str, resume: bool) -> Output {
    let replay = replay.display().to_string();
    let mut args = vec![
        "eval",
        "--replay",
        &replay,
        "--bench",
        "geo3k",
        "--k",
        "1",
        "--limit",
        "1",
        "--json",
        "--out",
        out,
        "--report-dir",
        out,
    ];
    if resume {
        args.push("--resume");
    }
    spotlight(root, &args)
}

fn geo3k_avg(output: &Output) -> f64 {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    summary["benchmarks"]["geo3k"]["avg_at_k"].as_f64().unwrap()
}

fn grade_correct(root: &Path, response: &str, truth: &str) -> (bool, serde_json::Value) {
    let out = spotlight(
        root,
        &[
            "grade",
            "--rules",
            "mathruler",
            "--response",
            response,
            "--truth",
            truth,
            "--json",
        ],
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (v["correct"].as_bool().unwrap(), v)
}

#[test]
fn grade_and_eval_agree_after_editing_a_project_rule_file() {
    let tmp = project();
    let root = tmp.path();
    let (replay, truth) = boxed_truth_replay(root);
    let boxed = format!("\\boxed{{{truth}}}");
    // As shipped: the boxed truth is correct in both commands.
    assert!(grade_correct(root, &boxed, &truth).0);
    let before = root.join("before").display().to_string();
    assert_eq!(geo3k_avg(&eval(root, &replay, &before, false)), 100.0);
    // Edited: whole-response exact match; both commands now say incorrect.
    edit_rules(root);
    let (correct, v) = grade_correct(root, &boxed, &truth);
    assert!(!correct, "grade must use the edited project file: {v}");
    assert!(
        v["rules_origin"]
            .as_str()
            .unwrap()
            .ends_with("mathruler.toml"),
        "{v}"
    );
    let after = root.join("after").display().to_string();
    assert_eq!(geo3k_avg(&eval(root, &replay, &after, false)), 0.0);
}

#[test]
fn eval_resume_after_editing_the_rule_file_is_refused() {
    let tmp = project();
    let root = tmp.path();
    let (replay, _) = boxed_truth_replay(root);
    let out = root.join("run").display().to_string();
    geo3k_avg(&eval(root, &replay, &out, false));
    edit_rules(root);
    let resumed = eval(root, &replay, &out, true);
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert_eq!(resumed.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("cannot resume") && stderr.contains("was edited"),
        "{stderr}"
    );
}

#[test]
fn a_typo_in_a_rule_file_is_an_error_naming_the_field_in_grade_and_eval() {
    let tmp = project();
    let root = tmp.path();
    let (replay, _) = boxed_truth_replay(root);
    let text = std::fs::read_to_string(rules_file(root)).unwrap();
    std::fs::write(
        rules_file(root),
        text.replace("verdict = true", "verdit = true"),
    )
    .unwrap();
    let graded = spotlight(
        root,
        &[
            "grade",
            "--rules",
            "mathruler",
            "--response",
            "x",
            "--truth",
            "x",
        ],
    );
    let out = root.join("run").display().to_string();
    let evaluated = eval(root, &replay, &out, false);
    for (command, output) in [("grade", graded), ("eval", evaluated)] {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("mathruler.toml")
                && stderr.contains("`verdit`")
                && stderr.contains("line 11"),
            "{command}: {stderr}"
        );
    }
}

/// `train` and `sft` in the project with the edited rule file.
fn train_and_sft(root: &Path, tag: &str) -> [(&'static str, PathBuf, Output); 2] {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = repo.join("tests/fixtures/qwen25vl/tiny");
    let data = root.join("benchmarks/data/synth-perception/test.parquet");
    let s = |p: &Path| p.display().to_string();
    let train_out = root.join(format!("train-{tag}"));
    let sft_out = root.join(format!("sft-{tag}"));
    let train = spotlight(
        root,
        &[
            "train",
            "--recipe",
            &s(&repo.join("recipes/synth-vppo.toml")),
            "--init",
            &s(&model),
            "--data",
            &s(&data),
            "--out",
            &s(&train_out),
            "--steps",
            "1",
            "--json",
            "--set",
            "batch.prompts_per_step=2",
            "--set",
            "batch.mini_batch_prompts=2",
            "--set",
            "rollout.responses_per_prompt=4",
            "--set",
            "rollout.max_response_tokens=8",
            "--set",
            "batch.world_size=2",
            "--set",
            "batch.micro_batch_responses=4",
            "--set",
            "filtering.enabled=false",
            "--set",
            "validation.every_steps=0",
        ],
    );
    let sft = spotlight(
        root,
        &[
            "sft",
            "--config",
            &s(&repo.join("recipes/sft/synth.toml")),
            "--init",
            &s(&model),
            "--data",
            &s(&data),
            "--out",
            &s(&sft_out),
            "--steps",
            "1",
            "--json",
            "--set",
            "batch.examples_per_step=2",
            "--set",
            "evaluation.items=0",
        ],
    );
    [("train", train_out, train), ("sft", sft_out, sft)]
}

/// train and sft look rule sets up as grade and eval do: after the edit, both record the
/// project's edited file (its path and SHA-256) in their plans, and a typo in it stops them
/// with the same error naming the field.
#[test]
fn train_and_sft_use_the_edited_project_rule_file_and_refuse_a_typo() {
    use sha2::{Digest, Sha256};
    let tmp = project();
    let root = tmp.path();
    edit_rules(root);
    let digest = format!(
        "{:x}",
        Sha256::digest(std::fs::read(rules_file(root)).unwrap())
    );
    for (command, out, output) in train_and_sft(root, "edited") {
        assert!(
            output.status.success(),
            "{command}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let plan: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("train_plan.json")).unwrap())
                .unwrap();
        let record = plan["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "mathruler")
            .unwrap_or_else(|| panic!("{command}: no mathruler record in {plan}"));
        assert!(
            record["origin"]
                .as_str()
                .unwrap()
                .ends_with("mathruler.toml"),
            "{command}: {record}"
        );
        assert_eq!(record["sha256"], digest, "{command}");
    }
    let text = std::fs::read_to_string(rules_file(root)).unwrap();
    std::fs::write(
        rules_file(root),
        text.replace("verdict = true", "verdit = true"),
    )
    .unwrap();
    for (command, _, output) in train_and_sft(root, "typo") {
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{command}: {stderr}");
        assert!(
            stderr.contains("mathruler.toml") && stderr.contains("`verdit`"),
            "{command}: {stderr}"
        );
    }
}
