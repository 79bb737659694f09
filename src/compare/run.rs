//! A finished run folder read for comparison: `run.json` (the plan: name, k, sampling,
//! benchmark files) and `samples.parquet` (one row per sample), reduced to per-item
//! counts of correct and scored samples plus each item's breakdown categories.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::CompareError;
use crate::bench::ingest::text_at;
use crate::eval::EvalPlan;

/// The columns of `samples.parquet` that are not breakdown fields (reward components are
/// recognised by their `reward_` prefix).
const SAMPLE_COLUMNS: [&str; 13] = [
    "benchmark",
    "item_id",
    "sample",
    "seed",
    "response",
    "extracted",
    "correct",
    "reward",
    "prompt_tokens",
    "response_tokens",
    "finish",
    "latency_ms",
    "error",
];

/// One item's graded samples, reduced to what avg@k needs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ItemOutcome {
    /// Samples graded correct.
    pub correct: u32,
    /// Samples that were produced and graded (backend errors are not scored).
    pub scored: u32,
    /// Breakdown field -> category.
    pub categories: BTreeMap<String, String>,
}

impl ItemOutcome {
    /// The item's avg@k in [0, 1]; `None` when no sample was scored.
    pub fn avg(&self) -> Option<f64> {
        (self.scored > 0).then(|| f64::from(self.correct) / f64::from(self.scored))
    }
}

/// A benchmark's items in one run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BenchmarkOutcomes {
    /// Display name (the paper's), from run.json; the slug when run.json lacks it.
    pub name: String,
    /// SHA-256 of the benchmark files the run read (to warn when runs read other files).
    pub file_hashes: Vec<String>,
    pub items: BTreeMap<String, ItemOutcome>,
}

/// A run folder, read.
#[derive(Debug, Clone)]
pub struct RunData {
    pub dir: PathBuf,
    pub plan: EvalPlan,
    /// By benchmark slug.
    pub benchmarks: BTreeMap<String, BenchmarkOutcomes>,
}

impl RunData {
    /// Benchmark slugs in the run's own order (its plan's), then any others found.
    pub fn order(&self) -> Vec<String> {
        let mut order: Vec<String> = self
            .plan
            .benchmarks
            .iter()
            .map(|b| b.slug.clone())
            .filter(|s| self.benchmarks.contains_key(s))
            .collect();
        for slug in self.benchmarks.keys() {
            if !order.contains(slug) {
                order.push(slug.clone());
            }
        }
        order
    }
}

/// Reads a run folder as `spotlight eval` leaves it.
pub fn load_run(dir: &Path) -> Result<RunData, CompareError> {
    if !dir.is_dir() {
        return Err(CompareError::Input {
            path: dir.to_path_buf(),
            message: "no such run folder".into(),
        });
    }
    let plan = EvalPlan::load(dir)?.ok_or_else(|| CompareError::Input {
        path: dir.join(EvalPlan::FILE_NAME),
        message: "missing: not a run folder written by `spotlight eval`".into(),
    })?;
    let samples = dir.join("samples.parquet");
    if !samples.is_file() {
        let hint = if dir.join(crate::eval::SampleLog::FILE_NAME).is_file() {
            "missing: the run has not finished (continue it with `spotlight eval --resume`)"
        } else {
            "missing"
        };
        return Err(CompareError::Input {
            path: samples,
            message: hint.into(),
        });
    }
    let mut benchmarks = read_samples(&samples)?;
    for planned in &plan.benchmarks {
        if let Some(b) = benchmarks.get_mut(&planned.slug) {
            b.name = planned.name.clone();
            b.file_hashes = planned.files.iter().map(|f| f.sha256.clone()).collect();
        }
    }
    Ok(RunData {
        dir: dir.to_path_buf(),
        plan,
        benchmarks,
    })
}

/// Reads `samples.parquet` into per-benchmark, per-item outcomes.
pub fn read_samples(path: &Path) -> Result<BTreeMap<String, BenchmarkOutcomes>, CompareError> {
    let bad = |message: String| CompareError::Input {
        path: path.to_path_buf(),
        message,
    };
    let file = File::open(path).map_err(|source| CompareError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .and_then(|b| b.build())
        .map_err(|e| bad(format!("not a readable parquet file: {e}")))?;
    let mut benchmarks: BTreeMap<String, BenchmarkOutcomes> = BTreeMap::new();
    // (benchmark, item, sample) seen, so that a duplicated row cannot count twice.
    let mut seen: BTreeSet<(String, String, u32)> = BTreeSet::new();
    let mut row_base = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| bad(e.to_string()))?;
        let column = |name: &str| -> Result<ArrayRef, CompareError> {
            batch
                .column_by_name(name)
                .cloned()
                .ok_or_else(|| bad(format!("missing column `{name}`")))
        };
        let cast = |name: &str, to: &DataType| -> Result<ArrayRef, CompareError> {
            arrow::compute::cast(&column(name)?, to)
                .map_err(|e| bad(format!("column `{name}`: {e}")))
        };
        let benchmark = column("benchmark")?;
        let item_id = column("item_id")?;
        let sample = cast("sample", &DataType::UInt32)?;
        let sample = sample.as_primitive::<arrow::datatypes::UInt32Type>();
        let correct = cast("correct", &DataType::Boolean)?;
        let correct = correct.as_boolean();
        let error = batch.column_by_name("error").cloned();
        let schema = batch.schema();
        let fields: Vec<(String, ArrayRef)> = schema
            .fields()
            .iter()
            .zip(batch.columns())
            .filter(|(f, _)| {
                !SAMPLE_COLUMNS.contains(&f.name().as_str()) && !f.name().starts_with("reward_")
            })
            .map(|(f, a)| {
                // The runner renames a breakdown field that collides with a fixed column.
                let name = f.name().strip_prefix("field_").unwrap_or(f.name());
                (name.to_string(), a.clone())
            })
            .collect();
        for i in 0..batch.num_rows() {
            let row = row_base + i;
            let need = |a: &ArrayRef, field: &str| {
                text_at(a, i).ok_or_else(|| bad(format!("row {row}: field `{field}`: null")))
            };
            let bench = need(&benchmark, "benchmark")?;
            let item = need(&item_id, "item_id")?;
            if sample.is_null(i) {
                return Err(bad(format!("row {row}: field `sample`: null")));
            }
            let index = sample.value(i);
            if !seen.insert((bench.clone(), item.clone(), index)) {
                return Err(bad(format!(
                    "row {row}: duplicate sample {index} of item `{item}` in {bench}"
                )));
            }
            let failed = error.as_ref().is_some_and(|e| !e.is_null(i));
            let entry = benchmarks
                .entry(bench.clone())
                .or_insert_with(|| BenchmarkOutcomes {
                    name: bench.clone(),
                    ..Default::default()
                })
                .items
                .entry(item)
                .or_default();
            if !failed {
                if correct.is_null(i) {
                    return Err(bad(format!("row {row}: field `correct`: null")));
                }
                entry.scored += 1;
                entry.correct += u32::from(correct.value(i));
            }
            for (name, values) in &fields {
                if let Some(category) = text_at(values, i) {
                    entry.categories.entry(name.clone()).or_insert(category);
                }
            }
        }
        row_base += batch.num_rows();
    }
    Ok(benchmarks)
}
