//! Benchmark manifests and ingestion.

/// Errors from manifests, ingestion and validation.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{0}")]
    Other(String),
}
