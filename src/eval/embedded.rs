//! The embedded backend: a Qwen2.5-VL checkpoint run in-process through the batching
//! [`ChatEngine`] — the same path `spotlight serve` answers HTTP requests with, so an
//! evaluation over HTTP against `spotlight serve` gets exactly these responses for the same
//! seeds.

use std::path::Path;

use super::backend::{Backend, BackendError, SampleRequest, SampleResponse, Sampling};
use crate::model::{ChatEngine, ChatRequest, ChatSampling, Checkpoint};

/// A checkpoint folder behind the [`Backend`] trait.
pub struct EmbeddedBackend {
    engine: ChatEngine,
    description: String,
}

impl EmbeddedBackend {
    pub fn new(checkpoint: Checkpoint) -> Result<Self, crate::model::ModelError> {
        let description = format!("model:{}", checkpoint.dir.display());
        Ok(EmbeddedBackend {
            engine: ChatEngine::new(checkpoint)?,
            description,
        })
    }

    pub fn dir(&self) -> &Path {
        &self.engine.checkpoint().dir
    }
}

/// The evaluation's sampling settings as the engine takes them (top-k 0 is off in both).
pub fn chat_sampling(s: &Sampling) -> ChatSampling {
    ChatSampling {
        temperature: s.temperature,
        top_p: s.top_p,
        top_k: s.top_k as usize,
        max_tokens: s.max_tokens as usize,
        max_context: s.max_context as usize,
        pre_resize: s.pre_resize(),
        processor_max_pixels: s.processor_max_pixels(),
        processor: s.image_processor,
    }
}

impl Backend for EmbeddedBackend {
    fn describe(&self) -> String {
        self.description.clone()
    }

    fn sample(&self, request: &SampleRequest) -> Result<SampleResponse, BackendError> {
        let chat = ChatRequest {
            system: Some(request.system.clone()),
            text: request.prompt.clone(),
            images: request.images.clone(),
            // the seed as the HTTP backend sends it (63 bits: OpenAI's seed is an int64), so
            // `spotlight serve` answers an HTTP evaluation exactly as this backend does
            seed: super::http::wire_seed(request.seed),
            sampling: chat_sampling(&request.sampling),
        };
        let answer = self
            .engine
            .complete(&chat)
            .map_err(|e| BackendError::Failed(e.to_string()))?;
        Ok(SampleResponse {
            response: answer.text,
            prompt_tokens: Some(answer.prompt_tokens as u32),
            response_tokens: Some(answer.token_ids.len() as u32),
            finish: answer.finish.as_str().to_string(),
        })
    }
}
