//! Training signal: every trainable variable gets a non-zero gradient from a log-prob loss, and
//! autograd agrees with finite differences on parameters of each kind (vision, merger, decoder,
//! head). Finite differences run in f64, where central differences are accurate to ~1e-9.

mod model_common;

use candle_core::{DType, Tensor, Var};
use model_common::*;
use rand::{Rng, SeedableRng};
use spotlight::model::{Checkpoint, LoadOptions, ProcessedImage, ScoringRequest};

struct Batch {
    prompts: Vec<Vec<u32>>,
    responses: Vec<Vec<u32>>,
    images: Vec<Option<ProcessedImage>>,
}

/// An image case and a text case of a fixture, tokenized by the checkpoint itself.
fn batch(ckpt: &Checkpoint) -> Batch {
    let builder = ckpt.prompt_builder().unwrap();
    let image = ckpt
        .image_processor
        .preprocess_file(&fixtures_root().join("images/wide84x112.png"))
        .unwrap();
    let p1 = builder
        .prompt_ids(None, "What colour is the shape?", &[image.grid_thw])
        .unwrap();
    let p2 = builder.prompt_ids(None, "What is 2+3?", &[]).unwrap();
    Batch {
        prompts: vec![p1, p2],
        responses: vec![
            builder.response_ids("The shape is red.").unwrap(),
            builder.response_ids("The answer is 5.").unwrap(),
        ],
        images: vec![Some(image), None],
    }
}

/// Mean response log-prob at temperature 0.7 (a policy-gradient-shaped scalar).
fn loss(ckpt: &Checkpoint, b: &Batch) -> Tensor {
    let reqs: Vec<ScoringRequest> = (0..b.prompts.len())
        .map(|i| ScoringRequest {
            prompt_ids: &b.prompts[i],
            response_ids: &b.responses[i],
            images: b.images[i].iter().collect(),
        })
        .collect();
    let lp = ckpt.model.log_probs(&reqs, 0.7).unwrap();
    let n: usize = lp.lengths.iter().sum();
    (lp.values.sum_all().unwrap() / n as f64).unwrap()
}

#[test]
fn every_variable_gets_a_nonzero_gradient_on_every_fixture() {
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let b = batch(&ckpt);
        let grads = loss(&ckpt, &b).backward().unwrap();
        let vars = ckpt.varmap.data().lock().unwrap();
        let mut missing = Vec::new();
        for (vname, var) in vars.iter() {
            let g = grads.get(var.as_tensor());
            let nonzero = g.is_some_and(|g| {
                g.abs()
                    .unwrap()
                    .max_all()
                    .unwrap()
                    .to_scalar::<f32>()
                    .unwrap()
                    > 0.0
            });
            if !nonzero {
                missing.push(vname.clone());
            }
        }
        println!(
            "{name}: {}/{} variables have a non-zero gradient",
            vars.len() - missing.len(),
            vars.len()
        );
        assert!(missing.is_empty(), "{name}: no gradient for {missing:?}");
        // the model reads exactly the checkpoint's tensors: one Var per stored tensor
        let expected = if ckpt.config.text.tie_word_embeddings {
            0
        } else {
            1
        };
        assert_eq!(vars.contains_key("lm_head.weight") as usize, expected);
    }
}

fn get_var(ckpt: &Checkpoint, name: &str) -> Var {
    ckpt.varmap.data().lock().unwrap()[name].clone()
}

fn set_element(var: &Var, index: usize, value: f64) {
    let t = var.as_tensor();
    let mut flat: Vec<f64> = t.flatten_all().unwrap().to_vec1().unwrap();
    flat[index] = value;
    var.set(&Tensor::from_vec(flat, t.shape(), t.device()).unwrap())
        .unwrap();
}

#[test]
fn gradients_match_finite_differences_in_f64() {
    let opts = LoadOptions {
        dtype: DType::F64,
        ..LoadOptions::default()
    };
    let ckpt = Checkpoint::load_with(&fixture_dir("tiny"), &opts).unwrap();
    let b = batch(&ckpt);
    let grads = loss(&ckpt, &b).backward().unwrap();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
    // parameters of each kind
    let names = [
        "visual.patch_embed.proj.weight",
        "visual.blocks.0.attn.qkv.bias",
        "visual.blocks.1.mlp.up_proj.weight",
        "visual.merger.ln_q.weight",
        "visual.merger.mlp.0.weight",
        "visual.merger.mlp.2.bias",
        "model.embed_tokens.weight",
        "model.layers.0.self_attn.k_proj.bias",
        "model.layers.1.self_attn.q_proj.weight",
        "model.layers.1.mlp.down_proj.weight",
        "model.norm.weight",
        "lm_head.weight",
    ];
    let eps = 1e-5;
    let mut worst = 0f64;
    for name in names {
        let var = get_var(&ckpt, name);
        let grad: Vec<f64> = grads
            .get(var.as_tensor())
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1()
            .unwrap();
        // sample where the gradient is not negligible (e.g. embedding rows of tokens in the batch)
        let candidates: Vec<usize> = (0..grad.len()).filter(|&i| grad[i].abs() > 1e-6).collect();
        assert!(!candidates.is_empty(), "{name}: all-zero gradient");
        for _ in 0..2 {
            let i = candidates[rng.random_range(0..candidates.len())];
            let orig: f64 = var
                .as_tensor()
                .flatten_all()
                .unwrap()
                .to_vec1::<f64>()
                .unwrap()[i];
            set_element(&var, i, orig + eps);
            let up = loss(&ckpt, &b).to_scalar::<f64>().unwrap();
            set_element(&var, i, orig - eps);
            let down = loss(&ckpt, &b).to_scalar::<f64>().unwrap();
            set_element(&var, i, orig);
            // central difference: dL/dθ ≈ (L(θ+ε) - L(θ-ε)) / 2ε, error O(ε²)
            let fd = (up - down) / (2.0 * eps);
            let rel = (fd - grad[i]).abs() / grad[i].abs().max(1e-3);
            println!(
                "{name}[{i}]: autograd {:.8e} finite-diff {fd:.8e} rel {rel:.1e}",
                grad[i]
            );
            worst = worst.max(rel);
            assert!(
                rel < 1e-5,
                "{name}[{i}]: autograd {} vs finite difference {fd}",
                grad[i]
            );
        }
    }
    println!("worst relative error {worst:.1e}");
}

/// The bf16 path (what the `cuda` feature uses on GPUs) runs end to end on the CPU: finite
/// log-probs close to the f32 ones, and gradients for every variable.
#[test]
fn bf16_weights_score_and_train() {
    let f32_ckpt = Checkpoint::load(&fixture_dir("tiny")).unwrap();
    let opts = LoadOptions {
        dtype: DType::BF16,
        ..LoadOptions::default()
    };
    let ckpt = Checkpoint::load_with(&fixture_dir("tiny"), &opts).unwrap();
    let b = batch(&ckpt);
    let l16 = loss(&ckpt, &b);
    let l32 = loss(&f32_ckpt, &b).to_scalar::<f32>().unwrap();
    let v16 = l16.to_scalar::<f32>().unwrap();
    println!("mean log-prob f32 {l32:.5} bf16 {v16:.5}");
    // bf16 keeps ~3 significant digits per operation; the mean log-prob moves by a few 1e-2
    assert!(
        v16.is_finite() && (v16 - l32).abs() < 0.1,
        "bf16 {v16} vs f32 {l32}"
    );
    let grads = l16.backward().unwrap();
    let vars = ckpt.varmap.data().lock().unwrap();
    for (name, var) in vars.iter() {
        let g = grads
            .get(var.as_tensor())
            .unwrap_or_else(|| panic!("{name}: no gradient"));
        assert_eq!(g.dtype(), DType::BF16);
    }
}
