//! Qwen2.5-VL in candle: load Hugging Face checkpoints, score responses (log-probs), train.
//!
//! Why our own model: candle-transformers has Qwen3-VL only, returns only the last position and
//! uses fused ops that record no backward (`../shared/README.md`). Everything here is built from
//! differentiable compositions so that every parameter trains; transformers' Qwen2.5-VL is the
//! numerical truth (`tools/golden/` writes the reference files the tests compare against).
//!
//! The pieces, one concern each:
//! - [`config`]: `config.json` in the hub layout and the transformers-5 layout;
//! - [`weights`]: safetensors (single or sharded) into a [`candle_nn::VarMap`] of trainable `Var`s,
//!   and writing a checkpoint folder back;
//! - [`processor`] + [`resize`]: the slow (PIL) `Qwen2VLImageProcessor`, bit for bit;
//! - [`prompt`]: the chat template and image-placeholder expansion of `Qwen2_5_VLProcessor`;
//! - [`positions`]: the 3-D M-RoPE position ids of `get_rope_index`;
//! - [`vision`], [`text`]: the two towers; [`qwen25vl`]: the whole model, logits and log-probs;
//! - [`checkpoint`]: a checkpoint folder loaded as one value.
//!
//! Part 2 (sampling) adds a KV cache to [`text::TextModel`] (attention already takes an explicit
//! additive mask and per-row positions, so query and key lengths may differ); part 3 swaps the
//! compositions in [`ops`] for fused custom ops with a backward, keeping these as the reference.

pub mod checkpoint;
pub mod config;
pub mod engine;
mod error;
pub mod fused;
pub mod generate;
pub mod init;
pub mod ops;
pub mod positions;
pub mod pre_resize;
pub mod processor;
pub mod prompt;
pub mod qwen25vl;
pub mod reference;
pub mod resize;
pub mod rows;
pub mod text;
pub mod vision;
pub mod weights;

pub use checkpoint::{Checkpoint, LoadOptions};
pub use config::{Qwen25VlConfig, TextConfig, VisionConfig};
pub use engine::{ChatEngine, ChatRequest, ChatResponse, ChatSampling};
pub use error::ModelError;
pub use generate::{
    FinishReason, GeneratedSample, GenerationPrompt, SampleRequest, SamplingParams,
};
pub use pre_resize::{PilMode, PreResize, SourceImage};
pub use processor::{GridThw, ImageProcessor, ProcessedImage, ProcessorKind};
pub use prompt::{ChatTemplate, PromptBuilder};
pub use qwen25vl::{Qwen25Vl, ResponseLogProbs, ScoringRequest, Sequence};
pub use reference::ModelRef;
pub use weights::save_checkpoint;

/// Sets up the process for model work: [`pin_thread_count`], [`retain_freed_memory`] and the
/// kernel choice of `SPOTLIGHT_FUSED_KERNELS` ([`ops::fused_kernels_from_env`]). Call at the
/// start of `main` (or of a benchmark), before other threads exist.
pub fn prepare_process() {
    pin_thread_count();
    retain_freed_memory();
    ops::fused_kernels_from_env();
}

/// Keeps freed memory in the process's heap instead of handing it back to the kernel.
///
/// Why: a training step frees and reallocates hundreds of activation and gradient buffers of
/// a few megabytes each. glibc's malloc serves such sizes with fresh `mmap`s or trims the
/// heap top after they are freed, so every new buffer paid page faults and page zeroing in the
/// kernel (a quarter of the samples of a `debug bench-step` profile were in the kernel). With
/// a 32 MiB mmap threshold (glibc's maximum) and no trimming, the heap keeps its high-water
/// mark and buffers are reused: the step measured 1.45-1.51 s before and 1.37-1.40 s after
/// with the compositions, and the fused kernels, which allocate their outputs in one piece,
/// went from 1.75-1.99 s to 1.15-1.20 s. The cost: the process does not shrink after a peak,
/// which a training or evaluation run would reach again anyway.
/// Only glibc has these knobs; elsewhere this does nothing.
pub fn retain_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        const MMAP_THRESHOLD: libc::c_int = 32 << 20;
        const TRIM_THRESHOLD: libc::c_int = libc::c_int::MAX;
        // SAFETY: mallopt only sets allocator parameters; it is called before other threads
        // allocate, and a refused value (return 0) leaves glibc's defaults, which are correct,
        // only slower.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
            libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD);
        }
    }
}

/// Fixes the CPU thread count candle uses, once, in the environment.
///
/// Why: without `RAYON_NUM_THREADS`, candle 0.11 counts the physical cores again on every CPU
/// matrix product by parsing `/proc/cpuinfo` (`num_cpus::get_physical`, uncached; its own
/// `CANDLE_NUM_THREADS` is not consulted there): measured as 23% of a decoding step's time on a
/// 2-core machine. Setting the variable to the count candle would find keeps its behaviour (and
/// sizes rayon's pool, which Spotlight's own loops use, the same) and drops the cost.
/// Call at the start of `main` (or of a benchmark), before other threads exist, since it
/// writes the process environment. A value the user set is left alone.
pub fn pin_thread_count() {
    let valid =
        std::env::var("RAYON_NUM_THREADS").is_ok_and(|v| v.parse::<usize>().is_ok_and(|n| n > 0));
    if !valid {
        std::env::set_var(
            "RAYON_NUM_THREADS",
            num_cpus::get_physical().max(1).to_string(),
        );
    }
}
