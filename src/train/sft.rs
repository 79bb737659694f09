//! Supervised fine-tuning on reference solutions (`spotlight sft`): the warm start that gives
//! RL a policy which is sometimes right. Cross-entropy on each response's tokens (the solution
//! followed by `<|im_end|>`), averaged over the batch's tokens, AdamW with linear warm-up and
//! gradient clipping — the trainer's optimiser and scoring path, not a second implementation.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::DType;
use serde::{Deserialize, Serialize};

use super::optim::{AdamW, GradAccumulator};
use super::trainer::{
    avg_at_k, load_examples, named_vars, progress_bar, seeded_order, state_error, warmup_lr,
    Example,
};
use super::TrainError;
use crate::bench::{DataSource, Registry};
use crate::eval::Grader;
use crate::model::{Checkpoint, ScoringRequest};

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
    pub init: PathBuf,
    pub data: DataSource,
    pub eval_data: Option<DataSource>,
    pub out: PathBuf,
    pub seed: u64,
    /// Stop after this many steps (default: the recipe's epochs).
    pub steps: Option<usize>,
    pub progress: bool,
    pub grader: Arc<dyn Grader>,
}

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
    /// avg@k (%) on the held-out items before and after training.
    pub accuracy_before: Option<f64>,
    pub accuracy_after: Option<f64>,
    pub out: PathBuf,
}

/// Fine-tunes `init` on the reference solutions and writes the result to `out` (HF layout).
pub fn sft(cfg: &SftConfig, registry: &Registry) -> Result<SftOutcome, TrainError> {
    let r = &cfg.recipe;
    let mut ckpt = Checkpoint::load(&cfg.init)?;
    ckpt.image_processor.min_pixels = r.image.min_pixels;
    ckpt.image_processor.max_pixels = r.image.max_pixels;
    let examples: Vec<Example> = load_examples(
        registry,
        &r.data.bench,
        &ckpt,
        &cfg.data,
        r.data.max_prompt_tokens,
        usize::MAX,
    )?
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
    let held_out = match (&cfg.eval_data, r.evaluation.items) {
        (Some(source), n) if n > 0 => load_examples(
            registry,
            &r.data.bench,
            &ckpt,
            source,
            r.data.max_prompt_tokens,
            n,
        )?,
        _ => Vec::new(),
    };
    let evaluate = |ckpt: &Checkpoint| -> Result<Option<f64>, TrainError> {
        if held_out.is_empty() {
            return Ok(None);
        }
        let e = &r.evaluation;
        avg_at_k(
            ckpt,
            &held_out,
            cfg.grader.as_ref(),
            e.samples_per_item,
            e.temperature,
            e.max_new_tokens,
            cfg.seed,
        )
        .map(Some)
    };
    let accuracy_before = evaluate(&ckpt)?;

    std::fs::create_dir_all(&cfg.out).map_err(|e| state_error(&cfg.out, e))?;
    let metrics_path = cfg.out.join("sft_metrics.jsonl");
    let mut metrics =
        std::fs::File::create(&metrics_path).map_err(|e| state_error(&metrics_path, e))?;
    let params: BTreeMap<String, candle_core::Var> = named_vars(&ckpt)?;
    let mut optimizer = AdamW::new(r.optim.lr, r.optim.betas, r.optim.weight_decay);
    let per_epoch = examples.len().div_ceil(r.batch.examples_per_step);
    let total = cfg.steps.unwrap_or(per_epoch * r.batch.epochs);
    let bar = progress_bar(cfg.progress, total as u64, 0);
    let mut order: Vec<usize> = Vec::new();
    let mut last_loss = None;
    for step in 1..=total {
        let started = Instant::now();
        let first = (step - 1) * r.batch.examples_per_step;
        let epoch = first / examples.len();
        if first % examples.len() == 0 || order.is_empty() {
            order = seeded_order(examples.len(), cfg.seed, "sft-order", epoch as u64);
        }
        let batch: Vec<usize> = (first..first + r.batch.examples_per_step)
            .map(|i| order[i % examples.len()])
            .collect();
        let requests: Vec<ScoringRequest> = batch
            .iter()
            .map(|&i| ScoringRequest {
                prompt_ids: &examples[i].prompt_ids,
                response_ids: &targets[i],
                image: examples[i].image.as_ref(),
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
        grads.backward(&loss, &params)?;
        let norm = grads.norm()?;
        let lr = warmup_lr(r.optim.lr, r.optim.warmup_steps, step);
        if norm.is_finite() {
            grads.clip(norm, r.optim.max_grad_norm)?;
            optimizer.step(&params, &grads.grads, lr)?;
        }
        let loss_value = loss
            .to_dtype(DType::F64)
            .and_then(|l| l.to_scalar::<f64>())
            .map_err(TrainError::tensor("SFT loss"))?;
        last_loss = Some(loss_value);
        let line = SftStep {
            step,
            epoch,
            loss: loss_value,
            tokens,
            grad_norm: norm,
            lr,
            seconds: started.elapsed().as_secs_f64(),
        };
        let text = serde_json::to_string(&line).map_err(|e| TrainError::Usage(e.to_string()))?;
        writeln!(metrics, "{text}").map_err(|e| state_error(&metrics_path, e))?;
        bar.set_position(step as u64);
        bar.set_message(format!("loss {loss_value:.3}"));
    }
    bar.finish();
    ckpt.save(&cfg.out, DType::F32)?;
    let accuracy_after = evaluate(&ckpt)?;
    Ok(SftOutcome {
        steps: total,
        final_loss: last_loss,
        accuracy_before,
        accuracy_after,
        out: cfg.out.clone(),
    })
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
