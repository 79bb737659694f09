//! The crate-wide error: one variant per concern, each wrapping that module's own enum.

use thiserror::Error;

/// Any error the library returns. Each module keeps its own typed enum (so a caller can
/// match on, say, a bad parquet row); this wraps them for code that spans modules.
#[derive(Debug, Error)]
pub enum Error {
    /// Benchmark manifests, ingestion and validation.
    #[error(transparent)]
    Bench(#[from] crate::bench::BenchError),
    /// Generating the bundled data.
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
    /// The training objective, recipes, perturbations and export.
    #[error(transparent)]
    Train(#[from] crate::train::TrainError),
    /// Rule sets and grading.
    #[error(transparent)]
    Verify(#[from] crate::verify::VerifyError),
    /// Loading or running the Qwen2.5-VL model.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}
