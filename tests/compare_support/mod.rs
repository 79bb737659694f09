//! Simulated evaluation runs for the comparison tests: a "model" is a success probability
//! per item; a run draws k graded samples per item from it. The truth is known, so the
//! tests can check what `spotlight compare` flags.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::Path;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use spotlight::compare::{BenchmarkOutcomes, ItemOutcome, RunData};
use spotlight::eval::log::SampleRecord;
use spotlight::eval::output::{summarize_run, write_summary, SummaryInput};
use spotlight::eval::plan::{EvalPlan, PlannedBenchmark};
use spotlight::eval::Sampling;

/// One simulated benchmark: slug, display name, per-item success probability, and a
/// breakdown category per item.
#[derive(Clone)]
pub struct SimBenchmark {
    pub slug: String,
    pub name: String,
    pub p: Vec<f64>,
    pub category: Vec<&'static str>,
}

/// Item success probabilities spread like real benchmarks: a logit-normal around the
/// benchmark's accuracy, so that many items are almost always right or almost always
/// wrong and some are coin flips.
pub fn difficulties(n: usize, accuracy: f64, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let centre = (accuracy / (1.0 - accuracy)).ln();
    (0..n)
        .map(|_| {
            // Sum of four uniforms: mean 2, variance 1/3; scaled to sd ~2 on the logit.
            let z: f64 = (0..4).map(|_| rng.random::<f64>()).sum::<f64>() - 2.0;
            let logit = centre + 2.0 * z * 3f64.sqrt();
            1.0 / (1.0 + (-logit).exp())
        })
        .collect()
}

/// The eight benchmarks' display names and slugs, with simulated accuracies near the
/// paper's 7B rows (only to make the spread of item difficulties realistic).
pub const EIGHT: [(&str, &str, f64); 8] = [
    ("mathverse", "MathVerse", 0.70),
    ("dynamath", "DynaMath", 0.67),
    ("mmk12", "MMK12", 0.80),
    ("geo3k", "Geo3k", 0.45),
    ("mathvision", "MathVision", 0.32),
    ("wemath", "We-Math", 0.70),
    ("logicvista", "LogicVista", 0.47),
    ("mmmu_pro", "MMMU-Pro", 0.37),
];

/// A simulated model over the eight benchmarks with `items` items each.
pub fn model(items: usize, seed: u64) -> Vec<SimBenchmark> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    EIGHT
        .iter()
        .map(|(slug, name, acc)| SimBenchmark {
            slug: slug.to_string(),
            name: name.to_string(),
            p: difficulties(items, *acc, &mut rng),
            category: (0..items)
                .map(|i| ["algebra", "geometry", "statistics"][i % 3])
                .collect(),
        })
        .collect()
}

/// The same model with `points` percentage points less accuracy on one benchmark: every
/// item's probability scaled by (acc - points) / acc, so the expected drop is exact.
pub fn with_regression(model: &[SimBenchmark], slug: &str, points: f64) -> Vec<SimBenchmark> {
    model
        .iter()
        .map(|b| {
            if b.slug != slug {
                return b.clone();
            }
            let acc = b.p.iter().sum::<f64>() / b.p.len() as f64;
            let scale = (acc - points / 100.0) / acc;
            SimBenchmark {
                p: b.p.iter().map(|p| p * scale).collect(),
                ..b.clone()
            }
        })
        .collect()
}

/// Correct-sample counts: item i gets Bin(k, p_i).
pub fn draw(model: &[SimBenchmark], k: u32, seed: u64) -> Vec<Vec<u32>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    model
        .iter()
        .map(|b| {
            b.p.iter()
                .map(|p| (0..k).filter(|_| rng.random::<f64>() < *p).count() as u32)
                .collect()
        })
        .collect()
}

pub fn plan(name: &str, model: &[SimBenchmark], k: u32) -> EvalPlan {
    EvalPlan {
        name: name.into(),
        backend: "simulated".into(),
        model: None,
        data: "simulated".into(),
        benchmarks: model
            .iter()
            .map(|b| PlannedBenchmark {
                slug: b.slug.clone(),
                name: b.name.clone(),
                rules: "simulated".into(),
                rules_sha256: String::new(),
                manifest_sha256: String::new(),
                prompt_sha256: String::new(),
                files: Vec::new(),
                items: b.p.len(),
                approximate: None,
            })
            .collect(),
        k,
        seed: 0,
        sampling: Sampling::default(),
        limit: None,
        system: "You are a helpful assistant.".into(),
        spotlight_version: spotlight::VERSION.into(),
    }
}

/// A run in memory, as `spotlight::compare::load_run` would read it back.
pub fn run_data(name: &str, model: &[SimBenchmark], k: u32, counts: &[Vec<u32>]) -> RunData {
    run_data_with(name, model, k, counts, true)
}

/// Like [`run_data`]; without categories the comparison has no breakdown rows to
/// resample, which keeps the many-seed calibration tests fast.
pub fn run_data_with(
    name: &str,
    model: &[SimBenchmark],
    k: u32,
    counts: &[Vec<u32>],
    with_categories: bool,
) -> RunData {
    let benchmarks = model
        .iter()
        .zip(counts)
        .map(|(b, counts)| {
            let items = counts
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let categories = if with_categories {
                        BTreeMap::from([("subject".to_string(), b.category[i].to_string())])
                    } else {
                        BTreeMap::new()
                    };
                    (
                        format!("{}-{i}", b.slug),
                        ItemOutcome {
                            correct: *c,
                            scored: k,
                            categories,
                        },
                    )
                })
                .collect();
            (
                b.slug.clone(),
                BenchmarkOutcomes {
                    name: b.name.clone(),
                    file_hashes: Vec::new(),
                    items,
                },
            )
        })
        .collect();
    RunData {
        dir: name.into(),
        plan: plan(name, model, k),
        benchmarks,
    }
}

/// Writes a run folder as `spotlight eval` leaves it (run.json, samples.parquet,
/// summary.json): item i of a benchmark gets its first `counts[i]` samples right.
pub fn write_run(dir: &Path, model: &[SimBenchmark], k: u32, counts: &[Vec<u32>]) {
    std::fs::create_dir_all(dir).unwrap();
    let name = dir.file_name().unwrap().to_string_lossy().into_owned();
    plan(&name, model, k).save(dir).unwrap();
    let mut records = Vec::new();
    for (b, counts) in model.iter().zip(counts) {
        for (i, c) in counts.iter().enumerate() {
            for s in 0..k {
                let correct = s < *c;
                records.push(SampleRecord {
                    benchmark: b.slug.clone(),
                    item_id: format!("{}-{i}", b.slug),
                    sample: s,
                    seed: spotlight::seed::derive_seed(0, &format!("{}-{i}", b.slug), s),
                    response: if correct { "right" } else { "wrong" }.into(),
                    extracted: Some(if correct { "right" } else { "wrong" }.into()),
                    correct,
                    reward: f64::from(u8::from(correct)),
                    components: BTreeMap::from([(
                        "accuracy".to_string(),
                        f64::from(u8::from(correct)),
                    )]),
                    prompt_tokens: Some(100),
                    response_tokens: Some(20),
                    finish: "stop".into(),
                    latency_ms: 5,
                    error: None,
                    fields: BTreeMap::from([("subject".to_string(), b.category[i].to_string())]),
                });
            }
        }
    }
    spotlight::eval::output::write_samples_parquet(&dir.join("samples.parquet"), &records).unwrap();
    let breakdown = vec!["subject".to_string()];
    let inputs: Vec<SummaryInput> = model
        .iter()
        .map(|b| SummaryInput {
            slug: &b.slug,
            name: &b.name,
            breakdown: &breakdown,
            approximate: None,
            item_ids: (0..b.p.len()).map(|i| format!("{}-{i}", b.slug)).collect(),
        })
        .collect();
    let eight: Vec<String> = EIGHT.iter().map(|(s, _, _)| s.to_string()).collect();
    let summary = summarize_run(&name, k as usize, 0, &records, &inputs, &eight);
    write_summary(&dir.join("summary.json"), &summary).unwrap();
}
