//! Statistics for the InstructGPT-style evaluation: per-prompt scores and pairwise win rates
//! against the SFT model, judged by the gold labeler, with bootstrap confidence intervals.
//!
//! Intervals resample prompts (the unit of variation in the evaluation set) with replacement,
//! so a model's mean and a pair's win rate carry the uncertainty of having only that many
//! prompts. Resampling draws from the engine's seeded [`Rng`]: the same inputs and seed give
//! the same interval on every machine.

use crate::rng::Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A mean with its 95% percentile bootstrap interval `[lo, hi]`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Interval {
    pub mean: f64,
    pub lo: f64,
    pub hi: f64,
}

impl Interval {
    /// What an empty sample gives: every field NaN, so it can never pass for a measurement.
    pub const NAN: Interval = Interval {
        mean: f64::NAN,
        lo: f64::NAN,
        hi: f64::NAN,
    };

    /// False for the empty-sample interval (or any interval with a non-finite bound).
    pub fn is_finite(&self) -> bool {
        self.mean.is_finite() && self.lo.is_finite() && self.hi.is_finite()
    }

    pub fn contains(&self, x: f64) -> bool {
        self.lo <= x && x <= self.hi
    }
}

/// The `q`-quantile (0..=1) of ascending `sorted` values, interpolating linearly between
/// order statistics (numpy's default, "type 7"). NaN for an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    match sorted.len() {
        0 => f64::NAN,
        1 => sorted[0],
        n => {
            let pos = q.clamp(0.0, 1.0) * (n - 1) as f64;
            let i = (pos.floor() as usize).min(n - 2);
            let frac = pos - i as f64;
            sorted[i] + frac * (sorted[i + 1] - sorted[i])
        }
    }
}

/// Mean of per-prompt `values` with a 95% bootstrap interval: `resamples` times, draw
/// `values.len()` prompts with replacement (seeded [`Rng`], deterministic) and take the
/// mean; the interval is the 2.5% and 97.5% [`percentile`]s of those means.
///
/// Empty `values` give [`Interval::NAN`]; `resamples == 0` gives the degenerate interval
/// `[mean, mean]`. Values are expected finite (a NaN propagates into every bound).
pub fn bootstrap_mean(values: &[f64], resamples: usize, seed: u64) -> Interval {
    let n = values.len();
    if n == 0 {
        return Interval::NAN;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    if resamples == 0 {
        return Interval {
            mean,
            lo: mean,
            hi: mean,
        };
    }
    let mut rng = Rng::new(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.below(n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    Interval {
        mean,
        // Clamped so rounding in the resampled sums never puts the mean outside its own
        // interval for (near-)constant data.
        lo: percentile(&means, 0.025).min(mean),
        hi: percentile(&means, 0.975).max(mean),
    }
}

/// Win rate of model A against model B over paired per-prompt judgments.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct WinRate {
    /// Share of prompts A wins, ties counting half, with its 95% bootstrap interval.
    pub rate: Interval,
    /// Share of prompts judged a tie (NaN when `n == 0`).
    pub ties: f64,
    /// Number of prompts judged.
    pub n: usize,
}

/// Win rate from paired per-prompt judgments of A against B: 1 win, 0.5 tie, 0 loss (see
/// [`judge`]). Ties count half, as in InstructGPT's preference comparisons; the interval
/// resamples prompts, so both models' outputs on a prompt stay paired.
///
/// Empty input gives a NaN rate and ties with `n == 0`. Panics on a judgment outside
/// [0, 1] (a caller bug, not data).
pub fn win_rate(judgments: &[f64], resamples: usize, seed: u64) -> WinRate {
    assert!(
        judgments.iter().all(|j| (0.0..=1.0).contains(j)),
        "win_rate: judgments must lie in [0, 1] (1 win, 0.5 tie, 0 loss)"
    );
    let n = judgments.len();
    let ties = if n == 0 {
        f64::NAN
    } else {
        judgments.iter().filter(|&&j| j == 0.5).count() as f64 / n as f64
    };
    WinRate {
        rate: bootstrap_mean(judgments, resamples, seed),
        ties,
        n,
    }
}

/// One gold-labeler judgment of A against B from their scores: 1 when A's score beats B's
/// by more than `tie_margin`, 0.5 within it, 0 otherwise. A margin of 0 ties only exact
/// equality (e.g. both responses identical).
pub fn judge(score_a: f64, score_b: f64, tie_margin: f64) -> f64 {
    let d = score_a - score_b;
    if d > tie_margin {
        1.0
    } else if d < -tie_margin {
        0.0
    } else {
        0.5
    }
}

/// How often a reward model orders a ranking's responses as the gold scores do: over all
/// pairs `a < b` whose gold scores differ by more than `tie`, the pairs where
/// `gold[a] > gold[b]` exactly when `predicted[a] > predicted[b]`. Returns (agreeing pairs,
/// pairs); sum both over rankings for the held-out accuracy. It is the accuracy of
/// [`crate::losses::RankStats`] measured against gold scores instead of the training
/// ranking, with gold ties left out (a predicted tie agrees only with `gold[a] < gold[b]`).
/// Panics when the slices differ in length.
pub fn pairwise_agreement(gold: &[f64], predicted: &[f64], tie: f64) -> (usize, usize) {
    assert_eq!(
        gold.len(),
        predicted.len(),
        "pairwise_agreement: one prediction per gold score"
    );
    let (mut agree, mut pairs) = (0usize, 0usize);
    for a in 0..gold.len() {
        for b in a + 1..gold.len() {
            if (gold[a] - gold[b]).abs() > tie {
                pairs += 1;
                agree += usize::from((gold[a] > gold[b]) == (predicted[a] > predicted[b]));
            }
        }
    }
    (agree, pairs)
}

/// Per-prompt values grouped by key (e.g. prompt category), each group keeping input
/// order, so a group's slice can go straight into [`bootstrap_mean`] or [`win_rate`].
/// Panics when `keys` and `values` differ in length.
pub fn by_group<K: Ord + Clone>(keys: &[K], values: &[f64]) -> BTreeMap<K, Vec<f64>> {
    assert_eq!(keys.len(), values.len(), "by_group: one key per value");
    let mut groups: BTreeMap<K, Vec<f64>> = BTreeMap::new();
    for (k, &v) in keys.iter().zip(values) {
        groups.entry(k.clone()).or_default().push(v);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairwise_agreement_counts_the_pairs_ordered_as_gold() {
        // Pairs (0,1), (0,2), (1,2), (0,3), (1,3), (2,3); gold 2 and 3 tie, so 5 pairs.
        let gold = [3.0, 1.0, 2.0, 2.0];
        // Agrees on (0,1), (0,2), (0,3); reverses (1,2) and (1,3).
        let predicted = [0.9, 0.5, 0.1, 0.2];
        assert_eq!(pairwise_agreement(&gold, &predicted, 1e-9), (3, 5));
        // A wider tie margin drops the pairs within it: only (0,1) is left, and agrees.
        assert_eq!(pairwise_agreement(&gold, &predicted, 1.5), (1, 1));
        // A predicted tie counts as "not greater".
        assert_eq!(pairwise_agreement(&[1.0, 2.0], &[0.5, 0.5], 0.0), (1, 1));
        assert_eq!(pairwise_agreement(&[2.0, 1.0], &[0.5, 0.5], 0.0), (0, 1));
        assert_eq!(pairwise_agreement(&[], &[], 0.0), (0, 0));
    }

    #[test]
    fn percentile_interpolates_between_order_statistics() {
        let xs = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(percentile(&xs, 0.0), 1.0);
        assert_eq!(percentile(&xs, 1.0), 5.0);
        assert_eq!(percentile(&xs, 0.5), 3.0);
        // pos = 0.025 * 4 = 0.1 -> 1 + 0.1 * (2 - 1)
        assert!((percentile(&xs, 0.025) - 1.1).abs() < 1e-12);
        assert!((percentile(&xs, 0.975) - 4.9).abs() < 1e-12);
        assert_eq!(percentile(&[7.0], 0.3), 7.0);
        assert!(percentile(&[], 0.5).is_nan());
    }

    #[test]
    fn constant_values_give_a_degenerate_interval() {
        let iv = bootstrap_mean(&[0.3; 17], 500, 1);
        assert!((iv.mean - 0.3).abs() < 1e-12);
        assert_eq!((iv.lo, iv.hi), (iv.mean, iv.mean));
    }

    #[test]
    fn empty_and_zero_resamples() {
        let iv = bootstrap_mean(&[], 100, 1);
        assert!(iv.mean.is_nan() && iv.lo.is_nan() && iv.hi.is_nan());
        assert!(!iv.is_finite());
        let iv = bootstrap_mean(&[1.0, 3.0], 0, 1);
        assert_eq!(
            iv,
            Interval {
                mean: 2.0,
                lo: 2.0,
                hi: 2.0
            }
        );
        let w = win_rate(&[], 100, 1);
        assert_eq!(w.n, 0);
        assert!(w.ties.is_nan() && w.rate.mean.is_nan());
    }

    #[test]
    fn matches_a_naive_bootstrap_loop() {
        let values = [0.2, 1.5, -0.7, 3.1, 0.0, 2.2, 0.9];
        let (resamples, seed) = (1000, 42);
        let mut rng = Rng::new(seed);
        let mut means = Vec::new();
        for _ in 0..resamples {
            let mut sum = 0.0;
            for _ in 0..values.len() {
                sum += values[rng.below(values.len())];
            }
            means.push(sum / values.len() as f64);
        }
        means.sort_by(|a, b| a.partial_cmp(b).unwrap());
        // 1000 means: the 2.5% point sits at 0.025 * 999 = 24.975 between order stats.
        let lo = means[24] + 0.975 * (means[25] - means[24]);
        let hi = means[974] + 0.025 * (means[975] - means[974]);
        let iv = bootstrap_mean(&values, resamples, seed);
        assert!((iv.mean - 7.2 / 7.0).abs() < 1e-12);
        assert!((iv.lo - lo).abs() < 1e-12, "{} vs {lo}", iv.lo);
        assert!((iv.hi - hi).abs() < 1e-12, "{} vs {hi}", iv.hi);
        assert!(iv.lo < iv.mean && iv.mean < iv.hi);
    }

    #[test]
    fn deterministic_per_seed() {
        let values: Vec<f64> = (0..50).map(|i| ((i * 37) % 11) as f64).collect();
        let a = bootstrap_mean(&values, 300, 9);
        assert_eq!(a, bootstrap_mean(&values, 300, 9));
        assert_ne!(a, bootstrap_mean(&values, 300, 10));
        assert!(a.contains(a.mean));
    }

    #[test]
    fn win_rate_of_one_win_one_loss_is_half() {
        let w = win_rate(&[1.0, 0.0], 1000, 3);
        assert_eq!(w.n, 2);
        assert_eq!(w.ties, 0.0);
        assert_eq!(w.rate.mean, 0.5);
        assert!(0.0 <= w.rate.lo && w.rate.hi <= 1.0);
        assert!(w.rate.contains(0.5));
        // Resamples of two prompts have means 0, 0.5 or 1: both tails are reached.
        assert_eq!((w.rate.lo, w.rate.hi), (0.0, 1.0));
    }

    #[test]
    fn ties_count_half_and_are_reported() {
        // 3 wins, 2 ties, 3 losses: (3 + 1) / 8 = 0.5, ties 2 / 8.
        let j = [1.0, 1.0, 1.0, 0.5, 0.5, 0.0, 0.0, 0.0];
        let w = win_rate(&j, 2000, 5);
        assert_eq!(w.rate.mean, 0.5);
        assert_eq!(w.ties, 0.25);
        assert_eq!(w.n, 8);
        assert!(w.rate.lo < 0.5 && w.rate.hi > 0.5);
        let all_wins = win_rate(&[1.0; 10], 200, 5);
        assert_eq!((all_wins.rate.lo, all_wins.rate.hi), (1.0, 1.0));
    }

    #[test]
    #[should_panic(expected = "judgments must lie in [0, 1]")]
    fn win_rate_rejects_scores() {
        win_rate(&[2.0], 10, 0);
    }

    #[test]
    fn judge_applies_the_tie_margin() {
        assert_eq!(judge(1.0, 0.0, 0.0), 1.0);
        assert_eq!(judge(0.0, 1.0, 0.0), 0.0);
        assert_eq!(judge(0.4, 0.4, 0.0), 0.5);
        assert_eq!(judge(0.45, 0.4, 0.1), 0.5);
        assert_eq!(judge(0.4, 0.45, 0.1), 0.5);
        assert_eq!(judge(0.6, 0.4, 0.1), 1.0);
    }

    #[test]
    fn by_group_keeps_input_order_per_key() {
        let keys = ["b", "a", "b", "c", "a"];
        let g = by_group(&keys, &[1.0, 2.0, 3.0, 4.0, 5.0]);
        assert_eq!(g.keys().copied().collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(g["a"], [2.0, 5.0]);
        assert_eq!(g["b"], [1.0, 3.0]);
        assert_eq!(g["c"], [4.0]);
    }
}
