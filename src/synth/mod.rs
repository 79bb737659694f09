//! Generators for the data the project ships.

/// Errors while generating data.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{0}")]
    Other(String),
}
