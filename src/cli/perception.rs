//! `spotlight perception`: how much each token of a response depends on the image.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use spotlight::model::{Checkpoint, LoadOptions, ModelRef, ScoringRequest, SourceImage};
use spotlight::perception::{dependency, processed, Measure};

use super::image_path::ImagePathArgs;
use super::Outcome;

/// Token perception of one response (the single-case mode): the response is scored after
/// the prompt with the image and again with the measure's version of it (or without it), and
/// each token's dependency S is computed by the trainer's own code (k3 estimator, clamps).
/// The image goes through the chosen path's first resize, then the measure, then the
/// processor, as in training. The benchmark mode (`--bench`) is not built yet.
#[derive(clap::Args)]
pub struct PerceptionArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer, chat template).
    #[arg(long)]
    pub model: ModelRef,
    /// The image shown before the prompt text.
    #[arg(long)]
    pub image: PathBuf,
    /// The user's text.
    #[arg(long)]
    pub prompt: String,
    /// The response to measure (tokenized alone, without special tokens).
    #[arg(long)]
    pub response: String,
    /// System message (default: the template's).
    #[arg(long)]
    pub system: Option<String>,
    /// How the image is taken away.
    #[arg(long, value_enum, default_value = "patch-blackening")]
    pub measure: MeasureArg,
    /// Grey level of `full-mask` (128: the reference's full masking; 0: black).
    #[arg(long, default_value_t = 128)]
    pub fill: u8,
    /// Seed of the random measures' stream (blackening, noise).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Write the measure's image (before the processor) as PNG, so the measure can be
    /// recomputed elsewhere.
    #[arg(long)]
    pub mask_out: Option<PathBuf>,
    /// Softmax temperature of both scorings (the rollout's: 1.0).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[command(flatten)]
    pub image_path: ImagePathArgs,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// `--measure` values (the perturbation names the recipes use, and `no-image`).
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum MeasureArg {
    PatchBlackening,
    GaussianNoise,
    GaussianBlur,
    FullMask,
    NoImage,
}

pub fn run(args: PerceptionArgs) -> anyhow::Result<Outcome> {
    let dir = args.model.resolve()?;
    let (pre_resize, processor) = args.image_path.resolve(&dir)?;
    let ckpt = Checkpoint::load_with(&dir, &LoadOptions::auto()?)
        .with_context(|| format!("loading {}", dir.display()))?;
    let measure = match args.measure {
        MeasureArg::PatchBlackening => Measure::PatchBlackening,
        MeasureArg::GaussianNoise => Measure::GaussianNoise,
        MeasureArg::GaussianBlur => Measure::GaussianBlur,
        MeasureArg::FullMask => Measure::FullMask { fill: args.fill },
        MeasureArg::NoImage => Measure::NoImage,
    };
    let source = pre_resize.apply(&SourceImage::open(&args.image)?);
    let original = processed(&processor, &source)?;
    let perturbed_rgb = measure.perturbed(&source, args.seed, "single-case", 0);
    if let (Some(out), Some(img)) = (&args.mask_out, &perturbed_rgb) {
        img.save(out)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let perturbed = perturbed_rgb
        .as_ref()
        .map(|img| processed(&processor, img))
        .transpose()?;
    let builder = ckpt.prompt_builder()?;
    let system = args.system.as_deref();
    let prompt_ids = builder.prompt_ids(system, &args.prompt, &[original.grid_thw])?;
    let text_only_ids = builder.prompt_ids(system, &args.prompt, &[])?;
    let response_ids = builder.response_ids(&args.response)?;
    let with_image = ScoringRequest {
        prompt_ids: &prompt_ids,
        response_ids: &response_ids,
        images: vec![&original],
    };
    let without = match &perturbed {
        Some(p) => ScoringRequest {
            prompt_ids: &prompt_ids,
            response_ids: &response_ids,
            images: vec![p],
        },
        None => ScoringRequest {
            prompt_ids: &text_only_ids,
            response_ids: &response_ids,
            images: vec![],
        },
    };
    let scores = dependency(&ckpt, with_image, without, args.temperature)?;
    let tokens = builder.decode_each(&response_ids)?;
    if args.json {
        let report = json!({
            "measure": measure,
            "image_path": args.image_path.name(),
            "pre_resize": pre_resize,
            "processor": processor.kind,
            "seed": args.seed,
            "tokens": tokens,
            "token_ids": response_ids,
            "logprobs": scores.logprobs,
            "perturbed_logprobs": scores.perturbed_logprobs,
            "token_dependency": scores.token_dependency,
            "trajectory_dependency": scores.trajectory_dependency,
        });
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{:>4}  {:>10}  {:>10}  {:>8}  token",
            "#", "logp", "logp'", "S"
        );
        for (i, t) in tokens.iter().enumerate() {
            println!(
                "{i:>4}  {:>10.4}  {:>10.4}  {:>8.4}  {t:?}",
                scores.logprobs[i], scores.perturbed_logprobs[i], scores.token_dependency[i]
            );
        }
        println!("trajectory dependency {:.6}", scores.trajectory_dependency);
    }
    Ok(Outcome::Ok)
}
