//! Image controls: the same evaluation with the images taken away, to tell a model that looks
//! from one that has learned answer priors. With every image replaced by a black one of the
//! same size (`black`), or each item given another item's images (`other-item`), a model that
//! reads the image falls to chance while one that guesses from the question keeps its score.
//!
//! Both controls keep each image's pixel size (a black image has its original's size; a
//! swapped image is another real image of the same benchmark), so the prompt's image tokens
//! stay comparable and only the content changes. The swap is a derangement (no item keeps its
//! own images) drawn from the run seed and the item ids, so a rerun, a resume or a different
//! `--limit` order gives the same pairs for the same items.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::bench::item::{ImageRef, Item};

/// What the evaluated model is shown in place of each item's images.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ImageControl {
    /// The item's own images (a normal evaluation).
    #[default]
    AsIs,
    /// Each image replaced by a black image of the same width and height.
    Black,
    /// Each item shown the images of another item of the same benchmark (a seeded
    /// derangement over the items that have images).
    OtherItem,
}

/// Why a control could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum ImageControlError {
    #[error("{}, row {row} (item {item}): image {index} cannot be read for the `black` control: {message}", file.display())]
    Unreadable {
        file: std::path::PathBuf,
        row: usize,
        item: String,
        index: usize,
        message: String,
    },
    #[error("the `other-item` control needs at least two items with images in {benchmark} (found {found})")]
    TooFewImages { benchmark: String, found: usize },
}

impl ImageControl {
    pub fn name(self) -> &'static str {
        match self {
            ImageControl::AsIs => "as-is",
            ImageControl::Black => "black",
            ImageControl::OtherItem => "other-item",
        }
    }

    /// What the model was shown instead of the items' images, for reports (`None`: its own).
    pub fn description(self) -> Option<&'static str> {
        match self {
            ImageControl::AsIs => None,
            ImageControl::Black => Some("each image blacked out at its own size"),
            ImageControl::OtherItem => Some("each item was given another item's images"),
        }
    }

    /// The items with their images replaced as the control says. Items without images
    /// (text-only benchmark rows) are left as they are under every control.
    pub fn apply(
        self,
        benchmark: &str,
        mut items: Vec<Item>,
        seed: u64,
    ) -> Result<Vec<Item>, ImageControlError> {
        match self {
            ImageControl::AsIs => {}
            ImageControl::Black => {
                for item in &mut items {
                    for (index, image) in item.images.iter_mut().enumerate() {
                        *image =
                            black_like(image).map_err(|message| ImageControlError::Unreadable {
                                file: item.source_file.clone(),
                                row: item.row,
                                item: item.id.clone(),
                                index,
                                message,
                            })?;
                    }
                }
            }
            ImageControl::OtherItem => {
                let mut with_images: Vec<usize> = (0..items.len())
                    .filter(|&i| items[i].images.iter().any(ImageRef::has_bytes))
                    .collect();
                if with_images.is_empty() {
                    return Ok(items);
                }
                if with_images.len() < 2 {
                    return Err(ImageControlError::TooFewImages {
                        benchmark: benchmark.to_string(),
                        found: with_images.len(),
                    });
                }
                // A seeded order over the item ids; each item takes the images of the next
                // one in that order (a cycle, so nobody keeps its own).
                with_images.sort_by_key(|&i| {
                    (
                        crate::seed::derive_seed_tagged(seed, &items[i].id, 0, "other-item"),
                        i,
                    )
                });
                let originals: Vec<Vec<ImageRef>> = with_images
                    .iter()
                    .map(|&i| items[i].images.clone())
                    .collect();
                for (pos, &i) in with_images.iter().enumerate() {
                    items[i].images = originals[(pos + 1) % originals.len()].clone();
                }
            }
        }
        Ok(items)
    }
}

/// A black PNG of the image's size; an image without bytes stays as it is.
fn black_like(image: &ImageRef) -> Result<ImageRef, String> {
    let Some(size) = image.size().map_err(|e| e.to_string())? else {
        return Ok(image.clone());
    };
    let black = image::RgbImage::new(size.width, size.height);
    let mut out = std::io::Cursor::new(Vec::new());
    black
        .write_to(&mut out, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    Ok(ImageRef {
        path: image.path.as_ref().map(|p| format!("black:{p}")),
        bytes: Some(Arc::from(out.into_inner())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, shade: u8, side: u32) -> Item {
        let img = image::RgbImage::from_pixel(side, side + 1, image::Rgb([shade, 1, 2]));
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png)
            .expect("encode");
        Item {
            id: id.into(),
            images: vec![ImageRef {
                path: Some(format!("{id}.png")),
                bytes: Some(Arc::from(out.into_inner())),
            }],
            ..Item::default()
        }
    }

    fn decoded(item: &Item) -> image::RgbImage {
        item.images[0]
            .decode()
            .expect("decodes")
            .expect("has bytes")
            .to_rgb8()
    }

    #[test]
    fn black_keeps_each_size_and_blanks_every_pixel() {
        let items = vec![item("a", 200, 31), item("b", 90, 57)];
        let out = ImageControl::Black.apply("x", items, 0).expect("applies");
        for (it, side) in out.iter().zip([31u32, 57]) {
            let img = decoded(it);
            assert_eq!((img.width(), img.height()), (side, side + 1));
            assert!(img.pixels().all(|p| p.0 == [0, 0, 0]));
        }
    }

    #[test]
    fn other_item_is_a_seeded_derangement_of_the_images() {
        let items: Vec<Item> = (0..9u8)
            .map(|i| item(&format!("q{i}"), i * 20, 20))
            .collect();
        let shade = |it: &Item| decoded(it).get_pixel(0, 0).0[0];
        let out = ImageControl::OtherItem
            .apply("x", items.clone(), 3)
            .expect("applies");
        let mut seen: Vec<u8> = out.iter().map(shade).collect();
        for (before, after) in items.iter().zip(&out) {
            assert_ne!(shade(before), shade(after), "{} kept its image", before.id);
        }
        seen.sort();
        assert_eq!(seen, (0..9u8).map(|i| i * 20).collect::<Vec<_>>());
        // the same seed gives the same pairs whatever the item order
        let mut reversed = items.clone();
        reversed.reverse();
        let again = ImageControl::OtherItem
            .apply("x", reversed, 3)
            .expect("applies");
        for it in &out {
            let twin = again.iter().find(|o| o.id == it.id).expect("same ids");
            assert_eq!(shade(it), shade(twin));
        }
        let other_seed = ImageControl::OtherItem
            .apply("x", items, 4)
            .expect("applies");
        assert_ne!(
            out.iter().map(shade).collect::<Vec<_>>(),
            other_seed.iter().map(shade).collect::<Vec<_>>()
        );
    }

    #[test]
    fn one_image_cannot_be_swapped() {
        let err = ImageControl::OtherItem
            .apply("geo3k", vec![item("only", 1, 10)], 0)
            .expect_err("refused");
        assert!(err.to_string().contains("geo3k"));
    }
}
