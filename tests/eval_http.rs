//! The HTTP backend against a mock OpenAI-compatible server on 127.0.0.1: the documented
//! request fields and per-sample seeds, and the faults a real server shows (500s, stalls
//! past the timeout, dropped connections), each either retried to success or recorded on
//! its sample while the run finishes and counts it.

mod eval_support;
use eval_support::{exact, registry};

#[path = "eval_http_mock/mod.rs"]
mod mock;

use std::collections::{BTreeSet, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mock::{completion, MockServer, Reply, Seen};
use spotlight::bench::{DataSource, Item, Registry};
use spotlight::eval::http::{wire_seed, ApiKey, Backoff, HttpBackend, HttpConfig};
use spotlight::eval::{self, EvalRequest, Sampling};
use spotlight::seed::derive_seed;

const RUN_SEED: u64 = 23;

/// Correct when the response is exactly the truth: these tests are about transport.
fn geo3k_items(registry: &Registry, limit: usize) -> Vec<Item> {
    let mut items = registry
        .load_benchmark(registry.get("geo3k").unwrap(), &DataSource::Bundled)
        .unwrap()
        .items;
    items.truncate(limit);
    items
}

/// Wire seed -> (item id, truth, sample) for the first `limit` items.
fn seed_table(items: &[Item], k: u32) -> HashMap<u64, (String, String, u32)> {
    let mut table = HashMap::new();
    for item in items {
        for s in 0..k {
            let wire = wire_seed(derive_seed(RUN_SEED, &item.id, s));
            table.insert(wire, (item.id.clone(), item.answer.clone(), s));
        }
    }
    table
}

fn sampling() -> Sampling {
    Sampling {
        temperature: 0.7,
        top_p: 0.9,
        top_k: 20,
        max_tokens: 64,
        ..Sampling::default()
    }
}

fn request(registry: &Registry, out: PathBuf, k: u32, limit: usize) -> EvalRequest<'_> {
    EvalRequest {
        registry,
        bench: "geo3k".into(),
        data: DataSource::Bundled,
        k,
        seed: RUN_SEED,
        sampling: sampling(),
        limit: Some(limit),
        out,
        resume: false,
        concurrency: 3,
        progress: false,
        model: None,
        grader_for: &exact,
    }
}

/// A backend with millisecond backoff so retry tests take milliseconds.
fn backend(server: &MockServer, timeout: Duration, retries: u32, key: Option<&str>) -> HttpBackend {
    let config = HttpConfig {
        request_timeout: timeout,
        retries,
        backoff: Backoff {
            base: Duration::from_millis(2),
            max: Duration::from_millis(20),
        },
        ..HttpConfig::new(format!("{}/v1", server.url()), "mock-vl")
    };
    HttpBackend::new(config, key.map(ApiKey::new)).unwrap()
}

/// Answers the truth on even wire seeds and "wrong" on odd ones.
fn answer(table: &HashMap<u64, (String, String, u32)>, seen: &Seen) -> Reply {
    match table.get(&seen.seed()) {
        Some((_, truth, _)) if seen.seed() % 2 == 0 => Reply::ok(completion(truth, "stop", 100, 7)),
        Some(_) => Reply::ok(completion("wrong", "length", 100, 64)),
        None => Reply::status(400, "{\"error\": \"unknown seed\"}"),
    }
}

#[test]
fn requests_carry_the_documented_fields_and_derived_seeds() {
    let registry = registry();
    let (k, limit) = (3, 4);
    let items = geo3k_items(&registry, limit);
    let table = Arc::new(seed_table(&items, k));
    let server = {
        let table = table.clone();
        MockServer::start(move |seen| answer(&table, seen))
    };
    let secret = "sk-spotlight-test-7f3a9c";
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let http = backend(&server, Duration::from_secs(10), 0, Some(secret));
    let outcome = eval::evaluate(&request(&registry, out.clone(), k, limit), &http).unwrap();

    let seen = server.seen();
    assert_eq!(seen.len(), limit * k as usize, "one request per sample");
    let seeds: BTreeSet<u64> = seen.iter().map(Seen::seed).collect();
    let expected: BTreeSet<u64> = table.keys().copied().collect();
    assert_eq!(
        seeds, expected,
        "each request carries its sample's derived seed"
    );
    for s in &seen {
        assert_eq!(s.method, "POST");
        assert_eq!(s.path, "/v1/chat/completions");
        assert_eq!(s.headers["authorization"], format!("Bearer {secret}"));
        assert_eq!(s.headers["content-type"], "application/json");
        let b = &s.body;
        assert_eq!(b["model"], "mock-vl");
        assert_eq!(b["n"], 1);
        assert_eq!(b["temperature"], 0.7);
        assert_eq!(b["top_p"], 0.9);
        assert_eq!(b["top_k"], 20);
        assert_eq!(b["max_tokens"], 64);
        assert_eq!(b["messages"][0]["role"], "system");
        assert_eq!(b["messages"][0]["content"], eval::DEFAULT_SYSTEM);
        let user = &b["messages"][1];
        assert_eq!(user["role"], "user");
        let content = user["content"].as_array().unwrap();
        let (item_id, _, _) = &table[&s.seed()];
        let item = items.iter().find(|i| &i.id == item_id).unwrap();
        let images = item.images.iter().filter(|i| i.bytes.is_some()).count();
        assert!(images > 0, "geo3k items have images");
        assert_eq!(content.len(), images + 1, "images, then the text");
        for part in &content[..images] {
            assert_eq!(part["type"], "image_url");
            let url = part["image_url"]["url"].as_str().unwrap();
            assert!(url.starts_with("data:image/png;base64,"), "{}", &url[..40]);
        }
        assert_eq!(content[images]["type"], "text");
        assert!(content[images]["text"].as_str().unwrap().len() > 10);
    }

    // The answers came back into the records: parsed fields and grading by wire seed.
    let records = eval::SampleLog::read(&out).unwrap();
    assert_eq!(records.len(), limit * k as usize);
    let mut right = 0;
    for r in &records {
        assert_eq!(r.seed, derive_seed(RUN_SEED, &r.item_id, r.sample));
        assert_eq!(r.error, None);
        assert_eq!(r.prompt_tokens, Some(100));
        let even = wire_seed(r.seed) % 2 == 0;
        assert_eq!(r.correct, even, "{r:?}");
        assert_eq!(r.finish, if even { "stop" } else { "length" });
        right += even as usize;
    }
    let geo = &outcome.summary.benchmarks["geo3k"];
    assert_eq!(geo.errors, 0);
    let expected_avg = 100.0 * right as f64 / records.len() as f64;
    assert!((geo.avg_at_k.unwrap() - expected_avg).abs() < 1e-9);

    // The run records the backend (URL + model) and nowhere the key.
    let plan = eval::EvalPlan::load(&out).unwrap().unwrap();
    assert_eq!(plan.backend, format!("http:{} model mock-vl", server.url()));
    for file in ["run.json", "samples.jsonl", "summary.json"] {
        let text = std::fs::read_to_string(out.join(file)).unwrap();
        assert!(!text.contains(secret), "{file} holds the API key");
    }
}

#[test]
fn server_errors_and_rate_limits_are_retried_until_success() {
    let registry = registry();
    let (k, limit) = (2, 3);
    let table = Arc::new(seed_table(&geo3k_items(&registry, limit), k));
    let server = {
        let table = table.clone();
        MockServer::start(move |seen| match seen.attempt {
            0 | 1 => Reply::status(500, "{\"error\": \"engine overloaded\"}"),
            2 => Reply::Respond {
                status: 429,
                body: "{\"error\": \"slow down\"}".into(),
                delay: Duration::ZERO,
                headers: vec![("retry-after".into(), "0".into())],
            },
            _ => answer(&table, seen),
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let http = backend(&server, Duration::from_secs(10), 3, None);
    let outcome =
        eval::evaluate(&request(&registry, tmp.path().join("run"), k, limit), &http).unwrap();
    assert_eq!(outcome.summary.benchmarks["geo3k"].errors, 0);
    let records = eval::SampleLog::read(&tmp.path().join("run")).unwrap();
    assert!(records
        .iter()
        .all(|r| r.error.is_none() && !r.response.is_empty()));
    // Every sample took exactly four attempts: two 500s, one 429, then the answer.
    let seen = server.seen();
    assert_eq!(seen.len(), 4 * limit * k as usize);
    for seed in table.keys() {
        assert_eq!(seen.iter().filter(|s| s.seed() == *seed).count(), 4);
    }
    assert!(seen
        .iter()
        .all(|s| !s.headers.contains_key("authorization")));
}

#[test]
fn stalls_past_the_timeout_are_retried_then_recorded_as_errors() {
    let registry = registry();
    let (k, limit) = (2, 2);
    let items = geo3k_items(&registry, limit);
    let table = Arc::new(seed_table(&items, k));
    let stalled_item = items[0].id.clone();
    let server = {
        let (table, stalled_item) = (table.clone(), stalled_item.clone());
        MockServer::start(move |seen| {
            let (item, _, _) = &table[&seen.seed()];
            // The first item's samples never get an answer; the other's stall once.
            if *item == stalled_item || seen.attempt == 0 {
                Reply::Stall(Duration::from_secs(3))
            } else {
                answer(&table, seen)
            }
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let http = backend(&server, Duration::from_millis(400), 2, None);
    let outcome = eval::evaluate(&request(&registry, out.clone(), k, limit), &http).unwrap();

    let records = eval::SampleLog::read(&out).unwrap();
    assert_eq!(records.len(), limit * k as usize, "the run finished");
    for r in &records {
        if r.item_id == stalled_item {
            let error = r.error.as_deref().unwrap();
            assert!(
                error.contains("gave up after 3 attempts") && error.contains("timed out"),
                "{error}"
            );
            assert_eq!(r.finish, "error");
        } else {
            assert_eq!(r.error, None, "{r:?}");
        }
    }
    let geo = &outcome.summary.benchmarks["geo3k"];
    assert_eq!(geo.errors, k as usize);
    let on_disk: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(on_disk["benchmarks"]["geo3k"]["errors"], k);
    let seen = server.seen();
    for (seed, (item, _, _)) in table.iter() {
        let attempts = seen.iter().filter(|s| s.seed() == *seed).count();
        if *item == stalled_item {
            assert_eq!(attempts, 3);
        } else {
            // One stall, then the answer (a third only if a loaded machine missed 400 ms).
            assert!(attempts >= 2, "{attempts}");
        }
    }
}

#[test]
fn dropped_connections_are_retried() {
    let registry = registry();
    let (k, limit) = (2, 3);
    let table = Arc::new(seed_table(&geo3k_items(&registry, limit), k));
    let server = {
        let table = table.clone();
        MockServer::start(move |seen| {
            if seen.attempt < 2 {
                Reply::Drop
            } else {
                answer(&table, seen)
            }
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let http = backend(&server, Duration::from_secs(10), 2, None);
    let outcome =
        eval::evaluate(&request(&registry, tmp.path().join("run"), k, limit), &http).unwrap();
    assert_eq!(outcome.summary.benchmarks["geo3k"].errors, 0);
    let seen = server.seen();
    assert_eq!(seen.len(), 3 * limit * k as usize);
    for seed in table.keys() {
        assert_eq!(seen.iter().filter(|s| s.seed() == *seed).count(), 3);
    }
}

#[test]
fn persistent_failures_are_recorded_per_sample_and_counted() {
    let registry = registry();
    let (k, limit) = (3, 4);
    let table = Arc::new(seed_table(&geo3k_items(&registry, limit), k));
    // Samples whose wire seed is 0 mod 3 always get a 503, 1 mod 5 a 400 (not worth a
    // retry), others are dropped on every attempt past the retries; the rest succeed.
    let kind = |seed: u64| match (seed % 3, seed % 5, seed % 7) {
        (0, _, _) => "503",
        (_, 1, _) => "400",
        (_, _, 2) => "drop",
        _ => "ok",
    };
    let server = {
        let table = table.clone();
        MockServer::start(move |seen| match kind(seen.seed()) {
            "503" => Reply::status(503, "{\"error\": \"no replicas\"}"),
            "400" => Reply::status(400, "{\"error\": \"prompt too long\"}"),
            "drop" => Reply::Drop,
            _ => answer(&table, seen),
        })
    };
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("run");
    let http = backend(&server, Duration::from_secs(10), 2, None);
    let outcome = eval::evaluate(&request(&registry, out.clone(), k, limit), &http).unwrap();

    let records = eval::SampleLog::read(&out).unwrap();
    assert_eq!(
        records.len(),
        limit * k as usize,
        "every sample is recorded"
    );
    let mut failing = 0;
    for r in &records {
        let error = r.error.as_deref();
        match kind(wire_seed(r.seed)) {
            "503" => {
                let e = error.unwrap();
                assert!(
                    e.contains("gave up after 3 attempts") && e.contains("503"),
                    "{e}"
                );
                assert!(
                    e.contains("no replicas"),
                    "the server's words are kept: {e}"
                );
            }
            "400" => {
                let e = error.unwrap();
                assert!(e.contains("400") && !e.contains("gave up"), "{e}");
            }
            "drop" => assert!(error.unwrap().contains("gave up after 3 attempts")),
            _ => assert_eq!(error, None),
        }
        failing += error.is_some() as usize;
    }
    assert!(
        failing > 0 && failing < records.len(),
        "a mix of failures: {failing}"
    );
    let geo = &outcome.summary.benchmarks["geo3k"];
    assert_eq!(geo.errors, failing);
    assert_eq!(geo.samples, records.len());
    // A 400 is not retried; the transient failures are, up to the limit.
    let seen = server.seen();
    for seed in table.keys() {
        let attempts = seen.iter().filter(|s| s.seed() == *seed).count();
        let expected = match kind(*seed) {
            "503" | "drop" => 3,
            _ => 1,
        };
        assert_eq!(attempts, expected, "seed {seed} ({})", kind(*seed));
    }
}

#[test]
fn a_refused_connection_is_an_error_on_each_sample_not_a_crash() {
    // Bind then drop a listener: nothing listens on that port afterwards.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let registry = registry();
    let config = HttpConfig {
        request_timeout: Duration::from_secs(5),
        retries: 1,
        backoff: Backoff {
            base: Duration::from_millis(1),
            max: Duration::from_millis(5),
        },
        ..HttpConfig::new(format!("http://127.0.0.1:{port}"), "m")
    };
    let http = HttpBackend::new(config, None).unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let outcome = eval::evaluate(&request(&registry, tmp.path().join("run"), 2, 2), &http).unwrap();
    let geo = &outcome.summary.benchmarks["geo3k"];
    assert_eq!((geo.errors, geo.samples), (4, 4));
    assert_eq!(geo.avg_at_k, None, "nothing scored");
}

#[test]
fn the_cli_checks_its_http_options() {
    let tmp = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_spotlight"))
            .arg("eval")
            .args(args)
            .arg("--out")
            .arg(tmp.path().join("run"))
            .env_remove("OPENAI_API_KEY")
            .output()
            .unwrap()
    };
    let missing_model = run(&["--endpoint", "http://127.0.0.1:9"]);
    assert_eq!(missing_model.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing_model.stderr).contains("--served-model"));
    let unset_key = run(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--served-model",
        "m",
        "--api-key-env",
        "SPOTLIGHT_TEST_UNSET_VARIABLE",
    ]);
    assert_eq!(unset_key.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unset_key.stderr);
    assert!(stderr.contains("SPOTLIGHT_TEST_UNSET_VARIABLE"), "{stderr}");
    let bad_timeout = run(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--served-model",
        "m",
        "--request-timeout",
        "0",
    ]);
    assert_eq!(bad_timeout.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&bad_timeout.stderr).contains("--request-timeout"));
}
