//! How stages read the data files users bring: field names (`keys`), the over-long rule
//! (`truncate`) and which assistant turns SFT trains (`assistant_turns`). The formats
//! themselves are documented in src/data/mod.rs.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The field names rlhf reads, each mappable to another key of the user's records
/// (OpenRLHF's `input_key`, `output_key`, `chosen_key`...): `[sft.keys] prompt =
/// "question"` reads the prompt from `"question"`. Errors then name the user's key.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataKeys {
    pub text: Option<String>,
    pub prompt: Option<String>,
    pub response: Option<String>,
    pub completion: Option<String>,
    pub messages: Option<String>,
    pub chosen: Option<String>,
    pub rejected: Option<String>,
    pub responses: Option<String>,
    pub ranking: Option<String>,
    pub category: Option<String>,
}

impl DataKeys {
    /// rlhf's name → the record's key, for the names that are remapped.
    pub fn remapped(&self) -> BTreeMap<&'static str, String> {
        [
            ("text", &self.text),
            ("prompt", &self.prompt),
            ("response", &self.response),
            ("completion", &self.completion),
            ("messages", &self.messages),
            ("chosen", &self.chosen),
            ("rejected", &self.rejected),
            ("responses", &self.responses),
            ("ranking", &self.ranking),
            ("category", &self.category),
        ]
        .into_iter()
        .filter_map(|(name, key)| key.clone().map(|k| (name, k)))
        .collect()
    }

    pub(super) fn validate(&self, section: &str) -> Result<(), String> {
        let remapped = self.remapped();
        for (name, key) in &remapped {
            if key.is_empty() {
                return Err(format!("{section}.keys.{name} must not be empty"));
            }
            if let Some((other, _)) = remapped.iter().find(|(o, k)| *o < name && *k == key) {
                return Err(format!(
                    "{section}.keys: {other} and {name} both read the key {key:?}"
                ));
            }
        }
        Ok(())
    }
}

/// What happens to an example longer than the stage's limit (`max_seq_len`, or PPO's
/// `max_prompt_len`); the log counts both outcomes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Truncate {
    /// Drop it (for the reward model, the prompt with all its responses).
    #[default]
    Skip,
    /// Cut tokens from the start of the prompt, after the BOS it starts with, so the
    /// response stays whole (TRL's `keep_end` for the prompt); skipped when even the whole
    /// prompt is not enough.
    Left,
    /// Keep the first tokens: the response loses its end (and its EOS) (TRL's
    /// `keep_start`); skipped when no response token is left. Not for PPO prompts.
    Right,
}

/// Which assistant messages of an SFT `messages` conversation are trained.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AssistantTurns {
    /// Every assistant message, each in the context of the turns before it.
    #[default]
    All,
    /// Only the last one; earlier turns are context.
    Last,
}
