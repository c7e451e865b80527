//! The run configuration: one TOML file, every section and field documented here and in
//! configs/default.toml. Unknown keys are errors, so a typo never silently falls back to a
//! default.

use crate::device::DType;
use crate::model::{Architecture, ModelShape};
use crate::optim::OptimizerConfig;
use crate::ppo::PpoConfig;
use crate::sampling::Sampling;
use crate::schedule::ScheduleConfig;
use crate::{Error, Result};

mod reward;

pub use reward::{
    HttpRewardConfig, OnDisconnect, RemoteRewardConfig, RewardConfig, RuleConfig, WeightedReward,
};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// Seeds the world, initialisation and sampling.
    pub seed: u64,
    /// Where runs write their outputs (tokenizer, models, logs).
    pub run_dir: PathBuf,
    #[serde(default)]
    pub world: WorldConfig,
    #[serde(default)]
    pub tokenizer: TokenizerConfig,
    /// The base model `rlhf init` builds (required by `init` only).
    pub model: Option<ModelSection>,
    #[serde(default)]
    pub generate: GenerateSection,
    /// The embedded world's pipeline (required by `rlhf pipeline`).
    pub pipeline: Option<PipelineConfig>,
    /// Pretraining on plain text (required by `rlhf pretrain`): `data` holds the text
    /// (JSONL `{"text"}` or plain text with blank-line-separated documents).
    pub pretrain: Option<StageConfig>,
    /// Stage 1, supervised fine-tuning (required by `rlhf sft`).
    pub sft: Option<StageConfig>,
    /// Stage 2, the reward model (required by `rlhf rm`).
    pub rm: Option<StageConfig>,
    /// Stage 3, PPO and PPO-ptx on the actor system (required by `rlhf ppo`).
    pub ppo: Option<PpoStage>,
    /// The Prometheus endpoint; how a run is watched, not what it computes.
    #[serde(default)]
    pub metrics: MetricsConfig,
}

/// Stage 3: PPO against the reward model with a KL leash to the SFT policy.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PpoStage {
    /// The SFT policy (Hugging Face folder with tokenizer): the initial policy of the
    /// generator and learner, and the frozen reference.
    pub policy: PathBuf,
    /// The reward model: scores responses; the value model starts from it.
    pub reward_model: PathBuf,
    /// PPO prompts, JSONL `{"prompt"}`.
    pub prompts: PathBuf,
    /// Pretraining text for PPO-ptx (JSONL `{"text"}` or plain text); needed when
    /// `algo.ptx_coef > 0`.
    pub pretrain: Option<PathBuf>,
    /// PPO iterations: one rollout batch and one update each.
    pub steps: u64,
    /// Responses per rollout batch: `rollout_batch_size / algo.samples_per_prompt`
    /// prompts, each sampled `algo.samples_per_prompt` times.
    pub rollout_batch_size: usize,
    /// Prompts longer than this (in tokens) are skipped and counted.
    pub max_prompt_len: usize,
    /// Longest response; responses that reach it without EOS get `algo.no_eos_penalty`.
    pub max_new_tokens: i64,
    /// Versions a rollout may lag the learner: 0 is synchronous PPO, 1 overlaps the
    /// generation of batch k+1 with the update on batch k.
    #[serde(default = "one")]
    pub max_staleness: u64,
    /// Pretraining sequences per update (PPO-ptx) and their length in tokens.
    #[serde(default = "ptx_batch")]
    pub ptx_batch_size: usize,
    #[serde(default = "ptx_len")]
    pub ptx_seq_len: usize,
    #[serde(default)]
    pub sampling: Sampling,
    #[serde(default)]
    pub algo: PpoConfig,
    /// AdamW for the policy and the value model.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default)]
    pub actors: Actors,
    /// What scores the rollouts (`[ppo.reward]`); by default the reward model above.
    #[serde(default)]
    pub reward: RewardConfig,
    /// Steps between resumable training-state checkpoints (`<run>/state/`). 0: none
    /// (a signal still checkpoints).
    #[serde(default = "ppo_checkpoint_every")]
    pub checkpoint_every: u64,
    /// How many of the newest training-state checkpoints are kept.
    #[serde(default = "keep_checkpoints")]
    pub keep_checkpoints: usize,
}

fn ppo_checkpoint_every() -> u64 {
    50
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

/// A device and, on CPU, a libtorch intra-op thread budget.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Placement {
    /// `cpu`, `cuda` or `cuda:N`.
    pub device: String,
    pub threads: i32,
}

impl Default for Placement {
    fn default() -> Self {
        Placement {
            device: "cpu".into(),
            threads: 1,
        }
    }
}

fn one() -> u64 {
    1
}

fn ptx_batch() -> usize {
    8
}

fn ptx_len() -> usize {
    128
}

impl PpoStage {
    fn validate(&self) -> std::result::Result<(), String> {
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
            crate::device::parse_device(&p.device)
                .map_err(|e| format!("ppo.actors.{name}.device: {e}"))?;
            if p.threads < 1 {
                return Err(format!("ppo.actors.{name}.threads must be at least 1"));
            }
        }
        self.sampling
            .validate()
            .map_err(|e| format!("ppo.sampling: {e}"))?;
        self.algo.validate().map_err(|e| format!("ppo.algo.{e}"))?;
        self.reward.validate("ppo.reward")?;
        self.optimizer
            .validate()
            .map_err(|e| format!("ppo.optimizer.{e}"))
    }
}

/// A supervised stage (SFT or RM) on the learner.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageConfig {
    /// Model folder to start from (Hugging Face layout, with tokenizer.json). RM starts
    /// from the SFT checkpoint and replaces the unembedding with a scalar head.
    pub init: PathBuf,
    /// Training data (JSONL, formats in src/data/mod.rs).
    pub data: PathBuf,
    /// Held-out data; when absent, `holdout_fraction` of `data` is held out.
    pub validation: Option<PathBuf>,
    #[serde(default = "holdout_fraction")]
    pub holdout_fraction: f64,
    pub epochs: u64,
    /// Examples (SFT) or prompts (RM, with all their K responses) per optimizer step.
    pub batch_size: usize,
    /// Examples or prompts per forward pass; gradients accumulate over
    /// batch_size / micro_batch_size passes. Defaults to batch_size.
    pub micro_batch_size: Option<usize>,
    /// Longest prompt + response + EOS in tokens; longer examples are skipped and counted.
    pub max_seq_len: usize,
    /// Dropout while training (embeddings, attention, residuals); defaults to the model's.
    pub dropout: Option<f64>,
    /// SFT only: also train on prompt tokens (default: response tokens only).
    #[serde(default)]
    pub loss_on_prompt: bool,
    /// RM only: demonstrations (SFT JSONL) whose mean score is set to 0 after training,
    /// as InstructGPT does. Defaults to the `[sft]` data when that section exists.
    pub demonstrations: Option<PathBuf>,
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    #[serde(default)]
    pub schedule: ScheduleConfig,
    #[serde(default)]
    pub dtype: DType,
    #[serde(default = "cpu")]
    pub device: String,
    /// libtorch intra-op threads of the learner.
    #[serde(default = "two")]
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
    0.1
}

fn checkpoint_every() -> u64 {
    100
}

fn keep_checkpoints() -> usize {
    2
}

fn two() -> i32 {
    2
}

impl StageConfig {
    fn validate(&self, stage: &str) -> std::result::Result<(), String> {
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
            _ => {}
        }
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

/// The embedded synthetic world.
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
    #[serde(default = "holdout_fraction")]
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
    #[serde(default = "one_temperature")]
    pub label_temperatures: Vec<f64>,
    /// PPO-ptx's gamma: the pretraining-loss weight of the second PPO run (> 0).
    pub ptx_coef: f64,
    /// Also run PPO against the gold labeler itself: the ceiling that shows how much of the
    /// true preference the learned reward model lets PPO reach.
    #[serde(default = "yes")]
    pub gold_reference: bool,
    /// Held-out prose documents (after the corpus) for the alignment-tax perplexity.
    #[serde(default = "heldout_documents")]
    pub heldout_documents: usize,
    /// Sampling of every model's evaluation responses.
    #[serde(default)]
    pub eval_sampling: Sampling,
    /// Bootstrap resamples behind every 95% interval.
    #[serde(default = "resamples")]
    pub bootstrap_resamples: usize,
}

fn yes() -> bool {
    true
}

fn one_temperature() -> Vec<f64> {
    vec![1.0]
}

fn heldout_documents() -> usize {
    200
}

fn resamples() -> usize {
    2000
}

impl PipelineConfig {
    fn validate(&self) -> std::result::Result<(), String> {
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
        self.eval_sampling
            .validate()
            .map_err(|e| format!("pipeline.eval_sampling: {e}"))
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Number of prose documents in the pretraining corpus.
    pub documents: usize,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig { documents: 4000 }
    }
}

/// Where the Prometheus `/metrics` endpoint listens while a stage runs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsConfig {
    /// `HOST:PORT` (loopback by default; `0.0.0.0:PORT` listens on every interface), or
    /// `off`.
    pub listen: String,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            listen: "127.0.0.1:9464".into(),
        }
    }
}

/// The byte-level BPE tokenizer trained for the embedded world.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Vocabulary size including the 256 byte tokens and the special tokens.
    pub vocab_size: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        TokenizerConfig { vocab_size: 1024 }
    }
}

/// Shape, precision and placement of a model built from scratch.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSection {
    /// `gpt2` or `llama`.
    pub arch: ArchName,
    pub layers: i64,
    pub d_model: i64,
    pub heads: i64,
    /// Key/value heads for grouped-query attention (llama only); defaults to `heads`.
    pub kv_heads: Option<i64>,
    /// Longest sequence (prompt + response) the model handles.
    pub max_positions: i64,
    #[serde(default)]
    pub dtype: DType,
    /// `cpu`, `cuda` or `cuda:N`.
    #[serde(default = "cpu")]
    pub device: String,
}

fn cpu() -> String {
    "cpu".into()
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchName {
    Gpt2,
    Llama,
}

/// Sampling settings for `rlhf generate` and the demo at the end of the main job.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSection {
    pub max_new_tokens: i64,
    pub sampling: Sampling,
    /// Prompts the main job completes after building the model.
    pub prompts: Vec<String>,
}

impl Default for GenerateSection {
    fn default() -> Self {
        GenerateSection {
            max_new_tokens: 64,
            sampling: Sampling::default(),
            prompts: vec![],
        }
    }
}

impl RunConfig {
    pub fn load(path: &Path) -> Result<RunConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        RunConfig::parse(&text, path)
    }

    /// Parse and validate; `path` names the file in errors.
    pub fn parse(text: &str, path: &Path) -> Result<RunConfig> {
        let config: RunConfig = toml::from_str(text).map_err(|e| {
            let line = e
                .span()
                .map(|s| format!("line {}: ", text[..s.start].matches('\n').count() + 1))
                .unwrap_or_default();
            Error::format(path, format!("{line}{}", e.message()))
        })?;
        config
            .validate()
            .map_err(|what| Error::format(path, what))?;
        Ok(config)
    }

    fn validate(&self) -> std::result::Result<(), String> {
        if let Some(pipeline) = &self.pipeline {
            pipeline.validate()?;
        }
        if let Some(pretrain) = &self.pretrain {
            pretrain.validate("pretrain")?;
        }
        if let Some(sft) = &self.sft {
            sft.validate("sft")?;
        }
        if let Some(rm) = &self.rm {
            rm.validate("rm")?;
        }
        if let Some(ppo) = &self.ppo {
            ppo.validate()?;
        }
        if self.tokenizer.vocab_size < 300 {
            return Err(format!(
                "tokenizer.vocab_size must be at least 300, got {}",
                self.tokenizer.vocab_size
            ));
        }
        if self.generate.max_new_tokens <= 0 {
            return Err("generate.max_new_tokens must be positive".into());
        }
        self.generate
            .sampling
            .validate()
            .map_err(|e| format!("generate: {e}"))?;
        match &self.model {
            Some(model) => model.validate(),
            None => Ok(()),
        }
    }

    /// A configuration holding only a `[ppo]` section (benchmarks and tests that build
    /// the stage in code).
    pub fn for_ppo(run_dir: PathBuf, seed: u64, ppo: PpoStage) -> RunConfig {
        RunConfig {
            seed,
            run_dir,
            world: WorldConfig::default(),
            tokenizer: TokenizerConfig::default(),
            model: None,
            generate: GenerateSection::default(),
            pipeline: None,
            pretrain: None,
            sft: None,
            rm: None,
            ppo: Some(ppo),
            metrics: MetricsConfig::default(),
        }
    }

    /// The section a command needs, or an error naming it.
    pub fn section<'a, T>(section: &'a Option<T>, name: &str, path: &Path) -> Result<&'a T> {
        section
            .as_ref()
            .ok_or_else(|| Error::format(path, format!("missing section [{name}]")))
    }
}

impl ModelSection {
    fn validate(&self) -> std::result::Result<(), String> {
        let m = self;
        for (name, value) in [
            ("model.layers", m.layers),
            ("model.d_model", m.d_model),
            ("model.heads", m.heads),
            ("model.max_positions", m.max_positions),
        ] {
            if value <= 0 {
                return Err(format!("{name} must be positive, got {value}"));
            }
        }
        if m.d_model % m.heads != 0 {
            return Err(format!(
                "model.d_model {} is not divisible by model.heads {}",
                m.d_model, m.heads
            ));
        }
        let kv = m.kv_heads.unwrap_or(m.heads);
        if kv <= 0 || m.heads % kv != 0 {
            return Err(format!(
                "model.kv_heads {kv} must divide model.heads {}",
                m.heads
            ));
        }
        if m.arch == ArchName::Gpt2 && kv != m.heads {
            return Err("model.kv_heads: gpt2 has no grouped-query attention".into());
        }
        crate::device::parse_device(&m.device).map_err(|e| format!("model.device: {e}"))?;
        Ok(())
    }

    /// The model shape for a vocabulary of `vocab_size` with `eos` as end token.
    pub fn shape(&self, vocab_size: i64, eos: i64) -> ModelShape {
        let m = self;
        ModelShape {
            arch: match m.arch {
                ArchName::Gpt2 => Architecture::Gpt2,
                ArchName::Llama => Architecture::Llama,
            },
            vocab_size,
            hidden_size: m.d_model,
            num_layers: m.layers,
            num_heads: m.heads,
            num_kv_heads: m.kv_heads.unwrap_or(m.heads),
            max_positions: m.max_positions,
            eos_token_id: eos,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "seed = 1\nrun_dir = \"runs/x\"\n[model]\narch = \"gpt2\"\nlayers = 2\nd_model = 32\nheads = 4\nmax_positions = 64\n";

    #[test]
    fn the_shipped_default_parses() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/default.toml");
        RunConfig::load(&path).unwrap();
    }

    #[test]
    fn unknown_key_is_named_with_its_line() {
        let text = MINIMAL.replace("heads = 4", "heads = 4\nhaeds = 4");
        let err = RunConfig::parse(&text, Path::new("my.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("my.toml: line 8: unknown field `haeds`"),
            "{err}"
        );
    }

    #[test]
    fn invalid_values_name_the_field() {
        let text = MINIMAL.replace("heads = 4", "heads = 5");
        let err = RunConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("model.d_model 32 is not divisible by model.heads 5"),
            "{err}"
        );
        let text = format!("{MINIMAL}[generate.sampling]\ntemperature = -1.0\n");
        let err = RunConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("generate: temperature"), "{err}");
        let text = format!("{MINIMAL}device = \"gpu\"\n");
        let err = RunConfig::parse(&text, Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("model.device: unknown device `gpu`"), "{err}");
        let ppo = "[ppo]\npolicy = \"p\"\nreward_model = \"r\"\nprompts = \"q\"\nsteps = 2\n\
                   rollout_batch_size = 6\nmax_prompt_len = 8\nmax_new_tokens = 4\n\
                   [ppo.algo]\nsamples_per_prompt = 4\n";
        let err = RunConfig::parse(&format!("{MINIMAL}{ppo}"), Path::new("c.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(
                "ppo.rollout_batch_size (6) must be a multiple of ppo.algo.samples_per_prompt (4)"
            ),
            "{err}"
        );
        let fits = ppo.replace("rollout_batch_size = 6", "rollout_batch_size = 8");
        RunConfig::parse(&format!("{MINIMAL}{fits}"), Path::new("c.toml")).unwrap();
    }
}
