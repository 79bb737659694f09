//! Scoring: the rollout policy's log-probs of the kept responses, on the original image and
//! on a perturbed one (the spec's `old_log_probs` and `aug_log_probs`), computed once per step
//! before the update and kept without gradients.

use super::data::Example;
use super::perturb::Perturbation;
use super::rollout::Response;
use super::{TokenGrid, TrainError};
use crate::model::{Checkpoint, ProcessedImage, ScoringRequest};
use crate::seed::derive_seed_tagged;

/// The requests scoring `rows[i]` for each `i` of `indices`, each with its image in `images`.
pub fn requests<'a>(
    examples: &'a [Example],
    rows: &'a [Response],
    images: &[Option<&'a ProcessedImage>],
    indices: impl IntoIterator<Item = usize>,
) -> Vec<ScoringRequest<'a>> {
    indices
        .into_iter()
        .map(|i| ScoringRequest {
            prompt_ids: &examples[rows[i].example].prompt_ids,
            response_ids: &rows[i].tokens,
            image: images[i],
        })
        .collect()
}

/// Log-probs of each row's response at `temperature` (no gradient kept), in micro-batches
/// of `micro` rows, padded with zeros to `width` tokens.
pub fn score_rows(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Response],
    images: &[Option<&ProcessedImage>],
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

/// Each row's perturbed image, fresh per response and step: the mask of row (item, sample)
/// at `step` is drawn from (run seed, "perturb", step) and the row's own stream.
pub fn perturbed_images(
    ckpt: &Checkpoint,
    examples: &[Example],
    rows: &[Response],
    perturbation: &Perturbation,
    seed: u64,
    step: usize,
) -> Vec<Option<ProcessedImage>> {
    let mask_seed = derive_seed_tagged(seed, "perturb", step as u32, "step");
    rows.iter()
        .map(|r| {
            let ex = &examples[r.example];
            ex.resized.as_ref().map(|img| {
                let p = perturbation.apply_for_row(img, mask_seed, &ex.id, r.sample);
                ckpt.image_processor.normalize(&p)
            })
        })
        .collect()
}
