//! Token perception (spec sections 5-7): how much each sampled token depends on the image,
//! and the two ways VPPO uses it — Trajectory Advantage Shaping (TAS) and Token-level
//! Gradient Filtering (TGF).
//!
//! Everything here is a function of the rollout (old and perturbed-image log-probs and the
//! response mask), never of the current policy, so it carries no gradient and is computed in
//! `f64` on [`TokenGrid`]s, once per mini-batch.

use super::grid::TokenGrid;

/// Log-ratios are clamped to `[-20, 20]` before `exp` so that a token whose probability
/// collapses under the perturbation gives a large but finite dependency.
pub const LOG_RATIO_CLAMP: f64 = 20.0;
/// Upper clamp of a token's dependency: one token cannot dominate its trajectory's score.
pub const MAX_TOKEN_DEPENDENCY: f64 = 10.0;
/// TAS is skipped when the mini-batch's trajectory dependencies span less than this.
pub const MIN_DEPENDENCY_SPREAD: f64 = 1e-6;
/// Added to the mean normalised dependency before dividing by it (all-zero micro-batches).
pub const TAS_MEAN_EPS: f64 = 1e-8;

/// The dependency of one token: Schulman's k3 estimator of KL(pi(.|I) || pi(.|I')) at the
/// sampled token, `d = clamp(aug - old, -20, 20)`, `S = clamp(exp(d) - d - 1, 0, 10)`.
/// 0 when the perturbation does not change the token's probability.
pub fn k3_dependency(old_logprob: f64, aug_logprob: f64) -> f64 {
    let d = (aug_logprob - old_logprob).clamp(-LOG_RATIO_CLAMP, LOG_RATIO_CLAMP);
    (d.exp() - d - 1.0).clamp(0.0, MAX_TOKEN_DEPENDENCY)
}

/// `S[i][t]` for every response token, 0 on padding (`mask == 0`).
pub fn token_dependency(mask: &TokenGrid, old: &TokenGrid, aug: &TokenGrid) -> TokenGrid {
    let mut out = TokenGrid::zeros(mask.rows(), mask.cols());
    for i in 0..mask.rows() {
        let (m, o, a) = (mask.row(i), old.row(i), aug.row(i));
        for (t, s) in out.row_mut(i).iter_mut().enumerate() {
            *s = k3_dependency(o[t], a[t]) * m[t];
        }
    }
    out
}

/// Trajectory dependency `s_i = sum_t(S[i,t] * m[i,t]) / max(1, sum_t m[i,t])`: the mean
/// token dependency of each response (0 for an empty response).
pub fn trajectory_dependency(dependency: &TokenGrid, mask: &TokenGrid) -> Vec<f64> {
    (0..mask.rows())
        .map(|i| {
            let (s, m) = (dependency.row(i), mask.row(i));
            let total: f64 = s.iter().zip(m).map(|(s, m)| s * m).sum();
            let count: f64 = m.iter().sum();
            total / count.max(1.0)
        })
        .collect()
}

/// The range of trajectory dependencies over a mini-batch, used to normalise every
/// micro-batch of it the same way.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct DependencyRange {
    pub min: f64,
    pub max: f64,
}

/// `s_min`, `s_max` over the responses that have at least one token; `None` when fewer than
/// two such responses exist (then TAS leaves every advantage unchanged).
pub fn dependency_range(scores: &[f64], lengths: &[f64]) -> Option<DependencyRange> {
    let valid: Vec<f64> = scores
        .iter()
        .zip(lengths)
        .filter(|(_, &n)| n > 0.0)
        .map(|(&s, _)| s)
        .collect();
    if valid.len() < 2 {
        return None;
    }
    let min = valid.iter().copied().fold(f64::INFINITY, f64::min);
    let max = valid.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some(DependencyRange { min, max })
}

/// TAS scales of the responses of one (micro-)batch, given the mini-batch's `range`:
/// `n_i = clamp((s_i - s_min) / (s_max - s_min), 0, 1)`, `mu = mean(n_i)` over this batch's
/// non-empty responses, `beta_max = beta_min + (1 - beta_min) / (mu + 1e-8)`,
/// `scale_i = beta_min + n_i (beta_max - beta_min)`. Empty responses, and every response when
/// the range is missing or narrower than 1e-6, keep scale 1. Because `mean(scale) = 1` over
/// the non-empty responses, shaping re-weights trajectories without changing the step size.
pub fn advantage_scales(
    scores: &[f64],
    lengths: &[f64],
    range: Option<DependencyRange>,
    beta_min: f64,
) -> Vec<f64> {
    let mut scales = vec![1.0; scores.len()];
    let Some(range) = range else {
        return scales;
    };
    let spread = range.max - range.min;
    if spread <= MIN_DEPENDENCY_SPREAD {
        return scales;
    }
    let valid: Vec<usize> = (0..scores.len())
        .filter(|&i| lengths.get(i).is_some_and(|&n| n > 0.0))
        .collect();
    if valid.is_empty() {
        return scales;
    }
    let normalised: Vec<f64> = valid
        .iter()
        .map(|&i| ((scores[i] - range.min) / spread).clamp(0.0, 1.0))
        .collect();
    let mu = normalised.iter().sum::<f64>() / normalised.len() as f64;
    let beta_max = beta_min + (1.0 - beta_min) / (mu + TAS_MEAN_EPS);
    for (&i, n) in valid.iter().zip(&normalised) {
        scales[i] = beta_min + n * (beta_max - beta_min);
    }
    scales
}

/// How many of a response's `length` tokens TGF keeps: `ceil(rho * length)`.
///
/// Computed in f64, where `ceil(rho * n)` is exact for rho in {0.1, 0.2, ..., 0.9} and n up
/// to 20,000 (checked against exact rationals). Note: the reference multiplies an integer
/// mask sum by a Python float, which torch evaluates in float32; for rho = 0.3 or 0.6 that
/// rounds some products up (0.6 * 25 -> 15.000001 -> 16 tokens). rho = 0.2 and 0.4, the
/// values used in the paper, agree in both.
pub fn top_k_count(rho: f64, length: f64) -> usize {
    let k = (rho * length).ceil();
    if k.is_finite() && k > 0.0 {
        k as usize
    } else {
        0
    }
}

/// TGF mask: for each response, 1 on its `ceil(rho * len)` tokens with the largest
/// dependency, 0 elsewhere (padding is never selected). Ties are broken by position, earlier
/// tokens first (a stable sort), so the result is deterministic.
pub fn gradient_filter_mask(dependency: &TokenGrid, mask: &TokenGrid, rho: f64) -> TokenGrid {
    let mut out = TokenGrid::zeros(mask.rows(), mask.cols());
    for i in 0..mask.rows() {
        let (s, m) = (dependency.row(i), mask.row(i));
        let mut tokens: Vec<usize> = (0..m.len()).filter(|&t| m[t] > 0.0).collect();
        let k = top_k_count(rho, m.iter().sum());
        tokens.sort_by(|&a, &b| s[b].total_cmp(&s[a]));
        let row = out.row_mut(i);
        for &t in tokens.iter().take(k) {
            row[t] = 1.0;
        }
    }
    out
}

/// What TGF did to a mini-batch, for the per-step metrics (the reference logs the same).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct PerceptionStats {
    /// Selected tokens / response tokens (about rho; more for short responses, by the ceil).
    pub selected_fraction: f64,
    /// Mean over responses with k > 0 of the k-th largest S (the per-response cut-off).
    pub threshold: Option<f64>,
    /// Mean S of the selected tokens.
    pub mean_selected: Option<f64>,
    /// Mean S of the response tokens that were not selected.
    pub mean_rejected: Option<f64>,
}

/// Statistics of the TGF `selection` (a mask within `mask`) given the dependencies `S`.
pub fn perception_stats(
    dependency: &TokenGrid,
    mask: &TokenGrid,
    selection: &TokenGrid,
) -> PerceptionStats {
    let mean = |sum: f64, n: usize| (n > 0).then(|| sum / n as f64);
    let (mut sel_sum, mut sel_n, mut rej_sum, mut rej_n) = (0.0, 0usize, 0.0, 0usize);
    let (mut cut_sum, mut cut_n) = (0.0, 0usize);
    for i in 0..mask.rows() {
        let mut cut = f64::INFINITY;
        for ((&s, &m), &k) in dependency
            .row(i)
            .iter()
            .zip(mask.row(i))
            .zip(selection.row(i))
        {
            if m <= 0.0 {
                continue;
            }
            if k > 0.0 {
                sel_sum += s;
                sel_n += 1;
                cut = cut.min(s);
            } else {
                rej_sum += s;
                rej_n += 1;
            }
        }
        if cut.is_finite() {
            cut_sum += cut;
            cut_n += 1;
        }
    }
    let tokens = sel_n + rej_n;
    PerceptionStats {
        selected_fraction: if tokens > 0 {
            sel_n as f64 / tokens as f64
        } else {
            0.0
        },
        threshold: mean(cut_sum, cut_n),
        mean_selected: mean(sel_sum, sel_n),
        mean_rejected: mean(rej_sum, rej_n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(rows: &[&[f64]]) -> TokenGrid {
        TokenGrid::from_rows("test", &rows.iter().map(|r| r.to_vec()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn k3_is_zero_without_change_and_clamped_at_both_ends() {
        assert_eq!(k3_dependency(-1.3, -1.3), 0.0);
        // d = -1: e^-1 - (-1) - 1 = e^-1.
        assert!((k3_dependency(-1.0, -2.0) - (-1f64).exp()).abs() < 1e-15);
        // d = 2: e^2 - 3 = 4.389 (below the cap); d = 30 -> clamped to 20 -> capped at 10.
        assert!((k3_dependency(0.0, 2.0) - (2f64.exp() - 3.0)).abs() < 1e-12);
        assert_eq!(k3_dependency(-30.0, 0.0), MAX_TOKEN_DEPENDENCY);
        // d = -50 -> clamped to -20: e^-20 + 19, capped at 10.
        assert_eq!(k3_dependency(0.0, -50.0), MAX_TOKEN_DEPENDENCY);
    }

    #[test]
    fn padding_has_no_dependency_and_empty_responses_score_zero() {
        let mask = grid(&[&[1.0, 1.0, 0.0], &[0.0, 0.0, 0.0]]);
        let old = grid(&[&[-1.0, -1.0, -9.0], &[-1.0, -1.0, -1.0]]);
        let aug = grid(&[&[-2.0, -1.0, 0.0], &[-5.0, -5.0, -5.0]]);
        let s = token_dependency(&mask, &old, &aug);
        assert_eq!(s.row(0)[2], 0.0);
        assert_eq!(s.row(1), &[0.0, 0.0, 0.0]);
        let traj = trajectory_dependency(&s, &mask);
        // s_0 = (e^-1 + 0) / 2; s_1 = 0 / max(1, 0).
        assert!((traj[0] - (-1f64).exp() / 2.0).abs() < 1e-15);
        assert_eq!(traj[1], 0.0);
    }

    #[test]
    fn range_ignores_empty_responses_and_needs_two_scores() {
        assert_eq!(dependency_range(&[0.3], &[4.0]), None);
        assert_eq!(dependency_range(&[0.3, 9.0], &[4.0, 0.0]), None);
        assert_eq!(
            dependency_range(&[0.3, 9.0, 0.1], &[4.0, 0.0, 2.0]),
            Some(DependencyRange { min: 0.1, max: 0.3 })
        );
    }

    #[test]
    fn tas_scales_average_to_one_and_span_beta_min_to_beta_max() {
        let scores = [0.0, 1.0, 3.0, 4.0];
        let lengths = [2.0; 4];
        let range = dependency_range(&scores, &lengths);
        let scales = advantage_scales(&scores, &lengths, range, 0.9);
        // n = [0, .25, .75, 1], mu = 0.5, beta_max = 0.9 + 0.1 / 0.5 = 1.1 (up to the 1e-8):
        // scale = 0.9 + n * 0.2 = [0.9, 0.95, 1.05, 1.1].
        let expect = [0.9, 0.95, 1.05, 1.1];
        for (s, e) in scales.iter().zip(expect) {
            assert!((s - e).abs() < 1e-7, "{scales:?}");
        }
        assert!((scales.iter().sum::<f64>() / 4.0 - 1.0).abs() < 1e-7);
    }

    #[test]
    fn tas_leaves_equal_dependencies_and_single_responses_alone() {
        // All trajectories with equal dependency: spread 0 <= 1e-6, every scale 1.
        let same = [0.7; 5];
        let range = dependency_range(&same, &[3.0; 5]);
        assert_eq!(advantage_scales(&same, &[3.0; 5], range, 0.9), vec![1.0; 5]);
        // One response in a batch: no range at all.
        assert_eq!(dependency_range(&[0.7], &[3.0]), None);
        assert_eq!(advantage_scales(&[0.7], &[3.0], None, 0.9), vec![1.0]);
    }

    #[test]
    fn tas_keeps_empty_responses_at_one_and_takes_mu_over_the_micro_batch() {
        let range = Some(DependencyRange { min: 0.0, max: 2.0 });
        // Micro-batch of a larger mini-batch: n = [0.5, -, 1.0], mu = 0.75 over the two
        // non-empty responses; beta_max = 0.8 + 0.2/0.75; the empty response keeps 1.
        let scales = advantage_scales(&[1.0, 0.0, 2.0], &[3.0, 0.0, 1.0], range, 0.8);
        let beta_max = 0.8 + 0.2 / (0.75 + 1e-8);
        assert!((scales[0] - (0.8 + 0.5 * (beta_max - 0.8))).abs() < 1e-15);
        assert_eq!(scales[1], 1.0);
        assert!((scales[2] - beta_max).abs() < 1e-15);
        // Scores outside the mini-batch range are clamped to [0, 1] before scaling.
        let clamped = advantage_scales(&[-1.0, 5.0], &[1.0, 1.0], range, 0.8);
        let beta_max = 0.8 + 0.2 / (0.5 + 1e-8);
        assert!((clamped[0] - 0.8).abs() < 1e-15 && (clamped[1] - beta_max).abs() < 1e-15);
    }

    #[test]
    fn tas_micro_batch_of_lowest_scores_gets_beta_min() {
        // mu = 0: beta_max explodes to 0.9 + 0.1/1e-8 but every n is 0, so scale = beta_min.
        let range = Some(DependencyRange { min: 0.0, max: 1.0 });
        assert_eq!(
            advantage_scales(&[0.0, 0.0], &[2.0, 2.0], range, 0.9),
            vec![0.9, 0.9]
        );
    }

    #[test]
    fn k_is_the_ceiling_of_rho_times_length() {
        assert_eq!(top_k_count(0.4, 0.0), 0);
        assert_eq!(top_k_count(0.4, 1.0), 1); // 0.4 -> 1
        assert_eq!(top_k_count(0.4, 5.0), 2); // exactly 2.0 stays 2
        assert_eq!(top_k_count(0.4, 6.0), 3); // 2.4 -> 3
        assert_eq!(top_k_count(0.2, 10.0), 2);
        assert_eq!(top_k_count(0.6, 25.0), 15); // f64: no float32 round-up to 16
        assert_eq!(top_k_count(1.0, 7.0), 7);
        for n in 0usize..5000 {
            assert_eq!(top_k_count(0.4, n as f64), (2 * n).div_ceil(5), "n = {n}");
        }
    }

    #[test]
    fn tgf_keeps_the_top_k_tokens_never_padding_ties_by_position() {
        let mask = grid(&[
            &[1.0, 1.0, 1.0, 1.0, 1.0, 0.0],
            &[1.0, 1.0, 1.0, 0.0, 0.0, 0.0],
        ]);
        let s = grid(&[
            &[0.1, 0.5, 0.3, 0.5, 0.0, 9.0],
            &[0.2, 0.2, 0.2, 0.0, 0.0, 0.0],
        ]);
        let tgf = gradient_filter_mask(&s, &mask, 0.4);
        // Row 0: k = ceil(2.0) = 2 -> the two 0.5s; the 9.0 is padding.
        assert_eq!(tgf.row(0), &[0.0, 1.0, 0.0, 1.0, 0.0, 0.0]);
        // Row 1: k = ceil(1.2) = 2, all tied -> the first two positions.
        assert_eq!(tgf.row(1), &[1.0, 1.0, 0.0, 0.0, 0.0, 0.0]);
    }

    #[test]
    fn perception_stats_report_the_cut_off_and_both_means() {
        let mask = grid(&[
            &[1.0, 1.0, 1.0, 1.0, 1.0],
            &[1.0, 1.0, 0.0, 0.0, 0.0],
            &[0.0; 5],
        ]);
        let s = grid(&[
            &[0.1, 0.5, 0.3, 0.7, 0.0],
            &[2.0, 1.0, 0.0, 0.0, 0.0],
            &[0.0; 5],
        ]);
        let tgf = gradient_filter_mask(&s, &mask, 0.4);
        let stats = perception_stats(&s, &mask, &tgf);
        // Row 0 keeps 2 of 5 ({0.7, 0.5}, cut 0.5), row 1 keeps 1 of 2 ({2.0}, cut 2.0).
        assert!((stats.selected_fraction - 3.0 / 7.0).abs() < 1e-15);
        assert!((stats.threshold.unwrap() - 1.25).abs() < 1e-15);
        assert!((stats.mean_selected.unwrap() - 3.2 / 3.0).abs() < 1e-15);
        assert!((stats.mean_rejected.unwrap() - 1.4 / 4.0).abs() < 1e-15);
        let none = perception_stats(&s, &TokenGrid::zeros(3, 5), &TokenGrid::zeros(3, 5));
        assert_eq!((none.selected_fraction, none.threshold), (0.0, None));
    }

    #[test]
    fn tgf_of_an_empty_response_selects_nothing() {
        let mask = grid(&[&[0.0, 0.0]]);
        let s = grid(&[&[0.0, 0.0]]);
        assert_eq!(gradient_filter_mask(&s, &mask, 0.4).row(0), &[0.0, 0.0]);
    }
}
