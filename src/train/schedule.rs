//! The learning-rate schedule and the run length, one definition for RL and SFT.

/// Linear warm-up to `lr` over `warmup` steps (1-based), then constant.
pub fn warmup_lr(lr: f64, warmup: usize, step: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        lr * step as f64 / warmup as f64
    } else {
        lr
    }
}

/// How the learning rate moves after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Decay {
    /// Constant (verl's RL default, which the reference runs).
    #[default]
    Constant,
    /// Half a cosine from `lr` down to zero at the last step (transformers' and
    /// LLaMA-Factory's SFT default, `lr_scheduler_type = cosine`).
    Cosine,
}

/// The learning rate of `step` (1-based) of `total`: linear warm-up over `warmup` steps,
/// then `decay`. Cosine follows transformers' `get_cosine_schedule_with_warmup`
/// (progress measured from the end of the warm-up).
pub fn lr_at(lr: f64, warmup: usize, decay: Decay, step: usize, total: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        return warmup_lr(lr, warmup, step);
    }
    match decay {
        Decay::Constant => lr,
        Decay::Cosine => {
            // transformers evaluates the schedule at the 0-based step before the update
            let done = step.saturating_sub(1).saturating_sub(warmup) as f64;
            let span = total.saturating_sub(warmup).max(1) as f64;
            let progress = (done / span).min(1.0);
            lr * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
        }
    }
}

/// Steps of a run over `items` examples, `per_step` a step, for `epochs` epochs; `steps`
/// (the command's `--steps`) overrides it.
pub fn total_steps(items: usize, per_step: usize, epochs: usize, steps: Option<usize>) -> usize {
    steps.unwrap_or(items.div_ceil(per_step.max(1)) * epochs)
}

/// Steps of an RL run: the reference's dataloader drops the last partial rollout batch
/// (`drop_last`), so an epoch is `floor(items / per_step)` steps and the run
/// `floor(items / per_step) * epochs`; `steps` (`--steps`) overrides it. `None` when the data
/// fill no rollout batch at all and no `--steps` was given.
pub fn rl_total_steps(
    items: usize,
    per_step: usize,
    epochs: usize,
    steps: Option<usize>,
) -> Option<usize> {
    match steps {
        Some(s) => Some(s),
        None => {
            let per_epoch = items / per_step.max(1);
            (per_epoch > 0).then_some(per_epoch * epochs)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_is_linear_then_constant() {
        assert_eq!(warmup_lr(1.0, 4, 1), 0.25);
        assert_eq!(warmup_lr(1.0, 4, 4), 1.0);
        assert_eq!(warmup_lr(1.0, 4, 9), 1.0);
        assert_eq!(warmup_lr(1.0, 0, 1), 1.0);
        assert_eq!(total_steps(10, 4, 2, None), 6);
        assert_eq!(total_steps(10, 4, 2, Some(3)), 3);
    }

    #[test]
    fn cosine_falls_from_the_peak_to_zero_after_the_warm_up() {
        // transformers: lr_lambda(current) = 0.5 * (1 + cos(pi * (current - warmup) / (total - warmup)))
        // for current >= warmup, current the 0-based step; step s here is current = s - 1.
        let total = 10;
        let cosine = |progress: f64| 0.5 * (1.0 + (std::f64::consts::PI * progress).cos());
        assert_eq!(lr_at(1.0, 2, Decay::Cosine, 1, total), 0.5);
        assert_eq!(lr_at(1.0, 2, Decay::Cosine, 2, total), 1.0);
        // the first step after the warm-up is transformers' current_step = warmup: progress 0
        assert_eq!(lr_at(1.0, 2, Decay::Cosine, 3, total), 1.0);
        assert!((lr_at(1.0, 2, Decay::Cosine, 4, total) - cosine(1.0 / 8.0)).abs() < 1e-12);
        assert!((lr_at(1.0, 2, Decay::Cosine, 7, total) - cosine(4.0 / 8.0)).abs() < 1e-12);
        let last = lr_at(1.0, 2, Decay::Cosine, total, total);
        assert!(last > 0.0 && last < 0.04, "{last}");
        assert_eq!(lr_at(1.0, 2, Decay::Constant, total, total), 1.0);
        let mut previous = f64::INFINITY;
        for s in 2..=total {
            let v = lr_at(3e-3, 2, Decay::Cosine, s, total);
            assert!(v <= previous);
            previous = v;
        }
    }

    #[test]
    fn rl_steps_drop_the_last_partial_rollout_batch_like_the_reference() {
        assert_eq!(rl_total_steps(10, 4, 2, None), Some(4));
        assert_eq!(rl_total_steps(12, 4, 2, None), Some(6));
        assert_eq!(rl_total_steps(3, 4, 2, None), None);
        assert_eq!(rl_total_steps(3, 4, 2, Some(5)), Some(5));
    }
}
