//! What one PPO update reports: [`PpoStats`], and the per-minibatch-step figures the
//! update averages into it.

use super::{PolicyStats, ValueStats};
use serde::Serialize;

/// Figures of one [`super::PpoLearner::update`]. Losses, fractions, entropy, approx-KL,
/// explained variance and gradient norms are means over the update's minibatch steps
/// (each measured before its optimizer step).
#[derive(Clone, Debug, Default, Serialize)]
pub struct PpoStats {
    /// The learner's version after the update.
    pub policy_version: u64,
    /// The version of the weights that generated the batch.
    pub batch_version: u64,
    /// Learner version before the update minus `batch_version`: how many updates the
    /// generator's weights were behind.
    pub staleness: u64,
    /// Mean reward-model score as given (before normalisation and the no-EOS penalty).
    pub score_mean: f64,
    /// Mean over sequences of the summed shaped reward (score - KL penalty).
    pub reward_mean: f64,
    /// Mean over sequences of the summed per-token KL to the reference policy (nats), at
    /// the behaviour policy's samples: what the KL penalty in the rewards sums to per beta.
    pub kl_per_sequence: f64,
    /// What the KL controller was fed: the same sum with each token weighted by its
    /// truncated importance weight, an estimate of the current policy's KL per sequence
    /// (equal to `kl_per_sequence` on a fresh batch up to numerics).
    pub kl_per_sequence_weighted: f64,
    /// The KL coefficient beta used for this batch.
    pub kl_coef: f64,
    /// Entropy of the sampling distribution per response token (nats).
    pub entropy: f64,
    pub policy_loss: f64,
    pub value_loss: f64,
    /// Fraction of tokens where the clipped surrogate was active.
    pub clip_fraction: f64,
    /// Fraction of tokens where the clipped value error was active.
    pub value_clip_fraction: f64,
    /// k3 estimate of KL(pi_old || pi) per token.
    pub approx_kl: f64,
    pub explained_variance: f64,
    /// Pretraining negative log-likelihood per token (PPO-ptx only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ptx_loss: Option<f64>,
    /// Fresh batches only (`batch_version` equal to the learner's version before the
    /// update): masked mean `|log mu - log pi_old|` between the generator's and the
    /// learner's log-probs of the same weights, a mismatch that should be ~0. None (left
    /// out of metrics.jsonl) on a stale batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob_gap: Option<f64>,
    /// Stale batches only: the same mean `|log mu - log pi_old|`, which there measures how
    /// far the learner has moved since the generator's weights. None on a fresh batch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy_drift: Option<f64>,
    /// Masked mean of the truncated importance weights.
    pub importance_weight_mean: f64,
    /// Mean number of real response tokens.
    pub response_length_mean: f64,
    /// Fraction of responses that ended without EOS.
    pub no_eos_fraction: f64,
    /// Policy gradient norm before clipping.
    pub grad_norm_policy: f64,
    /// Value gradient norm before clipping.
    pub grad_norm_value: f64,
    /// Learning rate of the update.
    pub lr: f64,
}

/// The host figures of one applied minibatch step.
#[derive(Clone, Debug, Default)]
pub(super) struct StepFigures {
    pub(super) policy: PolicyStats,
    pub(super) value: ValueStats,
    pub(super) entropy: f64,
    pub(super) ptx_loss: f64,
    pub(super) grad_norm_policy: f64,
    pub(super) grad_norm_value: f64,
}

/// Running sums of the per-step figures.
#[derive(Default)]
pub(super) struct StepSums {
    steps: f64,
    policy_loss: f64,
    value_loss: f64,
    entropy: f64,
    clip_fraction: f64,
    value_clip_fraction: f64,
    approx_kl: f64,
    explained_variance: f64,
    ptx_loss: f64,
    grad_norm_policy: f64,
    grad_norm_value: f64,
}

impl StepSums {
    pub(super) fn add(&mut self, step: &StepFigures) {
        self.steps += 1.0;
        self.policy_loss += step.policy.loss;
        self.value_loss += step.value.loss;
        self.entropy += step.entropy;
        self.clip_fraction += step.policy.clip_fraction;
        self.value_clip_fraction += step.value.clip_fraction;
        self.approx_kl += step.policy.approx_kl;
        self.explained_variance += step.value.explained_variance;
        self.ptx_loss += step.ptx_loss;
        self.grad_norm_policy += step.grad_norm_policy;
        self.grad_norm_value += step.grad_norm_value;
    }

    /// The means over the steps (0 with none) as the per-step fields of [`PpoStats`], the
    /// others left at their defaults; `ptx_loss` only when `ptx`.
    pub(super) fn finish(&self, ptx: bool) -> PpoStats {
        let n = self.steps.max(1.0);
        PpoStats {
            entropy: self.entropy / n,
            policy_loss: self.policy_loss / n,
            value_loss: self.value_loss / n,
            clip_fraction: self.clip_fraction / n,
            value_clip_fraction: self.value_clip_fraction / n,
            approx_kl: self.approx_kl / n,
            explained_variance: self.explained_variance / n,
            ptx_loss: ptx.then(|| self.ptx_loss / n),
            grad_norm_policy: self.grad_norm_policy / n,
            grad_norm_value: self.grad_norm_value / n,
            ..PpoStats::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(x: f64) -> StepFigures {
        StepFigures {
            policy: PolicyStats {
                loss: x,
                clip_fraction: 2.0 * x,
                approx_kl: 3.0 * x,
                ratio_mean: 1.0,
            },
            value: ValueStats {
                loss: 4.0 * x,
                clip_fraction: 5.0 * x,
                explained_variance: 6.0 * x,
            },
            entropy: 7.0 * x,
            ptx_loss: 8.0 * x,
            grad_norm_policy: 9.0 * x,
            grad_norm_value: 10.0 * x,
        }
    }

    #[test]
    fn finish_averages_over_the_steps() {
        let mut sums = StepSums::default();
        sums.add(&step(1.0));
        sums.add(&step(3.0));
        let s = sums.finish(true);
        // Means of 1 and 3 times each field's factor.
        let got = [
            s.policy_loss,
            s.clip_fraction,
            s.approx_kl,
            s.value_loss,
            s.value_clip_fraction,
            s.explained_variance,
            s.entropy,
            s.ptx_loss.unwrap(),
            s.grad_norm_policy,
            s.grad_norm_value,
        ];
        assert_eq!(
            got,
            [2.0, 4.0, 6.0, 8.0, 10.0, 12.0, 14.0, 16.0, 18.0, 20.0]
        );
        // Fields outside the steps are left at their defaults.
        assert_eq!((s.policy_version, s.score_mean, s.lr), (0, 0.0, 0.0));
        assert_eq!(sums.finish(false).ptx_loss, None);
        // No step: zeros, not NaN.
        let none = StepSums::default().finish(true);
        assert_eq!((none.policy_loss, none.ptx_loss), (0.0, Some(0.0)));
    }
}
