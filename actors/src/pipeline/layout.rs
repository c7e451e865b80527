//! Where the pipeline keeps everything under `run_dir`, and the check that the stage
//! sections of the config point there (so `rlhf sft` and friends can rerun a stage of a
//! pipeline run with the same config file).

use anyhow::bail;
use rlhf::config::{RunConfig, TemplateKind};
use std::path::{Path, PathBuf};

pub struct Layout {
    pub root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    /// The tokenizer and the randomly initialised model.
    pub fn init(&self) -> PathBuf {
        self.root.join("init")
    }

    /// A generated data file, e.g. `sft.jsonl`.
    pub fn data(&self, file: &str) -> PathBuf {
        self.root.join("data").join(file)
    }

    /// The checkpoint a finished stage hands on: `best` for the supervised stages
    /// (lowest held-out loss or highest held-out accuracy), `last` for PPO and GRPO.
    pub fn model(&self, stage: &str) -> PathBuf {
        let which = if stage.starts_with("ppo") || stage == "grpo" {
            "last"
        } else {
            "best"
        };
        self.root.join(stage).join("checkpoints").join(which)
    }

    /// The marker a stage writes when it has finished.
    pub fn done(&self, stage: &str) -> PathBuf {
        self.root.join(stage).join("done.json")
    }

    /// Every stage path of `config` must be this layout's; the error names the key and the
    /// expected value.
    pub fn check(&self, config: &RunConfig, config_path: &Path) -> anyhow::Result<()> {
        let section = |name| anyhow::anyhow!("{}: missing section [{name}]", config_path.display());
        let pretrain = config
            .pretrain
            .as_ref()
            .ok_or_else(|| section("pretrain"))?;
        let sft = config.sft.as_ref().ok_or_else(|| section("sft"))?;
        let rm = config.rm.as_ref().ok_or_else(|| section("rm"))?;
        let ppo = config.ppo.as_ref().ok_or_else(|| section("ppo"))?;
        let mut expected: Vec<(&str, Option<&Path>, PathBuf)> = vec![
            ("pretrain.init", Some(&pretrain.init), self.init()),
            (
                "pretrain.data",
                Some(&pretrain.data),
                self.data("pretrain.jsonl"),
            ),
            (
                "pretrain.validation",
                pretrain.validation.as_deref(),
                self.data("prose_heldout.jsonl"),
            ),
            ("sft.init", Some(&sft.init), self.model("pretrain")),
            ("sft.data", Some(&sft.data), self.data("sft.jsonl")),
            ("rm.init", Some(&rm.init), self.model("sft")),
            ("rm.data", Some(&rm.data), self.data("rm.jsonl")),
            (
                "rm.validation",
                rm.validation.as_deref(),
                self.data("rm_heldout.jsonl"),
            ),
            ("ppo.policy", Some(&ppo.policy), self.model("sft")),
            (
                "ppo.reward_model",
                Some(&ppo.reward_model),
                self.model("rm"),
            ),
            (
                "ppo.prompts",
                Some(&ppo.prompts),
                self.data("ppo_prompts.jsonl"),
            ),
            (
                "ppo.pretrain",
                ppo.pretrain.as_deref(),
                self.data("pretrain.jsonl"),
            ),
        ];
        if let Some(dpo) = &config.dpo {
            expected.extend([
                ("dpo.init", Some(dpo.init.as_path()), self.model("sft")),
                ("dpo.data", Some(dpo.data.as_path()), self.data("rm.jsonl")),
                (
                    "dpo.validation",
                    dpo.validation.as_deref(),
                    self.data("rm_heldout.jsonl"),
                ),
            ]);
        }
        for (key, actual, wanted) in expected {
            if actual != Some(wanted.as_path()) {
                bail!(
                    "{}: `{key}` must be \"{}\" for `rlhf pipeline` (it writes that), got {}",
                    config_path.display(),
                    wanted.display(),
                    actual.map_or("nothing".to_string(), |p| format!("\"{}\"", p.display()))
                );
            }
        }
        // The labeler and the evaluation match prompts in the built-in template; "model" is
        // the same template here, as the pipeline's init folder advertises it.
        if !matches!(
            config.chat.template,
            TemplateKind::Builtin | TemplateKind::Model
        ) {
            bail!(
                "{}: `chat.template` must be \"builtin\" (or \"model\", the init folder's, which \
                 is the built-in one) for `rlhf pipeline`: the embedded world's labeler reads \
                 prompts in that template",
                config_path.display()
            );
        }
        if let Some(demos) = &rm.demonstrations {
            if demos != &self.data("sft.jsonl") {
                bail!(
                    "{}: `rm.demonstrations` must be \"{}\" for `rlhf pipeline`",
                    config_path.display(),
                    self.data("sft.jsonl").display()
                );
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_config_is_the_pipeline_layout_and_a_stray_path_is_named() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for file in ["configs/default.toml", "configs/small.toml"] {
            let config = RunConfig::load(&root.join(file)).unwrap();
            Layout::new(&config.run_dir)
                .check(&config, Path::new(file))
                .unwrap();
        }
        let path = root.join("configs/default.toml");
        let mut config = RunConfig::load(&path).unwrap();
        config.sft.as_mut().unwrap().data = "elsewhere/sft.jsonl".into();
        let err = Layout::new(&config.run_dir)
            .check(&config, Path::new("default.toml"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "default.toml: `sft.data` must be \"runs/default/data/sft.jsonl\" for `rlhf pipeline` \
             (it writes that), got \"elsewhere/sft.jsonl\""
        );
        // The embedded world keeps its built-in template.
        for file in ["configs/default.toml", "configs/small.toml"] {
            let config = RunConfig::load(&root.join(file)).unwrap();
            assert_eq!(config.chat.template, TemplateKind::Builtin, "{file}");
        }
        let mut config = RunConfig::load(&path).unwrap();
        config.chat.template = TemplateKind::None;
        let err = Layout::new(&config.run_dir)
            .check(&config, Path::new("default.toml"))
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("default.toml: `chat.template` must be \"builtin\""),
            "{err}"
        );
    }
}
