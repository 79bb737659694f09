//! `spotlight sft`: supervised warm start on reference solutions.

use std::path::PathBuf;

use anyhow::Context;
use spotlight::bench::{DataSource, Registry};
use spotlight::model::ModelRef;
use spotlight::train::sft::{self, SftConfig, SftRecipe};

use super::Outcome;

/// Supervised fine-tuning on the data's reference solutions (the manifest's `solution` field):
/// cross-entropy on the response tokens, AdamW. Writes the model to `--out` in the Hugging
/// Face layout with `sft_metrics.jsonl`, and reports avg@k on held-out items before and after.
#[derive(clap::Args)]
pub struct SftArgs {
    /// SFT recipe (e.g. recipes/sft/synth.toml).
    #[arg(long, default_value = "recipes/sft/synth.toml")]
    pub config: PathBuf,
    /// Starting checkpoint folder (e.g. from `spotlight synth model`).
    #[arg(long)]
    pub init: ModelRef,
    /// Training data in the recipe's manifest schema (e.g. `spotlight synth perception --train N`).
    #[arg(long)]
    pub data: DataSource,
    /// Held-out data for the before/after avg@k. [default: the manifest's bundled file]
    #[arg(long)]
    pub eval_data: Option<DataSource>,
    /// Output checkpoint folder.
    #[arg(long)]
    pub out: PathBuf,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Stop after this many steps (a cosine decay still spans the recipe's epochs). [default: the recipe's epochs]
    #[arg(long)]
    pub steps: Option<usize>,
    /// Override a recipe field, e.g. `--set batch.epochs=2` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    pub overrides: Vec<String>,
    /// Save a checkpoint (weights and AdamW moments, for `--resume`) every N steps and after
    /// the last; only the latest is kept.
    #[arg(long, default_value_t = 100)]
    pub save_every: usize,
    /// Continue the run in `--out` from its last checkpoint (refused if the plan changed).
    #[arg(long)]
    pub resume: bool,
    /// Print the outcome as JSON on stdout (and no progress bar).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: SftArgs) -> anyhow::Result<Outcome> {
    let registry = Registry::discover()?;
    let recipe = SftRecipe::load(&args.config, &args.overrides)?;
    let manifest = registry.get(&recipe.data.bench)?;
    let (grader, rules) = super::eval::grader_for(&registry.root, &manifest.grading.rules)?;
    let config = SftConfig {
        recipe,
        recipe_path: args.config.clone(),
        overrides: args.overrides.clone(),
        save_every: args.save_every,
        resume: args.resume,
        rules: vec![rules],
        init: args.init.resolve()?,
        data: args.data.clone(),
        eval_data: Some(args.eval_data.clone().unwrap_or(DataSource::Bundled)),
        out: args.out.clone(),
        seed: args.seed,
        steps: args.steps,
        progress: !args.json,
        grader,
    };
    let outcome =
        sft::sft(&config, &registry).with_context(|| format!("SFT into {}", args.out.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome)?);
    } else {
        let pct = |v: Option<f64>| v.map_or("–".to_string(), |v| format!("{v:.1}%"));
        eprintln!(
            "{} steps, final loss {}; held-out avg@k {} -> {}; model in {}",
            outcome.steps,
            outcome.final_loss.map_or("–".into(), |l| format!("{l:.3}")),
            pct(outcome.accuracy_before),
            pct(outcome.accuracy_after),
            outcome.out.display()
        );
    }
    Ok(Outcome::Ok)
}
