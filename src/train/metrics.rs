//! What a training run reports: one JSON line per step (`metrics.jsonl` for RL,
//! `sft_metrics.jsonl` for SFT), the progress bar, and the step's summary of its rollout and
//! update.
//!
//! The metrics file is append-only while a run goes; a resume first drops the lines written
//! after the checkpoint it starts from, so the file always holds exactly one line per step.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::checkpoint::state_error;
use super::perception::PerceptionStats;
use super::rollout::RolloutBatch;
use super::update::UpdateStats;
use super::TrainError;

/// File name of the RL metrics inside a run folder.
pub const METRICS_FILE: &str = "metrics.jsonl";

/// Seconds spent in each phase of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub rollout: f64,
    pub old_logprobs: f64,
    pub perturbed_logprobs: f64,
    /// The frozen reference's log-probs (0 without a KL term).
    #[serde(default)]
    pub reference_logprobs: f64,
    pub update: f64,
    pub validation: f64,
    pub total: f64,
}

/// One line of `metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    pub step: usize,
    pub epoch: u64,
    /// Mean reward and accuracy of the kept groups' responses.
    pub reward: f64,
    pub accuracy: f64,
    /// Accuracy over every sampled response, kept or not.
    pub accuracy_all_sampled: f64,
    pub kept_groups: usize,
    pub sampled_groups: usize,
    pub sampling_rounds: usize,
    pub response_length: f64,
    /// Fraction of response tokens TGF kept (`None` without perturbed log-probs).
    pub perception_token_fraction: Option<f64>,
    pub dependency_selected: Option<f64>,
    pub dependency_rejected: Option<f64>,
    pub tgf_threshold: Option<f64>,
    pub tas_scale_mean: f64,
    pub tas_scale_min: f64,
    pub tas_scale_max: f64,
    /// Min / mean / max over the step's prompts of each prompt's mean TAS scale: how much
    /// weight TAS moved between prompts (all 1 when every micro-batch is one whole group).
    #[serde(default)]
    pub prompt_tas_scale_min: f64,
    #[serde(default)]
    pub prompt_tas_scale_mean: f64,
    #[serde(default)]
    pub prompt_tas_scale_max: f64,
    /// Mean number of distinct prompts per micro-batch after the layout.
    #[serde(default)]
    pub prompts_per_micro_batch: f64,
    pub pg_loss: f64,
    /// `-mean(log p)` of the sampled tokens (the entropy term's value).
    pub entropy: f64,
    /// The low-variance KL to the frozen reference (`None` without one).
    #[serde(default)]
    pub kl: Option<f64>,
    pub clip_fraction_higher: f64,
    pub clip_fraction_lower: f64,
    pub grad_norm: f64,
    pub skipped_steps: usize,
    pub lr: f64,
    /// Validation avg@k (%) after this step, when validated.
    pub validation_avg_at_k: Option<f64>,
    pub time_s: PhaseTimes,
}

impl StepMetrics {
    /// The step's metrics from its rollout and update (skipped steps, validation and the
    /// total time are filled in by the loop).
    pub fn summarise(
        step: usize,
        epoch: u64,
        group_size: usize,
        batch: &RolloutBatch,
        stats: &UpdateStats,
        lr: f64,
        times: PhaseTimes,
    ) -> StepMetrics {
        let rows = &batch.rows;
        let n = rows.len().max(1) as f64;
        let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
        let pick = |f: fn(&PerceptionStats) -> Option<f64>| {
            let v: Vec<f64> = stats.perception.iter().filter_map(f).collect();
            mean(&v)
        };
        let fractions: Vec<f64> = stats
            .perception
            .iter()
            .map(|p| p.selected_fraction)
            .collect();
        let scales = &stats.scales;
        let layout = stats.layout_stats;
        let pick_layout =
            |f: fn(&super::layout::LayoutStats) -> f64| layout.map_or(f64::NAN, |l| f(&l));
        StepMetrics {
            step,
            epoch,
            reward: rows.iter().map(|r| r.reward).sum::<f64>() / n,
            accuracy: rows.iter().map(|r| r.accuracy).sum::<f64>() / n,
            accuracy_all_sampled: batch.accuracy_all_sampled,
            kept_groups: rows.len() / group_size.max(1),
            sampled_groups: batch.sampled_groups,
            sampling_rounds: batch.rounds,
            response_length: rows.iter().map(|r| r.tokens.len() as f64).sum::<f64>() / n,
            perception_token_fraction: mean(&fractions),
            dependency_selected: pick(|p| p.mean_selected),
            dependency_rejected: pick(|p| p.mean_rejected),
            tgf_threshold: pick(|p| p.threshold),
            tas_scale_mean: mean(scales).unwrap_or(1.0),
            tas_scale_min: scales.iter().copied().fold(f64::INFINITY, f64::min),
            tas_scale_max: scales.iter().copied().fold(f64::NEG_INFINITY, f64::max),
            prompt_tas_scale_min: pick_layout(|l| l.prompt_scale_min),
            prompt_tas_scale_mean: pick_layout(|l| l.prompt_scale_mean),
            prompt_tas_scale_max: pick_layout(|l| l.prompt_scale_max),
            prompts_per_micro_batch: pick_layout(|l| l.prompts_per_micro_batch),
            pg_loss: stats.pg_loss,
            entropy: stats.entropy,
            kl: stats.kl,
            clip_fraction_higher: stats.clip_higher,
            clip_fraction_lower: stats.clip_lower,
            grad_norm: stats.grad_norm(),
            skipped_steps: 0,
            lr,
            validation_avg_at_k: None,
            time_s: times,
        }
    }
}

/// An append-only JSON-lines metrics file, one flushed line per step.
pub struct MetricsLog {
    path: PathBuf,
    file: File,
}

impl MetricsLog {
    /// Opens `path` for appending after dropping every line of a step past `step` (the lines
    /// an interrupted run wrote after its last checkpoint).
    pub fn open(path: &Path, step: usize) -> Result<MetricsLog, TrainError> {
        truncate_after(path, step)?;
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| state_error(path, e))?;
        Ok(MetricsLog {
            path: path.to_path_buf(),
            file,
        })
    }

    /// Appends one line and flushes it.
    pub fn append<T: Serialize>(&mut self, line: &T) -> Result<(), TrainError> {
        let text = serde_json::to_string(line).map_err(|e| TrainError::Usage(e.to_string()))?;
        writeln!(self.file, "{text}")
            .and_then(|_| self.file.flush())
            .map_err(|e| state_error(&self.path, e))
    }
}

/// Drops metric lines past `step`.
fn truncate_after(path: &Path, step: usize) -> Result<(), TrainError> {
    let Ok(text) = std::fs::read_to_string(path) else {
        return Ok(());
    };
    let kept: Vec<&str> = text
        .lines()
        .filter(|l| {
            serde_json::from_str::<serde_json::Value>(l)
                .ok()
                .and_then(|v| v["step"].as_u64())
                .is_some_and(|s| s as usize <= step)
        })
        .collect();
    let mut body = kept.join("\n");
    if !body.is_empty() {
        body.push('\n');
    }
    crate::atomic_file::write_bytes_atomic(path, body.as_bytes()).map_err(|e| TrainError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The run's progress bar (hidden with `--json`), at `at` of `total` steps.
pub fn progress_bar(show: bool, total: u64, at: u64) -> indicatif::ProgressBar {
    let bar = if show {
        indicatif::ProgressBar::new(total)
    } else {
        indicatif::ProgressBar::hidden()
    };
    if let Ok(style) = indicatif::ProgressStyle::with_template(
        "step {pos}/{len} [{bar:30}] {elapsed_precise} eta {eta} {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.set_position(at);
    bar
}
