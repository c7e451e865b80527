//! Hugging Face `config.json` -> resolved model configuration.
//!
//! The raw JSON is kept beside the resolved config so that saving writes back every key the
//! user's checkpoint had (tokenizer ids, custom fields) and only updates what we own.
//! Reading the keys of each family (`ModelConfig::load`, `from_json`) is `families.rs`.

use super::rope::Rope;
use crate::Result;
use serde_json::{json, Value};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Learned positions, LayerNorm, GELU MLP, fused QKV (Conv1D layout), tied embeddings.
    Gpt2,
    /// RoPE, RMSNorm, SwiGLU, grouped-query attention. Also Qwen2 (QKV biases), Qwen3
    /// (per-head q/k RMSNorm) and Mistral.
    Llama,
    /// GPT-NeoX (Pythia): fused per-head QKV, partial rotary, LayerNorm, parallel residual.
    NeoX,
    /// Gemma 2: scaled embeddings, (1 + w) RMSNorms before and after attention and MLP,
    /// GeGLU, soft-capped attention scores and logits, sliding windows on alternate layers.
    Gemma2,
}

/// Every `model_type` accepted, as error messages list them.
pub const MODEL_TYPES: &str = "gpt2, llama, mistral, qwen2, qwen3, gpt_neox, gemma2";

/// The MLP activations implemented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    GeluTanh,
    GeluExact,
    Relu,
    /// The Llama family's SwiGLU gate.
    Silu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    /// `model_type` as written in config.json (one of [`MODEL_TYPES`]).
    pub model_type: String,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub head_dim: i64,
    pub intermediate_size: i64,
    pub max_positions: i64,
    pub norm_eps: f64,
    pub activation: Activation,
    /// Rotary embeddings (None for GPT-2's learned positions).
    pub rope: Option<Rope>,
    /// RMSNorm over each head's queries and keys before the rotation (Qwen3).
    pub qk_norm: bool,
    /// Attention and MLP both read the block's input and add to it (GPT-NeoX).
    pub parallel_residual: bool,
    /// Attention score scale when not 1 / sqrt(head_dim) (Gemma 2's `query_pre_attn_scalar`).
    pub attn_scale: Option<f64>,
    /// cap * tanh(x / cap) on attention scores and on the logits (Gemma 2).
    pub attn_softcap: Option<f64>,
    pub final_softcap: Option<f64>,
    /// Per layer: the sliding window it attends within, or None for the whole context.
    pub layer_windows: Vec<Option<i64>>,
    /// Biases on the q/k/v projections (Qwen2, Llama `attention_bias`).
    pub qkv_bias: bool,
    /// Bias on the attention output projection (Llama `attention_bias`).
    pub out_bias: bool,
    pub mlp_bias: bool,
    pub tie_embeddings: bool,
    pub embd_dropout: f64,
    pub attn_dropout: f64,
    pub resid_dropout: f64,
    pub eos_token_id: Option<i64>,
}

impl ModelConfig {
    /// A fresh HF config.json for a randomly initialised model of the given shape.
    pub fn new_json(shape: &ModelShape) -> Value {
        let own = match shape.arch {
            Architecture::Gpt2 => {
                return json!({
                "architectures": ["GPT2LMHeadModel"],
                "model_type": "gpt2",
                "vocab_size": shape.vocab_size,
                "n_positions": shape.max_positions,
                "n_embd": shape.hidden_size,
                "n_layer": shape.num_layers,
                "n_head": shape.num_heads,
                "n_inner": null,
                "activation_function": "gelu_new",
                "layer_norm_epsilon": 1e-5,
                "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0,
                "initializer_range": 0.02,
                "bos_token_id": shape.eos_token_id,
                "eos_token_id": shape.eos_token_id,
                "tie_word_embeddings": true,
                })
            }
            Architecture::Llama => json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "intermediate_size": llama_intermediate(shape.hidden_size),
                "num_key_value_heads": shape.num_kv_heads,
                "head_dim": shape.hidden_size / shape.num_heads,
                "hidden_act": "silu",
                "rms_norm_eps": 1e-6,
                "attention_bias": false,
                "mlp_bias": false,
                "tie_word_embeddings": false,
            }),
            Architecture::Gemma2 => json!({
                "architectures": ["Gemma2ForCausalLM"],
                "model_type": "gemma2",
                "intermediate_size": 4 * shape.hidden_size,
                "num_key_value_heads": shape.num_kv_heads,
                "head_dim": shape.hidden_size / shape.num_heads,
                "query_pre_attn_scalar": shape.hidden_size / shape.num_heads,
                "hidden_activation": "gelu_pytorch_tanh",
                "rms_norm_eps": 1e-6,
                "sliding_window": shape.max_positions,
                "attn_logit_softcapping": 50.0,
                "final_logit_softcapping": 30.0,
                "tie_word_embeddings": true,
            }),
            Architecture::NeoX => json!({
                "architectures": ["GPTNeoXForCausalLM"],
                "model_type": "gpt_neox",
                "intermediate_size": 4 * shape.hidden_size,
                "hidden_act": "gelu",
                "layer_norm_eps": 1e-5,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
                "use_parallel_residual": true,
                "attention_bias": true,
                "hidden_dropout": 0.0,
                "tie_word_embeddings": false,
            }),
        };
        // What every rotary family spells alike.
        let mut config = json!({
            "vocab_size": shape.vocab_size,
            "max_position_embeddings": shape.max_positions,
            "hidden_size": shape.hidden_size,
            "num_hidden_layers": shape.num_layers,
            "num_attention_heads": shape.num_heads,
            "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "bos_token_id": shape.eos_token_id,
            "eos_token_id": shape.eos_token_id,
        });
        let map = config.as_object_mut().expect("a JSON object");
        map.extend(own.as_object().expect("a JSON object").clone());
        config
    }

    /// The sliding window of `layer`, if it has one.
    pub fn window(&self, layer: i64) -> Option<i64> {
        self.layer_windows.get(layer as usize).copied().flatten()
    }

    pub fn num_parameters(&self) -> i64 {
        let (d, l, v) = (self.hidden_size, self.num_layers, self.vocab_size);
        let kv = self.num_kv_heads * self.head_dim;
        let q = self.num_heads * self.head_dim;
        match self.arch {
            Architecture::Gpt2 => {
                let block = d * 3 * d
                    + 3 * d
                    + d * d
                    + d
                    + 2 * d * self.intermediate_size
                    + self.intermediate_size
                    + d
                    + 4 * d;
                v * d + self.max_positions * d + l * block + 2 * d
            }
            Architecture::Llama => {
                let bias = if self.qkv_bias { q + 2 * kv } else { 0 };
                let qk_norm = if self.qk_norm { 2 * self.head_dim } else { 0 };
                let block = d * (q + 2 * kv)
                    + bias
                    + qk_norm
                    + q * d
                    + 3 * d * self.intermediate_size
                    + 2 * d;
                let head = if self.tie_embeddings { 0 } else { v * d };
                v * d + l * block + d + head
            }
            Architecture::Gemma2 => {
                let bias = if self.qkv_bias { q + 2 * kv + d } else { 0 };
                let block =
                    d * (q + 2 * kv) + bias + q * d + 3 * d * self.intermediate_size + 4 * d;
                let head = if self.tie_embeddings { 0 } else { v * d };
                v * d + l * block + d + head
            }
            Architecture::NeoX => {
                let ff = self.intermediate_size;
                let bias = if self.qkv_bias { 4 * d } else { 0 };
                let block = 4 * d * d + bias + 2 * d * ff + ff + d + 4 * d;
                let head = if self.tie_embeddings { 0 } else { v * d };
                v * d + l * block + 2 * d + head
            }
        }
    }
}

/// The knobs of a new model built from scratch (`rlhf init`, benchmarks).
#[derive(Clone, Debug)]
pub struct ModelShape {
    pub arch: Architecture,
    pub vocab_size: i64,
    pub hidden_size: i64,
    pub num_layers: i64,
    pub num_heads: i64,
    pub num_kv_heads: i64,
    pub max_positions: i64,
    pub eos_token_id: i64,
}

/// SwiGLU width: about 8/3 d, rounded up to a multiple of 32 (as Llama rounds to 256).
fn llama_intermediate(d: i64) -> i64 {
    (8 * d / 3 + 31) / 32 * 32
}

/// Where a model's config.json lives in a Hugging Face folder.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}

/// Writes `pad_token_id` into the config.json of a saved folder that has none (or null):
/// transformers' sequence classification needs it at batch > 1 to find each row's last
/// token. An id already there is kept.
pub fn fill_pad_token_id(dir: &Path, pad: i64) -> Result<()> {
    let path = config_path(dir);
    let (_, mut raw) = ModelConfig::load(&path)?;
    if raw.get("pad_token_id").is_some_and(|v| !v.is_null()) {
        return Ok(());
    }
    raw["pad_token_id"] = json!(pad);
    let text = serde_json::to_string_pretty(&raw).expect("JSON value serialises");
    super::weights::write_atomic(&path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(raw: Value) -> Result<ModelConfig> {
        ModelConfig::from_json(&raw, Path::new("config.json"))
    }

    fn llama_like(model_type: &str) -> Value {
        json!({"model_type": model_type, "vocab_size": 96, "hidden_size": 32,
            "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 64})
    }

    #[test]
    fn qwen3_has_qk_norms_no_qkv_bias_and_its_own_head_dim_default() {
        let c = parse(llama_like("qwen3")).unwrap();
        assert!(c.qk_norm && !c.qkv_bias);
        assert_eq!(c.head_dim, 128, "transformers' Qwen3Config default");
        assert_eq!(c.rope.unwrap().dims, 128);
        let q2 = parse(llama_like("qwen2")).unwrap();
        assert!(!q2.qk_norm && q2.qkv_bias && q2.head_dim == 8);
    }

    #[test]
    fn neox_reads_old_and_new_rope_keys() {
        let base = json!({"model_type": "gpt_neox", "vocab_size": 96, "hidden_size": 64,
            "intermediate_size": 256, "num_hidden_layers": 2, "num_attention_heads": 4,
            "max_position_embeddings": 64});
        let mut old = base.clone();
        old["rotary_pct"] = json!(0.25);
        old["rotary_emb_base"] = json!(500);
        let mut new = base.clone();
        new["rope_parameters"] =
            json!({"rope_type": "default", "rope_theta": 500.0, "partial_rotary_factor": 0.25});
        for raw in [old, new] {
            let c = parse(raw).unwrap();
            assert_eq!(c.arch, Architecture::NeoX);
            assert!(c.parallel_residual && c.qkv_bias);
            assert_eq!(c.activation, Activation::GeluExact);
            let rope = c.rope.unwrap();
            assert_eq!((rope.theta, rope.dims), (500.0, 4));
        }
        // transformers' defaults: a quarter of each head rotates.
        assert_eq!(parse(base).unwrap().rope.unwrap().dims, 4);
    }

    #[test]
    fn sliding_windows_follow_each_familys_rules() {
        let windows = |model_type: &str, extra: Value| {
            let mut raw = llama_like(model_type);
            raw.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            parse(raw).unwrap().layer_windows
        };
        // Mistral: every layer, 4096 when unsaid, none when null or as long as the context.
        assert_eq!(
            windows("mistral", json!({"sliding_window": 16})),
            [Some(16); 2]
        );
        assert_eq!(
            windows("mistral", json!({"sliding_window": null})),
            [None; 2]
        );
        assert_eq!(windows("mistral", json!({"sliding_window": 64})), [None; 2]);
        let long = json!({"max_position_embeddings": 8192});
        assert_eq!(windows("mistral", long), [Some(4096); 2]);
        // Llama has none; Qwen only with use_sliding_window, from max_window_layers on.
        assert_eq!(windows("llama", json!({"sliding_window": 16})), [None; 2]);
        assert_eq!(windows("qwen3", json!({"sliding_window": 16})), [None; 2]);
        let on = json!({"sliding_window": 16, "use_sliding_window": true, "max_window_layers": 1});
        assert_eq!(windows("qwen2", on.clone()), [None, Some(16)]);
        // transformers 5 lists each layer's kind.
        let mut listed = on;
        listed["layer_types"] = json!(["sliding_attention", "full_attention"]);
        assert_eq!(windows("qwen2", listed.clone()), [Some(16), None]);
        listed["layer_types"] = json!(["sliding_attention", "chunked_attention"]);
        let mut raw = llama_like("qwen2");
        raw.as_object_mut()
            .unwrap()
            .extend(listed.as_object().unwrap().clone());
        let err = parse(raw).unwrap_err().to_string();
        assert!(
            err.contains("key `layer_types`: `chunked_attention` is not supported"),
            "{err}"
        );
    }

    #[test]
    fn pad_token_id_is_filled_in_only_where_missing() {
        let dir = std::env::temp_dir().join(format!("rlhf-pad-id-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let mut raw = llama_like("llama");
        raw["pad_token_id"] = Value::Null;
        std::fs::write(config_path(&dir), raw.to_string()).unwrap();
        fill_pad_token_id(&dir, 7).unwrap();
        fill_pad_token_id(&dir, 9).unwrap();
        let (_, back) = ModelConfig::load(&config_path(&dir)).unwrap();
        assert_eq!(back["pad_token_id"], 7);
        assert_eq!(back["hidden_size"], 32, "the other keys stay");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
