//! Benchmarks: manifests (`benchmarks/*.toml`), where their files are, reading them into
//! [`Item`]s, rendering prompts and validating files.

pub mod ingest;
pub mod item;
pub mod manifest;
pub mod options;
pub mod prompt;
pub mod source;
pub mod validate;

use std::path::{Path, PathBuf};

pub use ingest::{load_files, Loaded, RowProblem};
pub use item::{ImageRef, ImageSize, Item};
pub use manifest::Manifest;
pub use prompt::PromptRenderer;
pub use source::DataSource;
pub use validate::{answer_kind, validate, Validation};

/// Errors from manifests, ingestion and validation. Each names the file, and where it
/// applies the row and field.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    // --- files and folders ---
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{benchmark}: no data at {}: {hint}", place.display())]
    NoFiles {
        benchmark: String,
        place: PathBuf,
        hint: String,
    },

    // --- manifests ---
    #[error("invalid manifest {}: {message}", path.display())]
    Manifest { path: PathBuf, message: String },
    #[error("unknown benchmark {name:?}; known: {known}")]
    UnknownBenchmark { name: String, known: String },
    #[error("cannot find the project folder with `benchmarks/` (set SPOTLIGHT_ROOT, or run from the repository)")]
    NoProjectRoot,

    // --- data ---
    #[error("{}: {message}", path.display())]
    Parquet { path: PathBuf, message: String },
    #[error("{}: column `{column}`: {message}", path.display())]
    Column {
        path: PathBuf,
        column: String,
        message: String,
    },
    #[error("{}: row {row}: field `{field}`: {message}", path.display())]
    Image {
        path: PathBuf,
        row: usize,
        field: String,
        message: String,
    },
    #[error("{}: row {row}: prompt template: {message}", path.display())]
    Prompt {
        path: PathBuf,
        row: usize,
        message: String,
    },
}

/// The folder holding `benchmarks/`, `reward_rules/`, `recipes/`: `SPOTLIGHT_ROOT`, else the
/// current folder or one of its parents, else the source tree this binary was built from.
pub fn project_root() -> Result<PathBuf, BenchError> {
    if let Ok(root) = std::env::var("SPOTLIGHT_ROOT") {
        return Ok(PathBuf::from(root));
    }
    if let Ok(cwd) = std::env::current_dir() {
        for dir in cwd.ancestors() {
            if dir.join("benchmarks").is_dir() && dir.join("Cargo.toml").is_file() {
                return Ok(dir.to_path_buf());
            }
        }
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    if built.join("benchmarks").is_dir() {
        return Ok(built);
    }
    Err(BenchError::NoProjectRoot)
}

/// All manifests of a `benchmarks/` folder, in the paper's order.
#[derive(Debug, Clone)]
pub struct Registry {
    pub root: PathBuf,
    pub manifests: Vec<Manifest>,
}

impl Registry {
    /// Loads `root/benchmarks/*.toml`.
    pub fn load(root: &Path) -> Result<Registry, BenchError> {
        let dir = root.join("benchmarks");
        let entries = std::fs::read_dir(&dir).map_err(|source| BenchError::Io {
            path: dir.clone(),
            source,
        })?;
        let mut manifests = Vec::new();
        for entry in entries {
            let path = entry
                .map_err(|source| BenchError::Io {
                    path: dir.clone(),
                    source,
                })?
                .path();
            if path.extension().and_then(|e| e.to_str()) == Some("toml") {
                manifests.push(Manifest::from_path(&path)?);
            }
        }
        manifests.sort_by_key(|m| (m.order, m.slug.clone()));
        Ok(Registry {
            root: root.to_path_buf(),
            manifests,
        })
    }

    /// The registry of the project folder ([`project_root`]).
    pub fn discover() -> Result<Registry, BenchError> {
        Registry::load(&project_root()?)
    }

    /// The benchmarks that `all` means (the eight of the paper), in order.
    pub fn all(&self) -> Vec<&Manifest> {
        self.manifests.iter().filter(|m| m.in_all).collect()
    }

    /// One benchmark by slug, alias or paper name.
    pub fn get(&self, name: &str) -> Result<&Manifest, BenchError> {
        self.manifests
            .iter()
            .find(|m| m.answers_to(name))
            .ok_or_else(|| BenchError::UnknownBenchmark {
                name: name.to_string(),
                known: self
                    .manifests
                    .iter()
                    .map(|m| m.slug.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }

    /// `--bench NAME[,NAME..]|all`: the named benchmarks, deduplicated, in the paper's order.
    pub fn select(&self, spec: &str) -> Result<Vec<&Manifest>, BenchError> {
        let mut chosen: Vec<&Manifest> = Vec::new();
        for name in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            if name.eq_ignore_ascii_case("all") {
                chosen.extend(self.all());
            } else {
                chosen.push(self.get(name)?);
            }
        }
        chosen.sort_by_key(|m| (m.order, m.slug.clone()));
        chosen.dedup_by(|a, b| a.slug == b.slug);
        Ok(chosen)
    }

    /// Reads one benchmark from `source`.
    pub fn load_benchmark(
        &self,
        manifest: &Manifest,
        source: &DataSource,
    ) -> Result<Loaded, BenchError> {
        let files = source::resolve_files(manifest, source, &self.root)?;
        load_files(manifest, &files)
    }
}
