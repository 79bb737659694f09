//! `spotlight serve`: a checkpoint behind an OpenAI-compatible API.

use std::net::{IpAddr, SocketAddr};

use anyhow::Context;
use spotlight::model::{ChatEngine, Checkpoint, LoadOptions, ModelRef};
use spotlight::serve::{serve, ServeSettings};

use super::Outcome;

/// Serve a Qwen2.5-VL checkpoint on /v1/chat/completions (OpenAI-compatible, as vLLM serves
/// it). A request with a `seed` gets exactly the response `spotlight eval --model` produces for
/// that seed; concurrent requests are batched.
#[derive(clap::Args)]
pub struct ServeArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer.json, chat template).
    #[arg(long)]
    pub model: ModelRef,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// Port (0 picks a free one; the address is printed on stderr once bound).
    #[arg(long, default_value_t = 8000)]
    pub port: u16,
    /// The model name reported by /v1/models and in responses. [default: the folder's name]
    #[arg(long)]
    pub served_model_name: Option<String>,
    /// Prompt plus response tokens at most.
    #[arg(long, default_value_t = 9216)]
    pub max_context: usize,
    /// Pixel cap per image when a request does not set `mm_processor_kwargs.max_pixels`.
    /// [default: the checkpoint's preprocessor_config.json]
    #[arg(long)]
    pub max_pixels: Option<usize>,
    /// Which of transformers' image processors to reproduce: `slow` (PIL; what
    /// `eval --model` uses by default) or `fast` (torchvision; transformers 4.54+'s default,
    /// so a recent vLLM's).
    #[arg(long, value_enum, default_value = "slow")]
    pub image_processor: super::image_path::ProcessorArg,
}

pub fn run(args: ServeArgs) -> anyhow::Result<Outcome> {
    let opts = LoadOptions::auto()?;
    let dir = args.model.resolve()?;
    let ckpt =
        Checkpoint::load_with(&dir, &opts).with_context(|| format!("loading {}", dir.display()))?;
    let settings = ServeSettings {
        served_model: args.served_model_name.clone().unwrap_or_else(|| {
            dir.file_name()
                .map_or_else(|| "model".to_string(), |n| n.to_string_lossy().into_owned())
        }),
        max_context: args.max_context,
        max_pixels: args.max_pixels,
        processor: args.image_processor.into(),
    };
    let engine = ChatEngine::new(ckpt).with_context(|| format!("starting {}", dir.display()))?;
    let name = settings.served_model.clone();
    serve(
        engine,
        settings,
        SocketAddr::new(args.host, args.port),
        |addr| {
            eprintln!("spotlight serve: {name} listening on http://{addr}");
        },
    )
    .with_context(|| format!("serving on {}:{}", args.host, args.port))?;
    Ok(Outcome::Ok)
}
