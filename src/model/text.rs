//! The language model: a Qwen2 decoder (GQA, q/k/v bias, RMSNorm, SwiGLU) with multimodal
//! rotary embedding (M-RoPE) and a tied or untied head.
//!
//! The decoder takes input embeddings (text and image features already merged), explicit per-row
//! 3-D positions and each row's length (right padding, causal attention over the row's own
//! tokens), so the same code serves scoring (one pass over whole sequences) and cached
//! generation (queries shorter than keys).

use candle_core::{DType, Device, Tensor};

use super::config::TextConfig;
use super::ops::{self, AttentionMask};
use super::positions::MropePositions;
use super::rows::rows_linear;
use super::weights::ParamLoader;
use super::ModelError;

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

/// Rotary tables for a batch: `cos`/`sin` of shape `(batch, seq, 1, head_dim)`, broadcast over
/// the heads of `(batch, seq, heads, head_dim)` queries and keys.
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
        let shape = (b, seq, 1, hd);
        Ok(RotaryTables {
            cos: Tensor::from_vec(cos, shape, &self.device)?.to_dtype(self.dtype)?,
            sin: Tensor::from_vec(sin, shape, &self.device)?.to_dtype(self.dtype)?,
        })
    }

    /// Runs the decoder over `(batch, seq, hidden)` embeddings; returns the final-normed hidden
    /// states, same shape.
    pub fn forward_embeds(
        &self,
        embeds: &Tensor,
        rope: &RotaryTables,
        lengths: &[usize],
    ) -> Result<Tensor, ModelError> {
        self.run_layers(embeds, rope, lengths, None)
    }

    /// [`Self::forward_embeds`] that also returns each layer's keys (after the rotary embedding)
    /// and values, `(batch, kv_heads, seq, head_dim)` each: the prefill of a KV cache.
    pub fn forward_embeds_with_kv(
        &self,
        embeds: &Tensor,
        rope: &RotaryTables,
        lengths: &[usize],
    ) -> Result<(Tensor, Vec<(Tensor, Tensor)>), ModelError> {
        let mut kv = Vec::with_capacity(self.layers.len());
        let hidden = self.run_layers(embeds, rope, lengths, Some(&mut kv))?;
        Ok((hidden, kv))
    }

    fn run_layers(
        &self,
        embeds: &Tensor,
        rope: &RotaryTables,
        lengths: &[usize],
        mut kv: Option<&mut Vec<(Tensor, Tensor)>>,
    ) -> Result<Tensor, ModelError> {
        // right padding: a row's real tokens never see its padding, so their outputs equal the
        // unpadded ones
        let mask = AttentionMask::Causal {
            key_lengths: lengths.to_vec(),
        };
        let mut x = embeds.clone();
        for layer in &self.layers {
            let (next, k, v) = self.layer(layer, &x, rope, &mask)?;
            if let Some(kv) = kv.as_deref_mut() {
                // the cache keeps (batch, kv_heads, seq, head_dim)
                kv.push((k.transpose(1, 2)?, v.transpose(1, 2)?));
            }
            x = next;
        }
        Ok(ops::rms_norm(&x, &self.norm, self.cfg.rms_norm_eps)?)
    }

    /// One decoding step for `b` sequences, each with its own cache: `embeds` is `(b, hidden)`
    /// (the last sampled token of each), `rope` the tables of each row's next position
    /// (`(b, 1, 1, head_dim)`). Appends each row's key and value to its cache and returns the
    /// final-normed hidden states `(b, hidden)`.
    ///
    /// Batch invariance: every row's numbers are computed exactly as if it were alone. Products
    /// over rows go through [`rows_linear`], whose per-row result does not depend on the other
    /// rows, and attention runs per row over exactly that row's cached keys, never over a padded
    /// block. Not differentiable (generation only).
    pub fn decode_step(
        &self,
        embeds: &Tensor,
        rope: &RotaryTables,
        caches: &mut [&mut KvCache],
    ) -> Result<Tensor, ModelError> {
        let cfg = &self.cfg;
        let (b, _) = embeds.dims2()?;
        if caches.len() != b || caches.iter().any(|c| c.layers.len() != self.layers.len()) {
            return Err(ModelError::Input(format!(
                "decode step: {b} rows but {} caches (or a cache of another model)",
                caches.len()
            )));
        }
        let hd = cfg.head_dim();
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let rep = nh / nkv;
        let scale = 1.0 / (hd as f64).sqrt();
        let mut x = embeds.clone();
        for (li, l) in self.layers.iter().enumerate() {
            let h = ops::rms_norm(&x, &l.input_norm, cfg.rms_norm_eps)?;
            let q = rows_linear(&h, &l.q_w, Some(&l.q_b))?.reshape((b, nh, 1, hd))?;
            let k = rows_linear(&h, &l.k_w, Some(&l.k_b))?.reshape((b, nkv, 1, hd))?;
            let v = rows_linear(&h, &l.v_w, Some(&l.v_b))?.reshape((b, nkv, 1, hd))?;
            let q = ops::apply_rotary(&q, &rope.cos, &rope.sin)?;
            let k = ops::apply_rotary(&k, &rope.cos, &rope.sin)?;
            let mut rows = Vec::with_capacity(b);
            for (r, cache) in caches.iter_mut().enumerate() {
                let (keys, values) = cache.layers[li].append(&k.get(r)?, &v.get(r)?)?;
                // (kv_heads, rep, hd): the query heads that share each key/value head
                let qr = q.get(r)?.reshape((nkv, rep, hd))?;
                let scores = (qr.matmul(&keys.t()?)? * scale)?;
                let out = ops::softmax_last_dim(&scores)?.matmul(&values)?;
                rows.push(out.reshape((1, nh * hd))?);
            }
            let attn = Tensor::cat(&rows, 0)?;
            x = (x + rows_linear(&attn, &l.o_w, None)?)?;
            let h = ops::rms_norm(&x, &l.post_norm, cfg.rms_norm_eps)?;
            let g = rows_linear(&h, &l.gate_w, None)?.silu()?;
            let u = rows_linear(&h, &l.up_w, None)?;
            x = (x + rows_linear(&(g * u)?, &l.down_w, None)?)?;
        }
        for cache in caches.iter_mut() {
            cache.len += 1;
        }
        Ok(ops::rms_norm(&x, &self.norm, cfg.rms_norm_eps)?)
    }

    /// Logits of `(rows, hidden)` states, batch-invariant like [`Self::decode_step`].
    pub fn rows_logits(&self, hidden: &Tensor) -> Result<Tensor, ModelError> {
        Ok(rows_linear(hidden, &self.lm_head, None)?)
    }

    /// An empty cache for one sequence of at most `capacity` tokens (it grows if exceeded).
    pub fn new_cache(&self, capacity: usize) -> KvCache {
        KvCache {
            layers: (0..self.layers.len())
                .map(|_| candle_nn::kv_cache::KvCache::new(1, capacity.max(1)))
                .collect(),
            len: 0,
        }
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
        mask: &AttentionMask,
    ) -> Result<(Tensor, Tensor, Tensor), ModelError> {
        let cfg = &self.cfg;
        let (b, s, _) = x.dims3()?;
        let hd = cfg.head_dim();
        let (nh, nkv) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let h = ops::rms_norm(x, &l.input_norm, cfg.rms_norm_eps)?;
        // (batch, seq, heads, head_dim) throughout: the layout the projections produce and the
        // output projection takes
        let q = ops::linear(&h, &l.q_w, Some(&l.q_b))?.reshape((b, s, nh, hd))?;
        let k = ops::linear(&h, &l.k_w, Some(&l.k_b))?.reshape((b, s, nkv, hd))?;
        let v = ops::linear(&h, &l.v_w, Some(&l.v_b))?.reshape((b, s, nkv, hd))?;
        let q = ops::apply_rotary(&q, &rope.cos, &rope.sin)?;
        let k = ops::apply_rotary(&k, &rope.cos, &rope.sin)?;
        let attn = ops::attention_heads(&q, &k, &v, 1.0 / (hd as f64).sqrt(), mask)?;
        let attn = attn.reshape((b, s, nh * hd))?;
        let x = (x + ops::linear(&attn, &l.o_w, None)?)?;
        let h = ops::rms_norm(&x, &l.post_norm, cfg.rms_norm_eps)?;
        let mlp = ops::swiglu_mlp(&h, (&l.gate_w, None), (&l.up_w, None), (&l.down_w, None))?;
        Ok(((x + mlp)?, k, v))
    }
}

/// The keys and values one sequence has seen, per layer, each `(kv_heads, len, head_dim)` in a
/// preallocated buffer (candle-nn's cache, appending along the sequence dimension).
///
/// Not `Clone`: the buffers are written in place, so two sequences must never share one; a
/// prompt's prefill is appended to each of its samples' caches instead.
pub struct KvCache {
    layers: Vec<candle_nn::kv_cache::KvCache>,
    len: usize,
}

impl KvCache {
    /// Tokens cached so far.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends a prefill: per layer, keys and values `(kv_heads, seq, head_dim)` (values are
    /// copied, so the source tensors and their autograd graph can be dropped).
    pub fn append_prefill(&mut self, kv: &[(Tensor, Tensor)]) -> Result<(), ModelError> {
        if kv.len() != self.layers.len() {
            return Err(ModelError::Input(format!(
                "prefill has {} layers, the cache {}",
                kv.len(),
                self.layers.len()
            )));
        }
        let mut seq = 0;
        for (cache, (k, v)) in self.layers.iter_mut().zip(kv) {
            seq = k.dim(1)?;
            cache.append(&k.detach().contiguous()?, &v.detach().contiguous()?)?;
        }
        self.len += seq;
        Ok(())
    }
}
