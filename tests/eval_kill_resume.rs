//! `spotlight eval` killed with SIGKILL at seeded random points and resumed: every
//! (item, sample) ends up in samples.jsonl exactly once and summary.json equals an
//! uninterrupted run's. The model is a mock OpenAI-compatible server on 127.0.0.1 that
//! answers slowly (so kills land mid-run) with responses derived from each request's seed
//! (so both runs see the same answers whatever the order).

#[path = "eval_http_mock/mod.rs"]
mod mock;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mock::{completion, MockServer, Reply};
use rand::{Rng, SeedableRng};
use spotlight::bench::{DataSource, Registry};
use spotlight::eval::http::wire_seed;
use spotlight::seed::derive_seed;

const RUN_SEED: u64 = 5;
const K: u32 = 4;
const LIMIT: usize = 6;
const KEY_VARIABLE: &str = "SPOTLIGHT_KILL_TEST_KEY";
const KEY: &str = "sk-kill-test-93be";

/// Wire seed -> the item's truth, for the run's items and samples.
fn truths() -> HashMap<u64, String> {
    let registry = Registry::load(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap();
    let items = registry
        .load_benchmark(registry.get("geo3k").unwrap(), &DataSource::Bundled)
        .unwrap()
        .items;
    let mut table = HashMap::new();
    for item in items.iter().take(LIMIT) {
        for s in 0..K {
            table.insert(
                wire_seed(derive_seed(RUN_SEED, &item.id, s)),
                item.answer.clone(),
            );
        }
    }
    table
}

/// Right on two seeds in three, in the boxed form the verifier extracts.
fn mock_model() -> MockServer {
    let truths = Arc::new(truths());
    MockServer::start(move |seen| {
        let seed = seen.seed();
        let Some(truth) = truths.get(&seed) else {
            return Reply::status(400, "{\"error\": \"unexpected seed\"}");
        };
        let content = if seed % 3 == 0 {
            "The answer is \\boxed{987654}.".to_string()
        } else {
            format!("Working... so the answer is \\boxed{{{truth}}}.")
        };
        Reply::Respond {
            status: 200,
            body: completion(&content, "stop", 50, 9),
            delay: Duration::from_millis(20),
            headers: Vec::new(),
        }
    })
}

fn eval_command(server: &MockServer, out: &Path, resume: bool) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    command
        .args(["eval", "--endpoint"])
        .arg(server.url())
        .args(["--served-model", "mock-vl", "--bench", "geo3k"])
        .args(["--k", &K.to_string(), "--limit", &LIMIT.to_string()])
        .args(["--seed", &RUN_SEED.to_string(), "--concurrency", "2"])
        .args(["--api-key-env", KEY_VARIABLE, "--json"])
        .arg("--out")
        .arg(out)
        .arg("--report-dir")
        .arg(out.parent().unwrap())
        .env(KEY_VARIABLE, KEY)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if resume {
        command.arg("--resume");
    }
    command
}

fn run_to_end(server: &MockServer, out: &Path, resume: bool) -> String {
    let output = eval_command(server, out, resume).output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "spotlight eval failed: {stderr}");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(!stdout.contains(KEY) && !stderr.contains(KEY));
    stdout
}

fn log_lines(out: &Path) -> usize {
    std::fs::read(out.join("samples.jsonl"))
        .map(|b| b.iter().filter(|&&c| c == b'\n').count())
        .unwrap_or(0)
}

/// Starts a run and SIGKILLs it once its log holds `lines` complete lines.
fn kill_after(server: &MockServer, out: &Path, resume: bool, lines: usize) {
    let mut child: Child = eval_command(server, out, resume).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before {lines} samples were logged");
        }
        if log_lines(out) >= lines {
            break;
        }
        assert!(Instant::now() < deadline, "no progress in 60 s");
        std::thread::sleep(Duration::from_millis(1));
    }
    // std's Child::kill is SIGKILL on Unix: no chance to flush or clean up.
    child.kill().unwrap();
    let status = child.wait().unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(status.signal(), Some(9), "killed by SIGKILL");
    }
    #[cfg(not(unix))]
    let _ = status;
}

/// (item, sample) -> how many lines of the raw log hold it (no dedup, unlike the reader).
fn raw_keys(out: &Path) -> BTreeMap<(String, u32), usize> {
    let text = std::fs::read_to_string(out.join("samples.jsonl")).unwrap();
    let mut keys = BTreeMap::new();
    for line in text.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let key = (
            v["item_id"].as_str().unwrap().to_string(),
            v["sample"].as_u64().unwrap() as u32,
        );
        *keys.entry(key).or_insert(0) += 1;
    }
    keys
}

/// The log's records without their timing, in key order.
fn records_without_latency(out: &Path) -> Vec<serde_json::Value> {
    let mut records = spotlight::eval::SampleLog::read(out).unwrap();
    records.sort_by_key(|r| r.key());
    records
        .into_iter()
        .map(|r| {
            let mut v = serde_json::to_value(r).unwrap();
            v["latency_ms"] = serde_json::Value::Null;
            v
        })
        .collect()
}

#[test]
fn sigkilled_runs_resume_without_losing_or_duplicating_samples() {
    let server = mock_model();
    let tmp = tempfile::tempdir().unwrap();
    // The same folder name in both places: the run's name is in summary.json.
    let full: PathBuf = tmp.path().join("a").join("run");
    let cut: PathBuf = tmp.path().join("b").join("run");
    std::fs::create_dir_all(full.parent().unwrap()).unwrap();
    std::fs::create_dir_all(cut.parent().unwrap()).unwrap();
    let total = LIMIT * K as usize;

    let uninterrupted = run_to_end(&server, &full, false);
    let expected: serde_json::Value = serde_json::from_str(&uninterrupted).unwrap();
    let avg = expected["benchmarks"]["geo3k"]["avg_at_k"]
        .as_f64()
        .unwrap();
    assert!(avg > 0.0 && avg < 100.0, "a mix of right and wrong: {avg}");
    assert_eq!(expected["benchmarks"]["geo3k"]["errors"], 0);

    // Two kills at seeded points, then a resume to the end.
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(RUN_SEED);
    let first = rng.random_range(1..total / 2);
    let second = rng.random_range(first + 1..total);
    kill_after(&server, &cut, false, first);
    assert!(!cut.join("summary.json").exists(), "killed before the end");
    kill_after(&server, &cut, true, second);
    let resumed = run_to_end(&server, &cut, true);

    let keys = raw_keys(&cut);
    assert_eq!(keys.len(), total, "every (item, sample) is in the log");
    assert!(
        keys.values().all(|&n| n == 1),
        "no (item, sample) twice: {keys:?}"
    );
    let resumed: serde_json::Value = serde_json::from_str(&resumed).unwrap();
    assert_eq!(resumed, expected, "summary printed by the resumed run");
    let on_disk = |dir: &Path| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap()
    };
    assert_eq!(on_disk(&cut), on_disk(&full), "summary.json");
    assert_eq!(
        records_without_latency(&cut),
        records_without_latency(&full)
    );

    // Requests carried the key; the run folder does not.
    let seen = server.seen();
    let bearer = format!("Bearer {KEY}");
    assert!(seen
        .iter()
        .all(|s| s.headers.get("authorization") == Some(&bearer)));
    for file in ["run.json", "samples.jsonl", "summary.json"] {
        let text = std::fs::read_to_string(cut.join(file)).unwrap();
        assert!(!text.contains(KEY), "{file}");
    }
}
