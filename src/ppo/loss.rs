//! The PPO losses (clipped surrogate, clipped value loss, entropy) and the correction for
//! stale, asynchronously generated batches.
//!
//! # Stale batches
//!
//! With `max_staleness >= 1` a batch was sampled by the generator's behaviour policy
//! `mu` (version k - s) while the learner is at version k. The ratio of the clipped
//! surrogate is taken against the learner's own log-probs of the batch at the start of the
//! update (`logp_old`, one extra forward pass), not against `mu`: PPO's trust region is then
//! centred on the policy actually being updated, exactly as in synchronous PPO. The
//! remaining off-policyness, `pi_old / mu` per token, is corrected by multiplying each
//! token's surrogate by the truncated importance weight `min(pi_old / mu, cap)`
//! ([`truncated_importance_weights`]); truncation bounds the variance at the price of a
//! small bias, as in V-trace / IMPALA. With `max_staleness = 0`, `mu` and `pi_old` agree up
//! to numerics and the weights are 1. [`logprob_gap`] measures `|log pi_old - log mu|` on
//! every batch: a large gap on a fresh batch means generator and learner disagree on the
//! same weights (sampling temperature, masks, dtype), the classic silent bug of async RL.

use super::gae::masked_mean;
use super::kl::{kl_per_token, KlEstimator};
use super::read_back;
use serde::{Deserialize, Serialize};
use tch::{Kind, Tensor};

/// Statistics of one [`policy_loss`] call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct PolicyStats {
    /// The loss value.
    pub loss: f64,
    /// Fraction of tokens whose clipped term was the active (larger) one.
    pub clip_fraction: f64,
    /// k3 estimate of KL(pi_old || pi_new) over the tokens: `ratio - 1 - log ratio`.
    pub approx_kl: f64,
    /// Mean ratio pi_new / pi_old over the tokens.
    pub ratio_mean: f64,
}

/// Statistics of one [`value_loss`] call.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ValueStats {
    /// The loss value.
    pub loss: f64,
    /// Fraction of tokens whose clipped error was the active (larger) one.
    pub clip_fraction: f64,
    /// `1 - Var(returns - values_new) / Var(returns)` over the tokens; 0 when the returns
    /// have no variance.
    pub explained_variance: f64,
}

/// How per-token loss terms [B, T] become one loss.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Reduce {
    /// The masked mean over every token.
    TokenMean,
    /// The mean over rows with tokens of each row's masked token mean.
    SequenceMean,
    /// The masked sum over B times this many tokens.
    Constant(f64),
}

/// `per_token` [B, T] reduced over the `mask`ed tokens as `how` says; a scalar f32 that
/// carries the graph.
pub fn aggregate(per_token: &Tensor, mask: &Tensor, how: Reduce) -> Tensor {
    assert_eq!(per_token.size(), mask.size(), "aggregate: mask");
    let inside = mask.to_kind(Kind::Bool).to_kind(Kind::Float);
    match how {
        Reduce::TokenMean => masked_mean(per_token, mask),
        Reduce::SequenceMean => {
            let lengths = inside.sum_dim_intlist(1, false, Kind::Float);
            let rows = lengths.gt(0.0).to_kind(Kind::Float);
            let means =
                (per_token.to_kind(Kind::Float) * &inside).sum_dim_intlist(1, false, Kind::Float)
                    / lengths.clamp_min(1.0);
            (means * &rows).sum(Kind::Float) / rows.sum(Kind::Float).clamp_min(1.0)
        }
        Reduce::Constant(tokens) => {
            let rows = per_token.size()[0] as f64;
            (per_token.to_kind(Kind::Float) * inside).sum(Kind::Float) / (rows * tokens)
        }
    }
}

/// The clipped surrogate: per token `w * max(-A * r, -A * clip(r, 1 - eps_low, 1 +
/// eps_high))` with `r = exp(logp_new - logp_old)` and `clip = (eps_low, eps_high)`,
/// reduced as `reduce` says. `logp_new` carries the graph; `logp_old`, `advantages` and the
/// optional importance weight `w` ([B, T] or `[B]`; 1 without) are detached. All [B, T];
/// returns a scalar f32 (the statistics are token means whatever `reduce`).
pub fn policy_loss(
    logp_new: &Tensor,
    logp_old: &Tensor,
    advantages: &Tensor,
    mask: &Tensor,
    clip: (f64, f64),
    importance_weight: Option<&Tensor>,
    reduce: Reduce,
) -> (Tensor, PolicyStats) {
    assert_eq!(logp_new.size(), logp_old.size(), "policy_loss: new vs old");
    assert_eq!(
        logp_new.size(),
        advantages.size(),
        "policy_loss: advantages"
    );
    assert_eq!(logp_new.size(), mask.size(), "policy_loss: mask");
    let old = logp_old.detach().to_kind(Kind::Float);
    let adv = advantages.detach().to_kind(Kind::Float);
    let ratio = (logp_new.to_kind(Kind::Float) - &old).exp();
    let unclipped = -&adv * &ratio;
    let clipped = -adv * ratio.clamp(1.0 - clip.0, 1.0 + clip.1);
    let per_token = unclipped.maximum(&clipped);
    let per_token = match importance_weight {
        Some(w) => {
            let w = w.detach().to_kind(Kind::Float);
            per_token * if w.dim() == 1 { w.unsqueeze(1) } else { w }
        }
        None => per_token,
    };
    let loss = aggregate(&per_token, mask, reduce);
    let (clip_fraction, approx_kl, ratio_mean) = tch::no_grad(|| {
        let kl = kl_per_token(&old, &logp_new.detach(), mask, KlEstimator::K3);
        (
            masked_mean(&clipped.gt_tensor(&unclipped), mask),
            masked_mean(&kl, mask),
            masked_mean(&ratio, mask),
        )
    });
    let host = read_back(&[&loss, &clip_fraction, &approx_kl, &ratio_mean]);
    let stats = PolicyStats {
        loss: host[0],
        clip_fraction: host[1],
        approx_kl: host[2],
        ratio_mean: host[3],
    };
    (loss, stats)
}

/// The clipped value loss, `0.5 * max((v - R)^2, (v_clip - R)^2)` as a masked token mean,
/// where `v_clip = v_old + clip(v - v_old, -eps, eps)`. `values_new` carries the graph;
/// `values_old` (the rollout's values) and `returns` are detached. Returns a scalar f32.
pub fn value_loss(
    values_new: &Tensor,
    values_old: &Tensor,
    returns: &Tensor,
    mask: &Tensor,
    clip_range_value: f64,
) -> (Tensor, ValueStats) {
    assert_eq!(
        values_new.size(),
        values_old.size(),
        "value_loss: new vs old"
    );
    assert_eq!(values_new.size(), returns.size(), "value_loss: returns");
    assert_eq!(values_new.size(), mask.size(), "value_loss: mask");
    let v = values_new.to_kind(Kind::Float);
    let old = values_old.detach().to_kind(Kind::Float);
    let ret = returns.detach().to_kind(Kind::Float);
    let v_clip = &old + (&v - &old).clamp(-clip_range_value, clip_range_value);
    let unclipped = (&v - &ret).square();
    let clipped = (v_clip - &ret).square();
    let loss = 0.5 * masked_mean(&unclipped.maximum(&clipped), mask);
    let (clip_fraction, var_ret, var_err) = tch::no_grad(|| {
        use super::gae::masked_var;
        (
            masked_mean(&clipped.gt_tensor(&unclipped), mask),
            masked_var(&ret, mask),
            masked_var(&(&ret - &v), mask),
        )
    });
    let host = read_back(&[&loss, &clip_fraction, &var_ret, &var_err]);
    let explained_variance = if host[2] > 0.0 {
        1.0 - host[3] / host[2]
    } else {
        0.0
    };
    let stats = ValueStats {
        loss: host[0],
        clip_fraction: host[1],
        explained_variance,
    };
    (loss, stats)
}

/// Mean entropy of the next-token distributions over the masked positions: logits
/// [B, T, V] (any float dtype, computed in f32), mask [B, T]. A scalar f32 with the graph.
pub fn entropy_from_logits(logits: &Tensor, mask: &Tensor) -> Tensor {
    assert_eq!(
        logits.dim(),
        3,
        "entropy_from_logits: logits must be [B, T, V]"
    );
    assert_eq!(
        logits.size()[..2],
        mask.size()[..],
        "entropy_from_logits: mask"
    );
    let logp = logits.log_softmax(-1, Kind::Float);
    let entropy = -(logp.exp() * &logp).sum_dim_intlist(-1, false, Kind::Float);
    masked_mean(&entropy, mask)
}

/// Per-token truncated importance weights `min(exp(learner_logp_old - behaviour_logp),
/// cap)`, f32 [B, T], detached, 0 outside the mask (see the module doc).
pub fn truncated_importance_weights(
    learner_logp_old: &Tensor,
    behaviour_logp: &Tensor,
    mask: &Tensor,
    cap: f64,
) -> Tensor {
    assert_eq!(
        learner_logp_old.size(),
        behaviour_logp.size(),
        "importance weights"
    );
    assert_eq!(
        learner_logp_old.size(),
        mask.size(),
        "importance weights: mask"
    );
    tch::no_grad(|| {
        let log_w = learner_logp_old.to_kind(Kind::Float) - behaviour_logp.to_kind(Kind::Float);
        let outside = mask.to_kind(Kind::Bool).logical_not();
        log_w.exp().clamp_max(cap).masked_fill(&outside, 0.0)
    })
}

/// Masked mean of `|a - b|` read back to the host: the generator-vs-learner log-prob gap.
pub fn logprob_gap(a: &Tensor, b: &Tensor, mask: &Tensor) -> f64 {
    assert_eq!(a.size(), b.size(), "logprob_gap: a vs b");
    tch::no_grad(|| {
        let diff = (a.to_kind(Kind::Float) - b.to_kind(Kind::Float)).abs();
        read_back(&[&masked_mean(&diff, mask)])[0]
    })
}
