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
pub fn perturbed_images(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Response],
    perturbation: &Perturbation,
    seed: u64,
    step: usize,
) -> Vec<Vec<ProcessedImage>> {
    let mask_seed = derive_seed_tagged(seed, "perturb", step as u32, "step");
    rows.iter()
        .map(|r| {
            let ex = &examples[r.example];
            let mut rng = row_rng(mask_seed, &ex.id, r.sample);
            ex.resized
                .iter()
                .map(|img| {
                    ckpt.image_processor
                        .normalize(&perturbation.apply(img, &mut rng))
                })
                .collect()
        })
        .collect()
}
