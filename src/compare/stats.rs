//! The statistics behind `spotlight compare`: a paired bootstrap over per-item avg@k, the
//! exact McNemar test for k = 1, and Holm's step-down correction.
//!
//! Every test here is one-sided and asks the question a regression gate asks: "is the
//! candidate worse than the baseline?". A two-sided test would spend half of alpha on
//! improvements, which never fail a build, and make the gate blind to half its budget.

use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_distr::{Binomial, Distribution};
use serde::Serialize;

/// Bootstrap resamples `spotlight compare` draws by default: enough that the Monte Carlo
/// error of a p-value near the first Holm threshold (alpha / 8 = 0.006 for eight
/// benchmarks at alpha 0.05) is small (about 0.0008).
pub const DEFAULT_RESAMPLES: usize = 10_000;

/// Floating-point slack when comparing resampled means with the observed one: sums of the
/// same values in another order may differ in the last bits, and a tie must count as a tie.
const TIE_EPSILON: f64 = 1e-12;

/// Which test produced a p-value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TestKind {
    /// Paired bootstrap over the items' avg@k differences, resampled under the null.
    PairedBootstrap,
    /// Exact McNemar test on the discordant items (every item has one sample in both runs).
    McNemarExact,
}

impl TestKind {
    pub fn label(self) -> &'static str {
        match self {
            TestKind::PairedBootstrap => "bootstrap",
            TestKind::McNemarExact => "McNemar",
        }
    }
}

/// The paired bootstrap of a mean difference.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PairedBootstrap {
    /// Observed mean of `candidate - baseline`, in percentage points.
    pub delta_pp: f64,
    /// 95% percentile interval of the mean difference, in percentage points.
    pub ci95: [f64; 2],
    /// One-sided p-value for "the candidate is worse" (H0: mean difference >= 0).
    pub p_regression: f64,
}

/// Paired bootstrap over per-item differences `diffs[i] = candidate_i - baseline_i` (each
/// in [-1, 1]).
///
/// The p-value is the studentized (bootstrap-t) one: with t = mean / se, it counts the
/// resamples whose t* = (mean* - mean) / se* is at least as low as the observed t, i.e.
/// p = (1 + #{t* <= t}) / (resamples + 1), the add-one form that is never zero and keeps
/// the test valid with a finite number of resamples. Studentizing matters here: most
/// items are always or never solved, so differences are mostly exact zeros with a few
/// large values (heavy tails), and an extreme mean then comes with a large spread; the
/// studentized statistic accounts for that to second order, the plain centred bootstrap
/// of the mean does not. Both stay conservative far in the tail where Holm's thresholds
/// lie (alpha / 8 for eight benchmarks): on 800 simulated pairs of runs of one model
/// (8 x 400 items, k = 8, 1000 resamples) the share of p-values <= 0.00625 was 0.0039
/// centred and 0.0044 studentized, and the share of seeds with any flag at alpha 0.05
/// 3.1% and 3.4%, against about 4.9% for an exact test
/// (`SEEDS=800 cargo test --test compare_false_positives experiment -- --ignored`).
///
/// The interval is the percentile interval of the resampled means (same draws), which
/// reads directly in points. `None` without items.
///
/// A resample's mean and spread depend only on how often each distinct value is drawn,
/// and those counts are multinomial. With k samples per item a difference takes at most
/// 2k + 1 values, so drawing the counts (one binomial per distinct value) costs O(values)
/// per resample instead of O(items): the same distribution, hundreds of times cheaper on
/// a benchmark of a few thousand items. Where the values are many (items with different
/// numbers of scored samples), items are resampled one by one.
///
/// `margin` (a fraction, >= 0) shifts the null hypothesis to "the candidate is at most `margin`
/// worse" (H0: mean >= -margin), so a small p-value means a drop *larger than the margin*: the
/// observed statistic is (mean + margin) / se. With margin 0 it is the plain test above.
pub fn paired_bootstrap(
    diffs: &[f64],
    margin: f64,
    resamples: usize,
    seed: u64,
) -> Option<PairedBootstrap> {
    let n = diffs.len();
    if n == 0 {
        return None;
    }
    let nf = n as f64;
    let observed = diffs.iter().sum::<f64>() / nf;
    let spread = |sum: f64, sum_sq: f64| ((sum_sq / nf - (sum / nf).powi(2)).max(0.0) / nf).sqrt();
    let observed_se = spread(
        diffs.iter().sum::<f64>(),
        diffs.iter().map(|d| d * d).sum::<f64>(),
    );
    let observed_t = studentized(observed + margin, observed_se);
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let support = distinct_values(diffs);
    let mut means = Vec::with_capacity(resamples);
    let mut at_least_as_low = 0usize;
    for _ in 0..resamples {
        let (sum, sum_sq) = if support.len() <= MULTINOMIAL_MAX_VALUES {
            multinomial_sums(&support, n as u64, &mut rng)
        } else {
            (0..n)
                .map(|_| diffs[index_below(&mut rng, n)])
                .fold((0.0, 0.0), |(s, q), d| (s + d, q + d * d))
        };
        let mean = sum / nf;
        // Centred on the observed mean: t* is a draw of the statistic under H0.
        let t = studentized(mean - observed, spread(sum, sum_sq));
        if t <= observed_t + TIE_EPSILON {
            at_least_as_low += 1;
        }
        means.push(mean);
    }
    means.sort_by(f64::total_cmp);
    let ci95 = if means.is_empty() {
        [observed * 100.0; 2]
    } else {
        let at =
            |q: f64| means[((q * (means.len() - 1) as f64).round() as usize).min(means.len() - 1)];
        [100.0 * at(0.025), 100.0 * at(0.975)]
    };
    Some(PairedBootstrap {
        delta_pp: 100.0 * observed,
        ci95,
        p_regression: (1 + at_least_as_low) as f64 / (resamples + 1) as f64,
    })
}

/// mean / se, with a zero spread handled as the limit: no difference is t = 0, any other
/// difference without spread is infinitely far from zero.
fn studentized(mean: f64, se: f64) -> f64 {
    if mean.abs() <= TIE_EPSILON {
        0.0
    } else if se <= TIE_EPSILON {
        mean.signum() * f64::INFINITY
    } else {
        mean / se
    }
}

/// Above this many distinct differences, resampling item by item is as cheap.
const MULTINOMIAL_MAX_VALUES: usize = 64;

/// Distinct values with their counts, in ascending order (a fixed order keeps the draws
/// reproducible).
fn distinct_values(values: &[f64]) -> Vec<(f64, u64)> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let mut support: Vec<(f64, u64)> = Vec::new();
    for v in sorted {
        match support.last_mut() {
            Some((last, count)) if last.to_bits() == v.to_bits() => *count += 1,
            _ => support.push((v, 1)),
        }
    }
    support
}

/// Sum and sum of squares of `n` draws with replacement from the values with the given
/// counts: multinomial counts by successive conditional binomials, value j drawn
/// Bin(left, count_j / rest).
fn multinomial_sums(support: &[(f64, u64)], n: u64, rng: &mut ChaCha20Rng) -> (f64, f64) {
    let mut left_draws = n;
    let mut left_weight: u64 = support.iter().map(|(_, c)| c).sum();
    let mut sum = 0.0;
    let mut sum_sq = 0.0;
    for &(value, count) in support {
        if left_draws == 0 {
            break;
        }
        let drawn = if count >= left_weight {
            left_draws
        } else {
            // p in (0, 1): count < left_weight and count >= 1.
            Binomial::new(left_draws, count as f64 / left_weight as f64)
                .map(|b| b.sample(rng))
                .unwrap_or(0)
        };
        sum += value * drawn as f64;
        sum_sq += value * value * drawn as f64;
        left_draws -= drawn;
        left_weight -= count;
    }
    (sum, sum_sq)
}

/// A uniform index in `0..n` from one 64-bit draw (Lemire's multiply-shift). The bias is
/// at most n / 2^64, far below anything a bootstrap can see.
fn index_below(rng: &mut ChaCha20Rng, n: usize) -> usize {
    ((u128::from(rng.next_u64()) * n as u128) >> 64) as usize
}

/// Exact one-sided McNemar test: `worse` items the baseline got right and the candidate
/// wrong, `better` the reverse. Under H0 each discordant item is a fair coin, so
/// p = P(X >= worse) with X ~ Binomial(worse + better, 1/2). 1 without discordant items.
pub fn mcnemar_regression(worse: u64, better: u64) -> f64 {
    mcnemar_regression_margin(worse, better, 0, 0.0)
}

/// McNemar's test of "worse by more than `margin`" (a fraction of the `items` compared), exact
/// conditionally on the number of discordant items d = worse + better: the drop is
/// (worse - better) / items, whose conditional mean is d (2 pi - 1) / items for pi = P(a
/// discordant item is a loss), so H0 "drop <= margin" is pi <= 1/2 + margin * items / (2 d), and
/// p = P(X >= worse) with X ~ Binomial(d, that pi). Margin 0 is the plain test.
pub fn mcnemar_regression_margin(worse: u64, better: u64, items: u64, margin: f64) -> f64 {
    let n = worse + better;
    if n == 0 {
        return 1.0;
    }
    let pi = 0.5 + margin * items as f64 / (2.0 * n as f64);
    if pi >= 1.0 {
        return 1.0;
    }
    let (ln_p, ln_q) = (pi.ln(), (1.0 - pi).ln());
    // log P(X = x) = ln C(n, x) + x ln pi + (n - x) ln(1 - pi), accumulated from x = 0 upwards
    // so that large n neither overflows nor underflows.
    let mut ln_choose = 0.0f64;
    let mut terms = Vec::with_capacity((n - worse + 1) as usize);
    for x in 0..=n {
        if x >= worse {
            terms.push(ln_choose + x as f64 * ln_p + (n - x) as f64 * ln_q);
        }
        if x < n {
            ln_choose += ((n - x) as f64).ln() - ((x + 1) as f64).ln();
        }
    }
    let max = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let tail = max + terms.iter().map(|t| (t - max).exp()).sum::<f64>().ln();
    tail.exp().min(1.0)
}

/// Holm's step-down adjusted p-values, in the input order: sorted ascending, the i-th
/// smallest (0-based) is multiplied by (m - i), then made monotone. Rejecting where the
/// adjusted value is <= alpha controls the familywise error rate at alpha under any
/// dependence between the tests.
pub fn holm_adjust(p_values: &[f64]) -> Vec<f64> {
    let m = p_values.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p_values[*a].total_cmp(&p_values[*b]));
    let mut adjusted = vec![0.0; m];
    let mut running = 0.0f64;
    for (rank, &i) in order.iter().enumerate() {
        let scaled = ((m - rank) as f64 * p_values[i]).min(1.0);
        running = running.max(scaled);
        adjusted[i] = running;
    }
    adjusted
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mcnemar_matches_hand_computed_binomial_tails() {
        // 3 worse, 0 better: P(X >= 3 | n = 3) = 1/8.
        assert!((mcnemar_regression(3, 0) - 0.125).abs() < 1e-12);
        // 2 worse, 2 better: P(X >= 2 | n = 4) = (6 + 4 + 1) / 16.
        assert!((mcnemar_regression(2, 2) - 11.0 / 16.0).abs() < 1e-12);
        // 0 worse: every outcome counts.
        assert!((mcnemar_regression(0, 5) - 1.0).abs() < 1e-12);
        assert_eq!(mcnemar_regression(0, 0), 1.0);
        // Large n stays finite: 600 worse of 1000 is far in the tail (z ~ 6.3).
        let p = mcnemar_regression(600, 400);
        assert!(p > 0.0 && p < 1e-8, "{p}");
    }

    #[test]
    fn mcnemar_with_a_margin_is_the_shifted_binomial_tail() {
        // 10 discordant of 100 items, 8 losses, margin 2 points: pi0 = 0.5 + 0.02*100/20 = 0.6
        let p = mcnemar_regression_margin(8, 2, 100, 0.02);
        let tail: f64 = (8..=10u64)
            .map(|x| {
                let c = (0..x).fold(1.0, |c, i| c * (10 - i) as f64 / (i + 1) as f64);
                c * 0.6f64.powi(x as i32) * 0.4f64.powi(10 - x as i32)
            })
            .sum();
        assert!((p - tail).abs() < 1e-12, "{p} vs {tail}");
        assert!(p > mcnemar_regression(8, 2));
        // a margin wider than every discordant item could move: never a regression
        assert_eq!(mcnemar_regression_margin(8, 2, 100, 0.2), 1.0);
    }

    #[test]
    fn holm_multiplies_by_remaining_tests_and_stays_monotone() {
        // Sorted 0.01, 0.02, 0.04 -> 0.03, 0.04, 0.04 (0.04 * 1 lifted to the running max).
        let adj = holm_adjust(&[0.04, 0.01, 0.02]);
        let want = [0.04, 0.03, 0.04];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        // Capped at 1.
        assert_eq!(holm_adjust(&[0.6, 0.7]), vec![1.0, 1.0]);
        assert!(holm_adjust(&[]).is_empty());
    }

    #[test]
    fn bootstrap_is_seeded_and_brackets_the_observed_difference() {
        let diffs: Vec<f64> = (0..300).map(|i| [-0.25, 0.0, 0.125, -0.5][i % 4]).collect();
        let a = paired_bootstrap(&diffs, 0.0, 2000, 9).unwrap();
        assert_eq!(a, paired_bootstrap(&diffs, 0.0, 2000, 9).unwrap());
        let mean = diffs.iter().sum::<f64>() / 300.0 * 100.0;
        assert!((a.delta_pp - mean).abs() < 1e-9);
        assert!(a.ci95[0] < a.delta_pp && a.delta_pp < a.ci95[1], "{a:?}");
        // mean -15.6 pp with sd ~ 0.23 per item -> about 12 standard errors: p at its floor.
        assert!((a.p_regression - 1.0 / 2001.0).abs() < 1e-12, "{a:?}");
    }

    #[test]
    fn a_margin_turns_a_significant_small_drop_into_no_regression() {
        // 2000 items, 3% of them lost: a drop of 3 points, significant against 0
        let diffs: Vec<f64> = (0..2000)
            .map(|i| if i % 100 < 3 { -1.0 } else { 0.0 })
            .collect();
        let plain = paired_bootstrap(&diffs, 0.0, 2000, 4).unwrap();
        assert!(plain.p_regression < 0.01, "{plain:?}");
        // "more than 5 points worse" is not supported by a 3-point drop
        let margin = paired_bootstrap(&diffs, 0.05, 2000, 4).unwrap();
        assert!(margin.p_regression > 0.5, "{margin:?}");
        // the interval and the estimate do not depend on the margin
        assert_eq!(plain.delta_pp, margin.delta_pp);
        assert_eq!(plain.ci95, margin.ci95);
    }

    #[test]
    fn identical_runs_give_p_one_and_an_improvement_is_no_regression() {
        let zeros = vec![0.0; 50];
        let same = paired_bootstrap(&zeros, 0.0, 500, 1).unwrap();
        assert_eq!(same.p_regression, 1.0);
        assert_eq!(same.ci95, [0.0, 0.0]);
        let better: Vec<f64> = (0..100)
            .map(|i| if i % 3 == 0 { 0.5 } else { 0.0 })
            .collect();
        assert!(paired_bootstrap(&better, 0.0, 500, 1).unwrap().p_regression > 0.9);
        assert!(paired_bootstrap(&[], 0.0, 500, 1).is_none());
    }

    #[test]
    fn bootstrap_p_value_is_close_to_the_normal_approximation() {
        // Differences with mean -0.04 and sd ~0.3 over 400 items: z = -0.04 / (0.3 / 20)
        // ~ -2.67, one-sided normal p ~ 0.004. The bootstrap should agree to within its
        // Monte Carlo and small-sample error.
        let diffs: Vec<f64> = (0..400)
            .map(|i| match i % 25 {
                0..=2 => -0.5,
                3..=4 => 0.5,
                5 => -0.25,
                _ => 0.0,
            })
            .collect();
        let mean = diffs.iter().sum::<f64>() / 400.0;
        let var = diffs.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / 400.0;
        let z = mean / (var / 400.0).sqrt();
        let normal_p = 0.5 * erfc(-z / std::f64::consts::SQRT_2);
        let boot = paired_bootstrap(&diffs, 0.0, 20_000, 3).unwrap();
        assert!(
            (boot.p_regression - normal_p).abs() < 0.5 * normal_p + 0.002,
            "bootstrap {} vs normal {normal_p} (z {z})",
            boot.p_regression
        );
    }

    #[test]
    fn multinomial_and_item_by_item_resampling_agree_in_distribution() {
        // The same differences, once with few distinct values (multinomial path) and once
        // with a tiny jitter that makes every value distinct (item-by-item path): the two
        // bootstraps estimate the same distribution, so their intervals and p-values agree
        // up to Monte Carlo error (sd of the 2.5% quantile ~ 0.1 points here).
        let diffs: Vec<f64> = (0..500)
            .map(|i| [-0.375, -0.125, 0.0, 0.0, 0.125, 0.25, -0.25][i % 7])
            .collect();
        let jittered: Vec<f64> = diffs
            .iter()
            .enumerate()
            .map(|(i, d)| d + (i as f64 - 250.0) * 1e-9)
            .collect();
        assert!(distinct_values(&diffs).len() <= MULTINOMIAL_MAX_VALUES);
        assert!(distinct_values(&jittered).len() > MULTINOMIAL_MAX_VALUES);
        let a = paired_bootstrap(&diffs, 0.0, 4000, 5).unwrap();
        let b = paired_bootstrap(&jittered, 0.0, 4000, 6).unwrap();
        assert!((a.delta_pp - b.delta_pp).abs() < 1e-4);
        for q in 0..2 {
            assert!((a.ci95[q] - b.ci95[q]).abs() < 0.4, "{a:?} vs {b:?}");
        }
        assert!(
            (a.p_regression - b.p_regression).abs() < 0.03,
            "{a:?} vs {b:?}"
        );
    }

    /// Complementary error function (Numerical Recipes' erfcc, relative error < 1.2e-7),
    /// only to check the bootstrap against the normal approximation.
    fn erfc(x: f64) -> f64 {
        let z = x.abs();
        let t = 1.0 / (1.0 + 0.5 * z);
        let r = t
            * (-z * z - 1.26551223
                + t * (1.00002368
                    + t * (0.37409196
                        + t * (0.09678418
                            + t * (-0.18628806
                                + t * (0.27886807
                                    + t * (-1.13520398
                                        + t * (1.48851513
                                            + t * (-0.82215223 + t * 0.17087277)))))))))
                .exp();
        if x >= 0.0 {
            r
        } else {
            2.0 - r
        }
    }
}
