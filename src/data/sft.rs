//! SFT demonstrations: `{"prompt", "response" | "completion"}`, `{"messages"}` or
//! `{"text"}` records.

use std::ops::Range;
use std::path::Path;

use super::fields::{
    completion, invalid_message, is_prompt, non_empty, parse_messages, prompt_messages,
    render_prompt,
};
use super::jsonl::{JsonlReader, Record};
use crate::config::{AssistantTurns, DataKeys};
use crate::template::{ChatTemplate, Message, Role};
use crate::Result;

/// One demonstration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SftExample {
    /// The fully templated prompt, ending with the assistant prefix; empty for plain text
    /// (a `text` record), which is all response.
    pub prompt: String,
    /// The demonstration, without template or EOS.
    pub response: String,
    /// Byte ranges of `prompt` holding earlier assistant messages of the conversation that
    /// are trained too (`assistant_turns = "all"`), in order.
    pub earlier_responses: Vec<Range<usize>>,
    pub category: Option<String>,
}

impl SftExample {
    /// A single-turn demonstration.
    pub fn new(prompt: String, response: String, category: Option<String>) -> SftExample {
        SftExample {
            prompt,
            response,
            earlier_responses: Vec::new(),
            category,
        }
    }
}

/// Reads an SFT JSONL file (formats in the [module documentation](super)), with its fields
/// under `keys` and the assistant turns `turns` says trained.
pub fn read_sft(
    path: &Path,
    template: &ChatTemplate,
    keys: &DataKeys,
    turns: AssistantTurns,
) -> Result<Vec<SftExample>> {
    JsonlReader::open(path)?
        .with_keys(keys)
        .map(|record| parse_sft(&record?, template, turns))
        .collect()
}

fn parse_sft(r: &Record, template: &ChatTemplate, turns: AssistantTurns) -> Result<SftExample> {
    let forms: Vec<&str> = ["prompt", "messages", "text"]
        .into_iter()
        .filter(|f| r.has(f))
        .collect();
    let answer = match (r.has("response"), r.has("completion")) {
        (true, true) => {
            return Err(r.error(format!(
                "has both {} and {}: give one",
                r.quoted("response"),
                r.quoted("completion")
            )))
        }
        (true, false) => Some("response"),
        (false, true) => Some("completion"),
        (false, false) => None,
    };
    let category = r.opt_str("category")?.map(String::from);
    match (forms.as_slice(), answer) {
        (["prompt"], Some(field)) => {
            let messages = prompt_messages(r, "prompt")?;
            let prompt = render_prompt(r, "prompt", template, &messages)?;
            Ok(SftExample::new(prompt, completion(r, field)?, category))
        }
        (["prompt"], None) => Err(r.field_error("response", "missing")),
        (["messages"], None) => conversation(r, template, turns, category),
        (["text"], None) => {
            let text = non_empty(r, "text", r.str("text")?)?;
            Ok(SftExample::new(String::new(), text.to_string(), category))
        }
        ([form], Some(field)) => Err(r.error(format!(
            "{} does not take {}",
            r.quoted(form),
            r.quoted(field)
        ))),
        ([], Some(field)) => {
            Err(r.field_error("prompt", format!("missing ({} needs it)", r.quoted(field))))
        }
        ([], None) => Err(r.error(format!(
            "expected {} and {} (or {}), {}, or {}",
            r.quoted("prompt"),
            r.quoted("response"),
            r.quoted("completion"),
            r.quoted("messages"),
            r.quoted("text")
        ))),
        (several, _) => Err(r.error(format!(
            "has {}: give one form",
            several
                .iter()
                .map(|f| r.quoted(f))
                .collect::<Vec<_>>()
                .join(" and ")
        ))),
    }
}

/// A `messages` conversation: the last message is the response and must be the
/// assistant's; the earlier assistant messages are marked in the prompt when `turns` is
/// `all`.
fn conversation(
    r: &Record,
    template: &ChatTemplate,
    turns: AssistantTurns,
    category: Option<String>,
) -> Result<SftExample> {
    let messages = parse_messages(r, "messages")?;
    let (prompt, response) = template
        .split_conversation(&messages)
        .map_err(|e| r.field_error("messages", invalid_message(e)))?;
    let last = messages.len() - 1;
    non_empty(r, &format!("messages[{last}].content"), &response)?;
    let mut example = SftExample::new(prompt, response, category);
    if turns == AssistantTurns::All {
        example.earlier_responses =
            earlier_responses(r, template, &messages[..last], &example.prompt)?;
    }
    Ok(example)
}

/// Where each assistant message of `history` (after its first user message) lies in
/// `prompt`, the rendering of all of `history`. Each must appear right after the
/// rendering of the messages before it with the generation prompt, which holds for
/// templates that render a conversation turn by turn.
fn earlier_responses(
    r: &Record,
    template: &ChatTemplate,
    history: &[Message],
    prompt: &str,
) -> Result<Vec<Range<usize>>> {
    let mut ranges = Vec::new();
    for (i, message) in history.iter().enumerate() {
        let before = &history[..i];
        if message.role != Role::Assistant || !is_prompt(before) {
            continue;
        }
        non_empty(r, &format!("messages[{i}].content"), &message.content)?;
        let prefix = render_prompt(r, "messages", template, before)?;
        let start = prefix.len();
        let found = prompt.strip_prefix(prefix.as_str()).and_then(|rest| {
            [message.content.as_str(), message.content.trim()]
                .into_iter()
                .find(|content| rest.starts_with(content))
        });
        let Some(content) = found else {
            return Err(r.field_error(
                "messages",
                format!(
                    "the chat template does not render message {i} right after the \
                     conversation before it, so that turn cannot be trained on its own: set \
                     sft.assistant_turns = \"last\""
                ),
            ));
        };
        ranges.push(start..start + content.len());
    }
    Ok(ranges)
}

#[cfg(test)]
mod tests {
    use super::super::jsonl::tests::{message, temp_file};
    use super::*;

    fn read(content: &str) -> (std::path::PathBuf, Result<Vec<SftExample>>) {
        let path = temp_file("sft", content);
        let result = read_sft(
            &path,
            &ChatTemplate::builtin(),
            &DataKeys::default(),
            AssistantTurns::All,
        );
        (path, result)
    }

    fn error(content: &str) -> String {
        let (path, result) = read(content);
        message(&path, result)
    }

    #[test]
    fn every_form_parses() {
        let (_, result) = read(concat!(
            r#"{"id": 17, "prompt": "Name a river.", "response": "The Avel.", "category": "open_qa"}"#,
            "\n\n",
            r#"{"messages": [{"role": "system", "content": "Be brief."}, "#,
            r#"{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "#,
            r#""category": null, "meta": {"source": "x"}}"#,
            "\n",
            r#"{"prompt": "Name a river.", "completion": "The Avel."}"#,
            "\n",
            r#"{"prompt": [{"role": "user", "content": "Name a river."}], "#,
            r#""completion": [{"role": "assistant", "content": "The Avel."}]}"#,
            "\n",
            r#"{"text": "The Avel runs to the sea."}"#,
            "\n",
            r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, "#,
            r#"{"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Avel."}]}"#,
            "\n",
        ));
        let examples = result.unwrap();
        let river = SftExample::new(
            "<|user|>\nName a river.\n<|assistant|>\n".into(),
            "The Avel.".into(),
            None,
        );
        let two_turns =
            "<|user|>\nHi\n<|assistant|>\nHello.\n<|user|>\nName a river.\n<|assistant|>\n";
        assert_eq!(
            examples,
            [
                SftExample {
                    category: Some("open_qa".into()),
                    ..river.clone()
                },
                SftExample::new(
                    "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n".into(),
                    "Hello.".into(),
                    None
                ),
                river.clone(),
                river,
                SftExample::new(String::new(), "The Avel runs to the sea.".into(), None),
                SftExample {
                    prompt: two_turns.into(),
                    response: "The Avel.".into(),
                    earlier_responses: std::iter::once(26..32).collect(),
                    category: None,
                },
            ]
        );
        assert_eq!(&two_turns[26..32], "Hello.");
    }

    #[test]
    fn keys_remap_fields_and_errors_name_them() {
        let path = temp_file(
            "sft-keys",
            "{\"question\": \"Name a river.\", \"answer\": \"The Avel.\"}\n{\"question\": \"Hi\"}\n",
        );
        let keys = DataKeys {
            prompt: Some("question".into()),
            response: Some("answer".into()),
            ..DataKeys::default()
        };
        let t = ChatTemplate::builtin();
        let result = read_sft(&path, &t, &keys, AssistantTurns::All);
        assert_eq!(message(&path, result), "F: line 2: field `answer`: missing");
        std::fs::write(&path, "{\"question\": \"Hi\", \"answer\": \"Hello.\"}\n").unwrap();
        let examples = read_sft(&path, &t, &keys, AssistantTurns::All).unwrap();
        assert_eq!(examples[0].prompt, t.prompt("Hi").unwrap());
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let ok = r#"{"prompt": "p", "response": "r"}"#;
        let cases = [
            (r#"{"prompt": "p", "response": "r""#, "F: line 2: invalid JSON: EOF while parsing an object (column 31)"),
            (r#"{"input": "p"}"#, "F: line 2: expected `prompt` and `response` (or `completion`), `messages`, or `text`"),
            (r#"{"prompt": "p"}"#, "F: line 2: field `response`: missing"),
            (r#"{"response": "r"}"#, "F: line 2: field `prompt`: missing (`response` needs it)"),
            (r#"{"prompt": "p", "response": " \n "}"#, "F: line 2: field `response`: empty"),
            (r#"{"prompt": "", "response": "r"}"#, "F: line 2: field `prompt`: empty"),
            (r#"{"prompt": 3, "response": "r"}"#, "F: line 2: field `prompt`: expected a string"),
            (r#"{"prompt": "p", "response": 3}"#, "F: line 2: field `response`: expected a string"),
            (r#"{"prompt": "p", "response": "r", "category": 1}"#, "F: line 2: field `category`: expected a string"),
            (r#"{"prompt": "p", "response": "r", "completion": "c"}"#, "F: line 2: has both `response` and `completion`: give one"),
            (r#"{"prompt": "p", "messages": []}"#, "F: line 2: has `prompt` and `messages`: give one form"),
            (r#"{"messages": [], "response": "r"}"#, "F: line 2: `messages` does not take `response`"),
            (r#"{"text": "t", "completion": "r"}"#, "F: line 2: `text` does not take `completion`"),
            (r#"{"text": " "}"#, "F: line 2: field `text`: empty"),
            (
                r#"{"prompt": [{"role": "assistant", "content": "Hi"}], "completion": "r"}"#,
                "F: line 2: field `prompt`: no user message",
            ),
            (
                r#"{"prompt": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Yo"}], "completion": "r"}"#,
                "F: line 2: field `prompt`: a prompt must not end with an assistant message (the model writes that one)",
            ),
            (
                r#"{"prompt": "p", "completion": [{"role": "user", "content": "r"}]}"#,
                "F: line 2: field `completion[0].role`: expected \"assistant\", not \"user\"",
            ),
            (
                r#"{"prompt": "p", "completion": [{"role": "assistant", "content": "a"}, {"role": "assistant", "content": "b"}]}"#,
                "F: line 2: field `completion`: expected one assistant message, found 2",
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
            (
                r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": " "}, {"role": "user", "content": "Yo"}, {"role": "assistant", "content": "r"}]}"#,
                "F: line 2: field `messages[1].content`: empty",
            ),
        ];
        for (line, expected) in cases {
            assert_eq!(error(&format!("{ok}\n{line}\n")), expected, "{line}");
        }
    }

    /// A template that renders past turns differently from how it rendered them when they
    /// were the prompt cannot train them one by one; `last` still works.
    #[test]
    fn a_template_that_rewrites_history_needs_last_only() {
        let source = "{%- for m in messages -%}{{ m['role'] + ':' }}\
            {%- if loop.last -%}{{ m['content'] }}{%- else -%}{{ m['content'] | upper }}{%- endif -%}\
            {{ '\\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ 'assistant:' }}{%- endif -%}";
        let template = ChatTemplate::Jinja(Box::new(
            crate::template::JinjaTemplate::new(source, "test", Vec::new()).unwrap(),
        ));
        let line = r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "yo"}, {"role": "user", "content": "Name a river."}, {"role": "assistant", "content": "The Avel."}]}"#;
        let path = temp_file("sft-history", &format!("{line}\n"));
        let result = read_sft(&path, &template, &DataKeys::default(), AssistantTurns::All);
        assert!(
            message(&path, result).starts_with("F: line 1: field `messages`: the chat template does not render message 1 right after the conversation before it"),
        );
        let last = read_sft(&path, &template, &DataKeys::default(), AssistantTurns::Last).unwrap();
        assert_eq!(last[0].response, "The Avel.");
    }
}
