//! The run configuration: one TOML file, every section and field documented here and in
//! configs/default.toml. Unknown keys are errors, so a typo never silently falls back to a
//! default.

use crate::device::DType;
use crate::model::{Architecture, ModelShape};
use crate::sampling::Sampling;
use crate::{Error, Result};
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
    pub model: ModelSection,
    #[serde(default)]
    pub generate: GenerateSection,
}

/// The embedded synthetic world.
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
        let m = &self.model;
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
            .map_err(|e| format!("generate: {e}"))
    }

    /// The model shape for a vocabulary of `vocab_size` with `eos` as end token.
    pub fn model_shape(&self, vocab_size: i64, eos: i64) -> ModelShape {
        let m = &self.model;
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
    }
}
