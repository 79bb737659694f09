//! The model module's error: every variant names the file, field or tensor concerned.

use std::path::PathBuf;

/// Anything that can go wrong loading a checkpoint, preparing inputs or running the model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    // --- files and folders ---
    /// A file that should be there cannot be read.
    #[error("{path}: cannot read: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A file could not be written (saving a checkpoint).
    #[error("{path}: cannot write: {message}")]
    Write { path: PathBuf, message: String },
    /// A JSON file does not parse.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },

    // --- config.json / preprocessor_config.json ---
    /// A field is missing, of the wrong type, or inconsistent with another.
    #[error("{path}: field `{field}`: {message}")]
    Config {
        path: PathBuf,
        field: String,
        message: String,
    },
    /// `model_type` names an architecture this module does not implement.
    #[error("{path}: unsupported model_type {found:?} (this loader implements \"qwen2_5_vl\")")]
    UnsupportedModelType { path: PathBuf, found: String },

    // --- weights ---
    /// Neither `model.safetensors` nor `model.safetensors.index.json` is in the folder.
    #[error("{dir}: no weights (expected model.safetensors or model.safetensors.index.json)")]
    NoWeights { dir: PathBuf },
    /// The shard index is not the `{"weight_map": {tensor: file}}` object transformers writes.
    #[error("{path}: malformed shard index: {message}")]
    BadIndex { path: PathBuf, message: String },
    /// A safetensors file cannot be opened or a tensor in it cannot be read.
    #[error("{path}: safetensors: {message}")]
    Safetensors { path: PathBuf, message: String },
    /// The model needs a tensor no weight file holds.
    #[error("{path}: missing tensor `{tensor}`")]
    MissingTensor { path: PathBuf, tensor: String },
    /// A tensor is there but its shape does not follow from config.json.
    #[error("{path}: tensor `{tensor}` has shape {found:?}, config.json implies {expected:?}")]
    ShapeMismatch {
        path: PathBuf,
        tensor: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    // --- tokenizer, chat template ---
    /// No `tokenizer.json` in the checkpoint folder.
    #[error("{dir}: no tokenizer.json (the model needs its tokenizer)")]
    MissingTokenizer { dir: PathBuf },
    /// The tokenizer file does not load, or encoding/decoding failed.
    #[error("{path}: tokenizer: {message}")]
    Tokenizer { path: PathBuf, message: String },
    /// No chat template in tokenizer_config.json, chat_template.json or chat_template.jinja.
    #[error("{dir}: no chat template (looked in chat_template.jinja, chat_template.json, tokenizer_config.json)")]
    MissingChatTemplate { dir: PathBuf },
    /// The chat template does not compile or render.
    #[error("{path}: chat template: {message}")]
    Template { path: PathBuf, message: String },

    // --- images ---
    /// An image cannot be decoded or has a shape the processor rejects.
    #[error("{source_name}: image: {message}")]
    Image {
        source_name: String,
        message: String,
    },

    // --- inputs to the model ---
    /// `--model` / `--init` names no checkpoint folder.
    #[error("{0}")]
    NotACheckpoint(String),
    /// Inputs that do not fit together (image tokens vs images, empty batch, bad temperature).
    #[error("invalid model input: {0}")]
    Input(String),
    /// A tensor operation failed (shapes are checked before, so this is an internal error).
    #[error("tensor operation: {0}")]
    Candle(#[from] candle_core::Error),
}

impl ModelError {
    pub(crate) fn config(path: &std::path::Path, field: &str, message: impl Into<String>) -> Self {
        ModelError::Config {
            path: path.to_path_buf(),
            field: field.to_string(),
            message: message.into(),
        }
    }
}
