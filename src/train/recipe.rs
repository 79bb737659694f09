//! Training recipes: everything that defines a run of GRPO, DAPO or VPPO, as TOML that users
//! can read, copy and edit without recompiling (`recipes/*.toml`).
//!
//! A recipe is parsed in two stages, as ripgrep does with its flags: serde reads the file
//! (unknown fields are errors, so a typo such as `cilp_high` cannot silently fall back to a
//! default — there are no defaults), then [`TrainRecipe::validate`] checks ranges and
//! consistency and names the offending field.
//!
//! The algorithm is named explicitly (`algorithm = "vppo"`): the reference's launch script
//! says `adv_estimator: grpo` for VPPO, which confused its users (GRPO advantages are used by
//! all three algorithms).

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::objective::ObjectiveConfig;
use super::perturb::Perturbation;
use super::TrainError;

/// The policy-optimisation algorithm a recipe runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// PPO-clip with GRPO advantages; symmetric clip, no filtering, no entropy term.
    Grpo,
    /// GRPO + clip-higher, online filtering, token-mean loss, entropy term.
    Dapo,
    /// DAPO + Trajectory Advantage Shaping and/or Token-level Gradient Filtering.
    Vppo,
}

impl Algorithm {
    /// The name used in recipes and logs.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Grpo => "grpo",
            Algorithm::Dapo => "dapo",
            Algorithm::Vppo => "vppo",
        }
    }
}

/// A complete training recipe.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainRecipe {
    /// Short name of the recipe (shown in logs and run folders).
    pub name: String,
    /// What the recipe is for and where its values come from.
    pub description: String,
    /// Which algorithm: grpo, dapo or vppo.
    pub algorithm: Algorithm,
    pub rollout: RolloutSection,
    pub filtering: FilteringSection,
    pub reward: RewardSection,
    pub objective: ObjectiveConfig,
    pub perturbation: Perturbation,
    pub optim: OptimSection,
    pub batch: BatchSection,
    pub image: ImageSection,
    pub validation: ValidationSection,
}

/// Sampling of the G responses per prompt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RolloutSection {
    /// G: responses sampled per prompt (at least 2 for GRPO advantages).
    pub responses_per_prompt: usize,
    /// Sampling temperature; log-probs divide the logits by it too.
    pub temperature: f64,
    /// Nucleus sampling threshold.
    pub top_p: f64,
    /// Prompts longer than this (in tokens, image included) are skipped.
    pub max_prompt_tokens: usize,
    /// Responses stop after this many tokens.
    pub max_response_tokens: usize,
}

/// DAPO's dynamic sampling: keep only groups whose mean accuracy is strictly between the
/// bounds, and keep sampling until the batch is full.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilteringSection {
    /// Online filtering on/off.
    pub enabled: bool,
    /// Groups with mean accuracy <= this are dropped.
    pub accuracy_low: f64,
    /// Groups with mean accuracy >= this are dropped.
    pub accuracy_high: f64,
    /// Give up (with an error) after this many sampling rounds for one batch.
    pub max_sampling_rounds: usize,
}

/// How responses are scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardSection {
    /// Name of the reward rule set (`reward_rules/<name>.toml`).
    pub rules: String,
    /// Weight of the format reward: overall = (1 - w) accuracy + w format (0: accuracy only).
    pub format_weight: f64,
}

/// Optimiser and schedule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OptimSection {
    /// AdamW learning rate.
    pub lr: f64,
    /// AdamW decoupled weight decay.
    pub weight_decay: f64,
    /// AdamW beta1, beta2.
    pub betas: [f64; 2],
    /// Linear warm-up steps (0: none).
    pub warmup_steps: usize,
    /// Gradient norm clip; a non-finite norm skips the step.
    pub max_grad_norm: f64,
    /// Passes over the training set.
    pub epochs: usize,
    /// PPO epochs per rollout batch.
    pub ppo_epochs: usize,
}

/// Batch sizes. The reference counts the rollout batch and the mini-batch in prompts and
/// multiplies by G for responses.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BatchSection {
    /// Kept prompts (groups) per training step.
    pub prompts_per_step: usize,
    /// Prompts per optimiser step (mini-batch); each has G responses.
    pub mini_batch_prompts: usize,
    /// Responses per forward/backward pass on one worker (micro-batch); TAS takes `mu` over
    /// it (the reference's `micro_batch_size_per_device_for_update`, 16 in the 7B script).
    pub micro_batch_responses: usize,
    /// Data-parallel workers the rows are laid out over (8 in the published runs). One process
    /// plays them all; the number matters because TAS takes its range per worker mini-batch.
    pub world_size: usize,
    /// Length-balance the rows across workers before the update, as the reference always does.
    #[serde(default = "default_true")]
    pub balance: bool,
}

fn default_true() -> bool {
    true
}

/// The pixel bounds of the training images' first resize (EasyR1's `process_image`, the
/// reference's `data.min_pixels` / `data.max_pixels`). The checkpoint's processor then runs at
/// its own bounds, as in the reference.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSection {
    pub min_pixels: usize,
    pub max_pixels: usize,
    /// Which of transformers' image processors to reproduce: `fast` (the default) is what
    /// VPPO-RL's trainer loads (`use_fast=True`), `slow` the PIL one.
    #[serde(default = "fast_processor")]
    pub processor: crate::model::ProcessorKind,
}

fn fast_processor() -> crate::model::ProcessorKind {
    crate::model::ProcessorKind::Fast
}

impl ImageSection {
    /// The image pipeline in front of the processor for training and validation data.
    pub fn pre_resize(&self) -> crate::model::PreResize {
        crate::model::PreResize::Easyr1 {
            min_pixels: self.min_pixels as u64,
            max_pixels: self.max_pixels as u64,
        }
    }
}

/// Held-out evaluation during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ValidationSection {
    /// Validate every this many steps (0: never).
    pub every_steps: usize,
    /// Samples per item for avg@k.
    pub samples_per_item: usize,
    /// Sampling temperature for validation.
    pub temperature: f64,
}

/// Reads a TOML file into `T` after applying `section.key=value` overrides (values in TOML
/// syntax; a bare word is taken as a string). A key that is not in the file is refused, so a
/// misspelt override cannot be silently ignored.
pub fn load_toml_with_overrides<T: serde::de::DeserializeOwned>(
    path: &Path,
    overrides: &[String],
) -> Result<T, TrainError> {
    let text = std::fs::read_to_string(path).map_err(|source| TrainError::RecipeIo {
        path: path.to_path_buf(),
        source,
    })?;
    let parse_error = |message: String| TrainError::RecipeParse {
        path: path.to_path_buf(),
        message,
    };
    let mut doc: toml::Table = toml::from_str(&text).map_err(|e| parse_error(e.to_string()))?;
    for o in overrides {
        let (key, raw) = o
            .split_once('=')
            .ok_or_else(|| parse_error(format!("override {o:?} is not KEY=VALUE")))?;
        let value: toml::Value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.to_string()));
        let mut parts: Vec<&str> = key.trim().split('.').collect();
        let last = parts.pop().unwrap_or_default();
        let mut table = &mut doc;
        for part in parts {
            table = table
                .get_mut(part)
                .and_then(toml::Value::as_table_mut)
                .ok_or_else(|| parse_error(format!("override {o:?}: no section `{part}`")))?;
        }
        if !table.contains_key(last) {
            return Err(parse_error(format!(
                "override {o:?}: no field `{last}` there"
            )));
        }
        table.insert(last.to_string(), value);
    }
    doc.try_into()
        .map_err(|e: toml::de::Error| parse_error(e.to_string()))
}

/// A failed recipe check: the field and why.
type Check = Result<(), (String, String)>;

fn fail(field: &str, reason: String) -> Check {
    Err((field.to_string(), reason))
}

impl TrainRecipe {
    /// Reads and validates a recipe file.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|source| TrainError::RecipeIo {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(&text, path)
    }

    /// Reads a recipe file, applies `section.key=value` overrides (values in TOML syntax; a
    /// bare word is taken as a string), then validates: e.g. `batch.prompts_per_step=2` for a
    /// smoke run without a second recipe file. Unknown keys are refused like misspelt fields.
    pub fn load_with_overrides(path: &Path, overrides: &[String]) -> Result<Self, TrainError> {
        let recipe: TrainRecipe = load_toml_with_overrides(path, overrides)?;
        recipe.validate(path)?;
        Ok(recipe)
    }

    /// Parses and validates recipe text; `path` is only used in error messages.
    pub fn parse(text: &str, path: &Path) -> Result<Self, TrainError> {
        let recipe: TrainRecipe = toml::from_str(text).map_err(|e| TrainError::RecipeParse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        recipe.validate(path)?;
        Ok(recipe)
    }

    /// Checks ranges and that the switches match the named algorithm.
    pub fn validate(&self, path: &Path) -> Result<(), TrainError> {
        self.check_objective()
            .and_then(|()| self.check_rollout())
            .and_then(|()| self.check_filtering_and_reward())
            .and_then(|()| self.check_optim())
            .and_then(|()| self.check_batch())
            .and_then(|()| self.check_image_and_validation())
            .map_err(|(field, reason)| TrainError::RecipeInvalid {
                path: PathBuf::from(path),
                field,
                reason,
            })
    }

    /// The objective's ranges, the switches against the named algorithm, the perturbation.
    fn check_objective(&self) -> Check {
        if let Err(TrainError::BadSetting {
            field,
            value,
            reason,
        }) = self.objective.validate()
        {
            return fail(&format!("objective.{field}"), format!("{value}: {reason}"));
        }
        let o = &self.objective;
        match self.algorithm {
            Algorithm::Grpo | Algorithm::Dapo if o.tas || o.tgf => {
                return fail(
                    "objective.tas/tgf",
                    format!(
                        "{} does not use TAS or TGF; name the algorithm `vppo` to use them",
                        self.algorithm.name()
                    ),
                );
            }
            Algorithm::Vppo if !(o.tas || o.tgf) => {
                return fail(
                    "objective.tas/tgf",
                    "vppo needs TAS or TGF (or both); without them it is dapo".to_string(),
                );
            }
            _ => {}
        }
        if let Err(TrainError::BadPerturbation { kind, reason }) = self.perturbation.validate() {
            return fail("perturbation", format!("{kind}: {reason}"));
        }
        Ok(())
    }

    /// Sampling settings.
    fn check_rollout(&self) -> Check {
        let r = &self.rollout;
        if r.responses_per_prompt < 2 {
            return fail(
                "rollout.responses_per_prompt",
                format!(
                    "{}: GRPO advantages need at least 2",
                    r.responses_per_prompt
                ),
            );
        }
        if !(r.temperature > 0.0 && r.temperature.is_finite()) {
            return fail(
                "rollout.temperature",
                format!("{}: must be > 0", r.temperature),
            );
        }
        if !(r.top_p > 0.0 && r.top_p <= 1.0) {
            return fail("rollout.top_p", format!("{}: must be in (0, 1]", r.top_p));
        }
        if r.max_prompt_tokens == 0 || r.max_response_tokens == 0 {
            return fail(
                "rollout.max_prompt_tokens/max_response_tokens",
                "must be > 0".to_string(),
            );
        }
        Ok(())
    }

    /// Online filtering bounds and the reward.
    fn check_filtering_and_reward(&self) -> Check {
        let f = &self.filtering;
        if !(0.0 <= f.accuracy_low && f.accuracy_low < f.accuracy_high && f.accuracy_high <= 1.0) {
            return fail(
                "filtering.accuracy_low/accuracy_high",
                format!(
                    "{} / {}: need 0 <= low < high <= 1",
                    f.accuracy_low, f.accuracy_high
                ),
            );
        }
        if f.max_sampling_rounds == 0 {
            return fail("filtering.max_sampling_rounds", "must be >= 1".to_string());
        }
        if !(0.0..=1.0).contains(&self.reward.format_weight) {
            return fail(
                "reward.format_weight",
                format!("{}: must be in [0, 1]", self.reward.format_weight),
            );
        }
        if self.reward.rules.trim().is_empty() {
            return fail("reward.rules", "must name a reward rule set".to_string());
        }
        Ok(())
    }

    /// Optimizer settings.
    fn check_optim(&self) -> Check {
        let p = &self.optim;
        if !(p.lr > 0.0 && p.lr.is_finite()) {
            return fail("optim.lr", format!("{}: must be > 0", p.lr));
        }
        if !(p.weight_decay >= 0.0 && p.weight_decay.is_finite()) {
            return fail(
                "optim.weight_decay",
                format!("{}: must be >= 0", p.weight_decay),
            );
        }
        if !p.betas.iter().all(|b| (0.0..1.0).contains(b)) {
            return fail(
                "optim.betas",
                format!("{:?}: each must be in [0, 1)", p.betas),
            );
        }
        if !(p.max_grad_norm > 0.0 && p.max_grad_norm.is_finite()) {
            return fail(
                "optim.max_grad_norm",
                format!("{}: must be > 0", p.max_grad_norm),
            );
        }
        if p.epochs == 0 || p.ppo_epochs == 0 {
            return fail("optim.epochs/ppo_epochs", "must be >= 1".to_string());
        }
        Ok(())
    }

    /// Batch sizes and the row layout over workers.
    fn check_batch(&self) -> Check {
        let b = &self.batch;
        if b.prompts_per_step == 0 || b.mini_batch_prompts == 0 || b.micro_batch_responses == 0 {
            return fail("batch", "every batch size must be >= 1".to_string());
        }
        if b.prompts_per_step % b.mini_batch_prompts != 0 {
            return fail(
                "batch.mini_batch_prompts",
                format!(
                    "{} does not divide prompts_per_step = {}",
                    b.mini_batch_prompts, b.prompts_per_step
                ),
            );
        }
        let mini_responses = b.mini_batch_prompts * self.rollout.responses_per_prompt;
        if b.world_size == 0 || mini_responses % b.world_size != 0 {
            return fail(
                "batch.world_size",
                format!(
                    "{} does not divide the mini-batch's {mini_responses} responses",
                    b.world_size
                ),
            );
        }
        let per_worker = mini_responses / b.world_size;
        if per_worker % b.micro_batch_responses != 0 {
            return fail(
                "batch.micro_batch_responses",
                format!(
                    "{} does not divide a worker's {per_worker} responses of each mini-batch \
                     ({mini_responses} over world_size {})",
                    b.micro_batch_responses, b.world_size
                ),
            );
        }
        Ok(())
    }

    /// Image bounds and in-training validation.
    fn check_image_and_validation(&self) -> Check {
        if self.image.min_pixels == 0 || self.image.min_pixels > self.image.max_pixels {
            return fail(
                "image.min_pixels/max_pixels",
                format!(
                    "{} / {}: need 0 < min <= max",
                    self.image.min_pixels, self.image.max_pixels
                ),
            );
        }
        if self.validation.samples_per_item == 0 {
            return fail("validation.samples_per_item", "must be >= 1".to_string());
        }
        if !(self.validation.temperature > 0.0 && self.validation.temperature.is_finite()) {
            return fail(
                "validation.temperature",
                format!("{}: must be > 0", self.validation.temperature),
            );
        }
        Ok(())
    }

    /// Responses per mini-batch (`mini_batch_prompts * G`).
    pub fn mini_batch_responses(&self) -> usize {
        self.batch.mini_batch_prompts * self.rollout.responses_per_prompt
    }
}

#[cfg(test)]
mod override_tests {
    use super::*;

    #[test]
    fn overrides_replace_fields_and_refuse_unknown_ones() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes/synth-vppo.toml");
        let r = TrainRecipe::load_with_overrides(
            &path,
            &[
                "batch.prompts_per_step=2".into(),
                "batch.mini_batch_prompts=2".into(),
                "batch.world_size=4".into(),
                "filtering.enabled=false".into(),
            ],
        )
        .unwrap();
        assert_eq!(r.batch.prompts_per_step, 2);
        assert!(!r.filtering.enabled);
        let e = TrainRecipe::load_with_overrides(&path, &["batch.prompts_per_stp=2".into()])
            .unwrap_err()
            .to_string();
        assert!(e.contains("prompts_per_stp"), "{e}");
        assert!(TrainRecipe::load_with_overrides(&path, &["nosuch.x=1".into()]).is_err());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECIPE: &str = r#"
name = "t"
description = "test"
algorithm = "vppo"
[rollout]
responses_per_prompt = 4
temperature = 1.0
top_p = 1.0
max_prompt_tokens = 64
max_response_tokens = 32
[filtering]
enabled = true
accuracy_low = 0.01
accuracy_high = 0.99
max_sampling_rounds = 5
[reward]
rules = "mathruler"
format_weight = 0.0
[objective]
clip_low = 0.2
clip_high = 0.28
clip_dual = 3.0
rho = 0.4
beta_min = 0.9
entropy_coef = 0.06
tas = true
tgf = true
kl_coef = 0.0
[perturbation]
kind = "patch_blackening"
patch_size = 14
probability = 0.5
[optim]
lr = 1e-6
weight_decay = 1e-2
betas = [0.9, 0.999]
warmup_steps = 0
max_grad_norm = 1.0
epochs = 1
ppo_epochs = 1
[batch]
prompts_per_step = 4
mini_batch_prompts = 2
micro_batch_responses = 4
world_size = 1
[image]
min_pixels = 3136
max_pixels = 12544
[validation]
every_steps = 5
samples_per_item = 8
temperature = 1.0
"#;

    fn parse(text: &str) -> Result<TrainRecipe, TrainError> {
        TrainRecipe::parse(text, Path::new("recipes/t.toml"))
    }

    #[test]
    fn a_complete_recipe_parses() {
        let r = parse(RECIPE).unwrap();
        assert_eq!(r.algorithm, Algorithm::Vppo);
        assert_eq!(r.mini_batch_responses(), 8);
    }

    #[test]
    fn a_misspelt_field_is_an_error_naming_the_file_and_field() {
        let err = parse(&RECIPE.replace("clip_high", "cilp_high"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("recipes/t.toml") && err.contains("cilp_high"),
            "{err}"
        );
    }

    #[test]
    fn a_missing_field_is_an_error_not_a_default() {
        let err = parse(&RECIPE.replace("beta_min = 0.9\n", ""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("beta_min"), "{err}");
    }

    #[test]
    fn out_of_range_values_name_their_field() {
        for (from, to, field) in [
            ("rho = 0.4", "rho = 1.5", "objective.rho"),
            (
                "responses_per_prompt = 4",
                "responses_per_prompt = 1",
                "rollout.responses_per_prompt",
            ),
            (
                "micro_batch_responses = 4",
                "micro_batch_responses = 3",
                "batch.micro_batch_responses",
            ),
            (
                "mini_batch_prompts = 2",
                "mini_batch_prompts = 3",
                "batch.mini_batch_prompts",
            ),
            ("world_size = 1", "world_size = 3", "batch.world_size"),
            (
                "world_size = 1",
                "world_size = 4",
                "batch.micro_batch_responses",
            ),
            ("lr = 1e-6", "lr = 0.0", "optim.lr"),
            ("probability = 0.5", "probability = 2.0", "perturbation"),
            ("accuracy_low = 0.01", "accuracy_low = 0.995", "filtering"),
        ] {
            let err = parse(&RECIPE.replace(from, to)).unwrap_err().to_string();
            assert!(
                err.contains(field) && err.contains("recipes/t.toml"),
                "{to}: {err}"
            );
        }
    }

    #[test]
    fn switches_must_match_the_named_algorithm() {
        let err = parse(&RECIPE.replace("algorithm = \"vppo\"", "algorithm = \"dapo\""))
            .unwrap_err()
            .to_string();
        assert!(err.contains("dapo does not use TAS"), "{err}");
        let no_switches = RECIPE
            .replace("tas = true", "tas = false")
            .replace("tgf = true", "tgf = false");
        let err = parse(&no_switches).unwrap_err().to_string();
        assert!(err.contains("without them it is dapo"), "{err}");
    }

    #[test]
    fn recipes_round_trip_through_toml() {
        let r = parse(RECIPE).unwrap();
        let text = toml::to_string(&r).unwrap();
        assert_eq!(parse(&text).unwrap(), r);
    }
}
