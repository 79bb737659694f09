//! `spotlight eval`: avg@k over benchmarks on a backend, resumable, with a report.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use spotlight::bench::{DataSource, Registry};
use spotlight::eval::{self, Backend, EvalError, EvalRequest, Grader, Sampling};
use spotlight::model::{Checkpoint, LoadOptions, ModelRef};
use spotlight::report;
use spotlight::verify::RulesRecord;

use super::Outcome;

/// Evaluate a model on benchmarks: k samples per item at the given sampling settings,
/// graded by each benchmark's rule set. Defaults are the authors' evaluation settings.
#[derive(clap::Args)]
#[command(group = clap::ArgGroup::new("backend").required(true).multiple(false))]
pub struct EvalArgs {
    /// Grade responses produced elsewhere: JSONL or parquet with benchmark, item_id,
    /// sample, response.
    #[arg(long, group = "backend")]
    pub replay: Option<PathBuf>,
    /// A Qwen2.5-VL checkpoint folder, run embedded (batched sampling with a KV cache; the
    /// k samples of an item share one prefill).
    #[arg(long, group = "backend")]
    pub model: Option<ModelRef>,
    /// An OpenAI-compatible server (vLLM, SGLang, `spotlight serve`): its base URL, e.g.
    /// http://127.0.0.1:8000 (a trailing /v1 is accepted). One request per sample, carrying
    /// the sample's seed. https:// needs a build with `--features https`.
    #[arg(long, group = "backend", requires = "served_model")]
    pub endpoint: Option<String>,
    /// The model name the endpoint serves (the requests' `model`).
    #[arg(long, requires = "endpoint")]
    pub served_model: Option<String>,
    /// NAME of the environment variable holding the endpoint's API key, sent as a bearer
    /// token; the key is never printed or recorded. [default: OPENAI_API_KEY, when set]
    #[arg(long, value_name = "VAR", requires = "endpoint")]
    pub api_key_env: Option<String>,
    /// Seconds one HTTP attempt may take, connecting to last byte.
    #[arg(long, value_name = "SECS", default_value_t = 600.0)]
    pub request_timeout: f64,
    /// HTTP: send an item's k samples in one request with `n` instead of one request per
    /// sample. Faster on servers that share the prefill, but the server seeds the samples
    /// (from the first sample's seed), so they no longer follow the derived per-sample
    /// seeds; the run record says so.
    #[arg(long, requires = "endpoint")]
    pub n_per_request: bool,
    /// HTTP retries after a 429, 408, 5xx, dropped connection or timeout (exponential
    /// backoff with jitter); a sample still failing then is recorded with its error.
    #[arg(long, default_value_t = 4)]
    pub retries: u32,
    /// Benchmarks: NAME[,NAME..] or `all` (the paper's eight).
    #[arg(long, default_value = "all")]
    pub bench: String,
    /// Where the benchmark files are: `bundled`, `hf`, `hf:DIR`, a file or a folder.
    #[arg(long, default_value = "bundled")]
    pub data: DataSource,
    /// Samples per item (avg@k).
    #[arg(long, default_value_t = 8)]
    pub k: u32,
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Top-k sampling (0 = off). The authors' tool used 50.
    #[arg(long, default_value_t = 50)]
    pub top_k: u32,
    /// Pixel cap per image before the model's processor (PAPO-Eval's LLaMA-Factory
    /// `image_max_pixels`: 768x768; images under 32x32 pixels are scaled up, a side under 28
    /// stretched, an aspect ratio above 200 squeezed to 180:1, then the checkpoint's
    /// processor runs at its own bounds).
    #[arg(long, default_value_t = 589_824)]
    pub max_pixels: u32,
    /// Which of transformers' image processors the embedded model (`--model`) reproduces:
    /// `slow` (PIL), as PAPO-Eval's transformers 4.52 loaded it, or `fast` (torchvision).
    #[arg(long, value_enum, default_value = "slow")]
    pub image_processor: super::image_path::ProcessorArg,
    /// What the model sees in place of the images: `as-is`, or a control that shows whether
    /// it looks at all: `black` (each image blacked out, same size) or `other-item` (each item
    /// given another item's images). Recorded in run.json; `compare` of a run against its
    /// control (same items, same sample seeds) warns that the setting differs, and its paired
    /// test says whether the images matter.
    #[arg(long, value_enum, default_value = "as-is")]
    pub images: super::image_path::ImageControlArg,
    #[arg(long, default_value_t = 2048)]
    pub max_tokens: u32,
    #[arg(long, default_value_t = 9216)]
    pub max_context: u32,
    /// Run seed; each sample's seed derives from (seed, item id, sample index).
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder (run.json, samples.jsonl, samples.parquet, summary.json).
    #[arg(long)]
    pub out: PathBuf,
    /// Continue a killed or partial run in `--out`.
    #[arg(long)]
    pub resume: bool,
    /// Items per benchmark (first N).
    #[arg(long)]
    pub limit: Option<usize>,
    /// Samples in flight at once. [default: 4 over HTTP; 64 with --model, whose engine batches
    /// whatever is in flight]
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// Where the markdown report goes (`<run>.md`); default: the project's `reports/`.
    #[arg(long)]
    pub report_dir: Option<PathBuf>,
    /// Which section of Table 1 the report shows beside the run (7B, 32B, 8B).
    #[arg(long, default_value = "7B")]
    pub scale: String,
    /// Print summary.json on stdout.
    #[arg(long)]
    pub json: bool,
    /// A sentence the report shows under its title, e.g. what the evaluated model is (`just
    /// eval-all` says when it is the random-weight default model).
    #[arg(long, default_value = "")]
    pub note: String,
}

/// The grader of a reward rule set, found the one way every command finds it
/// ([`spotlight::verify::resolve`]: a path, the project's `reward_rules/<name>.toml`, the
/// builtin), with the record run plans store.
pub fn grader_for(
    project_root: &Path,
    rules: &str,
) -> Result<(Arc<dyn Grader>, RulesRecord), EvalError> {
    spotlight::verify::resolve(Some(project_root), rules)
        .map(|r| (Arc::new(r.rules) as Arc<dyn Grader>, r.record))
        .map_err(|e| EvalError::Rules(e.to_string()))
}

/// The HTTP backend from `--endpoint` and its options. The key is read here, from the
/// variable the user named, and goes only into the client's headers.
fn http_backend(args: &EvalArgs, endpoint: &str) -> anyhow::Result<eval::http::HttpBackend> {
    let served_model = args
        .served_model
        .clone()
        .context("--endpoint needs --served-model NAME (the model name the server serves)")?;
    let request_timeout = std::time::Duration::try_from_secs_f64(args.request_timeout)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| {
            format!(
                "--request-timeout {}: expected a positive number of seconds",
                args.request_timeout
            )
        })?;
    let api_key = match &args.api_key_env {
        Some(variable) => Some(eval::http::ApiKey::from_env(variable)?.with_context(|| {
            format!("--api-key-env {variable}: that environment variable is not set")
        })?),
        None => eval::http::ApiKey::from_env(DEFAULT_API_KEY_ENV)?,
    };
    let config = eval::http::HttpConfig {
        request_timeout,
        retries: args.retries,
        samples_per_request: if args.n_per_request {
            args.k.max(1) as usize
        } else {
            1
        },
        ..eval::http::HttpConfig::new(endpoint, served_model)
    };
    Ok(eval::http::HttpBackend::new(config, api_key)?)
}

/// The API key variable read when `--api-key-env` is not given (the OpenAI clients' own).
const DEFAULT_API_KEY_ENV: &str = "OPENAI_API_KEY";

pub fn run(args: EvalArgs) -> anyhow::Result<Outcome> {
    let registry = Registry::discover()?;
    let mut fingerprint = None;
    let backend: Box<dyn Backend> = if let Some(path) = &args.replay {
        let backend = eval::replay::ReplayBackend::open(path, |name| {
            registry.get(name).ok().map(|m| m.slug.clone())
        })?;
        Box::new(backend)
    } else if let Some(model) = &args.model {
        let dir = &model.resolve()?;
        let opts = LoadOptions::auto()?;
        let ckpt = Checkpoint::load_with(dir, &opts)
            .with_context(|| format!("loading {}", dir.display()))?;
        fingerprint = Some(
            spotlight::run_folder::ModelFingerprint::of(dir)
                .with_context(|| format!("fingerprinting {}", dir.display()))?,
        );
        Box::new(
            eval::embedded::EmbeddedBackend::new(ckpt)
                .with_context(|| format!("starting {}", dir.display()))?,
        )
    } else if let Some(endpoint) = &args.endpoint {
        Box::new(http_backend(&args, endpoint)?)
    } else {
        anyhow::bail!("no backend: give --replay, --model or --endpoint")
    };
    let request = EvalRequest {
        registry: &registry,
        bench: args.bench.clone(),
        data: args.data.clone(),
        k: args.k,
        seed: args.seed,
        sampling: Sampling {
            temperature: args.temperature,
            top_p: args.top_p,
            top_k: args.top_k,
            max_tokens: args.max_tokens,
            max_context: args.max_context,
            max_pixels: args.max_pixels,
            image_pipeline: Default::default(),
            image_processor: args.image_processor.into(),
            images: args.images.into(),
        },
        limit: args.limit,
        out: args.out.clone(),
        resume: args.resume,
        concurrency: args
            .concurrency
            .unwrap_or(if args.model.is_some() { 64 } else { 4 }),
        progress: !args.json,
        model: fingerprint,
        grader_for: &|rules: &str| grader_for(&registry.root, rules),
    };
    let outcome = eval::evaluate(&request, backend.as_ref())?;
    let plan = eval::EvalPlan::load(&outcome.run_dir)?.context("run.json vanished")?;
    let records = eval::SampleLog::read(&outcome.run_dir)?;
    let published =
        report::read_table1(&registry.root.join("reports/paper/table1_main_results.csv"))?;
    let mut markdown = report::render_run_report(
        &plan,
        &outcome.summary,
        &published,
        &args.scale,
        &records,
        2,
    );
    if !args.note.trim().is_empty() {
        markdown = with_note(&markdown, args.note.trim());
    }
    let report_dir = args
        .report_dir
        .clone()
        .unwrap_or_else(|| registry.root.join("reports"));
    let report_path = report_dir.join(format!("{}.md", plan.name));
    spotlight::atomic_file::write_bytes_atomic(&report_path, markdown.as_bytes())
        .with_context(|| format!("writing {}", report_path.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
    } else {
        eprintln!(
            "{} samples now, {} from before; run folder {}",
            outcome.produced_now,
            outcome.resumed_from,
            outcome.run_dir.display()
        );
        for slug in &outcome.summary.order {
            if let Some(b) = outcome.summary.benchmarks.get(slug) {
                eprintln!(
                    "{:>11}: avg@{} {}  ({} items, {} errors)",
                    b.name,
                    b.k,
                    b.avg_at_k
                        .map(|v| format!("{v:.1}"))
                        .unwrap_or_else(|| "–".into()),
                    b.items,
                    b.errors
                );
            }
        }
        if let Some(avg) = outcome.summary.avg {
            eprintln!("{:>11}: {avg:.1}", "Avg");
        }
        println!("{}", report_path.display());
    }
    // A run in which no sample could be produced measured nothing: say so with the exit code
    // (the per-sample errors are in the run folder).
    let (samples, errors) = outcome
        .summary
        .benchmarks
        .values()
        .fold((0, 0), |(s, e), b| (s + b.samples, e + b.errors));
    if samples > 0 && errors == samples {
        eprintln!(
            "error: every one of the {samples} samples failed (see `error` in {}/samples.jsonl)",
            outcome.run_dir.display()
        );
        return Ok(Outcome::CheckFailed);
    }
    Ok(Outcome::Ok)
}

/// The report with `note` as a quoted paragraph right under its title line.
fn with_note(markdown: &str, note: &str) -> String {
    let (title, rest) = markdown.split_once('\n').unwrap_or((markdown, ""));
    format!("{title}\n\n> **Note:** {note}\n{rest}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_note_goes_under_the_title() {
        let out = with_note("# Report: x\n\n- Evaluated: y\n", "random weights");
        assert_eq!(
            out,
            "# Report: x\n\n> **Note:** random weights\n\n- Evaluated: y\n"
        );
    }
}
