//! Where a benchmark's files are: the bundled generated file, a file, a folder of shards, a
//! root folder with one sub-folder per benchmark, or the Hugging Face cache (offline).

use std::path::{Path, PathBuf};
use std::str::FromStr;

use super::manifest::Manifest;
use super::BenchError;

/// What `--data` names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DataSource {
    /// The generated file the project bundles (the default).
    Bundled,
    /// The Hugging Face cache (`hf`, or `hf:DIR` for a cache root). Offline: files must be
    /// in the cache already (`huggingface-cli download` or `datasets` put them there).
    HfCache(Option<PathBuf>),
    /// A file, a folder of shards, a root folder with per-benchmark sub-folders, or a
    /// Hugging Face cache root (recognised by its `datasets--ORG--NAME` folders).
    Path(PathBuf),
}

impl FromStr for DataSource {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "bundled" => DataSource::Bundled,
            "hf" => DataSource::HfCache(None),
            _ => match s.strip_prefix("hf:") {
                Some(dir) => DataSource::HfCache(Some(PathBuf::from(dir))),
                None => DataSource::Path(PathBuf::from(s)),
            },
        })
    }
}

impl std::fmt::Display for DataSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataSource::Bundled => write!(f, "bundled"),
            DataSource::HfCache(None) => write!(f, "hf"),
            DataSource::HfCache(Some(p)) => write!(f, "hf:{}", p.display()),
            DataSource::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// The default Hugging Face hub cache: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
/// `~/.cache/huggingface/hub` (the same order as `huggingface_hub`).
pub fn default_hf_cache() -> PathBuf {
    if let Ok(dir) = std::env::var("HF_HUB_CACHE") {
        return PathBuf::from(dir);
    }
    hf_hub::Cache::from_env().path().clone()
}

/// The files of `manifest`'s split under `source`, sorted (shards in order).
pub fn resolve_files(
    manifest: &Manifest,
    source: &DataSource,
    repo_root: &Path,
) -> Result<Vec<PathBuf>, BenchError> {
    match source {
        DataSource::Bundled => {
            let path = manifest.bundled_path(repo_root);
            if path.is_file() {
                Ok(vec![path])
            } else {
                Err(BenchError::NoFiles {
                    benchmark: manifest.name.clone(),
                    place: path,
                    hint: "the bundled file is missing: run `spotlight synth benchmarks` (or `just synth`)".into(),
                })
            }
        }
        DataSource::HfCache(root) => {
            let root = root.clone().unwrap_or_else(default_hf_cache);
            hf_snapshot_files(manifest, &root)
        }
        DataSource::Path(path) => {
            if path.is_file() {
                return Ok(vec![path.clone()]);
            }
            if !path.is_dir() {
                return Err(BenchError::Io {
                    path: path.clone(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        "no such file or folder",
                    ),
                });
            }
            if path.join(hf_folder_name(manifest)).is_dir() {
                return hf_snapshot_files(manifest, path);
            }
            for name in folder_candidates(manifest) {
                let sub = path.join(&name);
                if sub.is_dir() {
                    return files_in_folder(manifest, &sub);
                }
            }
            files_in_folder(manifest, path)
        }
    }
}

fn hf_folder_name(manifest: &Manifest) -> String {
    hf_hub::Repo::dataset(manifest.source.hf_dataset.clone()).folder_name()
}

fn folder_candidates(manifest: &Manifest) -> Vec<String> {
    let mut names = manifest.source.folder_names.clone();
    names.push(manifest.slug.clone());
    names.extend(manifest.aliases.iter().cloned());
    names
}

/// Files of the split inside `datasets--ORG--NAME/snapshots/<commit of revision>/`.
fn hf_snapshot_files(manifest: &Manifest, cache_root: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let repo_dir = cache_root.join(hf_folder_name(manifest));
    let revision = &manifest.source.revision;
    let ref_file = repo_dir.join("refs").join(revision);
    let commit = match std::fs::read_to_string(&ref_file) {
        Ok(text) => text.trim().to_string(),
        // A revision may be a commit hash with no ref file.
        Err(_) if repo_dir.join("snapshots").join(revision).is_dir() => revision.clone(),
        Err(_) => {
            return Err(BenchError::NoFiles {
                benchmark: manifest.name.clone(),
                place: ref_file,
                hint: format!(
                    "{} (revision {revision}) is not in the Hugging Face cache at {}; download it first, e.g. `huggingface-cli download --repo-type dataset {}`",
                    manifest.source.hf_dataset,
                    cache_root.display(),
                    manifest.source.hf_dataset
                ),
            })
        }
    };
    files_in_folder(manifest, &repo_dir.join("snapshots").join(commit))
}

/// Files under `dir` (recursively) whose path relative to `dir`, or file name, matches one
/// of the manifest's patterns; conversation-style `.json`/`.jsonl` files are accepted too.
fn files_in_folder(manifest: &Manifest, dir: &Path) -> Result<Vec<PathBuf>, BenchError> {
    let patterns: Vec<glob::Pattern> = manifest
        .source
        .files
        .iter()
        .filter_map(|p| glob::Pattern::new(p).ok())
        .collect();
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(current) = stack.pop() {
        let entries = std::fs::read_dir(&current).map_err(|source| BenchError::Io {
            path: current.clone(),
            source,
        })?;
        for entry in entries {
            let entry = entry.map_err(|source| BenchError::Io {
                path: current.clone(),
                source,
            })?;
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let rel = path.strip_prefix(dir).unwrap_or(&path);
            let name = path
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default();
            let rel_str = rel.to_string_lossy().replace('\\', "/");
            if patterns
                .iter()
                .any(|p| p.matches(&rel_str) || p.matches(name))
            {
                found.push(path);
            }
        }
    }
    found.sort();
    if found.is_empty() {
        return Err(BenchError::NoFiles {
            benchmark: manifest.name.clone(),
            place: dir.to_path_buf(),
            hint: format!("no file matches {:?}", manifest.source.files),
        });
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_source_parses_keywords_and_paths() {
        assert_eq!(
            "bundled".parse::<DataSource>().unwrap(),
            DataSource::Bundled
        );
        assert_eq!(
            "hf".parse::<DataSource>().unwrap(),
            DataSource::HfCache(None)
        );
        assert_eq!(
            "hf:/x/y".parse::<DataSource>().unwrap(),
            DataSource::HfCache(Some(PathBuf::from("/x/y")))
        );
        assert_eq!(
            "../data".parse::<DataSource>().unwrap(),
            DataSource::Path(PathBuf::from("../data"))
        );
    }
}
