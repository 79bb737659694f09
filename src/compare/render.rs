//! Markdown for a [`Comparison`]: one table of avg@k per run, one table of differences
//! per candidate, then the breakdown categories.

use super::{Comparison, DeltaTest, Row};

fn pct(v: Option<f64>) -> String {
    v.map(|x| format!("{x:.1}")).unwrap_or_else(|| "–".into())
}

fn signed(x: f64) -> String {
    // Avoid "-0.0" for differences that round to zero.
    let rounded = (x * 10.0).round() / 10.0;
    if rounded == 0.0 {
        "0.0".into()
    } else {
        format!("{rounded:+.1}")
    }
}

/// p-values to three significant figures, small ones in scientific notation.
fn p_value(p: f64) -> String {
    if p < 0.001 {
        format!("{p:.1e}")
    } else {
        format!("{p:.3}")
    }
}

fn delta_cells(d: &DeltaTest) -> String {
    format!(
        "{} | [{}, {}] | {} {}",
        signed(d.delta_pp),
        signed(d.ci95[0]),
        signed(d.ci95[1]),
        p_value(d.p_value),
        if d.test == super::TestKind::McNemarExact {
            "(McNemar)"
        } else {
            ""
        }
    )
    .trim_end()
    .to_string()
}

fn avg_cells(row: &Row) -> String {
    row.avg_at_k
        .iter()
        .map(|v| pct(*v))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// The comparison as markdown.
pub fn render_markdown(c: &Comparison) -> String {
    let base = &c.runs[c.baseline].label;
    let s = &c.settings;
    let mut out = format!("# Comparison against `{base}`\n\n");
    out.push_str(&format!(
        "- Runs: {}\n",
        c.runs
            .iter()
            .map(|r| format!("`{}` (k = {}, temperature {})", r.label, r.k, r.temperature))
            .collect::<Vec<_>>()
            .join(", ")
    ));
    out.push_str(&format!(
        "- Paired tests over the items both runs scored (one-sided: is the candidate worse by more than {} points?): studentized bootstrap over per-item avg@k ({} resamples, seed {}), McNemar when k = 1; Holm-corrected across the {} benchmark comparisons at alpha {}.\n- Flagged: a drop significantly larger than {} points after correction.\n",
        s.threshold_pp,
        s.resamples,
        s.seed,
        c.benchmarks.iter().map(|b| b.row.deltas.len()).sum::<usize>(),
        s.alpha,
        s.threshold_pp
    ));
    if c.regressions.is_empty() {
        out.push_str("- Result: **no regression flagged**.\n");
    } else {
        let list: Vec<String> = c
            .regressions
            .iter()
            .map(|(run, bench)| format!("{bench} ({run})"))
            .collect();
        out.push_str(&format!(
            "- Result: **{} regression{} flagged**: {}.\n",
            list.len(),
            if list.len() == 1 { "" } else { "s" },
            list.join(", ")
        ));
    }
    if !c.warnings.is_empty() {
        out.push_str("\nWarnings:\n\n");
        for w in &c.warnings {
            out.push_str(&format!("- {w}\n"));
        }
    }

    out.push_str("\n## avg@k (%) on the shared items\n\n| Benchmark | items | ");
    out.push_str(
        &c.runs
            .iter()
            .map(|r| r.label.as_str())
            .collect::<Vec<_>>()
            .join(" | "),
    );
    out.push_str(" |\n|---|---:|");
    out.push_str(&"---:|".repeat(c.runs.len()));
    out.push('\n');
    for b in &c.benchmarks {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            b.name,
            b.row.items,
            avg_cells(&b.row)
        ));
    }

    for (r, run) in c.runs.iter().enumerate() {
        if r == c.baseline {
            continue;
        }
        out.push_str(&format!(
            "\n## `{}` vs `{base}`\n\n| Benchmark | items | Δ (points) | 95% CI | p | p (Holm) | |\n|---|---:|---:|---|---:|---:|---|\n",
            run.label
        ));
        for b in &c.benchmarks {
            let Some(d) = b.row.deltas.iter().find(|d| d.run == run.label) else {
                continue;
            };
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} |\n",
                b.name,
                b.row.items,
                delta_cells(d),
                d.p_holm.map(p_value).unwrap_or_default(),
                if d.regression { "**REGRESSION**" } else { "" }
            ));
        }
    }

    if c.benchmarks.iter().any(|b| !b.categories.is_empty()) {
        out.push_str("\n## Per category\n\np-values here are uncorrected and never flag: they point at where a benchmark's change comes from.\n");
        for b in c.benchmarks.iter().filter(|b| !b.categories.is_empty()) {
            let mut field = "";
            for cat in &b.categories {
                if cat.field != field {
                    field = &cat.field;
                    out.push_str(&format!(
                        "\n### {} by {field}\n\n| {field} | items | ",
                        b.name
                    ));
                    out.push_str(
                        &c.runs
                            .iter()
                            .map(|r| r.label.as_str())
                            .collect::<Vec<_>>()
                            .join(" | "),
                    );
                    for (r, run) in c.runs.iter().enumerate() {
                        if r != c.baseline {
                            out.push_str(&format!(" | Δ {} | 95% CI | p", run.label));
                        }
                    }
                    out.push_str(" |\n|---|---:|");
                    out.push_str(&"---:|".repeat(c.runs.len()));
                    out.push_str(&"---:|---|---:|".repeat(c.runs.len() - 1));
                    out.push('\n');
                }
                out.push_str(&format!(
                    "| {} | {} | {}",
                    cat.category,
                    cat.row.items,
                    avg_cells(&cat.row)
                ));
                for (r, run) in c.runs.iter().enumerate() {
                    if r == c.baseline {
                        continue;
                    }
                    match cat.row.deltas.iter().find(|d| d.run == run.label) {
                        Some(d) => out.push_str(&format!(
                            " | {} | [{}, {}] | {}",
                            signed(d.delta_pp),
                            signed(d.ci95[0]),
                            signed(d.ci95[1]),
                            p_value(d.p_value)
                        )),
                        None => out.push_str(" | – | | "),
                    }
                }
                out.push_str(" |\n");
            }
        }
    }
    out
}
