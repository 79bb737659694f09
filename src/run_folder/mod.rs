//! The run folder: what a run (an evaluation or a training run) leaves on disk and how later
//! commands recognise it — file records with content hashes, the fingerprint of the model a
//! run used, and the plan-comparison rule that `--resume` applies everywhere.
//!
//! Why one module: eval, train, sft, compare and report all read or write these files, and a
//! resume is only safe if every command hashes and compares them the same way.

pub mod fingerprint;

use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub use fingerprint::ModelFingerprint;

/// Errors reading what a run folder records.
#[derive(Debug, thiserror::Error)]
pub enum RunFolderError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
}

/// A file a run read, with its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileRecord {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// SHA-256 of a file, streamed (weight files are gigabytes).
pub fn sha256_file(path: &Path) -> Result<FileRecord, RunFolderError> {
    let io = |source| RunFolderError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok(FileRecord {
        path: path.display().to_string(),
        sha256: format!("{:x}", hasher.finalize()),
        bytes,
    })
}

/// SHA-256 of bytes in memory (a rule set's text, a rendered template), hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    format!("{:x}", Sha256::digest(bytes))
}

/// A hash of a benchmark manifest as parsed (prompt template and instruction included), so
/// that editing a comment changes nothing and editing anything that changes prompts or
/// grading does.
pub fn manifest_sha256(manifest: &crate::bench::Manifest) -> String {
    sha256_hex(
        serde_json::to_string(manifest)
            .unwrap_or_default()
            .as_bytes(),
    )
}

/// What `--resume` does with a plan recorded by another Spotlight version: results may
/// differ in rounding, so it continues, but says so on stderr (the same rule for eval, train
/// and sft).
pub fn warn_on_version_change(run_dir: &Path, recorded: &str) {
    if recorded != crate::VERSION {
        eprintln!(
            "warning: {} was started by Spotlight {recorded}; continuing it with {}",
            run_dir.display(),
            crate::VERSION
        );
    }
}

/// The differences between two records of the same files, named by path: changed, added
/// or gone (paths compared as recorded).
pub fn file_differences(what: &str, before: &[FileRecord], now: &[FileRecord]) -> Vec<String> {
    let mut out = Vec::new();
    for b in before {
        match now.iter().find(|n| n.path == b.path) {
            Some(n) if n.sha256 != b.sha256 => out.push(format!("{what} {} changed", b.path)),
            None => out.push(format!("{what} {} is no longer read", b.path)),
            _ => {}
        }
    }
    for n in now {
        if !before.iter().any(|b| b.path == n.path) {
            out.push(format!("{what} {} is new", n.path));
        }
    }
    out
}

/// The dotted paths at which two JSON values differ, with both values (`a.b: 1 -> 2`): how a
/// changed recipe is named when a resume is refused.
pub fn json_differences(before: &serde_json::Value, now: &serde_json::Value) -> Vec<String> {
    fn walk(prefix: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
        use serde_json::Value;
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    let path = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    match (x.get(k), y.get(k)) {
                        (Some(p), Some(q)) => walk(&path, p, q, out),
                        (p, q) => out.push(format!("{path}: {} -> {}", show(p), show(q))),
                    }
                }
            }
            _ if a != b => out.push(format!("{prefix}: {a} -> {b}")),
            _ => {}
        }
    }
    fn show(v: Option<&serde_json::Value>) -> String {
        v.map_or("(absent)".to_string(), |v| v.to_string())
    }
    let mut out = Vec::new();
    walk("", before, now, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_differences_name_the_dotted_field() {
        let a = serde_json::json!({"batch": {"n": 2, "m": 1}, "name": "x"});
        let b = serde_json::json!({"batch": {"n": 4, "m": 1}, "name": "x", "new": true});
        assert_eq!(
            json_differences(&a, &b),
            vec![
                "batch.n: 2 -> 4".to_string(),
                "new: (absent) -> true".to_string()
            ]
        );
        assert!(json_differences(&a, &a).is_empty());
    }

    #[test]
    fn file_differences_say_changed_gone_and_new() {
        let r = |p: &str, h: &str| FileRecord {
            path: p.into(),
            sha256: h.into(),
            bytes: 1,
        };
        let d = file_differences(
            "data",
            &[r("a", "1"), r("b", "2")],
            &[r("a", "9"), r("c", "3")],
        );
        assert_eq!(
            d,
            vec![
                "data a changed".to_string(),
                "data b is no longer read".to_string(),
                "data c is new".to_string()
            ]
        );
    }
}
