//! `spotlight serve` against `spotlight eval`: an evaluation over HTTP gets exactly the
//! responses and verdicts of the embedded backend with the same seeds; bad requests get 400s
//! naming the field; a run where every sample fails exits 1.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const MODEL: &str = "tests/fixtures/qwen25vl/tiny";

fn spotlight() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

/// A running server, killed when dropped.
struct Server {
    child: Child,
    url: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server() -> Server {
    let mut child = spotlight()
        .args([
            "serve",
            "--model",
            MODEL,
            "--port",
            "0",
            "--served-model-name",
            "tiny",
        ])
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("server exited before listening")
            .unwrap();
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    // keep draining stderr so the server never blocks on a full pipe
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

/// (benchmark, item, sample) -> (response, extracted, correct, finish) from a run's log.
type Outcomes = BTreeMap<(String, String, u64), (String, String, bool, String)>;

fn outcomes(run: &Path) -> Outcomes {
    std::fs::read_to_string(run.join("samples.jsonl"))
        .unwrap()
        .lines()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            assert!(v["error"].is_null(), "{l}");
            (
                (
                    v["benchmark"].as_str().unwrap().to_string(),
                    v["item_id"].as_str().unwrap().to_string(),
                    v["sample"].as_u64().unwrap(),
                ),
                (
                    v["response"].as_str().unwrap().to_string(),
                    v["extracted"].to_string(),
                    v["correct"].as_bool().unwrap(),
                    v["finish"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect()
}

const SETTINGS: &[&str] = &[
    "--bench",
    "geo3k,mmmu-pro",
    "--k",
    "3",
    "--limit",
    "4",
    "--max-tokens",
    "12",
    "--max-pixels",
    "100352",
    "--top-k",
    "50",
    "--seed",
    "7",
    "--json",
];

/// `spotlight eval BACKEND.. SETTINGS --out run --report-dir reports`, which must succeed.
fn eval_ok(backend: &[&str], run: &Path, reports: &Path) {
    let out = spotlight()
        .arg("eval")
        .args(backend)
        .args(SETTINGS)
        .arg("--out")
        .arg(run)
        .arg("--report-dir")
        .arg(reports)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn http_against_serve_gets_exactly_the_embedded_verdicts() {
    let server = start_server();
    let tmp = tempfile::tempdir().unwrap();
    let (http_run, embedded_run) = (tmp.path().join("http"), tmp.path().join("embedded"));
    eval_ok(
        &[
            "--endpoint",
            &server.url,
            "--served-model",
            "tiny",
            "--concurrency",
            "6",
        ],
        &http_run,
        tmp.path(),
    );
    eval_ok(&["--model", MODEL], &embedded_run, tmp.path());
    let (a, b) = (outcomes(&http_run), outcomes(&embedded_run));
    assert_eq!(a.len(), 2 * 4 * 3);
    assert_eq!(a, b, "HTTP against serve and embedded differ");
    // the samples of an item differ from each other (distinct derived seeds)
    let distinct: std::collections::HashSet<&String> = a.values().map(|v| &v.0).collect();
    assert!(distinct.len() > a.len() / 2);
}

#[test]
fn serve_refuses_bad_requests_with_a_json_error_naming_the_field() {
    let server = start_server();
    let client = reqwest::blocking::Client::new();
    let url = format!("{}/v1/chat/completions", server.url);
    let cases = [
        (serde_json::json!({"model": "tiny"}), "messages"),
        (
            serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}], "top_p": 2}),
            "top_p",
        ),
        (
            serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "what?"}]}]}),
            "image",
        ),
    ];
    for (body, needle) in cases {
        let r = client.post(&url).json(&body).send().unwrap();
        assert_eq!(r.status().as_u16(), 400, "{body}");
        let v: serde_json::Value = r.json().unwrap();
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    let r = client.post(&url).body("not json").send().unwrap();
    assert_eq!(r.status().as_u16(), 400);
    // a good request, n = 2: two choices, usage counted
    let body = serde_json::json!({"model": "tiny", "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 5, "seed": 3, "n": 2});
    let v: serde_json::Value = client
        .post(&url)
        .json(&body)
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(v["choices"].as_array().unwrap().len(), 2);
    assert!(v["usage"]["completion_tokens"].as_u64().unwrap() <= 10);
    let models: serde_json::Value = client
        .get(format!("{}/v1/models", server.url))
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(models["data"][0]["id"], "tiny");
}

#[test]
fn a_run_where_every_sample_fails_exits_1() {
    let tmp = tempfile::tempdir().unwrap();
    // a 10-token context cannot hold any prompt: every sample is an error
    let out = spotlight()
        .args([
            "eval", "--model", MODEL, "--bench", "geo3k", "--k", "2", "--limit", "2",
        ])
        .args(["--max-context", "10", "--json", "--out"])
        .arg(tmp.path().join("run"))
        .arg("--report-dir")
        .arg(tmp.path())
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("every one of the 4 samples failed"));
}

#[test]
fn n_per_request_sends_an_items_samples_in_one_request_and_records_it() {
    let server = start_server();
    let tmp = tempfile::tempdir().unwrap();
    let (batched_run, embedded_run) = (tmp.path().join("n"), tmp.path().join("embedded"));
    for (backend, run) in [
        (
            vec![
                "--endpoint",
                server.url.as_str(),
                "--served-model",
                "tiny",
                "--n-per-request",
            ],
            &batched_run,
        ),
        (vec!["--model", MODEL], &embedded_run),
    ] {
        eval_ok(&backend, run, tmp.path());
    }
    let (batched, embedded) = (outcomes(&batched_run), outcomes(&embedded_run));
    // every (item, sample) exactly once, none failed (`outcomes` asserts no errors)
    assert_eq!(
        batched.keys().collect::<Vec<_>>(),
        embedded.keys().collect::<Vec<_>>()
    );
    // the request carries sample 0's seed, and the server draws choice 0 with it; the other
    // choices are the server's draws, not the derived per-sample seeds
    for (key, outcome) in &batched {
        if key.2 == 0 {
            assert_eq!(outcome, &embedded[key], "{key:?}");
        }
    }
    let plan: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(batched_run.join("run.json")).unwrap())
            .unwrap();
    let backend = plan["backend"].as_str().unwrap();
    assert!(backend.contains("server-seeded"), "{backend}");
}

/// Regression: axum refuses bodies over 2 MB unless told otherwise, so a request carrying one
/// large image (base64 grows it by a third) got a bare 413 instead of an answer.
#[test]
fn serve_takes_a_request_with_an_image_over_2_mb() {
    let server = start_server();
    // 1100 x 1000 pixels of noise: a PNG of about 3.3 MB, 4.4 MB in base64
    let mut state = 0x2545_f491_4f6c_dd1du64;
    let img = image::RgbImage::from_fn(1100, 1000, |_, _| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        image::Rgb([state as u8, (state >> 8) as u8, (state >> 16) as u8])
    });
    let mut png = Vec::new();
    image::DynamicImage::ImageRgb8(img)
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    use base64::Engine as _;
    let data = base64::engine::general_purpose::STANDARD.encode(&png);
    assert!(data.len() > 2 << 20, "{} bytes", data.len());
    let body = serde_json::json!({"model": "tiny", "max_tokens": 2, "seed": 1,
        "mm_processor_kwargs": {"max_pixels": 56 * 56},
        "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{data}")}},
            {"type": "text", "text": "what?"}]}]});
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/chat/completions", server.url))
        .json(&body)
        .send()
        .unwrap();
    let status = r.status().as_u16();
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["choices"].as_array().unwrap().len(), 1);
}
