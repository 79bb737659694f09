//! Token perception as a tool (`spotlight perception`): how much each token of a response
//! depends on the image, for any checkpoint, measured exactly as the trainer measures it.
//!
//! Why a module of its own: the trainer computes token dependency `S` inside its update, on
//! rollout rows; users want the same number for their own model, prompt and response, and for
//! other ways of taking the image away (the paper's ablation perturbations, and the text-only
//! prompt of follow-up work). This module owns the measures and scores a response twice —
//! with the original and with the measure's image — then hands both log-prob rows to the
//! trainer's own [`crate::train::perception`] functions, so the tool and the trainer cannot
//! disagree.

use image::RgbImage;
use serde::Serialize;

use crate::model::{Checkpoint, ImageProcessor, ModelError, ProcessedImage, ScoringRequest};
use crate::train::perception::{token_dependency, trajectory_dependency};
use crate::train::perturb::{row_rng, Perturbation};
use crate::train::TokenGrid;

/// How the image is taken away.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Measure {
    /// The published perturbation: 14 px squares blackened with probability 0.5.
    PatchBlackening,
    /// N(0, 189^2) noise per channel, the reference's alternative.
    GaussianNoise,
    /// Gaussian blur with radius 6, the reference's alternative.
    GaussianBlur,
    /// The whole image one grey level (128 as the reference's full masking; 0 for black):
    /// deterministic, so anyone can recompute it.
    FullMask { fill: u8 },
    /// The prompt without its image (the text-only prediction).
    NoImage,
}

impl Measure {
    /// The perturbation that makes the measure's image (`None` for [`Measure::NoImage`]).
    pub fn perturbation(self) -> Option<Perturbation> {
        match self {
            Measure::PatchBlackening => Some(Perturbation::PUBLISHED),
            Measure::GaussianNoise => Some(Perturbation::GaussianNoise { std: 189.0 }),
            Measure::GaussianBlur => Some(Perturbation::GaussianBlur { radius: 6.0 }),
            Measure::FullMask { fill } => Some(Perturbation::FullMask { grey: fill }),
            Measure::NoImage => None,
        }
    }

    /// The measure's version of `image` (the image as the processor receives it, before the
    /// processor's resize): the random ones draw from the stream of (`seed`, `item`, `sample`),
    /// as a training row's mask does.
    pub fn perturbed(
        self,
        image: &RgbImage,
        seed: u64,
        item: &str,
        sample: u32,
    ) -> Option<RgbImage> {
        self.perturbation()
            .map(|p| p.apply(image, &mut row_rng(seed, item, sample)))
    }
}

/// A response's log-probs with and without the image, and its dependency on it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DependencyScores {
    pub logprobs: Vec<f64>,
    pub perturbed_logprobs: Vec<f64>,
    /// `S` of each token (the trainer's k3 estimator).
    pub token_dependency: Vec<f64>,
    /// The mean of `S` over the response.
    pub trajectory_dependency: f64,
}

/// Scores `original` and `perturbed` (the same response after two contexts) at `temperature`
/// and derives `S` through the trainer's functions.
pub fn dependency(
    ckpt: &Checkpoint,
    original: ScoringRequest,
    perturbed: ScoringRequest,
    temperature: f64,
) -> Result<DependencyScores, ModelError> {
    if original.response_ids != perturbed.response_ids {
        return Err(ModelError::Input(
            "the two scorings must be of the same response".into(),
        ));
    }
    let n = original.response_ids.len();
    let rows = ckpt
        .model
        .log_probs(&[original, perturbed], temperature)?
        .to_vecs()?;
    let as_f64 = |v: &Vec<f32>| v.iter().map(|&x| x as f64).collect::<Vec<f64>>();
    let (old, aug) = (as_f64(&rows[0]), as_f64(&rows[1]));
    let grid = |what: &str, v: &[f64]| {
        TokenGrid::from_rows(what, &[v.to_vec()]).map_err(|e| ModelError::Input(e.to_string()))
    };
    let mask = grid("mask", &vec![1.0; n])?;
    let s = token_dependency(&mask, &grid("old", &old)?, &grid("aug", &aug)?);
    let trajectory = trajectory_dependency(&s, &mask)[0];
    Ok(DependencyScores {
        token_dependency: s.row(0).to_vec(),
        trajectory_dependency: trajectory,
        logprobs: old,
        perturbed_logprobs: aug,
    })
}

/// The processor's output for an image the processor receives as it is.
pub fn processed(
    processor: &ImageProcessor,
    image: &RgbImage,
) -> Result<ProcessedImage, ModelError> {
    processor.preprocess(&image::DynamicImage::ImageRgb8(image.clone()))
}
