//! The OpenAI-compatible HTTP backend: one `POST {endpoint}/v1/chat/completions` per
//! sample, as vLLM, SGLang and `spotlight serve` answer it.
//!
//! Each request carries that sample's own seed, so a server that honours `seed` (vLLM and
//! SGLang seed a generator per request) gives the same response whichever other requests
//! ran beside it, and `n` is 1. Only when the user asks (`--n-per-request`) does one request
//! carry an item's samples with `n`: the server then seeds them itself from the first
//! sample's seed, so the per-sample seeds the runner derived no longer say which draw a
//! sample was; the run record says so ([`Backend::describe`]).
//!
//! The wire seed is the derived seed with its top bit cleared: vLLM (and OpenAI's API)
//! validate `seed` as a signed 64-bit integer and reject larger values with a 400. The
//! sample log keeps the full derived seed; [`wire_seed`] is the documented mapping.
//!
//! Transient failures (429, 408, 5xx, refused or dropped connections, timeouts) are
//! retried with exponential backoff and jitter. The jitter comes from a generator seeded by
//! the sample's seed, so two runs against the same flaky server wait the same way. A
//! failure that persists after the last retry, or one that retrying cannot fix (a 400, an
//! answer that is not a chat completion), becomes a [`BackendError`] recorded on that
//! sample; the run goes on.
//!
//! Images go out as PAPO-Eval handed them to its vLLM engine: pre-resized by LLaMA-Factory's
//! Qwen2-VL rules at the run's pixel cap ([`crate::model::PreResize`]) and sent as lossless
//! PNG, so the server's own processor, at the checkpoint's bounds, sees the pixels the paper's
//! evaluation saw. (Run folders from before the two-stage resize send the stored bytes and ask
//! the server's processor for the cap through `mm_processor_kwargs.max_pixels`.)
//! `max_context` is the server's to apply (vLLM: `--max-model-len`).
//!
//! The API key is read from an environment variable whose name the user gives, sent as a
//! bearer token marked sensitive, and never appears in [`Backend::describe`] (the run
//! record), error messages or `Debug` output.

use std::time::Duration;

use base64::Engine;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use reqwest::blocking::Client;
use reqwest::header::{HeaderValue, AUTHORIZATION, RETRY_AFTER};
use reqwest::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::backend::{Backend, BackendError, Batching, SampleRequest, SampleResponse};

/// Path appended to the endpoint's base URL.
pub const CHAT_COMPLETIONS_PATH: &str = "/v1/chat/completions";

/// Purpose tag of the backoff jitter's seed (see [`crate::seed::derive_seed_tagged`]).
const JITTER_TAG: &str = "http-backoff";

/// How much of an error response's body an error message quotes.
const BODY_SNIPPET_CHARS: usize = 300;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("endpoint {endpoint:?}: {reason}")]
    BadEndpoint { endpoint: String, reason: String },
    #[error("API key variable {variable}: {reason}")]
    ApiKey { variable: String, reason: String },
    #[error("request timeout {0:?}: must be more than zero")]
    BadTimeout(Duration),
    #[error("HTTP client: {0}")]
    Client(String),
}

/// A bearer token. Its `Debug` never shows the secret, so a config printed while
/// debugging cannot leak it.
#[derive(Clone)]
pub struct ApiKey {
    secret: String,
    /// Where it came from, for error messages: the variable's name.
    source: String,
}

impl ApiKey {
    pub fn new(secret: impl Into<String>) -> ApiKey {
        ApiKey {
            secret: secret.into(),
            source: "(given)".into(),
        }
    }

    /// The key in the environment variable `variable`: `None` when it is unset (local
    /// servers need none), an error when it is set but unusable.
    pub fn from_env(variable: &str) -> Result<Option<ApiKey>, HttpError> {
        match std::env::var(variable) {
            Ok(secret) if secret.trim().is_empty() => Err(HttpError::ApiKey {
                variable: variable.to_string(),
                reason: "is set but empty".into(),
            }),
            Ok(secret) => Ok(Some(ApiKey {
                secret: secret.trim().to_string(),
                source: variable.to_string(),
            })),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(HttpError::ApiKey {
                variable: variable.to_string(),
                reason: "is not valid Unicode".into(),
            }),
        }
    }
}

impl std::fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApiKey(<redacted>)")
    }
}

/// Exponential backoff with "equal jitter": before retry `n` (0-based) the wait is
/// `c/2 + uniform(0, c/2)` with `c = min(max, base * 2^n)`. Half the wait is fixed so a
/// rate-limited server always gets some rest; the random half spreads out the retries of
/// samples that failed together.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    pub base: Duration,
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            base: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The wait before retry `retry` (0-based), drawing the jitter from `rng`.
    pub fn delay(&self, retry: u32, rng: &mut impl Rng) -> Duration {
        let factor = 1u32.checked_shl(retry.min(31)).unwrap_or(u32::MAX);
        let ceiling = self.base.saturating_mul(factor).min(self.max);
        let ceiling_us = ceiling.as_micros().min(u64::MAX as u128) as u64;
        let half = ceiling_us / 2;
        Duration::from_micros(half + rng.random_range(0..=ceiling_us - half))
    }
}

/// Where and how to reach the server. The API key is passed beside it (see
/// [`HttpBackend::new`]), never stored in a config that might be printed or saved.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Base URL, e.g. `http://127.0.0.1:8000`; a trailing `/v1` (the OpenAI clients'
    /// `base_url` convention) or `/` is accepted.
    pub endpoint: String,
    /// The model name the server serves: the request's `model`.
    pub served_model: String,
    /// Limit on one attempt, from connecting to the last byte of the answer.
    pub request_timeout: Duration,
    /// Attempts after the first for a transient failure.
    pub retries: u32,
    pub backoff: Backoff,
    /// Samples of one item per request, sent as `n` (1: one request per sample, each with
    /// its own seed; more lets the server seed them).
    pub samples_per_request: usize,
}

impl HttpConfig {
    pub fn new(endpoint: impl Into<String>, served_model: impl Into<String>) -> HttpConfig {
        HttpConfig {
            endpoint: endpoint.into(),
            served_model: served_model.into(),
            request_timeout: Duration::from_secs(600),
            retries: 4,
            backoff: Backoff::default(),
            samples_per_request: 1,
        }
    }
}

/// `Authorization: Bearer KEY`, marked sensitive so reqwest's and http's `Debug` hide it.
fn bearer_header(key: ApiKey) -> Result<HeaderValue, HttpError> {
    let mut value = HeaderValue::from_str(&format!("Bearer {}", key.secret)).map_err(|_| {
        HttpError::ApiKey {
            variable: key.source.clone(),
            reason: "contains characters not allowed in an HTTP header".into(),
        }
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// The seed sent to the server for a derived sample seed: its low 63 bits, because
/// servers validate `seed` as a signed 64-bit integer.
pub fn wire_seed(derived: u64) -> u64 {
    derived & (i64::MAX as u64)
}

/// The MIME type of an encoded image, from its leading bytes.
pub fn image_mime(bytes: &[u8]) -> Option<&'static str> {
    image::guess_format(bytes).ok().map(|f| f.to_mime_type())
}

/// `stored` decoded, pre-resized and encoded as PNG (lossless: the server decodes exactly the
/// pre-resized pixels).
pub fn pre_resized_png(
    stored: &[u8],
    pre_resize: crate::model::PreResize,
) -> Result<Vec<u8>, crate::model::ModelError> {
    let source = crate::model::SourceImage::decode(stored, "image")?;
    let rgb = pre_resize.apply(&source);
    let mut out = Vec::new();
    rgb.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png)
        .map_err(|e| crate::model::ModelError::Image {
            source_name: "pre-resized image".into(),
            message: e.to_string(),
        })?;
    Ok(out)
}

/// An OpenAI-compatible chat-completions server as an evaluation backend.
pub struct HttpBackend {
    client: Client,
    /// Normalised base URL (no trailing `/` or `/v1`), for the run record.
    base: String,
    url: String,
    served_model: String,
    api_key: Option<HeaderValue>,
    retries: u32,
    backoff: Backoff,
    samples_per_request: usize,
}

impl HttpBackend {
    pub fn new(config: HttpConfig, api_key: Option<ApiKey>) -> Result<HttpBackend, HttpError> {
        let base = normalise_endpoint(&config.endpoint)?;
        if config.request_timeout.is_zero() {
            return Err(HttpError::BadTimeout(config.request_timeout));
        }
        if config.served_model.trim().is_empty() {
            return Err(HttpError::BadEndpoint {
                endpoint: config.endpoint.clone(),
                reason: "the served model name is empty".into(),
            });
        }
        let api_key = api_key.map(bearer_header).transpose()?;
        let client = Client::builder()
            .timeout(config.request_timeout)
            .connect_timeout(config.request_timeout.min(Duration::from_secs(30)))
            .user_agent(concat!("spotlight/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| HttpError::Client(error_chain(&e)))?;
        Ok(HttpBackend {
            client,
            url: format!("{base}{CHAT_COMPLETIONS_PATH}"),
            base,
            served_model: config.served_model,
            api_key,
            retries: config.retries,
            backoff: config.backoff,
            samples_per_request: config.samples_per_request.max(1),
        })
    }

    /// The URL requests go to.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The chat-completions body for one sample: optional system turn, then a user turn of
    /// the images (as base64 data URLs) followed by the prompt text.
    pub fn request_body(&self, request: &SampleRequest) -> Result<Value, BackendError> {
        let mut content = Vec::with_capacity(request.images.len() + 1);
        let pre_resize = request.sampling.pre_resize();
        for (index, stored) in request.images.iter().enumerate() {
            let bytes: std::borrow::Cow<[u8]> = if pre_resize == crate::model::PreResize::None {
                std::borrow::Cow::Borrowed(stored)
            } else {
                std::borrow::Cow::Owned(pre_resized_png(stored, pre_resize).map_err(|e| {
                    BackendError::Failed(format!(
                        "{}/{} image {index}: {e}",
                        request.benchmark, request.item_id
                    ))
                })?)
            };
            let bytes = &*bytes;
            let mime = image_mime(bytes).ok_or_else(|| {
                BackendError::Failed(format!(
                    "{}/{} image {index}: unrecognised image format (first bytes {:02x?})",
                    request.benchmark,
                    request.item_id,
                    &bytes[..bytes.len().min(8)]
                ))
            })?;
            let data = base64::engine::general_purpose::STANDARD.encode(bytes);
            content.push(json!({
                "type": "image_url",
                "image_url": {"url": format!("data:{mime};base64,{data}")},
            }));
        }
        content.push(json!({"type": "text", "text": request.prompt}));
        let mut messages = Vec::with_capacity(2);
        if !request.system.is_empty() {
            messages.push(json!({"role": "system", "content": request.system}));
        }
        messages.push(json!({"role": "user", "content": content}));
        let sampling = &request.sampling;
        let mut body = json!({
            "model": self.served_model,
            "messages": messages,
            "temperature": sampling.temperature,
            "top_p": sampling.top_p,
            "max_tokens": sampling.max_tokens,
            "seed": wire_seed(request.seed),
            "n": 1,
        });
        // vLLM/SGLang extension; 0 means off, which servers spell differently, so omit it.
        if sampling.top_k > 0 {
            body["top_k"] = json!(sampling.top_k);
        }
        // Runs from before the two-stage resize: the pixel cap was the server's processor's
        // (vLLM's per-request processor arguments; `spotlight serve` reads the same field).
        if let Some(cap) = sampling.processor_max_pixels() {
            body["mm_processor_kwargs"] = json!({ "max_pixels": cap });
        }
        Ok(body)
    }

    /// POSTs `body`, retrying transient failures; `request` seeds the backoff jitter.
    fn send(
        &self,
        body: &Value,
        request: &SampleRequest,
    ) -> Result<Vec<SampleResponse>, BackendError> {
        let mut jitter = ChaCha20Rng::seed_from_u64(crate::seed::derive_seed_tagged(
            request.seed,
            &request.item_id,
            request.sample,
            JITTER_TAG,
        ));
        let mut failures: Vec<String> = Vec::new();
        for attempt in 0..=self.retries {
            match self.attempt(body) {
                Attempt::Done(responses) => return Ok(responses),
                Attempt::Fatal(reason) => {
                    return Err(BackendError::Failed(format!(
                        "POST {}: {reason}{}",
                        self.url,
                        earlier(&failures)
                    )))
                }
                Attempt::Retry {
                    reason,
                    retry_after,
                } => {
                    failures.push(reason);
                    if attempt < self.retries {
                        let drawn = self.backoff.delay(attempt, &mut jitter);
                        std::thread::sleep(retry_after.map_or(drawn, |d| d.min(self.backoff.max)));
                    }
                }
            }
        }
        let last = failures.pop().unwrap_or_default();
        Err(BackendError::Failed(format!(
            "POST {}: gave up after {} attempts: {last}{}",
            self.url,
            self.retries + 1,
            earlier(&failures)
        )))
    }

    /// One POST and what to do about its outcome.
    fn attempt(&self, body: &Value) -> Attempt {
        let mut post = self.client.post(&self.url).json(body);
        if let Some(key) = &self.api_key {
            post = post.header(AUTHORIZATION, key.clone());
        }
        let response = match post.send() {
            Ok(r) => r,
            Err(e) => return transport_failure(e),
        };
        let status = response.status();
        let retry_after = response
            .headers()
            .get(RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let text = match response.text() {
            Ok(t) => t,
            Err(e) => return transport_failure(e),
        };
        if !status.is_success() {
            let message = format!("HTTP {status}: {}", snippet(&text));
            return if is_transient(status) {
                Attempt::Retry {
                    reason: message,
                    retry_after,
                }
            } else {
                Attempt::Fatal(message)
            };
        }
        match parse_choices(&text) {
            Ok(r) => Attempt::Done(r),
            Err(reason) => {
                Attempt::Fatal(format!("HTTP {status} but {reason}: {}", snippet(&text)))
            }
        }
    }
}

impl Backend for HttpBackend {
    fn describe(&self) -> String {
        let n = if self.samples_per_request > 1 {
            format!(
                ", up to {} samples per request as n (server-seeded)",
                self.samples_per_request
            )
        } else {
            String::new()
        };
        format!("http:{} model {}{n}", self.base, self.served_model)
    }

    fn sample(&self, request: &SampleRequest) -> Result<SampleResponse, BackendError> {
        let body = self.request_body(request)?;
        self.send(&body, request)?
            .into_iter()
            .next()
            .ok_or_else(|| BackendError::Failed(format!("POST {}: no choices", self.url)))
    }

    fn batching(&self) -> Batching {
        Batching {
            max_samples: self.samples_per_request,
            one_item: true,
        }
    }

    /// The samples of one item in one request with `n` (the runner never mixes items here);
    /// the request carries the first sample's seed and the server seeds the rest.
    fn sample_batch(
        &self,
        requests: &[SampleRequest],
    ) -> Vec<Result<SampleResponse, BackendError>> {
        let Some(first) = requests.first() else {
            return Vec::new();
        };
        let all_failed = |e: BackendError| requests.iter().map(|_| Err(e.clone())).collect();
        let mut body = match self.request_body(first) {
            Ok(body) => body,
            Err(e) => return all_failed(e),
        };
        body["n"] = json!(requests.len());
        match self.send(&body, first) {
            Ok(responses) => {
                let got = responses.len();
                let mut out: Vec<Result<SampleResponse, BackendError>> = responses
                    .into_iter()
                    .map(|mut r| {
                        // usage counts all choices together: no per-sample figure
                        if requests.len() > 1 {
                            r.response_tokens = None;
                        }
                        Ok(r)
                    })
                    .collect();
                out.truncate(requests.len());
                out.resize_with(requests.len(), || {
                    Err(BackendError::Failed(format!(
                        "POST {}: asked for n = {}, got {got} choices",
                        self.url,
                        requests.len()
                    )))
                });
                out
            }
            Err(e) => all_failed(e),
        }
    }
}

enum Attempt {
    Done(Vec<SampleResponse>),
    Retry {
        reason: String,
        retry_after: Option<Duration>,
    },
    Fatal(String),
}

/// Statuses worth another try: rate limits, request timeouts and server-side failures.
fn is_transient(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS
        || status == StatusCode::REQUEST_TIMEOUT
        || status.is_server_error()
}

/// A failure below HTTP (refused, reset or dropped connection, timeout) is transient; a
/// request that could not even be built is not.
fn transport_failure(e: reqwest::Error) -> Attempt {
    // The URL is already in the sample's error message once.
    let e = e.without_url();
    let reason = if e.is_timeout() {
        format!("timed out ({})", error_chain(&e))
    } else {
        error_chain(&e)
    };
    if e.is_builder() || e.is_redirect() {
        Attempt::Fatal(reason)
    } else {
        Attempt::Retry {
            reason,
            retry_after: None,
        }
    }
}

/// An error with its causes ("error sending request: connection closed before message
/// completed"): reqwest's own message alone rarely says what went wrong.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The earlier attempts' failures, runs of the same reason counted once ("2x HTTP 500").
fn earlier(failures: &[String]) -> String {
    let mut runs: Vec<(usize, &str)> = Vec::new();
    for reason in failures {
        match runs.last_mut() {
            Some((count, last)) if *last == reason.as_str() => *count += 1,
            _ => runs.push((1, reason)),
        }
    }
    if runs.is_empty() {
        return String::new();
    }
    let parts: Vec<String> = runs
        .iter()
        .map(|(count, reason)| {
            if *count > 1 {
                format!("{count}x {reason}")
            } else {
                reason.to_string()
            }
        })
        .collect();
    format!(" (earlier: {})", parts.join("; "))
}

fn snippet(text: &str) -> String {
    let trimmed = text.trim();
    match trimmed.char_indices().nth(BODY_SNIPPET_CHARS) {
        Some((cut, _)) => format!("{}…", &trimmed[..cut]),
        None => trimmed.to_string(),
    }
}

#[derive(Deserialize)]
struct ChatCompletion {
    #[serde(default)]
    choices: Vec<Choice>,
    usage: Option<Usage>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    index: Option<usize>,
    message: Message,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    /// Null when a model produced no text (e.g. only a tool call).
    content: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    prompt_tokens: Option<u32>,
    completion_tokens: Option<u32>,
}

/// `choices[0].message.content`, `finish_reason` and the token counts of a chat completion.
#[cfg(test)]
fn parse_completion(text: &str) -> Result<SampleResponse, String> {
    parse_choices(text).map(|mut choices| choices.swap_remove(0))
}

/// Every choice of a chat completion (content, `finish_reason`, the usage's token counts),
/// in `index` order; at least one.
fn parse_choices(text: &str) -> Result<Vec<SampleResponse>, String> {
    let completion: ChatCompletion = serde_json::from_str(text)
        .map_err(|e| format!("the answer is not a chat completion ({e})"))?;
    if completion.choices.is_empty() {
        return Err("the answer has no choices".to_string());
    }
    let prompt_tokens = completion.usage.as_ref().and_then(|u| u.prompt_tokens);
    let response_tokens = completion.usage.as_ref().and_then(|u| u.completion_tokens);
    let mut choices = completion.choices;
    choices.sort_by_key(|c| c.index);
    Ok(choices
        .into_iter()
        .map(|choice| SampleResponse {
            response: choice.message.content.unwrap_or_default(),
            prompt_tokens,
            response_tokens,
            finish: choice.finish_reason.unwrap_or_else(|| "unknown".into()),
        })
        .collect())
}

/// The base URL without a trailing `/` or `/v1`; only `http://` (and `https://` in builds
/// with the `https` feature).
fn normalise_endpoint(endpoint: &str) -> Result<String, HttpError> {
    let bad = |reason: &str| HttpError::BadEndpoint {
        endpoint: endpoint.to_string(),
        reason: reason.to_string(),
    };
    let trimmed = endpoint.trim().trim_end_matches('/');
    let base = trimmed.strip_suffix("/v1").unwrap_or(trimmed);
    let rest = if let Some(rest) = base.strip_prefix("http://") {
        rest
    } else if let Some(rest) = base.strip_prefix("https://") {
        if !cfg!(feature = "https") {
            return Err(bad(
                "https needs a build with the `https` feature (cargo install --features https)",
            ));
        }
        rest
    } else {
        return Err(bad("expected a URL starting with http:// or https://"));
    };
    if rest.is_empty() || rest.starts_with('/') {
        return Err(bad("no host"));
    }
    reqwest::Url::parse(base).map_err(|e| bad(&e.to_string()))?;
    Ok(base.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::eval::backend::Sampling;
    use std::sync::Arc;

    fn backend() -> HttpBackend {
        HttpBackend::new(HttpConfig::new("http://127.0.0.1:9/v1/", "qwen"), None).unwrap()
    }

    fn png() -> Vec<u8> {
        let mut bytes = Vec::new();
        image::DynamicImage::new_rgb8(2, 2)
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Png,
            )
            .unwrap();
        bytes
    }

    fn request(images: Vec<Vec<u8>>, top_k: u32) -> SampleRequest {
        SampleRequest {
            benchmark: "geo3k".into(),
            item_id: "7".into(),
            sample: 2,
            seed: u64::MAX - 5,
            system: "sys".into(),
            prompt: "What is x?".into(),
            images: images.into_iter().map(Arc::from).collect(),
            sampling: Sampling {
                top_k,
                ..Sampling::default()
            },
        }
    }

    #[test]
    fn endpoints_are_normalised_and_bad_ones_named() {
        assert_eq!(
            normalise_endpoint("http://h:8000/v1/").unwrap(),
            "http://h:8000"
        );
        assert_eq!(
            normalise_endpoint("http://h:8000").unwrap(),
            "http://h:8000"
        );
        let err = normalise_endpoint("h:8000").unwrap_err().to_string();
        assert!(err.contains("h:8000") && err.contains("http://"), "{err}");
        assert!(normalise_endpoint("http://").is_err());
        if !cfg!(feature = "https") {
            let err = normalise_endpoint("https://h").unwrap_err().to_string();
            assert!(err.contains("`https` feature"), "{err}");
        }
        assert_eq!(
            backend().url(),
            format!("http://127.0.0.1:9{CHAT_COMPLETIONS_PATH}")
        );
        assert_eq!(backend().describe(), "http:http://127.0.0.1:9 model qwen");
    }

    fn jpeg(w: u32, h: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::DynamicImage::ImageRgb8(image::RgbImage::from_pixel(w, h, image::Rgb([9, 80, 200])))
            .write_to(
                &mut std::io::Cursor::new(&mut bytes),
                image::ImageFormat::Jpeg,
            )
            .unwrap();
        bytes
    }

    fn decoded(url: &serde_json::Value) -> image::RgbImage {
        let data = url
            .as_str()
            .unwrap()
            .strip_prefix("data:image/png;base64,")
            .expect("a PNG data URL");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap();
        image::load_from_memory(&bytes).unwrap().to_rgb8()
    }

    /// Images go out as PAPO-Eval handed them to vLLM: pre-resized by LLaMA-Factory's rules
    /// at the run's cap, as lossless PNG, and without a processor cap for the server.
    #[test]
    fn body_has_pre_resized_images_then_text_and_the_wire_seed() {
        let body = backend()
            .request_body(&request(vec![png(), jpeg(1600, 800)], 50))
            .unwrap();
        assert_eq!(body["model"], "qwen");
        assert_eq!(body["n"], 1);
        assert_eq!(body["top_k"], 50);
        assert!(body.get("mm_processor_kwargs").is_none());
        // The derived seed is above i64::MAX: the wire seed clears the top bit only.
        assert_eq!(body["seed"], (u64::MAX - 5) - (1u64 << 63));
        assert!(body["seed"].as_u64().unwrap() <= i64::MAX as u64);
        assert_eq!(body["messages"][0]["role"], "system");
        let content = body["messages"][1]["content"].as_array().unwrap();
        assert_eq!(content.len(), 3);
        // 2x2 is under 32x32 pixels: scaled up by sqrt(1024 / 4) = 16
        let small = decoded(&content[0]["image_url"]["url"]);
        assert_eq!(small.dimensions(), (32, 32));
        let expected = crate::model::PreResize::EVAL
            .apply(&crate::model::SourceImage::decode(&png(), "png").unwrap());
        assert_eq!(small, expected);
        // 1600x800 over 768x768: int(1600 f), int(800 f) with f = sqrt(589824 / 1280000)
        assert_eq!(
            decoded(&content[1]["image_url"]["url"]).dimensions(),
            (1086, 543)
        );
        assert_eq!(content[2]["type"], "text");
        assert_eq!(content[2]["text"], "What is x?");
    }

    /// A run folder from before the two-stage resize keeps its own path: the stored bytes and
    /// the server's processor capped through `mm_processor_kwargs`.
    #[test]
    fn a_run_from_before_the_two_stage_resize_sends_stored_bytes_and_the_cap() {
        let mut r = request(vec![png(), jpeg(64, 64)], 50);
        r.sampling.image_pipeline = crate::eval::backend::ImagePipeline::ProcessorCapped;
        let body = backend().request_body(&r).unwrap();
        assert_eq!(body["mm_processor_kwargs"]["max_pixels"], 589_824);
        let content = body["messages"][1]["content"].as_array().unwrap();
        let url = content[0]["image_url"]["url"].as_str().unwrap();
        let data = url.strip_prefix("data:image/png;base64,").unwrap();
        assert_eq!(
            base64::engine::general_purpose::STANDARD
                .decode(data)
                .unwrap(),
            png()
        );
        assert!(content[1]["image_url"]["url"]
            .as_str()
            .unwrap()
            .starts_with("data:image/jpeg;base64,"));
    }

    #[test]
    fn n_choices_parse_in_index_order() {
        let choices = parse_choices(
            r#"{"choices":[{"index":1,"message":{"content":"b"},"finish_reason":"stop"},
                           {"index":0,"message":{"content":"a"},"finish_reason":"length"}]}"#,
        )
        .unwrap();
        let texts: Vec<&str> = choices.iter().map(|c| c.response.as_str()).collect();
        assert_eq!(texts, ["a", "b"]);
    }

    #[test]
    fn top_k_zero_and_empty_system_are_omitted() {
        let mut r = request(vec![], 0);
        r.system.clear();
        let body = backend().request_body(&r).unwrap();
        assert!(body.get("top_k").is_none());
        assert_eq!(body["messages"].as_array().unwrap().len(), 1);
        assert_eq!(body["messages"][0]["role"], "user");
    }

    #[test]
    fn unknown_image_bytes_name_the_item() {
        let err = backend()
            .request_body(&request(vec![b"not an image".to_vec()], 0))
            .unwrap_err()
            .to_string();
        assert!(err.contains("geo3k/7 image 0"), "{err}");
    }

    #[test]
    fn completions_parse_and_malformed_ones_say_why() {
        let ok = parse_completion(
            r#"{"choices":[{"message":{"content":"\\boxed{3}"},"finish_reason":"length"}],
               "usage":{"prompt_tokens":12,"completion_tokens":5}}"#,
        )
        .unwrap();
        assert_eq!(ok.response, "\\boxed{3}");
        assert_eq!(ok.finish, "length");
        assert_eq!((ok.prompt_tokens, ok.response_tokens), (Some(12), Some(5)));
        let bare = parse_completion(r#"{"choices":[{"message":{"content":null}}]}"#).unwrap();
        assert_eq!(
            (bare.response.as_str(), bare.finish.as_str()),
            ("", "unknown")
        );
        assert_eq!(bare.prompt_tokens, None);
        assert!(parse_completion(r#"{"choices":[]}"#)
            .unwrap_err()
            .contains("no choices"));
        assert!(parse_completion("<html>")
            .unwrap_err()
            .contains("not a chat completion"));
    }

    #[test]
    fn backoff_grows_stays_in_its_band_and_replays_with_the_seed() {
        let backoff = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        };
        let draw = |seed| {
            let mut rng = ChaCha20Rng::seed_from_u64(seed);
            (0..8)
                .map(|n| backoff.delay(n, &mut rng))
                .collect::<Vec<_>>()
        };
        let delays = draw(3);
        for (n, d) in delays.iter().enumerate() {
            let ceiling = (Duration::from_millis(100) * (1 << n)).min(backoff.max);
            assert!(*d >= ceiling / 2 && *d <= ceiling, "retry {n}: {d:?}");
        }
        assert_eq!(delays, draw(3));
        assert_ne!(delays, draw(4));
        // Huge retry counts saturate instead of overflowing.
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        assert!(backoff.delay(u32::MAX, &mut rng) <= backoff.max);
    }

    #[test]
    fn earlier_failures_are_counted_not_repeated() {
        assert_eq!(earlier(&[]), "");
        let reasons = [
            "HTTP 500".to_string(),
            "HTTP 500".into(),
            "timed out".into(),
        ];
        assert_eq!(earlier(&reasons), " (earlier: 2x HTTP 500; timed out)");
    }

    #[test]
    fn api_key_debug_is_redacted_and_statuses_classified() {
        assert_eq!(format!("{:?}", ApiKey::new("sk-123")), "ApiKey(<redacted>)");
        assert!(ApiKey::from_env("SPOTLIGHT_TEST_SURELY_UNSET_KEY_VARIABLE")
            .unwrap()
            .is_none());
        let err = HttpBackend::new(
            HttpConfig::new("http://127.0.0.1:9", "m"),
            Some(ApiKey::new("line\nbreak")),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(
            !err.contains("break"),
            "the secret must not be echoed: {err}"
        );
        assert!(is_transient(StatusCode::TOO_MANY_REQUESTS));
        assert!(is_transient(StatusCode::BAD_GATEWAY));
        assert!(!is_transient(StatusCode::BAD_REQUEST));
        assert!(!is_transient(StatusCode::NOT_FOUND));
    }
}
