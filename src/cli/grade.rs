//! `spotlight grade`: one response (with every normalisation step shown) or a whole
//! JSONL/parquet file of rows, with a rule set from `reward_rules/` or a TOML path.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use arrow::array::{
    Array, ArrayRef, BooleanArray, Float64Array, Int64Array, LargeStringArray, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder,
};
use arrow::datatypes::{DataType, Field, Schema};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::ArrowWriter;
use serde_json::{Map, Value};
use spotlight::verify::RulesRecord;
use spotlight::verify::{Grade, RuleSet};

use super::Outcome;

/// Grade responses against ground truths with a reward rule set.
///
/// Single case: `spotlight grade --response TEXT --truth TEXT` prints the extracted answer,
/// each normalisation step's output, the verdict and the reason. Batch: `--input FILE
/// --output FILE` (JSONL or parquet, by extension) with columns `response`,
/// `ground_truth` and optional `options` (list of strings); other columns pass through,
/// `extracted`, `correct`, `reward` and one `score_<component>` column are added.
/// Exit codes: 0 graded (single case: correct), 1 single case incorrect, 2 bad input.
#[derive(clap::Args)]
pub struct GradeArgs {
    /// Rule set: a builtin name (mathruler, mathruler_raw, mathruler_format,
    /// multiple_choice, format) or a path to a TOML rule file.
    #[arg(long, default_value = "mathruler")]
    rules: String,
    /// The model's response (single-case mode).
    #[arg(long, conflicts_with = "input")]
    response: Option<String>,
    /// The ground-truth label (single-case mode).
    #[arg(long, requires = "response")]
    truth: Option<String>,
    /// Answer options for multiple choice, in order (A, B, ...); repeat the flag.
    #[arg(long = "option")]
    options: Vec<String>,
    /// Rows to grade: .jsonl or .parquet.
    #[arg(long, requires = "output")]
    input: Option<PathBuf>,
    /// Where to write the graded rows: .jsonl or .parquet.
    #[arg(long)]
    output: Option<PathBuf>,
    /// Print machine-readable JSON on stdout (single-case mode), or the summary (batch).
    #[arg(long)]
    json: bool,
    /// Grading threads for batch mode (0 = all cores).
    #[arg(long, default_value_t = 0)]
    threads: usize,
}

pub fn run(args: GradeArgs) -> anyhow::Result<Outcome> {
    // The same lookup as eval, train and sft: an edited project rule file grades the
    // same everywhere. Outside a project only paths and builtins are found.
    let root = spotlight::bench::project_root().ok();
    let (rules, record) = match spotlight::verify::resolve(root.as_deref(), &args.rules) {
        Ok(r) => (r.rules, r.record),
        Err(e) => {
            eprintln!("error: {e}");
            return Ok(Outcome::BadInput);
        }
    };

    match (&args.response, &args.input) {
        (Some(response), None) => {
            let Some(truth) = &args.truth else {
                eprintln!("error: --response needs --truth");
                return Ok(Outcome::BadInput);
            };
            single(&rules, &record, response, truth, &args)
        }
        (None, Some(input)) => {
            let Some(output) = &args.output else {
                eprintln!("error: --input needs --output");
                return Ok(Outcome::BadInput);
            };
            batch(&rules, &record, input, output, &args)
        }
        _ => {
            eprintln!("error: give either --response/--truth or --input/--output");
            Ok(Outcome::BadInput)
        }
    }
}

fn single(
    rules: &RuleSet,
    record: &RulesRecord,
    response: &str,
    truth: &str,
    args: &GradeArgs,
) -> anyhow::Result<Outcome> {
    let options = (!args.options.is_empty()).then_some(args.options.as_slice());
    let t = rules.grade_traced(response, truth, options);
    let mut out = String::new();
    if args.json {
        let v = serde_json::json!({
            "rules": rules.name(),
            "rules_origin": record.origin,
            "rules_sha256": record.sha256,
            "extracted": t.grade.extracted,
            "correct": t.grade.correct,
            "reward": t.grade.reward,
            "components": t.grade.components.iter().map(|(n, s)| serde_json::json!({"name": n, "score": s})).collect::<Vec<_>>(),
            "reason": t.grade.reason,
            "steps": t.steps.iter().map(|(n, s)| serde_json::json!({"step": n, "output": s})).collect::<Vec<_>>(),
        });
        out.push_str(&serde_json::to_string_pretty(&v)?);
        out.push('\n');
    } else {
        use std::fmt::Write as _;
        writeln!(out, "rules:     {} ({})", rules.name(), record.origin)?;
        writeln!(
            out,
            "extracted: {}",
            t.grade.extracted.as_deref().unwrap_or("(no answer)")
        )?;
        for (name, value) in &t.steps {
            writeln!(out, "  {name:<52} {value:?}")?;
        }
        writeln!(
            out,
            "verdict:   {}",
            if t.grade.correct {
                "correct"
            } else {
                "incorrect"
            }
        )?;
        writeln!(out, "reason:    {}", t.grade.reason)?;
        for (n, s) in &t.grade.components {
            writeln!(out, "component: {n} = {s}")?;
        }
        writeln!(out, "reward:    {}", t.grade.reward)?;
    }
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = std::io::stdout().lock().write_all(out.as_bytes());
    // Like a check: scripts can test a single answer with the exit code.
    Ok(if t.grade.correct {
        Outcome::Ok
    } else {
        Outcome::CheckFailed
    })
}

/// One input row's grading fields.
struct Row {
    response: String,
    truth: String,
    options: Option<Vec<String>>,
}

fn is_parquet(p: &Path) -> bool {
    p.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"))
}

fn batch(
    rules: &RuleSet,
    record: &RulesRecord,
    input: &Path,
    output: &Path,
    args: &GradeArgs,
) -> anyhow::Result<Outcome> {
    let start = Instant::now();
    let table = if is_parquet(input) {
        read_parquet(input)
    } else {
        read_jsonl(input)
    };
    let table = match table {
        Ok(t) => t,
        Err(e) => {
            eprintln!("error: {e:#}");
            return Ok(Outcome::BadInput);
        }
    };
    let read_s = start.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let results = grade_all(&table.rows, args.threads, |r| {
        rules.grade(&r.response, &r.truth, r.options.as_deref())
    })?;
    let grade_s = t0.elapsed().as_secs_f64();
    let names: Vec<String> = rules
        .component_names()
        .iter()
        .map(|n| n.to_string())
        .collect();
    let errors: Vec<Option<String>> = results.iter().map(|r| r.clone().err()).collect();
    let grades: Vec<Grade> = results
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| failed_grade(&names, &e)))
        .collect();
    if is_parquet(output) {
        write_parquet(output, &table, &grades, &errors, &names)?;
    } else {
        write_jsonl(output, &table, &grades, &errors, &names)?;
    }
    let failed = errors.iter().flatten().count();
    let n = grades.len();
    let correct = grades.iter().filter(|g| g.correct).count();
    let no_answer = grades.iter().filter(|g| g.extracted.is_none()).count();
    let mean_reward = if n == 0 {
        0.0
    } else {
        grades.iter().map(|g| g.reward).sum::<f64>() / n as f64
    };
    let summary = serde_json::json!({
        "rules": rules.name(), "rules_origin": record.origin, "rules_sha256": record.sha256,
        "rows": n, "correct": correct,
        "accuracy": if n == 0 { 0.0 } else { correct as f64 / n as f64 },
        "mean_reward": mean_reward, "no_answer": no_answer, "errors": failed,
        "read_seconds": read_s, "grade_seconds": grade_s,
        "rows_per_second": if grade_s > 0.0 { n as f64 / grade_s } else { 0.0 },
        "output": output.display().to_string(),
    });
    eprintln!(
        "graded {n} rows with `{}`: {correct} correct ({:.2}%), mean reward {mean_reward:.4}, {no_answer} without an answer; {:.0} rows/s -> {}",
        rules.name(),
        if n == 0 { 0.0 } else { 100.0 * correct as f64 / n as f64 },
        if grade_s > 0.0 { n as f64 / grade_s } else { 0.0 },
        output.display()
    );
    if args.json {
        let _ = writeln!(std::io::stdout().lock(), "{summary}");
    }
    if failed > 0 {
        let first = errors.iter().position(Option::is_some).unwrap_or(0);
        eprintln!(
            "error: grading failed on {failed} row(s) (first: row {first}); see the `error` column of {}",
            output.display()
        );
        return Ok(Outcome::CheckFailed);
    }
    Ok(Outcome::Ok)
}

/// Grades every row on `threads` threads (0 = all cores), in input order.
///
/// A panic inside one row's grading becomes that row's error (the others keep their
/// place); a thread that dies any other way fails the whole command rather than letting
/// later grades slide onto the wrong rows.
fn grade_all<F>(rows: &[Row], threads: usize, grade: F) -> anyhow::Result<Vec<RowGrade>>
where
    F: Fn(&Row) -> Grade + Sync,
{
    let threads = if threads == 0 {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    } else {
        threads
    };
    let chunk = rows.len().div_ceil(threads.max(1)).max(1);
    let grade = &grade;
    std::thread::scope(|s| {
        let handles: Vec<_> = rows
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|r| spotlight::verify::isolate(|| grade(r)))
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for (k, h) in handles.into_iter().enumerate() {
            let part = h.join().map_err(|_| {
                anyhow::anyhow!("grading thread {k} failed outside any row; no output written")
            })?;
            out.extend(part);
        }
        Ok(out)
    })
}

/// One row's verdict, or why grading it failed.
type RowGrade = Result<Grade, String>;

/// The grade written for a row whose grading failed: no answer, not correct, reward 0,
/// every component 0 (the `error` column says why).
fn failed_grade(names: &[String], error: &str) -> Grade {
    Grade {
        extracted: None,
        correct: false,
        reward: 0.0,
        components: names.iter().map(|n| (n.clone(), 0.0)).collect(),
        reason: error.to_string(),
    }
}

/// Input rows plus what is passed through.
struct Table {
    rows: Vec<Row>,
    source: Source,
}

enum Source {
    Json(Vec<Map<String, Value>>),
    Arrow(Vec<RecordBatch>),
}

fn read_jsonl(path: &Path) -> anyhow::Result<Table> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut rows = Vec::new();
    let mut maps = Vec::new();
    for (i, line) in BufReader::new(f).lines().enumerate() {
        let line =
            line.with_context(|| format!("{}: line {}: unreadable", path.display(), i + 1))?;
        if line.trim().is_empty() {
            continue;
        }
        let v: Value = serde_json::from_str(&line)
            .with_context(|| format!("{}: line {}: not JSON", path.display(), i + 1))?;
        let Value::Object(m) = v else {
            bail!("{}: line {}: not a JSON object", path.display(), i + 1)
        };
        let text = |k: &str| -> anyhow::Result<String> {
            match m.get(k) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(Value::Null) | None => {
                    bail!("{}: line {}: missing field `{k}`", path.display(), i + 1)
                }
                Some(other) => Ok(other.to_string()),
            }
        };
        let options = match m.get("options") {
            None | Some(Value::Null) => None,
            Some(Value::Array(a)) => Some(
                a.iter()
                    .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                    .collect(),
            ),
            Some(_) => bail!(
                "{}: line {}: `options` must be a list of strings",
                path.display(),
                i + 1
            ),
        };
        rows.push(Row {
            response: text("response")?,
            truth: text("ground_truth")?,
            options,
        });
        maps.push(m);
    }
    Ok(Table {
        rows,
        source: Source::Json(maps),
    })
}

fn string_column(
    batch: &RecordBatch,
    name: &str,
    path: &Path,
) -> anyhow::Result<Vec<Option<String>>> {
    let col = batch
        .column_by_name(name)
        .with_context(|| format!("{}: no column `{name}`", path.display()))?;
    if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
        return Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect());
    }
    if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
        return Ok((0..a.len())
            .map(|i| a.is_valid(i).then(|| a.value(i).to_string()))
            .collect());
    }
    let fmt = arrow::util::display::ArrayFormatter::try_new(col.as_ref(), &Default::default())
        .with_context(|| {
            format!(
                "{}: column `{name}` cannot be shown as text",
                path.display()
            )
        })?;
    Ok((0..col.len())
        .map(|i| col.is_valid(i).then(|| fmt.value(i).to_string()))
        .collect())
}

fn read_parquet(path: &Path) -> anyhow::Result<Table> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(f)
        .with_context(|| format!("{}: not a parquet file", path.display()))?
        .build()
        .with_context(|| format!("{}: cannot read", path.display()))?;
    let mut rows = Vec::new();
    let mut batches = Vec::new();
    let mut base = 0;
    for batch in reader {
        let batch = batch.with_context(|| format!("{}: bad record batch", path.display()))?;
        let resp = string_column(&batch, "response", path)?;
        let truth = string_column(&batch, "ground_truth", path)?;
        let opts = batch
            .column_by_name("options")
            .and_then(|c| c.as_any().downcast_ref::<ListArray>().cloned());
        for i in 0..batch.num_rows() {
            let options = match &opts {
                Some(l) if l.is_valid(i) => {
                    let v = l.value(i);
                    let strs = v.as_any().downcast_ref::<StringArray>().with_context(|| {
                        format!("{}: `options` must be a list of strings", path.display())
                    })?;
                    Some((0..strs.len()).map(|j| strs.value(j).to_string()).collect())
                }
                _ => None,
            };
            let response = resp[i].clone().with_context(|| {
                format!("{}: row {}: null `response`", path.display(), base + i)
            })?;
            let truth = truth[i].clone().with_context(|| {
                format!("{}: row {}: null `ground_truth`", path.display(), base + i)
            })?;
            rows.push(Row {
                response,
                truth,
                options,
            });
        }
        base += batch.num_rows();
        batches.push(batch);
    }
    Ok(Table {
        rows,
        source: Source::Arrow(batches),
    })
}

fn score_columns(grades: &[Grade], names: &[String]) -> Vec<(String, Vec<f64>)> {
    names
        .iter()
        .enumerate()
        .map(|(k, n)| {
            (
                format!("score_{n}"),
                grades
                    .iter()
                    .map(|g| g.components.get(k).map_or(0.0, |c| c.1))
                    .collect(),
            )
        })
        .collect()
}

/// Pass-through rows as JSON objects (parquet values shown via arrow's JSON-ish types).
fn json_rows(table: &Table) -> anyhow::Result<Vec<Map<String, Value>>> {
    match &table.source {
        Source::Json(m) => Ok(m.clone()),
        Source::Arrow(batches) => {
            let mut out = Vec::new();
            for b in batches {
                let schema = b.schema();
                let cols: Vec<(String, &ArrayRef)> = schema
                    .fields()
                    .iter()
                    .map(|f| f.name().clone())
                    .zip(b.columns())
                    .collect();
                let fmts = cols
                    .iter()
                    .map(|(_, c)| {
                        arrow::util::display::ArrayFormatter::try_new(
                            c.as_ref(),
                            &Default::default(),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                for i in 0..b.num_rows() {
                    let mut m = Map::new();
                    for ((name, col), fmt) in cols.iter().zip(&fmts) {
                        let v = if !col.is_valid(i) {
                            Value::Null
                        } else if let Some(a) = col.as_any().downcast_ref::<StringArray>() {
                            Value::String(a.value(i).to_string())
                        } else if let Some(a) = col.as_any().downcast_ref::<LargeStringArray>() {
                            Value::String(a.value(i).to_string())
                        } else if let Some(a) = col.as_any().downcast_ref::<BooleanArray>() {
                            Value::Bool(a.value(i))
                        } else if let Some(a) = col.as_any().downcast_ref::<Int64Array>() {
                            Value::from(a.value(i))
                        } else if let Some(a) = col.as_any().downcast_ref::<Float64Array>() {
                            Value::from(a.value(i))
                        } else if let Some(l) = col.as_any().downcast_ref::<ListArray>() {
                            let v = l.value(i);
                            match v.as_any().downcast_ref::<StringArray>() {
                                Some(s) => Value::Array(
                                    (0..s.len())
                                        .map(|j| Value::String(s.value(j).to_string()))
                                        .collect(),
                                ),
                                None => Value::String(fmt.value(i).to_string()),
                            }
                        } else {
                            Value::String(fmt.value(i).to_string())
                        };
                        m.insert(name.clone(), v);
                    }
                    out.push(m);
                }
            }
            Ok(out)
        }
    }
}

fn write_jsonl(
    path: &Path,
    table: &Table,
    grades: &[Grade],
    errors: &[Option<String>],
    names: &[String],
) -> anyhow::Result<()> {
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = BufWriter::new(f);
    let scores = score_columns(grades, names);
    for (i, (mut m, g)) in json_rows(table)?.into_iter().zip(grades).enumerate() {
        m.insert(
            "extracted".into(),
            g.extracted.clone().map_or(Value::Null, Value::String),
        );
        m.insert("correct".into(), Value::Bool(g.correct));
        m.insert("reward".into(), Value::from(g.reward));
        for (n, col) in &scores {
            m.insert(n.clone(), Value::from(col[i]));
        }
        m.insert(
            "error".into(),
            errors[i].clone().map_or(Value::Null, Value::String),
        );
        serde_json::to_writer(&mut w, &Value::Object(m))?;
        w.write_all(b"\n")?;
    }
    w.flush()
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Builds one arrow column from JSON values: bool, int, float, string, list of strings,
/// else the JSON text.
fn json_column(values: &[Value]) -> (DataType, ArrayRef) {
    let non_null = || values.iter().filter(|v| !v.is_null());
    if non_null().all(Value::is_boolean) {
        return (
            DataType::Boolean,
            Arc::new(values.iter().map(Value::as_bool).collect::<BooleanArray>()),
        );
    }
    if non_null().all(|v| v.is_i64()) {
        return (
            DataType::Int64,
            Arc::new(values.iter().map(Value::as_i64).collect::<Int64Array>()),
        );
    }
    if non_null().all(Value::is_number) {
        return (
            DataType::Float64,
            Arc::new(values.iter().map(Value::as_f64).collect::<Float64Array>()),
        );
    }
    if non_null().all(|v| v.as_array().is_some_and(|a| a.iter().all(Value::is_string))) {
        let mut b = ListBuilder::new(StringBuilder::new());
        for v in values {
            match v.as_array() {
                Some(a) => {
                    for x in a {
                        b.values().append_option(x.as_str());
                    }
                    b.append(true);
                }
                None => b.append(false),
            }
        }
        let arr = b.finish();
        return (arr.data_type().clone(), Arc::new(arr));
    }
    let strings: StringArray = values
        .iter()
        .map(|v| match v {
            Value::Null => None,
            Value::String(s) => Some(s.clone()),
            other => Some(other.to_string()),
        })
        .collect();
    (DataType::Utf8, Arc::new(strings))
}

fn write_parquet(
    path: &Path,
    table: &Table,
    grades: &[Grade],
    errors: &[Option<String>],
    names: &[String],
) -> anyhow::Result<()> {
    let mut fields: Vec<Field> = Vec::new();
    let mut cols: Vec<ArrayRef> = Vec::new();
    match &table.source {
        Source::Arrow(batches) if !batches.is_empty() => {
            let schema = batches[0].schema();
            let merged = arrow::compute::concat_batches(&schema, batches)
                .context("cannot merge input batches")?;
            for (f, c) in schema.fields().iter().zip(merged.columns()) {
                if !matches!(
                    f.name().as_str(),
                    "extracted" | "correct" | "reward" | "error"
                ) {
                    fields.push(f.as_ref().clone());
                    cols.push(c.clone());
                }
            }
        }
        Source::Json(maps) => {
            let mut keys: Vec<String> = Vec::new();
            for m in maps {
                for k in m.keys() {
                    if !keys.contains(k)
                        && !matches!(k.as_str(), "extracted" | "correct" | "reward" | "error")
                    {
                        keys.push(k.clone());
                    }
                }
            }
            for k in keys {
                let values: Vec<Value> = maps
                    .iter()
                    .map(|m| m.get(&k).cloned().unwrap_or(Value::Null))
                    .collect();
                let (dt, col) = json_column(&values);
                fields.push(Field::new(k, dt, true));
                cols.push(col);
            }
        }
        Source::Arrow(_) => {}
    }
    fields.push(Field::new("extracted", DataType::Utf8, true));
    cols.push(Arc::new(
        grades
            .iter()
            .map(|g| g.extracted.clone())
            .collect::<StringArray>(),
    ));
    fields.push(Field::new("correct", DataType::Boolean, false));
    cols.push(Arc::new(
        grades
            .iter()
            .map(|g| Some(g.correct))
            .collect::<BooleanArray>(),
    ));
    fields.push(Field::new("reward", DataType::Float64, false));
    cols.push(Arc::new(Float64Array::from(
        grades.iter().map(|g| g.reward).collect::<Vec<_>>(),
    )));
    for (n, col) in score_columns(grades, names) {
        fields.push(Field::new(n, DataType::Float64, false));
        cols.push(Arc::new(Float64Array::from(col)));
    }
    fields.push(Field::new("error", DataType::Utf8, true));
    cols.push(Arc::new(errors.iter().cloned().collect::<StringArray>()));
    let schema = Arc::new(Schema::new(fields));
    let batch =
        RecordBatch::try_new(schema.clone(), cols).context("cannot assemble output columns")?;
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    let mut w = ArrowWriter::try_new(f, schema, None)
        .with_context(|| format!("cannot write {}", path.display()))?;
    w.write(&batch)
        .with_context(|| format!("cannot write {}", path.display()))?;
    w.close()
        .with_context(|| format!("cannot finish {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: usize) -> Row {
        Row {
            response: format!("\\boxed{{{i}}}"),
            truth: i.to_string(),
            options: None,
        }
    }

    fn grade_of(r: &Row) -> Grade {
        if r.truth == "5" {
            panic!("odd input on row 5");
        }
        Grade {
            extracted: Some(r.truth.clone()),
            correct: true,
            reward: 1.0,
            components: vec![],
            reason: String::new(),
        }
    }

    #[test]
    fn a_panicking_grading_chunk_never_shifts_rows() {
        let rows: Vec<Row> = (0..23).map(row).collect();
        for threads in [1, 2, 4, 23] {
            let out = grade_all(&rows, threads, grade_of).unwrap();
            assert_eq!(out.len(), rows.len(), "threads={threads}");
            for (i, g) in out.iter().enumerate() {
                match g {
                    Ok(g) => assert_eq!(g.extracted.as_deref(), Some(i.to_string().as_str())),
                    Err(e) => {
                        assert_eq!(i, 5, "threads={threads}: only row 5 fails");
                        assert!(e.contains("odd input on row 5"), "{e}");
                    }
                }
            }
            assert!(out[5].is_err());
        }
    }
}
