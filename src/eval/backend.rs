//! Where responses come from. The runner supplies each sample's derived seed, so a response
//! never depends on which other requests ran beside it; a backend may therefore take several
//! samples per call (see [`Batching`]) without changing any of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::model::{PreResize, ProcessorKind};

/// Sampling parameters, recorded in the run folder. Defaults are the authors' evaluation
/// settings (PAPO-Eval: top-p 1.0, top-k 50, 768x768 pixels, 2048 new tokens, context 9216).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: u32,
    pub max_tokens: u32,
    pub max_context: u32,
    /// The evaluation's pixel cap: LLaMA-Factory's `image_max_pixels` (PAPO-Eval: 768x768).
    pub max_pixels: u32,
    /// How images reach the model's processor. Run folders made before the two-stage resize
    /// read as [`ImagePipeline::ProcessorCapped`], so they are neither resumed nor compared
    /// as if they had seen the same pixels.
    #[serde(default = "ImagePipeline::before_two_stage")]
    pub image_pipeline: ImagePipeline,
    /// Which of transformers' image processors the embedded model reproduces (`--model`; an
    /// `--endpoint` server uses its own). PAPO-Eval's transformers 4.52 loaded the slow one.
    #[serde(default)]
    pub image_processor: ProcessorKind,
    /// What the model is shown in place of the images (`--images`): the items' own, or a
    /// control (black, another item's) that tells looking from answer priors.
    #[serde(default)]
    pub images: super::image_control::ImageControl,
}

/// The image path of an evaluation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ImagePipeline {
    /// PAPO-Eval's: LLaMA-Factory's Qwen2-VL pre-resize (`image_min_pixels` 32x32,
    /// `image_max_pixels` = `max_pixels`, a side under 28 stretched, aspect ratios above 200
    /// squeezed), then the checkpoint's processor at its own bounds.
    #[default]
    LlamaFactory,
    /// Spotlight's evaluations before the two-stage resize: the processor alone, its
    /// `max_pixels` lowered to the cap.
    ProcessorCapped,
}

impl ImagePipeline {
    fn before_two_stage() -> Self {
        ImagePipeline::ProcessorCapped
    }

    pub fn name(self) -> &'static str {
        match self {
            ImagePipeline::LlamaFactory => "llama-factory",
            ImagePipeline::ProcessorCapped => "processor-capped",
        }
    }
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling {
            temperature: 1.0,
            top_p: 1.0,
            top_k: 50,
            max_tokens: 2048,
            max_context: 9216,
            max_pixels: 589_824,
            image_pipeline: ImagePipeline::LlamaFactory,
            image_processor: ProcessorKind::Slow,
            images: Default::default(),
        }
    }
}

impl Sampling {
    /// Each setting that differs from `other`, as (name, "mine vs other"): the one list
    /// behind `--resume`'s refusal and `compare`'s warnings.
    pub fn differences(&self, other: &Sampling) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut check = |name: &'static str, a: String, b: String| {
            if a != b {
                out.push((name, format!("{name} {a} vs {b}")));
            }
        };
        check(
            "temperature",
            self.temperature.to_string(),
            other.temperature.to_string(),
        );
        check("top-p", self.top_p.to_string(), other.top_p.to_string());
        check("top-k", self.top_k.to_string(), other.top_k.to_string());
        check(
            "max tokens",
            self.max_tokens.to_string(),
            other.max_tokens.to_string(),
        );
        check(
            "max context",
            self.max_context.to_string(),
            other.max_context.to_string(),
        );
        check(
            "max pixels",
            self.max_pixels.to_string(),
            other.max_pixels.to_string(),
        );
        check(
            "image pipeline",
            self.image_pipeline.name().to_string(),
            other.image_pipeline.name().to_string(),
        );
        check(
            "image processor",
            self.image_processor.name().to_string(),
            other.image_processor.name().to_string(),
        );
        check(
            "images",
            self.images.name().to_string(),
            other.images.name().to_string(),
        );
        out
    }

    /// The resize in front of the processor.
    pub fn pre_resize(&self) -> PreResize {
        match self.image_pipeline {
            ImagePipeline::LlamaFactory => PreResize::LlamaFactory {
                min_pixels: 32 * 32,
                max_pixels: self.max_pixels as u64,
            },
            ImagePipeline::ProcessorCapped => PreResize::None,
        }
    }

    /// A lower `max_pixels` for the processor itself (only the old one-step path has one).
    pub fn processor_max_pixels(&self) -> Option<usize> {
        match self.image_pipeline {
            ImagePipeline::LlamaFactory => None,
            ImagePipeline::ProcessorCapped => Some(self.max_pixels as usize),
        }
    }
}

/// One sample to produce.
#[derive(Debug, Clone)]
pub struct SampleRequest {
    pub benchmark: String,
    pub item_id: String,
    pub sample: u32,
    /// Derived from (run seed, item id, sample index): see [`crate::seed`].
    pub seed: u64,
    pub system: String,
    /// User-turn text; the images come before it.
    pub prompt: String,
    pub images: Vec<Arc<[u8]>>,
    pub sampling: Sampling,
}

/// A produced sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SampleResponse {
    pub response: String,
    pub prompt_tokens: Option<u32>,
    pub response_tokens: Option<u32>,
    /// "stop", "length", or what the backend reported.
    pub finish: String,
}

/// Why a sample could not be produced. Recorded per sample; the run goes on.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BackendError {
    #[error("no response for {benchmark}/{item_id} sample {sample} in the replay file")]
    MissingReplay {
        benchmark: String,
        item_id: String,
        sample: u32,
    },
    #[error("{0}")]
    Failed(String),
}

/// How many samples a backend takes per call, and whether they must share an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Batching {
    /// At most this many samples per [`Backend::sample_batch`] call.
    pub max_samples: usize,
    /// Every sample of a call is of one item (an HTTP request with `n`).
    pub one_item: bool,
}

impl Default for Batching {
    /// One sample per call.
    fn default() -> Self {
        Batching {
            max_samples: 1,
            one_item: true,
        }
    }
}

/// A source of responses.
pub trait Backend: Send + Sync {
    /// What is evaluated, for the run record ("replay:FILE", "http:URL model", ...).
    fn describe(&self) -> String;
    fn sample(&self, request: &SampleRequest) -> Result<SampleResponse, BackendError>;
    /// How the runner should group samples into calls of [`Backend::sample_batch`].
    fn batching(&self) -> Batching {
        Batching::default()
    }
    /// Several samples at once, answered in order. The default asks for each in turn.
    fn sample_batch(
        &self,
        requests: &[SampleRequest],
    ) -> Vec<Result<SampleResponse, BackendError>> {
        requests.iter().map(|r| self.sample(r)).collect()
    }
}
