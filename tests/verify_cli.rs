//! `spotlight grade` end to end: single-case output and exit codes, JSONL and parquet
//! round trips with pass-through columns.

use std::process::Command;

fn spotlight() -> Command {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
}

#[test]
fn single_case_json_reports_extraction_verdict_and_steps() {
    let out = spotlight()
        .args([
            "grade",
            "--json",
            "--response",
            r"so \boxed{\dfrac{3}{4}}",
            "--truth",
            "0.75",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["extracted"], r"\dfrac{3}{4}");
    assert_eq!(v["correct"], true);
    assert!(v["steps"].as_array().unwrap().len() > 5);
}

#[test]
fn single_case_incorrect_exits_1_and_unknown_rules_exit_2() {
    let out = spotlight()
        .args(["grade", "--response", r"\boxed{5}", "--truth", "6"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let out = spotlight()
        .args([
            "grade",
            "--rules",
            "nope",
            "--response",
            "a",
            "--truth",
            "b",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn jsonl_to_parquet_to_jsonl_keeps_extra_columns_and_adds_scores() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("in.jsonl");
    std::fs::write(
        &input,
        concat!(
            r#"{"id": "a", "response": "\\boxed{2}", "ground_truth": "2", "n": 1}"#,
            "\n",
            r#"{"id": "b", "response": "no box", "ground_truth": "3", "n": 2}"#,
            "\n",
            r#"{"id": "c", "response": "\\boxed{12 cm}", "ground_truth": "B", "options": ["3", "12 cm"], "n": 3}"#,
            "\n"
        ),
    )
    .unwrap();
    let pq = dir.path().join("out.parquet");
    let st = spotlight()
        .args(["grade", "--rules", "multiple_choice", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(&pq)
        .status()
        .unwrap();
    assert!(st.success());
    let back = dir.path().join("back.jsonl");
    let st = spotlight()
        .args(["grade", "--input"])
        .arg(&pq)
        .arg("--output")
        .arg(&back)
        .status()
        .unwrap();
    assert!(st.success());
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(&back)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0]["id"], "a");
    assert_eq!(rows[1]["n"], 2);
    assert_eq!(rows[0]["correct"], true);
    assert_eq!(rows[1]["correct"], false);
    assert!(rows[1]["extracted"].is_null());
    assert_eq!(rows[0]["score_accuracy"], 1.0);
    assert_eq!(rows[2]["options"], serde_json::json!(["3", "12 cm"]));
}

#[test]
fn unreadable_input_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("bad.jsonl");
    std::fs::write(&input, "{not json\n").unwrap();
    let out = spotlight()
        .args(["grade", "--input"])
        .arg(&input)
        .arg("--output")
        .arg(dir.path().join("o.jsonl"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("line 1"));
}
