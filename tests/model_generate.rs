//! Sampling with a KV cache (`Qwen25Vl::generate`): each sample a pure function of its prompt,
//! image and seed — alone or inside a batch of other prompts, images and lengths — with
//! log-probs that a separate scoring pass reproduces.

mod model_common;

use model_common::*;
use spotlight::model::{
    Checkpoint, GeneratedSample, GenerationPrompt, GridThw, ProcessedImage, SampleRequest,
    SamplingParams, ScoringRequest,
};

const IMAGES: &[Option<&str>] = &[
    None,
    Some("square56.png"),
    Some("wide84x112.png"),
    Some("resize70x100.png"),
    Some("small30x40.png"),
];

/// Sixteen prompts with other texts, images (none, one or two) and so other lengths.
fn mixed_prompts(ckpt: &Checkpoint) -> Vec<(Vec<u32>, Vec<ProcessedImage>)> {
    let builder = ckpt.prompt_builder().unwrap();
    let golden = Golden::load(ckpt.dir.file_name().unwrap().to_str().unwrap());
    let texts: Vec<String> = golden
        .cases()
        .iter()
        .map(|c| c["prompt"].as_str().unwrap().to_string())
        .collect();
    (0..16)
        .map(|i| {
            let load = |f: &str| {
                ckpt.image_processor
                    .preprocess_file(&fixtures_root().join("images").join(f))
                    .unwrap()
            };
            let mut image: Vec<ProcessedImage> =
                IMAGES[i % IMAGES.len()].map(load).into_iter().collect();
            if i % 7 == 6 {
                // two images in one prompt, as MMMU-Pro has
                image.push(load("small30x40.png"));
            }
            let grids: Vec<GridThw> = image.iter().map(|im| im.grid_thw).collect();
            let text = format!("{} {}", texts[i % texts.len()], "and more ".repeat(i % 4));
            let ids = builder.prompt_ids(None, &text, &grids).unwrap();
            (ids, image)
        })
        .collect()
}

fn as_prompts(p: &[(Vec<u32>, Vec<ProcessedImage>)]) -> Vec<GenerationPrompt<'_>> {
    p.iter()
        .map(|(ids, im)| GenerationPrompt {
            prompt_ids: ids,
            images: im.iter().collect(),
        })
        .collect()
}

fn params(temperature: f64, top_p: f64, top_k: usize, max_new_tokens: usize) -> SamplingParams {
    SamplingParams {
        temperature,
        top_p,
        top_k,
        max_new_tokens,
        stop_token_ids: vec![],
    }
}

fn same_bits(a: &GeneratedSample, b: &GeneratedSample) -> bool {
    a.token_ids == b.token_ids
        && a.finish == b.finish
        && a.logprobs.len() == b.logprobs.len()
        && a.logprobs
            .iter()
            .zip(&b.logprobs)
            .all(|(x, y)| x.to_bits() == y.to_bits())
}

#[test]
fn a_sample_is_the_same_alone_and_inside_a_batch_of_sixteen_mixed_prompts() {
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let owned = mixed_prompts(&ckpt);
        let prompts = as_prompts(&owned);
        for (settings, p) in [
            ("T=1", params(1.0, 1.0, 0, 10)),
            ("T=0.7 top-p 0.9 top-k 50", params(0.7, 0.9, 50, 10)),
            ("greedy", params(0.0, 1.0, 0, 10)),
        ] {
            // every prompt sampled twice with distinct seeds, in one call
            let batch: Vec<SampleRequest> = (0..prompts.len())
                .flat_map(|i| {
                    (0..2).map(move |s| SampleRequest {
                        prompt: i,
                        seed: 1000 + 7 * i as u64 + s,
                    })
                })
                .collect();
            let together = ckpt.model.generate(&prompts, &batch, &p).unwrap();
            // the batch in reverse order: other neighbours, other row positions
            let reversed: Vec<SampleRequest> = batch.iter().rev().copied().collect();
            let mut backwards = ckpt.model.generate(&prompts, &reversed, &p).unwrap();
            backwards.reverse();
            for (i, req) in batch.iter().enumerate().step_by(3) {
                let alone = ckpt
                    .model
                    .generate(
                        &prompts[req.prompt..=req.prompt],
                        &[SampleRequest { prompt: 0, ..*req }],
                        &p,
                    )
                    .unwrap()
                    .pop()
                    .unwrap();
                assert!(
                    same_bits(&alone, &together[i]),
                    "{name} {settings}: sample {i} (prompt {}) differs alone vs in the batch:\n{:?}\n{:?}",
                    req.prompt,
                    alone.token_ids,
                    together[i].token_ids
                );
            }
            for (i, (a, b)) in together.iter().zip(&backwards).enumerate() {
                assert!(
                    same_bits(a, b),
                    "{name} {settings}: sample {i} depends on batch order"
                );
            }
            if settings != "greedy" {
                // distinct seeds draw distinct samples (12 tokens from ~450: a collision of all
                // of them would mean the seed is ignored)
                let distinct: std::collections::HashSet<&Vec<u32>> =
                    together.iter().map(|s| &s.token_ids).collect();
                assert!(
                    distinct.len() > together.len() / 2,
                    "{name} {settings}: seeds ignored?"
                );
            }
        }
    }
}

#[test]
fn sampled_log_probs_match_a_separate_scoring_pass() {
    let mut worst = 0f32;
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let owned = mixed_prompts(&ckpt);
        let prompts = as_prompts(&owned);
        for t in [1.0, 0.6] {
            let p = params(t, 1.0, 0, 16);
            // every prompt, the two-image ones included
            let reqs: Vec<SampleRequest> = (0..prompts.len())
                .map(|i| SampleRequest {
                    prompt: i,
                    seed: 42 + i as u64,
                })
                .collect();
            let samples = ckpt.model.generate(&prompts, &reqs, &p).unwrap();
            let scoring: Vec<ScoringRequest> = samples
                .iter()
                .zip(&reqs)
                .map(|(s, r)| ScoringRequest {
                    prompt_ids: prompts[r.prompt].prompt_ids,
                    response_ids: &s.token_ids,
                    images: prompts[r.prompt].images.clone(),
                })
                .collect();
            let scored = ckpt
                .model
                .log_probs(&scoring, t)
                .unwrap()
                .to_vecs()
                .unwrap();
            for (s, sc) in samples.iter().zip(&scored) {
                assert_eq!(s.logprobs.len(), sc.len());
                for (a, b) in s.logprobs.iter().zip(sc) {
                    worst = worst.max((a - b).abs());
                }
            }
        }
    }
    println!("max |sampled log-prob - scoring-pass log-prob| = {worst:e}");
    assert!(worst < 1e-4, "sampling and scoring disagree by {worst}");
}

/// An untrained policy samples `<|image_pad|>` and `<|vision_start|>` now and then; generation
/// feeds them back as ordinary text tokens, so scoring must too (the image features belong to the
/// prompt's placeholders only, and a generated token takes the next position).
#[test]
fn generated_vision_tokens_are_scored_as_the_sampler_saw_them() {
    let ckpt = Checkpoint::load(&fixture_dir("tiny")).unwrap();
    let image_id = ckpt.config.image_token_id;
    let start_id = ckpt.config.vision_start_token_id;
    let owned = mixed_prompts(&ckpt);
    let prompts = as_prompts(&owned);
    let p = params(1.5, 1.0, 0, 48);
    let reqs: Vec<SampleRequest> = (0..96u64)
        .map(|i| SampleRequest {
            prompt: (i as usize) % prompts.len(),
            seed: 7 + i,
        })
        .collect();
    let samples = ckpt.model.generate(&prompts, &reqs, &p).unwrap();
    let picked: Vec<usize> = (0..samples.len())
        .filter(|&i| {
            samples[i]
                .token_ids
                .iter()
                .any(|&t| t == image_id || t == start_id)
        })
        .collect();
    let with_images = picked
        .iter()
        .filter(|&&i| !prompts[reqs[i].prompt].images.is_empty())
        .count();
    assert!(
        with_images >= 2,
        "only {with_images} image-prompt samples hold a generated vision token; pick other seeds"
    );
    let scoring: Vec<ScoringRequest> = picked
        .iter()
        .map(|&i| ScoringRequest {
            prompt_ids: prompts[reqs[i].prompt].prompt_ids,
            response_ids: &samples[i].token_ids,
            images: prompts[reqs[i].prompt].images.clone(),
        })
        .collect();
    let scored = ckpt
        .model
        .log_probs(&scoring, 1.5)
        .unwrap()
        .to_vecs()
        .unwrap();
    let mut worst = 0f32;
    for (&i, sc) in picked.iter().zip(&scored) {
        assert_eq!(samples[i].logprobs.len(), sc.len());
        for (a, b) in samples[i].logprobs.iter().zip(sc) {
            worst = worst.max((a - b).abs());
        }
    }
    println!(
        "{} samples with generated vision tokens ({with_images} after an image): max |sampled - scored| = {worst:e}",
        picked.len()
    );
    assert!(worst < 1e-4, "sampling and scoring disagree by {worst}");
}

#[test]
fn sampling_stops_at_a_stop_token_and_keeps_it() {
    let ckpt = Checkpoint::load(&fixture_dir("tiny")).unwrap();
    let owned = mixed_prompts(&ckpt);
    let prompts = as_prompts(&owned);
    let req = [SampleRequest { prompt: 3, seed: 5 }];
    let free = ckpt
        .model
        .generate(&prompts, &req, &params(1.0, 1.0, 0, 12))
        .unwrap();
    assert_eq!(free[0].token_ids.len(), 12);
    assert_eq!(free[0].finish.as_str(), "length");
    let stop = free[0].token_ids[4];
    let first = free[0].token_ids.iter().position(|&t| t == stop).unwrap();
    let mut p = params(1.0, 1.0, 0, 12);
    p.stop_token_ids = vec![stop];
    let stopped = ckpt.model.generate(&prompts, &req, &p).unwrap();
    assert_eq!(stopped[0].token_ids, free[0].token_ids[..=first].to_vec());
    assert_eq!(stopped[0].finish.as_str(), "stop");
    // zero new tokens: an empty sample, not an error
    let none = ckpt
        .model
        .generate(&prompts, &req, &params(1.0, 1.0, 0, 0))
        .unwrap();
    assert!(none[0].token_ids.is_empty());
    // a sample naming a prompt that is not there is refused
    let bad = [SampleRequest {
        prompt: 99,
        seed: 0,
    }];
    assert!(ckpt
        .model
        .generate(&prompts, &bad, &params(1.0, 1.0, 0, 4))
        .is_err());
}

#[test]
fn greedy_output_equals_transformers_greedy_output() {
    // tools/golden/greedy.py: transformers' greedy tokens and the per-step gap between its two
    // largest logits; compare up to the first near-tie (gap < 1e-3), where f32 rounding may
    // legitimately pick the other token.
    let mut compared = 0;
    for &name in FIXTURES {
        let ckpt = Checkpoint::load(&fixture_dir(name)).unwrap();
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(fixture_dir(name).join("greedy.json")).unwrap(),
        )
        .unwrap();
        let mut p = params(
            0.0,
            1.0,
            0,
            golden["max_new_tokens"].as_u64().unwrap() as usize,
        );
        p.stop_token_ids = ids(&golden["eos_token_ids"]);
        for case in golden["cases"].as_array().unwrap() {
            let image = case["image"].as_str().map(|f| {
                ckpt.image_processor
                    .preprocess_file(&fixtures_root().join("images").join(f))
                    .unwrap()
            });
            let prompt_ids = ids(&case["prompt_ids"]);
            let prompts = [GenerationPrompt {
                prompt_ids: &prompt_ids,
                images: image.iter().collect(),
            }];
            let ours = ckpt
                .model
                .generate(&prompts, &[SampleRequest { prompt: 0, seed: 0 }], &p)
                .unwrap()
                .pop()
                .unwrap();
            let theirs = ids(&case["tokens"]);
            let gaps: Vec<f64> = case["top2_gaps"]
                .as_array()
                .unwrap()
                .iter()
                .map(|g| g.as_f64().unwrap())
                .collect();
            let n = gaps.iter().position(|&g| g < 1e-3).unwrap_or(theirs.len());
            if n < theirs.len() {
                println!(
                    "{name}/{}: near-tie at step {n}, compared {n} tokens",
                    case["case"]
                );
            }
            assert_eq!(
                ours.token_ids[..n.min(ours.token_ids.len())],
                theirs[..n],
                "{name}/{}: greedy tokens differ from transformers'",
                case["case"]
            );
            if n == theirs.len() {
                assert_eq!(ours.token_ids, theirs, "{name}/{}: length", case["case"]);
            }
            compared += n;
        }
    }
    println!("greedy: {compared} tokens equal to transformers'");
    assert!(compared > 300);
}
