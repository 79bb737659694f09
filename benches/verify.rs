//! Verifier speed: throughput of the `mathruler` rule set over the verifier corpus
//! (`../shared/verifier-corpus/cases.jsonl`, else the bundled held-out fixture), and the
//! worst case per adversarial input.
//!
//!     cargo bench --bench verify
//!
//! Besides criterion's report it prints one line with cases/s on one core and a table of
//! the slowest time per adversarial input (max over repeated runs).

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spotlight::verify::{adversarial, RuleSet};

/// (name, all rows, rows bench_mathruler.py also times: no "timeout" verdict, no `**`).
type Pairs = Vec<(String, String)>;

fn corpus() -> (String, Pairs, Pairs) {
    let shared =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/verifier-corpus/cases.jsonl");
    let (name, text) = match std::fs::read_to_string(&shared) {
        Ok(t) => ("../shared/verifier-corpus/cases.jsonl".to_string(), t),
        Err(_) => (
            "tests/fixtures/verify_heldout.jsonl".to_string(),
            include_str!("../tests/fixtures/verify_heldout.jsonl").to_string(),
        ),
    };
    let values: Vec<serde_json::Value> = text
        .lines()
        .filter(|l| !l.trim().is_empty())
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let pair = |v: &serde_json::Value| {
        (
            v["response"].as_str().unwrap_or_default().to_string(),
            v["ground_truth"].as_str().unwrap_or_default().to_string(),
        )
    };
    let all = values.iter().map(pair).collect();
    let comparable = values
        .iter()
        .filter(|v| {
            v["papo_eval_correct"].as_str() != Some("timeout")
                && !v["response"].as_str().unwrap_or_default().contains("**")
        })
        .map(pair)
        .collect();
    (name, all, comparable)
}

fn corpus_throughput(c: &mut Criterion) {
    let rules = RuleSet::builtin("mathruler").unwrap();
    let (name, rows, comparable) = corpus();
    // Plain timing lines that are easy to quote (single thread, 20 passes).
    let small: Pairs = comparable
        .iter()
        .filter(|(r, g)| r.len() + g.len() < 10_000)
        .cloned()
        .collect();
    for (label, set) in [
        ("all cases", &rows),
        ("cases bench_mathruler.py times", &comparable),
        ("those under 10 kB", &small),
    ] {
        let start = Instant::now();
        let passes = 20;
        for _ in 0..passes {
            for (r, g) in set {
                black_box(rules.grade(r, g, None));
            }
        }
        let secs = start.elapsed().as_secs_f64();
        println!(
            "corpus {name}, {label}: {} cases x {passes} passes in {secs:.3} s = {:.0} cases/s (one core)",
            set.len(),
            (set.len() * passes) as f64 / secs
        );
    }

    let mut group = c.benchmark_group("verify_corpus");
    group.throughput(Throughput::Elements(rows.len() as u64));
    group.sample_size(20);
    group.bench_function("mathruler_all_cases", |b| {
        b.iter(|| {
            for (r, g) in &rows {
                black_box(rules.grade(r, g, None));
            }
        })
    });
    group.finish();
}

fn adversarial_worst_case(c: &mut Criterion) {
    let rules = RuleSet::builtin("mathruler").unwrap();
    let cases = adversarial::cases();
    let mut worst: Vec<(Duration, &str)> = Vec::new();
    for case in &cases {
        let mut max = Duration::ZERO;
        for _ in 0..5 {
            let t = Instant::now();
            black_box(rules.grade(&case.response, case.ground_truth, None));
            max = max.max(t.elapsed());
        }
        worst.push((max, case.name));
    }
    worst.sort_by_key(|w| std::cmp::Reverse(w.0));
    println!(
        "adversarial: {} inputs, worst time per input (max of 5 runs):",
        cases.len()
    );
    for (d, n) in &worst {
        println!("  {:>10.3} ms  {n}", d.as_secs_f64() * 1e3);
    }

    let mut group = c.benchmark_group("verify_adversarial");
    group.sample_size(10);
    for case in cases
        .iter()
        .filter(|c| worst.iter().take(5).any(|(_, n)| *n == c.name))
    {
        group.bench_function(case.name, |b| {
            b.iter(|| black_box(rules.grade(&case.response, case.ground_truth, None)))
        });
    }
    group.finish();
}

criterion_group!(benches, corpus_throughput, adversarial_worst_case);
criterion_main!(benches);
