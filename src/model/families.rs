//! How each family's `config.json` resolves into a [`ModelConfig`]: the keys it reads,
//! transformers' class defaults where a key is absent, and one-line errors naming the
//! file and the key for what is refused.

use super::config::{Activation, Architecture, ModelConfig, MODEL_TYPES};
use super::rope::{Rope, RopeScaling};
use crate::{Error, Result};
use serde_json::{Map, Value};
use std::path::Path;

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
            "gemma2" => gemma2(&keys)?,
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
}

/// `architectures[0]` prefixes (lower case, no underscores) and the `model_type` each means.
const CLASS_PREFIXES: [(&str, &str); 7] = [
    ("gemma2", "gemma2"),
    ("gpt2", "gpt2"),
    ("gptneox", "gpt_neox"),
    ("llama", "llama"),
    ("mistral", "mistral"),
    ("qwen2", "qwen2"),
    ("qwen3", "qwen3"),
];

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

pub(super) fn from_architectures(keys: &Keys) -> Result<String> {
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

pub(super) fn gpt2(k: &Keys) -> Result<ModelConfig> {
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
        attn_scale: None,
        attn_softcap: None,
        final_softcap: None,
        layer_windows: Vec::new(),
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

pub(super) fn llama(k: &Keys, model_type: &str) -> Result<ModelConfig> {
    let hidden = k.int("hidden_size")?;
    let heads = k.int("num_attention_heads")?;
    // Gemma's activation is `hidden_activation` (its files may repeat it here).
    let act = k.str_or("hidden_act", "silu")?;
    if act != "silu" && model_type != "gemma2" {
        return Err(k.err(format!("key `hidden_act`: `{act}` is not supported (silu)")));
    }
    let attention_bias = k.bool_or("attention_bias", false)?;
    let layers = k.int("num_hidden_layers")?;
    // The class defaults of transformers where head_dim is not hidden / heads.
    let default_head_dim = match model_type {
        "qwen3" => 128,
        "gemma2" => 256,
        _ => hidden / heads,
    };
    let head_dim = k.opt_int("head_dim")?.unwrap_or(default_head_dim);
    Ok(ModelConfig {
        arch: Architecture::Llama,
        model_type: model_type.into(),
        vocab_size: k.int("vocab_size")?,
        hidden_size: hidden,
        num_layers: layers,
        num_heads: heads,
        num_kv_heads: k.opt_int("num_key_value_heads")?.unwrap_or(heads),
        head_dim,
        intermediate_size: k.int("intermediate_size")?,
        max_positions: k.int("max_position_embeddings")?,
        norm_eps: k.float_or("rms_norm_eps", 1e-6)?,
        activation: Activation::Silu,
        rope: Some(rope(k, head_dim, "rope_theta", 1.0)?),
        qk_norm: model_type == "qwen3",
        parallel_residual: false,
        attn_scale: None,
        attn_softcap: None,
        final_softcap: None,
        layer_windows: sliding_windows(k, model_type, layers)?,
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

/// Each layer's sliding window, as transformers reads it: Mistral slides every layer when
/// `sliding_window` is set (4096 when the key is absent); Qwen only with
/// `use_sliding_window`, on the layers `layer_types` names (else from `max_window_layers`
/// on); Llama never. A window as long as the context is no window.
fn sliding_windows(k: &Keys, model_type: &str, layers: i64) -> Result<Vec<Option<i64>>> {
    let qwen = model_type.starts_with("qwen");
    let window = match model_type {
        "mistral" => window_key(k)?,
        _ if qwen && k.bool_or("use_sliding_window", false)? => window_key(k)?,
        _ => None,
    };
    let Some(window) = window else {
        return Ok(vec![None; layers as usize]);
    };
    let sliding: Vec<bool> = match k.get("layer_types") {
        Some(types) if qwen => layer_types(k, types, layers)?,
        None if qwen => {
            let from = k.opt_int("max_window_layers")?.unwrap_or(28);
            (0..layers).map(|i| i >= from).collect()
        }
        _ => vec![true; layers as usize],
    };
    Ok(sliding.into_iter().map(|s| s.then_some(window)).collect())
}

pub(super) fn neox(k: &Keys) -> Result<ModelConfig> {
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
        rope: Some(rope(k, head_dim, "rotary_emb_base", rotary_pct)?),
        qk_norm: false,
        parallel_residual: k.bool_or("use_parallel_residual", true)?,
        attn_scale: None,
        attn_softcap: None,
        final_softcap: None,
        layer_windows: Vec::new(),
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

/// Gemma 2: the Llama family's keys, plus its own.
pub(super) fn gemma2(k: &Keys) -> Result<ModelConfig> {
    let base = llama(k, "gemma2")?;
    let activation = activation(k, "hidden_activation", "gelu_pytorch_tanh")?;
    if activation == Activation::Relu {
        return Err(k.err(
            "key `hidden_activation`: `relu` is not supported (gelu_pytorch_tanh, gelu)".into(),
        ));
    }
    if k.bool_or("use_bidirectional_attention", false)? {
        return Err(k.err("key `use_bidirectional_attention`: only false is supported".into()));
    }
    let softcap = |key: &str, default: f64| -> Result<Option<f64>> {
        match k.map.get(key) {
            Some(Value::Null) => Ok(None),
            _ => k.float_or(key, default).map(Some),
        }
    };
    let window = window_key(k)?;
    // transformers' default: layers 0, 2, 4, ... slide.
    let sliding: Vec<bool> = match k.get("layer_types") {
        None => (0..base.num_layers).map(|i| i % 2 == 0).collect(),
        Some(types) => layer_types(k, types, base.num_layers)?,
    };
    Ok(ModelConfig {
        arch: Architecture::Gemma2,
        activation,
        attn_scale: Some(k.float_or("query_pre_attn_scalar", 256.0)?.powf(-0.5)),
        attn_softcap: softcap("attn_logit_softcapping", 50.0)?,
        final_softcap: softcap("final_logit_softcapping", 30.0)?,
        layer_windows: sliding.iter().map(|&s| window.filter(|_| s)).collect(),
        tie_embeddings: k.bool_or("tie_word_embeddings", true)?,
        ..base
    })
}

/// `sliding_window` (transformers' class default 4096 when the key is absent), or None
/// when null or no shorter than the context.
fn window_key(k: &Keys) -> Result<Option<i64>> {
    let window = match k.map.get("sliding_window") {
        None => Some(4096),
        Some(_) => k.opt_int("sliding_window")?,
    };
    let max_positions = k.int("max_position_embeddings")?;
    Ok(window.filter(|&w| w < max_positions))
}

/// `layer_types`: which of `layers` layers use a sliding window.
fn layer_types(k: &Keys, types: &Value, layers: i64) -> Result<Vec<bool>> {
    let list = types
        .as_array()
        .filter(|list| list.len() as i64 == layers)
        .ok_or_else(|| {
            k.err(format!(
                "key `layer_types`: expected a list of {layers} layer types"
            ))
        })?;
    list.iter()
        .map(|t| match t.as_str() {
            Some("sliding_attention") => Ok(true),
            Some("full_attention") => Ok(false),
            other => Err(k.err(format!(
                "key `layer_types`: `{}` is not supported (full_attention, sliding_attention)",
                other.map_or_else(|| t.to_string(), str::to_string)
            ))),
        })
        .collect()
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

/// The rope types `rope` accepts, for error messages.
const ROPE_TYPES: &str = "default, llama3";

/// The rope of a config: `rope_parameters` (transformers 5), else the top-level
/// `theta_key` (`rope_theta`; NeoX's `rotary_emb_base`) with `rope_scaling` (older
/// files). `rotary_fraction` is the share of each head that rotates when the parameters
/// do not say (NeoX's `rotary_pct`); other architectures pass 1.
fn rope(k: &Keys, head_dim: i64, theta_key: &str, rotary_fraction: f64) -> Result<Rope> {
    let key = if k.get("rope_parameters").is_some() {
        "rope_parameters"
    } else {
        "rope_scaling"
    };
    let params = k.get(key);
    let field = |name: &str| params.and_then(|p| p.get(name)).filter(|v| !v.is_null());
    let number = |name: &str| -> Result<Option<f64>> {
        match field(name) {
            None => Ok(None),
            Some(v) => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| k.err(format!("key `{key}.{name}`: expected a number, got {v}"))),
        }
    };
    let kind = field("rope_type")
        .or_else(|| field("type"))
        .map(|v| {
            v.as_str()
                .ok_or_else(|| k.err(format!("key `{key}.rope_type`: expected a string, got {v}")))
        })
        .transpose()?
        .unwrap_or("default");
    let theta = match number("rope_theta")? {
        Some(theta) => theta,
        None => k.float_or(theta_key, 10000.0)?,
    };
    if !(theta > 1.0 && theta.is_finite()) {
        return Err(k.err(format!(
            "key `{theta_key}`: expected a number > 1, got {theta}"
        )));
    }
    let fraction = number("partial_rotary_factor")?.unwrap_or(rotary_fraction);
    if !(fraction > 0.0 && fraction <= 1.0) {
        return Err(k.err(format!(
            "key `{key}.partial_rotary_factor`: expected a fraction in (0, 1], got {fraction}"
        )));
    }
    // transformers truncates: int(head_dim * fraction).
    let dims = (head_dim as f64 * fraction) as i64;
    if dims < 2 || dims % 2 != 0 {
        return Err(k.err(format!(
            "rotary dimensions {dims} (head_dim {head_dim} x {fraction}) must be even and at least 2"
        )));
    }
    let scaling = match kind {
        "default" => RopeScaling::None,
        "llama3" => {
            let need = |name: &str| -> Result<f64> {
                number(name)?
                    .ok_or_else(|| k.err(format!("key `{key}`: rope type llama3 needs `{name}`")))
            };
            let scaling = RopeScaling::Llama3 {
                factor: need("factor")?,
                low_freq_factor: need("low_freq_factor")?,
                high_freq_factor: need("high_freq_factor")?,
                original_max_positions: need("original_max_position_embeddings")?,
            };
            check_llama3(k, key, &scaling)?;
            scaling
        }
        other => {
            return Err(k.err(format!(
                "key `{key}`: rope type `{other}` is not supported ({ROPE_TYPES})"
            )))
        }
    };
    Ok(Rope {
        theta,
        dims,
        scaling,
    })
}

fn check_llama3(k: &Keys, key: &str, scaling: &RopeScaling) -> Result<()> {
    let RopeScaling::Llama3 {
        factor,
        low_freq_factor,
        high_freq_factor,
        original_max_positions,
    } = *scaling
    else {
        return Ok(());
    };
    let positive = [
        ("factor", factor),
        ("low_freq_factor", low_freq_factor),
        ("high_freq_factor", high_freq_factor),
        ("original_max_position_embeddings", original_max_positions),
    ];
    if let Some((name, v)) = positive.iter().find(|(_, v)| !(*v > 0.0 && v.is_finite())) {
        return Err(k.err(format!(
            "key `{key}.{name}`: expected a positive number, got {v}"
        )));
    }
    if high_freq_factor <= low_freq_factor {
        return Err(k.err(format!(
            "key `{key}`: high_freq_factor {high_freq_factor} must exceed low_freq_factor {low_freq_factor}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rope_of(raw: Value) -> Result<Rope> {
        let map = raw.as_object().unwrap().clone();
        let keys = Keys::new(Path::new("config.json"), &map);
        rope(&keys, 8, "rope_theta", 1.0)
    }

    #[test]
    fn llama3_rope_reads_either_spelling() {
        let new = rope_of(
            json!({"rope_parameters": {"rope_type": "llama3", "rope_theta": 10.0,
            "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}}),
        )
        .unwrap();
        let old = rope_of(json!({"rope_scaling": {"type": "llama3", "factor": 8.0,
            "low_freq_factor": 1.0, "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64}, "rope_theta": 10.0}))
        .unwrap();
        assert_eq!(new, old);
        assert_eq!(
            new.scaling,
            RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_positions: 64.0
            }
        );
    }

    #[test]
    fn unsupported_rope_types_name_the_key_and_the_accepted_ones() {
        for (raw, key) in [
            (
                json!({"rope_scaling": {"type": "yarn", "factor": 4.0}}),
                "rope_scaling",
            ),
            (
                json!({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}),
                "rope_parameters",
            ),
        ] {
            let err = rope_of(raw).unwrap_err().to_string();
            assert!(
                err.starts_with("config.json: key `")
                    && err.contains(key)
                    && err.contains("is not supported (default, llama3)"),
                "{err}"
            );
        }
        let err = rope_of(json!({"rope_scaling": {"rope_type": "llama3", "factor": 8.0}}))
            .unwrap_err()
            .to_string();
        assert!(err.contains("needs `low_freq_factor`"), "{err}");
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
        let raw = json!({"model_type": "gemma", "hidden_size": 32});
        let err = ModelConfig::from_json(&raw, Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            format!("config.json: unknown architecture `gemma` (key `model_type`); supported: {MODEL_TYPES}")
        );
    }
}
