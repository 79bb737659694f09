//! The `bench` subcommands as a user runs them: output and exit codes (0 ok, 1 bad rows,
//! 2 bad usage or unreadable input).

use std::path::Path;
use std::process::Command;

fn spotlight(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("runs");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn validate_all_bundled_passes_with_json_per_benchmark() {
    let (code, stdout, stderr) = spotlight(&["bench", "validate", "--all", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 8);
    for r in rows {
        assert_eq!(r["rows"], r["ok"], "{r}");
        assert!(r["errors"].as_array().unwrap().is_empty());
    }
}

#[test]
fn unknown_benchmark_is_bad_usage() {
    let (code, _, stderr) = spotlight(&["bench", "validate", "mathvista"]);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown benchmark \"mathvista\""),
        "{stderr}"
    );
}

#[test]
fn bad_rows_exit_1_and_unreadable_file_exit_2() {
    let tmp = tempfile::tempdir().unwrap();
    // A sharegpt file with one good and one bad row.
    let good = serde_json::json!({"messages": [
        {"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]});
    let bad = serde_json::json!({"messages": [{"role": "user", "content": "no answer"}]});
    std::fs::write(tmp.path().join("geo3k.jsonl"), format!("{good}\n{bad}\n")).unwrap();
    let data = tmp.path().join("geo3k.jsonl");
    let (code, stdout, _) = spotlight(&[
        "bench",
        "validate",
        "geo3k",
        "--data",
        data.to_str().unwrap(),
    ]);
    assert_eq!(code, 1, "{stdout}");
    assert!(stdout.contains("row 1"), "{stdout}");

    let corrupt = tmp.path().join("test.parquet");
    std::fs::write(&corrupt, b"not parquet").unwrap();
    let (code, stdout, _) = spotlight(&[
        "bench",
        "validate",
        "geo3k",
        "--data",
        corrupt.to_str().unwrap(),
    ]);
    assert_eq!(code, 2, "{stdout}");
    assert!(stdout.contains("test.parquet"), "{stdout}");
}

#[test]
fn inspect_renders_the_prompt_with_image_sizes() {
    let (code, stdout, stderr) =
        spotlight(&["bench", "inspect", "we-math", "--rows", "2", "--json"]);
    assert_eq!(code, 0, "{stderr}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let first = &v[0];
    assert_eq!(first["images"][0], "112x112");
    let prompt = first["prompt"].as_str().unwrap();
    assert!(
        prompt.contains("\nA. ") && prompt.contains("E. No correct answer"),
        "{prompt}"
    );
    assert!(prompt.ends_with("enclosed within \\boxed{}."), "{prompt}");
    assert_eq!(first["system"], "You are a helpful assistant.");
}

#[test]
fn list_shows_the_eight_in_the_papers_order() {
    let (code, stdout, _) = spotlight(&["bench", "list"]);
    assert_eq!(code, 0);
    let order = [
        "MathVerse",
        "DynaMath",
        "MMK12",
        "Geo3k",
        "MathVision",
        "We-Math",
        "LogicVista",
        "MMMU-Pro",
    ];
    let positions: Vec<usize> = order
        .iter()
        .map(|n| stdout.find(&format!("| {n} |")).unwrap())
        .collect();
    assert!(positions.windows(2).all(|w| w[0] < w[1]), "{stdout}");
    assert!(Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("benchmarks/data")
        .is_dir());
}
