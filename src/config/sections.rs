//! The small sections: `[world]`, `[tokenizer]`, `[generate]`, `[metrics]`. Every field
//! has a default, so each section may be left out.

use crate::sampling::Sampling;
use serde::{Deserialize, Serialize};

/// Default `world.documents`: prose documents in the pretraining corpus.
const DEFAULT_WORLD_DOCUMENTS: usize = 4000;
/// Default `tokenizer.vocab_size`: 256 byte tokens, the specials and the learned merges.
const DEFAULT_VOCAB_SIZE: usize = 1024;
/// Default `generate.max_new_tokens`.
const DEFAULT_GENERATE_MAX_NEW_TOKENS: i64 = 64;
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
