//! Building arrow columns in the Hugging Face `datasets` conventions and writing them as
//! parquet with the `huggingface` schema metadata, so `datasets` decodes image columns as
//! `Image` exactly as it does for the real files.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryArray, Int64Array, ListArray, RecordBatch, StringArray, StructArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field, Fields, Schema};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use serde_json::{json, Value};

use super::SynthError;

/// An encoded image as stored in an HF Image struct: bytes (may be null) and path.
#[derive(Debug, Clone, Default)]
pub struct ImageCell {
    pub bytes: Option<Vec<u8>>,
    pub path: Option<String>,
}

/// Columns in order, each with its HF feature description.
#[derive(Default)]
pub struct Table {
    columns: Vec<(String, ArrayRef, Value)>,
}

fn value_feature(dtype: &str) -> Value {
    json!({"dtype": dtype, "_type": "Value"})
}

fn image_fields() -> Fields {
    Fields::from(vec![
        Field::new("bytes", DataType::Binary, true),
        Field::new("path", DataType::Utf8, true),
    ])
}

/// A struct<bytes: binary, path: string> array; `None` rows are null structs.
pub fn image_array(cells: &[Option<ImageCell>]) -> StructArray {
    let bytes: BinaryArray = cells
        .iter()
        .map(|c| c.as_ref().and_then(|c| c.bytes.as_deref()))
        .collect();
    let paths: StringArray = cells
        .iter()
        .map(|c| c.as_ref().and_then(|c| c.path.as_deref()))
        .collect();
    let nulls = NullBuffer::from(cells.iter().map(Option::is_some).collect::<Vec<_>>());
    StructArray::new(
        image_fields(),
        vec![Arc::new(bytes) as ArrayRef, Arc::new(paths) as ArrayRef],
        Some(nulls),
    )
}

fn list_of(values: ArrayRef, lengths: &[usize]) -> ListArray {
    let field = Arc::new(Field::new("element", values.data_type().clone(), true));
    ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths.iter().copied()),
        values,
        None,
    )
}

impl Table {
    pub fn new() -> Self {
        Table::default()
    }

    pub fn string(mut self, name: &str, values: Vec<Option<String>>) -> Self {
        let array: StringArray = values.into_iter().collect();
        self.columns
            .push((name.into(), Arc::new(array), value_feature("string")));
        self
    }

    pub fn int64(mut self, name: &str, values: Vec<i64>) -> Self {
        self.columns.push((
            name.into(),
            Arc::new(Int64Array::from(values)),
            value_feature("int64"),
        ));
        self
    }

    pub fn image(mut self, name: &str, cells: Vec<Option<ImageCell>>) -> Self {
        self.columns.push((
            name.into(),
            Arc::new(image_array(&cells)),
            json!({"_type": "Image"}),
        ));
        self
    }

    pub fn image_list(mut self, name: &str, rows: Vec<Vec<ImageCell>>) -> Self {
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        let flat: Vec<Option<ImageCell>> = rows.into_iter().flatten().map(Some).collect();
        let list = list_of(Arc::new(image_array(&flat)), &lengths);
        self.columns.push((
            name.into(),
            Arc::new(list),
            json!({"feature": {"_type": "Image"}, "_type": "Sequence"}),
        ));
        self
    }

    pub fn string_list(mut self, name: &str, rows: Vec<Vec<String>>) -> Self {
        let lengths: Vec<usize> = rows.iter().map(Vec::len).collect();
        let flat: StringArray = rows.into_iter().flatten().map(Some).collect();
        let list = list_of(Arc::new(flat), &lengths);
        self.columns.push((
            name.into(),
            Arc::new(list),
            json!({"feature": value_feature("string"), "_type": "Sequence"}),
        ));
        self
    }

    /// A struct of string fields (MathVerse's `metadata`).
    pub fn string_struct(mut self, name: &str, fields: Vec<(&str, Vec<Option<String>>)>) -> Self {
        let mut arrow_fields = Vec::new();
        let mut arrays: Vec<ArrayRef> = Vec::new();
        let mut feature = serde_json::Map::new();
        for (field, values) in fields {
            arrow_fields.push(Field::new(field, DataType::Utf8, true));
            arrays.push(Arc::new(values.into_iter().collect::<StringArray>()));
            feature.insert(field.to_string(), value_feature("string"));
        }
        let array = StructArray::new(Fields::from(arrow_fields), arrays, None);
        self.columns
            .push((name.into(), Arc::new(array), Value::Object(feature)));
        self
    }

    /// The record batch with the `huggingface` features metadata.
    pub fn into_batch(self) -> Result<RecordBatch, SynthError> {
        let mut features = serde_json::Map::new();
        let mut fields = Vec::new();
        let mut arrays = Vec::new();
        for (name, array, feature) in self.columns {
            fields.push(Field::new(&name, array.data_type().clone(), true));
            features.insert(name, feature);
            arrays.push(array);
        }
        let metadata = HashMap::from([(
            "huggingface".to_string(),
            json!({"info": {"features": Value::Object(features)}}).to_string(),
        )]);
        let schema = Arc::new(Schema::new_with_metadata(fields, metadata));
        RecordBatch::try_new(schema, arrays).map_err(|e| SynthError::Arrow(e.to_string()))
    }
}

/// Writes `batch` as parquet (snappy, as `datasets` writes), atomically.
pub fn write_parquet(
    path: &Path,
    batch: &RecordBatch,
    row_group_rows: usize,
) -> Result<(), SynthError> {
    let props = WriterProperties::builder()
        .set_compression(Compression::SNAPPY)
        .set_max_row_group_row_count(Some(row_group_rows.max(1)))
        .build();
    crate::atomic_file::write_atomic(path, |file| {
        let mut writer = ArrowWriter::try_new(file, batch.schema(), Some(props))
            .map_err(|e| SynthError::Arrow(e.to_string()))?;
        writer
            .write(batch)
            .map_err(|e| SynthError::Arrow(e.to_string()))?;
        writer
            .close()
            .map_err(|e| SynthError::Arrow(e.to_string()))?;
        Ok(())
    })
    .map_err(|e: SynthError| match e {
        SynthError::Io { source, .. } => SynthError::Io {
            path: path.to_path_buf(),
            source,
        },
        other => other,
    })
}

/// Column count of a batch by name (used by tests).
pub fn has_column(batch: &RecordBatch, name: &str) -> bool {
    batch.schema().column_with_name(name).is_some()
        && batch
            .column_by_name(name)
            .is_some_and(|c| c.len() == batch.num_rows())
}
