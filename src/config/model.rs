//! `[model]`: the shape of a model `rlhf init` builds from scratch.

use super::defaults::default_device;
use crate::device::DType;
use crate::model::{Architecture, ModelShape};
use serde::{Deserialize, Serialize};

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
    #[serde(default = "default_device")]
    pub device: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ArchName {
    Gpt2,
    Llama,
}

impl ModelSection {
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
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
