//! Sampling with a KV cache: batched across prompts, yet every sequence a pure function of
//! (model, prompt, image, its own seed).
//!
//! (Implementation lands in the next commit; the types below are the contract the evaluation
//! backend and the trainer are written against.)

use serde::{Deserialize, Serialize};

use super::processor::ProcessedImage;
use super::qwen25vl::Qwen25Vl;
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

/// A prompt to continue: chat-template token ids (image placeholders expanded) and its image.
#[derive(Debug, Clone, Copy)]
pub struct GenerationPrompt<'a> {
    pub prompt_ids: &'a [u32],
    pub image: Option<&'a ProcessedImage>,
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

impl Qwen25Vl {
    /// Draws one continuation per request. Prompts are prefilled once each (vision encoded once
    /// per image) however many samples share them.
    pub fn generate(
        &self,
        prompts: &[GenerationPrompt],
        samples: &[SampleRequest],
        params: &SamplingParams,
    ) -> Result<Vec<GeneratedSample>, ModelError> {
        let _ = (prompts, samples, params);
        Err(ModelError::Input(
            "generation is not implemented yet".to_string(),
        ))
    }
}
