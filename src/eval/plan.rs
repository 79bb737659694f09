//! The validated plan of an evaluation run, stored as `run.json` in the run folder: what
//! was evaluated, on which files (with hashes), with which sampling parameters and seed,
//! by which Spotlight version. `--resume` refuses a plan that differs in anything that
//! changes results.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::backend::Sampling;
use super::EvalError;

pub use crate::run_folder::{sha256_file, FileRecord};

/// One benchmark of the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlannedBenchmark {
    pub slug: String,
    pub name: String,
    pub rules: String,
    /// Hash of the exact rule-file text graded with ([`crate::verify::resolve`]).
    #[serde(default)]
    pub rules_sha256: String,
    /// Hash of the manifest as parsed ([`crate::run_folder::manifest_sha256`]).
    #[serde(default)]
    pub manifest_sha256: String,
    /// Hash of the prompt template and instruction the prompts were rendered with.
    #[serde(default)]
    pub prompt_sha256: String,
    pub files: Vec<FileRecord>,
    pub items: usize,
    pub approximate: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPlan {
    /// Run name (the run folder's name), used as the row label in reports.
    pub name: String,
    /// What produced the responses ("replay:FILE", "http:URL model", "model:DIR").
    pub backend: String,
    /// The evaluated checkpoint's fingerprint (config, tokenizer, template, processor and
    /// every weight file) when a model folder is evaluated.
    #[serde(default)]
    pub model: Option<crate::run_folder::ModelFingerprint>,
    /// `--data` as given.
    pub data: String,
    pub benchmarks: Vec<PlannedBenchmark>,
    /// Samples per item.
    pub k: u32,
    pub seed: u64,
    pub sampling: Sampling,
    /// `--limit`: items per benchmark (None = all).
    pub limit: Option<usize>,
    pub system: String,
    pub spotlight_version: String,
}

impl EvalPlan {
    pub const FILE_NAME: &'static str = "run.json";

    pub fn save(&self, run_dir: &Path) -> Result<(), EvalError> {
        let path = run_dir.join(Self::FILE_NAME);
        let text =
            serde_json::to_string_pretty(self).map_err(|e| EvalError::Internal(e.to_string()))?;
        crate::atomic_file::write_bytes_atomic(&path, text.as_bytes())
            .map_err(|source| EvalError::Io { path, source })
    }

    pub fn load(run_dir: &Path) -> Result<Option<EvalPlan>, EvalError> {
        let path = run_dir.join(Self::FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => return Err(EvalError::Io { path, source }),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| EvalError::Input {
                path,
                row: None,
                field: "run.json".into(),
                message: e.to_string(),
            })
    }

    /// Why `self` (the resumed run's plan) cannot continue `previous`, if it cannot.
    pub fn resume_conflict(&self, previous: &EvalPlan) -> Option<String> {
        let mut diffs = Vec::new();
        if self.backend != previous.backend {
            diffs.push(format!("backend {} vs {}", previous.backend, self.backend));
        }
        match (&previous.model, &self.model) {
            (Some(before), Some(now)) => diffs.extend(
                now.differences(before)
                    .into_iter()
                    .map(|d| format!("model {}: {d}", now.dir)),
            ),
            (None, None) => {}
            _ => diffs.push("the evaluated model is not the recorded one".into()),
        }
        if self.k != previous.k {
            diffs.push(format!("k {} vs {}", previous.k, self.k));
        }
        if self.seed != previous.seed {
            diffs.push(format!("seed {} vs {}", previous.seed, self.seed));
        }
        diffs.extend(
            previous
                .sampling
                .differences(&self.sampling)
                .into_iter()
                .map(|(_, d)| d),
        );
        if self.system != previous.system {
            diffs.push("system message".into());
        }
        for b in &self.benchmarks {
            if let Some(old) = previous.benchmarks.iter().find(|o| o.slug == b.slug) {
                let hashes = |p: &PlannedBenchmark| {
                    p.files.iter().map(|f| f.sha256.clone()).collect::<Vec<_>>()
                };
                if hashes(b) != hashes(old) {
                    diffs.push(format!("{}'s files changed", b.name));
                }
                if b.manifest_sha256 != old.manifest_sha256 {
                    diffs.push(format!("{}'s manifest changed", b.name));
                }
                if b.rules == old.rules && b.rules_sha256 != old.rules_sha256 {
                    diffs.push(format!(
                        "{}'s rule set `{}` was edited (the rule file's hash changed)",
                        b.name, b.rules
                    ));
                }
                if b.prompt_sha256 != old.prompt_sha256 {
                    diffs.push(format!("{}'s prompt template changed", b.name));
                }
                if b.rules != old.rules {
                    diffs.push(format!(
                        "{}'s rule set {} vs {}",
                        b.name, old.rules, b.rules
                    ));
                }
            }
        }
        (!diffs.is_empty()).then(|| diffs.join("; "))
    }
}

/// The run folder's name, used as its label.
pub fn run_name(run_dir: &Path) -> String {
    run_dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| PathBuf::from(run_dir).display().to_string())
}
