//! PPO prompts (`{"prompt"}` JSONL) and pretraining text for PPO-ptx (`{"text"}` JSONL,
//! or any other file as plain text, one document per blank-line-separated block).

use super::jsonl::JsonlReader;
use super::sft::{invalid_message, non_empty};
use crate::template::ChatTemplate;
use crate::{Error, Result};
use std::path::Path;

/// One PPO prompt, templated and ready for generation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prompt {
    /// The prompt in the chat template: what the policy sees.
    pub text: String,
    /// The prompt as the record gives it: what reward plug-ins see.
    pub raw: String,
    pub category: Option<String>,
}

/// Reads `{"prompt", "category"?}` records; the prompt is wrapped in the chat template.
pub fn read_prompts(path: &Path, template: &ChatTemplate) -> Result<Vec<Prompt>> {
    JsonlReader::open(path)?
        .map(|record| {
            let r = record?;
            let prompt = non_empty(&r, "prompt", r.str("prompt")?)?;
            let text = template
                .prompt(prompt)
                .map_err(|e| r.field_error("prompt", invalid_message(e)))?;
            Ok(Prompt {
                text,
                raw: prompt.to_string(),
                category: r.opt_str("category")?.map(String::from),
            })
        })
        .collect()
}

/// Pretraining documents: `{"text"}` records from a `.jsonl` file, else plain text split
/// at blank lines.
pub fn read_pretrain(path: &Path) -> Result<Vec<String>> {
    if path.extension().is_some_and(|e| e == "jsonl") {
        return JsonlReader::open(path)?
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
        let prompts = read_prompts(&path, &t).unwrap();
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
        let err = read_prompts(&bad, &t).unwrap_err().to_string();
        assert!(err.contains("line 2: field `prompt`: missing"), "{err}");
    }

    #[test]
    fn pretraining_text_from_jsonl_or_plain_text() {
        let jsonl = write(
            "t.jsonl",
            "{\"text\": \"A river.\"}\n{\"text\": \"A hill.\"}\n",
        );
        assert_eq!(read_pretrain(&jsonl).unwrap(), vec!["A river.", "A hill."]);
        let plain = write("t.txt", "First doc\nline two.\n\n\nSecond doc.\n");
        assert_eq!(
            read_pretrain(&plain).unwrap(),
            vec!["First doc\nline two.", "Second doc."]
        );
        let empty = write("e.txt", "\n\n");
        assert!(read_pretrain(&empty)
            .unwrap_err()
            .to_string()
            .contains("no text"));
    }
}
