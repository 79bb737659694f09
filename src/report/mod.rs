//! Markdown reports laid out like the paper's tables.
//!
//! The published numbers are read from `reports/paper/*.csv` (copied from the paper), never
//! typed into code. One Table 1 renderer serves single-run reports and multi-run tables.

pub mod history;
pub mod paper;
pub mod plot;

use std::path::Path;

use serde::Deserialize;

use crate::eval::log::SampleRecord;
use crate::eval::output::RunSummary;
use crate::eval::plan::EvalPlan;

/// The paper's column order (Table 1), by display name.
pub const TABLE1_COLUMNS: [&str; 8] = [
    "MathVerse",
    "DynaMath",
    "MMK12",
    "Geo3k",
    "MathVision",
    "We-Math",
    "LogicVista",
    "MMMU-Pro",
];

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {message}", path.display())]
    Csv {
        path: std::path::PathBuf,
        message: String,
    },
    #[error("{}: {source}", path.display())]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    /// A run folder's file that is missing or not what `spotlight eval` writes.
    #[error("{}: {message}", path.display())]
    Input {
        path: std::path::PathBuf,
        message: String,
    },
    /// `--as NAME` names no published row.
    #[error("no published row named {name:?}; known: {known}")]
    UnknownRow { name: String, known: String },
    /// Drawing the SVG plot failed.
    #[error("{}: drawing the plot: {message}", path.display())]
    Plot {
        path: std::path::PathBuf,
        message: String,
    },
}

/// A published row of Table 1 (or the README's 8B table).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct PublishedRow {
    pub table: String,
    pub scale: String,
    pub group: String,
    pub model: String,
    #[serde(rename = "MathVerse")]
    pub mathverse: f64,
    #[serde(rename = "DynaMath")]
    pub dynamath: f64,
    #[serde(rename = "MMK12")]
    pub mmk12: f64,
    #[serde(rename = "Geo3k")]
    pub geo3k: f64,
    #[serde(rename = "MathVision")]
    pub mathvision: f64,
    #[serde(rename = "We-Math")]
    pub wemath: f64,
    #[serde(rename = "LogicVista")]
    pub logicvista: f64,
    #[serde(rename = "MMMU-Pro")]
    pub mmmu_pro: f64,
    #[serde(rename = "Avg")]
    pub avg: f64,
    #[serde(default)]
    pub notes: String,
}

impl PublishedRow {
    pub fn values(&self) -> [f64; 8] {
        [
            self.mathverse,
            self.dynamath,
            self.mmk12,
            self.geo3k,
            self.mathvision,
            self.wemath,
            self.logicvista,
            self.mmmu_pro,
        ]
    }
}

/// Reads `table1_main_results.csv`.
pub fn read_table1(path: &Path) -> Result<Vec<PublishedRow>, ReportError> {
    let mut reader = csv::Reader::from_path(path).map_err(|e| ReportError::Csv {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    reader
        .deserialize()
        .enumerate()
        .map(|(i, row)| {
            row.map_err(|e| ReportError::Csv {
                path: path.to_path_buf(),
                message: format!("row {}: {e}", i + 1),
            })
        })
        .collect()
}

/// One line of a Table 1 rendering: a label, eight values (None = not measured) and Avg.
#[derive(Debug, Clone, PartialEq)]
pub struct TableRow {
    pub label: String,
    pub values: [Option<f64>; 8],
    pub avg: Option<f64>,
    /// Measured rows are marked in the table.
    pub measured: bool,
}

impl TableRow {
    pub fn from_published(row: &PublishedRow) -> TableRow {
        TableRow {
            label: row.model.clone(),
            values: row.values().map(Some),
            avg: Some(row.avg),
            measured: false,
        }
    }

    /// A run's row: each column from the summary by paper name; Avg only when all eight
    /// were evaluated (the mean of the eight columns).
    pub fn from_summary(label: &str, summary: &RunSummary) -> TableRow {
        let mut values = [None; 8];
        for b in summary.benchmarks.values() {
            if let Some(col) = TABLE1_COLUMNS.iter().position(|c| *c == b.name) {
                values[col] = b.avg_at_k;
            }
        }
        TableRow {
            label: label.to_string(),
            values,
            avg: summary.avg,
            measured: true,
        }
    }
}

fn cell(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

/// How a value is marked, as the paper marks its tables: the best value of a column in
/// bold, the second best underlined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    Best,
    Second,
    None,
}

/// Best / second-best per column over `columns[c]` (values as shown, rounded to one
/// decimal, so that two rows printed alike are marked alike; ties share a mark and the
/// second best is the next distinct value).
pub fn mark_columns(columns: &[Vec<Option<f64>>]) -> Vec<Vec<Mark>> {
    columns
        .iter()
        .map(|values| {
            let shown = |v: f64| (v * 10.0).round() as i64;
            let mut distinct: Vec<i64> = values.iter().flatten().map(|v| shown(*v)).collect();
            distinct.sort_unstable_by(|a, b| b.cmp(a));
            distinct.dedup();
            values
                .iter()
                .map(|v| match v.map(shown) {
                    Some(x) if distinct.first() == Some(&x) => Mark::Best,
                    Some(x) if distinct.get(1) == Some(&x) => Mark::Second,
                    _ => Mark::None,
                })
                .collect()
        })
        .collect()
}

/// A value cell with its mark: `**71.6**` for the best, `<u>68.1</u>` for the second best
/// (markdown has no underline; GitHub and most viewers render the HTML tag).
pub fn marked_cell(v: Option<f64>, mark: Mark) -> String {
    let text = cell(v);
    match (v, mark) {
        (Some(_), Mark::Best) => format!("**{text}**"),
        (Some(_), Mark::Second) => format!("<u>{text}</u>"),
        _ => text,
    }
}

/// A signed difference cell (`+1.2`, `−2.2`), never marked.
pub fn delta_cell(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) => {
            let rounded = (x * 10.0).round() / 10.0;
            if rounded == 0.0 {
                "±0.0".into()
            } else if rounded > 0.0 {
                format!("+{rounded:.1}")
            } else {
                format!("−{:.1}", -rounded)
            }
        }
    }
}

/// A line of a table: a row of values (published or measured), or the difference of a
/// measured row to a published one (shown, never marked).
#[derive(Debug, Clone, PartialEq)]
pub enum TableLine {
    Values(TableRow),
    Delta {
        label: String,
        values: [Option<f64>; 8],
        avg: Option<f64>,
    },
}

impl TableLine {
    /// `measured - reference`, column by column.
    pub fn delta(measured: &TableRow, reference: &TableRow) -> TableLine {
        let sub = |a: Option<f64>, b: Option<f64>| Some(a? - b?);
        let mut values = [None; 8];
        for (c, v) in values.iter_mut().enumerate() {
            *v = sub(measured.values[c], reference.values[c]);
        }
        TableLine::Delta {
            label: format!("Δ {} − {}", measured.label, reference.label),
            values,
            avg: sub(measured.avg, reference.avg),
        }
    }
}

fn table_header() -> String {
    let mut out = String::from("| Model | ");
    out.push_str(&TABLE1_COLUMNS.join(" | "));
    out.push_str(" | Avg |\n|---|");
    out.push_str(&"---:|".repeat(9));
    out.push('\n');
    out
}

/// Markdown table in the paper's layout: Model | the eight | Avg, with the best and
/// second-best value of each column marked among the value rows.
pub fn render_lines(lines: &[TableLine]) -> String {
    let rows: Vec<&TableRow> = lines
        .iter()
        .filter_map(|l| match l {
            TableLine::Values(r) => Some(r),
            TableLine::Delta { .. } => None,
        })
        .collect();
    let columns: Vec<Vec<Option<f64>>> = (0..9)
        .map(|c| {
            rows.iter()
                .map(|r| if c < 8 { r.values[c] } else { r.avg })
                .collect()
        })
        .collect();
    let marks = mark_columns(&columns);
    let mut out = table_header();
    let mut row_index = 0;
    for line in lines {
        match line {
            TableLine::Values(row) => {
                let label = if row.measured {
                    format!("*{}* (measured)", row.label)
                } else {
                    row.label.clone()
                };
                let cells: Vec<String> = (0..9)
                    .map(|c| {
                        let v = if c < 8 { row.values[c] } else { row.avg };
                        marked_cell(v, marks[c][row_index])
                    })
                    .collect();
                out.push_str(&format!("| {label} | {} |\n", cells.join(" | ")));
                row_index += 1;
            }
            TableLine::Delta { label, values, avg } => {
                let cells: Vec<String> = values
                    .iter()
                    .chain(std::iter::once(avg))
                    .map(|v| delta_cell(*v))
                    .collect();
                out.push_str(&format!("| *{label}* | {} |\n", cells.join(" | ")));
            }
        }
    }
    out
}

/// Markdown table in the paper's layout (Model | the eight | Avg), best and second best
/// marked per column as the paper does.
pub fn render_table1(rows: &[TableRow]) -> String {
    let lines: Vec<TableLine> = rows.iter().cloned().map(TableLine::Values).collect();
    render_lines(&lines)
}

/// The full report of one run.
pub fn render_run_report(
    plan: &EvalPlan,
    summary: &RunSummary,
    published: &[PublishedRow],
    scale: &str,
    records: &[SampleRecord],
    examples_per_benchmark: usize,
) -> String {
    let mut out = format!("# Evaluation report: {}\n\n", plan.name);
    out.push_str(&format!(
        "- Evaluated: `{}`\n- Data: `{}`; k = {} samples per item, seed {}, temperature {}, top-p {}, top-k {}, max new tokens {}, max pixels {}\n- Spotlight {}\n\n",
        plan.backend,
        plan.data,
        plan.k,
        plan.seed,
        plan.sampling.temperature,
        plan.sampling.top_p,
        plan.sampling.top_k,
        plan.sampling.max_tokens,
        plan.sampling.max_pixels,
        plan.spotlight_version
    ));
    if let Some(shown) = plan.sampling.images.description() {
        out.push_str(&format!(
            "> Image control `{}`: the model was NOT shown the items' own images ({shown}). This run measures what the model scores without looking; a model that reads the images falls to chance here.\n\n",
            plan.sampling.images.name()
        ));
    }
    if plan.data == "bundled" {
        out.push_str("> The bundled benchmark files are items Spotlight generates itself in each benchmark's schema, not the real benchmarks: the measured row is NOT comparable with the published rows.\n\n");
    }
    out.push_str(&format!(
        "## Table 1 ({scale} section, avg@{} accuracy, %)\n\n",
        plan.k
    ));
    let mut rows: Vec<TableRow> = published
        .iter()
        .filter(|r| r.scale == scale)
        .map(TableRow::from_published)
        .collect();
    rows.push(TableRow::from_summary(&plan.name, summary));
    out.push_str(&render_table1(&rows));
    out.push_str("\nPublished rows: arXiv 2510.09285, Table 1. Avg is the mean of the eight columns; it is shown for a measured row only when all eight were evaluated.\n\n");

    out.push_str("## Per benchmark\n\n| Benchmark | items | avg@k | 95% CI | pass@k | samples | errors |\n|---|---:|---:|---|---:|---:|---:|\n");
    for slug in &summary.order {
        if let Some(b) = summary.benchmarks.get(slug) {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {} |\n",
                b.name,
                b.items,
                cell(b.avg_at_k),
                b.ci95
                    .map(|c| format!("[{:.1}, {:.1}]", c[0], c[1]))
                    .unwrap_or_default(),
                cell(b.pass_at_k),
                b.samples,
                b.errors
            ));
        }
    }
    let approximate: Vec<String> = summary
        .order
        .iter()
        .filter_map(|s| summary.benchmarks.get(s))
        .filter_map(|b| b.approximate.as_ref().map(|a| format!("- {}: {a}", b.name)))
        .collect();
    if !approximate.is_empty() {
        out.push_str("\nApproximations (the authors did not publish these details):\n");
        out.push_str(&approximate.join("\n"));
        out.push('\n');
    }

    out.push_str("\n## Per category\n");
    for slug in &summary.order {
        let Some(b) = summary.benchmarks.get(slug) else {
            continue;
        };
        for (field, cells) in &b.breakdown {
            out.push_str(&format!(
                "\n### {} by {field}\n\n| {field} | items | avg@k | 95% CI |\n|---|---:|---:|---|\n",
                b.name
            ));
            for (category, c) in cells {
                out.push_str(&format!(
                    "| {category} | {} | {} | {} |\n",
                    c.items,
                    cell(c.avg_at_k),
                    c.ci95
                        .map(|x| format!("[{:.1}, {:.1}]", x[0], x[1]))
                        .unwrap_or_default()
                ));
            }
        }
    }

    out.push_str("\n## Example responses\n");
    for slug in &summary.order {
        let Some(b) = summary.benchmarks.get(slug) else {
            continue;
        };
        let mine: Vec<&SampleRecord> = records
            .iter()
            .filter(|r| &r.benchmark == slug && r.error.is_none())
            .collect();
        let right = mine
            .iter()
            .filter(|r| r.correct)
            .take(examples_per_benchmark);
        let wrong = mine
            .iter()
            .filter(|r| !r.correct)
            .take(examples_per_benchmark);
        out.push_str(&format!("\n### {}\n", b.name));
        for r in right.chain(wrong) {
            let text: String = r.response.chars().take(600).collect();
            let cut = if r.response.chars().count() > 600 {
                " […]"
            } else {
                ""
            };
            out.push_str(&format!(
                "\n- item `{}` sample {} — {} (extracted: `{}`)\n\n  ```text\n  {}{cut}\n  ```\n",
                r.item_id,
                r.sample,
                if r.correct { "right" } else { "wrong" },
                r.extracted.as_deref().unwrap_or("none"),
                text.replace("```", "'''").replace('\n', "\n  ")
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published() -> Vec<PublishedRow> {
        let path =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("reports/paper/table1_main_results.csv");
        read_table1(&path).unwrap()
    }

    #[test]
    fn every_published_avg_is_the_mean_of_its_eight_columns() {
        for row in published() {
            let mean = row.values().iter().sum::<f64>() / 8.0;
            assert!(
                (mean - row.avg).abs() <= 0.051,
                "{}: {mean} vs {}",
                row.model,
                row.avg
            );
        }
    }

    #[test]
    fn published_rows_match_shared_paper_exactly() {
        let Some(shared) = crate::testing::shared_path("paper/table1_main_results.csv") else {
            return;
        };
        assert_eq!(read_table1(&shared).unwrap(), published());
    }

    #[test]
    fn table_renders_published_and_measured_rows_in_paper_order() {
        let rows: Vec<TableRow> = published()
            .iter()
            .filter(|r| r.scale == "7B")
            .map(TableRow::from_published)
            .collect();
        let md = render_table1(&rows);
        assert!(md.starts_with("| Model | MathVerse | DynaMath | MMK12 | Geo3k | MathVision | We-Math | LogicVista | MMMU-Pro | Avg |"));
        // Read off the CSV's 7B section by hand: VPPO is best everywhere but Geo3k, where
        // NoisyRollout-7B (trained on Geo3k) leads with 51.8 and VPPO's 46.5 is second;
        // NoisyRollout is second on We-Math (71.0 < 71.5) and LogicVista (47.3 < 47.9).
        assert!(md.contains("| Qwen2.5-VL-7B+VPPO | **71.6** | **68.1** | **82.8** | <u>46.5</u> | **33.3** | **71.5** | **47.9** | **37.9** | **57.5** |"), "{md}");
        assert!(md.contains("| NoisyRollout-7B | 67.8 | 65.5 | 50.0 | **51.8** | 22.1 | <u>71.0</u> | <u>47.3</u> | 34.5 | 51.3 |"), "{md}");
    }

    #[test]
    fn ties_share_a_mark_and_second_best_is_the_next_distinct_value() {
        // 71.64 and 71.6 print alike, so both are best; 70.0 is second; None is skipped.
        let marks = mark_columns(&[vec![Some(71.64), Some(71.6), Some(70.0), None, Some(12.0)]]);
        assert_eq!(
            marks[0],
            vec![Mark::Best, Mark::Best, Mark::Second, Mark::None, Mark::None]
        );
        assert_eq!(marked_cell(Some(70.0), Mark::Second), "<u>70.0</u>");
        assert_eq!(marked_cell(None, Mark::Best), "–");
    }

    #[test]
    fn delta_cells_are_signed_and_never_negative_zero() {
        assert_eq!(delta_cell(Some(-2.2)), "−2.2");
        assert_eq!(delta_cell(Some(0.04)), "±0.0");
        assert_eq!(delta_cell(Some(-0.04)), "±0.0");
        assert_eq!(delta_cell(Some(1.25)), "+1.3");
        assert_eq!(delta_cell(None), "–");
    }

    #[test]
    fn delta_rows_are_shown_but_take_no_part_in_marking() {
        let vppo = published()
            .into_iter()
            .find(|r| r.model == "Qwen2.5-VL-7B+VPPO")
            .map(|r| TableRow::from_published(&r))
            .unwrap();
        let mut measured = vppo.clone();
        measured.label = "repro".into();
        measured.measured = true;
        measured.values[2] = Some(80.6);
        let lines = vec![
            TableLine::Values(vppo.clone()),
            TableLine::Values(measured.clone()),
            TableLine::delta(&measured, &vppo),
        ];
        let md = render_lines(&lines);
        // MMK12: 82.8 best, 80.6 second; the Δ row's −2.2 is plain.
        assert!(
            md.contains("| *repro* (measured) | **71.6** | **68.1** | <u>80.6</u> |"),
            "{md}"
        );
        assert!(
            md.contains("| *Δ repro − Qwen2.5-VL-7B+VPPO* | ±0.0 | ±0.0 | −2.2 |"),
            "{md}"
        );
    }
}
