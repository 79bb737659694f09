//! `spotlight compare` end to end on run folders written as `spotlight eval` writes them:
//! exit codes, warnings, bad input, JSON, and a golden markdown snapshot.

mod compare_support;

use std::path::Path;
use std::process::{Command, Output};

use compare_support::{draw, model, with_regression, write_run, SimBenchmark};

fn spotlight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[test]
fn an_injected_regression_exits_1_and_names_the_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(300, 5);
    let worse = with_regression(&m, "geo3k", 5.0);
    let (a, b) = (tmp.path().join("step-100"), tmp.path().join("step-200"));
    write_run(&a, &m, 8, &draw(&m, 8, 1));
    write_run(&b, &worse, 8, &draw(&worse, 8, 2));
    let out = spotlight(&["compare", path(&a), path(&b)]);
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let geo = stdout
        .lines()
        .find(|l| l.starts_with("| Geo3k |") && l.contains("REGRESSION"))
        .unwrap_or_else(|| panic!("{stdout}"));
    assert!(geo.contains("| 300 |"), "{geo}");
    assert!(text(&out.stderr).contains("regression: Geo3k in step-200"));

    // The same run against itself: no change anywhere, exit 0.
    let same = spotlight(&["compare", path(&a), path(&a), "--fail-on-regression", "0"]);
    assert_eq!(same.status.code(), Some(0), "{}", text(&same.stdout));

    // --baseline picks the reference: the better run compared against the worse one
    // is an improvement, never a regression.
    let flipped = spotlight(&["compare", path(&a), path(&b), "--baseline", path(&b)]);
    assert_eq!(flipped.status.code(), Some(0), "{}", text(&flipped.stdout));
}

#[test]
fn json_output_lists_the_flagged_regressions() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(300, 9);
    let worse = with_regression(&m, "mathvision", 6.0);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &m, 8, &draw(&m, 8, 3));
    write_run(&b, &worse, 8, &draw(&worse, 8, 4));
    let report = tmp.path().join("cmp.json");
    let out = spotlight(&[
        "compare",
        path(&a),
        path(&b),
        "--json",
        "--output",
        path(&report),
        "--resamples",
        "2000",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(v["regressions"], serde_json::json!([["b", "MathVision"]]));
    let benches = v["benchmarks"].as_array().unwrap();
    assert_eq!(benches.len(), 8);
    let mv = benches.iter().find(|b| b["slug"] == "mathvision").unwrap();
    let delta = &mv["deltas"][0];
    assert_eq!(delta["regression"], true);
    assert_eq!(delta["test"], "paired_bootstrap");
    // Per-category rows exist for the breakdown field, with uncorrected p-values only.
    let cats = mv["categories"].as_array().unwrap();
    assert_eq!(cats.len(), 3);
    assert!(cats
        .iter()
        .all(|c| c["field"] == "subject" && c["deltas"][0]["p_holm"].is_null()));
    // The category item counts add up to the benchmark's.
    let total: u64 = cats.iter().map(|c| c["items"].as_u64().unwrap()).sum();
    assert_eq!(total, mv["items"].as_u64().unwrap());
}

#[test]
fn different_item_sets_and_k_compare_on_the_intersection_with_warnings() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(40, 3);
    // The candidate saw only the first 30 items of every benchmark, with k = 4.
    let fewer: Vec<SimBenchmark> = m
        .iter()
        .map(|b| SimBenchmark {
            p: b.p[..30].to_vec(),
            category: b.category[..30].to_vec(),
            ..b.clone()
        })
        .collect();
    let (a, b) = (tmp.path().join("full"), tmp.path().join("partial"));
    write_run(&a, &m, 8, &draw(&m, 8, 1));
    write_run(&b, &fewer, 4, &draw(&fewer, 4, 2));
    let out = spotlight(&["compare", path(&a), path(&b), "--resamples", "500"]);
    let stdout = text(&out.stdout);
    assert!(matches!(out.status.code(), Some(0 | 1)), "{stdout}");
    assert!(
        stdout.contains("k differs: full k = 8, partial k = 4"),
        "{stdout}"
    );
    assert!(
        stdout.contains("Geo3k: compared on the 30 items all runs scored; left out 10 of full"),
        "{stdout}"
    );
    assert!(stdout.contains("| MathVerse | 30 |"), "{stdout}");
    assert!(text(&out.stderr).contains("warning: k differs"));
}

#[test]
fn k1_runs_use_the_exact_mcnemar_test() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(200, 4);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    write_run(&a, &m, 1, &draw(&m, 1, 1));
    write_run(&b, &m, 1, &draw(&m, 1, 2));
    let out = spotlight(&[
        "compare",
        path(&a),
        path(&b),
        "--json",
        "--resamples",
        "500",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for bench in v["benchmarks"].as_array().unwrap() {
        assert_eq!(bench["deltas"][0]["test"], "mc_nemar_exact", "{bench}");
    }
}

#[test]
fn unreadable_runs_exit_2_and_name_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let m = model(10, 1);
    let good = tmp.path().join("good");
    write_run(&good, &m, 2, &draw(&m, 2, 1));

    let missing = tmp.path().join("nope");
    let out = spotlight(&["compare", path(&good), path(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("nope: no such run folder"),
        "{}",
        text(&out.stderr)
    );

    // A corrupt samples.parquet.
    let corrupt = tmp.path().join("corrupt");
    write_run(&corrupt, &m, 2, &draw(&m, 2, 2));
    std::fs::write(corrupt.join("samples.parquet"), b"not parquet").unwrap();
    let out = spotlight(&["compare", path(&good), path(&corrupt)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("corrupt/samples.parquet") && err.contains("parquet"),
        "{err}"
    );

    // An unfinished run: the log exists but samples.parquet does not yet.
    let unfinished = tmp.path().join("unfinished");
    write_run(&unfinished, &m, 2, &draw(&m, 2, 3));
    std::fs::remove_file(unfinished.join("samples.parquet")).unwrap();
    std::fs::write(unfinished.join("samples.jsonl"), "").unwrap();
    let out = spotlight(&["compare", path(&good), path(&unfinished)]);
    assert_eq!(out.status.code(), Some(2));
    let err = text(&out.stderr);
    assert!(
        err.contains("unfinished/samples.parquet") && err.contains("--resume"),
        "{err}"
    );

    // A corrupt run.json.
    let bad_plan = tmp.path().join("badplan");
    write_run(&bad_plan, &m, 2, &draw(&m, 2, 4));
    std::fs::write(bad_plan.join("run.json"), "{").unwrap();
    let out = spotlight(&["compare", path(&good), path(&bad_plan)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("badplan/run.json"),
        "{}",
        text(&out.stderr)
    );

    // Bad settings are bad usage too.
    let out = spotlight(&["compare", path(&good), path(&good), "--alpha", "1.5"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(text(&out.stderr).contains("--alpha"));
}

/// Golden markdown of a small comparison (two benchmarks, 12 items, k = 4, seeded
/// bootstrap). Regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test compare_cli` and
/// review the diff.
#[test]
fn small_comparison_markdown_matches_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let m: Vec<SimBenchmark> = model(12, 21).into_iter().take(2).collect();
    let worse = with_regression(&m, "mathverse", 20.0);
    let (a, b) = (tmp.path().join("baseline"), tmp.path().join("candidate"));
    write_run(&a, &m, 4, &draw(&m, 4, 1));
    write_run(&b, &worse, 4, &draw(&worse, 4, 2));
    let out = spotlight(&["compare", path(&a), path(&b), "--resamples", "1000"]);
    assert!(out.status.code().is_some_and(|c| c <= 1));
    check_snapshot("compare_small.md", &text(&out.stdout));
}

fn check_snapshot(name: &str, actual: &str) {
    let file = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(name);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&file).unwrap_or_else(|_| {
        panic!(
            "{} missing: run with UPDATE_SNAPSHOTS=1 and review it",
            file.display()
        )
    });
    assert_eq!(actual, expected, "snapshot {name} differs");
}
