//! The one item type every benchmark becomes, whatever its schema.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use serde::Serialize;

use super::BenchError;

/// One benchmark question with everything needed to prompt a model and grade it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Item {
    /// Benchmark slug ("mathverse").
    pub benchmark: String,
    /// Unique within the benchmark (results are grouped by it).
    pub id: String,
    /// The file and 0-based row it came from, for messages.
    pub source_file: PathBuf,
    pub row: usize,
    /// Question text as stored (placeholders included).
    pub question: String,
    /// Option texts without letters (empty when there are none, or they are in the text).
    pub options: Vec<String>,
    /// Ground truth as the grader sees it (a letter for multiple choice).
    pub answer: String,
    pub question_type: Option<String>,
    /// Images, still encoded.
    pub images: Vec<ImageRef>,
    /// Extra fields named by the manifest (breakdown categories, metadata).
    pub fields: BTreeMap<String, String>,
    /// For conversation-style files the prompt is pre-baked: use it verbatim.
    pub prebaked_prompt: bool,
}

/// An image kept encoded until a backend needs pixels.
#[derive(Debug, Clone, Serialize)]
pub struct ImageRef {
    /// The path stored with the image (may be relative, may not exist).
    pub path: Option<String>,
    /// Encoded bytes (PNG, JPEG, ...). `None` when the file stores only a path that did not
    /// resolve: a warning, not an error (the real MathVerse/MMMU-Pro samples contain such
    /// rows).
    #[serde(skip)]
    pub bytes: Option<Arc<[u8]>>,
}

/// Width and height of an encoded image, read from its header.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ImageSize {
    pub width: u32,
    pub height: u32,
}

impl ImageRef {
    pub fn has_bytes(&self) -> bool {
        self.bytes.is_some()
    }

    /// Size from the header without decoding the pixels.
    pub fn size(&self) -> Result<Option<ImageSize>, image::ImageError> {
        let Some(bytes) = &self.bytes else {
            return Ok(None);
        };
        let reader =
            image::ImageReader::new(std::io::Cursor::new(&bytes[..])).with_guessed_format()?;
        let (width, height) = reader.into_dimensions()?;
        Ok(Some(ImageSize { width, height }))
    }

    /// Decodes the pixels.
    pub fn decode(&self) -> Result<Option<image::DynamicImage>, image::ImageError> {
        let Some(bytes) = &self.bytes else {
            return Ok(None);
        };
        let reader =
            image::ImageReader::new(std::io::Cursor::new(&bytes[..])).with_guessed_format()?;
        reader.decode().map(Some)
    }
}

impl Item {
    /// Number of images with bytes.
    pub fn image_count(&self) -> usize {
        self.images.iter().filter(|i| i.has_bytes()).count()
    }

    /// A field by manifest name, including the built-ins used by filters.
    pub fn field(&self, name: &str) -> Option<&str> {
        match name {
            "question_type" => self.question_type.as_deref(),
            "answer" => Some(self.answer.as_str()),
            "id" => Some(self.id.as_str()),
            _ => self.fields.get(name).map(String::as_str),
        }
    }

    /// Decodes every image fully: what `validate` checks.
    pub fn check_images(&self) -> Result<(), BenchError> {
        for (index, image) in self.images.iter().enumerate() {
            image.decode().map_err(|e| BenchError::Image {
                path: self.source_file.clone(),
                row: self.row,
                field: format!(
                    "image {} ({})",
                    index + 1,
                    image.path.as_deref().unwrap_or("")
                ),
                message: e.to_string(),
            })?;
        }
        Ok(())
    }
}
