//! The GRPO / DAPO / VPPO objective of one mini-batch, computed the way the reference's actor
//! update does: mini-batch statistics first (token dependency S, the range of trajectory
//! dependencies, TGF masks), then for each micro-batch the TAS scales (with `mu` over the
//! micro-batch), the loss, and its weight (the micro-batch's share of the mini-batch's
//! response tokens) before backward.
//!
//! This is the single code path: the trainer calls [`MiniBatchShaping::new`] and
//! [`micro_batch_objective`] with F32 log-probs from the model, and
//! `spotlight debug vppo-objective` calls the same two functions with F64 log-probs.
//!
//! A training step's update, with a `Var` standing in for the model's log-probs:
//!
//! ```
//! use candle_core::{DType, Device, Var};
//! use spotlight::train::advantages::grpo_advantages;
//! use spotlight::train::objective::{micro_batch_objective, MiniBatch, MiniBatchShaping, ObjectiveConfig};
//! use spotlight::train::TokenGrid;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let config = ObjectiveConfig {
//!     clip_low: 0.2, clip_high: 0.28, clip_dual: 3.0, rho: 0.4, beta_min: 0.9,
//!     entropy_coef: 0.06, tas: true, tgf: true, kl_coef: 0.0,
//! };
//! // Rollout of one mini-batch: 2 prompts x 2 responses, up to 3 tokens.
//! let mask = TokenGrid::from_rows("mask", &[vec![1., 1., 1.], vec![1., 1., 0.], vec![1., 0., 0.], vec![1., 1., 1.]])?;
//! let old = TokenGrid::from_rows("old", &[vec![-1., -2., -0.5], vec![-0.3, -1., 0.], vec![-2., 0., 0.], vec![-0.1, -0.2, -0.3]])?;
//! let aug = TokenGrid::from_rows("aug", &[vec![-3., -2., -0.6], vec![-0.3, -1.5, 0.], vec![-2.2, 0., 0.], vec![-0.1, -0.9, -0.3]])?;
//! let advantages = grpo_advantages(&[1., 0., 0., 1.], &["p", "p", "q", "q"])?; // whole rollout batch
//!
//! let shaping = MiniBatchShaping::new(&config, &mask, &old, Some(&aug))?; // once per mini-batch
//! let mini = MiniBatch { response_mask: &mask, old_logprobs: &old, advantages: &advantages,
//!                        ref_logprobs: None, shaping: &shaping,
//!                        mini_batch_tokens: shaping.response_tokens() };
//! for rows in [0..2, 2..4] {
//!     // The model's log-probs of these rows go here (F32, on the gradient path).
//!     let logprobs = Var::from_tensor(&old.slice_rows(rows.clone())?.to_tensor(DType::F32, &Device::Cpu)?)?;
//!     let micro = micro_batch_objective(&config, &mini, rows, logprobs.as_tensor())?;
//!     let grads = micro.weighted_loss.backward()?; // accumulate over micro-batches, then step
//!     assert!(grads.get(logprobs.as_tensor()).is_some());
//! }
//! # Ok(())
//! # }
//! ```

use std::ops::Range;

use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::grid::TokenGrid;
use super::loss::{policy_loss, LossConfig, LossInputs, LossTerms};
use super::perception::{self, DependencyRange};
use super::TrainError;

/// The objective's hyper-parameters; which algorithm it is follows from them (GRPO: equal
/// clips, no entropy term, no TAS/TGF; DAPO: clip-higher and the entropy term; VPPO: DAPO
/// plus TAS and/or TGF).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObjectiveConfig {
    /// PPO lower clip (ratio floor `1 - clip_low`).
    pub clip_low: f64,
    /// PPO upper clip (ratio ceiling `1 + clip_high`).
    pub clip_high: f64,
    /// Dual-clip constant for negative advantages.
    pub clip_dual: f64,
    /// TGF: fraction of each response's tokens that keep their gradient.
    pub rho: f64,
    /// TAS: the scale of the least visually dependent trajectory.
    pub beta_min: f64,
    /// Weight of the entropy term.
    pub entropy_coef: f64,
    /// Trajectory Advantage Shaping on/off.
    pub tas: bool,
    /// Token-level Gradient Filtering on/off.
    pub tgf: bool,
    /// Weight of the low-variance KL to a frozen reference (0: no reference, as published).
    #[serde(default)]
    pub kl_coef: f64,
}

impl ObjectiveConfig {
    /// The published VPPO objective (the spec's 7B hyper-parameters).
    pub const PUBLISHED_VPPO: ObjectiveConfig = ObjectiveConfig {
        clip_low: 0.2,
        clip_high: 0.28,
        clip_dual: 3.0,
        rho: 0.4,
        beta_min: 0.9,
        entropy_coef: 0.06,
        tas: true,
        tgf: true,
        kl_coef: 0.0,
    };

    /// Checks every value is in the domain where the formulas are defined.
    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |field, value, reason| {
            Err(TrainError::BadSetting {
                field,
                value,
                reason,
            })
        };
        if !(0.0..1.0).contains(&self.clip_low) {
            return bad("clip_low", self.clip_low, "must be in [0, 1)");
        }
        if !(self.clip_high >= 0.0 && self.clip_high.is_finite()) {
            return bad("clip_high", self.clip_high, "must be finite and >= 0");
        }
        if !(self.clip_dual > 1.0 && self.clip_dual.is_finite()) {
            return bad("clip_dual", self.clip_dual, "must be finite and > 1");
        }
        if !(self.rho > 0.0 && self.rho <= 1.0) {
            return bad("rho", self.rho, "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.beta_min) {
            return bad("beta_min", self.beta_min, "must be in [0, 1]");
        }
        if !self.entropy_coef.is_finite() {
            return bad("entropy_coef", self.entropy_coef, "must be finite");
        }
        if !(self.kl_coef >= 0.0 && self.kl_coef.is_finite()) {
            return bad("kl_coef", self.kl_coef, "must be finite and >= 0");
        }
        Ok(())
    }

    /// The loss's part of the configuration.
    pub fn loss_config(&self) -> LossConfig {
        LossConfig {
            clip_low: self.clip_low,
            clip_high: self.clip_high,
            clip_dual: self.clip_dual,
            entropy_coef: self.entropy_coef,
            kl_coef: self.kl_coef,
        }
    }

    /// Whether the perturbed-image forward pass is needed at all.
    pub fn needs_perception(&self) -> bool {
        self.tas || self.tgf
    }
}

/// Everything about a mini-batch that TAS and TGF need and that does not depend on the
/// current policy. Computed once per mini-batch, before its micro-batches.
#[derive(Debug, Clone)]
pub struct MiniBatchShaping {
    /// S per token (0 on padding); `None` when no perturbed log-probs were computed.
    pub token_dependency: Option<TokenGrid>,
    /// s_i per response (all 0 without perturbed log-probs).
    pub trajectory_dependency: Vec<f64>,
    /// Number of response tokens of each response.
    pub response_lengths: Vec<f64>,
    /// `s_min`, `s_max` over the whole mini-batch's non-empty responses.
    pub dependency_range: Option<DependencyRange>,
    /// Token mask of the policy-gradient loss: the TGF mask, or the response mask.
    pub token_mask: TokenGrid,
    tas: bool,
    beta_min: f64,
}

impl MiniBatchShaping {
    /// Shaping for a mini-batch with response mask `mask` and rollout log-probs `old`;
    /// `aug` are the perturbed-image log-probs, required when TAS or TGF is on.
    pub fn new(
        config: &ObjectiveConfig,
        mask: &TokenGrid,
        old: &TokenGrid,
        aug: Option<&TokenGrid>,
    ) -> Result<Self, TrainError> {
        old.expect_shape("old_logprobs", mask.rows(), mask.cols())?;
        let token_dependency = match aug {
            Some(aug) => {
                aug.expect_shape("aug_logprobs", mask.rows(), mask.cols())?;
                Some(perception::token_dependency(mask, old, aug))
            }
            None => None,
        };
        Self::from_dependency(config, mask, token_dependency)
    }

    /// Shaping from the token dependencies `S` themselves (0 on padding), as
    /// `debug tas-layout` gives them; [`new`](Self::new) computes them from log-probs.
    pub fn from_dependency(
        config: &ObjectiveConfig,
        mask: &TokenGrid,
        token_dependency: Option<TokenGrid>,
    ) -> Result<Self, TrainError> {
        config.validate()?;
        match &token_dependency {
            Some(s) => s.expect_shape("token_dependency", mask.rows(), mask.cols())?,
            None if config.tas => return Err(TrainError::MissingPerturbedLogprobs("TAS")),
            None if config.tgf => return Err(TrainError::MissingPerturbedLogprobs("TGF")),
            None => {}
        }
        let response_lengths = mask.row_sums();
        let trajectory_dependency = match &token_dependency {
            Some(s) => perception::trajectory_dependency(s, mask),
            None => vec![0.0; mask.rows()],
        };
        let dependency_range = if config.tas {
            perception::dependency_range(&trajectory_dependency, &response_lengths)
        } else {
            None
        };
        let token_mask = match (&token_dependency, config.tgf) {
            (Some(s), true) => perception::gradient_filter_mask(s, mask, config.rho),
            _ => mask.clone(),
        };
        Ok(MiniBatchShaping {
            token_dependency,
            trajectory_dependency,
            response_lengths,
            dependency_range,
            token_mask,
            tas: config.tas,
            beta_min: config.beta_min,
        })
    }

    /// Number of responses in the mini-batch.
    pub fn len(&self) -> usize {
        self.response_lengths.len()
    }

    /// Whether the mini-batch has no responses.
    pub fn is_empty(&self) -> bool {
        self.response_lengths.is_empty()
    }

    /// Total response tokens of the mini-batch: the denominator of each micro-batch's weight.
    pub fn response_tokens(&self) -> f64 {
        self.response_lengths.iter().sum()
    }

    /// TGF statistics of the mini-batch (`None` without perturbed log-probs).
    pub fn perception_stats(&self, mask: &TokenGrid) -> Option<perception::PerceptionStats> {
        self.token_dependency
            .as_ref()
            .map(|s| perception::perception_stats(s, mask, &self.token_mask))
    }

    /// TAS scales of the micro-batch `rows` (all 1 without TAS): normalised with the
    /// mini-batch's range, averaged (`mu`) over the micro-batch, as the reference does.
    pub fn advantage_scales(&self, rows: Range<usize>) -> Vec<f64> {
        if !self.tas {
            return vec![1.0; rows.len()];
        }
        perception::advantage_scales(
            &self.trajectory_dependency[rows.clone()],
            &self.response_lengths[rows],
            self.dependency_range,
            self.beta_min,
        )
    }
}

/// The rollout data of one mini-batch, indexed like its [`MiniBatchShaping`].
pub struct MiniBatch<'a> {
    /// 1 on response tokens.
    pub response_mask: &'a TokenGrid,
    /// Rollout-policy log-probs.
    pub old_logprobs: &'a TokenGrid,
    /// GRPO advantages of each response (before TAS).
    pub advantages: &'a [f64],
    /// Frozen-reference log-probs, when the KL term is on.
    pub ref_logprobs: Option<&'a TokenGrid>,
    /// The mini-batch's shaping.
    pub shaping: &'a MiniBatchShaping,
    /// Response tokens of the whole mini-batch over all workers: the denominator of each
    /// micro-batch's weight (`shaping.response_tokens()` when these rows are all of it).
    pub mini_batch_tokens: f64,
}

/// The objective of one micro-batch.
#[derive(Debug, Clone)]
pub struct MicroBatchObjective {
    /// `terms.loss * token_share`: call `backward` on this; summed over the micro-batches of
    /// a mini-batch it is the mini-batch's token-mean loss.
    pub weighted_loss: Tensor,
    /// The micro-batch's own loss and its parts.
    pub terms: LossTerms,
    /// `sum(mask of micro-batch) / sum(mask of mini-batch)` (0 for an empty mini-batch).
    pub token_share: f64,
    /// The TAS scale of each response of the micro-batch.
    pub advantage_scale: Vec<f64>,
}

/// The objective of rows `rows` of `mini`, given the current policy's log-probs of those rows
/// (`[rows.len(), T]`, on the gradient path; their dtype and device are used throughout).
pub fn micro_batch_objective(
    config: &ObjectiveConfig,
    mini: &MiniBatch<'_>,
    rows: Range<usize>,
    logprobs: &Tensor,
) -> Result<MicroBatchObjective, TrainError> {
    let (b, t) = (mini.response_mask.rows(), mini.response_mask.cols());
    mini.old_logprobs.expect_shape("old_logprobs", b, t)?;
    mini.shaping.token_mask.expect_shape("token_mask", b, t)?;
    if mini.advantages.len() != b || mini.shaping.len() != b {
        return Err(TrainError::Shape {
            what: "advantages".to_string(),
            detail: format!(
                "{} advantages and {} shaped responses for {b} responses",
                mini.advantages.len(),
                mini.shaping.len()
            ),
        });
    }
    let micro_rows = rows.len();
    let lp_dims = logprobs.dims();
    if lp_dims != [micro_rows, t] {
        return Err(TrainError::Shape {
            what: "logprobs".to_string(),
            detail: format!("expected [{micro_rows}][{t}] for rows {rows:?}, got {lp_dims:?}"),
        });
    }
    let (dtype, device) = (logprobs.dtype(), logprobs.device());

    let mask = mini.response_mask.slice_rows(rows.clone())?;
    let scales = mini.shaping.advantage_scales(rows.clone());
    let shaped: Vec<f64> = mini.advantages[rows.clone()]
        .iter()
        .zip(&scales)
        .map(|(a, s)| a * s)
        .collect();
    let advantages = Tensor::from_slice(&shaped, micro_rows, device)
        .and_then(|t| t.to_dtype(dtype))
        .map_err(TrainError::tensor("advantages"))?;
    let old = mini
        .old_logprobs
        .slice_rows(rows.clone())?
        .to_tensor(dtype, device)?;
    let token_mask = mini
        .shaping
        .token_mask
        .slice_rows(rows.clone())?
        .to_tensor(dtype, device)?;
    let reference = match mini.ref_logprobs {
        Some(r) => {
            r.expect_shape("ref_logprobs", b, t)?;
            Some(r.slice_rows(rows.clone())?.to_tensor(dtype, device)?)
        }
        None => None,
    };
    let response_tokens: f64 = mask.values().iter().sum();
    let inputs = LossInputs {
        old_logprobs: &old,
        advantages: &advantages,
        response_mask: &mask.to_tensor(dtype, device)?,
        token_mask: &token_mask,
        ref_logprobs: reference.as_ref(),
        response_tokens,
    };
    let terms = policy_loss(logprobs, &inputs, &config.loss_config())?;
    let mini_tokens = mini.mini_batch_tokens;
    let token_share = if mini_tokens > 0.0 {
        response_tokens / mini_tokens
    } else {
        0.0
    };
    let weighted_loss = terms
        .loss
        .affine(token_share, 0.0)
        .map_err(TrainError::tensor("weighted loss"))?;
    Ok(MicroBatchObjective {
        weighted_loss,
        terms,
        token_share,
        advantage_scale: scales,
    })
}

#[cfg(test)]
// `&[0..b]` is a list of micro-batches holding one micro-batch, not a mistaken range.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;
    use candle_core::{DType, Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    const VPPO: ObjectiveConfig = ObjectiveConfig::PUBLISHED_VPPO;

    struct Batch {
        mask: TokenGrid,
        old: TokenGrid,
        aug: TokenGrid,
        lp: TokenGrid,
        reference: TokenGrid,
        advantages: Vec<f64>,
    }

    /// A seeded random mini-batch: 6 responses of up to 7 tokens (one empty), log-ratios
    /// spread over the clip ranges.
    fn batch(seed: u64) -> Batch {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (b, t) = (6, 7);
        let lengths = [7, 3, 0, 5, 1, 6];
        let mut grids = vec![TokenGrid::zeros(b, t); 5];
        for (i, &length) in lengths.iter().enumerate() {
            for j in 0..length {
                let old = -rng.random_range(0.05..3.0);
                let values = [
                    1.0,
                    old,
                    old + rng.random_range(-2.0..0.5),
                    old + rng.random_range(-0.6..0.6),
                    old + rng.random_range(-0.3..0.3),
                ];
                for (g, v) in grids.iter_mut().zip(values) {
                    g.row_mut(i)[j] = v;
                }
            }
        }
        let advantages = (0..b).map(|_| rng.random_range(-2.5..2.5)).collect();
        let mut it = grids.into_iter();
        let mut next = || it.next().unwrap_or_else(|| TokenGrid::zeros(0, 0));
        Batch {
            mask: next(),
            old: next(),
            aug: next(),
            lp: next(),
            reference: next(),
            advantages,
        }
    }

    /// Loss and gradient of the whole mini-batch split into micro-batches `splits`.
    fn loss_and_grad(
        config: &ObjectiveConfig,
        batch: &Batch,
        lp: &TokenGrid,
        splits: &[Range<usize>],
        dtype: DType,
    ) -> (f64, Vec<f64>) {
        let shaping =
            MiniBatchShaping::new(config, &batch.mask, &batch.old, Some(&batch.aug)).unwrap();
        let mini = MiniBatch {
            response_mask: &batch.mask,
            old_logprobs: &batch.old,
            advantages: &batch.advantages,
            ref_logprobs: (config.kl_coef > 0.0).then_some(&batch.reference),
            shaping: &shaping,
            mini_batch_tokens: shaping.response_tokens(),
        };
        let mut loss = 0.0;
        let mut grad = Vec::new();
        for rows in splits {
            let var = Var::from_tensor(
                &lp.slice_rows(rows.clone())
                    .unwrap()
                    .to_tensor(dtype, &Device::Cpu)
                    .unwrap(),
            )
            .unwrap();
            let micro =
                micro_batch_objective(config, &mini, rows.clone(), var.as_tensor()).unwrap();
            loss += micro
                .weighted_loss
                .to_dtype(DType::F64)
                .unwrap()
                .to_scalar::<f64>()
                .unwrap();
            let grads = micro.weighted_loss.backward().unwrap();
            // candle prunes the graph below `affine(0, _)`: a micro-batch without tokens
            // (share 0) has no gradient entry, i.e. a zero gradient.
            let g = match grads.get(var.as_tensor()) {
                Some(g) => TokenGrid::from_tensor("grad", g).unwrap(),
                None => TokenGrid::zeros(rows.len(), lp.cols()),
            };
            grad.extend(g.values().to_vec());
        }
        (loss, grad)
    }

    #[test]
    fn gradient_matches_central_finite_differences() {
        // d loss / d lp[i,t] = share * [tgf m / (N + eps)] * d tok / d lp
        //                      - share * entropy_coef * m / (N + eps)
        //                      + share * kl_coef * m (1 - e^(ref - lp)) / (N + eps),
        // with d tok / d lp = -A' r inside the active clip range and 0 where a clip (upper,
        // lower or dual) holds the loss constant. Checked numerically: (L(lp+h) - L(lp-h)) / 2h.
        for (config, seed) in [
            (VPPO, 1),
            (
                ObjectiveConfig {
                    kl_coef: 0.05,
                    ..VPPO
                },
                2,
            ),
            (
                ObjectiveConfig {
                    tas: false,
                    tgf: false,
                    clip_high: 0.2,
                    entropy_coef: 0.0,
                    ..VPPO
                },
                3,
            ),
        ] {
            let batch = batch(seed);
            let whole = [0..batch.mask.rows()];
            let (_, grad) = loss_and_grad(&config, &batch, &batch.lp, &whole, DType::F64);
            let h = 1e-6;
            let mut max_err: f64 = 0.0;
            for (k, analytic) in grad.iter().enumerate() {
                let mut up = batch.lp.clone();
                let mut down = batch.lp.clone();
                let (i, t) = (k / batch.lp.cols(), k % batch.lp.cols());
                up.row_mut(i)[t] += h;
                down.row_mut(i)[t] -= h;
                let (lu, _) = loss_and_grad(&config, &batch, &up, &whole, DType::F64);
                let (ld, _) = loss_and_grad(&config, &batch, &down, &whole, DType::F64);
                let numeric = (lu - ld) / (2.0 * h);
                max_err = max_err.max((numeric - analytic).abs());
            }
            assert!(
                max_err < 1e-7,
                "seed {seed}: max |analytic - numeric| = {max_err}"
            );
            assert!(grad.iter().any(|g| *g != 0.0));
        }
    }

    #[test]
    fn tas_and_tgf_gradient_by_hand() {
        // Two responses of one group, every ratio inside the clip range (lp = old), A = +-a:
        //   d loss / d lp[i,t] = m[i,t] * ( -A_i * scale_i * r[i,t] * tgf[i,t]
        //                                   - entropy_coef ) / (N + 1e-8),   r = 1 here.
        // TGF zeroes the policy-gradient part of unselected tokens but keeps their entropy
        // part; TAS multiplies each response's part by its scale.
        let rows = [vec![1.0, 1.0, 1.0, 1.0, 1.0], vec![1.0, 1.0, 0.0, 0.0, 0.0]];
        let mask = TokenGrid::from_rows("mask", &rows).unwrap();
        let old = TokenGrid::from_rows(
            "old",
            &[
                vec![-1.0, -0.5, -2.0, -0.1, -1.5],
                vec![-0.3, -0.7, 0.0, 0.0, 0.0],
            ],
        )
        .unwrap();
        let aug = TokenGrid::from_rows(
            "aug",
            &[
                vec![-1.0, -2.5, -2.0, -0.2, -1.5],
                vec![-0.9, -0.7, 0.0, 0.0, 0.0],
            ],
        )
        .unwrap();
        let advantages = crate::train::advantages::grpo_advantages(&[1.0, 0.0], &[0, 0]).unwrap();
        let batch = Batch {
            mask: mask.clone(),
            old: old.clone(),
            aug,
            lp: old.clone(),
            reference: TokenGrid::zeros(2, 5),
            advantages: advantages.clone(),
        };
        let (_, grad) = loss_and_grad(&VPPO, &batch, &old, &[0..2], DType::F64);
        let shaping = MiniBatchShaping::new(&VPPO, &mask, &old, Some(&batch.aug)).unwrap();
        let scales = shaping.advantage_scales(0..2);
        // Two responses: the more dependent one (row 0 here) gets beta_max = 1.1, the other 0.9.
        assert!(shaping.trajectory_dependency[0] > shaping.trajectory_dependency[1]);
        assert!((scales[0] - 1.1).abs() < 1e-7 && (scales[1] - 0.9).abs() < 1e-12);
        // TGF: row 0 keeps ceil(2.0) = 2 tokens (positions 1 and 3), row 1 ceil(0.8) = 1 (0).
        assert_eq!(shaping.token_mask.row(0), &[0.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(shaping.token_mask.row(1), &[1.0, 0.0, 0.0, 0.0, 0.0]);
        let den = 7.0 + 1e-8;
        for i in 0..2 {
            for t in 0..5 {
                let m = mask.row(i)[t];
                let tgf = shaping.token_mask.row(i)[t];
                let by_hand = m * (-advantages[i] * scales[i] * tgf - VPPO.entropy_coef) / den;
                assert!((grad[i * 5 + t] - by_hand).abs() < 1e-15, "[{i}][{t}]");
            }
        }
    }

    #[test]
    fn one_response_in_a_batch() {
        // A lone response: GRPO advantages are undefined (error, see advantages.rs), TAS has
        // no range (scale 1), TGF still keeps ceil(rho * len) tokens.
        let mask = TokenGrid::from_rows("mask", &[vec![1.0, 1.0, 1.0]]).unwrap();
        let old = TokenGrid::from_rows("old", &[vec![-1.0, -1.0, -1.0]]).unwrap();
        let aug = TokenGrid::from_rows("aug", &[vec![-3.0, -1.0, -1.2]]).unwrap();
        let shaping = MiniBatchShaping::new(&VPPO, &mask, &old, Some(&aug)).unwrap();
        assert_eq!(shaping.dependency_range, None);
        assert_eq!(shaping.advantage_scales(0..1), vec![1.0]);
        assert_eq!(shaping.token_mask.row(0), &[1.0, 0.0, 1.0]);
        assert!(crate::train::advantages::grpo_advantages(&[1.0], &[0]).is_err());
    }

    #[test]
    fn micro_batches_sum_to_the_mini_batch_without_tas() {
        // Token-weighted accumulation: sum_k (N_k / N) * L_k = L when TAS is off, because
        // every other term is a token sum divided by the token count.
        let config = ObjectiveConfig { tas: false, ..VPPO };
        let batch = batch(4);
        let (whole, g_whole) = loss_and_grad(&config, &batch, &batch.lp, &[0..6], DType::F64);
        let (split, g_split) =
            loss_and_grad(&config, &batch, &batch.lp, &[0..2, 2..3, 3..6], DType::F64);
        // Up to the 1e-8 added to each denominator: N_k / N * x / (N_k + 1e-8) differs from
        // x / (N + 1e-8) by a relative ~1e-8 / N_k (N_k >= 1 here).
        assert!((whole - split).abs() < 1e-7, "{whole} vs {split}");
        for (a, b) in g_whole.iter().zip(&g_split) {
            assert!((a - b).abs() < 1e-7);
        }
    }

    #[test]
    fn tas_mu_is_taken_per_micro_batch() {
        // With TAS, mu is the mean over the micro-batch, so micro-batch scales differ from the
        // whole-batch ones but still average to one over each micro-batch's non-empty rows.
        let batch = batch(5);
        let shaping =
            MiniBatchShaping::new(&VPPO, &batch.mask, &batch.old, Some(&batch.aug)).unwrap();
        let whole = shaping.advantage_scales(0..6);
        let first = shaping.advantage_scales(0..3);
        assert_ne!(&whole[0..3], &first[..]);
        // Rows 0 and 1 are non-empty, row 2 is empty (scale 1).
        assert_eq!(first[2], 1.0);
        assert!(
            ((first[0] + first[1]) / 2.0 - 1.0).abs() < 1e-6,
            "{first:?}"
        );
    }

    #[test]
    fn f32_and_f64_agree() {
        let batch = batch(6);
        let (l64, g64) = loss_and_grad(&VPPO, &batch, &batch.lp, &[0..6], DType::F64);
        let (l32, g32) = loss_and_grad(&VPPO, &batch, &batch.lp, &[0..6], DType::F32);
        assert!((l64 - l32).abs() < 1e-5, "{l64} vs {l32}");
        for (a, b) in g64.iter().zip(&g32) {
            assert!((a - b).abs() < 1e-5);
        }
    }

    #[test]
    fn empty_responses_contribute_nothing_and_an_all_empty_batch_is_finite() {
        let batch = batch(7);
        let (_, grad) = loss_and_grad(&VPPO, &batch, &batch.lp, &[0..6], DType::F64);
        // Row 2 is empty: zero gradient on all its positions.
        assert!(grad[2 * 7..3 * 7].iter().all(|g| *g == 0.0));
        let empty = Batch {
            mask: TokenGrid::zeros(2, 3),
            old: TokenGrid::zeros(2, 3),
            aug: TokenGrid::zeros(2, 3),
            lp: TokenGrid::zeros(2, 3),
            reference: TokenGrid::zeros(2, 3),
            advantages: vec![1.0, -1.0],
        };
        let (loss, grad) = loss_and_grad(&VPPO, &empty, &empty.lp, &[0..2], DType::F64);
        assert_eq!(loss, 0.0);
        assert!(grad.iter().all(|g| *g == 0.0));
    }

    #[test]
    fn tas_and_tgf_need_the_perturbed_logprobs() {
        let batch = batch(8);
        assert!(matches!(
            MiniBatchShaping::new(&VPPO, &batch.mask, &batch.old, None),
            Err(TrainError::MissingPerturbedLogprobs("TAS"))
        ));
        let dapo = ObjectiveConfig {
            tas: false,
            tgf: false,
            ..VPPO
        };
        let shaping = MiniBatchShaping::new(&dapo, &batch.mask, &batch.old, None).unwrap();
        assert_eq!(shaping.token_mask, batch.mask);
        assert_eq!(shaping.advantage_scales(0..6), vec![1.0; 6]);
    }

    #[test]
    fn settings_outside_their_domain_are_rejected_by_name() {
        for (bad, field) in [
            (
                ObjectiveConfig {
                    clip_low: 1.0,
                    ..VPPO
                },
                "clip_low",
            ),
            (
                ObjectiveConfig {
                    clip_dual: 0.5,
                    ..VPPO
                },
                "clip_dual",
            ),
            (ObjectiveConfig { rho: 0.0, ..VPPO }, "rho"),
            (
                ObjectiveConfig {
                    beta_min: 1.5,
                    ..VPPO
                },
                "beta_min",
            ),
            (
                ObjectiveConfig {
                    kl_coef: -1.0,
                    ..VPPO
                },
                "kl_coef",
            ),
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
