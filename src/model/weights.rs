//! Weights: safetensors files (single or sharded) into trainable `Var`s, and back to a folder.
//!
//! Every parameter the model uses is read through [`ParamLoader::get`], which checks its shape
//! against the one config.json implies and registers it in a [`VarMap`] under its hub name, so
//! that the trainer's optimiser sees exactly the parameters the forward pass uses (tied
//! embeddings are one `Var`). Errors name the file and the tensor.
//!
//! Tensor names: released checkpoints store `visual.*`, `model.*` (decoder) and `lm_head.weight`;
//! transformers 5 writes `model.visual.*` and `model.language_model.*`. Both are read; the
//! canonical (hub) names are used everywhere else, including when saving.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use candle_core::safetensors::MmapedSafetensors;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarMap;
use serde_json::Value;

use super::ModelError;

/// Where the tensors come from: mapped files, or tensors already in memory.
pub enum WeightSource {
    Files(WeightFiles),
    Memory {
        /// Shown in errors in place of a file name.
        label: PathBuf,
        tensors: HashMap<String, Tensor>,
    },
    /// Fresh random parameters (see [`super::init`]): every tensor the model asks for is drawn
    /// from its own stream, so a seed gives the same weights whatever the loading order.
    Init {
        seed: u64,
        std: f64,
    },
}

/// The safetensors files of a checkpoint and which tensor lives in which file.
pub struct WeightFiles {
    files: Vec<(PathBuf, MmapedSafetensors)>,
    /// Tensor name (as stored) -> index into `files`.
    routing: HashMap<String, usize>,
    /// What errors about a missing tensor name: the index file, or the single weight file.
    described_by: PathBuf,
}

impl WeightFiles {
    /// Opens `model.safetensors`, or the shards listed by `model.safetensors.index.json`.
    pub fn open(dir: &Path) -> Result<Self, ModelError> {
        let index = dir.join("model.safetensors.index.json");
        let single = dir.join("model.safetensors");
        if index.is_file() {
            let (names, routing) = read_index(dir, &index)?;
            let mut files = Vec::with_capacity(names.len());
            for name in names {
                let path = dir.join(&name);
                files.push((path.clone(), map_file(&path)?));
            }
            // every routed tensor must really be in its shard
            for (tensor, &id) in &routing {
                let (path, st) = &files[id];
                if st.get(tensor).is_err() {
                    return Err(ModelError::MissingTensor {
                        path: path.clone(),
                        tensor: tensor.clone(),
                    });
                }
            }
            Ok(WeightFiles {
                files,
                routing,
                described_by: index,
            })
        } else if single.is_file() {
            let st = map_file(&single)?;
            let routing = st
                .tensors()
                .into_iter()
                .map(|(name, _)| (name, 0))
                .collect();
            Ok(WeightFiles {
                files: vec![(single.clone(), st)],
                routing,
                described_by: single,
            })
        } else {
            Err(ModelError::NoWeights {
                dir: dir.to_path_buf(),
            })
        }
    }

    /// Stored tensors' total element count and the dtypes they are stored in, read from the
    /// file headers only (cheap even for a 32B checkpoint).
    pub fn summary(&self) -> (usize, Vec<String>) {
        let mut count = 0usize;
        let mut dtypes: Vec<String> = Vec::new();
        for (name, &id) in &self.routing {
            if let Ok(view) = self.files[id].1.get(name) {
                count += view.shape().iter().product::<usize>();
                let d = format!("{:?}", view.dtype());
                if !dtypes.contains(&d) {
                    dtypes.push(d);
                }
            }
        }
        dtypes.sort();
        (count, dtypes)
    }

    /// The weight files, in shard order.
    pub fn paths(&self) -> Vec<&Path> {
        self.files.iter().map(|(p, _)| p.as_path()).collect()
    }
}

fn map_file(path: &Path) -> Result<MmapedSafetensors, ModelError> {
    // SAFETY: the file is memory-mapped read-only; candle copies each tensor out of the mapping
    // when it is loaded, so the mapping only has to stay unchanged while the checkpoint loads.
    // A checkpoint folder rewritten by another process during loading is not supported.
    unsafe { MmapedSafetensors::new(path) }.map_err(|e| ModelError::Safetensors {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// The names a canonical (hub) tensor name may be stored under.
fn stored_names(canonical: &str) -> [String; 2] {
    let alt = if let Some(rest) = canonical.strip_prefix("visual.") {
        format!("model.visual.{rest}")
    } else if let Some(rest) = canonical.strip_prefix("model.") {
        format!("model.language_model.{rest}")
    } else {
        canonical.to_string()
    };
    [canonical.to_string(), alt]
}

impl WeightSource {
    fn label(&self) -> PathBuf {
        match self {
            WeightSource::Files(f) => f.described_by.clone(),
            WeightSource::Memory { label, .. } => label.clone(),
            WeightSource::Init { seed, .. } => PathBuf::from(format!("<random init, seed {seed}>")),
        }
    }

    /// Reads one tensor by its canonical name, on `device`, in `dtype`.
    fn read(&self, canonical: &str, device: &Device, dtype: DType) -> Result<Tensor, ModelError> {
        let names = stored_names(canonical);
        match self {
            WeightSource::Files(files) => {
                let Some((name, &id)) = names
                    .iter()
                    .find_map(|n| files.routing.get(n).map(|id| (n, id)))
                else {
                    return Err(ModelError::MissingTensor {
                        path: files.described_by.clone(),
                        tensor: canonical.to_string(),
                    });
                };
                let (path, st) = &files.files[id];
                let t = st.load(name, device).map_err(|e| ModelError::Safetensors {
                    path: path.clone(),
                    message: format!("tensor `{name}`: {e}"),
                })?;
                Ok(t.to_dtype(dtype)?)
            }
            WeightSource::Memory { label, tensors } => {
                let Some(t) = names.iter().find_map(|n| tensors.get(n)) else {
                    return Err(ModelError::MissingTensor {
                        path: label.clone(),
                        tensor: canonical.to_string(),
                    });
                };
                Ok(t.to_device(device)?.to_dtype(dtype)?)
            }
            // shapes come from the loader, which draws these itself
            WeightSource::Init { .. } => Err(ModelError::MissingTensor {
                path: self.label(),
                tensor: canonical.to_string(),
            }),
        }
    }

    /// The file a tensor comes from (for shape errors).
    fn file_of(&self, canonical: &str) -> PathBuf {
        match self {
            WeightSource::Files(files) => stored_names(canonical)
                .iter()
                .find_map(|n| files.routing.get(n))
                .map(|&id| files.files[id].0.clone())
                .unwrap_or_else(|| files.described_by.clone()),
            WeightSource::Memory { label, .. } => label.clone(),
            WeightSource::Init { .. } => self.label(),
        }
    }
}

/// Reads parameters with shape checks and registers each as a trainable `Var`.
pub struct ParamLoader<'a> {
    source: &'a WeightSource,
    varmap: &'a VarMap,
    device: Device,
    dtype: DType,
}

impl<'a> ParamLoader<'a> {
    pub fn new(
        source: &'a WeightSource,
        varmap: &'a VarMap,
        device: &Device,
        dtype: DType,
    ) -> Self {
        ParamLoader {
            source,
            varmap,
            device: device.clone(),
            dtype,
        }
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    pub fn dtype(&self) -> DType {
        self.dtype
    }

    /// The parameter `name` (canonical hub name) with the given shape, as the tensor of a `Var`
    /// (so gradients reach it). Loading the same name twice returns the same `Var`.
    pub fn get(&self, name: &str, shape: &[usize]) -> Result<Tensor, ModelError> {
        let mut data = self.varmap.data().lock().map_err(|_| {
            ModelError::Input("parameter map poisoned by a panic in another thread".to_string())
        })?;
        if let Some(var) = data.get(name) {
            return Ok(var.as_tensor().clone());
        }
        let t = match self.source {
            WeightSource::Init { seed, std } => {
                super::init::init_tensor(name, shape, *seed, *std, &self.device, self.dtype)?
            }
            _ => self.source.read(name, &self.device, self.dtype)?,
        };
        if t.dims() != shape {
            return Err(ModelError::ShapeMismatch {
                path: self.source.file_of(name),
                tensor: name.to_string(),
                expected: shape.to_vec(),
                found: t.dims().to_vec(),
            });
        }
        let var = Var::from_tensor(&t)?;
        let out = var.as_tensor().clone();
        data.insert(name.to_string(), var);
        Ok(out)
    }

    /// Shown in errors: the weight file or index.
    pub fn label(&self) -> PathBuf {
        self.source.label()
    }
}

/// The weight files of a checkpoint folder, as names inside it: the shards listed by
/// `model.safetensors.index.json` (in first-listed order), else `model.safetensors`.
/// One reading of the index for the loader and for the run plans' model fingerprint.
pub fn weight_file_names(dir: &Path) -> Result<Vec<String>, ModelError> {
    let index = dir.join("model.safetensors.index.json");
    if index.is_file() {
        return Ok(read_index(dir, &index)?.0);
    }
    if dir.join("model.safetensors").is_file() {
        return Ok(vec!["model.safetensors".to_string()]);
    }
    Err(ModelError::NoWeights {
        dir: dir.to_path_buf(),
    })
}

/// The shard names of a sharded checkpoint (checked to be files in `dir`) and which shard
/// holds each tensor.
fn read_index(
    dir: &Path,
    index: &Path,
) -> Result<(Vec<String>, HashMap<String, usize>), ModelError> {
    let bad = |message: String| ModelError::BadIndex {
        path: index.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(index).map_err(|source| ModelError::Io {
        path: index.to_path_buf(),
        source,
    })?;
    let value: Value = serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
    let map = value
        .get("weight_map")
        .and_then(Value::as_object)
        .ok_or_else(|| bad("no `weight_map` object".to_string()))?;
    let mut file_ids: BTreeMap<String, usize> = BTreeMap::new();
    let mut routing = HashMap::new();
    for (tensor, file) in map {
        let file = file
            .as_str()
            .ok_or_else(|| bad(format!("weight_map[{tensor:?}] is not a file name")))?;
        if file.contains('/') || file.contains('\\') || file == ".." {
            return Err(bad(format!(
                "weight_map[{tensor:?}] = {file:?} is not a file in the folder"
            )));
        }
        let n = file_ids.len();
        let id = *file_ids.entry(file.to_string()).or_insert(n);
        routing.insert(tensor.clone(), id);
    }
    let mut ordered: Vec<(usize, String)> = file_ids.into_iter().map(|(f, i)| (i, f)).collect();
    ordered.sort();
    let mut names = Vec::with_capacity(ordered.len());
    for (_, name) in ordered {
        if !dir.join(&name).is_file() {
            return Err(bad(format!(
                "lists shard {name:?}, which is not in the folder"
            )));
        }
        names.push(name);
    }
    Ok((names, routing))
}

/// Files copied verbatim when a checkpoint folder is written: everything but the weights and
/// config.json (tokenizer, chat template, preprocessor, generation config).
pub const AUXILIARY_FILES: &[&str] = &[
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
    "preprocessor_config.json",
    "generation_config.json",
];

/// Writes a checkpoint folder in the Hugging Face layout: `config.json`, one
/// `model.safetensors` (tensors under their hub names, in `dtype`), and the tokenizer /
/// template / preprocessor files copied from `aux_from` where they exist there.
///
/// Why: the trainer saves checkpoints that transformers, vLLM and this loader all read.
pub fn save_checkpoint(
    dir: &Path,
    config_json: &Value,
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    aux_from: Option<&Path>,
) -> Result<(), ModelError> {
    std::fs::create_dir_all(dir).map_err(|e| ModelError::Write {
        path: dir.to_path_buf(),
        message: e.to_string(),
    })?;
    let config_path = dir.join("config.json");
    let text = serde_json::to_string_pretty(config_json).map_err(|source| ModelError::Json {
        path: config_path.clone(),
        source,
    })?;
    std::fs::write(&config_path, text + "\n").map_err(|e| ModelError::Write {
        path: config_path.clone(),
        message: e.to_string(),
    })?;
    let mut out: HashMap<String, Tensor> = HashMap::with_capacity(tensors.len());
    for (name, t) in tensors {
        out.insert(
            name.clone(),
            t.to_device(&Device::Cpu)?.to_dtype(dtype)?.contiguous()?,
        );
    }
    let weights = dir.join("model.safetensors");
    candle_core::safetensors::save(&out, &weights).map_err(|e| ModelError::Write {
        path: weights.clone(),
        message: e.to_string(),
    })?;
    if let Some(src) = aux_from {
        for name in AUXILIARY_FILES {
            let from = src.join(name);
            if from.is_file() {
                let to = dir.join(name);
                if from != to {
                    std::fs::copy(&from, &to).map_err(|e| ModelError::Write {
                        path: to.clone(),
                        message: e.to_string(),
                    })?;
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transformers5_names_are_alternatives() {
        assert_eq!(
            stored_names("visual.blocks.0.norm1.weight")[1],
            "model.visual.blocks.0.norm1.weight"
        );
        assert_eq!(
            stored_names("model.norm.weight")[1],
            "model.language_model.norm.weight"
        );
        assert_eq!(stored_names("lm_head.weight")[1], "lm_head.weight");
    }

    #[test]
    fn shape_mismatch_names_tensor() {
        let mut tensors = HashMap::new();
        tensors.insert(
            "model.norm.weight".to_string(),
            Tensor::zeros(3, DType::F32, &Device::Cpu).unwrap(),
        );
        let src = WeightSource::Memory {
            label: PathBuf::from("mem"),
            tensors,
        };
        let vm = VarMap::new();
        let loader = ParamLoader::new(&src, &vm, &Device::Cpu, DType::F32);
        let msg = loader
            .get("model.norm.weight", &[4])
            .unwrap_err()
            .to_string();
        assert!(
            msg.contains("model.norm.weight") && msg.contains("[3]"),
            "{msg}"
        );
        let msg = loader.get("lm_head.weight", &[4]).unwrap_err().to_string();
        assert!(msg.contains("missing tensor `lm_head.weight`"), "{msg}");
    }
}
