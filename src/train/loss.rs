//! The policy loss (spec section 8) on candle tensors: PPO with clip-higher and dual clip,
//! the token-mean average, the "entropy penalty" term and the optional low-variance KL to a
//! frozen reference.
//!
//! This is the only part of the objective that depends on the current policy's log-probs, so
//! it is written with differentiable candle ops only (elementwise arithmetic, `exp`,
//! `maximum`, `minimum`, `where_cond`, sums) and runs in the dtype of the log-probs it is
//! given: `F64` to check it against worked examples, `F32` (or `BF16`) to train. Gradients
//! come from candle's autograd, exactly as they will through the model.
//!
//! Gradient conventions match torch's, which the reference relies on:
//! - `clamp`: gradient 1 inside `[lo, hi]` (bounds included), 0 outside. candle's own
//!   `Tensor::clamp` is `maximum(lo).minimum(hi)`, which gives 1/2 exactly at a bound, so
//!   [`clamp_with_torch_gradient`] is used instead (see its test).
//! - `maximum`/`minimum`: the gradient goes to the larger/smaller argument, split in half on
//!   ties — the same in candle and torch. (For tokens inside the clip range `ratio` and
//!   `clipped` are equal, both halves carry the same derivative, so the sum is exact.)
//! - `where_cond`: the gradient goes to the selected branch only.

use candle_core::{DType, Tensor};

use super::TrainError;

/// The token-mean denominators add this, as the reference's `masked_mean` does, so that an
/// empty micro-batch averages to 0 instead of NaN.
pub const TOKEN_MEAN_EPS: f64 = 1e-8;
/// Log-ratios are clamped to `[-20, 20]` before `exp` (no infinite ratios, no NaN gradients).
pub const LOG_RATIO_CLAMP: f64 = 20.0;
/// The low-variance KL per token is clamped to `[-10, 10]`.
pub const KL_CLAMP: f64 = 10.0;

/// The loss's hyper-parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossConfig {
    /// PPO lower clip: ratios below `1 - clip_low` stop pulling (0.2).
    pub clip_low: f64,
    /// Upper clip ("clip-higher" when larger than `clip_low`): 0.28 in DAPO/VPPO.
    pub clip_high: f64,
    /// Dual clip: for negative advantages the per-token loss is capped at `-A * clip_dual`.
    pub clip_dual: f64,
    /// Weight of the entropy term `-mean(lp)` (0.06 in the published run; 0 disables it).
    pub entropy_coef: f64,
    /// Weight of the low-variance KL to a frozen reference; 0 disables it.
    pub kl_coef: f64,
}

/// What the loss of one micro-batch needs besides the current log-probs; all `[B, T]` tensors
/// except `advantages` (`[B]`), in the dtype and on the device of the log-probs.
pub struct LossInputs<'a> {
    /// Log-probs of the sampled tokens under the rollout policy (no gradient).
    pub old_logprobs: &'a Tensor,
    /// Per-response advantages, already multiplied by the TAS scales.
    pub advantages: &'a Tensor,
    /// 1 on response tokens, 0 on padding.
    pub response_mask: &'a Tensor,
    /// 1 on tokens whose policy-gradient loss counts (TGF), else 0; equal to
    /// `response_mask` without TGF.
    pub token_mask: &'a Tensor,
    /// Log-probs under the frozen reference, when the KL term is on.
    pub ref_logprobs: Option<&'a Tensor>,
    /// `sum(response_mask)` of this micro-batch, the token-mean's denominator (before eps).
    pub response_tokens: f64,
}

/// The loss and its parts; `loss` carries the gradient, the others are for metrics.
#[derive(Debug, Clone)]
pub struct LossTerms {
    /// `pg_loss + entropy_coef * entropy_term + kl_coef * kl_term`.
    pub loss: Tensor,
    /// The clipped policy-gradient loss, token mean over all response tokens.
    pub pg_loss: Tensor,
    /// `-sum(lp * m) / (sum(m) + 1e-8)`.
    pub entropy_term: Tensor,
    /// Mean low-variance KL to the reference, when on.
    pub kl_term: Option<Tensor>,
    /// Fraction of response tokens where the upper clip is active (`l1 < l2`).
    pub clip_fraction_higher: f64,
    /// Fraction of response tokens where the dual clip is active (negative advantage).
    pub clip_fraction_lower: f64,
}

/// `clamp(x, lo, hi)` whose gradient is 1 where `lo <= x <= hi` and 0 elsewhere, like
/// `torch.clamp`. Built from `where_cond`, which routes the gradient to the selected branch.
pub fn clamp_with_torch_gradient(x: &Tensor, lo: f64, hi: f64) -> candle_core::Result<Tensor> {
    let lo_t = x.ones_like()?.affine(lo, 0.0)?;
    let hi_t = x.ones_like()?.affine(hi, 0.0)?;
    let above = x.gt(hi)?;
    let below = x.lt(lo)?;
    let upper_clamped = above.where_cond(&hi_t, x)?;
    below.where_cond(&lo_t, &upper_clamped)
}

/// `sum(values * mask) / (count + 1e-8)`: the reference's "token" average, where `count` is
/// `sum(mask)` (passed in so it is exact whatever the tensor dtype).
pub fn token_mean(values: &Tensor, mask: &Tensor, count: f64) -> candle_core::Result<Tensor> {
    (values * mask)?.sum_all()? / (count + TOKEN_MEAN_EPS)
}

/// Schulman's low-variance KL estimator of KL(pi || pi_ref) per token:
/// `x = clamp(ref - lp, -20, 20)`, `kl = clamp(exp(x) - x - 1, -10, 10)`.
pub fn low_var_kl(logprobs: &Tensor, ref_logprobs: &Tensor) -> candle_core::Result<Tensor> {
    let x = clamp_with_torch_gradient(
        &(ref_logprobs - logprobs)?,
        -LOG_RATIO_CLAMP,
        LOG_RATIO_CLAMP,
    )?;
    let kl = ((x.exp()? - &x)? - 1.0)?;
    clamp_with_torch_gradient(&kl, -KL_CLAMP, KL_CLAMP)
}

/// The loss of one micro-batch given the current policy's log-probs `logprobs` (`[B, T]`,
/// on the gradient path):
///
/// ```text
/// ratio   = exp(clamp(lp - old, -20, 20))
/// clipped = exp(clamp(lp - old, ln(1 - clip_low), ln(1 + clip_high)))
/// hi      = max(-A ratio, -A clipped)
/// tok     = A < 0 ? min(hi, -A clip_dual) : hi
/// pg_loss = sum(tok * tgf * m) / (sum(m) + 1e-8)
/// ```
pub fn policy_loss(
    logprobs: &Tensor,
    inputs: &LossInputs<'_>,
    config: &LossConfig,
) -> Result<LossTerms, TrainError> {
    policy_loss_inner(logprobs, inputs, config).map_err(TrainError::tensor("policy loss"))
}

fn policy_loss_inner(
    logprobs: &Tensor,
    inputs: &LossInputs<'_>,
    config: &LossConfig,
) -> candle_core::Result<LossTerms> {
    let count = inputs.response_tokens;
    let log_ratio = clamp_with_torch_gradient(
        &(logprobs - inputs.old_logprobs)?,
        -LOG_RATIO_CLAMP,
        LOG_RATIO_CLAMP,
    )?;
    let ratio = log_ratio.exp()?;
    let clipped = clamp_with_torch_gradient(
        &log_ratio,
        (1.0 - config.clip_low).ln(),
        (1.0 + config.clip_high).ln(),
    )?
    .exp()?;

    let advantages = inputs
        .advantages
        .unsqueeze(1)?
        .broadcast_as(logprobs.shape())?
        .contiguous()?;
    let neg_adv = advantages.neg()?;
    let unclipped_loss = (&neg_adv * &ratio)?;
    let clipped_loss = (&neg_adv * &clipped)?;
    let dual_loss = neg_adv.affine(config.clip_dual, 0.0)?;
    let higher = unclipped_loss.maximum(&clipped_loss)?;
    let lower = higher.minimum(&dual_loss)?;
    let negative = advantages.lt(0.0)?;
    let per_token = negative.where_cond(&lower, &higher)?;
    let per_token = (per_token * inputs.token_mask)?;
    let pg_loss = token_mean(&per_token, inputs.response_mask, count)?;

    let entropy_term = token_mean(logprobs, inputs.response_mask, count)?.neg()?;
    let mut loss = (&pg_loss + entropy_term.affine(config.entropy_coef, 0.0)?)?;

    let kl_term = match inputs.ref_logprobs {
        Some(reference) if config.kl_coef != 0.0 => {
            let kl = token_mean(
                &low_var_kl(logprobs, reference)?,
                inputs.response_mask,
                count,
            )?;
            loss = (loss + kl.affine(config.kl_coef, 0.0)?)?;
            Some(kl)
        }
        _ => None,
    };

    // Metrics, detached: where each clip is active, as fractions of response tokens.
    let dtype = logprobs.dtype();
    let higher_active = unclipped_loss.lt(&clipped_loss)?.to_dtype(dtype)?;
    let lower_active = (higher.gt(&dual_loss)?.to_dtype(dtype)? * negative.to_dtype(dtype)?)?;
    let fraction = |active: &Tensor| -> candle_core::Result<f64> {
        token_mean(active, inputs.response_mask, count)?
            .to_dtype(DType::F64)?
            .to_scalar::<f64>()
    };
    Ok(LossTerms {
        clip_fraction_higher: fraction(&higher_active)?,
        clip_fraction_lower: fraction(&lower_active)?,
        loss,
        pg_loss,
        entropy_term,
        kl_term,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, Var};

    fn grad_of(x: &[f64], f: impl Fn(&Tensor) -> candle_core::Result<Tensor>) -> Vec<f64> {
        let var = Var::from_slice(x, x.len(), &Device::Cpu).unwrap();
        let y = f(var.as_tensor()).unwrap().sum_all().unwrap();
        let grads = y.backward().unwrap();
        grads
            .get(var.as_tensor())
            .unwrap()
            .to_vec1::<f64>()
            .unwrap()
    }

    #[test]
    fn torch_style_clamp_passes_gradient_inside_and_on_bounds_only() {
        // d clamp(x, -1, 2) / dx = 1 for -1 <= x <= 2 (bounds included, as torch), else 0.
        let x = [-3.0, -1.0, 0.5, 2.0, 7.0];
        let g = grad_of(&x, |t| clamp_with_torch_gradient(t, -1.0, 2.0));
        assert_eq!(g, vec![0.0, 1.0, 1.0, 1.0, 0.0]);
        let v =
            clamp_with_torch_gradient(&Tensor::from_slice(&x, 5, &Device::Cpu).unwrap(), -1.0, 2.0)
                .unwrap();
        assert_eq!(v.to_vec1::<f64>().unwrap(), vec![-1.0, -1.0, 0.5, 2.0, 2.0]);
    }

    #[test]
    fn candle_clamp_halves_the_gradient_on_a_bound_which_is_why_we_do_not_use_it() {
        // candle: clamp = maximum(lo).minimum(hi); maximum splits ties 1/2 - 1/2.
        let g = grad_of(&[-3.0, -1.0, 0.5, 7.0], |t| t.clamp(-1.0, 2.0));
        assert_eq!(g, vec![0.0, 0.5, 1.0, 0.0]);
    }

    #[test]
    fn maximum_minimum_and_where_route_gradients_like_torch() {
        // d max(2x, x+1)/dx: x=3 -> 2 (2x wins), x=0 -> 1 (x+1 wins), x=1 -> tie: (2+1)/2.
        let g = grad_of(&[3.0, 0.0, 1.0], |t| (t * 2.0)?.maximum(&(t + 1.0)?));
        assert_eq!(g, vec![2.0, 1.0, 1.5]);
        // d min(3x, 1)/dx: 3 where 3x < 1, 0 where the constant wins.
        let g = grad_of(&[0.0, 1.0], |t| (t * 3.0)?.minimum(&t.ones_like()?));
        assert_eq!(g, vec![3.0, 0.0]);
        // d where(x < 0, 5x, x^2)/dx = 5 on negatives, 2x elsewhere.
        let g = grad_of(&[-1.0, 2.0], |t| {
            t.lt(0.0)?.where_cond(&(t * 5.0)?, &t.sqr()?)
        });
        assert_eq!(g, vec![5.0, 4.0]);
    }

    fn inputs_1x1(old: f64, adv: f64) -> (Tensor, Tensor, Tensor) {
        let d = Device::Cpu;
        (
            Tensor::from_slice(&[old], (1, 1), &d).unwrap(),
            Tensor::from_slice(&[adv], 1, &d).unwrap(),
            Tensor::ones((1, 1), DType::F64, &d).unwrap(),
        )
    }

    /// Loss and d loss / d lp of a single token with the published clips, no entropy term.
    fn single_token(lp: f64, old: f64, adv: f64) -> (f64, f64) {
        let (old_t, adv_t, mask) = inputs_1x1(old, adv);
        let var = Var::from_slice(&[lp], (1, 1), &Device::Cpu).unwrap();
        let config = LossConfig {
            clip_low: 0.2,
            clip_high: 0.28,
            clip_dual: 3.0,
            entropy_coef: 0.0,
            kl_coef: 0.0,
        };
        let inputs = LossInputs {
            old_logprobs: &old_t,
            advantages: &adv_t,
            response_mask: &mask,
            token_mask: &mask,
            ref_logprobs: None,
            response_tokens: 1.0,
        };
        let terms = policy_loss(var.as_tensor(), &inputs, &config).unwrap();
        let grads = terms.loss.backward().unwrap();
        let g = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap();
        (
            terms.loss.to_scalar::<f64>().unwrap(),
            g.to_vec1::<f64>().unwrap()[0],
        )
    }

    const DEN: f64 = 1.0 + TOKEN_MEAN_EPS;

    #[test]
    fn inside_the_clip_range_the_gradient_is_minus_a_times_ratio() {
        // r = e^0.1 in [0.8, 1.28]: loss = -A r, d/dlp = -A r.
        let (loss, g) = single_token(-1.0, -1.1, 2.0);
        let r = 0.1f64.exp();
        assert!((loss - -2.0 * r / DEN).abs() < 1e-12);
        assert!((g - -2.0 * r / DEN).abs() < 1e-12);
    }

    #[test]
    fn above_the_upper_clip_a_positive_advantage_has_no_gradient() {
        // r = e^0.5 = 1.65 > 1.28 and A > 0: max(-A r, -A 1.28) = -A 1.28, constant in lp.
        let (loss, g) = single_token(-0.5, -1.0, 1.0);
        assert!((loss - -1.28 / DEN).abs() < 1e-12);
        assert_eq!(g, 0.0);
        // A < 0 below the lower clip: r = e^-0.5 = 0.61 < 0.8: max(-A r, -A 0.8) = 0.8|A|.
        let (loss, g) = single_token(-1.5, -1.0, -1.0);
        assert!((loss - 0.8 / DEN).abs() < 1e-12);
        assert_eq!(g, 0.0);
    }

    #[test]
    fn negative_advantage_beyond_the_dual_clip_is_capped_with_zero_gradient() {
        // A = -1, r = e^2 = 7.39 > 3: hi = -A r = 7.39, dual cap -A * 3 = 3 -> loss 3, grad 0.
        let (loss, g) = single_token(1.0, -1.0, -1.0);
        assert!((loss - 3.0 / DEN).abs() < 1e-12);
        assert_eq!(g, 0.0);
        // A = -1, r = e^1 = 2.72 < 3: not capped, loss = -A r, d/dlp = -A r = r.
        let (loss, g) = single_token(0.0, -1.0, -1.0);
        let r = 1f64.exp();
        assert!((loss - r / DEN).abs() < 1e-12 && (g - r / DEN).abs() < 1e-12);
        // A > 0 is never dual-clipped: r = e^2, loss = max(-A r, -A 1.28) = -1.28 A.
        let (loss, _) = single_token(1.0, -1.0, 1.0);
        assert!((loss + 1.28 / DEN).abs() < 1e-12);
    }

    #[test]
    fn huge_log_ratio_is_clamped_to_20_with_zero_gradient() {
        // lp - old = 50 -> clamped to 20: exp(20) finite; A < 0 -> dual cap 3; A > 0 -> 1.28.
        let (loss, g) = single_token(0.0, -50.0, -2.0);
        assert!((loss - 6.0 / DEN).abs() < 1e-12 && g == 0.0);
        let (loss, g) = single_token(0.0, -50.0, 2.0);
        assert!((loss + 2.0 * 1.28 / DEN).abs() < 1e-12 && g == 0.0);
    }

    #[test]
    fn low_var_kl_is_zero_at_the_reference_and_its_gradient_is_one_minus_exp() {
        // kl(lp) = e^(ref-lp) - (ref-lp) - 1; d/dlp = -e^(ref-lp) + 1.
        let g = grad_of(&[-1.0, -2.0], |t| {
            let reference = Tensor::from_slice(&[-1.0, -1.5], 2, &Device::Cpu)?;
            low_var_kl(t, &reference)
        });
        assert!(g[0].abs() < 1e-15);
        assert!((g[1] - (1.0 - 0.5f64.exp())).abs() < 1e-12);
    }
}
