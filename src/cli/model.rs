//! `spotlight model ...`: inspect a Qwen2.5-VL checkpoint folder, score responses.

use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;
use spotlight::model::weights::WeightFiles;
use spotlight::model::{
    ChatTemplate, Checkpoint, GenerationPrompt, ImageProcessor, LoadOptions, ModelRef,
    Qwen25VlConfig, SampleRequest, SamplingParams, ScoringRequest, SourceImage,
};

use super::Outcome;

#[derive(clap::Subcommand)]
pub enum ModelCommand {
    /// Architecture, sizes, parameter count, tokenizer and chat template of a checkpoint.
    /// Exits 1 when the folder lacks the tokenizer or chat template needed for prompts.
    Info {
        /// Checkpoint folder.
        dir: ModelRef,
        /// Print machine-readable JSON on stdout.
        #[arg(long)]
        json: bool,
    },
    /// Log-prob of each response token after a chat prompt (and image), as transformers scores it.
    Logprobs(LogprobsArgs),
    /// Sample `--k` responses to a chat prompt (and image) with the KV-cache sampler. Sample `i`
    /// draws from its own stream seeded by derive_seed(--seed, --item, i), so it is the same
    /// alone, in a batch, in `spotlight eval` or `spotlight serve` with those values.
    Generate(GenerateArgs),
    /// An image as a training or evaluation path prepares it: the reference's first resize
    /// (PAPO-Eval's LLaMA-Factory rules for `eval`, EasyR1's `process_image` at the recipe's
    /// `[image]` bounds for `train`), then the checkpoint's processor. Prints sizes and the
    /// grid; `--output` writes `pixel_values` and `image_grid_thw` as safetensors, to compare
    /// with transformers.
    Preprocess(PreprocessArgs),
}

#[derive(clap::Args)]
pub struct PreprocessArgs {
    /// Checkpoint folder (only its preprocessor_config.json is read).
    #[arg(long)]
    pub model: ModelRef,
    /// The image file.
    #[arg(long)]
    pub image: PathBuf,
    #[command(flatten)]
    pub image_path: super::image_path::ImagePathArgs,
    /// Write `pixel_values` (patches x patch values, f32) and `image_grid_thw` here.
    #[arg(long)]
    pub output: Option<PathBuf>,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

/// A checkpoint and one chat turn: what `logprobs` and `generate` both take.
#[derive(clap::Args)]
pub struct ChatPromptArgs {
    /// Checkpoint folder (config.json, safetensors, tokenizer.json, chat template).
    #[arg(long)]
    pub model: ModelRef,
    /// Image shown before the prompt text in the user turn.
    #[arg(long)]
    pub image: Option<PathBuf>,
    /// System message (default: the template's, "You are a helpful assistant." for Qwen2.5-VL).
    #[arg(long)]
    pub system: Option<String>,
    /// The user's text.
    #[arg(long)]
    pub prompt: String,
}

#[derive(clap::Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub chat: ChatPromptArgs,
    /// Samples to draw.
    #[arg(long, default_value_t = 1)]
    pub k: u32,
    /// Softmax temperature; 0 is greedy.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Nucleus sampling mass (1.0: off).
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f64,
    /// Keep only the k most likely tokens (0: off).
    #[arg(long, default_value_t = 0)]
    pub top_k: usize,
    /// Run seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Item id that, with the seed and sample index, derives each sample's stream.
    #[arg(long, default_value = "prompt")]
    pub item: String,
    /// Most new tokens per sample.
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args)]
pub struct LogprobsArgs {
    #[command(flatten)]
    pub chat: ChatPromptArgs,
    /// The response to score (tokenized alone, without special tokens).
    #[arg(long)]
    pub response: String,
    /// Softmax temperature applied to the logits.
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Print machine-readable JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: ModelCommand) -> anyhow::Result<Outcome> {
    match cmd {
        ModelCommand::Info { dir, json } => info(&dir.resolve()?, json),
        ModelCommand::Logprobs(args) => logprobs(&args),
        ModelCommand::Generate(args) => generate(&args),
        ModelCommand::Preprocess(args) => preprocess(&args),
    }
}

fn preprocess(args: &PreprocessArgs) -> anyhow::Result<Outcome> {
    let dir = args.model.resolve()?;
    let (pre_resize, processor) = args.image_path.resolve(&dir)?;
    let source = SourceImage::open(&args.image)?;
    let pre = pre_resize.apply(&source);
    let pre_hw = [pre.height(), pre.width()];
    let resized = processor
        .resize(&image::DynamicImage::ImageRgb8(pre))
        .with_context(|| format!("preprocessing {}", args.image.display()))?;
    let processed = processor.normalize(&resized);
    let g = processed.grid_thw;
    if let Some(out) = &args.output {
        let n = processed.num_patches();
        let pixels: Vec<u8> = processed
            .pixel_values
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let grid: Vec<u8> = [g.t as i64, g.h as i64, g.w as i64]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect();
        let views = [
            (
                "pixel_values",
                safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    vec![n, processed.patch_dim],
                    &pixels,
                )?,
            ),
            (
                "image_grid_thw",
                safetensors::tensor::TensorView::new(safetensors::Dtype::I64, vec![1, 3], &grid)?,
            ),
        ];
        let bytes = safetensors::tensor::serialize(views, None)?;
        spotlight::atomic_file::write_bytes_atomic(out, &bytes)
            .with_context(|| format!("writing {}", out.display()))?;
    }
    let report = json!({
        "image": args.image.display().to_string(),
        "mode": source.mode.name(),
        "original_hw": [source.height, source.width],
        "path": args.image_path.name(),
        "pre_resize": pre_resize,
        "pre_resized_hw": pre_hw,
        "processor": {
            "kind": processor.kind,
            "min_pixels": processor.min_pixels,
            "max_pixels": processor.max_pixels
        },
        "resized_hw": [resized.height(), resized.width()],
        "grid_thw": [g.t, g.h, g.w],
        "patches": processed.num_patches(),
        "patch_dim": processed.patch_dim,
        "output": args.output.as_ref().map(|p| p.display().to_string()),
    });
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        println!(
            "{} ({}, {}x{}) -> first resize {}x{} -> processor {}x{}: grid {}x{}x{}, {} patches",
            args.image.display(),
            source.mode.name(),
            source.width,
            source.height,
            pre_hw[1],
            pre_hw[0],
            resized.width(),
            resized.height(),
            g.t,
            g.h,
            g.w,
            processed.num_patches()
        );
    }
    Ok(Outcome::Ok)
}

/// Reads only headers and small files: no weights are loaded, so it is instant on any size.
fn info(dir: &Path, as_json: bool) -> anyhow::Result<Outcome> {
    let config = Qwen25VlConfig::from_file(&dir.join("config.json"))
        .with_context(|| format!("reading the checkpoint config in {}", dir.display()))?;
    let weights = WeightFiles::open(dir)
        .with_context(|| format!("opening the weights in {}", dir.display()))?;
    let (parameters, stored_dtypes) = weights.summary();
    let weight_files: Vec<String> = weights
        .paths()
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = if tokenizer_path.is_file() {
        let tok = tokenizers::Tokenizer::from_file(&tokenizer_path)
            .map_err(|e| anyhow::anyhow!("{}: {e}", tokenizer_path.display()))?;
        Some(
            json!({"path": tokenizer_path.display().to_string(), "vocab_size": tok.get_vocab_size(true)}),
        )
    } else {
        None
    };
    let template = ChatTemplate::find(dir)
        .with_context(|| format!("looking for a chat template in {}", dir.display()))?;
    let pre_path = dir.join("preprocessor_config.json");
    let processor = if pre_path.is_file() {
        Some(ImageProcessor::from_file(&pre_path)?)
    } else {
        None
    };
    let complete = tokenizer.is_some() && template.is_some();
    let t = &config.text;
    let v = &config.vision;
    let out = json!({
        "dir": dir.display().to_string(),
        "architecture": "Qwen2_5_VLForConditionalGeneration",
        "text": {
            "layers": t.num_hidden_layers, "hidden_size": t.hidden_size,
            "intermediate_size": t.intermediate_size, "attention_heads": t.num_attention_heads,
            "kv_heads": t.num_key_value_heads, "head_dim": t.head_dim(), "vocab_size": t.vocab_size,
            "rope_theta": t.rope_theta, "mrope_section": t.mrope_section,
            "tie_word_embeddings": t.tie_word_embeddings,
        },
        "vision": {
            "depth": v.depth, "hidden_size": v.hidden_size, "intermediate_size": v.intermediate_size,
            "heads": v.num_heads, "patch_size": v.patch_size, "window_size": v.window_size,
            "fullatt_block_indexes": v.fullatt_block_indexes, "spatial_merge_size": v.spatial_merge_size,
        },
        "parameters": parameters,
        "config_dtype": config.saved_dtype,
        "stored_dtypes": stored_dtypes,
        "weight_files": weight_files,
        "tokenizer": tokenizer,
        "chat_template": template.as_ref().map(|t| t.origin.display().to_string()),
        "preprocessor": processor.as_ref().map(|p| json!({
            "path": pre_path.display().to_string(), "min_pixels": p.min_pixels, "max_pixels": p.max_pixels,
        })),
    });
    if as_json {
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        println!("{}", dir.display());
        println!(
            "  architecture   Qwen2.5-VL ({} parameters, config dtype {})",
            parameters,
            config.saved_dtype.as_deref().unwrap_or("?")
        );
        println!(
            "  text           {} layers, hidden {}, {} heads / {} kv heads (head_dim {}), vocab {}, {} head",
            t.num_hidden_layers,
            t.hidden_size,
            t.num_attention_heads,
            t.num_key_value_heads,
            t.head_dim(),
            t.vocab_size,
            if t.tie_word_embeddings { "tied" } else { "untied" }
        );
        println!(
            "  vision         depth {}, hidden {}, {} heads, window {} px, full attention at {:?}",
            v.depth, v.hidden_size, v.num_heads, v.window_size, v.fullatt_block_indexes
        );
        println!(
            "  weights        {} file(s), stored as {}",
            weight_files.len(),
            stored_dtypes.join(", ")
        );
        println!(
            "  tokenizer      {}",
            tokenizer.map_or("MISSING".to_string(), |t| format!(
                "{} ({} tokens)",
                t["path"].as_str().unwrap_or(""),
                t["vocab_size"]
            ))
        );
        println!(
            "  chat template  {}",
            template.map_or("MISSING".to_string(), |t| t.origin.display().to_string())
        );
        println!(
            "  preprocessor   {}",
            processor.map_or(
                "defaults (no preprocessor_config.json)".to_string(),
                |p| format!("min_pixels {}, max_pixels {}", p.min_pixels, p.max_pixels)
            )
        );
    }
    Ok(if complete {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// A checkpoint with one chat prompt (and its image) prepared: what `logprobs` and `generate`
/// both start from.
struct PreparedPrompt {
    ckpt: Checkpoint,
    image: Option<spotlight::model::ProcessedImage>,
    prompt_ids: Vec<u32>,
}

fn prepare_prompt(chat: &ChatPromptArgs) -> anyhow::Result<PreparedPrompt> {
    let dir = chat.model.resolve()?;
    let (model, image, system, prompt) = (
        dir.as_path(),
        chat.image.as_deref(),
        chat.system.as_deref(),
        chat.prompt.as_str(),
    );
    let opts = LoadOptions::auto()?;
    let ckpt = Checkpoint::load_with(model, &opts)
        .with_context(|| format!("loading {}", model.display()))?;
    let image = match image {
        Some(path) => Some(
            ckpt.image_processor
                .preprocess_file(path)
                .with_context(|| format!("preprocessing {}", path.display()))?,
        ),
        None => None,
    };
    let grids: Vec<_> = image.iter().map(|i| i.grid_thw).collect();
    let prompt_ids = ckpt.prompt_builder()?.prompt_ids(system, prompt, &grids)?;
    Ok(PreparedPrompt {
        ckpt,
        image,
        prompt_ids,
    })
}

fn logprobs(args: &LogprobsArgs) -> anyhow::Result<Outcome> {
    let PreparedPrompt {
        ckpt,
        image,
        prompt_ids,
    } = prepare_prompt(&args.chat)?;
    let builder = ckpt.prompt_builder()?;
    let response_ids = builder.response_ids(&args.response)?;
    let response_tokens = builder.decode_each(&response_ids)?;
    let request = ScoringRequest {
        prompt_ids: &prompt_ids,
        response_ids: &response_ids,
        images: image.iter().collect(),
    };
    let logprobs = ckpt
        .model
        .log_probs(&[request], args.temperature)?
        .to_vecs()?
        .pop()
        .unwrap_or_default();
    if args.json {
        let out = json!({
            "prompt_ids": prompt_ids,
            "response_ids": response_ids,
            "response_tokens": response_tokens,
            "logprobs": logprobs,
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!(
            "prompt: {} tokens; response: {} tokens",
            prompt_ids.len(),
            response_ids.len()
        );
        for ((id, tok), lp) in response_ids.iter().zip(&response_tokens).zip(&logprobs) {
            println!("{id:>8}  {lp:>10.5}  {tok:?}");
        }
        println!("sum {:.5}", logprobs.iter().map(|&x| x as f64).sum::<f64>());
    }
    Ok(Outcome::Ok)
}

fn generate(args: &GenerateArgs) -> anyhow::Result<Outcome> {
    let PreparedPrompt {
        ckpt,
        image,
        prompt_ids,
    } = prepare_prompt(&args.chat)?;
    let params = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        max_new_tokens: args.max_tokens,
        stop_token_ids: ckpt.stop_token_ids(),
    };
    let prompts = [GenerationPrompt {
        prompt_ids: &prompt_ids,
        images: image.iter().collect(),
    }];
    let requests: Vec<SampleRequest> = (0..args.k)
        .map(|i| SampleRequest {
            prompt: 0,
            seed: spotlight::seed::derive_seed(args.seed, &args.item, i),
        })
        .collect();
    let samples = ckpt.model.generate(&prompts, &requests, &params)?;
    let mut rendered = Vec::with_capacity(samples.len());
    for s in &samples {
        let text = ckpt
            .tokenizer
            .decode(&s.token_ids, true)
            .map_err(|e| anyhow::anyhow!("{}: decoding: {e}", ckpt.tokenizer_path.display()))?;
        rendered.push(text);
    }
    if args.json {
        let out = json!({
            "prompt_ids": prompt_ids,
            "samples": samples.iter().zip(&rendered).map(|(s, text)| json!({
                "token_ids": s.token_ids,
                "text": text,
                "logprobs": s.logprobs,
                "finish": s.finish.as_str(),
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string(&out)?);
    } else {
        println!("prompt: {} tokens", prompt_ids.len());
        for (i, (s, text)) in samples.iter().zip(&rendered).enumerate() {
            let sum: f64 = s.logprobs.iter().map(|&x| x as f64).sum();
            println!(
                "--- sample {i} ({} tokens, {}, log-prob {sum:.3})",
                s.token_ids.len(),
                s.finish.as_str()
            );
            println!("{text}");
        }
    }
    Ok(Outcome::Ok)
}
