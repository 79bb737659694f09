//! The validated plan of a training run (RL or SFT), stored as `train_plan.json` in the run
//! folder: the recipe after `--set` overrides, the data files with their hashes, the
//! fingerprint of the starting checkpoint, the benchmark manifest and rule sets, the seed.
//!
//! `--resume` recomputes the plan from the command line and refuses any difference, naming
//! it: a resume with other overrides, data, recipe contents or initial weights would
//! otherwise continue silently as a different run. A different Spotlight version warns (the
//! rule evaluation follows too).

use std::path::Path;

use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::run_folder::{file_differences, json_differences, FileRecord, ModelFingerprint};

/// What kind of training the plan describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TrainKind {
    /// `spotlight train` (GRPO / DAPO / VPPO).
    Rl,
    /// `spotlight sft`.
    Sft,
}

pub use crate::verify::RulesRecord;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainPlan {
    pub kind: TrainKind,
    /// The recipe file as given (informational: its contents are `recipe`).
    pub recipe_path: String,
    /// The recipe as the run uses it, after overrides.
    pub recipe: serde_json::Value,
    /// `--set` as given (informational: their effect is in `recipe`).
    pub overrides: Vec<String>,
    /// The manifest describing the data, and a hash of it as parsed (prompt template included).
    pub bench: String,
    pub manifest_sha256: String,
    pub rules: Vec<RulesRecord>,
    pub data: Vec<FileRecord>,
    pub validation_data: Vec<FileRecord>,
    /// Validation / held-out evaluation items (the first N).
    pub validation_items: usize,
    pub init: ModelFingerprint,
    pub seed: u64,
    pub spotlight_version: String,
}

impl TrainPlan {
    pub const FILE_NAME: &'static str = "train_plan.json";

    /// Everything that differs from `previous` and would change the run's results.
    pub fn differences(&self, previous: &TrainPlan) -> Vec<String> {
        let mut out = Vec::new();
        if self.kind != previous.kind {
            out.push(format!("kind {:?} vs {:?}", previous.kind, self.kind));
        }
        out.extend(
            json_differences(&previous.recipe, &self.recipe)
                .into_iter()
                .map(|d| format!("recipe field {d}")),
        );
        if self.bench != previous.bench {
            out.push(format!("benchmark {} vs {}", previous.bench, self.bench));
        } else if self.manifest_sha256 != previous.manifest_sha256 {
            out.push(format!("the manifest of {} changed", self.bench));
        }
        for r in &self.rules {
            match previous.rules.iter().find(|p| p.name == r.name) {
                Some(p) if p.sha256 != r.sha256 => out.push(format!(
                    "rule set {} changed ({} then, {} now)",
                    r.name, p.origin, r.origin
                )),
                None => out.push(format!("rule set {} is new", r.name)),
                _ => {}
            }
        }
        out.extend(data_differences(
            "training data",
            &previous.data,
            &self.data,
        ));
        out.extend(data_differences(
            "validation data",
            &previous.validation_data,
            &self.validation_data,
        ));
        if self.validation_items != previous.validation_items {
            out.push(format!(
                "validation items {} vs {}",
                previous.validation_items, self.validation_items
            ));
        }
        out.extend(
            self.init
                .differences(&previous.init)
                .into_iter()
                .map(|d| format!("init checkpoint {}: {d}", self.init.dir)),
        );
        if self.seed != previous.seed {
            out.push(format!("seed {} vs {}", previous.seed, self.seed));
        }
        out
    }

    /// Stores the plan in a new run, or checks it against the stored one when resuming:
    /// `TrainError::Usage` naming every difference.
    pub fn check_or_store(&self, run_dir: &Path, resuming: bool) -> Result<(), TrainError> {
        let path = run_dir.join(Self::FILE_NAME);
        if resuming {
            if let Some(previous) = Self::load(run_dir)? {
                let diffs = self.differences(&previous);
                if !diffs.is_empty() {
                    return Err(TrainError::Usage(format!(
                        "cannot resume {}: {} (recorded in {})",
                        run_dir.display(),
                        diffs.join("; "),
                        path.display()
                    )));
                }
                crate::run_folder::warn_on_version_change(run_dir, &previous.spotlight_version);
                return Ok(());
            }
        }
        let text =
            serde_json::to_string_pretty(self).map_err(|e| TrainError::Usage(e.to_string()))?;
        crate::atomic_file::write_bytes_atomic(&path, text.as_bytes()).map_err(|e| {
            TrainError::State {
                path,
                message: e.to_string(),
            }
        })
    }

    /// The stored plan of `run_dir`, if it has one.
    pub fn load(run_dir: &Path) -> Result<Option<TrainPlan>, TrainError> {
        let path = run_dir.join(Self::FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(super::checkpoint::state_error(&path, e)),
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| TrainError::State {
                path,
                message: e.to_string(),
            })
    }
}

/// Data files compared by content: the same files under another path are the same data.
fn data_differences(what: &str, before: &[FileRecord], now: &[FileRecord]) -> Vec<String> {
    fn hashes(f: &[FileRecord]) -> Vec<&str> {
        let mut h: Vec<&str> = f.iter().map(|r| r.sha256.as_str()).collect();
        h.sort_unstable();
        h
    }
    if hashes(before) == hashes(now) {
        return Vec::new();
    }
    let named = file_differences(what, before, now);
    if named.is_empty() {
        vec![format!("{what} changed")]
    } else {
        named
    }
}
