//! `config.json` of a Qwen2.5-VL checkpoint.
//!
//! Two layouts exist in the wild and both must load: the hub layout of the released checkpoints
//! (text keys flat at the top level, `rope_scaling: {"type": "mrope", "mrope_section": [..]}`,
//! vision keys `in_chans`) and the transformers-5 layout (`text_config: {.., rope_parameters:
//! {rope_theta, mrope_section}}`, `in_channels`). Each text field is looked up in `text_config`
//! first and at the top level second, so mixed files (transformers 4.5x writes both) load too.

use std::path::Path;

use serde_json::{json, Map, Value};

use super::ModelError;

/// The language model's hyper-parameters (a Qwen2 decoder with M-RoPE).
#[derive(Debug, Clone, PartialEq)]
pub struct TextConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    /// How the rotary half-dimension is split between (temporal, height, width) positions.
    pub mrope_section: Vec<usize>,
    pub tie_word_embeddings: bool,
}

impl TextConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }
}

/// The vision tower's hyper-parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct VisionConfig {
    pub depth: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_heads: usize,
    pub in_channels: usize,
    /// Width of the merger's output: the language model's hidden size.
    pub out_hidden_size: usize,
    pub patch_size: usize,
    pub spatial_merge_size: usize,
    pub temporal_patch_size: usize,
    /// Side of an attention window in pixels (112 in the released models).
    pub window_size: usize,
    /// Blocks that attend over the whole image instead of within windows.
    pub fullatt_block_indexes: Vec<usize>,
    pub tokens_per_second: usize,
}

impl VisionConfig {
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads
    }
    /// Values in one flattened patch: channels x temporal x patch x patch (1176 for Qwen2.5-VL).
    pub fn patch_dim(&self) -> usize {
        self.in_channels * self.temporal_patch_size * self.patch_size * self.patch_size
    }
    /// Side of an attention window in merged tokens.
    pub fn merger_window_size(&self) -> usize {
        self.window_size / self.spatial_merge_size / self.patch_size
    }
}

/// A whole Qwen2.5-VL configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Qwen25VlConfig {
    pub text: TextConfig,
    pub vision: VisionConfig,
    pub image_token_id: u32,
    pub video_token_id: u32,
    pub vision_start_token_id: u32,
    pub vision_end_token_id: u32,
    /// End-of-sequence ids (one or several in the file).
    pub eos_token_ids: Vec<u32>,
    /// The dtype the weights were saved in (`torch_dtype` / `dtype`), as written.
    pub saved_dtype: Option<String>,
}

/// Field lookup with errors that name the file and the field.
struct Fields<'a> {
    path: &'a Path,
    top: &'a Map<String, Value>,
    text: Option<&'a Map<String, Value>>,
}

impl<'a> Fields<'a> {
    /// A text field: `text_config.<key>` first, then the top level.
    fn text_value(&self, key: &str) -> Option<&'a Value> {
        self.text
            .and_then(|t| t.get(key))
            .or_else(|| self.top.get(key))
    }
    fn text_usize(&self, key: &str) -> Result<usize, ModelError> {
        let v = self
            .text_value(key)
            .ok_or_else(|| ModelError::config(self.path, key, "missing"))?;
        as_usize(self.path, key, v)
    }
    fn text_f64(&self, key: &str) -> Result<Option<f64>, ModelError> {
        match self.text_value(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                ModelError::config(self.path, key, format!("expected a number, found {v}"))
            }),
        }
    }
    fn top_u32(&self, key: &str, default: Option<u32>) -> Result<u32, ModelError> {
        match self.text_value(key) {
            Some(v) => {
                let n = as_usize(self.path, key, v)?;
                u32::try_from(n)
                    .map_err(|_| ModelError::config(self.path, key, "does not fit in u32"))
            }
            None => default.ok_or_else(|| ModelError::config(self.path, key, "missing")),
        }
    }
}

fn as_usize(path: &Path, key: &str, v: &Value) -> Result<usize, ModelError> {
    v.as_u64()
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| {
            ModelError::config(
                path,
                key,
                format!("expected a non-negative integer, found {v}"),
            )
        })
}

fn usize_list(path: &Path, key: &str, v: &Value) -> Result<Vec<usize>, ModelError> {
    let arr = v.as_array().ok_or_else(|| {
        ModelError::config(path, key, format!("expected a list of integers, found {v}"))
    })?;
    arr.iter().map(|x| as_usize(path, key, x)).collect()
}

impl Qwen25VlConfig {
    /// Reads and validates `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json_str(&text, path)
    }

    /// Parses a config from JSON text; `path` is only used in error messages.
    pub fn from_json_str(text: &str, path: &Path) -> Result<Self, ModelError> {
        let value: Value = serde_json::from_str(text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&value, path)
    }

    /// Parses a config from a JSON value; `path` is only used in error messages.
    pub fn from_json(value: &Value, path: &Path) -> Result<Self, ModelError> {
        let top = value
            .as_object()
            .ok_or_else(|| ModelError::config(path, "<root>", "expected a JSON object"))?;
        let model_type = top
            .get("model_type")
            .and_then(Value::as_str)
            .ok_or_else(|| ModelError::config(path, "model_type", "missing"))?;
        if model_type != "qwen2_5_vl" {
            return Err(ModelError::UnsupportedModelType {
                path: path.to_path_buf(),
                found: model_type.to_string(),
            });
        }
        let text_obj = match top.get("text_config") {
            None | Some(Value::Null) => None,
            Some(Value::Object(m)) => Some(m),
            Some(other) => {
                return Err(ModelError::config(
                    path,
                    "text_config",
                    format!("expected an object, found {other}"),
                ))
            }
        };
        let f = Fields {
            path,
            top,
            text: text_obj,
        };

        for key in ["hidden_act"] {
            if let Some(v) = f.text_value(key) {
                if v.as_str() != Some("silu") {
                    return Err(ModelError::config(
                        path,
                        key,
                        format!("only \"silu\" is implemented, found {v}"),
                    ));
                }
            }
        }

        if f.text_value("use_sliding_window").and_then(Value::as_bool) == Some(true) {
            return Err(ModelError::config(
                path,
                "use_sliding_window",
                "sliding-window attention in the language model is not implemented",
            ));
        }

        // rope: `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (hub)
        let rope_params = f.text_value("rope_parameters").and_then(Value::as_object);
        let rope_theta = match rope_params.and_then(|p| p.get("rope_theta")) {
            Some(v) => v.as_f64().ok_or_else(|| {
                ModelError::config(path, "rope_parameters.rope_theta", "expected a number")
            })?,
            None => f.text_f64("rope_theta")?.unwrap_or(1_000_000.0),
        };
        let mrope_value = rope_params
            .and_then(|p| p.get("mrope_section"))
            .map(|v| ("rope_parameters.mrope_section", v))
            .or_else(|| {
                f.text_value("rope_scaling")
                    .and_then(|s| s.get("mrope_section"))
                    .map(|v| ("rope_scaling.mrope_section", v))
            });
        let mrope_section = match mrope_value {
            Some((field, v)) => usize_list(path, field, v)?,
            None => {
                return Err(ModelError::config(
                    path,
                    "rope_scaling.mrope_section",
                    "missing",
                ))
            }
        };

        let tie = match top
            .get("tie_word_embeddings")
            .or_else(|| f.text_value("tie_word_embeddings"))
        {
            None => false,
            Some(v) => v.as_bool().ok_or_else(|| {
                ModelError::config(path, "tie_word_embeddings", "expected true or false")
            })?,
        };

        let text = TextConfig {
            vocab_size: f.text_usize("vocab_size")?,
            hidden_size: f.text_usize("hidden_size")?,
            intermediate_size: f.text_usize("intermediate_size")?,
            num_hidden_layers: f.text_usize("num_hidden_layers")?,
            num_attention_heads: f.text_usize("num_attention_heads")?,
            num_key_value_heads: match f.text_value("num_key_value_heads") {
                Some(v) => as_usize(path, "num_key_value_heads", v)?,
                None => f.text_usize("num_attention_heads")?,
            },
            rms_norm_eps: f.text_f64("rms_norm_eps")?.unwrap_or(1e-6),
            rope_theta,
            mrope_section,
            tie_word_embeddings: tie,
        };

        let vis = top
            .get("vision_config")
            .and_then(Value::as_object)
            .ok_or_else(|| ModelError::config(path, "vision_config", "missing"))?;
        let vget = |key: &str, default: Option<usize>| -> Result<usize, ModelError> {
            let field = format!("vision_config.{key}");
            match vis.get(key) {
                Some(v) => as_usize(path, &field, v),
                None => default.ok_or_else(|| ModelError::config(path, &field, "missing")),
            }
        };
        if let Some(v) = vis.get("hidden_act") {
            if v.as_str() != Some("silu") {
                return Err(ModelError::config(
                    path,
                    "vision_config.hidden_act",
                    format!("only \"silu\" is implemented, found {v}"),
                ));
            }
        }
        let in_channels = match vis.get("in_channels").or_else(|| vis.get("in_chans")) {
            Some(v) => as_usize(path, "vision_config.in_channels", v)?,
            None => 3,
        };
        let vision = VisionConfig {
            depth: vget("depth", None)?,
            hidden_size: vget("hidden_size", None)?,
            intermediate_size: vget("intermediate_size", None)?,
            num_heads: vget("num_heads", None)?,
            in_channels,
            out_hidden_size: vget("out_hidden_size", Some(text.hidden_size))?,
            patch_size: vget("patch_size", Some(14))?,
            spatial_merge_size: vget("spatial_merge_size", Some(2))?,
            temporal_patch_size: vget("temporal_patch_size", Some(2))?,
            window_size: vget("window_size", Some(112))?,
            fullatt_block_indexes: match vis.get("fullatt_block_indexes") {
                Some(v) => usize_list(path, "vision_config.fullatt_block_indexes", v)?,
                None => Vec::new(),
            },
            tokens_per_second: vget("tokens_per_second", Some(2))?,
        };

        let eos_token_ids = match f.text_value("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|x| as_usize(path, "eos_token_id", x).map(|n| n as u32))
                .collect::<Result<_, _>>()?,
            Some(v) => vec![as_usize(path, "eos_token_id", v)? as u32],
        };
        let saved_dtype = top
            .get("torch_dtype")
            .or_else(|| top.get("dtype"))
            .or_else(|| f.text_value("torch_dtype"))
            .or_else(|| f.text_value("dtype"))
            .and_then(Value::as_str)
            .map(str::to_string);

        let config = Qwen25VlConfig {
            text,
            vision,
            image_token_id: f.top_u32("image_token_id", Some(151655))?,
            video_token_id: f.top_u32("video_token_id", Some(151656))?,
            vision_start_token_id: f.top_u32("vision_start_token_id", Some(151652))?,
            vision_end_token_id: f.top_u32("vision_end_token_id", Some(151653))?,
            eos_token_ids,
            saved_dtype,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Checks the relations the model code relies on, so a bad file fails here with a field name
    /// instead of deep inside a reshape.
    fn validate(&self, path: &Path) -> Result<(), ModelError> {
        let t = &self.text;
        let v = &self.vision;
        let nonzero = [
            ("vocab_size", t.vocab_size),
            ("hidden_size", t.hidden_size),
            ("intermediate_size", t.intermediate_size),
            ("num_attention_heads", t.num_attention_heads),
            ("num_key_value_heads", t.num_key_value_heads),
            ("vision_config.hidden_size", v.hidden_size),
            ("vision_config.num_heads", v.num_heads),
            ("vision_config.patch_size", v.patch_size),
            ("vision_config.spatial_merge_size", v.spatial_merge_size),
            ("vision_config.temporal_patch_size", v.temporal_patch_size),
            ("vision_config.in_channels", v.in_channels),
        ];
        for (field, n) in nonzero {
            if n == 0 {
                return Err(ModelError::config(path, field, "must be positive"));
            }
        }
        if t.hidden_size % t.num_attention_heads != 0 {
            return Err(ModelError::config(
                path,
                "hidden_size",
                "not divisible by num_attention_heads",
            ));
        }
        if t.num_attention_heads % t.num_key_value_heads != 0 {
            return Err(ModelError::config(
                path,
                "num_key_value_heads",
                "does not divide num_attention_heads",
            ));
        }
        if t.head_dim() % 2 != 0
            || t.mrope_section.len() != 3
            || t.mrope_section.iter().sum::<usize>() * 2 != t.head_dim()
        {
            return Err(ModelError::config(
                path,
                "mrope_section",
                format!(
                    "{:?} must have three entries summing to head_dim / 2 = {}",
                    t.mrope_section,
                    t.head_dim() / 2
                ),
            ));
        }
        if v.hidden_size % v.num_heads != 0 || v.head_dim() % 4 != 0 {
            return Err(ModelError::config(
                path,
                "vision_config.num_heads",
                "vision head_dim (hidden_size / num_heads) must be a multiple of 4",
            ));
        }
        if v.merger_window_size() == 0 || v.window_size % (v.spatial_merge_size * v.patch_size) != 0
        {
            return Err(ModelError::config(
                path,
                "vision_config.window_size",
                "must be a positive multiple of spatial_merge_size * patch_size",
            ));
        }
        if let Some(&i) = v.fullatt_block_indexes.iter().find(|&&i| i >= v.depth) {
            return Err(ModelError::config(
                path,
                "vision_config.fullatt_block_indexes",
                format!("index {i} >= depth {}", v.depth),
            ));
        }
        Ok(())
    }

    /// The config in the hub layout (what released checkpoints carry), for saving a checkpoint
    /// built in memory. A loaded checkpoint re-saves its original file instead.
    pub fn to_hub_json(&self) -> Value {
        let t = &self.text;
        let v = &self.vision;
        json!({
            "architectures": ["Qwen2_5_VLForConditionalGeneration"],
            "model_type": "qwen2_5_vl",
            "hidden_act": "silu",
            "vocab_size": t.vocab_size,
            "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size,
            "num_hidden_layers": t.num_hidden_layers,
            "num_attention_heads": t.num_attention_heads,
            "num_key_value_heads": t.num_key_value_heads,
            "rms_norm_eps": t.rms_norm_eps,
            "rope_theta": t.rope_theta,
            "rope_scaling": {"type": "mrope", "mrope_section": t.mrope_section},
            "tie_word_embeddings": t.tie_word_embeddings,
            "image_token_id": self.image_token_id,
            "video_token_id": self.video_token_id,
            "vision_start_token_id": self.vision_start_token_id,
            "vision_end_token_id": self.vision_end_token_id,
            "eos_token_id": match self.eos_token_ids.as_slice() {
                [one] => json!(one),
                many => json!(many),
            },
            "torch_dtype": self.saved_dtype,
            "vision_config": {
                "depth": v.depth,
                "hidden_act": "silu",
                "hidden_size": v.hidden_size,
                "intermediate_size": v.intermediate_size,
                "num_heads": v.num_heads,
                "in_chans": v.in_channels,
                "out_hidden_size": v.out_hidden_size,
                "patch_size": v.patch_size,
                "spatial_merge_size": v.spatial_merge_size,
                "spatial_patch_size": v.patch_size,
                "temporal_patch_size": v.temporal_patch_size,
                "window_size": v.window_size,
                "fullatt_block_indexes": v.fullatt_block_indexes,
                "tokens_per_second": v.tokens_per_second,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hub() -> Value {
        json!({
            "model_type": "qwen2_5_vl", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
            "vocab_size": 100, "rope_theta": 10000.0, "eos_token_id": 7,
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "vision_config": {"depth": 2, "hidden_size": 32, "intermediate_size": 64, "num_heads": 2,
                              "out_hidden_size": 64, "window_size": 56, "fullatt_block_indexes": [1]}
        })
    }

    #[test]
    fn hub_layout_round_trips_through_to_hub_json() {
        let p = Path::new("config.json");
        let c = Qwen25VlConfig::from_json(&hub(), p).unwrap();
        assert_eq!(c.text.head_dim(), 16);
        assert_eq!(c.vision.merger_window_size(), 2);
        let again = Qwen25VlConfig::from_json(&c.to_hub_json(), p).unwrap();
        assert_eq!(c, again);
    }

    #[test]
    fn inconsistent_mrope_section_names_the_field() {
        let mut v = hub();
        v["rope_scaling"]["mrope_section"] = json!([2, 2, 2]);
        let err = Qwen25VlConfig::from_json(&v, Path::new("x/config.json")).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("x/config.json") && msg.contains("mrope_section"),
            "{msg}"
        );
    }

    #[test]
    fn missing_field_names_the_field() {
        let mut v = hub();
        v.as_object_mut().unwrap().remove("hidden_size");
        let msg = Qwen25VlConfig::from_json(&v, Path::new("c.json"))
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("`hidden_size`") && msg.contains("missing"),
            "{msg}"
        );
    }
}
