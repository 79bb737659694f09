//! The language model: a Qwen2 decoder (GQA, q/k/v bias, RMSNorm, SwiGLU) with multimodal
//! rotary embedding (M-RoPE) and a tied or untied head.
//!
//! The decoder takes input embeddings (text and image features already merged), explicit per-row
//! 3-D positions and an additive attention mask, so the same code serves scoring (one pass over
//! whole sequences) and, in part 2, cached generation (queries shorter than keys).

use candle_core::{DType, Device, Tensor};

use super::config::TextConfig;
use super::ops;
use super::positions::MropePositions;
use super::weights::ParamLoader;
use super::ModelError;

/// Added to the scores of masked (query, key) pairs. Finite so that a row with every key masked
/// (a padding query) gives a uniform softmax instead of NaN, which would leak through `0 * NaN`.
pub const MASKED: f64 = -1e30;

struct DecoderLayer {
    input_norm: Tensor,
    q_w: Tensor,
    q_b: Tensor,
    k_w: Tensor,
    k_b: Tensor,
    v_w: Tensor,
    v_b: Tensor,
    o_w: Tensor,
    post_norm: Tensor,
    gate_w: Tensor,
    up_w: Tensor,
    down_w: Tensor,
}

/// Rotary tables for a batch: `cos`/`sin` of shape `(batch, 1, seq, head_dim)`.
pub struct RotaryTables {
    pub cos: Tensor,
    pub sin: Tensor,
}

/// The Qwen2.5-VL language model.
pub struct TextModel {
    cfg: TextConfig,
    embed: Tensor,
    layers: Vec<DecoderLayer>,
    norm: Tensor,
    lm_head: Tensor,
    dtype: DType,
    device: Device,
}

impl TextModel {
    pub fn load(cfg: &TextConfig, p: &ParamLoader) -> Result<Self, ModelError> {
        let (h, i, v) = (cfg.hidden_size, cfg.intermediate_size, cfg.vocab_size);
        let hd = cfg.head_dim();
        let (qh, kvh) = (cfg.num_attention_heads * hd, cfg.num_key_value_heads * hd);
        let embed = p.get("model.embed_tokens.weight", &[v, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for l in 0..cfg.num_hidden_layers {
            let n = |s: &str| format!("model.layers.{l}.{s}");
            layers.push(DecoderLayer {
                input_norm: p.get(&n("input_layernorm.weight"), &[h])?,
                q_w: p.get(&n("self_attn.q_proj.weight"), &[qh, h])?,
                q_b: p.get(&n("self_attn.q_proj.bias"), &[qh])?,
                k_w: p.get(&n("self_attn.k_proj.weight"), &[kvh, h])?,
                k_b: p.get(&n("self_attn.k_proj.bias"), &[kvh])?,
                v_w: p.get(&n("self_attn.v_proj.weight"), &[kvh, h])?,
                v_b: p.get(&n("self_attn.v_proj.bias"), &[kvh])?,
                o_w: p.get(&n("self_attn.o_proj.weight"), &[h, qh])?,
                post_norm: p.get(&n("post_attention_layernorm.weight"), &[h])?,
                gate_w: p.get(&n("mlp.gate_proj.weight"), &[i, h])?,
                up_w: p.get(&n("mlp.up_proj.weight"), &[i, h])?,
                down_w: p.get(&n("mlp.down_proj.weight"), &[h, i])?,
            });
        }
        let norm = p.get("model.norm.weight", &[h])?;
        // tied: the head *is* the embedding Var, so both uses add to one gradient
        let lm_head = if cfg.tie_word_embeddings {
            embed.clone()
        } else {
            p.get("lm_head.weight", &[v, h])?
        };
        Ok(TextModel {
            cfg: cfg.clone(),
            embed,
            layers,
            norm,
            lm_head,
            dtype: p.dtype(),
            device: p.device().clone(),
        })
    }

    pub fn config(&self) -> &TextConfig {
        &self.cfg
    }

    /// Token embeddings of a flat id list: `(ids.len(), hidden)`.
    pub fn embed_ids(&self, ids: &[u32]) -> Result<Tensor, ModelError> {
        if let Some(&bad) = ids.iter().find(|&&t| t as usize >= self.cfg.vocab_size) {
            return Err(ModelError::Input(format!(
                "token id {bad} is outside the vocabulary (size {})",
                self.cfg.vocab_size
            )));
        }
        let idx = Tensor::from_slice(ids, ids.len(), &self.device)?;
        Ok(self.embed.index_select(&idx, 0)?)
    }

    /// M-RoPE tables for rows of positions, padded to `seq` (padding positions get 1, as in the
    /// reference; they are masked anyway).
    pub fn rotary_tables(
        &self,
        rows: &[&MropePositions],
        seq: usize,
    ) -> Result<RotaryTables, ModelError> {
        let hd = self.cfg.head_dim();
        let half = hd / 2;
        // f32 as in the reference: inv_freq = 1 / theta^(2i / head_dim)
        let theta = self.cfg.rope_theta as f32;
        let inv: Vec<f32> = (0..half)
            .map(|i| 1.0f32 / theta.powf((2 * i) as f32 / hd as f32))
            .collect();
        // which position component (t, h, w) drives each of the `half` frequencies
        let mut component = Vec::with_capacity(half);
        for (c, &len) in self.cfg.mrope_section.iter().enumerate() {
            component.extend(std::iter::repeat_n(c, len));
        }
        let b = rows.len();
        let mut cos = Vec::with_capacity(b * seq * hd);
        let mut sin = Vec::with_capacity(b * seq * hd);
        let mut angles = vec![0f32; half];
        for row in rows {
            for s in 0..seq {
                for (j, a) in angles.iter_mut().enumerate() {
                    let p = if s < row.len() {
                        row.components[component[j]][s]
                    } else {
                        1
                    };
                    *a = p as f32 * inv[j];
                }
                for _ in 0..2 {
                    cos.extend(angles.iter().map(|a| a.cos()));
                    sin.extend(angles.iter().map(|a| a.sin()));
                }
            }
        }
        let shape = (b, 1, seq, hd);
        Ok(RotaryTables {
            cos: Tensor::from_vec(cos, shape, &self.device)?.to_dtype(self.dtype)?,
            sin: Tensor::from_vec(sin, shape, &self.device)?.to_dtype(self.dtype)?,
        })
    }

    /// Causal + padding mask `(batch, 1, seq, seq)`: query `i` sees key `j <= i` of its own row
    /// when key `j` is a real token (`j < lengths[row]`). Right padding: real tokens never see
    /// padding, so their outputs equal the unpadded ones. Built on the device from a `seq x seq`
    /// causal part and a `batch x seq` key part, so the host never fills `batch * seq^2` values.
    pub fn causal_mask(&self, lengths: &[usize], seq: usize) -> Result<Tensor, ModelError> {
        let masked = MASKED as f32;
        let causal: Vec<f32> = (0..seq * seq)
            .map(|k| if k % seq <= k / seq { 0.0 } else { masked })
            .collect();
        let keys: Vec<f32> = lengths
            .iter()
            .flat_map(|&len| (0..seq).map(move |j| if j < len { 0.0 } else { masked }))
            .collect();
        let causal = Tensor::from_vec(causal, (1, 1, seq, seq), &self.device)?;
        let keys = Tensor::from_vec(keys, (lengths.len(), 1, 1, seq), &self.device)?;
        // clamp doubly-masked entries back to MASKED, finite in every dtype
        let mask = causal.broadcast_add(&keys)?.maximum(masked)?;
        Ok(mask.to_dtype(self.dtype)?)
    }

    /// Runs the decoder over `(batch, seq, hidden)` embeddings; returns the final-normed hidden
    /// states, same shape.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        rope: &RotaryTables,
        mask: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let mut x = embeds.clone();
        for layer in &self.layers {
            x = self.layer(layer, &x, rope, mask)?;
        }
        Ok(ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// Logits of hidden states (any leading shape): `(.., vocab)`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        Ok(ops::linear(hidden, &self.lm_head, None)?)
    }

    fn layer(
        &self,
        l: &DecoderLayer,
        x: &Tensor,
        rope: &RotaryTables,
        mask: &Tensor,
    ) -> Result<Tensor, ModelError> {
        let cfg = &self.cfg;
        let (b, s, _) = x.dims3()?;
        let hd = cfg.head_dim();
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let h = ops::rms_norm(x, &l.input_norm, cfg.rms_norm_eps)?;
        let q = ops::linear(&h, &l.q_w, Some(&l.q_b))?
            .reshape((b, s, nh, hd))?
            .transpose(1, 2)?;
        let k = ops::linear(&h, &l.k_w, Some(&l.k_b))?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?;
        let v = ops::linear(&h, &l.v_w, Some(&l.v_b))?
            .reshape((b, s, nkv, hd))?
            .transpose(1, 2)?;
        let q = ops::apply_rotary(&q, &rope.cos, &rope.sin)?.contiguous()?;
        let k = ops::apply_rotary(&k, &rope.cos, &rope.sin)?;
        let (k, v) = if nh == nkv {
            (k.contiguous()?, v.contiguous()?)
        } else {
            let rep = nh / nkv;
            let expand = |t: &Tensor| -> candle_core::Result<Tensor> {
                t.unsqueeze(2)?
                    .broadcast_as((b, nkv, rep, s, hd))?
                    .reshape((b, nh, s, hd))
            };
            (expand(&k)?, expand(&v)?)
        };
        let attn = ops::attention(&q, &k, &v, 1.0 / (hd as f64).sqrt(), Some(mask))?;
        let attn = attn.transpose(1, 2)?.reshape((b, s, nh * hd))?;
        let x = (x + ops::linear(&attn, &l.o_w, None)?)?;
        let h = ops::rms_norm(&x, &l.post_norm, cfg.rms_norm_eps)?;
        let mlp = ops::swiglu_mlp(&h, (&l.gate_w, None), (&l.up_w, None), (&l.down_w, None))?;
        Ok((x + mlp)?)
    }
}
