//! The project's own small Qwen2.5-VL checkpoints (`spotlight synth model`): a byte-level BPE
//! tokenizer trained on the synthetic perception task's text with Qwen's special tokens and
//! chat template, a config from a preset (`recipes/models/<preset>.toml`), and random weights —
//! a folder laid out exactly like a Hugging Face checkpoint, which transformers loads too.

use std::path::Path;

use arrow::array::{Array, AsArray};
use serde::Deserialize;
use serde_json::{json, Value};
use tokenizers::models::bpe::BpeTrainerBuilder;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::{AddedToken, Tokenizer};

use super::SynthError;

/// Qwen2's pre-tokenizer split pattern, as its tokenizer.json has it.
pub const QWEN_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Qwen2.5-VL's special tokens, in their id order (after the BPE vocabulary).
pub const SPECIAL_TOKENS: &[&str] = &[
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|object_ref_start|>",
    "<|object_ref_end|>",
    "<|box_start|>",
    "<|box_end|>",
    "<|quad_start|>",
    "<|quad_end|>",
    "<|vision_start|>",
    "<|vision_end|>",
    "<|vision_pad|>",
    "<|image_pad|>",
    "<|video_pad|>",
];

/// A `recipes/models/<preset>.toml` file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelPreset {
    pub description: String,
    pub tokenizer: TokenizerPreset,
    pub text: TextPreset,
    pub vision: VisionPreset,
    pub image: ImagePreset,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenizerPreset {
    /// BPE vocabulary size before the special tokens.
    pub bpe_vocab: usize,
    /// Synthetic perception items whose text trains the tokenizer.
    pub corpus_items: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextPreset {
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub mrope_section: [usize; 3],
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    pub max_position_embeddings: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VisionPreset {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub window_size: usize,
    pub fullatt_block_indexes: Vec<usize>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImagePreset {
    pub min_pixels: usize,
    pub max_pixels: usize,
}

impl ModelPreset {
    pub fn load(path: &Path) -> Result<Self, SynthError> {
        let text = std::fs::read_to_string(path).map_err(|source| SynthError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| SynthError::Preset {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }
}

/// The tokenizer's training text: the synthetic perception task's questions and reference
/// solutions, and the VPPO instruction.
fn corpus(items: usize, seed: u64) -> Result<Vec<String>, SynthError> {
    let batch = super::perception::perception_table("train", items, seed)?.into_batch()?;
    let mut out = vec![crate::bench::manifest::VPPO_INSTRUCTION.to_string()];
    for name in ["problem", "solution"] {
        let column = batch
            .column_by_name(name)
            .ok_or_else(|| SynthError::Arrow(format!("no column {name}")))?;
        let strings = column.as_string::<i32>();
        out.extend(
            (0..strings.len())
                .filter(|&i| strings.is_valid(i))
                .map(|i| strings.value(i).to_string()),
        );
    }
    Ok(out)
}

/// Trains the byte-level BPE (Qwen2's pre-tokenizer) and adds the special tokens after it.
pub fn train_tokenizer(
    bpe_vocab: usize,
    corpus_items: usize,
    seed: u64,
) -> Result<Tokenizer, SynthError> {
    let fail = |e: tokenizers::Error| SynthError::Tokenizer(e.to_string());
    let skeleton = json!({
        "version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
        "normalizer": {"type": "NFC"},
        "pre_tokenizer": {"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": QWEN_SPLIT}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}
        ]},
        "post_processor": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "decoder": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false},
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                  "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                  "ignore_merges": false, "vocab": {}, "merges": []}
    });
    let mut tokenizer: Tokenizer = skeleton.to_string().parse().map_err(fail)?;
    let trainer = BpeTrainerBuilder::new()
        .vocab_size(bpe_vocab)
        .min_frequency(1)
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .show_progress(false)
        .build();
    let texts = corpus(corpus_items, seed)?;
    let mut wrapped: tokenizers::models::TrainerWrapper = trainer.into();
    tokenizer.train(&mut wrapped, texts.iter()).map_err(fail)?;
    let specials: Vec<AddedToken> = SPECIAL_TOKENS
        .iter()
        .map(|s| AddedToken::from(*s, true))
        .collect();
    tokenizer.add_special_tokens(&specials);
    Ok(tokenizer)
}

/// Writes a complete checkpoint folder for `preset` into `out`; returns the parameter count.
pub fn write_model(
    preset: &ModelPreset,
    chat_template: &str,
    out: &Path,
    seed: u64,
) -> Result<usize, SynthError> {
    std::fs::create_dir_all(out).map_err(|source| SynthError::Io {
        path: out.to_path_buf(),
        source,
    })?;
    let tokenizer = train_tokenizer(
        preset.tokenizer.bpe_vocab,
        preset.tokenizer.corpus_items,
        seed,
    )?;
    let id = |s: &str| {
        tokenizer
            .token_to_id(s)
            .ok_or_else(|| SynthError::Tokenizer(format!("{s} missing after training")))
    };
    let tokenizer_size = tokenizer.get_vocab_size(true);
    let vocab_size = tokenizer_size.div_ceil(64) * 64;
    let write = |name: &str, text: String| -> Result<(), SynthError> {
        std::fs::write(out.join(name), text).map_err(|source| SynthError::Io {
            path: out.join(name),
            source,
        })
    };
    write(
        "tokenizer.json",
        tokenizer
            .to_string(true)
            .map_err(|e| SynthError::Tokenizer(e.to_string()))?,
    )?;
    let added: serde_json::Map<String, Value> = SPECIAL_TOKENS
        .iter()
        .map(|s| {
            Ok((
                id(s)?.to_string(),
                json!({"content": s, "lstrip": false, "normalized": false, "rstrip": false,
                       "single_word": false, "special": true}),
            ))
        })
        .collect::<Result<_, SynthError>>()?;
    write(
        "tokenizer_config.json",
        pretty(&json!({
            "added_tokens_decoder": added,
            "bos_token": null,
            "clean_up_tokenization_spaces": false,
            "eos_token": "<|im_end|>",
            "errors": "replace",
            "model_max_length": preset.text.max_position_embeddings,
            "pad_token": "<|endoftext|>",
            "tokenizer_class": "Qwen2Tokenizer",
            "unk_token": null,
        }))?,
    )?;
    write("chat_template.jinja", chat_template.to_string())?;
    write(
        "preprocessor_config.json",
        pretty(&json!({
            "do_convert_rgb": true, "do_normalize": true, "do_rescale": true, "do_resize": true,
            "image_mean": [0.48145466, 0.4578275, 0.40821073],
            "image_std": [0.26862954, 0.26130258, 0.27577711],
            "image_processor_type": "Qwen2VLImageProcessor",
            "merge_size": 2, "patch_size": 14, "temporal_patch_size": 2,
            "processor_class": "Qwen2_5_VLProcessor",
            "resample": 3, "rescale_factor": 0.00392156862745098,
            "min_pixels": preset.image.min_pixels, "max_pixels": preset.image.max_pixels,
        }))?,
    )?;
    let (eos, pad) = (id("<|im_end|>")?, id("<|endoftext|>")?);
    write(
        "generation_config.json",
        pretty(
            &json!({"bos_token_id": pad, "eos_token_id": [eos, pad], "pad_token_id": pad,
                       "do_sample": true, "temperature": 1.0, "top_p": 1.0}),
        )?,
    )?;
    let (t, v) = (&preset.text, &preset.vision);
    let mut config = json!({
        "architectures": ["Qwen2_5_VLForConditionalGeneration"],
        "model_type": "qwen2_5_vl",
        "attention_dropout": 0.0,
        "bos_token_id": pad,
        "eos_token_id": eos,
        "vision_start_token_id": id("<|vision_start|>")?,
        "vision_end_token_id": id("<|vision_end|>")?,
        "vision_token_id": id("<|vision_pad|>")?,
        "image_token_id": id("<|image_pad|>")?,
        "video_token_id": id("<|video_pad|>")?,
        "hidden_act": "silu",
        "hidden_size": t.hidden_size,
        "initializer_range": 0.02,
        "intermediate_size": t.intermediate_size,
        "max_position_embeddings": t.max_position_embeddings,
        "max_window_layers": t.num_hidden_layers,
        "num_attention_heads": t.num_attention_heads,
        "num_hidden_layers": t.num_hidden_layers,
        "num_key_value_heads": t.num_key_value_heads,
        "rms_norm_eps": 1e-6,
        "rope_theta": t.rope_theta,
        "sliding_window": t.max_position_embeddings,
        "tie_word_embeddings": t.tie_word_embeddings,
        "torch_dtype": "float32",
        "use_cache": true,
        "use_sliding_window": false,
        "vocab_size": vocab_size,
        "rope_scaling": {"type": "mrope", "mrope_section": t.mrope_section},
    });
    config["vision_config"] = json!({
            "depth": v.depth,
            "hidden_act": "silu",
            "hidden_size": v.hidden_size,
            "intermediate_size": v.intermediate_size,
            "num_heads": v.num_heads,
            "in_chans": 3,
            "out_hidden_size": t.hidden_size,
            "patch_size": 14,
            "spatial_merge_size": 2,
            "spatial_patch_size": 14,
            "window_size": v.window_size,
            "fullatt_block_indexes": v.fullatt_block_indexes,
            "tokens_per_second": 2,
            "temporal_patch_size": 2,
    });
    crate::model::init::write_random_checkpoint(&config, out, seed, None)
        .map_err(|e| SynthError::Model(e.to_string()))
}

fn pretty(v: &Value) -> Result<String, SynthError> {
    serde_json::to_string_pretty(v)
        .map(|s| s + "\n")
        .map_err(|e| SynthError::Arrow(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tokenizer_is_deterministic_and_round_trips_the_task_text() {
        let a = train_tokenizer(400, 200, 1).unwrap();
        let b = train_tokenizer(400, 200, 1).unwrap();
        assert_eq!(a.to_string(false).unwrap(), b.to_string(false).unwrap());
        assert_eq!(a.token_to_id("<|endoftext|>"), Some(400));
        assert_eq!(a.token_to_id("<|video_pad|>"), Some(413));
        let text = "<think>There are 3 red squares.</think>\nThe answer is \\boxed{3}.";
        let ids = a.encode(text, false).unwrap();
        assert_eq!(a.decode(ids.get_ids(), false).unwrap(), text);
        // the special tokens are single tokens
        let ids = a.encode("<|im_start|>user", false).unwrap();
        assert_eq!(ids.get_ids()[0], a.token_to_id("<|im_start|>").unwrap());
    }
}
