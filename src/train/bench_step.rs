//! Times the phases of one VPPO-shaped training step on a checkpoint: the scoring pass with the
//! image (kept on the gradient path), the scoring pass with the patch-blackened image, the loss
//! and its backward pass, and an AdamW update.
//!
//! Why: the step's cost decides how far training on one machine goes, and comparing each phase
//! with PyTorch on the same folder and shapes (`tools/bench_step/`) shows where candle loses
//! time. Every phase calls the code the trainer uses — [`Qwen25Vl::log_probs`], the
//! perturbation of [`super::perturb`], [`MiniBatchShaping`] and [`micro_batch_objective`] — so
//! the numbers are the trainer's, not a re-implementation's.
//!
//! The step is on-policy (one PPO epoch): the rollout log-probs are the first pass's values,
//! detached, so every ratio is 1, which costs the same as any other ratio.

use std::time::{Duration, Instant};

use candle_core::backprop::GradStore;
use candle_nn::{AdamW, Optimizer, ParamsAdamW};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::Serialize;

use super::grid::TokenGrid;
use super::objective::{micro_batch_objective, MiniBatch, MiniBatchShaping, ObjectiveConfig};
use super::perturb::Perturbation;
use super::TrainError;
use crate::model::{
    Checkpoint, ModelError, ProcessedImage, Qwen25VlConfig, ResponseLogProbs, ScoringRequest,
};

/// Errors of the step benchmark.
#[derive(Debug, thiserror::Error)]
pub enum BenchStepError {
    /// A setting cannot produce the requested shapes.
    #[error("bench-step: {0}")]
    Setting(String),
    /// Building inputs or running the model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The objective failed.
    #[error(transparent)]
    Train(#[from] TrainError),
    /// Backward pass or optimiser update failed.
    #[error("bench-step {phase}: {source}")]
    Tensor {
        phase: &'static str,
        #[source]
        source: candle_core::Error,
    },
}

fn tensor_err(phase: &'static str) -> impl FnOnce(candle_core::Error) -> BenchStepError {
    move |source| BenchStepError::Tensor { phase, source }
}

/// The shapes and repetitions of the benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct BenchStepConfig {
    /// Responses per step (one image each).
    pub batch: usize,
    /// Tokens per sequence, prompt (with its image tokens) plus response.
    pub seq: usize,
    /// Side of the square input image, in pixels (before the processor's resize).
    pub image_size: u32,
    /// Timed steps (after one untimed warm-up step).
    pub steps: usize,
    /// Seeds the images, response tokens, advantages and perturbations.
    pub seed: u64,
    /// AdamW learning rate (tiny, so repeated steps stay near the initial weights).
    pub learning_rate: f64,
}

impl Default for BenchStepConfig {
    fn default() -> Self {
        BenchStepConfig {
            batch: 32,
            seq: 96,
            image_size: 64,
            steps: 5,
            seed: 0,
            learning_rate: 1e-6,
        }
    }
}

/// The text of the benchmark's prompt (before the chat template); the PyTorch script uses the
/// same.
pub const PROMPT_TEXT: &str = "Describe the image.";

/// Median seconds of each phase over the timed steps.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseSeconds {
    /// `log_probs` with the original image, on the gradient path.
    pub score_image: f64,
    /// Patch-blackening every row's image, then `log_probs` with the perturbed images.
    pub score_perturbed: f64,
    /// TAS/TGF shaping, the PPO loss and `backward`.
    pub loss_backward: f64,
    /// One AdamW update of every parameter.
    pub optimizer: f64,
    /// The whole step (median of the per-step sums).
    pub step: f64,
}

/// The benchmark's result.
#[derive(Debug, Clone, Serialize)]
pub struct BenchStepReport {
    pub config: BenchStepConfig,
    /// Whether the fused kernels were on (off: the compositions, `--reference-ops`).
    pub fused_kernels: bool,
    /// Prompt tokens (image tokens included) and response tokens per row.
    pub prompt_tokens: usize,
    pub response_tokens: usize,
    /// Vision patches per image.
    pub image_patches: usize,
    pub parameters: usize,
    /// Model FLOPs of one step: two forward passes and one backward (counted as twice a
    /// forward), matrix products and attention only (see [`forward_flops`]).
    pub flops_per_step: f64,
    pub median_seconds: PhaseSeconds,
    /// `flops_per_step / median_seconds.step / 1e9`.
    pub gflops_per_second: f64,
}

/// Matrix-product FLOPs (2 per multiply-add) of one forward pass of `log_probs` over `batch`
/// rows of `seq` tokens with `response` response tokens and one image of `patches` patches
/// each. Attention is counted over full `seq x seq` (and per-image `patches x patches`) score
/// matrices, as PyTorch computes them (Spotlight's fused attention skips keys past a row's
/// length, so with padding its own count would be lower); elementwise work is left out.
pub fn forward_flops(
    cfg: &Qwen25VlConfig,
    batch: usize,
    seq: usize,
    response: usize,
    patches: usize,
) -> f64 {
    let t = &cfg.text;
    let (h, i, v) = (
        t.hidden_size as f64,
        t.intermediate_size as f64,
        t.vocab_size as f64,
    );
    let hd = t.head_dim() as f64;
    let (qh, kvh) = (
        t.num_attention_heads as f64 * hd,
        t.num_key_value_heads as f64 * hd,
    );
    let s = seq as f64;
    let per_token_layer = 2.0 * (h * qh + 2.0 * h * kvh + qh * h + 3.0 * h * i) + 4.0 * s * qh;
    let text = batch as f64 * s * t.num_hidden_layers as f64 * per_token_layer;
    let head = 2.0 * batch as f64 * response as f64 * h * v;

    let vc = &cfg.vision;
    let (vh, vi) = (vc.hidden_size as f64, vc.intermediate_size as f64);
    let p = patches as f64;
    let per_patch_block = 2.0 * (4.0 * vh * vh + 3.0 * vh * vi) + 4.0 * p * vh;
    let embed = 2.0 * vc.patch_dim() as f64 * vh;
    let m2 = (vc.spatial_merge_size * vc.spatial_merge_size) as f64;
    let merged = p / m2;
    let merger = merged * 2.0 * (m2 * vh * m2 * vh + m2 * vh * vc.out_hidden_size as f64);
    let vision = batch as f64 * (p * (vc.depth as f64 * per_patch_block + embed) + merger);
    text + head + vision
}

/// A seeded random RGB image.
fn random_image(size: u32, rng: &mut ChaCha20Rng) -> RgbImage {
    let mut img = RgbImage::new(size, size);
    for px in img.pixels_mut() {
        *px = image::Rgb([rng.random(), rng.random(), rng.random()]);
    }
    img
}

/// The inputs of every step: prompt, images (original and perturbed), responses, advantages.
struct StepInputs {
    prompt_ids: Vec<u32>,
    images: Vec<RgbImage>,
    responses: Vec<Vec<u32>>,
    advantages: Vec<f64>,
}

fn inputs(ckpt: &Checkpoint, cfg: &BenchStepConfig) -> Result<StepInputs, BenchStepError> {
    let mut rng = ChaCha20Rng::seed_from_u64(crate::seed::derive_seed(cfg.seed, "bench-step", 0));
    let images: Vec<RgbImage> = (0..cfg.batch)
        .map(|_| random_image(cfg.image_size, &mut rng))
        .collect();
    let first = ckpt
        .image_processor
        .preprocess(&image::DynamicImage::ImageRgb8(images[0].clone()))?;
    let prompt_ids = ckpt
        .prompt_builder()?
        .prompt_ids(None, PROMPT_TEXT, &[first.grid_thw])?;
    if prompt_ids.len() >= cfg.seq {
        return Err(BenchStepError::Setting(format!(
            "--seq {} leaves no room for a response after the {}-token prompt",
            cfg.seq,
            prompt_ids.len()
        )));
    }
    // ordinary tokens only: no added or special token (a tokenizer may keep its special
    // tokens inside the base vocabulary, where an `<|image_pad|>` in a response would make
    // the step measure something no rollout produces)
    let added: std::collections::HashSet<u32> = ckpt
        .tokenizer
        .get_added_tokens_decoder()
        .keys()
        .copied()
        .chain([
            ckpt.config.image_token_id,
            ckpt.config.video_token_id,
            ckpt.config.vision_start_token_id,
        ])
        .collect();
    let vocab = ckpt
        .tokenizer
        .get_vocab_size(true)
        .min(ckpt.config.text.vocab_size) as u32;
    let ordinary: Vec<u32> = (0..vocab).filter(|t| !added.contains(t)).collect();
    if ordinary.is_empty() {
        return Err(BenchStepError::Setting(
            "the tokenizer has no ordinary token to build responses from".into(),
        ));
    }
    let response_len = cfg.seq - prompt_ids.len();
    let responses = (0..cfg.batch)
        .map(|_| {
            (0..response_len)
                .map(|_| ordinary[rng.random_range(0..ordinary.len())])
                .collect()
        })
        .collect();
    let advantages = (0..cfg.batch)
        .map(|_| rng.random_range(-2.0..2.0))
        .collect();
    Ok(StepInputs {
        prompt_ids,
        images,
        responses,
        advantages,
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => 0.5 * (v[n / 2 - 1] + v[n / 2]),
    }
}

/// Time of each phase of one step.
#[derive(Debug, Clone, Copy)]
pub struct StepTimes {
    pub score_image: Duration,
    pub score_perturbed: Duration,
    pub loss_backward: Duration,
    pub optimizer: Duration,
}

/// The result of the first scoring pass: log-probs on the gradient path and their detached
/// values as the rollout log-probs.
pub struct Scored {
    pub current: ResponseLogProbs,
    pub old: TokenGrid,
    pub mask: TokenGrid,
}

/// One benchmark setup: inputs prepared once, an AdamW over every parameter; each phase a
/// method, so `benches/model_step.rs` can time them alone.
pub struct StepRunner<'a> {
    ckpt: &'a Checkpoint,
    cfg: BenchStepConfig,
    inputs: StepInputs,
    originals: Vec<ProcessedImage>,
    optimizer: AdamW,
    steps_done: usize,
}

impl<'a> StepRunner<'a> {
    pub fn new(ckpt: &'a Checkpoint, cfg: &BenchStepConfig) -> Result<Self, BenchStepError> {
        if cfg.batch == 0 || cfg.steps == 0 {
            return Err(BenchStepError::Setting(
                "--batch and --steps must be at least 1".to_string(),
            ));
        }
        let inputs = inputs(ckpt, cfg)?;
        let originals: Vec<ProcessedImage> = inputs
            .images
            .iter()
            .map(|img| {
                ckpt.image_processor
                    .preprocess(&image::DynamicImage::ImageRgb8(img.clone()))
            })
            .collect::<Result<_, _>>()?;
        let params = ParamsAdamW {
            lr: cfg.learning_rate,
            ..ParamsAdamW::default()
        };
        let optimizer =
            AdamW::new(ckpt.varmap.all_vars(), params).map_err(tensor_err("optimizer"))?;
        Ok(StepRunner {
            ckpt,
            cfg: cfg.clone(),
            inputs,
            originals,
            optimizer,
            steps_done: 0,
        })
    }

    /// Prompt tokens (with the image's) of every row.
    pub fn prompt_tokens(&self) -> usize {
        self.inputs.prompt_ids.len()
    }

    /// Vision patches of each image.
    pub fn image_patches(&self) -> usize {
        self.originals
            .first()
            .map_or(0, ProcessedImage::num_patches)
    }

    fn score(&self, images: &[ProcessedImage]) -> Result<ResponseLogProbs, BenchStepError> {
        let requests: Vec<ScoringRequest> = images
            .iter()
            .zip(&self.inputs.responses)
            .map(|(img, r)| ScoringRequest {
                prompt_ids: &self.inputs.prompt_ids,
                response_ids: r,
                images: vec![img],
            })
            .collect();
        Ok(self.ckpt.model.log_probs(&requests, 1.0)?)
    }

    /// Phase 1: the scoring pass whose graph the backward pass walks.
    pub fn score_image(&self) -> Result<Scored, BenchStepError> {
        let current = self.score(&self.originals)?;
        let old = TokenGrid::from_tensor("old_logprobs", &current.values.detach())?;
        let mask = TokenGrid::from_tensor("response_mask", &current.mask)?;
        Ok(Scored { current, old, mask })
    }

    /// Phase 2: patch-blacken each row's image (its own stream per step and row), preprocess
    /// and score; the values only (no gradient is needed).
    pub fn score_perturbed(&self) -> Result<TokenGrid, BenchStepError> {
        let step_id = format!("step-{}", self.steps_done);
        let perturbed: Vec<ProcessedImage> = self
            .inputs
            .images
            .iter()
            .enumerate()
            .map(|(row, img)| {
                let blackened =
                    Perturbation::PUBLISHED.apply_for_row(img, self.cfg.seed, &step_id, row as u32);
                self.ckpt
                    .image_processor
                    .preprocess(&image::DynamicImage::ImageRgb8(blackened))
            })
            .collect::<Result<_, _>>()?;
        let aug = self.score(&perturbed)?;
        Ok(TokenGrid::from_tensor(
            "aug_logprobs",
            &aug.values.detach(),
        )?)
    }

    /// Phase 3: TAS/TGF shaping, the VPPO loss and its backward pass.
    pub fn loss_backward(
        &self,
        scored: &Scored,
        aug: &TokenGrid,
    ) -> Result<GradStore, BenchStepError> {
        let shaping = MiniBatchShaping::new(
            &ObjectiveConfig::PUBLISHED_VPPO,
            &scored.mask,
            &scored.old,
            Some(aug),
        )?;
        let mini = MiniBatch {
            response_mask: &scored.mask,
            old_logprobs: &scored.old,
            advantages: &self.inputs.advantages,
            ref_logprobs: None,
            shaping: &shaping,
            mini_batch_tokens: shaping.response_tokens(),
        };
        let objective = micro_batch_objective(
            &ObjectiveConfig::PUBLISHED_VPPO,
            &mini,
            0..self.cfg.batch,
            &scored.current.values,
        )?;
        objective
            .weighted_loss
            .backward()
            .map_err(tensor_err("backward"))
    }

    /// Phase 4: one AdamW update.
    pub fn update(&mut self, grads: &GradStore) -> Result<(), BenchStepError> {
        self.optimizer
            .step(grads)
            .map_err(tensor_err("optimizer"))?;
        self.steps_done += 1;
        Ok(())
    }

    /// One whole step, timed phase by phase.
    pub fn step(&mut self) -> Result<StepTimes, BenchStepError> {
        let t0 = Instant::now();
        let scored = self.score_image()?;
        let t1 = Instant::now();
        let aug = self.score_perturbed()?;
        let t2 = Instant::now();
        let grads = self.loss_backward(&scored, &aug)?;
        let t3 = Instant::now();
        self.update(&grads)?;
        drop(grads);
        let t4 = Instant::now();
        Ok(StepTimes {
            score_image: t1 - t0,
            score_perturbed: t2 - t1,
            loss_backward: t3 - t2,
            optimizer: t4 - t3,
        })
    }
}

/// Runs `cfg.steps + 1` steps (the first untimed) on `ckpt`, updating its weights in memory.
pub fn bench_step(
    ckpt: &Checkpoint,
    cfg: &BenchStepConfig,
) -> Result<BenchStepReport, BenchStepError> {
    let mut runner = StepRunner::new(ckpt, cfg)?;
    let mut times: [Vec<f64>; 5] = Default::default();
    for step in 0..=cfg.steps {
        let t = runner.step()?;
        if step > 0 {
            let total = t.score_image + t.score_perturbed + t.loss_backward + t.optimizer;
            let phases = [
                t.score_image,
                t.score_perturbed,
                t.loss_backward,
                t.optimizer,
                total,
            ];
            for (acc, d) in times.iter_mut().zip(phases) {
                acc.push(d.as_secs_f64());
            }
        }
    }
    let [a, b, c, d, e] = times.map(median);
    let median_seconds = PhaseSeconds {
        score_image: a,
        score_perturbed: b,
        loss_backward: c,
        optimizer: d,
        step: e,
    };
    let response_tokens = cfg.seq - runner.prompt_tokens();
    let image_patches = runner.image_patches();
    let flops_per_step = 4.0
        * forward_flops(
            &ckpt.config,
            cfg.batch,
            cfg.seq,
            response_tokens,
            image_patches,
        );
    Ok(BenchStepReport {
        config: cfg.clone(),
        fused_kernels: crate::model::ops::fused_kernels(),
        prompt_tokens: runner.prompt_tokens(),
        response_tokens,
        image_patches,
        parameters: ckpt.parameter_count()?,
        flops_per_step,
        gflops_per_second: flops_per_step / median_seconds.step / 1e9,
        median_seconds,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(vec![4.0, 1.0, 3.0, 2.0]), 2.5);
    }
}
