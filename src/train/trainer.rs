//! The RL loop of `../shared/spec/vppo.md`: per step, sample G responses for each prompt
//! (batched KV-cache sampling), reward them with the verifier, keep groups by online filtering
//! until the batch is full, score the responses with the rollout policy on the original and on
//! a perturbed image, compute GRPO advantages, and update the policy with the PPO objective
//! (TAS and TGF when the recipe says so) in mini- and micro-batches with AdamW.
//!
//! Every random draw derives from (run seed, item, sample, step): the data order of each epoch,
//! each response's sampling stream, each row's perturbation mask. With the weights, the AdamW
//! moments and the data cursor saved in each checkpoint, `--resume` therefore continues exactly
//! where an uninterrupted run would be — same weights and same metrics, timings aside.
//!
//! What is not the reference's: a sampling round draws only as many new prompts as the batch
//! still lacks (the reference draws a full rollout batch per round); mini-batches take the kept
//! groups in order (the reference shuffles them once per step).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use candle_core::{DType, Tensor, Var};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::advantages::grpo_advantages;
use super::objective::{micro_batch_objective, MiniBatch, MiniBatchShaping};
use super::optim::{AdamW, GradAccumulator};
use super::recipe::TrainRecipe;
use super::{TokenGrid, TrainError};
use crate::bench::{DataSource, PromptRenderer, Registry};
use crate::eval::Grader;
use crate::model::{
    Checkpoint, GenerationPrompt, ImageProcessor, ProcessedImage, SampleRequest, SamplingParams,
    ScoringRequest,
};
use crate::seed::derive_seed_tagged;

/// File names inside a run folder and its checkpoints.
pub const METRICS_FILE: &str = "metrics.jsonl";
pub const STATE_FILE: &str = "trainer_state.json";
pub const OPTIMIZER_FILE: &str = "optimizer.safetensors";

/// Everything a run needs, resolved by the CLI.
pub struct RunConfig {
    pub recipe: TrainRecipe,
    pub recipe_path: PathBuf,
    /// The starting checkpoint folder (HF layout).
    pub init: PathBuf,
    /// The manifest whose schema the data has (e.g. `synth-perception`).
    pub bench: String,
    pub train_data: DataSource,
    /// Held-out data for validation avg@k (`None`: no validation).
    pub val_data: Option<DataSource>,
    /// Validation items (the first N).
    pub val_items: usize,
    pub out: PathBuf,
    pub seed: u64,
    /// Stop after this many steps in total (default: the recipe's epochs over the data).
    pub steps: Option<usize>,
    /// Save a checkpoint every this many steps (and after the last).
    pub save_every: usize,
    pub resume: bool,
    pub progress: bool,
    /// The accuracy grader (the recipe's rule set).
    pub grader: Arc<dyn Grader>,
    /// The format grader, when the recipe weights a format reward.
    pub format_grader: Option<Arc<dyn Grader>>,
}

/// Where the data order is: which epoch's permutation, and how far into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataCursor {
    pub epoch: u64,
    pub position: usize,
}

/// Saved beside each checkpoint: what `--resume` needs besides the weights and moments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainerState {
    /// Steps completed.
    pub step: usize,
    pub cursor: DataCursor,
    pub optimizer_steps: u64,
    pub skipped_steps: usize,
    pub seed: u64,
    pub recipe: String,
    pub init: String,
    pub spotlight_version: String,
}

/// Seconds spent in each phase of a step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PhaseTimes {
    pub rollout: f64,
    pub old_logprobs: f64,
    pub perturbed_logprobs: f64,
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
    pub pg_loss: f64,
    /// `-mean(log p)` of the sampled tokens (the entropy term's value).
    pub entropy: f64,
    pub clip_fraction_higher: f64,
    pub clip_fraction_lower: f64,
    pub grad_norm: f64,
    pub skipped_steps: usize,
    pub lr: f64,
    /// Validation avg@k (%) after this step, when validated.
    pub validation_avg_at_k: Option<f64>,
    pub time_s: PhaseTimes,
}

/// A training example ready for the model.
pub(crate) struct Example {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    /// The processor-resized image (perturbations apply to it) and its normalised patches.
    pub resized: Option<RgbImage>,
    pub image: Option<ProcessedImage>,
    pub answer: String,
    pub options: Vec<String>,
    /// The reference solution (the manifest's `solution` field), the target of SFT.
    pub solution: Option<String>,
}

/// One kept response.
struct Row {
    example: usize,
    sample: u32,
    tokens: Vec<u32>,
    reward: f64,
    accuracy: f64,
}

/// What a run produced.
pub struct TrainOutcome {
    pub steps_done: usize,
    pub last: Option<StepMetrics>,
    pub checkpoints: Vec<PathBuf>,
}

/// Runs (or resumes) training.
pub fn train(cfg: &RunConfig, registry: &Registry) -> Result<TrainOutcome, TrainError> {
    let recipe = &cfg.recipe;
    std::fs::create_dir_all(&cfg.out).map_err(|e| state_error(&cfg.out, e))?;
    let resumed = latest_checkpoint(&cfg.out)?;
    if resumed.is_some() && !cfg.resume {
        return Err(TrainError::Usage(format!(
            "{} already holds checkpoints; pass --resume to continue, or choose another --out",
            cfg.out.display()
        )));
    }
    let (model_dir, state) = match &resumed {
        Some((dir, state)) => (dir.clone(), Some(state.clone())),
        None => (cfg.init.clone(), None),
    };
    let mut ckpt = Checkpoint::load(&model_dir)?;
    ckpt.image_processor.min_pixels = recipe.image.min_pixels;
    ckpt.image_processor.max_pixels = recipe.image.max_pixels;
    let params = named_vars(&ckpt)?;
    let mut optimizer = AdamW::new(
        recipe.optim.lr,
        recipe.optim.betas,
        recipe.optim.weight_decay,
    );
    let (mut step, mut cursor, mut skipped) = match &state {
        Some(s) => {
            if s.seed != cfg.seed || s.recipe != recipe.name {
                return Err(TrainError::Usage(format!(
                    "cannot resume {}: it was started with recipe {} and seed {}, not {} and {}",
                    cfg.out.display(),
                    s.recipe,
                    s.seed,
                    recipe.name,
                    cfg.seed
                )));
            }
            optimizer.load(&model_dir.join(OPTIMIZER_FILE), s.optimizer_steps, &params)?;
            (s.step, s.cursor, s.skipped_steps)
        }
        None => (
            0,
            DataCursor {
                epoch: 0,
                position: 0,
            },
            0,
        ),
    };
    truncate_metrics(&cfg.out.join(METRICS_FILE), step)?;

    let max_prompt = recipe.rollout.max_prompt_tokens;
    let examples = load_examples(
        registry,
        &cfg.bench,
        &ckpt,
        &cfg.train_data,
        max_prompt,
        usize::MAX,
    )?;
    if examples.is_empty() {
        return Err(TrainError::Usage("no usable training items".into()));
    }
    let validation = match &cfg.val_data {
        Some(source) if recipe.validation.every_steps > 0 => load_examples(
            registry,
            &cfg.bench,
            &ckpt,
            source,
            max_prompt,
            cfg.val_items,
        )?,
        _ => Vec::new(),
    };
    let per_epoch = examples.len().div_ceil(recipe.batch.prompts_per_step);
    let total = cfg.steps.unwrap_or(per_epoch * recipe.optim.epochs);

    let bar = progress_bar(cfg.progress, total as u64, step as u64);
    let mut checkpoints = Vec::new();
    let mut last = None;
    let mut metrics_file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(cfg.out.join(METRICS_FILE))
        .map_err(|e| state_error(&cfg.out.join(METRICS_FILE), e))?;
    while step < total {
        step += 1;
        let started = Instant::now();
        let mut m = run_step(
            cfg,
            &ckpt,
            &params,
            &mut optimizer,
            &examples,
            &mut cursor,
            step,
        )?;
        if !m.grad_norm.is_finite() {
            skipped += 1;
        }
        m.skipped_steps = skipped;
        if !validation.is_empty() && step % recipe.validation.every_steps == 0 {
            let t = Instant::now();
            m.validation_avg_at_k = Some(validate(cfg, &ckpt, &validation)?);
            m.time_s.validation = t.elapsed().as_secs_f64();
        }
        m.time_s.total = started.elapsed().as_secs_f64();
        let line = serde_json::to_string(&m).map_err(|e| TrainError::Usage(e.to_string()))?;
        writeln!(metrics_file, "{line}")
            .and_then(|_| metrics_file.flush())
            .map_err(|e| state_error(&cfg.out.join(METRICS_FILE), e))?;
        if step % cfg.save_every.max(1) == 0 || step == total {
            let state = TrainerState {
                step,
                cursor,
                optimizer_steps: optimizer.steps(),
                skipped_steps: skipped,
                seed: cfg.seed,
                recipe: recipe.name.clone(),
                init: cfg.init.display().to_string(),
                spotlight_version: crate::VERSION.to_string(),
            };
            checkpoints.push(save_checkpoint(&cfg.out, &ckpt, &optimizer, &state)?);
        }
        bar.set_position(step as u64);
        bar.set_message(format!(
            "acc {:.2}  reward {:.2}  {:.1} s/step",
            m.accuracy, m.reward, m.time_s.total
        ));
        last = Some(m);
    }
    bar.finish();
    Ok(TrainOutcome {
        steps_done: step,
        last,
        checkpoints,
    })
}

/// One training step; returns its metrics (skipped-step count and validation filled later).
fn run_step(
    cfg: &RunConfig,
    ckpt: &Checkpoint,
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    examples: &[Example],
    cursor: &mut DataCursor,
    step: usize,
) -> Result<StepMetrics, TrainError> {
    let recipe = &cfg.recipe;
    let g = recipe.rollout.responses_per_prompt;
    let wanted = recipe.batch.prompts_per_step;
    let mut times = PhaseTimes::default();

    // --- rollout with online filtering ---
    let t = Instant::now();
    let sampling = SamplingParams {
        temperature: recipe.rollout.temperature,
        top_p: recipe.rollout.top_p,
        top_k: 0,
        max_new_tokens: recipe.rollout.max_response_tokens,
        stop_token_ids: ckpt.stop_token_ids(),
    };
    let mut kept: Vec<Vec<Row>> = Vec::new();
    let (mut rounds, mut sampled_groups, mut correct_all, mut responses_all) = (0, 0, 0.0, 0usize);
    while kept.len() < wanted {
        if rounds == recipe.filtering.max_sampling_rounds {
            return Err(TrainError::FilteringExhausted {
                kept: kept.len(),
                wanted,
                rounds,
            });
        }
        rounds += 1;
        let chosen = next_examples(cursor, examples.len(), wanted - kept.len(), cfg.seed);
        let prompts: Vec<GenerationPrompt> = chosen
            .iter()
            .map(|&e| GenerationPrompt {
                prompt_ids: &examples[e].prompt_ids,
                images: examples[e].image.iter().collect(),
            })
            .collect();
        let tag = format!("rollout/step{step}/round{rounds}");
        let requests: Vec<SampleRequest> = chosen
            .iter()
            .enumerate()
            .flat_map(|(p, &e)| {
                let tag = &tag;
                (0..g).map(move |s| SampleRequest {
                    prompt: p,
                    seed: derive_seed_tagged(cfg.seed, &examples[e].id, s as u32, tag),
                })
            })
            .collect();
        let outputs = ckpt.model.generate(&prompts, &requests, &sampling)?;
        for (p, &e) in chosen.iter().enumerate() {
            let ex = &examples[e];
            let mut group = Vec::with_capacity(g);
            let mut correct = 0.0;
            for s in 0..g {
                let out = &outputs[p * g + s];
                let text = ckpt.tokenizer.decode(&out.token_ids, true).map_err(|err| {
                    crate::model::ModelError::Tokenizer {
                        path: ckpt.tokenizer_path.clone(),
                        message: err.to_string(),
                    }
                })?;
                let (reward, accuracy) = reward(cfg, &text, ex);
                correct += accuracy;
                group.push(Row {
                    example: e,
                    sample: s as u32,
                    tokens: out.token_ids.clone(),
                    reward,
                    accuracy,
                });
            }
            sampled_groups += 1;
            correct_all += correct;
            responses_all += g;
            let mean = correct / g as f64;
            let f = &recipe.filtering;
            if !f.enabled || (mean > f.accuracy_low && mean < f.accuracy_high) {
                kept.push(group);
            }
        }
    }
    kept.truncate(wanted);
    let rows: Vec<Row> = kept.into_iter().flatten().collect();
    times.rollout = t.elapsed().as_secs_f64();

    // --- rollout-policy log-probs on the original and the perturbed image ---
    let temperature = recipe.rollout.temperature;
    let micro = recipe.batch.micro_batch_responses.max(1);
    let width = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let t = Instant::now();
    let images: Vec<Option<&ProcessedImage>> = rows
        .iter()
        .map(|r| examples[r.example].image.as_ref())
        .collect();
    let old = score_rows(ckpt, examples, &rows, &images, temperature, micro, width)?;
    times.old_logprobs = t.elapsed().as_secs_f64();
    let objective = &recipe.objective;
    let aug = if objective.needs_perception() {
        let t = Instant::now();
        let mask_seed = derive_seed_tagged(cfg.seed, "perturb", step as u32, "step");
        let perturbed: Vec<Option<ProcessedImage>> = rows
            .iter()
            .map(|r| {
                examples[r.example].resized.as_ref().map(|img| {
                    let p = recipe.perturbation.apply_for_row(
                        img,
                        mask_seed,
                        &examples[r.example].id,
                        r.sample,
                    );
                    ckpt.image_processor.normalize(&p)
                })
            })
            .collect();
        let refs: Vec<Option<&ProcessedImage>> = perturbed.iter().map(Option::as_ref).collect();
        let grid = score_rows(ckpt, examples, &rows, &refs, temperature, micro, width)?;
        times.perturbed_logprobs = t.elapsed().as_secs_f64();
        Some(grid)
    } else {
        None
    };

    // --- advantages and the update ---
    let t = Instant::now();
    let rewards: Vec<f64> = rows.iter().map(|r| r.reward).collect();
    let groups: Vec<usize> = rows.iter().map(|r| r.example).collect();
    let advantages = grpo_advantages(&rewards, &groups)?;
    let mut mask = TokenGrid::zeros(rows.len(), width);
    for (i, r) in rows.iter().enumerate() {
        for v in mask.row_mut(i).iter_mut().take(r.tokens.len()) {
            *v = 1.0;
        }
    }
    let mini_rows = recipe.batch.mini_batch_prompts * g;
    let mut stats = UpdateStats::default();
    let lr = learning_rate(recipe, step);
    for _ in 0..recipe.optim.ppo_epochs {
        let mut start = 0;
        while start < rows.len() {
            let end = (start + mini_rows).min(rows.len());
            let range = start..end;
            let mini_mask = mask.slice_rows(range.clone())?;
            let mini_old = old.slice_rows(range.clone())?;
            let mini_aug = match &aug {
                Some(a) => Some(a.slice_rows(range.clone())?),
                None => None,
            };
            let shaping =
                MiniBatchShaping::new(objective, &mini_mask, &mini_old, mini_aug.as_ref())?;
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
            let mut grads = GradAccumulator::default();
            let mut m0 = 0;
            while m0 < range.len() {
                let m1 = (m0 + micro).min(range.len());
                let requests: Vec<ScoringRequest> = (start + m0..start + m1)
                    .map(|i| ScoringRequest {
                        prompt_ids: &examples[rows[i].example].prompt_ids,
                        response_ids: &rows[i].tokens,
                        image: images[i],
                    })
                    .collect();
                let lp = ckpt.model.log_probs(&requests, temperature)?.values;
                let have = lp.dim(1).map_err(TrainError::tensor("log-probs"))?;
                let lp = lp
                    .pad_with_zeros(1, 0, width - have)
                    .map_err(TrainError::tensor("log-probs"))?;
                let obj = micro_batch_objective(objective, &mini, m0..m1, &lp)?;
                stats.add(&obj)?;
                grads.backward(&obj.weighted_loss, params)?;
                m0 = m1;
            }
            let norm = grads.norm()?;
            stats.grad_norms.push(norm);
            if norm.is_finite() {
                grads.clip(norm, recipe.optim.max_grad_norm)?;
                optimizer.step(params, &grads.grads, lr)?;
            }
            start = end;
        }
    }
    times.update = t.elapsed().as_secs_f64();

    let n = rows.len().max(1) as f64;
    let accuracy = rows.iter().map(|r| r.accuracy).sum::<f64>() / n;
    let scales = &stats.scales;
    let mean = |v: &[f64]| (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64);
    let pick = |f: fn(&super::perception::PerceptionStats) -> Option<f64>| {
        let v: Vec<f64> = stats.perception.iter().filter_map(f).collect();
        mean(&v)
    };
    Ok(StepMetrics {
        step,
        epoch: cursor.epoch,
        reward: rewards.iter().sum::<f64>() / n,
        accuracy,
        accuracy_all_sampled: correct_all / responses_all.max(1) as f64,
        kept_groups: rows.len() / g.max(1),
        sampled_groups,
        sampling_rounds: rounds,
        response_length: rows.iter().map(|r| r.tokens.len() as f64).sum::<f64>() / n,
        perception_token_fraction: mean(
            &stats
                .perception
                .iter()
                .map(|p| p.selected_fraction)
                .collect::<Vec<_>>(),
        ),
        dependency_selected: pick(|p| p.mean_selected),
        dependency_rejected: pick(|p| p.mean_rejected),
        tgf_threshold: pick(|p| p.threshold),
        tas_scale_mean: mean(scales).unwrap_or(1.0),
        tas_scale_min: scales.iter().copied().fold(f64::INFINITY, f64::min),
        tas_scale_max: scales.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        pg_loss: stats.pg_loss,
        entropy: stats.entropy,
        clip_fraction_higher: stats.clip_higher,
        clip_fraction_lower: stats.clip_lower,
        grad_norm: stats.grad_norms.iter().copied().fold(0.0f64, |a, b| {
            if b.is_finite() {
                a.max(b)
            } else {
                f64::NAN
            }
        }),
        skipped_steps: 0,
        lr,
        validation_avg_at_k: None,
        time_s: times,
    })
}

/// Per-step sums of the micro-batch objectives (token-share weighted, as the loss is).
#[derive(Default)]
struct UpdateStats {
    pg_loss: f64,
    entropy: f64,
    clip_higher: f64,
    clip_lower: f64,
    scales: Vec<f64>,
    grad_norms: Vec<f64>,
    perception: Vec<super::perception::PerceptionStats>,
}

impl UpdateStats {
    fn add(&mut self, obj: &super::objective::MicroBatchObjective) -> Result<(), TrainError> {
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
}

/// Reward and accuracy of one response: accuracy from the recipe's rule set, blended with the
/// format reward as `(1 - w) accuracy + w format` when the recipe weights it.
fn reward(cfg: &RunConfig, text: &str, ex: &Example) -> (f64, f64) {
    let options = (!ex.options.is_empty()).then_some(ex.options.as_slice());
    let accuracy = if cfg.grader.grade(text, &ex.answer, options).correct {
        1.0
    } else {
        0.0
    };
    let w = cfg.recipe.reward.format_weight;
    match &cfg.format_grader {
        Some(f) if w > 0.0 => {
            let format = if f.grade(text, &ex.answer, options).correct {
                1.0
            } else {
                0.0
            };
            ((1.0 - w) * accuracy + w * format, accuracy)
        }
        _ => (accuracy, accuracy),
    }
}

/// Log-probs of each row's response at `temperature` (no gradient kept), padded to `width`.
fn score_rows(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Row],
    images: &[Option<&ProcessedImage>],
    temperature: f64,
    micro: usize,
    width: usize,
) -> Result<TokenGrid, TrainError> {
    let mut grid = TokenGrid::zeros(rows.len(), width);
    let mut start = 0;
    while start < rows.len() {
        let end = (start + micro).min(rows.len());
        let requests: Vec<ScoringRequest> = (start..end)
            .map(|i| ScoringRequest {
                prompt_ids: &examples[rows[i].example].prompt_ids,
                response_ids: &rows[i].tokens,
                image: images[i],
            })
            .collect();
        let values = ckpt.model.log_probs(&requests, temperature)?.to_vecs()?;
        for (k, v) in values.iter().enumerate() {
            for (dst, &x) in grid.row_mut(start + k).iter_mut().zip(v) {
                *dst = x as f64;
            }
        }
        start = end;
    }
    Ok(grid)
}

/// Validation avg@k (%): each held-out item sampled `samples_per_item` times with the same
/// seeds at every validation, so points on the curve differ only by the weights.
fn validate(cfg: &RunConfig, ckpt: &Checkpoint, examples: &[Example]) -> Result<f64, TrainError> {
    let v = &cfg.recipe.validation;
    avg_at_k(
        ckpt,
        examples,
        cfg.grader.as_ref(),
        v.samples_per_item,
        v.temperature,
        cfg.recipe.rollout.max_response_tokens,
        cfg.seed,
    )
}

/// avg@k (%) of `examples` at `temperature`, sample `s` of item `id` seeded by
/// (seed, id, s, "validation").
pub(crate) fn avg_at_k(
    ckpt: &Checkpoint,
    examples: &[Example],
    grader: &dyn Grader,
    k: usize,
    temperature: f64,
    max_new_tokens: usize,
    seed: u64,
) -> Result<f64, TrainError> {
    let k = k.max(1);
    let params = SamplingParams {
        temperature,
        top_p: 1.0,
        top_k: 0,
        max_new_tokens,
        stop_token_ids: ckpt.stop_token_ids(),
    };
    let mut correct = 0.0;
    for chunk in examples.chunks(8) {
        let prompts: Vec<GenerationPrompt> = chunk
            .iter()
            .map(|e| GenerationPrompt {
                prompt_ids: &e.prompt_ids,
                images: e.image.iter().collect(),
            })
            .collect();
        let requests: Vec<SampleRequest> = chunk
            .iter()
            .enumerate()
            .flat_map(|(p, e)| {
                (0..k).map(move |s| SampleRequest {
                    prompt: p,
                    seed: derive_seed_tagged(seed, &e.id, s as u32, "validation"),
                })
            })
            .collect();
        let outputs = ckpt.model.generate(&prompts, &requests, &params)?;
        for (i, out) in outputs.iter().enumerate() {
            let ex = &chunk[i / k];
            let text = ckpt
                .tokenizer
                .decode(&out.token_ids, true)
                .unwrap_or_default();
            let options = (!ex.options.is_empty()).then_some(ex.options.as_slice());
            if grader.grade(&text, &ex.answer, options).correct {
                correct += 1.0;
            }
        }
    }
    Ok(100.0 * correct / (examples.len() * k).max(1) as f64)
}

/// The next `n` example indices in the seeded per-epoch order, advancing the cursor.
fn next_examples(cursor: &mut DataCursor, len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut out = Vec::with_capacity(n);
    let mut order = epoch_order(len, cursor.epoch, seed);
    while out.len() < n {
        if cursor.position >= len {
            cursor.epoch += 1;
            cursor.position = 0;
            order = epoch_order(len, cursor.epoch, seed);
        }
        out.push(order[cursor.position]);
        cursor.position += 1;
    }
    out
}

/// The RL data order of an epoch.
fn epoch_order(len: usize, epoch: u64, seed: u64) -> Vec<usize> {
    seeded_order(len, seed, "data-order", epoch)
}

/// A Fisher-Yates permutation of `0..len` from its own stream: (seed, `stream`, epoch).
pub(crate) fn seeded_order(len: usize, seed: u64, stream: &str, epoch: u64) -> Vec<usize> {
    let mut rng =
        ChaCha20Rng::seed_from_u64(derive_seed_tagged(seed, stream, epoch as u32, "epoch"));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// The recipe's learning rate at `step`.
fn learning_rate(recipe: &TrainRecipe, step: usize) -> f64 {
    warmup_lr(recipe.optim.lr, recipe.optim.warmup_steps, step)
}

/// Linear warm-up to `lr` over `warmup` steps (1-based), then constant.
pub(crate) fn warmup_lr(lr: f64, warmup: usize, step: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        lr * step as f64 / warmup as f64
    } else {
        lr
    }
}

/// Reads, renders, tokenizes and preprocesses up to `limit` items of benchmark `bench`
/// (items with several images, or prompts over `max_prompt_tokens`, are left out).
pub(crate) fn load_examples(
    registry: &Registry,
    bench: &str,
    ckpt: &Checkpoint,
    source: &DataSource,
    max_prompt_tokens: usize,
    limit: usize,
) -> Result<Vec<Example>, TrainError> {
    let manifest = registry.get(bench)?;
    let loaded = registry.load_benchmark(manifest, source)?;
    if let Some(p) = loaded.bad_rows.first() {
        return Err(TrainError::Usage(format!(
            "{}: row {}: field `{}`: {} ({} bad rows; `spotlight bench validate` lists them)",
            p.file.display(),
            p.row,
            p.field,
            p.message,
            loaded.bad_rows.len()
        )));
    }
    let renderer = PromptRenderer::new(manifest)?;
    let builder = ckpt.prompt_builder()?;
    let processor: &ImageProcessor = &ckpt.image_processor;
    let mut out = Vec::new();
    for item in loaded.items.iter().take(limit) {
        if item.images.len() > 1 {
            continue; // scoring takes one image per sequence
        }
        let (resized, image) = match item.images.first().and_then(|i| i.bytes.as_ref()) {
            Some(bytes) => {
                let decoded = image::load_from_memory(bytes).map_err(|e| {
                    TrainError::Usage(format!(
                        "{}: row {}: image: {e}",
                        item.source_file.display(),
                        item.row
                    ))
                })?;
                let resized = processor.resize(&decoded)?;
                let image = processor.normalize(&resized);
                (Some(resized), Some(image))
            }
            None => (None, None),
        };
        let text = renderer.render(item)?;
        let grids: Vec<_> = image.iter().map(|i| i.grid_thw).collect();
        let prompt_ids = builder.prompt_ids(Some(crate::eval::DEFAULT_SYSTEM), &text, &grids)?;
        if prompt_ids.len() > max_prompt_tokens {
            continue;
        }
        out.push(Example {
            id: item.id.clone(),
            prompt_ids,
            resized,
            image,
            answer: item.answer.clone(),
            options: item.options.clone(),
            solution: item.fields.get("solution").cloned(),
        });
    }
    Ok(out)
}

/// Every parameter as a trainable variable, by name (sorted: a fixed update order).
pub(crate) fn named_vars(ckpt: &Checkpoint) -> Result<BTreeMap<String, Var>, TrainError> {
    let data = ckpt
        .varmap
        .data()
        .lock()
        .map_err(|_| TrainError::Usage("parameter map poisoned".into()))?;
    Ok(data.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
}

/// Writes `out/step-N/` (HF layout + optimizer moments + trainer state) through a temporary
/// folder renamed into place, so a kill never leaves a half-written checkpoint.
fn save_checkpoint(
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

/// Drops metric lines past `step` (written after the checkpoint a resume starts from).
fn truncate_metrics(path: &Path, step: usize) -> Result<(), TrainError> {
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

pub(crate) fn state_error(path: &Path, e: std::io::Error) -> TrainError {
    TrainError::State {
        path: path.to_path_buf(),
        message: e.to_string(),
    }
}

pub(crate) fn progress_bar(show: bool, total: u64, at: u64) -> indicatif::ProgressBar {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_order_is_a_seeded_permutation_per_epoch() {
        let a = epoch_order(10, 0, 3);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(10, 0, 3));
        assert_ne!(a, epoch_order(10, 1, 3));
        let mut c = DataCursor {
            epoch: 0,
            position: 0,
        };
        let first = next_examples(&mut c, 10, 7, 3);
        let second = next_examples(&mut c, 10, 7, 3);
        assert_eq!(first, a[..7].to_vec());
        assert_eq!(second[..3], a[7..]);
        assert_eq!(
            c,
            DataCursor {
                epoch: 1,
                position: 4
            }
        );
    }
}
