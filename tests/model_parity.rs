//! Parity with transformers (tools/golden): prompts, M-RoPE positions, vision features, logits at
//! every position and batched response log-probs, on every fixture checkpoint.

mod model_common;

use candle_core::Tensor;
use model_common::*;
use spotlight::model::{Checkpoint, GridThw, ProcessedImage, ScoringRequest, Sequence};

/// The bar: f32 logits within 1e-4 of transformers' at every position.
const LOGIT_TOL: f32 = 1e-4;

fn grid(v: &serde_json::Value) -> GridThw {
    let g = ids(v);
    GridThw {
        t: g[0] as usize,
        h: g[1] as usize,
        w: g[2] as usize,
    }
}

#[test]
fn logits_and_log_probs_match_transformers_on_every_fixture() {
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let golden = Golden::load(name);
        let builder = ckpt.prompt_builder().unwrap();
        let model = &ckpt.model;

        let mut prompts = Vec::new();
        let mut responses = Vec::new();
        let mut images: Vec<Option<ProcessedImage>> = Vec::new();
        for case in golden.cases() {
            let label = format!("{name}/{}", case["case"]);
            let image = case["image"].as_str().map(|f| {
                ckpt.image_processor
                    .preprocess_file(&fixtures_root().join("images").join(f))
                    .unwrap()
            });
            let grids: Vec<GridThw> = image.iter().map(|i| i.grid_thw).collect();
            if let Some(g) = case.get("grid_thw").filter(|g| !g.is_null()) {
                assert_eq!(grids, vec![grid(g)], "{label}: grid");
            }
            let prompt_ids = builder
                .prompt_ids(
                    case["system"].as_str(),
                    case["prompt"].as_str().unwrap(),
                    &grids,
                )
                .unwrap();
            let text = builder
                .prompt_text(
                    case["system"].as_str(),
                    case["prompt"].as_str().unwrap(),
                    &grids,
                )
                .unwrap();
            assert!(
                text.starts_with(
                    case["rendered_prompt"]
                        .as_str()
                        .unwrap()
                        .split("<|image_pad|>")
                        .next()
                        .unwrap()
                ),
                "{label}: rendered prompt"
            );
            assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "{label}: prompt ids");
            let response_ids = builder
                .response_ids(case["response"].as_str().unwrap())
                .unwrap();
            assert_eq!(
                response_ids,
                ids(&case["response_ids"]),
                "{label}: response ids"
            );

            let mut full = prompt_ids.clone();
            full.extend(&response_ids);
            let pos = model.positions(&full, &grids).unwrap();
            let ref_pos: Vec<Vec<i64>> = case["position_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| {
                    r.as_array()
                        .unwrap()
                        .iter()
                        .map(|x| x.as_i64().unwrap())
                        .collect()
                })
                .collect();
            for (c, (ours, reference)) in pos.components.iter().zip(&ref_pos).enumerate() {
                assert_eq!(ours, reference, "{label}: position component {c}");
            }

            if let Some(img) = &image {
                let feats = model.encode_images(&[img]).unwrap();
                let d = max_abs_diff(&feats[0], golden.tensor(&case["vision"]));
                println!("{label}: vision features max |delta| = {d:.2e}");
                assert!(d <= LOGIT_TOL, "{label}: vision features differ by {d}");
            }

            let seq = Sequence {
                ids: &full,
                images: image.iter().collect(),
            };
            let logits = model.forward(&[seq]).unwrap().squeeze(0).unwrap();
            let d = max_abs_diff(&logits, golden.tensor(&case["logits"]));
            println!(
                "{label}: logits max |delta| = {d:.2e} over {} positions",
                full.len()
            );
            assert!(d <= LOGIT_TOL, "{label}: logits differ by {d}");

            prompts.push(prompt_ids);
            responses.push(response_ids);
            images.push(image);
        }

        // all cases of the fixture in one padded batch, at each reference temperature
        let batch: Vec<ScoringRequest> = (0..prompts.len())
            .map(|i| ScoringRequest {
                prompt_ids: &prompts[i],
                response_ids: &responses[i],
                images: images[i].iter().collect(),
            })
            .collect();
        for t in ["1.0", "0.7"] {
            let temperature: f64 = t.parse().unwrap();
            let lp = model
                .log_probs(&batch, temperature)
                .unwrap()
                .to_vecs()
                .unwrap();
            for (i, case) in golden.cases().iter().enumerate() {
                let reference: Vec<f32> = golden.tensor(&case["logprobs"][t]).to_vec1().unwrap();
                let ours = Tensor::new(lp[i].as_slice(), &candle_core::Device::Cpu).unwrap();
                let reference =
                    Tensor::new(reference.as_slice(), &candle_core::Device::Cpu).unwrap();
                let d = max_abs_diff(&ours, &reference);
                println!(
                    "{name}/{}: batched log-probs at T={t} max |delta| = {d:.2e}",
                    case["case"]
                );
                assert!(
                    d <= LOGIT_TOL,
                    "{name}/{}: log-probs at T={t} differ by {d}",
                    case["case"]
                );
            }
        }
    }
}
