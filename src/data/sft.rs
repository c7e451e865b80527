//! SFT demonstrations: `{"prompt", "response"}` or `{"messages": [...]}` records.

use std::path::Path;

use serde_json::Value;

use super::jsonl::{kind, JsonlReader, Record};
use crate::template::{ChatTemplate, Message, Role};
use crate::{Error, Result};

/// One demonstration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftExample {
    /// The fully templated prompt, ending with the assistant prefix.
    pub prompt: String,
    /// The demonstration, without template or EOS.
    pub response: String,
    pub category: Option<String>,
}

/// Reads an SFT JSONL file (formats in the [module documentation](super)).
pub fn read_sft(path: &Path, template: &ChatTemplate) -> Result<Vec<SftExample>> {
    JsonlReader::open(path)?
        .map(|record| parse_sft(&record?, template))
        .collect()
}

fn parse_sft(r: &Record, template: &ChatTemplate) -> Result<SftExample> {
    let single = r.has("prompt") || r.has("response");
    let (prompt, response) = match (r.has("messages"), single) {
        (true, true) => {
            return Err(
                r.error("has both `messages` and `prompt`/`response`: give one form or the other")
            )
        }
        (false, false) => return Err(r.error("expected `prompt` and `response`, or `messages`")),
        (false, true) => {
            let prompt = non_empty(r, "prompt", r.str("prompt")?)?;
            let response = non_empty(r, "response", r.str("response")?)?;
            let prompt = template
                .prompt(prompt)
                .map_err(|e| r.field_error("prompt", invalid_message(e)))?;
            (prompt, response.to_string())
        }
        (true, false) => {
            let messages = parse_messages(r, "messages")?;
            let (prompt, response) = template
                .split_conversation(&messages)
                .map_err(|e| r.field_error("messages", invalid_message(e)))?;
            let last = format!("messages[{}].content", messages.len() - 1);
            non_empty(r, &last, &response)?;
            (prompt, response)
        }
    };
    Ok(SftExample {
        prompt,
        response,
        category: r.opt_str("category")?.map(String::from),
    })
}

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

/// `[{"role": "system" | "user" | "assistant", "content": "..."}, ...]`.
fn parse_messages(r: &Record, field: &str) -> Result<Vec<Message>> {
    let items = r.array(field)?;
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

#[cfg(test)]
mod tests {
    use super::super::jsonl::tests::{message, temp_file};
    use super::*;

    fn read(content: &str) -> (std::path::PathBuf, Result<Vec<SftExample>>) {
        let path = temp_file("sft", content);
        let result = read_sft(&path, &ChatTemplate::builtin());
        (path, result)
    }

    fn error(content: &str) -> String {
        let (path, result) = read(content);
        message(&path, result)
    }

    #[test]
    fn both_forms_parse() {
        let (_, result) = read(concat!(
            r#"{"id": 17, "prompt": "Name a river.", "response": "The Avel.", "category": "open_qa"}"#,
            "\n\n",
            r#"{"messages": [{"role": "system", "content": "Be brief."}, "#,
            r#"{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "#,
            r#""category": null, "meta": {"source": "x"}}"#,
            "\n",
        ));
        let examples = result.unwrap();
        assert_eq!(
            examples,
            [
                SftExample {
                    prompt: "<|user|>\nName a river.\n<|assistant|>\n".into(),
                    response: "The Avel.".into(),
                    category: Some("open_qa".into()),
                },
                SftExample {
                    prompt: "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n".into(),
                    response: "Hello.".into(),
                    category: None,
                },
            ]
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let ok = r#"{"prompt": "p", "response": "r"}"#;
        let cases = [
            (r#"{"prompt": "p", "response": "r""#, "F: line 2: invalid JSON: EOF while parsing an object (column 31)"),
            (r#"{"text": "p"}"#, "F: line 2: expected `prompt` and `response`, or `messages`"),
            (r#"{"prompt": "p"}"#, "F: line 2: field `response`: missing"),
            (r#"{"response": "r"}"#, "F: line 2: field `prompt`: missing"),
            (r#"{"prompt": "p", "response": " \n "}"#, "F: line 2: field `response`: empty"),
            (r#"{"prompt": "", "response": "r"}"#, "F: line 2: field `prompt`: empty"),
            (r#"{"prompt": ["p"], "response": "r"}"#, "F: line 2: field `prompt`: expected a string"),
            (r#"{"prompt": "p", "response": 3}"#, "F: line 2: field `response`: expected a string"),
            (r#"{"prompt": "p", "response": "r", "category": 1}"#, "F: line 2: field `category`: expected a string"),
            (
                r#"{"prompt": "p", "messages": []}"#,
                "F: line 2: has both `messages` and `prompt`/`response`: give one form or the other",
            ),
            (r#"{"messages": {}}"#, "F: line 2: field `messages`: expected an array"),
            (r#"{"messages": []}"#, "F: line 2: field `messages`: empty"),
            (
                r#"{"messages": ["hi"]}"#,
                "F: line 2: field `messages[0]`: expected an object with `role` and `content`, found a string",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "bot", "content": "Yo"}]}"#,
                "F: line 2: field `messages[1].role`: expected \"system\", \"user\" or \"assistant\", not \"bot\"",
            ),
            (r#"{"messages": [{"content": "Hi"}]}"#, "F: line 2: field `messages[0].role`: missing"),
            (r#"{"messages": [{"role": "user", "content": 5}]}"#, "F: line 2: field `messages[0].content`: expected a string"),
            (
                r#"{"messages": [{"role": "user", "content": "Hi"}]}"#,
                "F: line 2: field `messages`: the last message of a conversation must be from the assistant, not the user",
            ),
            (
                r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": ""}]}"#,
                "F: line 2: field `messages[1].content`: empty",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(error(&format!("{ok}\n{line}\n")), expected, "{line}");
        }
    }
}
