//! Generators for the data the project ships: benchmark-shaped parquet files of items the
//! project composes itself (the real sample items stay in `../shared`, never in the repo),
//! and a large file for ingest benchmarks. The trainer's synthetic perception benchmark
//! will extend this module.

pub mod benchmarks;
pub mod figures;
pub mod model;
pub mod perception;
pub mod table;

use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};

pub use benchmarks::{write_benchmark, SynthConfig, GENERATED};

/// Errors while generating data.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("building the arrow table: {0}")]
    Arrow(String),
    #[error("encoding an image: {0}")]
    Image(String),
    #[error("no generator for benchmark {0:?}")]
    UnknownBenchmark(String),
    #[error("{}: {message}", path.display())]
    Preset { path: PathBuf, message: String },
    #[error("training the tokenizer: {0}")]
    Tokenizer(String),
    #[error("writing the model: {0}")]
    Model(String),
}

impl From<std::io::Error> for SynthError {
    fn from(source: std::io::Error) -> Self {
        SynthError::Io {
            path: PathBuf::new(),
            source,
        }
    }
}

/// A MathVision-schema file of at least `target_mb` megabytes whose images are noise (so
/// PNG cannot shrink them): the input of the ingest benchmark. Row groups of 256 rows.
pub fn write_large(path: &Path, target_mb: u64, seed: u64) -> Result<usize, SynthError> {
    const SIDE: u32 = 96;
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let per_image = (SIDE * SIDE * 3) as u64;
    let rows = ((target_mb * 1_000_000) / per_image + 1) as usize;
    let mut table = table::Table::new();
    let mut ids = Vec::with_capacity(rows);
    let mut questions = Vec::with_capacity(rows);
    let mut options = Vec::with_capacity(rows);
    let mut paths = Vec::with_capacity(rows);
    let mut images = Vec::with_capacity(rows);
    let mut answers = Vec::with_capacity(rows);
    let mut solutions = Vec::with_capacity(rows);
    let mut levels = Vec::with_capacity(rows);
    let mut subjects = Vec::with_capacity(rows);
    for i in 0..rows {
        let mut img = image::RgbImage::new(SIDE, SIDE);
        rng.fill(&mut img.as_mut()[..]);
        let bytes = figures::png_bytes(&img).map_err(|e| SynthError::Image(e.to_string()))?;
        let path = format!("images/{i}.png");
        ids.push(Some(i.to_string()));
        questions.push(Some(format!(
            "Question {i}: what is shown in the figure?\n<image1>"
        )));
        options.push(vec![
            "1".into(),
            "2".into(),
            "3".into(),
            "4".into(),
            "5".into(),
        ]);
        paths.push(Some(path.clone()));
        images.push(Some(table::ImageCell {
            bytes: Some(bytes),
            path: Some(path),
        }));
        answers.push(Some("A".to_string()));
        solutions.push(None);
        levels.push((i % 5) as i64 + 1);
        subjects.push(Some("noise".to_string()));
    }
    table = table
        .string("id", ids)
        .string("question", questions)
        .string_list("options", options)
        .string("image", paths)
        .image("decoded_image", images)
        .string("answer", answers)
        .string("solution", solutions)
        .int64("level", levels)
        .string("subject", subjects);
    table::write_parquet(path, &table.into_batch()?, 256)?;
    Ok(rows)
}
