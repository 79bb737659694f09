//! Scoring: the rollout policy's log-probs of the kept responses, on the original image and
//! on a perturbed one (the spec's `old_log_probs` and `aug_log_probs`), computed once per step
//! before the update and kept without gradients.

use super::data::Example;
use super::perturb::{row_rng, Perturbation};
use super::rollout::Response;
use super::{TokenGrid, TrainError};
use crate::model::{Checkpoint, ProcessedImage, ScoringRequest};
use crate::seed::derive_seed_tagged;

/// The requests scoring `rows[i]` for each `i` of `indices`, each with its images in `images`.
pub fn requests<'a>(
    examples: &'a [Example],
    rows: &'a [Response],
    images: &[Vec<&'a ProcessedImage>],
    indices: impl IntoIterator<Item = usize>,
) -> Vec<ScoringRequest<'a>> {
    indices
        .into_iter()
        .map(|i| ScoringRequest {
            prompt_ids: &examples[rows[i].example].prompt_ids,
            response_ids: &rows[i].tokens,
            images: images[i].clone(),
        })
        .collect()
}

/// Log-probs of each row's response at `temperature` (no gradient kept), in micro-batches
/// of `micro` rows, padded with zeros to `width` tokens.
pub fn score_rows(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Response],
    images: &[Vec<&ProcessedImage>],
    temperature: f64,
    micro: usize,
    width: usize,
) -> Result<TokenGrid, TrainError> {
    let mut grid = TokenGrid::zeros(rows.len(), width);
    let mut start = 0;
    while start < rows.len() {
        let end = (start + micro.max(1)).min(rows.len());
        let batch = requests(examples, rows, images, start..end);
        let values = ckpt.model.log_probs(&batch, temperature)?.to_vecs()?;
        for (k, v) in values.iter().enumerate() {
            for (dst, &x) in grid.row_mut(start + k).iter_mut().zip(v) {
                *dst = x as f64;
            }
        }
        start = end;
    }
    Ok(grid)
}

/// Each row's perturbed images, fresh per response and step: the masks of row (item, sample)
/// at `step` are drawn from (run seed, "perturb", step) and the row's own stream, one image
/// after the other in prompt order (the reference augments each image of a row in turn).
/// The perturbation applies to the image as the dataset delivers it and the processor runs
/// on the result (resize, then normalisation), as in the reference's
/// `_process_aug_multi_modal_inputs`: black squares are resampled with the image.
pub fn perturbed_images(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Response],
    perturbation: &Perturbation,
    seed: u64,
    step: usize,
) -> Result<Vec<Vec<ProcessedImage>>, TrainError> {
    let mask_seed = derive_seed_tagged(seed, "perturb", step as u32, "step");
    rows.iter()
        .map(|r| {
            let ex = &examples[r.example];
            let mut rng = row_rng(mask_seed, &ex.id, r.sample);
            ex.sources
                .iter()
                .map(|img| {
                    let perturbed = perturbation.apply(img, &mut rng);
                    Ok(ckpt
                        .image_processor
                        .preprocess(&image::DynamicImage::ImageRgb8(perturbed))?)
                })
                .collect()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use image::RgbImage;

    /// The reference blackens the image as the dataset delivers it and then runs the
    /// processor: on an image whose size is not a multiple of 28 the black squares are
    /// resampled with it, so the processor's output holds transition values between black and
    /// the image's grey, and the squares no longer sit on the ViT's 14 px patches.
    #[test]
    fn a_blackened_image_goes_through_the_processor_after_the_blackening() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let ckpt = Checkpoint::load(&root.join("tests/fixtures/qwen25vl/tiny")).unwrap();
        let source = RgbImage::from_pixel(101, 67, image::Rgb([200, 200, 200]));
        let original = ckpt
            .image_processor
            .preprocess(&image::DynamicImage::ImageRgb8(source.clone()))
            .unwrap();
        let example = Example {
            id: "grey".into(),
            prompt_ids: vec![1],
            sources: vec![source],
            images: vec![original.clone()],
            answer: "1".into(),
            options: vec![],
            solution: None,
        };
        let rows: Vec<Response> = (0..4)
            .map(|s| Response {
                example: 0,
                group: 0,
                sample: s,
                tokens: vec![1],
                reward: 0.0,
                accuracy: 0.0,
            })
            .collect();
        let perturbed =
            perturbed_images(&ckpt, &[example], &rows, &Perturbation::PUBLISHED, 3, 1).unwrap();
        let p = &ckpt.image_processor;
        let level = |v: u8, c: usize| {
            ((v as f64 * p.rescale_factor) as f32 - p.image_mean[c]) / p.image_std[c]
        };
        let (grey, black) = (level(200, 0), level(0, 0));
        let patch = 14 * 14 * p.temporal_patch_size;
        let mut transition = 0usize;
        for images in &perturbed {
            let img = &images[0];
            assert_eq!(
                img.grid_thw, original.grid_thw,
                "the processor's grid is unchanged"
            );
            // channel 0 of every patch
            for chunk in img.pixel_values.chunks(img.patch_dim) {
                transition += chunk[..patch]
                    .iter()
                    .filter(|&&v| (v - grey).abs() > 1e-3 && (v - black).abs() > 1e-3)
                    .count();
            }
        }
        assert!(
            transition > 100,
            "only {transition} values between black and grey: the squares were not resampled"
        );
        // the masks differ per response
        assert_ne!(perturbed[0][0].pixel_values, perturbed[1][0].pixel_values);
    }
}
