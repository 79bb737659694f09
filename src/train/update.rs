//! The update: GRPO advantages, the rows laid out over workers, mini- and micro-batches as
//! the reference lays them out ([`layout`](super::layout)), then for each PPO epoch and
//! mini-batch the objective (TAS and TGF when the recipe says so) over every worker's
//! micro-batches, gradients accumulated with each micro-batch's share of the mini-batch's
//! tokens, clipped by the global norm, and one AdamW step per mini-batch.

use std::collections::BTreeMap;

use candle_core::{DType, Tensor, Var};

use super::advantages::grpo_advantages;
use super::layout::{
    layout_stats, LayoutSpec, LayoutStats, RowLayout, TasLayoutCase, TasLayoutInputs,
    TasLayoutResult,
};
use super::objective::{micro_batch_objective, MicroBatchObjective, MiniBatch, MiniBatchShaping};
use super::optim::{AdamW, GradAccumulator};
use super::perception::{self, PerceptionStats};
use super::recipe::TrainRecipe;
use super::rollout::Response;
use super::{scoring, Example, TokenGrid, TrainError};
use crate::model::{Checkpoint, ProcessedImage};

/// What the update reads: the kept rows, their images, and the scoring pass's log-probs.
pub struct UpdateInputs<'a> {
    pub examples: &'a [Example],
    pub rows: &'a [Response],
    pub images: &'a [Vec<&'a ProcessedImage>],
    /// Rollout-policy log-probs on the original image, `rows x width`.
    pub old: &'a TokenGrid,
    /// The same on the perturbed image (VPPO's TAS and TGF), when the objective needs it.
    pub perturbed: Option<&'a TokenGrid>,
    /// The frozen reference model's log-probs, when the recipe weights a KL term.
    pub reference: Option<&'a TokenGrid>,
    /// Tokens per row of the grids (the longest response).
    pub width: usize,
}

/// Per-step sums of the micro-batch objectives (token-share weighted, as the loss is).
#[derive(Default)]
pub struct UpdateStats {
    pub pg_loss: f64,
    pub entropy: f64,
    /// Token-share weighted KL term (`None` without a reference model).
    pub kl: Option<f64>,
    pub clip_higher: f64,
    pub clip_lower: f64,
    /// TAS scale of every row (the step's row order), as the objective applied it.
    pub scales: Vec<f64>,
    /// Where each row went.
    pub layout: Option<RowLayout>,
    /// How the layout mixed prompts and how TAS weighted them.
    pub layout_stats: Option<LayoutStats>,
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
        if let Some(kl) = &obj.terms.kl_term {
            *self.kl.get_or_insert(0.0) += w * scalar(kl)?;
        }
        self.clip_higher += w * obj.terms.clip_fraction_higher;
        self.clip_lower += w * obj.terms.clip_fraction_lower;
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

/// A step's rows in `debug tas-layout`'s input format, with what this update did to them as
/// the expected answer: the layout it used and the TAS scale it applied to each row (read
/// back from `stats`, not recomputed), so `debug tas-layout --check` on the file tests the
/// trainer's own path against the case runner's. `None` when the recipe has no TAS or the
/// step had no perturbed pass.
pub fn tas_layout_case(
    recipe: &TrainRecipe,
    inputs: &UpdateInputs,
    stats: &UpdateStats,
    id: serde_json::Value,
) -> Option<TasLayoutCase> {
    let perturbed = inputs.perturbed?;
    let layout = stats.layout.as_ref()?;
    if !recipe.objective.tas {
        return None;
    }
    let mask = response_mask(inputs.rows, inputs.width);
    let dependency = perception::token_dependency(&mask, inputs.old, perturbed);
    let token_dependency = inputs
        .rows
        .iter()
        .enumerate()
        .map(|(i, r)| dependency.row(i)[..r.tokens.len()].to_vec())
        .collect();
    Some(TasLayoutCase {
        id: id.clone(),
        inputs: TasLayoutInputs {
            world_size: recipe.batch.world_size,
            global_batch_size: recipe.batch.mini_batch_prompts,
            micro_batch_size_per_device: recipe.batch.micro_batch_responses,
            beta_min: recipe.objective.beta_min,
            balance: recipe.batch.balance,
            groups: inputs.rows.iter().map(|r| r.group.into()).collect(),
            prompt_lengths: inputs
                .rows
                .iter()
                .map(|r| inputs.examples[r.example].prompt_ids.len() as u64)
                .collect(),
            response_lengths: inputs.rows.iter().map(|r| r.tokens.len() as u64).collect(),
            token_dependency,
        },
        expected: Some(TasLayoutResult {
            id,
            device: layout.device.clone(),
            mini_batch: layout.mini_batch.clone(),
            micro_batch: layout.micro_batch.clone(),
            advantage_scale: stats.scales.clone(),
        }),
    })
}

/// The layout of a recipe's update.
pub fn layout_spec(recipe: &TrainRecipe) -> LayoutSpec {
    LayoutSpec {
        world_size: recipe.batch.world_size,
        mini_batch_rows: recipe.mini_batch_responses(),
        micro_batch_rows: recipe.batch.micro_batch_responses,
        balance: recipe.batch.balance,
    }
}

/// What length balancing counts for each row: prompt tokens (image tokens included, since the
/// prompt ids carry the expanded `<|image_pad|>` run) plus response tokens.
pub fn sequence_lengths(examples: &[Example], rows: &[Response]) -> Vec<u64> {
    rows.iter()
        .map(|r| (examples[r.example].prompt_ids.len() + r.tokens.len()) as u64)
        .collect()
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
    let groups: Vec<usize> = inputs.rows.iter().map(|r| r.group).collect();
    let advantages = grpo_advantages(&rewards, &groups)?;
    let mask = response_mask(inputs.rows, inputs.width);
    let lengths = mask.row_sums();
    let layout = RowLayout::new(
        &layout_spec(recipe),
        &sequence_lengths(inputs.examples, inputs.rows),
    )?;
    let mut stats = UpdateStats {
        scales: vec![1.0; inputs.rows.len()],
        ..UpdateStats::default()
    };
    for epoch in 0..recipe.optim.ppo_epochs {
        for k in 0..layout.mini_batches() {
            let norm = mini_batch_step(
                ckpt,
                params,
                optimizer,
                recipe,
                inputs,
                (&mask, &lengths, &advantages),
                (&layout, k, epoch == 0),
                lr,
                &mut stats,
            )?;
            stats.grad_norms.push(norm);
        }
    }
    stats.layout_stats = Some(layout_stats(&layout, &groups, &stats.scales));
    stats.layout = Some(layout);
    Ok(stats)
}

/// One mini-batch (`k` of `layout`): for each worker's part, its shaping (TAS range, TGF mask)
/// and its micro-batches' losses backward; then clipping and one optimizer step (skipped when
/// the norm is not finite). Returns the norm. `record` keeps the applied TAS scales (the first
/// PPO epoch's; later epochs apply the same).
#[allow(clippy::too_many_arguments)]
fn mini_batch_step(
    ckpt: &Checkpoint,
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    recipe: &TrainRecipe,
    inputs: &UpdateInputs,
    (mask, lengths, advantages): (&TokenGrid, &[f64], &[f64]),
    (layout, k, record): (&RowLayout, usize, bool),
    lr: f64,
    stats: &mut UpdateStats,
) -> Result<f64, TrainError> {
    let objective = &recipe.objective;
    let temperature = recipe.rollout.temperature;
    let mini_batch_tokens: f64 = layout
        .parts_of(k)
        .flat_map(|p| p.rows())
        .map(|i| lengths[i])
        .sum();
    let mut grads = GradAccumulator::default();
    for part in layout.parts_of(k) {
        let rows = part.rows();
        let part_mask = mask.select_rows(&rows)?;
        let part_old = inputs.old.select_rows(&rows)?;
        let part_aug = inputs.perturbed.map(|a| a.select_rows(&rows)).transpose()?;
        let part_ref = inputs.reference.map(|r| r.select_rows(&rows)).transpose()?;
        let part_advantages: Vec<f64> = rows.iter().map(|&i| advantages[i]).collect();
        let shaping = MiniBatchShaping::new(objective, &part_mask, &part_old, part_aug.as_ref())?;
        if let Some(p) = shaping.perception_stats(&part_mask) {
            stats.perception.push(p);
        }
        let mini = MiniBatch {
            response_mask: &part_mask,
            old_logprobs: &part_old,
            advantages: &part_advantages,
            ref_logprobs: part_ref.as_ref(),
            shaping: &shaping,
            mini_batch_tokens,
        };
        for range in part.micro_ranges() {
            let batch = scoring::requests(
                inputs.examples,
                inputs.rows,
                inputs.images,
                rows[range.clone()].iter().copied(),
            );
            let lp = ckpt.model.log_probs(&batch, temperature)?.values;
            let have = lp.dim(1).map_err(TrainError::tensor("log-probs"))?;
            let lp = lp
                .pad_with_zeros(1, 0, inputs.width - have)
                .map_err(TrainError::tensor("log-probs"))?;
            let obj = micro_batch_objective(objective, &mini, range.clone(), &lp)?;
            if record {
                for (&row, &s) in rows[range].iter().zip(&obj.advantage_scale) {
                    stats.scales[row] = s;
                }
            }
            stats.add(&obj)?;
            grads.backward(&obj.weighted_loss, params)?;
        }
    }
    let norm = grads.norm()?;
    if norm.is_finite() {
        grads.clip(norm, recipe.optim.max_grad_norm)?;
        optimizer.step(params, &grads.grads, lr)?;
    }
    Ok(norm)
}
