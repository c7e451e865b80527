//! `[pipeline]`: `rlhf pipeline` on the embedded world.

use super::ppo::PpoStage;
use crate::ppo::{Baseline, GroupAdvantage, KlEstimator, KlPlacement, LossAggregation};
use crate::sampling::Sampling;
use serde::{Deserialize, Serialize};

/// Default `rm_heldout_fraction`: the share of RM prompts held out to measure the reward
/// model's accuracy.
const DEFAULT_RM_HELDOUT_FRACTION: f64 = 0.1;
/// Default `label_temperatures`: every ranked response sampled at temperature 1.
const DEFAULT_LABEL_TEMPERATURE: f64 = 1.0;
/// Default `gold_reference`: run the gold-labeler PPO ceiling too.
const DEFAULT_GOLD_REFERENCE: bool = true;
/// Default `heldout_documents`: prose documents held out for the alignment-tax perplexity.
const DEFAULT_HELDOUT_DOCUMENTS: usize = 200;
/// Default `bootstrap_resamples`: resamples behind every 95% interval.
const DEFAULT_BOOTSTRAP_RESAMPLES: usize = 2000;

/// `rlhf pipeline` on the embedded world: prompt pools, the gold labeler that stands in
/// for the human, the PPO variants and the evaluation. The stage sections hold the
/// training hyper-parameters; their paths must be the pipeline's layout under `run_dir`.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Prompts with demonstrations for SFT.
    pub sft_prompts: usize,
    /// Prompts whose sampled responses the labeler ranks for the reward model.
    pub rm_prompts: usize,
    /// Share of the RM prompts held out (ranked by the noiseless labeler) to measure the
    /// reward model's accuracy.
    #[serde(default = "rm_heldout_fraction")]
    pub rm_heldout_fraction: f64,
    /// Prompts PPO samples from.
    pub ppo_prompts: usize,
    /// Test prompts, from the same distribution as the PPO prompts, never ranked.
    pub test_prompts: usize,
    /// Responses K sampled from the SFT model per RM prompt and ranked (2..=9).
    pub responses_per_prompt: usize,
    /// How often the labeler disagrees with the gold order, in [0, 1] (the noise of its
    /// rankings; 0 ranks exactly by the gold score).
    pub disagreement: f64,
    /// Temperatures of the K sampled responses the labeler ranks, cycled (response j is
    /// sampled at `label_temperatures[j % len]`): a spread of temperatures gives the
    /// labeler responses of visibly different quality, as comparisons between several
    /// policies gave InstructGPT's labelers.
    #[serde(default = "label_temperatures")]
    pub label_temperatures: Vec<f64>,
    /// PPO-ptx's gamma: the pretraining-loss weight of the second PPO run (> 0).
    pub ptx_coef: f64,
    /// Also run PPO against the gold labeler itself: the ceiling that shows how much of the
    /// true preference the learned reward model lets PPO reach.
    #[serde(default = "gold_reference")]
    pub gold_reference: bool,
    /// Held-out prose documents (after the corpus) for the alignment-tax perplexity.
    #[serde(default = "heldout_documents")]
    pub heldout_documents: usize,
    /// Sampling of every model's evaluation responses.
    #[serde(default)]
    pub eval_sampling: Sampling,
    /// Bootstrap resamples behind every 95% interval.
    #[serde(default = "bootstrap_resamples")]
    pub bootstrap_resamples: usize,
    /// `[pipeline.grpo]`: also run GRPO against the learned reward model (the `grpo`
    /// stage), beside PPO; absent: not run. DPO runs when the config has a `[dpo]` section.
    pub grpo: Option<GrpoVariant>,
}

/// Default `[pipeline.grpo] samples_per_prompt`: GRPO's group of samples per prompt.
const DEFAULT_GRPO_SAMPLES: usize = 4;
/// Default `[pipeline.grpo] kl_coef`: the GRPO paper's beta on its k3 KL loss term.
const DEFAULT_GRPO_KL_COEF: f64 = 0.04;

/// The pipeline's GRPO run: `[ppo]` with GRPO's recipe in `[ppo.algo]` (`baseline =
/// "group"`, `group_advantage = "mean_std"`, the KL as a k3 loss term, `loss_aggregation =
/// "sequence_mean"`, no pretraining mix), the same episodes per step.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoVariant {
    /// Samples per prompt in a rollout batch (`rollout_batch_size` / this prompts).
    #[serde(default = "grpo_samples")]
    pub samples_per_prompt: usize,
    /// The KL loss term's coefficient.
    #[serde(default = "grpo_kl_coef")]
    pub kl_coef: f64,
}

impl GrpoVariant {
    /// `stage` with GRPO's recipe.
    pub fn apply(&self, mut stage: PpoStage) -> PpoStage {
        let algo = &mut stage.algo;
        algo.baseline = Baseline::Group;
        algo.samples_per_prompt = self.samples_per_prompt;
        algo.group_advantage = GroupAdvantage::MeanStd;
        algo.loss_aggregation = LossAggregation::SequenceMean;
        algo.ptx_coef = 0.0;
        algo.kl.placement = KlPlacement::Loss;
        algo.kl.estimator = KlEstimator::K3;
        algo.kl.coef = self.kl_coef;
        algo.kl.adaptive = false;
        stage
    }
}

fn grpo_samples() -> usize {
    DEFAULT_GRPO_SAMPLES
}

fn grpo_kl_coef() -> f64 {
    DEFAULT_GRPO_KL_COEF
}

fn rm_heldout_fraction() -> f64 {
    DEFAULT_RM_HELDOUT_FRACTION
}

fn label_temperatures() -> Vec<f64> {
    vec![DEFAULT_LABEL_TEMPERATURE]
}

fn gold_reference() -> bool {
    DEFAULT_GOLD_REFERENCE
}

fn heldout_documents() -> usize {
    DEFAULT_HELDOUT_DOCUMENTS
}

fn bootstrap_resamples() -> usize {
    DEFAULT_BOOTSTRAP_RESAMPLES
}

impl PipelineConfig {
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("sft_prompts", self.sft_prompts),
            ("rm_prompts", self.rm_prompts),
            ("ppo_prompts", self.ppo_prompts),
            ("test_prompts", self.test_prompts),
            ("heldout_documents", self.heldout_documents),
            ("bootstrap_resamples", self.bootstrap_resamples),
        ] {
            if value == 0 {
                return Err(format!("pipeline.{name} must be positive"));
            }
        }
        if !(2..=9).contains(&self.responses_per_prompt) {
            return Err(format!(
                "pipeline.responses_per_prompt must be in 2..=9, got {}",
                self.responses_per_prompt
            ));
        }
        if !(0.0..=1.0).contains(&self.disagreement) {
            return Err(format!(
                "pipeline.disagreement must be in [0, 1], got {}",
                self.disagreement
            ));
        }
        if !(0.0..1.0).contains(&self.rm_heldout_fraction) {
            return Err(format!(
                "pipeline.rm_heldout_fraction must be in [0, 1), got {}",
                self.rm_heldout_fraction
            ));
        }
        if !(self.ptx_coef > 0.0 && self.ptx_coef.is_finite()) {
            return Err(format!(
                "pipeline.ptx_coef must be positive, got {}",
                self.ptx_coef
            ));
        }
        if self.label_temperatures.is_empty()
            || self
                .label_temperatures
                .iter()
                .any(|t| !(t.is_finite() && *t > 0.0))
        {
            return Err(format!(
                "pipeline.label_temperatures must be positive and non-empty, got {:?}",
                self.label_temperatures
            ));
        }
        if let Some(grpo) = &self.grpo {
            if grpo.samples_per_prompt < 2 {
                return Err(format!(
                    "pipeline.grpo.samples_per_prompt must be at least 2, got {}",
                    grpo.samples_per_prompt
                ));
            }
            if !(grpo.kl_coef >= 0.0 && grpo.kl_coef.is_finite()) {
                return Err(format!(
                    "pipeline.grpo.kl_coef must be non-negative, got {}",
                    grpo.kl_coef
                ));
            }
        }
        self.eval_sampling
            .validate()
            .map_err(|e| format!("pipeline.eval_sampling: {e}"))
    }
}
