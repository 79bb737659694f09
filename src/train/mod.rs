//! The GRPO / DAPO / VPPO objective, its recipes and the image perturbations, as the
//! reference implementation computes them (`../shared/spec/vppo.md` is the contract).
//!
//! The objective is split the way a trainer consumes it:
//! - [`advantages`]: GRPO advantages per response (once per rollout batch);
//! - [`perception`]: token and trajectory visual dependency, TAS scales and the TGF mask
//!   (bookkeeping that does not depend on the current policy, computed in `f64`);
//! - [`loss`]: the PPO loss with clip-higher and dual clip, the entropy term and the optional
//!   low-variance KL, on candle tensors so that gradients come from candle's autograd;
//! - [`objective`]: glues the three together per mini-batch and micro-batch — the one code path
//!   used by the trainer and by `spotlight debug vppo-objective`;
//! - [`cases`]: the worked-examples format of the spec (inputs and expected values);
//! - [`recipe`]: validated TOML training recipes;
//! - [`perturb`]: the image perturbations that define "visual dependency";
//! - [`verl`]: export of a recipe as a launch script + config for the authors' trainer.
//!
//! The training loop reads from the file names too, stage by stage:
//! [`data`] (examples and their seeded order) → [`rollout`] (sampling, rewards, online
//! filtering; validation samples through the same function) → [`scoring`] (old and perturbed
//! log-probs) → [`update`] (advantages, mini/micro-batches, loss, clipping, AdamW in
//! [`optim`]), with [`schedule`], [`checkpoint`], [`metrics`] and the run's stored [`plan`];
//! [`trainer`] composes them for RL and [`sft`] for supervised warm starts.

pub mod advantages;
pub mod bench_step;
pub mod cases;
pub mod checkpoint;
pub mod data;
pub mod grid;
pub mod layout;
pub mod loss;
pub mod metrics;
pub mod objective;
pub mod optim;
pub mod perception;
pub mod perturb;
pub mod plan;
pub mod recipe;
pub mod rollout;
pub mod schedule;
pub mod scoring;
pub mod sft;
pub mod trainer;
pub mod update;
pub mod verl;

use std::path::PathBuf;

pub use data::Example;
pub use grid::TokenGrid;
pub use objective::{MiniBatchShaping, ObjectiveConfig};
pub use recipe::TrainRecipe;

/// Errors of the objective, recipes, perturbations and export.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    // --- shapes and inputs of the objective ---
    /// A per-token input is ragged or does not have the batch's shape.
    #[error("{what}: {detail}")]
    Shape { what: String, detail: String },
    /// GRPO normalises rewards within a prompt's group, which needs at least two responses
    /// (the reference asserts the same: "GRPO needs rollout.n > 1").
    #[error("GRPO needs at least two responses per prompt, but group {group} has {count}")]
    SingletonGroup { group: String, count: usize },
    /// TAS or TGF was requested without the perturbed-image log-probs they are computed from.
    #[error("{0} needs the perturbed-image log-probs (aug_logprobs), which were not given")]
    MissingPerturbedLogprobs(&'static str),
    /// An objective setting outside its domain.
    #[error("objective setting `{field}` = {value}: {reason}")]
    BadSetting {
        field: &'static str,
        value: f64,
        reason: &'static str,
    },
    /// Tensor arithmetic failed (shape or dtype mismatch inside candle).
    #[error("tensor computation of {what}: {source}")]
    Tensor {
        what: &'static str,
        #[source]
        source: candle_core::Error,
    },

    // --- recipes ---
    /// A recipe file could not be read.
    #[error("cannot read recipe {path}: {source}")]
    RecipeIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A recipe file is not valid TOML for a recipe (unknown or missing field, wrong type);
    /// the message from the TOML parser names the field and line.
    #[error("recipe {path}: {message}")]
    RecipeParse { path: PathBuf, message: String },
    /// A recipe parsed but a value is out of range or inconsistent with another.
    #[error("recipe {path}: field `{field}`: {reason}")]
    RecipeInvalid {
        path: PathBuf,
        field: String,
        reason: String,
    },

    // --- perturbations ---
    /// A perturbation's parameter is out of range.
    #[error("perturbation {kind}: {reason}")]
    BadPerturbation { kind: &'static str, reason: String },

    // --- training runs ---
    /// A trainer-state or optimiser file cannot be read or written, or does not fit the run.
    #[error("{path}: {message}")]
    State { path: PathBuf, message: String },
    /// The model failed (generation, scoring, saving).
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// Training data could not be read.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// A file the run plan hashes could not be read.
    #[error(transparent)]
    RunFolder(#[from] crate::run_folder::RunFolderError),
    /// Online filtering could not fill a batch.
    #[error("online filtering kept {kept} of {wanted} groups after {rounds} sampling rounds (max_sampling_rounds): every other group was all right or all wrong; lower [filtering] bounds, disable filtering, or use data the model solves sometimes")]
    FilteringExhausted {
        kept: usize,
        wanted: usize,
        rounds: usize,
    },
    /// Bad settings for a run (data, steps, overrides).
    #[error("{0}")]
    Usage(String),

    // --- export ---
    /// Writing the export folder failed.
    #[error("cannot write {path}: {source}")]
    ExportIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl TrainError {
    /// Wraps a candle error with the name of the quantity being computed.
    pub(crate) fn tensor(what: &'static str) -> impl FnOnce(candle_core::Error) -> TrainError {
        move |source| TrainError::Tensor { what, source }
    }
}
