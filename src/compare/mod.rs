//! Regression comparison across evaluation runs: per benchmark and per breakdown category,
//! each run's avg@k and its difference to a baseline, with paired significance over the
//! items both runs share, Holm-corrected, and a regression flag for CI gates.
//!
//! Why paired: two checkpoints evaluated on the same items differ far less than two
//! independent samples of items would, because item difficulty dominates the variance.
//! Testing the per-item differences removes that variance, so a real 2-point drop is
//! visible on a few hundred items where unpaired intervals would overlap.
//!
//! The tests are one-sided (see [`stats`]); the familywise error rate of the regression
//! flags is controlled at `alpha` across every (candidate, benchmark) comparison of one
//! invocation by Holm's method, so a CI gate on the exit code raises a false alarm on at
//! most `alpha` of the comparisons of two equally good checkpoints. Breakdown categories
//! are shown with uncorrected p-values to locate a regression; they never set the flag.

pub mod render;
pub mod run;
pub mod stats;

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde::Serialize;

pub use run::{load_run, BenchmarkOutcomes, ItemOutcome, RunData};
pub use stats::{
    holm_adjust, mcnemar_regression, mcnemar_regression_margin, paired_bootstrap, TestKind,
};

use crate::report::TABLE1_COLUMNS;

#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A run folder or file that is missing, corrupt or not what `spotlight eval` writes.
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// `run.json` could not be read.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// Bad settings (alpha outside (0, 1), fewer than two runs, ...).
    #[error("{0}")]
    Usage(String),
}

/// How to compare.
#[derive(Debug, Clone, Serialize)]
pub struct CompareSettings {
    /// Familywise error rate of the regression flags.
    pub alpha: f64,
    /// A drop is flagged only when it is significantly larger than this many percentage
    /// points: the tests' null hypothesis is "at most this much worse" (a non-inferiority
    /// margin), so noise on identical models is not flagged at the default threshold.
    pub threshold_pp: f64,
    /// Paired-bootstrap resamples per test.
    pub resamples: usize,
    /// Seed of the bootstrap draws (each test's stream derives from it).
    pub seed: u64,
}

impl Default for CompareSettings {
    fn default() -> Self {
        CompareSettings {
            alpha: 0.05,
            threshold_pp: 1.0,
            resamples: stats::DEFAULT_RESAMPLES,
            seed: 0,
        }
    }
}

/// One run in a comparison.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Label in tables: the run's name, or its folder when two runs share a name.
    pub label: String,
    pub dir: String,
    pub k: u32,
    pub temperature: f64,
    pub backend: String,
}

/// A candidate's difference to the baseline on a set of shared items.
#[derive(Debug, Clone, Serialize)]
pub struct DeltaTest {
    /// The candidate's label.
    pub run: String,
    /// candidate avg@k - baseline avg@k, percentage points.
    pub delta_pp: f64,
    /// 95% paired-bootstrap percentile interval of the difference.
    pub ci95: [f64; 2],
    pub test: TestKind,
    /// One-sided p-value for "the candidate is worse by more than the threshold".
    pub p_value: f64,
    /// Holm-adjusted p-value (benchmark rows only).
    pub p_holm: Option<f64>,
    /// Significant after Holm and a drop larger than the threshold (benchmark rows only).
    pub regression: bool,
}

/// avg@k of every run and the deltas on one set of shared items.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// Items every run compared here has scored.
    pub items: usize,
    /// avg@k (%) of each run on those items, in run order; `None` where a run lacks the
    /// benchmark.
    pub avg_at_k: Vec<Option<f64>>,
    /// One per candidate that has the benchmark, in run order.
    pub deltas: Vec<DeltaTest>,
}

/// A breakdown category of a benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct CategoryRow {
    pub field: String,
    pub category: String,
    #[serde(flatten)]
    pub row: Row,
}

#[derive(Debug, Clone, Serialize)]
pub struct BenchmarkComparison {
    pub slug: String,
    pub name: String,
    #[serde(flatten)]
    pub row: Row,
    /// Per run (in run order): items of that run left out of the comparison because
    /// another run lacks them or has no scored sample for them.
    pub left_out: Vec<usize>,
    pub categories: Vec<CategoryRow>,
}

/// The result of `spotlight compare`.
#[derive(Debug, Clone, Serialize)]
pub struct Comparison {
    /// Index into `runs`.
    pub baseline: usize,
    pub runs: Vec<RunInfo>,
    pub settings: CompareSettings,
    pub warnings: Vec<String>,
    pub benchmarks: Vec<BenchmarkComparison>,
    /// (candidate, benchmark name) of every flagged regression.
    pub regressions: Vec<(String, String)>,
}

impl Comparison {
    pub fn has_regression(&self) -> bool {
        !self.regressions.is_empty()
    }
}

/// Compares `runs` against `runs[baseline]`.
pub fn compare(
    runs: &[RunData],
    baseline: usize,
    settings: &CompareSettings,
) -> Result<Comparison, CompareError> {
    if runs.len() < 2 {
        return Err(CompareError::Usage(format!(
            "compare needs at least two runs, got {}",
            runs.len()
        )));
    }
    if baseline >= runs.len() {
        return Err(CompareError::Usage(format!(
            "baseline index {baseline} out of range"
        )));
    }
    if !(settings.alpha > 0.0 && settings.alpha < 1.0) {
        return Err(CompareError::Usage(format!(
            "--alpha {} must lie in (0, 1)",
            settings.alpha
        )));
    }
    if settings.threshold_pp.is_nan() || settings.threshold_pp < 0.0 {
        return Err(CompareError::Usage(format!(
            "--fail-on-regression {} must be a non-negative number of points",
            settings.threshold_pp
        )));
    }
    if settings.resamples < 100 {
        return Err(CompareError::Usage(format!(
            "--resamples {} is too few for a p-value (at least 100)",
            settings.resamples
        )));
    }
    let runs_info = labels(runs);
    let mut warnings = setting_warnings(runs, baseline, &runs_info);

    let mut benchmarks = Vec::new();
    for slug in benchmark_order(runs, baseline) {
        let present: Vec<bool> = runs
            .iter()
            .map(|r| r.benchmarks.contains_key(&slug))
            .collect();
        let name = runs
            .iter()
            .find_map(|r| r.benchmarks.get(&slug).map(|b| b.name.clone()))
            .unwrap_or_else(|| slug.clone());
        if present.iter().any(|p| !p) {
            let missing: Vec<&str> = runs_info
                .iter()
                .zip(&present)
                .filter(|(_, p)| !**p)
                .map(|(r, _)| r.label.as_str())
                .collect();
            warnings.push(format!("{name}: not in {}", missing.join(", ")));
        }
        if !present[baseline] {
            continue;
        }
        let outcomes: Vec<Option<&BenchmarkOutcomes>> =
            runs.iter().map(|r| r.benchmarks.get(&slug)).collect();
        let hashes: BTreeSet<&Vec<String>> = outcomes
            .iter()
            .flatten()
            .map(|b| &b.file_hashes)
            .filter(|h| !h.is_empty())
            .collect();
        if hashes.len() > 1 {
            warnings.push(format!(
                "{name}: the runs read different benchmark files (sha256 differ); items with the same id may not be the same items"
            ));
        }
        // Items every run that has the benchmark scored at least once.
        let shared: Vec<&String> = outcomes[baseline]
            .map(|b| b.items.iter())
            .into_iter()
            .flatten()
            .filter(|(id, _)| {
                outcomes
                    .iter()
                    .flatten()
                    .all(|b| b.items.get(id.as_str()).is_some_and(|item| item.scored > 0))
            })
            .map(|(id, _)| id)
            .collect();
        let left_out: Vec<usize> = outcomes
            .iter()
            .map(|b| b.map(|b| b.items.len() - shared.len()).unwrap_or(0))
            .collect();
        if left_out.iter().any(|n| *n > 0) {
            let detail: Vec<String> = runs_info
                .iter()
                .zip(&left_out)
                .filter(|(_, n)| **n > 0)
                .map(|(r, n)| format!("{n} of {}", r.label))
                .collect();
            warnings.push(format!(
                "{name}: compared on the {} items all runs scored; left out {}",
                shared.len(),
                detail.join(", ")
            ));
        }
        let seed_key = slug.clone();
        let row = compare_items(
            &outcomes, baseline, &shared, &runs_info, settings, &seed_key,
        );
        let mut categories = Vec::new();
        let fields: BTreeSet<&String> = shared
            .iter()
            .filter_map(|id| outcomes[baseline].and_then(|b| b.items.get(id.as_str())))
            .flat_map(|item| item.categories.keys())
            .collect();
        for field in fields {
            let category_of = |id: &str| {
                outcomes[baseline]
                    .and_then(|b| b.items.get(id))
                    .and_then(|item| item.categories.get(field))
                    .cloned()
                    .unwrap_or_else(|| "(none)".into())
            };
            let values: BTreeSet<String> = shared.iter().map(|id| category_of(id)).collect();
            for category in values {
                let subset: Vec<&String> = shared
                    .iter()
                    .copied()
                    .filter(|id| category_of(id) == category)
                    .collect();
                let key = format!("{slug}\u{0}{field}\u{0}{category}");
                categories.push(CategoryRow {
                    field: field.clone(),
                    category,
                    row: compare_items(&outcomes, baseline, &subset, &runs_info, settings, &key),
                });
            }
        }
        benchmarks.push(BenchmarkComparison {
            slug,
            name,
            row,
            left_out,
            categories,
        });
    }

    // Holm across every (candidate, benchmark) test of this invocation.
    let mut family: Vec<(usize, usize)> = Vec::new();
    let mut p_values = Vec::new();
    for (b, bench) in benchmarks.iter().enumerate() {
        for (d, delta) in bench.row.deltas.iter().enumerate() {
            family.push((b, d));
            p_values.push(delta.p_value);
        }
    }
    let adjusted = holm_adjust(&p_values);
    let mut regressions = Vec::new();
    for ((b, d), p_holm) in family.into_iter().zip(adjusted) {
        let bench = &mut benchmarks[b];
        let delta = &mut bench.row.deltas[d];
        delta.p_holm = Some(p_holm);
        delta.regression = p_holm <= settings.alpha && delta.delta_pp < -settings.threshold_pp;
        if delta.regression {
            regressions.push((delta.run.clone(), bench.name.clone()));
        }
    }
    Ok(Comparison {
        baseline,
        runs: runs_info,
        settings: settings.clone(),
        warnings,
        benchmarks,
        regressions,
    })
}

/// The outcomes of `items` in one run, in the order of `items`.
fn select<'a>(b: &'a BenchmarkOutcomes, items: &[&String]) -> Vec<&'a ItemOutcome> {
    items
        .iter()
        .filter_map(|id| b.items.get(id.as_str()))
        .collect()
}

/// avg@k of every run and each candidate's paired test on `items`.
fn compare_items(
    outcomes: &[Option<&BenchmarkOutcomes>],
    baseline: usize,
    items: &[&String],
    runs: &[RunInfo],
    settings: &CompareSettings,
    seed_key: &str,
) -> Row {
    let avg_at_k: Vec<Option<f64>> = outcomes
        .iter()
        .map(|b| {
            let scores: Vec<f64> = select(b.as_ref()?, items)
                .iter()
                .filter_map(|i| i.avg())
                .collect();
            (!scores.is_empty()).then(|| 100.0 * scores.iter().sum::<f64>() / scores.len() as f64)
        })
        .collect();
    let mut deltas = Vec::new();
    let Some(base) = outcomes[baseline].map(|b| select(b, items)) else {
        return Row {
            items: items.len(),
            avg_at_k,
            deltas,
        };
    };
    for (r, candidate) in outcomes.iter().enumerate() {
        let Some(candidate) = candidate
            .filter(|_| r != baseline)
            .map(|b| select(b, items))
        else {
            continue;
        };
        if let Some(test) = paired_test(&base, &candidate, settings, seed_key, r) {
            deltas.push(DeltaTest {
                run: runs[r].label.clone(),
                p_holm: None,
                regression: false,
                ..test
            });
        }
    }
    Row {
        items: items.len(),
        avg_at_k,
        deltas,
    }
}

/// The paired test of one candidate against the baseline on the same items (in the same
/// order), of "worse by more than the threshold": McNemar's test (exact given the discordant
/// count) when every item has exactly one scored sample in both runs (k = 1: the bootstrap of
/// 0/1 pairs is a coarse, liberal stand-in for it), the paired bootstrap-t otherwise.
fn paired_test(
    base: &[&ItemOutcome],
    candidate: &[&ItemOutcome],
    settings: &CompareSettings,
    seed_key: &str,
    candidate_index: usize,
) -> Option<DeltaTest> {
    let diffs: Vec<f64> = base
        .iter()
        .zip(candidate)
        .filter_map(|(a, b)| Some(b.avg()? - a.avg()?))
        .collect();
    let seed =
        crate::seed::derive_seed_tagged(settings.seed, seed_key, candidate_index as u32, "compare");
    let margin = settings.threshold_pp / 100.0;
    let boot = paired_bootstrap(&diffs, margin, settings.resamples, seed)?;
    let single = base.iter().chain(candidate).all(|i| i.scored == 1);
    let (test, p_value) = if single {
        let worse = base
            .iter()
            .zip(candidate)
            .filter(|(a, b)| a.correct == 1 && b.correct == 0)
            .count() as u64;
        let better = base
            .iter()
            .zip(candidate)
            .filter(|(a, b)| a.correct == 0 && b.correct == 1)
            .count() as u64;
        let items = base.len() as u64;
        (
            TestKind::McNemarExact,
            mcnemar_regression_margin(worse, better, items, margin),
        )
    } else {
        (TestKind::PairedBootstrap, boot.p_regression)
    };
    Some(DeltaTest {
        run: String::new(),
        delta_pp: boot.delta_pp,
        ci95: boot.ci95,
        test,
        p_value,
        p_holm: None,
        regression: false,
    })
}

/// Labels: run names, or folders where names collide.
fn labels(runs: &[RunData]) -> Vec<RunInfo> {
    runs.iter()
        .map(|r| {
            let clash = runs.iter().filter(|o| o.plan.name == r.plan.name).count() > 1;
            RunInfo {
                label: if clash {
                    r.dir.display().to_string()
                } else {
                    r.plan.name.clone()
                },
                dir: r.dir.display().to_string(),
                k: r.plan.k,
                temperature: r.plan.sampling.temperature,
                backend: r.plan.backend.clone(),
            }
        })
        .collect()
}

/// Warnings about settings that make avg@k values differ for reasons other than the model.
fn setting_warnings(runs: &[RunData], baseline: usize, info: &[RunInfo]) -> Vec<String> {
    let base = &runs[baseline].plan;
    let mut warnings = Vec::new();
    for (r, run) in runs.iter().enumerate() {
        if r == baseline {
            continue;
        }
        let plan = &run.plan;
        let (a, b) = (&info[baseline].label, &info[r].label);
        if plan.k != base.k {
            warnings.push(format!(
                "k differs: {a} k = {}, {b} k = {}; avg@k estimates the same accuracy but with other variance, and pass@k is not comparable",
                base.k, plan.k
            ));
        }
        if plan.sampling.temperature != base.sampling.temperature {
            warnings.push(format!(
                "temperature differs: {a} {}, {b} {}; differences may come from sampling, not the model",
                base.sampling.temperature, plan.sampling.temperature
            ));
        }
        let mut other: Vec<String> = base
            .sampling
            .differences(&plan.sampling)
            .into_iter()
            .filter(|(name, _)| *name != "temperature")
            .map(|(_, d)| d)
            .collect();
        if base.system != plan.system {
            other.push("system message".into());
        }
        if !other.is_empty() {
            warnings.push(format!(
                "other settings differ between {a} and {b}: {}",
                other.join(", ")
            ));
        }
    }
    warnings
}

/// Benchmarks in the paper's column order first, then the rest in the baseline's order,
/// then any only other runs have.
fn benchmark_order(runs: &[RunData], baseline: usize) -> Vec<String> {
    let mut slugs: Vec<(String, String)> = Vec::new();
    let mut push = |run: &RunData| {
        for slug in run.order() {
            if !slugs.iter().any(|(s, _)| *s == slug) {
                let name = run
                    .benchmarks
                    .get(&slug)
                    .map(|b| b.name.clone())
                    .unwrap_or_else(|| slug.clone());
                slugs.push((slug, name));
            }
        }
    };
    push(&runs[baseline]);
    for run in runs {
        push(run);
    }
    let paper = |name: &str| TABLE1_COLUMNS.iter().position(|c| *c == name);
    let mut ordered: Vec<(usize, String)> = slugs
        .into_iter()
        .enumerate()
        .map(|(i, (slug, name))| (paper(&name).unwrap_or(TABLE1_COLUMNS.len() + i), slug))
        .collect();
    ordered.sort();
    ordered.into_iter().map(|(_, s)| s).collect()
}
