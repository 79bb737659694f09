//! The vision tower: patch embedding, blocks with 2-D rotary embedding and window attention,
//! and the 2x2 patch merger into the language model's width.
//!
//! Token order, as in transformers: patches arrive grouped by merge unit (2x2 neighbours
//! consecutive). Before the blocks they are permuted into window order (windows of
//! `merger_window_size` x `merger_window_size` merge units, row-major over the image, each window
//! row-major inside; the last row/column of windows may be partial); windowed blocks attend within
//! each window, blocks in `fullatt_block_indexes` over each whole image. The merger's output is
//! permuted back to merge-unit (raster) order.

use candle_core::{DType, Device, Tensor};

use super::config::VisionConfig;
use super::ops;
use super::processor::{GridThw, ProcessedImage};
use super::weights::ParamLoader;
use super::ModelError;

struct VisionBlock {
    norm1: Tensor,
    norm2: Tensor,
    qkv_w: Tensor,
    qkv_b: Tensor,
    proj_w: Tensor,
    proj_b: Tensor,
    gate_w: Tensor,
    gate_b: Tensor,
    up_w: Tensor,
    up_b: Tensor,
    down_w: Tensor,
    down_b: Tensor,
}

/// Where each window / image starts and ends in the (window-ordered) token sequence, plus the
/// permutation between merge-unit order and window order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowLayout {
    /// For each position in window order, the merge unit (raster order) placed there.
    pub window_index: Vec<usize>,
    /// Patch offsets of the windows, starting at 0 (empty windows removed).
    pub cu_window_seqlens: Vec<usize>,
    /// Patch offsets of the images, starting at 0.
    pub cu_seqlens: Vec<usize>,
}

/// transformers' `get_window_index` plus the per-image `cu_seqlens`.
pub fn window_layout(grids: &[GridThw], merge: usize, merger_window: usize) -> WindowLayout {
    let unit = merge * merge;
    let mut window_index = Vec::new();
    let mut cu_window = vec![0usize];
    let mut cu_seqlens = vec![0usize];
    let mut base = 0usize;
    for g in grids {
        let (lh, lw) = (g.h / merge, g.w / merge);
        // ceil division: the reference pads up to a multiple (and adds a whole empty window row
        // when already a multiple; empty windows contribute no tokens)
        let nwh = lh.div_ceil(merger_window);
        let nww = lw.div_ceil(merger_window);
        for t in 0..g.t {
            for wy in 0..nwh {
                for wx in 0..nww {
                    let mut count = 0;
                    for y in wy * merger_window..((wy + 1) * merger_window).min(lh) {
                        for x in wx * merger_window..((wx + 1) * merger_window).min(lw) {
                            window_index.push(base + t * lh * lw + y * lw + x);
                            count += 1;
                        }
                    }
                    if count > 0 {
                        let last = *cu_window.last().unwrap_or(&0);
                        cu_window.push(last + count * unit);
                    }
                }
            }
            let last = *cu_seqlens.last().unwrap_or(&0);
            cu_seqlens.push(last + g.h * g.w);
        }
        base += g.t * lh * lw;
    }
    WindowLayout {
        window_index,
        cu_window_seqlens: cu_window,
        cu_seqlens,
    }
}

/// The vision tower of Qwen2.5-VL.
pub struct VisionTower {
    cfg: VisionConfig,
    /// Conv3d kernel flattened to `(hidden, patch_dim)`: a stride-equal-kernel convolution over
    /// pre-cut patches is one matrix product.
    patch_embed: Tensor,
    blocks: Vec<VisionBlock>,
    merger_norm: Tensor,
    merger_fc1_w: Tensor,
    merger_fc1_b: Tensor,
    merger_fc2_w: Tensor,
    merger_fc2_b: Tensor,
    dtype: DType,
    device: Device,
}

impl VisionTower {
    pub fn load(cfg: &VisionConfig, p: &ParamLoader) -> Result<Self, ModelError> {
        let h = cfg.hidden_size;
        let i = cfg.intermediate_size;
        let patch = p.get(
            "visual.patch_embed.proj.weight",
            &[
                h,
                cfg.in_channels,
                cfg.temporal_patch_size,
                cfg.patch_size,
                cfg.patch_size,
            ],
        )?;
        let patch_embed = patch.reshape((h, cfg.patch_dim()))?;
        let mut blocks = Vec::with_capacity(cfg.depth);
        for b in 0..cfg.depth {
            let n = |s: &str| format!("visual.blocks.{b}.{s}");
            blocks.push(VisionBlock {
                norm1: p.get(&n("norm1.weight"), &[h])?,
                norm2: p.get(&n("norm2.weight"), &[h])?,
                qkv_w: p.get(&n("attn.qkv.weight"), &[3 * h, h])?,
                qkv_b: p.get(&n("attn.qkv.bias"), &[3 * h])?,
                proj_w: p.get(&n("attn.proj.weight"), &[h, h])?,
                proj_b: p.get(&n("attn.proj.bias"), &[h])?,
                gate_w: p.get(&n("mlp.gate_proj.weight"), &[i, h])?,
                gate_b: p.get(&n("mlp.gate_proj.bias"), &[i])?,
                up_w: p.get(&n("mlp.up_proj.weight"), &[i, h])?,
                up_b: p.get(&n("mlp.up_proj.bias"), &[i])?,
                down_w: p.get(&n("mlp.down_proj.weight"), &[h, i])?,
                down_b: p.get(&n("mlp.down_proj.bias"), &[h])?,
            });
        }
        let m = h * cfg.spatial_merge_size * cfg.spatial_merge_size;
        Ok(VisionTower {
            cfg: cfg.clone(),
            patch_embed,
            blocks,
            merger_norm: p.get("visual.merger.ln_q.weight", &[h])?,
            merger_fc1_w: p.get("visual.merger.mlp.0.weight", &[m, m])?,
            merger_fc1_b: p.get("visual.merger.mlp.0.bias", &[m])?,
            merger_fc2_w: p.get("visual.merger.mlp.2.weight", &[cfg.out_hidden_size, m])?,
            merger_fc2_b: p.get("visual.merger.mlp.2.bias", &[cfg.out_hidden_size])?,
            dtype: p.dtype(),
            device: p.device().clone(),
        })
    }

    /// 2-D rotary tables `(cos, sin)` of shape `(patches, head_dim)` in window order.
    fn rotary(
        &self,
        grids: &[GridThw],
        layout: &WindowLayout,
    ) -> Result<(Tensor, Tensor), ModelError> {
        let m = self.cfg.spatial_merge_size;
        let unit = m * m;
        let dim = self.cfg.head_dim() / 2; // rotary dim of the reference's VisionRotaryEmbedding
        let n_freq = dim / 2;
        // f32 as in the reference: inv_freq = 1 / 10000^(2i/dim)
        let inv: Vec<f32> = (0..n_freq)
            .map(|i| 1.0f32 / 10000f32.powf((2 * i) as f32 / dim as f32))
            .collect();
        // (row, col) of each patch in merge-unit order
        let mut pos: Vec<(usize, usize)> = Vec::new();
        for g in grids {
            for _t in 0..g.t {
                for by in 0..g.h / m {
                    for bx in 0..g.w / m {
                        for dy in 0..m {
                            for dx in 0..m {
                                pos.push((by * m + dy, bx * m + dx));
                            }
                        }
                    }
                }
            }
        }
        let head_dim = self.cfg.head_dim();
        let n = pos.len();
        let mut cos = Vec::with_capacity(n * head_dim);
        let mut sin = Vec::with_capacity(n * head_dim);
        for &w in &layout.window_index {
            for k in 0..unit {
                let (r, c) = pos[w * unit + k];
                // [h freqs, w freqs] twice (the reference concatenates emb with itself)
                let angles: Vec<f32> = inv
                    .iter()
                    .map(|f| r as f32 * f)
                    .chain(inv.iter().map(|f| c as f32 * f))
                    .collect();
                for _ in 0..2 {
                    cos.extend(angles.iter().map(|a| a.cos()));
                    sin.extend(angles.iter().map(|a| a.sin()));
                }
            }
        }
        let cos = Tensor::from_vec(cos, (n, head_dim), &self.device)?.to_dtype(self.dtype)?;
        let sin = Tensor::from_vec(sin, (n, head_dim), &self.device)?.to_dtype(self.dtype)?;
        Ok((cos, sin))
    }

    /// Encodes images; returns one `(tokens, out_hidden_size)` tensor per image, tokens in the
    /// order of that image's `<|image_pad|>` tokens.
    pub fn forward(&self, images: &[&ProcessedImage]) -> Result<Vec<Tensor>, ModelError> {
        if images.is_empty() {
            return Ok(Vec::new());
        }
        let cfg = &self.cfg;
        let m = cfg.spatial_merge_size;
        let unit = m * m;
        let patch_dim = cfg.patch_dim();
        let mut grids = Vec::with_capacity(images.len());
        let mut values: Vec<f32> = Vec::new();
        for img in images {
            if img.patch_dim != patch_dim {
                return Err(ModelError::Input(format!(
                    "image patches have {} values, the vision tower expects {patch_dim}",
                    img.patch_dim
                )));
            }
            let g = img.grid_thw;
            if g.h % m != 0 || g.w % m != 0 || img.pixel_values.len() != g.num_patches() * patch_dim
            {
                return Err(ModelError::Input(format!(
                    "image grid {}x{}x{} does not match its {} pixel values",
                    g.t,
                    g.h,
                    g.w,
                    img.pixel_values.len()
                )));
            }
            grids.push(g);
            values.extend_from_slice(&img.pixel_values);
        }
        let n = values.len() / patch_dim;
        let pixels =
            Tensor::from_vec(values, (n, patch_dim), &self.device)?.to_dtype(self.dtype)?;
        let layout = window_layout(&grids, m, cfg.merger_window_size());

        let x = ops::linear(&pixels, &self.patch_embed, None)?; // (n, hidden)
        let order: Vec<u32> = layout
            .window_index
            .iter()
            .flat_map(|&w| (0..unit).map(move |k| (w * unit + k) as u32))
            .collect();
        let order = Tensor::from_vec(order, n, &self.device)?;
        let mut x = x.index_select(&order, 0)?;
        let (cos, sin) = self.rotary(&grids, &layout)?;

        for (i, block) in self.blocks.iter().enumerate() {
            let cu = if cfg.fullatt_block_indexes.contains(&i) {
                &layout.cu_seqlens
            } else {
                &layout.cu_window_seqlens
            };
            x = self.block(block, &x, &cos, &sin, cu)?;
        }

        // merger: norm, group each merge unit's patches into one row, MLP with exact GELU
        let x = ops::rms_norm(&x, &self.merger_norm, 1e-6)?;
        let x = x.reshape((n / unit, cfg.hidden_size * unit))?;
        let x = ops::linear(&x, &self.merger_fc1_w, Some(&self.merger_fc1_b))?.gelu_erf()?;
        let x = ops::linear(&x, &self.merger_fc2_w, Some(&self.merger_fc2_b))?;
        // back to raster (merge-unit) order
        let mut reverse = vec![0u32; layout.window_index.len()];
        for (pos, &w) in layout.window_index.iter().enumerate() {
            reverse[w] = pos as u32;
        }
        let reverse = Tensor::from_vec(reverse, n / unit, &self.device)?;
        let x = x.index_select(&reverse, 0)?;
        let mut out = Vec::with_capacity(grids.len());
        let mut start = 0;
        for g in &grids {
            let len = g.num_tokens(m);
            out.push(x.narrow(0, start, len)?);
            start += len;
        }
        Ok(out)
    }

    fn block(
        &self,
        b: &VisionBlock,
        x: &Tensor,
        cos: &Tensor,
        sin: &Tensor,
        cu: &[usize],
    ) -> Result<Tensor, ModelError> {
        let cfg = &self.cfg;
        let (n, h) = (x.dim(0)?, cfg.hidden_size);
        let heads = cfg.num_heads;
        let hd = cfg.head_dim();
        let normed = ops::rms_norm(x, &b.norm1, 1e-6)?;
        let qkv = ops::linear(&normed, &b.qkv_w, Some(&b.qkv_b))?.reshape((n, 3, heads, hd))?;
        let cos = cos.unsqueeze(1)?;
        let sin = sin.unsqueeze(1)?;
        let q = ops::apply_rotary(&qkv.narrow(1, 0, 1)?.squeeze(1)?, &cos, &sin)?;
        let k = ops::apply_rotary(&qkv.narrow(1, 1, 1)?.squeeze(1)?, &cos, &sin)?;
        let v = qkv.narrow(1, 2, 1)?.squeeze(1)?;
        // one batch row of (patches, heads, head_dim); attention stays inside each block of `cu`
        let scale = 1.0 / (hd as f64).sqrt();
        let mask = ops::AttentionMask::Blocks {
            bounds: cu.to_vec(),
        };
        let attn = ops::attention_heads(
            &q.unsqueeze(0)?,
            &k.unsqueeze(0)?,
            &v.unsqueeze(0)?,
            scale,
            &mask,
        )?;
        let attn = attn.reshape((n, h))?;
        let attn = ops::linear(&attn, &b.proj_w, Some(&b.proj_b))?;
        let x = (x + attn)?;
        let normed = ops::rms_norm(&x, &b.norm2, 1e-6)?;
        let mlp = ops::swiglu_mlp(
            &normed,
            (&b.gate_w, Some(&b.gate_b)),
            (&b.up_w, Some(&b.up_b)),
            (&b.down_w, Some(&b.down_b)),
        )?;
        Ok((x + mlp)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_layout_matches_reference_on_a_padded_grid() {
        // 6x8 patches -> 3x4 merge units, windows of 2x2 units: 2 rows x 2 cols of windows,
        // the bottom row only one unit high
        let l = window_layout(&[GridThw { t: 1, h: 6, w: 8 }], 2, 2);
        assert_eq!(l.window_index, vec![0, 1, 4, 5, 2, 3, 6, 7, 8, 9, 10, 11]);
        assert_eq!(l.cu_window_seqlens, vec![0, 16, 32, 40, 48]);
        assert_eq!(l.cu_seqlens, vec![0, 48]);
    }

    #[test]
    fn window_layout_offsets_second_image() {
        let g = GridThw { t: 1, h: 4, w: 4 };
        let l = window_layout(&[g, g], 2, 4);
        assert_eq!(l.window_index, vec![0, 1, 2, 3, 4, 5, 6, 7]);
        assert_eq!(l.cu_window_seqlens, vec![0, 16, 32]);
        assert_eq!(l.cu_seqlens, vec![0, 16, 32]);
    }
}
