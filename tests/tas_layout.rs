//! `spotlight debug tas-layout` against cases made by `tools/golden/tas_layout.py`: verl's own
//! length balancing (pinned wheel) and a transcription of VPPO-RL's `dp_actor` TAS code,
//! including the published 7B shape (384 x 8 rows, 8 workers, micro-batch 16).

use std::collections::BTreeMap;
use std::process::Command;

const CASES: &str = "tests/fixtures/tas_layout/cases.jsonl";

fn run(check: bool) -> (bool, Vec<serde_json::Value>) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    cmd.args(["debug", "tas-layout", "--input", CASES]);
    if check {
        cmd.arg("--check");
    }
    let out = cmd.output().expect("run spotlight");
    let lines = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect();
    (out.status.success(), lines)
}

#[test]
fn layout_and_scales_equal_the_reference_on_every_case() {
    let (ok, lines) = run(true);
    assert!(ok, "debug tas-layout --check found a difference");
    assert_eq!(lines.len(), 9);
}

/// Even prompts of `two-kinds` depend on the image, odd ones barely: once balancing mixes
/// prompts inside micro-batches, TAS moves weight from the odd prompts to the even ones.
#[test]
fn in_mixed_micro_batches_the_visually_dependent_prompts_gain_weight() {
    let text = std::fs::read_to_string(CASES).unwrap();
    let case: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|c| c["id"] == "two-kinds")
        .unwrap();
    let (_, lines) = run(false);
    let out = lines.iter().find(|l| l["id"] == "two-kinds").unwrap();
    let groups = case["inputs"]["groups"].as_array().unwrap();
    let scales = out["advantage_scale"].as_array().unwrap();
    let mut per_prompt: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for (g, s) in groups.iter().zip(scales) {
        per_prompt
            .entry(g.as_str().unwrap().to_string())
            .or_default()
            .push(s.as_f64().unwrap());
    }
    // Mixed: some micro-batch holds rows of more than one prompt.
    let (devices, micros) = (
        out["device"].as_array().unwrap(),
        out["micro_batch"].as_array().unwrap(),
    );
    let mut members: BTreeMap<(u64, u64, u64), std::collections::BTreeSet<&str>> = BTreeMap::new();
    for i in 0..groups.len() {
        let key = (
            devices[i].as_u64().unwrap(),
            out["mini_batch"][i].as_u64().unwrap(),
            micros[i].as_u64().unwrap(),
        );
        members
            .entry(key)
            .or_default()
            .insert(groups[i].as_str().unwrap());
    }
    assert!(members.values().all(|m| m.len() > 1), "{members:?}");
    for (prompt, s) in &per_prompt {
        let mean = s.iter().sum::<f64>() / s.len() as f64;
        let index: usize = prompt[1..].parse().unwrap();
        if index % 2 == 0 {
            assert!(mean > 1.0, "{prompt}: mean scale {mean}");
        } else {
            assert!(mean < 1.0, "{prompt}: mean scale {mean}");
        }
    }
}
