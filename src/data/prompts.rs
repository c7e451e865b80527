//! PPO prompts (`{"prompt"}` or `{"messages"}` JSONL) and pretraining text for PPO-ptx
//! (`{"text"}` JSONL, or any other file as plain text, one document per blank-line-separated
//! block).

use super::fields::{check_prompt, non_empty, parse_messages, prompt_messages, render_prompt};
use super::jsonl::{JsonlReader, Record};
use crate::config::DataKeys;
use crate::template::{ChatTemplate, Role};
use crate::{Error, Result};
use std::path::Path;

/// One PPO prompt, templated and ready for generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The prompt in the chat template: what the policy sees.
    pub text: String,
    /// The prompt as the record gives it (of a conversation, its last user message): what
    /// reward plug-ins see.
    pub raw: String,
    pub category: Option<String>,
}

/// Reads `{"prompt", "category"?}` or `{"messages", "category"?}` records, with their fields
/// under `keys`; the prompt is rendered by the chat template. A `messages` conversation
/// that ends with an assistant message (a reference answer) is the prompt without it.
pub fn read_prompts(path: &Path, template: &ChatTemplate, keys: &DataKeys) -> Result<Vec<Prompt>> {
    JsonlReader::open(path)?
        .with_keys(keys)
        .map(|record| parse_prompt(&record?, template))
        .collect()
}

fn parse_prompt(r: &Record, template: &ChatTemplate) -> Result<Prompt> {
    let (field, messages) = match (r.has("prompt"), r.has("messages")) {
        (true, true) => {
            return Err(r.error(format!(
                "has both {} and {}: give one",
                r.quoted("prompt"),
                r.quoted("messages")
            )))
        }
        (false, true) => {
            let mut messages = parse_messages(r, "messages")?;
            if messages.last().is_some_and(|m| m.role == Role::Assistant) {
                messages.pop();
            }
            check_prompt(r, "messages", &messages)?;
            ("messages", messages)
        }
        _ => ("prompt", prompt_messages(r, "prompt")?),
    };
    let raw = messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| m.content.clone())
        .expect("a checked prompt has a user message");
    Ok(Prompt {
        text: render_prompt(r, field, template, &messages)?,
        raw,
        category: r.opt_str("category")?.map(String::from),
    })
}

/// Pretraining documents: `{"text"}` records (the field under `keys`) from a `.jsonl`
/// file, else plain text split at blank lines.
pub fn read_pretrain(path: &Path, keys: &DataKeys) -> Result<Vec<String>> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        return JsonlReader::open(path)?
            .with_keys(keys)
            .map(|record| {
                let r = record?;
                Ok(non_empty(&r, "text", r.str("text")?)?.to_string())
            })
            .collect();
    }
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let docs: Vec<String> = text
        .split("\n\n")
        .map(str::trim)
        .filter(|d| !d.is_empty())
        .map(String::from)
        .collect();
    if docs.is_empty() {
        return Err(Error::format(path, "no text"));
    }
    Ok(docs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(name: &str, text: &str) -> std::path::PathBuf {
        let path = std::env::temp_dir().join(format!("rlhf-prompts-{}-{name}", std::process::id()));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn prompts_are_templated_and_errors_name_the_line() {
        let t = ChatTemplate::builtin();
        let path = write(
            "p.jsonl",
            "{\"prompt\": \"Hi\", \"category\": \"chat\"}\n{\"prompt\": \"Yo\"}\n",
        );
        let prompts = read_prompts(&path, &t, &DataKeys::default()).unwrap();
        assert_eq!(
            prompts[0],
            Prompt {
                text: t.prompt("Hi").unwrap(),
                raw: "Hi".into(),
                category: Some("chat".into())
            }
        );
        assert_eq!(prompts[1].category, None);
        let bad = write("bad.jsonl", "{\"prompt\": \"Hi\"}\n{\"promt\": \"Yo\"}\n");
        let err = read_prompts(&bad, &t, &DataKeys::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2: field `prompt`: missing"), "{err}");
    }

    #[test]
    fn conversational_prompts_and_keys() {
        let t = ChatTemplate::builtin();
        let path = write(
            "conv.jsonl",
            concat!(
                r#"{"prompt": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]}"#,
                "\n",
                r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}]}"#,
                "\n",
                r#"{"messages": [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Yo"}]}"#,
                "\n",
            ),
        );
        let prompts = read_prompts(&path, &t, &DataKeys::default()).unwrap();
        let texts: Vec<&str> = prompts.iter().map(|p| p.text.as_str()).collect();
        assert_eq!(
            texts,
            [
                "<|system|>\nBe brief.\n<|user|>\nHi\n<|assistant|>\n",
                // The reference answer at the end is not part of the prompt.
                "<|user|>\nHi\n<|assistant|>\n",
                "<|user|>\nHi\n<|assistant|>\nHello.\n<|user|>\nYo\n<|assistant|>\n",
            ]
        );
        let raw: Vec<&str> = prompts.iter().map(|p| p.raw.as_str()).collect();
        assert_eq!(raw, ["Hi", "Hi", "Yo"]);
        // A conversation cannot be used as given.
        let err = read_prompts(&path, &ChatTemplate::None, &DataKeys::default()).unwrap_err();
        assert!(
            err.to_string()
                .contains("line 1: field `prompt`: chat.template is \"none\""),
            "{err}"
        );

        let keyed = write(
            "keyed.jsonl",
            "{\"query\": \"Hi\", \"prompt\": 3}\n{\"query\": []}\n",
        );
        let keys = DataKeys {
            prompt: Some("query".into()),
            ..DataKeys::default()
        };
        let err = read_prompts(&keyed, &t, &keys).unwrap_err().to_string();
        assert!(err.ends_with("line 2: field `query`: empty"), "{err}");
        let both = write("both.jsonl", "{\"prompt\": \"Hi\", \"messages\": []}\n");
        let err = read_prompts(&both, &t, &DataKeys::default())
            .unwrap_err()
            .to_string();
        assert!(
            err.ends_with("line 1: has both `prompt` and `messages`: give one"),
            "{err}"
        );
    }

    #[test]
    fn pretraining_text_from_jsonl_or_plain_text() {
        let jsonl = write(
            "t.jsonl",
            "{\"text\": \"A river.\"}\n{\"text\": \"A hill.\"}\n",
        );
        assert_eq!(
            read_pretrain(&jsonl, &DataKeys::default()).unwrap(),
            vec!["A river.", "A hill."]
        );
        let plain = write("t.txt", "First doc\nline two.\n\n\nSecond doc.\n");
        assert_eq!(
            read_pretrain(&plain, &DataKeys::default()).unwrap(),
            vec!["First doc\nline two.", "Second doc."]
        );
        let empty = write("e.txt", "\n\n");
        assert!(read_pretrain(&empty, &DataKeys::default())
            .unwrap_err()
            .to_string()
            .contains("no text"));
    }
}
