//! `[ppo]`: stage 3, PPO and PPO-ptx on the actor system, and where each actor runs.

use super::cluster::ClusterConfig;
use super::data::{DataKeys, Truncate};
use super::defaults::{default_device, DEFAULT_KEEP_CHECKPOINTS};
use super::reward::RewardConfig;
use crate::device::DType;
use crate::model::lora::LoraConfig;
use crate::optim::OptimizerConfig;
use crate::ppo::PpoConfig;
use crate::sampling::Sampling;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default `ppo.max_staleness`: the one-step off-policy setting (generation of batch k+1
/// overlaps the update on batch k), which Noukhovitch et al. 2024 show keeps quality.
const DEFAULT_MAX_STALENESS: u64 = 1;
/// Default `ppo.ptx_batch_size`: pretraining sequences per update (PPO-ptx).
const DEFAULT_PTX_BATCH_SIZE: usize = 8;
/// Default `ppo.ptx_seq_len`: length in tokens of each pretraining sequence.
const DEFAULT_PTX_SEQ_LEN: usize = 128;
/// Default `ppo.checkpoint_every`: PPO steps between resumable training-state checkpoints.
const DEFAULT_CHECKPOINT_EVERY: u64 = 50;
/// Default `ppo.actors.*.threads`: one libtorch intra-op thread per actor, so four actors
/// on one CPU machine do not oversubscribe it.
const DEFAULT_ACTOR_THREADS: i32 = 1;

/// Stage 3: PPO against the reward model with a KL leash to the SFT policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoStage {
    /// The SFT policy (Hugging Face folder with tokenizer): the initial policy of the
    /// generator and learner, and the frozen reference.
    pub policy: PathBuf,
    /// The reward model: scores responses; the value model starts from it.
    pub reward_model: PathBuf,
    /// PPO prompts: JSONL `{"prompt"}` (a string or a list of messages) or `{"messages"}`.
    pub prompts: PathBuf,
    /// Field names of `prompts` (and `pretrain`) records when they differ from rlhf's.
    #[serde(default)]
    pub keys: DataKeys,
    /// Pretraining text for PPO-ptx (JSONL `{"text"}` or plain text); needed when
    /// `algo.ptx_coef > 0`.
    pub pretrain: Option<PathBuf>,
    /// PPO iterations: one rollout batch and one update each.
    pub steps: u64,
    /// Responses per rollout batch: `rollout_batch_size / algo.samples_per_prompt`
    /// prompts, each sampled `algo.samples_per_prompt` times.
    pub rollout_batch_size: usize,
    /// Prompts longer than this (in tokens) are skipped, or cut as `truncate` says, and
    /// counted.
    pub max_prompt_len: usize,
    /// Over-long prompts: `skip` (default) or `left` (cut the start, keeping the BOS and
    /// the generation prompt at the end).
    #[serde(default)]
    pub truncate: Truncate,
    /// Longest response; responses that reach it without EOS get `algo.no_eos_penalty`.
    pub max_new_tokens: i64,
    /// Versions a rollout may lag the learner: 0 is synchronous PPO, 1 overlaps the
    /// generation of batch k+1 with the update on batch k.
    #[serde(default = "max_staleness")]
    pub max_staleness: u64,
    /// Pretraining sequences per optimizer step (PPO-ptx: a fresh batch for each of the
    /// update's `ppo_epochs x minibatches` steps) and their length in tokens.
    #[serde(default = "ptx_batch_size")]
    pub ptx_batch_size: usize,
    #[serde(default = "ptx_seq_len")]
    pub ptx_seq_len: usize,
    /// The generator's sampling; only the temperature may differ from plain sampling
    /// (greedy, top-k and top-p are refused: see [`Sampling::check_untruncated`]).
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub algo: PpoConfig,
    /// AdamW for the policy and the value model.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub dtype: DType,
    /// Low-rank adapters on the policy and the value model instead of full fine-tuning
    /// (`[ppo.lora]`, fields in [`LoraConfig`]). The reference policy is then the policy
    /// with its adapters switched off, and weight syncs send the adapters alone.
    pub lora: Option<LoraConfig>,
    /// Recompute each block in the learner's backward pass instead of keeping its
    /// activations (see `[sft] gradient_checkpointing`).
    #[serde(default)]
    pub gradient_checkpointing: bool,
    #[serde(default)]
    pub actors: Actors,
    /// Parts each rollout batch is split into, the unit of work a generator, reference or
    /// reward replica takes (contiguous, sizes differing by at most one episode). Results
    /// depend on the chunks, not on how many replicas share them: keep it fixed to compare
    /// layouts. Default: the most replicas of any kind.
    #[serde(default)]
    pub rollout_chunks: Option<usize>,
    /// What scores the rollouts (`[ppo.reward]`); by default the reward model above.
    #[serde(default)]
    pub reward: RewardConfig,
    /// Where generator and reference nodes join (`[ppo.cluster]`), when any
    /// `[ppo.actors.<kind>] nodes` is set.
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Steps between resumable training-state checkpoints (`<run>/state/`). 0: none
    /// (a signal still checkpoints).
    #[serde(default = "checkpoint_every")]
    pub checkpoint_every: u64,
    /// How many of the newest training-state checkpoints are kept.
    #[serde(default = "keep_checkpoints")]
    pub keep_checkpoints: usize,
}

fn max_staleness() -> u64 {
    DEFAULT_MAX_STALENESS
}

fn ptx_batch_size() -> usize {
    DEFAULT_PTX_BATCH_SIZE
}

fn ptx_seq_len() -> usize {
    DEFAULT_PTX_SEQ_LEN
}

fn checkpoint_every() -> u64 {
    DEFAULT_CHECKPOINT_EVERY
}

fn keep_checkpoints() -> usize {
    DEFAULT_KEEP_CHECKPOINTS
}

/// Where each PPO actor runs.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Actors {
    pub generator: Placement,
    pub reference: Placement,
    pub reward: Placement,
    pub learner: Placement,
}

/// A device and, on CPU, a libtorch intra-op thread budget, for each of an actor's
/// replicas.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Placement {
    /// `cpu`, `cuda` or `cuda:N`: every replica's device, unless `devices` names one each.
    pub device: String,
    pub threads: i32,
    /// Copies of the actor in this process sharing its work (generator, reference and
    /// reward; the learner has one). May be 0 for a generator or reference with `nodes`.
    pub replicas: usize,
    /// Further replicas on other processes (`rlhf node --role generator|reference`, joining
    /// at `[ppo.cluster] listen`): the trainer waits for this many before the first batch.
    /// Generator and reference only.
    pub nodes: usize,
    /// One device per replica (as many as `replicas`), e.g. `["cuda:0", "cuda:1"]`.
    pub devices: Vec<String>,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            device: default_device(),
            threads: DEFAULT_ACTOR_THREADS,
            replicas: 1,
            nodes: 0,
            devices: Vec::new(),
        }
    }
}

impl Placement {
    /// One placement on `device` with `threads` threads.
    pub fn single(device: &str, threads: i32) -> Placement {
        Placement {
            device: device.into(),
            threads,
            ..Placement::default()
        }
    }

    /// Local replicas and nodes together.
    pub fn total(&self) -> usize {
        self.replicas + self.nodes
    }

    /// The device of replica `i`.
    pub fn device_of(&self, i: usize) -> &str {
        self.devices.get(i).unwrap_or(&self.device)
    }

    fn validate(&self, name: &str) -> std::result::Result<(), String> {
        let key = format!("ppo.actors.{name}");
        if self.nodes > 0 && !matches!(name, "generator" | "reference") {
            let hint = match name {
                "reward" => "; a remote reward is [ppo.reward] kind = \"remote\"",
                _ => "",
            };
            return Err(format!(
                "{key}.nodes: only the generator and the reference run on nodes{hint}"
            ));
        }
        if self.total() < 1 {
            return Err(format!("{key}.replicas must be at least 1 (or nodes)"));
        }
        if name == "learner" && self.replicas != 1 {
            return Err(format!("{key}.replicas: the learner has one replica"));
        }
        if !self.devices.is_empty() && self.devices.len() != self.replicas {
            return Err(format!(
                "{key}.devices names {} devices for {} replicas",
                self.devices.len(),
                self.replicas
            ));
        }
        for (i, device) in std::iter::once(&self.device)
            .chain(&self.devices)
            .enumerate()
        {
            let field = match i {
                0 => "device".to_string(),
                i => format!("devices[{}]", i - 1),
            };
            crate::device::parse_device(device).map_err(|e| format!("{key}.{field}: {e}"))?;
        }
        if self.threads < 1 {
            return Err(format!("{key}.threads must be at least 1"));
        }
        Ok(())
    }
}

impl Actors {
    /// The rollout chunks of a stage whose `rollout_chunks` is `chunks`: by default the
    /// most replicas of any kind.
    pub fn chunks(&self, chunks: Option<usize>) -> usize {
        chunks.unwrap_or_else(|| {
            [&self.generator, &self.reference, &self.reward]
                .iter()
                .map(|p| p.total())
                .max()
                .unwrap_or(1)
        })
    }
}

impl PpoStage {
    /// Whether any generator or reference replica runs on a node.
    pub fn has_nodes(&self) -> bool {
        self.actors.generator.nodes + self.actors.reference.nodes > 0
    }

    /// Every key's constraint, as `ppo.KEY: what is wrong`.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (name, value) in [
            ("ppo.steps", self.steps as usize),
            ("ppo.rollout_batch_size", self.rollout_batch_size),
            ("ppo.max_prompt_len", self.max_prompt_len),
            ("ppo.max_new_tokens", self.max_new_tokens.max(0) as usize),
            ("ppo.ptx_batch_size", self.ptx_batch_size),
            ("ppo.ptx_seq_len", self.ptx_seq_len),
        ] {
            if value == 0 {
                return Err(format!("{name} must be positive"));
            }
        }
        let n = self.algo.samples_per_prompt;
        if n > 0 && !self.rollout_batch_size.is_multiple_of(n) {
            return Err(format!(
                "ppo.rollout_batch_size ({}) must be a multiple of ppo.algo.samples_per_prompt ({n})",
                self.rollout_batch_size
            ));
        }
        if self.truncate == Truncate::Right {
            return Err(
                "ppo.truncate: \"right\" would cut the generation prompt off a prompt; \
                        use \"left\" or \"skip\""
                    .into(),
            );
        }
        self.keys.validate("ppo")?;
        if self.algo.ptx_coef > 0.0 && self.pretrain.is_none() {
            return Err("ppo.pretrain: needed when ppo.algo.ptx_coef > 0".into());
        }
        let a = &self.actors;
        for (name, p) in [
            ("generator", &a.generator),
            ("reference", &a.reference),
            ("reward", &a.reward),
            ("learner", &a.learner),
        ] {
            p.validate(name)?;
        }
        if self.reward.has_remote() && a.reward.replicas > 1 {
            return Err(format!(
                "ppo.actors.reward.replicas ({}): a remote reward is one node per trainer process; use 1",
                a.reward.replicas
            ));
        }
        let chunks = a.chunks(self.rollout_chunks);
        if chunks < 1 || chunks > self.rollout_batch_size {
            return Err(format!(
                "ppo.rollout_chunks must be between 1 and rollout_batch_size ({}), not {chunks}",
                self.rollout_batch_size
            ));
        }
        for (name, p) in [
            ("generator", &a.generator),
            ("reference", &a.reference),
            ("reward", &a.reward),
        ] {
            if p.total() > chunks {
                return Err(format!(
                    "ppo.rollout_chunks ({chunks}) is below ppo.actors.{name}.replicas + nodes ({}): a replica would have no work",
                    p.total()
                ));
            }
        }
        if self.has_nodes() {
            if self.reward.has_remote() {
                return Err(
                    "ppo.actors: generator or reference nodes with a remote reward: the trainer \
                     listens once per process; serve the reward in-process or run the policy actors locally"
                        .into(),
                );
            }
            self.cluster.validate()?;
        }
        self.sampling
            .validate()
            .map_err(|e| format!("ppo.sampling: {e}"))?;
        self.sampling
            .check_untruncated()
            .map_err(|e| format!("ppo.sampling.{e}"))?;
        self.algo.validate().map_err(|e| format!("ppo.algo.{e}"))?;
        if let Some(lora) = &self.lora {
            lora.validate().map_err(|e| format!("ppo.lora.{e}"))?;
            if self.has_nodes() {
                return Err("ppo.lora: generator and reference nodes load full models; \
                            run them in-process with LoRA"
                    .into());
            }
        }
        self.reward.validate("ppo.reward")?;
        self.optimizer
            .validate()
            .map_err(|e| format!("ppo.optimizer.{e}"))
    }
}
