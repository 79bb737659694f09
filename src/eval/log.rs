//! The run's append-only sample log, `samples.jsonl`: one line per finished sample,
//! flushed as it completes, so a killed run loses at most the line being written. On
//! `--resume` the log is read back; a torn last line is dropped and its sample redone.

use std::collections::{BTreeMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use super::EvalError;

/// One graded sample: a row of `samples.parquet`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampleRecord {
    pub benchmark: String,
    pub item_id: String,
    pub sample: u32,
    pub seed: u64,
    pub response: String,
    pub extracted: Option<String>,
    pub correct: bool,
    pub reward: f64,
    /// Reward components by name (e.g. accuracy, format).
    #[serde(default)]
    pub components: BTreeMap<String, f64>,
    pub prompt_tokens: Option<u32>,
    pub response_tokens: Option<u32>,
    pub finish: String,
    pub latency_ms: u64,
    /// Why the sample could not be produced; such samples are not scored.
    pub error: Option<String>,
    /// The manifest's breakdown fields of the item.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
}

impl SampleRecord {
    pub fn key(&self) -> (String, String, u32) {
        (self.benchmark.clone(), self.item_id.clone(), self.sample)
    }
}

/// Appends records to `samples.jsonl`, one flushed line each; safe to share across threads.
pub struct SampleLog {
    path: PathBuf,
    file: Mutex<File>,
}

impl SampleLog {
    pub const FILE_NAME: &'static str = "samples.jsonl";

    /// Opens (creating) the log in `run_dir` for appending.
    pub fn open(run_dir: &Path) -> Result<SampleLog, EvalError> {
        let path = run_dir.join(Self::FILE_NAME);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|source| EvalError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(SampleLog {
            path,
            file: Mutex::new(file),
        })
    }

    pub fn append(&self, record: &SampleRecord) -> Result<(), EvalError> {
        let mut line = serde_json::to_string(record).map_err(|e| EvalError::Input {
            path: self.path.clone(),
            row: None,
            field: "record".into(),
            message: e.to_string(),
        })?;
        line.push('\n');
        let mut file = self
            .file
            .lock()
            .map_err(|_| EvalError::Internal("sample log lock poisoned".into()))?;
        // One write call per line: a kill leaves at most a torn last line.
        file.write_all(line.as_bytes())
            .and_then(|_| file.flush())
            .map_err(|source| EvalError::Io {
                path: self.path.clone(),
                source,
            })
    }

    /// Reads the records of a previous (possibly killed) run. A torn final line is dropped
    /// and the file truncated to the last complete line; a bad line elsewhere is an error.
    /// Duplicates (same benchmark, item, sample) keep the first.
    pub fn read(run_dir: &Path) -> Result<Vec<SampleRecord>, EvalError> {
        let path = run_dir.join(Self::FILE_NAME);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(EvalError::Io { path, source }),
        };
        let mut records = Vec::new();
        let mut seen = HashSet::new();
        let mut good_bytes = 0u64;
        let mut lines = BufReader::new(file).split(b'\n').peekable();
        let mut row = 0usize;
        while let Some(line) = lines.next() {
            let line = line.map_err(|source| EvalError::Io {
                path: path.clone(),
                source,
            })?;
            let is_last = lines.peek().is_none();
            match serde_json::from_slice::<SampleRecord>(&line) {
                Ok(record) => {
                    good_bytes += line.len() as u64 + 1;
                    if seen.insert(record.key()) {
                        records.push(record);
                    }
                }
                Err(_) if is_last => {
                    // Killed mid-write: cut the torn line so appends start cleanly.
                    let file = OpenOptions::new()
                        .write(true)
                        .open(&path)
                        .map_err(|source| EvalError::Io {
                            path: path.clone(),
                            source,
                        })?;
                    file.set_len(good_bytes).map_err(|source| EvalError::Io {
                        path: path.clone(),
                        source,
                    })?;
                }
                Err(e) => {
                    return Err(EvalError::Input {
                        path: path.clone(),
                        row: Some(row),
                        field: "(line)".into(),
                        message: format!("not a sample record: {e}"),
                    })
                }
            }
            row += 1;
        }
        Ok(records)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(item: &str, sample: u32) -> SampleRecord {
        SampleRecord {
            benchmark: "geo3k".into(),
            item_id: item.into(),
            sample,
            seed: 1,
            response: "\\boxed{1}".into(),
            extracted: Some("1".into()),
            correct: true,
            reward: 1.0,
            components: BTreeMap::new(),
            prompt_tokens: None,
            response_tokens: None,
            finish: "stop".into(),
            latency_ms: 0,
            error: None,
            fields: BTreeMap::new(),
        }
    }

    #[test]
    fn torn_last_line_is_dropped_and_truncated() {
        let dir = tempfile::tempdir().unwrap();
        let log = SampleLog::open(dir.path()).unwrap();
        log.append(&record("a", 0)).unwrap();
        log.append(&record("a", 1)).unwrap();
        drop(log);
        let path = dir.path().join(SampleLog::FILE_NAME);
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.extend_from_slice(b"{\"benchmark\": \"geo3k\", \"item_");
        std::fs::write(&path, &bytes).unwrap();
        let records = SampleLog::read(dir.path()).unwrap();
        assert_eq!(records.len(), 2);
        let log = SampleLog::open(dir.path()).unwrap();
        log.append(&record("b", 0)).unwrap();
        assert_eq!(SampleLog::read(dir.path()).unwrap().len(), 3);
    }

    #[test]
    fn duplicates_keep_the_first_and_a_bad_middle_line_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let log = SampleLog::open(dir.path()).unwrap();
        log.append(&record("a", 0)).unwrap();
        log.append(&record("a", 0)).unwrap();
        assert_eq!(SampleLog::read(dir.path()).unwrap().len(), 1);
        let path = dir.path().join(SampleLog::FILE_NAME);
        let text = std::fs::read_to_string(&path).unwrap();
        std::fs::write(&path, format!("garbage\n{text}")).unwrap();
        let err = SampleLog::read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("row 0"), "{err}");
    }
}
