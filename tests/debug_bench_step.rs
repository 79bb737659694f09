//! `spotlight debug bench-step` end to end on the tiny fixture: it runs every phase through the
//! trainer's code, reports positive times and FLOPs as JSON, and refuses impossible shapes.

use std::process::Command;

fn spotlight() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
}

const TINY: &str = "tests/fixtures/qwen25vl/tiny";

#[test]
fn bench_step_reports_every_phase_as_json() {
    for fused in [false, true] {
        let mut cmd = spotlight();
        cmd.args(["debug", "bench-step", "--model", TINY, "--batch", "2"])
            .args(["--steps", "1", "--seq", "48", "--json"]);
        if !fused {
            cmd.arg("--reference-ops");
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["fused_kernels"], fused);
        let m = &v["median_seconds"];
        for phase in [
            "score_image",
            "score_perturbed",
            "loss_backward",
            "optimizer",
        ] {
            assert!(m[phase].as_f64().unwrap() > 0.0, "{phase}: {m}");
        }
        let sum: f64 = [
            "score_image",
            "score_perturbed",
            "loss_backward",
            "optimizer",
        ]
        .iter()
        .map(|p| m[p].as_f64().unwrap())
        .sum();
        // one step: the median of the sums equals the sum (a single timed step)
        assert!((m["step"].as_f64().unwrap() - sum).abs() < 1e-9);
        assert_eq!(
            v["prompt_tokens"].as_u64().unwrap() + v["response_tokens"].as_u64().unwrap(),
            48
        );
        assert!(v["flops_per_step"].as_f64().unwrap() > 0.0);
    }
}

#[test]
fn bench_step_refuses_a_sequence_shorter_than_the_prompt() {
    let out = spotlight()
        .args([
            "debug",
            "bench-step",
            "--model",
            TINY,
            "--seq",
            "8",
            "--steps",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leaves no room"), "{err}");
}
