//! The whole model: images and token ids in, logits or response log-probs out.
//!
//! Batches are right-padded: with a causal mask, real tokens never attend to padding, so each
//! row's outputs equal those of the row alone (positions are computed per row, unpadded).

use candle_core::{DType, Device, Tensor, D};

use super::config::Qwen25VlConfig;
use super::ops;
use super::positions::{mrope_positions, MropePositions};
use super::processor::{GridThw, ProcessedImage};
use super::text::TextModel;
use super::vision::VisionTower;
use super::weights::ParamLoader;
use super::ModelError;

/// One sequence to run: token ids (with `<|image_pad|>` runs already expanded) and its images in
/// order of appearance.
#[derive(Debug, Clone)]
pub struct Sequence<'a> {
    pub ids: &'a [u32],
    pub images: Vec<&'a ProcessedImage>,
}

/// A sequence as the decoder sees it: the first `prompt_len` ids are the prompt, where
/// `<|image_pad|>` runs stand for the images; the ids after it were generated. A generated
/// `<|image_pad|>` (an untrained policy samples one now and then) is an ordinary token there,
/// embedded as text at the next position, because that is how generation fed it to the
/// model: scoring must see the context the sampler saw.
struct DecoderRow<'a> {
    ids: &'a [u32],
    prompt_len: usize,
    images: &'a [&'a ProcessedImage],
}

impl<'a> DecoderRow<'a> {
    fn prompt_only(seq: &'a Sequence<'a>) -> Self {
        DecoderRow {
            ids: seq.ids,
            prompt_len: seq.ids.len(),
            images: &seq.images,
        }
    }
}

/// One response to score after its context.
#[derive(Debug, Clone)]
pub struct ScoringRequest<'a> {
    /// The chat prompt (from [`super::PromptBuilder::prompt_ids`]); must not be empty.
    pub prompt_ids: &'a [u32],
    pub response_ids: &'a [u32],
    /// The images the prompt's placeholders stand for, in order of appearance (MMMU-Pro and
    /// some training items have several).
    pub images: Vec<&'a ProcessedImage>,
}

/// Log-probs of each response token, batched.
pub struct ResponseLogProbs {
    /// `(batch, longest response)`: `log p(token_j | context, tokens_<j)` at the temperature;
    /// 0 past each response's end; f32 for half-precision models, else the model's dtype. Differentiable with respect to
    /// every parameter.
    pub values: Tensor,
    /// `(batch, longest response)`: 1 on real tokens, 0 on padding (same dtype as `values`).
    pub mask: Tensor,
    /// Response lengths.
    pub lengths: Vec<usize>,
}

impl ResponseLogProbs {
    /// The log-probs as one `Vec<f32>` per response (padding dropped).
    pub fn to_vecs(&self) -> Result<Vec<Vec<f32>>, ModelError> {
        let rows: Vec<Vec<f32>> = self.values.to_dtype(DType::F32)?.to_vec2()?;
        Ok(rows
            .into_iter()
            .zip(&self.lengths)
            .map(|(mut r, &n)| {
                r.truncate(n);
                r
            })
            .collect())
    }
}

/// The dtype log-probs are computed in: at least f32.
fn score_dtype(model: DType) -> DType {
    match model {
        DType::BF16 | DType::F16 => DType::F32,
        d => d,
    }
}

/// One prompt run through the model, ready to continue.
pub(crate) struct Prefill {
    /// Final hidden state of the last prompt token, `(hidden)`.
    pub last_hidden: Tensor,
    /// Each layer's keys (rotated) and values, `(kv_heads, len, head_dim)`.
    pub kv: Vec<(Tensor, Tensor)>,
    /// The position the first new token takes.
    pub next_position: i64,
}

/// Qwen2.5-VL: vision tower + language model.
pub struct Qwen25Vl {
    config: Qwen25VlConfig,
    vision: VisionTower,
    text: TextModel,
    device: Device,
    dtype: DType,
}

impl Qwen25Vl {
    /// Builds the model, reading (and registering as `Var`s) every parameter through `p`.
    pub fn load(config: &Qwen25VlConfig, p: &ParamLoader) -> Result<Self, ModelError> {
        if config.vision.out_hidden_size != config.text.hidden_size {
            return Err(ModelError::Config {
                path: p.label(),
                field: "vision_config.out_hidden_size".to_string(),
                message: format!(
                    "{} != hidden_size {}",
                    config.vision.out_hidden_size, config.text.hidden_size
                ),
            });
        }
        Ok(Qwen25Vl {
            config: config.clone(),
            vision: VisionTower::load(&config.vision, p)?,
            text: TextModel::load(&config.text, p)?,
            device: p.device().clone(),
            dtype: p.dtype(),
        })
    }

    pub fn config(&self) -> &Qwen25VlConfig {
        &self.config
    }
    pub fn device(&self) -> &Device {
        &self.device
    }
    pub fn dtype(&self) -> DType {
        self.dtype
    }
    pub fn text_model(&self) -> &TextModel {
        &self.text
    }

    /// Vision features of each image: `(tokens, hidden)` per image.
    pub fn encode_images(&self, images: &[&ProcessedImage]) -> Result<Vec<Tensor>, ModelError> {
        self.vision.forward(images)
    }

    /// The M-RoPE positions of one sequence.
    pub fn positions(&self, ids: &[u32], grids: &[GridThw]) -> Result<MropePositions, ModelError> {
        mrope_positions(
            ids,
            grids,
            self.config.image_token_id,
            self.config.vision_start_token_id,
            self.config.video_token_id,
            self.config.vision.spatial_merge_size,
        )
    }

    /// Final hidden states `(batch, longest, hidden)` of right-padded sequences, and their lengths.
    fn hidden_states(&self, seqs: &[Sequence]) -> Result<(Tensor, Vec<usize>), ModelError> {
        let rows: Vec<DecoderRow> = seqs.iter().map(DecoderRow::prompt_only).collect();
        self.decoder_hidden_states(&rows)
    }

    fn decoder_hidden_states(
        &self,
        rows: &[DecoderRow],
    ) -> Result<(Tensor, Vec<usize>), ModelError> {
        let (embeds, rope, lengths) = self.decoder_inputs(rows)?;
        let out = self.text.forward_embeds(&embeds, &rope, &lengths)?;
        Ok((out, lengths))
    }

    /// Runs one sequence and returns what generation continues from.
    pub(crate) fn prefill(&self, seq: &Sequence) -> Result<Prefill, ModelError> {
        let grids: Vec<GridThw> = seq.images.iter().map(|i| i.grid_thw).collect();
        let next_position = self.positions(seq.ids, &grids)?.next_position();
        let (embeds, rope, lengths) = self.decoder_inputs(&[DecoderRow::prompt_only(seq)])?;
        let (hidden, kv) = self.text.forward_embeds_with_kv(&embeds, &rope, &lengths)?;
        let last = hidden.get(0)?.get(lengths[0] - 1)?;
        let kv = kv
            .into_iter()
            .map(|(k, v)| Ok((k.get(0)?, v.get(0)?)))
            .collect::<Result<Vec<_>, candle_core::Error>>()?;
        Ok(Prefill {
            last_hidden: last,
            kv,
            next_position,
        })
    }

    /// Embeddings (text and image features merged) and rotary tables of right-padded sequences,
    /// and their lengths.
    fn decoder_inputs(
        &self,
        seqs: &[DecoderRow],
    ) -> Result<(Tensor, super::text::RotaryTables, Vec<usize>), ModelError> {
        if seqs.is_empty() {
            return Err(ModelError::Input("empty batch".to_string()));
        }
        let lengths: Vec<usize> = seqs.iter().map(|s| s.ids.len()).collect();
        let seq = lengths.iter().copied().max().unwrap_or(0);
        if seq == 0 {
            return Err(ModelError::Input("every sequence is empty".to_string()));
        }
        let b = seqs.len();
        let merge = self.config.vision.spatial_merge_size;
        let image_id = self.config.image_token_id;

        let mut positions = Vec::with_capacity(b);
        let mut padded = Vec::with_capacity(b * seq);
        let mut all_images = Vec::new();
        for (row, s) in seqs.iter().enumerate() {
            let grids: Vec<GridThw> = s.images.iter().map(|i| i.grid_thw).collect();
            let prompt = &s.ids[..s.prompt_len.min(s.ids.len())];
            let n_tokens = prompt.iter().filter(|&&t| t == image_id).count();
            let expected: usize = grids.iter().map(|g| g.num_tokens(merge)).sum();
            if n_tokens != expected {
                return Err(ModelError::Input(format!(
                    "sequence {row} has {n_tokens} image tokens, its images need {expected}"
                )));
            }
            let mut rows_positions = self.positions(prompt, &grids)?;
            rows_positions.extend_text(s.ids.len() - prompt.len());
            positions.push(rows_positions);
            padded.extend_from_slice(s.ids);
            padded.extend(std::iter::repeat_n(0u32, seq - s.ids.len()));
            all_images.extend(s.images.iter().copied());
        }

        let text_embeds = self.text.embed_ids(&padded)?; // (b*seq, hidden)
        let embeds = if all_images.is_empty() {
            text_embeds
        } else {
            let features = self.vision.forward(&all_images)?;
            let features = Tensor::cat(&features, 0)?;
            // gather from [text rows; image rows]: image tokens take the next feature row
            let base = (b * seq) as u32;
            let mut next = 0u32;
            let idx: Vec<u32> = padded
                .iter()
                .enumerate()
                .map(|(p, &t)| {
                    let in_prompt = p % seq < seqs[p / seq].prompt_len.min(lengths[p / seq]);
                    if t == image_id && in_prompt {
                        next += 1;
                        base + next - 1
                    } else {
                        p as u32
                    }
                })
                .collect();
            let table = Tensor::cat(&[&text_embeds, &features], 0)?;
            table.index_select(&Tensor::from_vec(idx, b * seq, &self.device)?, 0)?
        };
        let hidden = self.config.text.hidden_size;
        let embeds = embeds.reshape((b, seq, hidden))?;
        let rows: Vec<&MropePositions> = positions.iter().collect();
        let rope = self.text.rotary_tables(&rows, seq)?;
        Ok((embeds, rope, lengths))
    }

    /// Logits at every position, `(batch, longest sequence, vocab)`; rows are right-padded and
    /// positions past a row's length hold garbage.
    pub fn forward(&self, seqs: &[Sequence]) -> Result<Tensor, ModelError> {
        let (hidden, _) = self.hidden_states(seqs)?;
        self.text.logits(&hidden)
    }

    /// `log softmax(logits / temperature)` of each response token given the prompt (with its
    /// image) and the response tokens before it. Only the response positions go through the
    /// head, so the vocabulary-sized tensors stay small.
    pub fn log_probs(
        &self,
        batch: &[ScoringRequest],
        temperature: f64,
    ) -> Result<ResponseLogProbs, ModelError> {
        if !(temperature > 0.0 && temperature.is_finite()) {
            return Err(ModelError::Input(format!(
                "temperature must be positive and finite, got {temperature}"
            )));
        }
        let mut full: Vec<Vec<u32>> = Vec::with_capacity(batch.len());
        for (i, r) in batch.iter().enumerate() {
            if r.prompt_ids.is_empty() {
                return Err(ModelError::Input(format!(
                    "request {i} has an empty prompt"
                )));
            }
            let mut ids = r.prompt_ids.to_vec();
            ids.extend_from_slice(r.response_ids);
            full.push(ids);
        }
        let seqs: Vec<DecoderRow> = batch
            .iter()
            .zip(&full)
            .map(|(r, ids)| DecoderRow {
                ids,
                prompt_len: r.prompt_ids.len(),
                images: &r.images,
            })
            .collect();
        let (hidden, _) = self.decoder_hidden_states(&seqs)?;
        let (b, seq, h) = hidden.dims3()?;
        let lengths: Vec<usize> = batch.iter().map(|r| r.response_ids.len()).collect();
        let longest = lengths.iter().copied().max().unwrap_or(0);
        if longest == 0 {
            let z = Tensor::zeros((b, 0), score_dtype(self.dtype), &self.device)?;
            return Ok(ResponseLogProbs {
                values: z.clone(),
                mask: z,
                lengths,
            });
        }
        let mut rows = Vec::with_capacity(b * longest);
        let mut targets = Vec::with_capacity(b * longest);
        let mut mask = Vec::with_capacity(b * longest);
        for (i, r) in batch.iter().enumerate() {
            let p = r.prompt_ids.len();
            for j in 0..longest {
                if j < r.response_ids.len() {
                    rows.push((i * seq + p - 1 + j) as u32);
                    targets.push(r.response_ids[j]);
                    mask.push(1f32);
                } else {
                    rows.push((i * seq) as u32);
                    targets.push(0);
                    mask.push(0f32);
                }
            }
        }
        let n = b * longest;
        let picked = hidden
            .reshape((b * seq, h))?
            .index_select(&Tensor::from_vec(rows, n, &self.device)?, 0)?;
        // log-probs in at least f32: bf16 has ~3 significant digits, too few for
        // the probability ratios of a policy loss
        let logits = self
            .text
            .logits(&picked)?
            .to_dtype(score_dtype(self.dtype))?;
        let logits = if temperature == 1.0 {
            logits
        } else {
            (logits / temperature)?
        };
        let logp = ops::log_softmax_last_dim(&logits)?;
        let targets = Tensor::from_vec(targets, (n, 1), &self.device)?;
        let mask = Tensor::from_vec(mask, (b, longest), &self.device)?.to_dtype(logp.dtype())?;
        let values = logp.gather(&targets, D::Minus1)?.reshape((b, longest))?;
        let values = (values * &mask)?;
        Ok(ResponseLogProbs {
            values,
            mask,
            lengths,
        })
    }
}
