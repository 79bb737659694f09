//! The history of a training run: avg@k per benchmark across a sequence of checkpoint
//! runs (step-50, step-100, ...), as a trend table and (see [`super::plot`]) a line plot.

use serde::Serialize;

use super::{delta_cell, mark_columns, marked_cell, TABLE1_COLUMNS};
use crate::eval::output::RunSummary;

/// One checkpoint run.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    pub run: String,
    /// The training step the checkpoint was saved at, read from the run's name (`step-50`,
    /// `checkpoint-50`, `global_step_50`, ...) or its model folder; `None` when neither says.
    pub step: Option<u64>,
    /// avg@k (%) per benchmark of [`History::benchmarks`]; `None` where not evaluated.
    pub avg_at_k: Vec<Option<f64>>,
    pub ci95: Vec<Option<[f64; 2]>>,
    /// The paper's Avg over the eight, when all eight were evaluated.
    pub avg: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// Benchmark display names: the paper's eight in its order, then any others.
    pub benchmarks: Vec<String>,
    /// In the order given (the training order).
    pub points: Vec<HistoryPoint>,
}

/// Collects the runs' summaries, labelled, in the order given.
pub fn history(runs: &[(String, RunSummary)]) -> History {
    let mut benchmarks: Vec<String> = Vec::new();
    for (_, summary) in runs {
        for slug in &summary.order {
            if let Some(b) = summary.benchmarks.get(slug) {
                if !benchmarks.contains(&b.name) {
                    benchmarks.push(b.name.clone());
                }
            }
        }
    }
    let paper = |name: &String| {
        TABLE1_COLUMNS
            .iter()
            .position(|c| c == name)
            .unwrap_or(TABLE1_COLUMNS.len())
    };
    // Stable: benchmarks outside the paper keep their first-seen order.
    benchmarks.sort_by_key(paper);
    let points = runs
        .iter()
        .map(|(label, summary)| {
            let find = |name: &String| summary.benchmarks.values().find(|b| &b.name == name);
            HistoryPoint {
                run: label.clone(),
                step: training_step(label),
                avg_at_k: benchmarks
                    .iter()
                    .map(|n| find(n).and_then(|b| b.avg_at_k))
                    .collect(),
                ci95: benchmarks
                    .iter()
                    .map(|n| find(n).and_then(|b| b.ci95))
                    .collect(),
                avg: summary.avg,
            }
        })
        .collect();
    History { benchmarks, points }
}

impl History {
    /// Whether every checkpoint has a step, in increasing order: then the plot's x axis is the
    /// step (checkpoints 50 and 200 steps apart are drawn so), otherwise the run order.
    pub fn by_step(&self) -> bool {
        let steps: Option<Vec<u64>> = self.points.iter().map(|p| p.step).collect();
        steps.is_some_and(|s| !s.is_empty() && s.windows(2).all(|w| w[0] < w[1]))
    }
}

/// The training step named in a run or checkpoint name: the number after the last `step`,
/// `checkpoint` or `global_step` (with `-`, `_` or nothing between), as trainers name their
/// checkpoint folders (Spotlight's `step-50`, transformers' `checkpoint-50`, verl's
/// `global_step_50`).
pub fn training_step(name: &str) -> Option<u64> {
    static PATTERN: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
    let re = PATTERN.get_or_init(|| {
        regex::Regex::new(r"(?i)(?:global_step|checkpoint|step)[-_]?(\d+)").expect("valid regex")
    });
    re.captures_iter(name)
        .last()
        .and_then(|c| c[1].parse().ok())
}

/// The trend table: one row per checkpoint, the best and second-best checkpoint of each
/// column marked, and the change from the first to the last checkpoint. `plot` is a
/// relative link to the SVG, shown above the table when given.
pub fn render_history(h: &History, plot: Option<&str>) -> String {
    let with_avg = h.points.iter().any(|p| p.avg.is_some());
    let column = |p: &HistoryPoint, c: usize| {
        if c < h.benchmarks.len() {
            p.avg_at_k[c]
        } else {
            p.avg
        }
    };
    let width = h.benchmarks.len() + usize::from(with_avg);
    let columns: Vec<Vec<Option<f64>>> = (0..width)
        .map(|c| h.points.iter().map(|p| column(p, c)).collect())
        .collect();
    let marks = mark_columns(&columns);
    let mut out = String::from("# Training history\n\n");
    if let Some(plot) = plot {
        out.push_str(&format!(
            "![avg@k per benchmark across checkpoints]({plot})\n\n"
        ));
    }
    let steps = h.by_step();
    out.push_str(if steps { "| Run | Step | " } else { "| Run | " });
    let mut names = h.benchmarks.clone();
    if with_avg {
        names.push("Avg".into());
    }
    out.push_str(&names.join(" | "));
    out.push_str(if steps { " |\n|---|---:|" } else { " |\n|---|" });
    out.push_str(&"---:|".repeat(width));
    out.push('\n');
    for (i, p) in h.points.iter().enumerate() {
        let cells: Vec<String> = (0..width)
            .map(|c| marked_cell(column(p, c), marks[c][i]))
            .collect();
        let step = match p.step.filter(|_| steps) {
            Some(n) => format!(" {n} |"),
            None => String::new(),
        };
        out.push_str(&format!("| {} |{step} {} |\n", p.run, cells.join(" | ")));
    }
    if let (Some(first), Some(last)) = (h.points.first(), h.points.last()) {
        if h.points.len() > 1 {
            let cells: Vec<String> = (0..width)
                .map(|c| delta_cell(column(last, c).zip(column(first, c)).map(|(b, a)| b - a)))
                .collect();
            out.push_str(&format!(
                "| *Δ {} − {}* |{} {} |\n",
                last.run,
                first.run,
                if steps { " |" } else { "" },
                cells.join(" | ")
            ));
        }
    }
    out.push_str("\navg@k accuracy (%) per checkpoint run, in the order given. **Bold** is the best checkpoint of a column, <u>underlined</u> the second best. Differences between checkpoints are not tested here: `spotlight compare` does that.\n");
    out
}

#[cfg(test)]
mod tests {
    use super::training_step;

    #[test]
    fn steps_are_read_from_the_usual_checkpoint_names() {
        assert_eq!(training_step("step-50"), Some(50));
        assert_eq!(training_step("runs/vppo/checkpoint-1200"), Some(1200));
        assert_eq!(training_step("global_step_30/actor/huggingface"), Some(30));
        assert_eq!(training_step("eval-step100"), Some(100));
        assert_eq!(training_step("final"), None);
        assert_eq!(training_step("step-"), None);
    }
}
