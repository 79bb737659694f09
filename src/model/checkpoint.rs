//! A checkpoint folder loaded as one value: config, trainable weights, model, tokenizer, chat
//! template and image processor.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use serde_json::Value;
use tokenizers::Tokenizer;

use super::config::Qwen25VlConfig;
use super::processor::ImageProcessor;
use super::prompt::{ChatTemplate, PromptBuilder};
use super::qwen25vl::Qwen25Vl;
use super::weights::{save_checkpoint, ParamLoader, WeightFiles, WeightSource};
use super::ModelError;

/// Where and in which precision to load the weights.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    pub device: Device,
    pub dtype: DType,
}

impl Default for LoadOptions {
    /// CPU, f32: exact enough to match transformers to 1e-4 in logits.
    fn default() -> Self {
        LoadOptions {
            device: Device::Cpu,
            dtype: DType::F32,
        }
    }
}

impl LoadOptions {
    /// What this build runs best on: with the `cuda` feature and a visible GPU, CUDA device 0 in
    /// bf16; otherwise the CPU in f32.
    pub fn auto() -> Result<Self, ModelError> {
        if cfg!(feature = "cuda") {
            let device = Device::cuda_if_available(0)?;
            let dtype = if device.is_cuda() {
                DType::BF16
            } else {
                DType::F32
            };
            Ok(LoadOptions { device, dtype })
        } else {
            Ok(LoadOptions::default())
        }
    }
}

/// A loaded Qwen2.5-VL checkpoint folder.
pub struct Checkpoint {
    pub dir: PathBuf,
    pub config: Qwen25VlConfig,
    /// config.json as read, re-written unchanged on save.
    pub raw_config: Value,
    /// Every parameter as a trainable `Var`, under its hub name.
    pub varmap: VarMap,
    pub model: Qwen25Vl,
    pub tokenizer: Tokenizer,
    pub tokenizer_path: PathBuf,
    pub chat_template: Option<ChatTemplate>,
    pub image_processor: ImageProcessor,
    /// Where the image processor settings came from (`None`: transformers' defaults).
    pub preprocessor_path: Option<PathBuf>,
    pub weight_files: Vec<PathBuf>,
    pub dtype: DType,
}

impl Checkpoint {
    /// Loads `dir` on the CPU in f32.
    pub fn load(dir: &Path) -> Result<Self, ModelError> {
        Self::load_with(dir, &LoadOptions::default())
    }

    pub fn load_with(dir: &Path, opts: &LoadOptions) -> Result<Self, ModelError> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| ModelError::Io {
            path: config_path.clone(),
            source,
        })?;
        let raw_config: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: config_path.clone(),
            source,
        })?;
        let config = Qwen25VlConfig::from_json(&raw_config, &config_path)?;

        let tokenizer_path = dir.join("tokenizer.json");
        if !tokenizer_path.is_file() {
            return Err(ModelError::MissingTokenizer {
                dir: dir.to_path_buf(),
            });
        }
        let tokenizer =
            Tokenizer::from_file(&tokenizer_path).map_err(|e| ModelError::Tokenizer {
                path: tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        let chat_template = ChatTemplate::find(dir)?;
        let pre = dir.join("preprocessor_config.json");
        let (image_processor, preprocessor_path) = if pre.is_file() {
            (ImageProcessor::from_file(&pre)?, Some(pre))
        } else {
            (ImageProcessor::default(), None)
        };

        let files = WeightFiles::open(dir)?;
        let weight_files = files.paths().into_iter().map(Path::to_path_buf).collect();
        let source = WeightSource::Files(files);
        let varmap = VarMap::new();
        let loader = ParamLoader::new(&source, &varmap, &opts.device, opts.dtype);
        let model = Qwen25Vl::load(&config, &loader)?;
        Ok(Checkpoint {
            dir: dir.to_path_buf(),
            config,
            raw_config,
            varmap,
            model,
            tokenizer,
            tokenizer_path,
            chat_template,
            image_processor,
            preprocessor_path,
            weight_files,
            dtype: opts.dtype,
        })
    }

    /// The prompt builder, if the checkpoint has a chat template.
    pub fn prompt_builder(&self) -> Result<PromptBuilder<'_>, ModelError> {
        let template =
            self.chat_template
                .as_ref()
                .ok_or_else(|| ModelError::MissingChatTemplate {
                    dir: self.dir.clone(),
                })?;
        Ok(PromptBuilder {
            tokenizer: &self.tokenizer,
            tokenizer_path: &self.tokenizer_path,
            template,
            merge_size: self.config.vision.spatial_merge_size,
        })
    }

    /// The tokens that end a response: config.json's `eos_token_id`(s) and `<|im_end|>` (the
    /// chat turn's end, which instruct checkpoints emit before any EOS).
    pub fn stop_token_ids(&self) -> Vec<u32> {
        let mut ids = self.config.eos_token_ids.clone();
        if let Some(id) = self.tokenizer.token_to_id("<|im_end|>") {
            ids.push(id);
        }
        ids.sort_unstable();
        ids.dedup();
        ids
    }

    /// Every parameter (current values) under its hub name.
    pub fn named_parameters(&self) -> Result<HashMap<String, Tensor>, ModelError> {
        let data = self.varmap.data().lock().map_err(|_| {
            ModelError::Input("parameter map poisoned by a panic in another thread".to_string())
        })?;
        Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
            .collect())
    }

    /// Number of scalar parameters (tied embeddings counted once).
    pub fn parameter_count(&self) -> Result<usize, ModelError> {
        Ok(self
            .named_parameters()?
            .values()
            .map(Tensor::elem_count)
            .sum())
    }

    /// Writes the current weights (in `dtype`) with the original config and tokenizer files to
    /// `out`, in the Hugging Face layout.
    pub fn save(&self, out: &Path, dtype: DType) -> Result<(), ModelError> {
        let mut config = self.raw_config.clone();
        if let Some(obj) = config.as_object_mut() {
            let name = dtype_name(dtype);
            if obj.contains_key("dtype") {
                obj.insert("dtype".to_string(), Value::from(name));
            } else {
                obj.insert("torch_dtype".to_string(), Value::from(name));
            }
        }
        save_checkpoint(
            out,
            &config,
            &self.named_parameters()?,
            dtype,
            Some(&self.dir),
        )
    }
}

/// PyTorch's name of a dtype, as config.json writes it.
pub fn dtype_name(dtype: DType) -> &'static str {
    match dtype {
        DType::F32 => "float32",
        DType::F64 => "float64",
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}
