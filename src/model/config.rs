//! Hugging Face `config.json` -> resolved model configuration.
//!
//! The raw JSON is kept beside the resolved config so that saving writes back every key the
//! user's checkpoint had (tokenizer ids, custom fields) and only updates what we own.

use super::rope::{self, Rope};
use crate::{Error, Result};
use serde_json::{json, Map, Value};
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
}

/// Every `model_type` accepted, as error messages list them.
pub const MODEL_TYPES: &str = "gpt2, llama, mistral, qwen2, qwen3, gpt_neox";

/// `architectures[0]` prefixes (lower case, no underscores) and the `model_type` each means.
const CLASS_PREFIXES: [(&str, &str); 6] = [
    ("gpt2", "gpt2"),
    ("gptneox", "gpt_neox"),
    ("llama", "llama"),
    ("mistral", "mistral"),
    ("qwen2", "qwen2"),
    ("qwen3", "qwen3"),
];

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
pub(super) struct Keys<'a> {
    path: &'a Path,
    map: &'a Map<String, Value>,
}

impl<'a> Keys<'a> {
    pub(super) fn new(path: &'a Path, map: &'a Map<String, Value>) -> Self {
        Keys { path, map }
    }

    pub(super) fn err(&self, what: String) -> Error {
        Error::format(self.path, what)
    }

    pub(super) fn get(&self, key: &str) -> Option<&Value> {
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

    pub(super) fn float_or(&self, key: &str, default: f64) -> Result<f64> {
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
        let keys = Keys::new(path, map);
        let model_type = match keys.get("model_type").and_then(Value::as_str) {
            Some(t) => t.to_string(),
            None => from_architectures(&keys)?,
        };
        let config = match model_type.as_str() {
            "gpt2" => gpt2(&keys)?,
            "llama" | "qwen2" | "qwen3" | "mistral" => llama(&keys, &model_type)?,
            "gpt_neox" => neox(&keys)?,
            other => {
                return Err(keys.err(format!(
                    "unknown architecture `{other}` (key `model_type`); supported: {MODEL_TYPES}"
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
            Architecture::NeoX => json!({
                "architectures": ["GPTNeoXForCausalLM"],
                "model_type": "gpt_neox",
                "vocab_size": shape.vocab_size,
                "max_position_embeddings": shape.max_positions,
                "hidden_size": shape.hidden_size,
                "intermediate_size": 4 * shape.hidden_size,
                "num_hidden_layers": shape.num_layers,
                "num_attention_heads": shape.num_heads,
                "hidden_act": "gelu",
                "layer_norm_eps": 1e-5,
                "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.25},
                "use_parallel_residual": true,
                "attention_bias": true,
                "hidden_dropout": 0.0,
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

fn from_architectures(keys: &Keys) -> Result<String> {
    let arch = keys
        .get("architectures")
        .and_then(|a| a.get(0))
        .and_then(Value::as_str)
        .ok_or_else(|| keys.err("missing key `model_type` (and no `architectures`)".into()))?;
    let lower = arch.to_ascii_lowercase().replace('_', "");
    CLASS_PREFIXES
        .iter()
        .find(|(prefix, _)| lower.starts_with(prefix))
        .map(|(_, model_type)| model_type.to_string())
        .ok_or_else(|| {
            keys.err(format!(
                "unknown architecture `{arch}` (key `architectures`); supported: {MODEL_TYPES}"
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
    let activation = activation(k, "activation_function", "gelu_new")?;
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
        rope: None,
        qk_norm: false,
        parallel_residual: false,
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
    let qwen = model_type.starts_with("qwen");
    refuse_sliding_window(k, qwen)?;
    // Qwen3's class default is 128, not hidden / heads.
    let default_head_dim = if model_type == "qwen3" {
        128
    } else {
        hidden / heads
    };
    let head_dim = k.opt_int("head_dim")?.unwrap_or(default_head_dim);
    Ok(ModelConfig {
        arch: Architecture::Llama,
        model_type: model_type.into(),
        vocab_size: k.int("vocab_size")?,
        hidden_size: hidden,
        num_layers: k.int("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: k.opt_int("num_key_value_heads")?.unwrap_or(heads),
        head_dim,
        intermediate_size: k.int("intermediate_size")?,
        max_positions: k.int("max_position_embeddings")?,
        norm_eps: k.float_or("rms_norm_eps", 1e-6)?,
        activation: Activation::GeluTanh,
        rope: Some(rope::parse(k, head_dim, "rope_theta", 1.0)?),
        qk_norm: model_type == "qwen3",
        parallel_residual: false,
        qkv_bias: model_type == "qwen2" || attention_bias,
        out_bias: attention_bias,
        mlp_bias: k.bool_or("mlp_bias", false)?,
        tie_embeddings: k.bool_or("tie_word_embeddings", false)?,
        embd_dropout: 0.0,
        attn_dropout: k.float_or("attention_dropout", 0.0)?,
        resid_dropout: 0.0,
        eos_token_id: k.eos()?,
    })
}

/// Sliding-window attention is refused where a layer would use a window shorter than the
/// model's context: Mistral applies `sliding_window` to every layer, Qwen only with
/// `use_sliding_window` (to layers from `max_window_layers` on), and transformers 5
/// spells the choice out per layer in `layer_types`.
fn refuse_sliding_window(k: &Keys, qwen: bool) -> Result<()> {
    let Some(window) = k.opt_int("sliding_window")? else {
        return Ok(());
    };
    let layers = k.int("num_hidden_layers")?;
    let slides = match k.get("layer_types").and_then(Value::as_array) {
        Some(types) => types.iter().any(|t| t == "sliding_attention"),
        None => {
            k.bool_or("use_sliding_window", !qwen)?
                && (!qwen || k.opt_int("max_window_layers")?.unwrap_or(0) < layers)
        }
    };
    if slides && window < k.int("max_position_embeddings")? {
        return Err(k.err(format!(
            "key `sliding_window`: sliding-window attention ({window}) is not supported"
        )));
    }
    Ok(())
}

fn neox(k: &Keys) -> Result<ModelConfig> {
    let hidden = k.int("hidden_size")?;
    let heads = k.int("num_attention_heads")?;
    if hidden % heads != 0 {
        return Err(k.err(format!(
            "key `hidden_size`: {hidden} is not divisible into {heads} heads"
        )));
    }
    let head_dim = hidden / heads;
    let bias = k.bool_or("attention_bias", true)?;
    let hidden_dropout = k.float_or("hidden_dropout", 0.0)?;
    // Older files: `rotary_pct` and `rotary_emb_base`, with transformers' defaults.
    let rotary_pct = k.float_or("rotary_pct", 0.25)?;
    Ok(ModelConfig {
        arch: Architecture::NeoX,
        model_type: "gpt_neox".into(),
        vocab_size: k.int("vocab_size")?,
        hidden_size: hidden,
        num_layers: k.int("num_hidden_layers")?,
        num_heads: heads,
        num_kv_heads: heads,
        head_dim,
        intermediate_size: k.int("intermediate_size")?,
        max_positions: k.int("max_position_embeddings")?,
        norm_eps: k.float_or("layer_norm_eps", 1e-5)?,
        activation: activation(k, "hidden_act", "gelu")?,
        rope: Some(rope::parse(k, head_dim, "rotary_emb_base", rotary_pct)?),
        qk_norm: false,
        parallel_residual: k.bool_or("use_parallel_residual", true)?,
        qkv_bias: bias,
        out_bias: bias,
        mlp_bias: true,
        tie_embeddings: k.bool_or("tie_word_embeddings", false)?,
        embd_dropout: hidden_dropout,
        attn_dropout: k.float_or("attention_dropout", 0.0)?,
        resid_dropout: hidden_dropout,
        eos_token_id: k.eos()?,
    })
}

/// The GELU / ReLU MLP activations of GPT-2 and GPT-NeoX.
fn activation(k: &Keys, key: &str, default: &str) -> Result<Activation> {
    match k.str_or(key, default)? {
        "gelu_new" | "gelu_pytorch_tanh" | "gelu_fast" => Ok(Activation::GeluTanh),
        "gelu" => Ok(Activation::GeluExact),
        "relu" => Ok(Activation::Relu),
        other => Err(k.err(format!(
            "key `{key}`: `{other}` is not supported (gelu_new, gelu, relu)"
        ))),
    }
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
    fn model_types_follow_architectures_when_missing() {
        for (class, model_type) in [
            ("GPTNeoXForCausalLM", "gpt_neox"),
            ("Qwen3ForSequenceClassification", "qwen3"),
            ("GPT2LMHeadModel", "gpt2"),
        ] {
            let map = Map::from_iter([("architectures".to_string(), json!([class]))]);
            let keys = Keys::new(Path::new("config.json"), &map);
            assert_eq!(from_architectures(&keys).unwrap(), model_type);
        }
        let err = parse(llama_like("gemma")).unwrap_err().to_string();
        assert_eq!(
            err,
            format!("config.json: unknown architecture `gemma` (key `model_type`); supported: {MODEL_TYPES}")
        );
    }

    #[test]
    fn sliding_windows_are_refused_only_where_a_layer_would_slide() {
        let with = |extra: Value| {
            let mut raw = llama_like("mistral");
            raw.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            parse(raw)
        };
        let err = with(json!({"sliding_window": 16})).unwrap_err().to_string();
        assert!(
            err.contains("key `sliding_window`: sliding-window attention (16) is not supported"),
            "{err}"
        );
        assert!(
            with(json!({"sliding_window": 64})).is_ok(),
            "a window as long as the context"
        );
        assert!(with(json!({"sliding_window": null})).is_ok());
        // Qwen: only with use_sliding_window, from max_window_layers on.
        let mut qwen = llama_like("qwen3");
        qwen["sliding_window"] = json!(16);
        assert!(parse(qwen.clone()).is_ok());
        qwen["use_sliding_window"] = json!(true);
        qwen["max_window_layers"] = json!(2);
        assert!(parse(qwen.clone()).is_ok(), "no layer from 2 on");
        qwen["max_window_layers"] = json!(1);
        assert!(parse(qwen.clone()).is_err());
        // transformers 5 lists each layer's kind.
        qwen["layer_types"] = json!(["full_attention", "full_attention"]);
        assert!(parse(qwen.clone()).is_ok());
        qwen["layer_types"] = json!(["full_attention", "sliding_attention"]);
        assert!(parse(qwen).is_err());
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
