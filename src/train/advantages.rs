//! GRPO advantages (spec section 4): each response's reward normalised within its prompt's
//! group, `A_i = (r_i - mean(r_group)) / (std(r_group) + 1e-6)`, with Bessel's correction.
//!
//! GRPO, DAPO and VPPO all use these advantages; the reference's VPPO launch script says
//! `adv_estimator: grpo` for that reason, which is not a statement about the algorithm.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;

use super::TrainError;

/// Added to the group's standard deviation so that all-equal groups (std 0) give advantage 0
/// rather than a division by zero. The reference's value.
pub const GRPO_STD_EPS: f64 = 1e-6;

/// GRPO advantages of responses with `rewards`, where `groups[i]` identifies response `i`'s
/// prompt. Every group needs at least two responses: the sample standard deviation of one
/// value is undefined (the reference asserts this too).
pub fn grpo_advantages<K: Eq + Hash + Debug>(
    rewards: &[f64],
    groups: &[K],
) -> Result<Vec<f64>, TrainError> {
    if rewards.len() != groups.len() {
        return Err(TrainError::Shape {
            what: "groups".to_string(),
            detail: format!(
                "{} group ids for {} rewards; each response needs one",
                groups.len(),
                rewards.len()
            ),
        });
    }
    let mut members: HashMap<&K, Vec<f64>> = HashMap::new();
    for (group, &reward) in groups.iter().zip(rewards) {
        members.entry(group).or_default().push(reward);
    }
    let mut stats: HashMap<&K, (f64, f64)> = HashMap::with_capacity(members.len());
    for (group, values) in &members {
        if values.len() < 2 {
            return Err(TrainError::SingletonGroup {
                group: format!("{group:?}"),
                count: values.len(),
            });
        }
        stats.insert(group, mean_and_sample_std(values));
    }
    Ok(groups
        .iter()
        .zip(rewards)
        .map(|(group, &reward)| {
            let (mean, std) = stats[group];
            (reward - mean) / (std + GRPO_STD_EPS)
        })
        .collect())
}

/// Mean and standard deviation with Bessel's correction (divide by n - 1), as `torch.std`.
/// Callers guarantee `values.len() >= 2`.
fn mean_and_sample_std(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bessel_corrected_std_in_the_denominator() {
        // Group {1, 0}: mean 0.5, sample std sqrt(((0.5)^2 + (0.5)^2) / 1) = sqrt(0.5).
        let a = grpo_advantages(&[1.0, 0.0], &[7, 7]).unwrap();
        let std = 0.5f64.sqrt();
        assert!((a[0] - 0.5 / (std + 1e-6)).abs() < 1e-15);
        assert!((a[1] + 0.5 / (std + 1e-6)).abs() < 1e-15);
    }

    #[test]
    fn groups_are_normalised_independently_whatever_their_order() {
        let a = grpo_advantages(&[1.0, 0.0, 0.0, 1.0, 1.0], &["p", "q", "p", "q", "q"]).unwrap();
        // p = {1, 0} -> +-0.5/sqrt(0.5); q = {0, 1, 1}: mean 2/3, std sqrt(1/3).
        let sq = (1.0f64 / 3.0).sqrt() + 1e-6;
        assert!((a[1] - (0.0 - 2.0 / 3.0) / sq).abs() < 1e-12);
        assert!((a[3] - (1.0 / 3.0) / sq).abs() < 1e-12);
        assert!((a[0] + a[2]).abs() < 1e-15);
    }

    #[test]
    fn all_equal_rewards_give_zero_advantage() {
        assert_eq!(
            grpo_advantages(&[1.0, 1.0, 1.0], &[0, 0, 0]).unwrap(),
            vec![0.0; 3]
        );
    }

    #[test]
    fn a_lone_response_is_an_error_not_a_nan() {
        // One response in the batch: std with n - 1 = 0 is undefined.
        let err = grpo_advantages(&[1.0], &[3]).unwrap_err();
        assert!(
            matches!(err, TrainError::SingletonGroup { count: 1, .. }),
            "{err}"
        );
        assert!(grpo_advantages(&[1.0, 0.0], &[0]).is_err());
    }
}
