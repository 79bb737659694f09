//! `spotlight eval --replay` end to end with the real verifier: known responses give the
//! hand-computed avg@k on all eight benchmarks, the Avg over the eight, and a report whose
//! published rows are the paper's.

use std::path::Path;
use std::process::Command;

use spotlight::bench::{DataSource, Registry};

#[test]
fn replay_of_known_responses_gives_hand_computed_numbers_and_a_report() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let registry = Registry::load(root).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    // Sample 0 boxes the ground truth, sample 1 a wrong answer, sample 2 has no box, sample 3
    // boxes the truth with spaces that mathruler normalises away: avg@4 = 50% everywhere,
    // pass@4 = 100%.
    let mut lines = String::new();
    for manifest in registry.all() {
        for item in registry
            .load_benchmark(manifest, &DataSource::Bundled)
            .unwrap()
            .items
        {
            let responses = [
                format!(
                    "<think>Reading the figure.</think> The answer is \\boxed{{{}}}.",
                    item.answer
                ),
                "<think>Guess.</think> \\boxed{not the answer}".to_string(),
                "I am not sure.".to_string(),
                format!("<think>ok</think> \\boxed{{ {} }}", item.answer),
            ];
            for (s, response) in responses.iter().enumerate() {
                lines.push_str(&serde_json::json!({
                    "benchmark": manifest.name, "item_id": item.id, "sample": s, "response": response
                }).to_string());
                lines.push('\n');
            }
        }
    }
    let replay = tmp.path().join("responses.jsonl");
    std::fs::write(&replay, lines).unwrap();
    let out = tmp.path().join("replay-run");
    let output = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(["eval", "--replay"])
        .arg(&replay)
        .args(["--bench", "all", "--k", "4", "--json", "--out"])
        .arg(&out)
        .arg("--report-dir")
        .arg(tmp.path())
        .current_dir(root)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let summary: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    for (slug, b) in summary["benchmarks"].as_object().unwrap() {
        assert_eq!(b["avg_at_k"], 50.0, "{slug}: {b}");
        assert_eq!(b["pass_at_k"], 100.0, "{slug}");
        assert_eq!(b["errors"], 0);
    }
    // The Avg is the mean of the eight columns.
    assert_eq!(summary["avg"], 50.0);
    let report = std::fs::read_to_string(tmp.path().join("replay-run.md")).unwrap();
    // Best / second-best marks aside, the published row is the paper's.
    let plain = report
        .replace("**", "")
        .replace("<u>", "")
        .replace("</u>", "");
    assert!(plain.contains(
        "| Qwen2.5-VL-7B+VPPO | 71.6 | 68.1 | 82.8 | 46.5 | 33.3 | 71.5 | 47.9 | 37.9 | 57.5 |"
    ));
    assert!(plain.contains("| *replay-run* (measured) | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 | 50.0 |"), "{report}");
    assert!(report.contains("NOT comparable"));
    // The parquet holds one row per sample with the reward component columns.
    let file = std::fs::File::open(out.join("samples.parquet")).unwrap();
    let reader =
        parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
    let schema = reader.schema().clone();
    let rows: usize = reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum();
    assert_eq!(rows, 8 * 24 * 4);
    for column in [
        "benchmark",
        "item_id",
        "sample",
        "seed",
        "response",
        "extracted",
        "correct",
        "reward",
        "finish",
        "latency_ms",
        "error",
    ] {
        assert!(schema.column_with_name(column).is_some(), "{column}");
    }
}
