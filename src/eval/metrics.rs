//! avg@k (the paper's metric), pass@k (the unbiased estimator), and 95% bootstrap
//! confidence intervals over items.
//!
//! avg@k: the mean of each item's k 0/1 scores, averaged over items (spec, section 10).
//! pass@k with n samples of which c are correct: `1 - C(n-c, k) / C(n, k)` (Chen et al.,
//! 2021); with n = k this is 1 when any sample is correct.

use rand::{Rng, SeedableRng};
use serde::Serialize;

/// Number of bootstrap resamples behind every confidence interval.
pub const BOOTSTRAP_RESAMPLES: usize = 1000;

/// One item's graded samples.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemScores {
    pub item_id: String,
    /// 0/1 per sample that finished (samples with a backend error are not scored).
    pub correct: Vec<bool>,
}

impl ItemScores {
    /// The item's mean accuracy over its samples; `None` without any scored sample.
    pub fn avg(&self) -> Option<f64> {
        if self.correct.is_empty() {
            return None;
        }
        Some(self.correct.iter().filter(|c| **c).count() as f64 / self.correct.len() as f64)
    }

    /// Unbiased pass@k from this item's n samples (k <= n).
    pub fn pass_at(&self, k: usize) -> Option<f64> {
        let n = self.correct.len();
        if n == 0 || k == 0 || k > n {
            return None;
        }
        let c = self.correct.iter().filter(|c| **c).count();
        if n - c < k {
            return Some(1.0);
        }
        // C(n-c, k) / C(n, k) = prod_{i=n-c+1}^{n} (1 - k / i), numerically stable.
        let ratio: f64 = ((n - c + 1)..=n)
            .map(|i| 1.0 - k as f64 / i as f64)
            .product();
        Some(1.0 - ratio)
    }
}

/// A metric over items, in percent, with its 95% bootstrap interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Estimate {
    pub value: f64,
    pub ci95: [f64; 2],
}

/// Percent mean of per-item values, with a percentile bootstrap over items.
pub fn mean_with_ci(values: &[f64], seed: u64) -> Option<Estimate> {
    if values.is_empty() {
        return None;
    }
    let mean = |v: &mut dyn Iterator<Item = f64>, n: usize| v.sum::<f64>() / n as f64;
    let value = 100.0 * mean(&mut values.iter().copied(), values.len());
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..BOOTSTRAP_RESAMPLES)
        .map(|_| {
            let mut draws = (0..values.len()).map(|_| values[rng.random_range(0..values.len())]);
            100.0 * mean(&mut draws, values.len())
        })
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
    Some(Estimate {
        value,
        ci95: [at(0.025), at(0.975)],
    })
}

/// avg@k and pass@k of a set of items.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub items: usize,
    /// Items with at least one scored sample.
    pub scored_items: usize,
    pub k: usize,
    pub avg_at_k: Option<f64>,
    pub pass_at_k: Option<f64>,
    pub ci95: Option<[f64; 2]>,
    pub pass_ci95: Option<[f64; 2]>,
}

/// Summarises items at `k` samples per item. `seed` fixes the bootstrap.
pub fn summarize(items: &[ItemScores], k: usize, seed: u64) -> Summary {
    let avgs: Vec<f64> = items.iter().filter_map(ItemScores::avg).collect();
    let passes: Vec<f64> = items
        .iter()
        .filter_map(|i| i.pass_at(k.min(i.correct.len())))
        .collect();
    let avg = mean_with_ci(&avgs, seed);
    let pass = mean_with_ci(&passes, seed.wrapping_add(1));
    Summary {
        items: items.len(),
        scored_items: avgs.len(),
        k,
        avg_at_k: avg.map(|e| e.value),
        pass_at_k: pass.map(|e| e.value),
        ci95: avg.map(|e| e.ci95),
        pass_ci95: pass.map(|e| e.ci95),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str, bits: &[u8]) -> ItemScores {
        ItemScores {
            item_id: id.into(),
            correct: bits.iter().map(|b| *b == 1).collect(),
        }
    }

    #[test]
    fn avg_at_k_is_the_mean_of_item_means() {
        // Item a: 3/4, item b: 1/4 -> (0.75 + 0.25) / 2 = 50%.
        let s = summarize(&[item("a", &[1, 1, 1, 0]), item("b", &[0, 0, 1, 0])], 4, 0);
        assert!((s.avg_at_k.unwrap() - 50.0).abs() < 1e-12);
        // pass@4 with n = 4: any correct -> 1 for both.
        assert!((s.pass_at_k.unwrap() - 100.0).abs() < 1e-12);
    }

    #[test]
    fn pass_at_k_matches_the_closed_form() {
        // n = 5, c = 2, k = 2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7.
        let p = item("a", &[1, 0, 1, 0, 0]).pass_at(2).unwrap();
        assert!((p - 0.7).abs() < 1e-12, "{p}");
        // k = 1 is the plain accuracy.
        assert!((item("a", &[1, 0, 1, 0, 0]).pass_at(1).unwrap() - 0.4).abs() < 1e-12);
        assert_eq!(item("a", &[0, 0]).pass_at(2), Some(0.0));
        assert_eq!(item("a", &[]).pass_at(1), None);
    }

    #[test]
    fn bootstrap_interval_brackets_the_mean_and_is_seeded() {
        let values: Vec<f64> = (0..200).map(|i| (i % 3 == 0) as u8 as f64).collect();
        let a = mean_with_ci(&values, 7).unwrap();
        let b = mean_with_ci(&values, 7).unwrap();
        assert_eq!(a, b);
        assert!(a.ci95[0] < a.value && a.value < a.ci95[1]);
        // Width ~ 2 * 1.96 * sqrt(p(1-p)/n) * 100 = 13.1 points for p = 1/3, n = 200.
        let width = a.ci95[1] - a.ci95[0];
        assert!((10.0..16.0).contains(&width), "{width}");
    }

    #[test]
    fn items_without_scored_samples_are_left_out_of_the_mean() {
        let s = summarize(&[item("a", &[1]), item("b", &[])], 1, 0);
        assert_eq!(s.items, 2);
        assert_eq!(s.scored_items, 1);
        assert_eq!(s.avg_at_k, Some(100.0));
    }
}
