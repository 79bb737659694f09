//! `spotlight perception` (single-case mode) against transformers: token dependency S of each
//! response token, computed by `tools/golden/perception.py` on the `tiny` and `odd` fixtures
//! with the full-mask measure (grey 128 and black) and the text-only prompt.

use std::process::Command;

use serde_json::Value;

#[test]
fn single_case_dependency_equals_transformers() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let meta: Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("tests/fixtures/perception/cases.json")).unwrap(),
    )
    .unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 18);
    let mut worst = 0f64;
    for case in cases {
        let label = format!(
            "{}/{} {} {}",
            case["fixture"], case["case"], case["measure"], case["fill"]
        );
        let fixture = root
            .join("tests/fixtures/qwen25vl")
            .join(case["fixture"].as_str().unwrap());
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spotlight"));
        cmd.current_dir(root)
            .args(["perception", "--json", "--model"])
            .arg(&fixture)
            .arg("--image")
            .arg(
                root.join("tests/fixtures/qwen25vl/images")
                    .join(case["image"].as_str().unwrap()),
            )
            .args(["--prompt", case["prompt"].as_str().unwrap()])
            .args(["--response", case["response"].as_str().unwrap()]);
        match case["measure"].as_str().unwrap() {
            "full_mask" => {
                cmd.args(["--measure", "full-mask", "--fill"])
                    .arg(case["fill"].to_string());
            }
            "no_image" => {
                cmd.args(["--measure", "no-image"]);
            }
            other => panic!("{other}"),
        }
        let out = cmd.output().unwrap();
        assert!(
            out.status.success(),
            "{label}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["token_ids"], case["response_ids"], "{label}: token ids");
        for key in ["logprobs", "perturbed_logprobs", "token_dependency"] {
            let (mine, theirs) = (v[key].as_array().unwrap(), case[key].as_array().unwrap());
            assert_eq!(mine.len(), theirs.len(), "{label}: {key}");
            for (a, b) in mine.iter().zip(theirs) {
                let d = (a.as_f64().unwrap() - b.as_f64().unwrap()).abs();
                worst = worst.max(d);
                assert!(d <= 1e-4, "{label}: {key} differs by {d}");
            }
        }
        let d = (v["trajectory_dependency"].as_f64().unwrap()
            - case["trajectory_dependency"].as_f64().unwrap())
        .abs();
        assert!(d <= 1e-4, "{label}: trajectory dependency differs by {d}");
    }
    println!("{} cases, max |delta| {worst:e}", cases.len());
}

/// The random measures draw from the seeded stream: the same seed gives the same image,
/// another seed another, and `--mask-out` writes the image the processor received.
#[test]
fn the_blackening_measure_is_seeded_and_written_out() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let run = |seed: u64, out: &std::path::Path| -> Value {
        let o = Command::new(env!("CARGO_BIN_EXE_spotlight"))
            .current_dir(root)
            .args([
                "perception",
                "--json",
                "--model",
                "tests/fixtures/qwen25vl/tiny",
            ])
            .args(["--image", "tests/fixtures/qwen25vl/images/wide84x112.png"])
            .args([
                "--prompt",
                "What colour is the shape?",
                "--response",
                "The shape is red.",
            ])
            .args(["--seed", &seed.to_string(), "--mask-out"])
            .arg(out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        serde_json::from_slice(&o.stdout).unwrap()
    };
    let (a, b, c) = (
        dir.path().join("a.png"),
        dir.path().join("b.png"),
        dir.path().join("c.png"),
    );
    let (va, vb, _) = (run(1, &a), run(1, &b), run(2, &c));
    assert_eq!(va["token_dependency"], vb["token_dependency"]);
    let img = |p: &std::path::Path| image::open(p).unwrap().to_rgb8();
    assert_eq!(img(&a), img(&b));
    assert_ne!(img(&a), img(&c));
    let black = img(&a).pixels().filter(|p| p.0 == [0, 0, 0]).count();
    let total = (img(&a).width() * img(&a).height()) as usize;
    assert!(
        black > total / 5 && black < total * 4 / 5,
        "{black} of {total} pixels black"
    );
}

/// Benchmark mode on the synthetic split: every token row's S is the k3 value of its own two
/// log-probs, TGF selects ceil(0.4 n) tokens of each response, and the summary counts the rows.
#[test]
fn benchmark_mode_writes_tokens_summary_and_report() {
    use arrow::array::{Array, BooleanArray, Float64Array, StringArray, UInt32Array};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .current_dir(root)
        .args(["perception", "--model", "tests/fixtures/qwen25vl/tiny"])
        .args([
            "--bench",
            "synth-perception",
            "--k",
            "2",
            "--limit",
            "3",
            "--max-tokens",
            "12",
        ])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["overall"]["responses"], 6);
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("| SynthPerception | 6 |"), "{report}");

    let file = std::fs::File::open(dir.path().join("tokens.parquet")).unwrap();
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(file)
        .unwrap()
        .build()
        .unwrap();
    let mut rows = 0usize;
    let mut per_response: std::collections::BTreeMap<(String, u32), (usize, usize)> =
        Default::default();
    for batch in reader {
        let b = batch.unwrap();
        let col = |n: &str| b.column_by_name(n).unwrap().clone();
        let f = |n: &str| {
            col(n)
                .as_any()
                .downcast_ref::<Float64Array>()
                .unwrap()
                .clone()
        };
        let (old, aug, s) = (f("logprob"), f("perturbed_logprob"), f("dependency"));
        let item = col("item_id");
        let item = item.as_any().downcast_ref::<StringArray>().unwrap();
        let sample = col("sample");
        let sample = sample.as_any().downcast_ref::<UInt32Array>().unwrap();
        let tgf = col("tgf_selected");
        let tgf = tgf.as_any().downcast_ref::<BooleanArray>().unwrap();
        for i in 0..b.num_rows() {
            let d = (aug.value(i) - old.value(i)).clamp(-20.0, 20.0);
            let k3 = (d.exp() - d - 1.0).clamp(0.0, 10.0);
            assert!(
                (k3 - s.value(i)).abs() < 1e-12,
                "row {i}: {k3} vs {}",
                s.value(i)
            );
            let e = per_response
                .entry((item.value(i).to_string(), sample.value(i)))
                .or_default();
            e.0 += 1;
            e.1 += usize::from(tgf.value(i));
        }
        rows += b.num_rows();
    }
    assert_eq!(summary["overall"]["tokens"], rows);
    assert_eq!(per_response.len(), 6);
    for ((item, sample), (n, kept)) in per_response {
        assert_eq!(
            kept,
            (0.4 * n as f64).ceil() as usize,
            "{item}/{sample}: {kept} of {n}"
        );
    }
}

/// The negative control: a checkpoint whose vision tower is cut off (the merger's last layer
/// zeroed, so every image becomes the same zero features) makes `--check` exit 1 with the
/// warning; the intact checkpoint passes.
#[test]
fn check_fails_when_the_image_never_reaches_the_model() {
    use candle_core::{Device, Tensor};
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("tests/fixtures/qwen25vl/tiny");
    let dir = tempfile::tempdir().unwrap();
    let cut = dir.path().join("cut");
    std::fs::create_dir_all(&cut).unwrap();
    for entry in std::fs::read_dir(&src).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            std::fs::copy(&p, cut.join(p.file_name().unwrap())).unwrap();
        }
    }
    let weights = candle_core::safetensors::load(src.join("model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_iter()
        .map(|(k, v)| {
            let v = if k.starts_with("visual.merger.mlp.2") {
                Tensor::zeros_like(&v).unwrap()
            } else {
                v
            };
            (k, v)
        })
        .collect::<std::collections::HashMap<_, _>>();
    candle_core::safetensors::save(&weights, cut.join("model.safetensors")).unwrap();
    let check = |model: &std::path::Path| {
        Command::new(env!("CARGO_BIN_EXE_spotlight"))
            .current_dir(root)
            .args(["perception", "--check", "--model"])
            .arg(model)
            .args([
                "--bench",
                "synth-perception",
                "--k",
                "2",
                "--limit",
                "2",
                "--max-tokens",
                "8",
            ])
            .arg("--out")
            .arg(
                dir.path()
                    .join(model.file_name().unwrap())
                    .with_extension("out"),
            )
            .output()
            .unwrap()
    };
    let bad = check(&cut);
    assert_eq!(
        bad.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&bad.stderr)
    );
    assert!(String::from_utf8_lossy(&bad.stderr).contains("may not be reaching the model"));
    let good = check(&src);
    assert_eq!(
        good.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&good.stderr)
    );
}

/// `--compare-measures` computes the other measures on the same responses: the main measure
/// compared with itself (same seed, same masks) correlates perfectly, another one lies in
/// [-1, 1], and the report lists both.
#[test]
fn compared_measures_run_on_the_same_responses() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .current_dir(root)
        .args(["perception", "--model", "tests/fixtures/qwen25vl/tiny"])
        .args([
            "--bench",
            "synth-perception",
            "--k",
            "2",
            "--limit",
            "3",
            "--max-tokens",
            "12",
        ])
        .args(["--compare-measures", "patch-blackening,full-mask"])
        .arg("--out")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    let c = summary["measure_comparison"].as_array().unwrap();
    assert_eq!(c.len(), 2);
    let rho = |i: usize, k: &str| c[i][k].as_f64().unwrap();
    assert!((rho(0, "token_spearman") - 1.0).abs() < 1e-9);
    assert!((rho(0, "trajectory_spearman") - 1.0).abs() < 1e-9);
    assert!((-1.0..=1.0).contains(&rho(1, "token_spearman")));
    let report = std::fs::read_to_string(dir.path().join("report.md")).unwrap();
    assert!(report.contains("Measures compared"), "{report}");
}
