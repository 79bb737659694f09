//! The evaluation runner on the replay backend: hand-computed avg@k and pass@k, the run
//! folder's files, and resuming a run whose log was cut mid-line (the state SIGKILL leaves).

mod eval_support;
use eval_support::{exact, registry};

use std::path::{Path, PathBuf};

use spotlight::bench::{DataSource, Registry};
use spotlight::eval::replay::ReplayBackend;
use spotlight::eval::{self, EvalRequest, Sampling};

/// Replay file for the first `items` Geo3k items: item i gets `right[i]` correct samples
/// out of k (the first ones).
fn replay_file(dir: &Path, registry: &Registry, right: &[u32], k: u32) -> PathBuf {
    let manifest = registry.get("geo3k").unwrap();
    let items = registry
        .load_benchmark(manifest, &DataSource::Bundled)
        .unwrap()
        .items;
    let mut lines = String::new();
    for (item, &r) in items.iter().zip(right) {
        for s in 0..k {
            let response = if s < r {
                item.answer.clone()
            } else {
                "wrong".into()
            };
            lines.push_str(
                &serde_json::json!({
                    "benchmark": "Geo3k", "item_id": item.id, "sample": s, "response": response
                })
                .to_string(),
            );
            lines.push('\n');
        }
    }
    let path = dir.join("responses.jsonl");
    std::fs::write(&path, lines).unwrap();
    path
}

fn request<'a>(registry: &'a Registry, out: PathBuf, k: u32, resume: bool) -> EvalRequest<'a> {
    EvalRequest {
        registry,
        bench: "geometry3k".into(),
        data: DataSource::Bundled,
        k,
        seed: 11,
        sampling: Sampling::default(),
        limit: Some(4),
        out,
        resume,
        concurrency: 3,
        progress: false,
        model: None,
        grader_for: &exact,
    }
}

#[test]
fn replay_gives_the_hand_computed_avg_and_pass_at_k() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    // Four items, k = 4, correct samples 4, 2, 1, 0.
    let replay = replay_file(tmp.path(), &registry, &[4, 2, 1, 0], 4);
    let backend =
        ReplayBackend::open(&replay, |n| registry.get(n).ok().map(|m| m.slug.clone())).unwrap();
    let out = tmp.path().join("run-a");
    let outcome = eval::evaluate(&request(&registry, out.clone(), 4, false), &backend).unwrap();
    let geo = &outcome.summary.benchmarks["geo3k"];
    // avg@4 = mean(1, 0.5, 0.25, 0) = 43.75%.
    assert!(
        (geo.avg_at_k.unwrap() - 43.75).abs() < 1e-9,
        "{:?}",
        geo.avg_at_k
    );
    // pass@4 with n = k = 4: any correct -> (1 + 1 + 1 + 0) / 4 = 75%.
    assert!((geo.pass_at_k.unwrap() - 75.0).abs() < 1e-9);
    assert_eq!(geo.items, 4);
    assert_eq!(geo.samples, 16);
    // Not all eight: no Avg.
    assert_eq!(outcome.summary.avg, None);
    for file in [
        "run.json",
        "samples.jsonl",
        "samples.parquet",
        "summary.json",
    ] {
        assert!(out.join(file).is_file(), "{file}");
    }
    // Seeds are the documented derivation, distinct per sample.
    let records = eval::SampleLog::read(&out).unwrap();
    let first = &records.iter().find(|r| r.sample == 1).unwrap();
    assert_eq!(
        first.seed,
        spotlight::seed::derive_seed(11, &first.item_id, 1)
    );
    // A second run into the same folder without --resume is refused.
    let err = eval::evaluate(&request(&registry, out, 4, false), &backend)
        .err()
        .unwrap();
    assert!(err.to_string().contains("--resume"), "{err}");
}

#[test]
fn missing_replay_responses_are_recorded_errors_not_failures() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    // Only 2 of 4 samples for each item exist in the file.
    let replay = replay_file(tmp.path(), &registry, &[2, 2, 2, 2], 2);
    let backend =
        ReplayBackend::open(&replay, |n| registry.get(n).ok().map(|m| m.slug.clone())).unwrap();
    let outcome = eval::evaluate(
        &request(&registry, tmp.path().join("run"), 4, false),
        &backend,
    )
    .unwrap();
    let geo = &outcome.summary.benchmarks["geo3k"];
    assert_eq!(geo.errors, 8);
    assert_eq!(geo.samples, 16);
    // Scored samples only: all correct.
    assert_eq!(geo.avg_at_k, Some(100.0));
}

#[test]
fn resume_after_a_cut_log_equals_an_uninterrupted_run() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let replay = replay_file(tmp.path(), &registry, &[3, 1, 2, 0], 4);
    let backend =
        ReplayBackend::open(&replay, |n| registry.get(n).ok().map(|m| m.slug.clone())).unwrap();
    let full = eval::evaluate(
        &request(&registry, tmp.path().join("full"), 4, false),
        &backend,
    )
    .unwrap();

    let cut_dir = tmp.path().join("cut");
    eval::evaluate(&request(&registry, cut_dir.clone(), 4, false), &backend).unwrap();
    // Cut the log at several seeded offsets, as a kill mid-write leaves it.
    let log = cut_dir.join("samples.jsonl");
    let bytes = std::fs::read(&log).unwrap();
    for cut in [bytes.len() / 3 + 7, bytes.len() / 2 + 1, 5] {
        std::fs::write(&log, &bytes[..cut]).unwrap();
        std::fs::remove_file(cut_dir.join("summary.json")).unwrap();
        let resumed =
            eval::evaluate(&request(&registry, cut_dir.clone(), 4, true), &backend).unwrap();
        let records = eval::SampleLog::read(&cut_dir).unwrap();
        assert_eq!(records.len(), 16, "every (item, sample) exactly once");
        let mut keys: Vec<_> = records.iter().map(|r| r.key()).collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), 16);
        assert!(resumed.produced_now > 0);
        assert_eq!(
            serde_json::to_value(&resumed.summary.benchmarks).unwrap(),
            serde_json::to_value(&full.summary.benchmarks).unwrap()
        );
    }
    // Resuming with other sampling settings is refused.
    let mut other = request(&registry, cut_dir, 4, true);
    other.seed = 12;
    let err = eval::evaluate(&other, &backend).err().unwrap().to_string();
    assert!(err.contains("seed"), "{err}");
}

#[test]
fn replay_rows_with_unknown_benchmarks_name_file_and_row() {
    let registry = registry();
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("r.jsonl");
    std::fs::write(
        &path,
        "{\"benchmark\":\"geo3k\",\"item_id\":\"1\",\"sample\":0,\"response\":\"x\"}\n{\"benchmark\":\"mathvista\",\"item_id\":\"1\",\"sample\":0,\"response\":\"x\"}\n",
    )
    .unwrap();
    let err = ReplayBackend::open(&path, |n| registry.get(n).ok().map(|m| m.slug.clone()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("r.jsonl") && err.contains("row 1") && err.contains("benchmark"),
        "{err}"
    );
}
