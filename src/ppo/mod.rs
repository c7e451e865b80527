//! The PPO math of stage 3 (InstructGPT's RL fine-tuning), as plain functions on tensors
//! that return values and statistics.
//!
//! The objective maximised is
//!
//! ```text
//! E_{x ~ prompts, y ~ pi_RL}[ r(x, y) - beta * log(pi_RL(y|x) / pi_SFT(y|x)) ]
//!     + gamma_ptx * E_{x ~ pretrain}[ log pi_RL(x) ]
//! ```
//!
//! and each part is computed here:
//!
//! - `beta * log(pi_RL / pi_SFT)` per token: [`kl_per_token`] (k1 by default, k3 as an
//!   option); beta is fixed or adapted towards a target KL by [`AdaptiveKlController`].
//! - `r(x, y)`: the reward model's score (penalised when the response ends without EOS,
//!   [`no_eos_penalized`], then optionally [`normalize_scores`]d) placed on the last
//!   response token, with the KL penalty on every token: [`shaped_rewards`].
//! - Credit assignment: [`gae()`] gives advantages and returns; [`masked_whiten`] whitens the
//!   advantages over the batch's response tokens.
//! - The update: [`policy_loss`] (clipped surrogate, with [`truncated_importance_weights`]
//!   for stale batches; the module doc of [`loss`] explains the correction),
//!   [`value_loss`] (clipped), [`entropy_from_logits`] (bonus); [`logprob_gap`] checks
//!   that generator and learner agree on log-probs.
//! - `gamma_ptx * E_pretrain[log pi]`: [`crate::losses::sft_loss`] on a pretraining batch,
//!   the negative log-likelihood, weighted by [`PpoConfig::ptx_coef`].
//!
//! The learner's loss per minibatch is therefore
//! `policy + vf_coef * value - entropy_coef * entropy + ptx_coef * nll_pretrain`.
//! Hyper-parameters live in [`PpoConfig`]. All [B, T] tensors are over response tokens
//! with a mask that is 1 for real tokens (responses start at column 0; tokens after EOS are
//! masked out); statistics are read back in one host transfer per call.
//!
//! [`PpoLearner`] puts it together: the policy, the value model and their optimizers, and
//! [`PpoLearner::update`] on one [`crate::rollout::RolloutBatch`]; [`load_weights`] is the
//! other end of its weight sync.

pub mod config;
pub mod gae;
pub mod kl;
pub mod learner;
pub mod loss;
mod minibatch;
pub mod rewards;
mod stats;
mod steps;

#[cfg(test)]
mod loss_tests;
#[cfg(test)]
mod testutil;

pub use config::{Baseline, GroupAdvantage, KlConfig, KlPlacement, LossAggregation, PpoConfig};
pub use gae::{gae, masked_mean, masked_var, masked_whiten};
pub use kl::{kl_per_token, AdaptiveKlController, KlEstimator};
pub use learner::{load_weights, PpoLearner, PpoStats};
pub use loss::{
    aggregate, entropy_from_logits, logprob_gap, policy_loss, truncated_importance_weights,
    value_loss, PolicyStats, Reduce, ValueStats,
};
pub use rewards::{
    group_relative, leave_one_out, no_eos_penalized, normalize_scores, shaped_rewards, RewardStats,
};

pub(crate) use crate::losses::read_back;
