//! Chat templates: how a conversation becomes the text a model reads, in one place for
//! every stage.
//!
//! A run chooses one with `[chat] template` ([`ChatConfig`]): the model folder's own Jinja
//! `chat_template` (its `chat_template.jinja`, else the one in `tokenizer_config.json`), the
//! built-in template of the embedded world, a Jinja file, or none (prompts used as given).
//! Jinja templates render as transformers' `apply_chat_template` does ([`jinja`]), and their
//! text is encoded without adding special tokens, as `apply_chat_template(...,
//! tokenize=True)` does: a template that wants a BOS writes `{{ bos_token }}`. Without a
//! template a prompt gets the BOS the tokenizer puts before any text
//! ([`ChatTemplate::encode_prompt`]).
//!
//! A prompt for generation is the conversation so far followed by the generation prompt
//! (the assistant's header), so the model continues with the response. The response itself
//! never contains the template: stages append the tokenizer's EOS after it when they train
//! on it.

mod jinja;
mod message;

pub use jinja::JinjaTemplate;
pub use message::{Message, Role};

use crate::config::{ChatConfig, TemplateKind};
use crate::tokenizer::Tokenizer;
use crate::{Error, Result};

/// The built-in template of the embedded world: `<|role|>\n` + content + `\n` per message,
/// and `<|assistant|>\n` as the generation prompt. Written with string literals only, so
/// Jinja's block trimming cannot touch its newlines.
pub const BUILTIN_SOURCE: &str = "{%- for message in messages -%}\n\
    {{ '<|' + message['role'] + '|>\\n' + message['content'] + '\\n' }}\n\
    {%- endfor -%}\n\
    {%- if add_generation_prompt -%}\n\
    {{ '<|assistant|>\\n' }}\n\
    {%- endif -%}";

/// The built-in template's role markers, which the embedded world's tokenizer holds as
/// special tokens (one id each).
pub const BUILTIN_MARKERS: [&str; 3] = ["<|system|>", "<|user|>", "<|assistant|>"];

const BUILTIN_ORIGIN: &str = "the built-in chat template";

/// How a run turns prompts and conversations into model input.
#[derive(Clone, Debug)]
pub enum ChatTemplate {
    /// A Jinja chat template: the model's own, the built-in one, or a file (boxed: a
    /// compiled environment is large).
    Jinja(Box<JinjaTemplate>),
    /// Prompts used as given; only a single user turn has a prompt.
    None,
}

impl ChatTemplate {
    /// The embedded world's template, for a tokenizer that adds no BOS (the world's).
    pub fn builtin() -> ChatTemplate {
        let template = JinjaTemplate::new(BUILTIN_SOURCE, BUILTIN_ORIGIN, Vec::new())
            .expect("the built-in template compiles");
        ChatTemplate::Jinja(Box::new(template))
    }

    /// The template `[chat]` chooses for the model folder `folder` and its tokenizer.
    pub fn choose(
        chat: &ChatConfig,
        tokenizer: &Tokenizer,
        folder: &std::path::Path,
    ) -> Result<ChatTemplate> {
        let jinja = |source: &str, origin: &str| {
            JinjaTemplate::new(source, origin, tokenizer.special_tokens_map())
                .map(|t| ChatTemplate::Jinja(Box::new(t)))
                .map_err(Error::Invalid)
        };
        match chat.template {
            TemplateKind::Model => match tokenizer.chat_template() {
                Some((source, origin)) => jinja(source, &origin.display().to_string()),
                None => Err(Error::format(
                    folder.join("tokenizer_config.json"),
                    "no chat_template (nor a chat_template.jinja beside it): choose \
                     another template (`[chat] template` or `--chat-template`): \"builtin\", \
                     a file, or \"none\"",
                )),
            },
            TemplateKind::Builtin => jinja(&builtin_source(tokenizer), BUILTIN_ORIGIN),
            TemplateKind::File => {
                let path = chat.file.as_deref().ok_or_else(|| {
                    Error::Invalid("chat.template = \"file\" needs chat.file".into())
                })?;
                let source = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
                jinja(&source, &path.display().to_string())
            }
            TemplateKind::None => Ok(ChatTemplate::None),
        }
    }

    /// The Jinja source, which a saved `tokenizer_config.json` advertises (none: no
    /// template).
    pub fn source(&self) -> Option<&str> {
        match self {
            ChatTemplate::Jinja(t) => Some(t.source()),
            ChatTemplate::None => None,
        }
    }

    /// The conversation as text, with the generation prompt when `add_generation_prompt`.
    pub fn render(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        match self {
            ChatTemplate::Jinja(t) => t
                .render(messages, add_generation_prompt)
                .map_err(Error::Invalid),
            ChatTemplate::None => match messages {
                [only] if only.role == Role::User && add_generation_prompt => {
                    Ok(only.content.clone())
                }
                _ => Err(Error::Invalid(
                    "chat.template is \"none\" (prompts used as given): only a single user \
                     message has a prompt; a conversation needs a chat template"
                        .into(),
                )),
            },
        }
    }

    /// A single-turn prompt, ready for generation.
    pub fn prompt(&self, user: &str) -> Result<String> {
        self.render(&[Message::new(Role::User, user)], true)
    }

    /// Splits a conversation into (prompt, response): the prompt is every message but the
    /// last, rendered with the generation prompt; the response is the content of the last
    /// message, which must be the assistant's. At least one user message is required.
    pub fn split_conversation(&self, messages: &[Message]) -> Result<(String, String)> {
        let Some((last, history)) = messages.split_last() else {
            return Err(Error::Invalid("conversation has no messages".into()));
        };
        if last.role != Role::Assistant {
            return Err(Error::Invalid(format!(
                "the last message of a conversation must be from the assistant, not the {}",
                last.role.as_str()
            )));
        }
        if !history.iter().any(|m| m.role == Role::User) {
            return Err(Error::Invalid(
                "conversation has no user message before the final assistant message".into(),
            ));
        }
        Ok((self.render(history, true)?, last.content.clone()))
    }

    /// The token ids of a rendered prompt: a template's text as it is (transformers encodes
    /// it with `add_special_tokens=False`); a prompt used as given after the BOS the
    /// tokenizer adds to any text (as `tokenizer(prompt)` does).
    pub fn encode_prompt(&self, tokenizer: &Tokenizer, text: &str) -> Result<Vec<i64>> {
        match self {
            ChatTemplate::Jinja(_) => tokenizer.encode(text),
            ChatTemplate::None => tokenizer.encode_with_bos(text),
        }
    }
}

/// The built-in template for `tokenizer`: with `{{ bos_token }}` first when the tokenizer
/// puts its BOS before every text, so the template's ids start as the tokenizer's always do
/// and the saved folder's template reproduces them in transformers.
fn builtin_source(tokenizer: &Tokenizer) -> String {
    match (tokenizer.bos_prefix(), tokenizer.bos_id()) {
        ([first], Some(bos)) if *first == bos => format!("{{{{- bos_token }}}}{BUILTIN_SOURCE}"),
        _ => BUILTIN_SOURCE.to_string(),
    }
}

#[cfg(test)]
mod tests;
