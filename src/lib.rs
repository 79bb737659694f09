//! Spotlight: evaluate and train vision-language models with verifiable rewards.
//!
//! The pipeline reads from the module names:
//! - [`bench`]: benchmark manifests and ingestion of the eight benchmarks' parquet files
//!   into one [`bench::Item`] type;
//! - [`synth`]: generators for data the project ships (benchmark-shaped parquet files);
//! - [`verify`]: rule-based verifiers (the reward and the metric);
//! - [`model`]: Qwen2.5-VL in candle (log-probs, sampling, training);
//! - [`train`]: the GRPO / DAPO / VPPO objective and trainer;
//! - [`run_folder`]: what runs record on disk (file hashes, model fingerprints, plan checks);
//! - [`seed`]: how every random draw derives from (seed, item id, sample index).
//!
//! Library code returns typed errors ([`Error`] and the per-module enums it wraps); the
//! binary adds context with `anyhow`.

pub mod atomic_file;
pub mod bench;
pub mod compare;
pub mod error;
pub mod eval;
pub mod model;
pub mod perception;
pub mod report;
pub mod run_folder;
pub mod seed;
pub mod serve;
pub mod synth;
#[doc(hidden)]
pub mod testing;
pub mod train;
pub mod verify;

pub use error::Error;

/// Spotlight's version, recorded in every run folder and report.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
