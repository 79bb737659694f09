//! `spotlight serve`: a checkpoint behind an OpenAI-compatible chat-completions API, so the
//! HTTP evaluation backend can be tested against a real server and small checkpoints can be
//! served to other tools.
//!
//! Requests go through the same [`ChatEngine`] as the embedded evaluation backend, so a request
//! carrying a seed gets exactly the response `spotlight eval --model` produces for that seed.
//! Concurrent requests are batched by the engine; batching never changes a response.
//!
//! Routes: `POST /v1/chat/completions`, `GET /v1/models`, `GET /health`. Extensions accepted
//! as vLLM accepts them: `top_k` (0 or absent: off) and `mm_processor_kwargs.max_pixels`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::model::{ChatEngine, ChatRequest, ChatResponse, ChatSampling, PreResize};

/// Largest request body: base64 images make chat requests large (64 MiB).
pub const MAX_BODY_BYTES: usize = 64 << 20;

/// What the server needs besides the engine.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The name clients send as `model` (any name is accepted; this one is reported).
    pub served_model: String,
    /// Prompt plus response tokens at most (the server's context length).
    pub max_context: usize,
    /// The processor's pixel cap when a request does not give `mm_processor_kwargs.max_pixels`
    /// (`None`: the checkpoint's own).
    pub max_pixels: Option<usize>,
    /// Which of transformers' image processors to reproduce.
    pub processor: crate::model::ProcessorKind,
}

struct AppState {
    engine: ChatEngine,
    settings: ServeSettings,
}

/// Why a request is refused: HTTP status and an OpenAI-style error body.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn bad(message: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let kind = if self.status == StatusCode::BAD_REQUEST {
            "invalid_request_error"
        } else {
            "server_error"
        };
        let body =
            json!({"error": {"message": self.message, "type": kind, "param": null, "code": null}});
        (self.status, Json(body)).into_response()
    }
}

/// The router over an engine (exposed for tests that serve on their own listener).
pub fn router(engine: ChatEngine, settings: ServeSettings) -> Router {
    let state = Arc::new(AppState { engine, settings });
    Router::new()
        .route("/v1/chat/completions", post(chat_completions))
        .route("/v1/models", get(models))
        .route("/health", get(|| async { "ok" }))
        // axum's default (2 MB) refuses a request with one large base64 image
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

/// Serves until the process is interrupted. `on_bound` gets the bound address (port 0 picks a
/// free port) before the first request is accepted.
pub fn serve(
    engine: ChatEngine,
    settings: ServeSettings,
    addr: SocketAddr,
    on_bound: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_io()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        on_bound(listener.local_addr()?);
        axum::serve(listener, router(engine, settings))
            .with_graceful_shutdown(async {
                let _ = tokio::signal::ctrl_c().await;
            })
            .await
    })
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{"id": state.settings.served_model, "object": "model", "owned_by": "spotlight"}],
    }))
}

async fn chat_completions(
    State(state): State<Arc<AppState>>,
    body: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let body: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::bad(format!("the body is not JSON: {e}")))?;
    let parsed = parse_request(&body, &state.settings)?;
    let mut handles = Vec::with_capacity(parsed.n);
    for i in 0..parsed.n {
        let state = Arc::clone(&state);
        let mut request = parsed.request.clone();
        // choice i samples with seed + i (choice 0 is exactly the seed's sample)
        request.seed = request.seed.wrapping_add(i as u64);
        handles.push(tokio::task::spawn_blocking(move || {
            state.engine.complete(&request)
        }));
    }
    let mut answers: Vec<ChatResponse> = Vec::with_capacity(parsed.n);
    for handle in handles {
        let answer = handle
            .await
            .map_err(|e| ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: format!("generation task failed: {e}"),
            })?
            .map_err(|e| match e {
                crate::model::ModelError::Input(_) | crate::model::ModelError::Image { .. } => {
                    ApiError::bad(e.to_string())
                }
                other => ApiError {
                    status: StatusCode::INTERNAL_SERVER_ERROR,
                    message: other.to_string(),
                },
            })?;
        answers.push(answer);
    }
    let prompt_tokens = answers.first().map_or(0, |a| a.prompt_tokens);
    let completion_tokens: usize = answers.iter().map(|a| a.token_ids.len()).sum();
    let created = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    Ok(Json(json!({
        "id": format!("chatcmpl-{:016x}", parsed.request.seed),
        "object": "chat.completion",
        "created": created,
        "model": state.settings.served_model,
        "choices": answers.iter().enumerate().map(|(i, a)| json!({
            "index": i,
            "message": {"role": "assistant", "content": a.text},
            "finish_reason": a.finish.as_str(),
            "logprobs": null,
        })).collect::<Vec<_>>(),
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    })))
}

/// A chat-completions body, validated.
#[derive(Debug, Clone)]
pub struct ParsedRequest {
    pub request: ChatRequest,
    pub n: usize,
}

/// Reads an OpenAI chat-completions body into an engine request; every refusal names the field.
pub fn parse_request(body: &Value, settings: &ServeSettings) -> Result<ParsedRequest, ApiError> {
    let messages = body
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::bad("`messages` must be a non-empty array"))?;
    if messages.is_empty() {
        return Err(ApiError::bad("`messages` must be a non-empty array"));
    }
    let mut system: Option<String> = None;
    let mut user: Option<(String, Vec<Arc<[u8]>>)> = None;
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        match role {
            "system" => {
                let (text, images) = content(m.get("content"), i)?;
                if !images.is_empty() {
                    return Err(ApiError::bad(format!(
                        "messages[{i}]: a system message cannot hold images"
                    )));
                }
                system = Some(text);
            }
            "user" if user.is_none() => user = Some(content(m.get("content"), i)?),
            "user" | "assistant" | "tool" => {
                return Err(ApiError::bad(format!(
                "messages[{i}]: only one user turn (after an optional system message) is supported"
            )))
            }
            other => {
                return Err(ApiError::bad(format!(
                    "messages[{i}].role: unknown role {other:?}"
                )))
            }
        }
    }
    let (text, images) = user.ok_or_else(|| ApiError::bad("`messages` has no user turn"))?;
    let number = |name: &str, default: f64| -> Result<f64, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| ApiError::bad(format!("`{name}` must be a number"))),
        }
    };
    let count = |name: &str| -> Result<Option<u64>, ApiError> {
        match body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .map(Some)
                .ok_or_else(|| ApiError::bad(format!("`{name}` must be a non-negative integer"))),
        }
    };
    let temperature = number("temperature", 1.0)?;
    if !(0.0..=100.0).contains(&temperature) {
        return Err(ApiError::bad(format!(
            "`temperature` must be in [0, 100], got {temperature}"
        )));
    }
    let top_p = number("top_p", 1.0)?;
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(ApiError::bad(format!(
            "`top_p` must be in (0, 1], got {top_p}"
        )));
    }
    // vLLM spells "off" as -1 or 0
    let top_k = match body.get("top_k") {
        None | Some(Value::Null) => 0,
        Some(v) => match v.as_i64() {
            Some(k) if k <= 0 => 0,
            Some(k) => k as usize,
            None => return Err(ApiError::bad("`top_k` must be an integer")),
        },
    };
    let max_tokens = count("max_tokens")?
        .or(count("max_completion_tokens")?)
        .map_or(settings.max_context, |m| m as usize);
    let n = count("n")?.unwrap_or(1) as usize;
    if n == 0 || n > 128 {
        return Err(ApiError::bad(format!("`n` must be in 1..=128, got {n}")));
    }
    let seed = match body.get("seed") {
        None | Some(Value::Null) => rand::random::<u64>() & (i64::MAX as u64),
        Some(v) => v
            .as_u64()
            .or_else(|| v.as_i64().map(|s| s as u64))
            .ok_or_else(|| ApiError::bad("`seed` must be an integer"))?,
    };
    let max_pixels = match body.pointer("/mm_processor_kwargs/max_pixels") {
        None | Some(Value::Null) => settings.max_pixels,
        Some(v) => Some(v.as_u64().filter(|&p| p > 0).ok_or_else(|| {
            ApiError::bad("`mm_processor_kwargs.max_pixels` must be a positive integer")
        })? as usize),
    };
    Ok(ParsedRequest {
        request: ChatRequest {
            system,
            text,
            images,
            seed,
            sampling: ChatSampling {
                temperature,
                top_p,
                top_k,
                max_tokens,
                max_context: settings.max_context,
                // images arrive as the client wants them seen (Spotlight's HTTP backend sends
                // them pre-resized as PAPO-Eval does); the processor runs as vLLM's would
                pre_resize: PreResize::None,
                processor_max_pixels: max_pixels,
                processor: settings.processor,
            },
        },
        n,
    })
}

/// A message's text and its encoded images.
type MessageContent = (String, Vec<Arc<[u8]>>);

/// A message's text and images: a string, or parts of type `text` and `image_url` (base64
/// `data:` URLs only: the server fetches nothing).
fn content(value: Option<&Value>, index: usize) -> Result<MessageContent, ApiError> {
    match value {
        Some(Value::String(s)) => Ok((s.clone(), Vec::new())),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            let mut images = Vec::new();
            for (j, part) in parts.iter().enumerate() {
                let at = format!("messages[{index}].content[{j}]");
                match part.get("type").and_then(Value::as_str) {
                    Some("text") => {
                        let t = part
                            .get("text")
                            .and_then(Value::as_str)
                            .ok_or_else(|| ApiError::bad(format!("{at}.text must be a string")))?;
                        if !text.is_empty() {
                            text.push('\n');
                        }
                        text.push_str(t);
                    }
                    Some("image_url") => {
                        let url = part
                            .pointer("/image_url/url")
                            .and_then(Value::as_str)
                            .ok_or_else(|| {
                                ApiError::bad(format!("{at}.image_url.url must be a string"))
                            })?;
                        images.push(
                            decode_data_url(url)
                                .map_err(|m| ApiError::bad(format!("{at}: {m}")))?,
                        );
                    }
                    other => {
                        return Err(ApiError::bad(format!(
                            "{at}.type: unsupported {other:?} (text, image_url)"
                        )))
                    }
                }
            }
            Ok((text, images))
        }
        _ => Err(ApiError::bad(format!(
            "messages[{index}].content must be a string or an array of parts"
        ))),
    }
}

fn decode_data_url(url: &str) -> Result<Arc<[u8]>, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or("only base64 `data:` image URLs are accepted (the server fetches nothing)")?;
    let (_, data) = rest
        .split_once(";base64,")
        .ok_or("the data URL is not base64 (`data:<mime>;base64,...`)")?;
    base64::engine::general_purpose::STANDARD
        .decode(data.trim())
        .map(Arc::from)
        .map_err(|e| format!("invalid base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> ServeSettings {
        ServeSettings {
            served_model: "m".into(),
            max_context: 100,
            max_pixels: Some(1000),
            processor: crate::model::ProcessorKind::Slow,
        }
    }

    #[test]
    fn a_body_becomes_a_request_with_defaults_and_extensions() {
        let png = base64::engine::general_purpose::STANDARD.encode(b"\x89PNG\r\n\x1a\nrest");
        let body = json!({
            "model": "m",
            "messages": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": [
                    {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{png}")}},
                    {"type": "text", "text": "what?"}
                ]}
            ],
            "seed": 42, "top_k": 50, "max_tokens": 7,
            "mm_processor_kwargs": {"max_pixels": 500}
        });
        let p = parse_request(&body, &settings()).unwrap();
        assert_eq!(p.request.system.as_deref(), Some("be brief"));
        assert_eq!(p.request.text, "what?");
        assert_eq!(&*p.request.images[0], b"\x89PNG\r\n\x1a\nrest");
        assert_eq!(p.request.seed, 42);
        assert_eq!(p.n, 1);
        let s = &p.request.sampling;
        assert_eq!((s.temperature, s.top_p, s.top_k), (1.0, 1.0, 50));
        assert_eq!(
            (s.max_tokens, s.max_context, s.processor_max_pixels),
            (7, 100, Some(500))
        );
        assert_eq!(s.pre_resize, PreResize::None);
    }

    #[test]
    fn bad_bodies_are_refused_naming_the_field() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (
                json!({"messages": [{"role": "user", "content": 3}]}),
                "content",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "top_p": 0}),
                "top_p",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "n": 0}),
                "n",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "http://x/y.png"}}]}]}),
                "data:",
            ),
            (
                json!({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}),
                "one user turn",
            ),
            (
                json!({"messages": [{"role": "wizard", "content": "a"}]}),
                "role",
            ),
        ];
        for (body, needle) in cases {
            let e = parse_request(&body, &settings()).unwrap_err();
            assert_eq!(e.status, StatusCode::BAD_REQUEST);
            assert!(e.message.contains(needle), "{body}: {}", e.message);
        }
    }
}
