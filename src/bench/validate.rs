//! `bench validate`: every row parses, the answer is non-empty, every image decodes.
//! Reports every bad row instead of stopping at the first.

use std::collections::BTreeMap;

use serde::Serialize;

use super::ingest::RowProblem;
use super::{DataSource, Manifest, Registry};

/// The result of validating one benchmark.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    pub benchmark: String,
    pub name: String,
    pub files: Vec<String>,
    /// Rows read (items + bad rows + rows the filter dropped).
    pub rows: usize,
    /// Items that passed every check.
    pub ok: usize,
    pub filtered_out: usize,
    pub images: usize,
    /// Rows without any image (legitimate: MathVerse's Text Only version).
    pub text_only: usize,
    pub answer_kinds: BTreeMap<String, usize>,
    pub errors: Vec<RowProblem>,
    pub warnings: Vec<String>,
    /// A file-level failure (unreadable file, missing column): nothing could be checked.
    pub fatal: Option<String>,
}

impl Validation {
    pub fn passed(&self) -> bool {
        self.fatal.is_none() && self.errors.is_empty()
    }
}

/// Rough shape of a ground truth, for `bench list` and summaries.
pub fn answer_kind(answer: &str) -> &'static str {
    let a = answer.trim();
    let letters = a
        .split(',')
        .map(str::trim)
        .all(|p| p.len() == 1 && p.chars().all(|c| c.is_ascii_uppercase()));
    if letters {
        return if a.contains(',') { "letters" } else { "letter" };
    }
    if a.parse::<i64>().is_ok() {
        return "integer";
    }
    if a.parse::<f64>().is_ok() {
        return "decimal";
    }
    if a.contains('\\') || a.contains('^') || a.contains('/') {
        return "expression";
    }
    "text"
}

/// Validates one benchmark from `source`; with `decode_images` every image is decoded.
pub fn validate(
    registry: &Registry,
    manifest: &Manifest,
    source: &DataSource,
    decode_images: bool,
) -> Validation {
    let mut v = Validation {
        benchmark: manifest.slug.clone(),
        name: manifest.name.clone(),
        files: Vec::new(),
        rows: 0,
        ok: 0,
        filtered_out: 0,
        images: 0,
        text_only: 0,
        answer_kinds: BTreeMap::new(),
        errors: Vec::new(),
        warnings: Vec::new(),
        fatal: None,
    };
    let loaded = match registry.load_benchmark(manifest, source) {
        Ok(l) => l,
        Err(e) => {
            v.fatal = Some(e.to_string());
            return v;
        }
    };
    v.files = loaded
        .files
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    v.filtered_out = loaded.filtered_out;
    v.warnings = loaded.warnings;
    v.errors = loaded.bad_rows;
    v.rows = loaded.items.len() + v.errors.len() + v.filtered_out;
    for item in &loaded.items {
        let images = item.image_count();
        v.images += images;
        if item.images.is_empty() {
            v.text_only += 1;
        }
        *v.answer_kinds
            .entry(answer_kind(&item.answer).into())
            .or_default() += 1;
        if decode_images {
            if let Err(e) = item.check_images() {
                if let super::BenchError::Image {
                    path,
                    row,
                    field,
                    message,
                } = e
                {
                    v.errors.push(RowProblem {
                        file: path,
                        row,
                        field,
                        message,
                    });
                }
                continue;
            }
        }
        v.ok += 1;
    }
    v
}

#[cfg(test)]
mod tests {
    use super::answer_kind;

    #[test]
    fn answer_kinds_cover_the_benchmarks_formats() {
        assert_eq!(answer_kind("A"), "letter");
        assert_eq!(answer_kind("B, D"), "letters");
        assert_eq!(answer_kind("15"), "integer");
        assert_eq!(answer_kind("2.0944"), "decimal");
        assert_eq!(answer_kind("2\\sqrt{3}"), "expression");
        assert_eq!(answer_kind("May"), "text");
    }
}
