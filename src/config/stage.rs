//! `[pretrain]`, `[sft]`, `[rm]`, `[dpo]`: the supervised stages the learner runs.

use super::data::{AssistantTurns, DataKeys, Truncate};
use super::defaults::{default_device, DEFAULT_KEEP_CHECKPOINTS};
use crate::device::DType;
use crate::dpo::DpoObjective;
use crate::model::lora::LoraConfig;
use crate::optim::OptimizerConfig;
use crate::schedule::ScheduleConfig;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default `holdout_fraction`: the share of `data` held out when no `validation` file is
/// given.
const DEFAULT_HOLDOUT_FRACTION: f64 = 0.1;
/// Default `threads`: libtorch intra-op threads of the learner.
const DEFAULT_THREADS: i32 = 2;
/// Default `checkpoint_every`: optimizer steps between training-state checkpoints.
const DEFAULT_CHECKPOINT_EVERY: u64 = 100;

/// A supervised stage (pretraining, SFT, RM or DPO) on the learner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Model folder to start from (Hugging Face layout, with tokenizer.json). RM starts
    /// from the SFT checkpoint and replaces the unembedding with a scalar head; DPO starts
    /// from the SFT checkpoint, which is also its reference policy.
    pub init: PathBuf,
    /// Training data (JSONL, formats in src/data/mod.rs).
    pub data: PathBuf,
    /// Held-out data; when absent, `holdout_fraction` of `data` is held out.
    pub validation: Option<PathBuf>,
    #[serde(default = "holdout_fraction")]
    pub holdout_fraction: f64,
    pub epochs: u64,
    /// Examples (SFT) or prompts (RM and DPO, with all their K responses) per optimizer
    /// step.
    pub batch_size: usize,
    /// Examples or prompts per forward pass; gradients accumulate over
    /// batch_size / micro_batch_size passes. Defaults to batch_size.
    pub micro_batch_size: Option<usize>,
    /// Longest prompt + response + EOS in tokens; longer examples are skipped, or cut as
    /// `truncate` says, and counted.
    pub max_seq_len: usize,
    /// Over-long examples: `skip` (default), `left` (cut the prompt's start) or `right`
    /// (cut the response's end). Not for `[pretrain]`, whose text is cut into chunks.
    #[serde(default)]
    pub truncate: Truncate,
    /// Field names of `data`/`validation` records when they differ from rlhf's.
    #[serde(default)]
    pub keys: DataKeys,
    /// SFT only: the assistant turns of a `messages` conversation that are trained, `all`
    /// (default) or `last`.
    #[serde(default)]
    pub assistant_turns: AssistantTurns,
    /// Dropout while training (embeddings, attention, residuals); defaults to the model's,
    /// and to 0 for DPO (whose reference log-probs are computed without dropout).
    pub dropout: Option<f64>,
    /// Low-rank adapters instead of full fine-tuning (`[<stage>.lora]`, fields in
    /// [`LoraConfig`]): the base weights are frozen, only adapters and a scalar head train.
    pub lora: Option<LoraConfig>,
    /// Keep only each block's input in the forward pass and recompute the block in the
    /// backward pass: far less activation memory for about one more forward pass.
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// SFT only: also train on prompt tokens (default: response tokens only).
    #[serde(default)]
    pub loss_on_prompt: bool,
    /// RM only: demonstrations (SFT JSONL) whose mean score is set to 0 after training,
    /// as InstructGPT does. Defaults to the `[sft]` data when that section exists.
    pub demonstrations: Option<PathBuf>,
    /// DPO only: the preference loss (`[dpo.objective]`; defaults in [`DpoObjective`]).
    pub objective: Option<DpoObjective>,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "default_device")]
    pub device: String,
    /// libtorch intra-op threads of the learner.
    #[serde(default = "threads")]
    pub threads: i32,
    /// Steps between resumable training-state checkpoints (`<stage>/state/`); the end of
    /// every epoch is one too. 0: epoch ends only.
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    /// How many of the newest training-state checkpoints are kept.
    #[serde(default = "keep_checkpoints")]
    pub keep_checkpoints: usize,
    /// A step whose loss or gradient norm is NaN or infinite: `stop` the stage (resume
    /// from the last good checkpoint) or `skip` it (counted) and go on.
    #[serde(default)]
    pub on_nan: OnNan,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnNan {
    #[default]
    Stop,
    Skip,
}

fn holdout_fraction() -> f64 {
    DEFAULT_HOLDOUT_FRACTION
}

fn threads() -> i32 {
    DEFAULT_THREADS
}

fn checkpoint_every() -> u64 {
    DEFAULT_CHECKPOINT_EVERY
}

fn keep_checkpoints() -> usize {
    DEFAULT_KEEP_CHECKPOINTS
}

impl StageConfig {
    pub(super) fn validate(&self, stage: &str) -> std::result::Result<(), String> {
        let field = |name: &str| format!("{stage}.{name}");
        if !(0.0..1.0).contains(&self.holdout_fraction) {
            return Err(format!(
                "{} must be in [0, 1), got {}",
                field("holdout_fraction"),
                self.holdout_fraction
            ));
        }
        for (name, value) in [
            ("epochs", self.epochs as usize),
            ("batch_size", self.batch_size),
            ("max_seq_len", self.max_seq_len),
        ] {
            if value == 0 {
                return Err(format!("{} must be positive", field(name)));
            }
        }
        if let Some(micro) = self.micro_batch_size {
            if micro == 0 || micro > self.batch_size {
                return Err(format!(
                    "{} must be in 1..=batch_size ({}), got {micro}",
                    field("micro_batch_size"),
                    self.batch_size
                ));
            }
        }
        if let Some(p) = self.dropout {
            if !(0.0..1.0).contains(&p) {
                return Err(format!("{} must be in [0, 1), got {p}", field("dropout")));
            }
        }
        if self.threads < 1 {
            return Err(format!("{} must be at least 1", field("threads")));
        }
        match stage {
            "sft" | "pretrain" if self.demonstrations.is_some() => {
                return Err(format!(
                    "{stage}.demonstrations: only the rm stage takes demonstrations"
                ))
            }
            "pretrain" if self.loss_on_prompt => {
                return Err("pretrain.loss_on_prompt: plain text has no prompt".into())
            }
            "rm" if self.loss_on_prompt => {
                return Err("rm.loss_on_prompt: only the sft stage has a prompt loss".into())
            }
            "pretrain" if self.truncate != Truncate::Skip => {
                return Err("pretrain.truncate: plain text is cut into max_seq_len chunks".into())
            }
            "pretrain" if self.keys.remapped().keys().any(|&k| k != "text") => {
                return Err("pretrain.keys: plain text has only the `text` field".into())
            }
            "dpo" if self.loss_on_prompt => {
                return Err("dpo.loss_on_prompt: only the sft stage has a prompt loss".into())
            }
            "sft" | "pretrain" | "rm" if self.objective.is_some() => {
                return Err(format!(
                    "{stage}.objective: only the dpo stage has a preference objective"
                ))
            }
            "dpo" if self.demonstrations.is_some() => {
                return Err("dpo.demonstrations: only the rm stage takes demonstrations".into())
            }
            "pretrain" | "rm" | "dpo" if self.assistant_turns != AssistantTurns::All => {
                return Err(format!(
                    "{stage}.assistant_turns: only the sft stage trains assistant turns"
                ))
            }
            _ => {}
        }
        if let Some(lora) = &self.lora {
            lora.validate()
                .map_err(|e| format!("{}.{e}", field("lora")))?;
        }
        if let Some(objective) = &self.objective {
            objective.validate().map_err(|e| format!("{stage}.{e}"))?;
        }
        self.keys.validate(stage)?;
        crate::device::parse_device(&self.device)
            .map_err(|e| format!("{}: {e}", field("device")))?;
        self.optimizer
            .validate()
            .map_err(|e| format!("{}.{e}", field("optimizer")))?;
        self.schedule
            .validate()
            .map_err(|e| format!("{}.{e}", field("schedule")))
    }

    pub fn micro_batch_size(&self) -> usize {
        self.micro_batch_size.unwrap_or(self.batch_size)
    }
}
