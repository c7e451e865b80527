//! The `[ppo]` section of a run configuration: the hyper-parameters of the PPO math in
//! this module (the actor layout, devices and staleness live elsewhere).

use crate::config::OnNan;
use serde::{Deserialize, Serialize};

/// Per-token estimator of `KL(pi || pi_ref)` from log-probs of tokens sampled from `pi`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlEstimator {
    /// `log pi - log pi_ref`: unbiased, can be negative per token (InstructGPT's penalty).
    #[default]
    K1,
    /// `exp(d) - 1 - d` with `d = log pi_ref - log pi`: unbiased, never negative, lower
    /// variance (Schulman, "Approximating KL divergence", 2020).
    K3,
}

/// Where the KL to the reference policy enters the objective.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum KlPlacement {
    /// A penalty on every token's reward, before the advantages (InstructGPT's PPO).
    #[default]
    Reward,
    /// A term of the loss, `coef` times the aggregated per-token estimate of the current
    /// policy against the reference, differentiated (GRPO's, usually with `k3`); the
    /// rewards carry no penalty.
    Loss,
}

/// The KL to the reference (SFT) policy: a penalty folded into the per-token reward, or a
/// loss term.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KlConfig {
    /// The penalty coefficient beta (initial value when `adaptive`); >= 0.
    pub coef: f64,
    /// Per-token estimator of log(pi / pi_ref): `k1` (the log-ratio, as InstructGPT) or
    /// `k3` (Schulman's non-negative `exp(-d) - 1 + d`).
    pub estimator: KlEstimator,
    /// Adapt `coef` towards `target` (Ziegler et al. 2019) instead of keeping it fixed.
    pub adaptive: bool,
    /// Target KL per sequence in nats for the adaptive controller (> 0); Ziegler et al. and
    /// TRL use 6.
    pub target: f64,
    /// Horizon of the adaptive controller in sequences (> 0): the larger, the slower
    /// `coef` moves.
    pub horizon: u64,
    /// `reward` (a per-token penalty, InstructGPT) or `loss` (a loss term, GRPO).
    pub placement: KlPlacement,
}

impl Default for KlConfig {
    fn default() -> Self {
        KlConfig {
            coef: 0.05,
            estimator: KlEstimator::K1,
            adaptive: false,
            target: 6.0,
            horizon: 10_000,
            placement: KlPlacement::Reward,
        }
    }
}

/// What the advantage of a response token is measured against.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Baseline {
    /// A learned value model, with GAE (InstructGPT's PPO).
    #[default]
    Value,
    /// No value model: a token's advantage is the shaped reward still to come, with the
    /// score taken relative to the other samples of its prompt (`samples_per_prompt` >= 2,
    /// the leave-one-out baseline of RLOO). The learner holds no value model (nor its
    /// optimizer), which halves its work; `gamma`, `lam`, `vf_coef` and `clip_range_value`
    /// are unused.
    Group,
}

/// How a score is taken relative to the other samples of its prompt
/// (`samples_per_prompt` >= 2).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupAdvantage {
    /// Minus the mean of the others (RLOO; unbiased).
    #[default]
    LeaveOneOut,
    /// Minus the group's mean, over the group's standard deviation (unbiased) plus 1e-4
    /// (GRPO, as TRL computes it).
    MeanStd,
    /// Minus the group's mean, not scaled (Dr. GRPO).
    Mean,
}

/// How the per-token policy terms (and the KL term of `kl.placement = "loss"`) of a
/// minibatch become one loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LossAggregation {
    /// The mean over every response token of the minibatch (InstructGPT, TRL's PPO, DAPO).
    #[default]
    TokenMean,
    /// The mean over responses of each response's token mean (GRPO).
    SequenceMean,
    /// The sum over tokens divided by rows x `loss_constant_tokens`, the same for every
    /// minibatch whatever its lengths (Dr. GRPO).
    Constant,
}

/// PPO and PPO-ptx hyper-parameters.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PpoConfig {
    /// The KL penalty to the reference policy.
    pub kl: KlConfig,
    /// Discount factor of GAE, in [0, 1]; 1 (undiscounted) as is usual for RLHF.
    pub gamma: f64,
    /// GAE lambda, in [0, 1].
    pub lam: f64,
    /// Clip range epsilon of the policy ratio (> 0): the ratio is clipped to
    /// `[1 - clip_range, 1 + clip_range_high]`.
    pub clip_range: f64,
    /// The upper clip range (> 0); default `clip_range`. DAPO's clip-higher raises it
    /// (0.28 against 0.2) so unlikely tokens can gain probability.
    pub clip_range_high: Option<f64>,
    /// How the per-token policy terms become one loss: `token_mean`, `sequence_mean` or
    /// `constant` ([`LossAggregation`]).
    pub loss_aggregation: LossAggregation,
    /// The constant of `loss_aggregation = "constant"`: tokens per response, usually the
    /// stage's `max_new_tokens` (>= 1; needed then, unused otherwise).
    pub loss_constant_tokens: Option<usize>,
    /// Clip range of the value prediction around the rollout's old values (> 0; a large
    /// value effectively disables value clipping).
    pub clip_range_value: f64,
    /// Weight of the value loss in the total loss (>= 0).
    pub vf_coef: f64,
    /// Weight of the entropy bonus subtracted from the loss (>= 0; 0 disables it).
    pub entropy_coef: f64,
    /// PPO-ptx: InstructGPT's gamma, the weight of the pretraining log-likelihood mixed into
    /// each update (>= 0; 0 is plain PPO). Every optimizer step gets a pretraining batch of
    /// its own, as InstructGPT and OpenRLHF do.
    pub ptx_coef: f64,
    /// Passes over each rollout batch (>= 1).
    pub ppo_epochs: usize,
    /// Minibatches each pass is split into (>= 1).
    pub minibatches: usize,
    /// Added to the score of responses that end without EOS (typically negative; 0 means
    /// no penalty).
    pub no_eos_penalty: f64,
    /// The advantage baseline: `value` (GAE with the value model) or `group` (the other
    /// samples of the prompt; see [`Baseline`]).
    pub baseline: Baseline,
    /// With `samples_per_prompt` >= 2, how each score is taken relative to its prompt's
    /// other samples: `leave_one_out` (RLOO), `mean_std` (GRPO) or `mean` (Dr. GRPO).
    pub group_advantage: GroupAdvantage,
    /// Responses sampled per prompt (>= 1). With more than one, each score is taken
    /// relative to the other responses to the same prompt (`group_advantage`; by default
    /// the leave-one-out baseline, see [`super::group_relative`]) before shaping, so
    /// that how hard a prompt is, and any per-prompt offset of the reward model, drop out
    /// of the advantage. The stage's `rollout_batch_size` counts responses and must be a
    /// multiple of it.
    pub samples_per_prompt: usize,
    /// Divide the scores of each batch by their standard deviation before shaping (see
    /// [`super::normalize_scores`]).
    pub normalize_rewards: bool,
    /// Whiten the advantages over the batch's response tokens (masked mean 0, variance 1).
    pub whiten_advantages: bool,
    /// Cap (>= 1) of the truncated importance weight that corrects stale batches (see
    /// [`super::truncated_importance_weights`]).
    pub max_importance_weight: f64,
    /// An update whose loss or gradient norm turns NaN or infinite in any of its minibatch
    /// steps: `stop` the run (the error names the last good training-state checkpoint) or
    /// `skip` it and go on with the next rollout batch (counted in
    /// `rlhf_skipped_steps_total` and in the step's `skipped` metrics record). A skipped
    /// update changes nothing: the policy, the value model, both optimizers, the KL
    /// coefficient and the version are as before it. For that the learner keeps a copy of
    /// both models' weights and optimizer moments during every update of more than one
    /// minibatch step (as much memory again as the models' training state); `stop` keeps
    /// none, so a failure after the update's first minibatch step leaves the earlier steps
    /// in the learner's memory (the run ends; resume from the checkpoint it names).
    pub on_nan: OnNan,
}

impl Default for PpoConfig {
    fn default() -> Self {
        PpoConfig {
            kl: KlConfig::default(),
            gamma: 1.0,
            lam: 0.95,
            clip_range: 0.2,
            clip_range_high: None,
            loss_aggregation: LossAggregation::TokenMean,
            loss_constant_tokens: None,
            clip_range_value: 0.2,
            vf_coef: 0.1,
            entropy_coef: 0.0,
            ptx_coef: 0.0,
            ppo_epochs: 1,
            minibatches: 1,
            no_eos_penalty: 0.0,
            baseline: Baseline::Value,
            group_advantage: GroupAdvantage::LeaveOneOut,
            samples_per_prompt: 1,
            normalize_rewards: false,
            whiten_advantages: true,
            max_importance_weight: 2.0,
            on_nan: OnNan::Stop,
        }
    }
}

fn check(ok: bool, name: &str, rule: &str, value: impl std::fmt::Display) -> Result<(), String> {
    if ok {
        Ok(())
    } else {
        Err(format!("{name} must be {rule}, got {value}"))
    }
}

impl KlConfig {
    /// Checks every field; the message starts with the field's name (`kl.` included).
    pub fn validate(&self) -> Result<(), String> {
        let c = self.coef;
        check(
            c >= 0.0 && c.is_finite(),
            "kl.coef",
            "non-negative and finite",
            c,
        )?;
        let t = self.target;
        check(
            t > 0.0 && t.is_finite(),
            "kl.target",
            "positive and finite",
            t,
        )?;
        check(self.horizon > 0, "kl.horizon", "positive", self.horizon)
    }
}

impl PpoConfig {
    /// Rows per minibatch for a batch of `rows` responses (the last minibatch may be short).
    pub fn minibatch_size(&self, rows: usize) -> usize {
        rows.div_ceil(self.minibatches.max(1)).max(1)
    }

    /// Optimizer steps of one update on `rows` responses: `ppo_epochs` times the number of
    /// minibatches (fewer than `minibatches` when the rows do not fill them). PPO-ptx needs
    /// one pretraining batch for each.
    pub fn optimizer_steps(&self, rows: usize) -> usize {
        self.ppo_epochs * rows.div_ceil(self.minibatch_size(rows))
    }

    /// How the policy terms of a minibatch become one loss.
    pub fn reduce(&self) -> super::Reduce {
        match self.loss_aggregation {
            LossAggregation::TokenMean => super::Reduce::TokenMean,
            LossAggregation::SequenceMean => super::Reduce::SequenceMean,
            LossAggregation::Constant => {
                super::Reduce::Constant(self.loss_constant_tokens.unwrap_or(1) as f64)
            }
        }
    }

    /// The ratio's clip range below and above 1.
    pub fn clip(&self) -> (f64, f64) {
        (
            self.clip_range,
            self.clip_range_high.unwrap_or(self.clip_range),
        )
    }

    /// Whether the value model is run and trained (`baseline = "value"`).
    pub fn uses_value_model(&self) -> bool {
        self.baseline == Baseline::Value
    }

    /// Checks every field; the message starts with the field's name.
    pub fn validate(&self) -> Result<(), String> {
        self.kl.validate()?;
        for (name, v) in [("gamma", self.gamma), ("lam", self.lam)] {
            check((0.0..=1.0).contains(&v), name, "in [0, 1]", v)?;
        }
        for (name, v) in [
            ("clip_range", self.clip_range),
            ("clip_range_high", self.clip().1),
            ("clip_range_value", self.clip_range_value),
        ] {
            check(v > 0.0 && !v.is_nan(), name, "positive", v)?;
        }
        match (self.loss_aggregation, self.loss_constant_tokens) {
            (LossAggregation::Constant, None | Some(0)) => {
                return Err(
                    "loss_constant_tokens must be at least 1 with loss_aggregation = \"constant\" \
                     (usually the stage's max_new_tokens)"
                        .into(),
                )
            }
            (LossAggregation::TokenMean | LossAggregation::SequenceMean, Some(_)) => {
                return Err(
                    "loss_constant_tokens is only read with loss_aggregation = \"constant\"".into(),
                )
            }
            _ => {}
        }
        for (name, v) in [
            ("vf_coef", self.vf_coef),
            ("entropy_coef", self.entropy_coef),
            ("ptx_coef", self.ptx_coef),
        ] {
            check(
                v >= 0.0 && v.is_finite(),
                name,
                "non-negative and finite",
                v,
            )?;
        }
        check(
            self.ppo_epochs >= 1,
            "ppo_epochs",
            "at least 1",
            self.ppo_epochs,
        )?;
        check(
            self.minibatches >= 1,
            "minibatches",
            "at least 1",
            self.minibatches,
        )?;
        check(
            self.samples_per_prompt >= 1,
            "samples_per_prompt",
            "at least 1",
            self.samples_per_prompt,
        )?;
        if self.baseline == Baseline::Group && self.samples_per_prompt < 2 {
            return Err(format!(
                "baseline = \"group\" needs samples_per_prompt of at least 2, got {}",
                self.samples_per_prompt
            ));
        }
        let p = self.no_eos_penalty;
        check(p.is_finite(), "no_eos_penalty", "finite", p)?;
        let w = self.max_importance_weight;
        check(
            w >= 1.0 && w.is_finite(),
            "max_importance_weight",
            "finite and at least 1",
            w,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_parse_from_toml() {
        assert_eq!(PpoConfig::default().validate(), Ok(()));
        let parsed: PpoConfig =
            toml::from_str("lam = 0.9\nptx_coef = 27.8\n[kl]\nestimator = \"k3\"\nadaptive = true")
                .unwrap();
        assert_eq!(parsed.lam, 0.9);
        assert_eq!(parsed.ptx_coef, 27.8);
        assert_eq!(parsed.kl.estimator, KlEstimator::K3);
        assert!(parsed.kl.adaptive);
        assert_eq!(parsed.kl.coef, 0.05);
        assert_eq!(parsed.clip_range, 0.2);
        assert_eq!(parsed.on_nan, OnNan::Stop);
        let group: PpoConfig =
            toml::from_str("baseline = \"group\"\nsamples_per_prompt = 4").unwrap();
        assert_eq!(group.baseline, Baseline::Group);
        assert_eq!(group.validate(), Ok(()));
        let alone: PpoConfig = toml::from_str("baseline = \"group\"").unwrap();
        assert!(alone.validate().unwrap_err().starts_with("baseline"));
        let skip: PpoConfig = toml::from_str("on_nan = \"skip\"").unwrap();
        assert_eq!(skip.on_nan, OnNan::Skip);
        let empty: PpoConfig = toml::from_str("").unwrap();
        assert_eq!(empty, PpoConfig::default());
        assert_eq!(empty.clip(), (0.2, 0.2));
        let grpo: PpoConfig = toml::from_str(
            "baseline = \"group\"\nsamples_per_prompt = 4\ngroup_advantage = \"mean_std\"\n\
             loss_aggregation = \"constant\"\nloss_constant_tokens = 128\nclip_range_high = 0.28\n\
             [kl]\nplacement = \"loss\"\nestimator = \"k3\"",
        )
        .unwrap();
        assert_eq!(grpo.validate(), Ok(()));
        assert_eq!(grpo.group_advantage, GroupAdvantage::MeanStd);
        assert_eq!(grpo.loss_aggregation, LossAggregation::Constant);
        assert_eq!(grpo.clip(), (0.2, 0.28));
        assert_eq!(grpo.kl.placement, KlPlacement::Loss);
    }

    #[test]
    fn unknown_fields_and_estimators_are_rejected() {
        assert!(toml::from_str::<PpoConfig>("clip = 0.1").is_err());
        assert!(toml::from_str::<PpoConfig>("[kl]\nbeta = 0.1").is_err());
        assert!(toml::from_str::<PpoConfig>("[kl]\nestimator = \"k2\"").is_err());
        let err = toml::from_str::<PpoConfig>("on_nan = \"ignore\"").unwrap_err();
        assert!(
            err.to_string().contains("expected `stop` or `skip`"),
            "{err}"
        );
    }

    #[test]
    fn validation_names_the_field() {
        type Edit = fn(&mut PpoConfig);
        let cases: [(Edit, &str); 18] = [
            (|c| c.clip_range_high = Some(0.0), "clip_range_high"),
            (
                |c| c.loss_aggregation = LossAggregation::Constant,
                "loss_constant_tokens must be at least 1",
            ),
            (
                |c| c.loss_constant_tokens = Some(128),
                "loss_constant_tokens is only read",
            ),
            (|c| c.kl.coef = -0.1, "kl.coef"),
            (|c| c.kl.target = 0.0, "kl.target"),
            (|c| c.kl.horizon = 0, "kl.horizon"),
            (|c| c.gamma = 1.5, "gamma"),
            (|c| c.lam = -0.1, "lam"),
            (|c| c.clip_range = 0.0, "clip_range"),
            (|c| c.clip_range_value = f64::NAN, "clip_range_value"),
            (|c| c.vf_coef = -1.0, "vf_coef"),
            (|c| c.entropy_coef = f64::INFINITY, "entropy_coef"),
            (|c| c.ptx_coef = -1.0, "ptx_coef"),
            (|c| c.ppo_epochs = 0, "ppo_epochs"),
            (|c| c.minibatches = 0, "minibatches"),
            (|c| c.no_eos_penalty = f64::NAN, "no_eos_penalty"),
            (|c| c.samples_per_prompt = 0, "samples_per_prompt"),
            (|c| c.max_importance_weight = 0.5, "max_importance_weight"),
        ];
        for (edit, prefix) in cases {
            let mut config = PpoConfig::default();
            edit(&mut config);
            let err = config.validate().unwrap_err();
            assert!(err.starts_with(prefix), "{prefix}: {err}");
        }
        let negative = PpoConfig {
            clip_range: -0.2,
            ..PpoConfig::default()
        };
        let err = negative.validate().unwrap_err();
        assert_eq!(err, "clip_range must be positive, got -0.2");
    }
}
