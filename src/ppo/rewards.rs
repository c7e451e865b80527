//! The per-token PPO reward: the KL penalty to the reference policy on every response
//! token and the score on the last one; and what happens to the scores before: the no-EOS
//! penalty on the raw score, the group baseline (leave-one-out, GRPO's or Dr. GRPO's), the
//! normalisation.

use super::config::GroupAdvantage;
use super::kl::{kl_per_token, KlEstimator};
use super::read_back;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Statistics of one [`shaped_rewards`] call (means over the B sequences).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RewardStats {
    /// Mean score as given: what was placed on the last tokens.
    pub score_mean: f64,
    /// Mean over sequences of the summed per-token KL estimate (nats): what the adaptive
    /// KL controller is fed.
    pub kl_per_sequence_mean: f64,
    /// Mean over sequences of the summed KL penalty, `kl_coef * kl_per_sequence_mean`.
    pub kl_penalty_mean: f64,
    /// Mean over sequences of the summed shaped reward (score - KL penalty).
    pub reward_mean: f64,
    /// Fraction of responses that ended without EOS.
    pub no_eos_fraction: f64,
    /// Mean number of real response tokens.
    pub response_length_mean: f64,
}

/// The shaped rewards, f32 [B, T], detached, 0 outside the mask.
///
/// `scores`: `[B]` (or `[B, 1]`) reward-model scores; `logp`, `ref_logp`, `mask`: [B, T] over
/// response tokens; `ended_with_eos`: `[B]` bool. Every real token gets
/// `-kl_coef * kl_t` (see [`kl_per_token`]); the last real token of row b (the highest
/// masked-in column; `mask.sum(1) - 1` for the project's responses, which start at column
/// 0) also gets `scores[b]` (any no-EOS penalty is already in it: [`no_eos_penalized`]).
/// A row without real tokens gets nothing (its score is dropped). `ended_with_eos` is
/// for the statistics.
pub fn shaped_rewards(
    scores: &Tensor,
    logp: &Tensor,
    ref_logp: &Tensor,
    mask: &Tensor,
    ended_with_eos: &Tensor,
    kl_coef: f64,
    estimator: KlEstimator,
) -> (Tensor, RewardStats) {
    assert_eq!(mask.dim(), 2, "shaped_rewards: mask must be [B, T]");
    let (b, width) = (mask.size()[0], mask.size()[1]);
    let scores = scores.detach().to_kind(Kind::Float).reshape([-1]);
    assert_eq!(scores.size(), [b], "shaped_rewards: scores must be [B]");
    assert_eq!(
        ended_with_eos.size(),
        [b],
        "shaped_rewards: ended_with_eos must be [B]"
    );
    let (rewards, host) = tch::no_grad(|| {
        let inside = mask.to_kind(Kind::Bool).to_kind(Kind::Float);
        let kl = kl_per_token(&logp.detach(), &ref_logp.detach(), mask, estimator);
        let no_eos = ended_with_eos
            .to_kind(Kind::Bool)
            .logical_not()
            .to_kind(Kind::Float);
        let lengths = inside.sum_dim_intlist(1, false, Kind::Float);
        let columns = Tensor::arange(width, (Kind::Float, mask.device()));
        let last = (&inside * columns.unsqueeze(0))
            .amax(1, false)
            .to_kind(Kind::Int64);
        let placed = &scores * lengths.gt(0.0).to_kind(Kind::Float);
        let rewards = (-kl_coef * &kl).scatter_add(1, &last.unsqueeze(1), &placed.unsqueeze(1));
        let kl_seq = kl.sum_dim_intlist(1, false, Kind::Float).mean(Kind::Float);
        let host = read_back(&[
            &scores.mean(Kind::Float),
            &kl_seq,
            &rewards
                .sum_dim_intlist(1, false, Kind::Float)
                .mean(Kind::Float),
            &no_eos.mean(Kind::Float),
            &lengths.mean(Kind::Float),
        ]);
        (rewards, host)
    });
    let stats = RewardStats {
        score_mean: host[0],
        kl_per_sequence_mean: host[1],
        kl_penalty_mean: kl_coef * host[1],
        reward_mean: host[2],
        no_eos_fraction: host[3],
        response_length_mean: host[4],
    };
    (rewards, stats)
}

/// The raw scores `[B]` plus `penalty` where the response ended without EOS (cut at
/// `max_new_tokens`), before any baseline or normalisation, as TRL applies it: so the
/// penalty is in the reward model's units whatever the batch, and a group baseline sees
/// it. `[B]` f32, detached.
pub fn no_eos_penalized(scores: &Tensor, ended_with_eos: &Tensor, penalty: f64) -> Tensor {
    let s = scores.detach().to_kind(Kind::Float).reshape([-1]);
    let cut = ended_with_eos
        .to_device(s.device())
        .to_kind(Kind::Bool)
        .logical_not();
    s + penalty * cut.to_kind(Kind::Float)
}

/// Each score minus the mean score of the other responses to its prompt: the
/// leave-one-out baseline of RLOO (Kool et al. 2019; Ahmadian et al. 2024), an unbiased
/// baseline that needs no learned value. Rows come in consecutive groups of `group`
/// responses to one prompt, so `scores` ([B]) must hold a multiple of `group`; `group` 1
/// returns the scores unchanged. `[B]` f32, detached.
pub fn leave_one_out(scores: &Tensor, group: usize) -> Tensor {
    let s = scores.detach().to_kind(Kind::Float).reshape([-1]);
    if group <= 1 {
        return s;
    }
    let n = s.size()[0];
    let g = group as i64;
    assert_eq!(n % g, 0, "leave_one_out: {n} scores are not groups of {g}");
    let rows = s.reshape([n / g, g]);
    let others = (rows.sum_dim_intlist(1, true, Kind::Float) - &rows) / (g - 1) as f64;
    (rows - others).reshape([-1])
}

/// Each score relative to the other responses to its prompt, as `how` says: minus the mean
/// of the others ([`leave_one_out`]), minus the group's mean (Dr. GRPO), or that over the
/// group's unbiased standard deviation plus 1e-4 (GRPO, as TRL computes it). Rows come in
/// consecutive groups of `group`; `group` 1 returns the scores unchanged. `[B]` f32,
/// detached.
pub fn group_relative(scores: &Tensor, group: usize, how: GroupAdvantage) -> Tensor {
    let s = scores.detach().to_kind(Kind::Float).reshape([-1]);
    if group <= 1 || how == GroupAdvantage::LeaveOneOut {
        return leave_one_out(&s, group);
    }
    let (n, g) = (s.size()[0], group as i64);
    assert_eq!(n % g, 0, "group_relative: {n} scores are not groups of {g}");
    let rows = s.reshape([n / g, g]);
    let centred = &rows - rows.mean_dim(1, true, Kind::Float);
    let relative = match how {
        GroupAdvantage::MeanStd => centred / (rows.std_dim(1, true, true) + 1e-4),
        _ => centred,
    };
    relative.reshape([-1])
}

/// Scores divided by their (unbiased) standard deviation over the batch, the mean kept:
/// the scale of the reward relative to the KL penalty becomes independent of the reward
/// model's scale, while the sign and offset the scores carry (InstructGPT centres its RM
/// on the SFT demonstrations) are preserved. Batches of fewer than two scores, or with a
/// standard deviation below 1e-6, are returned unchanged. `[B]` f32, detached.
pub fn normalize_scores(scores: &Tensor) -> Tensor {
    let s = scores.detach().to_kind(Kind::Float).reshape([-1]);
    if s.size()[0] < 2 {
        return s;
    }
    let std = s.std(true);
    let scale = std.where_self(&std.gt(1e-6), &std.ones_like());
    s / scale
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppo::testutil::{close, ragged_mask, t, values};

    #[test]
    fn score_and_penalty_land_on_each_rows_last_token() {
        // Rows of length 3, 1, 4 and 0 in width 4; logp = ref_logp + 0.5 everywhere real.
        let lens = [3, 1, 4, 0];
        let mask = ragged_mask(&lens, 4);
        let ref_logp = t(&[-1.0; 16], &[4, 4]);
        let logp = (&ref_logp + 0.5).masked_fill(&mask.eq(0.0), f64::NAN);
        let scores = t(&[1.0, 1.0, 3.0, 4.0], &[4]);
        let eos = Tensor::from_slice(&[true, false, true, false]);
        let (r, stats) =
            shaped_rewards(&scores, &logp, &ref_logp, &mask, &eos, 0.1, KlEstimator::K1);
        let k = -0.05;
        #[rustfmt::skip]
        let want = [
            k, k, k + 1.0, 0.0,
            k + 1.0, 0.0, 0.0, 0.0,
            k, k, k, k + 3.0,
            0.0, 0.0, 0.0, 0.0,
        ];
        close(&values(&r), &want, 1e-6);
        assert!((stats.score_mean - 2.25).abs() < 1e-6);
        assert!((stats.kl_per_sequence_mean - 0.5 * 8.0 / 4.0).abs() < 1e-6);
        assert!((stats.kl_penalty_mean - 0.1).abs() < 1e-6);
        // Row 3 is empty: its score is dropped. Totals: 1 - .15, 1 - .05, 3 - .2, 0.
        assert!((stats.reward_mean - (4.6 / 4.0)).abs() < 1e-6);
        assert!((stats.no_eos_fraction - 0.5).abs() < 1e-12);
        assert!((stats.response_length_mean - 2.0).abs() < 1e-12);
    }

    #[test]
    fn the_no_eos_penalty_is_added_to_the_raw_scores_of_cut_responses() {
        let scores = t(&[1.0, 2.0, 3.0], &[3, 1]);
        let eos = Tensor::from_slice(&[true, false, false]);
        close(
            &values(&no_eos_penalized(&scores, &eos, -1.5)),
            &[1.0, 0.5, 1.5],
            1e-6,
        );
        close(
            &values(&no_eos_penalized(&scores, &eos, 0.0)),
            &[1.0, 2.0, 3.0],
            0.0,
        );
    }

    #[test]
    fn k3_penalty_is_non_negative_per_token() {
        let mask = ragged_mask(&[2], 2);
        let logp = t(&[-1.0, -3.0], &[1, 2]);
        let ref_logp = t(&[-2.0, -2.0], &[1, 2]);
        let eos = Tensor::from_slice(&[true]);
        let scores = t(&[0.0], &[1, 1]);
        let (r, stats) =
            shaped_rewards(&scores, &logp, &ref_logp, &mask, &eos, 1.0, KlEstimator::K3);
        // d = ref - logp = -1, 1.
        let k3 = [(-1f64).exp(), 1f64.exp() - 2.0];
        close(&values(&r), &[-k3[0], -k3[1]], 1e-6);
        assert!((stats.kl_per_sequence_mean - (k3[0] + k3[1])).abs() < 1e-6);
        assert_eq!(stats.no_eos_fraction, 0.0);
    }

    #[test]
    fn leave_one_out_subtracts_the_mean_of_the_other_samples_of_the_prompt() {
        // Two prompts of three samples: 1, 2, 6 and 0, 0, 3.
        let s = t(&[1.0, 2.0, 6.0, 0.0, 0.0, 3.0], &[6]);
        #[rustfmt::skip]
        let want = [
            1.0 - 4.0, 2.0 - 3.5, 6.0 - 1.5,
            0.0 - 1.5, 0.0 - 1.5, 3.0 - 0.0,
        ];
        close(&values(&leave_one_out(&s, 3)), &want, 1e-6);
        // A shift of one prompt's scores (an RM's per-prompt offset) changes nothing.
        let shifted = t(&[11.0, 12.0, 16.0, 0.0, 0.0, 3.0], &[6]);
        close(&values(&leave_one_out(&shifted, 3)), &want, 1e-6);
        close(&values(&leave_one_out(&s, 1)), &values(&s), 0.0);
    }

    #[test]
    fn grpo_and_dr_grpo_centre_on_the_group_mean_and_grpo_scales_by_its_std() {
        // Groups 1, 2, 6 (mean 3, unbiased std sqrt(7)) and 0, 0, 3 (mean 1, std sqrt(3)).
        let s = t(&[1.0, 2.0, 6.0, 0.0, 0.0, 3.0], &[6]);
        let centred = [-2.0, -1.0, 3.0, -1.0, -1.0, 2.0];
        close(
            &values(&group_relative(&s, 3, GroupAdvantage::Mean)),
            &centred,
            1e-6,
        );
        let (a, b) = (7f64.sqrt() + 1e-4, 3f64.sqrt() + 1e-4);
        let want = [-2.0 / a, -1.0 / a, 3.0 / a, -1.0 / b, -1.0 / b, 2.0 / b];
        close(
            &values(&group_relative(&s, 3, GroupAdvantage::MeanStd)),
            &want,
            1e-6,
        );
        // A group of equal scores gives zeros, not NaN.
        let flat = t(&[2.0, 2.0], &[2]);
        close(
            &values(&group_relative(&flat, 2, GroupAdvantage::MeanStd)),
            &[0.0, 0.0],
            0.0,
        );
        close(
            &values(&group_relative(&s, 3, GroupAdvantage::LeaveOneOut)),
            &values(&leave_one_out(&s, 3)),
            0.0,
        );
        close(
            &values(&group_relative(&s, 1, GroupAdvantage::MeanStd)),
            &values(&s),
            0.0,
        );
    }

    #[test]
    fn normalization_divides_by_the_std_and_keeps_the_mean() {
        let s = t(&[1.0, 3.0, 5.0], &[3]);
        // Unbiased std of 1, 3, 5 is 2.
        close(&values(&normalize_scores(&s)), &[0.5, 1.5, 2.5], 1e-6);
        close(
            &values(&normalize_scores(&t(&[4.0, 4.0], &[2]))),
            &[4.0, 4.0],
            0.0,
        );
        close(&values(&normalize_scores(&t(&[7.0], &[1]))), &[7.0], 0.0);
    }
}
