//! The image processor: transformers' slow `Qwen2VLImageProcessor`, reproduced.
//!
//! Steps, in the reference's order: convert to RGB (transparent pixels over white), resize to
//! the `smart_resize` size with Pillow's bicubic (always, even to the same size, which is a
//! copy), rescale (`f32(f64(v) * rescale_factor)`), normalise (`(x - mean) / std` in f32),
//! repeat the frame `temporal_patch_size` times, and flatten into patches in the order
//! (grid_t, grid_h / m, grid_w / m, m, m) x (channel, temporal, patch, patch), m = merge size.

use std::path::Path;

use serde_json::Value;

use super::resize::{resize_bicubic_rgb8, resize_bicubic_torch_u8};
use super::ModelError;

/// Patch-grid size of one image: temporal x height x width, in patches (before merging).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GridThw {
    pub t: usize,
    pub h: usize,
    pub w: usize,
}

impl GridThw {
    pub fn num_patches(&self) -> usize {
        self.t * self.h * self.w
    }
    /// Number of `<|image_pad|>` tokens (vision features) after the `merge x merge` merger.
    pub fn num_tokens(&self, merge: usize) -> usize {
        self.num_patches() / (merge * merge)
    }
}

/// One image ready for the vision tower.
#[derive(Debug, Clone, PartialEq)]
pub struct ProcessedImage {
    /// `num_patches x patch_dim` values, row-major.
    pub pixel_values: Vec<f32>,
    pub patch_dim: usize,
    pub grid_thw: GridThw,
}

impl ProcessedImage {
    pub fn num_patches(&self) -> usize {
        self.grid_thw.num_patches()
    }
}

/// Which of transformers' two Qwen2-VL image processors to reproduce. They share
/// smart_resize but differ in the resample (Pillow's bicubic vs PyTorch's `uint8` antialiased
/// bicubic: a level apart here and there) and in the rounding of the normalisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessorKind {
    /// `Qwen2VLImageProcessor` (PIL): transformers' default before 4.54 or without
    /// torchvision; PAPO-Eval's (transformers 4.52).
    #[default]
    Slow,
    /// `Qwen2VLImageProcessorFast` (torchvision, on the CPU): what `use_fast=True` loads, as
    /// VPPO-RL's trainer does, and transformers 4.54+'s default when torchvision is installed.
    Fast,
}

impl ProcessorKind {
    pub fn name(self) -> &'static str {
        match self {
            ProcessorKind::Slow => "slow",
            ProcessorKind::Fast => "fast",
        }
    }
}

/// Settings of `preprocessor_config.json` that change the output.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageProcessor {
    /// Which implementation's arithmetic to follow (not part of the config file).
    pub kind: ProcessorKind,
    pub min_pixels: usize,
    pub max_pixels: usize,
    pub patch_size: usize,
    pub temporal_patch_size: usize,
    pub merge_size: usize,
    pub image_mean: [f32; 3],
    pub image_std: [f32; 3],
    pub rescale_factor: f64,
    pub do_resize: bool,
    pub do_rescale: bool,
    pub do_normalize: bool,
    pub do_convert_rgb: bool,
}

impl Default for ImageProcessor {
    /// transformers' defaults for Qwen2-VL / Qwen2.5-VL (OpenAI CLIP mean and std).
    fn default() -> Self {
        ImageProcessor {
            kind: ProcessorKind::Slow,
            min_pixels: 56 * 56,
            max_pixels: 28 * 28 * 1280,
            patch_size: 14,
            temporal_patch_size: 2,
            merge_size: 2,
            // f64 literals cast to f32, as numpy does with the config's Python floats
            image_mean: [
                0.48145466f64 as f32,
                0.4578275f64 as f32,
                0.40821073f64 as f32,
            ],
            image_std: [
                0.26862954f64 as f32,
                0.26130258f64 as f32,
                0.27577711f64 as f32,
            ],
            rescale_factor: 1.0 / 255.0,
            do_resize: true,
            do_rescale: true,
            do_normalize: true,
            do_convert_rgb: true,
        }
    }
}

impl ImageProcessor {
    /// Reads `preprocessor_config.json`. `min_pixels`/`max_pixels` override
    /// `size.shortest_edge`/`size.longest_edge`, as in transformers.
    pub fn from_file(path: &Path) -> Result<Self, ModelError> {
        let text = std::fs::read_to_string(path).map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let v: Value = serde_json::from_str(&text).map_err(|source| ModelError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_json(&v, path)
    }

    pub fn from_json(v: &Value, path: &Path) -> Result<Self, ModelError> {
        let mut p = ImageProcessor::default();
        let uint = |key: &str, v: &Value| -> Result<usize, ModelError> {
            v.as_u64().map(|n| n as usize).ok_or_else(|| {
                ModelError::config(
                    path,
                    key,
                    format!("expected a non-negative integer, found {v}"),
                )
            })
        };
        let boolean = |key: &str, v: &Value| -> Result<bool, ModelError> {
            v.as_bool().ok_or_else(|| {
                ModelError::config(path, key, format!("expected true or false, found {v}"))
            })
        };
        let triple = |key: &str, v: &Value| -> Result<[f32; 3], ModelError> {
            let bad =
                || ModelError::config(path, key, format!("expected three numbers, found {v}"));
            match v {
                Value::Array(a) if a.len() == 3 => {
                    let mut out = [0f32; 3];
                    for (o, x) in out.iter_mut().zip(a) {
                        *o = x.as_f64().ok_or_else(bad)? as f32;
                    }
                    Ok(out)
                }
                Value::Number(n) => {
                    let x = n.as_f64().ok_or_else(bad)? as f32;
                    Ok([x; 3])
                }
                _ => Err(bad()),
            }
        };
        if let Some(size) = v.get("size").filter(|s| !s.is_null()) {
            if let Some(x) = size.get("shortest_edge") {
                p.min_pixels = uint("size.shortest_edge", x)?;
            }
            if let Some(x) = size.get("longest_edge") {
                p.max_pixels = uint("size.longest_edge", x)?;
            }
        }
        for (key, slot) in [
            ("min_pixels", &mut p.min_pixels),
            ("max_pixels", &mut p.max_pixels),
        ] {
            if let Some(x) = v.get(key).filter(|x| !x.is_null()) {
                *slot = uint(key, x)?;
            }
        }
        for (key, slot) in [
            ("patch_size", &mut p.patch_size),
            ("temporal_patch_size", &mut p.temporal_patch_size),
            ("merge_size", &mut p.merge_size),
        ] {
            if let Some(x) = v.get(key) {
                *slot = uint(key, x)?;
                if *slot == 0 {
                    return Err(ModelError::config(path, key, "must be positive"));
                }
            }
        }
        for (key, slot) in [
            ("image_mean", &mut p.image_mean),
            ("image_std", &mut p.image_std),
        ] {
            if let Some(x) = v.get(key) {
                *slot = triple(key, x)?;
            }
        }
        if p.image_std.contains(&0.0) {
            return Err(ModelError::config(path, "image_std", "must not contain 0"));
        }
        if let Some(x) = v.get("rescale_factor") {
            p.rescale_factor = x
                .as_f64()
                .ok_or_else(|| ModelError::config(path, "rescale_factor", "expected a number"))?;
        }
        for (key, slot) in [
            ("do_resize", &mut p.do_resize),
            ("do_rescale", &mut p.do_rescale),
            ("do_normalize", &mut p.do_normalize),
            ("do_convert_rgb", &mut p.do_convert_rgb),
        ] {
            if let Some(x) = v.get(key) {
                *slot = boolean(key, x)?;
            }
        }
        if let Some(r) = v.get("resample") {
            if r.as_u64() != Some(3) {
                return Err(ModelError::config(
                    path,
                    "resample",
                    format!("only 3 (bicubic) is implemented, found {r}"),
                ));
            }
        }
        Ok(p)
    }

    /// Values in one flattened patch (for 3 channels).
    pub fn patch_dim(&self) -> usize {
        3 * self.temporal_patch_size * self.patch_size * self.patch_size
    }

    /// transformers' `smart_resize`: both sides multiples of `patch_size * merge_size`, close to
    /// the original aspect ratio, area within `[min_pixels, max_pixels]`. Python's `round` rounds
    /// halves to even, and so does this.
    pub fn smart_resize(&self, height: usize, width: usize) -> Result<(usize, usize), ModelError> {
        let factor = (self.patch_size * self.merge_size) as f64;
        let bad = |message: String| ModelError::Image {
            source_name: format!("{width}x{height} image"),
            message,
        };
        if height == 0 || width == 0 {
            return Err(bad("empty image".to_string()));
        }
        let (h, w) = (height as f64, width as f64);
        if h.max(w) / h.min(w) > 200.0 {
            return Err(bad(
                "aspect ratio above 200 (the reference rejects these too)".to_string(),
            ));
        }
        let mut h_bar = (h / factor).round_ties_even() * factor;
        let mut w_bar = (w / factor).round_ties_even() * factor;
        if h_bar * w_bar > self.max_pixels as f64 {
            let beta = ((h * w) / self.max_pixels as f64).sqrt();
            h_bar = factor.max((h / beta / factor).floor() * factor);
            w_bar = factor.max((w / beta / factor).floor() * factor);
        } else if h_bar * w_bar < self.min_pixels as f64 {
            let beta = (self.min_pixels as f64 / (h * w)).sqrt();
            h_bar = (h * beta / factor).ceil() * factor;
            w_bar = (w * beta / factor).ceil() * factor;
        }
        Ok((h_bar as usize, w_bar as usize))
    }

    /// Decodes an image file and preprocesses it.
    pub fn preprocess_file(&self, path: &Path) -> Result<ProcessedImage, ModelError> {
        let img = image::open(path).map_err(|e| ModelError::Image {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        self.preprocess(&img)
    }

    /// Preprocesses a decoded image: [`Self::resize`] then [`Self::normalize`].
    pub fn preprocess(&self, img: &image::DynamicImage) -> Result<ProcessedImage, ModelError> {
        let resized = self.resize(img)?;
        Ok(self.normalize(&resized))
    }

    /// The first half of preprocessing: RGB (transparency over white) resized to the
    /// processor's grid. (Image perturbations for token perception apply before this, to the
    /// image the dataset delivers, as the reference applies them.)
    pub fn resize(&self, img: &image::DynamicImage) -> Result<image::RgbImage, ModelError> {
        let rgb = to_rgb_over_white(img);
        let (width, height) = (rgb.width() as usize, rgb.height() as usize);
        let (new_h, new_w) = if self.do_resize {
            self.smart_resize(height, width)?
        } else {
            (height, width)
        };
        let factor = self.patch_size * self.merge_size;
        if new_h % factor != 0 || new_w % factor != 0 {
            return Err(ModelError::Image {
                source_name: format!("{width}x{height} image"),
                message: format!(
                    "size {new_w}x{new_h} is not a multiple of {factor} (enable do_resize)"
                ),
            });
        }
        if (new_w, new_h) == (width, height) {
            return Ok(rgb);
        }
        let pixels = match self.kind {
            ProcessorKind::Slow => resize_bicubic_rgb8(rgb.as_raw(), width, height, new_w, new_h),
            ProcessorKind::Fast => {
                resize_bicubic_torch_u8(rgb.as_raw(), 3, width, height, new_w, new_h)
            }
        };
        image::RgbImage::from_raw(new_w as u32, new_h as u32, pixels).ok_or_else(|| {
            ModelError::Image {
                source_name: format!("{width}x{height} image"),
                message: "resize produced a buffer of the wrong size".into(),
            }
        })
    }

    /// The second half of preprocessing: rescale, normalise and cut an image already at the
    /// processor's grid size (the output of [`Self::resize`], possibly perturbed) into patches.
    pub fn normalize(&self, resized: &image::RgbImage) -> ProcessedImage {
        let (new_w, new_h) = (resized.width() as usize, resized.height() as usize);
        let pixels = resized.as_raw();
        // channel-first float image
        let plane = new_h * new_w;
        let mut chw = vec![0f32; 3 * plane];
        if self.kind == ProcessorKind::Fast && self.do_rescale && self.do_normalize {
            // the fast processor fuses rescale into normalisation: f32 mean and std times
            // 1 / rescale_factor (an f32 product), then (x - mean) / std in f32
            let unit = (1.0 / self.rescale_factor) as f32;
            let mean = self.image_mean.map(|m| m * unit);
            let std = self.image_std.map(|s| s * unit);
            for (i, px) in pixels.chunks_exact(3).enumerate() {
                for c in 0..3 {
                    chw[c * plane + i] = (px[c] as f32 - mean[c]) / std[c];
                }
            }
            return self.patchify(&chw, new_h, new_w);
        }
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                let mut x = if self.do_rescale {
                    (px[c] as f64 * self.rescale_factor) as f32
                } else {
                    px[c] as f32
                };
                if self.do_normalize {
                    x = (x - self.image_mean[c]) / self.image_std[c];
                }
                chw[c * plane + i] = x;
            }
        }
        self.patchify(&chw, new_h, new_w)
    }

    /// Flattens a `3 x h x w` image (one frame repeated `temporal_patch_size` times) into patches.
    fn patchify(&self, chw: &[f32], h: usize, w: usize) -> ProcessedImage {
        let (p, m, tp) = (self.patch_size, self.merge_size, self.temporal_patch_size);
        let (gh, gw) = (h / p, w / p);
        let grid = GridThw { t: 1, h: gh, w: gw };
        let patch_dim = self.patch_dim();
        let mut out = Vec::with_capacity(grid.num_patches() * patch_dim);
        for bh in 0..gh / m {
            for bw in 0..gw / m {
                for mh in 0..m {
                    for mw in 0..m {
                        let (py, px) = (bh * m + mh, bw * m + mw);
                        for c in 0..3 {
                            for _t in 0..tp {
                                for y in 0..p {
                                    let row = c * h * w + (py * p + y) * w + px * p;
                                    out.extend_from_slice(&chw[row..row + p]);
                                }
                            }
                        }
                    }
                }
            }
        }
        ProcessedImage {
            pixel_values: out,
            patch_dim,
            grid_thw: grid,
        }
    }
}

/// RGB conversion as transformers' `convert_to_rgb`: images with transparency are composited
/// over white first. (Pillow's integer alpha compositing may differ from this by one level on
/// semi-transparent pixels; opaque images are unaffected.)
fn to_rgb_over_white(img: &image::DynamicImage) -> image::RgbImage {
    if !img.color().has_alpha() {
        return img.to_rgb8();
    }
    let rgba = img.to_rgba8();
    let mut out = image::RgbImage::new(rgba.width(), rgba.height());
    for (o, p) in out.pixels_mut().zip(rgba.pixels()) {
        let a = p[3] as u32;
        for c in 0..3 {
            o[c] = ((p[c] as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn smart_resize_rounds_half_to_even_like_python() {
        let p = ImageProcessor::default();
        // 70 / 28 = 2.5 -> 2 (Python), not 3
        assert_eq!(p.smart_resize(70, 100).unwrap(), (56, 112));
        assert_eq!(p.smart_resize(56, 56).unwrap(), (56, 56));
    }

    #[test]
    fn smart_resize_respects_pixel_bounds() {
        let p = ImageProcessor {
            max_pixels: 16000,
            ..ImageProcessor::default()
        };
        let (h, w) = p.smart_resize(150, 200).unwrap();
        assert!(h * w <= 16000 && h % 28 == 0 && w % 28 == 0);
        let (h, w) = ImageProcessor::default().smart_resize(30, 40).unwrap();
        assert!(h * w >= 56 * 56 && h % 28 == 0 && w % 28 == 0);
        assert!(p.smart_resize(1, 500).is_err());
    }

    #[test]
    fn patch_layout_is_channel_temporal_row_col() {
        // a 28x28 image whose value encodes (channel, y, x)
        let p = ImageProcessor::default();
        let (h, w) = (28, 28);
        let chw: Vec<f32> = (0..3 * h * w).map(|i| i as f32).collect();
        let out = p.patchify(&chw, h, w);
        assert_eq!(out.grid_thw, GridThw { t: 1, h: 2, w: 2 });
        let d = out.patch_dim;
        // patch 1 is (row 0, col 1): its first value is channel 0, y 0, x 14
        assert_eq!(out.pixel_values[d], 14.0);
        // within a patch, the second temporal copy repeats the first
        assert_eq!(out.pixel_values[14 * 14], out.pixel_values[0]);
        // channel 1 starts after 2 temporal copies of 14x14
        assert_eq!(out.pixel_values[2 * 14 * 14], (h * w) as f32);
    }
}
