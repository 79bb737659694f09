//! The paper's tables with measured runs inserted: Table 1 (one section per model scale)
//! and the 7B ablation tables, each with best / second best marked per column and, where
//! the user names the published row a run reproduces, the difference to it.

use std::path::{Path, PathBuf};

use super::{render_lines, PublishedRow, ReportError, TableLine, TableRow, TABLE1_COLUMNS};
use crate::eval::output::RunSummary;
use crate::eval::plan::EvalPlan;

/// A finished run to show in a table.
#[derive(Debug, Clone)]
pub struct MeasuredRun {
    /// Row label (the run's name).
    pub label: String,
    pub summary: RunSummary,
    /// The published row (model or ablation variant) this run reproduces, if named.
    pub reproduces: Option<String>,
}

/// Reads a run folder's `run.json` (for its name) and `summary.json`.
pub fn load_measured(dir: &Path) -> Result<(EvalPlan, RunSummary), ReportError> {
    let plan_path = dir.join(EvalPlan::FILE_NAME);
    let plan = EvalPlan::load(dir)
        .map_err(|e| ReportError::Input {
            path: plan_path.clone(),
            message: e.to_string(),
        })?
        .ok_or_else(|| ReportError::Input {
            path: plan_path,
            message: "missing: not a run folder written by `spotlight eval`".into(),
        })?;
    let path = dir.join("summary.json");
    let text = std::fs::read_to_string(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => ReportError::Input {
            path: path.clone(),
            message:
                "missing: the run has not finished (continue it with `spotlight eval --resume`)"
                    .into(),
        },
        _ => ReportError::Io {
            path: path.clone(),
            source,
        },
    })?;
    let summary = serde_json::from_str(&text).map_err(|e| ReportError::Input {
        path,
        message: format!("not a run summary: {e}"),
    })?;
    Ok((plan, summary))
}

/// A titled block of a table (a model scale of Table 1, an ablation table).
#[derive(Debug, Clone)]
pub struct Section {
    pub title: String,
    pub lines: Vec<TableLine>,
}

/// Inserts each run into the section holding the published row it reproduces, right
/// below that row and followed by its difference to it; a run without one goes to the
/// end of `fallback` (created if absent).
fn insert_runs(
    sections: &mut Vec<Section>,
    runs: &[MeasuredRun],
    fallback: &str,
    known: &str,
) -> Result<(), ReportError> {
    for run in runs {
        // The published rows are avg@8; a run sampled otherwise says so in its label.
        let label = if run.summary.k == 8 {
            run.label.clone()
        } else {
            format!("{}, avg@{}", run.label, run.summary.k)
        };
        let measured = TableRow::from_summary(&label, &run.summary);
        match &run.reproduces {
            Some(name) => {
                let found = sections.iter_mut().find_map(|s| {
                    let at = s.lines.iter().position(|l| {
                        matches!(l, TableLine::Values(r) if !r.measured && r.label.eq_ignore_ascii_case(name))
                    })?;
                    Some((s, at))
                });
                let Some((section, at)) = found else {
                    return Err(ReportError::UnknownRow {
                        name: name.clone(),
                        known: known.to_string(),
                    });
                };
                let TableLine::Values(reference) = section.lines[at].clone() else {
                    continue;
                };
                // After the reference and any runs already placed under it.
                let mut insert_at = at + 1;
                while section.lines.get(insert_at).is_some_and(|l| match l {
                    TableLine::Values(r) => r.measured,
                    TableLine::Delta { .. } => true,
                }) {
                    insert_at += 1;
                }
                section
                    .lines
                    .insert(insert_at, TableLine::delta(&measured, &reference));
                section.lines.insert(insert_at, TableLine::Values(measured));
            }
            None => {
                let index = match sections.iter().position(|s| s.title == fallback) {
                    Some(i) => i,
                    None => {
                        sections.push(Section {
                            title: fallback.to_string(),
                            lines: Vec::new(),
                        });
                        sections.len() - 1
                    }
                };
                sections[index].lines.push(TableLine::Values(measured));
            }
        }
    }
    Ok(())
}

/// Table 1 with the runs inserted. `scale` limits the sections to one model scale (a run
/// reproducing a row of another scale still brings that section); runs that reproduce
/// nothing named go to the `scale` section (7B by default).
pub fn table1_sections(
    published: &[PublishedRow],
    runs: &[MeasuredRun],
    scale: Option<&str>,
) -> Result<Vec<Section>, ReportError> {
    let mut sections: Vec<Section> = Vec::new();
    for row in published {
        let title = row.scale.clone();
        let line = TableLine::Values(TableRow::from_published(row));
        match sections.iter_mut().find(|s| s.title == title) {
            Some(s) => s.lines.push(line),
            None => sections.push(Section {
                title,
                lines: vec![line],
            }),
        }
    }
    let known: Vec<&str> = published.iter().map(|r| r.model.as_str()).collect();
    insert_runs(
        &mut sections,
        runs,
        scale.unwrap_or("7B"),
        &known.join(", "),
    )?;
    if let Some(scale) = scale {
        sections.retain(|s| {
            s.title.eq_ignore_ascii_case(scale)
                || s.lines
                    .iter()
                    .any(|l| matches!(l, TableLine::Values(r) if r.measured))
        });
    }
    Ok(sections)
}

/// Markdown of titled sections, each its own table with its own best / second best.
pub fn render_sections(heading: &str, sections: &[Section], note: &str) -> String {
    let mut out = format!("# {heading}\n\n");
    for s in sections {
        out.push_str(&format!("## {}\n\n", s.title));
        out.push_str(&render_lines(&s.lines));
        out.push('\n');
    }
    out.push_str(note);
    out
}

/// The note under Table 1.
pub const TABLE1_NOTE: &str = "avg@8 accuracy (%) (a measured row sampled with another k says so). Published rows: arXiv 2510.09285, Table 1 (the 8B rows from the authors' README). Per column and section, **bold** is the best and <u>underlined</u> the second best, as in the paper; measured rows (*italic*, from `summary.json`) take part. A Δ row is the measured row minus the published row it reproduces. A measured row's Avg is shown only when all eight benchmarks were evaluated.\n";

/// The note under the ablation tables.
pub const ABLATIONS_NOTE: &str = "avg@8 accuracy (%), Qwen2.5-VL-7B. Published rows: arXiv 2510.09285, ablation tables (numbered as in the paper), each beside the full method's Table 1 row. **Bold** best, <u>underlined</u> second best per column and table; a Δ row is the measured row minus the variant it reproduces.\n";

/// A published ablation row (`reports/paper/ablations_7b.csv`).
#[derive(Debug, Clone, PartialEq)]
pub struct AblationRow {
    /// The paper's table number.
    pub table: String,
    pub variant: String,
    pub values: [f64; 8],
    pub avg: f64,
}

/// Reads `ablations_7b.csv`: `table, variant`, the eight benchmark columns by name, `Avg`.
pub fn read_ablations(path: &Path) -> Result<Vec<AblationRow>, ReportError> {
    let bad = |message: String| ReportError::Csv {
        path: path.to_path_buf(),
        message,
    };
    let mut reader = csv::Reader::from_path(path).map_err(|e| bad(e.to_string()))?;
    let headers = reader.headers().map_err(|e| bad(e.to_string()))?.clone();
    let column = |name: &str| {
        headers
            .iter()
            .position(|h| h == name)
            .ok_or_else(|| bad(format!("missing column `{name}`")))
    };
    let table = column("table")?;
    let variant = column("variant")?;
    let avg = column("Avg")?;
    let benchmarks: Vec<usize> = TABLE1_COLUMNS
        .iter()
        .map(|c| column(c))
        .collect::<Result<_, _>>()?;
    let mut rows = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        let number = |at: usize| -> Result<f64, ReportError> {
            let text = record.get(at).unwrap_or("");
            text.trim().parse().map_err(|_| {
                bad(format!(
                    "row {}: field `{}`: not a number: {text:?}",
                    i + 1,
                    &headers[at]
                ))
            })
        };
        let mut values = [0.0; 8];
        for (v, at) in values.iter_mut().zip(&benchmarks) {
            *v = number(*at)?;
        }
        rows.push(AblationRow {
            table: record.get(table).unwrap_or("").to_string(),
            variant: record.get(variant).unwrap_or("").to_string(),
            values,
            avg: number(avg)?,
        });
    }
    Ok(rows)
}

/// The ablation tables with the runs inserted: one section per paper table, each headed
/// by `reference` (the full method's Table 1 row) when given. `only` keeps one table.
/// Runs that reproduce no named variant go to a "Measured" section.
pub fn ablation_sections(
    rows: &[AblationRow],
    reference: Option<&PublishedRow>,
    runs: &[MeasuredRun],
    only: Option<&str>,
) -> Result<Vec<Section>, ReportError> {
    let reference_line = reference.map(|r| {
        let mut row = TableRow::from_published(r);
        row.label = format!("{} (Table 1)", r.model);
        TableLine::Values(row)
    });
    let mut sections: Vec<Section> = Vec::new();
    for row in rows {
        let title = format!("Table {}", row.table);
        let line = TableLine::Values(TableRow {
            label: row.variant.clone(),
            values: row.values.map(Some),
            avg: Some(row.avg),
            measured: false,
        });
        match sections.iter_mut().find(|s| s.title == title) {
            Some(s) => s.lines.push(line),
            None => sections.push(Section {
                title,
                lines: reference_line.iter().cloned().chain([line]).collect(),
            }),
        }
    }
    let known: Vec<&str> = rows.iter().map(|r| r.variant.as_str()).collect();
    insert_runs(&mut sections, runs, "Measured", &known.join(", "))?;
    if let Some(last) = sections.last_mut() {
        if last.title == "Measured" {
            if let Some(reference) = &reference_line {
                last.lines.insert(0, reference.clone());
            }
        }
    }
    if let Some(only) = only {
        let wanted = format!("Table {only}");
        sections.retain(|s| {
            s.title == wanted
                || s.title == "Measured"
                || s.lines
                    .iter()
                    .any(|l| matches!(l, TableLine::Values(r) if r.measured))
        });
    }
    Ok(sections)
}

/// Where the published CSVs live in the project.
pub fn paper_dir(root: &Path) -> PathBuf {
    root.join("reports/paper")
}
