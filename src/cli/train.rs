//! `spotlight train`: GRPO / DAPO / VPPO on a checkpoint, from a recipe.

use std::path::PathBuf;

use anyhow::Context;
use spotlight::bench::{DataSource, Registry};
use spotlight::model::ModelRef;
use spotlight::train::rollout::Rewarder;
use spotlight::train::trainer::{self, RunConfig};
use spotlight::train::TrainRecipe;

use super::Outcome;

/// Train with reinforcement learning from verifiable rewards (the spec's RL loop): G samples
/// per prompt, rewards from the recipe's rule set, online filtering, rollout and
/// perturbed-image log-probs, GRPO advantages, TAS and TGF (VPPO), PPO with clip-higher and
/// dual clip, AdamW. Checkpoints `OUT/step-N/` in the Hugging Face layout; `--resume`
/// continues bit for bit; per-step metrics in `OUT/metrics.jsonl`.
#[derive(clap::Args)]
pub struct TrainArgs {
    /// Training recipe (recipes/*.toml).
    #[arg(long)]
    pub recipe: PathBuf,
    /// Starting checkpoint folder (e.g. the output of `spotlight sft`).
    #[arg(long)]
    pub init: ModelRef,
    /// Run folder: checkpoints, metrics.jsonl.
    #[arg(long)]
    pub out: PathBuf,
    /// Training data (a parquet file or folder in the `--bench` manifest's schema, e.g.
    /// from `spotlight synth perception --train N`).
    #[arg(long)]
    pub data: DataSource,
    /// The manifest describing the data's columns, prompt template and grading.
    #[arg(long, default_value = "synth-perception")]
    pub bench: String,
    /// Held-out data for validation avg@k every `[validation] every_steps`. [default: the
    /// manifest's bundled file]
    #[arg(long)]
    pub val_data: Option<DataSource>,
    /// Validation items (the first N).
    #[arg(long, default_value_t = 32)]
    pub val_items: usize,
    /// Stop after this many steps in total. [default: the recipe's epochs over the data]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Save a checkpoint every N steps (and after the last).
    #[arg(long, default_value_t = 10)]
    pub save_every: usize,
    /// Run seed: data order, sampling streams and perturbation masks derive from it.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Override a recipe field, e.g. `--set batch.prompts_per_step=4` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Continue the run in `--out` from its last checkpoint.
    #[arg(long)]
    pub resume: bool,
    /// Write step STEP's rows, their layout over workers and the TAS scales the update applied
    /// to `DIR/tas-layout-step-STEP.jsonl`, a `debug tas-layout` case whose `expected` is the
    /// trainer's: `spotlight debug tas-layout --input FILE --check` recomputes it.
    #[arg(long, num_args = 2, value_names = ["STEP", "DIR"])]
    pub dump_step: Option<Vec<String>>,
    /// Print the last step's metrics as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: TrainArgs) -> anyhow::Result<Outcome> {
    let dump_step = match args.dump_step.as_deref() {
        Some([step, dir]) => {
            let step: usize = step
                .parse()
                .with_context(|| format!("--dump-step STEP DIR: {step:?} is not a step number"))?;
            Some((step, PathBuf::from(dir)))
        }
        _ => None,
    };
    let registry = Registry::discover()?;
    let recipe = TrainRecipe::load_with_overrides(&args.recipe, &args.overrides)?;
    let (grader, accuracy_rules) = super::eval::grader_for(&registry.root, &recipe.reward.rules)?;
    let mut rules = vec![accuracy_rules];
    let format = if recipe.reward.format_weight > 0.0 {
        let (format, record) = super::eval::grader_for(&registry.root, "format")?;
        rules.push(record);
        Some((format, recipe.reward.format_weight))
    } else {
        None
    };
    let config = RunConfig {
        rewarder: Rewarder {
            accuracy: grader,
            format,
        },
        rules,
        recipe,
        recipe_path: args.recipe.clone(),
        overrides: args.overrides.clone(),
        init: args.init.resolve()?,
        bench: args.bench.clone(),
        train_data: args.data.clone(),
        val_data: Some(args.val_data.clone().unwrap_or(DataSource::Bundled)),
        val_items: args.val_items,
        out: args.out.clone(),
        seed: args.seed,
        steps: args.steps,
        save_every: args.save_every,
        resume: args.resume,
        progress: !args.json,
        dump_step,
    };
    let outcome = trainer::train(&config, &registry)
        .with_context(|| format!("training into {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.last)?);
    } else {
        eprintln!(
            "{} steps; checkpoints: {}",
            outcome.steps_done,
            outcome
                .checkpoints
                .iter()
                .map(|c| c.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(Outcome::Ok)
}
