//! The run configuration: one TOML file, every section and field documented here and in
//! configs/default.toml. Unknown keys are errors, so a typo never silently falls back to a
//! default.
//!
//! One file per section: `ppo.rs` (`[ppo]`, its actors' placement), `reward.rs`
//! (`[ppo.reward]`), `cluster.rs` (`[ppo.cluster]`), `stage.rs` (`[pretrain]`, `[sft]`, `[rm]`), `pipeline.rs`
//! (`[pipeline]`), `model.rs` (`[model]`), `data.rs` (the data keys, `truncate`,
//! `assistant_turns` of the stages), `devices.rs` (`[devices]`), `sections.rs` (`[world]`, `[tokenizer]`,
//! `[chat]`, `[generate]`, `[metrics]`); `defaults.rs` holds the defaults several sections share.
//! Everything is re-exported here, as `rlhf::config::*`. Every default is a named constant
//! next to its section.

use crate::{Error, Result};

mod cluster;
mod data;
mod defaults;
mod devices;
mod model;
mod pipeline;
mod ppo;
mod reward;
mod sections;
mod stage;

pub use cluster::ClusterConfig;
pub use data::{AssistantTurns, DataKeys, Truncate};
pub use devices::{canonical_device, parse_size, DevicesConfig};
pub use model::{ArchName, ModelSection};
pub use pipeline::{GrpoVariant, PipelineConfig};
pub use ppo::{Actors, Placement, PpoStage};
pub use reward::{
    HttpRewardConfig, OnDisconnect, RemoteRewardConfig, RewardConfig, RuleConfig, TlsFiles,
    WeightedReward,
};
pub use sections::{
    ChatConfig, GenerateSection, MetricsConfig, TemplateKind, TokenizerConfig, WorldConfig,
};
use serde::{Deserialize, Serialize};
pub use stage::{OnNan, StageConfig};
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
    /// The chat template every stage renders prompts with.
    #[serde(default)]
    pub chat: ChatConfig,
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
    /// DPO on the reward model's rankings, from the SFT policy (required by `rlhf dpo`).
    pub dpo: Option<StageConfig>,
    /// The Prometheus endpoint; how a run is watched, not what it computes.
    #[serde(default)]
    pub metrics: MetricsConfig,
    /// Memory budgets of the devices for the memory plan (`rlhf plan`), where the
    /// machine's own figure is not the one to plan for.
    #[serde(default)]
    pub devices: DevicesConfig,
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
            if let Some(grpo) = self.pipeline.as_ref().and_then(|p| p.grpo.as_ref()) {
                grpo.apply(ppo.clone())
                    .validate()
                    .map_err(|e| format!("pipeline.grpo: {e}"))?;
            }
        }
        if let Some(dpo) = &self.dpo {
            dpo.validate("dpo")?;
        }
        self.chat.validate()?;
        self.devices.validate()?;
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
            chat: ChatConfig::default(),
            model: None,
            generate: GenerateSection::default(),
            pipeline: None,
            pretrain: None,
            sft: None,
            rm: None,
            ppo: Some(ppo),
            dpo: None,
            metrics: MetricsConfig::default(),
            devices: DevicesConfig::default(),
        }
    }

    /// The section a command needs, or an error naming it.
    pub fn section<'a, T>(section: &'a Option<T>, name: &str, path: &Path) -> Result<&'a T> {
        section
            .as_ref()
            .ok_or_else(|| Error::format(path, format!("missing section [{name}]")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "seed = 1\nrun_dir = \"runs/x\"\n[model]\narch = \"gpt2\"\nlayers = 2\nd_model = 32\nheads = 4\nmax_positions = 64\n";

    #[test]
    fn the_shipped_configs_parse() {
        for name in [
            "default.toml",
            "compare.toml",
            "small.toml",
            "example-hf.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("configs")
                .join(name);
            RunConfig::load(&path).unwrap();
        }
    }

    #[test]
    fn dpo_and_grpo_sections_are_checked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("configs/compare.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let ok = RunConfig::parse(&text, &path).unwrap();
        assert_eq!(ok.dpo.unwrap().objective.unwrap().beta, 0.1);
        let grpo = ok.pipeline.unwrap().grpo.unwrap();
        let stage = grpo.apply(ok.ppo.unwrap());
        assert_eq!(stage.algo.samples_per_prompt, 4);
        assert_eq!(stage.algo.kl.placement, crate::ppo::KlPlacement::Loss);
        assert_eq!(stage.algo.ptx_coef, 0.0);
        for (from, to, expected) in [
            (
                "[dpo.objective]\nbeta = 0.1",
                "[dpo.objective]\nbeta = 0.1\nloss = \"ipo\"",
                "c.toml: dpo.objective.loss = \"ipo\" is pairwise: set objective.pl = false",
            ),
            (
                "[dpo.objective]\nbeta = 0.1",
                "[dpo.objective]\nbeta = 0.1\nbta = 1",
                "c.toml: line ",
            ),
            (
                "[sft.optimizer]",
                "[sft.objective]\nbeta = 0.2\n[sft.optimizer]",
                "c.toml: sft.objective: only the dpo stage has a preference objective",
            ),
            (
                "samples_per_prompt = 4",
                "samples_per_prompt = 3",
                "c.toml: pipeline.grpo: ppo.rollout_batch_size (64) must be a multiple of \
                 ppo.algo.samples_per_prompt (3)",
            ),
            (
                "kl_coef = 1.0",
                "kl_coef = -1",
                "c.toml: pipeline.grpo.kl_coef must be non-negative, got -1",
            ),
        ] {
            assert!(text.contains(from), "{from}");
            let err = RunConfig::parse(&text.replacen(from, to, 1), Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(expected), "{to}: {err}");
        }
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
    fn chat_section_names_its_template() {
        let parse = |chat: &str| {
            RunConfig::parse(&format!("{MINIMAL}[chat]\n{chat}\n"), Path::new("c.toml"))
        };
        assert_eq!(
            RunConfig::parse(MINIMAL, Path::new("c.toml")).unwrap().chat,
            ChatConfig::default()
        );
        assert_eq!(ChatConfig::default().template, TemplateKind::Model);
        let file = parse("template = \"file\"\nfile = \"t.jinja\"")
            .unwrap()
            .chat;
        assert_eq!(file.file.as_deref(), Some(Path::new("t.jinja")));
        assert_eq!(
            parse("template = \"none\"").unwrap().chat.template,
            TemplateKind::None
        );
        for (chat, expected) in [
            (
                "template = \"file\"",
                "c.toml: chat.template = \"file\" needs chat.file",
            ),
            (
                "template = \"builtin\"\nfile = \"t.jinja\"",
                "c.toml: chat.file (t.jinja) is read only with chat.template = \"file\"",
            ),
            (
                "template = \"jinja\"",
                "c.toml: line 10: unknown variant `jinja`",
            ),
            (
                "templates = \"model\"",
                "c.toml: line 10: unknown field `templates`",
            ),
        ] {
            let err = parse(chat).unwrap_err().to_string();
            assert!(err.starts_with(expected), "{chat}: {err}");
        }
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
        // PPO samples from the distribution its learner scores: no truncation, no greedy.
        for (key, line) in [
            ("top_k", "top_k = 50"),
            ("top_p", "top_p = 0.9"),
            ("greedy", "greedy = true"),
        ] {
            let text = format!("{MINIMAL}{fits}[ppo.sampling]\n{line}\n");
            let err = RunConfig::parse(&text, Path::new("c.toml"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("ppo.sampling.{key} must be")),
                "{err}"
            );
        }
    }

    #[test]
    fn replica_placements_are_checked() {
        let ppo = "[ppo]\npolicy = \"p\"\nreward_model = \"r\"\nprompts = \"q\"\nsteps = 2\n\
                   rollout_batch_size = 6\nmax_prompt_len = 8\nmax_new_tokens = 4\n";
        let parse =
            |extra: &str| RunConfig::parse(&format!("{MINIMAL}{ppo}{extra}"), Path::new("c.toml"));
        let ok =
            parse("[ppo.actors.generator]\nreplicas = 3\ndevices = [\"cpu\", \"cpu\", \"cpu\"]\n")
                .unwrap()
                .ppo
                .unwrap();
        assert_eq!(ok.actors.chunks(ok.rollout_chunks), 3);
        assert_eq!(ok.actors.generator.device_of(2), "cpu");
        let nodes = parse("[ppo.actors.generator]\nreplicas = 0\nnodes = 2\n")
            .unwrap()
            .ppo
            .unwrap();
        assert_eq!(nodes.actors.chunks(nodes.rollout_chunks), 2);
        assert!(nodes.has_nodes());
        for (extra, expected) in [
            (
                "[ppo.actors.generator]\nreplicas = 0\n",
                "ppo.actors.generator.replicas must be at least 1",
            ),
            (
                "[ppo.actors.learner]\nreplicas = 2\n",
                "ppo.actors.learner.replicas: the learner has one replica",
            ),
            (
                "[ppo.actors.reward]\nreplicas = 2\ndevices = [\"cpu\"]\n",
                "ppo.actors.reward.devices names 1 devices for 2 replicas",
            ),
            (
                "[ppo.actors.reference]\nreplicas = 2\ndevices = [\"cpu\", \"gpu\"]\n",
                "ppo.actors.reference.devices[1]: unknown device `gpu`",
            ),
            (
                "rollout_chunks = 2\n[ppo.actors.generator]\nreplicas = 3\n",
                "ppo.rollout_chunks (2) is below ppo.actors.generator.replicas + nodes (3)",
            ),
            (
                "rollout_chunks = 7\n",
                "ppo.rollout_chunks must be between 1 and rollout_batch_size (6), not 7",
            ),
            (
                "[ppo.actors.generator]\nreplica = 2\n",
                "unknown field `replica`",
            ),
            (
                "[ppo.actors.reward]\nreplicas = 2\n[ppo.reward]\nkind = \"remote\"\n",
                "ppo.actors.reward.replicas (2): a remote reward is one node per trainer process",
            ),
            (
                "[ppo.actors.reward]\nnodes = 1\n",
                "ppo.actors.reward.nodes: only the generator and the reference run on nodes; a remote reward is [ppo.reward] kind = \"remote\"",
            ),
            (
                "rollout_chunks = 2\n[ppo.actors.generator]\nreplicas = 1\nnodes = 2\n",
                "ppo.rollout_chunks (2) is below ppo.actors.generator.replicas + nodes (3)",
            ),
            (
                "[ppo.actors.reference]\nnodes = 1\n[ppo.reward]\nkind = \"remote\"\n",
                "ppo.actors: generator or reference nodes with a remote reward",
            ),
            (
                "[ppo.actors.generator]\nnodes = 1\n[ppo.cluster]\nweights_dtype = \"f16\"\n",
                "ppo.cluster.weights_dtype: \"f32\" or \"bf16\"",
            ),
            (
                "[ppo.actors.generator]\nnodes = 1\n[ppo.cluster]\nweight_chunk_mib = 512\n",
                "ppo.cluster.weight_chunk_mib must be between 1 and 128",
            ),
            (
                "[ppo.cluster]\nlisten_on = \"x\"\n",
                "unknown field `listen_on`",
            ),
        ] {
            let err = parse(extra).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
    }

    #[test]
    fn data_reading_options_are_checked() {
        let sft =
            "[sft]\ninit = \"i\"\ndata = \"d\"\nepochs = 1\nbatch_size = 2\nmax_seq_len = 8\n";
        let parse =
            |extra: &str| RunConfig::parse(&format!("{MINIMAL}{extra}"), Path::new("c.toml"));
        let ok = parse(&format!(
            "{sft}truncate = \"left\"\nassistant_turns = \"last\"\n[sft.keys]\nprompt = \"question\"\n"
        ))
        .unwrap();
        let stage = ok.sft.unwrap();
        assert_eq!(
            (stage.truncate, stage.assistant_turns),
            (Truncate::Left, AssistantTurns::Last)
        );
        assert_eq!(
            stage.keys.remapped().get("prompt").map(String::as_str),
            Some("question")
        );
        let rm = sft.replace("[sft]", "[rm]");
        let ppo = "[ppo]\npolicy = \"p\"\nreward_model = \"r\"\nprompts = \"q\"\nsteps = 2\n\
                   rollout_batch_size = 4\nmax_prompt_len = 8\nmax_new_tokens = 4\n";
        for (extra, expected) in [
            (
                format!("{sft}[sft.keys]\nprompt = \"q\"\nresponse = \"q\"\n"),
                "sft.keys: prompt and response both read the key \"q\"",
            ),
            (
                format!("{sft}[sft.keys]\nprompt = \"\"\n"),
                "sft.keys.prompt must not be empty",
            ),
            (
                format!("{sft}[sft.keys]\nquestion = \"q\"\n"),
                "unknown field `question`",
            ),
            (
                format!("{sft}truncate = \"middle\"\n"),
                "unknown variant `middle`",
            ),
            (
                format!("{rm}assistant_turns = \"last\"\n"),
                "rm.assistant_turns: only the sft stage trains assistant turns",
            ),
            (
                format!("{ppo}truncate = \"right\"\n"),
                "ppo.truncate: \"right\" would cut the generation prompt off a prompt",
            ),
            (
                sft.replace("[sft]", "[pretrain]") + "truncate = \"left\"\n",
                "pretrain.truncate: plain text is cut into max_seq_len chunks",
            ),
        ] {
            let err = parse(&extra).unwrap_err().to_string();
            assert!(err.contains(expected), "{extra}: {err}");
        }
        parse(&format!(
            "{ppo}truncate = \"left\"\n[ppo.keys]\nprompt = \"query\"\n"
        ))
        .unwrap();
    }
}
