//! Reading benchmark files into [`Item`]s: parquet (streamed record batches) and the
//! LLaMA-Factory "sharegpt" JSON the authors' evaluation tool reads.
//!
//! The schema is the contract, not one writer's layout: columns are found by name (any
//! order, extra columns ignored), strings may be `string`, `large_string`, `string_view` or
//! dictionary-encoded, binaries `binary`/`large_binary`/`binary_view`, lists `list` or
//! `large_list`, and files may have any number of row groups or shards.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch, StructArray};
use arrow::datatypes::DataType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::item::{ImageRef, Item};
use super::manifest::{FilterRule, Manifest, OptionsEncoding};
use super::options::{parse_python_list, parse_semicolon_options};
use super::BenchError;

/// Rows per record batch: large enough to amortise per-batch work, small enough that a
/// batch of image rows stays a few MB.
const BATCH_ROWS: usize = 256;

/// A row that could not become an item; `validate` lists all of them.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RowProblem {
    pub file: PathBuf,
    pub row: usize,
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for RowProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: row {}: field `{}`: {}",
            self.file.display(),
            self.row,
            self.field,
            self.message
        )
    }
}

/// The result of reading one benchmark's files.
#[derive(Debug, Default)]
pub struct Loaded {
    pub items: Vec<Item>,
    /// Rows that could not be read (a check failure, not an I/O error).
    pub bad_rows: Vec<RowProblem>,
    /// Legitimate oddities of real data: image structs whose bytes are null and whose path
    /// does not resolve, files with zero rows.
    pub warnings: Vec<String>,
    /// Rows dropped by the manifest's filter.
    pub filtered_out: usize,
    pub files: Vec<PathBuf>,
    /// Total size of the files read, for throughput numbers.
    pub bytes_read: u64,
}

impl Loaded {
    /// Adds `item` if the manifest's filter keeps it, else counts it as filtered out.
    fn keep_if(&mut self, filter: &CompiledFilter, item: Item) {
        if filter.keeps(&item) {
            self.items.push(item);
        } else {
            self.filtered_out += 1;
        }
    }
}

/// Reads every file of a benchmark. File-level problems (unreadable or corrupt file, a
/// missing column, a column of the wrong type) are errors naming the file and field;
/// row-level problems are collected in [`Loaded::bad_rows`].
pub fn load_files(manifest: &Manifest, files: &[PathBuf]) -> Result<Loaded, BenchError> {
    let mut loaded = Loaded {
        files: files.to_vec(),
        ..Loaded::default()
    };
    let filter = CompiledFilter::new(&manifest.filter);
    let mut seen_ids = HashSet::new();
    for file in files {
        loaded.bytes_read += std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        let before = loaded.items.len() + loaded.bad_rows.len() + loaded.filtered_out;
        // Without an id column the id is the row's index across all shards, in order.
        let id_offset = before;
        let is_json = matches!(
            file.extension().and_then(|e| e.to_str()),
            Some("json") | Some("jsonl")
        );
        if is_json {
            read_sharegpt(manifest, file, id_offset, &filter, &mut loaded)?;
        } else {
            read_parquet(manifest, file, id_offset, &filter, &mut loaded)?;
        }
        if loaded.items.len() + loaded.bad_rows.len() + loaded.filtered_out == before {
            loaded
                .warnings
                .push(format!("{}: the file has zero rows", file.display()));
        }
    }
    // Results are grouped by item id, so ids must be unique across shards: the first row
    // with an id is kept, later ones are bad rows.
    let mut duplicates = Vec::new();
    loaded.items.retain(|item| {
        if seen_ids.insert(item.id.clone()) {
            return true;
        }
        duplicates.push(RowProblem {
            file: item.source_file.clone(),
            row: item.row,
            field: manifest.columns.id.clone().unwrap_or_else(|| "id".into()),
            message: format!("duplicate item id {:?}", item.id),
        });
        false
    });
    loaded.bad_rows.extend(duplicates);
    Ok(loaded)
}

fn read_parquet(
    manifest: &Manifest,
    file: &Path,
    id_offset: usize,
    filter: &CompiledFilter,
    loaded: &mut Loaded,
) -> Result<(), BenchError> {
    let corrupt = |message: String| BenchError::Parquet {
        path: file.to_path_buf(),
        message,
    };
    let handle = File::open(file).map_err(|source| BenchError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(handle)
        .map_err(|e| corrupt(format!("not a readable parquet file: {e}")))?;
    let schema = builder.schema().clone();
    let reader = builder
        .with_batch_size(BATCH_ROWS)
        .build()
        .map_err(|e| corrupt(e.to_string()))?;
    let plan = ColumnPlan::new(manifest, file, id_offset, &schema)?;
    let mut row_base = 0usize;
    for batch in reader {
        let batch = batch.map_err(|e| {
            corrupt(format!(
                "cannot decode the record batch starting at row {row_base}: {e}"
            ))
        })?;
        plan.read_batch(&batch, row_base, filter, loaded)?;
        row_base += batch.num_rows();
    }
    Ok(())
}

/// The resolved column mapping of one file: checked once against its schema, so a missing
/// column or a wrong type is reported once, naming the file and column.
struct ColumnPlan<'m> {
    manifest: &'m Manifest,
    file: PathBuf,
    dataset_dir: PathBuf,
    /// Added to the row index when the id is the row (ids are global across shards).
    id_offset: usize,
}

impl<'m> ColumnPlan<'m> {
    fn new(
        manifest: &'m Manifest,
        file: &Path,
        id_offset: usize,
        schema: &arrow::datatypes::Schema,
    ) -> Result<Self, BenchError> {
        let cols = &manifest.columns;
        let mut required: Vec<(&str, Expect)> = vec![
            (cols.question.as_str(), Expect::Text),
            (cols.answer.as_str(), Expect::Text),
        ];
        if let Some(id) = &cols.id {
            required.push((id.as_str(), Expect::Scalar));
        }
        if let Some(qt) = &cols.question_type {
            required.push((qt.as_str(), Expect::Text));
        }
        if let Some(options) = &cols.options {
            let expect = match manifest.options.encoding {
                OptionsEncoding::List => Expect::TextList,
                _ => Expect::Text,
            };
            required.push((options.as_str(), expect));
        }
        for image in &cols.images {
            required.push((image.as_str(), Expect::Image));
        }
        for column in cols.fields.values() {
            required.push((column.as_str(), Expect::Field));
        }
        for (column, expect) in required {
            let data_type = field_type(schema, column).ok_or_else(|| BenchError::Column {
                path: file.to_path_buf(),
                column: column.to_string(),
                message: format!(
                    "missing column (the file has: {})",
                    schema
                        .fields()
                        .iter()
                        .map(|f| f.name().as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })?;
            if !expect.accepts(&data_type) {
                return Err(BenchError::Column {
                    path: file.to_path_buf(),
                    column: column.to_string(),
                    message: format!("expected {}, found {data_type}", expect.describe()),
                });
            }
        }
        Ok(ColumnPlan {
            manifest,
            file: file.to_path_buf(),
            id_offset,
            dataset_dir: file.parent().map(Path::to_path_buf).unwrap_or_default(),
        })
    }

    fn read_batch(
        &self,
        batch: &RecordBatch,
        row_base: usize,
        filter: &CompiledFilter,
        loaded: &mut Loaded,
    ) -> Result<(), BenchError> {
        let (manifest, file, id_offset) = (self.manifest, self.file.as_path(), self.id_offset);
        let cols = &manifest.columns;
        let get = |name: &str| -> Result<ArrayRef, BenchError> {
            column_of(batch, name).ok_or_else(|| BenchError::Column {
                path: file.to_path_buf(),
                column: name.to_string(),
                message: "missing column in a record batch".into(),
            })
        };
        let question = get(&cols.question)?;
        let answer = get(&cols.answer)?;
        let id = cols.id.as_deref().map(get).transpose()?;
        let question_type = cols.question_type.as_deref().map(get).transpose()?;
        let options = cols.options.as_deref().map(get).transpose()?;
        let images: Vec<(String, ArrayRef)> = cols
            .images
            .iter()
            .map(|c| Ok((c.clone(), get(c)?)))
            .collect::<Result<_, BenchError>>()?;
        let fields: Vec<(String, String, ArrayRef)> = cols
            .fields
            .iter()
            .map(|(k, c)| Ok((k.clone(), c.clone(), get(c)?)))
            .collect::<Result<_, BenchError>>()?;

        for i in 0..batch.num_rows() {
            let row = row_base + i;
            let problem = |field: &str, message: String| RowProblem {
                file: file.to_path_buf(),
                row,
                field: field.to_string(),
                message,
            };
            let question_text = match text_at(&question, i) {
                Some(q) => q,
                None => {
                    loaded
                        .bad_rows
                        .push(problem(&cols.question, "question is null".into()));
                    continue;
                }
            };
            let answer_text = match text_at(&answer, i) {
                Some(a) if !a.trim().is_empty() => a,
                Some(_) => {
                    loaded
                        .bad_rows
                        .push(problem(&cols.answer, "answer is empty".into()));
                    continue;
                }
                None => {
                    loaded
                        .bad_rows
                        .push(problem(&cols.answer, "answer is null".into()));
                    continue;
                }
            };
            let item_id = match &id {
                Some(array) => match text_at(array, i) {
                    Some(v) if !v.is_empty() => v,
                    _ => {
                        loaded.bad_rows.push(problem(
                            cols.id.as_deref().unwrap_or("id"),
                            "id is null or empty".into(),
                        ));
                        continue;
                    }
                },
                None => (id_offset + row).to_string(),
            };
            let option_list = match (&options, manifest.options.encoding) {
                (Some(array), OptionsEncoding::List) => text_list_at(array, i),
                (Some(array), OptionsEncoding::Semicolon) => text_at(array, i)
                    .map(|s| parse_semicolon_options(&s))
                    .unwrap_or_default(),
                (Some(array), OptionsEncoding::PythonRepr) => match text_at(array, i) {
                    Some(s) => match parse_python_list(&s) {
                        Ok(list) => list,
                        Err(message) => {
                            loaded.bad_rows.push(problem(
                                cols.options.as_deref().unwrap_or("options"),
                                format!("options are not a Python list literal: {message}"),
                            ));
                            continue;
                        }
                    },
                    None => Vec::new(),
                },
                _ => Vec::new(),
            };
            let mut item_images = Vec::new();
            for (column, array) in &images {
                for image in images_at(array, i) {
                    item_images.push(self.resolve_image(image, file, row, column, loaded));
                }
            }
            let mut item_fields = BTreeMap::new();
            for (name, _column, array) in &fields {
                if let Some(value) = field_text_at(array, i) {
                    item_fields.insert(name.clone(), value);
                }
            }
            let item = Item {
                benchmark: manifest.slug.clone(),
                id: item_id,
                source_file: file.to_path_buf(),
                row,
                question: question_text,
                options: option_list,
                answer: answer_text.trim().to_string(),
                question_type: question_type.as_ref().and_then(|a| text_at(a, i)),
                images: item_images,
                fields: item_fields,
                prebaked_prompt: false,
            };
            loaded.keep_if(filter, item);
        }
        Ok(())
    }

    /// Bytes present: kept as they are. Bytes null: the path is tried against the dataset
    /// folder and its parent; a path that does not resolve is a warning (real samples have
    /// such rows).
    fn resolve_image(
        &self,
        image: RawImage,
        file: &Path,
        row: usize,
        column: &str,
        loaded: &mut Loaded,
    ) -> ImageRef {
        if let Some(bytes) = image.bytes {
            return ImageRef {
                path: image.path,
                bytes: Some(bytes),
            };
        }
        let Some(path) = image.path else {
            return ImageRef {
                path: None,
                bytes: None,
            };
        };
        match resolve_image_path(&self.dataset_dir, &path) {
            Some(bytes) => ImageRef {
                path: Some(path),
                bytes: Some(bytes),
            },
            None => {
                loaded.warnings.push(format!(
                    "{}: row {row}: field `{column}`: image bytes are null and path {path:?} does not resolve",
                    file.display()
                ));
                ImageRef {
                    path: Some(path),
                    bytes: None,
                }
            }
        }
    }
}

fn resolve_image_path(dataset_dir: &Path, path: &str) -> Option<Arc<[u8]>> {
    let candidates = [
        Some(dataset_dir.join(path)),
        dataset_dir.parent().map(|p| p.join(path)),
        Some(PathBuf::from(path)),
    ];
    candidates
        .into_iter()
        .flatten()
        .find(|p| p.is_file())
        .and_then(|p| std::fs::read(p).ok())
        .map(Arc::from)
}

/// What a mapped column must hold.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Text,
    Scalar,
    TextList,
    Image,
    Field,
}

impl Expect {
    fn accepts(self, dt: &DataType) -> bool {
        match self {
            Expect::Text => is_text(dt),
            Expect::Scalar => is_text(dt) || dt.is_integer(),
            Expect::TextList => match dt {
                DataType::List(f) | DataType::LargeList(f) => is_text(f.data_type()),
                _ => is_text(dt),
            },
            Expect::Image => {
                is_image_struct(dt)
                    || is_text(dt)
                    || match dt {
                        DataType::List(f) | DataType::LargeList(f) => {
                            is_image_struct(f.data_type())
                        }
                        _ => false,
                    }
            }
            Expect::Field => {
                is_text(dt)
                    || dt.is_numeric()
                    || matches!(dt, DataType::Boolean)
                    || matches!(dt, DataType::List(f) | DataType::LargeList(f) if is_text(f.data_type()))
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Expect::Text => "a string column",
            Expect::Scalar => "a string or integer column",
            Expect::TextList => "a list<string> column",
            Expect::Image => "an Image struct<bytes, path>, a list of them, or a path string",
            Expect::Field => "a string, number, boolean or list<string> column",
        }
    }
}

fn is_text(dt: &DataType) -> bool {
    match dt {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, value) => is_text(value),
        _ => false,
    }
}

fn is_binary(dt: &DataType) -> bool {
    match dt {
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => true,
        DataType::Dictionary(_, value) => is_binary(value),
        _ => false,
    }
}

fn is_image_struct(dt: &DataType) -> bool {
    match dt {
        DataType::Struct(fields) => fields
            .iter()
            .any(|f| f.name() == "bytes" && is_binary(f.data_type())),
        _ => false,
    }
}

/// The data type of a (possibly dotted) column path.
fn field_type(schema: &arrow::datatypes::Schema, path: &str) -> Option<DataType> {
    if let Ok(field) = schema.field_with_name(path) {
        return Some(field.data_type().clone());
    }
    let mut parts = path.split('.');
    let first = parts.next()?;
    let mut dt = schema.field_with_name(first).ok()?.data_type().clone();
    for part in parts {
        dt = match dt {
            DataType::Struct(fields) => fields
                .iter()
                .find(|f| f.name() == part)?
                .data_type()
                .clone(),
            _ => return None,
        };
    }
    Some(dt)
}

/// A (possibly dotted) column of a batch, dictionary-decoded.
fn column_of(batch: &RecordBatch, path: &str) -> Option<ArrayRef> {
    let array = match batch.column_by_name(path) {
        Some(a) => a.clone(),
        None => {
            let mut parts = path.split('.');
            let mut array = batch.column_by_name(parts.next()?)?.clone();
            for part in parts {
                let strukt = array.as_struct_opt()?;
                array = strukt.column_by_name(part)?.clone();
            }
            array
        }
    };
    Some(undictionary(array))
}

fn undictionary(array: ArrayRef) -> ArrayRef {
    match array.data_type() {
        DataType::Dictionary(_, value) => {
            let value = (**value).clone();
            arrow::compute::cast(&array, &value).unwrap_or(array)
        }
        _ => array,
    }
}

/// The string at `i` of a string-like (or integer) array; `None` when null.
pub(crate) fn text_at(array: &ArrayRef, i: usize) -> Option<String> {
    if array.is_null(i) {
        return None;
    }
    match array.data_type() {
        DataType::Utf8 => Some(array.as_string::<i32>().value(i).to_string()),
        DataType::LargeUtf8 => Some(array.as_string::<i64>().value(i).to_string()),
        DataType::Utf8View => Some(array.as_string_view().value(i).to_string()),
        DataType::Dictionary(_, _) => text_at(&undictionary(array.clone()), i),
        _ => scalar_text(array, i),
    }
}

/// Numbers and booleans as text (ids stored as int64, `level` in MathVision).
fn scalar_text(array: &ArrayRef, i: usize) -> Option<String> {
    let as_utf8 = arrow::compute::cast(&array.slice(i, 1), &DataType::Utf8).ok()?;
    let s = as_utf8.as_string_opt::<i32>()?;
    (!s.is_null(0)).then(|| s.value(0).to_string())
}

fn text_list_at(array: &ArrayRef, i: usize) -> Vec<String> {
    if array.is_null(i) {
        return Vec::new();
    }
    let values = match array.data_type() {
        DataType::List(_) => array.as_list::<i32>().value(i),
        DataType::LargeList(_) => array.as_list::<i64>().value(i),
        _ => return text_at(array, i).into_iter().collect(),
    };
    let values = undictionary(values);
    (0..values.len())
        .filter_map(|j| text_at(&values, j))
        .collect()
}

/// A breakdown field as text; lists (LogicVista's `skill`) are joined with ", ".
fn field_text_at(array: &ArrayRef, i: usize) -> Option<String> {
    match array.data_type() {
        DataType::List(_) | DataType::LargeList(_) => {
            if array.is_null(i) {
                return None;
            }
            Some(text_list_at(array, i).join(", "))
        }
        _ => text_at(array, i),
    }
}

/// An image as stored: bytes and/or path.
struct RawImage {
    bytes: Option<Arc<[u8]>>,
    path: Option<String>,
}

fn images_at(array: &ArrayRef, i: usize) -> Vec<RawImage> {
    if array.is_null(i) {
        return Vec::new();
    }
    match array.data_type() {
        DataType::Struct(_) => image_struct_at(array.as_struct(), i).into_iter().collect(),
        DataType::List(_) | DataType::LargeList(_) => {
            let values = if matches!(array.data_type(), DataType::List(_)) {
                array.as_list::<i32>().value(i)
            } else {
                array.as_list::<i64>().value(i)
            };
            let strukt = values.as_struct();
            (0..strukt.len())
                .filter_map(|j| image_struct_at(strukt, j))
                .collect()
        }
        _ => text_at(array, i)
            .map(|path| RawImage {
                bytes: None,
                path: Some(path),
            })
            .into_iter()
            .collect(),
    }
}

fn image_struct_at(strukt: &StructArray, i: usize) -> Option<RawImage> {
    if strukt.is_null(i) {
        return None;
    }
    let bytes = strukt
        .column_by_name("bytes")
        .map(|a| undictionary(a.clone()))
        .and_then(|a| binary_at(&a, i));
    let path = strukt
        .column_by_name("path")
        .map(|a| undictionary(a.clone()))
        .and_then(|a| text_at(&a, i));
    if bytes.is_none() && path.is_none() {
        return None;
    }
    Some(RawImage { bytes, path })
}

fn binary_at(array: &ArrayRef, i: usize) -> Option<Arc<[u8]>> {
    if array.is_null(i) {
        return None;
    }
    let slice: &[u8] = match array.data_type() {
        DataType::Binary => array.as_binary::<i32>().value(i),
        DataType::LargeBinary => array.as_binary::<i64>().value(i),
        DataType::BinaryView => array.as_binary_view().value(i),
        _ => return None,
    };
    Some(Arc::from(slice))
}

/// The manifest's filter with regexes compiled once.
struct CompiledFilter {
    rules: Vec<(FilterRule, Option<regex::Regex>)>,
}

impl CompiledFilter {
    fn new(rules: &[FilterRule]) -> Self {
        CompiledFilter {
            rules: rules
                .iter()
                .map(|r| {
                    let re = r.matches.as_deref().and_then(|p| regex::Regex::new(p).ok());
                    (r.clone(), re)
                })
                .collect(),
        }
    }

    fn keeps(&self, item: &Item) -> bool {
        self.rules.iter().all(|(rule, re)| {
            let value = item.field(&rule.field).unwrap_or("");
            if let Some(v) = &rule.equals {
                return value == v;
            }
            if let Some(v) = &rule.not_equals {
                return value != v;
            }
            if let Some(list) = &rule.one_of {
                return list.iter().any(|v| v == value);
            }
            if let Some(list) = &rule.none_of {
                return !list.iter().any(|v| v == value);
            }
            match re {
                Some(re) => re.is_match(value),
                None => true,
            }
        })
    }
}

/// LLaMA-Factory "sharegpt" JSON (a list of objects, or JSON lines): `messages` (or
/// `conversations` with `from`/`value`) holding the pre-baked user prompt and the ground
/// truth as the assistant turn, `images` a list of paths relative to the file's folder (or
/// its parent, as in PAPO-Eval's `data/`).
fn read_sharegpt(
    manifest: &Manifest,
    file: &Path,
    id_offset: usize,
    filter: &CompiledFilter,
    loaded: &mut Loaded,
) -> Result<(), BenchError> {
    let text = std::fs::read_to_string(file).map_err(|source| BenchError::Io {
        path: file.to_path_buf(),
        source,
    })?;
    let rows: Vec<serde_json::Value> = if text.trim_start().starts_with('[') {
        serde_json::from_str(&text).map_err(|e| BenchError::Parquet {
            path: file.to_path_buf(),
            message: format!("not a JSON list of conversations: {e}"),
        })?
    } else {
        let mut rows = Vec::new();
        for (n, line) in text
            .lines()
            .enumerate()
            .filter(|(_, l)| !l.trim().is_empty())
        {
            rows.push(serde_json::from_str(line).map_err(|e| BenchError::Parquet {
                path: file.to_path_buf(),
                message: format!("line {}: not JSON: {e}", n + 1),
            })?);
        }
        rows
    };
    let dataset_dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    for (row, value) in rows.iter().enumerate() {
        let problem = |field: &str, message: &str| RowProblem {
            file: file.to_path_buf(),
            row,
            field: field.to_string(),
            message: message.to_string(),
        };
        let turns = value
            .get("messages")
            .or_else(|| value.get("conversations"))
            .and_then(|m| m.as_array());
        let Some(turns) = turns else {
            loaded
                .bad_rows
                .push(problem("messages", "missing `messages` list"));
            continue;
        };
        let turn = |role: &str| {
            turns.iter().find_map(|t| {
                let r = t.get("role").or_else(|| t.get("from"))?.as_str()?;
                let matches_role = r == role
                    || (role == "user" && r == "human")
                    || (role == "assistant" && r == "gpt");
                if matches_role {
                    t.get("content").or_else(|| t.get("value"))?.as_str()
                } else {
                    None
                }
            })
        };
        let Some(prompt) = turn("user") else {
            loaded
                .bad_rows
                .push(problem("messages", "no user turn (the prompt)"));
            continue;
        };
        let answer = match turn("assistant") {
            Some(a) if !a.trim().is_empty() => a,
            _ => {
                loaded.bad_rows.push(problem(
                    "messages",
                    "no assistant turn (the ground truth) or it is empty",
                ));
                continue;
            }
        };
        let mut images = Vec::new();
        for path in value
            .get("images")
            .and_then(|v| v.as_array())
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str())
        {
            let bytes = resolve_image_path(&dataset_dir, path);
            if bytes.is_none() {
                loaded.warnings.push(format!(
                    "{}: row {row}: field `images`: path {path:?} does not resolve",
                    file.display()
                ));
            }
            images.push(ImageRef {
                path: Some(path.to_string()),
                bytes,
            });
        }
        let id = value
            .get("id")
            .map(|v| match v {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .unwrap_or_else(|| (id_offset + row).to_string());
        let item = Item {
            benchmark: manifest.slug.clone(),
            id,
            source_file: file.to_path_buf(),
            row,
            question: prompt.to_string(),
            options: Vec::new(),
            answer: answer.trim().to_string(),
            question_type: None,
            images,
            fields: BTreeMap::new(),
            prebaked_prompt: true,
        };
        loaded.keep_if(filter, item);
    }
    Ok(())
}
