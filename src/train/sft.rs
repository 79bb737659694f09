//! Supervised fine-tuning on reference solutions (`spotlight sft`): the warm start that gives
//! RL a policy which is sometimes right. Cross-entropy on each response's tokens (the solution
//! followed by `<|im_end|>`), averaged over the batch's tokens, AdamW with linear warm-up and
//! gradient clipping — the trainer's stages (data, checkpoint, schedule, metrics, plan, and
//! rollout's avg@k for the held-out evaluation), not a second implementation.
//!
//! Like `train`, a run stores its plan (`train_plan.json`) and checkpoints `OUT/step-N/` with
//! the AdamW moments; `--resume` refuses a changed plan and continues bit for bit. The model
//! itself is written to `OUT/` when the run ends; only the latest checkpoint is kept (they
//! exist to resume, and each holds the moments, twice the model's size).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Var};
use serde::{Deserialize, Serialize};

use super::checkpoint::{self, TrainerState, OPTIMIZER_FILE};
use super::data::{load_examples, sft_batch, Example};
use super::metrics::{progress_bar, MetricsLog};
use super::optim::{AdamW, GradAccumulator};
use super::plan::{RulesRecord, TrainKind, TrainPlan};
use super::{rollout, schedule, TrainError};
use crate::bench::{DataSource, Registry};
use crate::model::{Checkpoint, ScoringRequest};
use crate::run_folder::ModelFingerprint;
use crate::verify::Grader;

/// `recipes/*-sft.toml`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftRecipe {
    pub name: String,
    pub description: String,
    pub data: SftData,
    pub optim: SftOptim,
    pub batch: SftBatch,
    pub evaluation: SftEvaluation,
    pub image: super::recipe::ImageSection,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftData {
    /// The manifest of the data; its `solution` field is the target.
    pub bench: String,
    pub max_prompt_tokens: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftOptim {
    pub lr: f64,
    pub weight_decay: f64,
    pub betas: [f64; 2],
    pub warmup_steps: usize,
    pub max_grad_norm: f64,
    /// After the warm-up: `constant` (the default) or `cosine` to zero at the last step.
    #[serde(default)]
    pub decay: schedule::Decay,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftBatch {
    pub examples_per_step: usize,
    pub epochs: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftEvaluation {
    /// Held-out items for avg@k after training (0: none).
    pub items: usize,
    pub samples_per_item: usize,
    pub temperature: f64,
    pub max_new_tokens: usize,
}

impl SftRecipe {
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let r: SftRecipe = super::recipe::load_toml_with_overrides(path, overrides)?;
        let bad = |field: &str, reason: &str| TrainError::RecipeInvalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            reason: reason.to_string(),
        };
        if r.batch.examples_per_step == 0 {
            return Err(bad("batch.examples_per_step", "must be at least 1"));
        }
        if !(r.optim.lr > 0.0 && r.optim.lr.is_finite()) {
            return Err(bad("optim.lr", "must be positive"));
        }
        Ok(r)
    }
}

/// What `spotlight sft` needs.
pub struct SftConfig {
    pub recipe: SftRecipe,
    pub recipe_path: PathBuf,
    /// `--set` as given (recorded in the plan).
    pub overrides: Vec<String>,
    pub init: PathBuf,
    pub data: DataSource,
    pub eval_data: Option<DataSource>,
    pub out: PathBuf,
    pub seed: u64,
    /// Stop after this many steps (default: the recipe's epochs).
    pub steps: Option<usize>,
    /// Save a checkpoint every this many steps (and after the last).
    pub save_every: usize,
    pub resume: bool,
    pub progress: bool,
    pub grader: Arc<dyn Grader>,
    /// The rule set behind `grader`, as the plan records it.
    pub rules: Vec<RulesRecord>,
}

/// File name of the SFT metrics inside the output folder.
pub const SFT_METRICS_FILE: &str = "sft_metrics.jsonl";

/// One line of `sft_metrics.jsonl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftStep {
    pub step: usize,
    pub epoch: usize,
    /// Mean negative log-likelihood per response token.
    pub loss: f64,
    pub tokens: usize,
    pub grad_norm: f64,
    pub lr: f64,
    pub seconds: f64,
}

/// What a run produced.
#[derive(Debug, Clone, Serialize)]
pub struct SftOutcome {
    pub steps: usize,
    pub final_loss: Option<f64>,
    /// avg@k (%) on the held-out items before and after training (before: of the init
    /// checkpoint, also when resumed).
    pub accuracy_before: Option<f64>,
    pub accuracy_after: Option<f64>,
    pub out: PathBuf,
}

/// The examples SFT trains on, their targets, and the held-out items.
struct Prepared {
    examples: Vec<Example>,
    targets: Vec<Vec<u32>>,
    held_out: Vec<Example>,
    plan: TrainPlan,
}

/// Fine-tunes `init` on the reference solutions and writes the result to `out` (HF layout).
pub fn sft(cfg: &SftConfig, registry: &Registry) -> Result<SftOutcome, TrainError> {
    let r = &cfg.recipe;
    std::fs::create_dir_all(&cfg.out).map_err(|e| checkpoint::state_error(&cfg.out, e))?;
    let (model_dir, state) = checkpoint::starting_point(&cfg.out, &cfg.init, cfg.resume)?;
    let mut ckpt = load_for_sft(&model_dir, r)?;
    let data = sft_data(cfg, registry, &ckpt)?;
    data.plan.check_or_store(&cfg.out, state.is_some())?;
    let accuracy_before = match &state {
        // the held-out score of the init checkpoint, as an uninterrupted run measured it
        Some(_) => evaluate(cfg, &load_for_sft(&cfg.init, r)?, &data.held_out)?,
        None => evaluate(cfg, &ckpt, &data.held_out)?,
    };
    let params = checkpoint::named_vars(&ckpt)?;
    let mut optimizer = AdamW::new(r.optim.lr, r.optim.betas, r.optim.weight_decay);
    let mut step = 0;
    if let Some(s) = &state {
        optimizer.load(&model_dir.join(OPTIMIZER_FILE), s.optimizer_steps, &params)?;
        step = s.step;
    }
    let mut log = MetricsLog::open(&cfg.out.join(SFT_METRICS_FILE), step)?;
    let total = schedule::total_steps(
        data.examples.len(),
        r.batch.examples_per_step,
        r.batch.epochs,
        cfg.steps,
    );
    // The decay spans the recipe's epochs over the data (both in the plan, so a resume sees
    // the same schedule); `--steps` only stops the run early.
    let schedule_span = schedule::total_steps(
        data.examples.len(),
        r.batch.examples_per_step,
        r.batch.epochs,
        None,
    );
    let bar = progress_bar(cfg.progress, total as u64, step as u64);
    let mut last_loss = None;
    while step < total {
        step += 1;
        let line = sft_step(
            cfg,
            &ckpt,
            &params,
            &mut optimizer,
            &data,
            (step, schedule_span),
        )?;
        log.append(&line)?;
        last_loss = Some(line.loss);
        if step % cfg.save_every.max(1) == 0 || step == total {
            save_latest(cfg, &ckpt, &optimizer, step)?;
        }
        bar.set_position(step as u64);
        bar.set_message(format!("loss {:.3}", line.loss));
    }
    bar.finish();
    ckpt.save(&cfg.out, DType::F32)?;
    // a resumed run that had nothing left to do still reports the model's held-out score
    ckpt = load_for_sft(&cfg.out, r)?;
    let accuracy_after = evaluate(cfg, &ckpt, &data.held_out)?;
    Ok(SftOutcome {
        steps: total,
        final_loss: last_loss,
        accuracy_before,
        accuracy_after,
        out: cfg.out.clone(),
    })
}

/// A checkpoint as SFT uses it: its processor keeps its own bounds (the recipe's `[image]`
/// bounds apply to the first resize of the data, as in RL training) and runs as the recipe's
/// implementation.
fn load_for_sft(dir: &Path, r: &SftRecipe) -> Result<Checkpoint, TrainError> {
    let mut ckpt = Checkpoint::load(dir)?;
    ckpt.image_processor.kind = r.image.processor;
    Ok(ckpt)
}

/// Reads the training items that have a solution, their target tokens, the held-out items,
/// and the run's plan.
fn sft_data(
    cfg: &SftConfig,
    registry: &Registry,
    ckpt: &Checkpoint,
) -> Result<Prepared, TrainError> {
    let r = &cfg.recipe;
    let max_prompt = r.data.max_prompt_tokens;
    let loaded = load_examples(
        registry,
        &r.data.bench,
        ckpt,
        r.image.pre_resize(),
        &cfg.data,
        max_prompt,
        usize::MAX,
    )?;
    let examples: Vec<Example> = loaded
        .examples
        .into_iter()
        .filter(|e| e.solution.is_some())
        .collect();
    if examples.is_empty() {
        return Err(TrainError::Usage(format!(
            "no item of {} has a `solution` field to train on",
            r.data.bench
        )));
    }
    let builder = ckpt.prompt_builder()?;
    let end = ckpt.tokenizer.token_to_id("<|im_end|>");
    let mut targets: Vec<Vec<u32>> = Vec::with_capacity(examples.len());
    for e in &examples {
        let mut ids = builder.response_ids(e.solution.as_deref().unwrap_or_default())?;
        ids.extend(end);
        targets.push(ids);
    }
    let held = match (&cfg.eval_data, r.evaluation.items) {
        (Some(source), n) if n > 0 => Some(load_examples(
            registry,
            &r.data.bench,
            ckpt,
            r.image.pre_resize(),
            source,
            max_prompt,
            n,
        )?),
        _ => None,
    };
    let (held_out, held_files) = match held {
        Some(h) => (h.examples, super::trainer::hash_files(&h.files)?),
        None => (Vec::new(), Vec::new()),
    };
    let plan = TrainPlan {
        kind: TrainKind::Sft,
        recipe_path: cfg.recipe_path.display().to_string(),
        recipe: serde_json::to_value(r).map_err(|e| TrainError::Usage(e.to_string()))?,
        overrides: cfg.overrides.clone(),
        bench: r.data.bench.clone(),
        manifest_sha256: crate::run_folder::manifest_sha256(registry.get(&r.data.bench)?),
        rules: cfg.rules.clone(),
        data: super::trainer::hash_files(&loaded.files)?,
        validation_data: held_files,
        validation_items: held_out.len(),
        init: ModelFingerprint::of(&cfg.init)?,
        seed: cfg.seed,
        spotlight_version: crate::VERSION.to_string(),
    };
    Ok(Prepared {
        examples,
        targets,
        held_out,
        plan,
    })
}

/// Held-out avg@k (%) under the recipe's evaluation settings (`None`: no held-out items).
fn evaluate(
    cfg: &SftConfig,
    ckpt: &Checkpoint,
    held_out: &[Example],
) -> Result<Option<f64>, TrainError> {
    if held_out.is_empty() {
        return Ok(None);
    }
    let e = &cfg.recipe.evaluation;
    let params = rollout::validation_params(ckpt, e.temperature, 1.0, e.max_new_tokens);
    rollout::avg_at_k(
        ckpt,
        held_out,
        &cfg.grader,
        e.samples_per_item,
        &params,
        cfg.seed,
    )
    .map(Some)
}

/// One SFT step: the batch's mean token cross-entropy, backward, clipping, AdamW.
fn sft_step(
    cfg: &SftConfig,
    ckpt: &Checkpoint,
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    data: &Prepared,
    (step, schedule_span): (usize, usize),
) -> Result<SftStep, TrainError> {
    let r = &cfg.recipe;
    let started = Instant::now();
    let (epoch, batch) = sft_batch(
        data.examples.len(),
        r.batch.examples_per_step,
        step,
        cfg.seed,
    );
    let requests: Vec<ScoringRequest> = batch
        .iter()
        .map(|&i| ScoringRequest {
            prompt_ids: &data.examples[i].prompt_ids,
            response_ids: &data.targets[i],
            images: data.examples[i].images.iter().collect(),
        })
        .collect();
    let lp = ckpt.model.log_probs(&requests, 1.0)?;
    let tokens: usize = lp.lengths.iter().sum();
    let loss = lp
        .values
        .sum_all()
        .and_then(|s| s.affine(-1.0 / tokens.max(1) as f64, 0.0))
        .map_err(TrainError::tensor("SFT loss"))?;
    let mut grads = GradAccumulator::default();
    grads.backward(&loss, params)?;
    let norm = grads.norm()?;
    let lr = schedule::lr_at(
        r.optim.lr,
        r.optim.warmup_steps,
        r.optim.decay,
        step,
        schedule_span,
    );
    if norm.is_finite() {
        grads.clip(norm, r.optim.max_grad_norm)?;
        optimizer.step(params, &grads.grads, lr)?;
    }
    let loss = loss
        .to_dtype(DType::F64)
        .and_then(|l| l.to_scalar::<f64>())
        .map_err(TrainError::tensor("SFT loss"))?;
    Ok(SftStep {
        step,
        epoch,
        loss,
        tokens,
        grad_norm: norm,
        lr,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Saves `OUT/step-N/` and removes the older SFT checkpoints (only the latest is needed to
/// resume).
fn save_latest(
    cfg: &SftConfig,
    ckpt: &Checkpoint,
    optimizer: &AdamW,
    step: usize,
) -> Result<(), TrainError> {
    let previous = checkpoint::latest_checkpoint(&cfg.out)?;
    let state = TrainerState {
        step,
        cursor: Default::default(),
        optimizer_steps: optimizer.steps(),
        skipped_steps: 0,
        seed: cfg.seed,
        recipe: cfg.recipe.name.clone(),
        init: cfg.init.display().to_string(),
        spotlight_version: crate::VERSION.to_string(),
    };
    let dir = checkpoint::save_checkpoint(&cfg.out, ckpt, optimizer, &state)?;
    if let Some((old, _)) = previous {
        if old != dir {
            std::fs::remove_dir_all(&old).map_err(|e| checkpoint::state_error(&old, e))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sft_recipe_loads_and_misspelt_overrides_are_refused() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/sft");
        let mut n = 0;
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                SftRecipe::load(&path, &[]).unwrap_or_else(|e| panic!("{e}"));
                n += 1;
            }
        }
        assert!(n >= 1);
        let path = dir.join("synth.toml");
        let r = SftRecipe::load(&path, &["batch.epochs=1".into()]).unwrap();
        assert_eq!(r.batch.epochs, 1);
        assert!(SftRecipe::load(&path, &["batch.epoch=1".into()]).is_err());
        assert!(SftRecipe::load(&path, &["optim.lr=0".into()]).is_err());
    }
}
