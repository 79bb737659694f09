//! Pillow's bicubic (and nearest) resize of 8-bit images, reproduced integer for integer.
//!
//! Why: transformers' slow `Qwen2VLImageProcessor` resizes with `PIL.Image.resize(..., BICUBIC)`;
//! a generic bicubic (the `image` crate's, or a float one) differs by a few intensity levels on
//! most pixels, which moves the model's logits. Pillow's algorithm (libImaging/Resample.c):
//! a separable convolution, horizontal pass first, with the kernel widened by the scale factor
//! when shrinking (antialiasing), coefficients normalised per output pixel, converted to
//! fixed point with 22 fractional bits, accumulated in integers, rounded and clipped to 0..255
//! after each pass.

/// Fractional bits of Pillow's fixed-point coefficients: `32 - 8 - 2`.
const PRECISION_BITS: u32 = 22;

/// Pillow's bicubic kernel (a = -0.5), support 2.
fn bicubic(x: f64) -> f64 {
    const A: f64 = -0.5;
    let x = x.abs();
    if x < 1.0 {
        ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        (((x - 5.0) * x + 8.0) * x - 4.0) * A
    } else {
        0.0
    }
}

/// For each output index: the first input index, and the normalised weights of the inputs
/// from there on (Pillow's `precompute_coeffs`; PyTorch's antialiased kernels compute the same).
fn weights(in_size: usize, out_size: usize) -> Vec<(usize, Vec<f64>)> {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = 2.0 * filterscale;
    let ss = 1.0 / filterscale;
    (0..out_size)
        .map(|xx| {
            let center = (xx as f64 + 0.5) * scale;
            // Pillow truncates toward zero after adding 0.5 (`(int)(v + 0.5)`)
            let xmin = ((center - support + 0.5) as i64).max(0) as usize;
            let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(0) as usize;
            let mut w: Vec<f64> = (0..xmax.saturating_sub(xmin))
                .map(|x| bicubic((x as f64 + xmin as f64 - center + 0.5) * ss))
                .collect();
            let total: f64 = w.iter().sum();
            if total != 0.0 {
                for v in &mut w {
                    *v /= total;
                }
            }
            (xmin, w)
        })
        .collect()
}

/// `weights` as fixed-point integers with `precision` fractional bits, rounded half away
/// from zero (Pillow's `normalize_coeffs_8bpc`, PyTorch's int16 weights).
fn quantize(weights: Vec<(usize, Vec<f64>)>, precision: u32) -> Vec<(usize, Vec<i32>)> {
    let unit = (1u64 << precision) as f64;
    weights
        .into_iter()
        .map(|(xmin, w)| {
            let k = w
                .iter()
                .map(|&v| {
                    if v < 0.0 {
                        (-0.5 + v * unit) as i32
                    } else {
                        (0.5 + v * unit) as i32
                    }
                })
                .collect();
            (xmin, k)
        })
        .collect()
}

/// Per output index the first input index and its integer weights, and their fractional bits.
type Coefficients = (Vec<(usize, Vec<i32>)>, u32);

/// Pillow's fixed-point coefficients: 22 fractional bits.
fn pillow_coefficients(in_size: usize, out_size: usize) -> Coefficients {
    (
        quantize(weights(in_size, out_size), PRECISION_BITS),
        PRECISION_BITS,
    )
}

/// PyTorch's: 16-bit integers with as many fractional bits as keep the largest weight below
/// 2^15 (Pillow-SIMD's rule).
fn torch_coefficients(in_size: usize, out_size: usize) -> Coefficients {
    let w = weights(in_size, out_size);
    let max_weight = w
        .iter()
        .flat_map(|(_, w)| w.iter().copied())
        .fold(f64::NEG_INFINITY, f64::max);
    let mut precision = 0u32;
    while precision < 21 {
        let next = (0.5 + max_weight * (1u64 << (precision + 1)) as f64) as i64;
        if next >= 1 << 15 {
            break;
        }
        precision += 1;
    }
    (quantize(w, precision), precision)
}

/// The separable integer convolution both libraries use: a horizontal pass, then a vertical
/// one, each rounded (half up) and clipped to 0..255; a side that keeps its size is skipped.
fn separable_u8(
    pixels: &[u8],
    c_n: usize,
    (width, height): (usize, usize),
    (new_width, new_height): (usize, usize),
    coefficients: fn(usize, usize) -> Coefficients,
) -> Vec<u8> {
    let mut src: Vec<u8> = pixels.to_vec();
    let (mut w, h) = (width, height);
    if new_width != w {
        let (coeffs, precision) = coefficients(w, new_width);
        let half = 1i64 << (precision - 1);
        let mut out = vec![0u8; new_width * h * c_n];
        for y in 0..h {
            let row = &src[y * w * c_n..(y + 1) * w * c_n];
            for (xx, (xmin, k)) in coeffs.iter().enumerate() {
                for c in 0..c_n {
                    let mut acc = half;
                    for (i, &kv) in k.iter().enumerate() {
                        acc += row[(xmin + i) * c_n + c] as i64 * kv as i64;
                    }
                    out[(y * new_width + xx) * c_n + c] = clip8(acc, precision);
                }
            }
        }
        src = out;
        w = new_width;
    }
    if new_height != h {
        let (coeffs, precision) = coefficients(h, new_height);
        let half = 1i64 << (precision - 1);
        let mut out = vec![0u8; w * new_height * c_n];
        for (yy, (ymin, k)) in coeffs.iter().enumerate() {
            for x in 0..w {
                for c in 0..c_n {
                    let mut acc = half;
                    for (i, &kv) in k.iter().enumerate() {
                        acc += src[((ymin + i) * w + x) * c_n + c] as i64 * kv as i64;
                    }
                    out[(yy * w + x) * c_n + c] = clip8(acc, precision);
                }
            }
        }
        src = out;
    }
    src
}

fn clip8(acc: i64, precision: u32) -> u8 {
    (acc >> precision).clamp(0, 255) as u8
}

/// Resizes an interleaved RGB (3 bytes per pixel) image of `width x height` to
/// `new_width x new_height` exactly as `PIL.Image.resize(size, Image.BICUBIC)` does.
pub fn resize_bicubic_rgb8(
    pixels: &[u8],
    width: usize,
    height: usize,
    new_width: usize,
    new_height: usize,
) -> Vec<u8> {
    resize_bicubic_u8(pixels, 3, width, height, new_width, new_height)
}

/// [`resize_bicubic_rgb8`] for `channels` interleaved 8-bit channels (Pillow treats each
/// channel alike: 1 for "L", 4 for premultiplied "RGBa").
pub fn resize_bicubic_u8(
    pixels: &[u8],
    channels: usize,
    width: usize,
    height: usize,
    new_width: usize,
    new_height: usize,
) -> Vec<u8> {
    separable_u8(
        pixels,
        channels,
        (width, height),
        (new_width, new_height),
        pillow_coefficients,
    )
}

/// `PIL.Image.resize(size, Image.NEAREST)` (what Pillow uses for "P" and "1" images):
/// Pillow's affine "scaling" path (`Geometry.c`): the source coordinate starts at half a step
/// and grows by `in / out` per output pixel, accumulated in f64 and truncated, so rounding
/// drift over a row is part of the result.
pub fn resize_nearest_u8(
    pixels: &[u8],
    channels: usize,
    width: usize,
    height: usize,
    new_width: usize,
    new_height: usize,
) -> Vec<u8> {
    let positions = |input: usize, output: usize| -> Vec<usize> {
        let step = input as f64 / output as f64;
        let mut at = step * 0.5;
        (0..output)
            .map(|_| {
                let i = (at as usize).min(input - 1);
                at += step;
                i
            })
            .collect()
    };
    let (xs, ys) = (positions(width, new_width), positions(height, new_height));
    let mut out = Vec::with_capacity(new_width * new_height * channels);
    for &yin in &ys {
        for &xin in &xs {
            let at = (yin * width + xin) * channels;
            out.extend_from_slice(&pixels[at..at + channels]);
        }
    }
    out
}

/// PyTorch's bicubic antialiased resize of `uint8` images on the CPU
/// (`torch.nn.functional.interpolate(..., mode="bicubic", antialias=True)`, which torchvision's
/// `resize` and so transformers' *fast* image processors call on `uint8` tensors): Pillow's
/// separable filter and support, weights computed in f64 and normalised, then rounded to 16-bit
/// integers with as many fractional bits as keep the largest weight below 2^15 (Pillow-SIMD's
/// scheme, per pass), accumulated in integers, rounded and clipped after each pass, width first.
/// It differs from [`resize_bicubic_u8`] (22 fractional bits) by a level here and there.
pub fn resize_bicubic_torch_u8(
    pixels: &[u8],
    channels: usize,
    width: usize,
    height: usize,
    new_width: usize,
    new_height: usize,
) -> Vec<u8> {
    separable_u8(
        pixels,
        channels,
        (width, height),
        (new_width, new_height),
        torch_coefficients,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_size_is_identity() {
        let px: Vec<u8> = (0..(5 * 4 * 3)).map(|i| (i * 7 % 256) as u8).collect();
        assert_eq!(resize_bicubic_rgb8(&px, 5, 4, 5, 4), px);
    }

    #[test]
    fn constant_image_stays_constant() {
        // weights are normalised per output pixel, so a flat image stays flat at any scale
        let px = vec![77u8; 9 * 7 * 3];
        for (nw, nh) in [(3, 2), (20, 15), (9, 14)] {
            assert!(resize_bicubic_rgb8(&px, 9, 7, nw, nh)
                .iter()
                .all(|&v| v == 77));
        }
    }

    #[test]
    fn kernel_is_interpolating() {
        assert_eq!(bicubic(0.0), 1.0);
        assert_eq!(bicubic(1.0), 0.0);
        assert_eq!(bicubic(2.0), 0.0);
    }
}
