//! Checkpoints of a training run (RL or SFT): `OUT/step-N/` in the Hugging Face layout plus
//! the AdamW moments and the trainer state, written through a temporary folder renamed into
//! place so that a kill never leaves a half-written checkpoint; and the latest one found again
//! for `--resume`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Var};
use serde::{Deserialize, Serialize};

use super::data::DataCursor;
use super::optim::AdamW;
use super::TrainError;
use crate::model::Checkpoint;

/// File names inside a checkpoint folder.
pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Saved beside each checkpoint: what `--resume` needs besides the weights and moments (the
/// run's settings are checked against the run plan, not here).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: usize,
    /// Where the RL data order is (SFT derives its batches from the step alone).
    #[serde(default)]
    pub cursor: DataCursor,
    pub optimizer_steps: u64,
    #[serde(default)]
    pub skipped_steps: usize,
    pub seed: u64,
    pub recipe: String,
    pub init: String,
    pub spotlight_version: String,
}

/// Every parameter as a trainable variable, by name (sorted: a fixed update order).
pub fn named_vars(ckpt: &Checkpoint) -> Result<BTreeMap<String, Var>, TrainError> {
    let data = ckpt
        .varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Usage("parameter map poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Writes `out/step-N/` (HF layout + optimizer moments + trainer state) atomically.
pub fn save_checkpoint(
    out: &Path,
    ckpt: &Checkpoint,
    optimizer: &AdamW,
    state: &TrainerState,
) -> Result<PathBuf, TrainError> {
    let dir = out.join(format!("step-{}", state.step));
    let tmp = out.join(format!(".step-{}.partial", state.step));
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| state_error(&tmp, e))?;
    }
    ckpt.save(&tmp, DType::F32)?;
    optimizer.save(&tmp.join(OPTIMIZER_FILE))?;
    let json = serde_json::to_string_pretty(state).map_err(|e| TrainError::Usage(e.to_string()))?;
    std::fs::write(tmp.join(STATE_FILE), json).map_err(|e| state_error(&tmp, e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| state_error(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| state_error(&dir, e))?;
    Ok(dir)
}

/// The checkpoint with the highest step that has a trainer state, if any.
pub fn latest_checkpoint(out: &Path) -> Result<Option<(PathBuf, TrainerState)>, TrainError> {
    let Ok(entries) = std::fs::read_dir(out) else {
        return Ok(None);
    };
    let mut best: Option<(usize, PathBuf)> = None;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(n) = name
            .strip_prefix("step-")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        if entry.path().join(STATE_FILE).is_file() && best.as_ref().is_none_or(|(b, _)| n > *b) {
            best = Some((n, entry.path()));
        }
    }
    let Some((_, dir)) = best else {
        return Ok(None);
    };
    let path = dir.join(STATE_FILE);
    let text = std::fs::read_to_string(&path).map_err(|e| state_error(&path, e))?;
    let state: TrainerState = serde_json::from_str(&text).map_err(|e| TrainError::State {
        path: path.clone(),
        message: e.to_string(),
    })?;
    Ok(Some((dir, state)))
}

/// Where a run starts: the latest checkpoint of `out` when resuming (refused without
/// `--resume` when one exists), else `init` from step 0.
pub fn starting_point(
    out: &Path,
    init: &Path,
    resume: bool,
) -> Result<(PathBuf, Option<TrainerState>), TrainError> {
    match latest_checkpoint(out)? {
        Some(_) if !resume => Err(TrainError::Usage(format!(
            "{} already holds checkpoints; pass --resume to continue, or choose another --out",
            out.display()
        ))),
        Some((dir, state)) => Ok((dir, Some(state))),
        None => Ok((init.to_path_buf(), None)),
    }
}

pub(crate) fn state_error(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}
