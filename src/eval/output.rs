//! A finished run's files: `samples.parquet` (one row per sample) and `summary.json`
//! (avg@k, pass@k and 95% intervals per benchmark and per breakdown category, and the Avg
//! over the eight), both written atomically.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::ArrowWriter;
use serde::{Deserialize, Serialize};

use super::log::SampleRecord;
use super::metrics::{summarize, ItemScores, Summary};
use super::EvalError;

/// Per-benchmark results in `summary.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchmarkSummary {
    pub name: String,
    pub items: usize,
    pub k: usize,
    pub avg_at_k: Option<f64>,
    pub pass_at_k: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    pub pass_ci95: Option<[f64; 2]>,
    pub samples: usize,
    /// Samples the backend could not produce (not scored).
    pub errors: usize,
    /// Breakdown field -> category -> summary.
    pub breakdown: BTreeMap<String, BTreeMap<String, BreakdownCell>>,
    pub approximate: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BreakdownCell {
    pub items: usize,
    pub avg_at_k: Option<f64>,
    pub ci95: Option<[f64; 2]>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunSummary {
    pub run: String,
    pub k: usize,
    /// By slug, in the paper's order (see `order`).
    pub benchmarks: BTreeMap<String, BenchmarkSummary>,
    pub order: Vec<String>,
    /// Mean of the eight benchmarks' avg@k, as the paper's Avg column; `None` unless all
    /// eight were evaluated.
    pub avg: Option<f64>,
}

/// What the summary needs to know about each benchmark besides its records.
pub struct SummaryInput<'a> {
    pub slug: &'a str,
    pub name: &'a str,
    pub breakdown: &'a [String],
    pub approximate: Option<String>,
    /// Item ids in order (items without records still count).
    pub item_ids: Vec<String>,
}

/// Groups records into per-item scores (error samples left out).
pub fn item_scores(records: &[SampleRecord], slug: &str, ids: &[String]) -> Vec<ItemScores> {
    let mut by_item: BTreeMap<&str, Vec<(u32, bool)>> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.benchmark == slug && r.error.is_none())
    {
        by_item
            .entry(r.item_id.as_str())
            .or_default()
            .push((r.sample, r.correct));
    }
    ids.iter()
        .map(|id| {
            let mut samples = by_item.remove(id.as_str()).unwrap_or_default();
            samples.sort();
            ItemScores {
                item_id: id.clone(),
                correct: samples.into_iter().map(|(_, c)| c).collect(),
            }
        })
        .collect()
}

pub fn summarize_run(
    run: &str,
    k: usize,
    seed: u64,
    records: &[SampleRecord],
    inputs: &[SummaryInput],
    all_eight: &[String],
) -> RunSummary {
    let mut benchmarks = BTreeMap::new();
    for input in inputs {
        let scores = item_scores(records, input.slug, &input.item_ids);
        let overall: Summary = summarize(&scores, k, seed);
        let mine: Vec<&SampleRecord> = records
            .iter()
            .filter(|r| r.benchmark == input.slug)
            .collect();
        let mut breakdown = BTreeMap::new();
        for field in input.breakdown {
            // An item's category: its field value (the same on all its samples).
            let mut category_of: BTreeMap<&str, String> = BTreeMap::new();
            for r in &mine {
                let value = r
                    .fields
                    .get(field)
                    .cloned()
                    .unwrap_or_else(|| "(none)".into());
                category_of.entry(r.item_id.as_str()).or_insert(value);
            }
            let categories: BTreeSet<&String> = category_of.values().collect();
            let mut cells = BTreeMap::new();
            for category in categories {
                let subset: Vec<ItemScores> = scores
                    .iter()
                    .filter(|s| category_of.get(s.item_id.as_str()) == Some(category))
                    .cloned()
                    .collect();
                let s = summarize(&subset, k, seed);
                cells.insert(
                    category.clone(),
                    BreakdownCell {
                        items: subset.len(),
                        avg_at_k: s.avg_at_k,
                        ci95: s.ci95,
                    },
                );
            }
            breakdown.insert(field.clone(), cells);
        }
        benchmarks.insert(
            input.slug.to_string(),
            BenchmarkSummary {
                name: input.name.to_string(),
                items: overall.items,
                k,
                avg_at_k: overall.avg_at_k,
                pass_at_k: overall.pass_at_k,
                ci95: overall.ci95,
                pass_ci95: overall.pass_ci95,
                samples: mine.len(),
                errors: mine.iter().filter(|r| r.error.is_some()).count(),
                breakdown,
                approximate: input.approximate.clone(),
            },
        );
    }
    let eight: Vec<Option<f64>> = all_eight
        .iter()
        .map(|slug| {
            benchmarks
                .get(slug)
                .and_then(|b: &BenchmarkSummary| b.avg_at_k)
        })
        .collect();
    let avg = (!eight.is_empty() && eight.iter().all(Option::is_some))
        .then(|| eight.iter().flatten().sum::<f64>() / eight.len() as f64);
    RunSummary {
        run: run.to_string(),
        k,
        order: inputs.iter().map(|i| i.slug.to_string()).collect(),
        benchmarks,
        avg,
    }
}

pub fn write_summary(path: &Path, summary: &RunSummary) -> Result<(), EvalError> {
    let text =
        serde_json::to_string_pretty(summary).map_err(|e| EvalError::Internal(e.to_string()))?;
    crate::atomic_file::write_bytes_atomic(path, text.as_bytes()).map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// Writes `samples.parquet`: the fixed columns, then `reward_<component>` columns, then
/// the breakdown fields.
pub fn write_samples_parquet(path: &Path, records: &[SampleRecord]) -> Result<(), EvalError> {
    let strings = |f: &dyn Fn(&SampleRecord) -> Option<String>| -> ArrayRef {
        Arc::new(records.iter().map(f).collect::<StringArray>())
    };
    let mut columns: Vec<(String, ArrayRef)> = vec![
        ("benchmark".into(), strings(&|r| Some(r.benchmark.clone()))),
        ("item_id".into(), strings(&|r| Some(r.item_id.clone()))),
        (
            "sample".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.sample))
                    .collect::<UInt32Array>(),
            ),
        ),
        (
            "seed".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.seed))
                    .collect::<UInt64Array>(),
            ),
        ),
        ("response".into(), strings(&|r| Some(r.response.clone()))),
        ("extracted".into(), strings(&|r| r.extracted.clone())),
        (
            "correct".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.correct))
                    .collect::<BooleanArray>(),
            ),
        ),
        (
            "reward".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.reward))
                    .collect::<Float64Array>(),
            ),
        ),
        (
            "prompt_tokens".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| r.prompt_tokens)
                    .collect::<UInt32Array>(),
            ),
        ),
        (
            "response_tokens".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| r.response_tokens)
                    .collect::<UInt32Array>(),
            ),
        ),
        ("finish".into(), strings(&|r| Some(r.finish.clone()))),
        (
            "latency_ms".into(),
            Arc::new(
                records
                    .iter()
                    .map(|r| Some(r.latency_ms))
                    .collect::<UInt64Array>(),
            ),
        ),
        ("error".into(), strings(&|r| r.error.clone())),
    ];
    let components: BTreeSet<&String> = records.iter().flat_map(|r| r.components.keys()).collect();
    for name in components {
        let values: Float64Array = records
            .iter()
            .map(|r| r.components.get(name).copied())
            .collect();
        columns.push((format!("reward_{name}"), Arc::new(values)));
    }
    let fields: BTreeSet<&String> = records.iter().flat_map(|r| r.fields.keys()).collect();
    for name in fields {
        let taken = columns.iter().any(|(n, _)| n == name);
        let column = if taken {
            format!("field_{name}")
        } else {
            name.clone()
        };
        columns.push((column, strings(&|r| r.fields.get(name).cloned())));
    }
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(|(n, a)| {
                Field::new(
                    n,
                    a.data_type().clone(),
                    !matches!(a.data_type(), DataType::Null),
                )
            })
            .collect::<Vec<_>>(),
    ));
    let batch = RecordBatch::try_new(
        schema.clone(),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .map_err(|e| EvalError::Internal(e.to_string()))?;
    crate::atomic_file::write_atomic(path, |file| {
        let mut writer = ArrowWriter::try_new(file, schema, None)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writer
            .write(&batch)
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        writer
            .close()
            .map_err(|e| std::io::Error::other(e.to_string()))?;
        Ok::<(), std::io::Error>(())
    })
    .map_err(|source| EvalError::Io {
        path: path.to_path_buf(),
        source,
    })
}
