//! `spotlight report table1 | ablations` on constructed runs: sections, Δ rows against the
//! named published row, best / second-best marking, and a golden Table 1.

mod compare_support;

use std::path::Path;
use std::process::{Command, Output};

use compare_support::{draw, model, write_run, SimBenchmark};

fn spotlight(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .args(args)
        .output()
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A run whose accuracy is (almost) `accuracy` on every benchmark: item i of n is right
/// on all k samples when i < accuracy * n.
fn flat_run(dir: &Path, accuracy: f64, items: usize, k: u32) {
    let m: Vec<SimBenchmark> = model(items, 1);
    let right = (accuracy * items as f64).round() as usize;
    let counts: Vec<Vec<u32>> = m
        .iter()
        .map(|_| (0..items).map(|i| if i < right { k } else { 0 }).collect())
        .collect();
    write_run(dir, &m, k, &counts);
}

#[test]
fn table1_inserts_the_run_below_its_published_row_with_deltas() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("my-vppo");
    // 80% on every benchmark: best in every 7B column but MMK12, where VPPO (82.8), DAPO
    // (82.1) and PAPO-D (80.6) stay ahead, so the marks move to the measured row.
    flat_run(&run, 0.8, 40, 8);
    let out = spotlight(&[
        "report",
        "table1",
        "--runs",
        path(&run),
        "--scale",
        "7B",
        "--as",
        "Qwen2.5-VL-7B+VPPO",
    ]);
    let md = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let lines: Vec<&str> = md.lines().collect();
    let vppo = lines
        .iter()
        .position(|l| l.starts_with("| Qwen2.5-VL-7B+VPPO |"))
        .unwrap();
    // The measured row right below the published one, then its difference.
    assert_eq!(
        lines[vppo + 1],
        "| *my-vppo* (measured) | **80.0** | **80.0** | 80.0 | **80.0** | **80.0** | **80.0** | **80.0** | **80.0** | **80.0** |"
    );
    // 80.0 - 71.6 = +8.4, 80.0 - 82.8 = −2.8, ... Avg 80.0 - 57.5 = +22.5.
    assert_eq!(
        lines[vppo + 2],
        "| *Δ my-vppo − Qwen2.5-VL-7B+VPPO* | +8.4 | +11.9 | −2.8 | +33.5 | +46.7 | +8.5 | +32.1 | +42.1 | +22.5 |"
    );
    // VPPO loses its bold where the run beats it, keeps it on MMK12.
    assert!(
        lines[vppo].starts_with("| Qwen2.5-VL-7B+VPPO | <u>71.6</u> | <u>68.1</u> | **82.8** |"),
        "{}",
        lines[vppo]
    );
    // Only the 7B section.
    assert!(md.contains("## 7B") && !md.contains("## 32B"), "{md}");
}

#[test]
fn table1_without_scale_shows_every_section_and_rejects_unknown_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("r32");
    flat_run(&run, 0.5, 10, 1);
    let out = spotlight(&[
        "report",
        "table1",
        "--runs",
        path(&run),
        "--as",
        "Qwen2.5-VL-32B+DAPO",
    ]);
    let md = text(&out.stdout);
    assert!(
        md.contains("## 7B") && md.contains("## 32B") && md.contains("## 8B"),
        "{md}"
    );
    // The run sits in the 32B section, under DAPO.
    let section_32 = &md[md.find("## 32B").unwrap()..md.find("## 8B").unwrap()];
    let dapo = section_32.find("| Qwen2.5-VL-32B+DAPO |").unwrap();
    let measured = section_32.find("*r32, avg@1* (measured)").unwrap();
    let vppo = section_32.find("| Qwen2.5-VL-32B+VPPO |").unwrap();
    assert!(dapo < measured && measured < vppo, "{section_32}");

    let bad = spotlight(&["report", "table1", "--runs", path(&run), "--as", "GPT-9"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(text(&bad.stderr).contains("no published row named \"GPT-9\""));

    let unfinished = tmp.path().join("unfinished");
    flat_run(&unfinished, 0.5, 10, 1);
    std::fs::remove_file(unfinished.join("summary.json")).unwrap();
    let out = spotlight(&["report", "table1", "--runs", path(&unfinished)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("unfinished/summary.json"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn ablations_insert_runs_under_their_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("tas-only");
    flat_run(&run, 0.6, 20, 8);
    let out = spotlight(&[
        "report",
        "ablations",
        "--runs",
        path(&run),
        "--as",
        "TAS only",
        "--table",
        "2",
    ]);
    let md = text(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        md.contains("## Table 2") && !md.contains("## Table 3"),
        "{md}"
    );
    let lines: Vec<&str> = md.lines().collect();
    let tas = lines
        .iter()
        .position(|l| l.starts_with("| TAS only |"))
        .unwrap();
    assert!(lines[tas + 1].starts_with("| *tas-only* (measured) |"));
    // 60.0 - 70.4 = −10.4 on MathVerse; Avg 60.0 - 56.3 = +3.7.
    assert!(
        lines[tas + 2].starts_with("| *Δ tas-only − TAS only* | −10.4 |"),
        "{}",
        lines[tas + 2]
    );
    assert!(lines[tas + 2].ends_with("| +3.7 |"), "{}", lines[tas + 2]);
    // The full method's Table 1 row heads the table as the reference.
    assert!(md.contains("| Qwen2.5-VL-7B+VPPO (Table 1) |"), "{md}");
}

/// Golden markdown of a small Table 1 (7B section, one run reproducing VPPO).
/// Regenerate with `UPDATE_SNAPSHOTS=1 cargo test --test report_tables` and review.
#[test]
fn small_table1_matches_the_snapshot() {
    let tmp = tempfile::tempdir().unwrap();
    let run = tmp.path().join("repro");
    let m = model(16, 8);
    write_run(&run, &m, 4, &draw(&m, 4, 8));
    let out = spotlight(&[
        "report",
        "table1",
        "--runs",
        path(&run),
        "--scale",
        "7B",
        "--as",
        "Qwen2.5-VL-7B+VPPO",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/snapshots/report_table1_small.md");
    let actual = text(&out.stdout);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&file, &actual).unwrap();
    }
    assert_eq!(actual, std::fs::read_to_string(&file).unwrap());
}
