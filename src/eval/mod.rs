//! The evaluation runner: avg@k over benchmarks on a backend, with resumable runs.
//!
//! A run folder holds `run.json` (the plan), `samples.jsonl` (the append-only log, one
//! flushed line per finished sample), and at the end `samples.parquet` and
//! `summary.json`. A killed run continues with `resume` and neither loses nor duplicates
//! a sample.

pub mod backend;
pub mod embedded;
pub mod http;
pub mod image_control;
pub mod log;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod replay;
pub mod runner;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use crate::verify::grader::{GradeOutcome, Grader};
pub use backend::{Backend, BackendError, Batching, SampleRequest, SampleResponse, Sampling};
pub use log::{SampleLog, SampleRecord};
pub use output::RunSummary;
pub use plan::EvalPlan;

use crate::bench::{DataSource, PromptRenderer, Registry};
use runner::{LoopSettings, PreparedBenchmark};

pub use crate::bench::prompt::DEFAULT_SYSTEM;

#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}{}: {}{message}", path.display(), row.map(|r| format!(": row {r}")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("field `{field}`: ") })]
    Input {
        path: PathBuf,
        row: Option<usize>,
        field: String,
        message: String,
    },
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    #[error(transparent)]
    RunFolder(#[from] crate::run_folder::RunFolderError),
    #[error("{} already holds a run; pass --resume to continue it, or choose another --out", .0.display())]
    RunExists(PathBuf),
    #[error("cannot resume {}: {reason}", path.display())]
    ResumeConflict { path: PathBuf, reason: String },
    /// A reward rule set could not be found or read.
    #[error("reward rule set: {0}")]
    Rules(String),
    #[error("{0}")]
    Internal(String),
}

/// Gives the grader of a reward rule set by name.
/// Gives the grader of a reward rule set by name, with the record of the exact rule file
/// (the plan stores its hash, so a resume after a rule edit is refused).
pub type GraderFactory<'a> =
    &'a dyn Fn(&str) -> Result<(Arc<dyn Grader>, crate::verify::RulesRecord), EvalError>;

/// Everything an evaluation needs, resolved from the command line.
pub struct EvalRequest<'a> {
    pub registry: &'a Registry,
    pub bench: String,
    pub data: DataSource,
    pub k: u32,
    pub seed: u64,
    pub sampling: Sampling,
    pub limit: Option<usize>,
    pub out: PathBuf,
    pub resume: bool,
    pub concurrency: usize,
    pub progress: bool,
    /// The fingerprint of the evaluated checkpoint folder (embedded backend).
    pub model: Option<crate::run_folder::ModelFingerprint>,
    /// Grader per rule-set name.
    pub grader_for: GraderFactory<'a>,
}

/// What a finished run produced.
pub struct EvalOutcome {
    pub summary: RunSummary,
    pub produced_now: usize,
    pub resumed_from: usize,
    pub run_dir: PathBuf,
}

/// Runs (or resumes) an evaluation to the end and writes its files.
pub fn evaluate(request: &EvalRequest, backend: &dyn Backend) -> Result<EvalOutcome, EvalError> {
    let registry = request.registry;
    let manifests = registry.select(&request.bench)?;
    let mut prepared = Vec::new();
    let mut planned = Vec::new();
    for manifest in &manifests {
        let loaded = registry.load_benchmark(manifest, &request.data)?;
        if let Some(problem) = loaded.bad_rows.first() {
            return Err(EvalError::Input {
                path: problem.file.clone(),
                row: Some(problem.row),
                field: problem.field.clone(),
                message: format!(
                    "{} ({} bad rows in {}; `spotlight bench validate {}` lists them)",
                    problem.message,
                    loaded.bad_rows.len(),
                    manifest.name,
                    manifest.slug
                ),
            });
        }
        let mut items = loaded.items;
        if let Some(limit) = request.limit {
            items.truncate(limit);
        }
        let items = request
            .sampling
            .images
            .apply(&manifest.name, items, request.seed)
            .map_err(|e| EvalError::Input {
                path: loaded.files.first().cloned().unwrap_or_default(),
                row: None,
                field: "images (--images)".into(),
                message: e.to_string(),
            })?;
        let renderer = PromptRenderer::new(manifest)?;
        let prompts = items
            .iter()
            .map(|i| renderer.render(i))
            .collect::<Result<Vec<_>, _>>()?;
        let (grader, rules_record) = (request.grader_for)(&manifest.grading.rules)?;
        planned.push(plan::PlannedBenchmark {
            slug: manifest.slug.clone(),
            name: manifest.name.clone(),
            rules: manifest.grading.rules.clone(),
            rules_sha256: rules_record.sha256,
            manifest_sha256: crate::run_folder::manifest_sha256(manifest),
            prompt_sha256: crate::run_folder::sha256_hex(
                format!(
                    "{}\0{}",
                    manifest.prompt.template, manifest.prompt.instruction
                )
                .as_bytes(),
            ),
            files: loaded
                .files
                .iter()
                .map(|f| plan::sha256_file(f))
                .collect::<Result<_, _>>()?,
            items: items.len(),
            approximate: manifest
                .approximate
                .then(|| manifest.approximate_reason.clone()),
        });
        prepared.push(PreparedBenchmark {
            slug: manifest.slug.clone(),
            name: manifest.name.clone(),
            items,
            prompts,
            grader,
        });
    }
    let run_dir = request.out.clone();
    let plan = EvalPlan {
        name: plan::run_name(&run_dir),
        backend: backend.describe(),
        model: request.model.clone(),
        data: request.data.to_string(),
        benchmarks: planned,
        k: request.k,
        seed: request.seed,
        sampling: request.sampling.clone(),
        limit: request.limit,
        system: DEFAULT_SYSTEM.to_string(),
        spotlight_version: crate::VERSION.to_string(),
    };
    std::fs::create_dir_all(&run_dir).map_err(|source| EvalError::Io {
        path: run_dir.clone(),
        source,
    })?;
    match EvalPlan::load(&run_dir)? {
        Some(previous) if request.resume => {
            if let Some(reason) = plan.resume_conflict(&previous) {
                return Err(EvalError::ResumeConflict {
                    path: run_dir,
                    reason,
                });
            }
            crate::run_folder::warn_on_version_change(&run_dir, &previous.spotlight_version);
        }
        Some(_) => return Err(EvalError::RunExists(run_dir)),
        None => {}
    }
    plan.save(&run_dir)?;

    let previous = SampleLog::read(&run_dir)?;
    let done: HashSet<(String, String, u32)> = previous.iter().map(SampleRecord::key).collect();
    let settings = LoopSettings {
        k: request.k,
        seed: request.seed,
        sampling: request.sampling.clone(),
        system: DEFAULT_SYSTEM.to_string(),
        concurrency: request.concurrency,
        progress: request.progress,
    };
    let produced_now = runner::run_samples(&prepared, backend, &settings, &run_dir, &done)?;

    finish_run(&run_dir, &plan, &prepared, registry).map(|summary| EvalOutcome {
        summary,
        produced_now,
        resumed_from: previous.len(),
        run_dir,
    })
}

/// Reads the log back and writes `samples.parquet` and `summary.json`.
fn finish_run(
    run_dir: &Path,
    plan: &EvalPlan,
    prepared: &[PreparedBenchmark],
    registry: &Registry,
) -> Result<RunSummary, EvalError> {
    let wanted: HashSet<(String, String)> = prepared
        .iter()
        .flat_map(|b| b.items.iter().map(move |i| (b.slug.clone(), i.id.clone())))
        .collect();
    let mut records: Vec<SampleRecord> = SampleLog::read(run_dir)?
        .into_iter()
        .filter(|r| r.sample < plan.k && wanted.contains(&(r.benchmark.clone(), r.item_id.clone())))
        .collect();
    runner::sort_records(&mut records, prepared);
    output::write_samples_parquet(&run_dir.join("samples.parquet"), &records)?;
    let manifests: Vec<_> = prepared
        .iter()
        .map(|b| registry.get(&b.slug))
        .collect::<Result<_, _>>()?;
    let inputs: Vec<output::SummaryInput> = prepared
        .iter()
        .zip(&manifests)
        .map(|(b, m)| output::SummaryInput {
            slug: &b.slug,
            name: &b.name,
            breakdown: &m.breakdown,
            approximate: m.approximate.then(|| m.approximate_reason.clone()),
            item_ids: b.items.iter().map(|i| i.id.clone()).collect(),
        })
        .collect();
    let all_eight: Vec<String> = registry.all().iter().map(|m| m.slug.clone()).collect();
    let summary = output::summarize_run(
        &plan.name,
        plan.k as usize,
        plan.seed,
        &records,
        &inputs,
        &all_eight,
    );
    output::write_summary(&run_dir.join("summary.json"), &summary)?;
    Ok(summary)
}
