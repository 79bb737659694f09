//! The replay backend: grade responses produced elsewhere, read from JSONL or parquet with
//! the columns `benchmark`, `item_id`, `sample`, `response` (optionally `prompt_tokens`,
//! `response_tokens`, `finish`).

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::backend::{Backend, BackendError, SampleRequest, SampleResponse};
use super::EvalError;
use crate::bench::ingest::text_at;

/// Responses keyed by (benchmark slug, item id, sample index).
pub struct ReplayBackend {
    path: PathBuf,
    responses: HashMap<(String, String, u32), SampleResponse>,
}

impl ReplayBackend {
    /// Reads `path`; `slug_of` maps the file's benchmark names (paper names, aliases) to
    /// slugs and rejects unknown ones.
    pub fn open(
        path: &Path,
        slug_of: impl Fn(&str) -> Option<String>,
    ) -> Result<ReplayBackend, EvalError> {
        let rows = if path.extension().and_then(|e| e.to_str()) == Some("parquet") {
            read_parquet_rows(path)?
        } else {
            read_jsonl_rows(path)?
        };
        let mut responses = HashMap::new();
        for (row, r) in rows.into_iter().enumerate() {
            let bad = |field: &str, message: String| EvalError::Input {
                path: path.to_path_buf(),
                row: Some(row),
                field: field.to_string(),
                message,
            };
            let slug = slug_of(&r.benchmark)
                .ok_or_else(|| bad("benchmark", format!("unknown benchmark {:?}", r.benchmark)))?;
            let sample: u32 = r
                .sample
                .trim()
                .parse()
                .map_err(|_| bad("sample", format!("not a sample index: {:?}", r.sample)))?;
            let key = (slug, r.item_id.clone(), sample);
            if responses.contains_key(&key) {
                return Err(bad(
                    "sample",
                    format!(
                        "duplicate response for item {:?} sample {sample}",
                        r.item_id
                    ),
                ));
            }
            responses.insert(
                key,
                SampleResponse {
                    response: r.response,
                    prompt_tokens: r.prompt_tokens,
                    response_tokens: r.response_tokens,
                    finish: r.finish.unwrap_or_else(|| "stop".into()),
                },
            );
        }
        Ok(ReplayBackend {
            path: path.to_path_buf(),
            responses,
        })
    }

    pub fn len(&self) -> usize {
        self.responses.len()
    }

    pub fn is_empty(&self) -> bool {
        self.responses.is_empty()
    }
}

impl Backend for ReplayBackend {
    fn describe(&self) -> String {
        format!("replay:{}", self.path.display())
    }

    fn sample(&self, request: &SampleRequest) -> Result<SampleResponse, BackendError> {
        self.responses
            .get(&(
                request.benchmark.clone(),
                request.item_id.clone(),
                request.sample,
            ))
            .cloned()
            .ok_or_else(|| BackendError::MissingReplay {
                benchmark: request.benchmark.clone(),
                item_id: request.item_id.clone(),
                sample: request.sample,
            })
    }
}

struct ReplayRow {
    benchmark: String,
    item_id: String,
    sample: String,
    response: String,
    prompt_tokens: Option<u32>,
    response_tokens: Option<u32>,
    finish: Option<String>,
}

fn read_jsonl_rows(path: &Path) -> Result<Vec<ReplayRow>, EvalError> {
    let file = File::open(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut rows = Vec::new();
    for (row, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|source| EvalError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let bad = |field: &str, message: String| EvalError::Input {
            path: path.to_path_buf(),
            row: Some(row),
            field: field.to_string(),
            message,
        };
        let v: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| bad("(line)", format!("not JSON: {e}")))?;
        let text = |field: &str| -> Result<String, EvalError> {
            match v.get(field) {
                Some(serde_json::Value::String(s)) => Ok(s.clone()),
                Some(serde_json::Value::Number(n)) => Ok(n.to_string()),
                Some(other) => Err(bad(field, format!("expected a string, found {other}"))),
                None => Err(bad(field, "missing".into())),
            }
        };
        let count = |field: &str| v.get(field).and_then(|x| x.as_u64()).map(|x| x as u32);
        rows.push(ReplayRow {
            benchmark: text("benchmark")?,
            item_id: text("item_id")?,
            sample: text("sample")?,
            response: text("response")?,
            prompt_tokens: count("prompt_tokens"),
            response_tokens: count("response_tokens"),
            finish: v.get("finish").and_then(|x| x.as_str()).map(String::from),
        });
    }
    Ok(rows)
}

fn read_parquet_rows(path: &Path) -> Result<Vec<ReplayRow>, EvalError> {
    let bad_file = |message: String| EvalError::Input {
        path: path.to_path_buf(),
        row: None,
        field: String::new(),
        message,
    };
    let file = File::open(path).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad_file(format!("not a readable parquet file: {e}")))?;
    let mut rows = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| bad_file(e.to_string()))?;
        let column = |name: &str| {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| EvalError::Input {
                    path: path.to_path_buf(),
                    row: None,
                    field: name.to_string(),
                    message: "missing column".into(),
                })
        };
        let (b, id, s, r) = (
            column("benchmark")?,
            column("item_id")?,
            column("sample")?,
            column("response")?,
        );
        let optional = |name: &str| batch.column_by_name(name).cloned();
        let (pt, rt, fin) = (
            optional("prompt_tokens"),
            optional("response_tokens"),
            optional("finish"),
        );
        for i in 0..batch.num_rows() {
            let row = rows.len();
            let need = |a: &arrow::array::ArrayRef, field: &str| {
                text_at(a, i).ok_or_else(|| EvalError::Input {
                    path: path.to_path_buf(),
                    row: Some(row),
                    field: field.to_string(),
                    message: "null".into(),
                })
            };
            let count = |a: &Option<arrow::array::ArrayRef>| {
                a.as_ref()
                    .and_then(|a| text_at(a, i))
                    .and_then(|t| t.parse().ok())
            };
            rows.push(ReplayRow {
                benchmark: need(&b, "benchmark")?,
                item_id: need(&id, "item_id")?,
                sample: need(&s, "sample")?,
                // A null response is an empty one (a model that said nothing).
                response: text_at(&r, i).unwrap_or_default(),
                prompt_tokens: count(&pt),
                response_tokens: count(&rt),
                finish: fin.as_ref().and_then(|a| text_at(a, i)),
            });
        }
    }
    Ok(rows)
}
