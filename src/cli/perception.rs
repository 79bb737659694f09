//! `spotlight perception`: how much each token of a response depends on the image.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::json;
use spotlight::model::{Checkpoint, LoadOptions, ModelRef, ScoringRequest, SourceImage};
use spotlight::perception::{dependency, processed, Measure};

use super::image_path::ImagePathArgs;
use super::Outcome;

/// Token perception: how much each token of a response depends on the image. Single case
/// (`--image --prompt --response`): that response is scored after the prompt with the image and
/// again with the measure's version of it (or without it). Benchmark mode (`--bench --out`):
/// `--k` responses per item are sampled with the embedded model and measured the same way;
/// `tokens.parquet`, `summary.json` and `report.md` go to `--out`. Each token's S is computed
/// by the trainer's own code (k3 estimator, clamps); the image goes through the chosen path's
/// first resize, then the measure, then the processor, as in training.
#[derive(clap::Args)]
pub struct PerceptionArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer, chat template).
    #[arg(long)]
    pub model: ModelRef,
    /// Single case: the image shown before the prompt text.
    #[arg(long, requires_all = ["prompt", "response"], conflicts_with = "bench")]
    pub image: Option<PathBuf>,
    /// Single case: the user's text.
    #[arg(long)]
    pub prompt: Option<String>,
    /// Single case: the response to measure (tokenized alone, without special tokens).
    #[arg(long)]
    pub response: Option<String>,
    /// Benchmark mode: which benchmarks (`all` = the eight).
    #[arg(long, requires = "out")]
    pub bench: Option<String>,
    /// Benchmark mode: where the benchmark files are (`bundled`, `hf`, a file or a folder).
    #[arg(long, default_value = "bundled")]
    pub data: spotlight::bench::DataSource,
    /// Benchmark mode: responses sampled per item.
    #[arg(long, default_value_t = 4)]
    pub k: usize,
    /// Benchmark mode: items per benchmark (the first N).
    #[arg(long, default_value_t = 8)]
    pub limit: usize,
    /// Benchmark mode: most new tokens per response.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Benchmark mode: the output folder.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Benchmark mode: exit 1 when the mean token dependency is below
    /// `--min-mean-dependency` (the image may not be reaching the model).
    #[arg(long)]
    pub check: bool,
    /// The warning's threshold on the mean S over every token. A model whose outputs do not
    /// move when half the image is blacked out scores 0 up to float noise (~1e-7); any model
    /// that reads the image scores far above this (Spotlight's random-weight default model:
    /// 0.016 on the eight benchmarks).
    #[arg(long, default_value_t = 1e-4)]
    pub min_mean_dependency: f64,
    /// System message (default: the template's).
    #[arg(long)]
    pub system: Option<String>,
    /// How the image is taken away.
    #[arg(long, value_enum, default_value = "patch-blackening")]
    pub measure: MeasureArg,
    /// Benchmark mode: further measures computed on the same responses; their Spearman rank
    /// correlation with `--measure`, per token and per trajectory, goes into the summary and
    /// the report (e.g. `--compare-measures full-mask,gaussian-blur`).
    #[arg(long, value_enum, value_delimiter = ',')]
    pub compare_measures: Vec<MeasureArg>,
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

impl MeasureArg {
    fn measure(self, fill: u8) -> Measure {
        match self {
            MeasureArg::PatchBlackening => Measure::PatchBlackening,
            MeasureArg::GaussianNoise => Measure::GaussianNoise,
            MeasureArg::GaussianBlur => Measure::GaussianBlur,
            MeasureArg::FullMask => Measure::FullMask { fill },
            MeasureArg::NoImage => Measure::NoImage,
        }
    }
}

pub fn run(args: PerceptionArgs) -> anyhow::Result<Outcome> {
    let dir = args.model.resolve()?;
    let (pre_resize, processor) = args.image_path.resolve(&dir)?;
    let mut ckpt = Checkpoint::load_with(&dir, &LoadOptions::auto()?)
        .with_context(|| format!("loading {}", dir.display()))?;
    ckpt.image_processor = processor.clone();
    let measure = args.measure.measure(args.fill);
    if let (Some(bench), Some(out)) = (&args.bench, &args.out) {
        return benchmarks(&args, &ckpt, pre_resize, measure, bench, out);
    }
    let (Some(image), Some(prompt), Some(response)) = (&args.image, &args.prompt, &args.response)
    else {
        anyhow::bail!("give --image, --prompt and --response (one case) or --bench and --out");
    };
    let source = pre_resize.apply(&SourceImage::open(image)?);
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
    let prompt_ids = builder.prompt_ids(system, prompt, &[original.grid_thw])?;
    let text_only_ids = builder.prompt_ids(system, prompt, &[])?;
    let response_ids = builder.response_ids(response)?;
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

/// Benchmark mode: sample, measure, and write `tokens.parquet`, `summary.json`, `report.md`.
fn benchmarks(
    args: &PerceptionArgs,
    ckpt: &Checkpoint,
    pre_resize: spotlight::model::PreResize,
    measure: Measure,
    bench: &str,
    out: &std::path::Path,
) -> anyhow::Result<Outcome> {
    use spotlight::perception::{measure_benchmark, tokens_parquet, RunSettings, Summary};
    let registry = spotlight::bench::Registry::discover()?;
    let settings = RunSettings {
        k: args.k.max(1),
        measure,
        seed: args.seed,
        temperature: args.temperature,
        top_p: 1.0,
        max_tokens: args.max_tokens,
        rho: 0.4,
        compare: args
            .compare_measures
            .iter()
            .map(|m| m.measure(args.fill))
            .collect(),
    };
    // per compared measure: S of every token and trajectory, in the order of all_tokens
    let mut compared: Vec<(Vec<f64>, Vec<f64>)> =
        vec![(Vec::new(), Vec::new()); settings.compare.len()];
    let (mut all_tokens, mut all_traj, mut seconds) = (Vec::new(), Vec::new(), 0.0);
    let mut all_items = Vec::new();
    let mut per_bench = serde_json::Map::new();
    let mut table = Vec::new();
    for manifest in registry.select(bench)? {
        let loaded = spotlight::train::data::load_examples(
            &registry,
            &manifest.slug,
            ckpt,
            pre_resize,
            &args.data,
            usize::MAX,
            args.limit,
        )?;
        let (grader, _) = super::eval::grader_for(&registry.root, &manifest.grading.rules)?;
        eprintln!(
            "{}: {} items x {} responses",
            manifest.name,
            loaded.examples.len(),
            settings.k
        );
        let m = measure_benchmark(ckpt, &manifest.slug, &loaded.examples, grader, &settings)?;
        let summary = Summary::of(&m.tokens, &m.trajectories, m.measure_seconds);
        table.push((manifest.name.clone(), summary.clone()));
        per_bench.insert(manifest.slug.clone(), serde_json::to_value(&summary)?);
        seconds += m.measure_seconds;
        for (c, other) in compared.iter_mut().zip(&m.others) {
            c.0.extend(&other.tokens);
            c.1.extend(&other.trajectories);
        }
        all_tokens.extend(m.tokens);
        all_traj.extend(m.trajectories);
        all_items.extend(m.items);
    }
    let overall = Summary::of(&all_tokens, &all_traj, seconds);
    let (token_svg, trajectory_svg) =
        spotlight::perception::figures(&all_tokens, &all_traj).map_err(|e| anyhow::anyhow!(e))?;
    table.push(("All".to_string(), overall.clone()));
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let parquet = tokens_parquet(&all_tokens).map_err(|e| anyhow::anyhow!(e))?;
    spotlight::atomic_file::write_bytes_atomic(&out.join("tokens.parquet"), &parquet)?;
    let main_tokens: Vec<f64> = all_tokens.iter().map(|t| t.dependency).collect();
    let main_traj: Vec<f64> = all_traj.iter().map(|t| t.dependency).collect();
    let comparison: Vec<serde_json::Value> = settings
        .compare
        .iter()
        .zip(&compared)
        .map(|(m, (tok, traj))| {
            json!({
                "measure": m,
                "token_spearman": spotlight::perception::spearman(&main_tokens, tok),
                "trajectory_spearman": spotlight::perception::spearman(&main_traj, traj),
                "mean_dependency": tok.iter().sum::<f64>() / tok.len().max(1) as f64,
            })
        })
        .collect();
    let summary = json!({
        "measure_comparison": comparison,
        "model": args.model.to_string(),
        "settings": settings,
        "image_path": args.image_path.name(),
        "pre_resize": pre_resize,
        "processor": ckpt.image_processor.kind,
        "benchmarks": per_bench,
        "overall": overall,
    });
    spotlight::atomic_file::write_bytes_atomic(
        &out.join("summary.json"),
        serde_json::to_string_pretty(&summary)?.as_bytes(),
    )?;
    spotlight::atomic_file::write_bytes_atomic(
        &out.join("token_dependency.svg"),
        token_svg.as_bytes(),
    )?;
    spotlight::atomic_file::write_bytes_atomic(
        &out.join("trajectory_dependency.svg"),
        trajectory_svg.as_bytes(),
    )?;
    let page = spotlight::perception::index_html(
        &all_tokens,
        &all_items,
        &format!("Token perception of {}", args.model),
    );
    spotlight::atomic_file::write_bytes_atomic(&out.join("index.html"), page.as_bytes())?;
    let mut report = report_markdown(args, &settings, &table);
    if !comparison.is_empty() {
        report.push_str(&format!(
            "\n## Measures compared with `{:?}` (Spearman rank correlation, all responses)\n\n\
             | measure | mean S | per token | per trajectory |\n|---|---:|---:|---:|\n",
            settings.measure
        ));
        let f = |v: &serde_json::Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.3}"));
        for c in &comparison {
            report.push_str(&format!(
                "| {} | {} | {} | {} |\n",
                c["measure"],
                f(&c["mean_dependency"]),
                f(&c["token_spearman"]),
                f(&c["trajectory_spearman"])
            ));
        }
    }
    report.push_str(
        "\n![token dependency](token_dependency.svg)\n\n![trajectory dependency](trajectory_dependency.svg)\n",
    );
    spotlight::atomic_file::write_bytes_atomic(&out.join("report.md"), report.as_bytes())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print!("{report}");
    }
    if overall.tokens > 0 && overall.mean_dependency < args.min_mean_dependency {
        eprintln!(
            "warning: mean token dependency {:.3e} is below {:.1e}: the responses barely change \
             when the image is perturbed; the image may not be reaching the model",
            overall.mean_dependency, args.min_mean_dependency
        );
        if args.check {
            return Ok(Outcome::CheckFailed);
        }
    }
    Ok(Outcome::Ok)
}

fn report_markdown(
    args: &PerceptionArgs,
    settings: &spotlight::perception::RunSettings,
    table: &[(String, spotlight::perception::Summary)],
) -> String {
    let mut s = format!(
        "# Token perception of `{}`\n\nMeasure `{:?}`, {} responses per item (temperature {}, at \
         most {} tokens), seed {}, image path `{}`.\n\n",
        args.model,
        settings.measure,
        settings.k,
        settings.temperature,
        settings.max_tokens,
        settings.seed,
        args.image_path.name()
    );
    s.push_str(
        "| benchmark | responses | tokens | mean S | S > 0.01 | S > 0.1 | S > 1 | top 10% share | \
         top 40% share | Gini | trajectory min / median / max | CV | corr. with correct |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|\n",
    );
    let opt = |v: Option<f64>| v.map_or("–".to_string(), |x| format!("{x:.3}"));
    for (name, m) in table {
        s.push_str(&format!(
            "| {name} | {} | {} | {:.4} | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.1}% | {:.3} | \
             {:.4} / {:.4} / {:.4} | {} | {} |\n",
            m.responses,
            m.tokens,
            m.mean_dependency,
            100.0 * m.share_above[0].1,
            100.0 * m.share_above[1].1,
            100.0 * m.share_above[2].1,
            100.0 * m.top_10_percent_share,
            100.0 * m.top_40_percent_share,
            m.gini,
            m.trajectory[0],
            m.trajectory[2],
            m.trajectory[4],
            opt(m.trajectory_cv),
            opt(m.correlation_with_correct),
        ));
    }
    if let Some((_, all)) = table.last() {
        s.push_str(&format!(
            "\nSparsity (the paper's first observation): {:.1}% of tokens have S above 0.1 and the \
             top 10% of tokens carry {:.1}% of all dependency. Divergence (the second): trajectory \
             dependency runs from {:.4} to {:.4} (median {:.4}, coefficient of variation {}). \
             Scoring with the measure's image cost {} s per 1,000 response tokens.\n",
            100.0 * all.share_above[1].1,
            100.0 * all.top_10_percent_share,
            all.trajectory[0],
            all.trajectory[4],
            all.trajectory[2],
            opt(all.trajectory_cv),
            opt(all.seconds_per_1000_tokens),
        ));
    }
    s
}
