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
}
