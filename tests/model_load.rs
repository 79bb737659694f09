//! Loading checkpoint folders: both config layouts, both tensor-name layouts, save -> load round
//! trip, and bad folders failing with errors that name the file and the tensor.

mod model_common;

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use model_common::*;
use spotlight::model::{save_checkpoint, Checkpoint, ModelError, Qwen25VlConfig, Sequence};

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
    }
}

fn text_logits(ckpt: &Checkpoint) -> Tensor {
    let ids = ckpt
        .prompt_builder()
        .unwrap()
        .prompt_ids(None, "What is 2+3?", &[])
        .unwrap();
    ckpt.model
        .forward(&[Sequence {
            ids: &ids,
            images: vec![],
        }])
        .unwrap()
}

fn load_err(dir: &Path) -> String {
    match Checkpoint::load(dir) {
        Ok(_) => panic!("{} loaded although it is broken", dir.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn transformers5_config_layout_parses_to_the_same_config() {
    let root = fixtures_root();
    let hub = Qwen25VlConfig::from_file(&root.join("tiny/config.json")).unwrap();
    let tf5 = Qwen25VlConfig::from_file(&root.join("config_tf5_layout.json")).unwrap();
    assert_eq!(hub, tf5);
}

#[test]
fn saved_checkpoint_reloads_with_identical_logits_and_transformers5_tensor_names_load() {
    let tmp = tempfile::tempdir().unwrap();
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let out = tmp.path().join(name);
        ckpt.save(&out, DType::F32).unwrap();
        let again = Checkpoint::load(&out).unwrap();
        assert_eq!(again.config, ckpt.config);
        assert_eq!(
            again.chat_template.as_ref().map(|t| &t.source),
            ckpt.chat_template.as_ref().map(|t| &t.source)
        );
        assert_eq!(
            max_abs_diff(&text_logits(&ckpt), &text_logits(&again)),
            0.0,
            "{name}"
        );

        // the same weights under transformers-5 names (model.visual.*, model.language_model.*)
        let renamed: HashMap<String, Tensor> = ckpt
            .named_parameters()
            .unwrap()
            .into_iter()
            .map(|(k, v)| {
                let k = if let Some(rest) = k.strip_prefix("visual.") {
                    format!("model.visual.{rest}")
                } else if let Some(rest) = k.strip_prefix("model.") {
                    format!("model.language_model.{rest}")
                } else {
                    k
                };
                (k, v)
            })
            .collect();
        let out5 = tmp.path().join(format!("{name}-tf5"));
        save_checkpoint(
            &out5,
            &ckpt.raw_config,
            &renamed,
            DType::F32,
            Some(&ckpt.dir),
        )
        .unwrap();
        let tf5 = Checkpoint::load(&out5).unwrap();
        assert_eq!(
            max_abs_diff(&text_logits(&ckpt), &text_logits(&tf5)),
            0.0,
            "{name} (tf5 names)"
        );
    }
}

/// Copies `tiny` and rewrites its weights through `edit`.
fn tiny_with_weights(
    tmp: &Path,
    edit: impl FnOnce(&mut HashMap<String, Tensor>),
) -> std::path::PathBuf {
    let dir = tmp.join("ckpt");
    copy_dir(&fixture_dir("tiny"), &dir);
    let mut tensors =
        candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
    edit(&mut tensors);
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors")).unwrap();
    dir
}

#[test]
fn missing_tensor_names_the_file_and_the_tensor() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_with_weights(tmp.path(), |t| {
        t.remove("model.layers.1.mlp.up_proj.weight");
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors") && msg.contains("`model.layers.1.mlp.up_proj.weight`"),
        "{msg}"
    );
}

#[test]
fn wrong_shape_names_the_file_the_tensor_and_both_shapes() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tiny_with_weights(tmp.path(), |t| {
        t.insert(
            "visual.blocks.2.attn.qkv.weight".to_string(),
            Tensor::zeros((96, 31), DType::F32, &Device::Cpu).unwrap(),
        );
    });
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors")
            && msg.contains("`visual.blocks.2.attn.qkv.weight`")
            && msg.contains("[96, 31]")
            && msg.contains("[96, 32]"),
        "{msg}"
    );
}

#[test]
fn unknown_model_type_names_config_json() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    copy_dir(&fixture_dir("tiny"), &dir);
    let cfg = std::fs::read_to_string(dir.join("config.json")).unwrap();
    std::fs::write(
        dir.join("config.json"),
        cfg.replace("\"qwen2_5_vl\"", "\"llava\""),
    )
    .unwrap();
    let err = Checkpoint::load(&dir).err().unwrap();
    assert!(matches!(err, ModelError::UnsupportedModelType { .. }));
    let msg = err.to_string();
    assert!(
        msg.contains("config.json") && msg.contains("llava"),
        "{msg}"
    );
}

#[test]
fn missing_tokenizer_names_the_folder_and_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    copy_dir(&fixture_dir("tiny"), &dir);
    std::fs::remove_file(dir.join("tokenizer.json")).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("tokenizer.json") && msg.contains("ckpt"),
        "{msg}"
    );
}

#[test]
fn missing_weights_and_malformed_indexes_are_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("ckpt");
    copy_dir(&fixture_dir("sharded"), &dir);
    let index = dir.join("model.safetensors.index.json");
    let good = std::fs::read_to_string(&index).unwrap();

    std::fs::write(&index, "{\"weight_map\": ").unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains("model.safetensors.index.json") && msg.contains("malformed"),
        "{msg}"
    );

    std::fs::write(&index, "{\"metadata\": {}}").unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("weight_map"), "{msg}");

    // a shard the index names but the folder lacks
    std::fs::write(
        &index,
        good.replace("model-00002-of-00002", "model-00009-of-00009"),
    )
    .unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("model-00009-of-00009.safetensors"), "{msg}");

    // a tensor routed to a shard that does not hold it
    let v: serde_json::Value = serde_json::from_str(&good).unwrap();
    let (tensor, file) = v["weight_map"].as_object().unwrap().iter().next().unwrap();
    let other = if file.as_str().unwrap().contains("00001") {
        "model-00002-of-00002.safetensors"
    } else {
        "model-00001-of-00002.safetensors"
    };
    let moved = good.replacen(
        &format!("\"{tensor}\": {file}"),
        &format!("\"{tensor}\": \"{other}\""),
        1,
    );
    assert_ne!(moved, good);
    std::fs::write(&index, moved).unwrap();
    let msg = load_err(&dir);
    assert!(
        msg.contains(other) && msg.contains(tensor.as_str()),
        "{msg}"
    );

    // no weights at all
    std::fs::remove_file(&index).unwrap();
    let msg = load_err(&dir);
    assert!(msg.contains("no weights"), "{msg}");
}
