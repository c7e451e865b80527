//! The PPO learner: the policy and the value model with an AdamW each, the KL controller,
//! and the update on one rollout batch. What the learner actor runs in stage 3.
//!
//! [`PpoLearner::update`] reads top to bottom as the algorithm:
//!
//! 1. Under no_grad, the learner's own log-probs of the batch's responses (`logp_old`, the
//!    centre of the trust region) and the value model's values.
//! 2. Rewards: the scores (with several samples per prompt, relative to the others of
//!    their prompt, [`leave_one_out`]; optionally [`normalize_scores`]d) on the last
//!    token, the KL penalty `beta * kl(logp_old, ref_logp)` on every token
//!    ([`shaped_rewards`]), beta from the [`AdaptiveKlController`].
//! 3. [`gae()`] advantages and returns; advantages optionally whitened over the batch.
//!    With `baseline = "group"` the value model is not run: values are 0 and GAE (gamma =
//!    lambda = 1) gives each token the shaped reward still to come.
//! 4. Truncated importance weights `min(pi_old / mu, cap)` against the generator's
//!    behaviour log-probs `mu`, correcting stale batches (see [`super::loss`]); the
//!    generator-vs-learner [`logprob_gap`] is measured on every batch.
//! 5. `ppo_epochs` passes over the batch, each in `minibatches` shuffled row subsets (the
//!    last one partial when B is not a multiple): `policy + vf_coef * value -
//!    entropy_coef * entropy + ptx_coef * nll(pretraining batch)`, one backward, each
//!    model's gradient clipped to `max_grad_norm`, one AdamW step each.
//! 6. The KL controller sees the batch's mean KL per sequence; the version goes up by one.
//!
//! A NaN or infinite loss or gradient norm in any minibatch step abandons the update with
//! [`Error::NonFinite`] before that step is applied. With `on_nan = "skip"` the learner
//! also rolls back the update's earlier minibatch steps, so a skipped update changes
//! nothing but the minibatch rng (see [`PpoConfig::on_nan`]).
//!
//! PPO runs without dropout: both models have it set to 0, so the ratio is exactly 1 on
//! the first minibatch and the learner's log-probs agree with the generator's for the same
//! weights. It also makes the first minibatch's forward passes, when that minibatch is the
//! whole batch, the very passes that give the "old" log-probs and values: the learner runs
//! them once, with the graph, and takes the old figures from them detached, rather than
//! running both models twice (a third less work per update at one minibatch).

use super::{
    entropy_from_logits, gae, leave_one_out, logprob_gap, masked_mean, masked_whiten,
    normalize_scores, policy_loss, read_back, shaped_rewards, truncated_importance_weights,
    value_loss, AdaptiveKlController, PpoConfig, ValueStats,
};
use crate::config::OnNan;
use crate::data::{batches, SftBatch};
use crate::losses::sft_loss;
use crate::model::{Head, Model};
use crate::optim::{AdamW, OptimizerConfig};
use crate::rng::Rng;
use crate::rollout::RolloutBatch;
use crate::rollout::{response_logits, response_logprobs, response_values, token_logprobs};
use crate::sampling::Sampling;
use crate::{Error, Result};
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Figures of one [`PpoLearner::update`]. Losses, fractions, entropy, approx-KL,
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
    /// Mean over sequences of the summed per-token KL to the reference policy (nats).
    pub kl_per_sequence: f64,
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
    /// Masked mean `|log mu - log pi_old|` between generator and learner log-probs.
    pub logprob_gap: f64,
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

/// Per-rollout tensors the minibatch steps slice, [B, N] on the policy's device.
struct Targets {
    /// Both models' passes over the whole batch, for the first minibatch step to use.
    first_pass: Option<FirstPass>,
    logp_old: Tensor,
    values_old: Tensor,
    advantages: Tensor,
    returns: Tensor,
    weights: Tensor,
}

/// Both models' forward passes over a whole rollout batch, with their graphs.
struct FirstPass {
    /// The policy's sampling-distribution log-probs [B, N, V].
    log_probs: Tensor,
    /// The value head [B, N], 0 outside the response mask (none without a value baseline).
    values: Option<Tensor>,
}

/// Running sums of the per-step figures.
#[derive(Default)]
struct StepSums {
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

/// The learner's scalar state in a checkpoint folder.
const LEARNER_STATE: &str = "ppo-learner.json";

/// Copies of the trainable state an update changes, to roll a skipped update back.
struct Snapshot {
    policy: Vec<(String, Tensor)>,
    value: Vec<(String, Tensor)>,
    policy_optimizer: BTreeMap<String, Tensor>,
    value_optimizer: BTreeMap<String, Tensor>,
}

/// Where a minibatch step is in its update: (1-based index, steps in the update).
type StepOf = (usize, usize);

/// The policy (LM head) and value model (scalar head) with their optimizers, the KL
/// controller and the policy version.
pub struct PpoLearner {
    policy: Model,
    value: Model,
    policy_optimizer: AdamW,
    value_optimizer: AdamW,
    max_grad_norm: f64,
    kl: AdaptiveKlController,
    config: PpoConfig,
    sampling: Sampling,
    version: u64,
    /// Test hook: updates to go until one whose last minibatch step has a NaN loss (see
    /// [`PpoLearner::poison_update`]).
    poison_in: Option<u64>,
    /// Whether a one-minibatch update shares its forward passes with the old figures;
    /// always on, off only in the test that compares both ways.
    share_first_pass: bool,
}

impl PpoLearner {
    /// `policy`: the model being trained (LM head), usually the SFT model. `value`: the
    /// value model (scalar head), initialised from the reward model as InstructGPT does.
    /// Both get an AdamW from `optimizer` (whose `lr` the caller schedules and passes to
    /// [`PpoLearner::update`]); `sampling` is the generator's, so that its temperature
    /// defines the log-probs. Dropout is switched off in both models. The configs are
    /// expected to be validated. The version starts at 0.
    ///
    /// # Panics
    /// When the heads are not LM (policy) and scalar (value).
    pub fn new(
        mut policy: Model,
        mut value: Model,
        optimizer: &OptimizerConfig,
        ppo: &PpoConfig,
        sampling: Sampling,
    ) -> PpoLearner {
        assert_eq!(
            policy.head(),
            Head::LanguageModel,
            "the policy needs an LM head"
        );
        assert_eq!(
            value.head(),
            Head::Scalar,
            "the value model needs a scalar head"
        );
        policy.set_dropout(0.0);
        value.set_dropout(0.0);
        let params = |m: &Model| m.var_store().variables().into_iter().collect();
        PpoLearner {
            policy_optimizer: AdamW::new(params(&policy), optimizer),
            value_optimizer: AdamW::new(params(&value), optimizer),
            policy,
            value,
            max_grad_norm: optimizer.max_grad_norm,
            kl: AdaptiveKlController::new(&ppo.kl),
            config: ppo.clone(),
            sampling,
            version: 0,
            poison_in: None,
            share_first_pass: true,
        }
    }

    /// Test hook: the `n`-th update from now (1: the next) gets a NaN loss in its last
    /// minibatch step, after its earlier steps were applied, to test how a non-finite
    /// update is handled.
    pub fn poison_update(&mut self, n: u64) {
        self.poison_in = (n > 0).then_some(n);
    }

    /// Both models, both optimizers, the KL coefficient and the version into a checkpoint
    /// folder.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_trainable(dir, "policy", &self.policy, &self.policy_optimizer)?;
        crate::checkpoint::save_trainable(dir, "value", &self.value, &self.value_optimizer)?;
        let state = serde_json::json!({"version": self.version, "kl_coef": self.kl.value});
        crate::model::weights::write_atomic(&dir.join(LEARNER_STATE), state.to_string().as_bytes())
    }

    /// Restores what [`PpoLearner::save_state`] wrote.
    pub fn load_state(&mut self, dir: &Path) -> Result<()> {
        crate::checkpoint::load_trainable(
            dir,
            "policy",
            &mut self.policy,
            &mut self.policy_optimizer,
        )?;
        crate::checkpoint::load_trainable(
            dir,
            "value",
            &mut self.value,
            &mut self.value_optimizer,
        )?;
        let path = dir.join(LEARNER_STATE);
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let state: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| Error::format(&path, e.to_string()))?;
        match (state["version"].as_u64(), state["kl_coef"].as_f64()) {
            (Some(version), Some(kl_coef)) => {
                self.version = version;
                self.kl.value = kl_coef;
                Ok(())
            }
            _ => Err(Error::format(&path, "needs `version` and `kl_coef`")),
        }
    }

    /// The policy version: the number of updates applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Sets the version (resuming from a checkpoint).
    pub fn set_version(&mut self, version: u64) {
        self.version = version;
    }

    pub fn policy(&self) -> &Model {
        &self.policy
    }

    pub fn value(&self) -> &Model {
        &self.value
    }

    pub fn sampling(&self) -> &Sampling {
        &self.sampling
    }

    pub fn config(&self) -> &PpoConfig {
        &self.config
    }

    /// The KL controller (its `value` is the beta the next update uses).
    pub fn kl_controller(&self) -> &AdaptiveKlController {
        &self.kl
    }

    pub fn kl_controller_mut(&mut self) -> &mut AdaptiveKlController {
        &mut self.kl
    }

    /// The policy's and the value model's optimizers (for checkpoints).
    pub fn optimizers(&self) -> (&AdamW, &AdamW) {
        (&self.policy_optimizer, &self.value_optimizer)
    }

    pub fn optimizers_mut(&mut self) -> (&mut AdamW, &mut AdamW) {
        (&mut self.policy_optimizer, &mut self.value_optimizer)
    }

    /// Detached copies of the policy's weights, sorted by name, for the generator's
    /// weight sync (see [`load_weights`]).
    pub fn policy_weights(&self) -> Vec<(String, Tensor)> {
        weights_copy(&self.policy)
    }

    /// One PPO update on `batch` (which must carry `ref_logprobs` and `scores`), with the
    /// pretraining batch `ptx` mixed in when given and `ptx_coef > 0`. `rng` shuffles the
    /// minibatches; `lr` is the scheduled learning rate of both optimizers. The version
    /// goes up by one.
    ///
    /// A non-finite loss or gradient norm is an [`Error::NonFinite`] naming the minibatch
    /// step; that step is not applied, nor is the KL controller or the version changed.
    /// With `on_nan = "skip"` the update's earlier minibatch steps are rolled back too, so
    /// the learner is as before the call; with `stop` they stay (the caller stops).
    pub fn update(
        &mut self,
        batch: &RolloutBatch,
        ptx: Option<&SftBatch>,
        rng: &mut Rng,
        lr: f64,
    ) -> Result<PpoStats> {
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
        let group = self.config.samples_per_prompt;
        if !(rows as usize).is_multiple_of(group) {
            return Err(Error::Invalid(format!(
                "PPO update: rollout batch {} has {rows} responses, not groups of \
                 samples_per_prompt = {group}",
                batch.id
            )));
        }
        let device = self.policy.device();
        let batch = batch.to_device(device);
        let mask = &batch.response_mask;
        let config = &self.config;

        // 1. The learner's log-probs and values of the batch, before any step; with one
        // minibatch, from the first step's own forward passes (see the module docs).
        let size = (rows as usize).div_ceil(self.config.minibatches);
        let share = self.share_first_pass && size >= rows as usize;
        let critic = config.uses_value_model();
        let first_pass = share.then(|| FirstPass {
            log_probs: self
                .sampling
                .log_probs(&response_logits(&self.policy, &batch, true)),
            values: critic.then(|| response_values(&self.value, &batch, true)),
        });
        let (logp_old, values_old) = match &first_pass {
            Some(pass) => (
                token_logprobs(&pass.log_probs, &batch.response_ids, mask).detach(),
                pass.values.as_ref().map(Tensor::detach),
            ),
            None => (
                response_logprobs(&self.policy, &batch, &self.sampling, false),
                critic.then(|| response_values(&self.value, &batch, false)),
            ),
        };
        // Without a value model the baseline is in the scores: every value is 0.
        let values_old = match values_old {
            Some(v) => v.to_device(device),
            None => logp_old.zeros_like(),
        };

        // 2. Shaped rewards: score on the last token, KL penalty on every token.
        let raw_scores = scores.to_device(device).to_kind(Kind::Float).reshape([-1]);
        let relative = leave_one_out(&raw_scores, config.samples_per_prompt);
        let scores = if config.normalize_rewards {
            normalize_scores(&relative)
        } else {
            relative
        };
        let kl_coef = self.kl.value;
        let (rewards, reward_stats) = shaped_rewards(
            &scores,
            &logp_old,
            &ref_logp.to_device(device),
            mask,
            &batch.ended_with_eos,
            kl_coef,
            config.kl.estimator,
            config.no_eos_penalty,
        );

        // 3. Advantages and returns; with the group baseline, the undiscounted reward to go.
        let (gamma, lam) = if critic {
            (config.gamma, config.lam)
        } else {
            (1.0, 1.0)
        };
        let (advantages, returns) = gae(&rewards, &values_old, mask, gamma, lam);
        let advantages = if config.whiten_advantages {
            masked_whiten(&advantages, mask, true)
        } else {
            advantages
        };

        // 4. Off-policy correction against the generator's behaviour policy.
        let behaviour = &batch.behaviour_logprobs;
        let weights =
            truncated_importance_weights(&logp_old, behaviour, mask, config.max_importance_weight);
        let gap = logprob_gap(behaviour, &logp_old, mask);
        let host = read_back(&[&raw_scores.mean(Kind::Float), &masked_mean(&weights, mask)]);
        let (score_mean, importance_weight_mean) = (host[0], host[1]);

        // 5. Epochs x minibatches of clipped PPO.
        let mut targets = Targets {
            first_pass,
            logp_old,
            values_old,
            advantages,
            returns,
            weights,
        };
        let ptx = ptx
            .filter(|_| self.config.ptx_coef > 0.0)
            .map(|b| SftBatch {
                input_ids: b.input_ids.to_device(device),
                valid: b.valid.to_device(device),
                targets: b.targets.to_device(device),
                loss_mask: b.loss_mask.to_device(device),
                tokens: b.tokens,
            });
        let steps = self.config.ppo_epochs * (rows as usize).div_ceil(size);
        let poison = match self.poison_in {
            Some(1) => {
                self.poison_in = None;
                true
            }
            Some(n) => {
                self.poison_in = Some(n - 1);
                false
            }
            None => false,
        };
        // Only a later minibatch step can fail after the model has changed.
        let snapshot = (self.config.on_nan == OnNan::Skip && steps > 1).then(|| self.snapshot());
        let mut sums = StepSums::default();
        let mut done = 0;
        for _ in 0..self.config.ppo_epochs {
            for indices in batches(rows as usize, size, Some(rng)) {
                let indices: Vec<i64> = indices.into_iter().map(|i| i as i64).collect();
                let index = Tensor::from_slice(&indices).to_device(device);
                done += 1;
                let poisoned = poison && done == steps;
                let stepped = self.minibatch_step(
                    &batch,
                    &mut targets,
                    &index,
                    ptx.as_ref(),
                    (lr, (done, steps), poisoned),
                    &mut sums,
                );
                if let Err(e) = stepped {
                    if let Some(snapshot) = &snapshot {
                        self.restore(snapshot)?;
                    }
                    return Err(e);
                }
            }
        }

        // 6. The KL controller and the version.
        self.kl
            .update(reward_stats.kl_per_sequence_mean, rows as u64);
        let staleness = self.version.saturating_sub(batch.policy_version);
        self.version += 1;
        let n = sums.steps.max(1.0);
        Ok(PpoStats {
            policy_version: self.version,
            batch_version: batch.policy_version,
            staleness,
            score_mean,
            reward_mean: reward_stats.reward_mean,
            kl_per_sequence: reward_stats.kl_per_sequence_mean,
            kl_coef,
            entropy: sums.entropy / n,
            policy_loss: sums.policy_loss / n,
            value_loss: sums.value_loss / n,
            clip_fraction: sums.clip_fraction / n,
            value_clip_fraction: sums.value_clip_fraction / n,
            approx_kl: sums.approx_kl / n,
            explained_variance: sums.explained_variance / n,
            ptx_loss: ptx.is_some().then(|| sums.ptx_loss / n),
            logprob_gap: gap,
            importance_weight_mean,
            response_length_mean: reward_stats.response_length_mean,
            no_eos_fraction: reward_stats.no_eos_fraction,
            grad_norm_policy: sums.grad_norm_policy / n,
            grad_norm_value: sums.grad_norm_value / n,
            lr,
        })
    }

    /// Copies of both models' weights and both optimizers' state.
    fn snapshot(&self) -> Snapshot {
        let optimizer = |o: &AdamW| -> BTreeMap<String, Tensor> {
            tch::no_grad(|| o.state().into_iter().map(|(n, t)| (n, t.copy())).collect())
        };
        Snapshot {
            policy: weights_copy(&self.policy),
            value: weights_copy(&self.value),
            policy_optimizer: optimizer(&self.policy_optimizer),
            value_optimizer: optimizer(&self.value_optimizer),
        }
    }

    /// Puts back what [`PpoLearner::snapshot`] copied.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        load_weights(&mut self.policy, &snapshot.policy)?;
        load_weights(&mut self.value, &snapshot.value)?;
        self.policy_optimizer
            .load_state(&snapshot.policy_optimizer)?;
        self.value_optimizer.load_state(&snapshot.value_optimizer)
    }

    /// One optimizer step of both models on the rows `index` of the batch, at learning
    /// rate `lr`, the `at.0`-th of the update's `at.1` steps; `poison` (test hook) makes
    /// its loss NaN. Takes the targets' first pass, if there is one.
    fn minibatch_step(
        &mut self,
        batch: &RolloutBatch,
        targets: &mut Targets,
        index: &Tensor,
        ptx: Option<&SftBatch>,
        (lr, at, poison): (f64, StepOf, bool),
        sums: &mut StepSums,
    ) -> Result<()> {
        let config = &self.config;
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
                self.sampling
                    .log_probs(&response_logits(&self.policy, &sub, true)),
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
        let (policy, mut policy_stats) = policy_loss(
            &logp,
            &pick(&targets.logp_old),
            &pick(&targets.advantages),
            mask,
            config.clip_range,
            Some(&pick(&targets.weights)),
        );
        // Out-of-place sums: every term keeps its own graph.
        let mut terms = vec![policy];
        let critic = config.uses_value_model();
        let mut value_stats = ValueStats::default();
        if critic {
            let value_device = self.value.device();
            let values = values.unwrap_or_else(|| response_values(&self.value, &sub, true));
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
            let hidden = self
                .policy
                .forward(&ptx.input_ids, Some(&ptx.valid), None, true);
            let (nll, stats) = sft_loss(&self.policy.logits(&hidden), &ptx.targets, &ptx.loss_mask);
            terms.push(config.ptx_coef * nll);
            ptx_loss = stats.loss;
        }
        let mut loss = Tensor::stack(&terms, 0).sum(Kind::Float);
        if poison {
            loss *= f64::NAN;
            policy_stats.loss = f64::NAN;
        }
        let entropy = read_back(&[&entropy])[0];
        let total = policy_stats.loss + config.vf_coef * value_stats.loss
            - config.entropy_coef * entropy
            + config.ptx_coef * ptx_loss;
        if !total.is_finite() {
            return Err(Error::NonFinite {
                what: format!(
                    "PPO loss (policy {}, value {}, entropy {entropy}, ptx {ptx_loss}) in \
                     minibatch step {} of {}",
                    policy_stats.loss, value_stats.loss, at.0, at.1
                ),
                step: self.version + 1,
            });
        }

        self.policy_optimizer.zero_grad();
        self.value_optimizer.zero_grad();
        loss.backward();
        let grad_policy = self.policy_optimizer.clip_grad_norm(self.max_grad_norm);
        let grad_value = if critic {
            self.value_optimizer.clip_grad_norm(self.max_grad_norm)
        } else {
            0.0
        };
        if !(grad_policy.is_finite() && grad_value.is_finite()) {
            return Err(Error::NonFinite {
                what: format!(
                    "PPO gradient norm (policy {grad_policy}, value {grad_value}) in \
                     minibatch step {} of {}",
                    at.0, at.1
                ),
                step: self.version + 1,
            });
        }
        self.policy_optimizer.step(lr);
        if critic {
            self.value_optimizer.step(lr);
        }

        sums.steps += 1.0;
        sums.policy_loss += policy_stats.loss;
        sums.value_loss += value_stats.loss;
        sums.entropy += entropy;
        sums.clip_fraction += policy_stats.clip_fraction;
        sums.value_clip_fraction += value_stats.clip_fraction;
        sums.approx_kl += policy_stats.approx_kl;
        sums.explained_variance += value_stats.explained_variance;
        sums.ptx_loss += ptx_loss;
        sums.grad_norm_policy += grad_policy;
        sums.grad_norm_value += grad_value;
        Ok(())
    }
}

/// Detached copies of a model's weights, sorted by name.
fn weights_copy(model: &Model) -> Vec<(String, Tensor)> {
    tch::no_grad(|| {
        let mut weights: Vec<(String, Tensor)> = model
            .var_store()
            .variables()
            .into_iter()
            .map(|(name, t)| (name, t.detach().copy()))
            .collect();
        weights.sort_by(|a, b| a.0.cmp(&b.0));
        weights
    })
}

/// Copies named tensors into a model's variables under no_grad (the generator's weight
/// sync; devices and float dtypes may differ). Every variable of the model must be given
/// with its shape, and every given name must be a variable; otherwise an error names the
/// tensor and nothing is copied.
pub fn load_weights(model: &mut Model, weights: &[(String, Tensor)]) -> Result<()> {
    let mut vars = model.var_store().variables();
    let invalid = |what: String| Error::Invalid(format!("weight sync: {what}"));
    for (name, tensor) in weights {
        let Some(var) = vars.get(name) else {
            return Err(invalid(format!("unknown tensor `{name}`")));
        };
        if tensor.size() != var.size() {
            return Err(invalid(format!(
                "tensor `{name}` has shape {:?}, the model expects {:?}",
                tensor.size(),
                var.size()
            )));
        }
    }
    if let Some(name) = vars
        .keys()
        .filter(|name| !weights.iter().any(|(n, _)| n == *name))
        .min()
    {
        return Err(invalid(format!("missing tensor `{name}`")));
    }
    let _guard = tch::no_grad_guard();
    for (name, tensor) in weights {
        let var = vars.get_mut(name).expect("checked above");
        var.f_copy_(tensor)?;
    }
    Ok(())
}

#[cfg(test)]
#[path = "learner_tests.rs"]
mod tests;
