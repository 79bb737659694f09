//! Image perturbations that define a token's visual dependency (spec section 3): the
//! perturbed-image log-probs `aug_lp` are computed with the image replaced by a perturbed
//! copy. The copy is made from the image as the dataset delivers it (after EasyR1's first
//! resize) and then goes through the processor's resize and normalisation, as in the
//! reference, so black squares are resampled with the image and do not sit on ViT patches.
//!
//! The published run uses random patch blackening (14 px squares from the top-left corner,
//! each set to black with probability 0.5, a fresh mask for every response row). The
//! reference also carries Gaussian noise (std 189 on the 0-255 scale), full masking with grey
//! 128 and Gaussian blur with radius (sigma) 6, used in the paper's ablation.
//!
//! Randomness: each response row draws from its own ChaCha20 stream seeded with
//! `derive_seed_tagged(seed, item_id, sample, "perturb")`, so a row's mask never depends on
//! batch composition, order or the other rows.

use image::RgbImage;
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::seed::derive_seed_tagged;

/// Purpose tag of the perturbation stream in the seed derivation.
pub const PERTURB_SEED_TAG: &str = "perturb";

/// One kind of perturbation and its parameters (`[perturbation]` in a recipe, tagged by
/// `kind`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Perturbation {
    /// Square patches of `patch_size` px from the top-left corner (partial at the right and
    /// bottom edges), each set to RGB (0, 0, 0) with `probability`.
    PatchBlackening { patch_size: u32, probability: f64 },
    /// Independent N(0, std^2) noise on every channel of every pixel (0-255 scale), clipped
    /// to [0, 255] and truncated to integers, as the reference's `astype(uint8)`.
    GaussianNoise { std: f64 },
    /// Every pixel set to RGB (grey, grey, grey).
    FullMask { grey: u8 },
    /// Gaussian blur with standard deviation `radius` px (PIL's `GaussianBlur(radius)` takes
    /// the radius as sigma too).
    GaussianBlur { radius: f64 },
}

impl Perturbation {
    /// The published perturbation: 14 px patches blackened with p = 0.5.
    pub const PUBLISHED: Perturbation = Perturbation::PatchBlackening {
        patch_size: 14,
        probability: 0.5,
    };

    /// Checks the parameters.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |kind, reason: String| Err(TrainError::BadPerturbation { kind, reason });
        match *self {
            Perturbation::PatchBlackening {
                patch_size,
                probability,
            } => {
                if patch_size == 0 {
                    return bad("patch_blackening", "patch_size must be >= 1".to_string());
                }
                if !(0.0..=1.0).contains(&probability) {
                    return bad(
                        "patch_blackening",
                        format!("probability {probability} must be in [0, 1]"),
                    );
                }
            }
            Perturbation::GaussianNoise { std } => {
                if !(std >= 0.0 && std.is_finite()) {
                    return bad(
                        "gaussian_noise",
                        format!("std {std} must be finite and >= 0"),
                    );
                }
            }
            Perturbation::FullMask { .. } => {}
            Perturbation::GaussianBlur { radius } => {
                if !(0.0..=1000.0).contains(&radius) {
                    return bad(
                        "gaussian_blur",
                        format!("radius {radius} must be in [0, 1000]"),
                    );
                }
            }
        }
        Ok(())
    }

    /// The perturbed copy of `image` for one response row, drawing from `rng`.
    pub fn apply(&self, image: &RgbImage, rng: &mut impl RngCore) -> RgbImage {
        match *self {
            Perturbation::PatchBlackening {
                patch_size,
                probability,
            } => patch_blackening(image, patch_size, probability, rng),
            Perturbation::GaussianNoise { std } => gaussian_noise(image, std, rng),
            Perturbation::FullMask { grey } => full_mask(image, grey),
            Perturbation::GaussianBlur { radius } => gaussian_blur(image, radius),
        }
    }

    /// The perturbed copy of `image` for sample `sample` of item `item_id` under run seed
    /// `seed`: its own stream, independent of every other row.
    pub fn apply_for_row(
        &self,
        image: &RgbImage,
        seed: u64,
        item_id: &str,
        sample: u32,
    ) -> RgbImage {
        self.apply(image, &mut row_rng(seed, item_id, sample))
    }
}

/// The perturbation stream of one response row.
///
/// The stream depends only on (`seed`, `item_id`, `sample`): a trainer that wants a fresh
/// mask each time an item is revisited (the reference draws from a global RNG, so its masks
/// differ between epochs) should pass a per-step seed, e.g. one derived from the run seed
/// and the global step, or a sample index unique across epochs.
pub fn row_rng(seed: u64, item_id: &str, sample: u32) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(derive_seed_tagged(seed, item_id, sample, PERTURB_SEED_TAG))
}

/// Blackens each `patch` x `patch` square with probability `probability`. One uniform draw
/// per square in row-major order of squares (top row left to right, then the next row), as
/// the reference loops.
pub fn patch_blackening(
    image: &RgbImage,
    patch: u32,
    probability: f64,
    rng: &mut impl RngCore,
) -> RgbImage {
    let mut out = image.clone();
    let (w, h) = image.dimensions();
    let patch = patch.max(1);
    for y0 in (0..h).step_by(patch as usize) {
        for x0 in (0..w).step_by(patch as usize) {
            if rng.random::<f64>() < probability {
                for y in y0..(y0 + patch).min(h) {
                    for x in x0..(x0 + patch).min(w) {
                        out.put_pixel(x, y, image::Rgb([0, 0, 0]));
                    }
                }
            }
        }
    }
    out
}

/// Adds N(0, std^2) to every channel value, clips to [0, 255] and truncates.
pub fn gaussian_noise(image: &RgbImage, std: f64, rng: &mut impl RngCore) -> RgbImage {
    let mut out = image.clone();
    for value in out.iter_mut() {
        let noisy = f64::from(*value) + std * standard_normal(rng);
        *value = noisy.clamp(0.0, 255.0) as u8;
    }
    out
}

/// One standard normal draw (Box-Muller, cosine branch): portable and reproducible from the
/// documented ChaCha20 stream, unlike a library's sampler that may change between versions.
fn standard_normal(rng: &mut impl RngCore) -> f64 {
    let u1 = 1.0 - rng.random::<f64>(); // (0, 1]: ln is finite
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Every pixel set to (grey, grey, grey).
pub fn full_mask(image: &RgbImage, grey: u8) -> RgbImage {
    let (w, h) = image.dimensions();
    RgbImage::from_pixel(w, h, image::Rgb([grey, grey, grey]))
}

/// Separable Gaussian blur with standard deviation `sigma`: a normalised kernel truncated at
/// `ceil(3 sigma)` px, edges extended (clamped), rounded to the nearest integer. (PIL
/// approximates the same Gaussian with repeated box blurs; values can differ by a few levels.)
pub fn gaussian_blur(image: &RgbImage, sigma: f64) -> RgbImage {
    if sigma <= 0.0 {
        return image.clone();
    }
    let radius = (3.0 * sigma).ceil() as i64;
    let kernel: Vec<f64> = (-radius..=radius)
        .map(|d| (-((d * d) as f64) / (2.0 * sigma * sigma)).exp())
        .collect();
    let total: f64 = kernel.iter().sum();
    let kernel: Vec<f64> = kernel.iter().map(|k| k / total).collect();
    let (w, h) = image.dimensions();
    let (wi, hi) = (i64::from(w), i64::from(h));
    let at = |buf: &[f64], x: i64, y: i64, c: usize| -> f64 {
        let x = x.clamp(0, wi - 1) as usize;
        let y = y.clamp(0, hi - 1) as usize;
        buf[(y * w as usize + x) * 3 + c]
    };
    let src: Vec<f64> = image.iter().map(|&v| f64::from(v)).collect();
    let mut horizontal = vec![0.0; src.len()];
    for y in 0..hi {
        for x in 0..wi {
            for c in 0..3 {
                horizontal[((y * wi + x) * 3) as usize + c] = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, weight)| weight * at(&src, x + k as i64 - radius, y, c))
                    .sum();
            }
        }
    }
    let mut out = image.clone();
    for y in 0..hi {
        for x in 0..wi {
            let mut pixel = [0u8; 3];
            for (c, value) in pixel.iter_mut().enumerate() {
                let v: f64 = kernel
                    .iter()
                    .enumerate()
                    .map(|(k, weight)| weight * at(&horizontal, x, y + k as i64 - radius, c))
                    .sum();
                *value = v.round().clamp(0.0, 255.0) as u8;
            }
            out.put_pixel(x as u32, y as u32, image::Rgb(pixel));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 60 x 45 image with a distinct, never-black value in every pixel and channel.
    fn test_image() -> RgbImage {
        RgbImage::from_fn(60, 45, |x, y| {
            image::Rgb([
                (1 + x * 4) as u8,
                (1 + y * 5) as u8,
                (1 + (x + y) % 200) as u8,
            ])
        })
    }

    #[test]
    fn patches_are_blackened_whole_or_not_at_all_including_edge_patches() {
        let img = test_image();
        let out = Perturbation::PUBLISHED.apply_for_row(&img, 1, "synth/3", 0);
        // 60 x 45 px -> 5 x 4 squares of 14 px, the last column 4 px wide, the last row 3 px.
        let mut blackened = 0;
        for py in 0..4u32 {
            for px in 0..5u32 {
                let cells: Vec<bool> = (py * 14..((py + 1) * 14).min(45))
                    .flat_map(|y| (px * 14..((px + 1) * 14).min(60)).map(move |x| (x, y)))
                    .map(|(x, y)| out.get_pixel(x, y).0 == [0, 0, 0])
                    .collect();
                assert!(
                    cells.iter().all(|&b| b) || cells.iter().all(|&b| !b),
                    "square {px},{py}"
                );
                if cells[0] {
                    blackened += 1;
                } else {
                    let (x, y) = (px * 14, py * 14);
                    assert_eq!(out.get_pixel(x, y), img.get_pixel(x, y));
                }
            }
        }
        assert!(blackened > 0 && blackened < 20, "{blackened} of 20 squares");
    }

    #[test]
    fn each_row_gets_its_own_reproducible_mask() {
        let img = test_image();
        let p = Perturbation::PUBLISHED;
        let a = p.apply_for_row(&img, 7, "item", 0);
        assert_eq!(a, p.apply_for_row(&img, 7, "item", 0));
        // Other samples of the same prompt, other items, other seeds: other masks (the
        // chance that 20 fair coins repeat is 1e-6 per pair).
        assert_ne!(a, p.apply_for_row(&img, 7, "item", 1));
        assert_ne!(a, p.apply_for_row(&img, 7, "other", 0));
        assert_ne!(a, p.apply_for_row(&img, 8, "item", 0));
    }

    #[test]
    fn about_half_of_the_patches_are_blackened() {
        let img = RgbImage::from_pixel(14 * 40, 14 * 40, image::Rgb([200, 100, 50]));
        let out = patch_blackening(&img, 14, 0.5, &mut row_rng(3, "big", 0));
        let black = (0..40)
            .flat_map(|py| (0..40).map(move |px| (px * 14, py * 14)))
            .filter(|&(x, y)| out.get_pixel(x, y).0 == [0, 0, 0])
            .count();
        // 1600 fair coins: mean 800, std 20; allow 5 std.
        assert!((700..=900).contains(&black), "{black} of 1600");
        assert_eq!(
            patch_blackening(&img, 14, 0.0, &mut row_rng(3, "big", 0)),
            img
        );
        let all = patch_blackening(&img, 14, 1.0, &mut row_rng(3, "big", 0));
        assert!(all.pixels().all(|p| p.0 == [0, 0, 0]));
    }

    #[test]
    fn noise_has_the_requested_spread_and_is_clipped() {
        let grey = RgbImage::from_pixel(100, 100, image::Rgb([128, 128, 128]));
        let out = gaussian_noise(&grey, 10.0, &mut row_rng(1, "n", 0));
        let diffs: Vec<f64> = out.iter().map(|&v| f64::from(v) - 128.0).collect();
        let n = diffs.len() as f64;
        let mean = diffs.iter().sum::<f64>() / n;
        let std = (diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / n).sqrt();
        // Truncation towards zero shifts the mean by about -0.5 and adds ~1/12 variance.
        assert!((mean + 0.5).abs() < 0.2, "mean {mean}");
        assert!((std - 10.0).abs() < 0.3, "std {std}");
        // With std 189 most values hit the clip at 0 or 255.
        let wild = gaussian_noise(&grey, 189.0, &mut row_rng(1, "n", 0));
        let clipped = wild.iter().filter(|&&v| v == 0 || v == 255).count();
        assert!(clipped as f64 / n > 0.4, "{clipped}");
    }

    #[test]
    fn full_mask_is_uniform_grey() {
        let out = full_mask(&test_image(), 128);
        assert_eq!(out.dimensions(), (60, 45));
        assert!(out.pixels().all(|p| p.0 == [128, 128, 128]));
    }

    #[test]
    fn blur_keeps_flat_images_and_spreads_a_point_symmetrically() {
        let flat = RgbImage::from_pixel(30, 20, image::Rgb([90, 10, 250]));
        assert_eq!(gaussian_blur(&flat, 6.0), flat);
        let mut point = RgbImage::new(41, 41);
        point.put_pixel(20, 20, image::Rgb([255, 255, 255]));
        let out = gaussian_blur(&point, 2.0);
        let v = |x: u32, y: u32| out.get_pixel(x, y).0[0];
        // The centre keeps 1 / (2 pi sigma^2) = 1/25.1 of the energy: 255 / 25.1 ~ 10.
        assert_eq!(v(20, 20), 10);
        assert_eq!(v(18, 20), v(22, 20));
        assert_eq!(v(20, 18), v(18, 20));
        assert!(v(20, 20) > v(21, 20) && v(21, 20) > v(23, 20));
        assert_eq!(gaussian_blur(&point, 0.0), point);
    }

    #[test]
    fn parameters_out_of_range_are_rejected() {
        let bad = Perturbation::PatchBlackening {
            patch_size: 0,
            probability: 0.5,
        };
        assert!(bad.validate().is_err());
        assert!(Perturbation::GaussianNoise { std: -1.0 }
            .validate()
            .is_err());
        assert!(Perturbation::GaussianBlur { radius: f64::NAN }
            .validate()
            .is_err());
        assert!(Perturbation::PUBLISHED.validate().is_ok());
    }

    #[test]
    fn perturbations_deserialise_from_tagged_toml_and_reject_unknown_fields() {
        let p: Perturbation = toml::from_str("kind = \"gaussian_noise\"\nstd = 189.0").unwrap();
        assert_eq!(p, Perturbation::GaussianNoise { std: 189.0 });
        let typo = toml::from_str::<Perturbation>("kind = \"full_mask\"\ngray = 128");
        assert!(typo.is_err());
    }
}
