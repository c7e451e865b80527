//! The loss of one PPO minibatch step on a row subset of a rollout batch:
//! `policy + vf_coef * value - entropy_coef * entropy + ptx_coef * nll(ptx)` (and
//! `+ kl_coef * kl(pi, pi_ref)` with `kl.placement = "loss"`), each term with its own
//! graph, before the backward pass.

use super::{
    aggregate, entropy_from_logits, kl_per_token, policy_loss, value_loss, KlPlacement,
    PolicyStats, PpoConfig, ValueStats,
};
use crate::data::SftBatch;
use crate::losses::sft_loss;
use crate::model::Model;
use crate::rollout::RolloutBatch;
use crate::rollout::{response_logits, response_values, token_logprobs};
use crate::sampling::Sampling;
use tch::{Kind, Tensor};

/// What a minibatch loss reads of the learner.
#[derive(Clone, Copy)]
pub(super) struct Models<'a> {
    pub(super) policy: &'a Model,
    /// The value model; none with `baseline = "group"`.
    pub(super) value: Option<&'a Model>,
    pub(super) sampling: &'a Sampling,
    pub(super) config: &'a PpoConfig,
    /// The KL coefficient of this update (the controller's).
    pub(super) kl_coef: f64,
}

/// Both models' forward passes over a whole rollout batch, with their graphs.
pub(super) struct FirstPass {
    /// The policy's sampling-distribution log-probs [B, N, V].
    pub(super) log_probs: Tensor,
    /// The value head [B, N], 0 outside the response mask (none without a value baseline).
    pub(super) values: Option<Tensor>,
}

/// Per-rollout tensors the minibatch steps slice, [B, N] on the policy's device.
pub(super) struct Targets {
    /// Both models' passes over the whole batch, for the first minibatch step to use.
    pub(super) first_pass: Option<FirstPass>,
    pub(super) logp_old: Tensor,
    pub(super) values_old: Tensor,
    pub(super) advantages: Tensor,
    pub(super) returns: Tensor,
    pub(super) weights: Tensor,
}

/// The loss of one minibatch step, before the backward pass.
pub(super) struct StepLoss {
    /// The sum of the terms, with the graph.
    pub(super) loss: Tensor,
    pub(super) policy: PolicyStats,
    pub(super) value: ValueStats,
    /// Entropy per response token (0-dim, with the graph when it is a loss term).
    pub(super) entropy: Tensor,
    pub(super) ptx_loss: f64,
}

/// `policy + vf_coef * value - entropy_coef * entropy + ptx_coef * nll(ptx)` on the
/// rows `index` of the batch.
pub(super) fn minibatch_loss(
    models: Models,
    batch: &RolloutBatch,
    targets: &mut Targets,
    index: &Tensor,
    ptx: Option<&SftBatch>,
) -> StepLoss {
    let config = models.config;
    let sub = batch.select(index);
    let mask = &sub.response_mask;
    let pick = |t: &Tensor| t.index_select(0, index);

    let (log_probs, values) = match targets.first_pass.take() {
        Some(pass) => (
            pick(&pass.log_probs),
            pass.values
                .map(|v| v.index_select(0, &index.to_device(v.device()))),
        ),
        None => (
            models
                .sampling
                .log_probs(&response_logits(models.policy, &sub, true)),
            None,
        ),
    };
    let logp = token_logprobs(&log_probs, &sub.response_ids, mask);
    // log_softmax of log-probs is the identity: this is the sampling distribution's.
    let entropy = if config.entropy_coef > 0.0 {
        entropy_from_logits(&log_probs, mask)
    } else {
        tch::no_grad(|| entropy_from_logits(&log_probs.detach(), mask))
    };
    let (policy, policy_stats) = policy_loss(
        &logp,
        &pick(&targets.logp_old),
        &pick(&targets.advantages),
        mask,
        config.clip(),
        Some(&pick(&targets.weights)),
        config.reduce(),
    );
    // Out-of-place sums: every term keeps its own graph.
    let mut terms = vec![policy];
    if config.kl.placement == KlPlacement::Loss && models.kl_coef > 0.0 {
        let reference = sub
            .ref_logprobs
            .as_ref()
            .expect("checked: the batch has reference log-probs");
        let kl = kl_per_token(
            &logp,
            &reference.to_device(logp.device()),
            mask,
            config.kl.estimator,
        );
        terms.push(models.kl_coef * aggregate(&kl, mask, config.reduce()));
    }
    let mut value_stats = ValueStats::default();
    if let Some(value_model) = models.value {
        let value_device = value_model.device();
        let values = values.unwrap_or_else(|| response_values(value_model, &sub, true));
        let (value, stats) = value_loss(
            &values,
            &pick(&targets.values_old).to_device(value_device),
            &pick(&targets.returns).to_device(value_device),
            &mask.to_device(value_device),
            config.clip_range_value,
        );
        terms.push(config.vf_coef * value.to_device(batch.response_ids.device()));
        value_stats = stats;
    }
    if config.entropy_coef > 0.0 {
        terms.push(-config.entropy_coef * &entropy);
    }
    let mut ptx_loss = 0.0;
    if let Some(ptx) = ptx {
        let hidden = models
            .policy
            .forward(&ptx.input_ids, Some(&ptx.valid), None, true);
        let (nll, stats) = sft_loss(&models.policy.logits(&hidden), &ptx.targets, &ptx.loss_mask);
        terms.push(config.ptx_coef * nll);
        ptx_loss = stats.loss;
    }
    StepLoss {
        loss: Tensor::stack(&terms, 0).sum(Kind::Float),
        policy: policy_stats,
        value: value_stats,
        entropy,
        ptx_loss,
    }
}
