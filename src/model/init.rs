//! Random initialisation of a Qwen2.5-VL checkpoint, for the project's own small models (the
//! trainer's tiny model, the default model of `just eval-all`, benchmark models).
//!
//! As transformers initialises Qwen2.5-VL: weight matrices (and embeddings, convolution
//! kernels) from N(0, `initializer_range`), norm weights 1, biases 0. Each tensor draws from
//! its own ChaCha20 stream seeded by (seed, tensor name), so the weights depend only on the seed
//! and the config — not on the order the model asks for them.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use rand_distr::{Distribution, StandardNormal};
use serde_json::Value;

use super::config::Qwen25VlConfig;
use super::qwen25vl::Qwen25Vl;
use super::weights::{save_checkpoint, ParamLoader, WeightSource};
use super::ModelError;

/// One freshly initialised parameter.
pub fn init_tensor(
    name: &str,
    shape: &[usize],
    seed: u64,
    std: f64,
    device: &Device,
    dtype: DType,
) -> Result<Tensor, ModelError> {
    let leaf = name.rsplit('.').nth(1).unwrap_or("");
    let t = if name.ends_with(".bias") {
        Tensor::zeros(shape, DType::F32, device)?
    } else if shape.len() == 1 && (leaf.contains("norm") || leaf == "ln_q") {
        Tensor::ones(shape, DType::F32, device)?
    } else {
        let mut rng =
            ChaCha20Rng::seed_from_u64(crate::seed::derive_seed_tagged(seed, name, 0, "init"));
        let n: usize = shape.iter().product();
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let z: f64 = StandardNormal.sample(&mut rng);
                (z * std) as f32
            })
            .collect();
        Tensor::from_vec(values, shape, device)?
    };
    Ok(t.to_dtype(dtype)?)
}

/// Writes a randomly initialised checkpoint: `config_json` (hub layout) and `model.safetensors`
/// in `out`, plus the tokenizer / template / preprocessor files of `aux_from` when given.
/// Returns the number of parameters.
pub fn write_random_checkpoint(
    config_json: &Value,
    out: &Path,
    seed: u64,
    aux_from: Option<&Path>,
) -> Result<usize, ModelError> {
    let config_path = out.join("config.json");
    let config = Qwen25VlConfig::from_json(config_json, &config_path)?;
    let std = config_json
        .get("initializer_range")
        .and_then(Value::as_f64)
        .unwrap_or(0.02);
    let source = WeightSource::Init { seed, std };
    let varmap = VarMap::new();
    let loader = ParamLoader::new(&source, &varmap, &Device::Cpu, DType::F32);
    Qwen25Vl::load(&config, &loader)?;
    let tensors: std::collections::HashMap<String, Tensor> = varmap
        .data()
        .lock()
        .map_err(|_| ModelError::Input("parameter map poisoned".into()))?
        .iter()
        .map(|(k, v)| (k.clone(), v.as_tensor().clone()))
        .collect();
    let count = tensors.values().map(Tensor::elem_count).sum();
    save_checkpoint(out, config_json, &tensors, DType::F32, aux_from)?;
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn norms_are_one_biases_zero_matrices_seeded_normal() {
        let d = Device::Cpu;
        let norm = init_tensor(
            "model.layers.0.input_layernorm.weight",
            &[4],
            1,
            0.02,
            &d,
            DType::F32,
        )
        .unwrap();
        assert_eq!(norm.to_vec1::<f32>().unwrap(), vec![1.0; 4]);
        let bias = init_tensor(
            "model.layers.0.self_attn.q_proj.bias",
            &[3],
            1,
            0.02,
            &d,
            DType::F32,
        )
        .unwrap();
        assert_eq!(bias.to_vec1::<f32>().unwrap(), vec![0.0; 3]);
        let w = |seed| {
            init_tensor(
                "model.layers.0.mlp.up_proj.weight",
                &[64, 32],
                seed,
                0.02,
                &d,
                DType::F32,
            )
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap()
        };
        let a = w(1);
        assert_eq!(a, w(1));
        assert_ne!(a, w(2));
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / a.len() as f64;
        let sd =
            (a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / a.len() as f64).sqrt();
        assert!(
            mean.abs() < 0.003 && (sd - 0.02).abs() < 0.002,
            "{mean} {sd}"
        );
    }
}
