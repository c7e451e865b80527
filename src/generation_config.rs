//! `generation_config.json`: the ids generation stops at and the model's sampling defaults,
//! read from a model folder and written into every folder `rlhf` saves.
//!
//! Stop ids: the tokenizer's EOS (what training appends to every response), then every
//! `eos_token_id` of `generation_config.json` and of `config.json`, each an integer or a
//! list of them (Llama 3 and Qwen instruct models stop at several). Sampling defaults:
//! `do_sample` (false: greedy), `temperature`, `top_k`, `top_p` and `max_new_tokens`, for
//! the command-line flags a user leaves out. Saving keeps every key the folder had and
//! writes the stop ids and the padding and BOS ids.

use std::path::Path;

use serde_json::{Map, Value};

use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

const FILE: &str = "generation_config.json";

/// A model folder's generation settings.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerationConfig {
    /// `generation_config.json` as read (empty when there was none), written back on save.
    raw: Map<String, Value>,
    /// Every id that ends a response, the tokenizer's EOS first.
    eos_token_ids: Vec<i64>,
}

/// The sampling settings a model's `generation_config.json` gives (None: not given).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SamplingDefaults {
    /// `do_sample = false` in the file.
    pub greedy: Option<bool>,
    pub temperature: Option<f64>,
    pub top_k: Option<i64>,
    pub top_p: Option<f64>,
    pub max_new_tokens: Option<i64>,
}

impl GenerationConfig {
    /// The settings of a new model with this tokenizer: it stops at the tokenizer's EOS.
    pub fn for_tokenizer(tokenizer: &Tokenizer) -> GenerationConfig {
        GenerationConfig {
            raw: Map::new(),
            eos_token_ids: vec![tokenizer.eos_id()],
        }
    }

    /// Reads `dir/generation_config.json` and the `eos_token_id` of `dir/config.json`
    /// (either may be missing). Errors name the file and the key.
    pub fn load(dir: &Path, tokenizer: &Tokenizer) -> Result<GenerationConfig> {
        let mut out = GenerationConfig::for_tokenizer(tokenizer);
        let path = dir.join(FILE);
        if path.is_file() {
            out.raw = read_object(&path)?;
            out.add_eos(&out.raw.clone(), &path)?;
            out.sampling_defaults_at(&path)?;
        }
        let config = dir.join("config.json");
        if config.is_file() {
            out.add_eos(&read_object(&config)?, &config)?;
        }
        Ok(out)
    }

    /// Every id that ends a response, the tokenizer's EOS first, without repeats.
    pub fn eos_token_ids(&self) -> &[i64] {
        &self.eos_token_ids
    }

    /// What the folder's `generation_config.json` says about sampling.
    pub fn sampling_defaults(&self) -> SamplingDefaults {
        self.sampling_defaults_at(Path::new(FILE))
            .expect("checked when loaded")
    }

    /// Writes `dir/generation_config.json`: the folder's keys, with `eos_token_id` the stop
    /// ids (an integer when there is one), and `pad_token_id` and `bos_token_id` from the
    /// tokenizer where the file names none.
    pub fn save(&self, dir: &Path, tokenizer: &Tokenizer) -> Result<()> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let mut raw = self.raw.clone();
        let eos = match self.eos_token_ids.as_slice() {
            [one] => Value::from(*one),
            many => Value::from(many.to_vec()),
        };
        raw.insert("eos_token_id".into(), eos);
        raw.entry("pad_token_id")
            .or_insert_with(|| tokenizer.pad_id().into());
        if let Some(bos) = tokenizer.bos_id() {
            raw.entry("bos_token_id").or_insert_with(|| bos.into());
        }
        let text = serde_json::to_string_pretty(&Value::Object(raw)).expect("JSON serializes");
        let path = dir.join(FILE);
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))
    }

    /// Adds the `eos_token_id` (integer or list) of a JSON object read from `path`.
    fn add_eos(&mut self, object: &Map<String, Value>, path: &Path) -> Result<()> {
        let bad = |v: &Value| {
            Error::format(
                path,
                format!("key `eos_token_id`: expected a token id or a list of them, got {v}"),
            )
        };
        let ids: Vec<i64> = match object.get("eos_token_id") {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_i64().filter(|&i| i >= 0).ok_or_else(|| bad(v)))
                .collect::<Result<_>>()?,
            Some(v) => vec![v.as_i64().filter(|&i| i >= 0).ok_or_else(|| bad(v))?],
        };
        for id in ids {
            if !self.eos_token_ids.contains(&id) {
                self.eos_token_ids.push(id);
            }
        }
        Ok(())
    }

    fn sampling_defaults_at(&self, path: &Path) -> Result<SamplingDefaults> {
        let key = |name: &str| self.raw.get(name).filter(|v| !v.is_null());
        let bad = |name: &str, what: &str, v: &Value| {
            Error::format(path, format!("key `{name}`: expected {what}, got {v}"))
        };
        let number = |name: &str| -> Result<Option<f64>> {
            key(name)
                .map(|v| v.as_f64().ok_or_else(|| bad(name, "a number", v)))
                .transpose()
        };
        let integer = |name: &str| -> Result<Option<i64>> {
            key(name)
                .map(|v| v.as_i64().ok_or_else(|| bad(name, "an integer", v)))
                .transpose()
        };
        let greedy = key("do_sample")
            .map(|v| {
                v.as_bool()
                    .map(|sample| !sample)
                    .ok_or_else(|| bad("do_sample", "true or false", v))
            })
            .transpose()?;
        Ok(SamplingDefaults {
            greedy,
            temperature: number("temperature")?,
            top_k: integer("top_k")?,
            top_p: number("top_p")?,
            max_new_tokens: integer("max_new_tokens")?,
        })
    }
}

fn read_object(path: &Path) -> Result<Map<String, Value>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    match serde_json::from_str(&text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::format(path, "expected a JSON object")),
        Err(e) => Err(Error::format(path, format!("invalid JSON: {e}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::world::prose::corpus;

    fn scratch(name: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!("rlhf-gencfg-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn tokenizer() -> Tokenizer {
        Tokenizer::train_bpe(
            &corpus(1, 40),
            300,
            &["<|endoftext|>", "<|eot|>", "<|pad|>"],
        )
        .unwrap()
    }

    #[test]
    fn stop_ids_join_the_tokenizer_generation_config_and_config() {
        let tok = tokenizer();
        let dir = scratch("stop");
        assert_eq!(
            GenerationConfig::load(&dir, &tok).unwrap().eos_token_ids(),
            [0]
        );
        std::fs::write(
            dir.join(FILE),
            r#"{"eos_token_id": [1, 0], "do_sample": true, "temperature": 0.6, "top_p": 0.9}"#,
        )
        .unwrap();
        std::fs::write(dir.join("config.json"), r#"{"eos_token_id": 2}"#).unwrap();
        let g = GenerationConfig::load(&dir, &tok).unwrap();
        assert_eq!(g.eos_token_ids(), [0, 1, 2]);
        assert_eq!(
            g.sampling_defaults(),
            SamplingDefaults {
                greedy: Some(false),
                temperature: Some(0.6),
                top_p: Some(0.9),
                ..SamplingDefaults::default()
            }
        );
        // Saved: the folder's keys, every stop id, padding from the tokenizer.
        let out = scratch("stop-out");
        g.save(&out, &tok).unwrap();
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(FILE)).unwrap()).unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"eos_token_id": [0, 1, 2], "do_sample": true,
                               "temperature": 0.6, "top_p": 0.9, "pad_token_id": 0})
        );
        let back = GenerationConfig::load(&out, &tok).unwrap();
        assert_eq!(back.eos_token_ids(), g.eos_token_ids());
        assert_eq!(back.sampling_defaults(), g.sampling_defaults());
        GenerationConfig::for_tokenizer(&tok)
            .save(&out, &tok)
            .unwrap();
        let saved: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join(FILE)).unwrap()).unwrap();
        assert_eq!(
            saved,
            serde_json::json!({"eos_token_id": 0, "pad_token_id": 0})
        );
    }

    #[test]
    fn bad_values_name_the_file_and_key() {
        let tok = tokenizer();
        let dir = scratch("bad");
        let cases = [
            (
                FILE,
                r#"{"eos_token_id": "x"}"#,
                "key `eos_token_id`: expected a token id",
            ),
            (FILE, r#"{"eos_token_id": [1, -2]}"#, "got -2"),
            (
                FILE,
                r#"{"temperature": "hot"}"#,
                "key `temperature`: expected a number",
            ),
            (
                FILE,
                r#"{"do_sample": 1}"#,
                "key `do_sample`: expected true or false",
            ),
            (FILE, "[]", "expected a JSON object"),
            (
                "config.json",
                r#"{"eos_token_id": 1.5}"#,
                "config.json: key `eos_token_id`",
            ),
        ];
        for (file, text, expected) in cases {
            let _ = std::fs::remove_file(dir.join(FILE));
            let _ = std::fs::remove_file(dir.join("config.json"));
            std::fs::write(dir.join(file), text).unwrap();
            let err = GenerationConfig::load(&dir, &tok).unwrap_err().to_string();
            assert!(
                err.contains(file) && err.contains(expected),
                "{text}: {err}"
            );
        }
    }
}
