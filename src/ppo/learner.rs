//! The PPO learner: the policy and the value model with an AdamW each (with `baseline =
//! "group"` the policy alone: no value model or optimizer is held), the KL controller,
//! and the update on one rollout batch. What the learner actor runs in stage 3.
//!
//! [`PpoLearner::update`] reads top to bottom as the algorithm:
//!
//! 1. Under no_grad, the learner's own log-probs of the batch's responses (`logp_old`, the
//!    centre of the trust region) and the value model's values.
//! 2. Rewards: the scores (with several samples per prompt, relative to the others of
//!    their prompt, [`leave_one_out`](super::leave_one_out); optionally [`normalize_scores`](super::normalize_scores)d) on the last
//!    token, the KL penalty `beta * kl(logp_old, ref_logp)` on every token
//!    ([`shaped_rewards`](super::shaped_rewards)), beta from the [`AdaptiveKlController`].
//! 3. [`gae()`](fn@super::gae) advantages and returns; advantages optionally whitened over the batch.
//!    With `baseline = "group"` there is no value model: values are 0 and GAE (gamma =
//!    lambda = 1) gives each token the shaped reward still to come.
//! 4. Truncated importance weights `min(pi_old / mu, cap)` against the generator's
//!    behaviour log-probs `mu`, correcting stale batches (see [`super::loss`]). The mean
//!    `|log pi_old - log mu|` is the generator-vs-learner
//!    [`logprob_gap`](super::logprob_gap) on a fresh batch (same weights: any gap is a
//!    mismatch) and the policy drift on a stale one (the learner has moved since).
//! 5. `ppo_epochs` passes over the batch, each in `minibatches` shuffled row subsets (the
//!    last one partial when B is not a multiple): `policy + vf_coef * value -
//!    entropy_coef * entropy + ptx_coef * nll(pretraining batch of the step)`, one
//!    backward, each model's gradient clipped to `max_grad_norm`, one AdamW step each.
//! 6. The KL controller sees the importance-weighted KL per sequence (the current policy's
//!    KL, estimated from the behaviour policy's samples); the version goes up by one.
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

use super::minibatch::{minibatch_loss, FirstPass, Models, Targets};
pub use super::stats::PpoStats;
use super::stats::{StepFigures, StepSums};
use super::steps::{
    advantages, check_batch, check_grad_norms, check_loss, check_ptx, off_policy_weights,
    shape_rewards, weighted_kl_per_sequence, StepAt,
};
use super::{masked_mean, read_back, AdaptiveKlController, PpoConfig};
use crate::config::OnNan;
use crate::data::{batches, SftBatch};
pub use crate::model::load_weights;
use crate::model::{Head, Model};
use crate::optim::{AdamW, OptimizerConfig};
use crate::rng::Rng;
use crate::rollout::RolloutBatch;
use crate::rollout::{response_logits, response_logprobs, response_values, token_logprobs};
use crate::sampling::Sampling;
use crate::{Error, Result};
use std::collections::BTreeMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// The learner's own figures of the batch before any step (step 1).
struct OldFigures {
    /// Both models' passes over the whole batch, for the first minibatch step to use.
    first_pass: Option<FirstPass>,
    /// Log-probs of the sampled tokens [B, N], detached: the centre of the trust region.
    logp_old: Tensor,
    /// Values [B, N], detached; 0 without a value model.
    values_old: Tensor,
}

/// The epochs x minibatches of one update.
#[derive(Clone, Copy)]
struct Plan {
    rows: usize,
    /// Rows per minibatch (the last one may be short).
    size: usize,
    /// Minibatch steps in the update.
    steps: usize,
    lr: f64,
    /// Fault injection: the update's last step gets a NaN loss.
    #[cfg(any(test, feature = "fault-injection"))]
    poison: bool,
}

/// The learner's scalar state in a checkpoint folder.
const LEARNER_STATE: &str = "ppo-learner.json";

/// Copies of one model's weights and its optimizer's state.
type Copies = (Vec<(String, Tensor)>, BTreeMap<String, Tensor>);

/// Copies of the trainable state an update changes, to roll a skipped update back.
struct Snapshot {
    policy: Copies,
    /// The value model's, when there is one.
    critic: Option<Copies>,
}

/// The value model (scalar head) with its optimizer: InstructGPT's critic. There is none
/// with `baseline = "group"`, so no memory goes to its weights, gradients or moments.
struct Critic {
    model: Model,
    optimizer: AdamW,
}

/// The policy (LM head) and, with a value baseline, the value model (scalar head), with
/// their optimizers, the KL controller and the policy version.
pub struct PpoLearner {
    policy: Model,
    policy_optimizer: AdamW,
    critic: Option<Critic>,
    max_grad_norm: f64,
    kl: AdaptiveKlController,
    config: PpoConfig,
    sampling: Sampling,
    version: u64,
    /// Fault injection: updates to go until one whose last minibatch step has a NaN loss
    /// (see [`PpoLearner::poison_update`]).
    #[cfg(any(test, feature = "fault-injection"))]
    poison_in: Option<u64>,
    /// Whether a one-minibatch update shares its forward passes with the old figures;
    /// always on, off only in the test that compares both ways.
    share_first_pass: bool,
}

impl PpoLearner {
    /// `policy`: the model being trained (LM head), usually the SFT model. `value`: the
    /// value model (scalar head), initialised from the reward model as InstructGPT does;
    /// `None` with `baseline = "group"`, which has none. Each gets an AdamW from
    /// `optimizer` (whose `lr` the caller schedules and passes to
    /// [`PpoLearner::update`]); `sampling` is the generator's, so that its temperature
    /// defines the log-probs. Dropout is switched off. The configs are expected to be
    /// validated. The version starts at 0.
    ///
    /// # Panics
    /// When the heads are not LM (policy) and scalar (value), or a value model is given
    /// or missing against `ppo.baseline`.
    pub fn new(
        mut policy: Model,
        value: Option<Model>,
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
            value.is_some(),
            ppo.uses_value_model(),
            "a value model exactly when the baseline is a value model"
        );
        policy.set_dropout(0.0);
        let params = |m: &Model| m.trainable();
        let critic = value.map(|mut model| {
            assert_eq!(
                model.head(),
                Head::Scalar,
                "the value model needs a scalar head"
            );
            model.set_dropout(0.0);
            Critic {
                optimizer: AdamW::new(params(&model), optimizer),
                model,
            }
        });
        PpoLearner {
            policy_optimizer: AdamW::new(params(&policy), optimizer),
            policy,
            critic,
            max_grad_norm: optimizer.max_grad_norm,
            kl: AdaptiveKlController::new(&ppo.kl),
            config: ppo.clone(),
            sampling,
            version: 0,
            #[cfg(any(test, feature = "fault-injection"))]
            poison_in: None,
            share_first_pass: true,
        }
    }

    /// Fault injection (tests and the `fault-injection` feature only): the `n`-th update
    /// from now (1: the next) gets a NaN loss in its last minibatch step, after its earlier
    /// steps were applied, to test how a non-finite update is handled. 0 disarms it.
    #[cfg(any(test, feature = "fault-injection"))]
    pub fn poison_update(&mut self, n: u64) {
        self.poison_in = (n > 0).then_some(n);
    }

    /// Whether this update is the poisoned one; counts the armed poison down.
    #[cfg(any(test, feature = "fault-injection"))]
    fn take_poison(&mut self) -> bool {
        match self.poison_in {
            Some(1) => {
                self.poison_in = None;
                true
            }
            Some(n) => {
                self.poison_in = Some(n - 1);
                false
            }
            None => false,
        }
    }

    /// The models, their optimizers, the KL coefficient and the version into a checkpoint
    /// folder.
    pub fn save_state(&self, dir: &Path) -> Result<()> {
        crate::checkpoint::save_trainable(dir, "policy", &self.policy, &self.policy_optimizer)?;
        if let Some(c) = &self.critic {
            crate::checkpoint::save_trainable(dir, "value", &c.model, &c.optimizer)?;
        }
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
        if let Some(c) = &mut self.critic {
            crate::checkpoint::load_trainable(dir, "value", &mut c.model, &mut c.optimizer)?;
        }
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

    /// Gradient checkpointing for both models' training forwards (see
    /// [`Model::set_gradient_checkpointing`]).
    pub fn set_gradient_checkpointing(&mut self, on: bool) {
        self.policy.set_gradient_checkpointing(on);
        if let Some(c) = &mut self.critic {
            c.model.set_gradient_checkpointing(on);
        }
    }

    fn discard_recomputed(&self) {
        self.policy.discard_recomputed();
        if let Some(c) = &self.critic {
            c.model.discard_recomputed();
        }
    }

    /// The policy version: the number of updates applied.
    pub fn version(&self) -> u64 {
        self.version
    }

    pub fn policy(&self) -> &Model {
        &self.policy
    }

    /// The value model (none with `baseline = "group"`).
    pub fn value(&self) -> Option<&Model> {
        self.critic.as_ref().map(|c| &c.model)
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

    /// The policy's and the value model's optimizers (for checkpoints).
    pub fn optimizers(&self) -> (&AdamW, Option<&AdamW>) {
        (
            &self.policy_optimizer,
            self.critic.as_ref().map(|c| &c.optimizer),
        )
    }

    /// Detached copies of the policy's weights, sorted by name, for the generator's
    /// weight sync (see [`load_weights`]).
    pub fn policy_weights(&self) -> Vec<(String, Tensor)> {
        self.policy.trainable_copy()
    }

    /// One PPO update on `batch` (which must carry `ref_logprobs` and `scores`). With
    /// `ptx_coef > 0` and `ptx` not empty, PPO-ptx: `ptx` holds one pretraining batch per
    /// optimizer step ([`PpoConfig::optimizer_steps`]), the n-th mixed into the n-th step;
    /// another count is an error. `rng` shuffles the minibatches; `lr` is the scheduled
    /// learning rate of both optimizers. The version goes up by one.
    ///
    /// A non-finite loss or gradient norm is an [`Error::NonFinite`] naming the minibatch
    /// step; that step is not applied, nor is the KL controller or the version changed.
    /// With `on_nan = "skip"` the update's earlier minibatch steps are rolled back too, so
    /// the learner is as before the call; with `stop` they stay (the caller stops).
    pub fn update(
        &mut self,
        batch: &RolloutBatch,
        ptx: &[SftBatch],
        rng: &mut Rng,
        lr: f64,
    ) -> Result<PpoStats> {
        let checked = check_batch(batch, self.config.samples_per_prompt)?;
        let rows = checked.rows;
        let steps = self.config.optimizer_steps(rows);
        let ptx = check_ptx(&self.config, ptx, steps, batch.id)?;
        let device = self.policy.device();
        let batch = batch.to_device(device);
        let mask = &batch.response_mask;
        let size = self.config.minibatch_size(rows);

        // 1. The learner's log-probs and values of the batch, before any step; with one
        // minibatch, from the first step's own forward passes (see the module docs).
        let old = self.old_figures(&batch, self.share_first_pass && size >= rows);

        // 2. Shaped rewards: score on the last token, KL penalty on every token.
        let kl_coef = self.kl.value;
        let rewards = shape_rewards(
            &self.config,
            kl_coef,
            &checked,
            &old.logp_old,
            &batch,
            device,
        );

        // 3. Advantages and returns; with the group baseline, the undiscounted reward to go.
        let (advantages, returns) =
            advantages(&self.config, &rewards.rewards, &old.values_old, mask);

        // 4. Off-policy correction against the generator's behaviour policy.
        let (weights, gap) = off_policy_weights(
            &old.logp_old,
            &batch.behaviour_logprobs,
            mask,
            self.config.max_importance_weight,
        );
        let fresh = batch.policy_version == self.version;
        let kl_weighted = weighted_kl_per_sequence(
            &old.logp_old,
            checked.ref_logprobs,
            &weights,
            mask,
            self.config.kl.estimator,
        );
        let host = read_back(&[
            &rewards.raw_scores.mean(Kind::Float),
            &masked_mean(&weights, mask),
        ]);
        let (score_mean, importance_weight_mean) = (host[0], host[1]);

        // 5. Epochs x minibatches of clipped PPO, all or nothing when skipping NaNs.
        let targets = Targets {
            first_pass: old.first_pass,
            logp_old: old.logp_old,
            values_old: old.values_old,
            advantages,
            returns,
            weights,
        };
        let ptx: Vec<SftBatch> = ptx.iter().map(|b| b.to_device(device)).collect();
        let plan = Plan {
            rows,
            size,
            steps,
            lr,
            #[cfg(any(test, feature = "fault-injection"))]
            poison: self.take_poison(),
        };
        let sums = self.rolled_back_on_error(plan.steps, |learner| {
            learner.minibatch_steps(&batch, targets, &ptx, rng, plan)
        });
        // An abandoned step leaves its checkpointed forwards unconsumed.
        self.discard_recomputed();
        let sums = sums?;

        // 6. The KL controller (on the current policy's KL) and the version.
        self.kl.update(kl_weighted, rows as u64);
        let staleness = self.version.saturating_sub(batch.policy_version);
        self.version += 1;
        Ok(PpoStats {
            policy_version: self.version,
            batch_version: batch.policy_version,
            staleness,
            score_mean,
            reward_mean: rewards.stats.reward_mean,
            kl_per_sequence: rewards.stats.kl_per_sequence_mean,
            kl_per_sequence_weighted: kl_weighted,
            kl_coef,
            logprob_gap: fresh.then_some(gap),
            policy_drift: (!fresh).then_some(gap),
            importance_weight_mean,
            response_length_mean: rewards.stats.response_length_mean,
            no_eos_fraction: rewards.stats.no_eos_fraction,
            lr,
            ..sums.finish(!ptx.is_empty())
        })
    }

    /// Step 1: the policy's log-probs of the sampled tokens and the value model's values,
    /// detached. With `share`, from passes with the graph kept for the first minibatch
    /// step; otherwise from passes without it.
    fn old_figures(&self, batch: &RolloutBatch, share: bool) -> OldFigures {
        let mask = &batch.response_mask;
        let value = self.value();
        let first_pass = share.then(|| FirstPass {
            log_probs: self
                .sampling
                .log_probs(&response_logits(&self.policy, batch, true)),
            values: value.map(|v| response_values(v, batch, true)),
        });
        let (logp_old, values_old) = match &first_pass {
            Some(pass) => (
                token_logprobs(&pass.log_probs, &batch.response_ids, mask).detach(),
                pass.values.as_ref().map(Tensor::detach),
            ),
            None => (
                response_logprobs(&self.policy, batch, &self.sampling, false),
                value.map(|v| response_values(v, batch, false)),
            ),
        };
        // Without a value model the baseline is in the scores: every value is 0.
        let values_old = match values_old {
            Some(v) => v.to_device(self.policy.device()),
            None => logp_old.zeros_like(),
        };
        OldFigures {
            first_pass,
            logp_old,
            values_old,
        }
    }

    /// Runs `steps` minibatch steps through `run`; when one fails with `on_nan = "skip"`,
    /// the earlier ones are undone from a snapshot taken before, so the learner is as it
    /// was. Only a later step can fail after the models have changed, so one step needs
    /// no snapshot.
    fn rolled_back_on_error<T>(
        &mut self,
        steps: usize,
        run: impl FnOnce(&mut Self) -> Result<T>,
    ) -> Result<T> {
        let snapshot = (self.config.on_nan == OnNan::Skip && steps > 1).then(|| self.snapshot());
        let result = run(self);
        if result.is_err() {
            if let Some(snapshot) = &snapshot {
                self.restore(snapshot)?;
            }
        }
        result
    }

    /// Step 5: `ppo_epochs` passes over the batch in shuffled minibatches, step n with
    /// the pretraining batch `ptx[n - 1]` if any; the first error ends them.
    fn minibatch_steps(
        &mut self,
        batch: &RolloutBatch,
        mut targets: Targets,
        ptx: &[SftBatch],
        rng: &mut Rng,
        plan: Plan,
    ) -> Result<StepSums> {
        let device = self.policy.device();
        let mut sums = StepSums::default();
        let mut done = 0;
        for _ in 0..self.config.ppo_epochs {
            for indices in batches(plan.rows, plan.size, Some(rng)) {
                let indices: Vec<i64> = indices.into_iter().map(|i| i as i64).collect();
                let index = Tensor::from_slice(&indices).to_device(device);
                done += 1;
                let at = StepAt {
                    n: done,
                    of: plan.steps,
                    update: self.version + 1,
                    lr: plan.lr,
                    #[cfg(any(test, feature = "fault-injection"))]
                    poison: plan.poison && done == plan.steps,
                };
                let step_ptx = ptx.get(done - 1);
                let figures = self.minibatch_step(batch, &mut targets, &index, step_ptx, at)?;
                sums.add(&figures);
            }
        }
        Ok(sums)
    }

    /// Copies of the models' weights and their optimizers' state.
    fn snapshot(&self) -> Snapshot {
        let optimizer = |o: &AdamW| -> BTreeMap<String, Tensor> {
            tch::no_grad(|| o.state().into_iter().map(|(n, t)| (n, t.copy())).collect())
        };
        Snapshot {
            policy: (
                self.policy.trainable_copy(),
                optimizer(&self.policy_optimizer),
            ),
            critic: self
                .critic
                .as_ref()
                .map(|c| (c.model.trainable_copy(), optimizer(&c.optimizer))),
        }
    }

    /// Puts back what [`PpoLearner::snapshot`] copied.
    fn restore(&mut self, snapshot: &Snapshot) -> Result<()> {
        load_weights(&mut self.policy, &snapshot.policy.0)?;
        self.policy_optimizer.load_state(&snapshot.policy.1)?;
        if let (Some(c), Some((weights, optimizer))) = (&mut self.critic, &snapshot.critic) {
            load_weights(&mut c.model, weights)?;
            c.optimizer.load_state(optimizer)?;
        }
        Ok(())
    }

    /// One optimizer step of both models on the rows `index` of the batch: the loss, its
    /// finite check, the gradients applied. Takes the targets' first pass, if there is one.
    fn minibatch_step(
        &mut self,
        batch: &RolloutBatch,
        targets: &mut Targets,
        index: &Tensor,
        ptx: Option<&SftBatch>,
        at: StepAt,
    ) -> Result<StepFigures> {
        let models = Models {
            policy: &self.policy,
            value: self.value(),
            sampling: &self.sampling,
            config: &self.config,
            kl_coef: self.kl.value,
        };
        #[allow(unused_mut)] // mutated by fault injection only
        let mut step = minibatch_loss(models, batch, targets, index, ptx);
        #[cfg(any(test, feature = "fault-injection"))]
        if at.poison {
            step.loss *= f64::NAN;
            step.policy.loss = f64::NAN;
        }
        let mut figures = StepFigures {
            entropy: read_back(&[&step.entropy])[0],
            policy: step.policy,
            value: step.value,
            ptx_loss: step.ptx_loss,
            ..StepFigures::default()
        };
        check_loss(&self.config, &figures, at)?;
        let (grad_policy, grad_value) = self.apply_gradients(&step.loss, at)?;
        figures.grad_norm_policy = grad_policy;
        figures.grad_norm_value = grad_value;
        Ok(figures)
    }

    /// Backward, each model's gradient clipped to `max_grad_norm` (the value model's only
    /// when it is trained), the finite check, one AdamW step each. Returns the gradient
    /// norms before clipping.
    fn apply_gradients(&mut self, loss: &Tensor, at: StepAt) -> Result<(f64, f64)> {
        self.policy_optimizer.zero_grad();
        if let Some(c) = &mut self.critic {
            c.optimizer.zero_grad();
        }
        let mut models = vec![&self.policy];
        models.extend(self.critic.as_ref().map(|c| &c.model));
        crate::model::backward(loss, &models);
        let grad_policy = self.policy_optimizer.clip_grad_norm(self.max_grad_norm);
        let grad_value = match &mut self.critic {
            Some(c) => c.optimizer.clip_grad_norm(self.max_grad_norm),
            None => 0.0,
        };
        check_grad_norms(grad_policy, grad_value, at)?;
        self.policy_optimizer.step(at.lr);
        if let Some(c) = &mut self.critic {
            c.optimizer.step(at.lr);
        }
        Ok((grad_policy, grad_value))
    }
}

#[cfg(test)]
#[path = "learner_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "update_tests.rs"]
mod update_tests;

#[cfg(test)]
#[path = "checkpointing_tests.rs"]
mod checkpointing_tests;
