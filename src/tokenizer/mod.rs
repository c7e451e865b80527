//! The tokenizer: a Hugging Face `tokenizer.json` (any model the `tokenizers` crate reads)
//! plus the special-token roles the engine needs (EOS, padding, BOS), with ids as `i64` for
//! tch, and the chat template the folder carries, as transformers' tokenizer carries it.
//! Saved directories load in `transformers.AutoTokenizer` and encode to the same ids.
//!
//! BOS: transformers' `tokenizer(text)` puts a BOS before a text when `tokenizer_config.json`
//! says `add_bos_token: true`; when it names neither `add_bos_token` nor `add_eos_token`,
//! whatever the `tokenizer.json` post-processor puts first (Llama's `<s>`, Llama 3's
//! `<|begin_of_text|>`); nothing when there is no post-processor. [`Tokenizer::bos_prefix`]
//! is those ids.

#[cfg(test)]
mod tests;
mod train;

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use tokenizers::AddedToken;

use crate::{Error, Result};

/// The special-token names transformers passes to a chat template (its
/// `SPECIAL_TOKENS_ATTRIBUTES`).
const TEMPLATE_TOKENS: [&str; 7] = [
    "bos_token",
    "eos_token",
    "unk_token",
    "sep_token",
    "pad_token",
    "cls_token",
    "mask_token",
];

/// The file transformers saves a chat template in (it wins over `tokenizer_config.json`).
const CHAT_TEMPLATE_FILE: &str = "chat_template.jinja";

/// Looked for, in this order, when no `tokenizer_config.json` names the EOS token.
pub const EOS_CANDIDATES: [&str; 4] = ["<|endoftext|>", "</s>", "<|im_end|>", "<eos>"];

#[derive(Clone, Debug)]
pub struct Tokenizer {
    inner: tokenizers::Tokenizer,
    eos: String,
    pad: String,
    bos: Option<String>,
    model_max_length: Option<usize>,
    /// The ids `tokenizer(text)` puts before a text in transformers (see the module docs).
    bos_prefix: Vec<i64>,
    /// The chat template and the file it came from; `save` writes the template into
    /// `tokenizer_config.json`.
    chat_template: Option<(String, PathBuf)>,
    /// The other keys of the `tokenizer_config.json` it was loaded with, kept on save.
    config: Map<String, Value>,
}

impl Tokenizer {
    /// Loads `dir/tokenizer.json` (and `dir/tokenizer_config.json` when present).
    pub fn from_dir(dir: impl AsRef<Path>) -> Result<Tokenizer> {
        Tokenizer::from_file(dir.as_ref().join("tokenizer.json"))
    }

    /// Loads a `tokenizer.json`; a `tokenizer_config.json` in the same directory, when
    /// present, names the EOS, padding and BOS tokens and the maximum length.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Tokenizer> {
        let path = path.as_ref();
        let json = read_json(path)?;
        let inner: tokenizers::Tokenizer = serde_json::from_value(json)
            .map_err(|e| Error::format(path, format!("not a valid tokenizer: {e}")))?;
        let config_path = path.with_file_name("tokenizer_config.json");
        let config = if config_path.is_file() {
            match read_json(&config_path)? {
                Value::Object(map) => map,
                _ => return Err(Error::format(&config_path, "expected a JSON object")),
            }
        } else {
            Map::new()
        };
        let named = |key: &str| -> Result<Option<String>> {
            let Some(token) = config.get(key).and_then(token_content) else {
                return Ok(None);
            };
            match inner.token_to_id(&token) {
                Some(_) => Ok(Some(token)),
                None => Err(Error::format(
                    &config_path,
                    format!(
                        "{key} {token:?} is not in the vocabulary of {}",
                        path.display()
                    ),
                )),
            }
        };
        let eos = match named("eos_token")? {
            Some(eos) => eos,
            None => EOS_CANDIDATES
                .iter()
                .find(|t| inner.token_to_id(t).is_some())
                .ok_or_else(|| {
                    Error::format(
                        path,
                        format!(
                            "no end-of-sequence token: none of {} is in the vocabulary, and no \
                             tokenizer_config.json next to it names an eos_token",
                            EOS_CANDIDATES.join(", ")
                        ),
                    )
                })?
                .to_string(),
        };
        let pad = named("pad_token")?.unwrap_or_else(|| eos.clone());
        let bos = named("bos_token")?;
        // transformers writes int(1e30) for "no limit".
        let model_max_length = config
            .get("model_max_length")
            .and_then(Value::as_f64)
            .filter(|n| (1.0..1e15).contains(n))
            .map(|n| n as usize);
        let mut config = config;
        let chat_template = read_chat_template(&mut config, &config_path)?;
        for key in ["added_tokens_decoder", "auto_map", "tokenizer_file"] {
            config.remove(key);
        }
        let bos_prefix = bos_prefix(&inner, &config, bos.as_deref(), &config_path)?;
        Ok(Tokenizer {
            inner,
            eos,
            pad,
            bos,
            model_max_length,
            bos_prefix,
            chat_template,
            config,
        })
    }

    /// Writes `tokenizer.json`, `tokenizer_config.json` and `special_tokens_map.json` into
    /// `dir` (created if missing), the layout `AutoTokenizer.from_pretrained(dir)` reads.
    pub fn save(&self, dir: impl AsRef<Path>) -> Result<()> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        write(&dir.join("tokenizer.json"), self.to_json()?)?;
        let mut tokens = Map::new();
        tokens.insert("eos_token".into(), self.eos.clone().into());
        tokens.insert("pad_token".into(), self.pad.clone().into());
        if let Some(bos) = &self.bos {
            tokens.insert("bos_token".into(), bos.clone().into());
        }
        let mut config = self.config.clone();
        config.insert("tokenizer_class".into(), "PreTrainedTokenizerFast".into());
        config
            .entry("clean_up_tokenization_spaces")
            .or_insert(false.into());
        config.extend(tokens.clone());
        if let Some(n) = self.model_max_length {
            config.insert("model_max_length".into(), n.into());
        }
        if let Some((template, _)) = &self.chat_template {
            config.insert("chat_template".into(), template.clone().into());
        }
        // transformers reads a chat_template.jinja before tokenizer_config.json: a stale one
        // would advertise another template than the one written here.
        let stale = dir.join(CHAT_TEMPLATE_FILE);
        if stale.is_file() {
            std::fs::remove_file(&stale).map_err(|e| Error::io(&stale, e))?;
        }
        let pretty = |map: Map<String, Value>| {
            serde_json::to_string_pretty(&Value::Object(map)).expect("JSON values serialize")
        };
        write(&dir.join("tokenizer_config.json"), pretty(config))?;
        write(&dir.join("special_tokens_map.json"), pretty(tokens))
    }

    /// The `tokenizer.json` text, exactly as `save` writes it.
    pub fn to_json(&self) -> Result<String> {
        self.inner
            .to_string(true)
            .map_err(|e| Error::Invalid(format!("cannot serialize the tokenizer: {e}")))
    }

    /// [`Tokenizer::bos_prefix`] followed by the ids of `text`: what transformers'
    /// `tokenizer(text)` gives, less any EOS its post-processor appends. For text that is
    /// not chat-templated (prompts used as given, pretraining documents).
    pub fn encode_with_bos(&self, text: &str) -> Result<Vec<i64>> {
        let mut ids = self.bos_prefix.clone();
        ids.extend(self.encode(text)?);
        Ok(ids)
    }

    /// Token ids of `text`. Adds no BOS/EOS; special-token strings in the text become
    /// their single ids.
    pub fn encode(&self, text: &str) -> Result<Vec<i64>> {
        let encoding = self
            .inner
            .encode(text, false)
            .map_err(|e| Error::Invalid(format!("cannot tokenize {text:?}: {e}")))?;
        Ok(encoding.get_ids().iter().map(|&id| i64::from(id)).collect())
    }

    /// The text of `ids`, special tokens included.
    pub fn decode(&self, ids: &[i64]) -> Result<String> {
        let ids = ids
            .iter()
            .map(|&id| {
                u32::try_from(id)
                    .ok()
                    .filter(|&id| self.inner.id_to_token(id).is_some())
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "token id {id} is not in the vocabulary (size {})",
                            self.vocab_size()
                        ))
                    })
            })
            .collect::<Result<Vec<u32>>>()?;
        self.inner
            .decode(&ids, false)
            .map_err(|e| Error::Invalid(format!("cannot decode {ids:?}: {e}")))
    }

    /// Number of ids, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }

    pub fn eos_id(&self) -> i64 {
        self.id_of(&self.eos)
    }

    pub fn pad_id(&self) -> i64 {
        self.id_of(&self.pad)
    }

    pub fn eos_token(&self) -> &str {
        &self.eos
    }

    /// The ids transformers' `tokenizer(text)` puts before a text: `[bos]` for most Llama
    /// and Mistral tokenizers, none for GPT-2, Qwen and the embedded world's.
    pub fn bos_prefix(&self) -> &[i64] {
        &self.bos_prefix
    }

    /// The id of the token `tokenizer_config.json` names `bos_token`.
    pub fn bos_id(&self) -> Option<i64> {
        self.bos.as_deref().and_then(|t| self.token_id(t))
    }

    /// The chat template the folder carries (`chat_template.jinja`, else the
    /// `chat_template` of `tokenizer_config.json`) and the file it came from; after
    /// [`Tokenizer::set_chat_template`], the template set.
    pub fn chat_template(&self) -> Option<(&str, &Path)> {
        self.chat_template
            .as_ref()
            .map(|(source, origin)| (source.as_str(), origin.as_path()))
    }

    /// The chat template a run used, which `save` writes (None: the saved folder has no
    /// template). `origin` names it in errors.
    pub fn set_chat_template(&mut self, template: Option<(String, PathBuf)>) {
        self.chat_template = template;
    }

    /// The special tokens transformers passes to a chat template (`bos_token`,
    /// `eos_token`, ...), as `tokenizer_config.json` names them.
    pub fn special_tokens_map(&self) -> Vec<(String, String)> {
        TEMPLATE_TOKENS
            .iter()
            .filter_map(|key| {
                let token = self.config.get(*key).and_then(token_content)?;
                Some((key.to_string(), token))
            })
            .collect()
    }

    pub fn token_id(&self, token: &str) -> Option<i64> {
        self.inner.token_to_id(token).map(i64::from)
    }

    /// Adds special tokens (e.g. the chat template's role markers) that are not already
    /// in the vocabulary; returns how many new ids were created.
    pub fn add_special_tokens(&mut self, tokens: &[String]) -> usize {
        let before = self.vocab_size();
        let added: Vec<AddedToken> = tokens
            .iter()
            .map(|t| AddedToken::from(t.clone(), true))
            .collect();
        self.inner.add_special_tokens(&added);
        self.vocab_size() - before
    }

    /// The wrapped Hugging Face tokenizer.
    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    fn id_of(&self, token: &str) -> i64 {
        // Construction checks that the EOS and padding tokens are in the vocabulary.
        self.token_id(token).expect("special token in vocabulary")
    }
}

/// A special token in `tokenizer_config.json`: a string or `{"content": ...}`.
fn token_content(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Object(map) => map.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Takes the chat template out of the config (`save` writes the one in use): the
/// `chat_template.jinja` beside it when there is one, as transformers prefers it, else the
/// config's `chat_template`, a string or a list of named templates (the "default" one).
fn read_chat_template(
    config: &mut Map<String, Value>,
    config_path: &Path,
) -> Result<Option<(String, PathBuf)>> {
    let in_config = config.remove("chat_template");
    let file = config_path.with_file_name(CHAT_TEMPLATE_FILE);
    if file.is_file() {
        let source = std::fs::read_to_string(&file).map_err(|e| Error::io(&file, e))?;
        return Ok(Some((source, file)));
    }
    let found = |source: String| Ok(Some((source, config_path.to_path_buf())));
    match in_config {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(source)) => found(source),
        Some(Value::Array(named)) => {
            let default = named.iter().find_map(|t| {
                (t.get("name")?.as_str()? == "default")
                    .then(|| t.get("template")?.as_str().map(String::from))?
            });
            match default {
                Some(source) => found(source),
                None => Err(Error::format(
                    config_path,
                    "chat_template: a list of templates without one named \"default\"",
                )),
            }
        }
        Some(other) => Err(Error::format(
            config_path,
            format!("chat_template: expected a string, found {other}"),
        )),
    }
}

/// The ids transformers' `tokenizer(text)` puts before a text (see the module docs): an
/// explicit `add_bos_token` / `add_eos_token` in the config rebuilds the post-processor
/// with just those; otherwise `tokenizer.json`'s post-processor decides, and what it puts
/// before a one-letter text is read off its special-tokens mask.
fn bos_prefix(
    inner: &tokenizers::Tokenizer,
    config: &Map<String, Value>,
    bos: Option<&str>,
    config_path: &Path,
) -> Result<Vec<i64>> {
    let explicit = config.get("add_bos_token");
    if explicit.is_some() || config.contains_key("add_eos_token") {
        let add = match explicit {
            None | Some(Value::Null) => false,
            Some(Value::Bool(add)) => *add,
            Some(other) => {
                return Err(Error::format(
                    config_path,
                    format!("add_bos_token: expected true or false, found {other}"),
                ))
            }
        };
        let id = bos.and_then(|b| inner.token_to_id(b)).map(i64::from);
        return Ok(match (add, id) {
            (true, Some(id)) => vec![id],
            _ => Vec::new(),
        });
    }
    if inner.get_post_processor().is_none() {
        return Ok(Vec::new());
    }
    let Ok(encoding) = inner.encode("a", true) else {
        return Ok(Vec::new());
    };
    Ok(encoding
        .get_ids()
        .iter()
        .zip(encoding.get_special_tokens_mask())
        .take_while(|(_, &special)| special == 1)
        .map(|(&id, _)| i64::from(id))
        .collect())
}

fn read_json(path: &Path) -> Result<Value> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::format(path, format!("invalid JSON: {e}")))
}

fn write(path: &Path, text: String) -> Result<()> {
    std::fs::write(path, text).map_err(|e| Error::io(path, e))
}
