//! Reward-model comparisons: `{"prompt", "responses", "ranking"}` (K-wise) or
//! `{"prompt"?, "chosen", "rejected"}` (pairwise, the prompt explicit or implicit) records.

use std::path::Path;

use super::fields::{
    completion, completion_value, implicit_prompt, prompt_messages, render_prompt,
};
use super::jsonl::{JsonlReader, Record};
use crate::config::DataKeys;
use crate::template::ChatTemplate;
use crate::Result;

/// The fewest and most responses a ranked record may have (InstructGPT ranks K = 4..9).
pub const MIN_K: usize = 2;
pub const MAX_K: usize = 9;

/// One prompt with K ranked responses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RankedExample {
    /// The fully templated prompt, ending with the assistant prefix.
    pub prompt: String,
    /// The responses ordered best to worst (K of them, 2..=9).
    pub responses: Vec<String>,
    pub category: Option<String>,
}

impl RankedExample {
    /// Number of pairwise comparisons, C(K, 2).
    pub fn comparisons(&self) -> usize {
        pairs(self.responses.len())
    }
}

/// C(k, 2).
pub(crate) fn pairs(k: usize) -> usize {
    k * k.saturating_sub(1) / 2
}

/// Reads a reward-model JSONL file (formats in the [module documentation](super)), with
/// its fields under `keys`.
pub fn read_rm(
    path: &Path,
    template: &ChatTemplate,
    keys: &DataKeys,
) -> Result<Vec<RankedExample>> {
    JsonlReader::open(path)?
        .with_keys(keys)
        .map(|record| parse_rm(&record?, template))
        .collect()
}

fn parse_rm(r: &Record, template: &ChatTemplate) -> Result<RankedExample> {
    let ranked = r.has("responses") || r.has("ranking");
    let pairwise = r.has("chosen") || r.has("rejected");
    let (messages, responses) = match (ranked, pairwise) {
        (true, true) => {
            return Err(r.error(format!(
                "has both {}/{} and {}/{}: give one form or the other",
                r.quoted("responses"),
                r.quoted("ranking"),
                r.quoted("chosen"),
                r.quoted("rejected")
            )))
        }
        (false, false) => {
            return Err(r.error(format!(
                "expected {} and {}, or {} and {}",
                r.quoted("responses"),
                r.quoted("ranking"),
                r.quoted("chosen"),
                r.quoted("rejected")
            )))
        }
        (true, false) => (prompt_messages(r, "prompt")?, parse_ranked(r)?),
        (false, true) if r.has("prompt") => {
            let messages = prompt_messages(r, "prompt")?;
            let chosen = completion(r, "chosen")?;
            (messages, vec![chosen, completion(r, "rejected")?])
        }
        (false, true) => {
            let (messages, pair) = implicit_prompt(r)?;
            (messages, pair.to_vec())
        }
    };
    if pairwise && responses[0].trim() == responses[1].trim() {
        return Err(r.field_error("rejected", format!("identical to {}", r.quoted("chosen"))));
    }
    Ok(RankedExample {
        prompt: render_prompt(r, "prompt", template, &messages)?,
        responses,
        category: r.opt_str("category")?.map(String::from),
    })
}

/// The responses reordered best to worst by `ranking`.
fn parse_ranked(r: &Record) -> Result<Vec<String>> {
    let k = r.array("responses")?.len();
    if !(MIN_K..=MAX_K).contains(&k) {
        return Err(r.field_error("responses", format!("K = {k}, expected {MIN_K} to {MAX_K}")));
    }
    let responses: Vec<String> = r
        .array("responses")?
        .iter()
        .enumerate()
        .map(|(i, item)| completion_value(r, &format!("responses[{i}]"), item))
        .collect::<Result<_>>()?;
    for (i, response) in responses.iter().enumerate() {
        if let Some(j) = responses[..i]
            .iter()
            .position(|o| o.trim() == response.trim())
        {
            return Err(r.field_error("responses", format!("responses {j} and {i} are identical")));
        }
    }
    let ranking = r.int_array("ranking")?;
    let mut seen = vec![false; k];
    let is_permutation = ranking.len() == k
        && ranking.iter().all(|&i| {
            usize::try_from(i)
                .ok()
                .filter(|&i| i < k)
                .is_some_and(|i| !std::mem::replace(&mut seen[i], true))
        });
    if !is_permutation {
        return Err(r.field_error(
            "ranking",
            format!("{ranking:?} is not a permutation of 0..{k}"),
        ));
    }
    Ok(ranking
        .iter()
        .map(|&i| responses[i as usize].clone())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::super::jsonl::tests::{message, temp_file};
    use super::*;

    fn read(content: &str) -> (std::path::PathBuf, Result<Vec<RankedExample>>) {
        let path = temp_file("rm", content);
        let result = read_rm(&path, &ChatTemplate::builtin(), &DataKeys::default());
        (path, result)
    }

    fn error(content: &str) -> String {
        let (path, result) = read(content);
        message(&path, result)
    }

    #[test]
    fn both_forms_parse() {
        let (_, result) = read(concat!(
            r#"{"prompt": "Name a river.", "responses": ["b", "c", "a"], "ranking": [2, 0, 1], "#,
            r#""category": "open_qa", "id": "x1"}"#,
            "\n",
            r#"{"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}"#,
        ));
        let examples = result.unwrap();
        assert_eq!(
            examples,
            [
                RankedExample {
                    prompt: "<|user|>\nName a river.\n<|assistant|>\n".into(),
                    responses: vec!["a".into(), "b".into(), "c".into()],
                    category: Some("open_qa".into()),
                },
                RankedExample {
                    prompt: "<|user|>\nHi\n<|assistant|>\n".into(),
                    responses: vec!["Hello.".into(), "Go away.".into()],
                    category: None,
                },
            ]
        );
        assert_eq!(
            (examples[0].comparisons(), examples[1].comparisons()),
            (3, 1)
        );
        // K = 9 is allowed.
        let (_, result) = read(
            r#"{"prompt": "p", "responses": ["1","2","3","4","5","6","7","8","9"], "ranking": [8,7,6,5,4,3,2,1,0]}"#,
        );
        assert_eq!(result.unwrap()[0].responses[0], "9");
    }

    #[test]
    fn trl_forms_parse() {
        let hi = "<|user|>\nHi\n<|assistant|>\n";
        let cases = [
            // Conversational prompt and completions.
            (
                r#"{"prompt": [{"role": "user", "content": "Hi"}], "chosen": [{"role": "assistant", "content": "Hello."}], "rejected": [{"role": "assistant", "content": "Go away."}]}"#,
                hi.to_string(),
                ["Hello.", "Go away."],
            ),
            // Implicit conversational prompt: the messages both lists start with.
            (
                r#"{"chosen": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello."}], "rejected": [{"role": "system", "content": "Be kind."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Go away."}]}"#,
                format!("<|system|>\nBe kind.\n{hi}"),
                ["Hello.", "Go away."],
            ),
            // Implicit standard prompt: the shared text up to the last whitespace before
            // the responses differ (never inside a word); the whitespace stays with them.
            (
                r#"{"chosen": "The sky is blue.", "rejected": "The sky is black."}"#,
                "<|user|>\nThe sky is\n<|assistant|>\n".to_string(),
                [" blue.", " black."],
            ),
        ];
        for (line, prompt, pair) in cases {
            let examples = read(line).1.unwrap();
            assert_eq!(examples[0].prompt, prompt, "{line}");
            assert_eq!(examples[0].responses, pair, "{line}");
        }
        // K-wise with a conversational prompt and a response as a message list.
        let (_, result) = read(
            r#"{"prompt": [{"role": "user", "content": "Hi"}], "responses": ["a", [{"role": "assistant", "content": "b"}]], "ranking": [1, 0]}"#,
        );
        assert_eq!(result.unwrap()[0].responses, ["b", "a"]);
    }

    #[test]
    fn keys_remap_fields() {
        let path = temp_file(
            "rm-keys",
            "{\"input\": \"Hi\", \"good\": \"Hello.\", \"bad\": \"Hello.\"}\n",
        );
        let keys = DataKeys {
            prompt: Some("input".into()),
            chosen: Some("good".into()),
            rejected: Some("bad".into()),
            ..DataKeys::default()
        };
        let result = read_rm(&path, &ChatTemplate::builtin(), &keys);
        assert_eq!(
            message(&path, result),
            "F: line 1: field `bad`: identical to `good`"
        );
    }

    #[test]
    fn errors_name_file_line_and_field() {
        let ok = r#"{"prompt": "p", "chosen": "a", "rejected": "b"}"#;
        let cases = [
            (r#"{"prompt": "p", "chosen": "a", "rejected": }"#, "F: line 2: invalid JSON: expected value (column 44)"),
            (r#"{"chosen": "a", "rejected": "b"}"#, "F: line 2: field `chosen`: `chosen` and `rejected` share no prompt (give `prompt`)"),
            (r#"{"responses": ["a", "b"], "ranking": [0, 1]}"#, "F: line 2: field `prompt`: missing"),
            (r#"{"prompt": " ", "chosen": "a", "rejected": "b"}"#, "F: line 2: field `prompt`: empty"),
            (r#"{"prompt": "p", "response": "a"}"#, "F: line 2: expected `responses` and `ranking`, or `chosen` and `rejected`"),
            (
                r#"{"prompt": "p", "chosen": "a", "rejected": "b", "ranking": [0, 1]}"#,
                "F: line 2: has both `responses`/`ranking` and `chosen`/`rejected`: give one form or the other",
            ),
            (r#"{"prompt": "p", "chosen": "a"}"#, "F: line 2: field `rejected`: missing"),
            (r#"{"prompt": "p", "chosen": "", "rejected": "b"}"#, "F: line 2: field `chosen`: empty"),
            (r#"{"prompt": "p", "chosen": "a", "rejected": 2}"#, "F: line 2: field `rejected`: expected a string"),
            (r#"{"prompt": "p", "chosen": "a ", "rejected": "a"}"#, "F: line 2: field `rejected`: identical to `chosen`"),
            (r#"{"prompt": "p", "responses": ["a", "b"]}"#, "F: line 2: field `ranking`: missing"),
            (r#"{"prompt": "p", "ranking": [0, 1]}"#, "F: line 2: field `responses`: missing"),
            (r#"{"prompt": "p", "responses": "a", "ranking": [0]}"#, "F: line 2: field `responses`: expected an array"),
            (r#"{"prompt": "p", "responses": ["a", 1], "ranking": [0, 1]}"#, "F: line 2: field `responses[1]`: expected a string or a list of messages"),
            (
                r#"{"prompt": "p", "responses": ["a", [{"role": "user", "content": "b"}]], "ranking": [0, 1]}"#,
                "F: line 2: field `responses[1][0].role`: expected \"assistant\", not \"user\"",
            ),
            (r#"{"prompt": "p", "chosen": [], "rejected": "b"}"#, "F: line 2: field `chosen`: empty"),
            (r#"{"chosen": "Q? a", "rejected": ["Q? b"]}"#, "F: line 2: field `rejected`: `chosen` and `rejected` must both be strings or both lists of messages"),
            (r#"{"chosen": 1, "rejected": "b"}"#, "F: line 2: field `chosen`: expected a string"),
            (
                r#"{"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "R"}, {"role": "assistant", "content": "b"}]}"#,
                "F: line 2: field `chosen`: `chosen` and `rejected` do not start with a shared prompt that ends with a user message (give `prompt`)",
            ),
            (
                r#"{"chosen": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "a"}], "rejected": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}]}"#,
                "F: line 2: field `rejected`: expected one assistant message after the shared prompt, found 2",
            ),
            (r#"{"prompt": "p", "responses": ["a"], "ranking": [0]}"#, "F: line 2: field `responses`: K = 1, expected 2 to 9"),
            (
                r#"{"prompt": "p", "responses": ["1","2","3","4","5","6","7","8","9","10"], "ranking": [0,1,2,3,4,5,6,7,8,9]}"#,
                "F: line 2: field `responses`: K = 10, expected 2 to 9",
            ),
            (r#"{"prompt": "p", "responses": ["a", "b", "\t"], "ranking": [0, 1, 2]}"#, "F: line 2: field `responses[2]`: empty"),
            (r#"{"prompt": "p", "responses": ["a", "b", "a"], "ranking": [0, 1, 2]}"#, "F: line 2: field `responses`: responses 0 and 2 are identical"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 0, 2]}"#, "F: line 2: field `ranking`: [0, 0, 2] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1]}"#, "F: line 2: field `ranking`: [0, 1] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b", "c"], "ranking": [0, 1, 3]}"#, "F: line 2: field `ranking`: [0, 1, 3] is not a permutation of 0..3"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": [-1, 0]}"#, "F: line 2: field `ranking`: [-1, 0] is not a permutation of 0..2"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": [0, 1.5]}"#, "F: line 2: field `ranking`: expected an array of integers"),
            (r#"{"prompt": "p", "responses": ["a", "b"], "ranking": "0,1"}"#, "F: line 2: field `ranking`: expected an array of integers"),
        ];
        for (line, expected) in cases {
            assert_eq!(error(&format!("{ok}\n{line}\n")), expected, "{line}");
        }
    }
}
