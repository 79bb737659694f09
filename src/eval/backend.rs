//! Where responses come from. The runner supplies each sample's derived seed, so a response
//! never depends on which other requests ran beside it; a backend may therefore take several
//! samples per call (see [`Batching`]) without changing any of them.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Sampling parameters, recorded in the run folder. Defaults are the authors' evaluation
/// settings (PAPO-Eval: top-p 1.0, top-k 50, 768x768 pixels, 2048 new tokens, context 9216).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    pub temperature: f64,
    pub top_p: f64,
    pub top_k: u32,
    pub max_tokens: u32,
    pub max_context: u32,
    pub max_pixels: u32,
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
        out
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
