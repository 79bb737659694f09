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
}

pub fn run(cmd: DebugCommand) -> anyhow::Result<Outcome> {
    match cmd {
        DebugCommand::VppoObjective { input, check } => vppo_objective(&input, check),
    }
}

fn vppo_objective(input: &std::path::Path, check: bool) -> anyhow::Result<Outcome> {
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
        let case: ObjectiveCase = serde_json::from_str(&line)
            .with_context(|| format!("{}:{line_no}: not a worked example", input.display()))?;
        let result = evaluate_case(&case, DType::F64)
            .with_context(|| format!("{}:{line_no} (id {})", input.display(), case.id))?;
        serde_json::to_writer(&mut out, &result)?;
        writeln!(out)?;
        if check {
            let Some(expected) = &case.expected else {
                eprintln!("{}: no `expected` to check", case.id);
                all_agree = false;
                continue;
            };
            for agreement in compare_with_expected(&result, expected) {
                let ok = agreement.max_error.is_some_and(|e| e <= CHECK_TOLERANCE);
                all_agree &= ok;
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
        }
    }
    Ok(if all_agree {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}
