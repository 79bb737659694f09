//! The two reference image pipelines in front of the processor, against Pillow and
//! transformers' slow `Qwen2VLImageProcessor` (`tools/golden/preprocess.py`, pinned versions):
//! EasyR1's `process_image` for training and LLaMA-Factory's Qwen2-VL plugin for evaluation, on
//! RGB, RGBA, LA, L, 1-bit and palette images at awkward sizes (tiny, large, aspect ratios near
//! 200, `int()` truncation). Sizes and grids must be equal, pixels equal to the last bit.

use std::path::{Path, PathBuf};

use candle_core::Device;
use serde_json::Value;
use sha2::{Digest, Sha256};
use spotlight::model::{ImageProcessor, PreResize, SourceImage};

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/preprocess")
}

fn pipeline(case: &Value) -> PreResize {
    match case["pipeline"].as_str().unwrap() {
        "eval" => PreResize::EVAL,
        "train" => PreResize::Easyr1 {
            min_pixels: case["min_pixels"].as_u64().unwrap(),
            max_pixels: case["max_pixels"].as_u64().unwrap(),
        },
        other => panic!("pipeline {other}"),
    }
}

#[test]
fn both_pipelines_equal_pillow_and_transformers_on_awkward_images() {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("cases.json")).unwrap()).unwrap();
    let processor = ImageProcessor::from_file(&root().join("preprocessor_config.json")).unwrap();
    let tensors =
        candle_core::safetensors::load(root().join("pixel_values.safetensors"), &Device::Cpu)
            .unwrap();
    let cases = meta["cases"].as_array().unwrap();
    assert!(cases.len() >= 20);
    let mut full = 0;
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let src = SourceImage::open(&root().join(case["image"].as_str().unwrap())).unwrap();
        assert_eq!(src.mode.name(), case["mode"], "{id}: PIL mode");
        let pre = pipeline(case).apply(&src);
        let wh = [pre.width() as u64, pre.height() as u64];
        assert_eq!(
            serde_json::json!(wh),
            case["pre_resized_wh"],
            "{id}: pre-resized size"
        );
        let digest = format!("{:x}", Sha256::digest(pre.as_raw()));
        assert_eq!(
            digest, case["pre_resized_sha256"],
            "{id}: pre-resized pixels"
        );

        let resized = processor
            .resize(&image::DynamicImage::ImageRgb8(pre))
            .unwrap();
        let expected = image::open(root().join(case["resized"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(
            resized.dimensions(),
            expected.dimensions(),
            "{id}: processor size"
        );
        let worst = resized
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap_or(0);
        assert_eq!(
            worst, 0,
            "{id}: processor pixels differ by up to {worst} levels"
        );
        let processed = processor.normalize(&resized);
        let g = processed.grid_thw;
        assert_eq!(
            serde_json::json!([g.t, g.h, g.w]),
            case["grid_thw"],
            "{id}: grid"
        );
        if let Some(key) = case["pixel_values"].as_str() {
            let reference: Vec<f32> = tensors[key].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(reference.len(), processed.pixel_values.len(), "{id}");
            let d = reference
                .iter()
                .zip(&processed.pixel_values)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "{id}: pixel_values differ by {d}");
            full += 1;
        }
    }
    assert!(full >= 4, "only {full} cases carry pixel_values");
}

/// The fast processor (`Qwen2VLImageProcessorFast`, torchvision on the CPU, what VPPO-RL's
/// `use_fast=True` loads) after each pipeline: its `uint8` antialiased bicubic equal to the
/// last bit, and its fused normalisation to 1e-5.
#[test]
fn the_fast_processor_equals_torchvision_on_the_same_images() {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("cases.json")).unwrap()).unwrap();
    let mut processor =
        ImageProcessor::from_file(&root().join("preprocessor_config.json")).unwrap();
    processor.kind = spotlight::model::ProcessorKind::Fast;
    let tensors =
        candle_core::safetensors::load(root().join("pixel_values.safetensors"), &Device::Cpu)
            .unwrap();
    let (mut checked, mut full, mut differs_from_slow) = (0, 0, 0);
    for case in meta["cases"].as_array().unwrap() {
        let id = case["id"].as_str().unwrap();
        let fast = &case["fast"];
        assert!(fast.is_object(), "{id}: no fast-processor reference");
        let src = SourceImage::open(&root().join(case["image"].as_str().unwrap())).unwrap();
        let pre = pipeline(case).apply(&src);
        let resized = processor
            .resize(&image::DynamicImage::ImageRgb8(pre))
            .unwrap();
        let expected = image::open(root().join(fast["resized"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        assert_eq!(resized.dimensions(), expected.dimensions(), "{id}");
        let worst = resized
            .as_raw()
            .iter()
            .zip(expected.as_raw())
            .map(|(a, b)| (*a as i32 - *b as i32).abs())
            .max()
            .unwrap_or(0);
        assert_eq!(worst, 0, "{id}: fast pixels differ by up to {worst} levels");
        let slow = image::open(root().join(case["resized"].as_str().unwrap()))
            .unwrap()
            .to_rgb8();
        differs_from_slow += usize::from(slow != expected);
        let processed = processor.normalize(&resized);
        if let Some(key) = fast["pixel_values"].as_str() {
            let reference: Vec<f32> = tensors[key].flatten_all().unwrap().to_vec1().unwrap();
            assert_eq!(reference.len(), processed.pixel_values.len(), "{id}");
            let d = reference
                .iter()
                .zip(&processed.pixel_values)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(d <= 1e-5, "{id}: fast pixel_values differ by {d}");
            full += 1;
        }
        checked += 1;
    }
    assert!(
        checked >= 20 && full >= 4,
        "{checked} cases, {full} with pixel_values"
    );
    // the two processors are not the same function: some resized images differ
    assert!(
        differs_from_slow > 0,
        "fast and slow agree everywhere: the check is empty"
    );
}

fn preprocess(args: &[&str]) -> (Value, std::process::Output) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_spotlight"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        // the tiny fixture's processor has Qwen2.5-VL-7B's settings (bounds, patch, mean, std)
        .args([
            "model",
            "preprocess",
            "--json",
            "--model",
            "tests/fixtures/qwen25vl/tiny",
        ])
        .args(args)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (v, out)
}

fn case(id: &str) -> Value {
    let meta: Value =
        serde_json::from_str(&std::fs::read_to_string(root().join("cases.json")).unwrap()).unwrap();
    meta["cases"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] == id)
        .unwrap()
        .clone()
}

/// `spotlight model preprocess` prints what the reference's path computes and writes the
/// processor's `pixel_values`, for both paths (train with `recipes/vppo.toml`'s bounds).
#[test]
fn model_preprocess_reports_and_writes_what_the_reference_computes() {
    let dir = tempfile::tempdir().unwrap();
    let out_file = dir.path().join("pixels.safetensors");
    let (v, out) = preprocess(&[
        "--image",
        root().join("images/rgb_5x7.png").to_str().unwrap(),
        "--for",
        "eval",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = case("rgb_5x7-eval");
    let wh = &golden["pre_resized_wh"];
    assert_eq!(v["pre_resized_hw"], serde_json::json!([wh[1], wh[0]]));
    assert_eq!(v["resized_hw"], golden["resized_hw"]);
    assert_eq!(v["grid_thw"], golden["grid_thw"]);
    let written = candle_core::safetensors::load(&out_file, &Device::Cpu).unwrap();
    let mine: Vec<f32> = written["pixel_values"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let tensors =
        candle_core::safetensors::load(root().join("pixel_values.safetensors"), &Device::Cpu)
            .unwrap();
    let reference: Vec<f32> = tensors[golden["pixel_values"].as_str().unwrap()]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(mine.len(), reference.len());
    let d = mine
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "pixel_values differ by {d}");
    let grid: Vec<i64> = written["image_grid_thw"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    assert_eq!(serde_json::json!(grid), golden["grid_thw"]);

    let (v, out) = preprocess(&[
        "--image",
        root().join("images/rgb_50x50.png").to_str().unwrap(),
        "--for",
        "train",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let golden = case("rgb_50x50-train-200704-1003520");
    assert_eq!(v["pre_resized_hw"], serde_json::json!([447, 447]));
    assert_eq!(v["grid_thw"], golden["grid_thw"]);
    // training follows the recipe's processor: VPPO-RL's fast one
    assert_eq!(v["processor"]["kind"], "fast");

    // --processor fast on the eval path: torchvision's pixel values
    let (v, out) = preprocess(&[
        "--image",
        root().join("images/rgb_5x7.png").to_str().unwrap(),
        "--processor",
        "fast",
        "--output",
        out_file.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(v["processor"]["kind"], "fast");
    let written = candle_core::safetensors::load(&out_file, &Device::Cpu).unwrap();
    let mine: Vec<f32> = written["pixel_values"]
        .flatten_all()
        .unwrap()
        .to_vec1()
        .unwrap();
    let key = case("rgb_5x7-eval")["fast"]["pixel_values"]
        .as_str()
        .unwrap()
        .to_string();
    let reference: Vec<f32> = tensors[&key].flatten_all().unwrap().to_vec1().unwrap();
    let d = mine
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(d <= 1e-5, "fast pixel_values differ by {d}");

    // an unreadable image is a usage error naming the file
    let (_, out) = preprocess(&["--image", "no/such.png"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no/such.png"));
}
