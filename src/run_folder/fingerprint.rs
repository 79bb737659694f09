//! The fingerprint of a checkpoint folder: a SHA-256 of every file that changes what the
//! model computes — config, tokenizer, chat template, processor and every weight file.
//!
//! Why all of them: a run that resumes on swapped weights, or a retrained tokenizer, would
//! silently mix two models' samples (hashing `config.json` alone let exactly that through).
//! Weights are gigabytes, so hashes are cached by (canonical path, size, modification time)
//! in `$SPOTLIGHT_CACHE_DIR/file-hashes.json` (default `$XDG_CACHE_HOME/spotlight`, else
//! `~/.cache/spotlight`); a file whose size or mtime changed is hashed again. The cache is
//! an optimisation only: when it cannot be read or written, files are hashed every time.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use serde::{Deserialize, Serialize};

use super::{sha256_file, sha256_hex, FileRecord, RunFolderError};

/// Files of a checkpoint folder that change what the model computes besides the weights:
/// `config.json` and the auxiliary files a checkpoint carries
/// ([`crate::model::weights::AUXILIARY_FILES`]), except `generation_config.json`, since
/// Spotlight's sampling settings come from the command.
fn model_files() -> impl Iterator<Item = &'static str> {
    std::iter::once("config.json").chain(
        crate::model::weights::AUXILIARY_FILES
            .iter()
            .copied()
            .filter(|f| *f != "generation_config.json"),
    )
}

/// What a run records about the model it used.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelFingerprint {
    /// The folder as given.
    pub dir: String,
    /// One digest over all the files below (names and hashes): equal digests, same model.
    pub sha256: String,
    /// Each file's name inside the folder, hash and size.
    pub files: Vec<FileRecord>,
}

impl ModelFingerprint {
    /// Fingerprints the checkpoint folder `dir`.
    pub fn of(dir: &Path) -> Result<ModelFingerprint, RunFolderError> {
        let mut names: Vec<String> = model_files()
            .filter(|n| dir.join(n).is_file())
            .map(|n| n.to_string())
            .collect();
        if dir.join("model.safetensors.index.json").is_file() {
            names.push("model.safetensors.index.json".into());
        }
        names.extend(crate::model::weights::weight_file_names(dir)?);
        let mut cache = HashCache::open();
        let mut files = Vec::with_capacity(names.len());
        for name in names {
            let mut record = cache.hash(&dir.join(&name))?;
            record.path = name;
            files.push(record);
        }
        cache.save();
        let listing: String = files
            .iter()
            .map(|f| format!("{}  {}\n", f.sha256, f.path))
            .collect();
        Ok(ModelFingerprint {
            dir: dir.display().to_string(),
            sha256: sha256_hex(listing.as_bytes()),
            files,
        })
    }

    /// What differs from `previous`, file by file (empty: the same model).
    pub fn differences(&self, previous: &ModelFingerprint) -> Vec<String> {
        if self.sha256 == previous.sha256 {
            return Vec::new();
        }
        let mut out = super::file_differences("model file", &previous.files, &self.files);
        if out.is_empty() {
            out.push("the model's files changed".into());
        }
        out
    }
}

/// One cached hash.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CachedHash {
    bytes: u64,
    mtime_ns: u128,
    sha256: String,
}

/// The on-disk cache of file hashes, keyed by canonical path.
struct HashCache {
    path: Option<PathBuf>,
    entries: BTreeMap<String, CachedHash>,
    dirty: bool,
}

impl HashCache {
    fn open() -> HashCache {
        let path = cache_dir().map(|d| d.join("file-hashes.json"));
        let entries = path
            .as_ref()
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or_default();
        HashCache {
            path,
            entries,
            dirty: false,
        }
    }

    fn hash(&mut self, file: &Path) -> Result<FileRecord, RunFolderError> {
        let io = |source| RunFolderError::Io {
            path: file.to_path_buf(),
            source,
        };
        let meta = std::fs::metadata(file).map_err(io)?;
        let mtime_ns = meta
            .modified()
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_nanos());
        let key = std::fs::canonicalize(file)
            .map_err(io)?
            .display()
            .to_string();
        if let Some(c) = self.entries.get(&key) {
            if c.bytes == meta.len() && c.mtime_ns == mtime_ns && mtime_ns != 0 {
                return Ok(FileRecord {
                    path: file.display().to_string(),
                    sha256: c.sha256.clone(),
                    bytes: c.bytes,
                });
            }
        }
        let record = sha256_file(file)?;
        self.entries.insert(
            key,
            CachedHash {
                bytes: record.bytes,
                mtime_ns,
                sha256: record.sha256.clone(),
            },
        );
        self.dirty = true;
        Ok(record)
    }

    fn save(&self) {
        let (Some(path), true) = (&self.path, self.dirty) else {
            return;
        };
        if let Ok(text) = serde_json::to_string(&self.entries) {
            // an unwritable cache costs time, never correctness
            let _ = crate::atomic_file::write_bytes_atomic(path, text.as_bytes());
        }
    }
}

fn cache_dir() -> Option<PathBuf> {
    let from = |var: &str| {
        std::env::var_os(var)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    from("SPOTLIGHT_CACHE_DIR")
        .or_else(|| from("XDG_CACHE_HOME").map(|d| d.join("spotlight")))
        .or_else(|| from("HOME").map(|d| d.join(".cache/spotlight")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swapped_weights_change_the_fingerprint_and_are_named() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("m");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("config.json"), "{}").unwrap();
        std::fs::write(dir.join("model.safetensors"), "weights-a").unwrap();
        std::env::set_var("SPOTLIGHT_CACHE_DIR", tmp.path().join("cache"));
        let a = ModelFingerprint::of(&dir).unwrap();
        assert_eq!(a.files.len(), 2);
        assert_eq!(
            ModelFingerprint::of(&dir).unwrap(),
            a,
            "cached: same answer"
        );
        std::fs::write(dir.join("model.safetensors"), "weights-bb").unwrap();
        let b = ModelFingerprint::of(&dir).unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(
            b.differences(&a),
            vec!["model file model.safetensors changed".to_string()]
        );
    }
}
