//! The pure steps of [`super::PpoLearner::update`], each a function of tensors and the
//! config: batch checks, shaped rewards, advantages, off-policy weights and the finite
//! checks of a minibatch step.

use super::stats::StepFigures;
use super::{
    gae, group_relative, kl_per_token, logprob_gap, masked_whiten, no_eos_penalized,
    normalize_scores, shaped_rewards, truncated_importance_weights, KlEstimator, KlPlacement,
    PpoConfig, RewardStats,
};
use crate::data::SftBatch;
use crate::rollout::RolloutBatch;
use crate::{Error, Result};
use tch::{Device, Kind, Tensor};

/// The batch's tensors [`super::PpoLearner::update`] needs beyond the generator's, checked
/// against its shape.
pub(super) struct Checked<'a> {
    pub(super) ref_logprobs: &'a Tensor,
    pub(super) scores: &'a Tensor,
    /// Rows (responses) of the batch, at least one.
    pub(super) rows: usize,
}

/// The shaped rewards of a batch (step 2).
pub(super) struct Rewards {
    /// The scores as given, f32 [B].
    pub(super) raw_scores: Tensor,
    /// Per-token shaped rewards [B, N].
    pub(super) rewards: Tensor,
    pub(super) stats: RewardStats,
}

/// Where a minibatch step is in its update.
#[derive(Clone, Copy, Debug)]
pub(super) struct StepAt {
    /// 1-based index of the step.
    pub(super) n: usize,
    /// Steps in the update.
    pub(super) of: usize,
    /// The update's number, the learner's version after it (named in errors).
    pub(super) update: u64,
    pub(super) lr: f64,
    /// Fault injection: this step's loss is NaN.
    #[cfg(any(test, feature = "fault-injection"))]
    pub(super) poison: bool,
}

/// Checks that `batch` carries reference log-probs [B, N] and scores [B], with B > 0
/// responses in whole groups of `samples_per_prompt`; the error names what is wrong.
pub(super) fn check_batch(batch: &RolloutBatch, samples_per_prompt: usize) -> Result<Checked<'_>> {
    let missing = |what: &str| {
        Error::Invalid(format!(
            "PPO update: rollout batch {} (policy version {}) has no `{what}`",
            batch.id, batch.policy_version
        ))
    };
    let ref_logp = batch
        .ref_logprobs
        .as_ref()
        .ok_or_else(|| missing("ref_logprobs"))?;
    let scores = batch.scores.as_ref().ok_or_else(|| missing("scores"))?;
    let rows = batch.len();
    if rows == 0 || batch.response_width() == 0 {
        return Err(Error::Invalid(format!(
            "PPO update: rollout batch {} is empty",
            batch.id
        )));
    }
    let shape_error = |what: &str, got: Vec<i64>, want: &[i64]| {
        Error::Invalid(format!(
            "PPO update: rollout batch {}: `{what}` has shape {got:?}, expected {want:?}",
            batch.id
        ))
    };
    let width = batch.response_width();
    if ref_logp.size() != [rows, width] {
        return Err(shape_error("ref_logprobs", ref_logp.size(), &[rows, width]));
    }
    if scores.numel() != rows as usize {
        return Err(shape_error("scores", scores.size(), &[rows]));
    }
    let group = samples_per_prompt;
    if !(rows as usize).is_multiple_of(group) {
        return Err(Error::Invalid(format!(
            "PPO update: rollout batch {} has {rows} responses, not groups of \
             samples_per_prompt = {group}",
            batch.id
        )));
    }
    Ok(Checked {
        ref_logprobs: ref_logp,
        scores,
        rows: rows as usize,
    })
}

/// The pretraining batches of an update: none unless PPO-ptx (`ptx_coef > 0`), and then
/// one per optimizer step.
pub(super) fn check_ptx<'a>(
    config: &PpoConfig,
    ptx: &'a [SftBatch],
    steps: usize,
    batch: u64,
) -> Result<&'a [SftBatch]> {
    if config.ptx_coef <= 0.0 || ptx.is_empty() {
        return Ok(&[]);
    }
    if ptx.len() != steps {
        return Err(Error::Invalid(format!(
            "PPO update: rollout batch {batch}: {} pretraining batches for {steps} optimizer \
             steps (PPO-ptx needs one per step)",
            ptx.len()
        )));
    }
    Ok(ptx)
}

/// Step 2: each score with the no-EOS penalty ([`no_eos_penalized`]), relative to the
/// other samples of its prompt ([`group_relative`]), optionally [`normalize_scores`]d, on
/// the last token, and (with `kl.placement = "reward"`) the KL penalty
/// `kl_coef * kl(logp_old, ref_logp)` on every token ([`shaped_rewards`]).
pub(super) fn shape_rewards(
    config: &PpoConfig,
    kl_coef: f64,
    checked: &Checked,
    logp_old: &Tensor,
    batch: &RolloutBatch,
    device: Device,
) -> Rewards {
    let raw_scores = checked
        .scores
        .to_device(device)
        .to_kind(Kind::Float)
        .reshape([-1]);
    let penalized = no_eos_penalized(&raw_scores, &batch.ended_with_eos, config.no_eos_penalty);
    let relative = group_relative(
        &penalized,
        config.samples_per_prompt,
        config.group_advantage,
    );
    let scores = if config.normalize_rewards {
        normalize_scores(&relative)
    } else {
        relative
    };
    let (rewards, stats) = shaped_rewards(
        &scores,
        logp_old,
        &checked.ref_logprobs.to_device(device),
        &batch.response_mask,
        &batch.ended_with_eos,
        // As a loss term, the KL leaves the rewards alone.
        match config.kl.placement {
            KlPlacement::Reward => kl_coef,
            KlPlacement::Loss => 0.0,
        },
        config.kl.estimator,
    );
    Rewards {
        raw_scores,
        rewards,
        stats,
    }
}

/// Step 3: [`gae()`] advantages (whitened over the batch when configured) and returns.
/// Without a value model `values` are 0 and gamma = lambda = 1: the reward still to come.
pub(super) fn advantages(
    config: &PpoConfig,
    rewards: &Tensor,
    values: &Tensor,
    mask: &Tensor,
) -> (Tensor, Tensor) {
    let (gamma, lam) = if config.uses_value_model() {
        (config.gamma, config.lam)
    } else {
        (1.0, 1.0)
    };
    let (advantages, returns) = gae(rewards, values, mask, gamma, lam);
    let advantages = if config.whiten_advantages {
        masked_whiten(&advantages, mask, true)
    } else {
        advantages
    };
    (advantages, returns)
}

/// Step 4: the truncated importance weights `min(pi_old / mu, cap)` against the
/// generator's behaviour log-probs `mu`, and the generator-vs-learner [`logprob_gap`].
pub(super) fn off_policy_weights(
    logp_old: &Tensor,
    behaviour: &Tensor,
    mask: &Tensor,
    cap: f64,
) -> (Tensor, f64) {
    let weights = truncated_importance_weights(logp_old, behaviour, mask, cap);
    let gap = logprob_gap(behaviour, logp_old, mask);
    (weights, gap)
}

/// What the KL controller is fed: the mean over sequences of `sum_t w_t * kl_t`, the
/// per-token KL estimate of the learner's policy from the reference weighted by the
/// truncated importance weights `w`: an estimate of the current policy's KL per sequence
/// from the behaviour policy's samples (per-token weights, as the surrogate uses them).
/// On a fresh batch the weights are 1.
pub(super) fn weighted_kl_per_sequence(
    logp_old: &Tensor,
    ref_logp: &Tensor,
    weights: &Tensor,
    mask: &Tensor,
    estimator: KlEstimator,
) -> f64 {
    tch::no_grad(|| {
        let ref_logp = ref_logp.to_device(logp_old.device());
        let kl = kl_per_token(logp_old, &ref_logp, mask, estimator) * weights;
        let per_sequence = kl.sum_dim_intlist(1, false, Kind::Float);
        super::read_back(&[&per_sequence.mean(Kind::Float)])[0]
    })
}

/// The loss of a minibatch step must be finite before it is applied.
pub(super) fn check_loss(config: &PpoConfig, step: &StepFigures, at: StepAt) -> Result<()> {
    let (policy, value, entropy, ptx) = (
        step.policy.loss,
        step.value.loss,
        step.entropy,
        step.ptx_loss,
    );
    let total =
        policy + config.vf_coef * value - config.entropy_coef * entropy + config.ptx_coef * ptx;
    if total.is_finite() {
        return Ok(());
    }
    Err(Error::NonFinite {
        what: format!(
            "PPO loss (policy {policy}, value {value}, entropy {entropy}, ptx {ptx}) in \
             minibatch step {} of {}",
            at.n, at.of
        ),
        step: at.update,
    })
}

/// The gradient norms of a minibatch step must be finite before it is applied.
pub(super) fn check_grad_norms(policy: f64, value: f64, at: StepAt) -> Result<()> {
    if policy.is_finite() && value.is_finite() {
        return Ok(());
    }
    Err(Error::NonFinite {
        what: format!(
            "PPO gradient norm (policy {policy}, value {value}) in minibatch step {} of {}",
            at.n, at.of
        ),
        step: at.update,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ppo::Baseline;

    /// A batch of `rows` responses `width` wide with `ref_logprobs` and `scores`.
    fn batch(rows: i64, width: i64) -> RolloutBatch {
        let zeros = |shape: &[i64], kind| Tensor::zeros(shape, (kind, Device::Cpu));
        RolloutBatch {
            id: 7,
            policy_version: 2,
            prompt_ids: zeros(&[rows, 2], Kind::Int64),
            prompt_mask: zeros(&[rows, 2], Kind::Int64) + 1,
            response_ids: zeros(&[rows, width], Kind::Int64),
            response_mask: zeros(&[rows, width], Kind::Bool).logical_not(),
            behaviour_logprobs: zeros(&[rows, width], Kind::Float),
            ended_with_eos: zeros(&[rows], Kind::Bool),
            ref_logprobs: Some(zeros(&[rows, width], Kind::Float)),
            scores: Some(zeros(&[rows], Kind::Float)),
            monitor_scores: None,
        }
    }

    fn error(result: Result<Checked>) -> String {
        match result {
            Err(Error::Invalid(what)) => what,
            Err(e) => panic!("expected Error::Invalid, got {e}"),
            Ok(_) => panic!("expected an error"),
        }
    }

    #[test]
    fn check_batch_names_what_is_wrong() {
        let ok = batch(4, 3);
        let checked = check_batch(&ok, 2).unwrap();
        assert_eq!(checked.rows, 4);
        assert_eq!(checked.scores.size(), [4]);

        let e = error(check_batch(&batch(0, 3), 1));
        assert_eq!(e, "PPO update: rollout batch 7 is empty");
        let e = error(check_batch(&batch(2, 0), 1));
        assert_eq!(e, "PPO update: rollout batch 7 is empty");

        let mut b = batch(2, 3);
        b.ref_logprobs = None;
        let e = error(check_batch(&b, 1));
        assert_eq!(
            e,
            "PPO update: rollout batch 7 (policy version 2) has no `ref_logprobs`"
        );
        let mut b = batch(2, 3);
        b.ref_logprobs = Some(Tensor::zeros([2, 2], (Kind::Float, Device::Cpu)));
        let e = error(check_batch(&b, 1));
        assert_eq!(
            e,
            "PPO update: rollout batch 7: `ref_logprobs` has shape [2, 2], expected [2, 3]"
        );
        // Scores may come as [B] or [B, 1]; only their count matters.
        let mut b = batch(2, 3);
        b.scores = Some(Tensor::zeros([2, 1], (Kind::Float, Device::Cpu)));
        check_batch(&b, 1).unwrap();
        let e = error(check_batch(&batch(6, 3), 4));
        assert_eq!(
            e,
            "PPO update: rollout batch 7 has 6 responses, not groups of samples_per_prompt = 4"
        );
    }

    #[test]
    fn the_group_baseline_advantage_is_the_reward_to_go() {
        let config = PpoConfig {
            baseline: Baseline::Group,
            whiten_advantages: false,
            ..PpoConfig::default()
        };
        let rewards = Tensor::from_slice(&[1f32, 2., 3., 0.5, 0.25, 0.]).view([2, 3]);
        let mask = Tensor::from_slice(&[1f32, 1., 1., 1., 1., 0.]).view([2, 3]);
        let (adv, ret) = advantages(&config, &rewards, &rewards.zeros_like(), &mask);
        let rows = |t: &Tensor| Vec::<Vec<f32>>::try_from(t.to_kind(Kind::Float)).unwrap();
        assert_eq!(rows(&adv), [[6., 5., 3.], [0.75, 0.25, 0.]]);
        assert_eq!(rows(&ret), rows(&adv));
    }

    /// The no-EOS penalty is in the reward model's units: added to the raw score before
    /// the leave-one-out baseline and the normalisation, so both see it.
    #[test]
    fn the_no_eos_penalty_comes_before_baseline_and_normalisation() {
        let rewards_of = |config: &PpoConfig, scores: &[f32], eos: &[bool]| {
            let mut b = batch(scores.len() as i64, 2);
            b.scores = Some(Tensor::from_slice(scores));
            b.ended_with_eos = Tensor::from_slice(eos);
            let checked = check_batch(&b, config.samples_per_prompt).unwrap();
            let logp = b.behaviour_logprobs.shallow_clone();
            let r = shape_rewards(config, 0.0, &checked, &logp, &b, Device::Cpu);
            Vec::<f32>::try_from(r.rewards.select(1, 1)).unwrap()
        };
        // Normalised: raw 1, 3, 5, 7 with the last cut short: 1, 3, 5, 5, over their std.
        let normalized = PpoConfig {
            no_eos_penalty: -2.0,
            normalize_rewards: true,
            ..PpoConfig::default()
        };
        let got = rewards_of(&normalized, &[1., 3., 5., 7.], &[true, true, true, false]);
        let std = (11.0f32 / 3.0).sqrt(); // unbiased std of 1, 3, 5, 5
        let want = [1. / std, 3. / std, 5. / std, 5. / std];
        for (g, w) in got.iter().zip(want) {
            assert!((g - w).abs() < 1e-5, "{got:?} vs {want:?}");
        }
        // Leave-one-out: twins scoring 1 and 1, the second cut: 1 and 0, so +1 and -1.
        let grouped = PpoConfig {
            no_eos_penalty: -1.0,
            normalize_rewards: false,
            samples_per_prompt: 2,
            ..PpoConfig::default()
        };
        assert_eq!(rewards_of(&grouped, &[1., 1.], &[true, false]), [1.0, -1.0]);
    }

    fn at() -> StepAt {
        StepAt {
            n: 2,
            of: 3,
            update: 5,
            lr: 1e-3,
            poison: false,
        }
    }

    #[test]
    fn a_non_finite_loss_or_gradient_is_an_error_naming_the_step() {
        let config = PpoConfig::default();
        let mut step = StepFigures::default();
        check_loss(&config, &step, at()).unwrap();
        step.value.loss = f64::INFINITY;
        match check_loss(&config, &step, at()) {
            Err(Error::NonFinite { what, step }) => {
                assert_eq!(
                    what,
                    "PPO loss (policy 0, value inf, entropy 0, ptx 0) in minibatch step 2 of 3"
                );
                assert_eq!(step, 5);
            }
            other => panic!("expected a non-finite error, got {other:?}"),
        }
        check_grad_norms(1.0, 0.0, at()).unwrap();
        match check_grad_norms(f64::NAN, 1.0, at()) {
            Err(Error::NonFinite { what, step }) => {
                assert_eq!(
                    what,
                    "PPO gradient norm (policy NaN, value 1) in minibatch step 2 of 3"
                );
                assert_eq!(step, 5);
            }
            other => panic!("expected a non-finite error, got {other:?}"),
        }
    }
}
