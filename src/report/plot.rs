//! The SVG line plot of a training history: one series per benchmark, avg@k (%) against
//! the checkpoint runs in order. Drawn with plotters' SVG backend only (no fonts, no
//! bitmap backends): it adds about 3 s to a clean build.

use std::path::Path;

use plotters::prelude::*;

use super::history::History;
use super::ReportError;

/// Qualitative colours (Tableau 10), one per series, so lines stay distinguishable.
const PALETTE: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// The SVG document. `path` only names the file in errors.
pub fn history_svg(h: &History, path: &Path) -> Result<String, ReportError> {
    let fail = |e: &dyn std::fmt::Display| ReportError::Plot {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let values: Vec<f64> = h
        .points
        .iter()
        .flat_map(|p| p.avg_at_k.iter().flatten().copied())
        .collect();
    let low = values.iter().copied().fold(f64::INFINITY, f64::min);
    let high = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let (low, high) = if values.is_empty() {
        (0.0, 100.0)
    } else {
        // A little room above and below; never beyond 0..100.
        let pad = ((high - low) * 0.1).max(1.0);
        ((low - pad).max(0.0), (high + pad).min(100.0))
    };
    // x: the training step when every checkpoint has one, else the position in the run order
    let by_step = h.by_step();
    let xs: Vec<i64> = h
        .points
        .iter()
        .enumerate()
        .map(|(i, p)| match p.step.filter(|_| by_step) {
            Some(step) => i64::try_from(step).unwrap_or(i64::MAX),
            None => i as i64,
        })
        .collect();
    let first = xs.first().copied().unwrap_or(0);
    let last = xs.last().copied().unwrap_or(0).max(first + 1);
    let labels: Vec<String> = h.points.iter().map(|p| p.run.clone()).collect();
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (900, 540)).into_drawing_area();
        root.fill(&WHITE).map_err(|e| fail(&e))?;
        let mut chart = ChartBuilder::on(&root)
            .caption("avg@k per benchmark across checkpoints", ("sans-serif", 20))
            .margin(16)
            .x_label_area_size(48)
            .y_label_area_size(52)
            .build_cartesian_2d(first..last, low..high)
            .map_err(|e| fail(&e))?;
        let run_label = |x: &i64| {
            usize::try_from(*x)
                .ok()
                .and_then(|i| labels.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let step_label = |x: &i64| x.to_string();
        let mut mesh = chart.configure_mesh();
        if by_step {
            mesh.x_labels(8)
                .x_label_formatter(&step_label)
                .x_desc("training step");
        } else {
            mesh.x_labels(labels.len().max(2))
                .x_label_formatter(&run_label)
                .x_desc("checkpoint run");
        }
        mesh.y_desc("avg@k (%)").draw().map_err(|e| fail(&e))?;
        for (b, name) in h.benchmarks.iter().enumerate() {
            let colour = PALETTE[b % PALETTE.len()];
            let points: Vec<(i64, f64)> = h
                .points
                .iter()
                .enumerate()
                .filter_map(|(i, p)| Some((xs[i], p.avg_at_k[b]?)))
                .collect();
            chart
                .draw_series(LineSeries::new(points.clone(), colour.stroke_width(2)))
                .map_err(|e| fail(&e))?
                .label(name.as_str())
                // A filled square as the legend key: a polyline would look like a series.
                .legend(move |(x, y)| {
                    Rectangle::new([(x, y - 4), (x + 12, y + 4)], colour.filled())
                });
            chart
                .draw_series(points.iter().map(|p| Circle::new(*p, 3, colour.filled())))
                .map_err(|e| fail(&e))?;
        }
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK.mix(0.3))
            .draw()
            .map_err(|e| fail(&e))?;
        root.present().map_err(|e| fail(&e))?;
    }
    Ok(svg)
}
