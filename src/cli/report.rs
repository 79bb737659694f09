//! `spotlight report table1 | ablations | history`: the paper's tables with measured runs
//! inserted, and the trend of a training run's checkpoints.

use std::path::{Path, PathBuf};

use anyhow::Context;
use spotlight::bench::project_root;
use spotlight::report::{self, history, paper, plot};

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum ReportCommand {
    /// The paper's Table 1 with each run inserted in its section (below the published row
    /// it reproduces with `--as`, followed by the difference to it), best and second best
    /// marked per column.
    Table1 {
        /// Finished run folders (`spotlight eval --out`).
        #[arg(long, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// Only this section of the table (7B, 32B, 8B); runs without `--as` go here
        /// (default 7B; all sections are shown when not given).
        #[arg(long)]
        scale: Option<String>,
        /// The published row a run reproduces, e.g. "Qwen2.5-VL-7B+VPPO": once for all
        /// runs, or once per run in the order of `--runs`.
        #[arg(long = "as", value_name = "MODEL")]
        reproduces: Vec<String>,
        /// Write the markdown here instead of stdout.
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// The paper's 7B ablation tables with runs inserted below the variant they reproduce.
    Ablations {
        /// Finished run folders.
        #[arg(long, num_args = 1..)]
        runs: Vec<PathBuf>,
        /// The ablation variant a run reproduces, e.g. "TAS only": once for all runs, or
        /// once per run.
        #[arg(long = "as", value_name = "VARIANT")]
        reproduces: Vec<String>,
        /// Only this ablation table (the paper's number, e.g. 4).
        #[arg(long)]
        table: Option<String>,
        #[arg(long)]
        output: Option<PathBuf>,
    },
    /// Trend of avg@k across checkpoint runs, in the order given, and an SVG line plot
    /// with one series per benchmark.
    History {
        /// Finished run folders, in training order.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Write the markdown here instead of stdout (the plot goes beside it as .svg
        /// unless `--plot` says otherwise).
        #[arg(long)]
        output: Option<PathBuf>,
        /// Where the SVG plot goes.
        #[arg(long)]
        plot: Option<PathBuf>,
        /// Print the trend as JSON on stdout instead of markdown.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: ReportCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ReportCommand::Table1 {
            runs,
            scale,
            reproduces,
            output,
        } => {
            let root = project_root()?;
            let published =
                report::read_table1(&paper::paper_dir(&root).join("table1_main_results.csv"))?;
            let measured = measured_runs(&runs, &reproduces)?;
            let sections = paper::table1_sections(&published, &measured, scale.as_deref())?;
            let text = paper::render_sections(
                "Table 1: accuracy on the eight benchmarks",
                &sections,
                paper::TABLE1_NOTE,
            );
            emit(&text, output.as_deref())
        }
        ReportCommand::Ablations {
            runs,
            reproduces,
            table,
            output,
        } => {
            let root = project_root()?;
            let dir = paper::paper_dir(&root);
            let rows = paper::read_ablations(&dir.join("ablations_7b.csv"))?;
            let published = report::read_table1(&dir.join("table1_main_results.csv"))?;
            let reference = published
                .iter()
                .find(|r| r.table == "1" && r.model == "Qwen2.5-VL-7B+VPPO");
            let measured = measured_runs(&runs, &reproduces)?;
            let sections = paper::ablation_sections(&rows, reference, &measured, table.as_deref())?;
            let text = paper::render_sections(
                "Ablations (Qwen2.5-VL-7B)",
                &sections,
                paper::ABLATIONS_NOTE,
            );
            emit(&text, output.as_deref())
        }
        ReportCommand::History {
            runs,
            output,
            plot: plot_path,
            json,
        } => {
            let mut loaded = Vec::new();
            let mut plans = Vec::new();
            for dir in &runs {
                let (plan, summary) = paper::load_measured(dir)?;
                plans.push(plan.backend.clone());
                loaded.push((plan.name, summary));
            }
            let mut trend = history::history(&loaded);
            // a run named without a step may have evaluated a checkpoint folder that has one
            for (point, dir) in trend.points.iter_mut().zip(&plans) {
                if point.step.is_none() {
                    point.step = history::training_step(dir);
                }
            }
            if json {
                println!("{}", serde_json::to_string_pretty(&trend)?);
                if let Some(path) = &plot_path {
                    write_plot(&trend, path)?;
                }
                return Ok(Outcome::Ok);
            }
            let plot_path = plot_path.or_else(|| output.as_ref().map(|o| o.with_extension("svg")));
            let link = match &plot_path {
                Some(path) => {
                    write_plot(&trend, path)?;
                    Some(relative_link(path, output.as_deref()))
                }
                None => None,
            };
            let text = history::render_history(&trend, link.as_deref());
            emit(&text, output.as_deref())
        }
    }
}

/// Loads the runs and pairs each with the published row it reproduces.
fn measured_runs(
    dirs: &[PathBuf],
    reproduces: &[String],
) -> anyhow::Result<Vec<paper::MeasuredRun>> {
    if reproduces.len() > 1 && reproduces.len() != dirs.len() {
        anyhow::bail!(
            "--as given {} times for {} runs: give it once (for all runs) or once per run",
            reproduces.len(),
            dirs.len()
        );
    }
    dirs.iter()
        .enumerate()
        .map(|(i, dir)| {
            let (plan, summary) = paper::load_measured(dir)?;
            Ok(paper::MeasuredRun {
                label: plan.name,
                summary,
                reproduces: reproduces
                    .get(i)
                    .or(reproduces.first().filter(|_| reproduces.len() == 1))
                    .cloned(),
            })
        })
        .collect()
}

fn write_plot(trend: &history::History, path: &Path) -> anyhow::Result<()> {
    let svg = plot::history_svg(trend, path)?;
    spotlight::atomic_file::write_bytes_atomic(path, svg.as_bytes())
        .with_context(|| format!("writing {}", path.display()))?;
    eprintln!("plot: {}", path.display());
    Ok(())
}

/// The plot's path as the markdown should link it: relative to the markdown's folder when
/// both are in the same folder, else as given.
fn relative_link(plot: &Path, markdown: Option<&Path>) -> String {
    match (
        plot.parent(),
        markdown.and_then(Path::parent),
        plot.file_name(),
    ) {
        (Some(a), Some(b), Some(name)) if a == b => name.to_string_lossy().into_owned(),
        _ => plot.display().to_string(),
    }
}

fn emit(text: &str, output: Option<&Path>) -> anyhow::Result<Outcome> {
    match output {
        Some(path) => {
            spotlight::atomic_file::write_bytes_atomic(path, text.as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("{}", path.display());
        }
        None => print!("{text}"),
    }
    Ok(Outcome::Ok)
}
