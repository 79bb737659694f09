//! The RL loop of `../shared/spec/vppo.md`, composed from its stages, one module each:
//! [`rollout`](super::rollout) (sample G responses per prompt, reward them, keep groups by
//! online filtering), [`scoring`](super::scoring) (the rollout policy's log-probs on the
//! original and on a perturbed image), [`update`](super::update) (GRPO advantages, the PPO
//! objective with TAS and TGF in mini- and micro-batches, AdamW), and around them
//! [`data`](super::data), [`checkpoint`](super::checkpoint), [`schedule`](super::schedule),
//! [`metrics`](super::metrics) and the stored [`plan`](super::plan).
//!
//! Every random draw derives from (run seed, item, sample, step): the data order of each epoch,
//! each response's sampling stream, each row's perturbation mask. With the weights, the AdamW
//! moments and the data cursor saved in each checkpoint, `--resume` therefore continues exactly
//! where an uninterrupted run would be — same weights and same metrics, timings aside.
//!
//! What is not yet the reference's: a sampling round draws only as many new prompts as the
//! batch still lacks (the reference draws a full rollout batch per round and truncates). The
//! update lays rows out as the reference does ([`layout`](super::layout)): length-balanced over
//! the recipe's workers, mini-batches split without shuffling (VPPO-RL's `dp_actor` splits, it
//! does not shuffle).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

use candle_core::Var;

use super::checkpoint::{self, TrainerState, OPTIMIZER_FILE};
use super::data::{load_examples, DataCursor, Example};
use super::metrics::{progress_bar, MetricsLog, PhaseTimes, StepMetrics, METRICS_FILE};
use super::optim::AdamW;
use super::plan::{RulesRecord, TrainKind, TrainPlan};
use super::recipe::TrainRecipe;
use super::rollout::{self, Rewarder};
use super::update::{self, UpdateInputs};
use super::{schedule, scoring, TrainError};
use crate::bench::{DataSource, Registry};
use crate::model::{Checkpoint, ProcessedImage};
use crate::run_folder::{sha256_file, FileRecord, ModelFingerprint};

/// Everything a run needs, resolved by the CLI.
pub struct RunConfig {
    pub recipe: TrainRecipe,
    pub recipe_path: PathBuf,
    /// `--set` as given (the plan records them; their effect is in `recipe`).
    pub overrides: Vec<String>,
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
    /// `--dump-step N DIR`: write step N's rows, layout and TAS scales to
    /// `DIR/tas-layout-step-N.jsonl` (`debug tas-layout`'s format).
    pub dump_step: Option<(usize, PathBuf)>,
    /// Accuracy (the recipe's rule set) and, when weighted, format rewards.
    pub rewarder: Rewarder,
    /// The rule sets behind `rewarder`, as the plan records them.
    pub rules: Vec<RulesRecord>,
}

/// What a run produced.
pub struct TrainOutcome {
    pub steps_done: usize,
    pub last: Option<StepMetrics>,
    pub checkpoints: Vec<PathBuf>,
}

/// The examples a run trains and validates on, with the files they came from.
struct RunData {
    train: Vec<Example>,
    validation: Vec<Example>,
    train_files: Vec<FileRecord>,
    validation_files: Vec<FileRecord>,
}

/// Runs (or resumes) training.
pub fn train(cfg: &RunConfig, registry: &Registry) -> Result<TrainOutcome, TrainError> {
    let recipe = &cfg.recipe;
    check_dump_step(cfg, None)?;
    std::fs::create_dir_all(&cfg.out).map_err(|e| checkpoint::state_error(&cfg.out, e))?;
    let (model_dir, state) = checkpoint::starting_point(&cfg.out, &cfg.init, cfg.resume)?;
    // the checkpoint's processor keeps its own bounds (the recipe's bound the first resize)
    // and runs as the recipe's implementation
    let mut ckpt = Checkpoint::load(&model_dir)?;
    ckpt.image_processor.kind = recipe.image.processor;
    let data = run_data(cfg, registry, &ckpt)?;
    // The KL term's frozen reference is the init checkpoint (also on resume, where `ckpt` is
    // the last saved one), loaded once with the same processor bounds.
    let reference = if recipe.objective.kl_coef > 0.0 {
        Some(Checkpoint::load(&cfg.init)?)
    } else {
        None
    };
    plan(cfg, registry, &data)?.check_or_store(&cfg.out, state.is_some())?;
    let params = checkpoint::named_vars(&ckpt)?;
    let mut optimizer = AdamW::new(
        recipe.optim.lr,
        recipe.optim.betas,
        recipe.optim.weight_decay,
    );
    let (mut step, mut cursor, mut skipped) = match &state {
        Some(s) => {
            optimizer.load(&model_dir.join(OPTIMIZER_FILE), s.optimizer_steps, &params)?;
            (s.step, s.cursor, s.skipped_steps)
        }
        None => (0, DataCursor::default(), 0),
    };
    let mut log = MetricsLog::open(&cfg.out.join(METRICS_FILE), step)?;
    let total = total_steps(cfg, data.train.len())?;
    check_dump_step(cfg, Some(total))?;
    let bar = progress_bar(cfg.progress, total as u64, step as u64);
    let (mut checkpoints, mut last) = (Vec::new(), None);
    while step < total {
        step += 1;
        let started = Instant::now();
        let mut m = run_step(
            cfg,
            (&ckpt, reference.as_ref()),
            &params,
            &mut optimizer,
            &data.train,
            &mut cursor,
            step,
        )?;
        skipped += usize::from(!m.grad_norm.is_finite());
        m.skipped_steps = skipped;
        let every = recipe.validation.every_steps;
        if !data.validation.is_empty() && every > 0 && step % every == 0 {
            let t = Instant::now();
            m.validation_avg_at_k = Some(validate(cfg, &ckpt, &data.validation)?);
            m.time_s.validation = t.elapsed().as_secs_f64();
        }
        m.time_s.total = started.elapsed().as_secs_f64();
        log.append(&m)?;
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
            checkpoints.push(checkpoint::save_checkpoint(
                &cfg.out, &ckpt, &optimizer, &state,
            )?);
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

/// Reads the training and validation examples.
fn run_data(
    cfg: &RunConfig,
    registry: &Registry,
    ckpt: &Checkpoint,
) -> Result<RunData, TrainError> {
    let max_prompt = cfg.recipe.rollout.max_prompt_tokens;
    let train = load_examples(
        registry,
        &cfg.bench,
        ckpt,
        cfg.recipe.image.pre_resize(),
        &cfg.train_data,
        max_prompt,
        usize::MAX,
    )?;
    if train.examples.is_empty() {
        return Err(TrainError::Usage("no usable training items".into()));
    }
    let validation = match &cfg.val_data {
        Some(source) if cfg.recipe.validation.every_steps > 0 => Some(load_examples(
            registry,
            &cfg.bench,
            ckpt,
            cfg.recipe.image.pre_resize(),
            source,
            max_prompt,
            cfg.val_items,
        )?),
        _ => None,
    };
    let (validation, validation_files) = match validation {
        Some(v) => (v.examples, hash_files(&v.files)?),
        None => (Vec::new(), Vec::new()),
    };
    Ok(RunData {
        train_files: hash_files(&train.files)?,
        train: train.examples,
        validation,
        validation_files,
    })
}

/// Content hashes of the files a run reads.
pub(crate) fn hash_files(files: &[PathBuf]) -> Result<Vec<FileRecord>, TrainError> {
    files
        .iter()
        .map(|f| sha256_file(f).map_err(TrainError::from))
        .collect()
}

/// The plan of this run as the command line describes it.
fn plan(cfg: &RunConfig, registry: &Registry, data: &RunData) -> Result<TrainPlan, TrainError> {
    Ok(TrainPlan {
        kind: TrainKind::Rl,
        recipe_path: cfg.recipe_path.display().to_string(),
        recipe: serde_json::to_value(&cfg.recipe).map_err(|e| TrainError::Usage(e.to_string()))?,
        overrides: cfg.overrides.clone(),
        bench: cfg.bench.clone(),
        manifest_sha256: crate::run_folder::manifest_sha256(registry.get(&cfg.bench)?),
        rules: cfg.rules.clone(),
        data: data.train_files.clone(),
        validation_data: data.validation_files.clone(),
        validation_items: data.validation.len(),
        init: ModelFingerprint::of(&cfg.init)?,
        seed: cfg.seed,
        spotlight_version: crate::VERSION.to_string(),
    })
}

/// One training step: rollout, scoring, update; returns its metrics (skipped-step count,
/// validation and the total time are filled in by the loop).
fn run_step(
    cfg: &RunConfig,
    (ckpt, reference): (&Checkpoint, Option<&Checkpoint>),
    params: &BTreeMap<String, Var>,
    optimizer: &mut AdamW,
    examples: &[Example],
    cursor: &mut DataCursor,
    step: usize,
) -> Result<StepMetrics, TrainError> {
    let recipe = &cfg.recipe;
    let mut times = PhaseTimes::default();
    let t = Instant::now();
    let batch = rollout::rollout(
        ckpt,
        recipe,
        examples,
        cursor,
        cfg.seed,
        step,
        &cfg.rewarder,
    )?;
    times.rollout = t.elapsed().as_secs_f64();

    let rows = &batch.rows;
    let temperature = recipe.rollout.temperature;
    let micro = recipe.batch.micro_batch_responses.max(1);
    let width = rows.iter().map(|r| r.tokens.len()).max().unwrap_or(0);
    let images: Vec<Vec<&ProcessedImage>> = rows
        .iter()
        .map(|r| examples[r.example].images.iter().collect())
        .collect();
    let t = Instant::now();
    let old = scoring::score_rows(ckpt, examples, rows, &images, temperature, micro, width)?;
    times.old_logprobs = t.elapsed().as_secs_f64();
    let perturbed = if recipe.objective.needs_perception() {
        let t = Instant::now();
        let perturbed =
            scoring::perturbed_images(ckpt, examples, rows, &recipe.perturbation, cfg.seed, step)?;
        let refs: Vec<Vec<&ProcessedImage>> =
            perturbed.iter().map(|p| p.iter().collect()).collect();
        let grid = scoring::score_rows(ckpt, examples, rows, &refs, temperature, micro, width)?;
        times.perturbed_logprobs = t.elapsed().as_secs_f64();
        Some(grid)
    } else {
        None
    };

    let reference = match reference {
        Some(r) => {
            let t = Instant::now();
            let grid = scoring::score_rows(r, examples, rows, &images, temperature, micro, width)?;
            times.reference_logprobs = t.elapsed().as_secs_f64();
            Some(grid)
        }
        None => None,
    };

    let t = Instant::now();
    let lr = schedule::warmup_lr(recipe.optim.lr, recipe.optim.warmup_steps, step);
    let inputs = UpdateInputs {
        examples,
        rows,
        images: &images,
        old: &old,
        perturbed: perturbed.as_ref(),
        reference: reference.as_ref(),
        width,
    };
    let stats = update::update(ckpt, params, optimizer, recipe, &inputs, lr)?;
    times.update = t.elapsed().as_secs_f64();
    if let Some((_, dir)) = cfg.dump_step.as_ref().filter(|(n, _)| *n == step) {
        dump_tas_layout(dir, step, recipe, &inputs, &stats)?;
    }
    let g = recipe.rollout.responses_per_prompt;
    Ok(StepMetrics::summarise(
        step,
        cursor.epoch,
        g,
        &batch,
        &stats,
        lr,
        times,
    ))
}

/// The run's length in steps: the reference's drop_last count, or `--steps`.
fn total_steps(cfg: &RunConfig, items: usize) -> Result<usize, TrainError> {
    let b = &cfg.recipe.batch;
    schedule::rl_total_steps(
        items,
        b.prompts_per_step,
        cfg.recipe.optim.epochs,
        cfg.steps,
    )
    .ok_or_else(|| {
        TrainError::Usage(format!(
            "{items} training items fill no rollout batch of batch.prompts_per_step = {} \
                 (the reference drops the last partial batch); use more data, fewer prompts \
                 per step, or --steps",
            b.prompts_per_step
        ))
    })
}

/// `--dump-step N` needs a recipe with TAS and a step of the run (checked against `total`
/// once it is known).
fn check_dump_step(cfg: &RunConfig, total: Option<usize>) -> Result<(), TrainError> {
    let Some((n, _)) = &cfg.dump_step else {
        return Ok(());
    };
    let o = &cfg.recipe.objective;
    if !(o.tas && o.needs_perception()) {
        return Err(TrainError::Usage(format!(
            "--dump-step writes the TAS layout, but recipe {} has no TAS (objective.tas = false)",
            cfg.recipe.name
        )));
    }
    if *n == 0 {
        return Err(TrainError::Usage("--dump-step counts steps from 1".into()));
    }
    match total {
        Some(total) if *n > total => Err(TrainError::Usage(format!(
            "--dump-step {n}: the run has {total} steps"
        ))),
        _ => Ok(()),
    }
}

/// Writes `DIR/tas-layout-step-N.jsonl`: one `debug tas-layout` case holding the step's
/// rows and, as `expected`, the layout and scales the update used.
fn dump_tas_layout(
    dir: &Path,
    step: usize,
    recipe: &TrainRecipe,
    inputs: &UpdateInputs,
    stats: &update::UpdateStats,
) -> Result<(), TrainError> {
    let id = serde_json::Value::from(format!("{}-step-{step}", recipe.name));
    let case = update::tas_layout_case(recipe, inputs, stats, id)
        .ok_or_else(|| TrainError::Usage(format!("step {step} has no TAS scales to dump")))?;
    let path = dir.join(format!("tas-layout-step-{step}.jsonl"));
    let mut line = serde_json::to_vec(&case).map_err(|e| TrainError::Usage(e.to_string()))?;
    line.push(b'\n');
    crate::atomic_file::write_atomic(&path, |w| std::io::Write::write_all(w, &line))
        .map_err(|e| checkpoint::state_error(&path, e))
}

/// In-training validation samples at the validation temperature with the rollout's top-p
/// (0.99 in the published recipes), as the reference's `val_override_config` leaves it.
pub fn validation_sampling(
    recipe: &TrainRecipe,
    ckpt: &Checkpoint,
) -> crate::model::SamplingParams {
    rollout::validation_params(
        ckpt,
        recipe.validation.temperature,
        recipe.rollout.top_p,
        recipe.rollout.max_response_tokens,
    )
}

/// Validation avg@k (%): each held-out item sampled `samples_per_item` times with the same
/// seeds at every validation, so points on the curve differ only by the weights.
fn validate(cfg: &RunConfig, ckpt: &Checkpoint, examples: &[Example]) -> Result<f64, TrainError> {
    let v = &cfg.recipe.validation;
    let params = validation_sampling(&cfg.recipe, ckpt);
    rollout::avg_at_k(
        ckpt,
        examples,
        &cfg.rewarder.accuracy,
        v.samples_per_item,
        &params,
        cfg.seed,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_samples_with_the_rollouts_top_p() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ckpt = Checkpoint::load(&root.join("tests/fixtures/qwen25vl/tiny")).unwrap();
        let recipe = TrainRecipe::load(&root.join("recipes/vppo.toml")).unwrap();
        let params = validation_sampling(&recipe, &ckpt);
        assert_eq!(params.top_p, 0.99);
        assert_eq!(params.temperature, recipe.validation.temperature);
        assert_eq!(params.top_k, 0);
    }
}
