//! The learning-rate schedule and the run length, one definition for RL and SFT.

/// Linear warm-up to `lr` over `warmup` steps (1-based), then constant.
pub fn warmup_lr(lr: f64, warmup: usize, step: usize) -> f64 {
    if warmup > 0 && step <= warmup {
        lr * step as f64 / warmup as f64
    } else {
        lr
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
    fn rl_steps_drop_the_last_partial_rollout_batch_like_the_reference() {
        assert_eq!(rl_total_steps(10, 4, 2, None), Some(4));
        assert_eq!(rl_total_steps(12, 4, 2, None), Some(6));
        assert_eq!(rl_total_steps(3, 4, 2, None), None);
        assert_eq!(rl_total_steps(3, 4, 2, Some(5)), Some(5));
    }
}
