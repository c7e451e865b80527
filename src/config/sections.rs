//! The small sections: `[world]`, `[tokenizer]`, `[chat]`, `[generate]`, `[metrics]`.
//! Every field has a default, so each section may be left out.

use crate::sampling::Sampling;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// Default `world.documents`: prose documents in the pretraining corpus.
const DEFAULT_WORLD_DOCUMENTS: usize = 4000;
/// Default `tokenizer.vocab_size`: 256 byte tokens, the specials and the learned merges.
const DEFAULT_VOCAB_SIZE: usize = 1024;
/// Default `generate.max_new_tokens`.
const DEFAULT_GENERATE_MAX_NEW_TOKENS: i64 = 64;
/// Default `chat.template`: the model folder's own chat template, as transformers applies
/// it (the embedded world's folders carry the built-in one).
const DEFAULT_CHAT_TEMPLATE: TemplateKind = TemplateKind::Model;
/// Default `metrics.listen`: loopback only, so a run never exposes a port unasked.
const DEFAULT_METRICS_LISTEN: &str = "127.0.0.1:9464";

/// The embedded synthetic world.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorldConfig {
    /// Number of prose documents in the pretraining corpus.
    pub documents: usize,
}

impl Default for WorldConfig {
    fn default() -> Self {
        WorldConfig {
            documents: DEFAULT_WORLD_DOCUMENTS,
        }
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
            listen: DEFAULT_METRICS_LISTEN.into(),
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
        TokenizerConfig {
            vocab_size: DEFAULT_VOCAB_SIZE,
        }
    }
}

/// Which chat template renders prompts and conversations (`chat.template`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TemplateKind {
    /// The model folder's own Jinja `chat_template` (its `chat_template.jinja`, else
    /// `tokenizer_config.json`); an error when it has none.
    Model,
    /// The embedded world's `<|user|>` ... `<|assistant|>` template.
    Builtin,
    /// The Jinja template in `chat.file`.
    File,
    /// None: prompts are used as given (after the BOS the tokenizer adds to any text).
    None,
}

/// How prompts and conversations become model input, for every stage of a run. The
/// template used is saved in the `tokenizer_config.json` of every model folder written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ChatConfig {
    /// `"model"`, `"builtin"`, `"file"` or `"none"`.
    pub template: TemplateKind,
    /// The Jinja template file when `template = "file"` (and only then).
    pub file: Option<PathBuf>,
}

impl Default for ChatConfig {
    fn default() -> Self {
        ChatConfig {
            template: DEFAULT_CHAT_TEMPLATE,
            file: None,
        }
    }
}

impl ChatConfig {
    /// The built-in template (the embedded world's).
    pub fn builtin() -> ChatConfig {
        ChatConfig {
            template: TemplateKind::Builtin,
            file: None,
        }
    }

    pub fn validate(&self) -> Result<(), String> {
        match (self.template, &self.file) {
            (TemplateKind::File, None) => {
                Err("chat.template = \"file\" needs chat.file, the Jinja template".into())
            }
            (kind, Some(file)) if kind != TemplateKind::File => Err(format!(
                "chat.file ({}) is read only with chat.template = \"file\"",
                file.display()
            )),
            _ => Ok(()),
        }
    }
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
            max_new_tokens: DEFAULT_GENERATE_MAX_NEW_TOKENS,
            sampling: Sampling::default(),
            prompts: vec![],
        }
    }
}
