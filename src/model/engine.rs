//! A loaded checkpoint answering chat requests, batched: the one path from (system, text,
//! images, seed, sampling settings) to a response, shared by the embedded evaluation backend
//! and `spotlight serve`, so both give the same answer for the same seed.
//!
//! Callers block in [`ChatEngine::complete`] from any number of threads; one worker thread
//! takes everything queued, groups requests with the same sampling settings, prefills each
//! distinct prompt once and samples the group in one [`Qwen25Vl::generate`] call. Which requests
//! share a batch depends on timing, but no result does: generation is batch-invariant
//! (see [`super::generate`]).
//!
//! [`Qwen25Vl::generate`]: super::Qwen25Vl::generate

use std::collections::HashMap;
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use super::generate::{
    FinishReason, GeneratedSample, GenerationPrompt, SampleRequest, SamplingParams,
};
use super::processor::ProcessedImage;
use super::{Checkpoint, ModelError, PreResize, ProcessorKind, SourceImage};

/// Largest number of samples generated in one call.
const MAX_BATCH: usize = 64;

/// How to sample one response.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatSampling {
    pub temperature: f64,
    pub top_p: f64,
    /// 0: off.
    pub top_k: usize,
    pub max_tokens: usize,
    /// Prompt plus response tokens at most; the response is cut to fit.
    pub max_context: usize,
    /// What happens to each image before the processor (PAPO-Eval's LLaMA-Factory
    /// pre-resize for evaluations; none for `spotlight serve`, whose clients send images as
    /// they want them seen).
    pub pre_resize: PreResize,
    /// A lower `max_pixels` for the processor than the checkpoint's (vLLM's
    /// `mm_processor_kwargs.max_pixels`).
    pub processor_max_pixels: Option<usize>,
    /// Which of transformers' image processors to reproduce.
    pub processor: ProcessorKind,
}

/// One chat turn to answer.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub system: Option<String>,
    /// The user's text; the images come before it in the user turn.
    pub text: String,
    /// Encoded images (PNG, JPEG, ...).
    pub images: Vec<Arc<[u8]>>,
    /// The sample's own seed (e.g. `derive_seed(run seed, item id, sample index)`).
    pub seed: u64,
    pub sampling: ChatSampling,
}

/// The answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ChatResponse {
    /// Decoded without special tokens.
    pub text: String,
    pub prompt_tokens: usize,
    pub token_ids: Vec<u32>,
    pub logprobs: Vec<f32>,
    pub finish: FinishReason,
}

/// A request prepared in the caller's thread, waiting for the worker.
struct Pending {
    prompt_ids: Vec<u32>,
    images: Vec<ProcessedImage>,
    /// Identifies the prompt: ids and image pixels (hashed), for sharing a prefill.
    prompt_key: [u8; 32],
    seed: u64,
    params: SamplingParams,
    reply: Sender<Result<GeneratedSample, ModelError>>,
}

/// A checkpoint behind a batching worker thread.
pub struct ChatEngine {
    checkpoint: Arc<Checkpoint>,
    queue: Mutex<Sender<Pending>>,
}

impl ChatEngine {
    /// Starts the worker. The engine (and the worker) live until dropped.
    pub fn new(checkpoint: Checkpoint) -> Result<Self, ModelError> {
        // the prompt builder is needed for every request: fail now, not per sample
        checkpoint.prompt_builder()?;
        let checkpoint = Arc::new(checkpoint);
        let (tx, rx) = channel::<Pending>();
        let worker = Arc::clone(&checkpoint);
        std::thread::Builder::new()
            .name("spotlight-generate".into())
            .spawn(move || serve_queue(&worker, &rx))
            .map_err(|e| ModelError::Input(format!("cannot start the generation thread: {e}")))?;
        Ok(ChatEngine {
            checkpoint,
            queue: Mutex::new(tx),
        })
    }

    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Answers one request (blocking until its batch is done).
    pub fn complete(&self, request: &ChatRequest) -> Result<ChatResponse, ModelError> {
        let ckpt = &*self.checkpoint;
        let mut processor = ckpt.image_processor.clone();
        processor.kind = request.sampling.processor;
        if let Some(cap) = request.sampling.processor_max_pixels {
            processor.max_pixels = processor.max_pixels.min(cap);
            processor.min_pixels = processor.min_pixels.min(processor.max_pixels);
        }
        let mut images = Vec::with_capacity(request.images.len());
        for (i, bytes) in request.images.iter().enumerate() {
            let decoded = SourceImage::decode(bytes, &format!("request image {i}"))?;
            let rgb = request.sampling.pre_resize.apply(&decoded);
            images.push(processor.preprocess(&image::DynamicImage::ImageRgb8(rgb))?);
        }
        let grids: Vec<_> = images.iter().map(|i| i.grid_thw).collect();
        let builder = ckpt.prompt_builder()?;
        let prompt_ids = builder.prompt_ids(request.system.as_deref(), &request.text, &grids)?;
        let s = &request.sampling;
        if prompt_ids.len() >= s.max_context {
            return Err(ModelError::Input(format!(
                "the prompt has {} tokens, at or over the context limit of {}",
                prompt_ids.len(),
                s.max_context
            )));
        }
        let params = SamplingParams {
            temperature: s.temperature,
            top_p: s.top_p,
            top_k: s.top_k,
            max_new_tokens: s.max_tokens.min(s.max_context - prompt_ids.len()),
            stop_token_ids: ckpt.stop_token_ids(),
        };
        let mut h = Sha256::new();
        for id in &prompt_ids {
            h.update(id.to_le_bytes());
        }
        for img in &images {
            h.update((img.pixel_values.len() as u64).to_le_bytes());
            for v in &img.pixel_values {
                h.update(v.to_le_bytes());
            }
        }
        let (reply, answer) = channel();
        let pending = Pending {
            prompt_key: h.finalize().into(),
            prompt_ids,
            images,
            seed: request.seed,
            params,
            reply,
        };
        let prompt_tokens = pending.prompt_ids.len();
        self.queue
            .lock()
            .map_err(|_| ModelError::Input("generation queue poisoned".into()))?
            .send(pending)
            .map_err(|_| ModelError::Input("the generation thread has stopped".into()))?;
        let GeneratedSample {
            token_ids,
            logprobs,
            finish,
        } = answer
            .recv()
            .map_err(|_| ModelError::Input("the generation thread has stopped".into()))??;
        let text = ckpt
            .tokenizer
            .decode(&token_ids, true)
            .map_err(|e| ModelError::Tokenizer {
                path: ckpt.tokenizer_path.clone(),
                message: e.to_string(),
            })?;
        Ok(ChatResponse {
            text,
            prompt_tokens,
            token_ids,
            logprobs,
            finish,
        })
    }
}

/// The worker: waits for a request, takes whatever else is queued, runs the batches.
fn serve_queue(ckpt: &Checkpoint, rx: &Receiver<Pending>) {
    while let Ok(first) = rx.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
        // one generate call per distinct sampling setting
        let mut groups: Vec<Vec<Pending>> = Vec::new();
        for p in batch {
            match groups.iter_mut().find(|g| g[0].params == p.params) {
                Some(g) => g.push(p),
                None => groups.push(vec![p]),
            }
        }
        for group in groups {
            run_group(ckpt, group);
        }
    }
}

fn run_group(ckpt: &Checkpoint, group: Vec<Pending>) {
    // distinct prompts, in first-seen order
    let mut index: HashMap<[u8; 32], usize> = HashMap::new();
    let mut owners: Vec<usize> = Vec::new();
    let mut samples = Vec::with_capacity(group.len());
    for (i, p) in group.iter().enumerate() {
        let next = owners.len();
        let prompt = *index.entry(p.prompt_key).or_insert(next);
        if prompt == next {
            owners.push(i);
        }
        samples.push(SampleRequest {
            prompt,
            seed: p.seed,
        });
    }
    let prompts: Vec<GenerationPrompt> = owners
        .iter()
        .map(|&i| GenerationPrompt {
            prompt_ids: &group[i].prompt_ids,
            images: group[i].images.iter().collect(),
        })
        .collect();
    let params = &group[0].params;
    match ckpt.model.generate(&prompts, &samples, params) {
        Ok(outputs) => {
            for (p, out) in group.iter().zip(outputs) {
                // a caller that gave up is not an error here
                let _ = p.reply.send(Ok(out));
            }
        }
        Err(e) => {
            let message = e.to_string();
            for p in &group {
                let _ = p.reply.send(Err(ModelError::Input(message.clone())));
            }
        }
    }
}
