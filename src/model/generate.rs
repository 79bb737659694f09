//! Sampling with a KV cache: batched across prompts, yet every sequence a pure function of
//! (model, prompt, image, its own seed).
//!
//! How that promise is kept:
//! - each prompt is prefilled alone (its image encoded once), whatever else is in the call, and
//!   its samples start from copies of that prefill;
//! - decoding steps run all unfinished samples together through the matrix products, which give
//!   each row the same bits whatever the row count ([`super::text::TextModel::decode_step`]),
//!   and attend per row over exactly that row's keys (no padding, so no padding side);
//! - every draw comes from the sample's own ChaCha20 stream, seeded with [`SampleRequest::seed`]
//!   (the runner passes [`crate::seed::derive_seed`]`(run seed, item id, sample index)`); a
//!   sample takes one uniform `f64` from it per sampled token and nothing else draws from it.
//!
//! The token choice, per step, from the last position's logits `z` (f32, widened to f64):
//! temperature 0 takes the argmax (lowest id on ties). Otherwise `p = softmax(z / T)`; top-k
//! keeps the k most likely tokens (order: probability, then lower id), top-p then keeps the
//! shortest prefix of that order whose renormalised mass reaches `top_p`; a uniform `u` in [0, 1)
//! times the kept mass picks the token by walking the kept tokens in that order (in id order when
//! neither filter is on). The returned log-prob is `log p` of the full tempered distribution,
//! what a scoring pass at the same temperature computes.

use candle_core::{DType, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::positions::MropePositions;
use super::processor::ProcessedImage;
use super::qwen25vl::{Qwen25Vl, Sequence};
use super::text::KvCache;
use super::ModelError;

/// How to pick each next token.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// 0 means greedy (argmax, lowest token id on ties).
    pub temperature: f64,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose mass reaches `top_p`
    /// (1.0: off).
    pub top_p: f64,
    /// Keep only the `top_k` most likely tokens (0: off).
    pub top_k: usize,
    /// At most this many new tokens per sample.
    pub max_new_tokens: usize,
    /// Sampling stops after one of these is emitted; it is kept in `token_ids` (as the trainer
    /// scores it) and skipped when decoding text.
    pub stop_token_ids: Vec<u32>,
}

/// A prompt to continue: chat-template token ids (image placeholders expanded) and its images
/// in order of appearance.
#[derive(Debug, Clone)]
pub struct GenerationPrompt<'a> {
    pub prompt_ids: &'a [u32],
    pub images: Vec<&'a ProcessedImage>,
}

/// One sample to draw: which prompt, and the sequence's own seed (e.g.
/// [`crate::seed::derive_seed`]`(run seed, item id, sample index)`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SampleRequest {
    pub prompt: usize,
    pub seed: u64,
}

/// Why a sample ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FinishReason {
    /// A stop token was emitted.
    Stop,
    /// `max_new_tokens` was reached.
    Length,
}

impl FinishReason {
    pub fn as_str(self) -> &'static str {
        match self {
            FinishReason::Stop => "stop",
            FinishReason::Length => "length",
        }
    }
}

/// One sampled continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct GeneratedSample {
    /// The new tokens, the stop token included when `finish` is `Stop`.
    pub token_ids: Vec<u32>,
    /// `log softmax(logits / temperature)` of each new token under the full distribution (before
    /// top-k / top-p), as a scoring pass at that temperature computes it; at temperature 0, at 1.
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

impl SamplingParams {
    fn validate(&self) -> Result<(), ModelError> {
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(ModelError::Input(format!(
                "temperature must be >= 0 and finite, got {}",
                self.temperature
            )));
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(ModelError::Input(format!(
                "top_p must be in (0, 1], got {}",
                self.top_p
            )));
        }
        Ok(())
    }
}

/// A sample being drawn.
struct Active {
    index: usize,
    cache: KvCache,
    rng: ChaCha20Rng,
    next_position: i64,
    last: u32,
}

impl Qwen25Vl {
    /// Draws one continuation per request. Prompts are prefilled once each (vision encoded once
    /// per image) however many samples share them; see the module documentation for why each
    /// sample is independent of the others in the call.
    pub fn generate(
        &self,
        prompts: &[GenerationPrompt],
        samples: &[SampleRequest],
        params: &SamplingParams,
    ) -> Result<Vec<GeneratedSample>, ModelError> {
        params.validate()?;
        for (i, s) in samples.iter().enumerate() {
            if s.prompt >= prompts.len() {
                return Err(ModelError::Input(format!(
                    "sample {i} names prompt {}, there are {}",
                    s.prompt,
                    prompts.len()
                )));
            }
        }
        let mut out: Vec<GeneratedSample> = samples
            .iter()
            .map(|_| GeneratedSample {
                token_ids: Vec::new(),
                logprobs: Vec::new(),
                finish: FinishReason::Length,
            })
            .collect();
        if params.max_new_tokens == 0 || samples.is_empty() {
            return Ok(out);
        }

        // prefill each prompt that has samples, then start its samples from copies
        let mut active: Vec<Active> = Vec::with_capacity(samples.len());
        let mut pending_logits: Vec<Vec<f32>> = Vec::with_capacity(samples.len());
        for (p, prompt) in prompts.iter().enumerate() {
            let mine: Vec<usize> = (0..samples.len())
                .filter(|&i| samples[i].prompt == p)
                .collect();
            if mine.is_empty() {
                continue;
            }
            if prompt.prompt_ids.is_empty() {
                return Err(ModelError::Input(format!("prompt {p} is empty")));
            }
            let seq = Sequence {
                ids: prompt.prompt_ids,
                images: prompt.images.clone(),
            };
            let prefill = self.prefill(&seq)?;
            let logits = self
                .text_model()
                .rows_logits(&prefill.last_hidden.unsqueeze(0)?)?;
            let logits: Vec<f32> = logits.get(0)?.to_dtype(DType::F32)?.to_vec1()?;
            let capacity = prompt.prompt_ids.len() + params.max_new_tokens;
            for i in mine {
                let mut cache = self.text_model().new_cache(capacity);
                cache.append_prefill(&prefill.kv)?;
                active.push(Active {
                    index: i,
                    cache,
                    rng: ChaCha20Rng::seed_from_u64(samples[i].seed),
                    next_position: prefill.next_position,
                    last: 0,
                });
                pending_logits.push(logits.clone());
            }
        }

        loop {
            // choose each active sample's next token from its logits
            let mut still = Vec::with_capacity(active.len());
            for (mut a, logits) in active.into_iter().zip(&pending_logits) {
                let (token, logprob) = choose_token(logits, params, &mut a.rng);
                let sample = &mut out[a.index];
                sample.token_ids.push(token);
                sample.logprobs.push(logprob);
                if params.stop_token_ids.contains(&token) {
                    sample.finish = FinishReason::Stop;
                } else if sample.token_ids.len() < params.max_new_tokens {
                    a.last = token;
                    still.push(a);
                }
            }
            active = still;
            if active.is_empty() {
                break;
            }
            pending_logits = self.decode(&mut active)?;
        }
        Ok(out)
    }

    /// Runs the active samples' last tokens through the decoder; returns each one's logits.
    fn decode(&self, active: &mut [Active]) -> Result<Vec<Vec<f32>>, ModelError> {
        let text = self.text_model();
        let ids: Vec<u32> = active.iter().map(|a| a.last).collect();
        let embeds = text.embed_ids(&ids)?;
        let positions: Vec<MropePositions> = active
            .iter()
            .map(|a| MropePositions {
                components: [
                    vec![a.next_position],
                    vec![a.next_position],
                    vec![a.next_position],
                ],
            })
            .collect();
        let rows: Vec<&MropePositions> = positions.iter().collect();
        let rope = text.rotary_tables(&rows, 1)?;
        let mut caches: Vec<&mut KvCache> = active.iter_mut().map(|a| &mut a.cache).collect();
        let hidden = text.decode_step(&embeds, &rope, &mut caches)?;
        for a in active.iter_mut() {
            a.next_position += 1;
        }
        let logits: Tensor = text.rows_logits(&hidden)?;
        Ok(logits.to_dtype(DType::F32)?.to_vec2()?)
    }
}

/// Picks the next token from one row of logits (see the module documentation); returns it with
/// its log-prob under the full tempered distribution.
fn choose_token(logits: &[f32], params: &SamplingParams, rng: &mut ChaCha20Rng) -> (u32, f32) {
    let greedy = params.temperature == 0.0;
    let t = if greedy { 1.0 } else { params.temperature };
    let scaled: Vec<f64> = logits.iter().map(|&z| z as f64 / t).collect();
    let max = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let weights: Vec<f64> = scaled.iter().map(|&z| (z - max).exp()).collect();
    let total: f64 = weights.iter().sum();
    let log_total = total.ln();
    let logprob = |id: usize| (scaled[id] - max - log_total) as f32;
    if greedy {
        // first index of the maximum: the lowest id on ties
        let id = scaled
            .iter()
            .enumerate()
            .fold(0, |best, (i, &z)| if z > scaled[best] { i } else { best });
        return (id as u32, logprob(id));
    }
    let u: f64 = rng.random::<f64>();
    let filtered = params.top_k > 0 && params.top_k < weights.len() || params.top_p < 1.0;
    let order: Vec<usize> = if filtered {
        let mut order: Vec<usize> = (0..weights.len()).collect();
        order.sort_by(|&a, &b| weights[b].total_cmp(&weights[a]).then(a.cmp(&b)));
        if params.top_k > 0 {
            order.truncate(params.top_k);
        }
        if params.top_p < 1.0 {
            let kept: f64 = order.iter().map(|&i| weights[i]).sum();
            let mut mass = 0.0;
            let mut keep = order.len();
            for (n, &i) in order.iter().enumerate() {
                mass += weights[i];
                if mass >= params.top_p * kept {
                    keep = n + 1;
                    break;
                }
            }
            order.truncate(keep.max(1));
        }
        order
    } else {
        (0..weights.len()).collect()
    };
    let kept: f64 = order.iter().map(|&i| weights[i]).sum();
    let target = u * kept;
    let mut acc = 0.0;
    let mut chosen = order[order.len() - 1];
    for &i in &order {
        acc += weights[i];
        if target < acc {
            chosen = i;
            break;
        }
    }
    (chosen as u32, logprob(chosen))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(temperature: f64, top_p: f64, top_k: usize) -> SamplingParams {
        SamplingParams {
            temperature,
            top_p,
            top_k,
            max_new_tokens: 1,
            stop_token_ids: vec![],
        }
    }

    fn histogram(logits: &[f32], p: &SamplingParams, draws: usize) -> Vec<usize> {
        let mut rng = ChaCha20Rng::seed_from_u64(11);
        let mut counts = vec![0; logits.len()];
        for _ in 0..draws {
            counts[choose_token(logits, p, &mut rng).0 as usize] += 1;
        }
        counts
    }

    #[test]
    fn greedy_takes_the_lowest_id_among_ties_and_reports_the_t1_logprob() {
        let logits = [0.5f32, 2.0, 2.0, -1.0];
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        let (id, lp) = choose_token(&logits, &params(0.0, 1.0, 0), &mut rng);
        assert_eq!(id, 1);
        let z: f64 = logits.iter().map(|&x| (x as f64).exp()).sum();
        assert!((lp as f64 - (2.0 - z.ln())).abs() < 1e-6);
    }

    #[test]
    fn top_k_and_top_p_never_pick_filtered_tokens() {
        let logits = [3.0f32, 2.0, 1.0, 0.0, -1.0];
        let k2 = histogram(&logits, &params(1.0, 1.0, 2), 2000);
        assert!(k2[2..].iter().all(|&c| c == 0), "{k2:?}");
        assert!(k2[0] > k2[1] && k2[1] > 0);
        // softmax(3,2,1,0,-1) = .636 .234 .086 .032 .012: top-p 0.8 keeps the first two
        let p8 = histogram(&logits, &params(1.0, 0.8, 0), 2000);
        assert!(p8[2..].iter().all(|&c| c == 0), "{p8:?}");
        // a tiny top-p still keeps the most likely token
        let p0 = histogram(&logits, &params(1.0, 1e-9, 0), 200);
        assert_eq!(p0[0], 200);
    }

    #[test]
    fn unfiltered_sampling_follows_the_tempered_distribution() {
        let logits = [1.0f32, 0.0, -1.0];
        let draws = 20_000;
        for t in [1.0, 0.5] {
            let counts = histogram(&logits, &params(t, 1.0, 0), draws);
            let w: Vec<f64> = logits.iter().map(|&z| (z as f64 / t).exp()).collect();
            let total: f64 = w.iter().sum();
            for (c, wi) in counts.iter().zip(&w) {
                let expected = wi / total;
                let got = *c as f64 / draws as f64;
                // 5 standard errors of a binomial share
                let se = (expected * (1.0 - expected) / draws as f64).sqrt();
                assert!(
                    (got - expected).abs() < 5.0 * se,
                    "T={t}: {got} vs {expected}"
                );
            }
        }
    }

    #[test]
    fn logprob_is_of_the_full_tempered_distribution_even_when_filtered() {
        let logits = [2.0f32, 1.0, 0.0];
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let (id, lp) = choose_token(&logits, &params(0.7, 1.0, 1), &mut rng);
        assert_eq!(id, 0);
        let w: Vec<f64> = logits.iter().map(|&z| (z as f64 / 0.7).exp()).collect();
        let expected = (w[0] / w.iter().sum::<f64>()).ln();
        assert!((lp as f64 - expected).abs() < 1e-6);
    }

    #[test]
    fn bad_settings_are_refused() {
        assert!(params(-1.0, 1.0, 0).validate().is_err());
        assert!(params(f64::NAN, 1.0, 0).validate().is_err());
        assert!(params(1.0, 0.0, 0).validate().is_err());
        assert!(params(1.0, 1.5, 0).validate().is_err());
        assert!(params(0.0, 1.0, 0).validate().is_ok());
    }
}
