//! Training data: the examples a run learns from (read, rendered, tokenized and preprocessed
//! once) and the seeded order in which the RL loop and SFT visit them.
//!
//! The order is a pure function of (run seed, stream, epoch), and a run's position in it is a
//! [`DataCursor`] saved with each checkpoint, so a resumed run visits exactly the items an
//! uninterrupted one would.

use std::path::PathBuf;

use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::bench::{DataSource, PromptRenderer, Registry};
use crate::model::{Checkpoint, ImageProcessor, PreResize, ProcessedImage, SourceImage};
use crate::seed::derive_seed_tagged;

/// A training example ready for the model.
pub struct Example {
    pub id: String,
    pub prompt_ids: Vec<u32>,
    /// The images as the dataset delivers them to the processor (after the recipe's first
    /// resize, EasyR1's `process_image`): perturbations apply to these, before the processor,
    /// as in the reference. In the order of the prompt's placeholders (items may have several,
    /// as the reference's training data do; none for text-only items).
    pub sources: Vec<RgbImage>,
    /// The processor's output for each of `sources`.
    pub images: Vec<ProcessedImage>,
    pub answer: String,
    pub options: Vec<String>,
    /// The reference solution (the manifest's `solution` field), the target of SFT.
    pub solution: Option<String>,
}

impl Example {
    /// The options as the graders take them (`None` for free-form items).
    pub fn options(&self) -> Option<&[String]> {
        (!self.options.is_empty()).then_some(self.options.as_slice())
    }
}

/// Examples and the files they were read from (the run plan hashes the files).
pub struct LoadedExamples {
    pub examples: Vec<Example>,
    pub files: Vec<PathBuf>,
}

/// Reads, renders, tokenizes and preprocesses up to `limit` items of benchmark `bench`
/// (items with several images, or prompts over `max_prompt_tokens`, are left out).
pub fn load_examples(
    registry: &Registry,
    bench: &str,
    ckpt: &Checkpoint,
    pre_resize: PreResize,
    source: &DataSource,
    max_prompt_tokens: usize,
    limit: usize,
) -> Result<LoadedExamples, TrainError> {
    let manifest = registry.get(bench)?;
    let loaded = registry.load_benchmark(manifest, source)?;
    if let Some(p) = loaded.bad_rows.first() {
        return Err(TrainError::Usage(format!(
            "{}: row {}: field `{}`: {} ({} bad rows; `spotlight bench validate` lists them)",
            p.file.display(),
            p.row,
            p.field,
            p.message,
            loaded.bad_rows.len()
        )));
    }
    let renderer = PromptRenderer::new(manifest)?;
    let builder = ckpt.prompt_builder()?;
    let processor: &ImageProcessor = &ckpt.image_processor;
    let mut out = Vec::new();
    for item in loaded.items.iter().take(limit) {
        // every image the row carries, in order (the reference keeps multi-image items)
        let (mut sources, mut images) = (Vec::new(), Vec::new());
        for (k, bytes) in item
            .images
            .iter()
            .filter_map(|i| i.bytes.as_ref())
            .enumerate()
        {
            let name = format!(
                "{}: row {}: image {k}",
                item.source_file.display(),
                item.row
            );
            let source = pre_resize.apply(&SourceImage::decode(bytes, &name)?);
            images.push(processor.preprocess(&image::DynamicImage::ImageRgb8(source.clone()))?);
            sources.push(source);
        }
        let text = renderer.render(item)?;
        let grids: Vec<_> = images.iter().map(|i| i.grid_thw).collect();
        let prompt_ids =
            builder.prompt_ids(Some(crate::bench::prompt::DEFAULT_SYSTEM), &text, &grids)?;
        if prompt_ids.len() > max_prompt_tokens {
            continue;
        }
        out.push(Example {
            id: item.id.clone(),
            prompt_ids,
            sources,
            images,
            answer: item.answer.clone(),
            options: item.options.clone(),
            solution: item.fields.get("solution").cloned(),
        });
    }
    Ok(LoadedExamples {
        examples: out,
        files: loaded.files,
    })
}

/// Where the data order is: which epoch's permutation, and how far into it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct DataCursor {
    pub epoch: u64,
    pub position: usize,
}

impl DataCursor {
    /// The next batch of `n` example indices of `len` in the RL loop's seeded per-epoch order,
    /// advancing the cursor. Like the reference's `drop_last=True` dataloader, a batch never
    /// straddles epochs: when fewer than `n` examples are left in this epoch's order, they are
    /// skipped and the batch starts the next epoch's order (so every batch holds distinct
    /// examples). `n` is capped at `len`.
    pub fn next_batch(&mut self, len: usize, n: usize, seed: u64) -> Vec<usize> {
        let n = n.min(len);
        if n == 0 {
            return Vec::new();
        }
        if self.position + n > len {
            self.epoch += 1;
            self.position = 0;
        }
        let order = epoch_order(len, self.epoch, seed);
        let out = order[self.position..self.position + n].to_vec();
        self.position += n;
        out
    }
}

/// The RL data order of an epoch.
fn epoch_order(len: usize, epoch: u64, seed: u64) -> Vec<usize> {
    seeded_order(len, seed, "data-order", epoch)
}

/// A Fisher-Yates permutation of `0..len` from its own stream: (seed, `stream`, epoch).
pub fn seeded_order(len: usize, seed: u64, stream: &str, epoch: u64) -> Vec<usize> {
    let mut rng =
        ChaCha20Rng::seed_from_u64(derive_seed_tagged(seed, stream, epoch as u32, "epoch"));
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.random_range(0..=i);
        order.swap(i, j);
    }
    order
}

/// SFT's batch at 1-based `step`: positions `(step-1)*n .. step*n` of the concatenated
/// per-epoch orders, so a batch that straddles an epoch boundary takes the next epoch's order
/// for its tail, and any step's batch is known without replaying the steps before it (resume).
pub fn sft_batch(len: usize, n: usize, step: usize, seed: u64) -> (usize, Vec<usize>) {
    let first = (step.max(1) - 1) * n;
    let epoch = first / len.max(1);
    let mut order = seeded_order(len, seed, "sft-order", epoch as u64);
    let mut current = epoch;
    let batch = (first..first + n)
        .map(|i| {
            let e = i / len.max(1);
            if e != current {
                current = e;
                order = seeded_order(len, seed, "sft-order", e as u64);
            }
            order[i % len.max(1)]
        })
        .collect();
    (epoch, batch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_data_order_is_a_seeded_permutation_per_epoch() {
        let a = epoch_order(10, 0, 3);
        let mut sorted = a.clone();
        sorted.sort_unstable();
        assert_eq!(sorted, (0..10).collect::<Vec<_>>());
        assert_eq!(a, epoch_order(10, 0, 3));
        assert_ne!(a, epoch_order(10, 1, 3));
        let mut c = DataCursor::default();
        let (first, second) = (c.next_batch(10, 4, 3), c.next_batch(10, 4, 3));
        assert_eq!(first, a[..4].to_vec());
        assert_eq!(second, a[4..8].to_vec());
        assert_eq!(
            c,
            DataCursor {
                epoch: 0,
                position: 8
            }
        );
    }

    /// The reference's dataloader has `drop_last=True`: the two examples left over after two
    /// batches of 4 from 10 are skipped, and the third batch is the start of epoch 1's order.
    #[test]
    fn a_batch_never_straddles_epochs_as_with_drop_last() {
        let mut c = DataCursor::default();
        c.next_batch(10, 4, 3);
        c.next_batch(10, 4, 3);
        let third = c.next_batch(10, 4, 3);
        assert_eq!(third, epoch_order(10, 1, 3)[..4].to_vec());
        assert_eq!(
            c,
            DataCursor {
                epoch: 1,
                position: 4
            }
        );
        // a batch as large as the data is one whole epoch each time
        let mut whole = DataCursor::default();
        assert_eq!(whole.next_batch(10, 10, 3), epoch_order(10, 0, 3));
        assert_eq!(whole.next_batch(10, 10, 3), epoch_order(10, 1, 3));
    }

    #[test]
    fn an_sft_batch_straddling_epochs_takes_the_next_epochs_order() {
        let (e0, o1) = (
            seeded_order(5, 9, "sft-order", 0),
            seeded_order(5, 9, "sft-order", 1),
        );
        assert_eq!(sft_batch(5, 2, 1, 9), (0, e0[..2].to_vec()));
        let (epoch, batch) = sft_batch(5, 2, 3, 9);
        assert_eq!(epoch, 0);
        assert_eq!(batch, vec![e0[4], o1[0]]);
    }

    /// The reference trains on multi-image items; so does Spotlight: every image of a row, in
    /// the order of the prompt's placeholders, each with its own token grid.
    #[test]
    fn multi_image_items_are_kept_with_every_image_in_order() {
        use crate::synth::figures::png_bytes;
        use crate::synth::table::{write_parquet, ImageCell, Table};
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ckpt = Checkpoint::load(&root.join("tests/fixtures/qwen25vl/tiny")).unwrap();
        let registry = Registry::load(root).unwrap();
        let cell = |w: u32, h: u32| ImageCell {
            bytes: Some(png_bytes(&RgbImage::from_pixel(w, h, image::Rgb([9, 99, 199]))).unwrap()),
            path: None,
        };
        let table = Table::new()
            .string("id", vec![Some("two".into()), Some("one".into())])
            .string(
                "problem",
                vec![
                    Some("<image> is left of <image>: which is wider?".into()),
                    Some("<image> how many?".into()),
                ],
            )
            .string("answer", vec![Some("A".into()), Some("3".into())])
            .image_list(
                "images",
                vec![vec![cell(112, 56), cell(56, 56)], vec![cell(84, 84)]],
            )
            .string("task", vec![Some("t".into()), Some("t".into())])
            .string(
                "format",
                vec![Some("free-form".into()), Some("free-form".into())],
            )
            .string("solution", vec![None, None]);
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("train.parquet");
        write_parquet(&file, &table.into_batch().unwrap(), 16).unwrap();
        let loaded = load_examples(
            &registry,
            "synth-perception",
            &ckpt,
            PreResize::None,
            &DataSource::Path(file),
            usize::MAX,
            usize::MAX,
        )
        .unwrap();
        assert_eq!(loaded.examples.len(), 2);
        let two = &loaded.examples[0];
        assert_eq!(two.id, "two");
        assert_eq!(two.images.len(), 2);
        assert_eq!(two.sources.len(), 2);
        assert_eq!(two.sources[0].dimensions(), (112, 56));
        assert_eq!(two.sources[1].dimensions(), (56, 56));
        let merge = ckpt.config.vision.spatial_merge_size;
        let expected: usize = two
            .images
            .iter()
            .map(|i| i.grid_thw.num_tokens(merge))
            .sum();
        let image_tokens = two
            .prompt_ids
            .iter()
            .filter(|&&t| t == ckpt.config.image_token_id)
            .count();
        assert_eq!(image_tokens, expected);
        assert_eq!(loaded.examples[1].images.len(), 1);
    }
}
