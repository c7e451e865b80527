//! Hugging Face `config.json` -> resolved model configuration.
//!
//! The raw JSON is kept beside the resolved config so that saving writes back every key the
//! user's checkpoint had (tokenizer ids, custom fields) and only updates what we own.

use crate::{Error, Result};
use serde_json::{json, Map, Value};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Architecture {
    /// Learned positions, LayerNorm, GELU MLP, fused QKV (Conv1D layout), tied embeddings.
    Gpt2,
    /// RoPE, RMSNorm, SwiGLU, grouped-query attention. Also Qwen2 (QKV biases) and Mistral.
    Llama,
}

/// GPT-2's MLP activations that we implement.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    GeluTanh,
    GeluExact,
    Relu,
}

#[derive(Clone, Debug, PartialEq)]
pub struct ModelConfig {
    pub arch: Architecture,
    /// `model_type` as written in config.json (`gpt2`, `llama`, `qwen2`, `mistral`).
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
    pub rope_theta: f64,
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

/// Reads typed keys from the raw JSON with errors that name the file and the key.
struct Keys<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl Keys<'_> {
    fn err(&self, what: String) -> Error {
        Error::format(self.path, what)
    }

    fn get(&self, key: &str) -> Option<&Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn int(&self, key: &str) -> Result<i64> {
        self.opt_int(key)?
            .ok_or_else(|| self.err(format!("missing key `{key}`")))
    }

    fn opt_int(&self, key: &str) -> Result<Option<i64>> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(i) if i > 0 || key.ends_with("token_id") => Ok(Some(i)),
                _ => Err(self.err(format!("key `{key}`: expected a positive integer, got {v}"))),
            },
        }
    }

    fn float_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_f64()
                .ok_or_else(|| self.err(format!("key `{key}`: expected a number, got {v}"))),
        }
    }

    fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_bool()
                .ok_or_else(|| self.err(format!("key `{key}`: expected true or false, got {v}"))),
        }
    }

    fn str_or<'b>(&'b self, key: &str, default: &'b str) -> Result<&'b str> {
        match self.get(key) {
            None => Ok(default),
            Some(v) => v
                .as_str()
                .ok_or_else(|| self.err(format!("key `{key}`: expected a string, got {v}"))),
        }
    }

    /// A first entry of `eos_token_id` that may be an integer or a list of them.
    fn eos(&self) -> Result<Option<i64>> {
        match self.get("eos_token_id") {
            Some(Value::Array(ids)) => Ok(ids.first().and_then(Value::as_i64)),
            _ => self.opt_int("eos_token_id"),
        }
    }
}

impl ModelConfig {
    /// Parse a config.json file.
    pub fn load(path: &Path) -> Result<(ModelConfig, Value)> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let raw: Value = serde_json::from_str(&text)
            .map_err(|e| Error::format(path, format!("invalid JSON at line {}: {e}", e.line())))?;
        let config = ModelConfig::from_json(&raw, path)?;
        Ok((config, raw))
    }

    /// Resolve a raw HF config; `path` is only used in error messages.
    pub fn from_json(raw: &Value, path: &Path) -> Result<ModelConfig> {
        let map = raw
            .as_object()
            .ok_or_else(|| Error::format(path, "expected a JSON object"))?;
        let keys = Keys { path, map };
        let model_type = match keys.get("model_type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => from_architectures(&keys)?,
        };
        let config = match model_type.as_str() {
            "gpt2" => gpt2(&keys)?,
            "llama" | "qwen2" | "mistral" => llama(&keys, &model_type)?,
            other => {
                return Err(keys.err(format!(
                    "unknown architecture `{other}` (key `model_type`); supported: gpt2, llama, qwen2, mistral"
                )))
            }
        };
        config.validate(path)?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<()> {
        if self.hidden_size != self.num_heads * self.head_dim && self.arch == Architecture::Gpt2 {
            return Err(Error::format(
                path,
                format!(
                    "hidden size {} is not divisible into {} heads",
                    self.hidden_size, self.num_heads
                ),
            ));
        }
        if self.num_heads % self.num_kv_heads != 0 {
            return Err(Error::format(
                path,
                format!(
                    "num_attention_heads {} is not a multiple of num_key_value_heads {}",
                    self.num_heads, self.num_kv_heads
                ),
            ));
        }
        if self.arch == Architecture::Llama && self.head_dim % 2 != 0 {
            return Err(Error::format(
                path,
                "head_dim must be even for rotary embeddings",
            ));
        }
        Ok(())
    }

    /// A fresh HF config.json for a randomly initialised model of the given shape.
    pub fn new_json(shape: &ModelShape) -> Value {
        match shape.arch {
            Architecture::Gpt2 => json!({
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
            }),
            Architecture::Llama => json!({
                "architectures": ["LlamaForCausalLM"],
                "model_type": "llama",
                "vocab_size": shape.vocab_size,
                "max_position_embeddings": shape.max_positions,
                "hidden_size": shape.hidden_size,
                "intermediate_size": llama_intermediate(shape.hidden_size),
                "num_hidden_layers": shape.num_layers,
                "num_attention_heads": shape.num_heads,
                "num_key_value_heads": shape.num_kv_heads,
                "head_dim": shape.hidden_size / shape.num_heads,
                "hidden_act": "silu",
                "rms_norm_eps": 1e-6,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
                "attention_bias": false,
                "mlp_bias": false,
                "attention_dropout": 0.0,
                "initializer_range": 0.02,
                "bos_token_id": shape.eos_token_id,
                "eos_token_id": shape.eos_token_id,
                "tie_word_embeddings": false,
            }),
        }
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
                let block =
                    d * (q + 2 * kv) + bias + q * d + 3 * d * self.intermediate_size + 2 * d;
                let head = if self.tie_embeddings { 0 } else { v * d };
                v * d + l * block + d + head
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

fn from_architectures(keys: &Keys) -> Result<String> {
    let arch = keys
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| keys.err("missing key `model_type` (and no `architectures`)".into()))?;
    let lower = arch.to_ascii_lowercase();
    ["gpt2", "llama", "qwen2", "mistral"]
        .iter()
        .find(|t| lower.starts_with(*t))
        .map(|t| t.to_string())
        .ok_or_else(|| {
            keys.err(format!(
                "unknown architecture `{arch}` (key `architectures`); supported: gpt2, llama, qwen2, mistral"
            ))
        })
}

fn gpt2(k: &Keys) -> Result<ModelConfig> {
    let hidden = k.int("n_embd")?;
    let heads = k.int("n_head")?;
    for (key, default) in [
        ("scale_attn_by_inverse_layer_idx", false),
        ("reorder_and_upcast_attn", false),
        ("add_cross_attention", false),
    ] {
        if k.bool_or(key, default)? != default {
            return Err(k.err(format!("key `{key}`: only {default} is supported")));
        }
    }
    if !k.bool_or("scale_attn_weights", true)? {
        return Err(k.err("key `scale_attn_weights`: only true is supported".into()));
    }
    let activation = match k.str_or("activation_function", "gelu_new")? {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Activation::GeluTanh,
        "gelu" => Activation::GeluExact,
        "relu" => Activation::Relu,
        other => {
            return Err(k.err(format!(
                "key `activation_function`: `{other}` is not supported (gelu_new, gelu, relu)"
            )))
        }
    };
    Ok(ModelConfig {
        arch: Architecture::Gpt2,
        model_type: "gpt2".into(),
        vocab_size: k.int("vocab_size")?,
        hidden_size: hidden,
        num_layers: k.int("n_layer")?,
        num_heads: heads,
        num_kv_heads: heads,
        head_dim: hidden / heads,
        intermediate_size: k.opt_int("n_inner")?.unwrap_or(4 * hidden),
        max_positions: k.int("n_positions")?,
        norm_eps: k.float_or("layer_norm_epsilon", 1e-5)?,
        activation,
        rope_theta: 0.0,
        qkv_bias: true,
        out_bias: true,
        mlp_bias: true,
        tie_embeddings: true,
        embd_dropout: k.float_or("embd_pdrop", 0.1)?,
        attn_dropout: k.float_or("attn_pdrop", 0.1)?,
        resid_dropout: k.float_or("resid_pdrop", 0.1)?,
        eos_token_id: k.eos()?,
    })
}

fn llama(k: &Keys, model_type: &str) -> Result<ModelConfig> {
    let hidden = k.int("hidden_size")?;
    let heads = k.int("num_attention_heads")?;
    let act = k.str_or("hidden_act", "silu")?;
    if act != "silu" {
        return Err(k.err(format!("key `hidden_act`: `{act}` is not supported (silu)")));
    }
    let attention_bias = k.bool_or("attention_bias", false)?;
    let qwen = model_type == "qwen2";
    if let Some(window) = k.opt_int("sliding_window")? {
        if k.bool_or("use_sliding_window", !qwen)? && window < k.int("max_position_embeddings")? {
            return Err(k.err(format!(
                "key `sliding_window`: sliding-window attention ({window}) is not supported"
            )));
        }
    }
    Ok(ModelConfig {
        arch: Architecture::Llama,
        model_type: model_type.into(),
        vocab_size: k.int("vocab_size")?,
        hidden_size: hidden,
        num_layers: k.int("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: k.opt_int("num_key_value_heads")?.unwrap_or(heads),
        head_dim: k.opt_int("head_dim")?.unwrap_or(hidden / heads),
        intermediate_size: k.int("intermediate_size")?,
        max_positions: k.int("max_position_embeddings")?,
        norm_eps: k.float_or("rms_norm_eps", 1e-6)?,
        activation: Activation::GeluTanh,
        rope_theta: rope_theta(k)?,
        qkv_bias: qwen || attention_bias,
        out_bias: attention_bias,
        mlp_bias: k.bool_or("mlp_bias", false)?,
        tie_embeddings: k.bool_or("tie_word_embeddings", false)?,
        embd_dropout: 0.0,
        attn_dropout: k.float_or("attention_dropout", 0.0)?,
        resid_dropout: 0.0,
        eos_token_id: k.eos()?,
    })
}

/// `rope_parameters` (transformers 5) or `rope_theta` + `rope_scaling` (older files).
fn rope_theta(k: &Keys) -> Result<f64> {
    let params = k.get("rope_parameters").or_else(|| k.get("rope_scaling"));
    if let Some(p) = params {
        let kind = p
            .get("rope_type")
            .or_else(|| p.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        if kind != "default" {
            return Err(k.err(format!(
                "key `rope_parameters`: rope type `{kind}` is not supported (default)"
            )));
        }
        if let Some(theta) = p.get("rope_theta").and_then(Value::as_f64) {
            return Ok(theta);
        }
    }
    k.float_or("rope_theta", 10000.0)
}

/// Where a model's config.json lives in a Hugging Face folder.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("config.json")
}
