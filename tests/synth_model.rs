//! `spotlight synth model`: the project's own small checkpoint folder — the same bytes for the
//! same seed, loadable by `spotlight model`, and able to sample.

use std::path::Path;
use std::process::Command;

fn spotlight() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_spotlight"));
    c.current_dir(env!("CARGO_MANIFEST_DIR"));
    c
}

fn synth(out: &Path, seed: &str) {
    let o = spotlight()
        .args([
            "synth", "model", "--preset", "tiny", "--seed", seed, "--out",
        ])
        .arg(out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

fn files(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut v: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

#[test]
fn the_tiny_model_is_deterministic_complete_and_samples() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    synth(&a, "0");
    synth(&b, "0");
    synth(&c, "1");
    let (fa, fb, fc) = (files(&a), files(&b), files(&c));
    assert_eq!(fa, fb, "same seed, other bytes");
    let names: Vec<&str> = fa.iter().map(|(n, _)| n.as_str()).collect();
    for f in [
        "chat_template.jinja",
        "config.json",
        "generation_config.json",
        "model.safetensors",
        "preprocessor_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        assert!(names.contains(&f), "{f} missing: {names:?}");
    }
    // another seed: other weights, the same tokenizer (trained on the same text)
    let get = |v: &[(String, Vec<u8>)], n: &str| v.iter().find(|(k, _)| k == n).unwrap().1.clone();
    assert_ne!(get(&fa, "model.safetensors"), get(&fc, "model.safetensors"));

    let info = spotlight()
        .args(["model", "info", "--json"])
        .arg(&a)
        .output()
        .unwrap();
    assert!(
        info.status.success(),
        "{}",
        String::from_utf8_lossy(&info.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(
        v["architecture"], "Qwen2_5_VLForConditionalGeneration",
        "{v}"
    );
    assert_eq!(v["text"]["layers"], 4, "{v}");

    let image =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/qwen25vl/images/square56.png");
    let gen = spotlight()
        .args([
            "model",
            "generate",
            "--json",
            "--k",
            "2",
            "--max-tokens",
            "8",
            "--model",
        ])
        .arg(&a)
        .arg("--image")
        .arg(&image)
        .args(["--prompt", "How many squares are there?"])
        .output()
        .unwrap();
    assert!(
        gen.status.success(),
        "{}",
        String::from_utf8_lossy(&gen.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&gen.stdout).unwrap();
    assert_eq!(v["samples"].as_array().unwrap().len(), 2);
}
