//! `spotlight debug ...`: check Spotlight's internals against other implementations.

use std::io::{BufRead, Write};

use anyhow::Context;
use candle_core::DType;
use spotlight::train::cases::{compare_with_expected, evaluate_case, ObjectiveCase};

use super::Outcome;

/// Agreement threshold of `--check`: the spec's tolerance, relative to max(1, |value|).
const CHECK_TOLERANCE: f64 = 1e-6;

#[derive(clap::Subcommand)]
pub enum DebugCommand {
    /// Compute the VPPO objective for each line of a worked-examples JSONL file.
    ///
    /// Prints one JSON line per input line with `id` and every intermediate (advantages,
    /// token_dependency, trajectory_dependency, advantage_scale, token_mask, pg_loss,
    /// entropy_term, loss, grad_logprobs), computed in float64 by the trainer's own code.
    VppoObjective {
        /// JSONL in the format of the spec's `vppo-objective-examples.jsonl`.
        #[arg(long)]
        input: std::path::PathBuf,
        /// Also compare with each line's `expected` (max error per field on stderr); exit 1
        /// if any field differs by more than 1e-6 relative to max(1, |value|).
        #[arg(long)]
        check: bool,
    },
    /// Lay out a step's rows over workers, mini- and micro-batches as the reference trainer
    /// does (length balancing, per-worker TAS range, `mu` per micro-batch) and print each
    /// row's place and TAS scale.
    ///
    /// Input: JSONL, each line `{"id", "inputs": {"world_size", "global_batch_size" (prompts
    /// per mini-batch), "micro_batch_size_per_device", "beta_min", "balance", "groups",
    /// "prompt_lengths", "response_lengths", "token_dependency"}}` (per row, in the step's
    /// order; `train --dump-step` writes this format). Output: one JSON line per case,
    /// `{"id", "device", "mini_batch", "micro_batch", "advantage_scale"}` in row order
    /// (`micro_batch` counts within the row's worker mini-batch).
    TasLayout {
        #[arg(long)]
        input: std::path::PathBuf,
        /// Compare with each line's `expected` (placements exactly, scales to 1e-6 relative
        /// to max(1, |value|)); exit 1 on any difference.
        #[arg(long)]
        check: bool,
    },
    /// Time the phases of one VPPO-shaped training step on a checkpoint folder (CPU, f32).
    ///
    /// Phases: scoring pass with the image (on the gradient path), scoring pass with the
    /// patch-blackened image, shaping + loss + backward, AdamW. Prints the median seconds of
    /// each over `--steps` steps (after one warm-up) and the model FLOPs per step. Updates the
    /// weights in memory only; the folder is never written.
    /// `tools/bench_step/run.sh` times the same phases in PyTorch on the same folder.
    BenchStep(BenchStepArgs),
}

#[derive(clap::Args)]
pub struct BenchStepArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer, chat template).
    #[arg(long)]
    model: spotlight::model::ModelRef,
    /// Responses per step, one image each.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// Timed steps (after one untimed warm-up step).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Tokens per sequence: prompt (with image tokens) plus response.
    #[arg(long, default_value_t = 96)]
    seq: usize,
    /// Side of the square random input image, in pixels.
    #[arg(long, default_value_t = 64)]
    image_size: u32,
    /// Seeds images, responses, advantages and perturbations.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use the differentiable compositions instead of the fused kernels (the default; see
    /// `spotlight::model::ops`), for a before/after comparison.
    #[arg(long)]
    reference_ops: bool,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DebugCommand::VppoObjective { input, check } => vppo_objective(&input, check),
        DebugCommand::TasLayout { input, check } => tas_layout(&input, check),
        DebugCommand::BenchStep(args) => bench_step(&args),
    }
}

/// Reads JSONL cases from `input` (`what` names the format in errors), prints the result of
/// `evaluate` for each as one JSON line and, with `check`, lets `agrees` compare it with the
/// case's expectation and report on stderr (`None`: the case has none). Exit 1 when any case
/// disagrees or has nothing to check.
fn run_cases<C, R>(
    input: &std::path::Path,
    what: &str,
    check: bool,
    id: impl Fn(&C) -> String,
    evaluate: impl Fn(&C) -> anyhow::Result<R>,
    agrees: impl Fn(&C, &R) -> Option<bool>,
) -> anyhow::Result<Outcome>
where
    C: serde::de::DeserializeOwned,
    R: serde::Serialize,
{
    let file =
        std::fs::File::open(input).with_context(|| format!("cannot open {}", input.display()))?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let mut all_agree = true;
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line =
            line.with_context(|| format!("{}: cannot read line {line_no}", input.display()))?;
        if line.trim().is_empty() {
            continue;
        }
        let case: C = serde_json::from_str(&line)
            .with_context(|| format!("{}:{line_no}: not a {what}", input.display()))?;
        let result = evaluate(&case)
            .with_context(|| format!("{}:{line_no} (id {})", input.display(), id(&case)))?;
        serde_json::to_writer(&mut out, &result)?;
        writeln!(out)?;
        if check {
            match agrees(&case, &result) {
                Some(ok) => all_agree &= ok,
                None => {
                    eprintln!("{}: no `expected` to check", id(&case));
                    all_agree = false;
                }
            }
        }
    }
    Ok(if all_agree {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

fn tas_layout(input: &std::path::Path, check: bool) -> anyhow::Result<Outcome> {
    use spotlight::train::layout::{TasLayoutCase, TasLayoutResult};
    run_cases(
        input,
        "tas-layout case",
        check,
        |case: &TasLayoutCase| case.id.to_string(),
        |case| Ok(case.inputs.evaluate(&case.id)?),
        |case, result: &TasLayoutResult| {
            let expected = case.expected.as_ref()?;
            let placed = result.device == expected.device
                && result.mini_batch == expected.mini_batch
                && result.micro_batch == expected.micro_batch;
            let scale_error = (result.advantage_scale.len() == expected.advantage_scale.len())
                .then(|| {
                    result
                        .advantage_scale
                        .iter()
                        .zip(&expected.advantage_scale)
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1.0))
                        .fold(0.0f64, f64::max)
                });
            let ok = placed && scale_error.is_some_and(|e| e <= CHECK_TOLERANCE);
            eprintln!(
                "{} placement {} max rel scale error {}{}",
                case.id,
                if placed { "equal" } else { "DIFFERS" },
                scale_error.map_or("(length differs)".to_string(), |e| format!("{e:.3e}")),
                if ok { "" } else { "  MISMATCH" }
            );
            Some(ok)
        },
    )
}

fn vppo_objective(input: &std::path::Path, check: bool) -> anyhow::Result<Outcome> {
    run_cases(
        input,
        "worked example",
        check,
        |case: &ObjectiveCase| case.id.to_string(),
        |case| Ok(evaluate_case(case, DType::F64)?),
        |case, result| {
            let expected = case.expected.as_ref()?;
            let mut all = true;
            for agreement in compare_with_expected(result, expected) {
                let ok = agreement.max_error.is_some_and(|e| e <= CHECK_TOLERANCE);
                all &= ok;
                let error = agreement
                    .max_error
                    .map_or("missing or reshaped".to_string(), |e| format!("{e:.3e}"));
                eprintln!(
                    "{} {:<22} max rel error {error}{}",
                    case.id,
                    agreement.field,
                    if ok { "" } else { "  MISMATCH" }
                );
            }
            Some(all)
        },
    )
}

fn bench_step(args: &BenchStepArgs) -> anyhow::Result<Outcome> {
    use spotlight::train::bench_step::{bench_step, BenchStepConfig};
    if args.reference_ops {
        spotlight::model::ops::set_fused_kernels(false);
    }
    let dir = args.model.resolve()?;
    let ckpt = spotlight::model::Checkpoint::load(&dir)
        .with_context(|| format!("cannot load checkpoint {}", dir.display()))?;
    let config = BenchStepConfig {
        batch: args.batch,
        seq: args.seq,
        image_size: args.image_size,
        steps: args.steps,
        seed: args.seed,
        ..BenchStepConfig::default()
    };
    let report =
        bench_step(&ckpt, &config).with_context(|| format!("bench-step on {}", dir.display()))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
        return Ok(Outcome::Ok);
    }
    let m = &report.median_seconds;
    println!(
        "{} parameters, batch {} x seq {} ({} prompt + {} response tokens, {} patches per image), {} steps, {} ops",
        report.parameters,
        config.batch,
        config.seq,
        report.prompt_tokens,
        report.response_tokens,
        report.image_patches,
        config.steps,
        if report.fused_kernels {
            "fused"
        } else {
            "reference"
        }
    );
    println!("median seconds:");
    for (name, value) in [
        ("score (image)", m.score_image),
        ("score (perturbed)", m.score_perturbed),
        ("loss + backward", m.loss_backward),
        ("AdamW", m.optimizer),
        ("step", m.step),
    ] {
        println!("  {name:<18} {value:.4}");
    }
    println!(
        "model FLOPs per step {:.3e} ({:.1} GFLOP/s)",
        report.flops_per_step, report.gflops_per_second
    );
    Ok(Outcome::Ok)
}
