//! `spotlight report history`: the trend table across checkpoint runs and its SVG plot,
//! which must parse as XML and hold one line series per benchmark.

mod compare_support;

use std::path::Path;
use std::process::Command;

use compare_support::{draw, model, with_regression, write_run, SimBenchmark};

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Three checkpoints of a model that improves on MathVerse and slips on Geo3k.
fn checkpoints(dir: &Path, benchmarks: usize) -> Vec<std::path::PathBuf> {
    let base: Vec<SimBenchmark> = model(60, 2).into_iter().take(benchmarks).collect();
    let steps = [
        ("step-50", with_regression(&base, "mathverse", 20.0)),
        ("step-100", with_regression(&base, "mathverse", 10.0)),
        ("step-400", with_regression(&base, "geo3k", 10.0)),
    ];
    steps
        .iter()
        .enumerate()
        .map(|(i, (name, m))| {
            let run = dir.join(name);
            write_run(&run, m, 4, &draw(m, 4, i as u64));
            run
        })
        .collect()
}

#[test]
fn history_table_and_svg_have_one_series_per_benchmark() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = checkpoints(tmp.path(), 8);
    let md_path = tmp.path().join("history.md");
    let mut args = vec!["report", "history"];
    args.extend(runs.iter().map(|r| path(r)));
    args.extend(["--output", path(&md_path)]);
    let out = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(&args)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let md = std::fs::read_to_string(&md_path).unwrap();
    // The plot sits beside the markdown and is linked from it.
    assert!(md.contains("](history.svg)"), "{md}");
    let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| step-")).collect();
    assert_eq!(rows.len(), 3, "{md}");
    assert!(rows[0].starts_with("| step-50 |") && rows[2].starts_with("| step-400 |"));
    assert!(md.contains("| *Δ step-400 − step-50* |"), "{md}");
    assert!(md.contains("| Run | Step | MathVerse | DynaMath | MMK12 | Geo3k | MathVision | We-Math | LogicVista | MMMU-Pro | Avg |"), "{md}");
    assert!(rows[1].starts_with("| step-100 | 100 |"), "{md}");

    let svg = std::fs::read_to_string(tmp.path().join("history.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).expect("the SVG parses as XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
    // Each benchmark is one coloured polyline through the three checkpoints (the axes and
    // their ticks are black polylines).
    let series: Vec<roxmltree::Node> = series(&doc);
    assert_eq!(series.len(), 8, "one series per benchmark");
    let mut colours: Vec<&str> = series
        .iter()
        .filter_map(|n| n.attribute("stroke"))
        .collect();
    colours.sort_unstable();
    colours.dedup();
    assert_eq!(colours.len(), 8);
    for line in &series {
        let xs: Vec<f64> = line
            .attribute("points")
            .unwrap()
            .split_whitespace()
            .map(|p| p.split(',').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(xs.len(), 3, "a point per checkpoint");
        // the x axis is the training step: 50 -> 100 is a seventh of 50 -> 400
        let ratio = (xs[1] - xs[0]) / (xs[2] - xs[0]);
        assert!((ratio - 50.0 / 350.0).abs() < 0.02, "{xs:?}");
    }
    // The legend names every benchmark, and the x axis every checkpoint.
    let texts: Vec<String> = doc
        .descendants()
        .filter(|n| n.has_tag_name("text"))
        .filter_map(|n| n.text().map(|t| t.trim().to_string()))
        .collect();
    for name in [
        "MathVerse",
        "DynaMath",
        "MMK12",
        "Geo3k",
        "MathVision",
        "We-Math",
        "LogicVista",
        "MMMU-Pro",
        "training step",
    ] {
        assert!(
            texts.iter().any(|t| t == name),
            "{name} missing from {texts:?}"
        );
    }
}

#[test]
fn history_json_follows_the_run_order_and_partial_runs_have_no_avg() {
    let tmp = tempfile::tempdir().unwrap();
    let runs = checkpoints(tmp.path(), 2);
    let plot = tmp.path().join("trend.svg");
    let out = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args([
            "report",
            "history",
            path(&runs[2]),
            path(&runs[0]),
            "--json",
            "--plot",
            path(&plot),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["benchmarks"],
        serde_json::json!(["MathVerse", "DynaMath"])
    );
    let points = v["points"].as_array().unwrap();
    assert_eq!(points[0]["run"], "step-400");
    assert_eq!(points[1]["run"], "step-50");
    // Two of eight benchmarks: no Avg.
    assert!(points.iter().all(|p| p["avg"].is_null()));
    let svg = std::fs::read_to_string(&plot).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    assert_eq!(series(&doc).len(), 2);
}

/// The plot's data series: polylines not drawn in the axes' black.
fn series<'a>(doc: &'a roxmltree::Document) -> Vec<roxmltree::Node<'a, 'a>> {
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") != Some("#000000"))
        .collect()
}
