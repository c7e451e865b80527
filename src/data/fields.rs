//! Field values every reader shares, in TRL's standard form (a string) and conversational
//! form (a list of `{"role", "content"}` messages): prompts, completions, and the implicit
//! prompt of a preference pair.

use serde_json::Value;

use super::jsonl::{kind, Record};
use crate::template::{ChatTemplate, Message, Role};
use crate::{Error, Result};

/// `text` unless it is empty or only whitespace.
pub(crate) fn non_empty<'a>(r: &Record, field: &str, text: &'a str) -> Result<&'a str> {
    if text.trim().is_empty() {
        return Err(r.field_error(field, "empty"));
    }
    Ok(text)
}

/// The text of an `Error::Invalid` (the template's complaint about a conversation).
pub(crate) fn invalid_message(e: Error) -> String {
    match e {
        Error::Invalid(message) => message,
        other => other.to_string(),
    }
}

/// A prompt field's messages: a string is one user message; a list of messages must hold
/// a user message and must not end with the assistant's (the model answers it).
pub(crate) fn prompt_messages(r: &Record, field: &str) -> Result<Vec<Message>> {
    let messages = match r.get(field) {
        Some(Value::Array(_)) => parse_messages(r, field)?,
        _ => vec![Message::new(
            Role::User,
            non_empty(r, field, r.str(field)?)?,
        )],
    };
    check_prompt(r, field, &messages)?;
    Ok(messages)
}

/// A conversation that a prompt may end: at least one user message, and not ending with
/// the assistant.
pub(crate) fn check_prompt(r: &Record, field: &str, messages: &[Message]) -> Result<()> {
    if is_prompt(messages) {
        return Ok(());
    }
    let why = if messages.iter().any(|m| m.role == Role::User) {
        "a prompt must not end with an assistant message (the model writes that one)"
    } else {
        "no user message"
    };
    Err(r.field_error(field, why))
}

/// Whether `messages` can end a prompt ([`check_prompt`] says why not).
pub(crate) fn is_prompt(messages: &[Message]) -> bool {
    messages.iter().any(|m| m.role == Role::User)
        && !messages.last().is_some_and(|m| m.role == Role::Assistant)
}

/// A prompt rendered by the run's template, ready for generation; the template's refusal
/// is an error naming `field`.
pub(crate) fn render_prompt(
    r: &Record,
    field: &str,
    template: &ChatTemplate,
    messages: &[Message],
) -> Result<String> {
    template
        .render(messages, true)
        .map_err(|e| r.field_error(field, invalid_message(e)))
}

/// A completion: a non-empty string, or a list of exactly one assistant message (TRL's
/// conversational completion).
pub(crate) fn completion(r: &Record, field: &str) -> Result<String> {
    match r.get(field) {
        Some(value @ Value::Array(_)) => completion_value(r, field, value),
        _ => Ok(non_empty(r, field, r.str(field)?)?.to_string()),
    }
}

/// [`completion`] for a value inside a field, e.g. `responses[2]`, named `field` in errors.
pub(crate) fn completion_value(r: &Record, field: &str, value: &Value) -> Result<String> {
    match value {
        Value::String(text) => Ok(non_empty(r, field, text)?.to_string()),
        Value::Array(items) => {
            let messages = message_list(r, field, items)?;
            assistant_reply(r, field, &messages, 0)
        }
        _ => Err(r.field_error(field, "expected a string or a list of messages")),
    }
}

/// The content of `messages`, which are `field[first..]`, when it is a single non-empty
/// assistant message.
fn assistant_reply(r: &Record, field: &str, messages: &[Message], first: usize) -> Result<String> {
    match messages {
        [only] if only.role == Role::Assistant => {
            Ok(non_empty(r, &format!("{field}[{first}].content"), &only.content)?.to_string())
        }
        [only] => Err(r.field_error(
            &format!("{field}[{first}].role"),
            format!("expected \"assistant\", not {:?}", only.role.as_str()),
        )),
        _ => {
            let after = if first > 0 {
                " after the shared prompt"
            } else {
                ""
            };
            Err(r.field_error(
                field,
                format!(
                    "expected one assistant message{after}, found {}",
                    messages.len()
                ),
            ))
        }
    }
}

/// The prompt `chosen` and `rejected` share when a preference record has no `prompt` (TRL's
/// implicit prompt), and the two responses after it.
///
/// Conversational: the messages both lists start with; each must then hold one assistant
/// message. Standard (strings): the longest common prefix, backed off to the last
/// whitespace in it so that no word is split; the whitespace goes with the responses.
pub(crate) fn implicit_prompt(r: &Record) -> Result<(Vec<Message>, [String; 2])> {
    let fields = ["chosen", "rejected"];
    match (r.get("chosen"), r.get("rejected")) {
        (Some(Value::Array(_)), Some(Value::Array(_))) => {
            let [chosen, rejected] = fields.map(|f| parse_messages(r, f));
            let (chosen, rejected) = (chosen?, rejected?);
            let shared = chosen
                .iter()
                .zip(&rejected)
                .take_while(|(a, b)| a == b)
                .count();
            let prompt = chosen[..shared].to_vec();
            if !is_prompt(&prompt) {
                return Err(r.field_error(
                    "chosen",
                    "`chosen` and `rejected` do not start with a shared prompt that ends with \
                     a user message (give `prompt`)",
                ));
            }
            let replies = [(&chosen, "chosen"), (&rejected, "rejected")]
                .map(|(m, f)| assistant_reply(r, f, &m[shared..], shared));
            let [chosen, rejected] = replies;
            Ok((prompt, [chosen?, rejected?]))
        }
        (Some(Value::String(chosen)), Some(Value::String(rejected))) => {
            let common: usize = chosen
                .chars()
                .zip(rejected.chars())
                .take_while(|(a, b)| a == b)
                .map(|(c, _)| c.len_utf8())
                .sum();
            let cut = chosen[..common]
                .rfind(char::is_whitespace)
                .map(|i| chosen[..i].trim_end().len())
                .unwrap_or(0);
            let prompt = &chosen[..cut];
            if prompt.trim().is_empty() {
                return Err(r.field_error(
                    "chosen",
                    "`chosen` and `rejected` share no prompt (give `prompt`)",
                ));
            }
            let replies = [(chosen, "chosen"), (rejected, "rejected")]
                .map(|(text, f)| non_empty(r, f, &text[cut..]).map(String::from));
            let [chosen, rejected] = replies;
            Ok((vec![Message::new(Role::User, prompt)], [chosen?, rejected?]))
        }
        _ => {
            // Both strings, or both lists: name the first field that is neither.
            for f in fields {
                if !matches!(r.get(f), Some(Value::String(_) | Value::Array(_))) {
                    r.str(f)?;
                    return Err(r.field_error(f, "expected a string or a list of messages"));
                }
            }
            Err(r.field_error(
                "rejected",
                "`chosen` and `rejected` must both be strings or both lists of messages",
            ))
        }
    }
}

/// `[{"role": "system" | "user" | "assistant", "content": "..."}, ...]`.
pub(crate) fn parse_messages(r: &Record, field: &str) -> Result<Vec<Message>> {
    message_list(r, field, r.array(field)?)
}

/// The messages of `items`, the value of `field`.
fn message_list(r: &Record, field: &str, items: &[Value]) -> Result<Vec<Message>> {
    if items.is_empty() {
        return Err(r.field_error(field, "empty"));
    }
    items
        .iter()
        .enumerate()
        .map(|(i, item)| {
            let at = |key: &str| format!("{field}[{i}]{key}");
            let Some(object) = item.as_object() else {
                return Err(r.field_error(
                    &at(""),
                    format!(
                        "expected an object with `role` and `content`, found {}",
                        kind(item)
                    ),
                ));
            };
            let role = match object.get("role") {
                None | Some(Value::Null) => return Err(r.field_error(&at(".role"), "missing")),
                Some(Value::String(role)) => match role.as_str() {
                    "system" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => {
                        return Err(r.field_error(
                            &at(".role"),
                            format!(
                                "expected \"system\", \"user\" or \"assistant\", not {other:?}"
                            ),
                        ))
                    }
                },
                Some(_) => return Err(r.field_error(&at(".role"), "expected a string")),
            };
            let content = match object.get("content") {
                None | Some(Value::Null) => return Err(r.field_error(&at(".content"), "missing")),
                Some(Value::String(content)) => content.clone(),
                Some(_) => return Err(r.field_error(&at(".content"), "expected a string")),
            };
            Ok(Message { role, content })
        })
        .collect()
}
