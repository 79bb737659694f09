//! What happens to an image before the checkpoint's processor sees it, as each reference ran it.
//!
//! Why a module of its own: the processor (smart_resize at the checkpoint's bounds, bicubic
//! resample, normalisation) is the same everywhere, but the image handed to it is not.
//! VPPO-RL's training (EasyR1's `process_image`) first scales the image into
//! `[min_pixels, max_pixels]` with PIL; PAPO-Eval's evaluation (LLaMA-Factory's Qwen2-VL plugin)
//! caps it at `768*768` / `32*32` pixels, stretches a side under 28 to 28 and squeezes an aspect
//! ratio above 200 to 180:1. Each step is a `PIL.Image.resize` with Pillow's default filter
//! (bicubic; nearest for "1" and "P" images; "LA" and "RGBA" resized premultiplied), and the
//! conversion to RGB comes after the first steps and drops alpha (it does not composite over
//! white as transformers' `convert_to_rgb` does). So the pixels depend on the PIL *mode* of the
//! decoded file, which [`SourceImage::decode`] reads from the file's header.
//!
//! The arithmetic follows Pillow 11 (`Image.resize`, `libImaging/Resample.c`, `Convert.c`):
//! new sizes `int(w * f)` with `f = sqrt(bound / (w * h))` in f64, premultiplication
//! `MULDIV255`, un-premultiplication `255 * c / a` in integers.

use image::{DynamicImage, RgbImage};
use serde::{Deserialize, Serialize};

use super::resize::{resize_bicubic_u8, resize_nearest_u8};
use super::ModelError;

/// Pillow's mode of a decoded image, as far as resizing and RGB conversion care.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum PilMode {
    /// "1": bilevel (1-bit PNG).
    Bilevel,
    /// "L": 8-bit grey.
    L,
    /// "LA": grey with alpha.
    La,
    /// "P": palette (indexed PNG, GIF, <= 8-bit BMP).
    P,
    /// "RGB".
    Rgb,
    /// "RGBA".
    Rgba,
}

impl PilMode {
    pub fn name(self) -> &'static str {
        match self {
            PilMode::Bilevel => "1",
            PilMode::L => "L",
            PilMode::La => "LA",
            PilMode::P => "P",
            PilMode::Rgb => "RGB",
            PilMode::Rgba => "RGBA",
        }
    }

    /// The mode Pillow opens an encoded file in, from its header (PNG colour type and bit
    /// depth, GIF, BMP bit count); other formats by their decoded colour type.
    pub fn of_file(bytes: &[u8], decoded: &DynamicImage) -> PilMode {
        if bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 25 {
            let (depth, colour) = (bytes[24], bytes[25]);
            return match colour {
                0 if depth == 1 => PilMode::Bilevel,
                0 => PilMode::L,
                3 => PilMode::P,
                4 => PilMode::La,
                6 => PilMode::Rgba,
                _ => PilMode::Rgb,
            };
        }
        if bytes.starts_with(b"GIF8") {
            return PilMode::P;
        }
        if bytes.starts_with(b"BM") && bytes.len() > 29 {
            let bits = u16::from_le_bytes([bytes[28], bytes[29]]);
            if bits <= 8 {
                // indexed BMP ("1" and "P" both resize by nearest, to the same colours)
                return PilMode::P;
            }
        }
        match decoded.color() {
            image::ColorType::L8 | image::ColorType::L16 => PilMode::L,
            image::ColorType::La8 | image::ColorType::La16 => PilMode::La,
            c if c.has_alpha() => PilMode::Rgba,
            _ => PilMode::Rgb,
        }
    }
}

/// A decoded image with the mode Pillow would give it.
#[derive(Debug, Clone)]
pub struct SourceImage {
    pub mode: PilMode,
    pub width: usize,
    pub height: usize,
    /// Interleaved 8-bit channels: 1 ("1", "L"), 2 ("LA"), 3 ("P" as its palette colours,
    /// "RGB") or 4 ("RGBA").
    pixels: Vec<u8>,
}

impl SourceImage {
    /// Decodes an encoded image (PNG, JPEG, GIF, BMP, WebP, ...); `name` goes into errors.
    pub fn decode(bytes: &[u8], name: &str) -> Result<SourceImage, ModelError> {
        let decoded = image::load_from_memory(bytes).map_err(|e| ModelError::Image {
            source_name: name.to_string(),
            message: e.to_string(),
        })?;
        Ok(Self::from_dynamic(
            &decoded,
            PilMode::of_file(bytes, &decoded),
        ))
    }

    /// Reads and decodes an image file.
    pub fn open(path: &std::path::Path) -> Result<SourceImage, ModelError> {
        let bytes = std::fs::read(path).map_err(|e| ModelError::Image {
            source_name: path.display().to_string(),
            message: e.to_string(),
        })?;
        Self::decode(&bytes, &path.display().to_string())
    }

    /// An already decoded image in `mode`. Sixteen-bit samples keep their high byte (Pillow's
    /// "RGB;16B" raw mode), grey ones are clipped at 255 as Pillow's "I;16" to "L" is.
    pub fn from_dynamic(img: &DynamicImage, mode: PilMode) -> SourceImage {
        let (width, height) = (img.width() as usize, img.height() as usize);
        let high_byte = |v: &[u16]| v.iter().map(|&x| (x >> 8) as u8).collect::<Vec<u8>>();
        let pixels = match mode {
            PilMode::Bilevel | PilMode::L => match img {
                DynamicImage::ImageLuma16(g) => {
                    g.as_raw().iter().map(|&v| v.min(255) as u8).collect()
                }
                _ => img.to_luma8().into_raw(),
            },
            PilMode::La => img.to_luma_alpha8().into_raw(),
            PilMode::P | PilMode::Rgb => match img {
                DynamicImage::ImageRgb16(i) => high_byte(i.as_raw()),
                _ => img.to_rgb8().into_raw(),
            },
            PilMode::Rgba => match img {
                DynamicImage::ImageRgba16(i) => high_byte(i.as_raw()),
                _ => img.to_rgba8().into_raw(),
            },
        };
        SourceImage {
            mode,
            width,
            height,
            pixels,
        }
    }

    /// An RGB image as it is (mode "RGB").
    pub fn from_rgb(img: &RgbImage) -> SourceImage {
        SourceImage {
            mode: PilMode::Rgb,
            width: img.width() as usize,
            height: img.height() as usize,
            pixels: img.as_raw().clone(),
        }
    }

    fn channels(&self) -> usize {
        match self.mode {
            PilMode::Bilevel | PilMode::L => 1,
            PilMode::La => 2,
            PilMode::P | PilMode::Rgb => 3,
            PilMode::Rgba => 4,
        }
    }

    /// `Image.resize((w, h))` with Pillow's default filter for the mode.
    pub fn resize(&self, width: usize, height: usize) -> SourceImage {
        if (width, height) == (self.width, self.height) {
            return self.clone();
        }
        let c = self.channels();
        let pixels = match self.mode {
            PilMode::Bilevel | PilMode::P => {
                resize_nearest_u8(&self.pixels, c, self.width, self.height, width, height)
            }
            PilMode::L | PilMode::Rgb => {
                resize_bicubic_u8(&self.pixels, c, self.width, self.height, width, height)
            }
            PilMode::La | PilMode::Rgba => {
                let pre = premultiply(&self.pixels, c);
                let out = resize_bicubic_u8(&pre, c, self.width, self.height, width, height);
                unpremultiply(&out, c)
            }
        };
        SourceImage {
            mode: self.mode,
            width,
            height,
            pixels,
        }
    }

    /// `Image.convert("RGB")`: grey replicated, alpha dropped, palette colours as they are.
    pub fn to_rgb(&self) -> RgbImage {
        let rgb: Vec<u8> = match self.mode {
            PilMode::Rgb | PilMode::P => self.pixels.clone(),
            PilMode::Bilevel | PilMode::L => self.pixels.iter().flat_map(|&v| [v, v, v]).collect(),
            PilMode::La => self
                .pixels
                .chunks_exact(2)
                .flat_map(|p| [p[0], p[0], p[0]])
                .collect(),
            PilMode::Rgba => self
                .pixels
                .chunks_exact(4)
                .flat_map(|p| [p[0], p[1], p[2]])
                .collect(),
        };
        RgbImage::from_raw(self.width as u32, self.height as u32, rgb)
            .unwrap_or_else(|| RgbImage::new(self.width as u32, self.height as u32))
    }

    /// The image as transformers' processor alone would take it: `convert_to_rgb`, which
    /// composites transparency over white.
    pub fn to_rgb_over_white(&self) -> RgbImage {
        let c = self.channels();
        if !matches!(self.mode, PilMode::La | PilMode::Rgba) {
            return self.to_rgb();
        }
        let rgb: Vec<u8> = self
            .pixels
            .chunks_exact(c)
            .flat_map(|p| {
                let a = p[c - 1] as u32;
                let over = |v: u8| ((v as u32 * a + 255 * (255 - a) + 127) / 255) as u8;
                if c == 2 {
                    let g = over(p[0]);
                    [g, g, g]
                } else {
                    [over(p[0]), over(p[1]), over(p[2])]
                }
            })
            .collect();
        RgbImage::from_raw(self.width as u32, self.height as u32, rgb)
            .unwrap_or_else(|| RgbImage::new(self.width as u32, self.height as u32))
    }
}

/// Pillow's "RGBA" -> "RGBa" (and "LA" -> "La"): each colour channel times alpha,
/// `MULDIV255`.
fn premultiply(pixels: &[u8], c: usize) -> Vec<u8> {
    let mut out = pixels.to_vec();
    for p in out.chunks_exact_mut(c) {
        let a = p[c - 1] as u32;
        for v in &mut p[..c - 1] {
            let t = *v as u32 * a + 128;
            *v = (((t >> 8) + t) >> 8) as u8;
        }
    }
    out
}

/// Pillow's "RGBa" -> "RGBA": `255 * c / a` (integer division, clipped), colour kept as it is
/// where alpha is 0 or 255.
fn unpremultiply(pixels: &[u8], c: usize) -> Vec<u8> {
    let mut out = pixels.to_vec();
    for p in out.chunks_exact_mut(c) {
        let a = p[c - 1] as u32;
        if a == 0 || a == 255 {
            continue;
        }
        for v in &mut p[..c - 1] {
            *v = ((255 * *v as u32) / a).min(255) as u8;
        }
    }
    out
}

/// The image pipeline in front of the processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "kebab-case", deny_unknown_fields)]
pub enum PreResize {
    /// transformers' processor alone: RGB conversion with transparency over white, no resize.
    None,
    /// EasyR1's `process_image` (VPPO-RL's training data): if `w*h > max_pixels` scale by
    /// `sqrt(max_pixels / (w*h))`, then if `w*h < min_pixels` by `sqrt(min_pixels / (w*h))`,
    /// sizes `int()`-truncated; then `convert("RGB")`.
    Easyr1 { min_pixels: u64, max_pixels: u64 },
    /// LLaMA-Factory's Qwen2-VL plugin (PAPO-Eval, the paper's evaluation): the same two caps
    /// and `convert("RGB")`, then a side under 28 stretched to 28, then an aspect ratio above
    /// 200 squeezed to 180:1.
    LlamaFactory { min_pixels: u64, max_pixels: u64 },
}

impl PreResize {
    /// PAPO-Eval's evaluation: LLaMA-Factory's defaults `image_max_pixels = 768*768`,
    /// `image_min_pixels = 32*32`.
    pub const EVAL: PreResize = PreResize::LlamaFactory {
        min_pixels: 32 * 32,
        max_pixels: 768 * 768,
    };

    /// The RGB image the processor receives.
    pub fn apply(&self, src: &SourceImage) -> RgbImage {
        match *self {
            PreResize::None => src.to_rgb_over_white(),
            PreResize::Easyr1 {
                min_pixels,
                max_pixels,
            } => cap_pixels(src, min_pixels, max_pixels).to_rgb(),
            PreResize::LlamaFactory {
                min_pixels,
                max_pixels,
            } => {
                let mut img =
                    SourceImage::from_rgb(&cap_pixels(src, min_pixels, max_pixels).to_rgb());
                if img.width.min(img.height) < 28 {
                    img = img.resize(img.width.max(28), img.height.max(28));
                }
                // Python compares the true quotients
                if img.width as f64 / img.height as f64 > 200.0 {
                    img = img.resize(img.height * 180, img.height);
                }
                if img.height as f64 / img.width as f64 > 200.0 {
                    img = img.resize(img.width, img.width * 180);
                }
                img.to_rgb()
            }
        }
    }
}

/// The two pixel caps of `process_image` / `_preprocess_image`, in their order.
fn cap_pixels(src: &SourceImage, min_pixels: u64, max_pixels: u64) -> SourceImage {
    let mut img = src.clone();
    let area = |i: &SourceImage| (i.width * i.height) as u64;
    let scaled = |i: &SourceImage, bound: u64| {
        let f = (bound as f64 / area(i) as f64).sqrt();
        (
            (i.width as f64 * f) as usize,
            (i.height as f64 * f) as usize,
        )
    };
    if area(&img) > max_pixels {
        let (w, h) = scaled(&img, max_pixels);
        img = img.resize(w.max(1), h.max(1));
    }
    if area(&img) < min_pixels && area(&img) > 0 {
        let (w, h) = scaled(&img, min_pixels);
        img = img.resize(w.max(1), h.max(1));
    }
    img
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rgb(w: usize, h: usize) -> SourceImage {
        SourceImage {
            mode: PilMode::Rgb,
            width: w,
            height: h,
            pixels: (0..w * h * 3).map(|i| (i * 37 % 251) as u8).collect(),
        }
    }

    #[test]
    fn easyr1_sizes_truncate_as_python_int() {
        let p = PreResize::Easyr1 {
            min_pixels: 200704,
            max_pixels: 1003520,
        };
        // 50x50: f = sqrt(200704 / 2500) = 8.96..., int(50 * f) = 447
        assert_eq!(p.apply(&rgb(50, 50)).dimensions(), (447, 447));
        // already inside the bounds: unchanged
        assert_eq!(p.apply(&rgb(447, 449)).dimensions(), (447, 449));
        // 1600x800 over the max: f = sqrt(1003520 / 1280000)
        let f = (1003520f64 / 1280000.0).sqrt();
        assert_eq!(
            p.apply(&rgb(1600, 800)).dimensions(),
            ((1600.0 * f) as u32, (800.0 * f) as u32)
        );
    }

    #[test]
    fn llama_factory_stretches_thin_images_and_squeezes_extreme_ratios() {
        let p = PreResize::EVAL;
        // 20x2000: area 40000 fits; width 20 < 28 -> 28x2000
        assert_eq!(p.apply(&rgb(20, 2000)).dimensions(), (28, 2000));
        // 6000x28: area 168000 fits; ratio 214 > 200 -> 5040x28
        assert_eq!(p.apply(&rgb(6000, 28)).dimensions(), (5040, 28));
    }

    #[test]
    fn alpha_is_dropped_not_composited_and_premultiplied_for_resizing() {
        let src = SourceImage {
            mode: PilMode::Rgba,
            width: 1,
            height: 1,
            pixels: vec![200, 100, 50, 0],
        };
        assert_eq!(src.to_rgb().as_raw(), &vec![200, 100, 50]);
        assert_eq!(src.to_rgb_over_white().as_raw(), &vec![255, 255, 255]);
        // resizing a fully transparent image premultiplies its colour away
        let big = src.resize(2, 2);
        assert_eq!(big.to_rgb().as_raw(), &vec![0; 12]);
    }
}
