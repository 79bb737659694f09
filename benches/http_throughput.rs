//! HTTP evaluation backend against `spotlight serve`: requests/s at concurrency 1, 4 and 16.
//!
//! The server is the built binary on a loopback port, serving `SPOTLIGHT_BENCH_MODEL` (default:
//! the tiny test fixture, whose model cost is small, so the figure is mostly transport, JSON,
//! base64 and image handling; a larger checkpoint measures how well the server's batching of
//! concurrent requests pays). Each request is one evaluation sample of the first Geo3k item
//! (its figure as a base64 PNG, its rendered prompt), `NEW_TOKENS` new tokens, its own seed,
//! sent through [`HttpBackend::sample`] exactly as `spotlight eval --endpoint` sends it.
//!
//! `cargo bench --bench http_throughput`

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spotlight::bench::{DataSource, PromptRenderer, Registry};
use spotlight::eval::http::{HttpBackend, HttpConfig};
use spotlight::eval::{Backend, SampleRequest, Sampling, DEFAULT_SYSTEM};

/// New tokens per request (EOS still ends a sample early).
const NEW_TOKENS: u32 = 32;
/// Requests per measured iteration.
const REQUESTS: usize = 32;

/// `spotlight serve` on a free loopback port, killed when dropped.
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

fn start_server(model: &Path) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args([
            "serve",
            "--port",
            "0",
            "--served-model-name",
            "bench",
            "--model",
        ])
        .arg(model)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting spotlight serve");
    let mut lines = BufReader::new(child.stderr.take().expect("stderr")).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("the server exited before listening")
            .expect("reading the server's stderr");
        if let Some(at) = line.find("http://") {
            break line[at..].trim().to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    Server { child, url }
}

fn bench(c: &mut Criterion) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let model = std::env::var_os("SPOTLIGHT_BENCH_MODEL")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("tests/fixtures/qwen25vl/tiny"));
    let registry = Registry::load(root).expect("benchmark manifests");
    let manifest = registry.get("geo3k").expect("geo3k manifest");
    let item = registry
        .load_benchmark(manifest, &DataSource::Bundled)
        .expect("bundled geo3k")
        .items
        .swap_remove(0);
    let prompt = PromptRenderer::new(manifest)
        .and_then(|r| r.render(&item))
        .expect("prompt");
    let server = start_server(&model);
    let backend = HttpBackend::new(HttpConfig::new(&server.url, "bench"), None).expect("client");
    let request = |n: usize| SampleRequest {
        benchmark: "geo3k".into(),
        item_id: item.id.clone(),
        sample: n as u32,
        seed: n as u64,
        system: DEFAULT_SYSTEM.into(),
        prompt: prompt.clone(),
        images: item.images.iter().filter_map(|i| i.bytes.clone()).collect(),
        sampling: Sampling {
            max_tokens: NEW_TOKENS,
            ..Sampling::default()
        },
    };
    let requests: Vec<SampleRequest> = (0..REQUESTS).map(request).collect();
    // warm the server (and check it answers) before measuring
    backend.sample(&requests[0]).expect("the server answers");

    let mut group = c.benchmark_group("http_throughput");
    group.sample_size(10);
    group.throughput(Throughput::Elements(REQUESTS as u64));
    for concurrency in [1usize, 4, 16] {
        group.bench_with_input(
            BenchmarkId::new("requests", concurrency),
            &concurrency,
            |b, &concurrency| {
                b.iter(|| {
                    let next = AtomicUsize::new(0);
                    std::thread::scope(|scope| {
                        for _ in 0..concurrency {
                            scope.spawn(|| loop {
                                let i = next.fetch_add(1, Ordering::SeqCst);
                                let Some(r) = requests.get(i) else { return };
                                backend.sample(r).expect("a sample");
                            });
                        }
                    });
                })
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
