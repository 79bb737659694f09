//! `spotlight compare`: per-benchmark regression check of runs against a baseline, for CI.

use std::path::PathBuf;

use anyhow::Context;
use spotlight::compare::{self, render, CompareSettings};

use super::Outcome;

/// Compare finished evaluation runs against a baseline: avg@k per benchmark and per
/// breakdown category, paired significance over the shared items (paired bootstrap; exact
/// McNemar when k = 1), Holm-corrected across the benchmarks. Exit 1 when a regression is
/// flagged, 0 when none, 2 on unreadable input.
#[derive(clap::Args)]
pub struct CompareArgs {
    /// Run folders (as `spotlight eval --out` writes them), at least two unless
    /// `--baseline` names another.
    #[arg(required = true)]
    pub runs: Vec<PathBuf>,
    /// The run the others are compared against (default: the first).
    #[arg(long)]
    pub baseline: Option<PathBuf>,
    /// Flag a regression only when the drop is larger than this many percentage points
    /// (and significant); 0 lets the statistics alone decide.
    #[arg(long, default_value_t = 1.0, value_name = "PP")]
    pub fail_on_regression: f64,
    /// Familywise error rate of the regression flags (Holm across benchmarks).
    #[arg(long, default_value_t = 0.05)]
    pub alpha: f64,
    /// Paired-bootstrap resamples per test.
    #[arg(long, default_value_t = compare::stats::DEFAULT_RESAMPLES)]
    pub resamples: usize,
    /// Seed of the bootstrap draws.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Print the comparison as JSON on stdout instead of markdown.
    #[arg(long)]
    pub json: bool,
    /// Write the output to this file instead of stdout.
    #[arg(long)]
    pub output: Option<PathBuf>,
}

pub fn run(args: CompareArgs) -> anyhow::Result<Outcome> {
    let mut dirs = args.runs.clone();
    let baseline = match &args.baseline {
        None => 0,
        Some(b) => match dirs.iter().position(|d| same_path(d, b)) {
            Some(i) => i,
            None => {
                dirs.insert(0, b.clone());
                0
            }
        },
    };
    let runs = dirs
        .iter()
        .map(|d| compare::load_run(d))
        .collect::<Result<Vec<_>, _>>()?;
    let settings = CompareSettings {
        alpha: args.alpha,
        threshold_pp: args.fail_on_regression,
        resamples: args.resamples,
        seed: args.seed,
    };
    let comparison = compare::compare(&runs, baseline, &settings)?;
    let text = if args.json {
        serde_json::to_string_pretty(&comparison)? + "\n"
    } else {
        render::render_markdown(&comparison)
    };
    match &args.output {
        Some(path) => spotlight::atomic_file::write_bytes_atomic(path, text.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?,
        None => print!("{text}"),
    }
    for w in &comparison.warnings {
        eprintln!("warning: {w}");
    }
    if comparison.has_regression() {
        for (run, bench) in &comparison.regressions {
            eprintln!("regression: {bench} in {run}");
        }
        Ok(Outcome::CheckFailed)
    } else {
        Ok(Outcome::Ok)
    }
}

/// Whether two paths name the same folder (as given, or after resolving links).
fn same_path(a: &std::path::Path, b: &std::path::Path) -> bool {
    a == b
        || matches!(
            (a.canonicalize(), b.canonicalize()),
            (Ok(x), Ok(y)) if x == y
        )
}
