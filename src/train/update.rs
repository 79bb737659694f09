//! The update: GRPO advantages, then for each PPO epoch and mini-batch the objective (TAS and
//! TGF when the recipe says so) over micro-batches, gradients accumulated with each
//! micro-batch's token share, clipped by the global norm, and one AdamW step per mini-batch.

use std::collections::BTreeMap;
use std::ops::Range;

use candle_core::{DType, Tensor, Var};

use super::advantages::grpo_advantages;
use super::objective::{micro_batch_objective, MicroBatchObjective, MiniBatch, MiniBatchShaping};
use super::optim::{AdamW, GradAccumulator};
use super::perception::PerceptionStats;
use super::recipe::TrainRecipe;
use super::rollout::Response;
use super::{scoring, Example, TokenGrid, TrainError};
use crate::model::{Checkpoint, ProcessedImage};

/// What the update reads: the kept rows, their images, and the scoring pass's log-probs.
pub struct UpdateInputs<'a> {
    pub examples: &'a [Example],
    pub rows: &'a [Response],
    pub images: &'a [Option<&'a ProcessedImage>],
    /// Rollout-policy log-probs on the original image, `rows x width`.
    pub old: &'a TokenGrid,
    /// The same on the perturbed image (VPPO's TAS and TGF), when the objective needs it.
    pub perturbed: Option<&'a TokenGrid>,
    /// Tokens per row of the grids (the longest response).
    pub width: usize,
}

/// Per-step sums of the micro-batch objectives (token-share weighted, as the loss is).
#[derive(Default)]
pub struct UpdateStats {
    pub pg_loss: f64,
    pub entropy: f64,
    pub clip_higher: f64,
    pub clip_lower: f64,
    /// TAS scale of every row in every mini-batch.
    pub scales: Vec<f64>,
    /// Global gradient norm of each optimizer step (NaN: that step was skipped).
    pub grad_norms: Vec<f64>,
    pub perception: Vec<PerceptionStats>,
}

impl UpdateStats {
    fn add(&mut self, obj: &MicroBatchObjective) -> Result<(), TrainError> {
        let scalar = |t: &Tensor| -> Result<f64, TrainError> {
            t.to_dtype(DType::F64)
                .and_then(|t| t.to_scalar::<f64>())
                .map_err(TrainError::tensor("metrics"))
        };
        let w = obj.token_share;
        self.pg_loss += w * scalar(&obj.terms.pg_loss)?;
        self.entropy += w * scalar(&obj.terms.entropy_term)?;
        self.clip_higher += w * obj.terms.clip_fraction_higher;
        self.clip_lower += w * obj.terms.clip_fraction_lower;
        self.scales.extend(&obj.advantage_scale);
        Ok(())
    }

    /// The step's gradient norm: the largest of its optimizer steps, NaN if any was not finite.
    pub fn grad_norm(&self) -> f64 {
        self.grad_norms.iter().copied().fold(0.0f64, |a, b| {
            if b.is_finite() {
                a.max(b)
            } else {
                f64::NAN
            }
        })
    }
}

/// 1 on each row's response tokens, 0 on the padding.
pub fn response_mask(rows: &[Response], width: usize) -> TokenGrid {
    let mut mask = TokenGrid::zeros(rows.len(), width);
    for (i, r) in rows.iter().enumerate() {
        for v in mask.row_mut(i).iter_mut().take(r.tokens.len()) {
            *v = 1.0;
        }
    }
    mask
}

/// The whole update of a step at learning rate `lr`.
pub fn update(
    ckpt: &Checkpoint,
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    recipe: &TrainRecipe,
    inputs: &UpdateInputs,
    lr: f64,
) -> Result<UpdateStats, TrainError> {
    let rewards: Vec<f64> = inputs.rows.iter().map(|r| r.reward).collect();
    let groups: Vec<usize> = inputs.rows.iter().map(|r| r.example).collect();
    let advantages = grpo_advantages(&rewards, &groups)?;
    let mask = response_mask(inputs.rows, inputs.width);
    let mini_rows = recipe.batch.mini_batch_prompts * recipe.rollout.responses_per_prompt;
    let mut stats = UpdateStats::default();
    for _ in 0..recipe.optim.ppo_epochs {
        let mut start = 0;
        while start < inputs.rows.len() {
            let end = (start + mini_rows.max(1)).min(inputs.rows.len());
            let norm = mini_batch_step(
                ckpt,
                params,
                optimizer,
                recipe,
                inputs,
                (&mask, &advantages),
                start..end,
                lr,
                &mut stats,
            )?;
            stats.grad_norms.push(norm);
            start = end;
        }
    }
    Ok(stats)
}

/// One mini-batch: its shaping (TAS scales, TGF mask), the micro-batches' losses backward,
/// clipping and one optimizer step (skipped when the norm is not finite). Returns the norm.
#[allow(clippy::too_many_arguments)]
fn mini_batch_step(
    ckpt: &Checkpoint,
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    recipe: &TrainRecipe,
    inputs: &UpdateInputs,
    (mask, advantages): (&TokenGrid, &[f64]),
    range: Range<usize>,
    lr: f64,
    stats: &mut UpdateStats,
) -> Result<f64, TrainError> {
    let objective = &recipe.objective;
    let micro = recipe.batch.micro_batch_responses.max(1);
    let mini_mask = mask.slice_rows(range.clone())?;
    let mini_old = inputs.old.slice_rows(range.clone())?;
    let mini_aug = match inputs.perturbed {
        Some(a) => Some(a.slice_rows(range.clone())?),
        None => None,
    };
    let shaping = MiniBatchShaping::new(objective, &mini_mask, &mini_old, mini_aug.as_ref())?;
    if let Some(p) = shaping.perception_stats(&mini_mask) {
        stats.perception.push(p);
    }
    let mini = MiniBatch {
        response_mask: &mini_mask,
        old_logprobs: &mini_old,
        advantages: &advantages[range.clone()],
        ref_logprobs: None,
        shaping: &shaping,
    };
    let temperature = recipe.rollout.temperature;
    let mut grads = GradAccumulator::default();
    let mut m0 = 0;
    while m0 < range.len() {
        let m1 = (m0 + micro).min(range.len());
        let batch = scoring::requests(
            inputs.examples,
            inputs.rows,
            inputs.images,
            range.start + m0..range.start + m1,
        );
        let lp = ckpt.model.log_probs(&batch, temperature)?.values;
        let have = lp.dim(1).map_err(TrainError::tensor("log-probs"))?;
        let lp = lp
            .pad_with_zeros(1, 0, inputs.width - have)
            .map_err(TrainError::tensor("log-probs"))?;
        let obj = micro_batch_objective(objective, &mini, m0..m1, &lp)?;
        stats.add(&obj)?;
        grads.backward(&obj.weighted_loss, params)?;
        m0 = m1;
    }
    let norm = grads.norm()?;
    if norm.is_finite() {
        grads.clip(norm, recipe.optim.max_grad_norm)?;
        optimizer.step(params, &grads.grads, lr)?;
    }
    Ok(norm)
}
